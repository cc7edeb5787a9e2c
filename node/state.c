/* state.c -- the engine's restore API: rk_state_*.
 *
 * A state handle reads a snapshot file: a standalone Berkeley DB file with
 * one subdatabase per table ("t:<name>") and "meta" (what was applied and
 * every producer's last MARK), written by applier_snapshot() at a group
 * boundary.  Where it comes from:
 *   - a node runs on the data directory: the node is asked over its control
 *     endpoint (node_request, client.c: this file is in libringkeep, the
 *     node process is not); it finishes applying what is durable, writes the snapshot
 *     and answers with its path;
 *   - no node runs: this process takes the data directory's lock itself,
 *     recovers the environment, applies the journal, writes the snapshot and
 *     lets the lock go; it refuses (RK_EUNDRAINED) while the ring still
 *     holds records the journal does not: that state would be older than
 *     what the engines wrote, and an engine resuming from it would write
 *     those groups again (issue 9.4).  It does not drain them itself: the
 *     ring's consumer (take-over, dead producers' ABORTs, the replicated
 *     cursor, which needs the node's replication settings) is the node's.
 *   - a checkpoint file: verified whole (nothing is used from a file that
 *     fails), then held in memory: its entries are sorted by table and key
 *     already, so each table is an array searched by bisection, and no
 *     Berkeley DB file has to be written (that took 3x longer than the
 *     verification for a million entries).
 * A snapshot handle opens every subdatabase, then unlinks the file: the
 * copy is private to the engine, and nothing is left behind if the engine
 * dies.
 *
 * Threads: a handle belongs to one thread at a time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "persist/apply.h"
#include "persist/checkpoint.h"
#include "node/client.h"
#include "ringkeep.h"
#include "persist/store.h"

#define SNAPSHOT_WAIT_MS 600000 /* a node applying a long backlog first */

struct state_table {
    char name[RK_NAME_MAX + 1];
    DB *db;
};

/* A checkpoint held in memory: entries point into blocks of copied bytes. */
struct mem_entry {
    const uint8_t *key, *val;
    uint32_t klen, vlen;
};

struct mem_table {
    char name[RK_NAME_MAX + 1];
    struct mem_entry *e; /* sorted by key (bytewise, a prefix first) */
    size_t n, cap;
};

struct mem_block {
    struct mem_block *next;
    size_t used, size;
    uint8_t bytes[];
};

struct rk_state {
    /* from a snapshot file */
    DB_ENV *env;
    DB *meta;
    struct apply_meta am;
    struct state_table *tables;
    size_t n_tables;
    /* or from a checkpoint file (mem) */
    int mem;
    struct ckpt_info info;
    struct mem_table *mt;
    size_t n_mt;
    struct mem_block *blocks;
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

/* No node on dir: make the snapshot in this process, unless the ring holds
 * records the journal does not (RK_EUNDRAINED: checked under the data
 * directory's lock, so no node can start and drain meanwhile). */
static int snapshot_here(const char *dir, char *path, size_t path_size)
{
    store *st = NULL;
    applier *a = NULL;
    char err[512] = "";
    int rc = store_open(dir, 0, 64, &st, err, sizeof err);

    if (!rc)
        rc = store_ring_undrained(st, err, sizeof err);
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

#define MEM_BLOCK_SIZE (16u << 20)

/* Copies n bytes into s's blocks; NULL when out of memory. */
static const uint8_t *mem_copy(rk_state *s, const void *bytes, size_t n)
{
    struct mem_block *b = s->blocks;
    uint8_t *at;

    if (!b || b->size - b->used < n) {
        size_t size = n > MEM_BLOCK_SIZE ? n : MEM_BLOCK_SIZE;
        b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
        b->next = s->blocks;
        b->used = 0;
        b->size = size;
        s->blocks = b;
    }
    at = b->bytes + b->used;
    if (n)
        memcpy(at, bytes, n);
    b->used += n;
    return at;
}

/* ckpt_verify's callback: only called once the whole file has passed, in
 * file order (tables by name, keys ascending). */
static int mem_entry_add(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                         uint32_t vlen)
{
    rk_state *s = arg;
    struct mem_table *t = s->n_mt ? &s->mt[s->n_mt - 1] : NULL;
    struct mem_entry *e;

    if (!t || strcmp(t->name, table) != 0) {
        t = realloc(s->mt, (s->n_mt + 1) * sizeof *t);
        if (!t)
            return ENOMEM;
        s->mt = t;
        t = &s->mt[s->n_mt++];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", table);
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        e = realloc(t->e, cap * sizeof *e);
        if (!e)
            return ENOMEM;
        t->e = e;
        t->cap = cap;
    }
    e = &t->e[t->n];
    e->key = mem_copy(s, key, klen);
    e->val = mem_copy(s, val, vlen);
    if (!e->key || !e->val)
        return ENOMEM;
    e->klen = klen;
    e->vlen = vlen;
    t->n++;
    return 0;
}

/* Verifies checkpoint `path` whole, then holds its entries in s. */
static int open_checkpoint(const char *path, rk_state *s)
{
    char err[512];

    s->mem = 1;
    /* a file that fails says RK_ECORRUPT / RK_EVERSION; the reason is
     * the verifier's, which `ringkeep checkpoint verify` prints */
    return ckpt_verify(path, &s->info, mem_entry_add, s, err, sizeof err);
}

static void mem_free(rk_state *s)
{
    for (size_t i = 0; i < s->n_mt; i++)
        free(s->mt[i].e);
    free(s->mt);
    while (s->blocks) {
        struct mem_block *next = s->blocks->next;
        free(s->blocks);
        s->blocks = next;
    }
    ckpt_info_free(&s->info);
}

static const struct mem_table *mem_find_table(const rk_state *s, const char *table)
{
    for (size_t i = 0; table && i < s->n_mt; i++)
        if (strcmp(s->mt[i].name, table) == 0)
            return &s->mt[i];
    return NULL;
}


/* The first entry of t whose key is >= key. */
static size_t mem_lower_bound(const struct mem_table *t, const void *key, uint32_t klen)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ckpt_key_cmp(t->e[mid].key, t->e[mid].klen, key, klen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
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
        /* a checkpoint file: verified whole, then held in memory */
        s = calloc(1, sizeof *s);
        rc = s ? open_checkpoint(source, s) : ENOMEM;
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
    mem_free(s);
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
    return !s ? 0 : s->mem ? s->info.lsn : s->am.applied_lsn;
}

int rk_state_height(const rk_state *s, const char *producer, uint64_t *height)
{
    char key[RK_NAME_MAX + 3];
    struct producer_meta m;
    DBT k, v = {.data = &m, .ulen = sizeof m, .flags = DB_DBT_USERMEM};
    int rc;

    if (!s || !producer || !height || strlen(producer) > RK_NAME_MAX)
        return RK_EINVAL;
    if (s->mem) {
        for (uint32_t i = 0; i < s->info.n_producers; i++)
            if (strcmp(s->info.producers[i].name, producer) == 0) {
                *height = s->info.producers[i].height;
                return 0;
            }
        return RK_ENOTFOUND;
    }
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
    if (s->mem) {
        const struct mem_table *t = mem_find_table(s, table);
        size_t i = t ? mem_lower_bound(t, key, klen) : 0;
        if (!t || i == t->n || ckpt_key_cmp(t->e[i].key, t->e[i].klen, key, klen) != 0)
            return RK_ENOTFOUND;
        if (t->e[i].vlen) { /* the caller's copy, as from Berkeley DB (DB_DBT_MALLOC) */
            *val = malloc(t->e[i].vlen);
            if (!*val)
                return ENOMEM;
            memcpy(*val, t->e[i].val, t->e[i].vlen);
        }
        *vlen = t->e[i].vlen;
        return 0;
    }
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
    if (s->mem) {
        const struct mem_table *t = mem_find_table(s, table);
        for (size_t i = t ? mem_lower_bound(t, prefix, plen) : 0; t && i < t->n; i++) {
            const struct mem_entry *e = &t->e[i];
            if (plen && (e->klen < plen || memcmp(e->key, prefix, plen) != 0))
                break;
            stop = fn(arg, e->key, e->klen, e->val, e->vlen);
            if (stop)
                return stop;
        }
        return 0;
    }
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
