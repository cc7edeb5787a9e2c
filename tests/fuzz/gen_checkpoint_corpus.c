/* gen_checkpoint_corpus.c -- writes the seed corpus of fuzz_checkpoint
 * (tests/fuzz/corpus/checkpoint/): valid checkpoints made with the writer
 * (empty, one table, the golden content, empty keys and values, several
 * frames, a newer minor version with an extra header key) and corrupt ones
 * of the kinds the verifier refuses (lying counts and lengths, huge
 * array32/map32/bin32 claims, bad order, unknown major, truncation), most
 * sealed again so that the structure check is what must refuse them.  Not
 * built by CMake; from the top of the repository:
 *
 *   cc -std=c11 -Iinclude -I. -Itests -o /tmp/gen_checkpoint_corpus \
 *      tests/fuzz/gen_checkpoint_corpus.c persist/checkpoint.c persist/mpread.c persist/sys.c shm/segment.c \
 *      -lmsgpackc -lzstd -lxxhash -ldb-5.3 -lpthread
 *   rm -rf tests/fuzz/corpus/checkpoint && mkdir tests/fuzz/corpus/checkpoint
 *   /tmp/gen_checkpoint_corpus tests/fuzz/corpus/checkpoint
 *
 * Deterministic for one zstd version.  Threads: one.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "persist/checkpoint.h"
#include "golden/golden_content.h"

static const char *out_dir;
static char tmp_dir[] = "/tmp/rk-gen-corpus-XXXXXX";

static void write_out(const char *name, const uint8_t *bytes, size_t n)
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

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
        exit(1);
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        exit(1);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static void seal(uint8_t *buf, size_t len)
{
    uint32_t header_len = get_le32(buf + 8);
    uint8_t *tmp = malloc(24 + (size_t)header_len);

    if (!tmp)
        exit(1);
    memcpy(tmp, buf, 24);
    memcpy(tmp + 24, buf + 32, header_len);
    put_be64(buf + 24, XXH64(tmp, 24 + (size_t)header_len, 0));
    put_be64(buf + len - 8, XXH64(buf, len - 8, 0));
    free(tmp);
}

enum kind { K_EMPTY, K_ONE, K_GOLDEN, K_EMPTIES, K_FRAMES };

/* Writes a checkpoint of the given kind and returns its bytes. */
static uint8_t *make(enum kind kind, size_t *len)
{
    struct ckpt_producer producers[1] = {{"engine", 9, 99}};
    struct ckpt_info info = {0};
    char err[512], path[4300], key[64], val[64];
    ckpt_writer *w = NULL;
    uint8_t *buf;
    int rc = 0;

    info.epoch = 1;
    info.journal_seq = 1;
    info.lsn = 100;
    info.created_ns = 1700000000000000000ull;
    info.n_producers = 1;
    info.producers = producers;
    if (ckpt_writer_open(tmp_dir, &info, 1, &w, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    switch (kind) {
    case K_EMPTY:
        break;
    case K_ONE:
        rc |= ckpt_writer_add(w, "t", "k", 1, "v", 1);
        break;
    case K_GOLDEN:
        for (unsigned i = 0; i < GOLDEN_N_ENTRIES; i++) {
            const char *table;
            uint32_t klen, vlen;
            golden_entry(i, &table, (uint8_t *)key, &klen, (uint8_t *)val, &vlen);
            rc |= ckpt_writer_add(w, table, key, klen, val, vlen);
        }
        break;
    case K_EMPTIES:
        rc |= ckpt_writer_add(w, "a", "", 0, "", 0);
        rc |= ckpt_writer_add(w, "a", "\x00", 1, "", 0);
        rc |= ckpt_writer_add(w, "b", "", 0, "\xff\xfe", 2);
        break;
    case K_FRAMES: /* ~1.2 MiB of entries: two frames, small once compressed */
        for (unsigned i = 0; i < 12000; i++) {
            int n = snprintf(key, sizeof key, "%06u", i);
            memset(val, 'a' + (int)(i % 3), sizeof val);
            rc |= ckpt_writer_add(w, "big", key, (uint32_t)n, val, 60);
        }
        break;
    }
    if (rc || ckpt_writer_finish(w, path, sizeof path, err, sizeof err) != 0) {
        fprintf(stderr, "cannot write kind %d: %s\n", (int)kind, err);
        exit(1);
    }
    buf = slurp(path, len);
    unlink(path);
    return buf;
}

/* A file from a map and one frame of raw entries, sealed. */
static void crafted(const char *name, const uint8_t *map, size_t map_len, const uint8_t *raw, size_t raw_len)
{
    size_t bound = ZSTD_compressBound(raw_len), comp_len = 0, len;
    uint8_t *buf = calloc(1, 32 + map_len + 8 + bound + 8);

    if (!buf)
        exit(1);
    if (raw_len) {
        comp_len = ZSTD_compress(buf + 32 + map_len + 8, bound, raw, raw_len, 1);
        if (ZSTD_isError(comp_len))
            exit(1);
        put_le32(buf + 32 + map_len, (uint32_t)raw_len);
        put_le32(buf + 32 + map_len + 4, (uint32_t)comp_len);
    }
    len = 32 + map_len + (raw_len ? 8 + comp_len : 0) + 8;
    memcpy(buf, "RKCP\x01\x00\x00\x00", 8);
    put_le32(buf + 8, (uint32_t)map_len);
    put_le32(buf + 12, raw_len ? 1 : 0);
    buf[16] = (uint8_t)(raw_len ? 8 + comp_len : 0);
    buf[17] = (uint8_t)((raw_len ? 8 + comp_len : 0) >> 8);
    memcpy(buf + 32, map, map_len);
    seal(buf, len);
    write_out(name, buf, len);
    free(buf);
}

int main(int argc, char **argv)
{
    static const char *kind_names[] = {"valid-empty", "valid-one", "valid-golden", "valid-empties",
                                       "valid-frames"};
    uint8_t *one, *golden, *c;
    size_t one_len, golden_len, len;

    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    if (!mkdtemp(tmp_dir)) {
        perror(tmp_dir);
        return 1;
    }
    for (int k = K_EMPTY; k <= K_FRAMES; k++) {
        uint8_t *b = make((enum kind)k, &len);
        write_out(kind_names[k], b, len);
        free(b);
    }
    one = make(K_ONE, &one_len);
    golden = make(K_GOLDEN, &golden_len);
    c = malloc(golden_len);
    if (!c)
        return 1;

    /* unsealed damage: a flipped body byte, a truncation */
    memcpy(c, golden, golden_len);
    c[golden_len / 2] ^= 0x40;
    write_out("bad-flip", c, golden_len);
    write_out("bad-truncated", golden, golden_len - 9);
    /* sealed lies in the fixed prefix */
    memcpy(c, golden, golden_len);
    c[4] = 2;
    seal(c, golden_len);
    write_out("bad-major-2", c, golden_len);
    memcpy(c, golden, golden_len);
    c[6] = 1; /* a newer minor: loads */
    seal(c, golden_len);
    write_out("valid-minor-1", c, golden_len);
    memcpy(c, golden, golden_len);
    put_le32(c + 12, 3);
    seal(c, golden_len);
    write_out("bad-n-frames", c, golden_len);
    memcpy(c, golden, golden_len);
    put_le32(c + 32 + get_le32(c + 8), 0x7fffffff);
    seal(c, golden_len);
    write_out("bad-raw-len", c, golden_len);
    memcpy(c, golden, golden_len);
    put_le32(c + 36 + get_le32(c + 8), get_le32(c + 36 + get_le32(c + 8)) - 2);
    seal(c, golden_len);
    write_out("bad-comp-len", c, golden_len);
    memcpy(c, one, one_len);
    c[32 + 1 + 6] = 0xc0; /* the value of "epoch" turned nil */
    seal(c, one_len);
    write_out("bad-epoch-nil", c, one_len);

    /* crafted headers and bodies */
    {
        static const uint8_t map_huge[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa5, 'e', 'p', 'o', 'c', 'h', 1};
        static const uint8_t map_tables[] = {0x81, 0xa6, 't',  'a',  'b',  'l', 'e',
                                             's',  0xdd, 0xff, 0xff, 0xff, 0xff};
        uint32_t header_len = get_le32(one + 8);
        static const uint8_t raw_array32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xa1, 't', 0xc4, 0, 0xc4, 0};
        static const uint8_t raw_bin32[] = {0x93, 0xa1, 't', 0xc6, 0xff, 0xff, 0xff, 0xff, 0xc4, 0};
        static const uint8_t raw_order[] = {0x93, 0xa1, 't', 0xc4, 1, 'k', 0xc4, 0,
                                            0x93, 0xa1, 't', 0xc4, 1, 'k', 0xc4, 0};
        static const uint8_t raw_map[] = {0x83, 0xa1, 't', 0xc4, 1, 'k', 0xc4, 0};
        crafted("bad-map32-huge", map_huge, sizeof map_huge, NULL, 0);
        crafted("bad-tables-array32-huge", map_tables, sizeof map_tables, NULL, 0);
        crafted("bad-body-array32-huge", one + 32, header_len, raw_array32, sizeof raw_array32);
        crafted("bad-body-bin32-huge", one + 32, header_len, raw_bin32, sizeof raw_bin32);
        crafted("bad-body-key-order", one + 32, header_len, raw_order, sizeof raw_order);
        crafted("bad-body-map", one + 32, header_len, raw_map, sizeof raw_map);
    }
    free(c);
    free(one);
    free(golden);
    rmdir(tmp_dir);
    return 0;
}
