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

#include "persist/apply.h"
#include "persist/config.h"
#include "persist/store.h"
#include "replicator/wire.h"
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
/* Called (on the replicator's thread) with the epoch of a peer's message
 * that is higher than this primary's: another node was promoted; the node
 * steps down.  Set before repl_primary_start. */
void repl_primary_on_higher_epoch(struct repl_primary *p, void (*fn)(void *arg, uint64_t epoch), void *arg);

/* Called (on the replicator's thread) when the drain may go on after
 * waiting for the standbys' apply (repl_primary_apply_held went to 0): the
 * node wakes its drain.  Set before repl_primary_start. */
void repl_primary_on_standby_apply(struct repl_primary *p, void (*fn)(void *arg), void *arg);

/* 1 while the drain must wait for the standbys' apply (issue 13.7): with
 * min_replicas = k > 0 and [apply] max_lag_ms set, fewer than k of the
 * standbys that count have their apply within max_lag_ms of work behind
 * (as their ACKs report it) and one at least is further behind.  With
 * min_replicas = 0, never.  Any thread. */
int repl_primary_apply_held(struct repl_primary *p);

int repl_primary_start(struct repl_primary *p, store *s, ring_owner *ring, repl_progress_fn *progress,
                       void *progress_arg);

/* Drain thread, once entry seq is written to the store, before its fsync
 * (store_journal_write; durable 0; issue 13.6: the standbys' round trip
 * overlaps it), and again after the fsync (durable 1) when that returned
 * 0: publishes entry (len bytes, as stored; the caller keeps it) from the
 * calling thread when every entry before it was published -- before the
 * fsync only while every standby known checks prev_xxh (HELLO's
 * checks_prev) -- and returns 1; after the fsync, when it cannot, wakes
 * the replicator thread, which reads it back from the store.  Each entry published says which entry it follows, so that a
 * standby holding an entry this primary lost in a power cut before its
 * fsync takes nothing after it (docs/PROTOCOL.md, prev_xxh).  The drain
 * writes the next entry only after this one's fsync: a power cut loses
 * at most the last entry published. */
int repl_primary_journaled(struct repl_primary *p, uint64_t seq, const uint8_t *entry, size_t len, int durable);

/* Drain thread, after the fsync of the entries it published up to seq and
 * the move of the durable cursor: acks that reached past the last durable
 * entry count now (the replicator thread is woken to move the replicated
 * cursor). */
void repl_primary_durable(struct repl_primary *p, uint64_t seq);

/* The highest journal sequence a standby acknowledged since this
 * replicator started (for a test hook).  Any thread. */
uint64_t repl_primary_max_acked(struct repl_primary *p);

/* Checkpoint thread, after checkpoint file path was written and verified. */
void repl_primary_checkpointed(struct repl_primary *p, const char *path);

/* Checkpoint thread, before trimming the journal: the lowest entry a
 * standby it knows still needs (UINT64_MAX: none); the journal is not
 * trimmed past it. */
uint64_t repl_primary_trim_floor(struct repl_primary *p);

/* Control thread: adds the replicator's members to the status object
 * (the object stays the caller's). */
void repl_primary_status(struct repl_primary *p, json_t *status);

/* Under [ha] with min_replicas > 0, only the standbys etcd was told of
 * count toward min_replicas (node/ha.c publishes them in the sync key).
 * A plan: the standbys to count (node_ids, sorted): those this primary
 * knows now that count already or hold the journal it started with (its
 * promotion point, promotion_seq); how many of them hold every entry
 * acknowledged so far too (copies, at most min_replicas); and the known
 * standbys left out until they hold the promotion point (waiting, with
 * what each holds).  Making it stops the counting of standbys no longer
 * known.  1 with a plan, 0 when nothing is gated (no [ha], or
 * min_replicas 0).  rk-ha thread. */
struct repl_sync_plan {
    char standbys[WIRE_MAX_STANDBYS][WIRE_NAME_MAX + 1];
    uint32_t n_standbys;
    uint32_t copies;
    uint64_t promotion_seq;
    char waiting[WIRE_MAX_STANDBYS][WIRE_NAME_MAX + 1];
    uint64_t waiting_seq[WIRE_MAX_STANDBYS];
    uint32_t n_waiting;
};
int repl_primary_sync_plan(struct repl_primary *p, struct repl_sync_plan *plan);

/* Once plan is in etcd: its standbys' acknowledgements count.  rk-ha
 * thread. */
void repl_primary_sync_published(struct repl_primary *p, const struct repl_sync_plan *plan);

/* Node's main thread, at stop, after drain and apply finished: stops the
 * replicator's thread (a no-op if it does not run). */
void repl_primary_stop(struct repl_primary *p);

/* Stops it if need be and frees it; NULL is a no-op. */
void repl_primary_close(struct repl_primary *p);

/* ------------------------------------------------------------ standby */

/* A standby's side of the protocol (standby.c): follows the primary at
 * [replication] primary_publish and primary_serve into data directory
 * c->data_dir, and bootstraps from its newest checkpoint when needed.
 * Given several nodes (the i-th endpoint of each list is node i), it
 * follows the one whose heartbeats announce the highest epoch, moves to
 * another when a higher one appears there (a standby promoted), and tells
 * a primary of a lower epoch that it was deposed (a HELLO at its own
 * epoch: that primary steps down).  The
 * node runs it: its main thread calls everything below but
 * repl_standby_applied, which its apply thread calls. */
struct repl_standby;

/* What the node does for a standby; arg is passed back to each. */
struct repl_standby_host {
    void *arg;
    /* main thread: entries up to seq are durable, apply may take them */
    void (*durable)(void *arg, uint64_t seq);
    /* main thread: stops the apply thread after the entry in hand and
     * waits for it: a bootstrap is about to replace the store and the
     * applier (the node starts apply again, on repl_standby_store and
     * repl_standby_applier, once repl_standby_bootstrapping is 0) */
    void (*apply_stop)(void *arg);
    /* main thread, NULL: none: an ACK is about to say the standby holds
     * repl_standby_journal_seq, which it did not say before; whatever
     * reports what the standby holds (its member record in etcd) must say
     * it first */
    void (*acking)(void *arg);
};

/* Opens the data directory (store, epoch, journal, applier) and connects
 * to the primary; logs what fails and returns non-zero then.  *out is set
 * in every case (NULL when out of memory): repl_standby_close. */
int repl_standby_open(const struct node_config *c, const struct repl_standby_host *host,
                      struct repl_standby **out);

/* The store and the applier, for the node's apply thread: replaced by a
 * bootstrap, while apply is stopped. */
store *repl_standby_store(const struct repl_standby *sb);
applier *repl_standby_applier(const struct repl_standby *sb);

/* The last entry held durably (what apply may reach). */
uint64_t repl_standby_journal_seq(const struct repl_standby *sb);

/* The epoch this standby follows. */
uint64_t repl_standby_epoch(const struct repl_standby *sb);

/* 1 while a bootstrap is under way (apply stays stopped). */
int repl_standby_bootstrapping(const struct repl_standby *sb);

/* Logs that the standby started and says HELLO. */
void repl_standby_start(struct repl_standby *sb);

/* Waits up to timeout_ms for messages and handles them: entries stored
 * (and acknowledged once durable), gaps fetched, bootstrap, heartbeats.
 * 0 to go on; non-zero: the standby cannot go on (logged; exit 1). */
int repl_standby_step(struct repl_standby *sb, int timeout_ms);

/* From any thread: a repl_standby_step waiting now (or the next one)
 * returns without waiting out its timeout (a promotion is asked). */
void repl_standby_wake(struct repl_standby *sb);

/* Commits the entries verified but not yet stored (at a clean stop). */
void repl_standby_flush(struct repl_standby *sb);

/* Apply thread, after entry seq was applied: the state digest then, for
 * the comparison with the primary's heartbeats; the ring position apply
 * has read to (applier_read_lsn) and its rate in ring bytes per second of
 * its work (0: not measured yet), with which the ACK reports how far, in
 * time, apply is behind what is durable (issue 13.7). */
void repl_standby_applied(struct repl_standby *sb, uint64_t seq, uint64_t digest, uint64_t read_lsn,
                          uint64_t bytes_per_s);

/* The standby's status members (a new object; NULL when out of memory),
 * with what apply has done (am); the node puts role, epoch, pid and data
 * directory before them. */
json_t *repl_standby_status(struct repl_standby *sb, const struct apply_meta *am);

/* What a promotion weighs ("which standby"): the last entry this standby
 * held durably at the end of its last step, against the most another
 * standby had acknowledged according to the followed primary's last
 * heartbeat (other_id "" and other_acked 0: none was listed). */
struct repl_promote_view {
    uint64_t held_seq;
    uint64_t other_acked;
    uint64_t heartbeat_epoch; /* that heartbeat's epoch */
    char other_id[RK_NAME_MAX + 1];
};

/* Any thread (the node's control thread answers "promote" with it). */
void repl_standby_promote_view(struct repl_standby *sb, struct repl_promote_view *out);

/* Closes the sockets, the applier and the store; NULL is a no-op. */
void repl_standby_close(struct repl_standby *sb);
/* Gives the caller sb's store and applier, open (a promotion goes on with
 * them): repl_standby_close then closes neither. */
void repl_standby_hand_over(struct repl_standby *sb, store **s, applier **a);

#endif
