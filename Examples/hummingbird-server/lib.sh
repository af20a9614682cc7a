# shellcheck shell=bash
# lib.sh — helpers for smoke.sh and load.sh (sourced, not run): start a server on a free
# loopback port, read its RSS, stop it. Every wait is bounded.

SERVER_PID=
SERVER_PORT=

# start_server LOG COMMAND... — runs COMMAND --port 0 with its output in LOG, reads the
# port it bound from its start-up line, and waits until GET /json?n=1 answers 200 (30 s
# at most). Sets SERVER_PID and SERVER_PORT; returns 1 with a message on failure.
start_server() {
    local log=$1 deadline=$((SECONDS + 30))
    shift
    "$@" --port 0 >"$log" 2>&1 &
    SERVER_PID=$!
    SERVER_PORT=
    until [ -n "$SERVER_PORT" ] && curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$SERVER_PORT/json?n=1"; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "error: the server exited at start-up; its output:" >&2
            cat "$log" >&2
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "error: the server did not answer within 30 s; its output:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
        SERVER_PORT=$(sed -n 's/.*Server started and listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    done
}

# stop_server — SIGTERM (graceful shutdown), SIGKILL after 10 s; does nothing when no
# server runs. Safe to call from an EXIT trap.
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# rss_mib PID — the process's VmRSS (/proc/PID/status) in MiB, one decimal.
rss_mib() {
    awk '/^VmRSS:/ { printf "%.1f MiB\n", $2 / 1024 }' "/proc/$1/status"
}
