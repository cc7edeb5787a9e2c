#!/bin/sh
# drill_ha_test.sh -- `ringkeep drill --ha` as a Jepsen-style loop (issue
# 12): its own etcd and three nodes with [ha] at etcd's minimum lease
# (ttl_ms 1000, etcd --election-timeout 500), an engine waiting
# RK_REPLICATED, and ROUNDS rounds of faults drawn at random from a seed
# (SIGKILL or SIGSTOP of the primary, SIGKILL of a standby, etcd killed and
# started again, primary and standby killed together).  It must end with
# every acknowledged height on the final primary, digests equal, no two
# nodes acknowledging in one epoch and no woken primary acknowledging after
# it lost its lease.  Then a weakened run (RK_TEST_DRILL_ACK_EARLY: the
# engine counts a height acknowledged before its RK_REPLICATED wait) must
# report loss and exit 1: the checks can fail.
# usage: drill_ha_test.sh PATH/TO/ringkeep ROUNDS
set -eu
RK=$1
ROUNDS=$2
command -v etcd >/dev/null || { echo "drill_ha_test: FAIL: no etcd binary (./setup.sh installs etcd-server)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/rk-test-drill-ha.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM
fail() { echo "drill_ha_test: FAIL: $*" >&2; tail -n 20 "$TMP/progress" >&2 2>/dev/null || true; exit 1; }
has() { printf '%s' "$1" | grep -q -- "$2"; }

# usage errors
rc=0; "$RK" drill --ha --standbys 1 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "--ha --standbys 1: exit $rc, want 2"
rc=0; "$RK" drill --ha --faults kill-everything 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "--faults kill-everything: exit $rc, want 2"
"$RK" drill --help | grep -q -- '--ha' || fail "drill --help does not describe --ha"

# the loop; the seed printed for replay: ringkeep drill --ha --seed S ...
seed=$(( ($$ * 7919) % 1000000 ))
# cycled per round: three paused primaries first (by the third round a node
# that stepped down and rejoined in-process is elected: before b35a61f its
# promotion refused its own stale ring and nobody led), then faults drawn
# at random
faults=stop-primary,stop-primary,stop-primary,random,random,random,random,random
mkdir "$TMP/run"
rc=0
out=$("$RK" drill --ha --rounds "$ROUNDS" --ttl-ms 1000 --records 40 --faults "$faults" --seed "$seed" \
    --dir "$TMP/run" --json 2>"$TMP/progress") || rc=$?
[ "$rc" -eq 0 ] || fail "drill --ha (seed $seed) exit $rc: $out"
for want in '"ok":true' "\"rounds_done\":$ROUNDS," '"lost":0,' '"lost_at_restore":0,' '"digests_equal":true' \
    '"same_epoch_pairs":0,' '"acked_after_lease_lost":0'; do
    has "$out" "$want" || fail "the report (seed $seed) lacks $want: $out"
done
has "$out" '"acknowledged":[1-9]' || fail "nothing was acknowledged: $out"
[ "$(grep -c '^round [0-9]*/' "$TMP/progress")" -eq "$ROUNDS" ] || fail "progress lines: $(cat "$TMP/progress")"
# every woken primary was fenced and rejoined
n_stop=$(printf '%s' "$out" | grep -o '"fault":"stop-primary"' | wc -l)
n_woke=$(printf '%s' "$out" | grep -o 'woken: engine told RK_EFENCED, rejoined as a standby, 0 acknowledged' | wc -l)
[ "$n_stop" -eq "$n_woke" ] || fail "$n_stop paused primaries, $n_woke fenced and rejoined: $out"
kinds=$(printf '%s' "$out" | grep -o '"fault":"[a-z+-]*"' | sort -u | tr '\n' ' ')

# the weakened run must be caught
mkdir "$TMP/weak"
rc=0
out=$(RK_TEST_DRILL_ACK_EARLY=1 "$RK" drill --ha --rounds 2 --ttl-ms 1000 --records 40 --faults kill-primary \
    --dir "$TMP/weak" 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "weakened drill --ha: exit $rc, want 1: $out"
has "$out" 'lost  *[0-9]* on the final primary, [1-9][0-9]* above a restored height' ||
    fail "weakened drill --ha reports no loss: $out"
has "$out" '^drill FAILED$' || fail "weakened drill --ha: $out"
echo "drill_ha_test: ok ($ROUNDS rounds, seed $seed, faults: $kinds)"
