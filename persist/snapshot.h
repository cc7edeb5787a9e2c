/* snapshot.h -- state snapshot files: the state a live node hands an engine
 * that opens it (rk_state_open), private to ringkeep.
 *
 * An internal contract between the node that writes the file
 * (ckpt_job_snapshot*, ckpt_job_overlay_at, export.c) and the libringkeep
 * that reads it (node/state.c), which may come from different builds
 * (docs/FORMAT.md, "State snapshot files"): the file starts
 * with a magic and a format version, and a reader refuses a major version
 * it does not know (RK_EVERSION, naming both) and anything that fails its
 * checks (RK_ECORRUPT, with the reason).  Made to be cheap at both ends:
 * written in one sequential pass, no compression, no fsync (the file is
 * ephemeral: the engine maps it and unlinks it at once); read in place
 * from a mapping.
 *
 * Layout (host byte order: the node and its engines share a host):
 *
 *   header    struct snap_header at offset 0, zeros up to SNAP_HEADER_SIZE
 *   entries   table by table (names ascending), keys ascending (bytewise,
 *             a prefix first: ckpt_key_cmp), each entry
 *             u32 klen, u32 vlen, key bytes, value bytes (unaligned)
 *   producers n_producers x struct snap_producer, at producers_offset
 *   tables    n_tables x struct snap_table, at tables_offset: each table's
 *             entries are [offset, offset + size), one after the other
 *             from SNAP_HEADER_SIZE up to producers_offset
 *
 * The header carries an XXH3-64 of itself (header_hash) and one of
 * everything after it (body_hash); file_size must be the file's size, so
 * a truncated file is told apart from a damaged one.
 *
 * Two kinds of file share the layout (format 2):
 *   - a whole snapshot (base.file_size 0): every entry of the state;
 *   - an overlay (base.file_size != 0): the state is the whole snapshot
 *     it names (base: its file's name in the overlay's directory, and its
 *     size, body hash and applied_seq, which must all match) with the
 *     overlay's entries put over it: an entry replaces the base's of the
 *     same table and key or adds it; an entry whose vlen is SNAP_TOMBSTONE
 *     (no value bytes follow its key) removes the base's.  Its header says
 *     the state the two make (applied, producers); n_entries and the
 *     tables count its own entries, tombstones included.  A node serves
 *     an overlay per request over a base it keeps (node/checkpoint.c), so
 *     that a request writes what changed since the base, not the state.
 */
#ifndef RK_SNAPSHOT_H
#define RK_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "persist/apply.h"
#include "ringkeep.h"

#define SNAP_MAGIC "RKSNAP\r\n" /* 8 bytes, no NUL */
#define SNAP_MAJOR 2u /* 2: overlays (base, SNAP_TOMBSTONE) */
#define SNAP_MINOR 0u
#define SNAP_HEADER_SIZE 256u
#define SNAP_SUFFIX ".rksnap"
#define SNAP_TOMBSTONE UINT32_MAX /* an overlay entry's vlen: the key is deleted */
#define SNAP_BASE_NAME_MAX 64u    /* struct snap_base.name, its NUL included */

/* What an overlay applies to: a whole snapshot file, named and identified
 * (all zeros in a whole snapshot). */
struct snap_base {
    uint64_t file_size;            /* its file_size; 0: no base, this is a whole snapshot */
    uint64_t body_hash;            /* its body_hash */
    uint64_t applied_seq;          /* its am.applied_seq */
    char name[SNAP_BASE_NAME_MAX]; /* its file's name in this file's directory, NUL-padded */
};

struct snap_header {
    char magic[8];              /* SNAP_MAGIC */
    uint32_t major, minor;      /* SNAP_MAJOR, SNAP_MINOR of the writer */
    uint64_t file_size;         /* the whole file, this header included */
    uint64_t producers_offset;  /* end of the entries */
    uint64_t tables_offset;     /* producers_offset + n_producers * sizeof (struct snap_producer) */
    uint64_t n_producers;       /* every producer apply has a record of */
    uint64_t n_tables;          /* state tables */
    uint64_t n_entries;         /* entries of every table */
    struct apply_meta am;       /* what was applied at the group boundary the state is at */
    struct snap_base base;      /* an overlay's base; zeros in a whole snapshot */
    uint64_t body_hash;         /* XXH3_64bits of bytes [SNAP_HEADER_SIZE, file_size) */
    uint64_t header_hash;       /* XXH3_64bits of the header before this field */
};
_Static_assert(sizeof(struct snap_header) <= SNAP_HEADER_SIZE, "the header fits its slot");

struct snap_producer {
    char name[RK_NAME_MAX + 1]; /* NUL-padded */
    struct producer_meta m;     /* its record in meta.db (its last MARK applied) */
};

struct snap_table {
    char name[RK_NAME_MAX + 1]; /* NUL-padded */
    uint64_t n_entries;
    uint64_t offset, size; /* its entries' bytes */
};

/* ------------------------------------------------------------ writing */

typedef struct snap_writer snap_writer;

/* Creates path (mode 0600, replacing a file of that name) for a snapshot
 * written in one pass: tables in ascending name order (snap_writer_table),
 * each table's entries in ascending key order (snap_writer_add), then
 * snap_writer_finish.  Writes go through the I/O seam (sys_write).  No
 * fsync: see above. */
int snap_writer_open(const char *path, snap_writer **out, char *err, size_t err_size);
int snap_writer_table(snap_writer *w, const char *name);
int snap_writer_add(snap_writer *w, const void *key, uint32_t klen, const void *val, uint32_t vlen);

/* Adds n_entries entries already in the file's encoding (u32 klen, u32
 * vlen, key, value: a run of another snapshot file's entries, in key order
 * after those added before), len bytes, as one copy. */
int snap_writer_add_encoded(snap_writer *w, const void *entries, size_t len, uint64_t n_entries);

/* Adds a tombstone (an overlay's: the base's entry of key is deleted), in
 * key order like snap_writer_add. */
int snap_writer_add_tombstone(snap_writer *w, const void *key, uint32_t klen);

/* Entries added so far, and the file offset the next one goes to. */
uint64_t snap_writer_entries(const snap_writer *w);
uint64_t snap_writer_offset(const snap_writer *w);

/* Where an entry of a file is, and its key's first 8 bytes (key_prefix):
 * an index of a file's entries, tables in order, lets a reader bisect
 * them, reading the file only where prefixes tie. */
struct snap_slot {
    uint64_t off, prefix;
};

/* Writes the producers and the table directory, then the header with
 * am and base (NULL: a whole snapshot), and closes the file.  Frees w in
 * every case (the file is removed on a failure). */
int snap_writer_finish(snap_writer *w, const struct apply_meta *am, const struct snap_base *base,
                       const struct snap_producer *producers, size_t n_producers, char *err, size_t err_size);

/* Drops an unfinished snapshot: closes and removes its file.  NULL is a
 * no-op. */
void snap_writer_abort(snap_writer *w);

/* ------------------------------------------------------------ reading */

/* What snap_verify found in a file; pointers point into the file's bytes. */
struct snap_info {
    struct snap_header h;
    const struct snap_producer *producers; /* h.n_producers (unaligned: read with memcpy) */
    const uint8_t *tables;                 /* h.n_tables struct snap_table (likewise) */
};

/* Called for every table before its entries (index i, its entry count),
 * then for each of its entries in order; key and val point into the
 * file's bytes (an overlay's tombstone: val NULL, vlen SNAP_TOMBSTONE).
 * Non-zero stops and is returned. */
typedef int (*snap_table_fn)(void *arg, uint32_t i, const char *name, uint64_t n_entries);
typedef int (*snap_entry_fn)(void *arg, const void *key, uint32_t klen, const void *val, uint32_t vlen);

/* Checks the file in buf[0..len) whole -- magic, version, sizes, both
 * hashes, then every table and entry (every length before it is read, key
 * order, counts; a tombstone only in an overlay) -- calling table_fn and
 * entry_fn (either may be NULL) as it walks the entries.  0, or RK_EVERSION / RK_ECORRUPT with a reason in
 * err; on a failure the callbacks may have seen part of the file: the
 * caller drops what it built. */
int snap_verify(const uint8_t *buf, size_t len, struct snap_info *info, snap_table_fn table_fn,
                snap_entry_fn entry_fn, void *arg, char *err, size_t err_size);

/* snap_verify's checks but the entries' and the body's hash: magic,
 * version, sizes, the header's hash, the producers' names and the table
 * directory (names in order, each table's bytes following the one before;
 * a failure there is said as the body's checksum when that does not match
 * either).  For a reader that bounds every length it reads itself, trusts
 * the key order to the hash (a file this process wrote: export.c's base)
 * and hashes the body as it walks it (snap_body_hash_*): nothing it did
 * counts until snap_body_hash_end says the body is what the header says. */
int snap_check_layout(const uint8_t *buf, size_t len, struct snap_info *info, char *err, size_t err_size);

/* The body's hash, taken as a walk over the file in buf[0..len) reads it:
 * snap_body_hash_to(bh, at) hashes from where it is to a chunk past at (or
 * to the end) and returns how far the body is now hashed -- the walk calls
 * it again when it reaches that point, and reads each chunk from the cache
 * just after it was hashed instead of from memory a second time.
 * snap_body_hash_end hashes the rest, frees bh and is 1 when the body's
 * hash is body_hash.  begin: NULL when out of memory. */
typedef struct snap_body_hash snap_body_hash;
snap_body_hash *snap_body_hash_begin(const uint8_t *buf, size_t len);
const uint8_t *snap_body_hash_to(snap_body_hash *bh, const uint8_t *at);
int snap_body_hash_end(snap_body_hash *bh, uint64_t body_hash);

/* Writes at path the whole snapshot that the overlay in overlay[0..
 * overlay_len) makes with its base in base[0..base_len): the base's
 * entries, each replaced, deleted or joined by the overlay's as the
 * engine's reader does, with the overlay's header (applied, producers).
 * The overlay is verified whole first, the base's layout and its being
 * the one the overlay names, then its body's hash as the merge reads it
 * (snap_body_hash_*): RK_ECORRUPT when either fails, the file removed.
 * Runs of base entries the overlay does not touch are copied as they are.
 * *n_entries: the entries written; *index (malloc'd, the caller's; NULL
 * when out of memory): the new file's index (struct snap_slot), built as
 * the merge goes, so that nobody walks the new file again for it. */
int snap_merge(const uint8_t *base, size_t base_len, const uint8_t *overlay, size_t overlay_len, const char *path,
               uint64_t *n_entries, struct snap_slot **index, char *err, size_t err_size);

/* An overlay's base name (struct snap_base.name, SNAP_BASE_NAME_MAX
 * bytes): a file name in its directory (no '/', not "." or ".."),
 * NUL-terminated and NUL-padded in its field.  1 if so. */
int snap_base_name_ok(const char *name);

/* One producer's record of a verified file (index i < h.n_producers). */
void snap_producer_at(const struct snap_info *info, uint64_t i, struct snap_producer *out);

#endif
