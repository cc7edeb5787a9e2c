/* cmd_ring.c -- `ringkeep ring create|inspect|rm NAME`.
 * inspect maps the segment read-only after the same checks an engine's
 * attach makes, and changes nothing.  create makes a ring with no node
 * behind it (engines can write until it is full; a node takes it over). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "persist/json_bytes.h"
#include "shm/ring.h"

static const char *state_name(uint32_t state)
{
    switch (state) {
    case SLOT_ATTACHED:
        return "attached";
    case SLOT_DETACHED:
        return "detached";
    case SLOT_DEAD:
        return "dead";
    default:
        return "free";
    }
}

static void print_human(const char *name, const ring_info *in)
{
    uint64_t fill = in->tail - in->head;

    printf("ring        %s  (%s, mode %04o, uid %u)\n", name, in->path, in->mode, in->owner_uid);
    printf("format      %u\n", in->format);
    printf("capacity    %" PRIu64 " bytes (%.1f MiB), largest frame %u bytes\n", in->capacity,
           (double)in->capacity / (1 << 20), in->max_frame);
    printf("fill        %" PRIu64 " bytes (%.1f%%)\n", fill, 100.0 * (double)fill / (double)in->capacity);
    printf("owner       pid %u (%s), epoch %" PRIu64 "\n", in->owner_pid,
           in->owner_pid == 0 ? "none"
           : in->owner_alive  ? "alive"
                              : "gone",
           in->epoch);
    printf("cursors     head %" PRIu64 "  tail %" PRIu64 "  durable %" PRIu64 "  replicated %" PRIu64
           "  (first LSN %" PRIu64 ")\n",
           in->head, in->tail, in->durable_lsn, in->replicated_lsn, in->start_lsn);
    printf("consumed    %" PRIu64 " frames; unblocked %" PRIu64 " dead claims (%" PRIu64
           " bytes); corrupt %" PRIu64 "\n",
           in->n_consumed, in->n_unblocked, in->n_unblocked_bytes, in->n_corrupt);
    printf("unblock     a stuck claim of a dead producer after %u ms\n", in->unblock_timeout_ms);
    printf("tables      %u\n", in->n_tables);
    for (uint32_t i = 0; i < in->n_tables; i++)
        printf("  %3u  %s\n", in->tables[i].id, in->tables[i].name);
    printf("producers   %u\n", in->n_producers);
    for (uint32_t i = 0; i < in->n_producers; i++) {
        const struct ring_producer_info *p = &in->producers[i];
        printf("  %3u  %-20s %-9s pid %-7u %-5s session %-4" PRIu64 " records %-10" PRIu64
               " last LSN %" PRIu64 "\n",
               p->id, p->name, state_name(p->state), p->pid,
               p->state != SLOT_ATTACHED ? ""
               : p->alive                ? "alive"
                                         : "gone",
               p->session, p->n_records, p->last_lsn);
    }
}

static int print_json(const char *name, const ring_info *in)
{
    json_t *tables = json_array(), *producers = json_array();
    char mode[8];

    snprintf(mode, sizeof mode, "%04o", in->mode);
    for (uint32_t i = 0; tables && i < in->n_tables; i++)
        json_array_append_new(tables, json_pack("{s:i, s:o}", "id", (int)in->tables[i].id, "name",
                                                json_cstr(in->tables[i].name)));
    for (uint32_t i = 0; producers && i < in->n_producers; i++) {
        const struct ring_producer_info *p = &in->producers[i];
        json_array_append_new(
            producers, json_pack("{s:i, s:o, s:s, s:o, s:b, s:o, s:o, s:o}", "id", (int)p->id, "name",
                                 json_cstr(p->name), "state", state_name(p->state), "pid", json_uint(p->pid),
                                 "alive", p->alive, "session", json_uint(p->session), "records",
                                 json_uint(p->n_records), "last_lsn", json_uint(p->last_lsn)));
    }
    /* "o" steals its reference, even when json_pack fails */
    return cli_print_json(json_pack(
        "{s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o,"
        " s:o, s:o, s:o}",
        "ring", json_cstr(name), "path", json_cstr(in->path), "mode", mode, "uid", json_uint(in->owner_uid),
        "format", json_uint(in->format), "capacity", json_uint(in->capacity), "max_frame",
        json_uint(in->max_frame), "fill", json_uint(in->tail - in->head), "owner_pid",
        json_uint(in->owner_pid), "owner_alive", in->owner_alive, "epoch", json_uint(in->epoch), "start_lsn",
        json_uint(in->start_lsn), "head", json_uint(in->head), "tail", json_uint(in->tail), "durable_lsn",
        json_uint(in->durable_lsn), "replicated_lsn", json_uint(in->replicated_lsn), "consumed",
        json_uint(in->n_consumed), "unblocked", json_uint(in->n_unblocked), "unblocked_bytes",
        json_uint(in->n_unblocked_bytes), "corrupt", json_uint(in->n_corrupt), "unblock_timeout_ms",
        json_uint(in->unblock_timeout_ms), "tables", tables, "producers", producers));
}

static void print_ring_usage(FILE *out)
{
    fprintf(out, "usage: ringkeep ring create NAME [--capacity BYTES] [--start-lsn N]\n"
                 "           a ring with no node behind it (default 4M; K/M/G suffixes)\n"
                 "       ringkeep ring inspect NAME [--json]\n"
                 "           its header: capacity, fill, owner, cursors, counters, tables, producers\n"
                 "       ringkeep ring rm NAME\n"
                 "           removes /dev/shm/ringkeep.NAME\n");
}

static int ring_usage(void)
{
    return cli_usage(print_ring_usage, 0);
}

static int ring_create_cmd(const char *name, unsigned long long capacity, unsigned long long start_lsn)
{
    ring_create_opts co = {.capacity = capacity, .start_lsn = start_lsn};
    ring_owner *o = NULL;
    char err[512] = "";
    int rc = ring_create(name, &co, &o, err, sizeof err);

    if (rc) {
        fprintf(stderr, "ringkeep: %s\n", err[0] ? err : rk_strerror(rc));
        return 1;
    }
    ring_close(o, 0);
    return 0;
}

int cmd_ring(int argc, char **argv)
{
    const char *name = NULL;
    unsigned long long capacity = 4 << 20, start_lsn = 0;
    int json = 0, rc, ch;
    static const struct option opts[] = {{"capacity", required_argument, NULL, 'c'},
                                         {"start-lsn", required_argument, NULL, 's'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};

    if (argc < 2)
        return ring_usage();
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)
        return cli_usage(print_ring_usage, 1);
    /* argv[1] is the command: getopt_long starts after it */
    optind = 0;
    while ((ch = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        if (ch == 'h' || ch == '?')
            return cli_usage(print_ring_usage, ch == 'h');
        if (ch == 'j')
            json = 1;
        else if (cli_parse_size(optarg, ch == 'c' ? &capacity : &start_lsn) != 0)
            return ring_usage();
    }
    if (optind != argc - 2)
        return ring_usage();
    name = argv[1 + optind];
    if (strcmp(argv[1], "create") == 0 && !json)
        return ring_create_cmd(name, capacity, start_lsn);
    if (strcmp(argv[1], "inspect") == 0) {
        char err[512] = "";
        ring_info *info = malloc(sizeof *info);

        if (!info) {
            fprintf(stderr, "ringkeep: out of memory\n");
            return 1;
        }
        rc = ring_inspect(name, info, err, sizeof err);
        if (rc == 0) {
            if (json)
                rc = print_json(name, info);
            else
                print_human(name, info);
        } else {
            fprintf(stderr, "ringkeep: %s\n", err[0] ? err : rk_strerror(rc));
        }
        free(info);
        return rc ? 1 : 0;
    }
    if (strcmp(argv[1], "rm") == 0 && !json) {
        rc = ring_unlink(name);
        if (rc) {
            fprintf(stderr, "ringkeep: cannot remove ring '%s': %s\n", name, rk_strerror(rc));
            return 1;
        }
        return 0;
    }
    return ring_usage();
}
