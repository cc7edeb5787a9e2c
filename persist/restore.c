/* restore.c -- a new data directory from a checkpoint plus journal replay,
 * to the latest point or a point in time; and a state imported from plain
 * entries (restore.h has the rules).
 *
 * Design: restore never applies anything to SRC and never guesses.  It
 * settles everything it can before it creates DIR -- which checkpoint,
 * which journal entries, where a height's MARK is -- so that a point that
 * cannot be reached leaves nothing behind; then it builds DIR with the
 * node's own code (applier_load_checkpoint, store_journal_append,
 * applier_run), so that DIR is what a node that had stopped at the point
 * would have left, and a node started on it goes on from there.
 *
 *   plan():  open SRC (its lock) --> journal range --> candidates newest first
 *              --> position filter (header only) --> ckpt_verify (fails: say
 *              so, fall back to the previous one) --> a height's MARK:
 *              find_mark() walks the journal from the restart point
 *   build(): mkdir DIR --> store_open(CREATE) --> applier_load_checkpoint
 *              --> copy the checkpoint file --> copy_journal() (the entry
 *              holding a height's MARK is cut after it: cut_entry())
 *              --> applier_run in steps --> read the producers' marks
 *   any failure in build(): remove_made() takes away what it made in DIR.
 *
 * The point of a height: groups apply at their MARK, in LSN order, so the
 * state "right after P's MARK N" is every group whose MARK's LSN is at or
 * below that MARK's; a group of another producer still open there is
 * held, never applied (it stays open in DIR, as it would in a node).
 *
 * Threads: one; each call opens and closes everything it uses.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "persist/config.h"
#include "persist/log.h"
#include "persist/restore.h"
#include "shm/ring.h"
#include "shm/segment.h"
#include "persist/store.h"

#define REPLAY_STEP 64u /* journal entries applied between progress reports */
#define ZSTD_LEVEL 1    /* a cut entry is encoded again as the drain does */

/* The Berkeley DB cache restore's environments get when the caller gives
 * none: the node's default ([storage] cache_mb).  BDB's own default (256
 * KiB) runs out in one apply transaction under MVCC (ENOMEM). */
static uint32_t default_cache_mb(void)
{
    struct node_config *c = malloc(sizeof *c);
    uint32_t mb = 1024;

    if (c) {
        node_config_defaults(c);
        mb = c->cache_mb;
    }
    free(c);
    return mb;
}

/* What plan() settles before DIR is made. */
struct plan {
    char ckpt[PATH_MAX];
    struct ckpt_info info; /* the chosen checkpoint's header (verified) */
    uint64_t first_seq;    /* first journal entry to copy into DIR (0: none) */
    uint64_t last_seq;     /* last one: the point */
    uint64_t cut_lsn;      /* a height's MARK: last_seq is cut after it (0: no cut) */
    uint32_t n_bad;        /* newer checkpoints that failed verification */
};

/* ------------------------------------------------------------ DIR */

/* DIR must not exist, or be an empty folder.  *existed says which. */
static int check_target(const char *dir, int *existed, char *err, size_t err_size)
{
    struct stat st;
    struct dirent *d;
    DIR *dh;
    int rc = 0;

    *existed = 0;
    if (!dir || !dir[0])
        return seg_fail(err, err_size, RK_EINVAL, "no target folder given (--to DIR)");
    if (lstat(dir, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return seg_fail(err, err_size, errno, "cannot use %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return seg_fail(err, err_size, RK_EEXIST,
                        "%s exists and is not a folder: restore never overwrites; give a new folder", dir);
    dh = opendir(dir);
    if (!dh)
        return seg_fail(err, err_size, errno, "cannot read folder %s: %s", dir, strerror(errno));
    /* bounded by the folder's entries; stops at the first real one */
    while ((d = readdir(dh)) != NULL) {
        if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
            continue;
        rc = seg_fail(err, err_size, RK_EEXIST,
                      "%s is not empty (it holds %s): restore never overwrites; give a new or empty folder",
                      dir, d->d_name);
        break;
    }
    closedir(dh);
    *existed = 1;
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    if (ftw->level == 0)
        return 0; /* the folder itself: the caller decides */
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

/* Removes what was made in dir, and dir itself unless it existed before. */
static void remove_made(const char *dir, int existed)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (!existed)
        rmdir(dir);
}

/* Copies checkpoint file from into folder dir under the same base name
 * (or <journal seq>.rkcp when its name does not have that pattern, so that
 * a node lists it), mode 0600, fsynced with the folder. */
static int copy_checkpoint(const char *from, const char *dir, uint64_t journal_seq, char *err,
                           size_t err_size)
{
    const char *base = strrchr(from, '/') ? strrchr(from, '/') + 1 : from;
    char to[PATH_MAX], buf[1 << 16];
    size_t blen = strlen(base);
    int in = -1, out = -1, rc = 0;
    ssize_t n;

    if (blen == 20 + strlen(CKPT_SUFFIX) && strspn(base, "0123456789") == 20 &&
        strcmp(base + 20, CKPT_SUFFIX) == 0)
        snprintf(to, sizeof to, "%s/%s", dir, base);
    else
        snprintf(to, sizeof to, "%s/%020" PRIu64 CKPT_SUFFIX, dir, journal_seq);
    in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        rc = seg_fail(err, err_size, errno, "cannot read %s: %s", from, strerror(errno));
        goto out;
    }
    out = sys_open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        rc = seg_fail(err, err_size, errno, "cannot create %s: %s", to, strerror(errno));
        goto out;
    }
    /* each round reads at least one byte or ends: bounded by the file */
    while ((n = read(in, buf, sizeof buf)) > 0) {
        for (ssize_t done = 0; done < n;) {
            ssize_t w = sys_write(out, buf + done, (size_t)(n - done));
            if (w < 0) {
                rc = seg_fail(err, err_size, errno, "cannot write %s: %s", to, strerror(errno));
                goto out;
            }
            done += w;
        }
    }
    if (n < 0) {
        rc = seg_fail(err, err_size, errno, "cannot read %s: %s", from, strerror(errno));
        goto out;
    }
    if (sys_fsync(out) != 0) {
        rc = seg_fail(err, err_size, errno, "cannot fsync %s: %s", to, strerror(errno));
        goto out;
    }
    rc = sys_fsync_dir(dir);
    if (rc)
        seg_error(err, err_size, "cannot fsync %s: %s", dir, strerror(rc));
out:
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0 && !rc)
        rc = seg_fail(err, err_size, errno, "cannot close %s: %s", to, strerror(errno));
    return rc;
}

/* ------------------------------------------------------------ plan */

static void notice(const struct restore_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notice(const struct restore_opts *o, const char *fmt, ...)
{
    char msg[1536];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (o->notice)
        o->notice(o->notice_arg, msg);
    else
        log_msg(LOG_WARN, "restore", "detail=\"%s\"", msg);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* P's mark in a checkpoint's header: height and LSN (0, 0 when it has
 * none). */
static void header_mark(const struct ckpt_info *info, const char *producer, uint64_t *height, uint64_t *lsn)
{
    *height = 0;
    *lsn = 0;
    for (uint32_t i = 0; i < info->n_producers; i++) {
        if (strcmp(info->producers[i].name, producer) == 0) {
            *height = info->producers[i].height;
            *lsn = info->producers[i].applied_lsn;
        }
    }
}

/* Nearest heights of a producer's MARKs seen around the one looked for. */
struct nearest {
    int have_below, have_above;
    uint64_t below, above;
};

static void nearest_see(struct nearest *nr, uint64_t h, uint64_t want)
{
    if (h < want && (!nr->have_below || h > nr->below)) {
        nr->below = h;
        nr->have_below = 1;
    }
    if (h > want && (!nr->have_above || h < nr->above)) {
        nr->above = h;
        nr->have_above = 1;
    }
}

static void nearest_text(const struct nearest *nr, char *buf, size_t size)
{
    char below[32] = "none", above[32] = "none";

    if (nr->have_below)
        snprintf(below, sizeof below, "%" PRIu64, nr->below);
    if (nr->have_above)
        snprintf(above, sizeof above, "%" PRIu64, nr->above);
    snprintf(buf, size, "nearest heights seen: %s below, %s above", below, above);
}

/* Walks SRC's journal from the checkpoint's restart point to last_j, with
 * the checkpoint's slot map updated by ATTACH frames, for the first MARK
 * of `producer` with `height` above the producer's applied LSN.  0 with
 * *cut_lsn and *cut_seq, or RK_ENOTFOUND naming the nearest heights. */
static int find_mark(store *src, const struct restore_opts *o, const char *ckpt, const struct ckpt_info *info,
                     uint64_t last_j, uint64_t *cut_lsn, uint64_t *cut_seq, char *err, size_t err_size)
{
    char slots[RING_MAX_PRODUCERS][RK_NAME_MAX + 1]; /* 3 KiB */
    const struct ckpt_replay *rp = &info->replay;
    struct nearest nr = {0};
    journal_entry e = {0};
    uint64_t min_lsn = 0, h0 = 0, l0 = 0;
    char why[512] = "", near[128];
    int rc = 0;

    memset(slots, 0, sizeof slots);
    for (uint32_t i = 0; i < rp->n_slots; i++)
        if (rp->slots[i].id < RING_MAX_PRODUCERS)
            snprintf(slots[rp->slots[i].id], sizeof slots[0], "%s", rp->slots[i].name);
    for (uint32_t i = 0; i < rp->n_producers; i++)
        if (strcmp(rp->producers[i].name, o->producer) == 0)
            min_lsn = rp->producers[i].applied_lsn;
    header_mark(info, o->producer, &h0, &l0);
    if (l0)
        nearest_see(&nr, h0, o->height);
    for (uint64_t seq = rp->restart_seq; seq <= last_j; seq++) {
        ring_frame f;
        rc = store_journal_get(src, seq, &e, why, sizeof why);
        if (rc) {
            seg_error(err, err_size, "cannot read SRC's journal entry %" PRIu64 ": %s", seq, why);
            if (rc == RK_ENOTFOUND)
                rc = RK_ECORRUPT; /* a gap: sequences have none */
            goto out;
        }
        for (size_t off = 0; off < e.h.raw_len; off += frame_align(f.raw_len)) {
            rc = frame_decode(e.frames + off, e.h.raw_len - off, &f, why, sizeof why);
            if (rc) { /* journal_decode checked them: not reached unless memory is bad */
                seg_error(err, err_size, "journal entry %" PRIu64 ": %s", seq, why);
                goto out;
            }
            if (f.type == FRAME_ATTACH && f.klen > 0 && f.klen <= RK_NAME_MAX &&
                f.producer < RING_MAX_PRODUCERS) {
                memcpy(slots[f.producer], f.key, f.klen);
                slots[f.producer][f.klen] = '\0';
            } else if (f.type == FRAME_MARK && f.producer < RING_MAX_PRODUCERS && f.lsn > min_lsn &&
                       strcmp(slots[f.producer], o->producer) == 0) {
                uint64_t h = le64(f.val);
                if (h == o->height) {
                    *cut_lsn = f.lsn;
                    *cut_seq = seq;
                    goto out;
                }
                nearest_see(&nr, h, o->height);
            }
        }
        journal_entry_free(&e);
        if (o->progress && (seq - rp->restart_seq) % REPLAY_STEP == 0) {
            rc = o->progress(o->progress_arg, RESTORE_SCANNING, seq - rp->restart_seq + 1,
                             last_j - rp->restart_seq + 1);
            if (rc)
                goto out;
        }
    }
    nearest_text(&nr, near, sizeof near);
    rc = seg_fail(err, err_size, RK_ENOTFOUND,
                  "producer %s has no MARK with height %" PRIu64 " in the journal after checkpoint %s "
                  "(entries %" PRIu64 "..%" PRIu64 "); %s",
                  o->producer, o->height, ckpt, rp->restart_seq, last_j, near);
out:
    journal_entry_free(&e);
    return rc;
}

/* Where does checkpoint info stand against the point?  -1 past it (an
 * older one is needed), 0 usable; for a height also *exact (the point is
 * the checkpoint's own). */
static int position(const struct restore_opts *o, const struct ckpt_info *info, uint64_t point_seq,
                    int *exact)
{
    uint64_t h, lsn;

    *exact = 0;
    if (o->target != RESTORE_HEIGHT) {
        *exact = info->journal_seq == point_seq;
        return info->journal_seq > point_seq ? -1 : 0;
    }
    header_mark(info, o->producer, &h, &lsn);
    if (lsn && h > o->height)
        return -1;
    if (lsn && h == o->height) {
        /* the MARK is in the checkpoint: exactly there if no group of
         * another producer was applied after it */
        if (info->lsn > lsn)
            return -1;
        *exact = 1;
    }
    return 0;
}

static const char *point_text(const struct restore_opts *o, char *buf, size_t size)
{
    if (o->target == RESTORE_HEIGHT)
        snprintf(buf, size, "height %s:%" PRIu64, o->producer, o->height);
    else if (o->target == RESTORE_SEQ)
        snprintf(buf, size, "journal seq %" PRIu64, o->seq);
    else
        snprintf(buf, size, "the latest point");
    return buf;
}

/* Chooses the checkpoint and the journal entries (struct plan). */
static int plan(store *src, const struct restore_opts *o, struct plan *p, char *err, size_t err_size)
{
    char dir[PATH_MAX], why[1024], point[128], **paths = NULL, *one[1];
    size_t n_paths = 0;
    uint64_t first_j = 0, last_j = 0, point_seq = 0;
    struct journal_header last = {0};
    int rc, n_past = 0, chosen = 0;

    point_text(o, point, sizeof point);
    rc = store_journal_first(src, &first_j);
    if (rc == 0)
        rc = store_journal_last(src, &last);
    if (rc && rc != RK_ENOTFOUND)
        return seg_fail(err, err_size, rc, "cannot read %s's journal: %s", o->src_dir, store_strerror(rc));
    last_j = rc == 0 ? last.seq : 0;
    if (o->target == RESTORE_SEQ && o->seq > last_j)
        return seg_fail(err, err_size, RK_ENOTFOUND,
                        "journal seq %" PRIu64 " is beyond the end of %s's journal (entries %" PRIu64
                        "..%" PRIu64 ")",
                        o->seq, o->src_dir, first_j, last_j);
    point_seq = o->target == RESTORE_SEQ ? o->seq : last_j;
    if (o->checkpoint) {
        one[0] = (char *)o->checkpoint;
        paths = one;
        n_paths = 1;
    } else {
        snprintf(dir, sizeof dir, "%s/checkpoints", o->src_dir);
        rc = ckpt_list(dir, &paths, &n_paths);
        if (rc)
            return seg_fail(err, err_size, rc, "cannot list %s: %s", dir, store_strerror(rc));
        if (o->target == RESTORE_LATEST && last_j == 0 && n_paths) {
            /* an empty journal: the newest checkpoint is the latest point */
            uint64_t seq = strtoull(strrchr(paths[0], '/') + 1, NULL, 10);
            point_seq = seq;
        }
    }
    for (size_t i = 0; i < n_paths && !chosen; i++) {
        struct ckpt_info hdr = {0};
        int exact = 0;

        why[0] = '\0';
        rc = ckpt_read_info(paths[i], &hdr, why, sizeof why);
        if (rc == 0 && position(o, &hdr, point_seq, &exact) < 0) {
            ckpt_info_free(&hdr);
            n_past++;
            continue;
        }
        ckpt_info_free(&hdr);
        if (rc == 0)
            rc = ckpt_verify(paths[i], &p->info, NULL, NULL, why, sizeof why);
        if (rc) {
            p->n_bad++;
            if (o->checkpoint) {
                seg_error(err, err_size, "checkpoint %s fails verification: %s", paths[i], why);
                goto out;
            }
            notice(o, "checkpoint %s fails verification (%s): falling back to the previous one", paths[i],
                   why);
            continue;
        }
        position(o, &p->info, point_seq, &exact);
        if (!p->info.has_replay && !exact) {
            rc = seg_fail(err, err_size, RK_EINVAL,
                          "checkpoint %s is format %u.%u: it has no replay record, so no journal can be "
                          "applied after it; it restores its own point only (--seq %" PRIu64
                          "), not %s: use a checkpoint of format 1.1",
                          paths[i], p->info.major, p->info.minor, p->info.journal_seq, point);
            goto out;
        }
        snprintf(p->ckpt, sizeof p->ckpt, "%s", paths[i]);
        if (o->target == RESTORE_HEIGHT) {
            if (exact) {
                point_seq = p->info.journal_seq;
            } else {
                rc = find_mark(src, o, paths[i], &p->info, last_j, &p->cut_lsn, &point_seq, err, err_size);
                if (rc)
                    goto out;
                if (p->cut_lsn < p->info.lsn) {
                    /* the MARK is older than groups the checkpoint holds
                     * (a producer that went back in height): an older one */
                    ckpt_info_free(&p->info);
                    p->cut_lsn = 0;
                    n_past++;
                    continue;
                }
            }
        }
        chosen = 1;
    }
    if (!chosen && o->follower && !o->checkpoint && o->target == RESTORE_SEQ && first_j == 1) {
        /* a standby's rebuild with no checkpoint at or before the point:
         * its journal holds everything, replayed onto an empty state */
        p->ckpt[0] = '\0';
        p->first_seq = 1;
        p->last_seq = point_seq;
        rc = 0;
        goto out;
    }
    if (!chosen) {
        if (o->checkpoint && n_past)
            rc = seg_fail(err, err_size, RK_ENOTFOUND,
                          "checkpoint %s is past %s: its state holds more than that point; give an older "
                          "checkpoint, or none to let restore choose",
                          o->checkpoint, point);
        else if (p->n_bad && !n_past)
            rc = seg_fail(err, err_size, RK_ECORRUPT,
                          "no checkpoint of %s/checkpoints verifies (%u tried): nothing to restore from",
                          o->src_dir, p->n_bad);
        else if (n_paths == 0)
            rc = seg_fail(err, err_size, RK_ENOTFOUND,
                          "%s/checkpoints holds no checkpoint: take one with `ringkeep checkpoint create` "
                          "on a running node",
                          o->src_dir);
        else
            rc = seg_fail(err, err_size, RK_ENOTFOUND,
                          "%s is before the oldest usable checkpoint (%zu of %zu checkpoints are past it, %u "
                          "fail verification)",
                          point, (size_t)n_past, n_paths, p->n_bad);
        goto out;
    }
    /* the entries to copy: from the restart point (open groups are read
     * again) to the point; at least the checkpoint's last entry, so that
     * DIR's journal says where sequences and LSNs go on */
    p->last_seq = point_seq;
    p->first_seq = p->info.has_replay ? p->info.replay.restart_seq : p->info.journal_seq + 1;
    if (p->first_seq > point_seq)
        p->first_seq = point_seq;
    if (p->first_seq == 0) {
        p->last_seq = 0; /* an empty checkpoint and no journal */
    } else if (p->first_seq < first_j || first_j == 0 || point_seq > last_j) {
        rc = seg_fail(err, err_size, RK_ECORRUPT,
                      "%s's journal holds entries %" PRIu64 "..%" PRIu64 " but checkpoint %s needs %" PRIu64
                      "..%" PRIu64 " (older entries were trimmed): use a newer checkpoint",
                      o->src_dir, first_j, last_j, p->ckpt, p->first_seq, point_seq);
        goto out;
    }
    rc = 0;
out:
    if (paths != one)
        ckpt_list_free(paths, n_paths);
    if (rc)
        ckpt_info_free(&p->info);
    return rc;
}

/* ------------------------------------------------------------ build */

/* Entry e cut just after the frame at cut_lsn, encoded again: header
 * counts, last_lsn and next_lsn (just past the MARK) match what is kept. */
static int cut_entry(const journal_entry *e, uint64_t cut_lsn, uint8_t **out, size_t *out_len,
                     uint32_t *n_dropped, char *err, size_t err_size)
{
    struct journal_header h = e->h;
    uint32_t n_kept = 0;
    size_t kept_len = 0;
    ring_frame f;
    int rc;

    for (size_t off = 0; off < e->h.raw_len; off += frame_align(f.raw_len)) {
        rc = frame_decode(e->frames + off, e->h.raw_len - off, &f, NULL, 0);
        if (rc)
            return seg_fail(err, err_size, rc, "journal entry %" PRIu64 ": a frame fails to decode", h.seq);
        n_kept++;
        if (f.lsn == cut_lsn) {
            kept_len = off + frame_align(f.raw_len);
            h.last_lsn = f.lsn;
            h.next_lsn = f.lsn + frame_align(f.raw_len);
            break;
        }
    }
    if (!kept_len)
        return seg_fail(err, err_size, RK_ECORRUPT, "journal entry %" PRIu64 " has no frame at LSN %" PRIu64,
                        h.seq, cut_lsn);
    *n_dropped = e->h.n_frames - n_kept;
    h.n_frames = n_kept;
    rc = journal_encode(&h, e->frames, kept_len, ZSTD_LEVEL, out, out_len);
    if (rc)
        return seg_fail(err, err_size, rc,
                        "journal entry %" PRIu64 ": cannot encode it cut at LSN %" PRIu64 ": %s", h.seq,
                        cut_lsn, store_strerror(rc));
    return 0;
}

/* Copies SRC's entries p->first_seq..p->last_seq into dst's journal,
 * checking each (journal_decode), the last one cut when p->cut_lsn. */
static int copy_journal(store *src, store *dst, const struct restore_opts *o, const struct plan *p,
                        struct restore_result *res, char *err, size_t err_size)
{
    uint8_t *raw = NULL, *cut = NULL;
    size_t len = 0, cut_len = 0;
    journal_entry e = {0};
    char why[512] = "";
    int rc = 0;

    for (uint64_t seq = p->first_seq; p->first_seq && seq <= p->last_seq; seq++) {
        rc = store_journal_get_raw(src, seq, &raw, &len);
        if (rc) {
            seg_error(err, err_size, "cannot read %s's journal entry %" PRIu64 ": %s", o->src_dir, seq,
                      rc == RK_ENOTFOUND ? "not there (a gap)" : store_strerror(rc));
            if (rc == RK_ENOTFOUND)
                rc = RK_ECORRUPT;
            goto out;
        }
        rc = journal_decode(raw, len, &e, why, sizeof why);
        if (rc == 0 && e.h.seq != seq)
            rc = seg_fail(why, sizeof why, RK_ECORRUPT, "stored under key %" PRIu64 " but says %" PRIu64, seq,
                          e.h.seq);
        if (rc) {
            seg_error(err, err_size, "%s's journal entry %" PRIu64 " is damaged: %s", o->src_dir, seq, why);
            goto out;
        }
        if (seq == p->last_seq && p->cut_lsn && e.h.last_lsn != p->cut_lsn) {
            rc = cut_entry(&e, p->cut_lsn, &cut, &cut_len, &res->n_frames_cut, err, err_size);
            if (rc)
                goto out;
            rc = store_journal_append(dst, seq, cut, cut_len);
        } else {
            rc = store_journal_append(dst, seq, raw, len);
        }
        if (rc) {
            seg_error(err, err_size, "cannot write journal entry %" PRIu64 " into %s: %s", seq, o->to_dir,
                      store_strerror(rc));
            goto out;
        }
        journal_entry_free(&e);
        free(raw);
        raw = NULL;
        if (o->progress && (seq - p->first_seq) % REPLAY_STEP == 0) {
            rc = o->progress(o->progress_arg, RESTORE_COPYING, seq - p->first_seq + 1,
                             p->last_seq - p->first_seq + 1);
            if (rc)
                goto out;
        }
    }
    res->first_seq = p->first_seq;
    res->last_seq = p->first_seq ? p->last_seq : 0;
out:
    journal_entry_free(&e);
    free(raw);
    free(cut);
    return rc;
}

/* The producers with a MARK applied, from dst's meta.db ("p:<name>"). */
static int read_marks(store *dst, struct restore_result *res)
{
    DB *meta = store_meta(dst);
    DBC *cur = NULL;
    DBT k = {0}, v = {0};
    int rc = meta->cursor(meta, NULL, &cur, 0);

    while (!rc && (rc = cur->get(cur, &k, &v, DB_NEXT)) == 0) {
        struct producer_meta m;
        struct ckpt_producer *grown;
        if (k.size < 3 || k.size - 2 > RK_NAME_MAX || memcmp(k.data, "p:", 2) != 0 || v.size != sizeof m)
            continue;
        memcpy(&m, v.data, sizeof m);
        if (m.n_groups == 0 && m.applied_lsn == 0)
            continue;
        grown = realloc(res->producers, (res->n_producers + 1) * sizeof *grown);
        if (!grown) {
            rc = ENOMEM;
            break;
        }
        res->producers = grown;
        memset(&grown[res->n_producers], 0, sizeof *grown);
        memcpy(grown[res->n_producers].name, (char *)k.data + 2, k.size - 2);
        grown[res->n_producers].height = m.height;
        grown[res->n_producers].applied_lsn = m.applied_lsn;
        res->n_producers++;
    }
    if (cur)
        cur->close(cur);
    return rc == DB_NOTFOUND ? 0 : rc;
}

/* The newest epoch a checkpoint's header knows. */
static uint64_t ckpt_newest_epoch(const struct ckpt_info *info)
{
    uint64_t e = info->epoch;

    if (info->n_history && info->history[info->n_history - 1].epoch > e)
        e = info->history[info->n_history - 1].epoch;
    return e;
}

/* DIR's history up to the point: SRC's (the checkpoint's when SRC has
 * none) cut after it; before any entry is copied (J4). */
static int adopt_history(store *src, store *dst, const struct restore_opts *o, const struct plan *p,
                         char *err, size_t err_size)
{
    struct epoch_start *h = NULL;
    uint32_t n = 0;
    char why[256] = "";
    int rc = store_history(src, &h, &n);

    if (!rc && n == 0 && p->info.n_history) {
        h = malloc(p->info.n_history * sizeof *h);
        rc = h ? 0 : ENOMEM;
        n = h ? p->info.n_history : 0;
        if (h)
            memcpy(h, p->info.history, n * sizeof *h);
    }
    n = history_cut(h, n, p->last_seq ? p->last_seq : 1);
    if (!rc && n)
        rc = store_history_adopt(dst, h, n, why, sizeof why);
    if (rc)
        seg_error(err, err_size, "cannot give %s the epoch history of %s: %s", o->to_dir, o->src_dir,
                  why[0] ? why : store_strerror(rc));
    free(h);
    return rc;
}

/* A new epoch for DIR, above every one SRC and the checkpoint knew,
 * beginning at the entry after the point. */
static int begin_epoch(store *src, store *dst, const struct restore_opts *o, const struct plan *p,
                       struct restore_result *res, char *err, size_t err_size)
{
    struct journal_header last = {0};
    uint64_t above = store_epoch_seen(src), next_lsn;
    struct epoch_start *h = NULL;
    int rc;

    if (ckpt_newest_epoch(&p->info) > above)
        above = ckpt_newest_epoch(&p->info);
    rc = store_journal_last(dst, &last);
    next_lsn = rc == 0 ? last.next_lsn : (p->info.lsn ? p->info.lsn + 1 : 0);
    rc = store_epoch_begin(dst, above + 1, p->last_seq + 1, next_lsn, &res->epoch);
    if (!rc)
        rc = store_history(dst, &h, &res->n_history);
    free(h);
    if (rc)
        seg_error(err, err_size, "cannot begin a new epoch in %s: %s", o->to_dir, store_strerror(rc));
    return rc;
}

static int on_load(void *arg, uint64_t done, uint64_t total)
{
    const struct restore_opts *o = arg;

    return o->progress ? o->progress(o->progress_arg, RESTORE_LOADING, done, total) : 0;
}

static int build(store *src, const struct restore_opts *o, uint32_t cache_mb, const struct plan *p,
                 struct restore_result *res, char *err, size_t err_size)
{
    struct ckpt_info loaded = {0};
    store *dst = NULL;
    applier *a = NULL;
    char ckpt_dir[PATH_MAX];
    uint64_t next, start;
    int rc;

    if (sys_mkdir(o->to_dir, 0700) != 0 && errno != EEXIST)
        return seg_fail(err, err_size, errno, "cannot create %s: %s", o->to_dir, strerror(errno));
    rc = store_open(o->to_dir, STORE_CREATE | STORE_BUILDING, cache_mb, &dst, err, err_size);
    if (!rc)
        rc = applier_open(dst, &a, err, err_size);
    if (!rc && p->ckpt[0])
        rc = applier_load_checkpoint(a, p->ckpt, &loaded, on_load, (void *)o, err, err_size);
    if (rc)
        goto out;
    res->n_loaded = loaded.n_entries;
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/checkpoints", o->to_dir);
    if (p->ckpt[0])
        rc = copy_checkpoint(p->ckpt, ckpt_dir, loaded.journal_seq, err, err_size);
    if (!rc)
        rc = adopt_history(src, dst, o, p, err, err_size);
    if (!rc)
        rc = copy_journal(src, dst, o, p, res, err, err_size);
    if (rc)
        goto out;
    /* apply in steps, committing between them (whole entries: group
     * boundaries), so that progress can be told */
    start = next = applier_meta(a).restart_seq;
    for (uint64_t upto = next + REPLAY_STEP - 1; next <= p->last_seq; upto += REPLAY_STEP) {
        if (upto > p->last_seq)
            upto = p->last_seq;
        rc = applier_run(a, upto, STORE_TXN_RECORDS, err, err_size);
        if (rc)
            goto out;
        next = upto + 1;
        if (o->progress) {
            rc = o->progress(o->progress_arg, RESTORE_REPLAYING, upto - start + 1, p->last_seq - start + 1);
            if (rc)
                goto out;
        }
    }
    res->applied = applier_meta(a);
    res->n_replayed = p->last_seq > loaded.journal_seq ? p->last_seq - loaded.journal_seq : 0;
    rc = read_marks(dst, res);
    if (rc)
        seg_error(err, err_size, "cannot read the producers' marks in %s: %s", o->to_dir, store_strerror(rc));
    if (!rc && !o->follower)
        rc = begin_epoch(src, dst, o, p, res, err, err_size);
    if (!rc) {
        applier_close(a); /* its transactions are committed */
        a = NULL;
        rc = store_built(dst); /* all of it durable, then the BUILDING marker goes */
        if (rc)
            seg_error(err, err_size, "cannot make %s durable: %s", o->to_dir, store_strerror(rc));
    }
out:
    ckpt_info_free(&loaded);
    applier_close(a);
    store_close(dst);
    return rc;
}

void restore_result_free(struct restore_result *r)
{
    if (!r)
        return;
    free(r->producers);
    r->producers = NULL;
    r->n_producers = 0;
}

int restore_run(const struct restore_opts *o, struct restore_result *res, char *err, size_t err_size)
{
    struct plan p = {0};
    store *src = NULL;
    uint32_t cache_mb;
    int rc, existed = 0, made = 0;

    if (err && err_size)
        err[0] = '\0';
    memset(res, 0, sizeof *res);
    if (!o || !o->src_dir || !o->to_dir || (o->target == RESTORE_HEIGHT && (!o->producer || !o->producer[0])))
        return seg_fail(err, err_size, RK_EINVAL,
                        "restore: a source, a target folder and a producer for a height");
    rc = check_target(o->to_dir, &existed, err, err_size);
    if (rc)
        return rc;
    cache_mb = o->cache_mb ? o->cache_mb : default_cache_mb();
    rc = store_open(o->src_dir, 0, cache_mb, &src, err, err_size);
    if (rc == RK_EBUSY) {
        size_t len = strlen(err);
        snprintf(err + len, err_size - len,
                 "; stop that node first (restore reads a stopped data directory)");
    }
    if (rc)
        goto out;
    rc = plan(src, o, &p, err, err_size);
    if (rc)
        goto out;
    made = 1;
    rc = build(src, o, cache_mb, &p, res, err, err_size);
    if (rc == ENOMEM) {
        size_t len = strlen(err);
        snprintf(err + len, err_size - len,
                 " (Berkeley DB cache of %" PRIu32 " MB: give a larger [storage] cache_mb with -c FILE)",
                 cache_mb);
    }
    if (rc)
        goto out;
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", p.ckpt);
    res->checkpoint_minor = (int)p.info.minor;
    res->n_bad_checkpoints = p.n_bad;
    res->cut_lsn = p.cut_lsn;
out:
    ckpt_info_free(&p.info);
    store_close(src);
    if (rc) {
        restore_result_free(res);
        if (made)
            remove_made(o->to_dir, existed);
    }
    return rc;
}

/* ------------------------------------------------------------ rebuild */

int restore_rebuild(const char *dir, uint64_t seq, uint32_t cache_mb, char *aside, size_t aside_size,
                    char *err, size_t err_size)
{
    char aside_dir[PATH_MAX], to[PATH_MAX + 64], db[PATH_MAX + 8], new_db[PATH_MAX + 80];
    uint64_t ns = seg_now_ns(CLOCK_REALTIME);
    struct restore_result res;
    int rc;

    snprintf(aside_dir, sizeof aside_dir, "%s/set-aside", dir);
    snprintf(to, sizeof to, "%s/.rebuild-%" PRIu64, aside_dir, ns);
    snprintf(db, sizeof db, "%s/db", dir);
    snprintf(new_db, sizeof new_db, "%s/db", to);
    snprintf(aside, aside_size, "%s/db-%" PRIu64, aside_dir, ns);
    if (sys_mkdir(aside_dir, 0700) != 0 && errno != EEXIST)
        return seg_fail(err, err_size, errno, "cannot create %s: %s", aside_dir, strerror(errno));
    struct restore_opts o = {
        .src_dir = dir, .to_dir = to, .target = RESTORE_SEQ, .seq = seq, .cache_mb = cache_mb, .follower = 1};
    rc = restore_run(&o, &res, err, err_size);
    restore_result_free(&res);
    if (rc)
        return rc;
    /* the old db/ aside first, durably: after a crash it is never beside
     * the rebuilt one's files */
    rc = sys_rename(db, aside) == 0 ? sys_fsync_dir(aside_dir) : errno;
    if (!rc)
        rc = sys_fsync_dir(dir);
    if (!rc)
        rc = sys_rename(new_db, db) == 0 ? sys_fsync_dir(dir) : errno;
    if (rc)
        return seg_fail(err, err_size, rc, "cannot move the rebuilt state of %s in place: %s", dir,
                        strerror(rc));
    remove_made(to, 0); /* what is left there is a copy: the lock file, the checkpoint */
    return 0;
}

/* ------------------------------------------------------------ import */

/* The checkpoint's order: tables by name (strcmp), keys bytewise. */
static int entry_cmp(const void *pa, const void *pb)
{
    const struct restore_entry *a = pa, *b = pb;
    int c = strcmp(a->table, b->table);

    if (c)
        return c;
    c = ckpt_key_cmp(a->key, a->klen, b->key, b->klen);
    if (c)
        return c;
    return a->line < b->line ? -1 : a->line > b->line; /* the earlier line first in messages */
}

int restore_import(const char *to_dir, struct restore_entry *entries, size_t n, char *ckpt_path,
                   size_t ckpt_path_size, struct ckpt_info *info, char *err, size_t err_size)
{
    struct ckpt_info hdr = {.major = CKPT_MAJOR, .minor = CKPT_MINOR, .epoch = 1};
    ckpt_writer *w = NULL;
    store *dst = NULL;
    applier *a = NULL;
    char dir[PATH_MAX];
    int rc, existed = 0, made = 0;

    if (err && err_size)
        err[0] = '\0';
    memset(info, 0, sizeof *info);
    rc = check_target(to_dir, &existed, err, err_size);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        size_t tlen = strnlen(entries[i].table, RK_NAME_MAX + 1);
        if (tlen == 0 || tlen > RK_NAME_MAX)
            return seg_fail(err, err_size, RK_EINVAL, "line %" PRIu64 ": table name of %zu bytes (1..%d)",
                            entries[i].line, tlen, RK_NAME_MAX);
        if (entries[i].klen > RK_KEY_MAX)
            return seg_fail(err, err_size, RK_EINVAL,
                            "line %" PRIu64 ": key of %" PRIu32 " bytes (at most %u)", entries[i].line,
                            entries[i].klen, RK_KEY_MAX);
    }
    if (n)
        qsort(entries, n, sizeof *entries, entry_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(entries[i].table, entries[i - 1].table) == 0 &&
            ckpt_key_cmp(entries[i].key, entries[i].klen, entries[i - 1].key, entries[i - 1].klen) == 0)
            return seg_fail(err, err_size, RK_EINVAL,
                            "line %" PRIu64 ": table %s, this key is given already on line %" PRIu64
                            ": a state holds one value per key",
                            entries[i].line, entries[i].table, entries[i - 1].line);
    made = 1;
    if (sys_mkdir(to_dir, 0700) != 0 && errno != EEXIST) {
        rc = seg_fail(err, err_size, errno, "cannot create %s: %s", to_dir, strerror(errno));
        goto out;
    }
    rc = store_open(to_dir, STORE_CREATE | STORE_BUILDING, default_cache_mb(), &dst, err, err_size);
    if (rc)
        goto out;
    /* a new directory's first epoch, carried by its checkpoint */
    rc = store_epoch_begin(dst, 1, 1, 0, &hdr.epoch);
    if (!rc)
        rc = store_history(dst, &hdr.history, &hdr.n_history);
    if (rc) {
        seg_error(err, err_size, "cannot begin an epoch in %s: %s", to_dir, store_strerror(rc));
        goto out;
    }
    snprintf(dir, sizeof dir, "%s/checkpoints", to_dir);
    rc = ckpt_writer_open(dir, &hdr, ZSTD_LEVEL, &w, err, err_size);
    for (size_t i = 0; !rc && i < n; i++) {
        rc = ckpt_writer_add(w, entries[i].table, entries[i].key, entries[i].klen, entries[i].val,
                             entries[i].vlen);
        if (rc)
            seg_error(err, err_size, "line %" PRIu64 ": cannot add the entry to the checkpoint: %s",
                      entries[i].line, store_strerror(rc));
    }
    if (rc) {
        ckpt_writer_abort(w);
        goto out;
    }
    rc = ckpt_writer_finish(w, ckpt_path, ckpt_path_size, err, err_size);
    if (!rc)
        rc = applier_open(dst, &a, err, err_size);
    if (!rc)
        rc = applier_load_checkpoint(a, ckpt_path, info, NULL, NULL, err, err_size);
    if (!rc) {
        applier_close(a);
        a = NULL;
        rc = store_built(dst); /* durable, then the BUILDING marker goes */
        if (rc)
            seg_error(err, err_size, "cannot make %s durable: %s", to_dir, store_strerror(rc));
    }
out:
    free(hdr.history);
    applier_close(a);
    store_close(dst);
    if (rc && made)
        remove_made(to_dir, existed);
    return rc;
}
