/* primary.c -- the primary's replicator: publishes what the node journals
 * and checkpoints, answers standbys, and moves the ring's replicated cursor
 * by their acknowledgements.
 *
 *   drain thread ---- journaled(seq, entry): PUB rk.j (under pub_lock; else eventfd) -+
 *   checkpoint thread - checkpointed(path) -> eventfd -+--> replicator thread
 *                                                      |    PUB  (bind publish): rk.j rk.c rk.h
 *   standbys (DEALER) <------------------------------> |    ROUTER (bind serve): HELLO FETCH ACK
 *                                                      |    ring_set_replicated()
 *
 * Design: ZeroMQ sockets are not thread safe, so one thread owns the
 * ROUTER and the PUB is used under pub_lock (a socket may pass between
 * threads across a full barrier).  The drain publishes each entry it
 * journals itself, with the bytes it stored, as soon as its commit
 * wrote it and before its fsync (store_journal_write, then _sync: the
 * standbys' round trip runs beside that fsync), saying which entry it
 * follows (prev_xxh; publish_one): a hand-over to the replicator thread put a wake-up, a
 * scheduling delay on a busy host and a read back from the store on every
 * entry's way to the standbys (issue 13.6).  An entry the drain could not
 * publish in order, the replicator thread reads back from the store
 * (store_journal_get_raw: the bytes exactly as stored) and publishes; the
 * node's other threads only write to an eventfd (and, for a checkpoint, a
 * path under `lock`).  A standby that misses an entry (PUB drops at its
 * high-water mark, or it connected late) FETCHes it over the ROUTER.  An ACK names the standby's
 * durable journal sequence; that entry's LSNs are covered (next_lsn - 1),
 * and the cursor moves to the min_replicas-th highest LSN the standbys
 * acknowledged, never past the durable cursor (update_replicated).  With
 * min_replicas = 0 the node moves the replicated cursor with the durable
 * one and acks only feed status and heartbeats.
 *
 * Under [ha] (min_replicas > 0) only the acks of the standbys the node has
 * published in etcd as counted (node/ha.c, the sync key) move the cursor:
 * an election then needs reports from enough of them to find every
 * acknowledged entry.  The node's rk-ha thread asks for a plan
 * (repl_primary_sync_plan: the standbys known now that count already or
 * hold the journal this primary started with -- one still catching up to
 * it waits outside the plan -- and how many of them hold everything
 * acknowledged so far; a counted standby no longer known stops counting
 * there and then), publishes it, and only then lets the new ones count
 * (repl_primary_sync_published).  `lock` guards that set
 * and a copy of the peers' ids and acked sequences (sync_mirror), which
 * the replicator thread refreshes whenever they change.  The journal is not
 * trimmed past what a standby this primary knows (one that said HELLO
 * since it started) still needs.
 *
 * CURVE (curve = yes): both sockets are CURVE servers, and this thread
 * also answers ZeroMQ's authentication requests (ZAP, on
 * inproc://zeromq.zap.01 of its context): a client key not in
 * authorized_keys fails the handshake and receives nothing; a key's bound
 * node_id is the ZAP user id, and only it may be said in that
 * connection's HELLO (hello_slot).
 *
 * Identities (issue 14): a node_id is one connection's at a time; without
 * CURVE another connection gets it only once the holder's connection
 * closed (the ROUTER's monitor, router_events) or went silent.  A HELLO
 * whose monitor flag is set is welcomed and takes no standby slot.  A full
 * table (WIRE_MAX_STANDBYS) makes room for a new standby by forgetting a
 * silent one, else a live one that has replicated nothing since its HELLO
 * (hello_slot): peers that only keep a name alive cannot lock a standby
 * out, and one that takes in entries is never forgotten for a newcomer.
 *
 * SNAPSHOT serves a checkpoint file of checkpoints/ in chunks, with the
 * XXH64 of the whole file (computed once per file).  A standby acks every
 * heartbeat; one silent for PEER_SILENT_BEATS heartbeats is forgotten.
 *
 * Bad input: a message that does not decode, has the wrong frames, a type
 * a standby does not send, or breaks a rule is logged and its peer is
 * dropped (forgotten until it says HELLO again); the others are served as
 * before.  A request with a frame over ROUTER_MAX_REQUEST is refused
 * here likewise (ERROR 5, then dropped).  ZMQ_MAXMSGSIZE on the ROUTER is
 * ROUTER_CUT_SIZE, above the cap, so that this thread sees and counts
 * oversized requests; a frame over ROUTER_CUT_SIZE is cut by ZeroMQ in its
 * I/O thread, which raises only ZMQ_EVENT_DISCONNECTED for it (libzmq
 * 4.3.4: stream_engine_base_t::error(protocol_error), the same event as a
 * peer leaving): counted, with every closed connection, in
 * serve_connections_closed.  Refusals are counted in the status and logged
 * at most once per peer and kind per PEER_LOG_INTERVAL_S (peer_event);
 * closed connections and evictions, whose peers cannot be told apart, at
 * most once per interval in all (rate_log).
 *
 * Threads: the replicator thread owns the ROUTER, peers and checkpoint
 * caches; `pub_lock` guards the PUB, published_seq and the seq cache (the
 * drain publishes); `lock` guards the pending checkpoint path and the
 * status members (a Jansson object) the control thread reads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "persist/checkpoint.h"
#include "replicator/link.h"
#include "persist/json_bytes.h"
#include "persist/log.h"
#include "replicator/replicator.h"
#include "persist/store.h"

#define PUB_HWM                                                                                              \
    256                         /* messages queued per subscriber before PUB drops (a standby then fetches); \
                                   entries are up to batch_bytes (4 MiB) each: bounded memory per subscriber */
#define ROUTER_HWM 16           /* replies queued per standby on the ROUTER (ENTRIES are up to 8 MiB) */
#define XXH_CACHE 4             /* checkpoint files whose XXH64 is kept */
#define ROUTER_MAX_REQUEST 4096 /* every request (HELLO, FETCH, SNAPSHOT, ACK) is far smaller */
#define ROUTER_CUT_SIZE 16384   /* the ROUTER's ZMQ_MAXMSGSIZE: ZeroMQ cuts a frame over it */
#define SEQ_CACHE 8192          /* recent entries' next_lsn and journal time, by seq % SEQ_CACHE */
#define RECV_BURST 256          /* requests served before looking at the eventfd again */
#define PEER_SILENT_BEATS 20    /* a standby silent this many heartbeats is forgotten (it acks each one) */
/* no entry goes out before the fsync for this long after the start (plus
 * EARLY_GRACE_BEATS heartbeats): a standby that followed this node's
 * previous run takes its stream until a heartbeat that does not list it
 * makes it say HELLO (at most a second after its last one), and one of an
 * earlier build must be heard first (update_needed) */
#define EARLY_GRACE_NS 2000000000ull
#define EARLY_GRACE_BEATS 3
#define PEER_LIVE_BEATS 3       /* a standby heard within this many heartbeats ... */
#define PEER_LIVE_MIN_NS 1000000000ull /* ... and this long keeps its node_id from other connections */
#define PEER_LOG_SLOTS 64              /* peers whose refusals are counted for rate-limited log lines */
#define PEER_LOG_INTERVAL_S 10u        /* at most one line per peer per this many seconds (with a count) */

struct peer {
    int used;
    uint8_t route[LINK_ROUTE_MAX + 1];
    size_t route_len;
    char id[WIRE_NAME_MAX + 1];
    uint64_t acked_seq; /* highest durable_seq it acknowledged */
    uint64_t acked_lsn; /* the LSN that covers */
    uint64_t heard_ns;  /* monotonic: its last message */
    int fd;             /* its connection's file descriptor (ZMQ_SRCFD of its HELLO), -1: unknown */
    int disconnected;   /* the ROUTER reported that connection closed: its id is free to take */
    uint64_t hello_seq; /* the last_seq its HELLO said it held: acked_seq above it, it replicates */
    int hello_unverified; /* its last entry at HELLO matched by epoch alone: acks up to hello_seq are
                             listed (heartbeats, the trim floor) but not counted (counted_seq) */
    uint64_t hello_ns;  /* monotonic: when its HELLO took this slot under this id */
    int checks_prev;    /* its HELLO said it checks prev_xxh (the drain may publish early) */
    /* its apply, as its last ACK reported it (issue 13.7; apply_reported 0:
     * none since its HELLO, or a standby before those elements) */
    int apply_reported;
    uint64_t applied_seq;  /* the last entry its apply committed */
    uint64_t apply_lag_ms; /* its journal not applied yet, in ms of its apply's work */
};

/* A line of authorized_keys: a client key and the node_id bound to it. */
struct authorized_key {
    uint8_t key[32];
    char id[WIRE_NAME_MAX + 1]; /* "": none (the key may monitor, not act as a standby) */
};

/* Refusals of one kind (msg) from one peer (a routing id: one
 * connection), logged at most once per PEER_LOG_INTERVAL_S with how many
 * there were. */
struct peer_log {
    uint8_t route[LINK_ROUTE_MAX + 1];
    size_t route_len;
    const char *msg;    /* the log line's message (a string constant): the kind */
    uint64_t n_since;   /* refusals since its last line */
    uint64_t logged_ns; /* monotonic: its last line (0: none yet) */
    uint64_t used;      /* log_clock when last used: the least recently used slot is reused */
};

/* Lines of one kind whoever the peer (closed connections, evictions):
 * at most one per PEER_LOG_INTERVAL_S, with how many there were. */
struct rate_log {
    uint64_t n_since;   /* events since its last line */
    uint64_t logged_ns; /* monotonic: its last line (0: none yet) */
};

struct seq_info {
    uint64_t seq;          /* which entry this slot holds (0: none) */
    uint64_t covered_lsn;  /* next_lsn - 1 */
    uint64_t journaled_ns; /* monotonic, when it was published */
};

struct repl_primary {
    const struct node_config *c;
    repl_progress_fn *progress;                      /* the node's cursors (repl_primary_start) */
    void (*higher_epoch)(void *arg, uint64_t epoch); /* repl_primary_on_higher_epoch, NULL: none */
    void *higher_epoch_arg;
    void (*apply_caught_up)(void *arg); /* repl_primary_on_standby_apply, NULL: none */
    void *apply_caught_up_arg;
    void *progress_arg;
    store *s;
    ring_owner *ring;
    void *ctx, *pub, *router;
    void *router_events; /* PAIR: the ROUTER's monitor (ZMQ_EVENT_DISCONNECTED: a standby's id freed) */
    void *zap;           /* CURVE: the ZAP handler (inproc://zeromq.zap.01), NULL without CURVE */
    struct authorized_key *authorized; /* CURVE: client public keys allowed */
    size_t n_authorized;
    uint64_t n_refused_keys;
    int efd;
    pthread_t thread;
    int running;
    _Atomic int stop;

    pthread_mutex_t lock;
    char ckpt_pending[PATH_MAX]; /* a checkpoint to announce (under lock) */
    json_t *status;              /* status members, an object (under lock; replaced whole) */

    /* the drain publishes each entry it journals from its own thread
     * (repl_primary_journaled), the replicator thread what the drain did
     * not, and its notices and heartbeats; ZeroMQ lets a socket pass
     * between threads across a full barrier, which the mutex is */
    pthread_mutex_t pub_lock;
    uint64_t published_seq; /* under pub_lock: every entry up to it was published */
    uint64_t last_pub_seq, last_pub_xxh; /* under pub_lock: the last entry published and its XXH64 */
    int early; /* under pub_lock: every standby known checks prev_xxh: entries go out before the fsync */
    int old_seen; /* replicator thread: a standby's HELLO without checks_prev was heard since the start */
    const char *test_forge;              /* test hook RK_TEST_FORGE_ENTRY=FILE (publish_one); NULL: none */
    /* 1: the standbys' acks reach past the last durable entry, so the
     * replicated cursor waits for the drain's fsync, which then wakes the
     * replicator thread (repl_primary_durable); durable_seq is that entry,
     * stored by the drain after it moved the durable cursor */
    _Atomic int acks_ahead;
    _Atomic uint64_t durable_seq;
    _Atomic uint64_t max_acked; /* repl_primary_max_acked */
    struct seq_info *cache; /* under pub_lock: by seq % SEQ_CACHE */

    /* the replicator thread's own */
    uint64_t epoch; /* set before the threads run */
    uint64_t replicated_lsn;
    uint64_t start_ns;
    uint64_t n_dropped_peers;
    uint64_t n_hellos_refused; /* HELLO under a node_id not the peer's (WIRE_ERR_IDENTITY) */
    int heartbeat_now;         /* a standby was welcomed: the next heartbeat comes sooner (on_hello) */
    uint64_t n_monitor_hellos; /* monitors' HELLOs welcomed */
    uint64_t n_lower_epoch;    /* requests of a lower epoch refused */
    uint64_t n_higher_epoch;   /* requests of a higher epoch (this primary steps down) */
    uint64_t n_oversized;      /* requests with a frame over ROUTER_MAX_REQUEST (refused here) */
    uint64_t n_closed;         /* serve connections closed (peers leaving, frames over ROUTER_CUT_SIZE) */
    uint64_t n_reply_drops;    /* replies the ROUTER could not queue (reply) */
    uint64_t n_evicted;        /* standbys forgotten for a new one (silent, or live, replicating nothing) */
    struct rate_log closed_log, silent_log, evicted_log;
    struct peer_log peer_logs[PEER_LOG_SLOTS];
    uint64_t log_clock;
    _Atomic uint64_t needed_from; /* lowest acked_seq + 1 of the known standbys (UINT64_MAX: none) */
    /* 1 while the drain waits for the counted standbys' apply (update_apply_hold;
     * the replicator thread writes it, the drain reads it: repl_primary_apply_held) */
    _Atomic int apply_held;
    uint64_t n_apply_holds; /* times it went to 1 */
    /* [ha] with min_replicas > 0 (gated): whose acks count, under lock.
     *   S1: every id in counted is in etcd's sync key (ha.c publishes
     *       before repl_primary_sync_published adds; a removal takes
     *       effect here first, in repl_primary_sync_plan);
     *   S2: replicated_seq >= every entry acknowledged RK_REPLICATED here;
     *   S3: a standby is counted only if, when the plan that added it was
     *       made, it held the journal this primary started with (its
     *       promotion point; repl_primary_sync_plan). */
    int gated;
    _Atomic int sync_changed; /* the counted set grew: the replicator thread looks at the acks again */
    struct {
        char counted[WIRE_MAX_STANDBYS][WIRE_NAME_MAX + 1];
        uint32_t n_counted;
        struct {
            char id[WIRE_NAME_MAX + 1];
            uint64_t acked_seq;
        } known[WIRE_MAX_STANDBYS]; /* the used peers, as the replicator thread last saw them */
        uint32_t n_known;
        uint64_t replicated_seq; /* S2 */
        uint64_t base_seq;       /* the journal when this primary started: earlier epochs' entries */
    } sync;
    int has_newest;
    struct wire_checkpoint newest; /* producers owned */
    struct peer peers[WIRE_MAX_STANDBYS];
    /* routing ids dropped for a bad message: ignored until they say HELLO */
    struct {
        uint8_t route[LINK_ROUTE_MAX + 1];
        size_t len;
    } dropped[WIRE_MAX_STANDBYS];
    size_t n_dropped_next;
    /* XXH64 of the checkpoint files served lately (SNAPSHOT asks for them in
     * chunks; hashing a file once per chunk would stall this thread): a
     * few entries, by name, size and mtime, the oldest replaced */
    struct {
        char name[WIRE_FILE_MAX + 1];
        uint64_t size, mtime_ns, xxh, used;
    } xxh_cache[XXH_CACHE];
    uint64_t xxh_clock;
};

/* ------------------------------------------------------------ entries */

static uint64_t header_next_lsn(const uint8_t *entry, size_t len)
{
    uint64_t v = 0;
    if (len < JOURNAL_HEADER_SIZE)
        return 0;
    for (int i = 7; i >= 0; i--) /* little-endian at offset 40 */
        v = (v << 8) | entry[40 + i];
    return v;
}

/* Under pub_lock. */
static void cache_put(struct repl_primary *p, uint64_t seq, const uint8_t *entry, size_t len)
{
    struct seq_info *si = &p->cache[seq % SEQ_CACHE];
    uint64_t next = header_next_lsn(entry, len);

    si->seq = seq;
    si->covered_lsn = next ? next - 1 : 0;
    si->journaled_ns = link_monotonic_ns();
}

/* The LSN that entry seq's acknowledgement covers (0 if unknown). */
static uint64_t covered_lsn(struct repl_primary *p, uint64_t seq)
{
    uint8_t *entry = NULL;
    size_t len = 0;
    uint64_t covered = 0;
    int cached;

    pthread_mutex_lock(&p->pub_lock);
    cached = p->cache[seq % SEQ_CACHE].seq == seq;
    if (cached)
        covered = p->cache[seq % SEQ_CACHE].covered_lsn;
    pthread_mutex_unlock(&p->pub_lock);
    if (!cached) {
        if (store_journal_get_raw(p->s, seq, &entry, &len) != 0)
            return 0;
        uint64_t next = header_next_lsn(entry, len);
        free(entry);
        covered = next ? next - 1 : 0;
    }
    return covered;
}

/* The XXH64 of entry seq as this primary holds it, in *xxh: 1, or 0 when
 * it holds none (trimmed, or before its journal starts). */
static int held_xxh(struct repl_primary *p, uint64_t seq, uint64_t *xxh)
{
    uint8_t *entry = NULL;
    size_t len = 0;

    if (seq == 0 || store_journal_get_raw(p->s, seq, &entry, &len) != 0)
        return 0;
    *xxh = wire_entry_xxh(entry, len);
    free(entry);
    return 1;
}

/* Test hook RK_TEST_FORGE_ENTRY=FILE (tests only: test_repl's
 * standby_never_appends_to_an_entry_the_primary_does_not_hold): once FILE
 * exists, the next entry is published as another valid encoding of the
 * same frames (another zstd level), as a standby would hold an entry its
 * primary lost in a power cut and wrote again; FILE is removed.  The
 * entries after it say, as ever, that they follow the primary's own.
 * Returns the forged entry (malloc'd) or NULL. */
static uint8_t *forge(struct repl_primary *p, const uint8_t *entry, size_t len, size_t *forged_len)
{
    journal_entry e = {0};
    uint8_t *out = NULL;
    char why[256];

    if (!p->test_forge || access(p->test_forge, F_OK) != 0 || journal_decode(entry, len, &e, why, sizeof why))
        return NULL;
    for (int level = 19; level >= 1 && !out; level -= 6) {
        if (journal_encode(&e.h, e.frames, e.h.raw_len, level, &out, forged_len) == 0 && *forged_len == len &&
            memcmp(out, entry, len) == 0) {
            free(out);
            out = NULL;
        }
    }
    journal_entry_free(&e);
    if (out)
        unlink(p->test_forge);
    return out;
}

/* Publishes entry seq, the bytes as stored (under pub_lock), saying which
 * entry it follows (prev_xxh: the standbys take it only after that one). */
static void publish_one(struct repl_primary *p, uint64_t seq, const uint8_t *entry, size_t len)
{
    struct wire_msg m = {.type = WIRE_JOURNAL, .epoch = p->epoch};
    size_t forged_len = 0;
    uint8_t *forged = forge(p, entry, len, &forged_len);
    char why[256];

    cache_put(p, seq, entry, len);
    m.u.journal.seq = seq;
    m.u.journal.bytes = forged ? forged : entry;
    m.u.journal.len = forged ? forged_len : len;
    if (p->last_pub_seq && p->last_pub_seq == seq - 1) {
        m.u.journal.has_prev_xxh = 1;
        m.u.journal.prev_xxh = p->last_pub_xxh;
    } else {
        m.u.journal.has_prev_xxh = held_xxh(p, seq - 1, &m.u.journal.prev_xxh);
    }
    p->last_pub_seq = seq;
    p->last_pub_xxh = wire_entry_xxh(entry, len);
    int rc = link_send(p->pub, NULL, 0, &m, why, sizeof why);
    if (rc && rc != EAGAIN)
        log_msg(LOG_WARN, "cannot publish a journal entry", "seq=%" PRIu64 " error=\"%s\"", seq, why);
    free(forged);
}

/* The last entry this primary holds: journal_seq (durable), or one the
 * drain wrote and published ahead of its fsync (repl_primary_journaled).
 * A standby may hold it already, and say so.  Any thread. */
static uint64_t held_seq(struct repl_primary *p, uint64_t journal_seq)
{
    uint64_t published;

    pthread_mutex_lock(&p->pub_lock);
    published = p->published_seq;
    pthread_mutex_unlock(&p->pub_lock);
    return published > journal_seq ? published : journal_seq;
}

/* Publishes, read back from the store, the entries up to upto that the
 * drain did not (repl_primary_journaled). */
static void publish_entries(struct repl_primary *p, uint64_t upto)
{
    pthread_mutex_lock(&p->pub_lock);
    for (uint64_t seq = p->published_seq + 1; seq <= upto; seq++) {
        uint8_t *entry = NULL;
        size_t len = 0;
        int rc = store_journal_get_raw(p->s, seq, &entry, &len);
        if (rc) {
            log_msg(LOG_WARN, "cannot read a journal entry to publish", "seq=%" PRIu64 " error=\"%s\"", seq,
                    store_strerror(rc));
            continue; /* standbys fetch it, or learn it was trimmed */
        }
        publish_one(p, seq, entry, len);
        free(entry);
    }
    if (upto > p->published_seq)
        p->published_seq = upto;
    pthread_mutex_unlock(&p->pub_lock);
}

/* ------------------------------------------------------------ checkpoints */

static int checkpoint_record(const char *path, struct wire_checkpoint *out)
{
    struct ckpt_info info = {0};
    char err[512];
    FILE *f = NULL;
    const char *base = strrchr(path, '/');
    int rc = ckpt_read_info(path, &info, err, sizeof err);

    memset(out, 0, sizeof *out);
    if (rc) {
        log_msg(LOG_WARN, "cannot read a checkpoint to announce", "file=\"%s\" error=\"%s\"", path, err);
        return rc;
    }
    out->journal_seq = info.journal_seq;
    out->lsn = info.lsn;
    out->digest = info.digest;
    out->created_ns = info.created_ns;
    snprintf(out->name, sizeof out->name, "%s", base ? base + 1 : path);
    f = fopen(path, "rb");
    if (f && fseeko(f, 0, SEEK_END) == 0)
        out->size = (uint64_t)ftello(f);
    if (f)
        fclose(f);
    out->n_producers = info.n_producers <= WIRE_MAX_PRODUCERS ? info.n_producers : WIRE_MAX_PRODUCERS;
    out->producers = out->n_producers ? calloc(out->n_producers, sizeof *out->producers) : NULL;
    if (out->n_producers && !out->producers) {
        ckpt_info_free(&info);
        return ENOMEM;
    }
    for (uint32_t i = 0; i < out->n_producers; i++) {
        snprintf(out->producers[i].name, sizeof out->producers[i].name, "%s", info.producers[i].name);
        out->producers[i].height = info.producers[i].height;
    }
    ckpt_info_free(&info);
    return out->size ? 0 : RK_ECORRUPT;
}

static void announce_checkpoint(struct repl_primary *p, const char *path)
{
    struct wire_checkpoint rec;
    char why[256];

    if (checkpoint_record(path, &rec) != 0) {
        free(rec.producers);
        return;
    }
    free(p->newest.producers);
    p->newest = rec;
    p->has_newest = 1;
    struct wire_msg m = {.type = WIRE_CHECKPOINT, .epoch = p->epoch};
    m.u.checkpoint = rec;
    pthread_mutex_lock(&p->pub_lock);
    int rc = link_send(p->pub, NULL, 0, &m, why, sizeof why);
    pthread_mutex_unlock(&p->pub_lock);
    if (rc && rc != EAGAIN)
        log_msg(LOG_WARN, "cannot publish a checkpoint notice", "error=\"%s\"", why);
}

/* ------------------------------------------------------------ standbys */

static struct peer *peer_by_route(struct repl_primary *p, const uint8_t *route, size_t len)
{
    for (size_t i = 0; i < WIRE_MAX_STANDBYS; i++)
        if (p->peers[i].used && p->peers[i].route_len == len && memcmp(p->peers[i].route, route, len) == 0)
            return &p->peers[i];
    return NULL;
}

/* Under lock: whether standby id's acks count (S1). */
static int sync_counted(const struct repl_primary *p, const char *id)
{
    for (uint32_t i = 0; i < p->sync.n_counted; i++)
        if (strcmp(p->sync.counted[i], id) == 0)
            return 1;
    return 0;
}

/* Whether a standby's acknowledgement of seq counts for RK_REPLICATED and
 * the sync plan: not up to an unverified HELLO's last entry
 * (hello_matches); and what it holds that counts: its acknowledged seq,
 * or 0. */
static int counts(const struct peer *peer, uint64_t seq)
{
    return !peer->hello_unverified || seq > peer->hello_seq;
}

static uint64_t counted_seq(const struct peer *peer)
{
    return counts(peer, peer->acked_seq) ? peer->acked_seq : 0;
}

/* The copy of the peers the rk-ha thread plans from (gated only). */
static void sync_mirror(struct repl_primary *p)
{
    uint32_t n = 0;

    if (!p->gated)
        return;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < WIRE_MAX_STANDBYS; i++)
        if (p->peers[i].used && p->peers[i].id[0]) {
            snprintf(p->sync.known[n].id, sizeof p->sync.known[n].id, "%s", p->peers[i].id);
            p->sync.known[n++].acked_seq = counted_seq(&p->peers[i]);
        }
    p->sync.n_known = n;
    pthread_mutex_unlock(&p->lock);
}

/* What the known standbys still need: the journal is not trimmed past it.
 * Called whenever a peer comes, goes or acks: the sync copy follows. */
static void update_needed(struct repl_primary *p)
{
    uint64_t needed = UINT64_MAX;
    int early = 0, others = 0;
    for (size_t i = 0; i < WIRE_MAX_STANDBYS; i++)
        if (p->peers[i].used) {
            if (p->peers[i].acked_seq + 1 < needed)
                needed = p->peers[i].acked_seq + 1;
            early |= p->peers[i].checks_prev;
            others |= !p->peers[i].checks_prev;
        }
    atomic_store(&p->needed_from, needed);
    /* a standby of a build before prev_xxh would take an entry after one
     * this primary published and then lost in a power cut: once one was
     * heard in this run (forgotten, evicted or dropped, it may still take
     * the stream until it says HELLO again), while none is known, and for
     * a grace after the start (one may still follow the stream of this
     * node's previous run), entries go out after the fsync
     * (repl_primary_journaled).  Set before WELCOME answers a HELLO
     * (on_hello calls this first); heartbeat() looks again */
    uint64_t grace = EARLY_GRACE_NS + (uint64_t)p->c->repl_heartbeat_ms * 1000000u * EARLY_GRACE_BEATS;
    early = early && !others && !p->old_seen && link_monotonic_ns() - p->start_ns >= grace;
    pthread_mutex_lock(&p->pub_lock);
    p->early = early;
    pthread_mutex_unlock(&p->pub_lock);
    sync_mirror(p);
}

/* A refusal (msg, a string constant) of peer in: logged unless this peer
 * had a line of that kind less than PEER_LOG_INTERVAL_S ago (its next one
 * then says how many there were: a flood neither fills the log nor goes
 * unseen; the status counts every one). */
static void peer_event(struct repl_primary *p, const struct link_in *in, int level, const char *msg,
                       const char *detail)
{
    struct peer_log *slot = &p->peer_logs[0];
    uint64_t now = link_monotonic_ns();
    char route[2 * 32 + 1] = "";
    int found = 0;

    for (size_t i = 0; i < PEER_LOG_SLOTS && !found; i++) {
        struct peer_log *l = &p->peer_logs[i];
        if (l->used && l->msg == msg && l->route_len == in->route_len &&
            memcmp(l->route, in->route, in->route_len) == 0) {
            slot = l;
            found = 1;
        } else if (l->used < slot->used) {
            slot = l;
        }
    }
    if (!found) {
        memset(slot, 0, sizeof *slot);
        memcpy(slot->route, in->route, in->route_len);
        slot->route_len = in->route_len;
        slot->msg = msg;
    }
    slot->used = ++p->log_clock;
    slot->n_since++;
    if (slot->logged_ns && now - slot->logged_ns < (uint64_t)PEER_LOG_INTERVAL_S * 1000000000u)
        return;
    for (size_t i = 0; i < in->route_len && i < 32; i++)
        snprintf(route + 2 * i, 3, "%02x", in->route[i]);
    log_msg(level, msg, "peer=%s address=\"%s\" count=%" PRIu64 " interval_s=%u %s", route, in->peer_address,
            slot->n_since, PEER_LOG_INTERVAL_S, detail);
    slot->n_since = 0;
    slot->logged_ns = now;
}

/* A line of r's kind (msg, detail): logged unless r had one less than
 * PEER_LOG_INTERVAL_S ago (the next one then says how many there were). */
static void rate_log(struct rate_log *r, int level, const char *msg, const char *detail)
{
    uint64_t now = link_monotonic_ns();

    r->n_since++;
    if (r->logged_ns && now - r->logged_ns < (uint64_t)PEER_LOG_INTERVAL_S * 1000000000u)
        return;
    log_msg(level, msg, "count=%" PRIu64 " interval_s=%u %s", r->n_since, PEER_LOG_INTERVAL_S, detail);
    r->n_since = 0;
    r->logged_ns = now;
}

/* Drops the peer of a refused message (msg: the log line, a string
 * constant per kind; why: the reason). */
static void drop_peer(struct repl_primary *p, const struct link_in *in, const char *msg, const char *why)
{
    struct peer *peer = peer_by_route(p, in->route, in->route_len);
    char detail[WIRE_NAME_MAX + 600];

    snprintf(detail, sizeof detail, "standby=\"%s\" error=\"%s\"", peer ? peer->id : "(unknown)", why);
    peer_event(p, in, LOG_WARN, msg, detail);
    if (peer)
        memset(peer, 0, sizeof *peer);
    if (in->route_len) {
        size_t slot = p->n_dropped_next++ % WIRE_MAX_STANDBYS;
        memcpy(p->dropped[slot].route, in->route, in->route_len);
        p->dropped[slot].len = in->route_len;
    }
    p->n_dropped_peers++;
    update_needed(p);
}

/* A dropped routing id: ignored until it says HELLO (which forgives it). */
static int is_dropped(struct repl_primary *p, const struct link_in *in, int forgive)
{
    for (size_t i = 0; i < WIRE_MAX_STANDBYS; i++)
        if (p->dropped[i].len == in->route_len && in->route_len &&
            memcmp(p->dropped[i].route, in->route, in->route_len) == 0) {
            if (forgive)
                p->dropped[i].len = 0;
            return !forgive;
        }
    return 0;
}

/* Sorts v[0..n) descending (n <= 64). */
static void sort_descending(uint64_t *v, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++)
        for (uint32_t j = i; j > 0 && v[j] > v[j - 1]; j--) {
            uint64_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

static void update_replicated(struct repl_primary *p)
{
    uint64_t lsns[WIRE_MAX_STANDBYS], seqs[WIRE_MAX_STANDBYS];
    uint32_t k = p->c->repl_min_replicas, n = 0;

    if (k == 0)
        return; /* the node moves it with the durable cursor */
    /* gated: the counted set is read and the cursor moved under one hold
     * of lock, so a plan (repl_primary_sync_plan) sees every move made
     * with a standby it removes, and none after */
    if (p->gated)
        pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < WIRE_MAX_STANDBYS; i++)
        if (p->peers[i].used && (!p->gated || sync_counted(p, p->peers[i].id))) {
            seqs[n] = counted_seq(&p->peers[i]);
            lsns[n++] = p->peers[i].acked_lsn;
        }
    if (n >= k) {
        /* the k-th highest, and never past what is durable here: the
         * standbys may hold an entry before the drain's fsync of it
         * returned.  Then the drain wakes this thread once it has
         * (repl_primary_durable).  seq_cst: acks_ahead is set before
         * durable_seq is read here, and the drain stores durable_seq
         * before it reads acks_ahead, so one of the two sees the other
         * (the drain's fence is in repl_primary_durable); the durable
         * cursor, moved before durable_seq, is read after it. */
        sort_descending(lsns, n);
        sort_descending(seqs, n);
        atomic_store(&p->acks_ahead, 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (seqs[k - 1] <= atomic_load(&p->durable_seq))
            atomic_store(&p->acks_ahead, 0);
        uint64_t lsn = lsns[k - 1], durable = atomic_load(&ring_header_of(p->ring)->durable_lsn);
        if (lsn > durable)
            lsn = durable;
        if (lsn > p->replicated_lsn) {
            p->replicated_lsn = lsn;
            if (seqs[k - 1] > p->sync.replicated_seq)
                p->sync.replicated_seq = seqs[k - 1]; /* S2: k counted standbys hold up to it */
            ring_set_replicated(p->ring, p->replicated_lsn);
        }
    }
    if (p->gated)
        pthread_mutex_unlock(&p->lock);
}

static void acked(struct repl_primary *p, struct peer *peer, uint64_t seq, uint64_t journal_seq)
{
    /* More than this primary holds: that journal is another history (a
     * primary restored to an earlier point, or a wiped one); counting it,
     * even lowered to journal_seq, would tell engines that records are
     * replicated which no standby holds.  on_hello refuses such a peer.
     * What it holds includes the entry the drain published ahead of its
     * fsync (held_seq); the cursor waits for that fsync (update_replicated). */
    if (seq > held_seq(p, journal_seq))
        return;
    if (seq <= peer->acked_seq)
        return;
    /* up to an unverified HELLO's last entry: listed, never counted (that
     * entry may be another than ours under the same seq: hello_matches) */
    uint64_t lsn = counts(peer, seq) ? covered_lsn(p, seq) : 0;
    peer->acked_seq = seq;
    if (seq > atomic_load(&p->max_acked))
        atomic_store(&p->max_acked, seq); /* only this thread writes it */
    if (lsn > peer->acked_lsn)
        peer->acked_lsn = lsn;
    update_needed(p);
    update_replicated(p);
}

/* A reply to the peer of in.  The ROUTER is ZMQ_ROUTER_MANDATORY, so a
 * reply it cannot queue fails here instead of vanishing: EHOSTUNREACH, the
 * peer is gone; EAGAIN, its pipe is at ROUTER_HWM as this thread last saw
 * it.  That view is what the socket last learnt from its commands (libzmq
 * tells the writer how far the I/O thread has read a pipe with a command
 * every ROUTER_HWM / 2 messages, taken in only when the socket processes
 * its commands), and it can be stale: on fresh connections of a primary
 * just started, under load, the 17th of 20 request/reply round trips found
 * the pipe "full" (16 unread) although the peer had read every reply, in 4
 * of 100 runs -- and, the ROUTER not being mandatory then, the reply was
 * dropped without a word and the peer waited for it forever (test_repl's
 * identities cases, under load).  So on EAGAIN the commands are processed
 * (ZMQ_EVENTS) and the send tried once more: it went through in each of
 * those cases.  Still full, the peer has not read ROUTER_HWM replies: the
 * reply is dropped, counted (replies_dropped) and logged. */
static void reply(struct repl_primary *p, const struct link_in *in, const struct wire_msg *m)
{
    char why[256];
    int rc = link_send(p->router, in->route, in->route_len, m, why, sizeof why);

    if (rc == EAGAIN) {
        int events = 0;
        size_t size = sizeof events;
        zmq_getsockopt(p->router, ZMQ_EVENTS, &events, &size);
        rc = link_send(p->router, in->route, in->route_len, m, why, sizeof why);
    }
    if (rc == EAGAIN || rc == EHOSTUNREACH) {
        char detail[300];
        p->n_reply_drops++;
        snprintf(detail, sizeof detail, "reply=%s error=\"%s\"", wire_type_name(m->type),
                 rc == EAGAIN ? "the peer has not read the replies queued before (high-water mark)"
                              : "the peer is gone");
        peer_event(p, in, LOG_WARN, "reply to a peer dropped", detail);
    } else if (rc) {
        log_msg(LOG_WARN, "cannot answer a standby", "error=\"%s\"", why);
    }
}

static void reply_error(struct repl_primary *p, const struct link_in *in, uint32_t code, const char *text)
{
    struct wire_msg m = {.type = WIRE_ERROR, .epoch = p->epoch};
    m.u.error.code = code;
    snprintf(m.u.error.text, sizeof m.u.error.text, "%s", text);
    reply(p, in, &m);
}

static uint64_t first_seq(struct repl_primary *p, uint64_t journal_seq)
{
    uint64_t first = 0;
    return store_journal_first(p->s, &first) == 0 ? first : journal_seq + 1;
}

/* Whether the standby's last entry, as its HELLO describes it, is on this
 * primary's history: the same epoch for its seq (log matching: an epoch
 * has one writer), and the same bytes (XXH64) when both hold it.  Only
 * then is what it holds counted; a standby ahead of this journal never is.
 * *verified is 0 when it matches by the epoch alone although it sent its
 * entry's hash, because the entry is trimmed here (it then bootstraps).
 * The epoch alone does not tell for a last entry: a primary that lost an
 * entry it published before its fsync (a power cut) writes another under
 * the same seq and epoch after its restart, and trims past it; what such
 * a standby says it holds is listed, not counted (counted_seq).  (A
 * standby that sends no hash, after a bootstrap, is taken on the epoch as
 * before.) */
static int hello_matches(struct repl_primary *p, const struct wire_hello *h, uint64_t journal_seq,
                         int *verified)
{
    uint8_t *entry = NULL;
    size_t len = 0;
    int rc, same;

    *verified = 1;
    if (h->last_seq == 0)
        return 1;
    if (h->last_seq > journal_seq || store_epoch_of(p->s, h->last_seq) != h->last_epoch)
        return 0;
    rc = h->has_last_xxh ? store_journal_get_raw(p->s, h->last_seq, &entry, &len) : RK_ENOTFOUND;
    if (rc == RK_ENOTFOUND && h->has_last_xxh && h->last_seq + 1 == first_seq(p, journal_seq)) {
        /* trimmed here, and the standby would go on from our first entry:
         * its last one may be one a primary published before its fsync
         * and lost (issue 13.6), so the epoch does not tell; the trim
         * recorded what it was */
        uint64_t tail_seq = 0, tail_xxh = 0;
        return store_journal_trimmed_tail(p->s, &tail_seq, &tail_xxh) == 0 && tail_seq == h->last_seq &&
               tail_xxh == h->last_xxh;
    }
    if (rc == RK_ENOTFOUND) {
        *verified = !h->has_last_xxh;
        return 1; /* trimmed here (it bootstraps), or not held there: the epoch tells */
    }
    same = rc == 0 && wire_entry_xxh(entry, len) == h->last_xxh;
    free(entry);
    return same;
}

/* Whether a standby was heard lately enough to keep its node_id from
 * another connection (it acks every heartbeat). */
static int peer_live(const struct repl_primary *p, const struct peer *peer, uint64_t now)
{
    uint64_t live = (uint64_t)p->c->repl_heartbeat_ms * 1000000u * PEER_LIVE_BEATS;
    return !peer->disconnected && now - peer->heard_ns < (live > PEER_LIVE_MIN_NS ? live : PEER_LIVE_MIN_NS);
}

/* Whether the drain must wait for the standbys' apply (issue 13.7): with
 * min_replicas = k > 0 and [apply] max_lag_ms set, while fewer than k of
 * the standbys that count (counted under [ha], heard lately: peer_live)
 * have their apply within max_lag_ms of work behind and at least one of
 * them reports more.  k standbys must keep up with the journal for a
 * record to be replicated; these k must keep up with applying it too, so
 * that a promotion, a clean stop or a state open on one of them finds at
 * most about max_lag_ms of apply work, as on the primary (apply_behind,
 * node/primary.c).  A standby that reports nothing (one before the ACK's
 * apply elements) is taken as keeping up; with min_replicas = 0 the
 * standbys' apply is reported, never waited for: no standby is needed
 * for the primary to go on.  Replicator thread. */
static void update_apply_hold(struct repl_primary *p)
{
    uint32_t k = p->c->repl_min_replicas, within = 0, over = 0;
    uint64_t now = link_monotonic_ns();

    if (k && p->c->max_lag_ms) {
        if (p->gated)
            pthread_mutex_lock(&p->lock);
        for (size_t i = 0; i < WIRE_MAX_STANDBYS; i++) {
            const struct peer *peer = &p->peers[i];
            if (!peer->used || !peer_live(p, peer, now) || (p->gated && !sync_counted(p, peer->id)))
                continue;
            if (peer->apply_reported && peer->apply_lag_ms > p->c->max_lag_ms)
                over++;
            else
                within++;
        }
        if (p->gated)
            pthread_mutex_unlock(&p->lock);
    }
    int hold = over > 0 && within < k;
    if (atomic_exchange(&p->apply_held, hold) == hold)
        return;
    if (hold)
        p->n_apply_holds++;
    else if (p->apply_caught_up)
        p->apply_caught_up(p->apply_caught_up_arg); /* the drain waits on it: at once, not at its next look */
    log_msg(LOG_DEBUG,
            hold ? "drain held: a counted standby's apply lags" : "drain released: standbys' apply caught up",
            "standbys_within=%" PRIu32 " standbys_over=%" PRIu32 " max_lag_ms=%" PRIu32, within, over,
            p->c->max_lag_ms);
}

/* The slot a HELLO from connection in takes, or NULL with the refusal's
 * code and reason.  A node_id is one standby's:
 *   - with CURVE, only the connection whose key authorized_keys binds to it
 *     may use it (a key acks only for its own id); a new connection of
 *     that key takes the slot over at once (the standby, reconnected);
 *   - without CURVE, a connection takes over an id held by another only
 *     once the holder has been silent PEER_LIVE_BEATS heartbeats (and
 *     PEER_LIVE_MIN_NS), so another peer's HELLO under a live standby's
 *     name neither resets its acks nor takes its route.
 * A full table gives up, for a HELLO that matched (may_evict), its least
 * recently heard silent slot, else the live one that has replicated
 * nothing since its HELLO (acked_seq <= hello_seq: it took in no entry
 * from here), the earliest to say HELLO: a peer that only keeps a name
 * alive (ACKs of what it said it held) cannot lock a standby out, and a
 * standby that replicates is never forgotten for a newcomer.  Without
 * CURVE a peer can also ACK entries it never took (the heartbeats say how
 * many there are): that is a standby as far as this side can tell (only
 * CURVE tells them apart).  With CURVE ids are bound keys' (at most
 * WIRE_MAX_STANDBYS), so the table never fills with names no key holds. */
static struct peer *hello_slot(struct repl_primary *p, const struct link_in *in, int may_evict,
                               uint32_t *code, char *why, size_t why_size)
{
    const char *id = in->m.u.hello.node_id;
    uint64_t now = link_monotonic_ns();
    struct peer *peer = peer_by_route(p, in->route, in->route_len), *holder = NULL, *slot = NULL,
                *oldest = NULL, *idle = NULL;
    char detail[2 * WIRE_NAME_MAX + 128];

    *code = WIRE_ERR_IDENTITY;
    if (p->zap && strcmp(in->user_id, id) != 0) {
        if (in->user_id[0])
            snprintf(why, why_size, "node_id \"%s\" is not the one authorized_keys binds to this CURVE key",
                     id);
        else
            snprintf(
                why, why_size,
                "node_id \"%s\": this CURVE key is bound to no node_id in authorized_keys (it may monitor, "
                "not act as a standby)",
                id);
        return NULL;
    }
    if (peer && strcmp(peer->id, id) != 0) {
        memset(peer, 0, sizeof *peer); /* the connection takes another name: its old one is free */
        update_needed(p);
        peer = NULL;
    }
    if (peer)
        return peer;
    for (size_t i = 0; i < WIRE_MAX_STANDBYS; i++) {
        struct peer *q = &p->peers[i];
        if (q->used && strcmp(q->id, id) == 0)
            holder = q;
        else if (!q->used && !slot)
            slot = q; /* a free one */
    }
    if (holder) {
        if (p->zap || !peer_live(p, holder, now))
            return holder;
        snprintf(why, why_size, "node_id \"%s\" is held by a live connection; say HELLO again later", id);
        return NULL;
    }
    for (size_t i = 0; !slot && may_evict && i < WIRE_MAX_STANDBYS; i++) {
        /* full: the least recently heard silent one, else the earliest
         * HELLO of those live that replicated nothing since */
        struct peer *q = &p->peers[i];
        if (!peer_live(p, q, now) && (!oldest || q->heard_ns < oldest->heard_ns))
            oldest = q;
        else if (q->acked_seq <= q->hello_seq && (!idle || q->hello_ns < idle->hello_ns))
            idle = q;
    }
    if (!slot && (oldest || idle)) {
        slot = oldest ? oldest : idle;
        snprintf(detail, sizeof detail,
                 "standby=\"%s\" acked_seq=%" PRIu64 " hello_seq=%" PRIu64 " new=\"%s\"", slot->id,
                 slot->acked_seq, slot->hello_seq, id);
        if (oldest)
            rate_log(&p->silent_log, LOG_INFO, "silent standby forgotten for a new one", detail);
        else
            rate_log(&p->evicted_log, LOG_WARN,
                     "live standby that replicated nothing forgotten for a new one", detail);
        p->n_evicted++;
        memset(slot, 0, sizeof *slot);
        update_needed(p);
    }
    if (!slot) {
        *code = WIRE_ERR_BAD_REQUEST;
        snprintf(why, why_size, "too many standbys (%u, every one live and replicating)", WIRE_MAX_STANDBYS);
    }
    return slot;
}

/* WELCOME for a HELLO whose last entry matched or not. */
static void welcome(struct repl_primary *p, const struct link_in *in, const struct repl_progress *np,
                    int matched)
{
    struct wire_msg m = {.type = WIRE_WELCOME, .epoch = p->epoch};
    if (store_history(p->s, &m.u.welcome.history, &m.u.welcome.n_history) != 0)
        return; /* out of memory: it says HELLO again */
    m.u.welcome.matched = matched;
    m.u.welcome.has_hello_last_seq = 1; /* which HELLO this answers: a standby may have sent another */
    m.u.welcome.hello_last_seq = in->m.u.hello.last_seq;
    m.u.welcome.first_seq = first_seq(p, np->journal_seq);
    m.u.welcome.last_seq = np->journal_seq;
    if (m.u.welcome.first_seq > m.u.welcome.last_seq + 1)
        m.u.welcome.first_seq = m.u.welcome.last_seq + 1;
    if (p->has_newest && p->newest.journal_seq <= np->journal_seq) {
        m.u.welcome.has_checkpoint = 1;
        m.u.welcome.checkpoint = p->newest;
    }
    reply(p, in, &m);
    free(m.u.welcome.history);
}

/* A monitor's HELLO: WELCOME, and nothing else.  It takes no standby slot
 * (a standby slot this connection held is given up), is never listed in
 * heartbeats nor counted for min_replicas, does not hold the journal back,
 * and its ACKs are ignored; FETCH and SNAPSHOT serve it as anyone.  Any
 * authorized CURVE key may monitor. */
static void on_monitor_hello(struct repl_primary *p, const struct link_in *in, const struct repl_progress *np)
{
    struct peer *peer = peer_by_route(p, in->route, in->route_len);

    if (peer) {
        memset(peer, 0, sizeof *peer);
        update_needed(p);
    }
    p->n_monitor_hellos++;
    log_msg(LOG_DEBUG, "monitor said hello", "monitor=\"%s\"", in->m.u.hello.node_id);
    int verified;
    welcome(p, in, np, hello_matches(p, &in->m.u.hello, np->journal_seq, &verified));
}

static void on_hello(struct repl_primary *p, const struct link_in *in, const struct repl_progress *np)
{
    const struct wire_hello *h = &in->m.u.hello;
    char why[WIRE_TEXT_MAX + 1], detail[WIRE_TEXT_MAX + 32];
    uint32_t code = 0;
    struct peer *peer = NULL;

    if (h->monitor) {
        on_monitor_hello(p, in, np);
        return;
    }
    if (!h->checks_prev)
        p->old_seen = 1; /* no entry before the fsync from now on (update_needed) */
    int verified = 0;
    int matched = hello_matches(p, h, np->journal_seq, &verified);
    peer = hello_slot(p, in, matched, &code, why, sizeof why);
    if (!peer) {
        p->n_hellos_refused++;
        snprintf(detail, sizeof detail, "error=\"%s\"", why);
        peer_event(p, in, LOG_WARN, "HELLO refused", detail);
        reply_error(p, in, code, why);
        return;
    }
    if (!peer->used || strcmp(peer->id, h->node_id) != 0) {
        memset(peer, 0, sizeof *peer);
        peer->hello_ns = link_monotonic_ns();
        log_msg(LOG_INFO, "standby said hello", "standby=\"%s\" last_seq=%" PRIu64, h->node_id, h->last_seq);
    }
    if (!matched) {
        log_msg(LOG_WARN, "standby not counted: its last entry is not on this primary's history",
                "standby=\"%s\" last_seq=%" PRIu64 " last_epoch=%" PRIu64 " journal_seq=%" PRIu64
                " epoch_here=%" PRIu64,
                h->node_id, h->last_seq, h->last_epoch, np->journal_seq,
                h->last_seq <= np->journal_seq ? store_epoch_of(p->s, h->last_seq) : 0);
        /* neither counted nor listed; WELCOME tells it, with this
         * history, and it sets aside what lies past the fork point */
        peer->used = 0;
        update_needed(p);
    } else {
        /* what it says now is what it holds: an older ACK of the same id
         * (before it lost its data, say) no longer counts */
        peer->acked_seq = 0;
        peer->acked_lsn = 0;
        peer->apply_reported = 0;      /* its apply too: until its next ACK says */
        peer->hello_seq = h->last_seq; /* it replicates once it acks past this */
        peer->hello_unverified = !verified; /* then acks up to hello_seq do not count (acked) */
        peer->checks_prev = h->checks_prev;
        peer->used = 1;
        peer->heard_ns = link_monotonic_ns();
        peer->fd = in->src_fd;
        peer->disconnected = 0;
        update_needed(p);
        memcpy(peer->route, in->route, in->route_len);
        peer->route_len = in->route_len;
        snprintf(peer->id, sizeof peer->id, "%s", h->node_id);
        sync_mirror(p); /* update_needed above ran before the id was set */
        /* what its journal holds is fsynced: as good as an ACK, once its
         * last entry was compared with ours */
        acked(p, peer, h->last_seq, np->journal_seq);
    }

    /* a standby that does not check prev_xxh is welcomed only once no
     * entry is out ahead of the fsync (early is off now): it would take
     * that entry from its SUB queue or a FETCH; its HELLO comes again
     * within a second */
    if (!h->checks_prev && held_seq(p, 0) > atomic_load(&p->durable_seq)) {
        log_msg(LOG_DEBUG, "HELLO answered later: an entry is out ahead of the fsync",
                "standby=\"%s\"", h->node_id);
        return;
    }
    welcome(p, in, np, matched);
    /* the next heartbeat half an interval after the last at most, not up
     * to heartbeat_ms later: a standby learns sooner what the others
     * acknowledged (until it hears one, its promotion says that is
     * unknown: node/standby.c, standby_promote_answer), and the others
     * learn of it.  Not at once: a standby compares each heartbeat's list
     * with its ACK of two heartbeats before (replicator/standby.c), and
     * heartbeats in quick succession, one per welcome, would make it take
     * an ACK still on its way for one lost, and say HELLO again */
    p->heartbeat_now = 1;
}

static void on_fetch(struct repl_primary *p, const struct link_in *in, const struct repl_progress *np)
{
    const struct wire_fetch *f = &in->m.u.fetch;
    struct wire_entry *entries = NULL;
    uint8_t **bufs = NULL;
    uint32_t n = 0;
    size_t bytes = 0;
    /* up to what is durable, or written and published ahead of the fsync
     * for a standby that checks prev_xxh (a monitor, or a standby of an
     * earlier build, would take it without that check) */
    struct peer *asker = peer_by_route(p, in->route, in->route_len);
    uint64_t durable = atomic_load(&p->durable_seq);
    uint64_t held = asker && asker->checks_prev ? np->journal_seq : durable < np->journal_seq ? durable : np->journal_seq;
    uint64_t to = f->to_seq < held ? f->to_seq : held;
    int more = 0;

    if (f->from_seq < first_seq(p, np->journal_seq) && f->from_seq <= np->journal_seq) {
        reply_error(p, in, WIRE_ERR_TRIMMED, "entries asked for are no longer held");
        return;
    }
    entries = calloc(WIRE_MAX_ENTRIES, sizeof *entries);
    bufs = calloc(WIRE_MAX_ENTRIES, sizeof *bufs);
    if (!entries || !bufs)
        goto out;
    for (uint64_t seq = f->from_seq; seq <= to; seq++) {
        if (n == WIRE_MAX_ENTRIES || bytes >= WIRE_ENTRIES_TARGET) {
            more = 1;
            break;
        }
        size_t len = 0;
        int rc = store_journal_get_raw(p->s, seq, &bufs[n], &len);
        if (rc) {
            more = n > 0; /* trimmed meanwhile: the next FETCH is told */
            if (n == 0) {
                reply_error(p, in, WIRE_ERR_TRIMMED, "entries asked for are no longer held");
                goto out;
            }
            break;
        }
        entries[n].seq = seq;
        entries[n].bytes = bufs[n];
        entries[n].len = len;
        bytes += len;
        n++;
    }
    struct wire_msg m = {.type = WIRE_ENTRIES, .epoch = p->epoch};
    m.u.entries.n_entries = n;
    m.u.entries.entries = entries;
    m.u.entries.more = more;
    m.u.entries.has_prev_xxh = n > 0 && held_xxh(p, f->from_seq - 1, &m.u.entries.prev_xxh);
    reply(p, in, &m);
out:
    for (uint32_t i = 0; bufs && i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(entries);
}

static void on_snapshot(struct repl_primary *p, const struct link_in *in)
{
    const struct wire_snapshot *r = &in->m.u.snapshot;
    char path[PATH_MAX + WIRE_FILE_MAX + 16];
    size_t name_len = strlen(r->name);
    uint8_t *data = NULL;
    struct stat st;
    int fd = -1;

    snprintf(path, sizeof path, "%s/checkpoints/%s", p->c->data_dir, r->name);
    if (name_len < sizeof CKPT_SUFFIX ||
        strcmp(r->name + name_len - (sizeof CKPT_SUFFIX - 1), CKPT_SUFFIX) != 0 || r->name[0] == '.' ||
        (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
        reply_error(p, in, WIRE_ERR_NO_FILE, "no such checkpoint file");
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size,
             mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    size_t slot = 0;
    int cached = 0;
    for (size_t i = 0; i < XXH_CACHE && !cached; i++) {
        if (strcmp(p->xxh_cache[i].name, r->name) == 0 && p->xxh_cache[i].size == size &&
            p->xxh_cache[i].mtime_ns == mtime) {
            slot = i;
            cached = 1;
        } else if (p->xxh_cache[i].used < p->xxh_cache[slot].used) {
            slot = i; /* the least recently used, to be replaced */
        }
    }
    if (!cached) {
        if (link_file_xxh64(fd, &p->xxh_cache[slot].xxh) != 0) {
            p->xxh_cache[slot].name[0] = '\0';
            reply_error(p, in, WIRE_ERR_NO_FILE, "checkpoint file unreadable");
            goto out;
        }
        snprintf(p->xxh_cache[slot].name, sizeof p->xxh_cache[slot].name, "%s", r->name);
        p->xxh_cache[slot].size = size;
        p->xxh_cache[slot].mtime_ns = mtime;
    }
    p->xxh_cache[slot].used = ++p->xxh_clock;
    if (r->offset > size) {
        reply_error(p, in, WIRE_ERR_BAD_REQUEST, "offset beyond the end of the file");
        goto out;
    }
    size_t len = size - r->offset < r->max_len ? (size_t)(size - r->offset) : r->max_len;
    data = malloc(len ? len : 1);
    if (!data || (len && pread(fd, data, len, (off_t)r->offset) != (ssize_t)len)) {
        reply_error(p, in, WIRE_ERR_NO_FILE, "checkpoint file unreadable");
        goto out;
    }
    struct wire_msg m = {.type = WIRE_CHUNK, .epoch = p->epoch};
    snprintf(m.u.chunk.name, sizeof m.u.chunk.name, "%s", r->name);
    m.u.chunk.offset = r->offset;
    m.u.chunk.total_size = size;
    m.u.chunk.file_xxh64 = p->xxh_cache[slot].xxh;
    m.u.chunk.data = data;
    m.u.chunk.len = (uint32_t)len;
    reply(p, in, &m);
out:
    free(data);
    if (fd >= 0)
        close(fd);
}

static const char BAD_MESSAGE[] =
    "bad message from a peer: dropped"; /* drop_peer's line, peer_event's kind */

static void serve(struct repl_primary *p)
{
    struct repl_progress np;

    p->progress(p->progress_arg, &np);
    /* HELLO, FETCH and ACK are answered on what this primary holds,
     * the entry published ahead of its fsync included: a standby that
     * holds it is on this history */
    np.journal_seq = held_seq(p, np.journal_seq);
    for (int i = 0; i < RECV_BURST; i++) {
        struct link_in in;
        char why[512] = "";
        int newer = 0, rc = link_recv(p->router, 1, &in, why, sizeof why);

        if (rc == EAGAIN || rc == EINTR) {
            link_in_free(&in);
            break;
        }
        if (in.max_part_len > ROUTER_MAX_REQUEST) {
            /* under ROUTER_CUT_SIZE, so ZeroMQ let it through: refused
             * here, answered, its peer dropped (whatever it decoded to) */
            char text[WIRE_TEXT_MAX + 1];
            p->n_oversized++;
            snprintf(text, sizeof text, "a request frame of %zu bytes: requests are at most %u bytes",
                     in.max_part_len, ROUTER_MAX_REQUEST);
            reply_error(p, &in, WIRE_ERR_BAD_REQUEST, text);
            drop_peer(p, &in, "oversized request from a peer: dropped", text);
        } else if (rc == RK_EVERSION && in.route_len) {
            /* an older (or newer) peer: told so in our version, then dropped */
            char text[WIRE_TEXT_MAX + 1];
            snprintf(text, sizeof text, "this primary speaks protocol version %u: %.200s", WIRE_VERSION, why);
            reply_error(p, &in, WIRE_ERR_VERSION, text);
            drop_peer(p, &in, BAD_MESSAGE, why);
        } else if (rc) {
            drop_peer(p, &in, BAD_MESSAGE, why);
        } else if (in.m.type != WIRE_HELLO && in.m.type != WIRE_FETCH && in.m.type != WIRE_ACK &&
                   in.m.type != WIRE_SNAPSHOT) {
            snprintf(why, sizeof why, "%s is not a request", wire_type_name(in.m.type));
            drop_peer(p, &in, BAD_MESSAGE, why);
        } else if (is_dropped(p, &in, in.m.type == WIRE_HELLO)) {
            log_msg(LOG_DEBUG, "message from a dropped peer ignored", "type=%s", wire_type_name(in.m.type));
        } else if (wire_check_epoch(p->epoch, in.m.epoch, &newer, why, sizeof why) != 0) {
            char detail[600];
            p->n_lower_epoch++;
            snprintf(detail, sizeof detail, "error=\"%s\"", why);
            peer_event(p, &in, LOG_WARN, "request from a lower epoch refused", detail);
            reply_error(p, &in, WIRE_ERR_EPOCH, "your epoch is lower than mine");
        } else if (newer) {
            /* another node was promoted: this one steps down (the node
             * fences its ring); the request is not served */
            char detail[96];
            p->n_higher_epoch++;
            snprintf(detail, sizeof detail, "epoch=%" PRIu64 " theirs=%" PRIu64, p->epoch, in.m.epoch);
            peer_event(p, &in, LOG_ERROR, "request from a higher epoch: another node was promoted", detail);
            if (p->higher_epoch)
                p->higher_epoch(p->higher_epoch_arg, in.m.epoch);
        } else if (in.m.type == WIRE_HELLO) {
            on_hello(p, &in, &np);
        } else if (in.m.type == WIRE_FETCH) {
            on_fetch(p, &in, &np);
        } else if (in.m.type == WIRE_SNAPSHOT) {
            on_snapshot(p, &in);
        } else {
            struct peer *peer = peer_by_route(p, in.route, in.route_len);
            if (peer) {
                acked(p, peer, in.m.u.ack.durable_seq, np.journal_seq);
                peer->apply_reported = in.m.u.ack.has_apply;
                peer->applied_seq = in.m.u.ack.applied_seq;
                peer->apply_lag_ms = in.m.u.ack.apply_lag_ms;
            }
        }
        if (rc == 0) {
            struct peer *peer = peer_by_route(p, in.route, in.route_len);
            if (peer)
                peer->heard_ns = link_monotonic_ns();
        }
        link_in_free(&in);
    }
}

/* ------------------------------------------------------------ CURVE */

/* Reads the authorized_keys file: one Z85 key per line, optionally followed
 * by blanks and the node_id the key is bound to; '#' comments.  A key
 * listed twice is refused (which id would it have?); at most
 * WIRE_MAX_STANDBYS distinct ids, so that the standbys' table always has a
 * slot for each bound id. */
static int load_authorized(struct repl_primary *p)
{
    FILE *f = fopen(p->c->curve_authorized_keys, "re");
    char line[256];
    unsigned lineno = 0;
    int rc = 0;

    if (!f) {
        rc = errno;
        log_msg(LOG_ERROR, "cannot read authorized_keys", "file=\"%s\" error=\"%s\"",
                p->c->curve_authorized_keys, strerror(rc));
        return rc;
    }
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n"), n_ids = 0;
        lineno++;
        line[len] = '\0';
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        void *grown = realloc(p->authorized, (p->n_authorized + 1) * sizeof *p->authorized);
        if (!grown) {
            rc = ENOMEM;
            goto out;
        }
        p->authorized = grown;
        struct authorized_key *k = &p->authorized[p->n_authorized];
        const char *id = line + CONFIG_Z85_KEY;
        memset(k, 0, sizeof *k);
        if (len < CONFIG_Z85_KEY || (len > CONFIG_Z85_KEY && *id != ' ' && *id != '\t')) {
            log_msg(LOG_ERROR, "authorized_keys: not a CURVE public key (40 characters of Z85)",
                    "file=\"%s\" line=%u", p->c->curve_authorized_keys, lineno);
            rc = RK_EINVAL;
            goto out;
        }
        id += len > CONFIG_Z85_KEY; /* past the blank the key is cut at */
        line[CONFIG_Z85_KEY] = '\0';
        if (!zmq_z85_decode(k->key, line)) {
            log_msg(LOG_ERROR, "authorized_keys: not a CURVE public key (40 characters of Z85)",
                    "file=\"%s\" line=%u", p->c->curve_authorized_keys, lineno);
            rc = RK_EINVAL;
            goto out;
        }
        id += strspn(id, " \t");
        if (strlen(id) > WIRE_NAME_MAX || strcspn(id, " \t") != strlen(id)) {
            log_msg(LOG_ERROR, "authorized_keys: a node_id after the key is 1 to 47 bytes without blanks",
                    "file=\"%s\" line=%u", p->c->curve_authorized_keys, lineno);
            rc = RK_EINVAL;
            goto out;
        }
        snprintf(k->id, sizeof k->id, "%s", id);
        for (size_t i = 0; i < p->n_authorized; i++) {
            if (memcmp(p->authorized[i].key, k->key, sizeof k->key) == 0) {
                log_msg(LOG_ERROR, "authorized_keys: a key is listed twice (one line per key)",
                        "file=\"%s\" line=%u", p->c->curve_authorized_keys, lineno);
                rc = RK_EINVAL;
                goto out;
            }
        }
        p->n_authorized++;
        for (size_t i = 0; i < p->n_authorized; i++) {
            int first = p->authorized[i].id[0] != '\0';
            for (size_t j = 0; first && j < i; j++)
                first = strcmp(p->authorized[j].id, p->authorized[i].id) != 0;
            n_ids += first;
        }
        if (n_ids > WIRE_MAX_STANDBYS) {
            log_msg(LOG_ERROR, "authorized_keys: more node_ids than a primary has standby slots",
                    "file=\"%s\" line=%u max=%u", p->c->curve_authorized_keys, lineno, WIRE_MAX_STANDBYS);
            rc = RK_EINVAL;
            goto out;
        }
    }
    if (!p->n_authorized) {
        log_msg(LOG_ERROR, "authorized_keys holds no key", "file=\"%s\"", p->c->curve_authorized_keys);
        rc = RK_EINVAL;
    }
out:
    fclose(f);
    return rc;
}

/* One ZAP request (RFC 27): frames version, request id, domain, address,
 * identity, mechanism, then the client's 32-byte public key for CURVE.
 * 200 when the key is authorized, 400 otherwise. */
static void serve_zap(struct repl_primary *p)
{
    zmq_msg_t frames[8];
    int n = 0, more = 1;
    size_t more_size = sizeof more;

    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, p->zap, n ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            break;
        }
        if (zmq_getsockopt(p->zap, ZMQ_RCVMORE, &more, &more_size))
            more = 0;
        if (n < 8)
            frames[n++] = part;
        else
            zmq_msg_close(&part);
    }
    if (n < 2)
        goto out;
    const struct authorized_key *ok = NULL;
    if (n >= 7 && zmq_msg_size(&frames[5]) == 5 && memcmp(zmq_msg_data(&frames[5]), "CURVE", 5) == 0 &&
        zmq_msg_size(&frames[6]) == 32)
        for (size_t i = 0; i < p->n_authorized && !ok; i++)
            if (memcmp(p->authorized[i].key, zmq_msg_data(&frames[6]), 32) == 0)
                ok = &p->authorized[i];
    if (!ok) {
        p->n_refused_keys++;
        log_msg(LOG_WARN, "CURVE peer refused: key not in authorized_keys", NULL);
    }
    zmq_send(p->zap, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(p->zap, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), ZMQ_SNDMORE);
    zmq_send(p->zap, ok ? "200" : "400", 3, ZMQ_SNDMORE);
    zmq_send(p->zap, ok ? "OK" : "not authorized", ok ? 2 : 14, ZMQ_SNDMORE);
    /* the user id: the node_id the key is bound to, which every message
     * of that connection then carries ("User-Id", link_in.user_id) */
    zmq_send(p->zap, ok ? ok->id : "", ok ? strlen(ok->id) : 0, ZMQ_SNDMORE);
    zmq_send(p->zap, "", 0, 0);
out:
    for (int i = 0; i < n; i++)
        zmq_msg_close(&frames[i]);
}

/* ------------------------------------------------------------ heartbeat */

/* The status members known from the configuration alone (new object, NULL
 * when out of memory). */
static json_t *status_members(const struct node_config *c)
{
    return json_pack("{s:o, s:o, s:o}", "publish", json_cstr(c->repl_publish), "serve",
                     json_cstr(c->repl_serve), "min_replicas", json_uint(c->repl_min_replicas));
}

/* Whether standby id's acks count now (status). */
static int counted_now(struct repl_primary *p, const char *id)
{
    int counted = 1;

    if (p->gated) {
        pthread_mutex_lock(&p->lock);
        counted = sync_counted(p, id);
        pthread_mutex_unlock(&p->lock);
    }
    return counted;
}

static void heartbeat(struct repl_primary *p)
{
    struct repl_progress np;
    struct wire_standby standbys[WIRE_MAX_STANDBYS];
    const struct peer *listed[WIRE_MAX_STANDBYS];
    uint64_t now = link_monotonic_ns();
    uint64_t silent_ns = (uint64_t)p->c->repl_heartbeat_ms * 1000000u * PEER_SILENT_BEATS;
    uint32_t n = 0;
    char why[256];
    json_t *members = NULL, *list = NULL, *extra = NULL, *old = NULL;

    p->progress(p->progress_arg, &np);
    update_needed(p); /* early publishing, once the start's grace has passed */
    memset(standbys, 0, sizeof standbys);
    for (size_t i = 0; i < WIRE_MAX_STANDBYS; i++) {
        struct peer *peer = &p->peers[i];
        if (peer->used && now - peer->heard_ns > silent_ns) {
            /* gone: it no longer holds the journal back nor counts for
             * min_replicas; it says HELLO when it comes back */
            log_msg(LOG_INFO, "standby silent: forgotten", "standby=\"%s\" acked_seq=%" PRIu64, peer->id,
                    peer->acked_seq);
            memset(peer, 0, sizeof *peer);
            update_needed(p);
        }
        if (!peer->used)
            continue;
        listed[n] = peer;
        struct wire_standby *s = &standbys[n++];
        snprintf(s->id, sizeof s->id, "%s", peer->id);
        s->acked_seq = peer->acked_seq < np.journal_seq ? peer->acked_seq : np.journal_seq;
        s->lag_entries = np.journal_seq - s->acked_seq;
        if (s->lag_entries) {
            pthread_mutex_lock(&p->pub_lock);
            struct seq_info *si = &p->cache[(s->acked_seq + 1) % SEQ_CACHE];
            uint64_t since = si->seq == s->acked_seq + 1 ? si->journaled_ns : p->start_ns;
            pthread_mutex_unlock(&p->pub_lock);
            s->lag_ms = now > since ? (now - since) / 1000000u : 0;
        }
    }
    struct wire_msg m = {.type = WIRE_HEARTBEAT, .epoch = p->epoch};
    struct wire_heartbeat *hb = &m.u.heartbeat;
    hb->journal_seq = np.journal_seq;
    hb->applied_seq = np.applied_seq;
    hb->durable_lsn = np.durable_lsn;
    hb->applied_lsn = np.applied_lsn < np.durable_lsn ? np.applied_lsn : np.durable_lsn;
    hb->digest = np.digest;
    hb->digest_seq = np.digest_seq;
    hb->n_standbys = n;
    hb->standbys = standbys;
    hb->time_ns = link_realtime_ns();
    pthread_mutex_lock(&p->pub_lock);
    int rc = link_send(p->pub, NULL, 0, &m, why, sizeof why);
    pthread_mutex_unlock(&p->pub_lock);
    if (rc && rc != EAGAIN)
        log_msg(LOG_WARN, "cannot publish a heartbeat", "error=\"%s\"", why);

    /* the status members the control thread shows: every standby an
     * object; ids are bytes a peer chose (json_bytes.h) */
    list = json_array();
    for (uint32_t i = 0; list && i < n; i++)
        if (json_array_append_new(
                list,
                json_pack("{s:o, s:o, s:o, s:o, s:b, s:o, s:o}", "id", json_cstr(standbys[i].id), "acked_seq",
                          json_uint(standbys[i].acked_seq), "lag_entries", json_uint(standbys[i].lag_entries),
                          "lag_ms", json_uint(standbys[i].lag_ms), "counted", counted_now(p, standbys[i].id),
                          /* its apply as its last ACK said (null: it says nothing of it) */
                          "applied_seq",
                          listed[i]->apply_reported ? json_uint(listed[i]->applied_seq) : json_null(),
                          "apply_lag_ms",
                          listed[i]->apply_reported ? json_uint(listed[i]->apply_lag_ms) : json_null())) !=
            0) {
            json_decref(list);
            list = NULL;
        }
    extra =
        list ? json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:b, s:o, s:o}",
                         "replicated_lsn", json_uint(atomic_load(&ring_header_of(p->ring)->replicated_lsn)),
                         "n_standbys", json_uint(n), "peers_dropped", json_uint(p->n_dropped_peers),
                         "monitor_hellos", json_uint(p->n_monitor_hellos), "hellos_refused",
                         json_uint(p->n_hellos_refused), "lower_epoch_refused", json_uint(p->n_lower_epoch),
                         "higher_epoch_requests", json_uint(p->n_higher_epoch), "requests_oversized",
                         json_uint(p->n_oversized), "serve_connections_closed", json_uint(p->n_closed),
                         "replies_dropped", json_uint(p->n_reply_drops),
                         "standbys_evicted", json_uint(p->n_evicted), "curve", p->zap != NULL,
                         "curve_keys_refused", json_uint(p->n_refused_keys), "standbys", list)
             : NULL; /* "o" steals list, even when json_pack fails */
    pthread_mutex_lock(&p->pub_lock);
    int early = p->early;
    pthread_mutex_unlock(&p->pub_lock);
    if (extra && json_object_set_new(extra, "publish_before_fsync", json_boolean(early)) != 0) {
        json_decref(extra);
        extra = NULL;
    }
    /* the drain waiting for the counted standbys' apply (update_apply_hold) */
    if (extra &&
        (json_object_set_new(extra, "drain_held_for_standby_apply",
                             json_boolean(atomic_load(&p->apply_held))) != 0 ||
         json_object_set_new(extra, "drain_holds_for_standby_apply", json_uint(p->n_apply_holds)) != 0)) {
        json_decref(extra);
        extra = NULL;
    }
    members = status_members(p->c);
    if (!members || !extra || json_object_update(members, extra) != 0) {
        /* out of memory: the status keeps the previous members */
        json_decref(members);
        json_decref(extra);
        return;
    }
    json_decref(extra);
    pthread_mutex_lock(&p->lock);
    old = p->status;
    p->status = members;
    pthread_mutex_unlock(&p->lock);
    json_decref(old);
}

/* ------------------------------------------------------------ the thread */

/* The ROUTER's monitor events: a connection closed (a standby killed, its
 * host gone) frees its node id at once for the standby's next connection,
 * instead of after PEER_LIVE_BEATS heartbeats.  An event is two frames:
 * 2 bytes event, 4 bytes value (the fd), then the endpoint. */
static void router_events(struct repl_primary *p)
{
    for (int i = 0; i < RECV_BURST; i++) {
        zmq_msg_t ev, endpoint;
        uint16_t event = 0;
        uint32_t fd = 0;

        zmq_msg_init(&ev);
        zmq_msg_init(&endpoint);
        if (zmq_msg_recv(&ev, p->router_events, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            zmq_msg_close(&endpoint);
            return;
        }
        if (zmq_msg_more(&ev))
            zmq_msg_recv(&endpoint, p->router_events, 0);
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&fd, (const uint8_t *)zmq_msg_data(&ev) + 2, 4);
        }
        if (event == ZMQ_EVENT_DISCONNECTED) {
            const char *standby = "(none)";
            char detail[WIRE_NAME_MAX + 160];
            for (size_t k = 0; k < WIRE_MAX_STANDBYS; k++)
                if (p->peers[k].used && p->peers[k].fd == (int)fd) {
                    p->peers[k].disconnected = 1;
                    standby = p->peers[k].id;
                }
            /* a peer leaving, or ZeroMQ cutting a frame over
             * ROUTER_CUT_SIZE: the one event for both */
            p->n_closed++;
            snprintf(detail, sizeof detail,
                     "standby=\"%s\" note=\"a peer left, or sent a frame over %u bytes\"", standby,
                     ROUTER_CUT_SIZE);
            rate_log(&p->closed_log, LOG_INFO, "serve connections closed", detail);
        }
        zmq_msg_close(&ev);
        zmq_msg_close(&endpoint);
    }
}

static void *replicator_main(void *arg)
{
    struct repl_primary *p = arg;
    uint64_t interval = (uint64_t)p->c->repl_heartbeat_ms * 1000000u, next_hb = link_monotonic_ns(),
             last_hb = 0;

    pthread_setname_np(pthread_self(), "rk-replicator"); /* top -H, perf, gdb */

    while (!atomic_load(&p->stop)) {
        uint64_t now = link_monotonic_ns();
        long timeout_ms = now >= next_hb ? 0 : (long)((next_hb - now) / 1000000u) + 1;
        zmq_pollitem_t items[4] = {{.socket = p->router, .events = ZMQ_POLLIN},
                                   {.fd = p->efd, .events = ZMQ_POLLIN},
                                   {.socket = p->router_events, .events = ZMQ_POLLIN},
                                   {.socket = p->zap, .events = ZMQ_POLLIN}};
        char path[PATH_MAX] = "";

        if (zmq_poll(items, p->zap ? 4 : 3, timeout_ms) < 0 && zmq_errno() != EINTR)
            break;
        if (items[2].revents & ZMQ_POLLIN)
            router_events(p);
        if (p->zap && (items[3].revents & ZMQ_POLLIN))
            for (int i = 0; i < RECV_BURST; i++) {
                int ev = 0;
                size_t ev_size = sizeof ev;
                if (zmq_getsockopt(p->zap, ZMQ_EVENTS, &ev, &ev_size) || !(ev & ZMQ_POLLIN))
                    break;
                serve_zap(p);
            }
        if (items[1].revents & ZMQ_POLLIN) {
            uint64_t v;
            if (read(p->efd, &v, sizeof v) < 0 && errno != EAGAIN)
                break;
        }
        /* every loop: cheap, and nothing journaled is left unpublished */
        struct repl_progress np;
        p->progress(p->progress_arg, &np);
        publish_entries(p, np.journal_seq);
        update_replicated(p); /* the drain's fsync may have caught up with the acks */
        pthread_mutex_lock(&p->lock);
        snprintf(path, sizeof path, "%s", p->ckpt_pending);
        p->ckpt_pending[0] = '\0';
        pthread_mutex_unlock(&p->lock);
        if (path[0])
            announce_checkpoint(p, path);
        if (atomic_exchange(&p->sync_changed, 0))
            update_replicated(p); /* acks already in may count now */
        if (items[0].revents & ZMQ_POLLIN)
            serve(p);
        if (p->heartbeat_now) {
            p->heartbeat_now = 0;
            if (last_hb + interval / 2 < next_hb)
                next_hb = last_hb + interval / 2;
        }
        if (link_monotonic_ns() >= next_hb) {
            heartbeat(p);
            last_hb = link_monotonic_ns();
            next_hb = last_hb + interval;
        }
        update_apply_hold(p); /* after acks, peers come and gone, or a silence: at least every heartbeat */
    }
    if (atomic_exchange(&p->apply_held, 0) && p->apply_caught_up)
        p->apply_caught_up(p->apply_caught_up_arg); /* stopping: nothing holds the drain */
    return NULL;
}

/* ------------------------------------------------------------ what the node calls */

static void wake(struct repl_primary *p)
{
    uint64_t one = 1;
    if (write(p->efd, &one, sizeof one) < 0)
        log_msg(LOG_DEBUG, "replicator wake-up lost", "error=\"%s\"", strerror(errno));
}

void repl_primary_on_higher_epoch(struct repl_primary *p, void (*fn)(void *arg, uint64_t epoch), void *arg)
{
    p->higher_epoch = fn;
    p->higher_epoch_arg = arg;
}

void repl_primary_on_standby_apply(struct repl_primary *p, void (*fn)(void *arg), void *arg)
{
    p->apply_caught_up = fn;
    p->apply_caught_up_arg = arg;
}

int repl_primary_apply_held(struct repl_primary *p)
{
    return atomic_load(&p->apply_held);
}

int repl_primary_start(struct repl_primary *p, store *s, ring_owner *ring, repl_progress_fn *progress,
                       void *progress_arg)
{
    struct repl_progress np;
    char dir[PATH_MAX + 16], **paths = NULL;
    size_t n_paths = 0;
    int rc = 0;

    p->progress = progress;
    p->progress_arg = progress_arg;
    p->s = s;
    p->ring = ring;
    progress(progress_arg, &np);
    p->epoch = np.epoch;
    p->published_seq = np.journal_seq; /* older entries: standbys fetch them */
    atomic_store(&p->durable_seq, np.journal_seq);
    p->sync.base_seq = np.journal_seq;  /* before the replicator thread runs: no lock needed */
    p->start_ns = link_monotonic_ns();
    snprintf(dir, sizeof dir, "%s/checkpoints", p->c->data_dir);
    if (ckpt_list(dir, &paths, &n_paths) == 0 && n_paths) {
        struct wire_checkpoint rec;
        if (checkpoint_record(paths[0], &rec) == 0) {
            p->newest = rec;
            p->has_newest = 1;
        } else {
            free(rec.producers);
        }
    }
    ckpt_list_free(paths, n_paths);
    p->cache = calloc(SEQ_CACHE, sizeof *p->cache);
    {
        const char *forge_file = getenv("RK_TEST_FORGE_ENTRY");
        p->test_forge = forge_file && *forge_file ? forge_file : NULL;
    }
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p->ctx = zmq_ctx_new();
    p->pub = p->ctx ? zmq_socket(p->ctx, ZMQ_PUB) : NULL;
    p->router = p->ctx ? zmq_socket(p->ctx, ZMQ_ROUTER) : NULL;
    if (!p->cache || p->efd < 0 || !p->pub || !p->router) {
        log_msg(LOG_ERROR, "cannot start the replicator", "error=\"%s\"", strerror(errno));
        return ENOMEM;
    }
    if ((rc = link_setup(p->pub, PUB_HWM)) != 0 || (rc = link_setup(p->router, ROUTER_HWM)) != 0) {
        log_msg(LOG_ERROR, "cannot set replication socket options", "error=\"%s\"", zmq_strerror(rc));
        return rc;
    }
    {
        /* requests are small: a peer sending a frame over
         * ROUTER_CUT_SIZE is cut by ZeroMQ, one up to it refused here;
         * routing ids are the ROUTER's own (standbys set none, and no
         * ZMQ_ROUTER_HANDOVER: a peer choosing a standby's routing id
         * would take its connection over), node_ids are HELLO's
         * (hello_slot); ZMTP heartbeats find dead connections */
        int64_t max_req = ROUTER_CUT_SIZE;
        int ivl = 1000, timeout = 5000, mandatory = 1; /* mandatory: reply */
        if (zmq_setsockopt(p->router, ZMQ_MAXMSGSIZE, &max_req, sizeof max_req) ||
            zmq_setsockopt(p->router, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory) ||
            zmq_setsockopt(p->router, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl) ||
            zmq_setsockopt(p->router, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout) ||
            zmq_setsockopt(p->pub, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl) ||
            zmq_setsockopt(p->pub, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout)) {
            rc = zmq_errno();
            log_msg(LOG_ERROR, "cannot set replication socket options", "error=\"%s\"", zmq_strerror(rc));
            return rc;
        }
    }
    {
        int linger = 0;
        p->router_events = zmq_socket(p->ctx, ZMQ_PAIR);
        if (zmq_socket_monitor(p->router, "inproc://rk-router-events", ZMQ_EVENT_DISCONNECTED) ||
            !p->router_events || zmq_setsockopt(p->router_events, ZMQ_LINGER, &linger, sizeof linger) ||
            zmq_connect(p->router_events, "inproc://rk-router-events")) {
            rc = zmq_errno();
            log_msg(LOG_ERROR, "cannot monitor the serve socket", "error=\"%s\"", zmq_strerror(rc));
            return rc;
        }
    }
    if (p->c->curve) {
        /* the ZAP handler first: CURVE handshakes wait for its answers */
        int linger = 0;
        if ((rc = load_authorized(p)) != 0)
            return rc;
        p->zap = zmq_socket(p->ctx, ZMQ_REP);
        if (!p->zap || zmq_setsockopt(p->zap, ZMQ_LINGER, &linger, sizeof linger) ||
            zmq_bind(p->zap, "inproc://zeromq.zap.01") || link_curve_server(p->pub, p->c->curve_secret_key) ||
            link_curve_server(p->router, p->c->curve_secret_key)) {
            rc = zmq_errno();
            log_msg(LOG_ERROR, "cannot set up CURVE", "error=\"%s\"", zmq_strerror(rc));
            return rc;
        }
    }
    if (zmq_bind(p->pub, p->c->repl_publish) != 0) {
        rc = zmq_errno();
        log_msg(LOG_ERROR, "cannot bind the publish endpoint", "endpoint=%s error=\"%s\"", p->c->repl_publish,
                zmq_strerror(rc));
        return rc;
    }
    if (zmq_bind(p->router, p->c->repl_serve) != 0) {
        rc = zmq_errno();
        log_msg(LOG_ERROR, "cannot bind the serve endpoint", "endpoint=%s error=\"%s\"", p->c->repl_serve,
                zmq_strerror(rc));
        return rc;
    }
    rc = pthread_create(&p->thread, NULL, replicator_main, p);
    if (rc)
        return rc;
    p->running = 1;
    log_msg(LOG_INFO, "replication started",
            "publish=%s serve=%s min_replicas=%" PRIu32 " heartbeat_ms=%" PRIu32 " journal_seq=%" PRIu64,
            p->c->repl_publish, p->c->repl_serve, p->c->repl_min_replicas, p->c->repl_heartbeat_ms,
            np.journal_seq);
    return 0;
}

int repl_primary_journaled(struct repl_primary *p, uint64_t seq, const uint8_t *entry, size_t len, int durable)
{
    int published = 0;

    /* from this thread (see the head of this file); running is set and
     * cleared by this thread too (repl_primary_start, _stop) */
    pthread_mutex_lock(&p->pub_lock);
    if (p->running && seq == p->published_seq + 1 && (durable || p->early)) {
        publish_one(p, seq, entry, len);
        p->published_seq = seq;
        published = 1;
    }
    pthread_mutex_unlock(&p->pub_lock);
    if (!published && durable)
        wake(p); /* the replicator thread publishes it, read back */
    return published;
}

void repl_primary_durable(struct repl_primary *p, uint64_t seq)
{
    /* seq_cst, against update_replicated: the durable cursor was moved
     * before this; acks that reached past seq were recorded before it
     * read durable_seq */
    atomic_store(&p->durable_seq, seq);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_exchange(&p->acks_ahead, 0))
        wake(p);
}

uint64_t repl_primary_max_acked(struct repl_primary *p)
{
    return atomic_load(&p->max_acked);
}

void repl_primary_checkpointed(struct repl_primary *p, const char *path)
{
    pthread_mutex_lock(&p->lock);
    snprintf(p->ckpt_pending, sizeof p->ckpt_pending, "%s", path);
    pthread_mutex_unlock(&p->lock);
    wake(p);
}

uint64_t repl_primary_trim_floor(struct repl_primary *p)
{
    return atomic_load(&p->needed_from);
}

void repl_primary_status(struct repl_primary *p, json_t *status)
{
    /* a copy: the replicator thread drops its object when it makes the next */
    pthread_mutex_lock(&p->lock);
    json_object_update_new(status, json_deep_copy(p->status));
    pthread_mutex_unlock(&p->lock);
}

static int compare_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

int repl_primary_sync_plan(struct repl_primary *p, struct repl_sync_plan *plan)
{
    uint32_t kept = 0, copies = 0;
    uint64_t floor;

    memset(plan, 0, sizeof *plan);
    if (!p->gated)
        return 0;
    pthread_mutex_lock(&p->lock);
    /* a counted standby no longer known stops counting now (before the
     * smaller set is published: S1 holds through a failed publication) */
    for (uint32_t i = 0; i < p->sync.n_counted; i++) {
        int known = 0;
        for (uint32_t j = 0; j < p->sync.n_known && !known; j++)
            known = strcmp(p->sync.known[j].id, p->sync.counted[i]) == 0;
        if (known && kept != i)
            memcpy(p->sync.counted[kept], p->sync.counted[i], sizeof p->sync.counted[kept]);
        kept += known;
    }
    p->sync.n_counted = kept;
    /* what each known standby holds durably is on it whether it counts or
     * not: those holding every acknowledged entry (S2), and every entry of
     * the epochs before this primary's, are copies of all of it.  S3: a
     * standby joins the plan only once it holds this primary's promotion
     * point (base_seq), or while it already counts; one still catching up
     * to it waits outside.  Then a plan with standbys and no copy among
     * them (quorum: all the voters) comes only from the loss of every
     * standby that acknowledged the newest entries, whose report an
     * election does need (docs/HA.md, the sync key) */
    floor = p->sync.replicated_seq > p->sync.base_seq ? p->sync.replicated_seq : p->sync.base_seq;
    plan->promotion_seq = p->sync.base_seq;
    for (uint32_t j = 0; j < p->sync.n_known; j++) {
        int copy = p->sync.known[j].acked_seq >= floor;
        if (p->sync.known[j].acked_seq >= p->sync.base_seq || sync_counted(p, p->sync.known[j].id)) {
            snprintf(plan->standbys[plan->n_standbys++], sizeof plan->standbys[0], "%s", p->sync.known[j].id);
            copies += copy;
        } else {
            snprintf(plan->waiting[plan->n_waiting], sizeof plan->waiting[0], "%s", p->sync.known[j].id);
            plan->waiting_seq[plan->n_waiting++] = p->sync.known[j].acked_seq;
        }
    }
    pthread_mutex_unlock(&p->lock);
    /* entries acknowledged from now on are on min_replicas counted
     * standbys: more copies than that are not promised */
    plan->copies = copies < p->c->repl_min_replicas ? copies : p->c->repl_min_replicas;
    /* sorted by id: the same set gives the same plan */
    qsort(plan->standbys, plan->n_standbys, sizeof plan->standbys[0], compare_ids);
    return 1;
}

void repl_primary_sync_published(struct repl_primary *p, const struct repl_sync_plan *plan)
{
    if (!p->gated)
        return;
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; i < plan->n_standbys && i < WIRE_MAX_STANDBYS; i++)
        snprintf(p->sync.counted[i], sizeof p->sync.counted[i], "%s", plan->standbys[i]);
    p->sync.n_counted = plan->n_standbys < WIRE_MAX_STANDBYS ? plan->n_standbys : WIRE_MAX_STANDBYS;
    pthread_mutex_unlock(&p->lock);
    atomic_store(&p->sync_changed, 1);
    wake(p);
}

void repl_primary_stop(struct repl_primary *p)
{
    if (p->running) {
        atomic_store(&p->stop, 1);
        wake(p);
        pthread_join(p->thread, NULL);
        p->running = 0;
    }
}

int repl_primary_open(const struct node_config *c, struct repl_primary **out)
{
    struct repl_primary *p = calloc(1, sizeof *p);

    *out = NULL;
    if (!p)
        return ENOMEM;
    p->c = c;
    p->efd = -1;
    atomic_store(&p->needed_from, UINT64_MAX);
    p->gated = c->ha_etcd[0] && c->repl_min_replicas > 0;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->pub_lock, NULL);
    p->status = status_members(c);
    *out = p;
    return 0;
}

void repl_primary_close(struct repl_primary *p)
{
    if (!p)
        return;
    repl_primary_stop(p);
    if (p->pub)
        zmq_close(p->pub);
    if (p->router) {
        if (p->router_events)
            zmq_socket_monitor(p->router, NULL, 0); /* stops the monitor before its socket goes */
        zmq_close(p->router);
    }
    if (p->zap)
        zmq_close(p->zap);
    if (p->router_events)
        zmq_close(p->router_events);
    free(p->authorized);
    if (p->ctx)
        zmq_ctx_term(p->ctx);
    if (p->efd >= 0)
        close(p->efd);
    free(p->cache);
    free(p->newest.producers);
    json_decref(p->status);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->pub_lock);
    free(p);
}
