/* checkpoint.c -- checkpoint files: writer, verifier, header reader and
 * listing (the contract is in checkpoint.h).
 *
 * File layout, format 1.x; integers little-endian unless said otherwise:
 *
 *   offset  size  field
 *   0       4     magic "RKCP"
 *   4       2     major (CKPT_MAJOR)
 *   6       2     minor (CKPT_MINOR)
 *   8       4     header_len: bytes of the msgpack map at offset 32
 *                 (at most CKPT_MAX_HEADER)
 *   12      4     n_frames: body frames
 *   16      8     body_len: bytes of body
 *   24      8     XXH64 (seed 0, canonical = big-endian) of bytes [0, 24)
 *                 followed by the map: lets ckpt_read_info trust the header
 *                 without reading the body
 *   32      header_len  the header map (below)
 *   32 + header_len     body: n_frames frames, each
 *                         u32 raw_len   msgpack bytes in the frame,
 *                                       1..CKPT_FRAME_MAX
 *                         u32 comp_len  bytes of the zstd frame that follows
 *                         one zstd frame stating its content size = raw_len
 *                       each frame holds whole entries (none spans frames);
 *                       an entry is a msgpack array of 3:
 *                         [table (str), key (bin), value (bin)]
 *                       tables in the directory's order (names strictly
 *                       increasing), keys strictly increasing bytewise
 *                       within a table
 *   end - 8     8     trailer: XXH64 (seed 0, canonical) of bytes [0, end-8)
 *
 *   The file is exactly 32 + header_len + body_len + 8 bytes.
 *
 * The header map has str keys, each exactly once (msgpack ints may use any
 * width; str/bin/array/map any of their forms):
 *   "epoch", "journal_seq", "lsn", "created_ns"   uint
 *   "producers"  array of [name (str), height (uint), applied_lsn (uint)]
 *   "tables"     array of [name (str), n_entries (uint >= 1)], names
 *                strictly increasing (only tables with entries appear)
 *   "n_entries", "raw_size" (sum of the frames' raw_len), "digest"  uint
 * and, from format 1.1, optionally (checkpoint.h, struct ckpt_replay):
 *   "replay"     array of 7: [restart_seq, n_groups, n_records, n_discarded
 *                (uint), producers: array of [name (str), applied_lsn,
 *                height, n_groups, discard_lsn (uint)], table ids: array
 *                of [id (uint < 65536), name (str)], producer slots: array
 *                of [slot (uint < 65536), name (str)]]
 * Names are 1..RK_NAME_MAX bytes without NUL.  A file of a minor version
 * newer than ours may carry other keys, which are skipped; in a file of
 * our minor or older an unknown key is corruption.  The fixed 32 bytes,
 * the frame prefix and the entry form never change within major 1.
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
 * once the whole file has passed, so a corrupt file is never half used.
 *
 * The writer packs entries into a buffer and cuts a zstd frame every
 * CKPT_FRAME_TARGET bytes into a spool file (unlinked as soon as it is
 * created, so it never outlives the process); finishing writes header,
 * spooled body and trailer to a hidden temp file, then
 *
 *   temp written --sys_fsync--> durable --sys_rename--> <seq>.rkcp
 *     --sys_fsync(dir)--> listed --ckpt_verify--> announced (returned)
 *
 * and any failure removes the temp or final file (a .rkcp exists only if
 * finish succeeded).
 *
 * Threads: a writer belongs to one thread at a time; the reading functions
 * are pure and any thread may call them (each makes its own zstd context).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t, XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "persist/bytes.h"
#include "persist/checkpoint.h"
#include "persist/mpread.h"
#include "shm/segment.h"
#include "persist/store.h"

#define CKPT_MAGIC "RKCP"
#define PREFIX_SIZE 32u
#define TRAILER_SIZE 8u
#define FRAME_PREFIX_SIZE 8u
#define NAME_DIGITS 20

enum {
    OFF_MAGIC = 0,
    OFF_MAJOR = 4,
    OFF_MINOR = 6,
    OFF_HEADER_LEN = 8,
    OFF_N_FRAMES = 12,
    OFF_BODY_LEN = 16,
    OFF_HEADER_HASH = 24,
};

#define corrupt(err, err_size, ...) seg_fail(err, err_size, RK_ECORRUPT, __VA_ARGS__)

/* ------------------------------------------------------------ helpers */

/* XXH64 of the fixed prefix's first 24 bytes followed by the map. */
static uint64_t header_hash(const uint8_t *prefix, const uint8_t *map, size_t map_len)
{
    XXH64_state_t st;

    XXH64_reset(&st, 0);
    XXH64_update(&st, prefix, OFF_HEADER_HASH);
    XXH64_update(&st, map, map_len);
    return XXH64_digest(&st);
}

uint64_t ckpt_entry_digest(const char *table, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    XXH3_state_t st;
    uint64_t seed;

    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, table, strlen(table) + 1); /* the name and its NUL */
    XXH3_64bits_update(&st, klen ? key : "", klen);
    seed = XXH3_64bits_digest(&st);
    return XXH3_64bits_withSeed(vlen ? val : "", vlen, seed);
}

void ckpt_info_free(struct ckpt_info *info)
{
    if (!info)
        return;
    free(info->producers);
    free(info->tables);
    free(info->replay.producers);
    free(info->replay.table_ids);
    free(info->replay.slots);
    info->producers = NULL;
    info->tables = NULL;
    info->n_producers = 0;
    info->n_tables = 0;
    memset(&info->replay, 0, sizeof info->replay);
    info->has_replay = 0;
}

/* 1..RK_NAME_MAX bytes, no NUL. */
static int name_ok(const uint8_t *s, uint32_t len)
{
    return len >= 1 && len <= RK_NAME_MAX && !memchr(s, '\0', len);
}

int ckpt_key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;

    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

#define SPOOL_PREFIX ".spool-"

/* The journal sequence a base name <20 digits>.rkcp carries; 0 when name
 * does not have that pattern (or is NULL). */
static int name_seq(const char *name, uint64_t *seq)
{
    uint64_t v = 0;

    if (!name || strlen(name) != NAME_DIGITS + strlen(CKPT_SUFFIX) ||
        strcmp(name + NAME_DIGITS, CKPT_SUFFIX) != 0)
        return 0;
    for (int i = 0; i < NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        if (v > (UINT64_MAX - (uint64_t)(name[i] - '0')) / 10)
            return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *seq = v;
    return 1;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

/* ------------------------------------------------------------ header decoding */

enum header_key {
    K_EPOCH,
    K_JOURNAL_SEQ,
    K_LSN,
    K_CREATED,
    K_PRODUCERS,
    K_TABLES,
    K_N_ENTRIES,
    K_RAW_SIZE,
    K_DIGEST,
    K_REPLAY, /* 1.1, optional */
    N_KEYS
};

static const char *const key_names[N_KEYS] = {
    [K_EPOCH] = "epoch",         [K_JOURNAL_SEQ] = "journal_seq", [K_LSN] = "lsn",
    [K_CREATED] = "created_ns",  [K_PRODUCERS] = "producers",     [K_TABLES] = "tables",
    [K_N_ENTRIES] = "n_entries", [K_RAW_SIZE] = "raw_size",       [K_DIGEST] = "digest",
    [K_REPLAY] = "replay",
};

static int find_key(const uint8_t *s, uint32_t len)
{
    for (int k = 0; k < N_KEYS; k++)
        if (strlen(key_names[k]) == len && memcmp(key_names[k], s, len) == 0)
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
        if (k == K_REPLAY && info->minor < 1)
            k = -1; /* not a key of format 1.0 */
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
            return corrupt(err, err_size, "header: key \"%s\" appears twice", key_names[k]);
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
            return corrupt(err, err_size, "header: \"%s\" %s (want an unsigned integer)", key_names[k],
                           mp_status_text(s));
    }
    if (r.left != 0)
        return corrupt(err, err_size, "header: %zu bytes after the map", r.left);
    for (int k = 0; k < N_KEYS; k++)
        if (!(seen & (1u << k)) && k != K_REPLAY)
            return corrupt(err, err_size, "header: key \"%s\" is missing", key_names[k]);
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
    uint64_t stored = get_be64(prefix + OFF_HEADER_HASH), computed = header_hash(prefix, map, header_len);
    uint64_t seq;
    int rc;

    if (stored != computed)
        return corrupt(err, err_size,
                       "header checksum mismatch (stored %016" PRIx64 ", computed %016" PRIx64 ")", stored,
                       computed);
    rc = decode_map(map, header_len, info, err, err_size);
    if (rc == 0 && name_seq(name, &seq) && seq != info->journal_seq)
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

int ckpt_verify_buffer(const uint8_t *buf, size_t len, const char *name, struct ckpt_info *info,
                       ckpt_entry_fn fn, void *arg, char *err, size_t err_size)
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
        if (get_be64(buf + OFF_HEADER_HASH) != header_hash(buf, buf + PREFIX_SIZE, header_len))
            return corrupt(err, err_size, "header checksum mismatch (the header is damaged)");
        return corrupt(err, err_size,
                       "trailer checksum mismatch (stored %016" PRIx64 ", computed %016" PRIx64 ")", stored,
                       computed);
    }
    rc = decode_header(buf, buf + PREFIX_SIZE, header_len, name, &got, err, err_size);
    if (rc)
        return rc;
    /* pass 1 checks everything; only a body that passed is handed to fn,
     * in pass 2, so that no entry of a corrupt file is ever used */
    for (int pass = 1; pass <= (fn ? 2 : 1) && rc == 0; pass++) {
        free(b.prev_key);
        memset(&b, 0, sizeof b);
        b.info = &got;
        b.table = got.n_tables;
        b.fn = pass == 2 ? fn : NULL;
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

int ckpt_verify(const char *path, struct ckpt_info *info, ckpt_entry_fn fn, void *arg, char *err,
                size_t err_size)
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
    rc = ckpt_verify_buffer(map == MAP_FAILED ? NULL : map, (size_t)size, base_name(path), info, fn, arg, err,
                            err_size);
    with_path(path, rc, err, err_size);
out:
    if (map != MAP_FAILED)
        munmap(map, (size_t)size);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------ listing */

static int cmp_desc(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

int ckpt_list(const char *dir, char ***paths, size_t *n_paths)
{
    char **list = NULL, **grown;
    size_t n = 0, cap = 0;
    struct dirent *d;
    DIR *dh = NULL;
    uint64_t seq;
    int rc = 0;

    if (!dir || !paths || !n_paths)
        return RK_EINVAL;
    *paths = NULL;
    *n_paths = 0;
    dh = opendir(dir);
    if (!dh)
        return errno;
    /* bounded by the folder's entries */
    while ((errno = 0, d = readdir(dh)) != NULL) {
        if (!name_seq(d->d_name, &seq))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            grown = realloc(list, cap * sizeof *list);
            if (!grown) {
                rc = ENOMEM;
                goto fail;
            }
            list = grown;
        }
        if (asprintf(&list[n], "%s/%s", dir, d->d_name) < 0) {
            rc = ENOMEM;
            goto fail;
        }
        n++;
    }
    if (errno) {
        rc = errno;
        goto fail;
    }
    closedir(dh);
    /* 20-digit zero-padded names: name order is sequence order */
    if (n)
        qsort(list, n, sizeof *list, cmp_desc);
    *paths = list;
    *n_paths = n;
    return 0;
fail:
    closedir(dh);
    ckpt_list_free(list, n);
    return rc;
}

void ckpt_list_free(char **paths, size_t n_paths)
{
    for (size_t i = 0; paths && i < n_paths; i++)
        free(paths[i]);
    free(paths);
}

/* ------------------------------------------------------------ writing */

struct ckpt_writer {
    char dir[4096];
    struct ckpt_info info; /* what goes into the header; tables grow */
    size_t tables_cap;
    int zstd_level;
    int spool_fd; /* the compressed body, unlinked */
    ZSTD_CCtx *cctx;
    msgpack_sbuffer frame; /* entries of the frame being filled */
    msgpack_packer pk;
    uint8_t *comp;
    size_t comp_size;
    uint64_t body_len;
    uint32_t n_frames;
    uint8_t *prev_key;
    size_t prev_klen, prev_key_size;
    int failed; /* sticky: the first error of add (I/O, memory) */
};

static int write_all(int fd, const void *buf, size_t n)
{
    size_t done = 0;

    /* each round writes at least one byte or fails: bounded */
    while (done < n) {
        ssize_t w = sys_write(fd, (const char *)buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        if (w == 0)
            return EIO;
        done += (size_t)w;
    }
    return 0;
}

/* Compresses the entries gathered so far into one frame in the spool. */
static int flush_frame(ckpt_writer *w)
{
    uint8_t prefix[FRAME_PREFIX_SIZE];
    size_t bound, n;
    int rc;

    if (w->frame.size == 0)
        return 0;
    bound = ZSTD_compressBound(w->frame.size);
    if (bound > w->comp_size) {
        free(w->comp);
        w->comp = malloc(bound);
        w->comp_size = w->comp ? bound : 0;
        if (!w->comp)
            return ENOMEM;
    }
    n = ZSTD_compressCCtx(w->cctx, w->comp, bound, w->frame.data, w->frame.size, w->zstd_level);
    if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? ENOMEM : RK_EINVAL;
    put_le32(prefix, (uint32_t)w->frame.size);
    put_le32(prefix + 4, (uint32_t)n);
    rc = write_all(w->spool_fd, prefix, sizeof prefix);
    if (rc == 0)
        rc = write_all(w->spool_fd, w->comp, n);
    if (rc)
        return rc;
    w->body_len += FRAME_PREFIX_SIZE + n;
    w->info.raw_size += w->frame.size;
    w->n_frames++;
    w->frame.size = 0;
    return 0;
}

int ckpt_writer_open(const char *dir, const struct ckpt_info *info, int zstd_level, ckpt_writer **out,
                     char *err, size_t err_size)
{
    ckpt_writer *w = NULL;
    char spool[4200];
    static unsigned spool_counter;
    int rc;

    if (out)
        *out = NULL;
    if (!dir || !info || !out || (info->n_producers && !info->producers))
        return seg_fail(err, err_size, RK_EINVAL, "checkpoint writer: missing argument");
    if (strlen(dir) >= sizeof w->dir)
        return seg_fail(err, err_size, RK_EINVAL, "checkpoint writer: folder name too long");
    for (uint32_t i = 0; i < info->n_producers; i++) {
        size_t len = strnlen(info->producers[i].name, sizeof info->producers[i].name);
        if (len == 0 || len > RK_NAME_MAX)
            return seg_fail(err, err_size, RK_EINVAL,
                            "checkpoint writer: producer %" PRIu32 " has no valid name", i);
    }
    w = calloc(1, sizeof *w);
    if (!w)
        return seg_fail(err, err_size, ENOMEM, "checkpoint writer: out of memory");
    w->spool_fd = -1;
    msgpack_sbuffer_init(&w->frame);
    msgpack_packer_init(&w->pk, &w->frame, msgpack_sbuffer_write);
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->zstd_level = zstd_level;
    w->info.epoch = info->epoch;
    w->info.journal_seq = info->journal_seq;
    w->info.lsn = info->lsn;
    w->info.created_ns = info->created_ns ? info->created_ns : seg_now_ns(CLOCK_REALTIME);
    w->info.n_producers = info->n_producers;
    w->info.producers = calloc(info->n_producers ? info->n_producers : 1, sizeof *w->info.producers);
    w->cctx = ZSTD_createCCtx();
    if (!w->info.producers || !w->cctx) {
        rc = seg_fail(err, err_size, ENOMEM, "checkpoint writer: out of memory");
        goto fail;
    }
    if (info->n_producers)
        memcpy(w->info.producers, info->producers, info->n_producers * sizeof *info->producers);
    if (info->has_replay) {
        const struct ckpt_replay *src = &info->replay;
        struct ckpt_replay *dst = &w->info.replay;
        *dst = *src;
        dst->producers = calloc(src->n_producers + 1, sizeof *dst->producers);
        dst->table_ids = calloc(src->n_table_ids + 1, sizeof *dst->table_ids);
        dst->slots = calloc(src->n_slots + 1, sizeof *dst->slots);
        w->info.has_replay = 1;
        if (!dst->producers || !dst->table_ids || !dst->slots) {
            rc = seg_fail(err, err_size, ENOMEM, "checkpoint writer: out of memory");
            goto fail;
        }
        if (src->n_producers)
            memcpy(dst->producers, src->producers, src->n_producers * sizeof *src->producers);
        if (src->n_table_ids)
            memcpy(dst->table_ids, src->table_ids, src->n_table_ids * sizeof *src->table_ids);
        if (src->n_slots)
            memcpy(dst->slots, src->slots, src->n_slots * sizeof *src->slots);
    }
    snprintf(spool, sizeof spool, "%s/" SPOOL_PREFIX "%020" PRIu64 "-%ld-%u.tmp", dir, info->journal_seq,
             (long)getpid(), __atomic_fetch_add(&spool_counter, 1, __ATOMIC_RELAXED));
    w->spool_fd = sys_open(spool, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->spool_fd < 0) {
        rc = errno;
        seg_error(err, err_size, "checkpoint writer: cannot create %s: %s", spool, strerror(rc));
        goto fail;
    }
    /* the spool lives on through the descriptor alone */
    if (sys_unlink(spool) != 0) {
        rc = errno;
        seg_error(err, err_size, "checkpoint writer: cannot unlink %s: %s", spool, strerror(rc));
        goto fail;
    }
    *out = w;
    return 0;
fail:
    ckpt_writer_abort(w);
    return rc;
}

int ckpt_writer_add(ckpt_writer *w, const char *table, const void *key, uint32_t klen, const void *val,
                    uint32_t vlen)
{
    struct ckpt_table *t;
    size_t tlen;
    int rc, cmp;

    if (!w || !table || (!key && klen) || (!val && vlen))
        return RK_EINVAL;
    if (w->failed)
        return w->failed;
    tlen = strnlen(table, RK_NAME_MAX + 1);
    if (tlen == 0 || tlen > RK_NAME_MAX || (uint64_t)klen + vlen + tlen + 16 > CKPT_MAX_ENTRY)
        return RK_EINVAL;
    t = w->info.n_tables ? &w->info.tables[w->info.n_tables - 1] : NULL;
    cmp = t ? strcmp(table, t->name) : 1;
    if (cmp < 0 || (cmp == 0 && ckpt_key_cmp(key, klen, w->prev_key, w->prev_klen) <= 0))
        return RK_EINVAL;
    if (klen > w->prev_key_size) {
        uint8_t *grown = realloc(w->prev_key, klen);
        if (!grown)
            return ENOMEM; /* nothing written yet: not sticky */
        w->prev_key = grown;
        w->prev_key_size = klen;
    }
    if (cmp > 0) {
        if (w->info.n_tables == w->tables_cap) {
            size_t cap = w->tables_cap ? w->tables_cap * 2 : 8;
            struct ckpt_table *grown = realloc(w->info.tables, cap * sizeof *grown);
            if (!grown)
                return ENOMEM;
            w->info.tables = grown;
            w->tables_cap = cap;
        }
        t = &w->info.tables[w->info.n_tables++];
        memset(t, 0, sizeof *t);
        memcpy(t->name, table, tlen);
    }
    if (msgpack_pack_array(&w->pk, 3) || msgpack_pack_str_with_body(&w->pk, table, tlen) ||
        msgpack_pack_bin_with_body(&w->pk, klen ? key : "", klen) ||
        msgpack_pack_bin_with_body(&w->pk, vlen ? val : "", vlen)) {
        rc = ENOMEM;
        goto fail;
    }
    if (klen)
        memcpy(w->prev_key, key, klen);
    w->prev_klen = klen;
    t->n_entries++;
    w->info.n_entries++;
    w->info.digest += ckpt_entry_digest(t->name, key, klen, val, vlen);
    if (w->frame.size >= CKPT_FRAME_TARGET) {
        rc = flush_frame(w);
        if (rc)
            goto fail;
    }
    return 0;
fail:
    w->failed = rc; /* the frame may hold part of an entry: no way back */
    return rc;
}

/* Packs the header map. */
static int pack_header(const struct ckpt_info *info, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    int bad = 0;

    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
#define KEY(k) (bad |= msgpack_pack_str_with_body(&pk, key_names[k], strlen(key_names[k])))
    bad |= msgpack_pack_map(&pk, info->has_replay ? N_KEYS : N_KEYS - 1);
    KEY(K_EPOCH);
    bad |= msgpack_pack_uint64(&pk, info->epoch);
    KEY(K_JOURNAL_SEQ);
    bad |= msgpack_pack_uint64(&pk, info->journal_seq);
    KEY(K_LSN);
    bad |= msgpack_pack_uint64(&pk, info->lsn);
    KEY(K_CREATED);
    bad |= msgpack_pack_uint64(&pk, info->created_ns);
    KEY(K_PRODUCERS);
    bad |= msgpack_pack_array(&pk, info->n_producers);
    for (uint32_t i = 0; i < info->n_producers; i++) {
        const struct ckpt_producer *p = &info->producers[i];
        bad |= msgpack_pack_array(&pk, 3);
        bad |= msgpack_pack_str_with_body(&pk, p->name, strnlen(p->name, RK_NAME_MAX));
        bad |= msgpack_pack_uint64(&pk, p->height);
        bad |= msgpack_pack_uint64(&pk, p->applied_lsn);
    }
    KEY(K_TABLES);
    bad |= msgpack_pack_array(&pk, info->n_tables);
    for (uint32_t i = 0; i < info->n_tables; i++) {
        bad |= msgpack_pack_array(&pk, 2);
        bad |= msgpack_pack_str_with_body(&pk, info->tables[i].name, strlen(info->tables[i].name));
        bad |= msgpack_pack_uint64(&pk, info->tables[i].n_entries);
    }
    KEY(K_N_ENTRIES);
    bad |= msgpack_pack_uint64(&pk, info->n_entries);
    KEY(K_RAW_SIZE);
    bad |= msgpack_pack_uint64(&pk, info->raw_size);
    KEY(K_DIGEST);
    bad |= msgpack_pack_uint64(&pk, info->digest);
    if (info->has_replay) {
        const struct ckpt_replay *rp = &info->replay;
        KEY(K_REPLAY);
        bad |= msgpack_pack_array(&pk, 7);
        bad |= msgpack_pack_uint64(&pk, rp->restart_seq);
        bad |= msgpack_pack_uint64(&pk, rp->n_groups);
        bad |= msgpack_pack_uint64(&pk, rp->n_records);
        bad |= msgpack_pack_uint64(&pk, rp->n_discarded);
        bad |= msgpack_pack_array(&pk, rp->n_producers);
        for (uint32_t i = 0; i < rp->n_producers; i++) {
            const struct ckpt_replay_producer *p = &rp->producers[i];
            bad |= msgpack_pack_array(&pk, 5);
            bad |= msgpack_pack_str_with_body(&pk, p->name, strnlen(p->name, RK_NAME_MAX));
            bad |= msgpack_pack_uint64(&pk, p->applied_lsn);
            bad |= msgpack_pack_uint64(&pk, p->height);
            bad |= msgpack_pack_uint64(&pk, p->n_groups);
            bad |= msgpack_pack_uint64(&pk, p->discard_lsn);
        }
        for (int m = 0; m < 2; m++) {
            const struct ckpt_map_entry *e = m ? rp->slots : rp->table_ids;
            uint32_t n = m ? rp->n_slots : rp->n_table_ids;
            bad |= msgpack_pack_array(&pk, n);
            for (uint32_t i = 0; i < n; i++) {
                bad |= msgpack_pack_array(&pk, 2);
                bad |= msgpack_pack_uint32(&pk, e[i].id);
                bad |= msgpack_pack_str_with_body(&pk, e[i].name, strnlen(e[i].name, RK_NAME_MAX));
            }
        }
    }
#undef KEY
    return bad ? ENOMEM : 0;
}

int ckpt_is_temp_name(const char *name)
{
    size_t len = strlen(name);

    if (name[0] != '.')
        return 0;
    if (strncmp(name, SPOOL_PREFIX, strlen(SPOOL_PREFIX)) == 0)
        return len > 4 && strcmp(name + len - 4, ".tmp") == 0;
    return strstr(name, CKPT_SUFFIX ".tmp-") != NULL;
}

/* Writes prefix, map, the spooled body and the trailer to fd. */
static int write_file(ckpt_writer *w, int fd, const msgpack_sbuffer *map, char *err, size_t err_size)
{
    uint8_t prefix[PREFIX_SIZE], trailer[TRAILER_SIZE];
    XXH64_state_t st;
    uint8_t *chunk = NULL;
    uint64_t done = 0, hash;
    int rc;

    memcpy(prefix + OFF_MAGIC, CKPT_MAGIC, 4);
    put_le16(prefix + OFF_MAJOR, CKPT_MAJOR);
    put_le16(prefix + OFF_MINOR, CKPT_MINOR);
    put_le32(prefix + OFF_HEADER_LEN, (uint32_t)map->size);
    put_le32(prefix + OFF_N_FRAMES, w->n_frames);
    put_le64(prefix + OFF_BODY_LEN, w->body_len);
    hash = header_hash(prefix, (const uint8_t *)map->data, map->size);
    for (int i = 0; i < 8; i++)
        prefix[OFF_HEADER_HASH + i] = (uint8_t)(hash >> (56 - 8 * i));
    XXH64_reset(&st, 0);
    XXH64_update(&st, prefix, sizeof prefix);
    XXH64_update(&st, map->data, map->size);
    rc = write_all(fd, prefix, sizeof prefix);
    if (rc == 0)
        rc = write_all(fd, map->data, map->size);
    if (rc) {
        seg_error(err, err_size, "cannot write the checkpoint header: %s", strerror(rc));
        goto out;
    }
    chunk = malloc(CKPT_FRAME_TARGET);
    if (!chunk) {
        rc = seg_fail(err, err_size, ENOMEM, "out of memory");
        goto out;
    }
    /* each round copies at least one byte or fails: bounded by body_len */
    while (done < w->body_len) {
        size_t want =
            w->body_len - done < CKPT_FRAME_TARGET ? (size_t)(w->body_len - done) : CKPT_FRAME_TARGET;
        ssize_t n = pread(w->spool_fd, chunk, want, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? errno : EIO;
            seg_error(err, err_size, "cannot read back the spooled body: %s", n < 0 ? strerror(rc) : "short");
            goto out;
        }
        XXH64_update(&st, chunk, (size_t)n);
        rc = write_all(fd, chunk, (size_t)n);
        if (rc) {
            seg_error(err, err_size, "cannot write the checkpoint body: %s", strerror(rc));
            goto out;
        }
        done += (uint64_t)n;
    }
    XXH64_canonicalFromHash((XXH64_canonical_t *)trailer, XXH64_digest(&st));
    rc = write_all(fd, trailer, sizeof trailer);
    if (rc)
        seg_error(err, err_size, "cannot write the checkpoint trailer: %s", strerror(rc));
out:
    free(chunk);
    return rc;
}

/* The writer's errors are errno values, or RK_EINVAL when zstd refused
 * to compress or the header outgrew CKPT_MAX_HEADER. */
static const char *writer_error_text(int rc)
{
    return rc > 0 ? strerror(rc) : "zstd refused the data, or the header exceeds its limit";
}

int ckpt_writer_finish(ckpt_writer *w, char *path_out, size_t path_size, char *err, size_t err_size)
{
    char tmp[4300], final[4300], verify_err[512];
    msgpack_sbuffer map;
    int fd = -1, rc, renamed = 0, created = 0;

    msgpack_sbuffer_init(&map);
    if (path_out && path_size)
        path_out[0] = '\0';
    if (!w)
        return seg_fail(err, err_size, RK_EINVAL, "no checkpoint writer");
    snprintf(final, sizeof final, "%s/%020" PRIu64 CKPT_SUFFIX, w->dir, w->info.journal_seq);
    snprintf(tmp, sizeof tmp, "%s/.%020" PRIu64 CKPT_SUFFIX ".tmp-%ld", w->dir, w->info.journal_seq,
             (long)getpid());
    if (w->failed) {
        rc = seg_fail(err, err_size, w->failed, "checkpoint %s: an earlier add failed: %s", final,
                      writer_error_text(w->failed));
        goto out;
    }
    rc = flush_frame(w);
    if (rc == 0)
        rc = pack_header(&w->info, &map);
    if (rc == 0 && map.size > CKPT_MAX_HEADER)
        rc = RK_EINVAL;
    if (rc) {
        seg_error(err, err_size, "checkpoint %s: cannot finish the body and header: %s", final,
                  writer_error_text(rc));
        goto out;
    }
    fd = sys_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = errno;
        seg_error(err, err_size, "cannot create %s: %s", tmp, strerror(rc));
        goto out;
    }
    created = 1;
    rc = write_file(w, fd, &map, err, err_size);
    if (rc)
        goto out;
    if (sys_fsync(fd) != 0) {
        rc = errno;
        seg_error(err, err_size, "fsync of %s failed: %s", tmp, strerror(rc));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = errno;
        seg_error(err, err_size, "close of %s failed: %s", tmp, strerror(rc));
        goto out;
    }
    fd = -1;
    if (sys_rename(tmp, final) != 0) {
        rc = errno;
        seg_error(err, err_size, "cannot rename %s to %s: %s", tmp, final, strerror(rc));
        goto out;
    }
    renamed = 1;
    rc = sys_fsync_dir(w->dir);
    if (rc) {
        seg_error(err, err_size, "fsync of folder %s failed: %s", w->dir, strerror(rc));
        goto out;
    }
    rc = ckpt_verify(final, NULL, NULL, NULL, verify_err, sizeof verify_err);
    if (rc) {
        seg_error(err, err_size, "checkpoint written but does not verify: %s", verify_err);
        goto out;
    }
    if (path_out && path_size)
        snprintf(path_out, path_size, "%s", final);
out:
    if (fd >= 0)
        close(fd);
    /* a failed checkpoint leaves no file behind, final or temporary */
    if (rc && renamed)
        sys_unlink(final);
    else if (rc && created)
        sys_unlink(tmp);
    msgpack_sbuffer_destroy(&map);
    ckpt_writer_abort(w);
    return rc;
}

void ckpt_writer_abort(ckpt_writer *w)
{
    if (!w)
        return;
    if (w->spool_fd >= 0)
        close(w->spool_fd);
    ZSTD_freeCCtx(w->cctx);
    msgpack_sbuffer_destroy(&w->frame);
    ckpt_info_free(&w->info);
    free(w->comp);
    free(w->prev_key);
    free(w);
}
