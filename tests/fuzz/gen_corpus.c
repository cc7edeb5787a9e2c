/* gen_corpus.c -- writes the seed corpus of fuzz_frame (tests/fuzz/corpus/frame/):
 * valid frames of every type made with frame_encode(), a few data areas of
 * several frames and padding, and corrupt frames of every kind the decoder
 * refuses.  Not built by CMake; from the top of the repository:
 *
 *   cc -std=c11 -Iinclude -I. -o /tmp/gen_corpus tests/fuzz/gen_corpus.c shm/frame.c
 *   rm -rf tests/fuzz/corpus/frame && mkdir tests/fuzz/corpus/frame
 *   /tmp/gen_corpus tests/fuzz/corpus/frame
 *
 * The output is deterministic, so regenerating changes no file unless the
 * frame format changed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shm/ring.h"

#define AREA_SIZE 1024

static const char *out_dir;

static void write_file(const char *name, const void *bytes, size_t n)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    f = fopen(path, "wb");
    if (!f || (n && fwrite(bytes, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* Writes the frame as stored (exact length), and when the length is not a
 * multiple of 8, also with its zero alignment bytes. */
static void frame_file(const char *name, uint8_t type, uint16_t table, uint16_t producer, uint64_t lsn,
                       const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    uint8_t *buf = malloc(frame_align((uint64_t)FRAME_HEADER_SIZE + klen + vlen));
    uint32_t n;
    char aligned[256];

    if (!buf)
        exit(1);
    n = frame_encode(buf, type, table, producer, lsn, key, klen, val, vlen);
    write_file(name, buf, n);
    if (n % FRAME_ALIGN) {
        snprintf(aligned, sizeof aligned, "%s-aligned", name);
        write_file(aligned, buf, frame_align(n));
    }
    free(buf);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

static uint32_t put_pad(uint8_t *p, uint32_t len)
{
    put_u32(p, len);
    p[4] = FRAME_PAD;
    return len;
}

static void valid_frames(void)
{
    static uint8_t large[16000];
    uint8_t mark[8], zero_mark[8] = {0}, binary_key[64], session[8] = {3, 0, 0, 0, 0, 0, 0, 0};
    struct frame_attach attach = {.session = 3, .pid = 4242, .flags = 0};
    uint64_t height = 0x0102030405060708ull;

    for (size_t i = 0; i < sizeof large; i++)
        large[i] = (uint8_t)(i * 131 + (i >> 8));
    for (size_t i = 0; i < sizeof binary_key; i++)
        binary_key[i] = (uint8_t)(255 - i * 3);
    for (int i = 0; i < 8; i++)
        mark[i] = (uint8_t)(height >> (8 * i));

    frame_file("valid-put", FRAME_PUT, 3, 1, 4096, "order:42", 8, "price=101.5;qty=7", 17);
    frame_file("valid-put-empty-key", FRAME_PUT, 3, 1, 4136, "", 0, "v", 1);
    frame_file("valid-put-empty-value", FRAME_PUT, 3, 1, 4176, "order:43", 8, "", 0);
    frame_file("valid-put-empty-both", FRAME_PUT, 0, 0, 8, "", 0, "", 0);
    frame_file("valid-put-binary-key", FRAME_PUT, 255, 63, 1u << 20, binary_key, sizeof binary_key, large,
               200);
    frame_file("valid-put-large-value", FRAME_PUT, 7, 2, 65536, "big", 3, large, sizeof large);
    frame_file("valid-put-max-fields", FRAME_PUT, 0xffff, 0xffff, UINT64_MAX - 7, "k", 1, "v", 1);
    frame_file("valid-del", FRAME_DEL, 3, 1, 4216, "order:42", 8, NULL, 0);
    frame_file("valid-del-empty-key", FRAME_DEL, 3, 1, 4264, "", 0, NULL, 0);
    frame_file("valid-mark", FRAME_MARK, 0, 1, 4296, NULL, 0, mark, 8);
    frame_file("valid-mark-zero", FRAME_MARK, 0, 1, 4336, NULL, 0, zero_mark, 8);
    frame_file("valid-attach", FRAME_ATTACH, 0, 1, 8, "engine-1", 8, &attach, sizeof attach);
    frame_file("valid-abort", FRAME_ABORT, 0, 5, 8192, NULL, 0, session, sizeof session);
}

/* Data areas: several frames one after another, as the consumer walks them. */
static void data_areas(void)
{
    static uint8_t area[AREA_SIZE];
    struct frame_attach attach = {.session = 1, .pid = 99, .flags = 0};
    uint8_t mark[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    uint32_t pos = 0, after_pad;

    memset(area, 0, sizeof area);
    pos += frame_align(frame_encode(area + pos, FRAME_ATTACH, 0, 0, pos, "p", 1, &attach, sizeof attach));
    pos += frame_align(frame_encode(area + pos, FRAME_PUT, 1, 0, pos, "key-1", 5, "value-1", 7));
    pos += frame_align(frame_encode(area + pos, FRAME_DEL, 1, 0, pos, "key-0", 5, NULL, 0));
    pos += put_pad(area + pos, 24);
    after_pad = pos;
    pos += frame_align(frame_encode(area + pos, FRAME_PUT, 2, 0, pos, "", 0, "only-value", 10));
    pos += frame_align(frame_encode(area + pos, FRAME_MARK, 0, 0, pos, NULL, 0, mark, 8));
    put_pad(area + pos, AREA_SIZE - pos);
    write_file("area-frames-then-pad-to-end", area, sizeof area);

    /* the same, with the PUT after the padding damaged */
    area[after_pad + FRAME_HEADER_SIZE + 3] ^= 0x40;
    write_file("area-damaged-in-the-middle", area, sizeof area);

    /* frames, then a claim marker, as a producer leaves mid-write */
    memset(area, 0, sizeof area);
    pos = 0;
    pos += frame_align(frame_encode(area + pos, FRAME_PUT, 1, 3, pos, "a", 1, "b", 1));
    put_u32(area + pos, FRAME_CLAIMED | 64);
    write_file("area-frame-then-claim", area, 128);

    /* only padding, the smallest piece first */
    memset(area, 0, sizeof area);
    put_pad(area, 8);
    put_pad(area + 8, 56);
    write_file("area-only-padding", area, 64);
}

static void corrupt_frames(void)
{
    uint8_t buf[128];
    uint32_t n;

    n = frame_encode(buf, FRAME_PUT, 3, 1, 4096, "order:42", 8, "price=101.5;qty=7", 17);
    buf[40] ^= 0x01;
    write_file("corrupt-bad-checksum", buf, n);

    n = frame_encode(buf, FRAME_PUT, 3, 1, 4096, "order:42", 8, "price=101.5;qty=7", 17);
    write_file("corrupt-truncated", buf, n - 5);
    write_file("corrupt-header-only-20-bytes", buf, 20);

    n = frame_encode(buf, FRAME_PUT, 3, 1, 4096, "k", 1, "v", 1);
    put_u32(buf, 0x10000);
    write_file("corrupt-length-past-buffer", buf, 64);
    put_u32(buf, 16);
    write_file("corrupt-length-below-header", buf, n);
    put_u32(buf, n | FRAME_CLAIMED);
    write_file("corrupt-claimed-commit-word", buf, n);

    n = frame_encode(buf, FRAME_PUT, 3, 1, 4096, "k", 1, "value", 5);
    put_u32(buf + 28, 7);
    write_file("corrupt-key-past-frame", buf, n);

    n = frame_encode(buf, 9, 3, 1, 4096, "k", 1, "v", 1);
    write_file("corrupt-unknown-type", buf, n);

    n = frame_encode(buf, FRAME_MARK, 0, 1, 4096, NULL, 0, "1234", 4);
    write_file("corrupt-mark-short-value", buf, n);

    n = frame_encode(buf, FRAME_DEL, 3, 1, 4096, "k", 1, "v", 1);
    write_file("corrupt-del-with-value", buf, n);

    /* flags and reserved set, with a checksum that covers them: the
     * decoder accepts such a frame today */
    n = frame_encode(buf, FRAME_PUT, 3, 1, 4096, "k", 1, "v", 1);
    buf[5] = 1;
    buf[26] = 0xee;
    {
        uint64_t sum = XXH3_64bits_withSeed(buf + 16, n - 16, frame_seed(n, FRAME_PUT, 1, 3));
        memcpy(buf + 8, &sum, sizeof sum);
    }
    write_file("odd-flags-and-reserved-set", buf, n);

    memset(buf, 0, sizeof buf);
    put_pad(buf, 8);
    write_file("pad-8", buf, 8);
    write_file("zeros-64", buf + 8, 64);
    write_file("empty", buf, 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT_DIRECTORY\n", argv[0]);
        return 1;
    }
    out_dir = argv[1];
    valid_frames();
    data_areas();
    corrupt_frames();
    return 0;
}
