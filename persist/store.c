/* store.c -- the node's data directory: DIR/LOCK, the Berkeley DB
 * environment in DIR/db, and the journal and meta databases in it.
 *
 * Design: one process owns a data directory, and proves it with an flock()
 * on DIR/LOCK held for as long as the store is open; that is also what
 * makes DB_RECOVER safe (recovery needs the environment to itself).  The
 * journal is a btree keyed by the batch sequence in big-endian, so that
 * key order is sequence order; every append is its own transaction,
 * committed with DB_TXN_SYNC, so an append that returned 0 is on disk.
 * Berkeley DB's error codes are returned as they are and translated into
 * words in one place (store_strerror, bdb_fail); BDB's own messages are
 * kept (errcall) for store_last_error().
 *
 *   closed --store_open--> open --store_journal_append fails--> failed
 *     ^                     |                                     |
 *     +---- store_close ----+------------- store_close -----------+
 * In "failed" every append returns the first error: nothing is
 * acknowledged after a failed fsync or write (SQLite's pager ERROR state).
 * A failed fsync or write anywhere in the process (sys_io_failed, e.g. of
 * a checkpoint or of state.db) puts the store there too, also when it
 * happens while an append's commit is under way.
 *
 * Threads: after store_open, every function may be called from any thread
 * (the handles are opened with DB_THREAD); store_open and store_close are
 * not concurrent with anything else on the same store.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shm/ring.h"
#include "ringkeep.h"
#include "shm/segment.h"
#include "persist/store.h"
#include "persist/apply_impl.h" /* STATE_FILE */
#include "persist/store_impl.h"

#define LOCK_FILE "LOCK"
#define DB_DIR "db"
#define CHECKPOINT_DIR "checkpoints"
#define JOURNAL_DB "journal.db"
#define META_DB "meta.db"
#define MAX_DEADLOCK_RETRIES 8 /* an append chosen as a deadlock victim is retried this often */
#define TRIM_BATCH 1000        /* deletes per trim transaction, at most */
#define TRIM_TXN_NS 2000000ull /* ... and a trim transaction ends once it has taken this long */
#define CHECKPOINT_YIELD_US 1000 /* a checkpoint's wait for a page a writer holds (BDB's: 1 s) */

struct store {
    char *dir;          /* the data directory as given */
    int lock_fd;        /* DIR/LOCK, flock()ed; -1 when not open */
    DB_ENV *env;        /* DIR/db */
    DB *journal;        /* journal.db: seq (8 bytes big-endian) -> entry */
    DB *meta;           /* meta.db: for the applier and the node */
    struct history *history; /* the epoch history (history.c), loaded at open */
    _Atomic int failed; /* first append error (sticky), 0 while healthy */
    int building;       /* STORE_BUILDING: appends not synced until store_built */
    pthread_mutex_t msg_lock;
    char msg[512]; /* last message (BDB's errcall, or a decode reason); under msg_lock */
};

/* ------------------------------------------------------------ messages */

const char *store_strerror(int err)
{
    if (err == 0)
        return "success";
    if (err >= RK_EINVAL && err < RK_ELAST)
        return rk_strerror(err);
    return db_strerror(err); /* BDB's codes, and strerror() for errno values */
}

static void set_message(store *s, const char *msg)
{
    pthread_mutex_lock(&s->msg_lock);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    pthread_mutex_unlock(&s->msg_lock);
}

/* BDB's errcall: keeps its words so that errors can be reported whole. */
static void bdb_errcall(const DB_ENV *env, const char *prefix, const char *msg)
{
    (void)prefix;
    if (env->app_private)
        set_message(env->app_private, msg);
}

void store_last_error(store *s, char *buf, size_t size)
{
    if (!buf || !size)
        return;
    buf[0] = '\0';
    if (!s)
        return;
    pthread_mutex_lock(&s->msg_lock);
    snprintf(buf, size, "%s", s->msg);
    pthread_mutex_unlock(&s->msg_lock);
}

#define fail_msg(err, err_size, rc, ...) seg_fail(err, err_size, rc, __VA_ARGS__)

/* The one place a BDB failure becomes a message: "<what>: <code's words>",
 * then BDB's own message if it left one. */
static int bdb_fail(store *s, int rc, char *err, size_t err_size, const char *what)
{
    char bdb[sizeof s->msg];

    store_last_error(s, bdb, sizeof bdb);
    if (bdb[0])
        return fail_msg(err, err_size, rc, "%s: %s (Berkeley DB: %s)", what, store_strerror(rc), bdb);
    return fail_msg(err, err_size, rc, "%s: %s", what, store_strerror(rc));
}

/* ------------------------------------------------------------ the directory */

static char *path_join(const char *dir, const char *name)
{
    char *p = NULL;

    if (asprintf(&p, "%s/%s", dir, name) < 0)
        return NULL;
    return p;
}

/* Takes DIR/LOCK and writes our pid into it. */
static int take_lock(store *s, char *err, size_t err_size)
{
    char *path = path_join(s->dir, LOCK_FILE), pid_text[32];
    ssize_t n;
    int rc = 0, len;

    if (!path)
        return fail_msg(err, err_size, ENOMEM, "out of memory");
    s->lock_fd = sys_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0) {
        rc = fail_msg(err, err_size, errno, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    /* a moment's conflict is not another node: `ringkeep status` and
     * node_request() probe the lock with a brief shared flock (test_node
     * saw a node refused at start that way); a node holds it for good, so
     * retrying for up to ~200 ms changes nothing else */
    int locked = flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0, lock_errno = locked ? 0 : errno;
    for (int tries = 0; !locked && lock_errno == EWOULDBLOCK && tries < 100; tries++) {
        usleep(2000);
        locked = flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0;
        lock_errno = locked ? 0 : errno;
    }
    if (!locked) {
        errno = lock_errno;
        if (errno != EWOULDBLOCK) {
            rc = fail_msg(err, err_size, errno, "cannot lock %s: %s", path, strerror(errno));
            goto out;
        }
        n = pread(s->lock_fd, pid_text, sizeof pid_text - 1, 0);
        pid_text[n > 0 ? n : 0] = '\0';
        pid_text[strcspn(pid_text, "\n")] = '\0';
        if (pid_text[0])
            rc = fail_msg(err, err_size, RK_EBUSY,
                          "data directory %s is in use by pid %s: one node per data directory", s->dir,
                          pid_text);
        else
            rc = fail_msg(err, err_size, RK_EBUSY,
                          "data directory %s is in use by a process that is starting: one node per data "
                          "directory",
                          s->dir);
        goto out;
    }
    len = snprintf(pid_text, sizeof pid_text, "%ld\n", (long)getpid());
    if (sys_ftruncate(s->lock_fd, 0) != 0 || sys_pwrite(s->lock_fd, pid_text, (size_t)len, 0) != len)
        rc = fail_msg(err, err_size, errno ? errno : EIO, "cannot write our pid into %s: %s", path,
                      strerror(errno ? errno : EIO));
out:
    free(path);
    return rc;
}

/* Makes (with STORE_CREATE) or checks DIR/name, a directory. */
static int prepare_subdir(store *s, const char *name, int flags, int *created, char *err, size_t err_size)
{
    char *path = path_join(s->dir, name);
    struct stat st;
    int rc = 0;

    if (!path)
        return fail_msg(err, err_size, ENOMEM, "out of memory");
    if ((flags & STORE_CREATE) && sys_mkdir(path, 0700) == 0) {
        *created = 1;
        goto out;
    }
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            rc = fail_msg(err, err_size, ENOENT,
                          "data directory %s is not initialised: %s is missing (open it with create once)",
                          s->dir, path);
        else
            rc = fail_msg(err, err_size, errno, "cannot use %s: %s", path, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        rc = fail_msg(err, err_size, ENOTDIR, "%s is not a directory", path);
    }
out:
    free(path);
    return rc;
}

/* ------------------------------------------------------------ checkpoints */

/* Berkeley DB's checkpoint (txn_checkpoint -> __memp_sync_int) writes
 * every dirty page; one that a writer holds at that moment is skipped and
 * retried after __os_yield(env, 1, 0): a whole second.  Under load the
 * drain's and apply's pages are nearly always held by someone, so a
 * checkpoint took 1-2 s, its checkpoint LSN (where a recovery starts) was
 * taken at its start, and a restart after a crash redid the 40-70 MiB of
 * log the drain wrote meanwhile (bench/restart_time.sh: p99 1.3 s).  In a
 * thread inside a checkpoint (sys_checkpointing), a yield sleeps at most
 * CHECKPOINT_YIELD_US: the checkpoint looks at the page again sooner; what
 * it writes and when it is complete are unchanged.  Every other yield is
 * BDB's own (os/os_yield.c: a sched_yield for 0, else a sleep). */
static int bdb_yield(u_long secs, u_long usecs)
{
    uint64_t us = (uint64_t)secs * 1000000u + usecs;
    struct timespec ts;

    if (us == 0) {
        sched_yield();
        return 0;
    }
    if (sys_checkpointing() && us > CHECKPOINT_YIELD_US)
        us = CHECKPOINT_YIELD_US;
    ts.tv_sec = (time_t)(us / 1000000u);
    ts.tv_nsec = (long)(us % 1000000u) * 1000;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

static void install_yield(void)
{
    db_env_set_func_yield(bdb_yield);
}

/* txn_checkpoint(kbytes, 0, flags) with the short yield and paced fsyncs
 * (sys_in_checkpoint: the checkpoint's fsync of state.db no longer puts tens
 * of MiB before the journal's fsyncs); BDB's code */
static int env_checkpoint(store *s, uint32_t kbytes, uint32_t flags)
{
    int rc;

    sys_in_checkpoint(1);
    rc = s->env->txn_checkpoint(s->env, kbytes, 0, flags);
    sys_in_checkpoint(0);
    return rc;
}

/* ------------------------------------------------------------ open, close */

static int open_db(store *s, DB **db, const char *file, uint32_t flags, char *err, size_t err_size)
{
    char what[300];
    int rc;

    rc = db_create(db, s->env, 0);
    if (rc == 0)
        rc = (*db)->open(*db, NULL, file, NULL, DB_BTREE, DB_AUTO_COMMIT | DB_CREATE | DB_THREAD | flags, 0600);
    if (rc) {
        snprintf(what, sizeof what, "cannot open %s in %s/%s", file, s->dir, DB_DIR);
        return bdb_fail(s, rc, err, err_size, what);
    }
    return 0;
}

/* Berkeley DB's region files (__db.001, __db.002, ...) hold no data:
 * recovery (DB_RECOVER) removes and remakes them.  They grow by writes BDB
 * never fsyncs, so after a power cut one can be shorter than its header
 * says, and BDB then dies of SIGBUS as it maps the old environment to
 * remove it (found by the power-loss simulation, test_powerloss).  We hold
 * DIR/LOCK, so nobody has them mapped: they are removed before the
 * environment is opened.  0 or an errno value. */
static int remove_region_files(const char *home)
{
    DIR *d = opendir(home);
    struct dirent *de;
    int rc = 0;

    if (!d)
        return errno == ENOENT ? 0 : errno;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        char *path;
        if (strlen(name) != 8 || strncmp(name, "__db.", 5) != 0 || strspn(name + 5, "0123456789") != 3)
            continue; /* not a region file (__db.<hex> is a database being created) */
        path = path_join(home, name);
        if (!path)
            rc = ENOMEM;
        else if (sys_unlink(path) != 0 && errno != ENOENT)
            rc = errno;
        free(path);
    }
    closedir(d);
    return rc;
}

static int open_env(store *s, uint32_t cache_mb, char *err, size_t err_size)
{
    char *home = path_join(s->dir, DB_DIR), what[300];
    int rc;

    if (!home)
        return fail_msg(err, err_size, ENOMEM, "out of memory");
    rc = db_env_create(&s->env, 0);
    if (rc) {
        s->env = NULL;
        snprintf(what, sizeof what, "cannot create a Berkeley DB environment handle for %s", home);
        rc = bdb_fail(s, rc, err, err_size, what);
        goto out;
    }
    s->env->app_private = s;
    s->env->set_errcall(s->env, bdb_errcall);
    if (cache_mb)
        rc = s->env->set_cachesize(s->env, cache_mb / 1024, (cache_mb % 1024) * 1024u * 1024u, 1);
    if (rc == 0)
        rc = s->env->log_set_config(s->env, DB_LOG_AUTO_REMOVE, 0); /* retention removes logs */
    /* with multiversion, a committed transaction's record is kept until
     * the last page version it made leaves the cache; BDB's default table
     * (~100 transactions) then runs out under load during a checkpoint and
     * every writer fails with ENOMEM (seen by bench_checkpoint) */
    if (rc == 0)
        rc = s->env->set_tx_max(s->env, STORE_MAX_TXNS);
    if (rc == 0)
        rc = s->env->set_lk_detect(s->env, DB_LOCK_DEFAULT); /* a deadlock picks a victim, never hangs */
    /* BDB's default lock table (about 1000 entries) runs out in one apply
     * transaction of a few thousand random puts into a large tree, and
     * then every writer fails with ENOMEM: size it for the applier's
     * transactions (STORE_TXN_RECORDS), the drain's appends and snapshot
     * copies at once. */
    if (rc == 0)
        rc = s->env->set_lk_max_locks(s->env, STORE_MAX_LOCKS);
    if (rc == 0)
        rc = s->env->set_lk_max_objects(s->env, STORE_MAX_LOCKS);
    if (rc == 0)
        rc = s->env->set_lk_max_lockers(s->env, 4096);
    if (rc == 0 && (rc = remove_region_files(home)) != 0) {
        rc = fail_msg(err, err_size, rc, "cannot remove the old region files in %s: %s", home, strerror(rc));
        goto out;
    }
    if (rc == 0)
        rc = s->env->open(s->env, home,
                          DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL | DB_RECOVER |
                              DB_THREAD,
                          0600);
    if (rc) {
        snprintf(what, sizeof what, "cannot open the Berkeley DB environment in %s", home);
        rc = bdb_fail(s, rc, err, err_size, what);
    }
out:
    free(home);
    return rc;
}

int store_open(const char *dir, int flags, uint32_t cache_mb, store **out, char *err, size_t err_size)
{
    store *s = NULL;
    struct stat st;
    int rc, created = 0;
    char *db_dir = NULL;

    if (err && err_size)
        err[0] = '\0';
    if (!out)
        return fail_msg(err, err_size, RK_EINVAL, "store_open: out is NULL");
    *out = NULL;
    if (!dir || !*dir)
        return fail_msg(err, err_size, RK_EINVAL, "store_open: no data directory given");
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT)
            return fail_msg(err, err_size, ENOENT, "data directory %s does not exist", dir);
        return fail_msg(err, err_size, errno, "cannot use data directory %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return fail_msg(err, err_size, ENOTDIR, "data directory %s is not a directory", dir);
    sys_install();
    {
        static pthread_once_t yield_once = PTHREAD_ONCE_INIT;
        pthread_once(&yield_once, install_yield); /* process-global: before any environment opens */
    }

    s = calloc(1, sizeof *s);
    if (!s)
        return fail_msg(err, err_size, ENOMEM, "out of memory");
    s->lock_fd = -1;
    pthread_mutex_init(&s->msg_lock, NULL);
    s->dir = strdup(dir);
    db_dir = path_join(dir, DB_DIR);
    if (!s->dir || !db_dir) {
        rc = fail_msg(err, err_size, ENOMEM, "out of memory");
        goto fail;
    }
    rc = take_lock(s, err, err_size);
    if (rc)
        goto fail;
    {
        char *marker = path_join(dir, STORE_BUILDING_FILE);
        int fd;
        if (!marker) {
            rc = fail_msg(err, err_size, ENOMEM, "out of memory");
            goto fail;
        }
        if (!(flags & STORE_BUILDING) && stat(marker, &st) == 0) {
            rc = fail_msg(err, err_size, RK_EBUSY,
                          "data directory %s holds an unfinished restore or import (%s): remove the "
                          "folder and run it again",
                          dir, STORE_BUILDING_FILE);
            free(marker);
            goto fail;
        }
        if (flags & STORE_BUILDING) {
            fd = sys_open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            if (fd < 0 || sys_fsync_dir(dir) != 0) {
                rc = fail_msg(err, err_size, errno ? errno : EIO, "cannot create %s", marker);
                if (fd >= 0)
                    close(fd);
                free(marker);
                goto fail;
            }
            close(fd);
            s->building = 1;
        }
        free(marker);
    }
    rc = prepare_subdir(s, DB_DIR, flags, &created, err, err_size);
    if (rc == 0)
        rc = prepare_subdir(s, CHECKPOINT_DIR, flags, &created, err, err_size);
    if (rc)
        goto fail;
    if (created) {
        rc = sys_fsync_dir(dir);
        if (rc) {
            rc = fail_msg(err, err_size, rc, "cannot fsync data directory %s: %s", dir, strerror(rc));
            goto fail;
        }
    }
    rc = open_env(s, cache_mb, err, err_size);
    if (rc == 0)
        rc = open_db(s, &s->journal, JOURNAL_DB, 0, err, err_size);
    if (rc == 0)
        rc = open_db(s, &s->meta, META_DB, DB_MULTIVERSION, err, err_size);
    if (rc == 0)
        rc = history_open(s, &s->history, err, err_size);
    if (rc)
        goto fail;
    rc = sys_fsync_dir(db_dir); /* the database files and first log file, when new */
    if (rc) {
        rc = fail_msg(err, err_size, rc, "cannot fsync %s: %s", db_dir, strerror(rc));
        goto fail;
    }
    /* a fence an earlier build kept in meta.db goes beside db/ (what
     * replaces db/ would lose it: store_fence_write) */
    {
        uint64_t fenced_by = 0;
        DBT k = {.data = STORE_OLD_FENCED_KEY, .size = (u_int32_t)strlen(STORE_OLD_FENCED_KEY)};
        DBT v = {.data = &fenced_by, .ulen = sizeof fenced_by, .flags = DB_DBT_USERMEM};
        char fence_err[300];
        uint64_t in_file = 0;
        if (!(flags & STORE_BUILDING) && s->meta->get(s->meta, NULL, &k, &v, 0) == 0 &&
            v.size == sizeof fenced_by && fenced_by &&
            store_fence_read(s, &in_file, fence_err, sizeof fence_err) == 0 && in_file < fenced_by &&
            (rc = store_fence_write(s, fenced_by)) != 0) {
            rc = fail_msg(err, err_size, rc, "cannot write %s/%s: %s", dir, STORE_FENCED_FILE, strerror(rc));
            goto fail;
        }
    }
    set_message(s, "");
    free(db_dir);
    *out = s;
    return 0;
fail:
    atomic_store(&s->failed, rc); /* no checkpoint on the way out */
    store_close(s);
    free(db_dir);
    return rc;
}

void store_close(store *s)
{
    if (!s)
        return;
    /* a checkpoint shortens the next recovery (its failure is harmless);
     * not after a failed write or fsync: recovery redoes from the log */
    if (s->env && s->journal && s->meta && atomic_load(&s->failed) == 0 && sys_io_failed() == 0)
        env_checkpoint(s, 0, 0);
    history_close(s->history);
    if (s->journal)
        s->journal->close(s->journal, 0);
    if (s->meta)
        s->meta->close(s->meta, 0);
    if (s->env)
        s->env->close(s->env, 0);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&s->msg_lock);
    free(s->dir);
    free(s);
}

DB_ENV *store_env(store *s)
{
    return s ? s->env : NULL;
}

DB *store_meta(store *s)
{
    return s ? s->meta : NULL;
}

const char *store_dir(const store *s)
{
    return s ? s->dir : NULL;
}

int store_state_bytes(const store *s, uint64_t *bytes)
{
    char *path = path_join(s->dir, DB_DIR "/" STATE_FILE);
    struct stat st;
    int rc = 0;

    if (!path)
        return ENOMEM;
    if (stat(path, &st) != 0)
        rc = errno;
    else
        *bytes = (uint64_t)st.st_size;
    free(path);
    return rc;
}

struct history *store_history_state(store *s)
{
    return s->history;
}

int store_failed(store *s)
{
    return s ? atomic_load(&s->failed) : RK_EINVAL;
}

/* ------------------------------------------------------------ the ring */

int store_ring_record(store *s, struct store_ring_record *rec)
{
    DBT k = {.data = STORE_RING_KEY, .size = (u_int32_t)strlen(STORE_RING_KEY)};
    DBT v = {.data = rec, .ulen = sizeof *rec, .flags = DB_DBT_USERMEM};
    int rc = s->meta->get(s->meta, NULL, &k, &v, 0);

    if (rc == DB_NOTFOUND)
        return RK_ENOTFOUND;
    return rc == 0 && v.size != sizeof *rec ? RK_ECORRUPT : rc;
}

int store_ring_record_put(store *s, const struct store_ring_record *rec)
{
    DBT k = {.data = STORE_RING_KEY, .size = (u_int32_t)strlen(STORE_RING_KEY)};
    DBT v = {.data = (void *)rec, .size = sizeof *rec};

    /* DB_AUTO_COMMIT with the environment's default: a synced commit */
    return s->meta->put(s->meta, NULL, &k, &v, DB_AUTO_COMMIT);
}

/* Writes text as file `name` in the data directory durably: a temporary
 * file, fsynced, renamed, the directory fsynced.  0 or an errno value. */
static int write_beside_db(store *s, const char *name, const char *text)
{
    char *path = path_join(s->dir, name), *tmp = NULL;
    int rc = 0, fd = -1;

    if (path && asprintf(&tmp, "%s/.%s.tmp", s->dir, name) < 0)
        tmp = NULL;
    if (!text || !path || !tmp) {
        rc = ENOMEM;
        goto out;
    }
    fd = sys_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = errno;
        goto out;
    }
    for (size_t done = 0, len = strlen(text); done < len && !rc;) {
        ssize_t w = sys_write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = w < 0 ? errno : EIO;
        else
            done += (size_t)w;
    }
    if (!rc && sys_fsync(fd) != 0)
        rc = errno;
    close(fd);
    if (!rc && sys_rename(tmp, path) != 0)
        rc = errno;
    if (!rc)
        rc = sys_fsync_dir(s->dir);
    if (rc && rc != ENOMEM)
        sys_unlink(tmp);
out:
    free(path);
    free(tmp);
    return rc;
}

int store_ring_made_write(store *s, const struct store_ring_record *rec)
{
    json_t *j = json_pack("{s:s, s:I, s:I}", "name", rec->name, "created_ns", (json_int_t)rec->created_ns,
                          "capacity", (json_int_t)rec->capacity);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    int rc = write_beside_db(s, STORE_RING_MADE_FILE, text);

    json_decref(j);
    free(text);
    return rc;
}

int store_fence_write(store *s, uint64_t epoch)
{
    char text[64], *path;
    int rc = 0;

    if (epoch) {
        snprintf(text, sizeof text, "{\"fenced_by\":%" PRIu64 "}", epoch);
        return write_beside_db(s, STORE_FENCED_FILE, text);
    }
    path = path_join(s->dir, STORE_FENCED_FILE);
    if (!path)
        return ENOMEM;
    if (sys_unlink(path) != 0)
        rc = errno == ENOENT ? 0 : errno;
    else
        rc = sys_fsync_dir(s->dir);
    free(path);
    return rc;
}

int store_fence_read(store *s, uint64_t *epoch, char *err, size_t err_size)
{
    char *path = path_join(s->dir, STORE_FENCED_FILE);
    json_t *j = NULL;
    json_error_t je;
    json_int_t by = 0;
    int rc = 0;

    *epoch = 0;
    if (!path)
        return ENOMEM;
    if (access(path, F_OK) != 0) {
        rc = errno == ENOENT ? 0 : errno;
        if (rc)
            snprintf(err, err_size, "%s: %s", path, strerror(rc));
        goto out;
    }
    j = json_load_file(path, 0, &je);
    if (!j || json_unpack_ex(j, &je, JSON_STRICT, "{s:I}", "fenced_by", &by) != 0 || by <= 0) {
        snprintf(err, err_size, "%s: not a fence record (\"fenced_by\", an epoch above 0): %s", path,
                 je.text);
        rc = RK_ECORRUPT;
        goto out;
    }
    *epoch = (uint64_t)by;
out:
    json_decref(j);
    free(path);
    return rc;
}

int store_ring_made_read(store *s, struct store_ring_record *rec, char *err, size_t err_size)
{
    char *path = path_join(s->dir, STORE_RING_MADE_FILE);
    json_t *j = NULL;
    json_error_t je;
    const char *name = NULL;
    json_int_t created = 0, capacity = 0;
    int rc = 0;

    if (!path)
        return ENOMEM;
    if (access(path, F_OK) != 0) {
        rc = errno == ENOENT ? RK_ENOTFOUND : errno;
        if (rc != RK_ENOTFOUND)
            snprintf(err, err_size, "%s: %s", path, strerror(rc));
        goto out;
    }
    j = json_load_file(path, 0, &je);
    if (!j || json_unpack_ex(j, &je, JSON_STRICT, "{s:s, s:I, s:I}", "name", &name, "created_ns", &created,
                             "capacity", &capacity) != 0) {
        snprintf(err, err_size, "%s: not a ring identity: %s", path, je.text);
        rc = RK_ECORRUPT;
        goto out;
    }
    if (strlen(name) > RK_NAME_MAX || created <= 0 || capacity <= 0) {
        snprintf(err, err_size,
                 "%s: not a ring identity: a name longer than %d bytes, or a value not above 0", path,
                 RK_NAME_MAX);
        rc = RK_ECORRUPT;
        goto out;
    }
    memset(rec, 0, sizeof *rec);
    snprintf(rec->name, sizeof rec->name, "%s", name);
    rec->created_ns = (uint64_t)created;
    rec->capacity = (uint64_t)capacity;
out:
    json_decref(j);
    free(path);
    return rc;
}

int store_ring_undrained(store *s, char *err, size_t err_size)
{
    struct store_ring_record rec;
    struct journal_header last = {0};
    ring_info *info = NULL;
    uint64_t journaled;
    int rc = store_ring_record(s, &rec);

    if (rc == RK_ENOTFOUND)
        return 0;
    if (rc) {
        snprintf(err, err_size, "cannot read the ring record in meta.db: %s", store_strerror(rc));
        return rc;
    }
    rc = store_journal_last(s, &last);
    if (rc && rc != RK_ENOTFOUND) {
        snprintf(err, err_size, "cannot read the journal: %s", store_strerror(rc));
        return rc;
    }
    info = malloc(sizeof *info);
    if (!info)
        return ENOMEM;
    rc = ring_inspect(rec.name, info, err, err_size);
    if (rc == ENOENT || (rc == 0 && info->created_ns != rec.created_ns)) {
        rc = 0; /* no ring, or not ours: nothing of ours is waiting */
        goto out;
    }
    if (rc)
        goto out;
    /* frames below the journal's next_lsn (J1) or below head (R6) are
     * journaled */
    journaled = last.next_lsn > info->head ? last.next_lsn : info->head;
    if (journaled < info->start_lsn)
        journaled = info->start_lsn;
    /* and padding the node read past the journal's end, which it releases
     * only with its next entry (node/primary.c, drain): no record */
    journaled = ring_padding_end(rec.name, journaled);
    if (info->tail > journaled) {
        snprintf(err, err_size,
                 "ring %s holds %" PRIu64 " bytes of records past the journal (tail %" PRIu64
                 ", journaled to %" PRIu64 "): start the node",
                 rec.name, info->tail - journaled, info->tail, journaled);
        rc = RK_EUNDRAINED;
    }
out:
    free(info);
    return rc;
}

/* ------------------------------------------------------------ the journal */

static void seq_key(uint8_t key[8], uint64_t seq)
{
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(seq >> (56 - 8 * i));
}

static uint64_t key_seq(const uint8_t key[8])
{
    uint64_t seq = 0;

    for (int i = 0; i < 8; i++)
        seq = seq << 8 | key[i];
    return seq;
}

/* A little-endian uint64 of an encoded entry's header at offset off. */
static uint64_t entry_le64(const uint8_t *entry, size_t off)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | entry[off + i];
    return v;
}

#define EPOCH_OFFSET offsetof(struct journal_header, epoch)
#define FIRST_LSN_OFFSET offsetof(struct journal_header, first_lsn)

/* The seq field of an encoded entry's header. */
static uint64_t entry_seq(const uint8_t *entry)
{
    return entry_le64(entry, offsetof(struct journal_header, seq));
}

static int journal_put(store *s, uint64_t first_seq, const uint8_t *const *entries, const size_t *lens,
                       size_t n, uint32_t commit_flags);

int store_journal_append(store *s, uint64_t seq, const uint8_t *entry, size_t len)
{
    return journal_put(s, seq, &entry, &len, 1, DB_TXN_SYNC);
}

int store_journal_append_many(store *s, uint64_t first_seq, const uint8_t *const *entries, const size_t *lens,
                              size_t n)
{
    return journal_put(s, first_seq, entries, lens, n, DB_TXN_SYNC);
}

int store_journal_write(store *s, uint64_t seq, const uint8_t *entry, size_t len)
{
    return journal_put(s, seq, &entry, &len, 1, DB_TXN_WRITE_NOSYNC);
}

/* A failed append or sync: the store's first error, kept (J3). */
static void journal_failed(store *s, int rc)
{
    int expected = 0;
    atomic_compare_exchange_strong(&s->failed, &expected, rc);
}

int store_journal_sync(store *s)
{
    int rc;

    if (!s)
        return RK_EINVAL;
    if ((rc = atomic_load(&s->failed)) != 0)
        return rc;                                          /* J3 */
    rc = s->building ? 0 : s->env->log_flush(s->env, NULL); /* everything written: group commit */
    /* as after an append's commit: a write or fsync that failed anywhere
     * before this flush returned may have cost pages it no longer reports */
    if (rc == 0 && sys_io_failed())
        rc = sys_io_failed();
    if (rc)
        journal_failed(s, rc);
    return rc;
}

static int journal_put(store *s, uint64_t first_seq, const uint8_t *const *entries, const size_t *lens,
                       size_t n, uint32_t commit_flags)
{
    uint8_t key_bytes[8];
    DBT key = {0}, data = {0};
    DB_TXN *txn = NULL;
    int rc, failed;

    if (!s || !entries || !lens || n == 0)
        return RK_EINVAL;
    for (size_t i = 0; i < n; i++) { /* J2: stored under the seq it says; J4 */
        char why[200];
        if (!entries[i] || lens[i] < JOURNAL_HEADER_SIZE + JOURNAL_TRAILER_SIZE || lens[i] > UINT32_MAX ||
            entry_seq(entries[i]) != first_seq + i)
            return RK_EINVAL;
        if (history_entry_ok(s->history, first_seq + i, entry_le64(entries[i], EPOCH_OFFSET), 1, why,
                             sizeof why) != 0) {
            set_message(s, why);
            return RK_EINVAL;
        }
    }
    failed = atomic_load(&s->failed);
    if (!failed && (failed = sys_io_failed()) != 0)
        atomic_compare_exchange_strong(&s->failed, &(int){0}, failed);
    if (failed)
        return failed; /* J3 */
    key.data = key_bytes;
    key.size = sizeof key_bytes;
    for (int attempt = 0;; attempt++) {
        rc = s->env->txn_begin(s->env, NULL, &txn, 0);
        if (rc)
            break;
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            seq_key(key_bytes, first_seq + i);
            data.data = (void *)entries[i];
            data.size = (uint32_t)lens[i];
            rc = s->journal->put(s->journal, txn, &key, &data, DB_NOOVERWRITE); /* J2 */
        }
        if (rc == 0) {
            /* the handle is gone whatever it returns; while a data
             * directory is built, store_built() syncs it all at the end */
            rc = txn->commit(txn, s->building ? DB_TXN_NOSYNC : commit_flags);
        } else {
            int abort_rc = txn->abort(txn);
            if (abort_rc && rc == DB_KEYEXIST)
                rc = abort_rc;
        }
        txn = NULL;
        if ((rc != DB_LOCK_DEADLOCK && rc != DB_LOCK_NOTGRANTED) || attempt + 1 >= MAX_DEADLOCK_RETRIES)
            break;
    }
    /* a write or fsync that failed anywhere in the process before this
     * commit returned (another thread's included) may have cost pages a
     * later fsync, ours, no longer reports: not acknowledged */
    if (rc == 0 && sys_io_failed())
        rc = sys_io_failed();
    if (rc && rc != DB_KEYEXIST)
        journal_failed(s, rc);
    for (size_t i = 0; rc == 0 && i < n; i++)
        history_entry_appended(s->history, first_seq + i, entry_le64(entries[i], EPOCH_OFFSET),
                               entry_le64(entries[i], FIRST_LSN_OFFSET));
    return rc;
}

/* Reads one entry with a cursor (flag DB_FIRST, DB_LAST) or by key (DB_SET) into a
 * malloc'd block; *key_out is the sequence found. */
static int read_entry(store *s, uint32_t how, uint64_t seq, uint64_t *key_out, void **data_out,
                      size_t *len_out)
{
    uint8_t key_bytes[8];
    DBT key = {0}, data = {0};
    DBC *cursor = NULL;
    int rc, close_rc;

    seq_key(key_bytes, seq);
    key.data = key_bytes;
    key.size = key.ulen = sizeof key_bytes;
    key.flags = DB_DBT_USERMEM;
    data.flags = DB_DBT_MALLOC;
    /* a read outside a transaction has nothing to undo: a deadlock with
     * an append (the detector may pick the reader) is simply tried again */
    for (int attempt = 0;; attempt++) {
        rc = s->journal->cursor(s->journal, NULL, &cursor, 0);
        if (rc)
            return rc;
        rc = cursor->get(cursor, &key, &data, how);
        close_rc = cursor->close(cursor);
        if (rc == 0 && close_rc)
            rc = close_rc;
        if ((rc != DB_LOCK_DEADLOCK && rc != DB_LOCK_NOTGRANTED) || attempt + 1 >= MAX_DEADLOCK_RETRIES)
            break;
        free(data.data);
        data.data = NULL;
    }
    if (rc == DB_NOTFOUND) {
        rc = RK_ENOTFOUND;
    } else if (rc == 0 && key.size != sizeof key_bytes) {
        rc = RK_ECORRUPT;
    } else if (rc == 0) {
        *key_out = key_seq(key_bytes);
        *data_out = data.data;
        *len_out = data.size;
        return 0;
    }
    free(data.data);
    return rc;
}

/* Decodes an entry read under key seq and checks it says seq (J2) and
 * carries its seq's epoch (J4). */
static int decode_entry(store *s, uint64_t seq, const void *data, size_t len, journal_entry *e, char *why,
                        size_t why_size)
{
    int rc = journal_decode(data, len, e, why, why_size);

    if (rc == 0 && e->h.seq != seq) {
        if (why && why_size)
            snprintf(why, why_size, "journal entry %" PRIu64 ": stored under key %" PRIu64, e->h.seq, seq);
        rc = RK_ECORRUPT;
    }
    if (rc == 0)
        rc = history_entry_ok(s->history, seq, e->h.epoch, 0, why, why_size);
    if (rc)
        journal_entry_free(e);
    return rc;
}

int store_journal_last(store *s, struct journal_header *h)
{
    journal_entry e = {0};
    void *data = NULL;
    size_t len = 0;
    uint64_t seq = 0;
    char why[256] = "";
    int rc;

    if (!s || !h)
        return RK_EINVAL;
    rc = read_entry(s, DB_LAST, 0, &seq, &data, &len);
    if (rc == RK_ECORRUPT)
        set_message(s, "journal.db: a key that is not 8 bytes");
    if (rc)
        goto out;
    rc = decode_entry(s, seq, data, len, &e, why, sizeof why);
    if (rc) {
        set_message(s, why);
        goto out;
    }
    *h = e.h;
out:
    journal_entry_free(&e);
    free(data);
    return rc;
}

int store_journal_get(store *s, uint64_t seq, journal_entry *e, char *why, size_t why_size)
{
    void *data = NULL;
    size_t len = 0;
    uint64_t found = 0;
    int rc;

    if (why && why_size)
        why[0] = '\0';
    if (!s || !e)
        return RK_EINVAL;
    memset(e, 0, sizeof *e);
    rc = read_entry(s, DB_SET, seq, &found, &data, &len);
    if (rc == RK_ENOTFOUND && why && why_size)
        snprintf(why, why_size, "journal entry %" PRIu64 " not found", seq);
    else if (rc && why && why_size)
        snprintf(why, why_size, "journal entry %" PRIu64 ": cannot read it: %s", seq, store_strerror(rc));
    if (rc == 0)
        rc = decode_entry(s, seq, data, len, e, why, why_size);
    free(data);
    return rc;
}

int store_journal_first(store *s, uint64_t *seq)
{
    void *data = NULL;
    size_t len = 0;
    int rc;

    if (!s || !seq)
        return RK_EINVAL;
    rc = read_entry(s, DB_FIRST, 0, seq, &data, &len);
    free(data);
    return rc;
}

int store_journal_get_raw(store *s, uint64_t seq, uint8_t **entry, size_t *len)
{
    void *data = NULL;
    uint64_t found = 0;
    int rc;

    if (!s || !entry || !len)
        return RK_EINVAL;
    *entry = NULL;
    *len = 0;
    rc = read_entry(s, DB_SET, seq, &found, &data, len);
    if (rc == 0)
        *entry = data;
    return rc;
}

int store_journal_headers(store *s, int (*fn)(void *arg, const struct journal_header *h), void *arg)
{
    uint8_t key_bytes[8], head[JOURNAL_HEADER_SIZE];
    DBT key = {.data = key_bytes, .ulen = sizeof key_bytes, .flags = DB_DBT_USERMEM};
    DBT data = {.data = head, .ulen = sizeof head, .dlen = sizeof head, .flags = DB_DBT_USERMEM | DB_DBT_PARTIAL};
    struct journal_header h;
    DBC *cursor = NULL;
    int rc = s->journal->cursor(s->journal, NULL, &cursor, 0);

    /* one step per entry: bounded by the journal */
    while (rc == 0 && (rc = cursor->get(cursor, &key, &data, DB_NEXT)) == 0) {
        if (key.size != sizeof key_bytes || journal_read_header(head, data.size, &h) != 0 ||
            h.seq != key_seq(key_bytes)) {
            rc = RK_ECORRUPT;
            break;
        }
        rc = fn(arg, &h);
    }
    if (cursor)
        cursor->close(cursor);
    return rc == DB_NOTFOUND ? 0 : rc;
}

/* Deletes entries below seq in one transaction, until it has deleted
 * TRIM_BATCH or taken TRIM_TXN_NS; *more: it stopped there, not at seq or
 * the journal's end.  The entries' pages go to journal.db's free list, on
 * its metadata page, which the transaction holds locked until it ends, and
 * an append takes its new pages from there: the drain's append waited for
 * the whole transaction.  With TRIM_BATCH alone, trimming 1000 entries of
 * a burst (tens of KiB to MiB each) after a checkpoint held the drain for
 * 447 ms, and durable acks paced at 50k/s had a p99 of 237-453 ms during
 * checkpoints against 11-15 ms without (bench_checkpoint, 4 of 10 rounds).
 * The commit does not sync: a trim lost in a crash leaves entries that are
 * trimmed again later, and the next synced commit of the log (an append,
 * the Berkeley DB checkpoint of store_log_trim) makes it durable anyway. */
static int trim_some(store *s, uint64_t seq, int *more)
{
    uint8_t key_bytes[8];
    DBT key = {0}, data = {0};
    DB_TXN *txn = NULL;
    DBC *cursor = NULL;
    uint64_t t0 = seg_now_ns(CLOCK_MONOTONIC);
    int rc, end_rc;

    *more = 0;
    key.data = key_bytes;
    key.ulen = sizeof key_bytes;
    key.flags = DB_DBT_USERMEM;
    data.flags = DB_DBT_USERMEM | DB_DBT_PARTIAL; /* only the keys are needed */
    rc = s->env->txn_begin(s->env, NULL, &txn, 0);
    if (rc)
        return rc;
    /* the lowest priority: if trimming ever deadlocks with the drain's
     * append (page locks of a reverse split), the detector picks this
     * transaction, never the append, whose failure would stop the node */
    rc = txn->set_priority(txn, 0);
    if (rc == 0)
        rc = s->journal->cursor(s->journal, txn, &cursor, 0);
    for (uint32_t i = 0; rc == 0; i++) {
        if (i == TRIM_BATCH || (i > 0 && seg_now_ns(CLOCK_MONOTONIC) - t0 >= TRIM_TXN_NS)) {
            *more = 1;
            break;
        }
        rc = cursor->get(cursor, &key, &data, i == 0 ? DB_FIRST : DB_NEXT);
        if (rc == 0 && (key.size != sizeof key_bytes || key_seq(key_bytes) >= seq))
            break;
        if (rc == 0)
            rc = cursor->del(cursor, 0);
    }
    if (rc == DB_NOTFOUND)
        rc = 0;
    if (cursor) {
        end_rc = cursor->close(cursor);
        if (rc == 0)
            rc = end_rc;
    }
    if (rc == 0) {
        rc = txn->commit(txn, DB_TXN_NOSYNC);
    } else {
        txn->abort(txn);
        *more = 0;
    }
    return rc;
}

#define TRIMMED_TAIL_KEY "journal_trimmed_tail"

int store_journal_trimmed_tail(store *s, uint64_t *seq, uint64_t *xxh)
{
    uint8_t buf[16];
    DBT k = {.data = TRIMMED_TAIL_KEY, .size = (u_int32_t)strlen(TRIMMED_TAIL_KEY)};
    DBT v = {.data = buf, .ulen = sizeof buf, .flags = DB_DBT_USERMEM};
    int rc = s->meta->get(s->meta, NULL, &k, &v, 0);

    if (rc == DB_NOTFOUND)
        return RK_ENOTFOUND;
    if (rc == 0 && v.size != sizeof buf)
        return RK_ECORRUPT;
    if (rc == 0) {
        *seq = entry_le64(buf, 0);
        *xxh = entry_le64(buf, 8);
    }
    return rc;
}

/* Records entry seq's XXH64 trailer as the trimmed tail, when the journal
 * holds it. */
static int record_trimmed_tail(store *s, uint64_t seq)
{
    uint8_t *entry = NULL, buf[16];
    size_t len = 0;
    int rc = store_journal_get_raw(s, seq, &entry, &len);

    if (rc == RK_ENOTFOUND)
        return 0; /* trimmed already: recorded then */
    if (rc)
        return rc;
    uint64_t xxh = journal_entry_xxh(entry, len);
    free(entry);
    for (int i = 0; i < 8; i++) {
        buf[i] = (uint8_t)(seq >> (8 * i));
        buf[8 + i] = (uint8_t)(xxh >> (8 * i));
    }
    DBT k = {.data = TRIMMED_TAIL_KEY, .size = (u_int32_t)strlen(TRIMMED_TAIL_KEY)};
    DBT v = {.data = buf, .size = sizeof buf};
    /* its own transaction at the lowest priority, as the trim's: in a
     * deadlock with apply (which writes meta.db too) the detector picks
     * this one, never apply, whose failure would stop the node; a commit
     * without a sync of its own: the log is written in order, so the
     * record is durable before any deletion after it is */
    for (int attempt = 0;; attempt++) {
        DB_TXN *txn = NULL;
        rc = s->env->txn_begin(s->env, NULL, &txn, 0);
        if (rc)
            return rc;
        rc = txn->set_priority(txn, 0);
        if (rc == 0)
            rc = s->meta->put(s->meta, txn, &k, &v, 0);
        if (rc == 0)
            rc = txn->commit(txn, DB_TXN_NOSYNC);
        else
            txn->abort(txn);
        if (rc != DB_LOCK_DEADLOCK || attempt + 1 >= MAX_DEADLOCK_RETRIES)
            return rc;
    }
}

int store_journal_trim(store *s, uint64_t seq)
{
    int more = 1, rc = 0;
    uint64_t last = 0;
    void *data = NULL;
    size_t len = 0;

    if (!s)
        return RK_EINVAL;
    rc = read_entry(s, DB_LAST, 0, &last, &data, &len);
    free(data);
    if (rc == RK_ENOTFOUND)
        return 0; /* nothing to trim */
    if (rc)
        return rc;
    if (seq > last)
        seq = last; /* the last entry stays: its XXH64 is what a peer's is compared with */
    if (seq <= 1)
        return 0;
    if ((rc = record_trimmed_tail(s, seq - 1)) != 0)
        return rc;
    /* each round deletes at least one entry or ends the loop: bounded by
     * the journal's size */
    for (int deadlocks = 0; (rc == 0 || (rc == DB_LOCK_DEADLOCK && deadlocks++ < 100)) && more;) {
        rc = trim_some(s, seq, &more);
        if (rc == DB_LOCK_DEADLOCK)
            more = 1; /* chosen as the victim: that round again */
    }
    return rc;
}

int store_journal_clear(store *s)
{
    int more = 1, rc;
    uint64_t last = 0;
    void *data = NULL;
    size_t len = 0;

    rc = read_entry(s, DB_LAST, 0, &last, &data, &len);
    free(data);
    if (rc == RK_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    if ((rc = record_trimmed_tail(s, last)) != 0)
        return rc;
    for (int deadlocks = 0; (rc == 0 || (rc == DB_LOCK_DEADLOCK && deadlocks++ < 100)) && more;) {
        rc = trim_some(s, last + 1, &more);
        if (rc == DB_LOCK_DEADLOCK)
            more = 1;
    }
    return rc;
}

int store_log_checkpoint(store *s, uint32_t kbytes)
{
    return env_checkpoint(s, kbytes, 0);
}

int store_log_trim(store *s, uint32_t *n_removed)
{
    char **list = NULL;
    int rc;

    *n_removed = 0;
    /* a checkpoint first: the log before it is then needed by nobody
     * (every transaction that wrote there has ended, its pages are in the
     * database files) */
    rc = env_checkpoint(s, 0, 0);
    /* ... unless a write or fsync failed anywhere: the checkpoint's own
     * fsyncs may then pass on pages the kernel dropped, and only the log
     * can redo them */
    if (!rc)
        rc = sys_io_failed();
    if (!rc)
        rc = s->env->log_archive(s->env, &list, DB_ARCH_ABS);
    for (char **p = list; !rc && p && *p; p++) {
        if (sys_unlink(*p) == 0)
            (*n_removed)++;
        else
            rc = errno;
    }
    free(list); /* one allocation, BDB's own (log_archive) */
    return rc;
}

int store_building(const store *s)
{
    return s->building;
}

int store_built(store *s)
{
    char *marker;
    int rc;

    if (!s || !s->building)
        return RK_EINVAL;
    /* everything durable first: the log, then the pages */
    rc = s->env->log_flush(s->env, NULL);
    if (!rc)
        rc = env_checkpoint(s, 0, DB_FORCE);
    if (!rc)
        rc = sys_io_failed(); /* one that failed earlier is not reported again */
    if (rc)
        return rc;
    /* the files the build created in db/ (it logged nothing recovery could
     * recreate them from), before the marker that vouches for them goes */
    char *db_dir = path_join(s->dir, DB_DIR);
    if (!db_dir)
        return ENOMEM;
    rc = sys_fsync_dir(db_dir);
    free(db_dir);
    if (rc)
        return rc;
    marker = path_join(s->dir, STORE_BUILDING_FILE);
    if (!marker)
        return ENOMEM;
    rc = sys_unlink(marker) == 0 ? sys_fsync_dir(s->dir) : errno;
    free(marker);
    if (!rc)
        s->building = 0;
    return rc;
}
