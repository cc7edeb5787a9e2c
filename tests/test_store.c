/* test_store.c -- the journal entry codec and the data directory store.
 *
 * What it tests:
 *   journal  journal_encode/journal_decode round trip byte for byte, for
 *            every frame type (TABLE and ABORT included), compressed and
 *            plain bodies, a batch of exactly JOURNAL_MAX_RAW bytes and one
 *            of 100,000 small frames; the header's byte layout; the encoder
 *            refuses batches that break the frame rules (empty included);
 *            the decoder refuses every flipped bit, every truncation, a
 *            header claiming a huge raw_len (without allocating it), wrong
 *            magic and version (RK_EVERSION), and frames or zstd bodies that
 *            are wrong even though the XXH64 trailer was recomputed to
 *            match; LSNs strictly increasing (TABLE frames included).
 *   store    store_open on a missing or uninitialised directory, the lock
 *            (RK_EBUSY naming the holder's pid, from this process and from
 *            child processes), append/last/get across close and reopen,
 *            duplicate sequences, trim, corrupt entries in the database,
 *            entries acknowledged to a process that is then SIGKILLed.
 *   faults   the I/O seam: fsync and write faults make store_journal_append
 *            fail, the store stays failed, and a fresh process reopening
 *            the directory (recovery) finds every acknowledged entry and
 *            the failed one either absent or whole; RK_FAULT from the
 *            environment; fault specs; the Nth-call counting; the once
 *            mode (only the Nth call matching a path and a thread name
 *            fails) and that a store acknowledges nothing after a failed
 *            fsync anywhere; Berkeley DB's files opened through the seam
 *            are close-on-exec.
 *   apply    applier_run refuses an entry whose frame names a table id
 *            out of range and applies nothing of it; an ABORT reported
 *            again after a restart (below the producer's last ATTACH) does
 *            not discard the re-attached session's group.
 *
 * How: data directories live under one base directory per runner
 * (/tmp/rk-test-store-XXXXXX), which main() removes at the end, even after
 * a failure.  Tests that crash or inject faults run in child processes that
 * this test forks (the seam is process-global): a child ends with _exit(0),
 * or writes its reason into a shared mapping and ends with _exit(1).  The
 * fault-from-environment test needs a process that has not installed the
 * seam yet, so the suite runs with CK_FORK=yes (the default).
 * Every loop is bounded; nothing waits on time.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "persist/apply.h"
#include "persist/apply_impl.h" /* pending_sort */
#include "persist/bytes.h"
#include "persist/crashsim.h"
#include "persist/json_bytes.h"
#include "persist/retain.h"
#include "shm/ring.h"
#include "persist/store.h"

#if defined(__SANITIZE_ADDRESS__)
#define RK_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RK_TEST_ASAN 1
#endif
#endif

#define CACHE_MB 16
#define MAX_FAULT_APPENDS 20 /* appends tried after arming a fault */
#define KILL_APPENDS 200     /* appends the killed child may make at most */

Suite *store_suite(void);

static char base_dir[64];
static char data_dir[256];
static char err[1024];
static char why[1024];

/* ------------------------------------------------------------ helpers */

static uint64_t next_rand(uint64_t *state)
{
    /* xorshift64* */
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1Dull;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    ck_assert_msg(p != NULL, "out of memory for %zu bytes", n);
    return p;
}

static uint8_t *exact_copy(const uint8_t *src, size_t n)
{
    uint8_t *p = xmalloc(n);

    if (n)
        memcpy(p, src, n);
    return p;
}

static void assert_has(const char *msg, const char *needle)
{
    ck_assert_msg(strstr(msg, needle) != NULL, "message \"%s\" does not mention \"%s\"", msg, needle);
}

/* A fresh data directory base_dir/<pid>.<what> in data_dir. */
static void new_data_dir(const char *what)
{
    snprintf(data_dir, sizeof data_dir, "%s/%d.%s", base_dir, (int)getpid(), what);
    ck_assert_msg(mkdir(data_dir, 0700) == 0, "mkdir %s: %s", data_dir, strerror(errno));
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static store *open_store(int flags)
{
    store *s = NULL;
    int rc = store_open(data_dir, flags, CACHE_MB, &s, err, sizeof err);

    ck_assert_msg(rc == 0, "store_open %s: %s: %s", data_dir, store_strerror(rc), err);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* ------------------------------------------------------------ batches */

/* A batch of frames as the drain would cut it: frames back to back at
 * 8-aligned offsets, with LSNs that are ring positions. */
struct batch {
    uint8_t *buf;
    size_t len, cap;
    struct journal_header h; /* seq, epoch, first/last/next LSN, n_frames */
    uint64_t pos;            /* the ring position of the next frame */
};

static void batch_init(struct batch *b, uint64_t seq, uint64_t start_pos)
{
    memset(b, 0, sizeof *b);
    b->h.seq = seq;
    b->h.epoch = 7;
    b->pos = start_pos;
    b->h.next_lsn = start_pos;
}

static void batch_free(struct batch *b)
{
    free(b->buf);
    b->buf = NULL;
}

/* Appends a frame made with frame_encode().  A TABLE frame takes the LSN
 * just below the frame that follows it (the node's rule); every other
 * frame takes the next position, which moves past it (and past `gap` bytes
 * of padding or dead claims). */
static void batch_add_gap(struct batch *b, uint8_t type, uint16_t table, uint16_t producer, const void *key,
                          uint32_t klen, const void *val, uint32_t vlen, uint64_t gap)
{
    uint32_t size = frame_align((uint64_t)FRAME_HEADER_SIZE + klen + vlen);
    uint64_t lsn = type == FRAME_TABLE ? b->pos - 1 : b->pos;

    if (b->len + size > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + size)
            cap *= 2;
        b->buf = realloc(b->buf, cap);
        ck_assert_ptr_nonnull(b->buf);
        b->cap = cap;
    }
    frame_encode(b->buf + b->len, type, table, producer, lsn, key, klen, val, vlen);
    b->len += size;
    if (b->h.n_frames == 0)
        b->h.first_lsn = lsn;
    b->h.last_lsn = lsn;
    b->h.n_frames++;
    if (type != FRAME_TABLE)
        b->pos += size + gap;
    b->h.next_lsn = b->pos;
}

static void batch_add(struct batch *b, uint8_t type, uint16_t table, uint16_t producer, const void *key,
                      uint32_t klen, const void *val, uint32_t vlen)
{
    batch_add_gap(b, type, table, producer, key, klen, val, vlen, 0);
}

/* Every frame type; n_puts similar PUTs make it compressible. */
static void batch_every_type(struct batch *b, uint64_t seq, uint64_t start_pos, uint32_t n_puts,
                             uint64_t *rng)
{
    struct frame_attach attach = {.session = 3, .pid = 4242, .flags = 0};
    uint8_t height[8], session[8] = {2, 0, 0, 0, 0, 0, 0, 0}, value[100];
    char key[32];

    batch_init(b, seq, start_pos);
    for (int i = 0; i < 8; i++)
        height[i] = (uint8_t)(seq >> (8 * i));
    batch_add(b, FRAME_ATTACH, 0, 0, "engine-1", 8, &attach, sizeof attach);
    batch_add(b, FRAME_TABLE, 1, 0, "orders", 6, NULL, 0);
    for (uint32_t i = 0; i < n_puts; i++) {
        int klen = snprintf(key, sizeof key, "BTC:%06" PRIu32, i);
        for (size_t j = 0; j < sizeof value; j++)
            value[j] = (uint8_t)('a' + (j + i) % 26);
        value[next_rand(rng) % sizeof value] = (uint8_t)next_rand(rng);
        batch_add(b, FRAME_PUT, 1, 0, key, (uint32_t)klen, value, (uint32_t)(17 + i % 80));
    }
    batch_add(b, FRAME_DEL, 1, 0, "BTC:0999", 8, NULL, 0);
    batch_add(b, FRAME_PUT, 1, 0, NULL, 0, NULL, 0);
    batch_add_gap(b, FRAME_MARK, 0, 0, NULL, 0, height, 8, 64); /* a dead claim after it */
    batch_add(b, FRAME_ABORT, 0, 2, NULL, 0, session, sizeof session);
    batch_add(b, FRAME_TABLE, 2, 0, "accounts", 8, NULL, 0);
    batch_add(b, FRAME_PUT, 2, 1, "acct:1", 6, "100", 3);
    batch_add(b, FRAME_MARK, 0, 1, NULL, 0, height, 8);
}

/* Random values: zstd cannot shrink them. */
static void batch_random(struct batch *b, uint64_t seq, uint64_t start_pos, uint32_t n, uint64_t *rng)
{
    uint8_t value[1000];

    batch_init(b, seq, start_pos);
    for (uint32_t i = 0; i < n; i++) {
        for (size_t j = 0; j < sizeof value; j++)
            value[j] = (uint8_t)(next_rand(rng) >> 56);
        batch_add(b, FRAME_PUT, 3, 4, value, 8, value + 8, (uint32_t)(sizeof value - 8 - i % 7));
    }
}

static void encode_batch(const struct batch *b, int level, uint8_t **out, size_t *out_len)
{
    int rc = journal_encode(&b->h, b->buf, b->len, level, out, out_len);

    ck_assert_msg(rc == 0, "journal_encode: %s", store_strerror(rc));
}

/* Decodes entry and checks it is b, byte for byte. */
static void assert_entry_is_batch(const uint8_t *entry, size_t len, const struct batch *b)
{
    uint8_t *copy = exact_copy(entry, len);
    journal_entry e;
    int rc = journal_decode(copy, len, &e, why, sizeof why);

    ck_assert_msg(rc == 0, "journal_decode: %s: %s", store_strerror(rc), why);
    ck_assert_uint_eq(e.h.magic, JOURNAL_MAGIC);
    ck_assert_uint_eq(e.h.version, JOURNAL_VERSION);
    ck_assert_uint_eq(e.h.seq, b->h.seq);
    ck_assert_uint_eq(e.h.epoch, b->h.epoch);
    ck_assert_uint_eq(e.h.first_lsn, b->h.first_lsn);
    ck_assert_uint_eq(e.h.last_lsn, b->h.last_lsn);
    ck_assert_uint_eq(e.h.next_lsn, b->h.next_lsn);
    ck_assert_uint_eq(e.h.n_frames, b->h.n_frames);
    ck_assert_uint_eq(e.h.raw_len, b->len);
    ck_assert_uint_eq(e.h.body_len, len - JOURNAL_HEADER_SIZE - JOURNAL_TRAILER_SIZE);
    ck_assert_uint_eq(e.h.reserved, 0);
    ck_assert_msg(memcmp(e.frames, b->buf, b->len) == 0, "frames differ after the round trip");
    journal_entry_free(&e);
    ck_assert_ptr_null(e.frames);
    journal_entry_free(&e);
    free(copy);
}

/* ------------------------------------------------------------ forging */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* An entry with the header h as given (magic, version, flags, lengths
 * included, nothing filled in) and body, with a correct XXH64 trailer:
 * written from the layout in store.h, independently of journal.c. */
static uint8_t *forge(const struct journal_header *h, const void *body, size_t body_len, size_t *len)
{
    uint8_t *buf = xmalloc(JOURNAL_HEADER_SIZE + body_len + JOURNAL_TRAILER_SIZE);
    XXH64_canonical_t trailer;

    put_le(buf + 0, h->magic, 4);
    put_le(buf + 4, h->version, 2);
    put_le(buf + 6, h->flags, 2);
    put_le(buf + 8, h->seq, 8);
    put_le(buf + 16, h->epoch, 8);
    put_le(buf + 24, h->first_lsn, 8);
    put_le(buf + 32, h->last_lsn, 8);
    put_le(buf + 40, h->next_lsn, 8);
    put_le(buf + 48, h->n_frames, 4);
    put_le(buf + 52, h->raw_len, 4);
    put_le(buf + 56, h->body_len, 4);
    put_le(buf + 60, h->reserved, 4);
    if (body_len)
        memcpy(buf + JOURNAL_HEADER_SIZE, body, body_len);
    XXH64_canonicalFromHash(&trailer, XXH64(buf, JOURNAL_HEADER_SIZE + body_len, 0));
    memcpy(buf + JOURNAL_HEADER_SIZE + body_len, &trailer, sizeof trailer);
    *len = JOURNAL_HEADER_SIZE + body_len + JOURNAL_TRAILER_SIZE;
    return buf;
}

/* Recomputes the trailer of entry[0..len) after the test changed it. */
static void reseal(uint8_t *entry, size_t len)
{
    XXH64_canonical_t trailer;

    XXH64_canonicalFromHash(&trailer, XXH64(entry, len - JOURNAL_TRAILER_SIZE, 0));
    memcpy(entry + len - JOURNAL_TRAILER_SIZE, &trailer, sizeof trailer);
}

/* A well-formed header for frames[0..raw_len) of batch b, plain body. */
static struct journal_header header_for(const struct batch *b, size_t raw_len)
{
    struct journal_header h = b->h;

    h.magic = JOURNAL_MAGIC;
    h.version = JOURNAL_VERSION;
    h.flags = 0;
    h.raw_len = (uint32_t)raw_len;
    h.body_len = (uint32_t)raw_len;
    h.reserved = 0;
    return h;
}

static uint8_t *zstd_of(const void *src, size_t n, size_t *out_len)
{
    size_t bound = ZSTD_compressBound(n);
    uint8_t *out = xmalloc(bound);

    *out_len = ZSTD_compress(out, bound, src, n, 1);
    ck_assert_msg(!ZSTD_isError(*out_len), "ZSTD_compress: %s", ZSTD_getErrorName(*out_len));
    return out;
}

/* Forges h over frames, plain or as one zstd frame, and decodes it from an
 * exact-size block.  Returns decode's code; the reason is in why. */
static int decode_forged(struct journal_header h, const uint8_t *frames, size_t raw_len, int compress)
{
    uint8_t *body = NULL, *entry;
    size_t body_len = raw_len, len;
    journal_entry e;
    int rc;

    if (compress) {
        body = zstd_of(frames, raw_len, &body_len);
        h.flags |= JOURNAL_ZSTD;
    }
    h.body_len = (uint32_t)body_len;
    entry = forge(&h, compress ? body : frames, body_len, &len);
    why[0] = '\0';
    rc = journal_decode(entry, len, &e, why, sizeof why);
    if (rc == 0)
        journal_entry_free(&e);
    else
        ck_assert_ptr_null(e.frames);
    free(entry);
    free(body);
    return rc;
}

/* ------------------------------------------------------------ journal: round trips */

START_TEST(round_trip_every_frame_type)
{
    uint64_t rng = 42;
    struct batch b;
    uint8_t *entry;
    size_t len;

    batch_every_type(&b, 12, 4096, 60, &rng);
    encode_batch(&b, 1, &entry, &len);
    ck_assert_uint_eq(entry[6] | entry[7] << 8, JOURNAL_ZSTD);
    ck_assert_uint_lt(len, b.len);
    assert_entry_is_batch(entry, len, &b);
    free(entry);

    /* again at a high level, and at zstd's fastest negative level */
    for (int level = -5; level <= 19; level += 24) {
        encode_batch(&b, level, &entry, &len);
        assert_entry_is_batch(entry, len, &b);
        free(entry);
    }
    batch_free(&b);
}
END_TEST

START_TEST(incompressible_batch_is_stored_plain)
{
    uint64_t rng = 7;
    struct batch b;
    uint8_t *entry;
    size_t len;

    batch_random(&b, 3, 8, 20, &rng);
    encode_batch(&b, 1, &entry, &len);
    ck_assert_uint_eq(entry[6] | entry[7] << 8, 0);
    ck_assert_uint_eq(len, JOURNAL_HEADER_SIZE + b.len + JOURNAL_TRAILER_SIZE);
    ck_assert_msg(memcmp(entry + JOURNAL_HEADER_SIZE, b.buf, b.len) == 0, "plain body is the frames");
    assert_entry_is_batch(entry, len, &b);
    free(entry);

    /* one frame alone (zstd's overhead is larger than its gain) */
    batch_free(&b);
    batch_init(&b, 4, 8);
    batch_add(&b, FRAME_MARK, 0, 0, NULL, 0, "\1\0\0\0\0\0\0\0", 8);
    encode_batch(&b, 1, &entry, &len);
    ck_assert_uint_eq(entry[6] | entry[7] << 8, 0);
    assert_entry_is_batch(entry, len, &b);
    free(entry);
    batch_free(&b);
}
END_TEST

START_TEST(header_is_little_endian_at_fixed_offsets)
{
    static const uint8_t magic[4] = {'R', 'K', 'J', 'E'};
    uint64_t rng = 1;
    struct batch b;
    uint8_t *entry, *again;
    size_t len, again_len;
    XXH64_canonical_t trailer;

    batch_every_type(&b, 0x0102030405060708ull, 0x1122334455667788ull & ~7ull, 3, &rng);
    b.h.epoch = 0xa1a2a3a4a5a6a7a8ull;
    encode_batch(&b, 1, &entry, &len);
    ck_assert_mem_eq(entry, magic, 4);
    ck_assert_uint_eq(entry[4], JOURNAL_VERSION);
    ck_assert_uint_eq(entry[5], 0);
    for (int i = 0; i < 8; i++) {
        ck_assert_uint_eq(entry[8 + i], (uint8_t)(b.h.seq >> (8 * i)));
        ck_assert_uint_eq(entry[16 + i], (uint8_t)(b.h.epoch >> (8 * i)));
        ck_assert_uint_eq(entry[24 + i], (uint8_t)(b.h.first_lsn >> (8 * i)));
        ck_assert_uint_eq(entry[32 + i], (uint8_t)(b.h.last_lsn >> (8 * i)));
        ck_assert_uint_eq(entry[40 + i], (uint8_t)(b.h.next_lsn >> (8 * i)));
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(entry[48 + i], (uint8_t)(b.h.n_frames >> (8 * i)));
        ck_assert_uint_eq(entry[52 + i], (uint8_t)(b.len >> (8 * i)));
        ck_assert_uint_eq(entry[56 + i], (uint8_t)((len - 72) >> (8 * i)));
        ck_assert_uint_eq(entry[60 + i], 0);
    }
    XXH64_canonicalFromHash(&trailer, XXH64(entry, len - 8, 0));
    ck_assert_mem_eq(entry + len - 8, trailer.digest, 8);

    /* the test's own writer makes the same bytes from the same header */
    {
        struct journal_header h = header_for(&b, b.len);
        h.flags = (uint16_t)(entry[6] | entry[7] << 8);
        h.body_len = (uint32_t)(len - 72);
        again = forge(&h, entry + 64, len - 72, &again_len);
        ck_assert_uint_eq(again_len, len);
        ck_assert_mem_eq(again, entry, len);
        free(again);
    }
    free(entry);
    batch_free(&b);
}
END_TEST

START_TEST(batch_at_the_size_limit_round_trips)
{
    const uint32_t frame_size = 1u << 20, n_frames = JOURNAL_MAX_RAW / (1u << 20);
    uint8_t *value = xmalloc(frame_size), *entry = NULL;
    uint64_t rng = 99;
    struct batch b;
    size_t len;

    batch_init(&b, 1, 8);
    for (uint32_t i = 0; i < n_frames; i++) {
        for (uint32_t j = 0; j < frame_size; j += 8) {
            uint64_t r = next_rand(&rng);
            memcpy(value + j, &r, 8);
            value[j] &= 0x0f; /* half random: zstd shrinks it a little */
            value[j + 1] = value[j + 2] = value[j + 3] = 0;
        }
        batch_add(&b, FRAME_PUT, 1, 0, "big:key", 8, value, frame_size - FRAME_HEADER_SIZE - 8);
    }
    ck_assert_uint_eq(b.len, JOURNAL_MAX_RAW);
    encode_batch(&b, 1, &entry, &len);
    assert_entry_is_batch(entry, len, &b);
    free(entry);

    /* one frame more is over the limit */
    batch_add(&b, FRAME_MARK, 0, 0, NULL, 0, "\1\0\0\0\0\0\0\0", 8);
    entry = NULL;
    ck_assert_int_eq(journal_encode(&b.h, b.buf, b.len, 1, &entry, &len), RK_EINVAL);
    ck_assert_ptr_null(entry);
    free(value);
    batch_free(&b);
}
END_TEST

START_TEST(batch_of_many_small_frames_round_trips)
{
    uint64_t rng = 5;
    struct batch b;
    uint8_t *entry;
    size_t len;

    batch_every_type(&b, 77, 1u << 30, 100000, &rng);
    ck_assert_uint_gt(b.len, 5u << 20);
    encode_batch(&b, 1, &entry, &len);
    assert_entry_is_batch(entry, len, &b);
    free(entry);
    batch_free(&b);
}
END_TEST

/* ------------------------------------------------------------ journal: the encoder refuses */

START_TEST(empty_batch_is_refused)
{
    struct journal_header h = {.seq = 1, .first_lsn = 8, .last_lsn = 8, .next_lsn = 8};
    uint8_t *entry = NULL;
    size_t len = 0;

    ck_assert_int_eq(journal_encode(&h, NULL, 0, 1, &entry, &len), RK_EINVAL);
    ck_assert_ptr_null(entry);
    h.n_frames = 0;
    ck_assert_int_eq(journal_encode(&h, (const uint8_t *)"", 0, 1, &entry, &len), RK_EINVAL);

    /* and an entry that says it has no frames does not decode */
    h.magic = JOURNAL_MAGIC;
    h.version = JOURNAL_VERSION;
    ck_assert_int_eq(decode_forged(h, NULL, 0, 0), RK_ECORRUPT);
    assert_has(why, "no frames");
    ck_assert_int_eq(decode_forged(h, (const uint8_t *)"", 0, 1), RK_ECORRUPT);
}
END_TEST

START_TEST(inconsistent_batches_are_refused_by_the_encoder)
{
    uint64_t rng = 3;
    struct batch b;
    struct journal_header h;
    uint8_t *entry = NULL, *frames;
    size_t len;

    batch_every_type(&b, 5, 4096, 4, &rng);
    h = b.h;
    h.n_frames++;
    ck_assert_int_eq(journal_encode(&h, b.buf, b.len, 1, &entry, &len), RK_EINVAL);
    h = b.h;
    h.n_frames--;
    ck_assert_int_eq(journal_encode(&h, b.buf, b.len, 1, &entry, &len), RK_EINVAL);
    h = b.h;
    h.first_lsn += 8;
    ck_assert_int_eq(journal_encode(&h, b.buf, b.len, 1, &entry, &len), RK_EINVAL);
    h = b.h;
    h.last_lsn -= 8;
    ck_assert_int_eq(journal_encode(&h, b.buf, b.len, 1, &entry, &len), RK_EINVAL);
    h = b.h;
    h.next_lsn = h.last_lsn;
    ck_assert_int_eq(journal_encode(&h, b.buf, b.len, 1, &entry, &len), RK_EINVAL);
    ck_assert_int_eq(journal_encode(&b.h, b.buf, b.len - 4, 1, &entry, &len), RK_EINVAL);
    ck_assert_int_eq(journal_encode(&b.h, b.buf, JOURNAL_MAX_RAW + 8ull, 1, &entry, &len), RK_EINVAL);
    frames = exact_copy(b.buf, b.len);
    frames[FRAME_HEADER_SIZE + 2] ^= 1; /* a byte of the first frame's key */
    ck_assert_int_eq(journal_encode(&b.h, frames, b.len, 1, &entry, &len), RK_EINVAL);
    ck_assert_ptr_null(entry);
    ck_assert_int_eq(journal_encode(NULL, b.buf, b.len, 1, &entry, &len), RK_EINVAL);
    ck_assert_int_eq(journal_encode(&b.h, b.buf, b.len, 1, NULL, &len), RK_EINVAL);
    free(frames);
    batch_free(&b);
}
END_TEST

/* ------------------------------------------------------------ journal: the decoder refuses */

/* _i: 0 compressed body, 1 plain body */
START_TEST(every_flipped_bit_is_refused)
{
    uint64_t rng = 11;
    struct batch b;
    uint8_t *entry;
    size_t len;

    if (_i == 0)
        batch_every_type(&b, 9, 4096, 6, &rng);
    else
        batch_random(&b, 9, 4096, 2, &rng);
    encode_batch(&b, 1, &entry, &len);
    ck_assert_uint_eq(entry[6], _i == 0 ? JOURNAL_ZSTD : 0);
    for (size_t bit = 0; bit < len * 8; bit++) {
        uint8_t *copy = exact_copy(entry, len);
        journal_entry e;
        int rc;

        copy[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        why[0] = '\0';
        rc = journal_decode(copy, len, &e, why, sizeof why);
        ck_assert_msg(rc == RK_ECORRUPT || (rc == RK_EVERSION && bit / 8 >= 4 && bit / 8 < 6),
                      "bit %zu flipped: journal_decode returned %d (%s)", bit, rc, why);
        ck_assert_msg(why[0] != '\0', "bit %zu: no reason given", bit);
        ck_assert_ptr_null(e.frames);
        free(copy);
    }
    free(entry);
    batch_free(&b);
}
END_TEST

START_TEST(every_truncation_is_refused)
{
    uint64_t rng = 13;
    struct batch b;
    uint8_t *entry, *longer;
    journal_entry e;
    size_t len;

    batch_every_type(&b, 10, 4096, 5, &rng);
    for (int compress = 0; compress <= 1; compress++) {
        if (compress) {
            encode_batch(&b, 1, &entry, &len);
        } else {
            struct journal_header h = header_for(&b, b.len);
            entry = forge(&h, b.buf, b.len, &len);
        }
        for (size_t n = 0; n < len; n++) {
            uint8_t *copy = exact_copy(entry, n);
            why[0] = '\0';
            ck_assert_msg(journal_decode(copy, n, &e, why, sizeof why) == RK_ECORRUPT,
                          "entry cut to %zu of %zu bytes was accepted", n, len);
            ck_assert_msg(why[0] != '\0', "cut to %zu: no reason given", n);
            free(copy);
        }
        /* and one byte too many */
        longer = xmalloc(len + 1);
        memcpy(longer, entry, len);
        longer[len] = 0;
        ck_assert_int_eq(journal_decode(longer, len + 1, &e, why, sizeof why), RK_ECORRUPT);
        assert_has(why, "body_len");
        ck_assert_int_eq(journal_decode(NULL, 0, &e, why, sizeof why), RK_ECORRUPT);
        free(longer);
        free(entry);
    }
    batch_free(&b);
}
END_TEST

/* In builds without AddressSanitizer (whose shadow memory needs a huge
 * address space), caps this process's address space a little above what
 * it uses, so that allocating a claimed raw_len would fail with ENOMEM. */
static void cap_address_space(void)
{
#ifndef RK_TEST_ASAN
    unsigned long pages = 0;
    struct rlimit lim;
    FILE *f = fopen("/proc/self/statm", "r");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    lim.rlim_cur = lim.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (256u << 20);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0);
#endif
}

/* A zstd frame header that states content_size, then one empty last block. */
static size_t fake_zstd_frame(uint8_t *p, uint64_t content_size)
{
    put_le(p, 0xFD2FB528u, 4);
    p[4] = 0xE0; /* 8-byte content size, single segment */
    put_le(p + 5, content_size, 8);
    p[13] = 0x01; /* last block, raw, 0 bytes */
    p[14] = p[15] = 0;
    return 16;
}

START_TEST(huge_raw_len_is_refused_without_allocating_it)
{
    uint64_t rng = 17;
    struct batch b;
    struct journal_header h;
    uint8_t zbody[16];
    size_t zlen;

    batch_every_type(&b, 20, 4096, 2, &rng);
    cap_address_space();

    /* plain body, raw_len far beyond the limit (and beyond the entry) */
    h = header_for(&b, b.len);
    h.raw_len = 0xfffffff8u;
    ck_assert_int_eq(decode_forged(h, b.buf, b.len, 0), RK_ECORRUPT);
    assert_has(why, "raw_len 4294967288 exceeds the limit");

    /* zstd body whose frame claims the same */
    zlen = fake_zstd_frame(zbody, 0xfffffff8u);
    h.flags = JOURNAL_ZSTD;
    h.body_len = (uint32_t)zlen;
    {
        size_t len;
        uint8_t *entry = forge(&h, zbody, zlen, &len);
        journal_entry e;
        ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_ECORRUPT);
        assert_has(why, "exceeds the limit");
        free(entry);
    }

    /* just over the limit */
    h = header_for(&b, b.len);
    h.raw_len = JOURNAL_MAX_RAW + 8;
    ck_assert_int_eq(decode_forged(h, b.buf, b.len, 1), RK_ECORRUPT);
    assert_has(why, "exceeds the limit");

    /* a small raw_len, but the zstd frame claims 2 GiB: refused before
     * decompressing */
    zlen = fake_zstd_frame(zbody, 2ull << 30);
    h = header_for(&b, b.len);
    h.flags = JOURNAL_ZSTD;
    h.body_len = (uint32_t)zlen;
    {
        size_t len;
        uint8_t *entry = forge(&h, zbody, zlen, &len);
        journal_entry e;
        ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_ECORRUPT);
        assert_has(why, "zstd frame holds 2147483648 bytes");
        free(entry);

        /* both claim the limit; the body holds nothing: at most the limit
         * is allocated, and the decompression is refused */
        zlen = fake_zstd_frame(zbody, JOURNAL_MAX_RAW);
        h.raw_len = JOURNAL_MAX_RAW;
        entry = forge(&h, zbody, zlen, &len);
        ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_ECORRUPT);
        assert_has(why, "does not decompress");
        free(entry);
    }
    batch_free(&b);
}
END_TEST

START_TEST(wrong_magic_or_version_is_refused)
{
    uint64_t rng = 19;
    struct batch b;
    uint8_t *entry;
    journal_entry e;
    size_t len;

    batch_every_type(&b, 21, 4096, 3, &rng);
    encode_batch(&b, 1, &entry, &len);

    entry[0] ^= 0x20;
    reseal(entry, len);
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_ECORRUPT);
    assert_has(why, "bad magic");
    entry[0] ^= 0x20;

    entry[4] = 2; /* version 2, sealed again: a newer writer */
    reseal(entry, len);
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_EVERSION);
    assert_has(why, "journal entry 21: format version 2, this build reads version 1");
    entry[4] = 0;
    entry[5] = 1; /* version 256, trailer not resealed: still a version error */
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_EVERSION);
    assert_has(why, "version 256");
    entry[4] = 1;
    entry[5] = 0;
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_ECORRUPT); /* not resealed */
    assert_has(why, "journal entry 21: checksum mismatch");
    reseal(entry, len);
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), 0);
    journal_entry_free(&e);
    free(entry);
    batch_free(&b);
}
END_TEST

/* Corruptions of an entry's contents that a recomputed XXH64 does not
 * hide.  Each changes the header or frames of a good batch; the entry is
 * then forged with a correct trailer, with a plain body and (where the
 * body is not the point) a zstd one. */
struct inside_case {
    const char *name;
    const char *expect; /* in the reason */
    int plain_only;
};

static const struct inside_case inside_cases[] = {
    {"frame checksum", "frame 2 at offset", 0},
    {"frame length past the batch", "frame 0 at offset 0: frame length", 0},
    {"LSN going backwards", "not above the previous", 0},
    {"TABLE frame at its frame's LSN", "not above the previous", 0},
    {"first_lsn", "is not first_lsn", 0},
    {"last_lsn", "is not last_lsn", 0},
    {"next_lsn at last_lsn", "next_lsn", 0},
    {"n_frames too many", "frames, the header announces", 0},
    {"n_frames too few", "after the", 0},
    {"padding frame inside", "unknown frame type 4", 0},
    {"zero bytes after the frames", "after the", 0},
    {"raw_len not a multiple of 8", "not a multiple of 8", 0},
    {"producer id out of range", "producer id 64 out of range", 0},
    {"unknown flags", "unknown flags 0x000", 0},
    {"reserved set", "reserved field", 0},
    {"plain body shorter than raw_len", "plain body of", 1},
    {"claimed commit word", "not committed", 0},
    {"alignment byte not zero", "frame 1 at offset 56: alignment byte 38 is not zero", 0},
    {"table id out of range", "table id 300 out of range", 0},
};
#define N_INSIDE_CASES ((int)(sizeof inside_cases / sizeof inside_cases[0]))

START_TEST(corrupt_contents_are_refused_despite_a_good_checksum)
{
    const struct inside_case *c = &inside_cases[_i];
    uint64_t rng = 23;
    struct batch b;
    struct journal_header h;
    uint8_t *frames;
    size_t raw_len, first_len, second_off;

    batch_every_type(&b, 30, 4096, 3, &rng);
    frames = xmalloc(b.len + 64);
    memcpy(frames, b.buf, b.len);
    raw_len = b.len;
    h = header_for(&b, raw_len);
    first_len = frame_align(frames[0] | frames[1] << 8); /* the ATTACH frame */
    second_off = first_len;                              /* the TABLE frame */

    switch (_i) {
    case 0: /* a value byte of the first PUT (frame 2) */
        frames[second_off + frame_align(frames[second_off] | frames[second_off + 1] << 8) + 40] ^= 0x08;
        break;
    case 1:
        put_le(frames, raw_len + 8, 4);
        break;
    case 2: /* the first frame's LSN above the next frame's: rewrite frame 0 */
        frame_encode(frames, FRAME_ATTACH, 0, 0, b.h.first_lsn + 4096, b.buf + 32, 8, b.buf + 40, 16);
        h.first_lsn += 4096;
        break;
    case 3: { /* the TABLE frame at the LSN of the PUT after it */
        uint32_t l = frames[second_off] | frames[second_off + 1] << 8;
        uint64_t lsn;
        memcpy(&lsn, frames + second_off + 16, 8);
        frame_encode(frames + second_off, FRAME_TABLE, 1, 0, lsn + 1, b.buf + second_off + 32, l - 32, NULL,
                     0);
        break;
    }
    case 4:
        h.first_lsn -= 8;
        break;
    case 5:
        h.last_lsn += 8;
        break;
    case 6:
        h.next_lsn = h.last_lsn;
        break;
    case 7:
        h.n_frames++;
        break;
    case 8:
        h.n_frames--;
        break;
    case 9: /* a PAD frame of 40 bytes in front */
        memmove(frames + 40, frames, raw_len);
        memset(frames, 0, 40);
        put_le(frames, 40, 4);
        frames[4] = FRAME_PAD;
        raw_len += 40;
        break;
    case 10:
        memset(frames + raw_len, 0, 16);
        raw_len += 16;
        break;
    case 11:
        memset(frames + raw_len, 0, 4);
        raw_len += 4;
        break;
    case 12: { /* the last frame (a MARK) from producer 64, checksum valid */
        size_t off = raw_len - 40;
        uint64_t lsn;
        memcpy(&lsn, frames + off + 16, 8);
        frame_encode(frames + off, FRAME_MARK, 0, 64, lsn, NULL, 0, b.buf + off + 32, 8);
        break;
    }
    case 13:
        h.flags = 2;
        break;
    case 14:
        h.reserved = 1;
        break;
    case 15:
        break; /* below: the body is shorter than raw_len */
    case 16:
        put_le(frames, (frames[0] | frames[1] << 8) | FRAME_CLAIMED, 4);
        break;
    case 17: /* the TABLE frame "orders" is 38 bytes long */
        frames[second_off + 38] = 1;
        break;
    case 18: { /* the PUT "acct:1" (48 bytes, before the last MARK) in table 300, checksum valid */
        size_t off = raw_len - 40 - 48;
        uint64_t lsn;
        memcpy(&lsn, frames + off + 16, 8);
        frame_encode(frames + off, FRAME_PUT, 300, 1, lsn, "acct:1", 6, "100", 3);
        break;
    }
    default:
        ck_abort_msg("no case %d", _i);
    }
    h.raw_len = (uint32_t)raw_len;
    for (int compress = 0; compress <= !c->plain_only; compress++) {
        int rc;
        if (_i == 15) {
            uint8_t *entry;
            size_t len;
            journal_entry e;
            h.body_len = (uint32_t)raw_len - 8;
            entry = forge(&h, frames, raw_len - 8, &len);
            rc = journal_decode(entry, len, &e, why, sizeof why);
            free(entry);
        } else {
            rc = decode_forged(h, frames, raw_len, compress);
        }
        ck_assert_msg(rc == RK_ECORRUPT, "%s (%s body): journal_decode returned %d", c->name,
                      compress ? "zstd" : "plain", rc);
        ck_assert_msg(strstr(why, c->expect) != NULL, "%s (%s body): reason \"%s\" does not say \"%s\"",
                      c->name, compress ? "zstd" : "plain", why, c->expect);
        ck_assert_msg(strncmp(why, "journal entry 30: ", 18) == 0, "%s: reason \"%s\" does not name entry 30",
                      c->name, why);
    }
    free(frames);
    batch_free(&b);
}
END_TEST

START_TEST(corrupt_zstd_bodies_are_refused)
{
    uint64_t rng = 29;
    struct batch b;
    struct journal_header h;
    uint8_t *z, *body, *entry;
    size_t zlen, len;
    journal_entry e;
    ZSTD_CCtx *cctx;
    uint32_t garbled = 0;
    int rc;

    batch_every_type(&b, 31, 4096, 40, &rng);
    z = zstd_of(b.buf, b.len, &zlen);
    h = header_for(&b, b.len);
    h.flags = JOURNAL_ZSTD;

    /* not a zstd frame at all */
    h.body_len = (uint32_t)b.len;
    entry = forge(&h, b.buf, b.len, &len);
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_ECORRUPT);
    assert_has(why, "not a zstd frame");
    free(entry);

    /* bytes after the frame, and two frames */
    body = xmalloc(2 * zlen);
    memcpy(body, z, zlen);
    memcpy(body + zlen, z, zlen);
    h.body_len = (uint32_t)(zlen + 3);
    entry = forge(&h, body, zlen + 3, &len);
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_ECORRUPT);
    assert_has(why, "not exactly one zstd frame");
    free(entry);
    h.body_len = (uint32_t)(2 * zlen);
    entry = forge(&h, body, 2 * zlen, &len);
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_ECORRUPT);
    assert_has(why, "not exactly one zstd frame");
    free(entry);

    /* a frame that does not state its content size */
    cctx = ZSTD_createCCtx();
    ck_assert_ptr_nonnull(cctx);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
    free(body);
    body = xmalloc(ZSTD_compressBound(b.len));
    {
        ZSTD_outBuffer out = {body, ZSTD_compressBound(b.len), 0};
        ZSTD_inBuffer in = {b.buf, b.len, 0};
        ck_assert_uint_eq(ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end), 0);
        h.body_len = (uint32_t)out.pos;
        entry = forge(&h, body, out.pos, &len);
    }
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_ECORRUPT);
    assert_has(why, "does not state its content size");
    free(entry);
    ZSTD_freeCCtx(cctx);

    /* content size that is not raw_len */
    h.body_len = (uint32_t)zlen;
    h.raw_len = (uint32_t)b.len + 8;
    entry = forge(&h, z, zlen, &len);
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), RK_ECORRUPT);
    assert_has(why, "raw_len is");
    free(entry);
    h.raw_len = (uint32_t)b.len;

    /* every byte of the compressed data garbled in turn, sealed again:
     * zstd refuses it or the frames inside are caught */
    for (size_t i = 20; i < zlen; i++) {
        z[i] ^= 0x5a;
        entry = forge(&h, z, zlen, &len);
        rc = journal_decode(entry, len, &e, why, sizeof why);
        if (rc == 0) { /* the garbling hit bytes that do not matter (e.g. an unused table entry) */
            ck_assert_mem_eq(e.frames, b.buf, b.len);
            journal_entry_free(&e);
        } else {
            ck_assert_int_eq(rc, RK_ECORRUPT);
            garbled++;
        }
        free(entry);
        z[i] ^= 0x5a;
    }
    ck_assert_uint_gt(garbled, (zlen - 20) / 2);
    free(body);
    free(z);
    batch_free(&b);
}
END_TEST

START_TEST(table_frame_takes_the_lsn_below_its_frame)
{
    struct journal_header h;
    struct batch b;
    uint8_t *entry, frames[96];
    size_t len;
    uint32_t n;

    batch_init(&b, 1, 8);
    batch_add(&b, FRAME_TABLE, 2, 0, "t2", 2, NULL, 0);
    batch_add(&b, FRAME_PUT, 2, 0, "k", 1, "v", 1);
    ck_assert_uint_eq(b.h.first_lsn, 7);
    ck_assert_uint_eq(b.h.last_lsn, 8);
    encode_batch(&b, 1, &entry, &len);
    assert_entry_is_batch(entry, len, &b);
    free(entry);

    /* a TABLE frame at its frame's own LSN is refused, as are two PUTs at
     * one LSN: LSNs strictly increase */
    h = header_for(&b, b.len);
    n = frame_encode(frames, FRAME_TABLE, 2, 0, 8, "t2", 2, NULL, 0);
    frame_encode(frames + frame_align(n), FRAME_PUT, 2, 0, 8, "k", 1, "v", 1);
    h.first_lsn = 8;
    ck_assert_int_eq(decode_forged(h, frames, b.len, 0), RK_ECORRUPT);
    assert_has(why, "frame 1 at offset 40: LSN 8 not above the previous 8");
    ck_assert_int_eq(journal_encode(&h, frames, b.len, 1, &entry, &len), RK_EINVAL);
    n = frame_encode(frames, FRAME_PUT, 2, 0, 8, "k", 1, "w", 1);
    frame_encode(frames + frame_align(n), FRAME_PUT, 2, 0, 8, "k", 1, "v", 1);
    ck_assert_int_eq(decode_forged(h, frames, 2 * frame_align(n), 0), RK_ECORRUPT);
    assert_has(why, "not above the previous");
    batch_free(&b);
}
END_TEST

START_TEST(reason_fits_its_buffer)
{
    uint64_t rng = 31;
    struct batch b;
    uint8_t *entry;
    size_t len;
    journal_entry e;
    char small[12];

    batch_every_type(&b, 32, 4096, 3, &rng);
    encode_batch(&b, 1, &entry, &len);
    entry[len - 1] ^= 1;
    memset(small, 'x', sizeof small);
    ck_assert_int_eq(journal_decode(entry, len, &e, small, sizeof small), RK_ECORRUPT);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    ck_assert_int_eq(journal_decode(entry, len, &e, NULL, 0), RK_ECORRUPT);
    ck_assert_int_eq(journal_decode(entry, len, &e, small, 0), RK_ECORRUPT);
    ck_assert_int_eq(journal_decode(entry, len, NULL, small, sizeof small), RK_EINVAL);
    free(entry);
    batch_free(&b);
}
END_TEST

/* ------------------------------------------------------------ children */

/* What a child reports to the test process. */
struct child_report {
    int rc[4];
    uint64_t n_acked;
    char msg[1024];
    char reason[1024]; /* why the child failed, for the test's message */
};

static struct child_report *report;

static void map_report(void)
{
    report = mmap(NULL, sizeof *report, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(report, MAP_FAILED);
    memset(report, 0, sizeof *report);
}

__attribute__((format(printf, 1, 2), noreturn)) static void child_fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(report->reason, sizeof report->reason, fmt, ap);
    va_end(ap);
    _exit(1);
}

#define CHILD_REQUIRE(cond, ...)                                                                             \
    do {                                                                                                     \
        if (!(cond))                                                                                         \
            child_fail(__VA_ARGS__);                                                                         \
    } while (0)

/* Forks fn(arg); the child never returns into the runner. */
static pid_t start_child(void (*fn)(void *), void *arg)
{
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        fn(arg);
        _exit(0);
    }
    return pid;
}

static int wait_child(pid_t pid)
{
    int status = 0;

    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void run_child(void (*fn)(void *), void *arg)
{
    int status = wait_child(start_child(fn, arg));

    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status 0x%x): %s", status,
                  report->reason);
}

/* The entry for seq: a batch that is a pure function of seq, so that any
 * process can make it again and compare. */
static void entry_for(uint64_t seq, struct batch *b, uint8_t **entry, size_t *len)
{
    uint64_t rng = seq * 0x9E3779B97F4A7C15ull + 1;

    batch_every_type(b, seq, 8 + seq * (1u << 20), (uint32_t)(seq % 17), &rng);
    if (journal_encode(&b->h, b->buf, b->len, 1, entry, len) != 0)
        abort();
}

static int append_seq(store *s, uint64_t seq)
{
    struct batch b;
    uint8_t *entry;
    size_t len;
    int rc;

    entry_for(seq, &b, &entry, &len);
    rc = store_journal_append(s, seq, entry, len);
    free(entry);
    batch_free(&b);
    return rc;
}

/* 1 if entry seq is in s and is the one entry_for() makes, 0 if it is
 * absent; anything else fails the test. */
static int entry_present(store *s, uint64_t seq)
{
    struct batch b;
    uint8_t *entry;
    journal_entry e;
    size_t len;
    int rc;

    rc = store_journal_get(s, seq, &e, why, sizeof why);
    if (rc == RK_ENOTFOUND) {
        assert_has(why, "not found");
        return 0;
    }
    ck_assert_msg(rc == 0, "entry %" PRIu64 ": %s: %s", seq, store_strerror(rc), why);
    entry_for(seq, &b, &entry, &len);
    ck_assert_uint_eq(e.h.seq, seq);
    ck_assert_uint_eq(e.h.raw_len, b.len);
    ck_assert_uint_eq(e.h.first_lsn, b.h.first_lsn);
    ck_assert_uint_eq(e.h.next_lsn, b.h.next_lsn);
    ck_assert_msg(memcmp(e.frames, b.buf, b.len) == 0, "entry %" PRIu64 ": frames differ", seq);
    journal_entry_free(&e);
    free(entry);
    batch_free(&b);
    return 1;
}

/* ------------------------------------------------------------ store */

START_TEST(missing_data_directory_is_named)
{
    char path[400], expect[600];
    store *s = (store *)&s;
    int rc, fd;

    snprintf(path, sizeof path, "%s/%d.no-such-dir", base_dir, (int)getpid());
    rc = store_open(path, STORE_CREATE, CACHE_MB, &s, err, sizeof err);
    ck_assert_int_eq(rc, ENOENT);
    ck_assert_ptr_null(s);
    snprintf(expect, sizeof expect, "data directory %s does not exist", path);
    ck_assert_str_eq(err, expect);

    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600); /* a file, not a directory */
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(store_open(path, STORE_CREATE, CACHE_MB, &s, err, sizeof err), ENOTDIR);
    assert_has(err, "is not a directory");

    new_data_dir("uninitialised");
    ck_assert_int_eq(store_open(data_dir, 0, CACHE_MB, &s, err, sizeof err), ENOENT);
    assert_has(err, "is not initialised");
    assert_has(err, "/db is missing");
    ck_assert_int_eq(store_open(NULL, 0, CACHE_MB, &s, err, sizeof err), RK_EINVAL);
    ck_assert_int_eq(store_open(data_dir, 0, CACHE_MB, NULL, err, sizeof err), RK_EINVAL);
}
END_TEST

START_TEST(open_makes_db_and_checkpoints_and_writes_the_pid)
{
    char path[400], text[64], expect[32];
    struct stat st;
    struct journal_header h;
    store *s;
    FILE *f;

    new_data_dir("layout");
    s = open_store(STORE_CREATE);
    ck_assert_str_eq(store_dir(s), data_dir);
    ck_assert_ptr_nonnull(store_env(s));
    ck_assert_ptr_nonnull(store_meta(s));
    ck_assert_int_eq(store_failed(s), 0);
    snprintf(path, sizeof path, "%s/db", data_dir);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    snprintf(path, sizeof path, "%s/checkpoints", data_dir);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    snprintf(path, sizeof path, "%s/db/journal.db", data_dir);
    ck_assert_int_eq(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/db/meta.db", data_dir);
    ck_assert_int_eq(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/LOCK", data_dir);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(text, sizeof text, f));
    fclose(f);
    snprintf(expect, sizeof expect, "%d\n", (int)getpid());
    ck_assert_str_eq(text, expect);
    ck_assert_int_eq(store_journal_last(s, &h), RK_ENOTFOUND);
    store_close(s);
    store_close(NULL);

    /* opened again without STORE_CREATE: everything is there */
    s = open_store(0);
    ck_assert_int_eq(store_journal_last(s, &h), RK_ENOTFOUND);
    store_close(s);
}
END_TEST

static void child_open_expect_busy(void *arg)
{
    pid_t holder = *(pid_t *)arg;
    char expect[600];
    store *s = NULL;
    int rc = store_open(data_dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);

    CHILD_REQUIRE(rc == RK_EBUSY, "second store_open returned %d (%s), want RK_EBUSY", rc, err);
    CHILD_REQUIRE(s == NULL, "handle set on failure");
    snprintf(expect, sizeof expect, "data directory %s is in use by pid %d: one node per data directory",
             data_dir, (int)holder);
    CHILD_REQUIRE(strcmp(err, expect) == 0, "message \"%s\", want \"%s\"", err, expect);
}

static void child_hold_store(void *arg)
{
    int *pipes = arg; /* [0] read end: the test says go; [1] write end: we say held */
    char c = 0;
    store *s = NULL;
    int rc = store_open(data_dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);

    CHILD_REQUIRE(rc == 0, "store_open in the child: %s", err);
    CHILD_REQUIRE(write(pipes[1], "h", 1) == 1, "write to the test");
    CHILD_REQUIRE(read(pipes[0], &c, 1) == 1, "read from the test");
    store_close(s);
}

START_TEST(second_open_is_busy_and_names_the_pid)
{
    int to_child[2], to_test[2], pipes[2];
    char c, expect[600];
    pid_t me = getpid(), child;
    store *s, *second = NULL;

    map_report();
    new_data_dir("busy");
    s = open_store(STORE_CREATE);

    /* this process again */
    ck_assert_int_eq(store_open(data_dir, STORE_CREATE, CACHE_MB, &second, err, sizeof err), RK_EBUSY);
    snprintf(expect, sizeof expect, "data directory %s is in use by pid %d: one node per data directory",
             data_dir, (int)me);
    ck_assert_str_eq(err, expect);
    ck_assert_ptr_null(second);

    /* a child process, while this one holds it */
    run_child(child_open_expect_busy, &me);
    store_close(s);

    /* this process, while a child holds it; then the child lets go */
    ck_assert_int_eq(pipe(to_child), 0);
    ck_assert_int_eq(pipe(to_test), 0);
    pipes[0] = to_child[0];
    pipes[1] = to_test[1];
    child = start_child(child_hold_store, pipes);
    ck_assert_int_eq(read(to_test[0], &c, 1), 1);
    ck_assert_int_eq(store_open(data_dir, STORE_CREATE, CACHE_MB, &second, err, sizeof err), RK_EBUSY);
    snprintf(expect, sizeof expect, "data directory %s is in use by pid %d: one node per data directory",
             data_dir, (int)child);
    ck_assert_str_eq(err, expect);
    ck_assert_int_eq(write(to_child[1], "g", 1), 1);
    ck_assert_int_eq(wait_child(child), 0);
    s = open_store(0);
    store_close(s);
    close(to_child[0]);
    close(to_child[1]);
    close(to_test[0]);
    close(to_test[1]);
}
END_TEST

START_TEST(append_last_get_round_trip_across_reopen)
{
    const uint64_t n = 40;
    struct journal_header h;
    journal_entry e;
    store *s;

    new_data_dir("round-trip");
    s = open_store(STORE_CREATE);
    for (uint64_t seq = 1; seq <= n; seq++) {
        ck_assert_int_eq(append_seq(s, seq), 0);
        ck_assert_int_eq(store_journal_last(s, &h), 0);
        ck_assert_uint_eq(h.seq, seq);
    }
    for (uint64_t seq = 1; seq <= n; seq++)
        ck_assert_int_eq(entry_present(s, seq), 1);
    ck_assert_int_eq(store_journal_get(s, n + 1, &e, why, sizeof why), RK_ENOTFOUND);
    ck_assert_ptr_null(e.frames);
    ck_assert_int_eq(store_journal_get(s, 0, &e, why, sizeof why), RK_ENOTFOUND);
    store_close(s);

    for (int round = 0; round < 2; round++) {
        struct batch b;
        uint8_t *entry;
        size_t len;

        s = open_store(0);
        ck_assert_int_eq(store_journal_last(s, &h), 0);
        entry_for(n, &b, &entry, &len);
        ck_assert_uint_eq(h.seq, n);
        ck_assert_uint_eq(h.last_lsn, b.h.last_lsn);
        ck_assert_uint_eq(h.next_lsn, b.h.next_lsn);
        ck_assert_uint_eq(h.n_frames, b.h.n_frames);
        for (uint64_t seq = 1; seq <= n; seq++)
            ck_assert_int_eq(entry_present(s, seq), 1);
        free(entry);
        batch_free(&b);
        store_close(s);
    }
}
END_TEST

/* STORE_RING_MADE_FILE: absent, written and read back (across a reopen
 * and a replaced db/), and refused with a reason when it is not a ring
 * identity, the file left as it was. */
START_TEST(ring_identity_beside_db_round_trips_and_bad_files_are_refused)
{
    struct store_ring_record rec = {.created_ns = 1796526768339307209ull, .capacity = 1u << 20}, got;
    char path[300], aside[300], body[64];
    const char *bad[] = {"",
                         "{",
                         "[]",
                         "{\"name\":\"r\",\"created_ns\":1}",
                         "{\"name\":\"r\",\"created_ns\":1,\"capacity\":1,\"extra\":1}",
                         "{\"name\":\"r\",\"created_ns\":-1,\"capacity\":1}",
                         ("{\"name\":\"0123456789012345678901234567890123456789012345678\",\"created_ns\":1,"
                          "\"capacity\":1}")};
    store *s;
    FILE *f;

    new_data_dir("ring-made");
    snprintf(rec.name, sizeof rec.name, "ring-%d", (int)getpid());
    s = open_store(STORE_CREATE);
    ck_assert_int_eq(store_ring_made_read(s, &got, why, sizeof why), RK_ENOTFOUND);
    ck_assert_int_eq(store_ring_made_write(s, &rec), 0);
    store_close(s);
    /* db/ replaced (as a rebuild or a bootstrap does): the file stays */
    snprintf(path, sizeof path, "%s/db", data_dir);
    snprintf(aside, sizeof aside, "%s/db-aside", data_dir);
    ck_assert_int_eq(rename(path, aside), 0);
    s = open_store(STORE_CREATE);
    ck_assert_int_eq(store_ring_record(s, &got), RK_ENOTFOUND);
    memset(&got, 0xa5, sizeof got);
    ck_assert_int_eq(store_ring_made_read(s, &got, why, sizeof why), 0);
    ck_assert_str_eq(got.name, rec.name);
    ck_assert_uint_eq(got.created_ns, rec.created_ns);
    ck_assert_uint_eq(got.capacity, rec.capacity);
    snprintf(path, sizeof path, "%s/" STORE_RING_MADE_FILE, data_dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_ptr_nonnull(f = fopen(path, "w"));
        ck_assert_int_ge(fputs(bad[i], f), 0);
        ck_assert_int_eq(fclose(f), 0);
        why[0] = '\0';
        ck_assert_msg(store_ring_made_read(s, &got, why, sizeof why) == RK_ECORRUPT, "accepted: %s", bad[i]);
        ck_assert_msg(strstr(why, path) && strstr(why, "not a ring identity"), "%s", why);
        ck_assert_ptr_nonnull(f = fopen(path, "r")); /* left as it was */
        size_t n = fread(body, 1, sizeof body - 1, f);
        body[n] = '\0';
        fclose(f);
        ck_assert_int_eq(strncmp(body, bad[i], sizeof body - 1), 0);
    }
    store_close(s);
}
END_TEST

/* A fence an earlier build kept in meta.db ("fenced_by") is written
 * beside db/ (fenced.json) when the store opens, so that a rejoin's
 * rebuild, which replaces db/, cannot lose it (found in review); a
 * promotion's 0 there copies nothing, and store_fence_write(0) removes the
 * file. */
START_TEST(a_fence_in_meta_db_is_kept_beside_db)
{
    uint64_t epoch = 7, got = 1;
    char path[400];
    store *s;

    new_data_dir("fence");
    s = open_store(STORE_CREATE);
    ck_assert_int_eq(store_fence_read(s, &got, err, sizeof err), 0);
    ck_assert_uint_eq(got, 0);
    {
        DB *meta = store_meta(s);
        DBT k = {.data = STORE_OLD_FENCED_KEY, .size = (u_int32_t)strlen(STORE_OLD_FENCED_KEY)};
        DBT v = {.data = &epoch, .size = sizeof epoch};
        ck_assert_int_eq(meta->put(meta, NULL, &k, &v, DB_AUTO_COMMIT), 0);
    }
    store_close(s);
    snprintf(path, sizeof path, "%s/" STORE_FENCED_FILE, data_dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    s = open_store(0);
    ck_assert_int_eq(access(path, F_OK), 0);
    ck_assert_int_eq(store_fence_read(s, &got, err, sizeof err), 0);
    ck_assert_uint_eq(got, 7);
    ck_assert_int_eq(store_fence_write(s, 0), 0);
    ck_assert_int_ne(access(path, F_OK), 0);
    {
        DB *meta = store_meta(s);
        DBT k = {.data = STORE_OLD_FENCED_KEY, .size = (u_int32_t)strlen(STORE_OLD_FENCED_KEY)};
        DBT v = {.data = &(uint64_t){0}, .size = sizeof(uint64_t)};
        ck_assert_int_eq(meta->put(meta, NULL, &k, &v, DB_AUTO_COMMIT), 0);
    }
    store_close(s);
    s = open_store(0);
    ck_assert_int_ne(access(path, F_OK), 0);
    /* a file that is not a fence record is refused, with its name */
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"fenced_by\":\"x\"}", f);
    fclose(f);
    ck_assert_int_eq(store_fence_read(s, &got, err, sizeof err), RK_ECORRUPT);
    assert_has(err, STORE_FENCED_FILE);
    store_close(s);
    remove_tree(data_dir);
}
END_TEST

START_TEST(duplicate_seq_is_refused)
{
    struct batch b;
    uint8_t *entry;
    size_t len;
    store *s;

    new_data_dir("duplicate");
    s = open_store(STORE_CREATE);
    ck_assert_int_eq(append_seq(s, 1), 0);
    entry_for(1, &b, &entry, &len);
    entry[JOURNAL_HEADER_SIZE] ^= 1; /* a different entry under the same key */
    reseal(entry, len);
    ck_assert_int_eq(store_journal_append(s, 1, entry, len), DB_KEYEXIST);
    ck_assert_int_eq(store_failed(s), 0);
    ck_assert_int_eq(entry_present(s, 1), 1); /* the first one, untouched */

    /* an entry whose header says another sequence, or too short to be one */
    ck_assert_int_eq(store_journal_append(s, 2, entry, len), RK_EINVAL);
    ck_assert_int_eq(store_journal_append(s, 1, entry, JOURNAL_HEADER_SIZE), RK_EINVAL);
    ck_assert_int_eq(store_journal_append(s, 1, NULL, 0), RK_EINVAL);
    ck_assert_int_eq(store_failed(s), 0);

    ck_assert_int_eq(append_seq(s, 2), 0);
    ck_assert_int_eq(entry_present(s, 2), 1);
    free(entry);
    batch_free(&b);
    store_close(s);
}
END_TEST

/* store_journal_append_many: n entries in one synced transaction, stored
 * byte for byte; all or none (an entry of another sequence, or one already
 * there, in the middle stores none of them). */
START_TEST(append_many_is_all_or_none)
{
    enum { N = 40 };
    struct batch b[N + 2];
    uint8_t *entry[N + 2];
    size_t len[N + 2];
    store *s;

    new_data_dir("many");
    s = open_store(STORE_CREATE);
    for (uint64_t i = 0; i < N + 2; i++)
        entry_for(i + 1, &b[i], &entry[i], &len[i]);
    ck_assert_int_eq(store_journal_append_many(s, 1, (const uint8_t *const *)entry, len, 10), 0);
    /* entry 12 where 11 belongs: none of 11..20 is stored */
    {
        const uint8_t *wrong[10];
        size_t wrong_len[10];
        for (int i = 0; i < 10; i++) {
            wrong[i] = entry[10 + i + (i == 5)];
            wrong_len[i] = len[10 + i + (i == 5)];
        }
        ck_assert_int_eq(store_journal_append_many(s, 11, wrong, wrong_len, 10), RK_EINVAL);
    }
    ck_assert_int_eq(entry_present(s, 11), 0);
    ck_assert_int_eq(store_journal_append_many(s, 11, (const uint8_t *const *)entry + 10, len + 10, 0), RK_EINVAL);
    /* 9..12: 9 and 10 are there already; 11 and 12 are not stored either */
    ck_assert_int_eq(store_journal_append_many(s, 9, (const uint8_t *const *)entry + 8, len + 8, 4), DB_KEYEXIST);
    ck_assert_int_eq(store_failed(s), 0);
    ck_assert_int_eq(entry_present(s, 11), 0);
    ck_assert_int_eq(entry_present(s, 12), 0);
    ck_assert_int_eq(store_journal_append_many(s, 11, (const uint8_t *const *)entry + 10, len + 10, N - 10), 0);
    store_close(s);

    s = open_store(0);
    for (uint64_t seq = 1; seq <= N + 2; seq++) {
        uint8_t *got = NULL;
        size_t got_len = 0;
        int rc = store_journal_get_raw(s, seq, &got, &got_len);
        if (seq > N) {
            ck_assert_int_eq(rc, RK_ENOTFOUND);
        } else {
            ck_assert_int_eq(rc, 0);
            ck_assert_uint_eq(got_len, len[seq - 1]);
            ck_assert_mem_eq(got, entry[seq - 1], got_len);
        }
        free(got);
    }
    store_close(s);
    for (int i = 0; i < N + 2; i++) {
        free(entry[i]);
        batch_free(&b[i]);
    }
}
END_TEST

START_TEST(trim_removes_entries_below_seq)
{
    const uint64_t n = 1100; /* more than one trim transaction */
    struct journal_header h;
    uint8_t *entry;
    struct batch b;
    size_t len;
    store *s;

    uint64_t xxh[2] = {0, 0}, tail_seq = 0, tail_xxh = 0, first = 0;

    new_data_dir("trim");
    s = open_store(STORE_CREATE);
    for (uint64_t seq = 1; seq <= n; seq++) {
        batch_init(&b, seq, seq * 64);
        batch_add(&b, FRAME_MARK, 0, 0, NULL, 0, &seq, 8);
        encode_batch(&b, 1, &entry, &len);
        ck_assert_int_eq(store_journal_append(s, seq, entry, len), 0);
        if (seq == 1049 || seq == n - 1) /* the trailer: XXH64, big-endian */
            for (int i = 0; i < 8; i++)
                xxh[seq != 1049] = xxh[seq != 1049] << 8 | entry[len - 8 + (size_t)i];
        free(entry);
        batch_free(&b);
    }
    ck_assert_int_eq(store_journal_trim(s, 1), 0); /* nothing below 1 */
    ck_assert_int_eq(store_journal_trimmed_tail(s, &tail_seq, &tail_xxh), RK_ENOTFOUND);
    ck_assert_int_eq(store_journal_trim(s, 1050), 0);
    store_close(s);

    s = open_store(0);
    for (uint64_t seq = 1; seq <= n; seq++) {
        journal_entry e;
        int rc = store_journal_get(s, seq, &e, why, sizeof why);
        ck_assert_msg(rc == (seq < 1050 ? RK_ENOTFOUND : 0), "entry %" PRIu64 ": %d", seq, rc);
        journal_entry_free(&e);
    }
    ck_assert_int_eq(store_journal_last(s, &h), 0);
    ck_assert_uint_eq(h.seq, n);
    /* the last entry removed is recorded, with its XXH64 */
    ck_assert_int_eq(store_journal_trimmed_tail(s, &tail_seq, &tail_xxh), 0);
    ck_assert_uint_eq(tail_seq, 1049);
    ck_assert_uint_eq(tail_xxh, xxh[0]);
    /* a trim past the end keeps the last entry (issue 13.6) */
    ck_assert_int_eq(store_journal_trim(s, n + 10), 0);
    ck_assert_int_eq(store_journal_last(s, &h), 0);
    ck_assert_uint_eq(h.seq, n);
    ck_assert_int_eq(store_journal_first(s, &first), 0);
    ck_assert_uint_eq(first, n);
    ck_assert_int_eq(store_journal_trimmed_tail(s, &tail_seq, &tail_xxh), 0);
    ck_assert_uint_eq(tail_seq, n - 1);
    ck_assert_uint_eq(tail_xxh, xxh[1]);
    store_close(s);
}
END_TEST

/* A trim of many large entries ends its transaction every few
 * milliseconds, so that an append (which takes its pages from the free
 * list the trim's transaction holds) waits for one short transaction, not
 * for the whole trim: 400 entries of 128 KiB (16 overflow pages each)
 * cannot all be freed within the 2 ms bound of one transaction (it took
 * one transaction before the bound: the drain's append then waited 447 ms
 * in bench_checkpoint).  The entries below the point are gone, those from
 * it on are whole. */
START_TEST(trim_of_large_entries_takes_short_transactions)
{
    const uint64_t n = 400, below = 390;
    const uint32_t vlen = 128u << 10;
    uint8_t *val = malloc(vlen);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    DB_TXN_STAT *st;
    uint32_t commits0;
    struct batch b;
    uint8_t *entry;
    size_t len;
    store *s;

    ck_assert_ptr_nonnull(val);
    new_data_dir("trim-large");
    s = open_store(STORE_CREATE);
    for (uint64_t seq = 1; seq <= n; seq++) {
        for (uint32_t i = 0; i < vlen; i += 8) { /* incompressible: zstd keeps it 128 KiB */
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            memcpy(val + i, &x, 8);
        }
        batch_init(&b, seq, seq * (vlen + 256));
        batch_add(&b, FRAME_PUT, 0, 0, "k", 1, val, vlen);
        encode_batch(&b, 1, &entry, &len);
        ck_assert_uint_ge(len, vlen);
        ck_assert_int_eq(store_journal_append(s, seq, entry, len), 0);
        free(entry);
        batch_free(&b);
    }
    ck_assert_int_eq(store_env(s)->txn_stat(store_env(s), &st, 0), 0);
    commits0 = st->st_ncommits;
    free(st);
    ck_assert_int_eq(store_journal_trim(s, below), 0);
    ck_assert_int_eq(store_env(s)->txn_stat(store_env(s), &st, 0), 0);
    uint32_t n_txns = st->st_ncommits - commits0;
    ck_assert_msg(n_txns >= 2, "the trim of %" PRIu64 " entries of %" PRIu32 " bytes took %" PRIu32 " transaction(s)",
                  below - 1, vlen, n_txns);
    free(st);
    store_close(s);

    s = open_store(0);
    uint64_t first = 0;
    ck_assert_int_eq(store_journal_first(s, &first), 0);
    ck_assert_uint_eq(first, below);
    for (uint64_t seq = below; seq <= n; seq++) {
        journal_entry e;
        ck_assert_int_eq(store_journal_get(s, seq, &e, why, sizeof why), 0);
        ck_assert_uint_eq(e.h.seq, seq);
        journal_entry_free(&e);
    }
    store_close(s);
    free(val);
}
END_TEST

START_TEST(corrupt_entry_in_the_database_is_reported)
{
    struct journal_header h;
    struct batch b;
    journal_entry e;
    uint8_t *entry;
    char msg[600];
    size_t len;
    store *s;

    new_data_dir("corrupt");
    s = open_store(STORE_CREATE);
    ck_assert_int_eq(append_seq(s, 1), 0);
    entry_for(2, &b, &entry, &len);
    entry[JOURNAL_HEADER_SIZE + 5] ^= 0x10; /* the checksum no longer matches */
    ck_assert_int_eq(store_journal_append(s, 2, entry, len), 0);
    ck_assert_int_eq(store_journal_get(s, 2, &e, why, sizeof why), RK_ECORRUPT);
    assert_has(why, "journal entry 2: checksum mismatch");
    ck_assert_ptr_null(e.frames);
    ck_assert_int_eq(store_journal_last(s, &h), RK_ECORRUPT);
    store_last_error(s, msg, sizeof msg);
    assert_has(msg, "journal entry 2: checksum mismatch");
    ck_assert_int_eq(entry_present(s, 1), 1);
    free(entry);
    batch_free(&b);
    store_close(s);
}
END_TEST

/* Appends 1..KILL_APPENDS, reporting each acknowledged sequence, and is
 * SIGKILLed by the test on the way (or kills itself at the end, right
 * after the last append returned). */
static void child_append_until_killed(void *arg)
{
    int fd = *(int *)arg;
    store *s = NULL;
    int rc = store_open(data_dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);

    CHILD_REQUIRE(rc == 0, "store_open: %s", err);
    for (uint64_t seq = 1; seq <= KILL_APPENDS; seq++) {
        rc = append_seq(s, seq);
        CHILD_REQUIRE(rc == 0, "append %" PRIu64 ": %s", seq, store_strerror(rc));
        report->n_acked = seq;
        CHILD_REQUIRE(write(fd, &seq, sizeof seq) == sizeof seq, "write to the test");
    }
    raise(SIGKILL);
}

/* _i: 0 the test kills the child after 10 acknowledgements; 1 the child
 * kills itself right after its last append returned */
START_TEST(acknowledged_entries_survive_sigkill)
{
    uint64_t acked = 0, seq, n_present = 0;
    int fds[2], status;
    pid_t child;
    store *s;

    map_report();
    new_data_dir("sigkill");
    ck_assert_int_eq(pipe(fds), 0);
    child = start_child(child_append_until_killed, &fds[1]);
    close(fds[1]);
    for (int i = 0; i < KILL_APPENDS; i++) {
        if (read(fds[0], &seq, sizeof seq) != sizeof seq)
            break;
        acked = seq;
        if (_i == 0 && acked == 10) {
            kill(child, SIGKILL);
            break;
        }
    }
    status = wait_child(child);
    close(fds[0]);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child ended with 0x%x: %s", status,
                  report->reason);
    acked = report->n_acked > acked ? report->n_acked : acked;
    ck_assert_uint_ge(acked, _i == 0 ? 10 : KILL_APPENDS);

    s = open_store(0); /* recovery */
    for (seq = 1; seq <= KILL_APPENDS + 1; seq++) {
        int present = entry_present(s, seq);
        ck_assert_msg(present || seq > acked, "acknowledged entry %" PRIu64 " is missing", seq);
        if (!present)
            break;
        n_present++;
    }
    /* the one in flight may be there or not; nothing after a gap */
    ck_assert_uint_le(n_present, acked + 1);
    for (seq = n_present + 1; seq <= KILL_APPENDS; seq++)
        ck_assert_int_eq(entry_present(s, seq), 0);
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------ faults */

static const struct {
    const char *spec;
    int err;          /* what the append must return */
    const char *what; /* in Berkeley DB's message */
} fault_specs[] = {
    {"fsync:EIO:1", EIO, "fsync: Input/output error"},
    {"fsync:EIO:2", EIO, "fsync: Input/output error"},
    {"fsync:ENOSPC:3", ENOSPC, "fsync: No space left on device"},
    {"write:EIO:1", EIO, "write"},
    {"write:ENOSPC:1", ENOSPC, "No space left on device"},
    {"write:EIO:2", EIO, "Input/output error"},
    {"write:EROFS:5", EROFS, "Read-only file system"},
};
#define N_FAULT_SPECS ((int)(sizeof fault_specs / sizeof fault_specs[0]))

/* Opens, appends entry 1 healthy, arms the fault, appends until one fails;
 * reports the failing sequence, its code, the sticky code, BDB's words. */
static void child_append_under_fault(void *arg)
{
    const char *spec = arg;
    store *s = NULL;
    int rc = store_open(data_dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);

    CHILD_REQUIRE(rc == 0, "store_open: %s", err);
    CHILD_REQUIRE(append_seq(s, 1) == 0, "healthy append");
    report->n_acked = 1;
    CHILD_REQUIRE(sys_fault_arm(spec) == 0, "sys_fault_arm(%s)", spec);
    for (uint64_t seq = 2; seq < 2 + MAX_FAULT_APPENDS; seq++) {
        rc = append_seq(s, seq);
        if (rc) {
            report->rc[0] = rc;
            report->rc[1] = append_seq(s, seq + 1); /* sticky */
            report->rc[2] = store_failed(s);
            store_last_error(s, report->msg, sizeof report->msg);
            break;
        }
        report->n_acked = seq;
    }
    store_close(s);
}

START_TEST(failed_append_leaves_a_consistent_store)
{
    const char *spec = fault_specs[_i].spec;
    uint64_t failed_seq;
    struct journal_header h;
    store *s;

    map_report();
    new_data_dir("fault");
    run_child(child_append_under_fault, (void *)spec);
    ck_assert_msg(report->rc[0] != 0, "%s: no append failed in %d tries", spec, MAX_FAULT_APPENDS);
    ck_assert_msg(report->rc[1] != 0, "%s: an append after the failure succeeded", spec);
    ck_assert_int_eq(report->rc[2], report->rc[0]);
    ck_assert_msg(report->rc[0] == fault_specs[_i].err, "%s: append returned %d (%s)", spec, report->rc[0],
                  store_strerror(report->rc[0]));
    ck_assert_int_eq(report->rc[1], report->rc[0]);
    assert_has(report->msg, fault_specs[_i].what);
    failed_seq = report->n_acked + 1;

    /* this process never armed anything: reopen with recovery */
    s = open_store(0);
    for (uint64_t seq = 1; seq < failed_seq; seq++)
        ck_assert_msg(entry_present(s, seq) == 1, "%s: acknowledged entry %" PRIu64 " is missing", spec, seq);
    entry_present(s, failed_seq); /* absent, or whole: anything else fails */
    ck_assert_int_eq(entry_present(s, failed_seq + 1), 0);
    ck_assert_int_eq(store_journal_last(s, &h), 0);
    ck_assert_uint_ge(h.seq, failed_seq - 1);
    ck_assert_uint_le(h.seq, failed_seq);
    /* and the store works again */
    ck_assert_int_eq(append_seq(s, h.seq + 1), 0);
    ck_assert_int_eq(entry_present(s, h.seq + 1), 1);
    store_close(s);
}
END_TEST

static void child_open_with_env_fault(void *arg)
{
    store *s = NULL;
    int rc;

    (void)arg;
    setenv("RK_FAULT", "open:EIO:1", 1);
    rc = store_open(data_dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);
    report->rc[0] = rc;
    snprintf(report->msg, sizeof report->msg, "%s", err);
    CHILD_REQUIRE(rc == EIO, "store_open under RK_FAULT=open:EIO:1 returned %d (%s)", rc, err);
    /* the fault is sticky */
    rc = store_open(data_dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);
    CHILD_REQUIRE(rc == EIO, "second store_open returned %d (%s)", rc, err);
    CHILD_REQUIRE(sys_fault_arm(NULL) == 0, "disarm");
    rc = store_open(data_dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);
    CHILD_REQUIRE(rc == 0, "store_open after disarming: %s", err);
    store_close(s);
}

static void child_open_with_fsync_fault(void *arg)
{
    store *s = NULL;
    int rc;

    (void)arg;
    CHILD_REQUIRE(sys_fault_arm("fsync:EIO:1") == 0, "arm");
    rc = store_open(data_dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);
    snprintf(report->msg, sizeof report->msg, "%s", err);
    CHILD_REQUIRE(rc != 0 && s == NULL, "store_open with failing fsync returned %d", rc);
}

START_TEST(fault_from_the_environment_fails_store_open)
{
    map_report();
    new_data_dir("env-fault");
    run_child(child_open_with_env_fault, NULL);
    assert_has(report->msg, "/LOCK: Input/output error");

    /* a store that cannot fsync does not open */
    remove_tree(data_dir);
    new_data_dir("fsync-fault");
    run_child(child_open_with_fsync_fault, NULL);
    assert_has(report->msg, "Input/output error");
}
END_TEST

static void child_counts_calls(void *arg)
{
    char a[400], b[400];
    int fd, rc;

    (void)arg;
    snprintf(a, sizeof a, "%s/a", data_dir);
    snprintf(b, sizeof b, "%s/b", data_dir);
    fd = sys_open(a, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    CHILD_REQUIRE(fd >= 0, "sys_open: %s", strerror(errno));

    /* the 3rd rename from now fails, and every one after it */
    CHILD_REQUIRE(sys_fault_arm("rename:EROFS:3") == 0, "arm");
    CHILD_REQUIRE(sys_rename(a, b) == 0 && sys_rename(b, a) == 0, "first two renames");
    for (int i = 0; i < 3; i++) {
        errno = 0;
        rc = sys_rename(a, b);
        CHILD_REQUIRE(rc == -1 && errno == EROFS, "rename %d after the fault: %d, errno %d", 3 + i, rc,
                      errno);
    }
    /* arming again restarts the count */
    CHILD_REQUIRE(sys_fault_arm("rename:EIO:1") == 0, "arm again");
    CHILD_REQUIRE(sys_rename(a, b) == -1 && errno == EIO, "rename under EIO:1");
    CHILD_REQUIRE(sys_fault_arm("") == 0, "disarm");
    CHILD_REQUIRE(sys_rename(a, b) == 0 && sys_rename(b, a) == 0, "renames after disarming");

    /* write and pwrite share one count; other ops are not affected */
    CHILD_REQUIRE(sys_fault_arm("write:ENOSPC:3") == 0, "arm write");
    CHILD_REQUIRE(sys_write(fd, "x", 1) == 1, "write 1");
    CHILD_REQUIRE(sys_pwrite(fd, "y", 1, 5) == 1, "pwrite 2");
    CHILD_REQUIRE(sys_pwrite(fd, "z", 1, 0) == -1 && errno == ENOSPC, "pwrite 3");
    CHILD_REQUIRE(sys_write(fd, "z", 1) == -1 && errno == ENOSPC, "write 4");
    CHILD_REQUIRE(sys_fsync(fd) == 0 && sys_ftruncate(fd, 0) == 0, "fsync and ftruncate unaffected");
    CHILD_REQUIRE(sys_fault_arm("unlink:EIO:1") == 0 && sys_unlink(a) == -1 && errno == EIO, "unlink");
    CHILD_REQUIRE(sys_fault_arm("open:ENOMEM:1") == 0 && sys_open(a, O_RDONLY) == -1 && errno == ENOMEM,
                  "open");
    close(fd);
}

/* The once mode, as Linux reports a writeback error: only the Nth
 * matching call fails, the ones before and after it pass; PATH_GLOB and
 * THREAD_GLOB choose which calls count.  The failure is remembered
 * (sys_io_failed), and a store then acknowledges nothing more, although
 * its own fsyncs would pass again. */
static void child_once_fault(void *arg)
{
    char a[400], b[400], c[400];
    int fa, fb;
    store *s = NULL;
    int rc;

    (void)arg;
    snprintf(a, sizeof a, "%s/a", data_dir);
    snprintf(b, sizeof b, "%s/b", data_dir);
    snprintf(c, sizeof c, "%s/c", data_dir);
    fa = sys_open(a, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    fb = sys_open(b, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    CHILD_REQUIRE(fa >= 0 && fb >= 0, "sys_open: %s", strerror(errno));

    /* only the 2nd fsync fails */
    CHILD_REQUIRE(sys_fault_arm("fsync:EIO:once@2") == 0, "arm");
    CHILD_REQUIRE(sys_fsync(fa) == 0, "fsync 1");
    errno = 0;
    CHILD_REQUIRE(sys_fsync(fa) == -1 && errno == EIO, "fsync 2 did not fail with EIO (errno %d)", errno);
    for (int i = 3; i <= 5; i++)
        CHILD_REQUIRE(sys_fsync(fa) == 0, "fsync %d after the once fault failed: %s", i, strerror(errno));
    CHILD_REQUIRE(sys_io_failed() == EIO, "the failed fsync is not remembered: %d", sys_io_failed());

    /* only writes to a file matching the glob count */
    CHILD_REQUIRE(sys_fault_arm("write:ENOSPC:once@2:*/b") == 0, "arm with a path");
    CHILD_REQUIRE(sys_write(fb, "1", 1) == 1, "write 1 to b");
    for (int i = 0; i < 3; i++)
        CHILD_REQUIRE(sys_write(fa, "x", 1) == 1, "a write to a counted");
    errno = 0;
    CHILD_REQUIRE(sys_pwrite(fb, "2", 1, 1) == -1 && errno == ENOSPC, "write 2 to b did not fail (errno %d)",
                  errno);
    CHILD_REQUIRE(sys_write(fb, "3", 1) == 1 && sys_write(fa, "y", 1) == 1, "writes after the once fault");

    /* only calls of a thread with a matching name count; either name of
     * a rename matches */
    CHILD_REQUIRE(pthread_setname_np(pthread_self(), "other") == 0, "name the thread");
    CHILD_REQUIRE(sys_fault_arm("rename:EROFS:once@1:*/c:rk-seam*") == 0, "arm with a thread");
    CHILD_REQUIRE(sys_rename(a, c) == 0 && sys_rename(c, a) == 0, "renames of another thread counted");
    CHILD_REQUIRE(pthread_setname_np(pthread_self(), "rk-seam-test") == 0, "name the thread");
    CHILD_REQUIRE(sys_rename(a, b) == 0, "a rename of other files counted");
    CHILD_REQUIRE(sys_rename(b, a) == 0, "a rename of other files counted");
    errno = 0;
    CHILD_REQUIRE(sys_rename(a, c) == -1 && errno == EROFS, "rename to c did not fail (errno %d)", errno);
    CHILD_REQUIRE(sys_rename(a, c) == 0 && sys_rename(c, a) == 0, "renames after the once fault");
    close(fa);
    close(fb);

    /* the store: its own fsyncs pass, but after a failed fsync anywhere
     * it acknowledges nothing (entries 1..3 were appended before) */
    CHILD_REQUIRE(sys_fault_arm(NULL) == 0, "disarm");
    rc = store_open(data_dir, 0, CACHE_MB, &s, err, sizeof err);
    CHILD_REQUIRE(rc == 0, "store_open: %s", err);
    rc = append_seq(s, 4);
    report->rc[0] = rc;
    report->rc[1] = store_failed(s);
    store_close(s);
}

/* Appends entries 1..3 in a process that never armed a fault. */
static void child_append_three(void *arg)
{
    store *s = NULL;
    int rc = store_open(data_dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);

    (void)arg;
    CHILD_REQUIRE(rc == 0, "store_open: %s", err);
    for (uint64_t seq = 1; seq <= 3; seq++)
        CHILD_REQUIRE(append_seq(s, seq) == 0, "append %" PRIu64, seq);
    store_close(s);
}

START_TEST(seam_once_fault_fails_one_matching_call_then_passes)
{
    store *s;

    map_report();
    new_data_dir("once");
    run_child(child_append_three, NULL);
    run_child(child_once_fault, NULL);
    ck_assert_msg(report->rc[0] == EIO, "an append after a failed fsync returned %d (%s), want EIO",
                  report->rc[0], store_strerror(report->rc[0]));
    ck_assert_int_eq(report->rc[1], EIO);
    s = open_store(0);
    for (uint64_t seq = 1; seq <= 3; seq++)
        ck_assert_msg(entry_present(s, seq) == 1, "entry %" PRIu64 " is missing", seq);
    ck_assert_int_eq(entry_present(s, 4), 0);
    store_close(s);
}
END_TEST

START_TEST(seam_fails_from_the_nth_call_and_stays_failed)
{
    map_report();
    new_data_dir("seam");
    run_child(child_counts_calls, NULL);
}
END_TEST

/* Berkeley DB skips its own FD_CLOEXEC on files opened through a
 * replacement open: the seam must add it, or every exec'd child of the
 * node inherits the database files. */
START_TEST(database_files_are_closed_on_exec)
{
    char link[64], target[512];
    int n_checked = 0;
    store *s;

    new_data_dir("cloexec");
    s = open_store(STORE_CREATE);
    ck_assert_int_eq(append_seq(s, 1), 0);
    for (int fd = 0; fd < 1024; fd++) {
        ssize_t n;
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strncmp(target, data_dir, strlen(data_dir)) != 0)
            continue;
        ck_assert_msg(fcntl(fd, F_GETFD) & FD_CLOEXEC, "fd %d (%s) is inherited across exec", fd, target);
        n_checked++;
    }
    ck_assert_int_ge(n_checked, 3); /* LOCK, a log file, journal.db at least */
    store_close(s);
}
END_TEST

START_TEST(fault_specs_are_parsed_strictly)
{
    static const char *const good[] = {"fsync:EIO:1",
                                       "write:ENOSPC:10",
                                       "open:EROFS:2",
                                       "rename:ENOMEM:1",
                                       "unlink:EIO:3",
                                       "ftruncate:EIO:4",
                                       "mkdir:EIO:1",
                                       "fsync:EIO:once@1",
                                       "write:ENOSPC:once@3:*/journal.db",
                                       "fsync:EIO:2:*:rk-checkpoint",
                                       "fsync:EIO:once@2::rk-*",
                                       "",
                                       NULL};
    static const char *const bad[] = {"fsync",
                                      "fsync:EIO",
                                      "fsync:EIO:0",
                                      "fsync:EIO:-1",
                                      "fsync:EIO: 1",
                                      "fsync:EIO:1x",
                                      "fsync:EPERM:1",
                                      "read:EIO:1",
                                      ":EIO:1",
                                      "fsync::1",
                                      "FSYNC:EIO:1",
                                      "fsync:eio:1",
                                      "fsync:EIO:once@0",
                                      "fsync:EIO:once@",
                                      "fsync:EIO:once1",
                                      "fsync:EIO:twice@1",
                                      "fsync:EIO:once@1x:*",
                                      "fsync:EIO:99999999999999999999999"};
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) { /* arming is process-global: in a child */
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
            if (sys_fault_arm(good[i]) != 0)
                _exit(10 + (int)i);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            if (sys_fault_arm(bad[i]) != RK_EINVAL)
                _exit(30 + (int)i);
        _exit(0);
    }
    ck_assert_int_eq(wait_child(pid), 0);
}
END_TEST

START_TEST(store_strerror_covers_every_source)
{
    assert_has(store_strerror(0), "success");
    assert_has(store_strerror(RK_ECORRUPT), "corrupt");
    assert_has(store_strerror(RK_EBUSY), "live process");
    assert_has(store_strerror(EIO), "Input/output error");
    assert_has(store_strerror(ENOSPC), "No space left");
    assert_has(store_strerror(DB_KEYEXIST), "already exists");
    assert_has(store_strerror(DB_RUNRECOVERY), "recovery");
    ck_assert_ptr_nonnull(store_strerror(-1));
}
END_TEST

/* ------------------------------------------------------------ suite */

static TCase *new_tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);

    tcase_set_timeout(tc, 0); /* no time limits: machines are shared and noisy */
    suite_add_tcase(s, tc);
    return tc;
}


/* A data directory being built (restore, import): its marker is made by
 * STORE_BUILDING, a directory that still has it is refused, store_built
 * makes it durable and removes the marker, and the entries are there. */
START_TEST(unfinished_build_is_refused)
{
    char marker[400];
    struct stat st;
    store *s, *again = NULL;
    journal_entry e = {0};

    new_data_dir("building");
    snprintf(marker, sizeof marker, "%s/%s", data_dir, STORE_BUILDING_FILE);
    s = open_store(STORE_CREATE | STORE_BUILDING);
    ck_assert_int_eq(stat(marker, &st), 0);
    for (uint64_t seq = 1; seq <= 5; seq++)
        ck_assert_int_eq(append_seq(s, seq), 0);
    store_close(s); /* as if the builder stopped here */
    ck_assert_int_eq(store_open(data_dir, 0, CACHE_MB, &again, err, sizeof err), RK_EBUSY);
    ck_assert_ptr_null(again);
    assert_has(err, "unfinished restore or import");
    assert_has(err, "remove the folder");
    s = open_store(STORE_BUILDING);
    ck_assert_int_eq(append_seq(s, 6), 0);
    ck_assert_int_eq(store_built(s), 0);
    ck_assert_int_ne(stat(marker, &st), 0);
    store_close(s);
    s = open_store(0);
    for (uint64_t seq = 1; seq <= 6; seq++) {
        ck_assert_int_eq(store_journal_get(s, seq, &e, why, sizeof why), 0);
        journal_entry_free(&e);
    }
    ck_assert_int_eq(store_built(s), RK_EINVAL); /* not being built */
    store_close(s);
    remove_tree(data_dir);
}
END_TEST

/* ------------------------------------------------------------ apply */

/* Forges entry b (plain body, correct trailer, frames not checked by
 * journal_encode) and appends it: the journal as a bad writer left it. */
static void append_forged(store *s, const struct batch *b)
{
    struct journal_header h = header_for(b, b->len);
    size_t len;
    uint8_t *entry = forge(&h, b->buf, b->len, &len);

    ck_assert_int_eq(store_journal_append(s, b->h.seq, entry, len), 0);
    free(entry);
}

static void append_batch(store *s, const struct batch *b)
{
    uint8_t *entry;
    size_t len;

    encode_batch(b, 1, &entry, &len);
    ck_assert_int_eq(store_journal_append(s, b->h.seq, entry, len), 0);
    free(entry);
}

static void add_attach(struct batch *b, uint16_t slot, const char *name, uint64_t session)
{
    struct frame_attach attach = {.session = session, .pid = 4242, .flags = 0};

    batch_add(b, FRAME_ATTACH, 0, slot, name, (uint32_t)strlen(name), &attach, sizeof attach);
}

static void add_le64(struct batch *b, uint8_t type, uint16_t slot, uint64_t v, uint64_t gap)
{
    uint8_t le[8];

    put_le(le, v, 8);
    batch_add_gap(b, type, 0, slot, NULL, 0, le, 8, gap);
}

/* The end of an apply test: its batches, text buffers, store and data
 * directory go. */
static void apply_test_end(store *s, struct batch *b, int n_batches, char *text, char *want)
{
    for (int i = 0; i < n_batches; i++)
        batch_free(&b[i]);
    free(text);
    free(want);
    store_close(s);
    remove_tree(data_dir);
}

/* Begins journal entry 1 for the apply tests: producer `producer`
 * attached in slot 0 (session 1), table "t" as id 0. */
static void entry_one_begin(struct batch *b, const char *producer)
{
    batch_init(b, 1, 4096);
    add_attach(b, 0, producer, 1);
    batch_add(b, FRAME_TABLE, 0, 0, "t", 1, NULL, 0);
}

/* Journal entry 1 for the apply tests: producer "eng" attached in slot 0,
 * table "t" as id 0, n PUTs k000.. = a0.., and MARK 1. */
static void first_group(struct batch *b, int n)
{
    char key[16], val[16]; /* n < 1000: "k%03d" is 4 bytes */

    entry_one_begin(b, "eng");
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        snprintf(val, sizeof val, "a%d", i);
        batch_add(b, FRAME_PUT, 0, 0, key, 4, val, (uint32_t)strlen(val));
    }
    add_le64(b, FRAME_MARK, 0, 1, 0);
}

/* Every key and value of state table `table` as "key=value;" in key order
 * (the test's values are text). */
static void state_text(store *s, const char *table, char *out, size_t out_size)
{
    char subname[RK_NAME_MAX + 3];
    DB *db = NULL;
    DBC *cur = NULL;
    DBT k = {0}, v = {0};
    size_t n = 0;
    int rc;

    out[0] = '\0';
    snprintf(subname, sizeof subname, "t:%s", table);
    ck_assert_int_eq(db_create(&db, store_env(s), 0), 0);
    rc = db->open(db, NULL, "state.db", subname, DB_BTREE, DB_AUTO_COMMIT | DB_RDONLY, 0);
    if (rc == ENOENT) {
        db->close(db, 0);
        return;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(db->cursor(db, NULL, &cur, 0), 0);
    while ((rc = cur->get(cur, &k, &v, DB_NEXT)) == 0) {
        int w = snprintf(out + n, out_size - n, "%.*s=%.*s;", (int)k.size, (char *)k.data, (int)v.size,
                         (char *)v.data);
        ck_assert(w > 0 && (size_t)w < out_size - n);
        n += (size_t)w;
    }
    ck_assert_int_eq(rc, DB_NOTFOUND);
    cur->close(cur);
    db->close(db, 0);
}

/* Entries trimmed past what apply had read: applier_run says which entry
 * is missing.  It took a missing entry for the journal's end and returned
 * 0, so that apply waited for it without a word (and a node's drain for
 * apply). */
START_TEST(apply_reports_an_entry_trimmed_past_it)
{
    applier *a = NULL;
    store *s;
    int rc;

    new_data_dir("apply-trimmed-past");
    s = open_store(STORE_CREATE);
    for (uint64_t seq = 1; seq <= 5; seq++)
        ck_assert_int_eq(append_seq(s, seq), 0);
    ck_assert_int_eq(store_journal_trim(s, 4), 0); /* 1..3 gone */
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    err[0] = '\0';
    rc = applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err);
    ck_assert_msg(rc == RK_ENOTFOUND, "applier_run returned %d (%s)", rc, err);
    assert_has(err, "journal entry 1 is missing: the journal starts at 4");
    ck_assert_uint_eq(applier_meta(a).applied_seq, 0);
    applier_close(a);
    store_close(s);
}
END_TEST

/* A PUT naming table 256 (one past the last id a ring has), in a journal
 * entry with a valid checksum: apply refuses the entry and applies nothing
 * from it.  Unchecked, table_map[256] is the first slot of the map after
 * it, the producer's name, and the record went into a table of that name. */
START_TEST(apply_refuses_a_frame_with_an_out_of_range_table_id)
{
    struct batch b;
    applier *a = NULL;
    store *s;
    char text[256];
    int rc;

    new_data_dir("apply-bad-table");
    s = open_store(STORE_CREATE);
    entry_one_begin(&b, "engine-1");
    batch_add(&b, FRAME_PUT, 0, 0, "good", 4, "1", 1);
    batch_add(&b, FRAME_PUT, 256, 0, "bad", 3, "2", 1);
    add_le64(&b, FRAME_MARK, 0, 1, 0);
    append_forged(s, &b);
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    err[0] = '\0';
    rc = applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err);
    ck_assert_msg(rc == RK_ECORRUPT, "applier_run returned %d (%s)", rc, err);
    assert_has(err, "table id 256 out of range");
    ck_assert_uint_eq(applier_meta(a).n_records, 0);
    ck_assert_uint_eq(applier_meta(a).n_groups, 0);
    ck_assert_uint_eq(applier_meta(a).applied_seq, 0);
    applier_close(a);
    state_text(s, "t", text, sizeof text);
    ck_assert_str_eq(text, "");
    state_text(s, "engine-1", text, sizeof text);
    ck_assert_str_eq(text, "");
    batch_free(&b);
    store_close(s);
    remove_tree(data_dir);
}
END_TEST

/* Producer "eng" (slot 0) completes group 1 in session 1, writes x of
 * group 2 and dies holding a claim at P: the consumer reports ABORT(P).
 * It re-attaches (session 2) and writes a1, a2 of group 2; the node is
 * killed after journaling all that (entry 1) and before releasing the
 * ring, so the restarted consumer meets the dead claim at P again and
 * journals a second ABORT(P) (entry 2) before a3 and MARK(2).  The second
 * ABORT is about session 1: group 2 of session 2 is applied whole, x
 * never.  _i = 1: the applier is closed and reopened between the entries
 * (it re-reads entry 1 from its restart point). */
START_TEST(stale_abort_does_not_discard_a_reattached_producers_group)
{
    struct batch b1, b2;
    applier *a = NULL;
    store *s;
    struct apply_meta am;
    uint64_t abort_lsn;
    char text[256];
    int rc;

    new_data_dir(_i ? "apply-stale-abort-reopen" : "apply-stale-abort");
    s = open_store(STORE_CREATE);
    entry_one_begin(&b1, "eng");
    batch_add(&b1, FRAME_PUT, 0, 0, "k0", 2, "v0", 2);
    add_le64(&b1, FRAME_MARK, 0, 1, 0);
    batch_add(&b1, FRAME_PUT, 0, 0, "x", 1, "lost", 4);
    abort_lsn = b1.pos;
    add_le64(&b1, FRAME_ABORT, 0, 1, 24); /* the dead claim took 64 bytes */
    add_attach(&b1, 0, "eng", 2);
    batch_add(&b1, FRAME_PUT, 0, 0, "a1", 2, "1", 1);
    batch_add(&b1, FRAME_PUT, 0, 0, "a2", 2, "2", 1);
    batch_init(&b2, 2, abort_lsn);
    add_le64(&b2, FRAME_ABORT, 0, 1, b1.h.next_lsn - abort_lsn - 40);
    batch_add(&b2, FRAME_PUT, 0, 0, "a3", 2, "3", 1);
    add_le64(&b2, FRAME_MARK, 0, 2, 0);
    append_batch(s, &b1);
    append_batch(s, &b2);

    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    if (_i) {
        rc = applier_run(a, 1, STORE_TXN_RECORDS, err, sizeof err);
        ck_assert_msg(rc == 0, "applier_run: %s", err);
        ck_assert_uint_eq(applier_meta(a).restart_seq, 1); /* a1, a2 open since entry 1 */
        applier_close(a);
        ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    }
    rc = applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err);
    ck_assert_msg(rc == 0, "applier_run: %s", err);
    am = applier_meta(a);
    ck_assert_uint_eq(am.applied_seq, 2);
    ck_assert_uint_eq(am.n_records, 4);
    ck_assert_uint_eq(am.n_groups, 2);
    ck_assert_uint_eq(am.n_discarded, 1); /* x, by the first ABORT */
    ck_assert_uint_eq(am.restart_seq, 3);
    applier_close(a);
    state_text(s, "t", text, sizeof text);
    ck_assert_str_eq(text, "a1=1;a2=2;a3=3;k0=v0;");
    batch_free(&b1);
    batch_free(&b2);
    store_close(s);
    remove_tree(data_dir);
}
END_TEST

/* A ring made again gives its ids new names: table id 0 is "t", then "u",
 * then "t" again, and producer slot 0 is "eng", then "feed", then "eng".
 * Every record goes to the table its id names when its group is applied,
 * every MARK to the producer its slot names (apply.h A6: what an id
 * resolved to is forgotten when its name changes).  _i 1: the applier is
 * reopened after the first entry, so the second resolves its ids afresh
 * from the maps in meta.db. */
START_TEST(renamed_table_ids_and_slots_apply_to_their_new_names)
{
    struct batch b1, b2, b3;
    applier *a = NULL;
    store *s;
    struct apply_meta am;
    struct producer_meta pm;
    char text[256];
    const char *names[] = {"eng", "feed"};
    const uint64_t heights[] = {2, 7}, n_groups[] = {2, 1};
    int rc;

    new_data_dir(_i ? "apply-renamed-ids-reopen" : "apply-renamed-ids");
    s = open_store(STORE_CREATE);
    entry_one_begin(&b1, "eng");
    batch_add(&b1, FRAME_PUT, 0, 0, "k", 1, "1", 1);
    add_le64(&b1, FRAME_MARK, 0, 1, 0);
    batch_init(&b2, 2, b1.h.next_lsn);
    batch_add(&b2, FRAME_TABLE, 0, 0, "u", 1, NULL, 0);
    add_attach(&b2, 0, "feed", 1);
    batch_add(&b2, FRAME_PUT, 0, 0, "k", 1, "2", 1);
    add_le64(&b2, FRAME_MARK, 0, 7, 0);
    batch_init(&b3, 3, b2.h.next_lsn);
    batch_add(&b3, FRAME_TABLE, 0, 0, "t", 1, NULL, 0);
    add_attach(&b3, 0, "eng", 2);
    batch_add(&b3, FRAME_PUT, 0, 0, "j", 1, "3", 1);
    add_le64(&b3, FRAME_MARK, 0, 2, 0);
    append_batch(s, &b1);
    append_batch(s, &b2);
    append_batch(s, &b3);

    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    if (_i) {
        rc = applier_run(a, 1, STORE_TXN_RECORDS, err, sizeof err);
        ck_assert_msg(rc == 0, "applier_run: %s", err);
        applier_close(a);
        ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    }
    rc = applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err);
    ck_assert_msg(rc == 0, "applier_run: %s", err);
    am = applier_meta(a);
    ck_assert_uint_eq(am.applied_seq, 3);
    ck_assert_uint_eq(am.n_records, 3);
    ck_assert_uint_eq(am.n_groups, 3);
    ck_assert_uint_eq(am.n_discarded, 0);
    applier_close(a);
    state_text(s, "t", text, sizeof text);
    ck_assert_str_eq(text, "j=3;k=1;");
    state_text(s, "u", text, sizeof text);
    ck_assert_str_eq(text, "k=2;");
    for (int i = 0; i < 2; i++) {
        char key[RK_NAME_MAX + 3];
        DB *meta = store_meta(s);
        DBT k = {.data = key}, v = {.data = &pm, .ulen = sizeof pm, .flags = DB_DBT_USERMEM};
        snprintf(key, sizeof key, "p:%s", names[i]);
        k.size = (u_int32_t)strlen(key);
        ck_assert_int_eq(meta->get(meta, NULL, &k, &v, 0), 0);
        ck_assert_uint_eq(v.size, sizeof pm);
        ck_assert_uint_eq(pm.height, heights[i]);
        ck_assert_uint_eq(pm.n_groups, n_groups[i]);
    }
    batch_free(&b1);
    batch_free(&b2);
    batch_free(&b3);
    store_close(s);
    remove_tree(data_dir);
}
END_TEST

/* Producer "hold" opens a group in entry 2 and never closes it, so apply
 * restarts at entry 2 however far it gets; "eng" writes k=old there.  In
 * entry 3 a new ring names table id 0 "u" and gives slot 0 to "feed",
 * which writes nothing, and "dd" writes u/k=new.  Read again from entry 2
 * after a restart, eng's frames must still be eng's (skipped: applied),
 * not feed's: with the maps of the commit point in meta.db they became
 * feed's group, applied at eng's MARK into "u" over dd's k=new (issue
 * found in review; the bug before the fix).  _i 0: the applier is
 * reopened and reads again; _i 1: a checkpoint taken at the end must
 * carry the maps of its restart point, which a load follows from. */
START_TEST(frames_read_again_after_a_new_ring_keep_their_producer)
{
    struct batch b[3];
    applier *a = NULL;
    store *s;
    struct apply_meta am;
    struct producer_meta pm;
    char text[256], dir[300], path[512];
    const char *names[] = {"eng", "dd", "feed"};
    const uint64_t heights[] = {2, 5, 0}, n_groups[] = {2, 1, 0};
    int rc;

    new_data_dir(_i ? "apply-new-ring-checkpoint" : "apply-new-ring-reopen");
    s = open_store(STORE_CREATE);
    entry_one_begin(&b[0], "eng");
    add_attach(&b[0], 1, "hold", 1);
    batch_add(&b[0], FRAME_PUT, 0, 0, "k", 1, "a", 1);
    add_le64(&b[0], FRAME_MARK, 0, 1, 0);
    batch_init(&b[1], 2, b[0].h.next_lsn);
    batch_add(&b[1], FRAME_PUT, 0, 1, "h", 1, "1", 1);
    batch_add(&b[1], FRAME_PUT, 0, 0, "k", 1, "old", 3);
    add_le64(&b[1], FRAME_MARK, 0, 2, 0);
    batch_init(&b[2], 3, b[1].h.next_lsn);
    batch_add(&b[2], FRAME_TABLE, 0, 0, "u", 1, NULL, 0);
    add_attach(&b[2], 0, "feed", 1);
    add_attach(&b[2], 2, "dd", 1);
    batch_add(&b[2], FRAME_PUT, 0, 2, "k", 1, "new", 3);
    add_le64(&b[2], FRAME_MARK, 2, 5, 0);
    for (int i = 0; i < 3; i++)
        append_batch(s, &b[i]);

    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    rc = applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err);
    ck_assert_msg(rc == 0, "applier_run: %s", err);
    ck_assert_uint_eq(applier_meta(a).restart_seq, 2); /* hold's group */
    if (_i == 0) {
        applier_close(a);
        ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
        rc = applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err);
        ck_assert_msg(rc == 0, "applier_run: %s", err);
    } else {
        ckpt_job *job = NULL;
        struct ckpt_info written = {0};
        const struct ckpt_replay *rp = &written.replay;
        char maps[256] = "";
        size_t n = 0;
        snprintf(dir, sizeof dir, "%s/checkpoints", data_dir);
        rc = applier_checkpoint_begin(a, 1, &job);
        ck_assert_msg(rc == 0, "applier_checkpoint_begin: %s", store_strerror(rc));
        rc = ckpt_job_write(job, dir, 1, path, sizeof path, &written, err, sizeof err);
        ck_assert_msg(rc == 0, "ckpt_job_write: %s: %s", store_strerror(rc), err);
        ckpt_job_free(job);
        ck_assert_uint_eq(written.journal_seq, 3);
        ck_assert_uint_eq(rp->restart_seq, 2);
        for (uint32_t i = 0; i < rp->n_table_ids; i++)
            n += (size_t)snprintf(maps + n, sizeof maps - n, "t%u=%s;", rp->table_ids[i].id,
                                  rp->table_ids[i].name);
        for (uint32_t i = 0; i < rp->n_slots; i++)
            n += (size_t)snprintf(maps + n, sizeof maps - n, "s%u=%s;", rp->slots[i].id, rp->slots[i].name);
        ck_assert_str_eq(maps, "t0=t;s0=eng;s1=hold;"); /* as at the start of entry 2 */
        ckpt_info_free(&written);
    }
    am = applier_meta(a);
    ck_assert_uint_eq(am.applied_seq, 3);
    ck_assert_uint_eq(am.n_groups, 3);
    ck_assert_uint_eq(am.n_records, 3);
    applier_close(a);
    state_text(s, "t", text, sizeof text);
    ck_assert_str_eq(text, "k=old;");
    state_text(s, "u", text, sizeof text);
    ck_assert_str_eq(text, "k=new;");
    for (int i = 0; i < 3; i++) {
        char key[RK_NAME_MAX + 3];
        DB *meta = store_meta(s);
        DBT k = {.data = key}, v = {.data = &pm, .ulen = sizeof pm, .flags = DB_DBT_USERMEM};
        snprintf(key, sizeof key, "p:%s", names[i]);
        k.size = (u_int32_t)strlen(key);
        ck_assert_int_eq(meta->get(meta, NULL, &k, &v, 0), 0);
        ck_assert_uint_eq(pm.height, heights[i]);
        ck_assert_uint_eq(pm.n_groups, n_groups[i]);
    }
    for (int i = 0; i < 3; i++)
        batch_free(&b[i]);
    store_close(s);
    remove_tree(data_dir);
}
END_TEST

/* The sum of ckpt_entry_digest() over state table `table` (0 if it does
 * not exist): the digest apply keeps must equal it summed over the tables
 * (apply.h A5). */
static uint64_t state_digest(store *s, const char *table)
{
    char subname[RK_NAME_MAX + 3];
    DB *db = NULL;
    DBC *cur = NULL;
    DBT k = {0}, v = {0};
    uint64_t sum = 0;
    int rc;

    snprintf(subname, sizeof subname, "t:%s", table);
    ck_assert_int_eq(db_create(&db, store_env(s), 0), 0);
    rc = db->open(db, NULL, "state.db", subname, DB_BTREE, DB_AUTO_COMMIT | DB_RDONLY, 0);
    if (rc == ENOENT) {
        db->close(db, 0);
        return 0;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(db->cursor(db, NULL, &cur, 0), 0);
    while ((rc = cur->get(cur, &k, &v, DB_NEXT)) == 0)
        sum += ckpt_entry_digest(table, k.data, k.size, v.data, v.size);
    ck_assert_int_eq(rc, DB_NOTFOUND);
    cur->close(cur);
    db->close(db, 0);
    return sum;
}

/* Apply writes a transaction's records sorted by table and key, the last
 * of each key only (apply.c, apply_pending): the state and the digest
 * must be what applying every record in journal order gives.  Two
 * producers interleave groups that PUT, PUT again and DEL the same keys
 * of two tables ("k" and "kk": a key and its prefix), DEL a key that is
 * not there, and one group spans both entries; a group voided by a
 * re-ATTACH writes a key that a later group of the other table also
 * writes.  _i 0: both entries in one transaction; 1: a commit after every
 * entry; 2: the applier reopened after entry 1 (it re-reads the open
 * group from its restart point). */
START_TEST(sorted_transaction_ends_as_journal_order_says)
{
    struct batch b1, b2;
    applier *a = NULL;
    store *s;
    struct apply_meta am;
    char text[256];
    int rc;

    new_data_dir("apply-sorted-txn");
    s = open_store(STORE_CREATE);
    batch_init(&b1, 1, 4096);
    add_attach(&b1, 0, "eng", 1);
    add_attach(&b1, 1, "feed", 1);
    batch_add(&b1, FRAME_TABLE, 0, 0, "t", 1, NULL, 0);
    batch_add(&b1, FRAME_PUT, 0, 0, "kk", 2, "a", 1);
    batch_add(&b1, FRAME_TABLE, 1, 0, "u", 1, NULL, 0); /* (not two TABLE frames in a row: one LSN) */
    batch_add(&b1, FRAME_PUT, 0, 1, "m", 1, "m1", 2);
    batch_add(&b1, FRAME_PUT, 0, 0, "k", 1, "1", 1);
    batch_add(&b1, FRAME_PUT, 1, 0, "k", 1, "9", 1);
    add_le64(&b1, FRAME_MARK, 0, 1, 0);
    add_le64(&b1, FRAME_MARK, 1, 1, 0);
    batch_add(&b1, FRAME_PUT, 0, 0, "k", 1, "2", 1);
    batch_add(&b1, FRAME_PUT, 0, 1, "k", 1, "3", 1);
    batch_add(&b1, FRAME_DEL, 0, 0, "kk", 2, NULL, 0);
    batch_add(&b1, FRAME_PUT, 0, 0, "j", 1, "j", 1);
    batch_add(&b1, FRAME_DEL, 0, 0, "absent", 6, NULL, 0);
    add_le64(&b1, FRAME_MARK, 0, 2, 0);
    batch_init(&b2, 2, b1.h.next_lsn);
    batch_add(&b2, FRAME_DEL, 0, 1, "m", 1, NULL, 0);
    batch_add(&b2, FRAME_PUT, 0, 1, "m", 1, "m2", 2);
    batch_add(&b2, FRAME_PUT, 0, 0, "k", 1, "lost", 4);
    batch_add(&b2, FRAME_PUT, 0, 1, "a", 1, "x", 1);
    add_le64(&b2, FRAME_MARK, 1, 2, 0);
    add_attach(&b2, 0, "eng", 2);
    batch_add(&b2, FRAME_PUT, 1, 0, "k", 1, "10", 2);
    batch_add(&b2, FRAME_PUT, 1, 0, "k", 1, "11", 2);
    batch_add(&b2, FRAME_PUT, 0, 0, "kk", 2, "b", 1);
    add_le64(&b2, FRAME_MARK, 0, 3, 0);
    append_batch(s, &b1);
    append_batch(s, &b2);

    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    if (_i == 2) {
        rc = applier_run(a, 1, STORE_TXN_RECORDS, err, sizeof err);
        ck_assert_msg(rc == 0, "applier_run: %s", err);
        ck_assert_uint_eq(applier_meta(a).restart_seq, 1); /* feed's second group is open */
        applier_close(a);
        ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    }
    rc = applier_run(a, UINT64_MAX, _i == 1 ? 1 : STORE_TXN_RECORDS, err, sizeof err);
    ck_assert_msg(rc == 0, "applier_run: %s", err);
    am = applier_meta(a);
    ck_assert_uint_eq(am.applied_seq, 2);
    ck_assert_uint_eq(am.n_groups, 5);
    ck_assert_uint_eq(am.n_records, 15);
    ck_assert_uint_eq(am.n_discarded, 1);
    applier_close(a);
    state_text(s, "t", text, sizeof text);
    ck_assert_str_eq(text, "a=x;j=j;k=3;kk=b;m=m2;");
    state_text(s, "u", text, sizeof text);
    ck_assert_str_eq(text, "k=11;");
    ck_assert_uint_eq(am.digest, state_digest(s, "t") + state_digest(s, "u"));
    batch_free(&b1);
    batch_free(&b2);
    store_close(s);
    remove_tree(data_dir);
}
END_TEST

/* Keys in Berkeley DB's order: bytes, then the shorter first. */
static int model_key_cmp(const void *x, const void *y)
{
    const char *a = *(const char *const *)x, *b = *(const char *const *)y;
    size_t la = strlen(a), lb = strlen(b);
    int c = memcmp(a, b, la < lb ? la : lb);

    return c ? c : (la > lb) - (la < lb);
}

/* pending_sort orders a transaction's records by table, then key in
 * Berkeley DB's order (bytes, then the shorter first), then journal
 * order -- the order apply's cursor walks the tables in and the one a
 * snapshot's merge with its base needs (export.c).  Random keys of 0-12
 * bytes from a small alphabet (many share their first 8 bytes, some are
 * a prefix of others, some repeat), in three tables, 5000 records (the
 * radix sort) and 40 (qsort alone): every neighbour must be in order. */
START_TEST(pending_sort_orders_by_table_key_and_journal_order)
{
    for (size_t n = 40; n <= 5000; n += 4960) {
        struct pending pd = {0};
        uint32_t seed = 777;

        pd.cap = n * 64;
        pd.buf = calloc(1, pd.cap);
        pd.records = calloc(n, sizeof *pd.records);
        pd.spare = calloc(n, sizeof *pd.spare);
        ck_assert(pd.buf && pd.records && pd.spare);
        pd.cap_records = n;
        for (size_t i = 0; i < n; i++) {
            uint8_t *key = pd.buf + i * 64 + FRAME_HEADER_SIZE, head[8] = {0};
            seed = seed * 1103515245u + 12345u;
            uint32_t klen = (seed >> 16) % 13;
            for (uint32_t j = 0; j < klen; j++) {
                seed = seed * 1103515245u + 12345u;
                key[j] = (uint8_t)("ab\0\xff"[(seed >> 16) & 3]);
            }
            memcpy(head, key, klen < 8 ? klen : 8);
            pd.records[i] = (struct pending_record){
                .off = i * 64, .prefix = get_be64(head), .klen = klen, .table = (seed >> 8) % 3};
        }
        pd.n_records = n;
        pending_sort(&pd);
        for (size_t i = 1; i < n; i++) {
            const struct pending_record *p = &pd.records[i - 1], *q = &pd.records[i];
            int c = memcmp(p->key, q->key, p->klen < q->klen ? p->klen : q->klen);
            ck_assert_ptr_eq(q->key, pd.buf + q->off + FRAME_HEADER_SIZE);
            ck_assert_msg(p->table < q->table ||
                              (p->table == q->table &&
                               (c < 0 || (c == 0 && (p->klen < q->klen || (p->klen == q->klen && p->off < q->off))))),
                          "records %zu and %zu of %zu out of order", i - 1, i, n);
        }
        free(pd.buf);
        free(pd.records);
        free(pd.spare);
    }
}
END_TEST

/* Apply sorts a transaction's records by table and key (pending_sort: a
 * radix sort by the keys' first 8 bytes, then runs that share them), and
 * writes the last record of each key only.  Enough records for the radix
 * sort, in two tables, with keys shorter than 8 bytes, of exactly 8, and
 * longer ones sharing their first 8 bytes, each key written and deleted
 * many times in one transaction: each table must end as the last write of
 * every key in journal order says (a model), whatever the sort did. */
START_TEST(sorted_transaction_of_many_records_keeps_the_last_write_of_each_key)
{
    static const char *keys[] = {"a",          "b",          "ab",         "a\x7f",      "k",
                                 "12345678",   "12345679",   "1234567",    "prefix00",   "prefix00-A",
                                 "prefix00-B", "prefix00-AA", "prefix01-A", "prefix0",   "zzzzzzzzzz"};
    enum { N_KEYS = sizeof keys / sizeof *keys, N_OPS = 3000 };
    const char *value[2][N_KEYS] = {{0}}; /* the model: the last write, NULL when deleted or never put */
    static char vals[N_OPS][16];
    const char *sorted[N_KEYS];
    struct batch b;
    applier *a = NULL;
    store *s;
    char text[2048], want[2048];
    uint32_t seed = 12345;
    int rc;

    new_data_dir("apply-sorted-many");
    s = open_store(STORE_CREATE);
    entry_one_begin(&b, "eng");
    batch_add(&b, FRAME_PUT, 0, 0, "a", 1, "first", 5);
    value[0][0] = "first";
    batch_add(&b, FRAME_TABLE, 1, 0, "u", 1, NULL, 0);
    for (int i = 0; i < N_OPS; i++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 16) % N_KEYS), t = (int)((seed >> 8) & 1), del = ((seed >> 4) & 7) == 0;
        if (del) {
            batch_add(&b, FRAME_DEL, (uint16_t)t, 0, keys[k], (uint32_t)strlen(keys[k]), NULL, 0);
            value[t][k] = NULL;
        } else {
            snprintf(vals[i], sizeof vals[i], "v%d", i);
            batch_add(&b, FRAME_PUT, (uint16_t)t, 0, keys[k], (uint32_t)strlen(keys[k]), vals[i],
                      (uint32_t)strlen(vals[i]));
            value[t][k] = vals[i];
        }
    }
    add_le64(&b, FRAME_MARK, 0, 1, 0);
    append_batch(s, &b);
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    rc = applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err); /* one transaction */
    ck_assert_msg(rc == 0, "applier_run: %s", err);
    ck_assert_uint_eq(applier_meta(a).n_records, N_OPS + 1);
    applier_close(a);
    memcpy(sorted, keys, sizeof sorted);
    qsort(sorted, N_KEYS, sizeof *sorted, model_key_cmp);
    for (int t = 0; t < 2; t++) {
        size_t n = 0;
        want[0] = '\0';
        for (int i = 0; i < N_KEYS; i++) {
            int k = 0;
            while (keys[k] != sorted[i])
                k++;
            if (value[t][k])
                n += (size_t)snprintf(want + n, sizeof want - n, "%s=%s;", keys[k], value[t][k]);
        }
        state_text(s, t ? "u" : "t", text, sizeof text);
        ck_assert_str_eq(text, want);
    }
    batch_free(&b);
    store_close(s);
    remove_tree(data_dir);
}
END_TEST

/* Apply looks a key up before it writes it, or puts it with
 * DB_NOOVERWRITE first, as the table's recent PUTs were found or new
 * (apply.c, apply_record): both ways, and the switch between them, must
 * leave the state and the digest that journal order gives.  Entry 1 makes
 * 200 new keys (the lookup-first way turns to put-first); entry 2
 * overwrites them, deletes every fourth and makes 100 new ones (put-first
 * refused, then looked up); entry 3 makes the deleted keys again.  One
 * transaction per entry: the choice carries over commits. */
START_TEST(new_and_existing_keys_both_ways_keep_state_and_digest)
{
    struct batch b[3];
    applier *a = NULL;
    store *s;
    struct apply_meta am;
    char key[8], val[8], *text = malloc(16384), *want = malloc(16384);
    size_t n = 0;
    int rc;

    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(want);
    new_data_dir("apply-new-and-existing");
    s = open_store(STORE_CREATE);
    first_group(&b[0], 200);
    batch_init(&b[1], 2, b[0].h.next_lsn);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        snprintf(val, sizeof val, "b%d", i);
        if (i % 4 == 0)
            batch_add(&b[1], FRAME_DEL, 0, 0, key, 4, NULL, 0);
        else
            batch_add(&b[1], FRAME_PUT, 0, 0, key, 4, val, (uint32_t)strlen(val));
        if (i % 2 == 0) {
            snprintf(key, sizeof key, "n%03d", i / 2);
            snprintf(val, sizeof val, "n%d", i / 2);
            batch_add(&b[1], FRAME_PUT, 0, 0, key, 4, val, (uint32_t)strlen(val));
        }
    }
    add_le64(&b[1], FRAME_MARK, 0, 2, 0);
    batch_init(&b[2], 3, b[1].h.next_lsn);
    for (int i = 0; i < 200; i += 4) {
        snprintf(key, sizeof key, "k%03d", i);
        snprintf(val, sizeof val, "c%d", i);
        batch_add(&b[2], FRAME_PUT, 0, 0, key, 4, val, (uint32_t)strlen(val));
    }
    add_le64(&b[2], FRAME_MARK, 0, 3, 0);
    for (int i = 0; i < 3; i++)
        append_batch(s, &b[i]);

    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    rc = applier_run(a, UINT64_MAX, 1, err, sizeof err);
    ck_assert_msg(rc == 0, "applier_run: %s", err);
    am = applier_meta(a);
    ck_assert_uint_eq(am.applied_seq, 3);
    ck_assert_uint_eq(am.n_records, 200 + 300 + 50);
    applier_close(a);
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(want + n, 16384 - n, "k%03d=%c%d;", i, i % 4 ? 'b' : 'c', i);
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(want + n, 16384 - n, "n%03d=n%d;", i, i);
    state_text(s, "t", text, 16384);
    ck_assert_str_eq(text, want);
    ck_assert_uint_eq(am.digest, state_digest(s, "t"));
    apply_test_end(s, b, 3, text, want);
}
END_TEST

/* ckpt_verify's callback: appends "table/key=value;" (text values). */
static int checkpoint_text(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                           uint32_t vlen)
{
    char *out = arg;
    size_t n = strlen(out);
    int w = snprintf(out + n, 65536 - n, "%s/%.*s=%.*s;", table, (int)klen, (const char *)key, (int)vlen,
                     (const char *)val);

    ck_assert(w > 0 && (size_t)w < 65536 - n);
    return 0;
}

/* A checkpoint holds the state as of applier_checkpoint_begin while apply
 * goes on before it is written.  The applier's table handles are not
 * multiversion (apply.c, table_at); the job's own handle on state.db
 * (export.c, snapshot_pin) makes apply copy the pages it changes until the
 * job ends.  Entry 1 PUTs 300 keys; the job begins; entry 2 overwrites
 * them, deletes every third, adds 300 keys and a second table, in
 * transactions of one entry (_i 0) or of records one by one (_i 1); the
 * checkpoint written then must hold entry 1's state byte for byte and its
 * digest (ckpt_job_write also checks the digest of what it read against
 * the one apply kept then).  _i 2: the job begins before any table exists
 * (no state.db): the checkpoint has no entry although entry 1 is applied
 * before it is written.  Without the pin, entry 2's writes went in place
 * and the job read them (digest mismatch: RK_ECORRUPT). */
START_TEST(checkpoint_holds_the_state_at_its_begin_while_apply_goes_on)
{
    struct batch b[2];
    applier *a = NULL;
    ckpt_job *job = NULL;
    struct ckpt_info written = {0}, verified = {0};
    struct apply_meta at_begin;
    store *s;
    char key[8], val[8], path[512], dir[300], *text = calloc(1, 65536), *want = calloc(1, 65536);
    size_t n = 0;
    int rc;

    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(want);
    new_data_dir("apply-checkpoint-snapshot");
    snprintf(dir, sizeof dir, "%s/checkpoints", data_dir);
    s = open_store(STORE_CREATE);
    first_group(&b[0], 300);
    batch_init(&b[1], 2, b[0].h.next_lsn);
    batch_add(&b[1], FRAME_TABLE, 1, 0, "u", 1, NULL, 0);
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        snprintf(val, sizeof val, "b%d", i);
        if (i % 3 == 0)
            batch_add(&b[1], FRAME_DEL, 0, 0, key, 4, NULL, 0);
        else
            batch_add(&b[1], FRAME_PUT, 0, 0, key, 4, val, (uint32_t)strlen(val));
        snprintf(key, sizeof key, "n%03d", i);
        batch_add(&b[1], FRAME_PUT, i % 2, 0, key, 4, val, (uint32_t)strlen(val));
    }
    add_le64(&b[1], FRAME_MARK, 0, 2, 0);
    append_batch(s, &b[0]);
    append_batch(s, &b[1]);

    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    if (_i != 2) {
        rc = applier_run(a, 1, STORE_TXN_RECORDS, err, sizeof err);
        ck_assert_msg(rc == 0, "applier_run: %s", err);
        for (int i = 0; i < 300; i++)
            n += (size_t)snprintf(want + n, 65536 - n, "t/k%03d=a%d;", i, i);
    }
    at_begin = applier_meta(a);
    rc = applier_checkpoint_begin(a, 1, &job);
    store_last_error(s, why, sizeof why);
    ck_assert_msg(rc == 0, "applier_checkpoint_begin: %s: %s", store_strerror(rc), why);
    rc = applier_run(a, _i == 2 ? 1 : 2, _i == 1 ? 1 : STORE_TXN_RECORDS, err, sizeof err);
    ck_assert_msg(rc == 0, "applier_run: %s", err);
    ck_assert_uint_ne(applier_meta(a).digest, at_begin.digest);
    rc = ckpt_job_write(job, dir, 1, path, sizeof path, &written, err, sizeof err);
    ck_assert_msg(rc == 0, "ckpt_job_write: %s: %s", store_strerror(rc), err);
    ckpt_job_free(job);
    ck_assert_uint_eq(written.journal_seq, at_begin.applied_seq);
    ck_assert_uint_eq(written.digest, at_begin.digest);
    ck_assert_uint_eq(written.n_entries, _i == 2 ? 0 : 300);
    rc = ckpt_verify(path, &verified, checkpoint_text, text, err, sizeof err);
    ck_assert_msg(rc == 0, "ckpt_verify: %s", err);
    ck_assert_str_eq(text, want);
    /* apply goes on after the job as before: the rest applies whole */
    rc = applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err);
    ck_assert_msg(rc == 0, "applier_run: %s", err);
    ck_assert_uint_eq(applier_meta(a).applied_seq, 2);
    ck_assert_uint_eq(applier_meta(a).digest, state_digest(s, "t") + state_digest(s, "u"));
    applier_close(a);
    ckpt_info_free(&written);
    ckpt_info_free(&verified);
    apply_test_end(s, b, 2, text, want);
}
END_TEST

/* Journal entry seq (1..3) of the power-cut test: entry 1 attaches "eng"
 * and names table "t"; each puts k000..k099 = "v<seq>-<i>", entry 3 also
 * deletes k000..k009; one group each (MARK seq). */
static void cut_entry(struct batch *b, uint64_t seq, uint64_t pos)
{
    char key[8], val[16];

    if (seq == 1)
        entry_one_begin(b, "eng");
    else
        batch_init(b, seq, pos);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        snprintf(val, sizeof val, "v%d-%d", (int)seq, i);
        if (seq == 3 && i < 10)
            batch_add(b, FRAME_DEL, 0, 0, key, 4, NULL, 0);
        else
            batch_add(b, FRAME_PUT, 0, 0, key, 4, val, (uint32_t)strlen(val));
    }
    add_le64(b, FRAME_MARK, 0, seq, 0);
}

/* The child of the power-cut test: entries 1..3 journaled (each commit
 * synced), applied (apply commits without sync), a checkpoint of the
 * applied state written and published, then the power goes. */
static void child_checkpoint_then_power_cut(void *arg)
{
    char dir[300], path[512];
    struct ckpt_info written = {0};
    struct batch b;
    uint64_t pos = 4096;
    applier *a = NULL;
    ckpt_job *job = NULL;
    store *s = NULL;
    uint8_t *entry;
    size_t len;
    int rc;

    (void)arg;
    sys_install();
    CHILD_REQUIRE(crashsim_configure("at:1000000000") == 0, "crashsim_configure");
    rc = store_open(data_dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);
    CHILD_REQUIRE(rc == 0, "store_open: %s", err);
    for (uint64_t seq = 1; seq <= 3; seq++) {
        cut_entry(&b, seq, pos);
        pos = b.h.next_lsn;
        CHILD_REQUIRE(journal_encode(&b.h, b.buf, b.len, 1, &entry, &len) == 0, "journal_encode");
        CHILD_REQUIRE(store_journal_append(s, seq, entry, len) == 0, "append %d", (int)seq);
        free(entry);
        batch_free(&b);
    }
    rc = applier_open(s, &a, err, sizeof err);
    CHILD_REQUIRE(rc == 0, "applier_open: %s", err);
    rc = applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err);
    CHILD_REQUIRE(rc == 0 && applier_meta(a).applied_seq == 3, "applier_run: %s", err);
    CHILD_REQUIRE(applier_checkpoint_begin(a, 1, &job) == 0, "applier_checkpoint_begin");
    snprintf(dir, sizeof dir, "%s/checkpoints", data_dir);
    rc = ckpt_job_write(job, dir, 1, path, sizeof path, &written, err, sizeof err);
    CHILD_REQUIRE(rc == 0 && written.journal_seq == 3, "ckpt_job_write: %s", err);
    crashsim_cut();
}

/* A checkpoint is never durable before the applied state it describes.
 * Apply commits without sync; the checkpoint file was fsynced and renamed
 * into place while the Berkeley DB log holding those commits was not yet
 * flushed, so a power cut while the journal was idle left the newest
 * checkpoint ahead of state.db.  The node's next steps then went wrong:
 * the checkpoint taken as apply caught up (here at seq 1) was removed as
 * not the newest (keep = 1), the journal was trimmed to the newer file's
 * restart point, past where apply stood, and apply stopped at the missing
 * entry at every start.  Here: the cut, then those steps as the node's
 * checkpoint thread takes them, then apply to the end. */
START_TEST(checkpoint_is_never_durable_before_the_state_it_describes)
{
    struct retain_policy keep_one = {1, 0, 0};
    struct ckpt_info newest = {0}, written = {0};
    char dir[300], path[512], **paths = NULL, *text = calloc(1, 65536), *want = calloc(1, 65536);
    uint64_t floor = UINT64_MAX, recovered;
    uint32_t removed = 0;
    size_t n_paths = 0, n = 0;
    applier *a = NULL;
    ckpt_job *job = NULL;
    store *s;
    int status, rc;

    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(want);
    map_report();
    new_data_dir("checkpoint-power-cut");
    status = wait_child(start_child(child_checkpoint_then_power_cut, NULL));
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child not cut (status 0x%x): %s",
                  status, report->reason);
    snprintf(dir, sizeof dir, "%s/checkpoints", data_dir);
    ck_assert_int_eq(ckpt_list(dir, &paths, &n_paths), 0);
    ck_assert_uint_eq(n_paths, 1); /* published before the cut: fsynced, renamed, folder fsynced */
    ck_assert_msg(ckpt_read_info(paths[0], &newest, err, sizeof err) == 0, "%s", err);
    ckpt_list_free(paths, n_paths);
    ck_assert_uint_eq(newest.journal_seq, 3);

    s = open_store(0); /* recovery */
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    recovered = applier_meta(a).applied_seq;
    /* apply catches up one entry, a checkpoint is taken there, retention
     * and the journal trim follow (node/checkpoint.c, ckpt_main) */
    rc = applier_run(a, 1, STORE_TXN_RECORDS, err, sizeof err);
    ck_assert_msg(rc == 0, "applier_run: %s", err);
    ck_assert_int_eq(applier_checkpoint_begin(a, 1, &job), 0);
    rc = ckpt_job_write(job, dir, 1, path, sizeof path, &written, err, sizeof err);
    ck_assert_msg(rc == 0, "ckpt_job_write: %s", err);
    ckpt_job_free(job);
    ck_assert_int_eq(
        retain_apply(dir, &keep_one, newest.created_ns + 1, retain_needs(&written), &floor, &removed), 0);
    if (floor != UINT64_MAX)
        ck_assert_int_eq(store_journal_trim(s, floor), 0);
    err[0] = '\0';
    rc = applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err);
    ck_assert_msg(rc == 0, "apply after the trim (below %llu; recovered at seq %llu, checkpoint at 3): %s",
                  (unsigned long long)floor, (unsigned long long)recovered, err);
    ck_assert_msg(recovered >= newest.journal_seq,
                  "checkpoint at seq %llu published, the state recovered at seq %llu",
                  (unsigned long long)newest.journal_seq, (unsigned long long)recovered);
    /* the state: entry 3's values, k000..k009 deleted, and its digest */
    ck_assert_uint_eq(applier_meta(a).applied_seq, 3);
    for (int i = 10; i < 100; i++)
        n += (size_t)snprintf(want + n, 65536 - n, "k%03d=v3-%d;", i, i);
    state_text(s, "t", text, 65536);
    ck_assert_str_eq(text, want);
    ck_assert_uint_eq(applier_meta(a).digest, newest.digest);
    ck_assert_uint_eq(state_digest(s, "t"), newest.digest);
    applier_close(a);
    ckpt_info_free(&newest);
    ckpt_info_free(&written);
    apply_test_end(s, NULL, 0, text, want);
}
END_TEST

/* The whole of file path (malloc'd) and its length in *len. */
static uint8_t *whole_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ck_assert_int_ge(n, 0);
    rewind(f);
    buf = xmalloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A checkpoint whose tables do not add up to apply's digest (A5) is
 * refused before it is published: the file already there at its seq (a
 * standby's bootstrap checkpoint, or an earlier take) stays byte for byte.
 * It used to be renamed over that file, found wrong, and unlinked,
 * leaving no checkpoint at that seq. */
START_TEST(a_checkpoint_refused_for_its_digest_leaves_the_one_of_its_seq)
{
    struct batch b;
    applier *a = NULL;
    ckpt_job *job = NULL;
    struct ckpt_info written = {0};
    struct apply_meta am;
    store *s;
    char dir[300], path[512], again[512];
    uint8_t *before, *after;
    size_t before_len, after_len;
    int rc;

    new_data_dir("checkpoint-digest-refused");
    snprintf(dir, sizeof dir, "%s/checkpoints", data_dir);
    s = open_store(STORE_CREATE);
    first_group(&b, 50);
    append_batch(s, &b);
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(applier_run(a, UINT64_MAX, STORE_TXN_RECORDS, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(applier_checkpoint_begin(a, 1, &job), 0);
    rc = ckpt_job_write(job, dir, 1, path, sizeof path, &written, err, sizeof err);
    ck_assert_msg(rc == 0, "ckpt_job_write: %s", err);
    ckpt_job_free(job);
    ckpt_info_free(&written);
    applier_close(a);
    before = whole_file(path, &before_len);

    /* apply's digest made wrong in meta.db, as a bug in apply would */
    {
        DB *meta = store_meta(s);
        DBT k = {.data = "applied", .size = 7}, v = {.data = &am, .ulen = sizeof am, .flags = DB_DBT_USERMEM};
        ck_assert_int_eq(meta->get(meta, NULL, &k, &v, 0), 0);
        am.digest ^= 1;
        v.size = sizeof am;
        ck_assert_int_eq(meta->put(meta, NULL, &k, &v, DB_AUTO_COMMIT), 0);
    }
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(applier_checkpoint_begin(a, 1, &job), 0);
    err[0] = '\0';
    rc = ckpt_job_write(job, dir, 1, again, sizeof again, &written, err, sizeof err);
    ckpt_job_free(job);
    ck_assert_msg(rc == RK_ECORRUPT, "ckpt_job_write returned %d: %s", rc, err);
    ck_assert_msg(strstr(err, "state and apply disagree"), "%s", err);
    after = whole_file(path, &after_len);
    ck_assert_uint_eq(after_len, before_len);
    ck_assert(memcmp(after, before, before_len) == 0);
    {
        char **paths = NULL;
        size_t n = 0;
        ck_assert_int_eq(ckpt_list(dir, &paths, &n), 0);
        ck_assert_uint_eq(n, 1); /* and no temporary file listed */
        ckpt_list_free(paths, n);
    }
    free(before);
    free(after);
    applier_close(a);
    batch_free(&b);
    store_close(s);
    remove_tree(data_dir);
}
END_TEST

/* A thread that writes the cache's dirty pages to disk until told to stop,
 * as the node's log checkpoint thread does (store_log_checkpoint). */
struct page_writer {
    store *s;
    atomic_int stop;
    uint64_t n_syncs;
};

static void *write_pages(void *arg)
{
    struct page_writer *w = arg;
    DB_ENV *env = store_env(w->s);

    while (!atomic_load(&w->stop)) {
        ck_assert_int_eq(env->memp_sync(env, NULL), 0);
        w->n_syncs++;
    }
    return NULL;
}

/* A checkpoint job is begun (its pin on state.db opened) while another
 * thread writes dirty pages of state.db: such a write borrows the
 * applier's own table handle (Berkeley DB's __memp_bhwrite takes the
 * process's first writable handle on the file), so the applier's close
 * before the pin leaves it open, counted as a writable handle, until the
 * write ends; a multiversion open then got BDB3041 (EINVAL).  That was
 * 92679fa's CI failure: rk_state_open -> EIO while the node's log
 * checkpoint thread was in memp_sync.  400 entries of 200 random PUTs,
 * each applied and then a job begun and ended, while a thread runs
 * memp_sync in a loop: every begin must succeed (snapshot_pin waits the
 * write out), and the state at the end is the model's. */
START_TEST(checkpoint_begins_while_another_thread_writes_pages)
{
    enum { ENTRIES = 400, PUTS = 200, KEYS = 20000, WANT_SIZE = 2 << 20 };
    struct page_writer w = {0};
    pthread_t t;
    applier *a = NULL;
    store *s;
    char key[16], val[64], last[KEYS];
    char *want, *text;
    uint64_t pos = 1, rng = 42;
    size_t n = 0;
    int rc;

    memset(last, 0, sizeof last);
    new_data_dir("apply-checkpoint-begin-race");
    s = open_store(STORE_CREATE);
    for (uint64_t seq = 1; seq <= ENTRIES; seq++) {
        struct batch b;
        batch_init(&b, seq, pos);
        if (seq == 1) {
            add_attach(&b, 0, "eng", 1);
            batch_add(&b, FRAME_TABLE, 0, 0, "t", 1, NULL, 0);
        }
        for (int i = 0; i < PUTS; i++) {
            uint32_t k = (uint32_t)(next_rand(&rng) % KEYS);
            snprintf(key, sizeof key, "k%05u", k);
            memset(val, 'a' + (int)(seq % 26), sizeof val);
            batch_add(&b, FRAME_PUT, 0, 0, key, 6, val, sizeof val);
            last[k] = (char)('a' + (int)(seq % 26));
        }
        add_le64(&b, FRAME_MARK, 0, seq, 0);
        append_batch(s, &b);
        pos = b.h.next_lsn;
        batch_free(&b);
    }
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    w.s = s;
    ck_assert_int_eq(pthread_create(&t, NULL, write_pages, &w), 0);
    for (uint64_t seq = 1; seq <= ENTRIES; seq++) {
        ckpt_job *job = NULL;
        rc = applier_run(a, seq, STORE_TXN_RECORDS, err, sizeof err);
        ck_assert_msg(rc == 0, "applier_run: %s", err);
        rc = applier_checkpoint_begin(a, 1, &job);
        store_last_error(s, why, sizeof why);
        ck_assert_msg(rc == 0, "applier_checkpoint_begin after entry %llu: %s: %s", (unsigned long long)seq,
                      store_strerror(rc), why);
        ck_assert_uint_eq(ckpt_job_applied_seq(job), seq);
        ckpt_job_free(job);
    }
    atomic_store(&w.stop, 1);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_uint_gt(w.n_syncs, 0);
    ck_assert_uint_eq(applier_meta(a).applied_seq, ENTRIES);
    ck_assert_uint_eq(applier_meta(a).digest, state_digest(s, "t"));
    ck_assert_uint_eq(applier_meta(a).n_records, (uint64_t)ENTRIES * PUTS);
    /* every key holds the value of the last entry that put it */
    want = malloc(WANT_SIZE);
    text = malloc(WANT_SIZE);
    ck_assert(want && text);
    for (int k = 0; k < KEYS; k++) {
        if (!last[k])
            continue;
        memset(val, last[k], sizeof val);
        n += (size_t)snprintf(want + n, WANT_SIZE - n, "k%05d=%.*s;", k, (int)sizeof val, val);
        ck_assert_uint_lt(n, WANT_SIZE);
    }
    state_text(s, "t", text, WANT_SIZE);
    ck_assert(strcmp(text, want) == 0);
    free(want);
    free(text);
    applier_close(a);
    store_close(s);
    remove_tree(data_dir);
}
END_TEST

/* base64 (persist/json_bytes.h, shared with node/etcd.c): every length
 * round-trips byte for byte with a NUL after the bytes (json_bytes_of's
 * promise: a table name or etcd key is used as a C string; the decoder
 * once left that byte unwritten), RFC 4648's vectors, and non-canonical
 * text refused. */
START_TEST(base64_round_trips_nul_terminated)
{
    static const char *const vectors[][2] = {{"", ""},
                                             {"f", "Zg=="},
                                             {"fo", "Zm8="},
                                             {"foo", "Zm9v"},
                                             {"foob", "Zm9vYg=="},
                                             {"fooba", "Zm9vYmE="},
                                             {"foobar", "Zm9vYmFy"}};
    static const char *const bad[] = {"Zg", "Zh==", "Zm9=", "Z===", "Zg=a", "Z=g=", "Zm9v!A==", "Zm8=Zm8="};
    uint8_t in[64], *out = NULL;
    size_t n = 0;

    /* glibc fills each new allocation with 0x5a (ASan with its own
     * pattern): an unwritten terminator is not NUL by chance */
    mallopt(M_PERTURB, 0xa5);
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        char *text = base64_encode(vectors[i][0], strlen(vectors[i][0]));
        ck_assert_str_eq(text, vectors[i][1]);
        ck_assert_int_eq(base64_decode(text, strlen(text), &out, &n), 0);
        ck_assert_uint_eq(n, strlen(vectors[i][0]));
        ck_assert_mem_eq(out, vectors[i][0], n + 1); /* the bytes and the NUL after them */
        free(out);
        free(text);
    }
    for (size_t len = 0; len <= sizeof in; len++) {
        for (size_t i = 0; i < len; i++)
            in[i] = (uint8_t)(i * 37 + len);
        char *text = base64_encode(in, len);
        ck_assert_ptr_nonnull(text);
        ck_assert_uint_eq(strlen(text), (len + 2) / 3 * 4);
        ck_assert_int_eq(base64_decode(text, strlen(text), &out, &n), 0);
        ck_assert_uint_eq(n, len);
        ck_assert_mem_eq(out, in, len);
        ck_assert_int_eq(out[len], 0);
        free(out);
        free(text);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(base64_decode(bad[i], strlen(bad[i]), &out, &n) == RK_ECORRUPT, "'%s' accepted",
                      bad[i]);
    }
    mallopt(M_PERTURB, 0);
}
END_TEST

Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc;

    tc = new_tcase(s, "journal");
    tcase_add_test(tc, round_trip_every_frame_type);
    tcase_add_test(tc, base64_round_trips_nul_terminated);
    tcase_add_test(tc, incompressible_batch_is_stored_plain);
    tcase_add_test(tc, header_is_little_endian_at_fixed_offsets);
    tcase_add_test(tc, batch_at_the_size_limit_round_trips);
    tcase_add_test(tc, batch_of_many_small_frames_round_trips);
    tcase_add_test(tc, empty_batch_is_refused);
    tcase_add_test(tc, inconsistent_batches_are_refused_by_the_encoder);
    tcase_add_loop_test(tc, every_flipped_bit_is_refused, 0, 2);
    tcase_add_test(tc, every_truncation_is_refused);
    tcase_add_test(tc, huge_raw_len_is_refused_without_allocating_it);
    tcase_add_test(tc, wrong_magic_or_version_is_refused);
    tcase_add_loop_test(tc, corrupt_contents_are_refused_despite_a_good_checksum, 0, N_INSIDE_CASES);
    tcase_add_test(tc, corrupt_zstd_bodies_are_refused);
    tcase_add_test(tc, table_frame_takes_the_lsn_below_its_frame);
    tcase_add_test(tc, reason_fits_its_buffer);

    tc = new_tcase(s, "store");
    tcase_add_test(tc, missing_data_directory_is_named);
    tcase_add_test(tc, open_makes_db_and_checkpoints_and_writes_the_pid);
    tcase_add_test(tc, second_open_is_busy_and_names_the_pid);
    tcase_add_test(tc, append_last_get_round_trip_across_reopen);
    tcase_add_test(tc, ring_identity_beside_db_round_trips_and_bad_files_are_refused);
    tcase_add_test(tc, a_fence_in_meta_db_is_kept_beside_db);
    tcase_add_test(tc, duplicate_seq_is_refused);
    tcase_add_test(tc, append_many_is_all_or_none);
    tcase_add_test(tc, trim_removes_entries_below_seq);
    tcase_add_test(tc, trim_of_large_entries_takes_short_transactions);
    tcase_add_test(tc, corrupt_entry_in_the_database_is_reported);
    tcase_add_loop_test(tc, acknowledged_entries_survive_sigkill, 0, 2);

    tc = new_tcase(s, "faults");
    tcase_add_loop_test(tc, failed_append_leaves_a_consistent_store, 0, N_FAULT_SPECS);
    tcase_add_test(tc, fault_from_the_environment_fails_store_open);
    tcase_add_test(tc, fault_specs_are_parsed_strictly);
    tcase_add_test(tc, seam_fails_from_the_nth_call_and_stays_failed);
    tcase_add_test(tc, seam_once_fault_fails_one_matching_call_then_passes);
    tcase_add_test(tc, database_files_are_closed_on_exec);
    tcase_add_test(tc, store_strerror_covers_every_source);
    tcase_add_test(tc, unfinished_build_is_refused);

    tc = new_tcase(s, "apply");
    tcase_add_test(tc, apply_refuses_a_frame_with_an_out_of_range_table_id);
    tcase_add_test(tc, apply_reports_an_entry_trimmed_past_it);
    tcase_add_loop_test(tc, stale_abort_does_not_discard_a_reattached_producers_group, 0, 2);
    tcase_add_loop_test(tc, renamed_table_ids_and_slots_apply_to_their_new_names, 0, 2);
    tcase_add_loop_test(tc, frames_read_again_after_a_new_ring_keep_their_producer, 0, 2);
    tcase_add_test(tc, a_checkpoint_refused_for_its_digest_leaves_the_one_of_its_seq);
    tcase_add_loop_test(tc, sorted_transaction_ends_as_journal_order_says, 0, 3);
    tcase_add_test(tc, new_and_existing_keys_both_ways_keep_state_and_digest);
    tcase_add_test(tc, sorted_transaction_of_many_records_keeps_the_last_write_of_each_key);
    tcase_add_test(tc, pending_sort_orders_by_table_key_and_journal_order);
    tcase_add_loop_test(tc, checkpoint_holds_the_state_at_its_begin_while_apply_goes_on, 0, 3);
    tcase_add_test(tc, checkpoint_is_never_durable_before_the_state_it_describes);
    tcase_add_test(tc, checkpoint_begins_while_another_thread_writes_pages);
    return s;
}

int main(void)
{
    SRunner *sr;
    int n_failed;

    snprintf(base_dir, sizeof base_dir, "/tmp/rk-test-store-XXXXXX");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    n_failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_tree(base_dir);
    return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
