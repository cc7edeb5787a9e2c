#!/bin/sh
# checkpoint_cli_test.sh -- `ringkeep checkpoint list|verify|export` on the
# golden checkpoint and on corrupted copies of it.
# usage: checkpoint_cli_test.sh PATH/TO/ringkeep PATH/TO/checkpoint-v1.0.rkcp
set -eu
RK=$1
GOLDEN=$2
TMP=$(mktemp -d /tmp/rk-ckpt-cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM
fail() { echo "checkpoint_cli_test: FAIL: $*" >&2; exit 1; }

mkdir -p "$TMP/data/checkpoints"
cp "$GOLDEN" "$TMP/data/checkpoints/00000000000000000042.rkcp"
cp "$GOLDEN" "$TMP/good.rkcp"

# verify: good file
out=$("$RK" checkpoint verify "$TMP/good.rkcp") || fail "verify of the golden file failed: $out"
echo "$out" | grep -q ": ok (format 1.0, journal seq 42, LSN 123456, 50 entries in 3 tables, digest 4f710920e17c4425)" ||
    fail "verify output: $out"

# verify shows the epoch history a 1.2 file carries, and says an older one has none
out=$("$RK" checkpoint verify "$(dirname "$GOLDEN")/checkpoint-v1.2.rkcp") || fail "verify of golden 1.2: $out"
echo "$out" | grep -q ": ok (format 1.2, .*), epoch 3, epoch history: epoch 1 from seq 1 LSN 8; epoch 3 from seq 40 LSN 120000$" ||
    fail "verify output of 1.2: $out"
echo "$("$RK" checkpoint verify "$TMP/good.rkcp")" | grep -q "epoch history: none (format 1.0)$" || fail "1.0 history"

# export: 50 lines, text as strings, binary as base64, empty as ""
"$RK" checkpoint export "$TMP/good.rkcp" > "$TMP/export.jsonl" || fail "export failed"
[ "$(wc -l < "$TMP/export.jsonl")" -eq 50 ] || fail "export has $(wc -l < "$TMP/export.jsonl") lines, want 50"
head -n 1 "$TMP/export.jsonl" | grep -qx '{"table":"accounts","key":"acct-00","value":"{\\"balance\\":0,\\"ccy\\":\\"EUR\\"}"}' ||
    fail "first export line: $(head -n 1 "$TMP/export.jsonl")"
grep -qx '{"table":"accounts","key":"acct-07","value":""}' "$TMP/export.jsonl" || fail "empty value not \"\""
grep -qx '{"table":"orders","key":{"base64":"AAAAAAAAAAA="},"value":{"base64":"8Pf+5ezT2sHIz7a9pKuSmQ=="}}' "$TMP/export.jsonl" ||
    fail "binary entry not base64"
grep -q '^{"table":"positions","key":"","value":""}$' "$TMP/export.jsonl" || fail "empty key not \"\""
grep -q '"key":"pos/1","value":"qty=-35 é€"' "$TMP/export.jsonl" || fail "UTF-8 value not kept as text"

# list: text and JSON
out=$("$RK" checkpoint list -d "$TMP/data") || fail "list failed: $out"
echo "$out" | grep -q "^42 .* 50 .*4f710920e17c4425 yes matcher=1000,risk=77" || fail "list output: $out"
out=$("$RK" checkpoint list -d "$TMP/data" --json) || fail "list --json failed"
echo "$out" | grep -q '"journal_seq":42,"lsn":123456,"epoch":3' || fail "list --json: $out"
echo "$out" | grep -q '"heights":{"matcher":1000,"risk":77},"verified":true' || fail "list --json: $out"
"$RK" checkpoint verify --all -d "$TMP/data" > /dev/null || fail "verify --all on a good folder"

# a corrupted copy: one byte flipped in the body
cp "$GOLDEN" "$TMP/bad.rkcp"
printf '\377' | dd of="$TMP/bad.rkcp" bs=1 seek=400 conv=notrunc 2> /dev/null
if out=$("$RK" checkpoint verify "$TMP/bad.rkcp"); then fail "verify accepted a corrupt file"; fi
echo "$out" | grep -q "bad.rkcp: BAD: trailer checksum mismatch" || fail "verify of a corrupt file: $out"
if "$RK" checkpoint export "$TMP/bad.rkcp" > "$TMP/bad.jsonl" 2> "$TMP/bad.err"; then fail "export of a corrupt file"; fi
[ ! -s "$TMP/bad.jsonl" ] || fail "export wrote entries of a corrupt file"
grep -q "checksum mismatch" "$TMP/bad.err" || fail "export error: $(cat "$TMP/bad.err")"

# a truncated copy, and an older checkpoint copied over a newer name
head -c 500 "$GOLDEN" > "$TMP/data/checkpoints/00000000000000000050.rkcp"
cp "$GOLDEN" "$TMP/data/checkpoints/00000000000000000060.rkcp"
if out=$("$RK" checkpoint verify --all -d "$TMP/data"); then fail "verify --all accepted bad files"; fi
[ "$(echo "$out" | wc -l)" -eq 3 ] || fail "verify --all: want one line per file: $out"
echo "$out" | grep -q "00000000000000000050.rkcp: BAD: file has 500 bytes" || fail "truncation: $out"
echo "$out" | grep -q "00000000000000000060.rkcp: BAD: file name says journal seq 60, its header says 42" ||
    fail "copy over a newer name: $out"
echo "$out" | grep -q "00000000000000000042.rkcp: ok" || fail "good file among bad ones: $out"
if out=$("$RK" checkpoint list -d "$TMP/data"); then fail "list exit 0 with bad files"; fi
[ "$(echo "$out" | grep -c ' no ')" -eq 2 ] || fail "list should mark 2 files unverified: $out"

# usage errors exit 2
set +e
"$RK" checkpoint verify > /dev/null 2>&1
[ $? -eq 2 ] || fail "verify without a file: want exit 2"
"$RK" checkpoint frobnicate > /dev/null 2>&1
[ $? -eq 2 ] || fail "unknown subcommand: want exit 2"
set -e
echo "checkpoint_cli_test: ok"
