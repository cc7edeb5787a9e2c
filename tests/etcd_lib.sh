# etcd_lib.sh -- sourced by the tests that need a real etcd (the Debian
# etcd-server's binary, on loopback, with a temporary data directory).
# The caller sets ETCD (the binary), TMP (its temporary directory; etcd
# keeps TMP/etcd and logs to TMP/etcd.log) and etcd_pid (empty), and
# defines fail; it kills $etcd_pid when it ends.  start_etcd sets
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
