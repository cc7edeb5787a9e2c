#!/usr/bin/env bash
# demo.sh BUILD_DIR -- the main job: a ringkeep primary and a standby with
# the order book engine, which waits for every block to be replicated
# (RK_REPLICATED, min_replicas = 1).
#   1. the engine is killed with SIGKILL in the middle of a block, restarts,
#      restores its books and positions from the primary and carries on;
#   2. the primary's host is lost: the primary node and the engine are
#      killed with SIGKILL together, in the middle of the run;
#   3. the standby is promoted (ringkeep promote); the engine restores from
#      it (rk_state_open on its data directory), writes to its ring and
#      finishes.
# At the end its books equal those of a run that never crashed, and every
# block the primary acknowledged as replicated is in the new primary's
# state.  Prints the promotion and failover times and the acknowledged
# records lost (0; the demo fails otherwise, or when the books differ).
set -euo pipefail
build=${1:-build}
blocks=${DEMO_BLOCKS:-3000}
kill_at=$((blocks / 3))
fail_at=$((2 * blocks / 3))
rk=$build/ringkeep
ob=$build/examples/orderbook
dir=$(mktemp -d /tmp/ringkeep-demo.XXXXXX)
pdir=$dir/primary
sdir=$dir/standby
ring=demo.$$
sring=demo-standby.$$
acked=$dir/acked
primary=
standby=
eng=

cleanup() {
    local p
    for p in $eng $primary $standby; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    "$rk" ring rm "$ring" 2>/dev/null || true
    "$rk" ring rm "$sring" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

fail() {
    echo "demo FAILED: $*"
    exit 1
}

field() { # field NAME STATUS_TEXT
    awk -v k="$1" '$1 == k { print $2 }' <<<"$2"
}

now_ns() { date +%s%N; }

ms() { # ms FROM_NS TO_NS
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'
}

# the last acknowledged block in the --acked file (0: none yet)
acked_height() {
    awk '$1 == "acked" { h = $2 } END { print h + 0 }' "$acked"
}

progress_line() { # progress_line DATA_DIR LABEL
    local s
    s=$("$rk" status -d "$1" 2>/dev/null) || true
    printf '  %-8s acked block %5s   records %8s   %7s rec/s   durable lag %7s B   apply lag %3s entries\n' \
        "$2" "$(acked_height)" "$(field records "$s")" "$(field records_per_s "$s")" \
        "$(field durable_lag_bytes "$s")" "$(field apply_lag_entries "$s")"
}

progress() { # progress PID DATA_DIR LABEL: live figures from the node while PID runs
    while kill -0 "$1" 2>/dev/null; do
        progress_line "$2" "$3"
        sleep 0.5
    done
}

wait_answers() { # wait_answers DATA_DIR PID: until the node answers its status (bounded: 60 s)
    local i
    for ((i = 0; i < 600; i++)); do
        "$rk" status -d "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || fail "the node on $1 exited: $(tail -n 3 "$1.log")"
        sleep 0.1
    done
    fail "the node on $1 does not answer"
}

echo "ringkeep demo: a primary, a standby and the order book engine"
echo "  primary $pdir (ring $ring), standby $sdir (ring $sring once promoted)"
echo
mkdir -p "$pdir" "$sdir"
repl=(--set replication.heartbeat_ms=100)
"$rk" node --data-dir "$pdir" --ring "$ring" --set ring.capacity=16M "${repl[@]}" \
    --set replication.publish="ipc://$dir/publish" --set replication.serve="ipc://$dir/serve" \
    --set replication.min_replicas=1 --set replication.insecure_acks=yes 2>"$pdir.log" &
primary=$!
"$rk" node --data-dir "$sdir" --ring "$sring" --set ring.capacity=16M "${repl[@]}" --set node.role=standby \
    --set replication.node_id=standby-a --set replication.primary_publish="ipc://$dir/publish" \
    --set replication.primary_serve="ipc://$dir/serve" 2>"$sdir.log" &
standby=$!
wait_answers "$pdir" "$primary"
wait_answers "$sdir" "$standby"

echo "1. the engine runs $blocks blocks of 100 orders (one MARK per block, each acknowledged"
echo "   RK_REPLICATED: journaled on the primary and on the standby) and is killed with SIGKILL in"
echo "   the middle of block $kill_at"
# in a subshell, so that the shell does not report the kill itself
status=0
( "$ob" --ring "$ring" --data-dir "$pdir" --blocks "$blocks" --replicated --acked "$acked" \
      --kill-after-block "$kill_at" 2>/dev/null &
  e=$!
  progress $e "$pdir" engine
  wait $e 2>/dev/null ) || status=$?
[ $status -eq 137 ] || fail "the engine did not die by SIGKILL (status $status)"
echo "   engine killed (status $status)"
echo

echo "2. the engine starts again: it restores its books and positions from the primary and carries"
echo "   on; after block $fail_at is acknowledged, the primary's host is lost: the primary node and"
echo "   the engine are killed with SIGKILL together"
# the engine stops itself (SIGSTOP) once block $fail_at is acknowledged, so
# that the kill lands there however fast the machine runs
"$ob" --ring "$ring" --data-dir "$pdir" --blocks "$blocks" --replicated --acked "$acked" \
    --stop-after-block "$fail_at" 2>"$dir/restart.log" &
eng=$!
for ((i = 0; i < 1200; i++)); do # bounded: 10 minutes
    st=; read -r _ _ st _ <"/proc/$eng/stat" 2>/dev/null || true
    [ "$st" = T ] && break
    kill -0 $eng 2>/dev/null || { sed 's/^/   /' "$dir/restart.log"; fail "the engine stopped before block $fail_at"; }
    ((i % 5 == 0)) && progress_line "$pdir" engine
    sleep 0.1
done
t_kill=$(now_ns)
kill -9 "$primary" "$eng"
wait "$primary" 2>/dev/null || true
wait "$eng" 2>/dev/null || true
primary=
eng=
acked_last=$(acked_height)
sed 's/^/   /' "$dir/restart.log"
echo "   primary and engine killed; the last block acknowledged RK_REPLICATED: $acked_last"
echo

echo "3. the standby is promoted (ringkeep promote -d $sdir); the engine restores from it and"
echo "   finishes the run on its ring"
t_promote=$(now_ns)
"$rk" promote -d "$sdir" | sed 's/^/   /'
t_promoted=$(now_ns)
: >"$dir/writing"
"$ob" --ring "$sring" --data-dir "$sdir" --blocks "$blocks" --acked "$dir/writing" --digest \
    >"$dir/after-failover" 2>"$dir/failover.log" &
eng=$!
progress $eng "$sdir" engine
wait $eng || { sed 's/^/   /' "$dir/failover.log"; fail "the engine failed on the new primary"; }
eng=
sed 's/^/   /' "$dir/failover.log"
restored=$(sed -n 's/^orderbook: restored at height \([0-9]*\) .*/\1/p' "$dir/failover.log")
[ -n "$restored" ] || fail "the engine did not restore from the new primary"
t_writing=$(awk '$1 == "writing" { print $3; exit }' "$dir/writing")
[ -n "$t_writing" ] || fail "the engine never wrote on the new primary"
# every acknowledged block must be in the promoted standby's state: the
# engine read its height there (blocks are applied whole and in order)
lost_blocks=$(awk -v h="$restored" '$1 == "acked" && $2 > h { n++ } END { print n + 0 }' "$acked")
lost_records=$(awk -v h="$restored" '$1 == "acked" && $2 > h { n += $3 } END { print n + 0 }' "$acked")
echo

echo "4. the same $blocks blocks in one run without a crash and without a node (--offline)"
"$ob" --offline --blocks "$blocks" --digest >"$dir/no-crash"
echo "   after the failover: $(cat "$dir/after-failover")"
echo "   no crash:           $(cat "$dir/no-crash")"
books=equal
cmp -s "$dir/after-failover" "$dir/no-crash" || books=different
for _ in $(seq 300); do
    [ "$(field apply_lag_entries "$("$rk" status -d "$sdir")")" = 0 ] && break
    sleep 0.1
done
echo
echo "what the standby logged (it became the primary):"
sed 's/^/   /' "$sdir.log"
echo
echo "summary of the new primary (ringkeep status -d $sdir):"
"$rk" status -d "$sdir" | sed 's/^/   /'
echo
echo "failover:"
echo "   last block acknowledged RK_REPLICATED by the old primary  $acked_last"
echo "   height restored from the new primary                      $restored"
echo "   acknowledged records lost                                 $lost_records ($lost_blocks blocks)"
echo "   promotion (ringkeep promote until it answers as primary)  $(ms "$t_promote" "$t_promoted") ms"
echo "   failover (the kill until the engine writes on it)         $(ms "$t_kill" "$t_writing") ms"
echo "   books and positions                                       $books"
[ "$lost_records" -eq 0 ] || fail "$lost_records acknowledged records are not on the new primary"
[ "$books" = equal ] || fail "the books differ"
echo
echo "demo ok: after a crash of the engine and the loss of the primary, the books and positions"
echo "equal those of a run without either, and no acknowledged record was lost"
