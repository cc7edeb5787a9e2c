/* golden_content.h -- what tests/golden/checkpoint-v1.0.rkcp holds, defined
 * once for its generator (gen_golden.c) and for the test that loads it
 * (test_checkpoint.c): 3 tables, 50 entries, text, binary and empty keys
 * and values.  Changing anything here means regenerating the golden file,
 * which is exactly what a format test must not do by accident. */
#ifndef RK_GOLDEN_CONTENT_H
#define RK_GOLDEN_CONTENT_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "persist/checkpoint.h"

#define GOLDEN_EPOCH 3u
#define GOLDEN_JOURNAL_SEQ 42u
#define GOLDEN_LSN 123456u
#define GOLDEN_CREATED_NS 1700000000123456789ull
#define GOLDEN_N_ENTRIES 50u
/* ckpt_entry_digest summed over the 50 entries, pinned when the file was
 * made: the digest definition must not change either */
#define GOLDEN_DIGEST 0x4f710920e17c4425ull

static const struct ckpt_producer golden_producers[2] = {
    {"matcher", 1000, 123450},
    {"risk", 77, 123456},
};

/* Format 1.1 adds the replay record (checkpoint-v1.1.rkcp carries this
 * one; checkpoint-v1.0.rkcp has none). */
static const struct ckpt_replay_producer golden_replay_producers[3] = {
    {"matcher", 123450, 1000, 1000, 0},
    {"risk", 123456, 77, 77, 99000},
    {"idle", 0, 0, 0, 5000},
};
static const struct ckpt_map_entry golden_table_ids[3] = {{1, "accounts"}, {2, "orders"}, {7, "positions"}};
static const struct ckpt_map_entry golden_slots[2] = {{0, "matcher"}, {3, "risk"}};
#define GOLDEN_RESTART_SEQ 40ull
#define GOLDEN_GROUPS 1077ull
/* Format 1.2 adds the epoch history (checkpoint-v1.2.rkcp carries this
 * one; the older files have none): epoch 3, the checkpoint's, began at 40
 * (its restart point: the journal entries after a restore to 39). */
static const struct epoch_start golden_history[2] = {{1, 1, 8}, {3, 40, 120000}};
#define GOLDEN_RECORDS 5000ull
#define GOLDEN_DISCARDED 1ull

/* Entry i (0..49) in file order: table, key and value into the buffers
 * (each at least 64 bytes). */
static inline void golden_entry(unsigned i, const char **table, uint8_t *key, uint32_t *klen, uint8_t *val,
                                uint32_t *vlen)
{
    if (i < 20) { /* accounts: text keys and values, one empty value */
        *table = "accounts";
        *klen = (uint32_t)snprintf((char *)key, 64, "acct-%02u", i);
        *vlen =
            i == 7 ? 0 : (uint32_t)snprintf((char *)val, 64, "{\"balance\":%u,\"ccy\":\"EUR\"}", i * 1000);
    } else if (i < 40) { /* orders: binary big-endian keys, binary values */
        unsigned k = i - 20;
        *table = "orders";
        *klen = 8;
        memset(key, 0, 8);
        key[6] = (uint8_t)(k >> 8);
        key[7] = (uint8_t)(k * 3);
        *vlen = 16;
        for (unsigned j = 0; j < 16; j++)
            val[j] = (uint8_t)(0xf0 ^ (k * 31 + j * 7));
    } else { /* positions: the empty key first, empty and UTF-8 values */
        unsigned k = i - 40;
        *table = "positions";
        *klen = k == 0 ? 0 : (uint32_t)snprintf((char *)key, 64, "pos/%u", k);
        if (k % 3 == 0)
            *vlen = 0;
        else
            *vlen = (uint32_t)snprintf((char *)val, 64, "qty=%d \xc3\xa9\xe2\x82\xac", (int)k * 10 - 45);
    }
}

#endif
