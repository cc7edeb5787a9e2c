/* frame.c -- encoding and verification of ring frames.
 *
 * The same decoder checks frames in the ring (consumer), and later in the
 * journal and on the wire, so it trusts nothing: every length is checked
 * against the bytes available before anything is read, and the XXH3
 * checksum covers every header field and every payload byte.
 * Pure functions; any thread.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shm/ring.h"
#include "shm/segment.h"

#define corrupt(why, why_size, ...) seg_fail(why, why_size, RK_ECORRUPT, __VA_ARGS__)

int frame_decode(const uint8_t *buf, size_t avail, ring_frame *f, char *why, size_t why_size)
{
    struct frame_header h;
    uint64_t sum;

    if (avail < FRAME_HEADER_SIZE)
        return corrupt(why, why_size, "frame header needs %u bytes, only %zu available", FRAME_HEADER_SIZE,
                       avail);
    memcpy(&h, buf, sizeof h);
    if (h.length & FRAME_CLAIMED)
        return corrupt(why, why_size, "frame not committed (commit word 0x%08x)", h.length);
    if (h.length < FRAME_HEADER_SIZE || h.length > avail || h.length > FRAME_MAX_LENGTH)
        return corrupt(why, why_size, "frame length %u out of range (available %zu)", h.length, avail);
    if (h.flags != 0 || h.reserved != 0)
        return corrupt(why, why_size, "reserved header fields set (flags 0x%02x, reserved 0x%04x)", h.flags,
                       h.reserved);
    if (h.table >= RING_MAX_TABLES)
        return corrupt(why, why_size, "table id %u out of range (a ring has %u)", h.table, RING_MAX_TABLES);
    if (h.klen > h.length - FRAME_HEADER_SIZE || h.klen > RK_KEY_MAX)
        return corrupt(why, why_size, "key length %u exceeds frame length %u", h.klen, h.length);
    switch (h.type) {
    case FRAME_PUT:
    case FRAME_DEL:
    case FRAME_ATTACH:
    case FRAME_ABORT:
    case FRAME_TABLE:
        break;
    case FRAME_MARK:
        if (h.length != FRAME_HEADER_SIZE + 8 || h.klen != 0)
            return corrupt(why, why_size, "MARK frame of length %u, key %u (want 40, 0)", h.length, h.klen);
        break;
    default:
        return corrupt(why, why_size, "unknown frame type %u", h.type);
    }
    if (h.type == FRAME_DEL && h.length != FRAME_HEADER_SIZE + h.klen)
        return corrupt(why, why_size, "DEL frame carries %u value bytes",
                       h.length - FRAME_HEADER_SIZE - h.klen);
    sum = XXH3_64bits_withSeed(buf + 16, h.length - 16, frame_seed(h.length, h.type, h.flags, h.table));
    if (sum != h.checksum)
        return corrupt(why, why_size, "checksum mismatch (stored %016llx, computed %016llx)",
                       (unsigned long long)h.checksum, (unsigned long long)sum);
    f->type = h.type;
    f->flags = h.flags;
    f->table = h.table;
    f->producer = h.producer;
    f->lsn = h.lsn;
    f->key = buf + FRAME_HEADER_SIZE;
    f->klen = h.klen;
    f->val = buf + FRAME_HEADER_SIZE + h.klen;
    f->vlen = h.length - FRAME_HEADER_SIZE - h.klen;
    f->raw = buf;
    f->raw_len = h.length;
    return 0;
}

uint32_t frame_encode(uint8_t *buf, uint8_t type, uint16_t table, uint16_t producer, uint64_t lsn,
                      const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct frame_header h = {0};
    uint32_t length = FRAME_HEADER_SIZE + klen + vlen;

    h.length = length;
    h.type = type;
    h.table = table;
    h.lsn = lsn;
    h.producer = producer;
    h.klen = klen;
    memcpy(buf, &h, sizeof h);
    if (klen)
        memcpy(buf + FRAME_HEADER_SIZE, key, klen);
    if (vlen)
        memcpy(buf + FRAME_HEADER_SIZE + klen, val, vlen);
    memset(buf + length, 0, frame_align(length) - length);
    h.checksum = XXH3_64bits_withSeed(buf + 16, length - 16, frame_seed(length, type, 0, table));
    memcpy(buf + 8, &h.checksum, sizeof h.checksum);
    return length;
}
