/* history.c -- the epoch history a data directory keeps with its journal
 * (store.h's store_history*, store_epoch_*); the pure functions of
 * history.h are in history_rules.c.
 *
 * Design: the history lives in meta.db, in the journal's Berkeley DB
 * environment, under STORE_HISTORY_KEY (history_encode's bytes); beside it
 * STORE_EPOCH_KEY (the highest epoch the directory has seen) and
 * STORE_BEGAN_KEY (the epoch this directory last began itself).  Every
 * change writes them in one transaction committed with sync, before the
 * caller writes anything in the new epoch.  The store keeps a copy in
 * memory (loaded by history_open at store_open), which every journal read
 * and append checks entries against (J4 in store.h).
 *
 * A directory made before histories existed has no STORE_HISTORY_KEY: its
 * history is the one its journal implies (history_derive): one element per
 * epoch its entries carry, at the first entry that carries it (the oldest
 * entry held starts the first).  Nothing is written for it at open; the
 * first change stores the whole list.  Until then appends only keep the
 * entries' epochs non-decreasing, and the implied list grows with them.
 *
 *   implied --store_epoch_begin / store_history_adopt--> stored
 *
 * Threads: any; `lock` guards the copy in memory and is held across a
 * change's transaction, so that readers never see a history the disk does
 * not hold.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persist/bytes.h"
#include "persist/history.h"
#include "persist/store.h"
#include "persist/store_impl.h"
#include "shm/segment.h"

#define MAX_DEADLOCK_RETRIES 8

#define corrupt(why, why_size, ...) seg_fail(why, why_size, RK_ECORRUPT, __VA_ARGS__)

/* ------------------------------------------------------------ the directory's */

struct history {
    /* lock guards the fields below and is never held while waiting for a
     * Berkeley DB lock: the apply thread takes it (history_entry_ok) inside
     * its open transaction, so a thread that held it across a meta.db
     * read or write waiting for that transaction's page locks deadlocked
     * both, unseen by the deadlock detector (a standby adopting its
     * primary's history while it applied its journal: never welcomed
     * again, its apply stuck).  write_lock serializes the writers of the
     * stored history instead; apply never takes it. */
    pthread_mutex_t lock;
    pthread_mutex_t write_lock;
    struct epoch_start *e; /* H1-H3; NULL when n == 0 */
    uint32_t n;
    int stored;     /* meta.db holds it; 0: implied by the journal (history_derive) */
    uint64_t began; /* STORE_BEGAN_KEY (0: this directory never began an epoch) */
};

static int meta_get_u64(store *s, const char *key, uint64_t *v)
{
    DB *meta = store_meta(s);
    DBT k = {.data = (void *)key, .size = (u_int32_t)strlen(key)};
    DBT d = {.data = v, .ulen = sizeof *v, .flags = DB_DBT_USERMEM};
    int rc = meta->get(meta, NULL, &k, &d, 0);

    *v = rc == 0 ? *v : 0;
    if (rc == DB_NOTFOUND)
        return 0;
    return rc == 0 && d.size != sizeof *v ? RK_ECORRUPT : rc;
}

/* Appends (epoch, seq, lsn) to h's list in memory. */
static int push(struct history *h, uint64_t epoch, uint64_t seq, uint64_t lsn)
{
    struct epoch_start *grown;

    if (h->n == HISTORY_MAX)
        return RK_EINVAL;
    grown = realloc(h->e, (h->n + 1) * sizeof *grown);
    if (!grown)
        return ENOMEM;
    h->e = grown;
    h->e[h->n++] = (struct epoch_start){epoch, seq, lsn};
    return 0;
}

struct derive {
    struct history *h;
    char *why;
    size_t why_size;
};

static int derive_one(void *arg, const struct journal_header *jh)
{
    struct derive *d = arg;
    struct history *h = d->h;
    uint64_t last = h->n ? h->e[h->n - 1].epoch : 0;

    if (jh->epoch == last)
        return 0;
    if (jh->epoch < last || jh->epoch == 0)
        return corrupt(d->why, d->why_size,
                       "journal entry %" PRIu64 " has epoch %" PRIu64 " after entries of epoch %" PRIu64
                       " (epochs never go down)",
                       jh->seq, jh->epoch, last);
    return push(h, jh->epoch, jh->seq, jh->first_lsn);
}

/* The history a journal without a stored one implies (history.c's head). */
static int history_derive(store *s, struct history *h, char *why, size_t why_size)
{
    struct derive d = {h, why, why_size};

    return store_journal_headers(s, derive_one, &d);
}

int history_open(store *s, struct history **out, char *err, size_t err_size)
{
    struct history *h = calloc(1, sizeof *h);
    DB *meta = store_meta(s);
    DBT k = {.data = STORE_HISTORY_KEY, .size = (u_int32_t)strlen(STORE_HISTORY_KEY)};
    DBT v = {.flags = DB_DBT_MALLOC};
    char why[256] = "";
    int rc;

    *out = NULL;
    if (!h)
        return seg_fail(err, err_size, ENOMEM, "out of memory");
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->write_lock, NULL);
    rc = meta->get(meta, NULL, &k, &v, 0);
    if (rc == 0) {
        h->stored = 1;
        rc = history_decode(v.data, v.size, &h->e, &h->n, why, sizeof why);
    } else if (rc == DB_NOTFOUND) {
        rc = history_derive(s, h, why, sizeof why);
    }
    free(v.data);
    if (rc == 0)
        rc = meta_get_u64(s, STORE_BEGAN_KEY, &h->began);
    if (rc) {
        seg_error(err, err_size, "cannot read the epoch history of %s: %s", store_dir(s),
                  why[0] ? why : store_strerror(rc));
        history_close(h);
        return rc;
    }
    *out = h;
    return 0;
}

void history_close(struct history *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->write_lock);
    free(h->e);
    free(h);
}

/* J4 for an entry about to be appended at seq with epoch: stored, the
 * history's epoch for seq; implied, not below the last one.  Under lock. */
static int entry_fits(const struct history *h, uint64_t seq, uint64_t epoch, int appending)
{
    uint64_t want = history_epoch_of(h->e, h->n, seq);

    if (h->n == 0)
        return 1;
    if (!h->stored && appending)
        return epoch >= h->e[h->n - 1].epoch;
    return epoch == want;
}

int history_entry_ok(struct history *h, uint64_t seq, uint64_t epoch, int appending, char *why,
                     size_t why_size)
{
    uint64_t want;
    int ok;

    pthread_mutex_lock(&h->lock);
    ok = entry_fits(h, seq, epoch, appending);
    want = history_epoch_of(h->e, h->n, seq);
    pthread_mutex_unlock(&h->lock);
    if (ok)
        return 0;
    return seg_fail(why, why_size, appending ? RK_EINVAL : RK_ECORRUPT,
                    "journal entry %" PRIu64 " has epoch %" PRIu64 ", the epoch history says %" PRIu64
                    " (J4)",
                    seq, epoch, want);
}

void history_entry_appended(struct history *h, uint64_t seq, uint64_t epoch, uint64_t first_lsn)
{
    pthread_mutex_lock(&h->lock);
    if (!h->stored && (h->n == 0 || epoch > h->e[h->n - 1].epoch))
        push(h, epoch, seq, first_lsn); /* a full or failed list stays as it was: checks stay looser */
    pthread_mutex_unlock(&h->lock);
}

/* Writes list[0..n), the highest epoch seen (raised to list's last) and,
 * when began != 0, STORE_BEGAN_KEY, in one transaction committed with
 * sync.  Under h->write_lock, not h->lock. */
static int write_history(store *s, const struct epoch_start *list, uint32_t n, uint64_t began)
{
    DB_ENV *env = store_env(s);
    DB *meta = store_meta(s);
    uint8_t *bytes = malloc(n ? (size_t)n * HISTORY_ELEMENT_SIZE : 1);
    uint64_t seen = 0, top = n ? list[n - 1].epoch : 0;
    int rc = bytes ? 0 : ENOMEM;

    if (bytes)
        history_encode(list, n, bytes);
    for (int attempt = 0; rc == 0; attempt++) {
        DB_TXN *txn = NULL;
        DBT hk = {.data = STORE_HISTORY_KEY, .size = (u_int32_t)strlen(STORE_HISTORY_KEY)};
        DBT hv = {.data = bytes, .size = n * HISTORY_ELEMENT_SIZE};
        DBT ek = {.data = STORE_EPOCH_KEY, .size = (u_int32_t)strlen(STORE_EPOCH_KEY)};
        DBT ev = {.data = &seen, .ulen = sizeof seen, .size = sizeof seen, .flags = DB_DBT_USERMEM};
        DBT bk = {.data = STORE_BEGAN_KEY, .size = (u_int32_t)strlen(STORE_BEGAN_KEY)};
        DBT bv = {.data = &began, .size = sizeof began};

        rc = env->txn_begin(env, NULL, &txn, 0);
        if (rc)
            break;
        seen = 0;
        rc = meta->get(meta, txn, &ek, &ev, DB_RMW);
        if (rc == DB_NOTFOUND || (rc == 0 && ev.size != sizeof seen))
            seen = 0, rc = 0;
        if (seen < top)
            seen = top;
        ev.size = sizeof seen;
        if (!rc)
            rc = meta->put(meta, txn, &hk, &hv, 0);
        if (!rc)
            rc = meta->put(meta, txn, &ek, &ev, 0);
        if (!rc && began)
            rc = meta->put(meta, txn, &bk, &bv, 0);
        if (!rc) {
            rc = txn->commit(txn, DB_TXN_SYNC); /* durable before anything is written in it */
        } else {
            txn->abort(txn);
        }
        if ((rc != DB_LOCK_DEADLOCK && rc != DB_LOCK_NOTGRANTED) || attempt + 1 >= MAX_DEADLOCK_RETRIES)
            break;
    }
    free(bytes);
    return rc ? rc : sys_io_failed();
}

int store_history(store *s, struct epoch_start **h, uint32_t *n)
{
    struct history *hs = store_history_state(s);
    int rc = 0;

    *h = NULL;
    *n = 0;
    pthread_mutex_lock(&hs->lock);
    if (hs->n) {
        *h = malloc(hs->n * sizeof **h);
        if (*h) {
            memcpy(*h, hs->e, hs->n * sizeof **h);
            *n = hs->n;
        } else {
            rc = ENOMEM;
        }
    }
    pthread_mutex_unlock(&hs->lock);
    return rc;
}

uint32_t store_history_length(store *s)
{
    struct history *hs = store_history_state(s);
    uint32_t n;

    pthread_mutex_lock(&hs->lock);
    n = hs->n;
    pthread_mutex_unlock(&hs->lock);
    return n;
}

uint64_t store_epoch_of(store *s, uint64_t seq)
{
    struct history *hs = store_history_state(s);
    uint64_t epoch;

    pthread_mutex_lock(&hs->lock);
    epoch = history_epoch_of(hs->e, hs->n, seq);
    pthread_mutex_unlock(&hs->lock);
    return epoch;
}

uint64_t store_epoch_began(store *s)
{
    struct history *hs = store_history_state(s);
    uint64_t began;

    pthread_mutex_lock(&hs->lock);
    began = hs->began;
    pthread_mutex_unlock(&hs->lock);
    return began;
}

/* Appends (epoch, first_seq, first_lsn) and writes it all (write_history).
 * Under hs->write_lock; takes hs->lock only to copy and to install. */
static int begin_locked(store *s, struct history *hs, uint64_t epoch, uint64_t first_seq, uint64_t first_lsn)
{
    struct epoch_start *list = NULL;
    uint32_t n;
    int rc = 0;

    pthread_mutex_lock(&hs->lock);
    n = hs->n;
    if (first_seq == 0 || n == HISTORY_MAX || (n && epoch <= hs->e[n - 1].epoch))
        rc = RK_EINVAL; /* H1 */
    else if (n && (first_seq < hs->e[n - 1].first_seq || first_lsn < hs->e[n - 1].first_lsn))
        rc = RK_EINVAL; /* H2 */
    else if (!(list = malloc((n + 1) * sizeof *list)))
        rc = ENOMEM;
    if (!rc && n)
        memcpy(list, hs->e, n * sizeof *list);
    pthread_mutex_unlock(&hs->lock);
    if (rc)
        return rc;
    list[n] = (struct epoch_start){epoch, first_seq, first_lsn};
    rc = write_history(s, list, n + 1, epoch);
    if (rc) {
        free(list);
        return rc;
    }
    pthread_mutex_lock(&hs->lock);
    free(hs->e);
    hs->e = list;
    hs->n = n + 1;
    hs->stored = 1;
    hs->began = epoch;
    pthread_mutex_unlock(&hs->lock);
    return 0;
}

uint64_t store_epoch_seen(store *s)
{
    struct history *hs = store_history_state(s);
    uint64_t seen = 0;

    if (meta_get_u64(s, STORE_EPOCH_KEY, &seen) != 0) /* not under hs->lock (see struct history) */
        seen = 0;
    pthread_mutex_lock(&hs->lock);
    if (hs->n && hs->e[hs->n - 1].epoch > seen)
        seen = hs->e[hs->n - 1].epoch;
    pthread_mutex_unlock(&hs->lock);
    return seen;
}

int store_epoch_begin(store *s, uint64_t epoch_min, uint64_t first_seq, uint64_t first_lsn, uint64_t *epoch)
{
    struct history *hs = store_history_state(s);
    uint64_t seen = 0, next;
    int rc = store_failed(s);

    if (rc)
        return rc; /* nothing is begun after a failed write (J3) */
    pthread_mutex_lock(&hs->write_lock);
    rc = meta_get_u64(s, STORE_EPOCH_KEY, &seen);
    /* higher than every epoch known: the history's and any seen */
    pthread_mutex_lock(&hs->lock);
    next = hs->n ? hs->e[hs->n - 1].epoch + 1 : 1;
    pthread_mutex_unlock(&hs->lock);
    if (next <= seen)
        next = seen + 1;
    if (next < epoch_min)
        next = epoch_min;
    if (!rc)
        rc = begin_locked(s, hs, next, first_seq, first_lsn);
    if (!rc)
        *epoch = next;
    pthread_mutex_unlock(&hs->write_lock);
    return rc;
}

int store_epoch_resume(store *s, uint64_t next_seq, uint64_t next_lsn, uint64_t *epoch)
{
    struct history *hs = store_history_state(s);
    uint64_t seen = 0, newest, began;
    int rc = store_failed(s);

    if (rc)
        return rc;
    pthread_mutex_lock(&hs->write_lock);
    pthread_mutex_lock(&hs->lock);
    newest = hs->n ? hs->e[hs->n - 1].epoch : 0;
    began = hs->began;
    pthread_mutex_unlock(&hs->lock);
    rc = meta_get_u64(s, STORE_EPOCH_KEY, &seen);
    if (!rc && newest && began == newest && seen <= newest) {
        *epoch = newest; /* this directory wrote the newest epoch: a restart goes on in it */
    } else if (!rc && !newest) {
        /* no history yet (a new directory, or one whose journal is
         * empty): it begins at the epoch it was given, 1 when none */
        *epoch = seen ? seen : 1;
        rc = begin_locked(s, hs, *epoch, next_seq, next_lsn);
    } else if (!rc) {
        *epoch = (seen > newest ? seen : newest) + 1;
        rc = begin_locked(s, hs, *epoch, next_seq, next_lsn);
    }
    pthread_mutex_unlock(&hs->write_lock);
    return rc;
}

int store_history_adopt(store *s, const struct epoch_start *list, uint32_t n, char *why, size_t why_size)
{
    struct history *hs = store_history_state(s);
    struct journal_header last = {0};
    struct epoch_start *copy = NULL;
    int rc = history_check(list, n, why, why_size);

    if (!rc)
        rc = store_failed(s);
    if (!rc) {
        rc = store_journal_last(s, &last);
        if (rc == RK_ENOTFOUND)
            rc = 0;
    }
    if (rc)
        return rc;
    if (n && !(copy = malloc(n * sizeof *copy)))
        return ENOMEM;
    if (n)
        memcpy(copy, list, n * sizeof *copy);
    pthread_mutex_lock(&hs->write_lock);
    pthread_mutex_lock(&hs->lock);
    /* J4 stays true for every entry held: the new history gives each the
     * epoch the old one did */
    if (hs->n && last.seq && history_fork(hs->e, hs->n, last.seq, list, n, last.seq) != last.seq)
        rc = seg_fail(why, why_size, RK_EINVAL,
                      "the history adopted gives other epochs to entries this journal holds (up to %" PRIu64
                      ")",
                      last.seq);
    pthread_mutex_unlock(&hs->lock);
    if (!rc)
        rc = write_history(s, list, n, 0); /* not under hs->lock (see struct history) */
    if (!rc) {
        pthread_mutex_lock(&hs->lock);
        free(hs->e);
        hs->e = copy;
        copy = NULL;
        hs->n = n;
        hs->stored = 1;
        pthread_mutex_unlock(&hs->lock);
    }
    pthread_mutex_unlock(&hs->write_lock);
    free(copy);
    return rc;
}
