#!/bin/sh
# drill_ha_test.sh -- `ringkeep drill --ha` as a Jepsen-style loop (issue
# 12): its own etcd and three nodes with [ha] at etcd's minimum lease
# (ttl_ms 1000, etcd --election-timeout 500), an engine waiting
# RK_REPLICATED, and ROUNDS rounds of faults drawn at random from a seed
# (SIGKILL of the primary, SIGSTOP of the primary past its lease, SIGKILL
# of a standby, etcd killed and started again, SIGKILL of the primary and
# a standby together).  It
# must end with every acknowledged height on the final primary, digests
# equal, no two nodes acknowledging in one epoch and no woken primary
# acknowledging after it lost its lease.  Then a weakened run
# (RK_TEST_DRILL_ACK_EARLY: the engine counts a height acknowledged as soon
# as it is written, with no RK_REPLICATED wait) must report loss and exit
# 1: the checks can fail.
# usage: drill_ha_test.sh PATH/TO/ringkeep ROUNDS
set -eu
RK=$1
ROUNDS=$2
command -v etcd >/dev/null || { echo "drill_ha_test: FAIL: no etcd binary (./setup.sh installs etcd-server)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/rk-test-drill-ha.XXXXXX)
keep=
trap '[ -n "$keep" ] || rm -rf "$TMP"' EXIT INT TERM
fail() { # the directory is kept: the nodes' and etcd's logs say why
    keep=1
    echo "drill_ha_test: FAIL: $* (logs kept in $TMP)" >&2
    exit 1
}
has() { printf '%s' "$1" | grep -q -- "$2"; }

# usage errors
rc=0; "$RK" drill --ha --standbys 1 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "--ha --standbys 1: exit $rc, want 2"
rc=0; "$RK" drill --ha --faults kill-everything 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "--faults kill-everything: exit $rc, want 2"
"$RK" drill --help | grep -q -- '--ha' || fail "drill --help does not describe --ha"

# the loop: ROUNDS rounds of faults drawn at random (the seed printed for
# replay: ringkeep drill --ha --seed S ...).  stop-primary and kill-standby
# are back in the draw (the bugs that kept them out were fixed in 0c70ca2
# and 40f80b0; 20 rounds of each pass, docs/HA.md).
seed=$(( ($$ * 7919) % 1000000 ))
# kill-primary+standby is drawn: the sync key makes the election wait for
# the killed standby, which may hold the only copy (the drill starts it
# again at once; docs/HA.md).
pool=kill-primary,stop-primary,kill-standby,etcd-restart,kill-primary+standby
run() { # run NAME ROUNDS DRILL-OPTIONS...: the JSON report in $out
    name=$1 rounds=$2
    shift 2
    mkdir "$TMP/$name"
    rc=0
    out=$("$RK" drill --ha --rounds "$rounds" --ttl-ms 1000 --records 40 --seed "$seed" --dir "$TMP/$name" \
        --json "$@" 2>"$TMP/$name.progress") || rc=$?
    [ "$rc" -eq 0 ] || fail "drill --ha $* (seed $seed) exit $rc: $out $(cat "$TMP/$name.progress")"
    for want in '"ok":true' "\"rounds_done\":$rounds," '"lost":0,' '"lost_at_restore":0,' \
        '"digests_equal":true' '"same_epoch_pairs":0,' '"acked_after_lease_lost":0'; do
        has "$out" "$want" || fail "the report (seed $seed) lacks $want: $out"
    done
    has "$out" '"acknowledged":[1-9]' || fail "nothing was acknowledged: $out"
    [ "$(grep -c '^round [0-9]*/' "$TMP/$name.progress")" -eq "$rounds" ] ||
        fail "progress lines: $(cat "$TMP/$name.progress")"
    # every woken primary was fenced and rejoined
    n_stop=$(printf '%s' "$out" | grep -o '"fault":"stop-primary"' | wc -l)
    n_woke=$(printf '%s' "$out" | grep -o 'woken: engine told RK_EFENCED, rejoined as a standby, 0 acknowledged' |
        wc -l)
    [ "$n_stop" -eq "$n_woke" ] || fail "$n_stop paused primaries, $n_woke fenced and rejoined: $out"
    kinds="$kinds$(printf '%s' "$out" | grep -o '"fault":"[a-z+-]*"' | sed 's/"fault"://' | sort | uniq -c | tr -s ' \n' ' ')"
}
kinds=
run random "$ROUNDS" --faults random --random-faults "$pool"

# the weakened run must be caught
mkdir "$TMP/weak"
rc=0
out=$(RK_TEST_DRILL_ACK_EARLY=1 "$RK" drill --ha --rounds 2 --ttl-ms 1000 --records 40 --faults kill-primary \
    --dir "$TMP/weak" 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "weakened drill --ha: exit $rc, want 1: $out"
has "$out" 'lost  *[0-9]* on the final primary, [1-9][0-9]* above a restored height' ||
    fail "weakened drill --ha reports no loss: $out"
has "$out" '^drill FAILED$' || fail "weakened drill --ha: $out"
echo "drill_ha_test: ok ($ROUNDS rounds, seed $seed: $kinds)"
