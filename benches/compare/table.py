#!/usr/bin/env python3
"""Prints run.sh's results as one Markdown table: medians, min-max spread,
and the ratios the benchmark issue sets as targets (reported, not asserted).

    python3 benches/compare/table.py benches/compare/results/latest.csv
"""
import csv
import statistics
import sys
from collections import defaultdict


def load(path):
    """Values per (scenario, target, metric), and the same keyed by round."""
    values = defaultdict(list)
    by_run = defaultdict(dict)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["value"]:
                key = (row["scenario"], row["target"], row["metric"])
                values[key].append(float(row["value"]))
                by_run[key][row["run"]] = float(row["value"])
    return values, by_run


def main():
    path = sys.argv[1]
    values, by_run = load(path)
    try:
        with open(path + ".meta") as f:
            for line in f:
                print(line.rstrip().lstrip("# "))
        print()
    except FileNotFoundError:
        pass

    def median(scenario, target, metric):
        v = values.get((scenario, target, metric))
        return statistics.median(v) if v else None

    def spread(scenario, target, metric, unit):
        v = values.get((scenario, target, metric))
        if not v:
            return "n/a"
        fmt = (lambda x: f"{x:,.0f}") if max(v) >= 100 else (lambda x: f"{x:,.1f}")
        return f"{fmt(statistics.median(v))} {unit} ({fmt(min(v))}–{fmt(max(v))}, n={len(v)})"

    targets = ("postern", "nginx", "pingora", "haproxy", "caddy", "direct")
    # run.sh's ALT: another build of postern, measured as one more target.
    # (pool and limited name their paired cases as targets: not builds.)
    compared = {"open", "h2", "basic", "jwt", "handshake", "latency", "idle_memory"}
    alts = sorted({t for (s, t, _) in values if s in compared} - set(targets))
    targets = ("postern", *alts) + targets[1:]
    headers = ["postern", *alts, "nginx", "pingora (floor)", "haproxy", "caddy", "direct"]
    print("| scenario | " + " | ".join(headers) + " |")
    print("|---" * (len(headers) + 1) + "|")
    rows = [
        ("open route, HTTP/1.1 keep-alive", "open", "rps", "req/s"),
        ("open route, HTTP/2", "h2", "rps", "req/s"),
        ("basic auth (bcrypt cost 10)", "basic", "rps", "req/s"),
        ("JWT RS256", "jwt", "rps", "req/s"),
        ("new TLS connection per request", "handshake", "rps", "req/s"),
        ("latency p50 at fixed rate", "latency", "p50_us", "µs"),
        ("latency p99 at fixed rate", "latency", "p99_us", "µs"),
        ("memory per idle TLS connection", "idle_memory", "bytes_per_conn", "B"),
        ("rate limit never reached", "limited", "rps", "req/s"),
        ("rate limit never reached, shared (Redis)", "limited_shared", "rps", "req/s"),
        ("latency p50, open route", "latency_open", "p50_us", "µs"),
        ("latency p50, local limit", "latency_limited", "p50_us", "µs"),
        ("latency p50, shared limit (Redis)", "latency_shared", "p50_us", "µs"),
    ]
    for label, scenario, metric, unit in rows:
        cells = [spread(scenario, t, metric, unit) for t in targets]
        print(f"| {label} | " + " | ".join(cells) + " |")

    print()
    print("| target | measured | goal | met |")
    print("|---|---|---|---|")

    def ratio(a, b):
        return a / b if a is not None and b else None

    def paired(scenario, a, b, metric="rps"):
        """Median over rounds of a/b measured back to back in the same round."""
        ra, rb = by_run.get((scenario, a, metric), {}), by_run.get((scenario, b, metric), {})
        ratios = [ra[r] / rb[r] for r in ra if r in rb and rb[r]]
        return statistics.median(ratios) if ratios else None

    def line(name, measured, goal, ok, fmt="{:.2f}x"):
        shown = fmt.format(measured) if measured is not None else "n/a"
        met = "n/a" if measured is None else ("yes" if ok(measured) else "**no**")
        print(f"| {name} | {shown} | {goal} | {met} |")

    def open_vs(peer):
        return ratio(median("open", "postern", "rps"), median("open", peer, "rps"))

    def added(target, metric):
        p, d = median("latency", target, metric), median("latency", "direct", metric)
        return p - d if p is not None and d is not None else None

    # The performance issue's targets (ratios of medians within one run).
    line("open route throughput vs nginx", open_vs("nginx"), ">= 0.7x", lambda r: r >= 0.7)
    line("open route vs the Pingora floor", open_vs("pingora"), ">= 1.0x", lambda r: r >= 1.0)
    line("open route vs Caddy", open_vs("caddy"), ">= 2.0x", lambda r: r >= 2.0)
    line("HTTP/2 open route vs nginx",
         ratio(median("h2", "postern", "rps"), median("h2", "nginx", "rps")),
         ">= 0.6x", lambda r: r >= 0.6)
    nginx_p50 = added("nginx", "p50_us")
    line("added p50 latency over direct (nginx's in the goal)", added("postern", "p50_us"),
         f"<= {nginx_p50:.0f} µs" if nginx_p50 is not None else "<= nginx's",
         lambda us: nginx_p50 is not None and us <= nginx_p50, "{:.0f} µs")
    line("added p99 latency over direct", added("postern", "p99_us"), "<= 1000 µs",
         lambda us: us <= 1000, "{:.0f} µs")
    line("memory per idle TLS connection vs nginx",
         ratio(median("idle_memory", "postern", "bytes_per_conn"),
               median("idle_memory", "nginx", "bytes_per_conn")),
         "<= 1.2x", lambda r: r <= 1.2)
    line("JWT route vs postern's open route",
         ratio(median("jwt", "postern", "rps"), median("open", "postern", "rps")),
         ">= 0.95x", lambda r: r >= 0.95)
    line("basic-auth route vs nginx",
         ratio(median("basic", "postern", "rps"), median("basic", "nginx", "rps")),
         ">= 50x", lambda r: r >= 50)
    line("open route over a pool of three vs one server (paired rounds)",
         paired("pool", "postern-3-servers", "postern-1-server"),
         ">= 0.97x", lambda r: r >= 0.97)
    line("nginx: pool of three vs one server (no target; for reference)",
         paired("pool", "nginx-3-servers", "nginx-1-server"), "—", lambda r: True)
    line("never-reached rate limit vs the open route (paired rounds)",
         paired("limited", "postern", "postern-open"),
         ">= 0.97x", lambda r: r >= 0.97)

    def over_open(scenario):
        a, b = median(scenario, "postern", "p50_us"), median("latency_open", "postern", "p50_us")
        return a - b if a is not None and b is not None else None

    line("p50 added by a shared (Redis) limit (no target; for reference)",
         over_open("latency_shared"), "—", lambda us: True, "{:.0f} µs")
    line("handshakes per second vs nginx (no target; for reference)",
         ratio(median("handshake", "postern", "rps"), median("handshake", "nginx", "rps")),
         "—", lambda r: True)
    line("open route vs HAProxy (no target; for reference)", open_vs("haproxy"),
         "—", lambda r: True)
    line("open route: the Pingora floor vs nginx (no target; for reference)",
         ratio(median("open", "pingora", "rps"), median("open", "nginx", "rps")),
         "—", lambda r: True)

    # An alternative build against the release build, scenario by scenario:
    # medians of the ratios within each round (the two run back to back).
    for alt in alts:
        print()
        print(f"| {alt} / postern, paired rounds | ratio |")
        print("|---|---|")
        for label, scenario, metric, _ in rows:
            r = paired(scenario, alt, "postern", metric)
            if r is not None:
                print(f"| {label} | {r:.3f} |")


if __name__ == "__main__":
    main()
