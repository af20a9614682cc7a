#!/usr/bin/env bash
# smoke.sh — builds hummingbird-server (debug: the faster build on 2 cores), starts it on a
# free loopback port, sends 1,000 GET /json requests and checks that every one answered
# 200, then checks that /metrics reports swmalloc_mallocs_total > 0, which proves that
# swmalloc is the server's malloc. Exit 0 on success, 1 with a message otherwise.
set -euo pipefail

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$dir/lib.sh"

work=$(mktemp -d)
trap 'stop_server; rm -rf "$work"' EXIT

fail() {
    echo "smoke: FAIL: $*" >&2
    exit 1
}

echo "smoke: building hummingbird-server (debug)"
swift build --package-path "$dir" --product hummingbird-server
bin=$(swift build --package-path "$dir" --show-bin-path)

start_server "$work/server.log" "$bin/hummingbird-server" || fail "the server did not start"
base="http://127.0.0.1:$SERVER_PORT"
echo "smoke: server pid $SERVER_PID on $base"

# One curl, one keep-alive connection, 1,000 transfers: a config with a url/output pair
# per request; -w prints each transfer's status code.
for ((i = 0; i < 1000; i++)); do
    printf 'url = "%s/json?n=%d"\noutput = "/dev/null"\n' "$base" $((i % 200))
done >"$work/requests.cfg"
curl -s --max-time 120 -K "$work/requests.cfg" -w '%{http_code}\n' >"$work/codes" || true
total=$(wc -l <"$work/codes")
ok=$(grep -c '^200$' "$work/codes" || true)
echo "smoke: /json: $ok of 1000 requests answered 200"
((total == 1000 && ok == 1000)) ||
    fail "/json: $ok of 1000 requests answered 200 ($total answered); codes: $(sort "$work/codes" | uniq -c | tr '\n' ' ')"

body=$(curl -sf --max-time 10 "$base/json?n=3") || fail "/json?n=3 did not answer 200"
items=$(grep -o '"id":' <<<"$body" | wc -l || true)
[[ $body == *'"count":3'* && $items -eq 3 ]] || fail "/json?n=3 returned an unexpected body: $body"

metrics=$(curl -sf --max-time 10 "$base/metrics") || fail "/metrics did not answer 200"
grep -q '^# TYPE swmalloc_mallocs_total counter$' <<<"$metrics" ||
    fail "/metrics has no swmalloc_mallocs_total counter (swmalloc is not the server's malloc?):
$metrics"
mallocs=$(awk '$1 == "swmalloc_mallocs_total" { print $2 }' <<<"$metrics")
[[ $mallocs =~ ^[0-9]+$ && $mallocs -gt 0 ]] ||
    fail "swmalloc_mallocs_total is '$mallocs', not a count above 0"
echo "smoke: /metrics: swmalloc_mallocs_total $mallocs"
grep -E '^(swmalloc_[a-z_]+|process_resident_memory_bytes) ' <<<"$metrics" | sort | sed 's/^/smoke:   /'

echo "smoke: server RSS $(rss_mib "$SERVER_PID")"
stop_server
echo "smoke: PASS"
