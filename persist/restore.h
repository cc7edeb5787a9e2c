/* restore.h -- building a new data directory from a checkpoint plus journal
 * replay, to the latest point or to a point in time; and importing a
 * state from plain entries (private to ringkeep).
 *
 * restore_run reads a stopped data directory SRC (it takes SRC/LOCK, so a
 * node running there is refused, naming its pid) and writes a new one,
 * DIR, that holds exactly the state at the point asked for:
 *   RESTORE_LATEST  every journal entry SRC holds;
 *   RESTORE_SEQ     the state after journal entry seq is applied;
 *   RESTORE_HEIGHT  the state right after producer P's MARK with height N
 *                   (the first such MARK after the checkpoint): every
 *                   group whose MARK's LSN is at or below that MARK's LSN,
 *                   and no group of any producer still open there.
 * It loads a checkpoint (the newest of SRC/checkpoints that verifies and
 * is at or before the point, or the one given), copies it into
 * DIR/checkpoints, copies the journal entries from the checkpoint's
 * restart point up to the point into DIR's journal byte for byte (for a
 * height, the entry holding the MARK is cut just after it and encoded
 * again), and applies them.  DIR's journal then ends at the point, so a
 * node started on DIR serves exactly that state and goes on from there.
 *
 * DIR's epoch history is SRC's (or the checkpoint's, when SRC has none)
 * cut at the point, plus a new epoch, higher than every epoch SRC and the
 * checkpoint knew, that begins at the entry after the point: a node
 * started on DIR writes a history of its own, which a standby that
 * followed SRC past the point is told apart from (docs/PROTOCOL.md, fork
 * point).  An import begins epoch 1 in its new directory, and its
 * checkpoint carries that history.
 *
 * DIR must not exist, or be an empty folder; it is never overwritten.  On
 * failure, what restore made in DIR is removed again.
 *
 * Threads: one call at a time per SRC/DIR (the locks enforce it).
 */
#ifndef RK_RESTORE_H
#define RK_RESTORE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "persist/apply.h"
#include "persist/checkpoint.h"

enum restore_target { RESTORE_LATEST = 0, RESTORE_SEQ, RESTORE_HEIGHT };

enum restore_phase {
    RESTORE_SCANNING, /* journal entries read to find a height's MARK (done/total entries) */
    RESTORE_LOADING,  /* checkpoint entries loaded (done/total entries) */
    RESTORE_COPYING,  /* journal entries copied into DIR (done/total) */
    RESTORE_REPLAYING /* journal entries applied (done/total) */
};

struct restore_opts {
    const char *src_dir;    /* the data directory to restore from */
    const char *to_dir;     /* the new data directory */
    const char *checkpoint; /* a checkpoint file to use, or NULL: choose */
    enum restore_target target;
    uint64_t seq;         /* RESTORE_SEQ */
    const char *producer; /* RESTORE_HEIGHT */
    uint64_t height;      /* RESTORE_HEIGHT */
    uint32_t cache_mb;    /* Berkeley DB cache of each environment (0: the node's default) */
    /* Called now and then (not more than a few times a second is up to the
     * callee); non-zero stops the restore (that value is returned). */
    int (*progress)(void *arg, enum restore_phase phase, uint64_t done, uint64_t total);
    void *progress_arg;
    /* Told what the caller must know but is not an error: a checkpoint
     * that failed verification and was passed over, and why.  NULL: the
     * message goes to the log (warn). */
    void (*notice)(void *arg, const char *msg);
    void *notice_arg;
    /* A standby's rebuild (restore_rebuild): DIR takes SRC's history cut at
     * the point and begins no epoch (it follows another's); and, when no
     * checkpoint is at or before the point but SRC's journal holds every
     * entry from 1, DIR starts from an empty state and replays it all. */
    int follower;
};

struct restore_result {
    char checkpoint[PATH_MAX];       /* the checkpoint file used (in SRC) */
    int checkpoint_minor;            /* its format: 1.<minor> */
    uint32_t n_bad_checkpoints;      /* newer ones passed over: failed verification */
    uint64_t n_loaded;               /* entries loaded from it */
    uint64_t first_seq, last_seq;    /* journal entries copied into DIR (0, 0: none) */
    uint64_t n_replayed;             /* entries applied after the checkpoint's own */
    uint64_t cut_lsn;                /* RESTORE_HEIGHT: the MARK's LSN; else 0 */
    uint32_t n_frames_cut;           /* frames dropped from the entry after the MARK */
    struct apply_meta applied;       /* DIR's apply record at the end */
    uint32_t n_producers;            /* every producer with a MARK applied */
    struct ckpt_producer *producers; /* owned (restore_result_free) */
    uint64_t epoch;                  /* the epoch DIR begins: above every one SRC and the checkpoint knew */
    uint32_t n_history;              /* elements of DIR's epoch history, that one included */
};

void restore_result_free(struct restore_result *r);

/* Rebuilds the stopped data directory dir to the state after journal
 * entry seq (a standby setting aside entries past its fork point): a
 * restore (follower) of dir into dir/set-aside/.rebuild-<ns>, then dir/db
 * moves to dir/set-aside/db-<ns> (never deleted; its path in aside) and
 * the rebuilt db/ takes its place, both folders fsynced after each move.
 * A crash between the two moves leaves no db/: the node makes a new, empty
 * one and follows from nothing.  0, or restore_run's errors (RK_ENOTFOUND,
 * RK_ECORRUPT: dir cannot reach seq; a bootstrap from the primary must),
 * errno values with one line in err. */
int restore_rebuild(const char *dir, uint64_t seq, uint32_t cache_mb, char *aside, size_t aside_size,
                    char *err, size_t err_size);

/* Restores as above.  0, or an error with one line in err saying what is
 * wrong and what to do: RK_EBUSY (a node runs on SRC), RK_EEXIST (DIR not
 * empty), RK_ENOTFOUND (the point cannot be reached: before the oldest
 * usable checkpoint, beyond the journal, no such MARK -- with the nearest
 * heights seen), RK_ECORRUPT (the journal needed is damaged or trimmed, no
 * checkpoint verifies), RK_EINVAL (bad options, a 1.0 checkpoint asked to
 * replay), errno or BDB codes.  *res is filled on success (free it with
 * restore_result_free); on failure it holds nothing to free. */
int restore_run(const struct restore_opts *o, struct restore_result *res, char *err, size_t err_size);

/* ------------------------------------------------------------ import */

/* One entry of a state to import; the caller owns the bytes. */
struct restore_entry {
    const char *table; /* 1..RK_NAME_MAX bytes, no NUL inside */
    const uint8_t *key;
    uint32_t klen;
    const uint8_t *val;
    uint32_t vlen;
    uint64_t line; /* where it came from, for messages (0: not told) */
};

/* Makes the new data directory to_dir (the rules above) holding exactly
 * entries[0..n): sorts them (tables by name, keys bytewise; a table and
 * key given twice is RK_EINVAL naming both lines), writes them as
 * checkpoint to_dir/checkpoints/<20 zeros>.rkcp (journal sequence 0, no
 * producers, no replay record), and loads it.  A node started on to_dir
 * serves that state and starts its journal at 1.  entries is reordered.
 * The checkpoint's path goes to ckpt_path and its header to *info
 * (ckpt_info_free). */
int restore_import(const char *to_dir, struct restore_entry *entries, size_t n, char *ckpt_path,
                   size_t ckpt_path_size, struct ckpt_info *info, char *err, size_t err_size);

#endif
