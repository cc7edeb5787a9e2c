/* bench_vs_redis.c -- ringkeep against Redis 7, end to end, in the same
 * run (issue 13): the README's headline benchmark.
 *
 * Each workload starts both systems fresh, on 127.0.0.1 ports from
 * bench_free_ports (BENCH_PORT_FIRST..LAST, checked free):
 *   ringkeep: a primary node and, when replicated, one standby (forked,
 *     repl_node_run, min_replicas = 1), checkpoints off;
 *   Redis: Debian's redis-server as primary and, when replicated, a
 *     replica (both appendonly yes, appendfsync always, no RDB saves, no
 *     AOF rewrites).
 * Producers (threads of this process) write batches of 64-byte values
 * under 9-byte keys (a permutation of a 1M-key space):
 *   ringkeep: rk_put per record, then rk_mark and rk_wait(RK_REPLICATED)
 *     (durable only: RK_DURABLE);
 *   Redis: one connection per producer, the batch's SETs pipelined with
 *     WAIT 1 0 after them (durable only: without WAIT), every reply read.
 * Workloads (the table): replicated batches of 1000, of 100;
 * durable only, batches of 1000; 4 producers x batches of 100, replicated.
 * Runs of --seconds alternate between the systems (which one goes first
 * alternates too) for --pairs pairs; each pair prints both sides and the
 * ratios ringkeep / Redis of throughput, p50 and p99 batch latency (from
 * the batch's first write to its acknowledgement); the medians of the
 * ratios close each workload.  Between runs both systems are left to go
 * idle (ringkeep: apply caught up on every node), and server CPU is counted
 * from a run's start to then: per record, per node and per thread (names as
 * in top -H; /proc/PID/task/TID/schedstat).  ringkeep's journal entries per
 * acknowledged batch come from the primary's status ("batches").  After
 * each replicated workload the standby's state digest must equal the
 * primary's (exit 1 otherwise).  Every wait is bounded (BOUND_MS); nothing
 * here fails on time. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_node_util.h"
#include "bench_util.h"
#include "node/client.h"
#include "node/node.h"
#include "persist/config.h"
#include "shm/ring.h"
#include "ringkeep.h"

#define PROG "bench_vs_redis"
#define VALUE_LEN 64
#define KEY_LEN 9 /* "k" and 8 digits */
#define KEY_SPACE 1000000u
#define MAX_PRODUCERS 4
#define MAX_PAIRS 50
#define BOUND_MS 600000 /* no wait here takes this long unless something is broken */
#define MAX_THREADS 64  /* threads of one server process we account */

enum { RINGKEEP, REDIS };
static const char *const system_name[] = {"ringkeep", "redis"};

struct workload {
    const char *name;
    int n_producers, batch, replicated;
};

static const struct workload workloads[] = {
    {"replicated, batches of 1000", 1, 1000, 1},
    {"replicated, batches of 100", 1, 100, 1},
    {"durable only (no standby; Redis without WAIT), batches of 1000", 1, 1000, 0},
    {"4 producers x batches of 100, replicated", 4, 100, 1},
};
#define N_WORKLOADS (int)(sizeof workloads / sizeof workloads[0])
/* per workload: medians of the ratios of throughput, p50, p99; entries per
 * batch; server CPU per record of ringkeep, of Redis */
#define N_FIGURES 6

/* ------------------------------------------------------------ servers */

static char base_dir[128], rk_dir[2][160], redis_dir[2][160], ring_name[64];
static int port_base;          /* 4 ports: ringkeep publish, serve; redis primary, replica */
static pid_t server_pid[2][2]; /* [system][0 primary, 1 standby/replica] */

static void kill_servers(void)
{
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 2; i++)
            if (server_pid[s][i] > 0) {
                kill(server_pid[s][i], SIGTERM);
                waitpid(server_pid[s][i], NULL, 0);
                server_pid[s][i] = 0;
            }
}

static void die(const char *fmt, const char *what)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    kill_servers();
    if (ring_name[0])
        ring_unlink(ring_name);
    if (base_dir[0])
        remove_tree(base_dir);
    exit(1);
}

static void on_signal(int sig)
{
    (void)sig;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 2; i++) {
            volatile sig_atomic_t pid = server_pid[s][i];
            bench_kill_and_reap(&pid);
        }
    if (base_dir[0])
        bench_remove_tree_by_rm(base_dir);
    _exit(1);
}

struct rk_node_arg {
    int standby, replicated;
};

static int rk_node_main(const void *p)
{
    const struct rk_node_arg *a = p;
    struct node_config c;
    char err[512], publish[64], serve[64];
    int rc;

    /* the main thread as the ringkeep binary's is named in top -H */
    prctl(PR_SET_NAME, "ringkeep");
    snprintf(publish, sizeof publish, "tcp://127.0.0.1:%d", port_base);
    snprintf(serve, sizeof serve, "tcp://127.0.0.1:%d", port_base + 1);
    node_config_defaults(&c);
    rc = node_config_set(&c, "node", "data_dir", rk_dir[a->standby], "bench", err, sizeof err) ||
         node_config_set(&c, "node", "log_level", "warn", "bench", err, sizeof err) ||
         node_config_set(&c, "checkpoint", "every_seconds", "0", "bench", err, sizeof err);
    if (a->standby)
        rc = rc || node_config_set(&c, "node", "role", "standby", "bench", err, sizeof err) ||
             node_config_set(&c, "replication", "node_id", "bench-standby", "bench", err, sizeof err) ||
             node_config_set(&c, "replication", "primary_publish", publish, "bench", err, sizeof err) ||
             node_config_set(&c, "replication", "primary_serve", serve, "bench", err, sizeof err);
    else
        rc = rc || node_config_set(&c, "ring", "name", ring_name, "bench", err, sizeof err) ||
             node_config_set(&c, "ring", "capacity", "64M", "bench", err, sizeof err);
    if (!a->standby && a->replicated)
        rc = rc || node_config_set(&c, "replication", "publish", publish, "bench", err, sizeof err) ||
             node_config_set(&c, "replication", "serve", serve, "bench", err, sizeof err) ||
             node_config_set(&c, "replication", "min_replicas", "1", "bench", err, sizeof err) ||
             /* loopback, this run's own ports; Redis's replication is not
              * authenticated either */
             node_config_set(&c, "replication", "insecure_acks", "yes", "bench", err, sizeof err);
    if (rc || node_config_check(&c, err, sizeof err)) {
        fprintf(stderr, PROG ": node config: %s\n", err);
        return 1;
    }
    return repl_node_run(&c);
}

static int rk_status(const char *dir, const char *key, uint64_t *out)
{
    char *reply = NULL;
    int rc = node_request(dir, "status", 5000, &reply);

    if (rc == 0)
        rc = bench_json_field(reply, key, 0, out);
    free(reply);
    return rc;
}

static int rk_status_hex(const char *dir, const char *key, uint64_t *out)
{
    char *reply = NULL;
    int rc = node_request(dir, "status", 5000, &reply);

    if (rc == 0)
        rc = bench_json_field(reply, key, 1, out);
    free(reply);
    return rc;
}

static void rk_start_node(int standby, int replicated)
{
    struct rk_node_arg a = {standby, replicated};
    uint64_t pid = 0;

    if (mkdir(rk_dir[standby], 0700) != 0)
        die("cannot make %s", rk_dir[standby]);
    server_pid[RINGKEEP][standby] = bench_spawn(rk_node_main, &a);
    if (server_pid[RINGKEEP][standby] < 0)
        die("%s", "fork failed");
    for (int i = 0; i < BOUND_MS / 10; i++) {
        if (rk_status(rk_dir[standby], "pid", &pid) == 0 && pid == (uint64_t)server_pid[RINGKEEP][standby])
            return;
        if (waitpid(server_pid[RINGKEEP][standby], NULL, WNOHANG) == server_pid[RINGKEEP][standby]) {
            server_pid[RINGKEEP][standby] = 0;
            die("the ringkeep node in %s exited at start (see its messages above)", rk_dir[standby]);
        }
        usleep(10000);
    }
    die("the ringkeep node in %s did not come up", rk_dir[standby]);
}

/* ---- a minimal RESP client: blocking socket, commands written whole */

static int redis_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads n_replies one-line replies into buf (cap bytes); 0, or -1 when the
 * connection fails or the replies do not fit. */
static int read_replies(int fd, char *buf, size_t cap, int n_replies, size_t *len)
{
    size_t have = 0;
    int lines = 0;

    while (lines < n_replies) {
        ssize_t n = read(fd, buf + have, cap - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        for (ssize_t i = 0; i < n; i++)
            lines += buf[have + (size_t)i] == '\n';
        have += (size_t)n;
        if (have == cap && lines < n_replies)
            return -1;
    }
    *len = have;
    return 0;
}

/* Sends one command (args as RESP) and reads its one-line reply into
 * reply; 0 or -1. */
static int redis_command(int fd, char *reply, size_t reply_size, int argc, const char *const *argv)
{
    char buf[1024];
    size_t len = 0, got = 0;

    len += (size_t)snprintf(buf + len, sizeof buf - len, "*%d\r\n", argc);
    for (int i = 0; i < argc && len < sizeof buf; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
    if (len >= sizeof buf || write_all(fd, buf, len) != 0 || read_replies(fd, reply, reply_size - 1, 1, &got))
        return -1;
    reply[got] = '\0';
    return 0;
}

static void redis_start(int replica)
{
    char port[16], primary_port[16], logfile[200];
    pid_t parent = getpid(), pid;

    if (mkdir(redis_dir[replica], 0700) != 0)
        die("cannot make %s", redis_dir[replica]);
    snprintf(port, sizeof port, "%d", port_base + 2 + replica);
    snprintf(primary_port, sizeof primary_port, "%d", port_base + 2);
    snprintf(logfile, sizeof logfile, "%s/redis.log", redis_dir[replica]);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        const char *argv[40];
        int n = 0;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(1);
        argv[n++] = "redis-server";
        argv[n++] = "--port";
        argv[n++] = port;
        argv[n++] = "--bind";
        argv[n++] = "127.0.0.1";
        argv[n++] = "--dir";
        argv[n++] = redis_dir[replica];
        argv[n++] = "--logfile";
        argv[n++] = logfile;
        argv[n++] = "--daemonize";
        argv[n++] = "no";
        argv[n++] = "--appendonly";
        argv[n++] = "yes";
        argv[n++] = "--appendfsync";
        argv[n++] = "always";
        argv[n++] = "--save";
        argv[n++] = "";
        argv[n++] = "--auto-aof-rewrite-percentage";
        argv[n++] = "0";
        if (replica) {
            argv[n++] = "--replicaof";
            argv[n++] = "127.0.0.1";
            argv[n++] = primary_port;
        }
        argv[n] = NULL;
        execvp("redis-server", (char *const *)argv);
        fprintf(stderr,
                PROG ": cannot run redis-server: %s (install Debian's redis-server: ./setup.sh does)\n",
                strerror(errno));
        _exit(127);
    }
    if (pid < 0)
        die("%s", "fork failed");
    server_pid[REDIS][replica] = pid;
    for (int i = 0; i < BOUND_MS / 10; i++) {
        char reply[64];
        int fd = redis_connect(port_base + 2 + replica), up = 0;
        if (fd >= 0) {
            const char *ping[] = {"PING"};
            up = redis_command(fd, reply, sizeof reply, 1, ping) == 0 && strncmp(reply, "+PONG", 5) == 0;
            close(fd);
        }
        if (up)
            break;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            server_pid[REDIS][replica] = 0;
            die("redis-server exited at start (see %s)", logfile);
        }
        usleep(10000);
    }
}

/* Waits until the Redis primary counts its replica as online. */
static void redis_wait_replica(void)
{
    for (int i = 0; i < BOUND_MS / 10; i++) {
        char reply[64];
        int fd = redis_connect(port_base + 2), ok = 0;
        if (fd >= 0) {
            const char *wait1[] = {"WAIT", "1", "100"};
            ok = redis_command(fd, reply, sizeof reply, 3, wait1) == 0 && strncmp(reply, ":1", 2) == 0;
            close(fd);
        }
        if (ok)
            return;
        usleep(10000);
    }
    die("%s", "the Redis replica did not come online");
}

/* ------------------------------------------------------------ CPU */

struct thread_cpu {
    pid_t tid;
    char name[16];
    uint64_t ns;
};

struct proc_cpu {
    int n;
    struct thread_cpu t[MAX_THREADS];
};

/* Every thread of pid: its name (comm) and CPU time (schedstat, ns). */
static void read_proc_cpu(pid_t pid, struct proc_cpu *out)
{
    char path[96];
    DIR *d;
    struct dirent *e;

    out->n = 0;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    if (pid <= 0 || !(d = opendir(path)))
        return;
    while ((e = readdir(d)) && out->n < MAX_THREADS) {
        struct thread_cpu *t = &out->t[out->n];
        unsigned long long ns = 0;
        FILE *f;
        if (e->d_name[0] == '.')
            continue;
        t->tid = (pid_t)atoi(e->d_name);
        snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", (int)pid, (int)t->tid);
        if (!(f = fopen(path, "r")))
            continue;
        if (fscanf(f, "%llu", &ns) != 1)
            ns = 0;
        fclose(f);
        snprintf(path, sizeof path, "/proc/%d/task/%d/comm", (int)pid, (int)t->tid);
        t->name[0] = '\0';
        if ((f = fopen(path, "r"))) {
            if (fgets(t->name, sizeof t->name, f))
                t->name[strcspn(t->name, "\n")] = '\0';
            fclose(f);
        }
        t->ns = ns;
        out->n++;
    }
    closedir(d);
}

/* CPU per thread name of a node, summed over a workload's runs. */
struct cpu_account {
    int n;
    char name[MAX_THREADS][16];
    double ns[MAX_THREADS];
};

static void account(struct cpu_account *acc, const struct proc_cpu *before, const struct proc_cpu *after)
{
    for (int i = 0; i < after->n; i++) {
        uint64_t was = 0;
        int k;
        for (int j = 0; j < before->n; j++)
            if (before->t[j].tid == after->t[i].tid)
                was = before->t[j].ns;
        for (k = 0; k < acc->n && strcmp(acc->name[k], after->t[i].name) != 0; k++)
            ;
        if (k == acc->n) {
            if (acc->n == MAX_THREADS)
                continue;
            snprintf(acc->name[k], sizeof acc->name[k], "%s", after->t[i].name);
            acc->ns[k] = 0;
            acc->n++;
        }
        acc->ns[k] += (double)(after->t[i].ns - was);
    }
}

static double account_total(const struct cpu_account *acc)
{
    double ns = 0;
    for (int i = 0; i < acc->n; i++)
        ns += acc->ns[i];
    return ns;
}

/* ------------------------------------------------------------ producers */

struct producer {
    int system, index, batch, replicated;
    uint64_t deadline_ns, max_batches; /* a run ends at the first */
    uint64_t *latency;                 /* ns per batch */
    uint64_t n_batches, n_records;
    uint64_t next_key; /* position in the key permutation */
    uint64_t rng;
    int rc; /* 0 or a failure: the message is printed */
    /* ringkeep */
    rk_ring *ring;
    uint16_t table;
    uint64_t height;
    /* Redis */
    int fd;
    char *cmd, *reply;
    size_t cmd_cap, reply_cap;
};

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* The record's key (KEY_LEN bytes, no terminator kept) and value. */
static void make_record(struct producer *p, char key[KEY_LEN + 1], uint8_t val[VALUE_LEN])
{
    /* 999983 is prime and coprime with the key space: a permutation */
    snprintf(key, KEY_LEN + 1, "k%08" PRIu64,
             (p->next_key++ * 999983u + (uint64_t)p->index * 250000u) % KEY_SPACE);
    for (int i = 0; i < VALUE_LEN; i += 8) {
        uint64_t x = xorshift(&p->rng);
        memcpy(val + i, &x, 8);
    }
}

static int rk_batch(struct producer *p)
{
    char key[KEY_LEN + 1];
    uint8_t val[VALUE_LEN];
    uint64_t lsn = 0;
    int rc;

    for (int i = 0; i < p->batch; i++) {
        make_record(p, key, val);
        if ((rc = rk_put(p->ring, p->table, key, KEY_LEN, val, VALUE_LEN, NULL)) != 0)
            return rc;
    }
    if ((rc = rk_mark(p->ring, ++p->height, &lsn)) != 0)
        return rc;
    return rk_wait(p->ring, lsn, p->replicated ? RK_REPLICATED : RK_DURABLE, BOUND_MS);
}

static int redis_batch(struct producer *p)
{
    char key[KEY_LEN + 1];
    uint8_t val[VALUE_LEN];
    size_t len = 0, got = 0;
    int n_replies = p->batch + p->replicated;
    static const char wait_cmd[] = "*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$1\r\n0\r\n";

    for (int i = 0; i < p->batch; i++) {
        make_record(p, key, val);
        len +=
            (size_t)sprintf(p->cmd + len, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", KEY_LEN, key, VALUE_LEN);
        memcpy(p->cmd + len, val, VALUE_LEN);
        memcpy(p->cmd + len + VALUE_LEN, "\r\n", 2);
        len += VALUE_LEN + 2;
    }
    if (p->replicated) {
        memcpy(p->cmd + len, wait_cmd, sizeof wait_cmd - 1);
        len += sizeof wait_cmd - 1;
    }
    if (write_all(p->fd, p->cmd, len) != 0 ||
        read_replies(p->fd, p->reply, p->reply_cap, n_replies, &got) != 0)
        return EIO;
    /* every SET answered +OK, the WAIT :1 (one replica acknowledged) */
    for (int i = 0; i < p->batch; i++)
        if (memcmp(p->reply + (size_t)i * 5, "+OK\r\n", 5) != 0)
            return RK_ECORRUPT;
    if (p->replicated &&
        (got != (size_t)p->batch * 5 + 4 || memcmp(p->reply + (size_t)p->batch * 5, ":1\r\n", 4)))
        return RK_ECORRUPT;
    return 0;
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;

    while (p->n_batches < p->max_batches && now_ns() < p->deadline_ns) {
        uint64_t t0 = now_ns();
        int rc = p->system == RINGKEEP ? rk_batch(p) : redis_batch(p);
        if (rc) {
            fprintf(stderr, PROG ": %s producer %d: a batch failed: %s\n", system_name[p->system], p->index,
                    p->system == RINGKEEP ? rk_strerror(rc) : "the replies were not +OK (and :1 for WAIT)");
            p->rc = rc;
            break;
        }
        p->latency[p->n_batches++] = now_ns() - t0;
        p->n_records += (uint64_t)p->batch;
    }
    return NULL;
}

/* ------------------------------------------------------------ runs */

struct run_result {
    double records_per_s, p50_us, p99_us;
    double cpu_ns[2]; /* primary, standby */
    uint64_t n_records, n_batches, n_entries;
};

/* Waits until ringkeep's nodes have applied all they journaled. */
static void rk_wait_idle(int replicated)
{
    for (int i = 0; i < BOUND_MS / 5; i++) {
        uint64_t lag = 1, pj = 0, sj = 0, sa = 0;
        int idle = rk_status(rk_dir[0], "apply_lag_entries", &lag) == 0 && lag == 0;
        if (idle && replicated)
            idle = rk_status(rk_dir[0], "journal_seq", &pj) == 0 &&
                   rk_status(rk_dir[1], "journal_seq", &sj) == 0 &&
                   rk_status(rk_dir[1], "applied_seq", &sa) == 0 && sj == pj && sa == sj;
        if (idle)
            return;
        usleep(5000);
    }
    die("%s", "ringkeep's apply did not catch up");
}

static struct producer producers[MAX_PRODUCERS];

static void run_once(int system, const struct workload *w, double seconds, struct cpu_account acc[2],
                     struct run_result *res)
{
    struct proc_cpu before[2], after[2];
    pthread_t th[MAX_PRODUCERS];
    uint64_t entries0 = 0, entries1 = 0, t0, n_lat = 0, *lat;
    /* room for 20M records/s: far above either system here */
    uint64_t cap = (uint64_t)(seconds * 2e7 / w->batch) + 1000;
    memset(res, 0, sizeof *res);
    if (system == RINGKEEP && rk_status(rk_dir[0], "batches", &entries0) != 0)
        die("%s", "cannot read the primary's status");
    for (int i = 0; i < 2; i++)
        read_proc_cpu(server_pid[system][i], &before[i]);
    t0 = now_ns();
    for (int i = 0; i < w->n_producers; i++) {
        struct producer *p = &producers[i];
        p->system = system;
        p->batch = w->batch;
        p->replicated = w->replicated;
        p->deadline_ns = t0 + (uint64_t)(seconds * 1e9);
        p->n_batches = p->n_records = 0;
        p->rc = 0;
        if (!(p->latency = malloc(cap * sizeof *p->latency)))
            die("%s", "out of memory");
        p->max_batches = cap;
        if (pthread_create(&th[i], NULL, producer_main, p) != 0)
            die("%s", "cannot start a producer thread");
    }
    for (int i = 0; i < w->n_producers; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(now_ns() - t0) / 1e9;
    for (int i = 0; i < w->n_producers; i++) {
        if (producers[i].rc)
            die("%s", "a producer failed (above)");
        if (producers[i].n_batches == producers[i].max_batches)
            die("%s", "a producer reached the batch-count guard: shorten --seconds");
        res->n_records += producers[i].n_records;
        res->n_batches += producers[i].n_batches;
    }
    if (system == RINGKEEP)
        rk_wait_idle(w->replicated);
    for (int i = 0; i < 2; i++) {
        read_proc_cpu(server_pid[system][i], &after[i]);
        account(&acc[i], &before[i], &after[i]);
        struct cpu_account one = {0};
        account(&one, &before[i], &after[i]);
        res->cpu_ns[i] = account_total(&one);
    }
    if (system == RINGKEEP && rk_status(rk_dir[0], "batches", &entries1) != 0)
        die("%s", "cannot read the primary's status");
    res->n_entries = entries1 - entries0;
    if (!(lat = malloc((res->n_batches + 1) * sizeof *lat)))
        die("%s", "out of memory");
    for (int i = 0; i < w->n_producers; i++) {
        memcpy(lat + n_lat, producers[i].latency, producers[i].n_batches * sizeof *lat);
        n_lat += producers[i].n_batches;
        free(producers[i].latency);
        producers[i].latency = NULL;
    }
    qsort(lat, n_lat, sizeof *lat, cmp_u64);
    res->records_per_s = (double)res->n_records / secs;
    res->p50_us = (double)quantile(lat, n_lat, 0.50) / 1e3;
    res->p99_us = (double)quantile(lat, n_lat, 0.99) / 1e3;
    free(lat);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void setup_producers(const struct workload *w)
{
    for (int i = 0; i < w->n_producers; i++) {
        struct producer *p = &producers[i];
        char name[16];
        memset(p, 0, sizeof *p);
        p->index = i;
        p->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        snprintf(name, sizeof name, "p%d", i);
        if (bench_attach(PROG, ring_name, name, BOUND_MS, &p->ring) != 0 ||
            rk_table(p->ring, "bench", &p->table) != 0)
            die("%s", "cannot attach a producer to ringkeep's ring");
        if ((p->fd = redis_connect(port_base + 2)) < 0)
            die("%s", "cannot connect to the Redis primary");
        p->cmd_cap = (size_t)w->batch * 128 + 64;
        p->reply_cap = (size_t)w->batch * 5 + 64;
        if (!(p->cmd = malloc(p->cmd_cap)) || !(p->reply = malloc(p->reply_cap)))
            die("%s", "out of memory");
    }
}

static void teardown_producers(const struct workload *w)
{
    for (int i = 0; i < w->n_producers; i++) {
        rk_ring_detach(producers[i].ring);
        close(producers[i].fd);
        free(producers[i].cmd);
        free(producers[i].reply);
        memset(&producers[i], 0, sizeof producers[i]);
    }
}

static void print_cpu(const char *label, const struct cpu_account *acc, uint64_t n_records)
{
    printf("    %-18s %6.2f us/record:", label, account_total(acc) / 1e3 / (double)n_records);
    for (int i = 0; i < acc->n; i++)
        if (acc->ns[i] / 1e3 / (double)n_records >= 0.005)
            printf(" %s %.2f", acc->name[i], acc->ns[i] / 1e3 / (double)n_records);
    printf("\n");
}

/* Runs workload w: both systems started, pairs of runs, the medians. */
static void run_workload(int wi, int n_pairs, double seconds, double medians[N_WORKLOADS][N_FIGURES])
{
    const struct workload *w = &workloads[wi];
    struct cpu_account acc[2][2];
    struct run_result res[2];
    double r_tput[MAX_PAIRS], r_p50[MAX_PAIRS], r_p99[MAX_PAIRS], cpu_rec[2][MAX_PAIRS];
    double entries_per_batch[MAX_PAIRS];
    uint64_t total_records[2] = {0, 0};

    memset(acc, 0, sizeof acc);
    ring_unlink(ring_name);
    uint64_t started_ns = now_ns();
    rk_start_node(0, w->replicated);
    if (w->replicated)
        rk_start_node(1, 1);
    redis_start(0);
    if (w->replicated) {
        redis_start(1);
        redis_wait_replica();
    }
    setup_producers(w);
    printf("\n## %s (%d producer%s, %d x 64-byte puts per batch, %.1f s runs)\n\n", w->name, w->n_producers,
           w->n_producers > 1 ? "s" : "", w->batch, seconds);
    if (w->replicated) {
        double waited = bench_wait_publish_early(rk_dir[0]);
        if (waited < 0)
            printf("(ringkeep's primary did not publish before its fsync within 30 s: measured without)\n\n");
        else
            printf("(ringkeep's primary publishes entries before its fsync: waited %.1f s for it, %.1f s after "
                   "the nodes' start)\n\n",
                   waited, (double)(now_ns() - started_ns) / 1e9);
    }
    /* a short run of each, not counted: connections, caches, first pages */
    {
        struct cpu_account scratch[2] = {0};
        run_once(RINGKEEP, w, seconds / 4, scratch, &res[0]);
        memset(scratch, 0, sizeof scratch);
        run_once(REDIS, w, seconds / 4, scratch, &res[1]);
    }
    printf("| pair | ringkeep records/s | p50 / p99 us | entries/batch | redis records/s | p50 / p99 us "
           "| throughput x | p50 x | p99 x |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int pair = 0; pair < n_pairs; pair++) {
        for (int k = 0; k < 2; k++) {
            int system = (pair + k) % 2; /* who goes first alternates */
            run_once(system, w, seconds, acc[system], &res[system]);
        }
        r_tput[pair] = res[0].records_per_s / res[1].records_per_s;
        r_p50[pair] = res[0].p50_us / res[1].p50_us;
        r_p99[pair] = res[0].p99_us / res[1].p99_us;
        entries_per_batch[pair] = (double)res[0].n_entries / (double)res[0].n_batches;
        for (int s = 0; s < 2; s++) {
            cpu_rec[s][pair] = (res[s].cpu_ns[0] + res[s].cpu_ns[1]) / 1e3 / (double)res[s].n_records;
            total_records[s] += res[s].n_records;
        }
        printf("| %d | %.0f | %.0f / %.0f | %.3f | %.0f | %.0f / %.0f | %.2f | %.2f | %.2f |\n", pair + 1,
               res[0].records_per_s, res[0].p50_us, res[0].p99_us, entries_per_batch[pair],
               res[1].records_per_s, res[1].p50_us, res[1].p99_us, r_tput[pair], r_p50[pair], r_p99[pair]);
        fflush(stdout);
    }
    medians[wi][0] = median(r_tput, n_pairs);
    medians[wi][1] = median(r_p50, n_pairs);
    medians[wi][2] = median(r_p99, n_pairs);
    medians[wi][3] = median(entries_per_batch, n_pairs);
    double cpu_rk = median(cpu_rec[0], n_pairs), cpu_redis = median(cpu_rec[1], n_pairs);
    medians[wi][4] = cpu_rk;
    medians[wi][5] = cpu_redis;
    printf(
        "\nmedians: throughput %.2fx, p50 %.2fx, p99 %.2fx (ringkeep / Redis); ringkeep journal entries per "
        "acknowledged batch %.3f\n",
        medians[wi][0], medians[wi][1], medians[wi][2], medians[wi][3]);
    printf(
        "server CPU per record (both nodes, median of the runs): ringkeep %.2f us, Redis %.2f us (%.2fx)\n",
        cpu_rk, cpu_redis, cpu_rk / cpu_redis);
    printf(
        "  per thread (us per record, all runs; ringkeep's main thread is the drain on the primary and the "
        "receiver on the standby):\n");
    print_cpu("ringkeep primary", &acc[0][0], total_records[0]);
    if (w->replicated)
        print_cpu("ringkeep standby", &acc[0][1], total_records[0]);
    print_cpu("redis primary", &acc[1][0], total_records[1]);
    if (w->replicated)
        print_cpu("redis replica", &acc[1][1], total_records[1]);
    teardown_producers(w);
    if (w->replicated) {
        uint64_t pd = 0, sd = 1;
        rk_wait_idle(1);
        if (rk_status_hex(rk_dir[0], "state_digest", &pd) != 0 ||
            rk_status_hex(rk_dir[1], "state_digest", &sd) != 0 || pd != sd)
            die("%s", "ringkeep's standby's state digest differs from the primary's");
        printf("check: ringkeep's standby's state digest equals the primary's (%016" PRIx64 ")\n", pd);
    }
    kill_servers();
    ring_unlink(ring_name);
    for (int i = 0; i < 2; i++) {
        remove_tree(rk_dir[i]);
        remove_tree(redis_dir[i]);
    }
}

/* Issue 13's targets, met or not, with this run's figures. */
static void print_targets(double m[N_WORKLOADS][N_FIGURES], int only)
{
    static const double min_tput[N_WORKLOADS] = {5, 2, 8, 3}, max_p50[N_WORKLOADS] = {0.5, 0.5, 0, 0};

    printf("\ntargets (issue 13; this run's medians):\n");
    for (int wi = 0; wi < N_WORKLOADS; wi++) {
        if (only && only != wi + 1)
            continue;
        int ok = m[wi][0] >= min_tput[wi] && (!max_p50[wi] || m[wi][1] <= max_p50[wi]);
        printf("  %s: throughput %.2fx >= %.0fx", workloads[wi].name, m[wi][0], min_tput[wi]);
        if (max_p50[wi])
            printf(", p50 %.2fx <= %.1fx", m[wi][1], max_p50[wi]);
        printf(": %s\n", met(ok));
    }
    if (!only || only == 2)
        printf("  server CPU per record at batches of 100, ringkeep %.2f us <= Redis %.2f us: %s\n", m[1][4],
               m[1][5], met(m[1][4] <= m[1][5]));
    for (int wi = 0; wi < 2; wi++)
        if (!only || only == wi + 1)
            printf("  journal entries per acknowledged batch (%s) %.3f <= 1.05: %s\n", workloads[wi].name,
                   m[wi][3], met(m[wi][3] <= 1.05));
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " [--pairs N] [--seconds S] [--workload I]\n"
            "  --pairs N     alternating runs per workload (default 5; 9 for the README's figures)\n"
            "  --seconds S   length of one run (default 2)\n"
            "  --workload I  only workload I (1..%d)\n"
            "Needs Debian's redis-server on PATH.  TCP ports: four free ones in 127.0.0.1:%d..%d.\n",
            N_WORKLOADS, BENCH_PORT_FIRST, BENCH_PORT_LAST);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"pairs", required_argument, NULL, 'p'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"workload", required_argument, NULL, 'w'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int n_pairs = 5, only = 0, c;
    double seconds = 2, medians[N_WORKLOADS][N_FIGURES];
    long nproc;
    char cpu[128], kernel[128];

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            n_pairs = atoi(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'w':
            only = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || n_pairs < 1 || n_pairs > MAX_PAIRS || !(seconds > 0 && seconds <= 600) ||
        only < 0 || only > N_WORKLOADS) {
        usage(stderr);
        return 2;
    }
    if (bench_free_ports(4, &port_base) != 0) {
        fprintf(stderr, PROG ": no four free TCP ports on 127.0.0.1 in %d..%d\n", BENCH_PORT_FIRST,
                BENCH_PORT_LAST);
        return 1;
    }
    snprintf(base_dir, sizeof base_dir, "/tmp/rk-bench-vs-redis.%d", (int)getpid());
    snprintf(ring_name, sizeof ring_name, "bench_vs_redis.%d", (int)getpid());
    if (mkdir(base_dir, 0700) != 0) {
        fprintf(stderr, PROG ": cannot make %s: %s\n", base_dir, strerror(errno));
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        snprintf(rk_dir[i], sizeof rk_dir[i], "%s/ringkeep-%s", base_dir, i ? "standby" : "primary");
        snprintf(redis_dir[i], sizeof redis_dir[i], "%s/redis-%s", base_dir, i ? "replica" : "primary");
    }
    bench_set_fatal_handlers(on_signal);
    signal(SIGPIPE, SIG_IGN);
    bench_read_host(&nproc, cpu, sizeof cpu, kernel, sizeof kernel);
    printf("# ringkeep vs Redis 7 (same machine, same run: %ld CPUs, %s, Linux %s; ports %d..%d)\n", nproc,
           cpu, kernel, port_base, port_base + 3);
    printf("ringkeep: primary + one standby (min_replicas 1), batches of 64-byte puts, MARK,\n"
           "  rk_wait(RK_REPLICATED); durable only: the primary alone, rk_wait(RK_DURABLE).\n"
           "Redis: redis-server primary + replica, appendonly yes, appendfsync always; pipelined SETs,\n"
           "  WAIT 1 0; durable only: the primary alone, no WAIT.\n");
    for (int wi = 0; wi < N_WORKLOADS; wi++)
        if (!only || only == wi + 1)
            run_workload(wi, n_pairs, seconds, medians);
    printf("\n# medians of %d pairs, ringkeep / Redis\n\n| workload | throughput | p50 batch latency | p99 | "
           "ringkeep entries per batch |\n|---|---|---|---|---|\n",
           n_pairs);
    for (int wi = 0; wi < N_WORKLOADS; wi++)
        if (!only || only == wi + 1)
            printf("| %s | %.2fx | %.2fx | %.2fx | %.3f |\n", workloads[wi].name, medians[wi][0],
                   medians[wi][1], medians[wi][2], medians[wi][3]);
    print_targets(medians, only);
    remove_tree(base_dir);
    return 0;
}
