/* bench_ring.c -- throughput and put cost of the shared-memory ring, against
 * a bare two-process memcpy ring measured in the same run.
 *
 * For every producer count (default 1 and 2) and value size (default 16,
 * 64, 256, 1024 bytes; keys are 8 bytes) the owner (this process) creates a
 * ring, forks one consumer and the producers, and reports:
 *   records/s, MB/s    from the start barrier until the consumer has taken
 *                      the last record; MB/s counts key + value bytes;
 *   put p50/p99/p99.9  the producer-side cost of one rk_put();
 *   baseline           records/s of a bare SPSC ring moving the same bytes,
 *                      and the ratio ours / baseline.
 *
 * Method.
 *   - Ours: producers use only the public API (rk_ring_attach, rk_table,
 *     rk_put with RK_FULL_WAIT).  The consumer takes frames with ring_next(),
 *     which verifies every frame's XXH3 checksum; it checks that each
 *     producer's keys arrive in order, exactly once, with the expected sizes,
 *     and moves the durable cursor and releases space every RELEASE_FRAMES
 *     frames or RELEASE_BYTES bytes, and when the ring stays empty for
 *     IDLE_WAIT_MS.  A run whose counts do not add up fails: a benchmark
 *     that lies is worse than none.  Against the node's drain
 *     (node/primary.c): both take every frame with ring_next() and release
 *     what they took; the drain also copies each frame into its batch
 *     buffer and follows open groups, where this consumer checks keys and
 *     sizes instead, and it releases once per journal batch (after a synced
 *     commit), this one more often.
 *   - Untimed passes give records/s, MB/s and the ratio; the best of
 *     --repeat passes is reported, each pass interleaved with a baseline
 *     pass so that a slow spell of this shared machine hits both.  One more
 *     pass times every put with rdtscp: on this kind of VM a TSC read costs
 *     about 20 ns, as much as a put, so it cannot ride along the throughput
 *     passes.  The put cost is the TSC delta between consecutive puts minus
 *     the same loop's delta without a put (the timing overhead, reported),
 *     converted with a TSC rate calibrated against CLOCK_MONOTONIC (50 ms).
 *   - Baseline: one producer and one consumer process on a ring of the same
 *     capacity in MAP_SHARED anonymous memory; records are a 4-byte length,
 *     the key and the value, 8-aligned; cursors on their own cache lines;
 *     each side keeps a copy of the other's cursor and re-reads it only when
 *     the ring looks full (producer) or empty (consumer); both publish their
 *     cursor per batch (the consumer's batch), the producer also before it
 *     waits and after its last record.  The consumer checks and sums every
 *     key.  Two-producer figures are compared with this one-producer
 *     baseline.
 *   - Never fails on time: exit 0 when every run was correct, 1 when a run
 *     lost, duplicated or reordered records or a process failed, 2 on bad
 *     arguments, 3 when the watchdog (alarm per pass) fired.  The targets
 *     of the issue are printed with "met"/"not met" for information.
 *
 * Processes (no threads; each process is single-threaded):
 *
 *   owner: ring_create ─ fork ─► consumer    ring_next / ring_release
 *                        fork ─► producer k  rk_ring_attach, rk_put × n
 *          wait until every child is ready (ctl.n_ready), store ctl.go,
 *          waitpid all, check the counts, ring_close(unlink)
 *
 *   A child that fails exits non-zero; the owner then kills the others.
 *   Children die with the owner (PR_SET_PDEATHSIG).  SIGALRM, SIGINT and
 *   SIGTERM in the owner kill the children and unlink the ring.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "bench_util.h"
#include "shm/ring.h"
#include "ringkeep.h"

#define MAX_PRODUCERS 4
#define MAX_SIZES 16
#define MAX_BATCHES 4
#define DEFAULT_BATCH 64 /* records per rk_write in the second row of each configuration */
#define MAX_REPEAT 9
#define DEFAULT_REPEAT 2
#define KEY_SIZE 8u
#define DEFAULT_CAPACITY (4u << 20)
#define DEFAULT_RECORDS 10000000ull /* per configuration, values up to 64 B */
#define QUICK_RECORDS 200000ull
#define RELEASE_FRAMES 256         /* a batch: consumers release, the baseline publishes, */
#define RELEASE_BYTES (64u * 1024) /* after this many frames or bytes */
#define IDLE_WAIT_MS 1             /* consumer: the ring is idle when empty this long */
#define DEFAULT_WATCHDOG_S 60      /* per run (one pass of one configuration) */
#define BARRIER_NS (10 * 1000000000ull)
#define STALL_NS (10 * 1000000000ull) /* no progress for this long: failure */
#define FULL_TIMEOUT_MS 10000         /* one rk_put waits at most this long */
#define OVERHEAD_LOOPS 1000000
#define CALIBRATE_NS (50 * 1000000ull)
#define SPIN_BEFORE_YIELD 256
#define BASE_WRAP UINT32_MAX /* baseline: the rest of the data area is skipped */

/* ------------------------------------------------------------ histogram
 * Ticks below HIST_LINEAR have a bucket each; above, each power of two is
 * split into HIST_SUB buckets (3 % wide). */
#define HIST_LINEAR 4096u /* 2^12 */
#define HIST_SUB 32u      /* 2^5 */
#define HIST_N (HIST_LINEAR + (64u - 12u) * HIST_SUB)

struct hist {
    uint64_t count[HIST_N];
};

static inline size_t hist_index(uint64_t ticks)
{
    unsigned bit;

    if (ticks < HIST_LINEAR)
        return (size_t)ticks;
    bit = 63u - (unsigned)__builtin_clzll(ticks); /* 12..63 */
    return HIST_LINEAR + (size_t)(bit - 12u) * HIST_SUB + (size_t)((ticks >> (bit - 5u)) & (HIST_SUB - 1));
}

static uint64_t hist_bucket_low(size_t i)
{
    unsigned bit;

    if (i < HIST_LINEAR)
        return i;
    bit = 12u + (unsigned)((i - HIST_LINEAR) / HIST_SUB);
    return (uint64_t)(HIST_SUB + (i - HIST_LINEAR) % HIST_SUB) << (bit - 5u);
}

/* The lower bound (ticks) of the bucket holding the q-quantile. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t n = 0, rank, seen = 0;

    for (size_t i = 0; i < HIST_N; i++)
        n += h->count[i];
    if (n == 0)
        return 0;
    rank = (uint64_t)(q * (double)n);
    if ((double)rank < q * (double)n || rank == 0)
        rank++;
    for (size_t i = 0; i < HIST_N; i++) {
        seen += h->count[i];
        if (seen >= rank)
            return hist_bucket_low(i);
    }
    return hist_bucket_low(HIST_N - 1);
}

/* ------------------------------------------------------------ clocks */

/* rdtscp waits until every earlier instruction has executed. */
static inline uint64_t tsc_now(void)
{
    unsigned aux;

    return __rdtscp(&aux);
}

/* TSC ticks per ns, over CALIBRATE_NS of CLOCK_MONOTONIC. */
static double tsc_calibrate(void)
{
    uint64_t t0 = now_ns(), c0 = tsc_now(), t1, c1;
    struct timespec pause = {0, (long)CALIBRATE_NS};

    while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
        ;
    t1 = now_ns();
    c1 = tsc_now();
    return (double)(c1 - c0) / (double)(t1 - t0);
}

/* ------------------------------------------------------------ shared state */

/* Shared by the owner and the children of one run: MAP_SHARED|MAP_ANONYMOUS,
 * zeroed before every run.  The children's plain fields are read by the
 * owner only after waitpid() has reaped the child that wrote them (process
 * exit and wait order them). */
struct ctl {
    alignas(64) _Atomic uint32_t n_ready;   /* children: +1 when set up */
    alignas(64) _Atomic uint32_t go;        /* owner: 1 = producers start */
    alignas(64) uint64_t end_ns;            /* consumer: CLOCK_MONOTONIC at its last record */
    uint64_t consumer_cpu_ns;               /* consumer: its CPU time, start to last record */
    uint64_t producer_cpu_ns[MAX_PRODUCERS]; /* producer k: CPU time from the start to its last call */
    uint64_t n_taken[MAX_PRODUCERS];        /* consumer: records taken per producer */
    uint64_t key_sum;                       /* baseline consumer: sum of the keys */
    uint64_t overhead_ticks[MAX_PRODUCERS]; /* producer k: p50 of an empty timed loop */
    struct hist hist[MAX_PRODUCERS];        /* producer k: ticks per put (timed pass) */
};

/* The baseline ring, in MAP_SHARED anonymous memory. */
struct base_ring {
    alignas(64) _Atomic uint64_t tail; /* producer: end of the last record written */
    alignas(64) _Atomic uint64_t head; /* consumer: end of what it has read and may be reused */
    alignas(64) uint8_t data[];        /* capacity bytes */
};

/* One pass of one configuration. */
struct run {
    int n_producers;
    uint32_t batch; /* records per call: 1 = rk_put, more = rk_write */
    uint32_t value_size;
    uint64_t n_records; /* over all producers */
    uint64_t capacity;
    uint32_t release_bytes; /* RELEASE_BYTES, at most capacity / 8 */
    int timed;              /* time every put */
    const char *ring_name;
    ring_owner *owner;      /* ours */
    struct base_ring *base; /* baseline */
    struct ctl *ctl;
};

typedef int (*child_fn)(const struct run *r, int index);

/* Records of producer index: n_records split evenly, the first ones take the
 * remainder. */
static uint64_t share(const struct run *r, int index)
{
    uint64_t n = r->n_records / (uint64_t)r->n_producers;

    return n + ((uint64_t)index < r->n_records % (uint64_t)r->n_producers ? 1 : 0);
}

static inline uint64_t key_of(int producer, uint64_t seq)
{
    return (uint64_t)producer << 56 | seq;
}

/* ------------------------------------------------------------ watchdog */

static volatile sig_atomic_t g_child_pids[MAX_PRODUCERS + 1];
static volatile sig_atomic_t g_ring_exists;
static char g_ring_path[128];

static void on_fatal_signal(int sig)
{
    static const char msg[] = "bench_ring: watchdog or signal: killing children, removing the ring\n";
    ssize_t unused;

    for (int i = 0; i < MAX_PRODUCERS + 1; i++) {
        if (g_child_pids[i] > 0)
            kill((pid_t)g_child_pids[i], SIGKILL);
    }
    if (g_ring_exists)
        unlink(g_ring_path);
    unused = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)unused;
    _exit(sig == SIGALRM ? 3 : 128 + sig);
}

/* ------------------------------------------------------------ children */

/* This process's CPU time: a figure the other processes sharing the
 * machine do not inflate, unlike the wall clock. */
static uint64_t cpu_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Counts this child as ready, then waits for the owner's go. */
static int start_barrier(struct ctl *c)
{
    uint64_t deadline = now_ns() + BARRIER_NS;

    /* release: this child's setup is done before it counts as ready */
    atomic_fetch_add_explicit(&c->n_ready, 1, memory_order_release);
    /* acquire: pairs with the owner's release of go (orders nothing we read
     * later; the start time stays in the owner) */
    while (!atomic_load_explicit(&c->go, memory_order_acquire)) {
        if (now_ns() > deadline) {
            fprintf(stderr, "bench_ring: child %d: no start signal within %llu s\n", (int)getpid(),
                    (unsigned long long)(BARRIER_NS / 1000000000u));
            return ETIMEDOUT;
        }
        sched_yield(); /* 3 processes may share 2 CPUs: let the owner run */
    }
    return 0;
}

/* A value buffer: its first 8 bytes are overwritten with the key per put. */
static uint8_t *make_value(uint32_t size, int producer)
{
    uint8_t *val = malloc(size);

    if (val) {
        for (uint32_t i = 0; i < size; i++)
            val[i] = (uint8_t)(i * 131u + (unsigned)producer);
    }
    return val;
}

/* p50 ticks of the timed loop with no put, from hist (reset afterwards). */
static uint64_t timing_overhead(struct hist *h, uint8_t *val, int producer)
{
    uint64_t prev = tsc_now(), p50;

    for (uint64_t i = 0; i < OVERHEAD_LOOPS; i++) {
        uint64_t key = key_of(producer, i), now;
        memcpy(val, &key, sizeof key);
        /* the compiler must still store the key: rk_put would read it */
        __asm__ volatile("" : : "r"(val) : "memory");
        now = tsc_now();
        h->count[hist_index(now > prev ? now - prev : 0)]++;
        prev = now;
    }
    p50 = hist_quantile(h, 0.5);
    memset(h, 0, sizeof *h);
    return p50;
}

/* The producer with rk_write: r->batch records per call (the last call
 * takes what is left), each record's value a buffer of its own starting
 * with its key.  The timed pass counts a call's ticks / its records for
 * each of them. */
static int batch_producer(const struct run *r, int index, rk_ring *ring, uint16_t table)
{
    uint64_t n = share(r, index), i = 0, *keys = calloc(r->batch, sizeof *keys);
    uint8_t *vals = malloc((size_t)r->batch * r->value_size);
    rk_record *recs = calloc(r->batch, sizeof *recs);
    struct hist *h = r->timed ? calloc(1, sizeof *h) : NULL;
    int rc = 0;

    if (!keys || !vals || !recs || (r->timed && !h)) {
        rc = ENOMEM;
        fprintf(stderr, "bench_ring: producer %d: out of memory\n", index);
        goto out;
    }
    for (uint32_t j = 0; j < r->batch; j++) {
        uint8_t *val = make_value(r->value_size, index);
        if (!val) {
            rc = ENOMEM;
            goto out;
        }
        memcpy(vals + (size_t)j * r->value_size, val, r->value_size);
        free(val);
        recs[j].key = &keys[j];
        recs[j].klen = KEY_SIZE;
        recs[j].val = vals + (size_t)j * r->value_size;
        recs[j].vlen = r->value_size;
        recs[j].table = table;
        recs[j].op = RK_OP_PUT;
    }
    if (r->timed)
        r->ctl->overhead_ticks[index] = timing_overhead(h, vals, index) / r->batch;
    rc = start_barrier(r->ctl);
    if (rc)
        goto out;
    {
        uint64_t prev = r->timed ? tsc_now() : 0, cpu_start = cpu_ns();
        while (i < n && rc == 0) {
            size_t m = n - i < r->batch ? (size_t)(n - i) : r->batch, written = 0;
            for (size_t j = 0; j < m; j++) {
                keys[j] = key_of(index, i + j);
                memcpy(vals + j * r->value_size, &keys[j], sizeof keys[j]);
            }
            rc = rk_write(ring, recs, m, &written, NULL);
            i += written;
            if (r->timed) {
                uint64_t now = tsc_now(), per = (now > prev ? now - prev : 0) / m;
                h->count[hist_index(per)] += m;
                prev = now;
            }
        }
        r->ctl->producer_cpu_ns[index] = cpu_ns() - cpu_start;
    }
    if (rc)
        fprintf(stderr, "bench_ring: producer %d: rk_write at record %" PRIu64 ": %s\n", index, i,
                rk_strerror(rc));
    if (r->timed)
        memcpy(&r->ctl->hist[index], h, sizeof *h);
out:
    free(keys);
    free(vals);
    free(recs);
    free(h);
    return rc;
}

static int ours_producer(const struct run *r, int index)
{
    char name[16], errmsg[256] = "";
    rk_ring_opts opts = {0};
    rk_ring *ring = NULL;
    uint8_t *val = NULL;
    struct hist *h = NULL;
    uint64_t n = share(r, index), i = 0, cpu_start;
    uint16_t table = 0;
    int rc;

    snprintf(name, sizeof name, "p%d", index);
    opts.producer = name;
    opts.full_policy = RK_FULL_WAIT;
    opts.full_timeout_ms = FULL_TIMEOUT_MS;
    opts.errmsg = errmsg;
    opts.errmsg_size = sizeof errmsg;
    rc = rk_ring_attach(r->ring_name, &opts, &ring);
    if (rc) {
        fprintf(stderr, "bench_ring: producer %d: rk_ring_attach: %s: %s\n", index, rk_strerror(rc), errmsg);
        goto out;
    }
    rc = rk_table(ring, "bench", &table);
    if (rc) {
        fprintf(stderr, "bench_ring: producer %d: rk_table: %s\n", index, rk_strerror(rc));
        goto out;
    }
    if (r->batch > 1) {
        rc = batch_producer(r, index, ring, table);
        goto out;
    }
    val = make_value(r->value_size, index);
    h = r->timed ? calloc(1, sizeof *h) : NULL;
    if (!val || (r->timed && !h)) {
        rc = ENOMEM;
        fprintf(stderr, "bench_ring: producer %d: out of memory\n", index);
        goto out;
    }
    if (r->timed)
        r->ctl->overhead_ticks[index] = timing_overhead(h, val, index);
    rc = start_barrier(r->ctl);
    if (rc)
        goto out;
    cpu_start = cpu_ns();
    if (r->timed) {
        uint64_t prev = tsc_now();
        for (; i < n && rc == 0; i++) {
            uint64_t key = key_of(index, i), now;
            memcpy(val, &key, sizeof key);
            rc = rk_put(ring, table, &key, KEY_SIZE, val, r->value_size, NULL);
            now = tsc_now();
            h->count[hist_index(now > prev ? now - prev : 0)]++;
            prev = now;
        }
        memcpy(&r->ctl->hist[index], h, sizeof *h);
    } else {
        for (; i < n && rc == 0; i++) {
            uint64_t key = key_of(index, i);
            memcpy(val, &key, sizeof key);
            rc = rk_put(ring, table, &key, KEY_SIZE, val, r->value_size, NULL);
        }
    }
    r->ctl->producer_cpu_ns[index] = cpu_ns() - cpu_start;
    if (rc)
        fprintf(stderr, "bench_ring: producer %d: rk_put of record %" PRIu64 ": %s\n", index, i - 1,
                rk_strerror(rc));
out:
    rk_ring_detach(ring);
    free(val);
    free(h);
    return rc;
}

/* Checks one frame: ATTACH frames map slot ids to producer indexes (names
 * "p<index>"); a PUT must come from a known producer, carry the next key of
 * that producer (in order, exactly once) and the expected sizes. */
static int check_frame(const struct run *r, const ring_frame *f, int *who, uint64_t *next_seq,
                       const uint64_t *n_expected)
{
    uint64_t key, val_head;
    int p;

    if (f->producer >= RING_MAX_PRODUCERS) {
        fprintf(stderr, "bench_ring: consumer: frame from slot %u out of range\n", f->producer);
        return RK_ECORRUPT;
    }
    if (f->type == FRAME_ATTACH) {
        if (f->klen != 2 || f->key[0] != 'p' || f->key[1] < '0' || f->key[1] >= '0' + r->n_producers) {
            fprintf(stderr, "bench_ring: consumer: ATTACH from an unexpected producer\n");
            return RK_ECORRUPT;
        }
        who[f->producer] = f->key[1] - '0';
        return 0;
    }
    if (f->type != FRAME_PUT) {
        fprintf(stderr,
                "bench_ring: consumer: unexpected frame type %u at LSN %" PRIu64
                " (an ABORT means a producer died)\n",
                f->type, f->lsn);
        return RK_ECORRUPT;
    }
    p = who[f->producer];
    if (p < 0 || f->klen != KEY_SIZE || f->vlen != r->value_size) {
        fprintf(stderr,
                "bench_ring: consumer: PUT at LSN %" PRIu64 " from slot %u: unknown producer "
                "or sizes %u/%u (want %u/%u)\n",
                f->lsn, f->producer, f->klen, f->vlen, KEY_SIZE, r->value_size);
        return RK_ECORRUPT;
    }
    memcpy(&key, f->key, sizeof key);
    memcpy(&val_head, f->val, sizeof val_head);
    if (next_seq[p] >= n_expected[p] || key != key_of(p, next_seq[p]) || val_head != key) {
        fprintf(stderr,
                "bench_ring: consumer: producer %d: expected record %" PRIu64 ", got key %016" PRIx64
                " (value starts %016" PRIx64 "): lost, duplicated or reordered\n",
                p, next_seq[p], key, val_head);
        return RK_ECORRUPT;
    }
    next_seq[p]++;
    return 0;
}

static void report_missing(const struct run *r, const uint64_t *next_seq)
{
    for (int p = 0; p < r->n_producers; p++) {
        if (next_seq[p] != share(r, p))
            fprintf(stderr, "bench_ring: consumer: producer %d: %" PRIu64 " of %" PRIu64 " records arrived\n",
                    p, next_seq[p], share(r, p));
    }
}

static int ours_consumer(const struct run *r, int index)
{
    ring_owner *o = r->owner;
    int who[RING_MAX_PRODUCERS];
    uint64_t next_seq[MAX_PRODUCERS] = {0};
    uint64_t n_expected[MAX_PRODUCERS] = {0}; /* share(r, p), its two divisions made once */
    uint64_t n_taken = 0, last_lsn = 0, idle_since = 0, cpu_start = 0;
    uint32_t n_pending = 0, pending_bytes = 0;
    ring_frame f;
    int rc = 0, idle = 0;

    (void)index;
    for (int i = 0; i < RING_MAX_PRODUCERS; i++)
        who[i] = -1;
    for (int p = 0; p < r->n_producers; p++)
        n_expected[p] = share(r, p);
    /* release: nothing to publish; counts the consumer as ready */
    atomic_fetch_add_explicit(&r->ctl->n_ready, 1, memory_order_release);
    while (n_taken < r->n_records) {
        rc = ring_next(o, &f);
        if (rc < 0) {
            fprintf(stderr, "bench_ring: consumer: %s\n", ring_error(o));
            goto out;
        }
        if (rc == 0) {
            uint64_t now;
            int ready = ring_wait_ready(o, IDLE_WAIT_MS);
            if (!ready && n_pending) {
                /* idle: give the space back now rather than at the batch end */
                ring_set_durable(o, last_lsn);
                ring_release(o);
                n_pending = pending_bytes = 0;
            }
            now = now_ns();
            if (!idle) {
                idle = 1;
                idle_since = now;
            } else if (now - idle_since > STALL_NS) {
                fprintf(stderr, "bench_ring: consumer: no record for %llu s, records are missing\n",
                        (unsigned long long)(STALL_NS / 1000000000u));
                report_missing(r, next_seq);
                rc = ETIMEDOUT;
                goto out;
            }
            continue;
        }
        idle = 0;
        if (!cpu_start)
            cpu_start = cpu_ns(); /* the first frame: the producers have started */
        rc = check_frame(r, &f, who, next_seq, n_expected);
        if (rc)
            goto out;
        n_taken += f.type == FRAME_PUT;
        last_lsn = f.lsn;
        pending_bytes += frame_align(f.raw_len);
        if (++n_pending >= RELEASE_FRAMES || pending_bytes >= r->release_bytes) {
            ring_set_durable(o, last_lsn);
            ring_release(o);
            n_pending = pending_bytes = 0;
        }
    }
    r->ctl->end_ns = now_ns();
    r->ctl->consumer_cpu_ns = cpu_ns() - cpu_start;
    ring_set_durable(o, last_lsn);
    ring_release(o);
    for (int p = 0; p < r->n_producers; p++) {
        r->ctl->n_taken[p] = next_seq[p];
        if (next_seq[p] != share(r, p))
            rc = RK_ECORRUPT;
    }
    if (rc)
        report_missing(r, next_seq);
out:
    return rc;
}

/* One round of a baseline wait: pause, and after SPIN_BEFORE_YIELD rounds
 * give the CPU away too, in case the other side waits for it (3 processes,
 * or other work, on 2 CPUs). */
static inline void spin_wait(uint64_t spin)
{
    _mm_pause();
    if (spin > SPIN_BEFORE_YIELD)
        sched_yield();
}

/* Baseline producer (index is always 0).  It publishes its cursor per batch
 * (RELEASE_FRAMES records or release_bytes), before it waits for room, and
 * after its last record. */
static int base_producer(const struct run *r, int index)
{
    struct base_ring *b = r->base;
    uint64_t cap = r->capacity, mask = cap - 1, tail = 0, published = 0, cached_head = 0;
    uint32_t len = KEY_SIZE + r->value_size, rec = frame_align(4 + (uint64_t)len), n_unpublished = 0;
    uint8_t *val = make_value(r->value_size, index);
    int rc;

    if (!val) {
        fprintf(stderr, "bench_ring: baseline producer: out of memory\n");
        return ENOMEM;
    }
    rc = start_barrier(r->ctl);
    for (uint64_t i = 0; i < r->n_records && rc == 0; i++) {
        uint64_t idx = tail & mask, skip = cap - idx < rec ? cap - idx : 0, key = key_of(index, i);
        uint8_t *p;

        if (tail + skip + rec - cached_head > cap) {
            uint64_t since = now_ns();
            /* release: the records' bytes are visible before the tail that covers them */
            atomic_store_explicit(&b->tail, tail, memory_order_release);
            published = tail;
            n_unpublished = 0;
            for (uint64_t spin = 1;; spin++) {
                /* acquire: the consumer has read the bytes it gave back */
                cached_head = atomic_load_explicit(&b->head, memory_order_acquire);
                if (tail + skip + rec - cached_head <= cap)
                    break;
                spin_wait(spin);
                if (spin % 4096 == 0 && now_ns() - since > STALL_NS) {
                    fprintf(stderr, "bench_ring: baseline producer: ring full for %llu s\n",
                            (unsigned long long)(STALL_NS / 1000000000u));
                    rc = ETIMEDOUT;
                    break;
                }
            }
            if (rc)
                break;
        }
        if (skip) {
            const uint32_t wrap = BASE_WRAP;
            memcpy(b->data + idx, &wrap, sizeof wrap);
            tail += skip;
            idx = 0;
        }
        p = b->data + idx;
        memcpy(val, &key, sizeof key);
        memcpy(p, &len, sizeof len);
        memcpy(p + 4, &key, KEY_SIZE);
        memcpy(p + 4 + KEY_SIZE, val, r->value_size);
        tail += rec;
        if (++n_unpublished >= RELEASE_FRAMES || tail - published >= r->release_bytes ||
            i + 1 == r->n_records) {
            /* release: as above */
            atomic_store_explicit(&b->tail, tail, memory_order_release);
            published = tail;
            n_unpublished = 0;
        }
    }
    free(val);
    return rc;
}

static int base_consumer(const struct run *r, int index)
{
    struct base_ring *b = r->base;
    uint64_t cap = r->capacity, mask = cap - 1, head = 0, published = 0, cached_tail = 0;
    uint64_t n = 0, sum = 0, since_publish = 0;
    uint32_t want = KEY_SIZE + r->value_size;

    (void)index;
    /* release: nothing to publish; counts the consumer as ready */
    atomic_fetch_add_explicit(&r->ctl->n_ready, 1, memory_order_release);
    while (n < r->n_records) {
        uint64_t idx, key;
        uint32_t len;

        if (head == cached_tail) {
            uint64_t since = 0;
            /* release: we have read everything before head; the producer may reuse it */
            atomic_store_explicit(&b->head, head, memory_order_release);
            published = head;
            since_publish = 0;
            for (uint64_t spin = 1;; spin++) {
                /* acquire: pairs with the producer's release of tail; the bytes
                 * before it are visible */
                cached_tail = atomic_load_explicit(&b->tail, memory_order_acquire);
                if (cached_tail != head)
                    break;
                spin_wait(spin);
                if (spin % 4096 == 0) {
                    uint64_t now = now_ns();
                    if (!since) {
                        since = now;
                    } else if (now - since > STALL_NS) {
                        fprintf(stderr,
                                "bench_ring: baseline consumer: %" PRIu64 " of %" PRIu64 " records arrived\n",
                                n, r->n_records);
                        return ETIMEDOUT;
                    }
                }
            }
        }
        idx = head & mask;
        memcpy(&len, b->data + idx, sizeof len);
        if (len == BASE_WRAP) {
            head += cap - idx;
            continue;
        }
        memcpy(&key, b->data + idx + 4, sizeof key);
        if (len != want || key != key_of(0, n)) {
            fprintf(stderr,
                    "bench_ring: baseline consumer: record %" PRIu64 ": length %u key %" PRIu64
                    " (want %u, %" PRIu64 ")\n",
                    n, len, key, want, n);
            return RK_ECORRUPT;
        }
        sum += key;
        n++;
        head += frame_align(4 + (uint64_t)len);
        if (++since_publish >= RELEASE_FRAMES || head - published >= r->release_bytes) {
            /* release: as above, per batch */
            atomic_store_explicit(&b->head, head, memory_order_release);
            published = head;
            since_publish = 0;
        }
    }
    r->ctl->end_ns = now_ns();
    r->ctl->n_taken[0] = n;
    r->ctl->key_sum = sum;
    return 0;
}

/* ------------------------------------------------------------ owner */

struct child_call {
    child_fn fn;
    const struct run *r;
    int index;
};

static int call_child(const void *arg)
{
    const struct child_call *c = arg;
    return c->fn(c->r, c->index);
}

static pid_t spawn(child_fn fn, const struct run *r, int index, int slot)
{
    struct child_call call = {fn, r, index}; /* the child has its own copy after fork */
    pid_t pid = bench_spawn(call_child, &call);

    if (pid > 0)
        g_child_pids[slot] = pid;
    return pid;
}

static const char *child_name(int slot)
{
    return slot == 0 ? "consumer" : "producer";
}

/* Reaps the n children in pids; the first failure kills the rest.
 * Returns 0 when every child exited with status 0. */
static int reap_children(pid_t *pids, int n)
{
    int failed = 0, left = 0;

    for (int i = 0; i < n; i++)
        left += pids[i] > 0;
    while (left > 0) {
        int status, slot = -1;
        pid_t pid = waitpid(-1, &status, 0);

        if (pid < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "bench_ring: waitpid: %s\n", strerror(errno));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            if (pids[i] == pid)
                slot = i;
        }
        if (slot < 0)
            continue;
        pids[slot] = 0;
        g_child_pids[slot] = 0;
        left--;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            continue;
        if (!failed) {
            if (WIFSIGNALED(status))
                fprintf(stderr, "bench_ring: %s %d killed by signal %d\n", child_name(slot), (int)pid,
                        WTERMSIG(status));
            else
                fprintf(stderr, "bench_ring: %s %d failed (exit status %d)\n", child_name(slot), (int)pid,
                        WEXITSTATUS(status));
        }
        failed = 1;
        for (int i = 0; i < n; i++) {
            if (pids[i] > 0)
                kill(pids[i], SIGKILL);
        }
    }
    return failed ? -1 : 0;
}

/* Forks the consumer and the producers, starts them together and waits for
 * them.  *seconds is the time from the start until the consumer took the
 * last record.  Returns 0 when every child succeeded. */
static int run_processes(const struct run *r, child_fn consumer, child_fn producer, unsigned watchdog_s,
                         double *seconds)
{
    pid_t pids[MAX_PRODUCERS + 1] = {0};
    int n = 1 + r->n_producers, rc = -1;
    uint64_t start = 0, deadline;

    memset(r->ctl, 0, sizeof *r->ctl);
    alarm(watchdog_s);
    pids[0] = spawn(consumer, r, 0, 0);
    for (int i = 0; i < r->n_producers && pids[i] > 0; i++)
        pids[1 + i] = spawn(producer, r, i, 1 + i);
    for (int i = 0; i < n; i++) {
        if (pids[i] < 0) {
            fprintf(stderr, "bench_ring: fork: %s\n", strerror(errno));
            pids[i] = 0;
            goto kill_all;
        }
    }
    deadline = now_ns() + BARRIER_NS;
    /* acquire: pairs with each child's release increment */
    while (atomic_load_explicit(&r->ctl->n_ready, memory_order_acquire) < (uint32_t)n) {
        siginfo_t info = {0};
        struct timespec pause = {0, 50000};

        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0) {
            fprintf(stderr, "bench_ring: a child exited before the start\n");
            goto kill_all;
        }
        if (now_ns() > deadline) {
            fprintf(stderr, "bench_ring: children not ready within %llu s\n",
                    (unsigned long long)(BARRIER_NS / 1000000000u));
            goto kill_all;
        }
        nanosleep(&pause, NULL);
    }
    start = now_ns();
    /* release: orders nothing the children read; it starts them */
    atomic_store_explicit(&r->ctl->go, 1, memory_order_release);
    rc = reap_children(pids, n);
    goto out;
kill_all:
    for (int i = 0; i < n; i++) {
        if (pids[i] > 0)
            kill(pids[i], SIGKILL);
    }
    reap_children(pids, n);
    rc = -1;
out:
    alarm(0);
    if (rc == 0)
        *seconds = (double)(r->ctl->end_ns - start) / 1e9;
    return rc;
}

/* The figures of one configuration. */
struct result {
    int n_producers;
    uint32_t batch;
    uint32_t value_size;
    uint64_t n_records;
    int n_runs;
    double runs[MAX_REPEAT];    /* records/s of each untimed pass */
    double records_per_s;       /* the best of them */
    double timed_records_per_s; /* the timed pass */
    double p50_ns, p99_ns, p999_ns, overhead_ns;
    double baseline_runs[MAX_REPEAT];
    double baseline_records_per_s; /* the best baseline pass */
    double producer_cpu_ns, consumer_cpu_ns; /* per record, the least of the untimed passes */
};

/* The ticks of quantile q of h minus the timing overhead, in ns. */
static double put_ns(const struct hist *h, double q, uint64_t overhead, double ticks_per_ns)
{
    uint64_t t = hist_quantile(h, q);

    return t > overhead ? (double)(t - overhead) / ticks_per_ns : 0.0;
}

/* One pass of ours: a fresh ring, the processes, the checks.  On success
 * adds a run to res (or fills its timed fields, when r->timed). */
static int pass_ours(struct run *r, unsigned watchdog_s, double ticks_per_ns, struct result *res)
{
    char err[256] = "";
    ring_create_opts copts = {0};
    ring_owner *o = NULL;
    struct ring_header *hdr;
    double seconds = 0;
    int rc;

    copts.capacity = r->capacity;
    g_ring_exists = 1; /* before the segment exists: a signal now unlinks nothing of anyone else */
    rc = ring_create(r->ring_name, &copts, &o, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_ring: ring_create: %s: %s\n", rk_strerror(rc), err);
        g_ring_exists = 0;
        return rc;
    }
    r->owner = o;
    rc = run_processes(r, ours_consumer, ours_producer, watchdog_s, &seconds);
    if (rc)
        goto out;
    for (int p = 0; p < r->n_producers; p++) {
        if (r->ctl->n_taken[p] != share(r, p)) {
            fprintf(stderr, "bench_ring: producer %d: %" PRIu64 " of %" PRIu64 " records consumed\n", p,
                    r->ctl->n_taken[p], share(r, p));
            rc = RK_ECORRUPT;
        }
    }
    hdr = ring_header_of(o);
    /* seq_cst loads, but any order would do: every child has exited */
    if (atomic_load(&hdr->n_corrupt) || atomic_load(&hdr->n_unblocked)) {
        fprintf(stderr, "bench_ring: ring counted %" PRIu64 " corrupt frames, %" PRIu64 " unblocked claims\n",
                (uint64_t)atomic_load(&hdr->n_corrupt), (uint64_t)atomic_load(&hdr->n_unblocked));
        rc = RK_ECORRUPT;
    }
    if (rc)
        goto out;
    if (!r->timed) {
        double prod = 0, cons = (double)r->ctl->consumer_cpu_ns / (double)r->n_records;
        for (int p = 0; p < r->n_producers; p++)
            prod += (double)r->ctl->producer_cpu_ns[p] / (double)r->n_records;
        if (res->n_runs == 0 || prod < res->producer_cpu_ns)
            res->producer_cpu_ns = prod;
        if (res->n_runs == 0 || cons < res->consumer_cpu_ns)
            res->consumer_cpu_ns = cons;
        res->runs[res->n_runs++] = (double)r->n_records / seconds;
    } else {
        struct hist *all = &r->ctl->hist[0];
        uint64_t overhead = r->ctl->overhead_ticks[0];

        for (int p = 1; p < r->n_producers; p++) {
            for (size_t i = 0; i < HIST_N; i++)
                all->count[i] += r->ctl->hist[p].count[i];
            if (r->ctl->overhead_ticks[p] < overhead)
                overhead = r->ctl->overhead_ticks[p];
        }
        res->timed_records_per_s = (double)r->n_records / seconds;
        res->overhead_ns = (double)overhead / ticks_per_ns;
        res->p50_ns = put_ns(all, 0.50, overhead, ticks_per_ns);
        res->p99_ns = put_ns(all, 0.99, overhead, ticks_per_ns);
        res->p999_ns = put_ns(all, 0.999, overhead, ticks_per_ns);
    }
out:
    ring_close(o, 1);
    r->owner = NULL;
    g_ring_exists = 0;
    return rc;
}

/* The baseline: one producer, n_records records of value_size. */
static int pass_baseline(struct run *r, unsigned watchdog_s, double *records_per_s)
{
    size_t size = sizeof(struct base_ring) + r->capacity;
    struct base_ring *b;
    double seconds = 0;
    uint64_t n = r->n_records;
    int rc;

    b = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED) {
        rc = errno;
        fprintf(stderr, "bench_ring: mmap %zu bytes: %s\n", size, strerror(rc));
        return rc;
    }
    r->base = b;
    rc = run_processes(r, base_consumer, base_producer, watchdog_s, &seconds);
    if (rc == 0 && (r->ctl->n_taken[0] != n || r->ctl->key_sum != n * (n - 1) / 2)) {
        fprintf(stderr, "bench_ring: baseline: %" PRIu64 " of %" PRIu64 " records, key sum %" PRIu64 "\n",
                r->ctl->n_taken[0], n, r->ctl->key_sum);
        rc = RK_ECORRUPT;
    }
    if (rc == 0)
        *records_per_s = (double)n / seconds;
    munmap(b, size);
    r->base = NULL;
    return rc;
}

/* ------------------------------------------------------------ output */

struct options {
    uint64_t n_records; /* 0: by value size */
    uint64_t capacity;
    uint32_t sizes[MAX_SIZES];
    int n_sizes;
    int producers[MAX_PRODUCERS];
    int n_producer_counts;
    uint32_t batches[MAX_BATCHES]; /* 1: rk_put; more: rk_write of that many */
    int n_batches;
    int repeat; /* untimed passes per configuration, best reported */
    int quick, json;
    unsigned watchdog_s;
};

struct machine {
    long nproc;
    char cpu[128];
    char kernel[128];
    double ticks_per_ns;
};

static void read_machine(struct machine *m)
{
    bench_read_host(&m->nproc, m->cpu, sizeof m->cpu, m->kernel, sizeof m->kernel);
}

static void print_header(const struct options *opt, const struct machine *m)
{
    printf("bench_ring: ringkeep shared-memory ring vs a bare two-process memcpy ring\n");
    printf("machine: %ld CPUs, %s, %s, TSC %.3f GHz (calibrated against CLOCK_MONOTONIC over 50 ms)\n",
           m->nproc, m->cpu, m->kernel, m->ticks_per_ns);
    printf("method:  processes, not threads: 1 consumer + P producers (+ the owner, asleep); ring %" PRIu64
           " KiB;\n         key 8 B; MB/s counts key + value bytes.\n",
           opt->capacity / 1024);
    printf("  consumer: ring_next (XXH3 of every frame); per-producer order and count checked; durable\n"
           "           cursor + ring_release every %d frames / %u KiB, and after %d ms idle.\n",
           RELEASE_FRAMES, RELEASE_BYTES / 1024, IDLE_WAIT_MS);
    printf("  records/s: start barrier -> consumer took the last record; untimed puts; best of %d passes,\n"
           "           interleaved with the baseline's.\n",
           opt->repeat);
    printf("  put p50/p99/p99.9: one more pass timing every rk_put with rdtscp, minus the loop's cost\n"
           "           without a put (ovh column); TSC reads are too dear here to time the passes above.\n");
    printf("  baseline: bare SPSC ring in shared memory, same capacity, 4 B length + key + value 8-aligned;\n"
           "           cursors on own lines, cached on the other side, published per %d records / %u KiB;\n"
           "           consumer checks and sums every key; 1 producer (also the reference for 2).\n",
           RELEASE_FRAMES, RELEASE_BYTES / 1024);
    printf("  batch: 1 = one rk_put per record; N = rk_write of N records per call (one claim, one\n"
           "           atomic, per 16 KiB); its p50/p99/p99.9 are a call's time / N.\n");
    printf("  cpu/rec: CPU time per record (CLOCK_PROCESS_CPUTIME_ID) of the producers together and of\n"
           "           the consumer, the least of the untimed passes: what other load on the machine\n"
           "           inflates least.\n");
    printf("\n%4s %5s %6s %9s %10s %8s %7s %7s %8s %7s %10s %9s %8s %8s\n", "prod", "batch", "value",
           "records", "records/s", "MB/s", "p50 ns", "p99 ns", "p999 ns", "ovh ns", "base rec/s", "ours/base",
           "cpu/rec", "cons/rec");
}

static void print_result(const struct options *opt, const struct machine *m, const struct result *res)
{
    double mb = res->records_per_s * (KEY_SIZE + res->value_size) / 1e6;
    double ratio = res->records_per_s / res->baseline_records_per_s;

    if (!opt->json) {
        printf("%4d %5u %6u %9" PRIu64
               " %9.2fM %8.1f %7.0f %7.0f %8.0f %7.1f %9.2fM %9.3f %6.1fns %6.1fns%s\n",
               res->n_producers, res->batch, res->value_size, res->n_records, res->records_per_s / 1e6, mb,
               res->p50_ns, res->p99_ns, res->p999_ns, res->overhead_ns, res->baseline_records_per_s / 1e6,
               ratio, res->producer_cpu_ns, res->consumer_cpu_ns,
               res->n_producers > 1 ? "  (vs 1-producer baseline)" : "");
    } else {
        bench_print_json(json_pack(
            "{s:s, s:i, s:i, s:i, s:i, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:i, s:o, s:o, s:o,"
            " s:i, s:s, s:o, s:o}",
            "bench", "ring", "producers", res->n_producers, "batch", (int)res->batch, "value_size",
            (int)res->value_size, "key_size", (int)KEY_SIZE, "records", (json_int_t)res->n_records,
            "capacity", (json_int_t)opt->capacity, "records_per_s", bench_int(res->records_per_s),
            "records_per_s_runs", bench_ints(res->runs, res->n_runs), "mb_per_s", bench_real(mb, 1),
            "timed_records_per_s", bench_int(res->timed_records_per_s), "put_p50_ns",
            bench_real(res->p50_ns, 1), "put_p99_ns", bench_real(res->p99_ns, 1), "put_p999_ns",
            bench_real(res->p999_ns, 1), "timing_overhead_ns", bench_real(res->overhead_ns, 1),
            "baseline_producers", 1, "baseline_records_per_s", bench_int(res->baseline_records_per_s),
            "baseline_records_per_s_runs", bench_ints(res->baseline_runs, res->n_runs), "ratio",
            bench_real(ratio, 4), "nproc", (int)m->nproc, "cpu", m->cpu, "producer_cpu_ns_per_record",
            bench_real(res->producer_cpu_ns, 1), "consumer_cpu_ns_per_record",
            bench_real(res->consumer_cpu_ns, 1)));
    }
    fflush(stdout);
}

/* The targets, for information: they never change the exit status. */
static void print_targets(const struct result *results, int n)
{
    printf("\ntargets (information only; this run's figures):\n");
    for (int i = 0; i < n; i++) {
        const struct result *res = &results[i];
        double ratio = res->records_per_s / res->baseline_records_per_s;
        if (res->value_size != 64)
            continue;
        if (res->n_producers == 1)
            printf("  1 producer, batch %u, 64 B: %.1fM records/s >= 40M: %s; ours/base %.3f >= 0.3: %s; "
                   "put p50 %.0f ns <= 30: %s; p99.9 %.0f ns <= 2000: %s\n",
                   res->batch, res->records_per_s / 1e6, met(res->records_per_s >= 40e6), ratio,
                   met(ratio >= 0.3), res->p50_ns, met(res->p50_ns <= 30), res->p999_ns,
                   met(res->p999_ns <= 2000));
        else if (res->n_producers == 2)
            printf("  2 producers, batch %u, 64 B: %.1fM records/s together >= 20M: %s\n", res->batch,
                   res->records_per_s / 1e6, met(res->records_per_s >= 20e6));
    }
}

/* ------------------------------------------------------------ arguments */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_ring [--records N] [--sizes 16,64,256,1024] [--producers 1,2] [--batch 1,%d]\n"
            "                  [--capacity BYTES] [--repeat N] [--watchdog SECONDS] [--quick] [--json]\n"
            "  --records N   records per configuration, split over the producers (default\n"
            "                %llu for values up to 64 B, scaled down by value size above;\n"
            "                --quick: %llu)\n"
            "  --batch       records per call: 1 = rk_put, N > 1 = rk_write of N records (default 1,%d)\n"
            "  --capacity    ring and baseline capacity, a power of two (default %u)\n"
            "  --repeat N    untimed passes of ours and of the baseline, best reported (default %d;\n"
            "                --quick: 1)\n"
            "  --watchdog    seconds one pass may take before everything is killed (default %d)\n"
            "  --json        one JSON object per configuration instead of the table\n",
            DEFAULT_BATCH, DEFAULT_RECORDS, QUICK_RECORDS, DEFAULT_BATCH, DEFAULT_CAPACITY, DEFAULT_REPEAT,
            DEFAULT_WATCHDOG_S);
}

/* Parses a comma-separated list of integers in [lo, hi] into out. */
static int parse_list(const char *s, uint32_t lo, uint32_t hi, uint32_t *out, int max)
{
    int n = 0;

    while (*s) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || v < lo || v > hi || n == max || (*end && *end != ','))
            return -1;
        out[n++] = (uint32_t)v;
        s = *end ? end + 1 : end;
    }
    return n;
}

static int parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        {"records", required_argument, NULL, 'r'},
        {"sizes", required_argument, NULL, 's'},
        {"producers", required_argument, NULL, 'p'},
        {"batch", required_argument, NULL, 'b'},
        {"capacity", required_argument, NULL, 'c'},
        {"watchdog", required_argument, NULL, 'w'},
        {"quick", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"repeat", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    uint32_t counts[MAX_PRODUCERS];
    char *end;
    int c;

    memset(opt, 0, sizeof *opt);
    opt->capacity = DEFAULT_CAPACITY;
    opt->watchdog_s = DEFAULT_WATCHDOG_S;
    opt->n_sizes = 4;
    opt->sizes[0] = 16;
    opt->sizes[1] = 64;
    opt->sizes[2] = 256;
    opt->sizes[3] = 1024;
    opt->n_producer_counts = 2;
    opt->producers[0] = 1;
    opt->producers[1] = 2;
    opt->n_batches = 2;
    opt->batches[0] = 1;
    opt->batches[1] = DEFAULT_BATCH;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            errno = 0;
            opt->n_records = strtoull(optarg, &end, 10);
            if (errno || *end || opt->n_records < 1 || opt->n_records > 1000000000ull) {
                fprintf(stderr, "bench_ring: --records must be 1 to 1e9\n");
                return -1;
            }
            break;
        case 's':
            opt->n_sizes = parse_list(optarg, 8, 1u << 20, opt->sizes, MAX_SIZES);
            if (opt->n_sizes <= 0) {
                fprintf(stderr, "bench_ring: --sizes takes up to %d sizes from 8 to 1048576 bytes\n",
                        MAX_SIZES);
                return -1;
            }
            break;
        case 'p':
            opt->n_producer_counts = parse_list(optarg, 1, MAX_PRODUCERS, counts, MAX_PRODUCERS);
            if (opt->n_producer_counts <= 0) {
                fprintf(stderr, "bench_ring: --producers takes counts from 1 to %d\n", MAX_PRODUCERS);
                return -1;
            }
            for (int i = 0; i < opt->n_producer_counts; i++)
                opt->producers[i] = (int)counts[i];
            break;
        case 'b':
            opt->n_batches = parse_list(optarg, 1, 1u << 16, opt->batches, MAX_BATCHES);
            if (opt->n_batches <= 0) {
                fprintf(stderr, "bench_ring: --batch takes up to %d counts from 1 to 65536\n", MAX_BATCHES);
                return -1;
            }
            break;
        case 'c':
            errno = 0;
            opt->capacity = strtoull(optarg, &end, 0);
            if (errno || *end || opt->capacity < RING_MIN_CAPACITY || opt->capacity > (1ull << 32) ||
                (opt->capacity & (opt->capacity - 1))) {
                fprintf(stderr, "bench_ring: --capacity must be a power of two from %u to 2^32\n",
                        RING_MIN_CAPACITY);
                return -1;
            }
            break;
        case 'w':
            opt->watchdog_s = (unsigned)strtoul(optarg, &end, 10);
            if (*end || opt->watchdog_s < 1 || opt->watchdog_s > 3600) {
                fprintf(stderr, "bench_ring: --watchdog must be 1 to 3600 seconds\n");
                return -1;
            }
            break;
        case 'n':
            opt->repeat = (int)strtol(optarg, &end, 10);
            if (*end || opt->repeat < 1 || opt->repeat > MAX_REPEAT) {
                fprintf(stderr, "bench_ring: --repeat must be 1 to %d\n", MAX_REPEAT);
                return -1;
            }
            break;
        case 'q':
            opt->quick = 1;
            break;
        case 'j':
            opt->json = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return -1;
    }
    if (!opt->repeat)
        opt->repeat = opt->quick ? 1 : DEFAULT_REPEAT;
    for (int i = 0; i < opt->n_sizes; i++) {
        if (FRAME_HEADER_SIZE + KEY_SIZE + opt->sizes[i] > opt->capacity / 4) {
            fprintf(stderr,
                    "bench_ring: a %u-byte value does not fit a %" PRIu64 "-byte ring (largest "
                    "frame: capacity / 4)\n",
                    opt->sizes[i], opt->capacity);
            return -1;
        }
    }
    return 0;
}

static uint64_t records_for(const struct options *opt, uint32_t value_size)
{
    uint64_t n = opt->quick ? QUICK_RECORDS : DEFAULT_RECORDS;

    if (opt->n_records)
        return opt->n_records;
    return value_size <= 64 ? n : n * 64 / value_size;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    struct options opt;
    struct machine m;
    struct result *results = NULL;
    struct ctl *ctl = MAP_FAILED;
    char ring_name[RK_NAME_MAX + 1];
    int n_results = 0, rc = 1;

    if (parse_options(argc, argv, &opt) != 0)
        return 2;
    snprintf(ring_name, sizeof ring_name, "bench.%d", (int)getpid());
    snprintf(g_ring_path, sizeof g_ring_path, "/dev/shm/" RING_SHM_PREFIX "%s", ring_name);
    bench_set_fatal_handlers(on_fatal_signal);
    read_machine(&m);
    m.ticks_per_ns = tsc_calibrate();
    results = calloc((size_t)(opt.n_sizes * opt.n_producer_counts * opt.n_batches), sizeof *results);
    ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!results || ctl == MAP_FAILED) {
        fprintf(stderr, "bench_ring: out of memory\n");
        goto out;
    }
    if (!opt.json)
        print_header(&opt, &m);
    for (int s = 0; s < opt.n_sizes; s++) {
        struct result *res = &results[n_results];
        struct run r = {0};
        double baseline[MAX_REPEAT] = {0};
        int n_configs = opt.n_producer_counts * opt.n_batches; /* producer counts x batches */

        r.value_size = opt.sizes[s];
        r.n_records = records_for(&opt, r.value_size);
        r.capacity = opt.capacity;
        r.release_bytes = RELEASE_BYTES < opt.capacity / 8 ? RELEASE_BYTES : (uint32_t)(opt.capacity / 8);
        r.ring_name = ring_name;
        r.ctl = ctl;
        /* rounds of baseline, then ours for each producer count, so that a
         * slow spell of this shared machine hits both sides alike */
        for (int k = 0; k < opt.repeat; k++) {
            r.n_producers = 1;
            r.timed = 0;
            if (pass_baseline(&r, opt.watchdog_s, &baseline[k]) != 0)
                goto out;
            for (int p = 0; p < n_configs; p++) {
                r.n_producers = opt.producers[p / opt.n_batches];
                r.batch = opt.batches[p % opt.n_batches];
                if (pass_ours(&r, opt.watchdog_s, m.ticks_per_ns, &res[p]) != 0)
                    goto out;
            }
        }
        for (int p = 0; p < n_configs; p++) {
            r.n_producers = opt.producers[p / opt.n_batches];
            r.batch = opt.batches[p % opt.n_batches];
            r.timed = 1;
            if (pass_ours(&r, opt.watchdog_s, m.ticks_per_ns, &res[p]) != 0)
                goto out;
            res[p].n_producers = r.n_producers;
            res[p].batch = r.batch;
            res[p].value_size = r.value_size;
            res[p].n_records = r.n_records;
            for (int k = 0; k < opt.repeat; k++) {
                res[p].baseline_runs[k] = baseline[k];
                if (baseline[k] > res[p].baseline_records_per_s)
                    res[p].baseline_records_per_s = baseline[k];
                if (res[p].runs[k] > res[p].records_per_s)
                    res[p].records_per_s = res[p].runs[k];
            }
            print_result(&opt, &m, &res[p]);
        }
        n_results += n_configs;
    }
    if (!opt.json)
        print_targets(results, n_results);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "bench_ring: run failed: the figures above (if any) are valid, the rest were not "
                        "measured\n");
    if (ctl != MAP_FAILED)
        munmap(ctl, sizeof *ctl);
    free(results);
    return rc;
}
