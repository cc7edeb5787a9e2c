/* fuzz_require.h -- the fuzz targets' invariant check: REQUIRE(cond) prints
 * "<target>.c:<line>: invariant broken: <cond>" and abort()s, which
 * libFuzzer (and replay_main.c) report as a crash.  Header only, so the
 * targets build from the same sources as before, with and without RK_FUZZ. */
#ifndef RK_FUZZ_REQUIRE_H
#define RK_FUZZ_REQUIRE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                                                        \
    do {                                                                                                     \
        if (!(cond))                                                                                         \
            fuzz_broken(__FILE__, #cond, __LINE__);                                                          \
    } while (0)

static inline void fuzz_broken(const char *file, const char *what, int line)
{
    const char *base = strrchr(file, '/');

    fprintf(stderr, "%s:%d: invariant broken: %s\n", base ? base + 1 : file, line, what);
    abort();
}

#endif
