#!/usr/bin/env python3
"""Writes deploy/grafana/dashboards/*.json from the panel lists below (Python 3, stdlib only).

    python3 deploy/grafana/dashboards.py          # regenerate after editing this file
    python3 deploy/grafana/dashboards.py --check  # exit 1 if a JSON file differs (scripts/test-deploy)

Every panel, query and variable queries the datasource that the dashboard's $datasource variable
selects (type prometheus). Its saved value is the uid "prometheus" of the datasource that
provisioning/datasources/prometheus.yml provisions, so the compose stack opens on it; imported into
another Grafana, where no datasource has that uid, Grafana selects one of its own Prometheus
datasources instead and the user can switch (a hard-coded uid would leave every panel empty there).
scripts/deploy-test/static_checks.py fails on any other datasource reference. Expensive aggregations come from the recording rules in
deploy/prometheus/rules/litellm-recording.yml (names with colons); panels filtered by a template
variable query the raw series, which the filter already narrows.
"""
import json
import sys
from pathlib import Path

# What every panel, target and query variable points at: the $datasource variable below.
DS = {"type": "prometheus", "uid": "${datasource}"}
# The provisioned datasource the variable selects by default (provisioning/datasources/prometheus.yml).
DEFAULT_DS = {"name": "Prometheus", "uid": "prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards"


# ---- building blocks -------------------------------------------------------------------------

def target(expr, legend="", instant=False, table=False):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto"}
    if instant or table:
        t.update(instant=True, range=False)
    if table:
        t["format"] = "table"
    return t


def panel(kind, title, targets, unit="short", w=12, h=8, desc="", **extra):
    p = {"type": kind, "title": title, "description": desc, "datasource": DS,
         "gridPos": {"w": w, "h": h},
         "targets": [t if isinstance(t, dict) else target(*t) for t in targets],
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}}
    p.update(extra)
    return p


def timeseries(title, targets, unit="short", stack=False, **kw):
    custom = {"lineWidth": 1, "fillOpacity": 15 if stack else 5,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    p = panel("timeseries", title, targets, unit, **kw)
    p["fieldConfig"]["defaults"]["custom"] = custom
    p["options"] = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "lastNotNull"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}}
    return p


def stat(title, expr, unit="short", w=4, h=4, no_value=None, **kw):
    p = panel("stat", title, [target(expr, instant=True)], unit, w=w, h=h, **kw)
    if no_value:
        p["fieldConfig"]["defaults"]["noValue"] = no_value
    p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "none", "textMode": "auto"}
    return p


def bars(title, expr, legend, unit="short", **kw):
    p = panel("bargauge", title, [target(expr, legend, instant=True)], unit, **kw)
    p["options"] = {"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return p


def pie(title, expr, legend, unit="short", **kw):
    p = panel("piechart", title, [target(expr, legend, instant=True)], unit, **kw)
    p["options"] = {"pieType": "pie", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "legend": {"displayMode": "table", "placement": "right", "values": ["value", "percent"]}}
    return p


def table(title, columns, key_labels, w=24, h=9, units=None, data_links=None, **kw):
    """One instant query per column, merged into rows on the shared labels."""
    refs = "ABCDEFGHIJ"
    targets = []
    rename = {}
    for ref, (name, expr) in zip(refs, columns):
        t = target(expr, table=True)
        t["refId"] = ref
        targets.append(t)
        rename["Value #" + ref] = name
    p = panel("table", title, targets, w=w, h=h, **kw)
    p["transformations"] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {"Time": True},
                                       "indexByName": {k: i for i, k in enumerate(key_labels)},
                                       "renameByName": rename}},
    ]
    p["fieldConfig"]["overrides"] = [
        {"matcher": {"id": "byName", "options": col}, "properties": [{"id": "unit", "value": unit}]}
        for col, unit in (units or {}).items()]
    if data_links:
        p["fieldConfig"]["defaults"]["links"] = data_links
    p["options"] = {"showHeader": True, "cellHeight": "sm"}
    return p


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def datasource_variable():
    """The dashboard's Prometheus datasource. Grafana matches the saved value on uid (10.1 and later)
    or on name (earlier versions): both are the provisioned datasource's. Where none matches,
    Grafana selects one of the Prometheus datasources it has."""
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "regex": "", "refresh": 1, "hide": 0, "multi": False, "includeAll": False, "options": [],
            "current": {"selected": False, "text": DEFAULT_DS["name"], "value": DEFAULT_DS["uid"]}}


def variable(name, label, query, multi=True):
    v = {"name": name, "label": label, "type": "query", "datasource": DS,
         "definition": query, "query": query,
         "refresh": 2, "sort": 1, "regex": "", "multi": multi, "includeAll": multi}
    if multi:
        v["allValue"] = ".*"
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return v


def dashboard(uid, title, description, panels, variables=()):
    x = y = height = 0
    for i, p in enumerate(panels, start=1):  # left to right, wrapping at 24 columns
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24 or p["type"] == "row":
            x, y, height = 0, y + height, 0
        p["id"] = i
        p["gridPos"].update(x=x, y=y)
        x, height = x + w, max(height, h)
        for ref, t in zip("ABCDEFGHIJ", p.get("targets", [])):
            t.setdefault("refId", ref)
    return {
        "uid": uid, "title": title, "description": description,
        "tags": ["litellm", "litellm-exporter"], "editable": True, "graphTooltip": 1,
        "schemaVersion": 39, "version": 1, "timezone": "browser", "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "links": [{"type": "dashboards", "title": "LiteLLM", "tags": ["litellm-exporter"],
                   "asDropdown": True, "includeVars": True, "keepTime": True}],
        # First: the query variables below read their values through it.
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": panels,
    }


# ---- dashboards --------------------------------------------------------------------------------

RATE = "$__rate_interval"
TEAM = 'team_alias=~"$team"'
FILTER = 'team_alias=~"$team", api_key_alias=~"$key", user=~"$user", model=~"$model"'
P_LE = "sum by (le) (model_group_le:litellm_request_total_latency_metric_bucket:rate5m)"


def overview():
    return dashboard(
        "litellm-exporter-overview", "LiteLLM / Proxy overview",
        "Whole-proxy traffic, failures, latency and tokens from LiteLLM's database (litellm-exporter).",
        [
            row("Traffic"),
            stat("Requests / s", "sum(status_code:litellm_proxy_total_requests_metric:rate5m)", "reqps"),
            stat("Failed share", "sum(exception_class:litellm_proxy_failed_requests_metric:rate5m) / sum(status_code:litellm_proxy_total_requests_metric:rate5m)", "percentunit"),
            stat("p95 latency", f"histogram_quantile(0.95, {P_LE})", "s"),
            stat("Spend / hour", "sum(team_model:litellm_spend_metric:rate5m) * 3600", "currencyUSD"),
            stat("Tokens / s", "sum(team_model:litellm_input_tokens_metric:rate5m) + sum(team_model:litellm_output_tokens_metric:rate5m)"),
            stat("Cache hit share", f"sum(rate(litellm_cache_hits_metric_total[{RATE}])) / (sum(rate(litellm_cache_hits_metric_total[{RATE}])) + sum(rate(litellm_cache_misses_metric_total[{RATE}])))", "percentunit"),
            timeseries("Requests / s by status code", [("status_code:litellm_proxy_total_requests_metric:rate5m", "{{status_code}}")], "reqps", stack=True),
            timeseries("Failures / s by exception class", [("exception_class:litellm_proxy_failed_requests_metric:rate5m", "{{exception_class}}")], "reqps", stack=True),
            timeseries("Latency p50 / p95 / p99 (total, successful requests)", [
                (f"histogram_quantile(0.50, {P_LE})", "p50"),
                (f"histogram_quantile(0.95, {P_LE})", "p95"),
                (f"histogram_quantile(0.99, {P_LE})", "p99")], "s"),
            timeseries("p95 latency by model group", [("model_group:litellm_request_total_latency_seconds:p95_5m", "{{model_group}}")], "s"),
            timeseries("Tokens / s: input and output", [
                ("sum(team_model:litellm_input_tokens_metric:rate5m)", "input"),
                ("sum(team_model:litellm_output_tokens_metric:rate5m)", "output")], stack=True),
            timeseries("Deployment failure share", [("deployment:litellm_deployment_failure_ratio:rate5m", "{{litellm_model_name}} {{api_base}}")], "percentunit",
                       desc="Failed / all requests per deployment over 5 minutes; alerts at 25% (degraded) and 90% (outage)."),
            row("Exporter"),
            stat("Database reachable", "min(litellm_exporter_database_up)", desc="1 when the last refresh reached the database."),
            stat("Ready", "min(litellm_exporter_ready)", desc="1 once the start-up catch-up finished."),
            stat("Ingest lag", "max(litellm_exporter_ingest_lag_seconds)", "s", desc="Now minus the newest counted startTime; grows without traffic too."),
            stat("Since last refresh", "time() - max(litellm_exporter_last_refresh_success_timestamp_seconds)", "s"),
            stat("Rows ingested / s", f"sum(rate(litellm_exporter_rows_ingested_total[{RATE}]))", "rowsps"),
            stat("Series served", "sum(litellm_exporter_series)"),
            timeseries("Exporter errors / s by kind", [(f"sum by (kind) (rate(litellm_exporter_errors_total[{RATE}]))", "{{kind}}")], "ops"),
            timeseries("Refresh duration by source", [("max by (source) (litellm_exporter_refresh_duration_seconds)", "{{source}}")], "s"),
        ])


def teams():
    table_cols = [
        ("Budget left", f"min by (team, team_alias) (litellm_remaining_team_budget_metric{{{TEAM}}})"),
        ("Max budget", f"max by (team, team_alias) (litellm_team_max_budget_metric{{{TEAM}}})"),
        ("Used", f"1 - min by (team, team_alias) (litellm_remaining_team_budget_metric{{{TEAM}}}) / max by (team, team_alias) (litellm_team_max_budget_metric{{{TEAM}}})"),
        ("Hours to reset", f"max by (team, team_alias) (litellm_team_budget_remaining_hours_metric{{{TEAM}}})"),
        ("30-day projection", f"sum by (team, team_alias) (team:litellm_spend_metric:rate1d{{{TEAM}}}) * 86400 * 30"),
        ("Members", f"max by (team, team_alias) (litellm_team_members_metric{{{TEAM}}})"),
    ]
    units = {"Budget left": "currencyUSD", "Max budget": "currencyUSD", "Used": "percentunit",
             "Hours to reset": "h", "30-day projection": "currencyUSD"}
    link = [{"title": "Team drill-down", "url": "/d/litellm-exporter-team-drilldown?var-team=${__data.fields.team_alias}&${datasource:queryparam}&${__url_time_range}"}]
    return dashboard(
        "litellm-exporter-teams", "LiteLLM / Teams and budgets",
        "Spend, projections, cost share and budgets per team.",
        [
            stat("Spend in range", f'sum(increase(litellm_spend_metric_total{{{TEAM}, model=~"$model"}}[$__range]))', "currencyUSD", w=6),
            stat("30-day projection", f"sum(team:litellm_spend_metric:rate1d{{{TEAM}}}) * 86400 * 30", "currencyUSD", w=6,
                 desc="The last day's average spend rate times 30 days (no model filter)."),
            stat("Teams", "max(litellm_teams_count)", w=4),
            stat("Users", "max(litellm_total_users)", w=4),
            stat("Active users", "max(litellm_active_users)", w=4),
            timeseries("Spend / hour by team", [(f'sum by (team_alias) (team_model:litellm_spend_metric:rate5m{{{TEAM}, model=~"$model"}}) * 3600', "{{team_alias}}")], "currencyUSD", stack=True),
            pie("Cost share by team (range)", f'sum by (team_alias) (increase(litellm_spend_metric_total{{{TEAM}, model=~"$model"}}[$__range]))', "{{team_alias}}", "currencyUSD"),
            bars("30-day projection by team", f"sort_desc(sum by (team_alias) (team:litellm_spend_metric:rate1d{{{TEAM}}}) * 86400 * 30)", "{{team_alias}}", "currencyUSD"),
            timeseries("Spend trend (hourly average)", [(f"sum by (team_alias) (team:litellm_spend_metric:rate1h{{{TEAM}}}) * 3600", "{{team_alias}}")], "currencyUSD"),
            timeseries("Successful requests / s by model", [(f'sum by (model) (team_model:litellm_requests_metric:rate5m{{{TEAM}, model=~"$model"}})', "{{model}}")], "reqps", stack=True),
            pie("Model usage: tokens (range)", f'sum by (model) (increase(litellm_total_tokens_metric_total{{{TEAM}, model=~"$model"}}[$__range]))', "{{model}}"),
            table("Teams: budget left and time to reset", table_cols, ["team_alias", "team"], units=units,
                  desc="Budget gauges are current values from LiteLLM_TeamTable; teams without max_budget show +Inf left.",
                  data_links=link),
            table("Organizations", [
                ("Budget left", "min by (org_id, org_alias) (litellm_remaining_org_budget_metric)"),
                ("Max budget", "max by (org_id, org_alias) (litellm_org_max_budget_metric)"),
                ("Hours to reset", "max by (org_id, org_alias) (litellm_org_budget_remaining_hours_metric)"),
            ], ["org_alias", "org_id"], h=6, units={"Budget left": "currencyUSD", "Max budget": "currencyUSD", "Hours to reset": "h"}),
        ],
        [variable("team", "Team", "label_values(litellm_spend_metric_total, team_alias)"),
         variable("model", "Model", f"label_values(litellm_spend_metric_total{{{TEAM}}}, model)")])


def keys_users():
    key_sel = 'api_key_alias=~"$key"'
    allowed = 'litellm_api_key_rate_limit_allowed_metric{rate_limit_type="%s", ' + key_sel + "}"
    team_allowed = 'litellm_team_rate_limit_allowed_metric{rate_limit_type="%s", ' + TEAM + "}"
    # Every key and team has a budget gauge (+Inf without a budget): counting it gives an
    # "exists, with its current alias" series to filter and label the id-keyed recorded rates.
    key_alias = f"count by (hashed_api_key, api_key_alias) (litellm_remaining_api_key_budget_metric{{{key_sel}}})"
    team_alias = f"count by (team, team_alias) (litellm_remaining_team_budget_metric{{{TEAM}}})"

    def per_minute(observed, by, aliases):
        return f"{observed} * 60 * on ({by}) group_left ({'api_key_alias' if by == 'hashed_api_key' else 'team_alias'}) {aliases}"

    def headroom(observed, allowance, by):
        # 1 - observed per minute / allowance; idle keys (no request series yet) count as 0 used.
        alias = "api_key_alias" if by == "hashed_api_key" else "team_alias"
        return (f"1 - ({observed} * 60 or on ({by}) 0 * max by ({by}) ({allowance}))"
                f" / on ({by}) group_right max by ({by}, {alias}) ({allowance})")

    rpm, tpm = allowed % "requests", allowed % "tokens"
    t_rpm, t_tpm = team_allowed % "requests", team_allowed % "tokens"
    obs_k_req, obs_k_tok = "hashed_api_key:litellm_proxy_total_requests_metric:rate5m", "hashed_api_key:litellm_total_tokens_metric:rate5m"
    obs_t_req, obs_t_tok = "team:litellm_proxy_total_requests_metric:rate5m", "team:litellm_total_tokens_metric:rate5m"
    budget_units = {"Budget left": "currencyUSD", "Max budget": "currencyUSD", "Hours to reset": "h"}
    return dashboard(
        "litellm-exporter-keys-users", "LiteLLM / Keys and users",
        "Spend, budgets and rate-limit headroom per virtual key and per user.",
        [
            row("Spend"),
            timeseries("Spend / hour by key (top 10)", [(f"topk(10, sum by (api_key_alias) (rate(litellm_spend_metric_total{{{FILTER}}}[{RATE}]))) * 3600", "{{api_key_alias}}")], "currencyUSD"),
            timeseries("Spend / hour by user (top 10)", [(f"topk(10, sum by (user) (rate(litellm_spend_metric_total{{{FILTER}}}[{RATE}]))) * 3600", "{{user}}")], "currencyUSD"),
            bars("Top keys by spend (range)", f"topk(15, sum by (api_key_alias) (increase(litellm_spend_metric_total{{{FILTER}}}[$__range])))", "{{api_key_alias}}", "currencyUSD"),
            bars("Top users by spend (range)", f"topk(15, sum by (user) (increase(litellm_spend_metric_total{{{FILTER}}}[$__range])))", "{{user}}", "currencyUSD"),
            timeseries("Successful requests / s by key (top 10)", [(f"topk(10, sum by (api_key_alias) (rate(litellm_requests_metric_total{{{FILTER}}}[{RATE}])))", "{{api_key_alias}}")], "reqps"),
            timeseries("Tokens / s by user (top 10)", [(f"topk(10, sum by (user) (rate(litellm_total_tokens_metric_total{{{FILTER}}}[{RATE}])))", "{{user}}")]),
            row("Budgets"),
            table("Key budgets", [
                ("Budget left", f"min by (hashed_api_key, api_key_alias) (litellm_remaining_api_key_budget_metric{{{key_sel}}})"),
                ("Max budget", f"max by (hashed_api_key, api_key_alias) (litellm_api_key_max_budget_metric{{{key_sel}}})"),
                ("Hours to reset", f"max by (hashed_api_key, api_key_alias) (litellm_api_key_budget_remaining_hours_metric{{{key_sel}}})"),
            ], ["api_key_alias", "hashed_api_key"], w=12, units=budget_units,
                desc="Budget gauges carry no team label: filtered by key alias only. +Inf left: no max_budget."),
            table("User budgets", [
                ("Budget left", 'min by (user) (litellm_remaining_user_budget_metric{user=~"$user"})'),
                ("Max budget", 'max by (user) (litellm_user_max_budget_metric{user=~"$user"})'),
                ("Hours to reset", 'max by (user) (litellm_user_budget_remaining_hours_metric{user=~"$user"})'),
            ], ["user"], w=12, units=budget_units),
            row("Rate-limit headroom: rpm_limit / tpm_limit against what was logged over 5 minutes"),
            table("Keys: requests per minute", [
                ("Observed rpm", per_minute(obs_k_req, "hashed_api_key", key_alias)),
                ("Allowed rpm", f"max by (hashed_api_key, api_key_alias) ({rpm})"),
                ("Headroom", headroom(obs_k_req, rpm, "hashed_api_key")),
            ], ["api_key_alias", "hashed_api_key"], w=12, units={"Headroom": "percentunit"},
                desc="Observed counts logged requests; LiteLLM's live counters (litellm_api_key_rate_limit_used_metric) are not in the database. Empty allowance: no rpm_limit."),
            table("Keys: tokens per minute", [
                ("Observed tpm", per_minute(obs_k_tok, "hashed_api_key", key_alias)),
                ("Allowed tpm", f"max by (hashed_api_key, api_key_alias) ({tpm})"),
                ("Headroom", headroom(obs_k_tok, tpm, "hashed_api_key")),
            ], ["api_key_alias", "hashed_api_key"], w=12, units={"Headroom": "percentunit"}),
            table("Teams: requests and tokens per minute", [
                ("Observed rpm", per_minute(obs_t_req, "team", team_alias)),
                ("Allowed rpm", f"max by (team, team_alias) ({t_rpm})"),
                ("Rpm headroom", headroom(obs_t_req, t_rpm, "team")),
                ("Observed tpm", per_minute(obs_t_tok, "team", team_alias)),
                ("Allowed tpm", f"max by (team, team_alias) ({t_tpm})"),
                ("Tpm headroom", headroom(obs_t_tok, t_tpm, "team")),
            ], ["team_alias", "team"], units={"Rpm headroom": "percentunit", "Tpm headroom": "percentunit"}),
            timeseries("Requests per minute against rpm_limit (top 10 keys)", [
                (f"topk(10, {per_minute(obs_k_req, 'hashed_api_key', key_alias)})", "{{api_key_alias}} logged"),
                (f"max by (api_key_alias) ({rpm}) and on (api_key_alias) topk(10, {per_minute(obs_k_req, 'hashed_api_key', key_alias)})", "{{api_key_alias}} limit")]),
            timeseries("Tokens per minute against tpm_limit (top 10 keys)", [
                (f"topk(10, {per_minute(obs_k_tok, 'hashed_api_key', key_alias)})", "{{api_key_alias}} logged"),
                (f"max by (api_key_alias) ({tpm}) and on (api_key_alias) topk(10, {per_minute(obs_k_tok, 'hashed_api_key', key_alias)})", "{{api_key_alias}} limit")]),
        ],
        [variable("team", "Team", "label_values(litellm_spend_metric_total, team_alias)"),
         variable("key", "Key alias", f"label_values(litellm_spend_metric_total{{{TEAM}}}, api_key_alias)"),
         variable("user", "User", f"label_values(litellm_spend_metric_total{{{TEAM}}}, user)"),
         variable("model", "Model", f"label_values(litellm_spend_metric_total{{{TEAM}}}, model)")])


def team_drilldown():
    T = 'team_alias="$team"'
    TM = T + ', model=~"$model"'
    return dashboard(
        "litellm-exporter-team-drilldown", "LiteLLM / Team drill-down",
        "One team: who uses it, which models, and what each costs per 1k tokens.",
        [
            stat("Spend in range", f"sum(increase(litellm_spend_metric_total{{{TM}}}[$__range]))", "currencyUSD"),
            stat("Budget left", f"min(litellm_remaining_team_budget_metric{{{T}}})", "currencyUSD", desc="+Inf: no max_budget."),
            stat("Hours to budget reset", f"max(litellm_team_budget_remaining_hours_metric{{{T}}})", "h", no_value="no reset date"),
            stat("Active users (range)", f"count(sum by (user) (increase(litellm_requests_metric_total{{{TM}}}[$__range])) > 0)"),
            stat("Successful requests in range", f"sum(increase(litellm_requests_metric_total{{{TM}}}[$__range]))"),
            stat("$ per 1k tokens", f"sum(increase(litellm_spend_metric_total{{{TM}}}[$__range])) / sum(increase(litellm_total_tokens_metric_total{{{TM}}}[$__range])) * 1000", "currencyUSD"),
            row("Users"),
            table("Per-user engagement (range)", [
                ("Requests", f"sum by (user) (increase(litellm_requests_metric_total{{{TM}}}[$__range]))"),
                ("Failed", f"sum by (user) (increase(litellm_proxy_failed_requests_metric_total{{{T}}}[$__range]))"),
                ("Spend", f"sum by (user) (increase(litellm_spend_metric_total{{{TM}}}[$__range]))"),
                ("Tokens", f"sum by (user) (increase(litellm_total_tokens_metric_total{{{TM}}}[$__range]))"),
                ("Keys used", f"count by (user) (sum by (user, hashed_api_key) (increase(litellm_requests_metric_total{{{TM}}}[$__range])) > 0)"),
            ], ["user"], units={"Spend": "currencyUSD"}),
            timeseries("Requests / s by user (top 10)", [(f"topk(10, sum by (user) (rate(litellm_requests_metric_total{{{TM}}}[{RATE}])))", "{{user}}")], "reqps"),
            timeseries("Spend / hour by user (top 10)", [(f"topk(10, sum by (user) (rate(litellm_spend_metric_total{{{TM}}}[{RATE}]))) * 3600", "{{user}}")], "currencyUSD"),
            row("Models"),
            table("Model comparison (range)", [
                ("Requests", f"sum by (model) (increase(litellm_requests_metric_total{{{TM}}}[$__range]))"),
                ("Spend", f"sum by (model) (increase(litellm_spend_metric_total{{{TM}}}[$__range]))"),
                ("$ per 1k tokens", f"sum by (model) (increase(litellm_spend_metric_total{{{TM}}}[$__range])) / sum by (model) (increase(litellm_total_tokens_metric_total{{{TM}}}[$__range])) * 1000"),
                ("p95 latency", f"histogram_quantile(0.95, sum by (model, le) (rate(litellm_request_total_latency_metric_bucket{{{TM}}}[$__range])))"),
                ("Output tokens / request", f"sum by (model) (increase(litellm_output_tokens_metric_total{{{TM}}}[$__range])) / sum by (model) (increase(litellm_requests_metric_total{{{TM}}}[$__range]))"),
            ], ["model"], units={"Spend": "currencyUSD", "$ per 1k tokens": "currencyUSD", "p95 latency": "s"}),
            timeseries("Spend / hour by model", [(f"sum by (model) (team_model:litellm_spend_metric:rate5m{{{TM}}}) * 3600", "{{model}}")], "currencyUSD", stack=True),
            timeseries("Cost efficiency: $ per 1k tokens by model", [(
                f"sum by (model) (team_model:litellm_spend_metric:rate5m{{{TM}}})"
                f" / (sum by (model) (team_model:litellm_input_tokens_metric:rate5m{{{TM}}}) + sum by (model) (team_model:litellm_output_tokens_metric:rate5m{{{TM}}})) * 1000",
                "{{model}}")], "currencyUSD"),
            timeseries("p95 latency by model", [(f"histogram_quantile(0.95, sum by (model, le) (rate(litellm_request_total_latency_metric_bucket{{{TM}}}[{RATE}])))", "{{model}}")], "s"),
            timeseries("Failures / s by exception class", [(f"sum by (exception_class) (rate(litellm_proxy_failed_requests_metric_total{{{T}}}[{RATE}]))", "{{exception_class}}")], "reqps"),
        ],
        # Teams as LiteLLM_TeamTable has them (current aliases), not "None" for requests without one.
        [variable("team", "Team", "label_values(litellm_remaining_team_budget_metric, team_alias)", multi=False),
         variable("model", "Model", f"label_values(litellm_spend_metric_total{{{T}}}, model)")])


DASHBOARDS = {
    "litellm-overview.json": overview,
    "litellm-teams-budgets.json": teams,
    "litellm-keys-users.json": keys_users,
    "litellm-team-drilldown.json": team_drilldown,
}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, build in DASHBOARDS.items():
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run python3 deploy/grafana/dashboards.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
