/* node.h -- the primary node: drain, apply and the control endpoint
 * (private to ringkeep). */
#ifndef RK_NODE_H
#define RK_NODE_H

#include <stddef.h>

#include "config.h"

/* Runs a primary node with configuration c until SIGTERM or SIGINT (then
 * finishes the batch in hand, applies what is journaled and returns 0), or
 * a fatal error (logged; returns non-zero, and never acknowledges anything
 * that was not made durable). */
int node_run(const struct node_config *c);

/* The control endpoint of the node on data directory dir:
 * "ipc://DIR/control.sock". */
void node_control_endpoint(const char *dir, char *out, size_t out_size);

/* Sends request ("status", "snapshot", "checkpoint") to the node on dir
 * and returns its reply (malloc'd, NUL-terminated) in *reply.  ENOENT when
 * no node runs there, EAGAIN when the node stopped or was replaced before
 * it answered, RK_ETIMEDOUT when it does not answer in timeout_ms. */
int node_request(const char *dir, const char *request, int timeout_ms, char **reply);

#endif
