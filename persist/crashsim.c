/* crashsim.c -- power-loss simulation in the I/O seam (see crashsim.h for
 * the spec and the report).
 *
 * Design: SQLite's crash tests keep unsynced writes in memory and write
 * them out, some of them, at the crash.  Here the writes go to the real
 * files at once, so that every reader in the process (Berkeley DB's page
 * cache reads with plain pread) sees them as it would see the kernel's
 * page cache, and what a power cut would lose is kept as undo instead:
 *   - per file, keyed by device and inode (so renames, unlinks and reused
 *     descriptors do not matter): the size at its last fsync, the old
 *     content of every sector overwritten since then (read just before its
 *     first overwrite), and a descriptor of our own on the inode to roll
 *     it back by;
 *   - per directory entry operation (create, rename, unlink), in the order
 *     made: the directory it must be fsynced in to be durable, and for an
 *     entry the operation removed (unlinked, or replaced by a rename) a
 *     hidden hard link, DIR/.crashsim-PID-N, holding the old inode.
 * fsync of a file forgets its undo; fsync of a directory makes the entry
 * operations in it durable (their hidden links go).  The cut rolls every
 * file back, then undoes the entry operations that are not durable,
 * newest first, so that a file created, written, fsynced and renamed into
 * place without a directory fsync is gone, as after a real power cut.
 *
 *   disarmed --crashsim_configure--> tracking --crashsim_serving (option
 *   "serving"; else at once)--> counting --the chosen call--> cut
 *   (files rolled back, entries undone, report line, SIGKILL)
 *
 * Threads: every call takes `cs.lock` and holds it across the real I/O,
 * so the undo follows the order in which operations reached the files;
 * the cut never releases it, so no seam call of any thread completes
 * after the power went, and the rollback itself runs in a forked child
 * while the whole process is stopped (SIGSTOP), then SIGKILLs it.  crashsim_active() is a relaxed load:
 * arming is done before the seam is used (sys_install) or by a test between calls.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "persist/crashsim.h"
#include "ringkeep.h"

#define DEFAULT_WITHIN 10000u
#define DEFAULT_SECTOR 512u
#define MIN_SECTOR 512u
#define MAX_SECTOR 65536u
#define HIDDEN_PREFIX ".crashsim-"
#define STOP_POLLS 10000 /* 100 us apart: how long the cut waits for the process to stop */

enum cs_op { CS_WRITE, CS_FSYNC, CS_OPEN, CS_RENAME, CS_UNLINK, CS_FTRUNCATE, CS_CUT };

static const char *const op_names[] = {
    [CS_WRITE] = "write",   [CS_FSYNC] = "fsync",         [CS_OPEN] = "open", [CS_RENAME] = "rename",
    [CS_UNLINK] = "unlink", [CS_FTRUNCATE] = "ftruncate", [CS_CUT] = "cut",
};

/* The content sector `index` had at the file's last fsync (len bytes: a
 * whole sector, or less for the one that held the synced end). */
struct saved_sector {
    uint64_t index;
    uint32_t len;
    uint8_t *old;
};

struct tracked_file {
    dev_t dev;
    ino_t ino;
    int fd;            /* ours, read-write, on the inode */
    char *path;        /* its name when first written, for the report */
    off_t synced_size; /* size at its last fsync, or when first written */
    struct saved_sector *saved;
    size_t n_saved, saved_cap;
    size_t *slots; /* open addressing: sector index -> position in saved + 1, 0 empty */
    size_t n_slots;
};

enum entry_kind { ENTRY_CREATE, ENTRY_RENAME, ENTRY_UNLINK };
static const char *const entry_names[] = {
    [ENTRY_CREATE] = "create", [ENTRY_RENAME] = "rename", [ENTRY_UNLINK] = "unlink"};

struct entry_op {
    enum entry_kind kind;
    char *path;  /* created, unlinked, or the rename's new name */
    char *from;  /* the rename's old name; NULL otherwise */
    char *saved; /* hidden link to the inode the operation took off path, or NULL */
    dev_t dir_dev, from_dir_dev;
    ino_t dir_ino, from_dir_ino; /* the directories of path and from */
    int dir_synced, from_dir_synced;
};

static struct {
    pthread_mutex_t lock;
    uint64_t cut_at;  /* the counted call that cuts (from 1) */
    uint64_t n_calls; /* calls counted so far */
    int counting;     /* 0 until crashsim_serving with option "serving" */
    int torn;
    uint32_t sector;
    uint64_t rng; /* splitmix64 state: torn sectors */
    char *report;
    struct tracked_file **files;
    size_t n_files, files_cap;
    struct entry_op *entries;
    size_t n_entries, entries_cap;
    uint64_t n_links;     /* hidden links made, for their names */
    uint64_t n_untracked; /* files whose undo could not be kept (reported at the cut) */
    int exit_hook;
} cs = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Atomic int armed;

static uint64_t next_random(void)
{
    uint64_t z = (cs.rng += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------ files */

static struct tracked_file *find_file(dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < cs.n_files; i++)
        if (cs.files[i]->dev == dev && cs.files[i]->ino == ino)
            return cs.files[i];
    return NULL;
}

static void free_file(struct tracked_file *f)
{
    for (size_t i = 0; i < f->n_saved; i++)
        free(f->saved[i].old);
    free(f->saved);
    free(f->slots);
    free(f->path);
    if (f->fd >= 0)
        close(f->fd);
    free(f);
}

static void drop_file(struct tracked_file *f)
{
    for (size_t i = 0; i < cs.n_files; i++)
        if (cs.files[i] == f) {
            cs.files[i] = cs.files[--cs.n_files];
            break;
        }
    free_file(f);
}

/* The tracked file behind fd (made on first sight), in *out; *out NULL for
 * what is not a regular file.  0 or an errno value. */
static int track_fd(int fd, struct tracked_file **out)
{
    char proc[64], name[PATH_MAX];
    struct tracked_file *f, **grown;
    struct stat st;
    ssize_t len;

    *out = NULL;
    if (fstat(fd, &st) != 0)
        return errno;
    if (!S_ISREG(st.st_mode))
        return 0;
    f = find_file(st.st_dev, st.st_ino);
    if (f) {
        *out = f;
        return 0;
    }
    if (cs.n_files == cs.files_cap) {
        size_t cap = cs.files_cap ? cs.files_cap * 2 : 16;
        grown = realloc(cs.files, cap * sizeof *grown);
        if (!grown)
            return ENOMEM;
        cs.files = grown;
        cs.files_cap = cap;
    }
    f = calloc(1, sizeof *f);
    if (!f)
        return ENOMEM;
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    len = readlink(proc, name, sizeof name - 1);
    name[len > 0 ? len : 0] = '\0';
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->synced_size = st.st_size;
    f->path = strdup(name);
    f->fd = open(proc, O_RDWR | O_CLOEXEC); /* the inode itself, whatever fd's mode */
    if (f->fd < 0 || !f->path) {
        int rc = f->fd < 0 ? errno : ENOMEM;
        free_file(f);
        return rc;
    }
    cs.files[cs.n_files++] = f;
    *out = f;
    return 0;
}

static size_t *find_slot(struct tracked_file *f, uint64_t index)
{
    size_t mask = f->n_slots - 1, i = (size_t)((index * 0x9e3779b97f4a7c15ull) >> 17) & mask;

    while (f->slots[i] && f->saved[f->slots[i] - 1].index != index)
        i = (i + 1) & mask;
    return &f->slots[i];
}

/* Keeps sector index's synced content, unless it is kept already. */
static int save_sector(struct tracked_file *f, uint64_t index)
{
    off_t at = (off_t)(index * cs.sector);
    size_t *slot, len;
    uint8_t *old;

    if ((f->n_saved + 1) * 2 > f->n_slots) {
        size_t n_slots = f->n_slots ? f->n_slots * 2 : 64, *slots = calloc(n_slots, sizeof *slots);
        if (!slots)
            return ENOMEM;
        free(f->slots);
        f->slots = slots;
        f->n_slots = n_slots;
        for (size_t i = 0; i < f->n_saved; i++)
            *find_slot(f, f->saved[i].index) = i + 1;
    }
    slot = find_slot(f, index);
    if (*slot)
        return 0;
    if (f->n_saved == f->saved_cap) {
        size_t cap = f->saved_cap ? f->saved_cap * 2 : 32;
        struct saved_sector *grown = realloc(f->saved, cap * sizeof *grown);
        if (!grown)
            return ENOMEM;
        f->saved = grown;
        f->saved_cap = cap;
    }
    len = (size_t)(f->synced_size - at < (off_t)cs.sector ? f->synced_size - at : (off_t)cs.sector);
    old = calloc(1, len); /* what cannot be read (the file was cut shorter) stays zero */
    if (!old)
        return ENOMEM;
    for (size_t done = 0; done < len;) {
        ssize_t r = pread(f->fd, old + done, len - done, at + (off_t)done);
        if (r <= 0)
            break;
        done += (size_t)r;
    }
    f->saved[f->n_saved++] = (struct saved_sector){.index = index, .len = (uint32_t)len, .old = old};
    *slot = f->n_saved;
    return 0;
}

/* Keeps the synced content of every sector that [off, off + len) touches
 * below the synced size. */
static int save_range(struct tracked_file *f, off_t off, off_t len)
{
    int rc = 0;

    if (len <= 0 || off >= f->synced_size)
        return 0;
    for (uint64_t s = (uint64_t)off / cs.sector;
         !rc && (off_t)(s * cs.sector) < f->synced_size && (off_t)(s * cs.sector) < off + len; s++)
        rc = save_sector(f, s);
    return rc;
}

/* fd's data reached the disk: nothing of it is lost any more. */
static void file_synced(struct tracked_file *f, const struct stat *st)
{
    for (size_t i = 0; i < f->n_saved; i++)
        free(f->saved[i].old);
    f->n_saved = 0;
    if (f->slots)
        memset(f->slots, 0, f->n_slots * sizeof *f->slots);
    f->synced_size = st->st_size;
    if (st->st_nlink == 0)
        drop_file(f); /* unlinked and synced: nothing left to roll back */
}

/* A file whose undo cannot be kept is counted and written as it is. */
static struct tracked_file *track_or_count(int fd)
{
    struct tracked_file *f = NULL;

    if (track_fd(fd, &f) != 0)
        cs.n_untracked++;
    return f;
}

/* ------------------------------------------------------------ entries */

/* The directory that holds path: its device and inode. */
static int parent_of(const char *path, dev_t *dev, ino_t *ino)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    struct stat st;

    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (stat(dir, &st) != 0)
        return errno;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return 0;
}

/* Makes a hidden hard link to the file at path (in its directory), so
 * that the inode an unlink or rename takes off that name can be put back.
 * NULL when there is no such file (or no link could be made). */
static char *hide_old(const char *path)
{
    const char *slash = strrchr(path, '/');
    struct stat st;
    char *saved = NULL;

    if (lstat(path, &st) != 0 || S_ISDIR(st.st_mode))
        return NULL;
    if (asprintf(&saved, "%.*s%s%d-%" PRIu64, slash ? (int)(slash - path + 1) : 0, path, HIDDEN_PREFIX,
                 (int)getpid(), ++cs.n_links) < 0)
        return NULL;
    if (link(path, saved) != 0) {
        cs.n_untracked++;
        free(saved);
        return NULL;
    }
    return saved;
}

static void free_entry(struct entry_op *e)
{
    free(e->path);
    free(e->from);
    free(e->saved);
}

static void note_entry(enum entry_kind kind, const char *path, const char *from, char *saved)
{
    struct entry_op e = {.kind = kind, .saved = saved};

    if (cs.n_entries == cs.entries_cap) {
        size_t cap = cs.entries_cap ? cs.entries_cap * 2 : 32;
        struct entry_op *grown = realloc(cs.entries, cap * sizeof *grown);
        if (!grown)
            goto untracked;
        cs.entries = grown;
        cs.entries_cap = cap;
    }
    e.path = strdup(path);
    e.from = from ? strdup(from) : NULL;
    if (!e.path || (from && !e.from) || parent_of(path, &e.dir_dev, &e.dir_ino) != 0 ||
        (from && parent_of(from, &e.from_dir_dev, &e.from_dir_ino) != 0))
        goto untracked;
    e.from_dir_synced = !from; /* only a rename has a second directory */
    cs.entries[cs.n_entries++] = e;
    return;
untracked:
    cs.n_untracked++;
    if (saved)
        unlink(saved);
    free_entry(&e);
}

/* The directory (dev, ino) was fsynced: its entry operations are durable. */
static void dir_synced(dev_t dev, ino_t ino)
{
    size_t kept = 0;

    for (size_t i = 0; i < cs.n_entries; i++) {
        struct entry_op *e = &cs.entries[i];
        if (e->dir_dev == dev && e->dir_ino == ino) {
            e->dir_synced = 1;
            if (e->saved) { /* what it took off path is gone for good */
                unlink(e->saved);
                free(e->saved);
                e->saved = NULL;
            }
        }
        if (e->from && e->from_dir_dev == dev && e->from_dir_ino == ino)
            e->from_dir_synced = 1;
        if (e->dir_synced && e->from_dir_synced)
            free_entry(e);
        else
            cs.entries[kept++] = *e;
    }
    cs.n_entries = kept;
}

/* ------------------------------------------------------------ the cut */

struct cut_stats {
    uint64_t n_files, bytes_dropped, sectors_reverted, sectors_torn, entries_undone;
};

/* The cut's report details, built without malloc (see cut); past
 * DETAIL_MAX, a last line says that more was not shown. */
#define DETAIL_MAX (256u << 10)
static const char detail_more[] = "  (more not shown)\n";
static char detail_buf[DETAIL_MAX];
static size_t detail_len;
static int detail_full;

__attribute__((format(printf, 1, 2))) static void detail_add(const char *fmt, ...)
{
    /* room for the line, keeping room for detail_more after it */
    size_t room = DETAIL_MAX - (sizeof detail_more - 1) - detail_len;
    va_list ap;
    int n;

    if (detail_full)
        return;
    va_start(ap, fmt);
    n = vsnprintf(detail_buf + detail_len, room, fmt, ap); /* plain conversions: no allocation */
    va_end(ap);
    if (n >= 0 && (size_t)n < room) {
        detail_len += (size_t)n;
        return;
    }
    memcpy(detail_buf + detail_len, detail_more, sizeof detail_more - 1); /* over the cut-off line */
    detail_len += sizeof detail_more - 1;
    detail_full = 1;
}

static void roll_back_file(struct tracked_file *f, struct cut_stats *st)
{
    uint64_t reverted = 0, torn = 0;
    struct stat now;
    off_t size, keep;

    if (fstat(f->fd, &now) != 0)
        return;
    size = now.st_size;
    keep = f->synced_size;
    for (size_t i = 0; i < f->n_saved; i++) {
        struct saved_sector *s = &f->saved[i];
        off_t at = (off_t)(s->index * cs.sector);
        if (cs.torn && at + (off_t)s->len <= size && (next_random() & 1)) {
            torn++; /* this sector's new content reached the disk */
            continue;
        }
        if (pwrite(f->fd, s->old, s->len, at) == (ssize_t)s->len)
            reverted++;
    }
    if (cs.torn && size > f->synced_size) { /* a prefix of whole sectors of the append survives */
        off_t base = f->synced_size - f->synced_size % (off_t)cs.sector;
        uint64_t n_sectors = (uint64_t)(size - base + cs.sector - 1) / cs.sector;
        keep = base + (off_t)((next_random() % (n_sectors + 1)) * cs.sector);
        if (keep < f->synced_size)
            keep = f->synced_size;
        if (keep > size)
            keep = size;
    }
    if (size != keep)
        (void)!ftruncate(f->fd, keep);
    if (!reverted && !torn && size == keep)
        return;
    st->n_files++;
    st->bytes_dropped += size > keep ? (uint64_t)(size - keep) : 0;
    st->sectors_reverted += reverted;
    st->sectors_torn += torn;
    detail_add("  file %s synced_size=%lld size=%lld kept_size=%lld sectors_reverted=%" PRIu64
               " sectors_torn=%" PRIu64 "\n",
               f->path, (long long)f->synced_size, (long long)size, (long long)keep, reverted, torn);
}

static void undo_entry(const struct entry_op *e, struct cut_stats *st)
{
    switch (e->kind) {
    case ENTRY_CREATE:
        unlink(e->path);
        break;
    case ENTRY_UNLINK:
        if (e->saved)
            rename(e->saved, e->path);
        break;
    case ENTRY_RENAME:
        if (e->dir_synced) { /* the new name is durable, the old one's removal is not */
            (void)!link(e->path, e->from);
        } else {
            if (e->from_dir_synced) /* the old name's removal is durable, the new name is not */
                unlink(e->path);
            else
                rename(e->path, e->from);
            if (e->saved)
                rename(e->saved, e->path);
        }
        break;
    }
    st->entries_undone++;
    detail_add("  undo %s %s%s%s\n", entry_names[e->kind], e->path, e->from ? " from " : "",
               e->from ? e->from : "");
}

/* Whether every thread of process pid is stopped: 1, 0, or -1 when its
 * threads cannot be listed.  System calls only (see cut). */
static int all_stopped(pid_t pid)
{
    _Alignas(struct dirent64) char buf[4096]; /* getdents64's records, 8-aligned within it */
    char path[64];
    int dfd, all = 1;
    ssize_t n;

    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    while (all && (n = getdents64(dfd, buf, sizeof buf)) > 0) {
        for (ssize_t at = 0; all && at < n;) {
            struct dirent64 *de = (struct dirent64 *)(buf + at);
            char stat_path[384], text[512], *close_paren;
            ssize_t got;
            int fd;
            at += de->d_reclen;
            if (de->d_name[0] == '.')
                continue;
            snprintf(stat_path, sizeof stat_path, "%s/%s/stat", path, de->d_name);
            fd = open(stat_path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue; /* the thread is gone */
            got = read(fd, text, sizeof text - 1);
            close(fd);
            text[got > 0 ? got : 0] = '\0';
            close_paren = strrchr(text, ')'); /* "tid (name) S ...": the name may hold anything */
            if (close_paren && close_paren[1] == ' ' && !strchr("TtZX", close_paren[2]))
                all = 0;
        }
    }
    close(dfd);
    return all;
}

/* Waits (bounded) until every thread of process pid is stopped. */
static void wait_stopped(pid_t pid)
{
    for (int tries = 0; tries < STOP_POLLS && all_stopped(pid) == 0; tries++)
        usleep(100);
}

/* The power goes.  Other threads of the process must not see the files
 * change under them (a region file that Berkeley DB has mapped, cut
 * short, raises SIGBUS; a page rolled back, read by another thread, can
 * make it exit on its own): so a child process does the rollback while
 * this whole process is stopped, then kills it.  The child of a
 * multi-threaded process must not allocate: a lock of the allocator that
 * another thread held at the fork stays held in the child, and it waits
 * for it forever (seen under ASan, whose allocator GCC 12's runtime does
 * not lock around fork: the process stayed stopped and test_powerloss's
 * engines waited 300 s for durability).  So from the fork on, only system
 * calls and snprintf into static buffers: the details in detail_buf, the
 * report written with write(2). */
static _Noreturn void cut(enum cs_op op, const char *path, int fd)
{
    static char line[PATH_MAX + 512];
    struct cut_stats st = {0};
    char target[PATH_MAX] = "", proc[64];
    pid_t victim = getpid(), pid;
    int n;

    if (path) {
        snprintf(target, sizeof target, "%s", path);
    } else if (fd >= 0) {
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        ssize_t len = readlink(proc, target, sizeof target - 1);
        target[len > 0 ? len : 0] = '\0';
    }
    pid = fork();
    if (pid > 0)
        for (;;)
            pause(); /* stopped, then killed, by the child */
    if (pid == 0) {
        kill(victim, SIGSTOP);
        wait_stopped(victim);
    } /* else no child: roll back from here, other threads running */
    detail_len = 0;
    detail_full = 0;
    for (size_t i = 0; i < cs.n_files; i++)
        roll_back_file(cs.files[i], &st);
    for (size_t i = cs.n_entries; i-- > 0;)
        undo_entry(&cs.entries[i], &st);
    n = snprintf(line, sizeof line,
                 "crash call=%" PRIu64 " op=%s target=%s files=%" PRIu64 " bytes_dropped=%" PRIu64
                 " sectors_reverted=%" PRIu64 " sectors_torn=%" PRIu64 " entries_undone=%" PRIu64
                 " untracked=%" PRIu64 "\n",
                 cs.n_calls, op_names[op], target[0] ? target : "-", st.n_files, st.bytes_dropped,
                 st.sectors_reverted, st.sectors_torn, st.entries_undone, cs.n_untracked);
    if (cs.report && n > 0) {
        int out = open(cs.report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (out >= 0) {
            /* one write: the line and its details stay together */
            size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
            struct iovec iov[2] = {{line, len}, {detail_buf, detail_len}};
            (void)!writev(out, iov, 2);
            close(out);
        }
    }
    kill(victim, SIGKILL);
    if (pid == 0)
        _exit(0);
    for (;;)
        pause();
}

/* Takes the lock (released by leave) and counts the call; the chosen call
 * cuts the power instead. */
static void enter(enum cs_op op, const char *path, int fd)
{
    pthread_mutex_lock(&cs.lock);
    if (cs.counting && cs.cut_at && ++cs.n_calls == cs.cut_at)
        cut(op, path, fd);
}

static void leave(int err)
{
    pthread_mutex_unlock(&cs.lock);
    errno = err;
}

/* ------------------------------------------------------------ set up */

/* Forgets what is tracked: the operations made are final (their hidden
 * links go).  Under cs.lock. */
static void forget(void)
{
    for (size_t i = 0; i < cs.n_files; i++)
        free_file(cs.files[i]);
    free(cs.files);
    for (size_t i = 0; i < cs.n_entries; i++) {
        if (cs.entries[i].saved)
            unlink(cs.entries[i].saved);
        free_entry(&cs.entries[i]);
    }
    free(cs.entries);
    free(cs.report);
    cs.files = NULL;
    cs.entries = NULL;
    cs.report = NULL;
    cs.n_files = cs.files_cap = cs.n_entries = cs.entries_cap = 0;
    cs.n_calls = cs.cut_at = 0;
    cs.n_untracked = 0;
}

/* A process that ends without a cut made its unlinks and renames for good. */
static void at_exit(void)
{
    if (atomic_load_explicit(&armed, memory_order_relaxed) && pthread_mutex_trylock(&cs.lock) == 0) {
        forget();
        pthread_mutex_unlock(&cs.lock);
    }
}

/* "name:NUMBER" in the token [p, p + len): 1 and *value, 0 when the token
 * is another option, -1 for a bad number. */
static int number_option(const char *p, size_t len, const char *name, uint64_t *value)
{
    size_t name_len = strlen(name);
    char digits[32], *end;

    if (len < name_len || memcmp(p, name, name_len) != 0)
        return 0;
    if (len - name_len == 0 || len - name_len >= sizeof digits || p[name_len] < '0' || p[name_len] > '9')
        return -1;
    memcpy(digits, p + name_len, len - name_len);
    digits[len - name_len] = '\0';
    errno = 0;
    *value = strtoull(digits, &end, 10);
    return *end == '\0' && errno == 0 ? 1 : -1;
}

int crashsim_configure(const char *spec)
{
    uint64_t at = 0, seed = 0, within = DEFAULT_WITHIN, sector = DEFAULT_SECTOR;
    int have_at = 0, have_seed = 0, serving = 0, torn = 0;
    const char *report = NULL;

    for (const char *p = spec; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int r;
        if (strncmp(p, "report:", 7) == 0) {
            report = p + 7; /* the rest of the spec */
            if (!*report)
                return RK_EINVAL;
            break;
        }
        if ((r = number_option(p, len, "at:", &at)) != 0)
            have_at = r;
        else if ((r = number_option(p, len, "seed:", &seed)) != 0)
            have_seed = r;
        else if ((r = number_option(p, len, "within:", &within)) != 0)
            ;
        else if ((r = number_option(p, len, "sector:", &sector)) != 0)
            ;
        else if (len == 4 && memcmp(p, "torn", 4) == 0)
            torn = r = 1;
        else if (len == 7 && memcmp(p, "serving", 7) == 0)
            serving = r = 1;
        if (r != 1)
            return RK_EINVAL;
        p += len + (comma ? 1 : 0);
    }
    if (spec && *spec &&
        (have_at + have_seed != 1 || (have_at && at == 0) || within == 0 || sector < MIN_SECTOR ||
         sector > MAX_SECTOR || (sector & (sector - 1)) != 0))
        return RK_EINVAL;

    pthread_mutex_lock(&cs.lock);
    atomic_store_explicit(&armed, 0, memory_order_relaxed);
    forget();
    if (spec && *spec) {
        cs.rng = have_seed ? seed : at;
        cs.cut_at = have_seed ? 1 + next_random() % within : at;
        cs.counting = !serving;
        cs.torn = torn;
        cs.sector = (uint32_t)sector;
        cs.report = report ? strdup(report) : NULL;
        if (!cs.exit_hook)
            cs.exit_hook = atexit(at_exit) == 0;
        atomic_store_explicit(&armed, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&cs.lock);
    return 0;
}

int crashsim_active(void)
{
    return atomic_load_explicit(&armed, memory_order_relaxed); /* set before the seam is used */
}

void crashsim_cut(void)
{
    pthread_mutex_lock(&cs.lock);
    cut(CS_CUT, NULL, -1);
}

void crashsim_serving(void)
{
    if (!crashsim_active())
        return;
    pthread_mutex_lock(&cs.lock);
    cs.counting = 1;
    pthread_mutex_unlock(&cs.lock);
}

/* ------------------------------------------------------------ the seam's ops */

ssize_t crashsim_write(int fd, const void *buf, size_t n)
{
    struct tracked_file *f;
    ssize_t w;
    int flags, err;

    enter(CS_WRITE, NULL, fd);
    flags = fcntl(fd, F_GETFL);
    f = track_or_count(fd);
    if (f) {
        struct stat st;
        off_t at = (flags >= 0 && (flags & O_APPEND)) ? (fstat(fd, &st) == 0 ? st.st_size : 0)
                                                      : lseek(fd, 0, SEEK_CUR);
        if (at >= 0 && save_range(f, at, (off_t)n) != 0)
            cs.n_untracked++;
    }
    w = write(fd, buf, n);
    err = errno;
    if (f && w > 0 && flags >= 0 && (flags & O_DSYNC)) { /* O_SYNC includes O_DSYNC */
        struct stat st;
        if (fstat(fd, &st) == 0)
            file_synced(f, &st);
    }
    leave(err);
    return w;
}

ssize_t crashsim_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    struct tracked_file *f;
    ssize_t w;
    int flags, err;

    enter(CS_WRITE, NULL, fd);
    flags = fcntl(fd, F_GETFL);
    f = track_or_count(fd);
    if (f && save_range(f, off, (off_t)n) != 0)
        cs.n_untracked++;
    w = pwrite(fd, buf, n, off);
    err = errno;
    if (f && w > 0 && flags >= 0 && (flags & O_DSYNC)) {
        struct stat st;
        if (fstat(fd, &st) == 0)
            file_synced(f, &st);
    }
    leave(err);
    return w;
}

int crashsim_fsync(int fd)
{
    struct stat st;
    int rc, err;

    enter(CS_FSYNC, NULL, fd);
    rc = fsync(fd);
    err = errno;
    if (rc == 0 && fstat(fd, &st) == 0) {
        struct tracked_file *f;
        if (S_ISDIR(st.st_mode))
            dir_synced(st.st_dev, st.st_ino);
        else if ((f = find_file(st.st_dev, st.st_ino)) != NULL)
            file_synced(f, &st);
    }
    leave(err);
    return rc;
}

/* ftruncate, keeping what it cuts off below the synced size. */
static int truncate_tracked(int fd, off_t len)
{
    struct tracked_file *f = track_or_count(fd);

    if (f && len < f->synced_size && save_range(f, len, f->synced_size - len) != 0)
        cs.n_untracked++;
    return ftruncate(fd, len);
}

int crashsim_open(const char *path, int flags, mode_t mode)
{
    struct stat st;
    int existed, fd, err;

    enter(CS_OPEN, path, -1);
    existed = stat(path, &st) == 0;
    /* O_TRUNC of an existing file is a truncation like any other */
    fd = open(path, existed ? flags & ~O_TRUNC : flags, mode);
    err = errno;
    if (fd >= 0 && (flags & O_CREAT) && !existed) {
        note_entry(ENTRY_CREATE, path, NULL, NULL);
    } else if (fd >= 0 && existed && (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY &&
               S_ISREG(st.st_mode) && truncate_tracked(fd, 0) != 0) {
        err = errno;
        close(fd);
        fd = -1;
    }
    leave(err);
    return fd;
}

int crashsim_rename(const char *from, const char *to)
{
    struct stat st_from, st_to;
    char *saved = NULL;
    int rc, err;

    enter(CS_RENAME, to, -1);
    if (lstat(from, &st_from) == 0 && lstat(to, &st_to) == 0 && st_from.st_dev == st_to.st_dev &&
        st_from.st_ino == st_to.st_ino) {
        rc = rename(from, to); /* two names of one file: nothing changes */
        leave(errno);
        return rc;
    }
    saved = hide_old(to);
    rc = rename(from, to);
    err = errno;
    if (rc == 0) {
        note_entry(ENTRY_RENAME, to, from, saved);
    } else if (saved) {
        unlink(saved);
        free(saved);
    }
    leave(err);
    return rc;
}

int crashsim_unlink(const char *path)
{
    char *saved;
    int rc, err;

    enter(CS_UNLINK, path, -1);
    saved = hide_old(path);
    rc = unlink(path);
    err = errno;
    if (rc == 0) {
        note_entry(ENTRY_UNLINK, path, NULL, saved);
    } else if (saved) {
        unlink(saved);
        free(saved);
    }
    leave(err);
    return rc;
}

int crashsim_ftruncate(int fd, off_t len)
{
    int rc;

    enter(CS_FTRUNCATE, NULL, fd);
    rc = truncate_tracked(fd, len);
    leave(errno);
    return rc;
}
