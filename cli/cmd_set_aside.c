/* cmd_set_aside.c -- `ringkeep set-aside list|export`: what a data
 * directory set aside (persist/set_aside.h), read offline or beside a
 * running node (the runs are files nobody writes again).  Export checks
 * every entry of a run (journal_decode: checksums, frames) before it
 * writes the run's first line, so a bad run writes nothing; records are
 * printed as `checkpoint export` prints bytes (cli_export_bytes). */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "persist/config.h"
#include "persist/json_bytes.h"
#include "persist/set_aside.h"
#include "persist/store.h"
#include "shm/ring.h"

static void set_aside_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep set-aside list (-d|--data-dir DATA_DIR | -c|--config FILE) [--json]\n"
            "           the runs of journal entries DATA_DIR set aside past a fork point (a former\n"
            "           primary, or a standby, that held entries no newer primary has), oldest first:\n"
            "           file, journal seq range, entries, LSN range, when; --json: one object\n"
            "           {\"set_aside\":[{file,first_seq,last_seq,entries,first_lsn,last_lsn}],\n"
            "           \"set_aside_entries\":N}, as `ringkeep status` shows them\n"
            "       ringkeep set-aside export (-d|--data-dir DATA_DIR | -c|--config FILE) [RUN]\n"
            "           every record of RUN (a file name `list` prints; default: every run, oldest\n"
            "           first) as JSON lines, in journal order:\n"
            "             {\"seq\":S,\"epoch\":E,\"lsn\":L,\"type\":T,\"producer_id\":P,...}\n"
            "           T is put (table_id, key, value), del (table_id, key), mark (height), attach\n"
            "           (producer: its name), abort, or table (table_id, table: its name); a put or\n"
            "           del also has \"table\" and every line \"producer\" when the run itself names\n"
            "           them (tables and producers first seen before the run are given by id).\n"
            "           Bytes as `checkpoint export` writes them: a string when printable UTF-8,\n"
            "           else {\"base64\":\"...\"}.  Every entry of a run is verified before any line\n"
            "           of it is written; exit 1 when one fails\n");
}

/* The names a run itself gives to table ids and producer slots. */
struct names {
    char table[RING_MAX_TABLES][RK_NAME_MAX + 1];
    char producer[RING_MAX_PRODUCERS][RK_NAME_MAX + 1];
};

static void name_of(char *out, const uint8_t *s, uint32_t n)
{
    size_t len = n > RK_NAME_MAX ? RK_NAME_MAX : n;

    memcpy(out, s, len);
    out[len] = '\0';
}

static const char *type_name(uint8_t type)
{
    switch (type) {
    case FRAME_PUT:
        return "put";
    case FRAME_DEL:
        return "del";
    case FRAME_MARK:
        return "mark";
    case FRAME_ATTACH:
        return "attach";
    case FRAME_ABORT:
        return "abort";
    case FRAME_TABLE:
        return "table";
    default:
        return "pad";
    }
}

/* One frame's line; a new reference, NULL when out of memory. */
static json_t *frame_json(const journal_entry *je, const ring_frame *f, struct names *nm)
{
    json_t *o = json_pack("{s:o, s:o, s:o, s:s, s:o}", "seq", json_uint(je->h.seq), "epoch",
                          json_uint(je->h.epoch), "lsn", json_uint(f->lsn), "type", type_name(f->type),
                          "producer_id", json_uint(f->producer));
    int rc = o ? 0 : -1;

    if (f->type == FRAME_ATTACH)
        name_of(nm->producer[f->producer % RING_MAX_PRODUCERS], f->key, f->klen);
    if (f->type == FRAME_TABLE)
        name_of(nm->table[f->table], f->key, f->klen);
    if (!rc && nm->producer[f->producer % RING_MAX_PRODUCERS][0])
        rc = json_object_set_new(o, "producer", json_cstr(nm->producer[f->producer % RING_MAX_PRODUCERS]));
    if (!rc && (f->type == FRAME_PUT || f->type == FRAME_DEL || f->type == FRAME_TABLE)) {
        rc = json_object_set_new(o, "table_id", json_uint(f->table));
        if (!rc && nm->table[f->table][0])
            rc = json_object_set_new(o, "table", json_cstr(nm->table[f->table]));
    }
    if (!rc && (f->type == FRAME_PUT || f->type == FRAME_DEL))
        rc = json_object_set_new(o, "key", cli_export_bytes(f->key, f->klen));
    if (!rc && f->type == FRAME_PUT)
        rc = json_object_set_new(o, "value", cli_export_bytes(f->val, f->vlen));
    if (!rc && f->type == FRAME_MARK && f->vlen == 8) {
        uint64_t h = 0;
        for (int i = 7; i >= 0; i--)
            h = h << 8 | f->val[i];
        rc = json_object_set_new(o, "height", json_uint(h));
    }
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

struct export_pass {
    int write;       /* 0: verify only; 1: write the lines */
    struct names *nm;
    char err[512];
};

static int export_entry(void *arg, uint64_t seq, const uint8_t *entry, size_t len)
{
    struct export_pass *p = arg;
    journal_entry je = {0};
    int rc = journal_decode(entry, len, &je, p->err, sizeof p->err);

    if (!rc && je.h.seq != seq) {
        snprintf(p->err, sizeof p->err, "entry %" PRIu64 " says it is entry %" PRIu64, seq, je.h.seq);
        rc = RK_ECORRUPT;
    }
    for (uint32_t off = 0; !rc && p->write && off < je.h.raw_len;) {
        ring_frame f;
        json_t *o = NULL;
        rc = frame_decode(je.frames + off, je.h.raw_len - off, &f, p->err, sizeof p->err);
        if (!rc && !(o = frame_json(&je, &f, p->nm)))
            rc = ENOMEM;
        if (!rc && (json_dumpf(o, stdout, JSON_COMPACT) != 0 || fputc('\n', stdout) == EOF))
            rc = EIO;
        json_decref(o);
        off += frame_align(f.raw_len);
    }
    journal_entry_free(&je);
    return rc;
}

/* Exports one run: verified whole first, then written. 0 or 1. */
static int export_run(const struct set_aside_run *run, struct names *nm)
{
    struct export_pass p = {.nm = nm};
    char err[1024] = "";
    int rc = set_aside_read(run, export_entry, &p, err, sizeof err);

    if (!rc) {
        p.write = 1;
        rc = set_aside_read(run, export_entry, &p, err, sizeof err);
    }
    if (!rc && fflush(stdout) != 0)
        rc = EIO;
    if (rc)
        fprintf(stderr, "ringkeep set-aside export: %s: %s\n", run->path,
                err[0] ? err : p.err[0] ? p.err : rk_strerror(rc));
    return rc ? 1 : 0;
}

static int list_runs(const struct set_aside_run *runs, size_t n, int json)
{
    if (json)
        return cli_print_json(set_aside_json(runs, n));
    for (size_t i = 0; i < n; i++) {
        const char *base = strrchr(runs[i].path, '/');
        char when[32];
        cli_format_time(runs[i].set_aside_ns, when, sizeof when);
        cli_print_bytes(stdout, base + 1, strlen(base + 1));
        printf("  seq %" PRIu64 "..%" PRIu64 "  %" PRIu64 " entries  lsn %" PRIu64 "..%" PRIu64 "  set aside %s\n",
               runs[i].first_seq, runs[i].last_seq, runs[i].last_seq - runs[i].first_seq + 1,
               runs[i].first_lsn, runs[i].last_lsn, when);
    }
    if (n == 0)
        fprintf(stderr, "ringkeep set-aside: nothing set aside\n");
    return 0;
}

int cmd_set_aside(int argc, char **argv)
{
    static const struct option opts[] = {{"data-dir", required_argument, NULL, 'd'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = NULL, *file = NULL, *which = NULL;
    struct node_config *c = NULL;
    struct set_aside_run *runs = NULL;
    struct names *nm = NULL;
    size_t n = 0;
    int json = 0, rc, ch, export = 0, found = 0;

    if (argc < 2)
        return cli_usage(set_aside_usage, 0);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)
        return cli_usage(set_aside_usage, 1);
    if (strcmp(argv[1], "export") == 0)
        export = 1;
    else if (strcmp(argv[1], "list") != 0)
        return cli_usage(set_aside_usage, 0);
    /* argv[1] is the command: getopt_long starts after it */
    optind = 0;
    while ((ch = getopt_long(argc - 1, argv + 1, "d:c:", opts, NULL)) != -1) {
        if (ch == 'h' || ch == '?')
            return cli_usage(set_aside_usage, ch == 'h');
        if (ch == 'd')
            dir = optarg;
        else if (ch == 'c')
            file = optarg;
        else
            json = 1;
    }
    if (!dir == !file || (export && json) || argc - 1 - optind > export)
        return cli_usage(set_aside_usage, 0);
    if (export && argc - 1 - optind == 1)
        which = argv[1 + optind];
    if (file) {
        if (!(c = cli_load_config("set-aside", file)))
            return 2;
        dir = c->data_dir;
    }
    rc = set_aside_list(dir, &runs, &n);
    if (rc) {
        fprintf(stderr, "ringkeep set-aside: cannot list %s/set-aside: %s\n", dir, strerror(rc));
        rc = 1;
        goto out;
    }
    if (!export) {
        rc = list_runs(runs, n, json);
        goto out;
    }
    nm = calloc(1, sizeof *nm);
    if (!nm) {
        fprintf(stderr, "ringkeep set-aside: out of memory\n");
        rc = 1;
        goto out;
    }
    for (size_t i = 0; !rc && i < n; i++) {
        const char *base = strrchr(runs[i].path, '/') + 1;
        if (which && strcmp(which, base) != 0 && strcmp(which, runs[i].path) != 0)
            continue;
        found = 1;
        rc = export_run(&runs[i], nm);
        memset(nm, 0, sizeof *nm); /* a run names only its own */
    }
    if (which && !found) {
        fprintf(stderr, "ringkeep set-aside export: %s: no such run in %s/set-aside\n", which, dir);
        rc = 1;
    }
out:
    free(nm);
    free(runs);
    free(c);
    return rc;
}
