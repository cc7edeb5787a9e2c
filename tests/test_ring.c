/* test_ring.c -- unit tests of the ring in one process: every frame type
 * round trip, zero-length and maximum sizes, oversize refused, wrap-around
 * and padding over many laps, LSNs from a start position, tables, the
 * producer registry, full policies, rk_wait, batches (rk_write), and error
 * strings.  Every test
 * compares the bytes that come out of the consumer with the bytes that
 * went in. */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm/ring.h"

static char ring_name[64];
static ring_owner *owner;
static char err[512];

static void make_ring(uint64_t capacity, uint64_t start_lsn)
{
    ring_create_opts co = {.capacity = capacity, .start_lsn = start_lsn};
    snprintf(ring_name, sizeof ring_name, "test_ring.%d", (int)getpid());
    ring_unlink(ring_name);
    ck_assert_msg(ring_create(ring_name, &co, &owner, err, sizeof err) == 0, "%s", err);
}

static void teardown(void)
{
    ring_close(owner, 1);
    owner = NULL;
}

static rk_ring *attach(const char *producer, int policy, int timeout_ms)
{
    rk_ring_opts ro = {.producer = producer,
                       .full_policy = policy,
                       .full_timeout_ms = timeout_ms,
                       .errmsg = err,
                       .errmsg_size = sizeof err};
    rk_ring *r = NULL;
    int rc = rk_ring_attach(ring_name, &ro, &r);
    ck_assert_msg(rc == 0, "attach %s: %s (%s)", producer, rk_strerror(rc), err);
    return r;
}

/* Registers tables "t0" .. "t<n-1>" in a new ring: their ids are 0 .. n-1. */
static void register_tables(rk_ring *r, int n)
{
    for (int i = 0; i < n; i++) {
        char name[16];
        uint16_t id;
        snprintf(name, sizeof name, "t%d", i);
        ck_assert_int_eq(rk_table(r, name, &id), 0);
        ck_assert_int_eq(id, i);
    }
}

/* Next non-ATTACH frame; fails the test if there is none. */
static ring_frame next_data(void)
{
    ring_frame f;
    int rc;
    do {
        rc = ring_next(owner, &f);
        ck_assert_msg(rc == 1, "ring_next returned %d: %s", rc, ring_error(owner));
    } while (f.type == FRAME_ATTACH);
    return f;
}

static void fill(uint8_t *buf, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (uint8_t)(seed >> 16);
    }
}

START_TEST(every_frame_type_round_trips)
{
    make_ring(1 << 20, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    uint16_t t;
    uint64_t l_put, l_del, l_mark, l_claim;
    rk_claim c;
    ring_frame f;

    ck_assert_int_eq(rk_table(r, "orders", &t), 0);
    ck_assert_int_eq(rk_put(r, t, "key1", 4, "value-1", 7, &l_put), 0);
    ck_assert_int_eq(rk_del(r, t, "key2", 4, &l_del), 0);
    ck_assert_int_eq(rk_mark(r, 0x0102030405060708ull, &l_mark), 0);
    ck_assert_int_eq(rk_claim_record(r, t, 3, 5, &c), 0);
    memcpy(c.key, "zck", 3);
    memcpy(c.val, "zcval", 5);
    ck_assert_int_eq(rk_commit(r, &c, &l_claim), 0);
    ck_assert(l_put < l_del && l_del < l_mark && l_mark < l_claim);

    ck_assert_int_eq(ring_next(owner, &f), 1);
    ck_assert_int_eq(f.type, FRAME_ATTACH);
    ck_assert_int_eq(f.klen, 1);
    ck_assert_mem_eq(f.key, "p", 1);
    ck_assert_int_eq(f.vlen, sizeof(struct frame_attach));
    uint16_t producer = f.producer;

    f = next_data();
    ck_assert_int_eq(f.type, FRAME_PUT);
    ck_assert_int_eq(f.table, t);
    ck_assert_int_eq(f.producer, producer);
    ck_assert_uint_eq(f.lsn, l_put);
    ck_assert_int_eq(f.klen, 4);
    ck_assert_mem_eq(f.key, "key1", 4);
    ck_assert_int_eq(f.vlen, 7);
    ck_assert_mem_eq(f.val, "value-1", 7);

    f = next_data();
    ck_assert_int_eq(f.type, FRAME_DEL);
    ck_assert_uint_eq(f.lsn, l_del);
    ck_assert_int_eq(f.klen, 4);
    ck_assert_mem_eq(f.key, "key2", 4);
    ck_assert_int_eq(f.vlen, 0);

    f = next_data();
    ck_assert_int_eq(f.type, FRAME_MARK);
    ck_assert_uint_eq(f.lsn, l_mark);
    ck_assert_int_eq(f.vlen, 8);
    ck_assert_mem_eq(f.val, "\x08\x07\x06\x05\x04\x03\x02\x01", 8);

    f = next_data();
    ck_assert_int_eq(f.type, FRAME_PUT);
    ck_assert_uint_eq(f.lsn, l_claim);
    ck_assert_mem_eq(f.key, "zck", 3);
    ck_assert_mem_eq(f.val, "zcval", 5);

    ck_assert_int_eq(ring_next(owner, &f), 0);
    ring_release(owner);
    rk_ring_detach(r);
    teardown();
}
END_TEST

START_TEST(zero_length_and_maximum_sizes)
{
    make_ring(1 << 20, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    register_tables(r, 1);
    uint32_t max = rk_ring_max_record(r);
    uint8_t *big = malloc(max + 1);
    ring_frame f;
    uint64_t lsn;

    ck_assert_uint_eq(max, (1 << 20) / 4 - FRAME_HEADER_SIZE);
    fill(big, max + 1, 7);
    ck_assert_int_eq(rk_put(r, 0, NULL, 0, NULL, 0, &lsn), 0);
    ck_assert_int_eq(rk_put(r, 0, "k", 1, NULL, 0, NULL), 0);
    ck_assert_int_eq(rk_put(r, 0, NULL, 0, "v", 1, NULL), 0);
    ck_assert_int_eq(rk_put(r, 0, big, RK_KEY_MAX, big + 1, max - RK_KEY_MAX, NULL), 0);
    ck_assert_int_eq(rk_put(r, 0, NULL, 0, big, max, NULL), 0);

    f = next_data();
    ck_assert(f.klen == 0 && f.vlen == 0 && f.lsn == lsn);
    f = next_data();
    ck_assert(f.klen == 1 && f.vlen == 0 && f.key[0] == 'k');
    f = next_data();
    ck_assert(f.klen == 0 && f.vlen == 1 && f.val[0] == 'v');
    f = next_data();
    ck_assert_uint_eq(f.klen, RK_KEY_MAX);
    ck_assert_uint_eq(f.vlen, max - RK_KEY_MAX);
    ck_assert(memcmp(f.key, big, RK_KEY_MAX) == 0 && memcmp(f.val, big + 1, f.vlen) == 0);
    ring_release(owner);
    f = next_data();
    ck_assert_uint_eq(f.vlen, max);
    ck_assert(memcmp(f.val, big, max) == 0);
    ring_release(owner);
    free(big);
    rk_ring_detach(r);
    teardown();
}
END_TEST

START_TEST(oversize_is_refused_and_nothing_is_written)
{
    make_ring(1 << 20, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    register_tables(r, 1);
    uint32_t max = rk_ring_max_record(r);
    uint8_t *big = calloc(1, (size_t)max + RK_KEY_MAX + 16);
    uint64_t tail = atomic_load(&ring_header_of(owner)->tail);
    rk_claim c;
    ring_frame f;

    ck_assert_int_eq(rk_put(r, 0, big, RK_KEY_MAX + 1, NULL, 0, NULL), RK_ETOOBIG);
    ck_assert_int_eq(rk_put(r, 0, NULL, 0, big, max + 1, NULL), RK_ETOOBIG);
    ck_assert_int_eq(rk_put(r, 0, big, 1, big, max, NULL), RK_ETOOBIG);
    ck_assert_int_eq(rk_put(r, 0, NULL, 0, big, UINT32_MAX, NULL), RK_ETOOBIG);
    ck_assert_int_eq(rk_claim_record(r, 0, UINT32_MAX, UINT32_MAX, &c), RK_ETOOBIG);
    ck_assert_int_eq(rk_put(r, 0, NULL, 5, NULL, 0, NULL), RK_EINVAL);
    ck_assert_str_eq(rk_strerror(RK_ETOOBIG), "record too large for this ring (see rk_ring_max_record)");
    ck_assert_uint_eq(atomic_load(&ring_header_of(owner)->tail), tail);
    /* the ring still works */
    ck_assert_int_eq(rk_put(r, 0, "a", 1, "b", 1, NULL), 0);
    f = next_data();
    ck_assert(f.klen == 1 && f.key[0] == 'a' && f.vlen == 1 && f.val[0] == 'b');
    free(big);
    rk_ring_detach(r);
    teardown();
}
END_TEST

/* Many laps of a small ring with sizes that do not divide it: frames never
 * straddle the end, padding is skipped, every byte arrives. */
START_TEST(wrap_around_with_padding)
{
    const uint64_t cap = RING_MIN_CAPACITY;
    make_ring(cap, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    register_tables(r, 5);
    uint8_t key[64], val[3000], expect_k[64], expect_v[3000];
    uint64_t prev = 0, n_in = 0, n_out = 0;
    ring_frame f;

    for (uint32_t i = 0; i < 20000; i++) {
        uint32_t kl = i % 61, vl = (i * 7919) % 2900;
        uint64_t lsn;
        fill(key, kl, i);
        fill(val, vl, ~i);
        int rc = rk_put(r, (uint16_t)(i % 5), key, kl, val, vl, &lsn);
        if (rc == RK_EFULL) {
            /* drain, then retry the same record */
            ring_release(owner);
            i--;
            continue;
        }
        ck_assert_int_eq(rc, 0);
        ck_assert(lsn > prev);
        prev = lsn;
        n_in++;
        int got;
        while ((got = ring_next(owner, &f)) == 1) {
            if (f.type == FRAME_ATTACH)
                continue;
            uint32_t j = (uint32_t)n_out;
            uint32_t ekl = j % 61, evl = (j * 7919) % 2900;
            fill(expect_k, ekl, j);
            fill(expect_v, evl, ~j);
            ck_assert_uint_eq(f.klen, ekl);
            ck_assert_uint_eq(f.vlen, evl);
            ck_assert_int_eq(f.table, j % 5);
            ck_assert(memcmp(f.key, expect_k, ekl) == 0 && memcmp(f.val, expect_v, evl) == 0);
            ck_assert((f.lsn & (cap - 1)) + f.raw_len <= cap);
            n_out++;
        }
        ck_assert_int_eq(got, 0);
        if (i % 3 == 0)
            ring_release(owner);
    }
    ring_release(owner);
    ck_assert_uint_eq(n_in, n_out);
    struct ring_header *h = ring_header_of(owner);
    ck_assert_msg(atomic_load(&h->tail) - h->start_lsn > 100 * cap, "only %llu laps",
                  (unsigned long long)((atomic_load(&h->tail) - h->start_lsn) / cap));
    rk_ring_detach(r);
    teardown();
}
END_TEST

/* The record j of write_batches_round_trip_over_many_laps: its op, table,
 * sizes and bytes follow from j. */
struct batch_rec {
    uint8_t key[64], val[3000];
    rk_record rec;
};

static void batch_rec_make(struct batch_rec *b, uint32_t j)
{
    memset(&b->rec, 0, sizeof b->rec);
    b->rec.op = j % 7 == 3 ? RK_OP_DEL : RK_OP_PUT;
    b->rec.table = (uint16_t)(j % 5);
    b->rec.klen = j % 61;
    b->rec.vlen = b->rec.op == RK_OP_DEL ? 0 : j % 13 == 0 ? (j * 7919) % 2900 : (j * 31) % 97;
    fill(b->key, b->rec.klen, j);
    fill(b->val, b->rec.vlen, ~j);
    b->rec.key = b->rec.klen ? b->key : NULL;
    b->rec.val = b->rec.vlen ? b->val : NULL;
}

/* rk_write of batches of 1..300 records (PUT and DEL, keys and values of
 * many sizes, several claims per call) over many laps of the smallest
 * ring, with RK_FULL_FAIL: a call cut short by a full ring has written
 * exactly *n_written records and the caller goes on from there.  Every
 * record arrives once, in order, byte for byte, at strictly increasing
 * LSNs, the last of a call at the LSN it returned, and no frame straddles
 * the end of the data area. */
START_TEST(write_batches_round_trip_over_many_laps)
{
    const uint64_t cap = RING_MIN_CAPACITY;
    make_ring(cap, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    register_tables(r, 5);
    enum { MAX_BATCH = 300 };
    struct batch_rec *in = malloc(MAX_BATCH * sizeof *in), expect;
    rk_record recs[MAX_BATCH];
    uint64_t prev = 0, n_in = 0, n_out = 0, n_short = 0;
    uint32_t seed = 1;
    ring_frame f;

    while (n_in < 200000) {
        uint32_t n, done = 0;
        seed = seed * 1103515245u + 12345u;
        n = 1 + (seed >> 16) % MAX_BATCH;
        for (uint32_t i = 0; i < n; i++) {
            batch_rec_make(&in[i], (uint32_t)(n_in + i));
            recs[i] = in[i].rec;
        }
        while (done < n) {
            size_t written = SIZE_MAX;
            uint64_t lsn = 0;
            int rc = rk_write(r, recs + done, n - done, &written, &lsn), got;
            ck_assert_msg(rc == 0 || rc == RK_EFULL, "rk_write: %s", rk_strerror(rc));
            ck_assert_uint_le(written, n - done);
            ck_assert(rc == RK_EFULL || written == n - done);
            n_short += rc == RK_EFULL;
            done += (uint32_t)written;
            n_in += written;
            while ((got = ring_next(owner, &f)) == 1) {
                if (f.type == FRAME_ATTACH)
                    continue;
                batch_rec_make(&expect, (uint32_t)n_out);
                ck_assert_int_eq(f.type, expect.rec.op == RK_OP_PUT ? FRAME_PUT : FRAME_DEL);
                ck_assert_int_eq(f.table, expect.rec.table);
                ck_assert_uint_eq(f.klen, expect.rec.klen);
                ck_assert_uint_eq(f.vlen, expect.rec.vlen);
                ck_assert(memcmp(f.key, expect.key, f.klen) == 0 && memcmp(f.val, expect.val, f.vlen) == 0);
                ck_assert((f.lsn & (cap - 1)) + f.raw_len <= cap);
                ck_assert(f.lsn > prev || n_out == 0);
                prev = f.lsn;
                n_out++;
            }
            ck_assert_int_eq(got, 0);
            ck_assert_uint_eq(n_out, n_in);
            if (written)
                ck_assert_uint_eq(lsn, prev); /* the last record written */
            if (rc == RK_EFULL || seed % 3 == 0)
                ring_release(owner);
        }
    }
    ring_release(owner);
    ck_assert_msg(n_short > 0, "no call was cut short by a full ring");
    struct ring_header *h = ring_header_of(owner);
    ck_assert_msg(atomic_load(&h->tail) - h->start_lsn > 100 * cap, "only %llu laps",
                  (unsigned long long)((atomic_load(&h->tail) - h->start_lsn) / cap));
    ck_assert_uint_eq(atomic_load(&h->n_unblocked), 0);
    free(in);
    rk_ring_detach(r);
    teardown();
}
END_TEST

/* rk_write checks every record before it claims anything: a bad record
 * anywhere in the batch leaves the ring and the producer's slot as they
 * were, and n_written at 0.  A fenced ring takes none of a batch. */
START_TEST(write_batch_with_a_bad_record_writes_nothing)
{
    make_ring(1 << 16, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    struct ring_header *h = ring_header_of(owner);
    size_t cap = h->capacity;
    uint8_t *before = malloc(cap), *big = calloc(1, cap);
    uint32_t max = 0;
    struct ring_producer_slot slot;
    rk_record recs[4];
    size_t written;
    uint64_t tail, lsn = 77;
    ring_frame f;
    struct {
        rk_record bad;
        int rc;
    } cases[8];

    register_tables(r, 1);
    max = rk_ring_max_record(r);
    for (int i = 0; i < 4; i++)
        recs[i] = (rk_record){.key = "k", .klen = 1, .val = "v", .vlen = 1, .table = 0, .op = RK_OP_PUT};
    cases[0].bad = (rk_record){.key = "k", .klen = 1, .table = 1, .op = RK_OP_PUT};
    cases[0].rc = RK_EINVAL; /* table not registered */
    cases[1].bad = (rk_record){.key = "k", .klen = 1, .table = 0, .op = 3};
    cases[1].rc = RK_EINVAL; /* not an op */
    cases[2].bad = (rk_record){.key = "k", .klen = 1, .val = "v", .vlen = 1, .table = 0, .op = RK_OP_DEL};
    cases[2].rc = RK_EINVAL; /* a DEL with a value */
    cases[3].bad = (rk_record){.key = NULL, .klen = 3, .table = 0, .op = RK_OP_PUT};
    cases[3].rc = RK_EINVAL;
    cases[4].bad = (rk_record){.key = "k", .klen = 1, .val = NULL, .vlen = 2, .table = 0, .op = RK_OP_PUT};
    cases[4].rc = RK_EINVAL;
    cases[5].bad = (rk_record){.key = big, .klen = 1, .val = big, .vlen = max, .table = 0, .op = RK_OP_PUT};
    cases[5].rc = RK_ETOOBIG;
    cases[6].bad = (rk_record){.key = big, .klen = RK_KEY_MAX + 1, .table = 0, .op = RK_OP_DEL};
    cases[6].rc = RK_ETOOBIG;
    cases[7].bad = (rk_record){.val = big, .vlen = UINT32_MAX, .table = 0, .op = RK_OP_PUT};
    cases[7].rc = RK_ETOOBIG;
    ck_assert_int_eq(rk_put(r, 0, "k0", 2, "v0", 2, NULL), 0);
    tail = atomic_load(&h->tail);
    memcpy(before, ring_data_of(owner), cap);
    memcpy(&slot, &h->producers[0], sizeof slot);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int at = 0; at < 4; at++) {
            rk_record saved = recs[at];
            recs[at] = cases[c].bad;
            written = 99;
            ck_assert_int_eq(rk_write(r, recs, 4, &written, &lsn), cases[c].rc);
            ck_assert_uint_eq(written, 0);
            recs[at] = saved;
        }
    }
    ck_assert_int_eq(rk_write(r, NULL, 1, &written, &lsn), RK_EINVAL);
    ck_assert_int_eq(rk_write(NULL, recs, 1, &written, &lsn), RK_EINVAL);
    ck_assert_uint_eq(lsn, 77);
    ck_assert_uint_eq(atomic_load(&h->tail), tail);
    ck_assert(memcmp(before, ring_data_of(owner), cap) == 0);
    ck_assert(memcmp(&slot, &h->producers[0], sizeof slot) == 0);
    /* nothing to write is no error; then the same batch, all good, goes in */
    ck_assert_int_eq(rk_write(r, recs, 0, &written, &lsn), 0);
    ck_assert_uint_eq(written, 0);
    ck_assert_uint_eq(atomic_load(&h->tail), tail);
    ck_assert_int_eq(rk_write(r, recs, 4, &written, &lsn), 0);
    ck_assert_uint_eq(written, 4);
    f = next_data();
    ck_assert(f.klen == 2 && memcmp(f.key, "k0", 2) == 0);
    for (int i = 0; i < 4; i++) {
        f = next_data();
        ck_assert(f.type == FRAME_PUT && f.klen == 1 && f.key[0] == 'k' && f.vlen == 1 && f.val[0] == 'v');
    }
    ck_assert_uint_eq(f.lsn, lsn);
    ck_assert_int_eq(ring_next(owner, &f), 0);
    /* a fenced ring takes none of a batch (R9) */
    tail = atomic_load(&h->tail);
    ring_fence(owner);
    written = 99;
    ck_assert_int_eq(rk_write(r, recs, 4, &written, &lsn), RK_EFENCED);
    ck_assert_uint_eq(written, 0);
    ck_assert_uint_eq(atomic_load(&h->tail), tail);
    ring_unfence(owner);
    free(before);
    free(big);
    rk_ring_detach(r);
    teardown();
}
END_TEST

START_TEST(lsns_continue_from_the_start_position)
{
    make_ring(1 << 16, 1000001);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    register_tables(r, 1);
    uint64_t lsn, prev = 0;

    ck_assert_uint_eq(ring_header_of(owner)->start_lsn, 1000008);
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(rk_put(r, 0, &i, sizeof i, NULL, 0, &lsn), 0);
        ck_assert(lsn > prev && lsn >= 1000008);
        prev = lsn;
        ring_frame f = next_data();
        ck_assert_uint_eq(f.lsn, lsn);
        ck_assert_mem_eq(f.key, &i, sizeof i);
        ring_release(owner);
    }
    rk_ring_detach(r);
    teardown();
}
END_TEST

START_TEST(tables_are_shared_by_name)
{
    make_ring(1 << 16, 0);
    rk_ring *a = attach("a", RK_FULL_FAIL, 0), *b = attach("b", RK_FULL_FAIL, 0);
    uint16_t t1, t2, t3, t4;
    char name[64];

    ck_assert_int_eq(rk_table(a, "orders", &t1), 0);
    ck_assert_int_eq(rk_table(a, "fills", &t2), 0);
    ck_assert_int_eq(rk_table(b, "orders", &t3), 0);
    ck_assert_int_eq(rk_table(b, "fills", &t4), 0);
    ck_assert(t1 != t2 && t1 == t3 && t2 == t4);
    memset(name, 'x', sizeof name);
    name[RK_NAME_MAX + 1] = '\0';
    ck_assert_int_eq(rk_table(a, name, &t1), RK_EINVAL);
    ck_assert_int_eq(rk_table(a, "", &t1), RK_EINVAL);
    for (int i = 2; i < RING_MAX_TABLES; i++) {
        snprintf(name, sizeof name, "t%d", i);
        ck_assert_int_eq(rk_table(i % 2 ? a : b, name, &t1), 0);
        ck_assert_int_eq(t1, i);
    }
    ck_assert_int_eq(rk_table(a, "one-too-many", &t1), RK_ETABLES);
    ck_assert_int_eq(rk_table(b, "t200", &t1), 0);
    ck_assert_int_eq(t1, 200);
    rk_ring_detach(a);
    rk_ring_detach(b);
    teardown();
}
END_TEST

START_TEST(producer_names_are_exclusive_while_alive)
{
    make_ring(1 << 16, 0);
    rk_ring *a = attach("engine", RK_FULL_FAIL, 0), *again = NULL;
    rk_ring_opts ro = {.producer = "engine", .errmsg = err, .errmsg_size = sizeof err};
    struct frame_attach fa1, fa2;
    ring_frame f;
    uint16_t id;

    ck_assert_int_eq(rk_ring_attach(ring_name, &ro, &again), RK_EBUSY);
    ck_assert_ptr_null(again);
    ck_assert_msg(strstr(err, "already attached by live pid") != NULL, "%s", err);
    ck_assert_int_eq(ring_next(owner, &f), 1);
    memcpy(&fa1, f.val, sizeof fa1);
    id = f.producer;
    rk_ring_detach(a);
    a = attach("engine", RK_FULL_FAIL, 0);
    ck_assert_int_eq(ring_next(owner, &f), 1);
    ck_assert_int_eq(f.type, FRAME_ATTACH);
    memcpy(&fa2, f.val, sizeof fa2);
    ck_assert_int_eq(f.producer, id); /* a name keeps its slot */
    ck_assert_uint_eq(fa2.session, fa1.session + 1);
    ck_assert_uint_eq(fa2.pid, (uint32_t)getpid());
    rk_ring_detach(a);

    ro.producer = "bad/name";
    ck_assert_int_eq(rk_ring_attach(ring_name, &ro, &again), RK_EINVAL);
    ro.producer = "p";
    ro.full_policy = 7;
    ck_assert_int_eq(rk_ring_attach(ring_name, &ro, &again), RK_EINVAL);
    teardown();
}
END_TEST

START_TEST(producer_registry_full)
{
    make_ring(1 << 20, 0);
    rk_ring *rs[RING_MAX_PRODUCERS] = {0}, *extra = NULL;
    rk_ring_opts ro = {.producer = "overflow", .errmsg = err, .errmsg_size = sizeof err};
    char name[32];

    for (int i = 0; i < RING_MAX_PRODUCERS; i++) {
        snprintf(name, sizeof name, "p%d", i);
        rs[i] = attach(name, RK_FULL_FAIL, 0);
    }
    ck_assert_int_eq(rk_ring_attach(ring_name, &ro, &extra), RK_EPRODUCERS);
    for (int i = 0; i < RING_MAX_PRODUCERS; i++)
        rk_ring_detach(rs[i]);
    teardown();
}
END_TEST

START_TEST(full_policies_in_one_process)
{
    make_ring(RING_MIN_CAPACITY, 0);
    rk_ring *f = attach("fail", RK_FULL_FAIL, 0), *w = attach("wait", RK_FULL_WAIT, 50);
    register_tables(f, 1);
    uint8_t val[1000];
    uint64_t n = 0;
    int rc;

    fill(val, sizeof val, 1);
    while ((rc = rk_put(f, 0, &n, sizeof n, val, sizeof val, NULL)) == 0)
        n++;
    ck_assert_int_eq(rc, RK_EFULL);
    ck_assert(n > 30 && n < 70);
    ck_assert_int_eq(rk_put(w, 0, &n, sizeof n, val, sizeof val, NULL), RK_ETIMEDOUT);
    /* draining makes room; every record written before EFULL is there */
    uint64_t seen = 0;
    ring_frame fr;
    while (ring_next(owner, &fr) == 1) {
        if (fr.type != FRAME_PUT)
            continue;
        ck_assert_mem_eq(fr.key, &seen, sizeof seen);
        ck_assert(memcmp(fr.val, val, sizeof val) == 0);
        seen++;
    }
    ck_assert_uint_eq(seen, n);
    ring_release(owner);
    ck_assert_int_eq(rk_put(f, 0, &n, sizeof n, val, sizeof val, NULL), 0);
    ck_assert_int_eq(rk_put(w, 0, &n, sizeof n, val, sizeof val, NULL), 0);
    rk_ring_detach(f);
    rk_ring_detach(w);
    teardown();
}
END_TEST

/* A producer whose claim raced another's for the last room waits for
 * room inside its claim (claim_raced).  On a fenced ring (R9) the head
 * never moves again: before the fix that wait ignored RK_EFENCED and
 * spun for ever at full CPU; now the claim is given up and the call
 * returns RK_EFENCED.  Run in a child, so that a spin is a failure (the
 * child killed after 60 s), not a hang of the suite. */
START_TEST(a_raced_claim_on_a_fenced_ring_returns_fenced)
{
    make_ring(RING_MIN_CAPACITY, 0);
    rk_ring *f = attach("fill", RK_FULL_FAIL, 0), *raced = attach("raced", RK_FULL_WAIT, 0);
    register_tables(f, 1);
    uint8_t val[1000];
    uint64_t n = 0;
    int status = 0;
    pid_t pid, done = 0;

    fill(val, sizeof val, 1);
    while (rk_put(f, 0, &n, sizeof n, val, sizeof val, NULL) == 0)
        n++;
    ring_fence(owner);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(ring_test_claim_raced(raced, 1000) == RK_EFENCED ? 0 : 1);
    for (int i = 0; i < 6000 && done == 0; i++) {
        done = waitpid(pid, &status, WNOHANG);
        if (done == 0)
            usleep(10000);
    }
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ck_abort_msg("a claim that raced for room on a fenced ring still waited after 60 s");
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the raced claim returned %s (status %d)",
                  "not RK_EFENCED", status);
    /* the fenced ring refuses the next write at once, as before */
    ck_assert_int_eq(rk_put(raced, 0, &n, sizeof n, val, sizeof val, NULL), RK_EFENCED);
    ring_unfence(owner);
    rk_ring_detach(f);
    rk_ring_detach(raced);
    teardown();
}
END_TEST

START_TEST(wait_levels_follow_the_cursors)
{
    make_ring(1 << 16, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    register_tables(r, 1);
    uint64_t lsn1, lsn2;

    ck_assert_int_eq(rk_put(r, 0, "a", 1, "1", 1, &lsn1), 0);
    ck_assert_int_eq(rk_put(r, 0, "b", 1, "2", 1, &lsn2), 0);
    ck_assert_int_eq(rk_wait(r, lsn2, RK_WRITTEN, 0), 0);
    ck_assert_int_eq(rk_wait(r, lsn2 + 1000, RK_WRITTEN, 0), RK_EINVAL);
    ck_assert_int_eq(rk_wait(r, lsn1, RK_DURABLE, 10), RK_ETIMEDOUT);
    ring_set_durable(owner, lsn1);
    ck_assert_int_eq(rk_wait(r, lsn1, RK_DURABLE, 0), 0);
    ck_assert_int_eq(rk_wait(r, lsn2, RK_DURABLE, 10), RK_ETIMEDOUT);
    ck_assert_int_eq(rk_wait(r, lsn1, RK_REPLICATED, 10), RK_ETIMEDOUT);
    ring_set_replicated(owner, lsn2);
    ck_assert_int_eq(rk_wait(r, lsn2, RK_REPLICATED, -1), 0);
    ring_set_durable(owner, lsn1 - 8); /* never moves backwards */
    ck_assert_uint_eq(atomic_load(&ring_header_of(owner)->durable_lsn), lsn1);
    ck_assert_int_eq(rk_wait(r, lsn1, (rk_level)9, 0), RK_EINVAL);
    rk_ring_detach(r);
    teardown();
}
END_TEST

/* Automatic failover: past the lease deadline no cursor moves, whoever
 * asks (a process paused past it wakes with its drain and replicator
 * threads mid-work); a move asked then is made once a renewed lease sets a
 * later deadline, and never once the ring is fenced. */
START_TEST(cursors_freeze_past_the_lease_deadline)
{
    make_ring(1 << 16, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    register_tables(r, 1);
    struct ring_header *h = ring_header_of(owner);
    uint64_t lsn1, lsn2, lsn3, deadline;

    ck_assert_int_eq(rk_put(r, 0, "a", 1, "1", 1, &lsn1), 0);
    ck_assert_int_eq(rk_put(r, 0, "b", 1, "2", 1, &lsn2), 0);
    ck_assert_int_eq(rk_put(r, 0, "c", 1, "3", 1, &lsn3), 0);
    ring_set_ack_deadline(owner, 0); /* no lease yet */
    ring_set_durable(owner, lsn1);
    ring_set_replicated(owner, lsn1);
    ck_assert_uint_lt(atomic_load(&h->durable_lsn), lsn1);
    ck_assert_uint_lt(atomic_load(&h->replicated_lsn), lsn1);
    ck_assert_int_eq(rk_wait(r, lsn1, RK_DURABLE, 10), RK_ETIMEDOUT);
    /* the lease is ours until a minute from now: what was held moves */
    ring_set_ack_deadline(owner, ring_boottime_ns() + 60000000000ull);
    ck_assert_uint_eq(atomic_load(&h->durable_lsn), lsn1);
    ck_assert_uint_eq(atomic_load(&h->replicated_lsn), lsn1);
    ck_assert_int_eq(rk_wait(r, lsn1, RK_REPLICATED, 0), 0);
    ring_set_durable(owner, lsn2);
    ck_assert_uint_eq(atomic_load(&h->durable_lsn), lsn2);
    ring_close(owner, 1);

    /* a deadline that passes while nobody renews */
    make_ring(1 << 16, 0);
    h = ring_header_of(owner);
    uint64_t replicated0 = atomic_load(&h->replicated_lsn);
    deadline = ring_boottime_ns() + 20000000ull;
    ring_set_ack_deadline(owner, deadline);
    ring_set_durable(owner, 64);
    ck_assert_uint_eq(atomic_load(&h->durable_lsn), 64);
    for (uint64_t i = 0; ring_boottime_ns() < deadline && i < 1000000000ull; i++)
        ; /* the clock passes the deadline (bounded) */
    ring_set_durable(owner, 72);
    ring_set_replicated(owner, 72);
    ck_assert_uint_eq(atomic_load(&h->durable_lsn), 64);
    ck_assert_uint_eq(atomic_load(&h->replicated_lsn), replicated0);
    ring_set_ack_deadline(owner, deadline - 1); /* a deadline never moves back */
    ck_assert_uint_eq(atomic_load(&h->durable_lsn), 64);
    /* fenced (the node stepped down): a later deadline moves nothing */
    ring_fence(owner);
    ring_set_ack_deadline(owner, ring_boottime_ns() + 60000000000ull);
    ck_assert_uint_eq(atomic_load(&h->durable_lsn), 64);
    ck_assert_uint_eq(atomic_load(&h->replicated_lsn), replicated0);
    rk_ring_detach(r);
    teardown();
}
END_TEST

START_TEST(consumer_waits_and_wakes)
{
    make_ring(1 << 16, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    register_tables(r, 1);
    ring_frame f;

    while (ring_next(owner, &f) == 1)
        ;
    ring_release(owner);
    ck_assert_int_eq(ring_wait_ready(owner, 20), 0);
    ck_assert_int_eq(rk_put(r, 0, "k", 1, "v", 1, NULL), 0);
    ck_assert_int_eq(ring_wait_ready(owner, 1000), 1);
    ck_assert_int_eq(ring_next(owner, &f), 1);
    ck_assert_mem_eq(f.key, "k", 1);
    rk_ring_detach(r);
    teardown();
}
END_TEST

/* The wake a producer's fence-free check can miss: the consumer went to
 * sleep (consumer_sleeping set) after the record committed, and the
 * commit's own check saw it awake.  A producer that then waits for the
 * record (rk_wait) wakes it, so the consumer does not sleep out its slice
 * while the waiter waits; a wait already met wakes nobody. */
START_TEST(waiter_wakes_a_consumer_that_missed_the_commit)
{
    make_ring(1 << 16, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    register_tables(r, 1);
    struct ring_header *h = ring_header_of(owner);
    uint64_t lsn;
    uint32_t seq;

    ck_assert_int_eq(rk_put(r, 0, "k", 1, "v", 1, &lsn), 0);
    atomic_store(&h->consumer_sleeping, 1); /* asleep after the commit: its wake was missed */
    seq = atomic_load(&h->consumer_seq);
    ck_assert_int_eq(rk_wait(r, lsn, RK_DURABLE, 0), RK_ETIMEDOUT);
    ck_assert_uint_eq(atomic_load(&h->consumer_sleeping), 0);
    ck_assert_uint_eq(atomic_load(&h->consumer_seq), seq + 1);
    atomic_store(&h->consumer_sleeping, 1);
    ck_assert_int_eq(rk_wait(r, lsn, RK_REPLICATED, 0), RK_ETIMEDOUT);
    ck_assert_uint_eq(atomic_load(&h->consumer_sleeping), 0);
    ck_assert_uint_eq(atomic_load(&h->consumer_seq), seq + 2);
    /* durable already: nothing to wake the consumer for */
    ring_set_durable(owner, lsn);
    atomic_store(&h->consumer_sleeping, 1);
    ck_assert_int_eq(rk_wait(r, lsn, RK_DURABLE, 0), 0);
    ck_assert_uint_eq(atomic_load(&h->consumer_sleeping), 1);
    ck_assert_uint_eq(atomic_load(&h->consumer_seq), seq + 2);
    atomic_store(&h->consumer_sleeping, 0);
    rk_ring_detach(r);
    teardown();
}
END_TEST

/* A consumer that dies after zeroing released space but before moving head
 * leaves half-zeroed frames at head: the next owner finishes the release
 * and resumes at the first frame not consumed. */
START_TEST(consumer_killed_mid_release_is_finished_by_the_next)
{
    make_ring(1 << 16, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    register_tables(r, 2);
    struct ring_header *h = ring_header_of(owner);
    uint64_t head = atomic_load(&h->head), end = 0;
    ring_frame f;

    for (uint32_t i = 0; i < 10; i++)
        ck_assert_int_eq(rk_put(r, 1, &i, sizeof i, "value", 5, NULL), 0);
    for (int i = 0; i < 6; i++) { /* ATTACH and five puts */
        ck_assert_int_eq(ring_next(owner, &f), 1);
        end = f.lsn + frame_align(f.raw_len);
    }
    /* what ring_release does, cut off after half the zeroing */
    atomic_store(&h->release_to, end);
    memset(ring_data_of(owner) + (head & (h->capacity - 1)), 0, (end - head) / 2);
    ring_close(owner, 0);
    ck_assert_int_eq(ring_reopen(ring_name, 1, &owner, err, sizeof err), 0);
    ck_assert_uint_eq(atomic_load(&ring_header_of(owner)->head), end);
    for (uint32_t i = 5; i < 10; i++) {
        f = next_data();
        ck_assert_mem_eq(f.key, &i, sizeof i);
        ck_assert_mem_eq(f.val, "value", 5);
    }
    ck_assert_int_eq(ring_next(owner, &f), 0);
    rk_ring_detach(r);
    teardown();
}
END_TEST

/* An id rk_table() did not return on this ring is refused by every call
 * that takes one, and nothing is written: the data area, tail and the
 * producer's counters are byte for byte what they were.  An id another
 * producer registers later is accepted. */
START_TEST(unregistered_table_id_is_refused_and_nothing_is_written)
{
    make_ring(1 << 16, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0), *other = attach("other", RK_FULL_FAIL, 0);
    struct ring_header *h = ring_header_of(owner);
    size_t cap = h->capacity;
    uint8_t *before = malloc(cap);
    const uint16_t bad[] = {1, 2, 255, RING_MAX_TABLES, 300, UINT16_MAX};
    uint64_t tail, lsn;
    struct ring_producer_slot slot;
    rk_claim c = {0};
    ring_frame f;
    uint16_t id;

    register_tables(r, 1);
    ck_assert_int_eq(rk_put(r, 0, "k0", 2, "v0", 2, NULL), 0);
    tail = atomic_load(&h->tail);
    memcpy(before, ring_data_of(owner), cap);
    memcpy(&slot, &h->producers[0], sizeof slot);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(rk_put(r, bad[i], "k", 1, "v", 1, &lsn), RK_EINVAL);
        ck_assert_int_eq(rk_del(r, bad[i], "k", 1, &lsn), RK_EINVAL);
        ck_assert_int_eq(rk_claim_record(r, bad[i], 1, 1, &c), RK_EINVAL);
        ck_assert_ptr_null(c.frame_);
    }
    ck_assert_uint_eq(atomic_load(&h->tail), tail);
    ck_assert_uint_eq(atomic_load(&h->head), h->start_lsn);
    ck_assert(memcmp(before, ring_data_of(owner), cap) == 0);
    ck_assert(memcmp(&slot, &h->producers[0], sizeof slot) == 0);
    /* registered by another producer: the id is the ring's, not p's */
    ck_assert_int_eq(rk_table(other, "t1", &id), 0);
    ck_assert_int_eq(id, 1);
    ck_assert_int_eq(rk_put(r, 1, "k1", 2, "v1", 2, &lsn), 0);
    f = next_data();
    ck_assert(f.table == 0 && f.klen == 2 && memcmp(f.key, "k0", 2) == 0 && memcmp(f.val, "v0", 2) == 0);
    f = next_data();
    ck_assert(f.table == 1 && f.lsn == lsn && memcmp(f.key, "k1", 2) == 0 && memcmp(f.val, "v1", 2) == 0);
    ck_assert_int_eq(ring_next(owner, &f), 0);
    free(before);
    rk_ring_detach(r);
    rk_ring_detach(other);
    teardown();
}
END_TEST

/* A committed frame with a valid checksum but a table id no ring can have
 * (written around the API, as a bad library or a stray write would) is
 * reported corrupt by the consumer, after every frame before it. */
START_TEST(frame_with_an_out_of_range_table_id_is_corrupt)
{
    make_ring(1 << 16, 0);
    rk_ring *r = attach("p", RK_FULL_FAIL, 0);
    struct ring_header *h = ring_header_of(owner);
    uint64_t lsn, pos;
    uint32_t len;
    ring_frame f;

    register_tables(r, 1);
    ck_assert_int_eq(rk_put(r, 0, "good", 4, "1", 1, &lsn), 0);
    pos = atomic_load(&h->tail);
    len = frame_encode(ring_data_of(owner) + (pos & (h->capacity - 1)), FRAME_PUT, 300, 0, pos, "bad", 3, "2",
                       1);
    atomic_fetch_add(&h->tail, frame_align(len));
    f = next_data();
    ck_assert(f.lsn == lsn && memcmp(f.key, "good", 4) == 0);
    ck_assert_int_eq(ring_next(owner, &f), RK_ECORRUPT);
    ck_assert_msg(strstr(ring_error(owner), "table id 300") != NULL, "%s", ring_error(owner));
    ck_assert_uint_eq(ring_read_pos(owner), pos);
    ck_assert_int_eq(ring_next(owner, &f), RK_ECORRUPT);
    rk_ring_detach(r);
    teardown();
}
END_TEST

START_TEST(errors_have_descriptions)
{
    for (int e = RK_EINVAL; e < RK_ELAST; e++)
        ck_assert_msg(strcmp(rk_strerror(e), "unknown error") != 0, "code %d", e);
    ck_assert_str_eq(rk_strerror(0), "success");
    ck_assert_str_eq(rk_strerror(ENOENT), strerror(ENOENT));
    ck_assert_str_eq(rk_strerror(-1), "unknown error");
    int major = -1;
    ck_assert_str_eq(rk_version(&major, NULL, NULL), "0.1.0");
    ck_assert_int_eq(major, RK_VERSION_MAJOR);
    rk_ring_detach(NULL);
    ring_close(NULL, 0);
}
END_TEST

static Suite *ring_suite(void)
{
    Suite *s = suite_create("ring");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, every_frame_type_round_trips);
    tcase_add_test(tc, zero_length_and_maximum_sizes);
    tcase_add_test(tc, oversize_is_refused_and_nothing_is_written);
    tcase_add_test(tc, wrap_around_with_padding);
    tcase_add_test(tc, write_batches_round_trip_over_many_laps);
    tcase_add_test(tc, write_batch_with_a_bad_record_writes_nothing);
    tcase_add_test(tc, lsns_continue_from_the_start_position);
    tcase_add_test(tc, tables_are_shared_by_name);
    tcase_add_test(tc, producer_names_are_exclusive_while_alive);
    tcase_add_test(tc, producer_registry_full);
    tcase_add_test(tc, full_policies_in_one_process);
    tcase_add_test(tc, a_raced_claim_on_a_fenced_ring_returns_fenced);
    tcase_add_test(tc, wait_levels_follow_the_cursors);
    tcase_add_test(tc, cursors_freeze_past_the_lease_deadline);
    tcase_add_test(tc, consumer_waits_and_wakes);
    tcase_add_test(tc, waiter_wakes_a_consumer_that_missed_the_commit);
    tcase_add_test(tc, consumer_killed_mid_release_is_finished_by_the_next);
    tcase_add_test(tc, unregistered_table_id_is_refused_and_nothing_is_written);
    tcase_add_test(tc, frame_with_an_out_of_range_table_id_is_corrupt);
    tcase_add_test(tc, errors_have_descriptions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ring_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
