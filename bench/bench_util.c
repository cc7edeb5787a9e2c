/* bench_util.c -- small helpers shared by the benchmarks: JSON strings and
 * arrays, the monotonic clock in ns and sleeps on it, exact quantiles of
 * sorted samples, "met"/"not met" for target lines, removing a tree.
 * Any thread. */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

void json_array(const double *v, int n)
{
    putchar('[');
    for (int i = 0; i < n; i++)
        printf("%s%.0f", i ? "," : "", v[i]);
    putchar(']');
}

void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
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
