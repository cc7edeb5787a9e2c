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
#include <sys/stat.h>
#include <unistd.h>

#include "persist/apply.h"
#include "persist/apply_impl.h"
#include "persist/checkpoint.h"
#include "persist/snapshot.h"
#include "shm/segment.h"

/* ------------------------------------------------------------ checkpoints */

struct ckpt_job {
    DB_ENV *env;
    DB *meta;
    DB_TXN *txn; /* DB_TXN_SNAPSHOT: the state as of applier_checkpoint_begin */
    uint64_t epoch;
    struct ckpt_info info; /* header and replay record, read in begin */
};

static int checkpoint_meta(ckpt_job *j, struct ckpt_info *info);

int applier_checkpoint_begin(applier *a, uint64_t epoch, ckpt_job **out)
{
    ckpt_job *j = calloc(1, sizeof *j);
    int rc;

    *out = NULL;
    if (!j)
        return ENOMEM;
    if (a->txn) {
        free(j);
        return RK_EINVAL; /* only between applier_run calls: at a group boundary (A2) */
    }
    j->env = a->env;
    j->meta = a->meta;
    j->epoch = epoch;
    /* A snapshot (MVCC: meta.db and the state tables are opened
     * DB_MULTIVERSION; the journal is not, so the drain's appends never
     * copy pages for a reader that does not read them): it sees what
     * was committed before it began -- every group applier_run applied,
     * with the meta records of the same transactions -- takes no read
     * locks and never blocks apply, whose writes copy the pages it holds. */
    rc = a->env->txn_begin(a->env, NULL, &j->txn, DB_TXN_SNAPSHOT);
    if (rc) {
        free(j);
        return rc;
    }
    /* read meta.db in the snapshot now, on the applier's thread: Berkeley
     * DB fixes a snapshot's view at its first read, not at txn_begin (a
     * checkpoint thread that read first, later, saw groups applied after
     * this point: test_node caught a checkpoint 79 heights late) */
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
    if (j->txn)
        j->txn->commit(j->txn, 0); /* read only */
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
    uint8_t *buf = malloc(buf_size);
    int rc = buf ? db_create(&master, j->env, 0) : ENOMEM;

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

    memset(written, 0, sizeof *written);
    rc = ckpt_writer_open(dir, info, zstd_level, &w, err, err_size);
    if (!rc) {
        struct table_visitor v = {.entry = checkpoint_entry, .arg = w};
        rc = walk_tables(j, &v);
    }
    j->txn->commit(j->txn, 0); /* read only; the pages it held are free */
    j->txn = NULL;
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

int ckpt_job_snapshot(ckpt_job *j, const char *path, uint64_t *n_entries, char *err, size_t err_size)
{
    const struct ckpt_info *info = &j->info;
    const struct ckpt_replay *rp = &info->replay;
    struct apply_meta am = {.restart_seq = rp->restart_seq,
                            .applied_seq = info->journal_seq,
                            .applied_lsn = info->lsn,
                            .n_groups = rp->n_groups,
                            .n_records = rp->n_records,
                            .n_discarded = rp->n_discarded,
                            .digest = info->digest};
    struct snap_producer *producers = calloc(rp->n_producers ? rp->n_producers : 1, sizeof *producers);
    snap_writer *w = NULL;
    int rc = producers ? snap_writer_open(path, &w, err, err_size) : ENOMEM;

    *n_entries = 0;
    if (!rc) {
        struct table_visitor v = {.table = snapshot_table, .entry = snapshot_entry, .arg = w};
        rc = walk_tables(j, &v);
    }
    j->txn->commit(j->txn, 0); /* read only; the pages it held are free */
    j->txn = NULL;
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
    rc = snap_writer_finish(w, &am, producers, rp->n_producers, err, err_size);
out:
    free(producers);
    return rc;
}
