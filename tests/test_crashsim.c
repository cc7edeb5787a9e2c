/* test_crashsim.c -- the power-loss simulation of the I/O seam
 * (persist/crashsim.c): after a simulated power cut, what was fsynced is
 * there byte for byte and what was not is gone.
 *
 * What it tests:
 *   files    unsynced appends dropped, a synced append kept; unsynced
 *            overwrites (pwrite, write at the file offset, ftruncate,
 *            O_TRUNC) reverted; torn writes: every 512-byte (or 4096-byte)
 *            sector old or new, never mixed, both kinds seen, appends kept
 *            as a prefix of whole sectors.
 *   entries  a file created, written and fsynced but its folder not is
 *            gone; an unlink or a rename over an old file without a folder
 *            fsync is undone (the checkpoint's temp + rename pattern); with
 *            the folder fsync they stay, and no hidden link is left.
 *   counting at:N cuts at the Nth call; "serving" counts from
 *            crashsim_serving(); the report line; specs refused.
 *   Berkeley DB  a database Berkeley DB created (temp file renamed into
 *            place) and a log file it started, each holding committed
 *            transactions, survive a cut after a checkpoint: regressions
 *            for the missing folder fsyncs in sys.c's bdb_rename and
 *            bdb_open; region files cut short do not stop the store from
 *            opening (recovery used to die of SIGBUS), found by
 *            test_powerloss.
 *
 * How: each case forks a child that prepares its files with plain system
 * calls (written, fsynced, folder fsynced: on disk), arms the simulation,
 * makes its seam calls and is cut; the parent sees it die by SIGKILL and
 * checks the files.  Nothing waits on time.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "persist/crashsim.h"
#include "ringkeep.h"
#include "persist/store.h"

Suite *crashsim_suite(void);

static char dir[64], report[96];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/rk-test-crashsim-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(report, sizeof report, "%s.report", dir);
    unlink(report);
}

static void teardown(void)
{
    char cmd[256];

    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, report);
    ck_assert_int_eq(system(cmd), 0);
}

static char *in_dir(const char *name)
{
    static char paths[4][160];
    static int next;
    char *p = paths[next++ % 4];

    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

static void fill(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed + i * 7 + (i >> 9));
}

/* A file on disk: written, fsynced, its folder fsynced (plain calls). */
static void put_synced(const char *path, const uint8_t *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), dfd;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
    ck_assert_int_eq(fsync(fd), 0);
    close(fd);
    dfd = open(dir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(dfd, 0);
    ck_assert_int_eq(fsync(dfd), 0);
    close(dfd);
}

/* The file's bytes (malloc'd, *len), or NULL when it does not exist. */
static uint8_t *slurp(const char *path, size_t *len)
{
    struct stat st;
    uint8_t *buf;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return NULL;
    ck_assert_int_eq(fstat(fd, &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static void assert_file(const char *path, const uint8_t *want, size_t want_len)
{
    size_t len = 0;
    uint8_t *got = slurp(path, &len);

    ck_assert_msg(got, "%s is missing", path);
    ck_assert_msg(len == want_len, "%s: %zu bytes, want %zu", path, len, want_len);
    ck_assert_msg(memcmp(got, want, len) == 0, "%s: not the bytes that were synced", path);
    free(got);
}

static void assert_missing(const char *path)
{
    struct stat st;

    ck_assert_msg(stat(path, &st) != 0 && errno == ENOENT, "%s exists", path);
}

/* No hidden link of the simulation is left in the folder. */
static void assert_no_hidden(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL)
        ck_assert_msg(strncmp(de->d_name, ".crashsim-", 10) != 0, "left behind: %s", de->d_name);
    closedir(d);
}

/* Arms the simulation in the child with spec + its report file. */
static void arm(const char *spec)
{
    char full[256];

    snprintf(full, sizeof full, "%s,report:%s", spec, report);
    if (crashsim_configure(full) != 0)
        _exit(90);
}

/* The last seam call of a child: cuts when armed with at: that count. */
static void trigger(void)
{
    sys_unlink(in_dir("no-such-file"));
}

/* Runs body in a child, which must die by the simulated cut (SIGKILL). */
static void run_cut(void (*body)(void))
{
    int status = 0;
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        body();
        _exit(91); /* not cut */
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child not cut: status %d", status);
}

/* The report's first line (the child appends one per cut). */
static void report_line(char *line, size_t size)
{
    FILE *f = fopen(report, "r");

    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(line, (int)size, f));
    fclose(f);
}

/* ------------------------------------------------------------ files */

static uint8_t a[64 * 1024], b[64 * 1024], c[64 * 1024];

static void body_append(void)
{
    int fd;

    arm("at:5");
    fd = sys_open(in_dir("f"), O_WRONLY | O_APPEND | O_CLOEXEC); /* 1 */
    sys_write(fd, b, 3000);                                      /* 2 */
    sys_fsync(fd);                                               /* 3 */
    sys_write(fd, c, 500);                                       /* 4 */
    trigger();                                                   /* 5 */
}

START_TEST(unsynced_append_is_dropped_synced_append_kept)
{
    uint8_t want[4000];

    fill(a, sizeof a, 1), fill(b, sizeof b, 2), fill(c, sizeof c, 3);
    put_synced(in_dir("f"), a, 1000);
    run_cut(body_append);
    memcpy(want, a, 1000);
    memcpy(want + 1000, b, 3000);
    assert_file(in_dir("f"), want, 4000);
}
END_TEST

static void body_overwrite(void)
{
    int fd;

    arm("at:5");
    fd = sys_open(in_dir("f"), O_RDWR | O_CLOEXEC); /* 1 */
    sys_pwrite(fd, b, 3000, 1000);                  /* 2 */
    lseek(fd, 5000, SEEK_SET);
    sys_write(fd, c, 100);   /* 3: at the file offset */
    sys_ftruncate(fd, 2000); /* 4 */
    trigger();               /* 5 */
}

START_TEST(unsynced_overwrite_and_truncation_are_reverted)
{
    fill(a, sizeof a, 4), fill(b, sizeof b, 5), fill(c, sizeof c, 6);
    put_synced(in_dir("f"), a, 8192);
    run_cut(body_overwrite);
    assert_file(in_dir("f"), a, 8192);
}
END_TEST

static void body_o_trunc(void)
{
    int fd;

    arm("at:3");
    fd = sys_open(in_dir("f"), O_WRONLY | O_TRUNC | O_CLOEXEC); /* 1 */
    sys_write(fd, b, 100);                                      /* 2 */
    trigger();                                                  /* 3 */
}

START_TEST(open_with_o_trunc_is_reverted)
{
    fill(a, sizeof a, 7), fill(b, sizeof b, 8);
    put_synced(in_dir("f"), a, 5000);
    run_cut(body_o_trunc);
    assert_file(in_dir("f"), a, 5000);
}
END_TEST

#define TORN_SECTORS 64
#define TORN_APPEND 10

/* Writes over every sector and appends; after the cut every sector is
 * wholly old or wholly new, both are seen, and the append survives as a
 * prefix of whole new sectors. */
static void torn_case(uint32_t sector)
{
    size_t synced = (size_t)TORN_SECTORS * sector, len = 0, n_old = 0, n_new = 0;
    uint8_t *got, *big_a = malloc(synced), *big_b = malloc(synced + (size_t)TORN_APPEND * sector);
    char line[512];
    unsigned long long reverted = 0, torn = 0;

    ck_assert_ptr_nonnull(big_a);
    ck_assert_ptr_nonnull(big_b);
    fill(big_a, synced, 9);
    fill(big_b, synced + (size_t)TORN_APPEND * sector, 10);
    put_synced(in_dir("f"), big_a, synced);
    /* the child writes big_b over it in one pwrite */
    {
        int status = 0;
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            char spec[64];
            int fd;
            snprintf(spec, sizeof spec, "at:3,torn,sector:%u", sector);
            arm(spec);
            fd = sys_open(in_dir("f"), O_RDWR | O_CLOEXEC);                  /* 1 */
            sys_pwrite(fd, big_b, synced + (size_t)TORN_APPEND * sector, 0); /* 2 */
            trigger();                                                       /* 3 */
            _exit(91);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child not cut: %d", status);
    }
    got = slurp(in_dir("f"), &len);
    ck_assert_ptr_nonnull(got);
    ck_assert_msg(len >= synced && len <= synced + (size_t)TORN_APPEND * sector && len % sector == 0,
                  "size %zu after the cut", len);
    for (size_t s = 0; s < len / sector; s++) {
        const uint8_t *at = got + s * sector;
        int is_new = memcmp(at, big_b + s * sector, sector) == 0;
        int is_old = s < TORN_SECTORS && memcmp(at, big_a + s * sector, sector) == 0;
        ck_assert_msg(is_new || is_old, "sector %zu is neither the old nor the new content", s);
        if (s < TORN_SECTORS) {
            n_old += is_old;
            n_new += is_new;
        }
    }
    /* 64 fair coins: all alike has odds 2^-63 */
    ck_assert_msg(n_old > 0 && n_new > 0, "torn: %zu old and %zu new sectors", n_old, n_new);
    report_line(line, sizeof line);
    ck_assert_ptr_nonnull(strstr(line, "op=unlink"));
    ck_assert_int_eq(sscanf(strstr(line, "sectors_reverted="), "sectors_reverted=%llu sectors_torn=%llu",
                            &reverted, &torn),
                     2);
    ck_assert_uint_eq(reverted, n_old);
    ck_assert_uint_eq(torn, n_new);
    free(got);
    free(big_a);
    free(big_b);
}

START_TEST(torn_write_keeps_each_512_byte_sector_whole)
{
    torn_case(512);
}
END_TEST

START_TEST(torn_write_keeps_each_4096_byte_sector_whole)
{
    torn_case(4096);
}
END_TEST

/* ------------------------------------------------------------ entries */

static void body_create(int sync_folder)
{
    int fd;

    arm(sync_folder ? "at:6" : "at:4");
    fd = sys_open(in_dir("new"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600); /* 1 */
    sys_write(fd, b, 2000);                                                      /* 2 */
    sys_fsync(fd);                                                               /* 3 */
    if (sync_folder)
        sys_fsync_dir(dir); /* 4, 5: open and fsync */
    trigger();
}

static void body_create_no_sync(void)
{
    body_create(0);
}

static void body_create_sync(void)
{
    body_create(1);
}

START_TEST(file_created_without_folder_fsync_is_gone)
{
    fill(b, sizeof b, 11);
    run_cut(body_create_no_sync);
    assert_missing(in_dir("new"));
    run_cut(body_create_sync);
    assert_file(in_dir("new"), b, 2000);
}
END_TEST

static void body_unlink(int sync_folder)
{
    arm(sync_folder ? "at:4" : "at:2");
    sys_unlink(in_dir("f")); /* 1 */
    if (sync_folder)
        sys_fsync_dir(dir); /* 2, 3 */
    trigger();
}

static void body_unlink_no_sync(void)
{
    body_unlink(0);
}

static void body_unlink_sync(void)
{
    body_unlink(1);
}

START_TEST(unlink_without_folder_fsync_is_undone)
{
    fill(a, sizeof a, 12);
    put_synced(in_dir("f"), a, 3000);
    run_cut(body_unlink_no_sync);
    assert_file(in_dir("f"), a, 3000);
    assert_no_hidden();
    run_cut(body_unlink_sync);
    assert_missing(in_dir("f"));
    assert_no_hidden();
}
END_TEST

/* The checkpoint's pattern: temp written and fsynced, renamed over the old
 * file; without the folder fsync the old file is back and the temp gone. */
static void body_rename(int sync_folder)
{
    int fd;

    arm(sync_folder ? "at:7" : "at:5");
    fd = sys_open(in_dir(".final.tmp"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600); /* 1 */
    sys_write(fd, b, 4000);                                                              /* 2 */
    sys_fsync(fd);                                                                       /* 3 */
    sys_rename(in_dir(".final.tmp"), in_dir("final"));                                   /* 4 */
    if (sync_folder)
        sys_fsync_dir(dir); /* 5, 6 */
    trigger();
}

static void body_rename_no_sync(void)
{
    body_rename(0);
}

static void body_rename_sync(void)
{
    body_rename(1);
}

START_TEST(rename_without_folder_fsync_is_undone)
{
    fill(a, sizeof a, 13), fill(b, sizeof b, 14);
    put_synced(in_dir("final"), a, 6000);
    run_cut(body_rename_no_sync);
    assert_file(in_dir("final"), a, 6000);
    assert_missing(in_dir(".final.tmp"));
    assert_no_hidden();
    run_cut(body_rename_sync);
    assert_file(in_dir("final"), b, 4000);
    assert_missing(in_dir(".final.tmp"));
    assert_no_hidden();
}
END_TEST

/* A process that ends without a cut made its unlinks for good: no hidden
 * link stays behind. */
START_TEST(exit_without_cut_leaves_no_hidden_link)
{
    int status = 0;
    pid_t pid;

    fill(a, sizeof a, 15);
    put_synced(in_dir("f"), a, 100);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        arm("at:1000");
        sys_unlink(in_dir("f"));
        exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    assert_missing(in_dir("f"));
    assert_no_hidden();
}
END_TEST

/* ------------------------------------------------------------ counting */

static void body_serving(void)
{
    int fd;

    arm("at:2,serving");
    fd = sys_open(in_dir("f"), O_WRONLY | O_APPEND | O_CLOEXEC);
    for (int i = 0; i < 5; i++)
        sys_write(fd, b, 100); /* tracked, not counted */
    crashsim_serving();
    sys_write(fd, c, 100); /* 1 */
    trigger();             /* 2 */
}

START_TEST(serving_counts_from_crashsim_serving)
{
    char line[512];

    fill(a, sizeof a, 16), fill(b, sizeof b, 17), fill(c, sizeof c, 18);
    put_synced(in_dir("f"), a, 700);
    run_cut(body_serving);
    assert_file(in_dir("f"), a, 700);
    report_line(line, sizeof line);
    ck_assert_msg(strncmp(line, "crash call=2 op=unlink target=", 30) == 0, "report: %s", line);
    ck_assert_msg(strstr(line, " files=1 bytes_dropped=600 "), "report: %s", line);
}
END_TEST

/* The cut's child allocates nothing.  It is forked from a multi-threaded
 * process (the node): a lock of the allocator that another thread held at
 * the fork stays held in the child, which then waits for it forever and
 * leaves the node stopped (once in CI under ASan: test_powerloss's engines
 * waited 300 s for durability).  This process's malloc, calloc, realloc
 * and free are wrapped: after a fork in the armed child they write a byte
 * to a marker file.  Not under ASan, which owns those symbols (the build
 * where the hang was seen: there this test is not run). */
#ifndef __SANITIZE_ADDRESS__
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
static volatile sig_atomic_t watch_forks, in_fork_child;
static int alloc_marker = -1;

static void note_alloc(void)
{
    if (in_fork_child && alloc_marker >= 0)
        (void)!write(alloc_marker, "m", 1);
}

void *malloc(size_t n)
{
    note_alloc();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    note_alloc();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    note_alloc();
    return __libc_realloc(p, n);
}

void free(void *p)
{
    if (p) /* takes the allocator's locks too */
        note_alloc();
    __libc_free(p);
}

static void after_fork_in_child(void)
{
    in_fork_child = watch_forks;
}

static void body_no_alloc(void)
{
    int fd;

    alloc_marker = open(in_dir("allocations"), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (alloc_marker < 0 || pthread_atfork(NULL, NULL, after_fork_in_child) != 0)
        _exit(92);
    arm("at:4");
    fd = sys_open(in_dir("f"), O_WRONLY | O_APPEND | O_CLOEXEC); /* 1 */
    sys_write(fd, b, 3000);                                      /* 2 */
    sys_unlink(in_dir("g"));                                     /* 3: an entry to undo */
    watch_forks = 1;
    trigger(); /* 4 */
}

START_TEST(cut_child_allocates_nothing)
{
    char line[512];
    size_t n = 0;
    uint8_t *marks;

    fill(a, sizeof a, 19), fill(b, sizeof b, 20);
    put_synced(in_dir("f"), a, 500);
    put_synced(in_dir("g"), a, 100);
    run_cut(body_no_alloc);
    marks = slurp(in_dir("allocations"), &n);
    ck_assert_ptr_nonnull(marks);
    free(marks);
    ck_assert_msg(n == 0, "the cut's child allocated %zu times", n);
    /* and the cut did its work: the report (line and details), the files */
    assert_file(in_dir("f"), a, 500);
    assert_file(in_dir("g"), a, 100);
    report_line(line, sizeof line);
    ck_assert_msg(strncmp(line, "crash call=4 op=unlink target=", 30) == 0, "report: %s", line);
    ck_assert_msg(strstr(line, " files=1 bytes_dropped=3000 ") && strstr(line, " entries_undone=1 "),
                  "report: %s", line);
    marks = slurp(report, &n);
    ck_assert_ptr_nonnull(marks);
    marks[n] = '\0';
    ck_assert_msg(strstr((char *)marks, "\n  file ") && strstr((char *)marks, "\n  undo unlink "),
                  "report: %s", (char *)marks);
    free(marks);
}
END_TEST
#endif

START_TEST(specs)
{
    const char *bad[] = {"at:0",
                         "at:x",
                         "at:",
                         "seed:1,at:2",
                         "within:5",
                         "at:1,sector:1000",
                         "at:1,sector:256",
                         "at:1,sector:131072",
                         "bogus",
                         "at:1,report:",
                         "at:1,,torn",
                         "at:12x"};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(crashsim_configure(bad[i]) == RK_EINVAL, "accepted %s", bad[i]);
    ck_assert(!crashsim_active());
    ck_assert_int_eq(crashsim_configure("seed:5,within:10,torn,sector:4096,serving,report:/tmp/a,b"), 0);
    ck_assert(crashsim_active());
    ck_assert_int_eq(crashsim_configure(""), 0);
    ck_assert(!crashsim_active());
    ck_assert_int_eq(crashsim_configure("at:7"), 0);
    ck_assert_int_eq(crashsim_configure(NULL), 0);
    ck_assert(!crashsim_active());
}
END_TEST

/* ------------------------------------------------------------ Berkeley DB */

static const char bdb_key[] = "acknowledged", bdb_val[] = "it was committed with sync";

/* A database created inside the store's environment (Berkeley DB writes a
 * temp file __db.* and renames it into place), a committed record in it,
 * a checkpoint (recovery starts after it), then the cut. */
static void body_bdb_create(void)
{
    char e[512];
    store *s = NULL;
    DB *db = NULL;
    DB_ENV *env;
    DBT k = {.data = (void *)bdb_key, .size = sizeof bdb_key},
        v = {.data = (void *)bdb_val, .size = sizeof bdb_val};

    sys_install();
    arm("at:1000000000");
    if (store_open(dir, STORE_CREATE, 16, &s, e, sizeof e) != 0)
        _exit(80);
    env = store_env(s);
    if (db_create(&db, env, 0) ||
        db->open(db, NULL, "x.db", NULL, DB_BTREE, DB_CREATE | DB_AUTO_COMMIT, 0600) ||
        db->put(db, NULL, &k, &v, DB_AUTO_COMMIT) || env->txn_checkpoint(env, 0, 0, DB_FORCE))
        _exit(81);
    crashsim_cut();
}

START_TEST(berkeley_db_created_database_survives_a_cut)
{
    char e[512];
    store *s = NULL;
    DB *db = NULL;
    DBT k = {.data = (void *)bdb_key, .size = sizeof bdb_key}, v = {.flags = DB_DBT_MALLOC};
    int rc;

    run_cut(body_bdb_create);
    ck_assert_msg(store_open(dir, 0, 16, &s, e, sizeof e) == 0, "store_open after the cut: %s", e);
    ck_assert_int_eq(db_create(&db, store_env(s), 0), 0);
    rc = db->open(db, NULL, "x.db", NULL, DB_BTREE, DB_AUTO_COMMIT, 0600);
    ck_assert_msg(rc == 0, "x.db after the cut: %s", db_strerror(rc));
    rc = db->get(db, NULL, &k, &v, 0);
    ck_assert_msg(rc == 0, "the committed record after the cut: %s", db_strerror(rc));
    ck_assert_int_eq(v.size, sizeof bdb_val);
    ck_assert_mem_eq(v.data, bdb_val, sizeof bdb_val);
    free(v.data);
    db->close(db, 0);
    store_close(s);
}
END_TEST

#define LOG_MAX (256 * 1024)
#define LOG_VALUE 1024

/* A Berkeley DB environment with small log files: records committed with
 * sync until a second log file has started and holds some of them. */
static void body_bdb_log(void)
{
    char home[128], k[32];
    uint8_t val[LOG_VALUE];
    DB_ENV *env = NULL;
    DB *db = NULL;
    struct stat st;
    int n = 0;

    sys_install();
    snprintf(home, sizeof home, "%s/env", dir);
    if (mkdir(home, 0700) != 0)
        _exit(70);
    arm("at:1000000000");
    if (db_env_create(&env, 0) || env->set_lg_max(env, LOG_MAX) ||
        env->open(env, home, DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL, 0600) ||
        db_create(&db, env, 0) ||
        db->open(db, NULL, "l.db", NULL, DB_BTREE, DB_CREATE | DB_AUTO_COMMIT, 0600))
        _exit(71);
    sys_fsync_dir(home); /* what exists so far is on disk */
    memset(val, 'v', sizeof val);
    for (;; n++) {
        int len = snprintf(k, sizeof k, "k%06d", n);
        DBT dk = {.data = k, .size = (uint32_t)len}, dv = {.data = val, .size = sizeof val};
        if (n > 4 * LOG_MAX / LOG_VALUE || db->put(db, NULL, &dk, &dv, DB_AUTO_COMMIT))
            _exit(72);
        snprintf(home, sizeof home, "%s/env/log.0000000002", dir);
        if (stat(home, &st) == 0 && st.st_size > 0 && n % 8 == 7)
            break; /* a few records into the second log file */
    }
    {
        FILE *f = fopen(report, "a"); /* the last committed key, for the parent */
        fprintf(f, "last k%06d\n", n);
        fclose(f);
    }
    crashsim_cut();
}

/* Recovery remakes the region files (__db.0*) that the cut left short and
 * says so on stderr ("unable to join the environment"): not a failure. */
static void quiet(const DB_ENV *env, const char *prefix, const char *msg)
{
    (void)env, (void)prefix, (void)msg;
}

START_TEST(berkeley_db_new_log_file_survives_a_cut)
{
    char home[128], line[512], last[32] = "";
    DB_ENV *env = NULL;
    DB *db = NULL;
    DBT k = {0}, v = {.flags = DB_DBT_MALLOC};
    FILE *f;
    int rc;

    run_cut(body_bdb_log);
    f = fopen(report, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        sscanf(line, "last %31s", last);
    fclose(f);
    ck_assert_str_ne(last, "");
    snprintf(home, sizeof home, "%s/env", dir);
    ck_assert_int_eq(db_env_create(&env, 0), 0);
    env->set_errcall(env, quiet);
    rc = env->open(env, home,
                   DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL | DB_RECOVER, 0600);
    ck_assert_msg(rc == 0, "recovery after the cut: %s", db_strerror(rc));
    ck_assert_int_eq(db_create(&db, env, 0), 0);
    rc = db->open(db, NULL, "l.db", NULL, DB_BTREE, DB_AUTO_COMMIT, 0600);
    ck_assert_msg(rc == 0, "l.db after the cut: %s", db_strerror(rc));
    k.data = last;
    k.size = (uint32_t)strlen(last);
    rc = db->get(db, NULL, &k, &v, 0);
    ck_assert_msg(rc == 0, "%s, committed with sync before the cut: %s", last, db_strerror(rc));
    ck_assert_int_eq(v.size, LOG_VALUE);
    free(v.data);
    db->close(db, 0);
    env->close(env, 0);
}
END_TEST

/* Berkeley DB's region files (__db.001 ...) grow by writes it never
 * fsyncs: after a power cut one can be shorter than its header says.  The
 * node must start anyway (it used to die of SIGBUS in recovery, found by
 * test_powerloss).  The region files of a killed store are cut to a third
 * of their size, whole pages, as a torn cut leaves them. */
static void open_store_and_exit(void)
{
    char e[512];
    store *s = NULL;

    _exit(store_open(dir, STORE_CREATE, 16, &s, e, sizeof e) == 0 ? 0 : 1);
}

START_TEST(region_files_cut_short_are_remade)
{
    int status = 0, n_cut = 0;
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        open_store_and_exit(); /* regions left behind, as by a kill */
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "store_open: status %d", status);
    for (int i = 1; i <= 9; i++) {
        char name[16];
        struct stat st;
        snprintf(name, sizeof name, "db/__db.%03d", i);
        if (stat(in_dir(name), &st) != 0)
            continue;
        ck_assert_int_eq(truncate(in_dir(name), st.st_size / 3 / 4096 * 4096), 0);
        n_cut++;
    }
    ck_assert_int_gt(n_cut, 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        open_store_and_exit();
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "store_open after the regions were cut short: %s %d",
                  WIFSIGNALED(status) ? "signal" : "status",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}
END_TEST

Suite *crashsim_suite(void)
{
    Suite *s = suite_create("crashsim");
    TCase *tc = tcase_create("files");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, unsynced_append_is_dropped_synced_append_kept);
    tcase_add_test(tc, unsynced_overwrite_and_truncation_are_reverted);
    tcase_add_test(tc, open_with_o_trunc_is_reverted);
    tcase_add_test(tc, torn_write_keeps_each_512_byte_sector_whole);
    tcase_add_test(tc, torn_write_keeps_each_4096_byte_sector_whole);
    suite_add_tcase(s, tc);
    tc = tcase_create("entries");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, file_created_without_folder_fsync_is_gone);
    tcase_add_test(tc, unlink_without_folder_fsync_is_undone);
    tcase_add_test(tc, rename_without_folder_fsync_is_undone);
    tcase_add_test(tc, exit_without_cut_leaves_no_hidden_link);
    suite_add_tcase(s, tc);
    tc = tcase_create("counting");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, serving_counts_from_crashsim_serving);
#ifndef __SANITIZE_ADDRESS__
    tcase_add_test(tc, cut_child_allocates_nothing);
#endif
    tcase_add_test(tc, specs);
    suite_add_tcase(s, tc);
    tc = tcase_create("berkeley_db");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, berkeley_db_created_database_survives_a_cut);
    tcase_add_test(tc, berkeley_db_new_log_file_survives_a_cut);
    tcase_add_test(tc, region_files_cut_short_are_remade);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(crashsim_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
