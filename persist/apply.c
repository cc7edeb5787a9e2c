/* apply.c -- the journal applied to the state tables, one atomic group at a
 * time (see apply.h for the rules and the meta records); the applier's
 * snapshots and checkpoints are written by export.c, a checkpoint is
 * loaded into it by import.c (apply_impl.h holds what they share).
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
 *            (pending, written to the tables in key order at commit:
 *            apply_pending)
 *   anything at or below the producer's applied LSN: applied before a crash,
 *   skipped.
 *
 * apply_txn_commit() ends the transaction after whole journal entries (so
 * only at group boundaries), writing the restart point: the first entry of
 * the oldest group still open, or the next entry if none is.
 *
 * Meta values are little-endian structs (x86-64).  Threads: an applier is
 * used by one thread at a time; nothing here locks.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persist/apply.h"
#include "persist/apply_impl.h"
#include "persist/bytes.h"
#include "persist/checkpoint.h"
#include "persist/log.h"
#include "shm/ring.h"

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

#define LOADING_KEY "loading"

int apply_loading_put(applier *a, uint64_t journal_seq)
{
    return meta_put(a, LOADING_KEY, &journal_seq, sizeof journal_seq);
}

int apply_loading_del(applier *a)
{
    DBT k = {.data = (void *)LOADING_KEY, .size = sizeof LOADING_KEY - 1};
    int rc = a->meta->del(a->meta, a->txn, &k, 0);

    return rc == DB_NOTFOUND ? 0 : rc;
}

int applier_load_interrupted(const applier *a, uint64_t *journal_seq)
{
    if (journal_seq)
        *journal_seq = a->loading_seq;
    return a->load_interrupted;
}

/* ------------------------------------------------------------ lookups */

struct producer *apply_producer(applier *a, const char *name)
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
    /* a fold is given its snapshot's records (export.c): a producer it
     * was not given had none there, whatever meta.db holds by now */
    if (a->fold || meta_get(a, a->txn, key, &p->m, sizeof p->m) != 0)
        memset(&p->m, 0, sizeof p->m);
    return p;
}

/* The producer attached in ring slot `slot`: by the slot's index, looked
 * up by name only the first time after the slot's name was set. */
static struct producer *producer_of_slot(applier *a, uint16_t slot)
{
    struct producer *p;

    if (slot >= RING_MAX_PRODUCERS || a->slot_map[slot][0] == '\0')
        return NULL;
    if (a->slot_producer[slot]) {
        p = &a->producers[a->slot_producer[slot] - 1];
        assert(strcmp(p->name, a->slot_map[slot]) == 0); /* A6 */
        return p;
    }
    p = apply_producer(a, a->slot_map[slot]);
    if (p)
        a->slot_producer[slot] = (uint32_t)(p - a->producers) + 1;
    return p;
}

void apply_map_table(applier *a, uint32_t id, const char *name)
{
    if (strcmp(a->table_map[id], name) == 0)
        return;
    snprintf(a->table_map[id], sizeof a->table_map[id], "%s", name);
    a->table_index[id] = 0;
    a->maps_dirty = 1;
}

void apply_map_slot(applier *a, uint32_t slot, const char *name)
{
    if (strcmp(a->slot_map[slot], name) == 0)
        return;
    snprintf(a->slot_map[slot], sizeof a->slot_map[slot], "%s", name);
    a->slot_producer[slot] = 0;
    a->maps_dirty = 1;
}

/* Names table id (is_slot 0) or producer slot (1) `id` `name` for a frame
 * of journal entry seq, noting what it replaces in a->changes. */
static int map_from_journal(applier *a, uint64_t seq, int is_slot, uint32_t id, const char *name)
{
    const char *old = is_slot ? a->slot_map[id] : a->table_map[id];
    struct map_change *c;

    if (strcmp(old, name) == 0)
        return 0;
    if (a->n_changes == a->cap_changes) {
        size_t cap = a->cap_changes ? a->cap_changes * 2 : 16;
        c = realloc(a->changes, cap * sizeof *c);
        if (!c)
            return ENOMEM;
        a->changes = c;
        a->cap_changes = cap;
    }
    c = &a->changes[a->n_changes++];
    c->seq = seq;
    c->id = (uint16_t)id;
    c->is_slot = (uint8_t)is_slot;
    memcpy(c->old, old, sizeof c->old);
    if (is_slot)
        apply_map_slot(a, id, name);
    else
        apply_map_table(a, id, name);
    return 0;
}

void apply_maps_at(const applier *a, uint64_t seq, struct maps_record *out)
{
    memcpy(out->table_map, a->table_map, sizeof out->table_map);
    memcpy(out->slot_map, a->slot_map, sizeof out->slot_map);
    for (size_t i = a->n_changes; i-- > 0 && a->changes[i].seq >= seq;) {
        const struct map_change *c = &a->changes[i];
        memcpy(c->is_slot ? out->slot_map[c->id] : out->table_map[c->id], c->old, sizeof c->old);
    }
}

/* Table `name`'s index in a->tables, the table opened (and, with create,
 * created) the first time. */
static int table_at(applier *a, const char *name, int create, size_t *at)
{
    char subname[RK_NAME_MAX + 3];
    struct table *t;
    DB *db = NULL;
    int rc;

    for (size_t i = 0; i < a->n_tables; i++) {
        if (strcmp(a->tables[i].name, name) == 0) {
            *at = i;
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
    /* a fold's tables are names only: it never writes to state.db */
    rc = a->fold ? 0 : db_create(&db, a->env, 0);
    if (rc)
        return rc;
    /* opened in a transaction (the open one, or its own), so that the
     * handle can be used in transactions.  Not DB_MULTIVERSION: Berkeley
     * DB copies a page at the first write of every transaction to it
     * while any handle on the file is multiversion (the count is the
     * file's, in the cache), a copy per record for random keys (issue
     * 13.3: 20-30% of apply's CPU).  Snapshot readers need those copies
     * only while they read: each checkpoint job opens a multiversion
     * handle of its own on state.db before its snapshot begins, at a
     * group boundary, and closes it after (export.c, snapshot_pin). */
    if (db)
        rc = db->open(db, a->txn, STATE_FILE, subname, DB_BTREE,
                      (create ? DB_CREATE : 0) | (a->txn ? 0 : DB_AUTO_COMMIT) | DB_THREAD, 0600);
    if (rc) {
        db->close(db, 0);
        return rc == ENOENT ? RK_ENOTFOUND : rc;
    }
    *at = a->n_tables;
    t = &a->tables[a->n_tables++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->db = db;
    t->key_seen = 0;
    return 0;
}

int apply_table_db(applier *a, const char *name, int create, DB **out)
{
    size_t at;
    int rc = table_at(a, name, create, &at);

    if (!rc)
        *out = a->tables[at].db;
    return rc;
}

void apply_close_tables(applier *a)
{
    assert(!a->txn && a->pending.n_records == 0); /* A2: between transactions */
    for (size_t i = 0; i < a->n_tables; i++)
        a->tables[i].db->close(a->tables[i].db, DB_NOSYNC); /* the log holds what they wrote */
    a->n_tables = 0;
    memset(a->table_index, 0, sizeof a->table_index);
}

/* The table ring table id `id` names now (A6): by the id's index, looked
 * up by name only the first time after the id's name was set. */
static int table_of_id(applier *a, uint16_t id, struct table **out)
{
    size_t at;
    int rc;

    if (a->table_index[id]) {
        *out = &a->tables[a->table_index[id] - 1];
        assert(strcmp((*out)->name, a->table_map[id]) == 0); /* A6 */
        return 0;
    }
    rc = table_at(a, a->table_map[id], 1, &at);
    if (rc)
        return rc;
    a->table_index[id] = (uint32_t)at + 1;
    *out = &a->tables[at];
    return 0;
}

/* ------------------------------------------------------------ groups */

/* Holds a PUT or DEL of an open group until its MARK (A2). */
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

/* Why an ATTACH or ABORT voided a group, for the log. */
static const char *discard_reason(const ring_frame *why)
{
    struct frame_attach at;

    if (why->type == FRAME_ABORT)
        return "died";
    if (why->vlen == sizeof at) {
        memcpy(&at, why->val, sizeof at);
        if (at.flags & RING_ATTACH_DETACH)
            return "detached";
    }
    return "re-attached";
}

/* An ATTACH or ABORT voids p's open group (A2). */
static void discard_group(applier *a, struct producer *p, const ring_frame *why)
{
    if (p->open.n_frames && why->lsn > p->m.discard_lsn) {
        a->am.n_discarded++;
        if (!a->fold) /* apply logs it when it gets there */
            log_msg(LOG_WARN, "open group discarded",
                    "producer=%s records=%u first_seq=%" PRIu64 " reason=%s lsn=%" PRIu64, p->name,
                    p->open.n_frames, p->open.start_seq, discard_reason(why), why->lsn);
    }
    if (why->lsn > p->m.discard_lsn) {
        p->m.discard_lsn = why->lsn;
        p->dirty = 1;
    }
    p->open.len = 0;
    p->open.n_frames = 0;
}

int apply_txn_begin(applier *a)
{
    if (a->txn || a->fold) /* a fold keeps its groups in pending, never commits */
        return 0;
    a->txn_records = 0;
    return a->env->txn_begin(a->env, NULL, &a->txn, 0);
}

#define KEY_SEEN_LIMIT 64

/* Applies one PUT or DEL to table t through cur (t's cursor in the open
 * transaction) and keeps the state digest (A5): the old value's term
 * leaves it, the new value's term joins it, in the same transaction.
 * A key already there takes one descent of the B-tree when the cursor
 * looks it up (DB_SET) and replaces it in place (DB_CURRENT); a new key
 * takes one when it is put with DB_NOOVERWRITE, and two the other way
 * round (a failed lookup, then the insert searches again; an existing key
 * put with DB_NOOVERWRITE is refused and looked up).  t->key_seen follows
 * which kind the table's recent PUTs were and picks the way that costs
 * one descent for that kind (issue 13.3: new keys took two descents, and
 * apply ran at 0.65-0.74 of raw Berkeley DB puts). */
static int apply_record(applier *a, DBC *cur, struct table *t, const struct frame_header *h,
                        const uint8_t *raw)
{
    const uint8_t *key = raw + FRAME_HEADER_SIZE, *val = key + h->klen;
    uint32_t vlen = h->length - FRAME_HEADER_SIZE - h->klen;
    DBT k = {.data = (void *)key, .size = h->klen}, old = {0};
    DBT v = {.data = (void *)val, .size = vlen};
    int rc, found;

    if (h->type == FRAME_PUT && t->key_seen < 0) {
        rc = t->db->put(t->db, a->txn, &k, &v, DB_NOOVERWRITE);
        if (rc == 0) {
            a->am.digest += ckpt_entry_digest(t->name, key, h->klen, val, vlen);
            t->key_seen -= t->key_seen > -KEY_SEEN_LIMIT;
            return 0;
        }
        if (rc != DB_KEYEXIST)
            return rc;
    }
    rc = cur->get(cur, &k, &old, DB_SET | DB_RMW);
    found = rc == 0;
    if (rc == DB_NOTFOUND)
        rc = 0;
    if (h->type == FRAME_PUT) /* up when found, down when new, saturating */
        t->key_seen += found ? (t->key_seen < KEY_SEEN_LIMIT) : -(t->key_seen > -KEY_SEEN_LIMIT);
    if (!rc && found)
        a->am.digest -= ckpt_entry_digest(t->name, key, h->klen, old.data, old.size);
    if (!rc && h->type == FRAME_PUT) {
        rc = cur->put(cur, &k, &v, found ? DB_CURRENT : DB_KEYFIRST);
        if (!rc)
            a->am.digest += ckpt_entry_digest(t->name, key, h->klen, val, vlen);
    } else if (!rc && found) {
        rc = cur->del(cur, 0);
    }
    return rc;
}

/* Adds one record of a group being applied to a->pending, for table t. */
static int pend(applier *a, uint32_t table, const uint8_t *raw, const struct frame_header *h)
{
    struct pending *pd = &a->pending;
    size_t need = frame_align(h->length);

    if (pd->len + need > pd->cap) {
        size_t cap = pd->cap ? pd->cap * 2 : 1u << 16;
        uint8_t *buf;
        while (cap < pd->len + need)
            cap *= 2;
        buf = realloc(pd->buf, cap);
        if (!buf)
            return ENOMEM;
        pd->buf = buf;
        pd->cap = cap;
    }
    if (pd->n_records == pd->cap_records) {
        size_t cap = pd->cap_records ? pd->cap_records * 2 : 1024;
        struct pending_record *r = realloc(pd->records, cap * sizeof *r);
        if (!r)
            return ENOMEM;
        pd->records = r;
        pd->cap_records = cap;
        /* pending_sort's other half; without it (out of memory) the sort
         * is qsort's */
        free(pd->spare);
        pd->spare = malloc(cap * sizeof *pd->spare);
    }
    memcpy(pd->buf + pd->len, raw, h->length);
    pd->records[pd->n_records] = (struct pending_record){
        .off = pd->len, .prefix = key_prefix(pd->buf + pd->len + FRAME_HEADER_SIZE, h->klen), .klen = h->klen,
        .table = table};
    pd->n_records++;
    pd->len += need;
    return 0;
}

/* Berkeley DB's default btree order (bytes, then the shorter first), by
 * table, then journal order. */
static int pending_cmp(const void *x, const void *y)
{
    const struct pending_record *p = x, *q = y;
    uint32_t n = p->klen < q->klen ? p->klen : q->klen;
    int c;

    if (p->table != q->table)
        return p->table < q->table ? -1 : 1;
    /* the first 8 bytes as one number (key_prefix): most keys differ
     * there, and a call to memcmp a comparison was most of the sort */
    if (p->prefix != q->prefix)
        return p->prefix < q->prefix ? -1 : 1;
    c = n > 8 ? memcmp(p->key + 8, q->key + 8, n - 8) : 0;
    if (c)
        return c;
    if (p->klen != q->klen)
        return p->klen < q->klen ? -1 : 1;
    return p->off < q->off ? -1 : p->off > q->off;
}

/* Byte d of a record's sort number (table, then the key's first 8 bytes):
 * d 0-7 the prefix's, least significant first; 8-11 the table's. */
static inline unsigned sort_digit(const struct pending_record *r, unsigned d)
{
    return d < 8 ? (unsigned)(r->prefix >> (8 * d)) & 0xff : (r->table >> (8 * (d - 8))) & 0xff;
}

/* LSD radix sort of n records by (table, prefix), stable: records of one
 * sort number stay in journal order.  A digit every record shares (the
 * tables' high bytes, a prefix's leading bytes) costs its count only.
 * Returns where the sorted records are: records or spare. */
static struct pending_record *radix_sort(struct pending_record *records, struct pending_record *spare, size_t n)
{
    struct pending_record *from = records, *to = spare;

    for (unsigned d = 0; d < 12; d++) {
        size_t count[256] = {0}, at = 0;
        for (size_t i = 0; i < n; i++)
            count[sort_digit(&from[i], d)]++;
        if (count[sort_digit(&from[0], d)] == n)
            continue; /* one value: the order stays */
        for (unsigned v = 0; v < 256; v++) {
            size_t c = count[v];
            count[v] = at;
            at += c;
        }
        for (size_t i = 0; i < n; i++)
            to[count[sort_digit(&from[i], d)]++] = from[i];
        struct pending_record *t = from;
        from = to;
        to = t;
    }
    return from;
}

/* Sorts the records by pending_cmp: a radix sort by table and the keys'
 * first 8 bytes, then each run of records that share them (keys longer
 * than 8 bytes that differ further on, or one key's records, already in
 * journal order) by pending_cmp itself.  qsort's calls to pending_cmp
 * were 8-10% of apply's CPU (bench_node). */
void pending_sort(struct pending *pd)
{
    struct pending_record *sorted;
    size_t n = pd->n_records;

    if (n == 0) /* records may be NULL */
        return;
    for (size_t i = 0; i < n; i++)
        pd->records[i].key = pd->buf + pd->records[i].off + FRAME_HEADER_SIZE;
    if (!pd->spare || n < 64) {
        qsort(pd->records, n, sizeof *pd->records, pending_cmp); /* few, or no room for the radix sort */
        return;
    }
    sorted = radix_sort(pd->records, pd->spare, n);
    if (sorted != pd->records) { /* the records array stays the one pending_add grows */
        pd->spare = pd->records;
        pd->records = sorted;
    }
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && pd->records[j].table == pd->records[i].table &&
                        pd->records[j].prefix == pd->records[i].prefix;
             j++)
            ;
        if (j - i > 1)
            qsort(pd->records + i, j - i, sizeof *pd->records, pending_cmp);
    }
}

/* Writes the open transaction's pending records to the tables, in key
 * order: a B-tree walked in order touches each page once, in cache, where
 * journal order (random keys) descends from the root into a different
 * page for every record.  Of several records of one key only the last in
 * journal order is written: what the key holds, and the digest (A5), are
 * then the same as after all of them in turn (the earlier values' terms
 * would join and leave again).  Whole groups only are pending (A2), and
 * they commit together, so the order within the transaction is nobody's
 * to see. */
static int apply_pending(applier *a)
{
    struct pending *pd = &a->pending;
    DBC *cur = NULL;
    uint32_t cur_table = UINT32_MAX;
    int rc = 0;

    pending_sort(pd);
    for (size_t i = 0; !rc && i < pd->n_records; i++) {
        const struct pending_record *r = &pd->records[i], *next = i + 1 < pd->n_records ? r + 1 : NULL;
        struct frame_header h;
        if (next && next->table == r->table && next->klen == r->klen && memcmp(next->key, r->key, r->klen) == 0)
            continue; /* a later record of this key is written instead */
        if (r->table != cur_table) {
            if (cur)
                rc = cur->close(cur);
            cur = NULL;
            cur_table = r->table;
            if (!rc)
                rc = a->tables[r->table].db->cursor(a->tables[r->table].db, a->txn, &cur, 0);
            if (rc)
                break;
        }
        memcpy(&h, pd->buf + r->off, sizeof h);
        rc = apply_record(a, cur, &a->tables[r->table], &h, pd->buf + r->off);
    }
    if (cur) {
        int close_rc = cur->close(cur);
        if (!rc)
            rc = close_rc;
    }
    pd->len = 0;
    pd->n_records = 0;
    return rc;
}

/* Applies p's held frames and its MARK at mark in the open transaction:
 * the whole group (A2), once (A3); its records reach the tables when the
 * transaction commits (apply_pending). */
static int apply_group(applier *a, struct producer *p, const ring_frame *mark)
{
    uint64_t height = 0;
    uint32_t n_applied = 0;
    int rc = 0;

    assert((a->txn || a->fold) && mark->lsn > p->m.applied_lsn); /* A2, A3 */
    for (size_t off = 0; off < p->open.len;) {
        const uint8_t *raw = p->open.buf + off;
        struct frame_header h;
        struct table *t = NULL;

        memcpy(&h, raw, sizeof h);
        off += frame_align(h.length);
        assert(h.lsn > p->m.applied_lsn && h.lsn < mark->lsn); /* A3 */
        if (h.table >= RING_MAX_TABLES || a->table_map[h.table][0] == '\0')
            return RK_ECORRUPT; /* checked when held */
        rc = table_of_id(a, h.table, &t);
        if (!rc)
            rc = pend(a, (uint32_t)(t - a->tables), raw, &h);
        if (rc)
            return rc;
        a->am.n_records++;
        a->txn_records++;
        n_applied++;
    }
    assert(n_applied == p->open.n_frames); /* A2: every held frame */
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
        return map_from_journal(a, seq, 0, f->table, name); /* A6 */
    case FRAME_ATTACH:
        if (f->klen == 0 || f->klen > RK_NAME_MAX || f->producer >= RING_MAX_PRODUCERS)
            goto bad;
        memcpy(name, f->key, f->klen);
        name[f->klen] = '\0';
        p = apply_producer(a, name);
        if (!p)
            return ENOMEM;
        discard_group(a, p, f); /* A2 */
        return map_from_journal(a, seq, 1, f->producer, name); /* A6 */
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
        discard_group(a, p, f); /* A2 */
        return 0;
    }
    if (f->lsn <= p->m.applied_lsn)
        return 0; /* A3: applied before a crash */
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

uint64_t apply_restart_seq(const applier *a)
{
    /* every entry before next_seq has been read; a group still open began
     * at its start_seq.  (Not applied_seq + 1: while entries are read
     * again after a restart, next_seq is below it, and a group that began
     * in an entry not yet re-read must not lose its start.) */
    uint64_t restart = a->next_seq;

    for (size_t i = 0; i < a->n_producers; i++) {
        const struct producer *p = &a->producers[i];
        if (p->open.n_frames && p->open.start_seq < restart)
            restart = p->open.start_seq;
    }
    return restart;
}

int apply_txn_commit(applier *a)
{
    char key[RK_NAME_MAX + 3];
    uint64_t restart = apply_restart_seq(a);
    int rc;

    if (!a->txn)
        return 0;
    rc = apply_pending(a);
    if (rc)
        return rc;
    for (size_t i = 0; i < a->n_producers; i++) {
        struct producer *p = &a->producers[i];
        if (!p->dirty)
            continue;
        snprintf(key, sizeof key, "p:%s", p->name);
        rc = meta_put(a, key, &p->m, sizeof p->m);
        if (rc)
            return rc;
        p->dirty = 0;
    }
    /* A4: restart at or before every open group and next_seq; written in
     * the transaction that holds the groups' records and marks */
    assert(restart <= a->next_seq && a->next_seq <= a->am.applied_seq + 1);
    a->am.restart_seq = restart;
    rc = meta_put(a, "applied", &a->am, sizeof a->am);
    /* A6: the maps at the restart point, where a restart reads again (a
     * change at or past it is read again too); written again while any
     * change is noted, since the maps at the restart point move with it */
    if (!rc && (a->maps_dirty || a->n_changes)) {
        struct maps_record *m = malloc(sizeof *m);
        size_t kept = 0;
        if (!m)
            return ENOMEM;
        apply_maps_at(a, restart, m);
        rc = meta_put(a, "maps", m, sizeof *m);
        free(m);
        a->maps_dirty = 0;
        while (kept < a->n_changes && a->changes[kept].seq < restart)
            kept++;
        if (kept) /* (changes is NULL while none was ever noted) */
            memmove(a->changes, a->changes + kept, (a->n_changes - kept) * sizeof *a->changes);
        a->n_changes -= kept;
    }
    if (rc)
        return rc;
    /* no sync: the journal is durable, a lost transaction is applied again */
    rc = a->txn->commit(a->txn, DB_TXN_NOSYNC);
    a->txn = NULL;
    return rc;
}

/* The producer applier_watch_height names, by its index once found. */
static struct producer *watched(applier *a)
{
    struct producer *p;

    if (a->watch_producer != SIZE_MAX)
        return &a->producers[a->watch_producer];
    p = apply_producer(a, a->watch_name);
    if (p)
        a->watch_producer = (size_t)(p - a->producers);
    return p;
}

/* store_journal_get found no entry a->next_seq: 0 at the journal's end;
 * else it is gone, and err says so: RK_ENOTFOUND when the journal now
 * starts past it (trimmed past what apply had read: a fold of a snapshot
 * job begins again, ckpt_job_snapshot_at's callers; a node's own apply
 * stops), RK_ECORRUPT when entries before and after it are there.  Apply
 * used to wait for it without a word, and the drain for apply. */
static int entry_missing(applier *a, char *err, size_t err_size)
{
    struct journal_header last;
    uint64_t first = 0;

    if (store_journal_first(a->s, &first) == 0 && first > a->next_seq) {
        if (err)
            snprintf(err, err_size,
                     "journal entry %" PRIu64 " is missing: the journal starts at %" PRIu64
                     " (trimmed past what apply had read)",
                     a->next_seq, first);
        return RK_ENOTFOUND;
    }
    if (store_journal_last(a->s, &last) == 0 && last.seq > a->next_seq) {
        if (err)
            snprintf(err, err_size,
                     "journal entry %" PRIu64 " is missing: the journal holds entries up to %" PRIu64,
                     a->next_seq, last.seq);
        return RK_ECORRUPT;
    }
    return 0;
}

int applier_run(applier *a, uint64_t upto, uint32_t max_records, char *err, size_t err_size)
{
    journal_entry e = {0};
    int rc = 0;

    if (a->load_interrupted) { /* tables of part of a checkpoint and no "applied": nothing to go on from */
        snprintf(err, err_size,
                 "this data directory holds part of a checkpoint load that was interrupted (the checkpoint "
                 "at journal seq %" PRIu64 "): it is no state to apply to; a standby started on it sets it "
                 "aside and bootstraps again",
                 a->loading_seq);
        return RK_EBUSY;
    }
    while (a->next_seq <= upto) {
        ring_frame f;
        rc = store_journal_get(a->s, a->next_seq, &e, err, err_size);
        if (rc == RK_ENOTFOUND) {
            rc = entry_missing(a, err, err_size);
            break;
        }
        if (rc)
            break;
        rc = apply_txn_begin(a);
        for (size_t off = 0; !rc && off < e.h.raw_len; off += frame_align(f.raw_len)) {
            rc = frame_decode(e.frames + off, e.h.raw_len - off, &f, err, err_size);
            if (!rc)
                rc = apply_frame(a, &f, a->next_seq, err, err_size);
        }
        if (!rc)
            a->read_next_lsn = e.h.next_lsn;
        journal_entry_free(&e);
        if (rc)
            break;
        /* A1: read, and every frame of it applied, held or skipped */
        if (a->next_seq > a->am.applied_seq)
            a->am.applied_seq = a->next_seq;
        a->next_seq++;
        if (a->watch_every) {
            struct producer *w = watched(a);
            if (w && w->m.height / a->watch_every > a->watch_last / a->watch_every) {
                a->watch_last = w->m.height;
                a->watch_hit = 1;
                break; /* committed below: a group boundary right after the crossing */
            }
        }
        /* relaxed: a hint only; what it asks for is handed over under
         * the caller's lock */
        if (a->stop_flag && atomic_load_explicit(a->stop_flag, memory_order_relaxed))
            break; /* committed below */
        if (a->txn_records >= max_records) {
            /* A2: after a whole entry, so no group is in part in it */
            rc = apply_txn_commit(a);
            if (rc)
                break;
        }
    }
    if (!rc)
        rc = apply_txn_commit(a);
    if (rc && a->txn) {
        /* a failed transaction leaves the held groups and counters ahead of
         * the database: the caller treats this as fatal and restarts */
        a->txn->abort(a->txn);
        a->txn = NULL;
        a->pending.len = 0;
        a->pending.n_records = 0;
    }
    if (rc && err && !err[0])
        snprintf(err, err_size, "apply: %s", store_strerror(rc));
    return rc;
}

struct apply_meta applier_meta(const applier *a)
{
    return a->am;
}

/* A MARK's frame: its header and the 8-byte height (rk_mark). */
#define MARK_FRAME_SIZE frame_align(FRAME_HEADER_SIZE + 8u)

int applier_journal_point(applier *a, uint64_t *seq, uint64_t *next_lsn)
{
    char prefix[] = "p:";
    DBT k = {.data = prefix, .size = 2}, v = {0};
    DBC *cur = NULL;
    /* the entry that held the last MARK applied ended at least where the
     * MARK did (J1) */
    uint64_t next = a->am.applied_lsn ? a->am.applied_lsn + MARK_FRAME_SIZE : 0;
    int rc = a->meta->cursor(a->meta, NULL, &cur, 0);

    /* the producers' records ("p:<name>", in key order from "p:"): an
     * ATTACH or ABORT after a producer's last MARK lies past it, and a
     * frame of the new session at or below it would be taken for one of
     * an earlier session (apply_frame) */
    for (int flag = DB_SET_RANGE; !rc && (rc = cur->get(cur, &k, &v, flag)) == 0; flag = DB_NEXT) {
        struct producer_meta m;
        if (k.size < 2 || memcmp(k.data, "p:", 2) != 0)
            break;
        if (v.size != sizeof m)
            continue;
        memcpy(&m, v.data, sizeof m);
        if (m.discard_lsn >= next)
            next = m.discard_lsn + FRAME_ALIGN;
    }
    if (cur)
        cur->close(cur);
    if (rc && rc != DB_NOTFOUND)
        return rc;
    *seq = a->am.applied_seq;
    *next_lsn = next;
    return 0;
}

int applier_restart_at(applier *a, uint64_t seq)
{
    int rc;

    if (apply_restart_seq(a) >= seq)
        return 0;
    assert(seq == a->am.applied_seq + 1 && !a->txn); /* A4 */
    log_msg(LOG_WARN, "groups open at the checkpoint are given up",
            "restart_seq=%" PRIu64 " new_restart_seq=%" PRIu64
            " reason=\"the journal goes on after the checkpoint without the entries they began in\"",
            apply_restart_seq(a), seq);
    for (size_t i = 0; i < a->n_producers; i++)
        a->producers[i].open.len = a->producers[i].open.n_frames = 0;
    a->next_seq = seq;
    rc = apply_txn_begin(a);
    if (!rc)
        rc = apply_txn_commit(a); /* restart_seq = next_seq: no group is open (A4) */
    if (rc && a->txn) {
        a->txn->abort(a->txn);
        a->txn = NULL;
    }
    return rc;
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
    a->watch_producer = SIZE_MAX;
    rc = meta_get(a, NULL, "applied", &a->am, sizeof a->am);
    if (rc == RK_ENOTFOUND) {
        memset(&a->am, 0, sizeof a->am);
        a->am.restart_seq = 1;
        rc = 0;
    }
    if (rc)
        goto fail;
    rc = meta_get(a, NULL, LOADING_KEY, &a->loading_seq, sizeof a->loading_seq);
    a->load_interrupted = rc == 0;
    if (rc == RK_ENOTFOUND)
        rc = 0;
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
     * first entry of the oldest one (A4) */
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
        if (a->tables[i].db) /* a fold's have none */
            a->tables[i].db->close(a->tables[i].db, 0);
    for (size_t i = 0; i < a->n_producers; i++)
        free(a->producers[i].open.buf);
    free(a->tables);
    free(a->producers);
    free(a->pending.buf);
    free(a->pending.records);
    free(a->pending.spare);
    free(a->changes);
    free(a);
}

void applier_stop_when(applier *a, const atomic_int *flag)
{
    a->stop_flag = flag;
}

uint64_t applier_read_upto(const applier *a)
{
    return a->next_seq - 1;
}

uint64_t applier_read_lsn(const applier *a)
{
    return a->read_next_lsn;
}

void applier_watch_height(applier *a, const char *name, uint64_t every)
{
    struct producer *p;

    snprintf(a->watch_name, sizeof a->watch_name, "%s", name);
    a->watch_every = every;
    a->watch_producer = SIZE_MAX;
    p = every ? watched(a) : NULL;
    a->watch_last = p ? p->m.height : 0;
    a->watch_hit = 0;
}

int applier_height_crossed(applier *a)
{
    int hit = a->watch_hit;

    a->watch_hit = 0;
    return hit;
}
