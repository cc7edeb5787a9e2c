/* cmd_top.c -- `ringkeep top (-c FILE | -d DATA_DIR) [--count N]
 * [--interval SECONDS]`: the node's key figures, refreshed once per
 * interval, as `redis-cli --stat` shows a Redis server's.
 *
 * Design: it asks the node for its status (the control endpoint, as
 * `ringkeep status` does) once per interval and prints one line of
 * figures; rates (records/s, batches/s) are the difference between two
 * answers over the time between them, so the first line comes one interval
 * after the start.  On a terminal the line is rewritten in place (a
 * header, then "\r" and erase-line); otherwise every line is printed on
 * its own (a log, a pipe, a test).  The header is printed again when the
 * role changes (a promotion).  --count bounds the lines; SIGINT ends it
 * cleanly.  A node that stops answering gives a line saying so, and the
 * next answer carries on.
 *
 * Threads: one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "node/client.h"
#include "persist/config.h"
#include "ringkeep.h"

#define TOP_REQUEST_MS 2000 /* a status request waits this long for the node */

static volatile sig_atomic_t top_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    top_interrupted = 1;
}

static void top_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep top (-c|--config FILE | -d|--data-dir DATA_DIR) [--count N] [--interval SECONDS]\n"
            "  the key figures of the node running on DATA_DIR (or the one FILE configures),\n"
            "  refreshed every interval (default 1 s, at least 0.01): in place on a terminal, one\n"
            "  line per interval otherwise.  Rates are over the last interval.  --count N stops\n"
            "  after N lines (default: until Ctrl-C).  Exit 3 when no node runs there.\n"
            "  A primary's columns: records journaled since it started and per second, batches\n"
            "  (fsynced journal commits) per second, ring fill, bytes written to the ring and not\n"
            "  yet durable, journal entries not yet applied, standbys and the largest standby lag\n"
            "  (entries), checkpoints taken.  A standby's: journal entries held and applied, records\n"
            "  applied per second, entries behind the primary and for how long, connected,\n"
            "  checkpoints taken.\n");
}

/* A status answer, parsed, with the time it came. */
struct sample {
    json_t *st;
    double t; /* CLOCK_MONOTONIC, seconds */
};

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The rate of member name between two samples, per second ("-" when
 * there is no earlier one, or the counter went back: a restart). */
static void rate(char *buf, size_t size, const struct sample *was, const struct sample *now, const char *name)
{
    uint64_t a = was->st ? cli_json_u64(was->st, name) : 0, b = cli_json_u64(now->st, name);
    double dt = now->t - was->t;

    if (!was->st || b < a || dt <= 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.0f", (double)(b - a) / dt);
}

/* Bytes in a few characters: 512B, 12.5K, 3.0M, 1.2G. */
static void bytes(char *buf, size_t size, uint64_t v)
{
    if (v < 1024)
        snprintf(buf, size, "%" PRIu64 "B", v);
    else if (v < 1024 * 1024)
        snprintf(buf, size, "%.1fK", (double)v / 1024);
    else if (v < 1024ull * 1024 * 1024)
        snprintf(buf, size, "%.1fM", (double)v / (1024 * 1024));
    else
        snprintf(buf, size, "%.1fG", (double)v / (1024.0 * 1024 * 1024));
}

#define PRIMARY_HEADER                                                                                         \
    "role     epoch      records    rec/s  batch/s  ring_fill  durable_lag  apply_lag  standbys  sb_lag  ckpts"
#define STANDBY_HEADER                                                                                         \
    "role     epoch      journal      applied    rec/s      lag   lag_ms  connected  ckpts"

/* The line of figures for now (was: the sample before, st NULL: none). */
static void figures(char *line, size_t size, const struct sample *was, const struct sample *now, int standby)
{
    const json_t *st = now->st;
    char r[32], b[32], fill[32], lag[32], sb_lag[32];

    if (standby) {
        rate(r, sizeof r, was, now, "records");
        snprintf(line, size,
                 "%-8s %5" PRIu64 " %12" PRIu64 " %12" PRIu64 " %8s %8" PRIu64 " %8" PRIu64 " %10s %6" PRIu64,
                 "standby", cli_json_u64(st, "epoch"), cli_json_u64(st, "journal_seq"),
                 cli_json_u64(st, "applied_seq"), r, cli_json_u64(st, "lag_entries"),
                 cli_json_u64(st, "lag_ms"), cli_json_u64(st, "connected") ? "yes" : "no",
                 cli_json_u64(st, "checkpoints_taken"));
        return;
    }
    rate(r, sizeof r, was, now, "records");
    rate(b, sizeof b, was, now, "batches");
    uint64_t capacity = cli_json_u64(st, "ring_capacity");
    snprintf(fill, sizeof fill, "%.1f%%",
             capacity ? 100.0 * (double)cli_json_u64(st, "ring_fill") / (double)capacity : 0);
    bytes(lag, sizeof lag, cli_json_u64(st, "durable_lag_bytes"));
    const json_t *list = json_object_get(st, "standbys"), *s;
    uint64_t max_lag = 0;
    size_t i;
    json_array_foreach(list, i, s)
    {
        if (cli_json_u64(s, "lag_entries") > max_lag)
            max_lag = cli_json_u64(s, "lag_entries");
    }
    if (json_array_size(list))
        snprintf(sb_lag, sizeof sb_lag, "%" PRIu64, max_lag);
    else
        snprintf(sb_lag, sizeof sb_lag, "-");
    snprintf(line, size, "%-8s %5" PRIu64 " %12" PRIu64 " %8s %8s %10s %12s %10" PRIu64 " %9zu %7s %6" PRIu64,
             "primary", cli_json_u64(st, "epoch"), cli_json_u64(st, "records"), r, b, fill, lag,
             cli_json_u64(st, "apply_lag_entries"), json_array_size(list), sb_lag,
             cli_json_u64(st, "checkpoints_taken"));
}

/* Asks the node on dir for its status into *s; 0, or the error. */
static int take_sample(const char *dir, struct sample *s)
{
    int rc;

    s->st = cli_node_json(dir, "status", TOP_REQUEST_MS, &rc);
    s->t = monotonic_s();
    return rc;
}

/* Sleeps seconds, or until SIGINT. */
static void pause_for(double seconds)
{
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};

    if (!top_interrupted)
        nanosleep(&ts, NULL); /* EINTR: SIGINT, looked at by the caller */
}

int cmd_top(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"data-dir", required_argument, NULL, 'd'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"interval", required_argument, NULL, 'i'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct node_config *c = NULL;
    const char *dir = NULL, *file = NULL;
    unsigned long long count = 0;
    double interval = 1.0;
    char *end = NULL, line[256];
    struct sample was = {0}, now = {0};
    struct sigaction sa = {.sa_handler = on_sigint};
    int ch, rc = 0, tty = isatty(STDOUT_FILENO), shown_role = -1;

    optind = 0;
    while ((ch = getopt_long(argc, argv, "c:d:n:i:", opts, NULL)) != -1) {
        if (ch == 'h' || ch == '?')
            return cli_usage(top_usage, ch == 'h');
        if (ch == 'c') {
            file = optarg;
        } else if (ch == 'd') {
            dir = optarg;
        } else if (ch == 'n') {
            errno = 0;
            count = strtoull(optarg, &end, 10);
            if (errno || *end || !count || optarg[0] == '-') {
                fprintf(stderr, "ringkeep top: --count %s: want a number of lines, 1 or more\n", optarg);
                return 2;
            }
        } else {
            interval = strtod(optarg, &end);
            if (*end || !(interval >= 0.01 && interval <= 3600)) {
                fprintf(stderr, "ringkeep top: --interval %s: want seconds, 0.01 to 3600\n", optarg);
                return 2;
            }
        }
    }
    if (optind < argc || !dir == !file)
        return cli_usage(top_usage, 0);
    if ((rc = cli_node_dir("top", file, &dir, &c, top_usage)) != 0)
        return rc;
    if ((rc = take_sample(dir, &was)) != 0) {
        free(c);
        return cli_no_answer("top", dir, rc);
    }
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: the pause ends at once */
    rc = 0;
    for (unsigned long long shown = 0; !top_interrupted && (!count || shown < count); shown++) {
        pause_for(interval);
        if (top_interrupted)
            break;
        int err = take_sample(dir, &now);
        if (err) {
            snprintf(line, sizeof line, "no answer from the node: %s", cli_no_answer_why(err));
        } else {
            const char *role = json_string_value(json_object_get(now.st, "role"));
            int standby = role && strcmp(role, "standby") == 0;
            /* a promotion changes the columns: their header again */
            if (standby != shown_role) {
                if (tty && shown_role >= 0)
                    putchar('\n');
                puts(standby ? STANDBY_HEADER : PRIMARY_HEADER);
                shown_role = standby;
            }
            /* a rate across a role change would compare different counters */
            const char *was_role = json_string_value(json_object_get(was.st, "role"));
            int same = was_role && role && strcmp(was_role, role) == 0;
            figures(line, sizeof line, same ? &was : &(struct sample){0}, &now, standby);
            json_decref(was.st);
            was = now;
            now.st = NULL;
        }
        if (tty)
            printf("\r\033[K%s", line);
        else
            printf("%s\n", line);
        fflush(stdout);
    }
    if (tty)
        putchar('\n');
    json_decref(was.st);
    free(c);
    return rc;
}
