/* notify.h -- the node telling its service manager (systemd) how it is:
 * READY once it serves, STATUS lines, STOPPING when it stops, and the
 * watchdog fed from the role's main loop while the node is healthy.
 * Through libsystemd's sd_notify: with no NOTIFY_SOCKET in the
 * environment (not started by systemd with Type=notify) every call here
 * does nothing.  Main thread only. */
#ifndef RK_NODE_NOTIFY_H
#define RK_NODE_NOTIFY_H

#include <stdint.h>

struct node_notify {
    int enabled;              /* NOTIFY_SOCKET was set at notify_init */
    int warned;               /* a failed send was logged */
    uint64_t watchdog_ns;     /* WatchdogSec (WATCHDOG_USEC), 0: no watchdog */
    uint64_t next_tick_ns;    /* when notify_due says yes again */
    uint64_t applied_seq;     /* apply's position at the last tick */
    uint64_t applied_moved_ns; /* when it last moved, or apply last had nothing to do */
};

/* Reads the environment (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID). */
void notify_init(struct node_notify *w);

/* READY=1 with STATUS=the formatted text. */
void notify_ready(struct node_notify *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* STOPPING=1 with STATUS=the formatted text. */
void notify_stopping(struct node_notify *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1 when the main loop should call notify_tick now: every second, or every
 * half watchdog interval when that is shorter.  Cheap (a clock read);
 * always 0 when not enabled. */
int notify_due(const struct node_notify *w);

/* The main loop's tick: apply is healthy when it has nothing to apply
 * (applied_seq == journal_seq) or moved within the watchdog interval.
 * Healthy: WATCHDOG=1 and STATUS=the formatted text.  Stalled: no
 * WATCHDOG=1 (systemd kills and restarts the node when the stall lasts
 * WatchdogSec), and the STATUS says so.  Returns 1 when healthy. */
int notify_tick(struct node_notify *w, uint64_t journal_seq, uint64_t applied_seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
