#!/usr/bin/env bash
# finality_test.sh -- examples/finality restores its last finalized state and
# ends with the output of a run that never crashed:
#   1. with a node: the engine SIGKILLs itself in the middle of a step's group
#      at random steps (FT_KILLS times, default 3), restarts from the node's
#      state (the last finalized certificate verified) and finishes; its output
#      (every retained height: certified or open, signers, a digest of its
#      certificate bytes) equals an uninterrupted --offline run's, byte for byte;
#   2. with no node: the engine is killed mid-run, the node is killed too
#      (SIGKILL), and the engine resumes in memory from the newest checkpoint
#      file the node took (every_heights = 50 steps); same output.
# FT_SEED picks the random kill points (printed, to repeat a failure).
# usage: finality_test.sh PATH/TO/ringkeep PATH/TO/finality
set -euo pipefail
rk=$1
bt=$2
steps=${FT_STEPS:-300}
kills=${FT_KILLS:-3}
seed=${FT_SEED:-$((RANDOM))}
RANDOM=$seed
dir=$(mktemp -d /tmp/rk-finality.XXXXXX)
ring=ft.$$
node=
cleanup() {
    [ -z "$node" ] || kill -9 "$node" 2>/dev/null || true
    wait 2>/dev/null || true
    "$rk" ring rm "$ring" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "finality_test: FAIL (FT_SEED=$seed): $*" >&2
    exit 1
}
echo "finality_test: FT_SEED=$seed, $steps steps, $kills kills"

start_node() { # start_node DATA_DIR
    mkdir -p "$1"
    "$rk" node --data-dir "$1" --ring "$ring" --log-level warn --set ring.capacity=1M \
        --set checkpoint.every_heights=50 --set checkpoint.height_producer=finality 2>>"$1.log" &
    node=$!
    for i in $(seq 1000); do # bounded: the node answers once it is up
        "$rk" status -d "$1" >/dev/null 2>&1 && return 0
        kill -0 "$node" 2>/dev/null || fail "the node exited: $(cat "$1.log")"
        sleep 0.05
    done
    fail "the node never answered"
}

# the step of a resume: "resuming at step N from SOURCE (finalized ..."
resumed_at() { sed -n 's/^finality: resuming at step \([0-9]*\) from .*/\1/p' "$1" | tail -n 1; }

"$bt" --offline --steps "$steps" >"$dir/ref.txt" || fail "offline run"
grep -q "^step $steps finalized [0-9]" "$dir/ref.txt" || fail "offline output: $(head -n 1 "$dir/ref.txt")"
[ "$(grep -c ' cert signers ' "$dir/ref.txt")" -gt 40 ] || fail "offline output has too few certificates"

# 1. SIGKILLs with a node
start_node "$dir/a"
kill_step=0
for k in $(seq "$kills"); do
    kill_step=$((kill_step + 1 + RANDOM % (steps / (kills + 1))))
    set +e
    "$bt" --ring "$ring" --data-dir "$dir/a" --steps "$steps" --kill-at-step "$kill_step" >"$dir/a.out" 2>"$dir/a.err"
    st=$?
    set -e
    [ "$st" -eq 137 ] || fail "the engine did not die at step $kill_step (exit $st): $(cat "$dir/a.err")"
    grep -q "^finality: --kill-at-step $kill_step: SIGKILL after [0-9]* records" "$dir/a.err" ||
        fail "kill $k: $(cat "$dir/a.err")"
    # every step before the killed one was a whole group in the ring: the
    # next start (rk_state_open waits for the node to apply them) resumes at it
    "$bt" --ring "$ring" --data-dir "$dir/a" --steps "$kill_step" >"$dir/a.part" 2>"$dir/a.err" ||
        fail "restart after kill $k: $(cat "$dir/a.err")"
    at=$(resumed_at "$dir/a.err")
    [ "$at" = "$kill_step" ] || fail "kill at step $kill_step: the restart resumed at step '$at': $(cat "$dir/a.err")"
    echo "finality_test: killed in step $kill_step, resumed at step $at"
done
"$bt" --ring "$ring" --data-dir "$dir/a" --steps "$steps" >"$dir/a.out" 2>"$dir/a.err" ||
    fail "the last run: $(cat "$dir/a.err")"
cmp "$dir/ref.txt" "$dir/a.out" || fail "output after $kills kills differs: $(diff "$dir/ref.txt" "$dir/a.out" | head)"
# the node's state alone: a run with nothing left to do prints what it restored
"$bt" --ring "$ring" --data-dir "$dir/a" --steps "$steps" >"$dir/a.out" 2>"$dir/a.err" || fail "a run of nothing: $(cat "$dir/a.err")"
[ "$(resumed_at "$dir/a.err")" = $((steps + 1)) ] || fail "a run of nothing: $(cat "$dir/a.err")"
cmp "$dir/ref.txt" "$dir/a.out" || fail "the state restored from the node differs: $(diff "$dir/ref.txt" "$dir/a.out" | head)"
kill -TERM "$node"
wait "$node" || fail "node a did not stop cleanly: $(cat "$dir/a.log")"
node=

# 2. no node: the newest checkpoint file
newest_height() { # the finality height of the newest checkpoint in $dir/b (none: empty)
    { "$rk" checkpoint list -d "$dir/b" --json 2>/dev/null || true; } |
        { grep -o '"finality":[0-9]*' || true; } | cut -d: -f2 | sort -n | tail -n 1
}
"$rk" ring rm "$ring" || fail "ring rm after node a"
start_node "$dir/b"
kill_step=$((steps * 2 / 3 + RANDOM % (steps / 4)))
set +e
"$bt" --ring "$ring" --data-dir "$dir/b" --steps "$steps" --kill-at-step "$kill_step" >"$dir/b.out" 2>"$dir/b.err"
st=$?
set -e
[ "$st" -eq 137 ] || fail "the engine did not die at step $kill_step (exit $st): $(cat "$dir/b.err")"
# the last step whose group is whole is kill_step - 1 (as in backtest_test.sh)
last_mult=$(((kill_step - 1) / 50 * 50))
for i in $(seq 1000); do # bounded: a checkpoint at a multiple of 50 steps below the kill
    n=$(newest_height)
    [ -n "$n" ] && [ "$n" -ge "$last_mult" ] && break
    [ "$i" -lt 1000 ] || fail "no checkpoint at or past step $last_mult: $("$rk" checkpoint list -d "$dir/b")"
    sleep 0.05
done
kill -9 "$node"
wait "$node" 2>/dev/null || true
node=
newest=$(ls "$dir/b/checkpoints"/*.rkcp | sort | tail -n 1)
want=$(newest_height)
[ -n "$want" ] || fail "no checkpoint with a finality height: $("$rk" checkpoint list -d "$dir/b")"
"$bt" --checkpoint-dir "$dir/b/checkpoints" --steps "$steps" >"$dir/b.out" 2>"$dir/b.err" ||
    fail "resume from a checkpoint: $(cat "$dir/b.err")"
grep -q "^finality: resuming at step $((want + 1)) from $newest " "$dir/b.err" ||
    fail "want a resume at step $((want + 1)) from $newest: $(cat "$dir/b.err")"
cmp "$dir/ref.txt" "$dir/b.out" || fail "output resumed from a checkpoint differs: $(diff "$dir/ref.txt" "$dir/b.out" | head)"
echo "finality_test: killed in step $kill_step, no node: resumed at step $((want + 1)) from $(basename "$newest")"
echo "finality_test: ok"
