/* test_config.c -- the node's configuration and its log lines.
 *
 *  example:  config/primary.ini loads, holds the defaults (except data_dir
 *            and the ring name, which have none), and has a comment above
 *            every key; every key of the node is in it.
 *  values:   every key's edges are accepted; every bad value (not a number,
 *            out of range, not a power of two, bad suffix, unknown key or
 *            section) is refused with exactly "PATH:LINE: [section] key =
 *            value: reason" from a file and "--set: ..." from
 *            node_config_set, and the config is left as it was.
 *  file:     duplicate keys name both lines, syntax errors their line, the
 *            first error in line order wins, a missing file passes errno
 *            through, long lines and NUL bytes are refused, indented lines
 *            are keys (not continuations), inline comments and CRLF work.
 *  check:    node_config_check wants data_dir (existing, a directory), a
 *            ring name and a primary role, and says where data_dir came from.
 *  log:      lines are logfmt (ts UTC with milliseconds, level, quoted msg
 *            that unquotes to what was logged, the caller's fields), one
 *            line whatever they hold, filtered by level, cut at
 *            LOG_LINE_MAX, whole when threads log at once.
 *
 * Finding config/primary.ini: from the environment variable RK_SOURCE_DIR
 * (the source tree) when it is set, otherwise next to this file's own path
 * (__FILE__, which CMake passes as an absolute path).
 *
 * Each test works in its own temporary directory, removed when it ends (and
 * by the runner at the end, for a test that failed half way); stderr is
 * captured by pointing fd 2 at a file in it (a file, not a pipe, so that
 * threads writing 8000 lines never block on a full pipe).
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "persist/config.h"
#include "persist/log.h"

static pid_t runner_pid;
static char tmp_dir[64]; /* "/tmp/rk-config.<runner pid>.XXXXXX" */
static char ini_path[PATH_MAX];
static char err[8192];
static char expected[8192];

/* ------------------------------------------------------------- helpers */

static void setup(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/rk-config.%d.XXXXXX", (int)runner_pid);
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    snprintf(ini_path, sizeof ini_path, "%s/node.ini", tmp_dir);
    err[0] = '\0';
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Removes the directories of tests that failed before their teardown. */
static void remove_test_dirs(void)
{
    char pattern[64];
    glob_t found;

    snprintf(pattern, sizeof pattern, "/tmp/rk-config.%d.*", (int)runner_pid);
    if (glob(pattern, GLOB_NOSORT, NULL, &found) != 0)
        return;
    for (size_t i = 0; i < found.gl_pathc; i++)
        nftw(found.gl_pathv[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    globfree(&found);
}

/* The path of rel (e.g. "config/primary.ini") in the source tree. */
static void source_file(const char *rel, char *out, size_t out_size)
{
    const char *dir = getenv("RK_SOURCE_DIR");
    const char *here = __FILE__;
    const char *slash = strrchr(here, '/');

    if (dir && dir[0]) {
        snprintf(out, out_size, "%s/%s", dir, rel);
        return;
    }
    ck_assert_msg(here[0] == '/' && slash, "set RK_SOURCE_DIR to the source tree (__FILE__ is \"%s\")", here);
    snprintf(out, out_size, "%.*s/../%s", (int)(slash - here), here, rel);
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* Writes text to ini_path and loads it over the defaults. */
static int load_text(const char *text, struct node_config *c)
{
    write_file(ini_path, text, strlen(text));
    node_config_defaults(c);
    err[0] = '\0';
    return node_config_load(ini_path, c, err, sizeof err);
}

static const char *expect(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const char *expect(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(expected, sizeof expected, fmt, ap);
    va_end(ap);
    return expected;
}

static char *read_whole(const char *path)
{
    FILE *f = fopen(path, "r");
    char *data = NULL;
    long len = 0;

    ck_assert_msg(f, "cannot open %s: %s", path, strerror(errno));
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    ck_assert_int_ge(len, 0);
    rewind(f);
    data = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(data);
    ck_assert_uint_eq(fread(data, 1, (size_t)len, f), (size_t)len);
    data[len] = '\0';
    fclose(f);
    return data;
}

/* Runs fn(arg) with fd 2 appending to a file; returns what it wrote
 * (malloc'd, NUL-terminated). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[PATH_MAX];
    int fd, saved;

    snprintf(path, sizeof path, "%s/stderr", tmp_dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    ck_assert_int_ge(fd, 0);
    saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
    fn(arg);
    ck_assert_int_eq(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    return read_whole(path);
}

/* ------------------------------------------------------------- logfmt */

#define MAX_FIELDS 16

struct field {
    char key[64];
    char value[LOG_LINE_MAX];
    bool quoted;
};

static struct field fields[MAX_FIELDS];

/* Parses one logfmt line (no '\n') into fields[]: key=bare or key="quoted"
 * separated by single spaces; quoted values are unescaped (\" \\ \n \r \t
 * \u00XX).  Returns the number of fields, or -1 if the line is malformed. */
static int parse_logfmt(const char *line)
{
    const char *p = line;
    int n = 0;

    while (*p) {
        struct field *f = NULL;
        size_t k = 0, v = 0;

        if (n == MAX_FIELDS)
            return -1;
        f = &fields[n++];
        while (*p && *p != '=' && *p != ' ' && *p != '"' && k + 1 < sizeof f->key)
            f->key[k++] = *p++;
        f->key[k] = '\0';
        if (k == 0 || *p != '=')
            return -1;
        p++;
        f->quoted = *p == '"';
        if (f->quoted) {
            for (p++; *p != '"'; p++) {
                char ch = *p;
                if (!ch || (unsigned char)ch < 0x20)
                    return -1;
                if (ch == '\\') {
                    p++;
                    if (*p == 'n')
                        ch = '\n';
                    else if (*p == 'r')
                        ch = '\r';
                    else if (*p == 't')
                        ch = '\t';
                    else if (*p == '"' || *p == '\\')
                        ch = *p;
                    else if (*p == 'u' && p[1] == '0' && p[2] == '0' && p[3] && p[4]) {
                        char hex[3] = {p[3], p[4], '\0'};
                        char *end = NULL;
                        ch = (char)strtol(hex, &end, 16);
                        if (*end || (unsigned char)ch >= 0x80)
                            return -1;
                        p += 4;
                    } else {
                        return -1;
                    }
                }
                if (v + 1 >= sizeof f->value)
                    return -1;
                f->value[v++] = ch;
            }
            p++;
        } else {
            while (*p && *p != ' ') {
                if (*p == '"' || (unsigned char)*p < 0x20 || v + 1 >= sizeof f->value)
                    return -1;
                f->value[v++] = *p++;
            }
        }
        f->value[v] = '\0';
        if (*p == ' ')
            p++;
        else if (*p)
            return -1;
    }
    return n;
}

/* Checks that line (no '\n') is ts=... level=LEVEL msg="MSG" and returns
 * the number of fields. */
static int check_line(const char *line, const char *level, const char *msg)
{
    regex_t ts_re;
    int n = parse_logfmt(line);

    ck_assert_msg(n >= 3, "not logfmt: %s", line);
    ck_assert_int_eq(regcomp(&ts_re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    ck_assert_str_eq(fields[0].key, "ts");
    ck_assert_msg(!fields[0].quoted && regexec(&ts_re, fields[0].value, 0, NULL, 0) == 0, "ts: %s", line);
    regfree(&ts_re);
    ck_assert_str_eq(fields[1].key, "level");
    ck_assert(!fields[1].quoted);
    ck_assert_str_eq(fields[1].value, level);
    ck_assert_str_eq(fields[2].key, "msg");
    ck_assert(fields[2].quoted);
    if (msg)
        ck_assert_str_eq(fields[2].value, msg);
    return n;
}

/* Splits text into lines (each ends with '\n'); returns their count. */
static int split_lines(char *text, char **lines, int max)
{
    int n = 0;
    char *p = text;

    while (*p) {
        char *nl = strchr(p, '\n');
        ck_assert_msg(nl, "last line has no newline: %s", p);
        ck_assert_int_lt(n, max);
        *nl = '\0';
        lines[n++] = p;
        p = nl + 1;
    }
    return n;
}

/* ------------------------------------------------------------- example */

static void expect_defaults_except_required(const struct node_config *c)
{
    ck_assert_str_eq(c->role, "primary");
    ck_assert_int_eq(c->log_level, LOG_INFO);
    ck_assert_uint_eq(c->ring_capacity, 64u << 20);
    ck_assert_uint_eq(c->unblock_timeout_ms, 1000);
    ck_assert_uint_eq(c->batch_records, 8192);
    ck_assert_uint_eq(c->batch_bytes, 4u << 20);
    ck_assert_uint_eq(c->batch_time_us, 1000);
    ck_assert_int_eq(c->zstd_level, 1);
    ck_assert_uint_eq(c->max_lag_entries, 4096);
    ck_assert_uint_eq(c->max_lag_bytes, 64u << 20);
    ck_assert_uint_eq(c->cache_mb, 1024);
    ck_assert_uint_eq(c->ckpt_every_seconds, 60);
    ck_assert_uint_eq(c->ckpt_every_records, 0);
    ck_assert_uint_eq(c->ckpt_keep, 5);
    ck_assert_uint_eq(c->ckpt_keep_hourly, 0);
    ck_assert_uint_eq(c->ckpt_keep_daily, 0);
    ck_assert_uint_eq(c->ckpt_every_heights, 0);
    ck_assert_str_eq(c->ckpt_height_producer, "");
    ck_assert(c->trim_journal);
    ck_assert_str_eq(c->metrics_listen, ""); /* nothing listens */
}

START_TEST(defaults_are_documented_values)
{
    struct node_config c;

    memset(&c, 0xa5, sizeof c);
    node_config_defaults(&c);
    expect_defaults_except_required(&c);
    ck_assert_str_eq(c.file, "");
    ck_assert_str_eq(c.data_dir, "");
    ck_assert_str_eq(c.data_dir_origin, "");
    ck_assert_str_eq(c.ring_name, "");
}
END_TEST

START_TEST(example_primary_ini_loads_with_defaults)
{
    struct node_config c;
    char path[PATH_MAX];

    source_file("config/primary.ini", path, sizeof path);
    node_config_defaults(&c);
    ck_assert_msg(node_config_load(path, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(c.file, path);
    ck_assert_str_eq(c.data_dir, "/var/lib/ringkeep");
    ck_assert_str_eq(c.ring_name, "orders");
    expect_defaults_except_required(&c);

    /* it passes the check once its data directory exists */
    ck_assert_int_eq(node_config_set(&c, "node", "data_dir", tmp_dir, "--set", err, sizeof err), 0);
    ck_assert_msg(node_config_check(&c, err, sizeof err) == 0, "%s", err);
}
END_TEST

/* Every key of the node, for the tests that go through all of them. */
static const char *const all_keys[][2] = {
    {"node", "role"},           {"node", "data_dir"},         {"node", "log_level"},
    {"ring", "name"},           {"ring", "capacity"},         {"ring", "unblock_timeout_ms"},
    {"drain", "batch_records"}, {"drain", "batch_bytes"},     {"drain", "batch_time_us"},
    {"drain", "zstd_level"},    {"apply", "max_lag_entries"}, {"apply", "max_lag_bytes"},
    {"apply", "max_lag_ms"},    {"storage", "cache_mb"},
    {"checkpoint", "every_seconds"}, {"checkpoint", "every_records"}, {"checkpoint", "keep"},
    {"checkpoint", "keep_hourly"},   {"checkpoint", "keep_daily"},    {"checkpoint", "every_heights"},
    {"checkpoint", "height_producer"}, {"checkpoint", "trim_journal"},
    {"replication", "publish"}, {"replication", "serve"}, {"replication", "primary_publish"},
    {"replication", "primary_serve"}, {"replication", "node_id"}, {"replication", "min_replicas"},
    {"replication", "heartbeat_ms"}, {"replication", "curve"}, {"replication", "curve_secret_key"},
    {"replication", "curve_public_key"}, {"replication", "curve_server_key"}, {"replication", "authorized_keys"},
    {"replication", "insecure_acks"},  {"replication", "on_higher_epoch"},
    {"ha", "etcd"}, {"ha", "cluster"}, {"ha", "name"}, {"ha", "ttl_ms"}, {"ha", "max_lag_entries"}, {"metrics", "listen"},
};
#define N_ALL_KEYS (sizeof all_keys / sizeof all_keys[0])

/* [ha]: nothing without etcd; with it, a cluster, a member name, and
 * what both roles need (any node may lead or follow) */
START_TEST(ha_section_needs_cluster_name_and_both_roles)
{
    struct node_config c;
    char err_buf[1024];

    node_config_defaults(&c);
    strcpy(c.data_dir, "/tmp");
    strcpy(c.ring_name, "orders");
    ck_assert_msg(node_config_check(&c, err_buf, sizeof err_buf) == 0, "%s", err_buf);
    strcpy(c.ha_cluster, "main");
    ck_assert_int_eq(node_config_check(&c, err_buf, sizeof err_buf), RK_EINVAL);
    ck_assert_str_eq(err_buf, "configuration: [ha] cluster or name is set but etcd is not: set [ha] etcd (etcd's "
                          "client URLs) or remove the [ha] section");
    strcpy(c.ha_etcd, "http://127.0.0.1:2379");
    c.ha_cluster[0] = '\0';
    ck_assert_int_eq(node_config_check(&c, err_buf, sizeof err_buf), RK_EINVAL);
    ck_assert_str_eq(err_buf, "configuration: [ha] etcd is set: needs cluster (keys live under /ringkeep/<cluster>/)");
    strcpy(c.ha_cluster, "main");
    ck_assert_int_eq(node_config_check(&c, err_buf, sizeof err_buf), RK_EINVAL);
    ck_assert_str_eq(err_buf, "configuration: [ha] etcd is set: needs name, or [replication] node_id");
    strcpy(c.repl_node_id, "node a");
    ck_assert_int_eq(node_config_check(&c, err_buf, sizeof err_buf), RK_EINVAL);
    ck_assert_str_eq(err_buf, "configuration: [ha] name is not set and [replication] node_id = node a is not a member "
                          "name (letters, digits, '.', '_', '-'): set [ha] name");
    strcpy(c.ha_name, "a");
    ck_assert_int_eq(node_config_check(&c, err_buf, sizeof err_buf), RK_EINVAL);
    ck_assert_str_eq(err_buf, "configuration: [ha] etcd is set: every node may lead or follow, so it needs "
                          "[replication] publish, serve, primary_publish, primary_serve, node_id and [ring] name");
    strcpy(c.repl_publish, "tcp://127.0.0.1:7701");
    strcpy(c.repl_serve, "tcp://127.0.0.1:7702");
    strcpy(c.repl_primary_publish, "tcp://127.0.0.1:7701,tcp://127.0.0.1:7711");
    strcpy(c.repl_primary_serve, "tcp://127.0.0.1:7702,tcp://127.0.0.1:7712");
    ck_assert_msg(node_config_check(&c, err_buf, sizeof err_buf) == 0, "%s", err_buf);
    ck_assert_str_eq(node_config_ha_name(&c), "a");
    c.ha_name[0] = '\0';
    strcpy(c.repl_node_id, "node-a");
    ck_assert_msg(node_config_check(&c, err_buf, sizeof err_buf) == 0, "%s", err_buf);
    ck_assert_str_eq(node_config_ha_name(&c), "node-a");
    strcpy(c.role, "standby");
    ck_assert_msg(node_config_check(&c, err_buf, sizeof err_buf) == 0, "%s", err_buf);
    c.ring_name[0] = '\0'; /* a standby that cannot be promoted cannot be elected */
    ck_assert_int_eq(node_config_check(&c, err_buf, sizeof err_buf), RK_EINVAL);
    ck_assert_uint_eq(c.ha_ttl_ms, 5000);
    ck_assert_uint_eq(c.ha_max_lag_entries, 100);
}
END_TEST

START_TEST(example_primary_ini_comments_every_key)
{
    char path[PATH_MAX];
    char *text = NULL, *lines[512];
    char section[64] = "";
    bool seen[N_ALL_KEYS] = {false};
    int n = 0;

    source_file("config/primary.ini", path, sizeof path);
    text = read_whole(path);
    n = split_lines(text, lines, 512);
    for (int i = 0; i < n; i++) {
        const char *l = lines[i];
        const char *eq = strchr(l, '=');
        size_t key_len = 0;

        ck_assert_msg(strlen(l) <= 198, "primary.ini:%d is longer than 198 bytes", i + 1);
        if (l[0] == '[') {
            ck_assert_int_eq(sscanf(l, "[%63[^]]]", section), 1);
            continue;
        }
        if (l[0] == '#' || l[0] == ';' || l[0] == '\0')
            continue;
        ck_assert_msg(eq, "primary.ini:%d is neither key, section nor comment: %s", i + 1, l);
        ck_assert_msg(i > 0 && lines[i - 1][0] == '#', "primary.ini:%d: %s has no comment above it", i + 1,
                      l);
        key_len = (size_t)(eq - l);
        while (key_len && l[key_len - 1] == ' ')
            key_len--;
        bool known = false;
        for (size_t k = 0; k < N_ALL_KEYS; k++) {
            if (strcmp(all_keys[k][0], section) == 0 && strlen(all_keys[k][1]) == key_len &&
                strncmp(all_keys[k][1], l, key_len) == 0) {
                seen[k] = known = true;
            }
        }
        ck_assert_msg(known, "primary.ini:%d: [%s] %s is not a key of the node", i + 1, section, l);
    }
    for (size_t k = 0; k < N_ALL_KEYS; k++)
        ck_assert_msg(seen[k], "primary.ini does not document [%s] %s", all_keys[k][0], all_keys[k][1]);
    free(text);
}
END_TEST

/* ------------------------------------------------------------- values */

#define R_NUMBER "not a number"
#define R_SIZE "not a size (digits, then K, M or G)"
#define R_SUFFIX "bad size suffix: use K, M or G (powers of 1024)"
#define R_LEVEL "not a log level (debug, info, warn, error)"
#define NAME_48 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv"
#define R_NAME_LEN(n) "ring name '" n "' must be 1 to 47 characters and not start with '.'"
#define R_NAME_CHAR(n, c) "ring name '" n "' has '" c "': use letters, digits, '_', '-', '.'"
#define R_SECTIONS "unknown section (sections are [node], [ring], [drain], [apply], [storage], [checkpoint], [replication], [ha], [metrics])"

static const struct bad_value {
    const char *section, *key, *value, *reason;
} bad_values[] = {
    {"node", "role", "replica", "not a role (primary, standby)"},
    {"node", "role", "Primary", "not a role (primary, standby)"},
    {"node", "role", "", "not a role (primary, standby)"},
    {"replication", "publish", "udp://x", "not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)"},
    {"replication", "min_replicas", "65", "out of range (0..64)"},
    {"replication", "heartbeat_ms", "5", "out of range (10..60000)"},
    {"replication", "curve_secret_key", "abc", "not a CURVE key (40 characters of Z85, as zmq_curve_keypair makes)"},
    {"replication", "curve", "maybe", "not yes or no"},
    {"replication", "on_higher_epoch", "restart", "not a choice (rejoin, exit)"},
    {"ha", "etcd", "127.0.0.1:2379", "127.0.0.1:2379: not an etcd client URL (http://HOST:PORT)"},
    {"ha", "etcd", "http://127.0.0.1:2379,", "an empty URL in the list"},
    {"ha", "cluster", "a/b", "not a name (1 to 47 letters, digits, '.', '_' or '-')"},
    {"ha", "name", "node 1", "not a name (1 to 47 letters, digits, '.', '_' or '-')"},
    {"ha", "ttl_ms", "999", "out of range (1000..600000)"},
    {"ha", "max_lag_entries", "x", "not a number"},
    {"node", "data_dir", "", "empty: give the data directory's path"},
    {"node", "log_level", "verbose", R_LEVEL},
    {"node", "log_level", "INFO", R_LEVEL},
    {"node", "log_level", "warning", R_LEVEL},
    {"node", "log_level", "", R_LEVEL},
    {"ring", "name", "", R_NAME_LEN("")},
    {"ring", "name", ".orders", R_NAME_LEN(".orders")},
    {"ring", "name", NAME_48, R_NAME_LEN(NAME_48)},
    {"ring", "name", "or ders", R_NAME_CHAR("or ders", " ")},
    {"ring", "name", "a/b", R_NAME_CHAR("a/b", "/")},
    {"ring", "capacity", "abc", R_SIZE},
    {"ring", "capacity", "", R_SIZE},
    {"ring", "capacity", "M", R_SIZE},
    {"ring", "capacity", "1.5G", R_SIZE},
    {"ring", "capacity", "64 M", R_SIZE},
    {"ring", "capacity", "0x100000", R_SIZE},
    {"ring", "capacity", "+64M", R_SIZE},
    {"ring", "capacity", "64X", R_SUFFIX},
    {"ring", "capacity", "64MB", R_SUFFIX},
    {"ring", "capacity", "64MiB", R_SUFFIX},
    {"ring", "capacity", "32K", "out of range (64K..64G)"},
    {"ring", "capacity", "65535", "out of range (64K..64G)"},
    {"ring", "capacity", "0", "out of range (64K..64G)"},
    {"ring", "capacity", "128G", "out of range (64K..64G)"},
    {"ring", "capacity", "-64M", "out of range (64K..64G)"},
    {"ring", "capacity", "99999999999999999999", "out of range (64K..64G)"},
    {"ring", "capacity", "17179869184G", "out of range (64K..64G)"},
    {"ring", "capacity", "100M", "not a power of two (64M or 128M would be)"},
    {"ring", "capacity", "65537", "not a power of two (64K or 128K would be)"},
    {"ring", "capacity", "48G", "not a power of two (32G or 64G would be)"},
    {"ring", "unblock_timeout_ms", "9", "out of range (10..600000)"},
    {"ring", "unblock_timeout_ms", "600001", "out of range (10..600000)"},
    {"ring", "unblock_timeout_ms", "4294967306", "out of range (10..600000)"}, /* 2^32 + 10 */
    {"ring", "unblock_timeout_ms", "1s", R_NUMBER},
    {"ring", "unblock_timeout_ms", "1.5", R_NUMBER},
    {"ring", "unblock_timeout_ms", "+100", R_NUMBER},
    {"ring", "unblock_timeout_ms", "", R_NUMBER},
    {"drain", "batch_records", "0", "out of range (1..1000000)"},
    {"drain", "batch_records", "1000001", "out of range (1..1000000)"},
    {"drain", "batch_records", "-1", "out of range (1..1000000)"},
    {"drain", "batch_records", "8K", R_NUMBER},
    {"drain", "batch_records", "abc", R_NUMBER},
    {"drain", "batch_bytes", "1K", "out of range (4K..64M)"},
    {"drain", "batch_bytes", "4095", "out of range (4K..64M)"},
    {"drain", "batch_bytes", "65M", "out of range (4K..64M)"},
    {"drain", "batch_bytes", "1G", "out of range (4K..64M)"},
    {"drain", "batch_bytes", "4MiB", R_SUFFIX},
    {"drain", "batch_bytes", "four", R_SIZE},
    {"drain", "batch_time_us", "-1", "out of range (0..1000000)"},
    {"drain", "batch_time_us", "1000001", "out of range (0..1000000)"},
    {"drain", "batch_time_us", "1ms", R_NUMBER},
    {"drain", "zstd_level", "0", "out of range (1..19)"},
    {"drain", "zstd_level", "20", "out of range (1..19)"},
    {"drain", "zstd_level", "-3", "out of range (1..19)"},
    {"drain", "zstd_level", "fast", R_NUMBER},
    {"apply", "max_lag_entries", "0", "out of range (1..1000000)"},
    {"apply", "max_lag_entries", "1000001", "out of range (1..1000000)"},
    {"apply", "max_lag_entries", "lots", R_NUMBER},
    {"apply", "max_lag_bytes", "65G", "out of range (0..64G)"},
    {"apply", "max_lag_bytes", "16MB", R_SUFFIX},
    {"storage", "cache_mb", "15", "out of range (16..65536)"},
    {"storage", "cache_mb", "65537", "out of range (16..65536)"},
    {"storage", "cache_mb", "1G", R_NUMBER},
    {"node", "port", "7000", "unknown key (keys in [node] are role, data_dir, log_level)"},
    {"ring", "size", "64M", "unknown key (keys in [ring] are name, capacity, unblock_timeout_ms)"},
    {"drain", "batch_size", "100",
     "unknown key (keys in [drain] are batch_records, batch_bytes, batch_time_us, zstd_level)"},
    {"apply", "lag", "1", "unknown key (keys in [apply] are max_lag_entries, max_lag_bytes, max_lag_ms)"},
    {"storage", "cache", "1", "unknown key (keys in [storage] are cache_mb)"},
    {"checkpoint", "keep_hourly", "8785", "out of range (0..8784)"},
    {"checkpoint", "keep_daily", "3661", "out of range (0..3660)"},
    {"checkpoint", "keep_daily", "a week", R_NUMBER},
    {"checkpoint", "every_heights", "ten", R_SIZE},
    {"checkpoint", "height_producer", NAME_48, "not a producer name (at most 47 bytes)"},
    {"checkpoint", "trim_journal", "maybe", "not yes or no"},
    {"checkpoint", "trim_journal", "", "not yes or no"},
    {"metrics", "listen", "9187", "not ADDRESS:PORT (e.g. 127.0.0.1:9187, or [::1]:9187 for IPv6)"},
    {"metrics", "listen", ":9187", "not ADDRESS:PORT (e.g. 127.0.0.1:9187, or [::1]:9187 for IPv6)"},
    {"metrics", "listen", "::1:9187", "not ADDRESS:PORT (e.g. 127.0.0.1:9187, or [::1]:9187 for IPv6)"},
    {"metrics", "listen", "[::1]9187", "not ADDRESS:PORT (an IPv6 address is bracketed: [::1]:9187)"},
    {"metrics", "listen", "localhost:9187",
     "'localhost' is not an IPv4 address (no host names: write 127.0.0.1, not localhost)"},
    {"metrics", "listen", "127.0.0.256:9187",
     "'127.0.0.256' is not an IPv4 address (no host names: write 127.0.0.1, not localhost)"},
    {"metrics", "listen", "[::g]:9187", "'::g' is not an IPv6 address"},
    {"metrics", "listen", "127.0.0.1:0", "port '0' is not a number from 1 to 65535"},
    {"metrics", "listen", "127.0.0.1:65536", "port '65536' is not a number from 1 to 65535"},
    {"metrics", "listen", "127.0.0.1:-1", "port '-1' is not a number from 1 to 65535"},
    {"metrics", "listen", "127.0.0.1:91a", "port '91a' is not a number from 1 to 65535"},
    {"metrics", "listen", "127.0.0.1:", "port '' is not a number from 1 to 65535"},
    {"metrics", "port", "9187", "unknown key (keys in [metrics] are listen)"},
    {"Drain", "batch_records", "100", R_SECTIONS},
    {"replica", "port", "7000", R_SECTIONS},
};
#define N_BAD_VALUES (int)(sizeof bad_values / sizeof bad_values[0])

START_TEST(bad_value_is_refused_with_file_line_and_key)
{
    const struct bad_value *b = &bad_values[_i];
    struct node_config c, before;
    char text[512];

    /* from a file: the bad key on line 5, after a good one */
    snprintf(text, sizeof text, "# node\n[drain]\n%s = 5\n[%s]\n%s = %s\n",
             strcmp(b->key, "batch_time_us") == 0 ? "batch_records" : "batch_time_us", b->section, b->key,
             b->value);
    write_file(ini_path, text, strlen(text));
    node_config_defaults(&c);
    before = c;
    ck_assert_int_eq(node_config_load(ini_path, &c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err,
                     expect("%s:5: [%s] %s = %s: %s", ini_path, b->section, b->key, b->value, b->reason));
    ck_assert_msg(memcmp(&c, &before, sizeof c) == 0, "a failed load changed the config");

    /* from node_config_set: the origin instead of PATH:LINE */
    ck_assert_int_eq(node_config_set(&c, b->section, b->key, b->value, "--set", err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, expect("--set: [%s] %s = %s: %s", b->section, b->key, b->value, b->reason));
    ck_assert_msg(memcmp(&c, &before, sizeof c) == 0, "a failed set changed the config");
}
END_TEST

/* every_heights needs the producer whose heights it counts; yes/no forms */
START_TEST(height_trigger_needs_a_producer)
{
    struct node_config c;
    char dir[PATH_MAX];

    snprintf(dir, sizeof dir, "%s", tmp_dir);
    node_config_defaults(&c);
    ck_assert_int_eq(node_config_set(&c, "node", "data_dir", dir, "test", err, sizeof err), 0);
    ck_assert_int_eq(node_config_set(&c, "ring", "name", "r", "test", err, sizeof err), 0);
    ck_assert_int_eq(node_config_set(&c, "checkpoint", "every_heights", "100", "test", err, sizeof err), 0);
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_msg(strstr(err, "[checkpoint] every_heights = 100: needs height_producer"), "%s", err);
    ck_assert_int_eq(node_config_set(&c, "checkpoint", "height_producer", "matcher", "test", err, sizeof err),
                     0);
    ck_assert_msg(node_config_check(&c, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(c.ckpt_height_producer, "matcher");
    static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(node_config_set(&c, "checkpoint", "trim_journal", no[i], "test", err, sizeof err), 0);
        ck_assert(!c.trim_journal);
        ck_assert_int_eq(node_config_set(&c, "checkpoint", "trim_journal", yes[i], "test", err, sizeof err), 0);
        ck_assert(c.trim_journal);
    }
}
END_TEST

START_TEST(edge_values_are_accepted)
{
    struct node_config c;

    ck_assert_msg(load_text("[node]\n"
                            "role = primary\n"
                            "log_level = debug\n"
                            "data_dir = relative/dir\n"
                            "[ring]\n"
                            "name = a\n"
                            "capacity = 64K\n"
                            "unblock_timeout_ms = 10\n"
                            "[drain]\n"
                            "batch_records = 1\n"
                            "batch_bytes = 4096\n"
                            "batch_time_us = 0\n"
                            "zstd_level = 1\n"
                            "[apply]\n"
                            "max_lag_entries = 1\n"
                            "[storage]\n"
                            "cache_mb = 16\n",
                            &c) == 0,
                  "%s", err);
    ck_assert_int_eq(c.log_level, LOG_DEBUG);
    ck_assert_str_eq(c.data_dir, "relative/dir");
    ck_assert_str_eq(c.data_dir_origin, expect("%s:4", ini_path));
    ck_assert_str_eq(c.ring_name, "a");
    ck_assert_uint_eq(c.ring_capacity, 65536);
    ck_assert_uint_eq(c.unblock_timeout_ms, 10);
    ck_assert_uint_eq(c.batch_records, 1);
    ck_assert_uint_eq(c.batch_bytes, 4096);
    ck_assert_uint_eq(c.batch_time_us, 0);
    ck_assert_int_eq(c.zstd_level, 1);
    ck_assert_uint_eq(c.max_lag_entries, 1);
    ck_assert_uint_eq(c.cache_mb, 16);

    ck_assert_msg(load_text("[node]\n"
                            "log_level = error\n"
                            "[ring]\n"
                            "name = " NAME_48 "\n",
                            &c) != 0,
                  "48-character name accepted");
    ck_assert_msg(load_text("[node]\n"
                            "log_level = error\n"
                            "[ring]\n"
                            "name = Or_d-e.rs9012345678901234567890123456789012345\n" /* 47 */
                            "capacity = 64g\n"
                            "unblock_timeout_ms = 600000\n"
                            "[drain]\n"
                            "batch_records = 1000000\n"
                            "batch_bytes = 64m\n"
                            "batch_time_us = 1000000\n"
                            "zstd_level = 19\n"
                            "[apply]\n"
                            "max_lag_entries = 1000000\n"
                            "[storage]\n"
                            "cache_mb = 65536\n",
                            &c) == 0,
                  "%s", err);
    ck_assert_int_eq(c.log_level, LOG_ERROR);
    ck_assert_str_eq(c.ring_name, "Or_d-e.rs9012345678901234567890123456789012345");
    ck_assert_uint_eq(c.ring_capacity, 64ull << 30);
    ck_assert_uint_eq(c.unblock_timeout_ms, 600000);
    ck_assert_uint_eq(c.batch_records, 1000000);
    ck_assert_uint_eq(c.batch_bytes, 64u << 20);
    ck_assert_uint_eq(c.batch_time_us, 1000000);
    ck_assert_int_eq(c.zstd_level, 19);
    ck_assert_uint_eq(c.max_lag_entries, 1000000);
    ck_assert_uint_eq(c.cache_mb, 65536);

    ck_assert_msg(load_text("[node]\nlog_level = warn\n[ring]\ncapacity = 1G\n[drain]\nbatch_bytes = 4k\n"
                            "batch_records = 007\n",
                            &c) == 0,
                  "%s", err);
    ck_assert_int_eq(c.log_level, LOG_WARN);
    ck_assert_uint_eq(c.ring_capacity, 1u << 30);
    ck_assert_uint_eq(c.batch_bytes, 4096);
    ck_assert_uint_eq(c.batch_records, 7);

    /* [metrics] listen: IPv4 or bracketed IPv6, ports 1 and 65535 */
    static const char *const listens[] = {"127.0.0.1:9187", "0.0.0.0:1", "[::1]:65535", "[::]:9187", ""};
    for (size_t i = 0; i < sizeof listens / sizeof listens[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "[metrics]\nlisten = %s\n", listens[i]);
        ck_assert_msg(load_text(text, &c) == 0, "%s: %s", listens[i], err);
        ck_assert_str_eq(c.metrics_listen, listens[i]);
    }
}
END_TEST

START_TEST(set_overrides_what_the_file_said)
{
    struct node_config c;
    char path[PATH_MAX];

    source_file("config/primary.ini", path, sizeof path);
    node_config_defaults(&c);
    ck_assert_msg(node_config_load(path, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(node_config_set(&c, "drain", "batch_records", "100", "--set", err, sizeof err), 0);
    ck_assert_uint_eq(c.batch_records, 100);
    ck_assert_int_eq(node_config_set(&c, "drain", "batch_records", " 200\t", "--set", err, sizeof err), 0);
    ck_assert_uint_eq(c.batch_records, 200);
    ck_assert_int_eq(node_config_set(&c, "ring", "capacity", "1G", "--set", err, sizeof err), 0);
    ck_assert_uint_eq(c.ring_capacity, 1u << 30);
    ck_assert_int_eq(node_config_set(&c, "ring", "name", "trades", "RINGKEEP_RING", err, sizeof err), 0);
    ck_assert_str_eq(c.ring_name, "trades");
    ck_assert_int_eq(node_config_set(&c, "node", "log_level", "debug", "--set", err, sizeof err), 0);
    ck_assert_int_eq(c.log_level, LOG_DEBUG);
    ck_assert_int_eq(node_config_set(&c, "node", "data_dir", "/srv/rk", "--data-dir", err, sizeof err), 0);
    ck_assert_str_eq(c.data_dir, "/srv/rk");
    ck_assert_str_eq(c.data_dir_origin, "--data-dir");
    /* the rest is still what the file said */
    ck_assert_uint_eq(c.batch_bytes, 4u << 20);
    ck_assert_str_eq(c.file, path);

    /* a NULL origin is "--set" */
    ck_assert_int_eq(node_config_set(&c, "drain", "zstd_level", "99", NULL, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "--set: [drain] zstd_level = 99: out of range (1..19)");
    ck_assert_int_eq(node_config_set(&c, "ring", "name", "x", "--set", NULL, 0), 0);
    ck_assert_int_eq(node_config_set(NULL, "ring", "name", "x", "--set", err, sizeof err), RK_EINVAL);
    ck_assert_int_eq(node_config_set(&c, "ring", NULL, "x", "--set", err, sizeof err), RK_EINVAL);
}
END_TEST

/* ------------------------------------------------------------- file */

START_TEST(duplicate_key_names_both_lines)
{
    struct node_config c;

    ck_assert_int_eq(load_text("[drain]\nbatch_records = 10\n\nbatch_records = 20\n", &c), RK_EINVAL);
    ck_assert_str_eq(err,
                     expect("%s:4: [drain] batch_records = 20: given twice (first on line 2)", ini_path));

    /* in two [drain] sections too */
    ck_assert_int_eq(load_text("[drain]\nzstd_level = 3\n[ring]\nname = a\n[drain]\nzstd_level = 3\n", &c),
                     RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:6: [drain] zstd_level = 3: given twice (first on line 2)", ini_path));

    /* the same name in two sections is two keys; a repeated section is fine */
    ck_assert_msg(load_text("[node]\nrole = primary\n[ring]\nname = a\n[node]\nlog_level = warn\n", &c) == 0,
                  "%s", err);
}
END_TEST

START_TEST(syntax_error_names_its_line)
{
    struct node_config c;

    ck_assert_int_eq(load_text("[drain]\nbatch_records\n", &c), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:2: syntax error", ini_path));
    ck_assert_int_eq(load_text("# a comment\n[drain\nbatch_records = 5\n", &c), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:2: syntax error", ini_path));

    /* the first error in line order wins, whichever kind */
    ck_assert_int_eq(load_text("[drain]\nbatch_records = x\nbogus\n", &c), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:2: [drain] batch_records = x: not a number", ini_path));
    ck_assert_int_eq(load_text("[drain]\nbogus\nbatch_records = x\n", &c), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:2: syntax error", ini_path));
    ck_assert_int_eq(load_text("[drain]\nbatch_records = 5\nzstd_level = 0\nzstd_level = 1\nbogus\n", &c),
                     RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:3: [drain] zstd_level = 0: out of range (1..19)", ini_path));
}
END_TEST

START_TEST(key_before_any_section_is_refused)
{
    struct node_config c;

    ck_assert_int_eq(load_text("role = primary\n[node]\n", &c), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:1: [] role = primary: key before any [section] line", ini_path));
}
END_TEST

START_TEST(unknown_section_and_key_in_a_longer_file)
{
    struct node_config c;

    ck_assert_int_eq(load_text("[node]\nrole = primary\n\n[ring]\nname = orders\ncapacty = 1M\n", &c),
                     RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:6: [ring] capacty = 1M: unknown key (keys in [ring] are name, capacity, "
                                 "unblock_timeout_ms)",
                                 ini_path));
    ck_assert_int_eq(load_text("[node]\nrole = primary\n[replication]\n; peers\npeer = b:7000\n", &c),
                     RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:5: [replication] peer = b:7000: unknown key (keys in [replication] are "
                                 "publish, serve, primary_publish, primary_serve, node_id, min_replicas, "
                                 "heartbeat_ms, curve, curve_secret_key, curve_public_key, curve_server_key, "
                                 "authorized_keys, insecure_acks, on_higher_epoch)",
                                 ini_path));
    ck_assert_int_eq(load_text("[node]\nrole = primary\n[replica]\npeer = b:7000\n", &c), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:4: [replica] peer = b:7000: " R_SECTIONS, ini_path));
}
END_TEST

START_TEST(missing_file_passes_errno_through)
{
    struct node_config c, before;
    char path[PATH_MAX];

    snprintf(path, sizeof path, "%s/absent.ini", tmp_dir);
    node_config_defaults(&c);
    before = c;
    ck_assert_int_eq(node_config_load(path, &c, err, sizeof err), ENOENT);
    ck_assert_str_eq(err, expect("%s: cannot open: %s", path, strerror(ENOENT)));
    ck_assert(memcmp(&c, &before, sizeof c) == 0);

    /* a directory opens but cannot be read */
    ck_assert_int_eq(node_config_load(tmp_dir, &c, err, sizeof err), EISDIR);
    ck_assert_str_eq(err, expect("%s: cannot read: %s", tmp_dir, strerror(EISDIR)));

    /* no permission (unless running as root, who can read anything) */
    if (geteuid() != 0) {
        write_file(ini_path, "[node]\n", 7);
        ck_assert_int_eq(chmod(ini_path, 0), 0);
        ck_assert_int_eq(node_config_load(ini_path, &c, err, sizeof err), EACCES);
        ck_assert_str_eq(err, expect("%s: cannot open: %s", ini_path, strerror(EACCES)));
    }
    ck_assert_int_eq(node_config_load(NULL, &c, err, sizeof err), RK_EINVAL);
    ck_assert_int_eq(node_config_load(path, NULL, err, sizeof err), RK_EINVAL);
}
END_TEST

START_TEST(long_line_and_nul_byte_are_refused)
{
    static const char with_nul[] = "[node]\nrole = primary\ndata_dir = /a\0junk\n";
    struct node_config c;
    char text[1024], dir[256];

    /* "data_dir = " + 187 bytes = 198: the longest line inih takes whole */
    memset(dir, 'd', 187);
    dir[0] = '/';
    dir[187] = '\0';
    snprintf(text, sizeof text, "[node]\ndata_dir = %s\n", dir);
    ck_assert_msg(load_text(text, &c) == 0, "%s", err);
    ck_assert_str_eq(c.data_dir, dir);

    /* one more byte and inih would cut it in two lines */
    snprintf(text, sizeof text, "[node]\ndata_dir = %sd\nrole = primary\n", dir);
    ck_assert_int_eq(load_text(text, &c), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:2: line longer than 198 bytes", ini_path));

    /* a long comment is a long line too */
    memset(text, 0, sizeof text);
    memcpy(text, "[node]\n# ", 9);
    memset(text + 9, 'c', 300);
    strcat(text, "\n");
    ck_assert_int_eq(load_text(text, &c), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:2: line longer than 198 bytes", ini_path));

    /* an error on an earlier line comes first */
    snprintf(text, sizeof text, "[node]\nrole = x\ndata_dir = %sd\n", dir);
    ck_assert_int_eq(load_text(text, &c), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:2: [node] role = x: not a role (primary, standby)", ini_path));

    /* a NUL byte would hide the rest of its line */
    write_file(ini_path, with_nul, sizeof with_nul - 1);
    node_config_defaults(&c);
    ck_assert_int_eq(node_config_load(ini_path, &c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:3: NUL byte in the line", ini_path));
}
END_TEST

START_TEST(indented_lines_comments_and_crlf)
{
    struct node_config c;

    /* indented keys are keys, not continuations of the key above */
    ck_assert_msg(
        load_text("[drain]\n  batch_records = 5\n\tbatch_bytes = 8K\n  [apply]\n max_lag_entries = 9\n",
                  &c) == 0,
        "%s", err);
    ck_assert_uint_eq(c.batch_records, 5);
    ck_assert_uint_eq(c.batch_bytes, 8192);
    ck_assert_uint_eq(c.max_lag_entries, 9);

    /* comments: '#' and ';' at the start of a line, ';' after a value */
    ck_assert_msg(load_text("; one\n# two\n[drain]\n   # three\nbatch_records = 6 ; six records\n", &c) == 0,
                  "%s", err);
    ck_assert_uint_eq(c.batch_records, 6);

    /* CRLF line ends; "key: value" as configparser allows */
    ck_assert_msg(load_text("[drain]\r\nbatch_records = 7\r\nzstd_level: 3\r\n", &c) == 0, "%s", err);
    ck_assert_uint_eq(c.batch_records, 7);
    ck_assert_int_eq(c.zstd_level, 3);

    /* an empty file changes nothing */
    ck_assert_msg(load_text("", &c) == 0, "%s", err);
    expect_defaults_except_required(&c);
    ck_assert_str_eq(c.file, ini_path);
}
END_TEST

START_TEST(error_is_cut_to_its_buffer)
{
    struct node_config c;
    char small[16];

    write_file(ini_path, "[drain]\nbatch_records = x\n", strlen("[drain]\nbatch_records = x\n"));
    node_config_defaults(&c);
    memset(small, 'z', sizeof small);
    ck_assert_int_eq(node_config_load(ini_path, &c, small, sizeof small), RK_EINVAL);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    ck_assert_int_eq(strncmp(small, ini_path, sizeof small - 1), 0);
    ck_assert_int_eq(node_config_load(ini_path, &c, NULL, 0), RK_EINVAL);
}
END_TEST

/* ------------------------------------------------------------- check */

START_TEST(check_wants_an_existing_data_directory)
{
    struct node_config c;
    char file_path[PATH_MAX], text[PATH_MAX + 64];

    /* not set */
    ck_assert_int_eq(load_text("[ring]\nname = orders\n", &c), 0);
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err,
                     expect("%s: [node] data_dir is not set: it is required and has no default", ini_path));
    node_config_defaults(&c);
    ck_assert_int_eq(node_config_set(&c, "ring", "name", "orders", "--set", err, sizeof err), 0);
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [node] data_dir is not set: it is required and has no default");

    /* missing, named with the line it came from */
    ck_assert_int_eq(load_text("[ring]\nname = orders\n[node]\ndata_dir = /nonexistent/ringkeep\n", &c), 0);
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, expect("%s:4: [node] data_dir = /nonexistent/ringkeep: data directory "
                                 "/nonexistent/ringkeep does not exist: create it first",
                                 ini_path));

    /* missing, from an override */
    ck_assert_int_eq(node_config_set(&c, "node", "data_dir", "/nonexistent/x", "--set", err, sizeof err), 0);
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "--set: [node] data_dir = /nonexistent/x: data directory /nonexistent/x does not "
                          "exist: create it first");

    /* a file, not a directory */
    snprintf(file_path, sizeof file_path, "%s/plain", tmp_dir);
    write_file(file_path, "x", 1);
    snprintf(text, sizeof text, "[ring]\nname = orders\n[node]\ndata_dir = %s\n", file_path);
    ck_assert_int_eq(load_text(text, &c), 0);
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(
        err, expect("%s:4: [node] data_dir = %s: %s is not a directory", ini_path, file_path, file_path));

    /* a directory */
    snprintf(text, sizeof text, "[ring]\nname = orders\n[node]\ndata_dir = %s\n", tmp_dir);
    ck_assert_int_eq(load_text(text, &c), 0);
    ck_assert_msg(node_config_check(&c, err, sizeof err) == 0, "%s", err);
}
END_TEST

START_TEST(endpoint_lists_pair_the_cluster_nodes)
{
    struct node_config c;
    char list[CONFIG_NODES_MAX][CONFIG_ENDPOINT_MAX + 1], text[PATH_MAX + 256];

    node_config_defaults(&c);
    /* one endpoint, as before; a list with blanks around its commas */
    ck_assert_int_eq(
        node_config_set(&c, "replication", "primary_publish", "tcp://a:1", NULL, err, sizeof err), 0);
    ck_assert_uint_eq(node_config_endpoints(c.repl_primary_publish, list, CONFIG_NODES_MAX), 1);
    ck_assert_str_eq(list[0], "tcp://a:1");
    ck_assert_int_eq(node_config_set(&c, "replication", "primary_publish",
                                     "tcp://a:1 , ipc:///run/b,tcp://c:3", NULL, err, sizeof err),
                     0);
    ck_assert_uint_eq(node_config_endpoints(c.repl_primary_publish, list, CONFIG_NODES_MAX), 3);
    ck_assert_str_eq(list[0], "tcp://a:1");
    ck_assert_str_eq(list[1], "ipc:///run/b");
    ck_assert_str_eq(list[2], "tcp://c:3");
    ck_assert_uint_eq(node_config_endpoints(c.repl_primary_publish, list, 1), 3); /* counts past max */
    ck_assert_uint_eq(node_config_endpoints("", NULL, 0), 0);

    /* refused: an empty item, a trailing comma, something else than an endpoint, too many */
    ck_assert_int_eq(
        node_config_set(&c, "replication", "primary_serve", "tcp://a:1,,tcp://b:2", NULL, err, sizeof err),
        RK_EINVAL);
    ck_assert_str_eq(
        err, "--set: [replication] primary_serve = tcp://a:1,,tcp://b:2: endpoint 2 of the list is empty");
    ck_assert_int_eq(node_config_set(&c, "replication", "primary_serve", "tcp://a:1,", NULL, err, sizeof err),
                     RK_EINVAL);
    ck_assert_str_eq(err, "--set: [replication] primary_serve = tcp://a:1,: the list ends with a comma");
    ck_assert_int_eq(
        node_config_set(&c, "replication", "primary_serve", "tcp://a:1,http://b", NULL, err, sizeof err),
        RK_EINVAL);
    ck_assert_str_eq(err, "--set: [replication] primary_serve = tcp://a:1,http://b: not a ZeroMQ endpoint "
                          "(tcp://HOST:PORT or ipc://PATH)");
    text[0] = '\0';
    for (int i = 0; i <= CONFIG_NODES_MAX; i++)
        strcat(text, i ? ",tcp://h:1" : "tcp://h:1");
    ck_assert_int_eq(node_config_set(&c, "replication", "primary_serve", text, NULL, err, sizeof err),
                     RK_EINVAL);
    ck_assert_msg(strstr(err, ": more than 16 endpoints"), "%s", err);

    /* the i-th of each list is one node: as many in each */
    snprintf(text, sizeof text,
             "[node]\nrole = standby\ndata_dir = %s\n[replication]\nnode_id = s\n"
             "primary_publish = tcp://a:1, tcp://b:1\nprimary_serve = tcp://a:2\n",
             tmp_dir);
    ck_assert_int_eq(load_text(text, &c), 0);
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err,
                     expect("%s: [replication] primary_publish and primary_serve: as many endpoints in each "
                            "(the i-th of one and the i-th of the other are one node's)",
                            ini_path));
    ck_assert_int_eq(
        node_config_set(&c, "replication", "primary_serve", "tcp://a:2,tcp://b:2", NULL, err, sizeof err), 0);
    ck_assert_msg(node_config_check(&c, err, sizeof err) == 0, "%s", err);
}
END_TEST

START_TEST(check_wants_a_ring_name_and_role_primary)
{
    struct node_config c;
    char text[PATH_MAX + 64];

    snprintf(text, sizeof text, "[node]\ndata_dir = %s\n", tmp_dir);
    ck_assert_int_eq(load_text(text, &c), 0);
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(
        err, expect("%s: [ring] name is not set: it is required (the ring engines attach to)", ini_path));

    /* a struct filled by code is held to the same rules as the file */
    ck_assert_int_eq(node_config_set(&c, "ring", "name", "orders", "--set", err, sizeof err), 0);
    ck_assert_msg(node_config_check(&c, err, sizeof err) == 0, "%s", err);
    c.file[0] = '\0';

    strcpy(c.role, "standby");
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [node] role = standby: needs [replication] primary_publish, "
                          "primary_serve and node_id");
    strcpy(c.repl_primary_publish, "tcp://127.0.0.1:7701");
    strcpy(c.repl_primary_serve, "tcp://127.0.0.1:7702");
    strcpy(c.repl_node_id, "standby-a");
    ck_assert_msg(node_config_check(&c, err, sizeof err) == 0, "%s", err);
    c.repl_primary_publish[0] = c.repl_primary_serve[0] = c.repl_node_id[0] = '\0';
    /* a primary that rejoins as a standby needs what a standby needs */
    strcpy(c.role, "primary");
    c.rejoin_on_higher_epoch = true;
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [replication] on_higher_epoch = rejoin: needs what a standby of the "
                          "other nodes needs: primary_publish, primary_serve, node_id");
    strcpy(c.repl_primary_publish, "tcp://127.0.0.1:7701");
    strcpy(c.repl_primary_serve, "tcp://127.0.0.1:7702");
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    strcpy(c.repl_node_id, "node-a");
    ck_assert_msg(node_config_check(&c, err, sizeof err) == 0, "%s", err);
    c.rejoin_on_higher_epoch = false;
    c.repl_primary_publish[0] = c.repl_primary_serve[0] = c.repl_node_id[0] = '\0';
    strcpy(c.role, "");
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [node] role = : not a role (primary, standby)");
    strcpy(c.role, "primary");
    strcpy(c.repl_publish, "tcp://127.0.0.1:7701");
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [replication] publish and serve: set both or neither");
    c.repl_publish[0] = '\0';
    c.repl_min_replicas = 1;
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [replication] min_replicas = 1: needs publish and serve (standbys to ack)");
    /* acks must be authenticated: curve = yes, or insecure_acks = yes said outright */
    strcpy(c.repl_publish, "tcp://127.0.0.1:7701");
    strcpy(c.repl_serve, "tcp://127.0.0.1:7702");
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [replication] min_replicas = 1 without curve: acknowledgements would not be "
                          "authenticated (any peer could ack under a standby's name); set curve = yes with each "
                          "standby's key bound to its node_id in authorized_keys, or insecure_acks = yes on a "
                          "network only trusted peers reach");
    c.insecure_acks = true;
    ck_assert_msg(node_config_check(&c, err, sizeof err) == 0, "%s", err);
    c.insecure_acks = false;
    c.repl_publish[0] = c.repl_serve[0] = '\0';
    c.repl_min_replicas = 0;
    /* CURVE half configured */
    c.curve = true;
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [replication] curve = yes: needs curve_secret_key, curve_public_key and "
                          "authorized_keys (the standbys' keys)");
    c.curve = false;
    strcpy(c.curve_secret_key, "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6");
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [replication] CURVE keys are set but curve = no: set curve = yes or "
                          "remove them");
    c.curve_secret_key[0] = '\0';

    strcpy(c.ring_name, "bad name");
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [ring] name = bad name: " R_NAME_CHAR("bad name", " "));
    strcpy(c.ring_name, "orders");

    c.ring_capacity = 1000;
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [ring] capacity = 1000: out of range (64K..64G)");
    c.ring_capacity = 3u << 20;
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [ring] capacity = 3M: not a power of two (2M or 4M would be)");
    c.ring_capacity = 64u << 20;

    c.zstd_level = -1;
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [drain] zstd_level = -1: out of range (1..19)");
    c.zstd_level = 1;

    c.cache_mb = 0;
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [storage] cache_mb = 0: out of range (16..65536)");
    c.cache_mb = 256;

    c.log_level = 7;
    ck_assert_int_eq(node_config_check(&c, err, sizeof err), RK_EINVAL);
    ck_assert_str_eq(err, "configuration: [node] log_level = 7: not a log level (debug, info, warn, error)");
    c.log_level = LOG_WARN;

    ck_assert_msg(node_config_check(&c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(node_config_check(NULL, err, sizeof err), RK_EINVAL);
}
END_TEST

/* ------------------------------------------------------------- log */

static void log_basic(void *arg)
{
    (void)arg;
    log_set_level(LOG_DEBUG);
    log_msg(LOG_INFO, "drain started", "ring=%s n=%d", "orders", 5);
    log_msg(LOG_DEBUG, "batch cut", "records=%u", 8192u);
    log_msg(LOG_WARN, "apply behind", NULL);
    log_msg(LOG_ERROR, "fsync failed", "errno=%d", 5);
}

START_TEST(log_lines_are_logfmt)
{
    char *out = capture_stderr(log_basic, NULL);
    char *lines[8];

    ck_assert_int_eq(split_lines(out, lines, 8), 4);
    ck_assert_int_eq(check_line(lines[0], "info", "drain started"), 5);
    ck_assert_str_eq(fields[3].key, "ring");
    ck_assert_str_eq(fields[3].value, "orders");
    ck_assert_str_eq(fields[4].key, "n");
    ck_assert_str_eq(fields[4].value, "5");
    ck_assert_str_eq(strstr(lines[0], " level="), " level=info msg=\"drain started\" ring=orders n=5");
    ck_assert_int_eq(check_line(lines[1], "debug", "batch cut"), 4);
    ck_assert_int_eq(check_line(lines[2], "warn", "apply behind"), 3);
    ck_assert_str_eq(strstr(lines[2], " level="), " level=warn msg=\"apply behind\"");
    ck_assert_int_eq(check_line(lines[3], "error", "fsync failed"), 4);
    free(out);
}
END_TEST

static const char tricky_msg[] = "say \"hi\" \\ back\\slash\nnew line\r\ttab \x01\x1f\x7f end \xc3\xa9";

static void log_tricky(void *arg)
{
    (void)arg;
    log_msg(LOG_INFO, tricky_msg, "path=\"%s\" note=%s", "/a b", "x\ny");
    log_msg(LOG_INFO, "", NULL);
    log_msg(LOG_INFO, NULL, "k=v");
}

START_TEST(log_msg_is_quoted_and_unquotes_to_what_was_logged)
{
    char *out = capture_stderr(log_tricky, NULL);
    char *lines[8];

    ck_assert_int_eq(split_lines(out, lines, 8), 3);
    ck_assert_int_eq(check_line(lines[0], "info", tricky_msg), 5);
    ck_assert_str_eq(strstr(lines[0], " msg="),
                     " msg=\"say \\\"hi\\\" \\\\ back\\\\slash\\nnew line\\r\\ttab "
                     "\\u0001\\u001f\\u007f end \xc3\xa9\" path=\"/a b\" "
                     "note=x\\ny");
    ck_assert_str_eq(fields[3].key, "path");
    ck_assert_str_eq(fields[3].value, "/a b");
    ck_assert_str_eq(fields[4].key, "note");
    ck_assert_str_eq(fields[4].value, "x\\ny"); /* the caller's field: kept on one line */
    ck_assert_int_eq(check_line(lines[1], "info", ""), 3);
    ck_assert_int_eq(check_line(lines[2], "info", ""), 4);
    free(out);
}
END_TEST

static void log_levels(void *arg)
{
    (void)arg;
    log_set_level(LOG_WARN);
    log_msg(LOG_DEBUG, "d", NULL);
    log_msg(LOG_INFO, "i", NULL);
    log_msg(LOG_WARN, "w", NULL);
    log_msg(LOG_ERROR, "e", NULL);
    log_set_level(LOG_ERROR);
    log_msg(LOG_WARN, "w2", NULL);
    log_msg(LOG_ERROR, "e2", NULL);
    log_set_level(LOG_DEBUG);
    log_msg(LOG_DEBUG, "d3", NULL);
}

START_TEST(log_level_filters_lines)
{
    char *out = NULL;
    char *lines[8];
    int level = -1;

    out = capture_stderr(log_levels, NULL);
    ck_assert_int_eq(split_lines(out, lines, 8), 4);
    check_line(lines[0], "warn", "w");
    check_line(lines[1], "error", "e");
    check_line(lines[2], "error", "e2");
    check_line(lines[3], "debug", "d3");
    free(out);

    log_set_level(99);
    ck_assert_int_eq(log_get_level(), LOG_ERROR);
    log_set_level(-5);
    ck_assert_int_eq(log_get_level(), LOG_DEBUG);

    ck_assert_int_eq(log_level_parse("debug", &level), 0);
    ck_assert_int_eq(level, LOG_DEBUG);
    ck_assert_int_eq(log_level_parse("info", &level), 0);
    ck_assert_int_eq(level, LOG_INFO);
    ck_assert_int_eq(log_level_parse("warn", &level), 0);
    ck_assert_int_eq(level, LOG_WARN);
    ck_assert_int_eq(log_level_parse("error", &level), 0);
    ck_assert_int_eq(level, LOG_ERROR);
    level = -1;
    ck_assert_int_eq(log_level_parse("warning", &level), RK_EINVAL);
    ck_assert_int_eq(log_level_parse("WARN", &level), RK_EINVAL);
    ck_assert_int_eq(log_level_parse("", &level), RK_EINVAL);
    ck_assert_int_eq(log_level_parse(NULL, &level), RK_EINVAL);
    ck_assert_int_eq(log_level_parse("info", NULL), RK_EINVAL);
    ck_assert_int_eq(level, -1);
}
END_TEST

static char long_msg[3 * LOG_LINE_MAX];

static void log_long(void *arg)
{
    (void)arg;
    memset(long_msg, '"', sizeof long_msg - 1); /* every byte doubles when escaped */
    log_msg(LOG_INFO, long_msg, "k=%s", "v");
    memset(long_msg, 'x', sizeof long_msg - 1);
    log_msg(LOG_INFO, "short", "big=%s", long_msg);
    errno = EDQUOT;
    log_msg(LOG_INFO, "errno kept", NULL);
    ck_assert_int_eq(errno, EDQUOT);
}

START_TEST(long_line_is_cut_and_marked)
{
    char *out = capture_stderr(log_long, NULL);
    char *lines[8];
    int n = 0;

    ck_assert_int_eq(split_lines(out, lines, 8), 3);
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_le(strlen(lines[i]) + 1, LOG_LINE_MAX);
        ck_assert_uint_ge(strlen(lines[i]) + 1, LOG_LINE_MAX - 64);
    }
    n = check_line(lines[0], "info", NULL);
    ck_assert_int_eq(n, 4);
    ck_assert_uint_gt(strlen(fields[2].value), 1000);
    ck_assert_uint_eq(strspn(fields[2].value, "\""), strlen(fields[2].value)); /* no escape cut in half */
    ck_assert_str_eq(fields[3].key, "truncated");
    ck_assert_str_eq(fields[3].value, "true");
    n = check_line(lines[1], "info", "short");
    ck_assert_int_eq(n, 5);
    ck_assert_str_eq(fields[3].key, "big");
    ck_assert_str_eq(fields[4].key, "truncated");
    check_line(lines[2], "info", "errno kept");
    free(out);
}
END_TEST

#define N_THREADS 4
#define N_LINES_PER_THREAD 2000

static void *log_from_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    char pad[301];

    memset(pad, 'a' + t, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < N_LINES_PER_THREAD; i++)
        log_msg(LOG_INFO, "from a thread", "thread=%d seq=%d pad=%s", t, i, pad);
    return NULL;
}

static void log_threads(void *arg)
{
    pthread_t threads[N_THREADS];

    (void)arg;
    for (int t = 0; t < N_THREADS; t++)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, log_from_thread, (void *)(intptr_t)t), 0);
    for (int t = 0; t < N_THREADS; t++)
        ck_assert_int_eq(pthread_join(threads[t], NULL), 0);
}

START_TEST(lines_from_threads_do_not_interleave)
{
    static char *lines[N_THREADS * N_LINES_PER_THREAD + 1];
    char *out = NULL;
    int next_seq[N_THREADS] = {0};
    int n = 0;

    log_set_level(LOG_INFO);
    out = capture_stderr(log_threads, NULL);
    n = split_lines(out, lines, N_THREADS * N_LINES_PER_THREAD + 1);
    ck_assert_int_eq(n, N_THREADS * N_LINES_PER_THREAD);
    for (int i = 0; i < n; i++) {
        int t = -1, seq = -1;

        ck_assert_int_eq(check_line(lines[i], "info", "from a thread"), 6);
        t = atoi(fields[3].value);
        seq = atoi(fields[4].value);
        ck_assert_int_ge(t, 0);
        ck_assert_int_lt(t, N_THREADS);
        ck_assert_int_eq(seq, next_seq[t]); /* each thread's lines, whole and in order */
        next_seq[t]++;
        ck_assert_uint_eq(strlen(fields[5].value), 300);
        ck_assert_uint_eq(strspn(fields[5].value, (char[]){(char)('a' + t), '\0'}), 300);
    }
    free(out);
}
END_TEST

/* ------------------------------------------------------------- suite */

static TCase *new_tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);

    tcase_add_checked_fixture(tc, setup, teardown);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc;

    tc = new_tcase(s, "example");
    tcase_add_test(tc, defaults_are_documented_values);
    tcase_add_test(tc, example_primary_ini_loads_with_defaults);
    tcase_add_test(tc, example_primary_ini_comments_every_key);

    tc = new_tcase(s, "values");
    tcase_add_loop_test(tc, bad_value_is_refused_with_file_line_and_key, 0, N_BAD_VALUES);
    tcase_add_test(tc, edge_values_are_accepted);
    tcase_add_test(tc, height_trigger_needs_a_producer);
    tcase_add_test(tc, set_overrides_what_the_file_said);

    tc = new_tcase(s, "file");
    tcase_add_test(tc, duplicate_key_names_both_lines);
    tcase_add_test(tc, syntax_error_names_its_line);
    tcase_add_test(tc, key_before_any_section_is_refused);
    tcase_add_test(tc, unknown_section_and_key_in_a_longer_file);
    tcase_add_test(tc, missing_file_passes_errno_through);
    tcase_add_test(tc, long_line_and_nul_byte_are_refused);
    tcase_add_test(tc, indented_lines_comments_and_crlf);
    tcase_add_test(tc, error_is_cut_to_its_buffer);

    tc = new_tcase(s, "check");
    tcase_add_test(tc, check_wants_an_existing_data_directory);
    tcase_add_test(tc, check_wants_a_ring_name_and_role_primary);
    tcase_add_test(tc, endpoint_lists_pair_the_cluster_nodes);
    tcase_add_test(tc, ha_section_needs_cluster_name_and_both_roles);

    tc = new_tcase(s, "log");
    tcase_add_test(tc, log_lines_are_logfmt);
    tcase_add_test(tc, log_msg_is_quoted_and_unquotes_to_what_was_logged);
    tcase_add_test(tc, log_level_filters_lines);
    tcase_add_test(tc, long_line_is_cut_and_marked);
    tcase_add_test(tc, lines_from_threads_do_not_interleave);
    return s;
}

int main(void)
{
    SRunner *sr;
    int n_failed;

    runner_pid = getpid();
    sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    n_failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_test_dirs();
    return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
