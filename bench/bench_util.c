/* bench_util.c -- small helpers shared by the benchmarks: JSON strings and
 * arrays, the monotonic clock in ns and sleeps on it, exact quantiles of
 * sorted samples, "met"/"not met" for target lines, removing a tree, the
 * fatal-signal handlers, forking children, a number in a status reply,
 * attaching a producer, and the waiter thread that rk_waits on sampled
 * LSNs.  Any thread. */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

json_t *bench_real(double v, int decimals)
{
    double scale = pow(10, decimals);

    return json_real(round(v * scale) / scale);
}

json_t *bench_int(double v)
{
    return json_integer((json_int_t)llround(v));
}

json_t *bench_ints(const double *v, int n)
{
    json_t *a = json_array();

    for (int i = 0; a && i < n; i++)
        if (json_array_append_new(a, bench_int(v[i])) != 0) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

void bench_print_json(json_t *obj)
{
    if (!obj || json_dumpf(obj, stdout, JSON_COMPACT | JSON_REAL_PRECISION(15)) != 0)
        fprintf(stderr, "bench: cannot write the JSON (out of memory)\n");
    else
        putchar('\n');
    json_decref(obj);
}

const char *met(int ok)
{
    return ok ? "met" : "not met";
}

uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sleep_until(uint64_t t_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(t_ns / 1000000000u), .tv_nsec = (long)(t_ns % 1000000000u)};

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

void sleep_ns(uint64_t ns)
{
    sleep_until(now_ns() + ns);
}

int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

uint64_t quantile(const uint64_t *v, uint64_t n, double q)
{
    uint64_t rank = (uint64_t)(q * (double)n);

    if ((double)rank < q * (double)n)
        rank++;
    return n ? v[rank ? rank - 1 : 0] : 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void bench_read_host(long *nproc, char *cpu, size_t cpu_size, char *kernel, size_t kernel_size)
{
    char line[512];
    struct utsname u;
    FILE *f = fopen("/proc/cpuinfo", "r");

    *nproc = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(cpu, cpu_size, "unknown");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(cpu, cpu_size, "%s", colon + 2);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
    if (uname(&u) == 0)
        snprintf(kernel, kernel_size, "%.30s %.90s", u.sysname, u.release);
    else
        snprintf(kernel, kernel_size, "unknown");
}

void bench_kill_and_reap(volatile sig_atomic_t *pid)
{
    if (*pid > 0) {
        kill((pid_t)*pid, SIGKILL);
        waitpid((pid_t)*pid, NULL, 0);
        *pid = 0;
    }
}

void bench_remove_tree_by_rm(const char *path)
{
    pid_t pid = fork();

    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", "--", path, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

void bench_set_fatal_handlers(void (*handler)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

pid_t bench_spawn(bench_child_fn fn, const void *arg)
{
    pid_t parent = getpid(), pid;

    fflush(NULL); /* no buffered output duplicated into the child */
    pid = fork();
    if (pid == 0) {
        bench_set_fatal_handlers(SIG_DFL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(1);
        _exit(fn(arg) == 0 ? 0 : 1);
    }
    return pid;
}

int bench_json_field(const char *json, const char *key, int hex, uint64_t *out)
{
    json_t *obj = json_loads(json, 0, NULL), *v = json_object_get(obj, key);
    int rc = 0;

    if (json_is_integer(v) && !hex)
        *out = (uint64_t)json_integer_value(v);
    else if (json_is_string(v) && hex)
        *out = strtoull(json_string_value(v), NULL, 16);
    else
        rc = RK_ENOTFOUND;
    json_decref(obj);
    return rc;
}

/* 1 if nothing listens on or is bound to 127.0.0.1:port now. */
static int port_free(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    if (fd < 0)
        return 0;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int bench_free_ports(int n, int *first)
{
    int span = BENCH_PORT_LAST - BENCH_PORT_FIRST + 1, n_blocks = span / n;
    int start = (int)(getpid() % n_blocks);

    for (int i = 0; i < n_blocks; i++) {
        int base = BENCH_PORT_FIRST + (start + i) % n_blocks * n, ok = 1;
        for (int p = base; ok && p < base + n; p++)
            ok = port_free(p);
        if (ok) {
            *first = base;
            return 0;
        }
    }
    return RK_EBUSY;
}

int bench_attach(const char *prog, const char *ring_name, const char *producer, int full_timeout_ms,
                 rk_ring **out)
{
    char errmsg[256] = "";
    rk_ring_opts opts = {.producer = producer,
                         .full_policy = RK_FULL_WAIT,
                         .full_timeout_ms = full_timeout_ms,
                         .errmsg = errmsg,
                         .errmsg_size = sizeof errmsg};
    int rc = rk_ring_attach(ring_name, &opts, out);

    if (rc)
        fprintf(stderr, "%s: producer: rk_ring_attach(%s, %s): %s: %s\n", prog, ring_name, producer,
                rk_strerror(rc), errmsg);
    return rc;
}

#define WAITER_IDLE_NS 20000 /* waiter: sleep when it has waited for every sample */

void *bench_waiter_main(void *arg)
{
    struct bench_waiter *w = arg;
    uint64_t i = 0;

    for (;;) {
        /* acquire: pairs with the producer's release; samples[0..n) are written */
        uint64_t n = atomic_load_explicit(&w->n_published, memory_order_acquire);
        if (i == n) {
            /* acquire: pairs with the release of done, after the last publish */
            if (atomic_load_explicit(&w->done, memory_order_acquire) &&
                atomic_load_explicit(&w->n_published, memory_order_acquire) == i)
                break;
            sleep_ns(WAITER_IDLE_NS);
            continue;
        }
        for (; i < n; i++) {
            int rc = rk_wait(w->ring, w->samples[i].lsn, RK_DURABLE, w->durable_timeout_ms);
            uint64_t t = now_ns();
            if (rc) {
                fprintf(stderr, "%s: waiter: rk_wait(%" PRIu64 ", RK_DURABLE): %s\n", w->prog,
                        w->samples[i].lsn, rk_strerror(rc));
                w->rc = rc;
                w->n_waited = i;
                return NULL;
            }
            w->latency[i] = t - w->samples[i].t_put;
        }
    }
    w->n_waited = i;
    return NULL;
}
