/* ringkeep.h -- the public API of libringkeep.
 *
 * An engine attaches to a shared-memory ring that a ringkeep node owns, as a
 * named producer, and writes records into it: PUT(table, key, value),
 * DEL(table, key) and MARK(height).  Writing a record makes no system call
 * unless the ring is full.  Every record gets an LSN: unique and strictly
 * increasing for the life of the data.  An LSN is a byte position in the
 * record stream (as in PostgreSQL's WAL), so LSNs are not dense.
 *
 * Records of one producer between two MARKs form an atomic group: the node
 * applies all of it or none of it.
 *
 * Return values: 0 is success; negative values are ringkeep's own RK_E*
 * codes; positive values are errno values passed through.  rk_strerror()
 * describes both.  No function reports errors through the global errno.
 *
 * Threads: an rk_ring handle belongs to one thread at a time.  Several
 * threads or processes that write at once attach one handle each, under
 * different producer names.
 */
#ifndef RINGKEEP_H
#define RINGKEEP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RK_VERSION_MAJOR 0
#define RK_VERSION_MINOR 1
#define RK_VERSION_PATCH 0

/* The library's version, as "MAJOR.MINOR.PATCH"; any pointer may be NULL. */
const char *rk_version(int *major, int *minor, int *patch);

/* ringkeep's own error codes (errno values are positive, these negative). */
enum {
    RK_EINVAL = -30800, /* an argument is out of range or NULL */
    RK_ETOOBIG,         /* record larger than the ring accepts */
    RK_EFULL,           /* ring full and the producer chose RK_FULL_FAIL */
    RK_ETIMEDOUT,       /* the wait ran out of time */
    RK_ENOTFOUND,       /* no such key, table or producer */
    RK_EBADRING,        /* the segment is not a usable ringkeep ring */
    RK_EVERSION,        /* the segment has a format this library cannot read */
    RK_ECORRUPT,        /* a checksum or structural check failed */
    RK_ETABLES,         /* the ring's table directory is full */
    RK_EPRODUCERS,      /* the ring's producer registry is full */
    RK_EBUSY,           /* in use by a live process: producer name, ring, data directory */
    RK_EEXIST,          /* the ring already exists */
    RK_ESTALE,          /* a message from an epoch lower than this node's (refused) */
    RK_EUNDRAINED,      /* rk_state_open with no node: the ring holds records not yet journaled */
    RK_EFENCED,         /* the ring's node stepped down: another node is the primary (a higher
                           epoch); nothing more is written or acknowledged on this ring */
    RK_ELAST
};

/* Returns a static, human-readable description of err (RK_E* or errno). */
const char *rk_strerror(int err);

/* ---------------------------------------------------------------- rings */

typedef struct rk_ring rk_ring;

enum { RK_FULL_WAIT = 0, RK_FULL_FAIL = 1 };

typedef struct rk_ring_opts {
    const char *producer; /* this producer's name (at most RK_NAME_MAX bytes);
                             NULL = "default" */
    int full_policy;      /* RK_FULL_WAIT (default) or RK_FULL_FAIL */
    int full_timeout_ms;  /* for RK_FULL_WAIT: how long one call may wait for
                             space, then RK_ETIMEDOUT; <= 0 = no limit */
    char *errmsg;         /* optional: on failure, rk_ring_attach writes a
                             one-line reason here (what is wrong, how to fix) */
    size_t errmsg_size;   /* size of errmsg in bytes */
} rk_ring_opts;

#define RK_NAME_MAX 47          /* longest ring, producer or table name */
#define RK_KEY_MAX (64u * 1024) /* longest key in bytes */

typedef enum { RK_WRITTEN, RK_DURABLE, RK_REPLICATED } rk_level;

/* A zero-copy claim: fill key[0..klen) and val[0..vlen), then rk_commit().
 * The fields after val are private. */
typedef struct rk_claim {
    void *key;
    void *val;
    void *frame_;
    uint32_t len_;
    uint32_t vlen_;
} rk_claim;

/* Attaches to the ring "ring_name" (the segment /dev/shm/ringkeep.<name>,
 * which the node creates) as the producer opts->producer.  A producer name
 * is attached by one live handle at a time; attaching again under the same
 * name (after a crash, say) starts a new session, and the open group of the
 * earlier session is discarded by the node.  On success *out is a handle the
 * caller owns and releases with rk_ring_detach(). */
int rk_ring_attach(const char *ring_name, const rk_ring_opts *opts, rk_ring **out);

/* Detaches and frees r.  A group left open (records after the last MARK) is
 * discarded by the node: the detach then writes one record saying so (an
 * ATTACH flagged as the session's end), waiting at most a second for room;
 * with no room (the node not draining) the group is discarded when the
 * name attaches again.  NULL is a no-op. */
void rk_ring_detach(rk_ring *r);

/* Registers the table "name" in the ring's table directory, or looks it up,
 * and stores its id in *table_id.  Ids are shared by all producers. */
int rk_table(rk_ring *r, const char *name, uint16_t *table_id);

/* Writes PUT(table, key, value).  table is an id rk_table() returned on
 * this ring (to any producer); any other id is refused with RK_EINVAL and
 * nothing is written.  key may be NULL when klen is 0, val when vlen is 0.
 * On success *lsn_out (if not NULL) is the record's LSN.  RK_EFENCED: the
 * ring's node stepped down (a failover made another node the primary);
 * nothing is written here any more: restore from the new primary
 * (rk_state_open on its data directory) and attach to its ring. */
int rk_put(rk_ring *r, uint16_t table, const void *key, uint32_t klen, const void *val, uint32_t vlen,
           uint64_t *lsn_out);

/* Writes DEL(table, key); table as for rk_put(). */
int rk_del(rk_ring *r, uint16_t table, const void *key, uint32_t klen, uint64_t *lsn_out);

enum { RK_OP_PUT = 1, RK_OP_DEL = 2 };

/* One record of rk_write(). */
typedef struct rk_record {
    const void *key;
    const void *val; /* may be NULL when vlen is 0; a DEL has none */
    uint32_t klen;
    uint32_t vlen;  /* 0 for RK_OP_DEL */
    uint16_t table; /* as for rk_put() */
    uint16_t op;    /* RK_OP_PUT or RK_OP_DEL */
} rk_record;

/* Writes recs[0..n) in order, as that many rk_put()/rk_del() calls would,
 * each its own record with its own LSN; it claims ring room for many
 * records at once (one atomic operation per claim of up to 16 KiB, not one
 * per record), so that a batch costs less per record.  Every record is
 * checked first: an unregistered table, a bad op or a NULL pointer is
 * RK_EINVAL, a record too large RK_ETOOBIG, and then nothing is written.
 * *n_written (if not NULL) is the number of records written, all n on
 * success; fewer only when the ring is full (RK_EFULL, RK_ETIMEDOUT, as for
 * rk_put) or fenced (RK_EFENCED).  *lsn_out (if not NULL) is the LSN of
 * the last record written.  While a claim is being filled the node waits
 * at it, as for rk_claim_record(); a producer that dies in the middle is
 * unblocked by the node like one that dies holding a claim. */
int rk_write(rk_ring *r, const rk_record *recs, size_t n, size_t *n_written, uint64_t *lsn_out);

/* Writes MARK(height): ends this producer's atomic group.  Heights are the
 * engine's own numbering (block, tick); the node records the last one. */
int rk_mark(rk_ring *r, uint64_t height, uint64_t *lsn_out);

/* Waits until the record at lsn has reached level, or timeout_ms passes
 * (< 0: no limit).  Returns 0, RK_ETIMEDOUT, or RK_EFENCED when the node
 * stepped down before the record reached level (it never will here: see
 * rk_put).  Sleeps in the kernel (futex); it does not spin. */
int rk_wait(rk_ring *r, uint64_t lsn, rk_level level, int timeout_ms);

/* Zero-copy write: claims room for a PUT with a klen-byte key and a
 * vlen-byte value and points c->key and c->val into the ring.  The caller
 * fills both and calls rk_commit() before any other call on r.  Until then
 * the node waits at this record; a producer that dies holding a claim is
 * unblocked by the node after the ring's unblock timeout.  table as for
 * rk_put(): an id not registered is RK_EINVAL, and nothing is claimed. */
int rk_claim_record(rk_ring *r, uint16_t table, uint32_t klen, uint32_t vlen, rk_claim *c);

/* Publishes a record claimed with rk_claim_record(). */
int rk_commit(rk_ring *r, rk_claim *c, uint64_t *lsn_out);

/* The largest klen + vlen a record in r may have. */
uint32_t rk_ring_max_record(const rk_ring *r);

/* ---------------------------------------------------------------- state
 * Restoring an engine: a state handle is one consistent view of the node's
 * state tables at a group boundary, including everything that was durable
 * when it was opened (the node finishes applying first).  It is a private
 * copy: reading it never blocks the node, and an engine that dies while
 * reading leaves nothing behind that the node needs.
 *
 * The intended restart: open the state, rebuild in-memory structures from
 * it, read the last height, re-attach to the ring and carry on from
 * height + 1. */

typedef struct rk_state rk_state;

/* Opens the state of source: a node's data directory, whether a node runs
 * on it or not, or a checkpoint file (checkpoints/<seq>.rkcp: a backtest
 * resuming from its last checkpoint without a node), which is verified
 * whole first (RK_ECORRUPT, RK_EVERSION if it fails).  With no node on a
 * data directory whose ring still holds records the journal does not
 * (the node stopped or died while engines wrote), it refuses with
 * RK_EUNDRAINED: that state would be older than what the engines wrote,
 * and an engine resuming from it would write those groups again.  Start
 * the node (it journals them) and open again.  On success *out is a
 * handle the caller owns and releases with rk_state_close(). */
int rk_state_open(const char *source, rk_state **out);

/* Releases s.  NULL is a no-op. */
void rk_state_close(rk_state *s);

/* The LSN of the last record applied in this view (0 if none). */
uint64_t rk_state_lsn(const rk_state *s);

/* The height of the last MARK applied for producer; RK_ENOTFOUND if that
 * producer has no group applied. */
int rk_state_height(const rk_state *s, const char *producer, uint64_t *height);

/* Looks key up in table.  On success *val is a malloc'd copy of the value
 * (the caller frees it; NULL when vlen is 0) and *vlen its length;
 * RK_ENOTFOUND if there is no such key or table.  A state from a live
 * node is read in place from files verified at rk_state_open: RK_ECORRUPT
 * if their bytes were changed since (a stray write to a link of them). */
int rk_state_get(rk_state *s, const char *table, const void *key, uint32_t klen, void **val,
                 uint32_t *vlen);

typedef int (*rk_scan_fn)(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen);

/* Calls fn for every key of table that starts with prefix (plen 0: all),
 * in key order (bytewise).  fn returning non-zero stops the scan, and that
 * value is returned.  The pointers passed to fn are valid during the call
 * only.  A table that does not exist scans as empty.  RK_ECORRUPT (after
 * the entries before it) as rk_state_get says. */
int rk_state_scan(rk_state *s, const char *table, const void *prefix, uint32_t plen, rk_scan_fn fn,
                  void *arg);

#ifdef __cplusplus
}
#endif
#endif
