#!/usr/bin/env bash
# promtool on a live scrape: starts vnetd with a temporary config and database, makes a few
# requests (a served one, a refused one, a SOAP fault, a 413), scrapes the admin /metrics and
# pipes it to `promtool check metrics`. Errors (exposition promtool cannot parse) fail; lint
# warnings are listed and do not fail.
#
#   tests/metrics/check.sh [--bin target/debug/vnetd]
#
# Needs promtool (Debian: the `prometheus` package) and python3 (HTTP client, free ports).
# Last line: `N passed, N failed` (scripts/test reads it).

set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

bin=${CARGO_TARGET_DIR:-target}/debug/vnetd
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    *) echo "usage: $0 [--bin PATH]" >&2; exit 2 ;;
  esac
done

passed=0 failed=0
pass() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAILED: $1"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }

if ! command -v promtool >/dev/null; then
  fail "promtool not found (apt-get install --no-install-recommends prometheus)"
  finish
fi
if [ ! -x "$bin" ]; then
  fail "no vnetd binary at $bin"
  finish
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/vnetd-metrics.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  rm -rf "$dir"
}
trap cleanup EXIT

read -r port admin_port < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
cat >"$dir/vnetd.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin_port"
[storage]
path = "$dir/vnetd.db"
[security]
argon2_m_kib = 64
argon2_t = 1
[log]
target = "stderr"
level = "info"
TOML

"$bin" --config "$dir/vnetd.toml" peer add --id 35000001 --kind sp \
  --key 0123456789abcdeffedcba987654321089abcdef01234567 >/dev/null 2>>"$dir/vnetd.log"
"$bin" --config "$dir/vnetd.toml" run 2>>"$dir/vnetd.log" &
pid=$!
for _ in $(seq 100); do
  "$bin" --config "$dir/vnetd.toml" healthcheck >/dev/null 2>&1 && break
  sleep 0.1
done
if ! "$bin" --config "$dir/vnetd.toml" healthcheck >/dev/null 2>&1; then
  fail "vnetd did not start; log:"
  cat "$dir/vnetd.log"
  finish
fi
pass "vnetd started"

# A served GetTime, a refused caller (-20001), a SOAP fault, a 413; then the scrape.
python3 - "$port" "$admin_port" "$dir/metrics.txt" <<'PY' || fail "requests or scrape failed"
import sys, urllib.request, urllib.error
port, admin, out = sys.argv[1], sys.argv[2], sys.argv[3]
url = f"http://127.0.0.1:{port}/ProvinceForSP/services/ProvinceForSP"
def post(body):
    rq = urllib.request.Request(url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"})
    try:
        with urllib.request.urlopen(rq, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
def env(op, fields):
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields)
    return (f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            f'<{op} xmlns="http://vnet.cn/province/v3/ProvinceForSP">{inner}</{op}></soap:Body></soap:Envelope>').encode()
assert post(env("GetTime", [("SPID", "35000001")])) == 200
assert post(env("UserAuth", [("SPID", "35999999"), ("TimeStamp", "2026-01-01 00:00:00"), ("Authenticator", "x")])) == 200
assert post(b"<not-soap/>") == 500
assert post(b"x" * 70000) == 413
with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
    open(out, "wb").write(r.read())
PY
if [ -s "$dir/metrics.txt" ]; then
  pass "scraped /metrics ($(wc -l <"$dir/metrics.txt") lines)"
else
  fail "empty scrape"
  finish
fi

promtool check metrics <"$dir/metrics.txt" >"$dir/promtool.out" 2>&1
rc=$?
case $rc in
  0) pass "promtool check metrics: no problems" ;;
  3)
    # promtool's exit status for lint problems only (the exposition parsed).
    pass "promtool check metrics: parsed; lint warnings:"
    sed 's/^/  warning: /' "$dir/promtool.out"
    ;;
  *)
    fail "promtool check metrics exited $rc:"
    sed 's/^/  /' "$dir/promtool.out"
    ;;
esac

grep -q '^vnetd_http_refused_total{listener="soap",status="413"} 1$' "$dir/metrics.txt" &&
  pass "the 413 is counted" || fail "vnetd_http_refused_total{listener=\"soap\",status=\"413\"} is not 1"
grep -q '^vnetd_requests_total{service="ProvinceForSP",operation="GetTime",result="0"} 1$' "$dir/metrics.txt" &&
  pass "the GetTime is counted" || fail "vnetd_requests_total for GetTime is not 1"
grep -q 'refused ProvinceForSP/UserAuth from peer 35999999 at 127.0.0.1: Result -20001' "$dir/vnetd.log" &&
  pass "the refused caller is logged" || fail "no log line for the refused caller"
finish
