#!/usr/bin/env bash
# monitor_test.sh -- examples/monitor.py, a follower written from
# docs/PROTOCOL.md and docs/FORMAT.md alone, rebuilds a primary's state and
# reaches its digest: keeps the documents honest.
#   1. journal from the start (trim_journal = no): the order book engine
#      is killed in the middle of a block, the monitor starts (FETCH),
#      the engine restarts (the ATTACH voids its open group) and carries
#      on while the monitor follows rk.j; it must match the primary's
#      digest at its last entry, and the primary must not list it;
#   2. a primary with trim_journal = yes whose journal no longer starts at
#      1: the monitor says HELLO as a monitor (not listed as a standby),
#      bootstraps from the checkpoint (SNAPSHOT), replays the journal after
#      it, and must match too.
# Each time its state, entry by entry, must equal a checkpoint the node
# writes at the end (read by monitor.py --checkpoint).  Also: the golden
# checkpoint files read with their pinned digest, FORMAT.md's worked entry
# decodes to its documented state, and requests get what PROTOCOL.md says
# (a malformed one no reply, another version ERROR 6, a frame over 4096
# bytes ERROR 5, one over 16384 a cut connection).
# usage: monitor_test.sh PATH/TO/ringkeep PATH/TO/orderbook SOURCE_DIR
set -euo pipefail
rk=$1
ob=$2
src=$3
export PYTHONDONTWRITEBYTECODE=1 # the example is imported: no __pycache__ in the source tree
py=/usr/bin/python3 # Debian's python3-zmq etc. are for this one, not a pyenv python3
mon=$src/examples/monitor.py
dir=$(mktemp -d /tmp/rk-monitor-test.XXXXXX)
node=
monpid=
rings=()

cleanup() {
    local p r
    for p in $monpid $node; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for r in "${rings[@]}"; do "$rk" ring rm "$r" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "monitor_test: FAIL: $*" >&2
    for f in "$dir"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    exit 1
}
field() { # field NAME DATA_DIR: a line of the node's status
    "$rk" status -d "$2" | awk -v k="$1" '$1 == k { print $2 }'
}
wait_until() { # wait_until WHAT COMMAND...: bounded polling (hang guard 60 s)
    local what=$1 i
    shift
    for ((i = 0; i < 600; i++)); do
        "$@" && return 0
        [ -z "$node" ] || kill -0 "$node" 2>/dev/null || fail "the node exited while waiting for $what"
        sleep 0.1
    done
    fail "never: $what"
}
caught_up() { # the node applied its whole journal
    "$rk" status -d "$1" 2>/dev/null | awk '$1 == "journal_seq" { j = $2 } $1 == "applied_seq" { a = $2 }
                                          END { exit !(j != "" && j == a) }'
}
start_node() { # start_node NAME TRIM
    local d=$dir/$1
    mkdir -p "$d"
    ring=mon-$1.$$
    rings+=("$ring")
    "$rk" node --data-dir "$d" --ring "$ring" --set ring.capacity=1M --set replication.heartbeat_ms=50 \
        --set replication.publish="ipc://$dir/$1.pub" --set replication.serve="ipc://$dir/$1.serve" \
        --set checkpoint.trim_journal="$2" --set checkpoint.keep=1 --log-level warn 2>"$dir/$1-node.log" &
    node=$!
    wait_until "the node answers" "$rk" status -d "$d" >/dev/null 2>&1
}
stop_node() {
    kill -TERM "$node"
    wait "$node" || fail "the node did not stop cleanly"
    node=
}
same_state() { # same_state DATA_DIR MONITOR_DUMP: the monitor's state equals a checkpoint's
    local ck
    ck=$("$rk" checkpoint create -d "$1" 2>/dev/null) || fail "checkpoint create on $1"
    "$py" "$mon" --checkpoint "$ck" --dump "$2.ck" >"$dir/ck.out" || fail "monitor.py --checkpoint $ck: $(cat "$dir/ck.out")"
    [ -s "$2" ] || fail "the monitor's dump is empty"
    cmp -s "$2" "$2.ck" || fail "the monitor's state differs from the node's checkpoint: $(diff "$2" "$2.ck" | head -5)"
}

# docs/FORMAT.md's worked journal entry, read from the document: monitor.py
# decodes it and reaches the documented state and digest; the golden
# checkpoint files read with the digest pinned when they were made
"$py" - "$src/docs/FORMAT.md" "$src/examples" "$src/tests/golden" <<'PY' || fail "FORMAT.md's examples, golden files"
import re, sys
sys.path.insert(0, sys.argv[2])
import monitor
for v in ("1.0", "1.1", "1.2"):
    state = monitor.State()
    with open(f"{sys.argv[3]}/checkpoint-v{v}.rkcp", "rb") as f:
        h = monitor.read_checkpoint(f.read(), state)
    assert (h["journal_seq"], h["lsn"], h["n_entries"], h["digest"]) == (42, 123456, 50, 0x4F710920E17C4425), h
    assert state.digest == 0x4F710920E17C4425 and state.n_entries() == 50
doc = open(sys.argv[1]).read()
block = re.search(r"## Worked example: one journal entry.*?```\n(.*?)```", doc, re.S).group(1)
entry = bytes.fromhex("".join(line.split("   ")[0].replace(" ", "")
                              for line in block.splitlines() if not line.startswith("--")))
state = monitor.State()
for frame in monitor.decode_entry(entry, 1, 1)[1]:
    state.apply_frame(frame)
assert len(entry) == 312, len(entry)
assert state.tables == {"accounts": {b"acct-00": b'{"balance":0,"ccy":"EUR"}'}}, state.tables
assert state.digest == 0x351a6ca12501b72c, hex(state.digest)
assert monitor.entry_digest("positions", b"", b"") == 0x914a2bd20e67c49b
PY

# 1. from the start of the journal: the monitor starts after the engine
# was killed (it FETCHes what is journaled) and follows rk.j while the
# engine writes again
start_node full no
status=0 # (in a subshell, so that the shell does not report the kill)
("$ob" --ring "$ring" --data-dir "$dir/full" --blocks 40 --kill-after-block 25 >/dev/null 2>"$dir/ob.log" &
    wait $!) 2>/dev/null || status=$?
[ $status -eq 137 ] || fail "the engine did not die by SIGKILL (status $status)"
"$py" "$mon" --publish "ipc://$dir/full.pub" --serve "ipc://$dir/full.serve" --dump "$dir/full.dump" \
    >"$dir/full-monitor.log" 2>&1 &
monpid=$!
wait_until "the monitor starts" grep -q "^following from entry 1$" "$dir/full-monitor.log"
# another order flow after the restart: the voided group's records are not written again
"$ob" --ring "$ring" --data-dir "$dir/full" --blocks 60 --seed 2 >/dev/null 2>>"$dir/ob.log" || fail "orderbook restart"
wait_until "the node applies its journal" caught_up "$dir/full"
[ "$(field groups_discarded "$dir/full")" -ge 1 ] || fail "no group was voided by the engine's restart"
seq=$(field journal_seq "$dir/full")
digest=$(field state_digest "$dir/full")
wait_until "the monitor matches at seq $seq" grep -q "^digest match at seq $seq: $digest " "$dir/full-monitor.log"
# it asked without HELLO (FETCH): the primary does not list it as a standby
[ "$(field n_standbys "$dir/full")" -eq 0 ] || fail "the monitor is listed as a standby"
kill -TERM "$monpid"
wait "$monpid" || fail "monitor.py exit status $?"
monpid=
grep -q "^stopped: state at seq $seq, .*entries [1-9][0-9]* from rk.j, [1-9][0-9]* fetched)$" \
    "$dir/full-monitor.log" || fail "the monitor did not both fetch and follow: $(tail -n 1 "$dir/full-monitor.log")"
if grep -q "MISMATCH\|bad input" "$dir/full-monitor.log"; then fail "$(cat "$dir/full-monitor.log")"; fi
same_state "$dir/full" "$dir/full.dump"

# what a request gets, as docs/PROTOCOL.md says ("What a request to the
# primary gets", Limits).  Replies come back in order on one DEALER, so
# "no reply" shows as the next request's reply coming first.
"$py" - "ipc://$dir/full.serve" "$(field epoch "$dir/full")" <<'PY' || fail "the documented answers to requests"
import sys, msgpack, zmq
serve, epoch = sys.argv[1], int(sys.argv[2])
ctx = zmq.Context()
def dealer(name):  # name: for reading only; the routing id is ZeroMQ's
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(serve)
    return s
def send(s, name, body):
    s.send_multipart([name, msgpack.packb(body) if isinstance(body, list) else body])
def reply(s):
    assert s.poll(60000), "no reply in 60 s"  # hang guard
    name, body = s.recv_multipart()
    return name, msgpack.unpackb(body, raw=False)
# a malformed request: no reply, and the peer's next requests are ignored
# until it says HELLO
s = dealer(b"probe-malformed")
send(s, b"FETCH", msgpack.packb({"not": "an array"}))
send(s, b"FETCH", [2, epoch, 1, 1])
send(s, b"HELLO", [2, epoch, "probe-malformed", 0, 0, None])
send(s, b"FETCH", [2, epoch, 1, 1])
name, body = reply(s)
assert name == b"WELCOME", (name, body)
name, body = reply(s)
assert name == b"ENTRIES" and body[2][0][0] == 1, (name, body[:2])
# another protocol version: ERROR code 6 in version 2, then dropped
s = dealer(b"probe-version")
send(s, b"FETCH", [1, epoch, 1, 1])
name, body = reply(s)
assert name == b"ERROR" and body[0] == 2 and body[2] == 6, (name, body)
# a frame over 4096 bytes (up to 16384): ERROR code 5 naming its size, the
# peer dropped
s = dealer(b"probe-oversized")
send(s, b"SNAPSHOT", [2, epoch, "x" * 5000, 0, 1])
name, body = reply(s)
assert name == b"ERROR" and body[2] == 5 and "requests are at most 4096 bytes" in str(body[3]), (name, body)
# a frame over 16384 bytes: the connection is cut, no reply; the DEALER
# reconnects and a later request is served (sent until one is answered)
s = dealer(b"probe-cut")
send(s, b"SNAPSHOT", [2, epoch, "x" * 20000, 0, 1])
for attempt in range(600):  # hang guard
    send(s, b"FETCH", [2, epoch, 1, 1])
    if s.poll(100):
        break
name, body = reply(s)
assert name == b"ENTRIES" and body[2][0][0] == 1, (name, body[:2])
PY
stop_node

# 2. a trimmed journal: bootstrap from the checkpoint, then the journal
# after it.  The checkpoint is taken while the killed engine's group is
# open, so the journal goes on from before it (restart_seq <= its
# journal_seq): entries read again, the open group voided by the restart.
start_node trim yes
"$ob" --ring "$ring" --data-dir "$dir/trim" --blocks 20 >/dev/null 2>"$dir/ob.log" || fail "orderbook"
status=0
("$ob" --ring "$ring" --data-dir "$dir/trim" --blocks 40 --kill-after-block 30 >/dev/null 2>>"$dir/ob.log" &
    wait $!) 2>/dev/null || status=$?
[ $status -eq 137 ] || fail "the engine did not die by SIGKILL (status $status)"
ck=$("$rk" checkpoint create -d "$dir/trim" 2>/dev/null) || fail "checkpoint create"
"$ob" --ring "$ring" --data-dir "$dir/trim" --blocks 60 --seed 2 >/dev/null 2>>"$dir/ob.log" || fail "orderbook (again)"
wait_until "the node applies its journal" caught_up "$dir/trim"
[ "$(field journal_trimmed_below "$dir/trim")" -gt 1 ] || fail "the journal was not trimmed"
seq=$(field journal_seq "$dir/trim")
digest=$(field state_digest "$dir/trim")
"$py" "$mon" --publish "ipc://$dir/trim.pub" --serve "ipc://$dir/trim.serve" --until-seq "$seq" \
    --dump "$dir/trim.dump" >"$dir/trim-monitor.log" 2>&1 || fail "monitor.py on the trimmed journal"
line=$(grep "^bootstrap from checkpoint $(basename "$ck"): " "$dir/trim-monitor.log") || fail "no bootstrap from $ck"
[[ $line =~ journal_seq\ ([0-9]+),.*replay\ from\ entry\ ([0-9]+)$ ]] || fail "bootstrap line: $line"
[ "${BASH_REMATCH[2]}" -le "${BASH_REMATCH[1]}" ] || fail "no group was open at the checkpoint: $line"
grep -q "^digest match at seq $seq: $digest " "$dir/trim-monitor.log" || fail "no match at seq $seq ($digest)"
same_state "$dir/trim" "$dir/trim.dump"
# its HELLO said monitor: the primary never listed it as a standby
[ "$(field n_standbys "$dir/trim")" -eq 0 ] || fail "the monitor's HELLO made it a standby"
stop_node
echo "monitor_test: ok"
