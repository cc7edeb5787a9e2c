#!/usr/bin/env bash
# systemd_unit_test.sh BUILD_DIR -- the installed ringkeep@.service passes
# `systemd-analyze verify` (issue 15.2): installed into a temporary prefix,
# with the man page its Documentation= names on MANPATH, it verifies
# without a single message (verify exits 0 on a setting it ignores, so any
# output fails the test).  A copy with a bad setting must draw a message:
# the check can fail.  Skips (exit 77) only when systemd-analyze is absent.
set -euo pipefail
build=$1
command -v systemd-analyze >/dev/null || { echo "systemd_unit: SKIP: systemd-analyze is not installed"; exit 77; }
tmp=$(mktemp -d /tmp/rk-unit-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "systemd_unit: FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || fail "cmake --install: $(cat "$tmp/install.log")"
unit=$tmp/prefix/lib/systemd/system/ringkeep@.service
export MANPATH=$tmp/prefix/share/man
rc=0
systemd-analyze verify "$unit" >"$tmp/out" 2>&1 || rc=$?
[ $rc -eq 0 ] && [ ! -s "$tmp/out" ] || fail "systemd-analyze verify (exit $rc): $(cat "$tmp/out")"
for key in "Type=notify" "WatchdogSec=" "ProtectSystem=strict" "NoNewPrivileges=yes" \
    "ReadWritePaths=/var/lib/ringkeep/%i" "ExecStart=$tmp/prefix/bin/ringkeep node -c /etc/ringkeep/%i.ini"; do
    grep -q "^$key" "$unit" || fail "the unit has no $key"
done

mkdir "$tmp/bad"
sed 's/^WatchdogSec=.*/WatchdogSec=soon/' "$unit" >"$tmp/bad/ringkeep@.service"
systemd-analyze verify "$tmp/bad/ringkeep@.service" >"$tmp/out" 2>&1 || true
grep -q "WatchdogSec\|sec value" "$tmp/out" || fail "a bad WatchdogSec drew no message: $(cat "$tmp/out")"
echo "systemd_unit: ringkeep@.service verifies clean ($(systemd-analyze --version | sed -n 1p))"
