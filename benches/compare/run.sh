#!/usr/bin/env bash
# Postern vs nginx, HAProxy, Caddy and direct-to-upstream, side by side, on this machine.
#
#   benches/compare/run.sh            # full run: 5 interleaved rounds, 10 s each
#   benches/compare/run.sh --quick    # smoke run: 1 round, 3 s each, 1,000 idle connections
#   RUNS=7 DURATION=20 IDLE_CONNS=9000 benches/compare/run.sh
#   ONLY="open latency" benches/compare/run.sh   # just these scenarios
#     (open pool h2 basic jwt handshake latency idle_memory limited limited_latency)
#   ALT=/tmp/postern-mimalloc ALT_NAME=mimalloc benches/compare/run.sh
#     # a second build of postern as one more target, in every scenario the
#     # proxies are compared in (open h2 basic jwt handshake latency idle_memory)
#   `pool`: Postern's /open route over an upstream pool of three servers
#   (the same nginx on three ports, round robin) against /open's one server,
#   the cost of balancing (issue 18 asks for at most 3% req/s).
#
# Then `python3 benches/compare/table.py benches/compare/results/latest.csv`
# prints the medians, spreads and ratios against the targets (run.sh does it
# at the end too). Run it on a quiet machine: no builds, no other load.
#
# The peers are real: Debian's nginx as the reference proxy (TLS with the
# same certificate, keep-alive to the upstream, the same forwarding headers,
# auth_basic with the same bcrypt cost-10 htpasswd), a second nginx as the
# upstream (`return 200`, so the upstream is never the bottleneck), wrk for
# HTTP/1.1 over TLS, h2load for HTTP/2, a wrk2-style fixed-rate latency client
# (latency.rs, Rust: hey's timings have 100 µs resolution and its SNI carries
# the port, which rustls refuses), and a Python client holding idle TLS
# connections. A fourth target, `pingora`, is the smallest Pingora proxy
# (pingora_minimal.rs: TLS, keep-alive upstream, nothing else): the floor
# Postern is built on, so the table separates Pingora's cost from Postern's.
# HAProxy and Caddy (Debian's packages) are the other proxies a user would
# pick instead, each configured as its docs recommend for TLS termination
# with keep-alive to the upstream: HAProxy `nbthread 1` with `http-reuse
# safe` (its default) and `option forwardfor`; Caddy's `reverse_proxy` (keeps
# upstream connections alive and sets X-Forwarded-* by default) with
# GOMAXPROCS=1. Access logs are off on every proxy. Each round runs every scenario against each target in turn
# (postern, nginx, direct, postern, nginx, direct, ...), so drift hits all.
#
# Pinning: the proxy under test runs on core 1 alone; load generators and the
# upstream share core 0. Postern runs with `threads = 1`, nginx with
# `worker_processes 1`, HAProxy with `nbthread 1`, Caddy with GOMAXPROCS=1:
# one core each.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
# 9,000, not 10,000: HAProxy sizes its maxconn to half the open-file limit
# (a client and a server socket each), and this machine kind's hard limit is
# 20,000, which `ulimit -n` cannot raise; the 10,000th connection waited in
# its accept queue until the client timed out (the full run of 2026-12-02).
IDLE_CONNS=${IDLE_CONNS:-9000}
CONNECTIONS=${CONNECTIONS:-50}
RATE=${RATE:-500}           # requests per second for the latency scenario
ONLY=${ONLY:-}              # e.g. ONLY=idle_memory: run just these scenarios
want() { [[ -z $ONLY || " $ONLY " == *" $1 "* ]]; }
# Another build of postern (another allocator, profile or feature), measured
# beside the release build in the same rounds.
ALT=${ALT:-}
ALT_NAME=${ALT_NAME:-postern-alt}
if [[ -n $ALT && ! -x $ALT ]]; then
  echo "compare: ALT=$ALT is not an executable" >&2
  exit 2
fi
if [[ ${1:-} == --quick ]]; then
  RUNS=1 DURATION=3 IDLE_CONNS=1000
fi

PROXY_CPU=1
LOAD_CPU=0
UPSTREAM_PORT=18080
NGINX_PORT=18443
POSTERN_PORT=19443
POSTERN_OPS=19180
ALT_PORT=19743
ALT_OPS=19380
# A second postern whose limits are shared through a redis-server (limited_latency).
SHARED_PORT=19643
SHARED_OPS=19280
REDIS_PORT=16379
HAPROXY_PORT=18543
CADDY_PORT=18643

# --- tools ------------------------------------------------------------------
need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v taskset >/dev/null || need+=(util-linux)
command -v redis-server >/dev/null || need+=(redis-server)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
command -v caddy >/dev/null || need+=(caddy)
if ((${#need[@]})); then
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
  echo "compare: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
CADDY=$(command -v caddy)
# The Debian packages start system services on install; they would hold
# ports and cores during the run.
for service in haproxy caddy; do
  systemctl is-active --quiet "$service" 2>/dev/null && systemctl stop "$service" 2>/dev/null || true
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if want idle_memory && (( IDLE_CONNS * 2 + 100 > $(ulimit -n) )); then
  echo "compare: $IDLE_CONNS idle connections need an open-file limit of $(( IDLE_CONNS * 2 + 100 ))" \
    "(HAProxy holds a client and a server socket per connection); this shell's is $(ulimit -n):" \
    "set IDLE_CONNS lower" >&2
  exit 1
fi

echo "compare: building postern and the bench tools (release)" >&2
(cd "$root" && cargo build --release --locked --quiet --bin postern \
  --example pingora-minimal --example latency)
POSTERN="$root/target/release/postern"
MINIMAL="$root/target/release/examples/pingora-minimal"
LATENCY="$root/target/release/examples/latency"
MINIMAL_PORT=19543

work=$(mktemp -d /tmp/postern-compare.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  # A proxy that ignores SIGINT (HAProxy with connections left) would hang the `wait` below.
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for conf in upstream proxy; do
    [[ -f $work/$conf.pid ]] && kill "$(cat "$work/$conf.pid")" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- credentials, certificate, token ----------------------------------------
cp "$root/certs/dev-fullchain.pem" "$work/cert.pem"
cp "$root/certs/dev-key.pem" "$work/key.pem"
htpasswd -nbB -C 10 bench bench-secret >"$work/htpasswd"
# nginx workers drop root and read the htpasswd file on every request.
chmod 755 "$work" && chmod 644 "$work/htpasswd"
BASIC="Authorization: Basic $(printf 'bench:bench-secret' | base64)"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/jwt-key.pem" 2>/dev/null
openssl pkey -in "$work/jwt-key.pem" -pubout -out "$work/jwt-public.pem"
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
exp=$(( $(date +%s) + 86400 ))
payload=$(printf '{"iss":"bench","aud":"bench","sub":"bench","exp":%d}' "$exp" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$work/jwt-key.pem" -binary | b64url)
BEARER="Authorization: Bearer $header.$payload.$signature"

# --- the upstream: nginx answering 200 ----------------------------------------
cat >"$work/upstream.conf" <<EOF
worker_processes 1;
pid $work/upstream.pid;
error_log $work/upstream-error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 65536; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$UPSTREAM_PORT;
    listen 127.0.0.1:$((UPSTREAM_PORT + 1));
    listen 127.0.0.1:$((UPSTREAM_PORT + 2));
    location / { return 200 "ok\n"; }
  }
}
EOF
taskset -c "$LOAD_CPU" "$NGINX" -p "$work" -c "$work/upstream.conf" -e "$work/upstream-error.log"

# --- the reference proxy: nginx --------------------------------------------
cat >"$work/proxy.conf" <<EOF
worker_processes 1;
pid $work/proxy.pid;
error_log $work/proxy-error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 65536; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
  upstream pool3 {
    server 127.0.0.1:$UPSTREAM_PORT;
    server 127.0.0.1:$((UPSTREAM_PORT + 1));
    server 127.0.0.1:$((UPSTREAM_PORT + 2));
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_header_timeout 300s;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_set_header X-Real-IP \$remote_addr;
    location /open { proxy_pass http://backend; }
    location /pool { proxy_pass http://pool3; }
    location /basic {
      auth_basic "bench";
      auth_basic_user_file $work/htpasswd;
      proxy_pass http://backend;
    }
  }
}
EOF
taskset -c "$PROXY_CPU" "$NGINX" -p "$work" -c "$work/proxy.conf" -e "$work/proxy-error.log"

# --- the peers a user would pick instead: HAProxy and Caddy ----------------
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"
cat >"$work/haproxy.cfg" <<EOF
global
  nbthread 1
  pidfile $work/haproxy.pid
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  option forwardfor
  option http-keep-alive
frontend https
  bind 127.0.0.1:$HAPROXY_PORT ssl crt $work/haproxy.pem alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Real-IP %[src]
  default_backend backend
backend backend
  http-reuse safe
  server upstream 127.0.0.1:$UPSTREAM_PORT maxconn 1000
EOF
"$HAPROXY" -c -q -f "$work/haproxy.cfg"
start_haproxy() {
  taskset -c "$PROXY_CPU" "$HAPROXY" -f "$work/haproxy.cfg" >>"$work/haproxy.out" 2>&1 &
  haproxy_pid=$!
  pids+=("$haproxy_pid")
}
cat >"$work/Caddyfile" <<EOF
{
  admin off
  auto_https off
}
https://localhost:$CADDY_PORT {
  tls $work/cert.pem $work/key.pem
  reverse_proxy 127.0.0.1:$UPSTREAM_PORT
}
EOF
start_caddy() {
  XDG_DATA_HOME="$work/caddy-data" XDG_CONFIG_HOME="$work/caddy-config" GOMAXPROCS=1 \
    taskset -c "$PROXY_CPU" "$CADDY" run --config "$work/Caddyfile" --adapter caddyfile \
    >>"$work/caddy.out" 2>&1 &
  caddy_pid=$!
  pids+=("$caddy_pid")
}
start_haproxy
start_caddy

# --- postern ------------------------------------------------------------------
cat >"$work/gateway.toml" <<EOF
[gateway]
threads = 1
access_log = "off"
keepalive_timeout = "300s"
client_header_timeout = "300s"

[[listeners]]
name = "https"
address = "127.0.0.1:$POSTERN_PORT"
tls = true

[[listeners]]
name = "ops"
address = "127.0.0.1:$POSTERN_OPS"

[[tls.certificates]]
server_names = ["localhost"]
cert = "cert.pem"
key = "key.pem"

[upstreams.backend]
url = "http://127.0.0.1:$UPSTREAM_PORT"

[upstreams.pool3]
servers = ["http://127.0.0.1:$UPSTREAM_PORT", "http://127.0.0.1:$((UPSTREAM_PORT + 1))", "http://127.0.0.1:$((UPSTREAM_PORT + 2))"]

[auth.basic]
type = "basic"
realm = "bench"
htpasswd = "htpasswd"

[auth.jwt]
type = "jwt"
keys = ["jwt-public.pem"]
issuer = "bench"
audiences = ["bench"]
algorithms = ["RS256"]

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "backend"
listeners = ["https"]

[[routes]]
name = "pool"
path_prefix = "/pool"
upstream = "pool3"
listeners = ["https"]

[[routes]]
name = "basic"
path_prefix = "/basic"
upstream = "backend"
auth = "basic"
listeners = ["https"]

[[routes]]
name = "jwt"
path_prefix = "/jwt"
upstream = "backend"
auth = "jwt"
listeners = ["https"]

[[routes]]
name = "health"
path_prefix = "/health"
service = "health"
listeners = ["ops"]

# A limit the load never reaches: what checking one costs per request.
[limits.never]
rate = "1000000/s"
burst = 1000000
key = "client"

[[routes]]
name = "limited"
path_prefix = "/limited"
upstream = "backend"
limit = "never"
listeners = ["https"]
EOF
"$POSTERN" check -c "$work/gateway.toml" >/dev/null
# The same gateway on other ports, its limits shared through Redis.
sed -e "s/127.0.0.1:$POSTERN_PORT/127.0.0.1:$SHARED_PORT/" -e "s/127.0.0.1:$POSTERN_OPS/127.0.0.1:$SHARED_OPS/" \
  -e "s|^\[gateway\]|[gateway]\nshared_store = \"redis://127.0.0.1:$REDIS_PORT/0\"\nupgrade_socket = \"$work/shared-upgrade.sock\"|" \
  "$work/gateway.toml" >"$work/gateway-shared.toml"
"$POSTERN" check -c "$work/gateway-shared.toml" >/dev/null
# The alternative build on its own ports, with the same routes.
sed -e "s/127.0.0.1:$POSTERN_PORT/127.0.0.1:$ALT_PORT/" -e "s/127.0.0.1:$POSTERN_OPS/127.0.0.1:$ALT_OPS/" \
  -e "s|^\[gateway\]|[gateway]\nupgrade_socket = \"$work/alt-upgrade.sock\"|" \
  "$work/gateway.toml" >"$work/gateway-alt.toml"
[[ -z $ALT ]] || "$ALT" check -c "$work/gateway-alt.toml" >/dev/null
taskset -c "$LOAD_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  >"$work/redis.out" 2>&1 &
pids+=("$!")
start_postern() {
  RUST_LOG=warn taskset -c "$PROXY_CPU" "$POSTERN" run -c "$work/gateway.toml" \
    >>"$work/postern.out" 2>>"$work/postern.err" &
  postern_pid=$!
  pids+=("$postern_pid")
}
start_alt() {
  RUST_LOG=warn taskset -c "$PROXY_CPU" "$ALT" run -c "$work/gateway-alt.toml" \
    >>"$work/alt.out" 2>>"$work/alt.err" &
  alt_pid=$!
  pids+=("$alt_pid")
}
start_minimal() {
  taskset -c "$PROXY_CPU" "$MINIMAL" "127.0.0.1:$MINIMAL_PORT" "$work/cert.pem" "$work/key.pem" \
    "127.0.0.1:$UPSTREAM_PORT" >>"$work/minimal.out" 2>&1 &
  minimal_pid=$!
  pids+=("$minimal_pid")
}
start_shared() {
  RUST_LOG=warn taskset -c "$PROXY_CPU" "$POSTERN" run -c "$work/gateway-shared.toml" \
    >>"$work/shared.out" 2>>"$work/shared.err" &
  pids+=("$!")
}
start_postern
start_minimal
start_shared
[[ -z $ALT ]] || start_alt

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "compare: nothing listening on port $1" >&2
  exit 1
}
for port in $UPSTREAM_PORT $NGINX_PORT $POSTERN_PORT $MINIMAL_PORT $REDIS_PORT $SHARED_PORT \
  $HAPROXY_PORT $CADDY_PORT ${ALT:+$ALT_PORT}; do
  wait_port "$port"
done
# Measured only once its store answers: degraded, it would decide locally.
for i in $(seq 1 100); do
  curl -s "http://127.0.0.1:$SHARED_OPS/health" 2>/dev/null | grep -q '"shared_store":{"status":"up"' && break
  [[ $i == 100 ]] && { echo "compare: the shared store did not come up" >&2; exit 1; }
  sleep 0.1
done

# A freshly started proxy, so memory freed by earlier scenarios (which the
# allocator keeps) does not hide what new connections cost.
restart() { # target
  case $1 in
    # SIGINT: Pingora's fast shutdown (SIGTERM waits out a grace period).
    postern) kill -INT "$postern_pid"; wait "$postern_pid" 2>/dev/null || true; start_postern; wait_port "$POSTERN_PORT" ;;
    "$ALT_NAME") kill -INT "$alt_pid"; wait "$alt_pid" 2>/dev/null || true; start_alt; wait_port "$ALT_PORT" ;;
    pingora) kill -INT "$minimal_pid"; wait "$minimal_pid" 2>/dev/null || true; start_minimal; wait_port "$MINIMAL_PORT" ;;
    haproxy) kill "$haproxy_pid"; wait "$haproxy_pid" 2>/dev/null || true; start_haproxy; wait_port "$HAPROXY_PORT" ;;
    caddy) kill "$caddy_pid"; wait "$caddy_pid" 2>/dev/null || true; start_caddy; wait_port "$CADDY_PORT" ;;
    nginx)
      "$NGINX" -p "$work" -c "$work/proxy.conf" -s quit
      while [[ -f $work/proxy.pid ]]; do sleep 0.1; done
      taskset -c "$PROXY_CPU" "$NGINX" -p "$work" -c "$work/proxy.conf" -e "$work/proxy-error.log"
      wait_port "$NGINX_PORT" ;;
  esac
  sleep 1
}

url() { # target path
  case $1 in
    postern) echo "https://localhost:$POSTERN_PORT$2" ;;
    "$ALT_NAME") echo "https://localhost:$ALT_PORT$2" ;;
    nginx) echo "https://localhost:$NGINX_PORT$2" ;;
    pingora) echo "https://localhost:$MINIMAL_PORT$2" ;;
    shared) echo "https://localhost:$SHARED_PORT$2" ;;
    haproxy) echo "https://localhost:$HAPROXY_PORT$2" ;;
    caddy) echo "https://localhost:$CADDY_PORT$2" ;;
    direct) echo "http://127.0.0.1:$UPSTREAM_PORT$2" ;;
  esac
}
# Every target must answer 200 before anything is measured.
for check in "postern /open" "postern /pool" "nginx /open" "nginx /pool" "pingora /open" "haproxy /open" "caddy /open" \
  "direct /open" "postern /basic $BASIC" "nginx /basic $BASIC" "postern /jwt $BEARER" "postern /limited" \
  "shared /limited" ${ALT:+"$ALT_NAME /open" "$ALT_NAME /basic $BASIC" "$ALT_NAME /jwt $BEARER"}; do
  read -r target path auth <<<"$check"
  code=$(curl -sk -o /dev/null -w '%{http_code}' ${auth:+-H "$auth"} "$(url "$target" "$path")")
  [[ $code == 200 ]] || { echo "compare: $target $path answered $code" >&2; exit 1; }
done

proxy_pids() { # target -> the PIDs whose memory counts
  case $1 in
    postern) echo "$postern_pid" ;;
    "$ALT_NAME") echo "$alt_pid" ;;
    pingora) echo "$minimal_pid" ;;
    haproxy) echo "$haproxy_pid" ;;
    caddy) echo "$caddy_pid" ;;
    nginx) echo "$(cat "$work/proxy.pid") $(pgrep -P "$(cat "$work/proxy.pid")" | tr '\n' ' ')" ;;
  esac
}
rss_kb() {
  local total=0
  for pid in $(proxy_pids "$1"); do
    total=$(( total + $(awk '/^VmRSS/ {print $2}' "/proc/$pid/status") ))
  done
  echo "$total"
}

mkdir -p "$here/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv="$here/results/$stamp.csv"
echo "scenario,target,run,metric,value" >"$csv"
record() { echo "$1,$2,$3,$4,$5" >>"$csv"; }

wrk_rps() { # url [header] [connections] -> requests/s
  local out
  # nginx runs bcrypt in its event loop, so its basic-auth answers queue for
  # seconds: a long timeout counts them instead of dropping them.
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"${3:-$CONNECTIONS}" -d"${DURATION}s" --timeout 60s ${2:+-H "$2"} "$1")
  if grep -q "Non-2xx\|Socket errors\|Requests/sec: *0\.00" <<<"$out"; then
    echo "compare: errors from $1:" >&2; echo "$out" >&2
  fi
  awk '/^Requests\/sec:/ {print $2}' <<<"$out"
}

# The two cases of a paired scenario, in one order on odd rounds and the other on even.
# The builds of postern measured (the release build, and ALT's), and every proxy.
posterns=(postern ${ALT:+"$ALT_NAME"})
proxies=("${posterns[@]}" nginx pingora haproxy caddy)
paired_order() { # run a b
  if (($1 % 2)); then echo "$2 $3"; else echo "$3 $2"; fi
}

for run in $(seq 1 "$RUNS"); do
  echo "compare: round $run of $RUNS" >&2
  want open && for target in "${proxies[@]}" direct; do
    record open "$target" "$run" rps "$(wrk_rps "$(url "$target" /open)")"
  done
  # Same target, same upstream process: one server against a pool of three,
  # measured back to back and in alternating order (table.py divides within
  # each round, so drift between rounds cancels). nginx does the same, to
  # show what three upstream connection pools cost a proxy that balances
  # in C.
  want pool && for target in postern nginx; do
    for case in $(paired_order "$run" 1-server:/open 3-servers:/pool); do
      record pool "$target-${case%%:*}" "$run" rps "$(wrk_rps "$(url "$target" "${case#*:}")")"
    done
  done
  want basic && for target in "${posterns[@]}" nginx; do
    # 10 connections: with 50, nginx (one bcrypt at a time in its event
    # loop, 64 ms each) completed no request at all within 3 s.
    record basic "$target" "$run" rps "$(wrk_rps "$(url "$target" /basic)" "$BASIC" 10)"
  done
  want jwt && for target in "${posterns[@]}"; do
    record jwt "$target" "$run" rps "$(wrk_rps "$(url "$target" /jwt)" "$BEARER")"
  done
  # The same route behind a limit it never reaches, local and shared through Redis.
  want limited && for case in $(paired_order "$run" postern-open:/open postern:/limited); do
    record limited "${case%%:*}" "$run" rps "$(wrk_rps "$(url postern "${case#*:}")")"
  done
  want limited && record limited_shared postern "$run" rps "$(wrk_rps "$(url shared /limited)")"
  want limited_latency && for case in "latency_open postern /open" "latency_limited postern /limited" \
    "latency_shared shared /limited"; do
    read -r scenario target path <<<"$case"
    out=$(taskset -c "$LOAD_CPU" "$LATENCY" "$(url "$target" "$path")" "$RATE" "$DURATION" 10)
    for p in p50_us p99_us; do
      record "$scenario" postern "$run" "$p" "$(tr ' ' '\n' <<<"$out" | awk -F= -v k="$p" '$1 == k {print $2}')"
    done
  done
  # A new connection, and so a full TLS handshake, per request.
  want handshake && for target in "${proxies[@]}"; do
    record handshake "$target" "$run" rps \
      "$(wrk_rps "$(url "$target" /open)" "Connection: close")"
  done
  want h2 && for target in "${proxies[@]}"; do
    out=$(taskset -c "$LOAD_CPU" h2load -c10 -m10 -D"$DURATION" "$(url "$target" /open)" 2>&1)
    record h2 "$target" "$run" rps "$(awk '/^finished in/ {print $4}' <<<"$out")"
  done
  # Latency at a fixed moderate rate, over 10 keep-alive connections.
  want latency && for target in "${proxies[@]}" direct; do
    out=$(taskset -c "$LOAD_CPU" "$LATENCY" "$(url "$target" /open)" "$RATE" "$DURATION" 10)
    for p in p50_us p99_us; do
      record latency "$target" "$run" "$p" "$(tr ' ' '\n' <<<"$out" | awk -F= -v k="$p" '$1 == k {print $2}')"
    done
  done
  # Idle keep-alive TLS connections: resident memory each.
  want idle_memory && for target in "${proxies[@]}"; do
    restart "$target"
    before=$(rss_kb "$target")
    port=$(url "$target" / | sed 's/.*:\([0-9]*\)\/$/\1/')
    fifo="$work/idle.fifo"; rm -f "$fifo"; mkfifo "$fifo"
    taskset -c "$LOAD_CPU" python3 "$here/idle_connections.py" "$port" "$IDLE_CONNS" <"$fifo" \
      >"$work/idle.out" &
    holder=$!
    exec 4>"$fifo"
    until grep -q '^holding' "$work/idle.out" 2>/dev/null; do
      kill -0 "$holder" 2>/dev/null || { cat "$work/idle.out" >&2; exit 1; }
      sleep 0.2
    done
    sleep 1
    after=$(rss_kb "$target")
    held=$(awk '/^holding/ {print $2}' "$work/idle.out")
    exec 4>&-
    wait "$holder" || true
    record idle_memory "$target" "$run" bytes_per_conn \
      "$(( (after - before) * 1024 / held ))"
    sleep 1
  done
done

{
  echo "# machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "# nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), haproxy $("$HAPROXY" -v | awk 'NR==1 {print $3}'), caddy $("$CADDY" version | awk '{print $1}'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), postern $("$POSTERN" --version | awk '{print $2}') at $(cd "$root" && git rev-parse --short HEAD), rounds $RUNS x ${DURATION}s, $CONNECTIONS connections, latency at $RATE req/s, $IDLE_CONNS idle connections${ALT:+, $ALT_NAME: $ALT}"
} >"$csv.meta"
cp "$csv" "$here/results/latest.csv"
cp "$csv.meta" "$here/results/latest.csv.meta"
python3 "$here/table.py" "$here/results/latest.csv"
