/* metrics.h -- the node's Prometheus endpoint (private to node/).
 *
 * With [metrics] listen set, a node serves GET /metrics in the Prometheus
 * text exposition format (version 0.0.4) from libmicrohttpd's own thread;
 * without it nothing listens.  The server reads only atomics: counters the
 * drain, apply and checkpoint threads keep (struct node_metrics and the
 * node's own), the ring's cursors, the fsync histogram of persist/'s I/O
 * seam, and a standby's figures its main thread publishes after each step.
 * It takes no lock the drain or apply threads take, so a scrape (or a
 * client that connects and never speaks) cannot hold them up; a primary's
 * standby list is copied under the replicator's lock, which only the
 * replicator and checkpoint threads take. */
#ifndef RK_NODE_METRICS_H
#define RK_NODE_METRICS_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

/* Figures only the metrics show, kept by the threads that make them.
 * Every one is written with relaxed stores or adds and read with relaxed
 * loads: each is a figure on its own, none orders anything, and a scrape
 * may see two of them from instants a few microseconds apart. */
struct node_metrics {
    /* a primary's drain (journal_batch), its apply (apply_primary) */
    _Atomic uint64_t record_bytes;  /* bytes of the records (PUT, DEL, MARK) journaled, framed as in the ring */
    _Atomic uint64_t journal_bytes; /* bytes of the journal entries written (encoded, compressed) */
    _Atomic uint64_t journal_seq;   /* last entry journaled */
    _Atomic uint64_t applied_seq;   /* last entry applied */
    /* the checkpoint thread (ckpt_main), every role */
    _Atomic uint64_t ckpt_last_ns;     /* how long the last checkpoint took to write */
    _Atomic uint64_t ckpt_last_bytes;  /* its file's size */
    _Atomic uint64_t ckpt_ns_total;    /* the same, summed over the checkpoints taken */
    _Atomic uint64_t ckpt_bytes_total;
    /* a standby's main thread, from its status after each step
     * (metrics_standby_publish) */
    _Atomic uint64_t sb_epoch, sb_journal_seq, sb_applied_seq, sb_acked_seq, sb_primary_seq;
    _Atomic uint64_t sb_lag_entries, sb_lag_ms, sb_connected, sb_records, sb_groups;
    _Atomic uint64_t sb_fetched, sb_gaps, sb_duplicates, sb_bad_entries, sb_refused_epoch, sb_malformed;
    _Atomic uint64_t sb_bootstraps, sb_bootstrapping, sb_apply_lag_ms;
};

struct node;
struct metrics_server;

/* Starts serving n's metrics on n->c->metrics_listen (main thread, before
 * or after the role's threads start; nothing when it is empty: *out NULL).
 * The server's thread takes no SIGTERM/SIGINT.  0, or 1 after logging why
 * (the address is taken, or cannot be bound). */
int metrics_start(struct node *n, struct metrics_server **out);

/* Stops the server (its thread ends, connections are closed); NULL is a
 * no-op.  Before n goes. */
void metrics_stop(struct metrics_server *m);

/* A standby's main thread: publishes the figures of its status object st
 * (status_object) for the metrics. */
void metrics_standby_publish(struct node_metrics *m, const json_t *st);

#endif
