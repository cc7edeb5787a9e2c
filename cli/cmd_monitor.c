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
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cli.h"
#include "link.h"
#include "wire.h"

static volatile sig_atomic_t stop_monitor;

static void on_signal(int sig)
{
    (void)sig;
    stop_monitor = 1;
}

/* Prints a name a peer sent, in text mode: bytes outside printable ASCII
 * (a newline could forge a line) as \xHH. */
static void print_name(const char *name)
{
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
        if (*c > 0x20 && *c < 0x7f && *c != '\\')
            putchar(*c);
        else
            printf("\\x%02x", *c);
    }
}

static void print_heartbeat(const struct wire_msg *m, int json)
{
    const struct wire_heartbeat *h = &m->u.heartbeat;

    if (json)
        printf("{\"type\":\"heartbeat\",\"epoch\":%" PRIu64 ",\"journal_seq\":%" PRIu64
               ",\"applied_seq\":%" PRIu64 ",\"durable_lsn\":%" PRIu64 ",\"applied_lsn\":%" PRIu64
               ",\"digest\":\"%016" PRIx64 "\",\"digest_seq\":%" PRIu64 ",\"time_ns\":%" PRIu64
               ",\"standbys\":[",
               m->epoch, h->journal_seq, h->applied_seq, h->durable_lsn, h->applied_lsn, h->digest,
               h->digest_seq, h->time_ns);
    else
        printf("heartbeat epoch=%" PRIu64 " journal_seq=%" PRIu64 " applied_seq=%" PRIu64
               " durable_lsn=%" PRIu64 " applied_lsn=%" PRIu64 " digest=%016" PRIx64 " digest_seq=%" PRIu64
               " standbys=%" PRIu32,
               m->epoch, h->journal_seq, h->applied_seq, h->durable_lsn, h->applied_lsn, h->digest,
               h->digest_seq, h->n_standbys);
    for (uint32_t i = 0; i < h->n_standbys; i++) {
        const struct wire_standby *s = &h->standbys[i];
        if (json) {
            printf("%s{\"id\":", i ? "," : "");
            cli_json_string(stdout, s->id);
            printf(",\"acked_seq\":%" PRIu64 ",\"lag_entries\":%" PRIu64 ",\"lag_ms\":%" PRIu64 "}",
                   s->acked_seq, s->lag_entries, s->lag_ms);
        } else {
            putchar(' ');
            print_name(s->id);
            printf(":acked_seq=%" PRIu64 ",lag_entries=%" PRIu64 ",lag_ms=%" PRIu64, s->acked_seq, s->lag_entries,
                   s->lag_ms);
        }
    }
    printf(json ? "]}\n" : "\n");
}

static void print_checkpoint(const struct wire_msg *m, int json)
{
    const struct wire_checkpoint *c = &m->u.checkpoint;

    if (json) {
        printf("{\"type\":\"checkpoint\",\"epoch\":%" PRIu64 ",\"name\":", m->epoch);
        cli_json_string(stdout, c->name);
        printf(",\"journal_seq\":%" PRIu64 ",\"lsn\":%" PRIu64 ",\"size\":%" PRIu64
               ",\"digest\":\"%016" PRIx64 "\",\"created_ns\":%" PRIu64 ",\"producers\":[",
               c->journal_seq, c->lsn, c->size, c->digest, c->created_ns);
    } else {
        printf("checkpoint epoch=%" PRIu64 " name=", m->epoch);
        print_name(c->name);
        printf(" journal_seq=%" PRIu64 " lsn=%" PRIu64 " size=%" PRIu64 " digest=%016" PRIx64 " producers=%" PRIu32,
               c->journal_seq, c->lsn, c->size, c->digest, c->n_producers);
    }
    for (uint32_t i = 0; i < c->n_producers; i++) {
        if (json) {
            printf("%s{\"name\":", i ? "," : "");
            cli_json_string(stdout, c->producers[i].name);
            printf(",\"height\":%" PRIu64 "}", c->producers[i].height);
        } else {
            putchar(' ');
            print_name(c->producers[i].name);
            printf(":%" PRIu64, c->producers[i].height);
        }
    }
    printf(json ? "]}\n" : "\n");
}

int cmd_monitor(int argc, char **argv)
{
    const char *endpoint = NULL, *server_key = NULL, *public_key = NULL, *secret_key = NULL;
    int json = 0, rc = 1;
    long count = 0, seen = 0;
    void *ctx = NULL, *sub = NULL;
    struct sigaction sa = {.sa_handler = on_signal};

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--curve-server-key") == 0 && i + 1 < argc)
            server_key = argv[++i];
        else if (strcmp(argv[i], "--curve-public-key") == 0 && i + 1 < argc)
            public_key = argv[++i];
        else if (strcmp(argv[i], "--curve-secret-key") == 0 && i + 1 < argc)
            secret_key = argv[++i];
        else if (argv[i][0] != '-' && !endpoint)
            endpoint = argv[i];
        else
            endpoint = NULL, i = argc;
    }
    if (!endpoint || count < 0 || !server_key != !public_key || !server_key != !secret_key) {
        fprintf(stderr, "usage: ringkeep monitor ENDPOINT [--json] [--count N]\n"
                        "       [--curve-server-key Z85 --curve-public-key Z85 --curve-secret-key Z85]\n");
        return 2;
    }
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
            print_heartbeat(&in.m, json);
        else if (r == 0 && in.m.type == WIRE_CHECKPOINT)
            print_checkpoint(&in.m, json);
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
