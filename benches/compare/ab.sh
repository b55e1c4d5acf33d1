#!/usr/bin/env bash
# Two builds of postern side by side on the open route, with the smallest
# Pingora proxy as the floor: did a change make the open route faster?
#
#   benches/compare/ab.sh OLD_POSTERN NEW_POSTERN     # 7 rounds x 8 s
#   ROUNDS=9 DURATION=10 benches/compare/ab.sh A B
#   HEADER="Connection: close" benches/compare/ab.sh A B   # a TLS handshake per request
#   MIXED=1 benches/compare/ab.sh A B   # keep-alive latency while others handshake
#
# MIXED=1: in each round, while 20 wrk connections request with
# "Connection: close" (a full handshake each), latency.rs sends RATE req/s
# (default 500) over 10 keep-alive connections and reports p50/p99: does a
# handshake stall the requests of established connections?
#
# Build the old one from a worktree of the old commit (`cargo build
# --release --bin postern`). Each round measures A, B, then the floor with
# wrk (50 connections, HTTP/1.1 keep-alive over TLS), so drift hits all
# three; the proxies share core 1, wrk and the upstream (nginx `return 200`)
# core 0. Prints each round, then the medians and the per-round ratios:
# single runs on a VM vary by ±30%, the ratios within a round much less.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
A=${1:?usage: ab.sh OLD_POSTERN NEW_POSTERN}
B=${2:?usage: ab.sh OLD_POSTERN NEW_POSTERN}
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-8}
HEADER=${HEADER:-}
MIXED=${MIXED:-}
RATE=${RATE:-500}
LATENCY="$root/target/release/examples/latency"
MINIMAL="$root/target/release/examples/pingora-minimal"
command -v wrk >/dev/null && [[ -x /usr/sbin/nginx ]] || {
  echo "ab: needs wrk and nginx (apt-get install wrk nginx)" >&2
  exit 1
}
(cd "$root" && cargo build --release --locked --quiet --example pingora-minimal --example latency)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/postern-ab.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  [[ -f $work/upstream.pid ]] && kill "$(cat "$work/upstream.pid")" 2>/dev/null || true
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT
cp "$root/certs/dev-fullchain.pem" "$work/cert.pem"
cp "$root/certs/dev-key.pem" "$work/key.pem"
cat >"$work/upstream.conf" <<EOC
worker_processes 1;
pid $work/upstream.pid;
error_log $work/upstream-error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server { listen 127.0.0.1:18081; location / { return 200 "ok\n"; } }
}
EOC
taskset -c 0 /usr/sbin/nginx -p "$work" -c "$work/upstream.conf" -e "$work/upstream-error.log"

declare -A port=([A]=19451 [B]=19452 [floor]=19453)
for side in A B; do
  cat >"$work/$side.toml" <<EOC
[gateway]
threads = 1
access_log = "off"
keepalive_timeout = "300s"
client_header_timeout = "300s"
upgrade_socket = "$work/$side.sock"

[[listeners]]
name = "https"
address = "127.0.0.1:${port[$side]}"
tls = true

[[tls.certificates]]
server_names = ["localhost"]
cert = "cert.pem"
key = "key.pem"

[upstreams.backend]
url = "http://127.0.0.1:18081"

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "backend"
EOC
done
RUST_LOG=warn taskset -c 1 "$A" run -c "$work/A.toml" >"$work/A.out" 2>&1 &
pids+=($!)
RUST_LOG=warn taskset -c 1 "$B" run -c "$work/B.toml" >"$work/B.out" 2>&1 &
pids+=($!)
taskset -c 1 "$MINIMAL" "127.0.0.1:${port[floor]}" "$work/cert.pem" "$work/key.pem" \
  127.0.0.1:18081 >"$work/floor.out" 2>&1 &
pids+=($!)
sleep 2

results="$work/results.txt"
for round in $(seq "$ROUNDS"); do
  for side in A B floor; do
    url="https://localhost:${port[$side]}/open"
    if [[ -n $MIXED ]]; then
      taskset -c 0 wrk -t1 -c20 -d"$((DURATION + 2))s" -H "Connection: close" "$url" >/dev/null &
      load=$!
      sleep 1
      out=$(taskset -c 0 "$LATENCY" "$url" "$RATE" "$DURATION" 10)
      wait "$load"
      p50=$(tr ' ' '\n' <<<"$out" | awk -F= '$1 == "p50_us" {print $2}')
      p99=$(tr ' ' '\n' <<<"$out" | awk -F= '$1 == "p99_us" {print $2}')
      echo "$round $side $p50 $p99" | tee -a "$results"
      continue
    fi
    rps=$(taskset -c 0 wrk -t1 -c50 -d"${DURATION}s" ${HEADER:+-H "$HEADER"} "$url" |
      awk '/Requests\/sec/ {print $2}')
    echo "$round $side $rps" | tee -a "$results"
  done
done
if [[ -n $MIXED ]]; then
  python3 - "$results" <<'EOP'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    _, side, p50, p99 = line.split()
    runs.setdefault(side, []).append((float(p50), float(p99)))
for side, values in runs.items():
    print(f"{side}: p50 median {statistics.median(v[0] for v in values):,.0f} µs, "
          f"p99 median {statistics.median(v[1] for v in values):,.0f} µs")
EOP
  exit 0
fi
python3 - "$results" <<'EOP'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    _, side, rps = line.split()
    runs.setdefault(side, []).append(float(rps))
a, b, floor = runs["A"], runs["B"], runs["floor"]
for side, values in runs.items():
    print(f"{side}: median {statistics.median(values):,.0f} req/s ({min(values):,.0f}-{max(values):,.0f})")
def ratio(x, y):
    return statistics.median([p / q for p, q in zip(x, y)])
print(f"B/A per round, median: {ratio(b, a):.3f}")
print(f"A/floor: {ratio(a, floor):.3f}  B/floor: {ratio(b, floor):.3f}")
EOP
