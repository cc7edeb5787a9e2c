/* checkpoint_format.h -- the checkpoint file's layout, shared by the
 * writer (checkpoint_write.c), the reader and verifier
 * (checkpoint_read.c) and the listing (checkpoint.c); private to those
 * files.  The contract for everyone else is checkpoint.h.
 *
 * File layout, format 1.x; integers little-endian unless said otherwise:
 *
 *   offset  size  field
 *   0       4     magic "RKCP"
 *   4       2     major (CKPT_MAJOR)
 *   6       2     minor (CKPT_MINOR)
 *   8       4     header_len: bytes of the msgpack map at offset 32
 *                 (at most CKPT_MAX_HEADER)
 *   12      4     n_frames: body frames
 *   16      8     body_len: bytes of body
 *   24      8     XXH64 (seed 0, canonical = big-endian) of bytes [0, 24)
 *                 followed by the map: lets ckpt_read_info trust the header
 *                 without reading the body
 *   32      header_len  the header map (below)
 *   32 + header_len     body: n_frames frames, each
 *                         u32 raw_len   msgpack bytes in the frame,
 *                                       1..CKPT_FRAME_MAX
 *                         u32 comp_len  bytes of the zstd frame that follows
 *                         one zstd frame stating its content size = raw_len
 *                       each frame holds whole entries (none spans frames);
 *                       an entry is a msgpack array of 3:
 *                         [table (str), key (bin), value (bin)]
 *                       tables in the directory's order (names strictly
 *                       increasing), keys strictly increasing bytewise
 *                       within a table
 *   end - 8     8     trailer: XXH64 (seed 0, canonical) of bytes [0, end-8)
 *
 *   The file is exactly 32 + header_len + body_len + 8 bytes.
 *
 * The header map has str keys, each exactly once (msgpack ints may use any
 * width; str/bin/array/map any of their forms):
 *   "epoch", "journal_seq", "lsn", "created_ns"   uint
 *   "producers"  array of [name (str), height (uint), applied_lsn (uint)]
 *   "tables"     array of [name (str), n_entries (uint >= 1)], names
 *                strictly increasing (only tables with entries appear)
 *   "n_entries", "raw_size" (sum of the frames' raw_len), "digest"  uint
 * and, from format 1.1, optionally (checkpoint.h, struct ckpt_replay):
 *   "replay"     array of 7: [restart_seq, n_groups, n_records, n_discarded
 *                (uint), producers: array of [name (str), applied_lsn,
 *                height, n_groups, discard_lsn (uint)], table ids: array
 *                of [id (uint < 65536), name (str)], producer slots: array
 *                of [slot (uint < 65536), name (str)]]
 * and, from format 1.2, optionally (checkpoint.h, n_history/history):
 *   "history"    array of [epoch, first_seq, first_lsn] (uint each), at
 *                most HISTORY_MAX, keeping persist/history.h's H1 and H2
 * Names are 1..RK_NAME_MAX bytes without NUL.  A file of a minor version
 * newer than ours may carry other keys, which are skipped; in a file of
 * our minor or older an unknown key is corruption.  The fixed 32 bytes,
 * the frame prefix and the entry form never change within major 1.
 */
#ifndef RK_CHECKPOINT_FORMAT_H
#define RK_CHECKPOINT_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define CKPT_MAGIC "RKCP"
#define PREFIX_SIZE 32u
#define TRAILER_SIZE 8u
#define FRAME_PREFIX_SIZE 8u
#define NAME_DIGITS 20

enum {
    OFF_MAGIC = 0,
    OFF_MAJOR = 4,
    OFF_MINOR = 6,
    OFF_HEADER_LEN = 8,
    OFF_N_FRAMES = 12,
    OFF_BODY_LEN = 16,
    OFF_HEADER_HASH = 24,
};

/* The header map's keys; ckpt_key_names[k] is key k's string. */
enum header_key {
    K_EPOCH,
    K_JOURNAL_SEQ,
    K_LSN,
    K_CREATED,
    K_PRODUCERS,
    K_TABLES,
    K_N_ENTRIES,
    K_RAW_SIZE,
    K_DIGEST,
    K_REPLAY,  /* 1.1, optional */
    K_HISTORY, /* 1.2, optional */
    N_KEYS
};

extern const char *const ckpt_key_names[N_KEYS];

/* The writer's body spool: <dir>/.spool-<seq>-<pid>-<n>.tmp */
#define SPOOL_PREFIX ".spool-"

/* XXH64 of the fixed prefix's first 24 bytes followed by the map. */
uint64_t ckpt_header_hash(const uint8_t *prefix, const uint8_t *map, size_t map_len);

/* The journal sequence a base name <20 digits>.rkcp carries: 1 and *seq
 * set, or 0 when name does not have that pattern (or is NULL). */
int ckpt_name_seq(const char *name, uint64_t *seq);

#endif
