/* checkpoint.c -- checkpoints and state snapshots, the same for every role:
 * a primary takes them from the apply thread between its steps
 * (apply_primary), a standby between the entries it applies
 * (apply_standby), both at a group boundary of what they applied, so a
 * standby's checkpoint at a journal sequence holds what the primary's at
 * that sequence holds.
 *
 *   apply thread                      checkpoint thread (ckpt_main)
 *   triggers (checkpoint_due,         writes the file from the snapshot,
 *     every_heights), a request  -->  retention, journal and BDB log trim
 *   start_checkpoint: snapshot
 *     txn begun, job handed over      log checkpoint thread (log_ckpt_main):
 *   begin_snapshot: a request's       a BDB checkpoint every LOG_CHECKPOINT_KB
 *     snapshot txn, for the           of log (bounds recovery)
 *     control thread to write
 *     (serve_request, write_snapshot)
 *
 * The checkpoint threads work on the node's store; a standby, whose store
 * a bootstrap replaces, runs them with its apply thread
 * (checkpoint_threads_start, checkpoint_threads_stop) and waits for the
 * snapshots being written (n_snap_jobs) before the store goes.
 *
 * A primary's state opens (serve_snapshot, on the control thread):
 *
 *   no base --ask_apply, write_snapshot--> a whole snapshot, kept as the
 *     base (base-PID-N; the engine gets a link to it)
 *   base --write_overlay--> an overlay of it per request (what changed
 *     since), the base linked for the engine
 *   overlays too large --rebase_start (after the reply)--> rebase thread
 *     (rebase_main): base + last overlay merged, a new base
 *   --rebase_collect (next request)--> the new base serves, with the old
 *     one's fold
 *
 * Every file kept mapped (the base, the last overlay, a rebase's) is
 * leased (ckpt_leases_enable): an engine, which gets a hard link to it,
 * that truncates it waits, and the node lets go of all of them
 * (snapshot_leases_broken) instead of dying of SIGBUS at its next read.
 *
 * Threads: apply, checkpoint, log checkpoint, control, rebase; the
 * hand-offs are under `lock` (internal.h), the rebase's by its thread's
 * start and join (rebase_done says when to join).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "node/internal.h"
#include "persist/apply.h"
#include "persist/checkpoint.h"
#include "persist/json_bytes.h"
#include "persist/log.h"
#include "persist/retain.h"
#include "persist/snapshot.h"
#include "persist/store.h"
#include "replicator/replicator.h"
#include "shm/segment.h"

#define LOG_CHECKPOINT_KB 4096 /* the BDB environment is checkpointed after this much log */
#define LOG_CHECKPOINT_MS 50   /* how often the log checkpoint thread looks at the log */
#define CACHE_CHECK_STEPS 200  /* and every this many looks (10 s), at the state's size (cache_check) */
#define SNAPSHOT_FOLD_MAX_BYTES (4u << 20) /* ring bytes a snapshot folds past apply at most (serve_snapshot) */
#define SNAPSHOT_BASE_FOLD_MAX_BYTES (32u << 20) /* ... past the last one served (its base) */

/* The epoch a checkpoint or snapshot says: a primary's own; a standby's,
 * the epoch it follows (the highest its directory has seen, meta.db), so
 * that its checkpoint at a sequence says what the primary's would. */
static uint64_t checkpoint_epoch(struct node *n)
{
    return n->role == ROLE_PRIMARY ? n->epoch : store_epoch_seen(n->s);
}

/* Records the answer to the request being served (under lock). */
static void answer_locked(struct node *n, int rc, const char *path, const char *err)
{
    n->request_id++;
    if (rc) {
        snprintf(n->request_err, sizeof n->request_err, "%s", err[0] ? err : store_strerror(rc));
        n->request_path[0] = '\0';
    } else {
        snprintf(n->request_path, sizeof n->request_path, "%s", path);
        n->request_err[0] = '\0';
    }
    pthread_cond_broadcast(&n->apply_cond);
}

/* On the apply thread, between applier_run calls (a group boundary at or
 * after the request's wanted_seq): begins the snapshot the request being
 * served gets -- an MVCC snapshot transaction, with what was applied and
 * the producers' marks read in it now, state.db multiversion until it
 * ends (applier_checkpoint_begin) -- and hands it to the control thread
 * waiting in ask_apply, which writes the file from it
 * (write_snapshot, with a primary's fold) while apply goes on.  Copying the
 * state here instead stalled apply for the whole copy: under steady
 * writes apply then lagged, and each open waited longer than the last
 * (issue 9.5). */
void begin_snapshot(struct node *n)
{
    ckpt_job *job = NULL;
    char err[512] = "";
    int rc = applier_checkpoint_begin(n->a, checkpoint_epoch(n), &job);

    if (rc) {
        snprintf(err, sizeof err, "snapshot: cannot begin a snapshot transaction: %s", store_strerror(rc));
        log_msg(LOG_ERROR, "snapshot failed", "error=\"%s\"", err);
    }
    pthread_mutex_lock(&n->lock);
    if (rc)
        snprintf(n->last_error, sizeof n->last_error, "%s", err);
    n->wanted = 0;
    atomic_store(&n->snap_wanted, 0);
    n->snap_job = job;
    n->n_snap_jobs += job != NULL; /* until write_snapshot ends it */
    n->snap_begun_ns = now_ns();
    answer_locked(n, rc, "", err);
    pthread_mutex_unlock(&n->lock);
}

/* On the apply thread, between applier_run calls (a group boundary):
 * hands a checkpoint of what is applied now to the checkpoint thread.
 * answering: a `checkpoint` request waits for it.  Returns 0 if handed
 * over or answered at once (nothing new since the newest checkpoint),
 * RK_EBUSY if a checkpoint is still being written (the caller tries
 * again once it is done). */
int start_checkpoint(struct node *n, int answering)
{
    ckpt_job *job = NULL;
    char path[PATH_MAX];
    int rc;

    pthread_mutex_lock(&n->lock);
    if (atomic_load(&n->stepped_down)) {
        /* what it journals from now on is nobody's: no checkpoint holds
         * it (a rejoin sets it aside) */
        n->ckpt_pending = 0;
        pthread_mutex_unlock(&n->lock);
        return RK_EFENCED;
    }
    if (n->ckpt_busy) {
        n->ckpt_pending = 1;
        pthread_mutex_unlock(&n->lock);
        return RK_EBUSY;
    }
    n->ckpt_pending = 0;
    if (n->ckpt_seq && n->ckpt_seq == applier_meta(n->a).applied_seq) {
        if (answering) { /* nothing new since: that one is the answer */
            snprintf(path, sizeof path, "%s", n->ckpt_path);
            n->wanted = 0;
            answer_locked(n, 0, path, "");
        }
        pthread_mutex_unlock(&n->lock);
        return 0;
    }
    pthread_mutex_unlock(&n->lock);
    rc = applier_checkpoint_begin(n->a, checkpoint_epoch(n), &job);
    pthread_mutex_lock(&n->lock);
    if (rc) {
        log_msg(LOG_ERROR, "checkpoint failed", "error=\"cannot begin a snapshot: %s\"", store_strerror(rc));
        snprintf(n->last_error, sizeof n->last_error, "checkpoint: cannot begin a snapshot: %s",
                 store_strerror(rc));
        if (answering) {
            n->wanted = 0;
            answer_locked(n, rc, "", n->last_error);
        }
    } else {
        n->job = job;
        n->job_answering = answering;
        n->ckpt_busy = 1;
        if (answering)
            n->wanted = 0; /* the checkpoint thread answers */
        pthread_cond_broadcast(&n->ckpt_cond);
    }
    pthread_mutex_unlock(&n->lock);
    return 0;
}

/* Waits (apply thread) until no checkpoint is being written. */
void wait_checkpoint_idle(struct node *n)
{
    pthread_mutex_lock(&n->lock);
    while (n->ckpt_busy)
        pthread_cond_wait(&n->journal_cond, &n->lock);
    pthread_mutex_unlock(&n->lock);
}

void checkpoint_clock_start(struct node *n, struct checkpoint_clock *ck)
{
    applier_watch_height(n->a, n->c->ckpt_height_producer, n->c->ckpt_every_heights);
    ck->last_ns = now_ns();
    ck->records_at = applier_meta(n->a).n_records;
}

int checkpoint_time_due(const struct node *n, const struct checkpoint_clock *ck)
{
    return n->c->ckpt_every_seconds && now_ns() - ck->last_ns >= n->c->ckpt_every_seconds * 1000000000ull;
}

int checkpoint_due(const struct node *n, const struct checkpoint_clock *ck, const struct apply_meta *am)
{
    return checkpoint_time_due(n, ck) ||
           (n->c->ckpt_every_records && am->n_records - ck->records_at >= n->c->ckpt_every_records);
}

void checkpoint_clock_reset(struct node *n, struct checkpoint_clock *ck)
{
    ck->last_ns = now_ns();
    ck->records_at = applier_meta(n->a).n_records;
}

/* The checkpoint thread: writes each job from its snapshot while drain and
 * apply go on, then applies retention, trims the journal to what the kept
 * checkpoints need, and removes the Berkeley DB log files recovery no
 * longer needs (store_log_trim).  A kept checkpoint never needs more than
 * what its node applied, so a standby's journal keeps everything past its
 * apply, and from the oldest kept checkpoint's restart point on: what its
 * own restart and a promotion replay.  It runs at the node's priority: at
 * nice 10 (tried first) a checkpoint of 1M keys under full load took
 * 27-56 s instead of 6-10 s, and the snapshot held that long made apply
 * copy far more pages (bench_checkpoint: the node drained at a fifth of
 * its rate even after the checkpoint). */
static void *ckpt_main(void *arg)
{
    struct node *n = arg;
    const struct node_config *c = n->c;
    struct retain_policy policy = {c->ckpt_keep, c->ckpt_keep_hourly, c->ckpt_keep_daily};
    char dir[PATH_MAX + 16], path[PATH_MAX], err[512];

    pthread_setname_np(pthread_self(), "rk-checkpoint"); /* top -H, perf, gdb */
    snprintf(dir, sizeof dir, "%s/checkpoints", c->data_dir);
    pthread_mutex_lock(&n->lock);
    for (;;) {
        struct ckpt_info written = {0};
        uint64_t floor = UINT64_MAX, t0;
        uint32_t removed = 0;
        ckpt_job *job;
        int answering, rc;

        while (!n->job && !n->ckpt_stop)
            pthread_cond_wait(&n->ckpt_cond, &n->lock);
        if (!n->job)
            break;
        job = n->job;
        answering = n->job_answering;
        n->job = NULL;
        pthread_mutex_unlock(&n->lock);

        err[0] = '\0';
        t0 = now_ns();
        rc = ckpt_job_write(job, dir, c->zstd_level, path, sizeof path, &written, err, sizeof err);
        ckpt_job_free(job);
        /* a failed write or fsync is fatal here as in the journal: the
         * next fsync of the same file may pass on what this one lost */
        if (rc && sys_io_failed())
            fatal("checkpoint write failed: a failed write or fsync is never retried",
                  err[0] ? err : store_strerror(rc));
        if (!rc) {
            uint64_t took_ns = now_ns() - t0;
            struct stat st;
            uint64_t size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
            /* relaxed: figures on their own (node/metrics.h) */
            atomic_store_explicit(&n->m.ckpt_last_ns, took_ns, memory_order_relaxed);
            atomic_store_explicit(&n->m.ckpt_last_bytes, size, memory_order_relaxed);
            atomic_fetch_add_explicit(&n->m.ckpt_ns_total, took_ns, memory_order_relaxed);
            atomic_fetch_add_explicit(&n->m.ckpt_bytes_total, size, memory_order_relaxed);
            log_msg(LOG_INFO, "checkpoint taken",
                    "file=\"%s\" journal_seq=%" PRIu64 " lsn=%" PRIu64 " entries=%" PRIu64 " digest=%016" PRIx64
                    " ms=%.1f",
                    path, written.journal_seq, written.lsn, written.n_entries, written.digest,
                    (double)took_ns / 1e6);
            /* the floor never passes what this store's apply needs: the
             * file just written is at its state, durable (ckpt_job_write) */
            if (retain_apply(dir, &policy, seg_now_ns(CLOCK_REALTIME), retain_needs(&written), &floor,
                             &removed) != 0)
                floor = UINT64_MAX; /* cannot list: trim nothing */
            if (removed)
                log_msg(LOG_INFO, "old checkpoints removed", "count=%" PRIu32, removed);
            if (n->repl) {
                uint64_t needed = repl_primary_trim_floor(n->repl); /* standbys following */
                if (needed < floor)
                    floor = needed;
            }
            if (c->trim_journal && floor != UINT64_MAX) {
                int trc = store_journal_trim(n->s, floor);
                /* a deadlock victim, again and again, aborted whole: tried at the next checkpoint */
                if (trc == DB_LOCK_DEADLOCK)
                    log_msg(LOG_WARN, "journal trim given up", "below=%" PRIu64 " error=\"%s\"", floor,
                            store_strerror(trc));
                else if (trc)
                    fatal("journal trim failed: its commit writes and fsyncs the log", store_strerror(trc));
                else
                    atomic_store(&n->journal_floor, floor);
            }
            /* and the BDB log files recovery no longer needs; a failure
             * here (the Berkeley DB checkpoint's writes and fsyncs of
             * state.db and the journal) leaves pages only the log can redo */
            uint32_t n_logs = 0;
            int lrc = store_log_trim(n->s, &n_logs);
            if (lrc)
                fatal("Berkeley DB checkpoint or log trim failed: the next start recovers from the log",
                      store_strerror(lrc));
            if (n_logs)
                log_msg(LOG_DEBUG, "log files removed", "count=%" PRIu32, n_logs);
        } else {
            log_msg(LOG_ERROR, "checkpoint failed", "error=\"%s\"", err[0] ? err : store_strerror(rc));
        }
        if (!rc && n->repl)
            repl_primary_checkpointed(n->repl, path);
        pthread_mutex_lock(&n->lock);
        if (rc) {
            snprintf(n->last_error, sizeof n->last_error, "%s", err[0] ? err : store_strerror(rc));
        } else {
            n->ckpt_seq = written.journal_seq;
            snprintf(n->ckpt_path, sizeof n->ckpt_path, "%s", path);
            atomic_fetch_add(&n->n_checkpoints, 1);
        }
        ckpt_info_free(&written);
        if (answering)
            answer_locked(n, rc, path, err);
        n->ckpt_busy = 0;
        pthread_cond_broadcast(&n->journal_cond); /* apply may wait for this one */
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

/* Whether the state tables' file has outgrown half the Berkeley DB cache
 * ([storage] cache_mb), said once in the log when it has: once the state
 * and the page versions a checkpoint being written keeps no longer fit,
 * apply and the checkpoint writer spend their time evicting pages, apply
 * falls behind and the back-pressure slows the engines (bench_soak: 256
 * MiB of cache held 124-141k records/s over 2M keys for the first 30 s,
 * 2.4-67k after, the state file about 240 MiB).  1: said. */
static int cache_check(const struct node *n)
{
    uint64_t bytes = 0, cache = (uint64_t)n->c->cache_mb << 20;

    if (store_state_bytes(n->s, &bytes) != 0 || bytes <= cache / 2)
        return 0;
    log_msg(LOG_WARN, "the state is more than half the Berkeley DB cache: apply slows down once it no longer fits",
            "state_db_mb=%" PRIu64 " cache_mb=%" PRIu32 " hint=\"raise [storage] cache_mb\"", bytes >> 20,
            n->c->cache_mb);
    return 1;
}

/* The log checkpoint thread: a restart after a crash (DB_RECOVER) redoes
 * the Berkeley DB log from the last checkpoint, so every LOG_CHECKPOINT_MS
 * it checkpoints the environment if LOG_CHECKPOINT_KB of log were written
 * since the last one.  Its own thread, because the drain writes that much
 * log in tens of milliseconds under load: from the apply thread, between
 * apply's steps, checkpoints came ~30 MiB of log apart and a restart
 * redid up to 70 MiB (1-1.5 s; bench/restart_time.sh).  A checkpoint
 * waits for no writer (BDB's txn_checkpoint runs beside them) and stops
 * none: the drain and apply go on while it flushes.  A failure is fatal,
 * as any failed write.  Every CACHE_CHECK_STEPS looks, until it has said
 * so, it also checks the state's size against the cache (cache_check).
 * Exits when ckpt_stop is set. */
static void *log_ckpt_main(void *arg)
{
    struct node *n = arg;
    int warned = 0;

    pthread_setname_np(pthread_self(), "rk-log-ckpt"); /* top -H, perf, gdb */
    pthread_mutex_lock(&n->lock);
    for (unsigned step = 0; !n->ckpt_stop; step++) {
        struct timespec ts;
        int rc;
        if (step % CACHE_CHECK_STEPS == 0 && !warned) {
            pthread_mutex_unlock(&n->lock);
            warned = cache_check(n);
            pthread_mutex_lock(&n->lock);
        }
        ts = node_deadline_ms(LOG_CHECKPOINT_MS);
        pthread_cond_timedwait(&n->ckpt_cond, &n->lock, &ts); /* ckpt_cond: also the stop */
        if (n->ckpt_stop)
            break;
        pthread_mutex_unlock(&n->lock);
        rc = store_log_checkpoint(n->s, LOG_CHECKPOINT_KB);
        if (rc)
            fatal("Berkeley DB checkpoint failed", store_strerror(rc));
        pthread_mutex_lock(&n->lock);
    }
    pthread_mutex_unlock(&n->lock);
    return NULL;
}

/* Stops the checkpoint thread (after the job it has, if any) and the log
 * checkpoint thread, when started (ckpt_threads: bit 1 and bit 2). */
void checkpoint_threads_stop(struct node *n)
{
    pthread_mutex_lock(&n->lock);
    n->ckpt_stop = 1;
    pthread_cond_broadcast(&n->ckpt_cond);
    pthread_mutex_unlock(&n->lock);
    if (n->ckpt_threads & 1)
        pthread_join(n->ckpt_thread, NULL);
    if (n->ckpt_threads & 2)
        pthread_join(n->log_ckpt_thread, NULL);
    n->ckpt_threads = 0;
}

int checkpoint_threads_start(struct node *n)
{
    int rc;

    pthread_mutex_lock(&n->lock);
    n->ckpt_stop = 0;
    pthread_mutex_unlock(&n->lock);
    rc = start_thread(&n->ckpt_thread, ckpt_main, n);
    if (rc == 0) {
        n->ckpt_threads = 1;
        rc = start_thread(&n->log_ckpt_thread, log_ckpt_main, n);
    }
    if (rc == 0)
        n->ckpt_threads |= 2;
    else
        checkpoint_threads_stop(n);
    return rc;
}

/* ------------------------------------------------------------ requests */

#define WANT_ROLE_SEQ UINT64_MAX /* ask_apply: the request's point by the node's role */

/* On the control thread: asks the apply thread for request ask at its
 * first group boundary at or after journal entry wanted_seq (WANT_ROLE_SEQ:
 * for a primary the journal's end, which holds the request's point
 * (journal_batch); for a standby what it had applied when asked) and waits
 * for the answer.  REQ_SNAPSHOT: *job, begun there (begin_snapshot) and
 * counted in n_snap_jobs until write_snapshot ends it.  A job is begun on
 * the apply thread only: state tables are written in place outside
 * snapshots, and only there, between applier_run calls, can a job make
 * state.db multiversion before its snapshot's first read (export.c,
 * snapshot_pin); apply's run stops after its current entry for it
 * (snap_wanted), so that a primary's open waits for that step, not for
 * apply to reach the request's point (the fold takes the rest:
 * write_snapshot).  Other requests: the file made, in res.  Returns 0, or
 * non-zero with the reason in res. */
static int ask_apply(struct node *n, int ask, uint64_t wanted_seq, ckpt_job **job, uint64_t *t_begun,
                     char *res, size_t res_size)
{
    uint64_t id;
    int rc = 0;

    *job = NULL;
    pthread_mutex_lock(&n->lock);
    id = n->request_id;
    n->wanted = ask;
    n->wanted_seq = wanted_seq != WANT_ROLE_SEQ ? wanted_seq
                    : n->role == ROLE_PRIMARY   ? n->journal_seq
                                                : n->applied_seq;
    if (ask == REQ_SNAPSHOT)
        atomic_store(&n->snap_wanted, 1); /* apply's run stops after its current entry */
    pthread_cond_broadcast(&n->journal_cond);
    while (n->request_id == id && !atomic_load(&n->stop))
        pthread_cond_wait(&n->apply_cond, &n->lock);
    if (n->request_id == id) {
        snprintf(res, res_size, "node is stopping");
        rc = RK_EINVAL;
    } else if (n->request_err[0]) {
        snprintf(res, res_size, "%s", n->request_err);
        rc = RK_EINVAL;
    } else if (ask == REQ_SNAPSHOT) {
        *job = n->snap_job; /* begin_snapshot's, for this thread to write */
        n->snap_job = NULL;
        *t_begun = n->snap_begun_ns;
    } else {
        snprintf(res, res_size, "%s", n->request_path);
    }
    pthread_mutex_unlock(&n->lock);
    return rc;
}

/* A primary's base that may no longer serve: freed after the reply
 * (snapshot_after_reply), since unmapping it and letting its file go --
 * the engines unlinked their links -- frees every page of it, a few
 * milliseconds of an open at 0.5 M entries. */
static void retire_base(struct node *n)
{
    ckpt_job_free(n->snap_retired);
    n->snap_retired = n->snap_base;
    n->snap_base = NULL;
    atomic_store(&n->snap_fold_seq, 0);
    n->snap_base_gen++;
    n->snap_rebase_due = 0;
}

/* When a base's overlays are too large to go on: their fold holds more
 * records than an eighth of the base's entries (an engine reads the base
 * whole each open; past that, an overlay's writing and reading cost more
 * than the base's) and at least REBASE_MIN_RECORDS. */
#define REBASE_MIN_RECORDS 4096

/* The name of the next snapshot file of this node: state-PID-N (given to
 * an engine) or base-PID-N (a base the node keeps, linked to engines'
 * names). */
static void snapshot_path(struct node *n, const char *kind, char *path, size_t path_size)
{
    uint64_t id;

    pthread_mutex_lock(&n->lock);
    id = ++n->snap_made;
    pthread_mutex_unlock(&n->lock);
    snprintf(path, path_size, "%s/snapshots/%s-%" PRIu64 "-%" PRIu64 SNAP_SUFFIX, n->c->data_dir, kind,
             (uint64_t)getpid(), id);
}

/* The rebase thread: the whole snapshot the base and its last overlay make
 * (ckpt_rebase_run), the new base.  Its own thread, so that no request
 * waits for it: on the control thread after a reply, the next open (80 ms
 * later in bench_node) often came while it ran, and waited.  A failed
 * write is fatal, as a snapshot's. */
static void *rebase_main(void *arg)
{
    struct node *n = arg;
    uint64_t t0 = now_ns(), cpu0 = seg_now_ns(CLOCK_THREAD_CPUTIME_ID);

    pthread_setname_np(pthread_self(), "rk-rebase"); /* top -H, perf, gdb */
    /* test hook: a file RK_TEST_REBASE_GATE names holds the rebase back
     * until it holds a number other than 0, so that a test can serve
     * overlays of the old base while a rebase runs */
    for (const char *gate = getenv("RK_TEST_REBASE_GATE"); gate && !sys_test_gate(gate);)
        usleep(1000);
    n->rebase_err[0] = '\0';
    n->rebase_rc = ckpt_rebase_run(n->rebase, n->rebase_path, &n->rebase_entries, &n->rebase_next, n->rebase_err,
                                   sizeof n->rebase_err);
    if (n->rebase_rc && sys_io_failed())
        fatal("snapshot base failed: a failed write or fsync is never retried",
              n->rebase_err[0] ? n->rebase_err : store_strerror(n->rebase_rc));
    double ms = (double)(now_ns() - t0) / 1e6, cpu_ms = (double)(seg_now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0) / 1e6;
    int rc = n->rebase_rc;
    /* release: the result above, for the control thread's acquire; the
     * line below is logged after it, so that whoever reads the line (a
     * test) knows the next request takes the new base */
    atomic_store_explicit(&n->rebase_done, 1, memory_order_release);
    if (!rc)
        log_msg(LOG_INFO, "state snapshot rebased",
                "folded_records=%" PRIu64 " entries=%" PRIu64 " ms=%.1f cpu_ms=%.1f", n->rebase_folded,
                n->rebase_entries, ms, cpu_ms);
    return NULL;
}

/* Control thread: takes a finished rebase's result (wait: waits for one
 * still running): the new base replaces the one it was made from, if that
 * one still serves; a base whose file failed (RK_ECORRUPT) goes. */
static void rebase_collect(struct node *n, int wait)
{
    /* acquire: the thread's result */
    if (!n->rebase_running || (!wait && !atomic_load_explicit(&n->rebase_done, memory_order_acquire)))
        return;
    pthread_join(n->rebase_thread, NULL);
    n->rebase_running = 0;
    if (n->rebase_rc) {
        ckpt_rebase_free(n->rebase);
        n->rebase = NULL;
        log_msg(LOG_INFO, "snapshot: the base cannot be rebased", "error=\"%s\"",
                n->rebase_err[0] ? n->rebase_err : store_strerror(n->rebase_rc));
        if (n->rebase_gen == n->snap_base_gen && n->rebase_rc == RK_ECORRUPT && n->snap_base)
            retire_base(n); /* its file changed: the next request reads the store */
        return;
    }
    if (n->rebase_next && n->rebase_gen == n->snap_base_gen && n->snap_base) {
        /* at the point of the overlay it was made from: the old base's
         * fold, run on since, goes on from there with it */
        ckpt_rebase_adopt_fold(n->rebase, n->rebase_next, n->snap_base);
        retire_base(n);
        n->snap_base = n->rebase_next;
        n->snap_base_gen++;
        atomic_store(&n->snap_fold_seq, ckpt_job_fold_upto(n->snap_base));
    } else {
        ckpt_job_free(n->rebase_next); /* the base it was made from went meanwhile */
    }
    n->rebase_next = NULL;
    ckpt_rebase_free(n->rebase);
    n->rebase = NULL;
}

/* Control thread, after a reply whose overlay made the base due: the
 * rebase begun (ckpt_rebase_begin: the fold's records at that overlay's
 * point) and handed to its thread. */
static void rebase_start(struct node *n)
{
    int rc;

    n->snap_rebase_due = 0;
    if (n->rebase_running)
        return; /* one at a time: the next overlay asks again */
    rc = ckpt_rebase_begin(n->snap_base, &n->rebase);
    if (rc) {
        log_msg(LOG_INFO, "snapshot: the base cannot be rebased", "error=\"%s\"", store_strerror(rc));
        return;
    }
    n->rebase_folded = ckpt_job_fold_records(n->snap_base);
    n->rebase_gen = n->snap_base_gen;
    n->rebase_next = NULL;
    atomic_store_explicit(&n->rebase_done, 0, memory_order_relaxed); /* the thread is not started yet */
    snapshot_path(n, "base", n->rebase_path, sizeof n->rebase_path);
    if (start_thread(&n->rebase_thread, rebase_main, n) != 0) {
        ckpt_rebase_free(n->rebase);
        n->rebase = NULL;
        return;
    }
    n->rebase_running = 1;
}

void snapshot_after_reply(struct node *n)
{
    ckpt_job_free(n->snap_retired);
    n->snap_retired = NULL;
    if (n->snap_base && n->snap_rebase_due)
        rebase_start(n);
}

void snapshot_bases_drop(struct node *n)
{
    rebase_collect(n, 1); /* the rebase thread, if one runs, joined */
    n->snap_rebase_due = 0; /* and none started now */
    snapshot_after_reply(n);
    ckpt_job_free(n->snap_base);
    n->snap_base = NULL;
}

/* Control thread, first in each idle step and request: a lease on a file
 * kept mapped is breaking (node.c: on_lease_break) -- something, an
 * engine through its link, opens it for writing or truncates it, and
 * waits until the lease goes (fs.lease-break-time, 45 s by default; the
 * idle step comes every 100 ms at most).  Every file kept goes, whichever
 * the break is for: a running rebase joined first (it reads the base and
 * the overlay through its own mappings and leases), then the bases freed
 * (ckpt_job_free unmaps, lets go of the lease, closes), and the
 * truncation goes on without a mapping left to fault.  The next request
 * reads the store and makes a new base; a request served meanwhile (the
 * signal came while write_overlay ran) got a good overlay, and its engine
 * asks for a whole snapshot if its base link then changed. */
static void snapshot_leases_broken(struct node *n)
{
    /* relaxed: the flag carries no data; a break that comes after the
     * exchange sets it again and is seen at the next step */
    if (!atomic_exchange_explicit(&node_lease_broken, 0, memory_order_relaxed))
        return;
    log_msg(LOG_INFO, "snapshot: a file kept is opened for writing or truncated, every base goes",
            "had_base=%d rebase_running=%d", n->snap_base != NULL, n->rebase_running);
    rebase_collect(n, 1); /* joined: its mappings go with it (ckpt_rebase_free) */
    if (n->snap_base)
        retire_base(n);
    snapshot_after_reply(n); /* frees the retired base (retire_base: no rebase is due) */
}

/* Whether a primary's snapshot may be an overlay of its base
 * (serve_snapshot): always, unless the test hook RK_TEST_SNAPSHOT_BASE
 * names a file (sys_test_gate) that holds 0 or is missing -- so that a
 * test can compare what a base gives with what the store gives. */
static int base_allowed(void)
{
    const char *gate = getenv("RK_TEST_SNAPSHOT_BASE");

    return !gate || sys_test_gate(gate) != 0;
}

/* Whether the primary's base may not serve a request at journal entry
 * upto with the drain at drained (serve_snapshot says why). */
static int base_stale(struct node *n, uint64_t upto, uint64_t drained)
{
    return n->snap_base_epoch != checkpoint_epoch(n) || n->snap_base_pos + SNAPSHOT_BASE_FOLD_MAX_BYTES < drained ||
           ckpt_job_applied_seq(n->snap_base) > upto || !base_allowed();
}

/* How often snapshot_fold_ahead runs while the journal grows: each step
 * is then what came in this long (2000 records at 100k/s: a millisecond
 * or two of the control thread, which a request arriving meanwhile waits
 * for). */
#define SNAPSHOT_FOLD_STEP_MS 20

/* How far past the last request the fold runs ahead: twice the ring
 * bytes between the last two requests, at least
 * SNAPSHOT_FOLD_AHEAD_MIN_BYTES (0.4 s at 100k records/s), at most what
 * the base may serve.  Requests that come about as often as the last two
 * find the fold ready; the work for one that comes much later is wasted,
 * and this bounds it to about twice the last gap (folding on to the
 * stale bound cost 0.85 s of the control thread's CPU against 0.06 s
 * without folding ahead, with opens 4 s apart at 100k records/s). */
#define SNAPSHOT_FOLD_AHEAD_MIN_BYTES (4u << 20)

static uint64_t fold_ahead_max(const struct node *n)
{
    uint64_t gap2 = 2 * n->snap_req_gap;

    return gap2 < SNAPSHOT_FOLD_AHEAD_MIN_BYTES  ? SNAPSHOT_FOLD_AHEAD_MIN_BYTES
           : gap2 > SNAPSHOT_BASE_FOLD_MAX_BYTES ? SNAPSHOT_BASE_FOLD_MAX_BYTES
                                                 : gap2;
}

/* The base's fold run on ahead of the next request, for as long as the
 * base may serve it and no further than fold_ahead_max past the last
 * request.  A base that may no longer serve goes here, as does the one a
 * rebase replaced: neither waits for the next request to free its file
 * and memory. */
int snapshot_fold_ahead(struct node *n)
{
    char err[512] = "";
    uint64_t upto, drained = atomic_load(&n->drained_pos);
    int rc;

    snapshot_leases_broken(n);
    if (n->role != ROLE_PRIMARY || n->snap_rebase_due)
        return -1;
    rebase_collect(n, 0); /* a new base made meanwhile: its fold is the one to run on */
    pthread_mutex_lock(&n->lock);
    upto = n->journal_seq;
    pthread_mutex_unlock(&n->lock);
    if (n->snap_base && base_stale(n, upto, drained))
        retire_base(n);      /* as the next request would */
    snapshot_after_reply(n); /* frees what rebase_collect or that retired (no rebase is due) */
    if (!n->snap_base || n->snap_base_pos + fold_ahead_max(n) < drained)
        return -1;
    if (upto <= ckpt_job_fold_upto(n->snap_base))
        return -1; /* nothing new: looked at again in 100 ms */
    rc = ckpt_job_fold_ahead(n->snap_base, n->s, upto, err, sizeof err);
    if (rc) {
        /* as a failed overlay: the next request reads the store */
        log_msg(LOG_INFO, "snapshot: the base cannot serve, the store does", "error=\"%s\"",
                err[0] ? err : store_strerror(rc));
        retire_base(n);
        snapshot_after_reply(n); /* frees it */
        return -1;
    }
    atomic_store(&n->snap_fold_seq, ckpt_job_fold_upto(n->snap_base));
    return SNAPSHOT_FOLD_STEP_MS;
}

/* The snapshot failed: logged, kept as the last error, the reply says why. */
static void snapshot_failed(struct node *n, int rc, const char *err, char *out, size_t out_size)
{
    log_msg(LOG_ERROR, "snapshot failed", "error=\"%s\"", err[0] ? err : store_strerror(rc));
    pthread_mutex_lock(&n->lock);
    snprintf(n->last_error, sizeof n->last_error, "%s", err[0] ? err : store_strerror(rc));
    pthread_mutex_unlock(&n->lock);
    snprintf(out, out_size, "error %s", err[0] ? err : store_strerror(rc));
}

/* On the control thread: writes the snapshot file for the request it
 * answers from job (begun by begin_snapshot), at journal entry upto (0:
 * at job's), then the reply.  A job whose entries past it the journal no
 * longer holds (trimmed since it began: RK_ENOTFOUND from
 * ckpt_job_snapshot_at) is replaced by a job begun again, a few times.
 * base_pos (NULL: a standby's) is where the drain was when the request
 * came: the file is then written as a base the node keeps (base-PID-N),
 * which the engine gets a link to, and the next requests get overlays of
 * it (serve_snapshot). */
static void write_snapshot(struct node *n, ckpt_job *job, uint64_t upto, uint64_t t_request, uint64_t t_begun,
                           const uint64_t *base_pos, char *out, size_t out_size)
{
    char path[PATH_MAX + 64], base_path[PATH_MAX + 64], err[512] = "";
    uint64_t n_entries = 0, applied_seq = ckpt_job_applied_seq(job), t0 = now_ns();
    uint64_t cpu0 = seg_now_ns(CLOCK_THREAD_CPUTIME_ID);
    ckpt_job *next = NULL;
    int rc;

    snapshot_path(n, "state", path, sizeof path);
    if (base_pos)
        snapshot_path(n, "base", base_path, sizeof base_path);
    for (int tries = 1;; tries++) {
        err[0] = '\0';
        applied_seq = ckpt_job_applied_seq(job);
        rc = ckpt_job_snapshot_at(job, n->s, upto, base_pos ? base_path : path, &n_entries, base_pos ? &next : NULL,
                                  err, sizeof err);
        ckpt_job_free(job);
        job = NULL;
        pthread_mutex_lock(&n->lock);
        n->n_snap_jobs--; /* the store may go now (a standby's bootstrap: apply_stop) */
        pthread_cond_broadcast(&n->apply_cond);
        pthread_mutex_unlock(&n->lock);
        if (rc != RK_ENOTFOUND || tries == 3)
            break;
        err[0] = '\0';
        rc = ask_apply(n, REQ_SNAPSHOT, 0, &job, &t_begun, err, sizeof err);
        if (rc)
            break;
    }
    if (!rc && base_pos) {
        /* the engine's name for the file: a link to the base kept (the
         * engine unlinks it; the base's own name stays), or the file
         * itself when no base could be made */
        if ((next ? link(base_path, path) : rename(base_path, path)) != 0) {
            rc = errno;
            snprintf(err, sizeof err, "snapshot %.400s: %s", path, strerror(rc));
            ckpt_job_free(next);
            next = NULL;
            unlink(base_path);
        }
    }
    if (rc && sys_io_failed())
        fatal("snapshot failed: a failed write or fsync is never retried", err[0] ? err : store_strerror(rc));
    if (rc) {
        snapshot_failed(n, rc, err, out, out_size);
        return;
    }
    if (next) {
        if (n->snap_base)
            retire_base(n);
        n->snap_base = next;
        n->snap_base_gen++;
        n->snap_base_pos = *base_pos;
        n->snap_base_epoch = checkpoint_epoch(n);
        n->snap_rebase_due = 0;
    }
    /* where an rk_state_open's time goes: drain and apply reaching its
     * point (wait), the copy (export; cpu: of it, this thread's CPU time,
     * the rest waiting for a CPU or the disk); the engine's load is its
     * own */
    log_msg(LOG_INFO, "state snapshot served",
            "seq=%" PRIu64 " applied_seq=%" PRIu64 " folded=%" PRIu64 " entries=%" PRIu64
            " from=store wait_ms=%.1f export_ms=%.1f cpu_ms=%.1f",
            upto > applied_seq ? upto : applied_seq, applied_seq, upto > applied_seq ? upto - applied_seq : 0,
            n_entries, (double)(t_begun - t_request) / 1e6, (double)(now_ns() - t0) / 1e6,
            (double)(seg_now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0) / 1e6);
    snprintf(out, out_size, "ok %s", path);
}

/* On the control thread: the overlay of the primary's base at journal
 * entry upto (ckpt_job_overlay_at), and a link to the base's file, named
 * in the overlay, for the engine (link(2): the engine opens and unlinks it
 * as it does the overlay; the base's own name stays the node's).  0 and
 * the reply in out, or non-zero: the base goes (the caller reads the
 * store).  t_request: when the request came (wait_ms: the drain reaching
 * its point, answer_request, and what ran before this). */
static int write_overlay(struct node *n, uint64_t upto, const uint64_t *drained, uint64_t t_request, char *out,
                         size_t out_size)
{
    ckpt_job *base = n->snap_base;
    char path[PATH_MAX + 64], link_path[PATH_MAX + 80], err[512] = "";
    const char *link_name;
    uint64_t n_records = 0, t0 = now_ns(), cpu0 = seg_now_ns(CLOCK_THREAD_CPUTIME_ID);
    int rc;

    snapshot_path(n, "state", path, sizeof path);
    snprintf(link_path, sizeof link_path, "%.*s-base" SNAP_SUFFIX, (int)(strlen(path) - strlen(SNAP_SUFFIX)), path);
    link_name = strrchr(link_path, '/') + 1;
    rc = ckpt_job_overlay_at(base, n->s, upto, path, link_name, &n_records, err, sizeof err);
    if (rc && sys_io_failed())
        fatal("snapshot failed: a failed write or fsync is never retried", err[0] ? err : store_strerror(rc));
    if (!rc && link(ckpt_job_base_path(base), link_path) != 0) {
        rc = errno;
        snprintf(err, sizeof err, "snapshot base link %.400s: %s", link_path, strerror(rc));
        unlink(path);
    }
    if (rc) {
        log_msg(LOG_INFO, "snapshot: the base cannot serve, the store does", "error=\"%s\"",
                err[0] ? err : store_strerror(rc));
        retire_base(n);
        return rc;
    }
    n->snap_base_pos = *drained;
    atomic_store(&n->snap_fold_seq, ckpt_job_fold_upto(base));
    if (ckpt_job_fold_records(base) > ckpt_job_base_entries(base) / 8 &&
        ckpt_job_fold_records(base) >= REBASE_MIN_RECORDS)
        n->snap_rebase_due = 1; /* after the reply: snapshot_after_reply */
    log_msg(LOG_INFO, "state snapshot served",
            "seq=%" PRIu64 " applied_seq=%" PRIu64 " folded=%" PRIu64 " entries=%" PRIu64
            " from=overlay base_entries=%" PRIu64 " fold_records=%" PRIu64
            " wait_ms=%.1f export_ms=%.1f cpu_ms=%.1f",
            upto, ckpt_job_applied_seq(base), upto - ckpt_job_applied_seq(base), n_records,
            ckpt_job_base_entries(base), ckpt_job_fold_records(base), (double)(t0 - t_request) / 1e6,
            (double)(now_ns() - t0) / 1e6,
            (double)(seg_now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0) / 1e6);
    snprintf(out, out_size, "ok %s", path);
    return 0;
}

/* On the control thread, a primary's snapshot request: served at the
 * journal entry that held everything written before the request
 * (answer_request saw the drain there) whether apply has reached it or
 * not.  As an overlay of the base the node keeps (the whole snapshot it
 * served first), when there is one of this epoch and the entries since
 * the last request are few: the entries since the base taken through
 * apply's rules (its fold, run on from the last request's point), a
 * file of what changed, no copy of the state (issue 9.5: rewriting the
 * whole state, 50 MB at 0.55 M entries, was most of the node's cost of
 * an open).  Otherwise (whole: asked for one) a whole snapshot from a job
 * the apply thread begins at its next group boundary (ask_apply), with
 * the entries from there to the request's point merged in the same way,
 * kept as the next base; reading every table of the store that way took
 * 80-250 ms at 0.5-0.85 M entries.  Waiting for apply to reach the
 * request's point instead, an open waited for apply's lag: seconds under
 * a load apply barely keeps up with. */
static void serve_snapshot(struct node *n, int whole, uint64_t t_request, char *out, size_t out_size)
{
    ckpt_job *job = NULL;
    char err[512] = "";
    uint64_t upto, t_begun = t_request, drained = atomic_load(&n->drained_pos);

    /* how far the drain went since the last request: how far the fold
     * runs ahead of the next (fold_ahead_max) */
    n->snap_req_gap = n->snap_req_pos ? drained - n->snap_req_pos : 0;
    n->snap_req_pos = drained;

    snapshot_leases_broken(n); /* none linked for this engine if one is going */
    rebase_collect(n, 0);      /* a new base made meanwhile serves from now on */
    pthread_mutex_lock(&n->lock);
    upto = n->journal_seq;
    pthread_mutex_unlock(&n->lock);
    /* a base's fold is run on by up to SNAPSHOT_BASE_FOLD_MAX_BYTES of
     * ring frames a request: more than a job from apply (below), which
     * holds a snapshot transaction and the pages apply changes meanwhile,
     * since a base holds neither; at 4 MiB, opens that took longer than
     * the ring took to fill that much (0.4 s at 100k records/s) lost their
     * base and waited for apply.  Further, or of another epoch, it goes */
    if (n->snap_base && whole)
        log_msg(LOG_INFO, "snapshot: a whole one asked for, the base goes",
                "reason=\"an engine found it changed or gone\"");
    if (n->snap_base && (whole || base_stale(n, upto, drained)))
        retire_base(n);
    if (n->snap_base && write_overlay(n, upto, &drained, t_request, out, out_size) == 0)
        return;
    pthread_mutex_lock(&n->lock);
    /* what is folded is bounded (SNAPSHOT_FOLD_MAX_BYTES of ring frames
     * past apply): further behind, apply is waited for until it is that
     * close -- never longer than serving at apply's own boundary would
     * take.  A large fold holds the snapshot transaction long and takes
     * the CPU apply needs: on 2 shared cores at load 17-19, unbounded
     * folds of 0.5 M records slowed apply until the drain paused (the
     * bench's durable rate fell from 100k to 39-48k/s). */
    while (n->applied_seq < upto && n->applied_pos + SNAPSHOT_FOLD_MAX_BYTES < drained && !atomic_load(&n->stop))
        pthread_cond_wait(&n->apply_cond, &n->lock);
    pthread_mutex_unlock(&n->lock);
    if (ask_apply(n, REQ_SNAPSHOT, 0, &job, &t_begun, err, sizeof err) != 0) {
        snprintf(out, out_size, "error %s", err);
        return;
    }
    write_snapshot(n, job, upto, t_request, t_begun, &drained, out, out_size);
}

void serve_request(struct node *n, int ask, uint64_t t_request, char *out, size_t out_size)
{
    uint64_t t_begun = 0;
    ckpt_job *job = NULL;
    char res[PATH_MAX];

    if (n->role == ROLE_PRIMARY && (ask == REQ_SNAPSHOT || ask == REQ_SNAPSHOT_WHOLE)) {
        serve_snapshot(n, ask == REQ_SNAPSHOT_WHOLE, t_request, out, out_size);
        return;
    }
    if (ask == REQ_SNAPSHOT_WHOLE)
        ask = REQ_SNAPSHOT; /* a standby's snapshots are whole */
    if (ask_apply(n, ask, WANT_ROLE_SEQ, &job, &t_begun, res, sizeof res) != 0)
        snprintf(out, out_size, "error %s", res);
    else if (job)
        write_snapshot(n, job, 0, t_request, t_begun, NULL, out, out_size);
    else
        snprintf(out, out_size, "ok %s", res);
}

/* ------------------------------------------------------------ start */

/* Snapshots are unlinked by the engine that opens them; one whose engine
 * died before that, or that an earlier run was writing, is removed here
 * once it is a minute old.  An earlier run's bases (base-*: no engine
 * opens them by that name, they get links) are removed at any age. */
static void remove_old_snapshots(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    time_t now = time(NULL);

    while (d && (de = readdir(d)) != NULL) {
        char path[PATH_MAX + 300];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
            (now - st.st_mtime > 60 || strncmp(de->d_name, "base-", 5) == 0))
            unlink(path);
    }
    if (d)
        closedir(d);
}

/* A checkpoint being written when a node was killed leaves hidden temp
 * files (ckpt_is_temp_name) in checkpoints/; they are never listed or
 * taken as a checkpoint, and are removed here (this node holds the data
 * directory's lock, so no one else writes there).  A standby's partial
 * download (.NAME.part) is not one: its bootstrap resumes it. */
static void remove_checkpoint_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    while (d && (de = readdir(d)) != NULL) {
        char path[PATH_MAX + 300];
        if (!ckpt_is_temp_name(de->d_name))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (sys_unlink(path) == 0)
            log_msg(LOG_INFO, "unfinished checkpoint removed", "file=\"%s\"", path);
    }
    if (d)
        closedir(d);
}

void checkpoint_dirs_prepare(struct node *n)
{
    char path[PATH_MAX + 32];

    snprintf(path, sizeof path, "%s/snapshots", n->c->data_dir);
    mkdir(path, 0700);
    remove_old_snapshots(path);
    snprintf(path, sizeof path, "%s/checkpoints", n->c->data_dir);
    remove_checkpoint_temps(path);
}

void checkpoint_find_newest(struct node *n)
{
    char **paths = NULL, path[PATH_MAX + 32], err[512];
    size_t n_paths = 0;
    struct ckpt_info info = {0};

    snprintf(path, sizeof path, "%s/checkpoints", n->c->data_dir);
    pthread_mutex_lock(&n->lock);
    n->ckpt_seq = 0;
    n->ckpt_path[0] = '\0';
    if (ckpt_list(path, &paths, &n_paths) == 0 && n_paths &&
        ckpt_read_info(paths[0], &info, err, sizeof err) == 0) {
        n->ckpt_seq = info.journal_seq;
        snprintf(n->ckpt_path, sizeof n->ckpt_path, "%s", paths[0]);
    }
    pthread_mutex_unlock(&n->lock);
    ckpt_info_free(&info);
    ckpt_list_free(paths, n_paths);
}

int checkpoint_status(struct node *n, json_t *st)
{
    uint64_t ckpt_seq;
    int ckpt_busy;

    pthread_mutex_lock(&n->lock);
    ckpt_seq = n->ckpt_seq;
    ckpt_busy = n->ckpt_busy || n->ckpt_pending; /* being written, or due and about to be */
    pthread_mutex_unlock(&n->lock);
    return json_object_set_new(st, "checkpoint_seq", json_uint(ckpt_seq)) ||
           json_object_set_new(st, "checkpoints_taken", json_uint(atomic_load(&n->n_checkpoints))) ||
           json_object_set_new(st, "checkpoint_running", json_boolean(ckpt_busy)) ||
           json_object_set_new(st, "journal_trimmed_below", json_uint(atomic_load(&n->journal_floor))) ||
           json_object_set_new(st, "snapshot_fold_seq", json_uint(atomic_load(&n->snap_fold_seq)));
}
