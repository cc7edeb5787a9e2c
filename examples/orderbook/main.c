/* main.c -- orderbook: an example engine on ringkeep.  The order book itself
 * is book.c, which knows nothing of ringkeep; this file is where ringkeep
 * comes in, and it uses nothing but <ringkeep.h>:
 *
 *   start     rk_state_open(data dir)          the node's state, a private view
 *             rk_state_height(producer) = h    the last block the node applied
 *             book_restore(h, ...)             books and positions rebuilt with
 *                                              rk_state_scan over the tables
 *             rk_state_close()
 *   attach    rk_ring_attach(ring, producer)   voids our group a crash left open
 *             rk_table() for each table
 *   block b   gen_block(seed, b)               the block's orders (h+1, h+2 ...)
 *             book_apply_block()               each change -> rk_put / rk_del
 *             rk_mark(b)                       the block is one atomic group
 *             (--replicated: rk_wait(MARK, RK_REPLICATED), --durable:
 *             rk_wait(MARK, RK_DURABLE), before the next
 *             block, and the block's height noted in the --acked file)
 *   exit      rk_wait(last MARK, RK_DURABLE)   in the node's journal, fsynced
 *             rk_ring_detach()
 *
 * Why a restart ends where an uninterrupted run ends: a block's orders
 * depend on (seed, block) alone; the node applies a block's records all or
 * none; and every record holds an absolute value.  If the view is behind
 * the ring (blocks the old process wrote, not yet applied when the view was
 * taken), those blocks are applied after it and then written again by this
 * process with the same bytes, which leaves the state as it was.
 *
 * --offline runs the same engine without a ring or node (no records);
 * --self-test checks the engine and its restore path against an in-memory
 * stand-in for the node (selftest.c).
 *
 * Threads: one; the rk_ring handle and the engine belong to it.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, O_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ringkeep.h>

#include "book.h"
#include "gen.h"
#include "selftest.h"

#define DEFAULT_PRODUCER "orderbook"
#define FULL_TIMEOUT_MS 10000    /* longest wait for room in the ring */
#define DURABLE_TIMEOUT_MS 60000 /* longest wait for the last block to be durable */
#define REPLICATED_TIMEOUT_MS 60000 /* --replicated: longest wait for a block's MARK */
#define KILL_AT_RECORD 10        /* --kill-after-block dies at this record of the block */

struct options {
    const char *ring;
    const char *data_dir;
    const char *producer;
    uint64_t seed;
    uint64_t n_blocks; /* run up to this block, counting restored ones */
    uint32_t orders_per_block;
    uint64_t kill_block; /* test hook: die in the middle of this block's group */
    uint64_t stop_block; /* test hook: SIGSTOP itself once this block is acknowledged */
    const char *acked;   /* --acked: the file that notes acknowledged blocks */
    int offline, digest, dump, self_test, replicated, durable;
};

static const char usage[] =
    "usage: orderbook --ring NAME --data-dir DIR [--producer NAME] [options]\n"
    "       orderbook --offline [options]\n"
    "       orderbook --self-test\n"
    "options:\n"
    "  --seed S               the order flow (default 1)\n"
    "  --blocks N             run up to block N, restored blocks included (default 100)\n"
    "  --orders-per-block K   orders in each block (default 100)\n"
    "  --digest               print a digest line of the books and positions\n"
    "  --dump                 print the books and positions\n"
    "  --kill-after-block B   test hook: SIGKILL itself in the middle of block B's group\n"
    "  --stop-after-block B   test hook: SIGSTOP itself once block B is acknowledged (a host\n"
    "                         frozen at a known point, for a script to kill)\n"
    "                         (restart without it: the restart goes on from the node's state)\n"
    "  --replicated           wait for each block's MARK to be RK_REPLICATED before the next\n"
    "  --durable              the same with RK_DURABLE (journaled on the primary), noted likewise\n"
    "  --acked FILE           append a line to FILE (created if missing) when the engine first\n"
    "                         writes (\"writing BLOCK UNIX_NS\") and, with --replicated or --durable,\n"
    "                         for each acknowledged block (\"acked BLOCK RECORDS\": its records,\n"
    "                         MARK included)\n"
    "With --ring, the engine restores from the node's state in DIR (if the node has\n"
    "applied a block of the producer, default \"" DEFAULT_PRODUCER "\") and goes on from there.\n";

/* ---------------------------------------------------------------- the ring sink */

/* The book's records go to the ring; ids of the tables by enum book_table. */
struct ring_sink {
    rk_ring *ring;
    uint16_t table_id[BOOK_N_TABLES];
    uint64_t block;     /* the block being written */
    unsigned n_records; /* records of it written so far */
    uint64_t kill_block;
    int acked_fd;       /* --acked, or -1 */
    int wrote;          /* the first record is in the ring (and noted) */
};

/* Appends line to the --acked file with one write(2): the kernel holds it
 * once write returns, so it survives this process's SIGKILL.  The file is
 * what a harness counts lost acknowledgements from: an acknowledgement it
 * lacks would hide a loss, so a failed note stops the engine (exit 1). */
static void note(struct ring_sink *rs, const char *line)
{
    size_t len = strlen(line);

    if (rs->acked_fd >= 0 && write(rs->acked_fd, line, len) != (ssize_t)len) {
        fprintf(stderr, "orderbook: cannot note \"%.*s\" in the --acked file: %s\n", (int)len - 1, line,
                strerror(errno));
        exit(1);
    }
}

/* After a record went to the ring: the first one is noted with the time
 * (CLOCK_REALTIME, so that another process can compare it with its own). */
static void wrote_record(struct ring_sink *rs)
{
    char line[96];
    struct timespec ts;

    rs->n_records++;
    if (rs->wrote)
        return;
    rs->wrote = 1;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(line, sizeof line, "writing %" PRIu64 " %" PRIu64 "\n", rs->block,
             (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    note(rs, line);
}

/* The --kill-after-block hook: dies with the block's group open. */
static void kill_mid_group(struct ring_sink *rs, unsigned at_record)
{
    if (rs->kill_block == 0 || rs->block != rs->kill_block || rs->n_records < at_record)
        return;
    fprintf(stderr,
            "orderbook: --kill-after-block %" PRIu64 ": SIGKILL after %u records of block %" PRIu64 "\n",
            rs->kill_block, rs->n_records, rs->block);
    raise(SIGKILL);
}

static int ring_put(void *arg, enum book_table table, const void *key, uint32_t klen, const void *val,
                    uint32_t vlen)
{
    struct ring_sink *rs = arg;
    int rc = rk_put(rs->ring, rs->table_id[table], key, klen, val, vlen, NULL);

    if (!rc)
        wrote_record(rs);
    kill_mid_group(rs, KILL_AT_RECORD);
    return rc;
}

static int ring_del(void *arg, enum book_table table, const void *key, uint32_t klen)
{
    struct ring_sink *rs = arg;
    int rc = rk_del(rs->ring, rs->table_id[table], key, klen, NULL);

    if (!rc)
        wrote_record(rs);
    kill_mid_group(rs, KILL_AT_RECORD);
    return rc;
}

/* ---------------------------------------------------------------- restore */

/* The book's scans read the node's state: rk_state_scan has the same
 * contract, tables go by name. */
static int state_scan(void *source, enum book_table table, const void *prefix, uint32_t plen,
                      book_record_fn fn, void *fn_arg)
{
    return rk_state_scan(source, book_table_name[table], prefix, plen, fn, fn_arg);
}

/* Rebuilds e from the node's state in data_dir, at the last height the
 * node applied for producer; a producer that has none starts at block 1
 * (and the tables must then be empty). */
static int restore_from_node(book_engine *e, const char *data_dir, const char *producer)
{
    rk_state *s = NULL;
    uint64_t height = 0;
    book_stats st;
    int rc;

    rc = rk_state_open(data_dir, &s);
    if (rc) {
        fprintf(stderr, "orderbook: cannot open the node's state in %s: %s\n", data_dir, rk_strerror(rc));
        goto out;
    }
    rc = rk_state_height(s, producer, &height);
    if (rc == RK_ENOTFOUND) {
        height = 0;
        rc = 0;
    }
    if (!rc)
        rc = book_restore(e, height, state_scan, s);
    if (rc) {
        fprintf(stderr, "orderbook: cannot restore producer %s from %s: %s%s%s\n", producer, data_dir,
                rk_strerror(rc), *book_error(e) ? ": " : "", book_error(e));
        goto out;
    }
    book_get_stats(e, &st);
    fprintf(stderr,
            "orderbook: %s at height %" PRIu64 " (state LSN %" PRIu64 "): %" PRIu64 " open orders, %" PRIu64
            " fills\n",
            height ? "restored" : "no block applied yet, starting", height, rk_state_lsn(s), st.n_open_orders,
            st.n_fills);
out:
    rk_state_close(s);
    return rc;
}

/* ---------------------------------------------------------------- running */

/* Runs blocks book_height(e) + 1 .. opt->n_blocks.  With rs, each block's
 * changes go to the ring and a MARK closes the block; *mark_lsn is the last
 * MARK's LSN.  With opt->replicated, a block is acknowledged RK_REPLICATED
 * (and noted) before the next one begins. */
static int run_blocks(book_engine *e, const struct options *opt, struct ring_sink *rs, uint64_t *mark_lsn)
{
    const book_sink sink = {ring_put, ring_del, rs};
    book_order_in *orders = calloc(opt->orders_per_block ? opt->orders_per_block : 1, sizeof *orders);
    int rc = 0;

    if (!orders)
        return ENOMEM;
    for (uint64_t block = book_height(e) + 1; !rc && block <= opt->n_blocks; block++) {
        gen_block(opt->seed, block, opt->orders_per_block, orders);
        if (rs) {
            rs->block = block;
            rs->n_records = 0;
        }
        rc = book_apply_block(e, block, orders, opt->orders_per_block, rs ? &sink : NULL);
        if (rc) {
            fprintf(stderr, "orderbook: block %" PRIu64 ": %s%s%s\n", block, rk_strerror(rc),
                    *book_error(e) ? ": " : "", book_error(e));
            break;
        }
        if (rs) {
            kill_mid_group(rs, 0); /* a block shorter than KILL_AT_RECORD */
            rc = rk_mark(rs->ring, block, mark_lsn);
            if (rc)
                fprintf(stderr, "orderbook: MARK %" PRIu64 ": %s\n", block, rk_strerror(rc));
            else
                wrote_record(rs);
        }
        if (rs && !rc && (opt->replicated || opt->durable)) {
            char line[64];
            rc = rk_wait(rs->ring, *mark_lsn, opt->replicated ? RK_REPLICATED : RK_DURABLE, REPLICATED_TIMEOUT_MS);
            if (rc)
                fprintf(stderr, "orderbook: block %" PRIu64 " is not %s after %d s: %s\n", block,
                        opt->replicated ? "replicated" : "durable", REPLICATED_TIMEOUT_MS / 1000, rk_strerror(rc));
            snprintf(line, sizeof line, "acked %" PRIu64 " %u\n", block, rs->n_records);
            if (!rc)
                note(rs, line);
            if (!rc && opt->stop_block == block) {
                fprintf(stderr, "orderbook: --stop-after-block %" PRIu64 ": SIGSTOP\n", block);
                raise(SIGSTOP);
            }
        }
    }
    free(orders);
    return rc;
}

/* The engine on the ring: restore, attach, run, wait until durable. */
static int run_on_ring(book_engine *e, const struct options *opt)
{
    char why[256] = "";
    rk_ring_opts ro = {.producer = opt->producer,
                       .full_policy = RK_FULL_WAIT,
                       .full_timeout_ms = FULL_TIMEOUT_MS,
                       .errmsg = why,
                       .errmsg_size = sizeof why};
    struct ring_sink rs = {.kill_block = opt->kill_block, .acked_fd = -1};
    uint64_t restored_height, mark_lsn = 0;
    int rc;

    if (opt->acked && (rs.acked_fd = open(opt->acked, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        rc = errno;
        fprintf(stderr, "orderbook: --acked %s: %s\n", opt->acked, strerror(rc));
        goto out;
    }
    rc = restore_from_node(e, opt->data_dir, opt->producer);
    if (rc)
        goto out;
    rc = rk_ring_attach(opt->ring, &ro, &rs.ring);
    if (rc) {
        fprintf(stderr, "orderbook: cannot attach to ring %s: %s: %s\n", opt->ring, rk_strerror(rc), why);
        goto out;
    }
    for (int t = 0; t < BOOK_N_TABLES; t++) {
        rc = rk_table(rs.ring, book_table_name[t], &rs.table_id[t]);
        if (rc) {
            fprintf(stderr, "orderbook: table %s: %s\n", book_table_name[t], rk_strerror(rc));
            goto out;
        }
    }
    restored_height = book_height(e);
    rc = run_blocks(e, opt, &rs, &mark_lsn);
    if (rc || book_height(e) == restored_height)
        goto out;
    rc = rk_wait(rs.ring, mark_lsn, RK_DURABLE, DURABLE_TIMEOUT_MS);
    if (rc)
        fprintf(stderr, "orderbook: block %" PRIu64 " is not durable after %d s (%s): is the node running?\n",
                book_height(e), DURABLE_TIMEOUT_MS / 1000, rk_strerror(rc));
out:
    rk_ring_detach(rs.ring);
    if (rs.acked_fd >= 0)
        close(rs.acked_fd);
    return rc;
}

/* ---------------------------------------------------------------- main */

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n = 0;
        int ok = 1;

        if (strcmp(a, "--offline") == 0)
            o->offline = 1;
        else if (strcmp(a, "--digest") == 0)
            o->digest = 1;
        else if (strcmp(a, "--dump") == 0)
            o->dump = 1;
        else if (strcmp(a, "--self-test") == 0)
            o->self_test = 1;
        else if (strcmp(a, "--replicated") == 0)
            o->replicated = 1;
        else if (strcmp(a, "--durable") == 0)
            o->durable = 1;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        } else if (!v)
            ok = 0;
        else if (strcmp(a, "--ring") == 0)
            o->ring = v, i++;
        else if (strcmp(a, "--data-dir") == 0)
            o->data_dir = v, i++;
        else if (strcmp(a, "--producer") == 0)
            o->producer = v, i++;
        else if (strcmp(a, "--acked") == 0)
            o->acked = v, i++;
        else if (strcmp(a, "--seed") == 0)
            ok = parse_u64(v, UINT64_MAX, &o->seed) == 0, i++;
        else if (strcmp(a, "--blocks") == 0)
            ok = parse_u64(v, BOOK_MAX_BLOCK, &o->n_blocks) == 0, i++;
        else if (strcmp(a, "--kill-after-block") == 0)
            ok = parse_u64(v, BOOK_MAX_BLOCK, &o->kill_block) == 0 && o->kill_block > 0, i++;
        else if (strcmp(a, "--stop-after-block") == 0)
            ok = parse_u64(v, BOOK_MAX_BLOCK, &o->stop_block) == 0 && o->stop_block > 0, i++;
        else if (strcmp(a, "--orders-per-block") == 0) {
            ok = parse_u64(v, BOOK_MAX_ORDERS_PER_BLOCK, &n) == 0, i++;
            o->orders_per_block = (uint32_t)n;
        } else
            ok = 0;
        if (!ok) {
            fprintf(stderr, "orderbook: bad option %s%s%s\n%s", a, v ? " " : "", v ? v : "", usage);
            return -1;
        }
    }
    if (!o->self_test && !o->offline && (!o->ring || !o->data_dir)) {
        fprintf(stderr, "orderbook: --ring and --data-dir are needed (or --offline)\n%s", usage);
        return -1;
    }
    if (o->offline && (o->kill_block || o->stop_block)) {
        fprintf(stderr, "orderbook: --kill-after-block and --stop-after-block are for a run on a ring, not an --offline one\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options opt = {.producer = DEFAULT_PRODUCER, .seed = 1, .n_blocks = 100, .orders_per_block = 100};
    book_engine *e = NULL;
    int rc;

    if (parse_options(argc, argv, &opt) != 0)
        return 2;
    if (opt.self_test)
        return selftest_run(stdout);
    e = book_engine_new();
    if (!e) {
        fprintf(stderr, "orderbook: out of memory\n");
        return 1;
    }
    rc = opt.offline ? run_blocks(e, &opt, NULL, NULL) : run_on_ring(e, &opt);
    if (!rc && opt.dump)
        book_dump(e, stdout);
    if (!rc && opt.digest) {
        uint64_t digest;
        book_stats st;
        book_get_stats(e, &st);
        rc = book_digest(e, &digest);
        if (!rc)
            printf("digest %016" PRIx64 " height %" PRIu64 " open-orders %" PRIu64 " fills %" PRIu64 "\n",
                   digest, st.height, st.n_open_orders, st.n_fills);
    }
    book_engine_free(e);
    return rc ? 1 : 0;
}
