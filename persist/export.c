/* apply.c -- the journal applied to the state tables, one atomic group at a
 * time (see apply.h for the rules and the meta records).
 *
 * A frame's way through the applier (apply_frame):
 *
 *   TABLE  ------------------------> table map (id -> name)
 *   ATTACH ---- discard_group() ---> slot map (slot -> producer name)
 *   ABORT  ---- discard_group(), unless below the producer's discard_lsn
 *              (an earlier session's, reported again after a restart)
 *   PUT/DEL, lsn > producer's applied LSN ---> held in the producer's open group
 *   MARK,    lsn > producer's applied LSN ---> apply_group(): the held frames go
 *            into the current transaction with the producer's new mark
 *   anything at or below the producer's applied LSN: applied before a crash,
 *   skipped.
 *
 * commit() ends the transaction after whole journal entries (so only at
 * group boundaries), writing the restart point: the first entry of the
 * oldest group still open, or the next entry if none is.
 *
 * Meta values are little-endian structs (x86-64).  Threads: one thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "persist/apply.h"
#include "persist/checkpoint.h"
#include "persist/log.h"
#include "shm/ring.h"
#include "shm/segment.h"

#define STATE_FILE "state.db"
#define MAX_TABLES 4096

struct held_group {
    uint8_t *buf; /* the held frames, each at an 8-aligned offset */
    size_t len, cap;
    uint32_t n_frames;
    uint64_t start_seq; /* journal entry of its first frame */
};

struct producer {
    char name[RK_NAME_MAX + 1];
    struct producer_meta m;
    int dirty; /* m changed in the open transaction */
    struct held_group open;
};

struct table {
    char name[RK_NAME_MAX + 1];
    DB *db;
};

struct applier {
    store *s;
    DB_ENV *env;
    DB *meta;
    DB_TXN *txn;          /* the open transaction, or NULL */
    uint32_t txn_records; /* records applied in it */
    struct apply_meta am;
    uint64_t next_seq; /* next journal entry to read */
    /* ring ids of the current ring, from TABLE and ATTACH frames */
    char table_map[RING_MAX_TABLES][RK_NAME_MAX + 1];
    char slot_map[RING_MAX_PRODUCERS][RK_NAME_MAX + 1];
    int maps_dirty;
    struct producer *producers;
    size_t n_producers;
    struct table *tables;
    size_t n_tables;
    /* applier_watch_height: stop after the entry in which this producer's
     * height crossed a multiple of watch_every */
    char watch_name[RK_NAME_MAX + 1];
    uint64_t watch_every, watch_last;
    int watch_hit;
};

/* ------------------------------------------------------------ meta */

static int meta_get(applier *a, DB_TXN *txn, const char *key, void *val, size_t len)
{
    DBT k = {.data = (void *)key, .size = (u_int32_t)strlen(key)};
    DBT v = {.data = val, .ulen = (u_int32_t)len, .flags = DB_DBT_USERMEM};
    int rc = a->meta->get(a->meta, txn, &k, &v, 0);

    if (rc == DB_NOTFOUND)
        return RK_ENOTFOUND;
    if (rc == 0 && v.size != len)
        return RK_ECORRUPT;
    return rc;
}

static int meta_put(applier *a, const char *key, const void *val, size_t len)
{
    DBT k = {.data = (void *)key, .size = (u_int32_t)strlen(key)};
    DBT v = {.data = (void *)val, .size = (u_int32_t)len};

    return a->meta->put(a->meta, a->txn, &k, &v, 0);
}

struct maps_record {
    char table_map[RING_MAX_TABLES][RK_NAME_MAX + 1];
    char slot_map[RING_MAX_PRODUCERS][RK_NAME_MAX + 1];
};

/* ------------------------------------------------------------ lookups */

static struct producer *producer_by_name(applier *a, const char *name)
{
    struct producer *p;
    char key[RK_NAME_MAX + 3];

    for (size_t i = 0; i < a->n_producers; i++)
        if (strcmp(a->producers[i].name, name) == 0)
            return &a->producers[i];
    p = realloc(a->producers, (a->n_producers + 1) * sizeof *p);
    if (!p)
        return NULL;
    a->producers = p;
    p = &a->producers[a->n_producers++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(key, sizeof key, "p:%s", name);
    if (meta_get(a, a->txn, key, &p->m, sizeof p->m) != 0)
        memset(&p->m, 0, sizeof p->m);
    return p;
}

static struct producer *producer_of_slot(applier *a, uint16_t slot)
{
    if (slot >= RING_MAX_PRODUCERS || a->slot_map[slot][0] == '\0')
        return NULL;
    return producer_by_name(a, a->slot_map[slot]);
}

/* The database of table `name`, opened (and created) in the open
 * transaction the first time. */
static int table_db(applier *a, const char *name, int create, DB **out)
{
    char subname[RK_NAME_MAX + 3];
    struct table *t;
    DB *db = NULL;
    int rc;

    for (size_t i = 0; i < a->n_tables; i++) {
        if (strcmp(a->tables[i].name, name) == 0) {
            *out = a->tables[i].db;
            return 0;
        }
    }
    if (a->n_tables >= MAX_TABLES)
        return RK_ETABLES;
    t = realloc(a->tables, (a->n_tables + 1) * sizeof *t);
    if (!t)
        return ENOMEM;
    a->tables = t;
    snprintf(subname, sizeof subname, "t:%s", name);
    rc = db_create(&db, a->env, 0);
    if (rc)
        return rc;
    /* opened in a transaction (the open one, or its own), so that the
     * handle can be used in transactions */
    rc = db->open(db, a->txn, STATE_FILE, subname, DB_BTREE,
                  (create ? DB_CREATE : 0) | (a->txn ? 0 : DB_AUTO_COMMIT) | DB_THREAD | DB_MULTIVERSION, 0600);
    if (rc) {
        db->close(db, 0);
        return rc == ENOENT ? RK_ENOTFOUND : rc;
    }
    t = &a->tables[a->n_tables++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->db = db;
    *out = db;
    return 0;
}

/* ------------------------------------------------------------ groups */

static int hold(struct held_group *g, const ring_frame *f, uint64_t seq)
{
    size_t need = frame_align(f->raw_len);

    if (g->len + need > g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 4096;
        uint8_t *buf;
        while (cap < g->len + need)
            cap *= 2;
        buf = realloc(g->buf, cap);
        if (!buf)
            return ENOMEM;
        g->buf = buf;
        g->cap = cap;
    }
    if (g->n_frames == 0)
        g->start_seq = seq;
    memcpy(g->buf + g->len, f->raw, f->raw_len);
    g->len += need;
    g->n_frames++;
    return 0;
}

static void discard_group(applier *a, struct producer *p, const ring_frame *why)
{
    if (p->open.n_frames && why->lsn > p->m.discard_lsn) {
        a->am.n_discarded++;
        log_msg(LOG_WARN, "open group discarded",
                "producer=%s records=%u first_seq=%" PRIu64 " reason=%s lsn=%" PRIu64, p->name,
                p->open.n_frames, p->open.start_seq, why->type == FRAME_ABORT ? "died" : "re-attached",
                why->lsn);
    }
    if (why->lsn > p->m.discard_lsn) {
        p->m.discard_lsn = why->lsn;
        p->dirty = 1;
    }
    p->open.len = 0;
    p->open.n_frames = 0;
}

static int begin(applier *a)
{
    if (a->txn)
        return 0;
    a->txn_records = 0;
    return a->env->txn_begin(a->env, NULL, &a->txn, 0);
}

/* Applies one PUT or DEL to db (table `table`) and keeps the state digest:
 * the old value's term leaves it, the new value's term joins it.  One
 * cursor positioning finds the old value and replaces it in place. */
static int apply_record(applier *a, DB *db, const char *table, const struct frame_header *h,
                        const uint8_t *raw)
{
    const uint8_t *key = raw + FRAME_HEADER_SIZE, *val = key + h->klen;
    uint32_t vlen = h->length - FRAME_HEADER_SIZE - h->klen;
    DBT k = {.data = (void *)key, .size = h->klen}, old = {0};
    DBT v = {.data = (void *)val, .size = vlen};
    DBC *cur = NULL;
    int rc = db->cursor(db, a->txn, &cur, 0), found;

    if (rc)
        return rc;
    rc = cur->get(cur, &k, &old, DB_SET | DB_RMW);
    found = rc == 0;
    if (rc == DB_NOTFOUND)
        rc = 0;
    if (!rc && found)
        a->am.digest -= ckpt_entry_digest(table, key, h->klen, old.data, old.size);
    if (!rc && h->type == FRAME_PUT) {
        rc = found ? cur->put(cur, &k, &v, DB_CURRENT) : db->put(db, a->txn, &k, &v, 0);
        if (!rc)
            a->am.digest += ckpt_entry_digest(table, key, h->klen, val, vlen);
    } else if (!rc && found) {
        rc = cur->del(cur, 0);
    }
    cur->close(cur);
    return rc;
}

/* Applies p's held frames and its MARK at mark in the open transaction. */
static int apply_group(applier *a, struct producer *p, const ring_frame *mark)
{
    uint64_t height = 0;
    int rc = 0;

    for (size_t off = 0; off < p->open.len;) {
        const uint8_t *raw = p->open.buf + off;
        struct frame_header h;
        DB *db = NULL;

        memcpy(&h, raw, sizeof h);
        off += frame_align(h.length);
        if (h.table >= RING_MAX_TABLES || a->table_map[h.table][0] == '\0')
            return RK_ECORRUPT; /* checked when held */
        rc = table_db(a, a->table_map[h.table], 1, &db);
        if (rc)
            return rc;
        rc = apply_record(a, db, a->table_map[h.table], &h, raw);
        if (rc)
            return rc;
        a->am.n_records++;
        a->txn_records++;
    }
    for (int i = 0; i < 8; i++)
        height |= (uint64_t)mark->val[i] << (8 * i);
    p->m.applied_lsn = mark->lsn;
    p->m.height = height;
    p->m.n_groups++;
    p->dirty = 1;
    p->open.len = 0;
    p->open.n_frames = 0;
    a->am.n_groups++;
    a->am.applied_lsn = mark->lsn;
    return 0;
}

static int apply_frame(applier *a, const ring_frame *f, uint64_t seq, char *err, size_t err_size)
{
    struct producer *p;
    char name[RK_NAME_MAX + 1];

    switch (f->type) {
    case FRAME_TABLE:
        if (f->klen == 0 || f->klen > RK_NAME_MAX || f->table >= RING_MAX_TABLES)
            goto bad;
        memcpy(name, f->key, f->klen);
        name[f->klen] = '\0';
        if (strcmp(a->table_map[f->table], name) != 0) {
            snprintf(a->table_map[f->table], sizeof a->table_map[f->table], "%s", name);
            a->maps_dirty = 1;
        }
        return 0;
    case FRAME_ATTACH:
        if (f->klen == 0 || f->klen > RK_NAME_MAX || f->producer >= RING_MAX_PRODUCERS)
            goto bad;
        memcpy(name, f->key, f->klen);
        name[f->klen] = '\0';
        p = producer_by_name(a, name);
        if (!p)
            return ENOMEM;
        discard_group(a, p, f);
        if (strcmp(a->slot_map[f->producer], name) != 0) {
            snprintf(a->slot_map[f->producer], sizeof a->slot_map[f->producer], "%s", name);
            a->maps_dirty = 1;
        }
        return 0;
    default:
        break;
    }
    p = producer_of_slot(a, f->producer);
    if (!p)
        goto bad;
    if (f->type == FRAME_ABORT) {
        /* An ABORT below the producer's last ATTACH (or ABORT) is about a
         * session that ended before it: a consumer restarted from before a
         * dead claim it had already reported reports it again.  The open
         * group is the newer session's: keep it.  (Every ABORT of a session
         * lies above that session's ATTACH, and the consumer delivers it
         * before the next session's ATTACH, whose LSN is higher.) */
        if (f->lsn < p->m.discard_lsn)
            return 0;
        discard_group(a, p, f);
        return 0;
    }
    if (f->lsn <= p->m.applied_lsn)
        return 0; /* applied before a crash */
    if (f->type == FRAME_MARK)
        return apply_group(a, p, f);
    if (f->table >= RING_MAX_TABLES || a->table_map[f->table][0] == '\0')
        goto bad; /* (frame_decode refuses ids >= RING_MAX_TABLES already) */
    return hold(&p->open, f, seq);
bad:
    snprintf(err, err_size,
             "journal entry %" PRIu64 ": frame at LSN %" PRIu64 " (type %u) names an unknown "
             "table or producer",
             seq, f->lsn, f->type);
    return RK_ECORRUPT;
}

static int commit(applier *a)
{
    char key[RK_NAME_MAX + 3];
    /* every entry before next_seq has been read; a group still open began
     * at its start_seq.  (Not applied_seq + 1: while entries are read
     * again after a restart, next_seq is below it, and a group that began
     * in an entry not yet re-read must not lose its start.) */
    uint64_t restart = a->next_seq;
    int rc;

    if (!a->txn)
        return 0;
    for (size_t i = 0; i < a->n_producers; i++) {
        struct producer *p = &a->producers[i];
        if (p->open.n_frames && p->open.start_seq < restart)
            restart = p->open.start_seq;
        if (!p->dirty)
            continue;
        snprintf(key, sizeof key, "p:%s", p->name);
        rc = meta_put(a, key, &p->m, sizeof p->m);
        if (rc)
            return rc;
        p->dirty = 0;
    }
    a->am.restart_seq = restart;
    rc = meta_put(a, "applied", &a->am, sizeof a->am);
    if (!rc && a->maps_dirty) {
        struct maps_record *m = malloc(sizeof *m);
        if (!m)
            return ENOMEM;
        memcpy(m->table_map, a->table_map, sizeof m->table_map);
        memcpy(m->slot_map, a->slot_map, sizeof m->slot_map);
        rc = meta_put(a, "maps", m, sizeof *m);
        free(m);
        a->maps_dirty = 0;
    }
    if (rc)
        return rc;
    /* no sync: the journal is durable, a lost transaction is applied again */
    rc = a->txn->commit(a->txn, DB_TXN_NOSYNC);
    a->txn = NULL;
    return rc;
}

int applier_run(applier *a, uint64_t upto, uint32_t max_records, char *err, size_t err_size)
{
    journal_entry e = {0};
    int rc = 0;

    while (a->next_seq <= upto) {
        ring_frame f;
        rc = store_journal_get(a->s, a->next_seq, &e, err, err_size);
        if (rc == RK_ENOTFOUND) {
            rc = 0;
            break;
        }
        if (rc)
            break;
        rc = begin(a);
        for (size_t off = 0; !rc && off < e.h.raw_len; off += frame_align(f.raw_len)) {
            rc = frame_decode(e.frames + off, e.h.raw_len - off, &f, err, err_size);
            if (!rc)
                rc = apply_frame(a, &f, a->next_seq, err, err_size);
        }
        journal_entry_free(&e);
        if (rc)
            break;
        if (a->next_seq > a->am.applied_seq)
            a->am.applied_seq = a->next_seq;
        a->next_seq++;
        if (a->watch_every) {
            struct producer *w = producer_by_name(a, a->watch_name);
            if (w && w->m.height / a->watch_every > a->watch_last / a->watch_every) {
                a->watch_last = w->m.height;
                a->watch_hit = 1;
                break; /* committed below: a group boundary right after the crossing */
            }
        }
        if (a->txn_records >= max_records) {
            rc = commit(a);
            if (rc)
                break;
        }
    }
    if (!rc)
        rc = commit(a);
    if (rc && a->txn) {
        /* a failed transaction leaves the held groups and counters ahead of
         * the database: the caller treats this as fatal and restarts */
        a->txn->abort(a->txn);
        a->txn = NULL;
    }
    if (rc && err && !err[0])
        snprintf(err, err_size, "apply: %s", store_strerror(rc));
    return rc;
}

struct apply_meta applier_meta(const applier *a)
{
    return a->am;
}

int applier_open(store *s, applier **out, char *err, size_t err_size)
{
    applier *a = calloc(1, sizeof *a);
    struct maps_record *m = NULL;
    int rc;

    if (!a)
        return ENOMEM;
    a->s = s;
    a->env = store_env(s);
    a->meta = store_meta(s);
    rc = meta_get(a, NULL, "applied", &a->am, sizeof a->am);
    if (rc == RK_ENOTFOUND) {
        memset(&a->am, 0, sizeof a->am);
        a->am.restart_seq = 1;
        rc = 0;
    }
    if (rc)
        goto fail;
    m = malloc(sizeof *m);
    if (!m) {
        rc = ENOMEM;
        goto fail;
    }
    rc = meta_get(a, NULL, "maps", m, sizeof *m);
    if (rc == 0) {
        memcpy(a->table_map, m->table_map, sizeof a->table_map);
        memcpy(a->slot_map, m->slot_map, sizeof a->slot_map);
    } else if (rc == RK_ENOTFOUND) {
        rc = 0;
    } else {
        goto fail;
    }
    /* open groups are not in the database: read them again from the
     * first entry of the oldest one */
    a->next_seq = a->am.restart_seq ? a->am.restart_seq : 1;
    free(m);
    *out = a;
    return 0;
fail:
    snprintf(err, err_size, "cannot read the applier's state from meta.db: %s", store_strerror(rc));
    free(m);
    free(a);
    return rc;
}

void applier_close(applier *a)
{
    if (!a)
        return;
    if (a->txn)
        a->txn->abort(a->txn);
    for (size_t i = 0; i < a->n_tables; i++)
        a->tables[i].db->close(a->tables[i].db, 0);
    for (size_t i = 0; i < a->n_producers; i++)
        free(a->producers[i].open.buf);
    free(a->tables);
    free(a->producers);
    free(a);
}

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
            rc = table_db(a, name, 0, &src);
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
        return RK_EINVAL; /* only between applier_run calls: at a group boundary */
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
    if (!rc && written->digest != info->digest) {
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

/* ------------------------------------------------------------ loading */

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
        rc = begin(a);
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
            rc = table_db(l->a, table, 1, &l->db);
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
    rc = begin(a);
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
    a->am.digest = info->digest;
    a->am.applied_seq = info->journal_seq;
    a->am.applied_lsn = info->lsn;
    if (info->has_replay) {
        const struct ckpt_replay *rp = &info->replay;
        a->am.restart_seq = rp->restart_seq;
        a->am.n_groups = rp->n_groups;
        a->am.n_records = rp->n_records;
        a->am.n_discarded = rp->n_discarded;
        for (uint32_t i = 0; i < rp->n_producers; i++) {
            struct producer *p = producer_by_name(a, rp->producers[i].name);
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
                snprintf(a->table_map[rp->table_ids[i].id], RK_NAME_MAX + 1, "%s", rp->table_ids[i].name);
        for (uint32_t i = 0; i < rp->n_slots; i++)
            if (rp->slots[i].id < RING_MAX_PRODUCERS)
                snprintf(a->slot_map[rp->slots[i].id], RK_NAME_MAX + 1, "%s", rp->slots[i].name);
        a->maps_dirty = 1;
    } else {
        /* format 1.0: the marks, but no replay point; what follows the
         * checkpoint in a journal cannot be applied after it */
        for (uint32_t i = 0; i < info->n_producers; i++) {
            struct producer *p = producer_by_name(a, info->producers[i].name);
            if (!p) {
                rc = ENOMEM;
                goto out;
            }
            p->m.applied_lsn = info->producers[i].applied_lsn;
            p->m.height = info->producers[i].height;
            p->dirty = 1;
        }
    }
    a->next_seq = a->am.restart_seq > info->journal_seq + 1 || !info->has_replay ? info->journal_seq + 1
                                                                                  : a->am.restart_seq;
    a->am.restart_seq = a->next_seq;
    /* commit() writes "applied" (restart point: no group is open), the
     * producers and the maps with the last entries */
    rc = commit(a);
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

uint64_t applier_read_upto(const applier *a)
{
    return a->next_seq - 1;
}

void applier_watch_height(applier *a, const char *name, uint64_t every)
{
    struct producer *p;

    snprintf(a->watch_name, sizeof a->watch_name, "%s", name);
    a->watch_every = every;
    p = every ? producer_by_name(a, name) : NULL;
    a->watch_last = p ? p->m.height : 0;
    a->watch_hit = 0;
}

int applier_height_crossed(applier *a)
{
    int hit = a->watch_hit;

    a->watch_hit = 0;
    return hit;
}
