/* fuzz_journal.c -- libFuzzer target for the journal entry decoder
 * (persist/journal.c).
 *
 * The input is decoded three ways, each from a heap block of exactly its
 * size so that ASan reports any read past the entry:
 *   1. as it is;
 *   2. "sealed": body_len set to what the input holds and the XXH64 trailer
 *      recomputed, so that mutations reach past the checksum into flags,
 *      lengths, zstd and the frames;
 *   3. "wrapped": the bytes between header and trailer compressed into one
 *      zstd frame (flags JOURNAL_ZSTD, raw_len their size), sealed, so that
 *      mutated frames are also seen through the zstd path.
 * Whatever journal_decode() returns must hold together:
 *   - a refusal is RK_ECORRUPT, RK_EVERSION or ENOMEM, with a reason, and
 *     leaves no frames behind;
 *   - an accepted entry keeps every rule of store.h (lengths, flags, frame
 *     count, 8-byte alignment with zero alignment bytes, frame_decode() on
 *     every frame, LSNs strictly increasing from first_lsn to last_lsn,
 *     next_lsn past them), is refused one byte shorter, and journal_encode()
 *     of its header and frames succeeds and decodes to the same header and
 *     frames (byte for byte the same entry when both bodies are plain).
 * A broken invariant abort()s, which libFuzzer reports as a crash.
 *
 * Built with -fsanitize=fuzzer when RK_FUZZ=ON (target fuzz_journal), and
 * without it into fuzz_journal_replay with replay_main.c, which runs the
 * committed corpus (corpus/journal/) in every build.  Uses only the codec
 * (journal.c, frame.c), zstd and xxHash.  No globals.
 */
#define _GNU_SOURCE /* db.h, included by store.h, needs u_int */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "shm/ring.h"
#include "persist/store.h"
#include "fuzz_require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WRAP_MAX (1u << 20) /* largest middle part compressed in pass 3 */

/* A copy of src[0..n) in a heap block of exactly n bytes (NULL for 0). */
static uint8_t *exact_copy(const uint8_t *src, size_t n)
{
    uint8_t *buf = n ? malloc(n) : NULL;

    if (n && !buf)
        abort();
    if (n)
        memcpy(buf, src, n);
    return buf;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void seal(uint8_t *entry, size_t len)
{
    XXH64_canonical_t trailer;

    put_le32(entry + offsetof(struct journal_header, body_len),
             (uint32_t)(len - JOURNAL_HEADER_SIZE - JOURNAL_TRAILER_SIZE));
    XXH64_canonicalFromHash(&trailer, XXH64(entry, len - JOURNAL_TRAILER_SIZE, 0));
    memcpy(entry + len - JOURNAL_TRAILER_SIZE, &trailer, sizeof trailer);
}

/* e was decoded from buf[0..len): check it against the rules. */
static void check_accepted(const uint8_t *buf, size_t len, const journal_entry *e)
{
    const struct journal_header *h = &e->h;
    uint64_t prev_lsn = 0;
    uint32_t n_frames = 0;
    size_t pos = 0;
    uint8_t *shorter, *again = NULL;
    size_t again_len = 0;
    journal_entry g;
    char why[256];

    REQUIRE(len >= JOURNAL_HEADER_SIZE + JOURNAL_TRAILER_SIZE);
    REQUIRE(len == JOURNAL_HEADER_SIZE + (size_t)h->body_len + JOURNAL_TRAILER_SIZE);
    REQUIRE(h->magic == JOURNAL_MAGIC && h->version == JOURNAL_VERSION);
    REQUIRE((h->flags & ~JOURNAL_ZSTD) == 0 && h->reserved == 0);
    REQUIRE(h->raw_len > 0 && h->raw_len <= JOURNAL_MAX_RAW && h->raw_len % FRAME_ALIGN == 0);
    REQUIRE((h->flags & JOURNAL_ZSTD) || h->body_len == h->raw_len);
    REQUIRE(h->n_frames > 0 && e->frames != NULL);
    if (!(h->flags & JOURNAL_ZSTD))
        REQUIRE(memcmp(e->frames, buf + JOURNAL_HEADER_SIZE, h->raw_len) == 0);

    while (pos < h->raw_len) {
        ring_frame f;
        REQUIRE(n_frames < h->n_frames);
        REQUIRE(frame_decode(e->frames + pos, h->raw_len - pos, &f, NULL, 0) == 0);
        REQUIRE(f.type != FRAME_PAD && f.producer < RING_MAX_PRODUCERS);
        REQUIRE(n_frames == 0 ? f.lsn == h->first_lsn : f.lsn > prev_lsn);
        for (size_t i = pos + f.raw_len; i < pos + frame_align(f.raw_len); i++)
            REQUIRE(e->frames[i] == 0);
        prev_lsn = f.lsn;
        n_frames++;
        pos += frame_align(f.raw_len);
    }
    REQUIRE(pos == h->raw_len && n_frames == h->n_frames);
    REQUIRE(prev_lsn == h->last_lsn && h->next_lsn > h->last_lsn);

    /* one byte shorter is refused */
    shorter = exact_copy(buf, len - 1);
    REQUIRE(journal_decode(shorter, len - 1, &g, why, sizeof why) == RK_ECORRUPT);
    REQUIRE(g.frames == NULL);
    free(shorter);

    /* the encoder takes what the decoder accepted, and gives it back */
    REQUIRE(journal_encode(h, e->frames, h->raw_len, 1, &again, &again_len) == 0);
    REQUIRE(journal_decode(again, again_len, &g, why, sizeof why) == 0);
    REQUIRE(g.h.seq == h->seq && g.h.epoch == h->epoch && g.h.first_lsn == h->first_lsn);
    REQUIRE(g.h.last_lsn == h->last_lsn && g.h.next_lsn == h->next_lsn && g.h.n_frames == h->n_frames);
    REQUIRE(g.h.raw_len == h->raw_len);
    REQUIRE(memcmp(g.frames, e->frames, h->raw_len) == 0);
    if (!(g.h.flags & JOURNAL_ZSTD) && !(h->flags & JOURNAL_ZSTD))
        REQUIRE(again_len == len && memcmp(again, buf, len) == 0);
    journal_entry_free(&g);
    free(again);
}

/* Decodes buf[0..len) (an exact heap block) and checks the outcome. */
static void decode_and_check(const uint8_t *buf, size_t len)
{
    char why[256] = "";
    journal_entry e;
    int rc = journal_decode(buf, len, &e, why, sizeof why);

    if (rc == 0) {
        check_accepted(buf, len, &e);
        journal_entry_free(&e);
        REQUIRE(e.frames == NULL);
        return;
    }
    REQUIRE(rc == RK_ECORRUPT || rc == RK_EVERSION || rc == ENOMEM);
    REQUIRE(why[0] != '\0' && strlen(why) < sizeof why);
    REQUIRE(e.frames == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const size_t overhead = JOURNAL_HEADER_SIZE + JOURNAL_TRAILER_SIZE;
    uint8_t *buf = exact_copy(data, size);

    decode_and_check(buf, size);
    free(buf);
    if (size < overhead)
        return 0;

    /* 2: sealed */
    buf = exact_copy(data, size);
    seal(buf, size);
    decode_and_check(buf, size);
    free(buf);

    /* 3: the middle wrapped in one zstd frame */
    if (size - overhead <= WRAP_MAX) {
        size_t raw_len = size - overhead, bound = ZSTD_compressBound(raw_len), body_len;
        uint8_t *entry = malloc(overhead + bound);

        if (!entry)
            abort();
        memcpy(entry, data, JOURNAL_HEADER_SIZE);
        body_len = ZSTD_compress(entry + JOURNAL_HEADER_SIZE, bound, data + JOURNAL_HEADER_SIZE, raw_len, 1);
        REQUIRE(!ZSTD_isError(body_len));
        entry[offsetof(struct journal_header, flags)] |= JOURNAL_ZSTD;
        put_le32(entry + offsetof(struct journal_header, raw_len), (uint32_t)raw_len);
        buf = exact_copy(entry, overhead + body_len);
        seal(buf, overhead + body_len);
        decode_and_check(buf, overhead + body_len);
        free(buf);
        free(entry);
    }
    return 0;
}
