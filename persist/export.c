/* export.c -- what leaves the applier: snapshots and checkpoints of the
 * state tables (the contract is in apply.h).
 *
 *   applier_snapshot   a standalone Berkeley DB file (subdatabases
 *                      "t:<table>" and "meta") copied from the applier's
 *                      own view, on the applier's thread; written to
 *                      path.tmp and renamed (not fsynced: ephemeral);
 *   checkpoints        in two steps, so that apply stalls only for the
 *                      first:
 *
 *     applier_checkpoint_begin --> job (MVCC snapshot txn, meta read)
 *       --ckpt_job_write--> <seq>.rkcp written, read back, digest checked
 *       --ckpt_job_free--> snapshot ended
 *
 * Threads: applier_snapshot and applier_checkpoint_begin run on the
 * applier's thread between applier_run calls (a group boundary).  A job
 * then belongs to one thread at a time, any thread: ckpt_job_write reads
 * through its own Berkeley DB handles and its snapshot transaction, never
 * the applier's, and takes no locks that block apply.
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
#include "shm/segment.h"

/* ------------------------------------------------------------ snapshots */

/* Copies every record of src (read in txn) into dst. */
static int copy_db(DB *src, DB_TXN *txn, DB *dst)
{
    DBC *cur = NULL;
    DBT k = {0}, v = {0};
    int rc = src->cursor(src, txn, &cur, DB_READ_COMMITTED);

    while (!rc && (rc = cur->get(cur, &k, &v, DB_NEXT)) == 0)
        rc = dst->put(dst, NULL, &k, &v, 0);
    if (rc == DB_NOTFOUND)
        rc = 0;
    if (cur)
        cur->close(cur);
    return rc;
}

static int open_snapshot_db(DB_ENV *env, const char *file, const char *subname, DB **out)
{
    DB *db = NULL;
    int rc = db_create(&db, env, 0);

    if (!rc)
        rc = db->open(db, NULL, file, subname, DB_BTREE, DB_CREATE, 0600);
    if (rc && db) {
        db->close(db, 0);
        db = NULL;
    }
    *out = db;
    return rc;
}

int applier_snapshot(applier *a, const char *path, char *err, size_t err_size)
{
    char dir[PATH_MAX], file[PATH_MAX], tmp[PATH_MAX + 8], tmp_path[2 * PATH_MAX + 16];
    DB_ENV *senv = NULL;
    DB *master = NULL, *dst = NULL;
    DB_TXN *txn = NULL;
    DBC *cur = NULL;
    DBT k = {0}, v = {0};
    const char *slash = strrchr(path, '/');
    int rc;

    if (!slash || (size_t)(slash - path) >= sizeof dir) {
        snprintf(err, err_size, "snapshot path %s has no directory", path);
        return RK_EINVAL;
    }
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    snprintf(file, sizeof file, "%s", slash + 1);
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    mkdir(dir, 0700);
    /* a private environment of its own: one file, several subdatabases */
    rc = db_env_create(&senv, 0);
    if (!rc)
        rc = senv->set_cachesize(senv, 0, 32u << 20, 1);
    if (!rc)
        rc = senv->open(senv, dir, DB_CREATE | DB_INIT_MPOOL | DB_PRIVATE, 0600);
    if (rc)
        goto out;
    snprintf(tmp_path, sizeof tmp_path, "%s/%s", dir, tmp);
    unlink(tmp_path); /* left by a snapshot cut short */
    rc = a->env->txn_begin(a->env, NULL, &txn, 0);
    if (rc)
        goto out;
    /* the meta subdatabase: what was applied, and every producer's mark */
    rc = open_snapshot_db(senv, tmp, "meta", &dst);
    if (!rc) {
        DBT mk = {.data = "applied", .size = 7}, mv = {.data = &a->am, .size = sizeof a->am};
        rc = dst->put(dst, NULL, &mk, &mv, 0);
    }
    for (size_t i = 0; !rc && i < a->n_producers; i++) {
        char key[RK_NAME_MAX + 3];
        snprintf(key, sizeof key, "p:%s", a->producers[i].name);
        DBT mk = {.data = key, .size = (u_int32_t)strlen(key)};
        DBT mv = {.data = &a->producers[i].m, .size = sizeof a->producers[i].m};
        rc = dst->put(dst, NULL, &mk, &mv, 0);
    }
    /* producers that this applier has not met since it opened */
    if (!rc)
        rc = a->meta->cursor(a->meta, txn, &cur, DB_READ_COMMITTED);
    while (!rc && (rc = cur->get(cur, &k, &v, DB_NEXT)) == 0) {
        if (k.size > 2 && memcmp(k.data, "p:", 2) == 0) {
            DBT have = {0};
            if (dst->get(dst, NULL, &k, &have, 0) == DB_NOTFOUND)
                rc = dst->put(dst, NULL, &k, &v, 0);
        }
    }
    if (rc == DB_NOTFOUND)
        rc = 0;
    if (cur) {
        cur->close(cur);
        cur = NULL;
    }
    if (dst) {
        dst->close(dst, 0);
        dst = NULL;
    }
    if (rc)
        goto out;
    /* every table: the subdatabases of state.db */
    rc = db_create(&master, a->env, 0);
    if (!rc)
        rc = master->open(master, txn, STATE_FILE, NULL, DB_BTREE, DB_RDONLY | DB_THREAD, 0);
    if (rc == ENOENT) {
        rc = 0; /* no table yet */
    } else if (!rc) {
        rc = master->cursor(master, txn, &cur, DB_READ_COMMITTED);
        while (!rc && (rc = cur->get(cur, &k, &v, DB_NEXT)) == 0) {
            char name[RK_NAME_MAX + 1], sub[RK_NAME_MAX + 3];
            DB *src = NULL;
            if (k.size < 3 || k.size - 2 > RK_NAME_MAX || memcmp(k.data, "t:", 2) != 0)
                continue;
            memcpy(name, (char *)k.data + 2, k.size - 2);
            name[k.size - 2] = '\0';
            snprintf(sub, sizeof sub, "t:%s", name);
            rc = apply_table_db(a, name, 0, &src);
            if (!rc)
                rc = open_snapshot_db(senv, tmp, sub, &dst);
            if (!rc)
                rc = copy_db(src, txn, dst);
            if (dst) {
                dst->close(dst, 0);
                dst = NULL;
            }
        }
        if (rc == DB_NOTFOUND)
            rc = 0;
    }
    if (cur) {
        cur->close(cur);
        cur = NULL;
    }
    if (master) {
        master->close(master, 0);
        master = NULL;
    }
    if (rc)
        goto out;
    /* close the file's databases (done above) and the environment, so that
     * every page is written, then give it its final name.  No fsync: the
     * file is private to the engine that asked, which opens and unlinks it
     * at once; a crash of the host takes that engine too, and it asks
     * again. */
    senv->close(senv, 0);
    senv = NULL;
    if (sys_rename(tmp_path, path) != 0) {
        rc = errno;
        goto out;
    }
    sys_fsync_dir(dir); /* the snapshot is private and remade on demand: best effort */
out:
    if (cur)
        cur->close(cur);
    if (dst)
        dst->close(dst, 0);
    if (master)
        master->close(master, 0);
    if (txn)
        txn->commit(txn, 0);
    if (senv)
        senv->close(senv, 0);
    if (rc)
        snprintf(err, err_size, "snapshot %s: %s", path, store_strerror(rc));
    return rc;
}

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
    if (rc) {
        ckpt_job_free(j);
        return rc;
    }
    *out = j;
    return 0;
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

/* Adds every entry of every table (in name order, keys in byte order) as
 * the snapshot sees them, through handles of its own (the applier's are
 * its thread's). */
static int checkpoint_tables(ckpt_job *j, ckpt_writer *w)
{
    DB *master = NULL;
    DBC *cur = NULL, *tcur = NULL;
    DBT k = {0}, v = {0}, tk = {0}, tv = {0};
    int rc = db_create(&master, j->env, 0);

    if (!rc)
        rc = master->open(master, j->txn, STATE_FILE, NULL, DB_BTREE, DB_RDONLY | DB_THREAD | DB_MULTIVERSION, 0);
    if (rc == ENOENT) {
        rc = 0; /* no table yet */
        goto out;
    }
    if (!rc)
        rc = master->cursor(master, j->txn, &cur, 0);
    while (!rc && (rc = cur->get(cur, &k, &v, DB_NEXT)) == 0) {
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
        if (!rc)
            rc = src->cursor(src, j->txn, &tcur, 0);
        while (!rc && (rc = tcur->get(tcur, &tk, &tv, DB_NEXT)) == 0)
            rc = ckpt_writer_add(w, name, tk.data, tk.size, tv.data, tv.size);
        if (rc == DB_NOTFOUND)
            rc = 0;
        if (tcur) {
            tcur->close(tcur);
            tcur = NULL;
        }
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
    return rc;
}

int ckpt_job_write(ckpt_job *j, const char *dir, int zstd_level, char *path_out, size_t path_size,
                   struct ckpt_info *written, char *err, size_t err_size)
{
    const struct ckpt_info *info = &j->info;
    ckpt_writer *w = NULL;
    int rc;

    memset(written, 0, sizeof *written);
    rc = ckpt_writer_open(dir, info, zstd_level, &w, err, err_size);
    if (!rc)
        rc = checkpoint_tables(j, w);
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
