#!/usr/bin/env bash
# ha_promote_epoch_test.sh -- a promotion by hand under [ha] must never
# lead in an epoch etcd handed another node (docs/HA.md, "Primary").  One
# etcd and three nodes with [ha] (ttl_ms 2000, min_replicas 1,
# max_lag_entries 1000000).
#   1. n0 leads (started alone), n1 and n2 count; 5 blocks acknowledged
#      RK_REPLICATED.  n1 killed: n0 puts a sync key of n0 and n2.
#   2. n0 killed: etcd elects n2 (epoch E2).  n0 started again follows n2
#      and counts; the engine on n2 writes blocks 6..15, acknowledged
#      RK_REPLICATED.  n1 (down) saw neither E2 nor these blocks.
#   3. `ringkeep node -c n1.ini --promote` without --force: refused
#      (exit 2, it says why).  n2 killed: the leader etcd elects next
#      holds every acknowledged block (the engine restores on it at height
#      >= 15 and, n2 back as its standby, writes on to 40, its books equal
#      to an uninterrupted run's).
#   4. `--promote --force` (the operator's override: no sync-key quorum,
#      what the others hold may be lost): n1 begins an epoch etcd handed
#      no one (it reserves it there first), never one that led already;
#      the leader killed, n1 takes the key in it.  No two nodes ever won
#      or took the leader key in one epoch (their logs).
# On the code before, step 3's promotion was not refused: n1 began E2
# itself (the highest epoch it had seen, plus one), waited for the key,
# took it in E2 when n2 died -- two leaders in E2 -- and the engine
# restored on n1 at height 5: blocks 6..15 were lost.  The test goes on
# after a promotion not refused, to show that.
# usage: ha_promote_epoch_test.sh PATH/TO/ringkeep PATH/TO/orderbook
set -euo pipefail
RK=$1
OB=$2
. "$(dirname "$0")/etcd_lib.sh" # ha_test_setup, start_etcd, ha_configs, start_node, helpers
ha_test_setup ha_promote_epoch_test hpe

start_etcd
ha_configs hpe-test 2000
sync_key() {
    curl -sf -X POST "http://127.0.0.1:$etcd_port/v3/kv/range" \
        -d "{\"key\":\"$(printf '%s' "/ringkeep/hpe-test-$$/sync" | base64 -w0)\"}" |
        python3 -c 'import sys, json, base64
kvs = json.load(sys.stdin).get("kvs", [])
print(base64.b64decode(kvs[0]["value"]).decode() if kvs else "")' || fail "etcd: cannot read the sync key"
}
led_epochs() { # every "node epoch" that won an election or took the leader key, from the logs
    local i
    for i in 0 1 2; do
        sed -n 's/.*msg="etcd: \(election won: promoting\|leader key taken\)" epoch=\([0-9]*\).*/\2/p' \
            "$TMP/n$i.log" | sed "s/^/n$i /"
    done
}
no_shared_epoch() { # fails when two nodes won or took the leader key in one epoch
    local dup
    dup=$(led_epochs | sort -u | awk '{ print $2 }' | sort | uniq -d)
    [ -z "$dup" ] || fail "two nodes led in epoch $dup: $(led_epochs | tr '\n' ';')"
}

# ------------------------------------------------------------ 1. n0 leads; n1 killed
start_node 0
l=$(wait_leader_after 0)
[ "${l%% *}" = 0 ] || fail "n0 alone was not elected: '$l'"
epoch1=${l##* }
wait_primary 0
start_node 1
start_node 2
wait_counted 0 2
"$OB" --ring "hpe-test.$$.0" --data-dir "$TMP/d0" --blocks 5 --replicated --acked "$TMP/acked1" \
    2>"$TMP/engine1.log" || fail "the engine failed on n0"
[ "$(acked_height "$TMP/acked1")" -eq 5 ] || fail "5 blocks written, $(acked_height "$TMP/acked1") acknowledged"
kill_node 1
for _ in $(seq 300); do
    sk=$(sync_key)
    grep -q '"voters":\["n0","n2"\]' <<<"$sk" && break
    sleep 0.1
done
grep -q '"voters":\["n0","n2"\]' <<<"$sk" || fail "n0 does not put a sync key of n0 and n2: $sk"

# ------------------------------------------------------------ 2. n2 leads E2, 10 blocks acknowledged
kill_node 0
l=$(wait_leader_after "$epoch1")
[ "${l%% *}" = 2 ] || fail "n2 was not elected after n0 was killed: '$l'"
epoch2=${l##* }
wait_primary 2
start_node 0
wait_counted 2 1
"$OB" --ring "hpe-test.$$.2" --data-dir "$TMP/d2" --blocks 15 --replicated --acked "$TMP/acked2" \
    2>"$TMP/engine2.log" || fail "the engine failed on n2"
acked=$(acked_height "$TMP/acked2")
[ "$acked" -eq 15 ] || fail "blocks 6..15 written on n2, acknowledged up to $acked"
echo "ha_promote_epoch_test: n0 led epoch $epoch1, n1 killed; n0 killed: n2 leads epoch $epoch2," \
    "blocks 6..15 acknowledged RK_REPLICATED (n0 back, counted)"

# ------------------------------------------------------------ 3. node --promote without --force
"$RK" node -c "$TMP/n1.ini" --promote 2>>"$TMP/n1.log" &
node_pid[1]=$!
refused=
for _ in $(seq 300); do # until it exits (refused) or answers as a primary (the code before)
    if ! kill -0 "${node_pid[1]}" 2>/dev/null; then
        rc=0
        wait "${node_pid[1]}" || rc=$?
        unset "node_pid[1]"
        [ "$rc" -eq 2 ] || fail "ringkeep node --promote under [ha] exited $rc: $(tail -n 3 "$TMP/n1.log")"
        grep -q 'ringkeep node: --promote: \[ha\] is set, etcd elects the primary' "$TMP/n1.log" ||
            fail "ringkeep node --promote under [ha] does not say why it refuses: $(tail -n 3 "$TMP/n1.log")"
        refused=yes
        break
    fi
    [ "$(field role "$(status 1)")" = primary ] && break
    sleep 0.1
done
[ -n "$refused" ] || [ "$(field role "$(status 1)")" = primary ] || fail "n1 neither refused nor started"
echo "ha_promote_epoch_test: ringkeep node -c n1.ini --promote (no --force): ${refused:+refused: }$(tail -n 1 "$TMP/n1.log")"
kill_node 2
l=$(wait_leader_after "$((epoch2 - 1))")
for _ in $(seq 100); do # past an epoch-E2 leader key still held by n2's lease
    l=$(leader_of "$(cluster)")
    [ -n "$l" ] && [ "${l%% *}" != 2 ] && break
    sleep 0.1
done
L=${l%% *}
epoch3=${l##* }
[ -n "$L" ] && [ "$L" != 2 ] || fail "nobody leads after n2 was killed: $(cluster)"
echo "ha_promote_epoch_test: n2 killed: n$L leads epoch $epoch3"
wait_primary "$L"
# the height the leader holds, read by the engine restoring on it (and writing nothing)
h=$("$OB" --ring "hpe-test.$$.$L" --data-dir "$TMP/d$L" --blocks 0 --durable 2>&1 >/dev/null |
    sed -n 's/^orderbook: restored at height \([0-9]*\) .*/\1/p')
[ "${h:-0}" -ge "$acked" ] || fail "n$L leads in epoch $epoch3 at height ${h:-0}: blocks $((${h:-0} + 1))..$acked," \
    "acknowledged RK_REPLICATED in epoch $epoch2, are lost"
start_node 2 # a standby to count: the engine waits for RK_REPLICATED
wait_counted "$L" 1
engine_resumes "$L" "$acked" 3
no_shared_epoch
[ -n "$refused" ] || fail "ringkeep node --promote under [ha] was not refused without --force"
echo "ha_promote_epoch_test: the engine restored on n$L at height $restored >= $acked, books equal at 40"

# ------------------------------------------------------------ 4. --promote --force
"$RK" node -c "$TMP/n1.ini" --promote --force 2>>"$TMP/n1.log" &
node_pid[1]=$!
wait_primary 1
began=$(sed -n 's/.*msg="promoted: a new epoch begins" epoch=\([0-9]*\).*/\1/p' "$TMP/n1.log" | tail -n 1)
[ -n "$began" ] && [ "$began" -gt "$epoch3" ] ||
    fail "n1 promoted with --force began epoch '$began', not above epoch $epoch3 etcd handed n$L"
kill_node "$L"
l=$(wait_leader_after "$epoch3")
[ "$l" = "1 $began" ] || fail "n1 (epoch $began) does not lead after n$L was killed: '$l'"
no_shared_epoch
echo "ha_promote_epoch_test: ringkeep node --promote --force: n1 began epoch $began and took the key in it;" \
    "epochs led: $(led_epochs | tr '\n' ' ')"
grep -l 'Sanitizer' "$TMP"/n*.log && fail "a sanitizer reported in a node's log"
echo "ha_promote_epoch_test: ok"
