/* standby.c -- a standby: follows a primary into its own data directory.
 *
 *   start ── HELLO ──> WAITING ── WELCOME ──> FOLLOWING ──┐
 *     ^  (again each second          (standby_on_welcome)  │ rk.j seq = last+1: verify, append
 *     |   without an answer)                              │   (one fsync a burst), ACK
 *     |                                                   │ rk.j seq > last+1 (a gap), bad
 *     └── a heartbeat that does not list us (the          │   checksum, heartbeat ahead:
 *         primary restarted), ERROR 1 (adopt its epoch),  │   FETCH last+1.. (standby_fetch)
 *         an entry whose prev_xxh is not our last     ────┘
 *         entry's (take_entry: the primary lost ours)
 *
 *   HELLO may be said more than once before an answer comes (the retry,
 *   ERROR 1): only the WELCOME naming the last HELLO's last_seq is taken
 *   (on_welcome); ERROR 1 says HELLO again only when the last one went
 *   out at an epoch since left.
 *
 *   WELCOME with first_seq > last+1, or ERROR 2 (trimmed) ──> BOOTSTRAP (standby_bootstrap):
 *     set our data aside (db/ -> set-aside/db-<ns>/, never deleted; both folders fsynced),
 *     SNAPSHOT the newest checkpoint in chunks into checkpoints/.<name>.part (resumable),
 *     fsync it, check its XXH64, rename, fsync checkpoints/, applier_load_checkpoint, then
 *     FETCH from its restart point ──> FOLLOWING.  All of it through the I/O seam (sys_*);
 *     a failed write, fsync or rename removes the copy and stops the standby (exit 1,
 *     bootstrap_fail): the next start downloads again.  A load that never ended (killed,
 *     or failed: exit 1) is set aside at the next start (repl_standby_open,
 *     applier_load_interrupted), which then bootstraps again from scratch.
 *
 * Design: one thread (the main one) owns the SUB and DEALER sockets and
 * the journal: entries are stored strictly in sequence order, each
 * verified with journal_decode before it is kept (the same bytes as the
 * primary's).  The entries of one burst of messages (a FETCH answer, or
 * what the PUB stream brought meanwhile) are appended in one transaction
 * committed with sync (store_journal_append_many: one fsync for the
 * burst), and the ACK for the last one goes out after that commit, and
 * after host->acking has told the node (its [ha] member record reports
 * what is acknowledged before the primary can count it).  A gap
 * is fetched, never skipped; a duplicate is ignored; an entry that fails
 * verification is not stored and is fetched again; a message from a lower
 * epoch is refused.  Any other message is handled only once the entries
 * before it are durable.
 *
 * The node (node/node.c) runs this: its main loop calls repl_standby_step,
 * its apply thread applies what is durable (host->durable tells it) with
 * the primary's code (applier_run), one entry at a time, and hands us the
 * state digest after each (repl_standby_applied), so that a heartbeat's
 * (digest_seq, digest) can be compared with ours at the same sequence.
 * Apply is off the path of the ACK: a standby acknowledges what it holds
 * durably, however far its apply lags.  A bootstrap stops apply
 * (host->apply_stop) before it replaces the store and the applier; the
 * node starts it again on the new ones once the bootstrap is done.  A
 * restart (SIGKILL included) carries on from the journal's last entry:
 * HELLO says it, and only what is missing is fetched.  Signals, the
 * control endpoint and the status reply are the node's.
 *
 * Several nodes ([replication] primary_publish and primary_serve list
 * them): a SUB and a DEALER each (struct peer).  The SUBs of the nodes not
 * followed take heartbeats only, for their epoch (on_other).  The node
 * announcing the highest epoch is followed; a higher one elsewhere (a
 * standby promoted there) moves the standby to it (repoint: epoch adopted
 * durably, HELLO, the fork point as with any primary); a primary of a
 * lower epoch than ours is told ours, which makes it step down
 * (tell_deposed).
 *
 *   no primary (cur -1) ── heartbeat, epoch >= ours ──> follow it (repoint)
 *   following node i ── node j's heartbeat, epoch > node i's ──> follow j (repoint)
 *   any node ── heartbeat, epoch < ours ──> HELLO at our epoch (tell_deposed)
 *
 * With curve = yes every socket is a CURVE client of the primary.
 *
 * Threads: the node's main thread (everything above) and its apply thread
 * (repl_standby_applied only); `lock` guards the digest history.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "persist/apply.h"
#include "persist/bytes.h"
#include "persist/json_bytes.h"
#include "replicator/link.h"
#include "persist/log.h"
#include "persist/restore.h"
#include "persist/set_aside.h"
#include "replicator/replicator.h"
#include "persist/store.h"

#define EPOCH_KEY "epoch"
#define SUB_HWM 10000
#define DEALER_HWM 1000
#define DIGEST_HISTORY 4096 /* (seq, digest) after each recent entry applied */
#define HB_HISTORY 256      /* the primary's (digest_seq, digest) from recent heartbeats */
#define HELLO_RETRY_NS 1000000000ull
#define FETCH_RETRY_NS 500000000ull
#define RECV_BURST 256
#define PEND_MAX_ENTRIES 1024      /* entries kept for one commit, at most */
#define PEND_MAX_BYTES (16u << 20) /* ... and bytes */
#define ACK_APPLY_NS 20000000ull   /* apply moved: an ACK says so within this (send_ack) */

struct digest_at {
    uint64_t seq, digest;
};

/* One node of the cluster ([replication] primary_publish and primary_serve,
 * the i-th of each): a SUB on its publish endpoint (heartbeats; entries and
 * checkpoint notices too while it is the one followed) and a DEALER on its
 * serve endpoint (requests to the one followed; HELLO to tell a primary of
 * a lower epoch that it was deposed). */
struct peer {
    char publish[CONFIG_ENDPOINT_MAX + 1], serve[CONFIG_ENDPOINT_MAX + 1];
    void *sub, *dealer;
    uint64_t epoch;   /* the epoch its last heartbeat announced (0: none seen) */
    uint64_t told_ns; /* when it was last sent our epoch (a deposed primary) */
};

struct repl_standby {
    const struct node_config *c;
    struct repl_standby_host host; /* the node's */
    store *s;
    applier *a;
    void *ctx;
    struct peer peers[CONFIG_NODES_MAX];
    uint32_t n_peers;
    int cur;             /* the peer followed (-1: none yet: no heartbeat seen) */
    void *sub, *dealer;  /* its sockets (NULL while none) */
    int wake_fd;         /* eventfd: repl_standby_wake ends a step's wait (-1: none) */
    uint64_t n_repoints; /* times it moved to a primary of a higher epoch */
    uint64_t epoch;
    uint64_t last_seq; /* last entry in our journal (durable) */
    uint64_t recv_seq; /* last entry verified: in the journal or pending (>= last_seq) */
    int recv_xxh_known; /* entry recv_seq is held (not after a bootstrap, nor with none) */
    uint64_t recv_xxh;  /* ... and its XXH64 trailer: an entry that says it follows another is not taken */
    int tail_rollbacks; /* own last entries set aside since the last WELCOME that matched (at most 1) */
    /* verified entries recv_seq - n_pend + 1 .. recv_seq, waiting for
     * their commit (flush_pending): copies in pend_buf at pend_off */
    uint8_t *pend_buf;
    size_t pend_len, pend_cap, n_pend;
    size_t pend_off[PEND_MAX_ENTRIES], pend_lens[PEND_MAX_ENTRIES];
    uint64_t acked_seq;               /* last ACK sent */
    uint64_t acking_seq;              /* last_seq when host.acking was last called (send_ack) */
    uint64_t ack_ns;                  /* monotonic: when it was sent */
    uint64_t ack_applied_seq;         /* the applied_seq it reported */
    uint64_t durable_lsn;             /* next_lsn of entry last_seq (0: not held: after a bootstrap) */
    uint64_t backlog_ns;              /* monotonic: since when apply has had entries to apply, as far
                                         as the last flush that found it caught up knows */
    uint64_t hb_acks[2];              /* the ACKs sent at the last two heartbeats, older first */
    uint64_t primary_seq;             /* highest entry we know the primary holds */
    uint64_t behind_ns;               /* since when last_seq < primary_seq (0: caught up) */
    int welcomed;                     /* WELCOME received since the last HELLO */
    int following;                    /* ... and our journal is on the primary's history: entries are taken */
    struct epoch_start *primary_hist; /* the last WELCOME's history (owned) */
    uint32_t n_primary_hist;
    uint64_t n_set_aside;                              /* runs of entries set aside past a fork point */
    uint64_t hello_ns;                                 /* when HELLO was sent */
    uint64_t hello_last_seq;                           /* the last_seq it said */
    uint64_t hello_epoch;                              /* the epoch it was sent at */
    uint64_t n_hellos;                                 /* HELLOs sent, for status */
    uint64_t fetch_from;                               /* from_seq of the FETCH outstanding */
    int fetching;                                      /* a FETCH is outstanding */
    uint64_t fetch_ns;                                 /* when it was sent */
    uint64_t hb_digest, hb_digest_seq, hb_journal_seq; /* the last heartbeat's */
    /* under lock, for a promotion's check (repl_standby_promote_view):
     * the most another standby acknowledged in the followed primary's last
     * heartbeat, and what we held at the end of the last step */
    char other_id[WIRE_NAME_MAX + 1];
    uint64_t other_acked, other_hb_epoch, held_seq;
    /* recent heartbeats' digests: apply may reach their sequence only
     * later, when it lags; a heartbeat repeating the newest one recorded
     * is not recorded again, so that an idle primary's heartbeats do not
     * push out the sequences a lagging apply has yet to reach */
    struct digest_at hb_history[HB_HISTORY];
    uint32_t hb_history_n; /* heartbeats recorded (the newest at (n - 1) % HB_HISTORY) */
    uint64_t n_heartbeats; /* heartbeats heard, for status */
    int digest_match;      /* -1 not compared yet, 0 differs, 1 equal */
    uint64_t digest_compared_seq;
    struct digest_at history[DIGEST_HISTORY];
    uint32_t drop_every, corrupt_every; /* test hooks (RK_TEST_DROP_JOURNAL, RK_TEST_CORRUPT_JOURNAL) */
    const char *journal_gate;           /* test hook RK_TEST_JOURNAL_GATE=FILE (NULL: none) */
    uint64_t n_journal_msgs;
    uint64_t first_fetched; /* lowest entry fetched since start (0: none) */
    uint64_t n_fetched, n_gaps, n_duplicates, n_bad, n_refused, n_malformed;
    uint64_t n_not_following; /* entries refused: they follow another entry than our last */
    int stop_error;   /* cannot go on: the main loop ends, exit 1 */
    int version_told; /* a message of another protocol version was logged as an error */
    /* bootstrap from a checkpoint (standby_bootstrap) */
    int bootstrapping;
    char snap_name[WIRE_FILE_MAX + 1];
    int snap_fd;                   /* checkpoints/.<name>.part */
    uint64_t snap_offset;          /* bytes of it we hold */
    uint64_t snap_total, snap_xxh; /* as the first chunk said (0: no chunk yet) */
    uint64_t snap_ns;              /* when the last SNAPSHOT was sent */
    uint64_t n_bootstraps;

    /* what the apply thread reported after its last entry (repl_standby_applied):
     * its position, the ring position it read to (0: no entry read since the
     * applier opened) and its rate in ring bytes per second (0: not measured) */
    uint64_t apply_seq, apply_lsn, apply_rate;

    pthread_mutex_t lock; /* the digest history, other_*, held_seq and apply_* */
};

/* ------------------------------------------------------------ meta */

static int epoch_load(struct repl_standby *sb)
{
    DB *meta = store_meta(sb->s);
    DBT k = {.data = (void *)EPOCH_KEY, .size = (u_int32_t)strlen(EPOCH_KEY)};
    DBT v = {.data = &sb->epoch, .ulen = sizeof sb->epoch, .flags = DB_DBT_USERMEM};

    if (meta->get(meta, NULL, &k, &v, 0) == 0 && v.size == sizeof sb->epoch)
        return 0;
    sb->epoch = 1;
    v = (DBT){.data = &sb->epoch, .size = sizeof sb->epoch};
    return meta->put(meta, NULL, &k, &v, DB_AUTO_COMMIT);
}

static int epoch_adopt(struct repl_standby *sb, uint64_t epoch)
{
    DB *meta = store_meta(sb->s);
    DBT k = {.data = (void *)EPOCH_KEY, .size = (u_int32_t)strlen(EPOCH_KEY)};
    DBT v = {.data = &epoch, .size = sizeof epoch};

    int rc;

    log_msg(LOG_INFO, "adopting a higher epoch", "epoch=%" PRIu64 " new=%" PRIu64, sb->epoch, epoch);
    sb->epoch = epoch;
    /* a deadlock victim (apply writes meta.db too) undid nothing durable: again */
    for (int attempt = 0;; attempt++) {
        rc = meta->put(meta, NULL, &k, &v, DB_AUTO_COMMIT);
        if (rc != DB_LOCK_DEADLOCK || attempt >= 8)
            return rc;
    }
}

/* ------------------------------------------------------------ apply */

void repl_standby_applied(struct repl_standby *sb, uint64_t seq, uint64_t digest, uint64_t read_lsn,
                          uint64_t bytes_per_s)
{
    pthread_mutex_lock(&sb->lock);
    sb->history[seq % DIGEST_HISTORY] = (struct digest_at){seq, digest};
    sb->apply_seq = seq;
    sb->apply_lsn = read_lsn;
    sb->apply_rate = bytes_per_s;
    pthread_mutex_unlock(&sb->lock);
}

static uint64_t apply_seq_now(struct repl_standby *sb)
{
    pthread_mutex_lock(&sb->lock);
    uint64_t seq = sb->apply_seq;
    pthread_mutex_unlock(&sb->lock);
    return seq;
}

/* The ring position just past entry's frames (its header's next_lsn). */
static uint64_t entry_next_lsn(const uint8_t *entry, size_t len)
{
    return len >= JOURNAL_HEADER_SIZE ? get_le64(entry + offsetof(struct journal_header, next_lsn)) : 0;
}

/* Apply starts on the store and applier as they are now (at open, after a
 * bootstrap or a rebuild to a fork point; apply stopped): what it has
 * applied, the position the journal ends at, and no position read yet. */
static void apply_reset(struct repl_standby *sb)
{
    uint8_t *entry = NULL;
    size_t len = 0;

    sb->durable_lsn = 0;
    if (sb->last_seq && store_journal_get_raw(sb->s, sb->last_seq, &entry, &len) == 0)
        sb->durable_lsn = entry_next_lsn(entry, len);
    free(entry);
    pthread_mutex_lock(&sb->lock);
    sb->apply_seq = sb->a ? applier_meta(sb->a).applied_seq : 0;
    sb->apply_lsn = 0;
    pthread_mutex_unlock(&sb->lock);
    sb->backlog_ns = link_monotonic_ns();
}

/* How far apply is behind what is durable, in ms of its work (issue 13.7):
 * the ring bytes journaled past its position at its measured rate, as a
 * primary bounds its own apply ([apply] max_lag_ms); until it has applied
 * an entry since it started (no position or rate yet), as long as the
 * oldest entry it has to apply has waited, at least.  0 when caught up.
 * Its position in *applied_seq. */
static uint64_t apply_lag_ms(struct repl_standby *sb, uint64_t *applied_seq)
{
    pthread_mutex_lock(&sb->lock);
    uint64_t seq = sb->apply_seq, lsn = sb->apply_lsn, rate = sb->apply_rate;
    pthread_mutex_unlock(&sb->lock);

    *applied_seq = seq;
    if (seq >= sb->last_seq)
        return 0;
    if (lsn && rate)
        return sb->durable_lsn > lsn ? (uint64_t)((double)(sb->durable_lsn - lsn) * 1e3 / (double)rate) : 0;
    return (link_monotonic_ns() - sb->backlog_ns) / 1000000u;
}

/* ------------------------------------------------------------ requests */

/* Sends m at our epoch on dealer (nothing while it is NULL: no primary
 * followed yet). */
static void send_to(struct repl_standby *sb, void *dealer, struct wire_msg *m)
{
    char why[256];
    m->epoch = sb->epoch;
    int rc = dealer ? link_send(dealer, NULL, 0, m, why, sizeof why) : 0;
    if (rc && rc != EAGAIN)
        log_msg(LOG_WARN, "cannot send to the primary", "error=\"%s\"", why);
}

static void send_msg(struct repl_standby *sb, struct wire_msg *m)
{
    send_to(sb, sb->dealer, m);
}

/* The followed primary's serve endpoint, for logs and status. */
static const char *primary_name(const struct repl_standby *sb)
{
    return sb->cur >= 0 ? sb->peers[sb->cur].serve : "";
}

/* What HELLO says of the last entry held: its epoch by our history, and
 * its XXH64 when the journal holds it (not after a bootstrap, whose
 * journal starts past the checkpoint). */
static void describe_last(struct repl_standby *sb, struct wire_hello *h)
{
    uint8_t *entry = NULL;
    size_t len = 0;

    h->last_seq = sb->last_seq;
    if (!sb->last_seq)
        return;
    h->last_epoch = store_epoch_of(sb->s, sb->last_seq);
    if (!h->last_epoch)
        h->last_epoch = sb->epoch; /* no history at all: what it knows */
    if (store_journal_get_raw(sb->s, sb->last_seq, &entry, &len) == 0) {
        h->has_last_xxh = 1;
        h->last_xxh = wire_entry_xxh(entry, len);
    }
    free(entry);
}

static void hello_msg(struct repl_standby *sb, struct wire_msg *m)
{
    *m = (struct wire_msg){.type = WIRE_HELLO};
    snprintf(m->u.hello.node_id, sizeof m->u.hello.node_id, "%s", sb->c->repl_node_id);
    m->u.hello.checks_prev = 1; /* take_entry */
    describe_last(sb, &m->u.hello);
}

static void send_hello(struct repl_standby *sb)
{
    struct wire_msg m;
    hello_msg(sb, &m);
    sb->hello_last_seq = sb->last_seq;
    send_msg(sb, &m);
    sb->hello_epoch = m.epoch;
    sb->n_hellos++;
    sb->welcomed = 0;
    sb->following = 0;
    sb->fetching = 0;
    sb->hello_ns = link_monotonic_ns();
    sb->hb_acks[0] = sb->hb_acks[1] = 0; /* what HELLO says replaces them */
}

/* Test hook RK_TEST_JOURNAL_GATE=FILE (tests only: tests/ha_catch_up_test.sh
 * holds a standby behind a primary's promotion point with it, instead of
 * pausing it and hoping), as RK_TEST_APPLY_GATE holds apply (sys_test_gate): the last
 * entry this standby may journal is the number FILE holds, every entry
 * when FILE is empty, none when there is no FILE (tests replace it with a
 * rename).  Entries past it are neither kept nor fetched; the standby
 * says HELLO, acknowledges and reports what it holds as ever. */
static uint64_t journal_gate_limit(const struct repl_standby *sb)
{
    return sb->journal_gate ? sys_test_gate(sb->journal_gate) : UINT64_MAX;
}

static void standby_fetch(struct repl_standby *sb)
{
    uint64_t gate = journal_gate_limit(sb);

    if (!sb->welcomed || sb->fetching || sb->bootstrapping || sb->primary_seq <= sb->last_seq ||
        gate <= sb->last_seq)
        return;
    struct wire_msg m = {.type = WIRE_FETCH};
    m.u.fetch.from_seq = sb->last_seq + 1;
    sb->fetch_from = m.u.fetch.from_seq;
    m.u.fetch.to_seq = sb->primary_seq < gate ? sb->primary_seq : gate;
    send_msg(sb, &m);
    sb->fetching = 1;
    sb->fetch_ns = link_monotonic_ns();
}

/* ACK: what is durable, and where apply is and how far behind in time
 * (the primary bounds that for the standbys it counts).  Sent after each
 * commit of entries, at each heartbeat (keepalive), and when apply moved
 * ACK_APPLY_NS after the last one (repl_standby_step): a primary holding
 * its drain for our apply learns within that that it may go on. */
static void send_ack(struct repl_standby *sb, int keepalive)
{
    if (sb->last_seq <= sb->acked_seq && !keepalive)
        return;
    if (sb->host.acking && sb->last_seq != sb->acking_seq) {
        sb->host.acking(sb->host.arg); /* reported before it is acknowledged */
        sb->acking_seq = sb->last_seq;
    }
    struct wire_msg m = {.type = WIRE_ACK};
    m.u.ack.durable_seq = sb->last_seq;
    m.u.ack.has_apply = 1;
    m.u.ack.apply_lag_ms = apply_lag_ms(sb, &m.u.ack.applied_seq);
    send_msg(sb, &m);
    sb->acked_seq = sb->last_seq;
    sb->ack_ns = link_monotonic_ns();
    sb->ack_applied_seq = m.u.ack.applied_seq;
}

static void knows_primary_holds(struct repl_standby *sb, uint64_t seq)
{
    if (seq > sb->primary_seq)
        sb->primary_seq = seq;
    if (sb->primary_seq > sb->last_seq && !sb->behind_ns)
        sb->behind_ns = link_monotonic_ns();
}

/* ------------------------------------------------------------ entries */

/* recv_xxh from the journal's entry recv_seq (unknown when not held). */
static void recv_tail_reset(struct repl_standby *sb)
{
    uint8_t *entry = NULL;
    size_t len = 0;

    sb->recv_xxh_known = sb->recv_seq && store_journal_get_raw(sb->s, sb->recv_seq, &entry, &len) == 0;
    sb->recv_xxh = sb->recv_xxh_known ? wire_entry_xxh(entry, len) : 0;
    free(entry);
}

/* Appends the pending entries in one transaction committed with sync;
 * then they are durable (last_seq), may be acknowledged, and apply is told.
 * A failed write or fsync ends the process: nothing after it is
 * acknowledged. */
static void flush_pending(struct repl_standby *sb)
{
    const uint8_t *ptrs[PEND_MAX_ENTRIES];
    uint64_t first;
    int rc;

    if (sb->n_pend == 0)
        return;
    first = sb->recv_seq - sb->n_pend + 1;
    for (size_t i = 0; i < sb->n_pend; i++)
        ptrs[i] = sb->pend_buf + sb->pend_off[i];
    rc = store_journal_append_many(sb->s, first, ptrs, sb->pend_lens, sb->n_pend);
    if (rc) {
        log_msg(LOG_ERROR, "journal write failed: nothing after it is acknowledged",
                "seq=%" PRIu64 " entries=%zu error=\"%s\" action=exit", first, sb->n_pend,
                store_strerror(rc));
        _exit(1);
    }
    /* apply had nothing left: its backlog begins with these entries */
    if (apply_seq_now(sb) >= sb->last_seq)
        sb->backlog_ns = link_monotonic_ns();
    sb->durable_lsn = entry_next_lsn(ptrs[sb->n_pend - 1], sb->pend_lens[sb->n_pend - 1]);
    sb->n_pend = 0;
    sb->pend_len = 0;
    sb->last_seq = sb->recv_seq;
    if (sb->last_seq >= sb->primary_seq)
        sb->behind_ns = 0;
    sb->host.durable(sb->host.arg, sb->last_seq);
}

/* The primary sent what shows it does not hold our last entry (seq, the
 * XXH64 it gave): what is pending is committed, and HELLO finds the fork
 * point. */
static void not_following(struct repl_standby *sb, uint64_t seq, uint64_t xxh, const char *what)
{
    sb->n_not_following++;
    log_msg(LOG_WARN,
            "the primary does not hold our last entry (lost in a power cut?): saying HELLO to find the fork point",
            "got=\"%s\" seq=%" PRIu64 " last_seq=%" PRIu64 " our_last_xxh=%016" PRIx64 " primary_xxh=%016" PRIx64,
            what, seq, sb->recv_seq, sb->recv_xxh, xxh);
    flush_pending(sb);
    send_hello(sb);
}

/* Verifies entry seq if it is the next one and keeps it for the next
 * commit; 1 kept, 0 not.  has_prev: the primary said which entry it
 * follows (prev_xxh, the XXH64 of its entry seq - 1).
 *
 * A primary publishes an entry while its own fsync of it runs (issue
 * 13.6), so a power cut there can leave us holding an entry seq that it
 * lost, and it then writes another entry seq.  Its entry seq + 1 then
 * follows an entry we do not hold: it is not taken, what is pending is
 * committed, and HELLO finds the fork point (on_welcome: our last entry
 * is set aside, the state rebuilt before it).  Without that check the
 * entries after it would be appended to a history the primary does not
 * have. */
static int take_entry(struct repl_standby *sb, uint64_t seq, const uint8_t *bytes, size_t len, int has_prev,
                      uint64_t prev_xxh)
{
    journal_entry e = {0};
    char why[256];
    int rc;

    if (!sb->following)
        return 0; /* not yet known to be on the primary's history: fetched once it is */
    if (seq <= sb->recv_seq) {
        sb->n_duplicates++;
        /* our last entry again, other bytes: the primary wrote it anew
         * after it lost ours (take_entry's head comment), and counts our
         * acks as acks of its own until our next HELLO */
        if (seq == sb->recv_seq && sb->recv_xxh_known && wire_entry_xxh(bytes, len) != sb->recv_xxh)
            not_following(sb, seq, wire_entry_xxh(bytes, len), "our last entry, with other bytes");
        return 0;
    }
    knows_primary_holds(sb, seq);
    if (seq != sb->recv_seq + 1) {
        sb->n_gaps++;
        return 0; /* fetched: standby_fetch asks from last_seq + 1 */
    }
    if (seq > journal_gate_limit(sb))
        return 0; /* test hook: held back */
    rc = journal_decode(bytes, len, &e, why, sizeof why);
    journal_entry_free(&e);
    if (rc == 0 && e.h.seq != seq) {
        snprintf(why, sizeof why, "header seq %" PRIu64 " in the entry for %" PRIu64, e.h.seq, seq);
        rc = RK_ECORRUPT;
    }
    if (rc == 0 && e.h.epoch != store_epoch_of(sb->s, seq)) { /* J4, on the wire */
        snprintf(why, sizeof why, "entry of epoch %" PRIu64 " where the epoch history says %" PRIu64,
                 e.h.epoch, store_epoch_of(sb->s, seq));
        rc = RK_ECORRUPT;
    }
    if (rc) {
        sb->n_bad++;
        log_msg(LOG_WARN, "journal entry fails verification: fetching it again",
                "seq=%" PRIu64 " error=\"%s\"", seq, why);
        return 0;
    }
    if (has_prev && sb->recv_xxh_known && prev_xxh != sb->recv_xxh) {
        not_following(sb, seq, prev_xxh, "an entry that follows another entry than our last");
        return 0;
    }
    if (sb->n_pend == PEND_MAX_ENTRIES || sb->pend_len + len > PEND_MAX_BYTES)
        flush_pending(sb);
    if (sb->pend_len + len > sb->pend_cap) {
        size_t cap = sb->pend_len + len > PEND_MAX_BYTES ? sb->pend_len + len : PEND_MAX_BYTES;
        uint8_t *buf = realloc(sb->pend_buf, cap);
        if (!buf) {
            log_msg(LOG_ERROR, "out of memory for journal entries", "seq=%" PRIu64 " action=exit", seq);
            _exit(1);
        }
        sb->pend_buf = buf;
        sb->pend_cap = cap;
    }
    memcpy(sb->pend_buf + sb->pend_len, bytes, len);
    sb->pend_off[sb->n_pend] = sb->pend_len;
    sb->pend_lens[sb->n_pend++] = len;
    sb->pend_len += len;
    sb->recv_seq = seq;
    sb->recv_xxh = wire_entry_xxh(bytes, len);
    sb->recv_xxh_known = 1;
    return 1;
}

static void on_journal(struct repl_standby *sb, const struct wire_entry *j)
{
    uint8_t *copy = NULL;
    const uint8_t *bytes = j->bytes;

    sb->n_journal_msgs++;
    if (sb->bootstrapping) {
        knows_primary_holds(sb, j->seq);
        return;
    }
    if (sb->drop_every && sb->n_journal_msgs % sb->drop_every == 0) {
        knows_primary_holds(sb, j->seq - 1); /* lost on the way, as a PUB drop would */
        return;
    }
    if (sb->corrupt_every && sb->n_journal_msgs % sb->corrupt_every == 0 && (copy = malloc(j->len))) {
        memcpy(copy, j->bytes, j->len);
        copy[j->len - 1] ^= 0x5a; /* the trailer's last byte */
        bytes = copy;
    }
    take_entry(sb, j->seq, bytes, j->len, j->has_prev_xxh, j->prev_xxh);
    free(copy);
}

static void on_entries(struct repl_standby *sb, const struct wire_entries *es)
{
    /* only the answer to the FETCH outstanding ends it: a late answer to
     * an earlier one (a slow link) must not start yet another */
    if (es->n_entries == 0 || es->entries[0].seq == sb->fetch_from)
        sb->fetching = 0;
    if (sb->bootstrapping)
        return;
    for (uint32_t i = 0; i < es->n_entries && sb->following; i++) {
        /* the first follows what the primary said; the others, the one before them in the reply */
        int has_prev = i ? 1 : es->has_prev_xxh;
        uint64_t prev = i ? wire_entry_xxh(es->entries[i - 1].bytes, es->entries[i - 1].len) : es->prev_xxh;
        if (take_entry(sb, es->entries[i].seq, es->entries[i].bytes, es->entries[i].len, has_prev, prev)) {
            if (!sb->first_fetched)
                sb->first_fetched = es->entries[i].seq;
            sb->n_fetched++;
        } else if (es->entries[i].seq > sb->recv_seq)
            break; /* a bad one: fetched again from there */
    }
}

/* ------------------------------------------------------------ bootstrap */

static int adopt_primary_history(struct repl_standby *sb);

static void send_snapshot(struct repl_standby *sb)
{
    struct wire_msg m = {.type = WIRE_SNAPSHOT};
    snprintf(m.u.snapshot.name, sizeof m.u.snapshot.name, "%s", sb->snap_name);
    m.u.snapshot.offset = sb->snap_offset;
    m.u.snapshot.max_len = WIRE_CHUNK_MAX;
    send_msg(sb, &m);
    sb->snap_ns = link_monotonic_ns();
}

/* Moves db/ aside (never deleting it), and this standby's checkpoints
 * (set_aside_checkpoints), makes the moves durable (the folders fsynced)
 * and opens a new, empty store.  0 or an errno value. */
static int set_aside(struct repl_standby *sb)
{
    char from[PATH_MAX + 8], dir[PATH_MAX + 16], to[PATH_MAX + 64], err[512] = "";
    uint64_t epoch = sb->epoch;
    int rc;

    applier_close(sb->a);
    sb->a = NULL;
    store_close(sb->s);
    sb->s = NULL;
    snprintf(from, sizeof from, "%s/db", sb->c->data_dir);
    snprintf(dir, sizeof dir, "%s/set-aside", sb->c->data_dir);
    snprintf(to, sizeof to, "%s/db-%" PRIu64, dir, link_realtime_ns());
    /* its checkpoints go first (durably): one of another history would
     * pass for the newest (a standby takes checkpoints too), and a crash
     * or a failure between the two moves must not leave them beside an
     * empty db/; db/ without its checkpoints is only a standby to follow */
    size_t n_ckpts = 0;
    char ckpts[PATH_MAX + 64], cerr[512];
    rc = set_aside_checkpoints(sb->c->data_dir, 0, &n_ckpts, ckpts, sizeof ckpts, cerr, sizeof cerr);
    if (rc)
        log_msg(LOG_ERROR, "bootstrap failed: cannot set the checkpoints aside", "error=\"%s\"", cerr);
    else if (n_ckpts)
        log_msg(LOG_WARN, "checkpoints set aside for a bootstrap", "checkpoints=%zu to=\"%s\"", n_ckpts, ckpts);
    if (rc == 0)
        rc = (sys_mkdir(dir, 0700) != 0 && errno != EEXIST) || sys_rename(from, to) != 0 ? errno : 0;
    /* durable before the new db/ is made: after a crash the old data is
     * in set-aside/, never in db/ beside a new store's files */
    if (rc == 0)
        rc = sys_fsync_dir(dir);
    if (rc == 0)
        rc = sys_fsync_dir(sb->c->data_dir);
    if (rc) {
        log_msg(LOG_ERROR, "bootstrap failed: cannot set the data aside",
                "to=\"%s\" error=\"%s\" action=exit", to, strerror(rc));
        return rc;
    }
    log_msg(LOG_WARN, "data set aside for a bootstrap", "to=\"%s\" last_seq=%" PRIu64, to, sb->last_seq);
    rc = store_open(sb->c->data_dir, STORE_CREATE, sb->c->cache_mb, &sb->s, err, sizeof err);
    if (rc || (rc = epoch_adopt(sb, epoch)) != 0 ||
        (rc = applier_open(sb->s, &sb->a, err, sizeof err)) != 0) {
        log_msg(LOG_ERROR, "bootstrap failed: cannot open a new store after setting the data aside",
                "error=\"%s\" action=exit", err[0] ? err : store_strerror(rc));
        return rc ? rc : EIO;
    }
    sb->last_seq = sb->recv_seq = sb->acked_seq = 0;
    sb->recv_xxh_known = 0;
    memset(sb->history, 0, sizeof sb->history); /* apply is stopped */
    return 0;
}

static void part_path(const struct repl_standby *sb, char *out, size_t size)
{
    snprintf(out, size, "%s/checkpoints/.%s.part", sb->c->data_dir, sb->snap_name);
}

/* The download under way stops and its partial copy goes (the checkpoint
 * was removed, or another primary is followed): the next WELCOME names
 * the checkpoint to download. */
static void bootstrap_abandon(struct repl_standby *sb)
{
    char part[PATH_MAX + WIRE_FILE_MAX + 32];

    part_path(sb, part, sizeof part);
    close(sb->snap_fd);
    sb->snap_fd = -1;
    sb->bootstrapping = 0;
    sys_unlink(part);
}

/* A bootstrap that cannot go on (a write, fsync or rename of the copy
 * failed: what is on disk is not trusted): the partial copy and, when
 * given, the installed file are removed, and the standby stops (exit 1);
 * the next start downloads the checkpoint again.  Returns 1. */
static int bootstrap_fail(struct repl_standby *sb, const char *what, int err, const char *installed)
{
    char part[PATH_MAX + WIRE_FILE_MAX + 32];

    if (sb->snap_fd >= 0)
        close(sb->snap_fd);
    sb->snap_fd = -1;
    sb->bootstrapping = 0;
    part_path(sb, part, sizeof part);
    sys_unlink(part);
    if (installed)
        sys_unlink(installed);
    log_msg(LOG_ERROR, what, "file=\"%s\" error=\"%s\" action=exit hint=\"%s\"", installed ? installed : part,
            strerror(err), "the copy is removed: the next start downloads the checkpoint again");
    return 1;
}

static int standby_bootstrap(struct repl_standby *sb, const struct wire_checkpoint *ck)
{
    char path[PATH_MAX + WIRE_FILE_MAX + 32];
    struct apply_meta am;
    struct stat st;

    if (sb->bootstrapping)
        return 0;
    sb->host.apply_stop(sb->host.arg); /* the node starts it again once bootstrapped or given up */
    am = applier_meta(sb->a);
    log_msg(LOG_WARN, "the primary no longer holds the entries this standby needs: bootstrapping",
            "last_seq=%" PRIu64 " checkpoint=%s checkpoint_seq=%" PRIu64, sb->last_seq, ck->name,
            ck->journal_seq);
    if ((sb->last_seq || am.applied_seq || am.n_groups || am.restart_seq > 1) && set_aside(sb) != 0)
        return 1;
    snprintf(sb->snap_name, sizeof sb->snap_name, "%s", ck->name);
    part_path(sb, path, sizeof path);
    sb->snap_fd = sys_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sb->snap_fd < 0 || fstat(sb->snap_fd, &st) != 0)
        return bootstrap_fail(sb, "bootstrap failed: cannot open the checkpoint copy", errno, NULL);
    sb->snap_offset = (uint64_t)st.st_size; /* resumed where an earlier run stopped */
    sb->snap_total = sb->snap_xxh = 0;
    sb->bootstrapping = 1;
    sb->fetching = 0;
    send_snapshot(sb);
    return 0;
}

/* The partial copy is emptied and asked for from its start.  1: cannot go on. */
static int snapshot_restart(struct repl_standby *sb, const char *why)
{
    log_msg(LOG_WARN, "checkpoint download starts over", "file=%s error=\"%s\"", sb->snap_name, why);
    if (sys_ftruncate(sb->snap_fd, 0) != 0)
        return bootstrap_fail(sb, "bootstrap failed: cannot truncate the checkpoint copy", errno, NULL);
    sb->snap_offset = sb->snap_total = sb->snap_xxh = 0;
    send_snapshot(sb);
    return 0;
}

/* The whole file is here: make it durable, check it, install it (rename,
 * then fsync the folder) and load it.  1: cannot go on. */
static int snapshot_finish(struct repl_standby *sb)
{
    char part[PATH_MAX + WIRE_FILE_MAX + 32], path[PATH_MAX + WIRE_FILE_MAX + 32], err[512] = "";
    char dir[PATH_MAX + 16];
    struct ckpt_info info = {0};
    uint64_t xxh = 0;
    int rc;

    if (sys_fsync(sb->snap_fd) != 0)
        return bootstrap_fail(sb, "bootstrap failed: cannot fsync the checkpoint copy", errno, NULL);
    if ((rc = link_file_xxh64(sb->snap_fd, &xxh)) != 0)
        return bootstrap_fail(sb, "bootstrap failed: cannot read the checkpoint copy back", rc, NULL);
    if (xxh != sb->snap_xxh)
        return snapshot_restart(sb, "XXH64 of the assembled file differs");
    close(sb->snap_fd);
    sb->snap_fd = -1;
    part_path(sb, part, sizeof part);
    snprintf(dir, sizeof dir, "%s/checkpoints", sb->c->data_dir);
    snprintf(path, sizeof path, "%s/%s", dir, sb->snap_name);
    if (sys_rename(part, path) != 0)
        return bootstrap_fail(sb, "bootstrap failed: cannot install the checkpoint", errno, NULL);
    if ((rc = sys_fsync_dir(dir)) != 0)
        return bootstrap_fail(sb, "bootstrap failed: cannot fsync the checkpoints folder", rc, path);
    rc = applier_load_checkpoint(sb->a, path, &info, NULL, NULL, err, sizeof err);
    if (rc) {
        log_msg(LOG_ERROR, "bootstrap failed: cannot load the checkpoint",
                "file=\"%s\" error=\"%s\" action=exit", path, err[0] ? err : store_strerror(rc));
        ckpt_info_free(&info);
        return 1;
    }
    {
        /* the load is committed without sync: make it durable before an
         * ACK can count this standby */
        uint32_t n_logs = 0;
        rc = store_log_trim(sb->s, &n_logs);
        if (rc) {
            log_msg(LOG_ERROR, "bootstrap failed: cannot make the loaded checkpoint durable",
                    "error=\"%s\" action=exit", store_strerror(rc));
            ckpt_info_free(&info);
            return 1;
        }
    }
    uint64_t restart = info.has_replay ? info.replay.restart_seq : info.journal_seq + 1;
    sb->history[info.journal_seq % DIGEST_HISTORY] = (struct digest_at){info.journal_seq, info.digest};
    sb->last_seq = sb->recv_seq = restart - 1; /* our journal starts at the checkpoint's restart point */
    recv_tail_reset(sb);
    sb->acked_seq = 0;
    sb->bootstrapping = 0;
    apply_reset(sb);
    if (adopt_primary_history(sb) != 0) {
        ckpt_info_free(&info);
        return 1;
    }
    sb->following = 1;
    sb->n_bootstraps++;
    log_msg(LOG_INFO, "bootstrapped from a checkpoint",
            "file=\"%s\" journal_seq=%" PRIu64 " restart_seq=%" PRIu64 " entries=%" PRIu64, path,
            info.journal_seq, restart, info.n_entries);
    ckpt_info_free(&info);
    return 0;
}

static int on_chunk(struct repl_standby *sb, const struct wire_chunk *c)
{
    if (!sb->bootstrapping || strcmp(c->name, sb->snap_name) != 0 || c->offset != sb->snap_offset)
        return 0; /* an answer to a request we repeated */
    if (sb->snap_total && (c->total_size != sb->snap_total || c->file_xxh64 != sb->snap_xxh))
        return snapshot_restart(sb, "the file changed");
    sb->snap_total = c->total_size;
    sb->snap_xxh = c->file_xxh64;
    for (size_t done = 0; done < c->len;) {
        ssize_t w = sys_pwrite(sb->snap_fd, c->data + done, c->len - done, (off_t)(c->offset + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return bootstrap_fail(sb, "bootstrap failed: cannot write the checkpoint copy",
                                  w < 0 ? errno : EIO, NULL);
        done += (size_t)w;
    }
    sb->snap_offset += c->len;
    if (sb->snap_offset < sb->snap_total) {
        send_snapshot(sb);
        return 0;
    }
    return snapshot_finish(sb);
}

/* Keeps WELCOME's history (a bootstrap or a rebuild adopts it later).
 * 0 or ENOMEM. */
static int keep_primary_history(struct repl_standby *sb, const struct wire_welcome *w)
{
    struct epoch_start *copy = malloc(w->n_history * sizeof *copy);

    if (!copy)
        return ENOMEM;
    memcpy(copy, w->history, w->n_history * sizeof *copy);
    free(sb->primary_hist);
    sb->primary_hist = copy;
    sb->n_primary_hist = w->n_history;
    return 0;
}

/* Our history becomes the primary's (it agrees with every entry held:
 * store_history_adopt checks); written only when it differs. */
static int adopt_primary_history(struct repl_standby *sb)
{
    struct epoch_start *ours = NULL;
    uint32_t n = 0;
    char why[256] = "";
    int rc = store_history(sb->s, &ours, &n);

    if (!rc && (n != sb->n_primary_hist || memcmp(ours, sb->primary_hist, n * sizeof *ours) != 0))
        rc = store_history_adopt(sb->s, sb->primary_hist, sb->n_primary_hist, why, sizeof why);
    free(ours);
    if (rc)
        log_msg(LOG_ERROR, "cannot take the primary's epoch history", "error=\"%s\" action=exit",
                why[0] ? why : store_strerror(rc));
    return rc;
}

/* The fork point with the primary: the last entry both hold identically,
 * as far as the histories tell (history_fork). */
static uint64_t fork_point(struct repl_standby *sb, const struct wire_welcome *w)
{
    struct epoch_start *ours = NULL;
    uint32_t n = 0;
    uint64_t fork;

    if (store_history(sb->s, &ours, &n) != 0)
        return 0;
    fork = history_fork(ours, n, sb->hello_last_seq, w->history, w->n_history, w->last_seq);
    free(ours);
    return fork;
}

/* Writes entries from..to of our journal, as they are, into
 * DIR/set-aside/entries-<from>-<to>-lsn-<first>-<last>-<ns>.rkj: each entry
 * preceded by its length (uint32, little-endian); fsynced with the folder.
 * 0 or an errno value. */
static int set_aside_entries(struct repl_standby *sb, uint64_t from, uint64_t to, char *path, size_t size)
{
    char dir[PATH_MAX + 16];
    struct journal_header first = {0}, last = {0};
    uint8_t *entry = NULL;
    size_t len = 0;
    int fd = -1, rc = 0;

    snprintf(dir, sizeof dir, "%s/set-aside", sb->c->data_dir);
    if (store_journal_get_raw(sb->s, from, &entry, &len) != 0 ||
        journal_read_header(entry, len, &first) != 0) {
        free(entry);
        return RK_ECORRUPT;
    }
    free(entry);
    entry = NULL;
    if (store_journal_get_raw(sb->s, to, &entry, &len) != 0 || journal_read_header(entry, len, &last) != 0) {
        free(entry);
        return RK_ECORRUPT;
    }
    free(entry);
    entry = NULL;
    snprintf(path, size, "%s/entries-%" PRIu64 "-%" PRIu64 "-lsn-%" PRIu64 "-%" PRIu64 "-%" PRIu64 ".rkj",
             dir, from, to, first.first_lsn, last.last_lsn, link_realtime_ns());
    if (sys_mkdir(dir, 0700) == 0) {
        int frc = sys_fsync_dir(sb->c->data_dir); /* set-aside/ itself durable */
        if (frc)
            return frc;
    } else if (errno != EEXIST) {
        return errno;
    }
    fd = sys_open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    for (uint64_t seq = from; rc == 0 && seq <= to; seq++) {
        uint8_t prefix[4];
        rc = store_journal_get_raw(sb->s, seq, &entry, &len);
        for (int i = 0; rc == 0 && i < 4; i++)
            prefix[i] = (uint8_t)(len >> (8 * i));
        if (rc == 0 && (sys_write(fd, prefix, 4) != 4 || sys_write(fd, entry, len) != (ssize_t)len))
            rc = errno ? errno : EIO;
        free(entry);
        entry = NULL;
    }
    if (rc == 0 && sys_fsync(fd) != 0)
        rc = errno;
    close(fd);
    return rc ? rc : sys_fsync_dir(dir);
}

/* Reopens the store and the applier after a rebuild.  0 or an error. */
static int reopen(struct repl_standby *sb)
{
    char err[512] = "";
    int rc = store_open(sb->c->data_dir, STORE_CREATE, sb->c->cache_mb, &sb->s, err, sizeof err);

    if (!rc)
        rc = applier_open(sb->s, &sb->a, err, sizeof err);
    if (rc)
        log_msg(LOG_ERROR, "cannot open the data directory again after a rebuild", "error=\"%s\" action=exit",
                err[0] ? err : store_strerror(rc));
    return rc;
}

/* Our journal holds entries past the fork point: they are set aside (a
 * file in set-aside/, never deleted), the state is rebuilt to the fork
 * point (restore_rebuild), our history becomes the primary's, and HELLO
 * says the fork point.  When that cannot be done (the entries past it are
 * not all held, no checkpoint or journal reaches it), everything is set
 * aside and we bootstrap from the primary's checkpoint.  1: stop. */
static int diverged(struct repl_standby *sb, const struct wire_welcome *w, uint64_t fork)
{
    char file[PATH_MAX + 128] = "", aside[PATH_MAX + 64] = "", err[1024] = "";
    uint64_t first = 0;
    size_t n_ckpts = 0;
    int rc;

    if (fork == sb->hello_last_seq && !w->matched && fork > 0 && sb->tail_rollbacks == 0 &&
        w->first_seq <= fork && store_epoch_of(sb->s, fork) == history_epoch_of(w->history, w->n_history, fork)) {
        /* the same epoch for our last entry, other bytes: the primary
         * published it ahead of its fsync and lost it in a power cut,
         * then wrote another entry there (take_entry).  Only the last one
         * can be lost so (the primary writes an entry only once the one
         * before is durable): ours is set aside and the state rebuilt to
         * the entry before; the HELLO that follows checks that one, and a
         * mismatch there too bootstraps (tail_rollbacks). */
        fork--;
        sb->tail_rollbacks++;
        log_msg(LOG_WARN, "our last entry is not the primary's: setting it aside",
                "seq=%" PRIu64 " epoch=%" PRIu64, fork + 1, store_epoch_of(sb->s, fork + 1));
    }
    if (fork == sb->hello_last_seq || store_journal_first(sb->s, &first) != 0 || first > fork + 1) {
        /* the same epochs but other bytes (a primary that reused them),
         * or entries past the fork point we do not hold */
        log_msg(LOG_ERROR, "this standby's journal and the primary's share no entry it can rebuild to",
                "last_seq=%" PRIu64 " fork_seq=%" PRIu64 " matched=%d action=%s", sb->hello_last_seq, fork,
                w->matched, w->has_checkpoint ? "bootstrap" : "stop");
        return w->has_checkpoint ? standby_bootstrap(sb, &w->checkpoint) : 1;
    }
    sb->host.apply_stop(sb->host.arg);
    rc = set_aside_entries(sb, fork + 1, sb->hello_last_seq, file, sizeof file);
    if (rc) {
        log_msg(LOG_ERROR, "cannot set aside the entries past the fork point",
                "file=\"%s\" error=\"%s\" action=exit", file, store_strerror(rc));
        return 1;
    }
    log_msg(LOG_WARN, "entries past the fork point set aside: they are on no primary's history",
            "from_seq=%" PRIu64 " to_seq=%" PRIu64 " file=\"%s\"", fork + 1, sb->hello_last_seq, file);
    /* checkpoints of what was set aside (a former primary took them) go
     * with it: no restore, bootstrap or engine may take them for ours */
    rc = set_aside_checkpoints(sb->c->data_dir, fork, &n_ckpts, aside, sizeof aside, err, sizeof err);
    if (rc) {
        log_msg(LOG_ERROR, "cannot set aside the checkpoints past the fork point", "error=\"%s\" action=exit",
                err);
        return 1;
    }
    if (n_ckpts)
        log_msg(LOG_WARN, "checkpoints past the fork point set aside", "checkpoints=%zu to=\"%s\"", n_ckpts,
                aside);
    /* the ring this directory made (a former primary's) stays its own:
     * the rebuilt meta.db gets its record back, so that a promotion fences
     * and replaces it instead of refusing it */
    struct store_ring_record ring_rec;
    int have_ring = store_ring_record(sb->s, &ring_rec) == 0;
    applier_close(sb->a);
    sb->a = NULL;
    store_close(sb->s);
    sb->s = NULL;
    rc = restore_rebuild(sb->c->data_dir, fork, sb->c->cache_mb, aside, sizeof aside, err, sizeof err);
    if (rc)
        log_msg(LOG_WARN, "cannot rebuild the state to the fork point",
                "fork_seq=%" PRIu64 " error=\"%s\" action=%s", fork, err,
                w->has_checkpoint ? "bootstrap" : "stop");
    if (reopen(sb) != 0)
        return 1;
    if (rc)
        return w->has_checkpoint ? standby_bootstrap(sb, &w->checkpoint) : 1;
    if (adopt_primary_history(sb) != 0)
        return 1;
    if (have_ring && (rc = store_ring_record_put(sb->s, &ring_rec)) != 0) {
        log_msg(LOG_ERROR, "cannot keep the ring's record in the rebuilt meta.db", "error=\"%s\" action=exit",
                store_strerror(rc));
        return 1;
    }
    log_msg(LOG_INFO, "state rebuilt to the fork point", "fork_seq=%" PRIu64 " old_db=\"%s\"", fork, aside);
    sb->n_set_aside++;
    sb->last_seq = sb->recv_seq = sb->acked_seq = fork;
    recv_tail_reset(sb);
    memset(sb->history, 0, sizeof sb->history); /* apply is stopped */
    apply_reset(sb);
    sb->host.durable(sb->host.arg, fork);
    send_hello(sb); /* the primary counts us from the fork point on */
    return 0;
}

static int on_welcome(struct repl_standby *sb, const struct wire_welcome *w)
{
    uint64_t fork;

    if (w->has_hello_last_seq && w->hello_last_seq != sb->hello_last_seq) {
        /* the answer to a HELLO sent before the last one (said twice:
         * ERROR 1, the retry), about a last entry we may no longer hold
         * (set aside since): its `matched` is not about what we hold now
         * (taken after a rebuild to the fork point, "not matched" made
         * the standby stop: "share no entry it can rebuild to") */
        log_msg(LOG_INFO, "WELCOME to an earlier HELLO ignored",
                "its_last_seq=%" PRIu64 " hello_last_seq=%" PRIu64, w->hello_last_seq, sb->hello_last_seq);
        return 0;
    }
    sb->welcomed = 1;
    knows_primary_holds(sb, w->last_seq);
    if (keep_primary_history(sb, w) != 0)
        return 1;
    fork = fork_point(sb, w);
    if (fork < sb->hello_last_seq || !w->matched)
        return diverged(sb, w, fork);
    if (w->first_seq > sb->last_seq + 1 && w->last_seq >= w->first_seq) {
        if (w->has_checkpoint)
            return standby_bootstrap(sb, &w->checkpoint);
        log_msg(LOG_ERROR, "the primary no longer holds the entries this standby needs and has no checkpoint",
                "last_seq=%" PRIu64 " primary_first_seq=%" PRIu64, sb->last_seq, w->first_seq);
        sb->stop_error = 1;
        return 1;
    }
    if (adopt_primary_history(sb) != 0)
        return 1;
    sb->following = 1;
    sb->tail_rollbacks = 0;
    log_msg(LOG_INFO, "following the primary",
            "primary=%s last_seq=%" PRIu64 " primary_first_seq=%" PRIu64 " primary_last_seq=%" PRIu64,
            primary_name(sb), sb->last_seq, w->first_seq, w->last_seq);
    return 0;
}

/* Compares our digest with the primary's at the newest heartbeat's
 * sequence that apply has reached and whose digest we still hold. */
static void compare_digest(struct repl_standby *sb)
{
    uint32_t n = sb->hb_history_n < HB_HISTORY ? sb->hb_history_n : HB_HISTORY;

    for (uint32_t i = 0; i < n; i++) {
        const struct digest_at *hb = &sb->hb_history[(sb->hb_history_n - 1 - i) % HB_HISTORY];
        if (hb->seq == 0)
            continue;
        pthread_mutex_lock(&sb->lock);
        struct digest_at ours = sb->history[hb->seq % DIGEST_HISTORY];
        pthread_mutex_unlock(&sb->lock);
        if (ours.seq != hb->seq)
            continue; /* not applied yet, or too long ago */
        if (hb->seq == sb->digest_compared_seq)
            return; /* compared already */
        int match = ours.digest == hb->digest;
        if (!match && sb->digest_match != 0)
            log_msg(LOG_ERROR, "state digest differs from the primary's",
                    "seq=%" PRIu64 " ours=%016" PRIx64 " primary=%016" PRIx64, hb->seq, ours.digest,
                    hb->digest);
        sb->digest_match = match;
        sb->digest_compared_seq = hb->seq;
        return;
    }
}

static void on_heartbeat(struct repl_standby *sb, const struct wire_heartbeat *hb, uint64_t epoch)
{
    int listed = 0;
    const struct wire_standby *other = NULL;

    knows_primary_holds(sb, hb->journal_seq);
    sb->hb_journal_seq = hb->journal_seq;
    sb->hb_digest = hb->digest;
    sb->hb_digest_seq = hb->digest_seq;
    sb->n_heartbeats++;
    const struct digest_at *newest =
        sb->hb_history_n ? &sb->hb_history[(sb->hb_history_n - 1) % HB_HISTORY] : NULL;
    if (hb->digest_seq && !(newest && newest->seq == hb->digest_seq && newest->digest == hb->digest))
        sb->hb_history[sb->hb_history_n++ % HB_HISTORY] = (struct digest_at){hb->digest_seq, hb->digest};
    compare_digest(sb);
    for (uint32_t i = 0; i < hb->n_standbys; i++) {
        const struct wire_standby *w = &hb->standbys[i];
        /* listed, but short of what we acked two heartbeats ago: our
         * acks no longer reach our slot (this connection was replaced,
         * e.g. a reconnect: its new routing id is not the one our HELLO
         * came from); HELLO again */
        if (strcmp(w->id, sb->c->repl_node_id) == 0)
            listed = w->acked_seq >= sb->hb_acks[0] || w->acked_seq >= hb->journal_seq ? 1 : -1;
        else if (!other || w->acked_seq > other->acked_seq)
            other = w;
    }
    sb->peers[sb->cur].epoch = epoch;
    pthread_mutex_lock(&sb->lock);
    snprintf(sb->other_id, sizeof sb->other_id, "%s", other ? other->id : "");
    sb->other_acked = other ? other->acked_seq : 0;
    sb->other_hb_epoch = epoch;
    pthread_mutex_unlock(&sb->lock);
    sb->hb_acks[0] = sb->hb_acks[1];
    sb->hb_acks[1] = 0;
    if (sb->welcomed && !sb->bootstrapping) {
        send_ack(sb, 1); /* also tells the primary we are alive */
        sb->hb_acks[1] = sb->acked_seq;
    }
    /* a primary that restarted has forgotten us: say HELLO again */
    if (listed != 1 && sb->welcomed && link_monotonic_ns() - sb->hello_ns > HELLO_RETRY_NS)
        send_hello(sb);
}

/* ------------------------------------------------------------ the cluster */

/* Peer i runs a primary of a lower epoch than ours (deposed, and maybe not
 * told: it was away, or hung): HELLO at our epoch makes it step down
 * (docs/PROTOCOL.md, "Epochs").  At most once a second per peer. */
static void tell_deposed(struct repl_standby *sb, uint32_t i)
{
    struct peer *pe = &sb->peers[i];
    uint64_t now = link_monotonic_ns();
    struct wire_msg m;

    if (pe->told_ns && now - pe->told_ns < HELLO_RETRY_NS)
        return;
    hello_msg(sb, &m);
    send_to(sb, pe->dealer, &m);
    pe->told_ns = now;
    log_msg(LOG_WARN, "a primary of a lower epoch runs: told of ours, it steps down",
            "primary=%s its_epoch=%" PRIu64 " epoch=%" PRIu64, pe->serve, pe->epoch, sb->epoch);
}

/* Follows peer i, which announced itself primary of epoch, higher than the
 * primary followed (or none was yet): the entries received are committed,
 * the epoch adopted (durably, before anything of peer i is taken), the
 * primary left behind is told of it, a download under way is dropped, and
 * HELLO to peer i finds the fork point with it as with any primary
 * (on_welcome).  1: the standby cannot go on. */
static int repoint(struct repl_standby *sb, uint32_t i, uint64_t epoch)
{
    int old = sb->cur, rc;

    flush_pending(sb);
    if (epoch > sb->epoch && (rc = epoch_adopt(sb, epoch)) != 0) {
        log_msg(LOG_ERROR, "cannot record the new epoch", "epoch=%" PRIu64 " error=\"%s\" action=exit", epoch,
                store_strerror(rc));
        sb->stop_error = 1;
        return 1;
    }
    if (sb->bootstrapping)
        bootstrap_abandon(sb);
    if (old >= 0) {
        zmq_setsockopt(sb->sub, ZMQ_UNSUBSCRIBE, "rk.j", 4);
        zmq_setsockopt(sb->sub, ZMQ_UNSUBSCRIBE, "rk.c", 4);
        if (sb->peers[old].epoch < sb->epoch)
            tell_deposed(sb, (uint32_t)old);
        sb->n_repoints++;
    }
    sb->cur = (int)i;
    sb->sub = sb->peers[i].sub;
    sb->dealer = sb->peers[i].dealer;
    if (zmq_setsockopt(sb->sub, ZMQ_SUBSCRIBE, "rk.j", 4) ||
        zmq_setsockopt(sb->sub, ZMQ_SUBSCRIBE, "rk.c", 4)) {
        log_msg(LOG_ERROR, "cannot subscribe to the primary", "primary=%s error=\"%s\" action=exit",
                sb->peers[i].publish, zmq_strerror(zmq_errno()));
        sb->stop_error = 1;
        return 1;
    }
    /* what we knew of the primary left behind says nothing of this one */
    sb->primary_seq = 0;
    sb->behind_ns = 0;
    sb->hb_digest = sb->hb_digest_seq = sb->hb_journal_seq = 0;
    sb->hb_history_n = 0;
    memset(sb->hb_history, 0, sizeof sb->hb_history);
    sb->digest_match = -1;
    sb->digest_compared_seq = 0;
    pthread_mutex_lock(&sb->lock);
    sb->other_id[0] = '\0';
    sb->other_acked = sb->other_hb_epoch = 0;
    pthread_mutex_unlock(&sb->lock);
    log_msg(old >= 0 ? LOG_WARN : LOG_INFO, "following the primary of the highest epoch",
            "primary=%s epoch=%" PRIu64 " before=%s last_seq=%" PRIu64, sb->peers[i].serve, epoch,
            old >= 0 ? sb->peers[old].serve : "none", sb->last_seq);
    send_hello(sb);
    return 0;
}

/* Peer i (not the one followed) announced itself primary of epoch (a
 * heartbeat): a lower epoch than ours is told it was deposed; a higher one
 * than the followed primary's is followed.  1: stop. */
static int on_peer_epoch(struct repl_standby *sb, uint32_t i, uint64_t epoch)
{
    sb->peers[i].epoch = epoch;
    if (epoch < sb->epoch) {
        tell_deposed(sb, i);
        return 0;
    }
    if (sb->cur >= 0 && epoch <= sb->peers[sb->cur].epoch)
        return 0; /* the same epoch is the same primary: one writer each */
    return repoint(sb, i, epoch);
}

/* One message from peer i, which is not followed: only its heartbeats
 * count, for their epoch.  -1: nothing waiting; 1: stop. */
static int on_other(struct repl_standby *sb, uint32_t i, void *sock)
{
    struct link_in in;
    char why[512] = "";
    int done = 0, rc = link_recv(sock, 0, &in, why, sizeof why);

    if (rc == EAGAIN || rc == EINTR) {
        link_in_free(&in);
        return -1;
    }
    if (rc == 0 && in.m.type == WIRE_HEARTBEAT)
        done = on_peer_epoch(sb, i, in.m.epoch);
    link_in_free(&in);
    return done;
}

/* One message from either socket; returns 1 when the standby must stop. */
static int on_message(struct repl_standby *sb, void *sock, int from_dealer)
{
    struct link_in in;
    char why[512] = "";
    int newer = 0, done = 0, rc = link_recv(sock, 0, &in, why, sizeof why);

    if (rc == EAGAIN || rc == EINTR) {
        link_in_free(&in);
        return -1; /* nothing more */
    }
    if (rc == RK_EVERSION) {
        sb->n_malformed++;
        if (!sb->version_told++) /* once: a primary publishes many */
            log_msg(LOG_ERROR, "the primary speaks another protocol version: nothing it sends is taken",
                    "socket=%s error=\"%s\" hint=\"run the same ringkeep version on both\"",
                    from_dealer ? "serve" : "publish", why);
    } else if (rc) {
        sb->n_malformed++;
        log_msg(LOG_WARN, "malformed message from the primary: refused", "socket=%s error=\"%s\"",
                from_dealer ? "serve" : "publish", why);
    } else if (wire_check_epoch(sb->epoch, in.m.epoch, &newer, why, sizeof why) != 0) {
        sb->n_refused++;
        log_msg(LOG_WARN, "message from a lower epoch refused", "type=%s error=\"%s\"",
                wire_type_name(in.m.type), why);
    } else {
        /* anything but entries is handled once the entries before it are
         * durable (a heartbeat's ACK, HELLO's last_seq, a bootstrap) */
        if (in.m.type != WIRE_JOURNAL && in.m.type != WIRE_ENTRIES)
            flush_pending(sb);
        if (newer && (rc = epoch_adopt(sb, in.m.epoch)) != 0) {
            /* a synced commit that failed: nothing more is taken or acknowledged */
            log_msg(LOG_ERROR, "cannot record the new epoch", "epoch=%" PRIu64 " error=\"%s\" action=exit",
                    in.m.epoch, store_strerror(rc));
            link_in_free(&in);
            sb->stop_error = 1;
            return 1;
        }
        switch (in.m.type) {
        case WIRE_JOURNAL:
            on_journal(sb, &in.m.u.journal);
            break;
        case WIRE_HEARTBEAT:
            on_heartbeat(sb, &in.m.u.heartbeat, in.m.epoch);
            break;
        case WIRE_CHECKPOINT:
            break; /* the newest one comes in WELCOME when needed */
        case WIRE_CHUNK:
            done = sb->stop_error = on_chunk(sb, &in.m.u.chunk);
            break;
        case WIRE_WELCOME:
            done = on_welcome(sb, &in.m.u.welcome);
            break;
        case WIRE_ENTRIES:
            on_entries(sb, &in.m.u.entries);
            break;
        case WIRE_ERROR:
            log_msg(LOG_WARN, "the primary refused a request", "code=%" PRIu32 " error=\"%s\"",
                    in.m.u.error.code, in.m.u.error.text);
            sb->fetching = 0;
            if (in.m.u.error.code == WIRE_ERR_EPOCH) {
                /* our last HELLO was refused only if it went out at an
                 * epoch we have left since; otherwise what was refused is
                 * older (a HELLO queued for this node while it was down,
                 * delivered once it bound again): a HELLO more would get
                 * a second WELCOME */
                if (sb->hello_epoch < sb->epoch)
                    send_hello(sb);
            } else if (in.m.u.error.code == WIRE_ERR_TRIMMED || in.m.u.error.code == WIRE_ERR_NO_FILE) {
                if (sb->bootstrapping)
                    bootstrap_abandon(sb); /* the checkpoint was removed meanwhile: the newest one instead */
                send_hello(sb);            /* WELCOME names the newest checkpoint */
            } else if (in.m.u.error.code == WIRE_ERR_BAD_REQUEST && sb->bootstrapping) {
                /* e.g. a partial copy longer than the file served (a
                 * checkpoint taken again under the same name): asking
                 * again from the same offset would loop for ever */
                done = snapshot_restart(sb, in.m.u.error.text);
            }
            break;
        default:
            sb->n_malformed++;
            log_msg(LOG_WARN, "unexpected message from the primary: refused", "type=%s",
                    wire_type_name(in.m.type));
        }
    }
    link_in_free(&in);
    if (done)
        sb->stop_error = 1;
    return done;
}

/* ------------------------------------------------------------ status */

json_t *repl_standby_status(struct repl_standby *sb, const struct apply_meta *applied)
{
    struct apply_meta am = *applied;
    uint64_t now = link_monotonic_ns();
    char digest[17], primary_digest[17];

    snprintf(digest, sizeof digest, "%016" PRIx64, am.digest);
    snprintf(primary_digest, sizeof primary_digest, "%016" PRIx64, sb->hb_digest);
    /* "o" steals its reference, even when json_pack fails */
    json_t *st = json_pack(
        "{s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:s, s:o, s:o,"
        " s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:o}",
        "node_id", json_cstr(sb->c->repl_node_id), "primary", json_cstr(primary_name(sb)), "primary_publish",
        json_cstr(sb->cur >= 0 ? sb->peers[sb->cur].publish : ""), "connected", sb->welcomed, "journal_seq",
        json_uint(sb->last_seq), "applied_seq", json_uint(am.applied_seq), "acked_seq",
        json_uint(sb->acked_seq), "primary_journal_seq", json_uint(sb->primary_seq), "lag_entries",
        json_uint(sb->primary_seq > sb->last_seq ? sb->primary_seq - sb->last_seq : 0), "lag_ms",
        json_uint(sb->behind_ns ? (now - sb->behind_ns) / 1000000u : 0), "state_digest", digest,
        "primary_digest", primary_digest, "primary_digest_seq", json_uint(sb->hb_digest_seq), "digest_match",
        sb->digest_match < 0 ? json_null() : json_boolean(sb->digest_match), "digest_compared_seq",
        json_uint(sb->digest_compared_seq), "fetched", json_uint(sb->n_fetched), "first_fetched_seq",
        json_uint(sb->first_fetched), "gaps", json_uint(sb->n_gaps), "duplicates",
        json_uint(sb->n_duplicates), "bad_entries", json_uint(sb->n_bad), "refused_epoch",
        json_uint(sb->n_refused), "malformed", json_uint(sb->n_malformed), "bootstraps",
        json_uint(sb->n_bootstraps), "bootstrapping", sb->bootstrapping, "groups_applied",
        json_uint(am.n_groups), "records", json_uint(am.n_records), "epoch_history",
        json_uint(store_history_length(sb->s)), "set_aside_runs", json_uint(sb->n_set_aside));
    struct repl_promote_view v;
    uint64_t apply_seq, apply_lag = apply_lag_ms(sb, &apply_seq), apply_rate;
    repl_standby_promote_view(sb, &v);
    pthread_mutex_lock(&sb->lock);
    apply_rate = sb->apply_rate;
    pthread_mutex_unlock(&sb->lock);
    if (st &&
        (json_object_set_new(st, "primary_epoch", json_uint(sb->cur >= 0 ? sb->peers[sb->cur].epoch : 0)) ||
         json_object_set_new(st, "nodes", json_uint(sb->n_peers)) ||
         json_object_set_new(st, "repoints", json_uint(sb->n_repoints)) ||
         json_object_set_new(st, "heartbeats", json_uint(sb->n_heartbeats)) ||
         json_object_set_new(st, "hellos", json_uint(sb->n_hellos)) ||
         json_object_set_new(st, "entries_not_following", json_uint(sb->n_not_following)) ||
         json_object_set_new(st, "other_acked_id", json_cstr(v.other_id)) ||
         json_object_set_new(st, "other_acked_seq", json_uint(v.other_acked)) ||
         /* what the ACK reports of apply (issue 13.7) */
         json_object_set_new(st, "apply_lag_ms", json_uint(apply_lag)) ||
         json_object_set_new(st, "apply_bytes_per_s", json_uint(apply_rate)))) {
        json_decref(st);
        st = NULL;
    }
    return st;
}

void repl_standby_promote_view(struct repl_standby *sb, struct repl_promote_view *out)
{
    pthread_mutex_lock(&sb->lock);
    out->held_seq = sb->held_seq;
    out->other_acked = sb->other_acked;
    out->heartbeat_epoch = sb->other_hb_epoch;
    snprintf(out->other_id, sizeof out->other_id, "%s", sb->other_id);
    pthread_mutex_unlock(&sb->lock);
}

/* ------------------------------------------------------------ run */

static uint32_t env_u32(const char *name)
{
    const char *v = getenv(name);
    return v ? (uint32_t)strtoul(v, NULL, 10) : 0;
}

/* A SUB and a DEALER for each node of the cluster, connected (ZeroMQ
 * connects in the background: a node down or not bound, a standby's, holds
 * nothing up).  With one node it is followed from the start, as the
 * primary; with several, the one whose heartbeat shows the highest epoch
 * is (on_peer_epoch), and until then the SUBs take heartbeats only. */
static int open_sockets(struct repl_standby *sb)
{
    char publish[CONFIG_NODES_MAX][CONFIG_ENDPOINT_MAX + 1], serve[CONFIG_NODES_MAX][CONFIG_ENDPOINT_MAX + 1];
    int rc;

    sb->n_peers = node_config_endpoints(sb->c->repl_primary_publish, publish, CONFIG_NODES_MAX);
    if (sb->n_peers != node_config_endpoints(sb->c->repl_primary_serve, serve, CONFIG_NODES_MAX) ||
        sb->n_peers == 0 || sb->n_peers > CONFIG_NODES_MAX)
        return EINVAL; /* node_config_check refuses it */
    sb->ctx = zmq_ctx_new();
    if (!sb->ctx)
        return ENOMEM;
    for (uint32_t i = 0; i < sb->n_peers; i++) {
        struct peer *pe = &sb->peers[i];
        memcpy(pe->publish, publish[i], sizeof pe->publish);
        memcpy(pe->serve, serve[i], sizeof pe->serve);
        pe->sub = zmq_socket(sb->ctx, ZMQ_SUB);
        pe->dealer = zmq_socket(sb->ctx, ZMQ_DEALER);
        if (!pe->sub || !pe->dealer)
            return ENOMEM;
        if ((rc = link_setup(pe->sub, SUB_HWM)) || (rc = link_setup(pe->dealer, DEALER_HWM)))
            return rc;
        if (sb->c->curve && ((rc = link_curve_client(pe->sub, sb->c->curve_server_key,
                                                     sb->c->curve_public_key, sb->c->curve_secret_key)) ||
                             (rc = link_curve_client(pe->dealer, sb->c->curve_server_key,
                                                     sb->c->curve_public_key, sb->c->curve_secret_key))))
            return rc;
        /* no ZMQ_ROUTING_ID: the primary's ROUTER picks one per
         * connection (a routing id a peer chooses could be chosen by
         * another); HELLO names us */
        if (zmq_setsockopt(pe->sub, ZMQ_SUBSCRIBE, "rk.h", 4) || zmq_connect(pe->sub, pe->publish) ||
            zmq_connect(pe->dealer, pe->serve))
            return zmq_errno();
    }
    if (sb->n_peers == 1) {
        sb->cur = 0;
        sb->sub = sb->peers[0].sub;
        sb->dealer = sb->peers[0].dealer;
        if (zmq_setsockopt(sb->sub, ZMQ_SUBSCRIBE, "rk.j", 4) ||
            zmq_setsockopt(sb->sub, ZMQ_SUBSCRIBE, "rk.c", 4))
            return zmq_errno();
    }
    return 0;
}

int repl_standby_open(const struct node_config *c, const struct repl_standby_host *host,
                      struct repl_standby **out)
{
    struct repl_standby *sb = calloc(1, sizeof *sb);
    struct journal_header last = {0};
    char err[512] = "";
    int rc = 0;

    *out = sb;
    if (!sb)
        return ENOMEM;
    sb->c = c;
    sb->host = *host;
    sb->digest_match = -1;
    sb->snap_fd = -1;
    sb->cur = -1;
    sb->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); /* without it, a step waits its timeout */
    sb->drop_every = env_u32("RK_TEST_DROP_JOURNAL");
    sb->corrupt_every = env_u32("RK_TEST_CORRUPT_JOURNAL");
    sb->journal_gate = getenv("RK_TEST_JOURNAL_GATE");
    pthread_mutex_init(&sb->lock, NULL);
    rc = store_open(c->data_dir, STORE_CREATE, c->cache_mb, &sb->s, err, sizeof err);
    if (rc) {
        log_msg(LOG_ERROR, "cannot open the data directory", "data_dir=\"%s\" error=\"%s\"", c->data_dir,
                err);
        return rc;
    }
    if ((rc = epoch_load(sb)) != 0) {
        log_msg(LOG_ERROR, "cannot read the epoch", "error=\"%s\"", store_strerror(rc));
        return rc;
    }
    rc = store_journal_last(sb->s, &last);
    if (rc && rc != RK_ENOTFOUND) {
        log_msg(LOG_ERROR, "cannot read the journal", "error=\"%s\"", store_strerror(rc));
        return rc;
    }
    sb->last_seq = sb->recv_seq = sb->acked_seq = last.seq;
    rc = applier_open(sb->s, &sb->a, err, sizeof err);
    if (rc) {
        log_msg(LOG_ERROR, "cannot open the applier", "error=\"%s\"", err);
        return rc;
    }
    uint64_t loading_seq = 0;
    if (applier_load_interrupted(sb->a, &loading_seq)) {
        /* a bootstrap killed in its load: some of the checkpoint's tables
         * and no "applied" record.  Nothing of it is trusted (the next
         * checkpoint may no longer hold keys it has): the bootstrap starts
         * over on an empty store, and what it left is kept in set-aside/ */
        log_msg(LOG_WARN, "interrupted checkpoint load found: set aside, the bootstrap starts over",
                "checkpoint_seq=%" PRIu64 " data_dir=\"%s\"", loading_seq, c->data_dir);
        if ((rc = set_aside(sb)) != 0)
            return rc;
    }
    {
        /* after a bootstrap the journal may hold nothing yet: what the
         * loaded checkpoint covers (every entry before its restart point,
         * made durable before the load was acknowledged) is held too */
        uint64_t restart = applier_meta(sb->a).restart_seq;
        if (restart > 0 && restart - 1 > sb->last_seq)
            sb->last_seq = sb->recv_seq = sb->acked_seq = restart - 1;
    }
    sb->held_seq = sb->last_seq;
    recv_tail_reset(sb);
    apply_reset(sb);
    if ((rc = open_sockets(sb)) != 0) {
        log_msg(LOG_ERROR, "cannot connect to the primary", "primary=%s error=\"%s\"", c->repl_primary_serve,
                rc == EINVAL ? "primary_publish and primary_serve list different numbers of endpoints"
                             : zmq_strerror(rc));
        return rc;
    }
    return 0;
}

store *repl_standby_store(const struct repl_standby *sb)
{
    return sb->s;
}

applier *repl_standby_applier(const struct repl_standby *sb)
{
    return sb->a;
}

uint64_t repl_standby_journal_seq(const struct repl_standby *sb)
{
    return sb->last_seq;
}

uint64_t repl_standby_epoch(const struct repl_standby *sb)
{
    return sb->epoch;
}

int repl_standby_bootstrapping(const struct repl_standby *sb)
{
    return sb->bootstrapping;
}

void repl_standby_start(struct repl_standby *sb)
{
    log_msg(LOG_INFO, "standby started",
            "node_id=%s epoch=%" PRIu64 " data_dir=\"%s\" primary=%s journal_seq=%" PRIu64
            " applied_seq=%" PRIu64 " pid=%d",
            sb->c->repl_node_id, sb->epoch, sb->c->data_dir, sb->c->repl_primary_serve, sb->last_seq,
            applier_meta(sb->a).applied_seq, (int)getpid());
    if (sb->cur >= 0)
        send_hello(sb);
    else
        log_msg(LOG_INFO, "waiting for a heartbeat to find the primary of the highest epoch",
                "nodes=%" PRIu32, sb->n_peers);
}

int repl_standby_step(struct repl_standby *sb, int timeout_ms)
{
    zmq_pollitem_t items[2 * CONFIG_NODES_MAX + 1];
    int n_items = (int)(2 * sb->n_peers);

    for (uint32_t p = 0; p < sb->n_peers; p++) {
        items[2 * p] = (zmq_pollitem_t){.socket = sb->peers[p].sub, .events = ZMQ_POLLIN};
        items[2 * p + 1] = (zmq_pollitem_t){.socket = sb->peers[p].dealer, .events = ZMQ_POLLIN};
    }
    if (sb->wake_fd >= 0)
        items[n_items++] = (zmq_pollitem_t){.fd = sb->wake_fd, .events = ZMQ_POLLIN};
    if (zmq_poll(items, n_items, timeout_ms) < 0 && zmq_errno() != EINTR)
        return 1;
    if (sb->wake_fd >= 0 && (items[n_items - 1].revents & ZMQ_POLLIN)) {
        uint64_t v;
        if (read(sb->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
            log_msg(LOG_DEBUG, "cannot read the standby's wake eventfd", "error=\"%s\"", strerror(errno));
    }
    for (int i = 0; i < RECV_BURST && !sb->stop_error; i++) {
        int more = 0;
        /* cur may change on the way (repoint): each socket is read as what it is then */
        for (uint32_t p = 0; p < sb->n_peers && !sb->stop_error; p++) {
            struct peer *pe = &sb->peers[p];
            int a = (int)p == sb->cur ? on_message(sb, pe->dealer, 1) : on_other(sb, p, pe->dealer);
            int b = (int)p == sb->cur ? on_message(sb, pe->sub, 0) : on_other(sb, p, pe->sub);
            more |= a >= 0 || b >= 0;
        }
        if (!more)
            break;
    }
    if (sb->stop_error)
        return 1;
    flush_pending(sb);
    send_ack(sb, 0); /* after the appends' commit (synced) */
    pthread_mutex_lock(&sb->lock);
    sb->held_seq = sb->last_seq;
    uint64_t applied = sb->apply_seq;
    pthread_mutex_unlock(&sb->lock);
    uint64_t now = link_monotonic_ns();
    if (sb->welcomed && !sb->bootstrapping && applied != sb->ack_applied_seq &&
        now - sb->ack_ns >= ACK_APPLY_NS)
        send_ack(sb, 1); /* apply moved (a primary may hold its drain for it) */
    if (!sb->welcomed && now - sb->hello_ns > HELLO_RETRY_NS)
        send_hello(sb);
    if (sb->fetching && now - sb->fetch_ns > FETCH_RETRY_NS)
        sb->fetching = 0; /* lost (the primary restarted?): ask again */
    if (sb->bootstrapping && now - sb->snap_ns > FETCH_RETRY_NS)
        send_snapshot(sb);
    standby_fetch(sb);
    compare_digest(sb);
    return 0;
}

void repl_standby_wake(struct repl_standby *sb)
{
    uint64_t one = 1;

    /* an eventfd's counter: a write never blocks (EFD_NONBLOCK) and one
     * read clears any number of them */
    if (sb && sb->wake_fd >= 0 && write(sb->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_msg(LOG_DEBUG, "cannot wake the standby", "error=\"%s\"", strerror(errno));
}

void repl_standby_flush(struct repl_standby *sb)
{
    flush_pending(sb);
}

void repl_standby_hand_over(struct repl_standby *sb, store **s, applier **a)
{
    *s = sb->s;
    *a = sb->a;
    sb->s = NULL;
    sb->a = NULL;
}

void repl_standby_close(struct repl_standby *sb)
{
    if (!sb)
        return;
    for (uint32_t i = 0; i < CONFIG_NODES_MAX; i++) {
        if (sb->peers[i].sub)
            zmq_close(sb->peers[i].sub);
        if (sb->peers[i].dealer)
            zmq_close(sb->peers[i].dealer);
    }
    if (sb->ctx)
        zmq_ctx_term(sb->ctx);
    if (sb->snap_fd >= 0)
        close(sb->snap_fd);
    if (sb->wake_fd >= 0)
        close(sb->wake_fd);
    applier_close(sb->a);
    store_close(sb->s);
    pthread_mutex_destroy(&sb->lock);
    free(sb->pend_buf);
    free(sb->primary_hist);
    free(sb);
}
