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
#include "json_bytes.h"
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
        rc = print_status(reply);
    free(reply);
    free(c);
    return rc;
}
