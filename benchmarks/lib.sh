# Shell functions shared by run.sh and ab.sh: sourced, not run.
# The caller sets $here (this directory), $root (the checkout), $build (a scratch directory) and $out
# (the results file); every server is measured on core 1, wsload on core 0.

shared_dir() {  # ../shared beside this checkout, or beside the main checkout when this is a git worktree
    local common
    common=$(git -C "$root" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
    if [ ! -d "$root/../shared" ] && [ -n "$common" ] && [ -d "$(dirname "$common")/../shared" ]; then
        echo "$(dirname "$common")/../shared"
    else
        echo "$root/../shared"
    fi
}

go_build() {  # name, source file -> $build/name
    mkdir -p "$build/src/$1" && cp "$2" "$build/src/$1/main.go"
    (cd "$build/src/$1" && GOPATH=$build:/usr/share/gocode GO111MODULE=off go build -o "$build/$1" .)
}

wait_port() {  # port: succeeds once something listens there, fails after 10 s
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

args_for() {  # scenario server -> wsload flags
    local msgs=${MSGS:-3000}
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

measure() {  # scenario server url dialect pid port [extra JSON fields] -> one JSON line, appended to $out
    local scenario=$1 server=$2 url=$3 dialect=$4 pid=$5 port=$6 extra=${7:-}
    local writes0 writes line rss_kb dropped limit
    writes0=$(awk '/^syscw/ {print $2}' "/proc/$pid/io" 2>/dev/null || echo 0)
    # timeout: wsload can hang on gochat's F3 (one global room: each publisher
    # gets 100 echoes for a window of 1); the run then records a failure.
    # F3 takes under 30 s on every server, so it gets less time than the rest.
    limit=420; [ "$scenario" = F3 ] && limit=120
    # shellcheck disable=SC2046
    line=$(timeout "$limit" taskset -c 0 env GOMAXPROCS=1 "$build/wsload" -url "$url" \
        -dialect "$dialect" $(args_for "$scenario" "$server") -server-pid "$pid" \
        -timeout 300s -json 2>/dev/null) || true  # wsload exits 1 when messages were lost
    [ -n "$line" ] || line='{"error": "wsload failed"}'
    rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    # write-family system calls the server made during the run: the kernel's
    # share of its CPU is about one loopback write each (benchmarks/writecost.py)
    writes=$(( $(awk '/^syscw/ {print $2}' "/proc/$pid/io" 2>/dev/null || echo 0) - writes0 ))
    dropped=null  # hubbub counts the slow consumers it dropped; the others do not say
    [ "$server" = hubbub ] && dropped=$(python3 -c "import urllib.request as u; print(next((l.split()[1] for l in u.urlopen('http://127.0.0.1:$port/metrics').read().decode().splitlines() if l.startswith('hubbub_slow_consumers_dropped_total')), 'null'))" 2>/dev/null || echo null)
    echo "{\"scenario\": \"$scenario\", \"server\": \"$server\", ${extra:+$extra, }\"server_rss_kb\": $rss_kb, \"server_writes\": $writes, \"server_dropped\": $dropped, \"wsload\": $line}" | tee -a "$out"
}
