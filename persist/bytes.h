/* bytes.h -- little- and big-endian integers in byte buffers, for the
 * on-disk formats (journal entries, checkpoint files).  Private to
 * persist/. */
#ifndef RK_BYTES_H
#define RK_BYTES_H

#include <stdint.h>
#include <string.h>

static inline void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t get_le32(const uint8_t *p)
{
    uint32_t v = 0;

    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static inline uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static inline uint64_t get_be64(const uint8_t *p)
{
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* one load and a byte swap: GCC does not see that in the loop below
     * (key_prefix runs per entry in the snapshot readers) */
    uint64_t v;

    memcpy(&v, p, sizeof v);
    return __builtin_bswap64(v);
#else
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
#endif
}

/* A key's first 8 bytes as a big-endian number, zeros past a shorter
 * key's end: keys whose prefixes differ are in Berkeley DB's default
 * order (bytes, then the shorter first) as their prefixes are -- where
 * both have bytes they differ there, or the shorter is a prefix of the
 * other -- so one comparison of numbers orders most pairs, and only
 * equal prefixes need the bytes (ckpt_key_cmp). */
static inline uint64_t key_prefix(const uint8_t *key, uint32_t klen)
{
    uint8_t head[8] = {0};

    if (klen >= sizeof head)
        return get_be64(key);
    for (uint32_t i = 0; i < klen; i++)
        head[i] = key[i];
    return get_be64(head);
}

#endif
