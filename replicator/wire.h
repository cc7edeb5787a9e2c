/* wire.h -- the replication wire codec: every message the primary publishes
 * (PUB) or answers (ROUTER), and every request a standby sends (DEALER), as
 * C structs, with an encoder (msgpack-c) and a bounded decoder (mpread.h).
 * docs/PROTOCOL.md is the specification for third parties; this header is
 * its C side.  Private to ringkeep.  No sockets here: pure functions.
 *
 * A ZeroMQ message is two frames: [name, body].  name is the topic on PUB
 * ("rk.j", "rk.c", "rk.h", so that SUB prefix filtering works) or the
 * message type on ROUTER/DEALER ("HELLO", "FETCH", ...), ASCII, no NUL.
 * body is one msgpack array whose first two elements are the protocol
 * version (WIRE_VERSION) and the sender's epoch; the rest depends on the
 * type (wire.c and PROTOCOL.md list every field).
 */
#ifndef RK_WIRE_H
#define RK_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "ringkeep.h"
#include "persist/store.h"

/* Version 2 (issue 11): HELLO says the standby's last entry by (seq, epoch,
 * XXH64), WELCOME carries the primary's epoch history and whether that
 * entry is on it.  A peer of another version is refused: its messages do
 * not decode (RK_EVERSION), and a primary answers such a request with
 * ERROR WIRE_ERR_VERSION in its own version. */
#define WIRE_VERSION 2u

/* ------------------------------------------------------------ limits */

#define WIRE_NAME_MAX RK_NAME_MAX    /* node ids, producer names: 1..47 bytes, no NUL */
#define WIRE_FILE_MAX 255u           /* checkpoint file names: 1..255 bytes */
#define WIRE_TEXT_MAX 255u           /* ERROR text: 0..255 bytes, no NUL */
#define WIRE_CHUNK_MAX (1u << 20)    /* SNAPSHOT max_len and CHUNK data */
#define WIRE_MAX_PRODUCERS 4096u     /* producers in a checkpoint notice */
#define WIRE_MAX_STANDBYS 64u        /* standbys in a heartbeat */
#define WIRE_MAX_ENTRIES 4096u       /* entries in one ENTRIES reply */
#define WIRE_MAX_HISTORY HISTORY_MAX /* elements of WELCOME's epoch history */
#define WIRE_ENTRIES_TARGET                                                                                  \
    (8u << 20) /* an ENTRIES reply stops adding                                                              \
                  entries past these bytes (it                                                               \
                  always holds at least one) */
/* A journal entry as stored: header + body (at most JOURNAL_MAX_RAW, since
 * journal_encode stores a body plain when zstd does not shrink it) + XXH64. */
#define WIRE_ENTRY_MIN (JOURNAL_HEADER_SIZE + JOURNAL_TRAILER_SIZE)
#define WIRE_ENTRY_MAX ((size_t)JOURNAL_HEADER_SIZE + JOURNAL_MAX_RAW + JOURNAL_TRAILER_SIZE)
/* The largest body frame: one entry of WIRE_ENTRY_MAX bytes with its
 * message around it, or an ENTRIES reply of WIRE_ENTRIES_TARGET bytes plus
 * one more entry.  Set as ZMQ_MAXMSGSIZE on every socket. */
#define WIRE_MSG_MAX (WIRE_ENTRIES_TARGET + WIRE_ENTRY_MAX + 64u * 1024)

/* ZMQ_MAXMSGSIZE for every replication socket (int64_t, as zmq wants). */
int64_t wire_max_msg_size(void);

/* ------------------------------------------------------------ messages */

enum wire_type {
    /* PUB, primary -> everyone */
    WIRE_JOURNAL,    /* "rk.j": one journal entry */
    WIRE_CHECKPOINT, /* "rk.c": a checkpoint was written and verified */
    WIRE_HEARTBEAT,  /* "rk.h": the primary's cursors and its standbys */
    /* DEALER -> ROUTER, standby -> primary */
    WIRE_HELLO,    /* "HELLO": who I am, what I hold; replied WELCOME */
    WIRE_FETCH,    /* "FETCH": journal entries [from_seq, to_seq]; ENTRIES */
    WIRE_SNAPSHOT, /* "SNAPSHOT": a piece of a checkpoint file; CHUNK */
    WIRE_ACK,      /* "ACK": my journal is durable up to durable_seq (, my apply's position
                      and lag); no reply */
    /* ROUTER -> DEALER, primary -> standby */
    WIRE_WELCOME, /* "WELCOME": what the primary holds */
    WIRE_ENTRIES, /* "ENTRIES": consecutive journal entries */
    WIRE_CHUNK,   /* "CHUNK": bytes of a checkpoint file */
    WIRE_ERROR,   /* "ERROR": a request refused */
    WIRE_N_TYPES
};

/* ERROR codes (a receiver treats a code it does not know as a refusal of
 * its request). */
enum wire_error_code {
    WIRE_ERR_EPOCH = 1,       /* your epoch is lower than mine (mine is in the message) */
    WIRE_ERR_TRIMMED = 2,     /* entries asked for are no longer held: bootstrap from a checkpoint */
    WIRE_ERR_NO_FILE = 3,     /* no such checkpoint file (retention removed it?) */
    WIRE_ERR_NOT_PRIMARY = 4, /* this node is not the primary */
    WIRE_ERR_BAD_REQUEST = 5, /* the request decoded but cannot be served (from_seq > to_seq, ...) */
    WIRE_ERR_VERSION = 6,     /* your protocol version is not mine (mine is the message's) */
    WIRE_ERR_IDENTITY = 7,    /* HELLO: that node_id is not yours (held by a live connection, or not
                                 bound to your CURVE key); not counted, say HELLO again later */
};

struct wire_producer {
    char name[WIRE_NAME_MAX + 1]; /* NUL-terminated */
    uint64_t height;              /* last MARK applied in the checkpoint */
};

/* A checkpoint (notice body after version and epoch; WELCOME's newest). */
struct wire_checkpoint {
    uint64_t journal_seq; /* the journal entry it includes the state up to */
    uint64_t lsn;         /* the LSN it includes the state up to */
    uint32_t n_producers; /* <= WIRE_MAX_PRODUCERS */
    struct wire_producer *producers;
    uint64_t size;                /* bytes of the file */
    uint64_t digest;              /* state digest of the checkpoint */
    char name[WIRE_FILE_MAX + 1]; /* base name ("<20 digits>.rkcp"), NUL-terminated */
    uint64_t created_ns;          /* CLOCK_REALTIME when it was taken */
};

struct wire_standby {
    char id[WIRE_NAME_MAX + 1]; /* its node id (from its HELLO) */
    uint64_t acked_seq;         /* its last ACK: durable_seq; <= journal_seq */
    uint64_t lag_entries;       /* journal_seq - acked_seq */
    uint64_t lag_ms;            /* ms since the primary journaled the entry
                                   after acked_seq (0 when caught up) */
};

struct wire_heartbeat {
    uint64_t journal_seq; /* last entry in the primary's journal */
    uint64_t applied_seq; /* last entry applied; <= journal_seq */
    uint64_t durable_lsn; /* the ring's durable cursor */
    uint64_t applied_lsn; /* LSN applied to state; <= durable_lsn */
    uint64_t digest;      /* state digest at the last group boundary */
    uint64_t digest_seq;  /* the entry that boundary was in; <= applied_seq */
    uint32_t n_standbys;  /* <= WIRE_MAX_STANDBYS */
    struct wire_standby *standbys;
    uint64_t time_ns; /* CLOCK_REALTIME when it was sent */
};

/* A journal entry on the wire: the bytes exactly as stored.  Decoded,
 * bytes points into the body it was decoded from. */
struct wire_entry {
    uint64_t seq; /* = the entry's own header seq */
    const uint8_t *bytes;
    size_t len;        /* WIRE_ENTRY_MIN..WIRE_ENTRY_MAX */
    int has_prev_xxh;  /* rk.j only: 0 when absent on the wire (a primary before it, or one
                          that does not hold entry seq - 1) */
    uint64_t prev_xxh; /* rk.j only: the XXH64 trailer of the primary's entry seq - 1, the one
                          this entry follows (wire_entry_xxh): a standby holding another
                          entry seq - 1 does not take it */
};

struct wire_hello {
    char node_id[WIRE_NAME_MAX + 1];
    uint64_t last_seq;   /* the last entry the standby holds (0: none) */
    uint64_t last_epoch; /* its epoch (its history's for last_seq); 0 iff last_seq is 0 */
    int has_last_xxh;    /* 0: nil on the wire: the standby does not hold entry last_seq
                            itself (its journal starts after a checkpoint), or last_seq is 0 */
    uint64_t last_xxh;   /* the entry's XXH64 trailer (of its header and body) as a uint64 */
    int monitor;         /* 1: a monitor, not a standby (HELLO's optional 7th element, true; absent
                            means false): welcomed, never listed, counted or given a standby slot */
    int checks_prev;     /* 1: it takes no rk.j or ENTRIES entry whose prev_xxh is not its last
                            entry's (HELLO's optional 8th element, within version 2, issue 13.6;
                            absent means false, and the 7th is then sent too): a primary publishes
                            ahead of its fsync only while every standby it knows says so */
};

struct wire_welcome {
    uint64_t first_seq;                /* the primary holds entries first_seq..last_seq; */
    uint64_t last_seq;                 /* none when first_seq == last_seq + 1 */
    int has_checkpoint;                /* 0: nil on the wire */
    struct wire_checkpoint checkpoint; /* the newest, when has_checkpoint */
    uint32_t n_history;                /* 1..WIRE_MAX_HISTORY */
    struct epoch_start *history;       /* the primary's epoch history (H1, H2) */
    int matched;                       /* the HELLO's last entry is on this history: the primary
                                          counts it; 0: nothing of this standby is counted until a
                                          HELLO whose last entry is */
    int has_hello_last_seq;            /* 0: absent on the wire (a primary before it) */
    uint64_t hello_last_seq;           /* the last_seq of the HELLO this answers: a standby that
                                          said HELLO again meanwhile tells the answers apart */
};

struct wire_fetch {
    uint64_t from_seq; /* >= 1 */
    uint64_t to_seq;   /* >= from_seq */
};

struct wire_entries {
    uint32_t n_entries; /* <= WIRE_MAX_ENTRIES; seqs consecutive */
    struct wire_entry *entries;
    int more; /* the reply stopped before to_seq: FETCH again from the
                 last seq + 1 (then n_entries >= 1) */
    int has_prev_xxh;  /* 0: absent on the wire (a primary before it, one that does not
                          hold the entry before the first, or no entries) */
    uint64_t prev_xxh; /* the XXH64 trailer of the primary's entry just before the first */
};

struct wire_snapshot {
    char name[WIRE_FILE_MAX + 1];
    uint64_t offset;  /* first byte wanted */
    uint32_t max_len; /* 1..WIRE_CHUNK_MAX */
};

struct wire_chunk {
    char name[WIRE_FILE_MAX + 1];
    uint64_t offset;     /* of data[0] in the file */
    uint64_t total_size; /* of the whole file */
    uint64_t file_xxh64; /* XXH64 (seed 0) of the whole file */
    const uint8_t *data; /* decoded: points into the body */
    uint32_t len;        /* <= WIRE_CHUNK_MAX; offset + len <= total_size;
                            0 only when offset == total_size */
};

struct wire_ack {
    uint64_t durable_seq;  /* the last entry the standby holds, fsynced */
    int has_apply;         /* 0: the two below absent on the wire (a standby before them) */
    uint64_t applied_seq;  /* the last entry its apply committed */
    uint64_t apply_lag_ms; /* its journal not applied yet, in ms of apply work at its measured
                              rate (0: caught up); issue 13.7 */
};

struct wire_error {
    uint32_t code; /* enum wire_error_code; 1..65535 */
    char text[WIRE_TEXT_MAX + 1];
};

struct wire_msg {
    enum wire_type type;
    uint64_t epoch; /* the sender's epoch (the primary's, as it knows it) */
    union {
        struct wire_entry journal;
        struct wire_checkpoint checkpoint;
        struct wire_heartbeat heartbeat;
        struct wire_hello hello;
        struct wire_fetch fetch;
        struct wire_snapshot snapshot;
        struct wire_ack ack;
        struct wire_welcome welcome;
        struct wire_entries entries;
        struct wire_chunk chunk;
        struct wire_error error;
    } u;
};

/* ------------------------------------------------------------ functions */

/* The first frame for type t ("rk.j", "HELLO", ...); NULL if t is not a
 * type. */
const char *wire_type_name(enum wire_type t);

/* Encodes m's body into a malloc'd buffer *body of *body_len bytes (the
 * caller frees it).  Checks m against the rules the decoder keeps first and
 * returns RK_EINVAL with a reason in why if it breaks one, so whatever is
 * encoded decodes; ENOMEM.  On failure *body is NULL. */
int wire_encode(const struct wire_msg *m, uint8_t **body, size_t *body_len, char *why, size_t why_size);

/* Decodes a message from its two frames.  Never reads outside name[0..
 * name_len) and body[0..body_len); allocates only arrays whose counts are
 * within both the explicit maxima above and the bytes left.  On success m
 * holds the message: its entry and chunk bytes point into body (keep body
 * while m is used), its arrays are owned by m (wire_msg_free).  Returns 0;
 * RK_EVERSION for a version other than WIRE_VERSION; RK_ECORRUPT for an
 * unknown name, a body longer than WIRE_MSG_MAX or anything malformed or
 * breaking a rule (one line in why naming the field and what is wrong);
 * ENOMEM.  On failure m owns nothing. */
int wire_decode(const void *name, size_t name_len, const uint8_t *body, size_t body_len, struct wire_msg *m,
                char *why, size_t why_size);

/* Frees the arrays a decoded m owns and empties them.  NULL is a no-op.
 * (Messages the caller built are the caller's to free.) */
void wire_msg_free(struct wire_msg *m);

/* What identifies an entry's bytes in HELLO: its XXH64 trailer (seed 0,
 * over its 64-byte header and body; the header holds seq, epoch and LSNs),
 * read from its canonical big-endian form; 0 for a buffer shorter than an
 * entry. */
uint64_t wire_entry_xxh(const uint8_t *entry, size_t len);

/* The epoch rule: a node at epoch current accepts a message of epoch got
 * only if got >= current.  Returns 0 (and *newer = got > current: the
 * receiver must adopt got, and a primary that sees a higher epoch steps
 * down), or RK_ESTALE with a reason in why.  newer may be NULL. */
int wire_check_epoch(uint64_t current, uint64_t got, int *newer, char *why, size_t why_size);

#endif
