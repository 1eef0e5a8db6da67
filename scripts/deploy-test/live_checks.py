"""Live checks: the real exporter on a seeded throwaway database, scraped every second by a real
Prometheus that loads deploy/prometheus/rules; every recording, alert and dashboard query (ours
and LiteLLM's official ones) through Prometheus' HTTP API; and a real Alertmanager with the
shipped routing and inhibition, notifying a local stand-in for PagerDuty's Events API."""
import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import promql
from checker import ROOT

DEPLOY = ROOT / "deploy"
OFFICIAL = ROOT.parent / "shared/reference/litellm-dashboards"

# Rows the generator does not write (audio tokens, images, video): three copies of recent
# successful rows carrying them, so that the official panels over those families are checked too.
MEDIA_ROWS_SQL = """
WITH added AS (
INSERT INTO "LiteLLM_SpendLogs"
SELECT (jsonb_populate_record(s, jsonb_build_object(
  'request_id', 'deploy-test-media-' || s.request_id,
  'startTime', (now() AT TIME ZONE 'utc') - interval '20 seconds',
  'completionStartTime', (now() AT TIME ZONE 'utc') - interval '19 seconds',
  'endTime', (now() AT TIME ZONE 'utc') - interval '18 seconds',
  'metadata', s.metadata || jsonb_build_object('usage_object',
     coalesce(s.metadata->'usage_object', '{}'::jsonb) || '{"output_image_count": 2, "duration_seconds": 4.5,
       "prompt_tokens_details": {"audio_tokens": 120}, "completion_tokens_details": {"audio_tokens": 80}}'::jsonb)
))).*
FROM "LiteLLM_SpendLogs" s
WHERE s.request_id IN (SELECT request_id FROM "LiteLLM_SpendLogs" WHERE status = 'success'
                       ORDER BY "startTime" DESC LIMIT 3)
RETURNING 1)
SELECT count(*) FROM added;
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, data=None, timeout=10, method=None):
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json" if data[:1] in (b"[", b"{") else "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def wait_for(what, predicate, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"gave up waiting for {what} after {timeout}s")


class Processes:
    """Servers started here, stopped (TERM, then KILL) in reverse order by stop_all."""

    def __init__(self, work):
        self.work, self.procs = work, []

    def start(self, name, cmd):
        log = open(self.work / f"{name}.log", "w")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append((name, p, log))
        return p

    def log_tail(self, name, n=2000):
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def stop_all(self):
        for name, p, log in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            log.close()
        self.procs.clear()


class Prometheus:
    def __init__(self, base):
        self.base = base
        self.at = None  # evaluation time of every query, once pinned

    def query(self, expr):
        """(error or None, result list)."""
        params = {"query": expr} if self.at is None else {"query": expr, "time": self.at}
        status, body = http(self.base + "/api/v1/query", urllib.parse.urlencode(params).encode(), timeout=30)
        try:
            doc = json.loads(body)
        except ValueError:
            return f"HTTP {status}: {body[:300]}", []
        if doc.get("status") != "success":
            return f"{doc.get('errorType')}: {doc.get('error')}", []
        result = doc["data"]["result"]
        if doc["data"]["resultType"] == "scalar":
            result = [result]
        return None, result

    def get(self, path):
        status, body = http(self.base + path)
        return json.loads(body) if status == 200 else {}


# ---- the run ------------------------------------------------------------------------------------

def run_all(c, work, bin_path, db_url, psql, seed_log):
    procs = Processes(work)
    try:
        _run(c, work, procs, bin_path, db_url, psql, seed_log)
    except TimeoutError as e:
        c.check("live environment came up", False, f"{e}\n" + "\n".join(
            f"--- {name}.log\n{procs.log_tail(name)}" for name, _, _ in procs.procs))
    finally:
        procs.stop_all()


def _run(c, work, procs, bin_path, db_url, psql, seed_log):
    wait_for("the generated history", lambda: "Seeded spend logs" in Path(seed_log).read_text(errors="replace"), 300)
    c.check("seeded throwaway database (litellm-seed, live traffic running)", True)
    p = subprocess.run(psql + ["-v", "ON_ERROR_STOP=1", "-At", "-c", MEDIA_ROWS_SQL], capture_output=True, text=True, timeout=60)
    c.check("added 3 rows with audio, image and video usage", p.returncode == 0 and p.stdout.strip() == "3", p.stderr + p.stdout)

    # The exporter, polling every second, with the shipped config (deploy/litellm-exporter.yaml:
    # the narrow label selection compose and Kubernetes run, carried in the proxy configs they
    # give the exporter, which the static checks prove export the same; so every dashboard query
    # below is checked against the labels it actually gets) plus customer budgets on (LiteLLM's
    # opt-in setting, for the official dashboards' customer panels).
    exp_port = free_port()
    shipped = (DEPLOY / "litellm-exporter.yaml").read_text()
    c.check("deploy/litellm-exporter.yaml selects labels (prometheus_metrics_config with include_labels)",
            shipped.count("\nlitellm_settings:\n") == 1 and "prometheus_metrics_config:" in shipped
            and "include_labels:" in shipped)
    cfg = work / "exporter.yaml"
    cfg.write_text(shipped.replace("\nlitellm_settings:\n",
                                   "\nlitellm_settings:\n  enable_end_user_cost_tracking_prometheus_only: true\n"))
    exporter = f"http://127.0.0.1:{exp_port}"
    procs.start("exporter", [bin_path, "--db-url", db_url, "--web.listen-address", f"127.0.0.1:{exp_port}",
                             "--poll-interval", "1s", "--config.file", str(cfg)])
    wait_for("the exporter's /-/ready", lambda: http(exporter + "/-/ready", timeout=2)[0] == 200, 180)
    c.check("exporter: /-/healthy and /-/ready answer 200", http(exporter + "/-/healthy")[0] == 200)
    _, text = http(exporter + "/metrics", timeout=30)
    c.check("exporter: litellm_exporter_database_up 1", "litellm_exporter_database_up 1" in text, text[:300])

    # Alertmanager first, so that Prometheus can be pointed at it.
    am = start_alertmanager(c, work, procs)

    # Prometheus with the shipped prometheus.yml, pointed at the test's ports and sped up.
    prom_port = free_port()
    shipped = (DEPLOY / "prometheus/prometheus.yml").read_text()
    swaps = [('"litellm-exporter:10410"', f'"127.0.0.1:{exp_port}"'),
             ('"alertmanager:9093"', f'"127.0.0.1:{am["port"]}"'),
             ("scrape_interval: 30s", "scrape_interval: 1s"),
             ("scrape_timeout: 10s", "scrape_timeout: 1s"),
             ("evaluation_interval: 30s", "evaluation_interval: 1s"),
             ("  - rules/*.yml", f"  - {DEPLOY / 'prometheus/rules'}/*.yml")]
    missing = [a for a, _ in swaps if shipped.count(a) != 1]
    for a, b in swaps:
        shipped = shipped.replace(a, b)
    (work / "prometheus.yml").write_text(shipped)
    c.check("test Prometheus config derived from deploy/prometheus/prometheus.yml", not missing, missing)
    c.run("promtool check config (test Prometheus)", ["promtool", "check", "config", str(work / "prometheus.yml")])
    procs.start("prometheus", ["prometheus", f"--config.file={work / 'prometheus.yml'}",
                               f"--storage.tsdb.path={work / 'prometheus-data'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"])
    prom = Prometheus(f"http://127.0.0.1:{prom_port}")
    wait_for("Prometheus to start", lambda: http(prom.base + "/-/ready", timeout=2)[0] == 200, 120)

    rules = wait_for("rules to load", lambda: [r for g in prom.get("/api/v1/rules").get("data", {}).get("groups", [])
                                               for r in g["rules"]], 60)
    records = [r for r in rules if r["type"] == "recording"]
    alerts = [r for r in rules if r["type"] == "alerting"]

    # A few scrapes, and every recording rule evaluated on them.
    def settled():
        _, up = prom.query('count_over_time(up{job="litellm-exporter"}[1m])')
        if not up or float(up[0]["value"][1]) < 8:
            return False
        return all(prom.query(r["name"])[1] for r in records)
    try:
        wait_for("8 scrapes and data in every recorded series", settled, 90)
    except TimeoutError as e:
        c.check("Prometheus scraped the exporter and evaluated the recording rules", False,
                f"{e}; targets: {prom.get('/api/v1/targets')}")
    # Every query from here on is evaluated at the time of the latest successful scrape: a scrape
    # that times out (1 s, on a busy 2-core machine) marks every series stale, and instant
    # queries just after it would come back empty through no fault of the queries.
    _, ok_scrape = prom.query('max(timestamp(up{job="litellm-exporter"} == 1))')
    prom.at = ok_scrape[0]["value"][1] if ok_scrape else None
    _, n = prom.query('count_over_time(up{job="litellm-exporter"}[5m])')
    _, ok = prom.query('avg_over_time(up{job="litellm-exporter"}[5m])')
    n, ok = (float(n[0]["value"][1]), float(ok[0]["value"][1])) if n and ok else (0, 0)
    c.check(f"Prometheus scrapes the exporter every second ({n:.0f} scrapes, {ok:.0%} successful)", n >= 8 and ok >= 0.8,
            prom.get("/api/v1/targets"))
    tiers = {r["metric"].get("retention_tier") for r in prom.query('count by (retention_tier) ({job="litellm-exporter", __name__=~"litellm_.+"})')[1]}
    c.check("metric_relabel_configs tag every series with a retention tier (long, short)", tiers == {"long", "short"}, tiers)
    rules = [r for g in prom.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
    bad = [f'{r["name"]}: {r.get("health")} {r.get("lastError")}' for r in rules if r.get("health") != "ok"]
    c.check(f"Prometheus loaded {len(records)} recording and {len(alerts)} alerting rules, all healthy",
            len(records) >= 10 and len(alerts) >= 10 and not bad, bad)

    for r in records:
        err, res = prom.query(r["query"])
        c.check(f"recording rule {r['name']}: returns data", not err and res, err or "empty")
    for r in alerts:
        must, must_not = promql.alert_operands(r["query"])
        err, _ = prom.query(r["query"])
        empty = [(e, prom.query(e)[0]) for e in must if not prom.query(e)[1]]
        present = [e for e in must_not if prom.query(e)[1]]
        c.check(f"alert {r['name']}: evaluates, and what it compares has data", not err and not empty and not present,
                err or f"empty: {empty} unexpectedly present: {present}")

    for f in sorted((DEPLOY / "grafana/dashboards").glob("*.json")):
        check_dashboard(c, prom, f)
    check_official(c, prom, served_families(prom))
    check_alertmanager(c, am)


def served_families(prom):
    """Families the exporter serves, as Prometheus stored them (counters without _total,
    histograms without _bucket/_sum/_count)."""
    _, res = prom.query('count by (__name__) ({job="litellm-exporter", __name__=~"litellm_.+"})')
    names = {r["metric"]["__name__"] for r in res}
    out = set()
    for n in names:
        stem = re.sub(r"_(bucket|sum|count)$", "", n)
        out.add(stem if stem != n and stem + "_bucket" in names else re.sub(r"_total$", "", n))
    return out


# ---- our dashboards ------------------------------------------------------------------------------

def panels_of(dash):
    out, stack = [], list(dash["panels"])
    while stack:
        p = stack.pop(0)
        stack[:0] = p.get("panels", [])
        if p.get("type") != "row":
            out.append(p)
    return out


def label_values(prom, query, variables):
    """Evaluates a Grafana label_values(selector, label) variable query."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", query)
    if not m:
        raise ValueError(f"unsupported variable query {query}")
    selector, label = promql.substitute(m.group(1), variables), m.group(2)
    err, res = prom.query(f"count by ({label}) ({selector})")
    return sorted(r["metric"][label] for r in res if label in r["metric"]) if not err else []


def panel_results(prom, panel, variables):
    """(errors, number of targets with data, number of targets)."""
    errors, with_data = [], 0
    for t in panel["targets"]:
        err, res = prom.query(promql.substitute(t["expr"], variables))
        if err:
            errors.append(f"{t['refId']}: {err}")
        with_data += bool(res)
    return errors, with_data, len(panel["targets"])


def check_dashboard(c, prom, path):
    dash = json.loads(path.read_text())
    panels = panels_of(dash)
    # The $datasource variable only picks the Prometheus (here: this one, queried directly); the
    # query variables are the ones with values to choose.
    variables = [v for v in dash.get("templating", {}).get("list", []) if v.get("type") != "datasource"]
    name = path.name

    # 1. Every variable at "All" (Grafana's default): every query of every panel must return
    #    data. (A dashboard with a single-value variable has no such view; a value is picked below.)
    values = {}
    for v in variables:
        options = label_values(prom, v["query"], values)
        c.check(f"{name}: variable ${v['name']} lists values ({len(options)})", options, v["query"])
        values[v["name"]] = (promql.ALL, v["allValue"]) if v.get("includeAll") else (options[0] if options else "", "")
    if all(v.get("includeAll") for v in variables):
        for p in panels:
            errors, with_data, total = panel_results(prom, p, values)
            c.check(f"{name}: {p['title']!r}: all {total} queries return data ({describe(values)})",
                    not errors and with_data == total, errors or f"{total - with_data} empty")

    # 2. Concrete values, chosen one variable after the other the way a user would look at the
    #    dashboard: among the first values (by spend), the one with the most panels showing data.
    #    Every panel must then show data (at least one of its queries).
    picked = {}
    for v in variables:
        options = label_values(prom, v["query"], {**values, **picked})
        label = re.search(r",\s*(\w+)\)\s*$", v["query"]).group(1)
        _, spend = prom.query(f"sort_desc(sum by ({label}) (litellm_spend_metric_total))")
        rank = {r["metric"].get(label): i for i, r in enumerate(spend)}
        options = sorted(options, key=lambda o: (rank.get(o, len(rank)), o))[:5]
        best, best_score = None, -1
        for o in options:
            trial = {**values, **picked, v["name"]: (o, "")}
            score = sum(panel_results(prom, p, trial)[1] > 0 for p in panels if "$" + v["name"] in str(p["targets"]))
            if score > best_score:
                best, best_score = o, score
        picked[v["name"]] = (best, "")
    chosen = {**values, **picked}
    for p in panels:
        errors, with_data, total = panel_results(prom, p, chosen)
        c.check(f"{name}: {p['title']!r}: shows data for {describe(picked)}", not errors and with_data > 0,
                errors or "no query returned data")


def describe(values):
    return ", ".join(f"{k}={'All' if v is promql.ALL else repr(v)}" for k, (v, _) in values.items()) or "no variables"


# ---- LiteLLM's official dashboards ---------------------------------------------------------------

def unavailable_families():
    """Families deploy/grafana/README.md lists as not derivable from the database."""
    text = (DEPLOY / "grafana/README.md").read_text()
    section = text.split("<!-- unavailable:start -->")[1].split("<!-- unavailable:end -->")[0]
    return set(re.findall(r"`(litellm_\w+)`", section))


def check_official(c, prom, served):
    tsv = OFFICIAL / "exprs.tsv"
    if not c.check(f"LiteLLM's official dashboard expressions are at {tsv}", tsv.exists()):
        return
    listed = unavailable_families()
    c.check("README's unavailable families are not served by the exporter", not (listed & served), listed & served)
    variables = {"DS_PROMETHEUS": ("prometheus", "")}
    seen = set()
    for n, line in enumerate(tsv.read_text().splitlines(), 1):
        fname, title, expr = line.split("\t")
        if (fname, expr) in seen:
            continue
        seen.add((fname, expr))
        fams = promql.families(expr, served)
        missing = fams - served
        err, res = prom.query(promql.substitute(expr, variables))
        label = f"official {fname} {title!r}: {expr[:90]}"
        if not missing:
            c.check(f"{label}: returns data", not err and res, err or "empty")
        else:
            c.check(f"{label}: expected empty ({', '.join(sorted(missing))} listed in deploy/grafana/README.md)",
                    not err and not res and missing <= listed,
                    err or ("returned data" if res else f"not listed: {sorted(missing - listed)}"))


# ---- Alertmanager --------------------------------------------------------------------------------

class PagerDutyStandIn(BaseHTTPRequestHandler):
    """Records Events API v2 posts (what Alertmanager would send to PagerDuty)."""
    events = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        PagerDutyStandIn.events.append(json.loads(body or b"{}"))
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status":"success","message":"Event processed"}')

    def log_message(self, *args):
        pass


def start_alertmanager(c, work, procs):
    pd = ThreadingHTTPServer(("127.0.0.1", 0), PagerDutyStandIn)
    threading.Thread(target=pd.serve_forever, daemon=True).start()
    key = work / "pagerduty_routing_key"
    key.write_text("deploy-test-routing-key\n")
    shipped = (DEPLOY / "alertmanager/alertmanager.yml").read_text()
    swaps = [("https://events.pagerduty.com/v2/enqueue", f"http://127.0.0.1:{pd.server_address[1]}/v2/enqueue"),
             ("/etc/alertmanager/secrets/pagerduty_routing_key", str(key)),
             ("group_wait: 30s", "group_wait: 1s")]
    missing = [a for a, _ in swaps if a not in shipped]
    for a, b in swaps:
        shipped = shipped.replace(a, b)
    cfg = work / "alertmanager.yml"
    cfg.write_text(shipped)
    c.check("test Alertmanager config derived from deploy/alertmanager/alertmanager.yml", not missing, missing)
    port = free_port()
    procs.start("alertmanager", ["prometheus-alertmanager", f"--config.file={cfg}", f"--storage.path={work / 'am-data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="])
    base = f"http://127.0.0.1:{port}"
    wait_for("Alertmanager to start", lambda: http(base + "/-/ready", timeout=2)[0] == 200, 60)
    return {"port": port, "base": base, "pd": pd}


def check_alertmanager(c, am):
    """Exporter down (critical) pages with the routing key from the file; a budget alert
    (warning, service=litellm) raised at the same time is inhibited; info is not sent."""
    now = datetime.now(timezone.utc)
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def alert(name, severity, service, **labels):
        return {"labels": {"alertname": name, "severity": severity, "service": service, **labels},
                "annotations": {"summary": f"{name} (scripts/test-deploy)"},
                "startsAt": stamp(now), "endsAt": stamp(now + timedelta(minutes=5))}
    batch = [alert("LiteLLMExporterDown", "critical", "litellm-exporter", job="litellm-exporter"),
             alert("LiteLLMTeamBudgetNearlySpent", "warning", "litellm", team="t1", team_alias="search"),
             alert("LiteLLMSpendLogsStale", "info", "litellm-exporter", instance="x")]
    status, body = http(am["base"] + "/api/v2/alerts", json.dumps(batch).encode(), method="POST")
    c.check("Alertmanager accepts alerts", status == 200, body)
    try:
        events = wait_for("a PagerDuty event", lambda: list(PagerDutyStandIn.events), 30)
    except TimeoutError:
        events = []
    time.sleep(2)  # anything else that would be sent goes out within group_wait (1 s here)
    events = list(PagerDutyStandIn.events)
    am["pd"].shutdown()
    pages = [e for e in events if e.get("event_action") == "trigger"]
    c.check("critical alert reaches PagerDuty with the routing key read from routing_key_file",
            len(pages) == 1 and pages[0].get("routing_key") == "deploy-test-routing-key"
            and pages[0].get("payload", {}).get("severity") == "critical"
            and "LiteLLMExporterDown" in json.dumps(pages[0]), events)
    _, body = http(am["base"] + "/api/v2/alerts")
    states = {a["labels"]["alertname"]: a["status"] for a in json.loads(body or "[]")}
    budget = states.get("LiteLLMTeamBudgetNearlySpent", {})
    c.check("exporter down inhibits the data alerts (budget alert suppressed, not sent)",
            budget.get("state") == "suppressed" and budget.get("inhibitedBy")
            and not any("LiteLLMTeamBudgetNearlySpent" in json.dumps(e) for e in events), states)
    c.check("info alerts are not sent to PagerDuty", not any("LiteLLMSpendLogsStale" in json.dumps(e) for e in events))
