#!/usr/bin/env bash
# CPU instructions per proxied request over HTTP/2 (TLS, h2load -c10 -m10 as
# benches/compare/run.sh's h2 scenario), counted by valgrind's callgrind:
# the HTTP/2 counterpart of benches/instructions.sh, same method.
#
#   benches/instructions-h2.sh postern=target/release/postern
#   benches/instructions-h2.sh pingora=target/release/examples/pingora-minimal nginx=/usr/sbin/nginx
#   REQUESTS=20000 KEEP=/tmp/h2-profiles benches/instructions-h2.sh postern=BINARY ...
#
# Each argument is KIND=BINARY, KIND one of postern (the open route),
# pingora (benches/compare/pingora_minimal.rs, the smallest Pingora proxy)
# or nginx (run.sh's reference proxy config, `master_process off` so one
# process does all the work under valgrind). For each: one run sends
# REQUESTS requests over 10 connections with 10 concurrent streams each, a
# second one request per connection (same handshakes, start-up and
# shutdown); the figure is the difference / (REQUESTS - 10). With KEEP=DIR
# the callgrind file of each long run is kept there, for
# `callgrind_annotate --inclusive=yes DIR/KIND.callgrind`.
# Needs: valgrind, h2load (nghttp2-client), nginx (the upstream).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
REQUESTS=${REQUESTS:-5000}
KEEP=${KEEP:-}
PORT=19462
(($#)) || { echo "usage: instructions-h2.sh KIND=BINARY... (postern, pingora, nginx)" >&2; exit 2; }
for tool in valgrind h2load; do
  command -v "$tool" >/dev/null || { echo "instructions-h2: needs $tool" >&2; exit 1; }
done

work=$(mktemp -d /tmp/postern-instructions-h2.XXXXXX)
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
  server { listen 127.0.0.1:18083; location / { return 200 "ok\n"; } }
}
EOC
/usr/sbin/nginx -p "$work" -c "$work/upstream.conf" -e "$work/upstream-error.log"
cat >"$work/gateway.toml" <<EOC
[gateway]
threads = 1
access_log = "off"

[[listeners]]
name = "https"
address = "127.0.0.1:$PORT"
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
# run.sh's reference proxy, the /open location, in one process.
cat >"$work/proxy.conf" <<EOC
daemon off;
master_process off;
worker_processes 1;
pid $work/proxy.pid;
error_log $work/proxy-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:18083; keepalive 64; }
  server {
    listen 127.0.0.1:$PORT ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 10000000;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Real-IP \$remote_addr;
    location /open { proxy_pass http://backend; }
  }
}
EOC

# Instructions of one run of KIND's BINARY serving N requests.
instructions() { # kind binary requests
  local out="$work/callgrind.out" command
  rm -f "$out"
  case $1 in
    postern) command=("$2" run -c "$work/gateway.toml") ;;
    pingora) command=("$2" "127.0.0.1:$PORT" "$work/cert.pem" "$work/key.pem" 127.0.0.1:18083) ;;
    nginx) command=("$2" -p "$work" -c "$work/proxy.conf" -e "$work/proxy-error.log") ;;
    *) echo "instructions-h2: unknown kind $1 (postern, pingora, nginx)" >&2; exit 2 ;;
  esac
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" \
    "${command[@]}" >"$work/proxy.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
    sleep 0.1
  done
  h2load -n "$3" -c 10 -m 10 "https://localhost:$PORT/open" >"$work/h2load.log" 2>&1
  grep -q "succeeded, 0 failed" "$work/h2load.log" || { cat "$work/h2load.log" "$work/proxy.log" >&2; exit 1; }
  # SIGINT: Pingora's fast shutdown; nginx's fast shutdown too.
  kill -INT "$pid"
  wait "$pid" || true
  [[ -n $KEEP && $3 -gt 10 ]] && cp "$out" "$KEEP/$1.callgrind"
  awk '/^summary:/ {print $2}' "$out"
}

[[ -n $KEEP ]] && mkdir -p "$KEEP"
for arg in "$@"; do
  kind=${arg%%=*} binary=${arg#*=}
  full=$(instructions "$kind" "$binary" "$REQUESTS")
  base=$(instructions "$kind" "$binary" 10)
  echo "$kind $binary: $(( (full - base) / (REQUESTS - 10) )) instructions/request (HTTP/2, $REQUESTS requests)"
done
