/* segment.c -- opening, checking and inspecting ring segments; process and
 * futex helpers shared by the producer (ring.c) and consumer (consumer.c).
 *
 * A segment is trusted only after every header field that decides where
 * memory is read has been checked against the file itself: magic, format,
 * header size, capacity (a power of two that matches the file size), owner
 * uid, permissions (no group/other bits), and cursors in range.  Each refusal
 * says what is wrong and what to do about it.
 * Functions here are safe from any thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shm/ring.h"
#include "shm/segment.h"

void seg_error(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;

    if (!err || !err_size)
        return;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

int seg_fail(char *err, size_t err_size, int rc, const char *fmt, ...)
{
    va_list ap;

    if (err && err_size) {
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int seg_check_name(const char *name, char *err, size_t err_size)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > RK_NAME_MAX || name[0] == '.') {
        seg_error(err, err_size, "ring name '%s' must be 1 to %d characters and not start with '.'",
                  name ? name : "(null)", RK_NAME_MAX);
        return RK_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.')) {
            seg_error(err, err_size, "ring name '%s' has '%c': use letters, digits, '_', '-', '.'", name, c);
            return RK_EINVAL;
        }
    }
    return 0;
}

void seg_path(const char *name, char *path, size_t path_size)
{
    snprintf(path, path_size, "/dev/shm/" RING_SHM_PREFIX "%s", name);
}

uint64_t seg_now_ns(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t ring_process_start_time(uint32_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long start = 0;
    ssize_t n;
    int fd;

    snprintf(path, sizeof path, "/proc/%u/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* Fields after the command name, which may hold spaces: ") S ppid ..." */
    p = strrchr(buf, ')');
    if (!p)
        return 0;
    /* field 3 is the state; field 22 the start time */
    if (p[1] != ' ' || p[2] == 'Z' || p[2] == 'X')
        return 0;
    p += 3;
    for (int field = 4; field <= 22 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    if (!p || sscanf(p, "%llu", &start) != 1)
        return 0;
    return start;
}

int ring_process_alive(uint32_t pid, uint64_t start_time)
{
    uint64_t now_start;

    if (pid == 0)
        return 0;
    now_start = ring_process_start_time(pid);
    if (now_start == 0)
        return 0; /* gone, or a zombie */
    return start_time == 0 || now_start == start_time;
}

int ring_futex_wait(_Atomic uint32_t *word, uint32_t expected, int timeout_ms)
{
    struct timespec ts, *tsp = NULL;

    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000;
        tsp = &ts;
    }
    /* FUTEX_WAIT, not FUTEX_WAIT_PRIVATE: the word is in shared memory that
     * other processes map. */
    if (syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, tsp, NULL, 0) == 0)
        return 0;
    return errno;
}

void ring_futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

void seg_cursor_advance(_Atomic uint64_t *cursor, _Atomic uint32_t *seq, _Atomic uint32_t *n_waiters,
                        uint64_t value)
{
    seg_cursor_move(cursor, seq, n_waiters, value, 1);
}

void seg_cursor_move(_Atomic uint64_t *cursor, _Atomic uint32_t *seq, _Atomic uint32_t *n_waiters,
                     uint64_t value, int wake)
{
    uint64_t cur = atomic_load_explicit(cursor, memory_order_relaxed);

    if (value <= cur)
        return; /* R3: cursors move only forward */
    /* release: whoever sees the new cursor sees what it covers */
    atomic_store_explicit(cursor, value, memory_order_release);
    /* seq_cst fence: orders the cursor store before the waiter-count load,
     * against the waiter's count increment before its cursor load
     * (seg_cursor_wait), so one of the two sides always sees the other. */
    atomic_thread_fence(memory_order_seq_cst);
    if (wake && atomic_load_explicit(n_waiters, memory_order_relaxed)) {
        atomic_fetch_add_explicit(seq, 1, memory_order_release);
        ring_futex_wake(seq);
    }
}

void seg_cursor_wake_all(_Atomic uint32_t *seq)
{
    /* release: a waiter that sees the new seq sees what was stored before
     * (the fence) */
    atomic_fetch_add_explicit(seq, 1, memory_order_release);
    ring_futex_wake(seq);
}

int seg_cursor_wait(_Atomic uint64_t *cursor, _Atomic uint32_t *seq, _Atomic uint32_t *n_waiters,
                    const _Atomic uint32_t *fenced, uint64_t target, int timeout_ms)
{
    uint64_t deadline = timeout_ms >= 0 ? seg_now_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000000u : 0;
    int rc = 0;

    atomic_fetch_add_explicit(n_waiters, 1, memory_order_seq_cst);
    /* seq_cst fence: pairs with the one in seg_cursor_advance (see there) */
    atomic_thread_fence(memory_order_seq_cst);
    for (;;) {
        uint32_t s = atomic_load_explicit(seq, memory_order_acquire);
        int slice = 100;

        /* acquire: what the cursor covers is visible once we see it */
        if (atomic_load_explicit(cursor, memory_order_acquire) >= target)
            break;
        /* acquire: pairs with ring_fence's release; the cursor was looked
         * at first, so a target reached before the fence still returns 0 */
        if (atomic_load_explicit(fenced, memory_order_acquire)) {
            rc = RK_EFENCED;
            break;
        }
        if (timeout_ms >= 0) {
            uint64_t now = seg_now_ns(CLOCK_MONOTONIC);
            if (now >= deadline) {
                rc = RK_ETIMEDOUT;
                break;
            }
            if ((deadline - now) / 1000000u < (uint64_t)slice)
                slice = (int)((deadline - now) / 1000000u) + 1;
        }
        /* the slice bounds the wait even if a wake is lost to a crashed
         * waker; the loop re-checks the cursor */
        ring_futex_wait(seq, s, slice);
    }
    atomic_fetch_sub_explicit(n_waiters, 1, memory_order_relaxed);
    return rc;
}

static int is_power_of_two(uint64_t x)
{
    return x && !(x & (x - 1));
}

int ring_map_existing(const char *name, int writable, int *fd_out, struct ring_header **hdr_out,
                      size_t *map_size_out, char *err, size_t err_size)
{
    char path[128];
    struct stat st;
    struct ring_header *h = MAP_FAILED;
    size_t map_size = 0;
    uint64_t head, tail;
    uint32_t magic;
    int fd = -1, rc;

    rc = seg_check_name(name, err, err_size);
    if (rc)
        return rc;
    seg_path(name, path, sizeof path);
    /* O_NONBLOCK: a FIFO planted under the name must not hang us */
    fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        rc = errno;
        if (rc == ENOENT)
            seg_error(err, err_size, "ring '%s' does not exist (%s): start the node that owns it first", name,
                      path);
        else
            seg_error(err, err_size, "cannot open ring '%s' (%s): %s", name, path, strerror(rc));
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        rc = errno;
        seg_error(err, err_size, "cannot stat %s: %s", path, strerror(rc));
        goto fail;
    }
    rc = RK_EBADRING;
    if (!S_ISREG(st.st_mode)) {
        seg_error(err, err_size, "%s is not a regular file: remove it", path);
        goto fail;
    }
    if (st.st_uid != geteuid()) {
        seg_error(err, err_size,
                  "%s belongs to uid %u, not to this process (uid %u): run as uid %u, "
                  "or remove the file if it is stale",
                  path, (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)st.st_uid);
        goto fail;
    }
    if (st.st_mode & 077) {
        seg_error(err, err_size,
                  "%s has mode %04o; a ring must be private to its user (0600): "
                  "remove it and let the node create it again",
                  path, (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    if ((uint64_t)st.st_size < RING_HEADER_SIZE + RING_MIN_CAPACITY) {
        seg_error(err, err_size,
                  "%s is %lld bytes, too small to be a ringkeep ring (at least %llu): "
                  "remove it",
                  path, (long long)st.st_size, (unsigned long long)(RING_HEADER_SIZE + RING_MIN_CAPACITY));
        goto fail;
    }
    map_size = (size_t)st.st_size;
    h = mmap(NULL, map_size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        rc = errno;
        seg_error(err, err_size, "cannot map %s: %s", path, strerror(rc));
        goto fail;
    }
    rc = RK_EBADRING;
    /* acquire: the creator stores magic last, with release, after every
     * other header field */
    magic = atomic_load_explicit(&h->magic, memory_order_acquire);
    if (magic == 0) {
        seg_error(err, err_size,
                  "%s is not initialised: a node is creating it, or one crashed while "
                  "creating it (then remove it)",
                  path);
        goto fail;
    }
    if (magic != RING_MAGIC) {
        seg_error(err, err_size, "%s is not a ringkeep ring (magic 0x%08x, expected 0x%08x): remove it", path,
                  magic, RING_MAGIC);
        goto fail;
    }
    if (h->format != RING_FORMAT) {
        rc = RK_EVERSION;
        seg_error(err, err_size,
                  "%s has ring format %u, this library reads format %u: stop its node and "
                  "remove the ring, or use the ringkeep version that made it",
                  path, h->format, RING_FORMAT);
        goto fail;
    }
    if (!is_power_of_two(h->capacity) || h->capacity < RING_MIN_CAPACITY || h->capacity > RING_MAX_CAPACITY) {
        seg_error(err, err_size,
                  "%s header gives capacity %llu bytes, not a power of two from %u to %llu: "
                  "the segment is damaged or foreign; remove it",
                  path, (unsigned long long)h->capacity, RING_MIN_CAPACITY,
                  (unsigned long long)RING_MAX_CAPACITY);
        goto fail;
    }
    if (h->header_size != RING_HEADER_SIZE || h->header_size + h->capacity != (uint64_t)st.st_size) {
        seg_error(err, err_size,
                  "%s header says header %llu + capacity %llu bytes but the file has %lld: "
                  "the segment is damaged or foreign; remove it",
                  path, (unsigned long long)h->header_size, (unsigned long long)h->capacity,
                  (long long)st.st_size);
        goto fail;
    }
    if (h->owner_uid != st.st_uid) {
        seg_error(err, err_size, "%s was created by uid %u but belongs to uid %u: remove it", path,
                  h->owner_uid, (unsigned)st.st_uid);
        goto fail;
    }
    if (h->max_frame != (h->capacity / 4 < FRAME_MAX_LENGTH ? h->capacity / 4 : FRAME_MAX_LENGTH) ||
        h->unblock_timeout_ms == 0 || h->start_lsn % FRAME_ALIGN || h->start_lsn == 0) {
        seg_error(err, err_size,
                  "%s has inconsistent limits (max frame %u, unblock %u ms, start %llu): "
                  "remove it",
                  path, h->max_frame, h->unblock_timeout_ms, (unsigned long long)h->start_lsn);
        goto fail;
    }
    head = atomic_load_explicit(&h->head, memory_order_acquire);
    tail = atomic_load_explicit(&h->tail, memory_order_acquire);
    /* R1, R2 on what another process wrote: refused, not asserted */
    if (head > tail || tail - head > ring_tail_allowance(h) || head % FRAME_ALIGN || tail % FRAME_ALIGN ||
        head < h->start_lsn) {
        rc = RK_ECORRUPT;
        seg_error(err, err_size,
                  "%s has cursors out of range (head %llu, tail %llu, capacity %llu): "
                  "the segment was overwritten; stop the node and remove it",
                  path, (unsigned long long)head, (unsigned long long)tail, (unsigned long long)h->capacity);
        goto fail;
    }
    *fd_out = fd;
    *hdr_out = h;
    *map_size_out = map_size;
    return 0;
fail:
    if (h != MAP_FAILED)
        munmap(h, map_size);
    if (fd >= 0)
        close(fd);
    return rc;
}

int ring_unlink(const char *name)
{
    char path[128];
    int rc = seg_check_name(name, NULL, 0);

    if (rc)
        return rc;
    seg_path(name, path, sizeof path);
    return unlink(path) == 0 ? 0 : errno;
}

int ring_pad_ok(const uint8_t *data, uint64_t capacity, uint64_t idx, uint32_t word)
{
    static const uint8_t zero[FRAME_HEADER_SIZE];
    uint32_t check = word < FRAME_HEADER_SIZE ? word : FRAME_HEADER_SIZE;

    return word >= FRAME_PAD_MIN && word % FRAME_ALIGN == 0 && idx + word <= capacity &&
           data[idx + 4] == FRAME_PAD && memcmp(data + idx + 5, zero, check - 5) == 0;
}

uint64_t ring_padding_end(const char *name, uint64_t from)
{
    struct ring_header *h = NULL;
    size_t map_size = 0;
    int fd = -1;
    char err[256];
    uint64_t pos = from;

    if (ring_map_existing(name, 0, &fd, &h, &map_size, err, sizeof err) != 0)
        return from;
    const uint8_t *data = (const uint8_t *)h + h->header_size;
    uint64_t cap = h->capacity, mask = cap - 1;
    /* acquire: the frames below tail were committed before it was read
     * (each commit word below is read with acquire too) */
    uint64_t head = atomic_load_explicit(&h->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&h->tail, memory_order_acquire);
    if (pos >= head && pos % FRAME_ALIGN == 0) {
        while (pos < tail && pos - head < cap) {
            uint64_t idx = pos & mask;
            uint32_t word =
                atomic_load_explicit((const _Atomic uint32_t *)(data + idx), memory_order_acquire);
            if (!ring_pad_ok(data, cap, idx, word) || pos + word > tail)
                break;
            pos += word;
        }
    }
    munmap(h, map_size);
    close(fd);
    return pos;
}

int ring_inspect(const char *name, ring_info *info, char *err, size_t err_size)
{
    struct ring_header *h = NULL;
    struct stat st;
    size_t map_size = 0;
    int fd = -1, rc;

    rc = ring_map_existing(name, 0, &fd, &h, &map_size, err, err_size);
    if (rc)
        return rc;
    memset(info, 0, sizeof *info);
    seg_path(name, info->path, sizeof info->path);
    if (fstat(fd, &st) == 0)
        info->mode = st.st_mode & 07777;
    info->format = h->format;
    info->capacity = h->capacity;
    info->start_lsn = h->start_lsn;
    info->epoch = atomic_load(&h->epoch);
    info->created_ns = h->created_ns;
    info->owner_pid = atomic_load(&h->owner_pid);
    info->owner_alive = ring_process_alive(info->owner_pid, atomic_load(&h->owner_start_time));
    info->owner_uid = h->owner_uid;
    info->unblock_timeout_ms = h->unblock_timeout_ms;
    info->max_frame = h->max_frame;
    info->tail = atomic_load(&h->tail);
    info->head = atomic_load(&h->head);
    info->durable_lsn = atomic_load(&h->durable_lsn);
    info->replicated_lsn = atomic_load(&h->replicated_lsn);
    info->n_consumed = atomic_load(&h->n_consumed);
    info->n_unblocked = atomic_load(&h->n_unblocked);
    info->n_unblocked_bytes = atomic_load(&h->n_unblocked_bytes);
    info->n_corrupt = atomic_load(&h->n_corrupt);
    for (uint32_t i = 0; i < RING_MAX_TABLES; i++) {
        const struct ring_table_entry *t = &h->tables[i];
        /* acquire: the name was written before used was set */
        if (!atomic_load_explicit(&t->used, memory_order_acquire))
            break;
        memcpy(info->tables[info->n_tables].name, t->name, RK_NAME_MAX);
        info->tables[info->n_tables].id = (uint16_t)i;
        info->n_tables++;
    }
    for (uint32_t i = 0; i < RING_MAX_PRODUCERS; i++) {
        const struct ring_producer_slot *s = &h->producers[i];
        uint32_t state = atomic_load(&s->state);
        if (state == SLOT_FREE)
            continue;
        memcpy(info->producers[info->n_producers].name, s->name, RK_NAME_MAX);
        info->producers[info->n_producers].id = (uint16_t)i;
        info->producers[info->n_producers].state = state;
        info->producers[info->n_producers].pid = s->pid;
        info->producers[info->n_producers].alive =
            state == SLOT_ATTACHED && ring_process_alive(s->pid, s->start_time);
        info->producers[info->n_producers].session = atomic_load(&s->session);
        info->producers[info->n_producers].last_lsn = atomic_load(&s->last_lsn);
        info->producers[info->n_producers].n_records = atomic_load(&s->n_records);
        info->producers[info->n_producers].attach_ns = s->attach_ns;
        info->n_producers++;
    }
    munmap(h, map_size);
    close(fd);
    return 0;
}
