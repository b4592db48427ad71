#!/usr/bin/env bash
# Fan-out benchmarks, repeatable: hubbub and comparison servers under wsload,
# each server pinned to core 1 and the load generator to core 0.
#
#   benchmarks/run.sh                 # every scenario, every server
#   SERVERS="hubbub gochat" SCENARIOS="F1 F4" benchmarks/run.sh
#   MSGS=300 OUT=/tmp/smoke.jsonl benchmarks/run.sh   # shorter runs (the fast servers), elsewhere
#
# Needs: Go with Debian's gorilla/websocket (apt-get install -y golang-go
# golang-github-gorilla-websocket-dev), and for the comparisons
# pip install python-socketio uvicorn websockets. Results: one JSON line per run
# in benchmarks/results/$(date +%F).jsonl, and a table on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# shellcheck source=benchmarks/lib.sh
. "$here/lib.sh"  # go_build, wait_port, args_for, measure (shared by run.sh and ab.sh)
shared=${SHARED:-$(shared_dir)}
servers=${SERVERS:-"hubbub goevents gocoalesce websockets socketio gochat"}
scenarios=${SCENARIOS:-"F1 F2 F3 F4"}
out=${OUT:-$here/results/$(date +%F).jsonl}
mkdir -p "$here/results"
ulimit -n "$(ulimit -Hn)"  # F3 holds 10,000 sockets on each side

build=$(mktemp -d)
trap 'rm -rf "$build"; kill $(jobs -p) 2>/dev/null || true' EXIT
go_build wsload "$shared/tools/wsload/main.go"
go_build gochat "$here/servers/gochat/main.go"
go_build goevents "$here/servers/goevents/main.go"

start_server() {  # name port -> sets pid
    case $1 in
        hubbub) taskset -c 1 hubbub serve --port "$2" --log-level warning --rate-limit 0 & ;;  # one publisher sends thousands/s
        websockets) taskset -c 1 python3 "$here/servers/websockets_server.py" --port "$2" 2>>"$build/servers.log" & ;;
        socketio) taskset -c 1 python3 "$here/servers/socketio_server.py" --port "$2" 2>>"$build/servers.log" & ;;
        gochat) taskset -c 1 env GOMAXPROCS=1 "$build/gochat" -addr "127.0.0.1:$2" & ;;
        goevents) taskset -c 1 env GOMAXPROCS=1 "$build/goevents" -addr "127.0.0.1:$2" & ;;
        # The same Go hub built like hubbub: framed once, one write per drained queue.
        gocoalesce) taskset -c 1 env GOMAXPROCS=1 "$build/goevents" -coalesce -addr "127.0.0.1:$2" & ;;
    esac
    pid=$!
    wait_port "$2" && return
    echo "server $1 did not start" >&2; exit 1
}

url_for() {  # name port
    case $1 in
        socketio) echo "ws://127.0.0.1:$2/ws/" ;;
        *) echo "ws://127.0.0.1:$2/ws" ;;
    esac
}

dialect_for() {
    case $1 in
        socketio) echo socketio ;;
        gochat) echo gochat ;;
        *) echo events ;;
    esac
}

port=8700
for scenario in $scenarios; do
    for server in $servers; do
        if [ "$scenario" != F1 ] && [ "$server" = gochat ] && [ "$scenario" != F3 ]; then
            continue  # the Go example has one global room: only F1 and F3 compare
        fi
        port=$((port + 1))
        start_server "$server" "$port"
        stall=""
        if [ "$scenario" = F4 ]; then
            taskset -c 0 python3 "$here/stall.py" "$(url_for "$server" "$port")" bench-0 120 "$(dialect_for "$server")" &
            stall=$!
            sleep 0.5
        fi
        measure "$scenario" "$server" "$(url_for "$server" "$port")" "$(dialect_for "$server")" "$pid" "$port"
        [ -n "$stall" ] && kill "$stall" 2>/dev/null || true
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    done
done
python3 "$here/table.py" "$out"
