/* cmd_restore.c -- `ringkeep restore`: a new data directory from a stopped
 * node's checkpoint plus journal replay, to the latest point or a point in
 * time (persist/restore.c does the work; this parses, reports progress and
 * prints the summary).
 *
 * Progress goes to stderr about once a second; the summary line to stdout.
 * Threads: one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "persist/config.h"
#include "persist/restore.h"

static void print_restore_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep restore --to DIR (-d|--data-dir DATA_DIR | -c|--config FILE) [--checkpoint FILE]\n"
            "                        [--height PRODUCER:N | --seq S]\n"
            "  builds the new data directory DIR (it must not exist, or be empty) from the stopped\n"
            "  node's data directory DATA_DIR (or the one FILE configures): a checkpoint, then its\n"
            "  journal replayed up to the point:\n"
            "    (none)          every journal entry DATA_DIR holds\n"
            "    --seq S         the state after journal entry S is applied\n"
            "    --height P:N    the state right after producer P's MARK with height N: every group\n"
            "                    whose MARK comes at or before it; groups still open there are not applied\n"
            "  The checkpoint is the newest of DATA_DIR/checkpoints that verifies and is at or before\n"
            "  the point (a newer one that fails verification is passed over, and said so), or FILE.\n"
            "  A node started on DIR serves exactly that state.  Exit 0 done, 1 failed, 2 usage.\n");
}

struct progress {
    struct timespec last;
};

static double since(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static int on_progress(void *arg, enum restore_phase phase, uint64_t done, uint64_t total)
{
    static const char *const what[] = {"scanned journal entry", "loaded", "copied journal entry",
                                       "replayed journal entry"};
    struct progress *p = arg;

    if (since(&p->last) < 1.0)
        return 0; /* about one line a second */
    clock_gettime(CLOCK_MONOTONIC, &p->last);
    fprintf(stderr, "restore: %s %" PRIu64 "/%" PRIu64 "%s\n", what[phase], done, total,
            phase == RESTORE_LOADING ? " entries" : "");
    return 0;
}

static void on_notice(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "restore: %s\n", msg);
}

/* "P:N" -> producer and height (the name may itself hold ':'; the last one
 * separates). */
static int parse_height(char *arg, const char **producer, uint64_t *height)
{
    char *colon = strrchr(arg, ':'), *end = NULL;

    if (!colon || colon == arg || !colon[1] || colon - arg > RK_NAME_MAX)
        return -1;
    errno = 0;
    *height = strtoull(colon + 1, &end, 10);
    if (errno || *end || colon[1] == '-')
        return -1;
    *colon = '\0';
    *producer = arg;
    return 0;
}

int cmd_restore(int argc, char **argv)
{
    struct restore_opts o = {.target = RESTORE_LATEST, .progress = on_progress, .notice = on_notice};
    struct restore_result res = {0};
    struct progress pr = {{0}};
    struct node_config *c = NULL;
    const char *config = NULL;
    char err[2048] = "";
    double secs;
    int rc, ch;
    static const struct option opts[] = {
        {"to", required_argument, NULL, 't'},     {"data-dir", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'}, {"checkpoint", required_argument, NULL, 'k'},
        {"height", required_argument, NULL, 'H'}, {"seq", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};

    optind = 0;
    while ((ch = getopt_long(argc, argv, "d:c:", opts, NULL)) != -1) {
        char *end = NULL;
        if (ch == 'h' || ch == '?')
            return cli_usage(print_restore_usage, ch == 'h');
        if (ch == 't') {
            o.to_dir = optarg;
        } else if (ch == 'd') {
            o.src_dir = optarg;
        } else if (ch == 'c') {
            config = optarg;
        } else if (ch == 'k') {
            o.checkpoint = optarg;
        } else if (o.target != RESTORE_LATEST) { /* --height and --seq: one of them, once */
            return cli_usage(print_restore_usage, 0);
        } else if (ch == 'H') {
            o.target = RESTORE_HEIGHT;
            if (parse_height(optarg, &o.producer, &o.height) != 0) {
                fprintf(stderr, "ringkeep restore: --height %s: want PRODUCER:N (N a height)\n", optarg);
                return 2;
            }
        } else {
            o.target = RESTORE_SEQ;
            errno = 0;
            o.seq = strtoull(optarg, &end, 10);
            if (errno || *end || optarg[0] == '-' || !optarg[0]) {
                fprintf(stderr, "ringkeep restore: --seq %s: want a journal sequence number\n", optarg);
                return 2;
            }
        }
    }
    if (optind < argc)
        return cli_usage(print_restore_usage, 0);
    if (!o.to_dir || (o.src_dir && config) || (!o.src_dir && !config))
        return cli_usage(print_restore_usage, 0);
    if (config) {
        c = cli_load_config("restore", config);
        if (!c)
            return 2;
        o.src_dir = c->data_dir;
        o.cache_mb = c->cache_mb;
    }
    o.progress_arg = &pr;
    clock_gettime(CLOCK_MONOTONIC, &pr.last);
    struct timespec t0 = pr.last;
    rc = restore_run(&o, &res, err, sizeof err);
    secs = since(&t0);
    if (rc) {
        fprintf(stderr, "ringkeep restore: %s\n", err[0] ? err : rk_strerror(rc));
        free(c);
        return 1;
    }
    printf("restore: %s from checkpoint %s (format 1.%d, %" PRIu64 " entries", o.to_dir, res.checkpoint,
           res.checkpoint_minor, res.n_loaded);
    if (res.n_bad_checkpoints)
        printf(", %" PRIu32 " newer passed over: failed verification", res.n_bad_checkpoints);
    printf("), %" PRIu64 " journal entries replayed", res.n_replayed);
    if (res.first_seq)
        printf(" (copied %" PRIu64 "..%" PRIu64 ")", res.first_seq, res.last_seq);
    if (res.cut_lsn)
        printf(", last entry cut after LSN %" PRIu64 " (%" PRIu32 " frames dropped)", res.cut_lsn,
               res.n_frames_cut);
    printf(": journal seq %" PRIu64 ", LSN %" PRIu64 ", heights ", res.applied.applied_seq,
           res.applied.applied_lsn);
    for (uint32_t i = 0; i < res.n_producers; i++)
        printf("%s%s=%" PRIu64, i ? "," : "", res.producers[i].name, res.producers[i].height);
    printf("%s, %" PRIu64 " groups, digest %016" PRIx64 ", %.2f s\n", res.n_producers ? "" : "-",
           res.applied.n_groups, res.applied.digest, secs);
    printf("restore: a node on %s writes in epoch %" PRIu64 " (epoch history of %" PRIu32 ")\n", o.to_dir,
           res.epoch, res.n_history);
    restore_result_free(&res);
    free(c);
    return 0;
}
