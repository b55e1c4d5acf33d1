#!/usr/bin/env python3
"""Per-request costs from two callgrind profiles of the same binary.

    benches/callgrind-diff.py FULL.out BASE.out REQUESTS [--top N] [--match RE]
    benches/callgrind-diff.py FULL.out BASE.out REQUESTS --callers RE  # who calls RE

FULL and BASE are the two runs `PROFILES=DIR benches/instructions.sh BINARY`
keeps (REQUESTS and 10 requests over the same 10 connections); every figure
is (FULL - BASE) / (REQUESTS - 10), so start-up, handshakes and shutdown
cancel out, as in instructions.sh.

Prints three tables, per request:
  * functions by inclusive instructions (self + everything they call; a
    function inlined into its caller counts in the caller, as in
    callgrind_annotate --inclusive=yes), with calls per request;
  * source files by self instructions, inlined code counted in the file it
    was written in (callgrind's fi=/fe= records), so the split by crate holds
    under LTO;
  * the same summed by crate (the registry directory name, e.g.
    pingora-core-0.9.1, or the project crate, std, libc...).
"""
import re
import sys
from collections import defaultdict


def parse(path):
    names = {"fl": {}, "fn": {}, "ob": {}}
    kind_of = {"fl": "fl", "fi": "fl", "fe": "fl", "cfl": "fl", "cfi": "fl",
               "fn": "fn", "cfn": "fn", "ob": "ob", "cob": "ob"}
    self_fn = defaultdict(int)
    incl_fn = defaultdict(int)
    self_file = defaultdict(int)
    calls = defaultdict(int)
    edges = defaultdict(lambda: [0, 0])
    fn = fl = cur_file = cfn = None
    pending_call = None
    total = 0

    def name(key, value):
        table = names[kind_of[key]]
        m = re.match(r"\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "?")

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call is not None:
                    if pending_call != fn:
                        incl_fn[fn] += cost
                    edges[(fn, pending_call)][1] += cost
                    pending_call = None
                else:
                    self_fn[fn] += cost
                    incl_fn[fn] += cost
                    self_file[cur_file] += cost
                    total += cost
                continue
            key, _, value = line.partition("=")
            if key == "fn":
                fn = name(key, value)
                cur_file = fl
            elif key == "fl":
                fl = name(key, value)
                cur_file = fl
            elif key in ("fi", "fe"):
                cur_file = name(key, value)
            elif key == "cfn":
                cfn = name(key, value)
            elif key in ("cfi", "cfl", "ob", "cob"):
                name(key, value)
            elif key == "calls":
                count = int(value.split()[0])
                calls[cfn] += count
                edges[(fn, cfn)][0] += count
                pending_call = cfn
    return self_fn, incl_fn, self_file, calls, total, edges


CRATE = re.compile(r"/([A-Za-z0-9_\-]+-\d+\.\d+\.\d+[^/]*)/")


def crate_of(path):
    if path is None:
        return "?"
    m = CRATE.search(path)
    if m:
        return m.group(1)
    if "/rustc/" in path or "/library/" in path:
        return "rust std"
    m = re.search(r"/crates/([a-z_\-]+)/", path)
    if m:
        return "postern " + m.group(1)
    if "glibc" in path or "libc" in path or path.startswith("./"):
        return "glibc (" + path.split("/")[-1] + ")"
    return path


def main():
    args = sys.argv[1:]
    top = 60
    match = None
    callers = None
    if "--callers" in args:
        i = args.index("--callers")
        callers = re.compile(args[i + 1])
        del args[i:i + 2]
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i:i + 2]
    if "--match" in args:
        i = args.index("--match")
        match = re.compile(args[i + 1])
        del args[i:i + 2]
    full_path, base_path, requests = args
    n = int(requests) - 10
    full = parse(full_path)
    base = parse(base_path)
    per = lambda a, b, k: (a.get(k, 0) - b.get(k, 0)) / n
    total = (full[4] - base[4]) / n
    print(f"total: {total:,.0f} instructions/request\n")
    if callers:
        # Who calls the functions matching RE, per request: calls, inclusive cost.
        rows = []
        for key in set(full[5]) | set(base[5]):
            if not callers.search(key[1]):
                continue
            f, b = full[5].get(key, [0, 0]), base[5].get(key, [0, 0])
            rows.append(((f[1] - b[1]) / n, (f[0] - b[0]) / n, key))
        rows.sort(reverse=True)
        for cost, count, (caller, callee) in rows[:top]:
            print(f"{cost:10,.0f}  calls {count:6.2f}  {caller}  ->  {callee}")
        return

    print("## functions, inclusive per request (calls per request)")
    rows = [(per(full[1], base[1], k), k) for k in full[1]]
    rows.sort(reverse=True)
    shown = 0
    for cost, k in rows:
        if match and not match.search(k):
            continue
        calls = per(full[3], base[3], k)
        print(f"{cost:10,.0f} {100 * cost / total:5.1f}% self {per(full[0], base[0], k):9,.0f}"
              f"  calls {calls:6.2f}  {k}")
        shown += 1
        if shown >= top:
            break

    print("\n## source files, self per request (inlined code in its own file)")
    rows = [(per(full[2], base[2], k), k) for k in full[2]]
    rows.sort(key=lambda r: r[0], reverse=True)
    for cost, k in rows[:top]:
        print(f"{cost:10,.0f} {100 * cost / total:5.1f}%  {k}")

    print("\n## crates, self per request")
    crates = defaultdict(float)
    for k in set(full[2]) | set(base[2]):
        crates[crate_of(k)] += per(full[2], base[2], k)
    for k, cost in sorted(crates.items(), key=lambda r: r[1], reverse=True)[:top]:
        print(f"{cost:10,.0f} {100 * cost / total:5.1f}%  {k}")


if __name__ == "__main__":
    main()
