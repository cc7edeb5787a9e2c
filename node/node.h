/* node.h -- the primary node: drain, apply and the control endpoint
 * (private to ringkeep).
 *
 * node/ is the node process: its main loop, threads, signals, the server
 * of the control endpoint and the status (node.c), and the small client of
 * that endpoint with the engines' state reader (client.c, state.c), which
 * are all of node/ that libringkeep carries.  It sits on replicator/,
 * persist/ and shm/.  (replicator/ still includes this header: the role
 * dispatch and the standby's process parts move here next, issue 10.1.) */
#ifndef RK_NODE_H
#define RK_NODE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

#include "persist/config.h"
#include "shm/ring.h"
#include "persist/store.h"

struct node;

/* What a primary's replicator sees of the node (node_progress). */
struct node_progress {
    uint64_t epoch;
    uint64_t journal_seq; /* last entry journaled */
    uint64_t applied_seq; /* last entry applied */
    uint64_t durable_lsn; /* the ring's durable cursor */
    uint64_t applied_lsn; /* LSN of the last MARK applied */
    uint64_t digest;      /* state digest after applying ... */
    uint64_t digest_seq;  /* ... up to this entry (a group boundary) */
};

/* A replicator riding on a primary node (replicator/primary.c).  The node
 * calls these from its own threads; the replicator keeps its own thread
 * and must not block them.  arg is passed back to each. */
struct node_replicator {
    void *arg;
    /* main thread, once the threads run and before drain starts; the
     * store, ring and progress stay valid until stop.  Non-zero: the node
     * stops (exit 1). */
    int (*start)(void *arg, struct node *n, store *s, ring_owner *ring);
    /* drain thread, after entry seq was appended (and the durable cursor
     * moved) */
    void (*journaled)(void *arg, uint64_t seq);
    /* checkpoint thread, after checkpoint file path was written and
     * verified */
    void (*checkpointed)(void *arg, const char *path);
    /* checkpoint thread, before trimming the journal: the lowest entry a
     * standby it knows still needs (UINT64_MAX: none); the journal is not
     * trimmed past it */
    uint64_t (*trim_floor)(void *arg);
    /* control thread: adds the replicator's members to the status object
     * (json_object_set_new and the like; the object stays the node's) */
    void (*status)(void *arg, json_t *status);
    /* main thread, at stop, after drain and apply finished */
    void (*stop)(void *arg);
};

/* Runs a primary node with configuration c until SIGTERM or SIGINT (then
 * finishes the batch in hand, applies what is journaled and returns 0), or
 * a fatal error (logged; returns non-zero, and never acknowledges anything
 * that was not made durable). */
int node_run(const struct node_config *c);

/* node_run with a replicator (NULL: none).  node_run refuses a
 * configuration with [replication] publish set: only a program that links
 * the replicator (`ringkeep node`) serves standbys. */
int node_run_with(const struct node_config *c, const struct node_replicator *r);

/* A standby's apply thread runs this much nicer than the process: on a
 * busy host storing and acknowledging come first, and its apply lag holds
 * nothing up (the primary's apply runs at the node's priority: its lag
 * past max_lag_entries stalls drain). */
#define NODE_APPLY_NICE 5

/* Makes the calling thread delta nicer than the process (best effort: a
 * refusal leaves it at the process's priority). */
void node_thread_nice(int delta);

/* A consistent copy of the node's cursors; any thread. */
void node_progress(struct node *n, struct node_progress *p);

/* Serves the control endpoint (ZeroMQ REP, requests up to 256 bytes) on the
 * calling thread until *stop: answer() writes the reply to each request
 * (NUL-terminated, at most reply_size bytes).  For the node's and a
 * standby's control threads. */
void node_control_serve(const char *endpoint, _Atomic int *stop,
                        void (*answer)(void *arg, const char *request, char *reply, size_t reply_size), void *arg);

#endif
