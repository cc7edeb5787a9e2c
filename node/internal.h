/* internal.h -- the node process's parts shared by node.c (the process:
 * roles, signals, threads, control loop, status), primary.c (a primary's
 * drain, checkpoints and requests) and standby.c (a standby's apply and
 * main loop).  Private to node/. */
#ifndef RK_NODE_INTERNAL_H
#define RK_NODE_INTERNAL_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "persist/apply.h"
#include "persist/checkpoint.h"
#include "persist/config.h"
#include "persist/log.h"
#include "persist/store.h"
#include "node/ha.h"
#include "node/metrics.h"
#include "node/node.h"
#include "node/notify.h"
#include "replicator/replicator.h"
#include "shm/ring.h"


/* What the process is.  A field, not a program: the role's loop runs on
 * the main thread, and the apply thread, the control loop, the signals
 * and the status are the same for both. */
enum node_role { ROLE_PRIMARY, ROLE_STANDBY };

struct node {
    const struct node_config *c;
    enum node_role role;
    struct repl_primary *repl;     /* primary with [replication] publish, else NULL */
    struct repl_standby *standby;  /* standby: the protocol's side (replicator/standby.c) */
    store *s;
    applier *a;
    ring_owner *ring;
    uint64_t epoch;
    char endpoint[PATH_MAX + 32];

    pthread_mutex_t lock;
    pthread_cond_t journal_cond; /* journal_seq moved, drain done, or a request */
    pthread_cond_t apply_cond;   /* applied_seq moved, or a snapshot finished */
    uint64_t journal_seq;        /* last entry journaled (under lock) */
    uint64_t applied_seq;        /* last entry applied (under lock) */
    uint64_t apply_rate;         /* ring bytes apply reads per second of its steps (a moving
                                    average; 0: not measured yet; under lock): a primary's bounds
                                    its apply's lag, a standby's ACK reports its lag with it */
    uint64_t applied_pos;        /* a primary's: ring position apply has read to, the next_lsn
                                    of entry applied_seq (applier_read_lsn; under lock) */
    uint64_t digest_at;          /* state digest after applied_seq (under lock) */
    int drain_done;              /* drain stopped: apply finishes and exits */
    int wanted;                  /* REQ_* asked of the apply thread (under lock) */
    uint64_t wanted_seq;         /* the request is served at the first group boundary at or
                                    after this entry: the journal held everything written to
                                    the ring before the request once it was here (under lock) */
    uint64_t request_id;         /* +1 per request answered */
    char request_path[PATH_MAX]; /* the answer: a file made, or */
    char request_err[512];       /* why it could not be */
    ckpt_job *snap_job;          /* a snapshot request's answer: begun by the apply thread, written
                                    by the control thread that asked (under lock) */
    atomic_int snap_wanted;      /* a snapshot job is asked of the apply thread: its run stops
                                  * after the entry it is in (applier_stop_when) */
    int n_snap_jobs;             /* snapshots begun and not yet written: they read the store
                                    (under lock; write_snapshot) */
    uint64_t snap_begun_ns;      /* when it was begun (under lock) */
    uint64_t snap_made;          /* snapshot files named so far: the next one's number (under lock) */
    ckpt_job *snap_base;         /* a primary's base: a whole snapshot file it keeps, that the
                                    next requests get overlays of (ckpt_job_snapshot_at's next;
                                    the control thread's only) */
    uint64_t snap_base_pos;      /* the drain's position at the last request it served */
    uint64_t snap_base_epoch;    /* the epoch it was made in */
    int snap_rebase_due;         /* its overlays grew too large: a new base after the reply */
    uint64_t snap_base_gen;      /* +1 each time snap_base changes (the control thread's) */
    _Atomic uint64_t snap_fold_seq; /* the journal entry the base's fold is at (0: none; status) */
    uint64_t snap_req_pos, snap_req_gap; /* the drain at the last snapshot request, and how far it went
                                            since the one before (the control thread's) */
    /* a rebase being made on its own thread (rebase_main) from the base
     * of generation rebase_gen; the control thread starts it, and takes
     * its result (rebase_next, rebase_rc) once rebase_done is set */
    pthread_t rebase_thread;
    int rebase_running;          /* the control thread's */
    uint64_t rebase_gen;         /* the control thread's */
    ckpt_rebase *rebase;         /* the thread's while it runs */
    atomic_int rebase_done;      /* release by the thread: its result is written */
    ckpt_job *rebase_next;       /* the new base, or NULL (the thread's, then the control thread's) */
    int rebase_rc;
    char rebase_path[PATH_MAX + 64];
    char rebase_err[512];
    uint64_t rebase_entries, rebase_folded;
    ckpt_job *snap_retired;      /* a base to free after the reply (the control thread's) */
    uint64_t ckpt_seq;           /* journal seq of the newest checkpoint */
    pthread_cond_t ckpt_cond;    /* a job for the checkpoint thread, or stop */
    ckpt_job *job;               /* handed to the checkpoint thread (under lock) */
    int job_answering;           /* job answers the request being served */
    int ckpt_busy;               /* a checkpoint is being written (under lock) */
    int ckpt_pending;            /* a trigger fired while busy (under lock) */
    int ckpt_stop;               /* the checkpoint thread exits (under lock) */
    char ckpt_path[PATH_MAX];    /* its file (under lock) */
    pthread_t ckpt_thread, log_ckpt_thread;
    int ckpt_threads;            /* which of them run (checkpoint_threads_start; main thread's) */
    char last_error[512];        /* the last error the node survived (under lock) */

    /* for status: written by one thread, read by the control thread */
    _Atomic uint64_t n_batches, n_records, durable_lsn, applied_lsn, n_discarded, n_groups, digest;
    _Atomic uint64_t start_ns;
    _Atomic uint64_t n_checkpoints, journal_floor;
    _Atomic uint64_t drained_pos; /* ring position the journal covers */
    struct node_metrics m;        /* figures only the metrics show (node/metrics.h) */
    struct metrics_server *metrics; /* [metrics] listen's server, NULL: none (the main thread's) */
    _Atomic int stop;
    _Atomic int promote;       /* a standby was asked to become the primary (control thread sets it) */
    _Atomic uint64_t stepped_down; /* a primary's: the higher epoch it stepped down for, 0: none (step_down) */
    _Atomic int drain_waiting;     /* a primary's: 1 while its drain waits for apply (wait_for_apply) */
    int promoted;                  /* a primary's: it began a new epoch at this start (a promotion) */
    _Atomic int bootstrapping; /* a standby is replacing its store: it cannot be promoted (main thread's) */
    int test_kill_after_abort; /* RK_TEST_KILL_AFTER_ABORT set: a test hook (journal_batch) */
    const char *test_cut_after_publish; /* RK_TEST_CUT_AFTER_PUBLISH=FILE: a test hook (journal_batch) */

    /* a standby's apply thread, which a bootstrap stops and the main
     * thread starts again (apply_start, apply_stop, apply_finish) */
    pthread_t apply_thread;
    int apply_running;        /* main thread's */
    int apply_quit;           /* under lock: 1 stop now, 2 stop once all journaled is applied */
    int apply_done;           /* under lock: the apply thread has ended */
    struct apply_meta am;     /* under lock: the applier's meta after its last entry */
    _Atomic int apply_failed; /* apply failed: the node stops (exit 1) */
    const char *apply_gate;   /* test hook (RK_TEST_APPLY_GATE=FILE, NULL: none): sys_test_gate (persist/store.h) */
    char *status_text;        /* a standby's status JSON, malloc'd by Jansson (under lock; replaced whole) */
    struct node_notify notify; /* systemd: READY, STATUS, STOPPING, watchdog (main thread's; notify.h) */
};

/* Automatic failover ([ha]): the process's, started by repl_node_run and
 * node_promote, NULL without [ha] (node.c); the roles attach to it. */
extern struct ha *node_ha;

/* SIGTERM/SIGINT, for every role (node.c: on_signal): the last signal
 * caught (0: none) and how many. */
extern volatile sig_atomic_t node_signal, node_n_signals;
/* Set by the lease signal's handler (node.c: on_lease_break), taken by
 * the control thread (snapshot_leases_broken in checkpoint.c). */
#define NODE_LEASE_SIGNAL SIGIO
extern atomic_int node_lease_broken;

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The node's condition variables (struct node's, rk-ha's) wait on
 * CLOCK_MONOTONIC: with the default clock, the wall clock, a step back of
 * it (NTP, an operator) by X lengthened every timed wait by X -- an rk-ha
 * tick, so a leader stopped renewing its lease and fenced itself, and a
 * standby stopped publishing its record; apply's and the checkpoint
 * threads' looks at their timers.  Their deadlines come from
 * node_deadline_ms. */
static inline void node_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* Linux: cannot fail for this clock */
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

/* The deadline ms from now, for pthread_cond_timedwait on a condition
 * made by node_cond_init. */
static inline struct timespec node_deadline_ms(uint64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Apply read bytes of ring records in a step of ns (under lock): the
 * moving average of apply_rate, which bounds apply's lag in time (a
 * primary's apply_behind; a standby's ACK reports its lag at that rate).
 * A step's time runs from its start to its commit, so what slows apply
 * down (a cold cache, a slow disk, the CPU others take) shows. */
static inline void apply_rate_update(struct node *n, uint64_t bytes, uint64_t ns)
{
    uint64_t rate = ns ? (uint64_t)((double)bytes * 1e9 / (double)ns) : 0;

    if (!rate)
        return;
    n->apply_rate = n->apply_rate ? n->apply_rate - n->apply_rate / 8 + rate / 8 : rate;
}

/* A failure nothing may be acknowledged after: logged, then _exit(1). */
__attribute__((noreturn)) static inline void fatal(const char *msg, const char *detail)
{
    log_msg(LOG_ERROR, msg, "error=\"%s\" action=exit", detail);
    _exit(1);
}

/* node.c: the process parts every role uses */
void node_begin(struct node *n);
int start_thread(pthread_t *t, void *(*fn)(void *), void *arg);
void *apply_main(void *arg);
int control_start(struct node *n, pthread_t *t);
json_t *status_object(struct node *n);

/* run_standby's status when the standby was asked to become the primary
 * ("promote"): everything it holds is journaled and applied, its store
 * and applier handed over open; node.c then runs the role of a primary
 * on them. */
#define NODE_PROMOTE 100

/* What the apply thread asks of itself (wanted). */
enum { REQ_SNAPSHOT = 1, REQ_CHECKPOINT = 2 };
/* serve_request only: a snapshot request that wants a whole snapshot file,
 * not an overlay ("snapshot whole": an engine whose base failed its
 * checks asks again) */
enum { REQ_SNAPSHOT_WHOLE = 3 };

/* checkpoint.c: checkpoints and snapshots, for every role (see there).
 * On the apply thread, between applier_run calls: */
void begin_snapshot(struct node *n);
int start_checkpoint(struct node *n, int answering);
void wait_checkpoint_idle(struct node *n);

/* The apply thread's checkpoint triggers: every_seconds and every_records
 * count from the last checkpoint handed over (checkpoint_clock_reset);
 * every_heights is the applier's (applier_watch_height, set by
 * checkpoint_clock_start). */
struct checkpoint_clock {
    uint64_t last_ns;    /* when the last checkpoint was handed over */
    uint64_t records_at; /* records applied then */
};
void checkpoint_clock_start(struct node *n, struct checkpoint_clock *ck);
void checkpoint_clock_reset(struct node *n, struct checkpoint_clock *ck);
int checkpoint_time_due(const struct node *n, const struct checkpoint_clock *ck);
int checkpoint_due(const struct node *n, const struct checkpoint_clock *ck, const struct apply_meta *am);

/* The checkpoint and log checkpoint threads on n->s (main thread).
 * Start: 0 or an errno value (neither runs then). */
int checkpoint_threads_start(struct node *n);
void checkpoint_threads_stop(struct node *n);

/* Control thread: asks the apply thread for a snapshot or a checkpoint
 * (REQ_*) at the first group boundary at or after the request's point
 * (a primary's: what it journaled; a standby's: what it applied), waits
 * for it, writes a snapshot's file, and puts the reply in out ("ok PATH"
 * or "error ..."). */
void serve_request(struct node *n, int ask, uint64_t t_request, char *out, size_t out_size);

/* Control thread, after each reply is sent: frees what the snapshot just
 * served no longer needs, and makes a primary's new base when its
 * overlays grew too large (off the request's path). */
void snapshot_after_reply(struct node *n);

/* At a primary's stop, its control thread stopped: frees its bases. */
void snapshot_bases_drop(struct node *n);
/* Control thread, between requests: a primary's base's fold run on to the
 * journal's end while the base may serve (the next open's fold is then a
 * step, not everything since the last); the milliseconds until it wants
 * to run again, or -1 when it has nothing to do. */
int snapshot_fold_ahead(struct node *n);

/* At start (main thread): snapshots/ made and emptied of old files,
 * unfinished checkpoints removed; the newest checkpoint found (ckpt_seq,
 * ckpt_path: nothing to take again until apply moves). */
void checkpoint_dirs_prepare(struct node *n);
void checkpoint_find_newest(struct node *n);

/* Adds the checkpoint members to status st; non-zero when out of memory. */
int checkpoint_status(struct node *n, json_t *st);

/* A data directory kept open across a live promotion: the standby's store
 * and applier go to the primary's role as they are, so the promotion does
 * not close the Berkeley DB environment and open it again with recovery
 * (200 ms to 1 s here, most of a promotion).  Whoever holds it closes it. */
struct node_handover {
    store *s;
    applier *a;
};

/* primary.c: promote != 0 starts a new epoch (durably, first of all); with
 * open->s, the role takes open's store and applier (and clears open)
 * instead of opening the data directory. */
int run_primary(const struct node_config *c, struct repl_primary *r, int promote, struct node_handover *open);
void apply_primary(struct node *n);
/* Steps primary n down (its ring fenced at once, then recorded in meta.db):
 * a node of epoch (>= n's) leads, or n lost the leader lease (why says
 * which); run_primary then returns NODE_EXIT_FENCED.  Any thread; once. */
void primary_step_down(struct node *n, uint64_t epoch, const char *why);
json_t *primary_status(struct node *n);
void primary_answer(struct node *n, const char *req, char *reply, size_t reply_size);

/* standby.c */
/* NODE_PROMOTE comes with *out holding the open store and applier. */
int run_standby(const struct node_config *c, struct node_handover *out);
void standby_promote_answer(struct node *n, int force, char *reply, size_t reply_size);
void apply_standby(struct node *n);
struct apply_meta standby_applied(struct node *n);

#endif
