/* config.c -- the node's configuration: defaults, the INI file, overrides
 * and the final check.
 *
 * Design: one table (keys[]) lists every key with its section, kind, field,
 * range and default.  Defaults, the file, --set overrides and the check all
 * go through it, so a key is known, validated and defaulted in one place.
 * libinih parses the file; its handler sees no line number in this build
 * (INI_HANDLER_LINENO is 0), so node_config_load hands it lines through
 * read_line(), which counts them (inih takes one reader call per line, so
 * the count is the line the handler is being called for).  read_line() also
 * strips leading blanks, which turns off inih's continuation lines (an
 * indented "key = value" would otherwise be glued to the key above), and
 * refuses lines that inih would split (too long) or cut (a NUL byte).
 *
 * Errors: the first one wins, in line order.  inih's return value is the
 * first line that failed, syntax or handler; a line before the handler's
 * first error is therefore a syntax error.  The file is read into a copy,
 * so the caller's config changes only when the whole file is good.
 *
 * Threads: functions here touch only their arguments; call them from any
 * thread, on different structs. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <zmq.h>

#include "persist/config.h"
#include "persist/log.h"
#include "shm/segment.h"

#define KIB ((uint64_t)1 << 10)
#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)

enum key_kind {
    KEY_ROLE,      /* char[]: "primary" or "standby" */
    KEY_ENDPOINT,  /* char[CONFIG_ENDPOINT_MAX + 1]: "tcp://..." or "ipc://...", or empty */
    KEY_ENDPOINTS, /* char[CONFIG_ENDPOINT_MAX + 1]: 1..CONFIG_NODES_MAX endpoints, comma-separated, or empty
                    */
    KEY_Z85,       /* char[CONFIG_Z85_KEY + 1]: a CURVE key, 40 characters of Z85, or empty */
    KEY_LISTEN,    /* char[CONFIG_LISTEN_MAX + 1]: node_config_listen_addr() rules, or empty */
    KEY_FILE,      /* char[PATH_MAX]: a file's path, or empty */
    KEY_DIR,       /* char[PATH_MAX]: a path, checked by node_config_check */
    KEY_RING_NAME, /* char[RK_NAME_MAX + 1]: seg_check_name() rules */
    KEY_PRODUCER,  /* char[RK_NAME_MAX + 1]: a producer name, 1..RK_NAME_MAX bytes, or empty */
    KEY_URLS,      /* char[CONFIG_ENDPOINT_MAX + 1]: 1..CONFIG_NODES_MAX http:// URLs, comma-separated, or empty */
    KEY_HA_NAME,   /* char[RK_NAME_MAX + 1]: letters, digits, '.', '_', '-' (part of an etcd key), or empty */
    KEY_BOOL,      /* bool: yes/no, true/false, on/off, 1/0 */
    KEY_ON_HIGHER, /* bool: "rejoin" (true) or "exit" (false) */
    KEY_LOG_LEVEL, /* int: log_level_parse() */
    KEY_U32,       /* uint32_t: decimal in [min, max] */
    KEY_INT,       /* int: decimal in [min, max] */
    KEY_SIZE,      /* uint64_t: decimal with K/M/G (powers of 1024) in [min, max] */
};

struct key_spec {
    const char *section;
    const char *name;
    enum key_kind kind;
    size_t offset;     /* of the field in struct node_config */
    size_t size;       /* of the field */
    uint64_t min, max; /* numbers: the accepted range */
    bool power_of_two; /* numbers: only powers of two */
    const char *dflt;  /* the default, as it would be written in the file; NULL: none */
};

#define FIELD(f) offsetof(struct node_config, f), sizeof(((struct node_config *)0)->f)

static const struct key_spec keys[] = {
    {"node", "role", KEY_ROLE, FIELD(role), 0, 0, false, "primary"},
    {"node", "data_dir", KEY_DIR, FIELD(data_dir), 0, 0, false, NULL},
    {"node", "log_level", KEY_LOG_LEVEL, FIELD(log_level), 0, 0, false, "info"},
    {"ring", "name", KEY_RING_NAME, FIELD(ring_name), 0, 0, false, NULL},
    {"ring", "capacity", KEY_SIZE, FIELD(ring_capacity), 64 * KIB, 64 * GIB, true, "64M"},
    {"ring", "unblock_timeout_ms", KEY_U32, FIELD(unblock_timeout_ms), 10, 600000, false, "1000"},
    {"drain", "batch_records", KEY_U32, FIELD(batch_records), 1, 1000000, false, "8192"},
    {"drain", "batch_bytes", KEY_SIZE, FIELD(batch_bytes), 4 * KIB, 64 * MIB, false, "4M"},
    {"drain", "batch_time_us", KEY_U32, FIELD(batch_time_us), 0, 1000000, false, "1000"},
    {"drain", "zstd_level", KEY_INT, FIELD(zstd_level), 1, 19, false, "1"},
    {"apply", "max_lag_entries", KEY_U32, FIELD(max_lag_entries), 1, 1000000, false, "4096"},
    {"apply", "max_lag_bytes", KEY_SIZE, FIELD(max_lag_bytes), 0, 64 * GIB, false, "64M"},
    {"apply", "max_lag_ms", KEY_U32, FIELD(max_lag_ms), 0, 3600000, false, "1000"},
    {"storage", "cache_mb", KEY_U32, FIELD(cache_mb), 16, 65536, false, "1024"},
    {"checkpoint", "every_seconds", KEY_U32, FIELD(ckpt_every_seconds), 0, 86400, false, "60"},
    {"checkpoint", "every_records", KEY_SIZE, FIELD(ckpt_every_records), 0, 1000000000000ull, false, "0"},
    {"checkpoint", "keep", KEY_U32, FIELD(ckpt_keep), 1, 10000, false, "5"},
    {"checkpoint", "keep_hourly", KEY_U32, FIELD(ckpt_keep_hourly), 0, 24 * 366, false, "0"},
    {"checkpoint", "keep_daily", KEY_U32, FIELD(ckpt_keep_daily), 0, 3660, false, "0"},
    {"checkpoint", "every_heights", KEY_SIZE, FIELD(ckpt_every_heights), 0, UINT64_MAX / 2, false, "0"},
    {"checkpoint", "height_producer", KEY_PRODUCER, FIELD(ckpt_height_producer), 0, 0, false, ""},
    {"checkpoint", "trim_journal", KEY_BOOL, FIELD(trim_journal), 0, 0, false, "yes"},
    {"replication", "publish", KEY_ENDPOINT, FIELD(repl_publish), 0, 0, false, ""},
    {"replication", "serve", KEY_ENDPOINT, FIELD(repl_serve), 0, 0, false, ""},
    {"replication", "primary_publish", KEY_ENDPOINTS, FIELD(repl_primary_publish), 0, 0, false, ""},
    {"replication", "primary_serve", KEY_ENDPOINTS, FIELD(repl_primary_serve), 0, 0, false, ""},
    {"replication", "node_id", KEY_PRODUCER, FIELD(repl_node_id), 0, 0, false, ""},
    {"replication", "min_replicas", KEY_U32, FIELD(repl_min_replicas), 0, 64, false, "0"},
    {"replication", "heartbeat_ms", KEY_U32, FIELD(repl_heartbeat_ms), 10, 60000, false, "1000"},
    {"replication", "curve", KEY_BOOL, FIELD(curve), 0, 0, false, "no"},
    {"replication", "curve_secret_key", KEY_Z85, FIELD(curve_secret_key), 0, 0, false, ""},
    {"replication", "curve_public_key", KEY_Z85, FIELD(curve_public_key), 0, 0, false, ""},
    {"replication", "curve_server_key", KEY_Z85, FIELD(curve_server_key), 0, 0, false, ""},
    {"replication", "authorized_keys", KEY_FILE, FIELD(curve_authorized_keys), 0, 0, false, ""},
    {"replication", "insecure_acks", KEY_BOOL, FIELD(insecure_acks), 0, 0, false, "no"},
    {"replication", "on_higher_epoch", KEY_ON_HIGHER, FIELD(rejoin_on_higher_epoch), 0, 0, false, "exit"},
    {"ha", "etcd", KEY_URLS, FIELD(ha_etcd), 0, 0, false, ""},
    {"ha", "cluster", KEY_HA_NAME, FIELD(ha_cluster), 0, 0, false, ""},
    {"ha", "name", KEY_HA_NAME, FIELD(ha_name), 0, 0, false, ""},
    {"ha", "ttl_ms", KEY_U32, FIELD(ha_ttl_ms), 1000, 600000, false, "5000"},
    {"ha", "max_lag_entries", KEY_U32, FIELD(ha_max_lag_entries), 0, 1000000000, false, "100"},
    {"metrics", "listen", KEY_LISTEN, FIELD(metrics_listen), 0, 0, false, ""},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

#define WHY_SIZE 512 /* a reason, before "ORIGIN: [section] key = value: " */

#define put_error seg_error

static void put_key_error(char *err, size_t err_size, const char *origin, const char *section,
                          const char *key, const char *value, const char *why)
{
    put_error(err, err_size, "%s: [%s] %s = %s: %s", origin, section, key, value, why);
}

/* ------------------------------------------------------------ numbers */

enum number_status { NUMBER_OK, NUMBER_NOT_A_NUMBER, NUMBER_BAD_SUFFIX, NUMBER_TOO_BIG, NUMBER_NEGATIVE };

/* Parses text as a decimal number (digits only), followed, when size, by
 * an optional K, M or G (or k, m, g): times 1024, 1024^2, 1024^3.  Letters
 * after a size's digits are a bad suffix ("64MB"); anything else after the
 * digits ("1.5G", "64 M", "0x10") is not a number. */
static enum number_status parse_number(const char *text, bool size, uint64_t *out)
{
    const char *p = text;
    bool negative = false;
    uint64_t v = 0;

    if (*p == '-') {
        negative = true;
        p++;
    }
    if (*p < '0' || *p > '9')
        return NUMBER_NOT_A_NUMBER;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return negative ? NUMBER_NEGATIVE : NUMBER_TOO_BIG;
        v = v * 10 + digit;
    }
    if (*p && !size)
        return NUMBER_NOT_A_NUMBER;
    for (const char *q = p; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')))
            return NUMBER_NOT_A_NUMBER;
    if (*p) {
        uint64_t unit = 0;
        switch (*p) {
        case 'K':
        case 'k':
            unit = KIB;
            break;
        case 'M':
        case 'm':
            unit = MIB;
            break;
        case 'G':
        case 'g':
            unit = GIB;
            break;
        default:
            return NUMBER_BAD_SUFFIX;
        }
        if (p[1])
            return NUMBER_BAD_SUFFIX;
        if (v > UINT64_MAX / unit)
            return negative ? NUMBER_NEGATIVE : NUMBER_TOO_BIG;
        v *= unit;
    }
    if (negative && v)
        return NUMBER_NEGATIVE;
    *out = v;
    return NUMBER_OK;
}

/* Writes v as the file would: "64M" when it is a whole number of K, M or G
 * (and k->size), otherwise in plain digits. */
static void format_number(const struct key_spec *k, uint64_t v, char *buf, size_t buf_size)
{
    if (k->kind == KEY_SIZE && v && v % GIB == 0)
        snprintf(buf, buf_size, "%lluG", (unsigned long long)(v / GIB));
    else if (k->kind == KEY_SIZE && v && v % MIB == 0)
        snprintf(buf, buf_size, "%lluM", (unsigned long long)(v / MIB));
    else if (k->kind == KEY_SIZE && v && v % KIB == 0)
        snprintf(buf, buf_size, "%lluK", (unsigned long long)(v / KIB));
    else
        snprintf(buf, buf_size, "%llu", (unsigned long long)v);
}

static bool is_power_of_two(uint64_t v)
{
    return v && (v & (v - 1)) == 0;
}

/* Checks v against k's range; 0, or RK_EINVAL with the reason in why. */
static int check_number(const struct key_spec *k, uint64_t v, char *why, size_t why_size)
{
    char lo[32], hi[32];

    format_number(k, k->min, lo, sizeof lo);
    format_number(k, k->max, hi, sizeof hi);
    if (v < k->min || v > k->max) {
        snprintf(why, why_size, "out of range (%s..%s)", lo, hi);
        return RK_EINVAL;
    }
    if (k->power_of_two && !is_power_of_two(v)) {
        uint64_t below = (uint64_t)1 << (63 - __builtin_clzll(v));
        format_number(k, below, lo, sizeof lo);
        format_number(k, below << 1, hi, sizeof hi);
        snprintf(why, why_size, "not a power of two (%s or %s would be)", lo, hi);
        return RK_EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------ keys */

static bool section_known(const char *section)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0)
            return true;
    return false;
}

/* Finds [section] key; NULL with the reason in why if there is no such key. */
static const struct key_spec *key_find(const char *section, const char *key, char *why, size_t why_size)
{
    size_t len = 0;

    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, key) == 0)
            return &keys[i];
    if (!section[0]) {
        snprintf(why, why_size, "key before any [section] line");
        return NULL;
    }
    if (!section_known(section)) {
        len = (size_t)snprintf(why, why_size, "unknown section (sections are");
        for (size_t i = 0; i < N_KEYS && len < why_size; i++)
            if (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0)
                len += (size_t)snprintf(why + len, why_size - len, "%s [%s]", i ? "," : "", keys[i].section);
    } else {
        len = (size_t)snprintf(why, why_size, "unknown key (keys in [%s] are", section);
        bool first = true;
        for (size_t i = 0; i < N_KEYS && len < why_size; i++) {
            if (strcmp(keys[i].section, section) != 0)
                continue;
            len += (size_t)snprintf(why + len, why_size - len, "%s %s", first ? "" : ",", keys[i].name);
            first = false;
        }
    }
    if (len < why_size)
        snprintf(why + len, why_size - len, ")");
    return NULL;
}

static void *field(struct node_config *c, const struct key_spec *k)
{
    return (char *)c + k->offset;
}

static const void *field_const(const struct node_config *c, const struct key_spec *k)
{
    return (const char *)c + k->offset;
}

/* ------------------------------------------------------------ endpoints */

/* One endpoint of len bytes: "tcp://..." or "ipc://...", or empty.  0 or
 * RK_EINVAL with the reason in why. */
static int check_endpoint(const char *value, size_t len, char *why, size_t why_size)
{
    if (len > CONFIG_ENDPOINT_MAX) {
        snprintf(why, why_size, "endpoint longer than %d bytes", CONFIG_ENDPOINT_MAX);
        return RK_EINVAL;
    }
    if (len && strncmp(value, "tcp://", 6) != 0 && strncmp(value, "ipc://", 6) != 0) {
        snprintf(why, why_size, "not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)");
        return RK_EINVAL;
    }
    return 0;
}

/* The item of list that starts at *p (blanks around it skipped): its
 * start and length; *p moves past its comma.  0 at the end of the list. */
static int next_endpoint(const char **p, const char **item, size_t *len)
{
    const char *s = *p, *end;

    if (!*s)
        return 0;
    while (*s == ' ' || *s == '\t')
        s++;
    end = strchr(s, ',');
    *p = end ? end + 1 : s + strlen(s);
    if (!end)
        end = s + strlen(s);
    *item = s;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *len = (size_t)(end - s);
    return 1;
}

/* A comma-separated list of 1..CONFIG_NODES_MAX endpoints, none empty. */
static int check_endpoint_list(const char *list, char *why, size_t why_size)
{
    const char *p = list, *item;
    size_t len;
    uint32_t n = 0;

    while (next_endpoint(&p, &item, &len)) {
        if (++n > CONFIG_NODES_MAX) {
            snprintf(why, why_size, "more than %d endpoints", CONFIG_NODES_MAX);
            return RK_EINVAL;
        }
        if (!len) {
            snprintf(why, why_size, "endpoint %" PRIu32 " of the list is empty", n);
            return RK_EINVAL;
        }
        if (check_endpoint(item, len, why, why_size))
            return RK_EINVAL;
    }
    if (!n || p[-1] == ',') {
        snprintf(why, why_size, "the list ends with a comma");
        return RK_EINVAL;
    }
    return 0;
}

/* [ha] etcd: http:// (or https://) URLs of etcd's client endpoints, as
 * etcd --listen-client-urls gives them ("http://127.0.0.1:2379"). */
static int check_url_list(const char *list, char *why, size_t why_size)
{
    const char *p = list, *item;
    size_t len;
    uint32_t n = 0;

    while (next_endpoint(&p, &item, &len)) {
        if (!len || ++n > CONFIG_NODES_MAX) {
            snprintf(why, why_size, len ? "more than %d URLs" : "an empty URL in the list", CONFIG_NODES_MAX);
            return RK_EINVAL;
        }
        if (!((len > 7 && strncmp(item, "http://", 7) == 0) || (len > 8 && strncmp(item, "https://", 8) == 0)) ||
            memchr(item, ' ', len)) {
            snprintf(why, why_size, "%.*s: not an etcd client URL (http://HOST:PORT)", (int)len, item);
            return RK_EINVAL;
        }
    }
    if (p > list && p[-1] == ',') {
        snprintf(why, why_size, "an empty URL in the list");
        return RK_EINVAL;
    }
    return 0;
}

uint32_t node_config_endpoints(const char *list, char (*out)[CONFIG_ENDPOINT_MAX + 1], uint32_t max)
{
    const char *p = list, *item;
    size_t len;
    uint32_t n = 0;

    while (next_endpoint(&p, &item, &len) && len) {
        if (n < max)
            snprintf(out[n], CONFIG_ENDPOINT_MAX + 1, "%.*s", (int)len, item);
        n++;
    }
    return n;
}

/* ------------------------------------------------------------ listen */

int node_config_listen_addr(const char *text, struct sockaddr_storage *out, char *why, size_t why_size)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon = NULL, *port_text = NULL;
    size_t host_len = 0;
    uint64_t port = 0;
    struct sockaddr_storage sa;

    memset(&sa, 0, sizeof sa);
    if (text[0] == '[') { /* [IPV6]:PORT */
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            snprintf(why, why_size, "not ADDRESS:PORT (an IPv6 address is bracketed: [::1]:9187)");
            return RK_EINVAL;
        }
        host_len = (size_t)(close - text - 1);
        if (host_len >= sizeof host)
            host_len = sizeof host - 1; /* too long: inet_pton refuses what is left */
        memcpy(host, text + 1, host_len);
        port_text = close + 2;
    } else {
        colon = strrchr(text, ':');
        if (!colon || colon == text || memchr(text, ':', (size_t)(colon - text))) {
            snprintf(why, why_size, "not ADDRESS:PORT (e.g. 127.0.0.1:9187, or [::1]:9187 for IPv6)");
            return RK_EINVAL;
        }
        host_len = (size_t)(colon - text);
        if (host_len >= sizeof host)
            host_len = sizeof host - 1;
        memcpy(host, text, host_len);
        port_text = colon + 1;
    }
    host[host_len] = '\0';
    if (parse_number(port_text, false, &port) != NUMBER_OK || port_text[0] == '-' || port < 1 || port > 65535) {
        snprintf(why, why_size, "port '%s' is not a number from 1 to 65535", port_text);
        return RK_EINVAL;
    }
    if (text[0] == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
            snprintf(why, why_size, "'%s' is not an IPv6 address", host);
            return RK_EINVAL;
        }
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&sa;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
            snprintf(why, why_size, "'%s' is not an IPv4 address (no host names: write 127.0.0.1, not localhost)",
                     host);
            return RK_EINVAL;
        }
    }
    if (out)
        *out = sa;
    return 0;
}

/* Checks value for k and stores it in c; origin is kept for data_dir.
 * Returns 0, or RK_EINVAL with the reason in why and c unchanged. */
static int key_set(struct node_config *c, const struct key_spec *k, const char *value, const char *origin,
                   char *why, size_t why_size)
{
    size_t len = strlen(value);
    uint64_t v = 0;
    int level = 0;

    switch (k->kind) {
    case KEY_ROLE:
        if (strcmp(value, "primary") != 0 && strcmp(value, "standby") != 0) {
            snprintf(why, why_size, "not a role (primary, standby)");
            return RK_EINVAL;
        }
        memcpy(field(c, k), value, len + 1);
        return 0;
    case KEY_ON_HIGHER:
        if (strcmp(value, "rejoin") != 0 && strcmp(value, "exit") != 0) {
            snprintf(why, why_size, "not a choice (rejoin, exit)");
            return RK_EINVAL;
        }
        *(bool *)field(c, k) = value[0] == 'r';
        return 0;
    case KEY_ENDPOINT:
        if (check_endpoint(value, len, why, why_size))
            return RK_EINVAL;
        memcpy(field(c, k), value, len + 1);
        return 0;
    case KEY_ENDPOINTS:
        if (len > CONFIG_ENDPOINT_MAX) {
            snprintf(why, why_size, "list longer than %d bytes", CONFIG_ENDPOINT_MAX);
            return RK_EINVAL;
        }
        if (len && check_endpoint_list(value, why, why_size))
            return RK_EINVAL;
        memcpy(field(c, k), value, len + 1);
        return 0;
    case KEY_URLS:
        if (len > CONFIG_ENDPOINT_MAX) {
            snprintf(why, why_size, "list longer than %d bytes", CONFIG_ENDPOINT_MAX);
            return RK_EINVAL;
        }
        if (len && check_url_list(value, why, why_size))
            return RK_EINVAL;
        memcpy(field(c, k), value, len + 1);
        return 0;
    case KEY_HA_NAME:
        if (len > RK_NAME_MAX || strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != len) {
            snprintf(why, why_size, "not a name (1 to %d letters, digits, '.', '_' or '-')", RK_NAME_MAX);
            return RK_EINVAL;
        }
        memcpy(field(c, k), value, len + 1);
        return 0;
    case KEY_Z85: {
        uint8_t raw[32];
        if (len && (len != CONFIG_Z85_KEY || !zmq_z85_decode(raw, value))) {
            snprintf(why, why_size, "not a CURVE key (40 characters of Z85, as zmq_curve_keypair makes)");
            return RK_EINVAL;
        }
        memcpy(field(c, k), value, len + 1);
        return 0;
    }
    case KEY_LISTEN:
        if (len >= k->size) {
            snprintf(why, why_size, "longer than %zu bytes", k->size - 1);
            return RK_EINVAL;
        }
        if (len && node_config_listen_addr(value, NULL, why, why_size))
            return RK_EINVAL;
        memcpy(field(c, k), value, len + 1);
        return 0;
    case KEY_FILE:
        if (len >= k->size) {
            snprintf(why, why_size, "path longer than %zu bytes", k->size - 1);
            return RK_EINVAL;
        }
        memcpy(field(c, k), value, len + 1);
        return 0;
    case KEY_DIR:
        if (len == 0) {
            snprintf(why, why_size, "empty: give the data directory's path");
            return RK_EINVAL;
        }
        if (len >= k->size) {
            snprintf(why, why_size, "path longer than %zu bytes", k->size - 1);
            return RK_EINVAL;
        }
        memcpy(field(c, k), value, len + 1);
        snprintf(c->data_dir_origin, sizeof c->data_dir_origin, "%s", origin);
        return 0;
    case KEY_RING_NAME:
        if (seg_check_name(value, why, why_size))
            return RK_EINVAL;
        memcpy(field(c, k), value, len + 1);
        return 0;
    case KEY_PRODUCER:
        if (len > RK_NAME_MAX || memchr(value, '/', len)) {
            snprintf(why, why_size, "not a producer name (at most %d bytes)", RK_NAME_MAX);
            return RK_EINVAL;
        }
        memcpy(field(c, k), value, len + 1);
        return 0;
    case KEY_BOOL:
        if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "on") || !strcmp(value, "1")) {
            *(bool *)field(c, k) = true;
        } else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "off") ||
                   !strcmp(value, "0")) {
            *(bool *)field(c, k) = false;
        } else {
            snprintf(why, why_size, "not yes or no");
            return RK_EINVAL;
        }
        return 0;
    case KEY_LOG_LEVEL:
        if (log_level_parse(value, &level)) {
            snprintf(why, why_size, "not a log level (debug, info, warn, error)");
            return RK_EINVAL;
        }
        *(int *)field(c, k) = level;
        return 0;
    case KEY_U32:
    case KEY_INT:
    case KEY_SIZE:
        break;
    }

    switch (parse_number(value, k->kind == KEY_SIZE, &v)) {
    case NUMBER_OK:
        break;
    case NUMBER_NOT_A_NUMBER:
        snprintf(why, why_size, k->kind == KEY_SIZE ? "not a size (digits, then K, M or G)" : "not a number");
        return RK_EINVAL;
    case NUMBER_BAD_SUFFIX:
        snprintf(why, why_size, "bad size suffix: use K, M or G (powers of 1024)");
        return RK_EINVAL;
    case NUMBER_TOO_BIG:
        v = UINT64_MAX; /* reported as out of range */
        break;
    case NUMBER_NEGATIVE:
        v = 0;
        if (k->min == 0) /* 0 is in range, a negative number is not */
            v = UINT64_MAX;
        break;
    }
    if (check_number(k, v, why, why_size))
        return RK_EINVAL;
    if (k->kind == KEY_U32)
        *(uint32_t *)field(c, k) = (uint32_t)v;
    else if (k->kind == KEY_INT)
        *(int *)field(c, k) = (int)v;
    else
        *(uint64_t *)field(c, k) = v;
    return 0;
}

/* The value of a number field, for node_config_check. */
static uint64_t field_number(const struct node_config *c, const struct key_spec *k)
{
    if (k->kind == KEY_U32)
        return *(const uint32_t *)field_const(c, k);
    if (k->kind == KEY_INT) {
        int v = *(const int *)field_const(c, k);
        return v < 0 ? UINT64_MAX : (uint64_t)v;
    }
    return *(const uint64_t *)field_const(c, k);
}

void node_config_defaults(struct node_config *c)
{
    char why[WHY_SIZE];

    memset(c, 0, sizeof *c);
    /* every default passes key_set (test_config checks the values it gives) */
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].dflt)
            key_set(c, &keys[i], keys[i].dflt, "default", why, sizeof why);
}

int node_config_set(struct node_config *c, const char *section, const char *key, const char *value,
                    const char *origin, char *err, size_t err_size)
{
    const struct key_spec *k = NULL;
    char why[WHY_SIZE];
    char trimmed[PATH_MAX];
    size_t len = 0;

    if (!c || !section || !key || !value) {
        put_error(err, err_size, "node_config_set: NULL argument");
        return RK_EINVAL;
    }
    if (!origin)
        origin = "--set";
    /* spaces around the value do not count, as in the file (inih strips them) */
    while (*value == ' ' || *value == '\t')
        value++;
    len = strlen(value);
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len >= sizeof trimmed) {
        put_error(err, err_size, "%s: [%s] %s: value longer than %zu bytes", origin, section, key,
                  sizeof trimmed - 1);
        return RK_EINVAL;
    }
    memcpy(trimmed, value, len);
    trimmed[len] = '\0';

    k = key_find(section, key, why, sizeof why);
    if (!k || key_set(c, k, trimmed, origin, why, sizeof why)) {
        put_key_error(err, err_size, origin, section, key, trimmed, why);
        return RK_EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------ the file */

enum stop_reason { STOP_NONE, STOP_TOO_LONG, STOP_NUL, STOP_READ };

struct load_ctx {
    FILE *file;
    const char *path;
    struct node_config cfg;    /* what the file builds; copied out on success */
    unsigned line;             /* lines handed to inih so far = the current line */
    unsigned key_line[N_KEYS]; /* line where each key was set, 0 if not yet */
    unsigned err_line;         /* line of the handler's first error, 0 if none */
    char *err;                 /* the caller's buffer: the handler's first error */
    size_t err_size;
    enum stop_reason stop; /* why read_line() ended the file early */
    unsigned stop_line;
    int read_errno;
    int max_line; /* inih's line buffer, as read_line() sees it */
    char *buf;    /* getline()'s buffer */
    size_t buf_size;
};

/* inih's reader: one physical line per call, leading blanks stripped. */
static char *read_line(char *str, int num, void *stream)
{
    struct load_ctx *ctx = stream;
    ssize_t n = 0;
    const char *start = NULL;

    if (ctx->stop != STOP_NONE)
        return NULL;
    errno = 0;
    n = getline(&ctx->buf, &ctx->buf_size, ctx->file);
    if (n < 0) {
        if (ferror(ctx->file)) {
            ctx->stop = STOP_READ;
            ctx->read_errno = errno ? errno : EIO;
            ctx->stop_line = ctx->line + 1;
        }
        return NULL;
    }
    ctx->line++;
    ctx->max_line = num;
    start = ctx->buf;
    while (n > 0 && (*start == ' ' || *start == '\t')) {
        start++;
        n--;
    }
    if (memchr(start, '\0', (size_t)n)) {
        ctx->stop = STOP_NUL;
        ctx->stop_line = ctx->line;
        return NULL;
    }
    if (num < 1 || n > num - 1) { /* inih would take the rest as another line */
        ctx->stop = STOP_TOO_LONG;
        ctx->stop_line = ctx->line;
        return NULL;
    }
    memcpy(str, start, (size_t)n);
    str[n] = '\0';
    return str;
}

/* inih's handler: one key of the file. */
static int on_key(void *user, const char *section, const char *key, const char *value)
{
    struct load_ctx *ctx = user;
    const struct key_spec *k = NULL;
    char why[WHY_SIZE];
    char origin[PATH_MAX + 16];

    if (ctx->err_line) /* only the first error is reported */
        return 0;
    snprintf(origin, sizeof origin, "%s:%u", ctx->path, ctx->line);
    k = key_find(section, key, why, sizeof why);
    if (k && ctx->key_line[k - keys]) {
        snprintf(why, sizeof why, "given twice (first on line %u)", ctx->key_line[k - keys]);
        k = NULL;
    }
    if (!k || key_set(&ctx->cfg, k, value, origin, why, sizeof why)) {
        ctx->err_line = ctx->line;
        put_key_error(ctx->err, ctx->err_size, origin, section, key, value, why);
        return 0;
    }
    ctx->key_line[k - keys] = ctx->line;
    return 1;
}

int node_config_load(const char *path, struct node_config *c, char *err, size_t err_size)
{
    struct load_ctx *ctx = NULL;
    int parsed = 0;
    int rc = 0;

    if (!path || !c) {
        put_error(err, err_size, "node_config_load: NULL argument");
        return RK_EINVAL;
    }
    if (strlen(path) >= sizeof c->file) {
        put_error(err, err_size, "%.64s...: path longer than %zu bytes", path, sizeof c->file - 1);
        return RK_EINVAL;
    }
    ctx = calloc(1, sizeof *ctx); /* about 13 KiB: not on the caller's stack */
    if (!ctx) {
        put_error(err, err_size, "%s: cannot read: %s", path, strerror(ENOMEM));
        return ENOMEM;
    }
    ctx->path = path;
    ctx->cfg = *c;
    ctx->err = err;
    ctx->err_size = err_size;
    snprintf(ctx->cfg.file, sizeof ctx->cfg.file, "%s", path);

    ctx->file = fopen(path, "re");
    if (!ctx->file) {
        rc = errno;
        put_error(err, err_size, "%s: cannot open: %s", path, strerror(rc));
        goto out;
    }
    parsed = ini_parse_stream(read_line, ctx, on_key, ctx);
    if (parsed > 0 && (ctx->err_line == 0 || (unsigned)parsed < ctx->err_line)) {
        put_error(err, err_size, "%s:%d: syntax error", path, parsed);
        rc = RK_EINVAL;
    } else if (ctx->err_line) {
        rc = RK_EINVAL;      /* the handler wrote the message */
    } else if (parsed < 0) { /* -2: inih could not allocate its line buffer */
        rc = ENOMEM;
        put_error(err, err_size, "%s: cannot read: %s", path, strerror(rc));
    } else if (ctx->stop == STOP_TOO_LONG) {
        rc = RK_EINVAL;
        put_error(err, err_size, "%s:%u: line longer than %d bytes", path, ctx->stop_line, ctx->max_line - 2);
    } else if (ctx->stop == STOP_NUL) {
        rc = RK_EINVAL;
        put_error(err, err_size, "%s:%u: NUL byte in the line", path, ctx->stop_line);
    } else if (ctx->stop == STOP_READ) {
        rc = ctx->read_errno;
        put_error(err, err_size, "%s: cannot read: %s", path, strerror(rc));
    } else {
        *c = ctx->cfg;
    }
out:
    if (ctx->file)
        fclose(ctx->file);
    free(ctx->buf);
    free(ctx);
    return rc;
}

/* ------------------------------------------------------------ the check */

int node_config_check(const struct node_config *c, char *err, size_t err_size)
{
    const char *where = NULL;
    char why[WHY_SIZE];
    char value[32];
    struct stat st;

    if (!c) {
        put_error(err, err_size, "node_config_check: NULL argument");
        return RK_EINVAL;
    }
    where = c->file[0] ? c->file : "configuration";

    bool standby = strcmp(c->role, "standby") == 0;
    if (strcmp(c->role, "primary") != 0 && !standby) {
        put_error(err, err_size, "%s: [node] role = %s: not a role (primary, standby)", where, c->role);
        return RK_EINVAL;
    }
    if (standby && (!c->repl_primary_publish[0] || !c->repl_primary_serve[0] || !c->repl_node_id[0])) {
        put_error(err, err_size,
                  "%s: [node] role = standby: needs [replication] primary_publish, primary_serve and node_id",
                  where);
        return RK_EINVAL;
    }
    if (node_config_endpoints(c->repl_primary_publish, NULL, 0) !=
        node_config_endpoints(c->repl_primary_serve, NULL, 0)) {
        put_error(err, err_size,
                  "%s: [replication] primary_publish and primary_serve: as many endpoints in each (the i-th "
                  "of one and the i-th of the other are one node's)",
                  where);
        return RK_EINVAL;
    }
    if (c->rejoin_on_higher_epoch &&
        (!c->repl_primary_publish[0] || !c->repl_primary_serve[0] || !c->repl_node_id[0] ||
         (c->curve && !c->curve_server_key[0]))) {
        put_error(err, err_size,
                  "%s: [replication] on_higher_epoch = rejoin: needs what a standby of the other nodes needs: "
                  "primary_publish, primary_serve, node_id%s",
                  where, c->curve ? " and curve_server_key" : "");
        return RK_EINVAL;
    }
    if (!c->ha_etcd[0] && (c->ha_cluster[0] || c->ha_name[0])) {
        put_error(err, err_size, "%s: [ha] cluster or name is set but etcd is not: set [ha] etcd (etcd's client "
                                 "URLs) or remove the [ha] section", where);
        return RK_EINVAL;
    }
    if (c->ha_etcd[0] && !c->ha_cluster[0]) {
        put_error(err, err_size, "%s: [ha] etcd is set: needs cluster (keys live under /ringkeep/<cluster>/)",
                  where);
        return RK_EINVAL;
    }
    if (c->ha_etcd[0] && !node_config_ha_name(c)[0]) {
        put_error(err, err_size, "%s: [ha] etcd is set: needs name, or [replication] node_id", where);
        return RK_EINVAL;
    }
    if (c->ha_etcd[0] && node_config_ha_name(c) == c->repl_node_id &&
        strspn(c->repl_node_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
            strlen(c->repl_node_id)) {
        put_error(err, err_size,
                  "%s: [ha] name is not set and [replication] node_id = %s is not a member name (letters, digits, "
                  "'.', '_', '-'): set [ha] name",
                  where, c->repl_node_id);
        return RK_EINVAL;
    }
    if (c->ha_etcd[0] && (!c->repl_publish[0] || !c->repl_serve[0] || !c->repl_primary_publish[0] ||
                          !c->repl_primary_serve[0] || !c->repl_node_id[0] || !c->ring_name[0] ||
                          (c->curve && !c->curve_server_key[0]))) {
        put_error(err, err_size,
                  "%s: [ha] etcd is set: every node may lead or follow, so it needs [replication] publish, serve, "
                  "primary_publish, primary_serve, node_id%s and [ring] name",
                  where, c->curve ? ", curve_server_key" : "");
        return RK_EINVAL;
    }
    if (!standby && !c->repl_publish[0] != !c->repl_serve[0]) {
        put_error(err, err_size, "%s: [replication] publish and serve: set both or neither", where);
        return RK_EINVAL;
    }
    if (!standby && c->repl_min_replicas && !c->repl_serve[0]) {
        put_error(err, err_size,
                  "%s: [replication] min_replicas = %" PRIu32 ": needs publish and serve (standbys to ack)",
                  where, c->repl_min_replicas);
        return RK_EINVAL;
    }
    if (c->repl_min_replicas && !c->curve && !c->insecure_acks) {
        /* without CURVE any peer may say HELLO under a standby's name and
         * acknowledge what it does not hold (RK_REPLICATED would lie) */
        put_error(err, err_size,
                  "%s: [replication] min_replicas = %" PRIu32 " without curve: acknowledgements would not be "
                  "authenticated (any peer could ack under a standby's name); set curve = yes with each "
                  "standby's key bound to its node_id in authorized_keys, or insecure_acks = yes on a "
                  "network only trusted peers reach",
                  where, c->repl_min_replicas);
        return RK_EINVAL;
    }
    if (c->curve && (!c->curve_secret_key[0] || !c->curve_public_key[0] ||
                     (standby ? !c->curve_server_key[0] : !c->curve_authorized_keys[0]))) {
        put_error(err, err_size,
                  "%s: [replication] curve = yes: needs curve_secret_key, curve_public_key and %s", where,
                  standby ? "curve_server_key (the primary's public key)"
                          : "authorized_keys (the standbys' keys)");
        return RK_EINVAL;
    }
    if (!c->curve && (c->curve_secret_key[0] || c->curve_public_key[0] || c->curve_server_key[0] ||
                      c->curve_authorized_keys[0])) {
        put_error(err, err_size,
                  "%s: [replication] CURVE keys are set but curve = no: set curve = yes or remove them",
                  where);
        return RK_EINVAL;
    }
    if (!standby && !c->ring_name[0]) { /* a standby owns no ring */
        put_error(err, err_size, "%s: [ring] name is not set: it is required (the ring engines attach to)",
                  where);
        return RK_EINVAL;
    }
    if (c->ring_name[0] && seg_check_name(c->ring_name, why, sizeof why)) {
        put_error(err, err_size, "%s: [ring] name = %s: %s", where, c->ring_name, why);
        return RK_EINVAL;
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key_spec *k = &keys[i];
        uint64_t v = 0;

        if (k->kind == KEY_LOG_LEVEL) {
            if (c->log_level < LOG_DEBUG || c->log_level > LOG_ERROR) {
                put_error(err, err_size,
                          "%s: [node] log_level = %d: not a log level (debug, info, warn, error)", where,
                          c->log_level);
                return RK_EINVAL;
            }
            continue;
        }
        if (k->kind != KEY_U32 && k->kind != KEY_INT && k->kind != KEY_SIZE)
            continue;
        v = field_number(c, k);
        if (check_number(k, v, why, sizeof why)) {
            if (k->kind == KEY_INT && v == UINT64_MAX)
                snprintf(value, sizeof value, "%d", *(const int *)field_const(c, k));
            else
                format_number(k, v, value, sizeof value);
            put_key_error(err, err_size, where, k->section, k->name, value, why);
            return RK_EINVAL;
        }
    }

    if (c->ckpt_every_heights && !c->ckpt_height_producer[0]) {
        put_error(err, err_size,
                  "%s: [checkpoint] every_heights = %" PRIu64
                  ": needs height_producer, the producer whose heights count",
                  where, c->ckpt_every_heights);
        return RK_EINVAL;
    }
    if (!c->data_dir[0]) {
        put_error(err, err_size, "%s: [node] data_dir is not set: it is required and has no default", where);
        return RK_EINVAL;
    }
    if (c->data_dir_origin[0])
        where = c->data_dir_origin;
    if (stat(c->data_dir, &st) != 0) {
        int e = errno;
        if (e == ENOENT)
            put_error(err, err_size,
                      "%s: [node] data_dir = %s: data directory %s does not exist: create it first", where,
                      c->data_dir, c->data_dir);
        else
            put_error(err, err_size, "%s: [node] data_dir = %s: cannot reach data directory %s: %s", where,
                      c->data_dir, c->data_dir, strerror(e));
        return RK_EINVAL;
    }
    if (!S_ISDIR(st.st_mode)) {
        put_error(err, err_size, "%s: [node] data_dir = %s: %s is not a directory", where, c->data_dir,
                  c->data_dir);
        return RK_EINVAL;
    }
    return 0;
}
