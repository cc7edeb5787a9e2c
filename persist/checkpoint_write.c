/* checkpoint_write.c -- the checkpoint writer (ckpt_writer_*; the
 * contract is in checkpoint.h, the file layout in checkpoint_format.h).
 *
 * The writer packs entries into a buffer and cuts a zstd frame every
 * CKPT_FRAME_TARGET bytes into a spool file (unlinked as soon as it is
 * created, so it never outlives the process); finishing writes header,
 * spooled body and trailer to a hidden temp file, then
 *
 *   temp written --sys_fsync--> durable --sys_rename--> <seq>.rkcp
 *     --sys_fsync(dir)--> listed --ckpt_verify--> announced (returned)
 *
 * and any failure removes the temp or final file (a .rkcp exists only if
 * finish succeeded).
 *
 * Threads: a writer belongs to one thread at a time; writers on different
 * threads share nothing but the spool names' counter (an atomic).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "persist/bytes.h"
#include "persist/checkpoint.h"
#include "persist/checkpoint_format.h"
#include "shm/segment.h"
#include "persist/store.h"

struct ckpt_writer {
    char dir[4096];
    struct ckpt_info info; /* what goes into the header; tables grow */
    size_t tables_cap;
    int zstd_level;
    int spool_fd; /* the compressed body, unlinked */
    ZSTD_CCtx *cctx;
    msgpack_sbuffer frame; /* entries of the frame being filled */
    msgpack_packer pk;
    uint8_t *comp;
    size_t comp_size;
    uint64_t body_len;
    uint32_t n_frames;
    uint8_t *prev_key;
    size_t prev_klen, prev_key_size;
    int failed; /* sticky: the first error of add (I/O, memory) */
    int expect_digest_set; /* ckpt_writer_expect_digest */
    uint64_t expect_digest;
};

void ckpt_writer_expect_digest(ckpt_writer *w, uint64_t digest)
{
    w->expect_digest_set = 1;
    w->expect_digest = digest;
}

static int write_all(int fd, const void *buf, size_t n)
{
    size_t done = 0;

    /* each round writes at least one byte or fails: bounded */
    while (done < n) {
        ssize_t w = sys_write(fd, (const char *)buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        if (w == 0)
            return EIO;
        done += (size_t)w;
    }
    return 0;
}

/* Compresses the entries gathered so far into one frame in the spool. */
static int flush_frame(ckpt_writer *w)
{
    uint8_t prefix[FRAME_PREFIX_SIZE];
    size_t bound, n;
    int rc;

    if (w->frame.size == 0)
        return 0;
    bound = ZSTD_compressBound(w->frame.size);
    if (bound > w->comp_size) {
        free(w->comp);
        w->comp = malloc(bound);
        w->comp_size = w->comp ? bound : 0;
        if (!w->comp)
            return ENOMEM;
    }
    n = ZSTD_compressCCtx(w->cctx, w->comp, bound, w->frame.data, w->frame.size, w->zstd_level);
    if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? ENOMEM : RK_EINVAL;
    put_le32(prefix, (uint32_t)w->frame.size);
    put_le32(prefix + 4, (uint32_t)n);
    rc = write_all(w->spool_fd, prefix, sizeof prefix);
    if (rc == 0)
        rc = write_all(w->spool_fd, w->comp, n);
    if (rc)
        return rc;
    w->body_len += FRAME_PREFIX_SIZE + n;
    w->info.raw_size += w->frame.size;
    w->n_frames++;
    w->frame.size = 0;
    return 0;
}

int ckpt_writer_open(const char *dir, const struct ckpt_info *info, int zstd_level, ckpt_writer **out,
                     char *err, size_t err_size)
{
    ckpt_writer *w = NULL;
    char spool[4200];
    static unsigned spool_counter;
    int rc;

    if (out)
        *out = NULL;
    if (!dir || !info || !out || (info->n_producers && !info->producers))
        return seg_fail(err, err_size, RK_EINVAL, "checkpoint writer: missing argument");
    if (strlen(dir) >= sizeof w->dir)
        return seg_fail(err, err_size, RK_EINVAL, "checkpoint writer: folder name too long");
    for (uint32_t i = 0; i < info->n_producers; i++) {
        size_t len = strnlen(info->producers[i].name, sizeof info->producers[i].name);
        if (len == 0 || len > RK_NAME_MAX)
            return seg_fail(err, err_size, RK_EINVAL,
                            "checkpoint writer: producer %" PRIu32 " has no valid name", i);
    }
    w = calloc(1, sizeof *w);
    if (!w)
        return seg_fail(err, err_size, ENOMEM, "checkpoint writer: out of memory");
    w->spool_fd = -1;
    msgpack_sbuffer_init(&w->frame);
    msgpack_packer_init(&w->pk, &w->frame, msgpack_sbuffer_write);
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->zstd_level = zstd_level;
    w->info.epoch = info->epoch;
    w->info.journal_seq = info->journal_seq;
    w->info.lsn = info->lsn;
    w->info.created_ns = info->created_ns ? info->created_ns : seg_now_ns(CLOCK_REALTIME);
    w->info.n_producers = info->n_producers;
    w->info.producers = calloc(info->n_producers ? info->n_producers : 1, sizeof *w->info.producers);
    w->cctx = ZSTD_createCCtx();
    if (!w->info.producers || !w->cctx) {
        rc = seg_fail(err, err_size, ENOMEM, "checkpoint writer: out of memory");
        goto fail;
    }
    if (info->n_producers)
        memcpy(w->info.producers, info->producers, info->n_producers * sizeof *info->producers);
    if (info->has_replay) {
        const struct ckpt_replay *src = &info->replay;
        struct ckpt_replay *dst = &w->info.replay;
        *dst = *src;
        dst->producers = calloc(src->n_producers + 1, sizeof *dst->producers);
        dst->table_ids = calloc(src->n_table_ids + 1, sizeof *dst->table_ids);
        dst->slots = calloc(src->n_slots + 1, sizeof *dst->slots);
        w->info.has_replay = 1;
        if (!dst->producers || !dst->table_ids || !dst->slots) {
            rc = seg_fail(err, err_size, ENOMEM, "checkpoint writer: out of memory");
            goto fail;
        }
        if (src->n_producers)
            memcpy(dst->producers, src->producers, src->n_producers * sizeof *src->producers);
        if (src->n_table_ids)
            memcpy(dst->table_ids, src->table_ids, src->n_table_ids * sizeof *src->table_ids);
        if (src->n_slots)
            memcpy(dst->slots, src->slots, src->n_slots * sizeof *src->slots);
    }
    if (info->n_history) {
        w->info.history = malloc(info->n_history * sizeof *w->info.history);
        if (!w->info.history) {
            rc = seg_fail(err, err_size, ENOMEM, "checkpoint writer: out of memory");
            goto fail;
        }
        memcpy(w->info.history, info->history, info->n_history * sizeof *info->history);
        w->info.n_history = info->n_history;
    }
    snprintf(spool, sizeof spool, "%s/" SPOOL_PREFIX "%020" PRIu64 "-%ld-%u.tmp", dir, info->journal_seq,
             (long)getpid(), __atomic_fetch_add(&spool_counter, 1, __ATOMIC_RELAXED));
    w->spool_fd = sys_open(spool, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->spool_fd < 0) {
        rc = errno;
        seg_error(err, err_size, "checkpoint writer: cannot create %s: %s", spool, strerror(rc));
        goto fail;
    }
    /* the spool lives on through the descriptor alone */
    if (sys_unlink(spool) != 0) {
        rc = errno;
        seg_error(err, err_size, "checkpoint writer: cannot unlink %s: %s", spool, strerror(rc));
        goto fail;
    }
    *out = w;
    return 0;
fail:
    ckpt_writer_abort(w);
    return rc;
}

int ckpt_writer_add(ckpt_writer *w, const char *table, const void *key, uint32_t klen, const void *val,
                    uint32_t vlen)
{
    struct ckpt_table *t;
    size_t tlen;
    int rc, cmp;

    if (!w || !table || (!key && klen) || (!val && vlen))
        return RK_EINVAL;
    if (w->failed)
        return w->failed;
    tlen = strnlen(table, RK_NAME_MAX + 1);
    if (tlen == 0 || tlen > RK_NAME_MAX || (uint64_t)klen + vlen + tlen + 16 > CKPT_MAX_ENTRY)
        return RK_EINVAL;
    t = w->info.n_tables ? &w->info.tables[w->info.n_tables - 1] : NULL;
    cmp = t ? strcmp(table, t->name) : 1;
    if (cmp < 0 || (cmp == 0 && ckpt_key_cmp(key, klen, w->prev_key, w->prev_klen) <= 0))
        return RK_EINVAL;
    if (klen > w->prev_key_size) {
        uint8_t *grown = realloc(w->prev_key, klen);
        if (!grown)
            return ENOMEM; /* nothing written yet: not sticky */
        w->prev_key = grown;
        w->prev_key_size = klen;
    }
    if (cmp > 0) {
        if (w->info.n_tables == w->tables_cap) {
            size_t cap = w->tables_cap ? w->tables_cap * 2 : 8;
            struct ckpt_table *grown = realloc(w->info.tables, cap * sizeof *grown);
            if (!grown)
                return ENOMEM;
            w->info.tables = grown;
            w->tables_cap = cap;
        }
        t = &w->info.tables[w->info.n_tables++];
        memset(t, 0, sizeof *t);
        memcpy(t->name, table, tlen);
    }
    if (msgpack_pack_array(&w->pk, 3) || msgpack_pack_str_with_body(&w->pk, table, tlen) ||
        msgpack_pack_bin_with_body(&w->pk, klen ? key : "", klen) ||
        msgpack_pack_bin_with_body(&w->pk, vlen ? val : "", vlen)) {
        rc = ENOMEM;
        goto fail;
    }
    if (klen)
        memcpy(w->prev_key, key, klen);
    w->prev_klen = klen;
    t->n_entries++;
    w->info.n_entries++;
    w->info.digest += ckpt_entry_digest(t->name, key, klen, val, vlen);
    if (w->frame.size >= CKPT_FRAME_TARGET) {
        rc = flush_frame(w);
        if (rc)
            goto fail;
    }
    return 0;
fail:
    w->failed = rc; /* the frame may hold part of an entry: no way back */
    return rc;
}

/* Packs the header map. */
static int pack_header(const struct ckpt_info *info, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    int bad = 0;

    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
#define KEY(k) (bad |= msgpack_pack_str_with_body(&pk, ckpt_key_names[k], strlen(ckpt_key_names[k])))
    bad |= msgpack_pack_map(&pk, N_KEYS - !info->has_replay - !info->n_history);
    KEY(K_EPOCH);
    bad |= msgpack_pack_uint64(&pk, info->epoch);
    KEY(K_JOURNAL_SEQ);
    bad |= msgpack_pack_uint64(&pk, info->journal_seq);
    KEY(K_LSN);
    bad |= msgpack_pack_uint64(&pk, info->lsn);
    KEY(K_CREATED);
    bad |= msgpack_pack_uint64(&pk, info->created_ns);
    KEY(K_PRODUCERS);
    bad |= msgpack_pack_array(&pk, info->n_producers);
    for (uint32_t i = 0; i < info->n_producers; i++) {
        const struct ckpt_producer *p = &info->producers[i];
        bad |= msgpack_pack_array(&pk, 3);
        bad |= msgpack_pack_str_with_body(&pk, p->name, strnlen(p->name, RK_NAME_MAX));
        bad |= msgpack_pack_uint64(&pk, p->height);
        bad |= msgpack_pack_uint64(&pk, p->applied_lsn);
    }
    KEY(K_TABLES);
    bad |= msgpack_pack_array(&pk, info->n_tables);
    for (uint32_t i = 0; i < info->n_tables; i++) {
        bad |= msgpack_pack_array(&pk, 2);
        bad |= msgpack_pack_str_with_body(&pk, info->tables[i].name, strlen(info->tables[i].name));
        bad |= msgpack_pack_uint64(&pk, info->tables[i].n_entries);
    }
    KEY(K_N_ENTRIES);
    bad |= msgpack_pack_uint64(&pk, info->n_entries);
    KEY(K_RAW_SIZE);
    bad |= msgpack_pack_uint64(&pk, info->raw_size);
    KEY(K_DIGEST);
    bad |= msgpack_pack_uint64(&pk, info->digest);
    if (info->has_replay) {
        const struct ckpt_replay *rp = &info->replay;
        KEY(K_REPLAY);
        bad |= msgpack_pack_array(&pk, 7);
        bad |= msgpack_pack_uint64(&pk, rp->restart_seq);
        bad |= msgpack_pack_uint64(&pk, rp->n_groups);
        bad |= msgpack_pack_uint64(&pk, rp->n_records);
        bad |= msgpack_pack_uint64(&pk, rp->n_discarded);
        bad |= msgpack_pack_array(&pk, rp->n_producers);
        for (uint32_t i = 0; i < rp->n_producers; i++) {
            const struct ckpt_replay_producer *p = &rp->producers[i];
            bad |= msgpack_pack_array(&pk, 5);
            bad |= msgpack_pack_str_with_body(&pk, p->name, strnlen(p->name, RK_NAME_MAX));
            bad |= msgpack_pack_uint64(&pk, p->applied_lsn);
            bad |= msgpack_pack_uint64(&pk, p->height);
            bad |= msgpack_pack_uint64(&pk, p->n_groups);
            bad |= msgpack_pack_uint64(&pk, p->discard_lsn);
        }
        for (int m = 0; m < 2; m++) {
            const struct ckpt_map_entry *e = m ? rp->slots : rp->table_ids;
            uint32_t n = m ? rp->n_slots : rp->n_table_ids;
            bad |= msgpack_pack_array(&pk, n);
            for (uint32_t i = 0; i < n; i++) {
                bad |= msgpack_pack_array(&pk, 2);
                bad |= msgpack_pack_uint32(&pk, e[i].id);
                bad |= msgpack_pack_str_with_body(&pk, e[i].name, strnlen(e[i].name, RK_NAME_MAX));
            }
        }
    }
    if (info->n_history) {
        KEY(K_HISTORY);
        bad |= msgpack_pack_array(&pk, info->n_history);
        for (uint32_t i = 0; i < info->n_history; i++) {
            bad |= msgpack_pack_array(&pk, 3);
            bad |= msgpack_pack_uint64(&pk, info->history[i].epoch);
            bad |= msgpack_pack_uint64(&pk, info->history[i].first_seq);
            bad |= msgpack_pack_uint64(&pk, info->history[i].first_lsn);
        }
    }
#undef KEY
    return bad ? ENOMEM : 0;
}

#define WRITEBACK_CHUNK (4u << 20) /* pace_writeback's step */

/* Paces the file's way to disk as it is written (written: bytes so far;
 * *paced: how far writeback was started): each WRITEBACK_CHUNK is sent to
 * the disk once written, and the one before it is waited for, so at most
 * two are in flight and the final fsync finds at most that much to write.
 * Left to the fsync, the whole file (37 MiB for 1M entries of 100 B) went
 * to the disk at once in the middle of the journal's fsyncs: its fsync
 * took 42-55 ms (perf trace of the node in bench_checkpoint); paced, under
 * 15 ms.  Nothing here makes the file durable; the fsync in
 * ckpt_writer_finish still does. */
static int pace_writeback(int fd, uint64_t written, uint64_t *paced)
{
    /* each round moves *paced on by one chunk: bounded by written */
    while (written - *paced >= WRITEBACK_CHUNK) {
        if (sys_writeback(fd, (off_t)*paced, WRITEBACK_CHUNK, 0) != 0)
            return errno;
        if (*paced >= WRITEBACK_CHUNK &&
            sys_writeback(fd, (off_t)(*paced - WRITEBACK_CHUNK), WRITEBACK_CHUNK, 1) != 0)
            return errno;
        *paced += WRITEBACK_CHUNK;
    }
    return 0;
}

/* Writes prefix, map, the spooled body and the trailer to fd. */
static int write_file(ckpt_writer *w, int fd, const msgpack_sbuffer *map, char *err, size_t err_size)
{
    uint8_t prefix[PREFIX_SIZE], trailer[TRAILER_SIZE];
    XXH64_state_t st;
    uint8_t *chunk = NULL;
    uint64_t done = 0, hash, prefix_len, paced = 0;
    int rc;

    memcpy(prefix + OFF_MAGIC, CKPT_MAGIC, 4);
    put_le16(prefix + OFF_MAJOR, CKPT_MAJOR);
    put_le16(prefix + OFF_MINOR, CKPT_MINOR);
    put_le32(prefix + OFF_HEADER_LEN, (uint32_t)map->size);
    put_le32(prefix + OFF_N_FRAMES, w->n_frames);
    put_le64(prefix + OFF_BODY_LEN, w->body_len);
    hash = ckpt_header_hash(prefix, (const uint8_t *)map->data, map->size);
    for (int i = 0; i < 8; i++)
        prefix[OFF_HEADER_HASH + i] = (uint8_t)(hash >> (56 - 8 * i));
    XXH64_reset(&st, 0);
    XXH64_update(&st, prefix, sizeof prefix);
    XXH64_update(&st, map->data, map->size);
    prefix_len = sizeof prefix + map->size;
    rc = write_all(fd, prefix, sizeof prefix);
    if (rc == 0)
        rc = write_all(fd, map->data, map->size);
    if (rc) {
        seg_error(err, err_size, "cannot write the checkpoint header: %s", strerror(rc));
        goto out;
    }
    chunk = malloc(CKPT_FRAME_TARGET);
    if (!chunk) {
        rc = seg_fail(err, err_size, ENOMEM, "out of memory");
        goto out;
    }
    /* each round copies at least one byte or fails: bounded by body_len */
    while (done < w->body_len) {
        size_t want =
            w->body_len - done < CKPT_FRAME_TARGET ? (size_t)(w->body_len - done) : CKPT_FRAME_TARGET;
        ssize_t n = pread(w->spool_fd, chunk, want, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? errno : EIO;
            seg_error(err, err_size, "cannot read back the spooled body: %s", n < 0 ? strerror(rc) : "short");
            goto out;
        }
        XXH64_update(&st, chunk, (size_t)n);
        rc = write_all(fd, chunk, (size_t)n);
        if (rc) {
            seg_error(err, err_size, "cannot write the checkpoint body: %s", strerror(rc));
            goto out;
        }
        done += (uint64_t)n;
        rc = pace_writeback(fd, prefix_len + done, &paced);
        if (rc) {
            seg_error(err, err_size, "writeback of the checkpoint body failed: %s", strerror(rc));
            goto out;
        }
    }
    XXH64_canonicalFromHash((XXH64_canonical_t *)trailer, XXH64_digest(&st));
    rc = write_all(fd, trailer, sizeof trailer);
    if (rc)
        seg_error(err, err_size, "cannot write the checkpoint trailer: %s", strerror(rc));
out:
    free(chunk);
    return rc;
}

/* The writer's errors are errno values, or RK_EINVAL when zstd refused
 * to compress or the header outgrew CKPT_MAX_HEADER. */
static const char *writer_error_text(int rc)
{
    return rc > 0 ? strerror(rc) : "zstd refused the data, or the header exceeds its limit";
}

int ckpt_writer_finish(ckpt_writer *w, char *path_out, size_t path_size, char *err, size_t err_size)
{
    char tmp[4300], final[4300], verify_err[512];
    msgpack_sbuffer map;
    int fd = -1, rc, renamed = 0, created = 0;

    msgpack_sbuffer_init(&map);
    if (path_out && path_size)
        path_out[0] = '\0';
    if (!w)
        return seg_fail(err, err_size, RK_EINVAL, "no checkpoint writer");
    snprintf(final, sizeof final, "%s/%020" PRIu64 CKPT_SUFFIX, w->dir, w->info.journal_seq);
    snprintf(tmp, sizeof tmp, "%s/.%020" PRIu64 CKPT_SUFFIX ".tmp-%ld", w->dir, w->info.journal_seq,
             (long)getpid());
    if (w->failed) {
        rc = seg_fail(err, err_size, w->failed, "checkpoint %s: an earlier add failed: %s", final,
                      writer_error_text(w->failed));
        goto out;
    }
    rc = flush_frame(w);
    if (rc == 0 && w->expect_digest_set && w->info.digest != w->expect_digest) {
        rc = seg_fail(err, err_size, RK_ECORRUPT,
                      "checkpoint %s: the tables' digest %016" PRIx64
                      " differs from the one apply keeps (%016" PRIx64 "): state and apply disagree",
                      final, w->info.digest, w->expect_digest);
        goto out;
    }
    if (rc == 0)
        rc = pack_header(&w->info, &map);
    if (rc == 0 && map.size > CKPT_MAX_HEADER)
        rc = RK_EINVAL;
    if (rc) {
        seg_error(err, err_size, "checkpoint %s: cannot finish the body and header: %s", final,
                  writer_error_text(rc));
        goto out;
    }
    fd = sys_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = errno;
        seg_error(err, err_size, "cannot create %s: %s", tmp, strerror(rc));
        goto out;
    }
    created = 1;
    rc = write_file(w, fd, &map, err, err_size);
    if (rc)
        goto out;
    if (sys_fsync(fd) != 0) {
        rc = errno;
        seg_error(err, err_size, "fsync of %s failed: %s", tmp, strerror(rc));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = errno;
        seg_error(err, err_size, "close of %s failed: %s", tmp, strerror(rc));
        goto out;
    }
    fd = -1;
    /* read back before it replaces anything: a checkpoint at the same seq
     * (a standby's, after the one it bootstrapped from) stays if this one
     * does not verify */
    rc = ckpt_verify(tmp, NULL, NULL, NULL, verify_err, sizeof verify_err);
    if (rc) {
        seg_error(err, err_size, "checkpoint %s written but does not verify: %s", final, verify_err);
        goto out;
    }
    if (sys_rename(tmp, final) != 0) {
        rc = errno;
        seg_error(err, err_size, "cannot rename %s to %s: %s", tmp, final, strerror(rc));
        goto out;
    }
    renamed = 1;
    rc = sys_fsync_dir(w->dir);
    if (rc) {
        seg_error(err, err_size, "fsync of folder %s failed: %s", w->dir, strerror(rc));
        goto out;
    }
    if (path_out && path_size)
        snprintf(path_out, path_size, "%s", final);
out:
    if (fd >= 0)
        close(fd);
    /* a failed checkpoint leaves no file behind, final or temporary */
    if (rc && renamed)
        sys_unlink(final);
    else if (rc && created)
        sys_unlink(tmp);
    msgpack_sbuffer_destroy(&map);
    ckpt_writer_abort(w);
    return rc;
}

void ckpt_writer_abort(ckpt_writer *w)
{
    if (!w)
        return;
    if (w->spool_fd >= 0)
        close(w->spool_fd);
    ZSTD_freeCCtx(w->cctx);
    msgpack_sbuffer_destroy(&w->frame);
    ckpt_info_free(&w->info);
    free(w->comp);
    free(w->prev_key);
    free(w);
}
