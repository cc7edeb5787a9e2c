/* store_impl.h -- what the store (store.c) shares with the epoch history it
 * keeps (history.c); private to those two files.
 *
 * Threads: as store.h: any thread once the store is open.
 */
#ifndef RK_STORE_IMPL_H
#define RK_STORE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "persist/store.h"

struct history;

/* Loads the directory's history (stored, or implied by its journal) at
 * store_open: 0, or an error with one line in err. */
int history_open(store *s, struct history **out, char *err, size_t err_size);
void history_close(struct history *h);

/* The history store_open loaded. */
struct history *store_history_state(store *s);

/* J4 for entry seq of epoch, being read (RK_ECORRUPT) or appended
 * (RK_EINVAL), with the reason in why; 0 when it fits. */
int history_entry_ok(struct history *h, uint64_t seq, uint64_t epoch, int appending, char *why,
                     size_t why_size);
/* After entry seq (epoch, first_lsn) was appended: an implied history
 * grows by it. */
void history_entry_appended(struct history *h, uint64_t seq, uint64_t epoch, uint64_t first_lsn);

/* Calls fn with the header of every journal entry, in sequence order
 * (only the 64 header bytes are read); fn's non-zero return stops it and
 * is returned.  A header that does not decode is RK_ECORRUPT. */
int store_journal_headers(store *s, int (*fn)(void *arg, const struct journal_header *h), void *arg);

#endif
