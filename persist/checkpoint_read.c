/* checkpoint_read.c -- checkpoint files read: the header alone
 * (ckpt_read_info) or the whole file verified, its entries handed out
 * once it has passed (ckpt_verify, ckpt_verify_buffer).  The contract is
 * in checkpoint.h, the file layout in checkpoint_format.h.
 *
 * Design: decoding trusts nothing and allocates nothing that a file can
 * inflate.  msgpack-c's own unpacker is not used to read: for an array or
 * map header it allocates count * sizeof(msgpack_object) from its zone
 * before any element arrives (an array32 claiming 2^32-1 elements asks for
 * 128 GiB), so the reader (mpread.h) is a small bounded reader of the msgpack
 * wire format for the few types we emit, checking every length and every
 * element count against the bytes left before reading or looping.
 * msgpack-c packs.  The verifier maps the file and checks, in order:
 * magic and major (RK_EVERSION), the lengths against the file size, the
 * header XXH64, the trailer XXH64 over the whole file -- so no byte is
 * used before it is known to be the byte that was written -- then the
 * header map, the name against journal_seq, and every frame and entry.
 * It holds one frame's raw bytes (<= CKPT_FRAME_MAX) and the previous key.
 * With a callback it walks the body twice: the callback sees entries only
 * once the whole file has passed, so a corrupt file is never half used;
 * ckpt_verify_once walks it once, for the one caller that throws away what
 * the callback did when the file fails (the load into a directory being
 * built).
 *
 * Threads: the reading functions are pure and any thread may call them
 * (each makes its own zstd context).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "persist/bytes.h"
#include "persist/checkpoint.h"
#include "persist/checkpoint_format.h"
#include "persist/mpread.h"
#include "shm/segment.h"
#include "persist/store.h"

#define corrupt(err, err_size, ...) seg_fail(err, err_size, RK_ECORRUPT, __VA_ARGS__)

/* 1..RK_NAME_MAX bytes, no NUL. */
static int name_ok(const uint8_t *s, uint32_t len)
{
    return len >= 1 && len <= RK_NAME_MAX && !memchr(s, '\0', len);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

/* ------------------------------------------------------------ header decoding */
static int find_key(const uint8_t *s, uint32_t len)
{
    for (int k = 0; k < N_KEYS; k++)
        if (strlen(ckpt_key_names[k]) == len && memcmp(ckpt_key_names[k], s, len) == 0)
            return k;
    return -1;
}

static int decode_producers(struct mp_reader *r, struct ckpt_info *info, char *err, size_t err_size)
{
    enum mp_status s;
    uint32_t n, n_fields;

    s = mp_read_container(r, 0, &n);
    if (s != MP_OK)
        return corrupt(err, err_size, "header: \"producers\" %s", mp_status_text(s));
    /* n <= bytes left <= CKPT_MAX_HEADER: bounded */
    info->producers = calloc(n ? n : 1, sizeof *info->producers);
    if (!info->producers)
        return seg_fail(err, err_size, ENOMEM, "header: out of memory for %" PRIu32 " producers", n);
    info->n_producers = n;
    for (uint32_t i = 0; i < n; i++) {
        struct ckpt_producer *p = &info->producers[i];
        const uint8_t *name;
        uint32_t len;

        if ((s = mp_read_container(r, 0, &n_fields)) != MP_OK || n_fields != 3 ||
            (s = mp_read_raw(r, 1, &name, &len)) != MP_OK || (s = mp_read_uint(r, &p->height)) != MP_OK ||
            (s = mp_read_uint(r, &p->applied_lsn)) != MP_OK)
            return corrupt(err, err_size,
                           "header: producer %" PRIu32 " is not [name, height, applied_lsn] (%s)", i,
                           s == MP_OK ? "wrong element count" : mp_status_text(s));
        if (!name_ok(name, len))
            return corrupt(err, err_size,
                           "header: producer %" PRIu32 " has a name of %" PRIu32
                           " bytes (want 1..%d, no NUL)",
                           i, len, RK_NAME_MAX);
        memcpy(p->name, name, len);
        p->name[len] = '\0';
    }
    return 0;
}

static int decode_tables(struct mp_reader *r, struct ckpt_info *info, char *err, size_t err_size)
{
    enum mp_status s;
    uint32_t n, n_fields;

    s = mp_read_container(r, 0, &n);
    if (s != MP_OK)
        return corrupt(err, err_size, "header: \"tables\" %s", mp_status_text(s));
    info->tables = calloc(n ? n : 1, sizeof *info->tables);
    if (!info->tables)
        return seg_fail(err, err_size, ENOMEM, "header: out of memory for %" PRIu32 " tables", n);
    info->n_tables = n;
    for (uint32_t i = 0; i < n; i++) {
        struct ckpt_table *t = &info->tables[i];
        const uint8_t *name;
        uint32_t len;

        if ((s = mp_read_container(r, 0, &n_fields)) != MP_OK || n_fields != 2 ||
            (s = mp_read_raw(r, 1, &name, &len)) != MP_OK || (s = mp_read_uint(r, &t->n_entries)) != MP_OK)
            return corrupt(err, err_size, "header: table %" PRIu32 " is not [name, n_entries] (%s)", i,
                           s == MP_OK ? "wrong element count" : mp_status_text(s));
        if (!name_ok(name, len))
            return corrupt(err, err_size,
                           "header: table %" PRIu32 " has a name of %" PRIu32 " bytes (want 1..%d, no NUL)",
                           i, len, RK_NAME_MAX);
        memcpy(t->name, name, len);
        t->name[len] = '\0';
        if (t->n_entries == 0)
            return corrupt(err, err_size, "header: table '%s' is listed with 0 entries", t->name);
        if (i > 0 && strcmp(info->tables[i - 1].name, t->name) >= 0)
            return corrupt(err, err_size, "header: table directory out of order ('%s' after '%s')", t->name,
                           info->tables[i - 1].name);
    }
    return 0;
}

/* "replay" (format 1.1): see the layout above. */
static int decode_map_entries(struct mp_reader *r, const char *what, struct ckpt_map_entry **out,
                              uint32_t *n_out, char *err, size_t err_size)
{
    enum mp_status s;
    uint32_t n, n_fields;

    if ((s = mp_read_container(r, 0, &n)) != MP_OK)
        return corrupt(err, err_size, "header: replay %s %s", what, mp_status_text(s));
    *out = calloc(n ? n : 1, sizeof **out); /* n <= bytes left: bounded */
    if (!*out)
        return seg_fail(err, err_size, ENOMEM, "header: out of memory for %" PRIu32 " %s", n, what);
    *n_out = n;
    for (uint32_t i = 0; i < n; i++) {
        struct ckpt_map_entry *m = &(*out)[i];
        const uint8_t *name;
        uint64_t id;
        uint32_t len;

        if ((s = mp_read_container(r, 0, &n_fields)) != MP_OK || n_fields != 2 ||
            (s = mp_read_uint(r, &id)) != MP_OK || (s = mp_read_raw(r, 1, &name, &len)) != MP_OK)
            return corrupt(err, err_size, "header: replay %s %" PRIu32 " is not [id, name] (%s)", what, i,
                           s == MP_OK ? "wrong element count" : mp_status_text(s));
        if (id > UINT16_MAX || !name_ok(name, len))
            return corrupt(err, err_size, "header: replay %s %" PRIu32 " has id %" PRIu64 " or a bad name",
                           what, i, id);
        m->id = (uint32_t)id;
        memcpy(m->name, name, len);
        m->name[len] = '\0';
    }
    return 0;
}

static int decode_replay(struct mp_reader *r, struct ckpt_info *info, char *err, size_t err_size)
{
    struct ckpt_replay *rp = &info->replay;
    enum mp_status s;
    uint32_t n, n_fields;
    int rc;

    if ((s = mp_read_container(r, 0, &n_fields)) != MP_OK || n_fields != 7 ||
        (s = mp_read_uint(r, &rp->restart_seq)) != MP_OK || (s = mp_read_uint(r, &rp->n_groups)) != MP_OK ||
        (s = mp_read_uint(r, &rp->n_records)) != MP_OK || (s = mp_read_uint(r, &rp->n_discarded)) != MP_OK)
        return corrupt(err, err_size, "header: \"replay\" is not [restart_seq, groups, records, discarded, ...] (%s)",
                       s == MP_OK ? "wrong element count" : mp_status_text(s));
    if ((s = mp_read_container(r, 0, &n)) != MP_OK)
        return corrupt(err, err_size, "header: replay producers %s", mp_status_text(s));
    rp->producers = calloc(n ? n : 1, sizeof *rp->producers);
    if (!rp->producers)
        return seg_fail(err, err_size, ENOMEM, "header: out of memory for %" PRIu32 " producers", n);
    rp->n_producers = n;
    for (uint32_t i = 0; i < n; i++) {
        struct ckpt_replay_producer *p = &rp->producers[i];
        const uint8_t *name;
        uint32_t len;

        if ((s = mp_read_container(r, 0, &n_fields)) != MP_OK || n_fields != 5 ||
            (s = mp_read_raw(r, 1, &name, &len)) != MP_OK || (s = mp_read_uint(r, &p->applied_lsn)) != MP_OK ||
            (s = mp_read_uint(r, &p->height)) != MP_OK || (s = mp_read_uint(r, &p->n_groups)) != MP_OK ||
            (s = mp_read_uint(r, &p->discard_lsn)) != MP_OK)
            return corrupt(err, err_size,
                           "header: replay producer %" PRIu32
                           " is not [name, applied_lsn, height, groups, discard_lsn] (%s)",
                           i, s == MP_OK ? "wrong element count" : mp_status_text(s));
        if (!name_ok(name, len))
            return corrupt(err, err_size, "header: replay producer %" PRIu32 " has a bad name", i);
        memcpy(p->name, name, len);
        p->name[len] = '\0';
    }
    rc = decode_map_entries(r, "table id", &rp->table_ids, &rp->n_table_ids, err, err_size);
    if (!rc)
        rc = decode_map_entries(r, "producer slot", &rp->slots, &rp->n_slots, err, err_size);
    if (!rc)
        info->has_replay = 1;
    return rc;
}

static int decode_history(struct mp_reader *r, struct ckpt_info *info, char *err, size_t err_size)
{
    enum mp_status s;
    uint32_t n, n_fields;

    if ((s = mp_read_container(r, 0, &n)) != MP_OK)
        return corrupt(err, err_size, "header: \"history\" %s", mp_status_text(s));
    if (n > HISTORY_MAX)
        return corrupt(err, err_size, "header: history of %" PRIu32 " elements (at most %u)", n, HISTORY_MAX);
    info->history = calloc(n ? n : 1, sizeof *info->history); /* n <= bytes left: bounded */
    if (!info->history)
        return seg_fail(err, err_size, ENOMEM, "header: out of memory for %" PRIu32 " epochs", n);
    info->n_history = n;
    for (uint32_t i = 0; i < n; i++) {
        struct epoch_start *e = &info->history[i];
        if ((s = mp_read_container(r, 0, &n_fields)) != MP_OK || n_fields != 3 ||
            (s = mp_read_uint(r, &e->epoch)) != MP_OK || (s = mp_read_uint(r, &e->first_seq)) != MP_OK ||
            (s = mp_read_uint(r, &e->first_lsn)) != MP_OK)
            return corrupt(err, err_size, "header: history element %" PRIu32 " is not [epoch, first_seq, first_lsn] (%s)",
                           i, s == MP_OK ? "wrong element count" : mp_status_text(s));
    }
    {
        char why[200];
        if (history_check(info->history, n, why, sizeof why) != 0)
            return corrupt(err, err_size, "header: %s", why);
    }
    return 0;
}

/* Decodes the map[0..len) of a file of version major.minor into info. */
static int decode_map(const uint8_t *map, size_t len, struct ckpt_info *info, char *err, size_t err_size)
{
    struct mp_reader r = {map, len};
    uint32_t n_pairs, seen = 0;
    enum mp_status s;
    uint64_t sum = 0;
    int rc;

    s = mp_read_container(&r, 1, &n_pairs);
    if (s != MP_OK)
        return corrupt(err, err_size, "header: the map %s", mp_status_text(s));
    for (uint32_t i = 0; i < n_pairs; i++) {
        const uint8_t *kname;
        uint32_t klen;
        uint64_t *field = NULL;
        int k;

        s = mp_read_raw(&r, 1, &kname, &klen);
        if (s != MP_OK)
            return corrupt(err, err_size, "header: key %" PRIu32 " %s", i, mp_status_text(s));
        k = find_key(kname, klen);
        if ((k == K_REPLAY && info->minor < 1) || (k == K_HISTORY && info->minor < 2))
            k = -1; /* not a key of that format */
        if (k < 0) {
            if (info->minor <= CKPT_MINOR)
                return corrupt(err, err_size, "header: unknown key \"%.*s\" in a format %u.%u file",
                               (int)(klen > 64 ? 64 : klen), (const char *)kname, info->major, info->minor);
            s = mp_skip(&r);
            if (s != MP_OK)
                return corrupt(err, err_size, "header: the value of key \"%.*s\" %s",
                               (int)(klen > 64 ? 64 : klen), (const char *)kname, mp_status_text(s));
            continue;
        }
        if (seen & (1u << k))
            return corrupt(err, err_size, "header: key \"%s\" appears twice", ckpt_key_names[k]);
        seen |= 1u << k;
        switch (k) {
        case K_PRODUCERS:
            rc = decode_producers(&r, info, err, err_size);
            if (rc)
                return rc;
            continue;
        case K_TABLES:
            rc = decode_tables(&r, info, err, err_size);
            if (rc)
                return rc;
            continue;
        case K_REPLAY:
            rc = decode_replay(&r, info, err, err_size);
            if (rc)
                return rc;
            continue;
        case K_HISTORY:
            rc = decode_history(&r, info, err, err_size);
            if (rc)
                return rc;
            continue;
        case K_EPOCH:
            field = &info->epoch;
            break;
        case K_JOURNAL_SEQ:
            field = &info->journal_seq;
            break;
        case K_LSN:
            field = &info->lsn;
            break;
        case K_CREATED:
            field = &info->created_ns;
            break;
        case K_N_ENTRIES:
            field = &info->n_entries;
            break;
        case K_RAW_SIZE:
            field = &info->raw_size;
            break;
        default:
            field = &info->digest;
            break;
        }
        s = mp_read_uint(&r, field);
        if (s != MP_OK)
            return corrupt(err, err_size, "header: \"%s\" %s (want an unsigned integer)", ckpt_key_names[k],
                           mp_status_text(s));
    }
    if (r.left != 0)
        return corrupt(err, err_size, "header: %zu bytes after the map", r.left);
    for (int k = 0; k < N_KEYS; k++)
        if (!(seen & (1u << k)) && k != K_REPLAY && k != K_HISTORY)
            return corrupt(err, err_size, "header: key \"%s\" is missing", ckpt_key_names[k]);
    for (uint32_t i = 0; i < info->n_tables; i++) {
        if (info->tables[i].n_entries > UINT64_MAX - sum)
            return corrupt(err, err_size, "header: table counts overflow");
        sum += info->tables[i].n_entries;
    }
    if (sum != info->n_entries)
        return corrupt(err, err_size,
                       "header: n_entries %" PRIu64 " but the table directory adds up to %" PRIu64,
                       info->n_entries, sum);
    return 0;
}

/* Checks the fixed prefix against the file length file_len (which may be
 * unknown to the caller: then UINT64_MAX skips the size check).  Fills
 * info->major/minor and the lengths. */
static int check_prefix(const uint8_t *prefix, uint64_t file_len, struct ckpt_info *info,
                        uint32_t *header_len, uint32_t *n_frames, uint64_t *body_len, char *err,
                        size_t err_size)
{
    if (memcmp(prefix + OFF_MAGIC, CKPT_MAGIC, 4) != 0)
        return corrupt(err, err_size, "bad magic %02x%02x%02x%02x (want \"RKCP\"): not a checkpoint file",
                       prefix[0], prefix[1], prefix[2], prefix[3]);
    info->major = get_le16(prefix + OFF_MAJOR);
    info->minor = get_le16(prefix + OFF_MINOR);
    if (info->major != CKPT_MAJOR)
        return seg_fail(err, err_size, RK_EVERSION, "checkpoint format %u.%u, this ringkeep reads %u.x",
                        info->major, info->minor, CKPT_MAJOR);
    *header_len = get_le32(prefix + OFF_HEADER_LEN);
    *n_frames = get_le32(prefix + OFF_N_FRAMES);
    *body_len = get_le64(prefix + OFF_BODY_LEN);
    if (*header_len > CKPT_MAX_HEADER)
        return corrupt(err, err_size, "header_len %" PRIu32 " exceeds the limit %u", *header_len,
                       CKPT_MAX_HEADER);
    if (file_len != UINT64_MAX &&
        (*body_len > file_len || file_len - *body_len != (uint64_t)PREFIX_SIZE + *header_len + TRAILER_SIZE))
        return corrupt(err, err_size,
                       "file has %" PRIu64 " bytes, the header announces %u + %" PRIu32 " + %" PRIu64
                       " + %u (truncated or extended?)",
                       file_len, PREFIX_SIZE, *header_len, *body_len, TRAILER_SIZE);
    if ((*n_frames == 0) != (*body_len == 0))
        return corrupt(err, err_size, "%" PRIu32 " frames in a body of %" PRIu64 " bytes", *n_frames,
                       *body_len);
    return 0;
}

/* Checks the header hash, decodes the map and checks the name; on
 * failure frees what info holds. */
static int decode_header(const uint8_t *prefix, const uint8_t *map, uint32_t header_len, const char *name,
                         struct ckpt_info *info, char *err, size_t err_size)
{
    uint64_t stored = get_be64(prefix + OFF_HEADER_HASH),
             computed = ckpt_header_hash(prefix, map, header_len);
    uint64_t seq;
    int rc;

    if (stored != computed)
        return corrupt(err, err_size,
                       "header checksum mismatch (stored %016" PRIx64 ", computed %016" PRIx64 ")", stored,
                       computed);
    rc = decode_map(map, header_len, info, err, err_size);
    if (rc == 0 && ckpt_name_seq(name, &seq) && seq != info->journal_seq)
        rc = corrupt(err, err_size,
                     "file name says journal seq %" PRIu64 ", its header says %" PRIu64
                     " (another checkpoint copied over this one?)",
                     seq, info->journal_seq);
    if (rc)
        ckpt_info_free(info);
    return rc;
}

/* ------------------------------------------------------------ body verification */

struct body_check {
    const struct ckpt_info *info;
    ckpt_entry_fn fn;
    void *arg;
    uint64_t n_seen;     /* entries so far */
    uint64_t table_seen; /* entries of the current table so far */
    uint32_t table;      /* current table index, n_tables before the first */
    uint8_t *prev_key;   /* the previous key of the current table */
    size_t prev_klen, prev_key_size;
    uint64_t digest;
};

/* Checks one entry against order and counts, then hands it on. */
static int check_entry(struct body_check *b, const uint8_t *tname, uint32_t tlen, const uint8_t *key,
                       uint32_t klen, const uint8_t *val, uint32_t vlen, char *err, size_t err_size)
{
    const struct ckpt_info *info = b->info;
    const struct ckpt_table *t = b->table < info->n_tables ? &info->tables[b->table] : NULL;
    int rc;

    if (!t || strlen(t->name) != tlen || memcmp(t->name, tname, tlen) != 0) {
        uint32_t next = t ? b->table + 1 : 0;

        if (t && b->table_seen != t->n_entries)
            return corrupt(err, err_size,
                           "entry %" PRIu64 ": table '%s' ends after %" PRIu64
                           " entries, the directory says %" PRIu64,
                           b->n_seen, t->name, b->table_seen, t->n_entries);
        if (next >= info->n_tables || strlen(info->tables[next].name) != tlen ||
            memcmp(info->tables[next].name, tname, tlen) != 0)
            return corrupt(err, err_size,
                           "entry %" PRIu64 ": table '%.*s' where the directory's next table is '%s'",
                           b->n_seen, (int)tlen, (const char *)tname,
                           next < info->n_tables ? info->tables[next].name : "(none)");
        b->table = next;
        t = &info->tables[next];
        b->table_seen = 0;
    } else if (ckpt_key_cmp(key, klen, b->prev_key, b->prev_klen) <= 0) {
        return corrupt(err, err_size,
                       "entry %" PRIu64 ": key of %" PRIu32
                       " bytes in table '%s' is not above the previous key",
                       b->n_seen, klen, t->name);
    }
    if (b->table_seen == t->n_entries)
        return corrupt(err, err_size,
                       "entry %" PRIu64 ": table '%s' has more than the %" PRIu64 " entries listed",
                       b->n_seen, t->name, t->n_entries);
    if (b->n_seen == info->n_entries)
        return corrupt(err, err_size, "more than the %" PRIu64 " entries the header announces",
                       info->n_entries);
    if (klen > b->prev_key_size) {
        /* klen < CKPT_FRAME_MAX: bounded */
        uint8_t *grown = realloc(b->prev_key, klen);
        if (!grown)
            return seg_fail(err, err_size, ENOMEM, "out of memory for a key of %" PRIu32 " bytes", klen);
        b->prev_key = grown;
        b->prev_key_size = klen;
    }
    if (klen)
        memcpy(b->prev_key, key, klen);
    b->prev_klen = klen;
    b->digest += ckpt_entry_digest(t->name, key, klen, val, vlen);
    b->table_seen++;
    b->n_seen++;
    if (b->fn) {
        rc = b->fn(b->arg, t->name, key, klen, val, vlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* Walks the entries of one frame's raw bytes. */
static int check_frame_entries(struct body_check *b, uint32_t frame, const uint8_t *raw, size_t raw_len,
                               char *err, size_t err_size)
{
    struct mp_reader r = {raw, raw_len};

    /* every entry consumes at least 4 bytes: bounded by raw_len */
    while (r.left > 0) {
        const uint8_t *tname, *key, *val;
        uint32_t n, tlen, klen, vlen;
        size_t at = raw_len - r.left;
        enum mp_status s;
        int rc;

        if ((s = mp_read_container(&r, 0, &n)) != MP_OK)
            return corrupt(err, err_size, "frame %" PRIu32 " offset %zu: entry %" PRIu64 " %s", frame, at,
                           b->n_seen, mp_status_text(s));
        if (n != 3)
            return corrupt(err, err_size,
                           "frame %" PRIu32 " offset %zu: entry %" PRIu64 " is an array of %" PRIu32
                           ", not 3",
                           frame, at, b->n_seen, n);
        if ((s = mp_read_raw(&r, 1, &tname, &tlen)) != MP_OK)
            return corrupt(err, err_size, "frame %" PRIu32 " offset %zu: entry %" PRIu64 ": table name %s",
                           frame, at, b->n_seen, mp_status_text(s));
        if ((s = mp_read_raw(&r, 0, &key, &klen)) != MP_OK)
            return corrupt(err, err_size, "frame %" PRIu32 " offset %zu: entry %" PRIu64 ": key %s", frame,
                           at, b->n_seen, mp_status_text(s));
        if ((s = mp_read_raw(&r, 0, &val, &vlen)) != MP_OK)
            return corrupt(err, err_size, "frame %" PRIu32 " offset %zu: entry %" PRIu64 ": value %s", frame,
                           at, b->n_seen, mp_status_text(s));
        rc = check_entry(b, tname, tlen, key, klen, val, vlen, err, err_size);
        if (rc)
            return rc;
    }
    return 0;
}

/* Decompresses and checks every frame of body[0..body_len). */
static int check_body(struct body_check *b, const uint8_t *body, uint64_t body_len, uint32_t n_frames,
                      char *err, size_t err_size)
{
    ZSTD_DCtx *dctx = NULL;
    uint8_t *raw = NULL;
    size_t raw_size = 0;
    uint64_t pos = 0, raw_total = 0;
    uint32_t frame = 0;
    int rc = 0;

    if (body_len) {
        dctx = ZSTD_createDCtx();
        if (!dctx) {
            rc = seg_fail(err, err_size, ENOMEM, "out of memory for a zstd context");
            goto out;
        }
    }
    /* every frame consumes at least FRAME_PREFIX_SIZE bytes: bounded */
    while (pos < body_len) {
        uint32_t raw_len, comp_len;
        unsigned long long content;
        size_t n;

        if (frame == n_frames) {
            rc = corrupt(err, err_size, "body has bytes after the %" PRIu32 " frames announced", n_frames);
            goto out;
        }
        if (body_len - pos < FRAME_PREFIX_SIZE) {
            rc = corrupt(err, err_size, "frame %" PRIu32 ": prefix runs past the body", frame);
            goto out;
        }
        raw_len = get_le32(body + pos);
        comp_len = get_le32(body + pos + 4);
        pos += FRAME_PREFIX_SIZE;
        if (raw_len == 0 || raw_len > CKPT_FRAME_MAX) {
            rc = corrupt(err, err_size, "frame %" PRIu32 ": raw_len %" PRIu32 " out of range 1..%u", frame,
                         raw_len, CKPT_FRAME_MAX);
            goto out;
        }
        if (comp_len > body_len - pos) {
            rc = corrupt(err, err_size,
                         "frame %" PRIu32 ": comp_len %" PRIu32 " but %" PRIu64 " body bytes remain", frame,
                         comp_len, body_len - pos);
            goto out;
        }
        content = ZSTD_getFrameContentSize(body + pos, comp_len);
        if (content != raw_len) {
            rc = corrupt(err, err_size, "frame %" PRIu32 ": zstd frame %s (raw_len %" PRIu32 ")", frame,
                         content == ZSTD_CONTENTSIZE_ERROR     ? "is not a zstd frame"
                         : content == ZSTD_CONTENTSIZE_UNKNOWN ? "does not state its content size"
                                                               : "states another content size",
                         raw_len);
            goto out;
        }
        n = ZSTD_findFrameCompressedSize(body + pos, comp_len);
        if (ZSTD_isError(n) || n != comp_len) {
            rc = corrupt(err, err_size,
                         "frame %" PRIu32 ": not exactly one zstd frame of %" PRIu32 " bytes (%s)", frame,
                         comp_len, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "bytes after the frame");
            goto out;
        }
        if (raw_len > raw_size) {
            /* raw_len <= CKPT_FRAME_MAX: bounded */
            free(raw);
            raw = malloc(raw_len);
            raw_size = raw ? raw_len : 0;
            if (!raw) {
                rc = seg_fail(err, err_size, ENOMEM, "out of memory for a frame of %" PRIu32 " bytes",
                              raw_len);
                goto out;
            }
        }
        n = ZSTD_decompressDCtx(dctx, raw, raw_len, body + pos, comp_len);
        if (ZSTD_isError(n) || n != raw_len) {
            rc = corrupt(err, err_size, "frame %" PRIu32 ": does not decompress to %" PRIu32 " bytes (%s)",
                         frame, raw_len, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short");
            goto out;
        }
        rc = check_frame_entries(b, frame, raw, raw_len, err, err_size);
        if (rc)
            goto out;
        pos += comp_len;
        raw_total += raw_len;
        frame++;
    }
    if (frame != n_frames) {
        rc = corrupt(err, err_size, "body holds %" PRIu32 " frames, the header announces %" PRIu32, frame,
                     n_frames);
        goto out;
    }
    if (raw_total != b->info->raw_size) {
        rc = corrupt(err, err_size, "frames hold %" PRIu64 " bytes of entries, raw_size says %" PRIu64,
                     raw_total, b->info->raw_size);
        goto out;
    }
    if (b->n_seen != b->info->n_entries) {
        rc = corrupt(err, err_size, "body holds %" PRIu64 " entries, the header announces %" PRIu64,
                     b->n_seen, b->info->n_entries);
        goto out;
    }
    if (b->info->n_tables && b->table_seen != b->info->tables[b->table].n_entries) {
        rc = corrupt(err, err_size, "table '%s' holds %" PRIu64 " entries, the directory says %" PRIu64,
                     b->info->tables[b->table].name, b->table_seen, b->info->tables[b->table].n_entries);
        goto out;
    }
    if (b->digest != b->info->digest)
        rc = corrupt(err, err_size, "state digest %016" PRIx64 " recomputed, the header says %016" PRIx64,
                     b->digest, b->info->digest);
out:
    free(raw);
    ZSTD_freeDCtx(dctx);
    return rc;
}

/* ckpt_verify_buffer; with once, fn is called in the one checking pass. */
static int verify_buffer(const uint8_t *buf, size_t len, const char *name, struct ckpt_info *info,
                         ckpt_entry_fn fn, void *arg, int once, char *err, size_t err_size)
{
    struct ckpt_info got;
    struct body_check b;
    uint32_t header_len = 0, n_frames = 0;
    uint64_t body_len = 0, stored, computed;
    int rc;

    memset(&got, 0, sizeof got);
    memset(&b, 0, sizeof b);
    if (err && err_size)
        err[0] = '\0';
    if (info)
        memset(info, 0, sizeof *info);
    if (!buf && len)
        return seg_fail(err, err_size, RK_EINVAL, "no buffer");
    if (len < PREFIX_SIZE + TRAILER_SIZE)
        return corrupt(err, err_size, "%zu bytes, shorter than the fixed header and trailer (%u)", len,
                       PREFIX_SIZE + TRAILER_SIZE);
    rc = check_prefix(buf, len, &got, &header_len, &n_frames, &body_len, err, err_size);
    if (rc)
        return rc;
    stored = get_be64(buf + len - TRAILER_SIZE);
    computed = XXH64(buf, len - TRAILER_SIZE, 0);
    if (stored != computed) {
        /* the header's own checksum, when it fails, says more precisely where */
        if (get_be64(buf + OFF_HEADER_HASH) != ckpt_header_hash(buf, buf + PREFIX_SIZE, header_len))
            return corrupt(err, err_size, "header checksum mismatch (the header is damaged)");
        return corrupt(err, err_size,
                       "trailer checksum mismatch (stored %016" PRIx64 ", computed %016" PRIx64 ")", stored,
                       computed);
    }
    rc = decode_header(buf, buf + PREFIX_SIZE, header_len, name, &got, err, err_size);
    if (rc)
        return rc;
    /* pass 1 checks everything; only a body that passed is handed to fn,
     * in pass 2, so that no entry of a corrupt file is ever used (once:
     * pass 1 hands them out as they pass) */
    int n_passes = fn && !once ? 2 : 1;
    for (int pass = 1; pass <= n_passes && rc == 0; pass++) {
        free(b.prev_key);
        memset(&b, 0, sizeof b);
        b.info = &got;
        b.table = got.n_tables;
        b.fn = pass == n_passes ? fn : NULL;
        b.arg = arg;
        rc = check_body(&b, buf + PREFIX_SIZE + header_len, body_len, n_frames, err, err_size);
    }
    free(b.prev_key);
    if (rc == 0 && info)
        *info = got;
    else
        ckpt_info_free(&got);
    return rc;
}

int ckpt_verify_buffer(const uint8_t *buf, size_t len, const char *name, struct ckpt_info *info,
                       ckpt_entry_fn fn, void *arg, char *err, size_t err_size)
{
    return verify_buffer(buf, len, name, info, fn, arg, 0, err, err_size);
}

/* ------------------------------------------------------------ reading files */

/* Opens path read-only, a regular file; *size its length. */
static int open_file(const char *path, int *fd_out, uint64_t *size, char *err, size_t err_size)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), rc;

    if (fd < 0) {
        rc = errno;
        return seg_fail(err, err_size, rc, "%s: cannot open: %s", path, strerror(rc));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = S_ISREG(st.st_mode) ? errno : RK_ECORRUPT;
        close(fd);
        return seg_fail(err, err_size, rc, "%s: not a regular file", path);
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Prefixes err with the path (the buffer functions do not name files). */
static int with_path(const char *path, int rc, char *err, size_t err_size)
{
    char reason[512];

    if (rc && err && err_size) {
        snprintf(reason, sizeof reason, "%s", err);
        seg_error(err, err_size, "%s: %s", path, reason);
    }
    return rc;
}

int ckpt_read_info(const char *path, struct ckpt_info *info, char *err, size_t err_size)
{
    uint8_t prefix[PREFIX_SIZE], *map = NULL;
    uint32_t header_len = 0, n_frames = 0;
    uint64_t size = 0, body_len = 0;
    struct ckpt_info got;
    ssize_t n;
    int fd = -1, rc;

    memset(&got, 0, sizeof got);
    if (info)
        memset(info, 0, sizeof *info);
    if (!path || !info)
        return seg_fail(err, err_size, RK_EINVAL, "no path or info");
    rc = open_file(path, &fd, &size, err, err_size);
    if (rc)
        return rc;
    if (size < PREFIX_SIZE + TRAILER_SIZE) {
        rc = corrupt(err, err_size, "%" PRIu64 " bytes, shorter than the fixed header and trailer (%u)", size,
                     PREFIX_SIZE + TRAILER_SIZE);
        goto out;
    }
    n = pread(fd, prefix, PREFIX_SIZE, 0);
    if (n != PREFIX_SIZE) {
        rc = n < 0 ? errno : RK_ECORRUPT;
        seg_error(err, err_size, "cannot read the header: %s", n < 0 ? strerror(rc) : "short read");
        goto out;
    }
    rc = check_prefix(prefix, size, &got, &header_len, &n_frames, &body_len, err, err_size);
    if (rc)
        goto out;
    map = malloc(header_len ? header_len : 1); /* <= CKPT_MAX_HEADER */
    if (!map) {
        rc = seg_fail(err, err_size, ENOMEM, "out of memory for a header of %" PRIu32 " bytes", header_len);
        goto out;
    }
    n = header_len ? pread(fd, map, header_len, PREFIX_SIZE) : 0;
    if (n != (ssize_t)header_len) {
        rc = n < 0 ? errno : RK_ECORRUPT;
        seg_error(err, err_size, "cannot read the header: %s", n < 0 ? strerror(rc) : "short read");
        goto out;
    }
    rc = decode_header(prefix, map, header_len, base_name(path), &got, err, err_size);
    if (rc == 0)
        *info = got;
out:
    free(map);
    close(fd);
    return with_path(path, rc, err, err_size);
}

/* ckpt_verify, or ckpt_verify_once with once. */
static int verify_file(const char *path, struct ckpt_info *info, ckpt_entry_fn fn, void *arg, int once,
                       char *err, size_t err_size)
{
    void *map = MAP_FAILED;
    uint64_t size = 0;
    int fd = -1, rc;

    if (info)
        memset(info, 0, sizeof *info);
    if (!path)
        return seg_fail(err, err_size, RK_EINVAL, "no path");
    rc = open_file(path, &fd, &size, err, err_size);
    if (rc)
        return rc;
    if (size > SIZE_MAX) {
        rc = seg_fail(err, err_size, EFBIG, "%s: too large to map", path);
        goto out;
    }
    if (size > 0) {
        /* checkpoint files are never modified after the rename: a mapping
         * reads what was verified */
        map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            rc = errno;
            seg_error(err, err_size, "%s: cannot map: %s", path, strerror(rc));
            goto out;
        }
        madvise(map, (size_t)size, MADV_SEQUENTIAL);
    }
    rc = verify_buffer(map == MAP_FAILED ? NULL : map, (size_t)size, base_name(path), info, fn, arg, once, err,
                       err_size);
    with_path(path, rc, err, err_size);
out:
    if (map != MAP_FAILED)
        munmap(map, (size_t)size);
    close(fd);
    return rc;
}

int ckpt_verify(const char *path, struct ckpt_info *info, ckpt_entry_fn fn, void *arg, char *err,
                size_t err_size)
{
    return verify_file(path, info, fn, arg, 0, err, err_size);
}

int ckpt_verify_once(const char *path, struct ckpt_info *info, ckpt_entry_fn fn, void *arg, char *err,
                     size_t err_size)
{
    return verify_file(path, info, fn, arg, 1, err, err_size);
}
