/* import.c -- what enters the applier: a checkpoint file loaded into a
 * new data directory (applier_load_checkpoint; the contract is in
 * apply.h).  Used by restore and by `ringkeep checkpoint import`.
 *
 * The file is verified whole first (ckpt_verify calls back only once every
 * byte has passed); its entries then arrive in table-name and key order,
 * so each lands at the end of its tree and goes in with DB_MULTIPLE_KEY
 * puts of up to LOAD_BULK_BYTES, committed without sync; the meta records
 * (state digest, producers' marks, maps, restart point) go in last, in the
 * applier's own commit (apply_txn_commit).
 *
 * Threads: on the applier's thread, before the first applier_run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persist/apply.h"
#include "persist/apply_impl.h"
#include "persist/checkpoint.h"
#include "shm/segment.h"

struct load {
    applier *a;
    uint64_t n, digest;
    char table[RK_NAME_MAX + 1];
    DB *db;
    int (*progress)(void *arg, uint64_t done, uint64_t total);
    void *progress_arg;
    uint64_t total;
    /* the entries of the current table not yet put, as a DB_MULTIPLE_KEY
     * buffer: one DB->put per buffer, not per entry */
    DBT bulk;
    void *bulk_at;
    uint32_t bulk_n;
};

#define LOAD_BULK_BYTES (8u << 20)

/* Puts what the bulk buffer holds and commits (without sync: the load is
 * synced when the applier commits its meta; a new data directory that a
 * crash cut short is not used: restore and import remove it or refuse). */
static int load_flush(struct load *l)
{
    applier *a = l->a;
    int rc = 0;

    if (l->bulk_n) {
        DBT none = {0};
        rc = l->db->put(l->db, a->txn, &l->bulk, &none, DB_MULTIPLE_KEY);
        l->n += l->bulk_n;
        l->bulk_n = 0;
    }
    DB_MULTIPLE_WRITE_INIT(l->bulk_at, &l->bulk);
    if (!rc) {
        rc = a->txn->commit(a->txn, DB_TXN_NOSYNC);
        a->txn = NULL;
    }
    if (!rc)
        rc = apply_txn_begin(a);
    if (!rc && l->progress)
        rc = l->progress(l->progress_arg, l->n, l->total);
    return rc;
}

static int load_entry(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                      uint32_t vlen)
{
    struct load *l = arg;
    int rc;

    if (strcmp(table, l->table) != 0) {
        rc = l->db ? load_flush(l) : 0;
        if (!rc)
            rc = apply_table_db(l->a, table, 1, &l->db);
        if (rc)
            return rc;
        snprintf(l->table, sizeof l->table, "%s", table);
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
            return l->db->put(l->db, l->a->txn, &k, &v, 0);
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
    int rc;

    memset(info, 0, sizeof *info);
    if (a->am.applied_seq != 0 || a->am.n_groups != 0 || a->n_tables != 0 || a->txn) {
        seg_error(err, err_size, "cannot load a checkpoint into a data directory that holds state already");
        return RK_EINVAL;
    }
    rc = ckpt_read_info(path, &hdr, err, err_size);
    l.total = hdr.n_entries;
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
    rc = apply_txn_begin(a);
    if (rc)
        goto out;
    /* verified whole before the first entry is handed out */
    rc = ckpt_verify(path, info, load_entry, &l, err, err_size);
    if (!rc && l.db)
        rc = load_flush(&l);
    if (rc)
        goto out;
    if (l.digest != info->digest) { /* ckpt_verify checked it too; belt and braces */
        seg_error(err, err_size, "checkpoint %s: loaded digest %016" PRIx64 " differs from its header's", path,
                  l.digest);
        rc = RK_ECORRUPT;
        goto out;
    }
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
         * checkpoint in a journal cannot be applied after it */
        for (uint32_t i = 0; i < info->n_producers; i++) {
            struct producer *p = apply_producer(a, info->producers[i].name);
            if (!p) {
                rc = ENOMEM;
                goto out;
            }
            p->m.applied_lsn = info->producers[i].applied_lsn;
            p->m.height = info->producers[i].height;
            p->dirty = 1;
        }
    }
    /* A1, A4: applied up to the checkpoint's journal_seq, reading goes on
     * at most one past it */
    a->next_seq = a->am.restart_seq > info->journal_seq + 1 || !info->has_replay ? info->journal_seq + 1
                                                                                  : a->am.restart_seq;
    a->am.restart_seq = a->next_seq;
    /* apply_txn_commit() writes "applied" (restart point: no group is
     * open), the producers and the maps with the last entries */
    rc = apply_txn_commit(a);
    if (!rc && progress)
        rc = progress(progress_arg, l.n, l.total);
out:
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
