/* cmd_drill.c -- `ringkeep drill`: rehearses failover on this host with
 * real processes and reports what an operator needs to know.
 *
 * It starts a primary and N standbys (this binary's own `ringkeep node`,
 * in a temporary directory, on loopback ports) and an engine: a forked
 * child that uses only the public API.  The engine restores with
 * rk_state_open, attaches to the primary's ring and writes groups (a row
 * per height in table "heights", whose value names the height and the
 * engine's incarnation, plus churn in table "book"), waits RK_REPLICATED,
 * and appends every acknowledged height to its own file.  Each round:
 *
 *   wait for a random number of acknowledgements ──► kill the primary
 *   (SIGKILL, SIGTERM, or SIGSTOP: hung) ──► promote the standby that holds
 *   most (the `promote` control request; done when it answers as the
 *   primary of a higher epoch) ──► a new engine restores from it and
 *   writes on ──► the other standbys, given every node's endpoints,
 *   re-point by themselves: wait until they follow the new epoch ──► a
 *   SIGSTOPped primary is woken (SIGCONT) and must step down (told by a
 *   standby of the new epoch; with one standby, by the `fence EPOCH`
 *   control request), its engine getting RK_EFENCED ──► the old primary's
 *   stale ring is removed and its data directory started as a standby (it
 *   sets aside what diverged past the fork point) ──► it has caught up.
 *
 * At the end the engine stops, every node must reach the primary's journal
 * sequence with an equal state digest, and every acknowledged height must
 * be in the final primary's state with the bytes of the incarnation that
 * had it acknowledged: a height lost and written again by a later
 * incarnation does not count as present.  Any loss, digest mismatch,
 * acknowledgement after a promotion by a woken primary, or a step that
 * does not finish within its bound fails the drill (exit 1).
 *
 * Single-threaded; children are nodes (exec) and engines (fork).  Every
 * wait is a bounded poll. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "node/client.h"
#include "node/etcd.h"
#include "node/node.h"
#include "persist/config.h"
#include "shm/ring.h"
#include "ringkeep.h"

#define DRILL_MAX_STANDBYS 4
#define DRILL_MAX_ROUNDS 1000
#define DRILL_MAX_SETS 16
#define DRILL_STEP_S 60         /* no step of a round takes this long unless broken */
#define DRILL_POLL_US 1000      /* polling interval of every wait */
#define DRILL_GROUPS_PER_WAIT 4 /* the engine waits RK_REPLICATED once per this many groups */
#define DRILL_ENGINE_WAIT_MS 60000
#define DRILL_BOOK_KEYS 64
#define DRILL_ENGINE_MAX_GROUPS 50000000u /* per engine: far more than any drill writes */

enum kill_mode { KILL_SIGKILL, KILL_SIGSTOP, KILL_SIGTERM };
static const char *const kill_names[] = {"sigkill", "sigstop", "sigterm"};

struct drill_opts {
    int n_standbys;
    int n_rounds;
    enum kill_mode kills[8]; /* cycled through, one per round */
    int n_kills;
    uint64_t records; /* the kill comes after 1..records acknowledged groups in a round */
    int json, keep;
    unsigned seed;
    char dir[3072];                   /* "" : a temporary directory */
    const char *sets[DRILL_MAX_SETS]; /* SECTION.KEY=VALUE for every node */
    int n_sets;
    const char *configs[DRILL_MAX_STANDBYS + 1]; /* the nodes' files; none: made up */
    int n_configs;
    int ha;          /* --ha: etcd fails over, the drill only makes faults */
    uint32_t ttl_ms; /* --ttl-ms: [ha] ttl_ms of every node */
    int faults[8];   /* --faults, cycled; HA_FAULT_RANDOM: drawn per round */
    int n_faults;
    int random_from[8]; /* --random-faults: what random draws from (none: every kind) */
    int n_random_from;
};

/* --ha: the faults of a round. */
enum ha_fault { HA_KILL_PRIMARY, HA_STOP_PRIMARY, HA_KILL_STANDBY, HA_ETCD, HA_KILL_BOTH, HA_N_FAULTS,
                HA_FAULT_RANDOM = HA_N_FAULTS };
static const char *const fault_names[] = {"kill-primary", "stop-primary", "kill-standby", "etcd-restart",
                                          "kill-primary+standby", "random"};

struct ha_round {
    int round, fault;
    int old_primary, new_primary, victim; /* victim: the standby killed (-1: none) */
    uint64_t old_epoch, new_epoch;
    double detect_ms, elect_ms, engine_ms; /* from the fault; elect_ms < 0: no election */
    uint64_t restored_height, lost_at_restore, acked_after_loss;
    char note[256];
    char error[448];
};

/* Which node, in which epoch, acknowledged an engine incarnation's heights. */
struct incarnation {
    int slot;
    uint64_t epoch;
};

/* One node: the same data directory, ring and ports for the whole drill;
 * its role changes. */
struct slot {
    const char *config; /* its configuration file, NULL: the drill's own settings */
    char dir[PATH_MAX];
    char ring[RK_NAME_MAX + 1];
    char publish[CONFIG_ENDPOINT_MAX + 1], serve[CONFIG_ENDPOINT_MAX + 1]; /* to connect to */
    char id[32];
    pid_t pid; /* 0: not running */
    int primary;
};

/* What an engine's acknowledgement file says (read as it grows). */
struct engine {
    pid_t pid;
    int incarnation;
    char path[PATH_MAX];
    int fd;
    off_t offset;
    char partial[128];
    size_t partial_len;
    int restored_seen, fenced;
    uint64_t restored_height;
    uint64_t first_write_ns; /* 0: not written yet */
    uint64_t n_acks, max_ack;
};

/* Every height acknowledged, by which incarnation, when. */
struct ack {
    uint64_t height, ns;
    int incarnation;
};

struct round_report {
    int round;
    enum kill_mode kill;
    int old_primary, new_primary;
    uint64_t new_epoch;
    double promoted_ms, engine_ms; /* from the kill */
    double promotion_ms;           /* from the promote request to the node answering as the primary */
    double repointed_ms;           /* from the kill to every other standby following the new primary */
    uint64_t acked_before;         /* highest height acknowledged when the primary was killed */
    uint64_t restored_height;
    uint64_t lost_at_restore;       /* acknowledged heights above the restored height */
    uint64_t set_aside;             /* entries the old primary set aside when it rejoined */
    char woke[384];                 /* SIGSTOP: what the woken primary did */
    uint64_t acked_after_promotion; /* by the woken primary's engine: must be 0 */
    char error[448];                /* a step that failed, "" */
};

struct drill {
    struct drill_opts o;
    char exe[PATH_MAX];
    char dir[3072]; /* room left in a PATH_MAX for what goes under it */
    int made_dir;
    struct slot slots[DRILL_MAX_STANDBYS + 1];
    int acks_lost; /* out of memory for an acknowledgement: the run cannot say nothing was lost */
    int n_slots;
    struct engine engines[2]; /* the current one, and a fenced one being watched */
    struct ack *acks;
    size_t n_acks, acks_cap;
    struct round_report *rounds;
    int n_rounds_done;
    FILE *progress;
    /* --ha */
    pid_t etcd_pid;
    int etcd_port;
    char etcd_url[64], cluster[64];
    etcd *ec;
    struct ha_round *ha_rounds;
    struct incarnation incs[DRILL_MAX_ROUNDS + 1];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ms_between(uint64_t from, uint64_t to)
{
    return to > from ? (double)(to - from) / 1e6 : 0;
}

/* ------------------------------------------------------------ the engine */

/* The row of height h written by incarnation inc. */
static void height_value(uint64_t h, int inc, uint8_t out[24])
{
    uint64_t words[3] = {h, (uint64_t)inc, (h ^ ((uint64_t)inc << 40)) * 0x9e3779b97f4a7c15u};
    memcpy(out, words, sizeof words);
}

static void height_key(uint64_t h, uint8_t out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(h >> (56 - 8 * i)); /* big-endian: keys sort by height */
}

static volatile sig_atomic_t engine_stop;

static void on_engine_term(int sig)
{
    (void)sig;
    engine_stop = 1;
}

/* One line to the acknowledgement file, in one write(2): a reader never
 * sees half of it unless the engine dies inside the call. */
static int engine_note(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int engine_note(int fd, const char *fmt, ...)
{
    char line[96];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return n > 0 && write(fd, line, (size_t)n) == n ? 0 : -1;
}

/* The engine child: restores from dir, writes on ring from height + 1
 * until SIGTERM, appending "R height", "W ns" (first write), "A height ns"
 * (acknowledged RK_REPLICATED) and "F" (fenced) to acks_path.  Exit 0
 * stopped, 4 fenced, 1 anything else. */
static int engine_run(const char *dir, const char *ring, const char *acks_path, int inc, uint64_t max_groups,
                      uint64_t deadline_ns)
{
    char err[256] = "";
    rk_ring_opts ro = {.producer = "drill",
                       .full_timeout_ms = DRILL_ENGINE_WAIT_MS,
                       .errmsg = err,
                       .errmsg_size = sizeof err};
    struct sigaction sa = {.sa_handler = on_engine_term};
    rk_state *st = NULL;
    rk_ring *r = NULL;
    uint16_t heights = 0, book = 0;
    uint64_t h = 0, lsn = 0, first = 0;
    uint8_t key[8], val[24];
    int fd = open(acks_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600), rc;
    /* test hook: every group noted acknowledged as soon as it is written,
     * with no RK_REPLICATED wait (a weakened drill, which must report loss) */
    int early = getenv("RK_TEST_DRILL_ACK_EARLY") != NULL;

    sigaction(SIGTERM, &sa, NULL);
    if (fd < 0)
        return 1;
    rc = rk_state_open(dir, &st);
    if (!rc) {
        rc = rk_state_height(st, "drill", &h);
        if (rc == RK_ENOTFOUND)
            rc = 0, h = 0;
    }
    rk_state_close(st);
    if (!rc)
        rc = engine_note(fd, "R %" PRIu64 "\n", h) ? EIO : 0;
    if (!rc)
        rc = rk_ring_attach(ring, &ro, &r);
    if (!rc)
        rc = rk_table(r, "heights", &heights);
    if (!rc)
        rc = rk_table(r, "book", &book);
    first = h + 1;
    for (uint64_t g = first; !rc && !engine_stop && g < first + max_groups && now_ns() < deadline_ns; g++) {
        uint64_t book_key = g % DRILL_BOOK_KEYS, gone = (g * 7) % DRILL_BOOK_KEYS;
        height_key(g, key);
        height_value(g, inc, val);
        rc = rk_put(r, heights, key, sizeof key, val, sizeof val, NULL);
        if (!rc)
            rc = rk_put(r, book, &book_key, sizeof book_key, val, sizeof val, NULL);
        if (!rc && g % 3 == 0)
            rc = rk_del(r, book, &gone, sizeof gone, NULL);
        if (!rc)
            rc = rk_mark(r, g, &lsn);
        if (!rc && g == first)
            rc = engine_note(fd, "W %" PRIu64 "\n", now_ns()) ? EIO : 0;
        if (!rc && early)
            rc = engine_note(fd, "A %" PRIu64 " %" PRIu64 "\n", g, now_ns()) ? EIO : 0;
        if (rc || early || (g - first + 1) % DRILL_GROUPS_PER_WAIT != 0)
            continue;
        rc = rk_wait(r, lsn, RK_REPLICATED, DRILL_ENGINE_WAIT_MS);
        uint64_t at = now_ns();
        for (uint64_t a = g + 1 - DRILL_GROUPS_PER_WAIT; !rc && a <= g; a++)
            rc = engine_note(fd, "A %" PRIu64 " %" PRIu64 "\n", a, at) ? EIO : 0;
    }
    if (rc == RK_EFENCED)
        engine_note(fd, "F\n");
    else if (rc)
        fprintf(stderr, "drill engine %d: %s %s\n", inc, rk_strerror(rc), err);
    rk_ring_detach(r);
    close(fd);
    return rc == RK_EFENCED ? 4 : rc ? 1 : 0;
}

/* ------------------------------------------------------------ children */

/* Runs `ringkeep node` for slot s: the primary, or a standby, given
 * every node's endpoints (paired by position): it follows the primary of
 * the highest epoch among them and re-points by itself when a standby is
 * promoted.  Its output goes to DIR/<id>.log. */
static pid_t node_spawn(struct drill *d, struct slot *s, int standby)
{
    char log[PATH_MAX + 8], sets[12][32 + (DRILL_MAX_STANDBYS + 1) * (CONFIG_ENDPOINT_MAX + 1)];
    const char *argv[16 + 2 * (12 + DRILL_MAX_SETS) + 1]; /* fixed ones, --set per sets[] and -o.sets */
    int n = 0, k = 0;
    pid_t pid;

    snprintf(log, sizeof log, "%s/%s.log", d->dir, s->id);
    snprintf(sets[k++], sizeof sets[0], "node.role=%s", standby ? "standby" : "primary");
    if (!s->config) {
        snprintf(sets[k++], sizeof sets[0], "replication.publish=%s", s->publish);
        snprintf(sets[k++], sizeof sets[0], "replication.serve=%s", s->serve);
        snprintf(sets[k++], sizeof sets[0], "replication.node_id=%s", s->id);
    }
    if (d->o.ha) { /* every node may lead or follow: all of them need every endpoint */
        snprintf(sets[k++], sizeof sets[0], "ha.etcd=%s", d->etcd_url);
        snprintf(sets[k++], sizeof sets[0], "ha.cluster=%s", d->cluster);
        snprintf(sets[k++], sizeof sets[0], "ha.ttl_ms=%u", d->o.ttl_ms);
        snprintf(sets[k++], sizeof sets[0], "replication.on_higher_epoch=rejoin");
    }
    if (standby || d->o.ha) {
        size_t pub = (size_t)snprintf(sets[k], sizeof sets[0], "replication.primary_publish=");
        size_t serve = (size_t)snprintf(sets[k + 1], sizeof sets[0], "replication.primary_serve=");
        for (int i = 0; i < d->n_slots; i++) {
            pub += (size_t)snprintf(sets[k] + pub, sizeof sets[0] - pub, "%s%s", i ? "," : "",
                                    d->slots[i].publish);
            serve += (size_t)snprintf(sets[k + 1] + serve, sizeof sets[0] - serve, "%s%s", i ? "," : "",
                                      d->slots[i].serve);
        }
        k += 2;
    }
    argv[n++] = d->exe;
    argv[n++] = "node";
    argv[n++] = "--log-level";
    argv[n++] = "warn";
    if (s->config) { /* the file's settings, but for the role and whom it follows */
        argv[n++] = "-c";
        argv[n++] = s->config;
    } else {
        argv[n++] = "--data-dir";
        argv[n++] = s->dir;
        argv[n++] = "--ring";
        argv[n++] = s->ring;
        argv[n++] = "--set";
        argv[n++] = "ring.capacity=4M";
        argv[n++] = "--set";
        argv[n++] = "replication.min_replicas=1";
        argv[n++] = "--set"; /* the drill's nodes talk over ipc in its own private directory */
        argv[n++] = "replication.insecure_acks=yes";
        argv[n++] = "--set";
        argv[n++] = "replication.heartbeat_ms=50";
    }
    for (int i = 0; i < k; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    for (int i = 0; i < d->o.n_sets; i++) { /* the user's, last: they win */
        argv[n++] = "--set";
        argv[n++] = d->o.sets[i];
    }
    argv[n] = NULL;
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(d->exe, (char *const *)argv);
        _exit(97);
    }
    s->pid = pid > 0 ? pid : 0;
    s->primary = !standby;
    return pid;
}

/* The child pid has exited (reaped here, status in *status if not NULL;
 * a pid not ours any more counts as exited). */
static int exited(pid_t pid, int *status)
{
    int st = 0;
    pid_t got;

    if (pid <= 0)
        return 1;
    if ((got = waitpid(pid, &st, WNOHANG)) == 0)
        return 0;
    if (got < 0)
        return 1;
    if (status)
        *status = st;
    return 1;
}

/* Waits (bounded) until the node of slot s answers its status as itself;
 * 0, or -1 with why in err. */
static int node_wait_up(struct slot *s, char *err, size_t err_size)
{
    uint64_t deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;
    int status = 0;

    while (now_ns() < deadline) {
        json_t *st = cli_node_json(s->dir, "status", 1000, NULL);
        int mine = st && cli_json_u64(st, "pid") == (uint64_t)s->pid;
        json_decref(st);
        if (mine)
            return 0;
        if (exited(s->pid, &status)) {
            snprintf(err, err_size, "%s exited (status %d) before answering; see its log", s->id,
                     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            s->pid = 0;
            return -1;
        }
        usleep(DRILL_POLL_US * 5);
    }
    snprintf(err, err_size, "%s did not answer within %d s", s->id, DRILL_STEP_S);
    return -1;
}

/* Sends sig to pid and reaps it, waiting at most DRILL_STEP_S (then
 * SIGKILL).  Returns the wait status. */
static int stop_child(pid_t pid, int sig)
{
    uint64_t deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;
    int status = 0;

    if (pid <= 0)
        return 0;
    kill(pid, sig);
    while (!exited(pid, &status)) {
        if (now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return status;
        }
        usleep(DRILL_POLL_US);
    }
    return status;
}

static int engine_start(struct drill *d, struct engine *e, const struct slot *p, int inc)
{
    uint64_t deadline = now_ns() + ((uint64_t)d->o.n_rounds + 2) * 4 * DRILL_STEP_S * 1000000000u;

    memset(e, 0, sizeof *e);
    e->incarnation = inc;
    e->fd = -1;
    snprintf(e->path, sizeof e->path, "%s/engine-%d.acks", d->dir, inc);
    fflush(NULL);
    e->pid = fork();
    if (e->pid == 0)
        _exit(engine_run(p->dir, p->ring, e->path, inc, DRILL_ENGINE_MAX_GROUPS, deadline));
    return e->pid > 0 ? 0 : -1;
}

/* Reads what the engine appended since the last call. */
static void engine_read(struct drill *d, struct engine *e)
{
    char buf[8192];
    ssize_t got;

    if (e->fd < 0 && (e->fd = open(e->path, O_RDONLY | O_CLOEXEC)) < 0)
        return;
    while ((got = pread(e->fd, buf, sizeof buf, e->offset)) > 0) {
        e->offset += got;
        for (ssize_t i = 0; i < got; i++) {
            if (buf[i] != '\n') {
                if (e->partial_len + 1 < sizeof e->partial)
                    e->partial[e->partial_len++] = buf[i];
                continue;
            }
            e->partial[e->partial_len] = '\0';
            e->partial_len = 0;
            uint64_t a = 0, b = 0;
            if (sscanf(e->partial, "R %" SCNu64, &a) == 1) {
                e->restored_seen = 1;
                e->restored_height = a;
            } else if (sscanf(e->partial, "W %" SCNu64, &a) == 1) {
                e->first_write_ns = a;
            } else if (sscanf(e->partial, "A %" SCNu64 " %" SCNu64, &a, &b) == 2) {
                if (d->n_acks == d->acks_cap) {
                    size_t cap = d->acks_cap ? d->acks_cap * 2 : 4096;
                    struct ack *more = realloc(d->acks, cap * sizeof *more);
                    if (!more) { /* an acknowledgement not recorded could not be checked */
                        d->acks_lost = 1;
                        continue;
                    }
                    d->acks = more;
                    d->acks_cap = cap;
                }
                d->acks[d->n_acks++] = (struct ack){.height = a, .ns = b, .incarnation = e->incarnation};
                e->n_acks++;
                e->max_ack = a > e->max_ack ? a : e->max_ack;
            } else if (strcmp(e->partial, "F") == 0) {
                e->fenced = 1;
            }
        }
    }
}

static void engine_close(struct engine *e)
{
    if (e->fd >= 0)
        close(e->fd);
    e->fd = -1;
    e->pid = 0;
}

/* ------------------------------------------------------------ set-aside */

/* Entries in the set-aside/entries-<from>-<to>-... files of dir. */
static uint64_t set_aside_entries(const char *dir)
{
    char path[PATH_MAX + 16];
    struct dirent *de;
    uint64_t n = 0;
    DIR *dp;

    snprintf(path, sizeof path, "%s/set-aside", dir);
    if (!(dp = opendir(path)))
        return 0;
    while ((de = readdir(dp))) {
        uint64_t from = 0, to = 0;
        if (sscanf(de->d_name, "entries-%" SCNu64 "-%" SCNu64 "-", &from, &to) == 2 && to >= from)
            n += to - from + 1;
    }
    closedir(dp);
    return n;
}

/* ------------------------------------------------------------ one round */

static void progress(struct drill *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(struct drill *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfprintf(d->progress, fmt, ap);
    va_end(ap);
    fputc('\n', d->progress);
    fflush(d->progress);
}

static int primary_slot(const struct drill *d)
{
    for (int i = 0; i < d->n_slots; i++)
        if (d->slots[i].primary)
            return i;
    return -1;
}

/* Waits until the engine e has acknowledged n groups in all, or has
 * written (first write seen) when n is 0.  0, or -1 (bounded). */
static int engine_wait(struct drill *d, struct engine *e, uint64_t n, int want_write)
{
    uint64_t deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;

    for (;;) {
        engine_read(d, e);
        if (want_write ? e->first_write_ns != 0 : e->n_acks >= n)
            return 0;
        if (exited(e->pid, NULL)) {
            e->pid = 0;
            engine_read(d, e);
            return want_write ? (e->first_write_ns ? 0 : -1) : (e->n_acks >= n ? 0 : -1);
        }
        if (now_ns() > deadline)
            return -1;
        usleep(DRILL_POLL_US);
    }
}

/* The standby holding most (journal_seq), ties to the lowest slot after
 * the old primary so that failover goes round.  -1 when none answers. */
static int most_advanced_once(struct drill *d, int old, uint64_t seqs[])
{
    int best = -1;
    uint64_t best_seq = 0;

    for (int k = 1; k < d->n_slots; k++) {
        int i = (old + k) % d->n_slots;
        json_t *st = cli_node_json(d->slots[i].dir, "status", 2000, NULL);
        seqs[i] = st ? cli_json_u64(st, "journal_seq") : UINT64_MAX;
        if (st && strcmp(cli_json_str(st, "role"), "standby") == 0 &&
            (best < 0 || cli_json_u64(st, "journal_seq") > best_seq)) {
            best = i;
            best_seq = cli_json_u64(st, "journal_seq");
        }
        json_decref(st);
    }
    return best;
}

/* The standby holding the most, read once every standby has stopped
 * receiving: entries the old primary sent before it stopped can still be
 * in a standby's socket buffers, and a standby that journals (and
 * acknowledges) one after a first look would then hold more than the one
 * chosen; it sets that entry aside when it re-points, and an old primary
 * woken from SIGSTOP passes its acknowledgement on to its engine.  So the
 * journal seqs are read until two reads 20 polls apart agree (bounded
 * by DRILL_STEP_S; the last read counts then). */
static int most_advanced(struct drill *d, int old)
{
    uint64_t a[DRILL_MAX_STANDBYS + 1] = {0}, b[DRILL_MAX_STANDBYS + 1] = {0};
    uint64_t deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;
    int best = most_advanced_once(d, old, a);

    while (now_ns() < deadline) {
        usleep(DRILL_POLL_US * 20);
        best = most_advanced_once(d, old, b);
        if (memcmp(a, b, sizeof a) == 0)
            break;
        memcpy(a, b, sizeof a);
    }
    return best;
}

/* Promotes slot i (control request "promote") and waits until it answers
 * as a primary of an epoch above was; its new epoch in *epoch. */
static int promote(struct drill *d, int i, uint64_t was, uint64_t *epoch, double *took_ms, char *err,
                   size_t err_size)
{
    uint64_t asked = now_ns();
    char *reply = NULL, role[16];
    int rc = node_request(d->slots[i].dir, "promote", 5000, &reply);

    if (rc || strncmp(reply, "ok", 2) != 0) {
        snprintf(err, err_size, "promote %s: %s", d->slots[i].id, rc ? rk_strerror(rc) : reply);
        free(reply);
        return -1;
    }
    free(reply);
    if (cli_wait_primary(d->slots[i].dir, was, DRILL_STEP_S * 1000, DRILL_POLL_US, role, sizeof role,
                         epoch) == 0) {
        *took_ms = ms_between(asked, now_ns());
        d->slots[i].primary = 1;
        return 0;
    }
    snprintf(err, err_size, "%s not a primary %d s after the promote request", d->slots[i].id, DRILL_STEP_S);
    return -1;
}

/* Waits until the standby on slot i follows the primary p of epoch (it
 * re-points by itself) and has caught up: connected, holding at least the
 * primary's journal_seq of when the wait began.  With rejoin, slot i is
 * the old primary: it is (re)started as a standby first, its stale ring
 * removed. */
static int follow(struct drill *d, int i, int p, uint64_t epoch, int rejoin, char *err, size_t err_size)
{
    struct slot *s = &d->slots[i];
    uint64_t deadline, target;
    json_t *st;

    if (rejoin) {
        if (s->pid)
            stop_child(s->pid, SIGTERM);
        s->pid = 0;
        /* an old primary's ring: the new primary took no record of it
         * that was not journaled, and a promotion of this directory must
         * create a new one at its journal's next LSN, not take this one
         * over */
        ring_unlink(s->ring);
        if (node_spawn(d, s, 1) <= 0 || node_wait_up(s, err, err_size) != 0)
            return -1;
    }
    st = cli_node_json(d->slots[p].dir, "status", 2000, NULL);
    target = cli_json_u64(st, "journal_seq");
    json_decref(st);
    deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;
    while (now_ns() < deadline) {
        int ok;
        st = cli_node_json(s->dir, "status", 1000, NULL);
        ok = st && json_is_true(json_object_get(st, "connected")) &&
             cli_json_u64(st, "primary_epoch") == epoch && cli_json_u64(st, "journal_seq") >= target;
        json_decref(st);
        if (ok)
            return 0;
        if (exited(s->pid, NULL)) {
            s->pid = 0;
            snprintf(err, err_size, "%s exited while catching up; see its log", s->id);
            return -1;
        }
        usleep(DRILL_POLL_US * 5);
    }
    snprintf(err, err_size, "%s did not follow %s (epoch %" PRIu64 ") up to seq %" PRIu64 " in %d s", s->id,
             d->slots[p].id, epoch, target, DRILL_STEP_S);
    return -1;
}

/* SIGSTOP: wakes the old primary on slot i (stopped since the kill) after
 * the promotion at promoted_ns.  It must step down (exit
 * NODE_EXIT_FENCED): told by another standby, which follows the new
 * primary and says HELLO at its epoch to a primary of a lower one; with a
 * single standby (promoted) nobody tells it, and the drill sends the
 * control request "fence EPOCH" once it answers.  Its engine (old) must
 * get RK_EFENCED and must have had nothing acknowledged after the
 * promotion above held (the height the new primary restored to). */
static int wake_and_fence(struct drill *d, int i, struct engine *old, uint64_t epoch, uint64_t promoted_ns,
                          uint64_t held, struct round_report *r)
{
    struct slot *s = &d->slots[i];
    uint64_t deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u, was_epoch = 0;
    char req[64] = "", role[16] = "", *reply = NULL, how[96], woke[64];
    int status = 0, answered = 0, gone = 0, exit_code = -1, told_by_peer = d->n_slots > 2;
    uint64_t n_late = 0;

    kill(s->pid, SIGCONT);
    while (!(gone = exited(s->pid, &status)) && now_ns() < deadline) {
        json_t *st = answered ? NULL : cli_node_json(s->dir, "status", 500, NULL);
        if (st) {
            answered = 1;
            snprintf(role, sizeof role, "%s", cli_json_str(st, "role"));
            was_epoch = cli_json_u64(st, "epoch");
        }
        json_decref(st);
        if (answered && !told_by_peer && !req[0]) {
            snprintf(req, sizeof req, "fence %" PRIu64, epoch);
            node_request(s->dir, req, 5000, &reply);
            free(reply);
            reply = NULL;
        }
        usleep(DRILL_POLL_US);
    }
    if (gone && WIFEXITED(status))
        exit_code = WEXITSTATUS(status);
    if (!gone)
        stop_child(s->pid, SIGKILL);
    s->pid = 0;
    /* its engine: RK_EFENCED from its RK_REPLICATED wait, then exits 4 */
    int engine_status = 0, engine_done = 0;
    while (!(engine_done = exited(old->pid, &engine_status)) && now_ns() < deadline)
        usleep(DRILL_POLL_US);
    if (!engine_done)
        stop_child(old->pid, SIGKILL);
    engine_read(d, old);
    /* an acknowledgement its engine saw only after the promotion is
     * wrong when the new primary does not hold the height (it restored
     * to held): one given by the woken primary on its own; a height the
     * new primary holds was acknowledged by a standby before the stop,
     * and the stopped primary could not pass that on in time */
    for (size_t a = 0; a < d->n_acks; a++) {
        int late = d->acks[a].incarnation == old->incarnation && d->acks[a].ns >= promoted_ns;
        n_late += late;
        r->acked_after_promotion += late && d->acks[a].height > held;
    }
    if (told_by_peer)
        snprintf(how, sizeof how, "stepped down, told by a standby of epoch %" PRIu64, epoch);
    else
        snprintf(how, sizeof how, "fenced on `%s`", req);
    if (answered)
        snprintf(woke, sizeof woke, "answered as %s of epoch %" PRIu64, role, was_epoch);
    else
        snprintf(woke, sizeof woke, "exited before answering");
    snprintf(r->woke, sizeof r->woke,
             "%s; %s: %s; its engine: %s; acknowledged after the promotion: %" PRIu64
             " not held by the new primary (%" PRIu64 " seen late, held)",
             woke, how, exit_code == NODE_EXIT_FENCED ? "exit 4" : "NOT fenced",
             old->fenced ? "RK_EFENCED" : "NOT fenced", r->acked_after_promotion,
             n_late - r->acked_after_promotion);
    engine_close(old);
    return exit_code == NODE_EXIT_FENCED && old->fenced && r->acked_after_promotion == 0 ? 0 : -1;
}

static int run_round(struct drill *d, int round, struct round_report *r)
{
    struct engine *cur = &d->engines[0], *old = &d->engines[1];
    int p = primary_slot(d), np;
    uint64_t target, kill_ns, promoted_ns, old_epoch;
    json_t *st = cli_node_json(d->slots[p].dir, "status", 2000, NULL);

    old_epoch = cli_json_u64(st, "epoch");
    json_decref(st);
    r->round = round;
    r->kill = d->o.kills[(round - 1) % d->o.n_kills];
    r->old_primary = p;
    r->new_primary = -1;
    target = cur->n_acks + 1 + (uint64_t)rand() % d->o.records;
    if (engine_wait(d, cur, target, 0) != 0) {
        snprintf(r->error, sizeof r->error, "the engine did not get %" PRIu64 " acknowledgements in %d s",
                 target, DRILL_STEP_S);
        return -1;
    }
    usleep((useconds_t)(rand() % 3000)); /* a moment inside the engine's next groups */
    engine_read(d, cur);
    r->acked_before = 0;
    for (size_t a = 0; a < d->n_acks; a++)
        r->acked_before = d->acks[a].height > r->acked_before ? d->acks[a].height : r->acked_before;

    kill_ns = now_ns();
    if (r->kill == KILL_SIGSTOP) {
        kill(d->slots[p].pid, SIGSTOP);
    } else {
        stop_child(d->slots[p].pid, r->kill == KILL_SIGKILL ? SIGKILL : SIGTERM);
        d->slots[p].pid = 0;
    }

    np = most_advanced(d, p);
    if (np < 0) {
        snprintf(r->error, sizeof r->error, "no standby answers");
        return -1;
    }
    r->new_primary = np;
    if (promote(d, np, old_epoch, &r->new_epoch, &r->promotion_ms, r->error, sizeof r->error) != 0)
        return -1;
    d->slots[p].primary = 0;
    promoted_ns = now_ns();
    r->promoted_ms = ms_between(kill_ns, promoted_ns);

    /* the engine: the old one is gone with its primary (a SIGSTOPped
     * one's is watched until the woken primary is fenced) */
    engine_read(d, cur);
    if (r->kill == KILL_SIGSTOP) {
        *old = *cur;
    } else {
        stop_child(cur->pid, SIGKILL);
        engine_read(d, cur);
        engine_close(cur);
    }
    size_t n_acked = d->n_acks; /* before the new engine's own */
    if (engine_start(d, cur, &d->slots[np], round) != 0 || engine_wait(d, cur, 0, 1) != 0) {
        snprintf(r->error, sizeof r->error, "the engine did not write on %s within %d s", d->slots[np].id,
                 DRILL_STEP_S);
        return -1;
    }
    r->engine_ms = ms_between(kill_ns, cur->first_write_ns);
    r->restored_height = cur->restored_height;
    for (size_t a = 0; a < n_acked; a++)
        r->lost_at_restore += d->acks[a].height > cur->restored_height;

    for (int i = 0; i < d->n_slots; i++)
        if (i != np && i != p && follow(d, i, np, r->new_epoch, 0, r->error, sizeof r->error) != 0)
            return -1;
    r->repointed_ms = ms_between(kill_ns, now_ns());
    if (r->kill == KILL_SIGSTOP &&
        wake_and_fence(d, p, old, r->new_epoch, promoted_ns, cur->restored_height, r) != 0) {
        snprintf(r->error, sizeof r->error, "the woken primary: %s", r->woke);
        return -1;
    }
    uint64_t aside_before = set_aside_entries(d->slots[p].dir);
    if (follow(d, p, np, r->new_epoch, 1, r->error, sizeof r->error) != 0)
        return -1;
    r->set_aside = set_aside_entries(d->slots[p].dir) - aside_before;
    return 0;
}

/* ------------------------------------------------------------ the end */

/* Stops the engine and waits until every node holds and has applied the
 * primary's last entry with the primary's digest.  1 equal, 0 not (within
 * the bound); *digest the primary's. */
static int digests_equal(struct drill *d, char digest[17])
{
    uint64_t deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;
    int p = primary_slot(d);

    digest[0] = '\0';
    while (now_ns() < deadline) {
        json_t *pst = cli_node_json(d->slots[p].dir, "status", 2000, NULL);
        uint64_t seq = cli_json_u64(pst, "journal_seq");
        int all = pst != NULL;
        snprintf(digest, 17, "%s", cli_json_str(pst, "state_digest"));
        for (int i = 0; all && i < d->n_slots; i++) {
            json_t *st = i == p ? NULL : cli_node_json(d->slots[i].dir, "status", 2000, NULL);
            all = i == p ||
                  (st && cli_json_u64(st, "journal_seq") == seq && cli_json_u64(st, "applied_seq") == seq &&
                   strcmp(cli_json_str(st, "state_digest"), digest) == 0);
            json_decref(st);
        }
        json_decref(pst);
        if (all)
            return 1;
        usleep(DRILL_POLL_US * 10);
    }
    return 0;
}

/* Acknowledged heights whose row on the final primary is missing or not
 * the bytes of the incarnation that had it acknowledged. */
static uint64_t lost_on(struct drill *d, const char *dir, char *err, size_t err_size)
{
    rk_state *st = NULL;
    uint64_t lost = 0;
    int rc = rk_state_open(dir, &st);

    if (rc) {
        snprintf(err, err_size, "cannot open the final primary's state: %s", rk_strerror(rc));
        return d->n_acks;
    }
    for (size_t a = 0; a < d->n_acks; a++) {
        uint8_t key[8], want[24];
        void *val = NULL;
        uint32_t vlen = 0;
        height_key(d->acks[a].height, key);
        height_value(d->acks[a].height, d->acks[a].incarnation, want);
        rc = rk_state_get(st, "heights", key, sizeof key, &val, &vlen);
        lost += rc != 0 || vlen != sizeof want || memcmp(val, want, sizeof want) != 0;
        free(val);
    }
    rk_state_close(st);
    return lost;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(struct drill *d)
{
    for (int e = 0; e < 2; e++) {
        if (d->engines[e].pid > 0)
            stop_child(d->engines[e].pid, SIGKILL);
        engine_close(&d->engines[e]);
    }
    for (int i = 0; i < d->n_slots; i++) {
        if (d->slots[i].pid > 0) {
            kill(d->slots[i].pid, SIGCONT);
            stop_child(d->slots[i].pid, SIGTERM);
        }
        ring_unlink(d->slots[i].ring);
    }
    if (d->made_dir && !d->o.keep)
        nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------ report */

static double percentile(double *v, int n, double q)
{
    for (int i = 1; i < n; i++) /* insertion sort: a few hundred rounds at most */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    if (n == 0)
        return 0;
    int idx = (int)(q * (n - 1) + 0.5);
    return v[idx];
}

static json_t *round_json(const struct drill *d, const struct round_report *r)
{
    json_t *o =
        json_pack("{s:i, s:s, s:s, s:s, s:I, s:f, s:f, s:f, s:I, s:I, s:I, s:I}", "round", r->round, "kill",
                  kill_names[r->kill], "old_primary", d->slots[r->old_primary].id, "new_primary",
                  r->new_primary >= 0 ? d->slots[r->new_primary].id : "", "epoch", (json_int_t)r->new_epoch,
                  "promotion_ms", r->promotion_ms, "kill_to_primary_ms", r->promoted_ms, "kill_to_engine_ms",
                  r->engine_ms, "acked_before_kill", (json_int_t)r->acked_before, "restored_height",
                  (json_int_t)r->restored_height, "lost_at_restore", (json_int_t)r->lost_at_restore,
                  "set_aside_entries", (json_int_t)r->set_aside);
    if (o)
        json_object_set_new(o, "kill_to_standbys_following_ms", json_real(r->repointed_ms));
    if (o && r->kill == KILL_SIGSTOP)
        json_object_set_new(o, "woken_primary", json_string(r->woke));
    if (o && r->kill == KILL_SIGSTOP)
        json_object_set_new(o, "acked_after_promotion", json_integer((json_int_t)r->acked_after_promotion));
    if (o && r->error[0])
        json_object_set_new(o, "error", json_string(r->error));
    return o;
}

static int report(struct drill *d, uint64_t lost, int equal, const char *digest, const char *final_error,
                  uint64_t seed)
{
    int n = d->n_rounds_done, failed = 0;
    double promoted[DRILL_MAX_ROUNDS], engine[DRILL_MAX_ROUNDS], promotion[DRILL_MAX_ROUNDS];
    uint64_t lost_restore = 0, aside = 0, after = 0;

    for (int i = 0; i < n; i++) {
        const struct round_report *r = &d->rounds[i];
        promoted[i] = r->promoted_ms;
        promotion[i] = r->promotion_ms;
        engine[i] = r->engine_ms;
        lost_restore += r->lost_at_restore;
        aside += r->set_aside;
        after += r->acked_after_promotion;
        failed |= r->error[0] != 0;
    }
    failed |= n < d->o.n_rounds || lost || lost_restore || after || !equal || final_error[0] || d->acks_lost;
    if (d->acks_lost)
        fprintf(stderr, "ringkeep drill: out of memory recording acknowledgements: loss cannot be ruled out\n");
    if (d->o.json) {
        json_t *rounds = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(rounds, round_json(d, &d->rounds[i]));
        json_t *o = json_pack(
            "{s:o, s:i, s:i, s:I, s:I, s:I, s:I, s:b, s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:b}",
            "rounds", rounds, "rounds_done", n, "standbys", d->o.n_standbys, "seed", (json_int_t)seed,
            "acknowledged", (json_int_t)d->n_acks, "lost", (json_int_t)lost, "lost_at_restore",
            (json_int_t)lost_restore, "digests_equal", equal, "digest", digest, "set_aside_entries",
            (json_int_t)aside, "promotion_p50_ms", percentile(promotion, n, 0.5), "promotion_p99_ms",
            percentile(promotion, n, 0.99), "kill_to_primary_p50_ms", percentile(promoted, n, 0.5),
            "kill_to_primary_p99_ms", percentile(promoted, n, 0.99), "kill_to_engine_p50_ms",
            percentile(engine, n, 0.5), "kill_to_engine_p99_ms", percentile(engine, n, 0.99),
            "acked_after_promotion", (json_int_t)after, "ok", !failed);
        if (o && final_error[0])
            json_object_set_new(o, "error", json_string(final_error));
        cli_print_json(o);
        return failed;
    }
    printf("\nround kill     old -> new  epoch  promotion  to primary  to engine  acked  restored  lost  set "
           "aside\n");
    for (int i = 0; i < n; i++) {
        const struct round_report *r = &d->rounds[i];
        printf("%5d %-7s  %3s -> %-3s %6" PRIu64 " %7.1f ms %8.1f ms %7.1f ms %6" PRIu64 " %9" PRIu64
               " %5" PRIu64 " %10" PRIu64 "%s%s\n",
               r->round, kill_names[r->kill], d->slots[r->old_primary].id,
               r->new_primary >= 0 ? d->slots[r->new_primary].id : "-", r->new_epoch, r->promotion_ms,
               r->promoted_ms, r->engine_ms, r->acked_before, r->restored_height, r->lost_at_restore,
               r->set_aside, r->error[0] ? "  FAILED: " : "", r->error);
        if (r->kill == KILL_SIGSTOP && r->woke[0])
            printf("      woken primary: %s\n", r->woke);
    }
    printf("\ntotal: %d of %d rounds, %d standbys, seed %" PRIu64 "\n", n, d->o.n_rounds, d->o.n_standbys,
           seed);
    printf("  promotion (request -> primary)        p50 %.1f ms  p99 %.1f ms\n",
           percentile(promotion, n, 0.5), percentile(promotion, n, 0.99));
    printf("  kill -> new primary accepting writes  p50 %.1f ms  p99 %.1f ms\n", percentile(promoted, n, 0.5),
           percentile(promoted, n, 0.99));
    printf("  kill -> engine writing again          p50 %.1f ms  p99 %.1f ms\n", percentile(engine, n, 0.5),
           percentile(engine, n, 0.99));
    printf("  acknowledged RK_REPLICATED            %zu heights\n", d->n_acks);
    printf("  lost                                  %" PRIu64 " on the final primary, %" PRIu64
           " above a restored height\n",
           lost, lost_restore);
    printf("  acknowledged by a woken old primary   %" PRIu64 "\n", after);
    printf("  digests of all %d nodes%*s%s (%s)\n", d->n_slots, d->n_slots < 10 ? 16 : 15, "",
           equal ? "equal" : "DIFFER", digest[0] ? digest : "-");
    printf("  entries set aside on old primaries    %" PRIu64 "\n", aside);
    if (final_error[0])
        printf("  error: %s\n", final_error);
    printf("\ndrill %s\n", failed ? "FAILED" : "ok");
    return failed;
}


/* ------------------------------------------------------------ --ha */

/* etcd on the drill's two loopback ports, data in DIR/etcd (kept across a
 * restart), its output in DIR/etcd.log; 0 once it answers a range. */
static int etcd_spawn(struct drill *d, char *err, size_t err_size)
{
    char data[PATH_MAX], log[PATH_MAX], peer[64], initial[96];
    uint64_t deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;
    int status = 0;

    snprintf(data, sizeof data, "%.3000s/etcd", d->dir);
    snprintf(log, sizeof log, "%.3000s/etcd.log", d->dir);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", d->etcd_port + 1);
    snprintf(initial, sizeof initial, "drill=%s", peer);
    fflush(NULL);
    d->etcd_pid = fork();
    if (d->etcd_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        /* etcd's minimum lease TTL is 1.5 election timeouts: 500 ms lets
         * [ha] ttl_ms go down to 1000 */
        execlp("etcd", "etcd", "--name", "drill", "--data-dir", data, "--listen-client-urls", d->etcd_url,
               "--advertise-client-urls", d->etcd_url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls",
               peer, "--initial-cluster", initial, "--heartbeat-interval", "100", "--election-timeout", "500",
               (char *)NULL);
        _exit(97);
    }
    if (d->etcd_pid < 0) {
        d->etcd_pid = 0;
        snprintf(err, err_size, "cannot fork etcd: %s", strerror(errno));
        return -1;
    }
    while (now_ns() < deadline) {
        struct etcd_kv *kvs = NULL;
        size_t n = 0;
        int64_t rev = 0;
        if (etcd_range(d->ec, "/ringkeep/", 1, &kvs, &n, &rev) == 0) {
            etcd_kvs_free(kvs, n);
            return 0;
        }
        if (exited(d->etcd_pid, &status)) {
            d->etcd_pid = 0;
            snprintf(err, err_size,
                     "etcd exited (status %d) before answering on %s; see %.200s (`etcd` is Debian's etcd-server, "
                     "./setup.sh installs it)",
                     WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), d->etcd_url, log);
            return -1;
        }
        usleep(DRILL_POLL_US * 10);
    }
    snprintf(err, err_size, "etcd does not answer on %s within %d s; see %.200s", d->etcd_url, DRILL_STEP_S, log);
    return -1;
}

/* The leader key: 1 (its slot in *slot, -1 a name not the drill's, and
 * *epoch), 0 absent, -1 etcd did not answer. */
static int ha_leader(struct drill *d, int *slot, uint64_t *epoch)
{
    char key[128];
    struct etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t rev = 0;

    snprintf(key, sizeof key, "/ringkeep/%s/leader", d->cluster);
    if (etcd_range(d->ec, key, 0, &kvs, &n, &rev) != 0)
        return -1;
    *slot = -1;
    *epoch = 0;
    if (n) {
        json_t *v = json_loads(kvs[0].value, 0, NULL);
        for (int i = 0; i < d->n_slots; i++)
            if (strcmp(cli_json_str(v, "name"), d->slots[i].id) == 0)
                *slot = i;
        *epoch = cli_json_u64(v, "epoch");
        json_decref(v);
    }
    etcd_kvs_free(kvs, n);
    return n ? 1 : 0;
}

/* 1 when the member record of slot i is in etcd, 0 not, -1 no answer. */
static int ha_member(struct drill *d, int i)
{
    char key[128];
    struct etcd_kv *kvs = NULL;
    size_t n = 0;
    int64_t rev = 0;

    snprintf(key, sizeof key, "/ringkeep/%s/members/%s", d->cluster, d->slots[i].id);
    if (etcd_range(d->ec, key, 0, &kvs, &n, &rev) != 0)
        return -1;
    etcd_kvs_free(kvs, n);
    return n ? 1 : 0;
}

/* Waits until etcd names a leader of an epoch above was that answers its
 * status as the primary of that epoch; its slot, epoch, and when etcd
 * first named it (*elected_ns).  detect_ns, if not NULL and 0, gets the
 * first moment the leader key was seen gone or held by another epoch. */
static int ha_wait_leader(struct drill *d, uint64_t was, int *slot, uint64_t *epoch, uint64_t *detect_ns,
                          uint64_t *elected_ns, char *err, size_t err_size)
{
    uint64_t deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;

    *elected_ns = 0;
    while (now_ns() < deadline) {
        int s = -1, got = ha_leader(d, &s, epoch);
        uint64_t t = now_ns();
        if (detect_ns && !*detect_ns && (got == 0 || (got == 1 && *epoch > was)))
            *detect_ns = t;
        if (got == 1 && *epoch > was && s >= 0) {
            if (!*elected_ns)
                *elected_ns = t;
            json_t *st = cli_node_json(d->slots[s].dir, "status", 1000, NULL);
            int ok =
                st && strcmp(cli_json_str(st, "role"), "primary") == 0 && cli_json_u64(st, "epoch") == *epoch;
            json_decref(st);
            if (ok) {
                *slot = s;
                for (int i = 0; i < d->n_slots; i++)
                    d->slots[i].primary = i == s;
                return 0;
            }
        }
        usleep(DRILL_POLL_US);
    }
    snprintf(err, err_size, "no node leads above epoch %" PRIu64 " and answers as its primary within %d s", was,
             DRILL_STEP_S);
    return -1;
}

/* Starts engine incarnation inc on slot p, the primary of epoch, and waits
 * for its first write. */
static int ha_engine(struct drill *d, struct engine *e, int p, uint64_t epoch, int inc, char *err, size_t err_size)
{
    d->incs[inc] = (struct incarnation){.slot = p, .epoch = epoch};
    if (engine_start(d, e, &d->slots[p], inc) != 0 || engine_wait(d, e, 0, 1) != 0) {
        snprintf(err, err_size, "the engine did not write on %s within %d s", d->slots[p].id, DRILL_STEP_S);
        return -1;
    }
    return 0;
}

/* Waits (bounded) until engine e has exited; 4 fenced, its exit code, -1. */
static int engine_exit(struct drill *d, struct engine *e)
{
    uint64_t deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;
    int status = 0;

    while (!exited(e->pid, &status)) {
        if (now_ns() > deadline) {
            stop_child(e->pid, SIGKILL);
            status = -1;
            break;
        }
        usleep(DRILL_POLL_US);
    }
    engine_read(d, e);
    engine_close(e);
    return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int ha_round(struct drill *d, int round, struct ha_round *r)
{
    struct engine *cur = &d->engines[0], *old = &d->engines[1];
    int p = primary_slot(d), np = p, f;
    uint64_t target, fault_ns, detect_ns = 0, elected_ns = 0;
    json_t *st = cli_node_json(d->slots[p].dir, "status", 2000, NULL);

    r->old_epoch = cli_json_u64(st, "epoch");
    json_decref(st);
    f = d->o.faults[(round - 1) % d->o.n_faults];
    if (f == HA_FAULT_RANDOM)
        f = d->o.n_random_from ? d->o.random_from[rand() % d->o.n_random_from] : rand() % HA_N_FAULTS;
    r->round = round;
    r->fault = f;
    r->old_primary = p;
    r->new_primary = -1;
    r->victim = -1;
    r->elect_ms = -1;
    target = cur->n_acks + 1 + (uint64_t)rand() % d->o.records;
    if (engine_wait(d, cur, target, 0) != 0) {
        snprintf(r->error, sizeof r->error, "the engine did not get %" PRIu64 " acknowledgements in %d s", target,
                 DRILL_STEP_S);
        return -1;
    }
    usleep((useconds_t)(rand() % 3000)); /* a moment inside the engine's next groups */
    if (f == HA_KILL_STANDBY || f == HA_KILL_BOTH)
        r->victim = (p + 1 + rand() % (d->n_slots - 1)) % d->n_slots;
    engine_read(d, cur);
    size_t acks_at_fault = d->n_acks;
    uint64_t engine_acks_at_fault = cur->n_acks; /* this engine's own count (engine_wait compares it) */

    fault_ns = now_ns();
    if (f == HA_STOP_PRIMARY) {
        kill(d->slots[p].pid, SIGSTOP);
    } else if (f == HA_ETCD) {
        stop_child(d->etcd_pid, SIGKILL);
        d->etcd_pid = 0;
    } else {
        if (f != HA_KILL_STANDBY) {
            stop_child(d->slots[p].pid, SIGKILL);
            d->slots[p].pid = 0;
        }
        if (r->victim >= 0) {
            stop_child(d->slots[r->victim].pid, SIGKILL);
            d->slots[r->victim].pid = 0;
        }
    }

    if (f == HA_KILL_STANDBY) {
        /* the engine goes on (the other standby acknowledges); detection:
         * the victim's member record gone with its lease */
        uint64_t deadline = fault_ns + (uint64_t)DRILL_STEP_S * 1000000000u;
        if (engine_wait(d, cur, engine_acks_at_fault + 1, 0) != 0) {
            snprintf(r->error, sizeof r->error, "the engine acknowledged nothing after %s was killed",
                     d->slots[r->victim].id);
            return -1;
        }
        r->engine_ms = ms_between(fault_ns, d->acks[acks_at_fault].ns);
        while (ha_member(d, r->victim) != 0 && now_ns() < deadline)
            usleep(DRILL_POLL_US);
        if (now_ns() >= deadline) {
            snprintf(r->error, sizeof r->error, "%s's member record outlived its lease", d->slots[r->victim].id);
            return -1;
        }
        r->detect_ms = ms_between(fault_ns, now_ns());
        r->new_epoch = r->old_epoch;
        r->new_primary = p;
    } else {
        if (f == HA_ETCD) {
            /* the primary must fence itself: it steps down, its engine is
             * told RK_EFENCED; then etcd comes back */
            int code = engine_exit(d, cur);
            uint64_t deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;
            for (;;) {
                st = cli_node_json(d->slots[p].dir, "status", 1000, NULL);
                int down = st && strcmp(cli_json_str(st, "role"), "primary") != 0;
                json_decref(st);
                if (down || now_ns() > deadline)
                    break;
                usleep(DRILL_POLL_US);
            }
            detect_ns = now_ns();
            if (code != 4 || detect_ns > deadline) {
                snprintf(r->error, sizeof r->error,
                         "with etcd gone, %s did not fence itself (its engine exited %d, not fenced)",
                         d->slots[p].id, code);
                return -1;
            }
            if (etcd_spawn(d, r->error, sizeof r->error) != 0)
                return -1;
        } else if (f == HA_STOP_PRIMARY) {
            *old = *cur; /* watched until the woken primary fences it */
            memset(cur, 0, sizeof *cur);
            cur->fd = -1;
        } else {
            stop_child(cur->pid, SIGKILL); /* the engine dies with its host */
            engine_read(d, cur);
            engine_close(cur);
        }
        if (f == HA_KILL_BOTH) {
            /* with min_replicas 1 the killed standby may hold the only
             * copy of an acknowledged record: the sync key lets no one
             * lead without its report (docs/HA.md), so it comes back now,
             * as a host restarting would, and the election waits for it */
            struct slot *v = &d->slots[r->victim];
            ring_unlink(v->ring);
            if (node_spawn(d, v, 1) <= 0 || node_wait_up(v, r->error, sizeof r->error) != 0)
                return -1;
        }
        if (ha_wait_leader(d, r->old_epoch, &np, &r->new_epoch, f == HA_ETCD ? NULL : &detect_ns, &elected_ns,
                           r->error, sizeof r->error) != 0)
            return -1;
        r->new_primary = np;
        r->detect_ms = ms_between(fault_ns, detect_ns);
        r->elect_ms = ms_between(fault_ns, elected_ns);
        size_t n_acked = d->n_acks;
        if (ha_engine(d, cur, np, r->new_epoch, round, r->error, sizeof r->error) != 0)
            return -1;
        r->engine_ms = ms_between(fault_ns, cur->first_write_ns);
        r->restored_height = cur->restored_height;
        for (size_t a = 0; a < n_acked; a++)
            r->lost_at_restore += d->acks[a].height > cur->restored_height;
    }
    if (f == HA_STOP_PRIMARY) {
        /* woken, it must acknowledge nothing the new primary does not hold
         * (its engine told RK_EFENCED) and rejoin as a standby by itself */
        uint64_t deadline;
        kill(d->slots[p].pid, SIGCONT);
        int code = engine_exit(d, old);
        for (size_t a = 0; a < d->n_acks; a++)
            r->acked_after_loss += d->acks[a].incarnation == old->incarnation && d->acks[a].ns >= elected_ns &&
                                   d->acks[a].height > r->restored_height;
        deadline = now_ns() + (uint64_t)DRILL_STEP_S * 1000000000u;
        int role_ok = 0;
        while (!role_ok && now_ns() < deadline) {
            st = cli_node_json(d->slots[p].dir, "status", 1000, NULL);
            role_ok = st && strcmp(cli_json_str(st, "role"), "standby") == 0;
            json_decref(st);
            usleep(DRILL_POLL_US * 5);
        }
        snprintf(r->note, sizeof r->note, "woken: engine %s, %s, %" PRIu64 " acknowledged after it lost the lease",
                 code == 4 ? "told RK_EFENCED" : "NOT fenced", role_ok ? "rejoined as a standby" : "NOT a standby",
                 r->acked_after_loss);
        if (code != 4 || !role_ok || r->acked_after_loss) {
            snprintf(r->error, sizeof r->error, "the woken primary %s: %s", d->slots[p].id, r->note);
            return -1;
        }
    }
    /* the dead come back as standbys; every standby follows the primary */
    for (int i = 0; i < d->n_slots; i++) {
        if (d->slots[i].pid)
            continue;
        ring_unlink(d->slots[i].ring); /* a killed primary's stale ring */
        if (node_spawn(d, &d->slots[i], 1) <= 0 || node_wait_up(&d->slots[i], r->error, sizeof r->error) != 0)
            return -1;
    }
    for (int i = 0; i < d->n_slots; i++)
        if (i != np && follow(d, i, np, r->new_epoch, 0, r->error, sizeof r->error) != 0)
            return -1;
    return 0;
}

/* Pairs of engine incarnations on different nodes that had heights
 * acknowledged in the same epoch (must be none). */
static int same_epoch_pairs(const struct drill *d, int n_incs)
{
    int pairs = 0;
    int acked[DRILL_MAX_ROUNDS + 1] = {0};

    for (size_t a = 0; a < d->n_acks; a++)
        acked[d->acks[a].incarnation] = 1;
    for (int i = 0; i < n_incs; i++)
        for (int j = i + 1; j < n_incs; j++)
            pairs += acked[i] && acked[j] && d->incs[i].slot != d->incs[j].slot &&
                     d->incs[i].epoch == d->incs[j].epoch;
    return pairs;
}

static int ha_report(struct drill *d, uint64_t lost, int equal, const char *digest, const char *final_error,
                     int pairs)
{
    int n = d->n_rounds_done, failed = 0;
    uint64_t lost_restore = 0, after = 0;
    json_t *kinds = json_object(), *rounds = json_array();

    for (int i = 0; i < n; i++) {
        const struct ha_round *r = &d->ha_rounds[i];
        lost_restore += r->lost_at_restore;
        after += r->acked_after_loss;
        failed |= r->error[0] != 0;
    }
    failed |= n < d->o.n_rounds || lost || lost_restore || after || !equal || final_error[0] || pairs || d->acks_lost;
    if (d->acks_lost)
        fprintf(stderr, "ringkeep drill: out of memory recording acknowledgements: loss cannot be ruled out\n");
    if (!d->o.json) {
        printf("\nround fault                 old -> new  epoch  detect ms  elect ms  engine ms  restored  lost\n");
        for (int i = 0; i < n; i++) {
            const struct ha_round *r = &d->ha_rounds[i];
            char elect[32] = "-";
            if (r->elect_ms >= 0)
                snprintf(elect, sizeof elect, "%.1f", r->elect_ms);
            printf("%5d %-20s  %3s -> %-3s %6" PRIu64 " %10.1f %9s %10.1f %9" PRIu64 " %5" PRIu64 "%s%s%s%s\n",
                   r->round, fault_names[r->fault], d->slots[r->old_primary].id,
                   r->new_primary >= 0 ? d->slots[r->new_primary].id : "-", r->new_epoch, r->detect_ms, elect,
                   r->engine_ms, r->restored_height, r->lost_at_restore, r->note[0] ? "  " : "", r->note,
                   r->error[0] ? "  FAILED: " : "", r->error);
        }
        printf("\ntotal: %d of %d rounds, %d standbys, ttl_ms %u, seed %u\n", n, d->o.n_rounds, d->o.n_standbys,
               d->o.ttl_ms, d->o.seed);
        printf("  per fault (ms from the fault)  rounds  detect p50/p99   elect p50/p99    engine writing p50/p99\n");
    }
    for (int f = 0; f < HA_N_FAULTS; f++) {
        double det[DRILL_MAX_ROUNDS], el[DRILL_MAX_ROUNDS], en[DRILL_MAX_ROUNDS];
        int k = 0, ke = 0;
        for (int i = 0; i < n; i++) {
            const struct ha_round *r = &d->ha_rounds[i];
            if (r->fault != f || r->error[0])
                continue;
            det[k] = r->detect_ms;
            en[k++] = r->engine_ms;
            if (r->elect_ms >= 0)
                el[ke++] = r->elect_ms;
        }
        if (!k)
            continue;
        double d50 = percentile(det, k, 0.5), d99 = percentile(det, k, 0.99), e50 = percentile(el, ke, 0.5),
               e99 = percentile(el, ke, 0.99), w50 = percentile(en, k, 0.5), w99 = percentile(en, k, 0.99);
        json_object_set_new(kinds, fault_names[f],
                            json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:f}", "rounds", k, "detect_p50_ms", d50,
                                      "detect_p99_ms", d99, "elect_p50_ms", e50, "elect_p99_ms", e99,
                                      "engine_p50_ms", w50, "engine_p99_ms", w99));
        if (!d->o.json) {
            char el_s[48] = "         -";
            if (ke)
                snprintf(el_s, sizeof el_s, "%7.1f %7.1f", e50, e99);
            printf("  %-29s %6d  %7.1f %7.1f  %-15s  %7.1f %7.1f\n", fault_names[f], k, d50, d99, el_s, w50, w99);
        }
    }
    if (d->o.json) {
        for (int i = 0; i < n; i++) {
            const struct ha_round *r = &d->ha_rounds[i];
            json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:f, s:f, s:I, s:I, s:I}", "round", r->round,
                                  "fault", fault_names[r->fault], "old_primary", d->slots[r->old_primary].id,
                                  "new_primary", r->new_primary >= 0 ? d->slots[r->new_primary].id : "",
                                  "old_epoch", (json_int_t)r->old_epoch, "epoch", (json_int_t)r->new_epoch,
                                  "detect_ms", r->detect_ms, "engine_ms", r->engine_ms, "restored_height",
                                  (json_int_t)r->restored_height, "lost_at_restore", (json_int_t)r->lost_at_restore,
                                  "acked_after_lease_lost", (json_int_t)r->acked_after_loss);
            if (o && r->elect_ms >= 0)
                json_object_set_new(o, "elect_ms", json_real(r->elect_ms));
            if (o && r->victim >= 0)
                json_object_set_new(o, "standby_killed", json_string(d->slots[r->victim].id));
            if (o && r->note[0])
                json_object_set_new(o, "note", json_string(r->note));
            if (o && r->error[0])
                json_object_set_new(o, "error", json_string(r->error));
            json_array_append_new(rounds, o);
        }
        json_t *o = json_pack("{s:b, s:o, s:o, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:i, s:b, s:s, s:b}", "ha", 1,
                              "rounds", rounds, "faults", kinds, "rounds_done", n, "standbys", d->o.n_standbys,
                              "ttl_ms", (json_int_t)d->o.ttl_ms, "seed", (json_int_t)d->o.seed, "acknowledged",
                              (json_int_t)d->n_acks, "lost", (json_int_t)lost, "lost_at_restore",
                              (json_int_t)lost_restore, "same_epoch_pairs", pairs, "digests_equal", equal, "digest",
                              digest, "ok", !failed);
        if (o)
            json_object_set_new(o, "acked_after_lease_lost", json_integer((json_int_t)after));
        if (o && final_error[0])
            json_object_set_new(o, "error", json_string(final_error));
        cli_print_json(o);
        return failed;
    }
    json_decref(kinds);
    json_decref(rounds);
    printf("  acknowledged RK_REPLICATED     %zu heights\n", d->n_acks);
    printf("  lost                           %" PRIu64 " on the final primary, %" PRIu64 " above a restored height\n",
           lost, lost_restore);
    printf("  acknowledged after a lease was lost  %" PRIu64 "\n", after);
    printf("  nodes acknowledging in one epoch     %d pairs\n", pairs);
    printf("  digests of all %d nodes        %s (%s)\n", d->n_slots, equal ? "equal" : "DIFFER",
           digest[0] ? digest : "-");
    if (final_error[0])
        printf("  error: %s\n", final_error);
    printf("\ndrill %s\n", failed ? "FAILED" : "ok");
    return failed;
}

/* `ringkeep drill --ha`. */
static int ha_drill(struct drill *d)
{
    char err[512] = "", digest[17] = "", final_error[sizeof err + 64] = "";
    uint64_t lost = 0, elected_ns = 0;
    int rc, equal = 0, p = 0, pairs = 0;

    d->ha_rounds = calloc((size_t)d->o.n_rounds, sizeof *d->ha_rounds);
    snprintf(d->cluster, sizeof d->cluster, "drill-%d", (int)getpid());
    snprintf(d->etcd_url, sizeof d->etcd_url, "http://127.0.0.1:%d", d->etcd_port);
    rc = !d->ha_rounds || etcd_open(d->etcd_url, 500, &d->ec) != 0 ? -1 : 0;
    if (rc)
        snprintf(err, sizeof err, "out of memory");
    progress(d,
             "drill --ha: etcd on %s, %d nodes, ttl_ms %u, %d rounds, faults %s%s, 1..%" PRIu64
             " acknowledged groups per round, seed %u, in %s",
             d->etcd_url, d->n_slots, d->o.ttl_ms, d->o.n_rounds, fault_names[d->o.faults[0]],
             d->o.n_faults > 1 ? ",..." : "", d->o.records, d->o.seed, d->dir);
    if (!rc)
        rc = etcd_spawn(d, err, sizeof err);
    rc = rc ? rc : node_spawn(d, &d->slots[0], 0) > 0 ? node_wait_up(&d->slots[0], err, sizeof err) : -1;
    for (int i = 1; !rc && i < d->n_slots; i++)
        rc = node_spawn(d, &d->slots[i], 1) > 0 ? node_wait_up(&d->slots[i], err, sizeof err) : -1;
    uint64_t epoch = 0;
    if (!rc)
        rc = ha_wait_leader(d, 0, &p, &epoch, NULL, &elected_ns, err, sizeof err);
    if (!rc)
        rc = ha_engine(d, &d->engines[0], p, epoch, 0, err, sizeof err);
    if (rc)
        snprintf(final_error, sizeof final_error, "could not start: %s", err[0] ? err : "fork failed");
    for (int round = 1; !rc && round <= d->o.n_rounds; round++) {
        struct ha_round *r = &d->ha_rounds[round - 1];
        rc = ha_round(d, round, r);
        d->n_rounds_done = round;
        char elect[32] = "no election";
        if (r->elect_ms >= 0)
            snprintf(elect, sizeof elect, "elected %.1f ms", r->elect_ms);
        progress(d,
                 "round %d/%d: %s (%s -> %s, epoch %" PRIu64 "): detected %.1f ms, %s, engine writing %.1f ms "
                 "after the fault, restored height %" PRIu64 "%s%s%s%s",
                 round, d->o.n_rounds, fault_names[r->fault], d->slots[r->old_primary].id,
                 r->new_primary >= 0 ? d->slots[r->new_primary].id : "-", r->new_epoch, r->detect_ms, elect,
                 r->engine_ms, r->restored_height, r->note[0] ? "; " : "", r->note, r->error[0] ? ": FAILED: " : "",
                 r->error);
    }
    if (!rc) {
        stop_child(d->engines[0].pid, SIGTERM);
        engine_read(d, &d->engines[0]);
        engine_close(&d->engines[0]);
        equal = digests_equal(d, digest);
        lost = lost_on(d, d->slots[primary_slot(d)].dir, final_error, sizeof final_error);
    }
    pairs = same_epoch_pairs(d, d->n_rounds_done + 1);
    int made = d->made_dir; /* the nodes stop (revoking their leases) before etcd, etcd before its files go */
    d->made_dir = 0;
    cleanup(d);
    if (d->etcd_pid)
        stop_child(d->etcd_pid, SIGTERM);
    d->etcd_pid = 0;
    etcd_close(d->ec);
    d->made_dir = made;
    if (made && !d->o.keep)
        nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    rc = ha_report(d, lost, equal, digest, final_error, pairs);
    if (!d->made_dir || d->o.keep)
        progress(d, "drill: node, etcd logs and engine files kept in %s", d->dir);
    free(d->ha_rounds);
    return rc;
}

/* ------------------------------------------------------------ options */

static void drill_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep drill [--standbys N] [--rounds R] [--kill MODE[,MODE...]] [--records N]\n"
            "                      [--seed S] [--dir DIR] [--keep] [--set SECTION.KEY=VALUE]... [--json]\n"
            "                      [PRIMARY.ini STANDBY.ini...]\n"
            "  rehearses failover on this host: a primary and N standbys (1-%d, default 2) of this\n"
            "  binary's `ringkeep node` on loopback ports, and an engine writing groups with RK_REPLICATED\n"
            "  waits.  Each of R rounds (default 5) kills the primary after 1..N acknowledged groups\n"
            "  (default 200), promotes the standby holding most, restarts the engine on it, waits for\n"
            "  the other standbys to re-point and brings the old primary back as a standby.  MODE: sigkill,\n"
            "  sigstop (hung; woken after the promotion, it must be fenced) or sigterm, cycled per\n"
            "  round (default sigkill).  Configuration files: the nodes are theirs (the first starts as\n"
            "  the primary; each names an empty data_dir, a ring not yet made, publish and serve), the\n"
            "  drill sets only role and primary_publish/primary_serve (all nodes).  --dir: an empty\n"
            "  directory for logs (and, without files, the data) instead of a temporary one (kept);\n"
            "  --keep keeps the temporary one; --set applies to every node.  Prints progress, a table\n"
            "  per round and the totals (--json: one JSON object).  Exit 0 when every round finished,\n"
            "  no acknowledged height was lost and all digests are equal; else 1.\n"
            "usage: ringkeep drill --ha [--standbys N] [--rounds R] [--faults FAULT[,FAULT...]] [--ttl-ms T]\n"
            "                      [--random-faults FAULT[,FAULT...]]\n"
            "                      [--records N] [--seed S] [--dir DIR] [--keep] [--set SECTION.KEY=VALUE]... [--json]\n"
            "  the same with etcd doing the failover: the drill starts its own etcd (`etcd` on PATH,\n"
            "  loopback) and N+1 nodes with [ha] (ttl_ms T, default 2000), and per round makes one fault:\n"
            "  kill-primary (SIGKILL), stop-primary (SIGSTOP until another node leads, then SIGCONT: it must\n"
            "  be fenced and rejoin), kill-standby, etcd-restart (etcd SIGKILLed: the primary must fence\n"
            "  itself; then started again), kill-primary+standby, or random (default: drawn per round from\n"
            "  the seed, among --random-faults if given; --seed replays).  Reports per fault the time to\n"
            "  detection, to election and until the engine writes again, acknowledged heights lost, and\n"
            "  pairs of nodes that acknowledged in one epoch; exit 1 on any loss, such pair, digest\n"
            "  mismatch or unfinished round.\n",
            DRILL_MAX_STANDBYS);
}

static int parse_kills(struct drill_opts *o, const char *arg)
{
    char copy[128], *save = NULL;

    snprintf(copy, sizeof copy, "%s", arg);
    o->n_kills = 0;
    for (char *m = strtok_r(copy, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(m, kill_names[i]) == 0)
                k = i;
        if (k < 0 || o->n_kills == (int)(sizeof o->kills / sizeof o->kills[0]))
            return -1;
        o->kills[o->n_kills++] = (enum kill_mode)k;
    }
    return o->n_kills ? 0 : -1;
}

/* A comma-separated list of fault names into out[8]; random allowed or not. */
static int parse_faults(int *out, int *n_out, const char *arg, int random_ok)
{
    char copy[256], *save = NULL;

    snprintf(copy, sizeof copy, "%s", arg);
    *n_out = 0;
    for (char *m = strtok_r(copy, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int i = 0; i <= (random_ok ? HA_FAULT_RANDOM : HA_N_FAULTS - 1); i++)
            if (strcmp(m, fault_names[i]) == 0)
                k = i;
        if (k < 0 || *n_out == 8)
            return -1;
        out[(*n_out)++] = k;
    }
    return *n_out ? 0 : -1;
}

/* 0, 1 after --help, or 2 (usage error, said). */
static int parse_opts(int argc, char **argv, struct drill_opts *o)
{
    static const struct option opts[] = {{"standbys", required_argument, NULL, 'n'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {"kill", required_argument, NULL, 'k'},
                                         {"records", required_argument, NULL, 'R'},
                                         {"seed", required_argument, NULL, 'S'},
                                         {"dir", required_argument, NULL, 'd'},
                                         {"keep", no_argument, NULL, 'K'},
                                         {"set", required_argument, NULL, 's'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"ha", no_argument, NULL, 'H'},
                                         {"ttl-ms", required_argument, NULL, 'T'},
                                         {"faults", required_argument, NULL, 'F'},
                                         {"random-faults", required_argument, NULL, 'A'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch, index = 0;

    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, &index)) != -1) {
        unsigned long long v = 0;
        int ok = 1;
        switch (ch) {
        case 'h':
        case '?':
            return cli_usage(drill_usage, ch == 'h') == 0 ? 1 : 2;
        case 'n':
            ok = cli_parse_size(optarg, &v) == 0 && v >= 1 && v <= DRILL_MAX_STANDBYS;
            o->n_standbys = (int)v;
            break;
        case 'r':
            ok = cli_parse_size(optarg, &v) == 0 && v >= 1 && v <= DRILL_MAX_ROUNDS;
            o->n_rounds = (int)v;
            break;
        case 'k':
            ok = parse_kills(o, optarg) == 0;
            break;
        case 'R':
            ok = cli_parse_size(optarg, &v) == 0 && v >= 1 && v <= 10000000;
            o->records = v;
            break;
        case 'S':
            ok = cli_parse_size(optarg, &v) == 0 && v <= UINT32_MAX;
            o->seed = (unsigned)v;
            break;
        case 'd':
            ok = strlen(optarg) < sizeof o->dir;
            snprintf(o->dir, sizeof o->dir, "%s", optarg);
            break;
        case 'K':
            o->keep = 1;
            break;
        case 'H':
            o->ha = 1;
            break;
        case 'T':
            ok = cli_parse_size(optarg, &v) == 0 && v >= 1000 && v <= 600000;
            o->ttl_ms = (uint32_t)v;
            break;
        case 'F':
            ok = parse_faults(o->faults, &o->n_faults, optarg, 1) == 0;
            break;
        case 'A':
            ok = parse_faults(o->random_from, &o->n_random_from, optarg, 0) == 0;
            break;
        case 's':
            ok = o->n_sets < DRILL_MAX_SETS && strchr(optarg, '.') && strchr(optarg, '=');
            if (ok)
                o->sets[o->n_sets++] = optarg;
            break;
        default: /* 'j' */
            o->json = 1;
            break;
        }
        if (!ok) {
            fprintf(stderr,
                    "ringkeep drill: bad option --%s %s (standbys 1-%d, rounds 1-%d, kill "
                    "sigkill|sigstop|sigterm, faults kill-primary|stop-primary|kill-standby|etcd-restart|"
                    "kill-primary+standby|random, ttl-ms 1000-600000, "
                    "records 1-10000000, at most %d --set SECTION.KEY=VALUE)\n",
                    opts[index].name, optarg ? optarg : "", DRILL_MAX_STANDBYS, DRILL_MAX_ROUNDS,
                    DRILL_MAX_SETS);
            return 2;
        }
    }
    for (; optind < argc; optind++) {
        if (o->n_configs == DRILL_MAX_STANDBYS + 1) {
            fprintf(stderr, "ringkeep drill: at most %d configuration files\n", DRILL_MAX_STANDBYS + 1);
            return 2;
        }
        o->configs[o->n_configs++] = argv[optind];
    }
    if (o->n_configs == 1) {
        fprintf(stderr, "ringkeep drill: a primary's and at least one standby's configuration files\n");
        return 2;
    }
    if (o->n_configs)
        o->n_standbys = o->n_configs - 1;
    if (o->ha && (o->n_configs || o->n_standbys < 2)) {
        fprintf(stderr, "ringkeep drill: --ha makes its own nodes (no configuration files), with 2 or more "
                        "standbys (a standby is killed while the primary is)\n");
        return 2;
    }
    return 0;
}

/* 1 when a TCP port on 127.0.0.1 can be bound now. */
static int port_free(int port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

    if (fd < 0)
        return 0;
    ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* The data directories, rings and ports of every node: two consecutive
 * free loopback ports each, below the ephemeral range, from a base the
 * pid picks. */
static int make_slots(struct drill *d)
{
    int n_ports = 2 * d->n_slots + (d->o.ha ? 2 : 0), base = 0; /* --ha: etcd's client and peer ports last */
    int pid = (int)getpid();

    for (int attempt = 0; attempt < 200 && !base; attempt++) {
        int b = 23000 + ((pid + attempt * 97) % 900) * 10, ok = 1;
        for (int i = 0; ok && i < n_ports; i++)
            ok = port_free(b + i);
        base = ok ? b : 0;
    }
    if (!base) {
        fprintf(stderr, "ringkeep drill: no %d free loopback ports found\n", n_ports);
        return -1;
    }
    d->etcd_port = base + 2 * d->n_slots;
    for (int i = 0; i < d->n_slots; i++) {
        struct slot *s = &d->slots[i];
        snprintf(s->id, sizeof s->id, "n%d", i);
        char path[sizeof s->dir];
        snprintf(path, sizeof path, "%s/%s", d->dir, s->id); /* (not into s: it is inside d) */
        memcpy(s->dir, path, sizeof path);
        snprintf(s->ring, sizeof s->ring, "drill.%d.%d", pid, i);
        snprintf(s->publish, sizeof s->publish, "tcp://127.0.0.1:%d", base + 2 * i);
        snprintf(s->serve, sizeof s->serve, "tcp://127.0.0.1:%d", base + 2 * i + 1);
        if (mkdir(s->dir, 0700) != 0) {
            fprintf(stderr, "ringkeep drill: %s: %s\n", s->dir, strerror(errno));
            return -1;
        }
        ring_unlink(s->ring);
    }
    return 0;
}

/* endpoint (a bind address) as a standby on this host connects to it:
 * a TCP endpoint on every address (host "*" or 0.0.0.0) becomes 127.0.0.1. */
static void connect_form(const char *endpoint, char *out, size_t out_size)
{
    const char *port = strrchr(endpoint, ':');

    if (port && (strncmp(endpoint, "tcp://*:", 8) == 0 || strncmp(endpoint, "tcp://0.0.0.0:", 14) == 0))
        snprintf(out, out_size, "tcp://127.0.0.1%s", port);
    else
        snprintf(out, out_size, "%s", endpoint);
}

/* A data directory the drill may fill: it exists and is empty. */
static int empty_dir(const char *path)
{
    DIR *dp = opendir(path);
    struct dirent *de;
    int empty = dp != NULL;

    while (dp && (de = readdir(dp)))
        empty &= strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
    if (dp)
        closedir(dp);
    return empty;
}

/* The nodes of the configuration files: each names an empty data
 * directory (the drill writes its own data there), a ring that does not
 * exist, and publish/serve endpoints; the first file's node starts as
 * the primary. */
static int slots_from_configs(struct drill *d)
{
    for (int i = 0; i < d->n_slots; i++) {
        struct slot *s = &d->slots[i];
        struct node_config *c = cli_load_config("drill", d->o.configs[i]);
        char shm[RK_NAME_MAX + 32];
        const char *why = NULL;

        if (!c)
            return -1;
        snprintf(shm, sizeof shm, "/dev/shm/ringkeep.%s", c->ring_name);
        if (!c->data_dir[0] || !empty_dir(c->data_dir))
            why = "its data_dir must exist and be empty (the drill writes its own data there)";
        else if (!c->ring_name[0] || access(shm, F_OK) == 0)
            why = "it must name a [ring] name that no ring has yet";
        else if (!c->repl_publish[0] || !c->repl_serve[0])
            why = "it must set [replication] publish and serve";
        if (why) {
            fprintf(stderr, "ringkeep drill: %s: %s\n", d->o.configs[i], why);
            free(c);
            return -1;
        }
        s->config = d->o.configs[i];
        snprintf(s->id, sizeof s->id, "n%d", i);
        snprintf(s->dir, sizeof s->dir, "%s", c->data_dir);
        snprintf(s->ring, sizeof s->ring, "%s", c->ring_name);
        connect_form(c->repl_publish, s->publish, sizeof s->publish);
        connect_form(c->repl_serve, s->serve, sizeof s->serve);
        free(c);
    }
    return 0;
}

int cmd_drill(int argc, char **argv)
{
    struct drill d = {.o = {.n_standbys = 2, .n_rounds = 5, .n_kills = 1, .records = 200, .seed = 0,
                            .ttl_ms = 2000, .n_faults = 1, .faults = {HA_FAULT_RANDOM}}};
    char err[512] = "", digest[17] = "", final_error[sizeof err + 64] = "";
    uint64_t lost = 0;
    int rc, equal = 0;
    ssize_t len;

    d.o.kills[0] = KILL_SIGKILL;
    d.o.seed = (unsigned)(now_ns() ^ (uint64_t)getpid());
    if ((rc = parse_opts(argc, argv, &d.o)) != 0)
        return rc == 1 ? 0 : rc;
    d.progress = d.o.json ? stderr : stdout;
    srand(d.o.seed);
    if ((len = readlink("/proc/self/exe", d.exe, sizeof d.exe - 1)) <= 0) {
        fprintf(stderr, "ringkeep drill: cannot find this binary: %s\n", strerror(errno));
        return 1;
    }
    d.exe[len] = '\0';
    if (d.o.dir[0]) {
        snprintf(d.dir, sizeof d.dir, "%s", d.o.dir);
    } else {
        snprintf(d.dir, sizeof d.dir, "/tmp/rk-drill-XXXXXX");
        if (!mkdtemp(d.dir)) {
            fprintf(stderr, "ringkeep drill: cannot make a temporary directory: %s\n", strerror(errno));
            return 1;
        }
        d.made_dir = 1;
    }
    d.n_slots = d.o.n_standbys + 1;
    d.rounds = calloc((size_t)d.o.n_rounds, sizeof *d.rounds);
    if (!d.rounds || (d.o.n_configs ? slots_from_configs(&d) : make_slots(&d)) != 0) {
        cleanup(&d);
        free(d.rounds);
        return 1;
    }
    if (d.o.ha) {
        rc = ha_drill(&d);
        free(d.rounds);
        free(d.acks);
        return rc ? 1 : 0;
    }
    progress(&d,
             "drill: %d standbys, %d rounds, kill %s%s, 1..%" PRIu64
             " acknowledged groups per round, seed %u, in %s",
             d.o.n_standbys, d.o.n_rounds, kill_names[d.o.kills[0]], d.o.n_kills > 1 ? ",..." : "",
             d.o.records, d.o.seed, d.dir);

    rc = node_spawn(&d, &d.slots[0], 0) > 0 ? node_wait_up(&d.slots[0], err, sizeof err) : -1;
    for (int i = 1; !rc && i < d.n_slots; i++)
        rc = node_spawn(&d, &d.slots[i], 1) > 0 ? node_wait_up(&d.slots[i], err, sizeof err) : -1;
    if (!rc && engine_start(&d, &d.engines[0], &d.slots[0], 0) != 0)
        rc = -1;
    if (rc) {
        snprintf(final_error, sizeof final_error, "could not start: %s", err[0] ? err : "fork failed");
    }
    for (int round = 1; !rc && round <= d.o.n_rounds; round++) {
        struct round_report *r = &d.rounds[round - 1];
        rc = run_round(&d, round, r);
        d.n_rounds_done = round;
        progress(&d,
                 "round %d/%d: %s %s -> %s (epoch %" PRIu64
                 "): promoted in %.1f ms, primary %.1f ms and engine writing %.1f ms after the kill, "
                 "restored height %" PRIu64 " (acknowledged %" PRIu64 "), %" PRIu64 " set aside%s%s",
                 round, d.o.n_rounds, kill_names[r->kill], d.slots[r->old_primary].id,
                 r->new_primary >= 0 ? d.slots[r->new_primary].id : "-", r->new_epoch, r->promotion_ms,
                 r->promoted_ms, r->engine_ms, r->restored_height, r->acked_before, r->set_aside,
                 r->error[0] ? ": FAILED: " : "", r->error);
    }
    if (!rc) {
        /* the engine stops cleanly (its last group acknowledged or not:
         * only what it recorded as acknowledged is checked) */
        stop_child(d.engines[0].pid, SIGTERM);
        engine_read(&d, &d.engines[0]);
        engine_close(&d.engines[0]);
        equal = digests_equal(&d, digest);
        lost = lost_on(&d, d.slots[primary_slot(&d)].dir, final_error, sizeof final_error);
    }
    cleanup(&d);
    rc = report(&d, lost, equal, digest, final_error, d.o.seed);
    if (!d.made_dir || d.o.keep)
        progress(&d, "drill: node logs and engine files kept in %s", d.dir);
    if (d.o.n_configs)
        progress(&d, "drill: the data directories the configuration files name hold the drill's data now");
    free(d.rounds);
    free(d.acks);
    return rc ? 1 : 0;
}
