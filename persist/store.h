/* store.h -- the node's data directory: lock, Berkeley DB environment,
 * journal and meta databases (private to ringkeep).
 *
 * Layout of a data directory DIR:
 *   DIR/LOCK          flock()ed exclusively by the one process that owns DIR;
 *                     holds that process's pid as text
 *   DIR/db/           the Berkeley DB transactional environment (log files,
 *                     region files, databases journal.db, meta.db, state.db)
 *   DIR/checkpoints/  checkpoint files (issue 4)
 *
 * The journal is a btree keyed by batch sequence (8 bytes, big-endian, so
 * that key order is sequence order).  Each value is one journal entry: the
 * frames of one drained batch exactly as they were in the ring, zstd-
 * compressed, with a header and an XXH64 trailer (journal_encode).
 *
 * Invariants of the journal, cited by number where code relies on them
 * (the ring's are R1..R8 in shm/ring_format.h, apply's A.. in
 * persist/apply.h):
 *
 * J1  Every ring frame below an entry's next_lsn is in that entry or an
 *     earlier one: next_lsn never passes a frame the journal does not
 *     hold.  So the ring's durable_lsn and head never pass what the
 *     journal holds (R6), and a node that restarts skips the frames below
 *     the last entry's next_lsn (exactly once).  Within an entry
 *     first_lsn <= last_lsn < next_lsn.
 * J2  An entry is stored under the seq in its header, no seq twice, and
 *     the entries form one run with no gap: appended at last seq + 1,
 *     removed only from the front (store_journal_trim).  The run starts at
 *     1, or where the checkpoint a journal continues from ends (trim, a
 *     standby's bootstrap, restore).
 * J3  An entry whose append returned 0 is on disk (committed with sync);
 *     after an append failed, no later one is acknowledged (store_failed),
 *     so the durable cursors never run ahead of the disk.
 * J4  An entry's epoch is the epoch its seq has in the directory's epoch
 *     history (persist/history.h, H3), so epochs never go down along the
 *     journal.  Checked on every append (RK_EINVAL) and every read
 *     (store_journal_get, store_journal_last: RK_ECORRUPT).  A directory
 *     whose history is implied by its journal (made before histories)
 *     only keeps its entries' epochs non-decreasing.
 *
 * journal_encode/journal_decode refuse an entry that breaks J1's rule
 * within the entry, store_journal_append_many a seq that is not its key
 * (J2): in every build, since entries come from disk and the wire.  The
 * run of J2 and J1 across entries are kept by the appenders (the node's
 * drain, a standby, restore).
 */
#ifndef RK_STORE_H
#define RK_STORE_H

#include <db.h>
#include <stddef.h>
#include <stdint.h>

#include "ringkeep.h"
#include "persist/history.h"

#define JOURNAL_MAGIC 0x454a4b52u /* "RKJE" little-endian */
#define JOURNAL_VERSION 1u
#define JOURNAL_MAX_RAW (64u << 20) /* largest uncompressed body accepted */

/* The fixed header at the start of every journal entry; all fields little-
 * endian.  The body (body_len bytes) follows, then the trailer: the XXH64
 * (seed 0) of header and body, in canonical (big-endian) form. */
struct journal_header {
    uint32_t magic;     /* JOURNAL_MAGIC */
    uint16_t version;   /* JOURNAL_VERSION */
    uint16_t flags;     /* JOURNAL_ZSTD if the body is one zstd frame */
    uint64_t seq;       /* batch sequence, = the database key */
    uint64_t epoch;     /* epoch of the node that wrote it */
    uint64_t first_lsn; /* LSN of the first frame */
    uint64_t last_lsn;  /* LSN of the last frame */
    uint64_t next_lsn;  /* ring position just past the batch: every ring
                           frame below it is in this or an earlier entry */
    uint32_t n_frames;
    uint32_t raw_len;  /* bytes of frames once decompressed */
    uint32_t body_len; /* bytes of body as stored */
    uint32_t reserved; /* 0 */
};
#define JOURNAL_ZSTD 1u
#define JOURNAL_HEADER_SIZE 64u
#define JOURNAL_TRAILER_SIZE 8u

/* A decoded entry.  frames points at raw_len bytes of frames, each at an
 * 8-byte aligned offset (as in the ring), every one already verified with
 * frame_decode(); it is owned by the entry (journal_entry_free). */
typedef struct journal_entry {
    struct journal_header h;
    uint8_t *frames;
} journal_entry;

/* Encodes an entry for the frames[0..frames_len) (8-aligned frames as
 * copied from the ring) into a malloc'd buffer *out of *out_len bytes.
 * h->seq, epoch, first_lsn, last_lsn, next_lsn, n_frames are taken from h;
 * the rest is filled in.  level is the zstd level (1 = fast). */
int journal_encode(const struct journal_header *h, const uint8_t *frames, size_t frames_len, int level,
                   uint8_t **out, size_t *out_len);

/* Decodes and verifies buf[0..len): magic, version, lengths against len,
 * XXH64, decompression to exactly raw_len bytes, then every frame
 * (frame_decode, 8-byte alignment, count = n_frames, LSNs increasing and
 * within [first_lsn, last_lsn]).  Never reads outside buf; never allocates
 * more than JOURNAL_MAX_RAW + a constant whatever the header claims.
 * Returns 0, RK_ECORRUPT with a reason in why, RK_EVERSION, or ENOMEM. */
int journal_decode(const uint8_t *buf, size_t len, journal_entry *e, char *why, size_t why_size);
void journal_entry_free(journal_entry *e);
/* Only the header of buf[0..len) into *h, nothing verified but the length
 * and the magic (the trailer covers the whole entry): 0 or RK_ECORRUPT.
 * For walking a journal's headers (the epochs it carries). */
int journal_read_header(const uint8_t *buf, size_t len, struct journal_header *h);
/* The entry's XXH64 trailer (over its header and body), read from its
 * canonical big-endian form, nothing verified; 0 for a buffer shorter than
 * a header and trailer.  What identifies an entry's bytes (HELLO,
 * prev_xxh, the journal trim's record). */
uint64_t journal_entry_xxh(const uint8_t *buf, size_t len);
/* (On failure e holds no frames, so journal_entry_free(e) is a no-op;
 * journal_entry_free sets e->frames to NULL.  journal_encode returns
 * RK_EINVAL for frames that break the rules below, ENOMEM, and leaves *out
 * NULL then.) */

/* The rules an entry's frames keep, checked by journal_encode (RK_EINVAL)
 * and journal_decode (RK_ECORRUPT) alike:
 *   - at least one frame; raw_len a multiple of 8, at most JOURNAL_MAX_RAW;
 *     frames back to back at 8-aligned offsets, each passing frame_decode(),
 *     the last one ending (aligned) exactly at raw_len; the bytes that align
 *     a frame are zero; PAD frames never appear (the drain copies frames,
 *     not the ring's padding);
 *   - n_frames frames; producer ids below RING_MAX_PRODUCERS;
 *   - LSNs strictly increasing (a FRAME_TABLE frame, which has no ring
 *     position, takes the LSN just below the frame it precedes);
 *   - the first frame's LSN is first_lsn, the last one's last_lsn, and
 *     next_lsn > last_lsn (J1);
 *   - flags only JOURNAL_ZSTD, reserved 0; a zstd body is exactly one zstd
 *     frame that states its content size, equal to raw_len; a plain body
 *     has body_len == raw_len.
 * journal_encode stores the body plain when zstd does not make it smaller. */

/* ------------------------------------------------------------ the store */

typedef struct store store;

/* Records one apply transaction may hold, and the lock table sized for it
 * (a random put into a large tree locks a leaf and a few internal pages). */
#define STORE_TXN_RECORDS 4000u
#define STORE_MAX_LOCKS 200000u
#define STORE_MAX_TXNS 200000u /* transaction table (see store.c: multiversion) */

enum {
    STORE_CREATE = 1,  /* create db/ and checkpoints/ if missing */
    STORE_BUILDING = 2 /* a new data directory being built (restore, import): see store_built */
};

/* The marker of a data directory being built: made by store_open with
 * STORE_BUILDING, removed by store_built once everything is durable.  A
 * directory that still has it (the builder was killed) is refused by
 * store_open without STORE_BUILDING: it holds part of a state. */
#define STORE_BUILDING_FILE "BUILDING"

/* Opens the data directory dir (which must exist): takes DIR/LOCK
 * (RK_EBUSY naming the pid that holds it), opens the environment with
 * recovery (DB_RECOVER), and the journal and meta databases.  cache_mb is
 * the BDB cache size.  On failure writes a one-line reason to err. */
int store_open(const char *dir, int flags, uint32_t cache_mb, store **out, char *err, size_t err_size);
/* (cache_mb 0: Berkeley DB's default cache.  Without STORE_CREATE, db/ and
 * checkpoints/ must exist.  Errors: ENOENT / ENOTDIR for the directory,
 * RK_EBUSY, errno values, BDB codes.  Opening includes recovery, so it
 * takes as long as the log since the last checkpoint; store_close()
 * checkpoints.) */

/* Closes the databases and the environment and releases the lock.  NULL is
 * a no-op. */
void store_close(store *s);

DB_ENV *store_env(store *s);
DB *store_meta(store *s);
const char *store_dir(const store *s);
/* The size of DIR/db/state.db, the state tables' file, in bytes
 * (st_size: Berkeley DB never shrinks it).  0 or errno. */
int store_state_bytes(const store *s, uint64_t *bytes);

/* Appends entry (already encoded) under key seq (J2) in its own
 * transaction, committed with sync (J3).  Any failure is returned as is (BDB codes or errno):
 * the caller treats it as fatal. */
int store_journal_append(store *s, uint64_t seq, const uint8_t *entry, size_t len);

/* Appends n entries (already encoded) under keys first_seq, first_seq + 1,
 * ... in one transaction committed with sync (one fsync for them all: a
 * standby storing a burst of entries).  All or none are stored; errors as
 * store_journal_append, RK_EINVAL when an entry's header does not carry
 * its sequence. */
int store_journal_append_many(store *s, uint64_t first_seq, const uint8_t *const *entries, const size_t *lens,
                              size_t n);

/* store_journal_append in two steps, for a primary that publishes an
 * entry to its standbys while its own fsync runs (issue 13.6):
 * store_journal_write commits entry seq with its log records handed to
 * the kernel (DB_TXN_WRITE_NOSYNC: it survives the process being killed,
 * not a power cut), and readers see it; store_journal_sync then makes
 * every entry written so far durable (one log flush, fsync).  Nothing is
 * durable -- or acknowledged -- before store_journal_sync returned 0.
 * Errors as store_journal_append; a failed sync puts the store in its
 * failed state too. */
int store_journal_write(store *s, uint64_t seq, const uint8_t *entry, size_t len);
int store_journal_sync(store *s);

/* The header of the last journal entry in *h (decoded and verified);
 * RK_ENOTFOUND when the journal is empty. */
int store_journal_last(store *s, struct journal_header *h);

/* Reads and decodes entry seq; RK_ENOTFOUND if there is none. */
int store_journal_get(store *s, uint64_t seq, journal_entry *e, char *why, size_t why_size);

/* The sequence of the first journal entry in *seq (a trimmed journal no
 * longer starts at 1); RK_ENOTFOUND when the journal is empty. */
int store_journal_first(store *s, uint64_t *seq);

/* Reads entry seq as stored (encoded, not decoded or verified) into a
 * malloc'd block *entry of *len bytes, which the caller frees: for copying
 * entries between journals byte for byte (restore, replication).
 * RK_ENOTFOUND if there is none. */
int store_journal_get_raw(store *s, uint64_t seq, uint8_t **entry, size_t *len);

/* Removes journal entries with sequence < seq (retention, issue 4): from
 * the front only, so the rest stays one run (J2).  Deletes in short
 * transactions (at most 1000 entries or about 2 ms each, committed without
 * a sync of their own), so that an append never waits long for one.  The
 * journal's last entry is never removed, and before anything is, the
 * XXH64 of the entry just before seq is recorded (in the log before the
 * deletions, so durable before any of them is) for
 * store_journal_trimmed_tail: a primary publishes an entry before its
 * fsync, so a peer's last entry of the same seq and epoch may still be
 * another one, and it must be comparable (issue 13.6). */
int store_journal_trim(store *s, uint64_t seq);

/* Removes every entry, the last one too (its XXH64 recorded as
 * store_journal_trim records the one before its seq): for a journal that
 * ends below the state it holds (a standby promoted after a bootstrap
 * before it fetched up to the checkpoint), which then goes on after the
 * checkpoint as an empty one does (node/primary.c).  Short transactions
 * without a sync of their own: the next synced commit makes them durable.
 * 0 or a BDB error. */
int store_journal_clear(store *s);

/* The last entry trimmed, as store_journal_trim recorded it: its seq and
 * XXH64 trailer (wire_entry_xxh).  0, or RK_ENOTFOUND when none was. */
int store_journal_trimmed_tail(store *s, uint64_t *seq, uint64_t *xxh);

/* Checkpoints the Berkeley DB environment and removes the log files that
 * recovery no longer needs (DB_ENV->log_archive; the DB_LOG_AUTO_REMOVE
 * flag alone was seen to leave them in place).  *n_removed: files removed.
 * Any thread. */
int store_log_trim(store *s, uint32_t *n_removed);

/* Checkpoints the Berkeley DB environment if at least kbytes of log were
 * written since its last checkpoint (DB_ENV->txn_checkpoint's own test;
 * cheap when not): recovery after a crash replays only the log since the
 * last checkpoint, so this bounds the time a restart takes.  0 or the
 * error (a failed write or fsync: the caller treats it as fatal). */
int store_log_checkpoint(store *s, uint32_t kbytes);

/* Whether s was opened with STORE_BUILDING and store_built has not yet
 * succeeded: nothing else opens the directory, and a builder killed now
 * leaves it refused (the BUILDING marker), never recovered.  The
 * checkpoint load writes state.db outside the log on that ground
 * (import.c). */
int store_building(const store *s);

/* For a store opened with STORE_BUILDING, whose transactions commit
 * without sync (and whose checkpoint load wrote state.db unlogged):
 * flushes the log, checkpoints the environment (every page on disk),
 * fsyncs db/ (files the build created, which no log record may recreate),
 * then removes the BUILDING marker.  0 or an error (the marker stays). */
int store_built(store *s);

/* The identity of the ring a data directory drains, in meta.db under
 * STORE_RING_KEY: written by the node when it creates the ring, checked
 * when it takes a ring over. */
#define STORE_RING_KEY "ring"
struct store_ring_record {
    uint64_t created_ns; /* the ring header's created_ns */
    uint64_t capacity;
    char name[RK_NAME_MAX + 1];
};

/* The data directory's ring record in *rec; RK_ENOTFOUND when no node
 * ever made a ring for it (a standby's, a restored one). */
int store_ring_record(store *s, struct store_ring_record *rec);
/* Writes it (synced): a rebuild of the state keeps the directory's ring. */
int store_ring_record_put(store *s, const struct store_ring_record *rec);

/* The same identity kept beside db/ in the data directory, in
 * STORE_RING_MADE_FILE (JSON: "name", "created_ns", "capacity"), which
 * what replaces db/ (a standby's rebuild to its fork point, a bootstrap)
 * leaves in place: a promotion recognises by it the ring an earlier run
 * of this directory made, and fences and replaces it, after meta.db lost
 * the record.  store_ring_made_write writes it durably (a temporary file,
 * fsynced, renamed, the directory fsynced): 0 or an errno value.
 * store_ring_made_read: 0, RK_ENOTFOUND when there is none, RK_ECORRUPT
 * with a reason in err when it cannot be understood, or an errno value. */
#define STORE_RING_MADE_FILE "ring.json"
int store_ring_made_write(store *s, const struct store_ring_record *rec);
int store_ring_made_read(store *s, struct store_ring_record *rec, char *err, size_t err_size);

/* The epoch a primary on this data directory stepped down for (a node of
 * that epoch is the primary elsewhere), kept beside db/ in
 * STORE_FENCED_FILE (JSON: "fenced_by") so that what replaces db/ (a
 * rebuild to the fork point, a bootstrap) leaves it: such a directory
 * never begins an epoch by itself, only by a promotion, which removes it.
 * store_fence_write writes it durably as store_ring_made_write does
 * (epoch 0: removes it, the directory fsynced): 0 or an errno value.
 * store_fence_read: 0 with *epoch (0 when there is none), RK_ECORRUPT with
 * a reason in err when it cannot be understood, or an errno value. */
#define STORE_FENCED_FILE "fenced.json"
/* meta.db's key where a node before 2026-12-08 kept that epoch: a store
 * opened with it (not 0) and no higher one in STORE_FENCED_FILE writes it
 * there (store_open) */
#define STORE_OLD_FENCED_KEY "fenced_by"
int store_fence_write(store *s, uint64_t epoch);
int store_fence_read(store *s, uint64_t *epoch, char *err, size_t err_size);

/* For a reader holding the data directory's lock with no node running
 * (rk_state_open): RK_EUNDRAINED, with the figures in err, when the
 * directory's ring holds records past the journal's next_lsn (the node
 * stopped or died while engines wrote); 0 when it holds none, or when
 * there is no ring or only a ring of that name this directory did not
 * make (the node would refuse it).  Other errors (the ring cannot be
 * inspected, the journal read) are returned with a reason in err. */
int store_ring_undrained(store *s, char *err, size_t err_size);

/* ------------------------------------------------------------ the epoch history
 * (persist/history.h has the rules H1-H3 and the pure functions; history.c
 * the code.)  Kept in meta.db, in the journal's environment:
 *   STORE_HISTORY_KEY  the list (history_encode's bytes);
 *   STORE_EPOCH_KEY    the highest epoch the directory has seen (uint64,
 *                      host order; a standby raises it as it adopts one);
 *   STORE_BEGAN_KEY    the epoch this directory last began itself (uint64).
 * Every change commits them with sync before it returns, so nothing is
 * written in an epoch the disk does not know.  A directory made before
 * histories existed has no STORE_HISTORY_KEY: its history is the one its
 * journal implies, an element (epoch, seq, first_lsn) at the first entry
 * of each epoch its entries carry, the oldest entry held starting the
 * first (H3: older sequences belong to that epoch); it is stored by the
 * first change. */
#define STORE_HISTORY_KEY "history"
#define STORE_EPOCH_KEY "epoch"
#define STORE_BEGAN_KEY "epoch_began"

/* A copy of the history in a malloc'd array *h of *n elements (NULL when
 * empty), which the caller frees.  0 or ENOMEM. */
int store_history(store *s, struct epoch_start **h, uint32_t *n);

/* The number of elements of the history. */
uint32_t store_history_length(store *s);

/* The history's epoch for journal sequence seq (H3; 0: no history). */
uint64_t store_epoch_of(store *s, uint64_t seq);

/* The epoch this directory last began itself (0: never). */
uint64_t store_epoch_began(store *s);

/* The highest epoch the directory has seen (STORE_EPOCH_KEY, or its
 * history's newest when higher; 0: none). */
uint64_t store_epoch_seen(store *s);

/* Begins a new epoch: appends (E, first_seq, first_lsn), E higher than
 * every epoch the history holds and every one the directory has seen, and
 * at least epoch_min; commits it with sync, then *epoch = E.  first_seq is
 * the journal's last seq + 1 (or where it goes on), first_lsn the next
 * LSN (H2: neither below the last element's).  RK_EINVAL (H1, H2 broken,
 * or HISTORY_MAX elements already), the store's sticky error, BDB codes:
 * nothing is written in the new epoch then. */
int store_epoch_begin(store *s, uint64_t epoch_min, uint64_t first_seq, uint64_t first_lsn, uint64_t *epoch);

/* The epoch a node writing as primary on this directory writes in: the
 * newest of its history when this directory began it itself and has seen
 * none higher (a restart goes on in it); otherwise a new one begun at
 * (next_seq, next_lsn) as store_epoch_begin does -- for a directory with
 * no history yet, at the epoch STORE_EPOCH_KEY holds (1 when none). */
int store_epoch_resume(store *s, uint64_t next_seq, uint64_t next_lsn, uint64_t *epoch);

/* Replaces the history with list[0..n) (a standby taking its primary's,
 * restore the source's cut at its point), committed with sync.  It must
 * give every entry the journal holds the epoch the current one gives it
 * (J4); RK_EINVAL with a reason in why otherwise, RK_ECORRUPT when list
 * breaks H1/H2.  STORE_BEGAN_KEY is kept. */
int store_history_adopt(store *s, const struct epoch_start *list, uint32_t n, char *why, size_t why_size);

/* Translates a Berkeley DB or errno code into a message.
 * RK_E* codes too (rk_strerror). */
const char *store_strerror(int err);

/* Copies into buf (always NUL-terminated, "" if none) the last message the
 * store recorded: Berkeley DB's own words for its last error (set_errcall),
 * or the reason store_journal_last() found an entry corrupt.  Any thread. */
void store_last_error(store *s, char *buf, size_t size);

/* After store_journal_append() failed (other than DB_KEYEXIST or
 * RK_EINVAL), the store is in a sticky error state: every later append
 * returns that first error without touching the disk, so that nothing is
 * acknowledged after a failed fsync or write.  Returns that error, or 0. */
int store_failed(store *s);

/* ------------------------------------------------------------ the I/O seam
 * Every write, fsync, open, rename, unlink, ftruncate and mkdir of the
 * store, BDB's own included (db_env_set_func_*), goes through these, so
 * that a test can make one fail.  RK_FAULT in the environment arms a fault
 * at start:
 *   RK_FAULT=fsync:EIO:3     the 3rd fsync from now on fails with EIO, and every one after it
 *   RK_FAULT=write:ENOSPC:10 the 10th write or pwrite fails with ENOSPC, and every one after it
 *   RK_FAULT=fsync:EIO:once@2:*state.db:rk-checkpoint
 *                            only the 2nd fsync of a file matching the glob
 *                            *state.db made by a thread named rk-checkpoint
 *                            fails; the ones before and after it succeed (as
 *                            Linux reports a writeback error once)
 * (ops: fsync, write, open, rename, unlink, ftruncate, mkdir; errors: EIO,
 * ENOSPC, EROFS, ENOMEM; the globs are fnmatch patterns, '*' matching '/'
 * too: PATH_GLOB against the file's path (an fd's /proc/self/fd link, either
 * name of a rename), THREAD_GLOB against the calling thread's name).  The
 * sys_* functions return as POSIX does (-1 and errno); BDB gets adapters
 * with its own conventions (see sys.c).  sys_install() is idempotent (once
 * per process); an RK_FAULT it cannot parse is reported on stderr and arms
 * nothing.  sys_fault_arm() arms one op (restarting its count; "" or NULL
 * disarms every op) and returns 0, RK_EINVAL for a spec it cannot parse,
 * or ENOMEM.  A process that forked after sys_install() does not read
 * RK_FAULT again: it calls sys_fault_arm().  RK_CRASHSIM arms the
 * power-loss simulation (crashsim.h). */
void sys_install(void);
int sys_fault_arm(const char *spec);
/* The errno of the first fsync, write or pwrite through the seam that
 * failed in this process (injected or not), 0 while none did.  It never
 * goes back to 0: a failed fsync may have dropped dirty pages that a later
 * fsync no longer reports (fsyncgate), so nothing written after it is
 * acknowledged (store_journal_append_many). */
int sys_io_failed(void);
int sys_fsync(int fd);

/* How long the fsyncs through the seam took, all files and threads of the
 * process, failed ones included: counts per bucket (an fsync of d
 * microseconds counts in the first bucket whose bound is >= d, or in the
 * last, unbounded one) and the sum.  For the node's metrics (the
 * Prometheus histogram ringkeep_fsync_duration_seconds). */
#define SYS_FSYNC_BUCKETS 14 /* bounded buckets; n[SYS_FSYNC_BUCKETS] counts the rest */
extern const uint32_t sys_fsync_bucket_us[SYS_FSYNC_BUCKETS];
struct sys_fsync_stats {
    uint64_t n[SYS_FSYNC_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t sum_ns;
};
/* A copy of the counts; any thread.  Each count is read on its own: the
 * copy may hold an fsync in its bucket and not yet in sum_ns. */
void sys_fsync_stats(struct sys_fsync_stats *out);
/* fsyncs directory path (through sys_open and sys_fsync), so that the
 * entries created or renamed in it are durable: 0 or an errno value. */
int sys_fsync_dir(const char *path);
/* fsyncs the file at path (opened read-only for it) through the seam. */
int sys_fsync_path(const char *path);
ssize_t sys_write(int fd, const void *buf, size_t n);
/* Starts the writeback of [off, off + len) of fd (sync_file_range), and
 * with wait also waits for it: pacing, so that a large file's fsync finds
 * little left to write; it makes nothing durable (only an fsync does).  A
 * failure counts as a failed write (sys_io_failed).  0 or -1 and errno. */
int sys_writeback(int fd, off_t off, off_t len, int wait);
/* Whether this thread is inside a Berkeley DB checkpoint of the
 * environment (env_checkpoint in store.c sets it around txn_checkpoint).
 * Then BDB's fsyncs of a file in this thread are paced: its writeback goes
 * in steps (sys_writeback, waited for), then the fsync; and BDB's yields
 * are short (bdb_yield in store.c). */
void sys_in_checkpoint(int on);
int sys_checkpointing(void);
ssize_t sys_pwrite(int fd, const void *buf, size_t n, off_t off);
int sys_open(const char *path, int flags, ...);
int sys_rename(const char *from, const char *to);
int sys_unlink(const char *path);
int sys_ftruncate(int fd, off_t len);
int sys_mkdir(const char *path, mode_t mode);

/* For test hooks that hold a thread at an entry a file names
 * (RK_TEST_APPLY_GATE: apply, node/; RK_TEST_JOURNAL_GATE: a standby's
 * journal, replicator/standby.c), so that tests put it where they want it
 * instead of slowing it and hoping: the number FILE holds, UINT64_MAX
 * (every entry) when FILE is empty, 0 (none) when there is no FILE (tests
 * replace it with a rename).  Not through the I/O seam: not the node's
 * data. */
uint64_t sys_test_gate(const char *path);

#endif
