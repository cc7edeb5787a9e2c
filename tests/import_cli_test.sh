#!/bin/sh
# import_cli_test.sh -- `ringkeep checkpoint import`: an export imported into
# a new data directory exports again to the same bytes; malformed input is
# refused naming the line, and leaves no folder behind.
# usage: import_cli_test.sh PATH/TO/ringkeep PATH/TO/golden-folder
set -eu
RK=$1
GOLDEN=$2
TMP=$(mktemp -d /tmp/rk-import-cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM
fail() { echo "import_cli_test: FAIL: $*" >&2; exit 1; }

# round trip, both golden formats: export, import, export again: same bytes
for v in 1.0 1.1; do
    "$RK" checkpoint export "$GOLDEN/checkpoint-v$v.rkcp" > "$TMP/$v.jsonl" || fail "export of golden $v"
    out=$("$RK" checkpoint import "$TMP/$v.jsonl" --to "$TMP/d$v") || fail "import of golden $v: $out"
    digest=$("$RK" checkpoint verify "$GOLDEN/checkpoint-v$v.rkcp" | sed 's/.*digest \([0-9a-f]*\).*/\1/')
    echo "$out" | grep -q "digest $digest" || fail "import digest: $out (golden: $digest)"
    "$RK" checkpoint export "$TMP/d$v/checkpoints/00000000000000000000.rkcp" > "$TMP/$v.again.jsonl" ||
        fail "export of the imported checkpoint"
    cmp "$TMP/$v.jsonl" "$TMP/$v.again.jsonl" || fail "golden $v: export after import differs"
    "$RK" checkpoint verify --all -d "$TMP/d$v" > /dev/null || fail "imported folder's checkpoint does not verify"
done

# lines in another order give the same checkpoint (import sorts); stdin works
sort -r "$TMP/1.0.jsonl" | "$RK" checkpoint import - --to "$TMP/shuffled" > /dev/null || fail "import of shuffled lines"
"$RK" checkpoint export "$TMP/shuffled/checkpoints/00000000000000000000.rkcp" | cmp - "$TMP/1.0.jsonl" ||
    fail "shuffled import differs"

# an empty folder is fine; a non-empty one is refused and kept as it was
mkdir "$TMP/empty"
"$RK" checkpoint import "$TMP/1.0.jsonl" --to "$TMP/empty" > /dev/null || fail "import into an empty folder"
mkdir "$TMP/full" && touch "$TMP/full/precious"
if err=$("$RK" checkpoint import "$TMP/1.0.jsonl" --to "$TMP/full" 2>&1); then fail "import into a full folder"; fi
echo "$err" | grep -q "is not empty (it holds precious)" || fail "full folder message: $err"
[ -f "$TMP/full/precious" ] && [ "$(ls "$TMP/full")" = precious ] || fail "full folder was changed"

# bad lines: refused naming file and line; no folder made
bad() { # bad LINE EXPECTED_TEXT
    head -n 3 "$TMP/1.0.jsonl" > "$TMP/bad.jsonl"
    printf '%s\n' "$1" >> "$TMP/bad.jsonl"
    tail -n 2 "$TMP/1.0.jsonl" >> "$TMP/bad.jsonl"
    if err=$("$RK" checkpoint import "$TMP/bad.jsonl" --to "$TMP/bad" 2>&1); then fail "accepted: $1"; fi
    echo "$err" | grep -q "bad.jsonl:4: .*$2" || fail "for $1: want line 4 and '$2', got: $err"
    [ ! -e "$TMP/bad" ] || fail "a folder was left after: $1"
}
bad '{"table":"t","key":"k","value":"v"' "not JSON"
bad '["t","k","v"]' "not a JSON object"
bad '{"table":"t","key":"k"}' 'no "value" field'
bad '{"table":"t","key":"k","value":42}' '"value" is not a string or {"base64"'
bad '{"table":"t","key":{"base64":"AB=="},"value":""}' '"key": not canonical padded base64'
bad '{"table":"t","key":{"base64":"A*=="},"value":""}' '"key": not canonical padded base64'
bad '{"table":"t","key":{"base64":"QQ="},"value":""}' '"key": not canonical padded base64'
bad '{"table":"t","key":{"b64":"QQ=="},"value":""}' '"key" is not a string or'
bad '{"table":"","key":"k","value":"v"}' "table name of 0 bytes"
bad '{"table":"t","key":"k","value":"v","extra":1}' 'unknown field "extra"'
bad '{"table":"t","key":"k","key":"k2","value":"v"}' "not JSON: duplicate object key"
bad '' "not JSON"
# a table and key given twice: both lines named
head -n 1 "$TMP/1.0.jsonl" > "$TMP/dup.jsonl"
head -n 1 "$TMP/1.0.jsonl" >> "$TMP/dup.jsonl"
if err=$("$RK" checkpoint import "$TMP/dup.jsonl" --to "$TMP/dup" 2>&1); then fail "accepted a duplicate key"; fi
echo "$err" | grep -q "dup.jsonl: line 2: table accounts, this key is given already on line 1" || fail "duplicate: $err"
[ ! -e "$TMP/dup" ] || fail "a folder was left after a duplicate"

# usage errors exit 2
set +e
"$RK" checkpoint import "$TMP/1.0.jsonl" > /dev/null 2>&1
[ $? -eq 2 ] || fail "import without --to: want exit 2"
"$RK" checkpoint import --to "$TMP/x" > /dev/null 2>&1
[ $? -eq 2 ] || fail "import without a file: want exit 2"
set -e
echo "import_cli_test: ok"
