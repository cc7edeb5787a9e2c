#!/usr/bin/env bash
# engine_lib_test.sh LIBRINGKEEP_SO -- the engines' library carries no
# daemon (issue 10.2): libringkeep is the ring producer API and rk_state_*,
# which asks a running node through the control endpoint's client
# (node/client.c) and never starts a thread, binds a socket, catches a
# signal or changes a thread's priority.  Fails, naming them, when the
# library imports any of the node process's calls below (dynamic imports
# are listed even in a stripped library), or defines the node's entry
# points.
set -euo pipefail
lib=${1:?usage: engine_lib_test.sh LIBRINGKEEP_SO}

daemon_calls="zmq_bind zmq_poll pthread_create pthread_join pthread_sigmask sigaction setpriority"
daemon_defs="node_run repl_node_run"

imports=$(nm -D --undefined-only "$lib" | awk '{print $2}' | sed 's/@.*//')
defined=$(nm -D --defined-only "$lib" | awk '{print $3}'; nm --defined-only "$lib" 2>/dev/null | awk '{print $3}')
bad=0
for sym in $daemon_calls; do
    if grep -qx "$sym" <<<"$imports"; then
        echo "engine_lib: $lib imports $sym: the node process is linked into the engines' library"
        bad=1
    fi
done
for sym in $daemon_defs; do
    if grep -qx "$sym" <<<"$defined"; then
        echo "engine_lib: $lib defines $sym: the node process is linked into the engines' library"
        bad=1
    fi
done
if [ "$bad" -ne 0 ]; then
    echo "engine_lib: FAIL"
    exit 1
fi
echo "engine_lib: $lib carries no node process ($(wc -w <<<"$imports") imports checked)"
