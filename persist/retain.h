/* retain.h -- which checkpoints to keep, and how far back the journal must
 * reach for them (private to ringkeep).
 *
 * Policy (config [checkpoint] keep, keep_hourly, keep_daily), as backup
 * tools (restic, borg) count it: a checkpoint is kept when it is one of
 * the newest `keep_last`, or the newest of its UTC hour and that hour is
 * one of the last `keep_hourly` hours counted from now (the current one
 * included), or the newest of its UTC day and that day is one of the last
 * `keep_daily` days.  So keep_hourly = 24 leaves at most one checkpoint
 * per hour for a day, besides the last few.
 *
 * The journal is trimmed to what the oldest kept checkpoint needs: its
 * restart point (the first entry of the oldest group open at it) or its
 * own last entry, whichever is older, so a restore can start from any
 * kept checkpoint and replay from there.
 * Threads: pure functions, and retain_apply touches only files.
 */
#ifndef RK_RETAIN_H
#define RK_RETAIN_H

#include <stddef.h>
#include <stdint.h>

struct retain_policy {
    uint32_t keep_last;   /* >= 1 */
    uint32_t keep_hourly; /* hours, 0: none */
    uint32_t keep_daily;  /* days, 0: none */
};

/* created_ns[0..n): creation times (CLOCK_REALTIME ns) of the checkpoints,
 * newest first.  Sets keep[i] to 1 or 0. */
void retain_select(const uint64_t *created_ns, size_t n, uint64_t now_ns, const struct retain_policy *p,
                   uint8_t *keep);

struct ckpt_info;

/* The lowest journal sequence checkpoint info needs: its replay record's
 * restart point, or its journal_seq if lower; UINT64_MAX for a checkpoint
 * of format 1.0, which needs none. */
uint64_t retain_needs(const struct ckpt_info *info);

/* Applies the policy to the checkpoints of folder dir: removes those not
 * kept (files that fail to read their header are neither counted nor
 * removed: they are left for an operator, and logged).  *journal_floor
 * gets the lowest journal sequence a kept checkpoint needs
 * (retain_needs), or UINT64_MAX when no kept checkpoint needs one, and
 * never above apply_needs: what the store's own apply needs after a
 * restart, the retain_needs of the checkpoint just taken of its state
 * (UINT64_MAX: no bound).  That one is not always kept: a checkpoint
 * newer than the state (a file copied in, or one an older ringkeep
 * published before flushing the log of its state, which a power cut then
 * took back) is the newest, and its restart point is past where apply
 * restarts.  *n_removed: files removed.  0, or an errno value (the folder
 * cannot be listed). */
int retain_apply(const char *dir, const struct retain_policy *p, uint64_t now_ns, uint64_t apply_needs,
                 uint64_t *journal_floor, uint32_t *n_removed);

#endif
