/* snapshot.c -- state snapshot files (the layout is in snapshot.h): the
 * writer the node uses and the verifier libringkeep reads them with.
 *
 *   snap_writer_open --> snap_writer_table / snap_writer_add ... (entries
 *     streamed through a buffer, hashed as they go out)
 *   --> snap_writer_finish: producers and table directory appended, then
 *     the header written at offset 0 with both hashes
 *
 * The reader maps the file and calls snap_verify, which checks the header
 * and the table directory, then walks every table's entries with their
 * lengths bounded by the table's extent, hashing the body a chunk ahead of
 * the walk; the file is accepted only once the whole body's hash matches.
 *
 * Threads: a writer belongs to one thread; snap_verify touches only its
 * arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t inside the writer */
#include <xxhash.h>

#include "persist/bytes.h"
#include "persist/checkpoint.h"
#include "persist/snapshot.h"
#include "persist/store.h"
#include "shm/segment.h"

#define SNAP_WRITE_BUFFER (1u << 20)

/* ------------------------------------------------------------ writing */

struct snap_writer {
    int fd;
    char path[4096];
    uint8_t *buf; /* SNAP_WRITE_BUFFER bytes, not yet written */
    size_t used;
    uint64_t offset; /* file offset of buf[0] */
    XXH3_state_t hash; /* of everything written after the header */
    struct snap_table *tables;
    size_t n_tables, cap_tables;
    uint64_t n_entries;
};

/* Writes buf out (hashing it) and empties it. */
static int writer_flush(snap_writer *w)
{
    size_t done = 0;

    XXH3_64bits_update(&w->hash, w->buf, w->used);
    while (done < w->used) {
        ssize_t n = sys_write(w->fd, w->buf + done, w->used - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno : EIO;
        done += (size_t)n;
    }
    w->offset += w->used;
    w->used = 0;
    return 0;
}

static int writer_put(snap_writer *w, const void *bytes, size_t n)
{
    while (n) {
        size_t room = SNAP_WRITE_BUFFER - w->used, take = n < room ? n : room;
        memcpy(w->buf + w->used, bytes, take);
        w->used += take;
        bytes = (const uint8_t *)bytes + take;
        n -= take;
        if (w->used == SNAP_WRITE_BUFFER) {
            int rc = writer_flush(w);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int snap_writer_open(const char *path, snap_writer **out, char *err, size_t err_size)
{
    snap_writer *w = calloc(1, sizeof *w);

    *out = NULL;
    if (!w || !(w->buf = malloc(SNAP_WRITE_BUFFER))) {
        free(w);
        seg_error(err, err_size, "snapshot %s: out of memory", path);
        return ENOMEM;
    }
    snprintf(w->path, sizeof w->path, "%s", path);
    w->fd = sys_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        int rc = errno;
        seg_error(err, err_size, "snapshot %s: %s", path, strerror(rc));
        free(w->buf);
        free(w);
        return rc;
    }
    XXH3_64bits_reset(&w->hash);
    /* the header's place: written last, when everything in it is known */
    w->offset = SNAP_HEADER_SIZE;
    if (lseek(w->fd, SNAP_HEADER_SIZE, SEEK_SET) != (off_t)SNAP_HEADER_SIZE) {
        int rc = errno;
        seg_error(err, err_size, "snapshot %s: %s", path, strerror(rc));
        snap_writer_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* The table being written: its size is where the writer is now. */
static void table_end(snap_writer *w)
{
    if (w->n_tables) {
        struct snap_table *t = &w->tables[w->n_tables - 1];
        t->size = w->offset + w->used - t->offset;
    }
}

int snap_writer_table(snap_writer *w, const char *name)
{
    struct snap_table *t;

    if (strlen(name) > RK_NAME_MAX)
        return RK_EINVAL;
    table_end(w);
    if (w->n_tables == w->cap_tables) {
        size_t cap = w->cap_tables ? 2 * w->cap_tables : 16;
        t = realloc(w->tables, cap * sizeof *t);
        if (!t)
            return ENOMEM;
        w->tables = t;
        w->cap_tables = cap;
    }
    t = &w->tables[w->n_tables++];
    memset(t, 0, sizeof *t); /* the name's padding is hashed: zeros */
    memcpy(t->name, name, strlen(name));
    t->offset = w->offset + w->used;
    return 0;
}

int snap_writer_add(snap_writer *w, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    uint32_t lens[2] = {klen, vlen};
    int rc;

    if (!w->n_tables)
        return RK_EINVAL;
    if (w->used + sizeof lens + klen + vlen <= SNAP_WRITE_BUFFER) { /* the usual case: no flush */
        memcpy(w->buf + w->used, lens, sizeof lens);
        memcpy(w->buf + w->used + sizeof lens, key, klen);
        memcpy(w->buf + w->used + sizeof lens + klen, val, vlen);
        w->used += sizeof lens + klen + vlen;
    } else if ((rc = writer_put(w, lens, sizeof lens)) != 0 || (rc = writer_put(w, key, klen)) != 0 ||
               (rc = writer_put(w, val, vlen)) != 0) {
        return rc;
    }
    w->tables[w->n_tables - 1].n_entries++;
    w->n_entries++;
    return 0;
}

int snap_writer_add_encoded(snap_writer *w, const void *entries, size_t len, uint64_t n_entries)
{
    int rc;

    if (!w->n_tables)
        return RK_EINVAL;
    rc = writer_put(w, entries, len);
    if (rc)
        return rc;
    w->tables[w->n_tables - 1].n_entries += n_entries;
    w->n_entries += n_entries;
    return 0;
}

int snap_writer_add_tombstone(snap_writer *w, const void *key, uint32_t klen)
{
    uint32_t lens[2] = {klen, SNAP_TOMBSTONE};
    int rc;

    if (!w->n_tables)
        return RK_EINVAL;
    if ((rc = writer_put(w, lens, sizeof lens)) != 0 || (rc = writer_put(w, key, klen)) != 0)
        return rc;
    w->tables[w->n_tables - 1].n_entries++;
    w->n_entries++;
    return 0;
}

uint64_t snap_writer_entries(const snap_writer *w)
{
    return w->n_entries;
}

uint64_t snap_writer_offset(const snap_writer *w)
{
    return w->offset + w->used;
}

void snap_writer_abort(snap_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0) {
        close(w->fd);
        sys_unlink(w->path);
    }
    free(w->tables);
    free(w->buf);
    free(w);
}

int snap_writer_finish(snap_writer *w, const struct apply_meta *am, const struct snap_base *base,
                       const struct snap_producer *producers, size_t n_producers, char *err, size_t err_size)
{
    struct snap_header h;
    uint8_t slot[SNAP_HEADER_SIZE] = {0};
    int rc = 0;

    table_end(w);
    memset(&h, 0, sizeof h);
    memcpy(h.magic, SNAP_MAGIC, sizeof h.magic);
    h.major = SNAP_MAJOR;
    h.minor = SNAP_MINOR;
    h.producers_offset = w->offset + w->used;
    h.tables_offset = h.producers_offset + n_producers * sizeof *producers;
    h.n_producers = n_producers;
    h.n_tables = w->n_tables;
    h.n_entries = w->n_entries;
    h.am = *am;
    if (base)
        h.base = *base;
    if (!rc)
        rc = writer_put(w, producers, n_producers * sizeof *producers);
    if (!rc)
        rc = writer_put(w, w->tables, w->n_tables * sizeof *w->tables);
    if (!rc)
        rc = writer_flush(w);
    if (!rc) {
        h.file_size = w->offset;
        h.body_hash = XXH3_64bits_digest(&w->hash);
        h.header_hash = XXH3_64bits(&h, offsetof(struct snap_header, header_hash));
        memcpy(slot, &h, sizeof h);
        if (sys_pwrite(w->fd, slot, sizeof slot, 0) != (ssize_t)sizeof slot)
            rc = errno ? errno : EIO;
    }
    if (!rc && close(w->fd) != 0)
        rc = errno;
    if (!rc)
        w->fd = -1;
    if (rc)
        seg_error(err, err_size, "snapshot %s: %s", w->path, strerror(rc));
    snap_writer_abort(w); /* the file stays once closed */
    return rc;
}

/* ------------------------------------------------------------ reading */

#define corrupt(err, err_size, ...) seg_fail(err, err_size, RK_ECORRUPT, "state snapshot: " __VA_ARGS__)

void snap_producer_at(const struct snap_info *info, uint64_t i, struct snap_producer *out)
{
    memcpy(out, (const uint8_t *)info->producers + i * sizeof *out, sizeof *out);
}

/* A NUL-terminated name in a fixed field of RK_NAME_MAX + 1 bytes. */
static int name_ok(const char *name)
{
    return memchr(name, '\0', RK_NAME_MAX + 1) != NULL && name[0] != '\0';
}

int snap_base_name_ok(const char *name)
{
    const char *end = memchr(name, '\0', SNAP_BASE_NAME_MAX);

    if (!end || end == name || memchr(name, '/', (size_t)(end - name)) || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return 0;
    for (const char *c = end; c < name + SNAP_BASE_NAME_MAX; c++)
        if (*c)
            return 0;
    return 1;
}

/* ------------------------------------------------------------ the body's hash */

/* How far ahead of a walk the body is hashed: a chunk the walk then reads
 * from the cache (a few of them fit in L2). */
#define SNAP_HASH_AHEAD (64u << 10)

struct snap_body_hash {
    XXH3_state_t *state;         /* XXH3_createState: aligned as XXH3 wants it */
    const uint8_t *hashed, *end; /* the body is hashed up to hashed */
};

snap_body_hash *snap_body_hash_begin(const uint8_t *buf, size_t len)
{
    snap_body_hash *bh = malloc(sizeof *bh);

    if (bh && !(bh->state = XXH3_createState())) {
        free(bh);
        bh = NULL;
    }
    if (!bh)
        return NULL;
    XXH3_64bits_reset(bh->state);
    bh->hashed = buf + (len < SNAP_HEADER_SIZE ? len : SNAP_HEADER_SIZE);
    bh->end = buf + len;
    return bh;
}

const uint8_t *snap_body_hash_to(snap_body_hash *bh, const uint8_t *at)
{
    const uint8_t *to = at > bh->hashed ? at : bh->hashed;

    to = (size_t)(bh->end - to) > SNAP_HASH_AHEAD ? to + SNAP_HASH_AHEAD : bh->end;
    XXH3_64bits_update(bh->state, bh->hashed, (size_t)(to - bh->hashed));
    bh->hashed = to;
    return to;
}

int snap_body_hash_end(snap_body_hash *bh, uint64_t body_hash)
{
    int ok;

    XXH3_64bits_update(bh->state, bh->hashed, (size_t)(bh->end - bh->hashed));
    ok = XXH3_64bits_digest(bh->state) == body_hash;
    XXH3_freeState(bh->state);
    free(bh);
    return ok;
}

/* rc, or the body's checksum failure when the body does not match its
 * hash: a file that fails a check of its body for any reason is first a
 * file whose bytes changed, as when the hash was checked before the walk */
static int body_failure(int rc, const uint8_t *buf, size_t len, const struct snap_header *h, char *err,
                        size_t err_size)
{
    if (h->body_hash != XXH3_64bits(buf + SNAP_HEADER_SIZE, len - SNAP_HEADER_SIZE))
        return corrupt(err, err_size, "the body's checksum does not match");
    return rc;
}

/* ------------------------------------------------------------ layout */

static int body_layout(const uint8_t *buf, size_t len, struct snap_info *info, char *err, size_t err_size);

int snap_check_layout(const uint8_t *buf, size_t len, struct snap_info *info, char *err, size_t err_size)
{
    struct snap_header *h = &info->h;
    int rc;

    memset(info, 0, sizeof *info);
    if (len >= sizeof SNAP_MAGIC - 1 && memcmp(buf, SNAP_MAGIC, sizeof SNAP_MAGIC - 1) != 0)
        return corrupt(err, err_size, "not a ringkeep state snapshot (bad magic)");
    if (len < SNAP_HEADER_SIZE)
        return corrupt(err, err_size, "truncated: %zu bytes, the header alone is %u", len, SNAP_HEADER_SIZE);
    memcpy(h, buf, sizeof *h);
    if (h->major != SNAP_MAJOR) {
        seg_error(err, err_size,
                  "state snapshot format %" PRIu32 ".%" PRIu32 ", this libringkeep reads %u.x: the node and "
                  "the engine's libringkeep come from different ringkeep versions",
                  h->major, h->minor, SNAP_MAJOR);
        return RK_EVERSION;
    }
    if (h->header_hash != XXH3_64bits(h, offsetof(struct snap_header, header_hash)))
        return corrupt(err, err_size, "the header's checksum does not match");
    for (size_t i = sizeof *h; i < SNAP_HEADER_SIZE; i++)
        if (buf[i] != 0)
            return corrupt(err, err_size, "the header's reserved byte %zu is not zero", i);
    if (h->file_size != len)
        return corrupt(err, err_size, "%zu bytes, the header says %" PRIu64 " (truncated or extended)", len,
                       h->file_size);
    if (h->base.file_size ? !snap_base_name_ok(h->base.name) || h->base.file_size < SNAP_HEADER_SIZE
                          : h->base.body_hash || h->base.applied_seq || h->base.name[0])
        return corrupt(err, err_size, "the header's base is not a valid reference");
    /* the body's structure, then (snap_body_hash_*) its hash as the caller
     * walks it */
    rc = body_layout(buf, len, info, err, err_size);
    return rc ? body_failure(rc, buf, len, h, err, err_size) : 0;
}

/* snap_check_layout's checks of the producers and the table directory. */
static int body_layout(const uint8_t *buf, size_t len, struct snap_info *info, char *err, size_t err_size)
{
    struct snap_header *h = &info->h;
    uint64_t next = SNAP_HEADER_SIZE;
    char prev_name[RK_NAME_MAX + 1] = "";

    if (h->producers_offset < SNAP_HEADER_SIZE || h->producers_offset > len ||
        h->n_producers > (len - h->producers_offset) / sizeof(struct snap_producer) ||
        h->tables_offset != h->producers_offset + h->n_producers * sizeof(struct snap_producer) ||
        h->n_tables > (len - h->tables_offset) / sizeof(struct snap_table) ||
        h->tables_offset + h->n_tables * sizeof(struct snap_table) != len)
        return corrupt(err, err_size, "producers at %" PRIu64 " and tables at %" PRIu64 " do not fit the file",
                       h->producers_offset, h->tables_offset);
    info->producers = (const struct snap_producer *)(buf + h->producers_offset);
    info->tables = buf + h->tables_offset;
    for (uint64_t i = 0; i < h->n_producers; i++) {
        struct snap_producer p;
        snap_producer_at(info, i, &p);
        if (!name_ok(p.name))
            return corrupt(err, err_size, "producer %" PRIu64 " has no valid name", i);
    }
    for (uint64_t i = 0; i < h->n_tables; i++) {
        struct snap_table t;

        memcpy(&t, info->tables + i * sizeof t, sizeof t);
        if (!name_ok(t.name) || (i && strcmp(prev_name, t.name) >= 0))
            return corrupt(err, err_size, "table %" PRIu64 " has no valid name or is out of order", i);
        memcpy(prev_name, t.name, sizeof prev_name);
        if (t.offset != next || t.size > h->producers_offset - t.offset)
            return corrupt(err, err_size, "table %" PRIu64 "'s entries at %" PRIu64 " do not follow the one before",
                           i, t.offset);
        next = t.offset + t.size;
        if (t.n_entries > t.size / (2 * sizeof(uint32_t)))
            return corrupt(err, err_size, "table %" PRIu64 " claims %" PRIu64 " entries, more than its bytes hold",
                           i, t.n_entries);
    }
    if (next != h->producers_offset)
        return corrupt(err, err_size, "the tables end at %" PRIu64 ", the producers begin at %" PRIu64, next,
                       h->producers_offset);
    return 0;
}

/* The walk of snap_verify over table i's entries, the body hashed ahead of
 * it (*hashed: how far). */
static int verify_table(const uint8_t *buf, const struct snap_info *info, uint64_t i, snap_body_hash *bh,
                        const uint8_t **hashed, snap_table_fn table_fn, snap_entry_fn entry_fn, void *arg,
                        char *err, size_t err_size)
{
    struct snap_table t;
    const uint8_t *at, *end, *prev_key = NULL;
    uint32_t prev_klen = 0;
    uint64_t prev_prefix = 0;
    int rc;

    memcpy(&t, info->tables + i * sizeof t, sizeof t);
    if (table_fn && (rc = table_fn(arg, (uint32_t)i, t.name, t.n_entries)) != 0)
        return rc;
    at = buf + t.offset;
    end = at + t.size;
    for (uint64_t e = 0; e < t.n_entries; e++) {
        uint32_t lens[2];
        if (at + sizeof lens > *hashed)
            *hashed = snap_body_hash_to(bh, at);
        if ((size_t)(end - at) < sizeof lens)
            return corrupt(err, err_size, "table %" PRIu64 " ends within entry %" PRIu64, i, e);
        memcpy(lens, at, sizeof lens);
        at += sizeof lens;
        /* a tombstone: an overlay's only, no value bytes */
        uint32_t vbytes = lens[1] == SNAP_TOMBSTONE && info->h.base.file_size ? 0 : lens[1];
        if ((uint64_t)lens[0] + vbytes > (uint64_t)(end - at))
            return corrupt(err, err_size, "table %" PRIu64 ": entry %" PRIu64 " runs past the table's end", i, e);
        /* the key order by the keys' first 8 bytes (key_prefix), their
         * bytes only where those tie: most pairs cost no memcmp call */
        uint64_t prefix = key_prefix(at, lens[0]);
        if (prev_key && (prefix < prev_prefix ||
                         (prefix == prev_prefix && ckpt_key_cmp(prev_key, prev_klen, at, lens[0]) >= 0)))
            return corrupt(err, err_size, "table %" PRIu64 ": entry %" PRIu64 " is out of key order", i, e);
        if (entry_fn && (rc = entry_fn(arg, at, lens[0], vbytes == lens[1] ? at + lens[0] : NULL, lens[1])) != 0)
            return rc;
        prev_key = at;
        prev_klen = lens[0];
        prev_prefix = prefix;
        at += lens[0] + vbytes;
    }
    if (at != end)
        return corrupt(err, err_size, "table %" PRIu64 " has bytes past its %" PRIu64 " entries", i, t.n_entries);
    return 0;
}

int snap_verify(const uint8_t *buf, size_t len, struct snap_info *info, snap_table_fn table_fn,
                snap_entry_fn entry_fn, void *arg, char *err, size_t err_size)
{
    const struct snap_header *h = &info->h;
    uint64_t n_entries = 0;
    int rc = snap_check_layout(buf, len, info, err, err_size);
    snap_body_hash *bh;
    const uint8_t *hashed = buf;

    if (rc)
        return rc;
    /* one pass over the body: hashed a chunk ahead of the walk, which then
     * reads it from the cache (a pass of its own took the engine 8-10 ms
     * of a 50 MB snapshot from memory, issue 9.5) */
    if (!(bh = snap_body_hash_begin(buf, len)))
        return ENOMEM;
    for (uint64_t i = 0; !rc && i < h->n_tables; i++) {
        struct snap_table t;
        memcpy(&t, info->tables + i * sizeof t, sizeof t);
        rc = verify_table(buf, info, i, bh, &hashed, table_fn, entry_fn, arg, err, err_size);
        n_entries += t.n_entries;
    }
    if (!rc && n_entries != h->n_entries)
        rc = corrupt(err, err_size, "the tables hold %" PRIu64 " entries, the header says %" PRIu64, n_entries,
                     h->n_entries);
    /* a failure of the walk's own checks is said as the checksum's when the
     * bytes changed (as when the hash was checked first); one of a
     * callback's (out of memory) as it is */
    if (!snap_body_hash_end(bh, h->body_hash) && (!rc || rc == RK_ECORRUPT))
        rc = corrupt(err, err_size, "the body's checksum does not match");
    return rc;
}

/* ------------------------------------------------------------ merging an overlay */

/* An overlay table's entries being merged: the next one at `at` (its key
 * and value, a tombstone's val NULL), up to end.  corrupt: an entry ran
 * past end (cursor_load). */
struct overlay_cursor {
    const uint8_t *at, *end;
    const uint8_t *key, *val;
    uint32_t klen, vlen;
    uint64_t prefix; /* key_prefix of key */
    int corrupt;
};

/* Reads the cursor's entry at `at`; 0 at the end or when the entry runs
 * past the table's end (corrupt set: the merge is RK_ECORRUPT).  The
 * overlay was verified, but it is mapped shared and its engine can write
 * to it until it unlinks it, after the check: every length is bounded
 * again as it is read. */
static int cursor_load(struct overlay_cursor *c)
{
    uint32_t lens[2], vbytes;

    if (c->corrupt || c->at >= c->end)
        return 0;
    if ((size_t)(c->end - c->at) < sizeof lens) {
        c->corrupt = 1;
        return 0;
    }
    memcpy(lens, c->at, sizeof lens);
    vbytes = lens[1] == SNAP_TOMBSTONE ? 0 : lens[1];
    if ((uint64_t)lens[0] + vbytes > (uint64_t)(c->end - c->at) - sizeof lens) {
        c->corrupt = 1;
        return 0;
    }
    c->key = c->at + sizeof lens;
    c->klen = lens[0];
    c->val = lens[1] == SNAP_TOMBSTONE ? NULL : c->key + lens[0];
    c->vlen = lens[1];
    c->prefix = key_prefix(c->key, c->klen);
    return 1;
}

/* Past the entry cursor_load read (within end: it bounded it). */
static void cursor_next(struct overlay_cursor *c)
{
    c->at = c->key + c->klen + (c->val ? c->vlen : 0);
}

/* The merge's output: the writer and the index it builds (NULL: none). */
struct merge_out {
    snap_writer *w;
    struct snap_slot *index;
    uint64_t n, cap;
};

/* Writes an entry (an overlay's) through the writer, indexed. */
static int out_add(struct merge_out *o, const uint8_t *key, uint32_t klen, const uint8_t *val, uint32_t vlen,
                   uint64_t prefix)
{
    if (o->index && o->n < o->cap)
        o->index[o->n++] = (struct snap_slot){.off = snap_writer_offset(o->w), .prefix = prefix};
    return snap_writer_add(o->w, key, klen, val, vlen);
}

/* Writes the overlay's entries from the cursor on with keys below key
 * (every one left: key NULL); a tombstone writes nothing. */
static int cursor_flush(struct merge_out *o, struct overlay_cursor *c, const uint8_t *key, uint32_t klen,
                        uint64_t prefix)
{
    int rc = 0;

    while (!rc && cursor_load(c) &&
           (!key || c->prefix < prefix || (c->prefix == prefix && ckpt_key_cmp(c->key, c->klen, key, klen) < 0))) {
        if (c->val)
            rc = out_add(o, c->key, c->klen, c->val, c->vlen, c->prefix);
        cursor_next(c);
    }
    return !rc && c->corrupt ? RK_ECORRUPT : rc;
}

int snap_merge(const uint8_t *base, size_t base_len, const uint8_t *overlay, size_t overlay_len, const char *path,
               uint64_t *n_entries, struct snap_slot **index, char *err, size_t err_size)
{
    struct snap_info bi, oi;
    struct snap_producer *producers = NULL;
    snap_body_hash *bh = NULL;
    struct merge_out o = {0};
    const uint8_t *hashed = base;
    uint64_t ot = 0;
    int rc;

    *n_entries = 0;
    *index = NULL;
    rc = snap_verify(overlay, overlay_len, &oi, NULL, NULL, NULL, err, err_size);
    if (!rc)
        rc = snap_check_layout(base, base_len, &bi, err, err_size);
    if (!rc && (!oi.h.base.file_size || bi.h.base.file_size || oi.h.base.file_size != base_len ||
                oi.h.base.body_hash != bi.h.body_hash || oi.h.base.applied_seq != bi.h.am.applied_seq))
        rc = corrupt(err, err_size, "the overlay's base is not this snapshot");
    if (!rc && !(bh = snap_body_hash_begin(base, base_len)))
        rc = ENOMEM;
    if (!rc)
        rc = snap_writer_open(path, &o.w, err, err_size);
    if (!rc) {
        /* at most every entry of both (out of memory: no index) */
        o.cap = bi.h.n_entries + oi.h.n_entries;
        o.index = malloc((o.cap ? o.cap : 1) * sizeof *o.index);
    }
    for (uint64_t i = 0; !rc && i <= bi.h.n_tables; i++) {
        struct snap_table bt, t;
        struct overlay_cursor c = {0};
        const uint8_t *at, *end, *run;
        uint64_t run_n = 0, run_at = 0; /* run_at: where the run goes in the new file */

        if (i < bi.h.n_tables)
            memcpy(&bt, bi.tables + i * sizeof bt, sizeof bt);
        /* the overlay's tables before this one (every one left after the
         * last), which the base has not */
        for (; !rc && ot < oi.h.n_tables; ot++) {
            memcpy(&t, oi.tables + ot * sizeof t, sizeof t);
            if (i < bi.h.n_tables && strcmp(t.name, bt.name) >= 0)
                break;
            c = (struct overlay_cursor){.at = overlay + t.offset, .end = overlay + t.offset + t.size};
            rc = snap_writer_table(o.w, t.name);
            if (!rc)
                rc = cursor_flush(&o, &c, NULL, 0, 0);
        }
        if (rc || i == bi.h.n_tables)
            break;
        c = (struct overlay_cursor){0};
        if (ot < oi.h.n_tables) {
            memcpy(&t, oi.tables + ot * sizeof t, sizeof t);
            if (strcmp(t.name, bt.name) == 0) {
                c = (struct overlay_cursor){.at = overlay + t.offset, .end = overlay + t.offset + t.size};
                ot++;
            }
        }
        rc = snap_writer_table(o.w, bt.name);
        at = run = base + bt.offset;
        end = at + bt.size;
        run_at = snap_writer_offset(o.w);
        /* the base's entries in runs the overlay does not touch, each
         * copied as it is (snap_writer_add_encoded), its body hashed a
         * chunk ahead of the reads (a changed base is refused) */
        for (uint64_t e = 0; !rc && e < bt.n_entries; e++) {
            uint32_t lens[2];
            const uint8_t *key;
            uint64_t prefix;
            if (at + sizeof lens > hashed)
                hashed = snap_body_hash_to(bh, at);
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
            prefix = key_prefix(key, lens[0]);
            if (cursor_load(&c) &&
                (c.prefix < prefix || (c.prefix == prefix && ckpt_key_cmp(c.key, c.klen, key, lens[0]) <= 0))) {
                /* the overlay has an entry at or before this key: the run
                 * so far goes as it is, then the overlay's before it, then
                 * the overlay's of this key or this one */
                if (run_n)
                    rc = snap_writer_add_encoded(o.w, run, (size_t)(at - run), run_n);
                if (!rc)
                    rc = cursor_flush(&o, &c, key, lens[0], prefix);
                if (!rc && cursor_load(&c) && ckpt_key_cmp(c.key, c.klen, key, lens[0]) == 0) {
                    if (c.val)
                        rc = out_add(&o, c.key, c.klen, c.val, c.vlen, c.prefix);
                    cursor_next(&c);
                } else if (!rc) {
                    rc = out_add(&o, key, lens[0], key + lens[0], lens[1], prefix);
                }
                at = run = key + lens[0] + lens[1];
                run_n = 0;
                run_at = snap_writer_offset(o.w);
                continue;
            }
            /* in the run: it goes where the run begins, as far in as here
             * (nothing is written between the two) */
            if (o.index && o.n < o.cap)
                o.index[o.n++] = (struct snap_slot){.off = run_at + (uint64_t)(at - run), .prefix = prefix};
            at = key + lens[0] + lens[1];
            run_n++;
        }
        if (!rc && (at != end || c.corrupt))
            rc = RK_ECORRUPT;
        if (!rc && run_n)
            rc = snap_writer_add_encoded(o.w, run, (size_t)(at - run), run_n);
        if (!rc)
            rc = cursor_flush(&o, &c, NULL, 0, 0);
    }
    if (bh && !snap_body_hash_end(bh, bi.h.body_hash) && (!rc || rc == RK_ECORRUPT))
        rc = corrupt(err, err_size, "the base's body's checksum does not match");
    else if (rc == RK_ECORRUPT && !err[0])
        corrupt(err, err_size, "the base's or the overlay's entries do not fit their tables");
    if (!rc && !(producers = calloc(oi.h.n_producers + 1, sizeof *producers)))
        rc = ENOMEM;
    if (!rc && o.index && o.n != snap_writer_entries(o.w)) { /* not reached: every entry written is indexed */
        free(o.index);
        o.index = NULL;
    }
    if (rc) {
        snap_writer_abort(o.w);
        free(producers);
        free(o.index);
        return rc;
    }
    for (uint64_t i = 0; i < oi.h.n_producers; i++)
        snap_producer_at(&oi, i, &producers[i]);
    *n_entries = snap_writer_entries(o.w);
    rc = snap_writer_finish(o.w, &oi.h.am, NULL, producers, oi.h.n_producers, err, err_size);
    free(producers);
    if (rc)
        free(o.index);
    else
        *index = o.index;
    return rc;
}
