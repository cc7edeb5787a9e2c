#!/usr/bin/env bash
# backtest_test.sh -- examples/backtest resumes at the exact next tick and
# ends with the output of a run that never crashed:
#   1. with a node: the engine SIGKILLs itself in the middle of a tick's group
#      at random ticks (BT_KILLS times, default 4), restarts from the node's
#      state each time and finishes; its output (every bar and EMA, printed
#      from memory after checking that the node's tables hold exactly them)
#      equals an uninterrupted --offline run's, byte for byte;
#   2. with no node: the engine is killed mid-run, the node is killed too
#      (SIGKILL), and the engine resumes in memory from the newest checkpoint
#      file the node took (every_heights = 500 ticks); same output.
# BT_SEED picks the random kill points (printed, to repeat a failure).
# usage: backtest_test.sh PATH/TO/ringkeep PATH/TO/backtest
set -euo pipefail
rk=$1
bt=$2
ticks=${BT_TICKS:-3000}
kills=${BT_KILLS:-4}
seed=${BT_SEED:-$((RANDOM))}
RANDOM=$seed
dir=$(mktemp -d /tmp/rk-backtest.XXXXXX)
ring=bt.$$
node=
cleanup() {
    [ -z "$node" ] || kill -9 "$node" 2>/dev/null || true
    wait 2>/dev/null || true
    "$rk" ring rm "$ring" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "backtest_test: FAIL (BT_SEED=$seed): $*" >&2
    exit 1
}
echo "backtest_test: BT_SEED=$seed, $ticks ticks, $kills kills"

start_node() { # start_node DATA_DIR
    mkdir -p "$1"
    "$rk" node --data-dir "$1" --ring "$ring" --log-level warn --set ring.capacity=1M \
        --set checkpoint.every_heights=500 --set checkpoint.height_producer=backtest 2>>"$1.log" &
    node=$!
    for i in $(seq 1000); do # bounded: the node answers once it is up
        "$rk" status -d "$1" >/dev/null 2>&1 && return 0
        kill -0 "$node" 2>/dev/null || fail "the node exited: $(cat "$1.log")"
        sleep 0.05
    done
    fail "the node never answered"
}

# the step before a resume: "resuming at tick N from SOURCE (tick N-1 applied ..."
resumed_at() { sed -n 's/^backtest: resuming at tick \([0-9]*\) from .*/\1/p' "$1" | tail -n 1; }

"$bt" --offline --ticks "$ticks" >"$dir/ref.txt" || fail "offline run"
[ "$(head -n 1 "$dir/ref.txt" | cut -d' ' -f1-2)" = "tick $ticks" ] || fail "offline output: $(head -n 1 "$dir/ref.txt")"
[ "$(wc -l <"$dir/ref.txt")" -gt 100 ] || fail "offline output has too few bars"

# 1. SIGKILLs with a node
start_node "$dir/a"
kill_tick=0
for k in $(seq "$kills"); do
    kill_tick=$((kill_tick + 1 + RANDOM % (ticks / (kills + 1))))
    record=$((1 + RANDOM % 3))
    set +e
    "$bt" --ring "$ring" --data-dir "$dir/a" --ticks "$ticks" --kill-at-tick "$kill_tick" \
        --kill-at-record "$record" >"$dir/a.out" 2>"$dir/a.err"
    st=$?
    set -e
    [ "$st" -eq 137 ] || fail "the engine did not die at tick $kill_tick (exit $st): $(cat "$dir/a.err")"
    grep -q "^backtest: --kill-at-tick $kill_tick: SIGKILL after $record records" "$dir/a.err" ||
        fail "kill $k: $(cat "$dir/a.err")"
    # every tick before the killed one was a whole group in the ring: the
    # next start (rk_state_open waits for the node to apply them) resumes at it
    "$bt" --ring "$ring" --data-dir "$dir/a" --ticks "$kill_tick" >"$dir/a.part" 2>"$dir/a.err" ||
        fail "restart after kill $k: $(cat "$dir/a.err")"
    at=$(resumed_at "$dir/a.err")
    [ "$at" = "$kill_tick" ] || fail "kill at tick $kill_tick: the restart resumed at tick '$at': $(cat "$dir/a.err")"
    echo "backtest_test: killed in tick $kill_tick after $record records, resumed at tick $at"
done
"$bt" --ring "$ring" --data-dir "$dir/a" --ticks "$ticks" >"$dir/a.out" 2>"$dir/a.err" ||
    fail "the last run: $(cat "$dir/a.err")"
cmp "$dir/ref.txt" "$dir/a.out" || fail "output after $kills kills differs: $(diff "$dir/ref.txt" "$dir/a.out" | head)"
kill -TERM "$node"
wait "$node" || fail "node a did not stop cleanly: $(cat "$dir/a.log")"
node=

# 2. no node: the newest checkpoint file
newest_height() { # the backtest height of the newest checkpoint in $dir/b (none: empty)
    { "$rk" checkpoint list -d "$dir/b" --json 2>/dev/null || true; } |
        { grep -o '"backtest":[0-9]*' || true; } | cut -d: -f2 | sort -n | tail -n 1
}
"$rk" ring rm "$ring" || fail "ring rm after node a"
start_node "$dir/b"
kill_tick=$((ticks * 2 / 3 + RANDOM % (ticks / 4)))
set +e
"$bt" --ring "$ring" --data-dir "$dir/b" --ticks "$ticks" --kill-at-tick "$kill_tick" >"$dir/b.out" 2>"$dir/b.err"
st=$?
set -e
[ "$st" -eq 137 ] || fail "the engine did not die at tick $kill_tick (exit $st): $(cat "$dir/b.err")"
# the last tick whose group is whole is kill_tick - 1: the node checkpoints
# once that producer's height crosses a multiple of 500 (kill_tick 2000
# crosses none past 1500: BT_SEED=26972 waited for one at 2000)
last_mult=$(((kill_tick - 1) / 500 * 500))
for i in $(seq 1000); do # bounded: a checkpoint at a multiple of 500 ticks below the kill
    n=$(newest_height)
    [ -n "$n" ] && [ "$n" -ge "$last_mult" ] && break
    [ "$i" -lt 1000 ] || fail "no checkpoint at or past tick $last_mult: $("$rk" checkpoint list -d "$dir/b")"
    sleep 0.05
done
kill -9 "$node"
wait "$node" 2>/dev/null || true
node=
newest=$(ls "$dir/b/checkpoints"/*.rkcp | sort | tail -n 1)
want=$(newest_height)
[ -n "$want" ] || fail "no checkpoint with a backtest height: $("$rk" checkpoint list -d "$dir/b")"
"$bt" --checkpoint-dir "$dir/b/checkpoints" --ticks "$ticks" >"$dir/b.out" 2>"$dir/b.err" ||
    fail "resume from a checkpoint: $(cat "$dir/b.err")"
grep -q "^backtest: resuming at tick $((want + 1)) from $newest " "$dir/b.err" ||
    fail "want a resume at tick $((want + 1)) from $newest: $(cat "$dir/b.err")"
cmp "$dir/ref.txt" "$dir/b.out" || fail "output resumed from a checkpoint differs: $(diff "$dir/ref.txt" "$dir/b.out" | head)"
echo "backtest_test: killed in tick $kill_tick, no node: resumed at tick $((want + 1)) from $(basename "$newest")"
echo "backtest_test: ok"
