/* test_powerloss.c -- the node under simulated power cuts (crashsim, in the
 * I/O seam): engines write while the node runs with RK_CRASHSIM set to a
 * random seam call; at that call the node loses every write it had not
 * fsynced and dies; the engines die with it and the ring's shared memory
 * is removed (a power cut takes RAM too).  Then the data directory is
 * opened again as after a reboot, with nobody's help, and checked:
 *   - every group an engine was told was durable (rk_wait RK_DURABLE) is
 *     in the state: each producer's height is at least its acknowledged
 *     one, and never goes back;
 *   - no group is partial or applied twice: the state is exactly the
 *     model's at the height it reports (below);
 *   - every checkpoint listed verifies whole (rk_state_open on the file)
 *     and equals the model at its own heights;
 *   - the node starts again on it (each round's node is the restart).
 *
 * The stream: group g of producer p writes PUT t0 "p<p>/s<i>" for i below
 * SLOTS (the same keys every group, values derived from (p, g, i)), DEL t1
 * "p<p>/g<g-1>" and PUT t1 "p<p>/g<g>", then MARK(g).  At height h the
 * state holds exactly SLOTS keys p<p>/s* carrying group h's values and one
 * key p<p>/g<h>: a partial group leaves a slot of another group, a group
 * applied again brings back its g key.
 *
 * Crash points (each round, seed = RK_POWERLOSS_SEED + round):
 *   3 rounds in 4: "serving": a call within WITHIN_SERVING calls after the
 *     node serves, while the engines write (drain, apply, checkpoints,
 *     retention, log trimming); 1 in 4: within the first WITHIN_START
 *     calls, i.e. in start-up and recovery;
 *   every other round "torn": unsynced sectors survive at random.
 * The sector is 4096 bytes (RK_POWERLOSS_SECTOR overrides it; 512 breaks
 * Berkeley DB's recovery, which assumes page writes are atomic: README).
 * RK_POWERLOSS_POINTS cuts (default POINTS_DEFAULT, short for CI; the long
 * run sets it to 200 or more).  The summary line printed at the end says
 * how many cuts of which op, how many torn, the checkpoints verified and
 * the time taken.
 *
 * Processes: the node is the ringkeep binary (argv[1]) exec'd with
 * RK_CRASHSIM in its environment; engines are forked children that report
 * each acknowledged height through a pipe; this process is the checker.
 * No time limits: every wait is bounded in count and fails the test when
 * the bound is reached.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "persist/checkpoint.h"
#include "node/client.h"
#include "node_harness.h"
#include "shm/ring.h"
#include "ringkeep.h"

#define N_PRODUCERS 2
#define SLOTS 8
#define ACK_EVERY 4              /* an engine waits for durability every this many groups */
#define GROUPS_PER_ROUND 200000u /* what an engine writes at most in one round */
#define POINTS_DEFAULT 20
#define WITHIN_SERVING 3000 /* seam calls after the node serves */
#define WITHIN_START 400    /* seam calls from the node's start */
#define BOUND_S 300         /* no wait takes this long unless something is broken */

Suite *powerloss_suite(void);

static char ringkeep_bin[PATH_MAX], run_dir[64], data_dir[128], ring_name[64], report[160], node_log[160];

/* ------------------------------------------------------------ the stream */

static uint32_t make_value(int p, uint64_t g, int i, uint8_t *buf)
{
    uint64_t r = mix(((uint64_t)p << 56) ^ (g << 8) ^ (uint64_t)i);
    uint32_t len = 16 + (uint32_t)(r % 48);

    memcpy(buf, &g, 8);
    memcpy(buf + 8, &r, 8);
    for (uint32_t j = 16; j < len; j++)
        buf[j] = (uint8_t)mix(r + j);
    return len;
}

static int slot_key(int p, int i, char *key)
{
    return sprintf(key, "p%d/s%02d", p, i);
}

static int group_key(int p, uint64_t g, char *key)
{
    return sprintf(key, "p%d/g%010" PRIu64, p, g);
}

struct scan {
    int p;
    uint64_t h;
    int n_seen;
    char why[160];
};

static int check_slot(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct scan *sc = arg;
    uint8_t want[64];
    char name[32];
    int i;

    snprintf(name, sizeof name, "%.*s", (int)klen, (const char *)key);
    if (sscanf(name + strcspn(name, "s") + 1, "%d", &i) != 1 || i < 0 || i >= SLOTS) {
        snprintf(sc->why, sizeof sc->why, "key %s is not in the stream", name);
        return 1;
    }
    uint32_t len = make_value(sc->p, sc->h, i, want);
    if (vlen != len || memcmp(val, want, len) != 0) {
        uint64_t g = 0;
        if (vlen >= 8)
            memcpy(&g, val, 8);
        snprintf(sc->why, sizeof sc->why,
                 "%s holds group %" PRIu64 "'s value at height %" PRIu64 " (partial group)", name, g, sc->h);
        return 1;
    }
    sc->n_seen++;
    return 0;
}

static int check_group_key(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct scan *sc = arg;
    uint8_t want[64];
    char name[32], expect[32];
    uint32_t len = make_value(sc->p, sc->h, SLOTS, want);

    snprintf(name, sizeof name, "%.*s", (int)klen, (const char *)key);
    group_key(sc->p, sc->h, expect);
    if (strcmp(name, expect) != 0 || vlen != len || memcmp(val, want, len) != 0) {
        snprintf(sc->why, sizeof sc->why, "%s at height %" PRIu64 " (a group applied again, or partial)",
                 name, sc->h);
        return 1;
    }
    sc->n_seen++;
    return 0;
}

/* Checks state s equals the model at the heights it reports (into
 * heights); what names the state in messages. */
static void check_state(rk_state *s, const char *what, uint64_t heights[N_PRODUCERS])
{
    for (int p = 0; p < N_PRODUCERS; p++) {
        char name[16], prefix[8];
        struct scan sc = {.p = p};
        uint64_t h = 0;
        int rc;
        snprintf(name, sizeof name, "eng%d", p);
        rc = rk_state_height(s, name, &h);
        ck_assert_msg(rc == 0 || rc == RK_ENOTFOUND, "%s: height of %s: %s", what, name, rk_strerror(rc));
        heights[p] = sc.h = h;
        snprintf(prefix, sizeof prefix, "p%d/s", p);
        rc = rk_state_scan(s, "t0", prefix, (uint32_t)strlen(prefix), check_slot, &sc);
        ck_assert_msg(rc == 0, "%s: producer %d: %s", what, p, sc.why);
        ck_assert_msg(sc.n_seen == (h ? SLOTS : 0), "%s: producer %d at height %" PRIu64 ": %d slots", what,
                      p, h, sc.n_seen);
        sc.n_seen = 0;
        snprintf(prefix, sizeof prefix, "p%d/g", p);
        rc = rk_state_scan(s, "t1", prefix, (uint32_t)strlen(prefix), check_group_key, &sc);
        ck_assert_msg(rc == 0, "%s: producer %d: %s", what, p, sc.why);
        ck_assert_msg(sc.n_seen == (h ? 1 : 0), "%s: producer %d at height %" PRIu64 ": %d group keys", what,
                      p, h, sc.n_seen);
    }
}

/* ------------------------------------------------------------ engines */

/* Writes groups from+1 .. from+GROUPS_PER_ROUND as eng<p>; every ACK_EVERY
 * groups waits until the last is durable and writes its height to ack_fd. */
static _Noreturn void engine(int p, uint64_t from, int ack_fd)
{
    char name[16], why[256] = "", key[32];
    rk_ring_opts ro = {.producer = name, .errmsg = why, .errmsg_size = sizeof why};
    rk_ring *r = NULL;
    uint16_t tables[2];
    uint8_t val[64];
    uint64_t lsn = 0;

    snprintf(name, sizeof name, "eng%d", p);
    if (rk_ring_attach(ring_name, &ro, &r) != 0 || open_tables(r, 2, tables) != 0)
        _exit(11);
    for (uint64_t g = from + 1; g <= from + GROUPS_PER_ROUND; g++) {
        for (int i = 0; i < SLOTS; i++) {
            int klen = slot_key(p, i, key);
            uint32_t vlen = make_value(p, g, i, val);
            if (rk_put(r, tables[0], key, (uint32_t)klen, val, vlen, NULL))
                _exit(12);
        }
        if (g > 1 && rk_del(r, tables[1], key, (uint32_t)group_key(p, g - 1, key), NULL))
            _exit(13);
        uint32_t vlen = make_value(p, g, SLOTS, val);
        if (rk_put(r, tables[1], key, (uint32_t)group_key(p, g, key), val, vlen, NULL) || rk_mark(r, g, &lsn))
            _exit(14);
        if (g % ACK_EVERY == 0) {
            if (rk_wait(r, lsn, RK_DURABLE, BOUND_S * 1000) != 0)
                _exit(15);
            if (write(ack_fd, &g, sizeof g) != sizeof g)
                _exit(16);
        }
    }
    rk_ring_detach(r);
    _exit(0);
}

/* ------------------------------------------------------------ the node */

/* Starts `ringkeep node` on data_dir with RK_CRASHSIM=spec (none if NULL),
 * its output appended to node_log. */
static pid_t start_node(const char *spec)
{
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(node_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(98);
        if (spec)
            setenv("RK_CRASHSIM", spec, 1);
        else
            unsetenv("RK_CRASHSIM");
        unsetenv("RK_FAULT");
        execl(ringkeep_bin, ringkeep_bin, "node", "--data-dir", data_dir, "--ring", ring_name, "--log-level",
              "warn", "--set", "storage.cache_mb=16", "--set", "ring.capacity=256K", "--set",
              "ring.unblock_timeout_ms=50", "--set", "drain.batch_records=64", "--set",
              "checkpoint.every_records=4000", "--set", "checkpoint.every_seconds=1", "--set",
              "checkpoint.keep=3", (char *)NULL);
        _exit(99);
    }
    return pid;
}

/* The last lines of the node's log, for a failure message. */
static const char *log_tail(void)
{
    static char tail[2048];
    FILE *f = fopen(node_log, "r");
    size_t n = 0;

    tail[0] = '\0';
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0, SEEK_SET);
        n = fread(tail, 1, sizeof tail - 1, f);
        tail[n] = '\0';
        fclose(f);
    }
    return tail;
}

/* Waits until the node answers (1) or ends (0, status in *status). */
static int node_up_or_ended(pid_t pid, int *status)
{
    for (int i = 0; i < BOUND_S * 100; i++) {
        char *reply = NULL, want[32];
        int up;
        if (waitpid(pid, status, WNOHANG) == pid)
            return 0;
        snprintf(want, sizeof want, "\"pid\":%d,", (int)pid);
        up = node_request(data_dir, "status", 1000, &reply) == 0 && strstr(reply, want);
        free(reply);
        if (up)
            return 1;
        usleep(5000);
    }
    ck_abort_msg("the node neither served nor ended; log:\n%s", log_tail());
    return 0;
}

/* SIGKILLs pid and its children (any thread's: /proc/PID/task/T/children),
 * such as the cut's child (crashsim.c) that forked from a node thread. */
static void kill_with_children(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *de;

    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    d = opendir(path);
    while (d && (de = readdir(d)) != NULL) {
        char children[384];
        FILE *f;
        int child;
        if (de->d_name[0] == '.')
            continue;
        snprintf(children, sizeof children, "%s/%s/children", path, de->d_name);
        f = fopen(children, "r");
        while (f && fscanf(f, "%d", &child) == 1)
            kill(child, SIGKILL);
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    kill(pid, SIGKILL);
}

/* A node that ended on its own was cut (SIGKILL by crashsim), or it needed
 * help: fail with its log. */
static void assert_cut(int status)
{
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "the node ended with %s %d, not by a power cut; log:\n%s",
                  WIFSIGNALED(status) ? "signal" : "status",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), log_tail());
}

/* ------------------------------------------------------------ checks */

static uint64_t acked[N_PRODUCERS], seen[N_PRODUCERS];
static unsigned n_ckpt_checks;

/* The data directory as after a reboot: opened with nobody's help (no
 * node runs; this is recovery), equal to the model, every acknowledged
 * group there, no height gone back; every checkpoint verifies and equals
 * the model at its heights. */
static void check_after_cut(const char *when)
{
    uint64_t heights[N_PRODUCERS];
    char what[1600], ckpt_dir[160];
    char **paths = NULL;
    size_t n_paths = 0;
    rk_state *s = NULL;
    int rc = rk_state_open(data_dir, &s), any_acked = 0;

    for (int p = 0; p < N_PRODUCERS; p++)
        any_acked |= acked[p] != 0;
    /* a cut in the node's first start, before its store was made durable
     * (seed 1796586404: the cut at LOCK's first write, its creation
     * undone): the directory is not initialised, as after a node that
     * never started -- right only while nothing was acknowledged; the
     * next round's node makes it */
    if (rc == ENOENT && !any_acked)
        return;
    ck_assert_msg(rc == 0, "%s: the data directory does not open: %s", when, rk_strerror(rc));
    check_state(s, when, heights);
    rk_state_close(s);
    for (int p = 0; p < N_PRODUCERS; p++) {
        ck_assert_msg(heights[p] >= acked[p],
                      "%s: eng%d is at height %" PRIu64 ", but %" PRIu64 " was durable", when, p, heights[p],
                      acked[p]);
        ck_assert_msg(heights[p] >= seen[p], "%s: eng%d went back from %" PRIu64 " to %" PRIu64, when, p,
                      seen[p], heights[p]);
        seen[p] = heights[p];
    }
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/checkpoints", data_dir);
    ck_assert_int_eq(ckpt_list(ckpt_dir, &paths, &n_paths), 0);
    for (size_t i = 0; i < n_paths; i++) {
        uint64_t at[N_PRODUCERS];
        rc = rk_state_open(paths[i], &s);
        ck_assert_msg(rc == 0, "%s: checkpoint %s does not verify: %s", when, paths[i], rk_strerror(rc));
        snprintf(what, sizeof what, "%s: checkpoint %s", when, strrchr(paths[i], '/') + 1);
        check_state(s, what, at);
        rk_state_close(s);
        n_ckpt_checks++;
    }
    ckpt_list_free(paths, n_paths);
}

/* ------------------------------------------------------------ the report */

#define N_OPS 7
static const char *const op_names[N_OPS] = {"write", "fsync", "open", "rename", "unlink", "ftruncate", "cut"};

/* Where the cuts fell: the file the cut call was about, by kind. */
#define N_TARGETS 7
static const char *const target_names[N_TARGETS] = {"log",         "journal.db",  "state.db", "meta.db",
                                                    "checkpoints", "region/temp", "other"};

static int target_kind(const char *line)
{
    const char *t = strstr(line, " target="), *base;
    size_t len;

    if (!t)
        return N_TARGETS - 1;
    t += 8;
    len = strcspn(t, " ");
    for (base = t + len; base > t && base[-1] != '/'; base--)
        ;
    if (strncmp(base, "log.", 4) == 0)
        return 0;
    for (int k = 1; k <= 3; k++)
        if (strncmp(base, target_names[k], strlen(target_names[k])) == 0)
            return k;
    if (memmem(t, len, "/checkpoints", 12))
        return 4;
    if (strncmp(base, "__db.", 5) == 0)
        return 5;
    return N_TARGETS - 1;
}

struct cut_counts {
    unsigned by_op[N_OPS], by_target[N_TARGETS];
};

/* Reads the report's crash lines from line first_line on into counts;
 * returns the number of crash lines read; the last one in last. */
static int read_cuts(int first_line, struct cut_counts *counts, char *last, size_t last_size)
{
    FILE *f = fopen(report, "r");
    char line[1024];
    int n = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "crash ", 6) != 0 || n++ < first_line)
            continue;
        snprintf(last, last_size, "%s", line);
        for (int op = 0; op < N_OPS; op++) {
            char want[32];
            snprintf(want, sizeof want, " op=%s ", op_names[op]);
            if (strstr(line, want))
                counts->by_op[op]++;
        }
        counts->by_target[target_kind(line)]++;
    }
    fclose(f);
    return n - first_line;
}

static long env_number(const char *name, long fallback)
{
    const char *v = getenv(name);

    return v && *v ? strtol(v, NULL, 10) : fallback;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ the loop */

START_TEST(power_cuts_at_random_points_lose_nothing_durable)
{
    long points = env_number("RK_POWERLOSS_POINTS", POINTS_DEFAULT);
    long sector = env_number("RK_POWERLOSS_SECTOR", 4096);
    uint64_t seed = (uint64_t)env_number("RK_POWERLOSS_SEED", (long)(time(NULL) ^ getpid()));
    struct cut_counts counts = {{0}, {0}};
    unsigned n_torn = 0, n_start = 0, n_uncut = 0;
    int n_cuts = 0;
    double t0 = now_s();
    char last[1024] = "";

    printf("powerloss: seed %" PRIu64 " (RK_POWERLOSS_SEED), %ld points, sector %ld\n", seed, points, sector);
    fflush(stdout);
    for (long round = 0; n_cuts < points; round++) {
        char spec[400], when[1200];
        int torn = round % 2 == 1, at_start = round % 4 == 0, status = 0, ack_fds[N_PRODUCERS];
        pid_t node, engines[N_PRODUCERS];

        ck_assert_msg(round < 2 * points + 10, "%d cuts in %ld rounds: the cut points are not reached",
                      n_cuts, round);
        snprintf(spec, sizeof spec, "seed:%" PRIu64 ",within:%d%s%s,sector:%ld,report:%s",
                 seed + (uint64_t)round, at_start ? WITHIN_START : WITHIN_SERVING, at_start ? "" : ",serving",
                 torn ? ",torn" : "", sector, report);
        node = start_node(spec);
        if (node_up_or_ended(node, &status)) {
            for (int p = 0; p < N_PRODUCERS; p++) {
                int fds[2];
                ck_assert_int_eq(pipe(fds), 0);
                engines[p] = fork();
                ck_assert_int_ge(engines[p], 0);
                if (engines[p] == 0) {
                    close(fds[0]);
                    engine(p, seen[p], fds[1]);
                }
                close(fds[1]);
                ack_fds[p] = fds[0];
            }
            /* until the cut, or the engines are done without one */
            for (int i = 0, stopped_at = -1;; i++) {
                int n_done = 0;
                ck_assert_msg(i < BOUND_S * 1000, "no cut and no end");
                /* WUNTRACED: the cut stops the node (SIGSTOP) while a
                 * child of it rolls the files back, then kills it.  A
                 * child that dies or hangs leaves it stopped: say so,
                 * before the engines' waits run out (seen once under
                 * ASan: crashsim.c cut).  WCONTINUED: stopped by someone
                 * else (a debugger) and let go */
                if (waitpid(node, &status, WNOHANG | WUNTRACED | WCONTINUED) == node) {
                    if (WIFCONTINUED(status))
                        stopped_at = -1;
                    else if (!WIFSTOPPED(status))
                        break;
                    else if (stopped_at < 0)
                        stopped_at = i;
                }
                if (stopped_at >= 0 && i - stopped_at >= BOUND_S * 1000 / 2) {
                    kill_with_children(node);
                    ck_abort_msg("the simulated power cut stopped the node %d s ago and never killed it: the "
                                 "simulation's child died or hangs; node log:\n%s",
                                 (i - stopped_at) / 1000, log_tail());
                }
                for (int p = 0; p < N_PRODUCERS; p++) {
                    int est;
                    if (engines[p] > 0 && waitpid(engines[p], &est, WNOHANG) == engines[p]) {
                        ck_assert_msg(WIFEXITED(est) && WEXITSTATUS(est) == 0, "engine %d: status %d", p,
                                      est);
                        engines[p] = 0;
                    }
                    n_done += engines[p] == 0;
                }
                if (n_done == N_PRODUCERS) {
                    status = stop(node, SIGTERM);
                    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "node stop: status %d",
                                  status);
                    status = -1;
                    break;
                }
                usleep(1000);
            }
            /* the power went: engines and the ring's memory with it */
            for (int p = 0; p < N_PRODUCERS; p++) {
                uint64_t h;
                if (engines[p] > 0)
                    stop(engines[p], SIGKILL);
                while (read(ack_fds[p], &h, sizeof h) == (ssize_t)sizeof h)
                    if (h > acked[p])
                        acked[p] = h;
                close(ack_fds[p]);
            }
        }
        ring_unlink(ring_name);
        if (status == -1) {
            n_uncut++;
        } else {
            assert_cut(status);
            ck_assert_msg(read_cuts(n_cuts, &counts, last, sizeof last) == 1, "no report line for round %ld",
                          round);
            n_cuts++;
            n_torn += torn;
            n_start += at_start;
        }
        snprintf(when, sizeof when, "after round %ld (seed %" PRIu64 ", %s)", round, seed + (uint64_t)round,
                 status == -1 ? "no cut" : last);
        check_after_cut(when);
        (void)!truncate(node_log, 0);
    }
    printf(
        "powerloss: %d power cuts (%u torn, %u in start-up) in %.1f s: write %u, fsync %u, open %u, rename "
        "%u, "
        "unlink %u, ftruncate %u; in log files %u, journal.db %u, state.db %u, meta.db %u, checkpoints %u, "
        "region/temp %u, other %u; %u rounds without a cut; %u checkpoint checks; heights eng0 %" PRIu64
        " eng1 %" PRIu64 "; every acknowledged group present\n",
        n_cuts, n_torn, n_start, now_s() - t0, counts.by_op[0], counts.by_op[1], counts.by_op[2],
        counts.by_op[3], counts.by_op[4], counts.by_op[5], counts.by_target[0], counts.by_target[1],
        counts.by_target[2], counts.by_target[3], counts.by_target[4], counts.by_target[5],
        counts.by_target[6], n_uncut, n_ckpt_checks, seen[0], seen[1]);
}
END_TEST

static void setup(void)
{
    snprintf(run_dir, sizeof run_dir, "/tmp/rk-test-powerloss-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(run_dir));
    snprintf(data_dir, sizeof data_dir, "%s/data", run_dir);
    snprintf(report, sizeof report, "%s/cuts", run_dir);
    snprintf(node_log, sizeof node_log, "%s/node.log", run_dir);
    snprintf(ring_name, sizeof ring_name, "test_powerloss.%d", (int)getpid());
    ck_assert_int_eq(mkdir(data_dir, 0700), 0);
    ring_unlink(ring_name);
}

static void teardown(void)
{
    char cmd[256];

    ring_unlink(ring_name);
    if (getenv("RK_POWERLOSS_KEEP"))
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run_dir);
    ck_assert_int_eq(system(cmd), 0);
}

Suite *powerloss_suite(void)
{
    Suite *s = suite_create("powerloss");
    TCase *tc = tcase_create("node");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, power_cuts_at_random_points_lose_nothing_durable);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    SRunner *sr;
    int failed;

    if (argc != 2) {
        fprintf(stderr, "usage: test_powerloss PATH/TO/ringkeep\n");
        return 2;
    }
    snprintf(ringkeep_bin, sizeof ringkeep_bin, "%s", argv[1]);
    sr = srunner_create(powerloss_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
