#!/bin/sh
# drill_test.sh -- `ringkeep drill` end to end: ROUNDS kill/promote rounds
# under load (SIGKILL, SIGSTOP and SIGTERM in turn, two standbys) must
# lose no acknowledged height, end with equal digests and fence every
# woken primary; and a deliberately weakened run (min_replicas = 0, so
# RK_REPLICATED means durable on the primary alone, and standbys that lose
# every published entry and fetch it late) must report the loss and exit 1.
# usage: drill_test.sh PATH/TO/ringkeep ROUNDS
set -eu
RK=$1
ROUNDS=$2
TMP=$(mktemp -d /tmp/rk-test-drill.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM
fail() { echo "drill_test: FAIL: $*" >&2; exit 1; }
has() { printf '%s' "$1" | grep -q -- "$2"; }

# usage errors and help
"$RK" drill --help | grep -q '^usage: ringkeep drill' || fail "drill --help"
rc=0; "$RK" drill --kill sigfoo 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "--kill sigfoo: exit $rc, want 2"
rc=0; "$RK" drill --standbys 0 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "--standbys 0: exit $rc, want 2"

# the drill: every kill mode, ROUNDS rounds, nothing acknowledged lost
mkdir "$TMP/run"
rc=0
out=$("$RK" drill --rounds "$ROUNDS" --standbys 2 --records 60 --kill sigkill,sigstop,sigterm --dir "$TMP/run" \
    --json 2>"$TMP/progress") || rc=$?
[ "$rc" -eq 0 ] || fail "drill exit $rc: $out $(cat "$TMP/progress")"
for want in '"ok":true' "\"rounds_done\":$ROUNDS," '"lost":0,' '"lost_at_restore":0,' '"digests_equal":true' \
    '"acked_after_promotion":0,' '"kill":"sigkill"' '"kill":"sigstop"' '"kill":"sigterm"'; do
    has "$out" "$want" || fail "the report lacks $want: $out"
done
has "$out" '"acknowledged":[1-9]' || fail "nothing was acknowledged: $out"
# every woken primary was fenced, its engine told so
n_stop=$(printf '%s' "$out" | grep -o '"kill":"sigstop"' | wc -l)
n_fenced=$(printf '%s' "$out" | grep -o 'fenced: exit 4; its engine: RK_EFENCED; acknowledged after the promotion: 0 ' | wc -l)
[ "$n_stop" -eq "$n_fenced" ] || fail "$n_stop SIGSTOP rounds, $n_fenced woken primaries fenced: $out"
[ "$(grep -c '^round [0-9]*/' "$TMP/progress")" -eq "$ROUNDS" ] || fail "progress lines: $(cat "$TMP/progress")"

# the weakened run must be caught
rc=0
out=$(RK_TEST_DROP_JOURNAL=1 "$RK" drill --rounds 2 --standbys 1 --records 50 --kill sigkill \
    --set replication.min_replicas=0 --set replication.heartbeat_ms=2000) || rc=$?
[ "$rc" -eq 1 ] || fail "weakened drill: exit $rc, want 1: $out"
has "$out" 'lost  *[1-9][0-9]* on the final primary' || fail "weakened drill reports no loss: $out"
has "$out" '^drill FAILED$' || fail "weakened drill: $out"
echo "drill_test: ok ($ROUNDS rounds)"
