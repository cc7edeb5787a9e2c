/* util.c -- what every `ringkeep` subcommand shares: the configuration
 * loader, JSON and byte printing, the usage/exit-status rule and the size
 * parser.  main.c dispatches to the cmd_*.c files; they call in here, never
 * back into main.c.  Single-threaded, like the whole command. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/util.h"
#include "persist/config.h"

struct node_config *cli_load_config(const char *prog, const char *file)
{
    struct node_config *c = malloc(sizeof *c);
    char err[1024] = "";

    if (!c) {
        fprintf(stderr, "ringkeep %s: out of memory\n", prog);
        return NULL;
    }
    node_config_defaults(c);
    if (node_config_load(file, c, err, sizeof err) != 0) {
        fprintf(stderr, "ringkeep %s: %s\n", prog, err);
        free(c);
        return NULL;
    }
    return c;
}

int cli_print_json(json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    int rc = text ? 0 : 1;

    if (text)
        printf("%s\n", text);
    else
        fprintf(stderr, "ringkeep: cannot write the JSON (out of memory)\n");
    free(text);
    json_decref(v);
    return rc;
}

void cli_print_bytes(FILE *out, const void *s, size_t n)
{
    const unsigned char *c = s;

    for (size_t i = 0; i < n; i++) {
        if (c[i] < 0x20 || c[i] == 0x7f || c[i] == '\\')
            fprintf(out, "\\x%02x", c[i]);
        else
            fputc(c[i], out);
    }
}

int cli_usage(void (*print_usage)(FILE *out), int help)
{
    print_usage(help ? stdout : stderr);
    return help ? 0 : 2;
}

int cli_parse_size(const char *s, unsigned long long *out)
{
    char *end = NULL;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10;
        end++;
        break;
    case 'm':
    case 'M':
        v <<= 20;
        end++;
        break;
    case 'g':
    case 'G':
        v <<= 30;
        end++;
        break;
    default:
        break;
    }
    if (*end)
        return -1;
    *out = v;
    return 0;
}
