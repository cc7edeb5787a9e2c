#!/usr/bin/env bash
# install_test.sh BUILD_DIR SOURCE_DIR [CFLAGS] -- `cmake --install` into a
# temporary prefix holds everything an engine author and an operator need
# (issue 15.1): the shared and static library, ringkeep.h, the binary,
# ringkeep.pc, the CMake package with its version file, the man page, the
# config examples and the systemd unit naming the installed binary.  The
# shared library exports only what include/ringkeep.map lets out (rk_*, in
# version RINGKEEP_0), every function ringkeep.h declares among them.  A
# tiny engine (tests/install_engine/engine.c) is built against the
# installed tree with pkg-config (shared) and with find_package
# (ringkeep::ringkeep and ringkeep::ringkeep_static), and each build runs
# against the installed node: its records read back byte for byte.
# CFLAGS: compile and link flags for the engines (the sanitizer build's).
set -euo pipefail
build=$1
src=$2
cflags=${3:-}
tmp=$(mktemp -d /tmp/rk-install-test.XXXXXX)
prefix=$tmp/prefix
ring=rk-install.$$
node=
fail() { echo "install_test: FAIL: $*"; exit 1; }
cleanup() {
    if [ -n "$node" ]; then kill "$node" 2>/dev/null && wait "$node" 2>/dev/null || true; fi
    rm -f /dev/shm/ringkeep.$ring
    rm -rf "$tmp"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || fail "cmake --install: $(cat "$tmp/install.log")"

# --------------------------------------------------------------- the tree
libdir=$(dirname "$(find "$prefix" -name libringkeep.so -print -quit)")
[ -n "$libdir" ] && [ "$libdir" != . ] || fail "no libringkeep.so installed"
for f in include/ringkeep.h bin/ringkeep share/man/man1/ringkeep.1 share/doc/ringkeep/examples/primary.ini \
    share/doc/ringkeep/examples/standby.ini lib/systemd/system/ringkeep@.service lib/sysusers.d/ringkeep.conf; do
    [ -s "$prefix/$f" ] || fail "$f is not installed"
done
for f in libringkeep.a pkgconfig/ringkeep.pc cmake/ringkeep/ringkeepConfig.cmake \
    cmake/ringkeep/ringkeepConfigVersion.cmake cmake/ringkeep/ringkeepTargets.cmake; do
    [ -s "$libdir/$f" ] || fail "${libdir#"$prefix"/}/$f is not installed"
done
cmp -s "$src/include/ringkeep.h" "$prefix/include/ringkeep.h" || fail "the installed ringkeep.h differs from include/"
[ -x "$prefix/bin/ringkeep" ] || fail "bin/ringkeep is not executable"
"$prefix/bin/ringkeep" version >/dev/null || fail "the installed ringkeep does not run"
grep -q '^\.TH "ringkeep" "1"' "$prefix/share/man/man1/ringkeep.1" || fail "ringkeep.1 is not a man page (.TH)"
grep -q "^ExecStart=$prefix/bin/ringkeep node -c /etc/ringkeep/%i.ini$" "$prefix/lib/systemd/system/ringkeep@.service" ||
    fail "the unit does not run the installed binary: $(grep ExecStart "$prefix/lib/systemd/system/ringkeep@.service")"

# ---------------------------------------------- the exports (ringkeep.map)
so=$libdir/libringkeep.so
exports=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//')
[ -n "$exports" ] || fail "libringkeep.so exports nothing"
while read -r sym; do
    case "$sym" in
    rk_*@@RINGKEEP_0) ;;
    RINGKEEP_0) ;; # the version node itself
    *) fail "libringkeep.so exports $sym: include/ringkeep.map lets out rk_* (version RINGKEEP_0) only" ;;
    esac
done <<<"$(nm -D --defined-only --with-symbol-versions "$so" | awk '{print $3}')"
declared=$(grep -oE '\brk_[a-z_]+\(' "$src/include/ringkeep.h" | tr -d '(' | sort -u)
for fn in $declared; do
    grep -qx "$fn" <<<"$exports" || fail "ringkeep.h declares $fn but libringkeep.so does not export it"
done

# ---------------------------------------------- engines built against it
export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --modversion ringkeep)" = "$(sed -n 's/^project(ringkeep VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")" ] ||
    fail "pkg-config --modversion ringkeep: $(pkg-config --modversion ringkeep)"
# shellcheck disable=SC2046,SC2086 # pkg-config's flags and CFLAGS are word lists
cc -std=c11 -Wall -Wextra -Werror $cflags -o "$tmp/engine_pc" "$src/tests/install_engine/engine.c" \
    $(pkg-config --cflags --libs ringkeep) -Wl,-rpath,"$libdir" 2>"$tmp/cc.log" ||
    fail "cc with pkg-config: $(cat "$tmp/cc.log")"
# (ldd's output kept first: grep -q stops reading at a match, and under
# pipefail ldd's SIGPIPE would fail the pipeline)
libs=$(ldd "$tmp/engine_pc")
grep -q "libringkeep.so.* => $libdir/" <<<"$libs" || fail "engine_pc does not load the installed library: $libs"
cmake -S "$src/tests/install_engine" -B "$tmp/engine" -G Ninja -Wno-dev -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="-Wall -Wextra -Werror $cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags" \
    -DCMAKE_BUILD_RPATH="$libdir" >"$tmp/cmake.log" 2>&1 || fail "find_package(ringkeep): $(cat "$tmp/cmake.log")"
ninja -C "$tmp/engine" >"$tmp/ninja.log" 2>&1 || fail "build with find_package: $(cat "$tmp/ninja.log")"
libs=$(ldd "$tmp/engine/engine_static")
grep -q libringkeep <<<"$libs" && fail "engine_static loads libringkeep.so: $libs"

# ------------------------------------------- run against the installed node
"$prefix/bin/ringkeep" node --data-dir "$tmp" --ring "$ring" --log-level warn 2>"$tmp/node.log" &
node=$!
for i in $(seq 1000); do # bounded: the node answers once it is up
    "$prefix/bin/ringkeep" status -d "$tmp" >/dev/null 2>&1 && break
    kill -0 "$node" 2>/dev/null || fail "the node exited: $(cat "$tmp/node.log")"
    [ "$i" -lt 1000 ] || fail "the node never answered"
    sleep 0.05
done
"$tmp/engine_pc" "$ring" "$tmp" pkgconfig 205 || fail "the pkg-config engine"
"$tmp/engine/engine_shared" "$ring" "$tmp" cmake-shared 150 || fail "the find_package engine (shared)"
"$tmp/engine/engine_static" "$ring" "$tmp" cmake-static 150 || fail "the find_package engine (static)"
kill -TERM "$node"
rc=0
wait "$node" || rc=$?
node=
[ $rc -eq 0 ] || fail "the node exited $rc on SIGTERM: $(cat "$tmp/node.log")"
echo "install_test: installed tree complete, $(wc -l <<<"$exports") exports all rk_*, 3 engines built and verified"
