/* sys.c -- the I/O seam of the store: every write, fsync, open, rename,
 * unlink, ftruncate and mkdir of the data directory, Berkeley DB's own
 * included, goes through the sys_* wrappers below, so that a test (or a
 * drill, with RK_FAULT in the environment) can make the Nth call of one
 * kind fail.
 *
 * Design: one fault per kind of call, armed by a spec
 *   op:ERR:N[:PATH_GLOB[:THREAD_GLOB]]       the Nth matching call and every one after it fail
 *   op:ERR:once@N[:PATH_GLOB[:THREAD_GLOB]]  only the Nth matching call fails
 * A call matches when the file it works on (for an fd: its /proc/self/fd
 * link; rename: either name) matches PATH_GLOB and the calling thread's
 * name matches THREAD_GLOB (fnmatch; an empty or missing glob matches
 * all).  The sticky fault is a disk that broke; the once fault is Linux's
 * writeback error, reported to one fsync and then forgotten (fsyncgate),
 * which is why every failed fsync or write is also remembered for the
 * whole process (sys_io_failed): the journal acknowledges nothing after
 * one, whoever saw it.  An armed fault is immutable once published (a new
 * arm publishes a new one), so a call racing with an arm sees one whole;
 * replaced ones are kept until exit.  A disarmed op costs one atomic load
 * per call.  sys_install() hands the wrappers to Berkeley DB
 * (db_env_set_func_*, process-global, so before any environment is
 * opened) and reads RK_FAULT, once per process.
 *
 * The sys_* functions keep the POSIX convention (-1 and errno).  Berkeley
 * DB 5.3 expects other conventions from its replacements (os/os_*.c), so
 * it gets adapters (bdb_*): fsync, rename, unlink and ftruncate must
 * return the errno value itself (BDB takes a non-zero return as the error
 * code, so -1 would surface as "Unknown error -1" and an ENOENT from unlink
 * would not be recognised); a write must write everything (BDB takes a
 * short count as a failure and does not retry EINTR); and an fd opened
 * through the replacement open skips BDB's own FD_CLOEXEC, so the adapter
 * adds O_CLOEXEC.  Note that with a replacement write installed BDB sends
 * every write through it (seek + write), never through pwrite.
 *
 *   disarmed --sys_fault_arm(spec)--> armed --Nth matching call--> fired
 *      ^                                |                            | once: armed
 *      +---- sys_fault_arm(NULL or "") -+----------------------------+ again, never fires
 *
 * RK_CRASHSIM (read by sys_install too) arms the power-loss simulation of
 * crashsim.c: every wrapper then hands its call, after the fault check, to
 * its crashsim_* twin, which does it and keeps what a power cut would lose.
 *
 * Threads: any.  Faults are published with release stores and read with
 * acquire loads; counters are atomics; arming while other threads do I/O
 * is allowed (a call racing with the arm may count or not).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "persist/crashsim.h"
#include "ringkeep.h"
#include "persist/store.h"

enum sys_op { OP_FSYNC, OP_WRITE, OP_OPEN, OP_RENAME, OP_UNLINK, OP_FTRUNCATE, OP_MKDIR, N_OPS };

static const char *const op_names[N_OPS] = {
    [OP_FSYNC] = "fsync",   [OP_WRITE] = "write", [OP_OPEN] = "open",           [OP_RENAME] = "rename",
    [OP_UNLINK] = "unlink", [OP_MKDIR] = "mkdir", [OP_FTRUNCATE] = "ftruncate",
};

static const struct {
    const char *name;
    int value;
} fault_errors[] = {{"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EROFS", EROFS}, {"ENOMEM", ENOMEM}};

#define THREAD_GLOB_MAX 64

/* One armed fault; only n_calls changes after it is published. */
struct fault {
    uint64_t fire_at;                  /* the matching call (from 1) that fails (first) */
    int err;                           /* errno the failing call reports */
    int once;                          /* 1: only call fire_at fails; 0: every one from it on */
    char path_glob[PATH_MAX];          /* "": any file */
    char thread_glob[THREAD_GLOB_MAX]; /* "": any thread */
    _Atomic uint64_t n_calls;          /* matching calls counted */
    struct fault *next_retired;        /* on the retired list once replaced */
};

static _Atomic(struct fault *) armed[N_OPS]; /* NULL: disarmed */
static pthread_mutex_t retire_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fault *retired; /* replaced faults: a racing call may still read one (under retire_lock) */
/* the first failed fsync or write of the process (its errno), 0 while none */
static _Atomic int io_error;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;

/* The file fd refers to, from its /proc/self/fd link ("" if unknown). */
static void fd_path(int fd, char *out, size_t size)
{
    char link[64];
    ssize_t n;

    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, out, size - 1);
    out[n > 0 ? n : 0] = '\0';
}

static int call_matches(const struct fault *f, int fd, const char *path, const char *path2)
{
    if (f->thread_glob[0]) {
        char name[THREAD_GLOB_MAX] = "";
        if (pthread_getname_np(pthread_self(), name, sizeof name) != 0 ||
            fnmatch(f->thread_glob, name, 0) != 0)
            return 0;
    }
    if (f->path_glob[0]) {
        char of_fd[PATH_MAX];
        if (fd >= 0) {
            fd_path(fd, of_fd, sizeof of_fd);
            path = of_fd;
        }
        return (path && fnmatch(f->path_glob, path, 0) == 0) ||
               (path2 && fnmatch(f->path_glob, path2, 0) == 0);
    }
    return 1;
}

/* 0 when the call may go ahead, else the errno it must fail with.  fd
 * (-1: none) or path and path2 (NULL: none) name the file it works on. */
static int fault_check(enum sys_op op, int fd, const char *path, const char *path2)
{
    struct fault *f = atomic_load_explicit(&armed[op], memory_order_acquire); /* pairs with arm: f is whole */
    uint64_t n;

    if (!f || !call_matches(f, fd, path, path2))
        return 0;
    n = atomic_fetch_add_explicit(&f->n_calls, 1, memory_order_relaxed) + 1;
    if (n < f->fire_at || (f->once && n > f->fire_at))
        return 0;
    return f->err;
}

/* Passes rc and errno on; a failed fsync or write (rc < 0, errno not a
 * retry) is remembered if it is the process's first. */
static ssize_t io_result(ssize_t rc)
{
    int err = errno, none = 0;

    /* seq_cst: a journal commit that returns after this failure was
     * recorded sees it (store_journal_append_many checks after commit) */
    if (rc < 0 && err != EINTR && err != EAGAIN)
        atomic_compare_exchange_strong(&io_error, &none, err);
    errno = err;
    return rc;
}

int sys_io_failed(void)
{
    return atomic_load(&io_error); /* seq_cst: see io_result */
}

/* Publishes f (NULL: disarms) for op; the one it replaces is retired. */
static void publish(enum sys_op op, struct fault *f)
{
    /* release: a call that loads f sees it whole */
    struct fault *old = atomic_exchange_explicit(&armed[op], f, memory_order_acq_rel);

    if (old) {
        pthread_mutex_lock(&retire_lock);
        old->next_retired = retired;
        retired = old;
        pthread_mutex_unlock(&retire_lock);
    }
}

/* Copies the field of spec from p up to the next ':' (or the end) into
 * out; returns where the next field starts (NULL at the end), or sets
 * *bad when it does not fit. */
static const char *take_field(const char *p, char *out, size_t size, int *bad)
{
    const char *colon = strchr(p, ':');
    size_t len = colon ? (size_t)(colon - p) : strlen(p);

    if (len >= size)
        *bad = 1;
    else
        snprintf(out, size, "%.*s", (int)len, p);
    return colon ? colon + 1 : NULL;
}

int sys_fault_arm(const char *spec)
{
    char op_name[16] = "", err_name[16] = "", count[32] = "";
    const char *p = spec, *digits;
    unsigned long long nth;
    struct fault *f;
    char *end;
    int op, bad = 0;

    if (!spec || !*spec) {
        for (op = 0; op < N_OPS; op++)
            publish(op, NULL);
        return 0;
    }
    f = calloc(1, sizeof *f);
    if (!f)
        return ENOMEM;
    p = take_field(p, op_name, sizeof op_name, &bad);
    if (p)
        p = take_field(p, err_name, sizeof err_name, &bad);
    if (!p)
        goto invalid;
    p = take_field(p, count, sizeof count, &bad);
    if (p)
        p = take_field(p, f->path_glob, sizeof f->path_glob, &bad);
    if (p && strlen(p) >= sizeof f->thread_glob)
        bad = 1;
    else if (p)
        snprintf(f->thread_glob, sizeof f->thread_glob, "%s", p);
    f->once = strncmp(count, "once@", 5) == 0;
    digits = count + (f->once ? 5 : 0);
    if (bad || digits[0] < '0' || digits[0] > '9')
        goto invalid;
    errno = 0;
    nth = strtoull(digits, &end, 10);
    if (*end != '\0' || errno || nth == 0)
        goto invalid;
    f->fire_at = nth;
    for (op = 0; op < N_OPS; op++)
        if (strcmp(op_name, op_names[op]) == 0)
            break;
    for (size_t i = 0; i < sizeof fault_errors / sizeof fault_errors[0]; i++)
        if (strcmp(err_name, fault_errors[i].name) == 0)
            f->err = fault_errors[i].value;
    if (op == N_OPS || f->err == 0)
        goto invalid;
    publish(op, f);
    return 0;
invalid:
    free(f);
    return RK_EINVAL;
}

/* fsync latency: bucket bounds (us), roughly 1-2.5-5 per decade from the
 * 100 us a rewrite takes on a fast disk to a second */
const uint32_t sys_fsync_bucket_us[SYS_FSYNC_BUCKETS] = {50,    100,   250,    500,    1000,   2500,   5000,
                                                          10000, 25000, 50000, 100000, 250000, 500000, 1000000};
/* counts per bucket and the sum: relaxed, each is a statistic on its own
 * and orders nothing (sys_fsync_stats reads them one by one) */
static _Atomic uint64_t fsync_counts[SYS_FSYNC_BUCKETS + 1], fsync_sum_ns;

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fsync_count(uint64_t ns)
{
    size_t b = 0;

    while (b < SYS_FSYNC_BUCKETS && ns > (uint64_t)sys_fsync_bucket_us[b] * 1000u)
        b++;
    atomic_fetch_add_explicit(&fsync_counts[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&fsync_sum_ns, ns, memory_order_relaxed);
}

void sys_fsync_stats(struct sys_fsync_stats *out)
{
    for (size_t b = 0; b <= SYS_FSYNC_BUCKETS; b++)
        out->n[b] = atomic_load_explicit(&fsync_counts[b], memory_order_relaxed);
    out->sum_ns = atomic_load_explicit(&fsync_sum_ns, memory_order_relaxed);
}

int sys_fsync(int fd)
{
    int err = fault_check(OP_FSYNC, fd, NULL, NULL);
    uint64_t t0;
    int rc;

    if (err) {
        errno = err;
        return (int)io_result(-1);
    }
    t0 = monotonic_ns();
    rc = crashsim_active() ? crashsim_fsync(fd) : fsync(fd);
    err = errno;
    fsync_count(monotonic_ns() - t0);
    errno = err; /* fsync's, for io_result */
    return (int)io_result(rc);
}

/* fsyncs path, opened read-only with the extra open flags. */
static int fsync_at(const char *path, int flags)
{
    int fd = sys_open(path, O_RDONLY | O_CLOEXEC | flags), rc = 0;

    if (fd < 0)
        return errno;
    if (sys_fsync(fd) != 0)
        rc = errno;
    close(fd);
    return rc;
}

int sys_fsync_path(const char *path)
{
    return fsync_at(path, 0);
}

int sys_fsync_dir(const char *path)
{
    return fsync_at(path, O_DIRECTORY);
}

ssize_t sys_write(int fd, const void *buf, size_t n)
{
    int err = fault_check(OP_WRITE, fd, NULL, NULL);

    if (err) {
        errno = err;
        return io_result(-1);
    }
    return io_result(crashsim_active() ? crashsim_write(fd, buf, n) : write(fd, buf, n));
}

int sys_writeback(int fd, off_t off, off_t len, int wait)
{
    unsigned flags = SYNC_FILE_RANGE_WRITE;

    if (wait)
        flags |= SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER;
    /* no fault of its own and no crashsim twin: it changes nothing a power
     * cut keeps (crashsim counts what the fsyncs made durable) */
    return (int)io_result(sync_file_range(fd, off, len, flags));
}

ssize_t sys_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    int err = fault_check(OP_WRITE, fd, NULL, NULL);

    if (err) {
        errno = err;
        return io_result(-1);
    }
    return io_result(crashsim_active() ? crashsim_pwrite(fd, buf, n, off) : pwrite(fd, buf, n, off));
}

int sys_open(const char *path, int flags, ...)
{
    int err = fault_check(OP_OPEN, -1, path, NULL), mode = 0;
    va_list ap;

    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
        va_start(ap, flags);
        mode = va_arg(ap, int);
        va_end(ap);
    }
    if (err) {
        errno = err;
        return -1;
    }
    if (crashsim_active())
        return crashsim_open(path, flags, (mode_t)mode);
    return open(path, flags, (mode_t)mode);
}

int sys_rename(const char *from, const char *to)
{
    int err = fault_check(OP_RENAME, -1, from, to);

    if (err) {
        errno = err;
        return -1;
    }
    if (crashsim_active())
        return crashsim_rename(from, to);
    return rename(from, to);
}

int sys_unlink(const char *path)
{
    int err = fault_check(OP_UNLINK, -1, path, NULL);

    if (err) {
        errno = err;
        return -1;
    }
    if (crashsim_active())
        return crashsim_unlink(path);
    return unlink(path);
}

int sys_ftruncate(int fd, off_t len)
{
    int err = fault_check(OP_FTRUNCATE, fd, NULL, NULL);

    if (err) {
        errno = err;
        return -1;
    }
    if (crashsim_active())
        return crashsim_ftruncate(fd, len);
    return ftruncate(fd, len);
}

int sys_mkdir(const char *path, mode_t mode)
{
    int err = fault_check(OP_MKDIR, -1, path, NULL);

    if (err) {
        errno = err;
        return -1;
    }
    return mkdir(path, mode);
}

/* ------------------------------------------------------------ BDB's adapters */

#define EINTR_RETRIES 100 /* as BDB's own DB_RETRY */

/* Paced fsyncs (in a checkpoint: sys_in_checkpoint): before Berkeley DB's fsync of a file,
 * its writeback is started and waited for PACE_STEP bytes at a time, so
 * that at most one step is on its way to the disk at any moment and the
 * fsync finds little left.  A checkpoint of the environment writes every
 * dirty page of state.db and then fsyncs it: under random updates that is
 * tens of MiB at once, and the journal's fsyncs (the drain's and the
 * standby's commits, each waiting for an acknowledgement) queued behind
 * it.  bench_node at 200k records/s: durable-ack p99 25-27 ms unpaced,
 * 6.2-8.9 ms paced (steps of 1 MiB or 256 KiB alike).  A larger file takes
 * larger steps: at most PACE_MAX_STEPS calls per fsync. */
#define PACE_STEP ((off_t)1 << 20)
#define PACE_MAX_STEPS 1024
static _Thread_local int in_checkpoint;

void sys_in_checkpoint(int on)
{
    in_checkpoint = on;
}

int sys_checkpointing(void)
{
    return in_checkpoint;
}

/* 0, or -1 and errno (a failed writeback counts as a failed write).
 * Not Berkeley DB's log files (log.NNNNNNNNNN): appended in order, only
 * their tail is unsynced, and the checkpoint flushes them (write-ahead)
 * holding the log's flush lock, which a commit waits for. */
static int writeback_in_steps(int fd)
{
    char path[PATH_MAX];
    const char *base;
    struct stat st;
    off_t step = PACE_STEP;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0; /* the fsync itself tells */
    fd_path(fd, path, sizeof path);
    base = strrchr(path, '/');
    if (strncmp(base ? base + 1 : path, "log.", 4) == 0)
        return 0;
    if (st.st_size / PACE_MAX_STEPS > step)
        step = st.st_size / PACE_MAX_STEPS;
    for (off_t off = 0; off < st.st_size; off += step)
        if (sys_writeback(fd, off, step, 1) != 0)
            return -1;
    return 0;
}

static int bdb_fsync(int fd)
{
    if (in_checkpoint && writeback_in_steps(fd) != 0)
        return errno;
    return sys_fsync(fd) == 0 ? 0 : errno;
}

static ssize_t bdb_write(int fd, const void *buf, size_t n)
{
    size_t done = 0;

    for (int n_eintr = 0; done < n;) {
        ssize_t w = sys_write(fd, (const char *)buf + done, n - done);
        if (w < 0 && errno == EINTR && ++n_eintr < EINTR_RETRIES)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO; /* no progress on a regular file: do not spin */
            return -1;
        }
        done += (size_t)w;
    }
    return (ssize_t)n;
}

static ssize_t bdb_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    size_t done = 0;

    for (int n_eintr = 0; done < n;) {
        ssize_t w = sys_pwrite(fd, (const char *)buf + done, n - done, off + (off_t)done);
        if (w < 0 && errno == EINTR && ++n_eintr < EINTR_RETRIES)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t)w;
    }
    return (ssize_t)n;
}

/* The length of path's folder part ("" for a bare name). */
static size_t parent_len(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? (size_t)(slash - path) + (slash == path) : 0;
}

static int same_parent(const char *a, const char *b)
{
    size_t len = parent_len(a);

    return len == parent_len(b) && memcmp(a, b, len) == 0;
}

/* fsyncs the folder that holds path: 0 or an errno value. */
static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    size_t len = parent_len(path);

    if (len >= sizeof dir)
        return ENAMETOOLONG;
    snprintf(dir, sizeof dir, "%.*s", (int)len, len ? path : ".");
    return sys_fsync_dir(dir);
}

/* Berkeley DB never fsyncs a folder, so a file it creates (a new log file,
 * a database: written as a temp file __db.* and renamed into place) could
 * be lost by a power cut with the transactions committed in it, although
 * each of its writes was fsynced (found by the power-loss simulation,
 * test_powerloss; regression tests in test_crashsim).  Its adapters for
 * open and rename fsync the folder after creating or renaming an entry. */
static int bdb_open(const char *path, int flags, ...)
{
    int mode = 0, existed, fd, rc;
    struct stat st;
    va_list ap;

    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
        va_start(ap, flags);
        mode = va_arg(ap, int);
        va_end(ap);
    }
    existed = !(flags & O_CREAT) || stat(path, &st) == 0;
    fd = sys_open(path, flags | O_CLOEXEC, mode);
    if (fd >= 0 && !existed && (rc = fsync_parent(path)) != 0) {
        close(fd);
        errno = rc;
        return -1;
    }
    return fd;
}

static int bdb_rename(const char *from, const char *to)
{
    int rc;

    if (sys_rename(from, to) != 0)
        return errno;
    rc = fsync_parent(to);
    if (rc == 0 && !same_parent(from, to))
        rc = fsync_parent(from);
    return rc;
}

static int bdb_unlink(const char *path)
{
    return sys_unlink(path) == 0 ? 0 : errno;
}

static int bdb_ftruncate(int fd, off_t len)
{
    return sys_ftruncate(fd, len) == 0 ? 0 : errno;
}

static void install(void)
{
    const char *spec = getenv("RK_FAULT");

    db_env_set_func_fsync(bdb_fsync);
    db_env_set_func_write(bdb_write);
    db_env_set_func_pwrite(bdb_pwrite);
    db_env_set_func_open(bdb_open);
    db_env_set_func_rename(bdb_rename);
    db_env_set_func_unlink(bdb_unlink);
    db_env_set_func_ftruncate(bdb_ftruncate);
    if (spec && *spec && sys_fault_arm(spec) != 0)
        fprintf(
            stderr,
            "level=error msg=\"RK_FAULT not understood: no fault armed\" RK_FAULT=\"%s\" "
            "want=\"op:ERR:N or op:ERR:once@N, then :PATH_GLOB and :THREAD_GLOB optionally; op one of "
            "fsync write open rename unlink ftruncate mkdir, ERR one of EIO ENOSPC EROFS ENOMEM, N >= 1\"\n",
            spec);
    spec = getenv("RK_CRASHSIM");
    if (spec && *spec && crashsim_configure(spec) != 0)
        fprintf(stderr,
                "level=error msg=\"RK_CRASHSIM not understood: no power cut armed\" RK_CRASHSIM=\"%s\" "
                "want=\"at:N or seed:S[,within:M], then any of serving, torn, sector:B, report:PATH "
                "(last)\"\n",
                spec);
}

void sys_install(void)
{
    pthread_once(&install_once, install);
}

uint64_t sys_test_gate(const char *path)
{
    char text[32];
    size_t len = 0;
    FILE *f = fopen(path, "r");

    if (!f)
        return 0;
    len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    return len ? strtoull(text, NULL, 10) : UINT64_MAX;
}
