#!/usr/bin/env bash
# F1 with and without a webhook endpoint that answers slowly, interleaved (plain, webhook, plain, ...):
# a webhook must never slow message delivery. Server on core 1, wsload on core 0, the slow
# endpoint (benchmarks/slow_webhook.py, which answers each POST after DELAY seconds) beside wsload.
#
#   benchmarks/webhook_ab.sh              # 3 rounds, DELAY=2, with --webhook-messages
#   N=5 DELAY=-1 benchmarks/webhook_ab.sh # an endpoint that never answers
#
# Results: one JSON line per run in benchmarks/results/$(date +%F).jsonl with "variant", then a table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# shellcheck source=benchmarks/lib.sh
. "$here/lib.sh"
shared=${SHARED:-$(shared_dir)}
rounds=${N:-3}
delay=${DELAY:-2}
out=${OUT:-$here/results/$(date +%F).jsonl}
mkdir -p "$here/results"
ulimit -n "$(ulimit -Hn)"
build=$(mktemp -d)
trap 'rm -rf "$build"; kill $(jobs -p) 2>/dev/null || true' EXIT
go_build wsload "$shared/tools/wsload/main.go"
runs=$(mktemp)

hook_port=9009
taskset -c 0 python3 "$here/slow_webhook.py" --port $hook_port --delay "$delay" >"$build/hook.log" &
hook=$!
wait_port $hook_port
hook_args=(--webhook "http://127.0.0.1:$hook_port/hook" --webhook-secret bench-secret --webhook-messages)

for round in $(seq "$rounds"); do
    for variant in plain webhook; do
        port=$((8100 + round * 2)); [ "$variant" = webhook ] && port=$((port + 1))
        extra=()
        [ "$variant" = webhook ] && extra=("${hook_args[@]}")
        taskset -c 1 env PYTHONPATH="$root/src" python3 -m hubbub serve --port "$port" --log-level warning \
            --rate-limit 0 "${extra[@]}" &
        pid=$!
        wait_port "$port" || { echo "server did not start" >&2; exit 1; }
        measure F1 hubbub "ws://127.0.0.1:$port/ws" events "$pid" "$port" "\"variant\": \"$variant\", \"delay\": $delay" \
            | tee -a "$runs" >/dev/null
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
done
kill -TERM "$hook"; wait "$hook" 2>/dev/null || true
echo "webhook endpoint: $(cat "$build/hook.log")"
python3 - "$runs" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'variant':8} {'deliveries/s':>13} {'CPU us/delivery':>16} {'p99 ms':>8}")
for variant in ("plain", "webhook"):
    mine = [r["wsload"] for r in rows if r["variant"] == variant and "error" not in r["wsload"]]
    for w in mine:
        print(f"{variant:8} {w.get('deliveries_per_s', 0):13,.0f} {w.get('server_cpu_us_per_delivery', 0):16.3f} {w.get('p99_ms', 0):8.1f}")
    if mine:
        med = lambda k: statistics.median(w.get(k, 0) for w in mine)
        print(f"{variant:8} median {med('deliveries_per_s'):,.0f}/s, {med('server_cpu_us_per_delivery'):.3f} us, p99 {med('p99_ms'):.1f} ms")
PY
