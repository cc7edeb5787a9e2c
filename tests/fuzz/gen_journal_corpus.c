/* gen_journal_corpus.c -- writes the seed corpus of fuzz_journal
 * (tests/fuzz/corpus/journal/): valid journal entries made with
 * journal_encode() (zstd and plain bodies, every frame type, a TABLE frame
 * before its frame, many frames), and corrupt ones of every kind the
 * decoder refuses, most of them sealed again with a correct XXH64 so that
 * the corruption is what the decoder must find.  Not built by CMake; from
 * the top of the repository:
 *
 *   cc -std=c11 -Iinclude -I. -o /tmp/gen_journal_corpus \
 *      tests/fuzz/gen_journal_corpus.c persist/journal.c shm/frame.c -lzstd -lxxhash
 *   rm -rf tests/fuzz/corpus/journal && mkdir tests/fuzz/corpus/journal
 *   /tmp/gen_journal_corpus tests/fuzz/corpus/journal
 *
 * The output is deterministic for one zstd version (the compressed bodies
 * may differ byte for byte with another version of libzstd; they stay valid
 * entries).
 */
#define _GNU_SOURCE /* db.h, included by store.h, needs u_int */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "shm/ring.h"
#include "persist/store.h"

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

/* ------------------------------------------------------------ batches */

struct batch {
    uint8_t buf[1 << 16];
    size_t len;
    struct journal_header h;
    uint64_t pos;
};

static void batch_init(struct batch *b, uint64_t seq, uint64_t start_pos)
{
    memset(b, 0, sizeof *b);
    b->h.seq = seq;
    b->h.epoch = 1;
    b->pos = start_pos;
}

/* A TABLE frame takes the LSN just below the frame after it (the node's
 * rule); every other frame the next ring position. */
static void add(struct batch *b, uint8_t type, uint16_t table, uint16_t producer, const void *key,
                uint32_t klen, const void *val, uint32_t vlen)
{
    uint64_t lsn = type == FRAME_TABLE ? b->pos - 1 : b->pos;
    uint32_t size = frame_align((uint64_t)FRAME_HEADER_SIZE + klen + vlen);

    if (b->len + size > sizeof b->buf)
        exit(1);
    frame_encode(b->buf + b->len, type, table, producer, lsn, key, klen, val, vlen);
    b->len += size;
    if (b->h.n_frames++ == 0)
        b->h.first_lsn = lsn;
    b->h.last_lsn = lsn;
    if (type != FRAME_TABLE)
        b->pos += size;
    b->h.next_lsn = b->pos;
}

static void every_type(struct batch *b, uint64_t seq, uint32_t n_puts)
{
    struct frame_attach attach = {.session = 2, .pid = 4242, .flags = 0};
    uint8_t height[8] = {9, 0, 0, 0, 0, 0, 0, 0}, session[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    char key[32], value[64];

    batch_init(b, seq, 4096);
    add(b, FRAME_ATTACH, 0, 0, "engine-1", 8, &attach, sizeof attach);
    add(b, FRAME_TABLE, 1, 0, "orders", 6, NULL, 0);
    for (uint32_t i = 0; i < n_puts; i++) {
        int klen = snprintf(key, sizeof key, "BTC:%04u", i);
        int vlen = snprintf(value, sizeof value, "price=%u.5;qty=%u", 100 + i % 7, i % 13);
        add(b, FRAME_PUT, 1, 0, key, (uint32_t)klen, value, (uint32_t)vlen);
    }
    add(b, FRAME_DEL, 1, 0, "BTC:0999", 8, NULL, 0);
    add(b, FRAME_MARK, 0, 0, NULL, 0, height, 8);
    add(b, FRAME_ABORT, 0, 3, NULL, 0, session, sizeof session);
}

static uint8_t *encode(const struct batch *b, size_t *len)
{
    uint8_t *out = NULL;

    if (journal_encode(&b->h, b->buf, b->len, 1, &out, len) != 0)
        exit(1);
    return out;
}

/* ------------------------------------------------------------ forging */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void seal(uint8_t *entry, size_t len)
{
    XXH64_canonical_t trailer;

    XXH64_canonicalFromHash(&trailer, XXH64(entry, len - JOURNAL_TRAILER_SIZE, 0));
    memcpy(entry + len - JOURNAL_TRAILER_SIZE, &trailer, sizeof trailer);
}

/* An entry with header h as given and body, sealed. */
static uint8_t *forge(const struct journal_header *h, const void *body, size_t body_len, size_t *len)
{
    uint8_t *buf = malloc(JOURNAL_HEADER_SIZE + body_len + JOURNAL_TRAILER_SIZE);

    if (!buf)
        exit(1);
    put_le(buf + 0, h->magic, 4);
    put_le(buf + 4, h->version, 2);
    put_le(buf + 6, h->flags, 2);
    put_le(buf + 8, h->seq, 8);
    put_le(buf + 16, h->epoch, 8);
    put_le(buf + 24, h->first_lsn, 8);
    put_le(buf + 32, h->last_lsn, 8);
    put_le(buf + 40, h->next_lsn, 8);
    put_le(buf + 48, h->n_frames, 4);
    put_le(buf + 52, h->raw_len, 4);
    put_le(buf + 56, body_len, 4);
    put_le(buf + 60, h->reserved, 4);
    memcpy(buf + JOURNAL_HEADER_SIZE, body, body_len);
    *len = JOURNAL_HEADER_SIZE + body_len + JOURNAL_TRAILER_SIZE;
    seal(buf, *len);
    return buf;
}

static struct journal_header plain_header(const struct batch *b)
{
    struct journal_header h = b->h;

    h.magic = JOURNAL_MAGIC;
    h.version = JOURNAL_VERSION;
    h.flags = 0;
    h.raw_len = (uint32_t)b->len;
    h.reserved = 0;
    return h;
}

/* Forges h over frames, plain or as one zstd frame, and writes it. */
static void forged_file(const char *name, struct journal_header h, const uint8_t *frames, size_t raw_len,
                        int compress)
{
    static uint8_t z[1 << 17];
    size_t len, zlen;
    uint8_t *entry;

    if (compress) {
        zlen = ZSTD_compress(z, sizeof z, frames, raw_len, 1);
        if (ZSTD_isError(zlen))
            exit(1);
        h.flags |= JOURNAL_ZSTD;
        entry = forge(&h, z, zlen, &len);
    } else {
        entry = forge(&h, frames, raw_len, &len);
    }
    write_file(name, entry, len);
    free(entry);
}

/* ------------------------------------------------------------ the corpus */

static void valid_entries(void)
{
    static struct batch b;
    uint8_t random[1024];
    uint64_t state = 0x9E3779B97F4A7C15ull;
    uint8_t *entry;
    size_t len;

    every_type(&b, 1, 20);
    entry = encode(&b, &len);
    write_file("valid-zstd-every-type", entry, len);
    free(entry);

    every_type(&b, 2, 6);
    forged_file("valid-plain-every-type", plain_header(&b), b.buf, b.len, 0);

    every_type(&b, 3, 300);
    entry = encode(&b, &len);
    write_file("valid-zstd-many-frames", entry, len);
    free(entry);

    for (size_t i = 0; i < sizeof random; i++) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        random[i] = (uint8_t)((state * 0x2545F4914F6CDD1Dull) >> 56);
    }
    batch_init(&b, 4, 8);
    add(&b, FRAME_PUT, 2, 1, random, 16, random + 16, sizeof random - 16);
    entry = encode(&b, &len);
    write_file("valid-plain-incompressible", entry, len);
    free(entry);

    batch_init(&b, 5, 8);
    add(&b, FRAME_MARK, 0, 0, NULL, 0, "\1\0\0\0\0\0\0\0", 8);
    entry = encode(&b, &len);
    write_file("valid-plain-one-mark", entry, len);
    free(entry);

    batch_init(&b, 6, 8);
    add(&b, FRAME_TABLE, 7, 0, "accounts", 8, NULL, 0);
    add(&b, FRAME_PUT, 7, 0, "acct:1", 6, "100", 3);
    entry = encode(&b, &len);
    write_file("valid-table-then-put", entry, len);
    free(entry);
}

static void corrupt_entries(void)
{
    static struct batch b;
    static uint8_t frames[1 << 16];
    struct journal_header h;
    uint8_t *entry, zfake[16];
    size_t len, off;

    every_type(&b, 10, 8);
    entry = encode(&b, &len);
    entry[len / 2] ^= 0x04;
    write_file("corrupt-bad-checksum", entry, len);
    entry[len / 2] ^= 0x04;
    write_file("corrupt-truncated", entry, len - 9);
    write_file("corrupt-header-only", entry, JOURNAL_HEADER_SIZE);
    entry[4] = 2;
    seal(entry, len);
    write_file("corrupt-version-2", entry, len);
    entry[4] = 1;
    entry[0] = 'X';
    seal(entry, len);
    write_file("corrupt-bad-magic", entry, len);
    free(entry);

    h = plain_header(&b);
    h.raw_len = 0xfffffff8u;
    forged_file("corrupt-huge-raw-len", h, b.buf, b.len, 0);

    /* a zstd frame that claims 2 GiB (header + one empty last block) */
    put_le(zfake, 0xFD2FB528u, 4);
    zfake[4] = 0xE0;
    put_le(zfake + 5, 2ull << 30, 8);
    zfake[13] = 1;
    zfake[14] = zfake[15] = 0;
    h = plain_header(&b);
    h.flags = JOURNAL_ZSTD;
    entry = forge(&h, zfake, sizeof zfake, &len);
    write_file("corrupt-zstd-claims-2gib", entry, len);
    free(entry);

    h = plain_header(&b);
    h.raw_len += 8;
    forged_file("corrupt-zstd-content-size-mismatch", h, b.buf, b.len, 1);

    h = plain_header(&b);
    h.n_frames++;
    forged_file("corrupt-n-frames-resealed", h, b.buf, b.len, 1);

    h = plain_header(&b);
    h.next_lsn = h.last_lsn;
    forged_file("corrupt-next-lsn-resealed", h, b.buf, b.len, 0);

    memcpy(frames, b.buf, b.len);
    frames[140] ^= 0x01; /* a value byte of the first PUT (at offset 96) */
    forged_file("corrupt-frame-checksum-resealed", plain_header(&b), frames, b.len, 1);

    /* the first frame's LSN above the second's */
    memcpy(frames, b.buf, b.len);
    frame_encode(frames, FRAME_ATTACH, 0, 0, 1u << 20, b.buf + 32, 8, b.buf + 40, 16);
    h = plain_header(&b);
    h.first_lsn = 1u << 20;
    forged_file("corrupt-lsn-backwards-resealed", h, frames, b.len, 0);

    /* an alignment byte of the TABLE frame "orders" (38 bytes long) */
    memcpy(frames, b.buf, b.len);
    off = frame_align(frames[0] | frames[1] << 8);
    frames[off + 38] = 0xaa;
    forged_file("corrupt-alignment-byte-resealed", plain_header(&b), frames, b.len, 0);

    /* zero bytes after the last frame */
    memcpy(frames, b.buf, b.len);
    memset(frames + b.len, 0, 16);
    h = plain_header(&b);
    h.raw_len += 16;
    forged_file("corrupt-bytes-after-frames-resealed", h, frames, b.len + 16, 1);

    /* a PAD frame in front */
    memset(frames, 0, 40);
    put_le(frames, 40, 4);
    frames[4] = FRAME_PAD;
    memcpy(frames + 40, b.buf, b.len);
    h = plain_header(&b);
    h.raw_len += 40;
    forged_file("corrupt-pad-frame-resealed", h, frames, b.len + 40, 0);

    write_file("empty", "", 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT_DIRECTORY\n", argv[0]);
        return 1;
    }
    out_dir = argv[1];
    valid_entries();
    corrupt_entries();
    return 0;
}
