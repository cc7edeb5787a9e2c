/* test_notify.c -- the node tells systemd how it is (issue 15.2): started
 * as systemd starts a Type=notify service (NOTIFY_SOCKET, WATCHDOG_USEC),
 * the ringkeep node sends READY=1 with a STATUS naming its role, epoch and
 * ring once it serves, STATUS lines that follow its journal and apply,
 * WATCHDOG=1 from its main loop while healthy, and STOPPING=1 on SIGTERM;
 * while apply is stalled behind the journal it stops feeding the watchdog
 * and says so in its STATUS.
 *
 * The test plays systemd: it binds the datagram socket NOTIFY_SOCKET names,
 * forks and execs the ringkeep binary (its argument) as the node, writes
 * through the ring as an engine and asserts on the messages' contents.  No
 * time limits: every wait is bounded only to fail instead of hanging.
 */
#define _GNU_SOURCE
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ringkeep.h"

#ifndef BOUND_MS
#define BOUND_MS (300 * 1000) /* no wait here takes this long unless broken */
#endif
#define MSG_MAX 4096

static const char *ringkeep_bin;

struct notify_test {
    char dir[64], sock_path[96], ring[64];
    int sock;
    pid_t node;
    uint64_t until; /* the hang guard: every wait of the test ends by then */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A temporary data directory, the notify socket in it, and the node
 * started on it with env_extra ("NAME=VALUE" or NULL) in its environment. */
static void start(struct notify_test *t, const char *watchdog_usec, const char *env_extra)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timeval tv = {.tv_usec = 100 * 1000};

    t->until = mono_ms() + BOUND_MS;
    snprintf(t->dir, sizeof t->dir, "/tmp/rk-notify-test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    snprintf(t->sock_path, sizeof t->sock_path, "%s/notify.sock", t->dir);
    snprintf(t->ring, sizeof t->ring, "notifytest.%d", (int)getpid());
    t->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(t->sock, 0);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", t->sock_path);
    ck_assert_int_eq(bind(t->sock, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(setsockopt(t->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);

    t->node = fork();
    ck_assert_int_ge(t->node, 0);
    if (t->node == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test (its process exits) leaves no node behind */
        setenv("NOTIFY_SOCKET", t->sock_path, 1);
        setenv("WATCHDOG_USEC", watchdog_usec, 1);
        if (env_extra)
            putenv((char *)env_extra);
        execl(ringkeep_bin, "ringkeep", "node", "--data-dir", t->dir, "--ring", t->ring, "--log-level", "warn",
              (char *)NULL);
        _exit(127);
    }
}

/* The next message (NUL-terminated in buf); fails the test when none comes
 * before t->until (the test's hang guard) or the node exits. */
static void next_msg(struct notify_test *t, char *buf)
{
    for (;;) {
        ssize_t len = recv(t->sock, buf, MSG_MAX - 1, 0);
        if (len >= 0) {
            buf[len] = '\0';
            return;
        }
        ck_assert_msg(waitpid(t->node, NULL, WNOHANG) == 0, "the node exited");
        ck_assert_msg(mono_ms() < t->until, "no message (or not the one awaited) from the node");
    }
}

/* The STATUS= line of msg, copied into out (empty when there is none). */
static void status_of(const char *msg, char *out, size_t out_size)
{
    const char *p = strstr(msg, "STATUS=");
    size_t len = p ? strcspn(p + 7, "\n") : 0;

    snprintf(out, out_size, "%.*s", (int)len, p ? p + 7 : "");
}

/* Writes n records (groups of 10) as the engine "eng"; returns when the
 * last is durable. */
static void write_records(struct notify_test *t, int n)
{
    rk_ring *r = NULL;
    uint16_t table;
    uint64_t lsn = 0;
    char key[32], val[64];

    /* the node creates the ring as it starts: bounded polling until it is there */
    while (rk_ring_attach(t->ring, &(rk_ring_opts){.producer = "eng"}, &r)) {
        ck_assert_msg(mono_ms() < t->until, "the node never created ring %s", t->ring);
        ck_assert_msg(waitpid(t->node, NULL, WNOHANG) == 0, "the node exited");
        usleep(20 * 1000);
    }
    ck_assert_int_eq(rk_table(r, "notify", &table), 0);
    for (int i = 0; i < n; i++) {
        int klen = snprintf(key, sizeof key, "k%d", i), vlen = snprintf(val, sizeof val, "value %d", i);
        ck_assert_int_eq(rk_put(r, table, key, (uint32_t)klen, val, (uint32_t)vlen, NULL), 0);
        if (i % 10 == 9)
            ck_assert_int_eq(rk_mark(r, (uint64_t)(i / 10 + 1), &lsn), 0);
    }
    ck_assert_int_eq(rk_wait(r, lsn, RK_DURABLE, BOUND_MS), 0);
    rk_ring_detach(r);
}

/* Removes what start() made, the ring the node left included. */
static void cleanup(struct notify_test *t)
{
    char path[128], cmd[128];

    close(t->sock);
    snprintf(path, sizeof path, "/dev/shm/ringkeep.%s", t->ring);
    unlink(path);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* SIGTERM: STOPPING=1 comes with a STATUS saying the node stops, then the
 * node exits 0; what came before it is counted in *n_watchdog. */
static void stop_node(struct notify_test *t, int *n_watchdog)
{
    char msg[MSG_MAX], status[MSG_MAX];
    int ws = 0;

    ck_assert_int_eq(kill(t->node, SIGTERM), 0);
    for (;;) {
        next_msg(t, msg);
        if (strstr(msg, "WATCHDOG=1"))
            ++*n_watchdog;
        if (strstr(msg, "STOPPING=1"))
            break;
    }
    status_of(msg, status, sizeof status);
    ck_assert_msg(strstr(status, "stopping: applying what is journaled"), "STOPPING with STATUS=%s", status);
    ck_assert_int_eq(waitpid(t->node, &ws, 0), t->node);
    ck_assert_msg(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the node's wait status %d", ws);
    cleanup(t);
}

/* READY with the role, epoch and ring; STATUS following journal and apply
 * to the engine's records; WATCHDOG=1 while healthy; STOPPING on SIGTERM. */
START_TEST(test_notify_ready_status_stopping)
{
    struct notify_test t;
    char msg[MSG_MAX], status[MSG_MAX], want[256];
    int n_watchdog = 0, n_status = 0;

    start(&t, "200000", NULL); /* a tick every 100 ms */
    next_msg(&t, msg);
    ck_assert_msg(strncmp(msg, "READY=1\n", 8) == 0, "the first message is not READY=1: %s", msg);
    status_of(msg, status, sizeof status);
    snprintf(want, sizeof want, "primary: epoch 1, ring %s, journal seq 0, applied seq 0", t.ring);
    ck_assert_str_eq(status, want);

    write_records(&t, 100);
    /* the STATUS catches up with the engine: 10 groups of 10 PUTs and a
     * MARK each, journaled and applied */
    for (;;) {
        unsigned long long journal = 0, applied = 0, records = 0;
        next_msg(&t, msg);
        ck_assert_msg(!strstr(msg, "READY=1"), "READY=1 twice");
        if (strstr(msg, "WATCHDOG=1"))
            n_watchdog++;
        status_of(msg, status, sizeof status);
        if (!status[0])
            continue;
        n_status++;
        snprintf(want, sizeof want, "primary: epoch 1, ring %s, journal seq ", t.ring);
        ck_assert_msg(strncmp(status, want, strlen(want)) == 0, "STATUS=%s", status);
        ck_assert_int_eq(sscanf(status + strlen(want), "%llu, applied seq %llu, %llu records journaled", &journal, &applied,
                                &records),
                         3);
        ck_assert_uint_le(applied, journal);
        if (records == 110 && applied == journal && journal >= 1)
            break;
        ck_assert_uint_lt(records, 110);
    }
    ck_assert_int_ge(n_watchdog, 1); /* healthy: every tick fed the watchdog */
    stop_node(&t, &n_watchdog);
    ck_assert_int_ge(n_status, 1);
}
END_TEST

/* Apply held back (the test hook sleeps 600 ms before each step) while the
 * journal is ahead: past the watchdog interval (200 ms) the ticks say
 * "unhealthy" and carry no WATCHDOG=1; once apply catches up they feed it
 * again. */
START_TEST(test_notify_watchdog_stops_while_apply_stalls)
{
    struct notify_test t;
    char msg[MSG_MAX], status[MSG_MAX];
    int n_unhealthy = 0, n_watchdog = 0;

    start(&t, "200000", "RK_TEST_APPLY_SLOW_MS=600");
    next_msg(&t, msg);
    ck_assert_msg(strncmp(msg, "READY=1\n", 8) == 0, "the first message is not READY=1: %s", msg);
    write_records(&t, 20);
    for (;;) {
        next_msg(&t, msg);
        status_of(msg, status, sizeof status);
        if (strstr(status, "unhealthy: apply stalled")) {
            ck_assert_msg(!strstr(msg, "WATCHDOG=1"), "the watchdog was fed while stalled: %s", msg);
            ck_assert_msg(strstr(status, "(watchdog not fed); primary: epoch 1"), "STATUS=%s", status);
            n_unhealthy++;
        } else if (n_unhealthy && strstr(msg, "WATCHDOG=1") && strstr(status, "22 records journaled")) {
            break; /* caught up: the 20 PUTs and 2 MARKs applied, the watchdog fed again */
        }
    }
    ck_assert_int_ge(n_unhealthy, 1);
    stop_node(&t, &n_watchdog);
}
END_TEST

/* Without NOTIFY_SOCKET the node sends nothing and runs as before (the
 * socket stays silent while it serves an engine). */
START_TEST(test_notify_silent_without_socket)
{
    struct notify_test t;
    char msg[MSG_MAX];
    int ws = 0;

    start(&t, "200000", "NOTIFY_SOCKET=");
    write_records(&t, 10); /* durable: the node served, so it would have sent READY by now */
    ck_assert_int_lt(recv(t.sock, msg, sizeof msg, MSG_DONTWAIT), 0);
    ck_assert_int_eq(kill(t.node, SIGTERM), 0);
    ck_assert_int_eq(waitpid(t.node, &ws, 0), t.node);
    ck_assert_msg(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the node's wait status %d", ws);
    ck_assert_int_lt(recv(t.sock, msg, sizeof msg, MSG_DONTWAIT), 0);
    cleanup(&t);
}
END_TEST

static Suite *notify_suite(void)
{
    Suite *s = suite_create("notify");
    TCase *tc = tcase_create("notify");

    tcase_add_test(tc, test_notify_ready_status_stopping);
    tcase_add_test(tc, test_notify_watchdog_stops_while_apply_stalls);
    tcase_add_test(tc, test_notify_silent_without_socket);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    SRunner *sr;
    int failed;

    if (argc != 2) {
        fprintf(stderr, "usage: test_notify RINGKEEP_BINARY\n");
        return 2;
    }
    ringkeep_bin = argv[1];
    sr = srunner_create(notify_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
