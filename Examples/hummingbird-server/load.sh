#!/usr/bin/env bash
# load.sh — builds the example in release, then loads /json?n=100 with wrk once per
# allocator and prints a markdown table: requests/s, p99 latency, the server's RSS right
# after the run and after 5 s idle.
#   swmalloc  hummingbird-server (swmalloc linked, no preload)
#   glibc     hummingbird-server-plain
#   jemalloc  hummingbird-server-plain with LD_PRELOAD=$JEMALLOC (skipped when missing)
# DURATION (seconds, default 10) sets each wrk run. Loopback only; exit 2 when wrk is
# missing, 1 when a run fails.
set -euo pipefail

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$dir/lib.sh"

duration=${DURATION:-10}
jemalloc=${JEMALLOC:-/usr/lib/x86_64-linux-gnu/libjemalloc.so.2}
[[ $duration =~ ^[1-9][0-9]*$ ]] || { echo "load: DURATION must be a whole number of seconds, not '$duration'" >&2; exit 2; }
command -v wrk >/dev/null || { echo "load: wrk is missing: install the Debian package wrk (apt-get install -y wrk)" >&2; exit 2; }
command -v curl >/dev/null || { echo "load: curl is missing: install the Debian package curl (apt-get install -y curl)" >&2; exit 2; }

work=$(mktemp -d)
trap 'stop_server; rm -rf "$work"' EXIT

echo "load: building (release)" >&2
for product in hummingbird-server hummingbird-server-plain; do
    swift build -c release --package-path "$dir" --product "$product" >&2
done
bin=$(swift build -c release --package-path "$dir" --show-bin-path)

rows=()
notes=()

# measure NAME EXPECT COMMAND... — starts the server with COMMAND, runs wrk against it,
# reads its RSS after the run and after 5 s idle, and appends a table row. EXPECT is
# "swmalloc" when /metrics must show swmalloc's counters, "absent" when it must say the
# API is not found: a check that the row measures the allocator it names.
measure() {
    local name=$1 expect=$2 url out rps p99 rss_run rss_idle metrics
    shift 2
    echo "load: $name: starting the server" >&2
    start_server "$work/$name.log" "$@" || return 1
    url="http://127.0.0.1:$SERVER_PORT/json?n=100"
    out="$work/$name.wrk"
    echo "load: $name: wrk -t2 -c32 -d${duration}s --latency $url" >&2
    timeout $((duration + 30)) wrk -t2 -c32 -d"${duration}s" --latency "$url" >"$out"
    rss_run=$(rss_mib "$SERVER_PID")
    sleep 5
    rss_idle=$(rss_mib "$SERVER_PID")
    metrics=$(curl -sf --max-time 10 "http://127.0.0.1:$SERVER_PORT/metrics")
    stop_server
    if grep -q 'Non-2xx or 3xx responses' "$out"; then
        echo "load: $name: some responses were not 200:" >&2
        cat "$out" >&2
        return 1
    fi
    case $expect in
    swmalloc) grep -q '^swmalloc_mallocs_total [1-9]' <<<"$metrics" ;;
    absent) grep -q '^# swmalloc statistics API not found' <<<"$metrics" ;;
    esac || { echo "load: $name: /metrics does not match the allocator:" >&2; echo "$metrics" >&2; return 1; }
    rps=$(awk '$1 == "Requests/sec:" { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    [[ -n $rps && -n $p99 ]] || { echo "load: $name: cannot read wrk's output:" >&2; cat "$out" >&2; return 1; }
    rows+=("| $name | $rps | $p99 | $rss_run | $rss_idle |")
}

measure swmalloc swmalloc "$bin/hummingbird-server"
measure glibc absent "$bin/hummingbird-server-plain"
if [ -e "$jemalloc" ]; then
    measure jemalloc absent env LD_PRELOAD="$jemalloc" "$bin/hummingbird-server-plain"
else
    notes+=("jemalloc skipped: $jemalloc is missing (Debian package libjemalloc2).")
fi

echo
echo "wrk -t2 -c32 -d${duration}s --latency /json?n=100, loopback"
echo
echo "| allocator | requests/s | p99 | RSS after run | RSS after 5 s idle |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
for note in "${notes[@]+"${notes[@]}"}"; do
    printf '\n%s\n' "$note"
done
