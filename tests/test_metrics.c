/* test_metrics.c -- [metrics] listen and `ringkeep top`, end to end: a
 * node forked with the metrics endpoint, this process writing records
 * through the ring and scraping over loopback (a plain socket client:
 * GET /metrics, HTTP/1.1) while it writes.  Every scrape goes through a
 * strict parser of the Prometheus text exposition format 0.0.4 (with the
 * rules promtool's lint adds: counters end in _total, every family has
 * HELP and TYPE; histograms cumulative and ending at +Inf = _count); its
 * own case feeds it broken texts so that it is seen to fail.  The values
 * are checked against what was written: records, bytes (from the LSNs the
 * ring gave), batches and journal against the node's status, checkpoint
 * size against the file, standby lags against the standby's own figures.
 * `ringkeep top --count N` (stdout a pipe: one line per interval) is run
 * against the node and its printed figures checked the same way.
 *
 * Ports: 12000 + (pid % 2000) * 4 .. + 3 (test_repl takes 8000..11999).
 * No time limits: every wait is bounded polling that fails the test
 * instead of hanging.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node/client.h"
#include "node/node.h"
#include "node_harness.h"
#include "persist/config.h"
#include "persist/store.h"
#include "ringkeep.h"
#include "shm/ring.h"

#define BOUND_S 120 /* no wait here takes this long unless broken */

static const char *cli_path; /* the ringkeep binary (argv[1]) */
static char data_dir[256], standby_dir[256], ring_name[64];
static char publish_ep[64], serve_ep[64];
static int port_base;

/* ------------------------------------------------------------ scraping */

/* GET path from 127.0.0.1:port (method: "GET", "POST"): the status code,
 * the Content-Type header and the body (malloc'd, NUL-terminated).  0, or
 * an errno when it cannot connect. */
static int http_get(int port, const char *method, const char *path, int *status, char *ctype, size_t ctype_size,
                    char **body)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 30}; /* a hang guard, not a time limit on the server */
    char req[256], *buf = NULL, *p = NULL, *end_headers = NULL;
    size_t len = 0, cap = 1 << 16;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = 0;

    ck_assert_int_ge(fd, 0);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        rc = errno;
        close(fd);
        return rc;
    }
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", method, path,
             port);
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        ck_assert_msg(n >= 0, "reading the metrics: %s", strerror(errno));
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    ck_assert_msg(sscanf(buf, "HTTP/1.1 %d", status) == 1, "not an HTTP answer: %.200s", buf);
    end_headers = strstr(buf, "\r\n\r\n");
    ck_assert_ptr_nonnull(end_headers);
    *end_headers = '\0';
    ctype[0] = '\0';
    p = strcasestr(buf, "\r\nContent-Type: ");
    if (p)
        snprintf(ctype, ctype_size, "%.*s", (int)strcspn(p + 16, "\r"), p + 16);
    /* the body is Content-Length bytes, exactly */
    p = strcasestr(buf, "\r\nContent-Length: ");
    ck_assert_msg(p != NULL, "no Content-Length in %s", buf);
    size_t clen = strtoul(p + 18, NULL, 10);
    ck_assert_uint_eq(clen, len - (size_t)(end_headers + 4 - buf));
    *body = strdup(end_headers + 4);
    free(buf);
    return 0;
}

/* ------------------------------------------------------------ the parser */

#define EXPO_MAX 512

struct expo_sample {
    char name[128];
    char labels[256]; /* canonical: label pairs as written, le="..." included */
    double value;
};

struct expo_family {
    char name[128];
    char type[16];
    int has_help, has_type, has_samples;
};

struct expo {
    struct expo_sample s[EXPO_MAX];
    size_t n;
    struct expo_family f[EXPO_MAX];
    size_t n_families;
};

static int name_start(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static int name_char(int c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

/* A metric name at p: its length (0: none). */
static size_t metric_name(const char *p)
{
    size_t n = 0;

    if (!name_start((unsigned char)p[0]))
        return 0;
    while (name_char((unsigned char)p[n]))
        n++;
    return n;
}

/* A sample value as Go's ParseFloat reads Prometheus's: a decimal float,
 * NaN, +Inf or -Inf (no hex, no "inf"). */
static int parse_value(const char *text, double *v)
{
    char *end = NULL;

    if (!strcmp(text, "NaN")) {
        *v = NAN;
        return 0;
    }
    if (!strcmp(text, "+Inf") || !strcmp(text, "-Inf")) {
        *v = text[0] == '+' ? INFINITY : -INFINITY;
        return 0;
    }
    if (!text[0] || strpbrk(text, "xXnNiI"))
        return -1;
    *v = strtod(text, &end);
    return *end ? -1 : 0;
}

static struct expo_family *family_of(struct expo *e, const char *name)
{
    for (size_t i = 0; i < e->n_families; i++)
        if (!strcmp(e->f[i].name, name))
            return &e->f[i];
    return NULL;
}

/* The family a sample name belongs to: a histogram's or summary's base
 * name for its _bucket, _sum and _count series, else the name itself. */
static struct expo_family *sample_family(struct expo *e, const char *name, const char **suffix)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    char base[128];

    *suffix = "";
    for (size_t i = 0; i < 3; i++) {
        size_t nl = strlen(name), sl = strlen(suffixes[i]);
        if (nl > sl && !strcmp(name + nl - sl, suffixes[i])) {
            snprintf(base, sizeof base, "%.*s", (int)(nl - sl), name);
            struct expo_family *f = family_of(e, base);
            if (f && (!strcmp(f->type, "histogram") || (!strcmp(f->type, "summary") && i > 0))) {
                *suffix = suffixes[i];
                return f;
            }
        }
    }
    return family_of(e, name);
}

#define FAIL(...)                                                                                              \
    do {                                                                                                       \
        snprintf(why, why_size, __VA_ARGS__);                                                                  \
        return -1;                                                                                             \
    } while (0)

/* The label set at *p ("{...}"): checked, copied canonically into out; *p
 * moves past it.  le: the value of the le label ("" if none). */
static int parse_labels(const char **p, char *out, size_t out_size, char *le, size_t le_size, int line,
                        char *why, size_t why_size)
{
    const char *q = *p + 1;
    size_t len = 0;
    char names[16][64];
    int n_names = 0;

    le[0] = '\0';
    out[0] = '\0';
    while (*q != '}') {
        size_t nl = 0;
        char value[256];
        size_t vl = 0;
        if (!((q[0] >= 'a' && q[0] <= 'z') || (q[0] >= 'A' && q[0] <= 'Z') || q[0] == '_'))
            FAIL("line %d: bad label name at '%.20s'", line, q);
        while (name_char((unsigned char)q[nl]) && q[nl] != ':')
            nl++;
        if (nl >= 2 && q[0] == '_' && q[1] == '_')
            FAIL("line %d: label names starting with __ are reserved", line);
        if (n_names == 16 || nl >= 64)
            FAIL("line %d: too many or too long labels", line);
        for (int i = 0; i < n_names; i++)
            if (strlen(names[i]) == nl && !strncmp(names[i], q, nl))
                FAIL("line %d: label %.*s given twice", line, (int)nl, q);
        snprintf(names[n_names++], 64, "%.*s", (int)nl, q);
        if (q[nl] != '=' || q[nl + 1] != '"')
            FAIL("line %d: label %.*s: want =\"", line, (int)nl, q);
        const char *v = q + nl + 2;
        while (*v != '"') {
            if (*v == '\0' || *v == '\n')
                FAIL("line %d: label value not closed", line);
            if (*v == '\\') {
                if (v[1] != '\\' && v[1] != '"' && v[1] != 'n')
                    FAIL("line %d: bad escape \\%c in a label value", line, v[1]);
                if (vl + 1 < sizeof value)
                    value[vl++] = v[1] == 'n' ? '\n' : v[1];
                v += 2;
                continue;
            }
            if ((unsigned char)*v >= 0x80)
                FAIL("line %d: non-ASCII byte in a label value (ringkeep writes ASCII)", line);
            if (vl + 1 < sizeof value)
                value[vl++] = *v;
            v++;
        }
        value[vl] = '\0';
        if (nl == 2 && !strncmp(q, "le", 2))
            snprintf(le, le_size, "%s", value);
        else
            len += (size_t)snprintf(out + len, out_size > len ? out_size - len : 0, "%.*s=\"%s\",", (int)nl, q,
                                    value);
        q = v + 1;
        if (*q == ',')
            q++;
        else if (*q != '}')
            FAIL("line %d: want , or } after a label", line);
    }
    *p = q + 1;
    return 0;
}

/* Parses text (a whole exposition) into e; -1 with the reason in why. */
static int expo_parse(const char *text, struct expo *e, char *why, size_t why_size)
{
    const char *p = text;
    int line = 0;
    struct expo_family *current = NULL;
    /* histogram state of the series being read */
    char h_labels[256] = "";
    double h_last_le = -INFINITY, h_last_count = 0, h_inf = -1;
    int h_sum = 0;

    memset(e, 0, sizeof *e);
    if (!*text)
        FAIL("empty exposition");
    if (text[strlen(text) - 1] != '\n')
        FAIL("the last line does not end with a newline");
    while (*p) {
        const char *eol = strchr(p, '\n');
        char l[1024];
        line++;
        if ((size_t)(eol - p) >= sizeof l)
            FAIL("line %d is too long", line);
        snprintf(l, sizeof l, "%.*s", (int)(eol - p), p);
        p = eol + 1;
        if (!l[0])
            continue; /* the format allows blank lines */
        if (l[0] == '#') {
            char kw[8];
            if (strncmp(l, "# HELP ", 7) && strncmp(l, "# TYPE ", 7))
                continue; /* a comment */
            snprintf(kw, sizeof kw, "%.4s", l + 2);
            const char *name = l + 7;
            size_t nl = metric_name(name);
            if (!nl || name[nl] != ' ')
                FAIL("line %d: # %s wants a metric name and text", line, kw);
            char fname[128];
            snprintf(fname, sizeof fname, "%.*s", (int)nl, name);
            struct expo_family *f = family_of(e, fname);
            if (!f) {
                if (e->n_families == EXPO_MAX)
                    FAIL("too many families");
                f = &e->f[e->n_families++];
                snprintf(f->name, sizeof f->name, "%s", fname);
            } else if (f != current) {
                FAIL("line %d: family %s is not contiguous (met before)", line, fname);
            }
            if (f->has_samples)
                FAIL("line %d: # %s %s after its samples", line, kw, fname);
            const char *rest = name + nl + 1;
            if (!strcmp(kw, "HELP")) {
                if (f->has_help)
                    FAIL("line %d: second HELP for %s", line, fname);
                for (const char *q = rest; *q; q++)
                    if (*q == '\\' && q[1] != '\\' && q[1] != 'n')
                        FAIL("line %d: bad escape in HELP", line);
                    else if (*q == '\\')
                        q++;
                if (!*rest)
                    FAIL("line %d: empty HELP for %s", line, fname);
                f->has_help = 1;
            } else {
                if (f->has_type)
                    FAIL("line %d: second TYPE for %s", line, fname);
                if (strcmp(rest, "counter") && strcmp(rest, "gauge") && strcmp(rest, "histogram") &&
                    strcmp(rest, "summary") && strcmp(rest, "untyped"))
                    FAIL("line %d: unknown type '%s'", line, rest);
                snprintf(f->type, sizeof f->type, "%s", rest);
                f->has_type = 1;
            }
            current = f;
            continue;
        }
        /* a sample: name[{labels}] value [timestamp] */
        struct expo_sample *s = &e->s[e->n];
        const char *q = l, *suffix = "";
        char le[256] = "", value[64];
        size_t nl = metric_name(q);
        if (!nl)
            FAIL("line %d: bad metric name: %.80s", line, l);
        if (e->n == EXPO_MAX)
            FAIL("too many samples");
        snprintf(s->name, sizeof s->name, "%.*s", (int)nl, q);
        q += nl;
        if (*q == '{' && parse_labels(&q, s->labels, sizeof s->labels, le, sizeof le, line, why, why_size))
            return -1;
        if (*q != ' ')
            FAIL("line %d: want one space before the value", line);
        q++;
        size_t vl = strcspn(q, " ");
        if (vl >= sizeof value)
            FAIL("line %d: value too long", line);
        snprintf(value, sizeof value, "%.*s", (int)vl, q);
        if (parse_value(value, &s->value))
            FAIL("line %d: '%s' is not a value", line, value);
        if (q[vl] == ' ') { /* a timestamp: an integer of ms */
            char *end = NULL;
            strtoll(q + vl + 1, &end, 10);
            if (*end || end == q + vl + 1)
                FAIL("line %d: bad timestamp", line);
        }
        struct expo_family *f = sample_family(e, s->name, &suffix);
        if (!f || !f->has_type || !f->has_help)
            FAIL("line %d: %s has no HELP and TYPE before it", line, s->name);
        if (f != current)
            FAIL("line %d: %s is not in the family being read (%s): families are contiguous", line, s->name,
                 current ? current->name : "none");
        f->has_samples = 1;
        /* promtool's lint */
        size_t fl = strlen(f->name);
        int total = fl > 6 && !strcmp(f->name + fl - 6, "_total");
        if (!strcmp(f->type, "counter") && !total)
            FAIL("line %d: counter %s does not end in _total", line, f->name);
        if (strcmp(f->type, "counter") && total)
            FAIL("line %d: %s %s ends in _total", line, f->type, f->name);
        if (!strcmp(f->type, "counter") && !(s->value >= 0))
            FAIL("line %d: counter %s is negative or NaN", line, s->name);
        /* a histogram's series: buckets increasing in le, cumulative, then
         * +Inf, _sum and _count = the +Inf bucket */
        if (!strcmp(f->type, "histogram")) {
            if (strcmp(h_labels, s->labels)) {
                snprintf(h_labels, sizeof h_labels, "%s", s->labels);
                h_last_le = -INFINITY, h_last_count = 0, h_inf = -1, h_sum = 0;
            }
            if (!strcmp(suffix, "_bucket")) {
                double b;
                if (!le[0] || parse_value(le, &b))
                    FAIL("line %d: bucket without a valid le", line);
                if (!(b > h_last_le) || h_inf >= 0)
                    FAIL("line %d: buckets not in increasing le", line);
                if (s->value < h_last_count)
                    FAIL("line %d: bucket counts are not cumulative", line);
                h_last_le = b, h_last_count = s->value;
                if (isinf(b))
                    h_inf = s->value;
            } else if (!strcmp(suffix, "_sum")) {
                h_sum = 1;
            } else if (!strcmp(suffix, "_count")) {
                if (h_inf < 0 || !h_sum)
                    FAIL("line %d: _count before the +Inf bucket and _sum", line);
                if (s->value != h_inf)
                    FAIL("line %d: _count %g is not the +Inf bucket's %g", line, s->value, h_inf);
            } else {
                FAIL("line %d: %s in histogram %s", line, s->name, f->name);
            }
            if (le[0]) /* le joins the labels once the bucket is read: series tell apart by it */
                snprintf(s->labels + strlen(s->labels), sizeof s->labels - strlen(s->labels), "le=\"%s\",", le);
        } else if (le[0]) {
            snprintf(s->labels + strlen(s->labels), sizeof s->labels - strlen(s->labels), "le=\"%s\",", le);
        }
        for (size_t i = 0; i < e->n; i++)
            if (!strcmp(e->s[i].name, s->name) && !strcmp(e->s[i].labels, s->labels))
                FAIL("line %d: series %s{%s} given twice", line, s->name, s->labels);
        e->n++;
    }
    for (size_t i = 0; i < e->n_families; i++)
        if (!e->f[i].has_type || !e->f[i].has_help)
            FAIL("family %s lacks HELP or TYPE", e->f[i].name);
    return 0;
}

/* The value of series name{labels} (labels canonical: 'k="v",...' or
 * ""); fails the test when it is absent. */
static double value_of(const struct expo *e, const char *name, const char *labels)
{
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->s[i].name, name) && !strcmp(e->s[i].labels, labels))
            return e->s[i].value;
    ck_abort_msg("no series %s{%s} in the scrape", name, labels);
    return 0;
}

static int has_series(const struct expo *e, const char *name, const char *labels)
{
    for (size_t i = 0; i < e->n; i++)
        if (!strcmp(e->s[i].name, name) && !strcmp(e->s[i].labels, labels))
            return 1;
    return 0;
}

static uint64_t u(const struct expo *e, const char *name)
{
    return (uint64_t)value_of(e, name, "");
}

/* Prometheus's own check, beside the parser above: Debian's promtool
 * (`promtool check metrics`, from the prometheus package; setup.sh takes
 * the one binary out of the package into .tools/ without installing the
 * server) when RK_PROMTOOL names it; on the first few scrapes of each test
 * (every scrape would start a 48 MB program each time). */
static void promtool_check(const char *body)
{
    static int runs;
    const char *tool = getenv("RK_PROMTOOL");
    char path[64], out_path[80], cmd[1024], out[2048] = "";
    FILE *f;
    int rc;

    if (!tool || !*tool || runs >= 3)
        return;
    runs++;
    snprintf(path, sizeof path, "/tmp/rk-test-metrics.%d.prom", (int)getpid());
    snprintf(out_path, sizeof out_path, "%s.out", path);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(body, f);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "'%s' check metrics <'%s' >'%s' 2>&1", tool, path, out_path);
    rc = system(cmd);
    f = fopen(out_path, "r");
    if (f) {
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = 0;
        fclose(f);
    }
    unlink(path);
    unlink(out_path);
    ck_assert_msg(rc == 0 && out[0] == 0, "promtool check metrics (exit %d): %s", rc, out);
}

/* Scrapes port, checks the answer and the format, parses into e. */
static void scrape(int port, struct expo *e)
{
    int status = 0;
    char ctype[128], why[256];
    char *body = NULL;
    int rc = http_get(port, "GET", "/metrics", &status, ctype, sizeof ctype, &body);

    ck_assert_msg(rc == 0, "cannot connect to the metrics on port %d: %s", port, strerror(rc));
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(ctype, "text/plain; version=0.0.4; charset=utf-8");
    ck_assert_msg(expo_parse(body, e, why, sizeof why) == 0, "the exposition is not valid: %s\n%s", why, body);
    promtool_check(body);
    free(body);
}

/* ------------------------------------------------------------ nodes */

static void setup(void)
{
    char cmd[600];
    int pid = (int)getpid();

    snprintf(data_dir, sizeof data_dir, "/tmp/rk-test-metrics.%d", pid);
    snprintf(standby_dir, sizeof standby_dir, "/tmp/rk-test-metrics.%d.sb", pid);
    snprintf(ring_name, sizeof ring_name, "test_metrics.%d", pid);
    port_base = 12000 + (pid % 2000) * 4; /* above test_repl's, below the ephemeral range */
    snprintf(publish_ep, sizeof publish_ep, "tcp://127.0.0.1:%d", port_base + 2);
    snprintf(serve_ep, sizeof serve_ep, "tcp://127.0.0.1:%d", port_base + 3);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", data_dir, standby_dir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(mkdir(data_dir, 0700), 0);
    ck_assert_int_eq(mkdir(standby_dir, 0700), 0);
    ring_unlink(ring_name);
}

static void teardown(void)
{
    char cmd[600];

    ring_unlink(ring_name);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", data_dir, standby_dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Forks a node: a primary on data_dir (standby_id NULL; with publish and
 * serve when replicated), or a standby of it on standby_dir; metrics on
 * 127.0.0.1:metrics_port (0: no [metrics]). */
static pid_t spawn(const char *standby_id, int replicated, int metrics_port)
{
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct node_config c;
        char err[512], listen[64];
        node_config_defaults(&c);
        snprintf(listen, sizeof listen, "127.0.0.1:%d", metrics_port);
        int rc = node_config_set(&c, "node", "log_level", "warn", "test", err, sizeof err) ||
                 node_config_set(&c, "replication", "heartbeat_ms", "50", "test", err, sizeof err) ||
                 node_config_set(&c, "checkpoint", "every_seconds", "0", "test", err, sizeof err) ||
                 (metrics_port && node_config_set(&c, "metrics", "listen", listen, "test", err, sizeof err));
        if (standby_id)
            rc = rc || node_config_set(&c, "node", "data_dir", standby_dir, "test", err, sizeof err) ||
                 node_config_set(&c, "node", "role", "standby", "test", err, sizeof err) ||
                 node_config_set(&c, "replication", "node_id", standby_id, "test", err, sizeof err) ||
                 node_config_set(&c, "replication", "primary_publish", publish_ep, "test", err, sizeof err) ||
                 node_config_set(&c, "replication", "primary_serve", serve_ep, "test", err, sizeof err);
        else
            rc = rc || node_config_set(&c, "node", "data_dir", data_dir, "test", err, sizeof err) ||
                 node_config_set(&c, "ring", "name", ring_name, "test", err, sizeof err) ||
                 node_config_set(&c, "ring", "capacity", "1M", "test", err, sizeof err) ||
                 node_config_set(&c, "drain", "batch_records", "64", "test", err, sizeof err) ||
                 (replicated && (node_config_set(&c, "replication", "publish", publish_ep, "test", err, sizeof err) ||
                                 node_config_set(&c, "replication", "serve", serve_ep, "test", err, sizeof err)));
        if (rc || node_config_check(&c, err, sizeof err)) {
            fprintf(stderr, "test config: %s\n", err);
            _exit(99);
        }
        _exit(repl_node_run(&c));
    }
    return pid;
}

static pid_t start(const char *standby_id, int replicated, int metrics_port)
{
    pid_t pid = spawn(standby_id, replicated, metrics_port);

    wait_node_answers(standby_id ? standby_dir : data_dir, pid, BOUND_S, 2000);
    return pid;
}

/* A member of the node's status (UINT64_MAX: no answer or no member). */
static uint64_t status_u64(const char *dir, const char *member)
{
    char *reply = NULL;
    json_t *st = node_request(dir, "status", 5000, &reply) == 0 ? json_loads(reply, 0, NULL) : NULL;
    json_t *v = json_object_get(st, member);
    uint64_t x = json_is_integer(v) ? (uint64_t)json_integer_value(v) : UINT64_MAX;

    json_decref(st);
    free(reply);
    return x;
}

/* The engine, this process: groups of RECORDS_PER_GROUP PUTs and a MARK. */
#define RECORDS_PER_GROUP 9
struct engine {
    rk_ring *r;
    uint16_t table;
    uint64_t height, n_records, first_lsn, last_lsn;
};

static void engine_attach(struct engine *e)
{
    char err[256] = "";
    rk_ring_opts o = {.producer = "eng", .errmsg = err, .errmsg_size = sizeof err};

    memset(e, 0, sizeof *e);
    ck_assert_msg(rk_ring_attach(ring_name, &o, &e->r) == 0, "attach: %s", err);
    ck_assert_int_eq(rk_table(e->r, "t0", &e->table), 0);
}

/* One group: its PUTs and MARK; with scrape_port, a scrape in the middle
 * of the group (records are being written), checked for the format and
 * for counters that never go back. */
static void engine_group(struct engine *e, int scrape_port, struct expo *prev)
{
    char key[32], val[200];

    e->height++;
    for (int i = 0; i < RECORDS_PER_GROUP; i++) {
        uint64_t lsn = 0;
        uint32_t klen = (uint32_t)snprintf(key, sizeof key, "k%05u", (unsigned)(mix(e->height * 16 + i) % 500));
        uint32_t vlen = (uint32_t)(mix(e->height * 31 + i) % sizeof val);
        memset(val, (int)('a' + i), vlen);
        ck_assert_int_eq(rk_put(e->r, e->table, key, klen, val, vlen, &lsn), 0);
        if (!e->first_lsn)
            e->first_lsn = lsn;
        e->n_records++;
        if (scrape_port && i == RECORDS_PER_GROUP / 2) {
            static struct expo now;
            scrape(scrape_port, &now);
            ck_assert_uint_le(u(prev, "ringkeep_records_total"), u(&now, "ringkeep_records_total"));
            ck_assert_uint_le(u(prev, "ringkeep_batches_total"), u(&now, "ringkeep_batches_total"));
            ck_assert_uint_le(u(&now, "ringkeep_records_total"), e->n_records);
            *prev = now;
        }
    }
    ck_assert_int_eq(rk_mark(e->r, e->height, &e->last_lsn), 0);
    e->n_records++;
}

static void engine_wait(struct engine *e, rk_level level)
{
    ck_assert_int_eq(rk_wait(e->r, e->last_lsn, level, BOUND_S * 1000), 0);
}

/* Polls (bounded) until the scrape's name reaches want; the last scrape
 * in e. */
static void wait_metric(int port, const char *name, uint64_t want, struct expo *e)
{
    for (int i = 0; i < BOUND_S * 100; i++) {
        scrape(port, e);
        if (u(e, name) >= want)
            return;
        usleep(10000);
    }
    ck_abort_msg("%s did not reach %llu", name, (unsigned long long)want);
}

/* After rk_wait(RK_DURABLE): polls (bounded) until the primary's scrape
 * shows the drain done with the last batch (the durable cursor moves
 * first, the figures right after it: nothing waits on them); the last
 * scrape in e. */
static void wait_drained(int port, struct expo *e)
{
    for (int i = 0; i < BOUND_S * 100; i++) {
        scrape(port, e);
        if (u(e, "ringkeep_durable_lag_bytes") == 0)
            return;
        usleep(10000);
    }
    ck_abort_msg("ringkeep_durable_lag_bytes stays at %llu",
                 (unsigned long long)u(e, "ringkeep_durable_lag_bytes"));
}

/* ------------------------------------------------------------ tests */

/* The parser fails on what promtool refuses (the checks below are seen to
 * bite), and passes a valid text of every kind it knows. */
START_TEST(exposition_parser_refuses_invalid_texts)
{
    static struct expo e;
    char why[256];
    static const char *const bad[] = {
        "# HELP a_total x\n# TYPE a_total counter\na_total 1",               /* no final newline */
        "# HELP a x\n# TYPE a counter\na 1\n",                               /* counter without _total */
        "# HELP a_total x\n# TYPE a_total gauge\na_total 1\n",               /* gauge with _total */
        "a 1\n",                                                             /* no HELP and TYPE */
        "# HELP a x\n# TYPE a gauge\na{b=\"1\"} 1\na{b=\"1\"} 2\n",          /* a series twice */
        "# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\nb 1\na 2\n", /* not contiguous */
        "# HELP a x\n# TYPE a gauge\na{b=\"\\x\"} 1\n",                      /* bad escape */
        "# HELP a x\n# TYPE a gauge\na  1\n",                                /* two spaces */
        "# HELP a x\n# TYPE a gauge\na 0x10\n",                              /* hex */
        "# HELP a x\n# TYPE a gauge\na inf\n",                               /* not +Inf */
        "# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n",                 /* second TYPE */
        "# HELP a x\n# TYPE a meter\na 1\n",                                 /* unknown type */
        "# HELP a x\n# TYPE a gauge\na{__x=\"1\"} 1\n",                      /* reserved label */
        ("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"0.5\"} 2\n"
         "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"), /* le not increasing */
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", /* no +Inf */
        "# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n",                                /* HELP after samples */
        "# HELP a_total x\n# TYPE a_total counter\na_total -1\n",                       /* negative counter */
    };
    static const char *good = "# a comment\n# HELP a_total x \\\\ y\\n\n# TYPE a_total counter\na_total 1\n\n"
                              "# HELP g x\n# TYPE g gauge\ng{k=\"v\\\"\\\\\\n\",l=\"w\",} NaN 1700000000000\n"
                              "g{k=\"2\"} -Inf\n# HELP h x\n# TYPE h histogram\nh_bucket{le=\"0.1\"} 0\n"
                              "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4.5e-1\nh_count 3\n";

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(expo_parse(bad[i], &e, why, sizeof why) != 0, "bad text %zu passed:\n%s", i, bad[i]);
    ck_assert_msg(expo_parse(good, &e, why, sizeof why) == 0, "%s", why);
    ck_assert_uint_eq(e.n, 8);
    ck_assert(isnan(value_of(&e, "g", "k=\"v\"\\\n\",l=\"w\",")));
}
END_TEST

/* A primary's metrics while an engine writes: valid at every scrape,
 * counters never going back; then exactly what was written. */
START_TEST(primary_metrics_count_what_was_written)
{
    int port = port_base;
    pid_t node = start(NULL, 0, port);
    struct engine e;
    static struct expo m, prev;
    struct stat st;
    char *reply = NULL;

    scrape(port, &prev);
    ck_assert_uint_eq(u(&prev, "ringkeep_records_total"), 0);
    engine_attach(&e);
    for (int round = 0; round < 4; round++) {
        for (int g = 0; g < 5; g++)
            engine_group(&e, port, &prev);
        engine_wait(&e, RK_DURABLE);
        wait_drained(port, &m);
        /* every record written is journaled, counted once */
        ck_assert_uint_eq(u(&m, "ringkeep_records_total"), e.n_records);
        ck_assert_uint_eq(u(&m, "ringkeep_durable_lsn"), e.last_lsn);
        /* the ring's bytes from the first record to the tail, every one
         * a record (no TABLE frame: those are the journal's) */
        ck_assert_uint_eq(u(&m, "ringkeep_record_bytes_total"), u(&m, "ringkeep_written_lsn") - e.first_lsn);
    }
    /* apply catches up: every group applied */
    wait_metric(port, "ringkeep_applied_seq", u(&m, "ringkeep_journal_seq"), &m);
    ck_assert_uint_eq(u(&m, "ringkeep_groups_applied_total"), e.height);
    ck_assert_uint_eq(u(&m, "ringkeep_apply_lag_entries"), 0);
    /* the same figures as the status says */
    ck_assert_uint_eq(u(&m, "ringkeep_batches_total"), status_u64(data_dir, "batches"));
    ck_assert_uint_eq(u(&m, "ringkeep_journal_seq"), status_u64(data_dir, "journal_seq"));
    ck_assert_uint_ge(u(&m, "ringkeep_batches_total"), 1);
    ck_assert_uint_ge(u(&m, "ringkeep_journal_bytes_total"), u(&m, "ringkeep_batches_total"));
    ck_assert_uint_eq(u(&m, "ringkeep_ring_capacity_bytes"), 1u << 20);
    ck_assert_uint_eq(u(&m, "ringkeep_epoch"), 1);
    ck_assert_uint_eq(u(&m, "ringkeep_fenced"), 0);
    ck_assert_uint_eq(u(&m, "ringkeep_standbys"), 0);
    ck_assert_uint_eq(u(&m, "ringkeep_replication_lag_bytes"), 0); /* min_replicas 0 */
    ck_assert(value_of(&m, "ringkeep_role", "role=\"primary\",") == 1);
    ck_assert(value_of(&m, "ringkeep_role", "role=\"standby\",") == 0);
    /* every batch is one synced commit: at least as many fsyncs */
    ck_assert_uint_ge(u(&m, "ringkeep_fsync_duration_seconds_count"), u(&m, "ringkeep_batches_total"));
    ck_assert(value_of(&m, "ringkeep_fsync_duration_seconds_sum", "") > 0);

    /* a checkpoint: its size is its file's */
    ck_assert_uint_eq(u(&m, "ringkeep_checkpoints_total"), 0);
    ck_assert_int_eq(node_request(data_dir, "checkpoint", 60000, &reply), 0);
    ck_assert_msg(strncmp(reply, "ok ", 3) == 0, "%s", reply);
    ck_assert_int_eq(stat(reply + 3, &st), 0);
    wait_metric(port, "ringkeep_checkpoints_total", 1, &m);
    ck_assert_uint_eq(u(&m, "ringkeep_checkpoints_total"), 1);
    ck_assert_uint_eq(u(&m, "ringkeep_checkpoint_last_size_bytes"), (uint64_t)st.st_size);
    ck_assert_uint_eq(u(&m, "ringkeep_checkpoint_written_bytes_total"), (uint64_t)st.st_size);
    ck_assert(value_of(&m, "ringkeep_checkpoint_last_duration_seconds", "") > 0);
    free(reply);

    /* only GET /metrics */
    int status = 0;
    char ctype[128], *body = NULL;
    ck_assert_int_eq(http_get(port, "GET", "/other", &status, ctype, sizeof ctype, &body), 0);
    ck_assert_int_eq(status, 404);
    free(body);
    ck_assert_int_eq(http_get(port, "POST", "/metrics", &status, ctype, sizeof ctype, &body), 0);
    ck_assert_int_eq(status, 405);
    free(body);

    rk_ring_detach(e.r);
    ck_assert_int_eq(stop(node, SIGTERM), 0);
}
END_TEST

/* A standby's metrics count what it applied, and its primary's show it
 * with no lag once it caught up. */
START_TEST(standby_metrics_and_the_primarys_standby_lags)
{
    pid_t primary = start(NULL, 1, port_base), standby = start("sb-1", 0, port_base + 1);
    struct engine e;
    static struct expo p, s;

    engine_attach(&e);
    for (int g = 0; g < 12; g++)
        engine_group(&e, 0, NULL);
    engine_wait(&e, RK_DURABLE);
    wait_drained(port_base, &p);
    uint64_t journal_seq = u(&p, "ringkeep_journal_seq");
    wait_metric(port_base + 1, "ringkeep_applied_seq", journal_seq, &s);
    ck_assert(value_of(&s, "ringkeep_role", "role=\"standby\",") == 1);
    ck_assert(value_of(&s, "ringkeep_role", "role=\"primary\",") == 0);
    ck_assert_uint_eq(u(&s, "ringkeep_epoch"), 1);
    ck_assert_uint_eq(u(&s, "ringkeep_connected"), 1);
    ck_assert_uint_eq(u(&s, "ringkeep_journal_seq"), journal_seq);
    /* the PUTs applied (MARKs are not records of a table) */
    ck_assert_uint_eq(u(&s, "ringkeep_records_applied_total"), e.height * RECORDS_PER_GROUP);
    ck_assert_uint_eq(u(&s, "ringkeep_groups_applied_total"), e.height);
    ck_assert_uint_eq(u(&s, "ringkeep_apply_lag_entries"), 0);
    ck_assert(value_of(&s, "ringkeep_entries_dropped_total", "reason=\"bad_entry\",") == 0);
    ck_assert_uint_ge(u(&s, "ringkeep_fsync_duration_seconds_count"), journal_seq > 0);
    /* the primary: one standby, acknowledged all, no lag (the next
     * heartbeat says so) */
    for (int i = 0; i < BOUND_S * 100; i++) {
        scrape(port_base, &p);
        if (u(&p, "ringkeep_standbys") == 1 &&
            has_series(&p, "ringkeep_standby_acked_seq", "standby=\"sb-1\",") &&
            (uint64_t)value_of(&p, "ringkeep_standby_acked_seq", "standby=\"sb-1\",") == journal_seq)
            break;
        usleep(10000);
    }
    ck_assert_uint_eq(u(&p, "ringkeep_standbys"), 1);
    ck_assert_uint_eq((uint64_t)value_of(&p, "ringkeep_standby_acked_seq", "standby=\"sb-1\","), journal_seq);
    ck_assert(value_of(&p, "ringkeep_standby_lag_entries", "standby=\"sb-1\",") == 0);
    ck_assert(value_of(&p, "ringkeep_standby_lag_seconds", "standby=\"sb-1\",") == 0);
    ck_assert_uint_eq(u(&p, "ringkeep_standbys_forgotten_total"), 0);
    ck_assert(has_series(&p, "ringkeep_replies_dropped_total", "") &&
              u(&p, "ringkeep_replies_dropped_total") == 0);
    /* its apply as its ACKs report it (issue 13.7): listed, and nothing held the drain */
    ck_assert(has_series(&p, "ringkeep_standby_apply_lag_seconds", "standby=\"sb-1\","));
    ck_assert_uint_eq(u(&p, "ringkeep_drain_holds_for_standby_apply_total"), 0);
    ck_assert(value_of(&s, "ringkeep_apply_lag_seconds", "") == 0); /* the standby: caught up */

    rk_ring_detach(e.r);
    ck_assert_int_eq(stop(standby, SIGTERM), 0);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);
}
END_TEST

/* The TCP ports pid listens on (its sockets in /proc/PID/fd matched with
 * the LISTEN rows of /proc/net/tcp and tcp6) into ports[]; how many. */
static int listening_ports(pid_t pid, int *ports, int max)
{
    char path[64], link[128], line[512];
    unsigned long inodes[256];
    int n_inodes = 0, n = 0;
    DIR *d;
    struct dirent *de;

    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    d = opendir(path);
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) && n_inodes < 256) {
        char fd_path[600];
        ssize_t len;
        snprintf(fd_path, sizeof fd_path, "%s/%s", path, de->d_name);
        len = readlink(fd_path, link, sizeof link - 1);
        if (len > 0) {
            link[len] = '\0';
            if (sscanf(link, "socket:[%lu]", &inodes[n_inodes]) == 1)
                n_inodes++;
        }
    }
    closedir(d);
    for (int v6 = 0; v6 < 2; v6++) {
        FILE *f = fopen(v6 ? "/proc/net/tcp6" : "/proc/net/tcp", "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f)) {
            char local[64];
            unsigned state = 0, port = 0;
            unsigned long inode = 0;
            /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
            if (sscanf(line, " %*s %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &state, &inode) != 3)
                continue;
            if (state != 0x0A) /* TCP_LISTEN */
                continue;
            sscanf(strchr(local, ':') + 1, "%x", &port);
            for (int i = 0; i < n_inodes; i++)
                if (inodes[i] == inode && n < max)
                    ports[n++] = (int)port;
        }
        fclose(f);
    }
    return n;
}

/* Without [metrics] the node listens on no TCP port at all; with it, on
 * exactly the one configured (the check is seen to find it). */
START_TEST(without_metrics_nothing_listens)
{
    int ports[8];
    pid_t node = start(NULL, 0, 0);

    ck_assert_int_eq(listening_ports(node, ports, 8), 0);
    ck_assert_int_eq(stop(node, SIGTERM), 0);
    node = start(NULL, 0, port_base);
    ck_assert_int_eq(listening_ports(node, ports, 8), 1);
    ck_assert_int_eq(ports[0], port_base);
    ck_assert_int_eq(stop(node, SIGTERM), 0);
}
END_TEST

/* A metrics port another socket holds: the node does not start (exit 1). */
START_TEST(metrics_port_taken_node_refuses_to_start)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_base)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = 0;
    pid_t node;

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 1), 0);
    node = spawn(NULL, 0, port_base);
    ck_assert_int_eq(waitpid(node, &status, 0), node);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 1);
    close(fd);
}
END_TEST

/* Runs `ringkeep top ARGS` with stdout a pipe; its output (malloc'd) and
 * exit status. */
static char *run_top(const char *const *args, int *exit_status)
{
    int pipefd[2];
    char *out = NULL;
    size_t len = 0;
    FILE *f;
    pid_t pid;

    ck_assert_int_eq(pipe(pipefd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        const char *argv[16] = {cli_path, "top"};
        int n = 2;
        for (; args[n - 2] && n < 15; n++)
            argv[n] = args[n - 2];
        argv[n] = NULL;
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(cli_path, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    f = open_memstream(&out, &len);
    ck_assert_ptr_nonnull(f);
    char buf[4096];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, f);
    fclose(f);
    close(pipefd[0]);
    ck_assert_int_eq(waitpid(pid, exit_status, 0), pid);
    return out;
}

/* `ringkeep top --count 3`: a header and three lines of figures, the
 * records column what was written, the rates of the last interval; a
 * standby's columns on a standby; exit 3 without a node. */
START_TEST(top_prints_the_figures_count_times)
{
    pid_t primary = start(NULL, 1, 0), standby;
    struct engine e;
    int status = 0;
    char *out, *save = NULL, *line;
    char role[16];
    unsigned long long epoch = 0, records = 0, journal = 0, applied = 0;
    int n_lines = 0;

    engine_attach(&e);
    for (int g = 0; g < 7; g++)
        engine_group(&e, 0, NULL);
    engine_wait(&e, RK_DURABLE);
    out = run_top((const char *const[]){"-d", data_dir, "--count", "3", "--interval", "0.05", NULL}, &status);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "top failed: %s", out);
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n_lines++) {
        if (n_lines == 0) {
            ck_assert_msg(strncmp(line, "role     epoch      records    rec/s  batch/s  ring_fill", 56) == 0,
                          "header: %s", line);
            continue;
        }
        char rate[32];
        ck_assert_msg(sscanf(line, "%15s %llu %llu %31s", role, &epoch, &records, rate) == 4, "line: %s", line);
        ck_assert_str_eq(role, "primary");
        ck_assert_uint_eq(epoch, 1);
        ck_assert_uint_eq(records, e.n_records);
        ck_assert_str_eq(rate, "0"); /* nothing written during the watch */
    }
    ck_assert_int_eq(n_lines, 4);
    free(out);

    standby = start("sb-top", 0, 0);
    for (int i = 0; i < BOUND_S * 100 && status_u64(standby_dir, "applied_seq") < status_u64(data_dir, "journal_seq");
         i++)
        usleep(10000);
    out = run_top((const char *const[]){"-d", standby_dir, "--count", "2", "--interval", "0.05", NULL}, &status);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "top failed: %s", out);
    n_lines = 0;
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n_lines++) {
        if (n_lines == 0) {
            ck_assert_msg(strncmp(line, "role     epoch      journal      applied", 39) == 0, "header: %s", line);
            continue;
        }
        ck_assert_msg(sscanf(line, "%15s %llu %llu %llu", role, &epoch, &journal, &applied) == 4, "line: %s", line);
        ck_assert_str_eq(role, "standby");
        ck_assert_uint_eq(epoch, 1);
        ck_assert_uint_eq(journal, status_u64(data_dir, "journal_seq"));
        ck_assert_uint_eq(applied, journal);
    }
    ck_assert_int_eq(n_lines, 3);
    free(out);
    rk_ring_detach(e.r);
    ck_assert_int_eq(stop(standby, SIGTERM), 0);
    ck_assert_int_eq(stop(primary, SIGTERM), 0);

    /* no node: exit 3, as `ringkeep status` */
    out = run_top((const char *const[]){"-d", data_dir, "--count", "1", NULL}, &status);
    ck_assert_int_eq(WEXITSTATUS(status), 3);
    free(out);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, exposition_parser_refuses_invalid_texts);
    tcase_add_test(tc, primary_metrics_count_what_was_written);
    tcase_add_test(tc, standby_metrics_and_the_primarys_standby_lags);
    tcase_add_test(tc, without_metrics_nothing_listens);
    tcase_add_test(tc, metrics_port_taken_node_refuses_to_start);
    tcase_add_test(tc, top_prints_the_figures_count_times);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    SRunner *sr;
    int failed;

    if (argc < 2) {
        fprintf(stderr, "usage: test_metrics PATH_TO_RINGKEEP\n");
        return 2;
    }
    cli_path = argv[1];
    sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
