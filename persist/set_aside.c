/* set_aside.c -- reading the runs of journal entries a data directory set
 * aside (set_aside.h); the standby writes them (replicator/standby.c).
 * A run's range is in its file name, so listing one reads no entry. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persist/checkpoint.h"
#include "persist/json_bytes.h"
#include "persist/set_aside.h"
#include "persist/store.h"
#include "shm/segment.h"

#define RUN_MAX_ENTRY (JOURNAL_MAX_RAW + (1u << 20)) /* a body is at most JOURNAL_MAX_RAW, a header far less */

/* The range of a run's file name; 0 when it is not one. */
static int parse_name(const char *name, struct set_aside_run *r)
{
    int end = 0;

    if (sscanf(name, "entries-%" SCNu64 "-%" SCNu64 "-lsn-%" SCNu64 "-%" SCNu64 "-%" SCNu64 ".rkj%n",
               &r->first_seq, &r->last_seq, &r->first_lsn, &r->last_lsn, &r->set_aside_ns, &end) != 5)
        return 0;
    return end > 0 && name[end] == '\0' && r->first_seq >= 1 && r->first_seq <= r->last_seq;
}

static int run_cmp(const void *pa, const void *pb)
{
    const struct set_aside_run *a = pa, *b = pb;

    if (a->set_aside_ns != b->set_aside_ns)
        return a->set_aside_ns < b->set_aside_ns ? -1 : 1;
    return a->first_seq < b->first_seq ? -1 : a->first_seq > b->first_seq;
}

int set_aside_list(const char *data_dir, struct set_aside_run **runs, size_t *n_runs)
{
    char dir[PATH_MAX];
    struct set_aside_run *all = NULL, r;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d;

    *runs = NULL;
    *n_runs = 0;
    snprintf(dir, sizeof dir, "%s/set-aside", data_dir);
    d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : errno;
    while ((de = readdir(d)) != NULL) {
        memset(&r, 0, sizeof r);
        if (!parse_name(de->d_name, &r))
            continue;
        if ((size_t)snprintf(r.path, sizeof r.path, "%s/%s", dir, de->d_name) >= sizeof r.path)
            continue; /* a path no one could open */
        if (n == cap) {
            struct set_aside_run *grown = realloc(all, (cap ? cap * 2 : 8) * sizeof *all);
            if (!grown) {
                free(all);
                closedir(d);
                return ENOMEM;
            }
            all = grown;
            cap = cap ? cap * 2 : 8;
        }
        all[n++] = r;
    }
    closedir(d);
    if (n)
        qsort(all, n, sizeof *all, run_cmp);
    *runs = all;
    *n_runs = n;
    return 0;
}

json_t *set_aside_json(const struct set_aside_run *runs, size_t n_runs)
{
    json_t *list = json_array();
    uint64_t n_entries = 0;

    for (size_t i = 0; list && i < n_runs; i++) {
        const struct set_aside_run *r = &runs[i];
        const char *base = strrchr(r->path, '/');
        /* "o" steals its reference, even when json_pack fails */
        json_t *o = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "file", json_cstr(base ? base + 1 : r->path),
                              "first_seq", json_uint(r->first_seq), "last_seq", json_uint(r->last_seq),
                              "entries", json_uint(r->last_seq - r->first_seq + 1), "first_lsn",
                              json_uint(r->first_lsn), "last_lsn", json_uint(r->last_lsn));
        if (!o || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return NULL;
        }
        n_entries += r->last_seq - r->first_seq + 1;
    }
    return list ? json_pack("{s:o, s:o}", "set_aside", list, "set_aside_entries", json_uint(n_entries)) : NULL;
}

int set_aside_read(const struct set_aside_run *run,
                   int (*fn)(void *arg, uint64_t seq, const uint8_t *entry, size_t len), void *arg, char *err,
                   size_t err_size)
{
    FILE *f = fopen(run->path, "rb");
    uint8_t prefix[4], *entry = NULL;
    uint64_t seq = run->first_seq;
    int rc = 0;

    if (!f)
        return seg_fail(err, err_size, errno, "cannot open %s: %s", run->path, strerror(errno));
    /* one entry per step, each at least 4 bytes of the file: bounded */
    for (;;) {
        size_t got = fread(prefix, 1, sizeof prefix, f);
        if (got == 0 && feof(f))
            break;
        if (got != sizeof prefix) {
            rc = ferror(f) ? EIO : RK_ECORRUPT;
            seg_error(err, err_size, "%s: entry %" PRIu64 ": its length is cut off", run->path, seq);
            break;
        }
        size_t len = (size_t)prefix[0] | (size_t)prefix[1] << 8 | (size_t)prefix[2] << 16 |
                     (size_t)prefix[3] << 24;
        if (seq > run->last_seq || len == 0 || len > RUN_MAX_ENTRY) {
            rc = seg_fail(err, err_size, RK_ECORRUPT, "%s: entry %" PRIu64 " of %zu bytes: %s", run->path, seq,
                          len, seq > run->last_seq ? "past the last the name says" : "not a journal entry");
            break;
        }
        uint8_t *grown = realloc(entry, len);
        if (!grown) {
            rc = ENOMEM;
            break;
        }
        entry = grown;
        if (fread(entry, 1, len, f) != len) {
            rc = seg_fail(err, err_size, ferror(f) ? EIO : RK_ECORRUPT, "%s: entry %" PRIu64 " is cut off",
                          run->path, seq);
            break;
        }
        rc = fn(arg, seq, entry, len);
        if (rc)
            break;
        seq++;
    }
    if (!rc && seq != run->last_seq + 1)
        rc = seg_fail(err, err_size, RK_ECORRUPT, "%s: %" PRIu64 " entries, the name says %" PRIu64, run->path,
                      seq - run->first_seq, run->last_seq - run->first_seq + 1);
    free(entry);
    fclose(f);
    return rc;
}

int set_aside_checkpoints(const char *data_dir, uint64_t after_seq, size_t *n_moved, char *to, size_t to_size,
                          char *err, size_t err_size)
{
    char dir[PATH_MAX], aside[PATH_MAX + 16], info_err[256];
    char **paths = NULL;
    size_t n = 0;
    int rc, made = 0;

    *n_moved = 0;
    snprintf(dir, sizeof dir, "%s/checkpoints", data_dir);
    snprintf(aside, sizeof aside, "%s/set-aside", data_dir);
    snprintf(to, to_size, "%s/checkpoints-%" PRIu64, aside, seg_now_ns(CLOCK_REALTIME));
    rc = ckpt_list(dir, &paths, &n);
    if (rc == ENOENT)
        return 0;
    if (rc)
        return seg_fail(err, err_size, rc > 0 ? rc : EIO, "cannot list %s: %s", dir,
                        rc > 0 ? strerror(rc) : "invalid");
    for (size_t i = 0; !rc && i < n; i++) {
        struct ckpt_info info = {0};
        char dest[PATH_MAX + 300];
        const char *base = strrchr(paths[i], '/');
        int past = ckpt_read_info(paths[i], &info, info_err, sizeof info_err) == 0 && info.journal_seq > after_seq;

        ckpt_info_free(&info);
        if (!past)
            continue;
        if (!made) {
            /* the new folders durable before anything moves into them:
             * set-aside/ in the data directory (when made now), the run's
             * folder in set-aside/ (a power cut must not lose the moved
             * checkpoints with a folder entry never synced) */
            int made_aside = sys_mkdir(aside, 0700) == 0;
            if ((!made_aside && errno != EEXIST) || sys_mkdir(to, 0700) != 0) {
                rc = seg_fail(err, err_size, errno, "cannot create %s: %s", to, strerror(errno));
                break;
            }
            if ((made_aside && (rc = sys_fsync_dir(data_dir)) != 0) || (rc = sys_fsync_dir(aside)) != 0) {
                seg_error(err, err_size, "cannot fsync %s or %s: %s", data_dir, aside, strerror(rc));
                break;
            }
        }
        made = 1;
        snprintf(dest, sizeof dest, "%s/%s", to, base ? base + 1 : paths[i]);
        if (sys_rename(paths[i], dest) != 0)
            rc = seg_fail(err, err_size, errno, "cannot move %s to %s: %s", paths[i], to, strerror(errno));
        else
            (*n_moved)++;
    }
    ckpt_list_free(paths, n);
    /* the moves durable: the new folder first, then the one they left */
    if (!rc && made && ((rc = sys_fsync_dir(to)) != 0 || (rc = sys_fsync_dir(dir)) != 0))
        seg_error(err, err_size, "cannot fsync %s or %s: %s", to, dir, strerror(rc));
    return rc;
}
