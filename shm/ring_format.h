/* ring_format.h -- the layout of a ring segment and of the frames in it.
 *
 * A segment is /dev/shm/ringkeep.<name>: a header of RING_HEADER_SIZE bytes,
 * then a data area of `capacity` bytes (a power of two).  Positions in the
 * record stream are 64-bit byte counts that never wrap; a position's place in
 * the data area is (position & (capacity - 1)).  A record's LSN is the
 * position of its frame.
 *
 * Changing anything here means bumping RING_FORMAT.  The invariants the
 * code relies on are numbered R1..R9 above struct ring_header.
 */
#ifndef RK_RING_FORMAT_H
#define RK_RING_FORMAT_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ringkeep.h"

#define RING_MAGIC 0x474e524bu /* "KRNG" little-endian */
#define RING_FORMAT 1u
#define RING_CACHE_LINE 64
#define RING_MAX_TABLES 256
#define RING_MAX_PRODUCERS 64
#define RING_MIN_CAPACITY (64u * 1024)
#define RING_MAX_CAPACITY (1ull << 36)
#define RING_DEFAULT_UNBLOCK_MS 1000u
#define RING_SHM_PREFIX "ringkeep."

/* ---------------------------------------------------------------- frames
 *
 * Every frame starts at a multiple of FRAME_ALIGN and never straddles the
 * end of the data area.  Its first word is the commit word:
 *   0                      nothing claimed here yet (or claimed, no marker);
 *   FRAME_CLAIMED | size   claimed by a producer that is writing it; size is
 *                          the aligned size of the rest of the claim from
 *                          here: this frame's, or (a claim of several
 *                          frames, rk_write) this frame's and those after it
 *                          in the claim, at most max_frame; lsn, producer
 *                          and (in the checksum field) the producer's
 *                          session are already set;
 *   length                 committed; length is the exact byte count of
 *                          header + key + value, it occupies align8(length).
 * The producer stores the committed length last, with release order.  In a
 * claim of several frames it marks the next frame (FRAME_CLAIMED | rest)
 * before it commits the one in front of it, so the first uncommitted frame
 * of a claim is always marked.  A consumer handles such a marker as any
 * other (it pads `size` bytes of a dead producer's claim): format 1 rings
 * written by rk_write read the same with an older consumer, so RING_FORMAT
 * stays 1.
 *
 * A data frame (PUT, DEL, MARK, ATTACH) has the 32-byte header below.  A PAD
 * frame is only the first 8 bytes (length, type) and may be 8 bytes long.
 * checksum = XXH3_64bits_withSeed(frame + 16, length - 16, frame_seed(...)),
 * where the seed packs length, type, flags and table, so that every header
 * byte and every payload byte is covered. */
#define FRAME_ALIGN 8u
#define FRAME_HEADER_SIZE 32u
#define FRAME_PAD_MIN 8u
#define FRAME_CLAIMED 0x80000000u
#define FRAME_MAX_LENGTH (1u << 30)

enum frame_type {
    FRAME_PUT = 1,    /* key, value */
    FRAME_DEL = 2,    /* key */
    FRAME_MARK = 3,   /* value: height, 8 bytes little-endian */
    FRAME_PAD = 4,    /* skipped space: the end of the data area, or a claim
                         that could not be used */
    FRAME_ATTACH = 5, /* a producer (re)attached: key = producer name, value =
                         struct frame_attach.  Any open group of this producer
                         id written before it is void. */
    FRAME_ABORT = 6,  /* never in the ring: made by the consumer when it
                         unblocks a dead producer; producer = the dead one,
                         lsn = where its claim was, value = its session.
                         Its open group is void. */
    FRAME_TABLE = 7,  /* never in the ring: made by the node in the journal
                         before the first frame that uses a table id it has
                         not journaled yet; table = the id, key = its name */
};

struct frame_header {
    uint32_t length;   /* commit word, see above */
    uint8_t type;      /* enum frame_type */
    uint8_t flags;     /* 0 */
    uint16_t table;    /* PUT, DEL: table id; else 0 */
    uint64_t checksum; /* XXH3 of the rest, see above */
    uint64_t lsn;      /* the frame's position */
    uint16_t producer; /* producer slot id */
    uint16_t reserved; /* 0 */
    uint32_t klen;     /* key bytes; value bytes = length - 32 - klen */
};
_Static_assert(sizeof(struct frame_header) == FRAME_HEADER_SIZE, "frame header is 32 bytes");

struct frame_attach {
    uint64_t session; /* the producer slot's session after this attach */
    uint32_t pid;     /* the attaching process */
    uint32_t flags;   /* 0, or RING_ATTACH_DETACH */
};

/* frame_attach.flags: the session ends (rk_ring_detach with a group
 * open); session is the ending one.  Read as any ATTACH: what the
 * producer left open is void. */
#define RING_ATTACH_DETACH 1u

static inline uint32_t frame_align(uint64_t n)
{
    return (uint32_t)((n + FRAME_ALIGN - 1) & ~(uint64_t)(FRAME_ALIGN - 1));
}

static inline uint64_t frame_seed(uint32_t length, uint8_t type, uint8_t flags, uint16_t table)
{
    return (uint64_t)length | (uint64_t)type << 32 | (uint64_t)flags << 40 | (uint64_t)table << 48;
}

/* ---------------------------------------------------------------- header */

enum slot_state { SLOT_FREE = 0, SLOT_ATTACHED = 1, SLOT_DETACHED = 2, SLOT_DEAD = 3 };

struct ring_table_entry {
    char name[RK_NAME_MAX + 1]; /* NUL-terminated; written under dir_lock */
    _Atomic uint32_t used;      /* 1 once name is set (release; read with acquire) */
    uint32_t pad_[3];
};
_Static_assert(sizeof(struct ring_table_entry) == 64, "table entry is one line");

struct ring_producer_slot {
    char name[RK_NAME_MAX + 1]; /* written under dir_lock; kept for the ring's
                                   life: a slot id always means one name */
    _Atomic uint32_t state;     /* enum slot_state; under dir_lock, and the
                                   consumer sets DEAD */
    uint32_t pid;               /* attached process; under dir_lock */
    uint64_t start_time;        /* its start time (/proc stat field 22), so
                                   that a reused pid is not taken for it */
    _Atomic uint64_t session;   /* +1 at every attach; under dir_lock */
    uint64_t attach_ns;         /* CLOCK_REALTIME of the last attach */
    /* the producer's own line, written at every record */
    alignas(RING_CACHE_LINE) _Atomic uint64_t last_lsn; /* LSN of its last commit */
    _Atomic uint64_t n_records;                         /* records committed */
    /* CLAIM_NONE; CLAIM_UNKNOWN from just before its fetch-add until it knows
     * the position; then the claim's start until the claim marker is written.
     * Lets the consumer tell a live producer's unmarked claim from a dead
     * one's. */
    _Atomic uint64_t claim_pos;
    _Atomic uint64_t claim_len; /* bytes of that claim; set before claim_pos */
};
_Static_assert(sizeof(struct ring_producer_slot) == 192, "producer slot is three lines");

#define CLAIM_NONE 0
#define CLAIM_UNKNOWN UINT64_MAX

/* Invariants of a ring, cited by number where code relies on them.
 * Positions are 64-bit byte counts that never wrap; read_pos is the
 * owner's own cursor (struct ring_owner, consumer.c): the position just
 * past the last frame it has read (or skipped).
 *
 * R1  start_lsn <= head <= read_pos <= tail, each a multiple of FRAME_ALIGN.
 * R2  read_pos - head <= capacity: the owner reads at most one capacity
 *     past what it has released.  A producer writes its claim only once
 *     claim end - head <= capacity, so it never overwrites a frame the
 *     owner has not released; tail - head <= ring_tail_allowance().
 * R3  Only producers move tail (fetch-add of multiples of FRAME_ALIGN);
 *     only the owner moves head, release_to, durable_lsn and
 *     replicated_lsn, and each of them only forward.
 * R4  Every byte in [head, head + capacity) that no producer has claimed
 *     is 0: the segment starts zeroed, and the owner zeroes what it
 *     releases before it moves head (release_to lets the next owner finish
 *     a release cut short).  A claim's commit word starts at 0.
 * R5  A frame starts at a multiple of FRAME_ALIGN, never straddles the end
 *     of the data area, and its lsn is its position.  Its commit word goes
 *     0 -> FRAME_CLAIMED | rest -> length, the length stored last (release);
 *     rest is the claim's aligned bytes from this frame on (a claim, of one
 *     frame or of several, never straddles the end and is at most
 *     max_frame).  A frame of a claim is marked before the one in front of
 *     it commits.
 * R6  Every frame at or below durable_lsn is in the journal (J1 in
 *     persist/store.h), every one at or below replicated_lsn also on
 *     min_replicas standbys; head passes a frame only once the journal
 *     holds it (or it is padding).
 * R7  A live producer announces its claim in its slot's claim_pos from
 *     before its fetch-add on tail until after its claim marker: a claim at
 *     read_pos that no live producer announces is a dead one's.
 * R8  A dead producer's claim becomes padding in place before read_pos
 *     passes it, so an owner that reads it again skips it; its slot is
 *     marked SLOT_DEAD only once its ABORT frame is durable.
 * R9  Once fenced is 1 (the owner stepped down: a higher epoch is primary
 *     elsewhere), durable_lsn and replicated_lsn never move again: the
 *     owner sets fenced and moves them under one lock (ring_fence,
 *     ring_set_durable, ring_set_replicated).  Producers then claim
 *     nothing (RK_EFENCED), and a wait whose cursor has not reached its
 *     target ends with RK_EFENCED.  Only a node of a higher epoch than the
 *     ring's clears it (ring_unfence, a promotion).
 *
 * Any process that maps the segment can damage it: what is read from it
 * is checked and refused with RK_ECORRUPT (ring_map_existing, ring_next),
 * never assert()ed.  assert() (debug and sanitizer builds) checks what a
 * process keeps itself: the owner's head <= read_pos (R1), a producer's
 * placement of its claim (R2, R5). */
struct ring_header {
    /* identity: written once by the owner before magic is published */
    _Atomic uint32_t magic;      /* RING_MAGIC, stored last with release */
    uint32_t format;             /* RING_FORMAT */
    uint64_t header_size;        /* RING_HEADER_SIZE: data area offset */
    uint64_t capacity;           /* data area bytes, a power of two */
    uint64_t start_lsn;          /* the first position of this ring */
    uint64_t created_ns;         /* CLOCK_REALTIME at creation */
    uint32_t owner_uid;          /* uid of the creator */
    uint32_t unblock_timeout_ms; /* how long a stuck claim waits before the
                                    consumer checks its producer is dead */
    uint32_t max_frame;          /* largest frame, aligned: capacity / 4 */
    uint32_t reserved_;
    /* ownership: the node that consumes; rewritten when a node takes over */
    _Atomic uint64_t epoch;     /* the owner's epoch */
    _Atomic uint32_t owner_pid; /* the consuming node, 0 when none */
    _Atomic uint32_t fenced;    /* 1: the owner stepped down (R9); 0 in rings made
                                   before it existed (it was reserved, zero) */
    _Atomic uint64_t owner_start_time;

    /* producers only: next position to claim (fetch-add; R1, R3) */
    alignas(RING_CACHE_LINE) _Atomic uint64_t tail;

    /* consumer only: next position not yet released (R1-R4); producers
     * read it when the ring looks full.  head_seq/n_head_waiters: futex for producers
     * waiting for space. */
    alignas(RING_CACHE_LINE) _Atomic uint64_t head;
    _Atomic uint32_t head_seq;
    _Atomic uint32_t n_head_waiters;
    _Atomic uint64_t release_to; /* consumer only: where the release being
                                    made will move head; a consumer that dies
                                    while zeroing is finished by the next */

    /* consumer sleeping on an empty ring: producers read this after every
     * commit (it stays in their cache while unchanged), wake when set. */
    alignas(RING_CACHE_LINE) _Atomic uint32_t consumer_sleeping;
    _Atomic uint32_t consumer_seq;

    /* owner only: everything at or below durable_lsn is in the journal (R6) */
    alignas(RING_CACHE_LINE) _Atomic uint64_t durable_lsn;
    _Atomic uint32_t durable_seq;
    _Atomic uint32_t n_durable_waiters;

    /* owner only: durable on min_replicas standbys (R6) */
    alignas(RING_CACHE_LINE) _Atomic uint64_t replicated_lsn;
    _Atomic uint32_t replicated_seq;
    _Atomic uint32_t n_replicated_waiters;

    /* consumer's counters, for `ring inspect` */
    alignas(RING_CACHE_LINE) _Atomic uint64_t n_consumed; /* frames delivered */
    _Atomic uint64_t n_unblocked;                         /* dead claims padded */
    _Atomic uint64_t n_unblocked_bytes;
    _Atomic uint64_t n_corrupt; /* corrupt frames seen */

    /* table directory and producer registry: changed under dir_lock, a
     * robust process-shared mutex (a holder that dies does not wedge it). */
    alignas(RING_CACHE_LINE) pthread_mutex_t dir_lock;
    _Atomic uint32_t n_tables;
    _Atomic uint32_t n_producers;
    alignas(RING_CACHE_LINE) struct ring_table_entry tables[RING_MAX_TABLES];
    alignas(RING_CACHE_LINE) struct ring_producer_slot producers[RING_MAX_PRODUCERS];
};

#define RING_HEADER_SIZE ((sizeof(struct ring_header) + 4095) & ~(size_t)4095)

/* How far tail may run ahead of head: the capacity, plus what producers
 * racing for the last room may claim at once (each at most one claim of a
 * frame and the padding before it, both under max_frame). */
static inline uint64_t ring_tail_allowance(const struct ring_header *h)
{
    return h->capacity + 2 * (uint64_t)h->max_frame * RING_MAX_PRODUCERS;
}

#endif
