#!/usr/bin/env bash
# Memory of one or more postern binaries on the open route (TLS): resident
# bytes per idle keep-alive connection, and peak RSS under load.
#
#   benches/memory.sh BINARY...
#   IDLE_CONNS=10000 LOAD_CONNS=500 benches/memory.sh target/release/postern
#
# Per binary, a fresh process each time: RSS before and after holding
# IDLE_CONNS idle connections (benches/compare/idle_connections.py, one
# request each), then a new process's peak RSS (VmHWM) after LOAD_SECONDS of
# wrk over LOAD_CONNS connections. Memory does not depend on what else the
# machine runs, so builds can be compared on a busy machine.
# Needs: python3, wrk, nginx (the upstream).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
IDLE_CONNS=${IDLE_CONNS:-5000}
LOAD_CONNS=${LOAD_CONNS:-500}
LOAD_SECONDS=${LOAD_SECONDS:-10}
(($#)) || { echo "usage: memory.sh BINARY..." >&2; exit 2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/postern-memory.XXXXXX)
cleanup() {
  [[ -f $work/upstream.pid ]] && kill "$(cat "$work/upstream.pid")" 2>/dev/null || true
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
  server { listen 127.0.0.1:18083; location / { return 200 "ok\n"; } }
}
EOC
/usr/sbin/nginx -p "$work" -c "$work/upstream.conf" -e "$work/upstream-error.log"
cat >"$work/gateway.toml" <<EOC
[gateway]
threads = 1
access_log = "off"
keepalive_timeout = "300s"

[[listeners]]
name = "https"
address = "127.0.0.1:19462"
tls = true

[[tls.certificates]]
server_names = ["localhost"]
cert = "cert.pem"
key = "key.pem"

[upstreams.backend]
url = "http://127.0.0.1:18083"

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "backend"
EOC

start() { # binary -> pid in $pid
  RUST_LOG=warn "$1" run -c "$work/gateway.toml" >"$work/postern.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/19462) 2>/dev/null && break
    sleep 0.05
  done
  sleep 0.5
}
stop() { kill -INT "$pid"; wait "$pid" 2>/dev/null || true; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

for binary in "$@"; do
  start "$binary"
  before=$(status_kb "$pid" VmRSS)
  fifo="$work/idle.fifo"; rm -f "$fifo"; mkfifo "$fifo"
  python3 "$here/compare/idle_connections.py" 19462 "$IDLE_CONNS" <"$fifo" >"$work/idle.out" &
  holder=$!
  exec 4>"$fifo"
  until grep -q '^holding' "$work/idle.out" 2>/dev/null; do
    kill -0 "$holder" 2>/dev/null || { cat "$work/idle.out" >&2; exit 1; }
    sleep 0.2
  done
  sleep 1
  after=$(status_kb "$pid" VmRSS)
  exec 4>&-
  wait "$holder" || true
  stop
  start "$binary"
  wrk -t1 -c"$LOAD_CONNS" -d"${LOAD_SECONDS}s" https://localhost:19462/open >"$work/wrk.out"
  peak=$(status_kb "$pid" VmHWM)
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")
  stop
  echo "$binary: idle $(( (after - before) * 1024 / IDLE_CONNS )) B/connection ($IDLE_CONNS), start RSS ${before} KB, peak RSS under load ${peak} KB ($LOAD_CONNS connections, $rps req/s on a busy machine)"
done
