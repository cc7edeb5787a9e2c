/* mpread.c -- the bounded msgpack reader (the contract is in mpread.h).
 *
 * Design: reads the wire format directly; every read checks the bytes left
 * first, and every array or map count is checked against the bytes left
 * (each element takes at least one byte) before anyone loops over it.
 * Moved unchanged from checkpoint.c so that the checkpoint verifier and the
 * replication wire codec share one reader; mp_read_bool and mp_read_nil
 * were added for the wire codec.
 *
 * Threads: pure functions; any thread.
 */
#include "persist/mpread.h"

const char *mp_status_text(enum mp_status s)
{
    switch (s) {
    case MP_OK:
        return "ok";
    case MP_SHORT:
        return "runs past the end of its bytes";
    case MP_TYPE:
        return "has the wrong msgpack type";
    case MP_COUNT:
        return "claims more elements than bytes remain";
    case MP_DEEP:
        return "nests too deeply";
    }
    return "?";
}

/* Reads an n-byte big-endian integer. */
enum mp_status mp_take_be(struct mp_reader *r, unsigned n, uint64_t *v)
{
    if (r->left < n)
        return MP_SHORT;
    *v = 0;
    for (unsigned i = 0; i < n; i++)
        *v = *v << 8 | r->p[i];
    r->p += n;
    r->left -= n;
    return MP_OK;
}

enum mp_status mp_read_uint(struct mp_reader *r, uint64_t *v)
{
    uint8_t t;

    if (r->left < 1)
        return MP_SHORT;
    t = r->p[0];
    if (t <= 0x7f) {
        *v = t;
        r->p++;
        r->left--;
        return MP_OK;
    }
    if (t < 0xcc || t > 0xcf)
        return MP_TYPE;
    r->p++;
    r->left--;
    return mp_take_be(r, 1u << (t - 0xcc), v);
}

/* str (want_str) or bin: *data points into the input, len checked. */
enum mp_status mp_read_raw(struct mp_reader *r, int want_str, const uint8_t **data, uint32_t *len)
{
    uint64_t n;
    unsigned width;
    uint8_t t;

    if (r->left < 1)
        return MP_SHORT;
    t = r->p[0];
    if (want_str && t >= 0xa0 && t <= 0xbf) {
        n = t & 0x1f;
        width = 0;
    } else if (want_str && t >= 0xd9 && t <= 0xdb) {
        width = 1u << (t - 0xd9);
    } else if (!want_str && t >= 0xc4 && t <= 0xc6) {
        width = 1u << (t - 0xc4);
    } else {
        return MP_TYPE;
    }
    r->p++;
    r->left--;
    if (width && mp_take_be(r, width, &n) != MP_OK)
        return MP_SHORT;
    if (n > r->left)
        return MP_SHORT;
    *data = r->p;
    *len = (uint32_t)n;
    r->p += n;
    r->left -= n;
    return MP_OK;
}

/* array (per_element 1) or map (per_element 2) header. */
enum mp_status mp_read_container(struct mp_reader *r, int map, uint32_t *count)
{
    uint8_t fix = map ? 0x80 : 0x90, first = map ? 0xde : 0xdc;
    uint64_t n;
    uint8_t t;

    if (r->left < 1)
        return MP_SHORT;
    t = r->p[0];
    if ((t & 0xf0) == fix) {
        n = t & 0x0f;
        r->p++;
        r->left--;
    } else if (t == first || t == first + 1) {
        r->p++;
        r->left--;
        if (mp_take_be(r, t == first ? 2 : 4, &n) != MP_OK)
            return MP_SHORT;
    } else {
        return MP_TYPE;
    }
    /* each element is at least one byte: a count the bytes cannot hold is
     * refused here, before any loop or allocation sized by it */
    if (n > r->left / (map ? 2 : 1))
        return MP_COUNT;
    *count = (uint32_t)n;
    return MP_OK;
}

/* Skips one value of any type (for keys of a newer minor version).  The
 * pending count never exceeds the bytes left, and every step consumes at
 * least one byte: bounded by the input. */
enum mp_status mp_skip(struct mp_reader *r)
{
    uint64_t pending = 1, n;
    enum mp_status s;

    while (pending > 0) {
        uint8_t t;
        unsigned skip = 0;

        if (r->left < 1)
            return MP_SHORT;
        pending--;
        t = r->p[0];
        if (t <= 0x7f || t >= 0xe0 || (t >= 0xc0 && t <= 0xc3)) {
            skip = 1;
        } else if ((t & 0xe0) == 0xa0 || (t >= 0xd9 && t <= 0xdb) || (t >= 0xc4 && t <= 0xc6)) {
            const uint8_t *d;
            uint32_t len;
            s = mp_read_raw(r, !(t >= 0xc4 && t <= 0xc6), &d, &len);
            if (s != MP_OK)
                return s;
            continue;
        } else if ((t & 0xf0) == 0x80 || (t & 0xf0) == 0x90 || (t >= 0xdc && t <= 0xdf)) {
            int map = (t & 0xf0) == 0x80 || t == 0xde || t == 0xdf;
            uint32_t count;
            s = mp_read_container(r, map, &count);
            if (s != MP_OK)
                return s;
            pending += (uint64_t)count * (map ? 2 : 1);
            if (pending > r->left)
                return MP_COUNT;
            continue;
        } else if (t >= 0xcc && t <= 0xcf) {
            skip = 1 + (1u << (t - 0xcc));
        } else if (t >= 0xd0 && t <= 0xd3) {
            skip = 1 + (1u << (t - 0xd0));
        } else if (t == 0xca || t == 0xcb) {
            skip = t == 0xca ? 5 : 9;
        } else if (t >= 0xd4 && t <= 0xd8) {
            skip = 2 + (1u << (t - 0xd4)); /* fixext: type byte + data */
        } else {                           /* 0xc7..0xc9: ext 8/16/32 */
            unsigned width = 1u << (t - 0xc7);
            r->p++;
            r->left--;
            if (mp_take_be(r, width, &n) != MP_OK || n + 1 > r->left)
                return MP_SHORT;
            r->p += n + 1;
            r->left -= n + 1;
            continue;
        }
        if (r->left < skip)
            return MP_SHORT;
        r->p += skip;
        r->left -= skip;
    }
    return MP_OK;
}

enum mp_status mp_read_bool(struct mp_reader *r, int *v)
{
    if (r->left < 1)
        return MP_SHORT;
    if (r->p[0] != 0xc2 && r->p[0] != 0xc3)
        return MP_TYPE;
    *v = r->p[0] == 0xc3;
    r->p++;
    r->left--;
    return MP_OK;
}

enum mp_status mp_read_nil(struct mp_reader *r, int *is_nil)
{
    if (r->left < 1)
        return MP_SHORT;
    *is_nil = r->p[0] == 0xc0;
    if (*is_nil) {
        r->p++;
        r->left--;
    }
    return MP_OK;
}
