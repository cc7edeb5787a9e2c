/* util.c -- what every `ringkeep` subcommand shares: the configuration
 * loader, JSON and byte printing, the usage/exit-status rule, the size
 * parser, and asking a running node (its status as JSON, waiting for it
 * to lead).  main.c dispatches to the cmd_*.c files; they call in here, never
 * back into main.c.  Single-threaded, like the whole command. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/util.h"
#include "node/client.h"
#include "persist/config.h"
#include "persist/json_bytes.h"
#include "ringkeep.h"

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

char *cli_escape(const void *s, size_t n, char *buf, size_t size)
{
    const unsigned char *c = s;
    size_t len = 0;

    for (size_t i = 0; i < n && size; i++) {
        int esc = c[i] < 0x20 || c[i] == 0x7f || c[i] == '\\';
        if (len + (esc ? 4 : 1) >= size)
            break;
        if (esc)
            len += (size_t)snprintf(buf + len, size - len, "\\x%02x", c[i]);
        else
            buf[len++] = (char)c[i];
    }
    if (size)
        buf[len] = '\0';
    return buf;
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

/* ------------------------------------------------------------ export */

/* Length of the valid, printable UTF-8 sequence at s[0..n), or 0. */
static size_t printable_char(const uint8_t *s, size_t n)
{
    uint32_t cp, min;
    size_t len;

    if (s[0] < 0x80)
        return s[0] >= 0x20 && s[0] != 0x7f;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2, cp = s[0] & 0x1f, min = 0x80;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3, cp = s[0] & 0x0f, min = 0x800;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4, cp = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
        return 0;
    return len;
}

static int is_printable(const uint8_t *s, size_t n)
{
    /* each step consumes at least one byte: bounded */
    for (size_t i = 0; i < n;) {
        size_t len = printable_char(s + i, n - i);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

json_t *cli_export_bytes(const uint8_t *s, size_t n)
{
    return is_printable(s, n) ? json_stringn((const char *)s, n) : json_base64(s, n);
}

void cli_format_time(uint64_t ns, char *buf, size_t size)
{
    time_t secs = (time_t)(ns / 1000000000u);
    struct tm tm;

    if (!gmtime_r(&secs, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "?");
}

/* ------------------------------------------------------------ a running node */

int cli_node_dir(const char *prog, const char *file, const char **dir, struct node_config **c,
                 void (*usage)(FILE *out))
{
    if (file) {
        if (!(*c = cli_load_config(prog, file)))
            return 2;
        *dir = (*c)->data_dir;
    }
    if (!(*dir)[0]) {
        free(*c);
        *c = NULL;
        return cli_usage(usage, 0);
    }
    return 0;
}

const char *cli_no_answer_why(int rc)
{
    return rc == ENOENT ? "no node is running on this data directory" : rk_strerror(rc);
}

int cli_no_answer(const char *prog, const char *dir, int rc)
{
    fprintf(stderr, "ringkeep %s: %s: %s\n", prog, dir, cli_no_answer_why(rc));
    return rc == ENOENT ? 3 : 1;
}

json_t *cli_node_json(const char *dir, const char *request, int timeout_ms, int *rc)
{
    char *reply = NULL;
    int err = node_request(dir, request, timeout_ms, &reply);
    json_t *v = err ? NULL : json_loads(reply, 0, NULL);

    if (!err && !json_is_object(v)) { /* a macro: its argument is evaluated twice */
        json_decref(v);
        v = NULL;
        err = RK_ECORRUPT;
    }
    free(reply);
    if (rc)
        *rc = err;
    return v;
}

uint64_t cli_json_u64(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    if (json_is_boolean(v))
        return json_is_true(v);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t)json_integer_value(v) : 0;
}

const char *cli_json_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s ? s : "";
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int cli_wait_primary(const char *dir, uint64_t was, unsigned timeout_ms, unsigned poll_us, char *role,
                     size_t role_size, uint64_t *epoch)
{
    uint64_t deadline = monotonic_ms() + timeout_ms;

    snprintf(role, role_size, "%s", "");
    *epoch = 0;
    for (;;) {
        json_t *st = cli_node_json(dir, "status", 1000, NULL);
        if (st) {
            snprintf(role, role_size, "%s", cli_json_str(st, "role"));
            *epoch = cli_json_u64(st, "epoch");
            json_decref(st);
            if (strcmp(role, "primary") == 0 && *epoch > was)
                return 0;
        }
        if (monotonic_ms() >= deadline)
            return -1;
        usleep(poll_us);
    }
}
