/* apply_impl.h -- the applier's insides, shared by the three files that
 * make it up (private to persist/; nobody else includes this header):
 *
 *   apply.c    the journal applied to the state tables, group by group;
 *              opening, closing, the transaction and the meta records;
 *   export.c   what leaves the applier: checkpoints and state snapshots
 *              (applier_checkpoint_begin, ckpt_job_*);
 *   import.c   what enters it: a checkpoint loaded into a new data
 *              directory (applier_load_checkpoint).
 *
 * Threads: an applier is used by one thread at a time (apply.h); every
 * function here runs on that thread.  Only a ckpt_job, once begun, leaves
 * it (export.c says how).
 */
#ifndef RK_APPLY_IMPL_H
#define RK_APPLY_IMPL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "persist/apply.h"
#include "shm/ring_format.h"

#define STATE_FILE "state.db"
#define MAX_TABLES 4096

struct held_group {
    uint8_t *buf; /* the held frames, each at an 8-aligned offset */
    size_t len, cap;
    uint32_t n_frames;
    uint64_t start_seq; /* journal entry of its first frame */
};

struct producer {
    char name[RK_NAME_MAX + 1];
    struct producer_meta m;
    int dirty; /* m changed in the open transaction */
    struct held_group open;
};

struct table {
    char name[RK_NAME_MAX + 1];
    DB *db;
    /* apply: whether this table's recent PUTs found their key (up) or
     * made a new one (down), in [-KEY_SEEN_LIMIT, KEY_SEEN_LIMIT]; picks
     * which of apply_record's ways takes one B-tree descent (apply.c) */
    int key_seen;
};

/* One PUT or DEL of a group applied in the open transaction, waiting in
 * struct pending to be written to its table when the transaction
 * commits. */
struct pending_record {
    const uint8_t *key; /* into pending.buf; set when the records are sorted */
    uint64_t off;       /* the frame's offset in pending.buf, which grows in journal order:
                           equal keys keep it */
    uint64_t prefix;    /* the key's first 8 bytes big-endian, zeros past its end (pending_cmp) */
    uint32_t klen;
    uint32_t table; /* index in applier.tables */
};

/* The records of the groups applied in the open transaction (A2: whole
 * groups only), in journal order; apply_pending writes them sorted by
 * table and key, the last one per key only (see apply.c). */
struct pending {
    uint8_t *buf; /* the frames, each at an 8-aligned offset */
    size_t len, cap;
    struct pending_record *records;
    size_t n_records, cap_records;
    struct pending_record *spare; /* cap_records of them: pending_sort's other half */
};

struct applier {
    store *s;
    DB_ENV *env;
    DB *meta;
    DB_TXN *txn;          /* the open transaction, or NULL */
    uint32_t txn_records; /* records applied in it */
    struct pending pending; /* those records, written at commit */
    struct apply_meta am;
    /* meta.db's "loading" as applier_open found it: a load into this
     * store in use never ended (applier_load_interrupted) */
    int load_interrupted;
    uint64_t loading_seq;   /* that checkpoint's journal_seq */
    uint64_t next_seq;      /* next journal entry to read */
    uint64_t read_next_lsn; /* the next_lsn of the last entry read (0: none read yet) */
    /* ring ids of the current ring, from TABLE and ATTACH frames; changed
     * only through apply_map_table and apply_map_slot */
    char table_map[RING_MAX_TABLES][RK_NAME_MAX + 1];
    char slot_map[RING_MAX_PRODUCERS][RK_NAME_MAX + 1];
    int maps_dirty;
    /* what the journal's TABLE and ATTACH frames changed in the maps, in
     * the order read, each with the entry it was read in and the name it
     * replaced: the maps at the start of entry S are the maps now with the
     * changes of entries >= S undone (apply_maps_at).  The maps a commit
     * writes are those at its restart point, where apply reads again
     * after a restart: with the maps of the commit point, a frame read
     * again from before a new ring's ATTACH went to the producer that
     * took its slot later.  Changes below the restart point are dropped
     * at each commit. */
    struct map_change *changes;
    size_t n_changes, cap_changes;
    /* the same ids resolved, so that a record costs no search by name
     * (A6): table_index[id] is 1 + the index in tables of table_map[id]'s
     * table, slot_producer[slot] 1 + the index in producers of
     * slot_map[slot]'s producer; 0: not looked up yet.  Cleared for an id
     * whose name changes. */
    uint32_t table_index[RING_MAX_TABLES];
    uint32_t slot_producer[RING_MAX_PRODUCERS];
    struct producer *producers; /* never shrinks: an index stays valid */
    size_t n_producers;
    struct table *tables; /* never shrinks either */
    size_t n_tables;
    /* applier_watch_height: stop after the entry in which this producer's
     * height crossed a multiple of watch_every */
    char watch_name[RK_NAME_MAX + 1];
    size_t watch_producer; /* its index in producers (SIZE_MAX: not found yet) */
    uint64_t watch_every, watch_last;
    int watch_hit;
    /* applier_stop_when: applier_run stops after the entry in which this
     * is seen set (NULL: never) */
    const atomic_int *stop_flag;
    /* a fold (export.c, snapshot_fold): journal entries past a snapshot
     * taken through the same rules, but its groups stay in pending (never
     * committed) and its tables are names only (db NULL): nothing is
     * written to the store */
    int fold;
};

/* meta.db's "maps" value: the two maps as they are in struct applier at
 * the start of entry "applied".restart_seq (apply_maps_at). */
struct maps_record {
    char table_map[RING_MAX_TABLES][RK_NAME_MAX + 1];
    char slot_map[RING_MAX_PRODUCERS][RK_NAME_MAX + 1];
};

/* One change of applier.changes: table id or producer slot `id` was named
 * `old` before a frame of entry `seq` renamed it. */
struct map_change {
    uint64_t seq;
    uint16_t id;
    uint8_t is_slot;
    char old[RK_NAME_MAX + 1];
};

/* The maps as they were at the start of journal entry seq (at or below
 * the entry being read) into *out: a's maps with the changes read since
 * undone. */
void apply_maps_at(const applier *a, uint64_t seq, struct maps_record *out);

/* Producer `name`, its record read from meta.db the first time; NULL when
 * out of memory. */
struct producer *apply_producer(applier *a, const char *name);

/* The database of table `name`, opened (and, with create, created) in the
 * open transaction the first time.  RK_ENOTFOUND when it does not exist
 * and create is 0. */
int apply_table_db(applier *a, const char *name, int create, DB **out);

/* Closes every table handle of the applier (between transactions: no
 * transaction open, nothing pending); they are opened again when next
 * used.  Berkeley DB refuses a DB_MULTIVERSION handle on a file that has
 * other handles open without it (export.c, snapshot_pin). */
void apply_close_tables(applier *a);

/* meta.db's "loading" record (apply.h, applier_load_interrupted): put
 * in the open transaction, with the checkpoint's journal_seq; removed
 * in it (none there is no error). */
int apply_loading_put(applier *a, uint64_t journal_seq);
int apply_loading_del(applier *a);

/* Sets the name of ring table id `id` (< RING_MAX_TABLES) or of producer
 * slot `slot` (< RING_MAX_PRODUCERS); when it changes, the maps are
 * written with the next commit and what the id resolved to is forgotten. */
void apply_map_table(applier *a, uint32_t id, const char *name);
void apply_map_slot(applier *a, uint32_t slot, const char *name);

/* Sorts pd's records by table (index in applier.tables), key (Berkeley
 * DB's default btree order), then journal order, and points their key
 * fields into pd->buf. */
void pending_sort(struct pending *pd);

/* Where applying must start again to find every open group whole (A4):
 * the first entry of the oldest group still open, else next_seq. */
uint64_t apply_restart_seq(const applier *a);

/* Opens a transaction unless one is open. */
int apply_txn_begin(applier *a);

/* Writes the dirty producers, "applied" (with the restart point) and, if
 * they changed, the maps, then commits without sync.  No-op without an
 * open transaction. */
int apply_txn_commit(applier *a);

#endif
