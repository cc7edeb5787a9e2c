/* book.h -- the order book engine of the orderbook example: price-time
 * priority matching for a few assets, positions per account, and the records
 * that describe every change of that state.
 *
 * This module knows nothing of ringkeep.  It reports each state change to a
 * book_sink (main.c's sink writes it to the ring with rk_put/rk_del), and it
 * rebuilds itself from those same records through a book_scan_fn (main.c's
 * scan reads the node's state with rk_state_scan).  That seam is where ringkeep
 * comes in; the self-test plugs an in-memory store into it instead.
 *
 * The records (integers little-endian in values, big-endian in keys so that
 * key order is number order; every value starts with a format byte, 1):
 *
 *   table "orders"     one per resting order
 *     key   asset code (3 bytes) '/' order id (8)                  12 bytes
 *     value format, side, 0, 0, account (4), price (8),
 *           remaining qty (8), seq (8)                             32 bytes
 *   table "fills"      append-only history, one per fill; the prefix
 *                      "BTC/" lists BTC's fills in order
 *     key   asset code (3) '/' fill seq of that asset (8, from 1)  12 bytes
 *     value format, taker side, 0, 0, maker account (4), taker
 *           account (4), 0 (4), price (8), qty (8), maker order
 *           id (8), taker order id (8), block (8)                  56 bytes
 *   table "positions"  one per account and asset that has traded
 *     key   account (4) '/' asset code (3)                          8 bytes
 *     value format, 0 (7), qty (8, signed), cash (8, signed)       24 bytes
 *
 * Every record carries an absolute value, never a delta.  A group applied
 * twice therefore leaves the state as applying it once did, which is what
 * makes a restart safe even when the node's state lags behind the ring (see
 * main.c).
 *
 * Prices are integer ticks, quantities integer lots, cash ticks x lots.
 * Order ids are arrival stamps, (block << 24) | index in block, and an
 * order's seq (its time priority) is its id: the value carries seq so that
 * restore orders each price level by it rather than by scan order.
 */
#ifndef ORDERBOOK_BOOK_H
#define ORDERBOOK_BOOK_H

#include <stdint.h>
#include <stdio.h>

#define BOOK_N_ASSETS 3
#define BOOK_N_ACCOUNTS 8
#define BOOK_MAX_ORDERS_PER_BLOCK ((1u << 24) - 1)
#define BOOK_MAX_BLOCK ((UINT64_C(1) << 40) - 1)
#define BOOK_MAX_PRICE 1000000000 /* ticks */
#define BOOK_MAX_QTY 1000000      /* lots */

/* "BTC", "ETH", "SOL": asset i's code, also the key prefix of its records. */
extern const char book_asset_code[BOOK_N_ASSETS][4];

enum book_table { BOOK_ORDERS, BOOK_FILLS, BOOK_POSITIONS, BOOK_N_TABLES };

/* "orders", "fills", "positions": the ringkeep table name of each table. */
extern const char *const book_table_name[BOOK_N_TABLES];

enum book_side { BOOK_BUY = 0, BOOK_SELL = 1 };
enum book_order_type { BOOK_LIMIT, BOOK_MARKET, BOOK_CANCEL };

/* One instruction as it arrives.  A limit order rests what it cannot fill;
 * a market order takes liquidity up to qty and drops the rest; a cancel
 * removes the account's open order number (pick % n), counting in arrival
 * (seq) order over all assets, or does nothing when the account has none.
 * Prices are 1 .. BOOK_MAX_PRICE, quantities 1 .. BOOK_MAX_QTY. */
typedef struct book_order_in {
    uint8_t type;     /* enum book_order_type */
    uint8_t side;     /* LIMIT, MARKET: enum book_side */
    uint8_t asset;    /* LIMIT, MARKET: 0 .. BOOK_N_ASSETS-1 */
    uint32_t account; /* 0 .. BOOK_N_ACCOUNTS-1 */
    int64_t price;    /* LIMIT: ticks, > 0 */
    uint64_t qty;     /* LIMIT, MARKET: lots, > 0 */
    uint64_t pick;    /* CANCEL: which open order of the account */
} book_order_in;

/* Where state changes go.  put/del return 0 or an error that stops the
 * block and is returned to the caller as it is (an RK_* code, say). */
typedef struct book_sink {
    int (*put)(void *arg, enum book_table table, const void *key, uint32_t klen, const void *val,
               uint32_t vlen);
    int (*del)(void *arg, enum book_table table, const void *key, uint32_t klen);
    void *arg;
} book_sink;

/* Where restore reads records from.  A scan calls fn for every record of
 * table whose key starts with prefix (plen 0: all), in bytewise key order,
 * and stops with fn's value when fn returns non-zero: the contract of
 * rk_state_scan(), so main.c's scan only forwards to it. */
typedef int (*book_record_fn)(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen);
typedef int (*book_scan_fn)(void *source, enum book_table table, const void *prefix, uint32_t plen,
                            book_record_fn fn, void *fn_arg);

typedef struct book_engine book_engine;

/* A new, empty engine at height 0, or NULL when out of memory.  The caller
 * owns it and frees it with book_engine_free() (NULL is a no-op). */
book_engine *book_engine_new(void);
void book_engine_free(book_engine *e);

/* Applies block number block (which must be book_height(e) + 1) made of
 * orders[0..n_orders), reporting every change to sink (NULL: to nowhere).
 * Returns 0, EINVAL for a bad block number or order, ENOMEM, or the sink's
 * error.  After an error the engine is part-way through the block: discard
 * it (and restore a new one). */
int book_apply_block(book_engine *e, uint64_t block, const book_order_in *orders, uint32_t n_orders,
                     const book_sink *sink);

/* Rebuilds a new engine (height 0, no orders) from the records that scan
 * reads from source, and sets its height: the last block those records
 * include (0: none, and then every table must be empty).  Returns 0, EINVAL
 * if e is not new, EBADMSG when a record is not valid, an order or fill is
 * not from blocks 1 .. height, a fill is missing or a book is crossed (the
 * reason is in book_error()), ENOMEM, or the scan's error.  After an error,
 * discard the engine. */
int book_restore(book_engine *e, uint64_t height, book_scan_fn scan, void *source);

/* Checks the invariants matching keeps: levels sorted and non-empty,
 * queues and account lists in seq order, counts right, no book crossed,
 * every asset's positions summing to zero.  Returns 0, or EBADMSG with the
 * reason in book_error().  O(open orders); book_restore() ends with it. */
int book_check(book_engine *e);

/* The last block applied or restored (0: none). */
uint64_t book_height(const book_engine *e);

/* A one-line reason for the last EBADMSG or EINVAL; "" if none. */
const char *book_error(const book_engine *e);

/* Counts for reports. */
typedef struct book_stats {
    uint64_t height;
    uint64_t n_open_orders;
    uint64_t n_levels;
    uint64_t n_fills; /* since block 1, all assets */
} book_stats;
void book_get_stats(const book_engine *e, book_stats *st);

/* Stores in *digest the XXH64 (seed 0) of a canonical serialization of
 * the engine's state: the 19 bytes "orderbook-digest-v1", then 8-byte
 * little-endian integers:
 *   height;
 *   for each asset in code order: its next fill seq; then bids and asks, each
 *     as its number of levels and then, from the best level to the worst, the
 *     price and number of orders, and each order in queue order as id, seq,
 *     account, remaining qty;
 *   for each account, for each asset: position qty, cash.
 * Two engines have the same digest when their books (to the queue order),
 * positions, fill counts and heights are equal.  Returns 0 or ENOMEM. */
int book_digest(const book_engine *e, uint64_t *digest);

/* Prints the books (asks above bids, best in the middle) and positions. */
void book_dump(const book_engine *e, FILE *out);

#endif
