#!/usr/bin/env bash
# ha_test.sh -- automatic failover with a real etcd (issue 12): one etcd
# (the Debian etcd-server's binary, loopback, a temporary data directory)
# and three nodes with [ha] (ttl_ms 2000, max_lag_entries 1000000: every
# standby is eligible however far behind, min_replicas 1, endpoints on
# ipc:// in the temporary directory), all started as standbys; etcd elects
# nP (n0, the preferred, unless a loaded host delays it), then in turn:
#   1. a lagging standby never wins: nB is down while the engine writes
#      blocks acknowledged RK_REPLICATED (nG acknowledges), nP is paused
#      and nB started again behind (it cannot catch up from nP), nP is
#      SIGKILLed: nG must lead (nB must defer to the live standby that
#      holds more); every acknowledged block is in nG's state (the engine
#      restores there and finishes; its books equal an uninterrupted
#      run's) and nB ends with nG's digest;
#   2. a paused primary: nG is SIGSTOPped past the TTL under an engine
#      acknowledging each block RK_DURABLE; a new primary is elected; woken,
#      nG acknowledges nothing more (the engine's acknowledged height does
#      not move, it gets RK_EFENCED) and rejoins as a standby;
#   3. etcd stopped: the primary fences itself (it steps down and goes on as
#      a standby, which still answers status and state reads); etcd
#      started again: a primary is elected in a higher epoch and the engine
#      writes there, with no manual step.
# usage: ha_test.sh PATH/TO/ringkeep PATH/TO/orderbook
set -euo pipefail
RK=$1
OB=$2
. "$(dirname "$0")/etcd_lib.sh" # ha_test_setup, start_etcd, ha_configs, start_node, helpers
ha_test_setup ha_test ha
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ------------------------------------------------------------ etcd
start_etcd

# ------------------------------------------------------------ nodes
ha_configs ha-test 2000

member_role() { # member_role JSON NAME
    printf '%s' "$1" | grep -o "{\"name\":\"$2\",\"role\":\"[a-z]*\"" | sed 's/.*"role":"\([a-z]*\)"/\1/'
}
wait_leader_not() { # wait_leader_not N: prints "INDEX EPOCH" once a node other than nN leads
    local out l
    for _ in $(seq 300); do # bounded: 30 s and more (each status asks etcd)
        out=$(cluster)
        l=$(leader_of "$out")
        if [ -n "$l" ] && [ "${l%% *}" != "$1" ]; then
            echo "$l"
            return 0
        fi
        sleep 0.1
    done
    fail "no node other than n$1 leads: $out"
}
wait_role() { # wait_role NAME ROLE
    local out
    for _ in $(seq 300); do
        out=$(cluster)
        [ "$(member_role "$out" "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    fail "$1 is not $2 in etcd: $out"
}

for i in 0 1 2; do start_node $i; done
for _ in $(seq 300); do
    out=$(cluster)
    l=$(leader_of "$out")
    [ -n "$l" ] && [ "$(printf '%s' "$out" | grep -o '"role":"standby"' | wc -l)" -eq 2 ] && break
    sleep 0.1
done
[ -n "$l" ] || fail "no node was elected at start: $out"
# P leads (n0, configured primary and preferred, unless a loaded host
# delayed its first word with etcd), G and B follow
P=${l%% *}
epoch0=${l##* }
G=$(( (P + 1) % 3 ))
B=$(( (P + 2) % 3 ))
wait_primary "$P"
echo "ha_test: etcd on 127.0.0.1:$etcd_port, n$P elected (epoch $epoch0), n$G and n$B follow"

# ------------------------------------------------------------ 1. SIGKILL, a lagging standby
# n$B is down while the engine writes (n$G acknowledges); n$P is paused, so
# that n$B, started again, cannot catch up from it, then killed: n$G and n$B
# are both alive when n$P's lease expires, n$B behind
kill -KILL "${node_pid[$B]}"
wait "${node_pid[$B]}" 2>/dev/null || true
"$OB" --ring "ha-test.$$.$P" --data-dir "$TMP/d$P" --blocks 30 --replicated --acked "$TMP/acked1" \
    2>"$TMP/engine1.log" || fail "the engine failed on n$P"
acked1=$(acked_height "$TMP/acked1")
[ "$acked1" -eq 30 ] || fail "30 blocks written, $acked1 acknowledged"
t_kill=$(now_ms)
kill -STOP "${node_pid[$P]}"
start_node "$B"
read -r lead epoch <<<"$(wait_leader_not "$P")"
t_led=$(now_ms)
kill -KILL "${node_pid[$P]}"
wait "${node_pid[$P]}" 2>/dev/null || true
[ "$lead" -eq "$G" ] || fail "n$lead leads after n$P's loss: the caught-up standby is n$G (n$B lagged)"
[ "$epoch" -gt "$epoch0" ] || fail "epoch $epoch after the election, not above $epoch0"
competed=no
grep -q 'this standby waits" why="another live standby holds more entries' "$TMP/n$B.log" &&
    competed="yes (it deferred to n$G, which holds more)"
wait_primary "$G"
echo "ha_test: 1. n$P lost: n$G leads in epoch $epoch after $((t_led - t_kill)) ms (ttl 2000); n$B, behind, saw the" \
    "key free: $competed"
# every acknowledged block is on n$G: the engine restores there (its height
# is the last block n$G applied) and finishes; the books equal a run with
# no failover
engine_resumes "$G" "$acked1" 1b
# n$B re-pointed to n$G and holds the same state
d1=$(field state_digest "$("$RK" status -c "$TMP/n$G.ini" --json)")
for _ in $(seq 300); do
    s2=$("$RK" status -c "$TMP/n$B.ini" --json 2>/dev/null || true)
    [ "$(field state_digest "$s2")" = "$d1" ] && break
    sleep 0.1
done
[ "$(field state_digest "$s2")" = "$d1" ] || fail "n$B's digest $(field state_digest "$s2") is not n$G's $d1"
echo "ha_test:    restored at height $restored >= $acked1 acknowledged; books equal; n$B's digest = n$G's ($d1)"

# ------------------------------------------------------------ 2. SIGSTOP past the TTL
start_node "$P" # with [ha] it starts as a standby, follows the leader and stays one
wait_role n$P standby
# under [ha] etcd elects: a promotion by hand is refused (without --force),
# since it could begin the epoch etcd hands another node
rc=0; out=$("$RK" promote -d "$TMP/d$P" 2>&1) || rc=$?
[ "$rc" -ne 0 ] && printf '%s' "$out" | grep -q '\[ha\] is set, etcd elects the primary' ||
    fail "ringkeep promote under [ha]: exit $rc: $out"
wait_role n$P standby
"$OB" --ring "ha-test.$$.$G" --data-dir "$TMP/d$G" --blocks 1000000 --durable --acked "$TMP/acked2" \
    2>"$TMP/engine2.log" &
engine_pid=$!
for _ in $(seq 300); do
    [ "$(acked_height "$TMP/acked2")" -ge 45 ] && break
    sleep 0.1
done
[ "$(acked_height "$TMP/acked2")" -ge 45 ] || fail "the engine acknowledged nothing on n$G"
kill -STOP "${node_pid[$G]}"
sleep 0.3 # the engine notes what it was told before the pause (nothing moves it while n$G is stopped)
h_stop=$(acked_height "$TMP/acked2")
read -r lead epoch2 <<<"$(wait_leader_not "$G")"
[ "$epoch2" -gt "$epoch" ] || fail "epoch $epoch2 after n$G's pause, not above $epoch"
kill -CONT "${node_pid[$G]}"
for _ in $(seq 300); do
    kill -0 "$engine_pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$engine_pid" 2>/dev/null && fail "the engine still runs on the woken n$G"
rc=0
wait "$engine_pid" || rc=$?
engine_pid=
h_after=$(acked_height "$TMP/acked2")
[ "$rc" -ne 0 ] || fail "the engine on the woken n$G ended well: it should have been fenced"
grep -q 'the node stepped down' "$TMP/engine2.log" || fail "the engine was not told RK_EFENCED: $(tail -n 2 "$TMP/engine2.log")"
[ "$h_after" -eq "$h_stop" ] ||
    fail "n$G acknowledged blocks $h_stop..$h_after after it lost its lease (paused past the TTL)"
wait_role n$G standby
echo "ha_test: 2. n$G paused: n$lead leads in epoch $epoch2; woken, n$G acknowledged nothing after block $h_stop" \
    "(its engine got RK_EFENCED) and rejoined as a standby"

# ------------------------------------------------------------ 3. etcd stopped, then started again
kill -KILL "$etcd_pid"
wait "$etcd_pid" 2>/dev/null || true
etcd_pid=
for _ in $(seq 300); do
    grep -q 'cannot renew the etcd lease before the deadline' "$TMP/n$lead.log" && break
    sleep 0.1
done
grep -q 'cannot renew the etcd lease before the deadline' "$TMP/n$lead.log" ||
    fail "n$lead did not fence itself with etcd gone"
for _ in $(seq 300); do
    s=$("$RK" status -c "$TMP/n$lead.ini" --json 2>/dev/null || true)
    [ "$(field role "$s")" = standby ] && break
    sleep 0.1
done
[ "$(field role "$s")" = standby ] || fail "n$lead, fenced, does not answer as a standby: $s"
etcd_run "$etcd_port" || fail "etcd does not start again on 127.0.0.1:$etcd_port"
for _ in $(seq 300); do
    out=$(cluster)
    l=$(leader_of "$out")
    [ -n "$l" ] && [ "${l##* }" -gt "$epoch2" ] && break
    sleep 0.1
done
[ -n "$l" ] && [ "${l##* }" -gt "$epoch2" ] || fail "no leader above epoch $epoch2 once etcd is back: $out"
read -r lead3 epoch3 <<<"$l"
wait_primary "$lead3"
blocks3=$((h_after + 20))
"$OB" --ring "ha-test.$$.$lead3" --data-dir "$TMP/d$lead3" --blocks "$blocks3" --replicated \
    --acked "$TMP/acked3" --digest >"$TMP/after3" 2>"$TMP/engine3.log" ||
    fail "the engine failed on n$lead3 after etcd came back"
[ "$(acked_height "$TMP/acked3")" -eq "$blocks3" ] || fail "the engine did not write up to block $blocks3 on n$lead3"
"$OB" --offline --blocks "$blocks3" --digest >"$TMP/offline3"
cmp -s "$TMP/after3" "$TMP/offline3" || fail "books after etcd's restart differ from a run without it"
echo "ha_test: 3. etcd stopped: n$lead fenced itself and went on as a standby; etcd back: n$lead3 leads in" \
    "epoch $epoch3 and the engine finished there (books equal)"
# a clean stop of every node: exit 0 (under the sanitizers, LeakSanitizer
# checks each process's exit); the leader's stop revokes its lease
for i in 0 1 2; do kill -TERM "${node_pid[$i]}"; done
for i in 0 1 2; do
    rc=0
    wait "${node_pid[$i]}" || rc=$?
    unset "node_pid[$i]"
    [ "$rc" -eq 0 ] || fail "n$i exited $rc at SIGTERM"
done
grep -l 'Sanitizer' "$TMP"/n*.log && fail "a sanitizer reported in a node's log"
echo "ha_test: ok"
