#!/usr/bin/env bash
# failover_time.sh [BUILD_DIR] [ROUNDS] -- promotion and failover times,
# against a plain restart of the same primary measured in the same run.
#
# Each round (default 20) on a fresh pair of data directories: a primary
# (min_replicas = 1) and a standby (ringkeep node, ipc endpoints) under the
# order book engine (examples/orderbook --replicated: every block waits
# for RK_REPLICATED, and each acknowledged block is noted).  After a random
# 0.5-1.5 s of load the primary's host is lost: the primary and the engine
# are SIGKILLed together; promotion is asked at once (ringkeep promote, the
# manual trigger), then the engine is started on the promoted standby (it
# restores with rk_state_open and writes to its ring).
#   promotion  ringkeep promote: the request until the node answers as a
#              primary of the new epoch (its ring exists and drains by then)
#   failover   the kill until the engine's first record is in the new
#              primary's ring (the engine notes the time it wrote it)
#   lost       acknowledged blocks above the height the engine restored
#              from the new primary (must be 0; exit 1 otherwise)
# Baseline, the same round: the killed primary's data directory started
# again as a primary (what bench/restart_time.sh measures):
#   restart    spawning the node until `ringkeep status` answers
#   restart+engine  spawning the node until the engine writes on it again
# Targets (issue 11): promotion p99 <= 1 s; failover p99 <= 2 s from the
# moment promotion is asked (here: right after the kill).  Prints p50, p99
# and max over the rounds and the ratios; never fails on time; every wait
# is bounded.
set -euo pipefail
build=${1:-build}
rounds=${2:-20}
rk=$build/ringkeep
ob=$build/examples/orderbook
work=$(mktemp -d /tmp/rk-failover.XXXXXX)
pids=()
rings=()

cleanup() {
    local p r
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for r in "${rings[@]}"; do "$rk" ring rm "$r" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

exec 3>&2 # the rounds run with stderr closed to bash's notes on the processes it SIGKILLs
fail() {
    echo "failover_time: $*" >&3
    exit 1
}

now_ns() { date +%s%N; }

wait_answers() { # wait_answers DATA_DIR PID (bounded: 6000 tries)
    local i
    for ((i = 0; i < 6000; i++)); do
        "$rk" status -d "$1" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || fail "the node on $1 exited: $(tail -n 3 "$1.log")"
    done
    fail "the node on $1 does not answer"
}

# waits until FILE has a "writing" line (bounded: 60 s) and prints its time
wait_writing() { # wait_writing FILE ENGINE_PID
    local i t
    for ((i = 0; i < 6000; i++)); do
        t=$(awk '$1 == "writing" { print $3; exit }' "$1")
        [ -n "$t" ] && { echo "$t"; return 0; }
        kill -0 "$2" 2>/dev/null || fail "the engine exited before writing ($1)"
        sleep 0.01
    done
    fail "the engine did not write within 60 s ($1)"
}

acked_height() { awk '$1 == "acked" { h = $2 } END { print h + 0 }' "$1"; }

engine() { # engine RING DATA_DIR FILE [options]: starts it, sets $engine_pid
    local ring=$1 data=$2 file=$3
    : >"$file"
    shift 3
    "$ob" --ring "$ring" --data-dir "$data" --blocks 100000000 --acked "$file" "$@" >/dev/null 2>>"$file.log" &
    engine_pid=$!
    pids+=("$engine_pid")
}

stop() { # stop PID...: SIGKILL and reap
    local p
    for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

: >"$work/rounds"
for ((k = 1; k <= rounds; k++)); do
    d=$work/r$k
    mkdir -p "$d/p" "$d/s"
    ring=fo$k.$$
    sring=fos$k.$$
    rings+=("$ring" "$sring")
    common=(--set ring.capacity=16M --set replication.heartbeat_ms=100 --log-level info)
    primary_args=(--data-dir "$d/p" --ring "$ring" "${common[@]}" --set replication.publish="ipc://$d/publish"
        --set replication.serve="ipc://$d/serve" --set replication.min_replicas=1
        --set replication.insecure_acks=yes) # ipc in this run's own directory
    "$rk" node "${primary_args[@]}" 2>>"$d/p.log" &
    primary=$!
    pids+=("$primary")
    "$rk" node --data-dir "$d/s" --ring "$sring" "${common[@]}" --set node.role=standby \
        --set replication.node_id=standby-a --set replication.primary_publish="ipc://$d/publish" \
        --set replication.primary_serve="ipc://$d/serve" 2>>"$d/s.log" &
    standby=$!
    pids+=("$standby")
    wait_answers "$d/p" "$primary"
    wait_answers "$d/s" "$standby"

    engine "$ring" "$d/p" "$d/acked" --replicated
    wait_writing "$d/acked" "$engine_pid" >/dev/null
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.5 + r / 32767 }')"

    # the primary's host is lost; promotion is asked at once
    t_kill=$(now_ns)
    kill -9 "$primary" "$engine_pid"
    t_ask=$(now_ns)
    "$rk" promote -d "$d/s" >/dev/null || fail "round $k: the promotion failed: $(tail -n 5 "$d/s.log")"
    t_promoted=$(now_ns)
    stop "$primary" "$engine_pid"
    acked=$(acked_height "$d/acked") # read once the engine is gone
    engine "$sring" "$d/s" "$d/writing-s"
    t_write=$(wait_writing "$d/writing-s" "$engine_pid")
    stop "$engine_pid"
    restored=$(sed -n 's/^orderbook: restored at height \([0-9]*\) .*/\1/p' "$d/writing-s.log")
    [ -n "$restored" ] || fail "round $k: the engine did not restore from the new primary: $(cat "$d/writing-s.log")"
    lost=$((acked > restored ? acked - restored : 0))
    stop "$standby"

    # baseline: the killed primary's directory started again, as a primary
    t_spawn=$(now_ns)
    "$rk" node "${primary_args[@]}" --set replication.min_replicas=0 2>>"$d/p.log" &
    primary=$!
    pids+=("$primary")
    wait_answers "$d/p" "$primary"
    t_up=$(now_ns)
    engine "$ring" "$d/p" "$d/writing-p"
    t_write_p=$(wait_writing "$d/writing-p" "$engine_pid")
    stop "$engine_pid" "$primary"

    echo "$(((t_promoted - t_ask) / 1000)) $(((t_write - t_kill) / 1000)) $(((t_up - t_spawn) / 1000))" \
        "$(((t_write_p - t_spawn) / 1000)) $acked $restored $lost $(((t_ask - t_kill) / 1000))" >>"$work/rounds"
    printf '  round %2d: promotion %4d ms, failover %4d ms (promotion asked %d ms after the kill), restart %4d ms, restart+engine %4d ms; acked block %d, restored %d, lost %d\n' \
        "$k" $(((t_promoted - t_ask) / 1000000)) $(((t_write - t_kill) / 1000000)) $(((t_ask - t_kill) / 1000000)) \
        $(((t_up - t_spawn) / 1000000)) $(((t_write_p - t_spawn) / 1000000)) "$acked" "$restored" "$lost"
    [ -n "${KEEP:-}" ] || rm -rf "$d"
    "$rk" ring rm "$ring" 2>/dev/null || true
    "$rk" ring rm "$sring" 2>/dev/null || true
done 2>/dev/null

# quantiles of column C of the rounds (us -> ms): "p50 p99 max"
quantiles() {
    awk -v c="$1" '{ print $c / 1000 }' "$work/rounds" | sort -g | awk '{ v[NR] = $1 } END {
        i50 = int(0.50 * NR + 0.999999); i99 = int(0.99 * NR + 0.999999)
        printf "%.0f %.0f %.0f\n", v[i50], v[i99], v[NR] }'
}

read -r prom50 prom99 prommax <<<"$(quantiles 1)"
read -r fo50 fo99 fomax <<<"$(quantiles 2)"
read -r rs50 rs99 rsmax <<<"$(quantiles 3)"
read -r re50 re99 remax <<<"$(quantiles 4)"
lost=$(awk '{ n += $7 } END { print n + 0 }' "$work/rounds")
met() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t ? "met" : "not met") }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }

echo "failover_time: $rounds rounds (primary + standby, the order book engine acknowledged RK_REPLICATED);"
echo "  load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
printf '  %-44s %7s %7s %7s\n' "ms over $rounds rounds" p50 p99 max
printf '  %-44s %7s %7s %7s\n' "promotion (request -> answers as primary)" "$prom50" "$prom99" "$prommax"
printf '  %-44s %7s %7s %7s\n' "failover (kill -> engine writes on it)" "$fo50" "$fo99" "$fomax"
printf '  %-44s %7s %7s %7s\n' "baseline: restart (spawn -> status answers)" "$rs50" "$rs99" "$rsmax"
printf '  %-44s %7s %7s %7s\n' "baseline: restart + engine writes" "$re50" "$re99" "$remax"
echo "  promotion p99 $prom99 ms against the target 1000 ms: $(met "$prom99" 1000) ($(ratio "$prom99" 1000) of it);" \
    "$(ratio "$prom99" "$rs99")x the restart's p99"
echo "  failover p99 $fo99 ms against the target 2000 ms: $(met "$fo99" 2000) ($(ratio "$fo99" 2000) of it);" \
    "$(ratio "$fo99" "$re99")x the restart + engine's p99"
echo "  acknowledged blocks lost: $lost"
[ "$lost" -eq 0 ] || fail "$lost acknowledged blocks were not on the new primary"
