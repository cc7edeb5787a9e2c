#!/usr/bin/env bash
# ha_catch_up_test.sh -- a leader killed while a standby it knows is still
# behind its promotion point must not stall the election (issue 12;
# docs/HA.md, the sync key, Q2a).  One etcd and three nodes with [ha]
# (ttl_ms 2000, min_replicas 1, max_lag_entries 1000000: every standby is
# eligible however far behind).  n2 runs with the test hook
# RK_TEST_JOURNAL_GATE (replicator/standby.c): it journals no entry past
# the number the gate file holds, and reports and acknowledges what it
# holds as ever.
#   1. n0 leads (started alone), n1 and n2 follow and count; the engine
#      writes 10 blocks, each acknowledged RK_REPLICATED.
#   2. n2's gate is set at what it holds: 20 more blocks, acknowledged by
#      n1 alone; n2 stays behind.
#   3. n0 is killed (SIGKILL): n1 and n2 report, n1 (ahead) is elected.
#      n2 follows it and says HELLO, still behind n1's promotion point.
#      The test waits until n1 has planned its sync key knowing n2.
#   4. n1 is killed (SIGKILL) and n0 started again: n0 holds every
#      acknowledged block (the 30 of epoch 1; n1 acknowledged nothing
#      RK_REPLICATED: no standby it counted held its promotion point).  A
#      leader must be elected among n0 and n2, and it must be n0 (n2
#      holds less than the floor).  On the code before, n1 listed n2 in
#      its sync key at once (voters n1, n2; quorum 2, both), and nobody
#      led: n0 was no voter, n1 dead.
#   5. n2's gate opened: the engine restores on n0 at height >= 30 and
#      writes on to 40, its books equal to an uninterrupted run's, and n2
#      ends with n0's digest.
# usage: ha_catch_up_test.sh PATH/TO/ringkeep PATH/TO/orderbook
set -euo pipefail
RK=$1
OB=$2
. "$(dirname "$0")/etcd_lib.sh" # ha_test_setup, start_etcd, ha_configs, start_node, helpers
ha_test_setup ha_catch_up_test hcu

start_etcd

ha_configs hcu-test 2000 # n0..n2, tests/etcd_lib.sh; start_node N
: >"$TMP/gate"           # empty: n2 journals every entry
start_gated() { RK_TEST_JOURNAL_GATE="$TMP/gate" start_node "$1"; }
set_gate() { printf '%s' "$1" >"$TMP/gate.new" && mv "$TMP/gate.new" "$TMP/gate"; }
seq_of() { field journal_seq "$(status "$1")"; }
sync_key() {
    curl -sf -X POST "http://127.0.0.1:$etcd_port/v3/kv/range" \
        -d "{\"key\":\"$(printf '%s' "/ringkeep/hcu-test-$$/sync" | base64 -w0)\"}" |
        python3 -c 'import sys, json, base64
kvs = json.load(sys.stdin).get("kvs", [])
print(base64.b64decode(kvs[0]["value"]).decode() if kvs else "")' || fail "etcd: cannot read the sync key"
}

# ------------------------------------------------------------ 1. n0 leads, both standbys count
start_node 0
l=$(wait_leader_after 0)
[ "${l%% *}" = 0 ] || fail "n0 alone was not elected: '$l'"
epoch1=${l##* }
wait_primary 0
start_node 1
start_gated 2
for _ in $(seq 300); do
    out=$(status 0)
    [ "$(printf '%s' "$out" | grep -o '"counted":true' | wc -l)" -eq 2 ] && break
    sleep 0.1
done
[ "$(printf '%s' "$out" | grep -o '"counted":true' | wc -l)" -eq 2 ] || fail "n0 does not count both standbys: $out"
"$OB" --ring "hcu-test.$$.0" --data-dir "$TMP/d0" --blocks 10 --replicated --acked "$TMP/acked1" \
    2>"$TMP/engine1.log" || fail "the engine failed on n0"
[ "$(acked_height "$TMP/acked1")" -eq 10 ] || fail "10 blocks written, $(acked_height "$TMP/acked1") acknowledged"

# ------------------------------------------------------------ 2. n2 held; 20 blocks acknowledged by n1
x=$(seq_of 2)
[ -n "$x" ] || fail "n2 does not say what it holds: $(status 2)"
set_gate "$x"
"$OB" --ring "hcu-test.$$.0" --data-dir "$TMP/d0" --blocks 30 --replicated --acked "$TMP/acked2" \
    2>"$TMP/engine2.log" || fail "the engine failed on n0"
acked=$(acked_height "$TMP/acked2")
[ "$acked" -eq 30 ] || fail "30 blocks written, $acked acknowledged"
s0=$(seq_of 0)
s1=$(seq_of 1)
x=$(seq_of 2) # what it took in before the gate was set is kept; nothing since the 20 blocks began
[ "$s1" -gt "$x" ] || fail "n1 holds $s1 entries, no more than n2's $x: the blocks were acknowledged by n1"
echo "ha_catch_up_test: n0 leads (epoch $epoch1); 30 blocks acknowledged RK_REPLICATED; n0 holds $s0 entries," \
    "n1 $s1, n2 $x (held by its gate)"

# ------------------------------------------------------------ 3. n0 killed: n1 leads, n2 behind follows it
kill_node 0
l=$(wait_leader_after "$epoch1")
[ -n "$l" ] || fail "nobody leads after n0 was killed: $(cluster)"
[ "${l%% *}" = 1 ] || fail "n${l%% *} leads after n0 was killed; n1 holds more"
epoch2=${l##* }
wait_primary 1
for _ in $(seq 300); do # n1 planned its sync key knowing n2
    grep -q 'sync key put.*"n2"\|not counted until they hold.*n2:' "$TMP/n1.log" && break
    sleep 0.1
done
grep -q 'sync key put.*"n2"\|not counted until they hold.*n2:' "$TMP/n1.log" ||
    fail "n1 never planned a sync key knowing n2"
sk=$(sync_key)
[ "$(seq_of 2)" = "$x" ] || fail "n2 journaled past its gate: $(seq_of 2) > $x"
b1=$(sed -n 's/.*"floor_seq":\([0-9]*\).*/\1/p' <<<"$sk")
echo "ha_catch_up_test: n1 leads (epoch $epoch2); n2 follows, behind at $x; the sync key: $sk"

# ------------------------------------------------------------ 4. n1 killed, n0 back: a leader, n0
kill_node 1
start_node 0
l=$(wait_leader_after "$epoch2")
last_wait() { grep -o 'this standby waits" why="[^"]*' "$TMP/n$1.log" | tail -n 1 | sed 's/.*why="//'; }
[ -n "$l" ] || fail "nobody leads after n1 (its sync key: $sk) was killed, with n0 back;" \
    "n0 waits: '$(last_wait 0)'; n2 waits: '$(last_wait 2)'"
[ "${l%% *}" = 0 ] || fail "n${l%% *} leads in epoch ${l##* }: it holds $(seq_of "${l%% *}") entries, below the floor $b1"
epoch3=${l##* }
wait_primary 0
echo "ha_catch_up_test: n1 killed, n0 back: n0 leads (epoch $epoch3)"

# ------------------------------------------------------------ 5. every acknowledged block on n0
set_gate ""
engine_resumes 0 "$acked" 3
d0=$(field state_digest "$(status 0)")
for _ in $(seq 300); do
    [ "$(field state_digest "$(status 2)")" = "$d0" ] && break
    sleep 0.1
done
[ "$(field state_digest "$(status 2)")" = "$d0" ] || fail "n2's digest is not n0's $d0"
echo "ha_catch_up_test: the engine restored on n0 at height $restored >= $acked, books equal at 40;" \
    "n2's digest = n0's ($d0)"
kill -TERM "${node_pid[0]}"
rc=0
wait "${node_pid[0]}" || rc=$?
unset "node_pid[0]"
[ "$rc" -eq 0 ] || fail "n0 exited $rc at SIGTERM"
grep -l 'Sanitizer' "$TMP"/n*.log && fail "a sanitizer reported in a node's log"
echo "ha_catch_up_test: ok"
