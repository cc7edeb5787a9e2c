#!/usr/bin/env bash
# ha_divergent_test.sh -- a fenced old leader holding more entries than the
# standbys of a newer epoch (entries never replicated, written in an older
# epoch) must not win the next election: the entries acknowledged
# RK_REPLICATED in the newer epoch would be set aside (docs/HA.md, Q3 and
# "last_epoch": candidates are ranked by (epoch of the last entry, seq), as
# Raft's up-to-date rule).  One etcd and three nodes with [ha] (ttl_ms
# 2000, min_replicas 1, max_lag_entries 1000000), each with the test hook
# RK_TEST_JOURNAL_GATE (replicator/standby.c: a standby journals no entry
# past the number its gate file holds).
#   1. n0 leads (started alone); n1 and n2 follow and count; the engine
#      writes 5 blocks, acknowledged RK_REPLICATED.
#   2. n1 and n2 held at what they hold (their gates); the engine writes
#      blocks 6..45 on n0 with another order flow (--seed 7), acknowledged
#      RK_DURABLE only: n0 holds 40 entries of its epoch nobody else has.
#   3. n0 paused (SIGSTOP) past its lease: n1 and n2 elect one of them, W
#      (epoch E+1), gates opened; the engine restores on W at height 5 and
#      writes blocks 6..15 of the test's flow (seed 1), acknowledged
#      RK_REPLICATED (the other standby, X, counted).
#   4. W killed (SIGKILL), n0 woken: it fences, rejoins as a standby and
#      reports 45 entries of epoch E; X reports 15, the last of epoch E+1.
#      X must lead: the engine restores on the leader at height >= 15 and
#      writes on to 40, its books equal to an uninterrupted seed-1 run
#      (n0's blocks 6..45 of seed 7 would make them differ), X set nothing
#      aside, and n0 ends with the leader's digest.
# On the code before, the candidates were ranked by seq alone: n0 (45 >
# 15) led in epoch E+2, X set blocks 6..15 aside, and the engine restored
# n0's seed-7 books at height 45.
# usage: ha_divergent_test.sh PATH/TO/ringkeep PATH/TO/orderbook
set -euo pipefail
RK=$1
OB=$2
. "$(dirname "$0")/etcd_lib.sh" # ha_test_setup, start_etcd, ha_configs, start_node, helpers
ha_test_setup ha_divergent_test hdv

start_etcd
ha_configs hdv-test 2000
for i in 0 1 2; do : >"$TMP/gate$i"; done # empty: every entry journaled
start_gated() { RK_TEST_JOURNAL_GATE="$TMP/gate$1" start_node "$1"; }
set_gate() { printf '%s' "$2" >"$TMP/gate$1.new" && mv "$TMP/gate$1.new" "$TMP/gate$1"; }
seq_of() { field journal_seq "$(status "$1")"; }

# ------------------------------------------------------------ 1. n0 leads, 5 blocks everywhere
start_gated 0
l=$(wait_leader_after 0)
[ "${l%% *}" = 0 ] || fail "n0 alone was not elected: '$l'"
epoch1=${l##* }
wait_primary 0
start_gated 1
start_gated 2
wait_counted 0 2
"$OB" --ring "hdv-test.$$.0" --data-dir "$TMP/d0" --blocks 5 --replicated --acked "$TMP/acked1" \
    2>"$TMP/engine1.log" || fail "the engine failed on n0"
[ "$(acked_height "$TMP/acked1")" -eq 5 ] || fail "5 blocks written, $(acked_height "$TMP/acked1") acknowledged"

# ------------------------------------------------------------ 2. 40 blocks on n0 alone
for _ in $(seq 300); do # both standbys hold the 5 blocks' entries
    s0=$(seq_of 0)
    [ -n "$s0" ] && [ "$(seq_of 1)" = "$s0" ] && [ "$(seq_of 2)" = "$s0" ] && break
    sleep 0.1
done
[ "$(seq_of 1)" = "$s0" ] && [ "$(seq_of 2)" = "$s0" ] ||
    fail "the standbys do not hold n0's $s0 entries: n1 $(seq_of 1), n2 $(seq_of 2)"
set_gate 1 "$s0"
set_gate 2 "$s0"
"$OB" --ring "hdv-test.$$.0" --data-dir "$TMP/d0" --seed 7 --blocks 45 --durable --acked "$TMP/acked2" \
    2>"$TMP/engine2.log" || fail "the second engine failed on n0"
s0=$(seq_of 0)
[ "$(seq_of 1)" -lt "$s0" ] && [ "$(seq_of 2)" -lt "$s0" ] ||
    fail "a standby journaled past its gate: n0 $s0, n1 $(seq_of 1), n2 $(seq_of 2)"
echo "ha_divergent_test: n0 leads (epoch $epoch1); 5 blocks acknowledged RK_REPLICATED, 40 more RK_DURABLE on" \
    "n0 alone: n0 holds $s0 entries, n1 $(seq_of 1), n2 $(seq_of 2)"

# ------------------------------------------------------------ 3. n0 paused: W leads, 10 blocks acknowledged
kill -STOP "${node_pid[0]}"
l=$(wait_leader_after "$epoch1")
[ -n "$l" ] || fail "nobody leads after n0 was paused: $(cluster)"
W=${l%% *}
epoch2=${l##* }
X=$((3 - W))
[ "$W" != 0 ] || fail "the paused n0 leads"
set_gate 1 ""
set_gate 2 ""
wait_primary "$W"
wait_counted "$W" 1
"$OB" --ring "hdv-test.$$.$W" --data-dir "$TMP/d$W" --blocks 15 --replicated --acked "$TMP/acked3" \
    2>"$TMP/engine3.log" || fail "the engine failed on n$W"
acked=$(acked_height "$TMP/acked3")
[ "$acked" -eq 15 ] || fail "blocks 6..15 written on n$W, acknowledged up to $acked"
for _ in $(seq 300); do
    sx=$(seq_of "$X")
    [ "$sx" = "$(seq_of "$W")" ] && break
    sleep 0.1
done
[ "$sx" -lt "$s0" ] || fail "n$X holds $sx entries, not fewer than n0's $s0: the test shows nothing"
echo "ha_divergent_test: n0 paused; n$W leads (epoch $epoch2): blocks 6..15 acknowledged RK_REPLICATED;" \
    "n$X holds $sx entries, n0 $s0"

# ------------------------------------------------------------ 4. W killed, n0 woken: X must lead
kill_node "$W"
kill -CONT "${node_pid[0]}"
l=$(wait_leader_after "$epoch2")
[ -n "$l" ] || fail "nobody leads after n$W was killed and n0 woken: $(cluster)"
L=${l%% *}
epoch3=${l##* }
echo "ha_divergent_test: n$W killed, n0 woken: n$L leads (epoch $epoch3)"
wait_primary "$L"
engine_resumes "$L" "$acked" 4 # on the code before: n0 led, its seed-7 books at height 45
[ "$L" = "$X" ] || fail "n$L leads in epoch $epoch3: n0 holds $s0 entries, the last of epoch $epoch1," \
    "and n$X the blocks acknowledged RK_REPLICATED in epoch $epoch2"
grep -q 'set aside' "$TMP/n$X.log" && fail "n$X set entries aside: $(grep 'set aside' "$TMP/n$X.log")"
d=$(field state_digest "$(status "$L")")
for _ in $(seq 300); do
    [ "$(field state_digest "$(status 0)")" = "$d" ] && break
    sleep 0.1
done
[ "$(field state_digest "$(status 0)")" = "$d" ] || fail "n0's digest is not n$L's $d"
echo "ha_divergent_test: the engine restored on n$L at height $restored >= $acked, books equal at 40;" \
    "n0 rejoined with n$L's digest ($d)"
grep -l 'Sanitizer' "$TMP"/n*.log && fail "a sanitizer reported in a node's log"
echo "ha_divergent_test: ok"
