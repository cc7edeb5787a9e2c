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
 *   "maps"         the table id -> name and ring slot -> producer name maps;
 *   "loading"      only while a checkpoint is loaded into a store in use
 *                  (import.c): the checkpoint's journal_seq.
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

#include <stdatomic.h>
#include <stdint.h>

#include "persist/checkpoint.h"
#include "shm/ring_format.h"
#include "persist/store.h"

/* Invariants of apply, cited by number where code relies on them (the
 * ring's are R1.. in shm/ring_format.h, the journal's J1.. in
 * persist/store.h).  next_seq is the applier's next journal entry to read
 * (apply_impl.h); the rest are the fields below.
 *
 * A1  applied_seq <= journal_seq: an entry counts as applied only once it
 *     was read from the journal (store_journal_get) and every frame of it
 *     went through apply_frame; nothing the journal does not hold is
 *     applied.  After a checkpoint load, applied_seq is the checkpoint's
 *     journal_seq, where the journal continues (J2).
 * A2  A group is applied whole or not at all: a producer's PUT/DEL frames
 *     are held in memory until its MARK, then applied in one transaction
 *     with the producer's new mark (applied_lsn, height); an ATTACH or an
 *     ABORT (not below discard_lsn) voids the open group, which is never
 *     applied in part.  A transaction ends only after whole journal
 *     entries, with no group's records in it but complete ones.
 * A3  Frames at or below their producer's applied_lsn (its last applied
 *     MARK) are skipped: after a restart re-reads entries from
 *     restart_seq, every group is applied exactly once.  So a group being
 *     applied lies wholly above its producer's applied_lsn, and its MARK
 *     above every frame of it.
 * A4  restart_seq <= next_seq <= applied_seq + 1, and restart_seq is at or
 *     before the first entry of every group still open: re-reading from
 *     restart_seq finds every open group whole.  "applied", the
 *     producers' marks and the groups' records are committed in the same
 *     transaction, so after a crash state, restart point and marks agree.
 * A5  digest = the sum of ckpt_entry_digest() over every entry of every
 *     state table, kept in the transaction that changes the entry; a
 *     checkpoint recomputes it from the tables it wrote and refuses to
 *     publish a file that disagrees (ckpt_job_write).
 * A6  A frame's table id and producer slot mean what the latest TABLE and
 *     ATTACH frame before it in the journal set (the maps, persisted with
 *     the transaction as they are at restart_seq, so that a frame read
 *     again after a restart means what it meant the first time, whatever a
 *     later ATTACH of a new ring renamed); what an id resolved to (the applier's table and
 *     producer indexes) always names the table or producer its map names
 *     now: a changed name clears it.
 */

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
    uint64_t discard_lsn; /* LSN of its last ATTACH/ABORT: a re-read does
                             not count a discard twice, and an ABORT below
                             it (of an earlier session) is ignored */
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

/* The last journal entry applier_run has read (it may stop before the
 * `upto` it was given: applier_watch_height). */
uint64_t applier_read_upto(const applier *a);

/* The ring position just past the frames of the last journal entry
 * applier_run has read (its header's next_lsn): every frame below it is
 * applied, held in an open group or skipped; 0 before the first entry
 * read since applier_open.  A primary bounds apply's lag with it
 * ([apply] max_lag_bytes). */
uint64_t applier_read_lsn(const applier *a);

/* Where the journal goes on while it holds no entry: *seq, the last entry
 * applied (a loaded checkpoint's journal_seq, A1), and *next_lsn, a ring
 * position past every frame the state names: just past the last MARK
 * applied and past every producer's last ATTACH or ABORT.  That is where
 * the checkpoint's last entry ended (its next_lsn) unless frames of a
 * group left open followed there, which this journal never held.  A
 * standby's bootstrap leaves its journal so until the entry after the
 * checkpoint comes (J2); a node that begins writing there (a promotion, a
 * start as primary) goes on from this point, or its entries would start
 * again at seq 1 and LSN 0, at or below what is applied (A1, A3), and
 * never reach the state.  0 and 0 for a new store.  0 or a BDB error. */
int applier_journal_point(applier *a, uint64_t *seq, uint64_t *next_lsn);

/* For such a node once it writes as primary, its journal going on at seq
 * (the point's seq + 1): a group the checkpoint held open began in an
 * entry before seq, which this journal will never hold, and its MARK (if
 * any) went to another node only; it is given up, as a dead producer's is
 * (A2), logged, and the restart point moves to seq (A4), committed.  A
 * no-op when apply restarts at seq already.  0 or a BDB error. */
int applier_restart_at(applier *a, uint64_t seq);

/* Makes applier_run stop (after committing) at the end of the journal
 * entry in which producer name's height crosses a multiple of every (0:
 * never), so that a checkpoint can be taken right there;
 * applier_height_crossed() then says so once. */
void applier_watch_height(applier *a, const char *name, uint64_t every);
/* Makes applier_run stop (after committing) at the end of the journal
 * entry after which it sees *flag set (NULL: never): another thread's
 * request for a group boundary (node/checkpoint.c, take_snapshot_job)
 * then waits for one entry, not a whole run. */
void applier_stop_when(applier *a, const atomic_int *flag);
int applier_height_crossed(applier *a);

/* Checkpoints, in two steps so that apply stalls only for the first.
 * applier_checkpoint_begin, on the applier's thread between applier_run
 * calls (a group boundary), opens a snapshot transaction (MVCC) on what
 * has been committed, and makes state.db multiversion until the job ends
 * (apply writes it in place otherwise: export.c, snapshot_pin); it is
 * the only way to begin a job.  ckpt_job_write, on any thread while apply goes on,
 * writes every state table as that snapshot sees it into folder dir
 * (checkpoint.h, with the replay record: the restart point, counters,
 * producers and maps of the same snapshot), reads it back, checks that
 * the digest of what it wrote equals the one apply kept, and puts the
 * new file's header in *written (ckpt_info_free) and its path in
 * path_out.  ckpt_job_free ends the snapshot (any thread). */
typedef struct ckpt_job ckpt_job;
int applier_checkpoint_begin(applier *a, uint64_t epoch, ckpt_job **out);
int ckpt_job_write(ckpt_job *j, const char *dir, int zstd_level, char *path_out, size_t path_size,
                   struct ckpt_info *written, char *err, size_t err_size);
void ckpt_job_free(ckpt_job *j);
/* The last journal entry applied in job j's snapshot. */
uint64_t ckpt_job_applied_seq(const ckpt_job *j);
/* Writes every state table as job j's snapshot sees it, with what was
 * applied and every producer's record, into a state snapshot file at path
 * (persist/snapshot.h; not fsynced: ephemeral), on any thread while apply
 * goes on; *n_entries: how many entries it holds.  Ends the snapshot
 * transaction; ckpt_job_free(j) still follows. */
int ckpt_job_snapshot(ckpt_job *j, const char *path, uint64_t *n_entries, char *err, size_t err_size);

/* ckpt_job_snapshot at journal entry upto (<= what s's journal holds),
 * whether apply has reached it or not: the state apply has once it has
 * applied every entry up to upto, byte for byte -- tables, digest, what
 * was applied, every producer's record -- and nothing after.  When job
 * j's snapshot is behind upto, the entries from its restart point to
 * upto are taken through apply's rules in memory (a fold, export.c) and
 * merged into the file; at or past upto, the file is j's snapshot as it
 * is (the first group boundary at or after upto).  RK_ENOTFOUND when the
 * journal no longer holds an entry it needs (trimmed meanwhile: begin a
 * new job).  Ends the snapshot transaction; ckpt_job_free(j) follows.
 *
 * next (may be NULL): on success, a base for the next requests, or NULL
 * when none could be made (out of memory): a job whose tables are the
 * file just written, mapped (and indexed), with what was applied at upto
 * and the records a fold from there starts from, so that the next
 * snapshots are overlays of this file (ckpt_job_overlay_at) -- what
 * changed since -- and not a read of every table of the store.  A base
 * begins no transaction and pins nothing: it serves ckpt_job_overlay_at
 * and ckpt_rebase_begin only (ckpt_job_write and ckpt_job_snapshot_at
 * refuse it, RK_EINVAL), on one thread at a time, while the journal
 * still holds the entries from its restart point (RK_ENOTFOUND
 * otherwise: the caller drops it and reads the store).  The base owns its
 * file from then on: ckpt_job_free unmaps it and removes it (engines get
 * links to it). */
int ckpt_job_snapshot_at(ckpt_job *j, store *s, uint64_t upto, const char *path, uint64_t *n_entries,
                         ckpt_job **next, char *err, size_t err_size);

/* Writes at path an overlay (persist/snapshot.h) of base j -- a *next of
 * ckpt_job_snapshot_at -- at journal entry upto: the state at upto, byte
 * for byte what ckpt_job_snapshot_at would write, as base j's file with
 * the overlay's entries put over it, the overlay naming the base's file
 * as base_name (a link to ckpt_job_base_path(j) the caller makes in
 * path's directory).  Its entries are the base's fold (the entries past
 * it taken through apply's rules), kept in j and run on from where the
 * last overlay left it, so that a call reads only the journal entries
 * since the last one; upto never goes back.  What an overlay writes grows
 * with what changed since the base: ckpt_rebase_* make a new base when it
 * is too much.  *n_records: its entries, tombstones included.
 * RK_ENOTFOUND: the journal no longer holds an entry the fold needs.
 * After any failure j's fold is in an unknown state: the caller drops j. */
int ckpt_job_overlay_at(ckpt_job *j, store *s, uint64_t upto, const char *path, const char *base_name,
                        uint64_t *n_records, char *err, size_t err_size);

/* The first half of ckpt_job_overlay_at, ahead of a request: base j's
 * fold run on to journal entry upto and the keys its overlays hold caught
 * up (once the records not yet taken are an eighth of them, or 2048), so
 * that the next overlay (at an upto at least this one) reads and sorts
 * only what came after -- off the request's path (the control thread
 * between requests: snapshot_fold_ahead in node/checkpoint.c).
 * Not between ckpt_job_overlay_at and ckpt_rebase_begin (the rebase takes
 * the fold at the overlay's point).  Failures as ckpt_job_overlay_at's:
 * the caller drops j.  ckpt_job_fold_upto: the journal entry the fold has
 * reached (0: none run yet). */
int ckpt_job_fold_ahead(ckpt_job *j, store *s, uint64_t upto, char *err, size_t err_size);
uint64_t ckpt_job_fold_upto(const ckpt_job *j);

/* A new base from base j and its last overlay, made off the requests'
 * path: ckpt_rebase_begin, on the thread that owns j, right after
 * ckpt_job_overlay_at (its fold still at that overlay's point), takes
 * what the new base needs -- the fold's records at that point, mappings
 * of j's file and of the overlay -- so that j goes on serving overlays
 * meanwhile; ckpt_rebase_run, on any thread, writes at path the whole
 * snapshot the two make (snap_merge: a changed base is RK_ECORRUPT) and
 * gives the base it is (*next: a job as ckpt_job_snapshot_at's *next,
 * at the overlay's point; NULL when none could be made).
 * ckpt_rebase_free frees what is left (NULL: no-op).  begin: RK_EINVAL
 * when j has no overlay yet. */
typedef struct ckpt_rebase ckpt_rebase;
int ckpt_rebase_begin(ckpt_job *j, ckpt_rebase **out);
int ckpt_rebase_run(ckpt_rebase *r, const char *path, uint64_t *n_entries, ckpt_job **next, char *err,
                    size_t err_size);
void ckpt_rebase_free(ckpt_rebase *r);

/* Every file a base or a rebase keeps mapped (the base's, the last
 * overlay's), which engines get hard links to, is held with a read lease
 * from then on (fcntl(2) "Leases"), so that an engine truncating it --
 * an access past the new end would raise SIGBUS -- waits until its job is
 * freed, and sig is raised in the process (it needs a handler: SIGIO's
 * default kills).  The caller then frees every base and rebase it keeps
 * (ckpt_job_free, ckpt_rebase_free, after the rebase's thread is joined),
 * which lets go of the leases.  0 (the default): no leases.  Call once,
 * before any base is made.  Where a lease cannot be taken (leases
 * disabled, a filesystem without them) the file is mapped without one,
 * logged once; a file open for writing elsewhere is not mapped (EAGAIN:
 * no base, the store serves). */
void ckpt_leases_enable(int sig);

/* Base j's fold, run on since rebase r began, goes to next -- the base r
 * made, at that point -- with the records it held then dropped: it is
 * what a fold from next run to the same entry would be (the same rules
 * from the same state: its producers, maps, open groups and counters are
 * at that entry), without reading the entries again.  On the thread that
 * owns both. */
void ckpt_rebase_adopt_fold(ckpt_rebase *r, ckpt_job *next, ckpt_job *j);

/* A base's file (NULL: j is not a base), its entries, and its fold's
 * records (what its overlays hold, before the last of each key is taken). */
const char *ckpt_job_base_path(const ckpt_job *j);
uint64_t ckpt_job_base_entries(const ckpt_job *j);
uint64_t ckpt_job_fold_records(const ckpt_job *j);

/* Loads checkpoint file path into a's store, which must hold no state
 * yet (nor part of a load that never ended: RK_EBUSY,
 * applier_load_interrupted).  A store being built (store_open with STORE_BUILDING) gets the
 * entries into state.db outside the Berkeley DB log (import.c; store_built
 * makes them durable), the file checked as it is loaded (ckpt_verify_once):
 * when the load fails, the directory may hold part of the file and must be
 * thrown away (restore and import do).  Any other store gets them in the
 * applier's transactions, committed without sync, the file verified whole
 * first (nothing is loaded from a file that fails).  Loaded: every
 * entry, the state digest, the
 * producers' marks and, from a format 1.1 file, the replay record, so
 * that applier_run goes on from the checkpoint's restart point exactly as
 * the node that took it would have.  A 1.0 file has no replay record: the
 * next entry read is journal_seq + 1.  progress, when not NULL, is called
 * now and then with entries loaded and the total (non-zero stops).  The
 * header goes to *info (ckpt_info_free). */
int applier_load_checkpoint(applier *a, const char *path, struct ckpt_info *info,
                            int (*progress)(void *arg, uint64_t done, uint64_t total), void *progress_arg,
                            char *err, size_t err_size);

/* Whether a's store holds part of a checkpoint load that never ended: a
 * load into a store in use (a standby's bootstrap) commits its entries a
 * buffer at a time and "applied" last, and one killed or failed in
 * between leaves some of the file's tables and no "applied" record --
 * not a state, though it looks like an empty one.  meta.db's "loading"
 * says so: committed with the load's first entries, removed with its
 * last commit.  *journal_seq (may be NULL): that checkpoint's.
 * applier_load_checkpoint and applier_run refuse such a store
 * (RK_EBUSY); a standby sets it aside and bootstraps again. */
int applier_load_interrupted(const applier *a, uint64_t *journal_seq);

#endif
