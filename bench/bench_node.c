/* bench_node.c -- durable throughput and durable-ack latency of the node, and
 * apply against raw Berkeley DB puts measured in the same run.
 *
 * For every offered load (default 50k and 200k records/s, and max: as fast
 * as one producer writes) a fresh node drains a 64 MiB ring into its synced
 * journal while one producer writes PUTs of 8-byte keys (drawn over a
 * 1,000,000-key space by a deterministic PRNG) and 64-byte values, a MARK
 * closing every GROUP_RECORDS of them.  It reports:
 *   puts/s         PUTs written / the time from the first to the last put;
 *   durable rec/s  PUTs / the time from the first put until the last MARK
 *                  was durable (rk_wait(RK_DURABLE) returned);
 *   batches        journal entries (one synced commit each) and records
 *                  per entry, from the node's status;
 *   ack p50..max   durable-ack latency: from just before rk_put() until
 *                  rk_wait(lsn, RK_DURABLE) returned for that record;
 *   apply lag      how long after the last durable record the node's apply
 *                  had caught up with its journal;
 *   fsync p50/99   the disk just before the run (fsync_probe): the machine
 *                  is shared, and other work moves fsync by 10x or more.
 * Then the applier against raw Berkeley DB: the journal of the max run (its
 * first --apply-records records) is copied into a fresh data directory and
 * applied there with applier_run() in this process, timed alone; the same
 * PUTs, in the same transactions (the applier's commit points, computed
 * from its rule: after a journal entry once STORE_TXN_RECORDS records are
 * in the transaction), go into a fresh transactional environment with the
 * same cache (and a lock table that holds those transactions), committed
 * with DB_TXN_NOSYNC as the applier commits.  It prints both rates,
 * apply/raw, and what the journal path's pieces cost in one thread.
 *
 * Method.
 *   - Every configuration has its own data directory under one mkdtemp()
 *     base in /tmp and its own ring name; the node runs in a forked child
 *     (node_run(), defaults plus data_dir, ring name, capacity 64M,
 *     log_level warn), the producer in another, using only the public API.
 *     A load runs --seconds or --records PUTs, whichever ends first (the
 *     record bound keeps the max run and its apply backlog short).
 *     --db-config FILE puts FILE as DB_CONFIG into every Berkeley DB
 *     environment the bench makes (node, applier, raw baseline alike).
 *   - Pacing: the producer sends in bursts of BURST_NS worth of records and
 *     sleeps (clock_nanosleep, 1 us timer slack) until the next burst is
 *     due; a producer behind its schedule sends at once (the largest lag is
 *     printed).  Max: no pacing; the ring fills and the producer waits for
 *     the node (RK_FULL_WAIT), so its acks include the ring's queue.
 *   - Latency: the producer samples every record at paced loads and every
 *     MAX_SAMPLE_EVERY-th at max, writing (lsn, time before rk_put) into an
 *     array; a waiter thread in the producer process, with its own ring
 *     handle (producer "w0": a handle belongs to one thread), calls rk_wait
 *     on them in order and takes the time when it returns.  When several
 *     records become durable at once the waiter reaches the later ones a
 *     little later (about 0.2 us each): the figures are upper bounds.
 *     Quantiles are exact (sorted samples).
 *   - Checks (a benchmark that lies is worse than none): every put and
 *     wait succeeds; the node journaled exactly the PUTs and MARKs written;
 *     the node exits 0 on SIGTERM; then the state is read back through
 *     rk_state_open() and compared with a model replayed from the PRNG:
 *     every key holds the value of its last PUT, byte for byte, no key is
 *     missing or extra, the producer's height is its last MARK.  The apply
 *     copy checks every PUT of the journal against the model too, and the
 *     applier's counters against the copy.
 *   - --opens N: while the producer writes, the owner opens the state
 *     (rk_state_open on the live node, then rk_state_close) N times, open i
 *     due at i * --seconds / N (at once if the one before ended later), and
 *     reports the open latency (call to return) p50/p99/max; the
 *     put phase lasts until the N opens are done (still bounded by
 *     --records).  Each state must hold every group whose MARK the
 *     producer wrote before the call (the producer publishes its height):
 *     a state that does not is a failed run.  The apply and raw passes are
 *     not run then.
 *   - Never fails on time: exit 0 when every run was correct, 1 when
 *     records were missing or wrong or a process failed (the node dying
 *     included; the other loads still run, each is independent), 2 on bad
 *     arguments, 3 when the watchdog (alarm per configuration) fired.  The
 *     issue's targets are printed with "met"/"not met" for information.
 *
 * Processes and threads:
 *
 *   owner (this process, one thread): mkdir, fork ─► node       node_run: drain,
 *                                                               apply, control threads
 *                                     fork ─► producer   main thread: rk_put/rk_mark
 *                                                        waiter thread: rk_wait
 *          polls the node's status (node_request), SIGTERMs the node,
 *          checks the state, then runs the apply/raw passes itself.
 *
 *   A child that fails exits non-zero; the owner then kills the others.
 *   Children die with the owner (PR_SET_PDEATHSIG).  SIGALRM, SIGINT and
 *   SIGTERM in the owner kill the children, unlink the ring and remove the
 *   base directory.
 */
#define _GNU_SOURCE
#include <db.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "persist/apply.h"
#include "persist/config.h"
#include "node/client.h"
#include "node/node.h"
#include "shm/ring.h"
#include "shm/segment.h"
#include "ringkeep.h"
#include "persist/store.h"

#define KEY_SIZE 8u
#define VALUE_SIZE 64u
#define KEY_SPACE 1000000u
#define KEY_SEED 0x6b657973ull /* "keys" */
#define GROUP_RECORDS 100u     /* PUTs per MARK */
#define TABLE_NAME "bench"
#define PRODUCER_NAME "p0"
#define WAITER_NAME "w0"
#define RING_CAPACITY "64M"
#define CACHE_MB 256u                       /* the node's default cache_mb; the raw baseline uses the same */
#define APPLY_TXN_RECORDS STORE_TXN_RECORDS /* what the node passes to applier_run */
#define ZSTD_LEVEL 1                        /* the node's default zstd_level */
#define MAX_RATES 8
#define MAX_REPEAT 9
#define MAX_OPENS 100000
#define DEFAULT_SECONDS 5.0
#define QUICK_SECONDS 1.0
#define DEFAULT_RECORDS 2000000ull /* per load: bounds the max run and its apply backlog */
#define QUICK_RECORDS 300000ull
#define DEFAULT_APPLY_RECORDS 1000000ull
#define QUICK_APPLY_RECORDS 200000ull
#define DEFAULT_REPEAT 2
#define DEFAULT_WATCHDOG_S 120   /* per configuration */
#define MAX_RECORDS 100000000ull /* per configuration, whatever the rate */
#define MAX_SAMPLE_EVERY 64      /* max load: one latency sample per this many records */
#define BURST_NS 50000ull        /* paced: records due within this long go out together */
#define FULL_TIMEOUT_MS 30000    /* one rk_put waits at most this long for room */
#define DURABLE_TIMEOUT_MS 60000 /* one rk_wait waits at most this long */
#define NODE_START_MS 30000      /* the node answers its status within this long */
#define BARRIER_NS (30 * 1000000000ull)
#define CATCH_UP_MS 300000             /* apply catches up with the journal within this long */
#define POLL_NS 5000000ull             /* the owner looks at its children this often */
#define STATUS_POLL_MAX_NS 50000000ull /* catch-up: status polls at most this far apart */
#define STATUS_TIMEOUT_MS 2000
#define RAW_LOCKS 200000 /* raw baseline: lock table for its largest transaction */
#define PROBE_FSYNCS 200 /* fsync probe: appends of PROBE_SIZE, each fsynced */
#define PROBE_SIZE 4096
#define PROBE_MAX_NS 1000000000ull /* ... or for at most this long */

/* ------------------------------------------------------------ the stream
 * Record seq (from 0) of the producer: key = big-endian key_index(seq),
 * value = seq (8 bytes LE), then fields derived from mix(seq) laid out like
 * an order (price, quantity, time, an id), so that zstd sees record-like
 * data rather than noise or zeros.  Pure functions of seq: the checks
 * replay them. */

static inline uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint32_t key_index(uint64_t seq)
{
    return (uint32_t)(mix(KEY_SEED ^ seq) % KEY_SPACE);
}

static inline void make_key(uint64_t seq, uint8_t key[KEY_SIZE])
{
    uint64_t k = key_index(seq);

    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(k >> (56 - 8 * i));
}

static inline void make_value(uint64_t seq, uint8_t val[VALUE_SIZE])
{
    uint64_t r = mix(seq), fields[8];

    fields[0] = seq;
    fields[1] = 100000 + r % 5000;      /* price */
    fields[2] = 1 + (r >> 16) % 1000;   /* quantity */
    fields[3] = 1700000000000ull + seq; /* time */
    fields[4] = r;                      /* order id */
    fields[5] = key_index(seq);         /* account */
    fields[6] = (r >> 40) & 0xff;       /* flags */
    fields[7] = 0;
    memcpy(val, fields, VALUE_SIZE); /* little-endian on the targets we build for */
}

/* The model after PUTs 0..n_puts-1: last[k] = 1 + seq of the last PUT of
 * key index k, 0 if none.  *n_keys: keys present. */
static uint32_t *model_build(uint64_t n_puts, uint64_t *n_keys)
{
    uint32_t *last = calloc(KEY_SPACE, sizeof *last);

    *n_keys = 0;
    if (!last)
        return NULL;
    for (uint64_t seq = 0; seq < n_puts; seq++) {
        uint32_t k = key_index(seq);
        *n_keys += last[k] == 0;
        last[k] = (uint32_t)(seq + 1);
    }
    return last;
}

/* ------------------------------------------------------------ shared state */

/* One load configuration, as the producer child sees it. */
struct load {
    uint64_t rate;        /* PUTs per second; 0 = max */
    uint64_t duration_ns; /* of the put phase (ends at a group boundary) */
    uint64_t max_records;
    uint32_t sample_every;
    uint32_t n_opens; /* --opens: state opens during the put phase */
    const char *ring_name;
};

/* Shared by the owner and the producer: MAP_SHARED|MAP_ANONYMOUS, zeroed
 * before every configuration.  The producer's plain fields are read by the
 * owner only after waitpid() has reaped it (process exit and wait order
 * them), except those published by `durable` (see there). */
struct ctl {
    alignas(64) _Atomic uint32_t n_ready; /* producer: +1 when set up */
    alignas(64) _Atomic uint32_t go;      /* owner: 1 = start */
    alignas(64) _Atomic uint32_t durable; /* producer: 1 = its last MARK is durable; the
                                             fields up to t_durable are written before */
    uint64_t t_first, t_last, t_durable;  /* producer: first put, last put, last MARK durable */
    uint64_t n_puts, n_marks;             /* producer: PUTs and MARKs written */
    uint64_t max_lag_ns;                  /* producer: largest delay behind its schedule */
    uint64_t n_samples, n_dropped;        /* waiter: samples waited for; not taken (array full) */
    uint64_t lat_p50, lat_p99, lat_p999, lat_max, lat_mean; /* ns */
    alignas(64) _Atomic uint64_t height; /* producer: its last MARK written (release) */
    _Atomic uint32_t opens_done;         /* owner: its --opens are done; the put phase may end */
};

/* ------------------------------------------------------------ cleanup
 * What a signal handler must undo, in async-signal-safe form. */

static volatile sig_atomic_t g_node_pid, g_producer_pid;
static volatile sig_atomic_t g_ring_set;
static char g_ring_path[128];
static char g_base_dir[64];

static void on_fatal_signal(int sig)
{
    static const char msg[] = "bench_node: watchdog or signal: killing children, removing ring and data\n";
    ssize_t unused;

    unused = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)unused;
    bench_kill_and_reap(&g_producer_pid);
    bench_kill_and_reap(&g_node_pid);
    if (g_ring_set)
        unlink(g_ring_path);
    if (g_base_dir[0])
        bench_remove_tree_by_rm(g_base_dir);
    _exit(sig == SIGALRM ? 3 : 128 + sig);
}

/* ------------------------------------------------------------ environments */

static char g_db_config[4096]; /* --db-config: DB_CONFIG for every environment, "" = none */

/* Writes g_db_config (if any) as home/DB_CONFIG, which Berkeley DB reads
 * when it opens the environment in home. */
static int write_db_config(const char *home)
{
    char path[256];
    FILE *f;
    int rc = 0;

    if (!g_db_config[0])
        return 0;
    snprintf(path, sizeof path, "%s/DB_CONFIG", home);
    f = fopen(path, "w");
    if (!f || fputs(g_db_config, f) == EOF)
        rc = errno ? errno : EIO;
    if (f && fclose(f) != 0 && !rc)
        rc = errno;
    if (rc)
        fprintf(stderr, "bench_node: cannot write %s: %s\n", path, strerror(rc));
    return rc;
}

/* Makes the data directory dir; with --db-config also dir/db (the store's
 * environment) holding DB_CONFIG. */
static int make_data_dir(const char *dir)
{
    char db[192];

    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "bench_node: mkdir %s: %s\n", dir, strerror(errno));
        return errno;
    }
    if (!g_db_config[0])
        return 0;
    snprintf(db, sizeof db, "%s/db", dir);
    if (mkdir(db, 0700) != 0) {
        fprintf(stderr, "bench_node: mkdir %s: %s\n", db, strerror(errno));
        return errno;
    }
    return write_db_config(db);
}

/* Sets the ring of the configuration running now (NULL: none). */
static void set_ring(const char *name)
{
    g_ring_set = 0;
    if (name) {
        snprintf(g_ring_path, sizeof g_ring_path, "/dev/shm/" RING_SHM_PREFIX "%s", name);
        g_ring_set = 1;
    }
}

/* ------------------------------------------------------------ children */

static int node_main(const void *arg)
{
    const char *const *names = arg; /* data_dir, ring name, log level */
    struct node_config c;
    char err[512];

    node_config_defaults(&c);
    if (node_config_set(&c, "node", "data_dir", names[0], "bench", err, sizeof err) ||
        node_config_set(&c, "ring", "name", names[1], "bench", err, sizeof err) ||
        node_config_set(&c, "ring", "capacity", RING_CAPACITY, "bench", err, sizeof err) ||
        node_config_set(&c, "node", "log_level", names[2], "bench", err, sizeof err) ||
        /* the apply passes read this journal after the node stopped: its
         * last checkpoint must not trim it */
        node_config_set(&c, "checkpoint", "trim_journal", "no", "bench", err, sizeof err) ||
        node_config_check(&c, err, sizeof err)) {
        fprintf(stderr, "bench_node: node config: %s\n", err);
        return 1;
    }
    return node_run(&c);
}

/* Writes PUTs (a MARK after every GROUP_RECORDS) for duration_ns at rate,
 * sampling lsn and time for the waiter; ends with a MARK and waits for it
 * to be durable. */
static int produce(const struct load *L, struct ctl *ctl, rk_ring *ring, uint16_t table,
                   struct bench_waiter *w)
{
    uint8_t key[KEY_SIZE], val[VALUE_SIZE];
    uint64_t seq = 0, height = 0, lsn = 0, mark_lsn = 0, n_samples = 0, t0, now = 0;
    uint64_t burst = L->rate ? L->rate * BURST_NS / 1000000000u : 0;
    int rc = 0;

    if (burst < 1)
        burst = 1;
    t0 = now_ns();
    ctl->t_first = t0;
    for (;;) {
        if (seq % GROUP_RECORDS == 0 && seq > 0) {
            now = now_ns();
            /* acquire: orders nothing; the owner's opens are over */
            if (seq >= L->max_records ||
                (now - t0 >= L->duration_ns &&
                 (!L->n_opens || atomic_load_explicit(&ctl->opens_done, memory_order_acquire))))
                break;
        }
        if (L->rate) {
            uint64_t due = t0 + seq * 1000000000u / L->rate;
            now = now_ns();
            if (now < due) {
                /* sleep until the burst's last record is due, then send the burst */
                sleep_until(t0 + (seq + burst - 1) * 1000000000u / L->rate);
            } else if (now - due > ctl->max_lag_ns) {
                ctl->max_lag_ns = now - due;
            }
        }
        make_key(seq, key);
        make_value(seq, val);
        if (seq % L->sample_every == 0 && n_samples < w->capacity) {
            uint64_t t_put = now_ns();
            rc = rk_put(ring, table, key, KEY_SIZE, val, VALUE_SIZE, &lsn);
            w->samples[n_samples].lsn = lsn;
            w->samples[n_samples].t_put = t_put;
            n_samples++;
            /* release: the sample is written before the waiter may read it */
            atomic_store_explicit(&w->n_published, n_samples, memory_order_release);
        } else {
            if (seq % L->sample_every == 0)
                ctl->n_dropped++;
            rc = rk_put(ring, table, key, KEY_SIZE, val, VALUE_SIZE, &lsn);
        }
        if (rc) {
            fprintf(stderr, "bench_node: producer: rk_put of record %" PRIu64 ": %s\n", seq, rk_strerror(rc));
            return rc;
        }
        seq++;
        if (seq % GROUP_RECORDS == 0) {
            rc = rk_mark(ring, ++height, &mark_lsn);
            if (rc) {
                fprintf(stderr, "bench_node: producer: rk_mark(%" PRIu64 "): %s\n", height, rk_strerror(rc));
                return rc;
            }
            /* release: the MARK is in the ring before the owner reads this height */
            atomic_store_explicit(&ctl->height, height, memory_order_release);
        }
    }
    ctl->t_last = now_ns();
    ctl->n_puts = seq;
    ctl->n_marks = height;
    rc = rk_wait(ring, mark_lsn, RK_DURABLE, DURABLE_TIMEOUT_MS);
    ctl->t_durable = now_ns();
    if (rc) {
        fprintf(stderr, "bench_node: producer: the last MARK (LSN %" PRIu64 ") not durable: %s\n", mark_lsn,
                rk_strerror(rc));
        return rc;
    }
    /* release: t_first .. n_marks above are visible to the owner once it sees durable */
    atomic_store_explicit(&ctl->durable, 1, memory_order_release);
    return 0;
}

static struct ctl *g_ctl; /* the shared page; set before any child is forked */

static int producer_main(const void *arg)
{
    const struct load *L = arg;
    struct ctl *ctl = g_ctl;
    struct bench_waiter w = {.prog = "bench_node", .durable_timeout_ms = DURABLE_TIMEOUT_MS};
    rk_ring *ring = NULL;
    pthread_t thread;
    int rc, have_thread = 0;
    uint16_t table = 0;
    uint64_t deadline;

    prctl(PR_SET_TIMERSLACK, 1000ul); /* 1 us: pacing sleeps end when asked */
    w.capacity = L->max_records / L->sample_every + 1;
    if (L->rate) {
        uint64_t expected = (uint64_t)((double)L->rate * (double)L->duration_ns / 1e9) / L->sample_every;
        if (expected * 2 + 4096 < w.capacity)
            w.capacity = expected * 2 + 4096;
    } else if (w.capacity > (1u << 22)) {
        w.capacity = 1u << 22; /* max load: later samples are dropped and counted */
    }
    w.samples = malloc(w.capacity * sizeof *w.samples);
    w.latency = malloc(w.capacity * sizeof *w.latency);
    if (!w.samples || !w.latency) {
        fprintf(stderr, "bench_node: producer: out of memory\n");
        rc = ENOMEM;
        goto out;
    }
    rc = bench_attach("bench_node", L->ring_name, PRODUCER_NAME, FULL_TIMEOUT_MS, &ring);
    if (!rc)
        rc = bench_attach("bench_node", L->ring_name, WAITER_NAME, FULL_TIMEOUT_MS, &w.ring);
    if (rc)
        goto out;
    rc = rk_table(ring, TABLE_NAME, &table);
    if (rc) {
        fprintf(stderr, "bench_node: producer: rk_table: %s\n", rk_strerror(rc));
        goto out;
    }
    rc = pthread_create(&thread, NULL, bench_waiter_main, &w);
    if (rc) {
        fprintf(stderr, "bench_node: producer: pthread_create: %s\n", strerror(rc));
        goto out;
    }
    have_thread = 1;
    /* release: our setup is done before we count as ready */
    atomic_fetch_add_explicit(&ctl->n_ready, 1, memory_order_release);
    deadline = now_ns() + BARRIER_NS;
    /* acquire: pairs with the owner's release of go (orders nothing we read) */
    while (!atomic_load_explicit(&ctl->go, memory_order_acquire)) {
        if (now_ns() > deadline) {
            fprintf(stderr, "bench_node: producer: no start signal\n");
            rc = ETIMEDOUT;
            goto out;
        }
        sleep_ns(50000);
    }
    rc = produce(L, ctl, ring, table, &w);
out:
    if (have_thread) {
        /* release: every sample was published before; the waiter may stop */
        atomic_store_explicit(&w.done, 1, memory_order_release);
        pthread_join(thread, NULL);
        if (!rc && w.rc)
            rc = w.rc;
    }
    if (!rc) {
        uint64_t n = w.n_waited, sum = 0;
        qsort(w.latency, n, sizeof *w.latency, cmp_u64);
        for (uint64_t i = 0; i < n; i++)
            sum += w.latency[i];
        ctl->n_samples = n;
        ctl->lat_p50 = quantile(w.latency, n, 0.50);
        ctl->lat_p99 = quantile(w.latency, n, 0.99);
        ctl->lat_p999 = quantile(w.latency, n, 0.999);
        ctl->lat_max = n ? w.latency[n - 1] : 0;
        ctl->lat_mean = n ? sum / n : 0;
    }
    rk_ring_detach(w.ring);
    rk_ring_detach(ring);
    free(w.samples);
    free(w.latency);
    return rc;
}

/* ------------------------------------------------------------ the node's status */

struct node_status {
    uint64_t records, batches, journal_seq, applied_seq;
};

static int node_status(const char *dir, struct node_status *st)
{
    char *reply = NULL;
    int rc = node_request(dir, "status", STATUS_TIMEOUT_MS, &reply);

    if (!rc && (bench_json_field(reply, "records", 0, &st->records) ||
                bench_json_field(reply, "batches", 0, &st->batches) ||
                bench_json_field(reply, "journal_seq", 0, &st->journal_seq) ||
                bench_json_field(reply, "applied_seq", 0, &st->applied_seq)))
        rc = RK_ECORRUPT;
    free(reply);
    return rc;
}

/* ------------------------------------------------------------ the state check */

struct scan_check {
    const uint32_t *last;
    uint64_t n_seen;
    char why[256];
};

static int check_entry(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct scan_check *sc = arg;
    uint8_t want_key[KEY_SIZE], want_val[VALUE_SIZE];
    const uint8_t *k = key;
    uint64_t index = 0;

    if (klen != KEY_SIZE || vlen != VALUE_SIZE) {
        snprintf(sc->why, sizeof sc->why, "a key of %u bytes with a value of %u bytes", klen, vlen);
        return 1;
    }
    for (int i = 0; i < 8; i++)
        index = index << 8 | k[i];
    if (index >= KEY_SPACE || sc->last[index] == 0) {
        snprintf(sc->why, sizeof sc->why, "key %" PRIu64 " was never written (or only in a later group)",
                 index);
        return 1;
    }
    make_key(sc->last[index] - 1, want_key);
    make_value(sc->last[index] - 1, want_val);
    if (memcmp(key, want_key, KEY_SIZE) != 0 || memcmp(val, want_val, VALUE_SIZE) != 0) {
        uint64_t got;
        memcpy(&got, val, sizeof got);
        snprintf(sc->why, sizeof sc->why,
                 "key %" PRIu64 ": the value is not that of its last PUT, record %" PRIu32
                 " (the value names record %" PRIu64 ")",
                 index, sc->last[index] - 1, got);
        return 1;
    }
    sc->n_seen++;
    return 0;
}

/* Reads the state of dir through the public restore API and compares it
 * with the model of n_puts PUTs and n_marks MARKs. */
static int check_state(const char *dir, uint64_t n_puts, uint64_t n_marks)
{
    struct scan_check sc = {0};
    rk_state *s = NULL;
    uint64_t n_keys = 0, height = 0;
    uint32_t *last = model_build(n_puts, &n_keys);
    int rc;

    if (!last) {
        fprintf(stderr, "bench_node: out of memory\n");
        return ENOMEM;
    }
    rc = rk_state_open(dir, &s);
    if (rc) {
        fprintf(stderr, "bench_node: rk_state_open(%s): %s\n", dir, rk_strerror(rc));
        goto out;
    }
    rc = rk_state_height(s, PRODUCER_NAME, &height);
    if (rc || height != n_marks) {
        fprintf(stderr, "bench_node: state: producer height %" PRIu64 " (%s), want %" PRIu64 "\n", height,
                rk_strerror(rc), n_marks);
        rc = RK_ECORRUPT;
        goto out;
    }
    sc.last = last;
    rc = rk_state_scan(s, TABLE_NAME, NULL, 0, check_entry, &sc);
    if (rc) {
        fprintf(stderr, "bench_node: state: %s\n", sc.why[0] ? sc.why : rk_strerror(rc));
        rc = RK_ECORRUPT;
    } else if (sc.n_seen != n_keys) {
        fprintf(stderr, "bench_node: state: %" PRIu64 " keys, the model has %" PRIu64 "\n", sc.n_seen,
                n_keys);
        rc = RK_ECORRUPT;
    }
out:
    rk_state_close(s);
    free(last);
    return rc;
}

/* ------------------------------------------------------------ one load */

struct load_result {
    uint64_t rate;                     /* offered; 0 = max */
    int failed;                        /* the run failed: no figures */
    double fsync_p50_us, fsync_p99_us; /* the disk just before the run (fsync_probe) */
    uint64_t n_puts, n_marks;
    double put_s, durable_s; /* first put -> last put; first put -> last MARK durable */
    uint64_t batches;        /* journal entries */
    double apply_lag_ms;     /* last MARK durable -> node's apply caught up */
    double node_apply_per_s; /* PUTs / (first put -> apply caught up) */
    uint64_t n_samples, n_dropped;
    double p50_us, p99_us, p999_us, max_us, mean_us, max_lag_us;
    uint32_t n_opens;                       /* --opens done */
    double open_p50_ms, open_p99_ms, open_max_ms; /* rk_state_open call -> return */
    double open_cpu_p50_ms, open_cpu_p99_ms;      /* the engine's CPU time in rk_state_open */
    uint64_t open_min_ahead;                /* fewest groups a state held past the height asked at */
};

/* --opens: one rk_state_open of the live node on dir, timed into *ns; the
 * state must hold every group the producer had written when it was called
 * (*ahead: how many more it holds). */
static int state_open_once(const char *dir, struct ctl *ctl, uint64_t *ns, uint64_t *cpu_ns, uint64_t *ahead)
{
    /* acquire: pairs with the producer's release after rk_mark */
    uint64_t asked = atomic_load_explicit(&ctl->height, memory_order_acquire), height = 0, t0 = now_ns();
    uint64_t cpu0 = seg_now_ns(CLOCK_THREAD_CPUTIME_ID);
    rk_state *s = NULL;
    int rc = rk_state_open(dir, &s);

    *ns = now_ns() - t0;
    *cpu_ns = seg_now_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0; /* the engine's share: mapping, checks, index */
    if (!rc)
        rc = rk_state_height(s, PRODUCER_NAME, &height);
    rk_state_close(s);
    if (rc == RK_ENOTFOUND && asked == 0)
        rc = 0;
    if (rc) {
        fprintf(stderr, "bench_node: rk_state_open(%s) under load: %s\n", dir, rk_strerror(rc));
        return rc;
    }
    if (height < asked) {
        fprintf(stderr, "bench_node: a state opened under load holds height %" PRIu64 ", but %" PRIu64
                " was written before the call\n", height, asked);
        return RK_ECORRUPT;
    }
    *ahead = height - asked;
    return 0;
}

/* The disk as the node will find it: appends of PROBE_SIZE bytes to a new
 * file in dir, each followed by fsync (the node's commits are log appends
 * and fsyncs), PROBE_FSYNCS of them or PROBE_MAX_NS.  The machine is
 * shared: this shows what fsync cost just before the run. */
static int fsync_probe(const char *dir, double *p50_us, double *p99_us)
{
    char path[192], buf[PROBE_SIZE];
    uint64_t lat[PROBE_FSYNCS], start = now_ns();
    int fd, n = 0, rc = 0;

    snprintf(path, sizeof path, "%s/fsync-probe", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "bench_node: %s: %s\n", path, strerror(errno));
        return errno;
    }
    memset(buf, 0x5a, sizeof buf);
    while (n < PROBE_FSYNCS && now_ns() - start < PROBE_MAX_NS) {
        uint64_t t = now_ns();
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fsync(fd) != 0) {
            rc = errno ? errno : EIO;
            fprintf(stderr, "bench_node: %s: %s\n", path, strerror(rc));
            break;
        }
        lat[n++] = now_ns() - t;
    }
    close(fd);
    unlink(path);
    qsort(lat, (size_t)n, sizeof lat[0], cmp_u64);
    *p50_us = (double)quantile(lat, (uint64_t)n, 0.50) / 1e3;
    *p99_us = (double)quantile(lat, (uint64_t)n, 0.99) / 1e3;
    return rc;
}

/* Waits until the node on dir answers, or fails. */
static int wait_node_up(const char *dir, pid_t node)
{
    uint64_t deadline = now_ns() + (uint64_t)NODE_START_MS * 1000000u;
    struct node_status st;

    for (;;) {
        int status;
        if (waitpid(node, &status, WNOHANG) == node) {
            g_node_pid = 0;
            fprintf(stderr, "bench_node: the node exited at start (status %d)\n", status);
            return ECHILD;
        }
        if (node_status(dir, &st) == 0)
            return 0;
        if (now_ns() > deadline) {
            fprintf(stderr, "bench_node: the node did not answer within %d ms\n", NODE_START_MS);
            return ETIMEDOUT;
        }
        sleep_ns(10000000);
    }
}

/* Reaps the producer if it exited; returns 1 once reaped (*status set). */
static int producer_exited(pid_t pid, int *status)
{
    if (pid <= 0)
        return 1;
    if (waitpid(pid, status, WNOHANG) == pid) {
        g_producer_pid = 0;
        return 1;
    }
    return 0;
}

/* Runs one configuration in dir: node and producer, the status checks, the
 * node's stop and the state check.  Leaves dir in place. */
static int run_load(const char *dir, const char *ring_name, const struct load *L, unsigned watchdog_s,
                    struct load_result *res)
{
    /* --opens: the node's "state snapshot served" lines say where each open's time went */
    const char *names[3] = {dir, ring_name, L->n_opens ? "info" : "warn"};
    struct ctl *ctl = g_ctl;
    struct node_status st = {0};
    pid_t node = -1, producer = -1;
    uint64_t deadline, t_caught = 0, next_status = 0, *open_ns = NULL, *open_cpu_ns = NULL;
    int rc = -1, status = 0, reaped = 0;

    memset(res, 0, sizeof *res);
    res->rate = L->rate;
    memset(ctl, 0, sizeof *ctl);
    alarm(watchdog_s);
    set_ring(ring_name);
    if (make_data_dir(dir) != 0 || fsync_probe(dir, &res->fsync_p50_us, &res->fsync_p99_us) != 0)
        goto out;
    node = bench_spawn(node_main, names);
    if (node < 0) {
        fprintf(stderr, "bench_node: fork: %s\n", strerror(errno));
        goto out;
    }
    g_node_pid = node;
    if (wait_node_up(dir, node) != 0)
        goto out;
    producer = bench_spawn(producer_main, L);
    if (producer < 0) {
        fprintf(stderr, "bench_node: fork: %s\n", strerror(errno));
        goto out;
    }
    g_producer_pid = producer;
    deadline = now_ns() + BARRIER_NS;
    /* acquire: pairs with the producer's release increment */
    while (atomic_load_explicit(&ctl->n_ready, memory_order_acquire) < 1) {
        if (producer_exited(producer, &status)) {
            reaped = 1;
            fprintf(stderr, "bench_node: the producer exited before the start (status %d)\n", status);
            goto out;
        }
        if (now_ns() > deadline) {
            fprintf(stderr, "bench_node: the producer was not ready within %llu s\n",
                    (unsigned long long)(BARRIER_NS / 1000000000u));
            goto out;
        }
        sleep_ns(1000000);
    }
    /* release: orders nothing the producer reads; it starts it */
    atomic_store_explicit(&ctl->go, 1, memory_order_release);

    /* --opens: back to back while the producer writes */
    if (L->n_opens) {
        open_ns = malloc(L->n_opens * sizeof *open_ns);
        open_cpu_ns = malloc(L->n_opens * sizeof *open_cpu_ns);
        if (!open_ns || !open_cpu_ns)
            goto out;
        res->open_min_ahead = UINT64_MAX;
    }
    for (uint64_t t_go = now_ns(); open_ns && res->n_opens < L->n_opens;) {
        uint64_t ahead = 0;
        /* spread over the put phase: open i is due at i * seconds / N (at once when late) */
        sleep_until(t_go + res->n_opens * L->duration_ns / L->n_opens);
        if ((reaped = producer_exited(producer, &status)) != 0)
            break;
        if (state_open_once(dir, ctl, &open_ns[res->n_opens], &open_cpu_ns[res->n_opens], &ahead) != 0)
            goto out;
        if (ahead < res->open_min_ahead)
            res->open_min_ahead = ahead;
        res->n_opens++;
    }
    if (open_ns) {
        /* release: orders nothing; the producer may end its put phase */
        atomic_store_explicit(&ctl->opens_done, 1, memory_order_release);
        qsort(open_ns, res->n_opens, sizeof *open_ns, cmp_u64);
        res->open_p50_ms = (double)quantile(open_ns, res->n_opens, 0.50) / 1e6;
        res->open_p99_ms = (double)quantile(open_ns, res->n_opens, 0.99) / 1e6;
        res->open_max_ms = res->n_opens ? (double)open_ns[res->n_opens - 1] / 1e6 : 0;
        qsort(open_cpu_ns, res->n_opens, sizeof *open_cpu_ns, cmp_u64);
        res->open_cpu_p50_ms = (double)quantile(open_cpu_ns, res->n_opens, 0.50) / 1e6;
        res->open_cpu_p99_ms = (double)quantile(open_cpu_ns, res->n_opens, 0.99) / 1e6;
    }

    /* until the producer has exited and apply has caught up with a journal
     * that holds every record: poll.  A status request costs the node's
     * CPUs something (and ours a ZeroMQ context): after the last record is
     * durable, ask every POLL_NS, then at a tenth of the time waited so far,
     * at most every STATUS_POLL_MAX_NS; the catch-up time is known to that. */
    for (;;) {
        if (reaped || producer_exited(producer, &status)) {
            reaped = 1;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "bench_node: the producer failed (status %d)\n", status);
                goto out;
            }
        }
        /* acquire: pairs with the producer's release of durable */
        if (!t_caught && atomic_load_explicit(&ctl->durable, memory_order_acquire) &&
            now_ns() >= next_status) {
            uint64_t waited = now_ns() - ctl->t_durable, step = waited / 10;
            next_status = now_ns() + (step < POLL_NS              ? POLL_NS
                                      : step > STATUS_POLL_MAX_NS ? STATUS_POLL_MAX_NS
                                                                  : step);
            if (node_status(dir, &st) != 0) {
                fprintf(stderr, "bench_node: the node does not answer\n");
                goto out;
            }
            if (st.records == ctl->n_puts + ctl->n_marks && st.applied_seq == st.journal_seq)
                t_caught = now_ns();
            else if (now_ns() - ctl->t_durable > (uint64_t)CATCH_UP_MS * 1000000u) {
                fprintf(stderr,
                        "bench_node: after %d ms the journal holds %" PRIu64 " records of %" PRIu64
                        ", applied seq %" PRIu64 " of %" PRIu64 "\n",
                        CATCH_UP_MS, st.records, ctl->n_puts + ctl->n_marks, st.applied_seq, st.journal_seq);
                rc = RK_ECORRUPT;
                goto out;
            }
        }
        if (reaped && t_caught)
            break;
        if (waitpid(node, &status, WNOHANG) == node) {
            g_node_pid = 0;
            node = -1;
            fprintf(stderr, "bench_node: the node exited during the run (status %d)\n", status);
            goto out;
        }
        sleep_ns(POLL_NS);
    }
    res->n_puts = ctl->n_puts;
    res->n_marks = ctl->n_marks;
    res->put_s = (double)(ctl->t_last - ctl->t_first) / 1e9;
    res->durable_s = (double)(ctl->t_durable - ctl->t_first) / 1e9;
    res->batches = st.batches;
    res->apply_lag_ms = (double)(t_caught - ctl->t_durable) / 1e6;
    res->node_apply_per_s = (double)ctl->n_puts / ((double)(t_caught - ctl->t_first) / 1e9);
    res->n_samples = ctl->n_samples;
    res->n_dropped = ctl->n_dropped;
    res->p50_us = (double)ctl->lat_p50 / 1e3;
    res->p99_us = (double)ctl->lat_p99 / 1e3;
    res->p999_us = (double)ctl->lat_p999 / 1e3;
    res->max_us = (double)ctl->lat_max / 1e3;
    res->mean_us = (double)ctl->lat_mean / 1e3;
    res->max_lag_us = (double)ctl->max_lag_ns / 1e3;

    /* SIGTERM: the node journals what it holds, applies it and exits 0 */
    kill(node, SIGTERM);
    if (waitpid(node, &status, 0) != node || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_node: the node did not stop cleanly (status %d)\n", status);
        g_node_pid = 0;
        node = -1;
        goto out;
    }
    g_node_pid = 0;
    node = -1;
    rc = check_state(dir, res->n_puts, res->n_marks);
out:
    if (producer > 0 && !reaped) {
        kill(producer, SIGKILL);
        waitpid(producer, NULL, 0);
    }
    g_producer_pid = 0;
    if (node > 0) {
        kill(node, SIGKILL);
        waitpid(node, NULL, 0);
    }
    g_node_pid = 0;
    ring_unlink(ring_name); /* the node leaves its ring for engines when it stops */
    set_ring(NULL);
    alarm(0);
    free(open_ns);
    free(open_cpu_ns);
    return rc;
}

/* ------------------------------------------------------------ apply vs raw BDB */

/* The journal prefix the apply passes use, and the raw baseline's input. */
struct apply_input {
    uint8_t **entries; /* encoded journal entries, seq 1..n_entries */
    size_t *entry_len;
    uint64_t n_entries;
    uint8_t *kv; /* the PUTs of complete groups, in order: key, value */
    uint64_t n_records, n_groups;
    uint64_t *commits; /* records applied at each commit the applier makes */
    uint64_t n_commits;
    uint64_t raw_bytes, body_bytes; /* frames, and as stored (zstd) */
    double read_s, encode_s;        /* store_journal_get, journal_encode over the prefix */
};

static void apply_input_free(struct apply_input *in)
{
    for (uint64_t i = 0; i < in->n_entries; i++)
        free(in->entries[i]);
    free(in->entries);
    free(in->entry_len);
    free(in->kv);
    free(in->commits);
    memset(in, 0, sizeof *in);
}

static int grow(void **p, uint64_t *cap, uint64_t need, size_t elem)
{
    void *q;
    uint64_t c = *cap ? *cap : 1024;

    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    q = realloc(*p, c * elem);
    if (!q)
        return ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* Checks one PUT of the journal against the model: it is record `seq`. */
static int check_put(const ring_frame *f, uint64_t seq)
{
    uint8_t key[KEY_SIZE], val[VALUE_SIZE];

    make_key(seq, key);
    make_value(seq, val);
    if (f->klen != KEY_SIZE || f->vlen != VALUE_SIZE || memcmp(f->key, key, KEY_SIZE) != 0 ||
        memcmp(f->val, val, VALUE_SIZE) != 0) {
        fprintf(stderr, "bench_node: journal: the PUT at LSN %" PRIu64 " is not record %" PRIu64 "\n", f->lsn,
                seq);
        return RK_ECORRUPT;
    }
    return 0;
}

/* Walks one decoded entry: checks and collects the producer's PUTs,
 * counts its groups and simulates the applier's commit rule (records count
 * at their group's MARK; a commit after an entry once a transaction holds
 * APPLY_TXN_RECORDS of them). */
static int collect_entry(const journal_entry *e, struct apply_input *in, uint64_t *cap_kv,
                         uint64_t *cap_commits, uint64_t *n_puts, int *slot, uint64_t *txn_records)
{
    ring_frame f;
    char why[256] = "";
    int rc = 0;

    for (size_t off = 0; off < e->h.raw_len; off += frame_align(f.raw_len)) {
        rc = frame_decode(e->frames + off, e->h.raw_len - off, &f, why, sizeof why);
        if (rc) {
            fprintf(stderr, "bench_node: journal entry %" PRIu64 ": %s\n", e->h.seq, why);
            return rc;
        }
        if (f.type == FRAME_ATTACH && f.klen == strlen(PRODUCER_NAME) &&
            memcmp(f.key, PRODUCER_NAME, f.klen) == 0)
            *slot = f.producer;
        if (f.type != FRAME_PUT && f.type != FRAME_MARK)
            continue;
        if (f.producer != *slot) {
            fprintf(stderr, "bench_node: journal: a frame of another producer at LSN %" PRIu64 "\n", f.lsn);
            return RK_ECORRUPT;
        }
        if (f.type == FRAME_PUT) {
            rc = check_put(&f, *n_puts);
            if (!rc)
                rc = grow((void **)&in->kv, cap_kv, *n_puts + 1, KEY_SIZE + VALUE_SIZE);
            if (rc)
                return rc;
            memcpy(in->kv + *n_puts * (KEY_SIZE + VALUE_SIZE), f.key, KEY_SIZE);
            memcpy(in->kv + *n_puts * (KEY_SIZE + VALUE_SIZE) + KEY_SIZE, f.val, VALUE_SIZE);
            (*n_puts)++;
        } else {
            *txn_records += *n_puts - in->n_records;
            in->n_records = *n_puts;
            in->n_groups++;
        }
    }
    if (*txn_records >= APPLY_TXN_RECORDS) {
        rc = grow((void **)&in->commits, cap_commits, in->n_commits + 1, sizeof *in->commits);
        if (rc)
            return rc;
        in->commits[in->n_commits++] = in->n_records;
        *txn_records = 0;
    }
    return 0;
}

/* Copies the first entries of dir's journal (until they hold want_records
 * records of complete groups) into memory, re-encoded as the node's drain
 * encodes them, with the PUTs for the raw baseline. */
static int prepare_apply(const char *dir, uint64_t want_records, struct apply_input *in)
{
    store *s = NULL;
    journal_entry e = {0};
    char err[512] = "";
    uint64_t cap_entries = 0, cap_lens = 0, cap_kv = 0, cap_commits = 0, n_puts = 0, txn_records = 0;
    int rc, slot = -1;

    memset(in, 0, sizeof *in);
    rc = store_open(dir, 0, CACHE_MB, &s, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_node: store_open(%s): %s\n", dir, err);
        return rc;
    }
    for (uint64_t seq = 1; in->n_records < want_records; seq++) {
        uint64_t t = now_ns();
        rc = store_journal_get(s, seq, &e, err, sizeof err);
        in->read_s += (double)(now_ns() - t) / 1e9;
        if (rc == RK_ENOTFOUND) {
            rc = 0;
            break;
        }
        if (rc) {
            fprintf(stderr, "bench_node: journal entry %" PRIu64 ": %s\n", seq, err);
            break;
        }
        rc = collect_entry(&e, in, &cap_kv, &cap_commits, &n_puts, &slot, &txn_records);
        if (!rc)
            rc = grow((void **)&in->entries, &cap_entries, in->n_entries + 1, sizeof *in->entries);
        if (!rc)
            rc = grow((void **)&in->entry_len, &cap_lens, in->n_entries + 1, sizeof *in->entry_len);
        if (rc)
            break;
        t = now_ns();
        rc = journal_encode(&e.h, e.frames, e.h.raw_len, ZSTD_LEVEL, &in->entries[in->n_entries],
                            &in->entry_len[in->n_entries]);
        in->encode_s += (double)(now_ns() - t) / 1e9;
        if (rc) {
            fprintf(stderr, "bench_node: journal_encode: %s\n", rk_strerror(rc));
            break;
        }
        in->n_entries++;
        in->raw_bytes += e.h.raw_len;
        in->body_bytes += e.h.body_len;
        journal_entry_free(&e);
    }
    journal_entry_free(&e);
    store_close(s);
    /* the applier's last commit, at the end of its run */
    if (!rc && (in->n_commits == 0 || in->commits[in->n_commits - 1] != in->n_records))
        rc = grow((void **)&in->commits, &cap_commits, in->n_commits + 1, sizeof *in->commits);
    if (!rc && (in->n_commits == 0 || in->commits[in->n_commits - 1] != in->n_records))
        in->commits[in->n_commits++] = in->n_records;
    if (!rc && in->n_records == 0) {
        fprintf(stderr, "bench_node: the journal of %s holds no complete group\n", dir);
        rc = RK_ECORRUPT;
    }
    if (rc)
        apply_input_free(in);
    return rc;
}

/* One applier pass in a fresh data directory dir: the journal prefix is
 * appended (synced, as drain does; timed as *append_per_s), then
 * applier_run applies all of it (timed as *apply_per_s, and per second of
 * this thread's CPU time as *apply_cpu_per_s). */
static int pass_apply(const char *dir, const struct apply_input *in, double *apply_per_s,
                      double *apply_cpu_per_s, double *append_per_s)
{
    store *s = NULL;
    applier *a = NULL;
    struct apply_meta am;
    char err[512] = "";
    uint64_t t0, t1, cpu0, cpu1;
    int rc;

    rc = make_data_dir(dir);
    if (rc)
        goto out;
    rc = store_open(dir, STORE_CREATE, CACHE_MB, &s, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_node: store_open(%s): %s\n", dir, err);
        goto out;
    }
    t0 = now_ns();
    for (uint64_t i = 0; i < in->n_entries && !rc; i++)
        rc = store_journal_append(s, i + 1, in->entries[i], in->entry_len[i]);
    t1 = now_ns();
    if (rc) {
        fprintf(stderr, "bench_node: store_journal_append: %s\n", store_strerror(rc));
        goto out;
    }
    *append_per_s = (double)in->n_records / ((double)(t1 - t0) / 1e9);
    rc = applier_open(s, &a, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_node: applier_open: %s\n", err);
        goto out;
    }
    t0 = now_ns();
    cpu0 = thread_cpu_ns();
    rc = applier_run(a, UINT64_MAX, APPLY_TXN_RECORDS, err, sizeof err);
    cpu1 = thread_cpu_ns();
    t1 = now_ns();
    if (rc) {
        fprintf(stderr, "bench_node: applier_run: %s\n", err);
        goto out;
    }
    am = applier_meta(a);
    if (am.n_records != in->n_records || am.n_groups != in->n_groups || am.applied_seq != in->n_entries) {
        fprintf(stderr,
                "bench_node: the applier applied %" PRIu64 " records in %" PRIu64
                " groups up to entry %" PRIu64 ", want %" PRIu64 " in %" PRIu64 " up to %" PRIu64 "\n",
                am.n_records, am.n_groups, am.applied_seq, in->n_records, in->n_groups, in->n_entries);
        rc = RK_ECORRUPT;
        goto out;
    }
    *apply_per_s = (double)in->n_records / ((double)(t1 - t0) / 1e9);
    *apply_cpu_per_s = (double)in->n_records / ((double)(cpu1 - cpu0) / 1e9);
out:
    applier_close(a);
    store_close(s);
    remove_tree(dir);
    return rc;
}

/* The one place a raw-baseline BDB failure becomes a message. */
static int bdb_fail(int rc, const char *what)
{
    fprintf(stderr, "bench_node: raw Berkeley DB: %s: %s\n", what, db_strerror(rc));
    return rc;
}

/* One raw pass in a fresh directory dir: an environment opened as the
 * store opens its own (same flags, same cache; a lock table that holds its
 * transactions), one btree (a subdatabase of one file, as the applier's
 * tables are), the same PUTs, committed with DB_TXN_NOSYNC at the
 * applier's commit points (per second, and per second of this thread's
 * CPU time). */
static int pass_raw(const char *dir, const struct apply_input *in, double *raw_per_s, double *raw_cpu_per_s)
{
    DB_ENV *env = NULL;
    DB *db = NULL;
    DB_TXN *txn = NULL;
    uint64_t t0, t1, cpu0, cpu1, c = 0;
    int rc;

    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "bench_node: mkdir %s: %s\n", dir, strerror(errno));
        return errno;
    }
    rc = write_db_config(dir);
    if (rc)
        goto out;
    rc = db_env_create(&env, 0);
    if (rc) {
        env = NULL;
        rc = bdb_fail(rc, "db_env_create");
        goto out;
    }
    rc = env->set_cachesize(env, CACHE_MB / 1024, (CACHE_MB % 1024) * 1024u * 1024u, 1);
    if (!rc)
        rc = env->set_lk_detect(env, DB_LOCK_DEFAULT);
    /* a transaction of APPLY_TXN_RECORDS random puts locks a page each:
     * more than Berkeley DB's default lock table holds (about 2000) */
    if (!rc)
        rc = env->set_lk_max_locks(env, RAW_LOCKS);
    if (!rc)
        rc = env->set_lk_max_objects(env, RAW_LOCKS);
    if (!rc)
        rc = env->open(env, dir,
                       DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL | DB_RECOVER |
                           DB_THREAD,
                       0600);
    if (rc) {
        rc = bdb_fail(rc, "opening the environment");
        goto out;
    }
    rc = db_create(&db, env, 0);
    if (rc) {
        db = NULL;
        rc = bdb_fail(rc, "db_create");
        goto out;
    }
    rc = db->open(db, NULL, "state.db", "t:" TABLE_NAME, DB_BTREE, DB_CREATE | DB_AUTO_COMMIT | DB_THREAD,
                  0600);
    if (rc) {
        rc = bdb_fail(rc, "opening the database");
        goto out;
    }
    t0 = now_ns();
    cpu0 = thread_cpu_ns();
    for (uint64_t i = 0; i < in->n_records; i++) {
        uint8_t *kv = in->kv + i * (KEY_SIZE + VALUE_SIZE);
        DBT k = {.data = kv, .size = KEY_SIZE}, v = {.data = kv + KEY_SIZE, .size = VALUE_SIZE};
        if (!txn) {
            rc = env->txn_begin(env, NULL, &txn, 0);
            if (rc) {
                rc = bdb_fail(rc, "txn_begin");
                goto out;
            }
        }
        rc = db->put(db, txn, &k, &v, 0);
        if (rc) {
            rc = bdb_fail(rc, "put");
            goto out;
        }
        if (i + 1 == in->commits[c]) {
            rc = txn->commit(txn, DB_TXN_NOSYNC);
            txn = NULL;
            c++;
            if (rc) {
                rc = bdb_fail(rc, "commit");
                goto out;
            }
        }
    }
    cpu1 = thread_cpu_ns();
    t1 = now_ns();
    *raw_per_s = (double)in->n_records / ((double)(t1 - t0) / 1e9);
    *raw_cpu_per_s = (double)in->n_records / ((double)(cpu1 - cpu0) / 1e9);
out:
    if (txn)
        txn->abort(txn);
    if (db)
        db->close(db, 0);
    if (env)
        env->close(env, 0);
    remove_tree(dir);
    return rc;
}

struct apply_result {
    uint64_t n_records, n_groups, n_entries, n_commits;
    double zstd_ratio;
    double read_per_s, encode_per_s; /* records/s of store_journal_get, journal_encode */
    int n_runs;
    double apply_runs[MAX_REPEAT], raw_runs[MAX_REPEAT], append_runs[MAX_REPEAT];
    double apply_per_s, raw_per_s, append_per_s; /* the best of each */
    /* records per second of the pass's CPU time (best of the runs): on a
     * machine others share, steadier than per second of wall time */
    double apply_cpu_per_s, raw_cpu_per_s;
};

/* Rounds of raw, then apply, so that a slow spell of this shared machine
 * hits both sides alike.  Each pass has its own directory under base. */
static int run_apply(const char *base, const char *src_dir, uint64_t want_records, int repeat,
                     unsigned watchdog_s, struct apply_result *res)
{
    struct apply_input in;
    char dir[128];
    int rc;

    memset(res, 0, sizeof *res);
    alarm(watchdog_s);
    rc = prepare_apply(src_dir, want_records, &in);
    alarm(0);
    if (rc)
        return rc;
    res->n_records = in.n_records;
    res->n_groups = in.n_groups;
    res->n_entries = in.n_entries;
    res->n_commits = in.n_commits;
    res->zstd_ratio = in.body_bytes ? (double)in.raw_bytes / (double)in.body_bytes : 0;
    res->read_per_s = (double)in.n_records / in.read_s;
    res->encode_per_s = (double)in.n_records / in.encode_s;
    for (int k = 0; k < repeat && !rc; k++) {
        alarm(watchdog_s);
        snprintf(dir, sizeof dir, "%s/raw-%d", base, k + 1);
        double raw_cpu = 0, apply_cpu = 0;
        rc = pass_raw(dir, &in, &res->raw_runs[k], &raw_cpu);
        snprintf(dir, sizeof dir, "%s/apply-%d", base, k + 1);
        if (!rc)
            rc = pass_apply(dir, &in, &res->apply_runs[k], &apply_cpu, &res->append_runs[k]);
        alarm(0);
        if (!rc) {
            res->n_runs++;
            if (raw_cpu > res->raw_cpu_per_s)
                res->raw_cpu_per_s = raw_cpu;
            if (apply_cpu > res->apply_cpu_per_s)
                res->apply_cpu_per_s = apply_cpu;
            if (res->raw_runs[k] > res->raw_per_s)
                res->raw_per_s = res->raw_runs[k];
            if (res->apply_runs[k] > res->apply_per_s)
                res->apply_per_s = res->apply_runs[k];
            if (res->append_runs[k] > res->append_per_s)
                res->append_per_s = res->append_runs[k];
        }
    }
    apply_input_free(&in);
    return rc;
}

/* ------------------------------------------------------------ output */

struct options {
    uint64_t rates[MAX_RATES]; /* 0 = max */
    int n_rates;
    double seconds;
    uint64_t n_records; /* per load, at most */
    uint64_t apply_records;
    int repeat;
    int quick, json;
    uint32_t n_opens; /* --opens */
    unsigned watchdog_s;
    const char *db_config_file; /* --db-config, NULL if none */
};

struct machine {
    long nproc;
    char cpu[128];
    char kernel[128];
    char tmp_fs[32];
};

static void read_machine(struct machine *m)
{
    struct statfs sfs;

    bench_read_host(&m->nproc, m->cpu, sizeof m->cpu, m->kernel, sizeof m->kernel);
    snprintf(m->tmp_fs, sizeof m->tmp_fs, "unknown");
    if (statfs("/tmp", &sfs) == 0) {
        switch ((unsigned long)sfs.f_type) {
        case 0xEF53:
            snprintf(m->tmp_fs, sizeof m->tmp_fs, "ext2/3/4");
            break;
        case 0x58465342:
            snprintf(m->tmp_fs, sizeof m->tmp_fs, "xfs");
            break;
        case 0x9123683E:
            snprintf(m->tmp_fs, sizeof m->tmp_fs, "btrfs");
            break;
        case 0x01021994:
            snprintf(m->tmp_fs, sizeof m->tmp_fs, "tmpfs (fsync is free!)");
            break;
        case 0x794c7630:
            snprintf(m->tmp_fs, sizeof m->tmp_fs, "overlayfs");
            break;
        default:
            snprintf(m->tmp_fs, sizeof m->tmp_fs, "type 0x%lx", (unsigned long)sfs.f_type);
        }
    }
}

/* Adds the machine's members to a JSON object (obj may be NULL). */
static json_t *json_machine(json_t *obj, const struct machine *m)
{
    json_t *more = json_pack("{s:i, s:s, s:s}", "nproc", (int)m->nproc, "cpu", m->cpu, "tmp_fs", m->tmp_fs);

    if (!obj || !more || json_object_update(obj, more) != 0) {
        json_decref(obj);
        obj = NULL;
    }
    json_decref(more);
    return obj;
}

static void print_header(const struct options *opt, const struct machine *m, const char *base)
{
    printf("bench_node: the node's durable throughput and durable-ack latency; apply vs raw Berkeley DB\n");
    printf("machine: %ld CPUs, %s, %s; data under %s (%s)\n", m->nproc, m->cpu, m->kernel, base, m->tmp_fs);
    if (opt->db_config_file) {
        printf("Berkeley DB: DB_CONFIG from %s in every environment (node, applier, raw baseline):\n",
               opt->db_config_file);
        for (const char *p = g_db_config; *p;) {
            size_t n = strcspn(p, "\n");
            printf("         | %.*s\n", (int)n, p);
            p += n + (p[n] == '\n');
        }
    } else {
        printf("Berkeley DB: environments as the node opens them (no DB_CONFIG)\n");
    }
    printf(
        "method:  per load a fresh node (forked; node defaults: batch 8192 records / 4 MiB / 1 ms, zstd 1,\n"
        "         cache %u MiB, synced group commit) on a %s ring, and one producer process (public API)\n"
        "         writing %.1f s or %" PRIu64 " PUTs (whichever ends first): key 8 B over %u keys (PRNG),\n"
        "         value %u B, a MARK every %u PUTs.\n",
        CACHE_MB, RING_CAPACITY, opt->seconds, opt->n_records, KEY_SPACE, VALUE_SIZE, GROUP_RECORDS);
    printf(
        "  puts/s: first -> last put.  durable/s: PUTs / (first put -> last MARK durable).\n"
        "  ack: rk_put -> rk_wait(RK_DURABLE) returned, every record when paced, every %d-th at max, waited\n"
        "       for in order by a second thread with its own handle (upper bounds by ~0.2 us per record\n"
        "       made durable in the same batch).  batches: journal entries = synced commits.\n"
        "  apply lag: last MARK durable -> the node's apply caught up (status polled every %llu ms,\n"
        "       later every tenth of the time waited, up to %llu ms).\n"
        "  fsync: the disk just before the run: %d appends of %d B to a file in the data directory,\n"
        "       each fsynced (the machine is shared: other work changes this by 10x or more).\n"
        "  Every run is checked: journal counts, clean node stop, the whole state read back through\n"
        "  rk_state_open and compared byte for byte with a model.\n",
        MAX_SAMPLE_EVERY, (unsigned long long)(POLL_NS / 1000000u),
        (unsigned long long)(STATUS_POLL_MAX_NS / 1000000u), PROBE_FSYNCS, PROBE_SIZE);
    printf("\n%7s %8s %8s %9s %7s %9s %8s %8s %8s %8s %8s %9s %11s\n", "offered", "records", "puts/s",
           "durable/s", "batches", "rec/batch", "ack p50", "p99", "p99.9", "max", "lag max", "apply lag",
           "fsync p50/99");
    printf("%7s %8s %8s %9s %7s %9s %8s %8s %8s %8s %8s %9s %11s\n", "rec/s", "(PUTs)", "", "", "", "", "us",
           "us", "us", "us", "us", "ms", "us");
}

static void rate_name(uint64_t rate, char *out, size_t size)
{
    if (rate == 0)
        snprintf(out, size, "max");
    else if (rate % 1000 == 0)
        snprintf(out, size, "%" PRIu64 "k", rate / 1000);
    else
        snprintf(out, size, "%" PRIu64, rate);
}

static void print_load(const struct options *opt, const struct machine *m, const struct load_result *r)
{
    char name[32];
    double put_per_s = r->put_s > 0 ? (double)r->n_puts / r->put_s : 0;
    double durable_per_s = r->durable_s > 0 ? (double)r->n_puts / r->durable_s : 0;
    double per_batch = r->batches ? (double)(r->n_puts + r->n_marks) / (double)r->batches : 0;

    rate_name(r->rate, name, sizeof name);
    if (r->failed) {
        if (!opt->json)
            printf("%7s FAILED (see the messages above)\n", name);
        else
            bench_print_json(json_pack("{s:s, s:s, s:I, s:b}", "bench", "node", "kind", "load",
                                       "offered_per_s", (json_int_t)r->rate, "failed", 1));
        fflush(stdout);
        return;
    }
    if (!opt->json) {
        printf("%7s %8" PRIu64 " %7.0fk %8.0fk %7" PRIu64
               " %9.0f %8.0f %8.0f %8.0f %8.0f %8.0f %9.0f %5.0f/%-5.0f\n",
               name, r->n_puts, put_per_s / 1e3, durable_per_s / 1e3, r->batches, per_batch, r->p50_us,
               r->p99_us, r->p999_us, r->max_us, r->max_lag_us, r->apply_lag_ms, r->fsync_p50_us,
               r->fsync_p99_us);
        if (r->n_dropped)
            printf("%7s (%" PRIu64 " latency samples not taken: the sample array was full)\n", "",
                   r->n_dropped);
    } else {
        bench_print_json(json_machine(
            json_pack(
                "{s:s, s:s, s:I, s:I, s:I, s:i, s:i, s:i, s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:I,"
                " s:I, s:o, s:o, s:o, s:o, s:o}",
                "bench", "node", "kind", "load", "offered_per_s", (json_int_t)r->rate, "records",
                (json_int_t)r->n_puts, "marks", (json_int_t)r->n_marks, "key_size", KEY_SIZE, "value_size",
                VALUE_SIZE, "key_space", KEY_SPACE, "puts_per_s", bench_int(put_per_s), "durable_per_s",
                bench_int(durable_per_s), "batches", (json_int_t)r->batches, "records_per_batch",
                bench_real(per_batch, 1), "ack_p50_us", bench_real(r->p50_us, 1), "ack_p99_us",
                bench_real(r->p99_us, 1), "ack_p999_us", bench_real(r->p999_us, 1), "ack_max_us",
                bench_real(r->max_us, 1), "ack_mean_us", bench_real(r->mean_us, 1), "samples",
                (json_int_t)r->n_samples, "samples_dropped", (json_int_t)r->n_dropped, "schedule_lag_max_us",
                bench_real(r->max_lag_us, 1), "apply_lag_ms", bench_real(r->apply_lag_ms, 1),
                "node_apply_per_s", bench_int(r->node_apply_per_s), "fsync_probe_p50_us",
                bench_real(r->fsync_p50_us, 1), "fsync_probe_p99_us", bench_real(r->fsync_p99_us, 1)),
            m));
    }
    if (r->n_opens && !opt->json)
        printf("%7s state opens under this load: %" PRIu32 ", p50 %.1f ms, p99 %.1f ms, max %.1f ms; each held"
               " every group written before its call (and >= %" PRIu64 " more); p99 < 100 ms: %s\n"
               "%7s   the engine's CPU in rk_state_open: p50 %.1f ms, p99 %.1f ms\n",
               "", r->n_opens, r->open_p50_ms, r->open_p99_ms, r->open_max_ms, r->open_min_ahead,
               met(r->open_p99_ms < 100), "", r->open_cpu_p50_ms, r->open_cpu_p99_ms);
    else if (r->n_opens)
        bench_print_json(json_pack("{s:s, s:s, s:I, s:I, s:o, s:o, s:o, s:I}", "bench", "node", "kind",
                                   "state_opens", "offered_per_s", (json_int_t)r->rate, "opens",
                                   (json_int_t)r->n_opens, "open_p50_ms", bench_real(r->open_p50_ms, 1),
                                   "open_p99_ms", bench_real(r->open_p99_ms, 1), "open_max_ms",
                                   bench_real(r->open_max_ms, 1), "fewest_groups_ahead",
                                   (json_int_t)r->open_min_ahead));
    fflush(stdout);
}

static void print_apply(const struct options *opt, const struct machine *m, const struct apply_result *a,
                        const struct load_result *src)
{
    char name[32];

    rate_name(src->rate, name, sizeof name);
    if (!opt->json) {
        printf("\nnode's own apply (concurrent with drain and the producer) in the %s run: %.0fk records/s\n"
               "  (PUTs / first put -> apply caught up)\n",
               name, src->node_apply_per_s / 1e3);
        printf("\napply vs raw Berkeley DB, each alone in this process, best of %d interleaved passes:\n"
               "  input: the first %" PRIu64 " entries of the %s run's journal: %" PRIu64 " PUTs in %" PRIu64
               " groups\n"
               "         (zstd ratio %.2f); %" PRIu64
               " transactions (a commit after an entry once %u records\n"
               "         are in it, as the applier does), DB_TXN_NOSYNC; cache %u MiB; fresh directories;\n"
               "         raw: its lock table sized for these transactions\n",
               a->n_runs, a->n_entries, name, a->n_records, a->n_groups, a->zstd_ratio, a->n_commits,
               APPLY_TXN_RECORDS, CACHE_MB);
        printf("  raw BDB puts   %9.0fk records/s   runs:", a->raw_per_s / 1e3);
        for (int i = 0; i < a->n_runs; i++)
            printf(" %.0fk", a->raw_runs[i] / 1e3);
        printf("\n  applier_run    %9.0fk records/s   runs:", a->apply_per_s / 1e3);
        for (int i = 0; i < a->n_runs; i++)
            printf(" %.0fk", a->apply_runs[i] / 1e3);
        printf("\n  apply/raw      %9.3f\n", a->apply_per_s / a->raw_per_s);
        printf("  per second of the pass's own CPU time: raw %.0fk, applier_run %.0fk, apply/raw %.3f\n",
               a->raw_cpu_per_s / 1e3, a->apply_cpu_per_s / 1e3, a->apply_cpu_per_s / a->raw_cpu_per_s);
        printf("\njournal path pieces, one thread (where drain and apply spend):\n"
               "  journal_encode (zstd %d + XXH64)        %9.0fk records/s\n"
               "  store_journal_append (synced commit)   %9.0fk records/s (%.0f entries/s)\n"
               "  store_journal_get (read + decode)      %9.0fk records/s\n",
               ZSTD_LEVEL, a->encode_per_s / 1e3, a->append_per_s / 1e3,
               a->append_per_s * (double)a->n_entries / (double)a->n_records, a->read_per_s / 1e3);
    } else {
        bench_print_json(json_machine(
            json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
                      "s:o}",
                      "bench", "node", "kind", "apply", "source_offered_per_s", (json_int_t)src->rate,
                      "records", (json_int_t)a->n_records, "groups", (json_int_t)a->n_groups, "entries",
                      (json_int_t)a->n_entries, "transactions", (json_int_t)a->n_commits, "zstd_ratio",
                      bench_real(a->zstd_ratio, 3), "apply_per_s", bench_int(a->apply_per_s),
                      "apply_per_s_runs", bench_ints(a->apply_runs, a->n_runs), "raw_bdb_per_s",
                      bench_int(a->raw_per_s), "raw_bdb_per_s_runs", bench_ints(a->raw_runs, a->n_runs),
                      "ratio", bench_real(a->apply_per_s / a->raw_per_s, 4), "apply_per_cpu_s",
                      bench_int(a->apply_cpu_per_s), "raw_bdb_per_cpu_s", bench_int(a->raw_cpu_per_s),
                      "node_apply_per_s",
                      bench_int(src->node_apply_per_s), "encode_per_s", bench_int(a->encode_per_s),
                      "append_per_s", bench_int(a->append_per_s), "read_decode_per_s",
                      bench_int(a->read_per_s)),
            m));
    }
    fflush(stdout);
}

/* The targets, for information: they never change the exit status. */
static void print_targets(const struct load_result *loads, int n_loads, const struct apply_result *a)
{
    printf("\ntargets (information only; this run's figures):\n");
    for (int i = 0; i < n_loads; i++) {
        const struct load_result *r = &loads[i];
        double durable_per_s = r->durable_s > 0 ? (double)r->n_puts / r->durable_s : 0;
        if (r->failed)
            continue;
        if (r->rate == 0)
            printf("  journal at max load: %.2fM records/s durable >= 2M: %s\n", durable_per_s / 1e6,
                   met(durable_per_s >= 2e6));
        else if (r->rate == 200000)
            printf("  durable-ack p99 at 200k records/s: %.2f ms <= 2 ms: %s\n", r->p99_us / 1e3,
                   met(r->p99_us <= 2000));
    }
    if (a && a->n_runs)
        printf("  apply/raw BDB: %.3f >= 1.0: %s\n", a->apply_per_s / a->raw_per_s,
               met(a->apply_per_s >= a->raw_per_s));
}

/* ------------------------------------------------------------ arguments */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_node [--rates 50000,200000,0] [--seconds S] [--records N] [--apply-records N]\n"
            "                  [--repeat N] [--watchdog SECONDS] [--db-config FILE] [--opens N] [--quick]\n"
            "                  [--json]\n"
            "  --rates        offered loads in PUTs/s, 0 = max (default 50000,200000,0)\n"
            "  --seconds S    put phase of each load (default %.0f; --quick: %.0f)\n"
            "  --records N    ... or at most this many PUTs (default %llu; --quick: %llu)\n"
            "  --apply-records N  records of the max run's journal that apply and raw BDB take\n"
            "                 (default %llu; --quick: %llu)\n"
            "  --repeat N     apply and raw passes, interleaved, best reported (default %d; --quick: 1)\n"
            "  --watchdog S   seconds one configuration may take before everything is killed (default %d)\n"
            "  --db-config FILE  written as DB_CONFIG into every Berkeley DB environment the bench makes\n"
            "                 (node, applier, raw baseline), e.g. to size the lock table\n"
            "  --opens N      per load, N rk_state_open calls spread over --seconds on the live node while\n"
            "                 the producer writes (it writes until they are done); prints their latency\n"
            "                 p50/p99/max; the apply and raw passes are not run\n"
            "  --json         one JSON object per configuration instead of the table\n",
            DEFAULT_SECONDS, QUICK_SECONDS, DEFAULT_RECORDS, QUICK_RECORDS, DEFAULT_APPLY_RECORDS,
            QUICK_APPLY_RECORDS, DEFAULT_REPEAT, DEFAULT_WATCHDOG_S);
}

/* Reads path into g_db_config. */
static int read_db_config(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f) {
        fprintf(stderr, "bench_node: --db-config %s: %s\n", path, strerror(errno));
        return -1;
    }
    n = fread(g_db_config, 1, sizeof g_db_config - 1, f);
    g_db_config[n] = '\0';
    if (!feof(f) || ferror(f) || strlen(g_db_config) != n) {
        fprintf(stderr, "bench_node: --db-config %s: unreadable, or longer than %zu bytes, or binary\n", path,
                sizeof g_db_config - 1);
        fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

static int parse_rates(const char *s, struct options *opt)
{
    opt->n_rates = 0;
    while (*s) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || v > 100000000ull || opt->n_rates == MAX_RATES || (*end && *end != ','))
            return -1;
        opt->rates[opt->n_rates++] = v;
        s = *end ? end + 1 : end;
    }
    return opt->n_rates > 0 ? 0 : -1;
}

static int parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        {"rates", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'},
        {"records", required_argument, NULL, 'R'},
        {"apply-records", required_argument, NULL, 'a'},
        {"repeat", required_argument, NULL, 'n'},
        {"watchdog", required_argument, NULL, 'w'},
        {"db-config", required_argument, NULL, 'd'},
        {"quick", no_argument, NULL, 'q'},
        {"opens", required_argument, NULL, 'o'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *end;
    int c;

    memset(opt, 0, sizeof *opt);
    opt->n_rates = 3;
    opt->rates[0] = 50000;
    opt->rates[1] = 200000;
    opt->rates[2] = 0;
    opt->watchdog_s = DEFAULT_WATCHDOG_S;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            if (parse_rates(optarg, opt) != 0) {
                fprintf(stderr, "bench_node: --rates takes up to %d rates from 0 (max) to 1e8\n", MAX_RATES);
                return -1;
            }
            break;
        case 's':
            errno = 0;
            opt->seconds = strtod(optarg, &end);
            if (errno || *end || !(opt->seconds >= 0.1 && opt->seconds <= 600)) {
                fprintf(stderr, "bench_node: --seconds must be 0.1 to 600\n");
                return -1;
            }
            break;
        case 'R':
            errno = 0;
            opt->n_records = strtoull(optarg, &end, 10);
            if (errno || *end || opt->n_records < GROUP_RECORDS || opt->n_records > MAX_RECORDS) {
                fprintf(stderr, "bench_node: --records must be %u to %llu\n", GROUP_RECORDS, MAX_RECORDS);
                return -1;
            }
            break;
        case 'a':
            errno = 0;
            opt->apply_records = strtoull(optarg, &end, 10);
            if (errno || *end || opt->apply_records < 1 || opt->apply_records > MAX_RECORDS) {
                fprintf(stderr, "bench_node: --apply-records must be 1 to %llu\n", MAX_RECORDS);
                return -1;
            }
            break;
        case 'n':
            opt->repeat = (int)strtol(optarg, &end, 10);
            if (*end || opt->repeat < 1 || opt->repeat > MAX_REPEAT) {
                fprintf(stderr, "bench_node: --repeat must be 1 to %d\n", MAX_REPEAT);
                return -1;
            }
            break;
        case 'w':
            opt->watchdog_s = (unsigned)strtoul(optarg, &end, 10);
            if (*end || opt->watchdog_s < 1 || opt->watchdog_s > 3600) {
                fprintf(stderr, "bench_node: --watchdog must be 1 to 3600 seconds\n");
                return -1;
            }
            break;
        case 'd':
            if (read_db_config(optarg) != 0)
                return -1;
            opt->db_config_file = optarg;
            break;
        case 'q':
            opt->quick = 1;
            break;
        case 'o':
            errno = 0;
            opt->n_opens = (uint32_t)strtoul(optarg, &end, 10);
            if (errno || *end || opt->n_opens < 1 || opt->n_opens > MAX_OPENS) {
                fprintf(stderr, "bench_node: --opens must be 1 to %d\n", MAX_OPENS);
                return -1;
            }
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
    if (opt->seconds == 0)
        opt->seconds = opt->quick ? QUICK_SECONDS : DEFAULT_SECONDS;
    if (!opt->n_records)
        opt->n_records = opt->quick ? QUICK_RECORDS : DEFAULT_RECORDS;
    if (!opt->apply_records)
        opt->apply_records = opt->quick ? QUICK_APPLY_RECORDS : DEFAULT_APPLY_RECORDS;
    if (!opt->repeat)
        opt->repeat = opt->quick ? 1 : DEFAULT_REPEAT;
    return 0;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    struct options opt;
    struct machine m;
    struct load_result loads[MAX_RATES];
    struct apply_result apply;
    char dir[128], ring_name[RK_NAME_MAX + 1], base_template[] = "/tmp/rk-bench-node.XXXXXX";
    int rc = 1, n_loads = 0, n_failed = 0, have_apply = 0, source = -1;

    if (parse_options(argc, argv, &opt) != 0)
        return 2;
    read_machine(&m);
    g_ctl = mmap(NULL, sizeof *g_ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_ctl == MAP_FAILED) {
        fprintf(stderr, "bench_node: mmap: %s\n", strerror(errno));
        return 1;
    }
    bench_set_fatal_handlers(on_fatal_signal);
    if (!mkdtemp(base_template)) {
        fprintf(stderr, "bench_node: mkdtemp: %s\n", strerror(errno));
        goto out;
    }
    snprintf(g_base_dir, sizeof g_base_dir, "%s", base_template);
    if (!opt.json)
        print_header(&opt, &m, g_base_dir);
    /* the apply passes read the journal of the max run (or of the last) */
    for (int i = 0; i < opt.n_rates; i++) {
        if (opt.rates[i] == 0 || source < 0 || opt.rates[source] != 0)
            source = i;
    }
    for (int i = 0; i < opt.n_rates; i++) {
        struct load L = {.rate = opt.rates[i],
                         .duration_ns = (uint64_t)(opt.seconds * 1e9),
                         .max_records = opt.n_records,
                         .sample_every = opt.rates[i] ? 1 : MAX_SAMPLE_EVERY,
                         .n_opens = opt.n_opens,
                         .ring_name = ring_name};
        snprintf(ring_name, sizeof ring_name, "bench_node.%d.%d", (int)getpid(), i + 1);
        snprintf(dir, sizeof dir, "%s/load-%d", g_base_dir, i + 1);
        /* a failed configuration is reported; the others are independent */
        if (run_load(dir, ring_name, &L, opt.watchdog_s, &loads[i]) != 0) {
            loads[i].failed = 1;
            n_failed++;
        }
        n_loads++;
        print_load(&opt, &m, &loads[i]);
        if (i != source)
            remove_tree(dir);
    }
    if (opt.n_opens) {
        /* the state-open mode measures opens only */
    } else if (loads[source].failed) {
        fprintf(stderr, "bench_node: apply vs raw BDB not measured: its source run failed\n");
    } else {
        snprintf(dir, sizeof dir, "%s/load-%d", g_base_dir, source + 1);
        if (run_apply(g_base_dir, dir, opt.apply_records, opt.repeat, opt.watchdog_s, &apply) == 0) {
            have_apply = 1;
            print_apply(&opt, &m, &apply, &loads[source]);
        } else {
            n_failed++;
        }
    }
    if (!opt.json)
        print_targets(loads, n_loads, have_apply ? &apply : NULL);
    rc = n_failed ? 1 : 0;
out:
    if (rc)
        fprintf(stderr,
                "bench_node: %d part(s) of the run failed: the figures printed are valid, the failed "
                "parts were not measured\n",
                n_failed ? n_failed : 1);
    if (g_base_dir[0])
        remove_tree(g_base_dir);
    munmap(g_ctl, sizeof *g_ctl);
    return rc;
}
