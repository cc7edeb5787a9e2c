# etcd_lib.sh -- sourced by the tests that need a real etcd (the Debian
# etcd-server's binary, on loopback, with a temporary data directory).
# The caller sets ETCD (the binary), TMP (its temporary directory; etcd
# keeps TMP/etcd and logs to TMP/etcd.log) and etcd_pid (empty), and
# defines fail; it kills $etcd_pid when it ends (ha_test_setup, below, does
# all that for the [ha] tests).  start_etcd sets
# etcd_port (the client port; the peer port is the next one).
# ports: tried from a pid-derived start; etcd that cannot bind exits, and
# the next pair is tried
etcd_port=
etcd_run() { # etcd_run CLIENT_PORT: starts etcd on TMP/etcd; 0 once it answers
    local c=$1
    "$ETCD" --name ha-test --data-dir "$TMP/etcd" --listen-client-urls "http://127.0.0.1:$c" \
        --advertise-client-urls "http://127.0.0.1:$c" --listen-peer-urls "http://127.0.0.1:$((c + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((c + 1))" \
        --initial-cluster "ha-test=http://127.0.0.1:$((c + 1))" \
        --heartbeat-interval 100 --election-timeout 500 >>"$TMP/etcd.log" 2>&1 &
    etcd_pid=$!
    for _ in $(seq 200); do # bounded: 20 s
        kill -0 "$etcd_pid" 2>/dev/null || { etcd_pid=; return 1; }
        grep -q "ready to serve client requests" "$TMP/etcd.log" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
start_etcd() {
    local try c
    for try in $(seq 0 19); do
        c=$((20001 + ($$ * 7 + try * 131) % 6000 * 2))
        : >"$TMP/etcd.log"
        if etcd_run "$c"; then
            etcd_port=$c
            return 0
        fi
        [ -n "$etcd_pid" ] && kill -KILL "$etcd_pid" 2>/dev/null
        etcd_pid=
        rm -rf "$TMP/etcd"
    done
    fail "etcd would not start on any of 20 port pairs: $(tail -n 5 "$TMP/etcd.log")"
}

# ha_configs NAME TTL_MS: TMP/n0.ini .. n2.ini for three nodes with [ha]
# on that etcd (n0 configured as the primary; ring NAME.$$.i, cluster
# NAME-$$; data in TMP/d0..d2, made here; ipc endpoints in TMP;
# min_replicas 1, every standby eligible however far behind).  The caller
# sets RK and declares node_pid (an associative array): start_node N runs
# node N in the background, its stderr in TMP/nN.log.
ha_configs() {
    local name=$1 ttl=$2 i role
    for i in 0 1 2; do
        mkdir "$TMP/d$i"
        role=standby
        [ "$i" -eq 0 ] && role=primary
        cat >"$TMP/n$i.ini" <<INI
[node]
role = $role
data_dir = $TMP/d$i
[ring]
name = $name.$$.$i
capacity = 1M
[checkpoint]
every_seconds = 0
[replication]
publish = ipc://$TMP/pub$i
serve = ipc://$TMP/srv$i
primary_publish = ipc://$TMP/pub0,ipc://$TMP/pub1,ipc://$TMP/pub2
primary_serve = ipc://$TMP/srv0,ipc://$TMP/srv1,ipc://$TMP/srv2
node_id = n$i
min_replicas = 1
# acks unauthenticated: ipc endpoints in this test's own directory
insecure_acks = yes
heartbeat_ms = 100
on_higher_epoch = rejoin
[ha]
etcd = http://127.0.0.1:$etcd_port
cluster = $name-$$
ttl_ms = $ttl
max_lag_entries = 1000000
INI
    done
}
start_node() { "$RK" node -c "$TMP/n$1.ini" 2>>"$TMP/n$1.log" & node_pid[$1]=$!; }

# ha_test_setup NAME PREFIX: what every [ha] test script does first.  NAME
# (the script's, for its messages); PREFIX names TMP (/tmp/rk-test-PREFIX.*)
# and the rings (PREFIX-test.$$.0..2, as ha_configs PREFIX-test makes
# them).  Checks for the etcd binary (ETCD), makes TMP, declares node_pid,
# etcd_pid and engine_pid, and on exit kills them all (SIGCONT first: a
# test may have stopped one), removes the rings and TMP (kept with
# HA_TEST_KEEP set).  fail says why with the logs' last lines and exits 1.
ha_test_setup() {
    HA_TEST_NAME=$1
    HA_TEST_PREFIX=$2
    ETCD=$(command -v etcd || true)
    [ -n "$ETCD" ] || { echo "$HA_TEST_NAME: FAIL: no etcd binary (./setup.sh installs etcd-server)" >&2; exit 1; }
    TMP=$(mktemp -d "/tmp/rk-test-$HA_TEST_PREFIX.XXXXXX")
    declare -gA node_pid=()
    etcd_pid=
    engine_pid=
    trap ha_test_cleanup EXIT INT TERM
    # defined here, not when sourced: cluster_cli_test.sh has its own
    fail() {
        local f
        echo "$HA_TEST_NAME: FAIL: $*" >&2
        for f in "$TMP"/n*.log "$TMP"/etcd.log "$TMP"/engine*.log; do
            [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 15 "$f" >&2; }
        done
        exit 1
    }
}
ha_test_cleanup() {
    local p i
    for p in "${node_pid[@]}" $etcd_pid $engine_pid; do
        kill -CONT "$p" 2>/dev/null || true
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    for i in 0 1 2; do "$RK" ring rm "$HA_TEST_PREFIX-test.$$.$i" >/dev/null 2>&1 || true; done
    [ -n "${HA_TEST_KEEP:-}" ] && echo "$HA_TEST_NAME: kept $TMP" >&2 || rm -rf "$TMP"
}
kill_node() { # kill_node N: SIGKILL of node N, reaped
    kill -KILL "${node_pid[$1]}"
    wait "${node_pid[$1]}" 2>/dev/null || true
    unset "node_pid[$1]"
}
cluster() { "$RK" cluster status -c "$TMP/n0.ini" --json 2>/dev/null || true; }
leader_of() { printf '%s' "$1" | sed -n 's/.*"leader":{"name":"n\([0-9]\)","epoch":\([0-9]*\)}.*/\1 \2/p'; }
field() { printf '%s' "$2" | sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }
status() { "$RK" status -c "$TMP/n$1.ini" --json 2>/dev/null || true; }
wait_primary() { # wait_primary N: until nN answers its status as a primary
    local s
    for _ in $(seq 300); do
        s=$(status "$1")
        [ "$(field role "$s")" = primary ] && return 0
        sleep 0.1
    done
    fail "n$1 does not answer as a primary: $s"
}
wait_leader_after() { # wait_leader_after EPOCH: until etcd names a leader of a higher epoch (30 s: 15 TTLs)
    local l=
    for _ in $(seq 300); do
        l=$(leader_of "$(cluster)")
        [ -n "$l" ] && [ "${l##* }" -gt "$1" ] && break
        sleep 0.1
    done
    printf '%s' "$l"
}
wait_counted() { # wait_counted N K: until nN (a primary) counts K standbys
    local out=
    for _ in $(seq 300); do
        out=$(status "$1")
        [ "$(grep -o '"counted":true' <<<"$out" | wc -l)" -eq "$2" ] && return 0
        sleep 0.1
    done
    fail "n$1 does not count $2 standbys: $out"
}
acked_height() { awk '$1 == "acked" { h = $2 } END { print h + 0 }' "$1" 2>/dev/null || echo 0; }
engine_resumes() { # engine_resumes N ACKED TAG: the order book engine on nN
    # restores at a height >= ACKED (every block acknowledged RK_REPLICATED
    # before), writes on to block 40, and its books equal a run without
    # failures; its files are TMP/{acked,after,offline}TAG, TMP/engineTAG.log;
    # sets restored (the height it restored at)
    local n=$1 acked=$2 tag=$3
    "$OB" --ring "$HA_TEST_PREFIX-test.$$.$n" --data-dir "$TMP/d$n" --blocks 40 --replicated --acked "$TMP/acked$tag" \
        --digest >"$TMP/after$tag" 2>"$TMP/engine$tag.log" || fail "the engine failed on n$n"
    restored=$(sed -n 's/^orderbook: restored at height \([0-9]*\) .*/\1/p' "$TMP/engine$tag.log")
    [ -n "$restored" ] && [ "$restored" -ge "$acked" ] ||
        fail "n$n restored the engine at height '$restored', below the $acked blocks acknowledged RK_REPLICATED"
    "$OB" --offline --blocks 40 --digest >"$TMP/offline$tag"
    cmp -s "$TMP/after$tag" "$TMP/offline$tag" || fail "books on n$n differ from a run without the failures"
}
