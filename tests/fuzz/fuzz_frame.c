/* fuzz_frame.c -- libFuzzer target for the ring frame decoder (shm/frame.c).
 *
 * The input is used twice, each time from a heap block of exactly its size
 * so that ASan reports any read past `avail`:
 *   1. as one frame: when frame_decode() accepts it, the frame must be
 *      self-consistent (key and value inside the buffer, lengths adding up,
 *      the type's own rules), must be refused when one byte shorter, and
 *      frame_encode() of its fields must give the same bytes back;
 *   2. as a ring data area: a walk like the consumer's, frame after frame
 *      at 8-byte aligned offsets, skipping PAD frames, up to the first
 *      frame that does not decode.  Every frame it accepts passes the
 *      checks of 1.
 * A broken invariant abort()s, which libFuzzer reports as a crash.
 *
 * Built with -fsanitize=fuzzer when RK_FUZZ=ON (target fuzz_frame), and
 * without it into fuzz_frame_replay with replay_main.c, which runs the
 * committed corpus (corpus/frame/) in every build.  Pure: no globals.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/ring.h"
#include "fuzz_require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A copy of src[0..n) in a heap block of exactly n bytes.  malloc(0) may
 * give NULL, which frame_decode() must not touch with avail 0. */
static uint8_t *exact_copy(const uint8_t *src, size_t n)
{
    uint8_t *buf = malloc(n);

    if (!buf && n)
        abort();
    if (n)
        memcpy(buf, src, n);
    return buf;
}

/* f was decoded from buf[0..avail): check it against the bytes. */
static void check_frame(const uint8_t *buf, size_t avail, const ring_frame *f)
{
    struct frame_header h;
    uint8_t *copy, *again;
    ring_frame g;
    uint32_t n;

    REQUIRE(avail >= FRAME_HEADER_SIZE);
    memcpy(&h, buf, sizeof h);
    REQUIRE(f->raw == buf);
    REQUIRE(f->raw_len == h.length);
    REQUIRE(f->raw_len >= FRAME_HEADER_SIZE && f->raw_len <= avail && f->raw_len <= FRAME_MAX_LENGTH);
    REQUIRE(!(h.length & FRAME_CLAIMED));
    REQUIRE(f->key == buf + FRAME_HEADER_SIZE);
    REQUIRE(f->klen == h.klen && f->klen <= RK_KEY_MAX);
    REQUIRE(f->klen <= f->raw_len - FRAME_HEADER_SIZE);
    REQUIRE(f->val == f->key + f->klen);
    REQUIRE(f->vlen == f->raw_len - FRAME_HEADER_SIZE - f->klen);
    REQUIRE(f->type == h.type && f->flags == h.flags && f->table == h.table);
    REQUIRE(f->producer == h.producer && f->lsn == h.lsn);
    switch (f->type) {
    case FRAME_PUT:
    case FRAME_ATTACH:
    case FRAME_ABORT:
    case FRAME_TABLE:
        break;
    case FRAME_DEL:
        REQUIRE(f->vlen == 0);
        break;
    case FRAME_MARK:
        REQUIRE(f->klen == 0 && f->vlen == 8);
        break;
    default:
        REQUIRE(!"a decoded frame has a known type");
    }

    /* one byte fewer is refused, from an exact block again */
    copy = exact_copy(buf, f->raw_len - 1);
    REQUIRE(frame_decode(copy, f->raw_len - 1, &g, NULL, 0) == RK_ECORRUPT);
    free(copy);

    /* the fields encode to the same bytes; the encoder writes flags and
     * reserved as 0, which the decoder does not insist on (the checksum
     * covers them), so those bytes and the checksum are left out then */
    again = malloc(frame_align(f->raw_len));
    if (!again)
        abort();
    n = frame_encode(again, f->type, f->table, f->producer, f->lsn, f->key, f->klen, f->val, f->vlen);
    REQUIRE(n == f->raw_len);
    for (uint32_t i = n; i < frame_align(n); i++)
        REQUIRE(again[i] == 0);
    if (h.flags == 0 && h.reserved == 0) {
        REQUIRE(memcmp(again, buf, n) == 0);
    } else {
        REQUIRE(memcmp(again, buf, 5) == 0);
        REQUIRE(memcmp(again + 6, buf + 6, 2) == 0);
        REQUIRE(memcmp(again + 16, buf + 16, 10) == 0);
        REQUIRE(memcmp(again + 28, buf + 28, n - 28) == 0);
    }
    REQUIRE(frame_decode(again, n, &g, NULL, 0) == 0);
    REQUIRE(g.raw_len == n && g.klen == f->klen && g.lsn == f->lsn && g.table == f->table);
    free(again);
}

/* Walks area[0..size) as the consumer walks the data area. */
static void walk_data_area(const uint8_t *area, size_t size)
{
    size_t pos = 0;
    char why[200];

    for (size_t step = 0; step <= size / FRAME_ALIGN && size - pos >= FRAME_PAD_MIN; step++) {
        uint32_t word;
        ring_frame f;

        memcpy(&word, area + pos, sizeof word);
        if (word == 0 || (word & FRAME_CLAIMED))
            return; /* empty, or a claim: the consumer would wait */
        if (area[pos + 4] == FRAME_PAD) {
            if (word < FRAME_PAD_MIN || word % FRAME_ALIGN || word > size - pos)
                return;
            pos += word;
            continue;
        }
        why[0] = '\0';
        if (frame_decode(area + pos, size - pos, &f, why, sizeof why) != 0) {
            REQUIRE(why[0] != '\0' && strlen(why) < sizeof why);
            return;
        }
        check_frame(area + pos, size - pos, &f);
        if (frame_align(f.raw_len) > size - pos)
            return;
        pos += frame_align(f.raw_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = exact_copy(data, size);
    char why[200] = "";
    ring_frame f;
    int rc;

    rc = frame_decode(buf, size, &f, why, sizeof why);
    if (rc == 0)
        check_frame(buf, size, &f);
    else
        REQUIRE(rc == RK_ECORRUPT && why[0] != '\0');
    walk_data_area(buf, size);
    free(buf);
    return 0;
}
