/* standby.c -- a standby: follows a primary into its own data directory.
 *
 *   start ── HELLO ──> WAITING ── WELCOME ──> FOLLOWING ──┐
 *     ^  (again each second          (standby_on_welcome)  │ rk.j seq = last+1: verify, append
 *     |   without an answer)                              │   (fsync), ACK, apply
 *     |                                                   │ rk.j seq > last+1 (a gap), bad
 *     └── a heartbeat that does not list us (the          │   checksum, heartbeat ahead:
 *         primary restarted), ERROR 1 (adopt its epoch) ──┘   FETCH last+1.. (standby_fetch)
 *
 * Design: one thread (the main one) owns the SUB and DEALER sockets, the
 * store and the applier: entries are stored strictly in sequence order,
 * each verified with journal_decode before it is appended (the same bytes
 * as the primary's, committed with sync by store_journal_append), and the
 * ACK for the last one goes out after that commit.  A gap is fetched,
 * never skipped; a duplicate is ignored; an entry that fails verification
 * is not stored and is fetched again; a message from a lower epoch is
 * refused.  Apply uses the primary's code (applier_run), one entry at a
 * time, and remembers the state digest after each recent entry, so that a
 * heartbeat's (digest_seq, digest) can be compared with ours at the same
 * sequence.  A restart (SIGKILL included) carries on from the journal's
 * last entry: HELLO says it, and only what is missing is fetched.
 *
 * Not built: bootstrap from a checkpoint (when the primary no longer holds
 * our next entry the standby logs it and exits 1), CURVE.
 *
 * Threads: main (above) and the control thread (ipc://DIR/control.sock,
 * answering "status"); `lock` guards the status text between them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply.h"
#include "link.h"
#include "log.h"
#include "node.h"
#include "replicator.h"
#include "store.h"

#define EPOCH_KEY "epoch"
#define SUB_HWM 10000
#define DEALER_HWM 1000
#define DIGEST_HISTORY 4096 /* (seq, digest) after each recent entry applied */
#define HELLO_RETRY_NS 1000000000ull
#define FETCH_RETRY_NS 500000000ull
#define APPLY_STEP 64 /* entries applied between looks at the sockets */
#define RECV_BURST 256
#define STATUS_MAX 8192

struct digest_at {
    uint64_t seq, digest;
};

struct standby {
    const struct node_config *c;
    store *s;
    applier *a;
    void *ctx, *sub, *dealer;
    uint64_t epoch;
    uint64_t last_seq;       /* last entry in our journal (durable) */
    uint64_t acked_seq;      /* last ACK sent */
    uint64_t primary_seq;    /* highest entry we know the primary holds */
    uint64_t behind_ns;      /* since when last_seq < primary_seq (0: caught up) */
    int welcomed;            /* WELCOME received since the last HELLO */
    uint64_t hello_ns;       /* when HELLO was sent */
    int fetching;            /* a FETCH is outstanding */
    uint64_t fetch_ns;       /* when it was sent */
    uint64_t hb_digest, hb_digest_seq, hb_journal_seq;
    int digest_match;        /* -1 not compared yet, 0 differs, 1 equal */
    uint64_t digest_compared_seq;
    struct digest_at history[DIGEST_HISTORY];
    uint32_t drop_every, corrupt_every; /* test hooks (RK_TEST_DROP_JOURNAL, RK_TEST_CORRUPT_JOURNAL) */
    uint64_t n_journal_msgs;
    uint64_t first_fetched; /* lowest entry fetched since start (0: none) */
    uint64_t n_fetched, n_gaps, n_duplicates, n_bad, n_refused, n_malformed;
    int stop_error; /* cannot go on: the main loop ends, exit 1 */

    pthread_mutex_t lock;
    char status[STATUS_MAX]; /* the status JSON (under lock) */
    _Atomic int stop;
};

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

/* ------------------------------------------------------------ meta */

static int epoch_load(struct standby *sb)
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

static int epoch_adopt(struct standby *sb, uint64_t epoch)
{
    DB *meta = store_meta(sb->s);
    DBT k = {.data = (void *)EPOCH_KEY, .size = (u_int32_t)strlen(EPOCH_KEY)};
    DBT v = {.data = &epoch, .size = sizeof epoch};

    log_msg(LOG_INFO, "adopting a higher epoch", "epoch=%" PRIu64 " new=%" PRIu64, sb->epoch, epoch);
    sb->epoch = epoch;
    return meta->put(meta, NULL, &k, &v, DB_AUTO_COMMIT);
}

/* ------------------------------------------------------------ requests */

static void send_msg(struct standby *sb, struct wire_msg *m)
{
    char why[256];
    m->epoch = sb->epoch;
    int rc = link_send(sb->dealer, NULL, 0, m, why, sizeof why);
    if (rc && rc != EAGAIN)
        log_msg(LOG_WARN, "cannot send to the primary", "error=\"%s\"", why);
}

static void send_hello(struct standby *sb)
{
    struct wire_msg m = {.type = WIRE_HELLO};
    snprintf(m.u.hello.node_id, sizeof m.u.hello.node_id, "%s", sb->c->repl_node_id);
    m.u.hello.last_seq = sb->last_seq;
    send_msg(sb, &m);
    sb->welcomed = 0;
    sb->fetching = 0;
    sb->hello_ns = link_monotonic_ns();
}

static void standby_fetch(struct standby *sb)
{
    if (!sb->welcomed || sb->fetching || sb->primary_seq <= sb->last_seq)
        return;
    struct wire_msg m = {.type = WIRE_FETCH};
    m.u.fetch.from_seq = sb->last_seq + 1;
    m.u.fetch.to_seq = sb->primary_seq;
    send_msg(sb, &m);
    sb->fetching = 1;
    sb->fetch_ns = link_monotonic_ns();
}

static void send_ack(struct standby *sb)
{
    if (sb->last_seq <= sb->acked_seq)
        return;
    struct wire_msg m = {.type = WIRE_ACK};
    m.u.ack.durable_seq = sb->last_seq;
    send_msg(sb, &m);
    sb->acked_seq = sb->last_seq;
}

static void knows_primary_holds(struct standby *sb, uint64_t seq)
{
    if (seq > sb->primary_seq)
        sb->primary_seq = seq;
    if (sb->primary_seq > sb->last_seq && !sb->behind_ns)
        sb->behind_ns = link_monotonic_ns();
}

/* ------------------------------------------------------------ entries */

/* Stores entry seq if it is the next one and verifies; 1 stored, 0 not. */
static int take_entry(struct standby *sb, uint64_t seq, const uint8_t *bytes, size_t len)
{
    journal_entry e = {0};
    char why[256];
    int rc;

    if (seq <= sb->last_seq) {
        sb->n_duplicates++;
        return 0;
    }
    knows_primary_holds(sb, seq);
    if (seq != sb->last_seq + 1) {
        sb->n_gaps++;
        return 0; /* fetched: standby_fetch asks from last_seq + 1 */
    }
    rc = journal_decode(bytes, len, &e, why, sizeof why);
    journal_entry_free(&e);
    if (rc == 0 && e.h.seq != seq) {
        snprintf(why, sizeof why, "header seq %" PRIu64 " in the entry for %" PRIu64, e.h.seq, seq);
        rc = RK_ECORRUPT;
    }
    if (rc == 0 && e.h.epoch > sb->epoch) {
        snprintf(why, sizeof why, "entry of epoch %" PRIu64 " above ours", e.h.epoch);
        rc = RK_ECORRUPT;
    }
    if (rc) {
        sb->n_bad++;
        log_msg(LOG_WARN, "journal entry fails verification: fetching it again",
                "seq=%" PRIu64 " error=\"%s\"", seq, why);
        return 0;
    }
    rc = store_journal_append(sb->s, seq, bytes, len);
    if (rc) {
        /* nothing after a failed write or fsync is acknowledged */
        log_msg(LOG_ERROR, "journal write failed: nothing after it is acknowledged",
                "seq=%" PRIu64 " error=\"%s\" action=exit", seq, store_strerror(rc));
        _exit(1);
    }
    sb->last_seq = seq;
    if (sb->last_seq >= sb->primary_seq)
        sb->behind_ns = 0;
    return 1;
}

static void on_journal(struct standby *sb, const struct wire_entry *j)
{
    uint8_t *copy = NULL;
    const uint8_t *bytes = j->bytes;

    sb->n_journal_msgs++;
    if (sb->drop_every && sb->n_journal_msgs % sb->drop_every == 0) {
        knows_primary_holds(sb, j->seq - 1); /* lost on the way, as a PUB drop would */
        return;
    }
    if (sb->corrupt_every && sb->n_journal_msgs % sb->corrupt_every == 0 && (copy = malloc(j->len))) {
        memcpy(copy, j->bytes, j->len);
        copy[j->len - 1] ^= 0x5a; /* the trailer's last byte */
        bytes = copy;
    }
    take_entry(sb, j->seq, bytes, j->len);
    free(copy);
}

static void on_entries(struct standby *sb, const struct wire_entries *es)
{
    sb->fetching = 0;
    for (uint32_t i = 0; i < es->n_entries; i++) {
        if (take_entry(sb, es->entries[i].seq, es->entries[i].bytes, es->entries[i].len)) {
            if (!sb->first_fetched)
                sb->first_fetched = es->entries[i].seq;
            sb->n_fetched++;
        }
        else if (es->entries[i].seq > sb->last_seq)
            break; /* a bad one: fetched again from there */
    }
}

static int on_welcome(struct standby *sb, const struct wire_welcome *w)
{
    sb->welcomed = 1;
    knows_primary_holds(sb, w->last_seq);
    if (w->first_seq > sb->last_seq + 1 && w->last_seq >= w->first_seq) {
        log_msg(LOG_ERROR, "the primary no longer holds the entries this standby needs",
                "last_seq=%" PRIu64 " primary_first_seq=%" PRIu64 " error=\"bootstrap from a checkpoint is not "
                "built in this version\" hint=\"start this standby on an empty data directory made with "
                "ringkeep restore from a copy of the primary\"",
                sb->last_seq, w->first_seq);
        sb->stop_error = 1;
        return 1;
    }
    if (sb->last_seq > w->last_seq)
        log_msg(LOG_WARN, "this standby holds entries the primary does not",
                "last_seq=%" PRIu64 " primary_last_seq=%" PRIu64, sb->last_seq, w->last_seq);
    log_msg(LOG_INFO, "following the primary",
            "primary=%s last_seq=%" PRIu64 " primary_first_seq=%" PRIu64 " primary_last_seq=%" PRIu64,
            sb->c->repl_primary_serve, sb->last_seq, w->first_seq, w->last_seq);
    return 0;
}

static void compare_digest(struct standby *sb)
{
    const struct digest_at *d = &sb->history[sb->hb_digest_seq % DIGEST_HISTORY];

    if (sb->hb_digest_seq == 0 || d->seq != sb->hb_digest_seq)
        return;
    int match = d->digest == sb->hb_digest;
    if (!match && sb->digest_match != 0)
        log_msg(LOG_ERROR, "state digest differs from the primary's",
                "seq=%" PRIu64 " ours=%016" PRIx64 " primary=%016" PRIx64, d->seq, d->digest, sb->hb_digest);
    sb->digest_match = match;
    sb->digest_compared_seq = d->seq;
}

static void on_heartbeat(struct standby *sb, const struct wire_heartbeat *hb)
{
    int listed = 0;

    knows_primary_holds(sb, hb->journal_seq);
    sb->hb_journal_seq = hb->journal_seq;
    sb->hb_digest = hb->digest;
    sb->hb_digest_seq = hb->digest_seq;
    compare_digest(sb);
    for (uint32_t i = 0; i < hb->n_standbys; i++)
        listed |= strcmp(hb->standbys[i].id, sb->c->repl_node_id) == 0;
    /* a primary that restarted has forgotten us: say HELLO again */
    if (!listed && sb->welcomed && link_monotonic_ns() - sb->hello_ns > HELLO_RETRY_NS)
        send_hello(sb);
}

/* One message from either socket; returns 1 when the standby must stop. */
static int on_message(struct standby *sb, void *sock, int from_dealer)
{
    struct link_in in;
    char why[512] = "";
    int newer = 0, done = 0, rc = link_recv(sock, 0, &in, why, sizeof why);

    if (rc == EAGAIN || rc == EINTR) {
        link_in_free(&in);
        return -1; /* nothing more */
    }
    if (rc) {
        sb->n_malformed++;
        log_msg(LOG_WARN, "malformed message from the primary: refused", "socket=%s error=\"%s\"",
                from_dealer ? "serve" : "publish", why);
    } else if (wire_check_epoch(sb->epoch, in.m.epoch, &newer, why, sizeof why) != 0) {
        sb->n_refused++;
        log_msg(LOG_WARN, "message from a lower epoch refused", "type=%s error=\"%s\"",
                wire_type_name(in.m.type), why);
    } else {
        if (newer && epoch_adopt(sb, in.m.epoch) != 0)
            log_msg(LOG_WARN, "cannot record the new epoch", "epoch=%" PRIu64, in.m.epoch);
        switch (in.m.type) {
        case WIRE_JOURNAL:
            on_journal(sb, &in.m.u.journal);
            break;
        case WIRE_HEARTBEAT:
            on_heartbeat(sb, &in.m.u.heartbeat);
            break;
        case WIRE_CHECKPOINT:
            break; /* a standby does not bootstrap in this version */
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
                send_hello(sb);
            } else if (in.m.u.error.code == WIRE_ERR_TRIMMED) {
                log_msg(LOG_ERROR, "the primary no longer holds the entries this standby needs",
                        "last_seq=%" PRIu64 " error=\"bootstrap from a checkpoint is not built in this version\"",
                        sb->last_seq);
                sb->stop_error = done = 1;
            }
            break;
        default:
            sb->n_malformed++;
            log_msg(LOG_WARN, "unexpected message from the primary: refused", "type=%s",
                    wire_type_name(in.m.type));
        }
    }
    link_in_free(&in);
    return done;
}

/* ------------------------------------------------------------ apply */

static int apply_some(struct standby *sb)
{
    char err[512] = "";

    for (int i = 0; i < APPLY_STEP; i++) {
        uint64_t applied = applier_meta(sb->a).applied_seq;
        if (applied >= sb->last_seq)
            return 0;
        int rc = applier_run(sb->a, applied + 1, STORE_TXN_RECORDS, err, sizeof err);
        if (rc) {
            log_msg(LOG_ERROR, "apply failed", "error=\"%s\" action=exit", err[0] ? err : store_strerror(rc));
            return rc;
        }
        struct apply_meta am = applier_meta(sb->a);
        sb->history[am.applied_seq % DIGEST_HISTORY] = (struct digest_at){am.applied_seq, am.digest};
    }
    return 0;
}

/* ------------------------------------------------------------ status */

static void update_status(struct standby *sb)
{
    struct apply_meta am = applier_meta(sb->a);
    uint64_t now = link_monotonic_ns();
    char text[STATUS_MAX];
    const char *match = sb->digest_match < 0 ? "null" : sb->digest_match ? "true" : "false";

    snprintf(text, sizeof text,
             "{\"role\":\"standby\",\"epoch\":%" PRIu64 ",\"pid\":%d,\"data_dir\":\"%s\",\"node_id\":\"%s\","
             "\"primary\":\"%s\",\"primary_publish\":\"%s\",\"connected\":%s,\"journal_seq\":%" PRIu64
             ",\"applied_seq\":%" PRIu64 ",\"acked_seq\":%" PRIu64 ",\"primary_journal_seq\":%" PRIu64
             ",\"lag_entries\":%" PRIu64 ",\"lag_ms\":%" PRIu64 ",\"state_digest\":\"%016" PRIx64 "\""
             ",\"primary_digest\":\"%016" PRIx64 "\",\"primary_digest_seq\":%" PRIu64 ",\"digest_match\":%s"
             ",\"digest_compared_seq\":%" PRIu64 ",\"fetched\":%" PRIu64 ",\"first_fetched_seq\":%" PRIu64 ",\"gaps\":%" PRIu64
             ",\"duplicates\":%" PRIu64 ",\"bad_entries\":%" PRIu64 ",\"refused_epoch\":%" PRIu64
             ",\"malformed\":%" PRIu64 ",\"groups_applied\":%" PRIu64 ",\"records\":%" PRIu64 "}",
             sb->epoch, (int)getpid(), sb->c->data_dir, sb->c->repl_node_id, sb->c->repl_primary_serve,
             sb->c->repl_primary_publish, sb->welcomed ? "true" : "false", sb->last_seq, am.applied_seq,
             sb->acked_seq, sb->primary_seq, sb->primary_seq > sb->last_seq ? sb->primary_seq - sb->last_seq : 0,
             sb->behind_ns ? (now - sb->behind_ns) / 1000000u : 0, am.digest, sb->hb_digest, sb->hb_digest_seq,
             match, sb->digest_compared_seq, sb->n_fetched, sb->first_fetched, sb->n_gaps, sb->n_duplicates, sb->n_bad,
             sb->n_refused, sb->n_malformed, am.n_groups, am.n_records);
    pthread_mutex_lock(&sb->lock);
    memcpy(sb->status, text, sizeof text);
    pthread_mutex_unlock(&sb->lock);
}

static void *control_main(void *arg)
{
    struct standby *sb = arg;
    char endpoint[PATH_MAX + 32], req[257], reply[STATUS_MAX];
    void *ctx = zmq_ctx_new(), *sock = ctx ? zmq_socket(ctx, ZMQ_REP) : NULL;
    int64_t max_msg = 256;
    int linger = 0, timeout = 100;

    node_control_endpoint(sb->c->data_dir, endpoint, sizeof endpoint);
    if (!sock || zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg) ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout) || zmq_bind(sock, endpoint)) {
        log_msg(LOG_ERROR, "control endpoint unavailable", "endpoint=%s error=\"%s\"", endpoint,
                zmq_strerror(zmq_errno()));
        goto out;
    }
    while (!atomic_load(&sb->stop)) {
        int len = zmq_recv(sock, req, sizeof req - 1, 0);
        if (len < 0)
            continue;
        req[len < (int)sizeof req - 1 ? len : (int)sizeof req - 1] = '\0';
        if (strcmp(req, "status") == 0 || strcmp(req, "status-json") == 0) {
            pthread_mutex_lock(&sb->lock);
            snprintf(reply, sizeof reply, "%s", sb->status);
            pthread_mutex_unlock(&sb->lock);
        } else {
            snprintf(reply, sizeof reply, "error %.200s is not served by a standby", req);
        }
        zmq_send(sock, reply, strlen(reply), 0);
    }
out:
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    return NULL;
}

/* ------------------------------------------------------------ run */

static uint32_t env_u32(const char *name)
{
    const char *v = getenv(name);
    return v ? (uint32_t)strtoul(v, NULL, 10) : 0;
}

static int open_sockets(struct standby *sb)
{
    int rc;

    sb->ctx = zmq_ctx_new();
    sb->sub = sb->ctx ? zmq_socket(sb->ctx, ZMQ_SUB) : NULL;
    sb->dealer = sb->ctx ? zmq_socket(sb->ctx, ZMQ_DEALER) : NULL;
    if (!sb->sub || !sb->dealer)
        return ENOMEM;
    if ((rc = link_setup(sb->sub, SUB_HWM)) || (rc = link_setup(sb->dealer, DEALER_HWM)))
        return rc;
    if (zmq_setsockopt(sb->dealer, ZMQ_ROUTING_ID, sb->c->repl_node_id, strlen(sb->c->repl_node_id)) ||
        zmq_setsockopt(sb->sub, ZMQ_SUBSCRIBE, "rk.j", 4) || zmq_setsockopt(sb->sub, ZMQ_SUBSCRIBE, "rk.h", 4) ||
        zmq_setsockopt(sb->sub, ZMQ_SUBSCRIBE, "rk.c", 4) || zmq_connect(sb->sub, sb->c->repl_primary_publish) ||
        zmq_connect(sb->dealer, sb->c->repl_primary_serve))
        return zmq_errno();
    return 0;
}

int standby_run(const struct node_config *c)
{
    struct standby *sb = calloc(1, sizeof *sb);
    struct journal_header last = {0};
    struct sigaction sa = {.sa_handler = on_signal};
    char err[512] = "", path[PATH_MAX + 32];
    pthread_t control;
    sigset_t block, old;
    int rc = 0, have_control = 0, status = 1;

    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    log_set_level(c->log_level);
    if (!sb)
        return 1;
    sb->c = c;
    sb->digest_match = -1;
    sb->drop_every = env_u32("RK_TEST_DROP_JOURNAL");
    sb->corrupt_every = env_u32("RK_TEST_CORRUPT_JOURNAL");
    pthread_mutex_init(&sb->lock, NULL);
    rc = store_open(c->data_dir, STORE_CREATE, c->cache_mb, &sb->s, err, sizeof err);
    if (rc) {
        log_msg(LOG_ERROR, "cannot open the data directory", "data_dir=\"%s\" error=\"%s\"", c->data_dir, err);
        goto out;
    }
    if ((rc = epoch_load(sb)) != 0) {
        log_msg(LOG_ERROR, "cannot read the epoch", "error=\"%s\"", store_strerror(rc));
        goto out;
    }
    rc = store_journal_last(sb->s, &last);
    if (rc && rc != RK_ENOTFOUND) {
        log_msg(LOG_ERROR, "cannot read the journal", "error=\"%s\"", store_strerror(rc));
        goto out;
    }
    sb->last_seq = sb->acked_seq = last.seq;
    rc = applier_open(sb->s, &sb->a, err, sizeof err);
    if (rc) {
        log_msg(LOG_ERROR, "cannot open the applier", "error=\"%s\"", err);
        goto out;
    }
    if ((rc = open_sockets(sb)) != 0) {
        log_msg(LOG_ERROR, "cannot connect to the primary", "primary=%s error=\"%s\"", c->repl_primary_serve,
                zmq_strerror(rc));
        goto out;
    }
    update_status(sb);
    snprintf(path, sizeof path, "%s/control.sock", c->data_dir);
    unlink(path); /* stale: we hold the data directory's lock */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    have_control = pthread_create(&control, NULL, control_main, sb) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!have_control)
        goto out;
    log_msg(LOG_INFO, "standby started",
            "node_id=%s epoch=%" PRIu64 " data_dir=\"%s\" primary=%s journal_seq=%" PRIu64 " applied_seq=%" PRIu64
            " pid=%d",
            c->repl_node_id, sb->epoch, c->data_dir, c->repl_primary_serve, sb->last_seq,
            applier_meta(sb->a).applied_seq, (int)getpid());

    send_hello(sb);
    while (!got_signal && !sb->stop_error) {
        zmq_pollitem_t items[2] = {{.socket = sb->sub, .events = ZMQ_POLLIN},
                                   {.socket = sb->dealer, .events = ZMQ_POLLIN}};
        int busy = applier_meta(sb->a).applied_seq < sb->last_seq;
        if (zmq_poll(items, 2, busy ? 0 : 50) < 0 && zmq_errno() != EINTR)
            break;
        for (int i = 0; i < RECV_BURST && !sb->stop_error; i++) {
            int a = on_message(sb, sb->dealer, 1), b = on_message(sb, sb->sub, 0);
            if (a < 0 && b < 0)
                break;
        }
        send_ack(sb); /* after the appends' commits (synced) */
        uint64_t now = link_monotonic_ns();
        if (!sb->welcomed && now - sb->hello_ns > HELLO_RETRY_NS)
            send_hello(sb);
        if (sb->fetching && now - sb->fetch_ns > FETCH_RETRY_NS)
            sb->fetching = 0; /* lost (the primary restarted?): ask again */
        standby_fetch(sb);
        if (apply_some(sb) != 0)
            break;
        compare_digest(sb);
        update_status(sb);
    }
    if (got_signal) {
        while (applier_meta(sb->a).applied_seq < sb->last_seq && apply_some(sb) == 0)
            ;
        status = 0;
        log_msg(LOG_INFO, "standby stopped", "journal_seq=%" PRIu64 " applied_seq=%" PRIu64, sb->last_seq,
                applier_meta(sb->a).applied_seq);
    }
out:
    atomic_store(&sb->stop, 1);
    if (have_control)
        pthread_join(control, NULL);
    if (sb->sub)
        zmq_close(sb->sub);
    if (sb->dealer)
        zmq_close(sb->dealer);
    if (sb->ctx)
        zmq_ctx_term(sb->ctx);
    applier_close(sb->a);
    store_close(sb->s);
    pthread_mutex_destroy(&sb->lock);
    free(sb);
    return status;
}
