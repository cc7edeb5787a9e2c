/* bench_soak.c -- sustained load (issue 13 point 7): a primary with
 * min_replicas = 1 and one standby (forked, repl_node_run, loopback TCP,
 * checkpoints every --checkpoint-seconds on both), and --producers
 * processes writing unpaced through the public API (64-byte values over
 * --keys keys each, a MARK every 100 records) for --seconds.
 *
 * Every --interval seconds it prints, for each node: journal entries/s
 * (ingest) and applied entries/s, apply lag (entries, and the seconds of
 * apply work they are at the interval's apply rate, and as the node says
 * in its status: apply_lag_ms, by its own measure of apply's rate), RSS, open fds and the
 * size of its data directory; and the producers' records/s.  At the end
 * the producers wait RK_REPLICATED for their last MARK, and each node is
 * stopped with SIGTERM: the clean-stop time of each is printed, and the
 * two states, read back, must be equal entry by entry (exit 1 otherwise).
 *
 * TCP: two free ports on 127.0.0.1 from bench_free_ports (14000..15999).
 * Prints figures; never fails on time; every wait is bounded (a watchdog
 * of --seconds + 600 s kills everything). */
#define _GNU_SOURCE
#include <dirent.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "node/client.h"
#include "node/node.h"
#include "persist/config.h"
#include "replicator/replicator.h"
#include "shm/ring.h"
#include "ringkeep.h"

#define MARK_EVERY 100
#define VALUE_SIZE 64
#define MAX_PRODUCERS 16
#define BOUND_MS 600000 /* no wait here takes this long unless something is broken */

struct options {
    unsigned seconds, interval, producers, checkpoint_seconds, cache_mb; /* cache_mb 0: the node's default */
    uint64_t keys;
    int json;
};

/* Shared with the producer processes (MAP_SHARED). */
struct shared {
    _Atomic int stop;                          /* parent: release; producers: acquire */
    _Atomic uint64_t records[MAX_PRODUCERS];   /* each producer's count, relaxed (a rate) */
    _Atomic int replicated[MAX_PRODUCERS];     /* 1: its last MARK was acknowledged RK_REPLICATED */
};

static struct shared *g_sh;
static char g_base[128], g_dir[2][160], g_ring[64], g_pub[64], g_serve[64];
static volatile sig_atomic_t g_node_pid[2], g_prod_pid[MAX_PRODUCERS];

static void on_fatal(int sig)
{
    for (int i = 0; i < MAX_PRODUCERS; i++)
        bench_kill_and_reap(&g_prod_pid[i]);
    bench_kill_and_reap(&g_node_pid[0]);
    bench_kill_and_reap(&g_node_pid[1]);
    bench_remove_tree_by_rm(g_base);
    _exit(sig == SIGALRM ? 3 : 128 + sig);
}

static pid_t start_node(int standby, const struct options *o)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct node_config c;
        char err[512], every[16], cache[16];
        snprintf(every, sizeof every, "%u", o->checkpoint_seconds);
        snprintf(cache, sizeof cache, "%u", o->cache_mb);
        node_config_defaults(&c);
        int rc = node_config_set(&c, "node", "data_dir", g_dir[standby], "bench", err, sizeof err) ||
                 node_config_set(&c, "node", "log_level", "warn", "bench", err, sizeof err) ||
                 node_config_set(&c, "checkpoint", "every_seconds", every, "bench", err, sizeof err) ||
                 node_config_set(&c, "replication", "heartbeat_ms", "100", "bench", err, sizeof err) ||
                 (o->cache_mb && node_config_set(&c, "storage", "cache_mb", cache, "bench", err, sizeof err));
        if (standby)
            rc = rc || node_config_set(&c, "node", "role", "standby", "bench", err, sizeof err) ||
                 node_config_set(&c, "replication", "node_id", "soak-standby", "bench", err, sizeof err) ||
                 node_config_set(&c, "replication", "primary_publish", g_pub, "bench", err, sizeof err) ||
                 node_config_set(&c, "replication", "primary_serve", g_serve, "bench", err, sizeof err);
        else
            rc = rc || node_config_set(&c, "ring", "name", g_ring, "bench", err, sizeof err) ||
                 node_config_set(&c, "replication", "publish", g_pub, "bench", err, sizeof err) ||
                 node_config_set(&c, "replication", "serve", g_serve, "bench", err, sizeof err) ||
                 node_config_set(&c, "replication", "min_replicas", "1", "bench", err, sizeof err) ||
                 /* loopback, this process's children only */
                 node_config_set(&c, "replication", "insecure_acks", "yes", "bench", err, sizeof err);
        if (rc || node_config_check(&c, err, sizeof err)) {
            fprintf(stderr, "bench_soak: config: %s\n", err);
            _exit(99);
        }
        _exit(repl_node_run(&c));
    }
    if (pid < 0)
        return -1;
    for (int i = 0; i < 30000; i++) { /* up: the control endpoint answers with this pid */
        char *reply = NULL, want[32];
        int status;
        snprintf(want, sizeof want, "\"pid\":%d,", (int)pid);
        int up = node_request(g_dir[standby], "status", 1000, &reply) == 0 && strstr(reply, want);
        free(reply);
        if (up)
            return pid;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "bench_soak: the %s exited at start\n", standby ? "standby" : "primary");
            return -1;
        }
        usleep(10000);
    }
    fprintf(stderr, "bench_soak: the %s did not come up\n", standby ? "standby" : "primary");
    return -1;
}

struct producer_arg {
    int index;
    uint64_t keys;
};

static int producer(const void *argp)
{
    const struct producer_arg *a = argp;
    char name[32], key[24];
    uint8_t val[VALUE_SIZE];
    rk_ring *r = NULL;
    uint16_t t;
    uint64_t n = 0, lsn = 0, x = 0x9e3779b97f4a7c15ull * (uint64_t)(a->index + 1);

    snprintf(name, sizeof name, "soak%d", a->index);
    if (bench_attach("bench_soak", g_ring, name, BOUND_MS, &r) || rk_table(r, "soak", &t))
        return 1;
    /* acquire: pairs with the parent's release store of stop */
    while (!atomic_load_explicit(&g_sh->stop, memory_order_acquire)) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64: the key */
        int klen = snprintf(key, sizeof key, "p%d/%012" PRIu64, a->index, x % a->keys);
        memset(val, (int)(n & 0xff), sizeof val);
        if (rk_put(r, t, key, (uint32_t)klen, val, sizeof val, NULL))
            return 1;
        if (++n % MARK_EVERY == 0) {
            if (rk_mark(r, n / MARK_EVERY, &lsn))
                return 1;
            atomic_store_explicit(&g_sh->records[a->index], n, memory_order_relaxed);
        }
    }
    if (lsn && rk_wait(r, lsn, RK_REPLICATED, BOUND_MS) == 0)
        atomic_store_explicit(&g_sh->replicated[a->index], 1, memory_order_relaxed);
    rk_ring_detach(r);
    return 0;
}

/* ------------------------------------------------------------ sampling */

struct node_sample {
    uint64_t journal_seq, applied_seq, records;
    uint64_t apply_lag_ms; /* the node's own measure ("apply_lag_ms" in its status) ... */
    int has_apply_lag_ms;  /* ... when it gives one (a standby before issue 13.7 does not) */
    uint64_t rss_kb, fds, dir_bytes;
    int ok;
};

static uint64_t g_du;
static int du_add(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path, (void)flag, (void)ftw;
    g_du += (uint64_t)st->st_blocks * 512u;
    return 0;
}

static uint64_t dir_bytes(const char *dir)
{
    g_du = 0;
    nftw(dir, du_add, 16, FTW_PHYS); /* a file removed meanwhile is skipped */
    return g_du;
}

static uint64_t rss_kb(pid_t pid)
{
    char path[64], line[256];
    uint64_t kb = 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtoull(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static uint64_t open_fds(pid_t pid)
{
    char path[64];
    uint64_t n = 0;
    struct dirent *d;
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return 0;
    while ((d = readdir(dir)))
        n += d->d_name[0] != '.';
    closedir(dir);
    return n;
}

static void sample_node(int i, struct node_sample *s)
{
    char *reply = NULL;
    memset(s, 0, sizeof *s);
    if (node_request(g_dir[i], "status", 5000, &reply) == 0 &&
        bench_json_field(reply, "journal_seq", 0, &s->journal_seq) == 0 &&
        bench_json_field(reply, "applied_seq", 0, &s->applied_seq) == 0)
        s->ok = 1;
    if (reply) {
        bench_json_field(reply, "records", 0, &s->records);
        s->has_apply_lag_ms = bench_json_field(reply, "apply_lag_ms", 0, &s->apply_lag_ms) == 0;
    }
    free(reply);
    s->rss_kb = rss_kb((pid_t)g_node_pid[i]);
    s->fds = open_fds((pid_t)g_node_pid[i]);
    s->dir_bytes = dir_bytes(g_dir[i]);
}

static void print_interval(double t, double dt, const struct node_sample now[2], const struct node_sample before[2],
                           uint64_t produced, uint64_t produced_before, const struct options *o)
{
    static const char *const role[2] = {"primary", "standby"};
    double prod_rate = (double)(produced - produced_before) / dt;
    json_t *nodes = o->json ? json_array() : NULL;

    if (!o->json)
        printf("t=%4.0fs producers %7.0f records/s\n", t, prod_rate);
    for (int i = 0; i < 2; i++) {
        const struct node_sample *a = &now[i], *b = &before[i];
        double ingest = (double)(a->journal_seq - b->journal_seq) / dt;
        double apply = (double)(a->applied_seq - b->applied_seq) / dt;
        uint64_t lag = a->journal_seq > a->applied_seq ? a->journal_seq - a->applied_seq : 0;
        double lag_s = apply > 0 ? (double)lag / apply : (lag ? -1 : 0);
        if (o->json) {
            json_array_append_new(
                nodes,
                json_pack("{s:s, s:b, s:o, s:o, s:I, s:o, s:o, s:I, s:I, s:I}", "node", role[i], "answered",
                          a->ok, "journal_entries_per_s", bench_real(ingest, 1), "applied_entries_per_s",
                          bench_real(apply, 1), "apply_lag_entries", (json_int_t)lag, "apply_lag_s",
                          bench_real(lag_s, 2), "node_apply_lag_ms",
                          a->has_apply_lag_ms ? json_integer((json_int_t)a->apply_lag_ms) : json_null(),
                          "rss_kb", (json_int_t)a->rss_kb, "fds", (json_int_t)a->fds, "data_dir_bytes",
                          (json_int_t)a->dir_bytes));
        } else {
            char lag_txt[64];
            int len = lag_s < 0 ? snprintf(lag_txt, sizeof lag_txt, "apply stalled")
                                : snprintf(lag_txt, sizeof lag_txt, "%.2f s of apply", lag_s);
            if (a->has_apply_lag_ms) /* and as the node measures it (its apply's rate over its work) */
                snprintf(lag_txt + len, sizeof lag_txt - (size_t)len, "; node: %.2f s",
                         (double)a->apply_lag_ms / 1e3);
            printf("  %s: journal %6.1f entries/s, applied %6.1f/s, apply lag %6" PRIu64
                   " entries (%s), RSS %5.0f MiB, %3" PRIu64 " fds, data dir %7.1f MiB%s\n",
                   role[i], ingest, apply, lag, lag_txt, (double)a->rss_kb / 1024, a->fds,
                   (double)a->dir_bytes / (1024.0 * 1024.0), a->ok ? "" : " (status did not answer)");
        }
    }
    if (o->json)
        bench_print_json(json_pack("{s:s, s:s, s:o, s:o, s:o}", "bench", "soak", "kind", "interval", "t_s",
                                   bench_real(t, 1), "producer_records_per_s", bench_real(prod_rate, 0),
                                   "nodes", nodes));
    fflush(stdout);
}

static uint64_t produced_total(const struct options *o)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < o->producers; i++)
        n += atomic_load_explicit(&g_sh->records[i], memory_order_relaxed);
    return n;
}

struct scan_sum {
    uint64_t h, n;
};

static void fnv(uint64_t *h, const void *p, uint32_t len)
{
    const uint8_t *b = p;
    for (uint32_t i = 0; i < 4; i++) /* the length first: no two splits hash alike */
        *h = (*h ^ ((len >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    for (uint32_t i = 0; i < len; i++)
        *h = (*h ^ b[i]) * 0x100000001b3ull;
}

static int scan_add(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct scan_sum *s = arg;
    fnv(&s->h, key, klen);
    fnv(&s->h, val, vlen);
    s->n++;
    return 0;
}

static double stop_node(int i)
{
    uint64_t t0 = now_ns();
    int status = 0;
    pid_t pid = (pid_t)g_node_pid[i];
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    g_node_pid[i] = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "bench_soak: the %s stopped with status %d\n", i ? "standby" : "primary", status);
    return (double)(now_ns() - t0) / 1e9;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_soak [--seconds S] [--interval S] [--producers N] [--keys N]\n"
               "                  [--checkpoint-seconds S] [--cache-mb N] [--json]\n"
               "  --seconds S             how long the producers write (default 600)\n"
               "  --interval S            seconds between two lines (default 30)\n"
               "  --producers N           producer processes, unpaced (default 2, at most %d)\n"
               "  --keys N                distinct keys each producer writes over (default 1000000)\n"
               "  --checkpoint-seconds S  [checkpoint] every_seconds of both nodes (default 20)\n"
               "  --cache-mb N            [storage] cache_mb of both nodes (default: the node's)\n"
               "  --json                  one JSON object per line\n",
               MAX_PRODUCERS);
}

int main(int argc, char **argv)
{
    struct options o = {.seconds = 600, .interval = 30, .producers = 2, .checkpoint_seconds = 20, .keys = 1000000};
    struct node_sample before[2], now[2];
    struct producer_arg pa[MAX_PRODUCERS];
    int rc = 0, port;

    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--json") == 0)
            o.json = 1;
        else if (strcmp(argv[i], "--help") == 0)
            return usage(stdout), 0;
        else if (v && strcmp(argv[i], "--seconds") == 0)
            o.seconds = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && strcmp(argv[i], "--interval") == 0)
            o.interval = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && strcmp(argv[i], "--producers") == 0)
            o.producers = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && strcmp(argv[i], "--keys") == 0)
            o.keys = strtoull(v, NULL, 10), i++;
        else if (v && strcmp(argv[i], "--checkpoint-seconds") == 0)
            o.checkpoint_seconds = (unsigned)strtoul(v, NULL, 10), i++;
        else if (v && strcmp(argv[i], "--cache-mb") == 0)
            o.cache_mb = (unsigned)strtoul(v, NULL, 10), i++;
        else
            return usage(stderr), 2;
    }
    if (!o.seconds || !o.interval || !o.producers || o.producers > MAX_PRODUCERS || !o.keys) {
        usage(stderr);
        return 2;
    }
    g_sh = mmap(NULL, sizeof *g_sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_sh == MAP_FAILED)
        return perror("bench_soak: mmap"), 1;
    snprintf(g_base, sizeof g_base, "/tmp/rk-bench-soak.XXXXXX");
    if (!mkdtemp(g_base))
        return perror("bench_soak: mkdtemp"), 1;
    snprintf(g_dir[0], sizeof g_dir[0], "%s/primary", g_base);
    snprintf(g_dir[1], sizeof g_dir[1], "%s/standby", g_base);
    snprintf(g_ring, sizeof g_ring, "bench_soak.%d", (int)getpid());
    if (bench_free_ports(2, &port) != 0) {
        fprintf(stderr, "bench_soak: no two free TCP ports on 127.0.0.1 in %d..%d\n", BENCH_PORT_FIRST,
                BENCH_PORT_LAST);
        remove_tree(g_base);
        return 1;
    }
    snprintf(g_pub, sizeof g_pub, "tcp://127.0.0.1:%d", port);
    snprintf(g_serve, sizeof g_serve, "tcp://127.0.0.1:%d", port + 1);
    mkdir(g_dir[0], 0700);
    mkdir(g_dir[1], 0700);
    bench_set_fatal_handlers(on_fatal);
    alarm(o.seconds + 600);

    {
        long nproc;
        char cpu[128], kernel[128];
        double la[3] = {0};
        bench_read_host(&nproc, cpu, sizeof cpu, kernel, sizeof kernel);
        getloadavg(la, 3);
        if (!o.json) {
            struct node_config defaults;
            char cache[32];
            node_config_defaults(&defaults);
            snprintf(cache, sizeof cache, "%u MiB", o.cache_mb ? o.cache_mb : defaults.cache_mb);
            printf("bench_soak: %u producers unpaced (%d-byte values over %" PRIu64 " keys each, a MARK every %d),\n"
                   "a primary (min_replicas 1) and a standby on loopback, checkpoints every %u s, cache %s,\n"
                   "for %u s\n"
                   "machine: %ld CPUs, %s, %s; load average at start %.2f %.2f %.2f; data under %s\n\n",
                   o.producers, VALUE_SIZE, o.keys, MARK_EVERY, o.checkpoint_seconds, cache, o.seconds, nproc,
                   cpu, kernel, la[0], la[1], la[2], g_base);
        }
    }
    if ((g_node_pid[0] = start_node(0, &o)) <= 0 || (g_node_pid[1] = start_node(1, &o)) <= 0) {
        on_fatal(SIGTERM);
        return 1;
    }
    for (unsigned i = 0; i < o.producers; i++) {
        pa[i] = (struct producer_arg){.index = (int)i, .keys = o.keys};
        if ((g_prod_pid[i] = bench_spawn(producer, &pa[i])) <= 0) {
            on_fatal(SIGTERM);
            return 1;
        }
    }

    uint64_t t_start = now_ns(), t_prev = t_start, p_prev = 0;
    sample_node(0, &before[0]);
    sample_node(1, &before[1]);
    for (unsigned k = 1; (uint64_t)k * o.interval <= o.seconds; k++) {
        sleep_until(t_start + (uint64_t)k * o.interval * 1000000000ull);
        uint64_t t_now = now_ns(), p_now = produced_total(&o);
        sample_node(0, &now[0]);
        sample_node(1, &now[1]);
        print_interval((double)(t_now - t_start) / 1e9, (double)(t_now - t_prev) / 1e9, now, before, p_now,
                       p_prev, &o);
        memcpy(before, now, sizeof now);
        t_prev = t_now, p_prev = p_now;
    }
    sleep_until(t_start + (uint64_t)o.seconds * 1000000000ull);
    atomic_store_explicit(&g_sh->stop, 1, memory_order_release); /* the producers' loads acquire */
    unsigned n_replicated = 0;
    for (unsigned i = 0; i < o.producers; i++) {
        int status = 0;
        waitpid((pid_t)g_prod_pid[i], &status, 0);
        g_prod_pid[i] = 0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "bench_soak: producer %u failed (status %d)\n", i, status);
            rc = 1;
        }
        n_replicated += (unsigned)atomic_load(&g_sh->replicated[i]);
    }
    uint64_t total = produced_total(&o);
    double wrote_s = (double)(now_ns() - t_start) / 1e9;

    /* the standby has every entry the primary journaled: then both digests
     * are of the same state once each has applied it (the clean stop
     * applies everything journaled first) */
    struct node_sample last[2];
    sample_node(0, &last[0]);
    for (uint64_t t0 = now_ns(); now_ns() - t0 < (uint64_t)BOUND_MS * 1000000ull; usleep(20000)) {
        sample_node(1, &last[1]);
        if (last[1].journal_seq >= last[0].journal_seq)
            break;
    }
    double stop_p = stop_node(0), stop_s = stop_node(1);
    ring_unlink(g_ring);

    /* both states read back after the stops: equal entry by entry (a hash
     * of every key and value in scan order, and the count) */
    struct scan_sum sum[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++) {
        rk_state *st = NULL;
        sum[i].h = 0xcbf29ce484222325ull;
        if (rk_state_open(g_dir[i], &st) != 0 || rk_state_scan(st, "soak", NULL, 0, scan_add, &sum[i]) != 0) {
            fprintf(stderr, "bench_soak: cannot read the %s's state back\n", i ? "standby" : "primary");
            rc = 1;
        }
        rk_state_close(st);
    }
    int same = sum[0].h == sum[1].h && sum[0].n == sum[1].n;
    if (!same) {
        fprintf(stderr, "bench_soak: the standby's state (%" PRIu64 " keys) differs from the primary's (%" PRIu64
                        " keys)\n", sum[1].n, sum[0].n);
        rc = 1;
    }
    if (o.json)
        bench_print_json(json_pack("{s:s, s:s, s:I, s:o, s:I, s:i, s:o, s:o, s:b}", "bench", "soak", "kind", "end",
                                   "records", (json_int_t)total, "records_per_s", bench_real((double)total / wrote_s, 0),
                                   "journal_seq", (json_int_t)last[0].journal_seq, "producers_replicated",
                                   (int)n_replicated, "clean_stop_primary_s", bench_real(stop_p, 2),
                                   "clean_stop_standby_s", bench_real(stop_s, 2), "states_equal", same));
    else
        printf("\nend: %" PRIu64 " records (%.0f/s), %" PRIu64 " journal entries; last MARK acknowledged "
               "RK_REPLICATED for %u of %u producers\n"
               "clean stop (SIGTERM to exit, applying what is journaled): primary %.2f s, standby %.2f s\n"
               "check: the two states read back %s (%" PRIu64 " keys)\n",
               total, (double)total / wrote_s, last[0].journal_seq, n_replicated, o.producers, stop_p, stop_s,
               same ? "are equal" : "DIFFER", sum[0].n);
    if (n_replicated != o.producers)
        rc = 1;
    alarm(0);
    remove_tree(g_base);
    return rc;
}
