/* standby.c -- a standby's role in the node process (node.c): the main
 * thread follows the primary (repl_standby_step, replicator/standby.c:
 * entries stored, acknowledged, fetched, bootstrap) and rebuilds the
 * status text after each step; the apply thread applies what the standby
 * made durable (standby_durable), one entry at a time, at NODE_APPLY_NICE,
 * and is stopped while a bootstrap replaces the store (standby_apply_stop),
 * then started again on the new one (apply_start).
 *
 *   main thread                              apply thread
 *   repl_standby_step: store, ACK  ------->  applier_run (one entry)
 *     standby_durable(seq)                   repl_standby_applied(seq, digest,
 *   ACK: durable_seq, applied_seq,             read_lsn, rate): its rate, for
 *     apply_lag_ms <-----------------------    the lag in time the ACK reports
 *   bootstrap: standby_apply_stop (joins)    ends; apply_start makes a new one
 *   SIGTERM: apply_finish (waits; a second   ends once all durable is applied
 *     signal: ends after the entry in hand)
 *                                            between entries: checkpoints (the
 *                                            checkpoint threads, node/checkpoint.c,
 *                                            run while apply runs), snapshot and
 *                                            checkpoint requests
 *
 * Threads: main, apply and the control thread (node.c); the apply state
 * (journal_seq: what is durable, applied_seq, am, apply_quit, apply_done)
 * and the status text are under `lock`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "node/internal.h"
#include "node/node.h"
#include "persist/apply.h"
#include "persist/log.h"
#include "persist/store.h"
#include "replicator/replicator.h"

/* A standby's apply thread runs this much nicer than the process: on a
 * busy host storing and acknowledging come first.  Its apply lag holds
 * the primary up only with min_replicas > 0, past [apply] max_lag_ms of
 * work, as the primary's own apply lag does (issue 13.7: its ACKs report
 * it; replicator/primary.c update_apply_hold). */
#define NODE_APPLY_NICE 5

/* The main loop rebuilds the status at most this often while entries
 * stream in, and within about this long after the last change.  It was
 * rebuilt after every step, i.e. after every journal entry: a listing of
 * set-aside/ and a few dozen JSON allocations each time (issue 13: server
 * CPU per record at batches of 100). */
#define STATUS_EVERY_MS 10

/* Makes the calling thread delta nicer than the process (best effort: a
 * refusal leaves it at the process's priority). */
static void node_thread_nice(int delta)
{
    errno = 0;
    int now = getpriority(PRIO_PROCESS, 0);
    if (errno == 0)
        setpriority(PRIO_PROCESS, (id_t)gettid(), now + delta); /* Linux: per thread */
}

/* A standby's apply: one entry at a time up to what is durable
 * (journal_seq, which the standby moves: standby_durable), the digest
 * after each handed to the standby for its comparison with the primary's;
 * at NODE_APPLY_NICE.  Between entries (group boundaries of what it
 * applied), checkpoints on the primary's triggers ([checkpoint]
 * every_seconds, every_records, every_heights: the same entries as the
 * primary's, since every_heights stops apply in the same entry), and the
 * snapshot and checkpoint requests (serve_request: at once, at what is
 * applied).  Unlike a primary's, its clean stop takes no last checkpoint:
 * its journal (which that would trim) is what a rejoin after a failover
 * rebuilds from.  Stops when told (apply_quit); a failure stops the node (apply_failed). */
void apply_standby(struct node *n)
{
    struct checkpoint_clock ck;
    char err[512] = "";
    /* when the last entry applied ended, while apply has had entries to
     * apply since (0: it waited for one, or was held) */
    uint64_t busy_end_ns = 0;

    /* a test hook, as on a primary: apply sleeps this long before each
     * entry, so that it runs behind the journal under any load (test_repl) */
    const char *slow = getenv("RK_TEST_APPLY_SLOW_MS");
    unsigned slow_ms = slow ? (unsigned)strtoul(slow, NULL, 10) : 0;

    node_thread_nice(NODE_APPLY_NICE);
    checkpoint_clock_start(n, &ck);
    pthread_mutex_lock(&n->lock);
    for (;;) {
        uint64_t applied = n->applied_seq;
        int ask = n->wanted && applied >= n->wanted_seq && (n->wanted == REQ_SNAPSHOT || !n->ckpt_busy)
                      ? n->wanted
                      : 0;
        int due = !n->ckpt_busy && (n->ckpt_pending || (checkpoint_time_due(n, &ck) && applied != n->ckpt_seq));
        if (n->apply_quit == 1 || (n->apply_quit == 2 && applied >= n->journal_seq))
            break;
        if (ask || due) {
            pthread_mutex_unlock(&n->lock);
            if (ask == REQ_SNAPSHOT)
                begin_snapshot(n);
            else if (start_checkpoint(n, ask == REQ_CHECKPOINT) == 0)
                checkpoint_clock_reset(n, &ck);
            pthread_mutex_lock(&n->lock);
            continue;
        }
        if (applied >= n->journal_seq) {
            busy_end_ns = 0;
            struct timespec ts = node_deadline_ms(1000); /* look at the checkpoint timer now and then */
            pthread_cond_timedwait(&n->journal_cond, &n->lock, &ts);
            continue;
        }
        pthread_mutex_unlock(&n->lock);
        if (n->apply_gate && applied + 1 > sys_test_gate(n->apply_gate)) {
            /* test hook: held until the gate lets the entry through or a
             * stop at once (both looked at again every millisecond) */
            busy_end_ns = 0;
            usleep(1000);
            pthread_mutex_lock(&n->lock);
            continue;
        }
        /* the entry's time, from the end of the one before while apply
         * had work since (what it does between entries -- checkpoints
         * begun, requests -- is apply's work too: a clean stop or a
         * promotion waits for it), else from its start, to its commit, and
         * the ring bytes it covered give apply's rate (as a primary's
         * apply_rate): the ACK reports the standby's apply lag in time at
         * that rate */
        uint64_t t_step = busy_end_ns ? busy_end_ns : now_ns(), read_before = applier_read_lsn(n->a);
        if (slow_ms)
            usleep(slow_ms * 1000u);
        int rc = applier_run(n->a, applied + 1, STORE_TXN_RECORDS, err, sizeof err);
        struct apply_meta am = applier_meta(n->a);
        uint64_t read_after = applier_read_lsn(n->a), rate = 0;
        if (rc == 0) {
            pthread_mutex_lock(&n->lock);
            busy_end_ns = now_ns();
            if (read_before && read_after > read_before) /* 0: no entry read since the applier opened */
                apply_rate_update(n, read_after - read_before, busy_end_ns - t_step);
            rate = n->apply_rate;
            pthread_mutex_unlock(&n->lock);
            repl_standby_applied(n->standby, am.applied_seq, am.digest, read_after, rate);
        }
        if (rc == 0 && applier_height_crossed(n->a)) {
            /* every_heights: this entry, as on the primary, even if the
             * one before is still being written */
            wait_checkpoint_idle(n);
            if (start_checkpoint(n, 0) == 0)
                checkpoint_clock_reset(n, &ck);
        }
        pthread_mutex_lock(&n->lock);
        if (rc) {
            log_msg(LOG_ERROR, "apply failed", "error=\"%s\" action=exit", err[0] ? err : store_strerror(rc));
            atomic_store(&n->apply_failed, 1);
            break;
        }
        n->am = am;
        n->applied_seq = am.applied_seq;
        n->digest_at = am.digest;
        if (checkpoint_due(n, &ck, &am))
            n->ckpt_pending = 1;
        pthread_cond_broadcast(&n->apply_cond);
    }
    n->apply_done = 1;
    pthread_cond_broadcast(&n->apply_cond); /* apply_finish waits for it */
    pthread_mutex_unlock(&n->lock);
}

/* Starts a standby's apply thread, and the checkpoint threads, on the
 * standby's current store and applier (main thread).  0 or an errno
 * value. */
static int apply_start(struct node *n)
{
    int rc;

    if (n->apply_running)
        return 0;
    pthread_mutex_lock(&n->lock);
    n->s = repl_standby_store(n->standby);
    n->a = repl_standby_applier(n->standby);
    n->am = applier_meta(n->a);
    n->applied_seq = n->am.applied_seq;
    n->digest_at = n->am.digest;
    n->journal_seq = repl_standby_journal_seq(n->standby);
    n->apply_quit = 0;
    n->apply_done = 0;
    pthread_mutex_unlock(&n->lock);
    checkpoint_find_newest(n); /* a bootstrap brought one */
    rc = checkpoint_threads_start(n);
    if (rc == 0) {
        rc = start_thread(&n->apply_thread, apply_main, n);
        if (rc)
            checkpoint_threads_stop(n);
    }
    if (rc == 0)
        n->apply_running = 1;
    else
        log_msg(LOG_ERROR, "cannot start the apply thread", "error=\"%s\"", strerror(rc));
    return rc;
}

/* Stops a standby's apply thread: at once (finish 0, after the entry in
 * hand) or once it has applied all that is durable (finish 1); then, the
 * snapshots it began written (they read the store) and the checkpoint in
 * hand written, the checkpoint threads: a bootstrap may replace the store
 * next. */
static void apply_stop(struct node *n, int finish)
{
    if (!n->apply_running)
        return;
    pthread_mutex_lock(&n->lock);
    n->apply_quit = finish ? 2 : 1;
    pthread_cond_broadcast(&n->journal_cond);
    pthread_mutex_unlock(&n->lock);
    pthread_join(n->apply_thread, NULL);
    pthread_mutex_lock(&n->lock);
    while (n->n_snap_jobs > 0)
        pthread_cond_wait(&n->apply_cond, &n->lock);
    pthread_mutex_unlock(&n->lock);
    checkpoint_threads_stop(n);
    n->apply_running = 0;
}

/* A standby's clean stop (main thread): everything durable is applied
 * first, as on a primary; apply may lag far behind a standby's journal, so
 * progress is logged, and a second SIGTERM/SIGINT stops apply after the
 * entry in hand (the rest is applied at the next start).  Not during a
 * bootstrap: there is nothing whole to apply to. */
static void apply_finish(struct node *n)
{
    uint64_t last_log = 0;

    if (repl_standby_bootstrapping(n->standby) || (!n->apply_running && apply_start(n) != 0))
        return;
    pthread_mutex_lock(&n->lock);
    n->apply_quit = 2;
    pthread_cond_broadcast(&n->journal_cond);
    while (!n->apply_done) {
        uint64_t now = now_ns();
        if (node_n_signals > 1 && n->apply_quit == 2) { /* the first one stopped the standby */
            n->apply_quit = 1;
            pthread_cond_broadcast(&n->journal_cond);
            log_msg(LOG_WARN, "stopping before all that is journaled is applied (a second signal)",
                    "applied_seq=%" PRIu64 " journal_seq=%" PRIu64, n->am.applied_seq, n->journal_seq);
        } else if (now - last_log >= 5000000000ull && n->apply_quit == 2) {
            if (last_log)
                log_msg(LOG_INFO, "applying what is journaled before stopping",
                        "applied_seq=%" PRIu64 " journal_seq=%" PRIu64 " hint=\"a second SIGTERM stops now\"",
                        n->am.applied_seq, n->journal_seq);
            last_log = now;
        }
        /* woken when apply ends (a promotion waits for that, not for a
         * poll's interval); every 20 ms for a second signal */
        struct timespec ts = node_deadline_ms(20);
        pthread_cond_timedwait(&n->apply_cond, &n->lock, &ts);
    }
    pthread_mutex_unlock(&n->lock);
    apply_stop(n, 1); /* joins */
}

/* What a standby's apply has done (main thread). */
struct apply_meta standby_applied(struct node *n)
{
    struct apply_meta am = {0};
    applier *a = repl_standby_applier(n->standby);

    if (!n->apply_running)
        return a ? applier_meta(a) : am; /* stopped: the applier is the main thread's */
    pthread_mutex_lock(&n->lock);
    am = n->am;
    pthread_mutex_unlock(&n->lock);
    return am;
}

/* ------------------------------------------------------------ standby */

/* What the standby holds, for its member record in etcd ([ha]; main
 * thread). */
static void standby_progress(struct node *n)
{
    if (n->standby && repl_standby_store(n->standby))
        ha_standby_progress(node_ha, repl_standby_store(n->standby), repl_standby_journal_seq(n->standby),
                            repl_standby_epoch(n->standby), !repl_standby_bootstrapping(n->standby));
}

/* The standby's entries up to seq are durable: apply may take them
 * (repl_standby_host, main thread). */
static void standby_durable(void *arg, uint64_t seq)
{
    struct node *n = arg;

    pthread_mutex_lock(&n->lock);
    n->journal_seq = seq;
    pthread_cond_broadcast(&n->journal_cond);
    pthread_mutex_unlock(&n->lock);
}

/* An ACK is about to say what the standby holds (repl_standby_host, main
 * thread): its member record reports it first, so a record read after
 * the leader key went covers every entry this standby acknowledged (Q3a,
 * node/ha.c).  Told after the step, as it was, a record put between the
 * ACK and the step's end could miss entries the primary acknowledged
 * RK_REPLICATED on this standby's word. */
static void standby_acking(void *arg)
{
    standby_progress(arg);
}

/* A bootstrap replaces the store: apply stops first (repl_standby_host,
 * main thread); the main loop starts it again. */
static void standby_apply_stop(void *arg)
{
    apply_stop(arg, 0);
}

/* Builds the standby's status and keeps it as text for the control
 * thread (main thread); out of memory: the previous status stays. */
static void standby_status(struct node *n)
{
    json_t *st = status_object(n);
    char *text = st ? json_dumps(st, JSON_COMPACT) : NULL, *old = NULL;

    if (st)
        metrics_standby_publish(&n->m, st);
    json_decref(st);
    if (!text)
        return;
    pthread_mutex_lock(&n->lock);
    old = n->status_text;
    n->status_text = text;
    pthread_mutex_unlock(&n->lock);
    free(old);
}

/* "promote" on a standby's control thread: accepted when the standby can
 * become a primary (its configuration names a ring and checks as a
 * primary's; it is not in the middle of a bootstrap, which leaves no whole
 * state) and, unless force, no other standby acknowledged more than it
 * holds according to the primary's last heartbeat (promoting it would
 * drop what that one holds, acknowledged RK_REPLICATED maybe; with no
 * heartbeat heard since the standby started or changed primaries, the
 * reply says that this is unknown); the main
 * loop then ends and run_standby returns NODE_PROMOTE.  Either reply
 * gives what it holds against what was last acknowledged.  The reply
 * comes at once: `ringkeep promote` waits for the status to say primary. */
void standby_promote_answer(struct node *n, int force, char *reply, size_t reply_size)
{
    struct node_config *pc = malloc(sizeof *pc);
    struct repl_promote_view v;
    char err[1024] = "", held[256];

    repl_standby_promote_view(n->standby, &v);
    if (v.heartbeat_epoch == 0)
        snprintf(held, sizeof held,
                 "this standby holds journal_seq %" PRIu64
                 "; no heartbeat from a primary since it started or changed primaries: what other standbys "
                 "acknowledged is unknown",
                 v.held_seq);
    else if (v.other_id[0])
        snprintf(held, sizeof held,
                 "this standby holds journal_seq %" PRIu64 "; %s acknowledged %" PRIu64
                 " (the primary's last heartbeat, epoch %" PRIu64 ")",
                 v.held_seq, v.other_id, v.other_acked, v.heartbeat_epoch);
    else
        snprintf(held, sizeof held,
                 "this standby holds journal_seq %" PRIu64
                 "; no other standby in the primary's last heartbeat",
                 v.held_seq);
    if (!pc)
        snprintf(reply, reply_size, "error out of memory");
    else if (node_promote_config(n->c, pc, err, sizeof err) != 0)
        snprintf(reply, reply_size, "error cannot promote: %s", err);
    else if (atomic_load(&n->bootstrapping)) /* the main thread's, seen here through the atomic */
        snprintf(reply, reply_size, "error cannot promote: the standby is bootstrapping from a checkpoint "
                                    "(no whole state yet); try again once it follows");
    else if (!force && n->c->ha_etcd[0])
        snprintf(reply, reply_size,
                 "error cannot promote: [ha] is set, etcd elects the primary (a promotion outside etcd may "
                 "begin the epoch another node is elected in); stop the primary or use --force");
    else if (!force && v.other_acked > v.held_seq)
        snprintf(reply, reply_size,
                 "error cannot promote: another standby acknowledged more than this one holds: %s; promote "
                 "that one, or wait for this one to catch up, or --force (the entries after %" PRIu64
                 " are then lost to the new epoch)",
                 held, v.held_seq);
    else if (atomic_exchange(&n->promote, 1))
        snprintf(reply, reply_size, "ok promotion under way (%s)", held);
    else {
        snprintf(reply, reply_size, "ok promoting from epoch %" PRIu64 " (%s)",
                 repl_standby_epoch(n->standby), held);
        repl_standby_wake(n->standby); /* the main loop sees the flag now, not after its step's wait */
    }
    free(pc);
}

/* The follow loop's tick for systemd (notify.h): the watchdog, fed while
 * apply keeps up (a bootstrap stops apply on purpose), and the STATUS
 * line. */
static void standby_notify_tick(struct node *n)
{
    uint64_t journal_seq = repl_standby_journal_seq(n->standby), applied_seq;
    int bootstrapping = repl_standby_bootstrapping(n->standby);

    pthread_mutex_lock(&n->lock);
    applied_seq = n->applied_seq;
    pthread_mutex_unlock(&n->lock);
    notify_tick(&n->notify, journal_seq, bootstrapping ? journal_seq : applied_seq,
                "standby: epoch %" PRIu64 ", following %s, %sjournal seq %" PRIu64 ", applied seq %" PRIu64,
                repl_standby_epoch(n->standby), n->c->repl_primary_serve,
                bootstrapping ? "bootstrapping from a checkpoint, " : "", journal_seq, applied_seq);
}

/* A standby: the main thread follows the primary (repl_standby_step), the
 * apply thread applies what is durable; a bootstrap stops apply and the
 * loop starts it again on the new store.  Asked to promote, it stops
 * following, journals what it received, applies everything journaled and
 * returns NODE_PROMOTE with its store and applier in *out, open. */
int run_standby(const struct node_config *c, struct node_handover *out)
{
    struct node n = {.c = c, .role = ROLE_STANDBY};
    struct repl_standby_host host = {
        .arg = &n, .durable = standby_durable, .apply_stop = standby_apply_stop, .acking = standby_acking};
    pthread_t control_thread;
    int have_control = 0, stopped = 0, status = 1, status_owed = 0;
    uint64_t status_ns = 0;

    node_begin(&n);
    n.apply_gate = getenv("RK_TEST_APPLY_GATE");
    if (repl_standby_open(c, &host, &n.standby) != 0)
        goto out;
    checkpoint_dirs_prepare(&n);
    ha_attach_standby(node_ha, &n);
    standby_status(&n);
    have_control = control_start(&n, &control_thread) == 0;
    if (!have_control || metrics_start(&n, &n.metrics) != 0)
        goto out;
    repl_standby_start(n.standby);
    notify_ready(&n.notify, "standby: following %s", c->repl_primary_serve);
    while (!node_signal && !atomic_load(&n.apply_failed) &&
           !(atomic_load(&n.promote) && !repl_standby_bootstrapping(n.standby))) {
        if (!repl_standby_bootstrapping(n.standby) && !n.apply_running && apply_start(&n) != 0) {
            stopped = 1;
            break;
        }
        /* a status owed is built after this step's wait at the latest */
        if (repl_standby_step(n.standby, status_owed ? STATUS_EVERY_MS : 50) != 0) {
            stopped = 1;
            break;
        }
        atomic_store(&n.bootstrapping, repl_standby_bootstrapping(n.standby));
        standby_progress(&n); /* what a step changed without an ACK (a bootstrap begun, an epoch) */
        status_owed = 1;
        if (now_ns() - status_ns >= STATUS_EVERY_MS * 1000000ull) {
            standby_status(&n);
            status_ns = now_ns();
            status_owed = 0;
        }
        if (notify_due(&n.notify))
            standby_notify_tick(&n);
    }
    if (node_signal)
        notify_stopping(&n.notify, "stopping: applying what is journaled (journal seq %" PRIu64 ")",
                        repl_standby_journal_seq(n.standby));
    if ((node_signal || atomic_load(&n.promote)) && !stopped && !atomic_load(&n.apply_failed)) {
        if (!node_signal)
            log_msg(LOG_INFO, "promoting: applying what is journaled", "journal_seq=%" PRIu64,
                    repl_standby_journal_seq(n.standby));
        repl_standby_flush(n.standby);
        apply_finish(&n); /* all that is durable is applied (unless signalled twice) */
        status = atomic_load(&n.apply_failed) ? 1 : node_signal ? 0 : NODE_PROMOTE;
        log_msg(LOG_INFO, status == NODE_PROMOTE ? "standby stopped following" : "standby stopped",
                "journal_seq=%" PRIu64 " applied_seq=%" PRIu64, repl_standby_journal_seq(n.standby),
                applier_meta(repl_standby_applier(n.standby)).applied_seq);
    }
out:
    ha_detach(node_ha);
    metrics_stop(n.metrics);
    if (n.standby)
        apply_stop(&n, 0);
    atomic_store(&n.stop, 1);
    pthread_mutex_lock(&n.lock);
    pthread_cond_broadcast(&n.apply_cond); /* a request waiting is told the node stops */
    pthread_mutex_unlock(&n.lock);
    if (have_control)
        pthread_join(control_thread, NULL);
    if (status == NODE_PROMOTE)
        repl_standby_hand_over(n.standby, &out->s, &out->a);
    repl_standby_close(n.standby);
    pthread_cond_destroy(&n.ckpt_cond);
    pthread_cond_destroy(&n.apply_cond);
    pthread_cond_destroy(&n.journal_cond);
    pthread_mutex_destroy(&n.lock);
    free(n.status_text);
    return status;
}
