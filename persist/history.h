/* history.h -- a data directory's epoch history as a value: the list of
 * (epoch, first journal seq, first LSN), one element each time a node
 * began to write as primary (a first start, a restore, an import, a
 * promotion), and the pure functions over it: validation, the epoch of a
 * journal sequence, the fork point of two histories.  Private to
 * ringkeep; the stored history and its API are in persist/store.h, the
 * checkpoint carries one (checkpoint.h), the wire one (replicator/wire.h).
 *
 * This is PostgreSQL's timeline history and Raft's log matching in one
 * list: an epoch is written by one node only, so two journals whose
 * histories give the same epoch for a sequence hold the same entry there,
 * and two histories agree on every sequence up to the first element
 * where they part.
 *
 * Invariants of a history h[0..n), cited by number (checked by
 * history_check, kept by every writer of one):
 *
 * H1  0 <= n <= HISTORY_MAX; every epoch >= 1 and epochs strictly
 *     increasing: an epoch begins once.
 * H2  first_seq >= 1 and non-decreasing; first_lsn non-decreasing.  Two
 *     elements with the same first_seq: the earlier epoch wrote nothing
 *     (a restore or promotion followed by another before any entry), and
 *     the later one is the epoch of that sequence.
 * H3  The epoch of journal sequence seq is the epoch of the last element
 *     whose first_seq <= seq; a sequence below h[0].first_seq belongs to
 *     h[0]'s epoch (the history of a directory made before histories
 *     existed starts at the oldest entry it held: see store.h).  An empty
 *     history gives 0 for every sequence ("unknown").
 */
#ifndef RK_HISTORY_H
#define RK_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#define HISTORY_MAX 4096u /* elements; a failover, restore or import adds one */

struct epoch_start {
    uint64_t epoch;     /* the epoch begun */
    uint64_t first_seq; /* its first journal entry (the journal's last seq + 1 when it began) */
    uint64_t first_lsn; /* the journal's next_lsn when it began: every record
                           it writes has an LSN at or above it (0: no entry yet) */
};

/* H1, H2: 0, or RK_ECORRUPT with the element and the rule in why. */
int history_check(const struct epoch_start *h, uint32_t n, char *why, size_t why_size);

/* H3: the epoch of journal sequence seq (0 when n == 0). */
uint64_t history_epoch_of(const struct epoch_start *h, uint32_t n, uint64_t seq);

/* The number of leading elements whose first_seq <= upto: the history of
 * a journal cut after entry upto - 1 that goes on at upto (a restore to a
 * point, a checkpoint, a standby setting its tail aside). */
uint32_t history_cut(const struct epoch_start *h, uint32_t n, uint64_t upto);

/* The fork point of journal a (history a[0..na), last entry last_a) and
 * journal b: the highest seq <= min(last_a, last_b) such that both
 * histories give the same epoch for every sequence 1..seq (0: none).
 * Epochs change only at elements' first_seq, so only those are compared. */
uint64_t history_fork(const struct epoch_start *a, uint32_t na, uint64_t last_a, const struct epoch_start *b,
                      uint32_t nb, uint64_t last_b);

/* The stored form (meta.db, STORE_HISTORY_KEY): n elements of 24 bytes,
 * epoch, first_seq, first_lsn, each a little-endian uint64.
 * history_encode writes n * HISTORY_ELEMENT_SIZE bytes into out;
 * history_decode reads len bytes into a malloc'd array *h of *n elements
 * (NULL when n == 0), checked (history_check): 0, RK_ECORRUPT, ENOMEM. */
#define HISTORY_ELEMENT_SIZE 24u
void history_encode(const struct epoch_start *h, uint32_t n, uint8_t *out);
int history_decode(const uint8_t *buf, size_t len, struct epoch_start **h, uint32_t *n, char *why,
                   size_t why_size);

#endif
