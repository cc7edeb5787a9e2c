#!/usr/bin/env bash
# cli_test.sh RINGKEEP -- the `ringkeep` command end to end: the demo
# verifies every record and the crash drill; ring create/inspect/rm work and
# say clearly what is wrong with a missing or foreign segment.
set -euo pipefail
rk=$1
name=clitest.$$
fail() { echo "FAIL: $*"; exit 1; }
trap 'rm -f /dev/shm/ringkeep.$name' EXIT

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
echo "cli_test: ok"
