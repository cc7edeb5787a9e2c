/* bench_checkpoint.c -- checkpoints of a large state: the time to create,
 * verify, load through rk_state_open and load into a data directory, the
 * file size, and the engine's ring throughput and durable-ack latency while
 * a checkpoint is being taken against the same load without one.
 *
 * The state: --keys distinct keys (default 1,000,000) of 16 bytes -- the
 * big-endian splitmix64 of the key's index (a bijection, so keys are
 * distinct and land in B-tree order at random), then the index big-endian
 * -- with --value-size byte values (default 100) laid out like an order
 * (index, version, price, quantity, time, id, ...), all pure functions of
 * (index, version): the checks replay them.
 *
 * Phases, all against one node (forked, node_run(): defaults plus data
 * directory, ring name, ring 16 MiB, cache --cache-mb (default: the
 * node's own), checkpoint every_seconds 0 so that only requests take
 * checkpoints, log_level info into DATA/../node.log, where "checkpoint
 * taken ... ms=" is read):
 *   fill      one producer process (public API only) writes every key once
 *             (version 0), a MARK after every GROUP_RECORDS PUTs, unpaced,
 *             and waits for the last MARK to be durable; the owner waits
 *             until apply has caught up (status).
 *   create    node_request("checkpoint") round trip: the node's checkpoint
 *             thread writes the file from a BDB snapshot, fsyncs, renames,
 *             reads it back and verifies it, then applies retention, trims
 *             the journal and checkpoints Berkeley DB's log before it
 *             answers "ok PATH".  The log's ms= is ckpt_job_write alone
 *             (write + fsync + read back).  One per run: a second request
 *             with nothing new answers at once with the same file.
 *   verify    ckpt_verify(path) in this process, no callback: trailer,
 *             header, every frame and entry, counts, digest (the file is in
 *             the page cache: the node has just written and read it).
 *   load      rk_state_open(path): verifies the file whole and holds its
 *             entries in memory (state.c).  Reading every entry back
 *             (rk_state_scan) is timed apart.
 *   data dir  applier_load_checkpoint into a fresh data directory, as
 *             restore does it: store_open(STORE_CREATE | STORE_BUILDING) ..
 *             applier_open .. applier_load_checkpoint .. applier_close ..
 *             store_built (every page on disk) .. store_close, timed whole:
 *             the step `ringkeep restore` is built on.
 *   restore   at the end, the node stopped: restore_run() (what `ringkeep
 *             restore` runs) of its data directory to the latest point
 *             into a new one, timed from the call to its return (the new
 *             directory durable); its digest must equal the newest
 *             checkpoint's.
 *   windows   the engine's throughput and durable-ack latency, in pairs:
 *             with a checkpoint being taken and without.  State size is the
 *             same in both (the producer only updates existing keys, drawn
 *             by a PRNG).  Every window starts with one group of updates
 *             (so that a checkpoint has something new to take), then waits
 *             until apply has caught up and no checkpoint is running, and
 *             calls sync(): the page cache's writeback of what came before
 *             (a checkpoint's pages, say) is charged to no window.  A checkpoint window: a `checkpoint`
 *             request is sent from a helper thread; once the node holds
 *             its spool file open (checkpoints/.spool-*, unlinked at once:
 *             seen in /proc/PID/fd) -- the checkpoint thread has begun
 *             writing -- the producer starts; the window ends when
 *             the request is answered.  Two loads:
 *               burst   --burst PUTs unpaced: several times the ring (16 MiB
 *                       here), so the producer soon waits for the node
 *                       (RK_FULL_WAIT) and puts/s is the rate the node
 *                       takes records at; the whole burst should lie inside
 *                       the checkpoint, and the share of it that did is
 *                       printed (coverage);
 *               paced   --rate PUTs/s until the request is answered (with a
 *                       checkpoint) or for --paced-seconds (without).
 *             puts/s = PUTs / (first -> last put); durable/s = PUTs /
 *             (first put -> last MARK durable).  Ack latency as in
 *             bench_node: (lsn, time before rk_put) sampled into an array
 *             (every record when paced, every BURST_SAMPLE_EVERY-th in a
 *             burst) and waited for in order by a second thread with its
 *             own handle (upper bounds by ~0.2 us per record made durable
 *             in the same batch).  Rounds alternate the order (with first,
 *             then without first) so that drift hits both alike.  One
 *             burst with a checkpoint goes first and is not counted: the
 *             first burst after the fill ran 2-4x faster than every later
 *             one, with a checkpoint or without.
 *
 * Checks (exit 1 when one fails; never on time): the first checkpoint's
 * digest equals the node's state_digest and it holds --keys entries and the
 * producer's last height; every verify passes with the same header; the
 * state loaded through rk_state_open equals the model, every entry byte for
 * byte (first repetition; all keys present, none extra); the data
 * directory loaded by applier_load_checkpoint has the checkpoint's digest
 * and journal sequence, and read back through rk_state_open (no node on
 * it) equals the model (first repetition); every checkpoint taken in a
 * window holds --keys entries and is a new file; the node stops cleanly
 * (SIGTERM: a last checkpoint) and that last checkpoint, loaded through
 * rk_state_open, equals the final model (every update the producer made)
 * with the producer's last height.  Exit 2 on bad arguments, 3 when the
 * watchdog fires.
 *
 * Processes and threads:
 *
 *   owner (this process): mkdtemp, fork ─► node      node_run: drain, apply,
 *                                                    checkpoint, control threads
 *                               fork ─► producer     main thread: rk_put/rk_mark per
 *                                                    command; waiter thread: rk_wait
 *          commands the producer through a shared page (ctl), asks the
 *          node (status, checkpoint: a helper thread for the latter, as it
 *          blocks until the checkpoint is written), times verify, load and
 *          the data-directory load itself, SIGTERMs the node at the end.
 *
 *   Children die with the owner (PR_SET_PDEATHSIG).  SIGALRM, SIGINT and
 *   SIGTERM in the owner kill the children, unlink the ring and remove the
 *   base directory.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "persist/apply.h"
#include "persist/checkpoint.h"
#include "persist/restore.h"
#include "persist/config.h"
#include "node/client.h"
#include "node/node.h"
#include "shm/ring.h"
#include "ringkeep.h"
#include "persist/store.h"

#define KEY_SIZE 16u
#define KEY_SEED 0x6b657973ull    /* "keys" */
#define UPDATE_SEED 0x75706474ull /* "updt": which key an update hits */
#define GROUP_RECORDS 1000u       /* PUTs per MARK */
#define TABLE_NAME "bench"
#define PRODUCER_NAME "p0"
#define WAITER_NAME "w0"
#define RING_CAPACITY "16M"   /* a burst (~45 MB of frames) is 3x this: the producer waits for the node */
#define DEFAULT_KEYS 1000000ull
#define MIN_KEYS GROUP_RECORDS
#define MAX_KEYS 100000000ull
#define DEFAULT_VALUE_SIZE 100u
#define MIN_VALUE_SIZE 16u /* index and version */
#define MAX_VALUE_SIZE 65536u
#define DEFAULT_REPEAT 2 /* verify, load, data-directory load */
#define MAX_REPEAT 9
#define DEFAULT_ROUNDS 1 /* window pairs per load */
#define MAX_ROUNDS 8
#define DEFAULT_RATE 50000ull
#define DEFAULT_BURST 300000ull
#define DEFAULT_PACED_S 3.0
#define DEFAULT_WATCHDOG_S 600 /* the whole run */
#define FILL_SAMPLE_EVERY 64
#define BURST_SAMPLE_EVERY 16
#define MAX_SAMPLES (1u << 22) /* per window; later samples are counted as dropped */
#define BURST_NS 50000ull      /* paced: records due within this long go out together */
#define FULL_TIMEOUT_MS 30000
#define DURABLE_TIMEOUT_MS 120000
#define NODE_START_MS 30000
#define STATUS_TIMEOUT_MS 2000
#define CHECKPOINT_TIMEOUT_MS 300000
#define CATCH_UP_NS (300 * 1000000000ull)
#define COMMAND_NS (600 * 1000000000ull) /* one producer command at most */
#define SPOOL_WAIT_NS (60 * 1000000000ull)
#define SPOOL_POLL_NS 200000ull
#define POLL_NS 1000000ull

/* ------------------------------------------------------------ the stream */

static inline uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static inline void make_key(uint64_t index, uint8_t key[KEY_SIZE])
{
    put_be64(key, mix(KEY_SEED ^ index));
    put_be64(key + 8, index);
}

/* value_size bytes: 8-byte words index, version, then order-like fields
 * (price, quantity, time, id, account, flags) over and over, cut at
 * value_size. */
static void make_value(uint64_t index, uint32_t version, uint8_t *val, uint32_t value_size)
{
    uint64_t r = mix(index * 0x10000u + version), word;

    for (uint32_t off = 0, w = 0; off < value_size; off += 8, w++) {
        switch (w < 2 ? w : 2 + (w - 2) % 6) {
        case 0:
            word = index;
            break;
        case 1:
            word = version;
            break;
        case 2:
            word = 100000 + r % 5000;
            break;
        case 3:
            word = 1 + (r >> 16) % 1000;
            break;
        case 4:
            word = 1700000000000ull + index + version;
            break;
        case 5:
            word = r;
            break;
        case 6:
            word = index % 1000;
            break;
        default:
            word = (r >> 40) & 0xff;
            break;
        }
        memcpy(val + off, &word, value_size - off < 8 ? value_size - off : 8);
    }
}

/* ------------------------------------------------------------ shared state */

enum { CMD_FILL = 1, CMD_WINDOW, CMD_EXIT };

struct window_result {
    uint64_t n_puts, n_marks;
    uint64_t t_first, t_last, t_durable; /* first put, last put, last MARK durable */
    uint64_t max_lag_ns;                 /* paced: largest delay behind the schedule */
    uint64_t n_samples, n_dropped;
    uint64_t lat_p50, lat_p99, lat_p999, lat_max; /* ns */
};

/* The owner and the producer, MAP_SHARED|MAP_ANONYMOUS.  The owner writes
 * the command's fields, then cmd (release); the producer runs it, writes
 * rc and res, then done = cmd (release).  stop ends a window at its next
 * group boundary. */
struct ctl {
    alignas(64) _Atomic uint32_t ready; /* producer: 1 once attached */
    alignas(64) _Atomic uint64_t cmd;   /* owner: number of the command posted */
    alignas(64) _Atomic uint32_t stop;  /* owner: end the window */
    alignas(64) _Atomic uint64_t done;  /* producer: number of the last command finished */
    int kind;                           /* owner: CMD_* */
    uint64_t rate;                      /* owner: PUTs/s, 0 = unpaced */
    uint64_t max_records;               /* owner: 0 = until stop */
    uint32_t sample_every;              /* owner */
    int rc;                             /* producer: the command's result */
    struct window_result res;           /* producer */
    uint64_t height;                    /* producer: its last MARK, over all commands */
    uint64_t n_puts_total;              /* producer: PUTs over all commands */
};

static struct ctl *g_ctl;
static uint32_t *g_versions; /* shared: the producer's version of every key (written by it only) */
static uint64_t g_keys;
static uint32_t g_value_size;
static uint32_t g_cache_mb;

/* The node's own default (it was 512 here, twice the node's 256 then;
 * the node's is 1024 since issue 13.7): the bench measures what ships. */
static uint32_t node_default_cache_mb(void)
{
    struct node_config c;
    node_config_defaults(&c);
    return c.cache_mb;
}
static const char *g_db_config; /* --db-config: a file copied to the node's DATA/db/DB_CONFIG, or NULL */

/* ------------------------------------------------------------ cleanup */

static volatile sig_atomic_t g_node_pid, g_producer_pid, g_ring_set;
static char g_ring_path[128];
static char g_ring_name[RK_NAME_MAX + 1];
static char g_base_dir[64];
static double g_restore_s = -1; /* phase_restore's time, when it ran */

static void on_fatal_signal(int sig)
{
    static const char msg[] =
        "bench_checkpoint: watchdog or signal: killing children, removing ring and data\n";
    ssize_t unused;

    unused = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)unused;
    bench_kill_and_reap(&g_producer_pid);
    bench_kill_and_reap(&g_node_pid);
    if (g_ring_set)
        unlink(g_ring_path);
    if (g_base_dir[0])
        bench_remove_tree_by_rm(g_base_dir); /* async-signal-safe */
    _exit(sig == SIGALRM ? 3 : 128 + sig);
}

/* ------------------------------------------------------------ children */

struct node_args {
    const char *dir, *ring_name, *log_path;
};

static int node_main(const void *arg)
{
    const struct node_args *na = arg;
    struct node_config c;
    char err[512], cache_mb[16];
    int fd = open(na->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

    if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) {
        fprintf(stderr, "bench_checkpoint: node log %s: %s\n", na->log_path, strerror(errno));
        return 1;
    }
    close(fd);
    snprintf(cache_mb, sizeof cache_mb, "%u", g_cache_mb);
    node_config_defaults(&c);
    if (node_config_set(&c, "node", "data_dir", na->dir, "bench", err, sizeof err) ||
        node_config_set(&c, "ring", "name", na->ring_name, "bench", err, sizeof err) ||
        node_config_set(&c, "ring", "capacity", RING_CAPACITY, "bench", err, sizeof err) ||
        node_config_set(&c, "storage", "cache_mb", cache_mb, "bench", err, sizeof err) ||
        node_config_set(&c, "checkpoint", "every_seconds", "0", "bench", err, sizeof err) ||
        node_config_set(&c, "node", "log_level", "info", "bench", err, sizeof err) ||
        node_config_check(&c, err, sizeof err)) {
        fprintf(stderr, "bench_checkpoint: node config: %s\n", err);
        return 1;
    }
    return node_run(&c);
}

struct producer {
    rk_ring *ring;
    uint16_t table;
    uint64_t n_updates; /* updates over all windows: picks the next key */
    uint8_t *val;
    struct bench_waiter w;
};

/* Runs the posted command: fill (every key once, version 0) or a window
 * (updates of keys drawn by the PRNG), paced or not, a MARK after every
 * GROUP_RECORDS PUTs and at the end; waits until the last MARK is durable. */
static int produce(struct producer *p, struct ctl *ctl, struct window_result *res)
{
    struct bench_waiter *w = &p->w;
    uint8_t key[KEY_SIZE];
    uint64_t seq = 0, lsn = 0, mark_lsn = 0, n_marks = 0, t0, now;
    uint64_t burst = ctl->rate ? ctl->rate * BURST_NS / 1000000000u : 0;
    int rc = 0;

    if (burst < 1)
        burst = 1;
    t0 = now_ns();
    res->t_first = t0;
    for (;;) {
        uint64_t index;
        uint32_t version;
        if (ctl->max_records && seq >= ctl->max_records)
            break;
        /* relaxed: stop orders nothing; it is looked at once per group */
        if (seq % GROUP_RECORDS == 0 && seq > 0 && atomic_load_explicit(&ctl->stop, memory_order_relaxed))
            break;
        if (ctl->rate) {
            uint64_t due = t0 + seq * 1000000000u / ctl->rate;
            now = now_ns();
            if (now < due)
                sleep_until(t0 + (seq + burst - 1) * 1000000000u / ctl->rate);
            else if (now - due > res->max_lag_ns)
                res->max_lag_ns = now - due;
        }
        if (ctl->kind == CMD_FILL) {
            index = seq;
            version = 0;
        } else {
            index = mix(UPDATE_SEED ^ p->n_updates++) % g_keys;
            version = ++g_versions[index];
        }
        make_key(index, key);
        make_value(index, version, p->val, g_value_size);
        if (seq % ctl->sample_every == 0 && w->n_published < w->capacity) {
            uint64_t t_put = now_ns(), n = w->n_published;
            rc = rk_put(p->ring, p->table, key, KEY_SIZE, p->val, g_value_size, &lsn);
            w->samples[n].lsn = lsn;
            w->samples[n].t_put = t_put;
            /* release: the sample is written before the waiter may read it */
            atomic_store_explicit(&w->n_published, n + 1, memory_order_release);
        } else {
            if (seq % ctl->sample_every == 0)
                res->n_dropped++;
            rc = rk_put(p->ring, p->table, key, KEY_SIZE, p->val, g_value_size, &lsn);
        }
        if (rc) {
            fprintf(stderr, "bench_checkpoint: producer: rk_put of record %" PRIu64 ": %s\n", seq,
                    rk_strerror(rc));
            return rc;
        }
        seq++;
        if (seq % GROUP_RECORDS == 0 || (ctl->max_records && seq == ctl->max_records)) {
            rc = rk_mark(p->ring, ++ctl->height, &mark_lsn);
            n_marks++;
            if (rc) {
                fprintf(stderr, "bench_checkpoint: producer: rk_mark(%" PRIu64 "): %s\n", ctl->height,
                        rk_strerror(rc));
                return rc;
            }
        }
    }
    res->t_last = now_ns();
    if (seq % GROUP_RECORDS != 0 && !(ctl->max_records && seq == ctl->max_records)) {
        rc = rk_mark(p->ring, ++ctl->height, &mark_lsn);
        n_marks++;
        if (rc)
            return rc;
    }
    res->n_puts = seq;
    res->n_marks = n_marks;
    ctl->n_puts_total += seq;
    rc = rk_wait(p->ring, mark_lsn, RK_DURABLE, DURABLE_TIMEOUT_MS);
    res->t_durable = now_ns();
    if (rc)
        fprintf(stderr, "bench_checkpoint: producer: the last MARK (LSN %" PRIu64 ") not durable: %s\n",
                mark_lsn, rk_strerror(rc));
    return rc;
}

/* One command with its waiter thread; latency quantiles into res. */
static int run_command(struct producer *p, struct ctl *ctl)
{
    struct window_result res = {0};
    pthread_t thread;
    int rc;

    atomic_store(&p->w.n_published, 0);
    atomic_store(&p->w.done, 0);
    p->w.n_waited = 0;
    p->w.rc = 0;
    rc = pthread_create(&thread, NULL, bench_waiter_main, &p->w);
    if (rc) {
        fprintf(stderr, "bench_checkpoint: producer: pthread_create: %s\n", strerror(rc));
        return rc;
    }
    rc = produce(p, ctl, &res);
    /* release: every sample was published before; the waiter may stop */
    atomic_store_explicit(&p->w.done, 1, memory_order_release);
    pthread_join(thread, NULL);
    if (!rc)
        rc = p->w.rc;
    if (!rc) {
        uint64_t n = p->w.n_waited;
        qsort(p->w.latency, n, sizeof *p->w.latency, cmp_u64);
        res.n_samples = n;
        res.lat_p50 = quantile(p->w.latency, n, 0.50);
        res.lat_p99 = quantile(p->w.latency, n, 0.99);
        res.lat_p999 = quantile(p->w.latency, n, 0.999);
        res.lat_max = n ? p->w.latency[n - 1] : 0;
    }
    ctl->res = res;
    return rc;
}

static int producer_main(const void *arg)
{
    const char *ring_name = arg;
    struct ctl *ctl = g_ctl;
    struct producer p = {0};
    uint64_t last = 0;
    int rc;

    prctl(PR_SET_TIMERSLACK, 1000ul); /* 1 us: pacing sleeps end when asked */
    p.w.prog = "bench_checkpoint";
    p.w.durable_timeout_ms = DURABLE_TIMEOUT_MS;
    p.w.capacity = MAX_SAMPLES;
    p.w.samples = malloc(MAX_SAMPLES * sizeof *p.w.samples);
    p.w.latency = malloc(MAX_SAMPLES * sizeof *p.w.latency);
    p.val = malloc(g_value_size);
    if (!p.w.samples || !p.w.latency || !p.val) {
        fprintf(stderr, "bench_checkpoint: producer: out of memory\n");
        rc = ENOMEM;
        goto out;
    }
    rc = bench_attach("bench_checkpoint", ring_name, PRODUCER_NAME, FULL_TIMEOUT_MS, &p.ring);
    if (!rc)
        rc = bench_attach("bench_checkpoint", ring_name, WAITER_NAME, FULL_TIMEOUT_MS, &p.w.ring);
    if (!rc && (rc = rk_table(p.ring, TABLE_NAME, &p.table)) != 0)
        fprintf(stderr, "bench_checkpoint: producer: rk_table: %s\n", rk_strerror(rc));
    if (rc)
        goto out;
    /* release: attached before we count as ready */
    atomic_store_explicit(&ctl->ready, 1, memory_order_release);
    for (;;) {
        /* acquire: the command's fields, written before cmd */
        uint64_t cmd = atomic_load_explicit(&ctl->cmd, memory_order_acquire);
        if (cmd == last) {
            sleep_ns(100000);
            continue;
        }
        last = cmd;
        if (ctl->kind == CMD_EXIT)
            break;
        ctl->rc = run_command(&p, ctl);
        /* release: rc, res, height and the versions are written before done */
        atomic_store_explicit(&ctl->done, cmd, memory_order_release);
        if (ctl->rc) {
            rc = ctl->rc;
            break;
        }
    }
out:
    rk_ring_detach(p.w.ring);
    rk_ring_detach(p.ring);
    free(p.w.samples);
    free(p.w.latency);
    free(p.val);
    return rc;
}

/* ------------------------------------------------------------ the owner's side */

struct node_status {
    uint64_t records, journal_seq, applied_seq, digest;
    int ckpt_running;
};

static int node_status(const char *dir, struct node_status *st)
{
    char *reply = NULL;
    int rc = node_request(dir, "status", STATUS_TIMEOUT_MS, &reply);

    if (!rc && (bench_json_field(reply, "records", 0, &st->records) ||
                bench_json_field(reply, "journal_seq", 0, &st->journal_seq) ||
                bench_json_field(reply, "applied_seq", 0, &st->applied_seq) ||
                bench_json_field(reply, "state_digest", 1, &st->digest)))
        rc = RK_ECORRUPT;
    if (!rc)
        st->ckpt_running = strstr(reply, "\"checkpoint_running\":true") != NULL;
    free(reply);
    return rc;
}

/* Fails when a child has exited (reaping it). */
static int children_alive(void)
{
    int status;

    if (g_node_pid > 0 && waitpid((pid_t)g_node_pid, &status, WNOHANG) == (pid_t)g_node_pid) {
        g_node_pid = 0;
        fprintf(stderr, "bench_checkpoint: the node exited (status %d); its log is printed at the end\n",
                status);
        return ECHILD;
    }
    if (g_producer_pid > 0 && waitpid((pid_t)g_producer_pid, &status, WNOHANG) == (pid_t)g_producer_pid) {
        g_producer_pid = 0;
        fprintf(stderr, "bench_checkpoint: the producer exited (status %d)\n", status);
        return ECHILD;
    }
    return 0;
}

/* Posts a command to the producer (command_wait waits for it). */
static void command_post(int kind, uint64_t rate, uint64_t max_records, uint32_t sample_every)
{
    struct ctl *ctl = g_ctl;

    ctl->kind = kind;
    ctl->rate = rate;
    ctl->max_records = max_records;
    ctl->sample_every = sample_every;
    atomic_store(&ctl->stop, 0);
    /* release: the fields above before the command number */
    atomic_fetch_add_explicit(&ctl->cmd, 1, memory_order_release);
}

/* Waits until the producer has finished the last command; its rc. */
static int command_wait(void)
{
    struct ctl *ctl = g_ctl;
    uint64_t deadline = now_ns() + COMMAND_NS, cmd = atomic_load(&ctl->cmd);

    /* acquire: pairs with the producer's release of done; res, rc, versions */
    while (atomic_load_explicit(&ctl->done, memory_order_acquire) != cmd) {
        int rc = children_alive();
        if (rc)
            return rc;
        if (now_ns() > deadline) {
            fprintf(stderr, "bench_checkpoint: the producer did not finish its command\n");
            return ETIMEDOUT;
        }
        sleep_ns(POLL_NS);
    }
    return ctl->rc;
}

/* Waits until the journal holds every record written, apply has caught up
 * and no checkpoint is running; *st is that status. */
static int wait_caught_up(const char *dir, struct node_status *st)
{
    uint64_t deadline = now_ns() + CATCH_UP_NS;
    uint64_t want = g_ctl->n_puts_total + g_ctl->height;

    for (;;) {
        int rc = children_alive();
        if (rc)
            return rc;
        rc = node_status(dir, st);
        if (rc) {
            fprintf(stderr, "bench_checkpoint: status: %s\n", rk_strerror(rc));
            return rc;
        }
        if (st->records == want && st->applied_seq == st->journal_seq && !st->ckpt_running)
            return 0;
        if (now_ns() > deadline) {
            fprintf(stderr,
                    "bench_checkpoint: the node did not catch up: %" PRIu64 " of %" PRIu64
                    " records journaled, applied seq %" PRIu64 " of %" PRIu64 "\n",
                    st->records, want, st->applied_seq, st->journal_seq);
            return ETIMEDOUT;
        }
        sleep_ns(20 * POLL_NS);
    }
}

/* The ms= of the last "checkpoint taken" line of the node's log, and how
 * many such lines there are. */
static void log_last_checkpoint(const char *log_path, double *ms, int *count)
{
    char line[2048];
    FILE *f = fopen(log_path, "r");

    *ms = -1;
    *count = 0;
    while (f && fgets(line, sizeof line, f)) {
        const char *p;
        if (!strstr(line, "msg=\"checkpoint taken\""))
            continue;
        (*count)++;
        p = strstr(line, " ms=");
        *ms = p ? strtod(p + 4, NULL) : -1;
    }
    if (f)
        fclose(f);
}

/* A checkpoint request on its own thread: it blocks until the file is
 * written (the node's control thread answers nothing else meanwhile). */
struct request {
    const char *dir;
    pthread_t thread;
    _Atomic int finished; /* release by the thread after rc, reply, t_answer */
    int rc;
    char *reply;
    uint64_t t_sent, t_answer;
};

static void *request_main(void *arg)
{
    struct request *r = arg;

    r->t_sent = now_ns();
    r->rc = node_request(r->dir, "checkpoint", CHECKPOINT_TIMEOUT_MS, &r->reply);
    r->t_answer = now_ns();
    /* release: rc, reply and t_answer before finished */
    atomic_store_explicit(&r->finished, 1, memory_order_release);
    return NULL;
}

/* The path in a "ok PATH" reply, or a message and RK_ECORRUPT. */
static int request_path(const struct request *r, char *path, size_t size)
{
    if (r->rc) {
        fprintf(stderr, "bench_checkpoint: checkpoint request: %s\n", rk_strerror(r->rc));
        return r->rc;
    }
    if (strncmp(r->reply, "ok ", 3) != 0) {
        fprintf(stderr, "bench_checkpoint: checkpoint request answered: %s\n", r->reply);
        return RK_ECORRUPT;
    }
    snprintf(path, size, "%s", r->reply + 3);
    return 0;
}

/* 1 if process pid holds a checkpoint spool file open: the checkpoint
 * writer creates checkpoints/.spool-* when it begins and unlinks it at once
 * (it lives on through the descriptor), so /proc/PID/fd is where it shows. */
static int spool_open(pid_t pid)
{
    char fd_dir[64], link[384], target[PATH_MAX];
    DIR *d;
    struct dirent *e;
    int found = 0;

    snprintf(fd_dir, sizeof fd_dir, "/proc/%d/fd", (int)pid);
    d = opendir(fd_dir);
    while (d && !found && (e = readdir(d)) != NULL) {
        ssize_t n;
        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof link, "%s/%s", fd_dir, e->d_name);
        n = readlink(link, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            found = strstr(target, "/checkpoints/.spool-") != NULL;
        }
    }
    if (d)
        closedir(d);
    return found;
}

/* ------------------------------------------------------------ the model check */

struct scan_check {
    uint64_t n_seen;
    char why[256];
};

static int check_entry(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct scan_check *sc = arg;
    uint8_t want_key[KEY_SIZE], want_val[MAX_VALUE_SIZE];
    uint64_t index;

    if (klen != KEY_SIZE || vlen != g_value_size) {
        snprintf(sc->why, sizeof sc->why, "a key of %u bytes with a value of %u bytes", klen, vlen);
        return 1;
    }
    index = get_be64((const uint8_t *)key + 8);
    if (index >= g_keys) {
        snprintf(sc->why, sizeof sc->why, "key index %" PRIu64 " was never written", index);
        return 1;
    }
    make_key(index, want_key);
    make_value(index, g_versions[index], want_val, g_value_size);
    if (memcmp(key, want_key, KEY_SIZE) != 0 || memcmp(val, want_val, g_value_size) != 0) {
        uint64_t got_version = 0;
        memcpy(&got_version, (const uint8_t *)val + 8, g_value_size - 8 < 8 ? g_value_size - 8 : 8);
        snprintf(sc->why, sizeof sc->why,
                 "key %" PRIu64 ": not the value of its last PUT (version %" PRIu32
                 "; the value says %" PRIu64 ")",
                 index, g_versions[index], got_version);
        return 1;
    }
    sc->n_seen++;
    return 0;
}

/* Reads every entry of s and compares it with the model (g_versions) and
 * the producer's height. */
static int check_state(rk_state *s, const char *what, uint64_t height)
{
    struct scan_check sc = {0};
    uint64_t got_height = 0;
    int rc = rk_state_height(s, PRODUCER_NAME, &got_height);

    if (rc || got_height != height) {
        fprintf(stderr, "bench_checkpoint: %s: producer height %" PRIu64 " (%s), want %" PRIu64 "\n", what,
                got_height, rk_strerror(rc), height);
        return RK_ECORRUPT;
    }
    rc = rk_state_scan(s, TABLE_NAME, NULL, 0, check_entry, &sc);
    if (rc) {
        fprintf(stderr, "bench_checkpoint: %s: %s\n", what, sc.why[0] ? sc.why : rk_strerror(rc));
        return RK_ECORRUPT;
    }
    if (sc.n_seen != g_keys) {
        fprintf(stderr, "bench_checkpoint: %s: %" PRIu64 " keys, want %" PRIu64 "\n", what, sc.n_seen,
                g_keys);
        return RK_ECORRUPT;
    }
    return 0;
}

/* ------------------------------------------------------------ results */

struct options {
    uint64_t keys, rate, burst;
    uint32_t value_size, cache_mb;
    int repeat, rounds, json;
    double paced_s;
    unsigned watchdog_s;
};

struct runs {
    int n;
    double s[MAX_REPEAT]; /* seconds */
};

static double runs_median(const struct runs *r)
{
    double v[MAX_REPEAT];

    memcpy(v, r->s, sizeof v);
    for (int i = 1; i < r->n; i++) /* insertion sort: at most MAX_REPEAT */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return r->n ? (r->n % 2 ? v[r->n / 2] : (v[r->n / 2 - 1] + v[r->n / 2]) / 2) : 0;
}

enum { W_BURST, W_PACED };

struct window {
    int load;       /* W_BURST, W_PACED */
    int warm_up;    /* not counted in the means */
    int checkpoint; /* 1: a checkpoint was being taken */
    struct window_result r;
    double ckpt_s;   /* request sent -> answered */
    double ckpt_ms;  /* the node's log: ckpt_job_write */
    double spool_ms; /* request sent -> spool file seen */
    double coverage; /* share of first put -> last put inside spool seen -> answered */
};

struct result {
    uint64_t fill_puts;
    double fill_put_s, fill_durable_s, fill_caught_s;
    double create_s, create_log_ms;
    uint64_t file_size, n_entries, raw_size, digest;
    char path[PATH_MAX];
    struct runs verify, load, scan, dir_load, dir_total;
    double dir_readback_s;
    struct window windows[2 * 2 * MAX_ROUNDS];
    int n_windows;
    int have_files; /* create, verify, load and the data-directory load were all measured */
    double final_load_s;
};

static double rate_of(const struct window_result *r)
{
    return r->t_last > r->t_first ? (double)r->n_puts / ((double)(r->t_last - r->t_first) / 1e9) : 0;
}

static double durable_rate_of(const struct window_result *r)
{
    return r->t_durable > r->t_first ? (double)r->n_puts / ((double)(r->t_durable - r->t_first) / 1e9) : 0;
}

/* Mean of puts/s, durable/s and ack p99 (us) over the windows of one kind. */
static void window_means(const struct result *res, int load, int checkpoint, double *puts, double *durable,
                         double *p99_us, int *n)
{
    *puts = *durable = *p99_us = 0;
    *n = 0;
    for (int i = 0; i < res->n_windows; i++) {
        const struct window *w = &res->windows[i];
        if (w->load != load || w->checkpoint != checkpoint || w->warm_up)
            continue;
        *puts += rate_of(&w->r);
        *durable += durable_rate_of(&w->r);
        *p99_us += (double)w->r.lat_p99 / 1e3;
        (*n)++;
    }
    if (*n) {
        *puts /= *n;
        *durable /= *n;
        *p99_us /= *n;
    }
}

/* ------------------------------------------------------------ phases */

static int phase_create(const char *dir, const char *log_path, const struct node_status *before,
                        struct result *res)
{
    struct request req = {.dir = dir};
    struct ckpt_info info = {0};
    struct stat st;
    char err[512] = "";
    int n_logged = 0, rc;

    request_main(&req);
    rc = request_path(&req, res->path, sizeof res->path);
    free(req.reply);
    if (rc)
        return rc;
    res->create_s = (double)(req.t_answer - req.t_sent) / 1e9;
    log_last_checkpoint(log_path, &res->create_log_ms, &n_logged);
    if (stat(res->path, &st) != 0) {
        fprintf(stderr, "bench_checkpoint: %s: %s\n", res->path, strerror(errno));
        return errno;
    }
    res->file_size = (uint64_t)st.st_size;
    rc = ckpt_read_info(res->path, &info, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_checkpoint: %s: %s\n", res->path, err);
        return rc;
    }
    res->n_entries = info.n_entries;
    res->raw_size = info.raw_size;
    res->digest = info.digest;
    if (info.digest != before->digest || info.n_entries != g_keys || info.n_producers < 1) {
        fprintf(stderr,
                "bench_checkpoint: checkpoint %s: digest %016" PRIx64 " (node: %016" PRIx64 "), %" PRIu64
                " entries (want %" PRIu64 ")\n",
                res->path, info.digest, before->digest, info.n_entries, g_keys);
        rc = RK_ECORRUPT;
    }
    for (uint32_t i = 0; !rc && i < info.n_producers; i++)
        if (strcmp(info.producers[i].name, PRODUCER_NAME) == 0 && info.producers[i].height != g_ctl->height) {
            fprintf(stderr, "bench_checkpoint: checkpoint %s: height %" PRIu64 ", want %" PRIu64 "\n",
                    res->path, info.producers[i].height, g_ctl->height);
            rc = RK_ECORRUPT;
        }
    ckpt_info_free(&info);
    return rc;
}

static int phase_verify(struct result *res, int repeat)
{
    char err[512] = "";

    for (int k = 0; k < repeat; k++) {
        struct ckpt_info info = {0};
        uint64_t t0 = now_ns();
        int rc = ckpt_verify(res->path, &info, NULL, NULL, err, sizeof err);
        res->verify.s[res->verify.n++] = (double)(now_ns() - t0) / 1e9;
        if (!rc && (info.n_entries != g_keys || info.digest != res->digest)) {
            snprintf(err, sizeof err, "%" PRIu64 " entries, digest %016" PRIx64 ": not what the header said",
                     info.n_entries, info.digest);
            rc = RK_ECORRUPT;
        }
        ckpt_info_free(&info);
        if (rc) {
            fprintf(stderr, "bench_checkpoint: ckpt_verify(%s): %s\n", res->path, err);
            return rc;
        }
    }
    return 0;
}

/* rk_state_open on the file, timed; the first time, every entry is read
 * back (rk_state_scan, timed apart) and compared with the model. */
static int phase_load(struct result *res, int repeat)
{
    for (int k = 0; k < repeat; k++) {
        rk_state *s = NULL;
        uint64_t t0 = now_ns();
        int rc = rk_state_open(res->path, &s);
        res->load.s[res->load.n++] = (double)(now_ns() - t0) / 1e9;
        if (rc) {
            fprintf(stderr, "bench_checkpoint: rk_state_open(%s): %s\n", res->path, rk_strerror(rc));
            return rc;
        }
        if (k == 0) {
            t0 = now_ns();
            rc = check_state(s, "state loaded from the checkpoint", g_ctl->height);
            res->scan.s[res->scan.n++] = (double)(now_ns() - t0) / 1e9;
        }
        rk_state_close(s);
        if (rc)
            return rc;
    }
    return 0;
}

/* applier_load_checkpoint into fresh data directories under base, timed
 * from store_open to store_close; the first one is read back through
 * rk_state_open (no node on it) and compared with the model. */
static int phase_dir_load(const char *base, struct result *res, int repeat)
{
    for (int k = 0; k < repeat; k++) {
        char dir[128], err[512] = "";
        store *s = NULL;
        applier *a = NULL;
        struct ckpt_info info = {0};
        struct apply_meta am = {0};
        uint64_t t0, t1, t2;
        int rc;

        snprintf(dir, sizeof dir, "%s/restore-%d", base, k + 1);
        if (mkdir(dir, 0700) != 0) {
            fprintf(stderr, "bench_checkpoint: mkdir %s: %s\n", dir, strerror(errno));
            return errno;
        }
        t0 = now_ns();
        rc = store_open(dir, STORE_CREATE | STORE_BUILDING, g_cache_mb, &s, err, sizeof err);
        if (!rc)
            rc = applier_open(s, &a, err, sizeof err);
        t1 = now_ns();
        if (!rc)
            rc = applier_load_checkpoint(a, res->path, &info, NULL, NULL, err, sizeof err);
        t2 = now_ns();
        if (!rc)
            am = applier_meta(a);
        applier_close(a);
        if (!rc && (rc = store_built(s)) != 0)
            snprintf(err, sizeof err, "cannot make %s durable: %s", dir, store_strerror(rc));
        store_close(s);
        res->dir_load.s[res->dir_load.n++] = (double)(t2 - t1) / 1e9;
        res->dir_total.s[res->dir_total.n++] = (double)(now_ns() - t0) / 1e9;
        if (!rc &&
            (am.digest != res->digest || am.applied_seq != info.journal_seq || info.n_entries != g_keys)) {
            snprintf(err, sizeof err,
                     "the data directory holds digest %016" PRIx64 " at seq %" PRIu64 ", the file %016" PRIx64
                     " at seq %" PRIu64,
                     am.digest, am.applied_seq, res->digest, info.journal_seq);
            rc = RK_ECORRUPT;
        }
        ckpt_info_free(&info);
        if (rc) {
            fprintf(stderr, "bench_checkpoint: load into %s: %s\n", dir, err[0] ? err : store_strerror(rc));
            remove_tree(dir);
            return rc;
        }
        if (k == 0) {
            rk_state *st = NULL;
            t0 = now_ns();
            rc = rk_state_open(dir, &st);
            if (rc)
                fprintf(stderr, "bench_checkpoint: rk_state_open(%s): %s\n", dir, rk_strerror(rc));
            else
                rc = check_state(st, "the data directory loaded from the checkpoint", g_ctl->height);
            rk_state_close(st);
            res->dir_readback_s = (double)(now_ns() - t0) / 1e9;
        }
        remove_tree(dir);
        if (rc)
            return rc;
    }
    return 0;
}

/* One throughput window.  With a checkpoint: the request goes out on its
 * own thread, the producer starts once the spool file is there, and (paced)
 * stops when the request is answered.  Without: the same load, paced for
 * paced_s. */
static int run_window(const char *dir, const char *log_path, const struct options *opt, int load,
                      int checkpoint, char *prev_path, struct window *w)
{
    char path[PATH_MAX];
    struct node_status st;
    struct request req = {.dir = dir};
    uint64_t rate = load == W_PACED ? opt->rate : 0, max = load == W_BURST ? opt->burst : 0;
    uint32_t every = load == W_PACED ? 1 : BURST_SAMPLE_EVERY;
    uint64_t t_spool = 0;
    int rc, started = 0, n_before = 0, n_after = 0;
    double unused;

    memset(w, 0, sizeof *w);
    w->load = load;
    w->checkpoint = checkpoint;
    /* one group of updates first: a checkpoint request with nothing new
     * since the last checkpoint is answered at once with that one */
    command_post(CMD_WINDOW, 0, GROUP_RECORDS, GROUP_RECORDS);
    rc = command_wait();
    if (!rc)
        rc = wait_caught_up(dir, &st);
    if (rc)
        return rc;
    sync(); /* the writeback of what came before (a checkpoint's, say) is charged to no window */
    if (checkpoint) {
        log_last_checkpoint(log_path, &unused, &n_before);
        rc = pthread_create(&req.thread, NULL, request_main, &req);
        if (rc) {
            fprintf(stderr, "bench_checkpoint: pthread_create: %s\n", strerror(rc));
            return rc;
        }
        started = 1;
        for (uint64_t deadline = now_ns() + SPOOL_WAIT_NS; !t_spool;) {
            /* acquire: pairs with the request thread's release */
            if (atomic_load_explicit(&req.finished, memory_order_acquire)) {
                fprintf(stderr,
                        "bench_checkpoint: the checkpoint was answered before its spool file was seen\n");
                rc = RK_ECORRUPT;
                goto out;
            }
            if (spool_open((pid_t)g_node_pid))
                t_spool = now_ns();
            else if (now_ns() > deadline) {
                fprintf(stderr, "bench_checkpoint: no checkpoint spool file within %llu s\n",
                        (unsigned long long)(SPOOL_WAIT_NS / 1000000000u));
                rc = ETIMEDOUT;
                goto out;
            } else {
                sleep_ns(SPOOL_POLL_NS);
            }
        }
    }
    command_post(CMD_WINDOW, rate, max, every);
    if (checkpoint && load == W_PACED) {
        pthread_join(req.thread, NULL);
        started = 0;
        atomic_store(&g_ctl->stop, 1);
    } else if (!checkpoint && load == W_PACED) {
        sleep_ns((uint64_t)(opt->paced_s * 1e9));
        atomic_store(&g_ctl->stop, 1);
    }
    rc = command_wait();
    if (rc)
        goto out;
    w->r = g_ctl->res;
    if (checkpoint) {
        if (started) {
            pthread_join(req.thread, NULL);
            started = 0;
        }
        rc = request_path(&req, path, sizeof path);
        if (rc)
            goto out;
        log_last_checkpoint(log_path, &w->ckpt_ms, &n_after);
        if (n_after != n_before + 1 || strcmp(path, prev_path) == 0) {
            fprintf(stderr, "bench_checkpoint: the request answered %s: not one new checkpoint\n", path);
            rc = RK_ECORRUPT;
            goto out;
        }
        snprintf(prev_path, PATH_MAX, "%s", path);
        w->ckpt_s = (double)(req.t_answer - req.t_sent) / 1e9;
        w->spool_ms = (double)(t_spool - req.t_sent) / 1e6;
        {
            uint64_t lo = w->r.t_first > t_spool ? w->r.t_first : t_spool;
            uint64_t hi = w->r.t_last < req.t_answer ? w->r.t_last : req.t_answer;
            uint64_t span = w->r.t_last - w->r.t_first;
            w->coverage = span && hi > lo ? (double)(hi - lo) / (double)span : 0;
        }
        {
            struct ckpt_info info = {0};
            char err[512] = "";
            rc = ckpt_read_info(path, &info, err, sizeof err);
            if (!rc && info.n_entries != g_keys) {
                snprintf(err, sizeof err, "%" PRIu64 " entries, want %" PRIu64, info.n_entries, g_keys);
                rc = RK_ECORRUPT;
            }
            ckpt_info_free(&info);
            if (rc)
                fprintf(stderr, "bench_checkpoint: %s: %s\n", path, err);
        }
    }
out:
    if (started)
        pthread_join(req.thread, NULL);
    free(req.reply);
    return rc;
}

/* SIGTERM: the node applies what is journaled, takes a last checkpoint and
 * exits 0.  That checkpoint, loaded through rk_state_open, must equal the
 * final model. */
static int phase_final(const char *dir, struct result *res)
{
    char ckpt_dir[160];
    char **paths = NULL;
    size_t n_paths = 0;
    rk_state *s = NULL;
    int status = 0, rc;
    uint64_t t0;

    kill((pid_t)g_node_pid, SIGTERM);
    if (waitpid((pid_t)g_node_pid, &status, 0) != (pid_t)g_node_pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        g_node_pid = 0;
        fprintf(stderr, "bench_checkpoint: the node did not stop cleanly (status %d)\n", status);
        return ECHILD;
    }
    g_node_pid = 0;
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/checkpoints", dir);
    rc = ckpt_list(ckpt_dir, &paths, &n_paths);
    if (rc || n_paths == 0) {
        fprintf(stderr, "bench_checkpoint: no checkpoint in %s after the stop\n", ckpt_dir);
        ckpt_list_free(paths, n_paths);
        return rc ? rc : RK_ENOTFOUND;
    }
    t0 = now_ns();
    rc = rk_state_open(paths[0], &s);
    res->final_load_s = (double)(now_ns() - t0) / 1e9;
    if (rc)
        fprintf(stderr, "bench_checkpoint: rk_state_open(%s): %s\n", paths[0], rk_strerror(rc));
    else
        rc = check_state(s, "the node's last checkpoint", g_ctl->height);
    rk_state_close(s);
    ckpt_list_free(paths, n_paths);
    return rc;
}

/* ------------------------------------------------------------ output */

static void print_header(const struct options *opt, const char *base)
{
    long nproc;
    char cpu[128], kernel[128], loadavg[64] = "?";
    FILE *f = fopen("/proc/loadavg", "r");

    if (f) {
        if (fgets(loadavg, sizeof loadavg, f))
            loadavg[strcspn(loadavg, "\n")] = '\0';
        fclose(f);
    }
    bench_read_host(&nproc, cpu, sizeof cpu, kernel, sizeof kernel);
    if (opt->json) {
        bench_print_json(json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:I, s:i, s:i, s:i}", "bench",
                                   "checkpoint", "kind", "machine", "nproc", (int)nproc, "cpu", cpu, "kernel",
                                   kernel, "loadavg", loadavg, "keys", (json_int_t)opt->keys, "key_size",
                                   KEY_SIZE, "value_size", (int)opt->value_size, "cache_mb",
                                   (int)g_cache_mb));
        return;
    }
    printf("bench_checkpoint: checkpoints of %" PRIu64 " keys (%u B keys, %u B values)\n", opt->keys,
           KEY_SIZE, opt->value_size);
    printf("machine: %ld CPUs, %s, %s; load average at start %s; data under %s\n", nproc, cpu, kernel,
           loadavg, base);
    if (g_db_config)
        printf("Berkeley DB: the node's environment has DB_CONFIG from %s\n", g_db_config);
    printf("node: forked, defaults (zstd 1, batches of 8192, synced group commit) with a %s ring,\n"
           "      cache %u MiB, checkpoints only on request; one producer process, public API,\n"
           "      a MARK every %u PUTs.  Times: median of %d (each run listed), warm page cache.\n\n",
           RING_CAPACITY, g_cache_mb, GROUP_RECORDS, opt->repeat);
}

static void print_runs(const char *label, const struct runs *r)
{
    printf("  %-58s %8.3f s  runs:", label, runs_median(r));
    for (int i = 0; i < r->n; i++)
        printf(" %.3f", r->s[i]);
    printf("\n");
}

/* Adds "<key>_ms" (the median) and "<key>_ms_runs" to obj (NULL when
 * obj is NULL or out of memory). */
static json_t *json_runs(json_t *obj, const char *key, const struct runs *r)
{
    double ms[MAX_REPEAT];
    char name[96];

    for (int i = 0; i < r->n; i++)
        ms[i] = r->s[i] * 1e3;
    snprintf(name, sizeof name, "%s_ms", key);
    if (obj && json_object_set_new(obj, name, bench_real(runs_median(r) * 1e3, 1)) == 0) {
        snprintf(name, sizeof name, "%s_ms_runs", key);
        if (json_object_set_new(obj, name, bench_ints(ms, r->n)) == 0)
            return obj;
    }
    json_decref(obj);
    return NULL;
}

static void print_static(const struct options *opt, const struct result *res)
{
    if (opt->json) {
        json_t *obj =
            json_pack("{s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I}", "bench", "checkpoint",
                      "kind", "file", "keys", (json_int_t)opt->keys, "fill_puts_per_s",
                      bench_int((double)res->fill_puts / res->fill_put_s), "fill_durable_per_s",
                      bench_int((double)res->fill_puts / res->fill_durable_s), "fill_applied_s",
                      bench_real(res->fill_caught_s, 2), "create_ms", bench_real(res->create_s * 1e3, 1),
                      "create_node_write_ms", bench_real(res->create_log_ms, 1), "file_bytes",
                      (json_int_t)res->file_size, "raw_bytes", (json_int_t)res->raw_size, "entries",
                      (json_int_t)res->n_entries);
        obj = json_runs(obj, "verify", &res->verify);
        obj = json_runs(obj, "load_rk_state_open", &res->load);
        obj = json_runs(obj, "scan_all", &res->scan);
        obj = json_runs(obj, "data_dir_load", &res->dir_load);
        obj = json_runs(obj, "data_dir_total", &res->dir_total);
        if (obj &&
            json_object_set_new(obj, "data_dir_readback_ms", bench_real(res->dir_readback_s * 1e3, 1))) {
            json_decref(obj);
            obj = NULL;
        }
        bench_print_json(obj);
        fflush(stdout);
        return;
    }
    printf("fill: %" PRIu64
           " PUTs at %.0fk/s (durable %.0fk/s); apply caught up %.1f s after the first put\n\n",
           res->fill_puts, (double)res->fill_puts / res->fill_put_s / 1e3,
           (double)res->fill_puts / res->fill_durable_s / 1e3, res->fill_caught_s);
    printf("checkpoint file: %" PRIu64
           " entries, %.1f MiB on disk (%.1f MiB of msgpack before zstd, ratio %.2f)\n",
           res->n_entries, (double)res->file_size / 1048576.0, (double)res->raw_size / 1048576.0,
           res->file_size ? (double)res->raw_size / (double)res->file_size : 0);
    printf("  %-58s %8.3f s  (one run)\n", "create: checkpoint request round trip", res->create_s);
    printf("  %-58s %8.3f s\n", "  of which the node's write (log ms=: write, fsync, read back)",
           res->create_log_ms / 1e3);
    print_runs("verify: ckpt_verify, whole file", &res->verify);
    print_runs("load: rk_state_open(file)", &res->load);
    print_runs("  then every entry read back (rk_state_scan + compare)", &res->scan);
    print_runs("load into a data directory, store_open .. store_close", &res->dir_total);
    print_runs("  of which applier_load_checkpoint", &res->dir_load);
    printf("  (applier_load_checkpoint; the restore command adds the journal replay)\n");
    printf("  %-58s %8.3f s  (check, once)\n", "  that data directory read back through rk_state_open",
           res->dir_readback_s);
    printf("\n");
    fflush(stdout);
}

static const char *load_name(int load)
{
    return load == W_BURST ? "burst" : "paced";
}

static void print_window_header(const struct options *opt)
{
    if (opt->json)
        return;
    printf("throughput while a checkpoint is taken (ckpt) and without (base); burst: %" PRIu64
           " PUTs unpaced;\n"
           "paced: %.0fk PUTs/s, base for %.1f s, ckpt until the request is answered.  ckpt s: request\n"
           "round trip; node ms: the node's write (log ms=); cover: share of first -> last put during\n"
           "which the checkpoint was running (spool open -> answered).\n",
           opt->burst, (double)opt->rate / 1e3, opt->paced_s);
    printf("%5s %4s %8s %9s %9s %8s %8s %8s %8s %8s %8s %8s %6s\n", "load", "", "PUTs", "puts/s", "durable/s",
           "ack p50", "p99", "p99.9", "max", "samples", "ckpt s", "node ms", "cover");
    fflush(stdout);
}

static void print_window(const struct options *opt, const struct window *w)
{
    if (opt->json) {
        bench_print_json(json_pack(
            "{s:s, s:s, s:s, s:b, s:b, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:o, s:o, s:o, s:o}",
            "bench", "checkpoint", "kind", "window", "load", load_name(w->load), "checkpoint", w->checkpoint,
            "warm_up", w->warm_up, "offered_per_s", (json_int_t)(w->load == W_PACED ? opt->rate : 0), "puts",
            (json_int_t)w->r.n_puts, "puts_per_s", bench_int(rate_of(&w->r)), "durable_per_s",
            bench_int(durable_rate_of(&w->r)), "ack_p50_us", bench_real((double)w->r.lat_p50 / 1e3, 1),
            "ack_p99_us", bench_real((double)w->r.lat_p99 / 1e3, 1), "ack_p999_us",
            bench_real((double)w->r.lat_p999 / 1e3, 1), "ack_max_us",
            bench_real((double)w->r.lat_max / 1e3, 1), "samples", (json_int_t)w->r.n_samples,
            "samples_dropped", (json_int_t)w->r.n_dropped, "checkpoint_s", bench_real(w->ckpt_s, 3),
            "checkpoint_node_ms", bench_real(w->ckpt_ms, 1), "spool_seen_ms", bench_real(w->spool_ms, 1),
            "coverage", bench_real(w->coverage, 3)));
        fflush(stdout);
        return;
    }
    printf("%5s %4s %8" PRIu64 " %8.0fk %8.0fk %6.2fms %6.2fms %6.2fms %6.2fms %8" PRIu64, load_name(w->load),
           w->warm_up      ? "warm"
           : w->checkpoint ? "ckpt"
                           : "base",
           w->r.n_puts, rate_of(&w->r) / 1e3, durable_rate_of(&w->r) / 1e3, (double)w->r.lat_p50 / 1e6,
           (double)w->r.lat_p99 / 1e6, (double)w->r.lat_p999 / 1e6, (double)w->r.lat_max / 1e6,
           w->r.n_samples);
    if (w->checkpoint)
        printf(" %8.2f %8.0f %5.0f%%\n", w->ckpt_s, w->ckpt_ms, w->coverage * 100);
    else
        printf("\n");
    if (w->r.n_dropped)
        printf("%10s (%" PRIu64 " latency samples not taken: the sample array was full)\n", "",
               w->r.n_dropped);
    fflush(stdout);
}

static void print_window_summary(const struct options *opt, const struct result *res)
{
    if (opt->json)
        return;
    for (int load = W_BURST; load <= W_PACED; load++) {
        double pb, db, lb, pc, dc, lc;
        int nb, nc;
        window_means(res, load, 0, &pb, &db, &lb, &nb);
        window_means(res, load, 1, &pc, &dc, &lc, &nc);
        if (!nb || !nc)
            continue;
        printf(
            "%s, mean of %d: puts/s ckpt/base %.3f (%.0fk / %.0fk), durable/s %.3f, ack p99 %.2f / %.2f ms\n",
            load_name(load), nc, pc / pb, pc / 1e3, pb / 1e3, dc / db, lc / 1e3, lb / 1e3);
    }
    fflush(stdout);
}

static void print_targets(const struct options *opt, const struct result *res, int have_windows)
{
    double pb, db, lb, pc, dc, lc;
    int nb, nc;

    if (opt->json || !res->have_files)
        return;
    printf("\ntargets (information only; this run's figures):\n");
    printf("  create  %.3f s <= 2 s: %s (request round trip; the node's write alone %.3f s: %s)\n",
           res->create_s, met(res->create_s <= 2.0), res->create_log_ms / 1e3,
           met(res->create_log_ms <= 2000));
    printf("  verify  %.3f s <= 0.5 s: %s\n", runs_median(&res->verify),
           met(runs_median(&res->verify) <= 0.5));
    printf("  load    %.3f s <= 1 s: %s (rk_state_open of the file)\n", runs_median(&res->load),
           met(runs_median(&res->load) <= 1.0));
    if (g_restore_s >= 0)
        printf("  restore %.3f s <= 3 s: %s (ringkeep restore to the latest point, restore_run; the load\n"
               "          alone into a data directory, store_open .. store_close: %.3f s)\n",
               g_restore_s, met(g_restore_s <= 3.0), runs_median(&res->dir_total));
    else
        printf("  restore: not measured (the run stopped before it); the load alone into a data\n"
               "          directory, store_open .. store_close: %.3f s\n",
               runs_median(&res->dir_total));
    if (!have_windows)
        return;
    for (int load = W_BURST; load <= W_PACED; load++) {
        window_means(res, load, 0, &pb, &db, &lb, &nb);
        window_means(res, load, 1, &pc, &dc, &lc, &nc);
        if (!nb || !nc)
            continue;
        printf(
            "  throughput during a checkpoint, %s: puts/s %.3f of without >= 0.95: %s; durable/s %.3f: %s\n",
            load_name(load), pc / pb, met(pc >= 0.95 * pb), dc / db, met(dc >= 0.95 * db));
        printf("          (durable-ack p99 %.2f ms during, %.2f ms without; no target)\n", lc / 1e3,
               lb / 1e3);
    }
}

/* ------------------------------------------------------------ arguments */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: bench_checkpoint [--keys N] [--value-size B] [--repeat N] [--rounds N] [--rate R]\n"
        "                        [--burst N] [--paced-seconds S] [--cache-mb M] [--db-config FILE]\n"
        "                        [--watchdog S] [--json]\n"
        "  --keys N         distinct keys in the state (default %llu)\n"
        "  --value-size B   bytes per value, %u to %u (default %u)\n"
        "  --repeat N       runs of verify, load and the data-directory load (default %d)\n"
        "  --rounds N       pairs of windows (with and without a checkpoint) per load; 0: none (default %d)\n"
        "  --rate R         paced load, PUTs/s (default %llu)\n"
        "  --burst N        unpaced load, PUTs per window (default %llu)\n"
        "  --paced-seconds S  paced window without a checkpoint (default %.0f)\n"
        "  --cache-mb M     Berkeley DB cache of the node, the data-directory load and the restore\n"
        "                   (default: the node's, [storage] cache_mb %u)\n"
        "  --db-config FILE copied as DB_CONFIG into the node's Berkeley DB environment (DATA/db)\n"
        "  --watchdog S     seconds the whole run may take before everything is killed (default %d)\n"
        "  --json           one JSON object per part instead of the tables\n",
        DEFAULT_KEYS, MIN_VALUE_SIZE, MAX_VALUE_SIZE, DEFAULT_VALUE_SIZE, DEFAULT_REPEAT, DEFAULT_ROUNDS,
        DEFAULT_RATE, DEFAULT_BURST, DEFAULT_PACED_S, node_default_cache_mb(), DEFAULT_WATCHDOG_S);
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;

    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno || end == s || *end || *out < lo || *out > hi ? -1 : 0;
}

static int parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        {"keys", required_argument, NULL, 'k'},
        {"value-size", required_argument, NULL, 'v'},
        {"repeat", required_argument, NULL, 'n'},
        {"rounds", required_argument, NULL, 'r'},
        {"rate", required_argument, NULL, 'R'},
        {"burst", required_argument, NULL, 'b'},
        {"paced-seconds", required_argument, NULL, 's'},
        {"watchdog", required_argument, NULL, 'w'},
        {"cache-mb", required_argument, NULL, 'c'},
        {"db-config", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    char *end;
    int c;

    memset(opt, 0, sizeof *opt);
    opt->keys = DEFAULT_KEYS;
    opt->value_size = DEFAULT_VALUE_SIZE;
    opt->repeat = DEFAULT_REPEAT;
    opt->rounds = DEFAULT_ROUNDS;
    opt->rate = DEFAULT_RATE;
    opt->burst = DEFAULT_BURST;
    opt->paced_s = DEFAULT_PACED_S;
    opt->watchdog_s = DEFAULT_WATCHDOG_S;
    opt->cache_mb = node_default_cache_mb();
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            if (parse_u64(optarg, MIN_KEYS, MAX_KEYS, &opt->keys)) {
                fprintf(stderr, "bench_checkpoint: --keys must be %u to %llu\n", MIN_KEYS, MAX_KEYS);
                return -1;
            }
            break;
        case 'v':
            if (parse_u64(optarg, MIN_VALUE_SIZE, MAX_VALUE_SIZE, &v)) {
                fprintf(stderr, "bench_checkpoint: --value-size must be %u to %u\n", MIN_VALUE_SIZE,
                        MAX_VALUE_SIZE);
                return -1;
            }
            opt->value_size = (uint32_t)v;
            break;
        case 'n':
            if (parse_u64(optarg, 1, MAX_REPEAT, &v)) {
                fprintf(stderr, "bench_checkpoint: --repeat must be 1 to %d\n", MAX_REPEAT);
                return -1;
            }
            opt->repeat = (int)v;
            break;
        case 'r':
            if (parse_u64(optarg, 0, MAX_ROUNDS, &v)) {
                fprintf(stderr, "bench_checkpoint: --rounds must be 0 to %d\n", MAX_ROUNDS);
                return -1;
            }
            opt->rounds = (int)v;
            break;
        case 'R':
            if (parse_u64(optarg, 1000, 10000000, &opt->rate)) {
                fprintf(stderr, "bench_checkpoint: --rate must be 1000 to 10000000\n");
                return -1;
            }
            break;
        case 'b':
            if (parse_u64(optarg, GROUP_RECORDS, 100000000, &opt->burst)) {
                fprintf(stderr, "bench_checkpoint: --burst must be %u to 100000000\n", GROUP_RECORDS);
                return -1;
            }
            break;
        case 's':
            errno = 0;
            opt->paced_s = strtod(optarg, &end);
            if (errno || *end || !(opt->paced_s >= 0.1 && opt->paced_s <= 60)) {
                fprintf(stderr, "bench_checkpoint: --paced-seconds must be 0.1 to 60\n");
                return -1;
            }
            break;
        case 'w':
            if (parse_u64(optarg, 1, 7200, &v)) {
                fprintf(stderr, "bench_checkpoint: --watchdog must be 1 to 7200 seconds\n");
                return -1;
            }
            opt->watchdog_s = (unsigned)v;
            break;
        case 'c':
            if (parse_u64(optarg, 16, 65536, &v)) {
                fprintf(stderr, "bench_checkpoint: --cache-mb must be 16 to 65536\n");
                return -1;
            }
            opt->cache_mb = (uint32_t)v;
            break;
        case 'd':
            g_db_config = optarg;
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
    return 0;
}

/* ------------------------------------------------------------ main */

/* Copies --db-config to dir/db/DB_CONFIG (the store's environment reads
 * it when it opens). */
static int copy_db_config(const char *dir)
{
    char db[160], path[192], buf[4096];
    FILE *in = fopen(g_db_config, "r"), *out = NULL;
    size_t n;
    int rc = 0;

    snprintf(db, sizeof db, "%s/db", dir);
    snprintf(path, sizeof path, "%s/DB_CONFIG", db);
    if (!in || mkdir(db, 0700) != 0 || !(out = fopen(path, "w")))
        rc = errno ? errno : EIO;
    while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            rc = errno ? errno : EIO;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0 && !rc)
        rc = errno;
    if (rc)
        fprintf(stderr, "bench_checkpoint: --db-config %s -> %s: %s\n", g_db_config, path, strerror(rc));
    return rc;
}

/* Prints the node's log (the last lines) when something failed. */
static void print_log_tail(const char *log_path)
{
    char line[2048];
    FILE *f = fopen(log_path, "r");
    long n = 0, skip;

    while (f && fgets(line, sizeof line, f))
        n++;
    if (!f)
        return;
    rewind(f);
    skip = n > 20 ? n - 20 : 0;
    fprintf(stderr, "bench_checkpoint: the node's log (last %ld lines):\n", n - skip);
    for (long i = 0; fgets(line, sizeof line, f); i++)
        if (i >= skip)
            fprintf(stderr, "  %s", line);
    fclose(f);
}

/* `ringkeep restore` of the stopped node's data directory to its latest
 * point (its newest checkpoint, taken at the clean stop, plus whatever
 * journal follows it), timed as restore_run() from the first call to the
 * return, the restored directory durable; checked: its digest equals the
 * newest checkpoint's. */
static double tv_s(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static int phase_restore(const char *dir, const struct options *opt)
{
    char to[256], ckpt_dir[256], err[1024] = "", **paths = NULL;
    struct restore_opts ro = {.src_dir = dir, .to_dir = to, .target = RESTORE_LATEST, .cache_mb = g_cache_mb};
    struct restore_result rr;
    struct ckpt_info info = {0};
    size_t n_paths = 0;
    double t0, secs, cpu;
    struct rusage ru0, ru1;
    int rc;

    snprintf(to, sizeof to, "%s/restored", g_base_dir);
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/checkpoints", dir);
    getrusage(RUSAGE_SELF, &ru0); /* restore_run runs in this thread: its CPU, less noisy than wall time */
    t0 = (double)now_ns() / 1e9;
    rc = restore_run(&ro, &rr, err, sizeof err);
    secs = (double)now_ns() / 1e9 - t0;
    getrusage(RUSAGE_SELF, &ru1);
    cpu = tv_s(&ru1.ru_utime) - tv_s(&ru0.ru_utime) + tv_s(&ru1.ru_stime) - tv_s(&ru0.ru_stime);
    g_restore_s = secs;
    if (rc) {
        fprintf(stderr, "bench_checkpoint: restore: %s\n", err);
        return rc;
    }
    if (ckpt_list(ckpt_dir, &paths, &n_paths) != 0 || n_paths == 0 ||
        ckpt_read_info(paths[0], &info, err, sizeof err) != 0 || info.digest != rr.applied.digest) {
        fprintf(stderr, "bench_checkpoint: the restored digest %016" PRIx64 " is not the checkpoint's %016" PRIx64
                        "\n", rr.applied.digest, info.digest);
        rc = RK_ECORRUPT;
    }
    ckpt_list_free(paths, n_paths);
    ckpt_info_free(&info);
    if (!rc) {
        if (opt->json)
            bench_print_json(json_pack("{s:s, s:s, s:o, s:o, s:I, s:I, s:i}", "bench", "checkpoint", "kind",
                                       "restore", "s", bench_real(secs, 3), "cpu_s", bench_real(cpu, 3),
                                       "loaded", (json_int_t)rr.n_loaded,
                                       "replayed", (json_int_t)rr.n_replayed, "target_s", 3));
        else
            printf("\nrestore: `ringkeep restore` (restore_run) of the stopped node to its latest point: %.3f s\n"
                   "         (CPU %.3f s; %" PRIu64 " entries loaded, %" PRIu64 " journal entries replayed; digest "
                   "equals the checkpoint's); target 3 s: %s\n",
                   secs, cpu, rr.n_loaded, rr.n_replayed, secs <= 3.0 ? "met" : "not met");
    }
    restore_result_free(&rr);
    return rc;
}

static int run(const struct options *opt, struct result *res, int *have_windows)
{
    char dir[128], log_path[128], ring_name[RK_NAME_MAX + 1], prev_path[PATH_MAX] = "";
    struct node_args na = {.dir = dir, .ring_name = ring_name, .log_path = log_path};
    struct node_status st;
    uint64_t deadline, t_fill;
    pid_t pid;
    int rc;

    snprintf(dir, sizeof dir, "%s/node", g_base_dir);
    snprintf(log_path, sizeof log_path, "%s/node.log", g_base_dir);
    snprintf(ring_name, sizeof ring_name, "bench_ckpt.%d", (int)getpid());
    snprintf(g_ring_name, sizeof g_ring_name, "%s", ring_name);
    snprintf(g_ring_path, sizeof g_ring_path, "/dev/shm/" RING_SHM_PREFIX "%s", ring_name);
    g_ring_set = 1;
    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "bench_checkpoint: mkdir %s: %s\n", dir, strerror(errno));
        return errno;
    }
    if (g_db_config && (rc = copy_db_config(dir)) != 0)
        return rc;
    pid = bench_spawn(node_main, &na);
    if (pid < 0)
        return errno;
    g_node_pid = pid;
    for (deadline = now_ns() + (uint64_t)NODE_START_MS * 1000000u; node_status(dir, &st) != 0;) {
        if ((rc = children_alive()) != 0)
            goto fail;
        if (now_ns() > deadline) {
            fprintf(stderr, "bench_checkpoint: the node did not answer within %d ms\n", NODE_START_MS);
            rc = ETIMEDOUT;
            goto fail;
        }
        sleep_ns(10 * POLL_NS);
    }
    pid = bench_spawn(producer_main, ring_name);
    if (pid < 0)
        return errno;
    g_producer_pid = pid;
    /* acquire: pairs with the producer's release of ready */
    for (deadline = now_ns() + 30 * 1000000000ull;
         !atomic_load_explicit(&g_ctl->ready, memory_order_acquire);) {
        if ((rc = children_alive()) != 0)
            goto fail;
        if (now_ns() > deadline) {
            fprintf(stderr, "bench_checkpoint: the producer was not ready within 30 s\n");
            rc = ETIMEDOUT;
            goto fail;
        }
        sleep_ns(POLL_NS);
    }

    if (!opt->json)
        fprintf(stderr, "bench_checkpoint: filling %" PRIu64 " keys...\n", g_keys);
    command_post(CMD_FILL, 0, g_keys, FILL_SAMPLE_EVERY);
    rc = command_wait();
    if (rc)
        goto fail;
    res->fill_puts = g_ctl->res.n_puts;
    res->fill_put_s = (double)(g_ctl->res.t_last - g_ctl->res.t_first) / 1e9;
    res->fill_durable_s = (double)(g_ctl->res.t_durable - g_ctl->res.t_first) / 1e9;
    t_fill = g_ctl->res.t_first;
    rc = wait_caught_up(dir, &st);
    if (rc)
        goto fail;
    res->fill_caught_s = (double)(now_ns() - t_fill) / 1e9;

    rc = phase_create(dir, log_path, &st, res);
    if (!rc)
        rc = phase_verify(res, opt->repeat);
    if (!rc)
        rc = phase_load(res, opt->repeat);
    if (!rc)
        rc = phase_dir_load(g_base_dir, res, opt->repeat);
    if (rc)
        goto fail;
    snprintf(prev_path, sizeof prev_path, "%s", res->path);
    res->have_files = 1;
    print_static(opt, res);

    if (opt->rounds) {
        /* the first burst after the fill ran 2-4x faster than every later
         * one, with or without a checkpoint: a burst with a checkpoint
         * first brings the node to where it stays, and is not counted */
        print_window_header(opt);
        rc = run_window(dir, log_path, opt, W_BURST, 1, prev_path, &res->windows[res->n_windows]);
        if (rc)
            goto fail;
        res->windows[res->n_windows].warm_up = 1;
        print_window(opt, &res->windows[res->n_windows++]);
    }
    for (int round = 0; round < opt->rounds; round++) {
        for (int load = W_BURST; load <= W_PACED; load++) {
            for (int k = 0; k < 2; k++) {
                int checkpoint = (round % 2 == 0) ? k == 0 : k == 1; /* alternate which goes first */
                rc = run_window(dir, log_path, opt, load, checkpoint, prev_path,
                                &res->windows[res->n_windows]);
                if (rc)
                    goto fail;
                print_window(opt, &res->windows[res->n_windows++]);
            }
        }
    }
    *have_windows = res->n_windows > 0;
    print_window_summary(opt, res);

    command_post(CMD_EXIT, 0, 0, 1);
    if (waitpid((pid_t)g_producer_pid, NULL, 0) == (pid_t)g_producer_pid)
        g_producer_pid = 0;
    rc = phase_final(dir, res);
    if (rc)
        goto fail;
    rc = phase_restore(dir, opt);
    if (rc)
        goto fail;
    if (opt->json)
        bench_print_json(json_pack("{s:s, s:s, s:I, s:o, s:b}", "bench", "checkpoint", "kind", "final",
                                   "updates", (json_int_t)(g_ctl->n_puts_total - g_keys),
                                   "last_checkpoint_load_ms", bench_real(res->final_load_s * 1e3, 1),
                                   "equals_model", 1));
    else
        printf("\nend: the node stopped cleanly; its last checkpoint (%" PRIu64
               " updates after the fill) loaded\n"
               "     through rk_state_open in %.3f s equals the model, every entry\n",
               g_ctl->n_puts_total - g_keys, res->final_load_s);
    return 0;
fail:
    print_log_tail(log_path);
    return rc ? rc : -1;
}

int main(int argc, char **argv)
{
    struct options opt;
    struct result *res = NULL;
    char base_template[] = "/tmp/rk-bench-ckpt.XXXXXX";
    int rc = 1, have_windows = 0;

    if (parse_options(argc, argv, &opt) != 0)
        return 2;
    g_keys = opt.keys;
    g_value_size = opt.value_size;
    g_cache_mb = opt.cache_mb;
    g_ctl = mmap(NULL, sizeof *g_ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    g_versions =
        mmap(NULL, g_keys * sizeof *g_versions, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    res = calloc(1, sizeof *res);
    if (g_ctl == MAP_FAILED || g_versions == MAP_FAILED || !res) {
        fprintf(stderr, "bench_checkpoint: out of memory\n");
        return 1;
    }
    bench_set_fatal_handlers(on_fatal_signal);
    alarm(opt.watchdog_s);
    if (!mkdtemp(base_template)) {
        fprintf(stderr, "bench_checkpoint: mkdtemp: %s\n", strerror(errno));
        goto out;
    }
    snprintf(g_base_dir, sizeof g_base_dir, "%s", base_template);
    print_header(&opt, g_base_dir);
    rc = run(&opt, res, &have_windows) == 0 ? 0 : 1;
    print_targets(&opt, res, have_windows);
out:
    bench_kill_and_reap(&g_producer_pid);
    bench_kill_and_reap(&g_node_pid);
    if (g_ring_set)
        ring_unlink(g_ring_name); /* the node leaves its ring for engines when it stops */
    g_ring_set = 0;
    if (g_base_dir[0])
        remove_tree(g_base_dir);
    alarm(0);
    if (rc)
        fprintf(stderr,
                "bench_checkpoint: a check failed or a process died: the figures printed before it are "
                "valid, the rest was not measured\n");
    free(res);
    return rc;
}
