/* metrics.c -- the node's Prometheus endpoint: GET /metrics on
 * [metrics] listen, in the text exposition format 0.0.4, served by
 * libmicrohttpd from its own thread (MHD_USE_INTERNAL_POLLING_THREAD).
 *
 * Design: each scrape renders the text from atomics only (metrics.h): the
 * node's counters, struct node_metrics, the ring header's cursors, the
 * fsync histogram of persist/sys.c, and a standby's figures, which its main
 * thread copies out of its status after each step.  A scrape never takes
 * the node's lock, so it can neither stall the drain (which takes that lock
 * once per batch) nor apply; a slow or silent client holds only the
 * server's own thread (one connection at a time, each timed out after
 * METRICS_CONNECTION_TIMEOUT_S).  A primary's standbys come from the
 * replicator's last heartbeat (repl_primary_status, under the replicator's
 * lock: the replicator and checkpoint threads hold it for moments).
 *
 *   metrics_start (main thread) --MHD_start_daemon--> serving
 *   serving --GET /metrics--> answer: render_primary / render_standby
 *   serving --metrics_stop (main thread)--> stopped
 *
 * Names follow Prometheus' conventions: counters end in _total, times are
 * _seconds, sizes _bytes; every family has HELP and TYPE lines.
 *
 * Threads: the server's thread renders; metrics_start, metrics_stop and
 * metrics_standby_publish are the role's main thread's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "node/internal.h"
#include "node/metrics.h"
#include "persist/json_bytes.h"
#include "persist/log.h"
#include "persist/store.h"
#include "replicator/replicator.h"
#include "shm/ring.h"

#define METRICS_CONNECTION_LIMIT 8      /* scrapers at once */
#define METRICS_CONNECTION_TIMEOUT_S 10 /* a connection idle this long is closed */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_server {
    struct MHD_Daemon *daemon;
    struct node *n;
};

/* ------------------------------------------------------------ text */

/* The exposition being rendered; failed: out of memory (the scrape gets
 * a 500). */
struct text {
    char *buf;
    size_t len, cap;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *buf = realloc(t->buf, cap);
        if (!buf) {
            t->failed = 1;
            return;
        }
        t->buf = buf;
        t->cap = cap;
    }
}

/* A family's HELP and TYPE lines. */
static void family(struct text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one unlabelled sample. */
static void one(struct text *t, const char *name, const char *type, const char *help, uint64_t v)
{
    family(t, name, type, help);
    put(t, "%s %" PRIu64 "\n", name, v);
}

static void one_seconds(struct text *t, const char *name, const char *type, const char *help, uint64_t ns)
{
    family(t, name, type, help);
    put(t, "%s %.9f\n", name, (double)ns / 1e9);
}

/* A label value: bytes as a JSON status holds them (json_bytes.h), in the
 * format's escapes (\\, \", \n); other control bytes, DEL and non-ASCII
 * bytes as the four characters \\xHH (an escaped backslash, then xHH), as
 * `ringkeep status` shows them. */
static void put_label_value(struct text *t, const json_t *v)
{
    uint8_t *bytes = NULL;
    size_t len = 0;

    if (json_bytes_of(v, &bytes, &len) != 0) {
        put(t, "?");
        return;
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t b = bytes[i];
        if (b == '\\' || b == '"')
            put(t, "\\%c", b);
        else if (b == '\n')
            put(t, "\\n");
        else if (b < 0x20 || b >= 0x7f)
            put(t, "\\\\x%02x", b);
        else
            put(t, "%c", b);
    }
    free(bytes);
}

static uint64_t load(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed); /* a figure on its own (metrics.h) */
}

/* ------------------------------------------------------------ families */

/* What every role shows first: role, epoch, uptime. */
static void render_node(struct text *t, struct node *n, uint64_t epoch)
{
    int standby = n->role == ROLE_STANDBY;

    family(t, "ringkeep_role", "gauge", "1 for the role this node runs as, 0 for the other.");
    put(t, "ringkeep_role{role=\"primary\"} %d\nringkeep_role{role=\"standby\"} %d\n", !standby, standby);
    one(t, "ringkeep_epoch", "gauge",
        standby ? "The epoch of the primary this standby follows (the highest its directory has seen)."
                : "The epoch this primary writes in.",
        epoch);
    one_seconds(t, "ringkeep_uptime_seconds", "gauge", "Time since this role started in this process.",
                now_ns() - atomic_load(&n->start_ns));
}

/* What every role shows last: checkpoints and the fsync histogram. */
static void render_storage(struct text *t, struct node *n)
{
    struct node_metrics *m = &n->m;
    struct sys_fsync_stats fs;
    uint64_t cumulative = 0;

    one(t, "ringkeep_checkpoints_total", "counter", "Checkpoints written by this role since it started.",
        atomic_load(&n->n_checkpoints));
    one_seconds(t, "ringkeep_checkpoint_last_duration_seconds", "gauge",
                "How long the last checkpoint took to write, verify and rename (0: none yet).",
                load(&m->ckpt_last_ns));
    one(t, "ringkeep_checkpoint_last_size_bytes", "gauge", "The size of the last checkpoint's file (0: none yet).",
        load(&m->ckpt_last_bytes));
    one_seconds(t, "ringkeep_checkpoint_duration_seconds_total", "counter",
                "Time spent writing checkpoints, summed.", load(&m->ckpt_ns_total));
    one(t, "ringkeep_checkpoint_written_bytes_total", "counter", "Bytes of checkpoint files written, summed.",
        load(&m->ckpt_bytes_total));

    sys_fsync_stats(&fs);
    family(t, "ringkeep_fsync_duration_seconds", "histogram",
           "fsync latency of every file the process syncs (journal and state through Berkeley DB, "
           "checkpoints, directories), failed ones included.");
    for (size_t b = 0; b < SYS_FSYNC_BUCKETS; b++) {
        cumulative += fs.n[b];
        put(t, "ringkeep_fsync_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
            (double)sys_fsync_bucket_us[b] / 1e6, cumulative);
    }
    cumulative += fs.n[SYS_FSYNC_BUCKETS];
    /* _count is the +Inf bucket by construction: both from the same copy */
    put(t, "ringkeep_fsync_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cumulative);
    put(t, "ringkeep_fsync_duration_seconds_sum %.9f\n", (double)fs.sum_ns / 1e9);
    put(t, "ringkeep_fsync_duration_seconds_count %" PRIu64 "\n", cumulative);
}

/* A primary's standbys, from the replicator's last heartbeat. */
static void render_standbys(struct text *t, struct node *n)
{
    json_t *st = json_object(), *list = NULL, *s = NULL;
    size_t i;

    if (st && n->repl)
        repl_primary_status(n->repl, st);
    list = json_object_get(st, "standbys");
    one(t, "ringkeep_standbys", "gauge", "Standbys following this primary (heard from within the last beats).",
        (uint64_t)json_array_size(list));
    one(t, "ringkeep_standbys_forgotten_total", "counter",
        "Standbys dropped after falling silent (they say HELLO again when they come back).",
        (uint64_t)json_integer_value(json_object_get(st, "peers_dropped")));
    one(t, "ringkeep_replies_dropped_total", "counter",
        "Replies to a standby that could not be queued (it had not read the 16 before, or was gone).",
        (uint64_t)json_integer_value(json_object_get(st, "replies_dropped")));
    family(t, "ringkeep_standby_acked_seq", "gauge", "The last journal entry each standby acknowledged.");
    json_array_foreach(list, i, s)
    {
        put(t, "ringkeep_standby_acked_seq{standby=\"");
        put_label_value(t, json_object_get(s, "id"));
        put(t, "\"} %" PRIu64 "\n", (uint64_t)json_integer_value(json_object_get(s, "acked_seq")));
    }
    family(t, "ringkeep_standby_lag_entries", "gauge", "Journal entries each standby has yet to acknowledge.");
    json_array_foreach(list, i, s)
    {
        put(t, "ringkeep_standby_lag_entries{standby=\"");
        put_label_value(t, json_object_get(s, "id"));
        put(t, "\"} %" PRIu64 "\n", (uint64_t)json_integer_value(json_object_get(s, "lag_entries")));
    }
    family(t, "ringkeep_standby_lag_seconds", "gauge",
           "How long the oldest entry each standby has not acknowledged has been journaled.");
    json_array_foreach(list, i, s)
    {
        put(t, "ringkeep_standby_lag_seconds{standby=\"");
        put_label_value(t, json_object_get(s, "id"));
        put(t, "\"} %.3f\n", (double)json_integer_value(json_object_get(s, "lag_ms")) / 1e3);
    }
    family(
        t, "ringkeep_standby_apply_lag_seconds", "gauge",
        "How much apply work each standby's journal holds past its apply, at its apply's rate, as its last "
        "ACK said (none: it says nothing of it).");
    json_array_foreach(list, i, s)
    {
        if (!json_is_integer(json_object_get(s, "apply_lag_ms")))
            continue;
        put(t, "ringkeep_standby_apply_lag_seconds{standby=\"");
        put_label_value(t, json_object_get(s, "id"));
        put(t, "\"} %.3f\n", (double)json_integer_value(json_object_get(s, "apply_lag_ms")) / 1e3);
    }
    one(t, "ringkeep_drain_holds_for_standby_apply_total", "counter",
        "Times the drain waited for the counted standbys' apply (min_replicas > 0, [apply] max_lag_ms).",
        (uint64_t)json_integer_value(json_object_get(st, "drain_holds_for_standby_apply")));
    json_decref(st);
}

static void render_primary(struct text *t, struct node *n)
{
    struct node_metrics *m = &n->m;
    struct ring_header *h = ring_header_of(n->ring);
    /* the ring's cursors: each read on its own (a producer or the drain
     * may move one between two loads), so the lags below are clamped */
    uint64_t tail = atomic_load_explicit(&h->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&h->head, memory_order_relaxed);
    uint64_t durable = atomic_load_explicit(&h->durable_lsn, memory_order_relaxed);
    uint64_t replicated = atomic_load_explicit(&h->replicated_lsn, memory_order_relaxed);
    uint64_t drained = atomic_load(&n->drained_pos);
    uint64_t journal_seq = load(&m->journal_seq), applied_seq = load(&m->applied_seq);

    render_node(t, n, n->epoch);
    one(t, "ringkeep_fenced", "gauge",
        "1 once this primary stepped down (a node of a higher epoch is the primary): nothing more is "
        "acknowledged.",
        atomic_load(&n->stepped_down) != 0);
    one(t, "ringkeep_records_total", "counter",
        "Records (PUT, DEL, MARK) this primary journaled since it started.", atomic_load(&n->n_records));
    one(t, "ringkeep_record_bytes_total", "counter",
        "Bytes of the records (PUT, DEL, MARK) this primary journaled, framed as in the ring.", load(&m->record_bytes));
    one(t, "ringkeep_batches_total", "counter",
        "Batches (journal entries, one fsynced commit each) this primary wrote since it started.",
        atomic_load(&n->n_batches));
    one(t, "ringkeep_journal_bytes_total", "counter",
        "Bytes of journal entries written (encoded and compressed).", load(&m->journal_bytes));
    one(t, "ringkeep_journal_seq", "gauge", "The last journal entry written.", journal_seq);
    one(t, "ringkeep_applied_seq", "gauge", "The last journal entry applied to the state tables.", applied_seq);
    one(t, "ringkeep_apply_lag_entries", "gauge", "Journal entries written and not applied yet.",
        journal_seq > applied_seq ? journal_seq - applied_seq : 0);
    one(t, "ringkeep_ring_capacity_bytes", "gauge", "Bytes in the ring's data area.", h->capacity);
    one(t, "ringkeep_ring_used_bytes", "gauge", "Bytes of the ring engines wrote and the node has not released.",
        tail > head ? tail - head : 0);
    one(t, "ringkeep_written_lsn", "gauge", "The ring's tail: the position engines have claimed up to.", tail);
    one(t, "ringkeep_durable_lsn", "gauge", "The last LSN in the journal, fsynced (RK_DURABLE).", durable);
    one(t, "ringkeep_replicated_lsn", "gauge",
        "The last LSN durable on min_replicas standbys (RK_REPLICATED; the durable LSN with min_replicas 0).",
        replicated);
    one(t, "ringkeep_applied_lsn", "gauge", "The last LSN applied to the state tables.",
        atomic_load(&n->applied_lsn));
    one(t, "ringkeep_durable_lag_bytes", "gauge",
        "Bytes engines wrote to the ring that are not in the journal yet.", tail > drained ? tail - drained : 0);
    one(t, "ringkeep_replication_lag_bytes", "gauge",
        "Bytes of the ring durable here and not yet replicated (RK_REPLICATED waits on them).",
        durable > replicated ? durable - replicated : 0);
    one(t, "ringkeep_groups_applied_total", "counter",
        "Groups (a producer's records up to its MARK) applied, over the data directory's life.",
        atomic_load(&n->n_groups));
    one(t, "ringkeep_groups_discarded_total", "counter",
        "Groups dropped whole because their producer died before its MARK, over the data directory's life.",
        atomic_load(&n->n_discarded));
    render_standbys(t, n);
    render_storage(t, n);
}

static void render_standby(struct text *t, struct node *n)
{
    struct node_metrics *m = &n->m;
    uint64_t journal_seq = load(&m->sb_journal_seq), applied_seq = load(&m->sb_applied_seq);

    render_node(t, n, load(&m->sb_epoch));
    one(t, "ringkeep_connected", "gauge", "1 while the primary welcomed this standby (HELLO answered).",
        load(&m->sb_connected));
    one(t, "ringkeep_journal_seq", "gauge", "The last journal entry this standby holds, fsynced.", journal_seq);
    one(t, "ringkeep_applied_seq", "gauge", "The last journal entry applied to the state tables.", applied_seq);
    one(t, "ringkeep_apply_lag_entries", "gauge", "Journal entries held and not applied yet.",
        journal_seq > applied_seq ? journal_seq - applied_seq : 0);
    one_seconds(t, "ringkeep_apply_lag_seconds", "gauge",
                "The apply work the journal holds past apply, at apply's rate (what the ACK reports).",
                load(&m->sb_apply_lag_ms) * 1000000u);
    one(t, "ringkeep_acked_seq", "gauge", "The last journal entry this standby acknowledged to the primary.",
        load(&m->sb_acked_seq));
    one(t, "ringkeep_primary_journal_seq", "gauge", "The primary's last journal entry, as last heard.",
        load(&m->sb_primary_seq));
    one(t, "ringkeep_replication_lag_entries", "gauge", "Journal entries the primary has and this standby lacks.",
        load(&m->sb_lag_entries));
    one_seconds(t, "ringkeep_replication_lag_seconds", "gauge",
                "How long this standby has been behind the primary (0: caught up).",
                load(&m->sb_lag_ms) * 1000000u);
    one(t, "ringkeep_records_applied_total", "counter",
        "Records applied to the state tables, over the data directory's life (a bootstrap starts it again).",
        load(&m->sb_records));
    one(t, "ringkeep_groups_applied_total", "counter",
        "Groups applied, over the data directory's life (a bootstrap starts it again).", load(&m->sb_groups));
    one(t, "ringkeep_entries_fetched_total", "counter",
        "Journal entries fetched from the primary (not received as published).", load(&m->sb_fetched));
    one(t, "ringkeep_gaps_total", "counter", "Gaps in the published sequence (each fetched, never skipped).",
        load(&m->sb_gaps));
    family(t, "ringkeep_entries_dropped_total", "counter",
           "Messages this standby dropped, by reason: a duplicate entry, an entry that failed its checks, a "
           "message of an older epoch, a message it could not decode.");
    put(t, "ringkeep_entries_dropped_total{reason=\"duplicate\"} %" PRIu64 "\n", load(&m->sb_duplicates));
    put(t, "ringkeep_entries_dropped_total{reason=\"bad_entry\"} %" PRIu64 "\n", load(&m->sb_bad_entries));
    put(t, "ringkeep_entries_dropped_total{reason=\"old_epoch\"} %" PRIu64 "\n", load(&m->sb_refused_epoch));
    put(t, "ringkeep_entries_dropped_total{reason=\"malformed\"} %" PRIu64 "\n", load(&m->sb_malformed));
    one(t, "ringkeep_bootstraps_total", "counter", "Bootstraps from the primary's checkpoint.",
        load(&m->sb_bootstraps));
    one(t, "ringkeep_bootstrapping", "gauge", "1 while a bootstrap replaces this standby's state.",
        load(&m->sb_bootstrapping));
    render_storage(t, n);
}

static uint64_t member(const json_t *st, const char *name)
{
    const json_t *v = json_object_get(st, name);

    if (json_is_boolean(v))
        return json_is_true(v);
    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : 0;
}

void metrics_standby_publish(struct node_metrics *m, const json_t *st)
{
    static const struct {
        const char *name;
        size_t offset;
    } figures[] = {
        {"epoch", offsetof(struct node_metrics, sb_epoch)},
        {"journal_seq", offsetof(struct node_metrics, sb_journal_seq)},
        {"applied_seq", offsetof(struct node_metrics, sb_applied_seq)},
        {"acked_seq", offsetof(struct node_metrics, sb_acked_seq)},
        {"primary_journal_seq", offsetof(struct node_metrics, sb_primary_seq)},
        {"lag_entries", offsetof(struct node_metrics, sb_lag_entries)},
        {"lag_ms", offsetof(struct node_metrics, sb_lag_ms)},
        {"apply_lag_ms", offsetof(struct node_metrics, sb_apply_lag_ms)},
        {"connected", offsetof(struct node_metrics, sb_connected)},
        {"records", offsetof(struct node_metrics, sb_records)},
        {"groups_applied", offsetof(struct node_metrics, sb_groups)},
        {"fetched", offsetof(struct node_metrics, sb_fetched)},
        {"gaps", offsetof(struct node_metrics, sb_gaps)},
        {"duplicates", offsetof(struct node_metrics, sb_duplicates)},
        {"bad_entries", offsetof(struct node_metrics, sb_bad_entries)},
        {"refused_epoch", offsetof(struct node_metrics, sb_refused_epoch)},
        {"malformed", offsetof(struct node_metrics, sb_malformed)},
        {"bootstraps", offsetof(struct node_metrics, sb_bootstraps)},
        {"bootstrapping", offsetof(struct node_metrics, sb_bootstrapping)},
    };

    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++)
        atomic_store_explicit((_Atomic uint64_t *)((char *)m + figures[i].offset), member(st, figures[i].name),
                              memory_order_relaxed); /* a figure on its own (metrics.h) */
}

/* ------------------------------------------------------------ server */

/* libmicrohttpd's messages, as log lines */
static void on_mhd_log(void *arg, const char *fmt, va_list ap)
{
    char text[512];
    size_t len;

    (void)arg;
    vsnprintf(text, sizeof text, fmt, ap);
    len = strlen(text);
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    for (char *p = text; *p; p++)
        if (*p == '"')
            *p = '\'';
    log_msg(LOG_WARN, "metrics server", "error=\"%s\"", text);
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc;

    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result answer(void *arg, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **state)
{
    struct metrics_server *ms = arg;
    struct text t = {0};
    struct MHD_Response *r = NULL;
    enum MHD_Result rc;

    (void)version;
    (void)upload;
    (void)upload_size;
    (void)state;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics is served\n");
    if (strcmp(url, "/metrics") != 0)
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n");
    if (ms->n->role == ROLE_STANDBY)
        render_standby(&t, ms->n);
    else
        render_primary(&t, ms->n);
    if (t.failed) {
        free(t.buf);
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    r = MHD_create_response_from_buffer(t.len, t.buf, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(t.buf);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
    rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

int metrics_start(struct node *n, struct metrics_server **out)
{
    struct sockaddr_storage sa;
    struct metrics_server *ms = NULL;
    sigset_t block, old;
    char why[256] = "";

    *out = NULL;
    if (!n->c->metrics_listen[0])
        return 0;
    if (node_config_listen_addr(n->c->metrics_listen, &sa, why, sizeof why) != 0) {
        /* node_config_set checked it: not reached */
        log_msg(LOG_ERROR, "cannot serve metrics", "listen=%s error=\"%s\"", n->c->metrics_listen, why);
        return 1;
    }
    if (!(ms = calloc(1, sizeof *ms))) {
        log_msg(LOG_ERROR, "cannot serve metrics", "listen=%s error=\"%s\"", n->c->metrics_listen,
                strerror(ENOMEM));
        return 1;
    }
    ms->n = n;
    /* the server's thread inherits this mask: the main thread takes the
     * signals (node.c, start_thread) */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    ms->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | (sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
        /* the port only names the address in libmicrohttpd's messages: SOCK_ADDR is bound */
        ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port : ((struct sockaddr_in *)&sa)->sin_port),
        NULL, NULL, answer, ms, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, /* first: all its messages */
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)METRICS_CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_CONNECTION_TIMEOUT_S,
        MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!ms->daemon) {
        /* libmicrohttpd said why just before (on_mhd_log): the bind's error */
        log_msg(LOG_ERROR, "cannot serve metrics",
                "listen=%s hint=\"is another process listening there? (see the line above) change [metrics] "
                "listen or stop it\"",
                n->c->metrics_listen);
        free(ms);
        return 1;
    }
    log_msg(LOG_INFO, "serving metrics", "listen=%s path=/metrics", n->c->metrics_listen);
    *out = ms;
    return 0;
}

void metrics_stop(struct metrics_server *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->daemon);
    free(m);
}
