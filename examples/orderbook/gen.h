/* gen.h -- the orderbook example's order flow: deterministic, so that a
 * restarted engine sees the orders it would have seen without a crash. */
#ifndef ORDERBOOK_GEN_H
#define ORDERBOOK_GEN_H

#include <stdint.h>

#include "book.h"

/* Fills out[0..n_orders) with the orders of block number block: a pure
 * function of (seed, block, n_orders). */
void gen_block(uint64_t seed, uint64_t block, uint32_t n_orders, book_order_in *out);

#endif
