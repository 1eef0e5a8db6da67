"""PromQL text helpers for the deploy tests: Grafana variable substitution, the metric families an
expression reads, and splitting an alert expression into the operands that should have data."""
import re

# Grafana's built-in interval variables, sized for the test Prometheus (1 s scrapes, about a
# minute of data): $__rate_interval is Grafana's max(4 x scrape interval, $__interval + scrape).
BUILTINS = {
    "__rate_interval": "20s", "__interval": "5s", "__interval_ms": "5000",
    "__range": "1m", "__range_s": "60", "__range_ms": "60000",
}
ALL = object()  # a multi-value variable left at "All"

_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_MATCHER_OPEN = re.compile(r'(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*$')


def promql_string(value):
    """Escapes a value for a double-quoted PromQL string."""
    return (value.replace("\\", "\\\\").replace('"', '\\"')
            .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))


def regex_literal(value):
    """Escapes RE2 metacharacters, so that =~ matches the value literally."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


def substitute(expr, variables):
    """Replaces $var, ${var} and [[var]] the way Grafana's Prometheus datasource does in effect:
    inside a =~ / !~ matcher a value is a regex (escaped), inside = / != a plain string; a
    variable at "All" becomes its allValue. variables: name -> (value or ALL, allValue)."""
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name not in variables:
            raise KeyError(f"unknown variable ${name}")
        value, all_value = variables[name]
        ctx = _MATCHER_OPEN.search(expr[:m.start()])
        if value is ALL:
            return all_value
        if ctx and ctx.group(1) in ("=~", "!~"):
            return promql_string(regex_literal(value))
        if ctx:
            return promql_string(value)
        return value
    return _VAR.sub(repl, expr)


def variable_names(expr):
    return {m.group(1) or m.group(2) or m.group(3) for m in _VAR.finditer(expr)} - set(BUILTINS)


def families(expr, served=frozenset()):
    """LiteLLM metric families an expression reads: "_total" dropped, and "_bucket", "_sum",
    "_count" too where they are a histogram's series (a served gauge such as litellm_teams_count
    keeps its name). Label names in by(...), on(...) and the like are not metrics."""
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    out = set()
    for name in re.findall(r"(?<![\w:])(litellm_[A-Za-z0-9_]+)(?![\w:])", expr):
        name = re.sub(r"_total$", "", name)
        stem = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in served:
            out.add(name)
        elif stem != name and (stem in served or name.endswith("_bucket")):
            out.add(stem)
        else:
            out.add(name)
    return out


def _top_level(expr):
    """Yields (index, char) of characters outside brackets and strings."""
    depth, quote, i = 0, None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            yield i, c
        i += 1


def split_set_operators(expr):
    """Operands of top-level and / or / unless, without their on(...)/ignoring(...) modifiers."""
    cuts = []
    top = dict(_top_level(expr))
    for m in re.finditer(r"(?<![\w:])(and|or|unless)(?![\w:])", expr):
        if m.start() in top:
            cuts.append((m.start(), m.end()))
    parts, start = [], 0
    for a, b in cuts:
        parts.append(expr[start:a])
        start = b
    parts.append(expr[start:])
    cleaned = []
    for p in parts:
        p = re.sub(r"^\s*(on|ignoring)\s*\([^)]*\)", "", p)
        cleaned.append(p.strip())
    return cleaned


def strip_comparison(expr):
    """The left side of the first top-level comparison (what a threshold is applied to)."""
    for i, c in _top_level(expr):
        two = expr[i:i + 2]
        if two in ("==", "!=", ">=", "<="):
            return expr[:i].strip()
        if c in "<>":
            return expr[:i].strip()
    return expr.strip()


def alert_operands(expr):
    """Sub-expressions of an alert that must return data on a healthy, busy system (thresholds
    removed), and those that must not (absent(): the target exists)."""
    must, must_not = [], []
    for part in split_set_operators(expr):
        (must_not if part.startswith("absent(") else must).append(strip_comparison(part))
    return must, must_not
