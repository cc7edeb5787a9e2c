/* test_repl.c -- replication end to end, with real processes on loopback:
 * a primary node (repl_node_run with [replication] publish/serve) and
 * standbys (role standby) in forked children; the test process is the
 * engine (it writes a deterministic stream through the ring), the killer
 * and the checker.
 *
 *   - two standbys under a steady stream, one losing every 7th published
 *     entry (a gap: fetched) and SIGKILLed and restarted mid-stream
 *     (catches up from the journal), the other seeing every 5th entry
 *     corrupted (fetched again): both end with the primary's journal byte
 *     for byte, its state digest, and the state of the model;
 *   - min_replicas = 1: rk_wait(RK_REPLICATED) does not return while no
 *     standby runs, and once it returns the standby's own journal (read
 *     after SIGKILLing it) holds the record;
 *   - random bytes on both sockets, malformed, truncated and oversized
 *     messages, a peer of an old epoch: refused, the standby unaffected.
 *
 * No time limits: every wait is a bounded loop that fails the test.
 * Endpoints are tcp://127.0.0.1 ports derived from the pid (8000..11999). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "persist/checkpoint.h"
#include "persist/apply.h"
#include "persist/config.h"
#include "node/client.h"
#include "node/node.h"
#include "node_harness.h"
#include "replicator/replicator.h"
#include "shm/ring.h"
#include "ringkeep.h"
#include "persist/restore.h"
#include "persist/json_bytes.h"
#include "persist/store.h"
#include "replicator/wire.h"

#define KEYS 300
#define RECORDS_PER_GROUP 12
#define BOUND_S 120 /* no wait here takes this long unless broken */

static char primary_dir[256], standby_dir[2][256], ring_name[64];
static char ring_b[64]; /* the ring a promoted standby owns */
static char publish_ep[64], serve_ep[64], monitor_out[256];
static char publish_b[64], serve_b[64]; /* what a promoted standby binds while the old primary lives */
static const char *ringkeep_bin; /* the ringkeep binary (argv[1]), for `ringkeep monitor` */
static int port_base;

/* ------------------------------------------------------------ the stream */

struct op {
    int del, table;
    char key[32];
    uint32_t klen;
    uint8_t val[200];
    uint32_t vlen;
};

/* Record i of group g of stream `stream`: 0 is the stream the model
 * holds; another is what an engine wrote and lost (never acknowledged),
 * other bytes at the same heights. */
static void make_op_of(uint64_t stream, uint64_t g, int i, struct op *o)
{
    uint64_t r = mix((g << 8) ^ (uint64_t)i ^ 0x5151 ^ (stream << 48));
    o->del = (r >> 20) % 7 == 0;
    o->table = (int)((r >> 24) % 3);
    o->klen = (uint32_t)snprintf(o->key, sizeof o->key, "k%05u", (unsigned)(r % KEYS));
    o->vlen = (uint32_t)((r >> 32) % 200);
    for (uint32_t j = 0; j < o->vlen; j++)
        o->val[j] = (uint8_t)mix(r + j);
}

static void make_op(uint64_t g, int i, struct op *o)
{
    make_op_of(0, g, i, o);
}

struct model_entry {
    int present;
    uint8_t val[200];
    uint32_t vlen;
};
static struct model_entry model[3][KEYS];

static void model_build(uint64_t height)
{
    struct op o;
    memset(model, 0, sizeof model);
    for (uint64_t g = 1; g <= height; g++)
        for (int i = 0; i < RECORDS_PER_GROUP; i++) {
            make_op(g, i, &o);
            struct model_entry *e = &model[o.table][atoi(o.key + 1)];
            e->present = !o.del;
            memcpy(e->val, o.val, o.vlen);
            e->vlen = o.vlen;
        }
}

struct scan_check {
    int t, n_seen, bad;
};

static int check_key(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct scan_check *sc = arg;
    char k[32];
    if (klen >= sizeof k)
        return sc->bad = 1;
    memcpy(k, key, klen);
    k[klen] = '\0';
    struct model_entry *e = &model[sc->t][atoi(k + 1)];
    if (!e->present || e->vlen != vlen || (vlen && memcmp(e->val, val, vlen) != 0))
        return sc->bad = 1;
    sc->n_seen++;
    return 0;
}

/* The state in dir (no node running there) equals the model at height. */
static void check_state(const char *dir, uint64_t height)
{
    rk_state *s = NULL;
    uint64_t h = 0;
    int rc = rk_state_open(dir, &s);

    ck_assert_msg(rc == 0, "rk_state_open(%s): %s", dir, rk_strerror(rc));
    ck_assert_int_eq(rk_state_height(s, "eng", &h), 0);
    ck_assert_msg(h == height, "%s: height %llu, wrote %llu", dir, (unsigned long long)h,
                  (unsigned long long)height);
    model_build(h);
    for (int t = 0; t < 3; t++) {
        struct scan_check sc = {.t = t};
        char table[4];
        int expect = 0;
        snprintf(table, sizeof table, "t%d", t);
        rc = rk_state_scan(s, table, "k", 1, check_key, &sc);
        ck_assert_msg(rc == 0 && !sc.bad, "%s: table %s differs from the model", dir, table);
        for (int k = 0; k < KEYS; k++)
            expect += model[t][k].present;
        ck_assert_int_eq(sc.n_seen, expect);
    }
    rk_state_close(s);
}

/* ------------------------------------------------------------ processes */

static void setup(void)
{
    int pid = (int)getpid();
    snprintf(primary_dir, sizeof primary_dir, "/tmp/rk-test-repl.%d.p", pid);
    for (int i = 0; i < 2; i++) {
        snprintf(standby_dir[i], sizeof standby_dir[i], "/tmp/rk-test-repl.%d.s%d", pid, i);
    }
    /* a run that failed keeps its folders for a look; a later run that
     * gets the same pid starts from empty ones */
    char cmd[3 * sizeof primary_dir + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s'", primary_dir, standby_dir[0], standby_dir[1]);
    ck_assert_int_eq(system(cmd), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(mkdir(standby_dir[i], 0700), 0);
    ck_assert_int_eq(mkdir(primary_dir, 0700), 0);
    snprintf(ring_name, sizeof ring_name, "test_repl.%d", pid);
    snprintf(ring_b, sizeof ring_b, "test_repl_b.%d", pid);
    ring_unlink(ring_b);
    snprintf(monitor_out, sizeof monitor_out, "/tmp/rk-test-repl.%d.monitor", pid);
    /* 8000..11999: a range no other test takes.  It was 20000..31999,
     * where tests/etcd_lib.sh's etcd (20001..32001) and `ringkeep drill`
     * (23000..31999, in ctest drill_ha) pick ports that are free when
     * they look -- and this test's are free between its cases -- so a
     * case running beside them under ctest -j 2 could not bind ("Address
     * already in use": CI at 2a8f45e, two cases) */
    port_base = 8000 + (pid % 1000) * 4;
    snprintf(publish_ep, sizeof publish_ep, "tcp://127.0.0.1:%d", port_base);
    snprintf(serve_ep, sizeof serve_ep, "tcp://127.0.0.1:%d", port_base + 1);
    snprintf(publish_b, sizeof publish_b, "tcp://127.0.0.1:%d", port_base + 2);
    snprintf(serve_b, sizeof serve_b, "tcp://127.0.0.1:%d", port_base + 3);
    ring_unlink(ring_name);
}

static void teardown(void)
{
    char cmd[2048];
    ring_unlink(ring_name);
    ring_unlink(ring_b);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s' '%s' '%s.gate' '%s.gate.tmp'", primary_dir,
             standby_dir[0], standby_dir[1], monitor_out, standby_dir[0], standby_dir[0]);
    ck_assert_int_eq(system(cmd), 0);
}

static char *status_of(const char *dir)
{
    char *reply = NULL;
    return node_request(dir, "status", 2000, &reply) == 0 ? reply : NULL;
}

/* Member key of a status (parsed with Jansson): an integer, or a hex
 * string (the digests); 0 when absent or not JSON. */
static uint64_t json_u64(const char *json, const char *key)
{
    json_t *st = json ? json_loads(json, 0, NULL) : NULL, *v = json_object_get(st, key);
    uint64_t u = json_is_integer(v)  ? (uint64_t)json_integer_value(v)
                 : json_is_string(v) ? strtoull(json_string_value(v), NULL, 16)
                                     : 0;
    json_decref(st);
    return u;
}

static int status_true(const char *json, const char *key)
{
    json_t *st = json ? json_loads(json, 0, NULL) : NULL;
    int t = json_is_true(json_object_get(st, key));
    json_decref(st);
    return t;
}

/* A standby id with bytes that printf-made JSON broke on */
#define STRANGE_ID "standby-\"b\\\n\xc3\xa9"

/* json (a primary's status, or a monitor's heartbeat line) lists the
 * standby id as an object of its "standbys" array, acked_seq and lag
 * included (parsed with Jansson, id compared byte for byte). */
static int standby_listed(const char *json, const char *id)
{
    json_t *st = json ? json_loads(json, 0, NULL) : NULL, *sb;
    size_t i;
    int found = 0;

    json_array_foreach(json_object_get(st, "standbys"), i, sb)
    {
        json_t *v = json_object_get(sb, "id");
        found |= json_is_string(v) && json_string_length(v) == strlen(id) &&
                 memcmp(json_string_value(v), id, strlen(id)) == 0 &&
                 json_is_integer(json_object_get(sb, "acked_seq")) &&
                 json_is_integer(json_object_get(sb, "lag_entries")) &&
                 json_is_integer(json_object_get(sb, "lag_ms"));
    }
    json_decref(st);
    return found;
}

/* Some line of text (a monitor's JSON lines) lists the standby id. */
static int some_line_lists(const char *text, const char *id)
{
    char *copy = strdup(text), *save = NULL;
    int found = 0;

    ck_assert_ptr_nonnull(copy);
    for (char *line = strtok_r(copy, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save))
        found = standby_listed(line, id);
    free(copy);
    return found;
}

/* Forks a node on dir (primary when standby_id is NULL). extra:
 * "section", "key", "value" triples, NULL-ended; env: "NAME=value" put in
 * its environment; fault: armed in it (sys_fault_arm), NULL: none. */
static const char *spawn_stderr; /* a file the next spawned node's stderr goes to (NULL: the test's) */

static pid_t spawn(const char *dir, const char *standby_id, const char *const *extra, const char *env,
                   const char *fault)
{
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct node_config c;
        char err[512];
        if (spawn_stderr) {
            int fd = open(spawn_stderr, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (fd < 0 || dup2(fd, 2) < 0)
                _exit(97);
            close(fd);
        }
        if (env)
            putenv((char *)env);
        /* RK_FAULT is read once per process, and this one may have read
         * it before the fork (check_same_journal's store_open) */
        sys_install();
        if (sys_fault_arm(fault) != 0) {
            fprintf(stderr, "test fault not understood: %s\n", fault);
            _exit(98);
        }
        node_config_defaults(&c);
        int rc = node_config_set(&c, "node", "data_dir", dir, "test", err, sizeof err) ||
                 node_config_set(&c, "node", "log_level", "warn", "test", err, sizeof err) ||
                 node_config_set(&c, "replication", "heartbeat_ms", "50", "test", err, sizeof err) ||
                 /* loopback only; the CURVE cases authenticate acks anyway */
                 node_config_set(&c, "replication", "insecure_acks", "yes", "test", err, sizeof err);
        if (standby_id)
            rc = rc || node_config_set(&c, "node", "role", "standby", "test", err, sizeof err) ||
                 node_config_set(&c, "replication", "node_id", standby_id, "test", err, sizeof err) ||
                 node_config_set(&c, "replication", "primary_publish", publish_ep, "test", err, sizeof err) ||
                 node_config_set(&c, "replication", "primary_serve", serve_ep, "test", err, sizeof err);
        else
            rc = rc || node_config_set(&c, "ring", "name", ring_name, "test", err, sizeof err) ||
                 node_config_set(&c, "ring", "capacity", "1M", "test", err, sizeof err) ||
                 node_config_set(&c, "drain", "batch_records", "64", "test", err, sizeof err) ||
                 node_config_set(&c, "replication", "publish", publish_ep, "test", err, sizeof err) ||
                 node_config_set(&c, "replication", "serve", serve_ep, "test", err, sizeof err);
        for (const char *const *x = extra; !rc && x && x[0]; x += 3)
            rc = node_config_set(&c, x[0], x[1], x[2], "test", err, sizeof err);
        if (rc || node_config_check(&c, err, sizeof err)) {
            fprintf(stderr, "test config: %s\n", err);
            _exit(99);
        }
        _exit(repl_node_run(&c));
    }
    return pid;
}

/* Starts a node on dir (as spawn, without a fault) and waits until it
 * answers as itself. */
static pid_t start(const char *dir, const char *standby_id, const char *const *extra, const char *env)
{
    pid_t pid = spawn(dir, standby_id, extra, env, NULL);

    wait_node_answers(dir, pid, BOUND_S, 2000);
    return pid;
}

/* The engine: this process, producer "eng". */
struct engine {
    rk_ring *r;
    uint16_t tables[3];
    uint64_t height, lsn;
};

static void engine_attach_to(struct engine *e, const char *ring)
{
    rk_ring_opts ro = {.producer = "eng", .full_timeout_ms = 0};
    memset(e, 0, sizeof *e);
    ck_assert_int_eq(rk_ring_attach(ring, &ro, &e->r), 0);
    ck_assert_int_eq(open_tables(e->r, 3, e->tables), 0);
}

static void engine_attach(struct engine *e)
{
    engine_attach_to(e, ring_name);
}

/* Writes groups height + 1 .. height + n_groups of stream `stream`
 * (make_op_of) into the ring, waiting for nothing. */
static void engine_put_groups(struct engine *e, uint64_t stream, uint64_t n_groups)
{
    struct op o;
    for (uint64_t g = e->height + 1; g <= e->height + n_groups; g++) {
        for (int i = 0; i < RECORDS_PER_GROUP; i++) {
            make_op_of(stream, g, i, &o);
            uint16_t t = e->tables[o.table];
            int rc = o.del ? rk_del(e->r, t, o.key, o.klen, NULL)
                           : rk_put(e->r, t, o.key, o.klen, o.val, o.vlen, NULL);
            ck_assert_int_eq(rc, 0);
        }
        ck_assert_int_eq(rk_mark(e->r, g, &e->lsn), 0);
        if (g % 20 == 0)
            usleep(2000); /* a steady stream, not one burst */
    }
    e->height += n_groups;
}

static void engine_write(struct engine *e, uint64_t n_groups)
{
    engine_put_groups(e, 0, n_groups);
    ck_assert_int_eq(rk_wait(e->r, e->lsn, RK_DURABLE, BOUND_S * 1000), 0);
}

/* Waits until the standby on dir holds and has applied everything the
 * primary on the directory primary journaled and its digest was found equal to the primary's at
 * the primary's last sequence.  Returns its status (malloc'd). */
static char *wait_caught_up_with(const char *primary, const char *dir)
{
    uint64_t seq = 0;
    for (int i = 0; i < BOUND_S * 100; i++) {
        char *p = status_of(primary), *s = status_of(dir);
        seq = json_u64(p, "journal_seq"); /* it may still journal a detach */
        free(p);
        if (seq && s && json_u64(s, "journal_seq") == seq && json_u64(s, "applied_seq") == seq &&
            status_true(s, "digest_match") && json_u64(s, "digest_compared_seq") == seq)
            return s;
        free(s);
        usleep(10000);
    }
    char *s = status_of(dir);
    ck_abort_msg("standby %s did not catch up with seq %llu: %s", dir, (unsigned long long)seq, s ? s : "");
    return NULL;
}

static char *wait_caught_up(const char *dir)
{
    return wait_caught_up_with(primary_dir, dir);
}

/* Every entry of the journal of primary (no node running there) is in
 * dir's, byte for byte, and both end at the same entry. */
static void check_journal_of(const char *primary, const char *dir)
{
    char err[512];
    store *a = NULL, *b = NULL;
    struct journal_header la, lb;

    ck_assert_msg(store_open(primary, 0, 16, &a, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(store_open(dir, 0, 16, &b, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_last(a, &la), 0);
    ck_assert_int_eq(store_journal_last(b, &lb), 0);
    ck_assert_uint_eq(la.seq, lb.seq);
    /* the primary trims its journal after its last checkpoint at stop; a
     * standby that bootstrapped holds entries from a checkpoint's restart
     * point on */
    uint64_t first = 0, first_b = 0;
    ck_assert_int_eq(store_journal_first(a, &first), 0);
    ck_assert_int_eq(store_journal_first(b, &first_b), 0);
    if (first_b > first)
        first = first_b;
    for (uint64_t seq = first; seq <= la.seq; seq++) {
        uint8_t *ea = NULL, *eb = NULL;
        size_t na = 0, nb = 0;
        ck_assert_int_eq(store_journal_get_raw(a, seq, &ea, &na), 0);
        ck_assert_int_eq(store_journal_get_raw(b, seq, &eb, &nb), 0);
        ck_assert_msg(na == nb && memcmp(ea, eb, na) == 0, "%s: entry %llu differs", dir,
                      (unsigned long long)seq);
        free(ea);
        free(eb);
    }
    store_close(a);
    store_close(b);
}

/* Every entry of the primary's journal is in dir's, byte for byte. */
static void check_same_journal(const char *dir)
{
    check_journal_of(primary_dir, dir);
}

/* Stops the n standbys (on standby_dir[0..n-1]), then the primary,
 * cleanly; each standby's journal is the primary's byte for byte and its
 * state the model's at height. */
static void stop_all_and_check(const pid_t *standbys, int n, pid_t primary, uint64_t height)
{
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(stop(standbys[i], SIGTERM), 0);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);
    for (int i = 0; i < n; i++) {
        check_same_journal(standby_dir[i]);
        check_state(standby_dir[i], height);
    }
}

static void stop_and_check(pid_t standby, pid_t primary, uint64_t height)
{
    stop_all_and_check(&standby, 1, primary, height);
}

/* The end of a test with one standby on standby_dir[0]: the engine
 * detaches, the standby catches up, both stop and are checked. */
static void detach_catch_up_and_check(struct engine *e, pid_t standby, pid_t primary)
{
    rk_ring_detach(e->r);
    free(wait_caught_up(standby_dir[0]));
    stop_and_check(standby, primary, e->height);
}

static const char *digest_of(const char *json, char out[17])
{
    const char *p = json ? strstr(json, "\"state_digest\":\"") : NULL;
    ck_assert_ptr_nonnull(p);
    memcpy(out, p + 16, 16);
    out[16] = '\0';
    return out;
}

/* ------------------------------------------------------------ tests */

START_TEST(two_standbys_reach_the_primary_state)
{
    struct engine e;
    char dp[17], d0[17], d1[17];
    pid_t primary = start(primary_dir, NULL, NULL, NULL);
    pid_t s0 = start(standby_dir[0], "standby-a", NULL, "RK_TEST_DROP_JOURNAL=7");
    pid_t s1 = start(standby_dir[1], "standby-b", NULL, "RK_TEST_CORRUPT_JOURNAL=5");

    engine_attach(&e);
    engine_write(&e, 150);
    /* standby-a SIGKILLed mid-stream, restarted: it carries on from its journal */
    ck_assert_int_eq(WTERMSIG(stop(s0, SIGKILL)), SIGKILL);
    engine_write(&e, 100);
    s0 = start(standby_dir[0], "standby-a", NULL, "RK_TEST_DROP_JOURNAL=7");
    engine_write(&e, 150);
    rk_ring_detach(e.r);

    char *st0 = wait_caught_up(standby_dir[0]), *st1 = wait_caught_up(standby_dir[1]);
    char *stp = status_of(primary_dir);
    ck_assert_str_eq(digest_of(st0, d0), digest_of(stp, dp));
    ck_assert_str_eq(digest_of(st1, d1), dp);
    /* the hooks did their damage and it was repaired */
    ck_assert_msg(json_u64(st0, "gaps") > 0 && json_u64(st0, "fetched") > 0, "standby-a: %s", st0);
    /* restarted, standby-a fetched only what it lacked, not from entry 1 */
    ck_assert_msg(json_u64(st0, "first_fetched_seq") > 1, "standby-a: %s", st0);
    ck_assert_msg(json_u64(st1, "bad_entries") > 0 && json_u64(st1, "fetched") > 0, "standby-b: %s", st1);
    ck_assert_msg(standby_listed(stp, "standby-a") && standby_listed(stp, "standby-b"), "%s", stp);
    free(st0);
    free(st1);
    free(stp);

    stop_all_and_check((pid_t[]){s0, s1}, 2, primary, e.height);
    check_state(primary_dir, e.height);
}
END_TEST

/* What the node on dir (stopped) had applied, and its journal's last
 * entry, read without applying anything (rk_state_open would apply the
 * rest). */
static void applied_of(const char *dir, uint64_t *applied, uint64_t *last)
{
    char err[512];
    store *s = NULL;
    applier *a = NULL;
    struct journal_header h;

    ck_assert_msg(store_open(dir, 0, 16, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(applier_open(s, &a, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_last(s, &h), 0);
    *applied = applier_meta(a).applied_seq;
    *last = h.seq;
    applier_close(a);
    store_close(s);
}

/* A standby acknowledges what it holds durably however far its apply lags
 * (RK_TEST_APPLY_GATE holds its apply); a SIGTERM applies everything before exit 0; a second
 * SIGTERM stops at once (exit 0, the rest applied at the next start).
 * Deterministic: apply is held, not slowed, and the second signal is sent
 * only once the first was taken (it was sent 100 ms after the first, and
 * the two could merge on a loaded machine: issue 9, point 10). */
START_TEST(standby_acks_while_apply_lags_and_a_clean_stop_applies_all)
{
    /* max_lag_ms 0: the primary does not bound the standby's apply lag
     * (with it, it would hold its drain for the held apply: issue 13.7,
     * standby_apply_lag_stays_within_max_lag_ms) */
    static const char *const one_replica[] = {"replication", "min_replicas", "1", "apply", "max_lag_ms", "0",
                                              NULL};
    struct engine e;
    char gate[300], env[320];
    uint64_t applied, last, applied_before;
    char *st;
    int status;

    snprintf(gate, sizeof gate, "%s.gate", standby_dir[0]);
    snprintf(env, sizeof env, "RK_TEST_APPLY_GATE=%s", gate);
    set_gate(gate, NULL);
    pid_t primary = start(primary_dir, NULL, one_replica, NULL);
    pid_t s0 = start(standby_dir[0], "standby-a", NULL, env);

    engine_attach(&e);
    engine_write(&e, 100);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    st = status_of(standby_dir[0]);
    ck_assert_msg(st && json_u64(st, "applied_seq") == 0 && json_u64(st, "journal_seq") > 0, "%s",
                  st ? st : "");
    free(st);
    /* the stop waits for apply: the gate opens only once it was asked */
    ck_assert_int_eq(kill(s0, SIGTERM), 0);
    wait_signal_taken(s0, SIGTERM);
    set_gate(gate, "");
    ck_assert_int_eq(waitpid(s0, &status, 0), s0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    applied_of(standby_dir[0], &applied, &last); /* everything applied before the exit */
    ck_assert_msg(applied == last, "applied %llu of %llu", (unsigned long long)applied,
                  (unsigned long long)last);
    applied_before = applied;

    set_gate(gate, NULL); /* held again */
    s0 = start(standby_dir[0], "standby-a", NULL, env);
    engine_write(&e, 100);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    ck_assert_int_eq(kill(s0, SIGTERM), 0);
    wait_signal_taken(s0, SIGTERM);
    ck_assert_int_eq(kill(s0, SIGTERM), 0);
    ck_assert_int_eq(waitpid(s0, &status, 0), s0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    applied_of(standby_dir[0], &applied, &last);
    ck_assert_msg(applied == applied_before && applied < last, "applied %llu of %llu (%llu before)",
                  (unsigned long long)applied, (unsigned long long)last, (unsigned long long)applied_before);
    s0 = start(standby_dir[0], "standby-a", NULL, NULL); /* applies the rest */
    detach_catch_up_and_check(&e, s0, primary);
}
END_TEST

/* While a standby's apply lags, its digest is still compared with the
 * primary's: at the sequences of earlier heartbeats, once apply reaches
 * them (the newest heartbeat's sequence is always ahead of it).  Each
 * round of writes ends once the standby heard a heartbeat covering it,
 * and apply is held (RK_TEST_APPLY_GATE) at the sequence of the heartbeat
 * that ended the last round but one: what is compared is what the test
 * arranged, not what the scheduler allowed (apply was only slowed, issue 9
 * point 10).  Held at the primary's journal_seq instead, the test failed
 * under load: a heartbeat carries the primary's applied sequence at the
 * time it is sent, which may step over that journal_seq (96, then past
 * 101), and no digest is ever known at a sequence no heartbeat carried. */
START_TEST(digest_compared_while_apply_lags)
{
    struct engine e;
    char gate[300], env[320], limit[32], *st = NULL;
    uint64_t held_at = 0;

    snprintf(gate, sizeof gate, "%s.gate", standby_dir[0]);
    snprintf(env, sizeof env, "RK_TEST_APPLY_GATE=%s", gate);
    set_gate(gate, NULL);
    pid_t primary = start(primary_dir, NULL, NULL, NULL);
    pid_t s0 = start(standby_dir[0], "standby-a", NULL, env);

    engine_attach(&e);
    for (int round = 1; round <= 20; round++) {
        engine_write(&e, 20);
        char *p = status_of(primary_dir);
        uint64_t seq = json_u64(p, "journal_seq");
        free(p);
        for (int i = 0; json_u64(st, "primary_digest_seq") < seq; i++) {
            ck_assert_msg(i < BOUND_S * 100, "no heartbeat of seq %llu reached the standby: %s",
                          (unsigned long long)seq, st ? st : "");
            usleep(10000);
            free(st);
            st = status_of(standby_dir[0]);
        }
        if (round == 19)
            held_at = json_u64(st, "primary_digest_seq"); /* a heartbeat's: >= seq */
    }
    rk_ring_detach(e.r);
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)held_at);
    set_gate(gate, limit);
    for (int i = 0; !(json_u64(st, "applied_seq") == held_at && status_true(st, "digest_match") &&
                      json_u64(st, "digest_compared_seq") == held_at);
         i++) {
        ck_assert_msg(!(st && strstr(st, "\"digest_match\":false")), "digest differs: %s", st);
        ck_assert_msg(i < BOUND_S * 100, "no digest compared at seq %llu: %s", (unsigned long long)held_at,
                      st ? st : "");
        usleep(10000);
        free(st);
        st = status_of(standby_dir[0]);
    }
    ck_assert_msg(json_u64(st, "journal_seq") > held_at, "apply did not lag: %s", st);
    free(st);
    set_gate(gate, "");
    free(wait_caught_up(standby_dir[0]));
    stop_and_check(s0, primary, e.height);
}
END_TEST

/* Waits until the standby in dir heard a heartbeat of sequence seq or
 * later; returns that heartbeat's sequence. */
static uint64_t wait_heard(const char *dir, uint64_t seq)
{
    char *st = NULL;
    uint64_t heard;

    for (int i = 0; (heard = json_u64(st, "primary_digest_seq")) < seq; i++) {
        ck_assert_msg(i < BOUND_S * 100, "no heartbeat of seq %llu reached the standby: %s",
                      (unsigned long long)seq, st ? st : "");
        usleep(10000);
        free(st);
        st = status_of(dir);
    }
    free(st);
    return heard;
}

/* An idle primary's heartbeats, all alike, do not push out of the
 * standby's heartbeat history (256) the sequences its held apply has yet
 * to reach: they did, and the digest was then compared only once apply
 * reached the newest heartbeat's sequence.  Apply is held at 0 while more
 * than 256 heartbeats go by (counted by the standby's status), then let
 * through to the first round's heartbeat. */
START_TEST(idle_heartbeats_keep_the_sequences_a_held_apply_needs)
{
    static const char *const fast_beats[] = {"replication", "heartbeat_ms", "10", NULL};
    struct engine e;
    char gate[300], env[320], limit[32], *st = NULL;
    uint64_t first, beats;

    snprintf(gate, sizeof gate, "%s.gate", standby_dir[0]);
    snprintf(env, sizeof env, "RK_TEST_APPLY_GATE=%s", gate);
    set_gate(gate, NULL);
    pid_t primary = start(primary_dir, NULL, fast_beats, NULL);
    pid_t s0 = start(standby_dir[0], "standby-a", NULL, env);

    engine_attach(&e);
    engine_write(&e, 20);
    char *p = status_of(primary_dir);
    first = wait_heard(standby_dir[0], json_u64(p, "journal_seq"));
    free(p);
    engine_write(&e, 20);
    p = status_of(primary_dir);
    ck_assert_uint_gt(wait_heard(standby_dir[0], json_u64(p, "journal_seq")), first);
    free(p);
    rk_ring_detach(e.r);
    st = status_of(standby_dir[0]);
    beats = json_u64(st, "heartbeats") + 300;
    for (int i = 0; json_u64(st, "heartbeats") < beats; i++) {
        ck_assert_msg(i < BOUND_S * 100, "fewer than %llu heartbeats heard: %s", (unsigned long long)beats,
                      st);
        usleep(10000);
        free(st);
        st = status_of(standby_dir[0]);
    }
    ck_assert_msg(json_u64(st, "applied_seq") == 0, "apply was not held: %s", st);
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)first);
    set_gate(gate, limit);
    for (int i = 0; !(json_u64(st, "applied_seq") == first && status_true(st, "digest_match") &&
                      json_u64(st, "digest_compared_seq") == first);
         i++) {
        ck_assert_msg(!(st && strstr(st, "\"digest_match\":false")), "digest differs: %s", st);
        ck_assert_msg(i < BOUND_S * 100, "no digest compared at seq %llu: %s", (unsigned long long)first, st);
        usleep(10000);
        free(st);
        st = status_of(standby_dir[0]);
    }
    free(st);
    set_gate(gate, "");
    free(wait_caught_up(standby_dir[0]));
    stop_and_check(s0, primary, e.height);
}
END_TEST

/* Reads dir's journal for a frame with LSN lsn. */
static int journal_holds_lsn(const char *dir, uint64_t lsn)
{
    char err[512];
    store *s = NULL;
    struct journal_header last;
    int found = 0;

    ck_assert_msg(store_open(dir, 0, 16, &s, err, sizeof err) == 0, "%s", err);
    if (store_journal_last(s, &last) == 0)
        for (uint64_t seq = 1; seq <= last.seq && !found; seq++) {
            journal_entry je = {0};
            ck_assert_int_eq(store_journal_get(s, seq, &je, err, sizeof err), 0);
            for (size_t off = 0; off < je.h.raw_len && !found;) {
                ring_frame f;
                ck_assert_int_eq(frame_decode(je.frames + off, je.h.raw_len - off, &f, NULL, 0), 0);
                found = f.lsn == lsn;
                off += frame_align(f.raw_len);
            }
            journal_entry_free(&je);
        }
    store_close(s);
    return found;
}

START_TEST(replicated_wait_returns_once_a_standby_holds_the_record)
{
    static const char *const extra[] = {"replication", "min_replicas", "1", NULL};
    struct engine e;
    pid_t primary = start(primary_dir, NULL, extra, NULL);

    engine_attach(&e);
    engine_write(&e, 5);
    /* durable, but no standby: not replicated */
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, 300), RK_ETIMEDOUT);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    /* each record, as soon as the wait returns: the standby holds it
     * durably (killed at once, read from its own journal) */
    for (int round = 0; round < 3; round++) {
        engine_write(&e, 3);
        ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
        if (round == 2)
            ck_assert_int_eq(WTERMSIG(stop(sb, SIGKILL)), SIGKILL);
    }
    ck_assert_msg(journal_holds_lsn(standby_dir[0], e.lsn), "standby lacks LSN %llu after RK_REPLICATED",
                  (unsigned long long)e.lsn);
    /* the standby gone: a new record stays unreplicated */
    engine_write(&e, 1);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, 300), RK_ETIMEDOUT);
    rk_ring_detach(e.r);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);
}
END_TEST

/* Random bytes straight to a TCP port (not even a ZeroMQ greeting). */
static void send_raw(int port, unsigned seed)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    uint8_t junk[4096];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)mix(seed + i);
    ck_assert_int_ge(fd, 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
        (void)!write(fd, junk, sizeof junk);
    close(fd);
}

static void send_frames(void *sock, const void *name, size_t name_len, const void *body, size_t body_len)
{
    ck_assert_int_ge(zmq_send(sock, name, name_len, ZMQ_SNDMORE), 0);
    ck_assert_int_ge(zmq_send(sock, body, body_len, 0), 0);
}

static void wait_status(const char *dir, const char *what)
{
    for (int i = 0;; i++) {
        char *p = status_of(dir);
        int found = p && strstr(p, what);
        free(p);
        if (found)
            return;
        ck_assert_msg(i < BOUND_S * 100, "%s never showed %s", dir, what);
        usleep(10000);
    }
}

/* Makes dir's node start at epoch (as a promotion would have left it). */
static void set_epoch(const char *dir, uint64_t epoch)
{
    char err[512];
    store *s = NULL;
    ck_assert_msg(store_open(dir, STORE_CREATE, 16, &s, err, sizeof err) == 0, "%s", err);
    DB *meta = store_meta(s);
    DBT k = {.data = "epoch", .size = 5}, v = {.data = &epoch, .size = sizeof epoch};
    ck_assert_int_eq(meta->put(meta, NULL, &k, &v, DB_AUTO_COMMIT), 0);
    store_close(s);
}

/* Receives one reply on a DEALER (bounded) and decodes it. */
static void recv_reply(void *sock, struct wire_msg *m, uint8_t *body, size_t body_size)
{
    char name[16], why[256];
    int n = -1, b = -1, more = 0;
    size_t more_size = sizeof more;
    for (int i = 0; i < BOUND_S * 10 && n < 0; i++) {
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 100) == 1)
            n = zmq_recv(sock, name, sizeof name, 0);
    }
    ck_assert_int_ge(n, 0);
    ck_assert_int_eq(zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_size), 0);
    ck_assert_int_eq(more, 1);
    b = zmq_recv(sock, body, body_size, 0);
    ck_assert_int_ge(b, 0);
    ck_assert_msg(wire_decode(name, (size_t)n, body, (size_t)b, m, why, sizeof why) == 0, "%s", why);
}

START_TEST(bad_input_is_refused_and_others_unaffected)
{
    struct engine e;
    set_epoch(primary_dir, 2); /* the standby starts at 1 and adopts 2 */
    pid_t primary = start(primary_dir, NULL, NULL, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);
    void *ctx = zmq_ctx_new(), *rogue = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    uint8_t *body = NULL, junk[512];
    size_t body_len = 0;
    char why[256];

    engine_attach(&e);
    engine_write(&e, 50);
    free(wait_caught_up(standby_dir[0]));

    /* random bytes on both ports */
    for (unsigned i = 0; i < 8; i++) {
        send_raw(port_base, i);
        send_raw(port_base + 1, 100 + i);
    }
    /* a DEALER saying nonsense: random frames, a truncated HELLO, a reply
     * type, a lower epoch (0), one frame only, an oversized frame */
    zmq_setsockopt(rogue, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(rogue, ZMQ_ROUTING_ID, "rogue", 5);
    ck_assert_int_eq(zmq_connect(rogue, serve_ep), 0);
    /* a peer of an old epoch: refused with ERROR 1 naming the primary's */
    {
        struct wire_msg old = {.type = WIRE_HELLO, .epoch = 1}, got;
        uint8_t reply_body[1024];
        snprintf(old.u.hello.node_id, sizeof old.u.hello.node_id, "old");
        ck_assert_int_eq(wire_encode(&old, &body, &body_len, why, sizeof why), 0);
        send_frames(rogue, "HELLO", 5, body, body_len);
        free(body);
        body = NULL;
        recv_reply(rogue, &got, reply_body, sizeof reply_body);
        ck_assert_int_eq(got.type, WIRE_ERROR);
        ck_assert_uint_eq(got.epoch, 2);
        ck_assert_uint_eq(got.u.error.code, WIRE_ERR_EPOCH);
        wire_msg_free(&got);
    }
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)mix(i);
    send_frames(rogue, junk, 7, junk + 7, 300);
    struct wire_msg m = {.type = WIRE_HELLO, .epoch = 2};
    snprintf(m.u.hello.node_id, sizeof m.u.hello.node_id, "rogue");
    ck_assert_int_eq(wire_encode(&m, &body, &body_len, why, sizeof why), 0);
    send_frames(rogue, "HELLO", 5, body, body_len - 1); /* truncated */
    send_frames(rogue, "WELCOME", 7, body, body_len);   /* not a request */
    body[2] = 0x00;                                     /* HELLO of epoch 0 */
    send_frames(rogue, "HELLO", 5, body, body_len);
    ck_assert_int_ge(zmq_send(rogue, "ACK", 3, 0), 0); /* one frame */
    free(body);
    {
        size_t big = (size_t)wire_max_msg_size() + 1;
        uint8_t *huge = calloc(1, big);
        ck_assert_ptr_nonnull(huge);
        send_frames(rogue, "FETCH", 5, huge, big);
        free(huge);
    }
    /* the lower-epoch HELLO was answered with ERROR 1 (if the rogue was
     * not dropped for the oversized frame first); either way the primary
     * and the standby carry on */
    engine_write(&e, 50);
    rk_ring_detach(e.r);
    char *st = wait_caught_up(standby_dir[0]), *stp = status_of(primary_dir);
    ck_assert_msg(json_u64(stp, "peers_dropped") >= 3, "primary: %s", stp);
    ck_assert_uint_eq(json_u64(st, "malformed"), 0);
    ck_assert_uint_eq(json_u64(st, "epoch"), 2); /* adopted */
    /* a standby at a higher epoch: a_primary_steps_down_on_a_standbys_higher_epoch */
    free(st);
    free(stp);
    zmq_close(rogue);
    zmq_ctx_term(ctx);
    stop_and_check(sb, primary, e.height);
}
END_TEST

START_TEST(standby_survives_a_primary_restart_and_monitor_prints)
{
    struct engine e;
    pid_t primary = start(primary_dir, NULL, NULL, NULL);
    pid_t sb = start(standby_dir[0], STRANGE_ID, NULL, NULL);
    pid_t mon = fork();

    ck_assert_int_ge(mon, 0);
    if (mon == 0) {
        FILE *out = freopen(monitor_out, "w", stdout);
        if (!out)
            _exit(98);
        execl(ringkeep_bin, ringkeep_bin, "monitor", publish_ep, "--json", (char *)NULL);
        _exit(97);
    }
    engine_attach(&e);
    engine_write(&e, 40);
    free(wait_caught_up(standby_dir[0]));
    /* the primary killed and restarted under the standby and the engine */
    ck_assert_int_eq(WTERMSIG(stop(primary, SIGKILL)), SIGKILL);
    primary = start(primary_dir, NULL, NULL, NULL);
    engine_write(&e, 40);
    /* the standby says HELLO again to the new primary (which then keeps
     * the journal it needs through the checkpoint's trim) */
    for (int i = 0;; i++) {
        char *p = status_of(primary_dir);
        int listed = standby_listed(p, STRANGE_ID);
        free(p);
        if (listed)
            break;
        ck_assert_msg(i < BOUND_S * 100, "the restarted primary never heard from the standby");
        usleep(10000);
    }
    char *reply = NULL;
    ck_assert_int_eq(node_request(primary_dir, "checkpoint", BOUND_S * 1000, &reply), 0);
    ck_assert_msg(strncmp(reply, "ok ", 3) == 0, "checkpoint: %s", reply);
    free(reply);
    char *st = wait_caught_up(standby_dir[0]);
    uint64_t seq = json_u64(st, "journal_seq");
    free(st);
    rk_ring_detach(e.r);

    /* the monitor saw heartbeats up to that sequence and the checkpoint */
    char want_hb[64], want_ck[64], *text = NULL;
    snprintf(want_hb, sizeof want_hb, "\"journal_seq\":%llu,", (unsigned long long)seq);
    snprintf(want_ck, sizeof want_ck, "{\"type\":\"checkpoint\",\"epoch\":1,\"name\":\"");
    for (int i = 0; i < BOUND_S * 100; i++) {
        FILE *f = fopen(monitor_out, "r");
        size_t cap = 0;
        free(text);
        text = NULL;
        if (f) {
            ck_assert_int_ge(getdelim(&text, &cap, '\0', f), -1);
            fclose(f);
        }
        int listed = text && some_line_lists(text, STRANGE_ID);
        if (text && strstr(text, want_hb) && strstr(text, want_ck) && listed)
            break;
        usleep(10000);
    }
    ck_assert_msg(text && strstr(text, want_hb) && strstr(text, want_ck), "monitor printed: %s",
                  text ? text : "");
    static const char hb_start[] = "{\"type\":\"heartbeat\",\"epoch\":1,";
    ck_assert_msg(strncmp(text, hb_start, sizeof hb_start - 1) == 0, "%.200s", text);
    free(text);
    ck_assert_int_eq(stop(mon, SIGTERM), 0);
    stop_and_check(sb, primary, e.height);
}
END_TEST

static void checkpoint_now(void)
{
    char *reply = NULL;
    ck_assert_int_eq(node_request(primary_dir, "checkpoint", BOUND_S * 1000, &reply), 0);
    ck_assert_msg(strncmp(reply, "ok ", 3) == 0, "checkpoint: %s", reply);
    free(reply);
}

/* The primary's settings for the bootstrap tests: one checkpoint kept,
 * taken only on request. */
static const char *const keep_one[] = {"checkpoint", "keep", "1", "checkpoint", "every_seconds", "0", NULL};

/* standby-a (standby_dir[0]) follows the primary (started with keep_one),
 * then stops; the primary forgets it, checkpoints twice and trims its
 * journal past where standby-a stopped: at its next start it must set
 * its data aside and bootstrap.  The engine e is attached. */
static void leave_standby_behind(struct engine *e)
{
    pid_t s0 = start(standby_dir[0], "standby-a", NULL, NULL);

    engine_attach(e);
    engine_write(e, 60);
    char *st = wait_caught_up(standby_dir[0]);
    uint64_t away_at = json_u64(st, "journal_seq");
    free(st);
    ck_assert_int_eq(stop(s0, SIGTERM), 0);
    wait_status(primary_dir, "\"n_standbys\":0,");
    engine_write(e, 60);
    checkpoint_now();
    engine_write(e, 60);
    checkpoint_now();
    char *p = status_of(primary_dir);
    ck_assert_msg(json_u64(p, "journal_trimmed_below") > away_at + 1, "primary: %s (standby at %llu)", p,
                  (unsigned long long)away_at);
    free(p);
}

START_TEST(standby_away_past_retention_bootstraps_from_a_checkpoint)
{
    struct engine e;
    pid_t primary = start(primary_dir, NULL, keep_one, NULL), s0;
    char *st;

    leave_standby_behind(&e);
    /* the new one holds a partial copy of that checkpoint longer than the
     * file (as if one of the same name had been taken before): it must
     * start that download over, not ask for it from there for ever */
    {
        char dir[300], part[600], **paths = NULL;
        size_t n_paths = 0;
        snprintf(dir, sizeof dir, "%s/checkpoints", primary_dir);
        ck_assert_int_eq(ckpt_list(dir, &paths, &n_paths), 0);
        ck_assert_uint_ge(n_paths, 1);
        snprintf(dir, sizeof dir, "%s/checkpoints", standby_dir[1]);
        mkdir(dir, 0700);
        snprintf(part, sizeof part, "%s/.%s.part", dir, strrchr(paths[0], '/') + 1);
        FILE *f = fopen(part, "w");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fseek(f, 64L << 20, SEEK_SET), 0);
        ck_assert_int_eq(fputc('x', f), 'x');
        ck_assert_int_eq(fclose(f), 0);
        ckpt_list_free(paths, n_paths);
    }
    /* the standby that was away, and a new empty one, bootstrap */
    s0 = start(standby_dir[0], "standby-a", NULL, NULL);
    pid_t s1 = start(standby_dir[1], "standby-b", NULL, NULL);
    engine_write(&e, 30);
    rk_ring_detach(e.r);
    for (int i = 0; i < 2; i++) {
        st = wait_caught_up(standby_dir[i]);
        ck_assert_msg(json_u64(st, "bootstraps") == 1, "%s", st);
        free(st);
    }
    stop_all_and_check((pid_t[]){s0, s1}, 2, primary, e.height);
    /* what standby-a held before is set aside, not deleted */
    char aside[300];
    snprintf(aside, sizeof aside, "%s/set-aside", standby_dir[0]);
    struct stat sta;
    ck_assert_int_eq(stat(aside, &sta), 0);
}
END_TEST

/* A write, fsync, rename or mkdir failing (once) during a bootstrap: the
 * standby exits 1 and leaves nothing untrusted in checkpoints/ (no partial
 * copy, no installed file whose folder entry may not be durable); started
 * again without the fault, it bootstraps and follows.  The bootstrap used
 * to write around the I/O seam (plain open, pwrite, fsync, rename, mkdir),
 * so these faults never fired, and it never fsynced a folder. */
static const struct {
    const char *step;
    const char *fault;
} bootstrap_faults[] = {
    {"set-aside folder made", "mkdir:EIO:once@1:*/set-aside"},
    {"set-aside folder fsync", "fsync:EIO:once@1:*/set-aside"},
    {"checkpoint copy write", "write:EIO:once@1:*.part"},
    {"checkpoint copy fsync", "fsync:EIO:once@1:*.part"},
    {"checkpoint copy renamed into place", "rename:EIO:once@1:*.part"},
    {"checkpoints folder fsync", "fsync:EIO:once@1:*/checkpoints"},
};
#define N_BOOTSTRAP_FAULTS ((int)(sizeof bootstrap_faults / sizeof bootstrap_faults[0]))

/* The names in dir other than . and .., joined by spaces into out;
 * returns how many. */
static int list_dir(const char *dir, char *out, size_t size)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    out[0] = '\0';
    while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        snprintf(out + strlen(out), size - strlen(out), "%s ", de->d_name);
    }
    if (d)
        closedir(d);
    return n;
}

START_TEST(standby_failing_during_bootstrap_leaves_no_untrusted_checkpoint)
{
    const char *step = bootstrap_faults[_i].step, *fault = bootstrap_faults[_i].fault;
    struct engine e;
    pid_t primary = start(primary_dir, NULL, keep_one, NULL), s0;
    char dir[300], names[1024];
    int status = 0, ended = 0;

    leave_standby_behind(&e);
    s0 = spawn(standby_dir[0], "standby-a", NULL, NULL, fault);
    for (int i = 0; i < BOUND_S * 100 && !ended; i++) {
        ended = waitpid(s0, &status, WNOHANG) == s0;
        if (!ended) {
            char *st = status_of(standby_dir[0]);
            uint64_t n = json_u64(st, "bootstraps");
            free(st);
            if (n) {
                stop(s0, SIGKILL);
                ck_abort_msg("%s: the fault never fired (%s): the standby bootstrapped", step, fault);
            }
            usleep(10000);
        }
    }
    ck_assert_msg(ended, "%s: the standby neither bootstrapped nor ended (%s)", step, fault);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "%s: the standby ended with status %d", step,
                  status);
    snprintf(dir, sizeof dir, "%s/checkpoints", standby_dir[0]);
    ck_assert_msg(list_dir(dir, names, sizeof names) == 0, "%s: left in %s: %s", step, dir, names);
    /* again, without the fault */
    s0 = start(standby_dir[0], "standby-a", NULL, NULL);
    engine_write(&e, 30);
    rk_ring_detach(e.r);
    char *st = wait_caught_up(standby_dir[0]);
    ck_assert_msg(json_u64(st, "bootstraps") == 1, "%s: %s", step, st);
    free(st);
    stop_and_check(s0, primary, e.height);
}
END_TEST

static int lines_with(const char *file, const char *const *needles);

/* The child's progress callback: after the second table's buffer was
 * committed, the Berkeley DB log (arg, the environment) is flushed, as a
 * load larger than the log buffer has it written by then, and the
 * standby dies. */
static int die_after_two_tables(void *arg, uint64_t done, uint64_t total)
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

/* A standby killed while it loaded a checkpoint (bootstrap) and started
 * again after the primary took a newer one: the interrupted load is set
 * aside and the bootstrap starts over on an empty store; nothing of the
 * first file survives.  The load commits each buffer on its own and
 * writes the "applied" record last, so the store it left looked empty
 * (applied_seq 0): no set-aside, and the newer file was loaded over the
 * tables of the older one -- keys deleted between the two survived, and
 * the state no longer added up to its digest. */
START_TEST(standby_killed_while_loading_a_checkpoint_bootstraps_again_from_scratch)
{
    struct engine e;
    pid_t primary = start(primary_dir, NULL, keep_one, NULL), s0, child;
    char older[300], dir[300], log_file[300], cmd[1024], **paths = NULL, *st;
    struct model_entry at_older[3][KEYS];
    size_t n_paths = 0;
    int status, n_stale = 0;

    engine_attach(&e);
    engine_write(&e, 60);
    checkpoint_now();
    uint64_t older_height = e.height;
    snprintf(dir, sizeof dir, "%s/checkpoints", primary_dir);
    ck_assert_int_eq(ckpt_list(dir, &paths, &n_paths), 0);
    ck_assert_uint_ge(n_paths, 1);
    snprintf(older, sizeof older, "%s/older.rkcp", standby_dir[1]);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", paths[0], older);
    ck_assert_int_eq(system(cmd), 0);
    ckpt_list_free(paths, n_paths);
    /* the primary goes on, takes a newer checkpoint and trims its journal
     * (keep = 1): a standby must bootstrap from the newer one */
    engine_write(&e, 60);
    checkpoint_now();
    engine_write(&e, 10); /* and entries after it, which the standby fetches */
    rk_ring_detach(e.r);
    st = status_of(primary_dir);
    ck_assert_msg(json_u64(st, "journal_trimmed_below") > 1, "primary: %s", st);
    free(st);
    /* some keys of the older checkpoint were deleted since */
    model_build(older_height);
    memcpy(at_older, model, sizeof model);
    model_build(e.height);
    for (int t = 0; t < 2; t++) /* the tables the child loads */
        for (int k = 0; k < KEYS; k++)
            n_stale += at_older[t][k].present && !model[t][k].present;
    ck_assert_int_gt(n_stale, 0);

    /* the standby's data directory as a bootstrap killed in its load
     * leaves it: the older file installed, two of its three tables
     * committed */
    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        struct ckpt_info info;
        char err[512];
        store *s = NULL;
        applier *a = NULL;
        snprintf(cmd, sizeof cmd, "mkdir -p '%s/checkpoints' && cp '%s' '%s/checkpoints/'", standby_dir[0],
                 older, standby_dir[0]);
        if (system(cmd) != 0 || store_open(standby_dir[0], STORE_CREATE, 16, &s, err, sizeof err) != 0 ||
            applier_open(s, &a, err, sizeof err) != 0)
            _exit(2);
        applier_load_checkpoint(a, older, &info, die_after_two_tables, store_env(s), err, sizeof err);
        _exit(3); /* not reached */
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the load was not killed: status %d",
                  status);

    snprintf(log_file, sizeof log_file, "%s/standby-stderr.log", standby_dir[1]);
    spawn_stderr = log_file;
    s0 = start(standby_dir[0], "standby-a", NULL, NULL);
    spawn_stderr = NULL;
    /* caught up and compared with the primary's digest (equal or not:
     * the state is checked first) */
    int caught_up = 0, digest_match = 0;
    for (int i = 0; i < BOUND_S * 100 && !caught_up; i++) {
        char *p = status_of(primary_dir);
        uint64_t seq = json_u64(p, "journal_seq");
        free(p);
        st = status_of(standby_dir[0]);
        caught_up = seq && json_u64(st, "applied_seq") == seq && json_u64(st, "digest_compared_seq") == seq;
        if (caught_up) {
            ck_assert_msg(json_u64(st, "bootstraps") == 1, "%s", st);
            digest_match = status_true(st, "digest_match");
        } else {
            usleep(10000);
        }
        free(st);
    }
    ck_assert_msg(caught_up, "the standby did not catch up");
    /* the state is the primary's: every key deleted since the older file
     * absent; and so is its digest */
    stop_and_check(s0, primary, e.height);
    ck_assert(digest_match);
    /* said, and the partial load kept for a look, not deleted */
    ck_assert_int_eq(lines_with(log_file, (const char *const[]){"level=warn", "interrupted checkpoint load",
                                                                "set aside", NULL}),
                     1);
    snprintf(dir, sizeof dir, "%s/set-aside", standby_dir[0]);
    ck_assert_int_eq(access(dir, F_OK), 0);
}
END_TEST

/* A primary that lost its data (wiped, or restored to an earlier point)
 * and a standby that still holds the old, longer history: the standby's
 * HELLO and ACKs above the primary's journal are not counted (with
 * min_replicas 1, rk_wait(RK_REPLICATED) keeps waiting), and WELCOME
 * tells the standby it holds entries the primary never had: it sets them
 * aside and bootstraps from the primary's checkpoint, then follows. */
START_TEST(standby_of_another_history_bootstraps_and_is_not_counted)
{
    static const char *const extra[] = {
        "replication", "min_replicas", "1", "checkpoint", "every_seconds", "0", NULL};
    struct engine e;
    char cmd[600], aside[300];
    struct stat st_aside;
    pid_t primary = start(primary_dir, NULL, extra, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);

    engine_attach(&e);
    engine_write(&e, 80);
    char *st = wait_caught_up(standby_dir[0]), *reply = NULL, own[64];
    free(st);
    /* a checkpoint of the standby's own, of the history about to be lost */
    ck_assert_int_eq(node_request(standby_dir[0], "checkpoint", BOUND_S * 1000, &reply), 0);
    ck_assert_msg(strncmp(reply, "ok ", 3) == 0, "checkpoint: %s", reply);
    snprintf(own, sizeof own, "%.60s", strrchr(reply, '/') + 1);
    free(reply);
    rk_ring_detach(e.r);
    ck_assert_int_eq(stop(sb, SIGTERM), 0);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);
    /* the primary loses everything */
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir '%s'", primary_dir, primary_dir);
    ck_assert_int_eq(system(cmd), 0);
    ring_unlink(ring_name);
    primary = start(primary_dir, NULL, extra, NULL);
    engine_attach(&e);
    engine_write(&e, 5); /* heights 1..5 again, a much shorter journal */
    checkpoint_now();
    sb = start(standby_dir[0], "standby-a", NULL, NULL);
    /* whatever the standby says first, it holds none of the new records */
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, 300), RK_ETIMEDOUT);
    st = wait_caught_up(standby_dir[0]);
    ck_assert_msg(json_u64(st, "bootstraps") == 1, "%s", st);
    free(st);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    /* restarted right after its bootstrap, it goes on from the checkpoint,
     * and follows what comes next */
    ck_assert_int_eq(stop(sb, SIGKILL) & 0x7f, SIGKILL);
    sb = start(standby_dir[0], "standby-a", NULL, NULL);
    engine_write(&e, 10);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    st = wait_caught_up(standby_dir[0]);
    ck_assert_msg(json_u64(st, "bootstraps") == 0, "%s", st); /* no second copy */
    free(st);
    rk_ring_detach(e.r);
    stop_and_check(sb, primary, e.height);
    snprintf(aside, sizeof aside, "%s/set-aside", standby_dir[0]);
    ck_assert_int_eq(stat(aside, &st_aside), 0); /* the old history is kept, not deleted */
    /* its own checkpoint of the old history went with it: what
     * checkpoints/ holds is the primary's, the newest of which the standby
     * would otherwise have taken for its own newest */
    {
        char dir[300], pdir[300], names[1024], found[600];
        snprintf(dir, sizeof dir, "%s/checkpoints", standby_dir[0]);
        snprintf(pdir, sizeof pdir, "%s/checkpoints", primary_dir);
        list_dir(dir, names, sizeof names);
        for (char *name = strtok(names, " "); name; name = strtok(NULL, " ")) {
            struct stat sp;
            snprintf(found, sizeof found, "%s/%s", pdir, name);
            ck_assert_msg(stat(found, &sp) == 0, "%s/%s is not one of the primary's", dir, name);
        }
        snprintf(cmd, sizeof cmd, "ls '%s'/checkpoints-*/'%s' > /dev/null", aside, own);
        ck_assert_msg(system(cmd) == 0, "%s is not in %s/checkpoints-*/", own, aside);
    }
}
END_TEST

/* dir's journal entries from..to as stored (malloc'd, the caller frees
 * each and the arrays). */
static void journal_raw(const char *dir, uint64_t from, uint64_t to, uint8_t ***entries, size_t **lens)
{
    char err[512];
    store *s = NULL;

    ck_assert_msg(store_open(dir, 0, 16, &s, err, sizeof err) == 0, "%s", err);
    *entries = calloc(to - from + 1, sizeof **entries);
    *lens = calloc(to - from + 1, sizeof **lens);
    ck_assert(*entries && *lens);
    for (uint64_t seq = from; seq <= to; seq++)
        ck_assert_int_eq(store_journal_get_raw(s, seq, &(*entries)[seq - from], &(*lens)[seq - from]), 0);
    store_close(s);
}

/* Entry seq of dir's journal equals bytes[0..len). */
static int journal_entry_is(const char *dir, uint64_t seq, const uint8_t *bytes, size_t len)
{
    uint8_t **e = NULL;
    size_t *n = NULL;
    int same;

    journal_raw(dir, seq, seq, &e, &n);
    same = n[0] == len && memcmp(e[0], bytes, len) == 0;
    free(e[0]);
    free(e);
    free(n);
    return same;
}

/* dir/set-aside holds one entries file, of entries from..to, and it
 * holds held[0..to - from] byte for byte (each freed here). */
/* dir_of/set-aside holds exactly one entries file: its path in path. */
static void one_entries_file(const char *dir_of, char *path, size_t size)
{
    char dir[300];
    struct dirent *de;
    DIR *d;
    int n_files = 0;

    snprintf(dir, sizeof dir, "%s/set-aside", dir_of);
    d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, "entries-", 8) == 0) {
            snprintf(path, size, "%s/%s", dir, de->d_name);
            n_files++;
        }
    closedir(d);
    ck_assert_msg(n_files == 1, "%d entries files in %s", n_files, dir);
}

/* A file the test creates for a node's test hook to find. */
static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
}

/* Waits until the primary published its forged entry (RK_TEST_FORGE_ENTRY
 * removes the file), the engine e, if any, writing a group at a time. */
static void wait_forged(const char *forge_file, struct engine *e)
{
    for (int i = 0; access(forge_file, F_OK) == 0; i++) {
        ck_assert_msg(i < BOUND_S * 100, "the primary never published a forged entry");
        if (e)
            engine_put_groups(e, 0, 1);
        usleep(10000);
    }
}

static void check_set_aside(const char *dir_of, uint64_t from, uint64_t to, uint8_t **held, const size_t *held_len)
{
    char path[700] = "", want_prefix[100];

    one_entries_file(dir_of, path, sizeof path);
    snprintf(want_prefix, sizeof want_prefix, "entries-%llu-%llu-lsn-", (unsigned long long)from,
             (unsigned long long)to);
    ck_assert_msg(strstr(path, want_prefix) != NULL, "%s lacks %s", path, want_prefix);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    for (uint64_t i = 0; i < to - from + 1; i++) {
        uint8_t prefix[4], *bytes;
        ck_assert_int_eq(fread(prefix, 1, 4, f), 4);
        size_t len = (size_t)prefix[0] | (size_t)prefix[1] << 8 | (size_t)prefix[2] << 16 |
                     (size_t)prefix[3] << 24;
        ck_assert_uint_eq(len, held_len[i]);
        bytes = malloc(len);
        ck_assert_int_eq(fread(bytes, 1, len, f), len);
        ck_assert_msg(memcmp(bytes, held[i], len) == 0, "set-aside entry %llu differs",
                      (unsigned long long)(from + i));
        free(bytes);
        free(held[i]);
    }
    ck_assert_int_eq(fgetc(f), EOF);
    fclose(f);
}

/* The stale standby (issue 11): the primary is restored to an earlier
 * point (a new epoch from there) while its standby holds the old history
 * past that point.  A record written after the restore is acknowledged
 * RK_REPLICATED only once the standby holds it: its journal then has the
 * primary's entry for it, byte for byte.  The standby sets its entries
 * past the fork point aside (set-aside/, the bytes it held), rebuilds its
 * state to the fork point and follows: its journal is the primary's. */
START_TEST(stale_standby_is_not_counted_past_the_fork_point)
{
    static const char *const extra[] = {"replication", "min_replicas", "1",    "checkpoint", "every_seconds",
                                        "0",           "checkpoint",   "keep", "5",          NULL};
    struct engine e;
    struct journal_header last;
    char restored[300], old[300], err[1024], cmd[1200];
    uint8_t **held = NULL;
    size_t *held_len = NULL;
    pid_t primary = start(primary_dir, NULL, extra, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);
    store *st = NULL;

    engine_attach(&e);
    engine_write(&e, 30);
    checkpoint_now();
    engine_write(&e, 60);
    free(wait_caught_up(standby_dir[0]));
    rk_ring_detach(e.r);
    ck_assert_int_eq(stop(sb, SIGTERM), 0);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);

    /* the point: half way between the checkpoint and the end */
    ck_assert_msg(store_open(standby_dir[0], 0, 16, &st, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_last(st, &last), 0);
    store_close(st);
    uint64_t n_held = last.seq, point = last.seq / 2 + last.seq / 4;
    journal_raw(standby_dir[0], point + 1, n_held, &held, &held_len);

    /* restored to the point, in the primary's place */
    snprintf(restored, sizeof restored, "%s.restored", primary_dir);
    snprintf(old, sizeof old, "%s.old", primary_dir);
    struct restore_opts ro = {
        .src_dir = primary_dir, .to_dir = restored, .target = RESTORE_SEQ, .seq = point};
    struct restore_result rr;
    ck_assert_msg(restore_run(&ro, &rr, err, sizeof err) == 0, "restore: %s", err);
    restore_result_free(&rr);
    ck_assert_int_eq(rename(primary_dir, old), 0);
    ck_assert_int_eq(rename(restored, primary_dir), 0);
    ring_unlink(ring_name);
    primary = start(primary_dir, NULL, extra, NULL);

    /* new records, durable on the restored primary only; enough that its
     * journal goes past what the standby holds */
    rk_ring_opts opts = {.producer = "eng2", .full_timeout_ms = 0};
    rk_ring *r = NULL;
    uint16_t tables[3];
    uint64_t first_lsn = 0, lsn = 0;
    ck_assert_int_eq(rk_ring_attach(ring_name, &opts, &r), 0);
    ck_assert_int_eq(open_tables(r, 3, tables), 0);
    for (uint64_t g = 1; g <= 400; g++) {
        char key[32];
        uint32_t klen = (uint32_t)snprintf(key, sizeof key, "after-%llu", (unsigned long long)g);
        ck_assert_int_eq(rk_put(r, tables[g % 3], key, klen, "v", 1, g == 1 ? &first_lsn : NULL), 0);
        ck_assert_int_eq(rk_mark(r, g, &lsn), 0);
        if (g % 20 == 0) {
            ck_assert_int_eq(rk_wait(r, lsn, RK_DURABLE, BOUND_S * 1000), 0);
            char *stp = status_of(primary_dir);
            uint64_t seq = json_u64(stp, "journal_seq");
            free(stp);
            if (seq > n_held + 5)
                break;
        }
    }
    ck_assert_int_eq(rk_wait(r, lsn, RK_DURABLE, BOUND_S * 1000), 0);
    /* no standby: nothing written after the restore is replicated */
    ck_assert_int_eq(rk_wait(r, first_lsn, RK_REPLICATED, 300), RK_ETIMEDOUT);

    /* the stale standby comes back; the first record after the restore
     * is acknowledged only once it really holds it */
    sb = start(standby_dir[0], "standby-a", NULL, NULL);
    ck_assert_int_eq(rk_wait(r, first_lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    ck_assert_int_eq(WTERMSIG(stop(sb, SIGKILL)), SIGKILL);
    uint8_t **sb_entry = NULL; /* what it holds there, compared once the primary is stopped */
    size_t *sb_len = NULL;
    journal_raw(standby_dir[0], point + 1, point + 1, &sb_entry, &sb_len);

    /* it follows: the rest is replicated too, and its journal is the
     * primary's byte for byte */
    sb = start(standby_dir[0], "standby-a", NULL, NULL);
    ck_assert_int_eq(rk_wait(r, lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    free(wait_caught_up(standby_dir[0]));
    rk_ring_detach(r);
    ck_assert_int_eq(stop(sb, SIGTERM), 0);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);
    ck_assert_msg(journal_entry_is(primary_dir, point + 1, sb_entry[0], sb_len[0]),
                  "RK_REPLICATED returned for LSN %llu but the standby's entry %llu was not the primary's",
                  (unsigned long long)first_lsn, (unsigned long long)(point + 1));
    free(sb_entry[0]);
    free(sb_entry);
    free(sb_len);
    check_same_journal(standby_dir[0]);

    /* what it held past the fork point is in set-aside/, as it was */
    check_set_aside(standby_dir[0], point + 1, n_held, held, held_len);
    free(held);
    free(held_len);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", old);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* Counts messages arriving on sock during about ms milliseconds. */
static int count_messages(void *sock, int ms)
{
    int n = 0;
    for (int waited = 0; waited < ms; waited += 50) {
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        while (zmq_poll(&it, 1, 50) == 1) {
            char buf[256];
            zmq_recv(sock, buf, sizeof buf, 0);
            n++;
        }
    }
    return n;
}

START_TEST(curve_only_authorized_peers_receive_anything)
{
    char pp[41], ps[41], ap[41], as[41], rp[41], rs[41], keys_file[300];
    ck_assert_int_eq(zmq_curve_keypair(pp, ps), 0);
    ck_assert_int_eq(zmq_curve_keypair(ap, as), 0);
    ck_assert_int_eq(zmq_curve_keypair(rp, rs), 0);
    snprintf(keys_file, sizeof keys_file, "%s/authorized_keys", primary_dir);
    FILE *f = fopen(keys_file, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "# standby-a, bound to its node_id\n%s standby-a\n", ap);
    fclose(f);
    const char *const pextra[] = {
        "replication",      "curve", "yes",         "replication",     "curve_secret_key", ps,  "replication",
        "curve_public_key", pp,      "replication", "authorized_keys", keys_file,          NULL};
    const char *const sextra[] = {"replication",
                                  "curve",
                                  "yes",
                                  "replication",
                                  "curve_secret_key",
                                  as,
                                  "replication",
                                  "curve_public_key",
                                  ap,
                                  "replication",
                                  "curve_server_key",
                                  pp,
                                  NULL};
    struct engine e;
    pid_t primary = start(primary_dir, NULL, pextra, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", sextra, NULL);

    /* unauthorized: a CURVE SUB and DEALER with a key not in the file, a
     * plain SUB */
    void *ctx = zmq_ctx_new(), *rsub = zmq_socket(ctx, ZMQ_SUB), *rdealer = zmq_socket(ctx, ZMQ_DEALER),
         *psub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    for (void **s = (void *[]){rsub, rdealer, psub, NULL}; *s; s++)
        zmq_setsockopt(*s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(rsub, ZMQ_CURVE_SERVERKEY, pp, 40);
    zmq_setsockopt(rsub, ZMQ_CURVE_PUBLICKEY, rp, 40);
    zmq_setsockopt(rsub, ZMQ_CURVE_SECRETKEY, rs, 40);
    zmq_setsockopt(rdealer, ZMQ_CURVE_SERVERKEY, pp, 40);
    zmq_setsockopt(rdealer, ZMQ_CURVE_PUBLICKEY, rp, 40);
    zmq_setsockopt(rdealer, ZMQ_CURVE_SECRETKEY, rs, 40);
    zmq_setsockopt(rsub, ZMQ_SUBSCRIBE, "", 0);
    zmq_setsockopt(psub, ZMQ_SUBSCRIBE, "", 0);
    ck_assert_int_eq(zmq_connect(rsub, publish_ep), 0);
    ck_assert_int_eq(zmq_connect(psub, publish_ep), 0);
    ck_assert_int_eq(zmq_connect(rdealer, serve_ep), 0);
    struct wire_msg m = {.type = WIRE_HELLO, .epoch = 1};
    uint8_t *body = NULL;
    size_t body_len = 0;
    char why[256];
    snprintf(m.u.hello.node_id, sizeof m.u.hello.node_id, "rogue");
    ck_assert_int_eq(wire_encode(&m, &body, &body_len, why, sizeof why), 0);
    zmq_send(rdealer, "HELLO", 5, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(rdealer, body, body_len, ZMQ_DONTWAIT);
    free(body);

    engine_attach(&e);
    engine_write(&e, 60);
    rk_ring_detach(e.r);
    free(wait_caught_up(standby_dir[0]));
    /* heartbeats every 50 ms meanwhile: the unauthorized got none */
    ck_assert_int_eq(count_messages(rsub, 500), 0);
    ck_assert_int_eq(count_messages(psub, 100), 0);
    ck_assert_int_eq(count_messages(rdealer, 100), 0);
    char *p = status_of(primary_dir);
    ck_assert_msg(status_true(p, "curve") && json_u64(p, "curve_keys_refused") >= 2, "primary: %s", p);
    ck_assert_msg(standby_listed(p, "standby-a") && !strstr(p, "rogue"), "primary: %s", p);
    free(p);

    /* an authorized monitor does receive */
    char cmd[1024], line[4096] = "";
    snprintf(cmd, sizeof cmd,
             "'%s' monitor %s --json --count 1 --curve-server-key '%s' --curve-public-key '%s' "
             "--curve-secret-key '%s'",
             ringkeep_bin, publish_ep, pp, ap, as);
    FILE *mon = popen(cmd, "r");
    ck_assert_ptr_nonnull(mon);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, mon));
    ck_assert_int_eq(pclose(mon), 0);
    ck_assert_msg(strncmp(line, "{\"type\":\"heartbeat\",", 20) == 0, "%s", line);

    zmq_close(rsub);
    zmq_close(psub);
    zmq_close(rdealer);
    zmq_ctx_term(ctx);
    stop_and_check(sb, primary, e.height);
}
END_TEST

/* ------------------------------------------------------------ identities */

static int exit_status_of(pid_t pid);

/* A DEALER (or SUB subscribed to "rk.h") to the primary; with keys (Z85:
 * the primary's public key, then the client's pair) a CURVE client. */
static void *peer_socket(void *ctx, int type, const char *server_key, const char *public_key,
                         const char *secret_key)
{
    void *sock = zmq_socket(ctx, type);
    int linger = 0;

    ck_assert_ptr_nonnull(sock);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (server_key) {
        ck_assert_int_eq(zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_key, 40), 0);
        ck_assert_int_eq(zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, public_key, 40), 0);
        ck_assert_int_eq(zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_key, 40), 0);
    }
    if (type == ZMQ_SUB)
        ck_assert_int_eq(zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "rk.h", 4), 0);
    ck_assert_int_eq(zmq_connect(sock, type == ZMQ_SUB ? publish_ep : serve_ep), 0);
    return sock;
}

static void send_wire(void *sock, const struct wire_msg *m)
{
    uint8_t *body = NULL;
    size_t body_len = 0;
    char why[256];
    const char *name = wire_type_name(m->type);

    ck_assert_msg(wire_encode(m, &body, &body_len, why, sizeof why) == 0, "%s", why);
    send_frames(sock, name, strlen(name), body, body_len);
    free(body);
}

/* Sends HELLO as id (holding nothing) at epoch and returns the reply's
 * type, with the ERROR code in *code. */
static enum wire_type hello_as(void *dealer, const char *id, uint64_t epoch, uint32_t *code)
{
    struct wire_msg m = {.type = WIRE_HELLO, .epoch = epoch}, got;
    static uint8_t body[1 << 16];

    snprintf(m.u.hello.node_id, sizeof m.u.hello.node_id, "%s", id);
    send_wire(dealer, &m);
    recv_reply(dealer, &got, body, sizeof body);
    *code = got.type == WIRE_ERROR ? got.u.error.code : 0;
    wire_msg_free(&got);
    return got.type;
}

/* ACK of seq, then a FETCH answered after it: when this returns, the
 * primary has handled the ACK (one connection's requests are served in
 * order). */
static void ack_and_sync(void *dealer, uint64_t epoch, uint64_t seq)
{
    struct wire_msg ack = {.type = WIRE_ACK, .epoch = epoch}, fetch = {.type = WIRE_FETCH, .epoch = epoch}, got;
    static uint8_t body[16 << 20];

    ack.u.ack.durable_seq = seq;
    fetch.u.fetch.from_seq = fetch.u.fetch.to_seq = 1;
    send_wire(dealer, &ack);
    send_wire(dealer, &fetch);
    recv_reply(dealer, &got, body, sizeof body);
    wire_msg_free(&got);
}

/* The next heartbeat on sub (bounded); *m owns its arrays (wire_msg_free). */
static void next_heartbeat(void *sub, struct wire_msg *m)
{
    static uint8_t body[1 << 20];
    recv_reply(sub, m, body, sizeof body);
    ck_assert_int_eq(m->type, WIRE_HEARTBEAT);
}

/* The acked_seq a heartbeat lists for id; -1 when not listed. */
static int64_t hb_acked(const struct wire_msg *m, const char *id)
{
    for (uint32_t i = 0; i < m->u.heartbeat.n_standbys; i++)
        if (strcmp(m->u.heartbeat.standbys[i].id, id) == 0)
            return (int64_t)m->u.heartbeat.standbys[i].acked_seq;
    return -1;
}

/* Issue 14, point 9: with CURVE a key acknowledges only for the node_id
 * authorized_keys binds to it.  Another standby's key (bound to standby-b)
 * saying HELLO as standby-a, and a monitor's key (bound to none) saying
 * HELLO at all, are refused with ERROR 7; the first one's ACK of
 * everything then counts for nothing (RK_REPLICATED does not return).
 * The key bound to standby-a makes it replicated. */
START_TEST(curve_key_acks_only_for_its_own_node_id)
{
    char pp[41], ps[41], ap[41], as[41], bp[41], bs[41], mp[41], ms[41], keys_file[300];
    ck_assert_int_eq(zmq_curve_keypair(pp, ps), 0);
    ck_assert_int_eq(zmq_curve_keypair(ap, as), 0);
    ck_assert_int_eq(zmq_curve_keypair(bp, bs), 0);
    ck_assert_int_eq(zmq_curve_keypair(mp, ms), 0);
    snprintf(keys_file, sizeof keys_file, "%s/authorized_keys", primary_dir);
    FILE *f = fopen(keys_file, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s standby-a\n%s\tstandby-b\n# a monitor\n%s\n", ap, bp, mp);
    fclose(f);
    const char *const pextra[] = {"replication",      "curve",     "yes",         "replication",
                                  "curve_secret_key", ps,          "replication", "curve_public_key",
                                  pp,                 "replication", "authorized_keys", keys_file,
                                  "replication",      "min_replicas", "1",        NULL};
    const char *const sextra[] = {"replication", "curve", "yes", "replication", "curve_secret_key", as,
                                  "replication", "curve_public_key", ap, "replication", "curve_server_key",
                                  pp, NULL};
    struct engine e;
    uint32_t code = 0;
    pid_t primary = start(primary_dir, NULL, pextra, NULL);
    char *st = status_of(primary_dir);
    uint64_t epoch = json_u64(st, "epoch");
    free(st);

    engine_attach(&e);
    engine_write(&e, 10);
    void *ctx = zmq_ctx_new(), *b = peer_socket(ctx, ZMQ_DEALER, pp, bp, bs),
         *mon = peer_socket(ctx, ZMQ_DEALER, pp, mp, ms);
    ck_assert_int_eq(hello_as(b, "standby-a", epoch, &code), WIRE_ERROR);
    ck_assert_uint_eq(code, WIRE_ERR_IDENTITY);
    ck_assert_int_eq(hello_as(mon, "monitor", epoch, &code), WIRE_ERROR);
    ck_assert_uint_eq(code, WIRE_ERR_IDENTITY);
    ack_and_sync(b, epoch, UINT32_MAX); /* everything, and more */
    ack_and_sync(mon, epoch, UINT32_MAX);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, 0), RK_ETIMEDOUT);
    wait_status(primary_dir, "\"hellos_refused\":2,"); /* the status as of a heartbeat after them */
    st = status_of(primary_dir);
    ck_assert_msg(json_u64(st, "replicated_lsn") < e.lsn && !standby_listed(st, "standby-a"), "primary: %s", st);
    free(st);

    /* its own id: listed (it holds nothing, so nothing is replicated) */
    ck_assert_int_eq(hello_as(b, "standby-b", epoch, &code), WIRE_WELCOME);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, 0), RK_ETIMEDOUT);
    zmq_close(b);
    zmq_close(mon);
    zmq_ctx_term(ctx);

    /* the key bound to standby-a */
    pid_t sb = start(standby_dir[0], "standby-a", sextra, NULL);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    rk_ring_detach(e.r);
    stop_and_check(sb, primary, e.height);
}
END_TEST

/* Issue 14, point 10: a HELLO from another connection under a live
 * standby's name (here without CURVE, and with the standby's name as its
 * routing id too) is refused with ERROR 7: the standby keeps its slot and
 * acknowledgements (every later heartbeat lists at least what it had
 * acked) and records keep becoming replicated. */
START_TEST(hello_under_a_live_standbys_name_does_not_reset_its_acks)
{
    static const char *const one_replica[] = {"replication", "min_replicas", "1", NULL};
    struct engine e;
    uint32_t code = 0;
    char log_file[300];
    snprintf(log_file, sizeof log_file, "%s/primary-stderr.log", primary_dir);
    spawn_stderr = log_file;
    pid_t primary = start(primary_dir, NULL, one_replica, NULL);
    spawn_stderr = NULL;
    /* min_replicas 1 without CURVE (insecure_acks = yes): said at start */
    ck_assert_int_eq(lines_with(log_file, (const char *const[]){"level=warn",
                                                                 "acknowledgements are not authenticated", NULL}),
                     1);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);
    char *st = status_of(primary_dir);
    uint64_t epoch = json_u64(st, "epoch");
    free(st);

    engine_attach(&e);
    engine_write(&e, 20);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    void *ctx = zmq_ctx_new(), *sub = peer_socket(ctx, ZMQ_SUB, NULL, NULL, NULL),
         *fake = peer_socket(ctx, ZMQ_DEALER, NULL, NULL, NULL), *fake_route = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(fake_route, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(fake_route, ZMQ_ROUTING_ID, "standby-a", 9);
    ck_assert_int_eq(zmq_connect(fake_route, serve_ep), 0);

    struct wire_msg hb;
    int64_t before = -1;
    for (int i = 0; i < BOUND_S * 20 && before < 1; i++) {
        next_heartbeat(sub, &hb);
        before = hb_acked(&hb, "standby-a");
        wire_msg_free(&hb);
    }
    ck_assert_int_ge(before, 1);
    ck_assert_int_eq(hello_as(fake, "standby-a", epoch, &code), WIRE_ERROR);
    ck_assert_uint_eq(code, WIRE_ERR_IDENTITY);
    ck_assert_int_eq(hello_as(fake_route, "standby-a", epoch, &code), WIRE_ERROR);
    ck_assert_uint_eq(code, WIRE_ERR_IDENTITY);
    for (int i = 0; i < 10; i++) {
        next_heartbeat(sub, &hb);
        int64_t now = hb_acked(&hb, "standby-a");
        wire_msg_free(&hb);
        ck_assert_msg(now >= before, "heartbeat %d after the impostor: standby-a acked %lld, %lld before", i,
                      (long long)now, (long long)before);
        before = now;
    }
    engine_write(&e, 5);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    wait_status(primary_dir, "\"hellos_refused\":2,");
    zmq_close(sub);
    zmq_close(fake);
    zmq_close(fake_route);
    zmq_ctx_term(ctx);
    rk_ring_detach(e.r);
    stop_and_check(sb, primary, e.height);
}
END_TEST

/* Issue 14, point 12: an authorized key opening 64 connections under 64
 * names, all kept alive (each acks every heartbeat), holds one slot at
 * most (its own id's); a new real standby is listed while they go on. */
START_TEST(fake_identities_do_not_lock_a_real_standby_out)
{
    enum { N_FAKES = 64 };
    char pp[41], ps[41], ap[41], as[41], fp[41], fs[41], keys_file[300];
    ck_assert_int_eq(zmq_curve_keypair(pp, ps), 0);
    ck_assert_int_eq(zmq_curve_keypair(ap, as), 0);
    ck_assert_int_eq(zmq_curve_keypair(fp, fs), 0);
    snprintf(keys_file, sizeof keys_file, "%s/authorized_keys", primary_dir);
    FILE *f = fopen(keys_file, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s standby-a\n%s fake-0\n", ap, fp);
    fclose(f);
    const char *const pextra[] = {"replication",      "curve",     "yes",         "replication",
                                  "curve_secret_key", ps,          "replication", "curve_public_key",
                                  pp,                 "replication", "authorized_keys", keys_file, NULL};
    const char *const sextra[] = {"replication", "curve", "yes", "replication", "curve_secret_key", as,
                                  "replication", "curve_public_key", ap, "replication", "curve_server_key",
                                  pp, NULL};
    struct engine e;
    pid_t primary = start(primary_dir, NULL, pextra, NULL);
    char *st = status_of(primary_dir);
    uint64_t epoch = json_u64(st, "epoch");
    uint32_t code = 0;
    void *ctx = zmq_ctx_new(), *fakes[N_FAKES], *sub = peer_socket(ctx, ZMQ_SUB, pp, fp, fs);
    free(st);

    engine_attach(&e);
    engine_write(&e, 5);
    rk_ring_detach(e.r);

    for (int i = 0; i < N_FAKES; i++) {
        char id[32];
        snprintf(id, sizeof id, "fake-%d", i);
        fakes[i] = peer_socket(ctx, ZMQ_DEALER, pp, fp, fs);
        enum wire_type t = hello_as(fakes[i], id, epoch, &code);
        ck_assert_msg(t == (i == 0 ? WIRE_WELCOME : WIRE_ERROR), "%s: reply %s", id, wire_type_name(t));
    }
    pid_t sb = spawn(standby_dir[0], "standby-a", sextra, NULL, NULL);
    int listed = 0;
    for (int beat = 0; beat < BOUND_S * 20 && !listed; beat++) {
        struct wire_msg hb;
        next_heartbeat(sub, &hb);
        listed = hb_acked(&hb, "standby-a") >= 0;
        ck_assert_uint_le(hb.u.heartbeat.n_standbys, 2);
        wire_msg_free(&hb);
        for (int i = 0; i < N_FAKES; i++) { /* alive: an ACK per heartbeat, as a standby does */
            struct wire_msg ack = {.type = WIRE_ACK, .epoch = epoch};
            send_wire(fakes[i], &ack);
        }
    }
    ck_assert(listed);
    for (int i = 0; i < N_FAKES; i++)
        zmq_close(fakes[i]);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    free(wait_caught_up(standby_dir[0]));
    stop_and_check(sb, primary, e.height);
}
END_TEST

/* Issue 14, point 12, without CURVE (min_replicas 1, insecure_acks =
 * yes): 64 peers under made-up names fill the standbys' table and keep it
 * full, each ACKing every heartbeat (what it said it held: nothing) and
 * saying HELLO again whenever a heartbeat does not list it, as a standby
 * does.  A real standby still gets in (one of them, which replicated
 * nothing, is forgotten for it), replicates (RK_REPLICATED returns: no
 * fake acked a record) and stays listed while the fakes go on; its state
 * is the primary's.  On the code before it was refused ("too many
 * standbys (64, every one live)") and never listed. */
START_TEST(fake_identities_without_curve_do_not_lock_a_real_standby_out)
{
    enum { N_FAKES = 64 };
    static const char *const one_replica[] = {"replication", "min_replicas", "1", NULL};
    static uint8_t body[1 << 20];
    struct engine e;
    pid_t primary = start(primary_dir, NULL, one_replica, NULL), sb = -1;
    char *st = status_of(primary_dir);
    uint64_t epoch = json_u64(st, "epoch");
    uint32_t code = 0;
    void *ctx = zmq_ctx_new(), *fakes[N_FAKES], *sub = peer_socket(ctx, ZMQ_SUB, NULL, NULL, NULL);
    int listed_beats = 0, written = 0, replicated = 0;
    free(st);

    engine_attach(&e);
    engine_write(&e, 5);
    for (int i = 0; i < N_FAKES; i++) {
        char id[32];
        snprintf(id, sizeof id, "fake-%d", i);
        fakes[i] = peer_socket(ctx, ZMQ_DEALER, NULL, NULL, NULL);
        ck_assert_int_eq(hello_as(fakes[i], id, epoch, &code), WIRE_WELCOME);
    }
    sb = spawn(standby_dir[0], "standby-a", NULL, NULL, NULL);
    /* until it replicated and was listed in 20 heartbeats more */
    for (int beat = 0; beat < BOUND_S * 20 && !(replicated && listed_beats >= 20); beat++) {
        struct wire_msg hb;
        next_heartbeat(sub, &hb);
        ck_assert_uint_le(hb.u.heartbeat.n_standbys, WIRE_MAX_STANDBYS);
        int listed = hb_acked(&hb, "standby-a") >= 0;
        ck_assert_msg(listed || !replicated, "standby-a, replicating, was forgotten (heartbeat %d)", beat);
        listed_beats += listed && replicated;
        for (int i = 0; i < N_FAKES; i++) { /* as a standby: an ACK per heartbeat, HELLO when not listed */
            char id[32];
            struct wire_msg ack = {.type = WIRE_ACK, .epoch = epoch},
                            hello = {.type = WIRE_HELLO, .epoch = epoch};
            snprintf(id, sizeof id, "fake-%d", i);
            send_wire(fakes[i], &ack);
            if (hb_acked(&hb, id) < 0) {
                snprintf(hello.u.hello.node_id, sizeof hello.u.hello.node_id, "%s", id);
                send_wire(fakes[i], &hello);
            }
            for (;;) { /* its replies (WELCOME, or ERROR when no slot is free), not kept */
                zmq_pollitem_t it = {.socket = fakes[i], .events = ZMQ_POLLIN};
                if (zmq_poll(&it, 1, 0) != 1)
                    break;
                ck_assert_int_ge(zmq_recv(fakes[i], body, sizeof body, 0), 0);
            }
        }
        wire_msg_free(&hb);
        if (listed && !written) {
            engine_write(&e, 5);
            written = 1;
        }
        replicated = written && rk_wait(e.r, e.lsn, RK_REPLICATED, 0) == 0;
    }
    ck_assert_msg(replicated && listed_beats >= 20, "standby-a: replicated %d, listed in %d heartbeats since",
                  replicated, listed_beats);
    st = status_of(primary_dir);
    ck_assert_msg(json_u64(st, "standbys_evicted") >= 1 && standby_listed(st, "standby-a"), "primary: %s",
                  st);
    free(st);
    for (int i = 0; i < N_FAKES; i++)
        zmq_close(fakes[i]);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    detach_catch_up_and_check(&e, sb, primary);
}
END_TEST

/* A HELLO whose last entry the primary trimmed is taken on the epoch (the
 * standby bootstraps), but that entry's bytes were not compared: a
 * primary that lost an entry it published before its fsync (a power cut)
 * writes another under the same seq and epoch after its restart, and a
 * standby holding the lost one must not count for RK_REPLICATED.  Before
 * the fix the HELLO of last_seq 3 with a foreign hash moved the
 * replicated cursor to entry 3's records; now the standby is listed with
 * what it says, and the cursor does not move until it acks past it. */
START_TEST(an_unverified_hello_is_listed_not_counted)
{
    static const char *const extra[] = {"replication", "min_replicas",  "1", "checkpoint", "keep", "1",
                                        "checkpoint",  "every_seconds", "0", NULL};
    static uint8_t body[1 << 16];
    struct engine e;
    ring_info *info = malloc(sizeof *info);
    char err[256], *st = NULL;
    pid_t primary = start(primary_dir, NULL, extra, NULL);
    uint64_t epoch, before;

    ck_assert_ptr_nonnull(info);
    st = status_of(primary_dir);
    epoch = json_u64(st, "epoch");
    free(st);
    engine_attach(&e);
    for (int i = 0; i < 8; i++)
        engine_write(&e, 2); /* one entry at least each */
    checkpoint_now();
    engine_write(&e, 2);
    checkpoint_now(); /* keep 1: the journal trimmed to the second */
    ck_assert_int_eq(ring_inspect(ring_name, info, err, sizeof err), 0);
    before = info->replicated_lsn;
    ck_assert_uint_lt(before, e.lsn);

    void *ctx = zmq_ctx_new(), *x = peer_socket(ctx, ZMQ_DEALER, NULL, NULL, NULL);
    struct wire_msg m = {.type = WIRE_HELLO, .epoch = epoch}, got;
    snprintf(m.u.hello.node_id, sizeof m.u.hello.node_id, "x");
    m.u.hello.last_seq = 3;
    m.u.hello.last_epoch = epoch;
    m.u.hello.has_last_xxh = 1;
    m.u.hello.last_xxh = 0xdead;
    m.u.hello.checks_prev = 1;
    send_wire(x, &m);
    recv_reply(x, &got, body, sizeof body);
    ck_assert_int_eq(got.type, WIRE_WELCOME);
    ck_assert_msg(got.u.welcome.first_seq > 4, "the journal starts at %llu: entry 4 is not trimmed",
                  (unsigned long long)got.u.welcome.first_seq);
    wire_msg_free(&got);
    ack_and_sync(x, epoch, 3);
    wait_status(primary_dir, "\"id\":\"x\",\"acked_seq\":3,"); /* listed with what it says */
    ck_assert_int_eq(ring_inspect(ring_name, info, err, sizeof err), 0);
    ck_assert_msg(info->replicated_lsn == before,
                  "a standby whose last entry was never compared moved the replicated cursor %llu -> %llu",
                  (unsigned long long)before, (unsigned long long)info->replicated_lsn);
    /* an ACK past it counts: everything is replicated */
    st = status_of(primary_dir);
    ack_and_sync(x, epoch, json_u64(st, "journal_seq"));
    free(st);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    zmq_close(x);
    zmq_ctx_term(ctx);
    rk_ring_detach(e.r);
    free(info);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);
}
END_TEST

/* Issue 14, point 7: a monitor's HELLO (its 7th element true) is
 * welcomed, and the monitor follows the journal (FETCH, byte for byte the
 * primary's entries), but it is neither listed in heartbeats nor counted:
 * its ACK of everything leaves RK_REPLICATED waiting for a standby. */
START_TEST(monitor_follows_without_taking_a_standby_slot)
{
    /* the journal kept whole: what the monitor fetched is compared with it at the end */
    static const char *const one_replica[] = {"replication", "min_replicas", "1", "checkpoint",
                                              "trim_journal", "no", NULL};
    static uint8_t body[16 << 20];
    struct engine e;
    pid_t primary = start(primary_dir, NULL, one_replica, NULL);
    char *st = status_of(primary_dir);
    uint64_t epoch = json_u64(st, "epoch"), last = 0, n_fetched = 0;
    uint8_t **fetched = NULL;
    size_t *fetched_len = NULL;
    free(st);

    engine_attach(&e);
    engine_write(&e, 20);
    void *ctx = zmq_ctx_new(), *mon = peer_socket(ctx, ZMQ_DEALER, NULL, NULL, NULL),
         *sub = peer_socket(ctx, ZMQ_SUB, NULL, NULL, NULL);
    struct wire_msg m = {.type = WIRE_HELLO, .epoch = epoch}, got;
    snprintf(m.u.hello.node_id, sizeof m.u.hello.node_id, "mon");
    m.u.hello.monitor = 1;
    send_wire(mon, &m);
    recv_reply(mon, &got, body, sizeof body);
    ck_assert_int_eq(got.type, WIRE_WELCOME);
    last = got.u.welcome.last_seq;
    ck_assert_uint_ge(last, 1);
    ck_assert_uint_eq(got.u.welcome.first_seq, 1);
    wire_msg_free(&got);
    fetched = calloc(last, sizeof *fetched);
    fetched_len = calloc(last, sizeof *fetched_len);
    ck_assert(fetched && fetched_len);
    while (n_fetched < last) {
        struct wire_msg f = {.type = WIRE_FETCH, .epoch = epoch};
        f.u.fetch.from_seq = n_fetched + 1;
        f.u.fetch.to_seq = last;
        send_wire(mon, &f);
        recv_reply(mon, &got, body, sizeof body);
        ck_assert_int_eq(got.type, WIRE_ENTRIES);
        ck_assert_uint_ge(got.u.entries.n_entries, 1);
        for (uint32_t i = 0; i < got.u.entries.n_entries; i++, n_fetched++) {
            ck_assert_uint_eq(got.u.entries.entries[i].seq, n_fetched + 1);
            fetched_len[n_fetched] = got.u.entries.entries[i].len;
            fetched[n_fetched] = malloc(fetched_len[n_fetched]);
            ck_assert_ptr_nonnull(fetched[n_fetched]);
            memcpy(fetched[n_fetched], got.u.entries.entries[i].bytes, fetched_len[n_fetched]);
        }
        wire_msg_free(&got);
    }
    /* its ACK of everything counts for nothing; no heartbeat lists it */
    ack_and_sync(mon, epoch, last);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, 0), RK_ETIMEDOUT);
    wait_status(primary_dir, "\"monitor_hellos\":1,");
    for (int i = 0; i < 3; i++) {
        struct wire_msg hb;
        next_heartbeat(sub, &hb);
        ck_assert_uint_eq(hb.u.heartbeat.n_standbys, 0);
        wire_msg_free(&hb);
    }
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, 0), RK_ETIMEDOUT);
    zmq_close(mon);
    zmq_close(sub);
    zmq_ctx_term(ctx);

    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    rk_ring_detach(e.r);
    stop_and_check(sb, primary, e.height);
    for (uint64_t seq = 1; seq <= last; seq++) {
        ck_assert_msg(journal_entry_is(primary_dir, seq, fetched[seq - 1], fetched_len[seq - 1]),
                      "entry %llu the monitor fetched differs from the primary's", (unsigned long long)seq);
        free(fetched[seq - 1]);
    }
    free(fetched);
    free(fetched_len);
}
END_TEST

/* Lines of file holding every one of the strings (NULL-ended). */
static int lines_with(const char *file, const char *const *needles)
{
    FILE *f = fopen(file, "r");
    char line[4096];
    int n = 0;

    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f)) {
        int all = 1;
        for (const char *const *s = needles; *s && all; s++)
            all = strstr(line, *s) != NULL;
        n += all;
    }
    fclose(f);
    return n;
}

/* Issue 14, point 11: a peer flooding bad messages, and lower-epoch
 * requests, is counted exactly (status) and logged once per peer per
 * interval (10 s), the first line at once: not one line per message. */
START_TEST(refusals_are_counted_and_logged_once_per_peer_per_interval)
{
    char log_file[300];
    snprintf(log_file, sizeof log_file, "%s/primary-stderr.log", primary_dir);
    set_epoch(primary_dir, 2);
    spawn_stderr = log_file;
    pid_t primary = start(primary_dir, NULL, NULL, NULL);
    spawn_stderr = NULL;
    void *ctx = zmq_ctx_new(), *rogue = zmq_socket(ctx, ZMQ_DEALER), *other = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(rogue, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(other, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(rogue, ZMQ_ROUTING_ID, "rogue-11", 8);
    zmq_setsockopt(other, ZMQ_ROUTING_ID, "rogue-22", 8);
    ck_assert_int_eq(zmq_connect(rogue, serve_ep), 0);
    ck_assert_int_eq(zmq_connect(other, serve_ep), 0);

    for (int i = 0; i < 50; i++)
        send_frames(rogue, "junk", 4, "xx", 2);
    for (int i = 0; i < 5; i++)
        send_frames(other, "junk", 4, "yy", 2);
    for (int i = 0; i < 30; i++) { /* HELLO at epoch 1: ERROR 1 each, in order after the junk */
        uint32_t code = 0;
        ck_assert_int_eq(hello_as(rogue, "rogue", 1, &code), WIRE_ERROR);
        ck_assert_uint_eq(code, WIRE_ERR_EPOCH);
    }
    wait_status(primary_dir, "\"peers_dropped\":55,");
    wait_status(primary_dir, "\"lower_epoch_refused\":30,");
    wait_status(primary_dir, "\"replies_dropped\":0,"); /* all 30 ERRORs were queued (and read above) */
    ck_assert_int_eq(stop(primary, SIGTERM), 0);
    zmq_close(rogue);
    zmq_close(other);
    zmq_ctx_term(ctx);

    /* peer= is the routing id in hex: "rogue-11", "rogue-22" */
    ck_assert_int_eq(lines_with(log_file, (const char *const[]){"bad message from a peer", NULL}), 2);
    ck_assert_int_eq(lines_with(log_file, (const char *const[]){"bad message from a peer",
                                                                 "peer=726f6775652d3131 ", "count=1 ", NULL}),
                     1);
    ck_assert_int_eq(lines_with(log_file, (const char *const[]){"bad message from a peer",
                                                                 "peer=726f6775652d3232 ", "count=1 ", NULL}),
                     1);
    ck_assert_int_eq(lines_with(log_file, (const char *const[]){"request from a lower epoch refused",
                                                                 "peer=726f6775652d3131 ", NULL}),
                     1);
}
END_TEST

/* Issue 14, point 11, oversized requests: 20 requests whose body frame is
 * 5000 bytes (over the 4096-byte cap, under ZMQ_MAXMSGSIZE) each get ERROR
 * 5 naming the size, are counted (requests_oversized) and logged once for
 * that peer (count=1: the interval is 10 s), and the connection carries on
 * (its HELLO next is welcomed).  A frame over ZMQ_MAXMSGSIZE (20000 bytes)
 * is cut by ZeroMQ: counted in serve_connections_closed, one line.  Then
 * 20 requests of a higher epoch: the primary steps down, with one line for
 * them.  On the code before, ZeroMQ cut the first 5000-byte request: no
 * reply, nothing counted, nothing logged. */
START_TEST(oversized_requests_are_counted_and_logged_once_per_peer)
{
    static const char *const info[] = {"node", "log_level", "info", NULL};
    static uint8_t big[20000], reply_body[4096];
    char log_file[300];
    snprintf(log_file, sizeof log_file, "%s/primary-stderr.log", primary_dir);
    spawn_stderr = log_file;
    pid_t primary = start(primary_dir, NULL, info, NULL);
    spawn_stderr = NULL;
    char *st = status_of(primary_dir);
    uint64_t epoch = json_u64(st, "epoch");
    free(st);
    void *ctx = zmq_ctx_new(), *rogue = zmq_socket(ctx, ZMQ_DEALER), *cut = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    uint32_t code = 0;
    zmq_setsockopt(rogue, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(cut, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(rogue, ZMQ_ROUTING_ID, "big-11", 6);
    ck_assert_int_eq(zmq_connect(rogue, serve_ep), 0);
    ck_assert_int_eq(zmq_connect(cut, serve_ep), 0);
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)mix(i);

    for (int i = 0; i < 20; i++) {
        struct wire_msg got;
        send_frames(rogue, "HELLO", 5, big, 5000);
        recv_reply(rogue, &got, reply_body, sizeof reply_body);
        ck_assert_int_eq(got.type, WIRE_ERROR);
        ck_assert_uint_eq(got.u.error.code, WIRE_ERR_BAD_REQUEST);
        ck_assert_msg(strstr(got.u.error.text, "5000 bytes") != NULL, "%s", got.u.error.text);
        wire_msg_free(&got);
    }
    ck_assert_int_eq(hello_as(rogue, "big", epoch, &code), WIRE_WELCOME); /* forgiven by HELLO */
    wait_status(primary_dir, "\"requests_oversized\":20,");
    st = status_of(primary_dir);
    /* every reply was queued: none dropped as over the ROUTER's high-water
     * mark by a stale count of what this peer read (replicator/primary.c,
     * reply: under load the 17th reply vanished and recv_reply waited for
     * it until its bound) */
    ck_assert_msg(json_u64(st, "peers_dropped") == 20 && json_u64(st, "serve_connections_closed") == 0 &&
                      json_u64(st, "replies_dropped") == 0 && strstr(st, "\"replies_dropped\":0,"),
                  "%s", st);
    free(st);
    send_frames(cut, "FETCH", 5, big, sizeof big);
    wait_status(primary_dir, "\"serve_connections_closed\":1,");
    wait_status(primary_dir, "\"requests_oversized\":20,"); /* the cut one is not seen as a request */

    for (int i = 0; i < 20; i++) {
        struct wire_msg m = {.type = WIRE_HELLO, .epoch = epoch + 1};
        snprintf(m.u.hello.node_id, sizeof m.u.hello.node_id, "big");
        send_wire(rogue, &m);
    }
    ck_assert_int_eq(exit_status_of(primary), NODE_EXIT_FENCED);
    zmq_close(rogue);
    zmq_close(cut);
    zmq_ctx_term(ctx);

    /* peer= is the routing id in hex: "big-11" */
    ck_assert_int_eq(lines_with(log_file, (const char *const[]){"oversized request from a peer", NULL}), 1);
    ck_assert_int_eq(
        lines_with(log_file, (const char *const[]){"oversized request from a peer", "peer=6269672d3131 ",
                                                   "count=1 ", "5000 bytes", NULL}),
        1);
    ck_assert_int_eq(
        lines_with(log_file, (const char *const[]){"serve connections closed", "count=1 ", NULL}), 1);
    ck_assert_int_eq(lines_with(log_file, (const char *const[]){"request from a higher epoch", NULL}), 1);
    ck_assert_int_eq(lines_with(log_file, (const char *const[]){"request from a higher epoch",
                                                                 "peer=6269672d3131 ", "count=1 ", NULL}),
                     1);
}
END_TEST

/* Waits (bounded) until a line of file holds every one of the strings. */
static void wait_line_with(const char *file, const char *const *needles)
{
    for (int i = 0;; i++) {
        FILE *f = fopen(file, "r");
        if (f) {
            fclose(f);
            if (lines_with(file, needles) > 0)
                return;
        }
        ck_assert_msg(i < BOUND_S * 100, "%s never had a line with \"%s\"", file, needles[0]);
        usleep(10000);
    }
}

/* Issue 14, point 8: `ringkeep monitor --live` (what a terminal gets)
 * redraws one line a second with the cursors, each standby's health or
 * lag and the last checkpoint notice, and says when heartbeats stop (the
 * primary frozen with SIGSTOP) and when they come back. */
START_TEST(monitor_live_line_shows_health_checkpoints_and_stopped_heartbeats)
{
    struct engine e;
    pid_t primary = start(primary_dir, NULL, NULL, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);
    pid_t mon = fork();

    ck_assert_int_ge(mon, 0);
    if (mon == 0) {
        FILE *out = freopen(monitor_out, "w", stdout);
        if (!out)
            _exit(98);
        execl(ringkeep_bin, ringkeep_bin, "monitor", publish_ep, "--live", (char *)NULL);
        _exit(97);
    }
    engine_attach(&e);
    engine_write(&e, 20);
    rk_ring_detach(e.r);
    char *st = wait_caught_up(standby_dir[0]), want_seq[64];
    snprintf(want_seq, sizeof want_seq, " journal_seq=%llu ", (unsigned long long)json_u64(st, "journal_seq"));
    free(st);
    wait_line_with(monitor_out, (const char *const[]){"epoch=1", want_seq, " standby-a:ok", NULL});
    checkpoint_now();
    wait_line_with(monitor_out, (const char *const[]){" checkpoint=", ".rkcp@", "s ago", NULL});
    /* the primary frozen: no heartbeats; then thawed */
    ck_assert_int_eq(kill(primary, SIGSTOP), 0);
    wait_line_with(monitor_out, (const char *const[]){"NO HEARTBEAT for ", want_seq, NULL});
    ck_assert_int_eq(kill(primary, SIGCONT), 0);
    for (int i = 0;; i++) { /* the last line, after the thaw: heartbeats again */
        FILE *f = fopen(monitor_out, "r");
        char line[4096], last[4096] = "";
        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof line, f))
            memcpy(last, line, sizeof last);
        fclose(f);
        if (strstr(last, "epoch=") && !strstr(last, "NO HEARTBEAT"))
            break;
        ck_assert_msg(i < BOUND_S * 100, "the monitor never showed heartbeats again: %s", last);
        usleep(10000);
    }
    ck_assert_int_eq(stop(mon, SIGTERM), 0); /* exit status 0 */
    stop_and_check(sb, primary, e.height);
}
END_TEST

/* ------------------------------------------------------------ promotion */

/* What a standby needs to be promoted: the ring it will own. */
static const char *const own_ring_b[] = {"ring", "name", ring_b, "ring", "capacity", "1M", NULL};
static const char *const min_one[] = {"replication", "min_replicas", "1", NULL};

/* Runs `ringkeep ARGS...` (NULL-ended) with its stdout in out; returns its
 * exit status. */
static int run_cli(char *out, size_t out_size, const char *const *args)
{
    int fd[2];
    pid_t pid;
    size_t len = 0;
    ssize_t got;
    char *argv[32];
    int n = 0, status = 0;

    argv[n++] = (char *)ringkeep_bin;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = (char *)args[n - 1];
    argv[n] = NULL;
    ck_assert_int_eq(pipe(fd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execv(ringkeep_bin, argv);
        _exit(97);
    }
    close(fd[1]);
    while (len + 1 < out_size && (got = read(fd[0], out + len, out_size - 1 - len)) > 0)
        len += (size_t)got;
    out[len] = '\0';
    close(fd[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The journal of dir (no node running there) has consecutive LSNs across
 * its epochs (an entry starts at the next_lsn of the one before), its
 * epochs never go down, entries up to last_old are of epoch 1 and the
 * ones after of epoch 2, and there is at least one of each. */
static void check_journal_epochs(const char *dir, uint64_t last_old)
{
    char err[512];
    store *s = NULL;
    struct journal_header last = {0};
    uint64_t first = 0, next_lsn = 0, n_new = 0;

    ck_assert_msg(store_open(dir, 0, 16, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_first(s, &first), 0);
    ck_assert_int_eq(store_journal_last(s, &last), 0);
    ck_assert_msg(first <= last_old && last.seq > last_old, "journal %llu..%llu, promoted after %llu",
                  (unsigned long long)first, (unsigned long long)last.seq, (unsigned long long)last_old);
    for (uint64_t seq = first; seq <= last.seq; seq++) {
        journal_entry je = {0};
        uint8_t *raw = NULL;
        size_t n = 0;
        ck_assert_int_eq(store_journal_get_raw(s, seq, &raw, &n), 0);
        ck_assert_msg(journal_decode(raw, n, &je, err, sizeof err) == 0, "entry %llu: %s",
                      (unsigned long long)seq, err);
        ck_assert_msg(je.h.epoch == (seq <= last_old ? 1u : 2u), "entry %llu: epoch %llu",
                      (unsigned long long)seq, (unsigned long long)je.h.epoch);
        /* (a TABLE frame the drain puts before the frame needing its
         * name takes that frame's LSN - 1: rounded up to the 8-byte
         * alignment of frames, the entry starts where the last ended) */
        ck_assert_msg(seq == first || (je.h.first_lsn + 7) / 8 * 8 == next_lsn,
                      "entry %llu: first LSN %llu, want %llu", (unsigned long long)seq,
                      (unsigned long long)je.h.first_lsn, (unsigned long long)next_lsn);
        next_lsn = je.h.next_lsn;
        n_new += seq > last_old;
        journal_entry_free(&je);
        free(raw);
    }
    ck_assert_uint_gt(n_new, 0);
    store_close(s);
}

/* The engine after a failover: restores from the promoted node on dir
 * (running), finds a height at least acked (every group it wrote that was
 * acknowledged RK_REPLICATED) with the model's state, attaches to the
 * promoted node's ring and carries on from height + 1. */
static uint64_t restored_height(const char *dir, uint64_t acked)
{
    rk_state *st = NULL;
    uint64_t h = 0;

    ck_assert_int_eq(rk_state_open(dir, &st), 0);
    ck_assert_int_eq(rk_state_height(st, "eng", &h), 0);
    rk_state_close(st);
    ck_assert_msg(h >= acked, "restored height %llu, but %llu groups were acknowledged replicated",
                  (unsigned long long)h, (unsigned long long)acked);
    return h;
}

static void engine_resume(struct engine *e, const char *dir, uint64_t acked)
{
    uint64_t h = restored_height(dir, acked);

    engine_attach_to(e, ring_b);
    e->height = h;
}

/* After the promotion of the node pid on standby_dir[0]: that process
 * answers as the primary of epoch 2; the engine resumes from it
 * (engine_resume) and writes 30 groups; the node is then killed, so that
 * no last checkpoint trims its journal, which goes on in epoch 2 at the
 * next LSN; the state, read with no node (the journal applied), is the
 * model's. */
static void carry_on_after_promotion(struct engine *e, pid_t node, uint64_t acked)
{
    char *st = status_of(standby_dir[0]);
    uint64_t last_old;

    ck_assert_msg(st && strstr(st, "\"role\":\"primary\"") && json_u64(st, "epoch") == 2, "%s", st ? st : "");
    ck_assert_int_eq(json_u64(st, "pid"), node); /* the same process */
    last_old = json_u64(st, "journal_seq");
    free(st);
    engine_resume(e, standby_dir[0], acked);
    engine_write(e, 30);
    rk_ring_detach(e->r);
    ck_assert_int_eq(WTERMSIG(stop(node, SIGKILL)), SIGKILL);
    check_journal_epochs(standby_dir[0], last_old);
    check_state(standby_dir[0], e->height);
}

/* Promotion of a running standby (ringkeep promote) while its primary is
 * dead: every group acknowledged RK_REPLICATED is in the new primary's
 * state, the engine carries on against it, the journal goes on in epoch 2
 * at the next LSN. */
START_TEST(promote_a_running_standby)
{
    struct engine e;
    char out[4096], *st = NULL, *reply = NULL;
    pid_t primary = start(primary_dir, NULL, min_one, NULL);
    pid_t plain = start(standby_dir[1], "standby-b", NULL, NULL); /* no ring of its own */
    pid_t sb = start(standby_dir[0], "standby-a", own_ring_b, NULL);
    uint64_t acked;

    /* refused: a primary, and a standby that names no ring to own */
    ck_assert_int_eq(node_request(primary_dir, "promote", 5000, &reply), 0);
    ck_assert_msg(strstr(reply, "error this node is a primary already"), "%s", reply);
    free(reply);
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[1], NULL}),
                     1);
    st = status_of(standby_dir[1]);
    ck_assert_msg(st && strstr(st, "\"role\":\"standby\""), "refused, yet: %s", st ? st : "");
    free(st);
    ck_assert_int_eq(stop(plain, SIGTERM), 0);

    engine_attach(&e);
    engine_write(&e, 60);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    acked = e.height;
    engine_write(&e, 20); /* durable on the primary, maybe not replicated */
    ck_assert_int_eq(WTERMSIG(stop(primary, SIGKILL)), SIGKILL);
    rk_ring_detach(e.r);

    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}),
                     0);
    ck_assert_msg(strstr(out, "is the primary, epoch 2"), "ringkeep promote printed: %s", out);
    /* promote again: it is a primary already */
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}),
                     1);
    carry_on_after_promotion(&e, sb, acked);
}
END_TEST

/* Promotion at start (ringkeep node --promote) of a stopped standby. */
START_TEST(promote_a_stopped_standby_at_start)
{
    struct engine e;
    char out[4096], id_set[64], pub_set[128], serve_set[128];
    pid_t primary = start(primary_dir, NULL, min_one, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);
    uint64_t acked;

    engine_attach(&e);
    engine_write(&e, 50);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    acked = e.height;
    ck_assert_int_eq(WTERMSIG(stop(primary, SIGKILL)), SIGKILL);
    rk_ring_detach(e.r);
    ck_assert_int_eq(stop(sb, SIGTERM), 0);

    /* a primary's configuration is refused */
    ck_assert_int_eq(run_cli(out, sizeof out,
                             (const char *const[]){"node", "--data-dir", standby_dir[0], "--ring", ring_b,
                                                   "--promote", NULL}),
                     2);
    snprintf(id_set, sizeof id_set, "replication.node_id=standby-a");
    snprintf(pub_set, sizeof pub_set, "replication.primary_publish=%s", publish_ep);
    snprintf(serve_set, sizeof serve_set, "replication.primary_serve=%s", serve_ep);
    pid_t promoted = fork();
    ck_assert_int_ge(promoted, 0);
    if (promoted == 0) {
        execl(ringkeep_bin, ringkeep_bin, "node", "--data-dir", standby_dir[0], "--ring", ring_b, "--set",
              "ring.capacity=1M", "--set", "node.role=standby", "--set", id_set, "--set", pub_set, "--set",
              serve_set, "--log-level", "warn", "--promote", (char *)NULL);
        _exit(97);
    }
    wait_node_answers(standby_dir[0], promoted, BOUND_S, 2000);
    carry_on_after_promotion(&e, promoted, acked);
}
END_TEST

/* Half of group height + 1 of stream 1 (never acknowledged as applied),
 * durable, its MARK never written: open at the next checkpoint. */
static void engine_half_group(struct engine *e)
{
    uint64_t lsn = 0;
    struct op o;

    for (int i = 0; i < RECORDS_PER_GROUP / 2; i++) {
        make_op_of(1, e->height + 1, i, &o);
        uint16_t t = e->tables[o.table];
        int rc = o.del ? rk_del(e->r, t, o.key, o.klen, &lsn)
                       : rk_put(e->r, t, o.key, o.klen, o.val, o.vlen, &lsn);
        ck_assert_int_eq(rc, 0);
    }
    ck_assert_int_eq(rk_wait(e->r, lsn, RK_DURABLE, BOUND_S * 1000), 0);
}

/* The newest checkpoint of dir's, its header in *info (ckpt_info_free). */
static void newest_checkpoint(const char *dir, struct ckpt_info *info)
{
    char folder[300], why[512] = "", **paths = NULL;
    size_t n_paths = 0;

    snprintf(folder, sizeof folder, "%s/checkpoints", dir);
    ck_assert_int_eq(ckpt_list(folder, &paths, &n_paths), 0);
    ck_assert_uint_ge(n_paths, 1);
    ck_assert_msg(ckpt_read_info(paths[0], info, why, sizeof why) == 0, "%s: %s", paths[0], why);
    ck_assert_msg(info->has_replay, "%s has no replay record", paths[0]);
    ckpt_list_free(paths, n_paths);
}

/* Once the primary on primary_dir has applied everything it journaled, a
 * checkpoint of it (checkpoint_now), whose header goes to *ck: it holds
 * every group acknowledged so far, and the groups open then. */
static void checkpoint_of_everything(struct ckpt_info *ck)
{
    char *st = NULL;

    for (int i = 0;; i++) {
        st = status_of(primary_dir);
        if (st && json_u64(st, "applied_seq") == json_u64(st, "journal_seq"))
            break;
        ck_assert_msg(i < BOUND_S * 100, "the primary's apply did not catch up: %s", st ? st : "");
        free(st);
        usleep(10000);
    }
    free(st);
    checkpoint_now();
    newest_checkpoint(primary_dir, ck);
}

/* A standby bootstrapped from the primary's checkpoint at journal seq J,
 * its journal still empty (the entry after J never came), made the
 * primary: by `ringkeep promote` (_i 0), the same with a group open at
 * the checkpoint (_i 1: given up, its entries are not here), or stopped
 * and started with role = primary (_i 2).  Its journal used to begin
 * again at seq 1 and LSN 0 (and its history at (2, 1, 0)): apply,
 * waiting for entry J + 1 and taking every frame at or below the
 * producer's last MARK for applied, never applied the first J entries
 * of the new epoch, groups every one of them acknowledged RK_DURABLE.
 * Now the epoch begins at J + 1, at the LSN where the old journal went
 * on, and every acknowledged group is in the state, byte for byte. */
START_TEST(promoted_with_an_empty_journal_after_a_bootstrap_keeps_every_acknowledged_group)
{
    const int open_group = _i == 1, plain_start = _i == 2;
    char out[4096], gate_env[300], err[512], *st = NULL;
    struct engine e;
    struct ckpt_info ck = {0};
    struct journal_header old_last = {0}, last = {0};
    journal_entry je = {0};
    struct epoch_start *h = NULL;
    uint32_t n_h = 0;
    store *s = NULL;
    uint64_t acked, first = 0, next_lsn = 0;
    pid_t primary = start(primary_dir, NULL, keep_one, NULL), sb;

    engine_attach(&e);
    engine_write(&e, 40);
    if (open_group)
        engine_half_group(&e);
    acked = e.height;
    checkpoint_of_everything(&ck); /* keep_one: the journal is trimmed to what it needs */
    if (open_group)
        ck_assert_msg(ck.replay.restart_seq <= ck.journal_seq, "no group open at the checkpoint (%llu, %llu)",
                      (unsigned long long)ck.replay.restart_seq, (unsigned long long)ck.journal_seq);
    else
        ck_assert_uint_eq(ck.replay.restart_seq, ck.journal_seq + 1);

    /* the gate names no file: the standby keeps no journal entry */
    snprintf(gate_env, sizeof gate_env, "RK_TEST_JOURNAL_GATE=%s.gate", standby_dir[0]);
    sb = start(standby_dir[0], "standby-a", own_ring_b, gate_env);
    for (int i = 0;; i++) {
        st = status_of(standby_dir[0]);
        if (st && json_u64(st, "bootstraps") == 1 && !status_true(st, "bootstrapping") &&
            json_u64(st, "applied_seq") == ck.journal_seq)
            break;
        ck_assert_msg(i < BOUND_S * 100, "the standby did not bootstrap: %s", st ? st : "");
        free(st);
        usleep(10000);
    }
    ck_assert_msg(json_u64(st, "journal_seq") == ck.replay.restart_seq - 1, "%s", st);
    free(st);
    ck_assert_int_eq(WTERMSIG(stop(primary, SIGKILL)), SIGKILL);
    rk_ring_detach(e.r);
    ck_assert_msg(store_open(primary_dir, 0, 16, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_last(s, &old_last), 0);
    ck_assert_uint_eq(old_last.seq, ck.journal_seq);
    store_close(s);

    if (plain_start) {
        ck_assert_int_eq(stop(sb, SIGTERM), 0);
        sb = start(standby_dir[0], NULL, own_ring_b, NULL);
    } else {
        ck_assert_int_eq(
            run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}), 0);
    }
    st = status_of(standby_dir[0]);
    ck_assert_msg(
        st && strstr(st, "\"role\":\"primary\"") && json_u64(st, "epoch") == 2 &&
            json_u64(st, "journal_seq") == ck.journal_seq && json_u64(st, "applied_seq") == ck.journal_seq,
        "promoted after a bootstrap at seq %llu: %s", (unsigned long long)ck.journal_seq, st ? st : "");
    free(st);
    engine_resume(&e, standby_dir[0], acked);
    ck_assert_uint_eq(e.height, acked);
    engine_write(&e, 30);
    check_state(standby_dir[0], e.height); /* the running node's */
    rk_ring_detach(e.r);
    ck_assert_int_eq(WTERMSIG(stop(sb, SIGKILL)), SIGKILL); /* no last checkpoint: the journal stays */
    check_state(standby_dir[0], e.height);

    /* the journal: the new epoch from J + 1 on, its LSNs consecutive from
     * where the old journal went on (with a group open there: past
     * every frame the state holds) */
    ck_assert_msg(store_open(standby_dir[0], 0, 16, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_first(s, &first), 0);
    ck_assert_uint_eq(first, ck.journal_seq + 1);
    ck_assert_int_eq(store_journal_get(s, first, &je, err, sizeof err), 0);
    next_lsn = (je.h.first_lsn + 7) / 8 * 8; /* a TABLE frame first takes the LSN below its frame */
    journal_entry_free(&je);
    if (open_group)
        ck_assert_uint_gt(next_lsn, ck.lsn);
    else
        ck_assert_uint_eq(next_lsn, old_last.next_lsn);
    ck_assert_int_eq(store_history(s, &h, &n_h), 0);
    ck_assert_uint_ge(n_h, 2);
    ck_assert_uint_eq(h[n_h - 2].epoch, 1);
    ck_assert_uint_eq(h[n_h - 1].epoch, 2);
    ck_assert_uint_eq(h[n_h - 1].first_seq, ck.journal_seq + 1);
    ck_assert_uint_eq(h[n_h - 1].first_lsn, next_lsn);
    free(h);
    ck_assert_int_eq(store_journal_last(s, &last), 0);
    for (uint64_t seq = first; seq <= last.seq; seq++) {
        ck_assert_msg(store_journal_get(s, seq, &je, err, sizeof err) == 0, "entry %llu: %s",
                      (unsigned long long)seq, err);
        ck_assert_uint_eq(je.h.epoch, 2);
        ck_assert_msg((je.h.first_lsn + 7) / 8 * 8 == next_lsn, "entry %llu: first LSN %llu, want %llu",
                      (unsigned long long)seq, (unsigned long long)je.h.first_lsn,
                      (unsigned long long)next_lsn);
        next_lsn = je.h.next_lsn;
        journal_entry_free(&je);
    }
    store_close(s);
    ckpt_info_free(&ck);
}
END_TEST

/* The same with a journal that holds some entries, ending below the
 * checkpoint: producer eng2 leaves half a group open, so the checkpoint
 * (J) restarts at R < J and the bootstrapped standby fetches again from
 * R; it holds entry R only (the gate) when the primary is SIGKILLed and
 * it is promoted.  Its epoch used to begin at R + 1 and R's next LSN,
 * below the marks applied up to J: apply took the new groups for applied
 * ones and the engine's 30 durable groups never reached the state
 * ("height 50, wrote 80"; found in review).  Now the entries R..R go, the
 * journal goes on at J + 1, eng2's open group is given up, and every
 * acknowledged group is in the state, equal to the model. */
START_TEST(promoted_with_a_journal_short_of_its_checkpoint_keeps_every_acknowledged_group)
{
    char out[4096], gate_env[340], gate[300], *st = NULL;
    struct engine e;
    struct ckpt_info ck = {0};
    rk_ring *r2 = NULL;
    uint16_t t2[3];
    rk_ring_opts ro = {.producer = "eng2", .full_timeout_ms = 0};
    uint64_t acked, lsn = 0;
    pid_t primary = start(primary_dir, NULL, keep_one, NULL), sb;
    struct op o;
    FILE *f;

    engine_attach(&e);
    engine_write(&e, 10);
    ck_assert_int_eq(rk_ring_attach(ring_name, &ro, &r2), 0);
    ck_assert_int_eq(open_tables(r2, 3, t2), 0);
    for (int i = 0; i < RECORDS_PER_GROUP / 2; i++) {
        make_op_of(1, 1, i, &o);
        ck_assert_int_eq(rk_put(r2, t2[o.table], o.key, o.klen, o.val, o.vlen, &lsn), 0);
    }
    ck_assert_int_eq(rk_wait(r2, lsn, RK_DURABLE, BOUND_S * 1000), 0);
    for (int k = 0; k < 8; k++) {
        engine_write(&e, 5); /* entries after eng2's half group */
        usleep(20000);
    }
    acked = e.height;
    checkpoint_of_everything(&ck);
    ck_assert_msg(ck.replay.restart_seq < ck.journal_seq, "R %llu not below J %llu",
                  (unsigned long long)ck.replay.restart_seq, (unsigned long long)ck.journal_seq);
    snprintf(gate, sizeof gate, "%s.gate", standby_dir[0]);
    f = fopen(gate, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%llu", (unsigned long long)ck.replay.restart_seq);
    fclose(f);
    snprintf(gate_env, sizeof gate_env, "RK_TEST_JOURNAL_GATE=%s", gate);
    sb = start(standby_dir[0], "standby-a", own_ring_b, gate_env);
    for (int i = 0;; i++) {
        st = status_of(standby_dir[0]);
        if (st && json_u64(st, "bootstraps") == 1 && !status_true(st, "bootstrapping") &&
            json_u64(st, "applied_seq") == ck.journal_seq &&
            json_u64(st, "journal_seq") == ck.replay.restart_seq)
            break;
        ck_assert_msg(i < BOUND_S * 100, "the standby did not bootstrap and fetch entry R: %s", st ? st : "");
        free(st);
        usleep(10000);
    }
    free(st);
    rk_ring_detach(r2);
    ck_assert_int_eq(WTERMSIG(stop(primary, SIGKILL)), SIGKILL);
    rk_ring_detach(e.r);
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}),
                     0);
    st = status_of(standby_dir[0]);
    ck_assert_msg(st && json_u64(st, "journal_seq") == ck.journal_seq &&
                      json_u64(st, "applied_seq") == ck.journal_seq,
                  "promoted with a journal short of its checkpoint at seq %llu: %s",
                  (unsigned long long)ck.journal_seq, st ? st : "");
    free(st);
    engine_resume(&e, standby_dir[0], acked);
    ck_assert_uint_eq(e.height, acked);
    engine_write(&e, 30); /* each acknowledged RK_DURABLE */
    rk_ring_detach(e.r);
    ck_assert_int_eq(WTERMSIG(stop(sb, SIGKILL)), SIGKILL);
    check_state(standby_dir[0], e.height);
    ckpt_info_free(&ck);
}
END_TEST

/* ------------------------------------------------------------ a standby's checkpoints */

/* Checkpoints at every 20th height of the engine, three kept: for the
 * primary and the standby alike. */
static const char *const every_20[] = {"checkpoint", "every_heights",   "20", "checkpoint", "height_producer",
                                       "eng",        "checkpoint",      "every_seconds", "0", "checkpoint",
                                       "keep",       "3",               NULL};

/* Waits until the node on dir has taken at least n checkpoints since it
 * started and is writing none; returns its status (malloc'd). */
static char *wait_checkpoints(const char *dir, uint64_t n)
{
    for (int i = 0;; i++) {
        char *st = status_of(dir);
        if (st && json_u64(st, "checkpoints_taken") >= n && !status_true(st, "checkpoint_running"))
            return st;
        ck_assert_msg(i < BOUND_S * 100, "%s took fewer than %llu checkpoints: %s", dir, (unsigned long long)n,
                      st ? st : "");
        free(st);
        usleep(10000);
    }
}

/* What `ringkeep checkpoint export FILE` writes (malloc'd). */
static char *export_of(const char *file)
{
    size_t size = 8u << 20;
    char *out = malloc(size);

    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(run_cli(out, size, (const char *const[]){"checkpoint", "export", file, NULL}), 0);
    ck_assert_uint_lt(strlen(out), size - 1);
    return out;
}

/* Each checkpoint of the standby on dir has one of the primary's at the
 * same journal sequence, holding the same: LSN, epoch, entries, digest,
 * and every entry byte for byte as export writes them.  Returns how many
 * the standby keeps. */
static size_t check_checkpoints_equal(const char *dir)
{
    char pdir[300], sdir[300], err[512], **pp = NULL, **sp = NULL;
    size_t np = 0, ns = 0;

    snprintf(pdir, sizeof pdir, "%s/checkpoints", primary_dir);
    snprintf(sdir, sizeof sdir, "%s/checkpoints", dir);
    ck_assert_int_eq(ckpt_list(pdir, &pp, &np), 0);
    ck_assert_int_eq(ckpt_list(sdir, &sp, &ns), 0);
    for (size_t i = 0; i < ns; i++) {
        struct ckpt_info si = {0};
        int found = 0;
        ck_assert_msg(ckpt_read_info(sp[i], &si, err, sizeof err) == 0, "%s", err);
        for (size_t j = 0; j < np && !found; j++) {
            struct ckpt_info pi = {0};
            ck_assert_msg(ckpt_read_info(pp[j], &pi, err, sizeof err) == 0, "%s", err);
            if (pi.journal_seq == si.journal_seq) {
                char *a = export_of(pp[j]), *b = export_of(sp[i]);
                found = 1;
                ck_assert_uint_eq(si.lsn, pi.lsn);
                ck_assert_uint_eq(si.epoch, pi.epoch);
                ck_assert_uint_eq(si.n_entries, pi.n_entries);
                ck_assert_msg(si.digest == pi.digest, "seq %llu: digest %016llx, the primary's %016llx",
                              (unsigned long long)si.journal_seq, (unsigned long long)si.digest,
                              (unsigned long long)pi.digest);
                ck_assert_msg(strcmp(a, b) == 0, "seq %llu: the entries differ from the primary's",
                              (unsigned long long)si.journal_seq);
                free(a);
                free(b);
            }
            ckpt_info_free(&pi);
        }
        ck_assert_msg(found, "%s (seq %llu): the primary has no checkpoint at that seq", sp[i],
                      (unsigned long long)si.journal_seq);
        ckpt_info_free(&si);
    }
    ckpt_list_free(pp, np);
    ckpt_list_free(sp, ns);
    return ns;
}

/* A standby takes its checkpoints where the primary takes them (every
 * 20th height: the same journal entries), with the same contents, keeps
 * three and trims its journal below what they need, never past what it
 * applied; SIGKILLed, it restarts on its trimmed journal and follows. */
START_TEST(standby_checkpoints_equal_the_primarys_and_trim_its_journal)
{
    struct engine e;
    pid_t primary = start(primary_dir, NULL, every_20, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", every_20, NULL);
    char *st, *stp;

    engine_attach(&e);
    engine_write(&e, 200); /* heights 20, 40 .. 200: ten checkpoints on each */
    free(wait_caught_up(standby_dir[0]));
    st = wait_checkpoints(standby_dir[0], 10);
    stp = wait_checkpoints(primary_dir, 10);
    ck_assert_uint_eq(json_u64(st, "checkpoint_seq"), json_u64(stp, "checkpoint_seq"));
    ck_assert_uint_eq(check_checkpoints_equal(standby_dir[0]), 3);
    uint64_t floor = json_u64(st, "journal_trimmed_below");
    ck_assert_msg(floor > 1 && floor <= json_u64(st, "checkpoint_seq"), "standby: %s", st);
    free(st);
    free(stp);
    {
        char err[512];
        store *s = NULL;
        uint64_t first = 0;
        ck_assert_int_eq(WTERMSIG(stop(sb, SIGKILL)), SIGKILL);
        ck_assert_msg(store_open(standby_dir[0], 0, 16, &s, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(store_journal_first(s, &first), 0);
        ck_assert_uint_eq(first, floor);
        store_close(s);
    }
    engine_write(&e, 40);
    sb = start(standby_dir[0], "standby-a", every_20, NULL);
    engine_write(&e, 20);
    rk_ring_detach(e.r);
    free(wait_caught_up(standby_dir[0]));
    free(wait_checkpoints(standby_dir[0], 3)); /* 220, 240, 260 */
    free(wait_checkpoints(primary_dir, 13));
    ck_assert_uint_eq(check_checkpoints_equal(standby_dir[0]), 3);
    stop_and_check(sb, primary, e.height);
}
END_TEST

/* rk_state_open on a running standby: the state at a group boundary at or
 * after what it had applied when asked, which is the primary's state at
 * that height (the model's); with its apply held (RK_TEST_APPLY_GATE),
 * exactly what it applied, however far its journal is ahead.  `ringkeep
 * checkpoint create` on it: a checkpoint of what it applied. */
START_TEST(state_open_on_a_running_standby_is_the_primarys_state)
{
    struct engine e;
    char gate[300], env[320], limit[32], out[4096], err[512], digest[17];
    struct ckpt_info info = {0};
    char *st;

    snprintf(gate, sizeof gate, "%s.gate", standby_dir[0]);
    snprintf(env, sizeof env, "RK_TEST_APPLY_GATE=%s", gate);
    set_gate(gate, "");
    pid_t primary = start(primary_dir, NULL, NULL, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, env);

    engine_attach(&e);
    engine_write(&e, 60);
    st = wait_caught_up(standby_dir[0]);
    uint64_t held = json_u64(st, "applied_seq");
    digest_of(st, digest);
    free(st);
    check_state(standby_dir[0], 60);

    snprintf(limit, sizeof limit, "%llu", (unsigned long long)held);
    set_gate(gate, limit);
    engine_write(&e, 60);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_DURABLE, BOUND_S * 1000), 0);
    for (int i = 0;; i++) { /* the standby holds all of it, and applied none */
        char *p = status_of(primary_dir);
        uint64_t seq = json_u64(p, "journal_seq");
        free(p);
        st = status_of(standby_dir[0]);
        int held_all = json_u64(st, "journal_seq") == seq;
        ck_assert_msg(json_u64(st, "applied_seq") == held, "apply went past the gate: %s", st);
        free(st);
        if (held_all)
            break;
        ck_assert_msg(i < BOUND_S * 100, "the standby did not receive seq %llu", (unsigned long long)seq);
        usleep(10000);
    }
    check_state(standby_dir[0], 60);

    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"checkpoint", "create", "-d", standby_dir[0],
                                                                      NULL}),
                     0);
    out[strcspn(out, "\n")] = '\0';
    ck_assert_msg(ckpt_read_info(out, &info, err, sizeof err) == 0, "%s: %s", out, err);
    ck_assert_uint_eq(info.journal_seq, held);
    ck_assert_uint_eq(info.digest, strtoull(digest, NULL, 16)); /* the primary's at held (digest_match) */
    ckpt_info_free(&info);

    set_gate(gate, "");
    free(wait_caught_up(standby_dir[0]));
    check_state(standby_dir[0], 120);
    rk_ring_detach(e.r);
    stop_and_check(sb, primary, e.height);
}
END_TEST

/* A further standby bootstraps from a promoted node: the standby took a
 * checkpoint and trimmed its journal while it followed; promoted, it
 * serves that checkpoint to a new standby, which then fetches the rest
 * (epoch 1 and epoch 2 entries) and holds everything; the promoted node's
 * checkpoints go on from the standby's. */
START_TEST(bootstrap_from_a_promoted_node)
{
    char pub2[64], serve2[64], out[4096], *st, *reply = NULL;
    struct engine e;
    uint64_t acked, ckpt_seq;

    snprintf(pub2, sizeof pub2, "tcp://127.0.0.1:%d", port_base + 2);
    snprintf(serve2, sizeof serve2, "tcp://127.0.0.1:%d", port_base + 3);
    const char *const promotable[] = {"ring",        "name",    ring_b,          "ring",        "capacity",
                                      "1M",          "replication", "publish",   pub2,          "replication",
                                      "serve",       serve2,    "checkpoint",    "keep",        "1",
                                      "checkpoint",  "every_seconds", "0",       NULL};
    const char *const follow_promoted[] = {"replication", "primary_publish", pub2, "replication", "primary_serve",
                                           serve2,        NULL};
    pid_t primary = start(primary_dir, NULL, min_one, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", promotable, NULL);

    engine_attach(&e);
    for (int round = 0; round < 2; round++) {
        engine_write(&e, 40);
        free(wait_caught_up(standby_dir[0]));
        ck_assert_int_eq(run_cli(out, sizeof out,
                                 (const char *const[]){"checkpoint", "create", "-d", standby_dir[0], NULL}),
                         0);
    }
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    acked = e.height;
    st = wait_checkpoints(standby_dir[0], 2);
    ckpt_seq = json_u64(st, "checkpoint_seq");
    ck_assert_msg(json_u64(st, "journal_trimmed_below") > 1, "the standby trimmed nothing: %s", st);
    free(st);
    ck_assert_int_eq(WTERMSIG(stop(primary, SIGKILL)), SIGKILL);
    rk_ring_detach(e.r);

    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}), 0);
    st = status_of(standby_dir[0]);
    ck_assert_msg(st && strstr(st, "\"role\":\"primary\"") && json_u64(st, "checkpoint_seq") == ckpt_seq, "%s",
                  st ? st : "");
    free(st);
    engine_resume(&e, standby_dir[0], acked);
    engine_write(&e, 30);

    pid_t s1 = start(standby_dir[1], "standby-b", follow_promoted, NULL);
    engine_write(&e, 20);
    st = wait_caught_up_with(standby_dir[0], standby_dir[1]);
    ck_assert_msg(json_u64(st, "bootstraps") == 1, "%s", st);
    free(st);

    ck_assert_int_eq(node_request(standby_dir[0], "checkpoint", BOUND_S * 1000, &reply), 0);
    ck_assert_msg(strncmp(reply, "ok ", 3) == 0, "checkpoint: %s", reply);
    free(reply);
    st = status_of(standby_dir[0]);
    ck_assert_msg(json_u64(st, "checkpoint_seq") > ckpt_seq, "%s", st);
    free(st);
    rk_ring_detach(e.r);
    ck_assert_int_eq(stop(s1, SIGTERM), 0);
    ck_assert_int_eq(stop(sb, SIGTERM), 0);
    check_journal_of(standby_dir[0], standby_dir[1]);
    check_state(standby_dir[1], e.height);
    check_state(standby_dir[0], e.height);
}
END_TEST


/* ------------------------------------------------------------ fencing */

/* Waits for the node pid to exit by itself; returns its exit status. */
static int exit_status_of(pid_t pid)
{
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "the node was killed by signal %d", WTERMSIG(status));
    return WEXITSTATUS(status);
}

/* A primary told of a higher epoch (a control request, then a standby's
 * message) steps down: nothing more is acknowledged (a durable record
 * waiting for RK_REPLICATED gets RK_EFENCED, writes get RK_EFENCED), what
 * was acknowledged before stays so, it exits with NODE_EXIT_FENCED and
 * does not start as a primary again. */
START_TEST(a_primary_told_of_a_higher_epoch_steps_down)
{
    struct engine e;
    char *reply = NULL;
    uint64_t acked_lsn, open_lsn;
    pid_t primary = start(primary_dir, NULL, min_one, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);

    engine_attach(&e);
    engine_write(&e, 20);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    acked_lsn = e.lsn;
    ck_assert_int_eq(stop(sb, SIGTERM), 0);
    engine_write(&e, 1); /* durable, and no standby to replicate it */
    open_lsn = e.lsn;

    ck_assert_int_eq(node_request(primary_dir, "fence 1", 5000, &reply), 0);
    ck_assert_msg(strncmp(reply, "error fence wants an epoch above", 32) == 0, "%s", reply);
    free(reply);
    ck_assert_int_eq(node_request(primary_dir, "fence 7", 5000, &reply), 0);
    ck_assert_msg(strcmp(reply, "ok stepped down for epoch 7") == 0, "%s", reply);
    free(reply);
    ck_assert_int_eq(rk_wait(e.r, open_lsn, RK_REPLICATED, BOUND_S * 1000), RK_EFENCED);
    ck_assert_int_eq(rk_wait(e.r, acked_lsn, RK_REPLICATED, 0), 0); /* acknowledged before: still */
    ck_assert_int_eq(rk_put(e.r, e.tables[0], "k", 1, "v", 1, NULL), RK_EFENCED);
    ck_assert_int_eq(rk_mark(e.r, e.height + 1, NULL), RK_EFENCED);
    ck_assert_int_eq(exit_status_of(primary), NODE_EXIT_FENCED);
    /* started again as a primary: refused, with the same status */
    ck_assert_int_eq(exit_status_of(spawn(primary_dir, NULL, min_one, NULL, NULL)), NODE_EXIT_FENCED);
    rk_ring_detach(e.r);
}
END_TEST

/* The same when the higher epoch comes in a standby's HELLO. */
START_TEST(a_primary_steps_down_on_a_standbys_higher_epoch)
{
    struct engine e;
    pid_t primary = start(primary_dir, NULL, min_one, NULL), sb;

    engine_attach(&e);
    engine_write(&e, 5);
    set_epoch(standby_dir[1], 3); /* a standby that followed a primary of epoch 3 */
    sb = start(standby_dir[1], "standby-b", NULL, NULL);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), RK_EFENCED);
    ck_assert_int_eq(exit_status_of(primary), NODE_EXIT_FENCED);
    /* the standby took nothing of the lower epoch */
    char *h = status_of(standby_dir[1]);
    ck_assert_msg(h && json_u64(h, "journal_seq") == 0 && json_u64(h, "epoch") == 3, "%s", h ? h : "");
    free(h);
    ck_assert_int_eq(stop(sb, SIGTERM), 0);
    rk_ring_detach(e.r);
}
END_TEST

/* ------------------------------------------------------------ the cluster */

/* Waits for the node pid to exit by itself (bounded); returns its exit
 * status. */
static int exit_status_within(pid_t pid)
{
    int status = 0;
    for (int i = 0; i < BOUND_S * 100; i++) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        ck_assert_int_ge(got, 0);
        if (got == pid) {
            ck_assert_msg(WIFEXITED(status), "the node was killed by signal %d", WTERMSIG(status));
            return WEXITSTATUS(status);
        }
        usleep(10000);
    }
    ck_abort_msg("node %d did not exit in %d s", (int)pid, BOUND_S);
    return -1;
}

/* A status member as a string (a copy in out, "" when absent). */
static const char *json_str(const char *json, const char *key, char *out, size_t size)
{
    json_t *st = json ? json_loads(json, 0, NULL) : NULL, *v = json_object_get(st, key);
    snprintf(out, size, "%s", json_is_string(v) ? json_string_value(v) : "");
    json_decref(st);
    return out;
}

/* A cluster of the primary and standby-a, which binds port_base + 2 and
 * + 3 once promoted; both standbys are given both nodes' endpoints,
 * standby-a's first (nothing binds them while it is a standby). */
struct cluster_eps {
    char a_publish[64], a_serve[64], publish_list[160], serve_list[160];
    const char *a_cfg[22]; /* standby-a's: its ring and endpoints, the lists, min_replicas */
    const char *b_cfg[7];  /* standby-b's: the lists */
};

static void cluster_eps(struct cluster_eps *c, const char *a_min_replicas)
{
    snprintf(c->a_publish, sizeof c->a_publish, "tcp://127.0.0.1:%d", port_base + 2);
    snprintf(c->a_serve, sizeof c->a_serve, "tcp://127.0.0.1:%d", port_base + 3);
    snprintf(c->publish_list, sizeof c->publish_list, "%s, %s", c->a_publish, publish_ep);
    snprintf(c->serve_list, sizeof c->serve_list, "%s, %s", c->a_serve, serve_ep);
    const char *lists[] = {"replication", "primary_publish", c->publish_list,
                           "replication", "primary_serve",   c->serve_list};
    const char *a[] = {"ring",  "name",        ring_b,        "ring",         "capacity",
                       "1M",    "replication", "publish",     c->a_publish,   "replication",
                       "serve", c->a_serve,    "replication", "min_replicas", a_min_replicas};
    memcpy(c->a_cfg, a, sizeof a);
    memcpy(c->a_cfg + 15, lists, sizeof lists);
    c->a_cfg[21] = NULL;
    memcpy(c->b_cfg, lists, sizeof lists);
    c->b_cfg[6] = NULL;
}

/* Waits until the standby on dir follows the node serving at serve, in
 * epoch 2, after `repoints` moves, welcomed; returns its status. */
static char *wait_following(const char *dir, const char *serve, uint64_t repoints)
{
    char buf[256], *st = NULL;

    for (int i = 0; i < BOUND_S * 100; i++) {
        st = status_of(dir);
        if (st && strcmp(json_str(st, "primary", buf, sizeof buf), serve) == 0 &&
            json_u64(st, "epoch") == 2 && json_u64(st, "primary_epoch") == 2 &&
            json_u64(st, "repoints") == repoints && status_true(st, "connected"))
            return st;
        free(st);
        usleep(10000);
    }
    st = status_of(dir);
    ck_abort_msg("%s does not follow %s: %s", dir, serve, st ? st : "");
    return NULL;
}

/* Two standbys given every node's endpoints (the primary's and standby-a's,
 * standby-a's first: nothing binds them while it is a standby), a primary
 * that hangs (SIGSTOP) and standby-a promoted: standby-b finds the primary
 * of epoch 1 among the nodes at start, follows standby-a by itself once it
 * announces epoch 2, acknowledges what the engine writes there
 * (RK_REPLICATED with min_replicas = 1) and holds every entry of it, byte
 * for byte; the old primary, woken, is told of epoch 2 by standby-b and
 * steps down. */
START_TEST(other_standby_repoints_to_the_promoted_one_and_the_old_primary_steps_down)
{
    struct engine e;
    struct cluster_eps c;
    char out[4096], *st = NULL;
    uint64_t acked, last_old = 0;

    cluster_eps(&c, "1");
    pid_t primary = start(primary_dir, NULL, min_one, NULL);
    pid_t a = start(standby_dir[0], "standby-a", c.a_cfg, NULL);
    pid_t b = start(standby_dir[1], "standby-b", c.b_cfg, NULL);

    engine_attach(&e);
    engine_write(&e, 60);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    acked = e.height;
    rk_ring_detach(e.r);
    free(wait_caught_up(standby_dir[0]));
    free(wait_caught_up(standby_dir[1]));
    ck_assert_int_eq(kill(primary, SIGSTOP), 0); /* a hung primary */

    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}),
                     0);
    ck_assert_msg(strstr(out, "is the primary, epoch 2"), "ringkeep promote printed: %s", out);
    st = status_of(standby_dir[0]);
    last_old = json_u64(st, "journal_seq");
    free(st);
    free(wait_following(standby_dir[1], c.a_serve, 1)); /* by itself */

    engine_resume(&e, standby_dir[0], acked);
    engine_write(&e, 30);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0); /* standby-b acknowledged */
    rk_ring_detach(e.r);
    free(wait_caught_up_with(standby_dir[0], standby_dir[1]));

    ck_assert_int_eq(kill(primary, SIGCONT), 0);
    ck_assert_int_eq(exit_status_within(primary), NODE_EXIT_FENCED);

    ck_assert_int_eq(WTERMSIG(stop(a, SIGKILL)), SIGKILL); /* no last checkpoint trims its journal */
    ck_assert_int_eq(stop(b, SIGTERM), 0);
    check_journal_epochs(standby_dir[0], last_old);
    check_journal_of(standby_dir[0], standby_dir[1]);
    check_state(standby_dir[1], e.height);
}
END_TEST

/* standby-b holds entries standby-a never received (standby-a was down
 * while the primary wrote them) when standby-a, started again while the
 * primary hangs, is promoted: standby-b moves to it, sets aside what it
 * holds past the fork point (a file in set-aside/ with exactly those
 * entries' range), rebuilds its state and follows; both journals end
 * byte-identical. */
START_TEST(repointed_standby_sets_aside_what_the_new_primary_lacks)
{
    struct engine e;
    struct cluster_eps c;
    char out[4096], name[300], *st = NULL;
    uint64_t acked, a_last, b_last;

    cluster_eps(&c, "0");
    pid_t primary = start(primary_dir, NULL, NULL, NULL);
    pid_t a = start(standby_dir[0], "standby-a", c.a_cfg, NULL);
    pid_t b = start(standby_dir[1], "standby-b", c.b_cfg, NULL);

    engine_attach(&e);
    engine_write(&e, 40);
    free(wait_caught_up(standby_dir[0]));
    acked = e.height;
    ck_assert_int_eq(stop(a, SIGTERM), 0);
    engine_write(&e, 20);
    rk_ring_detach(e.r);
    st = wait_caught_up(standby_dir[1]);
    b_last = json_u64(st, "journal_seq");
    free(st);
    ck_assert_int_eq(kill(primary, SIGSTOP), 0);

    a = start(standby_dir[0], "standby-a", c.a_cfg, NULL); /* finds no primary: waits */
    st = status_of(standby_dir[0]);
    a_last = json_u64(st, "journal_seq");
    free(st);
    ck_assert_uint_lt(a_last, b_last);
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}),
                     0);
    st = wait_following(standby_dir[1], c.a_serve, 1);
    ck_assert_uint_eq(json_u64(st, "set_aside_runs"), 1);
    free(st);

    engine_resume(&e, standby_dir[0], acked);
    engine_write(&e, 10);
    rk_ring_detach(e.r);
    free(wait_caught_up_with(standby_dir[0], standby_dir[1]));
    ck_assert_int_eq(kill(primary, SIGCONT), 0);
    ck_assert_int_eq(exit_status_within(primary), NODE_EXIT_FENCED);

    ck_assert_int_eq(WTERMSIG(stop(a, SIGKILL)), SIGKILL);
    ck_assert_int_eq(stop(b, SIGTERM), 0);
    check_journal_of(standby_dir[0], standby_dir[1]);
    check_state(standby_dir[1], e.height);
    snprintf(name, sizeof name, "%s/set-aside", standby_dir[1]);
    ck_assert_int_ge(list_dir(name, out, sizeof out), 1);
    snprintf(name, sizeof name, "entries-%llu-%llu-lsn-", (unsigned long long)a_last + 1,
             (unsigned long long)b_last);
    ck_assert_msg(strstr(out, name), "set-aside/ holds: %s (want %s...)", out, name);
}
END_TEST

/* The status of the standby pid on dir once check(status) holds (bounded);
 * fails the test at once if the standby exits. */
static char *wait_standby_status(const char *dir, pid_t pid, int (*check)(const char *), const char *what)
{
    char *st = NULL;
    int status = 0;

    for (int i = 0; i < BOUND_S * 100; i++) {
        ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0, "%s exited (status %d) before %s", dir,
                      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), what);
        st = status_of(dir);
        if (st && check(st))
            return st;
        free(st);
        usleep(10000);
    }
    st = status_of(dir);
    ck_abort_msg("%s: not %s: %s", dir, what, st ? st : "");
    return NULL;
}

static int said_hello_twice(const char *st)
{
    return json_u64(st, "hellos") >= 2;
}

static int follows_in_epoch_2(const char *st)
{
    return json_u64(st, "epoch") == 2 && json_u64(st, "primary_epoch") == 2 && status_true(st, "connected");
}

/* What broke in `ringkeep drill --ha --faults stop-primary` (standby "n2
 * exited": "share no entry it can rebuild to"): standby-b, holding entries
 * past its fork point with standby-a (promoted), says HELLO twice before
 * any answer (here: standby-a hangs until both went out; in the drill, a
 * HELLO queued for a node while it was down was refused when it came back
 * as a primary, and ERROR 1 made the standby say HELLO again).  The first
 * answer makes it set its tail aside and rebuild to the fork point; the
 * second answered the HELLO before the rebuild (not matched) and was taken
 * for the answer to the one after it: the standby stopped (or bootstrapped
 * when a checkpoint was offered).  Variant 0: standby-b still in epoch 1,
 * refused twice with ERROR 1 (the drill's case); 1: it knows epoch 2
 * already, welcomed twice.  Either way: one set-aside run, no bootstrap,
 * it follows and ends with standby-a's journal byte for byte. */
START_TEST(a_welcome_to_an_earlier_hello_is_not_taken_after_a_rebuild)
{
    struct engine e;
    struct cluster_eps c;
    char out[4096], name[300], err[512], *st = NULL;
    uint64_t acked, a_last, b_last;

    cluster_eps(&c, "0");
    const char *const b_follows_a[] = {"replication", "primary_publish", c.a_publish,
                                       "replication", "primary_serve",   c.a_serve, NULL};
    pid_t primary = start(primary_dir, NULL, NULL, NULL);
    pid_t a = start(standby_dir[0], "standby-a", c.a_cfg, NULL);
    pid_t b = start(standby_dir[1], "standby-b", NULL, NULL);

    engine_attach(&e);
    engine_write(&e, 40);
    free(wait_caught_up(standby_dir[0]));
    acked = e.height;
    ck_assert_int_eq(stop(a, SIGTERM), 0);
    engine_write(&e, 20);
    rk_ring_detach(e.r);
    st = wait_caught_up(standby_dir[1]);
    b_last = json_u64(st, "journal_seq");
    free(st);
    ck_assert_int_eq(stop(b, SIGTERM), 0);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);

    a = start(standby_dir[0], "standby-a", c.a_cfg, NULL); /* finds no primary: waits */
    st = status_of(standby_dir[0]);
    a_last = json_u64(st, "journal_seq");
    free(st);
    ck_assert_uint_lt(a_last, b_last);
    /* standby-a heard no heartbeat since its start: it says it cannot know
     * what standby-b holds */
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}),
                     0);
    ck_assert_msg(strstr(out, "no heartbeat from a primary since it started or changed primaries"),
                  "ringkeep promote printed: %s", out);
    ck_assert_msg(strstr(out, "is the primary, epoch 2"), "ringkeep promote printed: %s", out);
    if (_i == 1) { /* standby-b heard of epoch 2 before it stopped */
        store *s = NULL;
        uint64_t epoch = 2;
        ck_assert_msg(store_open(standby_dir[1], 0, 16, &s, err, sizeof err) == 0, "%s", err);
        DB *meta = store_meta(s);
        DBT k = {.data = (void *)STORE_EPOCH_KEY, .size = (u_int32_t)strlen(STORE_EPOCH_KEY)};
        DBT v = {.data = &epoch, .size = sizeof epoch};
        ck_assert_int_eq(meta->put(meta, NULL, &k, &v, DB_AUTO_COMMIT), 0);
        store_close(s);
    }
    ck_assert_int_eq(kill(a, SIGSTOP), 0);
    b = start(standby_dir[1], "standby-b", b_follows_a, NULL);
    free(wait_standby_status(standby_dir[1], b, said_hello_twice, "said HELLO twice"));
    ck_assert_int_eq(kill(a, SIGCONT), 0);
    st = wait_standby_status(standby_dir[1], b, follows_in_epoch_2, "following standby-a in epoch 2");
    ck_assert_uint_eq(json_u64(st, "set_aside_runs"), 1);
    ck_assert_uint_eq(json_u64(st, "bootstraps"), 0);
    free(st);

    engine_resume(&e, standby_dir[0], acked);
    engine_write(&e, 10);
    rk_ring_detach(e.r);
    free(wait_caught_up_with(standby_dir[0], standby_dir[1]));
    ck_assert_int_eq(waitpid(b, NULL, WNOHANG), 0);
    st = status_of(standby_dir[1]);
    ck_assert_uint_eq(json_u64(st, "set_aside_runs"), 1);
    ck_assert_uint_eq(json_u64(st, "bootstraps"), 0);
    free(st);

    ck_assert_int_eq(WTERMSIG(stop(a, SIGKILL)), SIGKILL);
    ck_assert_int_eq(stop(b, SIGTERM), 0);
    check_journal_of(standby_dir[0], standby_dir[1]);
    check_state(standby_dir[1], e.height);
    snprintf(name, sizeof name, "%s/set-aside", standby_dir[1]);
    ck_assert_int_ge(list_dir(name, out, sizeof out), 1);
    snprintf(name, sizeof name, "entries-%llu-%llu-lsn-", (unsigned long long)a_last + 1,
             (unsigned long long)b_last);
    ck_assert_msg(strstr(out, name), "set-aside/ holds: %s (want %s...)", out, name);
}
END_TEST

/* Which standby: standby-a sees the primary's heartbeats but not its serve
 * endpoint (nothing binds the one it is given), so it holds nothing while
 * standby-b acknowledged everything; its promotion is refused with both
 * figures, and --force promotes it. */
START_TEST(promote_refused_when_another_standby_acknowledged_more)
{
    struct engine e;
    char out[4096], nowhere[64], buf[256], *st = NULL, *reply = NULL, want[128];
    uint64_t journal_seq = 0;
    int seen = 0;

    snprintf(nowhere, sizeof nowhere, "tcp://127.0.0.1:%d", port_base + 3);
    const char *const cut_off[] = {"ring", "name",        ring_b,          "ring",  "capacity",
                                   "1M",   "replication", "primary_serve", nowhere, NULL};
    pid_t primary = start(primary_dir, NULL, min_one, NULL);
    pid_t b = start(standby_dir[1], "standby-b", NULL, NULL);

    engine_attach(&e);
    engine_write(&e, 40);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    rk_ring_detach(e.r);
    st = wait_caught_up(standby_dir[1]);
    journal_seq = json_u64(st, "journal_seq");
    free(st);
    pid_t a = start(standby_dir[0], "standby-a", cut_off, NULL);
    for (int i = 0; i < BOUND_S * 100 && !seen; i++) {
        st = status_of(standby_dir[0]);
        seen = st && json_u64(st, "other_acked_seq") == journal_seq &&
               strcmp(json_str(st, "other_acked_id", buf, sizeof buf), "standby-b") == 0;
        free(st);
        if (!seen)
            usleep(10000);
    }
    ck_assert_msg(seen, "standby-a never saw standby-b's acknowledgement of %llu",
                  (unsigned long long)journal_seq);

    ck_assert_int_eq(node_request(standby_dir[0], "promote", 5000, &reply), 0);
    snprintf(want, sizeof want, "holds journal_seq 0; standby-b acknowledged %llu",
             (unsigned long long)journal_seq);
    ck_assert_msg(strncmp(reply, "error cannot promote", 20) == 0 && strstr(reply, want), "%s", reply);
    free(reply);
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}),
                     1);
    st = status_of(standby_dir[0]);
    ck_assert_msg(st && strstr(st, "\"role\":\"standby\""), "refused, yet: %s", st ? st : "");
    free(st);

    ck_assert_int_eq(
        run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], "--force", NULL}), 0);
    ck_assert_msg(strstr(out, want) && strstr(out, "is the primary, epoch 2"), "ringkeep promote printed: %s",
                  out);
    ck_assert_int_eq(stop(a, SIGTERM), 0);
    ck_assert_int_eq(stop(b, SIGTERM), 0);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);
}
END_TEST

/* ------------------------------------------------------------ rejoin */

/* A standby that will be promoted to serve on publish_b/serve_b; its own
 * primary endpoints name those too, where no one serves while it is a
 * standby of a primary that is gone (so it takes nothing more). */
static const char *const serving_b[] = {"ring", "name", ring_b, "ring", "capacity", "1M", "replication",
                                        "publish", publish_b, "replication", "serve", serve_b, NULL};
static const char *const unreachable_b[] = {"ring", "name", ring_b, "ring", "capacity", "1M", "replication",
                                            "publish", publish_b, "replication", "serve", serve_b,
                                            "replication", "primary_publish", publish_b, "replication",
                                            "primary_serve", serve_b, NULL};
/* the old primary as a standby of the promoted one */
static const char *const follow_b[] = {"replication", "primary_publish", publish_b, "replication",
                                       "primary_serve", serve_b, NULL};
/* a primary that rejoins as a standby of the promoted one */
static const char *const rejoin_b[] = {"replication", "min_replicas", "1", "replication", "on_higher_epoch",
                                       "rejoin", "replication", "primary_publish", publish_b, "replication",
                                       "primary_serve", serve_b, "replication", "node_id", "old-primary", NULL};

/* The divergence: the primary on primary_dir and its standby on
 * standby_dir[0] (pid sb) hold 40 groups acknowledged
 * RK_REPLICATED, a checkpoint among them; the standby is stopped; the
 * primary journals 25 more groups RK_DURABLE and takes a checkpoint of
 * them.  *fork is the standby's last entry, *acked its height. */
static void diverge(struct engine *e, pid_t sb, uint64_t *fork, uint64_t *acked)
{
    char err[512];
    store *st = NULL;
    struct journal_header last;

    engine_attach(e);
    engine_write(e, 20);
    checkpoint_now();
    engine_write(e, 20);
    ck_assert_int_eq(rk_wait(e->r, e->lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    *acked = e->height;
    ck_assert_int_eq(stop(sb, SIGTERM), 0);
    engine_write(e, 25); /* durable on the primary only */
    checkpoint_now();    /* past the fork point */
    ck_assert_msg(store_open(standby_dir[0], 0, 16, &st, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_last(st, &last), 0);
    store_close(st);
    *fork = last.seq;
}

/* The old primary's entries past the fork point, read once it is stopped. */
static uint64_t held_past(uint64_t fork, uint8_t ***held, size_t **held_len)
{
    char err[512];
    store *st = NULL;
    struct journal_header last;

    ck_assert_msg(store_open(primary_dir, 0, 16, &st, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_last(st, &last), 0);
    store_close(st);
    ck_assert_msg(last.seq > fork, "the old primary holds %llu entries, the standby %llu",
                  (unsigned long long)last.seq, (unsigned long long)fork);
    journal_raw(primary_dir, fork + 1, last.seq, held, held_len);
    return last.seq;
}

/* `ringkeep set-aside export -d DIR` prints every frame of the one run
 * set aside, entries from on, as one JSON line each, in order: they are
 * the engine's groups first_height..last_height (make_op, then the MARK),
 * and, when held is not NULL, exactly the frames of held[0..n) (seq, LSN,
 * type, table id, key, value). */
static void check_set_aside_export(const char *dir, uint64_t from, uint64_t first_height, uint64_t last_height,
                                   uint8_t **held, const size_t *held_len, size_t n)
{
    size_t out_size = 64u << 20, n_lines = 0, at = 0;
    char *out = malloc(out_size), *save = NULL;
    json_t **lines = calloc(out_size / 64, sizeof *lines);

    ck_assert(out && lines);
    ck_assert_int_eq(run_cli(out, out_size, (const char *const[]){"set-aside", "export", "-d", dir, NULL}), 0);
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        lines[n_lines] = json_loads(l, 0, NULL);
        ck_assert_msg(lines[n_lines], "not JSON: %s", l);
        n_lines++;
    }
    /* the engine's stream */
    for (uint64_t g = first_height; g <= last_height; g++)
        for (int i = 0; i <= RECORDS_PER_GROUP; i++) {
            json_t *o = at < n_lines ? lines[at++] : NULL;
            const char *type = json_string_value(json_object_get(o, "type"));
            ck_assert_msg(o && type, "the export ends before height %llu", (unsigned long long)g);
            ck_assert_uint_ge((uint64_t)json_integer_value(json_object_get(o, "seq")), from);
            if (i == RECORDS_PER_GROUP) {
                ck_assert_str_eq(type, "mark");
                ck_assert_uint_eq((uint64_t)json_integer_value(json_object_get(o, "height")), g);
                continue;
            }
            struct op op;
            uint8_t *k = NULL, *v = NULL;
            size_t kl = 0, vl = 0;
            make_op(g, i, &op);
            ck_assert_str_eq(type, op.del ? "del" : "put");
            ck_assert_int_eq(json_bytes_of(json_object_get(o, "key"), &k, &kl), 0);
            ck_assert(kl == op.klen && memcmp(k, op.key, kl) == 0);
            if (!op.del) {
                ck_assert_int_eq(json_bytes_of(json_object_get(o, "value"), &v, &vl), 0);
                ck_assert(vl == op.vlen && (vl == 0 || memcmp(v, op.val, vl) == 0));
            }
            free(k);
            free(v);
        }
    ck_assert_msg(at == n_lines, "the export has %zu lines, the stream %zu", n_lines, at);
    /* the entries, frame for frame */
    at = 0;
    for (size_t i = 0; held && i < n; i++) {
        journal_entry je = {0};
        char err[256];
        ck_assert_msg(journal_decode(held[i], held_len[i], &je, err, sizeof err) == 0, "%s", err);
        for (uint32_t off = 0; off < je.h.raw_len;) {
            ring_frame f;
            json_t *o = at < n_lines ? lines[at++] : NULL;
            ck_assert_int_eq(frame_decode(je.frames + off, je.h.raw_len - off, &f, NULL, 0), 0);
            ck_assert_msg(o, "the export ends before entry %llu", (unsigned long long)(from + i));
            ck_assert_uint_eq((uint64_t)json_integer_value(json_object_get(o, "seq")), from + i);
            ck_assert_uint_eq((uint64_t)json_integer_value(json_object_get(o, "epoch")), je.h.epoch);
            ck_assert_uint_eq((uint64_t)json_integer_value(json_object_get(o, "lsn")), f.lsn);
            if (f.type == FRAME_PUT || f.type == FRAME_DEL) {
                uint8_t *k = NULL;
                size_t kl = 0;
                ck_assert_uint_eq((uint64_t)json_integer_value(json_object_get(o, "table_id")), f.table);
                ck_assert_int_eq(json_bytes_of(json_object_get(o, "key"), &k, &kl), 0);
                ck_assert(kl == f.klen && memcmp(k, f.key, kl) == 0);
                free(k);
            }
            off += frame_align(f.raw_len);
        }
        journal_entry_free(&je);
    }
    ck_assert(!held || at == n_lines);
    for (size_t i = 0; i < n_lines; i++)
        json_decref(lines[i]);
    free(lines);
    free(out);
}

/* What a rejoined old primary on primary_dir shows once it follows the
 * promoted node on standby_dir[0] (engine e writing to it): the runs it
 * set aside in its status and `ringkeep set-aside list`, exported frame
 * for frame; after more writes its journal is the new primary's byte for
 * byte and its state the model's; no checkpoint past the fork point is
 * left among its checkpoints. */
static void check_rejoined(struct engine *e, pid_t old, pid_t promoted, uint64_t fork, uint64_t old_last,
                           uint64_t acked, uint8_t **held, size_t *held_len)
{
    char out[8192], *st;
    json_t *j, *runs;

    st = wait_caught_up_with(standby_dir[0], primary_dir);
    j = json_loads(st, 0, NULL);
    runs = json_object_get(j, "set_aside");
    ck_assert_msg(json_array_size(runs) == 1, "%s", st);
    json_t *run = json_array_get(runs, 0);
    ck_assert_uint_eq((uint64_t)json_integer_value(json_object_get(run, "first_seq")), fork + 1);
    ck_assert_uint_eq((uint64_t)json_integer_value(json_object_get(run, "last_seq")), old_last);
    ck_assert_uint_eq((uint64_t)json_integer_value(json_object_get(run, "entries")), old_last - fork);
    json_decref(j);
    free(st);
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"set-aside", "list", "-d", primary_dir, NULL}), 0);
    char want[100];
    snprintf(want, sizeof want, "seq %llu..%llu", (unsigned long long)(fork + 1), (unsigned long long)old_last);
    ck_assert_msg(strstr(out, want), "set-aside list printed: %s", out);
    check_set_aside_export(primary_dir, fork + 1, acked + 1, acked + 25, held, held_len, old_last - fork);

    engine_write(e, 10);
    free(wait_caught_up_with(standby_dir[0], primary_dir));
    rk_ring_detach(e->r);
    ck_assert_int_eq(stop(old, SIGTERM), 0);
    ck_assert_int_eq(stop(promoted, SIGTERM), 0);
    check_journal_of(standby_dir[0], primary_dir);
    check_state(primary_dir, e->height);
    if (held)
        check_set_aside(primary_dir, fork + 1, old_last, held, held_len);
    free(held);
    free(held_len);
    {
        char dir[300], err[512];
        char **paths = NULL;
        size_t n = 0;
        snprintf(dir, sizeof dir, "%s/checkpoints", primary_dir);
        ck_assert_int_eq(ckpt_list(dir, &paths, &n), 0);
        for (size_t i = 0; i < n; i++) {
            struct ckpt_info info = {0};
            ck_assert_msg(ckpt_read_info(paths[i], &info, err, sizeof err) == 0, "%s", err);
            ck_assert_msg(info.epoch >= 2 || info.journal_seq <= fork,
                          "%s: a checkpoint of the old history past the fork point %llu (seq %llu)", paths[i],
                          (unsigned long long)fork, (unsigned long long)info.journal_seq);
            ckpt_info_free(&info);
        }
        ckpt_list_free(paths, n);
    }
}

/* Waits until the process pid on primary_dir answers as a standby (it
 * stepped down and rejoined); returns its status (malloc'd). */
static char *wait_rejoined(pid_t pid)
{
    char *st = NULL;

    for (int i = 0;; i++) {
        st = status_of(primary_dir);
        if (st && strstr(st, "\"role\":\"standby\""))
            break;
        ck_assert_msg(i < BOUND_S * 100, "the old primary did not become a standby: %s", st ? st : "");
        free(st);
        usleep(10000);
    }
    ck_assert_int_eq(json_u64(st, "pid"), pid);
    return st;
}

/* A former primary started again as a standby (by an operator) after a
 * failover it missed: it had journaled RK_DURABLE entries no standby got
 * and was killed; the standby was promoted and took writes.  The old
 * primary finds its fork point, sets exactly its entries past it aside
 * (listed, exportable), rebuilds its state to it and follows. */
START_TEST(a_former_primary_rejoins_with_a_divergent_tail)
{
    struct engine e;
    char out[4096];
    uint8_t **held = NULL;
    size_t *held_len = NULL;
    uint64_t fork = 0, acked = 0, old_last;
    pid_t primary = start(primary_dir, NULL, min_one, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", serving_b, NULL);

    diverge(&e, sb, &fork, &acked);
    ck_assert_int_eq(WTERMSIG(stop(primary, SIGKILL)), SIGKILL);
    rk_ring_detach(e.r);
    old_last = held_past(fork, &held, &held_len);

    sb = start(standby_dir[0], "standby-a", unreachable_b, NULL);
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}), 0);
    engine_resume(&e, standby_dir[0], acked);
    engine_write(&e, 30);

    pid_t old = start(primary_dir, "old-primary", follow_b, NULL);
    check_rejoined(&e, old, sb, fork, old_last, acked, held, held_len);
}
END_TEST

/* on_higher_epoch = rejoin: a running primary told `fence EPOCH` steps
 * down and, in the same process, becomes a standby of the new primary:
 * it sets aside its divergent tail and follows. */
START_TEST(a_primary_told_of_a_higher_epoch_rejoins_as_a_standby)
{
    struct engine e;
    char out[4096], *reply = NULL, *st;
    uint64_t fork = 0, acked = 0, last_seq;
    pid_t primary = start(primary_dir, NULL, rejoin_b, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", serving_b, NULL);

    diverge(&e, sb, &fork, &acked);
    st = status_of(primary_dir);
    last_seq = json_u64(st, "journal_seq");
    free(st);
    sb = start(standby_dir[0], "standby-a", unreachable_b, NULL);
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}), 0);

    ck_assert_int_eq(node_request(primary_dir, "fence 2", 5000, &reply), 0);
    ck_assert_msg(strcmp(reply, "ok stepped down for epoch 2") == 0, "%s", reply);
    free(reply);
    ck_assert_int_eq(rk_put(e.r, e.tables[0], "k", 1, "v", 1, NULL), RK_EFENCED);
    rk_ring_detach(e.r);
    /* the same process answers as a standby */
    st = wait_rejoined(primary);
    free(st);
    engine_resume(&e, standby_dir[0], acked);
    engine_write(&e, 30);
    free(wait_caught_up_with(standby_dir[0], primary_dir));
    /* it rejoined in the same process: what it set aside is the engine's
     * stream past the fork point (check_rejoined), and it follows */
    check_rejoined(&e, primary, sb, fork, last_seq, acked, NULL, NULL);
    /* started again as a primary after a reboot (its ring gone): refused,
     * although the rebuild to the fork point replaced db/, where the
     * fence used to be kept; it began epoch 3 above the new primary's */
    ring_unlink(ring_name);
    ck_assert_int_eq(exit_status_within(spawn(primary_dir, NULL, min_one, NULL, NULL)), NODE_EXIT_FENCED);
    {
        char err[512];
        store *s = NULL;
        ck_assert_msg(store_open(primary_dir, 0, 16, &s, err, sizeof err) == 0, "%s", err);
        ck_assert_uint_eq(store_epoch_seen(s), 2); /* no epoch begun */
        store_close(s);
    }
}
END_TEST

/* on_higher_epoch = rejoin, the higher epoch in a peer's message: a
 * standby of epoch 3 says HELLO; the primary steps down (its waits end
 * with RK_EFENCED) and the same process goes on as a standby, in epoch 3,
 * of the node its configuration names. */
START_TEST(a_primary_reached_by_a_higher_epoch_rejoins_as_a_standby)
{
    struct engine e;
    char *st = NULL;
    pid_t primary = start(primary_dir, NULL, rejoin_b, NULL), sb;

    engine_attach(&e);
    engine_write(&e, 5);
    set_epoch(standby_dir[1], 3); /* a standby that followed a primary of epoch 3 */
    sb = start(standby_dir[1], "standby-b", NULL, NULL);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), RK_EFENCED);
    rk_ring_detach(e.r);
    st = wait_rejoined(primary);
    ck_assert_uint_ge(json_u64(st, "epoch"), 3);
    free(st);
    ck_assert_int_eq(stop(sb, SIGTERM), 0);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);
}
END_TEST

/* ------------------------------------------------------------ promoted again */

/* The model's state digest at the height model_build was last given: the
 * sum of ckpt_entry_digest() over its entries (persist/apply.h, A5). */
static uint64_t model_digest(void)
{
    uint64_t d = 0;
    char table[4], key[32];

    for (int t = 0; t < 3; t++)
        for (int k = 0; k < KEYS; k++)
            if (model[t][k].present) {
                snprintf(table, sizeof table, "t%d", t);
                uint32_t klen = (uint32_t)snprintf(key, sizeof key, "k%05u", (unsigned)k);
                d += ckpt_entry_digest(table, key, klen, model[t][k].val, model[t][k].vlen);
            }
    return d;
}

/* The table id open_tables gives table t%d on a ring (ids in the order
 * registered): what a frame's id names when the TABLE frame that named it
 * was trimmed from the journal. */
static uint16_t e_tables_of(int t)
{
    return (uint16_t)t;
}

/* The journal of dir (no node running there), read in order from its
 * first entry: every group of producer "eng" it holds is the model's
 * stream at its height, record for record (table, key, value), and
 * heights follow one another up to last_height (journal entries before
 * the first MARK, a group cut by a trim, are not judged). */
static void check_journal_stream(const char *dir, uint64_t last_height)
{
    char err[512], names[RING_MAX_TABLES][RK_NAME_MAX + 1];
    store *s = NULL;
    struct journal_header last = {0};
    uint64_t first = 0, height = 0, n_groups = 0;
    struct op want;
    int pending = 0, started = 0;

    memset(names, 0, sizeof names);
    ck_assert_msg(store_open(dir, 0, 16, &s, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_first(s, &first), 0);
    ck_assert_int_eq(store_journal_last(s, &last), 0);
    for (uint64_t seq = first; seq <= last.seq; seq++) {
        journal_entry je = {0};
        uint8_t *raw = NULL;
        size_t n = 0;
        ck_assert_int_eq(store_journal_get_raw(s, seq, &raw, &n), 0);
        ck_assert_msg(journal_decode(raw, n, &je, err, sizeof err) == 0, "entry %llu: %s",
                      (unsigned long long)seq, err);
        for (uint32_t off = 0; off < je.h.raw_len;) {
            ring_frame f;
            ck_assert_int_eq(frame_decode(je.frames + off, je.h.raw_len - off, &f, NULL, 0), 0);
            off += frame_align(f.raw_len);
            if (f.type == FRAME_TABLE) {
                ck_assert_uint_le(f.klen, RK_NAME_MAX);
                memcpy(names[f.table], f.key, f.klen);
                names[f.table][f.klen] = '\0';
            } else if (f.type == FRAME_ATTACH || f.type == FRAME_ABORT) {
                pending = 0; /* an open group is discarded */
            } else if ((f.type == FRAME_PUT || f.type == FRAME_DEL) && started) {
                char table[4];
                ck_assert_msg(pending < RECORDS_PER_GROUP,
                              "entry %llu (epoch %llu): more than %d records after height %llu",
                              (unsigned long long)seq, (unsigned long long)je.h.epoch, RECORDS_PER_GROUP,
                              (unsigned long long)height);
                make_op(height + 1, pending, &want);
                snprintf(table, sizeof table, "t%d", want.table);
                ck_assert_msg((f.type == FRAME_DEL) == want.del &&
                                  (names[f.table][0] ? strcmp(names[f.table], table) == 0
                                                     : f.table == e_tables_of(want.table)) &&
                                  f.klen == want.klen && memcmp(f.key, want.key, f.klen) == 0 &&
                                  (want.del || (f.vlen == want.vlen && memcmp(f.val, want.val, f.vlen) == 0)),
                              "entry %llu (epoch %llu, LSN %llu): record %d of height %llu is not the one "
                              "acknowledged at that height",
                              (unsigned long long)seq, (unsigned long long)je.h.epoch,
                              (unsigned long long)f.lsn, pending, (unsigned long long)height + 1);
                pending++;
            } else if (f.type == FRAME_MARK) {
                uint64_t h = 0;
                ck_assert_uint_eq(f.vlen, 8);
                for (int b = 7; b >= 0; b--)
                    h = h << 8 | f.val[b];
                if (started) {
                    ck_assert_msg(
                        h == height + 1 && pending == RECORDS_PER_GROUP,
                        "entry %llu (epoch %llu, LSN %llu): MARK %llu with %d records, after height "
                        "%llu",
                        (unsigned long long)seq, (unsigned long long)je.h.epoch, (unsigned long long)f.lsn,
                        (unsigned long long)h, pending, (unsigned long long)height);
                    n_groups++;
                }
                started = 1;
                height = h;
                pending = 0;
            }
        }
        journal_entry_free(&je);
        free(raw);
    }
    store_close(s);
    ck_assert_uint_eq(height, last_height);
    ck_assert_uint_gt(n_groups, 0);
}

/* Waits until the primary on dir has applied the group whose MARK is at
 * lsn and all it journaled; returns its state digest then, from a status
 * asked for after that one (the apply thread stores the digest just after
 * applied_lsn, so the status that shows the MARK applied may hold the
 * digest before it). */
static uint64_t applied_digest(const char *dir, uint64_t lsn)
{
    for (int i = 0; i < BOUND_S * 100; i++) {
        char *st = status_of(dir);
        uint64_t seq = json_u64(st, "journal_seq");
        int done = st && seq && json_u64(st, "applied_seq") == seq && json_u64(st, "applied_lsn") >= lsn;
        free(st);
        if (done) {
            st = status_of(dir);
            uint64_t d = json_u64(st, "state_digest");
            ck_assert_msg(st && json_u64(st, "applied_lsn") >= lsn, "%s", st ? st : "");
            free(st);
            return d;
        }
        usleep(10000);
    }
    ck_abort_msg("%s did not apply what it journaled", dir);
    return 0;
}

/* rk_wait(RK_REPLICATED) for the engine's last record on the primary on
 * dir, which its standby on sb_dir is to acknowledge; on failure both
 * statuses are in the message. */
static void wait_replicated_on(struct engine *e, const char *dir, const char *sb_dir)
{
    int rc = rk_wait(e->r, e->lsn, RK_REPLICATED, BOUND_S * 1000);
    if (rc) {
        char *a = status_of(dir), *b = status_of(sb_dir);
        ck_abort_msg("rk_wait(RK_REPLICATED, LSN %llu): %s; primary: %s; standby: %s", (unsigned long long)e->lsn,
                     rk_strerror(rc), a ? a : "(no answer)", b ? b : "(no answer)");
    }
}

/* Waits until the primary on dir has applied all it journaled.  Before
 * it hangs: a node started again on a journal it had not all applied,
 * as a standby that must adopt a higher epoch at once, was seen (twice in
 * full-suite runs, never alone) to stop following with apply stuck
 * (applied_seq 2 of 8, never welcomed again), which is not what these
 * tests are about. */
static void wait_all_applied(const char *dir)
{
    for (int i = 0;; i++) {
        char *st = status_of(dir);
        uint64_t seq = json_u64(st, "journal_seq");
        int done = st && seq && json_u64(st, "applied_seq") == seq;
        ck_assert_msg(done || i < BOUND_S * 100, "%s does not apply: %s", dir, st ? st : "");
        free(st);
        if (done)
            return;
        usleep(10000);
    }
}

/* P's configuration as S's standby: its own ring and endpoints (once
 * promoted again), S's as its primary's. */
#define P_AS_STANDBY                                                                                         \
    {                                                                                                        \
        "ring", "name", ring_name, "ring", "capacity", "1M", "replication", "publish", publish_ep,           \
            "replication", "serve", serve_ep, "replication", "primary_publish", publish_b, "replication",    \
            "primary_serve", serve_b, NULL                                                                   \
    }

/* The end of both: P (pid p, on primary_dir, S's standby holding the
 * acked groups) is promoted after S (pid s) is SIGKILLed; the engine
 * restores exactly height acked and writes 20 groups on P's new ring; P's
 * state digest, journal (every height the model's bytes) and state are
 * the model's; watch, left attached to the ring P made as a primary, gets
 * RK_EFENCED. */
static void promote_p_again(struct engine *e, pid_t s, pid_t p, rk_ring *watch, uint64_t acked)
{
    char out[4096];
    uint64_t digest;

    ck_assert_int_eq(WTERMSIG(stop(s, SIGKILL)), SIGKILL);
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", primary_dir, NULL}), 0);
    ck_assert_msg(strstr(out, "is the primary, epoch 3"), "ringkeep promote printed: %s", out);
    e->height = restored_height(primary_dir, acked);
    ck_assert_msg(e->height == acked,
                  "P restored height %llu; %llu were acknowledged and nothing more written",
                  (unsigned long long)e->height, (unsigned long long)acked);
    engine_attach(e);
    e->height = acked;
    engine_write(e, 20);
    rk_ring_detach(e->r);
    digest = applied_digest(primary_dir, e->lsn);
    model_build(e->height);
    ck_assert_msg(digest == model_digest(), "P's state digest %016llx, the model's %016llx",
                  (unsigned long long)digest, (unsigned long long)model_digest());
    ck_assert_int_eq(WTERMSIG(stop(p, SIGKILL)), SIGKILL); /* no last checkpoint trims the journal */
    check_journal_stream(primary_dir, e->height);
    check_state(primary_dir, e->height);
    ck_assert_int_eq(rk_mark(watch, 1, NULL), RK_EFENCED); /* the ring P left was fenced */
    rk_ring_detach(watch);
}

/* A directory that was primary, followed the node promoted in its place
 * and is promoted again takes nothing from the ring it left (d4eedf9):
 * P (ring_name) and S hold 30 groups acknowledged RK_REPLICATED; P hangs
 * (SIGSTOP) and the engine writes 100 groups of another stream into P's
 * ring that P never journals, then P is SIGKILLed; S is promoted (epoch
 * 2) and the restarted engine writes 20 groups there (fewer bytes of LSN
 * than those 100); P starts again as S's standby (its journal is a prefix
 * of S's: no rebuild, its meta.db keeps its ring record) and acknowledges
 * them; S is SIGKILLed and P promoted (epoch 3): a producer still attached
 * to P's old ring gets RK_EFENCED, the engine restores exactly the height
 * acknowledged and writes 20 groups on P.  P's journal then holds every
 * acknowledged height with the model's bytes, its state is the model's,
 * and its state digest the model's.  With the old ring taken over, the
 * lost stream's frames past the journal's next LSN are drained into
 * epoch 3. */
START_TEST(promoted_again_takes_nothing_from_the_ring_it_left)
{
    struct engine e;
    rk_ring *watch = NULL;
    rk_ring_opts wo = {.producer = "watch"};
    char out[4096], *st = NULL;
    uint64_t acked, lost_lsn;
    const char *const s_cfg[] = {"ring",        "name",         ring_b,    "ring",        "capacity", "1M",
                                 "replication", "publish",      publish_b, "replication", "serve",    serve_b,
                                 "replication", "min_replicas", "1",       NULL};
    const char *const p_cfg[] = P_AS_STANDBY;
    pid_t p = start(primary_dir, NULL, min_one, NULL);
    pid_t s = start(standby_dir[0], "standby-a", s_cfg, NULL);

    engine_attach(&e);
    ck_assert_int_eq(rk_ring_attach(ring_name, &wo, &watch), 0); /* an engine that writes no more */
    engine_write(&e, 30);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    acked = e.height;
    free(wait_caught_up(standby_dir[0]));
    wait_all_applied(primary_dir);
    ck_assert_int_eq(kill(p, SIGSTOP), 0);
    engine_put_groups(&e, 1, 100); /* never journaled: P hangs */
    lost_lsn = e.lsn;
    ck_assert_int_eq(WTERMSIG(stop(p, SIGKILL)), SIGKILL);
    rk_ring_detach(e.r); /* the engine restarts */

    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}),
                     0);
    ck_assert_msg(strstr(out, "is the primary, epoch 2"), "ringkeep promote printed: %s", out);
    engine_resume(&e, standby_dir[0], acked);
    ck_assert_uint_eq(e.height, acked);
    engine_write(&e, 20);
    ck_assert_uint_lt(e.lsn, lost_lsn); /* the lost frames reach past what epoch 2 wrote */

    p = start(primary_dir, "old-primary", p_cfg, NULL);
    wait_replicated_on(&e, standby_dir[0], primary_dir); /* P holds it */
    acked = e.height;
    rk_ring_detach(e.r);
    st = wait_caught_up_with(standby_dir[0], primary_dir);
    ck_assert_msg(json_u64(st, "set_aside_runs") == 0, "P was rebuilt: %s", st);
    free(st);
    promote_p_again(&e, s, p, watch, acked);
}
END_TEST

/* The same after P's rebuild: P journals 25 groups (RK_DURABLE) that S,
 * stopped, never gets (diverge), hangs while the engine writes 100 more
 * into its ring, and is SIGKILLed; S is promoted and takes 20 groups; P,
 * started as S's standby, sets aside its entries past the fork point and
 * rebuilds its state to it (the new meta.db keeps its ring record, and
 * STORE_RING_MADE_FILE stays: checked while P is stopped once), then
 * acknowledges them.  Promoted, P fences and replaces the ring it left,
 * as promote_p_again checks.  (Before, the promotion was refused: "ring
 * was not made by this data directory's node".) */
START_TEST(rebuilt_former_primary_promoted_again_replaces_the_ring_it_left)
{
    struct engine e;
    rk_ring *watch = NULL;
    rk_ring_opts wo = {.producer = "watch"};
    char out[4096], err[512], *st = NULL;
    uint64_t fork = 0, acked = 0, acked_seq = 0;
    store *ps = NULL;
    struct store_ring_record rec;
    const char *const p_cfg[] = P_AS_STANDBY;
    const char *const s_cfg[] = {
        "ring",        "name",          ring_b,    "ring",        "capacity",        "1M",
        "replication", "publish",       publish_b, "replication", "serve",           serve_b,
        "replication", "min_replicas",  "1",       "replication", "primary_publish", publish_b,
        "replication", "primary_serve", serve_b,   NULL};
    pid_t p = start(primary_dir, NULL, min_one, NULL);
    pid_t s = start(standby_dir[0], "standby-a", serving_b, NULL);

    diverge(&e, s, &fork, &acked);
    ck_assert_int_eq(rk_ring_attach(ring_name, &wo, &watch), 0);
    wait_all_applied(primary_dir);
    ck_assert_int_eq(kill(p, SIGSTOP), 0);
    engine_put_groups(&e, 1, 100); /* never journaled: P hangs */
    ck_assert_int_eq(WTERMSIG(stop(p, SIGKILL)), SIGKILL);
    rk_ring_detach(e.r);

    s = start(standby_dir[0], "standby-a", s_cfg, NULL); /* finds no primary */
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}),
                     0);
    ck_assert_msg(strstr(out, "is the primary, epoch 2"), "ringkeep promote printed: %s", out);
    engine_resume(&e, standby_dir[0], acked);
    ck_assert_uint_eq(e.height, acked);
    engine_write(&e, 20);

    p = start(primary_dir, "old-primary", p_cfg, NULL);
    wait_replicated_on(&e, standby_dir[0], primary_dir); /* P holds it */
    acked = e.height;
    rk_ring_detach(e.r);
    st = wait_caught_up_with(standby_dir[0], primary_dir);
    ck_assert_msg(json_u64(st, "set_aside_runs") == 1, "P was not rebuilt: %s", st);
    acked_seq = json_u64(st, "journal_seq");
    free(st);
    ck_assert_int_eq(stop(p, SIGTERM), 0);
    ck_assert_msg(store_open(primary_dir, 0, 16, &ps, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_ring_record(ps, &rec), 0); /* the rebuild keeps it (b35a61f) */
    ck_assert_str_eq(rec.name, ring_name);
    ck_assert_int_eq(store_ring_made_read(ps, &rec, err, sizeof err), 0); /* and ring.json stays */
    ck_assert_str_eq(rec.name, ring_name);
    store_close(ps);
    p = start(primary_dir, "old-primary", p_cfg, NULL);
    for (int i = 0;; i++) { /* it holds all again and follows (no digest compared before S writes) */
        st = status_of(primary_dir);
        if (st && status_true(st, "connected") && json_u64(st, "applied_seq") == acked_seq &&
            json_u64(st, "acked_seq") == acked_seq)
            break;
        ck_assert_msg(i < BOUND_S * 100, "P does not follow S again: %s", st ? st : "");
        free(st);
        usleep(10000);
    }
    free(st);

    promote_p_again(&e, s, p, watch, acked);
}
END_TEST

/* ------------------------------------------------------------ kills around a promotion */

/* The standby being promoted is SIGKILLed: round 0 as soon as it has
 * accepted `promote` (the promotion under way), round 1 once it answers
 * as the primary and the engine wrote there (10 groups acknowledged, 5
 * more not waited for).  Started again as a standby and promoted, it
 * holds every group acknowledged (on the old primary, RK_REPLICATED; on
 * it, RK_DURABLE with min_replicas 0): the engine restores at least that
 * height and carries on; the journal holds every height with the model's
 * bytes; state and digest are the model's. */
START_TEST(standby_killed_while_promoted_keeps_every_acknowledged_group)
{
    struct engine e;
    char out[4096], *reply = NULL;
    uint64_t acked, h, digest;
    pid_t p = start(primary_dir, NULL, min_one, NULL);
    pid_t s = start(standby_dir[0], "standby-a", serving_b, NULL);

    engine_attach(&e);
    engine_write(&e, 30);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    acked = e.height;
    rk_ring_detach(e.r);
    ck_assert_int_eq(WTERMSIG(stop(p, SIGKILL)), SIGKILL);

    if (_i == 0) {
        ck_assert_int_eq(node_request(standby_dir[0], "promote", 5000, &reply), 0);
        ck_assert_msg(strncmp(reply, "ok promoting", 12) == 0, "%s", reply);
        free(reply);
        ck_assert_int_eq(WTERMSIG(stop(s, SIGKILL)), SIGKILL);
    } else {
        ck_assert_int_eq(
            run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}), 0);
        engine_resume(&e, standby_dir[0], acked);
        engine_write(&e, 10);
        acked = e.height; /* durable: min_replicas 0 on it */
        engine_put_groups(&e, 0, 5);
        ck_assert_int_eq(WTERMSIG(stop(s, SIGKILL)), SIGKILL);
        rk_ring_detach(e.r);
    }

    s = start(standby_dir[0], "standby-a", unreachable_b, NULL);
    ck_assert_int_eq(run_cli(out, sizeof out, (const char *const[]){"promote", "-d", standby_dir[0], NULL}),
                     0);
    ck_assert_msg(strstr(out, "is the primary, epoch"), "ringkeep promote printed: %s", out);
    h = restored_height(standby_dir[0], acked);
    engine_attach_to(&e, ring_b);
    e.height = h;
    engine_write(&e, 10);
    rk_ring_detach(e.r);
    digest = applied_digest(standby_dir[0], e.lsn);
    model_build(e.height);
    ck_assert_msg(digest == model_digest(), "the state digest %016llx, the model's %016llx",
                  (unsigned long long)digest, (unsigned long long)model_digest());
    ck_assert_int_eq(WTERMSIG(stop(s, SIGKILL)), SIGKILL);
    check_journal_stream(standby_dir[0], e.height);
    check_state(standby_dir[0], e.height);
}
END_TEST

/* Two standbys, the primary SIGKILLed; standby-b is SIGKILLed as soon as
 * standby-a has accepted `promote`.  Started again (given both nodes'
 * endpoints), standby-b follows standby-a by itself and acknowledges what
 * the engine writes there (RK_REPLICATED, min_replicas 1); both journals
 * end byte-identical and hold every acknowledged group with the model's
 * bytes; standby-b's state is the model's. */
START_TEST(other_standby_killed_during_a_promotion_follows_the_new_primary)
{
    struct engine e;
    struct cluster_eps c;
    char *reply = NULL;
    uint64_t acked;

    cluster_eps(&c, "1");
    pid_t p = start(primary_dir, NULL, min_one, NULL);
    pid_t a = start(standby_dir[0], "standby-a", c.a_cfg, NULL);
    pid_t b = start(standby_dir[1], "standby-b", c.b_cfg, NULL);

    engine_attach(&e);
    engine_write(&e, 30);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    acked = e.height;
    rk_ring_detach(e.r);
    free(wait_caught_up(standby_dir[0]));
    free(wait_caught_up(standby_dir[1]));
    ck_assert_int_eq(WTERMSIG(stop(p, SIGKILL)), SIGKILL);

    ck_assert_int_eq(node_request(standby_dir[0], "promote", 5000, &reply), 0);
    ck_assert_msg(strncmp(reply, "ok promoting", 12) == 0, "%s", reply);
    free(reply);
    ck_assert_int_eq(WTERMSIG(stop(b, SIGKILL)), SIGKILL);
    wait_status(standby_dir[0], "\"role\":\"primary\"");

    engine_resume(&e, standby_dir[0], acked);
    engine_write(&e, 20);
    b = start(standby_dir[1], "standby-b", c.b_cfg, NULL);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0); /* standby-b holds it */
    rk_ring_detach(e.r);
    free(wait_caught_up_with(standby_dir[0], standby_dir[1]));
    ck_assert_int_eq(WTERMSIG(stop(a, SIGKILL)), SIGKILL); /* no last checkpoint trims its journal */
    ck_assert_int_eq(stop(b, SIGTERM), 0);
    check_journal_of(standby_dir[0], standby_dir[1]);
    check_journal_stream(standby_dir[0], e.height);
    check_state(standby_dir[1], e.height);
}
END_TEST

/* ------------------------------------------------------------ the standbys' apply lag */

/* Member key of the object for standby id in json's "standbys" (a
 * primary's status); *present 0 when the standby is not listed or the
 * member is not an integer (null: its ACKs say nothing of its apply). */
static uint64_t standby_member(const char *json, const char *id, const char *key, int *present)
{
    json_t *st = json ? json_loads(json, 0, NULL) : NULL, *sb;
    size_t i;
    uint64_t v = 0;

    *present = 0;
    json_array_foreach(json_object_get(st, "standbys"), i, sb)
    {
        json_t *m = json_object_get(sb, key);
        if (json_is_string(json_object_get(sb, "id")) &&
            strcmp(json_string_value(json_object_get(sb, "id")), id) == 0 && json_is_integer(m)) {
            v = (uint64_t)json_integer_value(m);
            *present = 1;
        }
    }
    json_decref(st);
    return v;
}

#define LAG_GROUPS 800   /* 9600 records: 700 or so entries of at most 16 frames */
#define LAG_SLOW_MS "10" /* the standby's apply: 10 ms more per entry (100 entries/s at most) */
#define LAG_BOUND_ENTRIES                                                                                    \
    120 /* max_lag_ms 200 is 20 entries of that apply: 6 times it, with the                                  \
           entries journaled before an ACK tells the primary */

/* Issue 13.7: with min_replicas = 1, a standby whose apply is slow
 * (RK_TEST_APPLY_SLOW_MS: 10 ms per entry) while the engine writes
 * unpaced: the standby reports its apply lag in its ACKs, and the primary
 * holds its drain (the ring's back-pressure) while it is more than
 * max_lag_ms of apply work, so the standby's journal never runs more than
 * about that far ahead of its apply.  Before, the primary journaled at
 * its own pace and the standby's apply fell hundreds of entries behind
 * (its lag grew as long as the writes went on).  Every record written is
 * replicated and on both nodes afterwards.  Asserted on entries seen in
 * the standby's status, never on time. */
START_TEST(standby_apply_lag_stays_within_max_lag_ms)
{
    static const char *const extra[] = {"replication", "min_replicas",  "1",  "apply", "max_lag_ms", "200",
                                        "drain",       "batch_records", "16", NULL};
    struct engine e;
    uint64_t max_lag = 0, samples = 0, final_seq = 0;
    int present = 0, held_seen = 0;
    pid_t primary = start(primary_dir, NULL, extra, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, "RK_TEST_APPLY_SLOW_MS=" LAG_SLOW_MS);

    engine_attach(&e);
    for (uint64_t written = 0; written < LAG_GROUPS; written += 20) {
        engine_put_groups(&e, 0, 20); /* waits only for ring space */
        char *st = status_of(standby_dir[0]), *stp = status_of(primary_dir);
        uint64_t journal = json_u64(st, "journal_seq"), applied = json_u64(st, "applied_seq");
        if (journal > applied && journal - applied > max_lag)
            max_lag = journal - applied;
        held_seen |= status_true(stp, "drain_held_for_standby_apply");
        samples++;
        free(st);
        free(stp);
    }
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    /* then until the standby's apply has caught up with everything */
    for (int i = 0; i < BOUND_S * 100; i++) {
        char *st = status_of(standby_dir[0]), *stp = status_of(primary_dir);
        uint64_t journal = json_u64(st, "journal_seq"), applied = json_u64(st, "applied_seq");
        if (journal > applied && journal - applied > max_lag)
            max_lag = journal - applied;
        held_seen |= status_true(stp, "drain_held_for_standby_apply");
        final_seq = json_u64(stp, "journal_seq");
        samples++;
        int done = final_seq && applied == final_seq;
        free(st);
        free(stp);
        if (done)
            break;
        usleep(10000);
    }
    char *stp = status_of(primary_dir);
    ck_assert_msg(max_lag <= LAG_BOUND_ENTRIES,
                  "the standby's apply fell %llu entries behind its journal (bound %d; %llu samples): %s",
                  (unsigned long long)max_lag, LAG_BOUND_ENTRIES, (unsigned long long)samples,
                  stp ? stp : "");
    /* the mechanism was what bounded it: the drain was held for it, and
     * the primary lists the standby's apply as its ACKs report it */
    ck_assert_msg(held_seen || json_u64(stp, "drain_holds_for_standby_apply") > 0, "%s", stp ? stp : "");
    ck_assert_msg(standby_member(stp, "standby-a", "applied_seq", &present) <= final_seq && present, "%s",
                  stp ? stp : "");
    standby_member(stp, "standby-a", "apply_lag_ms", &present);
    ck_assert_msg(present, "%s", stp ? stp : "");
    free(stp);
    detach_catch_up_and_check(&e, sb, primary);
    check_state(primary_dir, e.height);
}
END_TEST

/* A counted standby whose apply is held (RK_TEST_APPLY_GATE, from its
 * start: its lag is then the age of its oldest entry not applied) holds the
 * primary's drain once that is past max_lag_ms: records written after stay
 * in the ring, not durable.  Once that standby is gone (SIGKILL: its
 * connection closes) nothing holds the drain: they become durable.  The
 * standby started again without the gate catches up: every record on
 * both. */
START_TEST(a_gone_standby_no_longer_holds_the_drain)
{
    static const char *const extra[] = {"replication", "min_replicas", "1", "apply", "max_lag_ms", "200", NULL};
    struct engine e;
    char gate[300], env[320], *stp = NULL;
    int held = 0;

    snprintf(gate, sizeof gate, "%s.gate", standby_dir[0]);
    snprintf(env, sizeof env, "RK_TEST_APPLY_GATE=%s", gate);
    set_gate(gate, NULL);
    pid_t primary = start(primary_dir, NULL, extra, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, env);

    engine_attach(&e);
    for (int i = 0; i < BOUND_S * 100 && !held; i++) {
        engine_put_groups(&e, 0, 1);
        usleep(10000);
        free(stp);
        stp = status_of(primary_dir);
        held = status_true(stp, "drain_held_for_standby_apply");
    }
    ck_assert_msg(held, "%s", stp ? stp : "");
    free(stp);
    /* held: 50 groups more stay in the ring once the drain waits (it takes
     * at most the batch in hand, 64 frames, before it does): the last MARK
     * is not durable (R6: every frame at or below durable_lsn is) */
    engine_put_groups(&e, 0, 50);
    stp = NULL;
    for (int i = 0; i < BOUND_S * 100 && !status_true(stp, "drain_waiting"); i++) {
        free(stp);
        usleep(10000);
        stp = status_of(primary_dir);
    }
    ck_assert_msg(status_true(stp, "drain_waiting") && json_u64(stp, "durable_lsn") < e.lsn &&
                      status_true(stp, "drain_held_for_standby_apply"),
                  "last MARK at %llu: %s", (unsigned long long)e.lsn, stp ? stp : "");
    free(stp);
    ck_assert_int_eq(WTERMSIG(stop(sb, SIGKILL)), SIGKILL);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_DURABLE, BOUND_S * 1000), 0);
    sb = start(standby_dir[0], "standby-a", NULL, NULL);
    ck_assert_int_eq(rk_wait(e.r, e.lsn, RK_REPLICATED, BOUND_S * 1000), 0);
    detach_catch_up_and_check(&e, sb, primary);
    check_state(primary_dir, e.height);
}
END_TEST

/* With min_replicas = 0 no standby is needed for the primary to go on:
 * a standby whose apply is held (RK_TEST_APPLY_GATE) far past max_lag_ms
 * is reported (its ACKs' apply_lag_ms, in the primary's status), never
 * waited for: everything written becomes durable on the primary. */
START_TEST(standby_apply_lag_only_reported_without_min_replicas)
{
    static const char *const extra[] = {"apply", "max_lag_ms", "200", NULL};
    struct engine e;
    char gate[300], env[320], *stp = NULL;
    int present = 0;
    uint64_t lag_ms = 0;

    snprintf(gate, sizeof gate, "%s.gate", standby_dir[0]);
    snprintf(env, sizeof env, "RK_TEST_APPLY_GATE=%s", gate);
    set_gate(gate, NULL);
    pid_t primary = start(primary_dir, NULL, extra, NULL);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, env);

    engine_attach(&e);
    engine_write(&e, 100);
    /* until the primary hears of an apply lag past max_lag_ms */
    for (int i = 0; i < BOUND_S * 100 && lag_ms <= 200; i++) {
        free(stp);
        stp = status_of(primary_dir);
        lag_ms = standby_member(stp, "standby-a", "apply_lag_ms", &present);
        if (lag_ms <= 200) {
            engine_write(&e, 1); /* an entry more: an ACK more */
            usleep(10000);
        }
    }
    ck_assert_msg(lag_ms > 200, "%s", stp ? stp : "");
    free(stp);
    engine_write(&e, 100); /* RK_DURABLE: the drain goes on */
    stp = status_of(primary_dir);
    ck_assert_msg(!status_true(stp, "drain_held_for_standby_apply") &&
                      json_u64(stp, "drain_holds_for_standby_apply") == 0,
                  "%s", stp ? stp : "");
    free(stp);
    set_gate(gate, "");
    detach_catch_up_and_check(&e, sb, primary);
}
END_TEST

/* Issue 13.6: a primary publishes an entry while its own fsync of it
 * runs, so a power cut there leaves a standby holding an entry seq that
 * the primary lost and then writes anew.  RK_TEST_FORGE_ENTRY makes the
 * primary publish one entry as another valid encoding of the same
 * frames, which is what such a standby holds; the entries after it say
 * they follow the primary's own.  The standby must take none of them on
 * top of its copy: it sets its copy aside (set-aside/, the bytes it
 * held), rebuilds its state to the entry before, fetches the primary's,
 * and its journal ends byte for byte the primary's. */
START_TEST(standby_never_appends_to_an_entry_the_primary_does_not_hold)
{
    char forge_file[300], env[360], path[700] = "";
    struct engine e;

    snprintf(forge_file, sizeof forge_file, "%s.forge", primary_dir);
    snprintf(env, sizeof env, "RK_TEST_FORGE_ENTRY=%s", forge_file);
    pid_t primary = start(primary_dir, NULL, NULL, env);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);

    engine_attach(&e);
    engine_write(&e, 40);
    free(wait_caught_up(standby_dir[0]));
    touch(forge_file);
    wait_forged(forge_file, &e);
    engine_write(&e, 40);
    char *st = wait_caught_up(standby_dir[0]);
    ck_assert_msg(json_u64(st, "entries_not_following") >= 1, "%s", st);
    ck_assert_msg(json_u64(st, "set_aside_runs") == 1, "%s", st);
    free(st);
    rk_ring_detach(e.r);
    /* both killed: a clean stop would trim the journals after a
     * checkpoint.  The standby's journal is the primary's, byte for byte,
     * its state the model's */
    ck_assert_int_eq(WTERMSIG(stop(sb, SIGKILL)), SIGKILL);
    ck_assert_int_eq(WTERMSIG(stop(primary, SIGKILL)), SIGKILL);
    check_same_journal(standby_dir[0]);
    check_state(standby_dir[0], e.height);

    /* what it held is in set-aside/: one entry, not the bytes its journal
     * holds there now (the primary's, fetched), the same frames */
    one_entries_file(standby_dir[0], path, sizeof path);
    unsigned long long from = 0, to = 0;
    ck_assert_int_eq(sscanf(strrchr(path, '/') + 1, "entries-%llu-%llu-", &from, &to), 2);
    ck_assert_uint_eq(from, to);
    uint8_t prefix[4], *held, **ours = NULL;
    size_t *ours_len = NULL;
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fread(prefix, 1, 4, f), 4);
    size_t len =
        (size_t)prefix[0] | (size_t)prefix[1] << 8 | (size_t)prefix[2] << 16 | (size_t)prefix[3] << 24;
    held = malloc(len);
    ck_assert_ptr_nonnull(held);
    ck_assert_int_eq(fread(held, 1, len, f), len);
    ck_assert_int_eq(fgetc(f), EOF);
    fclose(f);
    journal_raw(standby_dir[0], from, from, &ours, &ours_len);
    ck_assert_msg(ours_len[0] != len || memcmp(ours[0], held, len) != 0,
                  "the entry set aside is the primary's own");
    journal_entry a = {0}, b = {0};
    char why[256];
    ck_assert_msg(journal_decode(held, len, &a, why, sizeof why) == 0, "%s", why);
    ck_assert_msg(journal_decode(ours[0], ours_len[0], &b, why, sizeof why) == 0, "%s", why);
    ck_assert_uint_eq(a.h.raw_len, b.h.raw_len);
    ck_assert_int_eq(memcmp(a.frames, b.frames, a.h.raw_len), 0);
    journal_entry_free(&a);
    journal_entry_free(&b);
    free(held);
    free(ours[0]);
    free(ours);
    free(ours_len);
    unlink(forge_file);
}
END_TEST

/* The same after a real power cut (crashsim): the primary publishes an
 * entry, a standby stores and acknowledges it, and the primary's host
 * loses power before the primary's own fsync of it (the hook
 * RK_TEST_CUT_AFTER_PUBLISH).  The primary comes back without that entry
 * and its ring (RAM is gone), and an engine writes anew.  The standby,
 * which kept running, holds exactly one entry more than the primary did:
 * it sets that one aside and ends with the primary's journal, byte for
 * byte, and its state (the digests compared at the primary's last
 * entry). */
START_TEST(standby_holding_an_entry_its_primary_lost_in_a_power_cut_sets_it_aside)
{
    char cut_file[300], env[360], err[512];
    struct engine e;
    struct journal_header last;
    store *st = NULL;
    int status = 0;

    snprintf(cut_file, sizeof cut_file, "%s.cut", primary_dir);
    snprintf(env, sizeof env, "RK_TEST_CUT_AFTER_PUBLISH=%s", cut_file);
    /* armed, with a cut at a call it never reaches: the hook cuts */
    ck_assert_int_eq(setenv("RK_CRASHSIM", "at:2000000000", 1), 0);
    pid_t primary = start(primary_dir, NULL, NULL, env);
    ck_assert_int_eq(unsetenv("RK_CRASHSIM"), 0);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);

    engine_attach(&e);
    engine_write(&e, 40);
    free(wait_caught_up(standby_dir[0]));
    touch(cut_file);
    for (int i = 0; waitpid(primary, &status, WNOHANG) == 0; i++) {
        ck_assert_msg(i < BOUND_S * 100, "the primary's power was never cut");
        engine_put_groups(&e, 0, 1);
        usleep(10000);
    }
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the primary ended with status %d", status);
    unlink(cut_file);
    rk_ring_detach(e.r);
    ring_unlink(ring_name); /* the power cut took the RAM */

    /* the primary lost its last entry; the standby holds it */
    ck_assert_msg(store_open(primary_dir, 0, 16, &st, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(store_journal_last(st, &last), 0);
    store_close(st);
    char *sbs = status_of(standby_dir[0]);
    ck_assert_msg(sbs && json_u64(sbs, "journal_seq") == last.seq + 1, "primary's last %llu; the standby's %s",
                  (unsigned long long)last.seq, sbs ? sbs : "");
    free(sbs);

    /* back, without it; an engine writes again */
    primary = start(primary_dir, NULL, NULL, NULL);
    rk_ring_opts opts = {.producer = "eng2", .full_timeout_ms = 0};
    rk_ring *r = NULL;
    uint16_t tables[3];
    uint64_t lsn = 0;
    ck_assert_int_eq(rk_ring_attach(ring_name, &opts, &r), 0);
    ck_assert_int_eq(open_tables(r, 3, tables), 0);
    for (uint64_t g = 1; g <= 200; g++) {
        char key[32];
        uint32_t klen = (uint32_t)snprintf(key, sizeof key, "after-%llu", (unsigned long long)g);
        ck_assert_int_eq(rk_put(r, tables[g % 3], key, klen, "v", 1, NULL), 0);
        ck_assert_int_eq(rk_mark(r, g, &lsn), 0);
        if (g % 20 == 0) {
            ck_assert_int_eq(rk_wait(r, lsn, RK_DURABLE, BOUND_S * 1000), 0);
            usleep(2000);
        }
    }
    ck_assert_int_eq(rk_wait(r, lsn, RK_DURABLE, BOUND_S * 1000), 0);
    rk_ring_detach(r);
    char *stj = wait_caught_up(standby_dir[0]);
    ck_assert_msg(json_u64(stj, "set_aside_runs") == 1, "%s", stj);
    free(stj);

    /* both killed (a clean stop trims journals): the standby's journal is
     * the primary's byte for byte, and the entry set aside is its last
     * one of before */
    ck_assert_int_eq(WTERMSIG(stop(sb, SIGKILL)), SIGKILL);
    ck_assert_int_eq(WTERMSIG(stop(primary, SIGKILL)), SIGKILL);
    check_same_journal(standby_dir[0]);
    char path[700] = "", want[64];
    snprintf(want, sizeof want, "/entries-%llu-%llu-", (unsigned long long)(last.seq + 1),
             (unsigned long long)(last.seq + 1));
    one_entries_file(standby_dir[0], path, sizeof path);
    ck_assert_msg(strstr(path, want) != NULL, "%s is not %s*", path, want);
}
END_TEST

/* The primary no longer holds the standby's last entry, but holds the one
 * after it: HELLO cannot compare the entries, and an epoch no longer
 * tells (an entry published before the fsync and lost has the epoch of
 * the one written anew).  The journal trim recorded the XXH64 of the last
 * entry it removed; a standby whose last entry is another is not counted
 * and bootstraps instead of following on from it.  The standby holds a
 * forged copy of entry L+1 (RK_TEST_FORGE_ENTRY), is held there
 * (RK_TEST_JOURNAL_GATE) while the primary goes on and trims below L+2
 * (what the standby still needs), then restarts. */
START_TEST(standby_whose_last_entry_was_trimmed_is_compared_with_the_trim_record)
{
    static const char *const extra[] = {"checkpoint", "every_seconds", "0", NULL};
    char forge_file[300], env[360], gate[300], genv[360], limit[32];
    struct engine e;
    uint8_t **forged = NULL;
    size_t *forged_len = NULL;

    snprintf(forge_file, sizeof forge_file, "%s.forge", primary_dir);
    snprintf(env, sizeof env, "RK_TEST_FORGE_ENTRY=%s", forge_file);
    snprintf(gate, sizeof gate, "%s.gate", standby_dir[0]);
    snprintf(genv, sizeof genv, "RK_TEST_JOURNAL_GATE=%s", gate);
    set_gate(gate, "");
    pid_t primary = start(primary_dir, NULL, extra, env);
    pid_t sb = start(standby_dir[0], "standby-a", NULL, genv);

    engine_attach(&e);
    engine_write(&e, 40);
    char *st = wait_caught_up(standby_dir[0]);
    uint64_t last = json_u64(st, "journal_seq");
    free(st);
    /* the next entry, L+1, is forged; the standby may hold no more */
    snprintf(limit, sizeof limit, "%llu", (unsigned long long)(last + 1));
    set_gate(gate, limit);
    touch(forge_file);
    engine_write(&e, 1);
    wait_forged(forge_file, NULL); /* published after the fsync: maybe a little later */
    for (int i = 0;; i++) {
        st = status_of(standby_dir[0]);
        uint64_t held = st ? json_u64(st, "acked_seq") : 0;
        free(st);
        if (held == last + 1)
            break;
        ck_assert_msg(i < BOUND_S * 100, "the standby never held entry %llu", (unsigned long long)(last + 1));
        usleep(10000);
    }
    /* the primary goes on and trims below L+2, which the standby needs */
    engine_write(&e, 40);
    checkpoint_now();
    for (int i = 0;; i++) {
        char *p = status_of(primary_dir);
        uint64_t below = p ? json_u64(p, "journal_trimmed_below") : 0;
        free(p);
        if (below == last + 2)
            break;
        ck_assert_msg(i < BOUND_S * 100, "the primary did not trim below %llu", (unsigned long long)(last + 2));
        usleep(10000);
    }
    ck_assert_int_eq(WTERMSIG(stop(sb, SIGKILL)), SIGKILL);
    journal_raw(standby_dir[0], last + 1, last + 1, &forged, &forged_len);

    /* back without the gate: not counted on its last entry, it bootstraps */
    sb = start(standby_dir[0], "standby-a", NULL, NULL);
    engine_write(&e, 20);
    rk_ring_detach(e.r);
    st = wait_caught_up(standby_dir[0]);
    ck_assert_msg(json_u64(st, "bootstraps") == 1, "%s", st);
    free(st);
    ck_assert_int_eq(WTERMSIG(stop(sb, SIGKILL)), SIGKILL);
    ck_assert_int_eq(WTERMSIG(stop(primary, SIGKILL)), SIGKILL);
    check_same_journal(standby_dir[0]);
    check_state(standby_dir[0], e.height);
    /* and the forged entry is no longer in its journal */
    char err[512];
    store *s = NULL;
    uint8_t *now = NULL;
    size_t now_len = 0;
    ck_assert_msg(store_open(standby_dir[0], 0, 16, &s, err, sizeof err) == 0, "%s", err);
    int rc = store_journal_get_raw(s, last + 1, &now, &now_len);
    store_close(s);
    ck_assert_msg(rc == RK_ENOTFOUND || now_len != forged_len[0] || memcmp(now, forged[0], now_len) != 0,
                  "the standby still holds the entry the primary never had");
    free(now);
    free(forged[0]);
    free(forged);
    free(forged_len);
    set_gate(gate, NULL);
    unlink(forge_file);
}
END_TEST

/* The primary's status says whether it publishes before its fsync. */
static int publishes_early(void)
{
    char *st = status_of(primary_dir);
    int early = st && status_true(st, "publish_before_fsync");
    free(st);
    return early;
}

/* Entries go out before the primary's fsync only while every standby it
 * knows says it checks prev_xxh (HELLO's checks_prev), after a grace from
 * the start: a standby of an earlier build (a HELLO without it) turns that
 * off (before it is welcomed: update_needed) for the rest of the run, and
 * the stream is then as before.  A real standby follows throughout. */
START_TEST(early_publish_only_while_every_standby_checks_prev)
{
    struct engine e;
    uint32_t code = 0;
    pid_t primary = start(primary_dir, NULL, NULL, NULL);
    char *st = status_of(primary_dir);
    uint64_t epoch = json_u64(st, "epoch");
    free(st);
    ck_assert_msg(!publishes_early(), "early with no standby known");
    pid_t sb = start(standby_dir[0], "standby-a", NULL, NULL);

    engine_attach(&e);
    engine_write(&e, 10);
    free(wait_caught_up(standby_dir[0]));
    /* (after a grace from the start: update_needed) */
    for (int i = 0; !publishes_early(); i++) {
        ck_assert_msg(i < BOUND_S * 100, "not early with one standby of this build");
        usleep(10000);
    }

    void *ctx = zmq_ctx_new(), *old = peer_socket(ctx, ZMQ_DEALER, NULL, NULL, NULL);
    ck_assert_int_eq(hello_as(old, "old-standby", epoch, &code), WIRE_WELCOME);
    /* (the status is rebuilt at each heartbeat) */
    for (int i = 0; publishes_early(); i++) {
        ck_assert_msg(i < BOUND_S * 100, "still early with a standby that does not check prev_xxh");
        usleep(10000);
    }
    engine_write(&e, 20);
    free(wait_caught_up(standby_dir[0]));

    /* and stays off for the rest of this run, the old standby gone or
     * not: forgotten, it may still take the stream until it says HELLO */
    zmq_close(old);
    zmq_ctx_term(ctx);
    for (int i = 0; i < 50; i++) { /* 50 heartbeats: forgotten after 20 */
        ck_assert_msg(!publishes_early(), "early again in the run an old standby was heard in");
        usleep(50000);
    }
    detach_catch_up_and_check(&e, sb, primary);
    /* a new run starts early again, once its standbys all check */
    primary = start(primary_dir, NULL, NULL, NULL);
    sb = start(standby_dir[0], "standby-a", NULL, NULL);
    for (int i = 0; !publishes_early(); i++) {
        ck_assert_msg(i < BOUND_S * 100, "not early in a new run with one standby of this build");
        usleep(10000);
    }
    ck_assert_int_eq(stop(sb, SIGTERM), 0);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);
}
END_TEST

static Suite *repl_suite(void)
{
    Suite *s = suite_create("repl");
    TCase *tc = tcase_create("loopback");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, two_standbys_reach_the_primary_state);
    tcase_add_test(tc, replicated_wait_returns_once_a_standby_holds_the_record);
    tcase_add_test(tc, standby_acks_while_apply_lags_and_a_clean_stop_applies_all);
    tcase_add_test(tc, digest_compared_while_apply_lags);
    tcase_add_test(tc, idle_heartbeats_keep_the_sequences_a_held_apply_needs);
    tcase_add_test(tc, bad_input_is_refused_and_others_unaffected);
    tcase_add_test(tc, standby_survives_a_primary_restart_and_monitor_prints);
    tcase_add_test(tc, standby_away_past_retention_bootstraps_from_a_checkpoint);
    tcase_add_test(tc, standby_of_another_history_bootstraps_and_is_not_counted);
    tcase_add_test(tc, stale_standby_is_not_counted_past_the_fork_point);
    tcase_add_test(tc, curve_only_authorized_peers_receive_anything);
    tcase_add_test(tc, promote_a_running_standby);
    tcase_add_test(tc, promote_a_stopped_standby_at_start);
    tcase_add_test(tc, a_primary_told_of_a_higher_epoch_steps_down);
    tcase_add_test(tc, a_primary_steps_down_on_a_standbys_higher_epoch);
    suite_add_tcase(s, tc);
    tc = tcase_create("identities"); /* issue 14 points 9, 10, 12: CK_RUN_CASE=identities */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, curve_key_acks_only_for_its_own_node_id);
    tcase_add_test(tc, hello_under_a_live_standbys_name_does_not_reset_its_acks);
    tcase_add_test(tc, fake_identities_do_not_lock_a_real_standby_out);
    tcase_add_test(tc, fake_identities_without_curve_do_not_lock_a_real_standby_out);
    tcase_add_test(tc, monitor_follows_without_taking_a_standby_slot);
    tcase_add_test(tc, refusals_are_counted_and_logged_once_per_peer_per_interval);
    tcase_add_test(tc, oversized_requests_are_counted_and_logged_once_per_peer);
    tcase_add_test(tc, monitor_live_line_shows_health_checkpoints_and_stopped_heartbeats);
    suite_add_tcase(s, tc);
    tc = tcase_create("cluster"); /* several nodes' endpoints: CK_RUN_CASE=cluster */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, other_standby_repoints_to_the_promoted_one_and_the_old_primary_steps_down);
    tcase_add_test(tc, promote_refused_when_another_standby_acknowledged_more);
    tcase_add_test(tc, an_unverified_hello_is_listed_not_counted);
    tcase_add_test(tc, repointed_standby_sets_aside_what_the_new_primary_lacks);
    tcase_add_loop_test(tc, a_welcome_to_an_earlier_hello_is_not_taken_after_a_rebuild, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("apply_lag"); /* issue 13.7: CK_RUN_CASE=apply_lag runs only these */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, standby_apply_lag_stays_within_max_lag_ms);
    tcase_add_test(tc, standby_apply_lag_only_reported_without_min_replicas);
    tcase_add_test(tc, a_gone_standby_no_longer_holds_the_drain);
    suite_add_tcase(s, tc);
    tc = tcase_create("standby_checkpoints"); /* CK_RUN_CASE=standby_checkpoints runs only these */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, standby_checkpoints_equal_the_primarys_and_trim_its_journal);
    tcase_add_test(tc, state_open_on_a_running_standby_is_the_primarys_state);
    tcase_add_test(tc, bootstrap_from_a_promoted_node);
    suite_add_tcase(s, tc);
    tc = tcase_create("early_publish"); /* issue 13.6: CK_RUN_CASE=early_publish runs only these */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, standby_never_appends_to_an_entry_the_primary_does_not_hold);
    tcase_add_test(tc, standby_holding_an_entry_its_primary_lost_in_a_power_cut_sets_it_aside);
    tcase_add_test(tc, standby_whose_last_entry_was_trimmed_is_compared_with_the_trim_record);
    tcase_add_test(tc, early_publish_only_while_every_standby_checks_prev);
    suite_add_tcase(s, tc);
    tc = tcase_create("rejoin"); /* CK_RUN_CASE=rejoin runs only these */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, a_former_primary_rejoins_with_a_divergent_tail);
    tcase_add_test(tc, a_primary_told_of_a_higher_epoch_rejoins_as_a_standby);
    tcase_add_test(tc, a_primary_reached_by_a_higher_epoch_rejoins_as_a_standby);
    suite_add_tcase(s, tc);
    /* CK_RUN_CASE=promote_again runs only these; RK_TEST_PROMOTE_AGAIN=1
     * adds them to the default run (about 12 s more).  The stall they found
     * under load (the old primary, started again as a standby, never
     * welcomed, its apply stuck at applied_seq 1 of 7) was a deadlock of
     * its main thread adopting the primary's history with its apply
     * thread (persist/history.c, struct history); test_history's
     * adopting_a_history_does_not_block_apply_while_it_waits covers it. */
    if (getenv("RK_TEST_PROMOTE_AGAIN") ||
        (getenv("CK_RUN_CASE") && strcmp(getenv("CK_RUN_CASE"), "promote_again") == 0)) {
        tc = tcase_create("promote_again");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, promoted_again_takes_nothing_from_the_ring_it_left);
        tcase_add_test(tc, rebuilt_former_primary_promoted_again_replaces_the_ring_it_left);
        tcase_add_loop_test(tc, standby_killed_while_promoted_keeps_every_acknowledged_group, 0, 2);
        tcase_add_test(tc, other_standby_killed_during_a_promotion_follows_the_new_primary);
        suite_add_tcase(s, tc);
    }
    tc = tcase_create("bootstrap_promote"); /* CK_RUN_CASE=bootstrap_promote runs only these */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, promoted_with_an_empty_journal_after_a_bootstrap_keeps_every_acknowledged_group,
                        0, 3);
    tcase_add_test(tc, promoted_with_a_journal_short_of_its_checkpoint_keeps_every_acknowledged_group);
    suite_add_tcase(s, tc);
    tc = tcase_create("bootstrap_fault"); /* CK_RUN_CASE=bootstrap_fault runs only these */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, standby_failing_during_bootstrap_leaves_no_untrusted_checkpoint, 0,
                        N_BOOTSTRAP_FAULTS);
    tcase_add_test(tc, standby_killed_while_loading_a_checkpoint_bootstraps_again_from_scratch);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    ringkeep_bin = argc > 1 ? argv[1] : "ringkeep";
    SRunner *sr = srunner_create(repl_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
