#!/usr/bin/env bash
# Opt-in TLS scan of Postern's listener with testssl.sh (not run in CI).
#
#   tests/tls-scan.sh                # shipped gateway.toml, its dev certificate
#   POSTERN_BIN=path/to/postern tests/tls-scan.sh
#   TLS_SCAN_MIN_VERSION=1.3 tests/tls-scan.sh
#   TLS_SCAN_KEEP=/tmp/scan.json tests/tls-scan.sh   # keep testssl's JSON and report
#
# Starts `postern run -c gateway.toml` (the shipped config; listeners moved
# to free loopback ports with POSTERN_* overrides, access log off), runs
# testssl.sh against the TLS listener with `--severity LOW`, and prints every
# finding. Exits 1 if any finding is above LOW (MEDIUM, HIGH, CRITICAL), 2 if
# the scan itself could not run.
#
# Findings about where the certificate came from rather than how the gateway
# speaks TLS (revocation URIs, CAA records, validity period, CT) describe the
# shipped development certificate, which a deployment replaces. They are in
# TLS_SCAN_IGNORE, printed as "ignored", and do not fail the scan; set
# TLS_SCAN_IGNORE="" to fail on them too.
#
# Needs testssl.sh (installed with apt-get as root when missing), python3
# (free ports) and jq.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CONFIG=${TLS_SCAN_CONFIG:-$ROOT/gateway.toml}
CA=${TLS_SCAN_CA:-$ROOT/certs/dev-ca.pem}
HOST=${TLS_SCAN_HOST:-localhost}
IGNORE=${TLS_SCAN_IGNORE-cert_revocation cert_crlDistributionPoints cert_ocspURL OCSP_stapling DNS_CAArecord cert_validityPeriod certs_countServer cert_certificateTransparency}

die() { echo "tls-scan: $*" >&2; exit 2; }

# --- testssl.sh --------------------------------------------------------------
TESTSSL=$(command -v testssl.sh || command -v testssl || true)
if [[ -z $TESTSSL ]]; then
    echo "tls-scan: installing testssl.sh (Debian package)" >&2
    if [[ $(id -u) -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y testssl.sh >&2 ||
        { "${SUDO[@]}" apt-get update >&2 &&
          "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y testssl.sh >&2; } ||
        die "could not install testssl.sh"
    TESTSSL=$(command -v testssl.sh || command -v testssl) || die "testssl.sh not found after install"
fi
command -v jq >/dev/null || die "jq is needed to read testssl's JSON"
command -v python3 >/dev/null || die "python3 is needed to find free ports"

# --- postern -----------------------------------------------------------------
if [[ -z ${POSTERN_BIN:-} ]]; then
    echo "tls-scan: cargo build --release --bin postern" >&2
    cargo build --release --bin postern >&2 || die "build failed"
    POSTERN_BIN=$ROOT/target/release/postern
fi
[[ -x $POSTERN_BIN ]] || die "$POSTERN_BIN is not executable"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/postern-tls-scan.XXXXXX")
PID=
cleanup() {
    if [[ -n $PID ]]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

read -r TLS_PORT HTTP_PORT OPS_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')

# Config overrides already in the environment are cleared, then ours are set.
while IFS='=' read -r name _; do unset "$name"; done < <(env | grep -E '^POSTERN_[A-Za-z0-9_]*__' || true)
unset POSTERN_CONFIG
export POSTERN_LISTENERS__HTTPS__ADDRESS=127.0.0.1:$TLS_PORT
export POSTERN_LISTENERS__HTTP__ADDRESS=127.0.0.1:$HTTP_PORT
export POSTERN_LISTENERS__OPS__ADDRESS=127.0.0.1:$OPS_PORT
export POSTERN_GATEWAY__UPGRADE_SOCKET=$WORK/upgrade.sock
export POSTERN_GATEWAY__ACCESS_LOG=off
[[ -n ${TLS_SCAN_MIN_VERSION:-} ]] && export POSTERN_TLS__MIN_VERSION="\"$TLS_SCAN_MIN_VERSION\""

"$POSTERN_BIN" check -c "$CONFIG" >"$WORK/check.log" 2>&1 ||
    { cat "$WORK/check.log" >&2; die "postern check failed"; }
RUST_LOG=${RUST_LOG:-warn} "$POSTERN_BIN" run -c "$CONFIG" >"$WORK/postern.out" 2>"$WORK/postern.err" &
PID=$!
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null; then break; fi
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/postern.err" >&2; die "postern exited"; }
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null ||
    { cat "$WORK/postern.err" >&2; die "postern is not listening on $TLS_PORT"; }
echo "tls-scan: postern $("$POSTERN_BIN" --version 2>/dev/null || true) on 127.0.0.1:$TLS_PORT (SNI $HOST), config $CONFIG" >&2

# --- scan --------------------------------------------------------------------
JSON=$WORK/testssl.json
set +e
"$TESTSSL" --quiet --color 0 --warnings batch --severity LOW \
    --ip 127.0.0.1 --add-ca "$CA" --jsonfile "$JSON" \
    "$HOST:$TLS_PORT" >"$WORK/testssl.log" 2>&1
TESTSSL_RC=$?
set -e
if [[ ! -s $JSON ]]; then
    cat "$WORK/testssl.log" >&2
    die "testssl.sh wrote no JSON (exit $TESTSSL_RC)"
fi
kill -0 "$PID" 2>/dev/null || { cat "$WORK/postern.err" >&2; die "postern died during the scan"; }

if [[ -n ${TLS_SCAN_KEEP:-} ]]; then
    cp "$JSON" "$TLS_SCAN_KEEP"
    cp "$WORK/testssl.log" "$TLS_SCAN_KEEP.log"
    echo "tls-scan: testssl JSON kept in $TLS_SCAN_KEEP, its report in $TLS_SCAN_KEEP.log" >&2
fi

# testssl's own problems (FATAL, WARN) mean the scan is not complete.
scan_problems=$(jq -r '.[] | select(.severity == "FATAL" or .severity == "WARN")
    | "\(.severity)\t\(.id)\t\(.finding)"' "$JSON")

echo
echo "testssl.sh findings at LOW and above (postern on 127.0.0.1:$TLS_PORT):"
printf '%-10s %-8s %-32s %s\n' "verdict" "severity" "id" "finding"
failing=0
while IFS=$'\t' read -r severity id finding; do
    [[ -z $severity ]] && continue
    verdict=ok
    case $severity in
        MEDIUM | HIGH | CRITICAL)
            if [[ " $IGNORE " == *" $id "* ]]; then
                verdict=ignored
            else
                verdict=FAIL
                failing=$((failing + 1))
            fi
            ;;
        LOW) verdict=low ;;
        *) continue ;;
    esac
    printf '%-10s %-8s %-32s %s\n' "$verdict" "$severity" "$id" "$finding"
done < <(jq -r '.[] | select(.severity | IN("LOW", "MEDIUM", "HIGH", "CRITICAL"))
    | "\(.severity)\t\(.id)\t\(.finding)"' "$JSON")

if [[ -n $scan_problems ]]; then
    echo
    echo "testssl.sh reported problems with the scan itself:"
    echo "$scan_problems"
fi
echo
if ((failing > 0)); then
    echo "tls-scan: FAILED: $failing finding(s) above LOW" >&2
    exit 1
fi
if grep -q '^FATAL' <<<"$scan_problems"; then
    die "the scan did not complete"
fi
echo "tls-scan: passed: nothing above LOW (ignored certificate-provenance ids: ${IGNORE:-none})"
