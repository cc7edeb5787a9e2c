/* sys.c -- the I/O seam of the store: every write, fsync, open, rename,
 * unlink and ftruncate of the data directory, Berkeley DB's own included,
 * goes through the sys_* wrappers below, so that a test (or a drill, with
 * RK_FAULT in the environment) can make the Nth call of one kind fail.
 *
 * Design: one fault slot per kind of call.  A slot is disarmed (fire_at 0)
 * or armed to fail from the fire_at-th call counted since sys_fault_arm();
 * once it fired it stays fired (the counter only grows), as a real failing
 * disk would.  A disarmed slot costs one atomic load per call.  sys_install()
 * hands the wrappers to Berkeley DB (db_env_set_func_*, process-global, so
 * before any environment is opened) and reads RK_FAULT, once per process.
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
 *   disarmed --sys_fault_arm("op:ERR:N")--> armed --Nth call--> fired
 *      ^                                      |                   |
 *      +------- sys_fault_arm(NULL or "") ----+-------------------+
 *
 * RK_CRASHSIM (read by sys_install too) arms the power-loss simulation of
 * crashsim.c: every wrapper then hands its call, after the fault check, to
 * its crashsim_* twin, which does it and keeps what a power cut would lose.
 *
 * Threads: any.  Counters and slots are atomics; arming while other threads
 * do I/O is allowed (a call racing with the arm may count or not).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crashsim.h"
#include "ringkeep.h"
#include "store.h"

enum sys_op { OP_FSYNC, OP_WRITE, OP_OPEN, OP_RENAME, OP_UNLINK, OP_FTRUNCATE, N_OPS };

static const char *const op_names[N_OPS] = {
    [OP_FSYNC] = "fsync",   [OP_WRITE] = "write",   [OP_OPEN] = "open",
    [OP_RENAME] = "rename", [OP_UNLINK] = "unlink", [OP_FTRUNCATE] = "ftruncate",
};

static const struct {
    const char *name;
    int value;
} fault_errors[] = {{"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EROFS", EROFS}, {"ENOMEM", ENOMEM}};

struct fault_slot {
    _Atomic uint64_t fire_at; /* 0: disarmed; else the call number that fails first */
    _Atomic uint64_t n_calls; /* calls counted since the slot was armed */
    _Atomic int err;          /* errno the failing calls report */
};

static struct fault_slot slots[N_OPS];
static pthread_once_t install_once = PTHREAD_ONCE_INIT;

/* 0 when the call may go ahead, else the errno it must fail with. */
static int fault_check(enum sys_op op)
{
    struct fault_slot *slot = &slots[op];
    uint64_t fire_at = atomic_load_explicit(&slot->fire_at, memory_order_acquire); /* pairs with arm */

    if (fire_at == 0)
        return 0;
    if (atomic_fetch_add_explicit(&slot->n_calls, 1, memory_order_relaxed) + 1 < fire_at)
        return 0;
    return atomic_load_explicit(&slot->err, memory_order_relaxed);
}

static void disarm_all(void)
{
    for (int op = 0; op < N_OPS; op++)
        atomic_store_explicit(&slots[op].fire_at, 0, memory_order_release);
}

int sys_fault_arm(const char *spec)
{
    const char *colon1, *colon2;
    unsigned long long nth;
    char *end;
    int op, err = 0;

    if (!spec || !*spec) {
        disarm_all();
        return 0;
    }
    colon1 = strchr(spec, ':');
    colon2 = colon1 ? strchr(colon1 + 1, ':') : NULL;
    if (!colon2 || colon2[1] < '0' || colon2[1] > '9')
        return RK_EINVAL;
    errno = 0;
    nth = strtoull(colon2 + 1, &end, 10);
    if (*end != '\0' || errno || nth == 0)
        return RK_EINVAL;
    for (op = 0; op < N_OPS; op++)
        if (strlen(op_names[op]) == (size_t)(colon1 - spec) && memcmp(spec, op_names[op], colon1 - spec) == 0)
            break;
    for (size_t i = 0; i < sizeof fault_errors / sizeof fault_errors[0]; i++)
        if (strlen(fault_errors[i].name) == (size_t)(colon2 - colon1 - 1) &&
            memcmp(colon1 + 1, fault_errors[i].name, colon2 - colon1 - 1) == 0)
            err = fault_errors[i].value;
    if (op == N_OPS || err == 0)
        return RK_EINVAL;
    atomic_store_explicit(&slots[op].fire_at, 0, memory_order_release);
    atomic_store_explicit(&slots[op].n_calls, 0, memory_order_relaxed);
    atomic_store_explicit(&slots[op].err, err, memory_order_relaxed);
    /* release: a call that sees fire_at sees the counter reset and err */
    atomic_store_explicit(&slots[op].fire_at, nth, memory_order_release);
    return 0;
}

int sys_fsync(int fd)
{
    int err = fault_check(OP_FSYNC);

    if (err) {
        errno = err;
        return -1;
    }
    if (crashsim_active())
        return crashsim_fsync(fd);
    return fsync(fd);
}

int sys_fsync_dir(const char *path)
{
    int fd = sys_open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return errno;
    if (sys_fsync(fd) != 0)
        rc = errno;
    close(fd);
    return rc;
}


ssize_t sys_write(int fd, const void *buf, size_t n)
{
    int err = fault_check(OP_WRITE);

    if (err) {
        errno = err;
        return -1;
    }
    if (crashsim_active())
        return crashsim_write(fd, buf, n);
    return write(fd, buf, n);
}

ssize_t sys_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    int err = fault_check(OP_WRITE);

    if (err) {
        errno = err;
        return -1;
    }
    if (crashsim_active())
        return crashsim_pwrite(fd, buf, n, off);
    return pwrite(fd, buf, n, off);
}

int sys_open(const char *path, int flags, ...)
{
    int err = fault_check(OP_OPEN), mode = 0;
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
    int err = fault_check(OP_RENAME);

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
    int err = fault_check(OP_UNLINK);

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
    int err = fault_check(OP_FTRUNCATE);

    if (err) {
        errno = err;
        return -1;
    }
    if (crashsim_active())
        return crashsim_ftruncate(fd, len);
    return ftruncate(fd, len);
}

/* ------------------------------------------------------------ BDB's adapters */

#define EINTR_RETRIES 100 /* as BDB's own DB_RETRY */

static int bdb_fsync(int fd)
{
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
        fprintf(stderr,
                "level=error msg=\"RK_FAULT not understood: no fault armed\" RK_FAULT=\"%s\" "
                "want=\"op:ERR:N, op one of fsync write open rename unlink ftruncate, ERR one of "
                "EIO ENOSPC EROFS ENOMEM, N >= 1\"\n",
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
