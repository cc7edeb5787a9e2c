#!/usr/bin/env bash
# restart_time.sh [BUILD_DIR] [N] -- how long a node takes to come back
# after SIGKILL, under load, and where that time goes.
#
# A node (ringkeep node, defaults: cache 256 MiB) drains the order book
# engine (examples/orderbook), which writes blocks without pause.  N times
# (default 50): after a random 0.3-1.5 s of load the node is SIGKILLed and
# started again at once; the restart time is from starting the new node
# process until `ringkeep status` gets its answer (so it includes the
# status command's own start, a few ms: the resolution of the figure).
# The node's "node started" log line splits its own start into store_open
# (data directory lock, Berkeley DB environment open with recovery, the
# journal and meta databases), applier_open (state tables) and the ring's
# take-over.  The engine is restarted if it stopped (it waits at most 10 s
# for room while no node drains).
#
# Prints p50/p99/max of each over the N restarts.  Never fails on time:
# exit 0 when every restart came up, 1 otherwise.
set -euo pipefail
build=${1:-build}
n=${2:-50}
rk=$build/ringkeep
ob=$build/examples/orderbook
dir=$(mktemp -d /tmp/rk-restart.XXXXXX)
ring=restart.$$
node=
engine=

cleanup() {
    [ -n "$engine" ] && kill -9 "$engine" 2>/dev/null || true
    [ -n "$node" ] && kill -9 "$node" 2>/dev/null || true
    wait 2>/dev/null || true
    "$rk" ring rm "$ring" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

now_ns() { date +%s%N; }

start_node() {
    "$rk" node --data-dir "$dir/data" --ring "$ring" --log-level info >>"$dir/node.log" 2>&1 &
    node=$!
}

# waits (bounded: 3000 tries) until the node answers its status
wait_up() {
    local i
    for ((i = 0; i < 3000; i++)); do
        "$rk" status -d "$dir/data" >/dev/null 2>&1 && return 0
        kill -0 "$node" 2>/dev/null || { echo "restart_time: the node exited; log:" >&2; tail -5 "$dir/node.log" >&2; return 1; }
    done
    echo "restart_time: the node did not answer" >&2
    return 1
}

start_engine() {
    "$ob" --ring "$ring" --data-dir "$dir/data" --blocks 100000000 --orders-per-block 200 >/dev/null 2>>"$dir/engine.log" &
    engine=$!
}

# quantiles of the numbers on stdin: "p50 p99 max"
quantiles() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        i50 = int(0.50 * NR + 0.999999); i99 = int(0.99 * NR + 0.999999)
        printf "%.1f %.1f %.1f\n", v[i50], v[i99], v[NR] }'
}

mkdir -p "$dir/data"
start_node
wait_up
start_engine
: >"$dir/restarts"
for ((k = 1; k <= n; k++)); do
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.3 + 1.2 * r / 32767 }')"
    kill -9 "$node"
    wait "$node" 2>/dev/null || true
    t0=$(now_ns)
    start_node
    wait_up
    t1=$(now_ns)
    echo $(((t1 - t0) / 1000)) >>"$dir/restarts"
    kill -0 "$engine" 2>/dev/null || { wait "$engine" 2>/dev/null || true; start_engine; }
done

status=$("$rk" status -d "$dir/data")
started=$(grep 'msg="node started"' "$dir/node.log" | tail -n "$n")
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
echo "restart_time: $n SIGKILLs under the order book engine's load; data dir $dir (/tmp)"
echo "  at the end: $(awk '$1 == "journal_seq" || $1 == "groups_applied" || $1 == "records" { printf "%s %s  ", $1, $2 }' <<<"$status")"
printf '  %-34s %9s %9s %9s\n' "ms over $n restarts" p50 p99 max
printf '  %-34s %9s %9s %9s\n' "restart (spawn -> status answers)" $(awk '{ print $1 / 1000 }' "$dir/restarts" | quantiles)
for f in start_ms store_open_ms applier_open_ms ring_ms; do
    printf '  %-34s %9s %9s %9s\n' "node: $f" $(field "$f" <<<"$started" | quantiles)
done
