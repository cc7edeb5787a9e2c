/* bench_util.h -- small helpers shared by the benchmarks (JSON output
 * through Jansson,
 * the monotonic clock and sleeps, quantiles, target lines, removing a
 * directory tree, the fatal-signal handlers and forked children, a number
 * in a status reply, and the producer's waiter thread that measures
 * durable latency of sampled LSNs). */
#ifndef RK_BENCH_UTIL_H
#define RK_BENCH_UTIL_H

#include <jansson.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "ringkeep.h"

/* JSON output is built with Jansson ("o" in json_pack steals the value). */
/* v rounded to `decimals` places, as a JSON real. */
json_t *bench_real(double v, int decimals);
/* v rounded to an integer, as a JSON integer (rates, counts). */
json_t *bench_int(double v);
/* n values rounded to integers, as a JSON array (NULL: out of memory). */
json_t *bench_ints(const double *v, int n);
/* Prints obj as one line of compact JSON and drops the reference; reals
 * with up to 15 significant digits (the values are rounded already). */
void bench_print_json(json_t *obj);
const char *met(int ok);
uint64_t now_ns(void);
/* CPU time the calling thread has used: on a shared machine, what a pass
 * cost, whoever else ran meanwhile. */
uint64_t thread_cpu_ns(void);
/* Sleeps until t_ns on the monotonic clock (now_ns), or for ns. */
void sleep_until(uint64_t t_ns);
void sleep_ns(uint64_t ns);
/* qsort comparator for uint64_t. */
int cmp_u64(const void *a, const void *b);
/* The q-quantile of sorted v[0..n): the smallest value with at least q * n
 * values at or below it (0 when n is 0). */
uint64_t quantile(const uint64_t *v, uint64_t n, double q);
/* Removes path and everything under it (no error if it is gone). */
void remove_tree(const char *path);
/* The machine: online CPUs, the CPU model, the kernel. */
void bench_read_host(long *nproc, char *cpu, size_t cpu_size, char *kernel, size_t kernel_size);

/* Kills *pid with SIGKILL, reaps it and sets *pid to 0 (nothing when *pid
 * <= 0).  Async-signal-safe. */
void bench_kill_and_reap(volatile sig_atomic_t *pid);
/* Runs rm -rf -- path in a forked child and waits for it.  fork, execve and
 * waitpid are async-signal-safe: a signal handler may use this. */
void bench_remove_tree_by_rm(const char *path);
/* Sets handler for SIGALRM (the watchdog), SIGINT and SIGTERM. */
void bench_set_fatal_handlers(void (*handler)(int));

typedef int (*bench_child_fn)(const void *arg);
/* Forks a child that resets the fatal handlers, dies with its parent
 * (PR_SET_PDEATHSIG) and exits 0 when fn(arg) returns 0, else 1.  Flushes
 * stdio first.  Returns the child's pid (-1: fork failed). */
pid_t bench_spawn(bench_child_fn fn, const void *arg);

/* Member key of the JSON object json (a node's status): an integer, or
 * with hex a string of hex digits.  RK_ENOTFOUND when it is not there. */
int bench_json_field(const char *json, const char *key, int hex, uint64_t *out);

/* TCP ports the benchmarks listen on (ZeroMQ endpoints, redis-server):
 * 127.0.0.1, in [BENCH_PORT_FIRST, BENCH_PORT_LAST], below Linux's
 * ephemeral range (32768..) and apart from the tests' 20000..31999. */
#define BENCH_PORT_FIRST 14000
#define BENCH_PORT_LAST 15999
/* Finds n consecutive ports in that range that are free now (each one
 * bound on 127.0.0.1 and closed again), starting the search at a place
 * derived from the pid so that benches started together look apart.
 * 0 and *first, or RK_EBUSY when no n free ports are there. */
int bench_free_ports(int n, int *first);

/* Attaches to ring_name as producer (RK_FULL_WAIT, full_timeout_ms); on
 * failure prints "prog: producer: rk_ring_attach(...)" to stderr. */
int bench_attach(const char *prog, const char *ring_name, const char *producer, int full_timeout_ms,
                 rk_ring **out);

struct bench_sample {
    uint64_t lsn, t_put;
};

/* The producer's samples and its waiter thread.  The producer writes
 * samples[i], then publishes n_published = i + 1 (release); the waiter
 * reads n_published (acquire), then samples[0..n).  done (release after the
 * last publish) says no more will come. */
struct bench_waiter {
    const char *prog;       /* for messages */
    int durable_timeout_ms; /* one rk_wait waits at most this long */
    rk_ring *ring;          /* the waiter's own handle */
    struct bench_sample *samples;
    uint64_t *latency; /* waiter: ns per sample */
    uint64_t capacity;
    alignas(64) _Atomic uint64_t n_published;
    alignas(64) _Atomic int done;
    uint64_t n_waited; /* waiter: written before it exits, read after join */
    int rc;            /* waiter: first rk_wait failure */
};

/* The waiter thread (arg: struct bench_waiter *): rk_wait(RK_DURABLE) on
 * every published sample in turn, latency[i] = the time it returned -
 * t_put; stops at the first failure (rc, n_waited) or when done and all
 * are waited for. */
void *bench_waiter_main(void *arg);

#endif
