/* node_harness.c -- helpers shared by the end-to-end node tests
 * (test_node, test_restore, test_repl): see node_harness.h. */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node/client.h"
#include "node_harness.h"

uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

void wait_node_answers(const char *dir, pid_t pid, int bound_s, int request_ms)
{
    /* up once it answers on its control endpoint as itself (the ring may
     * be left from a node before it, and the data directory's lock is
     * taken before the answer can come) */
    for (int i = 0; i < bound_s * 100; i++) {
        char *reply = NULL, want[32];
        int status, up;
        snprintf(want, sizeof want, "\"pid\":%d,", (int)pid);
        up = node_request(dir, "status", request_ms, &reply) == 0 && strstr(reply, want);
        free(reply);
        if (up)
            return;
        ck_assert_msg(waitpid(pid, &status, WNOHANG) != pid, "node on %s exited at start (status %d)", dir,
                      status);
        usleep(10000);
    }
    ck_abort_msg("node on %s did not come up", dir);
}

void wait_signal_taken(pid_t pid, int sig)
{
    const uint64_t bit = 1ull << (sig - 1);
    char path[64], line[256];

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    for (int i = 0;; i++) {
        uint64_t pending = 0;
        FILE *f = fopen(path, "r");
        ck_assert_msg(f != NULL, "%s: the process is gone", path);
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "SigPnd:", 7) == 0 || strncmp(line, "ShdPnd:", 7) == 0)
                pending |= strtoull(line + 7, NULL, 16);
        fclose(f);
        if (!(pending & bit))
            return;
        ck_assert_msg(i < 1000000, "signal %d to %d is still pending", sig, (int)pid);
        usleep(100);
    }
}

int stop(pid_t pid, int sig)
{
    int status = 0;
    kill(pid, sig);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

int open_tables(rk_ring *r, int n, uint16_t *tables)
{
    for (int t = 0; t < n; t++) {
        char tn[16];
        int rc;
        snprintf(tn, sizeof tn, "t%d", t);
        rc = rk_table(r, tn, &tables[t]);
        if (rc)
            return rc;
    }
    return 0;
}

void set_gate(const char *gate, const char *limit)
{
    char tmp[4200];
    FILE *f;

    if (!limit) {
        ck_assert_msg(unlink(gate) == 0 || errno == ENOENT, "unlink %s: %s", gate, strerror(errno));
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", gate);
    ck_assert_ptr_nonnull(f = fopen(tmp, "w"));
    ck_assert_int_ge(fputs(limit, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, gate), 0);
}
