/* retain.c -- checkpoint retention and the journal floor (retain.h).
 *
 * Selection works on the creation times alone (newest first), so it is a
 * pure function the tests drive with made-up clocks; retain_apply reads
 * each file's header (ckpt_read_info: the header is checked by its own
 * hash, the body is not read) to get the time and the restart point.
 *
 * Threads: any; no shared state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "persist/checkpoint.h"
#include "persist/log.h"
#include "persist/retain.h"
#include "persist/store.h"

#define NS_PER_HOUR (3600ull * 1000000000ull)
#define NS_PER_DAY (24ull * NS_PER_HOUR)

/* Marks the newest checkpoint of each of the last `count` buckets of
 * `width` ns (UTC-aligned), counting back from now's bucket. */
static void keep_per_bucket(const uint64_t *created_ns, size_t n, uint64_t now_ns, uint64_t width,
                            uint32_t count, uint8_t *keep)
{
    uint64_t now_bucket = now_ns / width, last_bucket = UINT64_MAX;

    for (size_t i = 0; i < n && count; i++) {
        uint64_t bucket = created_ns[i] / width;
        if (bucket > now_bucket)
            bucket = now_bucket; /* a clock that went back: count it as now */
        if (now_bucket - bucket >= count)
            break; /* older than the window; the rest are older still */
        if (bucket != last_bucket) /* newest first: the first seen is the newest */
            keep[i] = 1;
        last_bucket = bucket;
    }
}

void retain_select(const uint64_t *created_ns, size_t n, uint64_t now_ns, const struct retain_policy *p,
                   uint8_t *keep)
{
    for (size_t i = 0; i < n; i++)
        keep[i] = i < p->keep_last;
    keep_per_bucket(created_ns, n, now_ns, NS_PER_HOUR, p->keep_hourly, keep);
    keep_per_bucket(created_ns, n, now_ns, NS_PER_DAY, p->keep_daily, keep);
}

uint64_t retain_needs(const struct ckpt_info *info)
{
    /* a restore from it replays from its restart point, and reads its
     * own last entry (the journal position it continues from) */
    return !info->has_replay                              ? UINT64_MAX
           : info->replay.restart_seq < info->journal_seq ? info->replay.restart_seq
                                                          : info->journal_seq;
}

int retain_apply(const char *dir, const struct retain_policy *p, uint64_t now_ns, uint64_t apply_needs,
                 uint64_t *journal_floor, uint32_t *n_removed)
{
    char **paths = NULL, err[512];
    size_t n_paths = 0, n = 0;
    uint64_t *created = NULL, *restart = NULL;
    size_t *index = NULL;
    uint8_t *keep = NULL;
    int rc = ckpt_list(dir, &paths, &n_paths);

    *journal_floor = UINT64_MAX;
    *n_removed = 0;
    if (rc)
        return rc;
    created = calloc(n_paths + 1, sizeof *created);
    restart = calloc(n_paths + 1, sizeof *restart);
    index = calloc(n_paths + 1, sizeof *index);
    keep = calloc(n_paths + 1, 1);
    if (!created || !restart || !index || !keep) {
        rc = ENOMEM;
        goto out;
    }
    /* the readable ones, newest first (ckpt_list's order) */
    for (size_t i = 0; i < n_paths; i++) {
        struct ckpt_info info = {0};
        if (ckpt_read_info(paths[i], &info, err, sizeof err) != 0) {
            log_msg(LOG_WARN, "checkpoint unreadable, left in place", "file=\"%s\" error=\"%s\"", paths[i], err);
            continue;
        }
        created[n] = info.created_ns;
        restart[n] = retain_needs(&info);
        index[n++] = i;
        ckpt_info_free(&info);
    }
    retain_select(created, n, now_ns, p, keep);
    for (size_t j = 0; j < n; j++) {
        if (keep[j]) {
            if (restart[j] < *journal_floor)
                *journal_floor = restart[j];
        } else if (sys_unlink(paths[index[j]]) == 0) {
            (*n_removed)++;
        } else {
            log_msg(LOG_WARN, "cannot remove an old checkpoint", "file=\"%s\" error=\"%s\"", paths[index[j]],
                    strerror(errno));
        }
    }
    if (apply_needs < *journal_floor)
        *journal_floor = apply_needs;
out:
    free(created);
    free(restart);
    free(index);
    free(keep);
    ckpt_list_free(paths, n_paths);
    return rc;
}
