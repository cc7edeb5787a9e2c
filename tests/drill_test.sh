#!/bin/sh
# drill_test.sh -- `ringkeep drill` end to end: ROUNDS kill/promote rounds
# under load (SIGKILL, SIGSTOP and SIGTERM in turn, two standbys) must
# lose no acknowledged height, end with equal digests and fence every
# woken primary; and a deliberately weakened run, on configuration files
# (min_replicas = 0, so RK_REPLICATED means durable on the primary alone,
# and standbys that lose every published entry and fetch it late), must
# report the loss and exit 1.
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
n_fenced=$(printf '%s' "$out" | grep -o 'exit 4; its engine: RK_EFENCED; acknowledged after the promotion: 0 ' | wc -l)
[ "$n_stop" -eq "$n_fenced" ] || fail "$n_stop SIGSTOP rounds, $n_fenced woken primaries fenced: $out"
[ "$(grep -c '^round [0-9]*/' "$TMP/progress")" -eq "$ROUNDS" ] || fail "progress lines: $(cat "$TMP/progress")"

# the weakened run must be caught; it runs on configuration files (the
# nodes' own settings: min_replicas = 0, slow heartbeats)
port=$((24000 + $$ % 900 * 10))
for i in 0 1; do
    mkdir "$TMP/data$i"
    cat > "$TMP/node$i.ini" <<INI
[node]
data_dir = $TMP/data$i
[ring]
name = drill-test.$$.$i
capacity = 1M
[replication]
publish = tcp://*:$((port + 2 * i))
serve = tcp://127.0.0.1:$((port + 2 * i + 1))
node_id = node-$i
min_replicas = 0
heartbeat_ms = 2000
INI
done
rc=0
out=$(RK_TEST_DROP_JOURNAL=1 "$RK" drill --rounds 2 --records 50 --kill sigkill --dir "$TMP" \
    "$TMP/node0.ini" "$TMP/node1.ini") || rc=$?
[ "$rc" -eq 1 ] || fail "weakened drill: exit $rc, want 1: $out"
has "$out" 'lost  *[1-9][0-9]* on the final primary' || fail "weakened drill reports no loss: $out"
has "$out" '^total: 2 of 2 rounds, 1 standbys' || fail "weakened drill did not run its rounds: $out"
has "$out" '^drill FAILED$' || fail "weakened drill: $out"
# a data directory that is not empty is refused (the drill would write into it)
rc=0; "$RK" drill "$TMP/node0.ini" "$TMP/node1.ini" 2>"$TMP/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q 'must exist and be empty' "$TMP/err" || fail "non-empty data_dir: exit $rc $(cat "$TMP/err")"
echo "drill_test: ok ($ROUNDS rounds)"
