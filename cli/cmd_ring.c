/* cmd_ring.c -- `ringkeep ring create|inspect|rm NAME`.
 * inspect maps the segment read-only after the same checks an engine's
 * attach makes, and changes nothing.  create makes a ring with no node
 * behind it (engines can write until it is full; a node takes it over). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ring.h"

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

static void print_json(const char *name, const ring_info *in)
{
    printf("{\"ring\":");
    cli_json_string(stdout, name);
    printf(",\"path\":");
    cli_json_string(stdout, in->path);
    printf(",\"mode\":\"%04o\",\"uid\":%u,\"format\":%u,\"capacity\":%" PRIu64 ",\"max_frame\":%u"
           ",\"fill\":%" PRIu64 ",\"owner_pid\":%u,\"owner_alive\":%s,\"epoch\":%" PRIu64
           ",\"start_lsn\":%" PRIu64 ",\"head\":%" PRIu64 ",\"tail\":%" PRIu64 ",\"durable_lsn\":%" PRIu64
           ",\"replicated_lsn\":%" PRIu64 ",\"consumed\":%" PRIu64 ",\"unblocked\":%" PRIu64
           ",\"unblocked_bytes\":%" PRIu64 ",\"corrupt\":%" PRIu64 ",\"unblock_timeout_ms\":%u",
           in->mode, in->owner_uid, in->format, in->capacity, in->max_frame, in->tail - in->head,
           in->owner_pid, in->owner_alive ? "true" : "false", in->epoch, in->start_lsn, in->head, in->tail,
           in->durable_lsn, in->replicated_lsn, in->n_consumed, in->n_unblocked, in->n_unblocked_bytes,
           in->n_corrupt, in->unblock_timeout_ms);
    printf(",\"tables\":[");
    for (uint32_t i = 0; i < in->n_tables; i++) {
        printf("%s{\"id\":%u,\"name\":", i ? "," : "", in->tables[i].id);
        cli_json_string(stdout, in->tables[i].name);
        printf("}");
    }
    printf("],\"producers\":[");
    for (uint32_t i = 0; i < in->n_producers; i++) {
        const struct ring_producer_info *p = &in->producers[i];
        printf("%s{\"id\":%u,\"name\":", i ? "," : "", p->id);
        cli_json_string(stdout, p->name);
        printf(",\"state\":\"%s\",\"pid\":%u,\"alive\":%s,\"session\":%" PRIu64 ",\"records\":%" PRIu64
               ",\"last_lsn\":%" PRIu64 "}",
               state_name(p->state), p->pid, p->alive ? "true" : "false", p->session, p->n_records,
               p->last_lsn);
    }
    printf("]}\n");
}

static int ring_usage(void)
{
    fprintf(stderr, "usage: ringkeep ring create NAME [--capacity BYTES] [--start-lsn N]\n"
                    "       ringkeep ring inspect NAME [--json]\n"
                    "       ringkeep ring rm NAME\n");
    return 2;
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
    int json = 0, rc;

    if (argc < 3)
        return ring_usage();
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--capacity") == 0 && i + 1 < argc &&
                 cli_parse_size(argv[i + 1], &capacity) == 0)
            i++;
        else if (strcmp(argv[i], "--start-lsn") == 0 && i + 1 < argc &&
                 cli_parse_size(argv[i + 1], &start_lsn) == 0)
            i++;
        else if (argv[i][0] == '-' || name)
            return ring_usage();
        else
            name = argv[i];
    }
    if (!name)
        return ring_usage();
    if (strcmp(argv[1], "create") == 0 && !json)
        return ring_create_cmd(name, capacity, start_lsn);
    if (!name)
        return ring_usage();
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
                print_json(name, info);
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
