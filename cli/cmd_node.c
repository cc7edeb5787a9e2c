/* cmd_node.c -- `ringkeep node -c FILE [flags]`, and the commands that ask
 * a running node over its control endpoint: `ringkeep status`, `ringkeep
 * promote`.  `node` parses flags, loads and checks the configuration, then
 * hands over to repl_node_run() (node/node.c: a primary, with or without
 * standbys to serve, or a standby), or node_promote() with --promote.
 * Flags override the file. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "persist/config.h"
#include "persist/json_bytes.h"
#include "node/client.h"
#include "node/node.h"
#include "ringkeep.h"

static void node_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep node [-c|--config FILE] [--data-dir DIR] [--ring NAME] [--log-level LEVEL]\n"
            "                     [--set SECTION.KEY=VALUE]... [--promote [--force]]\n"
            "  runs a node until SIGTERM: a primary drains the ring into its journal, applies it to\n"
            "  state and serves standbys; a standby ([node] role = standby) follows its primary.\n"
            "  FILE (INI, see config/primary.ini) is optional: the flags, applied over the file in\n"
            "  order, and the defaults can configure a node alone (--data-dir and --ring at least).\n"
            "  --promote: a standby's configuration, its standby stopped: start it as the primary, in\n"
            "  a new epoch, owning the ring its configuration names (see ringkeep promote).  Under\n"
            "  [ha] it is refused unless --force: etcd elects the primary; with --force the node takes\n"
            "  an epoch from etcd first, then the leader key when it is free, without the sync key's\n"
            "  quorum (what other standbys acknowledged may be lost).\n");
}

static const struct option node_opts[] = {{"config", required_argument, NULL, 'c'},
                                          {"data-dir", required_argument, NULL, 'd'},
                                          {"ring", required_argument, NULL, 'r'},
                                          {"log-level", required_argument, NULL, 'l'},
                                          {"set", required_argument, NULL, 's'},
                                          {"promote", no_argument, NULL, 'P'},
                                          {"force", no_argument, NULL, 'F'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};

/* One flag of `ringkeep node` onto c (-c excepted); 0 or non-zero with
 * the reason in err. */
static int node_flag(struct node_config *c, int ch, const char *flag, const char *value, char *err,
                     size_t err_size)
{
    char section[32], key[64];
    const char *dot, *eq;

    switch (ch) {
    case 'd':
        return node_config_set(c, "node", "data_dir", value, flag, err, err_size);
    case 'r':
        return node_config_set(c, "ring", "name", value, flag, err, err_size);
    case 'l':
        return node_config_set(c, "node", "log_level", value, flag, err, err_size);
    default: /* 's' */
        if (!(dot = strchr(value, '.')) || !(eq = strchr(dot, '=')) ||
            (size_t)(dot - value) >= sizeof section || (size_t)(eq - dot - 1) >= sizeof key) {
            snprintf(err, err_size, "--set %s: want SECTION.KEY=VALUE", value);
            return RK_EINVAL;
        }
        snprintf(section, sizeof section, "%.*s", (int)(dot - value), value);
        snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
        return node_config_set(c, section, key, eq + 1, flag, err, err_size);
    }
}

int cmd_node(int argc, char **argv)
{
    struct node_config *c = NULL;
    char err[1024] = "";
    const char *file = NULL;
    int rc = 0, ch, index, promote = 0, force = 0;

    /* first pass: -c, --promote, --help and bad options; the second
     * applies the flags over the file, in their order */
    optind = 0;
    while ((ch = getopt_long(argc, argv, "c:d:", node_opts, NULL)) != -1) {
        if (ch == 'h' || ch == '?')
            return cli_usage(node_usage, ch == 'h');
        if (ch == 'c')
            file = optarg;
        promote |= ch == 'P';
        force |= ch == 'F';
    }
    if (optind < argc) {
        fprintf(stderr, "ringkeep node: unexpected argument '%s'\n", argv[optind]);
        return cli_usage(node_usage, 0);
    }
    if (!(c = malloc(sizeof *c)))
        return 1;
    node_config_defaults(c);
    if (file)
        rc = node_config_load(file, c, err, sizeof err);
    optind = 0;
    while (!rc && (ch = getopt_long(argc, argv, "c:d:", node_opts, &index)) != -1)
        if (ch != 'c' && ch != 'P' && ch != 'F')
            rc = node_flag(c, ch, ch == 'd' ? "--data-dir" : node_opts[index].name, optarg, err, sizeof err);
    if (!rc)
        rc = node_config_check(c, err, sizeof err);
    if (rc) {
        fprintf(stderr, "ringkeep node: %s\n", err);
        free(c);
        return 2;
    }
    if (promote && strcmp(c->role, "standby") != 0) {
        fprintf(stderr, "ringkeep node: --promote is for a standby's configuration ([node] role = standby)\n");
        free(c);
        return 2;
    }
    if (force && !promote) {
        fprintf(stderr, "ringkeep node: --force is for --promote\n");
        free(c);
        return 2;
    }
    /* as `ringkeep promote` refuses it: a node promoted by hand begins an
     * epoch and takes the leader key without the sync key's quorum, so it
     * may lead without what the standbys of the last leader acknowledged */
    if (promote && !force && c->ha_etcd[0]) {
        fprintf(stderr,
                "ringkeep node: --promote: [ha] is set, etcd elects the primary: start the node without "
                "--promote and it is elected when it holds what was acknowledged; --force promotes it "
                "anyway (it leads once the leader key is free, without the sync key's quorum: what "
                "the other nodes acknowledged may be lost)\n");
        free(c);
        return 2;
    }
    rc = promote ? node_promote(c) : repl_node_run(c);
    free(c);
    return rc;
}

/* A status value as text: bytes (a string or {"base64"}) through
 * cli_print_bytes, anything else as compact JSON. */
static void print_value(const json_t *v)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    char *text = NULL;

    if (json_bytes_of(v, &bytes, &len) == 0) {
        cli_print_bytes(stdout, bytes, len);
    } else if ((text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY))) {
        fputs(text, stdout);
    }
    free(bytes);
    free(text);
}

/* Prints the node's status object as "key  value" lines; an array of
 * objects (a primary's standbys) as one indented line per element. */
static int print_status(const char *reply)
{
    json_error_t err;
    json_t *st = json_loads(reply, 0, &err), *v, *elem, *m;
    const char *key, *mkey;
    size_t i;

    if (!json_is_object(st)) {
        fprintf(stderr, "ringkeep status: the node's answer is not a JSON object: %s\n", reply);
        json_decref(st);
        return 1;
    }
    json_object_foreach(st, key, v)
    {
        printf("%-20s ", key);
        if (json_is_array(v)) {
            printf("%zu\n", json_array_size(v));
            json_array_foreach(v, i, elem)
            {
                printf("  ");
                if (json_is_object(elem))
                    json_object_foreach(elem, mkey, m)
                    {
                        printf(" %s=", mkey);
                        print_value(m);
                    }
                else
                    print_value(elem);
                putchar('\n');
            }
            continue;
        }
        print_value(v);
        putchar('\n');
    }
    json_decref(st);
    return 0;
}

static void status_usage(FILE *out)
{
    fprintf(out, "usage: ringkeep status (-c|--config FILE | -d|--data-dir DATA_DIR) [--json]\n"
                 "  asks the node running on DATA_DIR (or the one FILE configures) for its status: one\n"
                 "  \"key value\" line each, or with --json the node's JSON object.  Exit 3 when no node\n"
                 "  runs there.\n");
}

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"data-dir", required_argument, NULL, 'd'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct node_config *c = NULL;
    const char *dir = NULL, *file = NULL;
    char *reply = NULL;
    int json = 0, rc = 0, ch;

    optind = 0;
    while ((ch = getopt_long(argc, argv, "c:d:", opts, NULL)) != -1) {
        if (ch == 'h' || ch == '?')
            return cli_usage(status_usage, ch == 'h');
        if (ch == 'c')
            file = optarg;
        else if (ch == 'd')
            dir = optarg;
        else
            json = 1;
    }
    if (optind < argc || !dir == !file)
        return cli_usage(status_usage, 0);
    if ((rc = cli_node_dir("status", file, &dir, &c, status_usage)) != 0)
        return rc;
    rc = node_request(dir, "status", 5000, &reply);
    if (rc) {
        free(c);
        return cli_no_answer("status", dir, rc);
    }
    if (json)
        printf("%s\n", reply);
    else
        rc = print_status(reply);
    free(reply);
    free(c);
    return rc;
}

/* ------------------------------------------------------------ promote */

#define PROMOTE_WAIT_S 60
#define PROMOTE_POLL_MS 20

static void promote_usage(FILE *out)
{
    fprintf(out,
            "usage: ringkeep promote (-c|--config FILE | -d|--data-dir DATA_DIR) [--force] [--no-wait] [--timeout SECONDS]\n"
            "  asks the standby running on DATA_DIR to become the primary, in the same process: it\n"
            "  stops following, journals and applies all it holds, starts a new epoch (committed\n"
            "  first) and creates the ring its configuration names at its next LSN.  Engines then\n"
            "  restore with rk_state_open(DATA_DIR) and carry on from their height + 1.  Waits until\n"
            "  the node answers as a primary (default %d s; --no-wait: returns once the standby took\n"
            "  the request).  Refused when, by the primary's last heartbeat, another standby\n"
            "  acknowledged more than this one holds (it prints both): promote that one, or --force.\n"
            "  Exit 0 promoted, 1 refused or not done in time, 3 no node runs there.\n"
            "  A stopped standby is promoted at start: ringkeep node -c FILE --promote.\n",
            PROMOTE_WAIT_S);
}

/* Waits until the node on dir answers as a primary of an epoch above
 * was, and says so. */
static int promote_wait(const char *dir, uint64_t was, unsigned timeout_s)
{
    char role[16];
    uint64_t epoch;
    int rc = cli_wait_primary(dir, was, timeout_s * 1000u, PROMOTE_POLL_MS * 1000, role, sizeof role, &epoch);

    if (rc == 0) {
        printf("promoted: %s is the primary, epoch %llu\n", dir, (unsigned long long)epoch);
        return 0;
    }
    fprintf(stderr, "ringkeep promote: %s: not a primary after %u s (last seen: %s, epoch %llu); see the node's log\n",
            dir, timeout_s, role[0] ? role : "no answer", (unsigned long long)epoch);
    return 1;
}

int cmd_promote(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"data-dir", required_argument, NULL, 'd'},
                                         {"no-wait", no_argument, NULL, 'n'},
                                         {"force", no_argument, NULL, 'f'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct node_config *c = NULL;
    const char *dir = NULL, *file = NULL;
    char *reply = NULL, *end = NULL;
    json_t *st = NULL;
    uint64_t epoch = 0;
    unsigned long timeout_s = PROMOTE_WAIT_S;
    int wait = 1, force = 0, rc = 0, ch;

    optind = 0;
    while ((ch = getopt_long(argc, argv, "c:d:", opts, NULL)) != -1) {
        if (ch == 'h' || ch == '?')
            return cli_usage(promote_usage, ch == 'h');
        if (ch == 'c')
            file = optarg;
        else if (ch == 'd')
            dir = optarg;
        else if (ch == 'n')
            wait = 0;
        else if (ch == 'f')
            force = 1;
        else if ((timeout_s = strtoul(optarg, &end, 10)) == 0 || *end || timeout_s > 86400) {
            fprintf(stderr, "ringkeep promote: --timeout %s: want seconds, 1 to 86400\n", optarg);
            return 2;
        }
    }
    if (optind < argc || !dir == !file)
        return cli_usage(promote_usage, 0);
    if ((rc = cli_node_dir("promote", file, &dir, &c, promote_usage)) != 0)
        return rc;
    /* the epoch before: the promotion is done when the node is a primary
     * of a higher one */
    st = cli_node_json(dir, "status", 5000, &rc);
    if (st && !(json_is_string(json_object_get(st, "role")) && json_is_integer(json_object_get(st, "epoch"))))
        rc = RK_ECORRUPT;
    epoch = cli_json_u64(st, "epoch");
    json_decref(st);
    if (!rc)
        rc = node_request(dir, force ? "promote force" : "promote", 5000, &reply);
    if (rc) {
        rc = cli_no_answer("promote", dir, rc);
    } else if (strncmp(reply, "ok", 2) != 0) {
        fprintf(stderr, "ringkeep promote: %s: %s\n", dir, strncmp(reply, "error ", 6) == 0 ? reply + 6 : reply);
        rc = 1;
    } else {
        printf("%s: %s\n", dir, reply + (reply[2] == ' ' ? 3 : 2));
        fflush(stdout);
        if (wait)
            rc = promote_wait(dir, epoch, (unsigned)timeout_s);
    }
    free(reply);
    free(c);
    return rc;
}
