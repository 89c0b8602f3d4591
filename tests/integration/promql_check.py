#!/usr/bin/python3
"""Checks that PromQL expressions return data through a real Prometheus' HTTP API.

Usage: promql_check.py PROMETHEUS_URL START_UNIX_TIME [--dashboard JSON]... [--rules YAML]...
                       [--expr EXPR]... [--skip-gpu]

Dashboard expressions (every "expr" of panels, targets and annotations, with Grafana's variables
put in) are asked over the range from START to now, as a dashboard asks them, and must return
at least one sample. Alert rules return data only while they fire, so for each rule every
vector selector in its expression (metric name with its matchers) must return data instead.
With --skip-gpu, expressions about GPUs (a machine without one has no GPU series) are left out.
Prints one line per expression; exits 1 if any returned nothing or failed.
"""
import json
import re
import sys
import time
import urllib.parse
import urllib.request

GRAFANA_VARIABLES = {
    "$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m", "${__rate_interval}": "1m",
    "$instance": ".*", "${instance}": ".*", "$experiment": ".*", "${experiment}": ".*",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}


def dashboard_exprs(path):
    found = []

    def walk(node, title):
        if isinstance(node, dict):
            title = node.get("title", title)
            for key, value in node.items():
                if key == "expr" and isinstance(value, str) and value.strip():
                    found.append((title, value))
                else:
                    walk(value, title)
        elif isinstance(node, list):
            for item in node:
                walk(item, title)

    walk(json.load(open(path)), "")
    return found


def selectors(expr):
    """The vector selectors of a PromQL expression: metric names with their matchers."""
    expr = re.sub(r"\b(on|by|without|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges: [10m]
    found = []
    for sel in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?", expr):
        name, after = sel.group(1), expr[sel.end():sel.end() + 1]
        if name in KEYWORDS or after == "(":
            continue
        found.append(name + (sel.group(2) or "").replace(" ", ""))
    return found


def rule_selectors(path):
    """Each alert's vector selectors, read from the rules file without a YAML parser."""
    found, name = [], ""
    for line in open(path):
        m = re.match(r"\s*- alert:\s*(\S+)", line)
        if m:
            name = m.group(1)
        m = re.match(r"\s*expr:\s*(.+)$", line)
        if m and name:
            found += [(name, sel) for sel in selectors(m.group(1))]
    return found


def query_range(url, expr, start, end):
    params = urllib.parse.urlencode(
        {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(body.get("error", "error"))
    return sum(len(series.get("values", [])) for series in body["data"]["result"])


def main(argv):
    url, start = argv[1].rstrip("/"), float(argv[2])
    exprs, skip_gpu, i = [], False, 3
    while i < len(argv):
        if argv[i] == "--dashboard":
            exprs += [("dashboard: " + t, e) for t, e in dashboard_exprs(argv[i + 1])]
            i += 2
        elif argv[i] == "--rules":
            exprs += [("alert " + n, s) for n, s in rule_selectors(argv[i + 1])]
            i += 2
        elif argv[i] == "--expr":
            exprs.append(("expr", argv[i + 1]))
            i += 2
        elif argv[i] == "--skip-gpu":
            skip_gpu = True
            i += 1
        else:
            sys.exit(f"promql_check.py: unknown argument {argv[i]}")
    if not exprs:
        sys.exit("promql_check.py: no expressions")
    failed, checked = 0, 0
    end = time.time()
    for where, expr in exprs:
        if skip_gpu and re.search(r"gpu", where + expr, re.IGNORECASE):
            print(f"skip  {where}: {expr}")
            continue
        query = expr
        for var, value in GRAFANA_VARIABLES.items():
            query = query.replace(var, value)
        checked += 1
        try:
            n = query_range(url, query, start, end)
        except Exception as e:  # a refused query is a failure like an empty one
            print(f"ERROR {where}: {expr}: {e}")
            failed += 1
            continue
        print(f"{'ok   ' if n else 'EMPTY'} {where}: {expr} ({n} samples)")
        failed += 0 if n else 1
    print(f"{checked - failed} of {checked} expressions returned data")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
