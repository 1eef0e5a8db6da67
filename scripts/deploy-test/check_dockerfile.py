#!/usr/bin/env python3
"""Static checks of the Dockerfile and .dockerignore (no Docker engine runs in CI, and hadolint is
not packaged): multi-stage, pinned base images, non-root USER, EXPOSE of the default port, a
HEALTHCHECK on /-/healthy run by a binary that the image contains, the exporter as exec-form
ENTRYPOINT, and a build context that holds what the COPY lines need and nothing bulky.

    python3 scripts/deploy-test/check_dockerfile.py   # standalone; also part of scripts/test-deploy
"""
import fnmatch
import json
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT = "10410"


def instructions(text):
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        if not buf and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip() and not buf.lstrip().startswith("#"):
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages(instrs):
    """Instructions grouped by FROM; ARGs before the first FROM give the image defaults."""
    args, result = {}, []
    for word, rest in instrs:
        if word == "ARG" and not result:
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append({"image": image, "name": name, "body": []})
        elif result:
            result[-1]["body"].append((word, rest))
    return result


def exec_form(rest):
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def copies(body):
    """(from_stage or None, sources, destination) for every COPY/ADD."""
    out = []
    for word, rest in body:
        if word not in ("COPY", "ADD"):
            continue
        tokens = shlex.split(rest)
        flags = [t for t in tokens if t.startswith("--")]
        paths = [t for t in tokens if not t.startswith("--")]
        src = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        out.append((src, paths[:-1], paths[-1]))
    return out


def ignored(path, patterns):
    """Docker's .dockerignore rule: the last matching pattern wins; a pattern matching a parent
    directory matches everything below it."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat[1:] if negate else pat
        pat = pat.strip("/")
        regex = fnmatch.translate(pat).replace(".*", "[^/]*")
        if any(re.match(regex, c) for c in candidates):
            result = not negate
    return result


def dockerignore_patterns():
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def checks():
    """Yields (name, ok, detail)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    st = stages(instructions(text))
    names = {s["name"] for s in st if s["name"]}
    final = st[-1] if st else {"image": "", "name": None, "body": []}
    body = final["body"]
    yield "Dockerfile: multi-stage (a build stage and a runtime stage)", len(st) >= 2 and st[0]["name"] is not None, f"{len(st)} stages"
    unpinned = [s["image"] for s in st if ":" not in s["image"].split("/")[-1] or s["image"].endswith(":latest")]
    yield "Dockerfile: every base image has a pinned tag", not unpinned, unpinned
    yield "Dockerfile: runtime image is small (distroless, slim, alpine or scratch)", \
        any(k in final["image"] for k in ("distroless", "slim", "alpine", "scratch")), final["image"]
    bad_from = [src for s in st for src, _, _ in copies(s["body"]) if src and src not in names]
    yield "Dockerfile: COPY --from names existing stages", not bad_from, bad_from

    users = [rest for word, rest in body if word == "USER"]
    user = users[-1].split(":")[0] if users else ""
    yield "Dockerfile: runtime stage runs as a non-root user", bool(user) and user not in ("0", "root"), users
    exposed = [p.split("/")[0] for word, rest in body if word == "EXPOSE" for p in rest.split()]
    yield f"Dockerfile: EXPOSE {PORT}", PORT in exposed, exposed

    in_image = {dest for _, _, dest in copies(body)}
    health = [rest for word, rest in body if word == "HEALTHCHECK"]
    cmd = exec_form(health[-1].split("CMD", 1)[1].strip()) if health and "CMD" in health[-1] else None
    yield "Dockerfile: HEALTHCHECK (exec form) on /-/healthy of the default port", \
        bool(cmd) and any(f":{PORT}/-/healthy" in c for c in cmd), health
    yield "Dockerfile: the HEALTHCHECK program is copied into the runtime image", bool(cmd) and cmd[0] in in_image, (cmd, sorted(in_image))

    entry = [exec_form(rest) for word, rest in body if word == "ENTRYPOINT"]
    entry = entry[-1] if entry else None
    yield "Dockerfile: ENTRYPOINT is the exporter binary in exec form (docker run IMAGE --db-url ...)", \
        bool(entry) and entry[0].endswith("/litellm-exporter") and entry[0] in in_image and len(entry) == 1, entry
    yield "Dockerfile: no CMD after the ENTRYPOINT (arguments come from docker run)", \
        not any(word == "CMD" for word, _ in body), ""

    patterns = dockerignore_patterns()
    context_sources = [p for s in st for src, srcs, _ in copies(s["body"]) if src is None for p in srcs]
    missing = [p for p in context_sources if not (ROOT / p).exists()]
    excluded = [p for p in context_sources if ignored(p, patterns)]
    yield "Dockerfile: every COPY source from the build context exists", not missing, missing
    yield ".dockerignore: keeps every COPY source in the build context", not excluded, excluded
    bulky = [p for p in ("target/release/litellm-exporter", ".git/HEAD", ".cache/x", "deploy/docker-compose/.env", "tests/it/main.rs",
                         "tools/seed/main.rs")
             if not ignored(p, patterns)]
    yield ".dockerignore: leaves target/, .git, .cache, tests, the traffic generator (tools/) and local .env files out", not bulky, bulky
    # The image ships the exporter only: the build stage builds that one binary (a plain
    # `cargo build` would also build litellm-seed, the traffic generator, which writes).
    builds = [rest for s in st for word, rest in s["body"] if word == "RUN" and "cargo build" in rest]
    yield "Dockerfile: the build stage builds only the exporter (cargo build ... --bin litellm-exporter)", \
        bool(builds) and all(re.search(r"cargo build [^&;]*--bin litellm-exporter(\s|$)", b) for b in builds) \
        and not any("litellm-seed" in rest for s in st for _, rest in s["body"]), builds


def context_files():
    """The files of the build context that the Dockerfile copies (for a cargo build check)."""
    st = stages(instructions((ROOT / "Dockerfile").read_text(encoding="utf-8")))
    patterns = dockerignore_patterns()
    out = []
    for s in st:
        for src, srcs, _ in copies(s["body"]):
            if src is not None:
                continue
            for p in srcs:
                base = ROOT / p
                files = [base] if base.is_file() else [f for f in base.rglob("*") if f.is_file()]
                out += [f for f in files if not ignored(str(f.relative_to(ROOT)), patterns)]
    return out


def main():
    failed = 0
    for name, ok, detail in checks():
        print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": {detail}"))
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
