/* book.c -- price-time priority matching, positions, and the records that
 * describe every change (book.h has their layout).
 *
 * Design: an asset's book has two sides.  A side is an array of price
 * levels sorted from the worst price to the best, so the best level is the
 * last element and taking it away is a pop; a level is a FIFO queue of
 * orders (arrival appends at the tail, matching takes from the head), which
 * is time priority.  Each account also keeps its open orders in arrival
 * order, which is what a cancel chooses from.  An order is matched when it
 * arrives; every fill is at the resting (maker) order's price.
 *
 * The state in memory is the truth while the engine runs; the records are
 * its description.  Each change is reported to the sink where it is made
 * in memory, and a block's records together take the state from the end of
 * one block to the end of the next (main.c closes that group with a MARK).
 * book_restore() reads the same records back with the codec below, the one
 * place here that knows their bytes; it checks every length and field it
 * reads, and book_check() the books it rebuilds.  A cancel walks its
 * account's list: O(that account's open orders), fine for an example.
 *
 * Threads: an engine belongs to one thread; nothing here is shared.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "book.h"

const char book_asset_code[BOOK_N_ASSETS][4] = {"BTC", "ETH", "SOL"};
const char *const book_table_name[BOOK_N_TABLES] = {"orders", "fills", "positions"};

struct order {
    uint64_t id;
    uint64_t seq; /* time priority: smaller arrived first */
    int64_t price;
    uint64_t remaining;
    uint32_t account;
    uint8_t side;
    uint8_t asset;
    struct order *prev, *next;           /* the queue of its price level */
    struct order *acct_prev, *acct_next; /* its account's open orders */
};

struct level {
    int64_t price;
    uint64_t n_orders;
    struct order *head, *tail; /* head arrived first and is matched first */
};

/* One side of a book: levels sorted from the worst price to the best, so
 * the best is levels[n_levels - 1]: ascending prices for bids, descending
 * for asks.  Never two levels at one price, never an empty level. */
struct side {
    struct level *levels;
    size_t n_levels;
    size_t cap;
};

struct book {
    struct side sides[2];   /* indexed by enum book_side: bids, asks */
    uint64_t next_fill_seq; /* key of the asset's next fill; from 1 */
};

/* A fill moves cash by at most BOOK_MAX_PRICE x BOOK_MAX_QTY (< 2^50), so
 * int64 sums stay exact for any flow this example produces. */
struct position {
    int64_t qty;  /* lots held; negative is short */
    int64_t cash; /* ticks x lots received minus paid */
};

struct account {
    struct order *head, *tail; /* open orders in arrival order */
    uint64_t n_open;
};

struct book_engine {
    struct book books[BOOK_N_ASSETS];
    struct position positions[BOOK_N_ACCOUNTS][BOOK_N_ASSETS];
    struct account accounts[BOOK_N_ACCOUNTS];
    uint64_t height; /* last block applied or restored */
    uint64_t n_open_orders;
    char error[160];
};

/* ---------------------------------------------------------------- codec */

#define RECORD_FORMAT 1
#define ORDER_KEY_LEN 12
#define ORDER_VAL_LEN 32
#define FILL_KEY_LEN 12
#define FILL_VAL_LEN 56
#define POSITION_KEY_LEN 8
#define POSITION_VAL_LEN 24

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* The key of an order or a fill: asset code, '/', number. */
static void asset_key(uint8_t *key, int asset, uint64_t number)
{
    memcpy(key, book_asset_code[asset], 3);
    key[3] = '/';
    put_be64(key + 4, number);
}

/* The asset whose prefix ("BTC/") key starts with, or -1. */
static int asset_of_prefix(const uint8_t *prefix)
{
    for (int a = 0; a < BOOK_N_ASSETS; a++)
        if (memcmp(prefix, book_asset_code[a], 3) == 0 && prefix[3] == '/')
            return a;
    return -1;
}

static void position_key(uint8_t *key, uint32_t account, int asset)
{
    put_be32(key, account);
    key[4] = '/';
    memcpy(key + 5, book_asset_code[asset], 3);
}

static void order_value(uint8_t *v, const struct order *o)
{
    memset(v, 0, ORDER_VAL_LEN);
    v[0] = RECORD_FORMAT;
    v[1] = o->side;
    put_le32(v + 4, o->account);
    put_le64(v + 8, (uint64_t)o->price);
    put_le64(v + 16, o->remaining);
    put_le64(v + 24, o->seq);
}

static int fail(book_engine *e, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e->error, sizeof e->error, fmt, ap);
    va_end(ap);
    return err;
}

/* Decodes an "orders" record into o (links left alone).  EBADMSG if any
 * length or field is out of range. */
static int order_decode(book_engine *e, const uint8_t *key, uint32_t klen, const uint8_t *val, uint32_t vlen,
                        struct order *o)
{
    int asset = klen == ORDER_KEY_LEN ? asset_of_prefix(key) : -1;

    if (asset < 0 || vlen != ORDER_VAL_LEN || val[0] != RECORD_FORMAT)
        return fail(e, EBADMSG,
                    "orders: a record with a %" PRIu32 "-byte key and a %" PRIu32 "-byte value "
                    "is not an order of format %d",
                    klen, vlen, RECORD_FORMAT);
    o->asset = (uint8_t)asset;
    o->id = get_be64(key + 4);
    o->side = val[1];
    o->account = get_le32(val + 4);
    o->price = (int64_t)get_le64(val + 8);
    o->remaining = get_le64(val + 16);
    o->seq = get_le64(val + 24);
    if (o->side > BOOK_SELL || o->account >= BOOK_N_ACCOUNTS || o->price < 1 || o->price > BOOK_MAX_PRICE ||
        o->remaining < 1 || o->remaining > BOOK_MAX_QTY)
        return fail(e, EBADMSG, "orders: order %s/%" PRIu64 " has a field out of range",
                    book_asset_code[asset], o->id);
    return 0;
}

/* ---------------------------------------------------------------- emitting */

static int emit_order(const book_sink *sink, const struct order *o)
{
    uint8_t key[ORDER_KEY_LEN], val[ORDER_VAL_LEN];

    if (!sink)
        return 0;
    asset_key(key, o->asset, o->id);
    order_value(val, o);
    return sink->put(sink->arg, BOOK_ORDERS, key, sizeof key, val, sizeof val);
}

static int emit_order_gone(const book_sink *sink, const struct order *o)
{
    uint8_t key[ORDER_KEY_LEN];

    if (!sink)
        return 0;
    asset_key(key, o->asset, o->id);
    return sink->del(sink->arg, BOOK_ORDERS, key, sizeof key);
}

static int emit_fill(const book_sink *sink, int asset, uint64_t fill_seq, const struct order *maker,
                     uint64_t taker_id, const book_order_in *taker, uint64_t qty, uint64_t block)
{
    uint8_t key[FILL_KEY_LEN], val[FILL_VAL_LEN];

    if (!sink)
        return 0;
    asset_key(key, asset, fill_seq);
    memset(val, 0, sizeof val);
    val[0] = RECORD_FORMAT;
    val[1] = taker->side;
    put_le32(val + 4, maker->account);
    put_le32(val + 8, taker->account);
    put_le64(val + 16, (uint64_t)maker->price);
    put_le64(val + 24, qty);
    put_le64(val + 32, maker->id);
    put_le64(val + 40, taker_id);
    put_le64(val + 48, block);
    return sink->put(sink->arg, BOOK_FILLS, key, sizeof key, val, sizeof val);
}

static int emit_position(const book_engine *e, const book_sink *sink, uint32_t account, int asset)
{
    const struct position *p = &e->positions[account][asset];
    uint8_t key[POSITION_KEY_LEN], val[POSITION_VAL_LEN];

    if (!sink)
        return 0;
    position_key(key, account, asset);
    memset(val, 0, sizeof val);
    val[0] = RECORD_FORMAT;
    put_le64(val + 8, (uint64_t)p->qty);
    put_le64(val + 16, (uint64_t)p->cash);
    return sink->put(sink->arg, BOOK_POSITIONS, key, sizeof key, val, sizeof val);
}

/* ---------------------------------------------------------------- levels */

/* 1 if price a is worse than price b for an order on side: a lower bid,
 * a higher ask. */
static int price_worse(int side, int64_t a, int64_t b)
{
    return side == BOOK_BUY ? a < b : a > b;
}

/* 1 if a limit order on side at limit reaches a resting order at price. */
static int crosses(int side, int64_t limit, int64_t price)
{
    return side == BOOK_BUY ? limit >= price : limit <= price;
}

/* The index of the first level of s not worse than price: where a level
 * at price is, or goes. */
static size_t level_search(const struct side *s, int side, int64_t price)
{
    size_t lo = 0, hi = s->n_levels;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (price_worse(side, s->levels[mid].price, price))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The level at price, made (empty) if there is none; NULL when out of
 * memory.  The pointer is valid until levels are added or removed. */
static struct level *level_get(struct side *s, int side, int64_t price)
{
    size_t i = level_search(s, side, price);

    if (i < s->n_levels && s->levels[i].price == price)
        return &s->levels[i];
    if (s->n_levels == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        struct level *grown = realloc(s->levels, cap * sizeof *grown);
        if (!grown)
            return NULL;
        s->levels = grown;
        s->cap = cap;
    }
    memmove(&s->levels[i + 1], &s->levels[i], (s->n_levels - i) * sizeof *s->levels);
    s->n_levels++;
    s->levels[i] = (struct level){.price = price};
    return &s->levels[i];
}

/* Appends o to the queue of its level and to its account's list, which is
 * arrival order as long as orders come in seq order. */
static void order_link(book_engine *e, struct level *lv, struct order *o)
{
    struct account *a = &e->accounts[o->account];

    o->prev = lv->tail;
    o->next = NULL;
    if (lv->tail)
        lv->tail->next = o;
    else
        lv->head = o;
    lv->tail = o;
    lv->n_orders++;

    o->acct_prev = a->tail;
    o->acct_next = NULL;
    if (a->tail)
        a->tail->acct_next = o;
    else
        a->head = o;
    a->tail = o;
    a->n_open++;
    e->n_open_orders++;
}

/* Takes o out of its level (removing the level if it empties) and its
 * account's list, and frees it. */
static void order_remove(book_engine *e, struct order *o)
{
    struct side *s = &e->books[o->asset].sides[o->side];
    size_t i = level_search(s, o->side, o->price);
    struct level *lv = &s->levels[i];
    struct account *a = &e->accounts[o->account];

    if (o->prev)
        o->prev->next = o->next;
    else
        lv->head = o->next;
    if (o->next)
        o->next->prev = o->prev;
    else
        lv->tail = o->prev;
    if (--lv->n_orders == 0) {
        memmove(&s->levels[i], &s->levels[i + 1], (s->n_levels - i - 1) * sizeof *s->levels);
        s->n_levels--;
    }

    if (o->acct_prev)
        o->acct_prev->acct_next = o->acct_next;
    else
        a->head = o->acct_next;
    if (o->acct_next)
        o->acct_next->acct_prev = o->acct_prev;
    else
        a->tail = o->acct_prev;
    a->n_open--;
    e->n_open_orders--;
    free(o);
}

/* ---------------------------------------------------------------- matching */

/* Fills qty of the resting order maker against the arriving order taker:
 * moves both positions, writes the fill, both positions and the maker's new
 * state, and removes the maker if it is done. */
static int fill(book_engine *e, const book_sink *sink, uint64_t block, struct order *maker, uint64_t taker_id,
                const book_order_in *taker, uint64_t qty)
{
    int asset = maker->asset;
    uint32_t buyer = taker->side == BOOK_BUY ? taker->account : maker->account;
    uint32_t seller = taker->side == BOOK_BUY ? maker->account : taker->account;
    int64_t notional = maker->price * (int64_t)qty;
    int rc;

    e->positions[buyer][asset].qty += (int64_t)qty;
    e->positions[buyer][asset].cash -= notional;
    e->positions[seller][asset].qty -= (int64_t)qty;
    e->positions[seller][asset].cash += notional;
    maker->remaining -= qty;

    rc = emit_fill(sink, asset, e->books[asset].next_fill_seq++, maker, taker_id, taker, qty, block);
    if (!rc)
        rc = emit_position(e, sink, maker->account, asset);
    if (!rc && taker->account != maker->account)
        rc = emit_position(e, sink, taker->account, asset);
    if (!rc)
        rc = maker->remaining ? emit_order(sink, maker) : emit_order_gone(sink, maker);
    if (maker->remaining == 0)
        order_remove(e, maker);
    return rc;
}

/* A limit or market order: takes from the other side, best level first and
 * in queue order within a level, while the price crosses (a market order
 * crosses any price); a limit order rests what is left. */
static int submit(book_engine *e, const book_sink *sink, uint64_t block, uint64_t id, const book_order_in *in)
{
    struct side *other = &e->books[in->asset].sides[in->side == BOOK_BUY ? BOOK_SELL : BOOK_BUY];
    uint64_t left = in->qty;
    struct order *o;
    struct level *lv;
    int rc;

    while (left > 0 && other->n_levels > 0) {
        struct order *maker = other->levels[other->n_levels - 1].head;
        if (in->type == BOOK_LIMIT && !crosses(in->side, in->price, maker->price))
            break;
        uint64_t qty = left < maker->remaining ? left : maker->remaining;
        rc = fill(e, sink, block, maker, id, in, qty);
        if (rc)
            return rc;
        left -= qty;
    }
    if (in->type == BOOK_MARKET || left == 0)
        return 0;

    o = calloc(1, sizeof *o);
    lv = o ? level_get(&e->books[in->asset].sides[in->side], in->side, in->price) : NULL;
    if (!lv) {
        free(o);
        return ENOMEM;
    }
    o->id = id;
    o->seq = id;
    o->price = in->price;
    o->remaining = left;
    o->account = in->account;
    o->side = in->side;
    o->asset = in->asset;
    order_link(e, lv, o);
    return emit_order(sink, o);
}

static int cancel(book_engine *e, const book_sink *sink, const book_order_in *in)
{
    struct account *a = &e->accounts[in->account];
    struct order *o = a->head;
    int rc;

    if (a->n_open == 0)
        return 0;
    for (uint64_t k = in->pick % a->n_open; k > 0; k--)
        o = o->acct_next;
    rc = emit_order_gone(sink, o);
    order_remove(e, o);
    return rc;
}

static int order_in_valid(const book_order_in *in)
{
    if (in->account >= BOOK_N_ACCOUNTS || in->type > BOOK_CANCEL)
        return 0;
    if (in->type == BOOK_CANCEL)
        return 1;
    return in->side <= BOOK_SELL && in->asset < BOOK_N_ASSETS && in->qty >= 1 && in->qty <= BOOK_MAX_QTY &&
           (in->type == BOOK_MARKET || (in->price >= 1 && in->price <= BOOK_MAX_PRICE));
}

int book_apply_block(book_engine *e, uint64_t block, const book_order_in *orders, uint32_t n_orders,
                     const book_sink *sink)
{
    e->error[0] = '\0';
    if (block != e->height + 1 || block > BOOK_MAX_BLOCK)
        return fail(e, EINVAL, "block %" PRIu64 " cannot follow block %" PRIu64, block, e->height);
    if (n_orders > BOOK_MAX_ORDERS_PER_BLOCK)
        return fail(e, EINVAL, "%" PRIu32 " orders in one block (at most %u)", n_orders,
                    BOOK_MAX_ORDERS_PER_BLOCK);
    for (uint32_t i = 0; i < n_orders; i++)
        if (!order_in_valid(&orders[i]))
            return fail(e, EINVAL, "order %" PRIu32 " of block %" PRIu64 " is not valid", i, block);

    for (uint32_t i = 0; i < n_orders; i++) {
        uint64_t id = block << 24 | i;
        int rc = orders[i].type == BOOK_CANCEL ? cancel(e, sink, &orders[i])
                                               : submit(e, sink, block, id, &orders[i]);
        if (rc)
            return rc;
    }
    e->height = block;
    return 0;
}

/* ---------------------------------------------------------------- invariants */

static int check_side(book_engine *e, int asset, int side, uint64_t *n_orders)
{
    const struct side *s = &e->books[asset].sides[side];
    const char *code = book_asset_code[asset], *name = side == BOOK_BUY ? "bid" : "ask";

    for (size_t i = 0; i < s->n_levels; i++) {
        const struct level *lv = &s->levels[i];
        uint64_t n = 0;
        if (i > 0 && !price_worse(side, s->levels[i - 1].price, lv->price))
            return fail(e, EBADMSG, "%s %s levels out of order at %" PRId64, code, name, lv->price);
        for (const struct order *o = lv->head; o; o = o->next, n++) {
            if (o->asset != asset || o->side != side || o->price != lv->price || o->remaining == 0 ||
                (o == lv->head) != (o->prev == NULL) || (o->next ? o->next->prev != o : lv->tail != o))
                return fail(e, EBADMSG, "%s %s level %" PRId64 ": order %" PRIu64 " misplaced", code, name,
                            lv->price, o->id);
            if (o->next && o->next->seq <= o->seq)
                return fail(e, EBADMSG, "%s %s level %" PRId64 ": order %" PRIu64 " ahead of an earlier one",
                            code, name, lv->price, o->id);
        }
        if (n == 0 || n != lv->n_orders)
            return fail(e, EBADMSG, "%s %s level %" PRId64 ": %" PRIu64 " orders, counted %" PRIu64, code,
                        name, lv->price, lv->n_orders, n);
        *n_orders += n;
    }
    return 0;
}

int book_check(book_engine *e)
{
    uint64_t n_in_books = 0, n_in_accounts = 0;
    int rc = 0;

    for (int a = 0; !rc && a < BOOK_N_ASSETS; a++) {
        const struct side *bids = &e->books[a].sides[BOOK_BUY], *asks = &e->books[a].sides[BOOK_SELL];
        int64_t qty = 0, cash = 0;
        rc = check_side(e, a, BOOK_BUY, &n_in_books);
        if (!rc)
            rc = check_side(e, a, BOOK_SELL, &n_in_books);
        if (!rc && bids->n_levels && asks->n_levels &&
            bids->levels[bids->n_levels - 1].price >= asks->levels[asks->n_levels - 1].price)
            rc = fail(e, EBADMSG, "the %s book is crossed: bid %" PRId64 " >= ask %" PRId64,
                      book_asset_code[a], bids->levels[bids->n_levels - 1].price,
                      asks->levels[asks->n_levels - 1].price);
        for (int acct = 0; acct < BOOK_N_ACCOUNTS; acct++) {
            qty += e->positions[acct][a].qty;
            cash += e->positions[acct][a].cash;
        }
        if (!rc && (qty != 0 || cash != 0))
            rc = fail(e, EBADMSG, "%s positions do not sum to zero: qty %+" PRId64 ", cash %+" PRId64,
                      book_asset_code[a], qty, cash);
    }
    for (int acct = 0; !rc && acct < BOOK_N_ACCOUNTS; acct++) {
        uint64_t n = 0;
        for (const struct order *o = e->accounts[acct].head; o; o = o->acct_next, n++)
            if (o->account != (uint32_t)acct || (o->acct_next && o->acct_next->seq <= o->seq))
                return fail(e, EBADMSG, "account %d: order %" PRIu64 " misplaced", acct, o->id);
        if (n != e->accounts[acct].n_open)
            return fail(e, EBADMSG, "account %d: %" PRIu64 " open orders, counted %" PRIu64, acct,
                        e->accounts[acct].n_open, n);
        n_in_accounts += n;
    }
    if (!rc && (n_in_books != e->n_open_orders || n_in_accounts != e->n_open_orders))
        rc = fail(e, EBADMSG, "%" PRIu64 " open orders, %" PRIu64 " in the books, %" PRIu64 " in accounts",
                  e->n_open_orders, n_in_books, n_in_accounts);
    return rc;
}

/* ---------------------------------------------------------------- restore */

struct restore_ctx {
    book_engine *e;
    uint64_t height;       /* the height being restored */
    struct order **orders; /* read, not yet linked into the books */
    size_t n_orders, cap;
    int asset;              /* the asset whose fills are being scanned */
    uint64_t last_fill_seq; /* the last fill seq seen for it */
};

static int restore_order(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct restore_ctx *c = arg;
    struct order *o;
    int rc;

    if (c->n_orders == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        struct order **grown = realloc(c->orders, cap * sizeof *grown);
        if (!grown)
            return ENOMEM;
        c->orders = grown;
        c->cap = cap;
    }
    o = calloc(1, sizeof *o);
    if (!o)
        return ENOMEM;
    rc = order_decode(c->e, key, klen, val, vlen, o);
    if (!rc && (o->id >> 24 == 0 || o->id >> 24 > c->height))
        rc = fail(c->e, EBADMSG, "orders: order %s/%" PRIu64 " is from block %" PRIu64 ", not 1 to %" PRIu64,
                  book_asset_code[o->asset], o->id, o->id >> 24, c->height);
    if (rc) {
        free(o);
        return rc;
    }
    c->orders[c->n_orders++] = o;
    return 0;
}

static int restore_position(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct restore_ctx *c = arg;
    const uint8_t *k = key, *v = val;
    uint32_t account = klen == POSITION_KEY_LEN ? get_be32(k) : BOOK_N_ACCOUNTS;
    int asset = -1;

    for (int a = 0; account < BOOK_N_ACCOUNTS && k[4] == '/' && a < BOOK_N_ASSETS; a++)
        if (memcmp(k + 5, book_asset_code[a], 3) == 0)
            asset = a;
    if (asset < 0 || vlen != POSITION_VAL_LEN || v[0] != RECORD_FORMAT)
        return fail(c->e, EBADMSG,
                    "positions: a record with a %" PRIu32 "-byte key and a %" PRIu32
                    "-byte value is not a position of format %d",
                    klen, vlen, RECORD_FORMAT);
    if (c->height == 0)
        return fail(c->e, EBADMSG, "positions: a position at height 0, before any block");
    c->e->positions[account][asset].qty = (int64_t)get_le64(v + 8);
    c->e->positions[account][asset].cash = (int64_t)get_le64(v + 16);
    return 0;
}

/* Fills are only counted: the history stays in the node.  Their seqs must
 * run 1, 2, 3 ... without a hole. */
static int restore_fill(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct restore_ctx *c = arg;
    const uint8_t *k = key, *v = val;

    if (klen != FILL_KEY_LEN || asset_of_prefix(k) != c->asset || vlen != FILL_VAL_LEN ||
        v[0] != RECORD_FORMAT)
        return fail(c->e, EBADMSG,
                    "fills: a record with a %" PRIu32 "-byte key and a %" PRIu32 "-byte value "
                    "under %s/ is not a fill of format %d",
                    klen, vlen, book_asset_code[c->asset], RECORD_FORMAT);
    if (get_le64(v + 48) == 0 || get_le64(v + 48) > c->height)
        return fail(c->e, EBADMSG, "fills: %s/%" PRIu64 " is from block %" PRIu64 ", not 1 to %" PRIu64,
                    book_asset_code[c->asset], get_be64(k + 4), get_le64(v + 48), c->height);
    if (get_be64(k + 4) != c->last_fill_seq + 1)
        return fail(c->e, EBADMSG, "fills: %s/%" PRIu64 " follows %s/%" PRIu64 ": the history has a hole",
                    book_asset_code[c->asset], get_be64(k + 4), book_asset_code[c->asset], c->last_fill_seq);
    c->last_fill_seq++;
    return 0;
}

static int order_by_seq(const void *a, const void *b)
{
    const struct order *x = *(const struct order *const *)a, *y = *(const struct order *const *)b;

    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Links the orders read into the books in seq order, so that every level's
 * queue and every account's list are in arrival order again. */
static int restore_books(struct restore_ctx *c)
{
    book_engine *e = c->e;
    size_t i = 0;

    if (c->n_orders)
        qsort(c->orders, c->n_orders, sizeof *c->orders, order_by_seq);
    for (; i < c->n_orders; i++) {
        struct order *o = c->orders[i];
        struct level *lv = level_get(&e->books[o->asset].sides[o->side], o->side, o->price);
        if (!lv)
            break;
        order_link(e, lv, o);
    }
    if (i < c->n_orders) {
        for (; i < c->n_orders; i++)
            free(c->orders[i]);
        return ENOMEM;
    }
    return 0;
}

int book_restore(book_engine *e, uint64_t height, book_scan_fn scan, void *source)
{
    struct restore_ctx c = {.e = e, .height = height};
    int rc;

    e->error[0] = '\0';
    if (e->height != 0 || e->n_open_orders != 0)
        return fail(e, EINVAL, "restore into an engine that is not new");
    if (height > BOOK_MAX_BLOCK)
        return fail(e, EINVAL, "height %" PRIu64 " is out of range", height);
    rc = scan(source, BOOK_ORDERS, NULL, 0, restore_order, &c);
    if (!rc)
        rc = restore_books(&c);
    else
        for (size_t i = 0; i < c.n_orders; i++)
            free(c.orders[i]);
    free(c.orders);
    if (!rc)
        rc = scan(source, BOOK_POSITIONS, NULL, 0, restore_position, &c);
    for (int a = 0; !rc && a < BOOK_N_ASSETS; a++) {
        uint8_t prefix[4];
        memcpy(prefix, book_asset_code[a], 3);
        prefix[3] = '/';
        c.asset = a;
        c.last_fill_seq = 0;
        rc = scan(source, BOOK_FILLS, prefix, sizeof prefix, restore_fill, &c);
        e->books[a].next_fill_seq = c.last_fill_seq + 1;
    }
    if (!rc)
        rc = book_check(e);
    if (!rc)
        e->height = height;
    return rc;
}

/* ---------------------------------------------------------------- engine */

book_engine *book_engine_new(void)
{
    book_engine *e = calloc(1, sizeof *e);

    if (!e)
        return NULL;
    for (int a = 0; a < BOOK_N_ASSETS; a++)
        e->books[a].next_fill_seq = 1;
    return e;
}

void book_engine_free(book_engine *e)
{
    if (!e)
        return;
    for (int acct = 0; acct < BOOK_N_ACCOUNTS; acct++) {
        struct order *o = e->accounts[acct].head;
        while (o) {
            struct order *next = o->acct_next;
            free(o);
            o = next;
        }
    }
    for (int a = 0; a < BOOK_N_ASSETS; a++)
        for (int s = 0; s < 2; s++)
            free(e->books[a].sides[s].levels);
    free(e);
}

uint64_t book_height(const book_engine *e)
{
    return e->height;
}

const char *book_error(const book_engine *e)
{
    return e->error;
}

void book_get_stats(const book_engine *e, book_stats *st)
{
    *st = (book_stats){.height = e->height, .n_open_orders = e->n_open_orders};
    for (int a = 0; a < BOOK_N_ASSETS; a++) {
        st->n_levels += e->books[a].sides[BOOK_BUY].n_levels + e->books[a].sides[BOOK_SELL].n_levels;
        st->n_fills += e->books[a].next_fill_seq - 1;
    }
}

/* ---------------------------------------------------------------- digest */

struct digest_writer {
    XXH64_state_t *state;
    size_t len;
    uint8_t buf[512];
};

static void digest_u64(struct digest_writer *w, uint64_t v)
{
    if (w->len == sizeof w->buf) {
        XXH64_update(w->state, w->buf, w->len);
        w->len = 0;
    }
    put_le64(w->buf + w->len, v);
    w->len += 8;
}

int book_digest(const book_engine *e, uint64_t *digest)
{
    static const char tag[] = "orderbook-digest-v1";
    struct digest_writer w = {.state = XXH64_createState()};

    if (!w.state)
        return ENOMEM;
    XXH64_reset(w.state, 0);
    XXH64_update(w.state, tag, sizeof tag - 1);
    digest_u64(&w, e->height);
    for (int a = 0; a < BOOK_N_ASSETS; a++) {
        digest_u64(&w, e->books[a].next_fill_seq);
        for (int s = BOOK_BUY; s <= BOOK_SELL; s++) {
            const struct side *side = &e->books[a].sides[s];
            digest_u64(&w, side->n_levels);
            for (size_t i = side->n_levels; i-- > 0;) {
                const struct level *lv = &side->levels[i];
                digest_u64(&w, (uint64_t)lv->price);
                digest_u64(&w, lv->n_orders);
                for (const struct order *o = lv->head; o; o = o->next) {
                    digest_u64(&w, o->id);
                    digest_u64(&w, o->seq);
                    digest_u64(&w, o->account);
                    digest_u64(&w, o->remaining);
                }
            }
        }
    }
    for (int acct = 0; acct < BOOK_N_ACCOUNTS; acct++)
        for (int a = 0; a < BOOK_N_ASSETS; a++) {
            digest_u64(&w, (uint64_t)e->positions[acct][a].qty);
            digest_u64(&w, (uint64_t)e->positions[acct][a].cash);
        }
    XXH64_update(w.state, w.buf, w.len);
    *digest = XXH64_digest(w.state);
    XXH64_freeState(w.state);
    return 0;
}

/* ---------------------------------------------------------------- dump */

/* One price level as a line: side, price, total qty, then each order in
 * queue order as block.index (account) x remaining. */
static void dump_level(FILE *out, const char *side, const struct level *lv)
{
    uint64_t total = 0;

    for (const struct order *o = lv->head; o; o = o->next)
        total += o->remaining;
    fprintf(out, "  %s %10" PRId64 " %8" PRIu64 " :", side, lv->price, total);
    for (const struct order *o = lv->head; o; o = o->next)
        fprintf(out, " %" PRIu64 ".%" PRIu64 "(a%" PRIu32 ")x%" PRIu64, o->id >> 24, o->id & 0xffffff,
                o->account, o->remaining);
    fputc('\n', out);
}

void book_dump(const book_engine *e, FILE *out)
{
    book_stats st;

    book_get_stats(e, &st);
    fprintf(out, "height %" PRIu64 ", %" PRIu64 " open orders on %" PRIu64 " levels, %" PRIu64 " fills\n",
            st.height, st.n_open_orders, st.n_levels, st.n_fills);
    for (int a = 0; a < BOOK_N_ASSETS; a++) {
        const struct side *bids = &e->books[a].sides[BOOK_BUY], *asks = &e->books[a].sides[BOOK_SELL];
        fprintf(out, "\n%s (%" PRIu64 " fills)       price      qty : orders as block.index(account)xqty\n",
                book_asset_code[a], e->books[a].next_fill_seq - 1);
        for (size_t i = 0; i < asks->n_levels; i++)
            dump_level(out, "ask", &asks->levels[i]);
        for (size_t i = bids->n_levels; i-- > 0;)
            dump_level(out, "bid", &bids->levels[i]);
    }
    fprintf(out, "\npositions (qty / cash)\n");
    for (int acct = 0; acct < BOOK_N_ACCOUNTS; acct++) {
        fprintf(out, "  account %d", acct);
        for (int a = 0; a < BOOK_N_ASSETS; a++)
            fprintf(out, "  %s %+6" PRId64 " / %+11" PRId64, book_asset_code[a], e->positions[acct][a].qty,
                    e->positions[acct][a].cash);
        fputc('\n', out);
    }
}
