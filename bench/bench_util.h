/* bench_util.h -- small helpers shared by the benchmarks (JSON output,
 * the monotonic clock, target lines). */
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
/* The machine: online CPUs, the CPU model, the kernel. */
void bench_read_host(long *nproc, char *cpu, size_t cpu_size, char *kernel, size_t kernel_size);

#endif
