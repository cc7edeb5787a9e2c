#!/usr/bin/env bash
# setup.sh -- one command from a fresh Debian 12 machine to a running ringkeep.
#
#   ./setup.sh demo    install what is missing, build, run the demo (a primary,
#                      a standby and the order book engine, a crash of the
#                      engine and a failover: examples/demo.sh)
#   ./setup.sh test    install what is missing, build with -Werror and run
#                      every test; then the same suite under ASan+UBSan; then
#                      the fuzz targets briefly (this is what CI runs)
#   ./setup.sh build   install what is missing and build only
#   ./setup.sh package install what is missing, build for /usr and make the
#                      .deb with CPack (build-package/ringkeep_VERSION_ARCH.deb)
#
# Debian packages are installed only when missing (with sudo when not root).
# Builds go to build/ (release), build-asan/, build-fuzz/ and build-package/.
set -euo pipefail

cd "$(dirname "$0")"
jobs=$(nproc 2>/dev/null || echo 2)

packages=(build-essential cmake ninja-build pkg-config
          libzmq3-dev libdb5.3-dev libmsgpack-dev libzstd-dev libxxhash-dev check libinih-dev libjansson-dev
          libmicrohttpd-dev
          clang libclang-rt-14-dev
          # examples/monitor.py and its test (run with /usr/bin/python3): ZeroMQ, msgpack, zstd and
          # xxHash bindings, the same libraries the C code uses, rather than a decoder of our own
          python3-zmq python3-msgpack python3-zstandard python3-xxhash
          # automatic failover ([ha]): etcd, the coordinator, and libcurl for its v3 JSON gateway
          libcurl4-openssl-dev etcd-server
          # the man page (scdoc), sd_notify (libsystemd-dev), systemd-analyze for the unit test (systemd;
          # it looks the unit's Documentation= man page up with man-db's man)
          scdoc libsystemd-dev systemd man-db
          # bench/bench_vs_redis (the README's headline benchmark) runs the real Redis beside ringkeep
          redis-server
          # examples/finality signs and verifies checkpoints with Ed25519 (libsodium, already under ZeroMQ)
          libsodium-dev)

install_missing() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "setup: installing ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# promtool (Prometheus's checker, from Debian's prometheus package) for the
# metrics test: the one binary is taken out of the package into .tools/,
# without installing the package (which would start a Prometheus server).
fetch_promtool() {
    [ -x .tools/promtool ] && return 0
    local tmp
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) || {
            rm -rf "$tmp"
            echo "setup: cannot download Debian's prometheus package for promtool" >&2
            return 1
        }
    fi
    mkdir -p .tools
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -xO ./usr/bin/promtool >.tools/promtool.part
    chmod 755 .tools/promtool.part
    mv .tools/promtool.part .tools/promtool
    rm -rf "$tmp"
    echo "setup: promtool taken from Debian's prometheus package into .tools/"
}

build() { # build DIR [cmake options...]
    local dir=$1; shift
    cmake -S . -B "$dir" -G Ninja -Wno-dev "$@" >/dev/null
    ninja -C "$dir" -j "$jobs"
}

run_tests() { # run_tests DIR
    ctest --test-dir "$1" --output-on-failure -j 2
}

fuzz_briefly() {
    build build-fuzz -DCMAKE_C_COMPILER=clang -DRK_WERROR=ON -DRK_FUZZ=ON -DRK_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
    local seconds=${RK_FUZZ_SECONDS:-30}
    for target in build-fuzz/tests/fuzz_*; do
        [ -x "$target" ] || continue
        case "$target" in *_replay) continue ;; esac
        local name=${target##*/fuzz_}
        local work status=0
        work=$(mktemp -d)
        echo "setup: fuzzing $name for ${seconds}s (corpus tests/fuzz/corpus/$name)"
        "$target" -max_total_time="$seconds" -print_final_stats=1 "$work" "tests/fuzz/corpus/$name" \
            >"$work.log" 2>&1 || status=$?
        if [ $status -ne 0 ]; then
            tail -n 60 "$work.log"
            echo "setup: fuzz target $name failed (exit $status)"
            return 1
        fi
        grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$work.log" || true
        rm -rf "$work" "$work.log"
    done
}

cmd=${1:-}
case "$cmd" in
demo)
    install_missing
    build build -DRK_WERROR=ON
    exec ./examples/demo.sh build
    ;;
test)
    install_missing
    fetch_promtool
    echo "setup: release build (-Werror) and tests"
    build build -DRK_WERROR=ON
    run_tests build
    echo "setup: ASan+UBSan build and tests"
    build build-asan -DRK_WERROR=ON -DRK_SANITIZE=ON -DRK_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_tests build-asan
    fuzz_briefly
    echo "setup: all tests passed"
    ;;
build)
    install_missing
    build build -DRK_WERROR=ON
    ;;
package)
    install_missing
    rm -f build-package/*.deb
    build build-package -DRK_WERROR=ON -DRK_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr
    (cd build-package && cpack -G DEB >/dev/null)
    deb=$(ls build-package/*.deb)
    dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\):/setup: \1:/p'
    echo "setup: $deb (install: apt-get install ./$deb)"
    ;;
*)
    echo "usage: ./setup.sh demo|test|build|package" >&2
    exit 2
    ;;
esac
