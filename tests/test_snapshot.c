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
    ck_assert_msg(snap_writer_finish(w, &test_am, p, 2, err, sizeof err) == 0, "%s", err);
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
    snprintf(dir, sizeof dir, "/tmp/rk-test-snapshot.%d", (int)getpid());
    ck_assert_int_eq(mkdir(dir, 0700), 0);
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
            ck_assert_msg(snap_writer_finish(w, &test_am, NULL, 0, err, sizeof err) == 0, "%s", err);
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
    ck_assert_msg(strstr(err, "format 2.0, this libringkeep reads 1.x") != NULL, "%s", err);
    free(buf);
}
END_TEST

/* ------------------------------------------------------------ through rk_state_open */

/* A stand-in node on dir: answers one "snapshot" request with "ok <file>". */
struct fake_node {
    void *ctx, *sock;
    const char *file;
    char request[64];
};

static void *fake_node_serve(void *arg)
{
    struct fake_node *f = arg;
    char reply[512];
    int n = zmq_recv(f->sock, f->request, sizeof f->request - 1, 0);

    if (n >= 0)
        f->request[n < (int)sizeof f->request - 1 ? n : (int)sizeof f->request - 1] = '\0';
    snprintf(reply, sizeof reply, "ok %s", f->file);
    zmq_send(f->sock, reply, strlen(reply), 0);
    return NULL;
}

/* rk_state_open(dir) while a stand-in node answers with file; returns its
 * result (*out: the handle, or NULL). */
static int open_served(const char *file, rk_state **out)
{
    struct fake_node f = {.file = file};
    char lock_path[300], endpoint[400], pid[32];
    pthread_t t;
    int fd, rc, linger = 0;

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
    pthread_join(t, NULL);
    ck_assert_str_eq(f.request, "snapshot");
    zmq_close(f.sock);
    zmq_ctx_term(f.ctx);
    close(fd); /* the lock goes with it */
    return rc;
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
