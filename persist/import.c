/* import.c -- what enters the applier: a checkpoint file loaded into a
 * data directory that holds no state yet (applier_load_checkpoint; the
 * contract is in apply.h).  Used by restore, by `ringkeep checkpoint
 * import` (a directory being built) and by a standby's bootstrap (its own
 * store, in use by the node).
 *
 * Entries arrive in table-name and key order, so each lands at the end of
 * its tree; they go in with DB_MULTIPLE_KEY puts of up to LOAD_BULK_BYTES.
 * Two ways:
 *
 *   being built (STORE_BUILDING: restore, import): state.db is written
 *     through a Berkeley DB handle of the load's own, outside the store's
 *     environment: no transaction, no log record, no lock.  Inside it
 *     every put is logged (split records carry whole pages: 370 MB of log
 *     for 1M x 100 B entries, a third of the load's CPU), and Berkeley DB
 *     5.3 cannot turn that off for a whole environment (DB_TXN_NOT_DURABLE
 *     is a database flag: given to DB_ENV->set_flags, its value means
 *     DB_TXN_SNAPSHOT).  Safe because the environment has not opened
 *     state.db, so nothing else reads or writes the file meanwhile; the
 *     handle writes every page and the file is fsynced before anything is
 *     written in the environment; pages written outside a log carry the
 *     "not logged" LSN, which the environment takes as any page's; and a
 *     builder killed before store_built leaves the BUILDING marker: the
 *     directory is refused, never recovered, whatever state.db holds.  The
 *     file is checked as it is loaded, in one walk (ckpt_verify_once:
 *     decompressing and parsing 1M entries twice cost 0.1 s more): a file
 *     that fails further on fails the load, and what it put goes with the
 *     directory (restore has verified the file whole before making it).
 *
 *   in use (a standby's bootstrap): the applier's own handles, in its
 *     transactions, committed without sync every buffer (the caller makes
 *     them durable), so that recovery after a crash holds what was
 *     committed; the file is verified whole before the first entry is
 *     handed out (ckpt_verify).  What a load killed part-way leaves --
 *     some tables, no "applied" -- looks like an empty store, and a load
 *     laid over it kept what the newer file no longer has; so meta.db's
 *     "loading" goes in the transaction of the first buffer and out in
 *     the last commit (applier_load_interrupted).  In the same
 *     transaction as the first entries it needs no sync of its own: any
 *     later commit recovery finds comes after it in the log.
 *
 * Either way the meta records (state digest, producers' marks, maps,
 * restart point) go in last through the applier, in its own commit
 * (apply_txn_commit), and later writes to the tables are logged as always.
 *
 * Threads: on the applier's thread, before the first applier_run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "persist/apply.h"
#include "persist/apply_impl.h"
#include "persist/checkpoint.h"
#include "persist/store.h"
#include "shm/segment.h"

#define LOAD_BULK_BYTES (8u << 20)
/* The load handle's own cache.  Keys arrive in order, so only the right
 * edge of the tree is touched: a page, once left behind, is written out
 * and never read again; the cache needs to hold the edge and let the
 * writes go out in page order. */
#define LOAD_CACHE_BYTES (64u << 20)

struct load {
    applier *a;
    char path[PATH_MAX]; /* state.db in the environment's home */
    uint64_t n, digest;
    size_t n_tables;
    char table[RK_NAME_MAX + 1];
    int outside; /* the store is being built: state.db written outside the environment */
    DB *db;      /* the current table's handle (outside: the load's own, else the applier's) */
    int (*progress)(void *arg, uint64_t done, uint64_t total);
    void *progress_arg;
    uint64_t total;
    /* the entries of the current table not yet put, as a DB_MULTIPLE_KEY
     * buffer: one DB->put per buffer, not per entry */
    DBT bulk;
    void *bulk_at;
    uint32_t bulk_n;
};

/* Puts what the bulk buffer holds; inside the environment, commits it
 * (without sync: the load is synced when the applier commits its meta and
 * the caller makes the store durable). */
static int load_flush(struct load *l)
{
    applier *a = l->a;
    int rc = 0;

    if (l->bulk_n) {
        DBT none = {0};
        rc = l->db->put(l->db, l->outside ? NULL : a->txn, &l->bulk, &none, DB_MULTIPLE_KEY);
        l->n += l->bulk_n;
        l->bulk_n = 0;
    }
    DB_MULTIPLE_WRITE_INIT(l->bulk_at, &l->bulk);
    if (!rc && !l->outside) {
        rc = a->txn->commit(a->txn, DB_TXN_NOSYNC);
        a->txn = NULL;
        if (!rc)
            rc = apply_txn_begin(a);
    }
    if (!rc && l->progress)
        rc = l->progress(l->progress_arg, l->n, l->total);
    return rc;
}

/* Puts the rest of the current table; outside the environment, writes
 * every page of it (DB->sync) and closes its handle (the applier keeps
 * its own).  0 when there is none. */
static int load_close_table(struct load *l)
{
    int rc = 0, rc2;

    if (!l->db)
        return 0;
    rc = load_flush(l);
    if (!l->outside) {
        l->db = NULL;
        return rc;
    }
    if (!rc)
        rc = l->db->sync(l->db, 0);
    /* after a failure the directory is thrown away: nothing to write */
    rc2 = l->db->close(l->db, rc ? DB_NOSYNC : 0);
    l->db = NULL;
    return rc ? rc : rc2;
}

/* The handle of table `name`: inside the environment the applier's;
 * outside, the load's own on the subdatabase apply.c's table_at names
 * "t:<name>" in state.db, made here (it must not exist yet). */
static int load_open_table(struct load *l, const char *name)
{
    char subname[RK_NAME_MAX + 3];
    DB *db = NULL;
    int rc;

    if (!l->outside) {
        rc = apply_table_db(l->a, name, 1, &l->db);
        if (!rc)
            snprintf(l->table, sizeof l->table, "%s", name);
        return rc;
    }
    if (l->n_tables >= MAX_TABLES)
        return RK_ETABLES;
    snprintf(subname, sizeof subname, "t:%s", name);
    rc = db_create(&db, NULL, 0);
    if (rc)
        return rc;
    rc = db->set_cachesize(db, 0, LOAD_CACHE_BYTES, 1);
    if (!rc)
        rc = db->open(db, NULL, l->path, subname, DB_BTREE, DB_CREATE | DB_EXCL, 0600);
    if (rc) {
        db->close(db, DB_NOSYNC);
        return rc;
    }
    l->db = db;
    l->n_tables++;
    snprintf(l->table, sizeof l->table, "%s", name);
    return 0;
}

static int load_entry(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                      uint32_t vlen)
{
    struct load *l = arg;
    int rc;

    if (!l->db || strcmp(table, l->table) != 0) {
        rc = load_close_table(l);
        if (!rc)
            rc = load_open_table(l, table);
        if (rc)
            return rc;
    }
    l->digest += ckpt_entry_digest(table, key, klen, val, vlen);
    /* keys arrive in order: each one lands at the end of its tree */
    DB_MULTIPLE_KEY_WRITE_NEXT(l->bulk_at, &l->bulk, key, klen, val, vlen);
    if (!l->bulk_at) { /* full: put what it holds, then this one */
        rc = load_flush(l);
        if (rc)
            return rc;
        DB_MULTIPLE_KEY_WRITE_NEXT(l->bulk_at, &l->bulk, key, klen, val, vlen);
        if (!l->bulk_at) { /* larger than a whole buffer: on its own */
            DBT k = {.data = (void *)key, .size = klen}, v = {.data = (void *)val, .size = vlen};
            DB_MULTIPLE_WRITE_INIT(l->bulk_at, &l->bulk);
            l->n++;
            return l->db->put(l->db, l->outside ? NULL : l->a->txn, &k, &v, 0);
        }
    }
    l->bulk_n++;
    return 0;
}

int applier_load_checkpoint(applier *a, const char *path, struct ckpt_info *info,
                            int (*progress)(void *arg, uint64_t done, uint64_t total), void *progress_arg,
                            char *err, size_t err_size)
{
    struct load l = {.a = a, .progress = progress, .progress_arg = progress_arg};
    struct ckpt_info hdr = {0};
    const char *home = NULL;
    uint64_t loading_seq;
    int rc;

    memset(info, 0, sizeof *info);
    if (a->load_interrupted) {
        seg_error(
            err, err_size,
            "cannot load a checkpoint into a data directory that holds part of an interrupted load (the "
            "checkpoint at journal seq %" PRIu64 "): set it aside and load into an empty one",
            a->loading_seq);
        return RK_EBUSY;
    }
    if (a->am.applied_seq != 0 || a->am.n_groups != 0 || a->n_tables != 0 || a->txn || a->fold) {
        seg_error(err, err_size, "cannot load a checkpoint into a data directory that holds state already");
        return RK_EINVAL;
    }
    l.outside = store_building(a->s); /* see the top of this file */
    rc = a->env->get_home(a->env, &home);
    if (rc)
        return rc;
    if ((size_t)snprintf(l.path, sizeof l.path, "%s/%s", home, STATE_FILE) >= sizeof l.path) {
        seg_error(err, err_size, "the path of %s in %s is too long", STATE_FILE, home);
        return ENAMETOOLONG;
    }
    rc = ckpt_read_info(path, &hdr, err, err_size);
    l.total = hdr.n_entries;
    loading_seq = hdr.journal_seq;
    ckpt_info_free(&hdr);
    if (rc)
        return rc;
    l.bulk.data = malloc(LOAD_BULK_BYTES);
    l.bulk.ulen = LOAD_BULK_BYTES;
    l.bulk.flags = DB_DBT_USERMEM;
    if (!l.bulk.data) {
        rc = ENOMEM;
        goto out;
    }
    DB_MULTIPLE_WRITE_INIT(l.bulk_at, &l.bulk);
    if (l.outside) {
        /* checked as they come: a failure anywhere fails the load (above) */
        rc = ckpt_verify_once(path, info, load_entry, &l, err, err_size);
    } else {
        /* a store in use: verified whole before the first entry is handed
         * out; "loading" commits with the first buffer (top of this file) */
        rc = apply_txn_begin(a);
        if (!rc)
            rc = apply_loading_put(a, loading_seq);
        if (!rc)
            rc = ckpt_verify(path, info, load_entry, &l, err, err_size);
    }
    if (!rc)
        rc = load_close_table(&l);
    /* on disk before the environment writes anything that counts on it
     * (through the I/O seam: a failure is reported, and sys_io_failed
     * remembers it) */
    if (!rc && l.n_tables)
        rc = sys_fsync_path(l.path);
    if (rc)
        goto out;
    if (l.digest != info->digest) { /* ckpt_verify checked it too; belt and braces */
        seg_error(err, err_size, "checkpoint %s: loaded digest %016" PRIx64 " differs from its header's", path,
                  l.digest);
        rc = RK_ECORRUPT;
        goto out;
    }
    /* the meta records in the applier's transaction (apply_producer reads
     * meta.db in it) */
    rc = apply_txn_begin(a);
    if (rc)
        goto out;
    a->am.digest = info->digest; /* A5: the entries just loaded add up to it */
    a->am.applied_seq = info->journal_seq;
    a->am.applied_lsn = info->lsn;
    if (info->has_replay) {
        const struct ckpt_replay *rp = &info->replay;
        a->am.restart_seq = rp->restart_seq;
        a->am.n_groups = rp->n_groups;
        a->am.n_records = rp->n_records;
        a->am.n_discarded = rp->n_discarded;
        for (uint32_t i = 0; i < rp->n_producers; i++) {
            struct producer *p = apply_producer(a, rp->producers[i].name);
            if (!p) {
                rc = ENOMEM;
                goto out;
            }
            p->m.applied_lsn = rp->producers[i].applied_lsn;
            p->m.height = rp->producers[i].height;
            p->m.n_groups = rp->producers[i].n_groups;
            p->m.discard_lsn = rp->producers[i].discard_lsn;
            p->dirty = 1;
        }
        for (uint32_t i = 0; i < rp->n_table_ids; i++)
            if (rp->table_ids[i].id < RING_MAX_TABLES)
                apply_map_table(a, rp->table_ids[i].id, rp->table_ids[i].name);
        for (uint32_t i = 0; i < rp->n_slots; i++)
            if (rp->slots[i].id < RING_MAX_PRODUCERS)
                apply_map_slot(a, rp->slots[i].id, rp->slots[i].name);
        a->maps_dirty = 1;
    } else {
        /* format 1.0: the marks, but no replay point; what follows the
         * checkpoint in a journal cannot be applied after it.  The file
         * has no group counts; a producer it lists had a MARK applied (the
         * writer lists only those), and a producer with no group counts as
         * one without a height (the state reader, the next checkpoint's
         * header): one group each, the least that is true. */
        for (uint32_t i = 0; i < info->n_producers; i++) {
            struct producer *p = apply_producer(a, info->producers[i].name);
            if (!p) {
                rc = ENOMEM;
                goto out;
            }
            p->m.applied_lsn = info->producers[i].applied_lsn;
            p->m.height = info->producers[i].height;
            p->m.n_groups = 1;
            p->dirty = 1;
            a->am.n_groups++;
        }
    }
    /* A1, A4: applied up to the checkpoint's journal_seq, reading goes on
     * at most one past it */
    a->next_seq = a->am.restart_seq > info->journal_seq + 1 || !info->has_replay ? info->journal_seq + 1
                                                                                  : a->am.restart_seq;
    a->am.restart_seq = a->next_seq;
    /* apply_txn_commit() writes "applied" (restart point: no group is
     * open), the producers and the maps with the last entries, and
     * "loading" goes in the same commit */
    rc = l.outside ? 0 : apply_loading_del(a);
    if (!rc)
        rc = apply_txn_commit(a);
    if (!rc && progress)
        rc = progress(progress_arg, l.n, l.total);
out:
    if (l.outside && l.db) /* a failure in the middle of a table: the directory is thrown away */
        l.db->close(l.db, DB_NOSYNC);
    free(l.bulk.data);
    if (rc && a->txn) {
        a->txn->abort(a->txn);
        a->txn = NULL;
    }
    if (rc)
        ckpt_info_free(info);
    if (rc && err && !err[0])
        seg_error(err, err_size, "loading %s: %s", path, store_strerror(rc));
    return rc;
}
