/* cmd_node.c -- `ringkeep node -c FILE [flags]` and `ringkeep status`.
 * Parses flags, loads and checks the configuration, then hands over to
 * repl_node_run() (replicator/primary.c: a primary, with or without
 * standbys to serve, or a standby).  Flags override the file. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "node.h"
#include "replicator.h"

static int node_usage(void)
{
    fprintf(stderr, "usage: ringkeep node -c FILE [--data-dir DIR] [--ring NAME] [--log-level LEVEL]\n"
                    "                     [--set SECTION.KEY=VALUE]...\n");
    return 2;
}

int cmd_node(int argc, char **argv)
{
    struct node_config *c = malloc(sizeof *c);
    char err[1024] = "";
    const char *file = NULL;
    int rc = 0;

    if (!c)
        return 1;
    node_config_defaults(c);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (i + 1 >= argc || argv[i][0] != '-') {
            free(c);
            return node_usage();
        } else {
            i++;
        }
    }
    if (file)
        rc = node_config_load(file, c, err, sizeof err);
    for (int i = 1; !rc && i < argc; i += 2) {
        const char *flag = argv[i], *value = argv[i + 1];
        char section[32], key[64];
        const char *dot, *eq;
        if (strcmp(flag, "-c") == 0)
            continue;
        if (strcmp(flag, "--data-dir") == 0)
            rc = node_config_set(c, "node", "data_dir", value, flag, err, sizeof err);
        else if (strcmp(flag, "--ring") == 0)
            rc = node_config_set(c, "ring", "name", value, flag, err, sizeof err);
        else if (strcmp(flag, "--log-level") == 0)
            rc = node_config_set(c, "node", "log_level", value, flag, err, sizeof err);
        else if (strcmp(flag, "--set") == 0 && (dot = strchr(value, '.')) && (eq = strchr(dot, '=')) &&
                 (size_t)(dot - value) < sizeof section && (size_t)(eq - dot - 1) < sizeof key) {
            snprintf(section, sizeof section, "%.*s", (int)(dot - value), value);
            snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
            rc = node_config_set(c, section, key, eq + 1, flag, err, sizeof err);
        } else {
            free(c);
            return node_usage();
        }
    }
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

/* Prints the node's flat JSON status object as "key  value" lines. */
static void print_status(const char *json)
{
    const char *p = strchr(json, '{');

    while (p && *p && *p != '}') {
        const char *k = strchr(p, '"'), *ke, *v, *ve;
        if (!k || !(ke = strchr(k + 1, '"')) || ke[1] != ':')
            break;
        v = ke + 2;
        if (*v == '"') {
            ve = strchr(v + 1, '"');
            if (!ve)
                break;
            printf("%-20.*s %.*s\n", (int)(ke - k - 1), k + 1, (int)(ve - v - 1), v + 1);
            ve++;
        } else {
            ve = v + strcspn(v, ",}");
            printf("%-20.*s %.*s\n", (int)(ke - k - 1), k + 1, (int)(ve - v), v);
        }
        p = ve;
    }
}

int cmd_status(int argc, char **argv)
{
    struct node_config *c = malloc(sizeof *c);
    const char *dir = NULL;
    char err[1024] = "", *reply = NULL;
    int json = 0, rc = 0;

    if (!c)
        return 1;
    node_config_defaults(c);
    for (int i = 1; !rc && i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            rc = node_config_load(argv[++i], c, err, sizeof err);
        else if ((strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--data-dir") == 0) && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: ringkeep status (-c FILE | -d DATA_DIR) [--json]\n");
            free(c);
            return 2;
        }
    }
    if (rc) {
        fprintf(stderr, "ringkeep status: %s\n", err);
        free(c);
        return 2;
    }
    if (!dir)
        dir = c->data_dir;
    if (!dir[0]) {
        fprintf(stderr, "usage: ringkeep status (-c FILE | -d DATA_DIR) [--json]\n");
        free(c);
        return 2;
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
        print_status(reply);
    free(reply);
    free(c);
    return 0;
}
