/* gen_golden.c -- writes tests/golden/checkpoint-v<major>.<minor>.rkcp for
 * the format this source has (checkpoint-v1.0.rkcp came from the 1.0
 * writer, checkpoint-v1.1.rkcp adds the replay record, checkpoint-v1.2.rkcp
 * the epoch history), the committed
 * checkpoints that test_checkpoint loads to prove old files keep loading.
 * Its content is golden_content.h.  Regenerate only on purpose (a format
 * change that keeps old files readable adds a new golden file beside this
 * one instead).  Not built by CMake; from the top of the repository:
 *
 *   cc -std=c11 -Iinclude -I. -o /tmp/gen_golden tests/golden/gen_golden.c \
 *      build/librkpersist.a build/librkshm.a -lmsgpackc -lzstd -lxxhash -ldb-5.3 -lpthread -lrt
 *   /tmp/gen_golden tests/golden
 *
 * It prints the digest to pin as GOLDEN_DIGEST in golden_content.h.
 * Threads: one.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "persist/checkpoint.h"
#include "golden_content.h"

int main(int argc, char **argv)
{
    struct ckpt_info info = {0};
    char err[512], path[4096], final[4200];
    ckpt_writer *w = NULL;
    uint8_t key[64], val[64];
    uint64_t digest = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
        return 2;
    }
    info.epoch = GOLDEN_EPOCH;
    info.journal_seq = GOLDEN_JOURNAL_SEQ;
    info.lsn = GOLDEN_LSN;
    info.created_ns = GOLDEN_CREATED_NS;
    info.n_producers = 2;
    info.producers = (struct ckpt_producer *)golden_producers;
    info.has_replay = CKPT_MINOR >= 1;
    info.replay.restart_seq = GOLDEN_RESTART_SEQ;
    info.replay.n_groups = GOLDEN_GROUPS;
    info.replay.n_records = GOLDEN_RECORDS;
    info.replay.n_discarded = GOLDEN_DISCARDED;
    info.replay.n_producers = 3;
    info.replay.producers = (struct ckpt_replay_producer *)golden_replay_producers;
    info.replay.n_table_ids = 3;
    info.replay.table_ids = (struct ckpt_map_entry *)golden_table_ids;
    info.replay.n_slots = 2;
    info.replay.slots = (struct ckpt_map_entry *)golden_slots;
    info.n_history = CKPT_MINOR >= 2 ? 2 : 0;
    info.history = (struct epoch_start *)golden_history;
    if (ckpt_writer_open(argv[1], &info, 3, &w, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (unsigned i = 0; i < GOLDEN_N_ENTRIES; i++) {
        const char *table;
        uint32_t klen, vlen;
        golden_entry(i, &table, key, &klen, val, &vlen);
        digest += ckpt_entry_digest(table, key, klen, val, vlen);
        if (ckpt_writer_add(w, table, key, klen, val, vlen) != 0) {
            fprintf(stderr, "entry %u refused\n", i);
            ckpt_writer_abort(w);
            return 1;
        }
    }
    if (ckpt_writer_finish(w, path, sizeof path, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    snprintf(final, sizeof final, "%s/checkpoint-v%u.%u.rkcp", argv[1], CKPT_MAJOR, CKPT_MINOR);
    if (rename(path, final) != 0) {
        perror(final);
        return 1;
    }
    printf("%s: digest 0x%016" PRIx64 "\n", final, digest);
    return 0;
}
