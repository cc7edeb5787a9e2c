#!/usr/bin/env bash
# cluster_cli_test.sh PATH/TO/ringkeep -- `ringkeep cluster status` with a
# real etcd holding a leader and member records whose names carry control
# bytes (an escape sequence, a newline, a bell, a backslash), as anyone who
# can write to etcd could put there: the text output shows every such byte
# as \xHH (no raw control byte, no forged line), the --json output carries
# the names byte for byte.
set -euo pipefail
RK=$1
ETCD=$(command -v etcd || true)
[ -n "$ETCD" ] || { echo "cluster_cli_test: FAIL: no etcd binary (./setup.sh installs etcd-server)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/rk-test-cluster.XXXXXX)
etcd_pid=
cleanup() {
    [ -z "$etcd_pid" ] || kill -KILL "$etcd_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
fail() {
    echo "cluster_cli_test: FAIL: $*" >&2
    exit 1
}
. "$(dirname "$0")/etcd_lib.sh"
start_etcd

cluster=cli-test-$$
put() { # put KEY JSON_VALUE: through etcd's v3 JSON gateway (keys and values in base64)
    local body
    body=$(printf '{"key":"%s","value":"%s"}' "$(printf '%s' "$1" | base64 -w0)" "$(printf '%s' "$2" | base64 -w0)")
    curl -sf -X POST "http://127.0.0.1:$etcd_port/v3/kv/put" -d "$body" >/dev/null || fail "etcd put $1"
}
# JSON \u escapes: ESC [31m, a newline then a line of its own, BEL, a backslash
evil='n1\u001b[31m\nmember n9 primary 99\u0007\\x'
put "/ringkeep/$cluster/leader" "{\"name\":\"$evil\",\"epoch\":3}"
put "/ringkeep/$cluster/epoch" 3
put "/ringkeep/$cluster/members/n1" \
    "{\"name\":\"$evil\",\"role\":\"primary\\u001b[0m\",\"epoch\":3,\"seq\":7,\"lag\":0,\"eligible\":true,\"pid\":1}"

mkdir "$TMP/d"
cat >"$TMP/n.ini" <<INI
[node]
data_dir = $TMP/d
[ring]
name = cluster-cli.$$
[ha]
etcd = http://127.0.0.1:$etcd_port
cluster = $cluster
INI

"$RK" cluster status -c "$TMP/n.ini" >"$TMP/out" 2>"$TMP/err" || fail "cluster status: $(cat "$TMP/err")"
cat "$TMP/out"
# every byte below 0x20 but the line ends, and DEL
if LC_ALL=C grep -q "$(printf '[\001-\011\013-\037\177]')" "$TMP/out"; then
    fail "a raw control byte in the text output: $(od -c "$TMP/out" | head)"
fi
[ "$(wc -l <"$TMP/out")" -eq 3 ] || fail "want 3 lines (cluster, header, one member), got: $(cat "$TMP/out")"
want='n1\x1b[31m\x0amember n9 primary 99\x07\x5cx'
grep -qF "leader $want (epoch 3)" "$TMP/out" || fail "the leader's name not escaped as $want"
sed -n 3p "$TMP/out" | grep -qF "$want " || fail "the member's name not escaped"
grep -qF 'primary\x1b[0m' "$TMP/out" || fail "the member's role not escaped"

"$RK" cluster status -c "$TMP/n.ini" --json >"$TMP/json" || fail "cluster status --json"
/usr/bin/python3 - "$TMP/json" <<'EOF' || fail "the --json output: $(cat "$TMP/json")"
import json, sys
v = json.load(open(sys.argv[1]))
name = "n1\x1b[31m\nmember n9 primary 99\x07\\x"
assert v["leader"]["name"] == name, v["leader"]
assert [m["name"] for m in v["members"]] == [name], v["members"]
assert v["members"][0]["role"] == "primary\x1b[0m", v["members"][0]
EOF
echo "cluster_cli_test: ok"
