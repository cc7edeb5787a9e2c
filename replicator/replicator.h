/* replicator.h -- replication over ZeroMQ: the primary's side (primary.c)
 * and the standby's (standby.c), called by the node process (node/), which
 * they never include.  docs/PROTOCOL.md is the wire protocol; wire.h its
 * codec.  Private to ringkeep. */
#ifndef RK_REPLICATOR_H
#define RK_REPLICATOR_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "persist/config.h"
#include "persist/store.h"
#include "shm/ring.h"

/* ------------------------------------------------------------ primary */

/* What a primary's replicator sees of the node: a consistent copy of its
 * cursors, which the node's progress function fills (any thread). */
struct repl_progress {
    uint64_t epoch;
    uint64_t journal_seq; /* last entry journaled */
    uint64_t applied_seq; /* last entry applied */
    uint64_t durable_lsn; /* the ring's durable cursor */
    uint64_t applied_lsn; /* LSN of the last MARK applied */
    uint64_t digest;      /* state digest after applying ... */
    uint64_t digest_seq;  /* ... up to this entry (a group boundary) */
};
typedef void repl_progress_fn(void *arg, struct repl_progress *p);

/* A primary's replicator: publishes what the node journals and
 * checkpoints, serves standbys, moves the ring's replicated cursor.  It
 * keeps its own thread (it owns the sockets); the node calls the functions
 * below from its threads, and none of them blocks. */
struct repl_primary;

/* A replicator for configuration c ([replication] publish and serve set);
 * 0 or ENOMEM.  *out is the caller's: repl_primary_close. */
int repl_primary_open(const struct node_config *c, struct repl_primary **out);

/* Node's main thread, once its threads run and before drain starts: binds
 * the sockets and starts the replicator's thread.  s, ring and progress
 * stay valid until repl_primary_stop.  Non-zero: the node stops (exit 1). */
int repl_primary_start(struct repl_primary *p, store *s, ring_owner *ring, repl_progress_fn *progress,
                       void *progress_arg);

/* Drain thread, after entry seq was appended (and the durable cursor
 * moved). */
void repl_primary_journaled(struct repl_primary *p, uint64_t seq);

/* Checkpoint thread, after checkpoint file path was written and verified. */
void repl_primary_checkpointed(struct repl_primary *p, const char *path);

/* Checkpoint thread, before trimming the journal: the lowest entry a
 * standby it knows still needs (UINT64_MAX: none); the journal is not
 * trimmed past it. */
uint64_t repl_primary_trim_floor(struct repl_primary *p);

/* Control thread: adds the replicator's members to the status object
 * (the object stays the caller's). */
void repl_primary_status(struct repl_primary *p, json_t *status);

/* Node's main thread, at stop, after drain and apply finished: stops the
 * replicator's thread (a no-op if it does not run). */
void repl_primary_stop(struct repl_primary *p);

/* Stops it if need be and frees it; NULL is a no-op. */
void repl_primary_close(struct repl_primary *p);

/* ------------------------------------------------------------ standby */

/* What the node lends a standby (standby_run). */
struct repl_standby_host {
    /* the apply thread, as it starts: its priority (NODE_APPLY_NICE) */
    void (*apply_thread_started)(void);
    /* the control thread: serves the control endpoint of data directory
     * dir until *stop, answer() writing each reply */
    void (*serve_control)(const char *dir, _Atomic int *stop,
                          void (*answer)(void *arg, const char *request, char *reply, size_t reply_size),
                          void *arg);
};

/* A standby: follows the primary at [replication] primary_publish and
 * primary_serve into data directory c->data_dir (see standby.c) until
 * SIGTERM/SIGINT or a fatal error.  Returns the exit status (0 after a
 * clean stop). */
int standby_run(const struct node_config *c, const struct repl_standby_host *host);

#endif
