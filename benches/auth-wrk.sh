#!/usr/bin/env bash
# End-to-end cost of route policies: an open route, a JWT route (RS256,
# static key) and basic-auth routes (argon2id; with and without the cache),
# measured with wrk through the release `postern` binary on a plain-HTTP
# listener, so TLS cost does not hide the policy cost.
#
#   benches/auth-wrk.sh [DURATION] [CONNECTIONS]
#
# Needs: wrk, openssl, curl (scripts/install-deps installs all but wrk:
# apt-get install wrk). Results go to docs/performance.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
connections=${2:-32}

cargo build --release --quiet --bins
bin=target/release/postern
echo_bin=target/release/postern-echo
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# An RS256 token signed with the test fixture key, valid for an hour.
exp=$(( $(date +%s) + 3600 ))
header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
payload=$(printf '{"iss":"bench","aud":"Domino","sub":"alice","exp":%s}' "$exp" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" \
  | openssl dgst -sha256 -sign tests/fixtures/rsa1.pem -binary | b64url)
token="$header.$payload.$signature"

hash=$(printf 'correct horse\n' | "$bin" hash-password)
basic=$(printf 'admin:correct horse' | openssl base64 -A)

port_gw=18080
port_echo=18880
"$echo_bin" --listen "127.0.0.1:$port_echo" --name data >/dev/null 2>&1 &

cat > "$work/gateway.toml" <<EOF
[gateway]
threads = 2

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
max_failures = 1000

[auth.ops-nocache]
type = "basic"
users = { admin = "$hash" }
max_failures = 1000
cache_ttl = "0s"

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

[[routes]]
name = "basic-nocache"
path_prefix = "/basic-nocache"
upstream = "data"
auth = "ops-nocache"
EOF

RUST_LOG=warn "$bin" run -c "$work/gateway.toml" >/dev/null 2>"$work/gateway.log" &
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$port_gw/open" && break
  sleep 0.2
done

check() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "$@")
  [ "$code" = 200 ] || { echo "setup check failed ($code): $*" >&2; cat "$work/gateway.log" >&2; exit 1; }
}
check "http://127.0.0.1:$port_gw/open"
check -H "Authorization: Bearer $token" "http://127.0.0.1:$port_gw/jwt"
check -H "Authorization: Basic $basic" "http://127.0.0.1:$port_gw/basic"

run() {
  local name=$1 conns=$2; shift 2
  local out
  out=$(wrk -t2 -c"$conns" -d"$duration" --latency "$@")
  printf '%-16s c=%-4s %10s req/s   p50 %8s   p99 %8s\n' "$name" "$conns" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1 == "50%" {print $2}' <<<"$out")" \
    "$(awk '$1 == "99%" {print $2}' <<<"$out")"
  if grep -q 'Non-2xx' <<<"$out"; then
    echo "  warning: $(grep 'Non-2xx' <<<"$out")" >&2
  fi
}

echo "wrk -t2 -c$connections -d$duration, $(nproc) cores, $(date -u +%F)"
run open "$connections" "http://127.0.0.1:$port_gw/open"
run jwt-cached "$connections" -H "Authorization: Bearer $token" "http://127.0.0.1:$port_gw/jwt"
run basic-cached "$connections" -H "Authorization: Basic $basic" "http://127.0.0.1:$port_gw/basic"
# Every request hashes: more connections than the hashing queue holds
# (cores x 9) would measure the 429 overload answer instead.
run basic-uncached 8 -H "Authorization: Basic $basic" "http://127.0.0.1:$port_gw/basic-nocache"
