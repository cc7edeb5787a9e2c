#!/usr/bin/env bash
# ha_lone_leader_test.sh -- a leader killed before any standby followed it
# must not stall the cluster (issue 12; docs/HA.md, the sync key's floor).
# One etcd; n0 alone ([ha], min_replicas 1) is elected and runs for some
# ticks with no standby: its sync key must keep the floor it was written
# with (it acknowledged nothing RK_REPLICATED: no standby counted).  n0 is
# killed (SIGKILL), n1 and n2 start: one of them must lead.  On the code
# before, n0's first ticks put a sync key of itself alone without the
# floor, which only n0's report could meet: nobody led.
# usage: ha_lone_leader_test.sh PATH/TO/ringkeep
set -euo pipefail
RK=$1
. "$(dirname "$0")/etcd_lib.sh" # ha_test_setup, start_etcd, ha_configs, start_node, helpers
ha_test_setup ha_lone_leader_test hal
start_etcd
ha_configs hal-test 1000
leader() { "$RK" cluster status -c "$TMP/n0.ini" --json 2>/dev/null |
    sed -n 's/.*"leader":{"name":"n\([0-9]\)","epoch":\([0-9]*\)}.*/\1 \2/p'; }

start_node 0
l=
for _ in $(seq 300); do l=$(leader); [ -n "$l" ] && break; sleep 0.1; done
[ "${l%% *}" = 0 ] || fail "n0 alone was not elected: '$l'"
# some ticks (ttl/6 each) as a leader with no standby
for _ in $(seq 100); do grep -q "sync key put\|node started" "$TMP/n0.log" && break; sleep 0.1; done
sleep 1
kill -KILL "${node_pid[0]}"
wait "${node_pid[0]}" 2>/dev/null || true
unset "node_pid[0]"
start_node 1
start_node 2
new=
for _ in $(seq 300); do # 30 s: 30 TTLs
    new=$(leader)
    [ -n "$new" ] && [ "${new##* }" -gt "${l##* }" ] && break
    sleep 0.1
done
[ -n "$new" ] && [ "${new##* }" -gt "${l##* }" ] ||
    fail "nobody leads after n0, which no standby followed, was killed: $(grep -ho 'why="[^"]*' "$TMP"/n[12].log | tail -n 1)"
echo "ha_lone_leader_test: n0 led alone (epoch ${l##* }), killed; n${new%% *} leads in epoch ${new##* }"
grep -l 'Sanitizer' "$TMP"/n*.log && fail "a sanitizer reported in a node's log"
echo "ha_lone_leader_test: ok"
