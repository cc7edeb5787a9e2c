/* history_rules.c -- the pure functions of history.h: the rules H1-H3 of
 * an epoch history, an entry's epoch, the cut at a point, the fork point
 * of two histories, and the history's bytes.  No I/O: the checkpoint
 * reader (and its fuzz target) use them without a store; history.c keeps
 * a data directory's history.
 *
 * Threads: any (no state).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persist/bytes.h"
#include "persist/history.h"
#include "shm/segment.h"

#define corrupt(why, why_size, ...) seg_fail(why, why_size, RK_ECORRUPT, __VA_ARGS__)

/* ------------------------------------------------------------ values */

int history_check(const struct epoch_start *h, uint32_t n, char *why, size_t why_size)
{
    if (n > HISTORY_MAX)
        return corrupt(why, why_size, "history of %" PRIu32 " elements (at most %u)", n, HISTORY_MAX);
    for (uint32_t i = 0; i < n; i++) {
        if (h[i].epoch == 0 || h[i].first_seq == 0)
            return corrupt(why, why_size,
                           "history element %" PRIu32 ": epoch %" PRIu64 " first_seq %" PRIu64
                           " (H1, H2: both >= 1)",
                           i, h[i].epoch, h[i].first_seq);
        if (i == 0)
            continue;
        if (h[i].epoch <= h[i - 1].epoch)
            return corrupt(why, why_size,
                           "history element %" PRIu32 ": epoch %" PRIu64 " after %" PRIu64
                           " (H1: strictly increasing)",
                           i, h[i].epoch, h[i - 1].epoch);
        if (h[i].first_seq < h[i - 1].first_seq || h[i].first_lsn < h[i - 1].first_lsn)
            return corrupt(why, why_size,
                           "history element %" PRIu32 ": first_seq %" PRIu64 " first_lsn %" PRIu64
                           " below the one before (H2: non-decreasing)",
                           i, h[i].first_seq, h[i].first_lsn);
    }
    return 0;
}

uint64_t history_epoch_of(const struct epoch_start *h, uint32_t n, uint64_t seq)
{
    uint32_t i = history_cut(h, n, seq);

    if (n == 0)
        return 0;
    return i ? h[i - 1].epoch : h[0].epoch; /* H3 */
}

uint32_t history_cut(const struct epoch_start *h, uint32_t n, uint64_t upto)
{
    uint32_t i = 0;

    while (i < n && h[i].first_seq <= upto) /* H2: sorted by first_seq */
        i++;
    return i;
}

/* The lowest seq at or above from where a or b begins an element (UINT64_MAX: none). */
static uint64_t next_change(const struct epoch_start *a, uint32_t na, const struct epoch_start *b,
                            uint32_t nb, uint64_t from)
{
    uint64_t best = UINT64_MAX;

    for (uint32_t i = 0; i < na; i++)
        if (a[i].first_seq >= from && a[i].first_seq < best)
            best = a[i].first_seq;
    for (uint32_t i = 0; i < nb; i++)
        if (b[i].first_seq >= from && b[i].first_seq < best)
            best = b[i].first_seq;
    return best;
}

uint64_t history_fork(const struct epoch_start *a, uint32_t na, uint64_t last_a, const struct epoch_start *b,
                      uint32_t nb, uint64_t last_b)
{
    uint64_t last = last_a < last_b ? last_a : last_b;

    /* both epochs are constant between two changes: compare at 1 and at
     * every change up to last (at most na + nb + 1 rounds) */
    for (uint64_t seq = 1; seq <= last && seq != UINT64_MAX; seq = next_change(a, na, b, nb, seq + 1))
        if (history_epoch_of(a, na, seq) != history_epoch_of(b, nb, seq))
            return seq - 1;
    return last;
}

void history_encode(const struct epoch_start *h, uint32_t n, uint8_t *out)
{
    for (uint32_t i = 0; i < n; i++, out += HISTORY_ELEMENT_SIZE) {
        put_le64(out, h[i].epoch);
        put_le64(out + 8, h[i].first_seq);
        put_le64(out + 16, h[i].first_lsn);
    }
}

int history_decode(const uint8_t *buf, size_t len, struct epoch_start **h, uint32_t *n, char *why,
                   size_t why_size)
{
    size_t count = len / HISTORY_ELEMENT_SIZE;
    int rc;

    *h = NULL;
    *n = 0;
    if (len % HISTORY_ELEMENT_SIZE || count > HISTORY_MAX)
        return corrupt(why, why_size, "history of %zu bytes (want a multiple of %u, at most %u elements)",
                       len, HISTORY_ELEMENT_SIZE, HISTORY_MAX);
    if (count == 0)
        return 0;
    *h = calloc(count, sizeof **h);
    if (!*h)
        return ENOMEM;
    for (size_t i = 0; i < count; i++, buf += HISTORY_ELEMENT_SIZE)
        (*h)[i] = (struct epoch_start){get_le64(buf), get_le64(buf + 8), get_le64(buf + 16)};
    rc = history_check(*h, (uint32_t)count, why, why_size);
    if (rc) {
        free(*h);
        *h = NULL;
        return rc;
    }
    *n = (uint32_t)count;
    return 0;
}

