#!/usr/bin/env bash
# The textbook hub against hubbub, F1 and F3, in one run on one machine (docs/learn/fast-path.md).
# Each server pinned to core 1, the load generator to core 0, a fresh server per scenario.
# F1 runs with --msgs 1000 (1,000,000 deliveries) on both: the textbook's full F1 would take minutes.
# Usage: benchmarks/textbook_vs_hubbub.sh [OUT.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/textbook-vs-hubbub-$(date -u +%F).jsonl}"
: >"$out"
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done; exit 1; }
run() {  # server-name port scenario bench-args... -- server command...
    local name=$1 port=$2 scenario=$3; shift 3
    local bench=(); while [ "$1" != "--" ]; do bench+=("$1"); shift; done; shift
    taskset -c 1 "$@" >/dev/null 2>&1 & local pid=$!
    wait_port "$port"
    echo "--- $name $scenario" >&2
    taskset -c 0 python3 -m hubbub bench "$scenario" --url "ws://127.0.0.1:$port/ws" --server-pid "$pid" \
        --no-progress --json "${bench[@]}" | python3 -c "
import json, sys
r = json.load(sys.stdin); r['server'] = '$name'; r['scenario'] = '$scenario'
print(json.dumps(r))" | tee -a "$out"
    kill "$pid"; wait "$pid" || true
}
run textbook 8001 F1 --msgs 1000 -- python3 -m hubbub.textbook --port 8001
run textbook 8001 F3 -- python3 -m hubbub.textbook --port 8001
run hubbub 8000 F1 --msgs 1000 -- python3 -m hubbub serve --rate-limit 0 --port 8000
run hubbub 8000 F3 -- python3 -m hubbub serve --rate-limit 0 --port 8000
