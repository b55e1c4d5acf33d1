#!/usr/bin/env bash
# Opt-in (not run in CI): the request-smuggling and header-abuse cases of
# tests/smuggling.rs, sent byte for byte to Postern and to Debian's nginx,
# both terminating TLS in front of the same upstream (an nginx that logs
# every request line it receives). Prints, per case, what each proxy
# answered and what reached the upstream, so the two can be compared.
#
#   tests/smuggling-nginx.sh          # builds postern (debug) if needed
#
# Needs nginx and openssl (apt-get install nginx openssl).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --quiet --bin postern
POSTERN="$root/target/debug/postern"

work=$(mktemp -d /tmp/postern-smuggling.XXXXXX)
chmod 755 "$work"
cleanup() {
  [[ -n ${postern_pid:-} ]] && kill "$postern_pid" 2>/dev/null || true
  for conf in upstream proxy; do
    [[ -f $work/$conf.pid ]] && kill "$(cat "$work/$conf.pid")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
cp certs/dev-fullchain.pem "$work/cert.pem"
cp certs/dev-key.pem "$work/key.pem"

cat >"$work/upstream.conf" <<EOF
worker_processes 1;
pid $work/upstream.pid;
error_log $work/upstream-error.log warn;
events { worker_connections 1024; }
http {
  log_format line '\$request';
  access_log $work/upstream.log line;
  server { listen 127.0.0.1:18180; location / { return 200 "ok\n"; } }
}
EOF
cat >"$work/proxy.conf" <<EOF
worker_processes 1;
pid $work/proxy.pid;
error_log $work/proxy-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:18180; keepalive 8; }
  server {
    listen 127.0.0.1:18543 ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location /denied { return 403; }
    location / { proxy_pass http://backend; }
  }
}
EOF
cat >"$work/gateway.toml" <<EOF
[gateway]
access_log = "off"
[[listeners]]
name = "https"
address = "127.0.0.1:19643"
tls = true
[[tls.certificates]]
server_names = ["localhost"]
cert = "cert.pem"
key = "key.pem"
[upstreams.data]
url = "http://127.0.0.1:18180"
[[routes]]
name = "open"
upstream = "data"
[[routes]]
name = "denied"
path_prefix = "/denied"
deny = true
EOF
"$NGINX" -p "$work" -c "$work/upstream.conf" -e "$work/upstream-error.log"
"$NGINX" -p "$work" -c "$work/proxy.conf" -e "$work/proxy-error.log"
RUST_LOG=error "$POSTERN" run -c "$work/gateway.toml" >"$work/postern.out" 2>&1 &
postern_pid=$!
for port in 18180 18543 19643; do
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done
touch "$work/upstream.log"

H="Host: localhost"
S="GET /smuggled HTTP/1.1\r\n$H\r\n\r\n"
declare -a names requests
add() { names+=("$1"); requests+=("$2"); }
add "CL.TE" "POST /a HTTP/1.1\r\n$H\r\nContent-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n$S"
add "TE.CL" "POST /a HTTP/1.1\r\n$H\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2b\r\n$S\r\n0\r\n\r\n"
add "two Content-Lengths" "POST /a HTTP/1.1\r\n$H\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello$S"
add "Content-Length list" "POST /a HTTP/1.1\r\n$H\r\nContent-Length: 5, 50\r\n\r\nhello$S"
add "TE: xchunked" "POST /a HTTP/1.1\r\n$H\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n$S"
add "TE: chunked, identity" "POST /a HTTP/1.1\r\n$H\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 5\r\n\r\n0\r\n\r\n$S"
add "TE: 'chunked ' (space)" "POST /a HTTP/1.1\r\n$H\r\nTransfer-Encoding: chunked \r\nContent-Length: 5\r\n\r\n0\r\n\r\n$S"
add "TE line folding" "POST /a HTTP/1.1\r\n$H\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n$S"
add "non-hex chunk size" "POST /a HTTP/1.1\r\n$H\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n$S"
add "overflowing chunk size" "POST /a HTTP/1.1\r\n$H\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n0\r\n\r\n$S"
add "bare LF" "GET /bare-lf HTTP/1.1\n$H\nConnection: close\n\n"
add "bare CR in a header" "GET /bare-cr HTTP/1.1\r\n$H\r\nX-A: a\rX-B: b\r\n\r\n"
add "Expect: 100-continue, denied" "POST /denied/x HTTP/1.1\r\n$H\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
add "HTTP/1.0 keep-alive x2" "GET /one HTTP/1.0\r\n$H\r\nConnection: keep-alive\r\n\r\nGET /two HTTP/1.0\r\n$H\r\n\r\n"
add "absolute-form, other host" "GET http://internal.example.com/x HTTP/1.1\r\n$H\r\nConnection: close\r\n\r\n"
add "CONNECT" "CONNECT internal.example.com:22 HTTP/1.1\r\nHost: internal.example.com:22\r\n\r\n"
add "duplicated Host" "GET /x HTTP/1.1\r\n$H\r\nHost: evil.example.com\r\nConnection: close\r\n\r\n"
add "NUL in a header" "GET /x HTTP/1.1\r\n$H\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n"
add "space before colon" "GET /x HTTP/1.1\r\n$H\r\nX-A : b\r\nConnection: close\r\n\r\n"
add "Connection: X-Forwarded-For" "GET /x HTTP/1.1\r\n$H\r\nConnection: close, X-Forwarded-For\r\n\r\n"
add "Host with trailing dot" "GET /x HTTP/1.1\r\nHost: localhost.\r\nConnection: close\r\n\r\n"

probe() { # port request -> "statuses | upstream saw"
  local before after statuses saw
  before=$(wc -l <"$work/upstream.log")
  statuses=$(printf "$2" | timeout 4 openssl s_client -quiet -connect "127.0.0.1:$1" \
    -servername localhost 2>/dev/null | tr -d '\r' | awk '/^HTTP\/1\.[01] [0-9]+/ {printf "%s ", $2}' || true)
  sleep 0.3
  after=$(wc -l <"$work/upstream.log")
  saw=$(tail -n $(( after - before )) "$work/upstream.log" | awk '{print $2}' | paste -sd, -)
  [[ $after -eq $before ]] && saw="nothing"
  echo "${statuses:-(closed)}| ${saw}"
}

printf '| case | postern: answer | postern: upstream saw | nginx: answer | nginx: upstream saw |\n'
printf '|---|---|---|---|---|\n'
for i in "${!names[@]}"; do
  p=$(probe 19643 "${requests[$i]}")
  n=$(probe 18543 "${requests[$i]}")
  printf '| %s | %s | %s | %s | %s |\n' "${names[$i]}" "${p%%|*}" "${p#*| }" "${n%%|*}" "${n#*| }"
done
