/* set_aside.h -- what a data directory set aside (private to ringkeep):
 * journal entries a standby held past its fork point with a primary
 * (replicator/standby.c writes them: docs/PROTOCOL.md, "The fork point"),
 * read back for `ringkeep status` and `ringkeep set-aside`.
 *
 * A run is one file DIR/set-aside/entries-<first seq>-<last seq>-lsn-<first
 * LSN>-<last LSN>-<ns>.rkj: the entries first..last as they were in the
 * journal, each preceded by its length (uint32, little-endian).  Runs are
 * never deleted by ringkeep.  Checkpoints of a history set aside go to
 * set-aside/checkpoints-<ns>/.  Threads: any; no state of their own. */
#ifndef RK_SET_ASIDE_H
#define RK_SET_ASIDE_H

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct set_aside_run {
    char path[PATH_MAX];   /* the file */
    uint64_t first_seq;    /* journal sequences of its first and last entry */
    uint64_t last_seq;
    uint64_t first_lsn;    /* the LSN of its first frame and of its last */
    uint64_t last_lsn;
    uint64_t set_aside_ns; /* when it was set aside (CLOCK_REALTIME, ns) */
};

/* The runs in data_dir/set-aside (files whose names do not parse are not
 * runs), oldest first, in *runs (malloc'd, NULL when none; the caller
 * frees it) and *n_runs.  0 (also when there is no set-aside folder), an
 * errno value. */
int set_aside_list(const char *data_dir, struct set_aside_run **runs, size_t *n_runs);

/* The runs as status members: {"set_aside": [{"file", "first_seq",
 * "last_seq", "entries", "first_lsn", "last_lsn"}...], "set_aside_entries":
 * the entries of all runs}.  A new reference; NULL when out of memory. */
json_t *set_aside_json(const struct set_aside_run *runs, size_t n_runs);

/* Calls fn for each entry of the run file path, in order, with its bytes
 * (valid during the call) and its seq (first_seq + its position); fn
 * returning non-zero stops and is returned.  A length prefix that runs
 * past the end of the file, or more or fewer entries than the name says,
 * is RK_ECORRUPT with one line in err; errno values. */
int set_aside_read(const struct set_aside_run *run,
                   int (*fn)(void *arg, uint64_t seq, const uint8_t *entry, size_t len), void *arg, char *err,
                   size_t err_size);

/* Moves every checkpoint of data_dir/checkpoints taken past journal entry
 * after_seq (its journal_seq above it: a state of the history set aside)
 * into data_dir/set-aside/checkpoints-<ns>/ (never deleted), so that no
 * restore, bootstrap or engine takes it for this directory's history; the
 * folders are fsynced after the moves.  A file whose header cannot be read
 * stays (a restore passes over it).  *n_moved says how many moved; the
 * folder's path in to.  0, or an errno value with one line in err. */
int set_aside_checkpoints(const char *data_dir, uint64_t after_seq, size_t *n_moved, char *to, size_t to_size,
                          char *err, size_t err_size);

#endif
