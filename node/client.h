/* client.h -- asking a running node over its control endpoint (private to
 * ringkeep; part of libringkeep, which carries no daemon).  Requests:
 * "status" (the node's status, JSON), "snapshot" (replies "ok PATH": a
 * state snapshot file, whole or an overlay of a base it names,
 * persist/snapshot.h and docs/FORMAT.md), "snapshot whole" (the same,
 * never an overlay) and "checkpoint" (replies "ok PATH" or "error WHY").  node.c serves them (node_control_serve); the
 * endpoint is local (a Unix socket in the data directory), not part of the
 * replication protocol. */
#ifndef RK_NODE_CLIENT_H
#define RK_NODE_CLIENT_H

#include <stddef.h>

/* The largest request a node reads, and the largest reply it sends. */
#define NODE_CONTROL_MAX_REQUEST 256
#define NODE_CONTROL_MAX_REPLY 65536

/* The control endpoint of the node on data directory dir:
 * "ipc://DIR/control.sock" (out[0] == '\0' if it does not fit). */
void node_control_endpoint(const char *dir, char *out, size_t out_size);

/* Sends request ("status", "snapshot", "snapshot whole", "checkpoint") to the node on dir
 * and returns its reply (malloc'd, NUL-terminated) in *reply.  ENOENT when
 * no node runs there, EAGAIN when the node stopped or was replaced before
 * it answered, RK_ETIMEDOUT when it does not answer in timeout_ms. */
int node_request(const char *dir, const char *request, int timeout_ms, char **reply);

#endif
