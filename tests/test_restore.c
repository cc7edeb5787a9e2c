/* test_restore.c -- restore (persist/restore.c, `ringkeep restore`) end to
 * end, with real processes: a node, engines writing deterministic groups
 * through the public ring API (every MARK's LSN recorded), checkpoints on
 * request, a clean stop; then new data directories restored from it to
 * the latest point, to journal sequences and to heights, each compared
 * entry by entry and by digest with the stopped source or with a model of
 * the state at that point.
 *
 * The model of a point: a producer's groups apply at their MARK in LSN
 * order, so the state at a cut LSN holds, for each producer q, its groups
 * 1..h_q where h_q is its last MARK at or below the cut.  Producers write
 * disjoint keys ("p<q>/..."), so that state is model_q(h_q) for every q.
 *
 * The source data directory is built once (unchecked fixture); every test
 * restores into folders of its own.  No time limits.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "persist/apply.h"
#include "persist/checkpoint.h"
#include "persist/config.h"
#include "node/client.h"
#include "node/node.h"
#include "node_harness.h"
#include "persist/restore.h"
#include "shm/ring.h"
#include "ringkeep.h"
#include "persist/store.h"

#define N_ENGINES 3 /* eng0, eng1 in the shared source; eng2 alone in its own */
#define N_TABLES 3
#define KEYS_PER_PRODUCER 300
#define RECORDS_PER_GROUP 12
#define MAX_GROUPS 700
#define PHASE_GROUPS 200 /* the shared source: 3 phases, a checkpoint after the first two */
#define BOUND_S 300

static char root[256], src_dir[300], ring_name[64], ringkeep_bin[PATH_MAX];
static char ckpt_a[PATH_MAX], ckpt_b[PATH_MAX];
static uint64_t (*mark_lsn)[MAX_GROUPS + 1]; /* [engine][height]: shared with the engines */

/* ------------------------------------------------------------ the stream */

struct op {
    int del, table;
    char key[32];
    uint32_t klen;
    uint8_t val[256];
    uint32_t vlen;
};

static void make_op(int p, uint64_t g, int i, struct op *o)
{
    uint64_t r = mix(((uint64_t)p << 48) ^ (g << 8) ^ (uint64_t)i);

    o->del = (r >> 20) % 7 == 0;
    o->table = (int)((r >> 24) % N_TABLES);
    o->klen = (uint32_t)snprintf(o->key, sizeof o->key, "p%d/k%05u", p, (unsigned)(r % KEYS_PER_PRODUCER));
    o->vlen = (uint32_t)((r >> 32) % 200);
    for (uint32_t j = 0; j < o->vlen; j++)
        o->val[j] = (uint8_t)mix(r + j);
}

/* A state read back (or modelled), in scan order: tables t0..t2, keys in
 * byte order. */
struct entry {
    int table;
    char key[32];
    uint32_t klen;
    uint8_t val[256];
    uint32_t vlen;
};

struct dump {
    struct entry *e;
    size_t n, cap;
    uint64_t digest;
    uint64_t height[N_ENGINES];
};

static void dump_add(struct dump *d, int table, const void *key, uint32_t klen, const void *val,
                     uint32_t vlen)
{
    char tname[4];

    ck_assert_uint_lt(klen, sizeof d->e[0].key);
    ck_assert_uint_le(vlen, sizeof d->e[0].val);
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 1024;
        d->e = realloc(d->e, d->cap * sizeof *d->e);
        ck_assert_ptr_nonnull(d->e);
    }
    struct entry *e = &d->e[d->n++];
    e->table = table;
    memcpy(e->key, key, klen);
    e->klen = klen;
    if (vlen)
        memcpy(e->val, val, vlen);
    e->vlen = vlen;
    snprintf(tname, sizeof tname, "t%d", table);
    d->digest += ckpt_entry_digest(tname, key, klen, val, vlen);
}

/* model state of producer p after groups 1..h */
static void model_add(struct dump *d, const uint64_t height[N_ENGINES])
{
    static struct {
        int present;
        uint8_t val[256];
        uint32_t vlen;
    } m[N_ENGINES][N_TABLES][KEYS_PER_PRODUCER];
    struct op o;

    memset(m, 0, sizeof m);
    for (int p = 0; p < N_ENGINES; p++) {
        for (uint64_t g = 1; g <= height[p]; g++) {
            for (int i = 0; i < RECORDS_PER_GROUP; i++) {
                make_op(p, g, i, &o);
                int k = atoi(o.key + 4);
                m[p][o.table][k].present = !o.del;
                memcpy(m[p][o.table][k].val, o.val, o.vlen);
                m[p][o.table][k].vlen = o.vlen;
            }
        }
        d->height[p] = height[p];
    }
    for (int t = 0; t < N_TABLES; t++)
        for (int p = 0; p < N_ENGINES; p++)
            for (int k = 0; k < KEYS_PER_PRODUCER; k++)
                if (m[p][t][k].present) {
                    char key[32];
                    int klen = snprintf(key, sizeof key, "p%d/k%05d", p, k);
                    dump_add(d, t, key, (uint32_t)klen, m[p][t][k].val, m[p][t][k].vlen);
                }
}

struct scan_arg {
    struct dump *d;
    int table;
};

static int scan_add(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct scan_arg *sa = arg;
    dump_add(sa->d, sa->table, key, klen, val, vlen);
    return 0;
}

/* Reads the whole state of data directory dir (no node running there). */
static void dump_dir(const char *dir, struct dump *d)
{
    rk_state *s = NULL;
    int rc = rk_state_open(dir, &s);

    ck_assert_msg(rc == 0, "rk_state_open(%s): %s", dir, rk_strerror(rc));
    for (int t = 0; t < N_TABLES; t++) {
        struct scan_arg sa = {.d = d, .table = t};
        char tname[4];
        snprintf(tname, sizeof tname, "t%d", t);
        rc = rk_state_scan(s, tname, NULL, 0, scan_add, &sa);
        ck_assert_msg(rc == 0 || rc == RK_ENOTFOUND, "scan %s: %s", tname, rk_strerror(rc));
    }
    for (int p = 0; p < N_ENGINES; p++) {
        char name[16];
        snprintf(name, sizeof name, "eng%d", p);
        d->height[p] = 0;
        rk_state_height(s, name, &d->height[p]);
    }
    rk_state_close(s);
}

/* Entry by entry, byte for byte, then the digest and the heights. */
static void dump_compare(const struct dump *got, const struct dump *want, const char *what)
{
    for (size_t i = 0; i < got->n && i < want->n; i++) {
        const struct entry *g = &got->e[i], *w = &want->e[i];
        ck_assert_msg(g->table == w->table && g->klen == w->klen && memcmp(g->key, w->key, g->klen) == 0,
                      "%s: entry %zu is t%d/%.*s, want t%d/%.*s", what, i, g->table, (int)g->klen, g->key,
                      w->table, (int)w->klen, w->key);
        ck_assert_msg(g->vlen == w->vlen && (g->vlen == 0 || memcmp(g->val, w->val, g->vlen) == 0),
                      "%s: entry %zu (t%d/%.*s): value differs (%u bytes, want %u)", what, i, g->table,
                      (int)g->klen, g->key, g->vlen, w->vlen);
    }
    ck_assert_msg(got->n == want->n, "%s: %zu entries, want %zu", what, got->n, want->n);
    ck_assert_msg(got->digest == want->digest, "%s: digest differs", what);
    for (int p = 0; p < N_ENGINES; p++)
        ck_assert_msg(got->height[p] == want->height[p], "%s: eng%d at height %llu, want %llu", what, p,
                      (unsigned long long)got->height[p], (unsigned long long)want->height[p]);
}

static void dump_free(struct dump *d)
{
    free(d->e);
    memset(d, 0, sizeof *d);
}

/* The heights at cut LSN: each engine's last MARK at or below it. */
static void heights_at(uint64_t cut, const int *engines, int n_engines, uint64_t height[N_ENGINES])
{
    memset(height, 0, N_ENGINES * sizeof *height);
    for (int i = 0; i < n_engines; i++) {
        int p = engines[i];
        for (uint64_t g = 1; g <= MAX_GROUPS && mark_lsn[p][g]; g++)
            if (mark_lsn[p][g] <= cut)
                height[p] = g;
    }
}

/* ------------------------------------------------------------ processes */

static pid_t start_node(const char *dir, const char *ring)
{
    char path[128];
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct node_config c;
        char err[512];
        node_config_defaults(&c);
        if (node_config_set(&c, "node", "data_dir", dir, "test", err, sizeof err) ||
            node_config_set(&c, "ring", "name", ring, "test", err, sizeof err) ||
            node_config_set(&c, "ring", "capacity", "256K", "test", err, sizeof err) ||
            node_config_set(&c, "drain", "batch_records", "64", "test", err, sizeof err) ||
            node_config_set(&c, "checkpoint", "every_seconds", "0", "test", err, sizeof err) ||
            node_config_set(&c, "node", "log_level", "warn", "test", err, sizeof err)) {
            fprintf(stderr, "test config: %s\n", err);
            _exit(99);
        }
        _exit(node_run(&c));
    }
    snprintf(path, sizeof path, "/dev/shm/ringkeep.%s", ring);
    for (int i = 0; i < BOUND_S * 100; i++) {
        struct stat st;
        int status;
        char *reply = NULL;
        /* up: the ring exists and the control endpoint answers */
        if (stat(path, &st) == 0 && node_request(dir, "status", 5000, &reply) == 0) {
            free(reply);
            return pid;
        }
        free(reply);
        if (waitpid(pid, &status, WNOHANG) == pid)
            ck_abort_msg("node exited at start (status %d)", status);
        usleep(10000);
    }
    ck_abort_msg("node did not start");
    return pid;
}

static void stop_node(pid_t pid)
{
    int status = stop(pid, SIGTERM);

    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "node stopped with status %d", status);
}

/* Engine eng<p> writes groups from..to (each RECORDS_PER_GROUP records and
 * MARK(g)), records each MARK's LSN in mark_lsn, waits for durability. */
static pid_t start_engine(const char *ring, int p, uint64_t from, uint64_t to)
{
    ck_assert_uint_le(to, MAX_GROUPS); /* mark_lsn's bound */
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid != 0)
        return pid;
    char name[16], why[256] = "";
    rk_ring_opts ro = {.producer = name, .errmsg = why, .errmsg_size = sizeof why};
    rk_ring *r = NULL;
    uint16_t tables[N_TABLES];
    uint64_t lsn = 0;
    struct op o;

    snprintf(name, sizeof name, "eng%d", p);
    if (rk_ring_attach(ring, &ro, &r) != 0) {
        fprintf(stderr, "engine %s: %s\n", name, why);
        _exit(11);
    }
    if (open_tables(r, N_TABLES, tables))
        _exit(12);
    for (uint64_t g = from; g <= to; g++) {
        for (int i = 0; i < RECORDS_PER_GROUP; i++) {
            make_op(p, g, i, &o);
            uint16_t t = tables[o.table];
            if (o.del ? rk_del(r, t, o.key, o.klen, NULL) : rk_put(r, t, o.key, o.klen, o.val, o.vlen, NULL))
                _exit(13);
        }
        if (rk_mark(r, g, &lsn))
            _exit(14);
        mark_lsn[p][g] = lsn;
    }
    if (rk_wait(r, lsn, RK_DURABLE, BOUND_S * 1000) != 0)
        _exit(15);
    rk_ring_detach(r);
    _exit(0);
}

static void wait_engine(pid_t pid)
{
    int status = 0;

    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "engine failed: status %d", status);
}

static void take_checkpoint(const char *dir, char *path, size_t size)
{
    char *reply = NULL;

    ck_assert_int_eq(node_request(dir, "checkpoint", BOUND_S * 1000, &reply), 0);
    ck_assert_msg(strncmp(reply, "ok ", 3) == 0, "checkpoint: %s", reply);
    snprintf(path, size, "%s", reply + 3);
    free(reply);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    ck_assert_msg(system(cmd) == 0, "command failed: %s", cmd);
}

/* ------------------------------------------------------------ fixture */

/* Once for all tests: eng0 and eng1 write 3 phases of PHASE_GROUPS groups
 * at once (so that their groups interleave in the journal), checkpoints A
 * and B after the first two, and the clean stop's checkpoint after the
 * third. */
static void build_source(void)
{
    pid_t node, e[2];

    snprintf(root, sizeof root, "/tmp/rk-test-restore.%d", (int)getpid());
    snprintf(src_dir, sizeof src_dir, "%s/src", root);
    snprintf(ring_name, sizeof ring_name, "test_restore.%d", (int)getpid());
    mark_lsn =
        mmap(NULL, N_ENGINES * sizeof *mark_lsn, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(mark_lsn, MAP_FAILED);
    /* a folder of this name is a dead run's (this pid is ours) */
    sh("rm -rf '%s'", root);
    ck_assert_int_eq(mkdir(root, 0700), 0);
    ck_assert_int_eq(mkdir(src_dir, 0700), 0);
    ring_unlink(ring_name);
    node = start_node(src_dir, ring_name);
    for (int phase = 0; phase < 3; phase++) {
        for (int p = 0; p < 2; p++)
            e[p] = start_engine(ring_name, p, (uint64_t)phase * PHASE_GROUPS + 1,
                                (uint64_t)(phase + 1) * PHASE_GROUPS);
        for (int p = 0; p < 2; p++)
            wait_engine(e[p]);
        if (phase == 0)
            take_checkpoint(src_dir, ckpt_a, sizeof ckpt_a);
        if (phase == 1)
            take_checkpoint(src_dir, ckpt_b, sizeof ckpt_b);
    }
    stop_node(node);
    ring_unlink(ring_name);
}

static void remove_source(void)
{
    if (root[0])
        sh("rm -rf '%s'", root);
    ring_unlink(ring_name);
    if (mark_lsn)
        munmap(mark_lsn, N_ENGINES * sizeof *mark_lsn);
}

/* ------------------------------------------------------------ helpers */

struct notices {
    char text[4096];
    int n;
};

static void collect_notice(void *arg, const char *msg)
{
    struct notices *ns = arg;
    size_t len = strlen(ns->text);

    snprintf(ns->text + len, sizeof ns->text - len, "%s\n", msg);
    ns->n++;
}

static int restore_to(const char *to, enum restore_target target, uint64_t seq, const char *producer,
                      uint64_t height, const char *checkpoint, struct restore_result *res, struct notices *ns,
                      char *err, size_t err_size)
{
    struct restore_opts o = {.src_dir = src_dir,
                             .to_dir = to,
                             .checkpoint = checkpoint,
                             .target = target,
                             .seq = seq,
                             .producer = producer,
                             .height = height,
                             .notice = collect_notice,
                             .notice_arg = ns};
    return restore_run(&o, res, err, err_size);
}

/* The digest apply keeps in a stopped data directory. */
static uint64_t applied_digest(const char *dir)
{
    store *s = NULL;
    applier *a = NULL;
    char err[512];
    uint64_t digest;

    ck_assert_msg(store_open(dir, 0, 0, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    digest = applier_meta(a).digest;
    applier_close(a);
    store_close(s);
    return digest;
}

/* ------------------------------------------------------------ tests */

/* Latest point: from the newest checkpoint (the clean stop's), and from
 * checkpoint A with two phases of journal replayed; both equal the stopped
 * source entry by entry, by digest and by heights.  A node started on the
 * restored folder serves that state and goes on from it. */
START_TEST(restore_latest_equals_the_stopped_source)
{
    struct dump src = {0}, got = {0}, want = {0};
    struct restore_result res;
    struct notices ns = {0};
    char to[400], err[2048] = "", ring2[80];
    pid_t node, e;
    int rc;

    dump_dir(src_dir, &src);
    ck_assert_uint_eq(src.height[0], 3 * PHASE_GROUPS);
    ck_assert_uint_eq(src.height[1], 3 * PHASE_GROUPS);
    ck_assert_uint_eq(src.digest, applied_digest(src_dir));

    snprintf(to, sizeof to, "%s/latest", root);
    rc = restore_to(to, RESTORE_LATEST, 0, NULL, 0, NULL, &res, &ns, err, sizeof err);
    ck_assert_msg(rc == 0, "restore: %s", err);
    ck_assert_int_eq(ns.n, 0);
    ck_assert_uint_eq(res.applied.digest, src.digest);
    dump_dir(to, &got);
    dump_compare(&got, &src, "latest from the newest checkpoint");
    restore_result_free(&res);
    dump_free(&got);

    snprintf(to, sizeof to, "%s/latest-from-a", root);
    rc = restore_to(to, RESTORE_LATEST, 0, NULL, 0, ckpt_a, &res, &ns, err, sizeof err);
    ck_assert_msg(rc == 0, "restore: %s", err);
    ck_assert_str_eq(res.checkpoint, ckpt_a);
    ck_assert_uint_gt(res.n_replayed, 10);
    ck_assert_uint_eq(res.applied.digest, src.digest);
    ck_assert_uint_eq(res.n_producers, 2);
    dump_dir(to, &got);
    dump_compare(&got, &src, "latest from checkpoint A plus the journal");
    restore_result_free(&res);
    dump_free(&got);

    /* a node on the restored folder: eng0 goes on for 50 groups */
    snprintf(ring2, sizeof ring2, "%s.r", ring_name);
    ring_unlink(ring2);
    node = start_node(to, ring2);
    e = start_engine(ring2, 0, 3 * PHASE_GROUPS + 1, 3 * PHASE_GROUPS + 50);
    wait_engine(e);
    stop_node(node);
    ring_unlink(ring2);
    uint64_t h[N_ENGINES] = {3 * PHASE_GROUPS + 50, 3 * PHASE_GROUPS, 0};
    model_add(&want, h);
    dump_dir(to, &got);
    dump_compare(&got, &want, "restored folder after a node went on");
    dump_free(&got);
    dump_free(&want);

    /* the restore wrote its table pages outside the log (import.c): a node
     * killed while it writes over them must recover to everything it
     * acknowledged, the restored keys included */
    node = start_node(to, ring2);
    e = start_engine(ring2, 0, 3 * PHASE_GROUPS + 51, MAX_GROUPS); /* mark_lsn holds heights up to MAX_GROUPS */
    wait_engine(e);
    stop(node, SIGKILL);
    node = start_node(to, ring2);
    stop_node(node);
    ring_unlink(ring2);
    h[0] = MAX_GROUPS;
    model_add(&want, h);
    dump_dir(to, &got);
    dump_compare(&got, &want, "restored folder after a node was killed writing on it");
    dump_free(&got);
    dump_free(&want);
    dump_free(&src);
}
END_TEST

/* Heights of eng0 and eng1 that straddle both checkpoints: each restored
 * state is the model at that MARK's LSN -- eng1's group open there is not
 * applied. */
START_TEST(restore_to_heights_of_two_producers_equals_the_model)
{
    /* phase 2 began after both ended phase 1 and checkpoint A was taken */
    const uint64_t targets[][2] = {{1, 201}, {0, 250}, {0, 333}, {1, 457}, {0, 599}, {1, 600}};
    const int engines[] = {0, 1};
    uint32_t n_cut = 0;

    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        int p = (int)targets[i][0];
        uint64_t n = targets[i][1], h[N_ENGINES];
        struct dump got = {0}, want = {0};
        struct restore_result res;
        struct notices ns = {0};
        char to[400], name[16], err[2048] = "";
        int rc;

        snprintf(name, sizeof name, "eng%d", p);
        snprintf(to, sizeof to, "%s/h-%s-%llu", root, name, (unsigned long long)n);
        rc = restore_to(to, RESTORE_HEIGHT, 0, name, n, NULL, &res, &ns, err, sizeof err);
        ck_assert_msg(rc == 0, "restore to %s:%llu: %s", name, (unsigned long long)n, err);
        heights_at(mark_lsn[p][n], engines, 2, h);
        ck_assert_uint_eq(h[p], n);
        ck_assert_uint_eq(res.applied.applied_lsn, mark_lsn[p][n]);
        model_add(&want, h);
        dump_dir(to, &got);
        ck_assert_uint_eq(res.applied.digest, want.digest);
        dump_compare(&got, &want, to);
        n_cut += res.n_frames_cut;
        dump_free(&got);
        dump_free(&want);
        restore_result_free(&res);
    }
    /* the points fell inside journal entries: frames after the MARK (the
     * other producer's open group among them) were cut */
    ck_assert_uint_gt(n_cut, 0);
    /* eng0:150 is before checkpoint A, the oldest */
    struct restore_result res;
    struct notices ns = {0};
    char to[400], err[2048] = "";
    snprintf(to, sizeof to, "%s/h-too-early", root);
    ck_assert_int_eq(restore_to(to, RESTORE_HEIGHT, 0, "eng0", 150, NULL, &res, &ns, err, sizeof err),
                     RK_ENOTFOUND);
    ck_assert_msg(strstr(err, "height eng0:150 is before the oldest usable checkpoint"), "%s", err);
    ck_assert_int_eq(access(to, F_OK), -1);
}
END_TEST

/* --seq S: the state after entry S is the model at that entry's last LSN. */
START_TEST(restore_to_a_seq_equals_the_model)
{
    const int engines[] = {0, 1};
    struct journal_header last;
    uint64_t seqs[5], h[N_ENGINES];
    store *s = NULL;
    char err[2048] = "";

    ck_assert_msg(store_open(src_dir, 0, 0, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_last(s, &last), 0);
    ck_assert_uint_gt(last.seq, 40);
    /* from checkpoint A's own entry (exactly the checkpoint) on */
    struct ckpt_info a;
    ck_assert_int_eq(ckpt_read_info(ckpt_a, &a, err, sizeof err), 0);
    ck_assert_uint_lt(a.journal_seq + 10, last.seq);
    seqs[0] = a.journal_seq;
    seqs[1] = a.journal_seq + 1;
    seqs[2] = (a.journal_seq + last.seq) / 2;
    seqs[3] = last.seq - 3;
    seqs[4] = last.seq;
    ckpt_info_free(&a);
    for (int i = 0; i < 5; i++) {
        struct dump got = {0}, want = {0};
        struct restore_result res;
        struct notices ns = {0};
        journal_entry e = {0};
        char to[400];

        ck_assert_int_eq(store_journal_get(s, seqs[i], &e, err, sizeof err), 0);
        heights_at(e.h.last_lsn, engines, 2, h);
        journal_entry_free(&e);
        snprintf(to, sizeof to, "%s/seq-%llu", root, (unsigned long long)seqs[i]);
        uint64_t src_seen = store_epoch_seen(s), src_epoch_at = store_epoch_of(s, seqs[i]);
        ck_assert_uint_ge(src_epoch_at, 1);
        store_close(s); /* restore takes the source's lock */
        s = NULL;
        ck_assert_msg(restore_to(to, RESTORE_SEQ, seqs[i], NULL, 0, NULL, &res, &ns, err, sizeof err) == 0,
                      "restore --seq %llu: %s", (unsigned long long)seqs[i], err);
        ck_assert_uint_eq(res.applied.applied_seq, seqs[i]);
        model_add(&want, h);
        dump_dir(to, &got);
        dump_compare(&got, &want, to);
        dump_free(&got);
        dump_free(&want);
        {
            /* DIR goes on in an epoch of its own, above every one the
             * source knew, from the entry after the point; before it, the
             * source's history */
            struct epoch_start *hist = NULL;
            uint32_t n_hist = 0;
            store *d = NULL;
            ck_assert_msg(store_open(to, 0, 0, &d, err, sizeof err) == 0, "%s", err);
            ck_assert_int_eq(store_history(d, &hist, &n_hist), 0);
            ck_assert_uint_eq(n_hist, res.n_history);
            ck_assert_uint_ge(n_hist, 2);
            ck_assert_uint_gt(res.epoch, src_seen);
            ck_assert_uint_eq(hist[n_hist - 1].epoch, res.epoch);
            ck_assert_uint_eq(hist[n_hist - 1].first_seq, seqs[i] + 1);
            ck_assert_uint_eq(store_epoch_of(d, seqs[i]), src_epoch_at);
            ck_assert_uint_eq(store_epoch_began(d), res.epoch);
            free(hist);
            store_close(d);
        }
        restore_result_free(&res);
        ck_assert_msg(store_open(src_dir, 0, 0, &s, err, sizeof err) == 0, "%s", err);
    }
    store_close(s);
}
END_TEST

/* The newest checkpoint damaged (one byte flipped, in a copy of the
 * source): restore says so, uses the previous one, and the journal replay
 * brings it to the same state. */
START_TEST(damaged_newest_checkpoint_falls_back_to_the_previous)
{
    char copy[400], to[400], err[2048] = "", ckdir[500], **paths = NULL;
    struct dump src = {0}, got = {0};
    struct restore_result res;
    struct notices ns = {0};
    size_t n = 0;
    FILE *f;

    snprintf(copy, sizeof copy, "%s/src-damaged", root);
    sh("cp -a '%s' '%s'", src_dir, copy);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", copy);
    ck_assert_int_eq(ckpt_list(ckdir, &paths, &n), 0);
    ck_assert_uint_eq(n, 3);
    f = fopen(paths[0], "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 300, SEEK_SET), 0);
    int c = fgetc(f);
    ck_assert_int_eq(fseek(f, 300, SEEK_SET), 0);
    fputc(c ^ 0x01, f);
    ck_assert_int_eq(fclose(f), 0);

    struct restore_opts o = {.src_dir = copy, .to_dir = to, .notice = collect_notice, .notice_arg = &ns};
    snprintf(to, sizeof to, "%s/fallback", root);
    ck_assert_msg(restore_run(&o, &res, err, sizeof err) == 0, "restore: %s", err);
    ck_assert_int_eq(ns.n, 1);
    ck_assert_msg(strstr(ns.text, paths[0]) && strstr(ns.text, "fails verification") &&
                      strstr(ns.text, "falling back to the previous one"),
                  "notice: %s", ns.text);
    ck_assert_str_eq(res.checkpoint, paths[1]);
    ck_assert_uint_eq(res.n_bad_checkpoints, 1);
    ck_assert_uint_gt(res.n_replayed, 0);
    dump_dir(src_dir, &src);
    dump_dir(to, &got);
    dump_compare(&got, &src, "fallback");
    dump_free(&src);
    dump_free(&got);
    restore_result_free(&res);
    ckpt_list_free(paths, n);
}
END_TEST

/* One producer, checkpoints at heights 100 and 250 and 400 (clean stop):
 * exact checkpoint points, cut entries in between, and the points that
 * cannot be reached. */
START_TEST(restore_to_heights_of_one_producer)
{
    const int engines[] = {2};
    const uint64_t ok[] = {100, 101, 180, 250, 333, 399, 400};
    char dir[400], ring[80], ck[PATH_MAX], err[2048] = "";
    struct restore_result res;
    struct notices ns = {0};
    pid_t node, e;

    snprintf(dir, sizeof dir, "%s/one", root);
    snprintf(ring, sizeof ring, "%s.one", ring_name);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ring_unlink(ring);
    node = start_node(dir, ring);
    e = start_engine(ring, 2, 1, 100);
    wait_engine(e);
    take_checkpoint(dir, ck, sizeof ck);
    e = start_engine(ring, 2, 101, 250);
    wait_engine(e);
    take_checkpoint(dir, ck, sizeof ck);
    e = start_engine(ring, 2, 251, 400);
    wait_engine(e);
    stop_node(node);
    ring_unlink(ring);

    struct restore_opts o = {.src_dir = dir,
                             .target = RESTORE_HEIGHT,
                             .producer = "eng2",
                             .notice = collect_notice,
                             .notice_arg = &ns};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct dump got = {0}, want = {0};
        uint64_t h[N_ENGINES];
        char to[500];
        snprintf(to, sizeof to, "%s/one-%llu", root, (unsigned long long)ok[i]);
        o.to_dir = to;
        o.height = ok[i];
        ck_assert_msg(restore_run(&o, &res, err, sizeof err) == 0, "height %llu: %s",
                      (unsigned long long)ok[i], err);
        heights_at(mark_lsn[2][ok[i]], engines, 1, h);
        model_add(&want, h);
        dump_dir(to, &got);
        dump_compare(&got, &want, to);
        if (ok[i] == 100 || ok[i] == 250 || ok[i] == 400)
            ck_assert_uint_eq(res.n_replayed, 0); /* exactly a checkpoint */
        else
            ck_assert_uint_gt(res.n_replayed, 0);
        dump_free(&got);
        dump_free(&want);
        restore_result_free(&res);
    }
    ck_assert_int_eq(ns.n, 0);

    /* before the oldest checkpoint, beyond the last mark: refused, and
     * nothing is left behind */
    char to[500];
    snprintf(to, sizeof to, "%s/one-bad", root);
    o.to_dir = to;
    o.height = 50;
    ck_assert_int_eq(restore_run(&o, &res, err, sizeof err), RK_ENOTFOUND);
    ck_assert_msg(strstr(err, "before the oldest usable checkpoint"), "%s", err);
    o.height = 401;
    ck_assert_int_eq(restore_run(&o, &res, err, sizeof err), RK_ENOTFOUND);
    ck_assert_msg(strstr(err, "no MARK with height 401") &&
                      strstr(err, "nearest heights seen: 400 below, none above"),
                  "%s", err);
    o.producer = "nobody";
    ck_assert_int_eq(restore_run(&o, &res, err, sizeof err), RK_ENOTFOUND);
    ck_assert_msg(strstr(err, "producer nobody has no MARK"), "%s", err);
    ck_assert_int_eq(access(to, F_OK), -1);
}
END_TEST

/* What restore refuses, each with a message saying what to do. */
START_TEST(restore_refusals)
{
    char to[400], copy[400], err[2048] = "", golden[PATH_MAX];
    struct restore_result res;
    struct notices ns = {0};
    int rc;

    /* a folder that is not empty */
    snprintf(to, sizeof to, "%s/full", root);
    ck_assert_int_eq(mkdir(to, 0700), 0);
    sh("touch '%s/precious'", to);
    rc = restore_to(to, RESTORE_LATEST, 0, NULL, 0, NULL, &res, &ns, err, sizeof err);
    ck_assert_int_eq(rc, RK_EEXIST);
    ck_assert_msg(strstr(err, "is not empty (it holds precious)"), "%s", err);
    sh("test -f '%s/precious'", to);

    /* an empty folder is fine; a seq beyond the journal is not */
    snprintf(to, sizeof to, "%s/empty", root);
    ck_assert_int_eq(mkdir(to, 0700), 0);
    rc = restore_to(to, RESTORE_SEQ, 1000000, NULL, 0, NULL, &res, &ns, err, sizeof err);
    ck_assert_int_eq(rc, RK_ENOTFOUND);
    ck_assert_msg(strstr(err, "beyond the end of"), "%s", err);
    rc = restore_to(to, RESTORE_SEQ, 5, NULL, 0, ckpt_b, &res, &ns, err, sizeof err);
    ck_assert_int_eq(rc, RK_ENOTFOUND);
    ck_assert_msg(strstr(err, "is past journal seq 5"), "%s", err);
    rc = restore_to(to, RESTORE_LATEST, 0, NULL, 0, NULL, &res, &ns, err, sizeof err);
    ck_assert_msg(rc == 0, "into an empty folder: %s", err);
    restore_result_free(&res);

    /* a format 1.0 checkpoint restores its own point only */
    snprintf(golden, sizeof golden, "%s/checkpoint-v1.0.rkcp", RK_GOLDEN_DIR);
    snprintf(to, sizeof to, "%s/old", root);
    rc = restore_to(to, RESTORE_SEQ, 43, NULL, 0, golden, &res, &ns, err, sizeof err);
    ck_assert_int_eq(rc, RK_EINVAL);
    ck_assert_msg(strstr(err, "is format 1.0: it has no replay record") && strstr(err, "--seq 42"), "%s",
                  err);
    ck_assert_int_eq(access(to, F_OK), -1);

    /* a node running on the source */
    snprintf(copy, sizeof copy, "%s/src-busy", root);
    sh("cp -a '%s' '%s'", src_dir, copy);
    char ring2[80];
    snprintf(ring2, sizeof ring2, "%s.busy", ring_name);
    ring_unlink(ring2);
    pid_t node = start_node(copy, ring2);
    struct restore_opts o = {.src_dir = copy, .to_dir = to};
    rc = restore_run(&o, &res, err, sizeof err);
    stop_node(node);
    ring_unlink(ring2);
    ck_assert_int_eq(rc, RK_EBUSY);
    char pid_text[32];
    snprintf(pid_text, sizeof pid_text, "pid %d", (int)node);
    ck_assert_msg(strstr(err, pid_text) && strstr(err, "stop that node first"), "%s", err);

    /* a journal trimmed past what checkpoint A needs */
    store *s = NULL;
    struct ckpt_info info;
    ck_assert_int_eq(ckpt_read_info(ckpt_a, &info, err, sizeof err), 0);
    ck_assert_msg(store_open(copy, 0, 0, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_trim(s, info.replay.restart_seq + 1), 0);
    store_close(s);
    o.checkpoint = ckpt_a;
    rc = restore_run(&o, &res, err, sizeof err);
    ck_assert_int_eq(rc, RK_ECORRUPT);
    ck_assert_msg(strstr(err, "older entries were trimmed"), "%s", err);
    ckpt_info_free(&info);
    ck_assert_int_eq(access(to, F_OK), -1);
}
END_TEST

/* A format 1.0 checkpoint (no replay record) loaded, as a restore or an
 * import builds a data directory from it (STORE_BUILDING) and as a
 * standby bootstraps from it (a store in use): every producer its header
 * lists keeps its height, for the engines (rk_state_height) and in the
 * next checkpoint's header.  The load left their group counts at 0, and
 * both the state reader and the checkpoint writer take a producer without
 * a group for one without a height: rk_state_height said not found and
 * later checkpoints listed nobody. */
START_TEST(format_1_0_checkpoint_loaded_keeps_its_heights)
{
    static const struct {
        const char *name;
        uint64_t height, applied_lsn;
    } want[] = {{"matcher", 1000, 123450}, {"risk", 77, 123456}}; /* tests/golden/golden_content.h */
    char to[400], golden[PATH_MAX], ckdir[450], path[PATH_MAX], err[2048] = "";
    struct ckpt_info info, written;
    rk_state *st = NULL;
    store *s = NULL;
    applier *a = NULL;
    ckpt_job *job = NULL;
    uint64_t digest;
    int rc, building = _i == 0;

    snprintf(golden, sizeof golden, "%s/checkpoint-v1.0.rkcp", RK_GOLDEN_DIR);
    snprintf(to, sizeof to, "%s/from-1.0-%s", root, building ? "built" : "in-use");
    ck_assert_int_eq(mkdir(to, 0700), 0);
    ck_assert_msg(store_open(to, STORE_CREATE | (building ? STORE_BUILDING : 0), 0, &s, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    rc = applier_load_checkpoint(a, golden, &info, NULL, NULL, err, sizeof err);
    ck_assert_msg(rc == 0, "load of the 1.0 golden file: %s", err);
    digest = info.digest;
    ckpt_info_free(&info);
    applier_close(a);
    ck_assert_int_eq(building ? store_built(s) : 0, 0);
    store_close(s);

    ck_assert_int_eq(rk_state_open(to, &st), 0);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint64_t h = 0;
        rc = rk_state_height(st, want[i].name, &h);
        ck_assert_msg(rc == 0, "rk_state_height(%s): %s", want[i].name, rk_strerror(rc));
        ck_assert_uint_eq(h, want[i].height);
    }
    rk_state_close(st);

    /* a checkpoint of the loaded state lists them as the file did */
    snprintf(ckdir, sizeof ckdir, "%s-ckpt", to);
    ck_assert_int_eq(mkdir(ckdir, 0700), 0);
    ck_assert_msg(store_open(to, 0, 0, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(applier_checkpoint_begin(a, 1, &job), 0);
    rc = ckpt_job_write(job, ckdir, 1, path, sizeof path, &written, err, sizeof err);
    ck_assert_msg(rc == 0, "checkpoint of the loaded state: %s", err);
    ckpt_job_free(job);
    ck_assert_uint_eq(written.n_producers, 2);
    for (size_t i = 0; i < written.n_producers; i++) {
        ck_assert_str_eq(written.producers[i].name, want[i].name);
        ck_assert_uint_eq(written.producers[i].height, want[i].height);
        ck_assert_uint_eq(written.producers[i].applied_lsn, want[i].applied_lsn);
    }
    ck_assert_uint_eq(written.digest, digest);
    ckpt_info_free(&written);
    applier_close(a);
    store_close(s);
}
END_TEST

/* ------------------------------------------------------------ the load */

#define LOAD_ENTRIES 20000u
#define LOAD_VLEN 100u

static void load_key(uint32_t i, char key[16])
{
    snprintf(key, 16, "k%08u", i);
}

static void load_val(uint32_t i, uint8_t *val)
{
    for (uint32_t b = 0; b < LOAD_VLEN; b++)
        val[b] = (uint8_t)(i * 31u + b);
}

/* Bytes of Berkeley DB log that data directory dir holds: where its log
 * ends (its files are made at full size at once, so their sizes do not
 * tell). */
static uint64_t log_bytes_of(const char *dir)
{
    DB_LOG_STAT *st = NULL;
    char err[512];
    store *s = NULL;
    uint64_t n;

    ck_assert_msg(store_open(dir, 0, 0, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_env(s)->log_stat(store_env(s), &st, 0), 0);
    n = (uint64_t)(st->st_cur_file - 1) * st->st_lg_size + st->st_cur_offset;
    free(st);
    store_close(s);
    return n;
}

static uint64_t file_bytes(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;

    snprintf(path, sizeof path, "%s/db/%s", dir, name);
    ck_assert_int_eq(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

struct load_check {
    uint32_t n;
    int bad;
};

static int load_check_entry(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct load_check *c = arg;
    char want_key[16];
    uint8_t want_val[LOAD_VLEN];

    load_key(c->n, want_key);
    load_val(c->n, want_val);
    if (klen != strlen(want_key) || memcmp(key, want_key, klen) != 0 || vlen != LOAD_VLEN ||
        memcmp(val, want_val, vlen) != 0)
        c->bad++;
    c->n++;
    return 0;
}

/* Every entry of table "big", byte for byte, through the public reader. */
static void check_loaded(const char *dir)
{
    struct load_check c = {0};
    rk_state *st = NULL;

    ck_assert_int_eq(rk_state_open(dir, &st), 0);
    ck_assert_int_eq(rk_state_scan(st, "big", NULL, 0, load_check_entry, &c), 0);
    rk_state_close(st);
    ck_assert_uint_eq(c.n, LOAD_ENTRIES);
    ck_assert_int_eq(c.bad, 0);
}

/* A checkpoint's entries go into state.db without a Berkeley DB log record
 * (import.c): the environment's log holds the meta records and the
 * checkpoint, a small part of what the table takes.  Before, the store
 * asked for that with DB_ENV->set_flags(DB_TXN_NOT_DURABLE), which Berkeley
 * DB 5.3 reads as DB_TXN_SNAPSHOT, and every put was logged: more log than
 * table.  Both `checkpoint import` and restore from the imported folder;
 * each result read back whole, and restore's digest is the checkpoint's. */
START_TEST(checkpoint_load_writes_no_log)
{
    struct restore_entry *e = calloc(LOAD_ENTRIES, sizeof *e);
    uint8_t *bytes = malloc(LOAD_ENTRIES * (16 + LOAD_VLEN));
    char imported[400], restored[400], ckpt[PATH_MAX], err[2048] = "";
    struct restore_opts o = {.src_dir = imported, .to_dir = restored};
    struct restore_result res;
    struct ckpt_info info;
    uint64_t log_bytes, state_bytes;

    ck_assert_ptr_nonnull(e);
    ck_assert_ptr_nonnull(bytes);
    for (uint32_t i = 0; i < LOAD_ENTRIES; i++) {
        char *key = (char *)bytes + (size_t)i * (16 + LOAD_VLEN);
        load_key(i, key);
        load_val(i, (uint8_t *)key + 16);
        e[i] = (struct restore_entry){.table = "big",
                                      .key = (uint8_t *)key,
                                      .klen = (uint32_t)strlen(key),
                                      .val = (uint8_t *)key + 16,
                                      .vlen = LOAD_VLEN,
                                      .line = i + 1};
    }
    snprintf(imported, sizeof imported, "%s/load-imported", root);
    ck_assert_msg(restore_import(imported, e, LOAD_ENTRIES, ckpt, sizeof ckpt, &info, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_uint_eq(info.n_entries, LOAD_ENTRIES);
    log_bytes = log_bytes_of(imported);
    state_bytes = file_bytes(imported, "state.db");
    ck_assert_uint_gt(state_bytes, (uint64_t)LOAD_ENTRIES * LOAD_VLEN);
    ck_assert_msg(log_bytes < state_bytes / 4, "import: %" PRIu64 " bytes of log for a %" PRIu64 "-byte table",
                  log_bytes, state_bytes);
    check_loaded(imported);

    snprintf(restored, sizeof restored, "%s/load-restored", root);
    ck_assert_msg(restore_run(&o, &res, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(res.n_loaded, LOAD_ENTRIES);
    ck_assert_uint_eq(res.applied.digest, info.digest);
    restore_result_free(&res);
    log_bytes = log_bytes_of(restored);
    state_bytes = file_bytes(restored, "state.db");
    ck_assert_msg(log_bytes < state_bytes / 4, "restore: %" PRIu64 " bytes of log for a %" PRIu64 "-byte table",
                  log_bytes, state_bytes);
    check_loaded(restored);
    ckpt_info_free(&info);
    free(e);
    free(bytes);
}
END_TEST

/* The load's own fsync of state.db (import.c) failing: restore reports it
 * and leaves no folder behind; nothing is retried as if it had worked. */
START_TEST(failed_fsync_of_the_loaded_table_fails_the_restore)
{
    char to[400], err[2048] = "";
    struct restore_result res;
    struct notices ns = {0};
    int rc;

    snprintf(to, sizeof to, "%s/fsync-fails", root);
    ck_assert_int_eq(sys_fault_arm("fsync:EIO:once@1:*/fsync-fails/db/state.db"), 0);
    rc = restore_to(to, RESTORE_LATEST, 0, NULL, 0, NULL, &res, &ns, err, sizeof err);
    sys_fault_arm("");
    ck_assert_msg(rc != 0, "a restore whose fsync failed returned 0");
    ck_assert_int_eq(sys_io_failed(), EIO);
    ck_assert_int_eq(access(to, F_OK), -1);
}
END_TEST

static int kill_while_loading(void *arg, enum restore_phase phase, uint64_t done, uint64_t total)
{
    (void)arg;
    (void)total;
    if (phase == RESTORE_LOADING && done > 0)
        raise(SIGKILL); /* entries put, state.db neither synced nor vouched for */
    return 0;
}

/* A restore killed while it loads the checkpoint (its pages not logged,
 * not all written): the folder it leaves is refused by name when a store
 * opens it (a node, a restore from it), and a restore into it is refused
 * too (not empty); nothing reads part of a state. */
START_TEST(restore_killed_while_loading_leaves_a_refused_folder)
{
    char to[400], err[2048] = "";
    struct restore_result res;
    struct notices ns = {0};
    rk_state *st = NULL;
    store *s = NULL;
    int status;
    pid_t pid;

    snprintf(to, sizeof to, "%s/killed", root);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct restore_opts o = {.src_dir = src_dir, .to_dir = to, .progress = kill_while_loading};
        restore_run(&o, &res, err, sizeof err);
        _exit(0); /* not reached: the load reports progress */
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the restore was not killed: %d", status);
    ck_assert_int_eq(store_open(to, 0, 0, &s, err, sizeof err), RK_EBUSY);
    ck_assert_msg(strstr(err, "unfinished restore or import"), "%s", err);
    /* an engine opening it is told so too (it recursed until the stack
     * overflowed: SIGSEGV) */
    ck_assert_int_eq(rk_state_open(to, &st), RK_EBUSY);
    ck_assert_ptr_null(st);
    ck_assert_int_eq(restore_to(to, RESTORE_LATEST, 0, NULL, 0, NULL, &res, &ns, err, sizeof err), RK_EEXIST);
}
END_TEST

/* The progress callback of a load into a store in use (a standby's
 * bootstrap): after the second table's buffer is committed the log (arg,
 * the environment) is flushed, as a load larger than the log buffer has
 * it written by then, and the process dies. */
static int kill_after_two_tables(void *arg, uint64_t done, uint64_t total)
{
    static int calls;
    DB_ENV *env = arg;

    (void)done, (void)total;
    if (++calls == 2) {
        env->log_flush(env, NULL);
        raise(SIGKILL);
    }
    return 0;
}

/* A load into a store in use killed part-way leaves some of the file's
 * tables and no "applied" record.  That store is not taken for an empty
 * one: a second load is refused (it was laid over the first's tables),
 * and so are apply and an engine's rk_state_open, until it is set aside
 * (a standby does: test_repl). */
START_TEST(load_killed_in_a_store_in_use_is_refused_not_taken_for_empty)
{
    char to[400], golden[PATH_MAX], err[2048] = "";
    struct ckpt_info info;
    rk_state *st = NULL;
    store *s = NULL;
    applier *a = NULL;
    uint64_t seq = 0;
    int status, rc;
    pid_t pid;

    snprintf(golden, sizeof golden, "%s/checkpoint-v1.2.rkcp", RK_GOLDEN_DIR);
    snprintf(to, sizeof to, "%s/load-killed", root);
    ck_assert_int_eq(mkdir(to, 0700), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (store_open(to, STORE_CREATE, 0, &s, err, sizeof err) != 0 ||
            applier_open(s, &a, err, sizeof err) != 0)
            _exit(2);
        applier_load_checkpoint(a, golden, &info, kill_after_two_tables, store_env(s), err, sizeof err);
        _exit(3); /* not reached: three tables */
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the load was not killed: %d", status);

    ck_assert_int_eq(rk_state_open(to, &st), RK_EBUSY);
    ck_assert_ptr_null(st);
    ck_assert_msg(store_open(to, 0, 0, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(applier_meta(a).applied_seq, 0); /* what made it look empty */
    ck_assert_int_eq(applier_load_interrupted(a, &seq), 1);
    ck_assert_uint_eq(seq, 42); /* the golden file's journal_seq */
    rc = applier_load_checkpoint(a, golden, &info, NULL, NULL, err, sizeof err);
    ck_assert_int_eq(rc, RK_EBUSY);
    ck_assert_msg(strstr(err, "part of an interrupted load"), "%s", err);
    err[0] = '\0';
    ck_assert_int_eq(applier_run(a, UINT64_MAX, 1000, err, sizeof err), RK_EBUSY);
    ck_assert_msg(strstr(err, "part of a checkpoint load that was interrupted"), "%s", err);
    applier_close(a);
    store_close(s);

    /* a node started on it as a primary exits before it serves (no ring) */
    char ring[80], shm[128];
    snprintf(ring, sizeof ring, "%s.partial", ring_name);
    snprintf(shm, sizeof shm, "/dev/shm/ringkeep.%s", ring);
    ring_unlink(ring);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct node_config c;
        node_config_defaults(&c);
        if (node_config_set(&c, "node", "data_dir", to, "test", err, sizeof err) ||
            node_config_set(&c, "ring", "name", ring, "test", err, sizeof err) ||
            node_config_set(&c, "node", "log_level", "error", "test", err, sizeof err))
            _exit(99);
        _exit(node_run(&c));
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "the node ended with status %d", status);
    ck_assert_int_eq(access(shm, F_OK), -1);
}
END_TEST

/* `ringkeep restore`: the summary line, progress and fallback on stderr,
 * exit statuses. */
START_TEST(restore_command_line)
{
    char cmd[3 * PATH_MAX], line[4096] = "", to[400];
    FILE *p;
    int status;

    snprintf(to, sizeof to, "%s/cli", root);
    snprintf(cmd, sizeof cmd, "'%s' restore --to '%s' -d '%s' --height eng1:457 2>&1", ringkeep_bin, to,
             src_dir);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t len = fread(line, 1, sizeof line - 1, p);
    line[len] = '\0';
    status = pclose(p);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit %d: %s", status, line);
    ck_assert_msg(strstr(line, "eng1=457") && strstr(line, "from checkpoint") && strstr(line, "digest "),
                  "summary: %s", line);

    snprintf(cmd, sizeof cmd, "'%s' restore --to '%s' -d '%s' > /dev/null 2>&1", ringkeep_bin, to, src_dir);
    status = system(cmd);
    ck_assert_int_eq(WEXITSTATUS(status), 1); /* not empty */
    snprintf(cmd, sizeof cmd, "'%s' restore --to '%s' > /dev/null 2>&1", ringkeep_bin, to);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "'%s' restore --to x -d y --height eng1 > /dev/null 2>&1", ringkeep_bin);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "'%s' restore --to x -d y --seq 4 --height a:1 > /dev/null 2>&1", ringkeep_bin);
    ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
}
END_TEST

static Suite *restore_suite(void)
{
    Suite *s = suite_create("restore");
    TCase *tc = tcase_create("restore");

    tcase_set_timeout(tc, 0);
    tcase_add_unchecked_fixture(tc, build_source, remove_source);
    tcase_add_test(tc, restore_latest_equals_the_stopped_source);
    tcase_add_test(tc, restore_to_heights_of_two_producers_equals_the_model);
    tcase_add_test(tc, restore_to_a_seq_equals_the_model);
    tcase_add_test(tc, damaged_newest_checkpoint_falls_back_to_the_previous);
    tcase_add_test(tc, restore_to_heights_of_one_producer);
    tcase_add_test(tc, restore_refusals);
    tcase_add_loop_test(tc, format_1_0_checkpoint_loaded_keeps_its_heights, 0, 2);
    tcase_add_test(tc, restore_command_line);
    tcase_add_test(tc, checkpoint_load_writes_no_log);
    tcase_add_test(tc, failed_fsync_of_the_loaded_table_fails_the_restore);
    tcase_add_test(tc, restore_killed_while_loading_leaves_a_refused_folder);
    tcase_add_test(tc, load_killed_in_a_store_in_use_is_refused_not_taken_for_empty);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    SRunner *sr;
    int failed;

    if (argc != 2) {
        fprintf(stderr, "usage: test_restore PATH/TO/ringkeep\n");
        return 2;
    }
    snprintf(ringkeep_bin, sizeof ringkeep_bin, "%s", argv[1]);
    sr = srunner_create(restore_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
