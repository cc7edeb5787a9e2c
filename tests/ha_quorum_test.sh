#!/usr/bin/env bash
# ha_quorum_test.sh -- an election that cannot lose an acknowledged record
# (issue 12; docs/HA.md, "The sync key"): one etcd and three nodes with
# [ha] (ttl_ms 2000, min_replicas 1, max_lag_entries 1000000: every
# standby is eligible however far behind), as in ha_test.sh.
#   1. nP leads; nS is killed (SIGKILL) and the engine writes 30 blocks,
#      each acknowledged RK_REPLICATED: only nB, counted, acknowledges them.
#      (A SIGSTOPped nS would not do: on waking it reads what the primary
#      had already sent into its socket buffers, and then holds it all.)
#   2. nP and nB are killed together (SIGKILL), nS started again: it holds
#      none of those blocks, and no sync-key quorum reports (nP and nB are
#      gone): nobody may lead, however long it waits (4 TTLs here); nS
#      says why.  nB's member record stays in etcd after the kill until
#      nB's own lease ends, which may be after the leader key's (up to a
#      sweep of etcd's lessor, 500 ms): put while nP led, it may be a tick
#      (ttl/6) older than what nB acknowledged.  The test puts back, under
#      a lease of 10 s, the record nB published before the 30 blocks
#      (its seq then = nS's): such a record is no report (docs/HA.md, Q3a),
#      nS must not lead on it.
#   3. nB started again: it reports what it holds durably, and it leads
#      (the most advanced of the counted members); every acknowledged
#      block is on it: the engine restores there at height >= 30 and
#      finishes, its books equal to an uninterrupted run's, and nS ends
#      with nB's digest.
#   4. the operator's override: nB and nS are killed, the cluster has no
#      quorum again; `ringkeep promote --force` on nP (started again,
#      behind neither: it holds what it journaled) makes it lead.
# On the code before the sync key, step 2 fails: nS leads, and the 30
# blocks are gone from the new history; on the code before Q3a too (nS
# takes nB's stale record for a report).
# usage: ha_quorum_test.sh PATH/TO/ringkeep PATH/TO/orderbook
set -euo pipefail
RK=$1
OB=$2
. "$(dirname "$0")/etcd_lib.sh" # ha_test_setup, start_etcd, ha_configs, start_node, helpers
ha_test_setup ha_quorum_test haq

start_etcd

ha_configs haq-test 2000
etcd_post() { # etcd_post PATH JSON: etcd's v3 JSON gateway; prints its answer
    curl -sf -X POST "http://127.0.0.1:$etcd_port$1" -d "$2" || fail "etcd $1"
}
b64() { printf '%s' "$1" | base64 -w0; }
member_record() { # member_record N: nN's record in etcd, as it is ("" if none)
    etcd_post /v3/kv/range "{\"key\":\"$(b64 "/ringkeep/haq-test-$$/members/n$1")\"}" |
        python3 -c 'import sys, json, base64
kvs = json.load(sys.stdin).get("kvs", [])
print(base64.b64decode(kvs[0]["value"]).decode() if kvs else "")'
}

# ------------------------------------------------------------ 1. only nB acknowledges
for i in 0 1 2; do start_node $i; done
for _ in $(seq 300); do
    out=$(cluster)
    l=$(leader_of "$out")
    [ -n "$l" ] && [ "$(printf '%s' "$out" | grep -o '"role":"standby"' | wc -l)" -eq 2 ] && break
    sleep 0.1
done
[ -n "$l" ] || fail "no node was elected at start: $out"
P=${l%% *}
epoch0=${l##* }
B=$(((P + 1) % 3))
S=$(((P + 2) % 3))
wait_primary "$P"
for _ in $(seq 300); do # both standbys known to the primary
    [ "$(field n_standbys "$(status "$P")")" = 2 ] && break
    sleep 0.1
done
[ "$(field n_standbys "$(status "$P")")" = 2 ] || fail "n$P does not know both standbys: $(status "$P")"
for _ in $(seq 300); do # nB's record as it publishes it while nP leads, with nS's seq
    rec_b=$(member_record "$B")
    seq_b=$(field seq "$rec_b")
    # seq_known, not seq > 0: nothing is written yet, so every seq may be
    # 0 (with "-gt 0" this loop ran to its bound, 300 tries, ~75 s, and
    # took the record then, unchanged since)
    [ -n "$seq_b" ] && [ "$(field seq_known "$rec_b")" = true ] &&
        [ "$seq_b" = "$(field seq "$(member_record "$S")")" ] && break
    sleep 0.1
done
[ -n "$seq_b" ] && [ "$seq_b" = "$(field seq "$(member_record "$S")")" ] ||
    fail "n$B's record ($rec_b) does not say n$S's seq: $(member_record "$S")"
echo "ha_quorum_test: n$B's record while n$P leads: $rec_b"
kill_node "$S"
"$OB" --ring "haq-test.$$.$P" --data-dir "$TMP/d$P" --blocks 30 --replicated --acked "$TMP/acked1" \
    2>"$TMP/engine1.log" || fail "the engine failed on n$P"
acked1=$(acked_height "$TMP/acked1")
[ "$acked1" -eq 30 ] || fail "30 blocks written, $acked1 acknowledged"
echo "ha_quorum_test: n$P leads (epoch $epoch0); n$S killed; 30 blocks acknowledged RK_REPLICATED (by n$B alone)"

# ------------------------------------------------------------ 2. nP and nB lost: nobody may lead
kill_node "$P"
kill_node "$B"
lease=$(etcd_post /v3/lease/grant '{"TTL":10}' | sed -n 's/.*"ID":"\{0,1\}\([0-9]*\).*/\1/p')
[ -n "$lease" ] || fail "etcd granted no lease"
etcd_post /v3/kv/put "{\"key\":\"$(b64 "/ringkeep/haq-test-$$/members/n$B")\",\"value\":\"$(b64 "$rec_b")\",\"lease\":\"$lease\"}" >/dev/null
start_node "$S"
for _ in $(seq 80); do # 8 s: 4 TTLs
    out=$(cluster)
    l=$(leader_of "$out")
    [ -n "$l" ] && [ "${l##* }" -gt "$epoch0" ] &&
        fail "n${l%% *} leads in epoch ${l##* } with n$P and n$B gone: it holds none of the blocks only n$B acknowledged"
    sleep 0.1
done
grep -q 'this standby waits" why="[0-9]* of the [0-9]* counted members of epoch' "$TMP/n$S.log" ||
    fail "n$S does not say it waits for the counted members"
why=$(grep -o 'why="[0-9]* of the [0-9]* counted members[^"]*' "$TMP/n$S.log" | tail -n 1)
echo "ha_quorum_test: n$P and n$B killed: no leader in 8 s; n$S: ${why#why=\"}"

# ------------------------------------------------------------ 3. nB back: it leads, with every block
start_node "$B"
for _ in $(seq 300); do
    out=$(cluster)
    l=$(leader_of "$out")
    [ -n "$l" ] && [ "${l##* }" -gt "$epoch0" ] && break
    sleep 0.1
done
[ -n "$l" ] && [ "${l##* }" -gt "$epoch0" ] || fail "no leader once n$B is back: $out"
[ "${l%% *}" -eq "$B" ] || fail "n${l%% *} leads once n$B is back: n$B holds more"
epoch1=${l##* }
wait_primary "$B"
engine_resumes "$B" "$acked1" 2
d1=$(field state_digest "$(status "$B")")
for _ in $(seq 300); do
    [ "$(field state_digest "$(status "$S")")" = "$d1" ] && break
    sleep 0.1
done
[ "$(field state_digest "$(status "$S")")" = "$d1" ] || fail "n$S's digest is not n$B's $d1"
echo "ha_quorum_test: n$B back: it leads in epoch $epoch1; the engine restored at height $restored >= $acked1," \
    "books equal; n$S's digest = n$B's ($d1)"

# ------------------------------------------------------------ 4. the operator's override
start_node "$P"
for _ in $(seq 300); do # n$P follows n$B, and both standbys count
    out=$(status "$B")
    [ "$(printf '%s' "$out" | grep -o '"counted":true' | wc -l)" -eq 2 ] && break
    sleep 0.1
done
[ "$(printf '%s' "$out" | grep -o '"counted":true' | wc -l)" -eq 2 ] || fail "n$B does not count both standbys: $out"
kill_node "$B"
kill_node "$S"
for _ in $(seq 50); do
    l=$(leader_of "$(cluster)")
    [ -n "$l" ] && [ "${l##* }" -gt "$epoch1" ] && fail "n${l%% *} leads with n$B and n$S gone"
    sleep 0.1
done
rc=0
out=$("$RK" promote --force -d "$TMP/d$P" 2>&1) || rc=$?
[ "$rc" -eq 0 ] || fail "ringkeep promote --force on n$P: exit $rc: $out"
for _ in $(seq 300); do
    l=$(leader_of "$(cluster)")
    [ -n "$l" ] && [ "${l##* }" -gt "$epoch1" ] && break
    sleep 0.1
done
[ -n "$l" ] && [ "${l%% *}" -eq "$P" ] || fail "n$P does not lead after ringkeep promote --force: $(cluster)"
wait_primary "$P"
echo "ha_quorum_test: n$B and n$S killed: no leader; ringkeep promote --force on n$P: it leads in epoch ${l##* }"
kill -TERM "${node_pid[$P]}"
rc=0
wait "${node_pid[$P]}" || rc=$?
unset "node_pid[$P]"
[ "$rc" -eq 0 ] || fail "n$P exited $rc at SIGTERM"
grep -l 'Sanitizer' "$TMP"/n*.log && fail "a sanitizer reported in a node's log"
echo "ha_quorum_test: ok"
