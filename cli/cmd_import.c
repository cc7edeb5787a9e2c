/* cmd_import.c -- `ringkeep checkpoint import FILE --to DIR`: a new data
 * directory holding the state that FILE, JSON lines as `checkpoint export`
 * writes them, describes (persist/restore.c's restore_import builds it).
 *
 * Design: JSON is parsed by Jansson (Debian's libjansson), not by hand;
 * this file only checks the shape of each line -- an object with exactly
 * "table", "key" and "value", each a JSON string (its UTF-8 bytes) or
 * {"base64":"..."} (standard base64 with padding, canonical) -- and reports
 * the first line that breaks it.  Every line is read and checked before
 * DIR is made, so bad input leaves nothing behind.
 *
 * Threads: one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "persist/json_bytes.h"
#include "persist/restore.h"
#include "ringkeep.h"

static void print_import_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep checkpoint import FILE --to DIR\n"
            "  FILE (or - for stdin) holds JSON lines as `ringkeep checkpoint export` writes them:\n"
            "    {\"table\":T,\"key\":K,\"value\":V}, each a JSON string or {\"base64\":\"...\"}\n"
            "  DIR (new, or an empty folder) becomes a data directory holding exactly that state,\n"
            "  with it as checkpoint DIR/checkpoints/00000000000000000000.rkcp; no producers, no journal.\n"
            "  A table and key given twice, or any malformed line, is refused naming the line; then\n"
            "  DIR is not made.\n");
}

/* One field: a JSON string (its bytes) or {"base64":"..."}.  0, or -1
 * with the reason in why. */
static int field_bytes(json_t *obj, const char *name, uint8_t **out, size_t *out_len, char *why,
                       size_t why_size)
{
    json_t *v = json_object_get(obj, name);
    int rc = v ? json_bytes_of(v, out, out_len) : RK_EINVAL;

    if (!v)
        snprintf(why, why_size, "no \"%s\" field", name);
    else if (rc == RK_EINVAL)
        snprintf(why, why_size, "\"%s\" is not a string or {\"base64\":\"...\"}", name);
    else if (rc == RK_ECORRUPT)
        snprintf(why, why_size, "\"%s\": not canonical padded base64 (RFC 4648)", name);
    else if (rc)
        snprintf(why, why_size, "out of memory");
    return rc ? -1 : 0;
}

struct import {
    struct restore_entry *entries;
    size_t n, cap;
};

static void import_free(struct import *im)
{
    for (size_t i = 0; i < im->n; i++) {
        free((void *)im->entries[i].table);
        free((void *)im->entries[i].key);
        free((void *)im->entries[i].val);
    }
    free(im->entries);
}

/* Parses one line into a new entry; 0, or -1 with the reason in why. */
static int parse_line(struct import *im, const char *line, size_t len, uint64_t line_no, char *why,
                      size_t why_size)
{
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    uint8_t *table = NULL, *key = NULL, *val = NULL;
    size_t tlen = 0, klen = 0, vlen = 0;
    const char *name;
    json_t *v;
    int rc = -1;

    if (!obj) {
        snprintf(why, why_size, "not JSON: %s (column %d)", jerr.text, jerr.column);
        return -1;
    }
    if (!json_is_object(obj)) {
        snprintf(why, why_size, "not a JSON object");
        goto out;
    }
    json_object_foreach(obj, name, v)
    {
        if (strcmp(name, "table") != 0 && strcmp(name, "key") != 0 && strcmp(name, "value") != 0) {
            snprintf(why, why_size, "unknown field \"%s\" (want table, key, value)", name);
            goto out;
        }
    }
    if (field_bytes(obj, "table", &table, &tlen, why, why_size) ||
        field_bytes(obj, "key", &key, &klen, why, why_size) ||
        field_bytes(obj, "value", &val, &vlen, why, why_size))
        goto out;
    if (tlen == 0 || tlen > RK_NAME_MAX || memchr(table, '\0', tlen)) {
        snprintf(why, why_size, "table name of %zu bytes%s: want 1..%d bytes, no NUL", tlen,
                 memchr(table, '\0', tlen) ? " with a NUL" : "", RK_NAME_MAX);
        goto out;
    }
    if (klen > RK_KEY_MAX) {
        snprintf(why, why_size, "key of %zu bytes (at most %u)", klen, RK_KEY_MAX);
        goto out;
    }
    if (vlen > CKPT_MAX_ENTRY) {
        snprintf(why, why_size, "value of %zu bytes (a checkpoint entry holds at most %u)", vlen,
                 CKPT_MAX_ENTRY);
        goto out;
    }
    if (im->n == im->cap) {
        size_t cap = im->cap ? im->cap * 2 : 1024;
        struct restore_entry *grown = realloc(im->entries, cap * sizeof *grown);
        if (!grown) {
            snprintf(why, why_size, "out of memory");
            goto out;
        }
        im->entries = grown;
        im->cap = cap;
    }
    table[tlen] = '\0';
    im->entries[im->n++] = (struct restore_entry){.table = (char *)table,
                                                  .key = key,
                                                  .klen = (uint32_t)klen,
                                                  .val = val,
                                                  .vlen = (uint32_t)vlen,
                                                  .line = line_no};
    table = key = val = NULL;
    rc = 0;
out:
    free(table);
    free(key);
    free(val);
    json_decref(obj);
    return rc;
}

int cmd_checkpoint_import(int argc, char **argv)
{
    const char *file = NULL, *to = NULL;
    struct import im = {0};
    struct ckpt_info info = {0};
    char err[1024] = "", why[512] = "", path[PATH_MAX] = "";
    char *line = NULL;
    size_t line_cap = 0;
    uint64_t line_no = 0;
    ssize_t len;
    FILE *in = NULL;
    int rc = 1, ch;
    static const struct option opts[] = {
        {"to", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

    /* argv[0] is "import"; FILE may be "-" (stdin), which getopt_long
     * leaves as an argument */
    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (ch == 'h' || ch == '?')
            return cli_usage(print_import_usage, ch == 'h');
        to = optarg;
    }
    if (optind != argc - 1 || !to)
        return cli_usage(print_import_usage, 0);
    file = argv[optind];
    in = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    if (!in) {
        fprintf(stderr, "ringkeep checkpoint import: cannot open %s: %s\n", file, strerror(errno));
        return 1;
    }
    /* each round reads one line or ends: bounded by the file */
    while ((len = getline(&line, &line_cap, in)) >= 0) {
        line_no++;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        if (parse_line(&im, line, (size_t)len, line_no, why, sizeof why) != 0) {
            fprintf(stderr, "ringkeep checkpoint import: %s:%" PRIu64 ": %s; nothing imported\n", file,
                    line_no, why);
            goto out;
        }
    }
    if (ferror(in)) {
        fprintf(stderr, "ringkeep checkpoint import: cannot read %s: %s\n", file, strerror(errno));
        goto out;
    }
    if (restore_import(to, im.entries, im.n, path, sizeof path, &info, err, sizeof err) != 0) {
        fprintf(stderr, "ringkeep checkpoint import: %s%s%s; nothing imported\n",
                strncmp(err, "line ", 5) == 0 ? file : "", strncmp(err, "line ", 5) == 0 ? ": " : "", err);
        goto out;
    }
    printf("import: %s: %" PRIu64 " entries in %" PRIu32 " tables, digest %016" PRIx64 ", checkpoint %s\n",
           to, info.n_entries, info.n_tables, info.digest, path);
    rc = 0;
out:
    ckpt_info_free(&info);
    import_free(&im);
    free(line);
    if (in && in != stdin)
        fclose(in);
    return rc;
}
