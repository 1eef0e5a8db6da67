"""Offline checks of deploy/, the Dockerfile and .dockerignore with the real tools: promtool,
amtool, kubernetes-validate, check-jsonschema, kubectl's kustomize (when installed) and cargo."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import check_dockerfile
from checker import HERE, ROOT, rel

DEPLOY = ROOT / "deploy"
SCHEMAS = HERE / "schemas"
CRD_SCHEMAS = {"ServiceMonitor": SCHEMAS / "servicemonitor.json", "PrometheusRule": SCHEMAS / "prometheusrule.json"}


def run_all(c, work):
    dockerfile(c, work)
    prometheus(c, work)
    alertmanager(c)
    compose(c)
    kubernetes(c, work)
    grafana(c)
    demo(c)


# ---- the README's first command ----------------------------------------------------------------

def demo(c):
    """scripts/demo refuses a taken port before it builds or starts anything, naming the address
    and DEMO_PORT, and a missing DEMO_CONFIG file, both within seconds."""
    import socket
    import time
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    env = dict(os.environ, DEMO_PORT=str(port))
    t0 = time.monotonic()
    r = subprocess.run([str(ROOT / "scripts" / "demo")], env=env, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    taken.close()
    c.check("scripts/demo: a taken DEMO_PORT fails at once, naming the address and DEMO_PORT",
            r.returncode != 0 and f"127.0.0.1:{port}" in r.stderr and "DEMO_PORT" in r.stderr
            and "Compiling" not in r.stderr + r.stdout and took < 60,
            f"exit {r.returncode} after {took:.1f} s: {r.stderr.strip()[-300:]}")
    env = dict(os.environ, DEMO_CONFIG="/nonexistent/litellm-exporter.yaml")
    r = subprocess.run([str(ROOT / "scripts" / "demo")], env=env, capture_output=True, text=True, timeout=120)
    c.check("scripts/demo: a missing DEMO_CONFIG file is named",
            r.returncode != 0 and "/nonexistent/litellm-exporter.yaml" in r.stderr,
            f"exit {r.returncode}: {r.stderr.strip()[-300:]}")


# ---- container ---------------------------------------------------------------------------------

def dockerfile(c, work):
    for name, ok, detail in check_dockerfile.checks():
        c.check(name, ok, detail)
    # The build stage's command on exactly the files the context delivers: proves the COPY lines
    # and .dockerignore leave nothing out that cargo needs (checked, not built, to stay quick;
    # the shared target directory keeps the dependencies compiled).
    ctx = work / "docker-context"
    for f in check_dockerfile.context_files():
        dest = ctx / f.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    env = dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target"), LITELLM_EXPORTER_REVISION="deploy-test")
    c.run("Dockerfile: the build context compiles (cargo check --locked --offline on exactly the copied files)",
          ["cargo", "check", "--locked", "--offline", "--quiet", "--bin", "litellm-exporter"], cwd=ctx, timeout=600, env=env)


# ---- Prometheus ----------------------------------------------------------------------------------

def enable_examples(text):
    """Uncomments the blocks between '# >>> example' and '# <<< example' (one '# ' per line)."""
    out, inside = [], False
    for line in text.splitlines():
        if re.match(r"\s*# >>> example", line):
            inside = True
            continue
        if re.match(r"\s*# <<< example", line):
            inside = False
            continue
        out.append(re.sub(r"^(\s*)# ?", r"\1", line, count=1) if inside else line)
    return "\n".join(out) + "\n"


def alert_names(text):
    return re.findall(r"(?m)^\s*- alert:\s*(\w+)", text)


def test_cases(text):
    """(alertname, fires?) for every alert_rule_test entry of a promtool test file."""
    out, current = [], None
    for line in text.splitlines():
        m = re.match(r"\s*alertname:\s*(\w+)", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"\s*exp_alerts:\s*(\[\])?\s*$", line)
        if m and current:
            out.append((current, m.group(1) is None))
            current = None
    return out


def prometheus(c, work):
    pdir = DEPLOY / "prometheus"
    c.run("promtool check config deploy/prometheus/prometheus.yml", ["promtool", "check", "config", "prometheus.yml"], cwd=pdir)
    # The commented examples (LiteLLM's own /metrics job, remote_write to Thanos) must be valid too.
    ex = work / "prometheus-examples"
    ex.mkdir(exist_ok=True)
    (ex / "prometheus.yml").write_text(enable_examples((pdir / "prometheus.yml").read_text()))
    if not (ex / "rules").exists():
        (ex / "rules").symlink_to(pdir / "rules")
    text = (ex / "prometheus.yml").read_text()
    c.check("prometheus.yml: examples enabled add the litellm job and remote_write",
            "job_name: litellm\n" in text and "\nremote_write:" in text and "url: http://thanos-receive" in text)
    c.run("promtool check config prometheus.yml with its examples enabled", ["promtool", "check", "config", "--syntax-only", "prometheus.yml"], cwd=ex)
    rules = sorted((pdir / "rules").glob("*.yml"))
    c.run("promtool check rules deploy/prometheus/rules/*.yml", ["promtool", "check", "rules", *map(str, rules)])
    tests = sorted((pdir / "tests").glob("*.test.yml"))
    for t in tests:
        c.run(f"promtool test rules {rel(t)}", ["promtool", "test", "rules", t.name], cwd=t.parent,
              ok_output=lambda out: "SUCCESS" in out)
    cases = [case for t in tests for case in test_cases(t.read_text())]
    for name in alert_names("".join(r.read_text() for r in rules)):
        fires = any(n == name and f for n, f in cases)
        quiet = any(n == name and not f for n, f in cases)
        c.check(f"alert {name} has a unit test where it fires and one where it does not", fires and quiet,
                f"fires: {fires}, quiet: {quiet}")
    c.run("deploy/kubernetes/base/prometheusrule.yaml is generated from the current rules",
          [sys.executable, str(HERE / "gen_prometheusrule.py"), "--check"])


# ---- Alertmanager -------------------------------------------------------------------------------

def alertmanager(c):
    cfg = DEPLOY / "alertmanager" / "alertmanager.yml"
    c.run("amtool check-config deploy/alertmanager/alertmanager.yml", ["amtool", "check-config", str(cfg)])
    severities = set(re.findall(r"(?m)^\s*severity:\s*(\w+)", (DEPLOY / "prometheus/rules/litellm-alerts.yml").read_text()))
    expected = {"critical": "pagerduty-critical", "warning": "pagerduty-warning", "info": "null"}
    c.check("every severity used by the alert rules has a route", severities <= set(expected), severities)
    for sev, receiver in list(expected.items()) + [(None, "null")]:
        labels = ["alertname=LiteLLMTest", "service=litellm"] + ([f"severity={sev}"] if sev else [])
        c.run(f"amtool config routes test: severity={sev} goes to {receiver}",
              ["amtool", "config", "routes", "test", f"--config.file={cfg}", "--verify.receivers=" + receiver, *labels])
    text = cfg.read_text()
    key_files = set(re.findall(r"routing_key_file:\s*(\S+)", text))
    compose = (DEPLOY / "docker-compose/compose.yaml").read_text()
    c.check("PagerDuty routing key comes from a file, and compose mounts the secret there",
            len(key_files) == 1 and f"target: {next(iter(key_files))}" in compose and "routing_key:" not in text, key_files)


# ---- docker compose ---------------------------------------------------------------------------

def compose(c):
    d = DEPLOY / "docker-compose"
    f = d / "compose.yaml"
    c.run("compose.yaml validates against the compose specification (check-jsonschema vendor.compose-spec)",
          ["check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(f)])
    c.run("compose.yaml follows the house rules (loopback ports, pinned images, read-only exporter built here)",
          ["check-jsonschema", "--schemafile", str(SCHEMAS / "policy-compose.json"), str(f)])
    text = f.read_text()
    mounts = re.findall(r"(?m)^\s*-\s*(\.{1,2}/[^:\s]+):", text) + re.findall(r"(?m)^\s*context:\s*(\S+)", text)
    missing = [m for m in mounts if not (d / m).exists()]
    c.check(f"compose.yaml: all {len(mounts)} bind-mount and build paths exist", mounts and not missing, missing)
    used = set(re.findall(r"\$\{(\w+)", text))
    env_example = (d / ".env.example").read_text()
    defined = set(re.findall(r"(?m)^#?\s*(\w+)=", env_example))
    c.check(".env.example names every variable compose.yaml uses", used <= defined, used - defined)
    c.run("traffic/traffic.sh is valid sh", ["sh", "-n", str(d / "traffic/traffic.sh")])
    cfg = (d / "litellm/config.yaml").read_text()
    models = len(re.findall(r"(?m)^\s*- model_name:", cfg))
    c.check("LiteLLM config: every model is a mock (no provider key needed)",
            models >= 1 and models == len(re.findall(r"(?m)^\s*mock_response:", cfg)) and "api_key" not in cfg)
    prom = (DEPLOY / "prometheus/prometheus.yml").read_text()
    c.check("prometheus.yml targets the compose services (litellm-exporter:10410, alertmanager:9093)",
            '"litellm-exporter:10410"' in prom and '"alertmanager:9093"' in prom
            and re.search(r"(?m)^  litellm-exporter:", text) and re.search(r"(?m)^  alertmanager:", text))
    providers = re.findall(r"path:\s*(\S+)", (DEPLOY / "grafana/provisioning/dashboards/litellm.yml").read_text())
    c.check("Grafana dashboard providers read the folders compose mounts",
            providers and all(re.search(rf":{re.escape(p)}(:ro)?$", text, re.M) for p in providers), providers)


# ---- Kubernetes ---------------------------------------------------------------------------------

def yaml_list(text, key):
    """Items of a block list under `key:` in a simple YAML file (the kustomizations here)."""
    items, indent = [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(rf"^(\s*)(- )?{key}:\s*$", line)
        if not m:
            continue
        base = len(m.group(1)) + (2 if m.group(2) else 0)
        for nxt in lines[i + 1:]:
            if not nxt.strip() or nxt.lstrip().startswith("#"):
                continue
            ind = len(nxt) - len(nxt.lstrip())
            if ind < base or (ind == base and not nxt.lstrip().startswith("- ")):
                break
            mm = re.match(r"^\s*-\s+([^\s#:]+)\s*$", nxt)
            if mm and (indent is None or ind == indent):
                indent = ind
                items.append(mm.group(1))
    return items


def split_docs(text):
    return [d for d in re.split(r"(?m)^---\s*$", text) if re.search(r"(?m)^kind:", d)]


def kind_of(doc):
    return re.search(r"(?m)^kind:\s*(\w+)", doc).group(1)


def validate_docs(c, label, docs, work, policy=None):
    """kubernetes-validate --strict for built-in kinds, the CRD schemas for the operator's kinds,
    and optionally an overlay policy for every document."""
    out = work / ("k8s-" + re.sub(r"\W+", "-", label))
    out.mkdir(parents=True, exist_ok=True)
    core, crd = [], {}
    for i, doc in enumerate(docs):
        p = out / f"{i:02d}-{kind_of(doc).lower()}.yaml"
        p.write_text(doc)
        (crd.setdefault(kind_of(doc), []) if kind_of(doc) in CRD_SCHEMAS else core).append(str(p))
    if core:
        c.run(f"kubernetes-validate --strict: {label} ({len(core)} objects)",
              ["kubernetes-validate", "--strict", "--quiet", *core], ok_output=lambda o: "WARN" not in o)
    for kind, files in sorted(crd.items()):
        c.run(f"{kind} matches its CRD schema: {label}", ["check-jsonschema", "--schemafile", str(CRD_SCHEMAS[kind]), *files])
    if policy:
        c.run(f"{label}: {policy.stem} (probes, non-root, read-only root, resources, state volume, selectors)",
              ["check-jsonschema", "--schemafile", str(policy), *core, *[f for fs in crd.values() for f in fs]])


def kustomize_capable_kubectl():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    try:
        out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Kustomize Version: v(\d+)", out)
    return kubectl if m and int(m.group(1)) >= 4 else None


def kubernetes(c, work):
    kdir = DEPLOY / "kubernetes"
    kustomizations = sorted(kdir.rglob("kustomization.yaml"))
    resource_files = set()
    for k in kustomizations:
        text = k.read_text()
        refs = yaml_list(text, "resources") + yaml_list(text, "files")
        refs += re.findall(r"(?m)^\s*(?:- )?path:\s*([^\s/]\S*)", text)  # patch files, not JSON-patch paths
        missing = [r for r in refs if not (k.parent / r).exists()]
        dirs_ok = all((k.parent / r / "kustomization.yaml").exists() for r in refs if (k.parent / r).is_dir())
        c.check(f"{rel(k)}: all {len(refs)} references exist", refs and not missing and dirs_ok, missing)
        resource_files |= {(k.parent / r).resolve() for r in yaml_list(text, "resources") if (k.parent / r).is_file()}
    # The overlays' exporter config: kustomize reads files only inside a kustomization's
    # directory, so each overlay holds a copy of deploy/litellm-exporter.yaml (the one compose
    # mounts and the live checks run); a copy that drifted would deploy other labels.
    shipped = (DEPLOY / "litellm-exporter.yaml").read_bytes()
    for overlay in ("standalone", "sidecar"):
        copy = kdir / "overlays" / overlay / "litellm-exporter.yaml"
        c.check(f"{rel(copy)} is identical to deploy/litellm-exporter.yaml",
                copy.exists() and copy.read_bytes() == shipped, "differs or missing: cp deploy/litellm-exporter.yaml " + rel(copy))
    # Each resource file on its own (what can be checked without kustomize), plus the example secret.
    for f in sorted(resource_files | {(kdir / "secret.example.yaml").resolve()}):
        validate_docs(c, rel(f), split_docs(f.read_text()), work)
    # Rendered, when kubectl with a kustomize of v4 or newer is installed (Debian's kubectl 1.20
    # bundles kustomize v2, which predates the `labels` field): the objects as applied.
    kubectl = kustomize_capable_kubectl()
    shapes = [("deploy/kubernetes", None), ("deploy/kubernetes/overlays/standalone", "policy-standalone.json"),
              ("deploy/kubernetes/overlays/sidecar", "policy-sidecar.json")]
    for path, policy in shapes:
        if not kubectl:
            print(f"skip kubectl kustomize {path} (no kubectl with kustomize v4+; files validated one by one above)")
            continue
        p = subprocess.run([kubectl, "kustomize", str(ROOT / path)], capture_output=True, text=True, timeout=60)
        if not c.check(f"kubectl kustomize {path} renders", p.returncode == 0, p.stderr):
            continue
        docs = split_docs(p.stdout)
        kinds = sorted(kind_of(d) for d in docs)
        c.check(f"{path} renders a Deployment, the metrics Service, a ServiceMonitor and a PrometheusRule",
                {"Deployment", "Service", "ServiceMonitor", "PrometheusRule"} <= set(kinds), kinds)
        validate_docs(c, f"rendered {path}", docs, work, SCHEMAS / policy if policy else None)
    if not kubectl:
        # Without rendering, the overlay policies still apply to the files that define the pods.
        validate_docs(c, "standalone files", split_docs((kdir / "overlays/standalone/deployment.yaml").read_text())
                      + split_docs((kdir / "base/service.yaml").read_text()), work, SCHEMAS / "policy-standalone.json")
        validate_docs(c, "sidecar files", split_docs((kdir / "overlays/sidecar/deployment.yaml").read_text()),
                      work, SCHEMAS / "policy-sidecar.json")


# ---- Grafana ------------------------------------------------------------------------------------

def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


# The only datasource reference a shipped dashboard may hold: a hard-coded uid leaves every panel
# empty in a Grafana whose Prometheus has another uid (an existing one the dashboards are imported into).
DS_VAR = {"type": "prometheus", "uid": "${datasource}"}


def datasource_refs(node, path=""):
    """(path, value) of every "datasource" key anywhere in a dashboard (panels, targets, variables,
    annotations, whatever a later edit adds)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "datasource":
                yield f"{path}.{k}", v
            yield from datasource_refs(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from datasource_refs(v, f"{path}[{i}]")


def datasource_variables(c, name, d, data, variables, prom_ds):
    """Every query goes through the $datasource variable, which defaults to the provisioned
    Prometheus (prom_ds: its name and uid; Grafana matches the saved value on either)."""
    ds_vars = [v for v in variables if v.get("type") == "datasource"]
    v = ds_vars[0] if len(ds_vars) == 1 else {}
    current = v.get("current") or {}
    c.check(f"{name}: one datasource variable $datasource of type prometheus, first, defaulting to the provisioned Prometheus",
            len(ds_vars) == 1 and v.get("name") == "datasource" and v.get("query") == "prometheus"
            and variables[0] is v and (current.get("text"), current.get("value")) == prom_ds, ds_vars)
    off = [f"{path}: {value}" for path, value in datasource_refs(d) if value != DS_VAR]
    # A panel, target or query variable without the key would use Grafana's default datasource.
    off += [f"panel {p.get('title')!r} has no targets" for p in data if not p.get("targets")]
    off += [f"panel {p.get('title')!r} has no datasource" for p in data if "datasource" not in p]
    off += [f"panel {p.get('title')!r} target {t.get('refId')} has no datasource"
            for p in data for t in p.get("targets", []) if "datasource" not in t]
    off += [f"variable ${v.get('name')} has no datasource" for v in variables if v.get("type") == "query" and "datasource" not in v]
    c.check(f"{name}: every panel, target and variable queries {DS_VAR['uid']} (no hard-coded datasource)", not off, off)


def grafana(c):
    gdir = DEPLOY / "grafana"
    c.run("dashboards/*.json are generated from dashboards.py", [sys.executable, str(gdir / "dashboards.py"), "--check"])
    ds_text = "".join(p.read_text() for p in (gdir / "provisioning/datasources").glob("*.yml"))
    prom = (gdir / "provisioning/datasources/prometheus.yml").read_text()
    c.check("Prometheus datasource: default, proxy access, http://prometheus:9090, uid prometheus",
            all(s in prom for s in ("isDefault: true", "access: proxy", "url: http://prometheus:9090", "uid: prometheus")))
    prom_ds = (re.search(r"(?m)^\s*- name:\s*(.+?)\s*$", prom).group(1), re.search(r"(?m)^\s*uid:\s*(\S+)", prom).group(1))
    c.check("optional PostgreSQL datasource is provisioned (read-only role, password from the environment)",
            "grafana-postgresql-datasource" in ds_text and "user: litellm_exporter" in ds_text and "$EXPORTER_DB_PASSWORD" in ds_text)
    uids = []
    for f in sorted((gdir / "dashboards").glob("*.json")):
        try:
            d = json.loads(f.read_text())
        except ValueError as e:
            c.check(f"{f.name}: valid JSON", False, e)
            continue
        c.check(f"{f.name}: valid JSON", True)
        uids.append(d.get("uid"))
        panels = list(walk_panels(d.get("panels", [])))
        ids = [p.get("id") for p in panels]
        c.check(f"{f.name}: {len(ids)} panels with unique ids", None not in ids and len(ids) == len(set(ids)), ids)
        data = [p for p in panels if p.get("type") != "row"]
        titles = [p.get("title") for p in data]
        c.check(f"{f.name}: panel titles are unique", len(titles) == len(set(titles)), titles)
        variables = d.get("templating", {}).get("list", [])
        datasource_variables(c, f.name, d, data, variables, prom_ds)
        defined = {v["name"] for v in variables}
        from promql import variable_names
        undefined = {n for p in data for t in p.get("targets", []) for n in variable_names(t.get("expr", ""))} - defined
        c.check(f"{f.name}: every $variable in a query is defined", not undefined, undefined)
        over = [p.get("title") for p in panels if p["gridPos"]["x"] + p["gridPos"]["w"] > 24]
        c.check(f"{f.name}: panels fit the 24-column grid", not over, over)
    c.check("dashboard uids are present and unique", None not in uids and len(uids) == len(set(uids)), uids)
