/* test_snapshot.c -- state snapshot files (persist/snapshot.h), the
 * contract between a node and the libringkeep of its engines: what the
 * writer writes the verifier reads back byte for byte; a truncated,
 * damaged or foreign file, or one of another major version, is refused
 * with a reason that says which; and rk_state_open refuses such a file
 * when a node hands it one (a stand-in node: this process holds the data
 * directory's lock and answers on its control socket).
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zmq.h>

#include "node/client.h"
#include "persist/snapshot.h"
#include "ringkeep.h"

#define N_ENTRIES 500 /* per table */

static char dir[256], path[320];

/* Entry i of a table: keys of two lengths, each short one a prefix of
 * the next ("k0001" < "k0001x"); values of table t, some empty. */
static uint32_t make_key(int i, char *key)
{
    return (uint32_t)sprintf(key, "k%04d%s", i / 2, (i % 2) ? "x" : "");
}

static uint32_t make_val(int t, int i, uint8_t *val)
{
    uint32_t n = (uint32_t)((i * 7 + t) % 40);
    for (uint32_t j = 0; j < n; j++)
        val[j] = (uint8_t)(i + j + t);
    return n;
}

static const struct apply_meta test_am = {.restart_seq = 3, .applied_seq = 7, .applied_lsn = 4242,
                                          .n_groups = 9, .n_records = 1000, .n_discarded = 1, .digest = 0xabcdef};

/* Writes the test file at path: tables "a" and "b", two producers. */
static void write_file(void)
{
    struct snap_producer p[2] = {0};
    snap_writer *w = NULL;
    char err[512] = "", key[32];
    uint8_t val[64];

    snprintf(p[0].name, sizeof p[0].name, "eng0");
    p[0].m = (struct producer_meta){.applied_lsn = 4242, .height = 9, .n_groups = 9};
    snprintf(p[1].name, sizeof p[1].name, "idle");
    ck_assert_int_eq(snap_writer_open(path, &w, err, sizeof err), 0);
    for (int t = 0; t < 2; t++) {
        ck_assert_int_eq(snap_writer_table(w, t ? "b" : "a"), 0);
        for (int i = 0; i < N_ENTRIES; i++) {
            uint32_t klen = make_key(i, key), vlen = make_val(t, i, val);
            ck_assert_int_eq(snap_writer_add(w, key, klen, val, vlen), 0);
        }
    }
    ck_assert_uint_eq(snap_writer_entries(w), 2 * N_ENTRIES);
    ck_assert_msg(snap_writer_finish(w, &test_am, NULL, p, 2, err, sizeof err) == 0, "%s", err);
}

static uint8_t *read_file(size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY);
    uint8_t *buf;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(fstat(fd, &st), 0);
    *len = (size_t)st.st_size;
    buf = malloc(*len + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(read(fd, buf, *len), (ssize_t)*len);
    close(fd);
    return buf;
}

static void write_bytes(const char *to, const uint8_t *buf, size_t len)
{
    int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
    close(fd);
}

struct seen {
    int table; /* index of the table being walked */
    int n;     /* its entries seen */
    int total;
    char why[200];
};

static int seen_table(void *arg, uint32_t i, const char *name, uint64_t n_entries)
{
    struct seen *s = arg;

    if (strcmp(name, i ? "b" : "a") != 0 || n_entries != N_ENTRIES) {
        snprintf(s->why, sizeof s->why, "table %u is %s with %llu entries", i, name, (unsigned long long)n_entries);
        return 1;
    }
    s->table = (int)i;
    s->n = 0;
    return 0;
}

static int seen_entry(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct seen *s = arg;
    char want_key[32];
    uint8_t want_val[64];
    uint32_t wk = make_key(s->n, want_key), wv = make_val(s->table, s->n, want_val);

    if (klen != wk || memcmp(key, want_key, wk) != 0 || vlen != wv || memcmp(val, want_val, wv) != 0) {
        snprintf(s->why, sizeof s->why, "table %d entry %d differs", s->table, s->n);
        return 1;
    }
    s->n++;
    s->total++;
    return 0;
}

static void setup(void)
{
    /* a name of its own: a folder named by the pid alone may be a dead
     * run's (CI on a reused machine failed on one, EEXIST) */
    snprintf(dir, sizeof dir, "/tmp/rk-test-snapshot.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/s" SNAP_SUFFIX, dir);
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(snapshot_file_round_trips)
{
    struct snap_info info;
    struct seen s = {0};
    struct snap_producer p;
    char err[512] = "";
    size_t len;
    uint8_t *buf;

    write_file();
    buf = read_file(&len);
    ck_assert_msg(snap_verify(buf, len, &info, seen_table, seen_entry, &s, err, sizeof err) == 0, "%s %s", err,
                  s.why);
    ck_assert_int_eq(s.total, 2 * N_ENTRIES);
    ck_assert_int_eq(memcmp(&info.h.am, &test_am, sizeof test_am), 0);
    ck_assert_uint_eq(info.h.n_producers, 2);
    snap_producer_at(&info, 0, &p);
    ck_assert_str_eq(p.name, "eng0");
    ck_assert_uint_eq(p.m.height, 9);
    ck_assert_uint_eq(p.m.applied_lsn, 4242);
    snap_producer_at(&info, 1, &p);
    ck_assert_str_eq(p.name, "idle");
    ck_assert_uint_eq(p.m.n_groups, 0);
    free(buf);
}
END_TEST

/* Every length short of the whole file is refused, and says so. */
START_TEST(truncated_snapshot_is_refused)
{
    struct snap_info info;
    char err[512];
    size_t len;
    uint8_t *buf;

    write_file();
    buf = read_file(&len);
    for (size_t cut = 0; cut < len; cut += cut < SNAP_HEADER_SIZE + 64 ? 1 : 97) {
        err[0] = '\0';
        ck_assert_int_eq(snap_verify(buf, cut, &info, NULL, NULL, NULL, err, sizeof err), RK_ECORRUPT);
        ck_assert_msg(strstr(err, cut < SNAP_HEADER_SIZE ? "truncated" : "the header says") != NULL,
                      "%zu of %zu bytes: %s", cut, len, err);
    }
    free(buf);
}
END_TEST

/* Any single byte changed anywhere is refused (a magic, version, checksum
 * or size that disagrees). */
START_TEST(damaged_snapshot_is_refused)
{
    struct snap_info info;
    char err[512];
    size_t len;
    uint8_t *buf;

    write_file();
    buf = read_file(&len);
    for (size_t at = 0; at < len; at++) {
        buf[at] ^= 0x40;
        int rc = snap_verify(buf, len, &info, NULL, NULL, NULL, err, sizeof err);
        ck_assert_msg(rc == RK_ECORRUPT || rc == RK_EVERSION, "byte %zu of %zu changed: accepted (%d)", at, len,
                      rc);
        buf[at] ^= 0x40;
    }
    buf[0] ^= 1;
    ck_assert_int_eq(snap_verify(buf, len, &info, NULL, NULL, NULL, err, sizeof err), RK_ECORRUPT);
    ck_assert_msg(strstr(err, "bad magic") != NULL, "%s", err);
    buf[0] ^= 1;
    buf[len - 1] ^= 1;
    ck_assert_int_eq(snap_verify(buf, len, &info, NULL, NULL, NULL, err, sizeof err), RK_ECORRUPT);
    ck_assert_msg(strstr(err, "body's checksum") != NULL, "%s", err);
    free(buf);
}
END_TEST

/* A file whose checksums pass but whose keys are not in Berkeley DB's
 * order (bytes, then the shorter first; a writer of another build, or a
 * file made by hand) is refused, whether the two keys differ in their
 * first 8 bytes or only after them, or one is a prefix of the other;
 * the same keys in order are accepted. */
START_TEST(snapshot_with_keys_out_of_order_is_refused)
{
    static const char *pairs[][2] = {{"b", "a"},           {"ab", "a"},         {"prefix00-B", "prefix00-A"},
                                     {"prefix00x", "prefix00"}, {"12345678", "1234567"}, {"k", "k"}};
    struct snap_info info;
    char err[512];
    size_t len;
    uint8_t *buf;

    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        for (int swap = 0; swap < 2; swap++) {
            const char *first = pairs[i][swap], *second = pairs[i][!swap];
            snap_writer *w = NULL;
            ck_assert_int_eq(snap_writer_open(path, &w, err, sizeof err), 0);
            ck_assert_int_eq(snap_writer_table(w, "t"), 0);
            ck_assert_int_eq(snap_writer_add(w, "0", 1, "v", 1), 0);
            ck_assert_int_eq(snap_writer_add(w, first, (uint32_t)strlen(first), "v", 1), 0);
            ck_assert_int_eq(snap_writer_add(w, second, (uint32_t)strlen(second), "v", 1), 0);
            ck_assert_msg(snap_writer_finish(w, &test_am, NULL, NULL, 0, err, sizeof err) == 0, "%s", err);
            buf = read_file(&len);
            err[0] = '\0';
            int rc = snap_verify(buf, len, &info, NULL, NULL, NULL, err, sizeof err);
            if (swap == 1 && strcmp(first, second) != 0) {
                ck_assert_msg(rc == 0, "%s then %s: %s", first, second, err);
            } else {
                ck_assert_msg(rc == RK_ECORRUPT && strstr(err, "entry 2 is out of key order"), "%s then %s: %d %s",
                              first, second, rc, err);
            }
            free(buf);
        }
    }
}
END_TEST

/* A file of another major version (a node of another ringkeep), with
 * checksums that pass, is refused by version, naming both. */
static void set_major(uint8_t *buf, uint32_t major)
{
    struct snap_header h;

    memcpy(&h, buf, sizeof h);
    h.major = major;
    h.header_hash = XXH3_64bits(&h, offsetof(struct snap_header, header_hash));
    memcpy(buf, &h, sizeof h);
}

START_TEST(snapshot_of_another_major_version_is_refused)
{
    struct snap_info info;
    char err[512] = "";
    size_t len;
    uint8_t *buf;

    write_file();
    buf = read_file(&len);
    set_major(buf, SNAP_MAJOR + 1);
    ck_assert_int_eq(snap_verify(buf, len, &info, NULL, NULL, NULL, err, sizeof err), RK_EVERSION);
    ck_assert_msg(strstr(err, "format 3.0, this libringkeep reads 2.x") != NULL, "%s", err);
    /* a node from before overlays (format 1: no base in its header) */
    set_major(buf, 1);
    ck_assert_int_eq(snap_verify(buf, len, &info, NULL, NULL, NULL, err, sizeof err), RK_EVERSION);
    ck_assert_msg(strstr(err, "format 1.0, this libringkeep reads 2.x") != NULL, "%s", err);
    free(buf);
}
END_TEST

/* ------------------------------------------------------------ through rk_state_open */

/* A stand-in node on dir: answers the i-th request with "ok <files[i]>",
 * n_files requests (an engine asks again, "snapshot whole", when an
 * overlay's base fails). */
struct fake_node {
    void *ctx, *sock;
    const char *const *files;
    int n_files, n_requests;
    char request[2][64];
};

static void *fake_node_serve(void *arg)
{
    struct fake_node *f = arg;
    char reply[512], request[64];

    for (;;) {
        int n = zmq_recv(f->sock, request, sizeof request - 1, 0);
        if (n < 0)
            break;
        request[n < (int)sizeof request - 1 ? n : (int)sizeof request - 1] = '\0';
        if (strcmp(request, "done") == 0) { /* the test's own: rk_state_open has returned */
            zmq_send(f->sock, "ok", 2, 0);
            break;
        }
        if (f->n_requests < f->n_files)
            snprintf(reply, sizeof reply, "ok %s", f->files[f->n_requests]);
        else
            snprintf(reply, sizeof reply, "error no more answers");
        if (f->n_requests < 2)
            snprintf(f->request[f->n_requests], sizeof f->request[0], "%s", request);
        f->n_requests++;
        zmq_send(f->sock, reply, strlen(reply), 0);
    }
    return NULL;
}

/* rk_state_open(dir) while a stand-in node answers its requests with
 * files in turn (n_files: the requests it must make, at most 2:
 * "snapshot", then "snapshot whole"); returns its result (*out: the
 * handle, or NULL). */
static int open_served_n(const char *const *files, int n_files, rk_state **out)
{
    struct fake_node f = {.files = files, .n_files = n_files};
    char lock_path[300], endpoint[400], pid[32], *done = NULL;
    pthread_t t;
    int fd, rc, linger = 0;

    ck_assert_int_le(n_files, 2);
    snprintf(lock_path, sizeof lock_path, "%s/LOCK", dir);
    fd = open(lock_path, O_RDWR | O_CREAT, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0); /* as a node holds it */
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    ck_assert_int_eq(pwrite(fd, pid, strlen(pid), 0), (ssize_t)strlen(pid));
    node_control_endpoint(dir, endpoint, sizeof endpoint);
    f.ctx = zmq_ctx_new();
    f.sock = zmq_socket(f.ctx, ZMQ_REP);
    ck_assert_ptr_nonnull(f.sock);
    zmq_setsockopt(f.sock, ZMQ_LINGER, &linger, sizeof linger);
    ck_assert_int_eq(zmq_bind(f.sock, endpoint), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, fake_node_serve, &f), 0);
    rc = rk_state_open(dir, out);
    ck_assert_int_eq(node_request(dir, "done", 60000, &done), 0);
    free(done);
    pthread_join(t, NULL);
    ck_assert_int_eq(f.n_requests, n_files);
    ck_assert_str_eq(f.request[0], "snapshot");
    if (n_files > 1)
        ck_assert_str_eq(f.request[1], "snapshot whole");
    zmq_close(f.sock);
    zmq_ctx_term(f.ctx);
    close(fd); /* the lock goes with it */
    return rc;
}

static int open_served(const char *file, rk_state **out)
{
    return open_served_n(&file, 1, out);
}

START_TEST(state_open_refuses_a_bad_snapshot_from_the_node)
{
    char bad[400];
    rk_state *s = NULL;
    uint64_t height = 0;
    size_t len;
    uint8_t *buf;
    void *val = NULL;
    uint32_t vlen = 0;

    write_file();
    buf = read_file(&len);
    snprintf(bad, sizeof bad, "%s/bad" SNAP_SUFFIX, dir);
    /* truncated: refused, and the file is gone (the engine unlinks it) */
    write_bytes(bad, buf, len - 1);
    ck_assert_int_eq(open_served(bad, &s), RK_ECORRUPT);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(access(bad, F_OK), -1);
    /* damaged in the middle */
    buf[len / 2] ^= 1;
    write_bytes(bad, buf, len);
    ck_assert_int_eq(open_served(bad, &s), RK_ECORRUPT);
    buf[len / 2] ^= 1;
    /* another major version */
    set_major(buf, SNAP_MAJOR + 1);
    write_bytes(bad, buf, len);
    ck_assert_int_eq(open_served(bad, &s), RK_EVERSION);
    ck_assert_ptr_null(s);
    /* and the good file opens, with its contents */
    ck_assert_int_eq(open_served(path, &s), 0);
    ck_assert_int_eq(rk_state_height(s, "eng0", &height), 0);
    ck_assert_uint_eq(height, 9);
    ck_assert_int_eq(rk_state_height(s, "idle", &height), RK_ENOTFOUND); /* no group applied */
    ck_assert_uint_eq(rk_state_lsn(s), 4242);
    ck_assert_int_eq(rk_state_get(s, "b", "k0003x", 6, &val, &vlen), 0);
    {
        uint8_t want[64];
        uint32_t wv = make_val(1, 7, want);
        ck_assert_uint_eq(vlen, wv);
        ck_assert_int_eq(memcmp(val, want, wv), 0);
    }
    free(val);
    ck_assert_int_eq(rk_state_get(s, "a", "k0003y", 6, &val, &vlen), RK_ENOTFOUND);
    rk_state_close(s);
    free(buf);
}
END_TEST

/* ------------------------------------------------------------ overlays */

/* A model state for the overlay tests: tables of keys 0..M_KEYS-1
 * ("key-%05d", a longer "key-%05dx" for odd ones: a prefix and its
 * extension; the first four "ab" and "ab" with NULs after it),
 * each present with a value version (0: absent). */
#define M_TABLES 6
#define M_KEYS 600
static const char *const m_names[M_TABLES] = {"0new", "a", "ab", "b", "c", "z"}; /* name order */

struct model {
    int v[M_TABLES][M_KEYS]; /* value version, 0: no entry */
    int has_table[M_TABLES];
};

static uint32_t m_key(int k, char *key)
{
    /* the first four: "ab" and itself followed by 1, 2 and 7 NULs, which
     * key_prefix pads to the same 8 bytes (only their lengths tell them
     * apart), in key order before the rest */
    static const uint32_t zero_tails[] = {0, 1, 2, 7};
    if (k < 4) {
        memset(key, 0, 2 + zero_tails[3] + 1);
        memcpy(key, "ab", 2);
        return 2 + zero_tails[k];
    }
    /* 9 or 10 bytes: keys that share their first 8 (key_prefix) are many */
    return (uint32_t)sprintf(key, "key-%05d%s", k / 2, (k % 2) ? "x" : "");
}

static uint32_t m_val(int t, int k, int version, uint8_t *val)
{
    uint32_t n = (uint32_t)((k + version + t) % 24); /* some empty */
    for (uint32_t j = 0; j < n; j++)
        val[j] = (uint8_t)(version * 31 + k + j + t);
    return n;
}

/* Writes model m as a whole snapshot at file, or (base: the whole
 * snapshot it applies to, as on disk, named base_name) as an overlay of
 * the entries of m that differ from base_m: a PUT where the value
 * differs, a tombstone where the base has the key and m has not (and, to
 * show that one is harmless, for key 1 of table "c" where neither has it). */
static void m_write(const struct model *m, const char *file, const struct model *base_m, const char *base_file,
                    const char *base_name, uint64_t applied_seq)
{
    struct snap_producer p = {0};
    struct apply_meta am = test_am;
    struct snap_base base = {0};
    snap_writer *w = NULL;
    char err[512] = "", key[32];
    uint8_t val[64];

    am.applied_seq = applied_seq;
    snprintf(p.name, sizeof p.name, "eng0");
    p.m = (struct producer_meta){.applied_lsn = 4242, .height = applied_seq, .n_groups = 9};
    ck_assert_int_eq(snap_writer_open(file, &w, err, sizeof err), 0);
    for (int t = 0; t < M_TABLES; t++) {
        int opened = 0;
        if (!m->has_table[t] && !(base_m && base_m->has_table[t]))
            continue;
        if (!base_m && m->has_table[t]) {
            ck_assert_int_eq(snap_writer_table(w, m_names[t]), 0);
            opened = 1;
        }
        for (int k = 0; k < M_KEYS; k++) {
            uint32_t klen = m_key(k, key);
            int was = base_m ? base_m->v[t][k] : 0, now = m->v[t][k];
            int tomb = base_m && ((was && !now) || (t == 4 && k == 1 && !was && !now));
            if ((base_m && now == was && !tomb) || (!base_m && !now) || (base_m && !now && !tomb))
                continue;
            if (!opened) {
                ck_assert_int_eq(snap_writer_table(w, m_names[t]), 0);
                opened = 1;
            }
            if (now)
                ck_assert_int_eq(snap_writer_add(w, key, klen, val, m_val(t, k, now, val)), 0);
            else
                ck_assert_int_eq(snap_writer_add_tombstone(w, key, klen), 0);
        }
    }
    if (base_m) {
        int fd = open(base_file, O_RDONLY);
        struct snap_header h;
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pread(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
        close(fd);
        base = (struct snap_base){.file_size = h.file_size, .body_hash = h.body_hash, .applied_seq = h.am.applied_seq};
        snprintf(base.name, sizeof base.name, "%s", base_name);
    }
    ck_assert_msg(snap_writer_finish(w, &am, base_m ? &base : NULL, &p, 1, err, sizeof err) == 0, "%s", err);
}

/* The base model: tables "a", "b", "c" with random keys. */
static void m_base(struct model *m, unsigned *seed)
{
    memset(m, 0, sizeof *m);
    for (int t = 1; t < M_TABLES - 1; t++) {
        if (t == 2)
            continue; /* "ab": new in the overlay */
        m->has_table[t] = 1;
        for (int k = 0; k < M_KEYS; k++)
            m->v[t][k] = rand_r(seed) % 3 ? 1 : 0;
    }
}

/* Changes to m: overwrites, new keys, deletes of keys there and not
 * there, table "b" emptied, new tables "0new", "ab" and "z". */
static void m_change(struct model *m, unsigned *seed, int version)
{
    for (int t = 0; t < M_TABLES; t++)
        for (int k = 0; k < M_KEYS; k++) {
            int r = rand_r(seed) % 10;
            if (t == 3)
                m->v[t][k] = 0; /* "b": every key deleted */
            else if ((t == 0 || t == 2 || t == 5) && r < 3)
                m->v[t][k] = version; /* new tables */
            else if (t != 0 && t != 2 && t != 5 && r == 0)
                m->v[t][k] = version; /* overwritten or new */
            else if (t != 0 && t != 2 && t != 5 && r == 1)
                m->v[t][k] = 0; /* deleted (or absent already) */
        }
    m->has_table[0] = m->has_table[2] = m->has_table[5] = 1;
}

/* Round r's base (every fourth from the second without table "a", every
 * fourth from the third empty) and its changed state m. */
static void m_round(struct model *base_m, struct model *m, unsigned *seed, int round)
{
    m_base(base_m, seed);
    if (round % 4 == 1)
        base_m->has_table[1] = 0;
    if (round % 4 == 2)
        memset(base_m, 0, sizeof *base_m);
    *m = *base_m;
    m_change(m, seed, 2 + round);
}

struct scan_out {
    char buf[1 << 16];
    size_t len;
};

static int scan_append(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct scan_out *o = arg;

    ck_assert_uint_lt(o->len + 8 + klen + vlen, sizeof o->buf);
    memcpy(o->buf + o->len, &klen, 4);
    memcpy(o->buf + o->len + 4, &vlen, 4);
    memcpy(o->buf + o->len + 8, key, klen);
    memcpy(o->buf + o->len + 8 + klen, val, vlen);
    o->len += 8 + klen + vlen;
    return 0;
}

/* s and w hold the same state for rk_state_get and rk_state_scan: every
 * key of every table (and of a table neither has), whole scans and
 * scans by prefix; heights and lsn. */
static void assert_same_state(rk_state *s, rk_state *w)
{
    static const char *const extra[] = {"nosuch", "", NULL};
    static struct scan_out a, b;
    const char *prefixes[] = {"", "a", "ab", "k", "key-001", "key-0010", "key-00100", "key-00100x", "q"};
    uint64_t ha = 0, hb = 0;
    char key[32];

    ck_assert_uint_eq(rk_state_lsn(s), rk_state_lsn(w));
    ck_assert_int_eq(rk_state_height(s, "eng0", &ha), 0);
    ck_assert_int_eq(rk_state_height(w, "eng0", &hb), 0);
    ck_assert_uint_eq(ha, hb);
    for (int t = 0; t < M_TABLES + 2; t++) {
        const char *name = t < M_TABLES ? m_names[t] : extra[t - M_TABLES];
        for (int k = 0; k < M_KEYS + 2; k++) {
            uint32_t klen = m_key(k, key), la = 0, lb = 0;
            void *va = NULL, *vb = NULL;
            int ra = rk_state_get(s, name, key, klen, &va, &la), rb = rk_state_get(w, name, key, klen, &vb, &lb);
            ck_assert_msg(ra == rb && la == lb && (la == 0 || memcmp(va, vb, la) == 0),
                          "table %s key %s: %d (%u bytes) against the whole snapshot's %d (%u bytes)", name, key,
                          ra, la, rb, lb);
            free(va);
            free(vb);
        }
        for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
            a.len = b.len = 0;
            ck_assert_int_eq(rk_state_scan(s, name, prefixes[i], (uint32_t)strlen(prefixes[i]), scan_append, &a), 0);
            ck_assert_int_eq(rk_state_scan(w, name, prefixes[i], (uint32_t)strlen(prefixes[i]), scan_append, &b), 0);
            ck_assert_msg(a.len == b.len && memcmp(a.buf, b.buf, a.len) == 0,
                          "table %s, scan of \"%s\": %zu bytes against the whole snapshot's %zu", name, prefixes[i],
                          a.len, b.len);
        }
    }
}

/* An overlay -- overwrites, new keys, deletes (tombstones, one of a key
 * the base has not), a table it empties, tables the base has not before,
 * between and after the base's -- over its base reads exactly as the
 * whole snapshot of the same state: every get and scan (a prefix, an
 * extension of it), heights and lsn; both files are gone after the open
 * (the engine unlinks them). */
START_TEST(overlay_over_its_base_reads_as_the_whole_snapshot)
{
    struct model base_m, m;
    unsigned seed = 12345;
    char base_file[320], overlay[320], whole[320];
    rk_state *s = NULL, *w = NULL;

    snprintf(base_file, sizeof base_file, "%s/b-base" SNAP_SUFFIX, dir);
    snprintf(overlay, sizeof overlay, "%s/b" SNAP_SUFFIX, dir);
    snprintf(whole, sizeof whole, "%s/w" SNAP_SUFFIX, dir);
    for (int round = 0; round < 3; round++) {
        m_base(&base_m, &seed);
        m = base_m;
        m_change(&m, &seed, 2 + round);
        m_write(&base_m, base_file, NULL, NULL, NULL, 5);
        m_write(&m, overlay, &base_m, base_file, "b-base" SNAP_SUFFIX, 9);
        m_write(&m, whole, NULL, NULL, NULL, 9);
        ck_assert_int_eq(open_served(overlay, &s), 0);
        ck_assert_int_eq(access(overlay, F_OK), -1);
        ck_assert_int_eq(access(base_file, F_OK), -1);
        ck_assert_int_eq(open_served(whole, &w), 0);
        assert_same_state(s, w);
        rk_state_close(s);
        rk_state_close(w);
    }
}
END_TEST

/* The file at f, whole (malloc'd, the caller's). */
static uint8_t *read_named(const char *f, size_t *len)
{
    snprintf(path, sizeof path, "%s", f);
    return read_file(len);
}

/* snap_merge (a primary's rebase) of an overlay with its base writes the
 * whole snapshot of the same state, byte for byte, and its index is
 * every entry's offset in the new file, in order -- over 20 rounds of
 * the model: overwrites, new keys, deletes, tombstones of keys the base
 * has not, a table emptied, tables the overlay has and the base not
 * before, between and after the base's, keys that tie on their first 8
 * bytes (key_prefix); a base without table "a" (every fourth round from
 * the second) and an empty base (every fourth from the third). */
START_TEST(merge_of_an_overlay_with_its_base_is_the_whole_snapshot)
{
    struct model base_m, m;
    unsigned seed = 777;
    char base_file[320], overlay[320], whole[320], merged[320], err[512] = "";

    snprintf(base_file, sizeof base_file, "%s/r-base" SNAP_SUFFIX, dir);
    snprintf(overlay, sizeof overlay, "%s/r" SNAP_SUFFIX, dir);
    snprintf(whole, sizeof whole, "%s/w" SNAP_SUFFIX, dir);
    snprintf(merged, sizeof merged, "%s/m" SNAP_SUFFIX, dir);
    for (int round = 0; round < 20; round++) {
        struct snap_slot *index = NULL;
        struct snap_info info;
        uint8_t *b, *o, *w, *mm;
        size_t b_len, o_len, w_len, m_len;
        uint64_t n = 0, e = 0;

        m_round(&base_m, &m, &seed, round);
        m_write(&base_m, base_file, NULL, NULL, NULL, 5);
        m_write(&m, overlay, &base_m, base_file, "r-base" SNAP_SUFFIX, 9);
        m_write(&m, whole, NULL, NULL, NULL, 9);
        b = read_named(base_file, &b_len);
        o = read_named(overlay, &o_len);
        w = read_named(whole, &w_len);
        ck_assert_msg(snap_merge(b, b_len, o, o_len, merged, &n, &index, err, sizeof err) == 0, "round %d: %s",
                      round, err);
        mm = read_named(merged, &m_len);
        ck_assert_uint_eq(m_len, w_len);
        ck_assert_msg(memcmp(mm, w, w_len) == 0, "round %d: the merge is not the whole snapshot", round);
        ck_assert_int_eq(snap_verify(mm, m_len, &info, NULL, NULL, NULL, err, sizeof err), 0);
        ck_assert_uint_eq(n, info.h.n_entries);
        ck_assert_ptr_nonnull(index);
        for (uint64_t t = 0; t < info.h.n_tables; t++) {
            struct snap_table st;
            const uint8_t *at;
            memcpy(&st, info.tables + t * sizeof st, sizeof st);
            at = mm + st.offset;
            for (uint64_t i = 0; i < st.n_entries; i++, e++) {
                uint32_t lens[2];
                memcpy(lens, at, sizeof lens);
                ck_assert_msg(index[e].off == (uint64_t)(at - mm), "round %d: entry %" PRIu64 " indexed at %" PRIu64
                              ", it is at %td", round, e, index[e].off, at - mm);
                at += sizeof lens + lens[0] + lens[1];
            }
        }
        ck_assert_uint_eq(e, n);
        free(index);
        free(b);
        free(o);
        free(w);
        free(mm);
        unlink(base_file);
        unlink(overlay);
        unlink(whole);
        unlink(merged);
    }
}
END_TEST

/* An overlay that fails its checks is refused (RK_ECORRUPT), and the link
 * to its base is removed all the same; so is one
 * over a base that is not the one it names, damaged, or missing -- and
 * then the engine asks the node once more, for a whole snapshot
 * ("snapshot whole", which drops the node's base): served a good one, the
 * open holds it; served the same fault again, it is refused.  A whole
 * snapshot holding a tombstone (only an overlay may) is refused too. */
START_TEST(overlay_that_fails_or_whose_base_fails_is_refused)
{
    struct model base_m, m, other_m;
    unsigned seed = 777;
    char base_file[320], overlay[320], overlay2[320], whole[320], err[512] = "";
    const char *files[2];
    rk_state *s = NULL, *w = NULL;
    struct snap_info info;
    snap_writer *sw = NULL;
    uint8_t *buf;
    size_t len;

    snprintf(base_file, sizeof base_file, "%s/o-base" SNAP_SUFFIX, dir);
    snprintf(overlay, sizeof overlay, "%s/o" SNAP_SUFFIX, dir);
    snprintf(overlay2, sizeof overlay2, "%s/o2" SNAP_SUFFIX, dir);
    snprintf(whole, sizeof whole, "%s/w" SNAP_SUFFIX, dir);
    m_base(&base_m, &seed);
    m = base_m;
    m_change(&m, &seed, 2);
    other_m = base_m;
    other_m.v[1][0] = 7; /* another base: one value differs */

    /* the overlay damaged: refused, no second request (its base is not at fault) */
    m_write(&base_m, base_file, NULL, NULL, NULL, 5);
    m_write(&m, overlay, &base_m, base_file, "o-base" SNAP_SUFFIX, 9);
    snprintf(path, sizeof path, "%s", overlay);
    buf = read_file(&len);
    buf[len / 2] ^= 1;
    write_bytes(overlay, buf, len);
    free(buf);
    ck_assert_int_eq(open_served(overlay, &s), RK_ECORRUPT);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(access(base_file, F_OK), -1); /* its base's link is not left behind either */

    /* over another base than the one it names, twice: refused */
    {
        char base2[320];
        snprintf(base2, sizeof base2, "%s/o2-base" SNAP_SUFFIX, dir);
        m_write(&base_m, base_file, NULL, NULL, NULL, 5);
        m_write(&m, overlay, &base_m, base_file, "o-base" SNAP_SUFFIX, 9);
        m_write(&m, overlay2, &base_m, base_file, "o2-base" SNAP_SUFFIX, 9);
        m_write(&other_m, base_file, NULL, NULL, NULL, 5);
        m_write(&other_m, base2, NULL, NULL, NULL, 5);
        files[0] = overlay;
        files[1] = overlay2;
        ck_assert_int_eq(open_served_n(files, 2, &s), RK_ECORRUPT);
        ck_assert_ptr_null(s);
        ck_assert_int_eq(access(base2, F_OK), -1);
    }

    /* a damaged base, then a good whole snapshot: the open holds that one */
    m_write(&base_m, base_file, NULL, NULL, NULL, 5);
    m_write(&m, overlay, &base_m, base_file, "o-base" SNAP_SUFFIX, 9);
    snprintf(path, sizeof path, "%s", base_file);
    buf = read_file(&len);
    buf[len - 100] ^= 1;
    write_bytes(base_file, buf, len);
    free(buf);
    m_write(&m, whole, NULL, NULL, NULL, 9);
    files[1] = whole;
    ck_assert_int_eq(open_served_n(files, 2, &s), 0);
    m_write(&m, whole, NULL, NULL, NULL, 9);
    ck_assert_int_eq(open_served(whole, &w), 0);
    assert_same_state(s, w);
    rk_state_close(s);
    rk_state_close(w);
    s = w = NULL;

    /* a missing base, then a good whole snapshot */
    m_write(&base_m, base_file, NULL, NULL, NULL, 5);
    m_write(&m, overlay, &base_m, base_file, "o-base" SNAP_SUFFIX, 9);
    unlink(base_file);
    m_write(&m, whole, NULL, NULL, NULL, 9);
    ck_assert_int_eq(open_served_n(files, 2, &s), 0);
    rk_state_close(s);
    s = NULL;

    /* a whole snapshot with a tombstone */
    ck_assert_int_eq(snap_writer_open(whole, &sw, err, sizeof err), 0);
    ck_assert_int_eq(snap_writer_table(sw, "a"), 0);
    ck_assert_int_eq(snap_writer_add(sw, "k1", 2, "v", 1), 0);
    ck_assert_int_eq(snap_writer_add_tombstone(sw, "k2", 2), 0);
    ck_assert_msg(snap_writer_finish(sw, &test_am, NULL, NULL, 0, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s", whole);
    buf = read_file(&len);
    ck_assert_int_eq(snap_verify(buf, len, &info, NULL, NULL, NULL, err, sizeof err), RK_ECORRUPT);
    free(buf);
    ck_assert_int_eq(open_served(whole, &s), RK_ECORRUPT);
    ck_assert_ptr_null(s);
}
END_TEST

/* ------------------------------------------------------------ against the model */

/* Table t's (m_names index; -1: a table the model has not) value of key k
 * in m: 1 with it in val, *vlen; 0 when m has no such entry. */
static int m_get(const struct model *m, int t, int k, uint8_t *val, uint32_t *vlen)
{
    if (t < 0 || k >= M_KEYS || !m->has_table[t] || !m->v[t][k])
        return 0;
    *vlen = m_val(t, k, m->v[t][k], val);
    return 1;
}

struct scan_stop {
    int n, stop_at;
    struct scan_out *out;
};

static int scan_stopping(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct scan_stop *st = arg;

    scan_append(st->out, key, klen, val, vlen);
    return ++st->n == st->stop_at ? 7 : 0;
}

/* s holds model m: every get (every key of every table, keys past the
 * last, before the first, between two, the empty key; tables neither
 * has), scans by prefix (ties on key_prefix, a prefix with a NUL, one of
 * a single key, none) in key order (m_key's order is k's), and a scan
 * stopped by its callback.  corrupt_ok: an answer may be RK_ECORRUPT (a
 * base changed under s) instead of the model's, never another; returns
 * how many were. */
static int assert_model_state(rk_state *s, const struct model *m, int corrupt_ok)
{
    static const struct {
        const char *p;
        uint32_t len;
    } prefixes[] = {{"", 0},          {"a", 1},           {"ab", 2},
                    {"ab\0", 3},      {"ab\0\0\0", 5},    {"k", 1},
                    {"key-", 4},      {"key-001", 7},     {"key-0010", 8},
                    {"key-00100", 9}, {"key-00100x", 10}, {"key-00299x", 10},
                    {"key-00300", 9}, {"key-0015y", 9},   {"q", 1}};
    static const struct {
        const char *k;
        uint32_t len;
    } absent[] = {{"", 0}, {"a", 1}, {"ab\0\0\0", 5}, {"key-00100y", 10}, {"key-0010", 8}, {"zzz", 3}};
    static struct scan_out got, want;
    int n_corrupt = 0;
    char key[32];
    uint8_t val[64];

    for (int t = -2; t < M_TABLES; t++) {
        const char *name = t >= 0 ? m_names[t] : t == -1 ? "nosuch" : "";
        int mt = t >= 0 ? t : -1;
        for (int k = 0; k < M_KEYS + 2; k++) {
            uint32_t klen = m_key(k, key), vlen = 0, want_len = 0;
            void *v = NULL;
            int rc = rk_state_get(s, name, key, klen, &v, &vlen), has = m_get(m, mt, k, val, &want_len);
            if (!(corrupt_ok && rc == RK_ECORRUPT))
                ck_assert_msg(has ? rc == 0 && vlen == want_len && (!vlen || memcmp(v, val, vlen) == 0)
                                  : rc == RK_ENOTFOUND && !v && !vlen,
                              "table \"%s\" key %d: %d (%u bytes), the model %s (%u bytes)", name, k, rc,
                              vlen, has ? "has it" : "has not", want_len);
            n_corrupt += rc == RK_ECORRUPT;
            free(v);
        }
        for (size_t i = 0; i < sizeof absent / sizeof *absent; i++) {
            void *v = NULL;
            uint32_t vlen = 0;
            int rc = rk_state_get(s, name, absent[i].k, absent[i].len, &v, &vlen);
            ck_assert_msg(rc == RK_ENOTFOUND || (corrupt_ok && rc == RK_ECORRUPT),
                          "table \"%s\" absent key %zu: %d", name, i, rc);
            n_corrupt += rc == RK_ECORRUPT;
        }
        for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
            int rc;
            got.len = want.len = 0;
            for (int k = 0; k < M_KEYS; k++) {
                uint32_t klen = m_key(k, key), vlen = 0;
                if (klen >= prefixes[i].len && memcmp(key, prefixes[i].p, prefixes[i].len) == 0 &&
                    m_get(m, mt, k, val, &vlen))
                    scan_append(&want, key, klen, val, vlen);
            }
            rc = rk_state_scan(s, name, prefixes[i].p, prefixes[i].len, scan_append, &got);
            if (corrupt_ok && rc == RK_ECORRUPT) {
                /* what came before the damage is the model's */
                ck_assert_msg(got.len <= want.len && memcmp(got.buf, want.buf, got.len) == 0,
                              "table \"%s\", scan of prefix %zu before RK_ECORRUPT", name, i);
                n_corrupt++;
                continue;
            }
            ck_assert_msg(rc == 0 && got.len == want.len && memcmp(got.buf, want.buf, got.len) == 0,
                          "table \"%s\", scan of prefix %zu: %d, %zu bytes, the model's %zu", name, i, rc,
                          got.len, want.len);
        }
        {
            /* stopped at its third entry: that value returned, the first three seen */
            struct scan_stop st = {.stop_at = 3, .out = &got};
            size_t n_want = 0, at = 0;
            int rc;
            got.len = 0;
            rc = rk_state_scan(s, name, NULL, 0, scan_stopping, &st);
            for (int k = 0; k < M_KEYS && n_want < 3; k++) {
                uint32_t klen = m_key(k, key), vlen = 0;
                if (m_get(m, mt, k, val, &vlen)) {
                    n_want++;
                    at += 8 + klen + vlen;
                }
            }
            if (corrupt_ok && rc == RK_ECORRUPT) {
                n_corrupt++;
                continue;
            }
            ck_assert_int_eq(rc, n_want == 3 ? 7 : 0);
            ck_assert_uint_eq(got.len, at);
        }
    }
    return n_corrupt;
}

/* An overlay over its base, and the whole snapshot of the same state,
 * read as the model says, get by get and scan by scan, over 12 rounds:
 * overwrites, new keys, deletes (tombstones, of keys the base has and has
 * not), a table emptied, tables the base has not before, between and
 * after the base's, keys that tie on their first 8 bytes (key_prefix,
 * runs of them longer than the reader's index stride), a base without
 * table "a" and an empty base; also the base alone (a whole snapshot). */
START_TEST(overlay_and_whole_snapshot_read_as_the_model)
{
    struct model base_m, m;
    unsigned seed = 4242;
    char base_file[320], overlay[320], whole[320];

    snprintf(base_file, sizeof base_file, "%s/g-base" SNAP_SUFFIX, dir);
    snprintf(overlay, sizeof overlay, "%s/g" SNAP_SUFFIX, dir);
    snprintf(whole, sizeof whole, "%s/w" SNAP_SUFFIX, dir);
    for (int round = 0; round < 12; round++) {
        rk_state *s = NULL;
        m_round(&base_m, &m, &seed, round);
        m_write(&base_m, base_file, NULL, NULL, NULL, 5);
        m_write(&m, overlay, &base_m, base_file, "g-base" SNAP_SUFFIX, 9);
        ck_assert_int_eq(open_served(overlay, &s), 0);
        ck_assert_int_eq(assert_model_state(s, &m, 0), 0);
        rk_state_close(s);
        m_write(&m, whole, NULL, NULL, NULL, 9);
        ck_assert_int_eq(open_served(whole, &s), 0);
        ck_assert_int_eq(assert_model_state(s, &m, 0), 0);
        rk_state_close(s);
        m_write(&base_m, whole, NULL, NULL, NULL, 5);
        ck_assert_int_eq(open_served(whole, &s), 0);
        ck_assert_int_eq(assert_model_state(s, &base_m, 0), 0);
        rk_state_close(s);
    }
}
END_TEST

/* ------------------------------------------------------------ against a brute-force model */

/* Random tables for random_keys_read_as_a_brute_force_model: keys of 0 to
 * R_KEY_MAX bytes over four letters, NUL among them, so that many keys are
 * prefixes of others and many tie on their first 8 bytes (key_prefix pads
 * a short key with NULs: "a" and "a\0" tie too).  Each round's seed is the
 * run's (R_SEED, or RK_SNAPSHOT_SEED to try others) plus the round. */
#define R_SEED 20261207u
#define R_ROUNDS 12
#define R_KEY_MAX 11
#define R_KEYS_MAX 300 /* per table */
#define R_TABLES 4

static const uint8_t r_letters[] = {0x00, 0x01, 'a', 0xff};

/* The tables, in name order (the writer's), by what they are: the base's
 * alone (the overlay has no such table), the base's with the overlay's
 * changes, the base's with every key deleted, the overlay's alone. */
enum r_kind { R_BASE_ONLY, R_BOTH, R_EMPTIED, R_OVERLAY_ONLY };
static const char *const r_names[R_TABLES] = {"base-only", "both", "emptied", "overlay-only"};

/* A key of a table: the version of its value in the base and in the
 * overlay's state (0: no entry), and whether the overlay has a tombstone
 * of it (of a key the base has: a delete; of one it has not: harmless).
 * key has room for a probe one byte longer than any key. */
struct r_key {
    uint8_t key[R_KEY_MAX + 1];
    uint32_t klen;
    int was, now, tomb;
};

struct r_table {
    struct r_key k[R_KEYS_MAX]; /* distinct, in key order once drawn */
    size_t n;
};

/* Berkeley DB's default order, written here rather than taken from the
 * code under test: bytes, then the shorter first. */
static int r_cmp(const void *a, const void *b)
{
    const struct r_key *x = a, *y = b;
    uint32_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = n ? memcmp(x->key, y->key, n) : 0;

    if (c)
        return c;
    return (x->klen > y->klen) - (x->klen < y->klen);
}

/* Version `version`'s value of k: 0 to 12 bytes, from a hash of the key,
 * so a value read under another key, or another version, differs. */
static uint32_t r_val(const struct r_key *k, int version, uint8_t *val)
{
    uint32_t h = 2166136261u, n;

    for (uint32_t i = 0; i < k->klen; i++)
        h = (h ^ k->key[i]) * 16777619u;
    h = (h ^ k->klen) * 16777619u;
    n = (h + (uint32_t)version) % 13;
    for (uint32_t j = 0; j < n; j++)
        val[j] = (uint8_t)((h >> (j % 4 * 8)) + (uint32_t)version * 31 + j);
    return n;
}

/* k as hex for a failure message ("(empty)" for the empty key). */
static const char *r_hex(const uint8_t *key, uint32_t klen, char *buf)
{
    buf[0] = '\0';
    for (uint32_t i = 0; i < klen; i++)
        sprintf(buf + 3 * i, "%02x%s", key[i], i + 1 < klen ? " " : "");
    return klen ? buf : "(empty)";
}

/* Draws a key for t into k: any length and letters; or one of the round's
 * two 8-byte stems (one ends in NULs), cut or extended (runs of keys that
 * tie on key_prefix, longer than the reader's index stride); or one of t's
 * keys with a letter added, removed or changed.  0 when t has it already. */
static int r_draw_key(const struct r_table *t, const uint8_t stems[2][8], unsigned *seed, struct r_key *k)
{
    uint8_t letter = r_letters[rand_r(seed) % 4];

    memset(k, 0, sizeof *k);
    switch (rand_r(seed) % 4) {
    case 0:
        k->klen = (uint32_t)(rand_r(seed) % (R_KEY_MAX + 1));
        for (uint32_t i = 0; i < k->klen; i++)
            k->key[i] = r_letters[rand_r(seed) % 4];
        break;
    case 1:
        memcpy(k->key, stems[rand_r(seed) % 2], 8);
        k->klen = 3 + (uint32_t)(rand_r(seed) % (R_KEY_MAX - 2));
        for (uint32_t i = 8; i < k->klen; i++)
            k->key[i] = r_letters[rand_r(seed) % 4];
        break;
    default:
        if (!t->n)
            return 0;
        *k = t->k[rand_r(seed) % t->n];
        if (k->klen < R_KEY_MAX && rand_r(seed) % 3 == 0)
            k->key[k->klen++] = letter;
        else if (k->klen && rand_r(seed) % 2 == 0)
            k->klen--;
        else if (k->klen)
            k->key[rand_r(seed) % k->klen] = letter;
        break;
    }
    for (size_t i = 0; i < t->n; i++)
        if (r_cmp(&t->k[i], k) == 0)
            return 0;
    return 1;
}

/* What the base and the overlay hold of key k of a table of that kind.
 * A key neither has stays in the model: gets and scans probe it. */
static void r_draw_state(struct r_key *k, enum r_kind kind, unsigned *seed)
{
    int r = rand_r(seed) % 10;

    k->was = k->now = k->tomb = 0;
    switch (kind) {
    case R_BASE_ONLY:
        k->was = k->now = r < 9;
        break;
    case R_BOTH:
        if (r < 4) { /* unchanged */
            k->was = k->now = 1;
        } else if (r < 6) { /* overwritten */
            k->was = 1;
            k->now = 2;
        } else if (r < 7) { /* deleted */
            k->was = 1;
            k->tomb = 1;
        } else if (r < 8) { /* new */
            k->now = 2;
        } else if (r < 9) { /* a tombstone of a key the base has not */
            k->tomb = 1;
        }
        break;
    case R_EMPTIED:
        k->was = r < 8;
        k->tomb = 1;
        break;
    case R_OVERLAY_ONLY:
        k->now = r < 8 ? 2 : 0;
        k->tomb = r == 8;
        break;
    }
}

/* Draws the round's tables: up to R_KEYS_MAX keys each (up to 20 in
 * every fourth round: tables shorter than a stride or empty), sorted. */
static void r_draw(struct r_table *tabs, unsigned *seed, int round)
{
    uint8_t stems[2][8] = {{0}};

    for (int i = 0; i < 8; i++)
        stems[0][i] = r_letters[rand_r(seed) % 4];
    for (int i = 0; i < 3; i++)
        stems[1][i] = r_letters[rand_r(seed) % 4];
    for (int t = 0; t < R_TABLES; t++) {
        struct r_table *tab = &tabs[t];
        size_t want = (size_t)rand_r(seed) % (round % 4 == 3 ? 21 : R_KEYS_MAX + 1);
        tab->n = 0;
        /* a bounded number of draws: a short alphabet runs out of new
         * keys of some shapes */
        for (int draws = 0; tab->n < want && draws < 8 * R_KEYS_MAX; draws++) {
            struct r_key k;
            if (!r_draw_key(tab, stems, seed, &k))
                continue;
            r_draw_state(&k, (enum r_kind)t, seed);
            tab->k[tab->n++] = k;
        }
        qsort(tab->k, tab->n, sizeof *tab->k, r_cmp);
    }
}

/* Writes the round's base (a whole snapshot of every key's `was`) at
 * base_file, or, overlay not NULL, its overlay there, over base_file
 * (named base_name in it): a PUT for every key whose version changes, a
 * tombstone for every key marked so.  A table is written when it has an
 * entry. */
static void r_write(const struct r_table *tabs, const char *base_file, const char *overlay,
                    const char *base_name)
{
    struct snap_producer p = {0};
    struct apply_meta am = test_am;
    struct snap_base base = {0};
    snap_writer *w = NULL;
    char err[512] = "";
    uint8_t val[16];

    am.applied_seq = overlay ? 9 : 5;
    snprintf(p.name, sizeof p.name, "eng0");
    p.m = (struct producer_meta){.applied_lsn = 4242, .height = am.applied_seq, .n_groups = 9};
    ck_assert_int_eq(snap_writer_open(overlay ? overlay : base_file, &w, err, sizeof err), 0);
    for (int t = 0; t < R_TABLES; t++) {
        int opened = 0;
        for (size_t i = 0; i < tabs[t].n; i++) {
            const struct r_key *k = &tabs[t].k[i];
            int version = overlay ? k->now : k->was;
            if (overlay ? k->now == k->was && !k->tomb : !k->was)
                continue;
            if (!opened) {
                ck_assert_int_eq(snap_writer_table(w, r_names[t]), 0);
                opened = 1;
            }
            if (version)
                ck_assert_int_eq(snap_writer_add(w, k->key, k->klen, val, r_val(k, version, val)), 0);
            else
                ck_assert_int_eq(snap_writer_add_tombstone(w, k->key, k->klen), 0);
        }
    }
    if (overlay) {
        struct snap_header h;
        int fd = open(base_file, O_RDONLY);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(pread(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
        close(fd);
        base.file_size = h.file_size;
        base.body_hash = h.body_hash;
        base.applied_seq = h.am.applied_seq;
        snprintf(base.name, sizeof base.name, "%s", base_name);
    }
    ck_assert_msg(snap_writer_finish(w, &am, overlay ? &base : NULL, &p, 1, err, sizeof err) == 0, "%s", err);
}

/* rk_state_get of q in table t of s answers as the model: the value of
 * the version the view has (over_base: the overlay's state, else the
 * base's), byte for byte, or RK_ENOTFOUND when it has none. */
static void r_assert_get(rk_state *s, const struct r_table *tabs, int t, int over_base, const struct r_key *q,
                         const char *where)
{
    const struct r_key *m = bsearch(q, tabs[t].k, tabs[t].n, sizeof *q, r_cmp);
    int version = !m ? 0 : over_base ? m->now : m->was;
    uint8_t want[16];
    uint32_t want_len = version ? r_val(m, version, want) : 0, vlen = 0;
    char hex[3 * (R_KEY_MAX + 1) + 1];
    void *v = NULL;
    int rc = rk_state_get(s, r_names[t], q->key, q->klen, &v, &vlen);

    if (version)
        ck_assert_msg(rc == 0 && vlen == want_len && (!vlen || memcmp(v, want, vlen) == 0),
                      "%s, table %s, get of %s: %d, %u bytes; the model's %u bytes", where, r_names[t],
                      r_hex(q->key, q->klen, hex), rc, vlen, want_len);
    else
        ck_assert_msg(rc == RK_ENOTFOUND && !v && !vlen,
                      "%s, table %s, get of %s: %d, %u bytes; the model has none", where, r_names[t],
                      r_hex(q->key, q->klen, hex), rc, vlen);
    free(v);
}

/* The model's scan of prefix[0..plen) in table t, as scan_append writes
 * it, stopping after stop_at entries (0: all); how many it wrote. */
static size_t r_model_scan(const struct r_table *tabs, int t, int over_base, const uint8_t *prefix,
                           uint32_t plen, size_t stop_at, struct scan_out *out)
{
    uint8_t val[16];
    size_t n = 0;

    out->len = 0;
    for (size_t i = 0; i < tabs[t].n && (!stop_at || n < stop_at); i++) {
        const struct r_key *k = &tabs[t].k[i];
        int version = over_base ? k->now : k->was;
        if (version && k->klen >= plen && (!plen || memcmp(k->key, prefix, plen) == 0)) {
            scan_append(out, k->key, k->klen, val, r_val(k, version, val));
            n++;
        }
    }
    return n;
}

/* rk_state_scan's callback for r_assert_view: appends each entry to out
 * (scan_append), and returns 7 at entry stop_at (0: none).  where and
 * table name the state in a failure (an entry no model entry can be: a
 * tombstone's, say). */
struct r_scan {
    struct scan_out *out;
    size_t n, stop_at;
    const char *where, *table;
};

static int r_scan_entry(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct r_scan *sc = arg;

    ck_assert_msg(klen <= R_KEY_MAX && vlen <= 12, "%s, table %s, a scan gave an entry of %u, %u bytes",
                  sc->where, sc->table, klen, vlen);
    scan_append(sc->out, key, klen, val, vlen);
    return ++sc->n == sc->stop_at ? 7 : 0;
}

/* s holds tabs as the view over_base says: every key, and every key with
 * one letter added and with its first or last byte removed, read by
 * rk_state_get; a scan of every prefix of every key (each once) and of
 * the empty prefix, byte for byte in key order; scans of the whole table
 * stopped by their callback at the first entry, the middle one and past
 * the last, which return its value (r_scan_entry's 7) or 0 when never
 * stopped. */
static void r_assert_view(rk_state *s, const struct r_table *tabs, int over_base, const char *where)
{
    static struct scan_out got, want;
    char hex[3 * (R_KEY_MAX + 1) + 1];

    for (int t = 0; t < R_TABLES; t++) {
        const struct r_table *tab = &tabs[t];
        size_t n_entries = r_model_scan(tabs, t, over_base, NULL, 0, 0, &want);
        size_t stops[3] = {1, n_entries / 2 + 1, n_entries + 1};

        for (size_t i = 0; i < tab->n; i++) {
            struct r_key q = tab->k[i];
            r_assert_get(s, tabs, t, over_base, &q, where);
            for (int l = 0; l < 4; l++) {
                q.key[q.klen] = r_letters[l];
                q.klen++;
                r_assert_get(s, tabs, t, over_base, &q, where);
                q.klen--;
            }
            if (q.klen) {
                q.klen--;
                r_assert_get(s, tabs, t, over_base, &q, where);
                memcpy(q.key, tab->k[i].key + 1, q.klen);
                r_assert_get(s, tabs, t, over_base, &q, where);
            }
        }
        /* i == tab->n: the empty prefix; otherwise the prefixes of key i
         * that key i - 1 does not share (the others were scanned with it) */
        for (size_t i = 0; i <= tab->n; i++) {
            const struct r_key *k = i < tab->n ? &tab->k[i] : NULL;
            uint32_t shared = 0;
            if (k && i > 0)
                while (shared < k->klen && shared < tab->k[i - 1].klen &&
                       k->key[shared] == tab->k[i - 1].key[shared])
                    shared++;
            for (uint32_t plen = k ? shared + 1 : 0; plen <= (k ? k->klen : 0); plen++) {
                const uint8_t *prefix = k ? k->key : NULL;
                struct r_scan sc = {.out = &got, .where = where, .table = r_names[t]};
                int rc;
                r_model_scan(tabs, t, over_base, prefix, plen, 0, &want);
                got.len = 0;
                rc = rk_state_scan(s, r_names[t], prefix, plen, r_scan_entry, &sc);
                ck_assert_msg(rc == 0 && got.len == want.len && memcmp(got.buf, want.buf, got.len) == 0,
                              "%s, table %s, scan of prefix %s: %d, %zu bytes; the model's %zu", where,
                              r_names[t], r_hex(prefix, plen, hex), rc, got.len, want.len);
            }
        }
        for (int j = 0; j < 3; j++) {
            struct r_scan sc = {.out = &got, .stop_at = stops[j], .where = where, .table = r_names[t]};
            int rc;
            r_model_scan(tabs, t, over_base, NULL, 0, stops[j], &want);
            got.len = 0;
            rc = rk_state_scan(s, r_names[t], NULL, 0, r_scan_entry, &sc);
            ck_assert_msg(rc == (stops[j] <= n_entries ? 7 : 0) && got.len == want.len &&
                              memcmp(got.buf, want.buf, got.len) == 0,
                          "%s, table %s, scan stopped at entry %zu of %zu: %d, %zu bytes; the model's %zu",
                          where, r_names[t], stops[j], n_entries, rc, got.len, want.len);
        }
    }
}

/* rk_state_get and rk_state_scan read a random state as a brute-force
 * model of it does, over R_ROUNDS rounds: an overlay over its base, and
 * the base alone (a whole snapshot).  Keys of 0 to 11 bytes over {0x00,
 * 0x01, 'a', 0xff} (the empty key, keys that are prefixes of others,
 * long runs that tie on their first 8 bytes, some only by key_prefix's
 * NUL padding); a table only in the base, one only in the overlay, one in
 * both (overwrites, new keys, deletes, tombstones of keys the base has
 * not), one every key of which the overlay deletes.  Gets of every key
 * and of each with a byte added or removed; scans of every prefix of
 * every key and the empty one; scans stopped by their callback.  Fails on
 * a reader that misplaces a look-up in a table's index (the stride walk
 * started from the wrong slot, keys that tie on key_prefix compared
 * wrongly), lets a tombstone or an overwritten entry of the base show
 * through, ends a scan early or late, or drops its callback's value.  A
 * failure names its seed and round: RK_SNAPSHOT_SEED=seed replays it (and
 * other seeds try other states). */
START_TEST(random_keys_read_as_a_brute_force_model_over_a_base_and_alone)
{
    static struct r_table tabs[R_TABLES];
    const char *env = getenv("RK_SNAPSHOT_SEED");
    unsigned run_seed = env ? (unsigned)strtoul(env, NULL, 10) : R_SEED;
    char base_file[320], overlay[320], keep[320], where[128];

    snprintf(base_file, sizeof base_file, "%s/q-base" SNAP_SUFFIX, dir);
    snprintf(overlay, sizeof overlay, "%s/q" SNAP_SUFFIX, dir);
    snprintf(keep, sizeof keep, "%s/q-keep" SNAP_SUFFIX, dir);
    for (int round = 0; round < R_ROUNDS; round++) {
        unsigned seed = run_seed + (unsigned)round;
        rk_state *s = NULL;

        r_draw(tabs, &seed, round);
        r_write(tabs, base_file, NULL, NULL);
        r_write(tabs, base_file, overlay, "q-base" SNAP_SUFFIX);
        /* the open unlinks the base's link: keep it for the base's own open */
        ck_assert_int_eq(link(base_file, keep), 0);
        ck_assert_int_eq(open_served(overlay, &s), 0);
        ck_assert_int_eq(rename(keep, base_file), 0);
        snprintf(where, sizeof where, "seed %u, round %d, the overlay over its base", run_seed, round);
        r_assert_view(s, tabs, 1, where);
        rk_state_close(s);
        ck_assert_int_eq(open_served(base_file, &s), 0);
        snprintf(where, sizeof where, "seed %u, round %d, the base alone", run_seed, round);
        r_assert_view(s, tabs, 0, where);
        rk_state_close(s);
    }
}
END_TEST

struct len_offsets {
    const uint8_t *buf;
    size_t n, off[M_TABLES * M_KEYS]; /* each entry's klen field */
    size_t last[M_TABLES];            /* each table's last entry (index into off) */
    int n_tables;
};

static int len_offsets_table(void *arg, uint32_t i, const char *name, uint64_t n_entries)
{
    struct len_offsets *o = arg;

    (void)name, (void)n_entries;
    o->n_tables = (int)i + 1;
    return 0;
}

static int len_offsets_entry(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct len_offsets *o = arg;

    (void)klen, (void)val, (void)vlen;
    o->last[o->n_tables - 1] = o->n;
    o->off[o->n++] = (size_t)((const uint8_t *)key - o->buf) - 2 * sizeof(uint32_t);
    return 0;
}

/* A snapshot's entries are read in place, from a file other engines hold
 * links to: a stray write through one changes the bytes under an open
 * handle after they were verified.  Changed lengths -- every vlen set
 * huge, each table's last entry's vlen one past its table's end, every
 * klen set huge -- under an open overlay's base and under an open whole
 * snapshot: every get and scan gives the model's answer or RK_ECORRUPT
 * (some do), never a read past a table (the value would differ: a
 * reader that bounds its reads by the file, not the table, fails here)
 * nor a crash. */
START_TEST(lengths_changed_under_an_open_handle_are_corrupt_not_a_crash)
{
    static struct len_offsets offs;
    struct model base_m, m;
    unsigned seed = 99;
    char base_file[320], overlay[320], keep[320], err[512] = "";

    snprintf(base_file, sizeof base_file, "%s/c-base" SNAP_SUFFIX, dir);
    snprintf(overlay, sizeof overlay, "%s/c" SNAP_SUFFIX, dir);
    snprintf(keep, sizeof keep, "%s/keep" SNAP_SUFFIX, dir);
    for (int round = 0; round < 6; round++) {
        int as_overlay = round % 2 == 0, how = round / 2, fd;
        struct snap_info info;
        rk_state *s = NULL;
        uint8_t *buf;
        size_t len;

        m_base(&base_m, &seed);
        m = base_m;
        m_change(&m, &seed, 2 + round);
        m_write(&base_m, base_file, NULL, NULL, NULL, 5);
        m_write(&m, overlay, &base_m, base_file, "c-base" SNAP_SUFFIX, 9);
        ck_assert_int_eq(link(base_file, keep), 0); /* as another engine's link */
        buf = read_named(base_file, &len);
        offs.buf = buf;
        offs.n = 0;
        offs.n_tables = 0;
        ck_assert_msg(
            snap_verify(buf, len, &info, len_offsets_table, len_offsets_entry, &offs, err, sizeof err) == 0,
            "%s", err);
        ck_assert_int_eq(open_served(as_overlay ? overlay : base_file, &s), 0);
        ck_assert_int_eq(assert_model_state(s, as_overlay ? &m : &base_m, 0), 0);
        ck_assert_int_ge(fd = open(keep, O_RDWR), 0);
        if (how == 1) {
            for (int t = 0; t < offs.n_tables; t++) {
                uint32_t lens[2];
                memcpy(lens, buf + offs.off[offs.last[t]], sizeof lens);
                lens[1]++;
                ck_assert_int_eq(pwrite(fd, &lens[1], 4, (off_t)offs.off[offs.last[t]] + 4), 4);
            }
        } else {
            uint32_t big = 0x7ffffff0u;
            for (size_t i = 0; i < offs.n; i++)
                ck_assert_int_eq(pwrite(fd, &big, 4, (off_t)offs.off[i] + (how == 0 ? 4 : 0)), 4);
        }
        close(fd);
        ck_assert_int_gt(assert_model_state(s, as_overlay ? &m : &base_m, 1), 0);
        rk_state_close(s);
        free(buf);
        unlink(keep);
        unlink(overlay);
    }
}
END_TEST

static Suite *snapshot_suite(void)
{
    Suite *s = suite_create("snapshot");
    TCase *tc = tcase_create("snapshot");

    tcase_set_timeout(tc, 0);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, snapshot_file_round_trips);
    tcase_add_test(tc, truncated_snapshot_is_refused);
    tcase_add_test(tc, damaged_snapshot_is_refused);
    tcase_add_test(tc, snapshot_with_keys_out_of_order_is_refused);
    tcase_add_test(tc, snapshot_of_another_major_version_is_refused);
    tcase_add_test(tc, state_open_refuses_a_bad_snapshot_from_the_node);
    tcase_add_test(tc, overlay_over_its_base_reads_as_the_whole_snapshot);
    tcase_add_test(tc, overlay_that_fails_or_whose_base_fails_is_refused);
    tcase_add_test(tc, merge_of_an_overlay_with_its_base_is_the_whole_snapshot);
    tcase_add_test(tc, overlay_and_whole_snapshot_read_as_the_model);
    tcase_add_test(tc, random_keys_read_as_a_brute_force_model_over_a_base_and_alone);
    tcase_add_test(tc, lengths_changed_under_an_open_handle_are_corrupt_not_a_crash);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(snapshot_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
