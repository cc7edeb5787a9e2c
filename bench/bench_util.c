/* bench_util.c -- small helpers shared by the benchmarks: JSON strings and
 * arrays, the monotonic clock in ns, "met"/"not met" for target lines.
 * Any thread. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>

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
