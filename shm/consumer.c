/* consumer.c -- the owner's side of the ring: create, consume in order,
 * release space, unblock dead producers, advance the durable cursors.
 *
 * The state of the position the consumer reads next (read_pos):
 *
 *            producer claims                 producer commits
 *   EMPTY ------------------> CLAIMED ------------------------> COMMITTED
 *   (word 0, pos == tail)     (word 0 or CLAIMED|size,           (word = length)
 *                              pos < tail)                            |
 *                                 | stuck > unblock timeout and       | ring_next() verifies,
 *                                 | its process is gone:              | delivers, read_pos +=
 *                                 | unblock_*() pads it in place,     v
 *                                 | queues an ABORT                CONSUMED --ring_release()-->
 *                                 +--------------------------->  zeroed, head moves: EMPTY
 *
 * A dead claim stays dead: it is turned into a PAD frame in the ring
 * before read_pos moves past it, so a consumer that reads it again (the
 * node killed after journaling the ABORT, before ring_release() moved
 * head) skips it instead of reporting the producer again, perhaps after
 * that producer attached anew.  The producer's slot is marked SLOT_DEAD
 * only by ring_release(), once the caller has made the ABORT durable; a
 * consumer killed before that leaves the slot attached, with no claim
 * announced, and the next consumer's ring_sweep_dead() reports it.
 *
 * Every frame is checked before it is delivered (lengths against the data
 * area and the tail, type, lsn == position, checksum).  A bad frame stops
 * the consumer with RK_ECORRUPT and a message; it never guesses past it.
 * ring_next() checks a data frame in one pass over its header words
 * (decode_fast); whatever that does not accept goes the general way
 * (next_general: padding, stuck claims, ABORTs, and every refusal).
 *
 * Threads: one consumer thread per ring; ring_set_durable() and
 * ring_set_replicated() may be called from other threads.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shm/ring.h"
#include "shm/segment.h"

#define ABORT_FRAME_SIZE (FRAME_HEADER_SIZE + 8)
#define WAKE_ROOM (256u * 1024) /* room that wakes producers waiting for it (worth_a_wake) */
#define CONSUMER_PREFETCH 1024  /* bytes past read_pos asked for after each frame (taken) */
/* bounds a wake lost to a producer's fence-free check (wake_consumer in
 * ring.c); a producer that waits for its records (rk_wait) checks with a
 * fence and loses no wake, so the slice delays only records nobody waits
 * for.  It was 1 ms: an idle primary then woke 1000 times a second, 3-4%
 * of a core here (issue 13) */
#define SLEEP_SLICE_MS 10
/* polls for this long before sleeping: a frame being written shows up
 * within it, and an idle consumer does not burn a core that producers and
 * the node's other threads need (a ~1 ms spin after every batch was half
 * of a primary's CPU per record at batches of 100: issue 13) */
#define SPIN_BEFORE_SLEEP_NS 50000
/* ring_wait_idle stops spinning after this many idle waits in a row that
 * a spin did not end (the next frame came later than SPIN_BEFORE_SLEEP_NS),
 * and spins again after one that a spin would have ended */
#define IDLE_SPIN_MISSES 8
#define SPIN_PAUSES                                                                                          \
    128 /* pauses before the first poll, doubling up to 8                                                    \
           times that (a pause is 20-140 cycles) */

struct ring_owner {
    struct ring_header *hdr;
    uint8_t *data;
    size_t map_size;
    int fd;
    uint64_t mask;
    uint64_t capacity;
    uint64_t read_pos;    /* next position to read; head <= read_pos <= tail (R1) */
    uint64_t stuck_pos;   /* position where a claim was first seen stuck */
    uint64_t stuck_since; /* CLOCK_MONOTONIC_COARSE ns of that */
    uint64_t cached_tail; /* our last read of hdr->tail */
    int corrupt;          /* ring_next() found corruption at read_pos */
    uint32_t n_aborts;    /* ABORT frames made since the last release */
    uint32_t n_pending;   /* of them, not yet delivered */
    uint32_t idle_misses; /* idle waits in a row a spin did not end (ring_wait_idle) */
    uint8_t aborts[RING_MAX_PRODUCERS][ABORT_FRAME_SIZE];
    char name[RK_NAME_MAX + 1];
    char err[512];
    pthread_mutex_t cursor_lock; /* R9: the fence and the moves of durable_lsn/replicated_lsn */
    /* The leader lease (automatic failover, node/ha.c), under cursor_lock:
     * with ack_limited, a cursor moves only while CLOCK_BOOTTIME is below
     * ack_deadline_ns; a move asked after it is kept in held_durable /
     * held_replicated and made when a renewed lease sets a later deadline
     * (ring_set_ack_deadline). */
    int ack_limited;
    uint64_t ack_deadline_ns;
    uint64_t held_durable, held_replicated;
};

static void take_ownership(ring_owner *o, uint64_t epoch)
{
    struct ring_header *h = o->hdr;
    uint32_t pid = (uint32_t)getpid();

    atomic_store(&h->epoch, epoch);
    atomic_store(&h->owner_start_time, ring_process_start_time(pid));
    atomic_store(&h->owner_pid, pid);
    o->read_pos = atomic_load_explicit(&h->head, memory_order_acquire); /* R1 */
    o->stuck_pos = UINT64_MAX;
    /* An earlier consumer that died between zeroing released space and
     * moving head left frames it had consumed half-zeroed: finish that
     * release (R4).  Zeroing again is harmless: producers do not write
     * between head and release_to before head moves (R2). */
    uint64_t release_to = atomic_load_explicit(&h->release_to, memory_order_relaxed);
    if (release_to > o->read_pos && release_to <= atomic_load(&h->tail) &&
        release_to - o->read_pos <= o->capacity && release_to % FRAME_ALIGN == 0) {
        o->read_pos = release_to;
        ring_release(o);
    }
}

static int init_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    int rc;

    rc = pthread_mutexattr_init(&attr);
    if (rc)
        return rc;
    rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (!rc)
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (!rc)
        rc = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    return rc;
}

int ring_create(const char *name, const ring_create_opts *opts, ring_owner **out, char *err, size_t err_size)
{
    char path[128];
    ring_owner *o = NULL;
    struct ring_header *h;
    uint64_t start;
    int rc, created = 0;

    *out = NULL;
    rc = seg_check_name(name, err, err_size);
    if (rc)
        return rc;
    if (!opts || opts->capacity < RING_MIN_CAPACITY || opts->capacity > RING_MAX_CAPACITY ||
        (opts->capacity & (opts->capacity - 1))) {
        seg_error(err, err_size, "ring capacity %llu must be a power of two from %u to %llu bytes",
                  opts ? (unsigned long long)opts->capacity : 0ull, RING_MIN_CAPACITY,
                  (unsigned long long)RING_MAX_CAPACITY);
        return RK_EINVAL;
    }
    start = opts->start_lsn ? frame_align(opts->start_lsn) : FRAME_ALIGN;
    if (start < opts->start_lsn || start > UINT64_MAX / 2) {
        seg_error(err, err_size, "start LSN %llu out of range", (unsigned long long)opts->start_lsn);
        return RK_EINVAL;
    }
    o = calloc(1, sizeof *o);
    if (!o)
        return ENOMEM;
    o->fd = -1;
    pthread_mutex_init(&o->cursor_lock, NULL);
    seg_path(name, path, sizeof path);
    o->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (o->fd < 0) {
        rc = errno;
        if (rc == EEXIST) {
            rc = RK_EEXIST;
            seg_error(err, err_size,
                      "ring '%s' already exists (%s): take it over, or remove it if "
                      "no node uses it",
                      name, path);
        } else {
            seg_error(err, err_size, "cannot create %s: %s", path, strerror(rc));
        }
        goto fail;
    }
    created = 1;
    o->map_size = RING_HEADER_SIZE + opts->capacity;
    /* fchmod: the mode is 0600 whatever the umask; posix_fallocate: a full
     * /dev/shm fails here, not later with SIGBUS in an engine */
    if (fchmod(o->fd, 0600) != 0 || (rc = posix_fallocate(o->fd, 0, (off_t)o->map_size)) != 0) {
        rc = rc ? rc : errno;
        seg_error(err, err_size, "cannot size %s to %zu bytes: %s", path, o->map_size, strerror(rc));
        goto fail;
    }
    h = mmap(NULL, o->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, o->fd, 0);
    if (h == MAP_FAILED) {
        rc = errno;
        seg_error(err, err_size, "cannot map %s: %s", path, strerror(rc));
        goto fail;
    }
    o->hdr = h;
    o->data = (uint8_t *)h + RING_HEADER_SIZE;
    o->capacity = opts->capacity;
    o->mask = opts->capacity - 1;
    h->format = RING_FORMAT;
    h->header_size = RING_HEADER_SIZE;
    h->capacity = opts->capacity;
    h->start_lsn = start;
    h->created_ns = seg_now_ns(CLOCK_REALTIME);
    h->owner_uid = (uint32_t)geteuid();
    h->unblock_timeout_ms = opts->unblock_timeout_ms ? opts->unblock_timeout_ms : RING_DEFAULT_UNBLOCK_MS;
    h->max_frame = opts->capacity / 4 < FRAME_MAX_LENGTH ? (uint32_t)(opts->capacity / 4) : FRAME_MAX_LENGTH;
    atomic_store(&h->tail, start);
    atomic_store(&h->head, start);
    atomic_store(&h->durable_lsn, start - 1);
    atomic_store(&h->replicated_lsn, start - 1);
    rc = init_mutex(&h->dir_lock);
    if (rc) {
        seg_error(err, err_size, "cannot initialise the directory mutex: %s", strerror(rc));
        goto fail;
    }
    take_ownership(o, opts->epoch);
    snprintf(o->name, sizeof o->name, "%s", name);
    /* release: every field above is visible before the magic that makes
     * the segment valid to attachers */
    atomic_store_explicit(&h->magic, RING_MAGIC, memory_order_release);
    *out = o;
    return 0;
fail:
    if (o->hdr)
        munmap(o->hdr, o->map_size);
    if (o->fd >= 0)
        close(o->fd);
    if (created)
        unlink(path);
    free(o);
    return rc;
}

int ring_reopen(const char *name, uint64_t epoch, ring_owner **out, char *err, size_t err_size)
{
    ring_owner *o;
    struct ring_header *h;
    uint32_t owner;
    int rc;

    *out = NULL;
    o = calloc(1, sizeof *o);
    if (!o)
        return ENOMEM;
    o->fd = -1;
    pthread_mutex_init(&o->cursor_lock, NULL);
    rc = ring_map_existing(name, 1, &o->fd, &o->hdr, &o->map_size, err, err_size);
    if (rc)
        goto fail;
    h = o->hdr;
    owner = atomic_load(&h->owner_pid);
    if (owner && owner != (uint32_t)getpid() &&
        ring_process_alive(owner, atomic_load(&h->owner_start_time))) {
        rc = RK_EBUSY;
        seg_error(err, err_size, "ring '%s' is owned by the live node pid %u: stop it first", name, owner);
        goto fail;
    }
    o->data = (uint8_t *)h + h->header_size;
    o->capacity = h->capacity;
    o->mask = h->capacity - 1;
    snprintf(o->name, sizeof o->name, "%s", name);
    take_ownership(o, epoch);
    *out = o;
    return 0;
fail:
    if (o->hdr)
        munmap(o->hdr, o->map_size);
    if (o->fd >= 0)
        close(o->fd);
    free(o);
    return rc;
}

void ring_close(ring_owner *o, int unlink_segment)
{
    if (!o)
        return;
    if (atomic_load(&o->hdr->owner_pid) == (uint32_t)getpid())
        atomic_store(&o->hdr->owner_pid, 0);
    munmap(o->hdr, o->map_size);
    close(o->fd);
    if (unlink_segment)
        ring_unlink(o->name);
    pthread_mutex_destroy(&o->cursor_lock);
    free(o);
}

uint64_t ring_read_pos(const ring_owner *o)
{
    return o->read_pos;
}

const char *ring_error(const ring_owner *o)
{
    return o->err;
}
struct ring_header *ring_header_of(ring_owner *o)
{
    return o->hdr;
}
uint8_t *ring_data_of(ring_owner *o)
{
    return o->data;
}

static inline _Atomic uint32_t *word_at(ring_owner *o, uint64_t pos)
{
    return (_Atomic uint32_t *)(o->data + (pos & o->mask));
}

static int corrupt_at(ring_owner *o, uint64_t pos, const char *why)
{
    o->corrupt = 1;
    atomic_fetch_add_explicit(&o->hdr->n_corrupt, 1, memory_order_relaxed);
    seg_error(o->err, sizeof o->err,
              "ring '%s': corrupt frame at position %" PRIu64 ": %s; the ring "
              "stops here, nothing before it is lost",
              o->name, pos, why);
    return RK_ECORRUPT;
}

/* The producer id and session an ABORT frame made by queue_abort() names. */
static void abort_names(const uint8_t *frame, uint16_t *id, uint64_t *session)
{
    struct frame_header h;

    memcpy(&h, frame, sizeof h);
    *id = h.producer;
    *session = 0;
    for (int i = 0; i < 8; i++)
        *session |= (uint64_t)frame[FRAME_HEADER_SIZE + i] << (8 * i);
}

/* Queues an ABORT frame for session `session` of slot id at position pos,
 * unless one for that session is queued already (since the last release).
 * Returns 1 if queued. */
static int queue_abort(ring_owner *o, uint16_t id, uint64_t session, uint64_t pos)
{
    uint8_t le[8];

    for (uint32_t i = 0; i < o->n_aborts; i++) {
        uint16_t qid;
        uint64_t qsession;
        abort_names(o->aborts[i], &qid, &qsession);
        if (qid == id && qsession == session)
            return 0;
    }
    if (o->n_aborts >= RING_MAX_PRODUCERS)
        return 0; /* cannot happen: at most one per slot between releases */
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(session >> (8 * i));
    frame_encode(o->aborts[o->n_aborts++], FRAME_ABORT, 0, id, pos, NULL, 0, le, 8);
    o->n_pending++;
    return 1;
}

/* Marks the producers of the first n_delivered queued ABORT frames dead,
 * where the session an ABORT names still holds its slot: nobody reports
 * them again.  Called by ring_release(), after the caller made the frames
 * durable.  Under dir_lock, so that a producer attaching at this moment is
 * never marked. */
static void mark_reported(ring_owner *o, uint32_t n_delivered)
{
    struct ring_header *h = o->hdr;

    if (n_delivered == 0 || ring_dir_lock(h) != 0)
        return; /* (not marked: ring_sweep_dead reports it again; apply
                   ignores an ABORT below the last one) */
    for (uint32_t i = 0; i < n_delivered; i++) {
        uint16_t id;
        uint64_t session;
        uint32_t attached = SLOT_ATTACHED;
        abort_names(o->aborts[i], &id, &session);
        if (atomic_load(&h->producers[id].session) == session)
            atomic_compare_exchange_strong(&h->producers[id].state, &attached, SLOT_DEAD);
    }
    pthread_mutex_unlock(&h->dir_lock);
}

static int slot_alive(const struct ring_producer_slot *s)
{
    return atomic_load(&s->state) == SLOT_ATTACHED && ring_process_alive(s->pid, s->start_time);
}

static void count_unblocked(ring_owner *o, uint64_t bytes)
{
    atomic_fetch_add_explicit(&o->hdr->n_unblocked, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&o->hdr->n_unblocked_bytes, bytes, memory_order_relaxed);
}

/* Turns the dead claim at pos, marked CLAIMED | size, into a PAD frame of
 * size bytes in place.  Each step is complete before the next, so a
 * consumer killed between two leaves a state the next one handles:
 *   1. the type byte PAD (flags and table 0) under the claim marker: a
 *      producer never writes PAD there, so a marker with it means "found
 *      dead, being padded" (unblock_marked finishes it);
 *   2. the marker's lsn, producer, session and klen zeroed: a PAD's header
 *      is zero past its type;
 *   3. the commit word = size: a committed PAD, which ring_next() skips. */
static void pad_claim(ring_owner *o, uint64_t pos, uint32_t size)
{
    uint8_t *p = o->data + (pos & o->mask);

    /* relaxed: ordered before step 2 by the fence below */
    atomic_store_explicit((_Atomic uint32_t *)(p + 4), (uint32_t)FRAME_PAD, memory_order_relaxed);
    /* release fence: step 1 lands before step 2's stores */
    atomic_thread_fence(memory_order_release);
    memset(p + 8, 0, FRAME_HEADER_SIZE - 8);
    /* release: steps 1 and 2 land before the PAD is committed */
    atomic_store_explicit((_Atomic uint32_t *)p, size, memory_order_release);
}

/* Commits PAD frames over the unmarked dead span [pos, pos + len) in
 * place, split at the end of the data area (pieces are multiples of 8).
 * The commit word of each piece is 0 until its header is zeroed (a dead
 * producer may have stored a marker's fields without the marker). */
static void pad_span(ring_owner *o, uint64_t pos, uint64_t len)
{
    while (len) {
        uint64_t idx = pos & o->mask;
        uint64_t piece = o->capacity - idx < len ? o->capacity - idx : len;
        uint8_t *p = o->data + idx;

        memset(p + 4, 0, (piece < FRAME_HEADER_SIZE ? piece : FRAME_HEADER_SIZE) - 4);
        p[4] = FRAME_PAD;
        /* release: the zeroed header and the type land before the length
         * commits the PAD */
        atomic_store_explicit((_Atomic uint32_t *)p, (uint32_t)piece, memory_order_release);
        pos += piece;
        len -= piece;
    }
}

/* A claim marked at read_pos has been stuck past the unblock timeout.  It
 * is dead if the session that wrote the marker no longer holds the slot,
 * or its process is gone; then it is padded in place (pad_claim, R8) and
 * the producer reported, if it is still attached.  Returns 1 when read_pos
 * moved past it, 0 when it must still wait, or RK_ECORRUPT. */
static int unblock_marked(ring_owner *o, uint64_t tail, uint32_t word)
{
    uint64_t pos = o->read_pos, idx = pos & o->mask;
    const struct frame_header *f = (const struct frame_header *)(o->data + idx);
    uint32_t size = word & ~FRAME_CLAIMED;
    uint16_t id = f->producer;
    uint64_t session = f->checksum; /* the marker keeps the session there */
    struct ring_producer_slot *s;

    if (size < FRAME_HEADER_SIZE || size % FRAME_ALIGN || size > o->hdr->max_frame ||
        idx + size > o->capacity || size > tail - pos)
        return corrupt_at(o, pos, "claim marker with an impossible size, lsn or producer");
    if (f->type == FRAME_PAD) {
        /* an earlier consumer found it dead and was killed padding it:
         * finish (its producer is still attached with no claim announced,
         * so ring_sweep_dead reports it if that ABORT was not journaled) */
        pad_claim(o, pos, size);
        o->read_pos = pos + size;
        return 1;
    }
    if (f->lsn != pos || id >= RING_MAX_PRODUCERS)
        return corrupt_at(o, pos, "claim marker with an impossible size, lsn or producer");
    s = &o->hdr->producers[id];
    if (atomic_load(&s->session) == session) {
        if (slot_alive(s))
            return 0;
        if (atomic_load(&s->state) == SLOT_ATTACHED)
            queue_abort(o, id, session, pos); /* not if reported or detached */
    } else {
        /* that session is over: the producer re-attached, and its ATTACH
         * frame voids the rest of the old session's group anyway */
        queue_abort(o, id, session, pos);
    }
    pad_claim(o, pos, size);
    o->read_pos = pos + size;
    count_unblocked(o, size);
    return 1;
}

/* The dead producer in slot id no longer announces its claim: from here
 * on ring_sweep_dead() can find it (the claim is about to be padded and
 * hidden from any later consumer).  Under dir_lock, and only while the
 * same dead session holds the slot.  Returns 1 with its session. */
static int forget_claim(ring_owner *o, uint16_t id, uint64_t *session)
{
    struct ring_header *h = o->hdr;
    struct ring_producer_slot *s = &h->producers[id];
    int dead;

    if (ring_dir_lock(h) != 0)
        return 0;
    dead = atomic_load(&s->state) == SLOT_ATTACHED && !ring_process_alive(s->pid, s->start_time);
    if (dead) {
        *session = atomic_load(&s->session);
        /* release: stored before the padding (pad_span's release stores) */
        atomic_store_explicit(&s->claim_pos, CLAIM_NONE, memory_order_release);
    }
    pthread_mutex_unlock(&h->dir_lock);
    return dead;
}

/* No marker at read_pos: a producer claimed the space (tail is past it)
 * and has not written its marker after the unblock timeout.  Whose claim?
 * A live producer's claim is announced in its slot (claim_pos) from before
 * its fetch-add until after its marker (R7).  If no live producer's claim
 * covers read_pos, the claim is a dead process's: it ends where the next
 * frame starts, which is the next non-zero word (unclaimed bytes are zero,
 * R4), the start of a live producer's claim, or tail, whichever comes
 * first.  It is padded in
 * place, and dead producers that were claiming are reported.  Returns 1, 0
 * or RK_ECORRUPT as above. */
static int unblock_unmarked(ring_owner *o, uint64_t tail)
{
    uint64_t pos = o->read_pos, limit = tail, end;
    uint16_t dead[RING_MAX_PRODUCERS];
    uint64_t sessions[RING_MAX_PRODUCERS];
    int n_dead = 0;

    for (uint16_t i = 0; i < RING_MAX_PRODUCERS; i++) {
        struct ring_producer_slot *s = &o->hdr->producers[i];
        /* acquire: pairs with the producer's release stores of claim_pos,
         * so claim_len, and a marker written before CLAIM_NONE, are seen */
        uint64_t cp = atomic_load_explicit(&s->claim_pos, memory_order_acquire);
        uint64_t len = atomic_load_explicit(&s->claim_len, memory_order_relaxed);
        int covers = cp == CLAIM_UNKNOWN || (cp != CLAIM_NONE && cp <= pos && pos - cp < len);

        if (cp == CLAIM_NONE || atomic_load(&s->state) != SLOT_ATTACHED)
            continue;
        if (slot_alive(s)) {
            if (covers)
                return 0; /* a live producer between its fetch-add and its marker */
            if (cp > pos && cp < limit)
                limit = cp;
        } else if (covers) {
            dead[n_dead++] = i;
        }
    }
    /* acquire: a claim that ended after we looked at its slot left its
     * marker (or padding) here */
    if (atomic_load_explicit(word_at(o, pos), memory_order_acquire) != 0)
        return 1; /* not stuck any more: read it normally */
    for (end = pos + FRAME_ALIGN; end < limit; end += FRAME_ALIGN) {
        if (atomic_load_explicit(word_at(o, end), memory_order_acquire) != 0)
            break;
    }
    /* end <= limit <= tail.  Reaching tail, the span [pos, tail) is dead
     * claims alone: a live claim in it would be announced (R7; tail was
     * read with acquire before the slots), and a claim made since starts
     * at tail or later.  (It was left waiting until a frame followed it:
     * a producer killed right after its fetch-add, with nothing written
     * after it, held the drain there, and its group open, for as long as
     * no other producer wrote.) */
    if (end - pos > o->hdr->max_frame * 2u)
        return corrupt_at(o, pos, "zeroed span longer than any claim");
    for (int i = 0; i < n_dead; i++)
        if (!forget_claim(o, dead[i], &sessions[i]))
            dead[i] = RING_MAX_PRODUCERS; /* re-attached meanwhile: its ATTACH voids */
    pad_span(o, pos, end - pos);
    /* LSNs pos, pos + 1, ...: unique (no frame starts inside the skipped
     * space) and in order.  More than 8 dead at one position: the rest
     * are found by ring_sweep_dead (their claims are forgotten above). */
    for (int i = 0, n = 0; i < n_dead && n < (int)FRAME_ALIGN; i++)
        if (dead[i] < RING_MAX_PRODUCERS)
            n += queue_abort(o, dead[i], sessions[i], pos + (uint64_t)n);
    o->read_pos = end;
    count_unblocked(o, end - pos);
    return 1;
}

int ring_sweep_dead(ring_owner *o)
{
    struct ring_header *h = o->hdr;
    struct swept {
        uint16_t id;
        uint64_t lsn, session;
    } found[RING_MAX_PRODUCERS];
    int n = 0, n_queued = 0;

    /* under dir_lock: a producer attaching now is not taken for the dead
     * session it replaces (its session, pid and state change together) */
    if (ring_dir_lock(h) != 0)
        return 0;
    for (uint16_t i = 0; i < RING_MAX_PRODUCERS; i++) {
        struct ring_producer_slot *s = &h->producers[i];
        /* relaxed: the process is gone, its last stores are long visible */
        uint64_t last = atomic_load_explicit(&s->last_lsn, memory_order_relaxed);
        if (atomic_load(&s->state) != SLOT_ATTACHED || slot_alive(s) ||
            atomic_load(&s->claim_pos) != CLAIM_NONE || last >= o->read_pos)
            continue; /* alive, or its claim or frames are still ahead */
        found[n].id = i;
        found[n].lsn = last + 1; /* no frame has it (frames are 8-aligned) */
        found[n].session = atomic_load(&s->session);
        for (int j = n++; j > 0 && found[j - 1].lsn > found[j].lsn; j--) {
            struct swept t = found[j];
            found[j] = found[j - 1];
            found[j - 1] = t;
        }
    }
    pthread_mutex_unlock(&h->dir_lock);
    for (int i = 0; i < n; i++)
        n_queued += queue_abort(o, found[i].id, found[i].session, found[i].lsn);
    return n_queued;
}

/* read_pos holds no committed frame.  Returns 0 (empty, or a claim still
 * in progress), 1 (a dead claim was skipped: read on), or RK_ECORRUPT. */
static int not_committed(ring_owner *o, uint32_t word)
{
    struct ring_header *h = o->hdr;
    uint64_t pos = o->read_pos, tail;
    /* coarse clock: a few ns, and the timeout is tens of ms at least */
    uint64_t now = seg_now_ns(CLOCK_MONOTONIC_COARSE);
    int rc;

    if ((word & FRAME_CLAIMED) &&
        (word - FRAME_CLAIMED < FRAME_HEADER_SIZE || word % FRAME_ALIGN ||
         word - FRAME_CLAIMED > h->max_frame || (pos & o->mask) + (word - FRAME_CLAIMED) > o->capacity))
        return corrupt_at(o, pos, "claim marker with an impossible size, lsn or producer");
    if (o->stuck_pos != pos) {
        o->stuck_pos = pos;
        o->stuck_since = now;
        return 0;
    }
    /* tail is read only once the position has been quiet for the whole
     * unblock timeout: on the busy path it stays in the producers' caches */
    if (now - o->stuck_since < (uint64_t)h->unblock_timeout_ms * 1000000u)
        return 0;
    o->stuck_since = now; /* look again one timeout later */
    /* acquire: the claims counted in tail are visible with their slots */
    tail = atomic_load_explicit(&h->tail, memory_order_acquire);
    if (tail == pos && word == 0)
        return 0; /* empty */
    /* R1, R2: tail is shared memory, so refused, not asserted */
    if (tail < pos || tail - atomic_load_explicit(&h->head, memory_order_relaxed) > ring_tail_allowance(h))
        return corrupt_at(o, pos, "tail cursor out of range");
    o->cached_tail = tail;
    rc = word & FRAME_CLAIMED ? unblock_marked(o, tail, word) : unblock_unmarked(o, tail);
    if (rc == 1)
        o->stuck_pos = UINT64_MAX;
    return rc;
}

/* Re-reads tail when a frame seems to reach past the last value we read. */
static int within_tail(ring_owner *o, uint64_t end)
{
    if (end <= o->cached_tail)
        return 1;
    /* acquire: the frame was claimed before tail was advanced past it */
    o->cached_tail = atomic_load_explicit(&o->hdr->tail, memory_order_acquire);
    return end <= o->cached_tail;
}

/* The common case of ring_next(): the committed data frame at pos (commit
 * word `length`) checked in one pass over its header, read as four words,
 * instead of frame_decode()'s field by field and ring_next()'s checks
 * after it.  It accepts only what those accept (PUT, DEL, MARK, ATTACH with
 * every field in range, lsn == pos, inside the tail we know and within one
 * capacity of head, checksum right) and fills *f as frame_decode() would.
 * Anything else returns 0 with nothing changed but cached_tail: the
 * general path looks again and words the reason of a refusal. */
static inline int decode_fast(ring_owner *o, uint64_t pos, uint64_t head, uint32_t length, ring_frame *f)
{
    uint64_t idx = pos & o->mask, w[4], end = pos + frame_align(length);
    const uint8_t *p = o->data + idx;
    uint8_t type;
    uint32_t klen;
    int ok;

    if (o->capacity - idx < FRAME_HEADER_SIZE)
        return 0; /* no room for a header: padding at the end of the data area, or corrupt */
    /* plain loads: the caller's acquire load of the commit word made the
     * committed frame visible (R5) */
    memcpy(w, p, sizeof w);
    type = (uint8_t)(w[0] >> 32);
    klen = (uint32_t)(w[3] >> 32);
    /* w[0]: length, type, flags, table; w[3]: producer, reserved, klen */
    ok = length >= FRAME_HEADER_SIZE && length <= FRAME_MAX_LENGTH && length <= o->capacity - idx &&
         (w[0] >> 40 & 0xff) == 0 && (w[0] >> 48) < RING_MAX_TABLES && (w[3] & 0xffff0000u) == 0 &&
         (w[3] & 0xffff) < RING_MAX_PRODUCERS && klen <= length - FRAME_HEADER_SIZE && klen <= RK_KEY_MAX &&
         w[2] == pos && end - head <= o->capacity && within_tail(o, end);
    switch (type) {
    case FRAME_PUT:
    case FRAME_ATTACH:
        break;
    case FRAME_DEL:
        ok &= length == FRAME_HEADER_SIZE + klen;
        break;
    case FRAME_MARK:
        ok &= length == FRAME_HEADER_SIZE + 8 && klen == 0;
        break;
    default:
        return 0; /* PAD, or what the general path refuses */
    }
    if (!ok || XXH3_64bits_withSeed(p + 16, length - 16,
                                    frame_seed(length, type, 0, (uint16_t)(w[0] >> 48))) != w[1])
        return 0;
    f->type = type;
    f->flags = 0;
    f->table = (uint16_t)(w[0] >> 48);
    f->producer = (uint16_t)w[3];
    f->lsn = pos;
    f->key = p + FRAME_HEADER_SIZE;
    f->klen = klen;
    f->val = p + FRAME_HEADER_SIZE + klen;
    f->vlen = length - FRAME_HEADER_SIZE - klen;
    f->raw = p;
    f->raw_len = length;
    return 1;
}

/* read_pos moves past the frame of `length` bytes just decoded.  The
 * lines a little further on are asked for now, when they are claimed
 * (below the tail we know): a producer wrote them, and the transfer from
 * its core overlaps this frame's checks instead of stalling the next. */
static inline void taken(ring_owner *o, uint32_t length)
{
    o->read_pos += frame_align(length);
    if (o->read_pos + CONSUMER_PREFETCH < o->cached_tail) {
        const uint8_t *ahead = o->data + ((o->read_pos + CONSUMER_PREFETCH) & o->mask);
        __builtin_prefetch(ahead, 0, 3);
        __builtin_prefetch(ahead + RING_CACHE_LINE, 0, 3);
    }
    /* relaxed: a statistic; only this thread writes it */
    atomic_store_explicit(&o->hdr->n_consumed,
                          atomic_load_explicit(&o->hdr->n_consumed, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* ring_next() for everything but a data frame ready at read_pos: ABORT
 * frames queued, a corrupt ring, nothing committed yet (a stuck claim
 * timed and unblocked), padding, and refusals with their reason. */
__attribute__((noinline)) static int next_general(ring_owner *o, ring_frame *f)
{
    struct ring_header *h = o->hdr;
    char why[200];

    for (;;) {
        uint64_t pos = o->read_pos, idx = pos & o->mask, head;
        uint32_t word;
        int rc;

        if (o->n_pending) {
            uint8_t *a = o->aborts[o->n_aborts - o->n_pending--];
            return frame_decode(a, ABORT_FRAME_SIZE, f, NULL, 0) == 0 ? 1 : RK_ECORRUPT;
        }
        if (o->corrupt)
            return RK_ECORRUPT; /* stopped for good at read_pos */
        /* relaxed: head is ours.  A whole capacity read and not released:
         * the next bytes are the ones already read; release first (R2). */
        head = atomic_load_explicit(&h->head, memory_order_relaxed);
        assert(head <= pos && pos % FRAME_ALIGN == 0); /* R1 */
        if (pos - head >= o->capacity)
            return 0;
        /* acquire: pairs with the producer's release store of the commit
         * word; the frame's bytes are visible once the length is */
        word = atomic_load_explicit(word_at(o, pos), memory_order_acquire);
        if (word == 0 || (word & FRAME_CLAIMED)) {
            rc = not_committed(o, word);
            if (rc <= 0)
                return rc;
            continue;
        }
        o->stuck_pos = UINT64_MAX;
        if (decode_fast(o, pos, head, word, f)) {
            taken(o, word);
            return 1;
        }
        if (o->data[idx + 4] == FRAME_PAD) {
            if (!ring_pad_ok(o->data, o->capacity, idx, word) || !within_tail(o, pos + word))
                return corrupt_at(o, pos, "padding with an impossible length or contents");
            if (pos + word - head > o->capacity) /* R2: no claim ends past head + capacity */
                return corrupt_at(o, pos, "padding ends more than one capacity past the released head");
            o->read_pos += word;
            continue;
        }
        rc = frame_decode(o->data + idx, o->capacity - idx, f, why, sizeof why);
        if (rc)
            return corrupt_at(o, pos, why);
        if (f->lsn != pos)
            return corrupt_at(o, pos, "the frame's LSN is not its position");
        if (f->type == FRAME_ABORT || f->type == FRAME_TABLE)
            return corrupt_at(o, pos, "a frame only the node makes is in the ring");
        if (f->producer >= RING_MAX_PRODUCERS)
            return corrupt_at(o, pos, "frame names no valid producer");
        if (!within_tail(o, pos + frame_align(f->raw_len)))
            return corrupt_at(o, pos, "frame runs past the tail");
        if (pos + frame_align(f->raw_len) - head > o->capacity) /* R2, as for padding */
            return corrupt_at(o, pos, "frame ends more than one capacity past the released head");
        o->read_pos += frame_align(f->raw_len);
        /* relaxed: a statistic; only this thread writes it */
        atomic_store_explicit(&h->n_consumed, atomic_load_explicit(&h->n_consumed, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        return 1;
    }
}

int ring_next(ring_owner *o, ring_frame *f)
{
    uint64_t pos = o->read_pos, head;
    uint32_t word;

    if (__builtin_expect(o->n_pending == 0 && !o->corrupt, 1)) {
        /* relaxed: head is ours (as in next_general) */
        head = atomic_load_explicit(&o->hdr->head, memory_order_relaxed);
        assert(head <= pos && pos % FRAME_ALIGN == 0); /* R1 */
        /* acquire: pairs with the producer's release store of the commit
         * word; the frame's bytes are visible once the length is */
        word = atomic_load_explicit(word_at(o, pos), memory_order_acquire);
        if (pos - head < o->capacity && word != 0 && !(word & FRAME_CLAIMED) &&
            decode_fast(o, pos, head, word, f)) {
            o->stuck_pos = UINT64_MAX;
            taken(o, word);
            return 1;
        }
    }
    return next_general(o, f);
}

/* 1 if ring_next() has something to look at without waiting. */
static int ready(ring_owner *o)
{
    /* acquire: as in ring_next() */
    uint32_t word = atomic_load_explicit(word_at(o, o->read_pos), memory_order_acquire);

    return o->n_pending || o->corrupt || (word != 0 && !(word & FRAME_CLAIMED));
}

/* ring_wait_ready, spinning for up to spin_ns before it sleeps; *waited_ns:
 * how long it took. */
static int wait_ready(ring_owner *o, int timeout_ms, uint64_t spin_ns, uint64_t *waited_ns)
{
    struct ring_header *h = o->hdr;
    uint64_t start = seg_now_ns(CLOCK_MONOTONIC), now;
    uint64_t deadline = start + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    int rc;

    /* relaxed: head is ours.  Nothing can be read before a release. */
    if (o->read_pos - atomic_load_explicit(&h->head, memory_order_relaxed) >= o->capacity) {
        rc = 0;
        goto out;
    }
    for (int spin = 0;; spin++) {
        uint32_t seq;
        int slice_ms;

        /* the caller has just found nothing: look again only after a pause */
        if (spin > 0 && ready(o)) {
            rc = 1;
            goto out;
        }
        now = seg_now_ns(CLOCK_MONOTONIC); /* vDSO; polls are >= SPIN_PAUSES pauses apart */
        if (timeout_ms <= 0 || now >= deadline) {
            /* a claim that is not moving needs ring_next() to time it */
            rc = atomic_load_explicit(&h->tail, memory_order_acquire) != o->read_pos;
            goto out;
        }
        if (now - start < spin_ns) {
            /* poll the frame being written only now and then, less and
             * less often: each look takes its cache line away from the
             * producer writing it, and a later look finds more to read */
            int n_pauses = SPIN_PAUSES << (spin < 3 ? spin : 3);
            for (int i = 0; i < n_pauses; i++)
                __builtin_ia32_pause();
            continue;
        }
        /* never past the deadline: a short wait stays short */
        slice_ms = (int)((deadline - now + 999999u) / 1000000u);
        if (slice_ms > SLEEP_SLICE_MS)
            slice_ms = SLEEP_SLICE_MS;
        atomic_store_explicit(&h->consumer_sleeping, 1, memory_order_relaxed);
        /* seq_cst fence: the sleeping flag is visible before we re-check
         * the commit word (see wake_consumer() in ring.c for the other side) */
        atomic_thread_fence(memory_order_seq_cst);
        seq = atomic_load_explicit(&h->consumer_seq, memory_order_acquire);
        if (!ready(o))
            ring_futex_wait(&h->consumer_seq, seq, slice_ms);
        atomic_store_explicit(&h->consumer_sleeping, 0, memory_order_relaxed);
    }
out:
    /* now again: after a sleep, the last reading is from before it */
    *waited_ns = seg_now_ns(CLOCK_MONOTONIC) - start;
    return rc;
}

int ring_wait_ready(ring_owner *o, int timeout_ms)
{
    uint64_t waited_ns;

    return wait_ready(o, timeout_ms, SPIN_BEFORE_SLEEP_NS, &waited_ns);
}

int ring_wait_idle(ring_owner *o, int timeout_ms)
{
    uint64_t waited_ns;
    int spin = o->idle_misses < IDLE_SPIN_MISSES;
    int rc = wait_ready(o, timeout_ms, spin ? SPIN_BEFORE_SLEEP_NS : 0, &waited_ns);

    /* waited_ns is measured when the wait ends: a frame found at once
     * after a sleep counts as one a spin would have found */
    if (rc && waited_ns < SPIN_BEFORE_SLEEP_NS)
        o->idle_misses = 0;
    else if (o->idle_misses < IDLE_SPIN_MISSES)
        o->idle_misses++;
    return rc;
}

/* Whether the release about to move head to read_pos should wake the
 * producers waiting for room (a system call, and in a VM an interrupt to
 * the other CPU: made at every release of a full ring, it was a quarter of
 * the consumer's CPU in bench_ring with two producers, which woke for a
 * sliver of room, filled it and slept again).  It does when the ring will have
 * WAKE_ROOM bytes free (capacity / 8 in a small ring), or when nothing
 * committed waits at read_pos: then the consumer may release nothing more
 * until producers write, so it must not leave them asleep.  Otherwise
 * frames are there to read, and a later release wakes them.  Relaxed
 * loads: a guess either way; a waiter also wakes at its sleep slice. */
static int worth_a_wake(ring_owner *o)
{
    uint64_t room = o->capacity / 8 < WAKE_ROOM ? o->capacity / 8 : WAKE_ROOM;
    uint64_t tail = atomic_load_explicit(&o->hdr->tail, memory_order_relaxed);
    uint32_t word = atomic_load_explicit(word_at(o, o->read_pos), memory_order_relaxed);

    return o->read_pos + o->capacity - tail >= room || word == 0 || (word & FRAME_CLAIMED);
}

void ring_release(ring_owner *o)
{
    struct ring_header *h = o->hdr;
    uint64_t head = atomic_load_explicit(&h->head, memory_order_relaxed);
    uint64_t len = o->read_pos - head, idx = head & o->mask;

    assert(head <= o->read_pos && o->read_pos % FRAME_ALIGN == 0); /* R1 */
    if (len) {
        uint64_t first = o->capacity - idx < len ? o->capacity - idx : len;
        /* relaxed: only consumers read release_to, and only after taking
         * ownership from a dead one (take_ownership) */
        atomic_store_explicit(&h->release_to, o->read_pos, memory_order_relaxed);
        /* restore "unclaimed bytes are zero" (R4) before producers may
         * reuse them; the caller journaled every frame below read_pos (R6) */
        memset(o->data + idx, 0, first);
        memset(o->data, 0, len - first);
        seg_cursor_move(&h->head, &h->head_seq, &h->n_head_waiters, o->read_pos, worth_a_wake(o));
    }
    /* ABORT frames already delivered are released too (their producers
     * marked dead now: the caller made them durable, R8); keep the rest */
    mark_reported(o, o->n_aborts - o->n_pending);
    memmove(o->aborts[0], o->aborts[o->n_aborts - o->n_pending], (size_t)o->n_pending * ABORT_FRAME_SIZE);
    o->n_aborts = o->n_pending;
}

void ring_release_to(ring_owner *o, uint64_t upto)
{
    uint64_t read = o->read_pos;

    if (upto >= read) {
        ring_release(o);
        return;
    }
    if (upto <= atomic_load_explicit(&o->hdr->head, memory_order_relaxed)) /* relaxed: head is ours */
        return;
    assert(upto % FRAME_ALIGN == 0);
    o->read_pos = upto; /* a frame boundary: the caller's journal ends there */
    ring_release(o);
    o->read_pos = read;
}

/* R6: the caller passes an LSN the journal holds (J1 in persist/store.h) */
/* Under cursor_lock: 1 if a cursor may move now (the lease deadline,
 * read on the acknowledgement path itself: a process paused past it
 * acknowledges nothing when it wakes, whatever its other threads saw).
 * CLOCK_BOOTTIME goes on counting while the machine or the VM is
 * suspended, where CLOCK_MONOTONIC may stop. */
static int ack_allowed(const ring_owner *o)
{
    return !o->ack_limited || seg_now_ns(CLOCK_BOOTTIME) < o->ack_deadline_ns;
}

/* The cursors move under cursor_lock and only while the ring is not
 * fenced (R9): the drain moves durable_lsn, the replicator
 * replicated_lsn, a step-down sets the fence, each on its own thread. */
void ring_set_durable(ring_owner *o, uint64_t lsn)
{
    struct ring_header *h = o->hdr;

    pthread_mutex_lock(&o->cursor_lock);
    if (!atomic_load_explicit(&h->fenced, memory_order_relaxed)) {
        if (ack_allowed(o))
            seg_cursor_advance(&h->durable_lsn, &h->durable_seq, &h->n_durable_waiters, lsn);
        else if (lsn > o->held_durable)
            o->held_durable = lsn;
    }
    pthread_mutex_unlock(&o->cursor_lock);
}

void ring_set_replicated(ring_owner *o, uint64_t lsn)
{
    struct ring_header *h = o->hdr;

    pthread_mutex_lock(&o->cursor_lock);
    if (!atomic_load_explicit(&h->fenced, memory_order_relaxed)) {
        if (ack_allowed(o))
            seg_cursor_advance(&h->replicated_lsn, &h->replicated_seq, &h->n_replicated_waiters, lsn);
        else if (lsn > o->held_replicated)
            o->held_replicated = lsn;
    }
    pthread_mutex_unlock(&o->cursor_lock);
}

void ring_set_ack_deadline(ring_owner *o, uint64_t deadline_ns)
{
    struct ring_header *h = o->hdr;

    pthread_mutex_lock(&o->cursor_lock);
    o->ack_limited = 1;
    if (deadline_ns > o->ack_deadline_ns)
        o->ack_deadline_ns = deadline_ns;
    if (!atomic_load_explicit(&h->fenced, memory_order_relaxed) && ack_allowed(o)) {
        /* what was held back while the lease was not known to be ours */
        if (o->held_durable)
            seg_cursor_advance(&h->durable_lsn, &h->durable_seq, &h->n_durable_waiters, o->held_durable);
        if (o->held_replicated)
            seg_cursor_advance(&h->replicated_lsn, &h->replicated_seq, &h->n_replicated_waiters,
                               o->held_replicated);
        o->held_durable = o->held_replicated = 0;
    }
    pthread_mutex_unlock(&o->cursor_lock);
}

uint64_t ring_boottime_ns(void)
{
    return seg_now_ns(CLOCK_BOOTTIME);
}

void ring_fence(ring_owner *o)
{
    struct ring_header *h = o->hdr;

    pthread_mutex_lock(&o->cursor_lock);
    /* release: pairs with the acquire in seg_cursor_wait; after this store
     * no cursor moves (both setters look under the same lock) */
    atomic_store_explicit(&h->fenced, 1, memory_order_release);
    pthread_mutex_unlock(&o->cursor_lock);
    /* every waiter looks again: producers waiting for room, rk_wait */
    seg_cursor_wake_all(&h->head_seq);
    seg_cursor_wake_all(&h->durable_seq);
    seg_cursor_wake_all(&h->replicated_seq);
}

int ring_fenced(const ring_owner *o)
{
    return (int)atomic_load_explicit(&o->hdr->fenced, memory_order_acquire);
}

void ring_unfence(ring_owner *o)
{
    pthread_mutex_lock(&o->cursor_lock);
    atomic_store_explicit(&o->hdr->fenced, 0, memory_order_release);
    pthread_mutex_unlock(&o->cursor_lock);
}
