/* gen.c -- the order flow of the orderbook example.
 *
 * Block b's orders are a pure function of (seed, b): a splitmix64 stream
 * started from a hash of both, with nothing carried from block to block.
 * That is what lets a restarted engine pick up at block h + 1 and end where
 * an engine that never stopped ends.  A real engine reads its input from a
 * log or a sequenced feed instead, and the height it marks is its position
 * in that input.
 *
 * The flow: 65% limit orders priced a few ticks either side of the asset's
 * mid (some cross and trade at once, most rest), 10% market orders, 25%
 * cancels.  Each mid drifts with the block number in a triangle wave, so
 * orders that rested away from the mid get traded later.
 *
 * Threads: no state; call from anywhere.
 */
#include "gen.h"

static const int64_t base_mid[BOOK_N_ASSETS] = {30000, 2000, 150}; /* ticks */

#define DRIFT_PERIOD 160   /* blocks per cycle of the mid */
#define DRIFT_AMPLITUDE 40 /* ticks either side of base_mid */

/* splitmix64's output function: a bijective 64-bit mix. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t next_random(uint64_t *state)
{
    *state += UINT64_C(0x9e3779b97f4a7c15);
    return mix64(*state);
}

/* The asset's mid price at block: base_mid plus a triangle wave whose phase
 * depends on the seed. */
static int64_t mid_price(uint64_t seed, int asset, uint64_t block)
{
    uint64_t phase = mix64(seed ^ (uint64_t)(asset + 1)) % DRIFT_PERIOD;
    int64_t x = (int64_t)((block + phase) % DRIFT_PERIOD);
    int64_t up = x < DRIFT_PERIOD / 2 ? x : DRIFT_PERIOD - x; /* 0 .. DRIFT_PERIOD / 2 */

    return base_mid[asset] + up * 2 * DRIFT_AMPLITUDE / DRIFT_PERIOD - DRIFT_AMPLITUDE;
}

void gen_block(uint64_t seed, uint64_t block, uint32_t n_orders, book_order_in *out)
{
    uint64_t state = mix64(seed ^ mix64(block));

    for (uint32_t i = 0; i < n_orders; i++) {
        book_order_in *o = &out[i];
        uint64_t kind = next_random(&state) % 100;

        *o = (book_order_in){.account = (uint32_t)(next_random(&state) % BOOK_N_ACCOUNTS)};
        if (kind >= 75) {
            o->type = BOOK_CANCEL;
            o->pick = next_random(&state);
            continue;
        }
        o->asset = (uint8_t)(next_random(&state) % BOOK_N_ASSETS);
        o->side = (uint8_t)(next_random(&state) & 1);
        if (kind < 65) {
            /* from 2 ticks through the mid to 7 ticks away on the own side */
            int64_t away = (int64_t)(next_random(&state) % 10) - 2;
            o->type = BOOK_LIMIT;
            o->price = mid_price(seed, o->asset, block) + (o->side == BOOK_BUY ? -away : away);
            o->qty = 1 + next_random(&state) % 10;
        } else {
            o->type = BOOK_MARKET;
            o->qty = 1 + next_random(&state) % 10;
        }
    }
}
