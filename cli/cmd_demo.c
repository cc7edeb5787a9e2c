/* cmd_demo.c -- `ringkeep demo`: what ringkeep can do at this stage.
 *
 * The demo creates a ring (as a node will), forks producer processes that
 * write records through the public API (puts, with a MARK closing every
 * block of 1000), and drains the ring in this process as the node's
 * consumer: every frame is checksum-verified by the ring, and the demo
 * checks in addition that every record arrives once, in per-producer
 * order, with the bytes that were written.  It shows live progress, the
 * ring's header (as `ringkeep ring inspect` prints it), a throughput
 * summary, and finally a producer killed between claim and commit being
 * unblocked by the consumer.
 *
 * There is no journal yet: the records reach the "written" level (shared
 * memory) only, so the demo does not move the durable cursor.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "shm/ring.h"

#define DEMO_BLOCK 1000 /* records per MARK */
#define DEMO_MAX_PRODUCERS 8

struct demo_opts {
    int n_producers;
    unsigned long long n_records; /* per producer */
    unsigned value_size;
    unsigned long long capacity;
};

struct producer_tally {
    uint64_t next_seq; /* the sequence number expected next */
    uint64_t n_marks;
    uint64_t n_bad;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The value of record seq of producer p: 8 bytes of seq, then a byte
 * pattern that depends on both. */
static void fill_value(uint8_t *v, unsigned size, int p, uint64_t seq)
{
    memset(v, (int)((seq * 31 + (uint64_t)p) & 0xff), size);
    memcpy(v, &seq, size < 8 ? size : 8);
}

static int run_producer(const char *ring, int p, const struct demo_opts *o)
{
    char name[32], err[256] = "";
    rk_ring_opts ro = {.producer = name, .errmsg = err, .errmsg_size = sizeof err};
    rk_ring *r = NULL;
    uint8_t *value = malloc(o->value_size + 8);
    uint16_t table;
    int rc;

    snprintf(name, sizeof name, "engine-%d", p);
    if (!value)
        return 1;
    rc = rk_ring_attach(ring, &ro, &r);
    if (!rc)
        rc = rk_table(r, "orders", &table);
    for (uint64_t seq = 0; !rc && seq < o->n_records; seq++) {
        fill_value(value, o->value_size, p, seq);
        rc = rk_put(r, table, &seq, sizeof seq, value, o->value_size, NULL);
        if (!rc && (seq + 1) % DEMO_BLOCK == 0)
            rc = rk_mark(r, (seq + 1) / DEMO_BLOCK, NULL);
    }
    if (rc)
        fprintf(stderr, "demo: producer %s: %s %s\n", name, rk_strerror(rc), err);
    rk_ring_detach(r);
    free(value);
    return rc ? 1 : 0;
}

/* Checks one frame against what producer p must have written. */
static void check_frame(const ring_frame *f, struct producer_tally *t, int p, unsigned value_size,
                        uint8_t *expect)
{
    uint64_t seq;

    if (f->type == FRAME_MARK) {
        t->n_marks++;
        return;
    }
    if (f->type != FRAME_PUT || f->klen != 8 || f->vlen != value_size) {
        t->n_bad++;
        return;
    }
    memcpy(&seq, f->key, 8);
    fill_value(expect, value_size, p, seq);
    if (seq != t->next_seq || memcmp(f->val, expect, value_size) != 0)
        t->n_bad++;
    t->next_seq = seq + 1;
}

static void demo_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep demo [--producers N] [--records N] [--value-size B] [--capacity BYTES]\n"
            "  N producers (1-%d) write N records each (values of B <= 65536 bytes) into a ring of\n"
            "  BYTES (K/M/G suffixes), a consumer drains and verifies every record, with live\n"
            "  progress and a throughput summary\n",
            DEMO_MAX_PRODUCERS);
}

/* 0, 1 after --help (usage printed), or 2 (usage error). */
static int parse_opts(int argc, char **argv, struct demo_opts *o)
{
    static const struct option opts[] = {{"producers", required_argument, NULL, 'p'},
                                         {"records", required_argument, NULL, 'r'},
                                         {"value-size", required_argument, NULL, 'v'},
                                         {"capacity", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch, index;

    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, &index)) != -1) {
        unsigned long long v = 0;
        if (ch == 'h' || ch == '?')
            return cli_usage(demo_usage, ch == 'h') == 0 ? 1 : 2;
        if (cli_parse_size(optarg, &v) == 0 && ch == 'p' && v >= 1 && v <= DEMO_MAX_PRODUCERS)
            o->n_producers = (int)v;
        else if (cli_parse_size(optarg, &v) == 0 && ch == 'r' && v >= 1)
            o->n_records = v;
        else if (cli_parse_size(optarg, &v) == 0 && ch == 'v' && v <= 65536)
            o->value_size = (unsigned)v;
        else if (cli_parse_size(optarg, &v) == 0 && ch == 'c')
            o->capacity = v;
        else {
            fprintf(stderr, "ringkeep demo: bad option --%s %s (producers 1-%d, value size <= 65536)\n",
                    opts[index].name, optarg, DEMO_MAX_PRODUCERS);
            return 2;
        }
    }
    if (optind < argc)
        return cli_usage(demo_usage, 0);
    return 0;
}

/* Drains until every producer has exited and the ring is empty.  Returns
 * the number of records (PUT and MARK) consumed, or -1 on a ring error. */
static long long drain(ring_owner *o, const struct demo_opts *opt, pid_t *pids, int *n_running,
                       struct producer_tally *tally, uint16_t *slot_to_producer)
{
    uint8_t *expect = malloc(opt->value_size + 8);
    long long n = 0;
    double start = now_s(), last = start;
    int tty = isatty(STDOUT_FILENO), rc = 0;
    ring_frame f;

    if (!expect)
        return -1;
    for (;;) {
        int got = 0;
        while (got < 4096 && (rc = ring_next(o, &f)) == 1) {
            if (f.type == FRAME_ATTACH) {
                int p = 0;
                if (f.klen > 7 && sscanf((const char *)f.key + 7, "%d", &p) == 1 && p >= 0 &&
                    p < DEMO_MAX_PRODUCERS)
                    slot_to_producer[f.producer] = (uint16_t)p;
            } else if (f.type == FRAME_PUT || f.type == FRAME_MARK) {
                int p = slot_to_producer[f.producer];
                check_frame(&f, &tally[p], p, opt->value_size, expect);
                n++;
            }
            got++;
        }
        ring_release(o);
        if (rc < 0) {
            fprintf(stderr, "\ndemo: %s\n", ring_error(o));
            n = -1;
            break;
        }
        for (int i = 0; i < opt->n_producers; i++) {
            int status;
            if (pids[i] > 0 && waitpid(pids[i], &status, WNOHANG) == pids[i]) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                    fprintf(stderr, "\ndemo: producer %d failed\n", i);
                pids[i] = 0;
                (*n_running)--;
            }
        }
        double t = now_s();
        if (t - last >= (tty ? 0.25 : 1.0) || (*n_running == 0 && got == 0)) {
            struct ring_header *h = ring_header_of(o);
            uint64_t fill = atomic_load(&h->tail) - atomic_load(&h->head);
            printf("%s  %5.1fs  records %12lld  %6.2f M/s  ring fill %5.1f%%  producers running %d/%d%s",
                   tty ? "\r" : "", t - start, n, (double)n / (t - start) / 1e6,
                   100.0 * (double)fill / (double)h->capacity, *n_running, opt->n_producers, tty ? "" : "\n");
            fflush(stdout);
            last = t;
        }
        if (*n_running == 0 && got == 0 && ring_wait_ready(o, 0) == 0)
            break;
        if (got == 0)
            ring_wait_ready(o, 50);
    }
    if (tty)
        printf("\n");
    free(expect);
    return n;
}

/* A producer killed between claim and commit: the consumer must unblock
 * it after the ring's unblock timeout, report it, and go on. */
static int crash_drill(ring_owner *o, const char *ring)
{
    rk_ring *r = NULL;
    rk_claim c;
    uint16_t table;
    pid_t pid;
    ring_frame f;
    int status, aborted = 0, after = 0, rc;
    uint64_t seq = 42;
    double start;

    printf("\ncrash drill: a producer claims a record, then is killed with SIGKILL before committing it\n");
    pid = fork();
    if (pid == 0) {
        rk_ring_opts ro = {.producer = "victim"};
        if (rk_ring_attach(ring, &ro, &r) || rk_table(r, "orders", &table) ||
            rk_claim_record(r, table, 8, 64, &c))
            _exit(1);
        memset(c.val, 0xee, 32); /* half-written */
        raise(SIGKILL);
        _exit(1);
    }
    waitpid(pid, &status, 0);
    /* a live producer writes behind the dead claim */
    rk_ring_opts ro = {.producer = "survivor"};
    if (rk_ring_attach(ring, &ro, &r) || rk_table(r, "orders", &table) ||
        rk_put(r, table, &seq, 8, "after the crash", 15, NULL)) {
        fprintf(stderr, "demo: survivor could not write\n");
        rk_ring_detach(r);
        return 1;
    }
    start = now_s();
    while (!after && now_s() - start < 30) {
        while ((rc = ring_next(o, &f)) == 1) {
            if (f.type == FRAME_ABORT) {
                aborted = 1;
                printf("  consumer: producer slot %u is dead; its claim became padding, its open group is "
                       "void (after %.0f ms)\n",
                       f.producer, (now_s() - start) * 1000);
            }
            if (f.type == FRAME_PUT && f.vlen == 15 && memcmp(f.val, "after the crash", 15) == 0)
                after = 1;
            if (f.type == FRAME_PUT && f.vlen == 64)
                aborted = -1000; /* the half-written record must never arrive */
        }
        ring_release(o);
        if (rc < 0)
            break;
        ring_wait_ready(o, 20);
    }
    rk_ring_detach(r);
    printf("  %s: the survivor's record %s, the dead claim was %s\n", aborted == 1 && after ? "ok" : "FAILED",
           after ? "arrived" : "did not arrive", aborted == 1 ? "unblocked" : "NOT unblocked");
    return aborted == 1 && after ? 0 : 1;
}

int cmd_demo(int argc, char **argv)
{
    struct demo_opts opt = {.n_producers = 2, .n_records = 5000000, .value_size = 64, .capacity = 4 << 20};
    struct producer_tally tally[DEMO_MAX_PRODUCERS] = {{0}};
    uint16_t slot_to_producer[RING_MAX_PRODUCERS] = {0};
    pid_t pids[DEMO_MAX_PRODUCERS] = {0};
    ring_create_opts co = {.unblock_timeout_ms = 200};
    ring_owner *o = NULL;
    char ring[64], err[512] = "";
    long long n;
    double start, secs;
    int rc, n_running = 0, failed = 0;

    rc = parse_opts(argc, argv, &opt);
    if (rc)
        return rc == 1 ? 0 : rc; /* 1: --help */
    co.capacity = opt.capacity;
    snprintf(ring, sizeof ring, "demo.%d", (int)getpid());
    rc = ring_create(ring, &co, &o, err, sizeof err);
    if (rc) {
        fprintf(stderr, "ringkeep demo: %s\n", err);
        return 1;
    }
    printf("ringkeep %s demo: ring '%s', %llu KiB; %d producer processes x %llu records (%u-byte values, "
           "a MARK every %d)\n\n",
           rk_version(NULL, NULL, NULL), ring, opt.capacity >> 10, opt.n_producers, opt.n_records,
           opt.value_size, DEMO_BLOCK);
    fflush(stdout);
    start = now_s();
    for (int i = 0; i < opt.n_producers; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            _exit(run_producer(ring, i, &opt));
        if (pids[i] > 0)
            n_running++;
    }
    n = drain(o, &opt, pids, &n_running, tally, slot_to_producer);
    secs = now_s() - start;

    printf("\nthe ring's header, as `ringkeep ring inspect %s` shows it:\n\n", ring);
    fflush(stdout);
    char *inspect_argv[] = {"ring", "inspect", ring, NULL};
    cmd_ring(3, inspect_argv);

    unsigned long long per_record = 8 + opt.value_size;
    printf("\nsummary\n");
    printf("  records consumed   %lld in %.2f s: %.2f M records/s, %.0f MB/s of keys+values\n", n, secs,
           (double)n / secs / 1e6, (double)n * (double)per_record / secs / 1e6);
    for (int i = 0; i < opt.n_producers; i++) {
        int ok = tally[i].next_seq == opt.n_records && tally[i].n_bad == 0 &&
                 tally[i].n_marks == opt.n_records / DEMO_BLOCK;
        printf("  engine-%d           %" PRIu64 " puts, %" PRIu64 " marks, %" PRIu64 " bad: %s\n", i,
               tally[i].next_seq, tally[i].n_marks, tally[i].n_bad,
               ok ? "every record once, in order, byte-identical" : "MISMATCH");
        failed |= !ok;
    }
    if (n < 0)
        failed = 1;
    printf("  durability         written (shared memory) only: the node's journal is not built yet\n");
    failed |= crash_drill(o, ring);
    ring_close(o, 1);
    printf("\n%s\n", failed ? "demo FAILED" : "demo ok");
    return failed ? 1 : 0;
}
