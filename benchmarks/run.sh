#!/usr/bin/env bash
# Fan-out benchmarks, repeatable: hubbub and comparison servers under wsload,
# each server pinned to core 1 and the load generator to core 0.
#
#   benchmarks/run.sh                 # every scenario, every server
#   SERVERS="hubbub gochat" SCENARIOS="F1 F4" benchmarks/run.sh
#
# Needs: Go with Debian's gorilla/websocket (apt-get install -y golang-go
# golang-github-gorilla-websocket-dev), and for the comparisons
# pip install python-socketio uvicorn websockets. Results: one JSON line per run
# in benchmarks/results/$(date +%F).jsonl, and a table on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
shared=${SHARED:-$root/../shared}
servers=${SERVERS:-"hubbub goevents gocoalesce websockets socketio gochat"}
scenarios=${SCENARIOS:-"F1 F2 F3 F4"}
out=$here/results/$(date +%F).jsonl
mkdir -p "$here/results"
ulimit -n "$(ulimit -Hn)"  # F3 holds 10,000 sockets on each side

build=$(mktemp -d)
trap 'rm -rf "$build"; kill $(jobs -p) 2>/dev/null || true' EXIT
go_build() {  # name, source file
    mkdir -p "$build/src/$1" && cp "$2" "$build/src/$1/main.go"
    (cd "$build/src/$1" && GOPATH=$build:/usr/share/gocode GO111MODULE=off go build -o "$build/$1" .)
}
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
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return
        sleep 0.1
    done
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

args_for() {  # scenario server
    local msgs=3000
    # The slow servers get fewer messages: per-delivery figures are rates.
    case $2 in goevents) msgs=1000 ;; websockets) msgs=600 ;; socketio) msgs=150 ;; esac
    # F4 runs long enough on the fast servers for the stalled member's backlog to
    # pass what the kernel (up to 4 MiB), the transport and the outbox hold, about
    # 31,000 messages, so that it is really dropped while the others are measured.
    if [ "$1" = F4 ] && { [ "$2" = hubbub ] || [ "$2" = gocoalesce ]; }; then msgs=40000; fi
    case $1 in
        F1|F4) echo "-clients 1000 -rooms 1 -msgs $msgs -window 32 -size 64" ;;
        F2) echo "-clients 5000 -rooms 500 -msgs $((msgs / 15 + 1)) -window 8 -size 64" ;;
        F3) echo "-clients 10000 -rooms 100 -msgs 1 -window 1 -size 64" ;;
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
        writes0=$(awk '/^syscw/ {print $2}' "/proc/$pid/io" 2>/dev/null || echo 0)
        # shellcheck disable=SC2046
        # timeout: wsload can hang on gochat's F3 (one global room: each publisher
        # gets 100 echoes for a window of 1); the run then records a failure.
        # F3 takes under 30 s on every server, so it gets less time than the rest.
        limit=420; [ "$scenario" = F3 ] && limit=120
        line=$(timeout "$limit" taskset -c 0 env GOMAXPROCS=1 "$build/wsload" -url "$(url_for "$server" "$port")" \
            -dialect "$(dialect_for "$server")" $(args_for "$scenario" "$server") -server-pid "$pid" \
            -timeout 300s -json 2>/dev/null) || true  # wsload exits 1 when messages were lost
        [ -n "$line" ] || line='{"error": "wsload failed"}'
        rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        # write-family system calls the server made during the run: the kernel's
        # share of its CPU is about one loopback write each (benchmarks/writecost.py)
        writes=$(( $(awk '/^syscw/ {print $2}' "/proc/$pid/io" 2>/dev/null || echo 0) - writes0 ))
        dropped=null  # hubbub counts the slow consumers it dropped; the others do not say
        [ "$server" = hubbub ] && dropped=$(python3 -c "import urllib.request as u; print(next((l.split()[1] for l in u.urlopen('http://127.0.0.1:$port/metrics').read().decode().splitlines() if l.startswith('hubbub_slow_consumers_dropped_total')), 'null'))" 2>/dev/null || echo null)
        echo "{\"scenario\": \"$scenario\", \"server\": \"$server\", \"server_rss_kb\": $rss_kb, \"server_writes\": $writes, \"server_dropped\": $dropped, \"wsload\": $line}" | tee -a "$out"
        [ -n "$stall" ] && kill "$stall" 2>/dev/null || true
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    done
done
python3 "$here/table.py" "$out"
