/* bench_util.h -- small helpers shared by the benchmarks (JSON output,
 * the monotonic clock and sleeps, quantiles, target lines, removing a
 * directory tree). */
#ifndef RK_BENCH_UTIL_H
#define RK_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Prints n values as a JSON array. */
void json_array(const double *v, int n);
/* Prints s as a JSON string. */
void json_string(const char *s);
const char *met(int ok);
uint64_t now_ns(void);
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

#endif
