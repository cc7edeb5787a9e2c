/* test_segment.c -- the ring refuses what it cannot trust.
 *
 *  stale:  stale or foreign files at /dev/shm/ringkeep.<name> (bad magic,
 *          not initialised, other format, wrong size, capacity, too small,
 *          group/other mode bits, other owner, not a regular file, cursors
 *          and limits out of range, missing) are refused by rk_ring_attach(),
 *          ring_reopen() and ring_inspect() with the right code and a message
 *          that names the problem, and the file is left byte for byte as it
 *          was.  ring_create() refuses an existing ring and makes 0600
 *          segments whatever the umask; ring_reopen() refuses a ring whose
 *          owner lives and takes it over, losing nothing, once it is dead.
 *  live:   garbage written into a live ring's data area (checksum, lengths,
 *          key length, type, padding, LSN, producer, claim marker, cursors)
 *          stops ring_next() with RK_ECORRUPT and a reason, after it has
 *          delivered every good record before it byte for byte; it stays
 *          stopped there.  Random data areas and cursors end in 0 or
 *          RK_ECORRUPT, and every frame delivered is one that was written.
 *  decode: frame_decode() never reads past `avail` on truncated, bit-flipped
 *          or random buffers (exact-size heap buffers, so ASan sees it).
 *  regressions: faults found while writing these tests, one test each,
 *          named after what broke.
 *
 * Rings are named seg.<runner pid>.<test pid>.<what>; the runner removes
 * every ring with its prefix when a test case ends, even after a failure.
 * Every loop is bounded.  The only waits are for a ring's unblock timeout
 * (1 ms here), taken in bounded steps.
 */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shm/ring.h"

#define CAPACITY ((uint64_t)RING_MIN_CAPACITY)
#define N_RANDOM_SEEDS 300
#define N_RANDOM_BUFFERS 60000
#define UNBLOCK_STEPS 500 /* 2 ms steps waiting out a 1 ms unblock timeout */

enum { BY_ATTACH = 1, BY_REOPEN = 2, BY_INSPECT = 4, BY_ALL = 7 };

static pid_t runner_pid;
static char ring_name[RK_NAME_MAX + 1];
static char ring_path[128];
static char err[512];
static ring_info info;

/* ------------------------------------------------------------- helpers */

static void name_ring(const char *what)
{
    snprintf(ring_name, sizeof ring_name, "seg.%d.%d.%s", (int)runner_pid, (int)getpid(), what);
    snprintf(ring_path, sizeof ring_path, "/dev/shm/" RING_SHM_PREFIX "%s", ring_name);
    ring_unlink(ring_name);
}

/* Removes every ring this runner made: the unchecked teardown of each test
 * case, so that a test that failed half way leaves nothing behind. */
static void remove_test_rings(void)
{
    char prefix[64], path[512];
    DIR *dir = opendir("/dev/shm");
    struct dirent *e;

    if (!dir)
        return;
    snprintf(prefix, sizeof prefix, RING_SHM_PREFIX "seg.%d.", (int)runner_pid);
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        if (unlink(path) != 0 && errno == EISDIR)
            rmdir(path);
    }
    closedir(dir);
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static uint64_t next_rand(uint64_t *state)
{
    /* xorshift64* */
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1Dull;
}

static void fill_random(uint8_t *buf, size_t n, uint64_t *state)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(next_rand(state) >> 56);
}

static void assert_has(const char *msg, const char *needle, const char *who)
{
    if (needle)
        ck_assert_msg(strstr(msg, needle) != NULL, "%s: message \"%s\" does not mention \"%s\"", who, msg,
                      needle);
}

/* The whole segment file, or NULL when it is missing or not a regular file. */
static uint8_t *slurp(size_t *len)
{
    struct stat st;
    uint8_t *buf;
    int fd = open(ring_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

    *len = 0;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NULL;
    }
    buf = malloc((size_t)st.st_size + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static void poke(size_t offset, const void *bytes, size_t n)
{
    int fd = open(ring_path, O_RDWR | O_CLOEXEC);

    ck_assert_msg(fd >= 0, "open %s: %s", ring_path, strerror(errno));
    ck_assert_int_eq(pwrite(fd, bytes, n, (off_t)offset), (ssize_t)n);
    close(fd);
}

static void poke32(size_t offset, uint32_t v)
{
    poke(offset, &v, sizeof v);
}
static void poke64(size_t offset, uint64_t v)
{
    poke(offset, &v, sizeof v);
}

static uint64_t peek64(size_t offset)
{
    uint64_t v = 0;
    int fd = open(ring_path, O_RDONLY | O_CLOEXEC);

    ck_assert(fd >= 0);
    ck_assert_int_eq(pread(fd, &v, sizeof v, (off_t)offset), (ssize_t)sizeof v);
    close(fd);
    return v;
}

#define HDR(field) offsetof(struct ring_header, field)

/* A valid ring file with nobody owning it, as a node that stopped leaves. */
static void make_closed_ring(const char *what, uint64_t capacity)
{
    ring_create_opts co = {.capacity = capacity};
    ring_owner *o = NULL;

    name_ring(what);
    ck_assert_msg(ring_create(ring_name, &co, &o, err, sizeof err) == 0, "%s", err);
    ring_close(o, 0);
}

/* rk_ring_attach(), ring_reopen() and ring_inspect() (those in `by`) all
 * refuse the ring with `want` and a message holding both needles (NULL: no
 * check); none of them changes a byte of the file. */
static void expect_refused(unsigned by, int want, const char *needle1, const char *needle2)
{
    static const char *const names[] = {"rk_ring_attach", "ring_reopen", "ring_inspect"};
    size_t before_len, after_len;
    uint8_t *before = slurp(&before_len), *after;

    for (int which = 0; which < 3; which++) {
        char msg[512] = "";
        rk_ring_opts ro = {
            .producer = "p", .full_policy = RK_FULL_FAIL, .errmsg = msg, .errmsg_size = sizeof msg};
        rk_ring *r = NULL;
        ring_owner *o = NULL;
        int rc;

        if (!(by & (1u << which)))
            continue;
        if (which == 0)
            rc = rk_ring_attach(ring_name, &ro, &r);
        else if (which == 1)
            rc = ring_reopen(ring_name, 7, &o, msg, sizeof msg);
        else
            rc = ring_inspect(ring_name, &info, msg, sizeof msg);
        ck_assert_msg(rc == want, "%s returned %d (%s), want %d (%s); message: %s", names[which], rc,
                      rk_strerror(rc), want, rk_strerror(want), msg);
        ck_assert_msg(r == NULL && o == NULL, "%s handed out a handle while failing", names[which]);
        ck_assert_msg(msg[0] != '\0', "%s gave no message", names[which]);
        assert_has(msg, needle1, names[which]);
        assert_has(msg, needle2, names[which]);
    }
    after = slurp(&after_len);
    ck_assert_uint_eq(after_len, before_len);
    if (before_len)
        ck_assert_msg(memcmp(before, after, before_len) == 0, "a refused ring was modified");
    free(before);
    free(after);
}

/* ------------------------------------------------------------- stale */

START_TEST(wrong_magic_is_refused)
{
    make_closed_ring("magic", CAPACITY);
    poke32(HDR(magic), 0xdeadbeefu);
    expect_refused(BY_ALL, RK_EBADRING, "not a ringkeep ring", "magic 0xdeadbeef");
    expect_refused(BY_ALL, RK_EBADRING, ring_path, "remove it");
}
END_TEST

START_TEST(magic_zero_is_not_initialised)
{
    make_closed_ring("magic0", CAPACITY);
    poke32(HDR(magic), 0);
    expect_refused(BY_ALL, RK_EBADRING, "not initialised", "creating it");
}
END_TEST

START_TEST(other_format_version_is_refused)
{
    make_closed_ring("format", CAPACITY);
    poke32(HDR(format), RING_FORMAT + 1);
    expect_refused(BY_ALL, RK_EVERSION, "ring format 2", "reads format 1");
    poke32(HDR(format), 0);
    expect_refused(BY_ALL, RK_EVERSION, "ring format 0", NULL);
}
END_TEST

START_TEST(size_that_does_not_match_the_header_is_refused)
{
    char want[128];

    /* a 128 KiB ring cut to 64 KiB: still above the minimum size */
    make_closed_ring("size", 2 * CAPACITY);
    ck_assert_int_eq(truncate(ring_path, (off_t)(RING_HEADER_SIZE + CAPACITY)), 0);
    snprintf(want, sizeof want, "header %zu + capacity %llu bytes but the file has %llu", RING_HEADER_SIZE,
             (unsigned long long)(2 * CAPACITY), (unsigned long long)(RING_HEADER_SIZE + CAPACITY));
    expect_refused(BY_ALL, RK_EBADRING, want, "damaged or foreign");
    /* and grown past it */
    ck_assert_int_eq(truncate(ring_path, (off_t)(RING_HEADER_SIZE + 3 * CAPACITY)), 0);
    expect_refused(BY_ALL, RK_EBADRING, "but the file has", NULL);
    /* a header size that is not ours */
    make_closed_ring("hsize", CAPACITY);
    poke64(HDR(header_size), 4096);
    expect_refused(BY_ALL, RK_EBADRING, "header 4096 + capacity", NULL);
}
END_TEST

START_TEST(capacity_out_of_range_is_refused)
{
    /* past the largest capacity, the file too small for it */
    make_closed_ring("capbig", CAPACITY);
    poke64(HDR(capacity), RING_MAX_CAPACITY * 2);
    expect_refused(BY_ALL, RK_EBADRING, "capacity 137438953472", NULL);
    /* zero */
    poke64(HDR(capacity), 0);
    expect_refused(BY_ALL, RK_EBADRING, "capacity 0 ", NULL);
}
END_TEST

START_TEST(too_small_a_file_is_refused)
{
    int fd;

    make_closed_ring("small", CAPACITY);
    ck_assert_int_eq(truncate(ring_path, 4096), 0);
    expect_refused(BY_ALL, RK_EBADRING, "is 4096 bytes, too small", "remove it");
    /* an empty file someone made by hand */
    name_ring("empty");
    fd = open(ring_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ck_assert(fd >= 0);
    close(fd);
    expect_refused(BY_ALL, RK_EBADRING, "is 0 bytes, too small", NULL);
}
END_TEST

START_TEST(group_or_other_permission_bits_are_refused)
{
    static const mode_t modes[] = {0644, 0660, 0602, 0610, 0601, 0777};
    char want[32];

    make_closed_ring("mode", CAPACITY);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        ck_assert_int_eq(chmod(ring_path, modes[i]), 0);
        snprintf(want, sizeof want, "mode %04o", (unsigned)modes[i]);
        expect_refused(BY_ALL, RK_EBADRING, want, "private to its user (0600)");
    }
    /* 0600 again: accepted (a narrower mode, 0400, only fails the open) */
    ck_assert_int_eq(chmod(ring_path, 0600), 0);
    ck_assert_msg(ring_inspect(ring_name, &info, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(info.mode, 0600);
}
END_TEST

START_TEST(ring_of_another_uid_is_refused)
{
    char want[64];

    make_closed_ring("uid", CAPACITY);
    ck_assert_int_eq(chown(ring_path, 12345, (gid_t)-1), 0);
    snprintf(want, sizeof want, "not to this process (uid %u)", (unsigned)geteuid());
    expect_refused(BY_ALL, RK_EBADRING, "belongs to uid 12345", want);
    /* ours on disk, but the header says another uid made it */
    make_closed_ring("hdruid", CAPACITY);
    poke32(HDR(owner_uid), 12345);
    expect_refused(BY_ALL, RK_EBADRING, "created by uid 12345", NULL);
}
END_TEST

START_TEST(what_is_not_a_regular_file_is_refused)
{
    char real_path[128];
    int fd;

    /* a FIFO: attach and reopen open it read-write, which does not block.
     * (ring_inspect opens read-only: see the regression test
     * inspect_does_not_block_on_a_fifo.) */
    name_ring("fifo");
    ck_assert_int_eq(mkfifo(ring_path, 0600), 0);
    expect_refused(BY_ATTACH | BY_REOPEN, RK_EBADRING, "is not a regular file", ring_path);
    /* while something holds the FIFO open for writing, ring_inspect's
     * read-only open returns at once */
    fd = open(ring_path, O_RDWR | O_CLOEXEC);
    ck_assert(fd >= 0);
    expect_refused(BY_INSPECT, RK_EBADRING, "is not a regular file", NULL);
    close(fd);
    /* a directory: cannot be opened for writing, and inspect sees it */
    name_ring("dir");
    ck_assert_int_eq(mkdir(ring_path, 0700), 0);
    expect_refused(BY_ATTACH | BY_REOPEN, EISDIR, "cannot open ring", strerror(EISDIR));
    expect_refused(BY_INSPECT, RK_EBADRING, "is not a regular file", NULL);
    ck_assert_int_eq(rmdir(ring_path), 0);
    /* a symbolic link to a valid ring is not followed */
    make_closed_ring("real", CAPACITY);
    snprintf(real_path, sizeof real_path, "%s", ring_path);
    name_ring("link");
    ck_assert_int_eq(symlink(real_path, ring_path), 0);
    expect_refused(BY_ALL, ELOOP, "cannot open ring", NULL);
}
END_TEST

START_TEST(cursors_out_of_range_are_corrupt)
{
    uint64_t start;

    make_closed_ring("cursors", CAPACITY);
    start = peek64(HDR(start_lsn));
    /* head > tail */
    poke64(HDR(head), start + 64);
    poke64(HDR(tail), start);
    expect_refused(BY_ALL, RK_ECORRUPT, "cursors out of range (head 72, tail 8,", "overwritten");
    /* tail a long way past head + capacity */
    poke64(HDR(head), start);
    poke64(HDR(tail), start + 64 * CAPACITY);
    expect_refused(BY_ALL, RK_ECORRUPT, "cursors out of range", "capacity 65536");
    /* unaligned */
    poke64(HDR(tail), start + 3);
    expect_refused(BY_ALL, RK_ECORRUPT, "tail 11,", NULL);
    /* head before the ring's first position */
    poke64(HDR(head), 0);
    poke64(HDR(tail), 0);
    expect_refused(BY_ALL, RK_ECORRUPT, "head 0, tail 0", NULL);
    /* put back: accepted */
    poke64(HDR(head), start);
    poke64(HDR(tail), start);
    ck_assert_msg(ring_inspect(ring_name, &info, err, sizeof err) == 0, "%s", err);
}
END_TEST

START_TEST(inconsistent_limits_are_refused)
{
    make_closed_ring("limits", CAPACITY);
    poke32(HDR(max_frame), (uint32_t)CAPACITY);
    expect_refused(BY_ALL, RK_EBADRING, "inconsistent limits (max frame 65536", NULL);
    poke32(HDR(max_frame), (uint32_t)(CAPACITY / 4));
    poke32(HDR(unblock_timeout_ms), 0);
    expect_refused(BY_ALL, RK_EBADRING, "unblock 0 ms", NULL);
    poke32(HDR(unblock_timeout_ms), RING_DEFAULT_UNBLOCK_MS);
    poke64(HDR(start_lsn), 12);
    expect_refused(BY_ALL, RK_EBADRING, "start 12)", NULL);
}
END_TEST

START_TEST(missing_ring_says_start_the_node)
{
    name_ring("missing");
    expect_refused(BY_ALL, ENOENT, "does not exist", "start the node");
    expect_refused(BY_ALL, ENOENT, ring_path, NULL);
    /* a name that cannot be a ring */
    snprintf(ring_name, sizeof ring_name, "../etc");
    expect_refused(BY_ALL, RK_EINVAL, "ring name '../etc'", NULL);
}
END_TEST

START_TEST(create_refuses_an_existing_ring)
{
    ring_create_opts co = {.capacity = CAPACITY};
    ring_owner *o = NULL;
    size_t before_len, after_len;
    uint8_t *before, *after;
    int rc;

    make_closed_ring("exists", CAPACITY);
    before = slurp(&before_len);
    rc = ring_create(ring_name, &co, &o, err, sizeof err);
    ck_assert_msg(rc == RK_EEXIST, "ring_create returned %d (%s)", rc, err);
    ck_assert_ptr_null(o);
    assert_has(err, "already exists", "ring_create");
    assert_has(err, ring_path, "ring_create");
    after = slurp(&after_len);
    ck_assert_uint_eq(after_len, before_len);
    ck_assert_msg(memcmp(before, after, before_len) == 0, "ring_create changed an existing ring");
    free(before);
    free(after);
    /* whatever the existing thing is, it is not replaced */
    name_ring("existsfifo");
    ck_assert_int_eq(mkfifo(ring_path, 0600), 0);
    ck_assert_int_eq(ring_create(ring_name, &co, &o, err, sizeof err), RK_EEXIST);
}
END_TEST

START_TEST(created_segment_is_private_whatever_the_umask)
{
    static const mode_t masks[] = {0, 022, 0777};
    ring_create_opts co = {.capacity = CAPACITY};
    mode_t saved = umask(0);
    struct stat st;

    for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
        ring_owner *o = NULL;

        name_ring("umask");
        umask(masks[i]);
        ck_assert_msg(ring_create(ring_name, &co, &o, err, sizeof err) == 0, "%s", err);
        umask(saved);
        ck_assert_int_eq(stat(ring_path, &st), 0);
        ck_assert(S_ISREG(st.st_mode));
        ck_assert_msg((st.st_mode & 07777) == 0600, "umask %04o: mode %04o", (unsigned)masks[i],
                      (unsigned)(st.st_mode & 07777));
        ck_assert_uint_eq(st.st_uid, geteuid());
        ck_assert_uint_eq((uint64_t)st.st_size, RING_HEADER_SIZE + CAPACITY);
        ring_close(o, 1);
    }
}
END_TEST

/* A node in a child process owns the ring until the parent closes `go`;
 * then it exits without closing the ring, as a crashed node would. */
static pid_t start_owner_child(int *go_fd)
{
    int ready[2], go[2];
    char c = 0;
    pid_t pid;

    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(go), 0);
    pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        ring_create_opts co = {.capacity = CAPACITY};
        ring_owner *o = NULL;

        close(ready[0]);
        close(go[1]);
        if (ring_create(ring_name, &co, &o, NULL, 0) != 0)
            _exit(1);
        if (write(ready[1], "k", 1) != 1)
            _exit(1);
        while (read(go[0], &c, 1) > 0)
            ;
        _exit(0);
    }
    close(ready[1]);
    close(go[0]);
    ck_assert_msg(read(ready[0], &c, 1) == 1, "the owner child could not create the ring");
    close(ready[0]);
    *go_fd = go[1];
    return pid;
}

START_TEST(reopen_refuses_a_live_owner_then_takes_over)
{
    rk_ring_opts ro = {
        .producer = "p", .full_policy = RK_FULL_FAIL, .errmsg = err, .errmsg_size = sizeof err};
    ring_owner *o = NULL;
    rk_ring *r = NULL;
    ring_frame f;
    uint16_t table;
    uint64_t lsn;
    char want[64];
    int go, status, rc;
    pid_t child;

    name_ring("owner");
    child = start_owner_child(&go);
    snprintf(want, sizeof want, "owned by the live node pid %d", (int)child);
    rc = ring_reopen(ring_name, 9, &o, err, sizeof err);
    ck_assert_msg(rc == RK_EBUSY, "ring_reopen returned %d (%s)", rc, err);
    ck_assert_ptr_null(o);
    assert_has(err, want, "ring_reopen");
    assert_has(err, "stop it first", "ring_reopen");
    ck_assert_msg(ring_inspect(ring_name, &info, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(info.owner_pid, (uint32_t)child);
    ck_assert_uint_eq(info.owner_alive, 1);
    /* engines attach to a live node's ring as usual */
    ck_assert_msg(rk_ring_attach(ring_name, &ro, &r) == 0, "%s", err);
    ck_assert_int_eq(rk_table(r, "t", &table), 0);
    ck_assert_int_eq(rk_put(r, table, "k", 1, "written-before-takeover", 23, &lsn), 0);

    close(go);
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_msg(ring_inspect(ring_name, &info, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(info.owner_pid, (uint32_t)child);
    ck_assert_uint_eq(info.owner_alive, 0);

    rc = ring_reopen(ring_name, 9, &o, err, sizeof err);
    ck_assert_msg(rc == 0, "ring_reopen after the owner died: %d (%s)", rc, err);
    ck_assert_uint_eq(atomic_load(&ring_header_of(o)->epoch), 9);
    ck_assert_uint_eq(atomic_load(&ring_header_of(o)->owner_pid), (uint32_t)getpid());
    /* nothing written under the dead owner is lost */
    ck_assert_int_eq(ring_next(o, &f), 1);
    ck_assert_int_eq(f.type, FRAME_ATTACH);
    ck_assert_int_eq(ring_next(o, &f), 1);
    ck_assert_int_eq(f.type, FRAME_PUT);
    ck_assert_uint_eq(f.lsn, lsn);
    ck_assert_int_eq(f.vlen, 23);
    ck_assert_mem_eq(f.val, "written-before-takeover", 23);
    ck_assert_int_eq(ring_next(o, &f), 0);
    rk_ring_detach(r);
    ring_close(o, 1);
}
END_TEST

/* ------------------------------------------------------------- live */

/* A live ring with good records at [head, pos) and the garbage at pos. */
struct live {
    ring_owner *owner;
    rk_ring *producer;
    struct ring_header *hdr;
    uint8_t *data;
    uint64_t pos;
    uint16_t table;
};

struct record {
    uint8_t type;
    const char *key;
    uint32_t klen;
    const uint8_t *val;
    uint32_t vlen;
    uint64_t lsn;
};

static uint8_t big_value[300];
static const uint8_t mark_77[8] = {77, 0, 0, 0, 0, 0, 0, 0};
static struct record good[] = {
    {FRAME_PUT, "alpha", 5, (const uint8_t *)"value-of-alpha", 14, 0},
    {FRAME_PUT, "", 0, (const uint8_t *)"v0", 2, 0},
    {FRAME_PUT, "no-value", 8, (const uint8_t *)"", 0, 0},
    {FRAME_DEL, "alpha", 5, (const uint8_t *)"", 0, 0},
    {FRAME_PUT, "big", 3, big_value, sizeof big_value, 0},
    {FRAME_MARK, "", 0, mark_77, 8, 0},
};
#define N_GOOD (sizeof good / sizeof good[0])

static void start_live(struct live *l, const char *what)
{
    ring_create_opts co = {.capacity = CAPACITY, .unblock_timeout_ms = 1};
    rk_ring_opts ro = {
        .producer = "p", .full_policy = RK_FULL_FAIL, .errmsg = err, .errmsg_size = sizeof err};
    int rc = 0;

    memset(l, 0, sizeof *l);
    for (size_t i = 0; i < sizeof big_value; i++)
        big_value[i] = (uint8_t)(i * 7 + 1);
    name_ring(what);
    ck_assert_msg(ring_create(ring_name, &co, &l->owner, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(rk_ring_attach(ring_name, &ro, &l->producer) == 0, "%s", err);
    ck_assert_int_eq(rk_table(l->producer, "t", &l->table), 0);
    for (size_t i = 0; i < N_GOOD; i++) {
        struct record *g = &good[i];
        if (g->type == FRAME_PUT)
            rc = rk_put(l->producer, l->table, g->key, g->klen, g->val, g->vlen, &g->lsn);
        else if (g->type == FRAME_DEL)
            rc = rk_del(l->producer, l->table, g->key, g->klen, &g->lsn);
        else
            rc = rk_mark(l->producer, 77, &g->lsn);
        ck_assert_int_eq(rc, 0);
    }
    l->hdr = ring_header_of(l->owner);
    l->data = ring_data_of(l->owner);
    l->pos = atomic_load(&l->hdr->tail);
}

static void stop_live(struct live *l)
{
    rk_ring_detach(l->producer);
    ring_close(l->owner, 1);
}

static uint8_t *at(struct live *l, uint64_t pos)
{
    return l->data + (pos & (CAPACITY - 1));
}

static void set_tail(struct live *l, uint64_t tail)
{
    atomic_store(&l->hdr->tail, tail);
}

/* f is exactly the frame frame_encode() makes of these fields. */
static void assert_frame_is(const ring_frame *f, uint8_t type, uint16_t table, uint16_t producer,
                            uint64_t lsn, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    uint8_t *want = malloc(frame_align((uint64_t)FRAME_HEADER_SIZE + klen + vlen));
    uint32_t n;

    ck_assert_ptr_nonnull(want);
    n = frame_encode(want, type, table, producer, lsn, key, klen, val, vlen);
    ck_assert_int_eq(f->type, type);
    ck_assert_int_eq(f->table, table);
    ck_assert_int_eq(f->producer, producer);
    ck_assert_uint_eq(f->lsn, lsn);
    ck_assert_uint_eq(f->klen, klen);
    ck_assert_uint_eq(f->vlen, vlen);
    if (klen)
        ck_assert_mem_eq(f->key, key, klen);
    if (vlen)
        ck_assert_mem_eq(f->val, val, vlen);
    ck_assert_uint_eq(f->raw_len, n);
    ck_assert_mem_eq(f->raw, want, n);
    free(want);
}

/* Delivers the ATTACH frame and every good record, byte for byte. */
static void deliver_good(struct live *l)
{
    struct frame_attach attach = {.session = 1, .pid = (uint32_t)getpid()};
    uint64_t start = l->hdr->start_lsn;
    ring_frame f;
    uint16_t producer;
    int rc;

    rc = ring_next(l->owner, &f);
    ck_assert_msg(rc == 1, "ring_next: %d (%s)", rc, ring_error(l->owner));
    producer = f.producer;
    assert_frame_is(&f, FRAME_ATTACH, 0, producer, start, "p", 1, &attach, sizeof attach);
    for (size_t i = 0; i < N_GOOD; i++) {
        const struct record *g = &good[i];
        rc = ring_next(l->owner, &f);
        ck_assert_msg(rc == 1, "good record %zu: ring_next %d (%s)", i, rc, ring_error(l->owner));
        assert_frame_is(&f, g->type, g->type == FRAME_MARK ? 0 : l->table, producer, g->lsn, g->key, g->klen,
                        g->val, g->vlen);
    }
}

/* ring_next() stops at l->pos with RK_ECORRUPT and a message holding the
 * needle, and stays there; what came before can be released. */
static void expect_stopped(struct live *l, const char *needle)
{
    char first[512], where[64];
    ring_frame f;
    int rc = 0;

    /* a claim marker is judged only after the unblock timeout (1 ms) */
    for (int step = 0; step < UNBLOCK_STEPS; step++) {
        rc = ring_next(l->owner, &f);
        if (rc != 0)
            break;
        pause_ms(2);
    }
    ck_assert_msg(rc == RK_ECORRUPT, "ring_next returned %d (%s), want RK_ECORRUPT", rc,
                  ring_error(l->owner));
    snprintf(first, sizeof first, "%s", ring_error(l->owner));
    snprintf(where, sizeof where, "corrupt frame at position %llu: ", (unsigned long long)l->pos);
    assert_has(first, where, "ring_error");
    assert_has(first, needle, "ring_error");
    assert_has(first, ring_name, "ring_error");
    ck_assert_uint_ge(atomic_load(&l->hdr->n_corrupt), 1);
    for (int again = 0; again < 3; again++) {
        ck_assert_int_eq(ring_next(l->owner, &f), RK_ECORRUPT);
        ck_assert_str_eq(ring_error(l->owner), first);
    }
    /* nothing before the bad frame is lost: it can be released, and the
     * consumer still stops at the same place */
    ring_release(l->owner);
    ck_assert_uint_eq(atomic_load(&l->hdr->head), l->pos);
    ck_assert_int_eq(ring_next(l->owner, &f), RK_ECORRUPT);
    ck_assert_str_eq(ring_error(l->owner), first);
}

/* Writes a committed frame at l->pos with frame_encode() (a valid checksum)
 * and moves the tail past it. */
static uint32_t put_frame(struct live *l, uint8_t type, uint16_t producer, uint64_t lsn, const char *key,
                          const char *val)
{
    uint32_t klen = (uint32_t)strlen(key), vlen = (uint32_t)strlen(val);
    uint32_t n = frame_encode(at(l, l->pos), type, l->table, producer, lsn, key, klen, val, vlen);

    set_tail(l, l->pos + frame_align(n));
    return n;
}

static void put_word(struct live *l, uint64_t pos, uint32_t word, uint8_t type)
{
    at(l, pos)[4] = type;
    memcpy(at(l, pos), &word, sizeof word);
}

static void c_checksum(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    at(l, l->pos)[FRAME_HEADER_SIZE + 3 + 2] ^= 0x10;
}

static void c_checksum_header(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    at(l, l->pos)[6] ^= 0x01; /* the table id, covered through the seed */
}

static void c_length_past_area(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    put_word(l, l->pos, (uint32_t)CAPACITY, FRAME_PUT);
}

static void c_length_huge(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    put_word(l, l->pos, 0x7ffffff8u, FRAME_PUT);
}

static void c_length_below_header(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    put_word(l, l->pos, 16, FRAME_PUT);
}

static void c_length_past_tail(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    set_tail(l, l->pos + 8);
}

static void c_committed_at_tail(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    set_tail(l, l->pos);
}

static void c_key_past_frame(struct live *l)
{
    uint32_t klen = 9; /* frame length 40: 8 bytes after the header */

    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    memcpy(at(l, l->pos) + offsetof(struct frame_header, klen), &klen, sizeof klen);
}

static void c_unknown_type(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    at(l, l->pos)[4] = 9;
}

static void c_type_zero(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    at(l, l->pos)[4] = 0;
}

static void c_pad_too_short(struct live *l)
{
    put_word(l, l->pos, 4, FRAME_PAD);
    set_tail(l, l->pos + 64);
}

static void c_pad_unaligned(struct live *l)
{
    put_word(l, l->pos, 12, FRAME_PAD);
    set_tail(l, l->pos + 64);
}

static void c_pad_past_area(struct live *l)
{
    uint32_t len = (uint32_t)(CAPACITY - (l->pos & (CAPACITY - 1)) + 8);

    put_word(l, l->pos, len, FRAME_PAD);
    set_tail(l, l->pos + len);
}

static void c_pad_past_tail(struct live *l)
{
    put_word(l, l->pos, 64, FRAME_PAD);
    set_tail(l, l->pos + 16);
}

/* Once the good records are read and released (head at l->pos, the
 * area before it zeroed): two paddings each valid alone, the first to the
 * end of the area, the second from its start over the first one, which is
 * not released: read_pos would pass head + capacity and the consumer
 * would skip whatever a producer wrote there (R2). */
static void c_pad_past_window(struct live *l)
{
    uint64_t head = l->pos;
    uint32_t to_end = (uint32_t)(CAPACITY - (l->pos & (CAPACITY - 1)));

    ring_release(l->owner);
    ck_assert_uint_eq(atomic_load(&l->hdr->head), head);
    put_word(l, l->pos, to_end, FRAME_PAD);
    l->pos += to_end; /* the consumer stops at the second */
    put_word(l, l->pos, (uint32_t)(head & (CAPACITY - 1)) + 64, FRAME_PAD);
    set_tail(l, l->pos + (head & (CAPACITY - 1)) + 64);
}

static void c_lsn_ahead(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos + 8, "key", "value");
}

static void c_lsn_last_lap(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos - CAPACITY, "key", "value");
}

static void c_producer_past_registry(struct live *l)
{
    put_frame(l, FRAME_PUT, RING_MAX_PRODUCERS, l->pos, "key", "value");
}

static void c_producer_ffff(struct live *l)
{
    put_frame(l, FRAME_DEL, 0xffff, l->pos, "key", "");
}

static void c_abort_in_ring(struct live *l)
{
    put_frame(l, FRAME_ABORT, 0, l->pos, "", "session!");
}

static void c_mark_length(struct live *l)
{
    put_frame(l, FRAME_MARK, 0, l->pos, "", "1234");
}

static void c_del_value(struct live *l)
{
    put_frame(l, FRAME_DEL, 0, l->pos, "key", "value");
}

static void c_claim_size(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    put_word(l, l->pos, FRAME_CLAIMED | 4, FRAME_PUT);
}

static void c_claim_past_tail(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos, "key", "value");
    put_word(l, l->pos, FRAME_CLAIMED | 4096, 0);
}

static void c_claim_lsn(struct live *l)
{
    put_frame(l, FRAME_PUT, 0, l->pos + CAPACITY, "key", "value");
    put_word(l, l->pos, FRAME_CLAIMED | 40, 0);
}

static void c_claim_producer(struct live *l)
{
    put_frame(l, FRAME_PUT, 200, l->pos, "key", "value");
    put_word(l, l->pos, FRAME_CLAIMED | 40, 0);
}

static void c_tail_far_beyond(struct live *l)
{
    set_tail(l, l->pos + 64 * CAPACITY);
}

static void c_tail_behind_reader(struct live *l)
{
    set_tail(l, l->pos - 8);
}

static const struct corruption {
    const char *what;
    void (*apply)(struct live *);
    const char *needle;
    int after_delivery; /* apply once the good records are delivered */
} corruptions[] = {
    {"checksum", c_checksum, "checksum mismatch (stored ", 0},
    {"checksum-header", c_checksum_header, "checksum mismatch", 0},
    {"length-past-area", c_length_past_area, "frame length 65536 out of range (available", 0},
    {"length-huge", c_length_huge, "frame length 2147483640 out of range", 0},
    {"length-below-header", c_length_below_header, "frame length 16 out of range", 0},
    {"length-past-tail", c_length_past_tail, "frame runs past the tail", 0},
    {"committed-at-tail", c_committed_at_tail, "frame runs past the tail", 0},
    {"key-past-frame", c_key_past_frame, "key length 9 exceeds frame length 40", 0},
    {"unknown-type", c_unknown_type, "unknown frame type 9", 0},
    {"type-zero", c_type_zero, "unknown frame type 0", 0},
    {"pad-too-short", c_pad_too_short, "padding with an impossible length", 0},
    {"pad-unaligned", c_pad_unaligned, "padding with an impossible length", 0},
    {"pad-past-area", c_pad_past_area, "padding with an impossible length", 0},
    {"pad-past-tail", c_pad_past_tail, "padding with an impossible length", 0},
    {"pad-past-window", c_pad_past_window, "more than one capacity past the released head", 1},
    {"lsn-ahead", c_lsn_ahead, "the frame's LSN is not its position", 0},
    {"lsn-last-lap", c_lsn_last_lap, "the frame's LSN is not its position", 0},
    {"producer-64", c_producer_past_registry, "frame names no valid producer", 0},
    {"producer-ffff", c_producer_ffff, "frame names no valid producer", 0},
    {"abort-in-ring", c_abort_in_ring, "a frame only the node makes is in the ring", 0},
    {"mark-length", c_mark_length, "MARK frame of length 36, key 0", 0},
    {"del-value", c_del_value, "DEL frame carries 5 value bytes", 0},
    {"claim-size", c_claim_size, "claim marker with an impossible size", 0},
    {"claim-past-tail", c_claim_past_tail, "claim marker with an impossible size", 0},
    {"claim-lsn", c_claim_lsn, "claim marker with an impossible size, lsn", 0},
    {"claim-producer", c_claim_producer, "claim marker with an impossible size, lsn or producer", 0},
    {"tail-far-beyond", c_tail_far_beyond, "tail cursor out of range", 0},
    {"tail-behind-reader", c_tail_behind_reader, "tail cursor out of range", 1},
};
#define N_CORRUPTIONS ((int)(sizeof corruptions / sizeof corruptions[0]))

START_TEST(garbage_in_a_live_ring_stops_the_consumer)
{
    const struct corruption *c = &corruptions[_i];
    struct live l;

    start_live(&l, c->what);
    if (!c->after_delivery)
        c->apply(&l);
    deliver_good(&l);
    if (c->after_delivery)
        c->apply(&l);
    expect_stopped(&l, c->needle);
    stop_live(&l);
}
END_TEST

/* ---- random data areas */

struct written {
    uint64_t pos;
    uint32_t len;
};

/* Lays valid frames (and padding) from head up to at most head + capacity;
 * returns the tail.  ok[(pos - head) / 8] is 1 + the index in w[]. */
static uint64_t lay_frames(uint8_t *data, uint64_t head, uint64_t *rng, struct written *w, size_t *n_w,
                           uint32_t *ok)
{
    static uint8_t payload[256];
    uint64_t pos = head, end = head + 8 * (next_rand(rng) % (CAPACITY / 8 + 1));

    fill_random(payload, sizeof payload, rng);
    memset(data, 0, CAPACITY);
    for (size_t step = 0; step < CAPACITY / 8 && pos < end; step++) {
        uint64_t r = next_rand(rng), idx = pos & (CAPACITY - 1);
        uint8_t type = (uint8_t)(FRAME_PUT + r % 5); /* PUT DEL MARK PAD ATTACH */
        uint32_t klen = (uint32_t)(r >> 8) % 40, vlen = (uint32_t)(r >> 16) % 200, size;

        if (type == FRAME_PAD) {
            size = 8 * (1 + (uint32_t)(r >> 32) % 8);
            if (idx + size > CAPACITY)
                size = (uint32_t)(CAPACITY - idx);
            if (pos + size > end)
                break;
            memcpy(data + idx, &size, 4);
            data[idx + 4] = FRAME_PAD;
            pos += size;
            continue;
        }
        if (type == FRAME_DEL)
            vlen = 0;
        if (type == FRAME_MARK)
            klen = 0, vlen = 8;
        size = frame_align(FRAME_HEADER_SIZE + klen + vlen);
        if (idx + size > CAPACITY) { /* pad to the end of the area first */
            uint32_t pad = (uint32_t)(CAPACITY - idx);
            if (pos + pad + size > end)
                break;
            memcpy(data + idx, &pad, 4);
            data[idx + 4] = FRAME_PAD;
            pos += pad;
            idx = 0;
        }
        if (pos + size > end)
            break;
        w[*n_w].pos = pos;
        w[*n_w].len = frame_encode(data + idx, type, (uint16_t)(r >> 40), (uint16_t)((r >> 56) % 4), pos,
                                   payload, klen, payload + 40, vlen);
        ok[(pos - head) / 8] = (uint32_t)++ * n_w;
        pos += size;
    }
    return pos;
}

/* A producer that attached and died: the consumer may report it. */
static void attach_dead_producer(const char *producer)
{
    int status;
    pid_t pid = fork();

    ck_assert(pid >= 0);
    if (pid == 0) {
        rk_ring_opts ro = {.producer = producer, .full_policy = RK_FULL_FAIL};
        rk_ring *r = NULL;
        _exit(rk_ring_attach(ring_name, &ro, &r) == 0 ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

START_TEST(random_data_areas_end_in_zero_or_corrupt)
{
    ring_create_opts co = {.capacity = CAPACITY, .unblock_timeout_ms = 1};
    struct written *w = calloc(CAPACITY / 8, sizeof *w);
    uint32_t *ok = calloc(CAPACITY / 8, sizeof *ok);
    uint8_t *pristine = malloc(CAPACITY);
    ring_owner *o = NULL;
    uint64_t n_delivered = 0, n_corrupt = 0, n_quiet = 0;

    ck_assert(w && ok && pristine);
    name_ring("random");
    ck_assert_msg(ring_create(ring_name, &co, &o, err, sizeof err) == 0, "%s", err);
    attach_dead_producer("gone");
    for (uint64_t seed = 1; seed <= N_RANDOM_SEEDS; seed++) {
        uint64_t rng = seed * 0x9E3779B97F4A7C15ull, head, tail;
        struct ring_header *h = ring_header_of(o);
        uint8_t *data = ring_data_of(o);
        int mode = (int)(seed % 3), zeros = 0, rc = 0;
        size_t n_w = 0;

        head = h->start_lsn + 8 * (next_rand(&rng) % (4 * CAPACITY / 8));
        tail = head + 8 * (next_rand(&rng) % (CAPACITY / 8 + 1));
        if (mode == 0) { /* every byte random */
            fill_random(data, CAPACITY, &rng);
        } else if (mode == 1) { /* mostly zero: claims without markers */
            memset(data, 0, CAPACITY);
            for (int k = 0; k < 24; k++) {
                uint64_t r = next_rand(&rng);
                uint8_t *p = data + (8 * (r % (CAPACITY / 8)));
                uint32_t word = (uint32_t)(r >> 32);
                memcpy(p, &word, 4);
                p[4] = (uint8_t)(r >> 20);
            }
        } else { /* valid frames, then a few bytes flipped */
            memset(ok, 0, CAPACITY / 8 * sizeof *ok);
            tail = lay_frames(data, head, &rng, w, &n_w, ok);
            memcpy(pristine, data, CAPACITY);
            for (uint64_t k = 0, n = next_rand(&rng) % 4; k < n && tail > head; k++) {
                uint64_t r = next_rand(&rng);
                data[(head + r % (tail - head)) & (CAPACITY - 1)] ^= (uint8_t)(1u << (r >> 61));
            }
        }
        atomic_store(&h->head, head);
        atomic_store(&h->tail, tail);
        /* take the ring over again: the consumer starts at head */
        ring_close(o, 0);
        ck_assert_msg(ring_reopen(ring_name, seed, &o, err, sizeof err) == 0, "seed %llu: %s",
                      (unsigned long long)seed, err);
        h = ring_header_of(o);
        data = ring_data_of(o);
        if (mode != 2 && seed % 4 == 3) { /* and a tail nobody could have written */
            static const int64_t wild[] = {-64, 20 * (int64_t)CAPACITY, 5, INT64_MAX};
            atomic_store(&h->tail, head + (uint64_t)wild[(seed / 4) % 4]);
        }
        for (uint64_t call = 0; call < CAPACITY / 8 + 256; call++) {
            ring_frame f;

            rc = ring_next(o, &f);
            if (rc == 1) {
                zeros = 0;
                n_delivered++;
                if (f.type == FRAME_ABORT) {
                    ck_assert_uint_eq(f.raw_len, FRAME_HEADER_SIZE + 8);
                    continue;
                }
                ck_assert_msg(f.raw == data + (f.lsn & (CAPACITY - 1)), "seed %llu: frame not at its lsn",
                              (unsigned long long)seed);
                ck_assert(f.raw + f.raw_len <= data + CAPACITY);
                ck_assert(f.key == f.raw + FRAME_HEADER_SIZE && f.val == f.key + f.klen);
                ck_assert_uint_eq(FRAME_HEADER_SIZE + f.klen + f.vlen, f.raw_len);
                { /* what ring_next delivers (its one-pass check of the header words, decode_fast,
                   * or the general path) the general decoder accepts, with the same fields */
                    ring_frame g;
                    uint64_t at = f.lsn & (CAPACITY - 1);
                    ck_assert_int_eq(frame_decode(data + at, CAPACITY - at, &g, NULL, 0), 0);
                    ck_assert(g.type == f.type && g.flags == f.flags && g.table == f.table &&
                              g.producer == f.producer && g.lsn == f.lsn && g.key == f.key &&
                              g.klen == f.klen && g.val == f.val && g.vlen == f.vlen && g.raw == f.raw &&
                              g.raw_len == f.raw_len);
                }
                if (mode == 2) { /* only what was written, as it was written */
                    uint32_t k = f.lsn >= head && f.lsn - head < CAPACITY ? ok[(f.lsn - head) / 8] : 0;
                    ck_assert_msg(k != 0, "seed %llu: delivered a frame at %llu that was never written",
                                  (unsigned long long)seed, (unsigned long long)f.lsn);
                    ck_assert_uint_eq(f.raw_len, w[k - 1].len);
                    ck_assert(memcmp(f.raw, pristine + (f.lsn & (CAPACITY - 1)), f.raw_len) == 0);
                }
                continue;
            }
            if (rc == 0) {
                if (++zeros > 3)
                    break;
                pause_ms(2); /* let a stuck claim reach the unblock timeout */
                continue;
            }
            ck_assert_msg(rc == RK_ECORRUPT, "seed %llu: ring_next returned %d", (unsigned long long)seed,
                          rc);
            assert_has(ring_error(o), "corrupt frame at position", "ring_error");
            ck_assert_int_eq(ring_next(o, &f), RK_ECORRUPT);
            break;
        }
        ck_assert_msg(rc == 0 || rc == RK_ECORRUPT, "seed %llu: ring_next did not settle (last %d)",
                      (unsigned long long)seed, rc);
        if (rc == 0)
            n_quiet++;
        else
            n_corrupt++;
    }
    /* the seeds reach both ends and deliver frames on the way */
    ck_assert_uint_gt(n_delivered, 0);
    ck_assert_uint_gt(n_corrupt, 0);
    ck_assert_uint_gt(n_quiet, 0);
    ring_close(o, 1);
    free(w);
    free(ok);
    free(pristine);
}
END_TEST

/* ------------------------------------------------------------- decode */

/* A copy of src[0..n) in a heap block of exactly n bytes (NULL when n is 0
 * and malloc(0) gives NULL), so that ASan reports any read past it. */
static uint8_t *exact_copy(const uint8_t *src, size_t n)
{
    uint8_t *buf = malloc(n);

    ck_assert(buf || n == 0);
    if (n)
        memcpy(buf, src, n);
    return buf;
}

static void assert_decoded_sane(const uint8_t *buf, size_t avail, const ring_frame *f)
{
    ck_assert(f->raw == buf);
    ck_assert_uint_ge(f->raw_len, FRAME_HEADER_SIZE);
    ck_assert_uint_le(f->raw_len, avail);
    ck_assert(f->key == buf + FRAME_HEADER_SIZE);
    ck_assert(f->val == f->key + f->klen);
    ck_assert_uint_eq((uint64_t)FRAME_HEADER_SIZE + f->klen + f->vlen, f->raw_len);
    ck_assert_uint_le(f->klen, RK_KEY_MAX);
    ck_assert(f->type == FRAME_PUT || f->type == FRAME_DEL || f->type == FRAME_MARK ||
              f->type == FRAME_ATTACH || f->type == FRAME_ABORT || f->type == FRAME_TABLE);
}

START_TEST(truncated_frames_never_read_past_avail)
{
    static const struct {
        uint8_t type;
        uint32_t klen, vlen;
    } shapes[] = {
        {FRAME_PUT, 0, 0},    {FRAME_PUT, 1, 0},     {FRAME_PUT, 0, 1},   {FRAME_PUT, 5, 11},
        {FRAME_PUT, 13, 300}, {FRAME_PUT, 7, 5000},  {FRAME_DEL, 0, 0},   {FRAME_DEL, 9, 0},
        {FRAME_MARK, 0, 8},   {FRAME_ATTACH, 4, 16}, {FRAME_ABORT, 0, 8},
    };
    static uint8_t payload[5100];
    uint64_t rng = 42;
    char why[200];

    fill_random(payload, sizeof payload, &rng);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        uint32_t klen = shapes[s].klen, vlen = shapes[s].vlen;
        uint8_t *enc = malloc(frame_align((uint64_t)FRAME_HEADER_SIZE + klen + vlen) + 16);
        uint32_t n = frame_encode(enc, shapes[s].type, 3, 2, 4096, payload, klen, payload + klen, vlen);

        ck_assert_uint_eq(n, FRAME_HEADER_SIZE + klen + vlen);
        memset(enc + frame_align(n), 0xa5, 16);
        for (size_t avail = 0; avail <= (size_t)frame_align(n) + 16; avail++) {
            uint8_t *buf = exact_copy(enc, avail);
            ring_frame f;
            int rc;

            why[0] = '\0';
            rc = frame_decode(buf, avail, &f, why, sizeof why);
            if (avail < n) {
                ck_assert_msg(rc == RK_ECORRUPT, "shape %zu: %zu of %u bytes decoded", s, avail, n);
                ck_assert(why[0] != '\0');
            } else {
                ck_assert_msg(rc == 0, "shape %zu, avail %zu: %s", s, avail, why);
                assert_decoded_sane(buf, avail, &f);
                ck_assert_uint_eq(f.raw_len, n);
                ck_assert_int_eq(f.type, shapes[s].type);
                ck_assert_uint_eq(f.lsn, 4096);
                ck_assert_int_eq(f.table, 3);
                ck_assert_int_eq(f.producer, 2);
                ck_assert_uint_eq(f.klen, klen);
                ck_assert(memcmp(f.key, payload, klen) == 0 && memcmp(f.val, payload + klen, vlen) == 0);
            }
            free(buf);
        }
        free(enc);
    }
}
END_TEST

START_TEST(every_flipped_bit_is_caught)
{
    static const struct {
        uint8_t type;
        uint32_t klen, vlen;
    } shapes[] = {
        {FRAME_PUT, 5, 11}, {FRAME_PUT, 0, 0}, {FRAME_DEL, 3, 0}, {FRAME_MARK, 0, 8}, {FRAME_ATTACH, 4, 16}};
    uint8_t enc[128];
    char why[200];

    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        uint32_t n = frame_encode(enc, shapes[s].type, 0x1234, 7, 0x0102030405060708ull, "KEYKEY",
                                  shapes[s].klen, "value-value-value", shapes[s].vlen);

        for (uint32_t bit = 0; bit < 8 * n; bit++) {
            uint8_t *buf = exact_copy(enc, n);
            ring_frame f;

            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            ck_assert_msg(frame_decode(buf, n, &f, why, sizeof why) == RK_ECORRUPT,
                          "shape %zu: bit %u flipped went unnoticed", s, bit);
            free(buf);
        }
    }
}
END_TEST

START_TEST(random_buffers_never_read_past_avail)
{
    static uint8_t src[400];
    uint64_t rng = 7, n_ok = 0;
    char why[64];

    for (int iter = 0; iter < N_RANDOM_BUFFERS; iter++) {
        size_t avail = next_rand(&rng) % 320;
        uint64_t r = next_rand(&rng);
        uint8_t *buf;
        ring_frame f;
        int rc;

        fill_random(src, avail, &rng);
        if (avail >= FRAME_HEADER_SIZE && r % 4 != 0) { /* a plausible header */
            struct frame_header h;
            memcpy(&h, src, sizeof h);
            h.length =
                FRAME_HEADER_SIZE + (uint32_t)((r >> 8) % (avail - FRAME_HEADER_SIZE + 1 + (r % 3 == 0)));
            h.type = (uint8_t)((r >> 24) % 8);
            h.klen = (uint32_t)((r >> 32) % (h.length - FRAME_HEADER_SIZE + 2));
            if (r & (1ull << 60)) { /* format 1 wants both zero, and a table id a ring can have */
                h.flags = 0;
                h.reserved = 0;
                h.table %= RING_MAX_TABLES;
            }
            memcpy(src, &h, sizeof h);
            if (r & (1ull << 61)) { /* and a valid checksum when it fits */
                uint32_t len = h.length <= avail ? h.length : (uint32_t)avail;
                h.checksum =
                    XXH3_64bits_withSeed(src + 16, len - 16, frame_seed(h.length, h.type, h.flags, h.table));
                memcpy(src, &h, sizeof h);
            }
        }
        buf = exact_copy(src, avail);
        why[0] = '\0';
        rc = frame_decode(buf, avail, &f, (r >> 62) ? why : NULL, sizeof why);
        if (rc == 0) {
            assert_decoded_sane(buf, avail, &f);
            n_ok++;
        } else {
            ck_assert_int_eq(rc, RK_ECORRUPT);
            ck_assert((r >> 62) == 0 || why[0] != '\0');
            ck_assert(strlen(why) < sizeof why);
        }
        free(buf);
    }
    ck_assert_uint_gt(n_ok, 100); /* the valid-checksum path was reached */
}
END_TEST

START_TEST(reason_is_truncated_to_its_buffer)
{
    uint8_t *buf = exact_copy((const uint8_t *)"short", 5);
    char why[8];
    ring_frame f;

    memset(why, 'x', sizeof why);
    ck_assert_int_eq(frame_decode(buf, 5, &f, why, sizeof why), RK_ECORRUPT);
    ck_assert_uint_eq(strlen(why), sizeof why - 1);
    memset(why, 'x', sizeof why);
    ck_assert_int_eq(frame_decode(buf, 5, &f, why, 1), RK_ECORRUPT);
    ck_assert_int_eq(why[0], '\0');
    ck_assert_int_eq(why[1], 'x');
    ck_assert_int_eq(frame_decode(buf, 5, &f, NULL, 100), RK_ECORRUPT);
    ck_assert_int_eq(frame_decode(NULL, 0, &f, why, 0), RK_ECORRUPT);
    free(buf);
}
END_TEST

/* ------------------------------------------------------------- regressions */

/* Byte j of the value of the i-th record fill_ring() writes. */
static uint8_t value_byte(size_t i, size_t j)
{
    return (uint8_t)(i * 31 + j);
}

/* Writes PUTs (key "k", values from value_byte()) until exactly `leave`
 * bytes of room are left, and records their LSNs and value lengths. */
static size_t fill_ring(rk_ring *r, struct ring_header *h, uint16_t table, uint64_t leave, uint64_t *lsn,
                        uint32_t *vlen, size_t max)
{
    static uint8_t val[RING_MIN_CAPACITY];
    size_t n = 0;

    for (; n < max; n++) {
        uint64_t room = atomic_load(&h->head) + h->capacity - atomic_load(&h->tail) - leave;
        uint64_t size = room < h->max_frame ? room : h->max_frame;

        if (room == 0)
            break;
        if (room - size != 0 && room - size < 40)
            size -= 40;
        vlen[n] = (uint32_t)size - FRAME_HEADER_SIZE - 1;
        for (size_t j = 0; j < vlen[n]; j++)
            val[j] = value_byte(n, j);
        ck_assert_int_eq(rk_put(r, table, "k", 1, val, vlen[n], &lsn[n]), 0);
    }
    return n;
}

/* Producers filled the ring exactly (tail - head == capacity) and the
 * consumer read it to the end before releasing, as the drain does when it
 * cuts a batch at "ring empty".  The next position is the first unreleased
 * frame's place one lap on.  ring_next() must say "nothing yet", not
 * RK_ECORRUPT "the frame's LSN is not its position"; ring_wait_ready()
 * must not say ready.  (consumer.c ring_next() reads the word at read_pos
 * without checking read_pos - head < capacity.) */
START_TEST(full_ring_read_to_the_end_before_release_is_not_corrupt)
{
    ring_create_opts co = {.capacity = CAPACITY, .start_lsn = CAPACITY}; /* head at offset 0 */
    rk_ring_opts ro = {
        .producer = "p", .full_policy = RK_FULL_FAIL, .errmsg = err, .errmsg_size = sizeof err};
    static uint8_t val[RING_MIN_CAPACITY];
    uint64_t lsn[16];
    uint32_t vlen[16];
    struct ring_header *h;
    ring_owner *o = NULL;
    rk_ring *r = NULL;
    uint16_t table, producer;
    ring_frame f;
    size_t n;
    int rc;

    name_ring("full");
    ck_assert_msg(ring_create(ring_name, &co, &o, err, sizeof err) == 0, "%s", err);
    h = ring_header_of(o);
    ck_assert_msg(rk_ring_attach(ring_name, &ro, &r) == 0, "%s", err);
    ck_assert_int_eq(rk_table(r, "t", &table), 0);
    n = fill_ring(r, h, table, 0, lsn, vlen, 16);
    ck_assert_uint_eq(atomic_load(&h->tail) - atomic_load(&h->head), CAPACITY);
    ck_assert_int_eq(rk_put(r, table, "k", 1, "x", 1, NULL), RK_EFULL);

    ck_assert_int_eq(ring_next(o, &f), 1);
    ck_assert_int_eq(f.type, FRAME_ATTACH);
    producer = f.producer;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < vlen[i]; j++)
            val[j] = value_byte(i, j);
        ck_assert_int_eq(ring_next(o, &f), 1);
        assert_frame_is(&f, FRAME_PUT, table, producer, lsn[i], "k", 1, val, vlen[i]);
    }
    rc = ring_next(o, &f);
    ck_assert_msg(rc == 0, "a full ring read to its end: ring_next returned %d (%s)", rc,
                  rc < 0 ? ring_error(o) : "a frame");
    ck_assert_int_eq(ring_wait_ready(o, 0), 0);
    ring_release(o);
    ck_assert_uint_eq(atomic_load(&h->head), atomic_load(&h->tail));
    ck_assert_int_eq(rk_put(r, table, "k", 1, "after", 5, &lsn[0]), 0);
    ck_assert_int_eq(ring_next(o, &f), 1);
    assert_frame_is(&f, FRAME_PUT, table, producer, lsn[0], "k", 1, "after", 5);
    rk_ring_detach(r);
    ring_close(o, 1);
}
END_TEST

/* Two producers that both saw the last 64 bytes free both claim them
 * (ring.c claim(): the later one waits for the consumer before it writes
 * its marker), so tail - head may exceed the capacity by up to a frame per
 * racing producer -- consumer.c allows capacity + max_frame * 64.
 * segment.c ring_map_existing() refuses tail - head > capacity as
 * "overwritten ... remove it", so a node restarting at that moment cannot
 * take its ring back, and an operator who follows the message loses the
 * records in it. */
START_TEST(claims_racing_for_the_last_room_are_not_corrupt_cursors)
{
    ring_create_opts co = {.capacity = CAPACITY, .start_lsn = CAPACITY};
    rk_ring_opts ro = {
        .producer = "p", .full_policy = RK_FULL_FAIL, .errmsg = err, .errmsg_size = sizeof err};
    rk_ring_opts late = {
        .producer = "q", .full_policy = RK_FULL_FAIL, .errmsg = err, .errmsg_size = sizeof err};
    uint64_t lsn[16];
    uint32_t vlen[16];
    struct ring_header *h;
    ring_owner *o = NULL;
    rk_ring *r = NULL, *q = NULL;
    uint16_t table;
    int rc;

    name_ring("race");
    ck_assert_msg(ring_create(ring_name, &co, &o, err, sizeof err) == 0, "%s", err);
    h = ring_header_of(o);
    ck_assert_msg(rk_ring_attach(ring_name, &ro, &r) == 0, "%s", err);
    ck_assert_int_eq(rk_table(r, "t", &table), 0);
    fill_ring(r, h, table, 64, lsn, vlen, 16);
    ring_test_claim_without_marker(r, 64);
    ring_test_claim_without_marker(r, 64);
    ck_assert_uint_eq(atomic_load(&h->tail) - atomic_load(&h->head), CAPACITY + 64);

    rc = ring_inspect(ring_name, &info, err, sizeof err);
    ck_assert_msg(rc == 0, "ring_inspect: %d (%s)", rc, err);
    rc = rk_ring_attach(ring_name, &late, &q); /* the ring is full: its ATTACH cannot be written */
    ck_assert_msg(rc == RK_EFULL, "rk_ring_attach: %d (%s)", rc, err);
    ring_close(o, 0);
    rc = ring_reopen(ring_name, 2, &o, err, sizeof err);
    ck_assert_msg(rc == 0, "ring_reopen: %d (%s)", rc, err);
    rk_ring_detach(r);
    ring_close(o, 1);
}
END_TEST

/* ring_inspect() opens the segment read-only without O_NONBLOCK: on a FIFO
 * planted at /dev/shm/ringkeep.<name> the open blocks until a writer comes
 * (segment.c ring_map_existing(), the open()).  A child runs ring_inspect();
 * the parent watches it through /proc and unblocks it if it is stuck in the
 * FIFO's open. */
/* A line of /proc/<pid>/<what>, or "" when it cannot be read. */
static void read_proc(pid_t pid, const char *what, char *buf, size_t size)
{
    char path[64];
    ssize_t n = -1;
    int fd;

    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, what);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, buf, size - 1);
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
}

/* 1 when pid sleeps in a FIFO's open: the kernel's wait_for_partner, or, if
 * wchan is not shown, an open/openat that it sleeps in. */
static int blocked_in_fifo_open(pid_t pid)
{
    char wchan[64], syscall_line[128];

    read_proc(pid, "wchan", wchan, sizeof wchan);
    if (strstr(wchan, "fifo") || strstr(wchan, "wait_for_partner"))
        return 1;
    read_proc(pid, "syscall", syscall_line, sizeof syscall_line); /* "running" unless asleep */
    return strncmp(syscall_line, "257 ", 4) == 0 || strncmp(syscall_line, "2 ", 2) == 0;
}

START_TEST(inspect_does_not_block_on_a_fifo)
{
    int status = 0, reaped = 0, blocked = 0, fd;
    pid_t pid;

    name_ring("fifoinspect");
    ck_assert_int_eq(mkfifo(ring_path, 0600), 0);
    pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        char msg[512] = "";
        int rc = ring_inspect(ring_name, &info, msg, sizeof msg);
        _exit(rc == RK_EBADRING && strstr(msg, "not a regular file") ? 0 : 1);
    }
    /* bounded: the child returns at once, or is seen asleep in the open
     * twice in a row */
    for (int step = 0; step < 20000 && !reaped && blocked < 2; step++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            reaped = 1;
        else
            blocked = blocked_in_fifo_open(pid) ? blocked + 1 : 0;
        if (!reaped)
            pause_ms(1);
    }
    if (!reaped) { /* let it go: a writer completes its open */
        fd = open(ring_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        if (fd >= 0)
            close(fd);
    }
    ck_assert_msg(reaped || blocked < 2, "ring_inspect blocked in open() on a FIFO until a writer came");
    ck_assert_msg(reaped, "ring_inspect on a FIFO neither returned nor was seen blocked");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "ring_inspect on a FIFO did not refuse it as not a regular file");
}
END_TEST

/* PAD frames may not carry the consumer a lap or more past head: that
 * space holds unreleased frames, and ring_release() would zero more than
 * the data area (consumer.c ring_release(): memset(data, 0, len - first)
 * with len > capacity).  With a tail far away, the same PAD loop inside
 * one ring_next() call runs (tail - head) / capacity times: a hang. */
START_TEST(padding_never_carries_the_consumer_a_lap_past_head)
{
    ring_create_opts co = {.capacity = CAPACITY, .start_lsn = CAPACITY, .unblock_timeout_ms = 1};
    unsigned long long where = 0;
    struct ring_header *h;
    uint8_t *data;
    uint64_t head;
    ring_owner *o = NULL;
    uint32_t word = (uint32_t)CAPACITY;
    ring_frame f;
    const char *p;
    int rc = 0;

    name_ring("lap");
    ck_assert_msg(ring_create(ring_name, &co, &o, err, sizeof err) == 0, "%s", err);
    h = ring_header_of(o);
    data = ring_data_of(o);
    head = atomic_load(&h->head);
    /* one PAD over the whole data area; the tail three laps on, within
     * what consumer.c tolerates for racing claims */
    memcpy(data, &word, 4);
    data[4] = FRAME_PAD;
    atomic_store(&h->tail, head + 3 * CAPACITY);
    for (int call = 0; call < 8; call++) {
        rc = ring_next(o, &f);
        ck_assert_msg(rc != 1, "ring_next delivered a frame from a ring of padding");
        if (rc != 0)
            break;
        pause_ms(2);
    }
    if (rc == RK_ECORRUPT && (p = strstr(ring_error(o), "position ")) != NULL)
        where = strtoull(p + 9, NULL, 10);
    ck_assert_msg(where <= head + CAPACITY,
                  "the consumer reached position %llu, %llu bytes past head %llu (%s)", where, where - head,
                  (unsigned long long)head, ring_error(o));
    ring_release(o);
    ck_assert_uint_le(atomic_load(&h->head) - head, CAPACITY);
    ring_close(o, 1);
}
END_TEST

/* A claim without a marker belongs to a producer between its fetch-add and
 * its marker -- or waiting there for room, as claim() in ring.c does when
 * it races for the last space.  The consumer (consumer.c unblock()) skips
 * such a claim as soon as *any* attached producer is dead, although the
 * dead one need not be the one that claimed it; the live producer then
 * writes its frame into released space.  Its stuck timer also runs while
 * the drain writes its journal, so a slow fsync is enough to reach this. */
START_TEST(unmarked_claim_of_a_live_producer_is_not_skipped_for_a_dead_one)
{
    ring_create_opts co = {.capacity = CAPACITY, .unblock_timeout_ms = 1};
    rk_ring_opts ro_live = {.producer = "live", .full_policy = RK_FULL_FAIL};
    rk_ring_opts ro_other = {.producer = "other", .full_policy = RK_FULL_FAIL};
    rk_ring *live = NULL, *other = NULL;
    ring_owner *o = NULL;
    uint64_t claim_pos, after;
    uint16_t table;
    ring_frame f = {0};

    name_ring("unmarked");
    ck_assert_msg(ring_create(ring_name, &co, &o, err, sizeof err) == 0, "%s", err);
    attach_dead_producer("gone");
    ck_assert_int_eq(rk_ring_attach(ring_name, &ro_live, &live), 0);
    ck_assert_int_eq(rk_ring_attach(ring_name, &ro_other, &other), 0);
    ck_assert_int_eq(rk_table(other, "t", &table), 0);
    claim_pos = ring_test_claim_without_marker(live, 64);
    ck_assert_int_eq(rk_put(other, table, "k", 1, "v", 1, &after), 0);
    ck_assert_uint_eq(after, claim_pos + 64);
    for (int call = 0; call < 200; call++) {
        int rc = ring_next(o, &f);
        ck_assert_msg(rc >= 0, "ring_next: %s", ring_error(o));
        ck_assert_msg(!(rc == 1 && f.lsn >= after && f.type != FRAME_ABORT),
                      "the consumer skipped the live producer's claim at %llu and delivered %llu",
                      (unsigned long long)claim_pos, (unsigned long long)f.lsn);
        if (rc == 0)
            pause_ms(2);
    }
    ck_assert_uint_eq(atomic_load(&ring_header_of(o)->n_unblocked), 0);
    rk_ring_detach(other);
    rk_ring_detach(live);
    ring_close(o, 1);
}
END_TEST

/* PAD frames carry no checksum, and PAD (4) is one bit away from ATTACH
 * (5): one flipped bit turns a committed ATTACH frame -- which voids the
 * producer's open group -- into padding that the consumer skips without a
 * word (consumer.c ring_next(), the FRAME_PAD branch).  Every byte of a PAD
 * after its type is zero (claimed space is zero), which it could check. */
START_TEST(attach_frame_turned_into_padding_is_not_skipped)
{
    struct live l;
    uint64_t next;
    uint32_t n;

    start_live(&l, "attachpad");
    n = put_frame(&l, FRAME_ATTACH, 0, l.pos, "q", "fifteen-bytes!!");
    ck_assert_uint_eq(n % FRAME_ALIGN, 0);
    at(&l, l.pos)[4] ^= 0x01;
    ck_assert_int_eq(at(&l, l.pos)[4], FRAME_PAD);
    next = l.pos + n;
    n = frame_encode(at(&l, next), FRAME_PUT, l.table, 0, next, "k", 1, "v", 1);
    set_tail(&l, next + frame_align(n));
    deliver_good(&l);
    expect_stopped(&l, NULL);
    stop_live(&l);
}
END_TEST

/* The refusal of a capacity that is not a power of two says so: today's
 * message claims the file size does not match when it does (segment.c
 * ring_map_existing(): five conditions share the "header says header X +
 * capacity Y bytes but the file has Z" message). */
START_TEST(capacity_not_a_power_of_two_is_named)
{
    uint64_t capacity = CAPACITY + 4096;

    make_closed_ring("pow2", CAPACITY);
    poke64(HDR(capacity), capacity);
    ck_assert_int_eq(truncate(ring_path, (off_t)(RING_HEADER_SIZE + capacity)), 0);
    expect_refused(BY_ALL, RK_EBADRING, "capacity 69632", "power of two");
}
END_TEST

/* A producer that attached, registered table "t" and died holding a claim:
 * with marker, a record claimed with rk_claim_record (its key half
 * written); without, only its fetch-add of 64 bytes
 * (ring_test_claim_without_marker).  Returns the claim's position. */
static uint64_t die_holding_claim(const char *producer, int marker)
{
    int fds[2], status;
    uint64_t pos = 0;
    pid_t pid;

    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        rk_ring_opts ro = {.producer = producer, .full_policy = RK_FULL_FAIL};
        rk_ring *r = NULL;
        rk_claim c;
        uint16_t t;
        if (rk_ring_attach(ring_name, &ro, &r) || rk_table(r, "t", &t))
            _exit(1);
        if (marker) {
            if (rk_claim_record(r, t, 3, 5, &c))
                _exit(2);
            memcpy(c.key, "ab", 2);
            pos = ((const struct frame_header *)c.frame_)->lsn;
        } else {
            pos = ring_test_claim_without_marker(r, 64);
        }
        _exit(write(fds[1], &pos, sizeof pos) == sizeof pos ? 0 : 3);
    }
    close(fds[1]);
    ck_assert_int_eq(read(fds[0], &pos, sizeof pos), sizeof pos);
    close(fds[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return pos;
}

/* Reads frames of o into got[0..max) until the one at LSN `until` has come
 * (a dead claim before it is unblocked within a few of the 2 ms steps).
 * Returns how many. */
static int read_until(ring_owner *o, uint64_t until, ring_frame *got, int max)
{
    int n = 0;

    for (int step = 0; step < UNBLOCK_STEPS; step++) {
        int rc = ring_next(o, &got[n]);
        ck_assert_msg(rc >= 0, "ring_next: %s", ring_error(o));
        if (rc == 0) {
            pause_ms(2);
            continue;
        }
        if (got[n++].lsn == until)
            return n;
        ck_assert_int_lt(n, max);
    }
    ck_abort_msg("the frame at %llu did not come", (unsigned long long)until);
    return n;
}

static const ring_frame *find_type(const ring_frame *f, int n, uint8_t type)
{
    for (int i = 0; i < n; i++)
        if (f[i].type == type)
            return &f[i];
    return NULL;
}

static uint64_t le64_of(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The dead claim at pos is a committed PAD frame of size bytes: its commit
 * word is the size, its header zero past the type. */
static void assert_padded(ring_owner *o, uint64_t pos, uint32_t size)
{
    static const uint8_t zero[FRAME_HEADER_SIZE];
    const uint8_t *p = ring_data_of(o) + (pos & (CAPACITY - 1));
    uint32_t word;

    memcpy(&word, p, 4);
    ck_assert_uint_eq(word, size);
    ck_assert_int_eq(p[4], FRAME_PAD);
    ck_assert(memcmp(p + 5, zero, FRAME_HEADER_SIZE - 5) == 0);
}

/* A dead claim was only skipped, never padded (consumer.c unblock_marked):
 * a node killed after journaling the ABORT and before releasing the ring
 * met the claim again after its restart, and as its producer had attached
 * again meanwhile (another session holds the slot), reported it again, an
 * ABORT that discarded the new session's open group.  The claim is padded
 * in place before the consumer moves past it; the restarted consumer reads
 * exactly the frames the first one did, without the ABORT. */
START_TEST(dead_claim_is_padded_and_not_reported_again_after_a_restart)
{
    ring_create_opts co = {.capacity = CAPACITY, .unblock_timeout_ms = 1};
    rk_ring_opts ro = {.producer = "doomed", .full_policy = RK_FULL_FAIL};
    ring_owner *o = NULL;
    rk_ring *again = NULL;
    ring_frame got[8], reread[8];
    const ring_frame *abort_frame;
    uint64_t claim, a1;
    uint16_t t;
    int n, m;

    name_ring("padded");
    ck_assert_msg(ring_create(ring_name, &co, &o, err, sizeof err) == 0, "%s", err);
    claim = die_holding_claim("doomed", 1);
    ck_assert_int_eq(rk_ring_attach(ring_name, &ro, &again), 0); /* session 2 */
    ck_assert_int_eq(rk_table(again, "t", &t), 0);
    ck_assert_int_eq(rk_put(again, t, "a1", 2, "1", 1, &a1), 0);
    n = read_until(o, a1, got, 8);
    ck_assert_int_eq(n, 4); /* ATTACH, ABORT, ATTACH, a1 */
    abort_frame = find_type(got, n, FRAME_ABORT);
    ck_assert_ptr_nonnull(abort_frame);
    ck_assert_uint_eq(abort_frame->lsn, claim);
    ck_assert_uint_eq(le64_of(abort_frame->val), 1);
    /* killed before ring_release: the next consumer starts at head again */
    ring_close(o, 0);
    ck_assert_msg(ring_reopen(ring_name, 2, &o, err, sizeof err) == 0, "%s", err);
    m = read_until(o, a1, reread, 8);
    ck_assert_msg(find_type(reread, m, FRAME_ABORT) == NULL, "the dead claim at %llu was reported again",
                  (unsigned long long)claim);
    ck_assert_int_eq(m, n - 1);
    for (int i = 0, j = 0; i < n; i++) {
        if (got[i].type == FRAME_ABORT)
            continue;
        ck_assert_uint_eq(reread[j].lsn, got[i].lsn);
        ck_assert_uint_eq(reread[j].raw_len, got[i].raw_len);
        ck_assert(memcmp(reread[j].raw, got[i].raw, got[i].raw_len) == 0);
        j++;
    }
    assert_padded(o, claim, 40);
    ring_release(o);
    ck_assert_int_eq(ring_sweep_dead(o), 0);
    rk_ring_detach(again);
    ring_close(o, 1);
}
END_TEST

/* The consumer marked a dead producer SLOT_DEAD when it made the ABORT
 * frame, before the node had journaled it: a node killed in between left
 * a slot that nobody would report again, and the producer's open group
 * held in apply until it attached again.  The slot is marked only at
 * ring_release(); a consumer that restarts from before the (now padded)
 * claim does not report it at the claim, but ring_sweep_dead() does.
 * _i = 1: a claim with a marker; 0: a fetch-add without one. */
START_TEST(dead_producer_not_released_is_reported_again_by_the_next_consumer)
{
    ring_create_opts co = {.capacity = CAPACITY, .unblock_timeout_ms = 1};
    rk_ring_opts ro = {.producer = "live", .full_policy = RK_FULL_FAIL};
    ring_owner *o = NULL;
    rk_ring *live = NULL;
    ring_frame got[8], f;
    const ring_frame *abort_frame;
    uint64_t claim, after, attach_lsn;
    uint16_t t, doomed;
    int n;

    name_ring(_i ? "notreleased" : "notreleased0");
    ck_assert_msg(ring_create(ring_name, &co, &o, err, sizeof err) == 0, "%s", err);
    claim = die_holding_claim("doomed", _i);
    ck_assert_int_eq(rk_ring_attach(ring_name, &ro, &live), 0);
    ck_assert_int_eq(rk_table(live, "t", &t), 0);
    ck_assert_int_eq(rk_put(live, t, "k", 1, "v", 1, &after), 0);
    n = read_until(o, after, got, 8);
    ck_assert_int_eq(n, 4); /* ATTACH doomed, ABORT, ATTACH live, k */
    ck_assert_int_eq(got[0].type, FRAME_ATTACH);
    doomed = got[0].producer;
    attach_lsn = got[0].lsn;
    abort_frame = find_type(got, n, FRAME_ABORT);
    ck_assert_ptr_nonnull(abort_frame);
    ck_assert_uint_eq(abort_frame->lsn, claim);
    ck_assert_uint_eq(abort_frame->producer, doomed);
    ring_close(o, 0); /* killed before ring_release */
    ck_assert_msg(ring_reopen(ring_name, 2, &o, err, sizeof err) == 0, "%s", err);
    n = read_until(o, after, got, 8);
    ck_assert_int_eq(n, 3);
    ck_assert_ptr_null(find_type(got, n, FRAME_ABORT));
    ck_assert_int_eq(ring_sweep_dead(o), 1);
    ck_assert_int_eq(ring_next(o, &f), 1);
    ck_assert_int_eq(f.type, FRAME_ABORT);
    ck_assert_uint_eq(f.producer, doomed);
    ck_assert_uint_eq(f.lsn, attach_lsn + 1); /* just past its last frame */
    ck_assert_uint_eq(le64_of(f.val), 1);
    assert_padded(o, claim, _i ? 40 : 64);
    ck_assert_uint_eq(atomic_load(&ring_header_of(o)->producers[doomed].claim_pos), CLAIM_NONE);
    ck_assert_uint_eq(atomic_load(&ring_header_of(o)->producers[doomed].state), SLOT_ATTACHED);
    ring_release(o);
    ck_assert_uint_eq(atomic_load(&ring_header_of(o)->producers[doomed].state), SLOT_DEAD);
    ck_assert_int_eq(ring_sweep_dead(o), 0);
    rk_ring_detach(live);
    ring_close(o, 1);
}
END_TEST

/* A consumer killed half way through padding a dead claim (the marker
 * holds the PAD type and its fields are zeroed, pad_claim() steps 1 and 2)
 * is not a corrupt marker: the next consumer finishes the padding, and
 * ring_sweep_dead() reports the producer. */
START_TEST(claim_padded_half_way_by_a_killed_consumer_is_finished)
{
    ring_create_opts co = {.capacity = CAPACITY, .unblock_timeout_ms = 1};
    rk_ring_opts ro = {.producer = "live", .full_policy = RK_FULL_FAIL};
    ring_owner *o = NULL;
    rk_ring *live = NULL;
    ring_frame got[8], f;
    uint64_t claim, after;
    uint16_t t;
    uint8_t *p;
    int n;

    name_ring("halfpadded");
    ck_assert_msg(ring_create(ring_name, &co, &o, err, sizeof err) == 0, "%s", err);
    claim = die_holding_claim("doomed", 1);
    p = ring_data_of(o) + (claim & (CAPACITY - 1));
    memset(p + 4, 0, FRAME_HEADER_SIZE - 4);
    p[4] = FRAME_PAD;
    ck_assert_int_eq(rk_ring_attach(ring_name, &ro, &live), 0);
    ck_assert_int_eq(rk_table(live, "t", &t), 0);
    ck_assert_int_eq(rk_put(live, t, "k", 1, "v", 1, &after), 0);
    n = read_until(o, after, got, 8);
    ck_assert_int_eq(n, 3); /* ATTACH doomed, ATTACH live, k */
    ck_assert_ptr_null(find_type(got, n, FRAME_ABORT));
    assert_padded(o, claim, 40);
    ck_assert_int_eq(ring_sweep_dead(o), 1);
    ck_assert_int_eq(ring_next(o, &f), 1);
    ck_assert_int_eq(f.type, FRAME_ABORT);
    ck_assert_uint_eq(f.producer, got[0].producer);
    ring_release(o);
    rk_ring_detach(live);
    ring_close(o, 1);
}
END_TEST

/* ------------------------------------------------------------- runner */

static TCase *new_tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);

    tcase_set_timeout(tc, 0);
    tcase_add_unchecked_fixture(tc, NULL, remove_test_rings);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *segment_suite(void)
{
    Suite *s = suite_create("segment");
    TCase *tc;

    tc = new_tcase(s, "stale");
    tcase_add_test(tc, wrong_magic_is_refused);
    tcase_add_test(tc, magic_zero_is_not_initialised);
    tcase_add_test(tc, other_format_version_is_refused);
    tcase_add_test(tc, size_that_does_not_match_the_header_is_refused);
    tcase_add_test(tc, capacity_out_of_range_is_refused);
    tcase_add_test(tc, too_small_a_file_is_refused);
    tcase_add_test(tc, group_or_other_permission_bits_are_refused);
    tcase_add_test(tc, ring_of_another_uid_is_refused);
    tcase_add_test(tc, what_is_not_a_regular_file_is_refused);
    tcase_add_test(tc, cursors_out_of_range_are_corrupt);
    tcase_add_test(tc, inconsistent_limits_are_refused);
    tcase_add_test(tc, missing_ring_says_start_the_node);
    tcase_add_test(tc, create_refuses_an_existing_ring);
    tcase_add_test(tc, created_segment_is_private_whatever_the_umask);
    tcase_add_test(tc, reopen_refuses_a_live_owner_then_takes_over);

    tc = new_tcase(s, "live");
    tcase_add_loop_test(tc, garbage_in_a_live_ring_stops_the_consumer, 0, N_CORRUPTIONS);
    tcase_add_test(tc, random_data_areas_end_in_zero_or_corrupt);

    tc = new_tcase(s, "decode");
    tcase_add_test(tc, truncated_frames_never_read_past_avail);
    tcase_add_test(tc, every_flipped_bit_is_caught);
    tcase_add_test(tc, random_buffers_never_read_past_avail);
    tcase_add_test(tc, reason_is_truncated_to_its_buffer);

    tc = new_tcase(s, "regressions");
    tcase_add_test(tc, full_ring_read_to_the_end_before_release_is_not_corrupt);
    tcase_add_test(tc, claims_racing_for_the_last_room_are_not_corrupt_cursors);
    tcase_add_test(tc, inspect_does_not_block_on_a_fifo);
    tcase_add_test(tc, padding_never_carries_the_consumer_a_lap_past_head);
    tcase_add_test(tc, unmarked_claim_of_a_live_producer_is_not_skipped_for_a_dead_one);
    tcase_add_test(tc, attach_frame_turned_into_padding_is_not_skipped);
    tcase_add_test(tc, capacity_not_a_power_of_two_is_named);
    tcase_add_test(tc, dead_claim_is_padded_and_not_reported_again_after_a_restart);
    tcase_add_loop_test(tc, dead_producer_not_released_is_reported_again_by_the_next_consumer, 0, 2);
    tcase_add_test(tc, claim_padded_half_way_by_a_killed_consumer_is_finished);
    return s;
}

int main(void)
{
    SRunner *sr;
    int n_failed;

    runner_pid = getpid();
    sr = srunner_create(segment_suite());
    srunner_run_all(sr, CK_NORMAL);
    n_failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_test_rings();
    return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
