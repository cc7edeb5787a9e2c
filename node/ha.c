/* ha.c -- automatic failover: etcd decides who leads ([ha] in the
 * configuration; without it none of this runs).
 *
 * Keys, under /ringkeep/<cluster>/ (docs/HA.md):
 *   leader          {"name", "epoch"}, attached to the leader's lease: a
 *                   node acknowledges as primary only while it holds it
 *   epoch           the last epoch etcd handed out (decimal): every
 *                   election's transaction moves it, so epochs are ordered
 *                   by etcd
 *   members/<name>  {"name", "role", "epoch", "seq", "last_epoch", "lag",
 *                   "eligible", "preferred", "pid", "node_id", "seq_known",
 *                   "absent_rev"}, attached to that node's lease; last_epoch
 *                   is the epoch its entry seq was written in (its epoch
 *                   history), "epoch" only the highest it has seen
 *   sync            {"leader", "epoch", "voters", "quorum", "min_replicas"}
 *                   (min_replicas > 0; no lease): who may hold entries
 *                   acknowledged RK_REPLICATED, as Patroni's /sync key in
 *                   its quorum mode.  voters (node_ids) are the leader and
 *                   the standbys whose acks it counts; every acknowledged
 *                   entry is durable on at least voters - quorum + 1 of
 *                   them, so any quorum of them holds it.
 *
 * Sync rules (numbered, cited where relied on):
 *   Q1  a primary counts a standby's acks only once that standby is in
 *       the sync key (repl_primary_sync_published after the put); a
 *       standby it no longer knows stops counting before the smaller set
 *       is put (repl_primary_sync_plan);
 *   Q2  quorum = voters - copies + 1, copies = the leader (1) plus the
 *       standbys holding every entry acknowledged so far (at most
 *       min_replicas: what each later acknowledgement adds);
 *   Q2a a standby becomes a voter only once it holds every entry the
 *       leader held when it started (its promotion point: everything
 *       acknowledged before it too), or while it already counts (S3 in
 *       replicator/primary.c).  One still catching up to it waits
 *       outside the key: listed, it would be no copy, and with no other
 *       standby listed the quorum would be all the voters -- a leader
 *       killed then would leave an election that needs its own report,
 *       for entries it never acknowledged RK_REPLICATED.  Until a standby
 *       is in, the key keeps its floor (Q5).  A key whose standbys are
 *       all behind the newest acknowledged entry now comes only from the
 *       loss of those that acknowledged it: that report is needed;
 *   Q3  a standby runs for the leader key only with reports (member
 *       records) from at least quorum voters, and only if its journal is
 *       at least as up to date as each of theirs: (last_epoch, seq)
 *       compared in that order, Raft's up-to-date rule.  One of them
 *       holds every acknowledged entry, and a journal whose last entry is
 *       of a later epoch, or of the same epoch and no shorter, holds all
 *       that one holds (an epoch has one writer, and a leader was elected
 *       holding everything acknowledged before it: by induction); a seq
 *       alone says nothing of which history it counts (a fenced leader's
 *       entries never replicated count as many as acknowledged ones of a
 *       later epoch).  Nobody leads otherwise, until enough voters come
 *       back;
 *   Q3a a report is a member record whose seq the member read after a
 *       read of the cluster at revision absent_rev found the leader key
 *       gone, absent_rev later than the sync key's mod revision: the
 *       leader that put that sync key had lost its key by then, and it
 *       acknowledged nothing after (it fences before its lease ends), so
 *       seq covers all the member acknowledged to it.  A record put while
 *       the leader key was there may be a tick old: a member killed with
 *       the leader leaves it until its own lease ends (up to a sweep of
 *       etcd's lessor after the leader key), and it may miss entries the
 *       member acknowledged after it, which the leader acknowledged too;
 *   Q4  the election's transaction puts the winner's own sync key
 *       (voters: itself, quorum 1: it holds everything), compared with
 *       the one the candidate read, and a leader puts its key only while
 *       it holds the leader key (compared on its create revision).
 *   Q5  a sync key written when the leader key was taken (Q4, or a primary
 *       taking it at start) holds the floor: floor_seq, what that node
 *       held, and floor_epoch, the epoch its entry floor_seq was written
 *       in.  Until that leader puts a set with a standby in it, it has
 *       acknowledged nothing RK_REPLICATED (min_replicas > 0 and no
 *       standby counted, Q1), so every acknowledged entry is at or below
 *       floor_seq, on that node's history: a standby whose own
 *       epoch history gives floor_epoch for floor_seq holds that same
 *       entry and every one before it, and may run without the leader's
 *       report (a leader killed before any standby followed it does not
 *       stall the cluster).  The epoch a standby has merely seen says
 *       nothing of its entries: it adopts a new primary's epoch before
 *       their fork point is found.
 *   `ringkeep promote --force` (or `node --promote --force`) breaks Q3 on
 *   purpose (the operator's override, docs/HA.md): that node takes the key
 *   and puts its own sync.  Not the epochs' order: it begins an epoch etcd
 *   handed it (ha_reserve_epoch), and takes the key in that one only.
 *
 * One thread (rk-ha) per process, for the life of the process: a node
 * changes role (standby -> primary on a won election, primary -> standby
 * when it steps down) and the role attaches itself (ha_attach_*) and
 * detaches (ha_detach) around its run.  Every tick (ttl / 6):
 *
 *   keepalive (or grant)  ---> lease renewed at t0: the primary's ring may
 *                              acknowledge until t0 + 2/3 ttl
 *                              (ring_set_ack_deadline; etcd keeps the
 *                              lease until at least t0 + ttl)
 *   range /ringkeep/<cluster>/
 *   put members/<name>
 *   primary:  not leading -> take the leader key if it is free, in an
 *             epoch etcd handed no one else (above its counter, or the
 *             one reserved for this node), else step down;
 *             leading -> the key must still be ours, and the lease
 *             renewed before the deadline, else step down (self-fence)
 *             leading, min_replicas > 0 -> the standbys it knows now
 *             that count already or hold its promotion point are put in
 *             the sync key (Q1, Q2, Q2a) when they changed
 *   standby:  leader key gone -> eligible (lag <= max_lag_entries), enough
 *             voters report and none is more up to date (Q3), and no live
 *             member ahead of it -> create-if-absent transaction with the next
 *             epoch and its own sync key (Q4); won -> n->promote, and the
 *             standby's loop hands over to the primary's role
 *
 *          grant/keepalive ok            ha_acquire / ha_elect won
 *   NO LEASE -----------------> FOLLOWING ----------------------> LEADING
 *      ^                          ^   ^                              |
 *      | lease expired            |   +--- stepped down: lease ------+
 *      +--------------------------+        revoked (stale_lease), new one
 *
 * A second thread (rk-ha-watch) watches the leader key (/v3/watch) and
 * kicks rk-ha into a tick at once when it changes: a standby runs for the
 * key as soon as etcd deletes it, not up to a tick later.  It only
 * hastens: without it (etcd down, the stream ended) the ticks decide the
 * same.
 *
 * The deadline is checked where acknowledgements happen (the ring's
 * cursor moves, shm/consumer.c), not only here: a process paused past it
 * (SIGSTOP, a hung VM) acknowledges nothing when it wakes, before this
 * thread has run again.  Clock: CLOCK_BOOTTIME (ring_boottime_ns).
 *
 * Threads: the rk-ha thread owns the etcd client and its state; the role's
 * attachment (role, n) is under `lock`, and the thread calls into the
 * role (step down, promote, the ring's deadline) only under it, so a role
 * that detached is never touched.  The standby's progress is under
 * `progress_lock` (taken after `lock`, held only to copy it): the
 * standby's main thread puts it there before each ACK.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/etcd.h"
#include "node/ha.h"
#include "node/internal.h"
#include "persist/history.h"
#include "persist/log.h"
#include "persist/store.h"
#include "replicator/replicator.h"
#include "shm/ring.h"

#define HA_KEY_MAX (RK_NAME_MAX * 2 + 64)
#define HURRY_MS 20 /* a candidate lacking reports reads again after this (standby_tick) */

enum ha_role { HA_NONE, HA_PRIMARY, HA_STANDBY };

struct ha {
    const struct node_config *c;
    etcd *e;
    etcd *we; /* the watch's client (rk-ha-watch) */
    pthread_t thread, watch_thread;
    int have_watch;
    _Atomic int stop;
    uint32_t tick_ms;
    char key_prefix[RK_NAME_MAX + 16]; /* /ringkeep/<cluster>/ */
    char key_leader[HA_KEY_MAX], key_epoch[HA_KEY_MAX], key_me[HA_KEY_MAX], key_sync[HA_KEY_MAX];
    const char *name;

    pthread_mutex_t lock;
    pthread_cond_t cond;        /* a tick ends early: stop, or kicked */
    int kicked;                 /* under lock: the leader key changed, tick now */
    enum ha_role role;          /* under lock: who is attached */
    struct node *n;             /* under lock: the attached role's node */
    /* A standby's progress, under progress_lock: a leaf lock, held only to
     * copy these, so that the standby's ACK, which waits for its progress
     * to be here (ha_standby_progress), never waits for a tick's etcd
     * requests (made under lock; lock is taken before progress_lock) */
    pthread_mutex_t progress_lock;
    uint64_t sb_seq;             /* its last entry held durably */
    uint64_t sb_last_epoch;      /* the epoch entry sb_seq was written in (0: no entry) */
    struct epoch_start *sb_hist; /* its epoch history as of sb_seq (malloc'd; Q5) */
    uint32_t sb_n_hist;
    uint64_t sb_epoch;          /* the epoch it follows */
    int sb_ready;               /* not bootstrapping (it could be promoted) */
    int sb_known;               /* sb_seq is this standby's (ha_standby_progress since attach) */
    _Atomic uint64_t won_epoch; /* the epoch of the election this node won (0: none) */
    /* the epoch of an election won whose promotion has not begun (0: none):
     * with won_epoch gone (the lease lost first), the promotion is not
     * taken for one by hand (ha_reserve_epoch) */
    _Atomic uint64_t elected_epoch;
    /* the epoch etcd handed this node's promotion by hand (ha_reserve_epoch; 0: none) */
    _Atomic uint64_t reserved_epoch;

    /* the rk-ha thread's own */
    int64_t lease, stale_lease; /* our lease (0: none); a lease to revoke once etcd answers */
    uint64_t ttl_ns;            /* the lease's TTL as granted */
    uint64_t ack_deadline;      /* boottime: acknowledgements allowed before it */
    int leading;                /* we hold the leader key ... */
    int64_t leader_rev;         /* ... created at this revision */
    uint64_t leader_seq_seen;   /* the leader's seq in its last member record ... */
    uint64_t leader_last_epoch_seen; /* ... and the epoch of that entry */
    uint64_t absent_since;      /* boottime the leader key was first seen gone (0: present) */
    uint64_t gone_since;        /* boottime a standby first read the leader key gone (0: present) */
    int hurry;                  /* under lock: the next tick after HURRY_MS, not tick_ms */
    int seen_leader;            /* a leader key was seen since this process started */
    int last_unreachable;       /* etcd did not answer the last tick (logged once) */
    char last_wait[192];        /* why a candidate waits (logged when it changes) */
    char last_waiting[256];     /* the ids of the standbys left out of the count (Q2a), as last logged */
};

/* The leader key's value, and a member's. */
struct leader_view {
    int present;
    char name[RK_NAME_MAX + 1];
    uint64_t epoch;
    int64_t create_rev, mod_rev;
};

struct member_view {
    char name[RK_NAME_MAX + 1];
    char node_id[RK_NAME_MAX + 1]; /* its [replication] node_id: the sync key's voters are these */
    char role[16];
    uint64_t seq, epoch;
    uint64_t last_epoch; /* the epoch its entry seq was written in */
    int seq_known;       /* seq and last_epoch are what it holds durably (not a starting node's 0) */
    int64_t absent_rev; /* Q3a: it read seq after seeing the leader key gone at this revision (0: not) */
    int eligible;
    int preferred; /* configured as the primary: first among equals */
};

#define HA_MAX_MEMBERS 64
#define HA_MAX_VOTERS (WIRE_MAX_STANDBYS + 1) /* the leader and the standbys it counts */

/* The sync key's value. */
struct sync_view {
    int present;
    char leader[RK_NAME_MAX + 1];
    uint64_t epoch;
    uint32_t quorum;
    int has_floor; /* Q5: written when the key was taken, no standby counted since */
    uint64_t floor_seq, floor_epoch;
    char voters[HA_MAX_VOTERS][RK_NAME_MAX + 1];
    uint32_t n_voters;
    char *text;      /* the value as etcd holds it (malloc'd; NULL: absent) */
    int64_t mod_rev; /* 0: absent */
};

struct cluster_view {
    int64_t rev; /* etcd's revision when it was read */
    struct leader_view leader;
    struct sync_view sync;
    uint64_t counter;    /* the epoch key's value (0: absent) */
    int64_t counter_rev; /* its mod revision (0: absent) */
    struct member_view members[HA_MAX_MEMBERS];
    size_t n_members;
};

/* ------------------------------------------------------------ view */

static uint64_t json_u64(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* Reads the cluster's keys (one range).  0 or the client's error. */
static int read_cluster(struct ha *h, struct cluster_view *v)
{
    struct etcd_kv *kvs = NULL;
    size_t n_kvs = 0, plen = strlen(h->key_prefix);
    int64_t rev = 0;
    int rc = etcd_range(h->e, h->key_prefix, 1, &kvs, &n_kvs, &rev);

    memset(v, 0, sizeof *v);
    if (rc)
        return rc;
    v->rev = rev;
    for (size_t i = 0; i < n_kvs; i++) {
        json_t *val = json_loads(kvs[i].value, 0, NULL);
        if (strcmp(kvs[i].key, h->key_leader) == 0 && json_is_object(val)) {
            v->leader.present = 1;
            snprintf(v->leader.name, sizeof v->leader.name, "%s",
                     json_string_value(json_object_get(val, "name")) ?: "");
            v->leader.epoch = json_u64(val, "epoch");
            v->leader.create_rev = kvs[i].create_revision;
            v->leader.mod_rev = kvs[i].mod_revision;
        } else if (strcmp(kvs[i].key, h->key_sync) == 0) {
            struct sync_view *sy = &v->sync;
            json_t *voters = json_object_get(val, "voters"), *voter;
            size_t j;
            sy->present = 1; /* whatever it holds: a value not understood lets no one run (Q3) */
            snprintf(sy->leader, sizeof sy->leader, "%s",
                     json_string_value(json_object_get(val, "leader")) ?: "");
            sy->epoch = json_u64(val, "epoch");
            sy->quorum = (uint32_t)json_u64(val, "quorum");
            sy->has_floor = json_is_integer(json_object_get(val, "floor_seq")) &&
                            json_is_integer(json_object_get(val, "floor_epoch"));
            sy->floor_seq = json_u64(val, "floor_seq");
            sy->floor_epoch = json_u64(val, "floor_epoch");
            json_array_foreach(voters, j, voter)
            {
                if (json_is_string(voter) && sy->n_voters < HA_MAX_VOTERS)
                    snprintf(sy->voters[sy->n_voters++], sizeof sy->voters[0], "%s",
                             json_string_value(voter));
            }
            sy->text = strdup(kvs[i].value);
            sy->mod_rev = kvs[i].mod_revision;
            if (sy->quorum == 0 || !sy->text)
                sy->quorum = UINT32_MAX; /* unreadable: no election can meet it (an operator's --force can) */
        } else if (strcmp(kvs[i].key, h->key_epoch) == 0) {
            v->counter = strtoull(kvs[i].value, NULL, 10);
            v->counter_rev = kvs[i].mod_revision;
        } else if (strncmp(kvs[i].key + plen, "members/", 8) == 0 && json_is_object(val) &&
                   v->n_members < HA_MAX_MEMBERS) {
            struct member_view *m = &v->members[v->n_members++];
            snprintf(m->name, sizeof m->name, "%s", json_string_value(json_object_get(val, "name")) ?: "");
            snprintf(m->role, sizeof m->role, "%s", json_string_value(json_object_get(val, "role")) ?: "");
            snprintf(m->node_id, sizeof m->node_id, "%s",
                     json_string_value(json_object_get(val, "node_id")) ?: "");
            m->seq = json_u64(val, "seq");
            /* a record without last_epoch says nothing of which history
             * seq counts: no report (Q3) */
            m->seq_known = json_is_true(json_object_get(val, "seq_known")) &&
                           json_is_integer(json_object_get(val, "last_epoch"));
            m->last_epoch = json_u64(val, "last_epoch");
            m->absent_rev = (int64_t)json_u64(val, "absent_rev");
            m->epoch = json_u64(val, "epoch");
            m->eligible = json_is_true(json_object_get(val, "eligible"));
            m->preferred = json_is_true(json_object_get(val, "preferred"));
        }
        json_decref(val);
    }
    etcd_kvs_free(kvs, n_kvs);
    return 0;
}

static void cluster_view_free(struct cluster_view *v)
{
    if (v)
        free(v->sync.text);
    free(v);
}

/* ------------------------------------------------------------ lease */

/* Renews (or grants) our lease; t0 is taken before the request leaves, so
 * etcd holds the lease until at least t0 + ttl.  0, or the client's
 * error (ENOENT: the lease expired, and a new one is granted next tick). */
static int renew_lease(struct ha *h)
{
    uint64_t t0 = ring_boottime_ns();
    int64_t ttl_s = 0;
    int rc;

    if (!h->lease) {
        rc = etcd_lease_grant(h->e, ((int64_t)h->c->ha_ttl_ms + 999) / 1000, &h->lease, &ttl_s);
        if (rc)
            return rc;
        h->ttl_ns = (uint64_t)ttl_s * 1000000000u;
        log_msg(LOG_INFO, "etcd lease granted", "lease=%" PRIx64 " ttl_s=%" PRId64, (uint64_t)h->lease,
                ttl_s);
    } else {
        rc = etcd_lease_keepalive(h->e, h->lease, &ttl_s);
        if (rc == ENOENT) {
            log_msg(LOG_WARN, "etcd lease expired", "lease=%" PRIx64, (uint64_t)h->lease);
            h->lease = 0;
        }
        if (rc)
            return rc;
    }
    /* 2/3 of the TTL: a third of it is left for the clocks and the
     * renewal's own time before anyone else can take the leader key */
    h->ack_deadline = t0 + (uint64_t)ttl_s * 1000000000u * 2 / 3;
    return 0;
}

/* A lease we no longer use (we stepped down while holding the leader key
 * with it): revoked as soon as etcd answers, which deletes the leader key
 * and our old member record, so that an election can run. */
static void revoke_stale(struct ha *h)
{
    int rc;

    if (!h->stale_lease)
        return;
    rc = etcd_lease_revoke(h->e, h->stale_lease);
    if (rc == 0 || rc == ENOENT) {
        log_msg(LOG_INFO, "etcd lease of the stepped-down leader revoked", "lease=%" PRIx64,
                (uint64_t)h->stale_lease);
        h->stale_lease = 0;
    }
}

/* We stop leading: the lease that holds the leader key is put aside, to
 * be revoked (revoke_stale), and a new one is granted for what follows. */
static void stop_leading(struct ha *h)
{
    if (!h->leading)
        return;
    h->leading = 0;
    atomic_store(&h->won_epoch, 0);
    if (h->lease)
        h->stale_lease = h->lease;
    h->lease = 0;
}

/* ------------------------------------------------------------ members */

/* Our member record, with our lease. */
/* seq_known: seq is what this node holds durably, last_epoch the epoch
 * its entry seq was written in (Q3); a node starting or between roles
 * publishes 0 without it.  absent_rev: seq was read after a read of the
 * cluster, at that revision, found the leader key gone (0: not): only
 * such a record is a report an election may count (Q3a). */
static void publish_member(struct ha *h, const char *role, uint64_t epoch, uint64_t seq, uint64_t last_epoch,
                           int seq_known, int64_t absent_rev, uint64_t lag, int eligible)
{
    json_t *val = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:b, s:i, s:s, s:b, s:I}", "name", h->name,
                            "role", role, "epoch", (json_int_t)epoch, "seq", (json_int_t)seq, "last_epoch",
                            (json_int_t)last_epoch, "lag", (json_int_t)lag, "eligible", eligible, "preferred",
                            strcmp(h->c->role, "primary") == 0, "pid", (int)getpid(), "node_id",
                            h->c->repl_node_id, "seq_known", seq_known, "absent_rev", (json_int_t)absent_rev);
    char *text = val ? json_dumps(val, JSON_COMPACT) : NULL;

    if (text && h->lease && etcd_put(h->e, h->key_me, text, h->lease) != 0)
        log_msg(LOG_DEBUG, "cannot publish the member record", "error=\"%s\"", etcd_error(h->e));
    free(text);
    json_decref(val);
}

/* The leader key's value for epoch. */
static char *leader_value(struct ha *h, uint64_t epoch)
{
    json_t *val = json_pack("{s:s, s:I}", "name", h->name, "epoch", (json_int_t)epoch);
    char *text = val ? json_dumps(val, JSON_COMPACT) : NULL;

    json_decref(val);
    return text;
}

/* The sync key's value for a leader of epoch counting plan's standbys
 * (NULL: none yet, the leader key just taken): voters this node and them,
 * quorum by Q2.  With no plan it also carries the floor (Q5): floor_seq,
 * what this node held when it took the key, and floor_epoch, the epoch
 * its entry floor_seq was written in.  malloc'd text, NULL when out of
 * memory. */
static char *sync_value(struct ha *h, uint64_t epoch, const struct repl_sync_plan *plan, uint64_t floor_seq,
                        uint64_t floor_epoch)
{
    json_t *voters = json_array(), *val = NULL;
    uint32_t n_standbys = plan ? plan->n_standbys : 0, copies = plan ? plan->copies : 0;
    char *text = NULL;

    if (voters && json_array_append_new(voters, json_string(h->c->repl_node_id)) == 0)
        for (uint32_t i = 0; i < n_standbys; i++)
            json_array_append_new(voters, json_string(plan->standbys[i]));
    if (voters && json_array_size(voters) == 1u + n_standbys)
        val = json_pack("{s:s, s:I, s:O, s:I, s:I}", "leader", h->c->repl_node_id, "epoch", (json_int_t)epoch,
                        "voters", voters, "quorum", (json_int_t)(1 + n_standbys - copies), "min_replicas",
                        (json_int_t)h->c->repl_min_replicas);
    if (val && !plan &&
        (json_object_set_new(val, "floor_seq", json_integer((json_int_t)floor_seq)) != 0 ||
         json_object_set_new(val, "floor_epoch", json_integer((json_int_t)floor_epoch)) != 0)) {
        json_decref(val);
        val = NULL;
    }
    text = val ? json_dumps(val, JSON_COMPACT) : NULL;
    json_decref(val);
    json_decref(voters);
    return text;
}

/* Takes the leader key if it is free and the epoch and sync keys still
 * hold what v read: leader {name, epoch}, epoch key = counter and (with
 * min_replicas > 0) this node's own sync key (Q4; with min_replicas 0 one
 * left by another configuration is deleted), in one transaction; seq,
 * this node's last entry, and last_epoch, the epoch it was written in,
 * are the sync key's floor (Q5).  1 won, 0 lost (someone else moved
 * first), -1 etcd did not answer. */
static int take_leader_key(struct ha *h, const struct cluster_view *v, uint64_t epoch, uint64_t counter,
                           uint64_t seq, uint64_t last_epoch)
{
    char *value = leader_value(h, epoch), counter_text[24];
    char *sync = h->c->repl_min_replicas ? sync_value(h, epoch, NULL, seq, last_epoch) : NULL;
    struct etcd_compare cmp[3] = {
        {.key = h->key_leader, .target = ETCD_CREATE_REVISION, .revision = 0},
        {.key = h->key_epoch, .target = ETCD_MOD_REVISION, .revision = v->counter_rev},
        {.key = h->key_sync, .target = ETCD_MOD_REVISION, .revision = v->sync.mod_rev}};
    struct etcd_op ops[3] = {{.key = h->key_leader, .value = value, .lease = h->lease},
                             {.key = h->key_epoch, .value = counter_text},
                             {.key = h->key_sync, .value = sync}};
    size_t n_ops = sync || v->sync.present ? 3 : 2; /* NULL value: delete */
    int won = 0, rc;
    int64_t rev = 0;

    if (!value || (h->c->repl_min_replicas && !sync)) {
        free(value);
        free(sync);
        return -1;
    }
    snprintf(counter_text, sizeof counter_text, "%" PRIu64, counter);
    rc = etcd_txn(h->e, cmp, 3, ops, n_ops, &won, &rev);
    free(value);
    free(sync);
    if (rc) {
        log_msg(LOG_WARN, "etcd: the leader key's transaction failed", "error=\"%s\"", etcd_error(h->e));
        return -1;
    }
    if (won) {
        h->leading = 1;
        h->leader_rev = rev;
    }
    return won;
}

/* ------------------------------------------------------------ primary */

/* Under lock, a primary attached.  Steps it down (the ring fenced first,
 * then recorded; run_primary returns and the node rejoins as a standby). */
static void primary_fence(struct ha *h, uint64_t epoch, const char *why)
{
    struct node *n = h->n;

    primary_step_down(n, epoch > n->epoch ? epoch : n->epoch, why);
    stop_leading(h);
}

/* Logs the standbys plan leaves out of the count until they catch up
 * (Q2a), with what each holds, when the set of them changes. */
static void say_waiting(struct ha *h, const struct repl_sync_plan *plan)
{
    char ids[sizeof h->last_waiting] = "", held[sizeof h->last_waiting] = "";
    size_t ids_off = 0, held_off = 0;

    for (uint32_t i = 0; i < plan->n_waiting; i++) {
        int len;
        if (ids_off < sizeof ids &&
            (len = snprintf(ids + ids_off, sizeof ids - ids_off, "%s%s", i ? "," : "", plan->waiting[i])) > 0)
            ids_off += (size_t)len;
        if (held_off < sizeof held &&
            (len = snprintf(held + held_off, sizeof held - held_off, "%s%s:%" PRIu64, i ? "," : "",
                            plan->waiting[i], plan->waiting_seq[i])) > 0)
            held_off += (size_t)len;
    }
    if (strcmp(ids, h->last_waiting) == 0)
        return;
    snprintf(h->last_waiting, sizeof h->last_waiting, "%s", ids);
    if (ids[0])
        log_msg(LOG_INFO, "etcd: standbys not counted until they hold this primary's promotion point",
                "waiting=\"%s\" promotion_seq=%" PRIu64, held, plan->promotion_seq);
}

/* Under lock, a leading primary (min_replicas > 0): the standbys it
 * knows now go into the sync key, under the leader key we hold (Q4), and
 * count from then on (Q1).  Nothing is put while the key already says it. */
static void publish_sync(struct ha *h, const struct cluster_view *v)
{
    struct node *n = h->n;
    struct repl_sync_plan *plan = malloc(sizeof *plan);
    char *text = NULL;

    if (!plan || !n->repl || !repl_primary_sync_plan(n->repl, plan))
        goto out;
    text = sync_value(h, n->epoch, plan, 0, 0);
    if (!text)
        goto out;
    say_waiting(h, plan);
    /* no standby to count (none known, or each still catching up: Q2a),
     * and the key still is the one written with our leader key (Q5): it
     * stays, floor and all -- without the floor, a leader killed before
     * any standby caught up would leave a key only its own report can
     * meet, and nobody would lead */
    int keep = plan->n_standbys == 0 && v->sync.has_floor && v->sync.epoch == n->epoch &&
               strcmp(v->sync.leader, h->c->repl_node_id) == 0;
    if (!keep && (!v->sync.text || strcmp(v->sync.text, text) != 0)) {
        struct etcd_compare cmp = {.key = h->key_leader, .target = ETCD_CREATE_REVISION, .revision = h->leader_rev};
        struct etcd_op op = {.key = h->key_sync, .value = text};
        int ok = 0;
        if (etcd_txn(h->e, &cmp, 1, &op, 1, &ok, NULL) != 0 || !ok) {
            /* not put: the set etcd holds still covers the standbys that
             * count (a removal took effect in the plan already) */
            log_msg(LOG_WARN, "etcd: the sync key was not put", "ok=%d error=\"%s\"", ok, etcd_error(h->e));
            goto out;
        }
        log_msg(LOG_INFO, "etcd: sync key put: these standbys count", "sync=%s", text);
    }
    repl_primary_sync_published(n->repl, plan);
out:
    free(text);
    free(plan);
}

static void primary_tick(struct ha *h, const struct cluster_view *v)
{
    struct node *n = h->n;
    uint64_t seq, last_epoch;

    pthread_mutex_lock(&n->lock);
    seq = n->journal_seq;
    pthread_mutex_unlock(&n->lock);
    last_epoch = seq ? store_epoch_of(n->s, seq) : 0;
    publish_member(h, "primary", n->epoch, seq, last_epoch, 1, 0, 0, 1);
    if (atomic_load(&n->stepped_down))
        return;
    if (h->leading) {
        if (!v->leader.present || v->leader.create_rev != h->leader_rev) {
            primary_fence(h, v->leader.present ? v->leader.epoch : v->counter,
                          v->leader.present ? "etcd: another node holds the leader key"
                                            : "etcd: the leader key is gone");
            return;
        }
        if (v->leader.epoch != n->epoch) {
            /* the promotion began a higher epoch than the one won (the
             * data directory had seen it): etcd is told, under the key we
             * hold */
            char *value = leader_value(h, n->epoch), text[24];
            struct etcd_compare cmp = {
                .key = h->key_leader, .target = ETCD_CREATE_REVISION, .revision = h->leader_rev};
            struct etcd_op ops[2] = {{.key = h->key_leader, .value = value, .lease = h->lease},
                                     {.key = h->key_epoch, .value = text}};
            int ok = 0;
            snprintf(text, sizeof text, "%" PRIu64, n->epoch > v->counter ? n->epoch : v->counter);
            if (value)
                etcd_txn(h->e, &cmp, 1, ops, 2, &ok, NULL);
            free(value);
        }
        ring_set_ack_deadline(n->ring, h->ack_deadline);
        publish_sync(h, v);
        return;
    }
    /* not leading yet: a primary started by its configuration (or one
     * promoted by hand) acknowledges nothing until it holds the key, and
     * takes it only in an epoch etcd handed no one else: above the
     * counter, or the one it reserved (ha_reserve_epoch); etcd's counter
     * at our epoch without our reservation is another node's election in
     * it (two leaders in one epoch, their entries alike in the epoch
     * history and different in bytes) */
    int ours = v->leader.present && strcmp(v->leader.name, h->name) == 0 && v->leader.epoch == n->epoch;
    if (v->counter > n->epoch) {
        primary_fence(h, v->counter, "etcd: a node of a higher epoch led after this one");
        return;
    }
    if (v->counter == n->epoch && !ours && atomic_load(&h->reserved_epoch) != n->epoch) {
        primary_fence(h, v->counter,
                      "etcd handed this node's epoch to another node (this one began it without etcd)");
        return;
    }
    if (v->leader.present) {
        if (ours) {
            /* ours, from this node's run before a restart (its lease still
             * alive): taken over with our lease */
            char *value = leader_value(h, n->epoch);
            struct etcd_compare cmp = {
                .key = h->key_leader, .target = ETCD_MOD_REVISION, .revision = v->leader.mod_rev};
            struct etcd_op op = {.key = h->key_leader, .value = value, .lease = h->lease};
            int ok = 0;
            int64_t rev = 0;
            if (value && etcd_txn(h->e, &cmp, 1, &op, 1, &ok, &rev) == 0 && ok) {
                h->leading = 1;
                h->leader_rev = v->leader.create_rev;
                log_msg(LOG_INFO, "etcd: leader key taken over from this node's earlier run",
                        "epoch=%" PRIu64, n->epoch);
            }
            free(value);
        } else if (v->leader.epoch > n->epoch) {
            primary_fence(h, v->leader.epoch, "etcd: a node of a higher epoch holds the leader key");
            return;
        } else {
            snprintf(h->last_wait, sizeof h->last_wait,
                     "waiting for the leader key (held by %s, epoch %" PRIu64 ")", v->leader.name,
                     v->leader.epoch);
            return;
        }
    } else if (take_leader_key(h, v, n->epoch, n->epoch, seq, last_epoch) == 1) {
        log_msg(LOG_INFO, "etcd: leader key taken", "epoch=%" PRIu64, n->epoch);
    }
    if (h->leading) {
        atomic_store(&h->won_epoch, n->epoch);
        ring_set_ack_deadline(n->ring, h->ack_deadline);
    }
}

/* ------------------------------------------------------------ standby */

static void say_wait(struct ha *h, const char *why)
{
    if (strcmp(h->last_wait, why) != 0) {
        snprintf(h->last_wait, sizeof h->last_wait, "%s", why);
        log_msg(LOG_INFO, "etcd: the leader key is free; this standby waits", "why=\"%s\"", why);
    }
}

/* Whether a journal whose last entry is seq_a, written in epoch epoch_a,
 * is more up to date than one whose last is seq_b of epoch_b (Q3): a
 * later epoch first, then more entries (Raft's up-to-date rule). */
static int more_up_to_date(uint64_t epoch_a, uint64_t seq_a, uint64_t epoch_b, uint64_t seq_b)
{
    return epoch_a > epoch_b || (epoch_a == epoch_b && seq_a > seq_b);
}

/* Q5: whether this standby holds the floor of sy: floor_seq entries, the
 * last of them written in floor_epoch by its own history (and then every
 * entry before it as the floor's node holds them).  Under progress_lock. */
static int holds_floor(const struct ha *h, const struct sync_view *sy, uint64_t seq)
{
    if (sy->floor_seq == 0)
        return 1; /* the winner held no entry: nothing was acknowledged */
    return seq >= sy->floor_seq &&
           history_epoch_of(h->sb_hist, h->sb_n_hist, sy->floor_seq) == sy->floor_epoch;
}

/* Q3: whether the sync key lets this standby (holding seq, the last
 * entry written in last_epoch; floor_ok: holds_floor) run: reports from
 * at least quorum voters, none more up to date.  0 with why set. */
static int sync_allows(struct ha *h, const struct cluster_view *v, uint64_t seq, uint64_t last_epoch,
                       int floor_ok, char *why, size_t why_size)
{
    const struct sync_view *sy = &v->sync;
    uint32_t n_reports = 0;
    uint64_t most_seq = 0, most_epoch = 0;
    const char *most_id = "";

    if (!sy->present)
        return 1; /* no primary counted a standby yet: nothing was acknowledged RK_REPLICATED */
    for (uint32_t i = 0; i < sy->n_voters; i++) {
        const char *id = sy->voters[i];
        uint64_t their = 0, their_epoch = 0;
        int heard = 0;
        if (strcmp(id, h->c->repl_node_id) == 0) {
            heard = 1; /* this node: what it holds now */
            their = seq;
            their_epoch = last_epoch;
        } else {
            for (size_t j = 0; j < v->n_members && !heard; j++)
                if (v->members[j].seq_known && v->members[j].absent_rev > sy->mod_rev &&
                    strcmp(v->members[j].node_id, id) == 0) { /* Q3a */
                    heard = 1;
                    their = v->members[j].seq;
                    their_epoch = v->members[j].last_epoch;
                }
        }
        n_reports += heard;
        if (heard && more_up_to_date(their_epoch, their, most_epoch, most_seq)) {
            most_seq = their;
            most_epoch = their_epoch;
            most_id = id;
        }
    }
    if (n_reports < sy->quorum && sy->has_floor && sy->n_voters == 1 && floor_ok)
        return 1; /* Q5 */
    if (n_reports < sy->quorum) {
        snprintf(why, why_size,
                 "%" PRIu32 " of the %" PRIu32 " counted members of epoch %" PRIu64
                 " report (the sync key needs %" PRIu32
                 "): an entry acknowledged RK_REPLICATED may be on the others",
                 n_reports, sy->n_voters, sy->epoch, sy->quorum);
        return 0;
    }
    if (more_up_to_date(most_epoch, most_seq, last_epoch, seq)) {
        snprintf(why, why_size,
                 "counted member %s is more up to date (last entry %" PRIu64 " of epoch %" PRIu64
                 "; this node's: %" PRIu64 " of epoch %" PRIu64 ")",
                 most_id, most_seq, most_epoch, seq, last_epoch);
        return 0;
    }
    return 1;
}

static void standby_tick(struct ha *h, const struct cluster_view *v)
{
    struct node *n = h->n;
    uint64_t seq, last_epoch, sb_epoch, now = ring_boottime_ns();
    int ready, known, floor_ok;
    /* the most up to date journal known (Q3's order): the leader's last
     * record, or a live member's */
    uint64_t top_seq = h->leader_seq_seen, top_epoch = h->leader_last_epoch_seen, lag = 0;
    int better = 0, primary_alive = 0, eligible, me_preferred = strcmp(h->c->role, "primary") == 0;
    char why[192];

    pthread_mutex_lock(&h->progress_lock);
    seq = h->sb_seq;
    last_epoch = h->sb_last_epoch;
    sb_epoch = h->sb_epoch;
    ready = h->sb_ready;
    known = h->sb_known;
    floor_ok = v->sync.has_floor && holds_floor(h, &v->sync, seq);
    pthread_mutex_unlock(&h->progress_lock);
    for (size_t i = 0; i < v->n_members; i++) {
        const struct member_view *m = &v->members[i];
        if (strcmp(m->name, h->name) == 0)
            continue;
        if (more_up_to_date(m->last_epoch, m->seq, top_epoch, top_seq)) {
            top_seq = m->seq;
            top_epoch = m->last_epoch;
        }
        if (strcmp(m->role, "primary") == 0)
            primary_alive = 1;
        else if (m->eligible &&
                 (more_up_to_date(m->last_epoch, m->seq, last_epoch, seq) ||
                  (m->last_epoch == last_epoch && m->seq == seq && m->preferred && !me_preferred)))
            better = 1;
        if (v->leader.present && strcmp(m->name, v->leader.name) == 0) {
            h->leader_seq_seen = m->seq;
            h->leader_last_epoch_seen = m->last_epoch;
        }
    }
    /* entries behind the most up to date journal: with the same last
     * epoch, the difference; with a later one, it holds entries of that
     * epoch this node lacks, and this node's entries past the fork point
     * (unknown here) are not on it: at least the difference, and at
     * least one */
    if (more_up_to_date(top_epoch, top_seq, last_epoch, seq))
        lag = top_seq > seq ? top_seq - seq : 1;
    eligible = ready && lag <= h->c->ha_max_lag_entries && !atomic_load(&n->promote);
    /* seq was read after v (tick): with the leader key gone in v, this
     * record reports it (Q3a) */
    publish_member(h, "standby", sb_epoch, seq, last_epoch, known, v->leader.present ? 0 : v->rev, lag,
                   eligible);
    if (!v->leader.present && !h->gone_since)
        h->gone_since = now;
    if (v->leader.present) {
        h->absent_since = 0;
        h->gone_since = 0;
        h->seen_leader = 1;
        h->last_wait[0] = '\0';
        if (strcmp(v->leader.name, h->name) == 0 && !h->leading) {
            /* ours from an earlier run of this node: let it go, so that
             * the cluster elects */
            struct etcd_compare cmp = {
                .key = h->key_leader, .target = ETCD_MOD_REVISION, .revision = v->leader.mod_rev};
            struct etcd_op op = {.key = h->key_leader};
            int ok = 0;
            if (etcd_txn(h->e, &cmp, 1, &op, 1, &ok, NULL) == 0 && ok)
                log_msg(LOG_WARN, "etcd: this node's leader key from an earlier run deleted",
                        "epoch=%" PRIu64, v->leader.epoch);
        }
        return;
    }
    if (h->leading || atomic_load(&n->promote))
        return; /* won: the promotion is under way */
    if (!eligible) {
        snprintf(why, sizeof why,
                 ready ? "not eligible: %" PRIu64 " entries behind, max_lag_entries %" PRIu32
                       : "not eligible: bootstrapping",
                 lag, h->c->ha_max_lag_entries);
        say_wait(h, why);
        return;
    }
    if (!sync_allows(h, v, seq, last_epoch, floor_ok, why, sizeof why)) {
        say_wait(h, why); /* without a time limit: a time limit would lose what the others hold */
        /* the reports it lacks are usually on their way: every standby
         * ticks when the watch sees the key go, and puts its record then,
         * a few ms apart; read again soon rather than a tick later (the
         * election took a tick, ttl/6, more than it needed: 333 ms at ttl
         * 2000).  Only for two ticks after the key went: a voter that is
         * dead is waited for at the tick's pace */
        if (now - h->gone_since < 2ull * h->tick_ms * 1000000u)
            h->hurry = 1;
        return;
    }
    if (!h->absent_since)
        h->absent_since = now;
    /* a node that never saw a leader (a cluster starting) leaves one tick
     * for the others to publish themselves (a primary still opening its
     * store); after a leader's loss it runs at once */
    if (!h->seen_leader && now - h->absent_since < (uint64_t)h->tick_ms * 1000000u)
        return;
    /* the most advanced live standby should win: defer to one ahead (and
     * to a live primary about to take the key), for at most two TTLs */
    if ((better || primary_alive) && now - h->absent_since < 2 * h->ttl_ns) {
        say_wait(
            h, better ? "another live standby is more up to date (or as much, and is the configured primary)"
                      : "a primary is alive and takes the key");
        return;
    }
    uint64_t base = v->counter > sb_epoch ? v->counter : sb_epoch;
    int won = take_leader_key(h, v, base + 1, base + 1, seq, last_epoch);
    if (won == 1) {
        atomic_store(&h->won_epoch, base + 1);
        atomic_store(&h->elected_epoch, base + 1);
        log_msg(LOG_WARN, "etcd: election won: promoting",
                "epoch=%" PRIu64 " seq=%" PRIu64 " last_epoch=%" PRIu64 " lag=%" PRIu64, base + 1, seq,
                last_epoch, lag);
        atomic_store(&n->promote, 1);
        repl_standby_wake(n->standby); /* the standby's loop sees it now, not after its step's wait */
    }
}

/* ------------------------------------------------------------ thread */

static void tick(struct ha *h)
{
    struct cluster_view *v = calloc(1, sizeof *v);
    int rc;

    if (!v)
        return;
    rc = renew_lease(h);
    if (rc == 0)
        revoke_stale(h);
    if (rc == 0)
        rc = read_cluster(h, v);
    if (rc && rc != ENOENT) {
        if (!h->last_unreachable)
            log_msg(LOG_WARN, "etcd does not answer", "error=\"%s\"", etcd_error(h->e));
        h->last_unreachable = 1;
    } else if (rc == 0 && h->last_unreachable) {
        log_msg(LOG_INFO, "etcd answers again", "lease=%" PRIx64, (uint64_t)h->lease);
        h->last_unreachable = 0;
    }
    pthread_mutex_lock(&h->lock);
    if (rc == 0 && h->role == HA_NONE && !h->stale_lease)
        /* starting, or between roles: a node about to run as a primary (its
         * configuration's role, or an election won) says so at once, so
         * that standbys leave it the key */
        publish_member(h, h->leading ? "primary" : "standby", atomic_load(&h->won_epoch), 0, 0, 0, 0, 0, 0);
    if (h->role == HA_PRIMARY && h->leading && ring_boottime_ns() >= h->ack_deadline) {
        /* self-fencing: the lease was not renewed in time; etcd may let
         * another node lead once it expires */
        primary_fence(h, 0, "cannot renew the etcd lease before the deadline (2/3 of the TTL)");
    } else if (rc == 0 && h->role == HA_PRIMARY) {
        primary_tick(h, v);
    } else if (rc == 0 && h->role == HA_STANDBY) {
        standby_tick(h, v);
    } else if (rc == ENOENT && h->role == HA_PRIMARY && h->leading) {
        primary_fence(h, 0, "the etcd lease expired");
    }
    if (rc == ENOENT)
        stop_leading(h);
    pthread_mutex_unlock(&h->lock);
    cluster_view_free(v);
}

/* Waits (under lock) until ms have passed, stop, or (kick) a kick. */
static void wait_ms(struct ha *h, uint32_t ms, int kick)
{
    struct timespec ts = node_deadline_ms(ms); /* h->cond waits on CLOCK_MONOTONIC */

    while (!atomic_load(&h->stop) && !(kick && h->kicked))
        if (pthread_cond_timedwait(&h->cond, &h->lock, &ts) == ETIMEDOUT)
            break;
}

static void *ha_main(void *arg)
{
    struct ha *h = arg;

    pthread_setname_np(pthread_self(), "rk-ha");
    while (!atomic_load(&h->stop)) {
        tick(h);
        pthread_mutex_lock(&h->lock);
        wait_ms(h, h->hurry ? HURRY_MS : h->tick_ms, 1);
        h->hurry = 0;
        h->kicked = 0; /* a kick during the next tick ticks again after it */
        pthread_mutex_unlock(&h->lock);
    }
    return NULL;
}

/* The leader key changed, or the watch is (again) in place: rk-ha ticks
 * now rather than at its next tick, so that a standby runs for the key as
 * soon as etcd deletes it (the leader's lease expired) and a primary sees
 * it lost.  Called on rk-ha-watch. */
static void on_leader_change(void *arg)
{
    struct ha *h = arg;

    pthread_mutex_lock(&h->lock);
    h->kicked = 1;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* rk-ha-watch: watches the leader key (/v3/watch), again and again.  Only
 * a hastener: the ticks alone are right, a watch that cannot be made
 * (etcd down) or that ends is made again a tick later. */
static void *ha_watch_main(void *arg)
{
    struct ha *h = arg;
    int said = 0;

    pthread_setname_np(pthread_self(), "rk-ha-watch");
    while (!atomic_load(&h->stop)) {
        int rc = etcd_watch(h->we, h->key_leader, 60, on_leader_change, h);
        if (rc == 0)
            break; /* cancelled: the process stops */
        if (!said)
            log_msg(LOG_DEBUG, "etcd: watching the leader key again", "error=\"%s\"", etcd_error(h->we));
        said = 1;
        pthread_mutex_lock(&h->lock);
        wait_ms(h, h->tick_ms, 0);
        pthread_mutex_unlock(&h->lock);
    }
    return NULL;
}

int ha_start(const struct node_config *c, struct ha **out)
{
    struct ha *h = calloc(1, sizeof *h);
    int rc;

    *out = NULL;
    if (!h)
        return ENOMEM;
    h->c = c;
    h->name = node_config_ha_name(c);
    h->tick_ms = c->ha_ttl_ms / 6 < 100 ? 100 : c->ha_ttl_ms / 6;
    snprintf(h->key_prefix, sizeof h->key_prefix, "/ringkeep/%s/", c->ha_cluster);
    snprintf(h->key_leader, sizeof h->key_leader, "%sleader", h->key_prefix);
    snprintf(h->key_epoch, sizeof h->key_epoch, "%sepoch", h->key_prefix);
    snprintf(h->key_me, sizeof h->key_me, "%smembers/%s", h->key_prefix, h->name);
    snprintf(h->key_sync, sizeof h->key_sync, "%ssync", h->key_prefix);
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->progress_lock, NULL);
    node_cond_init(&h->cond); /* CLOCK_MONOTONIC: wait_ms */
    rc = etcd_open(c->ha_etcd, h->tick_ms, &h->e);
    if (!rc)
        rc = etcd_open(c->ha_etcd, h->tick_ms, &h->we);
    if (!rc)
        rc = start_thread(&h->thread, ha_main, h);
    if (!rc) {
        rc = start_thread(&h->watch_thread, ha_watch_main, h);
        h->have_watch = rc == 0;
        if (rc) {
            ha_stop(h);
            h = NULL;
        }
    }
    if (rc) {
        log_msg(LOG_ERROR, "cannot start automatic failover", "error=\"%s\"", strerror(rc));
        if (!h)
            return rc;
        etcd_close(h->we);
        etcd_close(h->e);
        free(h);
        return rc;
    }
    log_msg(LOG_INFO, "automatic failover on", "etcd=\"%s\" cluster=%s name=%s ttl_ms=%" PRIu32, c->ha_etcd,
            c->ha_cluster, h->name, c->ha_ttl_ms);
    *out = h;
    return 0;
}

void ha_stop(struct ha *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    atomic_store(&h->stop, 1);
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    etcd_watch_cancel(h->we);
    if (h->have_watch)
        pthread_join(h->watch_thread, NULL);
    pthread_join(h->thread, NULL);
    /* a clean stop lets go at once: the leader key (and our member
     * record) go with the lease, and the others elect without waiting for
     * the TTL */
    if (h->lease && etcd_lease_revoke(h->e, h->lease) == 0)
        log_msg(LOG_INFO, "etcd lease revoked at stop", "leading=%d", h->leading);
    if (h->stale_lease)
        etcd_lease_revoke(h->e, h->stale_lease);
    etcd_close(h->e);
    etcd_close(h->we);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->progress_lock);
    free(h->sb_hist);
    free(h);
}

/* ------------------------------------------------------------ roles */

void ha_attach_primary(struct ha *h, struct node *n)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->role = HA_PRIMARY;
    h->n = n;
    atomic_store(&h->elected_epoch, 0); /* the promotion began (epoch_begin) */
    h->last_wait[0] = '\0';
    h->last_waiting[0] = '\0';
    if (h->leading && atomic_load(&h->won_epoch) && ring_boottime_ns() < h->ack_deadline)
        ring_set_ack_deadline(n->ring, h->ack_deadline);
    pthread_mutex_unlock(&h->lock);
}

void ha_attach_standby(struct ha *h, struct node *n)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    h->role = HA_STANDBY;
    h->n = n;
    pthread_mutex_lock(&h->progress_lock);
    h->sb_ready = 0;
    h->sb_known = 0;
    pthread_mutex_unlock(&h->progress_lock);
    h->last_wait[0] = '\0';
    pthread_mutex_unlock(&h->lock);
}

void ha_standby_progress(struct ha *h, store *s, uint64_t seq, uint64_t epoch, int ready)
{
    struct epoch_start *hist = NULL;
    uint32_t n_hist = 0;
    int known;

    if (!h)
        return;
    /* the history read with seq, on this (the journal's writing) thread:
     * the two agree; out of memory, the record says nothing (no report) */
    known = store_history(s, &hist, &n_hist) == 0;
    pthread_mutex_lock(&h->progress_lock);
    free(h->sb_hist);
    h->sb_hist = hist;
    h->sb_n_hist = n_hist;
    h->sb_seq = seq;
    h->sb_last_epoch = seq ? history_epoch_of(hist, n_hist, seq) : 0;
    h->sb_epoch = epoch;
    h->sb_ready = ready;
    h->sb_known = known;
    pthread_mutex_unlock(&h->progress_lock);
}

void ha_detach(struct ha *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->lock);
    if (h->role == HA_PRIMARY)
        stop_leading(h); /* a primary's run ended: it stepped down, or the process stops */
    h->role = HA_NONE;
    h->n = NULL;
    pthread_mutex_unlock(&h->lock);
}

uint64_t ha_won_epoch(struct ha *h)
{
    return h ? atomic_load(&h->won_epoch) : 0;
}

#define RESERVE_TRIES 20 /* the epoch key moved between the read and the transaction, each time */

int ha_reserve_epoch(struct ha *h, uint64_t min, uint64_t *epoch, char *err, size_t err_size)
{
    etcd *e = NULL; /* its own client: h->e is the rk-ha thread's */
    uint64_t elected = atomic_exchange(&h->elected_epoch, 0);
    int rc;

    if (elected) {
        /* an election's promotion whose lease (and leader key) went first:
         * as a promotion by hand it would lead without the sync key's
         * quorum */
        snprintf(err, err_size,
                 "this node won the election of epoch %" PRIu64 " and lost its lease before it promoted",
                 elected);
        return ESTALE;
    }
    rc = etcd_open(h->c->ha_etcd, h->tick_ms, &e);

    for (int i = 0; rc == 0 && i < RESERVE_TRIES; i++) {
        struct etcd_kv *kvs = NULL;
        size_t n_kvs = 0;
        uint64_t counter = 0, want;
        int64_t counter_rev = 0, rev = 0;
        int ok = 0;
        char text[24];
        rc = etcd_range(e, h->key_epoch, 0, &kvs, &n_kvs, &rev);
        if (rc)
            break;
        if (n_kvs) {
            counter = strtoull(kvs[0].value, NULL, 10);
            counter_rev = kvs[0].mod_revision;
        }
        etcd_kvs_free(kvs, n_kvs);
        /* above every epoch etcd handed out and every one this node knows:
         * no election hands it out after this (they take the counter + 1) */
        want = counter + 1 > min ? counter + 1 : min;
        snprintf(text, sizeof text, "%" PRIu64, want);
        struct etcd_compare cmp = {.key = h->key_epoch, .target = ETCD_MOD_REVISION, .revision = counter_rev};
        struct etcd_op op = {.key = h->key_epoch, .value = text};
        rc = etcd_txn(e, &cmp, 1, &op, 1, &ok, NULL);
        if (rc == 0 && ok) {
            atomic_store(&h->reserved_epoch, want);
            log_msg(LOG_WARN, "etcd: epoch reserved for a promotion by hand",
                    "epoch=%" PRIu64 " counter_was=%" PRIu64, want, counter);
            *epoch = want;
            etcd_close(e);
            return 0;
        }
    }
    snprintf(err, err_size, "cannot reserve an epoch in etcd: %s",
             rc ? (e ? etcd_error(e) : strerror(rc)) : "the epoch key kept moving");
    etcd_close(e);
    return rc ? rc : EAGAIN;
}
