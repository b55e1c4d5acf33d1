#!/usr/bin/env bash
# CPU instructions per proxied request on the open route (HTTP/1.1
# keep-alive over TLS), counted by valgrind's callgrind, for one or more
# postern binaries.
#
#   benches/instructions.sh BINARY...          # e.g. builds with other allocators or profiles
#   REQUESTS=20000 benches/instructions.sh target/release/postern
#   ROUTE=pool benches/instructions.sh target/release/postern
#     ROUTE: open (default, one server), pool (a pool of three servers,
#     round robin) or limited (behind a local rate limit it never reaches):
#     the cost of balancing and of a limit, as benches/compare's `pool` and
#     `limited` scenarios measure in req/s.
#   PROFILES=DIR benches/instructions.sh BINARY  # keep the callgrind files in DIR
#                                                # (benches/callgrind-diff.py reads them)
#
# A binary named pingora-minimal (`cargo build --release --example
# pingora-minimal`, the floor) is started with its own arguments, one
# runtime without work stealing like postern's, on the same ports.
#
# Instruction counts, unlike req/s, do not depend on what else the machine
# runs: the same binary and inputs give the same figure within a fraction of
# a percent, so two builds can be compared on a busy machine. They miss
# cache and memory effects (an allocator that touches less memory wins more
# in req/s than here), so a change adopted on this figure is checked with
# benches/compare/ab.sh on a quiet machine too.
#
# For each binary: one run sends REQUESTS requests over 10 connections, a
# second only one request per connection (same handshakes, same start-up
# and shutdown); the figure is the difference / (REQUESTS - 10).
# Needs: valgrind, h2load (nghttp2-client), nginx (the upstream).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
REQUESTS=${REQUESTS:-5000}
ROUTE=${ROUTE:-open}
case $ROUTE in open | pool | limited) ;; *) echo "instructions: ROUTE is open, pool or limited" >&2; exit 2 ;; esac
(($#)) || { echo "usage: instructions.sh BINARY..." >&2; exit 2; }
for tool in valgrind h2load; do
  command -v "$tool" >/dev/null || { echo "instructions: needs $tool" >&2; exit 1; }
done

work=$(mktemp -d /tmp/postern-instructions.XXXXXX)
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
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:18082;
    listen 127.0.0.1:18083;
    listen 127.0.0.1:18084;
    location / { return 200 "ok\n"; }
  }
}
EOC
/usr/sbin/nginx -p "$work" -c "$work/upstream.conf" -e "$work/upstream-error.log"
cat >"$work/gateway.toml" <<EOC
[gateway]
threads = 1
access_log = "off"

[[listeners]]
name = "https"
address = "127.0.0.1:19461"
tls = true

[[tls.certificates]]
server_names = ["localhost"]
cert = "cert.pem"
key = "key.pem"

[upstreams.backend]
url = "http://127.0.0.1:18082"

[upstreams.pool3]
servers = ["http://127.0.0.1:18082", "http://127.0.0.1:18083", "http://127.0.0.1:18084"]

[limits.never]
rate = "1000000/s"
burst = 1000000
key = "client"

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "backend"

[[routes]]
name = "pool"
path_prefix = "/pool"
upstream = "pool3"

[[routes]]
name = "limited"
path_prefix = "/limited"
upstream = "backend"
limit = "never"
EOC

# Instructions of one run of BINARY serving N requests over 10 connections.
instructions() { # binary requests
  local out="$work/callgrind.out"
  rm -f "$out"
  local args=(run -c "$work/gateway.toml")
  [[ $(basename "$1") == pingora-minimal ]] &&
    args=(127.0.0.1:19461 "$work/cert.pem" "$work/key.pem" 127.0.0.1:18082)
  NO_STEAL=1 RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$1" "${args[@]}" >"$work/postern.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do
    (exec 3<>/dev/tcp/127.0.0.1/19461) 2>/dev/null && break
    sleep 0.1
  done
  h2load --h1 -n "$2" -c 10 "https://localhost:19461/$ROUTE" >"$work/h2load.log" 2>&1
  grep -q "succeeded, 0 failed" "$work/h2load.log" || { cat "$work/h2load.log" >&2; exit 1; }
  kill -INT "$pid"
  wait "$pid" || true
  [[ -n ${PROFILES:-} ]] && mkdir -p "$PROFILES" && cp "$out" "$PROFILES/$3.out"
  awk '/^summary:/ {print $2}' "$out"
}

for binary in "$@"; do
  name=$(basename "$(dirname "$binary")")-$(basename "$binary")-$ROUTE
  full=$(instructions "$binary" "$REQUESTS" "$name-full")
  base=$(instructions "$binary" 10 "$name-base")
  echo "$binary /$ROUTE: $(( (full - base) / (REQUESTS - 10) )) instructions/request ($REQUESTS requests)"
done
