#!/usr/bin/env bash
# demo.sh BUILD_DIR -- the main job: a ringkeep node with the order book
# engine.  The node drains the engine's ring into its journal and applies it
# to state; the engine is killed with SIGKILL in the middle of a block,
# restarts, restores its books and positions from the node and carries on;
# at the end its books equal those of a run that never crashed.
set -euo pipefail
build=${1:-build}
blocks=${DEMO_BLOCKS:-4000}
kill_at=$((blocks / 2))
rk=$build/ringkeep
ob=$build/examples/orderbook
dir=$(mktemp -d /tmp/ringkeep-demo.XXXXXX)
ring=demo.$$
node=

cleanup() {
    [ -n "$node" ] && kill "$node" 2>/dev/null && wait "$node" 2>/dev/null || true
    "$rk" ring rm "$ring" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

field() { # field NAME STATUS_TEXT
    awk -v k="$1" '$1 == k { print $2 }' <<<"$2"
}

progress() { # progress PID LABEL: live figures from the node while PID runs
    local pid=$1 label=$2 s
    while kill -0 "$pid" 2>/dev/null; do
        s=$("$rk" status -d "$dir" 2>/dev/null) || true
        printf '  %-10s records %9s   %7s rec/s   durable lag %8s B   apply lag %4s entries   groups %6s\n' \
            "$label" "$(field records "$s")" "$(field records_per_s "$s")" "$(field durable_lag_bytes "$s")" \
            "$(field apply_lag_entries "$s")" "$(field groups_applied "$s")"
        sleep 0.5
    done
}

echo "ringkeep demo: a primary node and the order book engine"
echo "  data directory $dir, ring $ring"
echo
"$rk" node --data-dir "$dir" --ring "$ring" --set ring.capacity=16M 2>"$dir/node.log" &
node=$!
for _ in $(seq 100); do "$rk" status -d "$dir" >/dev/null 2>&1 && break; sleep 0.1; done

echo "1. the engine runs $blocks blocks of 100 orders (one MARK per block) and is killed with"
echo "   SIGKILL in the middle of block $kill_at"
# in a subshell, so that the shell does not report the kill itself
status=0
( "$ob" --ring "$ring" --data-dir "$dir" --blocks "$blocks" --kill-after-block "$kill_at" 2>/dev/null &
  eng=$!
  progress $eng engine
  wait $eng ) || status=$?
[ $status -eq 137 ] || { echo "demo: the engine did not die by SIGKILL (status $status)"; exit 1; }
echo "   engine killed (status $status)"
echo

echo "2. the engine starts again: it restores its books and positions from the node and carries on"
"$ob" --ring "$ring" --data-dir "$dir" --blocks "$blocks" --digest >"$dir/after-crash" 2>"$dir/restore.log" &
eng=$!
progress $eng engine
if ! wait $eng; then
    echo "demo FAILED: the restarted engine failed:"
    sed 's/^/   /' "$dir/restore.log"
    exit 1
fi
sed 's/^/   /' "$dir/restore.log"
echo

echo "3. the same $blocks blocks in one run without a crash and without a node (--offline)"
"$ob" --offline --blocks "$blocks" --digest >"$dir/no-crash"
echo "   after the crash: $(cat "$dir/after-crash")"
echo "   no crash:        $(cat "$dir/no-crash")"
if ! cmp -s "$dir/after-crash" "$dir/no-crash"; then
    echo "demo FAILED: the books differ"
    exit 1
fi
for _ in $(seq 300); do
    [ "$(field apply_lag_entries "$("$rk" status -d "$dir")")" = 0 ] && break
    sleep 0.1
done
echo
echo "what the node logged:"
sed 's/^/   /' "$dir/node.log"
echo
echo "summary (ringkeep status -d $dir):"
"$rk" status -d "$dir" | sed 's/^/   /'
echo
echo "demo ok: books and positions after a crash and restart equal those of a run without one"
