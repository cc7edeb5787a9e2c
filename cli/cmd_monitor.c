/* cmd_monitor.c -- `ringkeep monitor ENDPOINT [--json | --live | --lines]
 * [--count N] [--curve-server-key K --curve-public-key K --curve-secret-key K]`:
 * subscribes to a primary's publish endpoint for checkpoint notices (rk.c)
 * and heartbeats (rk.h) -- never journal entries.
 *
 * On a terminal (or with --live) it shows one live line, redrawn every
 * second: the primary's cursors, each standby's lag (entries and ms) and
 * health, the last checkpoint notice and its age, and, when heartbeats
 * stop (none for 3 heartbeat intervals and at least 1 s), how long they
 * have been missing.  Off a terminal (or with --lines) it prints each
 * message as it comes, one line of key=value (and a line when heartbeats
 * stop); with --json one JSON object per message, unchanged.  --count N
 * exits after N messages (live: after N live lines).  With the three
 * CURVE keys (Z85: the primary's public key, then this monitor's
 * authorized pair) it connects to a primary that runs with curve = yes.
 * A message that does not decode is reported on stderr and skipped.
 * Threads: one. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "persist/json_bytes.h"
#include "replicator/link.h"
#include "replicator/wire.h"

static volatile sig_atomic_t stop_monitor;

static void on_signal(int sig)
{
    (void)sig;
    stop_monitor = 1;
}

/* Prints a name a peer sent, in text mode (cli_print_bytes: a newline
 * cannot forge a line). */
static void print_name(const char *name)
{
    cli_print_bytes(stdout, name, strlen(name));
}

/* JSON: one object per line, through Jansson; the names a peer sent keep
 * their bytes (json_bytes.h).  "o" steals its reference, even when
 * json_pack fails. */
static void print_heartbeat_json(const struct wire_msg *m)
{
    const struct wire_heartbeat *h = &m->u.heartbeat;
    json_t *standbys = json_array();
    char digest[17];

    snprintf(digest, sizeof digest, "%016" PRIx64, h->digest);
    for (uint32_t i = 0; standbys && i < h->n_standbys; i++) {
        const struct wire_standby *s = &h->standbys[i];
        if (json_array_append_new(standbys,
                                  json_pack("{s:o, s:o, s:o, s:o}", "id", json_cstr(s->id), "acked_seq",
                                            json_uint(s->acked_seq), "lag_entries", json_uint(s->lag_entries),
                                            "lag_ms", json_uint(s->lag_ms))) != 0) {
            json_decref(standbys);
            standbys = NULL;
        }
    }
    cli_print_json(json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:s, s:o, s:o, s:o}", "type", "heartbeat",
                             "epoch", json_uint(m->epoch), "journal_seq", json_uint(h->journal_seq),
                             "applied_seq", json_uint(h->applied_seq), "durable_lsn",
                             json_uint(h->durable_lsn), "applied_lsn", json_uint(h->applied_lsn), "digest",
                             digest, "digest_seq", json_uint(h->digest_seq), "time_ns", json_uint(h->time_ns),
                             "standbys", standbys));
}

static void print_checkpoint_json(const struct wire_msg *m)
{
    const struct wire_checkpoint *c = &m->u.checkpoint;
    json_t *producers = json_array();
    char digest[17];

    snprintf(digest, sizeof digest, "%016" PRIx64, c->digest);
    for (uint32_t i = 0; producers && i < c->n_producers; i++)
        if (json_array_append_new(producers, json_pack("{s:o, s:o}", "name", json_cstr(c->producers[i].name),
                                                       "height", json_uint(c->producers[i].height))) != 0) {
            json_decref(producers);
            producers = NULL;
        }
    cli_print_json(json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:s, s:o, s:o}", "type", "checkpoint", "epoch",
                             json_uint(m->epoch), "name", json_cstr(c->name), "journal_seq",
                             json_uint(c->journal_seq), "lsn", json_uint(c->lsn), "size", json_uint(c->size),
                             "digest", digest, "created_ns", json_uint(c->created_ns), "producers",
                             producers));
}

static void print_heartbeat(const struct wire_msg *m)
{
    const struct wire_heartbeat *h = &m->u.heartbeat;

    printf("heartbeat epoch=%" PRIu64 " journal_seq=%" PRIu64 " applied_seq=%" PRIu64 " durable_lsn=%" PRIu64
           " applied_lsn=%" PRIu64 " digest=%016" PRIx64 " digest_seq=%" PRIu64 " standbys=%" PRIu32,
           m->epoch, h->journal_seq, h->applied_seq, h->durable_lsn, h->applied_lsn, h->digest, h->digest_seq,
           h->n_standbys);
    for (uint32_t i = 0; i < h->n_standbys; i++) {
        const struct wire_standby *s = &h->standbys[i];
        putchar(' ');
        print_name(s->id);
        printf(":acked_seq=%" PRIu64 ",lag_entries=%" PRIu64 ",lag_ms=%" PRIu64, s->acked_seq, s->lag_entries,
               s->lag_ms);
    }
    putchar('\n');
}

static void print_checkpoint(const struct wire_msg *m)
{
    const struct wire_checkpoint *c = &m->u.checkpoint;

    printf("checkpoint epoch=%" PRIu64 " name=", m->epoch);
    print_name(c->name);
    printf(" journal_seq=%" PRIu64 " lsn=%" PRIu64 " size=%" PRIu64 " digest=%016" PRIx64
           " producers=%" PRIu32,
           c->journal_seq, c->lsn, c->size, c->digest, c->n_producers);
    for (uint32_t i = 0; i < c->n_producers; i++) {
        putchar(' ');
        print_name(c->producers[i].name);
        printf(":%" PRIu64, c->producers[i].height);
    }
    putchar('\n');
}

/* ------------------------------------------------------------ live view */

#define LIVE_INTERVAL_NS 1000000000ull /* the live line is redrawn every second */
#define STOPPED_BEATS 3                /* heartbeats missing this many intervals ... */
#define STOPPED_MIN_NS 1000000000ull   /* ... and at least this long: "stopped" */

/* What the live line shows: the last heartbeat and checkpoint notice, and
 * when they came (monotonic ns; 0: none yet). */
struct live {
    int tty;                     /* redraw one line (\r) rather than print a line a second */
    struct wire_msg hb;          /* the last heartbeat (its standbys array owned) */
    uint64_t hb_ns, interval_ns; /* when it came; the interval between the last two */
    struct wire_checkpoint ckpt; /* the last notice (producers not kept) */
    uint64_t ckpt_ns;
    int stopped_said; /* lines mode: the "stopped" line was printed for this gap */
};

/* Heartbeats are late enough to call them stopped: how long since the last
 * one (ns), or 0. */
static uint64_t heartbeat_gap(const struct live *lv, uint64_t now)
{
    uint64_t limit = lv->interval_ns * STOPPED_BEATS;

    if (!lv->hb_ns)
        return 0;
    if (limit < STOPPED_MIN_NS)
        limit = STOPPED_MIN_NS;
    return now - lv->hb_ns >= limit ? now - lv->hb_ns : 0;
}

static void live_keep(struct live *lv, const struct wire_msg *m, uint64_t now)
{
    if (m->type == WIRE_HEARTBEAT) {
        struct wire_standby *copy = NULL;
        uint32_t n = m->u.heartbeat.n_standbys;
        if (n && (copy = malloc(n * sizeof *copy)) != NULL)
            memcpy(copy, m->u.heartbeat.standbys, n * sizeof *copy);
        free(lv->hb.u.heartbeat.standbys);
        if (lv->hb_ns)
            lv->interval_ns = now - lv->hb_ns;
        lv->hb = *m;
        lv->hb.u.heartbeat.standbys = copy;
        lv->hb.u.heartbeat.n_standbys = copy ? n : 0;
        lv->hb_ns = now;
        lv->stopped_said = 0;
    } else if (m->type == WIRE_CHECKPOINT) {
        lv->ckpt = m->u.checkpoint;
        lv->ckpt.producers = NULL;
        lv->ckpt.n_producers = 0;
        lv->ckpt_ns = now;
    }
}

static void live_line(const struct live *lv, uint64_t now)
{
    const struct wire_heartbeat *h = &lv->hb.u.heartbeat;
    uint64_t gap = heartbeat_gap(lv, now);

    if (lv->tty)
        fputs("\r\033[K", stdout); /* back to the line's start, cleared */
    if (!lv->hb_ns) {
        printf("waiting for the first heartbeat");
    } else {
        if (gap)
            printf("NO HEARTBEAT for %.1f s; last: ", (double)gap / 1e9);
        printf("epoch=%" PRIu64 " journal_seq=%" PRIu64 " applied_seq=%" PRIu64 " digest=%016" PRIx64
               " standbys=%" PRIu32,
               lv->hb.epoch, h->journal_seq, h->applied_seq, h->digest, h->n_standbys);
        for (uint32_t i = 0; i < h->n_standbys; i++) {
            const struct wire_standby *s = &h->standbys[i];
            putchar(' ');
            print_name(s->id);
            /* health: caught up, or behind by entries and time */
            if (s->lag_entries == 0)
                printf(":ok");
            else
                printf(":lag=%" PRIu64 "/%" PRIu64 "ms", s->lag_entries, s->lag_ms);
        }
    }
    if (lv->ckpt_ns) {
        printf(" checkpoint=");
        print_name(lv->ckpt.name);
        printf("@%" PRIu64 " %.0fs ago", lv->ckpt.journal_seq, (double)(now - lv->ckpt_ns) / 1e9);
    }
    if (!lv->tty)
        putchar('\n');
    fflush(stdout);
}

static void monitor_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep monitor ENDPOINT [--json | --live | --lines] [--count N]\n"
            "       [--curve-server-key Z85 --curve-public-key Z85 --curve-secret-key Z85]\n"
            "  shows a primary's heartbeats and checkpoint notices (ENDPOINT: its publish endpoint):\n"
            "  on a terminal (--live) one live line a second: lag, standby health, the last checkpoint,\n"
            "  and how long heartbeats have been missing when they stop; otherwise (--lines) one line\n"
            "  per message (--json: one JSON object each); --count N exits after N (live: N lines)\n");
}

int cmd_monitor(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"live", no_argument, NULL, 'l'},
                                         {"lines", no_argument, NULL, 'L'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"curve-server-key", required_argument, NULL, 's'},
                                         {"curve-public-key", required_argument, NULL, 'p'},
                                         {"curve-secret-key", required_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *endpoint = NULL, *server_key = NULL, *public_key = NULL, *secret_key = NULL;
    int json = 0, rc = 1, ch, live_mode = -1; /* -1: live on a terminal */
    long count = 0, seen = 0;
    struct live lv = {0};
    uint64_t next_line = 0;
    void *ctx = NULL, *sub = NULL;
    struct sigaction sa = {.sa_handler = on_signal};

    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        if (ch == 'h' || ch == '?')
            return cli_usage(monitor_usage, ch == 'h');
        if (ch == 'j') {
            json = 1;
        } else if (ch == 'l' || ch == 'L') {
            live_mode = ch == 'l';
        } else if (ch == 'n') {
            count = strtol(optarg, &end, 10);
            if (*end || !optarg[0] || count < 0)
                return cli_usage(monitor_usage, 0);
        } else if (ch == 's') {
            server_key = optarg;
        } else if (ch == 'p') {
            public_key = optarg;
        } else {
            secret_key = optarg;
        }
    }
    if (optind != argc - 1 || !server_key != !public_key || !server_key != !secret_key ||
        (json && live_mode == 1))
        return cli_usage(monitor_usage, 0);
    lv.tty = isatty(STDOUT_FILENO);
    if (live_mode == -1)
        live_mode = !json && lv.tty;
    endpoint = argv[optind];
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    ctx = zmq_ctx_new();
    sub = ctx ? zmq_socket(ctx, ZMQ_SUB) : NULL;
    if (!sub || link_setup(sub, 1000) ||
        (server_key && link_curve_client(sub, server_key, public_key, secret_key)) ||
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "rk.h", 4) || zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "rk.c", 4) ||
        zmq_connect(sub, endpoint)) {
        fprintf(stderr, "ringkeep monitor: %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        goto out;
    }
    while (!stop_monitor && (!count || seen < count)) {
        zmq_pollitem_t item = {.socket = sub, .events = ZMQ_POLLIN};
        struct link_in in;
        char why[512] = "";
        uint64_t now = link_monotonic_ns();
        if (live_mode && now >= next_line) {
            live_line(&lv, now);
            next_line = now + LIVE_INTERVAL_NS;
            seen++;
            continue;
        }
        if (!live_mode && !json && heartbeat_gap(&lv, now) && !lv.stopped_said) {
            printf("heartbeats stopped: none for %.1f s (the last: epoch=%" PRIu64 " journal_seq=%" PRIu64
                   ")\n",
                   (double)heartbeat_gap(&lv, now) / 1e9, lv.hb.epoch, lv.hb.u.heartbeat.journal_seq);
            fflush(stdout);
            lv.stopped_said = 1;
        }
        if (zmq_poll(&item, 1, 100) <= 0)
            continue;
        int r = link_recv(sub, 0, &in, why, sizeof why);
        if (r == 0 && (in.m.type == WIRE_HEARTBEAT || in.m.type == WIRE_CHECKPOINT))
            live_keep(&lv, &in.m, link_monotonic_ns());
        if (r == 0 && live_mode) {
            /* shown by the next live line */
        } else if (r == 0 && in.m.type == WIRE_HEARTBEAT)
            json ? print_heartbeat_json(&in.m) : print_heartbeat(&in.m);
        else if (r == 0 && in.m.type == WIRE_CHECKPOINT)
            json ? print_checkpoint_json(&in.m) : print_checkpoint(&in.m);
        else if (r != EAGAIN)
            fprintf(stderr, "ringkeep monitor: message refused: %s\n", r ? why : "not rk.h or rk.c");
        if (r == 0 && !live_mode)
            seen++;
        fflush(stdout);
        link_in_free(&in);
    }
    if (live_mode && lv.tty)
        putchar('\n'); /* leave the live line in place */
    rc = 0;
out:
    free(lv.hb.u.heartbeat.standbys);
    if (sub)
        zmq_close(sub);
    if (ctx)
        zmq_ctx_term(ctx);
    return rc;
}
