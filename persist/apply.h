/* apply.h -- applying the journal to the state tables (private to ringkeep).
 *
 * The applier reads journal entries in sequence order and applies PUT/DEL
 * frames to one Berkeley DB database per table ("state.db", one
 * subdatabase per table name), one producer's atomic group at a time: a
 * producer's frames are held aside until its MARK and applied whole then.
 * A group cut by an ATTACH (the producer re-attached) or an ABORT (the ring
 * found it dead) is discarded, counted and logged: never applied in part.
 *
 * Several groups go into one transaction; a transaction ends only between
 * groups, and holds with them, in meta.db:
 *   "applied"      struct apply_meta: where to restart reading, the last
 *                  sequence and LSN applied, counters;
 *   "p:<name>"     struct producer_meta: the producer's last applied MARK
 *                  (LSN and height);
 *   "maps"         the table id -> name and ring slot -> producer name maps.
 * So after a crash the state, the restart point and the producers' marks
 * agree.  Applying re-reads the journal from the restart point (the oldest
 * open group's first entry) and skips every frame at or below its
 * producer's applied LSN: each group is applied exactly once.
 *
 * Transactions of the applier are committed without sync: the journal is
 * the durable record, and a transaction lost in a crash is applied again.
 *
 * Threads: one applier per store, used by one thread at a time.
 */
#ifndef RK_APPLY_H
#define RK_APPLY_H

#include <stdint.h>

#include "ring_format.h"
#include "store.h"

struct apply_meta {
    uint64_t restart_seq; /* first journal entry to read after a restart */
    uint64_t applied_seq; /* last journal entry read and applied */
    uint64_t applied_lsn; /* LSN of the last MARK applied (any producer) */
    uint64_t n_groups;    /* groups applied */
    uint64_t n_records;   /* PUT/DEL records applied */
    uint64_t n_discarded; /* groups discarded (producer died or re-attached) */
    uint64_t digest;      /* state digest: sum of ckpt_entry_digest() over
                             every entry, kept up to date per operation */
};

struct producer_meta {
    uint64_t applied_lsn; /* LSN of its last MARK applied */
    uint64_t height;      /* the height of that MARK */
    uint64_t n_groups;    /* its groups applied */
    uint64_t discard_lsn; /* LSN of the last ATTACH/ABORT that ended a group
                             of it (so a re-read does not count it twice) */
};

typedef struct applier applier;

/* Opens the applier on s: loads meta and maps.  *out is released with
 * applier_close(). */
int applier_open(store *s, applier **out, char *err, size_t err_size);
void applier_close(applier *a);

/* Applies every journal entry after the last one applied, up to and
 * including seq `upto` (UINT64_MAX: all there are), committing at least
 * every max_records records.  Returns 0, RK_ECORRUPT for a journal entry
 * that fails verification (with a reason in err), or a BDB error. */
int applier_run(applier *a, uint64_t upto, uint32_t max_records, char *err, size_t err_size);

/* What has been applied (a copy). */
struct apply_meta applier_meta(const applier *a);

/* Writes every state table and the producers' marks into a new standalone
 * Berkeley DB file at path (subdatabases "t:<table>" and "meta"), from the
 * applier's own view, which is at a group boundary once applier_run has
 * returned.  The file is written to path.tmp, fsynced and renamed. */
int applier_snapshot(applier *a, const char *path, char *err, size_t err_size);

/* Writes a checkpoint of every state table into folder dir (checkpoint.h),
 * from the applier's view (a group boundary once applier_run has returned),
 * checking that the digest of what it wrote equals the one apply keeps.
 * Then removes all but the newest `keep` checkpoints.  The new file's path
 * goes to path_out. */
int applier_checkpoint(applier *a, const char *dir, uint64_t epoch, int zstd_level, uint32_t keep,
                       char *path_out, size_t path_size, char *err, size_t err_size);

#endif
