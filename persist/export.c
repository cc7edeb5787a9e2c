/* export.c -- what leaves the applier: checkpoints and snapshots of the
 * state tables (the contract is in apply.h).  Both in two steps, so that
 * apply stalls only for the first:
 *
 *   applier_checkpoint_begin --> job (MVCC snapshot txn, meta read)
 *     --ckpt_job_write--> <seq>.rkcp written, read back, digest checked
 *     --ckpt_job_snapshot--> a state snapshot file for an engine
 *                            (persist/snapshot.h), not fsynced: ephemeral
 *     --ckpt_job_free--> snapshot ended
 *
 * Both read every table through cursor reads of many entries at a time
 * (walk_tables, DB_MULTIPLE_KEY).
 *
 * A primary's snapshots past apply (a fold: the journal entries since
 * through apply's rules, in memory) go on from a base, a whole snapshot
 * file kept mapped:
 *
 *   ckpt_job_snapshot_at --> file + base (*next, owns its file)
 *     --ckpt_job_overlay_at--> an overlay per request: the base's fold,
 *                              run on from the last request's point
 *     --ckpt_rebase_begin, ckpt_rebase_run (any thread)--> base + last
 *        overlay merged: a new base, which takes the fold over
 *        (ckpt_rebase_adopt_fold)
 *
 * Threads: applier_checkpoint_begin runs on the applier's thread between
 * applier_run calls (a group boundary).  A job then belongs to one thread
 * at a time, any thread: ckpt_job_write and ckpt_job_snapshot read through
 * their own Berkeley DB handles and the job's snapshot transaction, never
 * the applier's, and take no locks that block apply.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "persist/apply.h"
#include "persist/apply_impl.h"
#include "persist/bytes.h"
#include "persist/checkpoint.h"
#include "persist/log.h"
#include "persist/snapshot.h"
#include "shm/segment.h"

/* ------------------------------------------------------------ checkpoints */

struct ckpt_job {
    DB_ENV *env;
    DB *meta;
    DB_TXN *txn; /* DB_TXN_SNAPSHOT: the state as of applier_checkpoint_begin */
    /* a DB_MULTIVERSION handle on state.db, open from before txn began to
     * after it ended (snapshot_pin); NULL with no_tables */
    DB *pin;
    int no_tables; /* state.db did not exist at begin: the snapshot has no table */
    /* a base (ckpt_job_snapshot_at's *next): a whole snapshot file
     * written before, mapped read-only, that overlays are written over
     * (txn and pin NULL) */
    const uint8_t *base;
    size_t base_len;
    int base_fd; /* base's file, read-only, holding a read lease while mapped (map_shared); -1: none */
    /* a base's file, this job's own (unlinked by ckpt_job_free); engines
     * get links to it (ckpt_job_overlay_at) */
    char base_path[PATH_MAX];
    struct snap_info base_info; /* its header, producers and tables (snap_check_layout) */
    struct snap_slot *base_index; /* its entries' index, tables in order (key prefixes: base_find) */
    /* a base's fold, run on by each ckpt_job_overlay_at from where the
     * last one left it (NULL until the first) */
    applier *fold;
    /* what the overlays say, kept up to date from the fold's records as
     * they come (overlay_catch_up) instead of from all of them each time:
     * the last record of each key, sorted by (table index, key), whether
     * the base holds the key, and the state's digest */
    struct overlay_key *ov;
    size_t n_ov, cap_ov;
    size_t ov_done;     /* the fold's pending records [0, ov_done) are in ov */
    uint64_t ov_digest; /* the base's digest with ov's changes */
    /* the last overlay written (mapped before the engine could unlink it)
     * and what was applied at its point: a rebase merges it with the base */
    const uint8_t *ov_map;
    size_t ov_map_len;
    int ov_fd; /* its lease (map_shared); -1: none */
    struct apply_meta ov_am;
    struct base_range *ranges; /* the base's entries of each fold table (by index), once looked up */
    size_t n_ranges;
    uint64_t epoch;
    struct ckpt_info info; /* header and replay record, read in begin */
};

static int checkpoint_meta(ckpt_job *j, struct ckpt_info *info);
static void unmap_shared(const uint8_t *map, size_t len, int fd);

/* A key an overlay of a base holds: its last record in the fold. */
struct overlay_key {
    uint64_t off;     /* the record's frame in the fold's pending.buf (which may move: an offset) */
    uint64_t prefix;  /* the key's first 8 bytes (key_prefix): most comparisons end there */
    uint32_t table;   /* its table's index in the fold's tables */
    uint32_t in_base; /* the base holds the key: a DEL is a tombstone */
};


/* A fold table's entries in the base: [first, end) of base_index; end 0
 * when the base has not the table; looked up (1) or not yet (0).  limit:
 * the file offset where the table's bytes end, which bounds every length
 * read from its entries (base_entry). */
struct base_range {
    uint64_t first, end;
    uint64_t limit;
    int looked_up;
};

/* How long snapshot_pin waits for the applier's last table handle to be
 * let go of by a page write (PIN_WAIT_US at a time, PIN_TRIES times: 5 s) */
#define PIN_WAIT_US 100
#define PIN_TRIES 50000

/* Makes apply's writes to state.db copy the pages they change for as long
 * as job j's snapshot may read them.  The applier's table handles are not
 * DB_MULTIVERSION (apply.c, table_at: the copies cost 20-30% of its CPU);
 * Berkeley DB copies on write while any handle on the file is: the count
 * is the file's (mfp->multiversion, read by every page get), so each job
 * holds a handle of its own and the file stays multiversion until the
 * last job's is closed, whatever order jobs end in.  Opened on the
 * applier's thread between applier_run calls (no apply transaction open,
 * A2: every page written in place so far is committed, which a snapshot
 * sees as the page's oldest version), before the snapshot's first read,
 * and closed once its transaction has ended (snapshot_end): every page
 * the snapshot can read is either unchanged since it began or has the
 * version it needs.  No state.db yet: no table in the snapshot
 * (walk_tables). */
static int snapshot_pin(applier *a, ckpt_job *j)
{
    char why[512];
    int rc = 0;

    /* Berkeley DB opens a DB_MULTIVERSION handle only on a file that has
     * no handle open without it, read-only and flush handles aside,
     * unless one multiversion handle is open already ("BDB3041
     * DB_MULTIVERSION cannot be specified on a database file which is
     * already open": mp_fopen.c, MFP_OPEN_CNT): the applier's go first
     * (opened again, without, on their next use; while this one is open
     * they copy on write all the same) */
    apply_close_tables(a);
    for (int tries = 0;; tries++) {
        rc = db_create(&j->pin, j->env, 0);
        if (rc) {
            j->pin = NULL;
            return rc;
        }
        rc = j->pin->open(j->pin, NULL, STATE_FILE, NULL, DB_BTREE,
                          DB_RDONLY | DB_THREAD | DB_MULTIVERSION | DB_AUTO_COMMIT, 0);
        if (!rc)
            break;
        j->pin->close(j->pin, 0);
        j->pin = NULL;
        if (rc == ENOENT) {
            j->no_tables = 1;
            return 0;
        }
        /* BDB3041 with the applier's handles closed: a page write on
         * another thread -- the log checkpoint's memp_sync, a cache
         * eviction -- took the applier's last handle on the file
         * (mp_bh.c, __memp_bhwrite: the first writable DB_MPOOLFILE the
         * process has on it, referenced for the write), so closing it only
         * dropped a reference and it counts as a writable open until the
         * write ends, when it becomes a flush handle (neutral).  Then, or
         * once a flush handle's two counts are both taken, the open passes:
         * seen 1-17 retries of 100 us later in test_node (every time with
         * the log checkpoint thread inside store_log_checkpoint).  This
         * was the CI failure of 92679fa (rk_state_open -> EIO). */
        store_last_error(a->s, why, sizeof why);
        if (rc != EINVAL || !strstr(why, "BDB3041") || tries == PIN_TRIES)
            return rc;
        usleep(PIN_WAIT_US);
    }
    return 0;
}

/* Ends j's snapshot (read only: its commit writes nothing), then its
 * hold on state.db's multiversion count (other jobs keep their own). */
static void snapshot_end(ckpt_job *j)
{
    if (j->txn)
        j->txn->commit(j->txn, 0);
    j->txn = NULL;
    if (j->pin)
        j->pin->close(j->pin, 0);
    j->pin = NULL;
}

/* Begins a job on a's store: on the applier's thread, between applier_run
 * calls (A2: what apply has committed is a group boundary, and no apply
 * transaction has written a page in place that the snapshot could read),
 * the only place state.db can be made multiversion (snapshot_pin).  There
 * is no way to begin one elsewhere: a snapshot begun with no pin open
 * reads pages apply writes in place. */
int applier_checkpoint_begin(applier *a, uint64_t epoch, ckpt_job **out)
{
    ckpt_job *j;
    int rc;

    *out = NULL;
    if (a->txn || a->fold)
        return RK_EINVAL; /* only between applier_run calls: at a group boundary (A2) */
    j = calloc(1, sizeof *j);
    if (!j)
        return ENOMEM;
    j->base_fd = j->ov_fd = -1;
    j->env = a->env;
    j->meta = a->meta;
    j->epoch = epoch;
    rc = snapshot_pin(a, j);
    if (rc) {
        free(j);
        return rc;
    }
    /* A snapshot (MVCC: meta.db is opened DB_MULTIVERSION, state.db is
     * while snapshot_pin's handle is open; the journal is not, so the
     * drain's appends never copy pages for a reader that does not read
     * them): it sees what was committed before it began -- every group
     * applier_run applied, with the meta records of the same transactions
     * -- takes no read locks and never blocks apply, whose writes copy
     * the pages it holds. */
    rc = j->env->txn_begin(j->env, NULL, &j->txn, DB_TXN_SNAPSHOT);
    if (rc) {
        j->txn = NULL;
        ckpt_job_free(j);
        return rc;
    }
    /* read meta.db in the snapshot now, on the thread that begins it:
     * Berkeley DB fixes a snapshot's view at its first read, not at
     * txn_begin (a checkpoint thread that read first, later, saw groups
     * applied after this point: test_node caught a checkpoint 79 heights
     * late) */
    rc = checkpoint_meta(j, &j->info);
    /* the epochs its state went through and the one the next entry is in
     * (only the history's end changes while apply runs) */
    if (!rc)
        rc = store_history(a->s, &j->info.history, &j->info.n_history);
    if (!rc)
        j->info.n_history = history_cut(j->info.history, j->info.n_history, j->info.journal_seq + 1);
    if (rc) {
        ckpt_job_free(j);
        return rc;
    }
    *out = j;
    return 0;
}

uint64_t ckpt_job_applied_seq(const ckpt_job *j)
{
    return j->info.journal_seq;
}

void ckpt_job_free(ckpt_job *j)
{
    if (!j)
        return;
    snapshot_end(j);
    applier_close(j->fold);
    free(j->ov);
    free(j->ranges);
    unmap_shared(j->ov_map, j->ov_map_len, j->ov_fd);
    unmap_shared(j->base, j->base_len, j->base_fd);
    if (j->base_path[0])
        unlink(j->base_path);
    free(j->base_index);
    ckpt_info_free(&j->info);
    free(j);
}

/* Fills info (header and replay record) from meta.db as the snapshot sees
 * it: "applied", every "p:" record and "maps". */
static int checkpoint_meta(ckpt_job *j, struct ckpt_info *info)
{
    struct ckpt_replay *rp = &info->replay;
    struct apply_meta am;
    struct maps_record *maps = NULL;
    DBC *cur = NULL;
    DBT k = {0}, v = {0};
    DBT ak = {.data = "applied", .size = 7}, av = {.data = &am, .ulen = sizeof am, .flags = DB_DBT_USERMEM};
    DBT mk = {.data = "maps", .size = 4}, mv = {.ulen = sizeof *maps, .flags = DB_DBT_USERMEM};
    int rc = j->meta->get(j->meta, j->txn, &ak, &av, 0);

    if (rc == DB_NOTFOUND) {
        memset(&am, 0, sizeof am);
        am.restart_seq = 1;
        rc = 0;
    } else if (!rc && av.size != sizeof am) {
        return RK_ECORRUPT;
    }
    if (rc)
        return rc;
    info->epoch = j->epoch;
    info->journal_seq = am.applied_seq;
    info->lsn = am.applied_lsn;
    info->digest = am.digest; /* what the tables must add up to (checked after) */
    info->has_replay = 1;
    rp->restart_seq = am.restart_seq;
    rp->n_groups = am.n_groups;
    rp->n_records = am.n_records;
    rp->n_discarded = am.n_discarded;
    rc = j->meta->cursor(j->meta, j->txn, &cur, 0);
    while (!rc && (rc = cur->get(cur, &k, &v, DB_NEXT)) == 0) {
        struct producer_meta m;
        void *grown;
        if (k.size < 3 || k.size - 2 > RK_NAME_MAX || memcmp(k.data, "p:", 2) != 0 || v.size != sizeof m)
            continue;
        memcpy(&m, v.data, sizeof m);
        grown = realloc(rp->producers, (rp->n_producers + 1) * sizeof *rp->producers);
        if (!grown) {
            rc = ENOMEM;
            break;
        }
        rp->producers = grown;
        struct ckpt_replay_producer *rpp = &rp->producers[rp->n_producers++];
        memset(rpp, 0, sizeof *rpp);
        memcpy(rpp->name, (char *)k.data + 2, k.size - 2);
        rpp->applied_lsn = m.applied_lsn;
        rpp->height = m.height;
        rpp->n_groups = m.n_groups;
        rpp->discard_lsn = m.discard_lsn;
        if (m.n_groups == 0)
            continue; /* the header lists producers with a mark */
        grown = realloc(info->producers, (info->n_producers + 1) * sizeof *info->producers);
        if (!grown) {
            rc = ENOMEM;
            break;
        }
        info->producers = grown;
        struct ckpt_producer *p = &info->producers[info->n_producers++];
        memset(p, 0, sizeof *p);
        memcpy(p->name, rpp->name, sizeof p->name);
        p->height = m.height;
        p->applied_lsn = m.applied_lsn;
    }
    if (cur)
        cur->close(cur);
    if (rc != DB_NOTFOUND)
        return rc;
    maps = malloc(sizeof *maps);
    rp->table_ids = calloc(RING_MAX_TABLES, sizeof *rp->table_ids);
    rp->slots = calloc(RING_MAX_PRODUCERS, sizeof *rp->slots);
    if (!maps || !rp->table_ids || !rp->slots) {
        free(maps);
        return ENOMEM;
    }
    mv.data = maps;
    rc = j->meta->get(j->meta, j->txn, &mk, &mv, 0);
    if (rc == 0 && mv.size != sizeof *maps)
        rc = RK_ECORRUPT;
    if (rc == 0) {
        for (uint32_t i = 0; i < RING_MAX_TABLES; i++)
            if (maps->table_map[i][0]) {
                rp->table_ids[rp->n_table_ids].id = i;
                memcpy(rp->table_ids[rp->n_table_ids++].name, maps->table_map[i], RK_NAME_MAX + 1);
            }
        for (uint32_t i = 0; i < RING_MAX_PRODUCERS; i++)
            if (maps->slot_map[i][0]) {
                rp->slots[rp->n_slots].id = i;
                memcpy(rp->slots[rp->n_slots++].name, maps->slot_map[i], RK_NAME_MAX + 1);
            }
    }
    free(maps);
    return rc == DB_NOTFOUND ? 0 : rc;
}

/* What walk_tables calls: once per table before its entries, then for
 * each entry (key and value point into the bulk buffer: valid during the
 * call only).  Non-zero stops the walk and is returned. */
struct table_visitor {
    int (*table)(void *arg, const char *name);
    int (*entry)(void *arg, const char *name, const void *key, uint32_t klen, const void *val, uint32_t vlen);
    void *arg;
};

#define BULK_BUFFER (4u << 20) /* one DB_MULTIPLE_KEY read: about 50k small entries */

/* Reads every entry of table db through cursor reads of many entries at a
 * time (DB_MULTIPLE_KEY: one call copies a run of pages' entries, instead
 * of one call per entry). */
static int walk_table(DB *db, DB_TXN *txn, const char *name, const struct table_visitor *v, uint8_t **buf,
                      uint32_t *buf_size)
{
    DBC *cur = NULL;
    DBT bk = {0}, bv = {0};
    int rc = db->cursor(db, txn, &cur, 0);

    while (!rc) {
        void *p;
        bv.data = *buf;
        bv.ulen = *buf_size;
        bv.flags = DB_DBT_USERMEM;
        rc = cur->get(cur, &bk, &bv, DB_NEXT | DB_MULTIPLE_KEY);
        if (rc == DB_BUFFER_SMALL) { /* one entry larger than the buffer */
            uint32_t size = *buf_size;
            while (size < bv.size)
                size *= 2;
            uint8_t *grown = realloc(*buf, size);
            if (!grown) {
                rc = ENOMEM;
                break;
            }
            *buf = grown;
            *buf_size = size;
            rc = 0;
            continue;
        }
        if (rc)
            break;
        DB_MULTIPLE_INIT(p, &bv);
        for (;;) {
            void *kd, *vd;
            u_int32_t kl, vl;
            DB_MULTIPLE_KEY_NEXT(p, &bv, kd, kl, vd, vl);
            if (!p)
                break;
            rc = v->entry(v->arg, name, kd, kl, vd, vl);
            if (rc)
                break;
        }
    }
    if (cur)
        cur->close(cur);
    return rc == DB_NOTFOUND ? 0 : rc;
}

/* Visits every entry of every table (in name order, keys in byte order) as
 * the job's snapshot sees them, through handles of its own (the
 * applier's are its thread's). */
static int walk_tables(ckpt_job *j, const struct table_visitor *v)
{
    DB *master = NULL;
    DBC *cur = NULL;
    DBT k = {0}, d = {0};
    uint32_t buf_size = BULK_BUFFER;
    uint8_t *buf;
    int rc;

    if (j->no_tables)
        return 0;
    buf = malloc(buf_size);
    rc = buf ? db_create(&master, j->env, 0) : ENOMEM;
    if (!rc)
        rc = master->open(master, j->txn, STATE_FILE, NULL, DB_BTREE, DB_RDONLY | DB_THREAD | DB_MULTIVERSION, 0);
    if (rc == ENOENT) {
        rc = 0; /* no table yet */
        goto out;
    }
    if (!rc)
        rc = master->cursor(master, j->txn, &cur, 0);
    while (!rc && (rc = cur->get(cur, &k, &d, DB_NEXT)) == 0) {
        char name[RK_NAME_MAX + 1], sub[RK_NAME_MAX + 3];
        DB *src = NULL;
        if (k.size < 3 || k.size - 2 > RK_NAME_MAX || memcmp(k.data, "t:", 2) != 0)
            continue;
        memcpy(name, (char *)k.data + 2, k.size - 2);
        name[k.size - 2] = '\0';
        snprintf(sub, sizeof sub, "t:%s", name);
        rc = db_create(&src, j->env, 0);
        if (!rc)
            rc = src->open(src, j->txn, STATE_FILE, sub, DB_BTREE, DB_RDONLY | DB_THREAD | DB_MULTIVERSION, 0);
        if (!rc && v->table)
            rc = v->table(v->arg, name);
        if (!rc)
            rc = walk_table(src, j->txn, name, v, &buf, &buf_size);
        if (src)
            src->close(src, 0);
    }
    if (rc == DB_NOTFOUND)
        rc = 0;
out:
    if (cur)
        cur->close(cur);
    if (master)
        master->close(master, 0);
    free(buf);
    return rc;
}

static int checkpoint_entry(void *arg, const char *name, const void *key, uint32_t klen, const void *val,
                            uint32_t vlen)
{
    return ckpt_writer_add(arg, name, key, klen, val, vlen);
}

int ckpt_job_write(ckpt_job *j, const char *dir, int zstd_level, char *path_out, size_t path_size,
                   struct ckpt_info *written, char *err, size_t err_size)
{
    const struct ckpt_info *info = &j->info;
    ckpt_writer *w = NULL;
    int rc;

    if (j->base)
        return RK_EINVAL; /* a base has no epoch history: checkpoints come from the store */

    memset(written, 0, sizeof *written);
    rc = ckpt_writer_open(dir, info, zstd_level, &w, err, err_size);
    if (!rc) {
        struct table_visitor v = {.entry = checkpoint_entry, .arg = w};
        /* A5, checked before the file is published: checked after, a
         * crash in between left a file that disagrees with apply's digest
         * (and it replaced one of the same seq) */
        ckpt_writer_expect_digest(w, info->digest);
        rc = walk_tables(j, &v);
    }
    snapshot_end(j); /* the page versions it held are free */
    /* The state the file describes on disk before the file: apply commits
     * without sync, so its last groups may be in the log buffer or the
     * page cache only.  A file published first and a power cut after it
     * left the newest checkpoint ahead of state.db, and the journal was
     * then trimmed to that file's restart point, past where apply restarts
     * (retain.h).  Every commit the snapshot saw is in the log by now. */
    if (!rc && (rc = j->env->log_flush(j->env, NULL)) != 0)
        seg_error(err, err_size, "checkpoint: cannot flush the Berkeley DB log of the state it holds: %s",
                  store_strerror(rc));
    if (rc) {
        ckpt_writer_abort(w);
        goto out;
    }
    rc = ckpt_writer_finish(w, path_out, path_size, err, err_size);
    if (!rc)
        rc = ckpt_read_info(path_out, written, err, err_size);
out:
    if (rc)
        ckpt_info_free(written);
    if (rc && err && !err[0])
        seg_error(err, err_size, "checkpoint: %s", store_strerror(rc));
    return rc;
}

/* ------------------------------------------------------------ snapshots */

static int snapshot_table(void *arg, const char *name)
{
    return snap_writer_table(arg, name);
}

static int snapshot_entry(void *arg, const char *name, const void *key, uint32_t klen, const void *val,
                          uint32_t vlen)
{
    (void)name;
    return snap_writer_add(arg, key, klen, val, vlen);
}

/* What was applied as job j's snapshot sees it (meta.db's "applied"). */
static struct apply_meta job_applied(const ckpt_job *j)
{
    const struct ckpt_info *info = &j->info;
    const struct ckpt_replay *rp = &info->replay;

    return (struct apply_meta){.restart_seq = rp->restart_seq,
                               .applied_seq = info->journal_seq,
                               .applied_lsn = info->lsn,
                               .n_groups = rp->n_groups,
                               .n_records = rp->n_records,
                               .n_discarded = rp->n_discarded,
                               .digest = info->digest};
}

int ckpt_job_snapshot(ckpt_job *j, const char *path, uint64_t *n_entries, char *err, size_t err_size)
{
    const struct ckpt_info *info = &j->info;
    const struct ckpt_replay *rp = &info->replay;
    struct apply_meta am = job_applied(j);
    struct snap_producer *producers = calloc(rp->n_producers ? rp->n_producers : 1, sizeof *producers);
    snap_writer *w = NULL;
    int rc = j->base ? RK_EINVAL : producers ? snap_writer_open(path, &w, err, err_size) : ENOMEM;

    *n_entries = 0;
    if (!rc) {
        struct table_visitor v = {.table = snapshot_table, .entry = snapshot_entry, .arg = w};
        rc = walk_tables(j, &v);
    }
    snapshot_end(j); /* the page versions it held are free */
    if (rc) {
        snap_writer_abort(w);
        if (!err[0])
            seg_error(err, err_size, "snapshot %s: %s", path, store_strerror(rc));
        goto out;
    }
    for (uint32_t i = 0; i < rp->n_producers; i++) {
        memcpy(producers[i].name, rp->producers[i].name, sizeof producers[i].name);
        producers[i].m.applied_lsn = rp->producers[i].applied_lsn;
        producers[i].m.height = rp->producers[i].height;
        producers[i].m.n_groups = rp->producers[i].n_groups;
        producers[i].m.discard_lsn = rp->producers[i].discard_lsn;
    }
    *n_entries = snap_writer_entries(w);
    rc = snap_writer_finish(w, &am, NULL, producers, rp->n_producers, err, err_size);
out:
    free(producers);
    return rc;
}

/* ------------------------------------------------------------ snapshots past apply */

/* A fold: the journal entries after job j's snapshot, up to the one a
 * request must be served at, taken through apply's own rules
 * (applier_run, apply_frame: groups held until their MARK, voided by an
 * ATTACH or ABORT, frames at or below their producer's mark skipped) by an
 * applier of its own in fold mode (apply_impl.h), which starts from the
 * snapshot's "applied", producers and maps exactly as apply does after a
 * restart (A3, A4) and keeps the records of the groups it completes in
 * its pending list instead of writing them.  The snapshot file is then
 * the snapshot's tables with those records merged in (fold_merge): what
 * apply's tables hold once it has applied the same entries. */
static int fold_open(ckpt_job *j, store *s, applier **out)
{
    const struct ckpt_replay *rp = &j->info.replay;
    applier *a = calloc(1, sizeof *a);

    *out = NULL;
    if (!a)
        return ENOMEM;
    a->s = s;
    a->env = j->env;
    a->meta = j->meta;
    a->fold = 1;
    a->watch_producer = SIZE_MAX;
    a->am = job_applied(j);
    a->next_seq = a->am.restart_seq ? a->am.restart_seq : 1; /* A4, as applier_open */
    for (uint32_t i = 0; i < rp->n_table_ids; i++)
        apply_map_table(a, rp->table_ids[i].id, rp->table_ids[i].name);
    for (uint32_t i = 0; i < rp->n_slots; i++)
        apply_map_slot(a, rp->slots[i].id, rp->slots[i].name);
    for (uint32_t i = 0; i < rp->n_producers; i++) {
        struct producer *p = apply_producer(a, rp->producers[i].name);
        if (!p) {
            applier_close(a);
            return ENOMEM;
        }
        p->m = (struct producer_meta){.applied_lsn = rp->producers[i].applied_lsn,
                                      .height = rp->producers[i].height,
                                      .n_groups = rp->producers[i].n_groups,
                                      .discard_lsn = rp->producers[i].discard_lsn};
        p->dirty = 1; /* here: the producer has a record in meta.db */
    }
    *out = a;
    return 0;
}

/* The snapshot's tables (walk_tables) and a fold's records, merged into a
 * snapshot file: both in table name order, keys in Berkeley DB's order;
 * of a key's records in the fold only the last counts (pending_sort keeps
 * journal order among them), a PUT replacing or adding the entry, a DEL
 * removing it; the state digest follows (A5). */
struct fold_merge {
    snap_writer *w;
    const applier *a;        /* the fold: its tables' names */
    const struct pending *pd; /* its records, sorted (pending_sort) */
    const size_t *by_name;   /* the fold's tables (indexes in a->tables) in name order */
    const size_t *first;     /* table t's records are [first[t], first[t + 1]) */
    size_t next;             /* by_name[next]: the first fold table not yet reached */
    size_t at, end;          /* the current table's fold records not yet written */
    char name[RK_NAME_MAX + 1]; /* the current table */
    uint64_t digest;
};

/* The last record of the key of record i in the current table. */
static size_t fold_last_of_key(const struct fold_merge *m, size_t i)
{
    const struct pending_record *r = m->pd->records;

    while (i + 1 < m->end && ckpt_key_cmp(r[i].key, r[i].klen, r[i + 1].key, r[i + 1].klen) == 0)
        i++;
    return i;
}

/* Writes fold record i (the last of its key) if it is a PUT. */
static int fold_write(struct fold_merge *m, size_t i)
{
    const struct pending_record *r = &m->pd->records[i];
    struct frame_header h;
    const uint8_t *val = r->key + r->klen;
    uint32_t vlen;

    memcpy(&h, m->pd->buf + r->off, sizeof h);
    if (h.type != FRAME_PUT)
        return 0; /* a DEL: the key is not in the state */
    vlen = h.length - FRAME_HEADER_SIZE - r->klen;
    m->digest += ckpt_entry_digest(m->name, r->key, r->klen, val, vlen);
    return snap_writer_add(m->w, r->key, r->klen, val, vlen);
}

/* Writes what is left of the current table's fold records. */
static int fold_flush(struct fold_merge *m)
{
    int rc = 0;

    while (!rc && m->at < m->end) {
        size_t i = fold_last_of_key(m, m->at);
        m->at = i + 1;
        rc = fold_write(m, i);
    }
    return rc;
}

/* Begins table name in the file; its fold records (if the fold has the
 * table: it is next in name order) become the current ones. */
static int fold_table_begin(struct fold_merge *m, const char *name)
{
    const struct table *tables = m->a->tables;

    snprintf(m->name, sizeof m->name, "%s", name);
    m->at = m->end = 0;
    if (m->next < m->a->n_tables && strcmp(tables[m->by_name[m->next]].name, name) == 0) {
        size_t t = m->by_name[m->next++];
        m->at = m->first[t];
        m->end = m->first[t + 1];
    }
    return snap_writer_table(m->w, name);
}

/* Ends the current table, then writes the fold's tables the snapshot does
 * not have whose names come before name (every one left: name NULL). */
static int fold_tables_before(struct fold_merge *m, const char *name)
{
    int rc = fold_flush(m);

    while (!rc && m->next < m->a->n_tables &&
           (!name || strcmp(m->a->tables[m->by_name[m->next]].name, name) < 0)) {
        rc = fold_table_begin(m, m->a->tables[m->by_name[m->next]].name);
        if (!rc)
            rc = fold_flush(m);
    }
    return rc;
}

static int merge_table(void *arg, const char *name)
{
    struct fold_merge *m = arg;
    int rc = fold_tables_before(m, name);

    return rc ? rc : fold_table_begin(m, name);
}

static int merge_entry(void *arg, const char *name, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct fold_merge *m = arg;
    const struct pending_record *r = m->pd->records;

    (void)name;
    while (m->at < m->end) {
        int c = ckpt_key_cmp(r[m->at].key, r[m->at].klen, key, klen);
        size_t i;
        if (c > 0)
            break;
        i = fold_last_of_key(m, m->at);
        m->at = i + 1;
        if (c < 0) {
            int rc = fold_write(m, i);
            if (rc)
                return rc;
            continue;
        }
        /* the fold's last record of this key replaces the entry */
        m->digest -= ckpt_entry_digest(m->name, key, klen, val, vlen);
        return fold_write(m, i);
    }
    return snap_writer_add(m->w, key, klen, val, vlen);
}

static int name_order(const void *x, const void *y, void *tables)
{
    const struct table *t = tables;

    return strcmp(t[*(const size_t *)x].name, t[*(const size_t *)y].name);
}

static int producer_order(const void *x, const void *y)
{
    return strcmp(((const struct snap_producer *)x)->name, ((const struct snap_producer *)y)->name);
}

/* Sorts fold a's records (pending_sort: by table index, then key) and
 * says where each table's are -- [first[t], first[t + 1]) -- and the
 * tables in name order (by_name: indexes in a->tables); both the
 * caller's to free.  ENOMEM. */
static int fold_order(applier *a, size_t **by_name, size_t **first)
{
    struct pending *pd = &a->pending;

    *by_name = calloc(a->n_tables + 1, sizeof **by_name);
    *first = calloc(a->n_tables + 1, sizeof **first);
    if (!*by_name || !*first)
        return ENOMEM;
    pending_sort(pd);
    for (size_t i = 0; i < pd->n_records; i++)
        (*first)[pd->records[i].table + 1]++;
    for (size_t t = 0; t < a->n_tables; t++) {
        (*first)[t + 1] += (*first)[t];
        (*by_name)[t] = t;
    }
    qsort_r(*by_name, a->n_tables, sizeof **by_name, name_order, a->tables);
    return 0;
}

/* The producers with a record in meta.db at fold a's end: the snapshot's
 * it began from and those the fold gave one (dirty), in meta.db's key
 * order, into producers (a->n_producers of them at most); how many. */
static size_t fold_producers(const applier *a, struct snap_producer *producers)
{
    size_t n = 0;

    for (size_t i = 0; i < a->n_producers; i++) {
        if (!a->producers[i].dirty)
            continue;
        memcpy(producers[n].name, a->producers[i].name, sizeof producers[n].name);
        producers[n++].m = a->producers[i].m;
    }
    qsort(producers, n, sizeof *producers, producer_order);
    return n;
}

/* Writes the snapshot file of job j with fold a's records merged in;
 * am: what was applied at the fold's end, its digest brought up to date
 * here. */
static int fold_write_snapshot(ckpt_job *j, applier *a, struct apply_meta *am, const char *path,
                               uint64_t *n_entries, char *err, size_t err_size)
{
    size_t *by_name = NULL, *first = NULL;
    struct snap_producer *producers = calloc(a->n_producers + 1, sizeof *producers);
    struct fold_merge m = {.a = a, .pd = &a->pending, .digest = am->digest};
    int rc = producers ? fold_order(a, &by_name, &first) : ENOMEM;

    *n_entries = 0;
    m.by_name = by_name;
    m.first = first;
    if (!rc)
        rc = snap_writer_open(path, &m.w, err, err_size);
    if (!rc) {
        struct table_visitor v = {.table = merge_table, .entry = merge_entry, .arg = &m};
        rc = walk_tables(j, &v);
        if (!rc)
            rc = fold_tables_before(&m, NULL);
    }
    if (j->txn) {
        j->txn->commit(j->txn, 0); /* read only; the pages it held are free */
        j->txn = NULL;
    }
    if (rc) {
        snap_writer_abort(m.w);
        if (!err[0])
            seg_error(err, err_size, "snapshot %s: %s", path, store_strerror(rc));
        goto out;
    }
    am->digest = m.digest;
    *n_entries = snap_writer_entries(m.w);
    rc = snap_writer_finish(m.w, am, NULL, producers, fold_producers(a, producers), err, err_size);
out:
    free(by_name);
    free(first);
    free(producers);
    return rc;
}

/* Base b's index: where each of its entries is, so that an overlay finds
 * the entries its keys replace (base_find).  Its file was just written by
 * this process, but it is on disk, where an engine could change it (it
 * gets links to it): its layout is checked and every length bounded by
 * its table (and again at each lookup, base_entry: the file may change
 * after); a change that keeps them is the engine's to see (its hashes,
 * snap_verify) -- the overlay names the base's hash. */
static int base_index(ckpt_job *b)
{
    struct snap_info *info = &b->base_info;
    char why[256];
    uint64_t n = 0;

    if (snap_check_layout(b->base, b->base_len, info, why, sizeof why) != 0)
        return RK_ECORRUPT;
    b->base_index = malloc((info->h.n_entries ? info->h.n_entries : 1) * sizeof *b->base_index);
    if (!b->base_index)
        return ENOMEM;
    for (uint64_t i = 0; i < info->h.n_tables; i++) {
        struct snap_table t;
        const uint8_t *at, *end;
        memcpy(&t, info->tables + i * sizeof t, sizeof t);
        at = b->base + t.offset;
        end = at + t.size;
        for (uint64_t e = 0; e < t.n_entries; e++) {
            uint32_t lens[2];
            if ((size_t)(end - at) < sizeof lens || n == info->h.n_entries)
                return RK_ECORRUPT;
            memcpy(lens, at, sizeof lens);
            if ((uint64_t)lens[0] + lens[1] > (uint64_t)(end - at) - sizeof lens)
                return RK_ECORRUPT;
            b->base_index[n++] = (struct snap_slot){.off = (uint64_t)(at - b->base),
                                                    .prefix = key_prefix(at + sizeof lens, lens[0])};
            at += sizeof lens + lens[0] + lens[1];
        }
    }
    return n == info->h.n_entries ? 0 : RK_ECORRUPT;
}

/* Base b's entry i (an index in base_index, of the table of range br):
 * its key and value.  The file is mapped shared and engines get links to
 * it: its lengths are read again here, long after base_index bounded
 * them, and may have changed since -- each is bounded by its table's end
 * again (RK_ECORRUPT: the base goes, the store serves), so that a stray
 * write to a length cannot send a read past the mapping. */
static int base_entry(const ckpt_job *b, const struct base_range *br, uint64_t i, const uint8_t **key,
                      uint32_t *klen, const uint8_t **val, uint32_t *vlen)
{
    uint64_t off = b->base_index[i].off;
    const uint8_t *at = b->base + off;
    uint32_t lens[2];

    if (off > br->limit || br->limit - off < sizeof lens)
        return RK_ECORRUPT;
    memcpy(lens, at, sizeof lens);
    if ((uint64_t)lens[0] + lens[1] > br->limit - off - sizeof lens)
        return RK_ECORRUPT;
    *key = at + sizeof lens;
    *klen = lens[0];
    *val = *key + lens[0];
    *vlen = lens[1];
    return 0;
}

/* Order of base b's entry i (of range br) and key (prefix: key_prefix(key,
 * klen)) in *order; 0 or RK_ECORRUPT (base_entry). */
static int base_cmp(const ckpt_job *b, const struct base_range *br, uint64_t i, const uint8_t *key, uint32_t klen,
                    uint64_t prefix, int *order)
{
    const uint8_t *k, *v;
    uint32_t kl, vl;
    int rc;

    if (b->base_index[i].prefix != prefix) {
        *order = b->base_index[i].prefix < prefix ? -1 : 1;
        return 0;
    }
    if ((rc = base_entry(b, br, i, &k, &kl, &v, &vl)) != 0)
        return rc;
    *order = ckpt_key_cmp(k, kl, key, klen);
    return 0;
}

/* The first entry of base b in [*at, br->end) whose key is >= key (in
 * *found): galloping from *at (an overlay looks its keys up in ascending
 * order, so each search starts where the last one ended: a few steps a
 * key when they are many, a bisection's when few), which it moves there.
 * 0 or RK_ECORRUPT (base_entry). */
static int base_find(const ckpt_job *b, const struct base_range *br, uint64_t *at, const uint8_t *key,
                     uint32_t klen, uint64_t *found)
{
    uint64_t lo = *at, hi, step = 1, end = br->end, prefix = key_prefix(key, klen);
    int order = 0, rc = 0;

    /* every entry before lo is < key */
    for (;;) {
        hi = end - lo > step ? lo + step : end;
        if (hi == end || (rc = base_cmp(b, br, hi - 1, key, klen, prefix, &order)) != 0 || order >= 0)
            break;
        lo = hi;
        step *= 2;
    }
    while (!rc && lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if ((rc = base_cmp(b, br, mid, key, klen, prefix, &order)) != 0)
            break;
        if (order < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    *found = lo;
    return rc;
}

/* The base a next snapshot can start from (*out), but its file
 * (base_job_map): what was applied at am and what a fold from it needs --
 * fold a's producers with a record and its maps at am's restart point,
 * which is what apply's commit at am.applied_seq writes in
 * meta.db (apply_txn_commit).  A fold from a base then starts where apply
 * would after a restart at that point (A3, A4): the same rules, from the
 * same records. */
static int base_job_info(const ckpt_job *j, const applier *a, const struct apply_meta *am, ckpt_job **out)
{
    ckpt_job *b = calloc(1, sizeof *b);
    struct maps_record *maps;
    struct ckpt_replay *rp;
    int rc = 0;

    *out = NULL;
    if (!b)
        return ENOMEM;
    b->base_fd = b->ov_fd = -1;
    b->env = j->env;
    b->meta = j->meta;
    b->epoch = j->epoch;
    b->info.epoch = j->epoch;
    b->info.journal_seq = am->applied_seq;
    b->info.lsn = am->applied_lsn;
    b->info.digest = am->digest;
    b->info.has_replay = 1;
    rp = &b->info.replay;
    rp->restart_seq = am->restart_seq;
    rp->n_groups = am->n_groups;
    rp->n_records = am->n_records;
    rp->n_discarded = am->n_discarded;
    rp->producers = calloc(a->n_producers + 1, sizeof *rp->producers);
    rp->table_ids = calloc(RING_MAX_TABLES, sizeof *rp->table_ids);
    rp->slots = calloc(RING_MAX_PRODUCERS, sizeof *rp->slots);
    if (!rp->producers || !rp->table_ids || !rp->slots)
        rc = ENOMEM;
    for (size_t i = 0; !rc && i < a->n_producers; i++) {
        const struct producer *p = &a->producers[i];
        if (!p->dirty)
            continue; /* no record in meta.db (fold_write_snapshot) */
        struct ckpt_replay_producer *rpp = &rp->producers[rp->n_producers++];
        memcpy(rpp->name, p->name, sizeof rpp->name);
        rpp->applied_lsn = p->m.applied_lsn;
        rpp->height = p->m.height;
        rpp->n_groups = p->m.n_groups;
        rpp->discard_lsn = p->m.discard_lsn;
    }
    maps = rc ? NULL : malloc(sizeof *maps);
    if (!rc && !maps)
        rc = ENOMEM;
    if (!rc)
        apply_maps_at(a, am->restart_seq, maps); /* A6: as apply's commit writes them */
    for (uint32_t i = 0; !rc && i < RING_MAX_TABLES; i++)
        if (maps->table_map[i][0]) {
            rp->table_ids[rp->n_table_ids].id = i;
            memcpy(rp->table_ids[rp->n_table_ids++].name, maps->table_map[i], RK_NAME_MAX + 1);
        }
    for (uint32_t i = 0; !rc && i < RING_MAX_PRODUCERS; i++)
        if (maps->slot_map[i][0]) {
            rp->slots[rp->n_slots].id = i;
            memcpy(rp->slots[rp->n_slots++].name, maps->slot_map[i], RK_NAME_MAX + 1);
        }
    free(maps);
    if (rc) {
        ckpt_job_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* The signal a lease break raises (ckpt_leases_enable); 0: no leases.
 * Relaxed: set once before any file is mapped, by the thread that starts
 * the others (pthread_create orders it before their loads). */
static atomic_int lease_signal;
static atomic_int lease_logged; /* a failed lease logged (once a process) */

void ckpt_leases_enable(int sig)
{
    atomic_store_explicit(&lease_signal, sig, memory_order_relaxed);
}

/* A read lease (fcntl(2) "Leases") on fd, a read-only open of a file
 * mapped for as long as fd stays open: engines, which get hard links to
 * the bases and overlays the node keeps mapped, can truncate the file
 * through their link, and an access past its new end raises SIGBUS -- a
 * dead node.  With the lease, whoever opens it for writing or truncates
 * it waits (fs.lease-break-time, 45 s by default) until the node lets go
 * of it, and the node gets lease_signal: the node's handler says so, its
 * control thread drops every file kept (snapshot_leases_broken in
 * node/checkpoint.c), which closes fd and lets the truncation go on.
 * 1: leased; 0: no lease (leases off, disabled, not on this filesystem:
 * mapped as without one, logged once); EAGAIN: the file is open for
 * writing or its lease is being broken -- an engine is truncating it --
 * so it is not mapped. */
static int lease_take(int fd)
{
    int sig = atomic_load_explicit(&lease_signal, memory_order_relaxed), rc;

    if (!sig)
        return 0;
    if (fcntl(fd, F_SETSIG, sig) == 0 && fcntl(fd, F_SETLEASE, F_RDLCK) == 0)
        return 1;
    rc = errno;
    if (rc == EAGAIN)
        return EAGAIN;
    if (!atomic_exchange_explicit(&lease_logged, 1, memory_order_relaxed))
        log_msg(LOG_INFO, "snapshot: no lease on the files kept mapped",
                "error=\"%s\" effect=\"an engine that truncates one kills the node\"", strerror(rc));
    return 0;
}

/* Maps the file at path read-only and shared: the page cache's pages the
 * file was just written to, not a copy; every page mapped now
 * (MAP_POPULATE), on the thread that makes a base, so that the control
 * thread's lookups in it (base_find, random pages) do not fault a page
 * in each.  The file is leased first (lease_take): *fd, the lease's
 * descriptor, stays open for unmap_shared to close (-1: no lease); the
 * size mapped is the size once leased, which no one can shrink until the
 * lease is let go.  0 or errno (RK_ECORRUPT: shorter than a header;
 * EAGAIN: an engine has the file open for writing). */
static int map_shared(const char *path, const uint8_t **map, size_t *len, int *lease_fd)
{
    struct stat st;
    int rc = 0, leased = 0, fd = open(path, O_RDONLY | O_CLOEXEC);

    *lease_fd = -1;
    if (fd < 0)
        return errno;
    leased = lease_take(fd);
    if (leased == EAGAIN)
        rc = EAGAIN;
    if (!rc && fstat(fd, &st) != 0)
        rc = errno;
    if (!rc && st.st_size < (off_t)SNAP_HEADER_SIZE)
        rc = RK_ECORRUPT;
    if (!rc) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = errno;
        } else {
            *map = m;
            *len = (size_t)st.st_size;
        }
    }
    if (!rc && leased == 1)
        *lease_fd = fd;
    else
        unmap_shared(NULL, 0, fd);
    return rc;
}

/* Undoes map_shared: the mapping first, then the lease (let go before the
 * close, so that a descriptor some other process may share cannot keep
 * it), which lets an engine's truncation go on.  map NULL, fd -1: no-op. */
static void unmap_shared(const uint8_t *map, size_t len, int fd)
{
    if (map)
        munmap((void *)map, len);
    if (fd >= 0) {
        fcntl(fd, F_SETLEASE, F_UNLCK); /* fails harmlessly when fd has no lease */
        close(fd);
    }
}

/* Base b (base_job_info's) gets its file at path, mapped and indexed (by
 * index, which it takes, when not NULL; else by a walk of the file); b
 * owns the file from then on.  On a failure the caller frees b (the file
 * stays). */
static int base_job_map(ckpt_job *b, const char *path, struct snap_slot *index)
{
    int rc = map_shared(path, &b->base, &b->base_len, &b->base_fd);
    char why[256];

    b->base_index = index;
    if (!rc && index)
        rc = snap_check_layout(b->base, b->base_len, &b->base_info, why, sizeof why) ? RK_ECORRUPT : 0;
    else if (!rc)
        rc = base_index(b);
    if (!rc)
        snprintf(b->base_path, sizeof b->base_path, "%s", path);
    return rc;
}

static int base_job(const ckpt_job *j, const applier *a, const struct apply_meta *am, const char *path,
                    ckpt_job **out)
{
    int rc = base_job_info(j, a, am, out);

    if (!rc && (rc = base_job_map(*out, path, NULL)) != 0) {
        ckpt_job_free(*out);
        *out = NULL;
    }
    return rc;
}

int ckpt_job_snapshot_at(ckpt_job *j, store *s, uint64_t upto, const char *path, uint64_t *n_entries,
                         ckpt_job **next, char *err, size_t err_size)
{
    struct apply_meta am;
    applier *a = NULL;
    int rc;

    *n_entries = 0;
    if (next)
        *next = NULL;
    if (upto <= j->info.journal_seq && !next)
        return ckpt_job_snapshot(j, path, n_entries, err, err_size); /* apply is there already */
    if (j->base)
        return RK_EINVAL; /* a base serves overlays (ckpt_job_overlay_at) */
    /* the fold: started from j's records, run when j is behind upto; not
     * run, it is j's records (the base the file is, for *next) */
    rc = fold_open(j, s, &a);
    if (!rc && upto <= j->info.journal_seq) {
        am = job_applied(j);
        rc = ckpt_job_snapshot(j, path, n_entries, err, err_size);
    } else if (!rc) {
        rc = applier_run(a, upto, UINT32_MAX, err, err_size);
        if (!rc && applier_read_upto(a) < upto) {
            /* trimmed away since the snapshot began (a newer checkpoint's
             * restart point is past the snapshot's): the caller begins again */
            seg_error(err, err_size, "snapshot: journal entry %" PRIu64 " is no longer in the journal",
                      applier_read_upto(a) + 1);
            rc = RK_ENOTFOUND;
        }
        if (!rc) {
            am = a->am;
            am.restart_seq = apply_restart_seq(a); /* A4: as apply's commit at upto writes it */
            rc = fold_write_snapshot(j, a, &am, path, n_entries, err, err_size);
        }
    }
    /* no base (out of memory, no mapping): the next request reads the
     * store, as without one */
    if (!rc && next && base_job(j, a, &am, path, next) != 0)
        *next = NULL;
    applier_close(a);
    return rc;
}

struct ckpt_rebase {
    ckpt_job *next;                  /* the new base, but its file: at the overlay's point */
    const uint8_t *base, *overlay;   /* the old base's file and the overlay, mapped for the rebase */
    size_t base_len, overlay_len;
    int base_fd, overlay_fd;         /* their leases (map_shared), so that the base's job may go first */
    size_t fold_records;             /* the old base's fold's records at the overlay's point */
};

int ckpt_rebase_begin(ckpt_job *j, ckpt_rebase **out)
{
    ckpt_rebase *r;
    int rc;

    *out = NULL;
    if (!j->base_path[0] || !j->fold || !j->ov_map)
        return RK_EINVAL;
    if (!(r = calloc(1, sizeof *r)))
        return ENOMEM;
    r->base_fd = r->overlay_fd = -1;
    /* the fold is at the overlay's point still: nothing ran it since */
    rc = base_job_info(j, j->fold, &j->ov_am, &r->next);
    if (!rc)
        rc = map_shared(j->base_path, &r->base, &r->base_len, &r->base_fd);
    if (rc) {
        ckpt_rebase_free(r);
        return rc;
    }
    r->overlay = j->ov_map;
    r->overlay_len = j->ov_map_len;
    r->overlay_fd = j->ov_fd;
    r->fold_records = j->fold->pending.n_records;
    j->ov_map = NULL;
    j->ov_fd = -1;
    *out = r;
    return 0;
}

int ckpt_rebase_run(ckpt_rebase *r, const char *path, uint64_t *n_entries, ckpt_job **next, char *err,
                    size_t err_size)
{
    struct snap_slot *index = NULL;
    int rc = snap_merge(r->base, r->base_len, r->overlay, r->overlay_len, path, n_entries, &index, err, err_size);

    *next = NULL;
    if (rc)
        return rc;
    if (base_job_map(r->next, path, index) != 0) {
        sys_unlink(path); /* no base (out of memory, no mapping): the next request reads the store */
        return 0;
    }
    *next = r->next;
    r->next = NULL;
    return 0;
}

void ckpt_rebase_adopt_fold(ckpt_rebase *r, ckpt_job *next, ckpt_job *j)
{
    applier *a = j->fold;
    struct pending *pd = &a->pending;
    size_t keep = pd->n_records - r->fold_records;
    uint64_t from = keep ? pd->records[r->fold_records].off : pd->len;

    /* pending only grows, in journal order (pend): the records since the
     * overlay's point are its tail, in one run of the buffer */
    memmove(pd->buf, pd->buf + from, pd->len - from);
    pd->len -= from;
    memmove(pd->records, pd->records + r->fold_records, keep * sizeof *pd->records);
    for (size_t i = 0; i < keep; i++)
        pd->records[i].off -= from;
    pd->n_records = keep;
    next->fold = a;
    next->ov_digest = next->info.digest; /* the overlay's: the new base's */
    j->fold = NULL;
}

void ckpt_rebase_free(ckpt_rebase *r)
{
    if (!r)
        return;
    ckpt_job_free(r->next);
    unmap_shared(r->base, r->base_len, r->base_fd);
    unmap_shared(r->overlay, r->overlay_len, r->overlay_fd);
    free(r);
}

const char *ckpt_job_base_path(const ckpt_job *j)
{
    return j->base_path[0] ? j->base_path : NULL;
}

uint64_t ckpt_job_base_entries(const ckpt_job *j)
{
    return j->base ? j->base_info.h.n_entries : 0;
}

uint64_t ckpt_job_fold_records(const ckpt_job *j)
{
    return j->fold ? j->fold->pending.n_records : 0;
}

/* The key of the fold record whose frame is at off in pd's buffer. */
static const uint8_t *fold_key(const struct pending *pd, uint64_t off, uint32_t *klen, struct frame_header *h)
{
    memcpy(h, pd->buf + off, sizeof *h);
    *klen = h->klen;
    return pd->buf + off + FRAME_HEADER_SIZE;
}

/* What a fold record adds to the state's digest: its value's term if a
 * PUT, nothing if a DEL. */
static uint64_t fold_term(const applier *a, uint32_t table, uint64_t off)
{
    struct frame_header h;
    uint32_t klen;
    const uint8_t *key = fold_key(&a->pending, off, &klen, &h);

    if (h.type != FRAME_PUT)
        return 0;
    return ckpt_entry_digest(a->tables[table].name, key, klen, key + klen, h.length - FRAME_HEADER_SIZE - klen);
}

/* Base j's entries of fold table t (its range, looked up by name the
 * first time). */
static int base_range_of(ckpt_job *j, uint32_t t, struct base_range **out)
{
    const struct snap_info *bi = &j->base_info;

    if (t >= j->n_ranges) {
        size_t n = j->fold->n_tables > t ? j->fold->n_tables : t + 1;
        struct base_range *grown = realloc(j->ranges, n * sizeof *grown);
        if (!grown)
            return ENOMEM;
        memset(grown + j->n_ranges, 0, (n - j->n_ranges) * sizeof *grown);
        j->ranges = grown;
        j->n_ranges = n;
    }
    *out = &j->ranges[t];
    if (!(*out)->looked_up) {
        uint64_t first = 0;
        /* the table directory is read from the mapping, as base_index
         * checked it then: what changed since is bounded here (the file's
         * size, base_index's entries) before anything is read by it */
        for (uint64_t i = 0; i < bi->h.n_tables; i++) {
            struct snap_table st;
            memcpy(&st, bi->tables + i * sizeof st, sizeof st);
            if (st.n_entries > bi->h.n_entries - first)
                return RK_ECORRUPT;
            if (strncmp(st.name, j->fold->tables[t].name, sizeof st.name) == 0) {
                if (st.offset > j->base_len || st.size > j->base_len - st.offset)
                    return RK_ECORRUPT;
                (*out)->first = first;
                (*out)->end = first + st.n_entries;
                (*out)->limit = st.offset + st.size;
                break;
            }
            first += st.n_entries;
        }
        (*out)->looked_up = 1;
    }
    return 0;
}

/* Order of overlay key x and fold record y: by table index, then key, as
 * pending_sort orders the fold's records. */
static int overlay_cmp(const struct pending *pd, const struct overlay_key *x, const struct pending_record *y)
{
    struct frame_header h;
    uint32_t xl;
    const uint8_t *xk;

    if (x->table != y->table)
        return x->table < y->table ? -1 : 1;
    if (x->prefix != y->prefix)
        return x->prefix < y->prefix ? -1 : 1;
    xk = fold_key(pd, x->off, &xl, &h);
    return ckpt_key_cmp(xk, xl, y->key, y->klen);
}

/* Brings base j's overlay keys (j->ov) and digest up to date with the
 * fold's records not taken yet: those sorted (pending_sort, on a copy:
 * the fold's own list stays in journal order), the last of each key
 * merged into ov -- replacing the key's entry there, whose term leaves
 * the digest, or found in the base by galloping (base_find, from the last
 * key of the same table: the batch is in key order), whose entry's term
 * leaves it.  An overlay then costs what came since the last one, not
 * what came since the base (re-sorting and looking up every record since
 * the base took 18-47 ms of CPU an open at 0.55 M entries, issue 9.5). */
static int overlay_catch_up(ckpt_job *j)
{
    applier *a = j->fold;
    const struct pending *pd = &a->pending;
    size_t n_new = pd->n_records - j->ov_done, n = 0, i = 0, k = 0;
    struct pending batch = {.buf = pd->buf, .len = pd->len, .cap = pd->cap, .n_records = n_new,
                            .cap_records = n_new};
    struct overlay_key *merged = NULL;
    uint64_t at = 0;
    uint32_t at_table = UINT32_MAX;
    int rc = 0;

    if (n_new == 0)
        return 0;
    batch.records = malloc(n_new * sizeof *batch.records);
    batch.spare = malloc(n_new * sizeof *batch.spare);
    merged = malloc((j->n_ov + n_new) * sizeof *merged);
    if (!batch.records || !batch.spare || !merged) {
        rc = ENOMEM;
        goto out;
    }
    memcpy(batch.records, pd->records + j->ov_done, n_new * sizeof *batch.records);
    pending_sort(&batch); /* by table index, key, then journal order */
    while (!rc && (i < j->n_ov || k < n_new)) {
        const struct pending_record *r = k < n_new ? &batch.records[k] : NULL;
        int c = !r ? -1 : i == j->n_ov ? 1 : overlay_cmp(pd, &j->ov[i], r);
        if (c < 0) {
            merged[n++] = j->ov[i++];
            continue;
        }
        /* the last of the batch's records of this key counts */
        while (k + 1 < n_new && batch.records[k + 1].table == r->table && batch.records[k + 1].prefix == r->prefix &&
               ckpt_key_cmp(batch.records[k + 1].key, batch.records[k + 1].klen, r->key, r->klen) == 0)
            r = &batch.records[++k];
        k++;
        struct overlay_key e = {.off = r->off, .prefix = r->prefix, .table = r->table};
        if (c == 0) { /* the overlay had the key: its term goes */
            e.in_base = j->ov[i].in_base;
            j->ov_digest -= fold_term(a, j->ov[i].table, j->ov[i].off);
            i++;
        } else { /* new to the overlay: the base's term goes, if it has the key */
            struct base_range *br;
            rc = base_range_of(j, r->table, &br);
            if (rc)
                break;
            if (r->table != at_table) {
                at_table = r->table;
                at = br->first;
            }
            if (br->end) {
                const uint8_t *bk = NULL, *bv = NULL;
                uint32_t bkl = 0, bvl = 0;
                uint64_t found;
                rc = base_find(j, br, &at, r->key, r->klen, &found);
                if (!rc && found < br->end)
                    rc = base_entry(j, br, found, &bk, &bkl, &bv, &bvl);
                if (rc)
                    break; /* a length changed: the base goes (the caller) */
                if (found < br->end && ckpt_key_cmp(bk, bkl, r->key, r->klen) == 0) {
                    e.in_base = 1;
                    j->ov_digest -= ckpt_entry_digest(a->tables[r->table].name, bk, bkl, bv, bvl);
                }
            }
        }
        j->ov_digest += fold_term(a, e.table, e.off);
        merged[n++] = e;
    }
    if (!rc) {
        free(j->ov);
        j->ov = merged;
        j->n_ov = n;
        j->cap_ov = j->n_ov;
        j->ov_done = pd->n_records;
        merged = NULL;
    }
out:
    free(merged);
    free(batch.records);
    free(batch.spare);
    return rc;
}

/* Writes base j's overlay (j->ov, caught up) at path: tables in name
 * order, each key's last record -- a PUT as an entry, a DEL of a key the
 * base holds as a tombstone (of one it has not: nothing) -- with am (its
 * digest j's) and the base named base_name. */
static int write_overlay(ckpt_job *j, struct apply_meta *am, const char *path, const char *base_name,
                         uint64_t *n_records, char *err, size_t err_size)
{
    applier *a = j->fold;
    const struct pending *pd = &a->pending;
    const struct snap_info *bi = &j->base_info;
    size_t *by_name = calloc(a->n_tables + 1, sizeof *by_name), *first = calloc(a->n_tables + 1, sizeof *first);
    struct snap_producer *producers = calloc(a->n_producers + 1, sizeof *producers);
    struct snap_base base = {.file_size = j->base_len,
                             .body_hash = bi->h.body_hash,
                             .applied_seq = bi->h.am.applied_seq};
    snap_writer *w = NULL;
    int rc = by_name && first && producers ? 0 : ENOMEM;

    *n_records = 0;
    if (!rc && strlen(base_name) >= sizeof base.name)
        rc = RK_EINVAL;
    if (!rc) {
        memcpy(base.name, base_name, strlen(base_name));
        /* each table's keys: [first[t], first[t + 1]) of ov (sorted by table index) */
        for (size_t i = 0; i < j->n_ov; i++)
            first[j->ov[i].table + 1]++;
        for (size_t t = 0; t < a->n_tables; t++) {
            first[t + 1] += first[t];
            by_name[t] = t;
        }
        qsort_r(by_name, a->n_tables, sizeof *by_name, name_order, a->tables);
        rc = snap_writer_open(path, &w, err, err_size);
    }
    for (size_t n = 0; !rc && n < a->n_tables; n++) {
        size_t t = by_name[n];
        if (first[t] == first[t + 1])
            continue;
        rc = snap_writer_table(w, a->tables[t].name);
        for (size_t i = first[t]; !rc && i < first[t + 1]; i++) {
            struct frame_header h;
            uint32_t klen;
            const uint8_t *key = fold_key(pd, j->ov[i].off, &klen, &h);
            if (h.type == FRAME_PUT)
                rc = snap_writer_add(w, key, klen, key + klen, h.length - FRAME_HEADER_SIZE - klen);
            else if (j->ov[i].in_base)
                rc = snap_writer_add_tombstone(w, key, klen);
        }
    }
    if (rc) {
        snap_writer_abort(w);
        if (!err[0])
            seg_error(err, err_size, "snapshot overlay %s: %s", path, store_strerror(rc));
    } else {
        am->digest = j->ov_digest;
        *n_records = snap_writer_entries(w);
        rc = snap_writer_finish(w, am, &base, producers, fold_producers(a, producers), err, err_size);
    }
    free(by_name);
    free(first);
    free(producers);
    return rc;
}

#define FOLD_AHEAD_MIN_BATCH 2048 /* records: a fold ahead's catch-up waits for this many */

/* ckpt_job_fold_ahead's, and an overlay's with min_batch 0: the fold run
 * on to upto, then its overlay keys caught up if at least min_batch
 * records are not yet taken. */
static int fold_to(ckpt_job *j, store *s, uint64_t upto, size_t min_batch, char *err, size_t err_size)
{
    int rc = 0;

    if (!j->base || !j->base_index)
        return RK_EINVAL;
    if (!j->fold) {
        rc = fold_open(j, s, &j->fold);
        j->ov_digest = j->info.digest;
    }
    if (!rc)
        rc = applier_run(j->fold, upto, UINT32_MAX, err, err_size);
    if (!rc && applier_read_upto(j->fold) < upto) {
        seg_error(err, err_size, "snapshot: journal entry %" PRIu64 " is no longer in the journal",
                  applier_read_upto(j->fold) + 1);
        rc = RK_ENOTFOUND;
    }
    if (rc || j->fold->pending.n_records - j->ov_done < min_batch)
        return rc;
    return overlay_catch_up(j);
}

int ckpt_job_fold_ahead(ckpt_job *j, store *s, uint64_t upto, char *err, size_t err_size)
{
    /* each catch-up merges the batch into every key the overlays hold: a
     * batch of at least an eighth of them (and FOLD_AHEAD_MIN_BATCH), so
     * that steps every few milliseconds do not cost the square of the
     * records between two requests; the request takes the rest */
    size_t min_batch = j->n_ov / 8 > FOLD_AHEAD_MIN_BATCH ? j->n_ov / 8 : FOLD_AHEAD_MIN_BATCH;

    return fold_to(j, s, upto, min_batch, err, err_size);
}

uint64_t ckpt_job_fold_upto(const ckpt_job *j)
{
    return j->fold ? applier_read_upto(j->fold) : 0;
}

int ckpt_job_overlay_at(ckpt_job *j, store *s, uint64_t upto, const char *path, const char *base_name,
                        uint64_t *n_records, char *err, size_t err_size)
{
    struct apply_meta am;
    int rc = fold_to(j, s, upto, 0, err, err_size);

    *n_records = 0;
    if (!rc) {
        am = j->fold->am;
        am.restart_seq = apply_restart_seq(j->fold); /* A4: as apply's commit at upto writes it */
    }
    if (!rc)
        rc = write_overlay(j, &am, path, base_name, n_records, err, err_size);
    if (!rc) {
        /* kept for a rebase: mapped now, before the engine can unlink it */
        const uint8_t *map = NULL;
        size_t len = 0;
        int fd = -1;
        rc = map_shared(path, &map, &len, &fd);
        if (!rc) {
            unmap_shared(j->ov_map, j->ov_map_len, j->ov_fd);
            j->ov_map = map;
            j->ov_map_len = len;
            j->ov_fd = fd;
            j->ov_am = am;
        } else {
            sys_unlink(path);
        }
    }
    return rc;
}
