/* test_checkpoint.c -- checkpoint files (persist/checkpoint.c): round trips
 * byte for byte, the state digest, the writer's order rules, every kind of
 * corruption caught before an entry is handed out, versions, temp files,
 * file mode, fsync failure, listing order, and the committed golden file.
 *
 * Design: corruptions that a checksum catches are made by flipping,
 * truncating and zeroing real files; corruptions that only the structure
 * checks can catch are crafted and sealed again (header XXH64 and trailer
 * recomputed), so that the check under test is the one that must fire.
 * Under ASan the allocator refuses any block over 256 MiB, so a header
 * that tricked the reader into allocating by its claims would crash.
 *
 * Threads: one per test; fault injection runs in a forked child.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <msgpack.h>
#include <xxhash.h>
#include <zstd.h>

#include "persist/checkpoint.h"
#include "golden/golden_content.h"
#include "persist/store.h"

#include "asan_limits.h" /* any allocation above 256 MiB fails the test */

/* ------------------------------------------------------------ helpers */

static char *make_dir(void)
{
    char *dir = strdup("/tmp/rk-ckpt-test-XXXXXX");

    ck_assert_ptr_nonnull(dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    return dir;
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4200];

    if (d) {
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void set_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void set_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void set_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* Recomputes the header XXH64 (offset 24) and the trailer of a file
 * buf[0..len) whose header_len (offset 8) is right. */
static void reseal(uint8_t *buf, size_t len)
{
    uint32_t header_len = le32(buf + 8);
    uint8_t *tmp = malloc(24 + (size_t)header_len);

    ck_assert_ptr_nonnull(tmp);
    memcpy(tmp, buf, 24);
    memcpy(tmp + 24, buf + 32, header_len);
    set_be64(buf + 24, XXH64(tmp, 24 + (size_t)header_len, 0));
    set_be64(buf + len - 8, XXH64(buf, len - 8, 0));
    free(tmp);
}

/* A file from parts: the fixed prefix (major, minor), map[0..map_len),
 * body[0..body_len) with n_frames, sealed.  Malloc'd, *len its size. */
static uint8_t *assemble(unsigned major, unsigned minor, const void *map, size_t map_len, const void *body,
                         size_t body_len, uint32_t n_frames, size_t *len)
{
    uint8_t *buf;

    *len = 32 + map_len + body_len + 8;
    buf = calloc(1, *len);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, "RKCP", 4);
    buf[4] = (uint8_t)major;
    buf[6] = (uint8_t)minor;
    set_le32(buf + 8, (uint32_t)map_len);
    set_le32(buf + 12, n_frames);
    set_le64(buf + 16, body_len);
    memcpy(buf + 32, map, map_len);
    if (body_len)
        memcpy(buf + 32 + map_len, body, body_len);
    reseal(buf, *len);
    return buf;
}

/* Appends one frame (raw compressed with zstd) to a body buffer. */
static void add_frame(msgpack_sbuffer *body, const void *raw, size_t raw_len)
{
    size_t bound = ZSTD_compressBound(raw_len), n;
    uint8_t *comp = malloc(bound + 8);

    ck_assert_ptr_nonnull(comp);
    n = ZSTD_compress(comp + 8, bound, raw, raw_len, 1);
    ck_assert(!ZSTD_isError(n));
    set_le32(comp, (uint32_t)raw_len);
    set_le32(comp + 4, (uint32_t)n);
    msgpack_sbuffer_write(body, (const char *)comp, n + 8);
    free(comp);
}

/* The header map for info, with extra_pairs more pairs raw in extra. */
static void pack_map(msgpack_sbuffer *sb, const struct ckpt_info *info, uint32_t extra_pairs,
                     const void *extra, size_t extra_len)
{
    msgpack_packer pk;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9 + extra_pairs);
#define KEY(s) msgpack_pack_str_with_body(&pk, s, strlen(s))
    KEY("epoch");
    msgpack_pack_uint64(&pk, info->epoch);
    KEY("journal_seq");
    msgpack_pack_uint64(&pk, info->journal_seq);
    KEY("lsn");
    msgpack_pack_uint64(&pk, info->lsn);
    KEY("created_ns");
    msgpack_pack_uint64(&pk, info->created_ns);
    KEY("producers");
    msgpack_pack_array(&pk, info->n_producers);
    for (uint32_t i = 0; i < info->n_producers; i++) {
        msgpack_pack_array(&pk, 3);
        KEY(info->producers[i].name);
        msgpack_pack_uint64(&pk, info->producers[i].height);
        msgpack_pack_uint64(&pk, info->producers[i].applied_lsn);
    }
    KEY("tables");
    msgpack_pack_array(&pk, info->n_tables);
    for (uint32_t i = 0; i < info->n_tables; i++) {
        msgpack_pack_array(&pk, 2);
        KEY(info->tables[i].name);
        msgpack_pack_uint64(&pk, info->tables[i].n_entries);
    }
    KEY("n_entries");
    msgpack_pack_uint64(&pk, info->n_entries);
    KEY("raw_size");
    msgpack_pack_uint64(&pk, info->raw_size);
    KEY("digest");
    msgpack_pack_uint64(&pk, info->digest);
#undef KEY
    if (extra_len)
        msgpack_sbuffer_write(sb, extra, extra_len);
}

/* buf[0..len) (a valid file) with its map replaced by map[0..map_len) and
 * minor set: sealed, malloc'd. */
static uint8_t *replace_map(const uint8_t *buf, size_t len, unsigned minor, const void *map, size_t map_len,
                            size_t *out_len)
{
    uint32_t header_len = le32(buf + 8);
    size_t body_len = len - 32 - header_len - 8;

    return assemble(1, minor, map, map_len, buf + 32 + header_len, body_len, le32(buf + 12), out_len);
}

/* Collected entries. */
struct entry {
    char table[RK_NAME_MAX + 1];
    uint8_t *key, *val;
    uint32_t klen, vlen;
};

struct entries {
    struct entry *v;
    size_t n, cap;
};

static int collect(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                   uint32_t vlen)
{
    struct entries *es = arg;
    struct entry *e;

    if (es->n == es->cap) {
        es->cap = es->cap ? es->cap * 2 : 64;
        es->v = realloc(es->v, es->cap * sizeof *es->v);
        ck_assert_ptr_nonnull(es->v);
    }
    e = &es->v[es->n++];
    snprintf(e->table, sizeof e->table, "%s", table);
    e->key = malloc(klen + 1);
    e->val = malloc(vlen + 1);
    ck_assert(e->key && e->val);
    memcpy(e->key, klen ? key : "", klen);
    memcpy(e->val, vlen ? val : "", vlen);
    e->klen = klen;
    e->vlen = vlen;
    return 0;
}

static void entries_free(struct entries *es)
{
    for (size_t i = 0; i < es->n; i++) {
        free(es->v[i].key);
        free(es->v[i].val);
    }
    free(es->v);
    memset(es, 0, sizeof *es);
}

static int count_calls(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                       uint32_t vlen)
{
    (void)table, (void)key, (void)klen, (void)val, (void)vlen;
    (*(size_t *)arg)++;
    return 0;
}

static struct ckpt_producer test_producers[2] = {{"engine-a", 10, 500}, {"engine-b", 3, 498}};

static struct ckpt_info base_info(uint64_t seq)
{
    struct ckpt_info info;

    memset(&info, 0, sizeof info);
    info.epoch = 2;
    info.journal_seq = seq;
    info.lsn = seq * 10;
    info.created_ns = 1700000000000000000ull + seq;
    info.n_producers = 2;
    info.producers = test_producers;
    return info;
}

/* Writes es as checkpoint seq in dir; path into path. */
static void write_entries(const char *dir, uint64_t seq, const struct entries *es, char *path,
                          size_t path_size)
{
    struct ckpt_info info = base_info(seq);
    ckpt_writer *w = NULL;
    char err[512] = "";

    ck_assert_int_eq(ckpt_writer_open(dir, &info, 1, &w, err, sizeof err), 0);
    for (size_t i = 0; i < es->n; i++)
        ck_assert_int_eq(
            ckpt_writer_add(w, es->v[i].table, es->v[i].key, es->v[i].klen, es->v[i].val, es->v[i].vlen), 0);
    ck_assert_msg(ckpt_writer_finish(w, path, path_size, err, sizeof err) == 0, "%s", err);
}

/* Entries for the generated cases: n_tables tables of per_table entries,
 * key i as "k%08u" (or empty for the first when empty_first), value of
 * vlen bytes (pattern), or i % 5 == 0 empty when mixed. */
static void make_entries(struct entries *es, unsigned n_tables, unsigned per_table, uint32_t vlen,
                         int empty_first)
{
    uint8_t *val = malloc(vlen + 1);
    char table[RK_NAME_MAX + 1], key[32];

    ck_assert_ptr_nonnull(val);
    for (uint32_t j = 0; j < vlen; j++)
        val[j] = (uint8_t)(j * 131 + (j >> 9));
    for (unsigned t = 0; t < n_tables; t++) {
        snprintf(table, sizeof table, "table-%04u", t);
        for (unsigned i = 0; i < per_table; i++) {
            uint32_t klen = empty_first && i == 0 ? 0 : (uint32_t)snprintf(key, sizeof key, "k%08u", i);
            val[0] = (uint8_t)i;
            collect(es, table, key, klen, val, empty_first && i % 5 == 0 ? 0 : vlen);
        }
    }
    free(val);
}

/* Writes es, reads it back, checks entries and info byte for byte, and
 * that writing the read-back entries gives the same file. */
static void round_trip(const struct entries *es)
{
    char *dir = make_dir(), *dir2 = make_dir();
    char path[4300], path2[4300], err[512] = "";
    struct entries back = {0};
    struct ckpt_info info;
    uint64_t digest = 0;
    uint8_t *a, *b;
    size_t alen, blen;

    write_entries(dir, 7, es, path, sizeof path);
    ck_assert_msg(ckpt_verify(path, &info, collect, &back, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(back.n, es->n);
    for (size_t i = 0; i < es->n; i++) {
        const struct entry *x = &es->v[i], *y = &back.v[i];
        ck_assert_str_eq(x->table, y->table);
        ck_assert_uint_eq(x->klen, y->klen);
        ck_assert_uint_eq(x->vlen, y->vlen);
        ck_assert(memcmp(x->key, y->key, x->klen) == 0);
        ck_assert(memcmp(x->val, y->val, x->vlen) == 0);
        digest += ckpt_entry_digest(x->table, x->key, x->klen, x->val, x->vlen);
    }
    ck_assert_uint_eq(info.major, CKPT_MAJOR);
    ck_assert_uint_eq(info.minor, CKPT_MINOR);
    ck_assert_uint_eq(info.journal_seq, 7);
    ck_assert_uint_eq(info.lsn, 70);
    ck_assert_uint_eq(info.epoch, 2);
    ck_assert_uint_eq(info.created_ns, 1700000000000000007ull);
    ck_assert_uint_eq(info.n_entries, es->n);
    ck_assert_uint_eq(info.digest, digest);
    ck_assert_uint_eq(info.n_producers, 2);
    ck_assert_str_eq(info.producers[1].name, "engine-b");
    ck_assert_uint_eq(info.producers[1].height, 3);
    ck_assert_uint_eq(info.producers[1].applied_lsn, 498);
    ckpt_info_free(&info);

    /* the header alone says the same */
    ck_assert_msg(ckpt_read_info(path, &info, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(info.n_entries, es->n);
    ck_assert_uint_eq(info.digest, digest);
    ckpt_info_free(&info);

    /* one walk (ckpt_verify_once) hands out the same entries */
    struct entries once = {0};
    ck_assert_msg(ckpt_verify_once(path, &info, collect, &once, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(once.n, back.n);
    for (size_t i = 0; i < back.n; i++) {
        const struct entry *x = &back.v[i], *y = &once.v[i];
        ck_assert_str_eq(x->table, y->table);
        ck_assert(x->klen == y->klen && memcmp(x->key, y->key, x->klen) == 0);
        ck_assert(x->vlen == y->vlen && memcmp(x->val, y->val, x->vlen) == 0);
    }
    ck_assert_uint_eq(info.digest, digest);
    ckpt_info_free(&info);
    entries_free(&once);

    write_entries(dir2, 7, &back, path2, sizeof path2);
    a = read_file(path, &alen);
    b = read_file(path2, &blen);
    ck_assert_uint_eq(alen, blen);
    ck_assert(memcmp(a, b, alen) == 0);
    free(a);
    free(b);
    entries_free(&back);
    ck_assert_uint_eq(count_files(dir), 1); /* no temp or spool file left */
    remove_dir(dir);
    remove_dir(dir2);
}

/* ------------------------------------------------------------ round trips */

START_TEST(test_round_trip_empty)
{
    struct entries es = {0};

    round_trip(&es);
}
END_TEST

START_TEST(test_round_trip_one_table)
{
    struct entries es = {0};

    make_entries(&es, 1, 100, 40, 0);
    round_trip(&es);
    entries_free(&es);
}
END_TEST

START_TEST(test_round_trip_many_tables)
{
    struct entries es = {0};

    make_entries(&es, 300, 7, 24, 0);
    round_trip(&es);
    entries_free(&es);
}
END_TEST

START_TEST(test_round_trip_empty_keys_and_values)
{
    struct entries es = {0};

    make_entries(&es, 3, 20, 9, 1);
    collect(&es, "table-9999", "", 0, "", 0); /* a table of one empty entry */
    round_trip(&es);
    entries_free(&es);
}
END_TEST

START_TEST(test_round_trip_large_values)
{
    struct entries es = {0};

    /* values of 3 MiB: every frame holds one entry larger than the target */
    make_entries(&es, 2, 3, 3u << 20, 0);
    round_trip(&es);
    entries_free(&es);
}
END_TEST

START_TEST(test_round_trip_200k_entries)
{
    struct entries es = {0};

    make_entries(&es, 4, 50000, 20, 0);
    round_trip(&es);
    entries_free(&es);
}
END_TEST

START_TEST(test_digest_is_sum_of_terms)
{
    uint64_t a = ckpt_entry_digest("t", "k", 1, "v", 1), b = ckpt_entry_digest("u", "k", 1, "v", 1);
    struct entries es = {0};
    char *dir = make_dir(), path[4300], err[512];
    struct ckpt_info info;
    uint64_t sum = 0;

    /* the definition in checkpoint.h, computed independently */
    {
        char seedbuf[8] = "t\0k";
        uint64_t seed = XXH3_64bits(seedbuf, 3);
        ck_assert_uint_eq(a, XXH3_64bits_withSeed("v", 1, seed));
    }
    ck_assert_uint_ne(a, b);
    ck_assert_uint_ne(ckpt_entry_digest("t", "k", 1, "", 0), ckpt_entry_digest("t", "", 0, "k", 1));
    make_entries(&es, 3, 40, 12, 1);
    for (size_t i = 0; i < es.n; i++)
        sum += ckpt_entry_digest(es.v[i].table, es.v[i].key, es.v[i].klen, es.v[i].val, es.v[i].vlen);
    write_entries(dir, 1, &es, path, sizeof path);
    ck_assert_int_eq(ckpt_verify(path, &info, NULL, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(info.digest, sum);
    ckpt_info_free(&info);
    entries_free(&es);
    remove_dir(dir);
}
END_TEST

START_TEST(test_writer_refuses_order_violations)
{
    char *dir = make_dir(), path[4300], err[512] = "", long_name[RK_NAME_MAX + 2];
    struct ckpt_info info = base_info(1);
    ckpt_writer *w = NULL;
    struct entries back = {0};

    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ck_assert_int_eq(ckpt_writer_open(dir, &info, 1, &w, err, sizeof err), 0);
    ck_assert_int_eq(ckpt_writer_add(w, "b", "k2", 2, "v", 1), 0);
    ck_assert_int_eq(ckpt_writer_add(w, "b", "k2", 2, "v", 1), RK_EINVAL); /* same key */
    ck_assert_int_eq(ckpt_writer_add(w, "b", "k1", 2, "v", 1), RK_EINVAL); /* key going back */
    ck_assert_int_eq(ckpt_writer_add(w, "b", "k", 1, "v", 1), RK_EINVAL);  /* a prefix sorts first */
    ck_assert_int_eq(ckpt_writer_add(w, "a", "k9", 2, "v", 1), RK_EINVAL); /* table going back */
    ck_assert_int_eq(ckpt_writer_add(w, "", "k9", 2, "v", 1), RK_EINVAL);
    ck_assert_int_eq(ckpt_writer_add(w, long_name, "k9", 2, "v", 1), RK_EINVAL);
    ck_assert_int_eq(ckpt_writer_add(w, "b", NULL, 2, "v", 1), RK_EINVAL);
    ck_assert_int_eq(ckpt_writer_add(w, "b", "k3", 2, "v", CKPT_MAX_ENTRY), RK_EINVAL);
    /* refusals leave the writer usable */
    ck_assert_int_eq(ckpt_writer_add(w, "b", "k3", 2, "v", 1), 0);
    ck_assert_int_eq(ckpt_writer_add(w, "c", "", 0, "", 0), 0);
    ck_assert_msg(ckpt_writer_finish(w, path, sizeof path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ckpt_verify(path, NULL, collect, &back, err, sizeof err), 0);
    ck_assert_uint_eq(back.n, 3);
    ck_assert_str_eq(back.v[2].table, "c");
    entries_free(&back);
    remove_dir(dir);
}
END_TEST

/* ------------------------------------------------------------ corruption */

/* buf[0..len) must be refused as a file named name (in dir), with no
 * entry handed out; returns the code. */
static int expect_refused(const char *dir, const char *name, const uint8_t *buf, size_t len, const char *what)
{
    char path[4300], err[512] = "";
    size_t calls = 0;
    struct ckpt_info info;
    int rc;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, buf, len);
    rc = ckpt_verify(path, &info, count_calls, &calls, err, sizeof err);
    ck_assert_msg(rc == RK_ECORRUPT || rc == RK_EVERSION, "%s: verify returned %d (%s)", what, rc, err);
    ck_assert_msg(calls == 0, "%s: %zu entries handed out of a corrupt file", what, calls);
    ck_assert_msg(err[0] != '\0', "%s: no reason given", what);
    ck_assert_ptr_null(info.tables);
    /* one walk refuses it the same (it may have handed entries out) */
    size_t once_calls = 0;
    ck_assert_int_eq(ckpt_verify_once(path, &info, count_calls, &once_calls, err, sizeof err), rc);
    ck_assert_ptr_null(info.tables);
    /* the buffer entry point agrees */
    ck_assert_int_eq(ckpt_verify_buffer(buf, len, name, NULL, count_calls, &calls, err, sizeof err), rc);
    ck_assert_uint_eq(calls, 0);
    return rc;
}

/* A small valid file (the golden content, 50 entries) and a multi-frame
 * one (about 2.5 MiB). */
static uint8_t *small_file(const char *dir, size_t *len)
{
    struct entries es = {0};
    uint8_t key[64], val[64];
    char path[4300];
    uint8_t *buf;

    for (unsigned i = 0; i < GOLDEN_N_ENTRIES; i++) {
        const char *table;
        uint32_t klen, vlen;
        golden_entry(i, &table, key, &klen, val, &vlen);
        collect(&es, table, key, klen, val, vlen);
    }
    write_entries(dir, 5, &es, path, sizeof path);
    buf = read_file(path, len);
    unlink(path);
    entries_free(&es);
    return buf;
}

static uint8_t *large_file(const char *dir, size_t *len)
{
    struct entries es = {0};
    char path[4300];
    uint8_t *buf;

    make_entries(&es, 3, 8000, 100, 0);
    write_entries(dir, 6, &es, path, sizeof path);
    buf = read_file(path, len);
    unlink(path);
    entries_free(&es);
    ck_assert_uint_gt(le32(buf + 12), 2); /* several frames */
    return buf;
}

START_TEST(test_bit_flips_caught)
{
    char *dir = make_dir(), err[512];
    size_t len, big_len;
    uint8_t *buf = small_file(dir, &len), *big = large_file(dir, &big_len);
    uint32_t header_end = 32 + le32(buf + 8);

    /* one flipped bit in every byte of the small file, the header included */
    for (size_t i = 0; i < len; i++) {
        char what[64];
        uint8_t bit = (uint8_t)(1u << (i % 8));
        buf[i] ^= bit;
        snprintf(what, sizeof what, "bit flip at %zu", i);
        expect_refused(dir, "x.rkcp", buf, len, what);
        if (i < header_end) {
            struct ckpt_info info;
            char path[4300];
            snprintf(path, sizeof path, "%s/x.rkcp", dir);
            ck_assert_msg(ckpt_read_info(path, &info, err, sizeof err) != 0, "read_info missed a flip at %zu",
                          i);
        }
        buf[i] ^= bit;
    }
    /* and every bit of the fixed header */
    for (size_t i = 0; i < 32 * 8; i++) {
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        expect_refused(dir, "x.rkcp", buf, len, "fixed header bit");
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    /* 300 offsets spread over the multi-frame file */
    for (size_t k = 0; k < 300; k++) {
        size_t i = (k * 7919 * 131) % big_len;
        big[i] ^= 0x10;
        expect_refused(dir, "y.rkcp", big, big_len, "bit flip in the large file");
        big[i] ^= 0x10;
    }
    ck_assert_int_eq(ckpt_verify_buffer(big, big_len, NULL, NULL, NULL, NULL, err, sizeof err), 0);
    free(buf);
    free(big);
    remove_dir(dir);
}
END_TEST

START_TEST(test_truncation_caught)
{
    char *dir = make_dir();
    size_t len, big_len;
    uint8_t *buf = small_file(dir, &len), *big = large_file(dir, &big_len);

    for (size_t cut = 0; cut < len; cut++)
        ck_assert_int_eq(expect_refused(dir, "x.rkcp", buf, cut, "truncated small file"), RK_ECORRUPT);
    for (size_t k = 0; k < 200; k++) {
        size_t cut = big_len - 1 - (k * 104729) % big_len;
        ck_assert_int_eq(expect_refused(dir, "y.rkcp", big, cut, "truncated large file"), RK_ECORRUPT);
    }
    free(buf);
    free(big);
    remove_dir(dir);
}
END_TEST

START_TEST(test_zeroed_blocks_caught)
{
    char *dir = make_dir();
    size_t len;
    uint8_t *big = large_file(dir, &len), *copy = malloc(len);

    ck_assert_ptr_nonnull(copy);
    for (size_t off = 0; off < len; off += 4096) {
        size_t n = len - off < 4096 ? len - off : 4096;
        memcpy(copy, big, len);
        memset(copy + off, 0, n);
        expect_refused(dir, "y.rkcp", copy, len, "zeroed 4 KiB block");
    }
    free(copy);
    free(big);
    remove_dir(dir);
}
END_TEST

START_TEST(test_older_copied_over_newer_caught)
{
    char *dir = make_dir(), old_path[4300], new_path[4300], err[512] = "";
    struct entries es = {0};
    struct ckpt_info info;
    uint8_t *old;
    size_t len;

    make_entries(&es, 2, 10, 8, 0);
    write_entries(dir, 5, &es, old_path, sizeof old_path);
    write_entries(dir, 9, &es, new_path, sizeof new_path);
    ck_assert_int_eq(ckpt_verify(new_path, NULL, NULL, NULL, err, sizeof err), 0);
    old = read_file(old_path, &len);
    write_file(new_path, old, len);
    ck_assert_int_eq(ckpt_verify(new_path, NULL, NULL, NULL, err, sizeof err), RK_ECORRUPT);
    ck_assert_msg(strstr(err, "file name says journal seq 9") && strstr(err, "header says 5"), "%s", err);
    ck_assert_int_eq(ckpt_read_info(new_path, &info, err, sizeof err), RK_ECORRUPT);
    ck_assert_int_eq(ckpt_verify(old_path, NULL, NULL, NULL, err, sizeof err), 0);
    free(old);
    entries_free(&es);
    remove_dir(dir);
}
END_TEST

/* A lie in a resealed header must be refused with a reason containing
 * want. */
static void expect_lie(const char *dir, const uint8_t *buf, size_t len, const char *want)
{
    char err[512] = "";

    expect_refused(dir, "lie.rkcp", buf, len, want);
    ck_assert_int_eq(ckpt_verify_buffer(buf, len, NULL, NULL, NULL, NULL, err, sizeof err), RK_ECORRUPT);
    ck_assert_msg(strstr(err, want) != NULL, "want \"%s\", got \"%s\"", want, err);
}

START_TEST(test_lying_counts_caught)
{
    char *dir = make_dir(), err[512];
    size_t len, out_len;
    uint8_t *buf = small_file(dir, &len), *lie;
    struct ckpt_info info, l;
    msgpack_sbuffer sb;

    ck_assert_int_eq(ckpt_verify_buffer(buf, len, NULL, &info, NULL, NULL, err, sizeof err), 0);
    /* the unchanged map rebuilt by the test loads (the tool is right) */
    pack_map(&sb, &info, 0, NULL, 0);
    lie = replace_map(buf, len, 0, sb.data, sb.size, &out_len);
    ck_assert_int_eq(ckpt_verify_buffer(lie, out_len, NULL, NULL, NULL, NULL, err, sizeof err), 0);
    free(lie);
    msgpack_sbuffer_destroy(&sb);

#define LIE(change, want)                                                                                    \
    do {                                                                                                     \
        l = info;                                                                                            \
        struct ckpt_table tables[3];                                                                         \
        memcpy(tables, info.tables, sizeof tables);                                                          \
        l.tables = tables;                                                                                   \
        change;                                                                                              \
        pack_map(&sb, &l, 0, NULL, 0);                                                                       \
        lie = replace_map(buf, len, 0, sb.data, sb.size, &out_len);                                          \
        expect_lie(dir, lie, out_len, want);                                                                 \
        free(lie);                                                                                           \
        msgpack_sbuffer_destroy(&sb);                                                                        \
    } while (0)

    LIE(l.n_entries++, "directory adds up");
    LIE((l.n_entries++, tables[2].n_entries++), "body holds 50 entries");
    LIE((l.n_entries--, tables[2].n_entries--), "more than the");
    LIE((l.n_entries++, tables[0].n_entries++), "table 'accounts' ends after 20");
    LIE(l.raw_size++, "raw_size");
    LIE(l.digest++, "state digest");
    LIE(l.n_tables = 2, "directory adds up");
    LIE((l.n_tables = 2, l.n_entries -= tables[2].n_entries), "table 'positions' where the directory's next");
    LIE(memcpy(tables[1].name, "aaa", 4), "out of order");
    LIE(tables[0].name[0] = 'b', "table 'accounts' where the directory's next table is 'bccounts'");
#undef LIE

    /* lying lengths in the fixed prefix, resealed */
    {
        uint8_t *c = malloc(len);
        ck_assert_ptr_nonnull(c);
        memcpy(c, buf, len);
        set_le32(c + 8, le32(buf + 8) + 1); /* header_len */
        reseal(c, len);
        expect_lie(dir, c, len, "the header announces");
        memcpy(c, buf, len);
        set_le32(c + 8, 0xffffffffu);
        set_be64(c + len - 8, XXH64(c, len - 8, 0));
        expect_lie(dir, c, len, "exceeds the limit");
        memcpy(c, buf, len);
        set_le64(c + 16, 0xffffffffffffff00ull); /* body_len */
        reseal(c, len);
        expect_lie(dir, c, len, "the header announces");
        memcpy(c, buf, len);
        set_le32(c + 12, 2); /* n_frames */
        reseal(c, len);
        expect_lie(dir, c, len, "body holds 1 frames, the header announces 2");
        memcpy(c, buf, len);
        set_le32(c + 12, 0);
        reseal(c, len);
        expect_lie(dir, c, len, "0 frames in a body");
        memcpy(c, buf, len);
        set_le32(c + 32 + le32(buf + 8), le32(c + 32 + le32(buf + 8)) + 1); /* frame raw_len */
        reseal(c, len);
        expect_lie(dir, c, len, "states another content size");
        memcpy(c, buf, len);
        set_le32(c + 32 + le32(buf + 8), 0xfffffff0u);
        reseal(c, len);
        expect_lie(dir, c, len, "out of range");
        memcpy(c, buf, len);
        set_le32(c + 36 + le32(buf + 8), le32(c + 36 + le32(buf + 8)) + 1000); /* comp_len */
        reseal(c, len);
        expect_lie(dir, c, len, "body bytes remain");
        memcpy(c, buf, len);
        set_le32(c + 36 + le32(buf + 8), le32(c + 36 + le32(buf + 8)) - 1);
        reseal(c, len);
        expect_lie(dir, c, len, "frame 0");
        free(c);
    }
    ckpt_info_free(&info);
    free(buf);
    remove_dir(dir);
}
END_TEST

/* A file with the given map and one body frame holding raw[0..raw_len). */
static uint8_t *crafted(const void *map, size_t map_len, const void *raw, size_t raw_len, size_t *len)
{
    msgpack_sbuffer body;
    uint8_t *buf;

    msgpack_sbuffer_init(&body);
    if (raw_len)
        add_frame(&body, raw, raw_len);
    buf = assemble(1, 0, map, map_len, body.data, body.size, raw_len ? 1 : 0, len);
    msgpack_sbuffer_destroy(&body);
    return buf;
}

/* The checks that must refuse huge claims: run where a huge allocation
 * would fail the test (ASan's limit, or an address-space limit). */
static void huge_claims(void)
{
    static const struct ckpt_table one_table[1] = {{"t", 1}};
    char *dir = make_dir();
    struct ckpt_info info = base_info(1);
    msgpack_sbuffer sb;
    uint8_t *buf;
    size_t len;

    info.n_tables = 1;
    info.tables = (struct ckpt_table *)one_table;
    info.n_entries = 1;
    pack_map(&sb, &info, 0, NULL, 0);

    /* body: array32 claiming 2^32-1 elements, then a few bytes */
    {
        static const uint8_t raw[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xa1, 't', 0xc4, 0, 0xc4, 0};
        buf = crafted(sb.data, sb.size, raw, sizeof raw, &len);
        expect_lie(dir, buf, len, "claims more elements than bytes remain");
        free(buf);
    }
    /* body: map32 where an entry should be */
    {
        static const uint8_t raw[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 't', 0xc4, 0, 0xc4, 0};
        buf = crafted(sb.data, sb.size, raw, sizeof raw, &len);
        expect_lie(dir, buf, len, "wrong msgpack type");
        free(buf);
    }
    /* body: array32 of exactly 3 is fine as a form; bin32 key claiming 4 GiB */
    {
        static const uint8_t raw[] = {0xdd, 0, 0, 0, 3, 0xa1, 't', 0xc6, 0xff, 0xff, 0xff, 0xff, 0xc4, 0};
        buf = crafted(sb.data, sb.size, raw, sizeof raw, &len);
        expect_lie(dir, buf, len, "key runs past the end");
        free(buf);
    }
    /* body: str32 table name claiming 4 GiB */
    {
        static const uint8_t raw[] = {0x93, 0xdb, 0xff, 0xff, 0xff, 0xff, 't', 0xc4, 0, 0xc4, 0};
        buf = crafted(sb.data, sb.size, raw, sizeof raw, &len);
        expect_lie(dir, buf, len, "table name runs past the end");
        free(buf);
    }
    /* body: bin32 value 1 byte longer than the frame */
    {
        static const uint8_t raw[] = {0x93, 0xa1, 't', 0xc4, 0, 0xc6, 0, 0, 0, 2, 'x'};
        buf = crafted(sb.data, sb.size, raw, sizeof raw, &len);
        expect_lie(dir, buf, len, "value runs past the end");
        free(buf);
    }
    msgpack_sbuffer_destroy(&sb);
    /* header: map32 claiming 2^32-1 pairs */
    {
        static const uint8_t map[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa5, 'e', 'p', 'o', 'c', 'h', 1};
        buf = crafted(map, sizeof map, NULL, 0, &len);
        expect_lie(dir, buf, len, "the map claims more elements");
        free(buf);
    }
    /* header: "tables" as array32 claiming 2^32-1 tables (and producers) */
    {
        static const uint8_t map[] = {0x81, 0xa6, 't',  'a',  'b',  'l',  'e',
                                      's',  0xdd, 0xff, 0xff, 0xff, 0xff, 0x92};
        static const uint8_t map2[] = {0x81, 0xa9, 'p',  'r',  'o',  'd',  'u',  'c', 'e',
                                       'r',  's',  0xdd, 0xff, 0xff, 0xff, 0xff, 0x93};
        buf = crafted(map, sizeof map, NULL, 0, &len);
        expect_lie(dir, buf, len, "\"tables\" claims more elements");
        free(buf);
        buf = crafted(map2, sizeof map2, NULL, 0, &len);
        expect_lie(dir, buf, len, "\"producers\" claims more elements");
        free(buf);
    }
    remove_dir(dir);
}

START_TEST(test_huge_claims_refused_without_allocating)
{
#ifdef RK_ASAN
    huge_claims(); /* max_allocation_size_mb=256 */
#else
    pid_t pid = fork();
    int status = 0;

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit lim = {1u << 30, 1u << 30};
        setrlimit(RLIMIT_AS, &lim);
        huge_claims();
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
#endif
}
END_TEST

START_TEST(test_header_keys_strict)
{
    char *dir = make_dir(), err[512];
    size_t len, out_len;
    uint8_t *buf = small_file(dir, &len), *lie;
    struct ckpt_info info;
    msgpack_sbuffer sb;
    static const uint8_t extra[] = {0xa6, 'f',  'u', 't', 'u', 'r', 'e', 0x81, 0xa1, 'x', 0x92,
                                    1,    0xcb, 0,   0,   0,   0,   0,   0,    0,    0};
    static const uint8_t dup[] = {0xa3, 'l', 's', 'n', 7};
    static const uint8_t notuint[] = {0xa4, 'n', 'o', 'p', 'e', 0xc0};

    ck_assert_int_eq(ckpt_verify_buffer(buf, len, NULL, &info, NULL, NULL, err, sizeof err), 0);
    pack_map(&sb, &info, 1, extra, sizeof extra);
    lie = replace_map(buf, len, 0, sb.data, sb.size, &out_len);
    expect_lie(dir, lie, out_len, "unknown key \"future\" in a format 1.0 file");
    free(lie);
    msgpack_sbuffer_destroy(&sb);
    pack_map(&sb, &info, 1, dup, sizeof dup);
    lie = replace_map(buf, len, 0, sb.data, sb.size, &out_len);
    expect_lie(dir, lie, out_len, "key \"lsn\" appears twice");
    free(lie);
    msgpack_sbuffer_destroy(&sb);
    pack_map(&sb, &info, 0, notuint, sizeof notuint);
    lie = replace_map(buf, len, 0, sb.data, sb.size, &out_len);
    expect_lie(dir, lie, out_len, "bytes after the map");
    free(lie);
    msgpack_sbuffer_destroy(&sb);
    {
        static const uint8_t map[] = {0x81, 0xa5, 'e', 'p', 'o', 'c', 'h', 1};
        lie = crafted(map, sizeof map, NULL, 0, &out_len);
        expect_lie(dir, lie, out_len, "key \"journal_seq\" is missing");
        free(lie);
    }
    ckpt_info_free(&info);
    free(buf);
    remove_dir(dir);
}
END_TEST

/* ------------------------------------------------------------ versions */

START_TEST(test_unknown_major_refused)
{
    char *dir = make_dir(), path[4300], err[512] = "";
    size_t len;
    uint8_t *buf = small_file(dir, &len);
    struct ckpt_info info;

    buf[4] = 2;
    reseal(buf, len);
    snprintf(path, sizeof path, "%s/00000000000000000005.rkcp", dir);
    write_file(path, buf, len);
    ck_assert_int_eq(ckpt_verify(path, NULL, NULL, NULL, err, sizeof err), RK_EVERSION);
    {
        char want[64];
        snprintf(want, sizeof want, "checkpoint format 2.%u, this ringkeep reads 1.x", CKPT_MINOR);
        ck_assert_msg(strstr(err, want), "%s", err);
    }
    ck_assert_int_eq(ckpt_read_info(path, &info, err, sizeof err), RK_EVERSION);
    ck_assert_msg(strstr(err, "2.") && strstr(err, "1.x"), "%s", err);
    buf[4] = 0;
    buf[6] = 3;
    ck_assert_int_eq(ckpt_verify_buffer(buf, len, NULL, NULL, NULL, NULL, err, sizeof err), RK_EVERSION);
    ck_assert_msg(strstr(err, "checkpoint format 0.3, this ringkeep reads 1.x"), "%s", err);
    free(buf);
    remove_dir(dir);
}
END_TEST

START_TEST(test_higher_minor_loads)
{
    char *dir = make_dir(), err[512] = "";
    size_t len, out_len;
    uint8_t *buf = small_file(dir, &len), *newer;
    struct entries back = {0};
    struct ckpt_info info, got;
    msgpack_sbuffer sb;
    /* "future": {"x": [1, 2.0], "y": bin8 "ab", "z": ext}, as a 1.1 writer might add */
    static const uint8_t extra[] = {0xa6, 'f',  'u', 't', 'u', 'r',  'e', 0x83, 0xa1, 'x', 0x92,
                                    1,    0xcb, 0,   0,   0,   0,    0,   0,    0,    0,   0xa1,
                                    'y',  0xc4, 2,   'a', 'b', 0xa1, 'z', 0xd5, 7,    1,   2};

    ck_assert_int_eq(ckpt_verify_buffer(buf, len, NULL, &info, NULL, NULL, err, sizeof err), 0);
    pack_map(&sb, &info, 1, extra, sizeof extra);
    newer = replace_map(buf, len, CKPT_MINOR + 1, sb.data, sb.size, &out_len);
    ck_assert_msg(ckpt_verify_buffer(newer, out_len, NULL, &got, collect, &back, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_uint_eq(got.minor, CKPT_MINOR + 1);
    ck_assert_uint_eq(got.digest, info.digest);
    ck_assert_uint_eq(back.n, GOLDEN_N_ENTRIES);
    /* a value of the unknown key that lies about its length is still caught */
    newer[32 + sb.size - 4] = 0xdd; /* the fixext header turned into an array32 claiming 0x07010200 */
    reseal(newer, out_len);
    ck_assert_int_eq(ckpt_verify_buffer(newer, out_len, NULL, NULL, NULL, NULL, err, sizeof err),
                     RK_ECORRUPT);
    ckpt_info_free(&got);
    ckpt_info_free(&info);
    entries_free(&back);
    msgpack_sbuffer_destroy(&sb);
    free(newer);
    free(buf);
    remove_dir(dir);
}
END_TEST

/* ------------------------------------------------------------ files */

START_TEST(test_mode_0600_under_umask_0)
{
    char *dir = make_dir(), path[4300];
    struct entries es = {0};
    struct stat st;
    mode_t old = umask(0);

    make_entries(&es, 1, 3, 3, 0);
    write_entries(dir, 3, &es, path, sizeof path);
    umask(old);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    entries_free(&es);
    remove_dir(dir);
}
END_TEST

START_TEST(test_abort_leaves_nothing)
{
    char *dir = make_dir(), err[512];
    struct ckpt_info info = base_info(4);
    ckpt_writer *w = NULL;

    ck_assert_int_eq(ckpt_writer_open(dir, &info, 1, &w, err, sizeof err), 0);
    for (unsigned i = 0; i < 30000; i++) { /* a few frames spooled */
        char key[16];
        ck_assert_int_eq(ckpt_writer_add(w, "t", key, (uint32_t)snprintf(key, sizeof key, "%08u", i),
                                         "0123456789012345678901234567890123456789", 40),
                         0);
    }
    ck_assert_uint_eq(count_files(dir), 0); /* the spool is unlinked */
    ckpt_writer_abort(w);
    ckpt_writer_abort(NULL);
    ck_assert_uint_eq(count_files(dir), 0);
    ck_assert_int_eq(ckpt_writer_open("/nonexistent/dir", &info, 1, &w, err, sizeof err), ENOENT);
    ck_assert_ptr_null(w);
    remove_dir(dir);
}
END_TEST

/* In a child: arms fault, writes a checkpoint, expects finish to fail with
 * want_rc and the folder to be left empty. */
static void fault_child(const char *fault, int want_rc)
{
    pid_t pid = fork();
    int status = 0;

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char *dir = make_dir(), path[4300] = "x", err[512] = "";
        struct ckpt_info info = base_info(8);
        ckpt_writer *w = NULL;
        int ok = 1;

        sys_install();
        if (ckpt_writer_open(dir, &info, 1, &w, err, sizeof err) != 0)
            _exit(10);
        if (ckpt_writer_add(w, "t", "k", 1, "v", 1) != 0)
            _exit(11);
        if (sys_fault_arm(fault) != 0)
            _exit(12);
        ok &= ckpt_writer_finish(w, path, sizeof path, err, sizeof err) == want_rc;
        ok &= path[0] == '\0' && err[0] != '\0';
        sys_fault_arm(NULL);
        ok &= count_files(dir) == 0;
        if (!ok)
            fprintf(stderr, "fault %s: %s (path '%s', %zu files)\n", fault, err, path, count_files(dir));
        remove_dir(dir);
        _exit(ok ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fault %s: child status %d", fault, status);
}

START_TEST(test_fsync_failure_leaves_no_checkpoint)
{
    fault_child("fsync:EIO:1", EIO); /* the file's fsync */
    fault_child("fsync:EIO:2", EIO); /* the folder's fsync, after the rename */
    fault_child("write:ENOSPC:1", ENOSPC);
    fault_child("rename:EROFS:1", EROFS);
    fault_child("open:EIO:1", EIO);
}
END_TEST

START_TEST(test_list_order)
{
    char *dir = make_dir(), path[4300], **paths = NULL;
    static const uint64_t seqs[] = {3, 12, 7, 100000000000ull};
    static const char *junk[] = {".00000000000000000099.rkcp.tmp-1", ".spool-00000000000000000099-1-0.tmp",
                                 "abc.rkcp", "123.rkcp",
                                 "0000000000000000001x.rkcp", "00000000000000000050.rkcp.bak"};
    struct entries es = {0};
    size_t n = 0;

    make_entries(&es, 1, 2, 2, 0);
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
        write_entries(dir, seqs[i], &es, path, sizeof path);
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, junk[i]);
        write_file(path, (const uint8_t *)"x", 1);
    }
    ck_assert_int_eq(ckpt_list(dir, &paths, &n), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert(strstr(paths[0], "/00000000100000000000.rkcp"));
    ck_assert(strstr(paths[1], "/00000000000000000012.rkcp"));
    ck_assert(strstr(paths[2], "/00000000000000000007.rkcp"));
    ck_assert(strstr(paths[3], "/00000000000000000003.rkcp"));
    ckpt_list_free(paths, n);
    ck_assert_int_eq(ckpt_list("/nonexistent/dir", &paths, &n), ENOENT);
    ck_assert_uint_eq(n, 0);
    /* the writer's temp names, and only those, are what a start removes */
    ck_assert(ckpt_is_temp_name(junk[0]) && ckpt_is_temp_name(junk[1]));
    for (size_t i = 2; i < sizeof junk / sizeof junk[0]; i++)
        ck_assert(!ckpt_is_temp_name(junk[i]));
    ck_assert(!ckpt_is_temp_name("00000000000000000007.rkcp"));
    ck_assert(!ckpt_is_temp_name(".hidden"));
    entries_free(&es);
    remove_dir(dir);
}
END_TEST

/* ------------------------------------------------------------ golden */

static void golden_path(char *path, size_t size, unsigned minor)
{
    const char *env = getenv("RK_GOLDEN_DIR");
    const char *slash = strrchr(__FILE__, '/');

    if (env)
        snprintf(path, size, "%s/checkpoint-v1.%u.rkcp", env, minor);
    else if (slash)
        snprintf(path, size, "%.*s/golden/checkpoint-v1.%u.rkcp", (int)(slash - __FILE__), __FILE__, minor);
    else
        snprintf(path, size, "golden/checkpoint-v1.%u.rkcp", minor);
}

START_TEST(test_golden_file_loads)
{
    char path[4300], err[512] = "";
    struct entries back = {0};
    struct ckpt_info info;
    uint8_t key[64], val[64];
    uint64_t digest = 0;

    /* _i: the minor version of the golden file (every one committed keeps
     * loading: 1.0 without the replay record, 1.1 with it) */
    golden_path(path, sizeof path, (unsigned)_i);
    ck_assert_msg(ckpt_verify(path, &info, collect, &back, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(info.major, 1);
    ck_assert_uint_eq(info.minor, (unsigned)_i);
    ck_assert_int_eq(info.has_replay, _i >= 1);
    if (info.has_replay) {
        const struct ckpt_replay *rp = &info.replay;
        ck_assert_uint_eq(rp->restart_seq, GOLDEN_RESTART_SEQ);
        ck_assert_uint_eq(rp->n_groups, GOLDEN_GROUPS);
        ck_assert_uint_eq(rp->n_records, GOLDEN_RECORDS);
        ck_assert_uint_eq(rp->n_discarded, GOLDEN_DISCARDED);
        ck_assert_uint_eq(rp->n_producers, 3);
        ck_assert(memcmp(rp->producers, golden_replay_producers, sizeof golden_replay_producers) == 0);
        ck_assert_uint_eq(rp->n_table_ids, 3);
        ck_assert(memcmp(rp->table_ids, golden_table_ids, sizeof golden_table_ids) == 0);
        ck_assert_uint_eq(rp->n_slots, 2);
        ck_assert(memcmp(rp->slots, golden_slots, sizeof golden_slots) == 0);
    }
    /* 1.2 adds the epoch history; older files have none */
    ck_assert_uint_eq(info.n_history, _i >= 2 ? 2 : 0);
    if (info.n_history)
        ck_assert(memcmp(info.history, golden_history, sizeof golden_history) == 0);
    ck_assert_uint_eq(info.epoch, GOLDEN_EPOCH);
    ck_assert_uint_eq(info.journal_seq, GOLDEN_JOURNAL_SEQ);
    ck_assert_uint_eq(info.lsn, GOLDEN_LSN);
    ck_assert_uint_eq(info.created_ns, GOLDEN_CREATED_NS);
    ck_assert_uint_eq(info.n_entries, GOLDEN_N_ENTRIES);
    ck_assert_uint_eq(info.digest, GOLDEN_DIGEST);
    ck_assert_uint_eq(info.n_producers, 2);
    for (unsigned i = 0; i < 2; i++) {
        ck_assert_str_eq(info.producers[i].name, golden_producers[i].name);
        ck_assert_uint_eq(info.producers[i].height, golden_producers[i].height);
        ck_assert_uint_eq(info.producers[i].applied_lsn, golden_producers[i].applied_lsn);
    }
    ck_assert_uint_eq(info.n_tables, 3);
    ck_assert_str_eq(info.tables[0].name, "accounts");
    ck_assert_uint_eq(info.tables[0].n_entries, 20);
    ck_assert_str_eq(info.tables[1].name, "orders");
    ck_assert_uint_eq(info.tables[1].n_entries, 20);
    ck_assert_str_eq(info.tables[2].name, "positions");
    ck_assert_uint_eq(info.tables[2].n_entries, 10);
    ck_assert_uint_eq(back.n, GOLDEN_N_ENTRIES);
    for (unsigned i = 0; i < GOLDEN_N_ENTRIES; i++) {
        const char *table;
        uint32_t klen, vlen;
        golden_entry(i, &table, key, &klen, val, &vlen);
        ck_assert_str_eq(back.v[i].table, table);
        ck_assert_uint_eq(back.v[i].klen, klen);
        ck_assert_uint_eq(back.v[i].vlen, vlen);
        ck_assert(memcmp(back.v[i].key, key, klen) == 0);
        ck_assert(memcmp(back.v[i].val, val, vlen) == 0);
        digest += ckpt_entry_digest(table, key, klen, val, vlen);
    }
    ck_assert_uint_eq(digest, GOLDEN_DIGEST);
    ckpt_info_free(&info);
    entries_free(&back);
}
END_TEST

Suite *checkpoint_suite(void);
Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *rt = tcase_create("round_trip"), *bad = tcase_create("corruption"), *ver = tcase_create("version"),
          *files = tcase_create("files");

    tcase_add_test(rt, test_round_trip_empty);
    tcase_add_test(rt, test_round_trip_one_table);
    tcase_add_test(rt, test_round_trip_many_tables);
    tcase_add_test(rt, test_round_trip_empty_keys_and_values);
    tcase_add_test(rt, test_round_trip_large_values);
    tcase_add_test(rt, test_round_trip_200k_entries);
    tcase_add_test(rt, test_digest_is_sum_of_terms);
    tcase_add_test(rt, test_writer_refuses_order_violations);
    tcase_add_test(bad, test_bit_flips_caught);
    tcase_add_test(bad, test_truncation_caught);
    tcase_add_test(bad, test_zeroed_blocks_caught);
    tcase_add_test(bad, test_older_copied_over_newer_caught);
    tcase_add_test(bad, test_lying_counts_caught);
    tcase_add_test(bad, test_huge_claims_refused_without_allocating);
    tcase_add_test(bad, test_header_keys_strict);
    tcase_add_test(ver, test_unknown_major_refused);
    tcase_add_test(ver, test_higher_minor_loads);
    tcase_add_loop_test(ver, test_golden_file_loads, 0, (int)CKPT_MINOR + 1);
    tcase_add_test(files, test_mode_0600_under_umask_0);
    tcase_add_test(files, test_abort_leaves_nothing);
    tcase_add_test(files, test_fsync_failure_leaves_no_checkpoint);
    tcase_add_test(files, test_list_order);
    suite_add_tcase(s, rt);
    suite_add_tcase(s, bad);
    suite_add_tcase(s, ver);
    suite_add_tcase(s, files);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(checkpoint_suite());
    int n_failed;

    srunner_run_all(sr, CK_NORMAL);
    n_failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
