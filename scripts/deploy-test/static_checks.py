"""Offline checks of deploy/, the Dockerfile and .dockerignore with the real tools: promtool,
amtool, kubernetes-validate, check-jsonschema, kubectl's kustomize (when installed), cargo and the
exporter's own check-config."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import yaml  # PyYAML, installed with kubernetes-validate
except ImportError:
    yaml = None

import check_dockerfile
from checker import HERE, ROOT, rel

DEPLOY = ROOT / "deploy"
SCHEMAS = HERE / "schemas"
CRD_SCHEMAS = {"ServiceMonitor": SCHEMAS / "servicemonitor.json", "PrometheusRule": SCHEMAS / "prometheusrule.json"}


def run_all(c, work, bin_path):
    dockerfile(c, work)
    prometheus(c, work)
    alertmanager(c)
    compose(c)
    kubernetes(c, work)
    proxy_config(c, work, bin_path)
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
            models >= 1 and models == len(re.findall(r"(?m)^\s*mock_response:", cfg))
            and not re.search(r"(?m)^\s*api_key:", cfg))
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


# ---- the proxy's own config file -----------------------------------------------------------------
# The exporter is given the file the LiteLLM proxy runs, not a second file that could drift from
# it: compose mounts the proxy's config.yaml into both services, the sidecar overlay mounts the
# proxy's ConfigMap into both containers, the standalone overlay mounts the proxy's ConfigMap (the
# operator's, named in its deployment.yaml). Read with PyYAML (a dependency of
# kubernetes-validate), so that a mount or flag written another way is still found.

def flag_value(args, flag):
    """The value of `--flag=value` or `--flag value` in a command list, else None."""
    args = [str(a) for a in (args or [])]
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def compose_mounts(service):
    """(source, target, read_only) of a compose service's volumes, short or long syntax."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("source"), v.get("target"), bool(v.get("read_only"))))
        else:
            parts = str(v).split(":")
            out.append((parts[0], parts[1] if len(parts) > 1 else parts[0], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def env_names(env):
    """Variable names of a compose `environment` (map or list) or a container's `env`."""
    if isinstance(env, dict):
        return set(env)
    return {e["name"] if isinstance(e, dict) else str(e).split("=", 1)[0] for e in env or []}


def database_url_variable(proxy_cfg):
    """NAME of `general_settings.database_url: os.environ/NAME`, else None."""
    url = ((proxy_cfg or {}).get("general_settings") or {}).get("database_url")
    return url[len("os.environ/"):] if isinstance(url, str) and url.startswith("os.environ/") else None


def container(pod, name):
    return next((k for k in pod.get("containers", []) if k.get("name") == name), None)


def configmap_file(pod, cont, path):
    """(ConfigMap name, key, mounted read-only) of the file `path` in container `cont`, or
    (None, why). The most specific mount holding the path wins, as in the kubelet."""
    if not path:
        return None, "no such flag"
    volumes = {v.get("name"): v for v in pod.get("volumes", [])}
    for m in sorted(cont.get("volumeMounts", []), key=lambda m: -len(m.get("mountPath", ""))):
        mount = m.get("mountPath", "").rstrip("/")
        if m.get("subPath"):
            if mount != path:
                continue
            name_in_volume = m["subPath"]
        elif path.startswith(mount + "/"):
            name_in_volume = path[len(mount) + 1:]
        else:
            continue
        cm = (volumes.get(m.get("name")) or {}).get("configMap")
        if not cm:
            return None, f"{path} is on volume {m.get('name')!r}, which is not a ConfigMap"
        items = cm.get("items")
        key = next((i.get("key") for i in items if i.get("path") == name_in_volume), None) if items else name_in_volume
        if key is None:
            return None, f"ConfigMap {cm.get('name')!r} projects no key to {name_in_volume!r}"
        return (cm.get("name"), key, m.get("readOnly") is True), ""
    return None, f"no volume mount of container {cont.get('name')!r} holds {path}"


def deployment_pod(path, name=None):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Deployment"]
    d = next((d for d in docs if name is None or d["metadata"]["name"] == name), None)
    return d["spec"]["template"]["spec"] if d else {}


def family_lines(out):
    """The "Exported families and labels" lines of check-config's output."""
    return re.findall(r"(?m)^  (litellm_\w+ \[.*\])$", out)


def check_config_run(bin_path, path, env_vars):
    """check-config FILE in an environment holding only PATH and env_vars (stand-in values)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update({n: "postgresql://check-config@localhost:5432/litellm" for n in env_vars})
    p = subprocess.run([bin_path, "check-config", str(path)], capture_output=True, text=True, timeout=60, env=env)
    return p.returncode, p.stdout + p.stderr


def proxy_config(c, work, bin_path):
    if yaml is None:
        c.check("the proxy's config file checks read YAML", False,
                "python3 has no PyYAML module (it comes with kubernetes-validate; see scripts/test-deploy)")
        return
    # shape -> (the proxy config file it ships, the variables its exporter container sets)
    shipped = {}

    # docker compose: the exporter's --config.file is a read-only bind mount of the very file the
    # litellm service's --config names.
    d = DEPLOY / "docker-compose"
    services = yaml.safe_load((d / "compose.yaml").read_text())["services"]
    lit, exp = services.get("litellm", {}), services.get("litellm-exporter", {})
    lit_path, exp_path = flag_value(lit.get("command"), "--config"), flag_value(exp.get("command"), "--config.file")
    lit_src = next((s for s, t, _ in compose_mounts(lit) if t == lit_path), None)
    exp_mount = next(((s, ro) for s, t, ro in compose_mounts(exp) if t == exp_path), None)
    same = lit_src and exp_mount and (d / lit_src).resolve() == (d / exp_mount[0]).resolve()
    c.check("compose: the exporter's --config.file is the proxy's own config (the file the litellm service runs), mounted read-only",
            lit_src and same and exp_mount[1],
            f"litellm: --config {lit_path} from {lit_src}; litellm-exporter: --config.file {exp_path} from "
            f"{exp_mount[0] if exp_mount else None} (read-only: {exp_mount[1] if exp_mount else None})")
    if lit_src and (d / lit_src).is_file():
        shipped["compose"] = (d / lit_src, env_names(exp.get("environment")))
        var = database_url_variable(yaml.safe_load(shipped["compose"][0].read_text()))
        c.check(f"compose: the proxy config's database_url (os.environ/{var}) resolves in the exporter's container too",
                var is None or var in shipped["compose"][1], f"{var} not in the exporter's environment {sorted(shipped['compose'][1])}")

    # Kubernetes, sidecar: the exporter container's --config.file is on a read-only mount of the
    # ConfigMap, and key, that the litellm container's --config is on.
    kdir = DEPLOY / "kubernetes/overlays"
    pod = deployment_pod(kdir / "sidecar/deployment.yaml", "litellm")
    lit_c, exp_c = container(pod, "litellm") or {}, container(pod, "litellm-exporter") or {}
    lit_file, why_l = configmap_file(pod, lit_c, flag_value(lit_c.get("args"), "--config"))
    exp_file, why_e = configmap_file(pod, exp_c, flag_value(exp_c.get("args"), "--config.file"))
    c.check("sidecar: the exporter's --config.file is the proxy's own ConfigMap and key (the litellm container's --config), mounted read-only",
            lit_file and exp_file and lit_file[:2] == exp_file[:2] and exp_file[2],
            f"litellm: {lit_file or why_l}; litellm-exporter: {exp_file or why_e}")
    generated = yaml.safe_load((kdir / "sidecar/kustomization.yaml").read_text()).get("configMapGenerator") or []
    source = next((kdir / "sidecar" / lit_file[1] for g in generated
                   if lit_file and g.get("name") == lit_file[0] and lit_file[1] in (g.get("files") or [])), None)
    c.check("sidecar: that ConfigMap is generated from a file of the overlay, under that key",
            source is not None and source.is_file(), generated)
    if source is not None and source.is_file():
        shipped["sidecar"] = (source, env_names(exp_c.get("env")))
        var = database_url_variable(yaml.safe_load(source.read_text()))
        c.check(f"sidecar: the proxy config's database_url (os.environ/{var}) resolves in the exporter container too",
                var is None or var in shipped["sidecar"][1], f"{var} not in the exporter's env {sorted(shipped['sidecar'][1])}")

    # Kubernetes, standalone: the proxy's ConfigMap, which this overlay does not create (the
    # operator's LiteLLM has it), by default under the sidecar's name and key.
    pod = deployment_pod(kdir / "standalone/deployment.yaml", "litellm-exporter")
    exp_c = container(pod, "litellm-exporter") or {}
    std_file, why = configmap_file(pod, exp_c, flag_value(exp_c.get("args"), "--config.file"))
    ours = yaml.safe_load((kdir / "standalone/kustomization.yaml").read_text()).get("configMapGenerator") or []
    c.check("standalone: the exporter's --config.file is the proxy's ConfigMap (the sidecar's name and key, not one generated here), mounted read-only",
            std_file and lit_file and std_file[:2] == lit_file[:2] and std_file[2] and not ours,
            f"standalone: {std_file or why}; sidecar's proxy ConfigMap: {lit_file}; generated here: {ours}")
    example_patch(c, work)

    # The shipped proxy configs pass check-config as the exporter's containers see them, without a
    # warning, and export exactly what deploy/litellm-exporter.yaml selects (the labels every
    # dashboard, rule and alert was checked against).
    if not bin_path or not Path(bin_path).is_file():
        c.check("check-config on the shipped proxy configs", False, f"no exporter binary (--bin {bin_path})")
        return
    rc, out = check_config_run(bin_path, DEPLOY / "litellm-exporter.yaml", [])
    wanted = family_lines(out)
    c.check("check-config deploy/litellm-exporter.yaml passes", rc == 0 and wanted, f"exit {rc}: {out[-800:]}")
    c.check("both shipped proxy configs found (compose, sidecar)", set(shipped) == {"compose", "sidecar"}, sorted(shipped))
    for shape, (path, names) in sorted(shipped.items()):
        rc, out = check_config_run(bin_path, path, names)
        warnings = [line for line in out.splitlines() if line.startswith("warning:")]
        c.check(f"check-config {rel(path)} passes without a warning in the {shape} exporter's environment "
                f"({', '.join(sorted(names)) or 'no variables'})",
                rc == 0 and "valid" in out and not warnings, f"exit {rc}: {out[-800:]}")
        got = family_lines(out)
        c.check(f"{rel(path)} exports the families and labels of deploy/litellm-exporter.yaml",
                got and got == wanted, "\n".join(sorted(set(got) ^ set(wanted))) or "no families")


def example_patch(c, work):
    """The standalone kustomization's commented patch, enabled, points the exporter at another
    ConfigMap (LiteLLM's Helm chart's name): rendered with kubectl's kustomize."""
    kubectl = kustomize_capable_kubectl()
    if not kubectl:
        print("skip the standalone overlay's ConfigMap patch example (no kubectl with kustomize v4+)")
        return
    copy = work / "k8s-example"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(DEPLOY / "kubernetes", copy)
    k = copy / "overlays/standalone/kustomization.yaml"
    k.write_text(enable_examples(k.read_text()))
    p = subprocess.run([kubectl, "kustomize", str(k.parent)], capture_output=True, text=True, timeout=60)
    pods = [d["spec"]["template"]["spec"] for d in yaml.safe_load_all(p.stdout or "") if d and d.get("kind") == "Deployment"]
    pod = pods[0] if len(pods) == 1 else {}
    exp_c = container(pod, "litellm-exporter") or {}
    got, why = configmap_file(pod, exp_c, flag_value(exp_c.get("args"), "--config.file"))
    c.check("standalone: the kustomization's example patch renders and names the exporter's proxy ConfigMap",
            p.returncode == 0 and got is not None and got[0] == "litellm-litellm-helm-config" and got[1] == "config.yaml",
            p.stderr.strip() or f"{got or why}")


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
