/* cmd_node.c -- `ringkeep node -c FILE [flags]` and `ringkeep status`.
 * Parses flags, loads and checks the configuration, then hands over to
 * repl_node_run() (node/node.c: a primary, with or without standbys to
 * serve, or a standby).  Flags override the file. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/util.h"
#include "persist/config.h"
#include "persist/json_bytes.h"
#include "node/client.h"
#include "node/node.h"
#include "ringkeep.h"

static void node_usage(FILE *out)
{
    fprintf(out, "usage: ringkeep node [-c FILE] [--data-dir DIR] [--ring NAME] [--log-level LEVEL]\n"
                 "                     [--set SECTION.KEY=VALUE]...\n"
                 "  runs a node until SIGTERM: a primary drains the ring into its journal, applies it to\n"
                 "  state and serves standbys; a standby ([node] role = standby) follows its primary.\n"
                 "  FILE (INI, see config/primary.ini) is optional: the flags, applied over the file in\n"
                 "  order, and the defaults can configure a node alone (--data-dir and --ring at least).\n");
}

static const struct option node_opts[] = {{"config", required_argument, NULL, 'c'},
                                          {"data-dir", required_argument, NULL, 'd'},
                                          {"ring", required_argument, NULL, 'r'},
                                          {"log-level", required_argument, NULL, 'l'},
                                          {"set", required_argument, NULL, 's'},
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
    int rc = 0, ch, index;

    /* first pass: -c, --help and bad options; the second applies the
     * flags over the file, in their order */
    optind = 0;
    while ((ch = getopt_long(argc, argv, "c:d:", node_opts, NULL)) != -1) {
        if (ch == 'h' || ch == '?')
            return cli_usage(node_usage, ch == 'h');
        if (ch == 'c')
            file = optarg;
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
        if (ch != 'c')
            rc = node_flag(c, ch, ch == 'd' ? "--data-dir" : node_opts[index].name, optarg, err, sizeof err);
    if (!rc)
        rc = node_config_check(c, err, sizeof err);
    if (rc) {
        fprintf(stderr, "ringkeep node: %s\n", err);
        free(c);
        return 2;
    }
    rc = repl_node_run(c);
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
    fprintf(out, "usage: ringkeep status (-c FILE | -d DATA_DIR) [--json]\n"
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
    if (file) {
        if (!(c = cli_load_config("status", file)))
            return 2;
        dir = c->data_dir;
    }
    if (!dir[0]) {
        free(c);
        return cli_usage(status_usage, 0);
    }
    rc = node_request(dir, "status", 5000, &reply);
    if (rc) {
        /* exit 3 as pg_ctl status does when no server runs */
        fprintf(stderr, "ringkeep status: %s: %s\n", dir,
                rc == ENOENT ? "no node is running on this data directory" : rk_strerror(rc));
        free(c);
        return rc == ENOENT ? 3 : 1;
    }
    if (json)
        printf("%s\n", reply);
    else
        rc = print_status(reply);
    free(reply);
    free(c);
    return rc;
}
