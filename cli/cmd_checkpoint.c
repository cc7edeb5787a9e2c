/* cmd_checkpoint.c -- `ringkeep checkpoint list|verify|export` (import: cmd_import.c): offline
 * inspection of checkpoint files (persist/checkpoint.c), no node needed.
 *
 * Design: every command verifies a file completely (ckpt_verify: trailer,
 * header, every frame and entry, the digest) before it reports anything as
 * good, and export writes nothing of a file that fails: the verifier hands
 * entries out only once the whole file has passed.  Export's encoding is
 * in the usage text; the encoder here is its definition.
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
#include <sys/stat.h>
#include <time.h>

#include "persist/checkpoint.h"
#include "cli/cli.h"
#include "cli/util.h"
#include "persist/config.h"
#include "persist/json_bytes.h"
#include "node/client.h"

static void print_checkpoint_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep checkpoint create [-d|--data-dir DATA_DIR | -c|--config FILE]\n"
            "           ask the node running on DATA_DIR for a checkpoint now; prints its file (when\n"
            "           nothing was applied since the newest checkpoint, that one, and says so on stderr)\n"
            "       ringkeep checkpoint list [-d|--data-dir DATA_DIR | -c|--config FILE] [--json]\n"
            "           every checkpoint of DATA_DIR/checkpoints, newest first, each verified in full:\n"
            "           journal seq, LSN, epoch, creation time, size, entries, digest, producer heights,\n"
            "           verified yes/no (exit 1 if any file fails); --json adds the epoch history\n"
            "       ringkeep checkpoint verify (FILE... | --all [-d|--data-dir DATA_DIR | -c|--config FILE])\n"
            "           verify offline; one line per file: 'PATH: ok ...' (with its epoch and the epoch\n"
            "           history it carries) or 'PATH: BAD: reason'\n"
            "           exit 0 when every file is good, 1 otherwise\n"
            "       ringkeep checkpoint export FILE\n"
            "           verify FILE, then write its entries to stdout as JSON lines, in file order:\n"
            "             {\"table\":T,\"key\":K,\"value\":V}\n"
            "           each of T, K, V is a JSON string when its bytes are printable UTF-8 (valid,\n"
            "           shortest-form UTF-8 with no code point below U+0020, no U+007F..U+009F;\n"
            "           '\"' and '\\' escaped, nothing else), otherwise an object\n"
            "           {\"base64\":\"...\"} holding the bytes in standard base64 (RFC 4648, with\n"
            "           padding); empty bytes are \"\".  Nothing is written if FILE fails to verify.\n"
            "       ringkeep checkpoint import FILE --to DIR\n"
            "           the reverse: a new data directory DIR holding exactly the entries of FILE (JSON\n"
            "           lines as export writes them; - is stdin), as its checkpoint\n"
            "           DIR/checkpoints/00000000000000000000.rkcp; a bad line is refused naming it\n"
            "       ringkeep checkpoint [COMMAND] --help\n");
}

static int checkpoint_usage(void)
{
    return cli_usage(print_checkpoint_usage, 0);
}

/* The checkpoint folder named by -d DATA_DIR or -c FILE (the node's
 * configuration); 0, or 2 after printing why. */
static int resolve_dir(const char *data_dir, const char *config, char *out, size_t out_size)
{
    struct node_config *c = NULL;
    int rc = 0;

    if (data_dir && config)
        return checkpoint_usage();
    if (config) {
        c = cli_load_config("checkpoint", config);
        if (!c)
            return 2;
        data_dir = c->data_dir;
    }
    if (!data_dir || !data_dir[0]) {
        rc = checkpoint_usage();
        goto out;
    }
    snprintf(out, out_size, "%s/checkpoints", data_dir);
out:
    free(c);
    return rc;
}

static uint64_t file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* ------------------------------------------------------------ list */

/* The epoch history a checkpoint carries (format 1.2), as text on out. */
static void print_history(FILE *out, const struct ckpt_info *in)
{
    if (!in->n_history) {
        fprintf(out, "none (format %u.%u)", in->major, in->minor);
        return;
    }
    for (uint32_t i = 0; i < in->n_history; i++)
        fprintf(out, "%sepoch %" PRIu64 " from seq %" PRIu64 " LSN %" PRIu64, i ? "; " : "",
                in->history[i].epoch, in->history[i].first_seq, in->history[i].first_lsn);
}

/* The same as JSON: [[epoch, first_seq, first_lsn], ...] (new reference). */
static json_t *history_json(const struct ckpt_info *in)
{
    json_t *list = json_array();

    for (uint32_t i = 0; list && i < in->n_history; i++)
        if (json_array_append_new(list, json_pack("[o, o, o]", json_uint(in->history[i].epoch),
                                                  json_uint(in->history[i].first_seq),
                                                  json_uint(in->history[i].first_lsn))) != 0) {
            json_decref(list);
            list = NULL;
        }
    return list;
}

static void list_text(const char *path, const struct ckpt_info *in, int verified, const char *why)
{
    char when[32];

    cli_format_time(in->created_ns, when, sizeof when);
    printf("%-20" PRIu64 " %-12" PRIu64 " %-5" PRIu64 " %-20s %-12" PRIu64 " %-10" PRIu64 " %016" PRIx64
           " %-3s ",
           in->journal_seq, in->lsn, in->epoch, in->created_ns ? when : "-", file_size(path), in->n_entries,
           in->digest, verified ? "yes" : "no");
    for (uint32_t i = 0; i < in->n_producers; i++) {
        printf("%s", i ? "," : "");
        cli_print_bytes(stdout, in->producers[i].name, strlen(in->producers[i].name));
        printf("=%" PRIu64, in->producers[i].height);
    }
    printf("%s\n", in->n_producers ? "" : "-");
    if (!verified)
        printf("    %s\n", why);
}

/* One checkpoint as a JSON object (new reference; NULL when out of memory). */
static json_t *list_json(const char *path, const struct ckpt_info *in, int verified, const char *why)
{
    json_t *heights = json_object(), *obj;
    char when[32], digest[17], format[24];

    if (in->major == 0) /* not even the header could be read */
        return json_pack("{s:o, s:o, s:o, s:b, s:o}", "path", json_cstr(path), "journal_seq",
                         json_uint(in->journal_seq), "size", json_uint(file_size(path)), "verified", 0,
                         "error", json_cstr(why));
    cli_format_time(in->created_ns, when, sizeof when);
    snprintf(digest, sizeof digest, "%016" PRIx64, in->digest);
    snprintf(format, sizeof format, "%u.%u", in->major, in->minor);
    /* producer names are bytes: a name that is not UTF-8 becomes its key
     * in base64 (Jansson keys must be UTF-8) */
    for (uint32_t i = 0; heights && i < in->n_producers; i++) {
        const char *name = in->producers[i].name;
        json_t *key = json_cstr(name);
        const char *k = json_is_string(key) ? name : json_string_value(json_object_get(key, "base64"));
        if (!k || json_object_set_new(heights, k, json_uint(in->producers[i].height)) != 0) {
            json_decref(heights);
            heights = NULL;
        }
        json_decref(key);
    }
    /* "o" steals its reference, even when json_pack fails */
    obj = json_pack("{s:o, s:o, s:o, s:o, s:o, s:s, s:o, s:o, s:s, s:s, s:o, s:b}", "path", json_cstr(path),
                    "journal_seq", json_uint(in->journal_seq), "lsn", json_uint(in->lsn), "epoch",
                    json_uint(in->epoch), "created_ns", json_uint(in->created_ns), "created", when, "size",
                    json_uint(file_size(path)), "entries", json_uint(in->n_entries), "digest", digest,
                    "format", format, "heights", heights, "verified", verified);
    if (obj && json_object_set_new(obj, "history", history_json(in)) != 0) {
        json_decref(obj);
        obj = NULL;
    }
    if (obj && !verified && json_object_set_new(obj, "error", json_cstr(why)) != 0) {
        json_decref(obj);
        obj = NULL;
    }
    return obj;
}

static int list_cmd(const char *dir, int json)
{
    char **paths = NULL, err[1024];
    size_t n = 0;
    int rc = ckpt_list(dir, &paths, &n), n_bad = 0;
    json_t *list = NULL;

    if (rc) {
        fprintf(stderr, "ringkeep checkpoint: cannot list %s: %s\n", dir, rc > 0 ? strerror(rc) : "invalid");
        return 1;
    }
    if (json)
        list = json_array();
    else
        printf("%-20s %-12s %-5s %-20s %-12s %-10s %-16s %-3s %s\n", "SEQ", "LSN", "EPOCH", "CREATED", "SIZE",
               "ENTRIES", "DIGEST", "OK", "HEIGHTS");
    for (size_t i = 0; i < n; i++) {
        struct ckpt_info in;
        int verified = ckpt_verify(paths[i], &in, NULL, NULL, err, sizeof err) == 0;

        /* a file that fails: show what its header says, if it says anything */
        if (!verified && ckpt_read_info(paths[i], &in, NULL, 0) != 0) {
            memset(&in, 0, sizeof in);
            in.journal_seq = strtoull(strrchr(paths[i], '/') + 1, NULL, 10);
        }
        n_bad += !verified;
        if (json && list && json_array_append_new(list, list_json(paths[i], &in, verified, err)) != 0) {
            json_decref(list);
            list = NULL;
        } else if (!json) {
            list_text(paths[i], &in, verified, err);
        }
        ckpt_info_free(&in);
    }
    if (json && cli_print_json(list) != 0)
        n_bad++;
    ckpt_list_free(paths, n);
    return n_bad ? 1 : 0;
}

/* ------------------------------------------------------------ verify */

static int verify_one(const char *path)
{
    char err[1024] = "";
    struct ckpt_info in;
    int rc = ckpt_verify(path, &in, NULL, NULL, err, sizeof err);

    if (rc) {
        /* err names the path already */
        printf("%s: BAD: %s\n", path, strncmp(err, path, strlen(path)) == 0 ? err + strlen(path) + 2 : err);
        return 1;
    }
    printf("%s: ok (format %u.%u, journal seq %" PRIu64 ", LSN %" PRIu64 ", %" PRIu64 " entries in %" PRIu32
           " tables, digest %016" PRIx64 "), epoch %" PRIu64 ", epoch history: ",
           path, in.major, in.minor, in.journal_seq, in.lsn, in.n_entries, in.n_tables, in.digest, in.epoch);
    print_history(stdout, &in);
    printf("\n");
    ckpt_info_free(&in);
    return 0;
}

/* ------------------------------------------------------------ export */

static int export_entry(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                        uint32_t vlen)
{
    FILE *out = arg;
    /* "o" steals its reference, even when json_pack fails */
    json_t *obj = json_pack("{s:o, s:o, s:o}", "table", cli_export_bytes((const uint8_t *)table, strlen(table)),
                            "key", cli_export_bytes(key, klen), "value", cli_export_bytes(val, vlen));
    int rc = obj ? json_dumpf(obj, out, JSON_COMPACT) : -1;

    json_decref(obj);
    if (!obj)
        return ENOMEM;
    if (rc != 0 || fputc('\n', out) == EOF || ferror(out))
        return EIO;
    return 0;
}

static int export_cmd(const char *path)
{
    char err[1024] = "";
    int rc = ckpt_verify(path, NULL, export_entry, stdout, err, sizeof err);

    if (rc == 0 && fflush(stdout) != 0)
        rc = errno ? errno : EIO;
    if (rc == EIO && !err[0])
        snprintf(err, sizeof err, "cannot write the export: %s", strerror(EIO));
    if (rc) {
        fprintf(stderr, "ringkeep checkpoint export: %s\n", err[0] ? err : strerror(rc > 0 ? rc : EIO));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ create */

/* The identity (device, inode) of every checkpoint file in dir, in a
 * malloc'd *out; how many (0 when none, or when dir cannot be listed). */
static size_t files_of(const char *dir, struct stat **out)
{
    char **paths = NULL;
    size_t n = 0, n_out = 0;

    *out = NULL;
    if (ckpt_list(dir, &paths, &n) != 0)
        return 0;
    if (n && (*out = malloc(n * sizeof **out)))
        for (size_t i = 0; i < n; i++)
            n_out += stat(paths[i], &(*out)[n_out]) == 0;
    ckpt_list_free(paths, n);
    return n_out;
}

/* path is one of the files files_of saw. */
static int existed(const char *path, const struct stat *before, size_t n)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (before[i].st_dev == st.st_dev && before[i].st_ino == st.st_ino)
            return 1;
    return 0;
}

/* ------------------------------------------------------------ dispatch */

/* `ringkeep checkpoint ...`: argv[0] is "checkpoint".  Exit status 0, 1
 * (a file is bad or cannot be read), 2 (usage).  (Declared in cli.h too.) */
int cmd_checkpoint(int argc, char **argv);

int cmd_checkpoint(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, 'd'}, {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},           {"all", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    const char *data_dir = NULL, *config = NULL;
    char dir[4200];
    int json = 0, all = 0, n_files = 0, rc, ch;

    if (argc < 2)
        return checkpoint_usage();
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)
        return cli_usage(print_checkpoint_usage, 1);
    if (strcmp(argv[1], "import") == 0)
        return cmd_checkpoint_import(argc - 1, argv + 1);
    /* argv[1] is the command: getopt_long starts after it */
    optind = 0;
    while ((ch = getopt_long(argc - 1, argv + 1, "d:c:", opts, NULL)) != -1) {
        if (ch == 'h' || ch == '?')
            return cli_usage(print_checkpoint_usage, ch == 'h');
        if (ch == 'd')
            data_dir = optarg;
        else if (ch == 'c')
            config = optarg;
        else if (ch == 'j')
            json = 1;
        else
            all = 1;
    }
    char **files = argv + 1 + optind;
    n_files = argc - 1 - optind;
    if (strcmp(argv[1], "export") == 0) {
        if (n_files != 1 || json || all || data_dir || config)
            return checkpoint_usage();
        return export_cmd(files[0]);
    }
    if (strcmp(argv[1], "create") == 0) {
        char *reply = NULL;
        struct stat *before = NULL;
        size_t n_before = 0;
        if (json || all || n_files)
            return checkpoint_usage();
        rc = resolve_dir(data_dir, config, dir, sizeof dir);
        if (rc)
            return rc;
        /* the files there now: an answer among them is not a new checkpoint */
        n_before = files_of(dir, &before);
        dir[strlen(dir) - strlen("/checkpoints")] = '\0'; /* the data directory */
        rc = node_request(dir, "checkpoint", 600000, &reply);
        if (rc) {
            free(before);
            return cli_no_answer("checkpoint", dir, rc);
        }
        if (strncmp(reply, "ok ", 3) == 0) {
            if (existed(reply + 3, before, n_before))
                fprintf(stderr,
                        "ringkeep checkpoint: nothing new was applied since the last checkpoint: "
                        "returning the existing checkpoint %s\n",
                        reply + 3);
            printf("%s\n", reply + 3);
        } else {
            fprintf(stderr, "ringkeep checkpoint: the node could not take a checkpoint: %s\n", reply);
        }
        rc = strncmp(reply, "ok ", 3) == 0 ? 0 : 1;
        free(reply);
        free(before);
        return rc;
    }
    if (strcmp(argv[1], "list") == 0) {
        if (all || n_files)
            return checkpoint_usage();
        rc = resolve_dir(data_dir, config, dir, sizeof dir);
        return rc ? rc : list_cmd(dir, json);
    }
    if (strcmp(argv[1], "verify") == 0) {
        int n_bad = 0;

        if (json || all == (n_files > 0) || (!all && (data_dir || config)))
            return checkpoint_usage();
        if (all) {
            char **paths = NULL;
            size_t n = 0;

            rc = resolve_dir(data_dir, config, dir, sizeof dir);
            if (rc)
                return rc;
            rc = ckpt_list(dir, &paths, &n);
            if (rc) {
                fprintf(stderr, "ringkeep checkpoint: cannot list %s: %s\n", dir,
                        rc > 0 ? strerror(rc) : "invalid");
                return 1;
            }
            if (n == 0)
                fprintf(stderr, "ringkeep checkpoint: no checkpoints in %s\n", dir);
            for (size_t i = 0; i < n; i++)
                n_bad += verify_one(paths[i]);
            ckpt_list_free(paths, n);
        } else {
            for (int i = 0; i < n_files; i++)
                n_bad += verify_one(files[i]);
        }
        return n_bad ? 1 : 0;
    }
    return checkpoint_usage();
}
