/* primary.c -- a primary's role in the node process (node.c): drains the
 * ring into the journal, applies the journal to the state tables, takes
 * checkpoints, serves snapshot and checkpoint requests.
 *
 *   main thread (drain)            apply thread              control thread (node.c)
 *   ring_next -> batch             waits for journal_seq     ZMQ REP on
 *   journal append (sync)  ---->   applier_run               ipc://DIR/control.sock
 *   ring_set_durable, release      snapshots on request <--- "snapshot", "status",
 *   pauses when apply lags  <----  applied_seq               "checkpoint"
 *                                  checkpoint triggers:
 *                                  snapshot txn begun  ---->  checkpoint thread: writes
 *                                                             the file from it, retention,
 *                                                             journal and BDB log trimming
 *   log checkpoint thread: every LOG_CHECKPOINT_MS, a BDB checkpoint if
 *   LOG_CHECKPOINT_KB of log were written since the last (bounds recovery)
 * The checkpoint and snapshot parts are node/checkpoint.c's, shared with a
 * standby's apply.
 * With a replicator (repl_node_run: [replication] publish set), the drain
 * and checkpoint threads also wake the replicator's thread
 * (replicator/primary.c, repl_primary_*), which owns the ZeroMQ sockets and
 * reads what it publishes back from the journal.
 *
 * Drain never waits on apply except when apply is more than
 * max_lag_entries, max_lag_bytes or max_lag_ms behind, or, with
 * min_replicas > 0, the standbys' apply more than max_lag_ms
 * (apply_behind): then it stops taking frames from the ring, and the
 * ring's back-pressure reaches the engines.  A failed journal write (fsync
 * included) or apply is fatal: logged, then _exit(1) at once, so that
 * nothing after it is acknowledged; the next start recovers (DB_RECOVER)
 * and carries on from the journal.
 *
 * Exactly once: a journal entry records next_lsn, the ring position just
 * past its batch (never past a frame the drain read but could not add:
 * journal_batch); at start the node skips every ring frame below the last
 * entry's next_lsn, so a frame journaled before a crash is not journaled
 * again, and a frame the crash cut off is still in the ring (head moves
 * only after the journal commit).
 *
 * Threads: the five above (and the replicator's); shared counters are
 * atomics, the journal/apply and apply/checkpoint hand-offs are under
 * `lock`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "node/client.h"
#include "node/internal.h"
#include "node/node.h"
#include "persist/apply.h"
#include "persist/checkpoint.h"
#include "persist/crashsim.h"
#include "persist/json_bytes.h"
#include "persist/log.h"
#include "persist/store.h"
#include "replicator/replicator.h"
#include "shm/ring.h"

#define FENCED_KEY STORE_OLD_FENCED_KEY /* read and cleared as well (store_open copies it beside db/) */
#define APPLY_STEP_ENTRIES 16  /* apply publishes its progress at least this often */
#define APPLY_LAG_MIN_BYTES (64u << 10) /* max_lag_ms never holds apply closer than this (apply_behind) */

/* ------------------------------------------------------------ meta */

static int meta_read(store *s, const char *key, void *val, size_t len)
{
    DB *meta = store_meta(s);
    DBT k = {.data = (void *)key, .size = (u_int32_t)strlen(key)};
    DBT v = {.data = val, .ulen = (u_int32_t)len, .flags = DB_DBT_USERMEM};
    int rc = meta->get(meta, NULL, &k, &v, 0);

    if (rc == DB_NOTFOUND)
        return RK_ENOTFOUND;
    return rc == 0 && v.size != len ? RK_ECORRUPT : rc;
}

static int meta_write(store *s, const char *key, const void *val, size_t len)
{
    DB *meta = store_meta(s);
    DBT k = {.data = (void *)key, .size = (u_int32_t)strlen(key)};
    DBT v = {.data = (void *)val, .size = (u_int32_t)len};

    /* DB_AUTO_COMMIT with the environment's default: a synced commit */
    return meta->put(meta, NULL, &k, &v, DB_AUTO_COMMIT);
}

/* Steps down (R9 in shm/ring_format.h): a node of a higher epoch is the
 * primary elsewhere.  Fences the ring first (from then on nothing is
 * acknowledged: no cursor moves, producers get RK_EFENCED, waits end with
 * it), then records the epoch it stepped down for (meta.db, synced: it
 * never starts as a primary again unless promoted), and the drain stops;
 * run_primary returns NODE_EXIT_FENCED (the node exits with it, or rejoins
 * as a standby: on_higher_epoch, node.c).  Any thread; once. */
void primary_step_down(struct node *n, uint64_t epoch, const char *seen)
{
    int rc;

    if (atomic_exchange(&n->stepped_down, epoch))
        return;
    ring_fence(n->ring);
    /* the fence first, beside db/ (a rebuild or bootstrap of a rejoin
     * replaces db/ and kept no fence in meta.db): a crash between the two
     * writes leaves it fenced, never an epoch seen without the fence, from
     * which a start as primary began a new epoch above the new primary's */
    rc = store_fence_write(n->s, epoch);
    if (rc)
        fatal("stepped down (the ring is fenced), but cannot record it in " STORE_FENCED_FILE, strerror(rc));
    rc = meta_write(n->s, STORE_EPOCH_KEY, &epoch, sizeof epoch); /* the highest seen */
    if (rc)
        fatal("stepped down (the ring is fenced), but cannot record it in meta.db", store_strerror(rc));
    log_msg(LOG_ERROR, "stepped down: nothing more is acknowledged",
            "epoch=%" PRIu64 " fenced_by=%" PRIu64 " why=\"%s\" action=%s", n->epoch, epoch, seen,
            n->c->rejoin_on_higher_epoch || n->c->ha_etcd[0] ? "rejoin" : "exit");
}

/* The replicator saw a higher epoch in a peer's message. */
static void higher_epoch_seen(void *arg, uint64_t epoch)
{
    struct node *n = arg;

    if (epoch > n->epoch)
        primary_step_down(n, epoch, "a node of a higher epoch is the primary (a peer's message)");
}

/* The replicator: the standbys' apply no longer holds the drain back
 * (replicator thread); wait_for_apply looks again now. */
static void standby_apply_caught_up(void *arg)
{
    struct node *n = arg;

    pthread_mutex_lock(&n->lock);
    pthread_cond_broadcast(&n->apply_cond);
    pthread_mutex_unlock(&n->lock);
}

/* ------------------------------------------------------------ the ring */

/* Creates the ring, or takes over the one an earlier run of this data
 * directory left, refusing a ring this data directory did not make; a
 * promotion never takes one over (it is fenced and replaced).  The ring's
 * identity is kept twice: in meta.db (what a restart takes over by) and
 * in STORE_RING_MADE_FILE beside db/, which a standby's rebuild or
 * bootstrap leaves, so that a promotion after one still knows the ring
 * this directory left as its own and replaces it. */
static int open_ring(struct node *n, uint64_t next_lsn)
{
    const struct node_config *c = n->c;
    struct store_ring_record rec = {0}, mine = {0}, made = {0};
    char err[512] = "";
    int rc, have = store_ring_record(n->s, &mine) == 0, have_made;

    /* A node killed between writing an entry and its fsync
     * (journal_batch) left it in the kernel only, where recovery found
     * it: fsynced here, before any cursor covers it or a ring is made
     * past it, not left to recovery's own checkpoint */
    rc = store_journal_sync(n->s);
    if (rc)
        fatal("journal fsync failed: nothing after it is acknowledged", store_strerror(rc));
    rc = store_ring_made_read(n->s, &made, err, sizeof err);
    if (rc && rc != RK_ENOTFOUND)
        log_msg(LOG_WARN, "the ring identity beside db/ is not used",
                "error=\"%s\" hint=\"it is written again "
                "when this node makes a ring or takes one over\"",
                err[0] ? err : strerror(rc));
    have_made = rc == 0;
    err[0] = '\0';
    rc = ring_reopen(c->ring_name, n->epoch, &n->ring, err, sizeof err);
create:
    if (rc == ENOENT) {
        ring_create_opts co = {.capacity = c->ring_capacity,
                               .start_lsn = next_lsn,
                               .epoch = n->epoch,
                               .unblock_timeout_ms = c->unblock_timeout_ms};
        rc = ring_create(c->ring_name, &co, &n->ring, err, sizeof err);
        if (rc) {
            log_msg(LOG_ERROR, "cannot create the ring", "ring=%s error=\"%s\"", c->ring_name, err);
            return rc;
        }
        if (c->ha_etcd[0])
            ring_set_ack_deadline(n->ring, 0); /* nothing acknowledged until the leader key is ours */
        rec.created_ns = ring_header_of(n->ring)->created_ns;
        rec.capacity = c->ring_capacity;
        snprintf(rec.name, sizeof rec.name, "%s", c->ring_name);
        rc = store_ring_record_put(n->s, &rec);
        if (rc)
            return rc;
        rc = store_ring_made_write(n->s, &rec);
        if (rc) {
            log_msg(LOG_ERROR, "cannot record the ring's identity in the data directory",
                    "file=\"%s/%s\" error=\"%s\"", c->data_dir, STORE_RING_MADE_FILE, strerror(rc));
            return rc;
        }
        log_msg(LOG_INFO, "ring created", "ring=%s capacity=%" PRIu64 " start_lsn=%" PRIu64, c->ring_name,
                c->ring_capacity, ring_header_of(n->ring)->start_lsn);
        return 0;
    }
    if (rc) {
        log_msg(LOG_ERROR, "cannot take over the ring", "ring=%s error=\"%s\"", c->ring_name, err);
        return rc;
    }
    struct ring_header *h = ring_header_of(n->ring);
    int ours = have && mine.created_ns == h->created_ns && strcmp(mine.name, c->ring_name) == 0;
    int left_here = have_made && made.created_ns == h->created_ns && strcmp(made.name, c->ring_name) == 0;
    /* a restart takes over only the ring meta.db names; a promotion also
     * knows (to replace it) one this directory made before a rebuild or a
     * bootstrap replaced db/ */
    if (!ours && !(n->promoted && left_here)) {
        log_msg(LOG_ERROR, "ring was not made by this data directory's node",
                "ring=%s data_dir=\"%s\" hint=\"if it is stale, remove it: ringkeep ring rm %s\"",
                c->ring_name, c->data_dir, c->ring_name);
        ring_close(n->ring, 0);
        n->ring = NULL;
        return RK_EBADRING;
    }
    if (n->promoted) {
        /* A promotion begins a new epoch at the journal's next LSN.  A ring
         * this directory left holds frames of an earlier epoch that were
         * never journaled, so never acknowledged; once the directory has
         * followed another primary, the LSNs they sit at name other
         * entries, and draining them would write an earlier engine's
         * records into the new history.  The ring is fenced (R9: its
         * engines get RK_EFENCED, restore from the state and write again)
         * and removed, and a new one is made. */
        log_msg(LOG_WARN, "a ring of an earlier epoch is fenced and removed",
                "ring=%s head=%" PRIu64 " tail=%" PRIu64 " journal_next_lsn=%" PRIu64 " known_by=%s"
                " hint=\"frames past its head were never journaled: engines restore with rk_state_open\"",
                c->ring_name, atomic_load(&h->head), atomic_load(&h->tail), next_lsn,
                ours ? "meta.db" : STORE_RING_MADE_FILE);
        ring_fence(n->ring);
        ring_close(n->ring, 1);
        n->ring = NULL;
        rc = ENOENT;
        goto create;
    }
    /* every frame below head was released, so must be in the journal */
    if (atomic_load(&h->head) > (next_lsn > h->start_lsn ? next_lsn : h->start_lsn)) {
        log_msg(LOG_ERROR, "ring released frames the journal does not hold",
                "ring=%s head=%" PRIu64 " journal_next_lsn=%" PRIu64, c->ring_name, atomic_load(&h->head),
                next_lsn);
        ring_close(n->ring, 0);
        n->ring = NULL;
        return RK_ECORRUPT;
    }
    if (ring_fenced(n->ring)) {
        /* R9: only a promotion of this directory (a higher epoch) goes on
         * past a ring fenced when its node stepped down: with a new ring */
        log_msg(LOG_ERROR, "the ring was fenced when its node stepped down",
                "ring=%s hint=\"start this node as a standby, or promote it\"", c->ring_name);
        ring_close(n->ring, 0);
        n->ring = NULL;
        return RK_EFENCED;
    }
    if (h->capacity != c->ring_capacity)
        log_msg(LOG_WARN, "ring keeps its capacity",
                "ring=%s capacity=%" PRIu64 " configured=%" PRIu64 " hint=\"stop engines and node, remove "
                "the ring to change it\"",
                c->ring_name, h->capacity, c->ring_capacity);
    if (c->ha_etcd[0])
        ring_set_ack_deadline(n->ring, 0); /* nothing acknowledged until the leader key is ours */
    /* what the journal holds is durable: a node killed between its
     * journal commit and moving the durable cursor leaves engines waiting
     * on frames that are already in the journal (and that the drain now
     * skips), so the cursor covers them at once, not at the next batch
     * (the journal was fsynced at the top) */
    if (next_lsn > h->start_lsn) {
        ring_set_durable(n->ring, next_lsn - 1);
        if (c->repl_min_replicas == 0)
            ring_set_replicated(n->ring, next_lsn - 1);
    }
    if (!left_here) {
        /* a directory of a version before the file, or a write that failed */
        rc = store_ring_made_write(n->s, &mine);
        if (rc)
            log_msg(LOG_WARN, "cannot record the ring's identity in the data directory",
                    "file=\"%s/%s\" error=\"%s\" hint=\"a promotion after a rebuild will refuse this ring: "
                    "ringkeep ring rm %s\"",
                    c->data_dir, STORE_RING_MADE_FILE, strerror(rc), c->ring_name);
    }
    log_msg(LOG_INFO, "ring taken over", "ring=%s head=%" PRIu64 " tail=%" PRIu64, c->ring_name,
            atomic_load(&h->head), atomic_load(&h->tail));
    return 0;
}

/* ------------------------------------------------------------ drain */

struct batch {
    uint8_t *buf;
    size_t len, cap;
    uint32_t n_frames;
    uint64_t first_lsn, last_lsn, last_ring_lsn;
    uint64_t first_ns;
    uint8_t table_sent[RING_MAX_TABLES]; /* TABLE frame journaled this run */
};

static int batch_room(struct batch *b, size_t need)
{
    if (b->len + need <= b->cap)
        return 0;
    size_t cap = b->cap * 2;
    while (cap < b->len + need)
        cap *= 2;
    uint8_t *buf = realloc(b->buf, cap);
    if (!buf)
        return ENOMEM;
    b->buf = buf;
    b->cap = cap;
    return 0;
}

static void batch_add(struct batch *b, const uint8_t *raw, uint32_t raw_len, uint64_t lsn)
{
    memcpy(b->buf + b->len, raw, raw_len);
    memset(b->buf + b->len + raw_len, 0, frame_align(raw_len) - raw_len);
    b->len += frame_align(raw_len);
    if (b->n_frames++ == 0)
        b->first_lsn = lsn;
    b->last_lsn = lsn;
}

/* Adds frame f, after a TABLE frame naming its table if this run has not
 * journaled one yet. */
static int batch_frame(struct node *n, struct batch *b, const ring_frame *f)
{
    struct ring_header *h = ring_header_of(n->ring);
    int rc = batch_room(b, frame_align(f->raw_len) + FRAME_HEADER_SIZE + RK_NAME_MAX + 8);

    if (rc)
        return rc;
    if (f->table >= RING_MAX_TABLES)
        return RK_ECORRUPT; /* frame_decode refuses it: not reached */
    if ((f->type == FRAME_PUT || f->type == FRAME_DEL) && !b->table_sent[f->table]) {
        char name[RK_NAME_MAX + 1];
        /* acquire: the name is written before the entry is marked used */
        if (!atomic_load_explicit(&h->tables[f->table].used, memory_order_acquire))
            return RK_ECORRUPT;
        memcpy(name, h->tables[f->table].name, RK_NAME_MAX);
        name[RK_NAME_MAX] = '\0';
        /* LSN f->lsn - 1: no frame has it (frames are 8-aligned), and it
         * sorts just before the frame that needs the name */
        uint32_t len = frame_encode(b->buf + b->len, FRAME_TABLE, f->table, 0, f->lsn - 1, name,
                                    (uint32_t)strlen(name), NULL, 0);
        b->len += frame_align(len);
        if (b->n_frames++ == 0)
            b->first_lsn = f->lsn - 1;
        b->table_sent[f->table] = 1;
    }
    batch_add(b, f->raw, f->raw_len, f->lsn);
    if (f->type != FRAME_ABORT)
        b->last_ring_lsn = f->lsn;
    return 0;
}

/* 1 if the batch holds an ABORT frame (a dead producer reported). */
static int batch_has_abort(const struct batch *b)
{
    for (size_t off = 0; off < b->len;) {
        struct frame_header fh;
        memcpy(&fh, b->buf + off, sizeof fh);
        if (fh.type == FRAME_ABORT)
            return 1;
        off += frame_align(fh.length);
    }
    return 0;
}

/* Journals batch b as entry seq.  next_lsn is the ring position before
 * the first frame the batch does not hold: every frame below it is in this
 * or an earlier entry (the drain passes the position before a frame it
 * read but could not add).  The ring is released only when next_lsn is
 * where the drain has read to; otherwise the frames past next_lsn stay in
 * the ring (the drain is about to stop), and a restart reads them again
 * from head, skipping those below next_lsn. */
static void journal_batch(struct node *n, struct batch *b, uint64_t seq, uint64_t next_lsn)
{
    struct journal_header jh = {.seq = seq,
                                .epoch = n->epoch,
                                .first_lsn = b->first_lsn,
                                .last_lsn = b->last_lsn,
                                .next_lsn = next_lsn,
                                .n_frames = b->n_frames};
    uint8_t *entry = NULL;
    size_t entry_len = 0;
    uint64_t records = 0, record_bytes = 0;
    int rc;

    rc = journal_encode(&jh, b->buf, b->len, n->c->zstd_level, &entry, &entry_len);
    if (rc)
        fatal("cannot encode a journal entry", rk_strerror(rc));
    /* written (a kill no longer loses it; a power cut still may), then
     * published, then fsynced: the standbys' round trip runs beside our
     * fsync instead of after it (issue 13.6).  Nothing is acknowledged
     * before the fsync returned: the replicated cursor never passes the
     * durable one (update_replicated).  The next entry is written only
     * after this fsync, so a power cut loses at most this entry, which a
     * standby may hold: it learns so from the entry that follows (its
     * prev_xxh) or its HELLO, and sets its copy aside. */
    rc = store_journal_write(n->s, seq, entry, entry_len);
    if (rc)
        fatal("journal write failed: nothing after it is acknowledged", store_strerror(rc));
    int published = n->repl && repl_primary_journaled(n->repl, seq, entry, entry_len, 0);
    /* test hook (test_repl's early_publish case): once FILE exists, the
     * power is cut here, before the fsync, when a standby holds the entry
     * (or after 10 s); needs RK_CRASHSIM armed */
    if (n->test_cut_after_publish && published && access(n->test_cut_after_publish, F_OK) == 0) {
        for (int i = 0; i < 10000 && repl_primary_max_acked(n->repl) < seq; i++)
            usleep(1000);
        crashsim_cut();
    }
    rc = store_journal_sync(n->s);
    if (rc)
        fatal("journal fsync failed: nothing after it is acknowledged", store_strerror(rc));
    /* test hook: the node killed between journaling a dead producer's
     * ABORT and releasing its claim (tests/test_node.c) */
    if (n->test_kill_after_abort && batch_has_abort(b))
        raise(SIGKILL);
    /* the entry is durable: now, and only now, engines may learn it;
     * with min_replicas 0 nothing waits for standbys */
    if (b->last_ring_lsn) {
        ring_set_durable(n->ring, b->last_ring_lsn);
        if (n->c->repl_min_replicas == 0)
            ring_set_replicated(n->ring, b->last_ring_lsn);
    }
    pthread_mutex_lock(&n->lock);
    n->journal_seq = seq;
    pthread_mutex_unlock(&n->lock);
    /* acks that came before the fsync count now; then, if it was not
     * published before the fsync, the entry goes out (as before issue
     * 13.6): durable first, so that nothing published is ever past it
     * but an entry out ahead of the fsync (on_hello) */
    if (n->repl)
        repl_primary_durable(n->repl, seq);
    if (n->repl && !published)
        repl_primary_journaled(n->repl, seq, entry, entry_len, 1);
    free(entry);
    pthread_cond_broadcast(&n->journal_cond); /* apply re-reads journal_seq under lock */
    if (next_lsn == ring_read_pos(n->ring))
        ring_release(n->ring);
    for (size_t off = 0; off < b->len;) {
        struct frame_header fh;
        memcpy(&fh, b->buf + off, sizeof fh);
        if (fh.type == FRAME_PUT || fh.type == FRAME_DEL || fh.type == FRAME_MARK) {
            records++;
            record_bytes += frame_align(fh.length);
        }
        off += frame_align(fh.length);
    }
    atomic_fetch_add(&n->n_batches, 1);
    atomic_fetch_add(&n->n_records, records);
    /* relaxed: figures on their own (node/metrics.h) */
    atomic_fetch_add_explicit(&n->m.record_bytes, record_bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&n->m.journal_bytes, entry_len, memory_order_relaxed);
    atomic_store_explicit(&n->m.journal_seq, seq, memory_order_relaxed);
    if (b->last_ring_lsn)
        atomic_store(&n->durable_lsn, b->last_ring_lsn);
    /* after journal_seq: a request that sees drained_pos past its point
     * then reads a journal_seq that holds it (answer_request) */
    atomic_store(&n->drained_pos, jh.next_lsn);
    b->len = 0;
    b->n_frames = 0;
    b->last_ring_lsn = 0;
}

/* Ring bytes journaled and not yet read by apply: from apply's position
 * to the drain's.  None once apply has read every entry (applied_seq at
 * journal_seq): the drain's position may then be past the last entry's
 * end by what it read without journaling (padding before a record still
 * being written, frames journaled before a restart), which is no work for
 * apply.  Counted, that padding held the drain for ever once it was past
 * max_lag_bytes: apply had nothing left to read, so the lag never fell. */
static uint64_t apply_lag_bytes(uint64_t journal_seq, uint64_t applied_seq, uint64_t drained,
                                uint64_t applied_pos)
{
    return applied_seq < journal_seq && drained > applied_pos ? drained - applied_pos : 0;
}

/* Whether apply is too far behind the journal for the drain to go on
 * (under lock): more than max_lag_entries entries, or more than
 * max_lag_bytes of ring records journaled and not yet read by apply.  The
 * entries alone let apply fall millions of records behind (an entry holds
 * up to batch_records frames), and a state or checkpoint request waits for
 * apply to reach its point (issue 9.5).  Apply reads every entry whatever
 * groups are open, so its position always reaches the drain's: the pause
 * ends. */
static int apply_behind(const struct node *n)
{
    uint64_t drained = atomic_load(&n->drained_pos); /* this thread's own (journal_batch, drain) */
    uint64_t lag = apply_lag_bytes(n->journal_seq, n->applied_seq, drained, n->applied_pos);

    if (n->journal_seq - n->applied_seq > n->c->max_lag_entries ||
        (n->c->max_lag_bytes && lag > n->c->max_lag_bytes))
        return 1;
    /* and in time: more than max_lag_ms of apply's work at the rate it
     * has been reading (issue 13.7: with the bytes alone, a lag of 64 MiB
     * was minutes of apply work once the state outgrew the cache, and a
     * clean stop or a checkpoint waited for all of it); until apply's
     * first step has given a rate, APPLY_LAG_MIN_BYTES (apply has work,
     * so the rate comes) */
    if (n->c->max_lag_ms && lag > APPLY_LAG_MIN_BYTES && lag > n->apply_rate / 1000 * n->c->max_lag_ms)
        return 1;
    /* and the standbys' apply, bounded in time the same way: with
     * min_replicas > 0, while fewer than min_replicas counted standbys are
     * within max_lag_ms of apply work (repl_primary_apply_held), so that a
     * promotion or a clean stop there is not minutes of apply work (issue
     * 13.7); the engines see it as the ring's back-pressure */
    return n->repl && repl_primary_apply_held(n->repl);
}

/* Waits while apply is too far behind (apply_behind).  Returns 1 if it
 * had to wait. */
static int wait_for_apply(struct node *n)
{
    int waited = 0;

    pthread_mutex_lock(&n->lock);
    while (apply_behind(n) && !node_signal && !atomic_load(&n->stepped_down)) {
        struct timespec ts = node_deadline_ms(100);
        if (!waited)
            atomic_store(&n->drain_waiting, 1); /* a figure for the status, on its own */
        waited = 1;
        pthread_cond_timedwait(&n->apply_cond, &n->lock, &ts);
    }
    pthread_mutex_unlock(&n->lock);
    if (waited)
        atomic_store(&n->drain_waiting, 0);
    return waited;
}

/* The drain loop's tick for systemd (notify.h): the watchdog, fed while
 * apply keeps up, and the STATUS line. */
static void primary_notify_tick(struct node *n)
{
    uint64_t journal_seq, applied_seq;

    pthread_mutex_lock(&n->lock);
    journal_seq = n->journal_seq;
    applied_seq = n->applied_seq;
    pthread_mutex_unlock(&n->lock);
    notify_tick(&n->notify, journal_seq, applied_seq,
                "primary: epoch %" PRIu64 ", ring %s, journal seq %" PRIu64 ", applied seq %" PRIu64
                ", %" PRIu64 " records journaled",
                n->epoch, n->c->ring_name, journal_seq, applied_seq, atomic_load(&n->n_records));
}

static void drain(struct node *n, uint64_t seq, uint64_t next_lsn)
{
    const struct node_config *c = n->c;
    struct batch b = {.cap = (size_t)c->batch_bytes * 2 + (1u << 20)};
    ring_frame f;
    uint64_t last_sweep = 0, pos = 0, journaled = next_lsn; /* the journal's next_lsn */
    /* producers whose group is open (a PUT or DEL since their last MARK,
     * ATTACH or ABORT), in frames the drain has taken */
    uint8_t group_open[RING_MAX_PRODUCERS] = {0};
    unsigned n_open = 0;
    int rc = 0;

    b.buf = malloc(b.cap);
    if (!b.buf)
        fatal("out of memory", "batch buffer");
    while (!node_signal && !atomic_load(&n->stepped_down)) {
        int empty = 0, time_up = 0;

        if (notify_due(&n->notify))
            primary_notify_tick(n);
        if (wait_for_apply(n))
            log_msg(LOG_DEBUG, "drain paused for apply", "journal_seq=%" PRIu64, seq);
        /* a batch ends at batch_records frames, batch_bytes, at the first
         * group end (a MARK, or no group open) once batch_time_us has
         * passed since its first frame, or when the ring runs empty with
         * every group in it closed */
        rc = 0;
        while (b.n_frames < c->batch_records && b.len < c->batch_bytes) {
            pos = ring_read_pos(n->ring); /* before f: the journal's next_lsn if f cannot be added */
            rc = ring_next(n->ring, &f);
            if (rc == 0 && n_open && b.n_frames && c->batch_time_us && !node_signal &&
                now_ns() - b.first_ns < (uint64_t)c->batch_time_us * 1000u &&
                atomic_load_explicit(&ring_header_of(n->ring)->n_head_waiters, memory_order_relaxed) == 0) {
                /* empty while a producer is in the middle of a group: its
                 * MARK is on the way and would otherwise wait behind this
                 * entry's commit and then its own (issue 13.5); wait for
                 * it, up to batch_time_us after the batch's first frame.
                 * With every group closed (an idle ring) the batch goes at
                 * once: no latency added.  Not while producers wait for
                 * room (relaxed: a hint, looked at again every pass): the
                 * MARK cannot come before this batch is journaled and its
                 * room released (a group larger than the ring's free room
                 * ran at half its speed with the default 1 ms, at 2.4
                 * MB/s with 100 ms) */
                ring_wait_ready(n->ring, 1);
                continue;
            }
            if (rc != 1) {
                empty = rc == 0;
                break;
            }
            rc = 0;
            if (f.lsn < next_lsn && f.type != FRAME_ABORT)
                continue; /* journaled before a restart: exactly once */
            rc = batch_frame(n, &b, &f);
            if (rc)
                break;
            if (f.producer < RING_MAX_PRODUCERS) {
                int open = f.type == FRAME_PUT || f.type == FRAME_DEL;
                if (open || f.type == FRAME_MARK || f.type == FRAME_ATTACH || f.type == FRAME_ABORT) {
                    n_open += (unsigned)open - group_open[f.producer];
                    group_open[f.producer] = (uint8_t)open;
                }
            }
            if (b.n_frames == 1)
                b.first_ns = now_ns();
            else if (c->batch_time_us && !time_up && (b.n_frames & 63) == 0 && /* the clock: now and then */
                     now_ns() - b.first_ns >= (uint64_t)c->batch_time_us * 1000u)
                time_up = 1;
            /* time is up: end at a group's end, not in the middle of one,
             * so that a producer's group lands in one synced commit while
             * its records keep coming (issue 13.5) */
            if (time_up && (f.type == FRAME_MARK || n_open == 0))
                break;
        }
        /* on a failure, f was read but is not in the batch: the journal's
         * next_lsn stops before it and the ring keeps it (issue 9.2) */
        if (b.n_frames) {
            journaled = rc ? pos : ring_read_pos(n->ring);
            journal_batch(n, &b, ++seq, journaled);
        } else if (!rc) {
            /* frames skipped as already journaled are released; padding
             * read on its own past them (before a record still being
             * written, or over a dead producer's claim) waits for the
             * next entry, which covers it: released past the journal's
             * end, the next start refused the ring (open_ring: the ring's
             * head past the journal's next_lsn).  An offline state open
             * sees that padding for what it is (store_ring_undrained).
             * Unless producers wait for room, or it holds half the ring:
             * the next entry may need that room, and waiting for it would
             * block for good (several dead producers' claims padded with
             * their ABORTs journaled before); it is released then, and a
             * restart before the next entry refuses the ring as before */
            struct ring_header *rh = ring_header_of(n->ring);
            uint64_t upto = journaled, read = ring_read_pos(n->ring);
            if (read > journaled &&
                (atomic_load(&rh->n_head_waiters) > 0 ||
                 read - atomic_load_explicit(&rh->head, memory_order_relaxed) >= rh->capacity / 2))
                upto = read; /* relaxed: head is ours */
            ring_release_to(n->ring, upto);
            atomic_store(&n->drained_pos, ring_read_pos(n->ring));
        }
        if (rc == RK_ECORRUPT)
            fatal("the ring holds a corrupt frame; what came before it is journaled", ring_error(n->ring));
        if (rc)
            fatal("drain failed", rk_strerror(rc));
        if (empty) {
            /* a producer that died outside a claim: its open group is
             * void; once per unblock timeout while the ring is idle */
            uint64_t now = now_ns();
            if (now - last_sweep >= (uint64_t)c->unblock_timeout_ms * 1000000u) {
                last_sweep = now;
                if (ring_sweep_dead(n->ring) > 0)
                    continue;
            }
            /* every group closed: the next frame may be far off (a
             * producer waiting for its batch to be acknowledged) */
            if (n_open)
                ring_wait_ready(n->ring, 100);
            else
                ring_wait_idle(n->ring, 100);
        }
    }
    /* SIGTERM/SIGINT, or a step-down: the batch in hand is journaled above
     * (after a step-down, not acknowledged); stop here */
    free(b.buf);
}

/* ------------------------------------------------------------ apply */

/* A primary's apply: in steps of up to APPLY_STEP_ENTRIES, checkpoints
 * triggered and requests served between steps; once drain is done, what
 * is journaled is applied and a last checkpoint taken.  A failure is
 * fatal. */
void apply_primary(struct node *n)
{
    struct checkpoint_clock ck;
    char err[512];
    /* a test hook: apply sleeps this long before each step, so that it
     * runs behind the journal under any load (test_node) */
    const char *slow = getenv("RK_TEST_APPLY_SLOW_MS");
    unsigned slow_ms = slow ? (unsigned)strtoul(slow, NULL, 10) : 0;
    /* and this one holds it at the entry a file names (sys_test_gate) */
    const char *gate = getenv("RK_TEST_APPLY_GATE");

    checkpoint_clock_start(n, &ck);
    applier_stop_when(n->a, &n->snap_wanted); /* a state open waits for one entry, not a step */
    for (;;) {
        uint64_t upto, journal_seq, wanted_seq, applied_seq;
        int done, wanted, due, crossed;

        pthread_mutex_lock(&n->lock);
        while (n->applied_seq == n->journal_seq && !n->drain_done &&
               !(n->wanted == REQ_SNAPSHOT || (n->wanted && !n->ckpt_busy)) &&
               !(n->ckpt_pending && !n->ckpt_busy)) {
            struct timespec ts = node_deadline_ms(1000); /* look at the checkpoint timer now and then */
            pthread_cond_timedwait(&n->journal_cond, &n->lock, &ts);
            if (checkpoint_time_due(n, &ck) && n->applied_seq != n->ckpt_seq && !n->ckpt_busy)
                break;
        }
        /* in steps, so that a drain waiting for apply to catch up sees
         * progress as it is made, not after the whole backlog */
        journal_seq = n->journal_seq;
        upto = journal_seq - n->applied_seq > APPLY_STEP_ENTRIES ? n->applied_seq + APPLY_STEP_ENTRIES
                                                                 : journal_seq;
        done = n->drain_done;
        wanted = n->wanted;
        wanted_seq = n->wanted_seq;
        due = n->ckpt_pending;
        applied_seq = n->applied_seq;
        pthread_mutex_unlock(&n->lock);
        if (wanted == REQ_SNAPSHOT && applied_seq >= wanted_seq) {
            /* a state open (serve_snapshot, wanted_seq 0): its job is
             * begun here, before the step, so that it waits for no apply
             * work; the control thread folds the entries up to the
             * request's point */
            begin_snapshot(n);
            continue;
        }
        uint64_t t_step = now_ns();
        if (slow_ms)
            usleep(slow_ms * 1000u);
        if (gate) {
            uint64_t limit = sys_test_gate(gate);
            if (upto > limit)
                upto = limit > applied_seq ? limit : applied_seq;
            if (upto == applied_seq)
                usleep(1000); /* held: looked at again every millisecond */
        }

        err[0] = '\0';
        int rc = applier_run(n->a, upto, STORE_TXN_RECORDS, err, sizeof err);
        if (rc)
            fatal("apply failed", err[0] ? err : store_strerror(rc));
        struct apply_meta am = applier_meta(n->a);
        atomic_store(&n->applied_lsn, am.applied_lsn);
        atomic_store(&n->n_discarded, am.n_discarded);
        atomic_store(&n->n_groups, am.n_groups);
        atomic_store(&n->digest, am.digest);
        if (applier_read_upto(n->a) < upto)
            upto = applier_read_upto(n->a); /* stopped early (every_heights) */
        crossed = applier_height_crossed(n->a);
        if (checkpoint_due(n, &ck, &am))
            due = 1;
        atomic_store_explicit(&n->m.applied_seq, upto, memory_order_relaxed); /* a figure (metrics.h) */
        pthread_mutex_lock(&n->lock);
        n->applied_seq = upto;
        if (applier_read_lsn(n->a) > n->applied_pos) { /* 0: nothing read in this run yet */
            apply_rate_update(n, applier_read_lsn(n->a) - n->applied_pos, now_ns() - t_step);
            n->applied_pos = applier_read_lsn(n->a);
        }
        n->digest_at = am.digest;
        /* due from the moment apply's progress shows: the status never
         * says "caught up, no checkpoint running" while one is about to
         * start (a test or an operator waiting for idle then saw the
         * checkpoint folder change under it) */
        if (crossed || due)
            n->ckpt_pending = 1;
        pthread_cond_broadcast(&n->apply_cond);
        pthread_mutex_unlock(&n->lock);
        if (crossed) {
            /* every_heights: applier_run stopped right after the entry in
             * which the producer crossed a multiple of it.  That point is
             * checkpointed even if the one before is still being written:
             * apply waits for it (engines wait only if apply then falls
             * too far behind: apply_behind) */
            wait_checkpoint_idle(n);
            due = 1;
        }
        /* a request is served at the first group boundary that holds what
         * was written before it, not at the journal's end: under steady
         * writes apply may never reach that (issue 9.5) */
        if (wanted == REQ_SNAPSHOT && upto >= wanted_seq) {
            begin_snapshot(n);
        } else if (wanted == REQ_CHECKPOINT && upto >= wanted_seq) {
            if (start_checkpoint(n, 1) == 0)
                due = 0;
        } else if (due) {
            if (start_checkpoint(n, 0) != 0)
                due = 0; /* pending: taken once the one being written is done */
        } else {
            due = 0;
        }
        if (due || (wanted == REQ_CHECKPOINT && upto >= wanted_seq)) {
            checkpoint_clock_reset(n, &ck);
        }
        if (done && upto == n->journal_seq) {
            /* a clean stop: one last checkpoint of everything applied */
            wait_checkpoint_idle(n);
            if (am.applied_seq != n->ckpt_seq && start_checkpoint(n, 0) == 0)
                wait_checkpoint_idle(n);
            break;
        }
    }
}

/* ------------------------------------------------------------ control */

/* A primary's status members, after the ones every role has
 * (status_object): the ring, the journal, apply and checkpoints, then the
 * replicator's.  A new reference; NULL when out of memory. */
json_t *primary_status(struct node *n)
{
    struct ring_header *h = ring_header_of(n->ring);
    uint64_t tail = atomic_load(&h->tail), head = atomic_load(&h->head);
    uint64_t durable = atomic_load(&h->durable_lsn), applied = atomic_load(&n->applied_lsn);
    double secs = (double)(now_ns() - atomic_load(&n->start_ns)) / 1e9;
    uint64_t n_records = atomic_load(&n->n_records);
    uint64_t journal_seq, applied_seq, apply_lag, apply_rate, drained = atomic_load(&n->drained_pos);
    char digest[17];
    json_t *last_error = NULL, *st = NULL;

    pthread_mutex_lock(&n->lock);
    journal_seq = n->journal_seq;
    applied_seq = n->applied_seq;
    apply_lag = apply_lag_bytes(journal_seq, applied_seq, drained, n->applied_pos);
    apply_rate = n->apply_rate;
    /* the only kind of error a running node survives */
    last_error = n->last_error[0] ? json_cstr(n->last_error) : json_null();
    pthread_mutex_unlock(&n->lock);
    snprintf(digest, sizeof digest, "%016" PRIx64, atomic_load(&n->digest));
    /* "o" steals its reference, even when json_pack fails */
    st = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o,"
                   " s:o, s:s, s:o}",
                   "ring", json_cstr(n->c->ring_name), "ring_capacity", json_uint(h->capacity), "ring_fill",
                   json_uint(tail - head), "written_lsn", json_uint(tail), "durable_lsn", json_uint(durable),
                   "applied_lsn", json_uint(applied), "durable_lag_bytes",
                   json_uint(tail - atomic_load(&n->drained_pos)), "journal_seq", json_uint(journal_seq),
                   "applied_seq", json_uint(applied_seq), "apply_lag_entries",
                   json_uint(journal_seq - applied_seq), "apply_lag_bytes", json_uint(apply_lag), "batches",
                   json_uint(atomic_load(&n->n_batches)), "records", json_uint(n_records), "records_per_s",
                   json_uint(secs > 0 ? (uint64_t)((double)n_records / secs + 0.5) : 0), "groups_applied",
                   json_uint(atomic_load(&n->n_groups)), "groups_discarded",
                   json_uint(atomic_load(&n->n_discarded)), "uptime_s", json_uint((uint64_t)(secs + 0.5)),
                   "state_digest", digest, "last_error", last_error);
    /* apply's rate, and what its lag is in time at that rate (max_lag_ms);
     * whether the drain waits for apply now (its own, or the standbys') */
    if (st &&
        (json_object_set_new(st, "drain_waiting", json_boolean(atomic_load(&n->drain_waiting))) != 0 ||
         json_object_set_new(st, "apply_bytes_per_s", json_uint(apply_rate)) != 0 ||
         json_object_set_new(
             st, "apply_lag_ms",
             json_uint(apply_rate ? (uint64_t)((double)apply_lag * 1e3 / (double)apply_rate) : 0)) != 0)) {
        json_decref(st);
        st = NULL;
    }
    if (st && (checkpoint_status(n, st) != 0 ||
               json_object_set_new(st, "epoch_history", json_uint(store_history_length(n->s))) != 0)) {
        json_decref(st);
        st = NULL;
    }
    if (st && n->repl)
        repl_primary_status(n->repl, st);
    return st;
}

/* A consistent copy of the node's cursors, for the primary's replicator
 * (repl_progress_fn); any thread. */
static void node_progress(void *arg, struct repl_progress *p)
{
    struct node *n = arg;

    pthread_mutex_lock(&n->lock);
    p->journal_seq = n->journal_seq;
    p->applied_seq = n->applied_seq;
    p->digest = n->digest_at;
    p->digest_seq = n->applied_seq;
    pthread_mutex_unlock(&n->lock);
    p->epoch = n->epoch;
    p->durable_lsn = atomic_load(&ring_header_of(n->ring)->durable_lsn);
    p->applied_lsn = atomic_load(&n->applied_lsn);
}

/* A snapshot or checkpoint request (REQ_*): everything written to the
 * ring before it goes into the answer -- an engine restarting after a
 * crash then never sees a height older than groups it already wrote (it
 * would write them again) -- so the drain first reaches where the ring's
 * tail was.  Bounded: a claim that stays open (a producer stuck between
 * claim and commit) does not hold the snapshot up for ever -- bound_ms
 * without the drain moving.  A drain that moves, however slowly (paused
 * while apply lags: apply_behind), is waited for: a snapshot is served at
 * the request's point (serve_snapshot), and an answer before the drain
 * got there held less than the engine wrote before asking (bench_node
 * saw a height 1035 groups short after a 5 s bound). */
static void answer_request(struct node *n, int ask, char *out, size_t out_size)
{
    struct ring_header *h = ring_header_of(n->ring);
    /* acquire: what was claimed before the request */
    uint64_t target = atomic_load_explicit(&h->tail, memory_order_acquire);
    uint64_t bound_ms = 2ull * h->unblock_timeout_ms + 5000, t_request = now_ns();
    uint64_t drained = atomic_load(&n->drained_pos);

    for (uint64_t still = 0; drained < target && still < bound_ms && !node_signal; still++) {
        usleep(1000);
        if (atomic_load(&n->drained_pos) != drained) {
            drained = atomic_load(&n->drained_pos);
            still = 0;
        }
    }
    serve_request(n, ask, t_request, out, out_size);
}

/* The control requests only a primary serves (the control loop,
 * control_answer, answers "status" for every role). */
void primary_answer(struct node *n, const char *req, char *reply, size_t reply_size)
{
    uint64_t epoch = 0;
    char *end = NULL;

    if (strncmp(req, "fence ", 6) == 0) {
        /* "fence EPOCH": a node of that epoch is the primary (the drill,
         * an operator) */
        epoch = strtoull(req + 6, &end, 10);
        if (!end || *end || epoch <= n->epoch) {
            snprintf(reply, reply_size, "error fence wants an epoch above this node's (%" PRIu64 ")", n->epoch);
        } else {
            primary_step_down(n, epoch, "a node of a higher epoch is the primary (a control request)");
            snprintf(reply, reply_size, "ok stepped down for epoch %" PRIu64, epoch);
        }
    } else if (atomic_load(&n->stepped_down)) {
        snprintf(reply, reply_size, "error this node stepped down (epoch %" PRIu64 " is the primary elsewhere)",
                 (uint64_t)atomic_load(&n->stepped_down));
    } else if (strcmp(req, "snapshot") == 0)
        answer_request(n, REQ_SNAPSHOT, reply, reply_size);
    else if (strcmp(req, "snapshot whole") == 0)
        answer_request(n, REQ_SNAPSHOT_WHOLE, reply, reply_size);
    else if (strcmp(req, "checkpoint") == 0)
        answer_request(n, REQ_CHECKPOINT, reply, reply_size);
    else
        snprintf(reply, reply_size, "error unknown request");
}

/* ------------------------------------------------------------ run */

/* A primary, with replicator r (NULL: none). */
/* The node's epoch (the epoch history, persist/store.h): on a restart the
 * one this directory began and still writes in, else a new one; a
 * promotion always begins a new one, above every epoch known.  Either is
 * committed (synced) with the history before anything is written in it. */
static int epoch_begin(struct node *n, int promote, const struct journal_header *last)
{
    uint64_t was = store_epoch_seen(n->s), fenced_by = 0, in_file = 0;
    char err[512] = "";
    /* FENCED_KEY: where a node before 2026-12-08 kept it */
    int rc = meta_read(n->s, FENCED_KEY, &fenced_by, sizeof fenced_by);

    if (rc && rc != RK_ENOTFOUND)
        return rc;
    rc = store_fence_read(n->s, &in_file, err, sizeof err);
    if (rc) {
        log_msg(LOG_ERROR, "cannot read the fence record: refused as fenced",
                "error=\"%s\" hint=\"%s holds the epoch "
                "a primary on this directory stepped down for; fix or remove it by hand only if no primary "
                "of that epoch exists\"",
                err[0] ? err : store_strerror(rc), STORE_FENCED_FILE);
        return RK_EFENCED; /* refused as fenced: it may well be */
    }
    if (in_file > fenced_by)
        fenced_by = in_file;
    if (fenced_by && !promote) {
        /* a stepped-down primary never begins an epoch by itself: it
         * would outrank the node it stepped down for */
        log_msg(LOG_ERROR, "this node stepped down: it does not start as a primary again",
                "fenced_by_epoch=%" PRIu64 " hint=\"start it as a standby of the new primary, or promote it "
                "(ringkeep node --promote) to make it the primary in a new epoch\"",
                fenced_by);
        return RK_EFENCED;
    }
    if (!promote)
        return store_epoch_resume(n->s, last->seq + 1, last->next_lsn, &n->epoch);
    /* automatic failover: the epoch etcd handed this node's election */
    uint64_t min = ha_won_epoch(node_ha) > fenced_by + 1 ? ha_won_epoch(node_ha) : fenced_by + 1;
    if (node_ha && !ha_won_epoch(node_ha)) {
        /* [ha], promoted by hand: etcd hands the epoch out first, as to
         * an election; an epoch only this directory knows of may be the
         * one etcd hands another node next, and two nodes would write
         * different entries in it */
        err[0] = '\0';
        if (min <= was)
            min = was + 1;
        rc = ha_reserve_epoch(node_ha, min, &min, err, sizeof err);
        if (rc) {
            log_msg(LOG_ERROR, "cannot promote", "error=\"%s\" action=rejoin", err);
            return RK_EFENCED;
        }
    }
    rc = store_epoch_begin(n->s, min, last->seq + 1, last->next_lsn, &n->epoch);
    if (!rc && node_ha && !ha_won_epoch(node_ha) && n->epoch != min) {
        /* store_epoch_begin goes above every epoch the directory saw; it
         * saw none above `was` */
        log_msg(LOG_ERROR, "cannot promote: the epoch begun is not the one etcd reserved",
                "epoch=%" PRIu64 " reserved=%" PRIu64 " action=rejoin", n->epoch, min);
        return RK_EFENCED;
    }
    if (!rc && fenced_by)
        rc = meta_write(n->s, FENCED_KEY, &(uint64_t){0}, sizeof(uint64_t));
    if (!rc && in_file)
        rc = store_fence_write(n->s, 0); /* after the epoch: a crash between leaves it fenced */
    if (!rc)
        log_msg(LOG_INFO, "promoted: a new epoch begins", "epoch=%" PRIu64 " previous=%" PRIu64, n->epoch, was);
    return rc;
}

int run_primary(const struct node_config *c, struct repl_primary *r, int promote, struct node_handover *open)
{
    struct node n = {.c = c,
                     .repl = r,
                     .test_kill_after_abort = getenv("RK_TEST_KILL_AFTER_ABORT") != NULL,
                     .test_cut_after_publish = getenv("RK_TEST_CUT_AFTER_PUBLISH")};
    struct journal_header last = {0};
    pthread_t apply_thread, control_thread;
    int rc, empty, short_journal, have_apply = 0, have_control = 0, have_ckpt = 0;
    char err[512] = "";
    uint64_t t_store = 0, t_applier = 0, t_ring = 0; /* where a start's time goes ("node started") */

    node_begin(&n);
    if (open && open->s) {
        n.s = open->s, n.a = open->a;
        open->s = NULL, open->a = NULL;
        rc = 0;
    } else {
        rc = store_open(c->data_dir, STORE_CREATE, c->cache_mb, &n.s, err, sizeof err);
    }
    t_store = now_ns();
    if (rc) {
        log_msg(LOG_ERROR, "cannot open the data directory", "data_dir=\"%s\" error=\"%s\"", c->data_dir,
                err);
        return 1;
    }
    n.promoted = promote;
    rc = store_journal_last(n.s, &last);
    if (rc && rc != RK_ENOTFOUND) {
        log_msg(LOG_ERROR, "cannot read the journal", "error=\"%s\"", store_strerror(rc));
        goto out;
    }
    empty = rc == RK_ENOTFOUND;
    rc = n.a ? 0 : applier_open(n.s, &n.a, err, sizeof err);
    if (rc) {
        log_msg(LOG_ERROR, "cannot open the applier", "error=\"%s\"", err);
        goto out;
    }
    /* before an epoch begins: a promotion that cannot serve must not
     * leave a higher epoch behind (a standby started here again would
     * depose the primary with it) */
    uint64_t loading_seq = 0;
    if (applier_load_interrupted(n.a, &loading_seq)) {
        log_msg(LOG_ERROR,
                "this data directory holds part of an interrupted checkpoint load: no state to serve",
                "checkpoint_seq=%" PRIu64 " data_dir=\"%s\" hint=\"start it as a standby: it sets the load "
                "aside and bootstraps again\"",
                loading_seq, c->data_dir);
        rc = RK_EBUSY;
        goto out;
    }
    t_applier = now_ns();
    /* a journal that ends below the state (a standby bootstrapped from a
     * checkpoint at J fetches again from its restart point R < J, the
     * first entry of a group open there, and was promoted while it held
     * R..K, K < J): its entries go once the epoch has begun (all at or
     * below what the state holds; the open groups they held are given
     * up below), and it goes on after the checkpoint as an empty one.
     * Begun at K + 1 and K's next LSN, the epoch's LSNs were below the
     * marks applied, and apply took the new groups for applied ones. */
    short_journal = !empty && last.seq < applier_meta(n.a).applied_seq;
    if (short_journal)
        log_msg(LOG_WARN, "the journal ends before the checkpoint loaded: it goes on after the checkpoint",
                "journal_seq=%" PRIu64 " applied_seq=%" PRIu64, last.seq, applier_meta(n.a).applied_seq);
    /* an empty journal after a bootstrap: it goes on after the checkpoint
     * loaded, not at seq 1 and LSN 0, where apply would take the new
     * entries for applied ones (A1, A3) */
    if ((empty || short_journal) && (rc = applier_journal_point(n.a, &last.seq, &last.next_lsn)) != 0) {
        log_msg(LOG_ERROR, "cannot read the producers' records in meta.db", "error=\"%s\"",
                store_strerror(rc));
        goto out;
    }
    if (empty && last.seq)
        log_msg(LOG_INFO, "the journal is empty: it goes on after the checkpoint loaded",
                "journal_seq=%" PRIu64 " next_lsn=%" PRIu64 " restart_seq=%" PRIu64, last.seq, last.next_lsn,
                applier_meta(n.a).restart_seq);
    rc = epoch_begin(&n, promote, &last);
    if (rc == RK_EFENCED)
        goto out;
    if (rc)
        fatal("cannot read or write the epoch history in meta.db", store_strerror(rc));
    /* groups open at that checkpoint: given up only now that this node
     * writes the journal (one fenced above stays a standby, which fetches
     * the entries they began in) */
    if (short_journal && (rc = store_journal_clear(n.s)) != 0)
        fatal("cannot remove the journal's entries below the checkpoint", store_strerror(rc));
    if ((empty || short_journal) && (rc = applier_restart_at(n.a, last.seq + 1)) != 0)
        fatal("cannot write the applier's restart point in meta.db", store_strerror(rc));
    n.journal_seq = last.seq;
    n.applied_seq = applier_meta(n.a).applied_seq;
    if (n.applied_seq > n.journal_seq)
        n.applied_seq = n.journal_seq;
    n.digest_at = applier_meta(n.a).digest;
    rc = open_ring(&n, last.next_lsn);
    if (rc)
        goto out;
    t_ring = now_ns();
    atomic_store(&n.drained_pos, atomic_load(&ring_header_of(n.ring)->head));
    atomic_store_explicit(&n.m.journal_seq, n.journal_seq, memory_order_relaxed); /* figures (metrics.h) */
    atomic_store_explicit(&n.m.applied_seq, n.applied_seq, memory_order_relaxed);
    /* where apply has read to: the end of the last entry it applied (the
     * whole journal, or an earlier entry if it lags); 0 if that entry
     * cannot be read: the drain then waits for apply's first step */
    if (n.applied_seq == n.journal_seq) {
        n.applied_pos = last.seq ? last.next_lsn : atomic_load(&n.drained_pos);
    } else if (n.applied_seq) {
        journal_entry e = {0};
        if (store_journal_get(n.s, n.applied_seq, &e, err, sizeof err) == 0)
            n.applied_pos = e.h.next_lsn;
        journal_entry_free(&e);
    }
    checkpoint_find_newest(&n);
    checkpoint_dirs_prepare(&n);
    /* [metrics] listen: before the threads, so that a port another
     * process holds stops the start cleanly */
    rc = metrics_start(&n, &n.metrics);
    if (rc)
        goto out;

    /* threads do not take the signals; the drain loop sees them */
    have_ckpt = checkpoint_threads_start(&n) == 0;
    have_apply = have_ckpt && start_thread(&apply_thread, apply_main, &n) == 0;
    have_control = control_start(&n, &control_thread) == 0;
    if (!have_apply || !have_control || !have_ckpt)
        fatal("cannot start threads", strerror(errno));
    ha_attach_primary(node_ha, &n);
    if (r) {
        repl_primary_on_higher_epoch(r, higher_epoch_seen, &n);
        repl_primary_on_standby_apply(r, standby_apply_caught_up, &n);
        if (repl_primary_start(r, n.s, n.ring, node_progress, &n) != 0)
            fatal("cannot start the replicator", "see the lines above");
    }
    log_msg(LOG_INFO, "node started",
            "role=%s epoch=%" PRIu64 " data_dir=\"%s\" ring=%s journal_seq=%" PRIu64 " applied_seq=%" PRIu64
            " pid=%d start_ms=%.1f store_open_ms=%.1f applier_open_ms=%.1f ring_ms=%.1f",
            c->role, n.epoch, c->data_dir, c->ring_name, n.journal_seq, n.applied_seq, (int)getpid(),
            (double)(now_ns() - atomic_load(&n.start_ns)) / 1e6, (double)(t_store - atomic_load(&n.start_ns)) / 1e6,
            (double)(t_applier - t_store) / 1e6, (double)(t_ring - t_applier) / 1e6);
    crashsim_serving(); /* a simulated power cut with option "serving" counts from here */
    notify_ready(&n.notify, "primary: epoch %" PRIu64 ", ring %s, journal seq %" PRIu64 ", applied seq %" PRIu64,
                 n.epoch, c->ring_name, n.journal_seq, n.applied_seq);

    drain(&n, last.seq, last.next_lsn);
    if (node_signal)
        notify_stopping(&n.notify, "stopping: applying what is journaled (journal seq %" PRIu64 ")",
                        n.journal_seq);

    log_msg(LOG_INFO, "stopping: applying what is journaled", "signal=%d journal_seq=%" PRIu64,
            (int)node_signal, n.journal_seq);
    pthread_mutex_lock(&n.lock);
    n.drain_done = 1;
    pthread_cond_broadcast(&n.journal_cond);
    pthread_mutex_unlock(&n.lock);
    pthread_join(apply_thread, NULL);
    checkpoint_threads_stop(&n);
    if (r)
        repl_primary_stop(r);
    atomic_store(&n.stop, 1);
    pthread_mutex_lock(&n.lock);
    pthread_cond_broadcast(&n.apply_cond);
    pthread_mutex_unlock(&n.lock);
    pthread_join(control_thread, NULL);
    log_msg(LOG_INFO, "node stopped", "journal_seq=%" PRIu64 " applied_seq=%" PRIu64, n.journal_seq,
            n.applied_seq);
    rc = 0;
out:
    ha_detach(node_ha);
    metrics_stop(n.metrics);
    snapshot_bases_drop(&n); /* the control thread's, which has stopped */
    applier_close(n.a);
    ring_close(n.ring, 0);
    store_close(n.s);
    if (rc == RK_EFENCED || atomic_load(&n.stepped_down))
        return NODE_EXIT_FENCED;
    return rc ? 1 : 0;
}
