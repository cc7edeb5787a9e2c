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
 *     --ckpt_job_rebase--> base + fold merged: a new base (*next)
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
    /* a base (ckpt_job_snapshot_at's *next): its tables are a snapshot
     * file written before, mapped read-only, instead of an MVCC snapshot
     * of state.db (txn and pin NULL) */
    const uint8_t *base;
    size_t base_len;
    /* a base's file, this job's own (unlinked by ckpt_job_free); engines
     * get links to it (ckpt_job_overlay_at) */
    char base_path[PATH_MAX];
    struct snap_info base_info; /* its header, producers and tables (snap_check_layout) */
    uint64_t *base_index;       /* the offset of each of its entries, tables in order */
    /* a base's fold, run on by each ckpt_job_overlay_at from where the
     * last one left it (NULL until the first) */
    applier *fold;
    uint64_t epoch;
    struct ckpt_info info; /* header and replay record, read in begin */
};

static int checkpoint_meta(ckpt_job *j, struct ckpt_info *info);

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
    if (j->base)
        munmap((void *)j->base, j->base_len);
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
        rc = walk_tables(j, &v);
    }
    snapshot_end(j); /* the page versions it held are free */
    if (rc) {
        ckpt_writer_abort(w);
        goto out;
    }
    rc = ckpt_writer_finish(w, path_out, path_size, err, err_size);
    if (!rc)
        rc = ckpt_read_info(path_out, written, err, err_size);
    if (!rc && written->digest != info->digest) { /* A5 */
        seg_error(err, err_size,
                  "checkpoint %s: the tables' digest %016llx differs from the one apply keeps "
                  "(%016llx): state and apply disagree",
                  path_out, (unsigned long long)written->digest, (unsigned long long)info->digest);
        sys_unlink(path_out);
        rc = RK_ECORRUPT;
    }
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

/* Whether fold record r's key is at or before key (ckpt_key_cmp <= 0):
 * by the keys' first 8 bytes as numbers first (key_prefix; r's prefix);
 * a call to memcmp for each of a base's entries was a tenth of the
 * merge. */
static inline int fold_at_or_before(const struct pending_record *r, const uint8_t *key, uint32_t klen)
{
    uint64_t prefix = key_prefix(key, klen);

    if (r->prefix != prefix)
        return r->prefix < prefix;
    return ckpt_key_cmp(r->key, r->klen, key, klen) <= 0;
}

/* The merge of a base's file (job j's) with the fold's records: the
 * file's layout is checked first and its body hashed as the merge reads
 * it (snap_check_layout, snap_body_hash_*: it is on disk, where the engine
 * it was written for could have changed it; a failure is RK_ECORRUPT, the
 * file written meanwhile is dropped and the caller reads the store
 * instead; hashed in a pass of its own before the merge, the base cost
 * 8-11 ms more of a 50 MB file, issue 9.5), every entry's lengths as it
 * is read; its runs of entries the fold does not
 * touch are copied as they are, one copy a run (snap_writer_add_encoded),
 * and each entry at or after a fold record's key goes through merge_entry
 * as a store's would.  Entry by entry through the writer, a base of 0.5 M
 * entries took 90-120 ms to merge, most of it per-entry calls. */
static int merge_base(const ckpt_job *j, struct fold_merge *m)
{
    const struct pending_record *r = m->pd->records;
    struct snap_info info;
    char why[256];
    int rc = snap_check_layout(j->base, j->base_len, &info, why, sizeof why);
    snap_body_hash *bh;
    const uint8_t *hashed = j->base;

    if (rc)
        return RK_ECORRUPT; /* RK_EVERSION too: it was not this build's */
    if (!(bh = snap_body_hash_begin(j->base, j->base_len)))
        return ENOMEM;
    for (uint64_t i = 0; !rc && i < info.h.n_tables; i++) {
        struct snap_table t;
        const uint8_t *at, *end, *run;
        uint64_t e, run_n = 0;

        memcpy(&t, info.tables + i * sizeof t, sizeof t);
        rc = merge_table(m, t.name);
        at = run = j->base + t.offset;
        end = at + t.size;
        for (e = 0; !rc && e < t.n_entries; e++) {
            uint32_t lens[2];
            const uint8_t *key;
            if (at + sizeof lens > hashed)
                hashed = snap_body_hash_to(bh, at); /* before the run's copy reads these bytes */
            if ((size_t)(end - at) < sizeof lens) {
                rc = RK_ECORRUPT;
                break;
            }
            memcpy(lens, at, sizeof lens);
            key = at + sizeof lens;
            if ((uint64_t)lens[0] + lens[1] > (uint64_t)(end - key)) {
                rc = RK_ECORRUPT;
                break;
            }
            if (m->at < m->end && fold_at_or_before(&r[m->at], key, lens[0])) {
                /* the fold has a record at or before this key: the run so
                 * far goes as it is, this entry through merge_entry */
                if (run_n)
                    rc = snap_writer_add_encoded(m->w, run, (size_t)(at - run), run_n);
                if (!rc)
                    rc = merge_entry(m, t.name, key, lens[0], key + lens[0], lens[1]);
                at = run = key + lens[0] + lens[1];
                run_n = 0;
                continue;
            }
            at = key + lens[0] + lens[1];
            run_n++;
        }
        if (!rc && at != end)
            rc = RK_ECORRUPT;
        if (!rc && run_n)
            rc = snap_writer_add_encoded(m->w, run, (size_t)(at - run), run_n);
    }
    if (!snap_body_hash_end(bh, info.h.body_hash) && (!rc || rc == RK_ECORRUPT))
        rc = RK_ECORRUPT;
    return rc;
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
        rc = j->base ? merge_base(j, &m) : walk_tables(j, &v);
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
 * its table; a change that keeps them is the engine's to see (its hashes,
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
            b->base_index[n++] = (uint64_t)(at - b->base);
            at += sizeof lens + lens[0] + lens[1];
        }
    }
    return n == info->h.n_entries ? 0 : RK_ECORRUPT;
}

/* Base b's entry i (an index in base_index): its key and value. */
static void base_entry(const ckpt_job *b, uint64_t i, const uint8_t **key, uint32_t *klen, const uint8_t **val,
                       uint32_t *vlen)
{
    const uint8_t *at = b->base + b->base_index[i];
    uint32_t lens[2];

    memcpy(lens, at, sizeof lens);
    *key = at + sizeof lens;
    *klen = lens[0];
    *val = *key + lens[0];
    *vlen = lens[1];
}

/* The first entry of base b in [*at, end) whose key is >= key: galloping
 * from *at (an overlay looks its keys up in ascending order, so each
 * search starts where the last one ended: a few steps a key when they are
 * many, a bisection's when few), which it moves there. */
static uint64_t base_find(const ckpt_job *b, uint64_t *at, uint64_t end, const uint8_t *key, uint32_t klen)
{
    uint64_t lo = *at, hi, step = 1;
    const uint8_t *k, *v;
    uint32_t kl, vl;

    /* [lo, hi): the answer is in (lo - 1, hi]; every entry before lo is < key */
    for (;;) {
        hi = end - lo > step ? lo + step : end;
        if (hi == end)
            break;
        base_entry(b, hi - 1, &k, &kl, &v, &vl);
        if (ckpt_key_cmp(k, kl, key, klen) >= 0)
            break;
        lo = hi;
        step *= 2;
    }
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        base_entry(b, mid, &k, &kl, &v, &vl);
        if (ckpt_key_cmp(k, kl, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return lo;
}

/* The base a next snapshot can start from (*out): the file at path just
 * written with what was applied at am, mapped, and what a fold from it
 * needs -- fold a's producers with a record and its maps, as they are at
 * its end, which is what apply's commit at am.applied_seq writes in
 * meta.db (apply_txn_commit).  A fold from a base then starts where apply
 * would after a restart at that point (A3, A4): the same rules, from the
 * same records. */
static int base_job(const ckpt_job *j, const applier *a, const struct apply_meta *am, const char *path,
                    ckpt_job **out)
{
    ckpt_job *b = calloc(1, sizeof *b);
    struct ckpt_replay *rp;
    struct stat st;
    int rc = 0, fd = -1;

    *out = NULL;
    if (!b)
        return ENOMEM;
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
    for (uint32_t i = 0; !rc && i < RING_MAX_TABLES; i++)
        if (a->table_map[i][0]) {
            rp->table_ids[rp->n_table_ids].id = i;
            memcpy(rp->table_ids[rp->n_table_ids++].name, a->table_map[i], RK_NAME_MAX + 1);
        }
    for (uint32_t i = 0; !rc && i < RING_MAX_PRODUCERS; i++)
        if (a->slot_map[i][0]) {
            rp->slots[rp->n_slots].id = i;
            memcpy(rp->slots[rp->n_slots++].name, a->slot_map[i], RK_NAME_MAX + 1);
        }
    if (!rc && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        rc = errno;
    if (!rc && fstat(fd, &st) != 0)
        rc = errno;
    if (!rc && st.st_size < (off_t)SNAP_HEADER_SIZE)
        rc = RK_ECORRUPT;
    if (!rc) {
        /* shared, read-only: the page cache's pages the file was just
         * written to, not a copy */
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED) {
            rc = errno;
        } else {
            b->base = map;
            b->base_len = (size_t)st.st_size;
        }
    }
    if (fd >= 0)
        close(fd);
    if (!rc)
        rc = base_index(b);
    if (rc) {
        ckpt_job_free(b);
        return rc;
    }
    snprintf(b->base_path, sizeof b->base_path, "%s", path); /* b's from now on */
    *out = b;
    return 0;
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
    /* the fold: started from j's records, run when j is behind upto; not
     * run, it is j's records (the base the file is, for *next).  A base's
     * own, when its overlays have run one (ckpt_job_rebase): on from
     * there */
    rc = j->fold ? 0 : fold_open(j, s, &a);
    if (j->fold)
        a = j->fold;
    if (!rc && upto <= j->info.journal_seq && !j->base) {
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
    if (a != j->fold)
        applier_close(a);
    return rc;
}

int ckpt_job_rebase(ckpt_job *j, store *s, const char *path, uint64_t *n_entries, ckpt_job **next, char *err,
                    size_t err_size)
{
    if (!j->base || !j->fold)
        return RK_EINVAL;
    return ckpt_job_snapshot_at(j, s, applier_read_upto(j->fold), path, n_entries, next, err, err_size);
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

/* Writes the overlay of base j (its fold's records, fold_order'd: the
 * last of each key) at path; am: what was applied at the fold's end, its
 * digest brought up to date here from the base's entries the overlay's
 * keys replace or delete. */
static int write_overlay(ckpt_job *j, applier *a, struct apply_meta *am, const char *path, const char *base_name,
                         uint64_t *n_records, char *err, size_t err_size)
{
    const struct pending *pd = &a->pending;
    const struct snap_info *bi = &j->base_info;
    size_t *by_name = NULL, *first = NULL;
    struct snap_producer *producers = calloc(a->n_producers + 1, sizeof *producers);
    struct snap_base base = {.file_size = j->base_len,
                             .body_hash = bi->h.body_hash,
                             .applied_seq = bi->h.am.applied_seq};
    uint64_t digest = am->digest, bt = 0, bt_first = 0;
    snap_writer *w = NULL;
    int rc = producers ? fold_order(a, &by_name, &first) : ENOMEM;

    *n_records = 0;
    if (!rc && strlen(base_name) >= sizeof base.name)
        rc = RK_EINVAL;
    if (!rc) {
        memcpy(base.name, base_name, strlen(base_name));
        rc = snap_writer_open(path, &w, err, err_size);
    }
    for (size_t n = 0; !rc && n < a->n_tables; n++) {
        size_t t = by_name[n];
        const char *name = a->tables[t].name;
        uint64_t at, end = 0;
        struct snap_table st;

        if (first[t] == first[t + 1])
            continue;
        /* the base's table of that name, if any: both in name order */
        for (; bt < bi->h.n_tables; bt++) {
            memcpy(&st, bi->tables + bt * sizeof st, sizeof st);
            int c = strcmp(st.name, name);
            if (c >= 0) {
                if (c == 0)
                    end = bt_first + st.n_entries;
                break;
            }
            bt_first += st.n_entries;
        }
        at = end ? bt_first : 0;
        rc = snap_writer_table(w, name);
        for (size_t i = first[t]; !rc && i < first[t + 1]; i++) {
            const struct pending_record *r = &pd->records[i];
            struct frame_header h;
            uint64_t found;
            int in_base = 0;
            if (i + 1 < first[t + 1] && ckpt_key_cmp(r->key, r->klen, r[1].key, r[1].klen) == 0)
                continue; /* a later record of this key counts instead */
            if (end) {
                const uint8_t *k, *v;
                uint32_t kl, vl;
                found = base_find(j, &at, end, r->key, r->klen);
                if (found < end) {
                    base_entry(j, found, &k, &kl, &v, &vl);
                    if (ckpt_key_cmp(k, kl, r->key, r->klen) == 0) {
                        in_base = 1;
                        digest -= ckpt_entry_digest(name, k, kl, v, vl);
                    }
                }
            }
            memcpy(&h, pd->buf + r->off, sizeof h);
            if (h.type == FRAME_PUT) {
                const uint8_t *val = r->key + r->klen;
                uint32_t vlen = h.length - FRAME_HEADER_SIZE - r->klen;
                digest += ckpt_entry_digest(name, r->key, r->klen, val, vlen);
                rc = snap_writer_add(w, r->key, r->klen, val, vlen);
            } else if (in_base) {
                rc = snap_writer_add_tombstone(w, r->key, r->klen);
            } /* a DEL of a key the base has not: nothing to say */
        }
    }
    if (rc) {
        snap_writer_abort(w);
        if (!err[0])
            seg_error(err, err_size, "snapshot overlay %s: %s", path, store_strerror(rc));
    } else {
        am->digest = digest;
        *n_records = snap_writer_entries(w);
        rc = snap_writer_finish(w, am, &base, producers, fold_producers(a, producers), err, err_size);
    }
    free(by_name);
    free(first);
    free(producers);
    return rc;
}

int ckpt_job_overlay_at(ckpt_job *j, store *s, uint64_t upto, const char *path, const char *base_name,
                        uint64_t *n_records, char *err, size_t err_size)
{
    struct apply_meta am;
    int rc = 0;

    *n_records = 0;
    if (!j->base || !j->base_index)
        return RK_EINVAL;
    if (!j->fold)
        rc = fold_open(j, s, &j->fold);
    if (!rc)
        rc = applier_run(j->fold, upto, UINT32_MAX, err, err_size);
    if (!rc && applier_read_upto(j->fold) < upto) {
        seg_error(err, err_size, "snapshot: journal entry %" PRIu64 " is no longer in the journal",
                  applier_read_upto(j->fold) + 1);
        rc = RK_ENOTFOUND;
    }
    if (!rc) {
        am = j->fold->am;
        am.restart_seq = apply_restart_seq(j->fold); /* A4: as apply's commit at upto writes it */
        rc = write_overlay(j, j->fold, &am, path, base_name, n_records, err, err_size);
    }
    return rc;
}
