/* log.c -- logfmt lines on stderr:
 *   ts=2026-11-22T00:50:00.123Z level=info msg="drain started" ring=orders
 *
 * Design: a line is built whole in a buffer on the caller's stack and
 * handed to the kernel with one write(2), so lines from threads (and from
 * processes sharing the stderr pipe) never interleave: a pipe takes a write
 * of up to PIPE_BUF bytes at once, and LOG_LINE_MAX is PIPE_BUF.  No lock,
 * no stdio buffer.  Escaping keeps every line one line whatever msg or the
 * caller's fields hold; a line that would not fit is cut where an escape
 * sequence ends and marked " truncated=true".
 *
 * Threads: every function is safe from any thread.  The level is an atomic
 * int, read and written with relaxed order: it guards no other data, and a
 * line logged while the level changes may go either way. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "persist/log.h"

static const char *const level_names[] = {
    [LOG_DEBUG] = "debug",
    [LOG_INFO] = "info",
    [LOG_WARN] = "warn",
    [LOG_ERROR] = "error",
};

static _Atomic int current_level = LOG_INFO;

/* What a line needs after its content: closing quote, " truncated=true",
 * newline. */
#define LINE_TAIL 32

struct line {
    char buf[LOG_LINE_MAX];
    size_t len;
    bool cut; /* something did not fit */
};

static int clamp_level(int level)
{
    if (level < LOG_DEBUG)
        return LOG_DEBUG;
    if (level > LOG_ERROR)
        return LOG_ERROR;
    return level;
}

void log_set_level(int level)
{
    atomic_store_explicit(&current_level, clamp_level(level), memory_order_relaxed); /* orders nothing */
}

int log_get_level(void)
{
    return atomic_load_explicit(&current_level, memory_order_relaxed); /* orders nothing */
}

int log_level_parse(const char *name, int *level)
{
    if (!name || !level)
        return RK_EINVAL;
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = i;
            return 0;
        }
    }
    return RK_EINVAL;
}

/* Appends s[0..n) if it fits before the tail; otherwise marks the line cut. */
static bool put(struct line *l, const char *s, size_t n)
{
    if (l->cut || n > sizeof l->buf - LINE_TAIL - l->len) {
        l->cut = true;
        return false;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return true;
}

/* Appends s escaped: control bytes always, '"' and '\\' when quoted. */
static void put_escaped(struct line *l, const char *s, bool quoted)
{
    char esc[8];

    for (; *s && !l->cut; s++) {
        unsigned char ch = (unsigned char)*s;
        size_t n = 0;

        if (ch == '\n')
            n = (size_t)snprintf(esc, sizeof esc, "\\n");
        else if (ch == '\r')
            n = (size_t)snprintf(esc, sizeof esc, "\\r");
        else if (ch == '\t')
            n = (size_t)snprintf(esc, sizeof esc, "\\t");
        else if (ch < 0x20 || ch == 0x7f)
            n = (size_t)snprintf(esc, sizeof esc, "\\u%04x", ch);
        else if (quoted && (ch == '"' || ch == '\\'))
            n = (size_t)snprintf(esc, sizeof esc, "\\%c", ch);
        if (n)
            put(l, esc, n);
        else
            put(l, s, 1);
    }
}

/* Writes all of buf with as few write(2) calls as the kernel allows: one,
 * unless a signal or a short write splits it. */
static void write_all(const char *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(STDERR_FILENO, buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* stderr is gone: there is nowhere to say so */
        done += (size_t)n;
    }
}

void log_msg(int level, const char *msg, const char *kv_fmt, ...)
{
    int saved_errno = errno;
    struct line l = {.len = 0, .cut = false};
    char fields[LOG_LINE_MAX];
    struct timespec now;
    struct tm tm;

    level = clamp_level(level);
    if (level < log_get_level())
        return;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    l.len = strftime(l.buf, sizeof l.buf, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    l.len += (size_t)snprintf(l.buf + l.len, sizeof l.buf - l.len, ".%03ldZ level=%s msg=\"",
                              now.tv_nsec / 1000000, level_names[level]);
    put_escaped(&l, msg ? msg : "", true);
    l.buf[l.len++] = '"'; /* LINE_TAIL keeps room for it */

    if (kv_fmt && kv_fmt[0] && !l.cut) {
        va_list ap;
        int n = 0;

        va_start(ap, kv_fmt);
        n = vsnprintf(fields, sizeof fields, kv_fmt, ap);
        va_end(ap);
        if (n > 0 && put(&l, " ", 1))
            put_escaped(&l, fields, false);
        if (n >= (int)sizeof fields)
            l.cut = true;
    }
    if (l.cut) {
        memcpy(l.buf + l.len, " truncated=true", 15);
        l.len += 15;
    }
    l.buf[l.len++] = '\n';
    write_all(l.buf, l.len);
    errno = saved_errno;
}
