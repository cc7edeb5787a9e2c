/* test_ring_procs.c -- the shared-memory ring across real processes.
 *
 * What it tests: producer processes and a consumer process sharing one ring.
 *   stream        two producers and one consumer move at least 10,000,000
 *                 records of every kind and size (zero-length keys and
 *                 values up to rk_ring_max_record) through a 1 MiB ring:
 *                 each arrives once, in its producer's order, byte for byte,
 *                 with LSNs strictly increasing over the whole stream;
 *   dead_producer a producer SIGKILLed while it holds a claim (with its claim
 *                 marker written, or right after its fetch-add) is reported
 *                 with an ABORT, its space skipped, its half record never
 *                 delivered, while another producer's records all arrive;
 *   full          RK_FULL_FAIL and RK_FULL_WAIT on a ring nobody drains;
 *   wait          rk_wait() against the durable and replicated cursors that
 *                 a consumer process moves;
 *   regressions   defects found while writing the above (see each test).
 *
 * How: the test process creates the ring, so it is the owner, and forks
 * one child per role.  The consumer child uses the owner handle it
 * inherited.  Children never return into the Check runner: a child ends
 * with _exit(0), or on a failed check writes its reason into a shared
 * anonymous mapping and ends with _exit(1).  The test process reaps every
 * child, kills the rest when one fails or when a deadline of minutes
 * passes, and fails with the child's reason.
 *
 * A record is a pure function of (producer number, sequence): rec_make()
 * draws its kind, table, key and value lengths from a cheap PRNG and points
 * key and value into a pool of pseudo-random bytes that every process
 * builds alike.  The consumer learns which producer a frame is from by its
 * slot id, mapped through that producer's ATTACH frame (key = name), then
 * regenerates the record and compares type, table, key and value.
 *
 * Nothing here asserts speed.  Every wait has a deadline after which the
 * test fails with a message.  RK_TEST_RECORDS=n sets the stream test's
 * record count (default 10,000,000).
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm/ring.h"

#define DEFAULT_RECORDS 10000000ull   /* the stream test's records in all */
#define LONG_DEADLINE_MS (10 * 60000) /* the stream test */
#define DEADLINE_MS (3 * 60000)       /* everything else */
#define MAX_CHILDREN 6
#define MAX_EXPECT 4
#define N_TABLES 3
#define KEY_MAX_TEST 64u
#define POOL_SIZE ((1u << 20) + (1u << 18)) /* more than a 1 MiB ring's largest record */
#define NEAR_MAX_EVERY 40000u               /* one record in this many is near the limit */
#define NEAR_MAX_AT 4321u

Suite *ring_procs_suite(void);

static const char *const table_names[N_TABLES] = {"orders", "accounts", "t"};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------ records */

/* SplitMix64's finaliser: the PRNG that derives everything from a seed. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Keys and values are slices of this; every process fills it alike. */
static uint8_t pool[POOL_SIZE];

static void pool_init(void)
{
    uint64_t x = 0x5eed;

    for (size_t i = 0; i < POOL_SIZE; i += 8) {
        x = mix64(x);
        memcpy(pool + i, &x, 8);
    }
}

enum op { OP_PUT, OP_DEL, OP_MARK, OP_CLAIM };

struct rec {
    enum op op; /* OP_CLAIM: a PUT written with rk_claim_record/rk_commit */
    int table;  /* index into table_names */
    uint32_t klen, vlen;
    const uint8_t *key; /* into pool; NULL for MARK */
    const uint8_t *val; /* into pool; NULL when vlen is 0 */
    uint64_t height;    /* MARK */
};

/* Record `seq` of producer number `producer` on a ring whose records hold
 * at most max_record bytes of key and value: 6% MARK, 7% DEL, 10% claim and
 * commit, the rest PUT; keys 0..64 bytes (one in eight empty); values mostly
 * 0..96 bytes, one in sixteen empty, one in sixteen up to 2000 bytes, and
 * one record in NEAR_MAX_EVERY exactly at the limit or 8 or 16 bytes under. */
static void rec_make(struct rec *r, int producer, uint64_t seq, uint32_t max_record)
{
    uint64_t h1 = mix64((uint64_t)producer << 48 ^ seq), h2 = mix64(h1), h3 = mix64(h2), h4 = mix64(h3);
    uint32_t kind = (uint32_t)(h1 % 1000);
    int near_max = seq % NEAR_MAX_EVERY == NEAR_MAX_AT;

    memset(r, 0, sizeof *r);
    if (near_max)
        r->op = seq / NEAR_MAX_EVERY % 2 ? OP_CLAIM : OP_PUT;
    else
        r->op = kind < 60 ? OP_MARK : kind < 130 ? OP_DEL : kind < 230 ? OP_CLAIM : OP_PUT;
    if (r->op == OP_MARK) {
        r->height = seq;
        return;
    }
    r->table = (int)(h2 % N_TABLES);
    r->klen = (h2 >> 8) % 8 == 0 ? 0 : (uint32_t)((h2 >> 16) % (KEY_MAX_TEST + 1));
    r->key = pool + h3 % (POOL_SIZE - KEY_MAX_TEST);
    if (r->op == OP_DEL)
        return;
    if (near_max)
        r->vlen = max_record - r->klen - (uint32_t)(seq / NEAR_MAX_EVERY % 3) * 8;
    else if ((h2 >> 32) % 16 == 0)
        r->vlen = 0;
    else if ((h2 >> 32) % 16 == 1)
        r->vlen = (uint32_t)((h2 >> 40) % 2001);
    else
        r->vlen = (uint32_t)((h2 >> 40) % 97);
    if (r->vlen)
        r->val = pool + h4 % (POOL_SIZE - r->vlen + 1);
}

/* The aligned bytes a record's frame takes in the ring. */
static uint32_t rec_frame_size(const struct rec *r)
{
    return frame_align(FRAME_HEADER_SIZE + (r->op == OP_MARK ? 8 : r->klen + r->vlen));
}

/* Writes r with the call its kind names; tids maps table_names to ids. */
static int rec_write(rk_ring *ring, const struct rec *r, const uint16_t *tids, uint64_t *lsn)
{
    rk_claim c;
    int rc;

    switch (r->op) {
    case OP_PUT:
        return rk_put(ring, tids[r->table], r->key, r->klen, r->val, r->vlen, lsn);
    case OP_DEL:
        return rk_del(ring, tids[r->table], r->key, r->klen, lsn);
    case OP_MARK:
        return rk_mark(ring, r->height, lsn);
    case OP_CLAIM:
        break;
    }
    rc = rk_claim_record(ring, tids[r->table], r->klen, r->vlen, &c);
    if (rc)
        return rc;
    if (r->klen)
        memcpy(c.key, r->key, r->klen);
    if (r->vlen)
        memcpy(c.val, r->val, r->vlen);
    return rk_commit(ring, &c, lsn);
}

/* NULL when frame f is record r byte for byte, else what differs. */
static const char *rec_diff(const struct rec *r, const ring_frame *f, struct ring_header *h)
{
    static const uint8_t frame_type[] = {
        [OP_PUT] = FRAME_PUT, [OP_DEL] = FRAME_DEL, [OP_MARK] = FRAME_MARK, [OP_CLAIM] = FRAME_PUT};
    uint64_t height = 0;

    if (f->type != frame_type[r->op])
        return "frame type differs";
    if (f->flags)
        return "flags are set";
    if (r->op == OP_MARK) {
        if (f->table != 0 || f->klen != 0 || f->vlen != 8)
            return "MARK frame has a table, a key, or a value that is not 8 bytes";
        for (int i = 0; i < 8; i++)
            height |= (uint64_t)f->val[i] << (8 * i);
        return height == r->height ? NULL : "MARK height differs";
    }
    /* acquire: the table's name was written before it was marked used */
    if (f->table >= RING_MAX_TABLES ||
        !atomic_load_explicit(&h->tables[f->table].used, memory_order_acquire) ||
        strncmp(h->tables[f->table].name, table_names[r->table], RK_NAME_MAX + 1) != 0)
        return "table differs";
    if (f->klen != r->klen)
        return "key length differs";
    if (f->vlen != r->vlen)
        return "value length differs";
    if (r->klen && memcmp(f->key, r->key, r->klen) != 0)
        return "key bytes differ";
    if (r->vlen && memcmp(f->val, r->val, r->vlen) != 0)
        return "value bytes differ";
    return NULL;
}

/* The smallest n >= at_least such that record n - 1 of producer is a MARK:
 * a producer that writes n records ends on a group boundary. */
static uint64_t group_end(int producer, uint64_t at_least)
{
    struct rec r;

    for (uint64_t n = at_least > 0 ? at_least : 1;; n++) {
        rec_make(&r, producer, n - 1, UINT32_MAX / 2);
        if (r.op == OP_MARK)
            return n;
    }
}

/* ------------------------------------------------------------ processes */

/* A mapping shared by the test process and its children. */
struct shared {
    char why[MAX_CHILDREN][480]; /* a failing child's reason; that child writes it, then exits 1 */
    _Atomic uint32_t claimed;    /* a doomed producer holds its unfinished claim */
    _Atomic uint64_t claim_lsn;  /* where that claim is */
    _Atomic uint32_t claim_size; /* its aligned size */
    _Atomic uint32_t written;    /* a producer wrote everything it will write */
    _Atomic uint64_t n_written;  /* how many records (full-policy tests) */
    _Atomic uint32_t done;       /* the consumer has everything: lingering producers may go */
    _Atomic uint64_t n_gaps;     /* frames the consumer found past padding or skipped space */
    _Atomic uint64_t last_lsn;   /* the last frame the consumer got */
};

struct procs;
typedef void child_fn(struct procs *p, const void *arg);

/* One test's ring and children, as the test process sees them. */
struct procs {
    char ring[RK_NAME_MAX + 1];
    ring_owner *owner; /* the test process created the ring */
    struct ring_header *hdr;
    struct shared *sh;
    int n_children;
    pid_t pid[MAX_CHILDREN];
    const char *role[MAX_CHILDREN];
    int expect_signal[MAX_CHILDREN]; /* 0: must exit 0; else must die of this signal */
    int reaped[MAX_CHILDREN];
};

/* In a child: where to write why it failed. */
static struct shared *child_shared;
static int child_index = -1;

__attribute__((noreturn, format(printf, 2, 3))) static void child_fail(int line, const char *fmt, ...)
{
    char *why = child_shared->why[child_index];
    size_t size = sizeof child_shared->why[0];
    int n = snprintf(why, size, "line %d: ", line);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why + n, size - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "test_ring_procs: child %d (pid %d): %s\n", child_index, (int)getpid(), why);
    _exit(1);
}

/* A check in a child process: never ck_assert there. */
#define CCHECK(cond, ...)                                                                                    \
    do {                                                                                                     \
        if (!(cond))                                                                                         \
            child_fail(__LINE__, __VA_ARGS__);                                                               \
    } while (0)

/* Unmaps and removes the ring and the shared mapping.  Idempotent. */
static void procs_end(struct procs *p)
{
    ring_close(p->owner, 1);
    p->owner = NULL;
    p->hdr = NULL;
    if (p->sh)
        munmap(p->sh, sizeof *p->sh);
    p->sh = NULL;
}

static void procs_kill_all(struct procs *p)
{
    for (int i = 0; i < p->n_children; i++) {
        int status;
        if (p->reaped[i])
            continue;
        kill(p->pid[i], SIGKILL);
        waitpid(p->pid[i], &status, 0);
        p->reaped[i] = 1;
    }
}

/* Fails the test: kills and reaps every child, removes the ring. */
__attribute__((noreturn, format(printf, 3, 4))) static void procs_fail(struct procs *p, int line,
                                                                       const char *fmt, ...)
{
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "line %d: ", line);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    procs_kill_all(p);
    procs_end(p);
    ck_abort_msg("%s", msg);
}

/* A check in the test process once the ring exists: cleans up on failure. */
#define PCHECK(p, cond, ...)                                                                                 \
    do {                                                                                                     \
        if (!(cond))                                                                                         \
            procs_fail((p), __LINE__, __VA_ARGS__);                                                          \
    } while (0)

/* Creates ring "procs-<pid>-<tag>" and the shared mapping. */
static void procs_start(struct procs *p, const char *tag, uint64_t capacity, uint32_t unblock_timeout_ms,
                        uint64_t start_lsn)
{
    ring_create_opts opts = {
        .capacity = capacity, .start_lsn = start_lsn, .epoch = 1, .unblock_timeout_ms = unblock_timeout_ms};
    char err[512] = "";
    int rc;

    memset(p, 0, sizeof *p);
    pool_init();
    snprintf(p->ring, sizeof p->ring, "procs-%ld-%s", (long)getpid(), tag);
    p->sh = mmap(NULL, sizeof *p->sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_msg(p->sh != MAP_FAILED, "mmap: %s", strerror(errno));
    rc = ring_create(p->ring, &opts, &p->owner, err, sizeof err);
    if (rc) {
        munmap(p->sh, sizeof *p->sh);
        ck_abort_msg("ring_create(%s): %s (%s)", p->ring, rk_strerror(rc), err);
    }
    p->hdr = ring_header_of(p->owner);
}

/* Forks a child that runs fn(p, arg) and then _exit(0)s. */
static void procs_spawn(struct procs *p, const char *role, child_fn *fn, const void *arg, int expect_signal)
{
    int i = p->n_children;
    pid_t pid;

    PCHECK(p, i < MAX_CHILDREN, "too many children");
    fflush(NULL);
    pid = fork();
    PCHECK(p, pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        child_shared = p->sh;
        child_index = i;
        fn(p, arg);
        _exit(0);
    }
    p->pid[i] = pid;
    p->role[i] = role;
    p->expect_signal[i] = expect_signal;
    p->n_children++;
}

/* Reaps the children that ended, without blocking; fails the test when one
 * ended otherwise than expected.  Returns how many still run. */
static int procs_poll(struct procs *p, int line)
{
    int running = 0;

    for (int i = 0; i < p->n_children; i++) {
        int status = 0, ok;
        pid_t w;

        if (p->reaped[i])
            continue;
        w = waitpid(p->pid[i], &status, WNOHANG);
        if (w == 0) {
            running++;
            continue;
        }
        p->reaped[i] = 1;
        if (w != p->pid[i])
            procs_fail(p, line, "waitpid(%s): %s", p->role[i], strerror(errno));
        if (p->expect_signal[i])
            ok = WIFSIGNALED(status) && WTERMSIG(status) == p->expect_signal[i];
        else
            ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok)
            procs_fail(p, line, "child '%s' (pid %d) %s %d, expected %s: %s", p->role[i], (int)p->pid[i],
                       WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                       WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                       p->expect_signal[i] ? "a kill" : "exit 0",
                       p->sh->why[i][0] ? p->sh->why[i] : "(it gave no reason)");
    }
    return running;
}

/* Waits until every child has ended as expected. */
static void procs_wait(struct procs *p, int timeout_ms, int line)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

    while (procs_poll(p, line) > 0) {
        if (now_ms() > deadline) {
            char running[256] = "";
            for (int i = 0; i < p->n_children; i++) {
                if (!p->reaped[i] && strlen(running) + strlen(p->role[i]) + 3 < sizeof running) {
                    strcat(running, " '");
                    strcat(running, p->role[i]);
                    strcat(running, "'");
                }
            }
            procs_fail(p, line, "children still running after %d ms:%s", timeout_ms, running);
        }
        usleep(2000);
    }
}

/* Waits until *flag is set, failing early when a child fails. */
static void procs_await(struct procs *p, _Atomic uint32_t *flag, const char *what, int line)
{
    uint64_t deadline = now_ms() + DEADLINE_MS;

    /* acquire: what the child wrote before setting the flag is visible */
    while (!atomic_load_explicit(flag, memory_order_acquire)) {
        procs_poll(p, line);
        if (now_ms() > deadline)
            procs_fail(p, line, "waited %d ms for %s", DEADLINE_MS, what);
        usleep(1000);
    }
}

/* In a child: waits until *flag is set. */
static void child_await(_Atomic uint32_t *flag, const char *what)
{
    uint64_t deadline = now_ms() + DEADLINE_MS;

    /* acquire: what the setter wrote before the flag is visible */
    while (!atomic_load_explicit(flag, memory_order_acquire)) {
        CCHECK(now_ms() < deadline, "waited %d ms for %s", DEADLINE_MS, what);
        usleep(1000);
    }
}

/* The slot id of producer `name`, or -1. */
static int slot_of_name(struct ring_header *h, const char *name)
{
    for (int i = 0; i < RING_MAX_PRODUCERS; i++) {
        if (atomic_load(&h->producers[i].state) != SLOT_FREE &&
            strncmp(h->producers[i].name, name, RK_NAME_MAX + 1) == 0)
            return i;
    }
    return -1;
}

/* After the last child: everything claimed was consumed and released,
 * the released space is zero again, and nothing was corrupt. */
static void check_drained(struct procs *p, int line)
{
    struct ring_header *h = p->hdr;
    const uint8_t *data = ring_data_of(p->owner);
    uint64_t head = atomic_load(&h->head), tail = atomic_load(&h->tail);

    if (head != tail)
        procs_fail(p, line, "head %" PRIu64 " != tail %" PRIu64 " after the consumer finished", head, tail);
    for (uint64_t i = 0; i < h->capacity; i++) {
        if (data[i] != 0)
            procs_fail(p, line, "data byte %" PRIu64 " is 0x%02x after everything was released", i, data[i]);
    }
    if (atomic_load(&h->n_corrupt) != 0)
        procs_fail(p, line, "n_corrupt is %" PRIu64, atomic_load(&h->n_corrupt));
}

/* ------------------------------------------------------------ producers */

/* In a child: attaches as `name` and registers the tables. */
static rk_ring *child_attach(struct procs *p, const char *name, int full_policy, int full_timeout_ms,
                             uint16_t *tids)
{
    char err[256] = "";
    rk_ring_opts opts = {.producer = name,
                         .full_policy = full_policy,
                         .full_timeout_ms = full_timeout_ms,
                         .errmsg = err,
                         .errmsg_size = sizeof err};
    rk_ring *r = NULL;
    int rc = rk_ring_attach(p->ring, &opts, &r);

    CCHECK(rc == 0, "rk_ring_attach(%s, %s): %s (%s)", p->ring, name, rk_strerror(rc), err);
    for (int i = 0; i < N_TABLES; i++) {
        rc = rk_table(r, table_names[i], &tids[i]);
        CCHECK(rc == 0, "rk_table(%s): %s", table_names[i], rk_strerror(rc));
    }
    return r;
}

struct producer_args {
    const char *name;
    int index; /* its producer number in rec_make() */
    uint64_t n_records;
    int full_policy;
    int full_timeout_ms;
    uint64_t pause_at; /* before this record, wait until a doomed producer holds its claim */
    int linger;        /* after its last record, stay attached until the consumer is done */
    int check_too_big; /* also offer records one byte over the limit */
    uint32_t batch;    /* > 0: runs of up to this many records between MARKs
                          go through rk_write (a claim as a PUT) */
};

/* rec as an rk_write record (a claim becomes a PUT); not a MARK. */
static rk_record rec_as_record(const struct rec *rec, const uint16_t *tids)
{
    rk_record out = {.key = rec->key,
                     .val = rec->val,
                     .klen = rec->klen,
                     .vlen = rec->vlen,
                     .table = tids[rec->table],
                     .op = rec->op == OP_DEL ? RK_OP_DEL : RK_OP_PUT};
    return out;
}

#define MAX_TEST_BATCH 64

/* Writes records seq.. of producer index through rk_write, as many as
 * follow before the next MARK, at most want (<= MAX_TEST_BATCH) and not
 * past n_records.  Returns how many it wrote (0 if record seq is a MARK);
 * *lsn is the last one's LSN. */
static uint64_t batch_write(rk_ring *r, const char *name, int index, uint64_t seq, uint64_t n_records,
                            uint32_t want, const uint16_t *tids, uint64_t *lsn)
{
    uint32_t max_record = rk_ring_max_record(r);
    rk_record recs[MAX_TEST_BATCH];
    size_t n = 0, written = 0;
    struct rec rec;
    int rc;

    while (n < want && seq + n < n_records) {
        rec_make(&rec, index, seq + n, max_record);
        if (rec.op == OP_MARK)
            break;
        recs[n++] = rec_as_record(&rec, tids);
    }
    if (n == 0)
        return 0;
    rc = rk_write(r, recs, n, &written, lsn);
    CCHECK(rc == 0 && written == n, "%s: rk_write of records %" PRIu64 "..%" PRIu64 ": %s, %zu written", name,
           seq, seq + n - 1, rk_strerror(rc), written);
    return n;
}

/* Writes records 0 .. n_records - 1 of its producer number. */
static void producer_main(struct procs *p, const void *arg)
{
    const struct producer_args *a = arg;
    uint16_t tids[N_TABLES];
    rk_ring *r = child_attach(p, a->name, a->full_policy, a->full_timeout_ms, tids);
    uint32_t max_record = rk_ring_max_record(r);
    uint64_t lsn = 0, last_lsn = 0;
    struct rec rec;
    rk_claim c;
    int rc;

    if (a->check_too_big) {
        rc = rk_put(r, tids[0], pool, 1, pool, max_record, NULL);
        CCHECK(rc == RK_ETOOBIG, "rk_put of max_record + 1 bytes: %s, expected RK_ETOOBIG", rk_strerror(rc));
        rc = rk_claim_record(r, tids[0], 0, max_record + 1, &c);
        CCHECK(rc == RK_ETOOBIG, "rk_claim_record of max_record + 1 bytes: %s", rk_strerror(rc));
    }
    for (uint64_t seq = 0; seq < a->n_records; seq++) {
        if (seq == a->pause_at)
            child_await(&child_shared->claimed, "the doomed producer's claim");
        if (a->batch) {
            uint32_t want = 1 + (uint32_t)(mix64(seq) % a->batch);
            uint64_t n = batch_write(r, a->name, a->index, seq, a->n_records, want, tids, &lsn);
            if (n) {
                CCHECK(lsn > last_lsn, "%s: records from %" PRIu64 " got LSN %" PRIu64 " after %" PRIu64,
                       a->name, seq, lsn, last_lsn);
                last_lsn = lsn;
                seq += n - 1;
                continue;
            }
        }
        rec_make(&rec, a->index, seq, max_record);
        rc = rec_write(r, &rec, tids, &lsn);
        CCHECK(rc == 0, "%s: record %" PRIu64 ": %s", a->name, seq, rk_strerror(rc));
        CCHECK(lsn > last_lsn, "%s: record %" PRIu64 " got LSN %" PRIu64 " after %" PRIu64, a->name, seq, lsn,
               last_lsn);
        last_lsn = lsn;
    }
    if (a->linger) {
        /* release: our records are in the ring before the flag */
        atomic_store_explicit(&child_shared->written, 1, memory_order_release);
        child_await(&child_shared->done, "the consumer");
    }
    rk_ring_detach(r);
}

struct doomed_args {
    const char *name;
    int index;          /* its producer number in rec_make() */
    uint64_t n_records; /* complete records before the claim it never finishes */
    int marker;         /* 1: rk_claim_record, half filled; 0: fetch-add only (test hook);
                           2: an rk_write claim of DOOMED_BATCH records, the first
                           DOOMED_BATCH_COMMITTED committed (test hook) */
    int parent_kills;   /* 1: wait for the test process's SIGKILL; 0: raise it */
};

#define DOOMED_KLEN 40u
#define DOOMED_VLEN 1500u
#define DOOMED_HOOK_SIZE 1000u
#define DOOMED_BATCH 12u
#define DOOMED_BATCH_COMMITTED 5u

/* Writes n_records records, claims one more, and dies holding the claim. */
static void doomed_main(struct procs *p, const void *arg)
{
    const struct doomed_args *a = arg;
    uint16_t tids[N_TABLES];
    rk_ring *r = child_attach(p, a->name, RK_FULL_WAIT, DEADLINE_MS, tids);
    uint32_t max_record = rk_ring_max_record(r);
    uint64_t deadline, lsn;
    struct rec rec;
    rk_claim c;
    int rc;

    for (uint64_t seq = 0; seq < a->n_records; seq++) {
        rec_make(&rec, a->index, seq, max_record);
        rc = rec_write(r, &rec, tids, &lsn);
        CCHECK(rc == 0, "%s: record %" PRIu64 ": %s", a->name, seq, rk_strerror(rc));
    }
    if (a->marker == 1) {
        rc = rk_claim_record(r, tids[0], DOOMED_KLEN, DOOMED_VLEN, &c);
        CCHECK(rc == 0, "rk_claim_record: %s", rk_strerror(rc));
        memcpy(c.key, pool, DOOMED_KLEN / 2);
        memcpy(c.val, pool + 4096, DOOMED_VLEN / 2);
        /* the claim marker holds the frame's position */
        atomic_store(&child_shared->claim_lsn, ((const struct frame_header *)c.key - 1)->lsn);
        atomic_store(&child_shared->claim_size, frame_align(FRAME_HEADER_SIZE + DOOMED_KLEN + DOOMED_VLEN));
    } else if (a->marker == 2) {
        rk_record recs[DOOMED_BATCH];
        uint64_t stuck_pos;
        uint32_t stuck_size;
        for (uint32_t j = 0; j < DOOMED_BATCH; j++) {
            rec_make(&rec, a->index, a->n_records + j, max_record);
            CCHECK(rec.op != OP_MARK, "record %" PRIu64 " of the doomed batch is a MARK", a->n_records + j);
            recs[j] = rec_as_record(&rec, tids);
        }
        rc = ring_test_write_partial(r, recs, DOOMED_BATCH, DOOMED_BATCH_COMMITTED, &stuck_pos, &stuck_size);
        CCHECK(rc == 0, "ring_test_write_partial: %s", rk_strerror(rc));
        atomic_store(&child_shared->claim_lsn, stuck_pos);
        atomic_store(&child_shared->claim_size, stuck_size);
    } else {
        atomic_store(&child_shared->claim_lsn, ring_test_claim_without_marker(r, DOOMED_HOOK_SIZE));
        atomic_store(&child_shared->claim_size, frame_align(DOOMED_HOOK_SIZE));
    }
    /* release: claim_lsn and claim_size are visible before the flag */
    atomic_store_explicit(&child_shared->claimed, 1, memory_order_release);
    if (!a->parent_kills)
        raise(SIGKILL);
    deadline = now_ms() + DEADLINE_MS;
    while (now_ms() < deadline)
        usleep(1000);
    child_fail(__LINE__, "%s was not killed", a->name);
}

/* ------------------------------------------------------------ consumer */

struct expect_producer {
    const char *name;
    uint64_t session;   /* the session its ATTACH frame carries */
    int index;          /* its producer number in rec_make() */
    uint64_t n_records; /* records it must deliver */
    int dies;           /* 1: then an ABORT for it, at shared claim_lsn */
};

struct consume_args {
    int n_producers;
    struct expect_producer prod[MAX_EXPECT];
    int advance_cursors;      /* move durable, and replicated one batch behind */
    unsigned cursor_delay_us; /* before moving them, as a journal's fsync would */
    uint32_t batch_frames;    /* release after this many frames (0: 1024) */
    int deadline_ms;          /* for everything (0: DEADLINE_MS) */
};

struct seen {
    uint64_t n; /* records delivered, so the next one's sequence */
    int attached, aborted;
    int ended; /* its detach with a group open: an ATTACH flagged RING_ATTACH_DETACH */
};

struct consumer {
    const struct consume_args *a;
    ring_owner *o;
    struct ring_header *h;
    uint32_t max_record;
    uint64_t last_lsn;                 /* of the last frame delivered */
    uint64_t next_lsn;                 /* where the frame after it starts when no padding follows */
    uint64_t n_gaps;                   /* frames that did not start at next_lsn */
    uint64_t released;                 /* head after our last release */
    uint64_t n_frames;                 /* ring frames delivered (not ABORTs, which the consumer makes) */
    uint32_t n_batch;                  /* frames since the last release */
    int expect_of[RING_MAX_PRODUCERS]; /* a slot's current expectation; -1 before its ATTACH */
    struct seen seen[MAX_EXPECT];
};

static const char *consumer_progress(const struct consumer *c)
{
    static char buf[400];
    size_t n = 0;

    buf[0] = '\0';
    for (int e = 0; e < c->a->n_producers && n < sizeof buf; e++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s#%" PRIu64 ": %" PRIu64 " of %" PRIu64 "%s%s",
                              e ? "; " : "", c->a->prod[e].name, c->a->prod[e].session, c->seen[e].n,
                              c->a->prod[e].n_records, c->seen[e].attached ? "" : ", not attached",
                              c->seen[e].aborted ? ", aborted" : "");
    return buf;
}

/* Releases what was consumed; moves the cursors as a journal would. */
static void consumer_flush(struct consumer *c)
{
    struct ring_header *h = c->h;
    uint64_t durable;

    ring_release(c->o);
    c->released = atomic_load(&h->head);
    c->n_batch = 0;
    if (!c->a->advance_cursors)
        return;
    durable = atomic_load(&h->durable_lsn);
    if (c->last_lsn <= durable && atomic_load(&h->replicated_lsn) >= durable)
        return;
    if (c->a->cursor_delay_us)
        usleep(c->a->cursor_delay_us);
    ring_set_replicated(c->o, durable);
    ring_set_durable(c->o, c->last_lsn);
}

static int expect_find(const struct consume_args *a, const uint8_t *name, uint32_t len, uint64_t session)
{
    for (int e = 0; e < a->n_producers; e++) {
        if (strlen(a->prod[e].name) == len && memcmp(a->prod[e].name, name, len) == 0 &&
            a->prod[e].session == session)
            return e;
    }
    return -1;
}

static void consumer_check(struct consumer *c, const ring_frame *f)
{
    const struct consume_args *a = c->a;
    struct frame_attach attach;
    struct rec rec;
    const char *diff;
    int e;

    CCHECK(f->producer < RING_MAX_PRODUCERS, "frame at LSN %" PRIu64 " names slot %u", f->lsn, f->producer);
    e = c->expect_of[f->producer];
    switch (f->type) {
    case FRAME_ATTACH:
        CCHECK(f->vlen == sizeof attach, "ATTACH at LSN %" PRIu64 " has a %u-byte value", f->lsn, f->vlen);
        memcpy(&attach, f->val, sizeof attach);
        e = expect_find(a, f->key, f->klen, attach.session);
        CCHECK(e >= 0, "ATTACH of unexpected producer '%.*s' session %" PRIu64, (int)f->klen,
               (const char *)f->key, attach.session);
        if (attach.flags == RING_ATTACH_DETACH) {
            /* a producer that detached with a group open: after all of
             * its records, once */
            CCHECK(c->seen[e].attached && !c->seen[e].ended && !a->prod[e].dies &&
                       c->seen[e].n == a->prod[e].n_records && f->producer < RING_MAX_PRODUCERS &&
                       c->expect_of[f->producer] == e,
                   "detach of %s after %" PRIu64 " of its %" PRIu64 " records (ended %d)", a->prod[e].name,
                   c->seen[e].n, a->prod[e].n_records, c->seen[e].ended);
            c->seen[e].ended = 1;
            return;
        }
        CCHECK(!c->seen[e].attached, "second ATTACH of %s session %" PRIu64, a->prod[e].name, attach.session);
        CCHECK(attach.pid != 0 && attach.flags == 0 && f->table == 0,
               "ATTACH of %s: pid %u, flags %u, table %u", a->prod[e].name, attach.pid, attach.flags,
               f->table);
        c->seen[e].attached = 1;
        c->expect_of[f->producer] = e;
        return;
    case FRAME_ABORT:
        CCHECK(e >= 0 && a->prod[e].dies, "ABORT for slot %u (%s), which did not die", f->producer,
               e >= 0 ? a->prod[e].name : "never attached");
        CCHECK(!c->seen[e].aborted, "second ABORT for %s", a->prod[e].name);
        CCHECK(c->seen[e].n == a->prod[e].n_records,
               "ABORT for %s after %" PRIu64 " of its %" PRIu64 " records", a->prod[e].name, c->seen[e].n,
               a->prod[e].n_records);
        CCHECK(f->lsn == atomic_load(&child_shared->claim_lsn),
               "ABORT for %s at LSN %" PRIu64 ", but its dead claim is at %" PRIu64, a->prod[e].name, f->lsn,
               atomic_load(&child_shared->claim_lsn));
        c->seen[e].aborted = 1;
        return;
    default:
        CCHECK(e >= 0, "frame of type %u at LSN %" PRIu64 " from slot %u before that slot's ATTACH", f->type,
               f->lsn, f->producer);
        CCHECK(!c->seen[e].aborted, "%s delivered a record after its ABORT (LSN %" PRIu64 ")",
               a->prod[e].name, f->lsn);
        CCHECK(c->seen[e].n < a->prod[e].n_records,
               "%s delivered a record (LSN %" PRIu64 ", type %u, %u+%u bytes) beyond its %" PRIu64
               " complete ones: a duplicate or an unfinished record",
               a->prod[e].name, f->lsn, f->type, f->klen, f->vlen, a->prod[e].n_records);
        rec_make(&rec, a->prod[e].index, c->seen[e].n, c->max_record);
        diff = rec_diff(&rec, f, c->h);
        CCHECK(!diff, "%s record %" PRIu64 " (LSN %" PRIu64 "): %s", a->prod[e].name, c->seen[e].n, f->lsn,
               diff);
        c->seen[e].n++;
    }
}

/* Whether a producer the consumer expects (and that does not die) is
 * still attached in its session: its detach may yet write a frame. */
static int expected_still_attached(const struct consumer *c)
{
    for (int i = 0; i < RING_MAX_PRODUCERS; i++) {
        int e = c->expect_of[i];
        const struct ring_producer_slot *s = &c->h->producers[i];
        if (e >= 0 && !c->a->prod[e].dies && !c->seen[e].ended && atomic_load(&s->state) == SLOT_ATTACHED &&
            atomic_load(&s->session) == c->a->prod[e].session)
            return 1;
    }
    return 0;
}

static int consumer_finished(const struct consumer *c)
{
    for (int e = 0; e < c->a->n_producers; e++) {
        const struct expect_producer *x = &c->a->prod[e];
        if (!c->seen[e].attached || c->seen[e].n < x->n_records || (x->dies && !c->seen[e].aborted))
            return 0;
    }
    return 1;
}

/* Consumes until every expected record and ABORT has arrived, checking
 * each frame; releases in batches; at the end every claimed byte has been
 * consumed and released. */
static void consumer_main(struct procs *p, const void *arg)
{
    const struct consume_args *a = arg;
    struct consumer c = {.a = a, .o = p->owner, .h = p->hdr};
    uint64_t deadline = now_ms() + (uint64_t)(a->deadline_ms ? a->deadline_ms : DEADLINE_MS);
    uint32_t batch_frames = a->batch_frames ? a->batch_frames : 1024;
    /* released at most this far behind: a consumer that reads a whole
     * ring's worth before releasing meets the stale frame at head +
     * capacity (see ring_next_returns_0_when_an_exactly_full_ring_is_consumed) */
    uint64_t release_bytes = c.h->capacity / 8;
    ring_frame f;
    int rc;

    c.max_record = c.h->max_frame - FRAME_HEADER_SIZE;
    c.released = atomic_load(&c.h->head);
    c.next_lsn = c.released;
    for (int i = 0; i < RING_MAX_PRODUCERS; i++)
        c.expect_of[i] = -1;
    while (!consumer_finished(&c)) {
        rc = ring_next(c.o, &f);
        CCHECK(rc >= 0, "ring_next: %s (%s)", rk_strerror(rc), ring_error(c.o));
        if (rc == 0) {
            consumer_flush(&c);
            CCHECK(now_ms() < deadline, "nothing more after %d ms, at LSN %" PRIu64 " (tail %" PRIu64 "): %s",
                   a->deadline_ms ? a->deadline_ms : DEADLINE_MS, c.last_lsn, atomic_load(&c.h->tail),
                   consumer_progress(&c));
            ring_wait_ready(c.o, 5);
            continue;
        }
        CCHECK(f.lsn > c.last_lsn, "LSN %" PRIu64 " (type %u) after LSN %" PRIu64, f.lsn, f.type, c.last_lsn);
        c.last_lsn = f.lsn;
        if (f.lsn != c.next_lsn)
            c.n_gaps++;
        c.next_lsn = f.lsn + frame_align(f.raw_len);
        if (f.type != FRAME_ABORT)
            c.n_frames++;
        consumer_check(&c, &f);
        if (++c.n_batch >= batch_frames || f.lsn + f.raw_len - c.released >= release_bytes)
            consumer_flush(&c);
    }
    if (a->advance_cursors) {
        ring_set_durable(c.o, c.last_lsn);
        ring_set_replicated(c.o, c.last_lsn);
    }
    atomic_store(&child_shared->last_lsn, c.last_lsn); /* the last expected frame's */
    /* release: producers that linger may go */
    atomic_store_explicit(&child_shared->done, 1, memory_order_release);
    /* a producer that detaches with a group open writes one ATTACH that
     * ends its session (rk_ring_detach): read on until every expected
     * producer has detached, and then to the tail */
    for (;;) {
        int attached = expected_still_attached(&c);
        rc = ring_next(c.o, &f);
        CCHECK(rc >= 0, "ring_next: %s (%s)", rk_strerror(rc), ring_error(c.o));
        if (rc == 1) {
            CCHECK(f.lsn > c.last_lsn && f.type == FRAME_ATTACH,
                   "frame of type %u at LSN %" PRIu64 " after everything expected", f.type, f.lsn);
            c.last_lsn = f.lsn;
            c.n_frames++;
            consumer_check(&c, &f);
            continue;
        }
        if (!attached)
            break;
        CCHECK(now_ms() < deadline, "an expected producer still attached after %d ms",
               a->deadline_ms ? a->deadline_ms : DEADLINE_MS);
        ring_wait_ready(c.o, 5);
    }
    consumer_flush(&c);
    CCHECK(atomic_load(&c.h->head) == atomic_load(&c.h->tail),
           "everything expected arrived, but head %" PRIu64 " != tail %" PRIu64, atomic_load(&c.h->head),
           atomic_load(&c.h->tail));
    CCHECK(atomic_load(&c.h->n_consumed) == c.n_frames, "n_consumed %" PRIu64 ", frames delivered %" PRIu64,
           atomic_load(&c.h->n_consumed), c.n_frames);
    atomic_store(&child_shared->n_gaps, c.n_gaps);
}

/* ------------------------------------------------------------ stream */

static uint64_t stream_records(void)
{
    const char *env = getenv("RK_TEST_RECORDS");
    char *end = NULL;
    unsigned long long n;

    if (!env || !*env)
        return DEFAULT_RECORDS;
    errno = 0;
    n = strtoull(env, &end, 10);
    return errno || *end || n < 2 ? DEFAULT_RECORDS : n;
}

/* Two producers (batch > 0: writing runs of records with rk_write) and a
 * consumer over many laps of the ring. */
static void run_stream(uint32_t batch)
{
    struct procs p;
    /* each producer ends on a group boundary: its detach writes nothing
     * (with a group open it writes an ATTACH that ends the session) */
    uint64_t want = stream_records(), n0 = group_end(0, want - want / 2), n1 = group_end(1, want / 2);
    uint64_t total = n0 + n1;
    struct producer_args pa[2] = {
        {.name = "p0",
         .index = 0,
         .n_records = n0,
         .full_timeout_ms = LONG_DEADLINE_MS,
         .pause_at = UINT64_MAX,
         .check_too_big = 1,
         .batch = batch},
        {.name = "p1",
         .index = 1,
         .n_records = n1,
         .full_timeout_ms = LONG_DEADLINE_MS,
         .pause_at = UINT64_MAX,
         .batch = batch},
    };
    struct consume_args ca = {
        .n_producers = 2,
        .prod = {{"p0", 1, 0, pa[0].n_records, 0}, {"p1", 1, 1, pa[1].n_records, 0}},
        .advance_cursors = 1,
        .deadline_ms = LONG_DEADLINE_MS,
    };

    procs_start(&p, "stream", 1u << 20, 0, 0);
    procs_spawn(&p, "consumer", consumer_main, &ca, 0);
    procs_spawn(&p, "producer p0", producer_main, &pa[0], 0);
    procs_spawn(&p, "producer p1", producer_main, &pa[1], 0);
    procs_wait(&p, LONG_DEADLINE_MS, __LINE__);
    check_drained(&p, __LINE__);
    /* the ring wrapped many times, padding its end when a frame did not fit */
    PCHECK(&p, atomic_load(&p.sh->n_gaps) > 0, "no frame followed padding");
    PCHECK(&p, atomic_load(&p.hdr->n_unblocked) == 0, "n_unblocked %" PRIu64 " with no dead producer",
           atomic_load(&p.hdr->n_unblocked));
    PCHECK(&p, atomic_load(&p.hdr->n_consumed) == total + 2, "n_consumed %" PRIu64 ", expected %" PRIu64,
           atomic_load(&p.hdr->n_consumed), total + 2);
    PCHECK(&p,
           atomic_load(&p.hdr->durable_lsn) == atomic_load(&p.sh->last_lsn) &&
               atomic_load(&p.hdr->replicated_lsn) == atomic_load(&p.sh->last_lsn),
           "durable_lsn %" PRIu64 ", replicated_lsn %" PRIu64 ", the last record's LSN %" PRIu64,
           atomic_load(&p.hdr->durable_lsn), atomic_load(&p.hdr->replicated_lsn),
           atomic_load(&p.sh->last_lsn));
    procs_end(&p);
}

START_TEST(two_producers_one_consumer_deliver_every_record_once_in_order)
{
    run_stream(0);
}
END_TEST

START_TEST(two_producers_writing_batches_deliver_every_record_once_in_order)
{
    run_stream(MAX_TEST_BATCH);
}
END_TEST

/* ------------------------------------------------------------ dead producers */

#define LIVE_RECORDS 300000u
#define LIVE_PAUSE_AT 100000u

/* A live producer writes while "doomed" writes complete groups, claims one
 * more record and is SIGKILLed holding it. */
/* The smallest n >= at_least such that record n - 1 of producer is a MARK
 * and records n .. n + k - 1 are not: a batch of k records can follow n. */
static uint64_t group_end_before_batch(int producer, uint64_t at_least, uint32_t k)
{
    for (uint64_t n = group_end(producer, at_least);; n = group_end(producer, n + 1)) {
        struct rec r;
        uint32_t j = 0;
        for (; j < k; j++) {
            rec_make(&r, producer, n + j, UINT32_MAX / 2);
            if (r.op == OP_MARK)
                break;
        }
        if (j == k)
            return n;
    }
}

static void run_dead_producer(int marker)
{
    struct procs p;
    uint64_t n_doomed = marker == 2 ? group_end_before_batch(1, 1000, DOOMED_BATCH) : group_end(1, 1000);
    /* records the consumer gets from it: a batch's committed ones too */
    uint64_t n_delivered = n_doomed + (marker == 2 ? DOOMED_BATCH_COMMITTED : 0);
    struct producer_args live = {.name = "live",
                                 .index = 0,
                                 .n_records = LIVE_RECORDS,
                                 .full_timeout_ms = DEADLINE_MS,
                                 .pause_at = LIVE_PAUSE_AT};
    struct doomed_args doomed = {
        .name = "doomed", .index = 1, .n_records = n_doomed, .marker = marker, .parent_kills = marker};
    struct consume_args ca = {
        .n_producers = 2,
        .prod = {{"live", 1, 0, LIVE_RECORDS, 0}, {"doomed", 1, 1, n_delivered, 1}},
        .advance_cursors = 1,
    };
    int slot;

    procs_start(&p, marker == 2 ? "dead-batch" : marker ? "dead-claim" : "dead-nomark", 256u << 10, 50, 0);
    procs_spawn(&p, "consumer", consumer_main, &ca, 0);
    procs_spawn(&p, "live producer", producer_main, &live, 0);
    procs_spawn(&p, "doomed producer", doomed_main, &doomed, SIGKILL);
    if (marker) {
        procs_await(&p, &p.sh->claimed, "the doomed producer's claim", __LINE__);
        PCHECK(&p, kill(p.pid[2], SIGKILL) == 0, "kill: %s", strerror(errno));
    }
    procs_wait(&p, DEADLINE_MS, __LINE__);
    check_drained(&p, __LINE__);
    PCHECK(&p, atomic_load(&p.hdr->n_unblocked) == 1, "n_unblocked %" PRIu64 ", expected 1",
           atomic_load(&p.hdr->n_unblocked));
    PCHECK(&p, atomic_load(&p.hdr->n_unblocked_bytes) == atomic_load(&p.sh->claim_size),
           "n_unblocked_bytes %" PRIu64 ", the dead claim took %u", atomic_load(&p.hdr->n_unblocked_bytes),
           atomic_load(&p.sh->claim_size));
    slot = slot_of_name(p.hdr, "doomed");
    PCHECK(&p, slot >= 0 && atomic_load(&p.hdr->producers[slot].state) == SLOT_DEAD,
           "the doomed producer's slot %d is not SLOT_DEAD", slot);
    procs_end(&p);
}

START_TEST(producer_killed_between_claim_and_commit_is_aborted)
{
    run_dead_producer(1);
}
END_TEST

START_TEST(producer_killed_after_fetch_add_without_marker_is_aborted)
{
    run_dead_producer(0);
}
END_TEST

/* Killed in the middle of an rk_write claim: the frames it committed are
 * delivered, the rest of the claim (marked at the first frame not
 * committed) is padded and the producer aborted. */
START_TEST(producer_killed_in_the_middle_of_a_batch_claim_is_aborted)
{
    run_dead_producer(2);
}
END_TEST

/* ------------------------------------------------------------ full ring */

struct filler_args {
    const char *name;
    int full_policy;
    int full_timeout_ms;
    int expect_rc; /* what the first record that does not fit gets */
};

/* Writes records of producer number 0 until one does not fit. */
static void filler_main(struct procs *p, const void *arg)
{
    const struct filler_args *a = arg;
    struct ring_header *h = p->hdr;
    uint16_t tids[N_TABLES];
    rk_ring *r = child_attach(p, a->name, a->full_policy, a->full_timeout_ms, tids);
    uint32_t max_record = rk_ring_max_record(r);
    uint64_t seq, lsn, cap = h->capacity, limit = cap / FRAME_HEADER_SIZE;
    struct rec rec;
    int rc;

    for (seq = 0;; seq++) {
        uint64_t tail, head, idx, need;
        uint32_t size;

        CCHECK(seq < limit, "%" PRIu64 " records and the ring is not full", seq);
        rec_make(&rec, 0, seq, max_record);
        rc = rec_write(r, &rec, tids, &lsn);
        if (rc == 0)
            continue;
        CCHECK(rc == a->expect_rc, "record %" PRIu64 ": %s, expected %s", seq, rk_strerror(rc),
               rk_strerror(a->expect_rc));
        /* refused only when it really does not fit: the frame, plus the
         * padding to the end of the data area when it would straddle it */
        tail = atomic_load(&h->tail);
        head = atomic_load(&h->head);
        size = rec_frame_size(&rec);
        idx = tail & (cap - 1);
        need = size + (idx + size > cap ? cap - idx : 0);
        CCHECK(tail - head <= cap && tail + need - head > cap,
               "%s with head %" PRIu64 ", tail %" PRIu64 ", and a %u-byte frame to write", rk_strerror(rc),
               head, tail, size);
        /* nothing drains: the same record is refused again, claiming nothing */
        rc = rec_write(r, &rec, tids, &lsn);
        CCHECK(rc == a->expect_rc, "record %" PRIu64 " again: %s", seq, rk_strerror(rc));
        CCHECK(atomic_load(&h->tail) == tail, "a refused record moved tail from %" PRIu64 " to %" PRIu64,
               tail, atomic_load(&h->tail));
        break;
    }
    atomic_store(&child_shared->n_written, seq);
    rk_ring_detach(r);
}

/* Fills a ring nobody drains until a record is refused with expect_rc;
 * then a consumer gets every record written before, byte for byte. */
static void run_full_refused(const char *tag, int full_policy, int full_timeout_ms, int expect_rc)
{
    struct procs p;
    struct filler_args fa = {.name = "filler",
                             .full_policy = full_policy,
                             .full_timeout_ms = full_timeout_ms,
                             .expect_rc = expect_rc};
    struct consume_args ca = {.n_producers = 1};
    uint64_t n;

    procs_start(&p, tag, 64u << 10, 0, 0);
    procs_spawn(&p, "filler", filler_main, &fa, 0);
    procs_wait(&p, DEADLINE_MS, __LINE__);
    n = atomic_load(&p.sh->n_written);
    PCHECK(&p, n > 0, "no record fitted in an empty ring");
    ca.prod[0] = (struct expect_producer){"filler", 1, 0, n, 0};
    procs_spawn(&p, "consumer", consumer_main, &ca, 0);
    procs_wait(&p, DEADLINE_MS, __LINE__);
    check_drained(&p, __LINE__);
    procs_end(&p);
}

START_TEST(full_fail_returns_efull_and_keeps_what_was_written)
{
    run_full_refused("full-fail", RK_FULL_FAIL, 0, RK_EFULL);
}
END_TEST

START_TEST(full_wait_with_timeout_returns_etimedout_and_keeps_what_was_written)
{
    run_full_refused("full-wait-t", RK_FULL_WAIT, 100, RK_ETIMEDOUT);
}
END_TEST

#define BLOCKED_RECORDS 3000u

START_TEST(full_wait_blocks_until_a_consumer_drains)
{
    struct procs p;
    struct producer_args pa = {.name = "blocked",
                               .index = 0,
                               .n_records = BLOCKED_RECORDS,
                               .full_policy = RK_FULL_WAIT,
                               .full_timeout_ms = 0,
                               .pause_at = UINT64_MAX};
    struct consume_args ca = {.n_producers = 1, .prod = {{"blocked", 1, 0, BLOCKED_RECORDS, 0}}};
    uint64_t deadline = now_ms() + DEADLINE_MS;
    uint64_t tail;

    procs_start(&p, "full-wait", 64u << 10, 0, 0);
    procs_spawn(&p, "blocked producer", producer_main, &pa, 0);
    /* the producer fills the ring and then sleeps on the head futex */
    while (atomic_load(&p.hdr->n_head_waiters) == 0) {
        PCHECK(&p, procs_poll(&p, __LINE__) == 1, "the producer finished without waiting for room");
        PCHECK(&p, now_ms() < deadline, "the producer never waited for room");
        usleep(1000);
    }
    tail = atomic_load(&p.hdr->tail);
    PCHECK(&p, tail - atomic_load(&p.hdr->head) <= p.hdr->capacity, "tail %" PRIu64 " overran head %" PRIu64,
           tail, atomic_load(&p.hdr->head));
    PCHECK(&p, procs_poll(&p, __LINE__) == 1, "the waiting producer ended");
    procs_spawn(&p, "consumer", consumer_main, &ca, 0);
    procs_wait(&p, DEADLINE_MS, __LINE__);
    check_drained(&p, __LINE__);
    procs_end(&p);
}
END_TEST

/* ------------------------------------------------------------ rk_wait */

struct waiter_args {
    const char *name;
    uint64_t n_records;
    uint64_t wait_every; /* rk_wait(RK_DURABLE) after every this many records */
};

/* Writes records and waits for them to become durable, then replicated. */
static void durable_waiter_main(struct procs *p, const void *arg)
{
    const struct waiter_args *a = arg;
    struct ring_header *h = p->hdr;
    uint16_t tids[N_TABLES];
    rk_ring *r = child_attach(p, a->name, RK_FULL_WAIT, DEADLINE_MS, tids);
    uint32_t max_record = rk_ring_max_record(r);
    uint64_t lsn = 0, cursor;
    struct rec rec;
    int rc;

    for (uint64_t seq = 0; seq < a->n_records; seq++) {
        rec_make(&rec, 0, seq, max_record);
        rc = rec_write(r, &rec, tids, &lsn);
        CCHECK(rc == 0, "record %" PRIu64 ": %s", seq, rk_strerror(rc));
        rc = rk_wait(r, lsn, RK_WRITTEN, 0);
        CCHECK(rc == 0, "rk_wait(RK_WRITTEN, 0) for a written record: %s", rk_strerror(rc));
        if ((seq + 1) % a->wait_every && seq + 1 < a->n_records)
            continue;
        rc = rk_wait(r, lsn, RK_DURABLE, DEADLINE_MS);
        CCHECK(rc == 0, "rk_wait(%" PRIu64 ", RK_DURABLE): %s", lsn, rk_strerror(rc));
        cursor = atomic_load(&h->durable_lsn);
        CCHECK(cursor >= lsn, "rk_wait(%" PRIu64 ", RK_DURABLE) returned with durable_lsn %" PRIu64, lsn,
               cursor);
    }
    rc = rk_wait(r, lsn, RK_REPLICATED, DEADLINE_MS);
    CCHECK(rc == 0, "rk_wait(%" PRIu64 ", RK_REPLICATED): %s", lsn, rk_strerror(rc));
    cursor = atomic_load(&h->replicated_lsn);
    CCHECK(cursor >= lsn, "rk_wait(%" PRIu64 ", RK_REPLICATED) returned with replicated_lsn %" PRIu64, lsn,
           cursor);
    rk_ring_detach(r);
}

#define WAIT_RECORDS 3000u

START_TEST(rk_wait_returns_when_the_consumer_moves_durable_and_replicated)
{
    struct procs p;
    struct waiter_args wa = {.name = "waiter", .n_records = WAIT_RECORDS, .wait_every = 50};
    struct consume_args ca = {.n_producers = 1,
                              .prod = {{"waiter", 1, 0, WAIT_RECORDS, 0}},
                              .advance_cursors = 1,
                              .cursor_delay_us = 2000,
                              .batch_frames = 37};

    procs_start(&p, "wait", 256u << 10, 0, 0);
    procs_spawn(&p, "consumer", consumer_main, &ca, 0);
    procs_spawn(&p, "waiter", durable_waiter_main, &wa, 0);
    procs_wait(&p, DEADLINE_MS, __LINE__);
    check_drained(&p, __LINE__);
    procs_end(&p);
}
END_TEST

/* Lock-step messages from the producer to the consumer. */
enum { MSG_ADVANCE_DURABLE = 1, MSG_ADVANCE_REPLICATED = 2, MSG_DONE = 3 };

struct lockstep {
    int to_consumer[2];
    int to_producer[2];
};

static void pipe_send(int fd, uint64_t v)
{
    CCHECK(write(fd, &v, sizeof v) == (ssize_t)sizeof v, "pipe write: %s", strerror(errno));
}

static uint64_t pipe_recv(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t v = 0;

    CCHECK(poll(&pfd, 1, DEADLINE_MS) == 1, "nothing on the pipe for %d ms", DEADLINE_MS);
    CCHECK(read(fd, &v, sizeof v) == (ssize_t)sizeof v, "pipe read: %s", strerror(errno));
    return v;
}

static void expect_timeout(rk_ring *r, uint64_t lsn, rk_level level, _Atomic uint64_t *cursor, uint64_t at)
{
    int rc = rk_wait(r, lsn, level, 100);

    CCHECK(rc == RK_ETIMEDOUT, "rk_wait(%" PRIu64 ", level %d, 100 ms) with the cursor at %" PRIu64 ": %s",
           lsn, (int)level, atomic_load(cursor), rk_strerror(rc));
    CCHECK(atomic_load(cursor) == at, "cursor at %" PRIu64 ", expected %" PRIu64, atomic_load(cursor), at);
}

static void lockstep_producer_main(struct procs *p, const void *arg)
{
    const struct lockstep *ls = arg;
    struct ring_header *h = p->hdr;
    uint16_t tids[N_TABLES];
    rk_ring *r = child_attach(p, "waiter", RK_FULL_WAIT, DEADLINE_MS, tids);
    uint64_t first, lsn, initial = atomic_load(&h->durable_lsn);
    struct rec rec;
    int rc;

    rec_make(&rec, 0, 0, rk_ring_max_record(r));
    CCHECK(rec_write(r, &rec, tids, &first) == 0, "record 0");
    rec_make(&rec, 0, 1, rk_ring_max_record(r));
    CCHECK(rec_write(r, &rec, tids, &lsn) == 0, "record 1");
    rc = rk_wait(r, lsn, RK_WRITTEN, 0);
    CCHECK(rc == 0, "rk_wait(RK_WRITTEN, 0) for a written record: %s", rk_strerror(rc));
    /* the consumer has not moved a cursor yet */
    expect_timeout(r, lsn, RK_DURABLE, &h->durable_lsn, initial);
    expect_timeout(r, lsn, RK_REPLICATED, &h->replicated_lsn, initial);
    /* it moves both to one below our LSN: not enough */
    pipe_send(ls->to_consumer[1], lsn);
    CCHECK(pipe_recv(ls->to_producer[0]) == lsn, "consumer's ack");
    rc = rk_wait(r, first, RK_DURABLE, 0);
    CCHECK(rc == 0, "rk_wait on an LSN the durable cursor passed: %s", rk_strerror(rc));
    rc = rk_wait(r, first, RK_REPLICATED, 0);
    CCHECK(rc == 0, "rk_wait on an LSN the replicated cursor passed: %s", rk_strerror(rc));
    expect_timeout(r, lsn, RK_DURABLE, &h->durable_lsn, lsn - 1);
    expect_timeout(r, lsn, RK_REPLICATED, &h->replicated_lsn, lsn - 1);
    /* it moves durable to our LSN once we wait in rk_wait */
    pipe_send(ls->to_consumer[1], MSG_ADVANCE_DURABLE);
    rc = rk_wait(r, lsn, RK_DURABLE, DEADLINE_MS);
    CCHECK(rc == 0, "rk_wait(RK_DURABLE): %s", rk_strerror(rc));
    CCHECK(atomic_load(&h->durable_lsn) >= lsn,
           "rk_wait(RK_DURABLE) returned with durable_lsn %" PRIu64 " < %" PRIu64,
           atomic_load(&h->durable_lsn), lsn);
    expect_timeout(r, lsn, RK_REPLICATED, &h->replicated_lsn, lsn - 1);
    pipe_send(ls->to_consumer[1], MSG_ADVANCE_REPLICATED);
    rc = rk_wait(r, lsn, RK_REPLICATED, DEADLINE_MS);
    CCHECK(rc == 0, "rk_wait(RK_REPLICATED): %s", rk_strerror(rc));
    CCHECK(atomic_load(&h->replicated_lsn) >= lsn,
           "rk_wait(RK_REPLICATED) returned with replicated_lsn %" PRIu64 " < %" PRIu64,
           atomic_load(&h->replicated_lsn), lsn);
    /* detached first: with its group open the detach writes an ATTACH
     * that ends the session, which the consumer reads and releases */
    rk_ring_detach(r);
    pipe_send(ls->to_consumer[1], MSG_DONE);
}

static void lockstep_consumer_main(struct procs *p, const void *arg)
{
    const struct lockstep *ls = arg;
    ring_owner *o = p->owner;
    uint32_t max_record = p->hdr->max_frame - FRAME_HEADER_SIZE;
    uint64_t lsn = pipe_recv(ls->to_consumer[0]), deadline = now_ms() + DEADLINE_MS, seq = 0;
    ring_frame f = {0};
    struct rec rec;
    const char *diff;
    int rc;

    /* the ATTACH, then records 0 and 1, the last at lsn */
    while (f.lsn != lsn) {
        rc = ring_next(o, &f);
        CCHECK(rc >= 0, "ring_next: %s", ring_error(o));
        if (rc == 0) {
            CCHECK(now_ms() < deadline, "LSN %" PRIu64 " never arrived", lsn);
            ring_wait_ready(o, 5);
            continue;
        }
        if (f.type == FRAME_ATTACH)
            continue;
        rec_make(&rec, 0, seq, max_record);
        diff = rec_diff(&rec, &f, p->hdr);
        CCHECK(!diff, "record %" PRIu64 ": %s", seq, diff);
        seq++;
    }
    CCHECK(seq == 2, "%" PRIu64 " records up to LSN %" PRIu64, seq, lsn);
    ring_release(o);
    ring_set_durable(o, lsn - 1);
    ring_set_replicated(o, lsn - 1);
    pipe_send(ls->to_producer[1], lsn);
    CCHECK(pipe_recv(ls->to_consumer[0]) == MSG_ADVANCE_DURABLE, "expected MSG_ADVANCE_DURABLE");
    /* the cursor moves while the producer waits, whatever the scheduler
     * does (a 100 ms sleep stood here): rk_wait counts itself in
     * n_durable_waiters before it first looks at the cursor */
    child_await(&p->hdr->n_durable_waiters, "the producer's rk_wait(RK_DURABLE)");
    ring_set_durable(o, lsn);
    CCHECK(pipe_recv(ls->to_consumer[0]) == MSG_ADVANCE_REPLICATED, "expected MSG_ADVANCE_REPLICATED");
    child_await(&p->hdr->n_replicated_waiters, "the producer's rk_wait(RK_REPLICATED)");
    ring_set_replicated(o, lsn);
    CCHECK(pipe_recv(ls->to_consumer[0]) == MSG_DONE, "expected MSG_DONE");
    for (;;) { /* what the producer's detach wrote, if anything: only an ATTACH ending its session */
        struct frame_attach at = {0};
        rc = ring_next(o, &f);
        CCHECK(rc >= 0, "ring_next: %s", ring_error(o));
        if (rc == 0)
            break;
        if (f.type == FRAME_ATTACH && f.vlen == sizeof at)
            memcpy(&at, f.val, sizeof at); /* the value is not 8-aligned in the frame */
        CCHECK(f.type == FRAME_ATTACH && at.flags == RING_ATTACH_DETACH,
               "frame of type %u after the producer was done", f.type);
    }
    ring_release(o);
}

START_TEST(rk_wait_times_out_until_the_cursor_reaches_the_lsn)
{
    struct procs p;
    struct lockstep ls;

    procs_start(&p, "wait-step", 64u << 10, 0, 0);
    PCHECK(&p, pipe(ls.to_consumer) == 0 && pipe(ls.to_producer) == 0, "pipe: %s", strerror(errno));
    procs_spawn(&p, "consumer", lockstep_consumer_main, &ls, 0);
    procs_spawn(&p, "waiter", lockstep_producer_main, &ls, 0);
    for (int i = 0; i < 2; i++) {
        close(ls.to_consumer[i]);
        close(ls.to_producer[i]);
    }
    procs_wait(&p, DEADLINE_MS, __LINE__);
    check_drained(&p, __LINE__);
    procs_end(&p);
}
END_TEST

/* ------------------------------------------------------------ regressions */

/* Writes frames that fill the ring to exactly `capacity` bytes, then checks
 * that a full ring refuses even the smallest record. */
static void exact_filler_main(struct procs *p, const void *arg)
{
    struct ring_header *h = p->hdr;
    uint16_t tids[N_TABLES];
    rk_ring *r = child_attach(p, "filler", RK_FULL_FAIL, 0, tids);
    uint64_t cap = h->capacity, seq, lsn;
    int rc;

    (void)arg;
    for (seq = 0;; seq++) {
        uint64_t tail = atomic_load(&h->tail), used = tail - atomic_load(&h->head);
        uint64_t size = cap - used, to_end = cap - (tail & (cap - 1));

        if (used == cap)
            break;
        size = size < to_end ? size : to_end;
        size = size < h->max_frame ? size : h->max_frame;
        CCHECK(size >= FRAME_HEADER_SIZE, "%" PRIu64 " bytes left before the end: no frame fits exactly",
               size);
        rc = rk_put(r, tids[0], NULL, 0, pool + seq * 97, (uint32_t)(size - FRAME_HEADER_SIZE), &lsn);
        CCHECK(rc == 0 && lsn == tail, "record %" PRIu64 ": %s, LSN %" PRIu64 " (tail was %" PRIu64 ")", seq,
               rk_strerror(rc), lsn, tail);
    }
    rc = rk_del(r, tids[0], NULL, 0, NULL);
    CCHECK(rc == RK_EFULL, "a full ring took a record: %s", rk_strerror(rc));
    atomic_store(&child_shared->n_written, seq);
    rk_ring_detach(r);
}

/* Bug: ring_next() reads the position read_pos without checking that it
 * lies inside [head, head + capacity).  When a ring is exactly full and the
 * consumer has read all of it without releasing (a drain that cuts its
 * batch at "ring empty"), read_pos == head + capacity maps onto the first
 * unreleased frame, whose commit word is still set: ring_next() decodes
 * that stale frame and reports RK_ECORRUPT ("the frame's LSN is not its
 * position"), counting n_corrupt and stopping the ring, though nothing is
 * corrupt and the correct answer is 0 (nothing ready until a release). */
START_TEST(ring_next_returns_0_when_an_exactly_full_ring_is_consumed)
{
    struct procs p;
    ring_frame f;
    uint64_t n, sum = 0, last = 0;
    int rc;

    /* start_lsn = capacity: the stream starts at offset 0 of the data area */
    procs_start(&p, "exact", 64u << 10, 0, 64u << 10);
    procs_spawn(&p, "filler", exact_filler_main, NULL, 0);
    procs_wait(&p, DEADLINE_MS, __LINE__);
    n = atomic_load(&p.sh->n_written);
    PCHECK(&p, atomic_load(&p.hdr->tail) - atomic_load(&p.hdr->head) == p.hdr->capacity,
           "the ring is not exactly full: head %" PRIu64 ", tail %" PRIu64, atomic_load(&p.hdr->head),
           atomic_load(&p.hdr->tail));
    for (uint64_t i = 0; i <= n; i++) {
        rc = ring_next(p.owner, &f);
        PCHECK(&p, rc == 1, "frame %" PRIu64 " of %" PRIu64 ": ring_next %d (%s)", i, n + 1, rc,
               ring_error(p.owner));
        PCHECK(&p, f.lsn > last, "LSN %" PRIu64 " after %" PRIu64, f.lsn, last);
        last = f.lsn;
        sum += frame_align(f.raw_len);
        if (i == 0) {
            PCHECK(&p, f.type == FRAME_ATTACH && f.klen == 6 && memcmp(f.key, "filler", 6) == 0,
                   "the first frame is not the filler's ATTACH");
            continue;
        }
        PCHECK(&p,
               f.type == FRAME_PUT && f.klen == 0 && f.vlen > 0 &&
                   memcmp(f.val, pool + (i - 1) * 97, f.vlen) == 0,
               "record %" PRIu64 " differs", i - 1);
    }
    PCHECK(&p, sum == p.hdr->capacity, "the frames take %" PRIu64 " bytes, not the capacity", sum);
    /* all consumed, nothing released: nothing can be ready */
    rc = ring_next(p.owner, &f);
    PCHECK(&p, rc == 0,
           "ring_next on an exactly full, fully consumed, unreleased ring returned %d (%s; n_corrupt %" PRIu64
           ") instead of 0: it read the stale frame at head + capacity",
           rc, rc < 0 ? ring_error(p.owner) : "a frame", atomic_load(&p.hdr->n_corrupt));
    ring_release(p.owner);
    check_drained(&p, __LINE__);
    procs_end(&p);
}
END_TEST

#define COMMIT_RECORDS 1000000u

/* Writes records of its producer number, the PUTs through rk_claim_record
 * and rk_commit, and checks the LSN rk_commit reports against the position
 * in the claim marker, read before the commit. */
static void committer_main(struct procs *p, const void *arg)
{
    const struct producer_args *a = arg;
    uint16_t tids[N_TABLES];
    rk_ring *r = child_attach(p, a->name, RK_FULL_WAIT, DEADLINE_MS, tids);
    uint32_t max_record = rk_ring_max_record(r);
    uint64_t pos, lsn;
    struct rec rec;
    rk_claim c;
    int rc;

    for (uint64_t seq = 0; seq < a->n_records; seq++) {
        rec_make(&rec, a->index, seq, max_record);
        if (rec.op != OP_PUT && rec.op != OP_CLAIM) {
            rc = rec_write(r, &rec, tids, &lsn);
            CCHECK(rc == 0, "record %" PRIu64 ": %s", seq, rk_strerror(rc));
            continue;
        }
        rc = rk_claim_record(r, tids[rec.table], rec.klen, rec.vlen, &c);
        CCHECK(rc == 0, "rk_claim_record: %s", rk_strerror(rc));
        if (rec.klen)
            memcpy(c.key, rec.key, rec.klen);
        if (rec.vlen)
            memcpy(c.val, rec.val, rec.vlen);
        /* the claim marker holds the frame's position until the commit */
        pos = ((const struct frame_header *)c.key - 1)->lsn;
        rc = rk_commit(r, &c, &lsn);
        CCHECK(rc == 0, "rk_commit: %s", rk_strerror(rc));
        CCHECK(lsn == pos,
               "%s: rk_commit of record %" PRIu64 " reported LSN %" PRIu64 "; the record is at %" PRIu64,
               a->name, seq, lsn, pos);
    }
    rk_ring_detach(r);
}

/* Bug: rk_commit() (shm/ring.c) reads the LSN it reports, f->lsn, from the
 * frame after publish() has committed it, and publish() reads f->lsn for
 * the slot's last_lsn after its release store too.  By then the consumer
 * may have consumed the frame and released (zeroed) its space, or another
 * producer may have reused it: the engine gets LSN 0 or a stranger's LSN,
 * and rk_wait() on it means nothing.  To open the window the test process
 * stops the committer with SIGSTOP at random instants for a moment; a stop
 * that falls between the commit store and the read lets the consumer (which
 * releases after every frame) zero the frame first.  Many stops make that
 * near certain while the bug is there; the record count bounds the test. */
START_TEST(rk_commit_reports_its_records_lsn_while_the_consumer_releases_it)
{
    struct procs p;
    struct producer_args pa = {.name = "committer", .index = 0, .n_records = COMMIT_RECORDS};
    struct consume_args ca = {
        .n_producers = 1, .prod = {{"committer", 1, 0, COMMIT_RECORDS, 0}}, .batch_frames = 1};
    uint64_t deadline = now_ms() + DEADLINE_MS, x = 1;

    procs_start(&p, "commit-lsn", 64u << 10, 0, 0);
    procs_spawn(&p, "consumer", consumer_main, &ca, 0);
    procs_spawn(&p, "committer", committer_main, &pa, 0);
    while (procs_poll(&p, __LINE__) > 0 && !p.reaped[1]) {
        PCHECK(&p, now_ms() < deadline, "the committer ran for %d ms", DEADLINE_MS);
        x = mix64(x);
        kill(p.pid[1], SIGSTOP);
        usleep(50 + (useconds_t)(x % 200));
        kill(p.pid[1], SIGCONT);
        usleep((useconds_t)((x >> 32) % 150));
    }
    procs_wait(&p, DEADLINE_MS, __LINE__);
    check_drained(&p, __LINE__);
    procs_end(&p);
}
END_TEST

/* In the test process: attaches as `name`. */
static rk_ring *test_attach(struct procs *p, const char *name)
{
    char err[256] = "";
    rk_ring_opts opts = {
        .producer = name, .full_policy = RK_FULL_FAIL, .errmsg = err, .errmsg_size = sizeof err};
    rk_ring *r = NULL;
    int rc = rk_ring_attach(p->ring, &opts, &r);

    PCHECK(p, rc == 0, "rk_ring_attach(%s): %s (%s)", name, rk_strerror(rc), err);
    return r;
}

/* A producer killed right after its fetch-add (no claim marker) with
 * nothing written after its claim: the consumer pads the claim once the
 * unblock timeout has passed and reports the producer (ABORT), with no
 * other frame to follow it.  Before the fix it waited at the claim for as
 * long as no other producer wrote ("where it ends is unknown"): the
 * drain stood still there, a state request waited its whole bound, and
 * the dead producer's group stayed open. */
START_TEST(a_dead_claim_at_the_tail_is_unblocked)
{
    struct procs p;
    struct doomed_args doomed = {
        .name = "doomed", .index = 1, .n_records = 5, .marker = 0, .parent_kills = 0};
    uint64_t deadline, n = 0, claim_lsn;
    struct rec rec;
    ring_frame f;
    int rc, aborted = 0, doomed_slot;

    procs_start(&p, "tail-claim", 64u << 10, 50, 0);
    procs_spawn(&p, "doomed producer", doomed_main, &doomed, SIGKILL);
    procs_wait(&p, DEADLINE_MS, __LINE__);
    claim_lsn = atomic_load(&p.sh->claim_lsn);
    PCHECK(&p, atomic_load(&p.hdr->tail) == claim_lsn + frame_align(DOOMED_HOOK_SIZE),
           "the dead claim is not the last thing in the ring");
    doomed_slot = slot_of_name(p.hdr, "doomed");
    deadline = now_ms() + DEADLINE_MS;
    while (!aborted) {
        rc = ring_next(p.owner, &f);
        PCHECK(&p, rc >= 0, "ring_next: %s", ring_error(p.owner));
        if (rc == 0) {
            PCHECK(&p, now_ms() < deadline,
                   "still waiting at the dead claim at LSN %" PRIu64 " after %d ms (read %" PRIu64
                   " of its 5 records; n_unblocked %" PRIu64 ")",
                   claim_lsn, DEADLINE_MS, n, atomic_load(&p.hdr->n_unblocked));
            ring_wait_ready(p.owner, 10);
            continue;
        }
        if (f.type == FRAME_ATTACH)
            continue;
        if (f.type == FRAME_ABORT) {
            PCHECK(&p, f.producer == doomed_slot && n == 5, "ABORT for slot %u after %" PRIu64 " records",
                   f.producer, n);
            aborted = 1;
            continue;
        }
        rec_make(&rec, 1, n, p.hdr->max_frame - FRAME_HEADER_SIZE);
        const char *diff = rec_diff(&rec, &f, p.hdr);
        PCHECK(&p, !diff, "record %" PRIu64 ": %s", n, diff);
        n++;
    }
    ring_release(p.owner);
    PCHECK(&p, atomic_load(&p.hdr->n_unblocked) == 1, "n_unblocked %" PRIu64,
           atomic_load(&p.hdr->n_unblocked));
    check_drained(&p, __LINE__);
    procs_end(&p);
}
END_TEST

#define SLOW_CLAIM_SIZE 64u

/* Bug: unblock() (shm/consumer.c), for a stuck position with no claim
 * marker, skips to the next non-zero word as soon as *any* attached
 * producer is dead.  When the dead producer's marker-less claim is followed
 * by the marker-less claim of a live producer (one that is between its
 * fetch-add and its marker: preempted, or waiting for room in claim()'s
 * post-fetch-add loop, which can last as long as the ring stays full), the
 * live producer's claim is skipped too: its record is lost when it commits,
 * and its commit then writes into released space that is supposed to be
 * zero.  Here "slow" is the live producer, emulated with the same test hook
 * a dying producer uses: it stays alive and holds its claim. */
START_TEST(unblock_does_not_skip_a_live_producers_claim_after_a_dead_one)
{
    struct procs p;
    struct doomed_args doomed = {
        .name = "doomed", .index = 1, .n_records = 0, .marker = 0, .parent_kills = 0};
    rk_ring *slow, *live;
    uint64_t dead_lsn, slow_lsn, live_lsn, deadline;
    uint16_t tid;
    ring_frame f;
    int rc, doomed_slot;

    procs_start(&p, "skip", 64u << 10, 50, 0);
    slow = test_attach(&p, "slow");
    live = test_attach(&p, "live");
    PCHECK(&p, rk_table(live, table_names[0], &tid) == 0, "rk_table");
    procs_spawn(&p, "doomed producer", doomed_main, &doomed, SIGKILL);
    procs_wait(&p, DEADLINE_MS, __LINE__);
    dead_lsn = atomic_load(&p.sh->claim_lsn);
    slow_lsn = ring_test_claim_without_marker(slow, SLOW_CLAIM_SIZE);
    PCHECK(&p, slow_lsn == dead_lsn + frame_align(DOOMED_HOOK_SIZE), "slow's claim at %" PRIu64, slow_lsn);
    PCHECK(&p, rk_put(live, tid, "k", 1, "v", 1, &live_lsn) == 0 && live_lsn == slow_lsn + SLOW_CLAIM_SIZE,
           "live's record at %" PRIu64, live_lsn);
    doomed_slot = slot_of_name(p.hdr, "doomed");
    /* 40 unblock timeouts: ample time for a wrong skip to show */
    deadline = now_ms() + 40 * 50;
    while (now_ms() < deadline) {
        rc = ring_next(p.owner, &f);
        PCHECK(&p, rc >= 0, "ring_next: %s", ring_error(p.owner));
        if (rc == 0) {
            ring_release(p.owner);
            ring_wait_ready(p.owner, 10);
            continue;
        }
        if (f.type == FRAME_ATTACH || (f.type == FRAME_ABORT && f.producer == doomed_slot))
            continue;
        PCHECK(&p, 0,
               "delivered the record of 'live' at LSN %" PRIu64 " (type %u) while the live producer 'slow' "
               "still holds its unfinished claim at LSN %" PRIu64 ": the consumer skipped a live claim "
               "together with the dead one at %" PRIu64 " (n_unblocked_bytes %" PRIu64 ")",
               f.lsn, f.type, slow_lsn, dead_lsn, atomic_load(&p.hdr->n_unblocked_bytes));
    }
    rk_ring_detach(live);
    rk_ring_detach(slow);
    procs_end(&p);
}
END_TEST

/* Bug: unblock() (shm/consumer.c) decides whether a claim's owner is alive
 * from the producer slot's *current* pid.  A producer that dies holding a
 * claim and is restarted under the same name (rk_ring_attach documents this
 * "after a crash" case) before the consumer's unblock check takes the slot
 * over with a live pid, so the dead session's claim is never unblocked and
 * the consumer waits at it for as long as the new session lives: the ring
 * is wedged and the new session's records never arrive. */
START_TEST(restarted_producer_does_not_wedge_the_ring_behind_its_dead_claim)
{
    struct procs p;
    /* the restarted session ends on a group boundary: its detach, after
     * the consumer finished, writes nothing (with a group open it would
     * write an ATTACH that ends the session) */
    uint64_t n_first = group_end(0, 200), n_second = group_end(1, 300);
    struct doomed_args first = {
        .name = "engine", .index = 0, .n_records = n_first, .marker = 1, .parent_kills = 0};
    struct producer_args second = {.name = "engine",
                                   .index = 1,
                                   .n_records = n_second,
                                   .full_timeout_ms = DEADLINE_MS,
                                   .pause_at = UINT64_MAX,
                                   .linger = 1};
    struct consume_args ca = {
        .n_producers = 2,
        .prod = {{"engine", 1, 0, n_first, 1}, {"engine", 2, 1, n_second, 0}},
        /* a consumer that works needs about one unblock timeout (50 ms) */
        .deadline_ms = 20000,
    };

    procs_start(&p, "restart", 256u << 10, 50, 0);
    procs_spawn(&p, "engine, first session", doomed_main, &first, SIGKILL);
    procs_wait(&p, DEADLINE_MS, __LINE__);
    procs_spawn(&p, "engine, restarted", producer_main, &second, 0);
    procs_await(&p, &p.sh->written, "the restarted engine's records", __LINE__);
    procs_spawn(&p, "consumer", consumer_main, &ca, 0);
    procs_wait(&p, DEADLINE_MS, __LINE__);
    check_drained(&p, __LINE__);
    PCHECK(&p, atomic_load(&p.hdr->n_unblocked) == 1, "n_unblocked %" PRIu64,
           atomic_load(&p.hdr->n_unblocked));
    procs_end(&p);
}
END_TEST

/* ------------------------------------------------------------ suite */

Suite *ring_procs_suite(void)
{
    Suite *s = suite_create("ring_procs");
    TCase *stream = tcase_create("stream");
    TCase *dead = tcase_create("dead_producer");
    TCase *full = tcase_create("full");
    TCase *wait = tcase_create("wait");
    TCase *regressions = tcase_create("regressions");

    /* no time limits: every wait in these tests has its own deadline */
    tcase_set_timeout(stream, 0);
    tcase_set_timeout(dead, 0);
    tcase_set_timeout(full, 0);
    tcase_set_timeout(wait, 0);
    tcase_set_timeout(regressions, 0);
    tcase_add_test(stream, two_producers_one_consumer_deliver_every_record_once_in_order);
    tcase_add_test(stream, two_producers_writing_batches_deliver_every_record_once_in_order);
    tcase_add_test(dead, producer_killed_between_claim_and_commit_is_aborted);
    tcase_add_test(dead, producer_killed_after_fetch_add_without_marker_is_aborted);
    tcase_add_test(dead, producer_killed_in_the_middle_of_a_batch_claim_is_aborted);
    tcase_add_test(full, full_fail_returns_efull_and_keeps_what_was_written);
    tcase_add_test(full, full_wait_with_timeout_returns_etimedout_and_keeps_what_was_written);
    tcase_add_test(full, full_wait_blocks_until_a_consumer_drains);
    tcase_add_test(wait, rk_wait_returns_when_the_consumer_moves_durable_and_replicated);
    tcase_add_test(wait, rk_wait_times_out_until_the_cursor_reaches_the_lsn);
    tcase_add_test(regressions, rk_commit_reports_its_records_lsn_while_the_consumer_releases_it);
    tcase_add_test(regressions, ring_next_returns_0_when_an_exactly_full_ring_is_consumed);
    tcase_add_test(regressions, unblock_does_not_skip_a_live_producers_claim_after_a_dead_one);
    tcase_add_test(regressions, a_dead_claim_at_the_tail_is_unblocked);
    tcase_add_test(regressions, restarted_producer_does_not_wedge_the_ring_behind_its_dead_claim);
    suite_add_tcase(s, stream);
    suite_add_tcase(s, dead);
    suite_add_tcase(s, full);
    suite_add_tcase(s, wait);
    suite_add_tcase(s, regressions);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ring_procs_suite());
    int n_failed;

    srunner_run_all(sr, CK_NORMAL);
    n_failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
