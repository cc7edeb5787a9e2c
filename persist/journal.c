/* journal.c -- the journal entry codec: one drained batch of ring frames as
 * header + body (zstd or plain) + XXH64 trailer (layout in store.h).
 *
 * Design: the decoder trusts nothing.  It reads the header from explicit
 * little-endian byte offsets, checks every length against the bytes it was
 * given before reading, checks the checksum before looking at the body,
 * bounds what it allocates by JOURNAL_MAX_RAW before allocating, makes zstd
 * state the content size it will produce, and then walks the frames with
 * frame_decode().  The encoder checks the same frame rules (verify_frames,
 * shared), so that no entry is written that would later be refused.
 *
 *   buf --check_header--> lengths known --XXH64--> body trusted as written
 *       --decompress_body--> frames --verify_frames--> journal_entry
 *
 * Threads: pure functions, any thread.  Each thread keeps one zstd
 * compression and one decompression context (thread-specific data, freed
 * when the thread ends).
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "shm/ring.h"
#include "persist/bytes.h"
#include "shm/segment.h"
#include "persist/store.h"

/* Byte offsets of the header fields; struct journal_header is the same
 * layout on the little-endian targets we build for. */
enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 4,
    OFF_FLAGS = 6,
    OFF_SEQ = 8,
    OFF_EPOCH = 16,
    OFF_FIRST_LSN = 24,
    OFF_LAST_LSN = 32,
    OFF_NEXT_LSN = 40,
    OFF_N_FRAMES = 48,
    OFF_RAW_LEN = 52,
    OFF_BODY_LEN = 56,
    OFF_RESERVED = 60,
};
static_assert(sizeof(struct journal_header) == JOURNAL_HEADER_SIZE, "journal header is 64 bytes");
static_assert(offsetof(struct journal_header, seq) == OFF_SEQ, "seq at 8");
static_assert(offsetof(struct journal_header, next_lsn) == OFF_NEXT_LSN, "next_lsn at 40");
static_assert(offsetof(struct journal_header, reserved) == OFF_RESERVED, "reserved at 60");
static_assert(sizeof(XXH64_canonical_t) == JOURNAL_TRAILER_SIZE, "trailer is 8 bytes");

/* ------------------------------------------------------------ helpers */

uint64_t journal_entry_xxh(const uint8_t *buf, size_t len)
{
    XXH64_canonical_t trailer;

    if (len < JOURNAL_HEADER_SIZE + JOURNAL_TRAILER_SIZE)
        return 0;
    memcpy(&trailer, buf + len - JOURNAL_TRAILER_SIZE, sizeof trailer);
    return XXH64_hashFromCanonical(&trailer);
}

#define corrupt(why, why_size, ...) seg_fail(why, why_size, RK_ECORRUPT, __VA_ARGS__)

static void write_header(uint8_t *p, const struct journal_header *h)
{
    put_le32(p + OFF_MAGIC, h->magic);
    put_le16(p + OFF_VERSION, h->version);
    put_le16(p + OFF_FLAGS, h->flags);
    put_le64(p + OFF_SEQ, h->seq);
    put_le64(p + OFF_EPOCH, h->epoch);
    put_le64(p + OFF_FIRST_LSN, h->first_lsn);
    put_le64(p + OFF_LAST_LSN, h->last_lsn);
    put_le64(p + OFF_NEXT_LSN, h->next_lsn);
    put_le32(p + OFF_N_FRAMES, h->n_frames);
    put_le32(p + OFF_RAW_LEN, h->raw_len);
    put_le32(p + OFF_BODY_LEN, h->body_len);
    put_le32(p + OFF_RESERVED, h->reserved);
}

static void read_header(const uint8_t *p, struct journal_header *h)
{
    h->magic = get_le32(p + OFF_MAGIC);
    h->version = get_le16(p + OFF_VERSION);
    h->flags = get_le16(p + OFF_FLAGS);
    h->seq = get_le64(p + OFF_SEQ);
    h->epoch = get_le64(p + OFF_EPOCH);
    h->first_lsn = get_le64(p + OFF_FIRST_LSN);
    h->last_lsn = get_le64(p + OFF_LAST_LSN);
    h->next_lsn = get_le64(p + OFF_NEXT_LSN);
    h->n_frames = get_le32(p + OFF_N_FRAMES);
    h->raw_len = get_le32(p + OFF_RAW_LEN);
    h->body_len = get_le32(p + OFF_BODY_LEN);
    h->reserved = get_le32(p + OFF_RESERVED);
}

/* The one place zstd's errors become ours. */
static int zstd_error(size_t code)
{
    return ZSTD_getErrorCode(code) == ZSTD_error_memory_allocation ? ENOMEM : RK_EINVAL;
}

/* ------------------------------------------------------------ contexts */

struct zstd_contexts {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
};

static pthread_key_t contexts_key;
static pthread_once_t contexts_once = PTHREAD_ONCE_INIT;
static int contexts_key_err;

static void free_contexts(void *p)
{
    struct zstd_contexts *c = p;

    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    free(c);
}

static void make_contexts_key(void)
{
    contexts_key_err = pthread_key_create(&contexts_key, free_contexts);
}

/* This thread's contexts, created on first use; NULL when out of memory. */
static struct zstd_contexts *thread_contexts(void)
{
    struct zstd_contexts *c;

    pthread_once(&contexts_once, make_contexts_key);
    if (contexts_key_err)
        return NULL;
    c = pthread_getspecific(contexts_key);
    if (c)
        return c;
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cctx = ZSTD_createCCtx();
    c->dctx = ZSTD_createDCtx();
    if (!c->cctx || !c->dctx || pthread_setspecific(contexts_key, c) != 0) {
        free_contexts(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------ frames */

/* Checks frames[0..raw_len) against h (the rules in store.h).  Returns 0
 * or RK_ECORRUPT with a reason (without the "journal entry N:" prefix). */
static int verify_frames(const struct journal_header *h, const uint8_t *frames, size_t raw_len, char *why,
                         size_t why_size)
{
    char frame_why[160];
    uint64_t prev_lsn = 0;
    uint32_t n_frames = 0;
    size_t pos = 0;

    if (h->n_frames == 0 || raw_len == 0)
        return corrupt(why, why_size, "no frames (n_frames %" PRIu32 ", raw_len %zu)", h->n_frames, raw_len);
    if (raw_len % FRAME_ALIGN)
        return corrupt(why, why_size, "raw_len %zu is not a multiple of %u", raw_len, FRAME_ALIGN);
    /* each step consumes at least FRAME_HEADER_SIZE bytes: bounded */
    while (pos < raw_len) {
        ring_frame f;

        if (n_frames == h->n_frames)
            return corrupt(why, why_size, "%zu bytes after the %" PRIu32 " frames the header announces",
                           raw_len - pos, h->n_frames);
        frame_why[0] = '\0';
        if (frame_decode(frames + pos, raw_len - pos, &f, frame_why, sizeof frame_why) != 0)
            return corrupt(why, why_size, "frame %" PRIu32 " at offset %zu: %s", n_frames, pos, frame_why);
        if (f.producer >= RING_MAX_PRODUCERS)
            return corrupt(why, why_size, "frame %" PRIu32 " at offset %zu: producer id %u out of range",
                           n_frames, pos, f.producer);
        if (n_frames == 0 && f.lsn != h->first_lsn)
            return corrupt(why, why_size, "first frame's LSN %" PRIu64 " is not first_lsn %" PRIu64, f.lsn,
                           h->first_lsn);
        if (n_frames > 0 && f.lsn <= prev_lsn)
            return corrupt(why, why_size,
                           "frame %" PRIu32 " at offset %zu: LSN %" PRIu64 " not above the previous %" PRIu64,
                           n_frames, pos, f.lsn, prev_lsn);
        /* raw_len - pos is a multiple of 8 and >= f.raw_len: the aligned
         * end is inside the buffer */
        for (size_t i = pos + f.raw_len; i < pos + frame_align(f.raw_len); i++)
            if (frames[i] != 0)
                return corrupt(why, why_size,
                               "frame %" PRIu32 " at offset %zu: alignment byte %zu is not zero", n_frames,
                               pos, i - pos);
        prev_lsn = f.lsn;
        n_frames++;
        pos += frame_align(f.raw_len);
    }
    if (n_frames != h->n_frames)
        return corrupt(why, why_size, "%" PRIu32 " frames, the header announces %" PRIu32, n_frames,
                       h->n_frames);
    if (prev_lsn != h->last_lsn)
        return corrupt(why, why_size, "last frame's LSN %" PRIu64 " is not last_lsn %" PRIu64, prev_lsn,
                       h->last_lsn);
    if (h->next_lsn <= h->last_lsn) /* J1 */
        return corrupt(why, why_size, "next_lsn %" PRIu64 " is not past last_lsn %" PRIu64, h->next_lsn,
                       h->last_lsn);
    return 0;
}

/* ------------------------------------------------------------ encode */

int journal_encode(const struct journal_header *h, const uint8_t *frames, size_t frames_len, int level,
                   uint8_t **out, size_t *out_len)
{
    struct journal_header eh;
    struct zstd_contexts *ctx;
    XXH64_canonical_t trailer;
    uint8_t *buf = NULL, *shrunk;
    size_t bound, body_len;
    int rc;

    if (!h || !out || !out_len || (!frames && frames_len))
        return RK_EINVAL;
    *out = NULL;
    *out_len = 0;
    if (frames_len > JOURNAL_MAX_RAW)
        return RK_EINVAL;
    eh = *h;
    eh.magic = JOURNAL_MAGIC;
    eh.version = JOURNAL_VERSION;
    eh.flags = 0;
    eh.raw_len = (uint32_t)frames_len;
    eh.reserved = 0;
    if (verify_frames(&eh, frames, frames_len, NULL, 0) != 0)
        return RK_EINVAL;

    bound = ZSTD_compressBound(frames_len);
    buf = malloc(JOURNAL_HEADER_SIZE + bound + JOURNAL_TRAILER_SIZE);
    ctx = thread_contexts();
    if (!buf || !ctx) {
        rc = ENOMEM;
        goto fail;
    }
    body_len = ZSTD_compressCCtx(ctx->cctx, buf + JOURNAL_HEADER_SIZE, bound, frames, frames_len, level);
    if (ZSTD_isError(body_len)) {
        rc = zstd_error(body_len);
        goto fail;
    }
    if (body_len < frames_len) {
        eh.flags = JOURNAL_ZSTD;
    } else {
        memcpy(buf + JOURNAL_HEADER_SIZE, frames, frames_len);
        body_len = frames_len;
    }
    eh.body_len = (uint32_t)body_len;
    write_header(buf, &eh);
    XXH64_canonicalFromHash(&trailer, XXH64(buf, JOURNAL_HEADER_SIZE + body_len, 0));
    memcpy(buf + JOURNAL_HEADER_SIZE + body_len, &trailer, sizeof trailer);
    *out_len = JOURNAL_HEADER_SIZE + body_len + JOURNAL_TRAILER_SIZE;
    shrunk = realloc(buf, *out_len); /* give back the unused bound */
    *out = shrunk ? shrunk : buf;
    return 0;
fail:
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ decode */

/* Checks what can be checked in the header before the body is touched;
 * h is read from buf, which holds at least the header. */
static int check_header(const uint8_t *buf, size_t len, struct journal_header *h, char *why, size_t why_size)
{
    XXH64_canonical_t stored;
    uint64_t computed;

    if (len < JOURNAL_HEADER_SIZE + JOURNAL_TRAILER_SIZE)
        return corrupt(why, why_size, "journal entry: %zu bytes, shorter than header and trailer (%u)", len,
                       JOURNAL_HEADER_SIZE + JOURNAL_TRAILER_SIZE);
    read_header(buf, h);
    if (h->magic != JOURNAL_MAGIC)
        return corrupt(why, why_size,
                       "journal entry: bad magic 0x%08" PRIx32 " (want 0x%08x): not a journal entry",
                       h->magic, JOURNAL_MAGIC);
    if (h->version != JOURNAL_VERSION) {
        if (why && why_size)
            snprintf(why, why_size,
                     "journal entry %" PRIu64 ": format version %u, this build reads version %u only", h->seq,
                     h->version, JOURNAL_VERSION);
        return RK_EVERSION;
    }
    if (h->body_len != len - JOURNAL_HEADER_SIZE - JOURNAL_TRAILER_SIZE)
        return corrupt(why, why_size,
                       "journal entry %" PRIu64 ": body_len %" PRIu32 " but the entry has %zu bytes of body",
                       h->seq, h->body_len, len - JOURNAL_HEADER_SIZE - JOURNAL_TRAILER_SIZE);
    memcpy(&stored, buf + JOURNAL_HEADER_SIZE + h->body_len, sizeof stored);
    computed = XXH64(buf, JOURNAL_HEADER_SIZE + h->body_len, 0);
    if (XXH64_hashFromCanonical(&stored) != computed)
        return corrupt(
            why, why_size, "journal entry %" PRIu64 ": checksum mismatch (stored %016llx, computed %016llx)",
            h->seq, (unsigned long long)XXH64_hashFromCanonical(&stored), (unsigned long long)computed);
    if (h->flags & ~JOURNAL_ZSTD)
        return corrupt(why, why_size, "journal entry %" PRIu64 ": unknown flags 0x%04x", h->seq, h->flags);
    if (h->reserved != 0)
        return corrupt(why, why_size, "journal entry %" PRIu64 ": reserved field is 0x%08" PRIx32 ", not 0",
                       h->seq, h->reserved);
    if (h->raw_len > JOURNAL_MAX_RAW)
        return corrupt(why, why_size, "journal entry %" PRIu64 ": raw_len %" PRIu32 " exceeds the limit %u",
                       h->seq, h->raw_len, JOURNAL_MAX_RAW);
    if (!(h->flags & JOURNAL_ZSTD) && h->body_len != h->raw_len)
        return corrupt(why, why_size,
                       "journal entry %" PRIu64 ": plain body of %" PRIu32 " bytes, raw_len %" PRIu32, h->seq,
                       h->body_len, h->raw_len);
    return 0;
}

/* Decompresses (or copies) the body into a new block of exactly raw_len
 * bytes in *frames_out. */
static int decompress_body(const struct journal_header *h, const uint8_t *body, uint8_t **frames_out,
                           char *why, size_t why_size)
{
    struct zstd_contexts *ctx;
    unsigned long long content_size;
    uint8_t *frames = NULL;
    size_t n;
    int rc;

    if (h->flags & JOURNAL_ZSTD) {
        content_size = ZSTD_getFrameContentSize(body, h->body_len);
        if (content_size == ZSTD_CONTENTSIZE_ERROR) {
            rc = corrupt(why, why_size, "journal entry %" PRIu64 ": body is not a zstd frame", h->seq);
            goto fail;
        }
        if (content_size == ZSTD_CONTENTSIZE_UNKNOWN) {
            rc = corrupt(why, why_size,
                         "journal entry %" PRIu64 ": zstd frame does not state its content size", h->seq);
            goto fail;
        }
        if (content_size != h->raw_len) {
            rc = corrupt(why, why_size,
                         "journal entry %" PRIu64 ": zstd frame holds %llu bytes, raw_len is %" PRIu32,
                         h->seq, content_size, h->raw_len);
            goto fail;
        }
        n = ZSTD_findFrameCompressedSize(body, h->body_len);
        if (ZSTD_isError(n) || n != h->body_len) {
            rc = corrupt(why, why_size, "journal entry %" PRIu64 ": body is not exactly one zstd frame (%s)",
                         h->seq, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "bytes after the frame");
            goto fail;
        }
    }
    /* raw_len <= JOURNAL_MAX_RAW (check_header); +1 so that 0 is not special */
    frames = malloc((size_t)h->raw_len + 1);
    ctx = (h->flags & JOURNAL_ZSTD) ? thread_contexts() : NULL;
    if (!frames || ((h->flags & JOURNAL_ZSTD) && !ctx)) {
        rc = ENOMEM;
        goto out_of_memory;
    }
    if (h->flags & JOURNAL_ZSTD) {
        n = ZSTD_decompressDCtx(ctx->dctx, frames, h->raw_len, body, h->body_len);
        if (ZSTD_isError(n) && zstd_error(n) == ENOMEM) {
            rc = ENOMEM;
            goto out_of_memory;
        }
        if (ZSTD_isError(n) || n != h->raw_len) {
            rc = corrupt(why, why_size,
                         "journal entry %" PRIu64 ": zstd body does not decompress to %" PRIu32 " bytes (%s)",
                         h->seq, h->raw_len, ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short");
            goto fail;
        }
    } else {
        memcpy(frames, body, h->raw_len);
    }
    *frames_out = frames;
    return 0;
out_of_memory:
    if (why && why_size)
        snprintf(why, why_size, "journal entry %" PRIu64 ": out of memory for %" PRIu32 " bytes of frames",
                 h->seq, h->raw_len);
fail:
    free(frames);
    return rc;
}

int journal_read_header(const uint8_t *buf, size_t len, struct journal_header *h)
{
    if (len < JOURNAL_HEADER_SIZE || get_le32(buf + OFF_MAGIC) != JOURNAL_MAGIC)
        return RK_ECORRUPT;
    read_header(buf, h);
    return 0;
}

int journal_decode(const uint8_t *buf, size_t len, journal_entry *e, char *why, size_t why_size)
{
    struct journal_header h;
    uint8_t *frames = NULL;
    char frames_why[256];
    int rc;

    if (why && why_size)
        why[0] = '\0';
    if (!e || (!buf && len))
        return RK_EINVAL;
    memset(e, 0, sizeof *e);
    rc = check_header(buf, len, &h, why, why_size);
    if (rc)
        goto fail;
    rc = decompress_body(&h, buf + JOURNAL_HEADER_SIZE, &frames, why, why_size);
    if (rc)
        goto fail;
    rc = verify_frames(&h, frames, h.raw_len, frames_why, sizeof frames_why);
    if (rc) {
        corrupt(why, why_size, "journal entry %" PRIu64 ": %s", h.seq, frames_why);
        goto fail;
    }
    e->h = h;
    e->frames = frames;
    return 0;
fail:
    free(frames);
    return rc;
}

void journal_entry_free(journal_entry *e)
{
    if (!e)
        return;
    free(e->frames);
    e->frames = NULL;
}
