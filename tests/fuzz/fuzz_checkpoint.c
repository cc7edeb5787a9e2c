/* fuzz_checkpoint.c -- libFuzzer target for the checkpoint verifier
 * (ckpt_verify_buffer, which ckpt_verify runs on a mapped file).
 *
 * Design: each input is tried twice: as it is, and sealed (header XXH64
 * and trailer recomputed) so that mutations get past the checksums and
 * reach the header map, frame and entry checks.  An accepted file is
 * checked against what the verifier promised: entries handed out only
 * after the whole file passed, as many as the header says, tables in
 * directory order, keys strictly increasing, the digest the sum of the
 * entries' terms.  A refusal must come with a reason.  Memory is bounded by
 * the verifier itself (ASan's allocator limit catches a claim obeyed).
 *
 * Threads: one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "persist/checkpoint.h"
#include "fuzz_require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
    const struct ckpt_info *info;
    uint64_t n, digest;
    char table[RK_NAME_MAX + 1];
    uint8_t key[256];
    uint32_t klen;
    int key_long; /* the previous key did not fit: skip the order check */
};

static int on_entry(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                    uint32_t vlen)
{
    struct seen *s = arg;
    int c = s->n ? strcmp(table, s->table) : 1;

    REQUIRE(table != NULL && strlen(table) >= 1 && strlen(table) <= RK_NAME_MAX);
    REQUIRE((key != NULL || klen == 0) && (val != NULL || vlen == 0));
    REQUIRE(c >= 0);
    if (c == 0 && !s->key_long) {
        size_t n = klen < s->klen ? klen : s->klen;
        int k = n ? memcmp(key, s->key, n) : 0;
        REQUIRE(k > 0 || (k == 0 && klen > s->klen));
    }
    snprintf(s->table, sizeof s->table, "%s", table);
    s->key_long = klen > sizeof s->key;
    if (!s->key_long) {
        memcpy(s->key, klen ? key : "", klen);
        s->klen = klen;
    }
    s->digest += ckpt_entry_digest(table, key, klen, val, vlen);
    s->n++;
    return 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static void check(const uint8_t *buf, size_t len)
{
    struct ckpt_info info;
    struct seen s;
    char err[512] = "";
    int rc;

    memset(&s, 0, sizeof s);
    rc = ckpt_verify_buffer(buf, len, "00000000000000000001.rkcp", &info, on_entry, &s, err, sizeof err);
    if (rc != 0) {
        REQUIRE(rc == RK_ECORRUPT || rc == RK_EVERSION || rc == ENOMEM);
        REQUIRE(err[0] != '\0' && strlen(err) < sizeof err);
        REQUIRE(info.tables == NULL && info.producers == NULL);
        REQUIRE(s.n == 0); /* nothing of a refused file is handed out */
        return;
    }
    REQUIRE(info.major == CKPT_MAJOR && info.journal_seq == 1);
    REQUIRE(s.n == info.n_entries && s.digest == info.digest);
    for (uint32_t i = 1; i < info.n_tables; i++)
        REQUIRE(strcmp(info.tables[i - 1].name, info.tables[i].name) < 0);
    ckpt_info_free(&info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);

    if (!buf)
        abort();
    memcpy(buf, data, size);
    check(buf, size);
    if (size >= 40) {
        uint32_t header_len = le32(buf + 8);
        if (header_len <= size - 40) {
            uint8_t *tmp = malloc(24 + (size_t)header_len);
            if (!tmp)
                abort();
            memcpy(tmp, buf, 24);
            memcpy(tmp + 24, buf + 32, header_len);
            put_be64(buf + 24, XXH64(tmp, 24 + (size_t)header_len, 0));
            free(tmp);
        }
        put_be64(buf + size - 8, XXH64(buf, size - 8, 0));
        check(buf, size);
    }
    free(buf);
    return 0;
}
