/* mpread.h -- a small bounded reader of the msgpack wire format, for bytes
 * that must not be trusted: checkpoint files (checkpoint_read.c) and replication
 * messages (replicator/wire.c).  Private to ringkeep.
 *
 * Why not msgpack-c's unpacker: for an array or map header it allocates
 * count * sizeof(msgpack_object) from its zone before any element arrives
 * (an array32 claiming 2^32-1 elements asks for 128 GiB).  This reader
 * reads one value at a time straight from the bytes, checks the bytes left
 * before every read, and checks every array or map count against the bytes
 * left (each element takes at least one byte) before anyone loops over it
 * or allocates for it.  Nothing here allocates.  msgpack-c still packs.
 *
 * Every function either consumes exactly one value (MP_OK) or returns a
 * status saying why not; after a failure the reader's position is
 * unspecified and the caller gives up on the input.
 *
 * Threads: a reader belongs to its caller; the functions are pure.
 */
#ifndef RK_MPREAD_H
#define RK_MPREAD_H

#include <stddef.h>
#include <stdint.h>

/* The unread bytes: p[0..left). */
struct mp_reader {
    const uint8_t *p;
    size_t left;
};

enum mp_status { MP_OK, MP_SHORT, MP_TYPE, MP_COUNT, MP_DEEP };

/* A static phrase for s ("runs past the end of its bytes", ...), written
 * to follow the name of the field that failed. */
const char *mp_status_text(enum mp_status s);

/* Reads an n-byte (n <= 8) big-endian integer. */
enum mp_status mp_take_be(struct mp_reader *r, unsigned n, uint64_t *v);

/* A non-negative integer in any msgpack width (positive fixint, uint 8..64).
 * Negative integers are MP_TYPE. */
enum mp_status mp_read_uint(struct mp_reader *r, uint64_t *v);

/* str (want_str) or bin: *data points into the input, len checked against
 * the bytes left. */
enum mp_status mp_read_raw(struct mp_reader *r, int want_str, const uint8_t **data, uint32_t *len);

/* array (map 0) or map (map 1) header; *count is at most the bytes left
 * (map: half of them), else MP_COUNT. */
enum mp_status mp_read_container(struct mp_reader *r, int map, uint32_t *count);

/* Skips one value of any type, nested ones included.  Bounded by the input:
 * the pending count never exceeds the bytes left. */
enum mp_status mp_skip(struct mp_reader *r);

/* true or false into *v (1 or 0). */
enum mp_status mp_read_bool(struct mp_reader *r, int *v);

/* Whether the next value is nil (consumes it then).  Returns MP_OK and
 * *is_nil 1 after consuming a nil; MP_OK and *is_nil 0, consuming nothing,
 * for any other value; MP_SHORT when no byte is left. */
enum mp_status mp_read_nil(struct mp_reader *r, int *is_nil);

#endif
