/* checkpoint.h -- checkpoint files: a consistent snapshot of every state
 * table at a group boundary (private to ringkeep).
 *
 * File checkpoints/<journal seq, 20 digits>.rkcp, mode 0600:
 *   header   magic "RKCP", format major/minor, then a msgpack map: epoch,
 *            journal sequence, LSN, created (ns since the epoch), every
 *            producer's name/height/applied LSN, the table directory with
 *            each table's entry count, total entry count, uncompressed body
 *            size, state digest, the replay record (1.1), the epoch
 *            history of the directory it was taken in (1.2);
 *   body     zstd frames, each holding msgpack entries [table, key, value]
 *            (tables in name order, keys in byte order within a table);
 *   trailer  XXH64 (seed 0) of everything before it, canonical form.
 * Written to a temp file in the same folder, fsynced, renamed, the folder
 * fsynced, then read back and verified before anyone is told about it.
 * A reader refuses an unknown major version naming both versions; an older
 * minor version still loads.
 *
 * The state digest (docs/FORMAT.md, "The state digest", for outsiders): the
 * sum (mod 2^64) over every entry of
 * XXH3_64bits_withSeed(value, vlen, XXH3_64bits(table "\0" key)) -- order
 * independent, so two nodes with equal state have equal digests however
 * they got there.  ckpt_entry_digest() computes one entry's term.
 */
#ifndef RK_CHECKPOINT_H
#define RK_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "ringkeep.h"
#include "persist/history.h"

#define CKPT_MAJOR 1u
#define CKPT_MINOR 2u
#define CKPT_SUFFIX ".rkcp"

/* Limits a reader holds every file to, whatever it claims (checkpoint_format.h
 * documents the layout): the msgpack header map, one encoded entry, and
 * the uncompressed bytes of one body frame (frames are cut after
 * CKPT_FRAME_TARGET bytes, so one holds at most that plus one entry). */
#define CKPT_MAX_HEADER (16u << 20)
#define CKPT_MAX_ENTRY (64u << 20)
#define CKPT_FRAME_TARGET (1u << 20)
#define CKPT_FRAME_MAX (CKPT_FRAME_TARGET + CKPT_MAX_ENTRY)

struct ckpt_producer {
    char name[RK_NAME_MAX + 1];
    uint64_t height;      /* its last MARK applied */
    uint64_t applied_lsn; /* that MARK's LSN */
};

struct ckpt_table {
    char name[RK_NAME_MAX + 1];
    uint64_t n_entries;
};

/* Format 1.1: what a restore needs to go on applying the journal after
 * the checkpoint exactly as the node that took it would have: the apply
 * restart point (the first journal entry of the oldest group still open
 * at the checkpoint), the counters, every producer's apply record, and the
 * ring's table-id and producer-slot maps then in force.  A 1.0 file has
 * none (has_replay 0): its state loads, but no journal can follow it. */
struct ckpt_replay_producer {
    char name[RK_NAME_MAX + 1];
    uint64_t applied_lsn, height, n_groups, discard_lsn; /* apply.h's producer_meta */
};

struct ckpt_map_entry {
    uint32_t id; /* table id, or producer slot */
    char name[RK_NAME_MAX + 1];
};

struct ckpt_replay {
    uint64_t restart_seq;
    uint64_t n_groups, n_records, n_discarded;
    uint32_t n_producers;
    struct ckpt_replay_producer *producers;
    uint32_t n_table_ids;
    struct ckpt_map_entry *table_ids;
    uint32_t n_slots;
    struct ckpt_map_entry *slots;
};

/* What a checkpoint's header says.  Arrays are owned by the struct
 * (ckpt_info_free). */
struct ckpt_info {
    uint32_t major, minor;
    uint64_t epoch;
    uint64_t journal_seq; /* the last journal entry applied */
    uint64_t lsn;         /* the last LSN applied */
    uint64_t created_ns;  /* CLOCK_REALTIME */
    uint64_t n_entries;
    uint64_t raw_size; /* msgpack bytes before compression */
    uint64_t digest;   /* state digest */
    uint32_t n_producers;
    struct ckpt_producer *producers;
    uint32_t n_tables;
    struct ckpt_table *tables;
    int has_replay; /* format >= 1.1 and the writer was given one */
    struct ckpt_replay replay;
    /* Format 1.2: the epoch history (persist/history.h) of the directory
     * it was taken in, cut after journal_seq + 1 (history_cut): every
     * epoch its state went through, and the one the next entry is in.
     * n_history 0: none given, or an older file (whose implied history is
     * its epoch alone). */
    uint32_t n_history;
    struct epoch_start *history;
};

void ckpt_info_free(struct ckpt_info *info);

/* The order of keys within a table: bytewise, a prefix first (<0, 0, >0). */
int ckpt_key_cmp(const void *a, size_t alen, const void *b, size_t blen);

/* One entry's term of the state digest. */
uint64_t ckpt_entry_digest(const char *table, const void *key, uint32_t klen, const void *val, uint32_t vlen);

/* ------------------------------------------------------------ writing */

typedef struct ckpt_writer ckpt_writer;

/* Starts a checkpoint in folder dir.  info gives epoch, journal_seq, lsn,
 * producers (copied); counts, sizes, tables and digest are computed from
 * the entries added.  (created_ns: info's when non-zero, else now.) */
int ckpt_writer_open(const char *dir, const struct ckpt_info *info, int zstd_level, ckpt_writer **out,
                     char *err, size_t err_size);

/* Adds an entry; tables in strictly increasing name order, keys in
 * strictly increasing byte order within a table (RK_EINVAL otherwise). */
int ckpt_writer_add(ckpt_writer *w, const char *table, const void *key, uint32_t klen, const void *val,
                    uint32_t vlen);

/* The digest the entries added must sum to (ckpt_entry_digest): finish
 * refuses to write a file whose entries do not (RK_ECORRUPT). */
void ckpt_writer_expect_digest(ckpt_writer *w, uint64_t digest);

/* Finishes: writes header, body and trailer to a temp file, fsyncs,
 * reads it back with ckpt_verify, renames it to dir/<journal_seq>.rkcp
 * (replacing a file of that name only once the new one verified), fsyncs
 * dir and returns its path in path_out.  Frees w in every case. */
int ckpt_writer_finish(ckpt_writer *w, char *path_out, size_t path_size, char *err, size_t err_size);

/* Whether a base name in a checkpoints folder is one of a writer's temp
 * files: the body spool (.spool-*.tmp, unlinked at once, left only by a
 * kill in between) or the file being finished (.<seq>.rkcp.tmp-<pid>).
 * Such files are never listed; a node removes them at start. */
int ckpt_is_temp_name(const char *name);

/* Drops an unfinished checkpoint (removes its temp file).  NULL is a
 * no-op. */
void ckpt_writer_abort(ckpt_writer *w);

/* ------------------------------------------------------------ reading */

typedef int (*ckpt_entry_fn)(void *arg, const char *table, const void *key, uint32_t klen, const void *val,
                             uint32_t vlen);

/* Reads only the header of path (no body check).  RK_EVERSION for an
 * unknown major version ("checkpoint format 2.0, this ringkeep reads
 * 1.x"), RK_ECORRUPT with a reason for anything else wrong. */
int ckpt_read_info(const char *path, struct ckpt_info *info, char *err, size_t err_size);

/* Reads and checks the whole file: trailer XXH64, header, every zstd frame
 * and msgpack entry (every length checked before it is read; an array or
 * map header claiming more entries than bytes remain is refused without
 * allocating), entry order, per-table counts, total count, raw size and
 * the state digest recomputed.  Calls fn for every entry in order when fn
 * is not NULL, only once the whole file has passed (fn returning non-zero
 * stops and is returned).  0, or
 * RK_ECORRUPT / RK_EVERSION with a reason saying exactly what is wrong. */
int ckpt_verify(const char *path, struct ckpt_info *info, ckpt_entry_fn fn, void *arg, char *err,
                size_t err_size);

/* ckpt_verify walking the body once instead of twice: fn has each entry
 * as soon as that entry has passed its own checks, so it may have had
 * entries of a file that fails further on (an order, a count, the digest
 * at the end); the failure is returned all the same.  The header and the
 * trailer checksum over the whole file are checked before the first
 * entry, as in ckpt_verify.  Only for a caller that throws away all fn
 * did when this fails: the checkpoint load into a data directory being
 * built (import.c), which a failure removes or leaves refused. */
int ckpt_verify_once(const char *path, struct ckpt_info *info, ckpt_entry_fn fn, void *arg, char *err,
                     size_t err_size);

/* ckpt_verify on the bytes buf[0..len) of a whole file, in memory (the
 * fuzz target's entry point; ckpt_verify maps the file and calls it).
 * name, when not NULL, is the file's base name: if it has the pattern
 * <20 digits>.rkcp, the header's journal_seq must equal that number (so
 * that an older checkpoint copied over a newer one is caught).  Reasons
 * do not name the file. */
int ckpt_verify_buffer(const uint8_t *buf, size_t len, const char *name, struct ckpt_info *info,
                       ckpt_entry_fn fn, void *arg, char *err, size_t err_size);

/* The checkpoint files of folder dir, newest (highest journal seq) first:
 * malloc'd array of malloc'd paths in *paths (ckpt_list_free). */
int ckpt_list(const char *dir, char ***paths, size_t *n_paths);
void ckpt_list_free(char **paths, size_t n_paths);

#endif
