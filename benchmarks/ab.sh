#!/usr/bin/env bash
# A/B of two hubbub source trees under wsload, interleaved (A B A B ...), so that
# the VM's drift hits both alike: server on core 1, wsload on core 0, a fresh
# server for every run, the same flags and bookkeeping as run.sh (benchmarks/lib.sh).
#
#   benchmarks/ab.sh /tmp/before/src /tmp/after/src          # F1 and F2, 3 rounds
#   N=5 SCENARIOS="F1" benchmarks/ab.sh /tmp/before /tmp/after
#   N=1 SCENARIOS=F1 MSGS=300 benchmarks/ab.sh src            # one short run of one tree
#
# A tree is a `src` directory or a checkout holding one; it runs as
# `PYTHONPATH=<src> python3 -m hubbub serve`. Each flag of UNLIMIT (default
# "--rate-limit=0") is passed to a tree whose `serve --help` knows it, so that
# no limit meant for abuse throttles the benchmark; e.g.
# UNLIMIT="--rate-limit=0 --max-connections-per-ip=100000". SERVER_ARGS go to
# every tree as they are. WSLOAD=path reuses a built wsload; OUT=file writes elsewhere.
# Results: one JSON line per run in benchmarks/results/$(date +%F).jsonl (with
# the tree, its commit and its server args), then a table of this invocation's
# runs: deliveries/s, server CPU per delivery, p99, each run and the median.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# shellcheck source=benchmarks/lib.sh
. "$here/lib.sh"  # go_build, wait_port, args_for, measure (shared by run.sh and ab.sh)
shared=${SHARED:-$(shared_dir)}
scenarios=${SCENARIOS:-"F1 F2"}
rounds=${N:-3}
unlimit=${UNLIMIT:-"--rate-limit=0"}
out=${OUT:-$here/results/$(date +%F).jsonl}
[ $# -ge 1 ] && [ $# -le 2 ] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
mkdir -p "$here/results"
ulimit -n "$(ulimit -Hn)"  # F2 holds 5,000 sockets on each side

build=$(mktemp -d)
trap 'rm -rf "$build"; kill $(jobs -p) 2>/dev/null || true' EXIT
if [ -n "${WSLOAD:-}" ]; then cp "$WSLOAD" "$build/wsload"; else go_build wsload "$shared/tools/wsload/main.go"; fi

srcs=() labels=() commits=() flags=()
for tree in "$@"; do
    src=$(cd "$tree" && pwd)
    [ -d "$src/hubbub" ] || src=$src/src
    [ -d "$src/hubbub" ] || { echo "ab.sh: no hubbub package in $tree" >&2; exit 2; }
    commit=$(git -C "$src" log -1 --format=%h -- . 2>/dev/null || echo unknown)
    [ -z "$(git -C "$src" status --porcelain -- . 2>/dev/null)" ] || commit=$commit+dirty
    help=$(PYTHONPATH=$src python3 -m hubbub serve --help)
    args=${SERVER_ARGS:-}
    for flag in $unlimit; do
        if grep -q -- "${flag%%=*}[ ,=]" <<<"$help"; then args="$args $flag"; fi
    done
    srcs+=("$src") commits+=("$commit") flags+=("${args# }")
    labels+=("$(echo AB | cut -c $((${#labels[@]} + 1)))")
    echo "ab.sh: ${labels[-1]} = $src ($commit), server args: ${args# }" >&2
done

run_id=$(date +%FT%T)
port=8800
for round in $(seq "$rounds"); do
    for scenario in $scenarios; do
        for i in "${!srcs[@]}"; do
            port=$((port + 1))
            # shellcheck disable=SC2086
            PYTHONPATH=${srcs[$i]} taskset -c 1 python3 -m hubbub serve --port "$port" --log-level warning ${flags[$i]} &
            pid=$!
            wait_port "$port" || { echo "ab.sh: ${labels[$i]} did not start" >&2; exit 1; }
            extra="\"ab_run\": \"$run_id\", \"round\": $round, \"tree\": \"${labels[$i]}\", \"commit\": \"${commits[$i]}\""
            extra="$extra, \"src\": \"${srcs[$i]}\", \"server_args\": \"${flags[$i]}\""
            measure "$scenario" hubbub "ws://127.0.0.1:$port/ws" events "$pid" "$port" "$extra"
            kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
        done
    done
done
python3 "$here/table.py" --ab "$out" "$run_id"
