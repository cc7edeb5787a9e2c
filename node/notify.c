/* notify.c -- sd_notify for the node: READY, STATUS, STOPPING and the
 * watchdog (notify.h).  The design idea: the watchdog proves the node
 * works, not that the process exists, so it is fed only from the role's
 * main loop (a primary's drain, a standby's follow loop: a hung fsync or
 * socket stops it), and only while apply keeps up (apply moved within the
 * watchdog interval, or has nothing to apply).  The STATUS line is sent
 * with every tick, so `systemctl status` shows the journal and apply
 * positions of the last second.
 *
 * Threads: main thread only (the role's loop); no state shared. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "node/notify.h"
#include "persist/log.h"

#define NOTIFY_STATUS_MAX 512

static uint64_t notify_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void notify_init(struct node_notify *w)
{
    uint64_t usec = 0;
    const char *sock = getenv("NOTIFY_SOCKET");

    *w = (struct node_notify){.enabled = sock && sock[0]};
    if (!w->enabled)
        return;
    /* > 0 when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is us) */
    if (sd_watchdog_enabled(0, &usec) > 0)
        w->watchdog_ns = usec * 1000u;
    w->applied_moved_ns = notify_now_ns();
    log_msg(LOG_INFO, "service manager notifications on", "notify_socket=%s watchdog_ms=%llu", sock,
            (unsigned long long)(w->watchdog_ns / 1000000u));
}

/* A failed send is logged the first time only (the node goes on: a
 * manager that stopped listening is no reason to stop serving). */
static void notify_failed(struct node_notify *w, int rc)
{
    if (rc < 0 && !w->warned) {
        w->warned = 1;
        log_msg(LOG_WARN, "cannot notify the service manager (logged once)", "error=\"%s\"", strerror(-rc));
    }
}

/* Sends "HEAD" then STATUS=text. */
static void notify_send(struct node_notify *w, const char *head, const char *fmt, va_list ap)
{
    char status[NOTIFY_STATUS_MAX];

    vsnprintf(status, sizeof status, fmt, ap);
    notify_failed(w, sd_notifyf(0, "%sSTATUS=%s", head, status));
}

void notify_ready(struct node_notify *w, const char *fmt, ...)
{
    va_list ap;

    if (!w->enabled)
        return;
    va_start(ap, fmt);
    notify_send(w, "READY=1\n", fmt, ap);
    va_end(ap);
    w->next_tick_ns = 0; /* the first tick at once: the watchdog starts now */
}

void notify_stopping(struct node_notify *w, const char *fmt, ...)
{
    va_list ap;

    if (!w->enabled)
        return;
    va_start(ap, fmt);
    notify_send(w, "STOPPING=1\n", fmt, ap);
    va_end(ap);
}

int notify_due(const struct node_notify *w)
{
    return w->enabled && notify_now_ns() >= w->next_tick_ns;
}

int notify_tick(struct node_notify *w, uint64_t journal_seq, uint64_t applied_seq, const char *fmt, ...)
{
    uint64_t now = notify_now_ns(), every = 1000000000u, stalled_ns;
    char status[NOTIFY_STATUS_MAX];
    va_list ap;
    int healthy, rc;

    if (!w->enabled)
        return 1;
    if (w->watchdog_ns && w->watchdog_ns / 2 < every)
        every = w->watchdog_ns / 2;
    w->next_tick_ns = now + every;
    if (applied_seq != w->applied_seq || applied_seq >= journal_seq) {
        w->applied_seq = applied_seq;
        w->applied_moved_ns = now;
    }
    stalled_ns = now - w->applied_moved_ns;
    /* with no watchdog, a stall is reported after 10 s */
    healthy = stalled_ns < (w->watchdog_ns ? w->watchdog_ns : 10000000000u);
    va_start(ap, fmt);
    vsnprintf(status, sizeof status, fmt, ap);
    va_end(ap);
    if (healthy)
        rc = sd_notifyf(0, "%sSTATUS=%s", w->watchdog_ns ? "WATCHDOG=1\n" : "", status);
    else
        rc = sd_notifyf(0, "STATUS=unhealthy: apply stalled %.1f s at journal seq %llu of %llu (watchdog not fed); %s",
                        (double)stalled_ns / 1e9, (unsigned long long)applied_seq,
                        (unsigned long long)journal_seq, status);
    notify_failed(w, rc);
    return healthy;
}
