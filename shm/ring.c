/* ring.c -- the engine's side of the ring: attach, tables, and writing
 * records without a system call.
 *
 * Writing a record (ring_write):
 *
 *   pre-check room against the cached head (re-read head only when the
 *   ring looks full; wait on the head futex or fail, as the producer chose)
 *        |
 *   fetch-add tail  ->  the claim [pos, pos + need)
 *        |
 *   carve the claim: the frame where it fits before the end of the data
 *   area, PAD frames over what is left (a frame never straddles the end)
 *        |
 *   marker: lsn, producer, then commit word = CLAIMED | size   (release)
 *        |
 *   key, value, checksum, then commit word = length             (release)
 *        |
 *   wake the consumer only if it sleeps (a load that stays in our cache)
 *
 * rk_write claims once for many frames (up to WRITE_CLAIM_MAX bytes): the
 * fetch-add, a locked instruction that waits for every earlier store to
 * land (stores to lines the consumer zeroed wait for those lines to come
 * back), is most of a put's cost.  The claim's first frame gets the claim
 * marker for the whole claim; each frame marks the next one (CLAIMED | the
 * rest of the claim) before it commits, so a consumer that finds the
 * producer dead pads the rest of the claim as it pads a claim of one frame.
 *
 * The pre-check makes a claim only when there is room for it, so tail never
 * runs ahead of head by more than the capacity plus what producers racing
 * for the last room claim at the same instant; such a producer waits for
 * the consumer (its space is promised to it and must be filled) before it
 * writes (R2 in ring_format.h).  Frames never straddle the end (R5); a
 * claim is announced in the slot while it has no marker (R7).
 *
 * Threads: a handle belongs to one thread at a time; any number of handles
 * in any number of processes share one ring.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shm/ring.h"
#include "shm/segment.h"

#define PREFETCH_DISTANCE 1024       /* bytes ahead of the frame being written */
#define WRITE_CLAIM_MAX (16u * 1024) /* rk_write: bytes of one claim, at most */
#define WORD_COPY_MAX 256            /* key + value bytes copied in words (write_frame) */

struct rk_ring {
    struct ring_header *hdr;
    uint8_t *data;
    size_t map_size;
    int fd;
    uint64_t mask; /* capacity - 1 */
    uint64_t capacity;
    uint64_t cached_head; /* our last read of hdr->head */
    uint32_t max_frame;
    uint16_t producer; /* our slot id */
    uint64_t session;  /* our session in that slot */
    int group_open;    /* a PUT or DEL written since our last MARK (or ATTACH) */
    int full_policy;
    int full_timeout_ms;
    struct ring_producer_slot *slot;
    uint64_t known_tables[RING_MAX_TABLES / 64]; /* bit per table id seen
                                                    registered in the ring */
    char *errmsg;
    size_t errmsg_size;
};

const char *rk_version(int *major, int *minor, int *patch)
{
    if (major)
        *major = RK_VERSION_MAJOR;
    if (minor)
        *minor = RK_VERSION_MINOR;
    if (patch)
        *patch = RK_VERSION_PATCH;
#define RK_STR2(x) #x
#define RK_STR(x) RK_STR2(x)
    return RK_STR(RK_VERSION_MAJOR) "." RK_STR(RK_VERSION_MINOR) "." RK_STR(RK_VERSION_PATCH);
}

const char *rk_strerror(int err)
{
    static const char *const msgs[] = {
        [RK_EINVAL - RK_EINVAL] = "invalid argument",
        [RK_ETOOBIG - RK_EINVAL] = "record too large for this ring (see rk_ring_max_record)",
        [RK_EFULL - RK_EINVAL] = "ring full",
        [RK_ETIMEDOUT - RK_EINVAL] = "timed out",
        [RK_ENOTFOUND - RK_EINVAL] = "not found",
        [RK_EBADRING - RK_EINVAL] = "not a usable ringkeep ring",
        [RK_EVERSION - RK_EINVAL] = "unsupported format version",
        [RK_ECORRUPT - RK_EINVAL] = "corrupt data (checksum or structure)",
        [RK_ETABLES - RK_EINVAL] = "table directory full",
        [RK_EPRODUCERS - RK_EINVAL] = "producer registry full",
        [RK_EBUSY - RK_EINVAL] = "in use by a live process (a producer name, ring or data directory)",
        [RK_EEXIST - RK_EINVAL] = "ring already exists",
        [RK_ESTALE - RK_EINVAL] = "message from a lower (stale) epoch",
        [RK_EUNDRAINED - RK_EINVAL] = "the ring holds records the node has not journaled: start the node",
        [RK_EFENCED - RK_EINVAL] = ("the node stepped down (another node is the primary, of a higher epoch): "
                                    "restore from the new primary and write to its ring"),
    };
    if (err == 0)
        return "success";
    if (err > 0)
        return strerror(err);
    if (err >= RK_EINVAL && err < RK_ELAST)
        return msgs[err - RK_EINVAL];
    return "unknown error";
}

/* Locks the directory mutex.  A holder that died leaves it consistent: every
 * change under it is a few plain stores that are valid at any prefix. */
int ring_dir_lock(struct ring_header *h)
{
    int rc = pthread_mutex_lock(&h->dir_lock);

    if (rc == EOWNERDEAD)
        rc = pthread_mutex_consistent(&h->dir_lock);
    return rc;
}

static void set_err(rk_ring *r, const char *msg)
{
    seg_error(r->errmsg, r->errmsg_size, "%s", msg);
}

/* -------------------------------------------------------------- writing */

static void wake_consumer_fenced(rk_ring *r);

/* Waits until head >= target.  With RK_FULL_FAIL (and bounded) returns
 * RK_EFULL; with RK_FULL_WAIT, RK_ETIMEDOUT after full_timeout_ms. */
static int wait_for_room(rk_ring *r, uint64_t target, int bounded)
{
    struct ring_header *h = r->hdr;
    int rc;

    if (bounded && r->full_policy == RK_FULL_FAIL)
        return RK_EFULL;
    wake_consumer_fenced(r); /* the room comes from the consumer: it must not sleep out a slice */
    rc = seg_cursor_wait(&h->head, &h->head_seq, &h->n_head_waiters, &h->fenced, target,
                         bounded && r->full_timeout_ms > 0 ? r->full_timeout_ms : -1);
    r->cached_head = atomic_load_explicit(&h->head, memory_order_acquire);
    return rc;
}

/* Commits a PAD frame over [pos, pos + len), split at the end of the data
 * area.  Every piece is a multiple of 8 bytes, so at least FRAME_PAD_MIN. */
static void write_pad(rk_ring *r, uint64_t pos, uint64_t len)
{
    while (len) {
        uint64_t idx = pos & r->mask;
        uint64_t piece = r->capacity - idx < len ? r->capacity - idx : len;
        uint8_t *p = r->data + idx;

        p[4] = FRAME_PAD;
        /* release: the type byte is visible before the length commits it */
        atomic_store_explicit((_Atomic uint32_t *)p, (uint32_t)piece, memory_order_release);
        pos += piece;
        len -= piece;
    }
}

/* The claim [pos, pos + need) is ours (claim_pos announces it).  Waits
 * until it has room, then places the frame of `size` bytes in it where it
 * does not straddle the end, padding the rest.  Returns 0 with the frame's
 * position, 1 when the frame did not fit (all padding: claim again), or
 * the wait's error: RK_EFENCED once the ring is fenced (R9), whose head
 * never moves again; the claim is then given up unwritten, as a producer
 * killed after its fetch-add leaves it. */
__attribute__((noinline)) static int claim_raced(rk_ring *r, uint64_t pos, uint64_t need, uint32_t size,
                                                 uint64_t *pos_out)
{
    struct ring_header *h = r->hdr;
    uint64_t end = pos + need, idx, first;

    while (end - r->cached_head > r->capacity) {
        /* another producer took the room between our check and our
         * fetch-add: this space is ours and must be filled, so wait (R2) */
        r->cached_head = atomic_load_explicit(&h->head, memory_order_acquire);
        if (end - r->cached_head > r->capacity) {
            int rc = wait_for_room(r, end - r->capacity, 0);
            if (rc) {
                /* release: as the other stores of claim_pos */
                atomic_store_explicit(&r->slot->claim_pos, CLAIM_NONE, memory_order_release);
                return rc;
            }
        }
    }
    idx = pos & r->mask;
    first = idx + size <= r->capacity ? 0 : r->capacity - idx;
    if (need - first < size) {
        write_pad(r, pos, need);
        /* release: the padding is visible before the claim is over */
        atomic_store_explicit(&r->slot->claim_pos, CLAIM_NONE, memory_order_release);
        return 1;
    }
    write_pad(r, pos, first);
    write_pad(r, pos + first + size, need - first - size);
    *pos_out = pos + first;
    return 0;
}

/* Claims room for a frame of `size` aligned bytes and returns its position.
 * On return the slot's claim_pos holds the claim, the frame's memory is
 * zero, and the caller must write the claim marker next (mark_claimed).
 * The general case: waits for room, pads around the end of the data area. */
__attribute__((noinline)) static int claim_slow(rk_ring *r, uint32_t size, uint64_t *pos_out)
{
    struct ring_header *h = r->hdr;

    for (;;) {
        /* relaxed: a guess for the room check; the fetch-add decides */
        uint64_t tail = atomic_load_explicit(&h->tail, memory_order_relaxed);
        uint64_t idx = tail & r->mask;
        uint64_t need = size + (idx + size > r->capacity ? r->capacity - idx : 0);
        uint64_t pos;
        int rc;

        if (tail + need - r->cached_head > r->capacity) {
            /* acquire: the consumer zeroed the space before it released it */
            r->cached_head = atomic_load_explicit(&h->head, memory_order_acquire);
            if (tail + need - r->cached_head > r->capacity) {
                rc = wait_for_room(r, tail + need - r->capacity, 1);
                if (rc)
                    return rc;
                continue;
            }
        }
        atomic_store_explicit(&r->slot->claim_pos, CLAIM_UNKNOWN, memory_order_relaxed);
        /* release: whoever sees this claim in tail sees claim_pos UNKNOWN
         * (or later values), so a live claim is never taken for a dead one
         * (R7) */
        pos = atomic_fetch_add_explicit(&h->tail, need, memory_order_release);
        atomic_store_explicit(&r->slot->claim_len, need, memory_order_relaxed);
        /* release: claim_len is visible before claim_pos */
        atomic_store_explicit(&r->slot->claim_pos, pos, memory_order_release);
        rc = claim_raced(r, pos, need, size, pos_out);
        if (rc != 1)
            return rc;
    }
}

/* Asks for the cache lines ahead of pos for writing.  They were last
 * written by the consumer (zeroed at release): fetching them now, while
 * this record is being written, keeps the next records' stores, and the
 * next fetch-add (which waits for earlier stores to land), from waiting on
 * the transfer. */
static inline void prefetch_ahead(const rk_ring *r, uint64_t pos)
{
    const uint8_t *p = r->data + ((pos + PREFETCH_DISTANCE) & r->mask);
#if defined(__x86_64__)
    /* prefetchw: decoded as a no-op by CPUs that lack it */
    __asm__ volatile("prefetchw %0" : : "m"(*p));
    __asm__ volatile("prefetchw %0" : : "m"(*(p + RING_CACHE_LINE)));
#else
    __builtin_prefetch(p, 1, 3);
    __builtin_prefetch(p + RING_CACHE_LINE, 1, 3);
#endif
}

/* The common case of claim_slow(), inlined: room by the cached head, no
 * padding needed.  Anything else goes to claim_slow(). */
static inline int claim(rk_ring *r, uint32_t size, uint64_t *pos_out)
{
    struct ring_header *h = r->hdr;
    /* relaxed: a guess for the room check; the fetch-add decides */
    uint64_t tail = atomic_load_explicit(&h->tail, memory_order_relaxed), pos;

    if (__builtin_expect(tail + size - r->cached_head > r->capacity || (tail & r->mask) + size > r->capacity,
                         0))
        return claim_slow(r, size, pos_out);
    atomic_store_explicit(&r->slot->claim_pos, CLAIM_UNKNOWN, memory_order_relaxed);
    /* release: as in claim_slow() */
    pos = atomic_fetch_add_explicit(&h->tail, size, memory_order_release);
    atomic_store_explicit(&r->slot->claim_len, size, memory_order_relaxed);
    /* release: claim_len is visible before claim_pos */
    atomic_store_explicit(&r->slot->claim_pos, pos, memory_order_release);
    if (__builtin_expect(pos + size - r->cached_head > r->capacity || (pos & r->mask) + size > r->capacity,
                         0)) {
        /* another producer moved tail since our look: handle this claim
         * as claim_slow() handles a claim that raced, and claim again if
         * it ended up as padding */
        int rc = claim_raced(r, pos, size, size, pos_out);
        return rc != 1 ? rc : claim_slow(r, size, pos_out);
    }
    *pos_out = pos;
    return 0;
}

static inline struct frame_header *frame_at(rk_ring *r, uint64_t pos)
{
    return (struct frame_header *)(r->data + (pos & r->mask));
}

/* Writes a claim marker over the commit word at pos, 0 until now (R4, R5):
 * the claim's rest from pos is `rest` bytes.  The consumer reads lsn,
 * producer and session (kept in the checksum field until the commit) from
 * a claimed frame whose producer dies before committing it, and pads the
 * rest of the claim. */
static inline void mark_rest(rk_ring *r, struct frame_header *f, uint64_t pos, uint32_t rest)
{
    f->lsn = pos;
    f->producer = r->producer;
    f->checksum = r->session;
    /* release: lsn, producer and session are visible before the marker */
    atomic_store_explicit((_Atomic uint32_t *)&f->length, FRAME_CLAIMED | rest, memory_order_release);
}

/* Marks a new claim of `size` bytes at pos (its first frame), then ends
 * its announcement in the slot (R7). */
static inline void mark_claimed(rk_ring *r, struct frame_header *f, uint64_t pos, uint32_t size)
{
    mark_rest(r, f, pos, size);
    /* release: the marker is visible before the claim is over */
    atomic_store_explicit(&r->slot->claim_pos, CLAIM_NONE, memory_order_release);
}

/* Commits a frame whose every byte but the commit word is written. */
static inline void commit_frame(rk_ring *r, struct frame_header *f, uint64_t lsn, uint32_t length)
{
    /* release: every byte of the frame, and the marker of the claim's next
     * frame (rk_write), are visible before its length (R5).  From here on
     * the consumer may release and zero the frame: not read it. */
    atomic_store_explicit((_Atomic uint32_t *)&f->length, length, memory_order_release);
    /* relaxed: statistics for `ring inspect`, on our own cache line */
    atomic_store_explicit(&r->slot->last_lsn, lsn, memory_order_relaxed);
    atomic_store_explicit(&r->slot->n_records,
                          atomic_load_explicit(&r->slot->n_records, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Wakes the consumer if it sleeps. */
static inline void wake_consumer(rk_ring *r)
{
    struct ring_header *h = r->hdr;

    /* relaxed load: this line changes only when the consumer goes to sleep,
     * so the load hits our cache.  The exchange makes one producer, not
     * every one, pay the wake.  Without a fence a wake can be missed when
     * the consumer falls asleep at this instant; its sleep is a short
     * slice, which bounds the delay. */
    if (atomic_load_explicit(&h->consumer_sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&h->consumer_sleeping, 0, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&h->consumer_seq, 1, memory_order_release);
        ring_futex_wake(&h->consumer_seq);
    }
}

/* wake_consumer for a producer about to wait for its records (rk_wait):
 * the seq_cst fence orders its commits (the release stores of their
 * lengths) before the load of consumer_sleeping, against the consumer's
 * store of that flag before its fence and its look at the commit word
 * (wait_ready in consumer.c): one side sees the other, so the wake this
 * waiter depends on is never lost to the consumer's sleep slice.  A
 * fence per wait, not per record: the wait is about to sleep anyway. */
static void wake_consumer_fenced(rk_ring *r)
{
    atomic_thread_fence(memory_order_seq_cst);
    wake_consumer(r);
}

/* R9: a fenced ring takes no more records.  Relaxed: the check only
 * spares a record nobody would make durable (a claim racing the fence is
 * written and never acknowledged: the owner moves no cursor after it);
 * the header's identity line holding it is read-mostly, so the load costs
 * nothing on the write path. */
static inline int ring_is_fenced(const rk_ring *r)
{
    return __builtin_expect(atomic_load_explicit(&r->hdr->fenced, memory_order_relaxed) != 0, 0);
}

static int check_size(const rk_ring *r, uint32_t klen, uint32_t vlen, uint32_t *size)
{
    uint64_t length = (uint64_t)FRAME_HEADER_SIZE + klen + vlen;

    /* max_frame is a multiple of 8: comparing the unaligned length in 64
     * bits is exact and cannot overflow */
    if (klen > RK_KEY_MAX || length > r->max_frame)
        return RK_ETOOBIG;
    *size = frame_align(length);
    return 0;
}

/* 1 if table is an id that rk_table() returned on this ring (to any
 * producer).  A directory entry, once used, never changes: an id seen used
 * is remembered in the handle, and the shared line is read only once. */
static inline int table_registered(rk_ring *r, uint16_t table)
{
    uint64_t bit = 1ull << (table % 64);

    if (table >= RING_MAX_TABLES)
        return 0;
    if (r->known_tables[table / 64] & bit)
        return 1;
    /* acquire: pairs with rk_table()'s release store of used */
    if (!atomic_load_explicit(&r->hdr->tables[table].used, memory_order_acquire))
        return 0;
    r->known_tables[table / 64] |= bit;
    return 1;
}

/* Copies n bytes to dst, 8-aligned in the frame, in whole 8-byte words,
 * the last one padded with zeros (the frame's alignment tail, R4).  The
 * empty asm keeps each word in a register: the compiler would otherwise
 * turn the loop into vector stores or a memcpy call, whose stores XXH3's
 * 8-byte loads right after cannot be forwarded from. */
static inline void copy_words(uint8_t *dst, const uint8_t *src, uint32_t n)
{
    uint64_t w;

    for (; n >= 8; n -= 8, dst += 8, src += 8) {
        memcpy(&w, src, 8);
        __asm__("" : "+r"(w));
        memcpy(dst, &w, 8);
    }
    if (n) {
        uint64_t last = 0; /* not w: taking w's address would keep it in memory in the loop above */
        memcpy(&last, src, n);
        memcpy(dst, &last, 8);
    }
}

/* Writes every byte of the frame at f but its commit word, which holds a
 * claim marker (with lsn and producer already set) until commit_frame.
 *
 * XXH3 then reads the frame back while its stores are still in flight
 * (to lines the consumer zeroed, which its core owns until our stores get
 * them back).  A load the store buffer can forward from one store costs
 * nothing; one it cannot (a load spanning stores of other sizes: memcpy's
 * vector stores, the header's narrow fields) waits for the stores to land.
 * So a small frame whose key fills whole words is written in 8-byte words,
 * the header's word at 24 (producer, reserved, klen) in one store. */
static inline void write_frame(struct frame_header *f, uint8_t type, uint16_t table, const void *key,
                               uint32_t klen, const void *val, uint32_t vlen)
{
    uint32_t length = FRAME_HEADER_SIZE + klen + vlen;
    uint8_t *payload = (uint8_t *)(f + 1);

    if (klen % 8 == 0 && klen + vlen <= WORD_COPY_MAX) {
        uint64_t word3 = (uint64_t)f->producer | (uint64_t)klen << 32; /* reserved: 0 */
        memcpy((uint8_t *)f + 24, &word3, 8);
        copy_words(payload, key, klen);
        copy_words(payload + klen, val, vlen);
    } else {
        f->klen = klen;
        if (klen)
            memcpy(payload, key, klen);
        if (vlen)
            memcpy(payload + klen, val, vlen);
    }
    f->type = type;
    f->table = table;
    f->checksum = XXH3_64bits_withSeed((uint8_t *)f + 16, length - 16, frame_seed(length, type, 0, table));
}

static int ring_write(rk_ring *r, uint8_t type, uint16_t table, const void *key, uint32_t klen,
                      const void *val, uint32_t vlen, uint64_t *lsn_out)
{
    struct frame_header *f;
    uint32_t size;
    uint64_t pos;
    int rc;

    if (!r || (klen && !key) || (vlen && !val))
        return RK_EINVAL;
    if (ring_is_fenced(r))
        return RK_EFENCED;
    rc = check_size(r, klen, vlen, &size);
    if (rc)
        return rc;
    rc = claim(r, size, &pos);
    if (rc)
        return rc;
    /* R5: inside the data area; R2: within a capacity of (our view of) head */
    assert((pos & r->mask) + size <= r->capacity && pos + size - r->cached_head <= r->capacity);
    f = frame_at(r, pos);
    mark_claimed(r, f, pos, size);
    prefetch_ahead(r, pos);
    write_frame(f, type, table, key, klen, val, vlen);
    commit_frame(r, f, pos, FRAME_HEADER_SIZE + klen + vlen);
    wake_consumer(r);
    r->group_open = type == FRAME_PUT || type == FRAME_DEL; /* a MARK or ATTACH closes it */
    if (lsn_out)
        *lsn_out = pos;
    return 0;
}

/* The aligned frame size of rec, or an error (RK_EINVAL, RK_ETOOBIG). */
static inline int record_size(rk_ring *r, const rk_record *rec, uint32_t *size)
{
    if ((rec->op != RK_OP_PUT && rec->op != RK_OP_DEL) || (rec->op == RK_OP_DEL && rec->vlen) ||
        (rec->klen && !rec->key) || (rec->vlen && !rec->val) || !table_registered(r, rec->table))
        return RK_EINVAL;
    return check_size(r, rec->klen, rec->vlen, size);
}

/* Writes recs[0..n), which fill exactly `total` aligned bytes, in one
 * claim, and commits the first n_commit of them (n but for a test, which
 * stops where a producer killed there would; *next_pos is where it
 * stopped).  Before a frame is committed, the next one's position gets a
 * marker for the rest of the claim: at any instant the first uncommitted
 * position of the claim is marked, so a consumer that finds it stuck (the
 * producer died) pads the rest and reports it, as for a claim of one frame
 * (R5, R7). */
static int write_claim(rk_ring *r, const rk_record *recs, size_t n, size_t n_commit, uint32_t total,
                       uint64_t *lsn_out, uint64_t *next_pos)
{
    struct frame_header *f;
    uint64_t pos, end;
    int rc;

    rc = claim(r, total, &pos);
    if (rc)
        return rc;
    /* R5: inside the data area; R2: within a capacity of (our view of) head */
    assert((pos & r->mask) + total <= r->capacity && pos + total - r->cached_head <= r->capacity);
    end = pos + total;
    f = frame_at(r, pos);
    mark_claimed(r, f, pos, total);
    for (size_t i = 0; i < n_commit; i++) {
        const rk_record *rec = &recs[i];
        uint32_t length = FRAME_HEADER_SIZE + rec->klen + rec->vlen, size = frame_align(length);
        uint8_t type = rec->op == RK_OP_PUT ? FRAME_PUT : FRAME_DEL;

        prefetch_ahead(r, pos);
        write_frame(f, type, rec->table, rec->key, rec->klen, rec->val, rec->vlen);
        if (i + 1 < n) /* R5: the rest of the claim is marked before this frame commits */
            mark_rest(r, frame_at(r, pos + size), pos + size, (uint32_t)(end - pos - size));
        commit_frame(r, f, pos, length);
        *lsn_out = pos;
        pos += size;
        f = frame_at(r, pos);
    }
    assert(n_commit < n || pos == end);
    wake_consumer(r);
    r->group_open |= n_commit > 0;
    if (next_pos)
        *next_pos = pos;
    return 0;
}

int rk_write(rk_ring *r, const rk_record *recs, size_t n, size_t *n_written, uint64_t *lsn_out)
{
    uint64_t lsn = 0;
    size_t done = 0;
    int rc = 0;

    if (n_written)
        *n_written = 0;
    if (!r || (n && !recs))
        return RK_EINVAL;
    for (size_t i = 0; i < n; i++) {
        uint32_t size;
        rc = record_size(r, &recs[i], &size);
        if (rc)
            return rc;
    }
    while (done < n) {
        /* as many records as fit one claim of at most WRITE_CLAIM_MAX */
        uint32_t limit = r->max_frame < WRITE_CLAIM_MAX ? r->max_frame : WRITE_CLAIM_MAX, total = 0;
        size_t k = done;

        while (k < n) {
            uint32_t size = frame_align((uint64_t)FRAME_HEADER_SIZE + recs[k].klen + recs[k].vlen);
            if (k > done && total + size > limit)
                break;
            total += size; /* a first record alone is at most max_frame (record_size) */
            k++;
        }
        if (ring_is_fenced(r)) {
            rc = RK_EFENCED;
            break;
        }
        rc = write_claim(r, recs + done, k - done, k - done, total, &lsn, NULL);
        if (rc)
            break;
        done = k;
    }
    if (n_written)
        *n_written = done;
    if (lsn_out && done)
        *lsn_out = lsn;
    return rc;
}

int rk_put(rk_ring *r, uint16_t table, const void *key, uint32_t klen, const void *val, uint32_t vlen,
           uint64_t *lsn_out)
{
    if (!r || !table_registered(r, table))
        return RK_EINVAL;
    return ring_write(r, FRAME_PUT, table, key, klen, val, vlen, lsn_out);
}

int rk_del(rk_ring *r, uint16_t table, const void *key, uint32_t klen, uint64_t *lsn_out)
{
    if (!r || !table_registered(r, table))
        return RK_EINVAL;
    return ring_write(r, FRAME_DEL, table, key, klen, NULL, 0, lsn_out);
}

int rk_mark(rk_ring *r, uint64_t height, uint64_t *lsn_out)
{
    uint8_t le[8];

    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(height >> (8 * i));
    return ring_write(r, FRAME_MARK, 0, NULL, 0, le, 8, lsn_out);
}

int rk_claim_record(rk_ring *r, uint16_t table, uint32_t klen, uint32_t vlen, rk_claim *c)
{
    struct frame_header *f;
    uint32_t size;
    uint64_t pos;
    int rc;

    if (!r || !c || !table_registered(r, table))
        return RK_EINVAL;
    if (ring_is_fenced(r))
        return RK_EFENCED;
    rc = check_size(r, klen, vlen, &size);
    if (rc)
        return rc;
    rc = claim(r, size, &pos);
    if (rc)
        return rc;
    assert((pos & r->mask) + size <= r->capacity && pos + size - r->cached_head <= r->capacity); /* R2, R5 */
    f = frame_at(r, pos);
    mark_claimed(r, f, pos, size);
    f->klen = klen;
    f->table = table;
    c->key = f + 1;
    c->val = (uint8_t *)(f + 1) + klen;
    c->frame_ = f;
    c->len_ = FRAME_HEADER_SIZE + klen + vlen;
    c->vlen_ = vlen;
    return 0;
}

int rk_commit(rk_ring *r, rk_claim *c, uint64_t *lsn_out)
{
    struct frame_header *f;
    uint64_t lsn;

    if (!r || !c || !c->frame_)
        return RK_EINVAL;
    f = c->frame_;
    lsn = f->lsn;        /* read before the commit: after it the frame is not ours */
    f->type = FRAME_PUT; /* the key and value are in place: hash them there */
    f->checksum =
        XXH3_64bits_withSeed((uint8_t *)f + 16, c->len_ - 16, frame_seed(c->len_, FRAME_PUT, 0, f->table));
    commit_frame(r, f, lsn, c->len_);
    wake_consumer(r);
    r->group_open = 1;
    if (lsn_out)
        *lsn_out = lsn;
    c->frame_ = NULL;
    return 0;
}

uint32_t rk_ring_max_record(const rk_ring *r)
{
    return r ? r->max_frame - FRAME_HEADER_SIZE : 0;
}

int ring_test_write_partial(rk_ring *r, const rk_record *recs, size_t n, size_t n_commit, uint64_t *stuck_pos,
                            uint32_t *stuck_size)
{
    uint32_t total = 0, size;
    uint64_t lsn = 0;
    int rc;

    for (size_t i = 0; i < n; i++) {
        rc = record_size(r, &recs[i], &size);
        if (rc)
            return rc;
        total += size;
    }
    if (n_commit >= n || total > r->max_frame || total > WRITE_CLAIM_MAX)
        return RK_EINVAL; /* one claim, not all of it committed */
    rc = write_claim(r, recs, n, n_commit, total, &lsn, stuck_pos);
    if (rc)
        return rc;
    /* relaxed: our own store; the marker there holds the rest's size */
    *stuck_size = atomic_load_explicit((_Atomic uint32_t *)frame_at(r, *stuck_pos), memory_order_relaxed) &
                  ~FRAME_CLAIMED;
    return 0;
}

uint64_t ring_test_claim_without_marker(rk_ring *r, uint32_t size)
{
    /* as claim() does up to its fetch-add */
    atomic_store_explicit(&r->slot->claim_pos, CLAIM_UNKNOWN, memory_order_relaxed);
    return atomic_fetch_add_explicit(&r->hdr->tail, frame_align(size), memory_order_release);
}

int ring_test_claim_raced(rk_ring *r, uint32_t size)
{
    uint64_t pos, at;
    size = frame_align(size);
    /* as claim() does, without its room check */
    atomic_store_explicit(&r->slot->claim_pos, CLAIM_UNKNOWN, memory_order_relaxed);
    pos = atomic_fetch_add_explicit(&r->hdr->tail, size, memory_order_release);
    atomic_store_explicit(&r->slot->claim_len, size, memory_order_relaxed);
    atomic_store_explicit(&r->slot->claim_pos, pos, memory_order_release);
    return claim_raced(r, pos, size, size, &at);
}

/* -------------------------------------------------------------- waiting */

int rk_wait(rk_ring *r, uint64_t lsn, rk_level level, int timeout_ms)
{
    struct ring_header *h;

    if (!r)
        return RK_EINVAL;
    h = r->hdr;
    if (lsn >= atomic_load_explicit(&h->tail, memory_order_acquire))
        return RK_EINVAL; /* no record has this LSN yet */
    switch (level) {
    case RK_WRITTEN:
        return 0;
    case RK_DURABLE:
        /* acquire: as in seg_cursor_wait; met already, nobody needs waking */
        if (atomic_load_explicit(&h->durable_lsn, memory_order_acquire) < lsn)
            wake_consumer_fenced(r);
        return seg_cursor_wait(&h->durable_lsn, &h->durable_seq, &h->n_durable_waiters, &h->fenced, lsn,
                               timeout_ms);
    case RK_REPLICATED:
        if (atomic_load_explicit(&h->replicated_lsn, memory_order_acquire) < lsn)
            wake_consumer_fenced(r);
        return seg_cursor_wait(&h->replicated_lsn, &h->replicated_seq, &h->n_replicated_waiters, &h->fenced,
                               lsn, timeout_ms);
    }
    return RK_EINVAL;
}

/* -------------------------------------------------------------- tables */

int rk_table(rk_ring *r, const char *name, uint16_t *table_id)
{
    struct ring_header *h;
    size_t n = name ? strlen(name) : 0;
    int rc;

    if (!r || !table_id || n == 0 || n > RK_NAME_MAX)
        return RK_EINVAL;
    h = r->hdr;
    /* fast path without the lock: entries are never changed once used */
    for (uint32_t i = 0; i < RING_MAX_TABLES; i++) {
        /* acquire: the name was written before used */
        if (!atomic_load_explicit(&h->tables[i].used, memory_order_acquire))
            break;
        if (strncmp(h->tables[i].name, name, RK_NAME_MAX + 1) == 0) {
            *table_id = (uint16_t)i;
            return 0;
        }
    }
    rc = ring_dir_lock(h);
    if (rc)
        return rc;
    rc = RK_ETABLES;
    for (uint32_t i = 0; i < RING_MAX_TABLES; i++) {
        struct ring_table_entry *t = &h->tables[i];
        if (!atomic_load_explicit(&t->used, memory_order_acquire)) {
            memset(t->name, 0, sizeof t->name);
            memcpy(t->name, name, n);
            /* release: the name is visible before the entry counts */
            atomic_store_explicit(&t->used, 1, memory_order_release);
            atomic_store_explicit(&h->n_tables, i + 1, memory_order_relaxed);
            *table_id = (uint16_t)i;
            rc = 0;
            break;
        }
        if (strncmp(t->name, name, RK_NAME_MAX + 1) == 0) {
            *table_id = (uint16_t)i;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&h->dir_lock);
    return rc;
}

/* -------------------------------------------------------------- attach */

/* Finds or takes the slot for `name` and starts a new session in it. */
static int register_producer(rk_ring *r, const char *name, uint64_t *session)
{
    struct ring_header *h = r->hdr;
    struct ring_producer_slot *slot = NULL;
    uint32_t pid = (uint32_t)getpid();
    int rc;

    rc = ring_dir_lock(h);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < RING_MAX_PRODUCERS; i++) {
        struct ring_producer_slot *s = &h->producers[i];
        uint32_t state = atomic_load(&s->state);
        if (state == SLOT_FREE) {
            if (!slot) {
                slot = s;
                memset(s->name, 0, sizeof s->name);
                memcpy(s->name, name, strlen(name));
                atomic_store(&h->n_producers, i + 1);
            }
            break;
        }
        if (strncmp(s->name, name, RK_NAME_MAX + 1) == 0) {
            if (state == SLOT_ATTACHED && ring_process_alive(s->pid, s->start_time)) {
                seg_error(r->errmsg, r->errmsg_size,
                          "producer '%s' is already attached by live pid %u: attach under another "
                          "name, or stop that process",
                          name, s->pid);
                rc = RK_EBUSY;
                goto out;
            }
            slot = s;
            break;
        }
    }
    if (!slot) {
        seg_error(r->errmsg, r->errmsg_size, "the ring's %d producer slots are all taken",
                  RING_MAX_PRODUCERS);
        rc = RK_EPRODUCERS;
        goto out;
    }
    slot->pid = pid;
    slot->start_time = ring_process_start_time(pid);
    slot->attach_ns = seg_now_ns(CLOCK_REALTIME);
    *session = atomic_fetch_add(&slot->session, 1) + 1;
    atomic_store(&slot->claim_pos, CLAIM_NONE);
    atomic_store(&slot->state, SLOT_ATTACHED);
    r->slot = slot;
    r->producer = (uint16_t)(slot - h->producers);
out:
    pthread_mutex_unlock(&h->dir_lock);
    return rc;
}

int rk_ring_attach(const char *ring_name, const rk_ring_opts *opts, rk_ring **out)
{
    static const rk_ring_opts defaults = {0};
    const char *producer;
    struct frame_attach attach = {0};
    rk_ring *r = NULL;
    uint64_t session = 0;
    int rc;

    if (!opts)
        opts = &defaults;
    if (!out)
        return RK_EINVAL;
    *out = NULL;
    producer = opts->producer ? opts->producer : "default";
    if (seg_check_name(producer, opts->errmsg, opts->errmsg_size) ||
        (opts->full_policy != RK_FULL_WAIT && opts->full_policy != RK_FULL_FAIL)) {
        if (opts->full_policy != RK_FULL_WAIT && opts->full_policy != RK_FULL_FAIL)
            seg_error(opts->errmsg, opts->errmsg_size,
                      "full_policy %d is neither RK_FULL_WAIT nor "
                      "RK_FULL_FAIL",
                      opts->full_policy);
        return RK_EINVAL;
    }
    r = calloc(1, sizeof *r);
    if (!r)
        return ENOMEM;
    r->fd = -1;
    r->errmsg = opts->errmsg;
    r->errmsg_size = opts->errmsg_size;
    r->full_policy = opts->full_policy;
    r->full_timeout_ms = opts->full_timeout_ms;
    rc = ring_map_existing(ring_name, 1, &r->fd, &r->hdr, &r->map_size, r->errmsg, r->errmsg_size);
    if (rc)
        goto fail;
    r->data = (uint8_t *)r->hdr + r->hdr->header_size;
    r->capacity = r->hdr->capacity;
    r->mask = r->capacity - 1;
    r->max_frame = r->hdr->max_frame;
    r->cached_head = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
    rc = register_producer(r, producer, &session);
    if (rc)
        goto fail;
    r->session = session;
    /* The ATTACH frame tells the node, in stream order, that a new session
     * of this producer begins: whatever it left open before is void. */
    attach.session = session;
    attach.pid = (uint32_t)getpid();
    rc = ring_write(r, FRAME_ATTACH, 0, producer, (uint32_t)strlen(producer), &attach, sizeof attach, NULL);
    if (rc) {
        set_err(r, "cannot write the ATTACH record: the ring is full and the node is not draining it");
        atomic_store(&r->slot->state, SLOT_DETACHED);
        goto fail;
    }
    *out = r;
    return 0;
fail:
    if (r->hdr)
        munmap(r->hdr, r->map_size);
    if (r->fd >= 0)
        close(r->fd);
    free(r);
    return rc;
}

void rk_ring_detach(rk_ring *r)
{
    if (!r)
        return;
    if (r->slot && r->group_open && r->slot->pid == (uint32_t)getpid()) {
        /* A group left open is void (rk_ring_detach's contract): an
         * ATTACH frame of this session with RING_ATTACH_DETACH says so in
         * stream order, as a re-attach would.  Without it the node held
         * the group until the name attached again: apply's restart point
         * and the journal's trim floor stayed before it, and the drain
         * took this producer for one in the middle of a group, so every
         * entry waited batch_time_us for its MARK.  At most a second's
         * wait for room; without room (the node not draining) the group
         * stays open until the name attaches again, as before. */
        struct frame_attach attach = {
            .session = r->session, .pid = (uint32_t)getpid(), .flags = RING_ATTACH_DETACH};
        char name[RK_NAME_MAX + 1];
        memcpy(name, r->slot->name, RK_NAME_MAX);
        name[RK_NAME_MAX] = '\0';
        r->full_policy = RK_FULL_WAIT;
        r->full_timeout_ms = 1000;
        (void)ring_write(r, FRAME_ATTACH, 0, name, (uint32_t)strlen(name), &attach, sizeof attach, NULL);
    }
    if (r->slot && ring_dir_lock(r->hdr) == 0) {
        if (r->slot->pid == (uint32_t)getpid())
            atomic_store(&r->slot->state, SLOT_DETACHED);
        pthread_mutex_unlock(&r->hdr->dir_lock);
    }
    munmap(r->hdr, r->map_size);
    close(r->fd);
    free(r);
}
