/* client.c -- the client of a node's control endpoint: what an engine
 * (rk_state_open, node/state.c), the CLI (status, checkpoint) and the tests
 * use to ask a running node.
 *
 * One request, one reply, over ZeroMQ REQ to the node's REP socket on
 * ipc://DIR/control.sock (the server: node_control_serve in node.c).  Who
 * runs there is told by the data directory's LOCK: the node holds it with
 * flock and writes its pid in it, so a request to a directory without a
 * node fails at once (ENOENT), and one whose node dies or is replaced
 * while it waits fails as soon as the lock changes hands (EAGAIN), not
 * when the timeout runs out.
 *
 * Nothing here starts a thread or binds a socket: this file is part of
 * libringkeep, the engines' library, and the daemon (node.c) is not.
 *
 * Threads: any thread; a request uses its own ZeroMQ context and socket.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include <zmq.h>

#include "node/client.h"
#include "ringkeep.h"

void node_control_endpoint(const char *dir, char *out, size_t out_size)
{
    if ((size_t)snprintf(out, out_size, "ipc://%s/control.sock", dir) >= out_size)
        out[0] = '\0';
}

/* The pid written in DIR/LOCK if a process holds the lock, 0 if none. */
static long lock_holder(const char *lock_path)
{
    char text[32] = "";
    long pid = 0;
    int fd = open(lock_path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) { /* held: a node runs */
        ssize_t n = read(fd, text, sizeof text - 1);
        pid = n > 0 ? strtol(text, NULL, 10) : 0;
        if (pid <= 0)
            pid = -1; /* held, pid not written yet */
    }
    close(fd);
    return pid;
}

int node_request(const char *dir, const char *request, int timeout_ms, char **reply)
{
    char lock_path[PATH_MAX + 8], endpoint[PATH_MAX + 32];
    void *ctx = NULL, *sock = NULL;
    int linger = 0, slice = 200, reconnect_ms = 10, rc = 0, len = -1;
    long holder;
    char *buf = NULL;

    *reply = NULL;
    snprintf(lock_path, sizeof lock_path, "%s/LOCK", dir);
    holder = lock_holder(lock_path);
    if (holder == 0)
        return ENOENT; /* nobody holds the lock: no node */
    node_control_endpoint(dir, endpoint, sizeof endpoint);
    buf = malloc(NODE_CONTROL_MAX_REPLY + 1);
    ctx = zmq_ctx_new();
    sock = ctx ? zmq_socket(ctx, ZMQ_REQ) : NULL;
    if (!buf || !sock || zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(sock, ZMQ_RCVTIMEO, &slice, sizeof slice) ||
        /* a node that holds LOCK but has not bound control.sock yet (it is
         * starting: recovery) is tried again 10 ms apart, not ZeroMQ's 100 */
        zmq_setsockopt(sock, ZMQ_RECONNECT_IVL, &reconnect_ms, sizeof reconnect_ms) || zmq_connect(sock, endpoint) ||
        zmq_send(sock, request, strlen(request), 0) < 0) {
        rc = buf ? EIO : ENOMEM;
        goto out;
    }
    /* wait in slices: a node that dies (or is replaced) meanwhile never
     * answers, and waiting out the whole timeout for it would be wrong */
    for (int waited = 0; len < 0; waited += slice) {
        len = zmq_recv(sock, buf, NODE_CONTROL_MAX_REPLY, 0);
        if (len >= 0)
            break;
        if (lock_holder(lock_path) != holder) {
            rc = EAGAIN; /* the node went away: ask again */
            goto out;
        }
        if (waited >= timeout_ms) {
            rc = RK_ETIMEDOUT;
            goto out;
        }
    }
    buf[len < NODE_CONTROL_MAX_REPLY ? len : NODE_CONTROL_MAX_REPLY] = '\0';
    *reply = buf;
    buf = NULL;
out:
    free(buf);
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    return rc;
}
