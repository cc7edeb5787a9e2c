/* state.c -- the engine's restore API: rk_state_*.
 *
 * A state handle reads a snapshot file: a standalone Berkeley DB file with
 * one subdatabase per table ("t:<name>") and "meta" (what was applied and
 * every producer's last MARK), written by applier_snapshot() at a group
 * boundary.  Where it comes from:
 *   - a node runs on the data directory: the node is asked over its control
 *     endpoint; it finishes applying what is durable, writes the snapshot
 *     and answers with its path;
 *   - no node runs: this process takes the data directory's lock itself,
 *     recovers the environment, applies the journal, writes the snapshot and
 *     lets the lock go.
 *   - a checkpoint file: verified whole (nothing is used from a file that
 *     fails), then written as a snapshot in a private temporary folder.
 * The handle opens every subdatabase, then unlinks the file: the copy is
 * private to the engine, and nothing is left behind if the engine dies.
 *
 * Threads: a handle belongs to one thread at a time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply.h"
#include "checkpoint.h"
#include "node.h"
#include "ringkeep.h"
#include "store.h"

#define SNAPSHOT_WAIT_MS 600000 /* a node applying a long backlog first */

struct state_table {
    char name[RK_NAME_MAX + 1];
    DB *db;
};

struct rk_state {
    DB_ENV *env;
    DB *meta;
    struct apply_meta am;
    struct state_table *tables;
    size_t n_tables;
};

static int open_db(DB_ENV *env, const char *file, const char *subname, DB **out)
{
    DB *db = NULL;
    int rc = db_create(&db, env, 0);

    if (!rc)
        rc = db->open(db, NULL, file, subname, DB_BTREE, DB_RDONLY, 0);
    if (rc && db) {
        db->close(db, 0);
        db = NULL;
    }
    *out = db;
    return rc;
}

/* Opens snapshot `path` (every subdatabase), then unlinks it. */
static int open_snapshot(const char *path, rk_state *s)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/'), *file;
    DB *master = NULL;
    DBC *cur = NULL;
    DBT k = {0}, v = {0};
    int rc;

    if (!slash || (size_t)(slash - path) >= sizeof dir)
        return RK_EINVAL;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    file = slash + 1;
    rc = db_env_create(&s->env, 0);
    if (!rc)
        rc = s->env->set_cachesize(s->env, 0, 64u << 20, 1);
    if (!rc)
        rc = s->env->open(s->env, dir, DB_CREATE | DB_INIT_MPOOL | DB_PRIVATE, 0600);
    if (!rc)
        rc = open_db(s->env, file, "meta", &s->meta);
    if (!rc) {
        DBT mk = {.data = "applied", .size = 7};
        DBT mv = {.data = &s->am, .ulen = sizeof s->am, .flags = DB_DBT_USERMEM};
        rc = s->meta->get(s->meta, NULL, &mk, &mv, 0);
        if (rc == DB_NOTFOUND) {
            memset(&s->am, 0, sizeof s->am);
            rc = 0;
        }
    }
    if (!rc)
        rc = open_db(s->env, file, NULL, &master);
    if (!rc)
        rc = master->cursor(master, NULL, &cur, 0);
    while (!rc && (rc = cur->get(cur, &k, &v, DB_NEXT)) == 0) {
        char sub[RK_NAME_MAX + 3];
        struct state_table *t;
        if (k.size < 3 || k.size - 2 > RK_NAME_MAX || memcmp(k.data, "t:", 2) != 0)
            continue;
        t = realloc(s->tables, (s->n_tables + 1) * sizeof *t);
        if (!t) {
            rc = ENOMEM;
            break;
        }
        s->tables = t;
        t = &s->tables[s->n_tables];
        memcpy(t->name, (char *)k.data + 2, k.size - 2);
        t->name[k.size - 2] = '\0';
        snprintf(sub, sizeof sub, "t:%s", t->name);
        rc = open_db(s->env, file, sub, &t->db);
        if (!rc)
            s->n_tables++;
    }
    if (rc == DB_NOTFOUND)
        rc = 0;
    if (cur)
        cur->close(cur);
    if (master)
        master->close(master, 0);
    unlink(path);
    return rc;
}

/* No node on dir: make the snapshot in this process. */
static int snapshot_here(const char *dir, char *path, size_t path_size)
{
    store *st = NULL;
    applier *a = NULL;
    char err[512] = "";
    int rc = store_open(dir, 0, 64, &st, err, sizeof err);

    if (!rc)
        rc = applier_open(st, &a, err, sizeof err);
    if (!rc)
        rc = applier_run(a, UINT64_MAX, 20000, err, sizeof err);
    if (!rc) {
        snprintf(path, path_size, "%s/snapshots/restore-%d.db", dir, (int)getpid());
        rc = applier_snapshot(a, path, err, sizeof err);
    }
    applier_close(a);
    store_close(st);
    return rc;
}

/* ------------------------------------------------------------ checkpoint files */

/* Loads a checkpoint into a snapshot file (the layout open_snapshot reads). */
struct ckpt_load {
    DB_ENV *env;
    const char *file;
    DB *db; /* the table being filled */
    char table[RK_NAME_MAX + 1];
};

static int load_entry(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                      uint32_t vlen)
{
    struct ckpt_load *l = arg;
    DBT k = {.data = (void *)key, .size = klen}, v = {.data = (void *)val, .size = vlen};
    int rc;

    if (!l->db || strcmp(l->table, table) != 0) {
        char sub[RK_NAME_MAX + 3];
        if (l->db)
            l->db->close(l->db, 0);
        l->db = NULL;
        snprintf(l->table, sizeof l->table, "%s", table);
        snprintf(sub, sizeof sub, "t:%s", table);
        rc = db_create(&l->db, l->env, 0);
        if (!rc)
            rc = l->db->open(l->db, NULL, l->file, sub, DB_BTREE, DB_CREATE, 0600);
        if (rc)
            return rc;
    }
    return l->db->put(l->db, NULL, &k, &v, 0);
}

/* Verifies checkpoint `path` whole, then writes it as a snapshot file in a
 * private temporary folder; *snap_path is that file. */
static int snapshot_from_checkpoint(const char *path, char *snap_path, size_t snap_size, char *dir,
                                    size_t dir_size)
{
    struct ckpt_info info = {0};
    struct ckpt_load l = {.file = "state.db"};
    struct apply_meta am = {0};
    DB *meta = NULL;
    char err[512];
    const char *tmp = getenv("TMPDIR");
    int rc;

    snprintf(dir, dir_size, "%s/ringkeep-restore.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return errno;
    snprintf(snap_path, snap_size, "%s/%s", dir, l.file);
    rc = db_env_create(&l.env, 0);
    if (!rc)
        rc = l.env->set_cachesize(l.env, 0, 64u << 20, 1);
    if (!rc)
        rc = l.env->open(l.env, dir, DB_CREATE | DB_INIT_MPOOL | DB_PRIVATE, 0600);
    /* entries are handed over only once the whole file has verified */
    if (!rc)
        rc = ckpt_verify(path, &info, load_entry, &l, err, sizeof err);
    if (l.db)
        l.db->close(l.db, 0);
    if (!rc)
        rc = db_create(&meta, l.env, 0);
    if (!rc)
        rc = meta->open(meta, NULL, l.file, "meta", DB_BTREE, DB_CREATE, 0600);
    if (!rc) {
        am.applied_seq = info.journal_seq;
        am.applied_lsn = info.lsn;
        am.n_records = info.n_entries;
        am.digest = info.digest;
        DBT k = {.data = "applied", .size = 7}, v = {.data = &am, .size = sizeof am};
        rc = meta->put(meta, NULL, &k, &v, 0);
    }
    for (uint32_t i = 0; !rc && i < info.n_producers; i++) {
        struct producer_meta m = {
            .applied_lsn = info.producers[i].applied_lsn, .height = info.producers[i].height, .n_groups = 1};
        char key[RK_NAME_MAX + 3];
        snprintf(key, sizeof key, "p:%s", info.producers[i].name);
        DBT k = {.data = key, .size = (u_int32_t)strlen(key)}, v = {.data = &m, .size = sizeof m};
        rc = meta->put(meta, NULL, &k, &v, 0);
    }
    if (meta)
        meta->close(meta, 0);
    if (l.env)
        l.env->close(l.env, 0);
    ckpt_info_free(&info);
    if (rc) {
        unlink(snap_path);
        rmdir(dir);
    }
    return rc;
}

int rk_state_open(const char *source, rk_state **out)
{
    rk_state *s = NULL;
    char path[PATH_MAX + 64], *reply = NULL;
    struct stat st;
    int rc;

    if (!source || !out)
        return RK_EINVAL;
    *out = NULL;
    if (stat(source, &st) != 0)
        return errno;
    if (S_ISREG(st.st_mode)) {
        /* a checkpoint file: verified whole, then read like a snapshot */
        char dir[PATH_MAX];
        rc = snapshot_from_checkpoint(source, path, sizeof path, dir, sizeof dir);
        if (rc)
            return rc;
        s = calloc(1, sizeof *s);
        rc = s ? open_snapshot(path, s) : ENOMEM;
        rmdir(dir); /* empty: open_snapshot unlinked the file */
        if (rc) {
            rk_state_close(s);
            return rc;
        }
        *out = s;
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return RK_EINVAL;
    /* a node that dies or restarts while asked is asked again (or, gone,
     * replaced by this process); bounded */
    for (int tries = 0;
         (rc = node_request(source, "snapshot", SNAPSHOT_WAIT_MS, &reply)) == EAGAIN && tries < 600; tries++)
        usleep(100000);
    if (rc == 0) {
        if (strncmp(reply, "ok ", 3) != 0) {
            free(reply); /* the node could not write the snapshot; it logged why */
            return EIO;
        }
        snprintf(path, sizeof path, "%s", reply + 3);
        free(reply);
    } else if (rc == ENOENT) {
        rc = snapshot_here(source, path, sizeof path);
        if (rc == RK_EBUSY) /* a node started meanwhile */
            return rk_state_open(source, out);
        if (rc)
            return rc;
    } else {
        return rc;
    }
    s = calloc(1, sizeof *s);
    if (!s)
        return ENOMEM;
    rc = open_snapshot(path, s);
    if (rc) {
        rk_state_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void rk_state_close(rk_state *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_tables; i++)
        s->tables[i].db->close(s->tables[i].db, 0);
    if (s->meta)
        s->meta->close(s->meta, 0);
    if (s->env)
        s->env->close(s->env, 0);
    free(s->tables);
    free(s);
}

uint64_t rk_state_lsn(const rk_state *s)
{
    return s ? s->am.applied_lsn : 0;
}

int rk_state_height(const rk_state *s, const char *producer, uint64_t *height)
{
    char key[RK_NAME_MAX + 3];
    struct producer_meta m;
    DBT k, v = {.data = &m, .ulen = sizeof m, .flags = DB_DBT_USERMEM};
    int rc;

    if (!s || !producer || !height || strlen(producer) > RK_NAME_MAX)
        return RK_EINVAL;
    snprintf(key, sizeof key, "p:%s", producer);
    memset(&k, 0, sizeof k);
    k.data = key;
    k.size = (u_int32_t)strlen(key);
    rc = s->meta->get(s->meta, NULL, &k, &v, 0);
    if (rc == DB_NOTFOUND || (rc == 0 && m.n_groups == 0))
        return RK_ENOTFOUND;
    if (rc)
        return rc;
    *height = m.height;
    return 0;
}

static DB *find_table(const rk_state *s, const char *table)
{
    for (size_t i = 0; table && i < s->n_tables; i++)
        if (strcmp(s->tables[i].name, table) == 0)
            return s->tables[i].db;
    return NULL;
}

int rk_state_get(rk_state *s, const char *table, const void *key, uint32_t klen, void **val, uint32_t *vlen)
{
    DB *db;
    DBT k = {0}, v = {.flags = DB_DBT_MALLOC};
    int rc;

    if (!s || !val || !vlen || (klen && !key))
        return RK_EINVAL;
    *val = NULL;
    *vlen = 0;
    db = find_table(s, table);
    if (!db)
        return RK_ENOTFOUND;
    k.data = (void *)key;
    k.size = klen;
    rc = db->get(db, NULL, &k, &v, 0);
    if (rc == DB_NOTFOUND)
        return RK_ENOTFOUND;
    if (rc)
        return rc;
    if (v.size == 0) {
        free(v.data);
        v.data = NULL;
    }
    *val = v.data;
    *vlen = v.size;
    return 0;
}

int rk_state_scan(rk_state *s, const char *table, const void *prefix, uint32_t plen, rk_scan_fn fn, void *arg)
{
    DB *db;
    DBC *cur = NULL;
    DBT k = {0}, v = {0};
    int rc, stop = 0;

    if (!s || !fn || (plen && !prefix))
        return RK_EINVAL;
    db = find_table(s, table);
    if (!db)
        return 0;
    rc = db->cursor(db, NULL, &cur, 0);
    if (rc)
        return rc;
    if (plen) {
        k.data = (void *)prefix;
        k.size = plen;
        rc = cur->get(cur, &k, &v, DB_SET_RANGE);
    } else {
        rc = cur->get(cur, &k, &v, DB_FIRST);
    }
    while (rc == 0) {
        if (plen && (k.size < plen || memcmp(k.data, prefix, plen) != 0))
            break;
        stop = fn(arg, k.data, k.size, v.data, v.size);
        if (stop)
            break;
        rc = cur->get(cur, &k, &v, DB_NEXT);
    }
    cur->close(cur);
    if (stop)
        return stop;
    return rc == DB_NOTFOUND || rc == 0 ? 0 : rc;
}
