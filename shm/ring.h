/* ring.h -- the node's side of the shared-memory ring (private to ringkeep).
 *
 * The owner creates the segment, consumes frames in order, releases space,
 * and advances the durable and replicated cursors that engines wait on.
 * There is one owner (consumer) per ring at a time.
 */
#ifndef RK_RING_H
#define RK_RING_H

#include <stddef.h>
#include <stdint.h>

#include "shm/ring_format.h"

/* ------------------------------------------------------------ frame codec */

/* One decoded frame.  Pointers point into the buffer that was decoded. */
typedef struct ring_frame {
    uint8_t type; /* enum frame_type */
    uint8_t flags;
    uint16_t table;
    uint16_t producer;
    uint64_t lsn;
    const uint8_t *key;
    uint32_t klen;
    const uint8_t *val;
    uint32_t vlen;
    const uint8_t *raw; /* the whole frame as stored (commit word first) */
    uint32_t raw_len;   /* its exact length (not aligned) */
} ring_frame;

/* Decodes and verifies the data frame at buf (avail bytes readable).
 * Returns 0, or RK_ECORRUPT with a reason in why (if not NULL) when any
 * length, type, table id (>= RING_MAX_TABLES) or checksum is wrong, so
 * that every reader of frames (ring, journal, wire, apply) may index by
 * f->table.  Never reads outside buf[0..avail). */
int frame_decode(const uint8_t *buf, size_t avail, ring_frame *f, char *why, size_t why_size);

/* Encodes a data frame into buf (frame_align(32 + klen + vlen) bytes, which
 * the caller provides), committed, with its checksum.  Returns its length. */
uint32_t frame_encode(uint8_t *buf, uint8_t type, uint16_t table, uint16_t producer, uint64_t lsn,
                      const void *key, uint32_t klen, const void *val, uint32_t vlen);

/* ------------------------------------------------------------ the owner */

typedef struct ring_owner ring_owner;

typedef struct ring_create_opts {
    uint64_t capacity;           /* data bytes: a power of two, at least
                                    RING_MIN_CAPACITY */
    uint64_t start_lsn;          /* first position (LSNs continue from it);
                                    0 = 8 */
    uint64_t epoch;              /* the owner's epoch */
    uint32_t unblock_timeout_ms; /* 0 = RING_DEFAULT_UNBLOCK_MS */
} ring_create_opts;

/* Creates /dev/shm/ringkeep.<name> (O_CREAT|O_EXCL, mode 0600 whatever the
 * umask) and becomes its owner.  RK_EEXIST if it exists.  On failure a
 * one-line reason is written to err.  *out is released with ring_close(). */
int ring_create(const char *name, const ring_create_opts *opts, ring_owner **out, char *err, size_t err_size);

/* Takes over a ring left by an earlier owner (a node that stopped or
 * crashed), after checking it as rk_ring_attach() does and checking that
 * the earlier owner is gone.  Consumption resumes at the ring's head. */
int ring_reopen(const char *name, uint64_t epoch, ring_owner **out, char *err, size_t err_size);

/* Unmaps; with unlink_segment, removes the segment too.  NULL is a no-op. */
void ring_close(ring_owner *o, int unlink_segment);

/* Removes /dev/shm/ringkeep.<name>. */
int ring_unlink(const char *name);

/* Returns the next committed frame in *f (valid until ring_release()):
 *   1  a frame (PUT, DEL, MARK, ATTACH, or ABORT for a dead producer);
 *   0  nothing ready yet: empty, or the next frame is still being written,
 *      or a whole capacity has been read since the last ring_release()
 *      (release, then read on);
 *   RK_ECORRUPT  the next frame is corrupt: the ring stops there for good
 *                (every later call returns RK_ECORRUPT); the reason is in
 *                ring_error().  Nothing before it is lost.
 * PAD frames are skipped.  A claim stuck longer than the unblock timeout
 * whose producer's process is gone is turned into padding in place (so a
 * consumer that reads it again after a restart skips it), counted, and
 * reported as an ABORT frame. */
int ring_next(ring_owner *o, ring_frame *f);

/* Finds producers whose process died outside a claim (or whose dead claim
 * was padded by a consumer killed before its ABORT was released) with a
 * group perhaps open, and queues an ABORT frame for each (lsn: just past
 * the producer's last frame; ring_next() delivers them next).  Call it when
 * the ring is empty.  Returns how many it queued. */
int ring_sweep_dead(ring_owner *o);

/* Sleeps until a frame may be ready or timeout_ms passes (0 = just check).
 * Returns 1 when something may be ready, 0 on timeout, and 0 at once when a
 * whole capacity has been read since the last ring_release(). */
int ring_wait_ready(ring_owner *o, int timeout_ms);

/* ring_wait_ready for a consumer that has nothing in hand (every group it
 * read is closed), where the next frame may be far off: it spins before it
 * sleeps only while recent idle waits show that a spin pays.  A producer
 * that writes a batch and then waits for it to be durable or replicated
 * leaves the ring idle for a round trip at least; a 50 us spin after every
 * batch was then CPU spent for nothing (issue 13). */
int ring_wait_idle(ring_owner *o, int timeout_ms);

/* Gives back the space of every frame returned so far (zeroes it and moves
 * head), and wakes producers waiting for space.  The producers of the ABORT
 * frames returned so far are marked dead here (nobody reports them again):
 * call it only once those frames are durable. */
void ring_release(ring_owner *o);

/* ring_release() of what lies below upto only (everything read, if upto is
 * at or past it); what was read past upto stays for a later release.  For
 * a batch that returned no frame: padding the consumer read past the
 * journal's end is released with the next entry (node/primary.c, drain). */
void ring_release_to(ring_owner *o, uint64_t upto);

/* Moves the durable / replicated cursor to lsn (never backwards) and wakes
 * engines waiting in rk_wait(); not once the ring is fenced (R9). */
void ring_set_durable(ring_owner *o, uint64_t lsn);
void ring_set_replicated(ring_owner *o, uint64_t lsn);

/* Automatic failover (node/ha.c): from the first call on, the durable
 * and replicated cursors move only while ring_boottime_ns() is below the
 * latest deadline_ns given (a deadline never moves back); a move asked
 * later is held and made by the next call that gives a deadline still
 * ahead.  The clock is read under the cursors' lock at each move, so a
 * process paused past its deadline acknowledges nothing when it wakes. */
void ring_set_ack_deadline(ring_owner *o, uint64_t deadline_ns);

/* CLOCK_BOOTTIME in nanoseconds (it counts while a machine is suspended). */
uint64_t ring_boottime_ns(void);

/* The owner steps down (R9): from the return on, no cursor moves,
 * producers get RK_EFENCED and every waiter that has not reached its
 * level is woken to return RK_EFENCED.  The flag stays in the segment: a
 * node that takes the ring over sees it (ring_fenced) and may clear it only
 * when it runs in a higher epoch than the one that stepped down
 * (ring_unfence). */
void ring_fence(ring_owner *o);
int ring_fenced(const ring_owner *o);
void ring_unfence(ring_owner *o);

/* The position just past the last frame ring_next() returned (or skipped):
 * every frame below it has been read. */
uint64_t ring_read_pos(const ring_owner *o);

/* The reason for the last error of o. */
const char *ring_error(const ring_owner *o);

/* The mapped header, for the node's status and tests. */
struct ring_header *ring_header_of(ring_owner *o);
uint8_t *ring_data_of(ring_owner *o);

/* ------------------------------------------------------------ inspection */

struct ring_producer_info {
    char name[RK_NAME_MAX + 1];
    uint16_t id;
    uint32_t state, pid, alive;
    uint64_t session, last_lsn, n_records, attach_ns;
};

typedef struct ring_info {
    char path[128];
    uint32_t format;
    uint64_t capacity, start_lsn, epoch, created_ns;
    uint32_t owner_pid, owner_alive, owner_uid, mode;
    uint32_t unblock_timeout_ms, max_frame;
    uint64_t tail, head, durable_lsn, replicated_lsn;
    uint64_t n_consumed, n_unblocked, n_unblocked_bytes, n_corrupt;
    uint32_t n_tables, n_producers;
    struct {
        char name[RK_NAME_MAX + 1];
        uint16_t id;
    } tables[RING_MAX_TABLES];
    struct ring_producer_info producers[RING_MAX_PRODUCERS];
} ring_info;

/* Reads the header of ring `name` without changing anything, after the same
 * checks as rk_ring_attach(). */
int ring_inspect(const char *name, ring_info *info, char *err, size_t err_size);

/* Where the committed PAD frames from `from` on end in ring `name` (from
 * itself when there are none, or on any error): what lies between is no
 * record.  from is a frame boundary at or past head, such as the
 * journal's next_lsn (a node releases padding it read past the journal's
 * end only with its next entry: ring_release_to). */
uint64_t ring_padding_end(const char *name, uint64_t from);

/* ------------------------------------------------------------ internals
 * shared by ring.c and consumer.c */

/* Whether the committed word `word` at data[idx] (a ring's data area of
 * `capacity` bytes) is a well-formed PAD frame: its length 8-aligned, at
 * least FRAME_PAD_MIN and inside the data area, its type PAD, and the rest
 * of its header zero (a PAD is only its 8-byte header over zeroed space: a
 * real frame's type byte flipped to PAD has non-zero bytes there). */
int ring_pad_ok(const uint8_t *data, uint64_t capacity, uint64_t idx, uint32_t word);

/* Maps and checks an existing segment (magic, format, size, owner uid,
 * permissions).  Writes a reason to err on failure. */
int ring_map_existing(const char *name, int writable, int *fd_out, struct ring_header **hdr_out,
                      size_t *map_size_out, char *err, size_t err_size);

/* 1 if the process pid, started at start_time (0 = do not check), is alive
 * (a zombie counts as dead). */
int ring_process_alive(uint32_t pid, uint64_t start_time);

/* The start time of process pid (/proc/<pid>/stat field 22), 0 if unknown. */
uint64_t ring_process_start_time(uint32_t pid);

/* Futex wait/wake on a 32-bit word in shared memory. */
int ring_futex_wait(_Atomic uint32_t *word, uint32_t expected, int timeout_ms);
void ring_futex_wake(_Atomic uint32_t *word);

/* For tests: claims size bytes by fetch-add and returns without writing the
 * claim marker, as a producer killed right after its fetch-add would. */
uint64_t ring_test_claim_without_marker(rk_ring *r, uint32_t size);

/* For tests: claims size bytes by fetch-add without looking for room
 * first, as a producer that raced another for the last room does, then
 * waits for room as that producer does (claim_raced).  Returns 0 (a frame's
 * room, left unwritten: for a ring about to be thrown away), 1 (it became
 * padding) or the wait's error (RK_EFENCED). */
int ring_test_claim_raced(rk_ring *r, uint32_t size);

/* For tests: writes recs[0..n) as rk_write() does in one claim, but
 * commits only the first n_commit (< n) and returns, as a producer killed
 * in the middle of an rk_write would leave the ring: *stuck_pos is the
 * first position not committed, which holds a claim marker for the rest of
 * the claim, *stuck_size bytes. */
int ring_test_write_partial(rk_ring *r, const rk_record *recs, size_t n, size_t n_commit, uint64_t *stuck_pos,
                            uint32_t *stuck_size);

#endif
