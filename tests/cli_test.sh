#!/usr/bin/env bash
# cli_test.sh RINGKEEP ORDERBOOK -- the `ringkeep` command end to end: every
# command answers --help (usage on stdout, exit 0) and an unknown option
# (usage on stderr, exit 2); the demo verifies every record; ring
# create/inspect/rm work and say clearly what is wrong with a missing or
# foreign segment; a node runs from flags alone, and `checkpoint create`
# with nothing new applied says it returns the existing checkpoint.
set -euo pipefail
rk=$1
ob=$2
name=clitest.$$
dir=$(mktemp -d /tmp/rk-cli-test.XXXXXX)
node=
fail() { echo "FAIL: $*"; exit 1; }
cleanup() {
    [ -n "$node" ] && kill "$node" 2>/dev/null && wait "$node" 2>/dev/null || true
    rm -f /dev/shm/ringkeep.$name /dev/shm/ringkeep.$name.n
    rm -rf "$dir"
}
trap cleanup EXIT

for cmd in "" demo node status monitor checkpoint "checkpoint create" "checkpoint list" "checkpoint verify" \
    "checkpoint export" "checkpoint import" restore ring "ring create" "ring inspect" "ring rm" version \
    set-aside "set-aside list" "set-aside export"; do
    rc=0
    # shellcheck disable=SC2086 # cmd is one or two words
    "$rk" $cmd --help >"$dir/out" 2>"$dir/err" || rc=$?
    [ $rc -eq 0 ] || fail "ringkeep $cmd --help: exit $rc"
    grep -q "^usage: ringkeep" "$dir/out" || fail "ringkeep $cmd --help printed no usage on stdout: $(cat "$dir/out")"
    [ ! -s "$dir/err" ] || fail "ringkeep $cmd --help wrote on stderr: $(cat "$dir/err")"
    [ -z "$cmd" ] && continue
    rc=0
    # shellcheck disable=SC2086
    "$rk" $cmd --no-such-option >"$dir/out" 2>"$dir/err" || rc=$?
    [ $rc -eq 2 ] || fail "ringkeep $cmd --no-such-option: exit $rc, want 2"
    [ ! -s "$dir/out" ] || fail "ringkeep $cmd --no-such-option wrote on stdout: $(cat "$dir/out")"
    grep -q "^usage: ringkeep" "$dir/err" || fail "ringkeep $cmd --no-such-option: no usage on stderr"
done
"$rk" node --help | grep -q "^usage: ringkeep node \[-c|--config FILE\]" || fail "node usage: -c FILE not optional"

# set-aside: nothing set aside lists nothing; a run that is not journal
# entries is listed from its name, and export writes none of it (exit 1)
mkdir -p "$dir/sa/set-aside"
"$rk" set-aside list -d "$dir/sa" >"$dir/out" 2>"$dir/err" || fail "set-aside list of nothing: exit $?"
[ ! -s "$dir/out" ] || fail "set-aside list of nothing printed: $(cat "$dir/out")"
"$rk" set-aside list -d "$dir/sa" --json | grep -qx '{"set_aside":\[\],"set_aside_entries":0}' ||
    fail "set-aside list --json of nothing: $("$rk" set-aside list -d "$dir/sa" --json)"
printf '\010\000\000\000not-an-entry' >"$dir/sa/set-aside/entries-5-6-lsn-40-96-1700000000000000000.rkj"
"$rk" set-aside list -d "$dir/sa" | grep -q "seq 5..6  2 entries  lsn 40..96" ||
    fail "set-aside list: $("$rk" set-aside list -d "$dir/sa")"
rc=0
"$rk" set-aside export -d "$dir/sa" >"$dir/out" 2>"$dir/err" || rc=$?
[ $rc -eq 1 ] || fail "set-aside export of a bad run: exit $rc, want 1"
[ ! -s "$dir/out" ] || fail "set-aside export of a bad run wrote: $(cat "$dir/out")"
rc=0
"$rk" set-aside export -d "$dir/sa" entries-9-9-lsn-1-1-1.rkj >"$dir/out" 2>"$dir/err" || rc=$?
[ $rc -eq 1 ] && grep -q "no such run" "$dir/err" || fail "set-aside export of no such run: exit $rc"
"$rk" help | grep -q "^  node \[-c|--config FILE\]" || fail "ringkeep help: node's -c FILE not optional"

out=$("$rk" demo --records 200000 --producers 2 --capacity 256K)
grep -q "^demo ok$" <<<"$out" || fail "demo did not finish ok: $out"
grep -q "every record once, in order, byte-identical" <<<"$out" || fail "demo did not verify"

"$rk" ring create "$name" --capacity 128K --start-lsn 4096
[ "$(stat -c %a /dev/shm/ringkeep.$name)" = 600 ] || fail "ring mode is not 0600"
json=$("$rk" ring inspect "$name" --json)
grep -q '"capacity":131072' <<<"$json" || fail "inspect --json: $json"
grep -q '"start_lsn":4096,"head":4096,"tail":4096' <<<"$json" || fail "inspect --json cursors: $json"
"$rk" ring inspect "$name" | grep -q "^capacity    131072 bytes" || fail "inspect"
err=$("$rk" ring create "$name" 2>&1) && fail "create over an existing ring succeeded"
grep -q "already exists" <<<"$err" || fail "create twice: $err"
"$rk" ring rm "$name"
[ ! -e /dev/shm/ringkeep.$name ] || fail "ring rm left the segment"

err=$("$rk" ring inspect "$name" 2>&1) && fail "inspect of a missing ring succeeded"
grep -q "does not exist" <<<"$err" || fail "missing ring: $err"

head -c 300000 /dev/urandom >/dev/shm/ringkeep.$name
chmod 600 /dev/shm/ringkeep.$name
err=$("$rk" ring inspect "$name" 2>&1) && fail "inspect of a foreign file succeeded"
grep -q "not a ringkeep ring" <<<"$err" || fail "foreign file: $err"

err=$("$rk" nonsense 2>&1) && fail "unknown command succeeded"
grep -q "unknown command" <<<"$err" || fail "unknown command: $err"

# a node from flags alone (no -c FILE); checkpoint create twice with
# nothing applied in between: the second returns the first, and says so
"$rk" node --data-dir "$dir" --ring "$name.n" --log-level warn 2>"$dir/node.log" &
node=$!
for i in $(seq 1000); do # bounded: the node answers once it is up
    "$rk" status -d "$dir" >/dev/null 2>&1 && break
    kill -0 "$node" 2>/dev/null || fail "the node exited: $(cat "$dir/node.log")"
    [ "$i" -lt 1000 ] || fail "the node never answered"
    sleep 0.05
done
"$ob" --ring "$name.n" --data-dir "$dir" --blocks 20 >/dev/null 2>"$dir/ob.log" || fail "orderbook: $(cat "$dir/ob.log")"
first=$("$rk" checkpoint create -d "$dir" 2>"$dir/err") || fail "checkpoint create: $(cat "$dir/err")"
[ -f "$first" ] || fail "checkpoint create printed '$first', not a file"
[ ! -s "$dir/err" ] || fail "a new checkpoint said: $(cat "$dir/err")"
second=$("$rk" checkpoint create -d "$dir" 2>"$dir/err") || fail "checkpoint create (again): $(cat "$dir/err")"
[ "$second" = "$first" ] || fail "nothing new applied, yet a new checkpoint: $second after $first"
grep -q "nothing new was applied since the last checkpoint: returning the existing checkpoint $first" "$dir/err" ||
    fail "checkpoint create of nothing new said: $(cat "$dir/err")"
"$rk" status -d "$dir" | grep -q "^role  *primary" || fail "status text"
kill -TERM "$node"
wait "$node" || fail "the node did not stop cleanly"
node=
echo "cli_test: ok"
