/* selftest.c -- `orderbook --self-test`: the engine and its restart, checked
 * without a node.
 *
 * Design: mem_store stands in for the node.  As a book_sink it holds the
 * records of the open group aside and applies them at the group's MARK
 * (mem_mark) or drops them (mem_void), as the node does with a producer's
 * atomic groups; as a book_scan_fn it lists a table in bytewise key order,
 * as rk_state_scan does.  The engine is therefore restored from exactly the
 * bytes it would have written to the ring.  The checks:
 *
 *   - price-time priority on a hand-written block, read back through the
 *     record layout book.h documents;
 *   - the book's invariants (book_check) hold after every block;
 *   - two runs of one seed end with one digest; another seed differs;
 *   - records written for 100 blocks restore an equal engine;
 *   - 50 blocks, a restore, 50 more: equal to 100 blocks straight, books
 *     and stored records alike;
 *   - an engine dying in the middle of a group: the node voids the group,
 *     the restored engine redoes the block, the end is the same;
 *   - a restore from a view that lags the records (the node had applied 60
 *     blocks, the view shows 40): the 20 blocks written twice change
 *     nothing, the end is the same;
 *   - damaged or inconsistent records are refused with EBADMSG.
 *
 * Threads: single-threaded.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "book.h"
#include "gen.h"
#include "selftest.h"

#define SEED 1
#define N_BLOCKS 100
#define ORDERS_PER_BLOCK 100
#define DEATH ECANCELED /* what the sink of an engine that "dies" returns */

struct mem_record {
    uint8_t *key;
    uint32_t klen;
    uint8_t *val;
    uint32_t vlen;
};

/* A table: records sorted by key, bytewise (a shorter key first when it is
 * a prefix of a longer one). */
struct mem_table {
    struct mem_record *records;
    size_t n_records, cap;
};

struct mem_op {
    enum book_table table;
    int is_del;
    struct mem_record record;
};

typedef struct mem_store {
    struct mem_table tables[BOOK_N_TABLES];
    struct mem_op *group; /* the open group's records, in order */
    size_t n_group, cap_group;
    uint64_t height; /* the last MARK applied */
    size_t die_at;   /* the engine dies at this record of a group (0: never) */
} mem_store;

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (!p) {
        fprintf(stderr, "orderbook: self-test: out of memory\n");
        exit(2);
    }
    return p;
}

static uint8_t *dup_bytes(const void *p, uint32_t len)
{
    uint8_t *copy = xrealloc(NULL, len);

    if (len)
        memcpy(copy, p, len);
    return copy;
}

static int key_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    uint32_t common = alen < blen ? alen : blen;
    int c = common ? memcmp(a, b, common) : 0;

    return c ? c : (alen > blen) - (alen < blen);
}

/* The index of the first record whose key is not less than key. */
static size_t table_search(const struct mem_table *t, const uint8_t *key, uint32_t klen)
{
    size_t lo = 0, hi = t->n_records;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(t->records[mid].key, t->records[mid].klen, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void table_remove_at(struct mem_table *t, size_t i)
{
    free(t->records[i].key);
    free(t->records[i].val);
    memmove(&t->records[i], &t->records[i + 1], (t->n_records - i - 1) * sizeof *t->records);
    t->n_records--;
}

/* Applies one PUT or DEL; the table takes over the op's buffers. */
static void table_apply(struct mem_table *t, struct mem_op *op)
{
    size_t i = table_search(t, op->record.key, op->record.klen);
    int found = i < t->n_records &&
                key_cmp(t->records[i].key, t->records[i].klen, op->record.key, op->record.klen) == 0;

    if (op->is_del) {
        if (found)
            table_remove_at(t, i);
        free(op->record.key);
        return;
    }
    if (found) {
        free(t->records[i].key);
        free(t->records[i].val);
        t->records[i] = op->record;
        return;
    }
    if (t->n_records == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->records = xrealloc(t->records, t->cap * sizeof *t->records);
    }
    memmove(&t->records[i + 1], &t->records[i], (t->n_records - i) * sizeof *t->records);
    t->records[i] = op->record;
    t->n_records++;
}

static int mem_add(mem_store *s, enum book_table table, int is_del, const void *key, uint32_t klen,
                   const void *val, uint32_t vlen)
{
    if (s->die_at && s->n_group + 1 == s->die_at)
        return DEATH;
    if (s->n_group == s->cap_group) {
        s->cap_group = s->cap_group ? 2 * s->cap_group : 256;
        s->group = xrealloc(s->group, s->cap_group * sizeof *s->group);
    }
    s->group[s->n_group++] = (struct mem_op){
        .table = table,
        .is_del = is_del,
        .record = {dup_bytes(key, klen), klen, is_del ? NULL : dup_bytes(val, vlen), vlen},
    };
    return 0;
}

static int mem_put(void *arg, enum book_table table, const void *key, uint32_t klen, const void *val,
                   uint32_t vlen)
{
    return mem_add(arg, table, 0, key, klen, val, vlen);
}

static int mem_del(void *arg, enum book_table table, const void *key, uint32_t klen)
{
    return mem_add(arg, table, 1, key, klen, NULL, 0);
}

/* The group's MARK: applies it whole. */
static void mem_mark(mem_store *s, uint64_t height)
{
    for (size_t i = 0; i < s->n_group; i++)
        table_apply(&s->tables[s->group[i].table], &s->group[i]);
    s->n_group = 0;
    s->height = height;
}

/* The producer died with the group open: nothing of it is applied. */
static void mem_void(mem_store *s)
{
    for (size_t i = 0; i < s->n_group; i++) {
        free(s->group[i].record.key);
        free(s->group[i].record.val);
    }
    s->n_group = 0;
}

static int mem_scan(void *source, enum book_table table, const void *prefix, uint32_t plen, book_record_fn fn,
                    void *fn_arg)
{
    const struct mem_table *t = &((mem_store *)source)->tables[table];

    for (size_t i = table_search(t, prefix, plen); i < t->n_records; i++) {
        const struct mem_record *r = &t->records[i];
        if (r->klen < plen || (plen && memcmp(r->key, prefix, plen) != 0))
            break;
        int rc = fn(fn_arg, r->key, r->klen, r->val, r->vlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* A copy of src's applied state (a group boundary: src has no open group). */
static void mem_copy(mem_store *dst, const mem_store *src)
{
    *dst = (mem_store){.height = src->height};
    for (int t = 0; t < BOOK_N_TABLES; t++) {
        const struct mem_table *from = &src->tables[t];
        struct mem_table *to = &dst->tables[t];
        to->records = xrealloc(NULL, from->n_records * sizeof *to->records);
        to->n_records = to->cap = from->n_records;
        for (size_t i = 0; i < from->n_records; i++)
            to->records[i] = (struct mem_record){
                dup_bytes(from->records[i].key, from->records[i].klen), from->records[i].klen,
                dup_bytes(from->records[i].val, from->records[i].vlen), from->records[i].vlen};
    }
}

static int mem_equal(const mem_store *a, const mem_store *b)
{
    if (a->height != b->height)
        return 0;
    for (int t = 0; t < BOOK_N_TABLES; t++) {
        const struct mem_table *x = &a->tables[t], *y = &b->tables[t];
        if (x->n_records != y->n_records)
            return 0;
        for (size_t i = 0; i < x->n_records; i++)
            if (key_cmp(x->records[i].key, x->records[i].klen, y->records[i].key, y->records[i].klen) != 0 ||
                x->records[i].vlen != y->records[i].vlen ||
                memcmp(x->records[i].val, y->records[i].val, x->records[i].vlen) != 0)
                return 0;
    }
    return 1;
}

static void mem_free(mem_store *s)
{
    mem_void(s);
    free(s->group);
    for (int t = 0; t < BOOK_N_TABLES; t++) {
        while (s->tables[t].n_records > 0)
            table_remove_at(&s->tables[t], s->tables[t].n_records - 1);
        free(s->tables[t].records);
    }
}

/* ---------------------------------------------------------------- runs */

static book_engine *new_engine(void)
{
    book_engine *e = book_engine_new();

    if (!e) {
        fprintf(stderr, "orderbook: self-test: out of memory\n");
        exit(2);
    }
    return e;
}

/* Runs the blocks after book_height(e) up to last of seed's flow, writing
 * into store (NULL: nowhere) and marking each block, and checks the book's
 * invariants after each.  A block that fails (the store's die_at) leaves
 * its group voided; its error is returned. */
static int run(book_engine *e, uint64_t seed, uint64_t last, mem_store *store)
{
    const book_sink sink = {mem_put, mem_del, store};
    book_order_in orders[ORDERS_PER_BLOCK];

    for (uint64_t b = book_height(e) + 1; b <= last; b++) {
        gen_block(seed, b, ORDERS_PER_BLOCK, orders);
        int rc = book_apply_block(e, b, orders, ORDERS_PER_BLOCK, store ? &sink : NULL);
        if (rc) {
            if (store)
                mem_void(store);
            return rc;
        }
        if (store)
            mem_mark(store, b);
        rc = book_check(e);
        if (rc)
            return rc;
    }
    return 0;
}

static uint64_t digest_of(const book_engine *e)
{
    uint64_t d;

    if (book_digest(e, &d) != 0) {
        fprintf(stderr, "orderbook: self-test: out of memory\n");
        exit(2);
    }
    return d;
}

/* A new engine restored from store at store->height; *rc is the result. */
static book_engine *restored(mem_store *store, uint64_t height, int *rc)
{
    book_engine *e = new_engine();

    *rc = book_restore(e, height, mem_scan, store);
    return e;
}

static int n_failed;

static void check(FILE *out, int ok, const char *fmt, ...)
{
    va_list ap;

    fprintf(out, "%s ", ok ? "ok  " : "FAIL");
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    n_failed += !ok;
}

/* Restoring from a damaged copy of whole must fail with EBADMSG. */
static void check_refused(FILE *out, const mem_store *whole, uint64_t height, const char *what,
                          void (*damage)(mem_store *))
{
    mem_store bad;
    book_engine *e;
    int rc;

    mem_copy(&bad, whole);
    if (damage)
        damage(&bad);
    e = restored(&bad, height, &rc);
    check(out, rc == EBADMSG, "refused: %s (%s)", what, rc == EBADMSG ? book_error(e) : "accepted");
    book_engine_free(e);
    mem_free(&bad);
}

/* The little-endian number of n bytes at p. */
static uint64_t le_at(const uint8_t *p, int n)
{
    uint64_t v = 0;

    while (n-- > 0)
        v = v << 8 | p[n];
    return v;
}

/* Price-time priority on one hand-written block, checked in the records
 * the engine wrote, read with the layout book.h documents. */
static void check_price_time(FILE *out)
{
    static const book_order_in block[] = {
        {.type = BOOK_LIMIT, .side = BOOK_SELL, .account = 0, .price = 101, .qty = 5},
        {.type = BOOK_LIMIT, .side = BOOK_SELL, .account = 1, .price = 100, .qty = 3},
        {.type = BOOK_LIMIT, .side = BOOK_SELL, .account = 2, .price = 100, .qty = 4},
        {.type = BOOK_LIMIT, .side = BOOK_BUY, .account = 3, .price = 100, .qty = 5}, /* a1 x3, a2 x2 */
        {.type = BOOK_MARKET, .side = BOOK_BUY, .account = 4, .qty = 10}, /* a2 x2, a0 x5 @101, 3 dropped */
        {.type = BOOK_LIMIT, .side = BOOK_BUY, .account = 5, .price = 99, .qty = 2},
        {.type = BOOK_CANCEL, .account = 5, .pick = 7}, /* its only order */
        {.type = BOOK_LIMIT, .side = BOOK_BUY, .account = 6, .price = 98, .qty = 1},
    };
    static const struct {
        uint64_t price, qty, maker_account, taker_account, maker_index, taker_index;
    } fills[] = {{100, 3, 1, 3, 1, 3}, {100, 2, 2, 3, 2, 3}, {100, 2, 2, 4, 2, 4}, {101, 5, 0, 4, 0, 4}};
    static const int64_t positions[][3] = {/* account, qty, cash */
                                           {0, -5, 505},
                                           {1, -3, 300},
                                           {2, -4, 400},
                                           {3, 5, -500},
                                           {4, 7, -705}};
    const uint64_t block_id = UINT64_C(1) << 24;
    mem_store store = {0};
    const book_sink to_store = {mem_put, mem_del, &store};
    book_engine *e = new_engine();
    const struct mem_table *t;
    int ok;

    ok = book_apply_block(e, 1, block, sizeof block / sizeof block[0], &to_store) == 0;
    mem_mark(&store, 1);
    t = &store.tables[BOOK_FILLS];
    ok = ok && t->n_records == 4;
    for (size_t i = 0; ok && i < 4; i++) {
        const uint8_t *k = t->records[i].key, *v = t->records[i].val;
        ok = t->records[i].klen == 12 && memcmp(k, "BTC/\0\0\0\0\0\0\0", 11) == 0 && k[11] == i + 1 &&
             t->records[i].vlen == 56 && v[0] == 1 && v[1] == BOOK_BUY &&
             le_at(v + 4, 4) == fills[i].maker_account && le_at(v + 8, 4) == fills[i].taker_account &&
             le_at(v + 16, 8) == fills[i].price && le_at(v + 24, 8) == fills[i].qty &&
             le_at(v + 32, 8) == (block_id | fills[i].maker_index) &&
             le_at(v + 40, 8) == (block_id | fills[i].taker_index) && le_at(v + 48, 8) == 1;
    }
    t = &store.tables[BOOK_ORDERS];
    ok = ok && t->n_records == 1 && t->records[0].klen == 12 && t->records[0].vlen == 32;
    if (ok) {
        const uint8_t *v = t->records[0].val;
        ok = memcmp(t->records[0].key, "BTC/\0\0\0\0\1\0\0\7", 12) == 0 && v[1] == BOOK_BUY &&
             le_at(v + 4, 4) == 6 && le_at(v + 8, 8) == 98 && le_at(v + 16, 8) == 1 &&
             le_at(v + 24, 8) == (block_id | 7);
    }
    t = &store.tables[BOOK_POSITIONS];
    ok = ok && t->n_records == 5;
    for (size_t i = 0; ok && i < 5; i++) {
        const uint8_t *k = t->records[i].key, *v = t->records[i].val;
        ok = t->records[i].klen == 8 && memcmp(k, "\0\0\0", 3) == 0 && k[3] == positions[i][0] &&
             memcmp(k + 4, "/BTC", 4) == 0 && (int64_t)le_at(v + 8, 8) == positions[i][1] &&
             (int64_t)le_at(v + 16, 8) == positions[i][2];
    }
    check(out, ok && book_check(e) == 0,
          "price-time priority: a hand-written block makes the fills, order and positions expected");
    book_engine_free(e);
    mem_free(&store);
}

static void cut_an_order_short(mem_store *s)
{
    s->tables[BOOK_ORDERS].records[0].vlen--;
}

static void lose_a_fill(mem_store *s)
{
    table_remove_at(&s->tables[BOOK_FILLS], 1);
}

int selftest_run(FILE *out)
{
    mem_store whole = {0}, half = {0}, crashed = {0}, lagging = {0}, view = {0};
    book_engine *e, *r;
    book_stats st;
    uint64_t d_ref, d_half;
    int rc;

    n_failed = 0;
    check_price_time(out);
    e = new_engine();
    rc = run(e, SEED, N_BLOCKS, NULL);
    d_ref = digest_of(e);
    book_get_stats(e, &st);
    check(out, rc == 0, "invariants hold after every block%s%s", rc ? ": " : "", book_error(e));
    book_engine_free(e);
    check(out, st.n_fills > 0 && st.n_open_orders > 0 && st.n_levels > 0,
          "seed %d, %d blocks of %d orders: %016" PRIx64 ", %" PRIu64 " fills, %" PRIu64
          " open orders on %" PRIu64 " levels",
          SEED, N_BLOCKS, ORDERS_PER_BLOCK, d_ref, st.n_fills, st.n_open_orders, st.n_levels);

    e = new_engine();
    run(e, SEED, N_BLOCKS, NULL);
    check(out, digest_of(e) == d_ref, "determinism: a second run of seed %d ends with the same digest", SEED);
    book_engine_free(e);

    e = new_engine();
    run(e, SEED + 1, N_BLOCKS, NULL);
    check(out, digest_of(e) != d_ref, "seed %d ends with another digest: %016" PRIx64, SEED + 1,
          digest_of(e));
    book_engine_free(e);

    /* the records of an uninterrupted run, the reference for what follows */
    e = new_engine();
    run(e, SEED, N_BLOCKS, &whole);
    check(out, digest_of(e) == d_ref, "writing the records changes nothing in memory");
    book_engine_free(e);
    r = restored(&whole, whole.height, &rc);
    check(out, rc == 0 && digest_of(r) == d_ref,
          "restored from the records of %d blocks (%zu orders, %zu fills, %zu positions): same digest",
          N_BLOCKS, whole.tables[BOOK_ORDERS].n_records, whole.tables[BOOK_FILLS].n_records,
          whole.tables[BOOK_POSITIONS].n_records);
    book_engine_free(r);

    e = new_engine();
    run(e, SEED, N_BLOCKS / 2, &half);
    d_half = digest_of(e);
    book_engine_free(e);
    r = restored(&half, half.height, &rc);
    check(out, rc == 0 && digest_of(r) == d_half,
          "restored at block %d: same digest as the engine that wrote it", N_BLOCKS / 2);
    run(r, SEED, N_BLOCKS, &half);
    check(out, digest_of(r) == d_ref && mem_equal(&half, &whole),
          "%d blocks, restore, %d more: same books and same records as %d blocks straight", N_BLOCKS / 2,
          N_BLOCKS / 2, N_BLOCKS);
    book_engine_free(r);

    e = new_engine();
    run(e, SEED, 70, &crashed);
    crashed.die_at = 25;
    rc = run(e, SEED, 71, &crashed);
    crashed.die_at = 0;
    book_engine_free(e);
    check(out, rc == DEATH && crashed.height == 70,
          "an engine dies at record 25 of block 71: the node is at 70");
    r = restored(&crashed, crashed.height, &rc);
    if (rc == 0)
        run(r, SEED, N_BLOCKS, &crashed);
    check(out, rc == 0 && digest_of(r) == d_ref && mem_equal(&crashed, &whole),
          "restored at 70 and run to %d: same books and same records as without the crash", N_BLOCKS);
    book_engine_free(r);

    e = new_engine();
    run(e, SEED, 40, &lagging);
    mem_copy(&view, &lagging);
    run(e, SEED, 60, &lagging);
    book_engine_free(e);
    r = restored(&view, view.height, &rc);
    if (rc == 0)
        run(r, SEED, N_BLOCKS, &lagging);
    book_engine_free(r);
    r = restored(&lagging, lagging.height, &rc);
    check(out, rc == 0 && digest_of(r) == d_ref && mem_equal(&lagging, &whole),
          "restored from a view at 40 while the node had 60: blocks 41-60 applied twice, same end");
    book_engine_free(r);

    check_refused(out, &whole, whole.height, "an order value one byte short", cut_an_order_short);
    check_refused(out, &whole, whole.height, "a fill missing from the history", lose_a_fill);
    check_refused(out, &whole, 0, "records at height 0", NULL);
    check_refused(out, &whole, N_BLOCKS / 2, "records from after the height", NULL);

    mem_free(&whole);
    mem_free(&half);
    mem_free(&crashed);
    mem_free(&lagging);
    mem_free(&view);
    fprintf(out, "%s: %d check%s failed\n", n_failed ? "self-test FAILED" : "self-test ok", n_failed,
            n_failed == 1 ? "" : "s");
    return n_failed ? 1 : 0;
}
