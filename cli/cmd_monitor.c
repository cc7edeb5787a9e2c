/* cmd_monitor.c -- `ringkeep monitor ENDPOINT [--json] [--count N]
 * [--curve-server-key K --curve-public-key K --curve-secret-key K]`:
 * subscribes to a primary's publish endpoint for checkpoint notices (rk.c)
 * and heartbeats (rk.h) -- never journal entries -- and prints each as it
 * comes: one line of key=value, or with --json one JSON object per line.
 * --count N exits after N messages (for scripts).  With the three CURVE
 * keys (Z85: the primary's public key, then this monitor's authorized
 * pair) it connects to a primary that runs with curve = yes.  A message that does not
 * decode is reported on stderr and skipped. */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void monitor_usage(FILE *out)
{
    fprintf(out, "usage: ringkeep monitor ENDPOINT [--json] [--count N]\n"
                 "       [--curve-server-key Z85 --curve-public-key Z85 --curve-secret-key Z85]\n"
                 "  prints a primary's checkpoint notices and heartbeats (ENDPOINT: its publish endpoint)\n"
                 "  as they come, one line each (--json: one JSON object each); --count N exits after N\n");
}

int cmd_monitor(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"curve-server-key", required_argument, NULL, 's'},
                                         {"curve-public-key", required_argument, NULL, 'p'},
                                         {"curve-secret-key", required_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *endpoint = NULL, *server_key = NULL, *public_key = NULL, *secret_key = NULL;
    int json = 0, rc = 1, ch;
    long count = 0, seen = 0;
    void *ctx = NULL, *sub = NULL;
    struct sigaction sa = {.sa_handler = on_signal};

    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        if (ch == 'h' || ch == '?')
            return cli_usage(monitor_usage, ch == 'h');
        if (ch == 'j') {
            json = 1;
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
    if (optind != argc - 1 || !server_key != !public_key || !server_key != !secret_key)
        return cli_usage(monitor_usage, 0);
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
        if (zmq_poll(&item, 1, 200) <= 0)
            continue;
        int r = link_recv(sub, 0, &in, why, sizeof why);
        if (r == 0 && in.m.type == WIRE_HEARTBEAT)
            json ? print_heartbeat_json(&in.m) : print_heartbeat(&in.m);
        else if (r == 0 && in.m.type == WIRE_CHECKPOINT)
            json ? print_checkpoint_json(&in.m) : print_checkpoint(&in.m);
        else if (r != EAGAIN)
            fprintf(stderr, "ringkeep monitor: message refused: %s\n", r ? why : "not rk.h or rk.c");
        if (r == 0)
            seen++;
        fflush(stdout);
        link_in_free(&in);
    }
    rc = 0;
out:
    if (sub)
        zmq_close(sub);
    if (ctx)
        zmq_ctx_term(ctx);
    return rc;
}
