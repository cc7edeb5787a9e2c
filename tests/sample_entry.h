/* sample_entry.h -- a real journal entry (journal_encode) for the wire
 * tests and the fuzz_wire seed corpus generator (a header, so that the
 * generator, compiled by hand, needs no other source).  Threads: any. */
#ifndef RINGKEEP_TESTS_SAMPLE_ENTRY_H
#define RINGKEEP_TESTS_SAMPLE_ENTRY_H

#include <inttypes.h>
#include <stdio.h>

#include "shm/ring.h"
#include "persist/store.h"

/* n_puts PUTs ("k<i>" = "v<i>-<seq>") and a MARK at height seq % 256, for
 * seq and epoch; malloc'd, its length in *len.  NULL if it does not fit
 * (n_puts above about 200) or cannot be encoded. */
static inline uint8_t *sample_entry(uint64_t seq, uint64_t epoch, unsigned n_puts, size_t *len)
{
    uint8_t frames[8192];
    struct journal_header h = {.seq = seq, .epoch = epoch};
    uint64_t pos = 4096 * seq;
    size_t used = 0;
    uint8_t *out = NULL;
    uint8_t height[8] = {(uint8_t)seq, 0, 0, 0, 0, 0, 0, 0};

    for (unsigned i = 0; i <= n_puts; i++) {
        char key[16], val[32];
        int klen = snprintf(key, sizeof key, "k%u", i),
            vlen = snprintf(val, sizeof val, "v%u-%" PRIu64, i, seq);
        int mark = i == n_puts;
        uint32_t size = mark ? frame_align(FRAME_HEADER_SIZE + 8)
                             : frame_align(FRAME_HEADER_SIZE + (uint64_t)klen + (uint64_t)vlen);

        if (used + size > sizeof frames)
            return NULL;
        if (mark)
            frame_encode(frames + used, FRAME_MARK, 0, 0, pos, NULL, 0, height, 8);
        else
            frame_encode(frames + used, FRAME_PUT, 1, 0, pos, key, (uint32_t)klen, val, (uint32_t)vlen);
        if (h.n_frames++ == 0)
            h.first_lsn = pos;
        h.last_lsn = pos;
        used += size;
        pos += size;
    }
    h.next_lsn = pos;
    return journal_encode(&h, frames, used, 1, &out, len) == 0 ? out : NULL;
}

#endif
