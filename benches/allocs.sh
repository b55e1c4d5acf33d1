#!/usr/bin/env bash
# Heap allocations per proxied request, counted by heaptrack, on an open
# route, a JWT route (RS256, static key, token cache warm) and a basic-auth
# route (argon2id, success cache warm), over one plain-HTTP keep-alive
# connection, with the access log off.
#
#   benches/allocs.sh [POSTERN_BINARY] [REQUESTS]
#
# For each route: one run sends REQUESTS requests after a warm-up request,
# an idle run of the same length sends only the warm-up request; the figure
# is (allocations of the run - allocations of the idle run) / REQUESTS.
# Needs: heaptrack (apt-get install heaptrack), curl, openssl, and
# `cargo build --release --bins` done.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/postern}")
requests=${2:-10000}
echo_bin=target/release/postern-echo
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
exp=$(( $(date +%s) + 3600 ))
header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
payload=$(printf '{"iss":"bench","aud":"Domino","sub":"alice","exp":%s}' "$exp" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" \
  | openssl dgst -sha256 -sign tests/fixtures/rsa1.pem -binary | b64url)
token="$header.$payload.$signature"
hash=$(printf 'correct horse\n' | "$bin" hash-password)
basic=$(printf 'admin:correct horse' | openssl base64 -A)

port_gw=18090
port_echo=18890
"$echo_bin" --listen "127.0.0.1:$port_echo" --name data >/dev/null 2>&1 &

cat > "$work/gateway.toml" <<EOF
[gateway]
threads = 1
access_log = "off"

[[listeners]]
name = "plain"
address = "127.0.0.1:$port_gw"

[upstreams.data]
url = "http://127.0.0.1:$port_echo"

[auth.idp]
type = "jwt"
keys = ["$PWD/tests/fixtures/rsa1.pub.pem"]
issuer = "bench"
audiences = ["Domino"]

[auth.ops]
type = "basic"
users = { admin = "$hash" }

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "data"

[[routes]]
name = "jwt"
path_prefix = "/jwt"
upstream = "data"
auth = "idp"

[[routes]]
name = "basic"
path_prefix = "/basic"
upstream = "data"
auth = "ops"
EOF

# The same URL $1 times, for one curl process on one connection.
urls() {
  for _ in $(seq "$1"); do printf 'url = "http://127.0.0.1:%s%s"\noutput = "/dev/null"\n' "$port_gw" "$2"; done
}

# Allocation calls of one gateway process that gets a warm-up request,
# then $2 requests to path $1 (or, with $2 = 0, waits $3 seconds).
allocations() {
  local path=$1 count=$2 idle=${3:-0} hdr=()
  case $path in
    /jwt) hdr=(-H "Authorization: Bearer $token") ;;
    /basic) hdr=(-H "Authorization: Basic $basic") ;;
  esac
  rm -f "$work"/heap.*
  RUST_LOG=error heaptrack -o "$work/heap" "$bin" run -c "$work/gateway.toml" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port_gw/none" && break
    sleep 0.2
  done
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "${hdr[@]}" "http://127.0.0.1:$port_gw$path")
  # heaptrack runs the gateway as its child: a gateway left running would keep
  # the port and answer the next run's requests.
  [ "$code" = 200 ] || { echo "warm-up request to $path got $code" >&2; pkill -INT -f -- "-c $work/gateway.toml"; exit 1; }
  local started=$SECONDS
  if ((count > 0)); then
    urls "$count" "$path" > "$work/urls"
    curl -s --keepalive "${hdr[@]}" -K "$work/urls"
  else
    sleep "$idle"
  fi
  echo $((SECONDS - started + 1)) > "$work/elapsed"
  # heaptrack is a wrapper script: stop the gateway, its child, by pid.
  local gateway
  gateway=$(pgrep -P "$pid" -x "$(basename "$bin")" || echo "$pid")
  kill -INT "$gateway"
  wait "$pid" || true
  heaptrack_print "$work"/heap.* 2>/dev/null | awk '/^calls to allocation functions:/ {print $5}'
}

printf '%-8s %14s %14s %10s\n' route allocations idle per-request
for path in /open /jwt /basic; do
  loaded=$(allocations "$path" "$requests")
  idle=$(allocations "$path" 0 "$(cat "$work/elapsed")")
  printf '%-8s %14s %14s %10.1f\n' "$path" "$loaded" "$idle" \
    "$(echo "($loaded - $idle) / $requests" | bc -l)"
done
