/* state.c -- the engine's restore API: rk_state_*.
 *
 * A state handle holds one view of the state tables: each table's entries
 * sorted by key, in a mapped file, an array, or both, searched by
 * bisection.  Where it comes from:
 *   - a node runs on the data directory: the node is asked over its control
 *     endpoint (node_request, client.c: this file is in libringkeep, the
 *     node process is not); it applies up to the first group boundary that
 *     holds everything written before the request, writes a state snapshot
 *     file (persist/snapshot.h) of the state there, and answers with its
 *     path: a whole snapshot, or (a primary's, mostly) an overlay of a
 *     whole one it keeps, its base, named in the overlay, which the node
 *     links for this request.  The file (and its base) is mapped,
 *     unlinked at once (the copy is private to the engine, and nothing is
 *     left behind if the engine dies), verified whole (magic, version,
 *     both checksums, every length and the key order; that the base is
 *     the one the overlay names), and its entries are used in place: a
 *     whole snapshot's (or a base's) tables are bisected through a sparse
 *     index of their entries built as the verifier walks them; an
 *     overlay's tables are arrays of its entries, looked up first (a
 *     tombstone hides the base's entry) and merged with the base's as a
 *     scan goes.  A base that is missing or fails is refused, and the
 *     node asked once more, for a whole snapshot;
 *   - no node runs: this process takes the data directory's lock itself,
 *     recovers the environment, applies the journal, writes the snapshot
 *     file the same way and lets the lock go; it refuses (RK_EUNDRAINED)
 *     while the ring still holds records the journal does not: that state
 *     would be older than what the engines wrote, and an engine resuming
 *     from it would write those groups again (issue 9.4).  It does not
 *     drain them itself: the ring's consumer (take-over, dead producers'
 *     ABORTs, the replicated cursor, which needs the node's replication
 *     settings) is the node's.
 *   - a checkpoint file: verified whole (nothing is used from a file that
 *     fails), its entries copied into blocks of memory (they are
 *     compressed in the file); they are sorted by table and key already.
 *
 * Threads: a handle belongs to one thread at a time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node/client.h"
#include "persist/apply.h"
#include "persist/bytes.h"
#include "persist/checkpoint.h"
#include "persist/snapshot.h"
#include "persist/store.h"
#include "ringkeep.h"

#define SNAPSHOT_WAIT_MS 600000 /* a node applying a long backlog first */

/* An entry: its bytes are in a mapped snapshot file (an overlay's; a
 * tombstone's val NULL, vlen SNAP_TOMBSTONE), or copied into blocks (a
 * checkpoint file's). */
struct mem_entry {
    const uint8_t *key, *val;
    uint32_t klen, vlen;
};

/* A table's entries read in place in a mapped snapshot file: a whole
 * snapshot's, or an overlay's base's (FILE_SLOT_STRIDE below). */
struct file_table {
    const uint8_t *at, *end;   /* the table's bytes, as snap_verify walked them */
    uint64_t n;                /* its entries */
    struct snap_slot *slots;   /* entry j * FILE_SLOT_STRIDE: offset from at, key_prefix */
    size_t n_slots, cap_slots; /* n_slots <= cap_slots, slots' room (from the table's count) */
};

/* A table of the state: its array of entries (a checkpoint file's, or an
 * overlay's, which go over the file's), its file's entries, or both. */
struct mem_table {
    char name[RK_NAME_MAX + 1];
    struct mem_entry *e; /* sorted by key (bytewise, a prefix first) */
    size_t n, cap;
    struct file_table f; /* none: n 0 */
};

struct mem_block {
    struct mem_block *next;
    size_t used, size;
    uint8_t bytes[];
};

struct rk_state {
    struct ckpt_info info;    /* lsn and the producers' heights */
    struct mem_table *mt;     /* tables by name */
    size_t n_mt, cap_mt;      /* n_mt <= cap_mt, mt's room (sized from a peeked header: checked) */
    struct mem_block *blocks; /* a checkpoint file's entries */
    uint8_t *map;             /* a snapshot file's mapping (an overlay's, or a whole one's) */
    size_t map_len;
    uint8_t *base_map; /* an overlay's base's */
    size_t base_map_len;
};

/* No node on dir: make the snapshot in this process, unless the ring holds
 * records the journal does not (RK_EUNDRAINED: checked under the data
 * directory's lock, so no node can start and drain meanwhile). */
static int snapshot_here(const char *dir, char *path, size_t path_size)
{
    store *st = NULL;
    applier *a = NULL;
    ckpt_job *job = NULL;
    char err[512] = "";
    uint64_t n_entries = 0;
    int rc = store_open(dir, 0, 64, &st, err, sizeof err);

    if (!rc)
        rc = store_ring_undrained(st, err, sizeof err);
    if (!rc)
        rc = applier_open(st, &a, err, sizeof err);
    if (!rc)
        rc = applier_run(a, UINT64_MAX, 20000, err, sizeof err);
    if (!rc)
        rc = applier_checkpoint_begin(a, 0, &job);
    if (!rc) {
        snprintf(path, path_size, "%s/snapshots", dir);
        if (sys_mkdir(path, 0700) != 0 && errno != EEXIST)
            rc = errno;
    }
    if (!rc) {
        snprintf(path, path_size, "%s/snapshots/restore-%d" SNAP_SUFFIX, dir, (int)getpid());
        rc = ckpt_job_snapshot(job, path, &n_entries, err, sizeof err);
    }
    ckpt_job_free(job);
    applier_close(a);
    store_close(st);
    return rc;
}

/* ------------------------------------------------------------ checkpoint files */

#define MEM_BLOCK_SIZE (16u << 20)

/* Copies n bytes into s's blocks; NULL when out of memory. */
static const uint8_t *mem_copy(rk_state *s, const void *bytes, size_t n)
{
    struct mem_block *b = s->blocks;
    uint8_t *at;

    if (!b || b->size - b->used < n) {
        size_t size = n > MEM_BLOCK_SIZE ? n : MEM_BLOCK_SIZE;
        b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
        b->next = s->blocks;
        b->used = 0;
        b->size = size;
        s->blocks = b;
    }
    at = b->bytes + b->used;
    if (n)
        memcpy(at, bytes, n);
    b->used += n;
    return at;
}

/* ckpt_verify's callback: only called once the whole file has passed, in
 * file order (tables by name, keys ascending). */
static int mem_entry_add(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                         uint32_t vlen)
{
    rk_state *s = arg;
    struct mem_table *t = s->n_mt ? &s->mt[s->n_mt - 1] : NULL;
    struct mem_entry *e;

    if (!t || strcmp(t->name, table) != 0) {
        t = realloc(s->mt, (s->n_mt + 1) * sizeof *t);
        if (!t)
            return ENOMEM;
        s->mt = t;
        t = &s->mt[s->n_mt++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", table);
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        e = realloc(t->e, cap * sizeof *e);
        if (!e)
            return ENOMEM;
        t->e = e;
        t->cap = cap;
    }
    e = &t->e[t->n];
    e->key = mem_copy(s, key, klen);
    e->val = mem_copy(s, val, vlen);
    if (!e->key || !e->val)
        return ENOMEM;
    e->klen = klen;
    e->vlen = vlen;
    t->n++;
    return 0;
}

/* Verifies checkpoint `path` whole, then holds its entries in s. */
static int open_checkpoint(const char *path, rk_state *s)
{
    char err[512];

    /* a file that fails says RK_ECORRUPT / RK_EVERSION; the reason is
     * the verifier's, which `ringkeep checkpoint verify` prints */
    return ckpt_verify(path, &s->info, mem_entry_add, s, err, sizeof err);
}

/* ------------------------------------------------------------ snapshot files */

/* A table's entries read in place from a snapshot file (a whole one, or an
 * overlay's base): slots[j] is entry j * FILE_SLOT_STRIDE's offset from at
 * and its key_prefix, so a look-up bisects the slots and walks at most a
 * stride of entries; no array of every entry is built (a 50 MB base has
 * 0.55 M of them: 13 MB to allocate and fill per open, issue 9.5).  [at,
 * end) is the table's extent as snap_verify walked it.  The bytes are
 * mapped private from a file other engines hold links to, and can change
 * after the check: every length read in them is bounded by end again
 * (file_load). */
#define FILE_SLOT_STRIDE 16

static int snap_table_add(void *arg, uint32_t i, const char *name, uint64_t n_entries)
{
    rk_state *s = arg;
    struct mem_table *t;

    if (i >= s->cap_mt)
        return RK_ECORRUPT; /* more tables than the peeked header said: the file changed */
    t = &s->mt[i];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->f.slots = malloc((n_entries / FILE_SLOT_STRIDE + 1) * sizeof *t->f.slots);
    if (!t->f.slots)
        return ENOMEM;
    t->f.cap_slots = n_entries / FILE_SLOT_STRIDE + 1;
    s->n_mt = i + 1;
    return 0;
}

/* An entry of a whole snapshot (snap_verify refuses a tombstone there):
 * its bytes begin with the two lengths before key (snapshot.h). */
static int snap_entry_add(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    rk_state *s = arg;
    struct file_table *f = &s->mt[s->n_mt - 1].f;
    const uint8_t *entry = (const uint8_t *)key - 2 * sizeof(uint32_t);

    if (!f->n)
        f->at = entry;
    if (f->n % FILE_SLOT_STRIDE == 0) {
        if (f->n_slots == f->cap_slots)
            return RK_ECORRUPT; /* not reached: snap_verify counts */
        f->slots[f->n_slots++] =
            (struct snap_slot){.off = (uint64_t)(entry - f->at), .prefix = key_prefix(key, klen)};
    }
    f->n++;
    /* the table's end once its last entry is walked (snap_verify checks
     * that is the end in its directory); a tombstone (val NULL) is refused
     * after the walk */
    f->end = val ? (const uint8_t *)val + vlen : (const uint8_t *)key + klen;
    return 0;
}

/* Maps the file at path (read only, private) and unlinks it: the copy is
 * this engine's, and nothing is left behind if it dies.  0 or errno. */
static int map_file(const char *path, uint8_t **map, size_t *len)
{
    struct stat st;
    int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);

    *map = NULL;
    *len = 0;
    if (fd < 0)
        return errno;
    if (fstat(fd, &st) != 0)
        rc = errno;
    if (!rc && st.st_size > 0) {
        /* MAP_POPULATE: the pages are in the page cache (the node just
         * wrote them); one call maps them all instead of a fault each */
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = errno;
        } else {
            *map = m;
            *len = (size_t)st.st_size;
        }
    }
    close(fd);
    unlink(path);
    return rc;
}

/* The header of the file in map[0..len), or zeros when it is too short (the
 * verifier says so); read before the file is verified, to size arrays or
 * find a base: every use is checked again by snap_verify. */
static struct snap_header peek_header(const uint8_t *map, size_t len)
{
    struct snap_header h;

    memset(&h, 0, sizeof h);
    if (len >= SNAP_HEADER_SIZE)
        memcpy(&h, map, sizeof h);
    return h;
}

/* What was applied and the producers' heights, from verified file info. */
static int state_info(rk_state *s, const struct snap_info *info)
{
    s->info.lsn = info->h.am.applied_lsn;
    s->info.journal_seq = info->h.am.applied_seq;
    s->info.digest = info->h.am.digest;
    s->info.producers = calloc(info->h.n_producers ? info->h.n_producers : 1, sizeof *s->info.producers);
    if (!s->info.producers)
        return ENOMEM;
    for (uint64_t i = 0; i < info->h.n_producers; i++) {
        struct snap_producer p;
        snap_producer_at(info, i, &p);
        if (p.m.n_groups == 0)
            continue; /* no group applied: no height */
        struct ckpt_producer *cp = &s->info.producers[s->info.n_producers++];
        memcpy(cp->name, p.name, sizeof cp->name);
        cp->height = p.m.height;
        cp->applied_lsn = p.m.applied_lsn;
    }
    return 0;
}

/* An overlay's tables, as its walk gives them: arrays of entries pointing
 * into its mapping (it is small: what changed since its base), a
 * tombstone's val NULL and vlen SNAP_TOMBSTONE. */
struct overlay {
    struct mem_table *t;
    size_t n_t, cap_t; /* n_t <= cap_t, t's room */
};

/* snap_verify's callbacks for an overlay: a table's array is sized from
 * its count (the file's checksums have passed; the count is bounded by
 * its bytes). */
static int overlay_table(void *arg, uint32_t i, const char *name, uint64_t n_entries)
{
    struct overlay *o = arg;
    struct mem_table *t;

    if (i >= o->cap_t)
        return RK_ECORRUPT; /* more tables than the peeked header said: the file changed */
    t = &o->t[i];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->e = malloc((n_entries ? n_entries : 1) * sizeof *t->e);
    if (!t->e)
        return ENOMEM;
    t->cap = n_entries;
    o->n_t = i + 1;
    return 0;
}

static int overlay_entry(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct overlay *o = arg;
    struct mem_table *t = &o->t[o->n_t - 1];

    if (t->n == t->cap)
        return RK_ECORRUPT; /* not reached: snap_verify counts */
    t->e[t->n++] = (struct mem_entry){.key = key, .val = val, .klen = klen, .vlen = vlen};
    return 0;
}

static struct mem_table *mem_find_table(const rk_state *s, const char *table)
{
    for (size_t i = 0; table && i < s->n_mt; i++)
        if (strcmp(s->mt[i].name, table) == 0)
            return &s->mt[i];
    return NULL;
}

/* Puts the overlay's tables over its base's in s (their arrays move to
 * s): each goes with the base's table of its name, or is added when the
 * base has none.  s->mt has room for every table of both. */
static void overlay_put(rk_state *s, struct overlay *o)
{
    for (size_t i = 0; i < o->n_t; i++) {
        struct mem_table *t = mem_find_table(s, o->t[i].name);
        if (!t) {
            t = &s->mt[s->n_mt++];
            memcpy(t->name, o->t[i].name, sizeof t->name);
        }
        t->e = o->t[i].e;
        t->n = o->t[i].n;
        t->cap = o->t[i].cap;
        o->t[i].e = NULL;
    }
}

/* The overlay verified in s->map (its tables in o): its base (named in
 * its header, in the overlay's directory) mapped, unlinked, checked to be
 * the one the overlay names and verified whole, its tables read in place
 * (snap_table_add), then the overlay's put over them.  *base_failed: the
 * base is missing or refused (an engine may ask for a whole snapshot
 * then). */
static int open_overlay(const char *path, rk_state *s, const struct snap_info *oinfo, struct overlay *o,
                        int *base_failed, char *err, size_t err_size)
{
    const struct snap_base *ref = &oinfo->h.base;
    char base_path[PATH_MAX + SNAP_BASE_NAME_MAX + 2];
    const char *slash = strrchr(path, '/');
    struct snap_info info;
    struct snap_header bh;
    int rc;

    if (slash)
        snprintf(base_path, sizeof base_path, "%.*s/%s", (int)(slash - path), path, ref->name);
    else
        snprintf(base_path, sizeof base_path, "%s", ref->name);
    *base_failed = 1;
    rc = map_file(base_path, &s->base_map, &s->base_map_len);
    if (rc) {
        snprintf(err, err_size, "state snapshot overlay: its base %s: %s", ref->name, strerror(rc));
        return rc;
    }
    bh = peek_header(s->base_map, s->base_map_len);
    if (bh.base.file_size || bh.file_size != ref->file_size || bh.body_hash != ref->body_hash ||
        bh.am.applied_seq != ref->applied_seq) {
        snprintf(err, err_size, "state snapshot overlay: its base %s is not the snapshot it names",
                 ref->name);
        return RK_ECORRUPT;
    }
    if (bh.n_tables > s->base_map_len / sizeof(struct snap_table)) {
        /* says why; a file that passes has changed since the peek */
        int vrc = snap_verify(s->base_map, s->base_map_len, &info, NULL, NULL, NULL, err, err_size);
        return vrc ? vrc : RK_ECORRUPT;
    }
    s->mt = calloc(bh.n_tables + o->n_t + 1, sizeof *s->mt);
    if (!s->mt)
        return ENOMEM;
    /* the base's walk may add its peeked count of tables (the file is
     * mapped private but its pages are the page cache's until written,
     * and other engines hold links to the same base, so the walk may find
     * more); the overlay's are added after it */
    s->cap_mt = bh.n_tables;
    rc = snap_verify(s->base_map, s->base_map_len, &info, snap_table_add, snap_entry_add, s, err, err_size);
    if (!rc && info.h.base.file_size) /* peeked as whole, verified as an overlay: a header that changed */
        rc = RK_ECORRUPT;
    if (rc)
        return rc;
    *base_failed = 0;
    s->cap_mt = bh.n_tables + o->n_t + 1;
    overlay_put(s, o);
    return state_info(s, oinfo);
}

/* The link to the base of the overlay whose peeked header is h, at path
 * (in base_path), or "" when h is not an overlay of this format with a
 * valid base name. */
static void base_link_path(const char *path, const struct snap_header *h, char *base_path, size_t size)
{
    const char *slash = strrchr(path, '/');

    base_path[0] = '\0';
    if (h->major != SNAP_MAJOR || !h->base.file_size || !snap_base_name_ok(h->base.name))
        return;
    if (slash)
        snprintf(base_path, size, "%.*s/%s", (int)(slash - path), path, h->base.name);
    else
        snprintf(base_path, size, "%s", h->base.name);
}

/* Maps the state snapshot file at path, unlinks it, and verifies it whole
 * while holding its entries in s (err: why it was refused); an overlay
 * with its base (open_overlay: *base_failed when that is what failed).
 * An overlay's base link, named in its peeked header, is unlinked
 * whatever the outcome (open_overlay maps and unlinks it when it gets
 * that far): the node made it for this request alone, and a refused
 * overlay left it (the base's whole size) until the node's next start. */
static int open_snapshot(const char *path, rk_state *s, int *base_failed, char *err, size_t err_size)
{
    char base_path[PATH_MAX + SNAP_BASE_NAME_MAX + 2] = "";
    struct snap_info info;
    struct snap_header h;
    struct overlay o = {0};
    int rc = map_file(path, &s->map, &s->map_len);

    *base_failed = 0;
    if (rc)
        return rc;
    h = peek_header(s->map, s->map_len);
    base_link_path(path, &h, base_path, sizeof base_path);
    /* the tables array first, its size from the header (verified below
     * before any entry is used); too short or too many tables: snap_verify
     * says which */
    if (h.n_tables > s->map_len / sizeof(struct snap_table)) {
        /* says why; a file that passes has changed since the peek */
        rc = snap_verify(s->map, s->map_len, &info, NULL, NULL, NULL, err, err_size);
        rc = rc ? rc : RK_ECORRUPT;
        goto out;
    }
    if (h.major == SNAP_MAJOR && h.base.file_size) {
        o.t = calloc(h.n_tables ? h.n_tables : 1, sizeof *o.t);
        o.cap_t = o.t ? h.n_tables : 0;
        rc = o.t ? snap_verify(s->map, s->map_len, &info, overlay_table, overlay_entry, &o, err, err_size)
                 : ENOMEM;
        if (!rc && !info.h.base.file_size) /* not reached: the header's hash covers it */
            rc = RK_ECORRUPT;
        if (!rc)
            rc = open_overlay(path, s, &info, &o, base_failed, err, err_size);
        for (size_t i = 0; o.t && i < h.n_tables; i++)
            free(o.t[i].e);
        free(o.t);
        goto out;
    }
    s->mt = calloc(h.n_tables ? h.n_tables : 1, sizeof *s->mt);
    if (!s->mt) {
        rc = ENOMEM;
        goto out;
    }
    s->cap_mt = h.n_tables;
    rc = snap_verify(s->map, s->map_len, &info, snap_table_add, snap_entry_add, s, err, err_size);
    if (!rc && info.h.base.file_size) /* peeked as whole, verified as an overlay: a header that changed */
        rc = RK_ECORRUPT;
    if (!rc)
        rc = state_info(s, &info);
out:
    if (base_path[0])
        unlink(base_path); /* ENOENT when open_overlay did */
    return rc;
}

static void mem_free(rk_state *s)
{
    for (size_t i = 0; i < s->n_mt; i++) {
        free(s->mt[i].e);
        free(s->mt[i].f.slots);
    }
    free(s->mt);
    while (s->blocks) {
        struct mem_block *next = s->blocks->next;
        free(s->blocks);
        s->blocks = next;
    }
    if (s->map)
        munmap(s->map, s->map_len);
    if (s->base_map)
        munmap(s->base_map, s->base_map_len);
    ckpt_info_free(&s->info);
}

/* The first entry of t's array whose key is >= key. */
static size_t mem_lower_bound(const struct mem_table *t, const void *key, uint32_t klen)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ckpt_key_cmp(t->e[mid].key, t->e[mid].klen, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A walk over a file table's entries: the next at `at`, up to end; e is
 * the one file_load read there. */
struct file_cursor {
    const uint8_t *at, *end;
    struct mem_entry e;
};

/* Reads the entry at c->at into c->e: 1, 0 at the table's end, or
 * RK_ECORRUPT when its lengths run past the end -- the file was verified,
 * but its bytes can change after that (struct file_table). */
static int file_load(struct file_cursor *c)
{
    uint32_t lens[2];

    if (c->at >= c->end)
        return 0;
    if ((size_t)(c->end - c->at) < sizeof lens)
        return RK_ECORRUPT;
    memcpy(lens, c->at, sizeof lens);
    if ((uint64_t)lens[0] + lens[1] > (uint64_t)(c->end - c->at) - sizeof lens)
        return RK_ECORRUPT;
    c->e.key = c->at + sizeof lens;
    c->e.klen = lens[0];
    c->e.val = c->e.key + lens[0];
    c->e.vlen = lens[1];
    return 1;
}

/* Past the entry file_load read (within end: it bounded it). */
static void file_next(struct file_cursor *c)
{
    c->at = c->e.val + c->e.vlen;
}

/* Positions c at f's first entry whose key is >= key: the slots bisected
 * (by their prefixes, the key's bytes read only where they tie), then at
 * most a stride of entries walked.  As file_load: 1 (c->e that entry), 0
 * (past the last), RK_ECORRUPT. */
static int file_lower_bound(const struct file_table *f, const void *key, uint32_t klen, struct file_cursor *c)
{
    uint64_t prefix = key_prefix(key, klen);
    size_t lo = 0, hi = f->n_slots;
    int rc;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct snap_slot *slot = &f->slots[mid];
        int cmp = slot->prefix < prefix ? -1 : slot->prefix > prefix;
        if (cmp == 0) {
            *c = (struct file_cursor){.at = f->at + slot->off, .end = f->end};
            if ((rc = file_load(c)) <= 0)
                return RK_ECORRUPT; /* 0: not reached, a slot is an entry before end */
            cmp = ckpt_key_cmp(c->e.key, c->e.klen, key, klen);
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* slot lo is the first at or past key: the entry is after slot lo - 1 */
    *c = (struct file_cursor){.at = lo ? f->at + f->slots[lo - 1].off : f->at, .end = f->end};
    while ((rc = file_load(c)) > 0) {
        uint64_t p = key_prefix(c->e.key, c->e.klen);
        if (p > prefix || (p == prefix && ckpt_key_cmp(c->e.key, c->e.klen, key, klen) >= 0))
            break;
        file_next(c);
    }
    return rc;
}

/* The file a node's "snapshot" reply names ("ok PATH"); the reply is
 * freed.  EIO: the node could not write it (it logged why). */
static int reply_path(char *reply, char *path, size_t path_size)
{
    int ok = strncmp(reply, "ok ", 3) == 0;

    if (ok)
        snprintf(path, path_size, "%s", reply + 3);
    free(reply);
    return ok ? 0 : EIO;
}

int rk_state_open(const char *source, rk_state **out)
{
    rk_state *s = NULL;
    char path[PATH_MAX + 64], err[512] = "", *reply = NULL;
    struct stat st;
    int rc, from_node, base_failed = 0;

    if (!source || !out)
        return RK_EINVAL;
    *out = NULL;
    if (stat(source, &st) != 0)
        return errno;
    if (S_ISREG(st.st_mode)) {
        /* a checkpoint file: verified whole, then held in memory */
        s = calloc(1, sizeof *s);
        rc = s ? open_checkpoint(source, s) : ENOMEM;
        if (rc) {
            rk_state_close(s);
            return rc;
        }
        *out = s;
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return RK_EINVAL;
    /* a node that dies or restarts while asked is asked again (or, gone,
     * replaced by this process); bounded.  No node: the snapshot is made
     * here; RK_EBUSY then is a node that started meanwhile (asked next),
     * or a directory no process may open (an unfinished restore's
     * BUILDING marker: said after a few tries -- asked again without a
     * bound, this recursed until the stack overflowed) */
    for (int attempt = 0; attempt < 4; attempt++) {
        for (int tries = 0;
             (rc = node_request(source, "snapshot", SNAPSHOT_WAIT_MS, &reply)) == EAGAIN && tries < 600;
             tries++)
            usleep(100000);
        if (rc != ENOENT)
            break;
        rc = snapshot_here(source, path, sizeof path);
        if (rc != RK_EBUSY)
            break;
    }
    from_node = rc == 0 && reply;
    if (from_node)
        rc = reply_path(reply, path, sizeof path);
    if (rc)
        return rc;
    s = calloc(1, sizeof *s);
    if (!s)
        return ENOMEM;
    /* a file this libringkeep cannot read says RK_EVERSION (node and
     * library of different ringkeep versions) or RK_ECORRUPT; err has
     * the reason */
    rc = open_snapshot(path, s, &base_failed, err, sizeof err);
    if (rc && base_failed && from_node) {
        /* the node's base (an overlay's) is gone or fails its checks --
         * an engine's stray write to its link, say: refused, and the node
         * asked once for a whole snapshot instead, which drops that base */
        int again = EAGAIN;
        rk_state_close(s);
        s = calloc(1, sizeof *s);
        if (!s)
            return ENOMEM;
        for (int tries = 0; again == EAGAIN && tries < 600; tries++) {
            reply = NULL;
            again = node_request(source, "snapshot whole", SNAPSHOT_WAIT_MS, &reply);
            if (again == EAGAIN)
                usleep(100000);
        }
        if (again == 0)
            again = reply_path(reply, path, sizeof path);
        if (again == 0)
            rc = open_snapshot(path, s, &base_failed, err, sizeof err);
    }
    if (rc) {
        rk_state_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void rk_state_close(rk_state *s)
{
    if (!s)
        return;
    mem_free(s);
    free(s);
}

uint64_t rk_state_lsn(const rk_state *s)
{
    return s ? s->info.lsn : 0;
}

int rk_state_height(const rk_state *s, const char *producer, uint64_t *height)
{
    if (!s || !producer || !height || strlen(producer) > RK_NAME_MAX)
        return RK_EINVAL;
    for (uint32_t i = 0; i < s->info.n_producers; i++)
        if (strcmp(s->info.producers[i].name, producer) == 0) {
            *height = s->info.producers[i].height;
            return 0;
        }
    return RK_ENOTFOUND;
}

int rk_state_get(rk_state *s, const char *table, const void *key, uint32_t klen, void **val, uint32_t *vlen)
{
    const struct mem_table *t;
    struct file_cursor c;
    const struct mem_entry *e;
    size_t i;

    if (!s || !val || !vlen || (klen && !key))
        return RK_EINVAL;
    *val = NULL;
    *vlen = 0;
    if (!(t = mem_find_table(s, table)))
        return RK_ENOTFOUND;
    /* the array first (an overlay's: its entry replaces or deletes the
     * base's), then the file's */
    i = mem_lower_bound(t, key, klen);
    if (i < t->n && ckpt_key_cmp(t->e[i].key, t->e[i].klen, key, klen) == 0) {
        e = &t->e[i];
        if (e->vlen == SNAP_TOMBSTONE)
            return RK_ENOTFOUND;
    } else {
        int rc = file_lower_bound(&t->f, key, klen, &c);
        if (rc < 0)
            return rc;
        if (rc == 0 || ckpt_key_cmp(c.e.key, c.e.klen, key, klen) != 0)
            return RK_ENOTFOUND;
        e = &c.e;
    }
    if (e->vlen) { /* the caller's copy (NULL when empty) */
        *val = malloc(e->vlen);
        if (!*val)
            return ENOMEM;
        memcpy(*val, e->val, e->vlen);
    }
    *vlen = e->vlen;
    return 0;
}

int rk_state_scan(rk_state *s, const char *table, const void *prefix, uint32_t plen, rk_scan_fn fn, void *arg)
{
    const struct mem_table *t;
    struct file_cursor c;
    size_t i;
    int in_file;

    if (!s || !fn || (plen && !prefix))
        return RK_EINVAL;
    if (!(t = mem_find_table(s, table)))
        return 0;
    /* the array's entries and the file's merged by key, from the first
     * at or past prefix: on a key both have, the array's (an overlay's
     * over its base) is the one, and a tombstone there hides the file's */
    i = mem_lower_bound(t, prefix, plen);
    in_file = file_lower_bound(&t->f, prefix, plen, &c);
    for (;;) {
        struct mem_entry e;
        int cmp, stop;
        if (in_file < 0)
            return in_file; /* RK_ECORRUPT */
        if (i == t->n && !in_file)
            break;
        cmp = i == t->n ? 1 : !in_file ? -1 : ckpt_key_cmp(t->e[i].key, t->e[i].klen, c.e.key, c.e.klen);
        e = cmp <= 0 ? t->e[i] : c.e;
        if (plen && (e.klen < plen || memcmp(e.key, prefix, plen) != 0))
            break;
        if (cmp <= 0)
            i++;
        if (cmp >= 0) {
            file_next(&c);
            in_file = file_load(&c);
        }
        if (e.vlen == SNAP_TOMBSTONE && cmp <= 0)
            continue;
        stop = fn(arg, e.key, e.klen, e.val, e.vlen);
        if (stop)
            return stop;
    }
    return 0;
}
