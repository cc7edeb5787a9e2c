/* segment.h -- helpers shared by the producer and consumer sides of the
 * ring (private to shm/). */
#ifndef RK_SEGMENT_H
#define RK_SEGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "shm/ring_format.h"

/* Writes a one-line reason into err (if not NULL); every "why"/"err"
 * buffer of shm/ and persist/ is filled through it. */
__attribute__((format(printf, 3, 4))) void seg_error(char *err, size_t err_size, const char *fmt, ...);

/* seg_error, then returns rc. */
__attribute__((format(printf, 4, 5))) int seg_fail(char *err, size_t err_size, int rc, const char *fmt, ...);
int seg_check_name(const char *name, char *err, size_t err_size);
void seg_path(const char *name, char *path, size_t path_size);
uint64_t seg_now_ns(clockid_t clock);

/* Moves *cursor forward to value (never back) and wakes its waiters. */
void seg_cursor_advance(_Atomic uint64_t *cursor, _Atomic uint32_t *seq, _Atomic uint32_t *n_waiters,
                        uint64_t value);

/* seg_cursor_advance(), waking the waiters only when wake is set: the
 * caller judged the new value worth a system call to them.  A waiter not
 * woken sees the value at a later wake or at the end of its sleep slice. */
void seg_cursor_move(_Atomic uint64_t *cursor, _Atomic uint32_t *seq, _Atomic uint32_t *n_waiters,
                     uint64_t value, int wake);

/* Sleeps until *cursor >= target or timeout_ms (< 0: no limit) passes,
 * or *fenced is set first (R9).  Returns 0, RK_ETIMEDOUT or RK_EFENCED. */
int seg_cursor_wait(_Atomic uint64_t *cursor, _Atomic uint32_t *seq, _Atomic uint32_t *n_waiters,
                    const _Atomic uint32_t *fenced, uint64_t target, int timeout_ms);

/* Wakes every waiter on seq without moving its cursor (they look at the
 * cursor and the fence again). */
void seg_cursor_wake_all(_Atomic uint32_t *seq);

/* Locks the table directory / producer registry mutex (robust: a holder
 * that died leaves it usable). */
int ring_dir_lock(struct ring_header *h);

#endif
