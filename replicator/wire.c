/* wire.c -- the replication wire codec (the contract is in wire.h; the
 * specification for third parties is docs/PROTOCOL.md).
 *
 * Every body is one msgpack array; elements in this order (v = protocol
 * version, e = the sender's epoch; "record" = a nested array):
 *
 *   rk.j      [v, e, seq, entry (bin) (, prev_xxh: a later element of version 2)]
 *   rk.c      [v, e, journal_seq, lsn, producers: [[name, height]...],
 *              size, digest, file name, created_ns]
 *   rk.h      [v, e, journal_seq, applied_seq, durable_lsn, applied_lsn,
 *              digest, digest_seq,
 *              standbys: [[id, acked_seq, lag_entries, lag_ms]...], time_ns]
 *   HELLO     [v, e, node_id, last_seq, last_epoch, last_xxh (nil: not held)
 *              (, monitor (bool): only when true or checks_prev is, a later element of
 *              version 2) (, checks_prev (bool): only when true, a later element)]
 *   FETCH     [v, e, from_seq, to_seq]
 *   SNAPSHOT  [v, e, file name, offset, max_len]
 *   ACK       [v, e, durable_seq (, applied_seq, apply_lag_ms: later elements of
 *              version 2, the two together)]
 *   WELCOME   [v, e, first_seq, last_seq, nil | checkpoint record
 *              [journal_seq, lsn, producers, size, digest, name, created_ns],
 *              history, matched (, hello_last_seq: a later element of version 2)]
 *   ENTRIES   [v, e, [[seq, entry (bin)]...], more (bool) (, prev_xxh: a later
 *              element of version 2)]
 *   CHUNK     [v, e, file name, offset, total_size, file_xxh64, data (bin)]
 *   ERROR     [v, e, code, text]
 *
 * Integers are msgpack uints of any width (the encoder picks the shortest);
 * names and text are str, bytes are bin.  The body and every record may
 * carry more elements than listed (a later minor revision); they are
 * skipped.  Nothing may follow the body's array.
 *
 * Design: decoding is mpread.h's bounded reader, field by field, so a claim
 * of billions of elements or bytes is refused before anything loops or
 * allocates; lists are allocated only once their count is within both the
 * explicit maximum (wire.h) and the bytes left.  Entry and chunk bytes are
 * not copied: they point into the body.  One function, check_msg(), holds
 * every rule a message must keep beyond its shape (ranges, orders, names,
 * the entry header against the message); the decoder runs it on what it
 * read (RK_ECORRUPT) and the encoder on what it is given (RK_EINVAL), so
 * the encoder never produces a body the decoder refuses.  A journal
 * entry's own checksum is not verified here (that is journal_decode's job
 * where the entry is stored); only its length, magic, seq and epoch.
 *
 * Threads: pure functions; any thread.
 */
#define _GNU_SOURCE /* db.h (via store.h) needs u_int */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "persist/bytes.h"
#include "persist/mpread.h"
#include "shm/segment.h"
#include "replicator/wire.h"

/* Offsets in a journal entry's header (store.h, struct journal_header,
 * written little-endian by journal_encode). */
enum { ENTRY_OFF_MAGIC = 0, ENTRY_OFF_SEQ = 8, ENTRY_OFF_EPOCH = 16 };

static const char *const type_names[WIRE_N_TYPES] = {
    [WIRE_JOURNAL] = "rk.j", [WIRE_CHECKPOINT] = "rk.c", [WIRE_HEARTBEAT] = "rk.h",
    [WIRE_HELLO] = "HELLO",  [WIRE_FETCH] = "FETCH",     [WIRE_SNAPSHOT] = "SNAPSHOT",
    [WIRE_ACK] = "ACK",      [WIRE_WELCOME] = "WELCOME", [WIRE_ENTRIES] = "ENTRIES",
    [WIRE_CHUNK] = "CHUNK",  [WIRE_ERROR] = "ERROR",
};

/* Elements of each body in version 1, version and epoch included. */
static const uint32_t body_fields[WIRE_N_TYPES] = {
    [WIRE_JOURNAL] = 4, [WIRE_CHECKPOINT] = 9, [WIRE_HEARTBEAT] = 10, [WIRE_HELLO] = 6,
    [WIRE_FETCH] = 4,   [WIRE_SNAPSHOT] = 5,   [WIRE_ACK] = 3,        [WIRE_WELCOME] = 7,
    [WIRE_ENTRIES] = 4, [WIRE_CHUNK] = 7,      [WIRE_ERROR] = 4,
};

#define CHECKPOINT_FIELDS 7u /* the checkpoint record (WELCOME) */

int64_t wire_max_msg_size(void)
{
    return (int64_t)WIRE_MSG_MAX;
}

const char *wire_type_name(enum wire_type t)
{
    return (unsigned)t < WIRE_N_TYPES ? type_names[t] : NULL;
}

void wire_msg_free(struct wire_msg *m)
{
    if (!m)
        return;
    switch (m->type) {
    case WIRE_CHECKPOINT:
        free(m->u.checkpoint.producers);
        m->u.checkpoint.producers = NULL;
        m->u.checkpoint.n_producers = 0;
        break;
    case WIRE_WELCOME:
        free(m->u.welcome.checkpoint.producers);
        m->u.welcome.checkpoint.producers = NULL;
        m->u.welcome.checkpoint.n_producers = 0;
        free(m->u.welcome.history);
        m->u.welcome.history = NULL;
        m->u.welcome.n_history = 0;
        break;
    case WIRE_HEARTBEAT:
        free(m->u.heartbeat.standbys);
        m->u.heartbeat.standbys = NULL;
        m->u.heartbeat.n_standbys = 0;
        break;
    case WIRE_ENTRIES:
        free(m->u.entries.entries);
        m->u.entries.entries = NULL;
        m->u.entries.n_entries = 0;
        break;
    default:
        break;
    }
}

/* (not journal_entry_xxh: fuzz_wire builds this file without journal.c) */
uint64_t wire_entry_xxh(const uint8_t *entry, size_t len)
{
    uint64_t v = 0;

    if (len < WIRE_ENTRY_MIN)
        return 0;
    for (size_t i = len - JOURNAL_TRAILER_SIZE; i < len; i++) /* canonical: big-endian */
        v = v << 8 | entry[i];
    return v;
}

int wire_check_epoch(uint64_t current, uint64_t got, int *newer, char *why, size_t why_size)
{
    if (newer)
        *newer = 0;
    if (got < current)
        return seg_fail(why, why_size, RK_ESTALE,
                        "message from epoch %" PRIu64 ", lower than this node's epoch %" PRIu64 ": refused",
                        got, current);
    if (newer)
        *newer = got > current;
    return 0;
}

/* ------------------------------------------------------------ rules */

/* 1..WIRE_NAME_MAX bytes, no NUL (s is NUL-terminated within size). */
static int name_ok(const char *s, size_t size)
{
    size_t len = strnlen(s, size);

    return len >= 1 && len <= WIRE_NAME_MAX && len < size;
}

/* A base name a receiver may create in its checkpoints folder: 1..255
 * bytes, no '/', not "." or "..". */
static int file_name_ok(const char *s, size_t size)
{
    size_t len = strnlen(s, size);

    return len >= 1 && len <= WIRE_FILE_MAX && len < size && !strchr(s, '/') && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

static int entry_ok(const char *type, const struct wire_entry *e, uint64_t epoch, int rc, char *why,
                    size_t why_size)
{
    uint64_t seq, entry_epoch;

    if (e->seq == 0)
        return seg_fail(why, why_size, rc, "%s: entry seq 0 (sequences start at 1)", type);
    if (!e->bytes || e->len < WIRE_ENTRY_MIN || e->len > WIRE_ENTRY_MAX)
        return seg_fail(why, why_size, rc, "%s: entry %" PRIu64 " is %zu bytes (want %u..%zu)", type, e->seq,
                        e->len, WIRE_ENTRY_MIN, WIRE_ENTRY_MAX);
    if (get_le32(e->bytes + ENTRY_OFF_MAGIC) != JOURNAL_MAGIC)
        return seg_fail(why, why_size, rc, "%s: entry %" PRIu64 " does not start with the journal magic",
                        type, e->seq);
    seq = get_le64(e->bytes + ENTRY_OFF_SEQ);
    if (seq != e->seq)
        return seg_fail(why, why_size, rc, "%s: entry sent as seq %" PRIu64 " holds seq %" PRIu64, type,
                        e->seq, seq);
    entry_epoch = get_le64(e->bytes + ENTRY_OFF_EPOCH);
    if (entry_epoch > epoch)
        return seg_fail(why, why_size, rc,
                        "%s: entry %" PRIu64 " was written at epoch %" PRIu64
                        ", above the message's %" PRIu64,
                        type, e->seq, entry_epoch, epoch);
    return 0;
}

static int checkpoint_ok(const char *type, const struct wire_checkpoint *c, int rc, char *why,
                         size_t why_size)
{
    if (c->n_producers > WIRE_MAX_PRODUCERS || (c->n_producers && !c->producers))
        return seg_fail(why, why_size, rc, "%s: %" PRIu32 " producers (at most %u)", type, c->n_producers,
                        WIRE_MAX_PRODUCERS);
    for (uint32_t i = 0; i < c->n_producers; i++)
        if (!name_ok(c->producers[i].name, sizeof c->producers[i].name))
            return seg_fail(why, why_size, rc,
                            "%s: producer %" PRIu32 " has a bad name (want 1..%d bytes, no NUL)", type, i,
                            WIRE_NAME_MAX);
    if (c->size == 0)
        return seg_fail(why, why_size, rc, "%s: checkpoint size 0", type);
    if (!file_name_ok(c->name, sizeof c->name))
        return seg_fail(why, why_size, rc,
                        "%s: bad checkpoint file name (want 1..%u bytes, no '/' or NUL, not . or ..)", type,
                        WIRE_FILE_MAX);
    return 0;
}

/* Every rule of m beyond its msgpack shape; rc is what breaking one
 * returns (RK_ECORRUPT decoding, RK_EINVAL encoding). */
static int check_msg(const struct wire_msg *m, int rc, char *why, size_t why_size)
{
    const char *type = wire_type_name(m->type);
    int err;

    if (!type)
        return seg_fail(why, why_size, rc, "unknown message type %d", (int)m->type);
    if (m->epoch == 0)
        return seg_fail(why, why_size, rc, "%s: epoch 0 (epochs start at 1)", type);
    switch (m->type) {
    case WIRE_JOURNAL:
        return entry_ok(type, &m->u.journal, m->epoch, rc, why, why_size);
    case WIRE_CHECKPOINT:
        return checkpoint_ok(type, &m->u.checkpoint, rc, why, why_size);
    case WIRE_HEARTBEAT: {
        const struct wire_heartbeat *h = &m->u.heartbeat;
        if (h->applied_seq > h->journal_seq || h->digest_seq > h->applied_seq)
            return seg_fail(why, why_size, rc,
                            "%s: sequences out of order (want digest_seq %" PRIu64 " <= applied_seq %" PRIu64
                            " <= journal_seq %" PRIu64 ")",
                            type, h->digest_seq, h->applied_seq, h->journal_seq);
        if (h->applied_lsn > h->durable_lsn)
            return seg_fail(why, why_size, rc, "%s: applied_lsn %" PRIu64 " above durable_lsn %" PRIu64, type,
                            h->applied_lsn, h->durable_lsn);
        if (h->n_standbys > WIRE_MAX_STANDBYS || (h->n_standbys && !h->standbys))
            return seg_fail(why, why_size, rc, "%s: %" PRIu32 " standbys (at most %u)", type, h->n_standbys,
                            WIRE_MAX_STANDBYS);
        for (uint32_t i = 0; i < h->n_standbys; i++) {
            const struct wire_standby *s = &h->standbys[i];
            if (!name_ok(s->id, sizeof s->id))
                return seg_fail(why, why_size, rc,
                                "%s: standby %" PRIu32 " has a bad id (want 1..%d bytes, no NUL)", type, i,
                                WIRE_NAME_MAX);
            if (s->acked_seq > h->journal_seq || s->lag_entries != h->journal_seq - s->acked_seq)
                return seg_fail(why, why_size, rc,
                                "%s: standby %" PRIu32 " acked_seq %" PRIu64 " lag_entries %" PRIu64
                                " do not fit journal_seq %" PRIu64,
                                type, i, s->acked_seq, s->lag_entries, h->journal_seq);
        }
        return 0;
    }
    case WIRE_HELLO:
        if (!name_ok(m->u.hello.node_id, sizeof m->u.hello.node_id))
            return seg_fail(why, why_size, rc, "%s: bad node_id (want 1..%d bytes, no NUL)", type,
                            WIRE_NAME_MAX);
        if ((m->u.hello.last_seq == 0) != (m->u.hello.last_epoch == 0) ||
            (m->u.hello.last_seq == 0 && m->u.hello.has_last_xxh))
            return seg_fail(why, why_size, rc,
                            "%s: last_seq %" PRIu64 " last_epoch %" PRIu64
                            " (want both 0, with a nil checksum, or both >= 1)",
                            type, m->u.hello.last_seq, m->u.hello.last_epoch);
        return 0;
    case WIRE_FETCH:
        if (m->u.fetch.from_seq == 0 || m->u.fetch.from_seq > m->u.fetch.to_seq)
            return seg_fail(why, why_size, rc,
                            "%s: range %" PRIu64 "..%" PRIu64 " (want 1 <= from_seq <= to_seq)", type,
                            m->u.fetch.from_seq, m->u.fetch.to_seq);
        return 0;
    case WIRE_SNAPSHOT:
        if (!file_name_ok(m->u.snapshot.name, sizeof m->u.snapshot.name))
            return seg_fail(why, why_size, rc,
                            "%s: bad file name (want 1..%u bytes, no '/' or NUL, not . or ..)", type,
                            WIRE_FILE_MAX);
        if (m->u.snapshot.max_len == 0 || m->u.snapshot.max_len > WIRE_CHUNK_MAX)
            return seg_fail(why, why_size, rc, "%s: max_len %" PRIu32 " (want 1..%u)", type,
                            m->u.snapshot.max_len, WIRE_CHUNK_MAX);
        return 0;
    case WIRE_ACK:
        return 0;
    case WIRE_WELCOME: {
        const struct wire_welcome *w = &m->u.welcome;
        if (w->first_seq == 0 || w->last_seq == UINT64_MAX || w->first_seq > w->last_seq + 1)
            return seg_fail(why, why_size, rc,
                            "%s: first_seq %" PRIu64 " last_seq %" PRIu64
                            " (want 1 <= first_seq <= last_seq + 1)",
                            type, w->first_seq, w->last_seq);
        if (w->n_history == 0 || w->n_history > WIRE_MAX_HISTORY || !w->history)
            return seg_fail(why, why_size, rc, "%s: history of %" PRIu32 " elements (want 1..%u)", type,
                            w->n_history, WIRE_MAX_HISTORY);
        if ((err = history_check(w->history, w->n_history, why, why_size)) != 0) {
            char inner[200];
            snprintf(inner, sizeof inner, "%s", why);
            return seg_fail(why, why_size, rc, "%s: %s", type, inner);
        }
        if (w->history[w->n_history - 1].epoch > m->epoch)
            return seg_fail(why, why_size, rc,
                            "%s: history's newest epoch %" PRIu64 " above the message's %" PRIu64, type,
                            w->history[w->n_history - 1].epoch, m->epoch);
        if (!w->has_checkpoint)
            return 0;
        if ((err = checkpoint_ok(type, &w->checkpoint, rc, why, why_size)) != 0)
            return err;
        if (w->checkpoint.journal_seq > w->last_seq)
            return seg_fail(why, why_size, rc,
                            "%s: checkpoint at journal_seq %" PRIu64 " past last_seq %" PRIu64, type,
                            w->checkpoint.journal_seq, w->last_seq);
        return 0;
    }
    case WIRE_ENTRIES: {
        const struct wire_entries *es = &m->u.entries;
        size_t bytes = 0;
        if (es->n_entries > WIRE_MAX_ENTRIES || (es->n_entries && !es->entries))
            return seg_fail(why, why_size, rc, "%s: %" PRIu32 " entries (at most %u)", type, es->n_entries,
                            WIRE_MAX_ENTRIES);
        if (es->more && es->n_entries == 0)
            return seg_fail(why, why_size, rc, "%s: \"more\" with no entries", type);
        for (uint32_t i = 0; i < es->n_entries; i++) {
            if ((err = entry_ok(type, &es->entries[i], m->epoch, rc, why, why_size)) != 0)
                return err;
            if (i > 0 && es->entries[i].seq != es->entries[i - 1].seq + 1)
                return seg_fail(why, why_size, rc,
                                "%s: entry %" PRIu32 " has seq %" PRIu64 " after %" PRIu64
                                " (want consecutive)",
                                type, i, es->entries[i].seq, es->entries[i - 1].seq);
            if (bytes > WIRE_ENTRIES_TARGET)
                return seg_fail(why, why_size, rc, "%s: entries go on past %u bytes", type,
                                WIRE_ENTRIES_TARGET);
            bytes += es->entries[i].len;
        }
        return 0;
    }
    case WIRE_CHUNK: {
        const struct wire_chunk *c = &m->u.chunk;
        if (!file_name_ok(c->name, sizeof c->name))
            return seg_fail(why, why_size, rc,
                            "%s: bad file name (want 1..%u bytes, no '/' or NUL, not . or ..)", type,
                            WIRE_FILE_MAX);
        if (c->len > WIRE_CHUNK_MAX || (c->len && !c->data))
            return seg_fail(why, why_size, rc, "%s: %" PRIu32 " data bytes (at most %u)", type, c->len,
                            WIRE_CHUNK_MAX);
        if (c->offset > c->total_size || c->len > c->total_size - c->offset ||
            (c->len == 0 && c->offset != c->total_size))
            return seg_fail(why, why_size, rc,
                            "%s: %" PRIu32 " bytes at offset %" PRIu64 " do not fit a file of %" PRIu64
                            " bytes (empty only at its end)",
                            type, c->len, c->offset, c->total_size);
        return 0;
    }
    case WIRE_ERROR:
        if (m->u.error.code == 0 || m->u.error.code > UINT16_MAX)
            return seg_fail(why, why_size, rc, "%s: code %" PRIu32 " (want 1..65535)", type, m->u.error.code);
        if (strnlen(m->u.error.text, sizeof m->u.error.text) >= sizeof m->u.error.text)
            return seg_fail(why, why_size, rc, "%s: text longer than %u bytes", type, WIRE_TEXT_MAX);
        return 0;
    case WIRE_N_TYPES:
        break;
    }
    return seg_fail(why, why_size, rc, "unknown message type %d", (int)m->type);
}

/* ------------------------------------------------------------ encoding */

static int pack_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

static int pack_checkpoint(msgpack_packer *pk, const struct wire_checkpoint *c)
{
    int rc = msgpack_pack_uint64(pk, c->journal_seq);

    rc |= msgpack_pack_uint64(pk, c->lsn);
    rc |= msgpack_pack_array(pk, c->n_producers);
    for (uint32_t i = 0; i < c->n_producers; i++) {
        rc |= msgpack_pack_array(pk, 2);
        rc |= pack_str(pk, c->producers[i].name);
        rc |= msgpack_pack_uint64(pk, c->producers[i].height);
    }
    rc |= msgpack_pack_uint64(pk, c->size);
    rc |= msgpack_pack_uint64(pk, c->digest);
    rc |= pack_str(pk, c->name);
    rc |= msgpack_pack_uint64(pk, c->created_ns);
    return rc;
}

static int pack_body(msgpack_packer *pk, const struct wire_msg *m)
{
    int hello_monitor = m->type == WIRE_HELLO && (m->u.hello.monitor || m->u.hello.checks_prev),
        hello_checks = m->type == WIRE_HELLO && m->u.hello.checks_prev;
    int rc = msgpack_pack_array(pk, body_fields[m->type] + hello_monitor + hello_checks +
                                        (m->type == WIRE_WELCOME && m->u.welcome.has_hello_last_seq) +
                                        (m->type == WIRE_JOURNAL && m->u.journal.has_prev_xxh) +
                                        (m->type == WIRE_ENTRIES && m->u.entries.has_prev_xxh) +
                                        (m->type == WIRE_ACK && m->u.ack.has_apply ? 2u : 0u));

    rc |= msgpack_pack_uint32(pk, WIRE_VERSION);
    rc |= msgpack_pack_uint64(pk, m->epoch);
    switch (m->type) {
    case WIRE_JOURNAL:
        rc |= msgpack_pack_uint64(pk, m->u.journal.seq);
        rc |= msgpack_pack_bin_with_body(pk, m->u.journal.bytes, m->u.journal.len);
        if (m->u.journal.has_prev_xxh)
            rc |= msgpack_pack_uint64(pk, m->u.journal.prev_xxh);
        break;
    case WIRE_CHECKPOINT:
        rc |= pack_checkpoint(pk, &m->u.checkpoint);
        break;
    case WIRE_HEARTBEAT: {
        const struct wire_heartbeat *h = &m->u.heartbeat;
        rc |= msgpack_pack_uint64(pk, h->journal_seq);
        rc |= msgpack_pack_uint64(pk, h->applied_seq);
        rc |= msgpack_pack_uint64(pk, h->durable_lsn);
        rc |= msgpack_pack_uint64(pk, h->applied_lsn);
        rc |= msgpack_pack_uint64(pk, h->digest);
        rc |= msgpack_pack_uint64(pk, h->digest_seq);
        rc |= msgpack_pack_array(pk, h->n_standbys);
        for (uint32_t i = 0; i < h->n_standbys; i++) {
            rc |= msgpack_pack_array(pk, 4);
            rc |= pack_str(pk, h->standbys[i].id);
            rc |= msgpack_pack_uint64(pk, h->standbys[i].acked_seq);
            rc |= msgpack_pack_uint64(pk, h->standbys[i].lag_entries);
            rc |= msgpack_pack_uint64(pk, h->standbys[i].lag_ms);
        }
        rc |= msgpack_pack_uint64(pk, h->time_ns);
        break;
    }
    case WIRE_HELLO:
        rc |= pack_str(pk, m->u.hello.node_id);
        rc |= msgpack_pack_uint64(pk, m->u.hello.last_seq);
        rc |= msgpack_pack_uint64(pk, m->u.hello.last_epoch);
        rc |= m->u.hello.has_last_xxh ? msgpack_pack_uint64(pk, m->u.hello.last_xxh) : msgpack_pack_nil(pk);
        if (hello_monitor)
            rc |= m->u.hello.monitor ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        if (hello_checks)
            rc |= msgpack_pack_true(pk);
        break;
    case WIRE_FETCH:
        rc |= msgpack_pack_uint64(pk, m->u.fetch.from_seq);
        rc |= msgpack_pack_uint64(pk, m->u.fetch.to_seq);
        break;
    case WIRE_SNAPSHOT:
        rc |= pack_str(pk, m->u.snapshot.name);
        rc |= msgpack_pack_uint64(pk, m->u.snapshot.offset);
        rc |= msgpack_pack_uint32(pk, m->u.snapshot.max_len);
        break;
    case WIRE_ACK:
        rc |= msgpack_pack_uint64(pk, m->u.ack.durable_seq);
        if (m->u.ack.has_apply) {
            rc |= msgpack_pack_uint64(pk, m->u.ack.applied_seq);
            rc |= msgpack_pack_uint64(pk, m->u.ack.apply_lag_ms);
        }
        break;
    case WIRE_WELCOME:
        rc |= msgpack_pack_uint64(pk, m->u.welcome.first_seq);
        rc |= msgpack_pack_uint64(pk, m->u.welcome.last_seq);
        if (m->u.welcome.has_checkpoint) {
            rc |= msgpack_pack_array(pk, CHECKPOINT_FIELDS);
            rc |= pack_checkpoint(pk, &m->u.welcome.checkpoint);
        } else {
            rc |= msgpack_pack_nil(pk);
        }
        rc |= msgpack_pack_array(pk, m->u.welcome.n_history);
        for (uint32_t i = 0; i < m->u.welcome.n_history; i++) {
            const struct epoch_start *e = &m->u.welcome.history[i];
            rc |= msgpack_pack_array(pk, 3);
            rc |= msgpack_pack_uint64(pk, e->epoch);
            rc |= msgpack_pack_uint64(pk, e->first_seq);
            rc |= msgpack_pack_uint64(pk, e->first_lsn);
        }
        rc |= m->u.welcome.matched ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        if (m->u.welcome.has_hello_last_seq)
            rc |= msgpack_pack_uint64(pk, m->u.welcome.hello_last_seq);
        break;
    case WIRE_ENTRIES:
        rc |= msgpack_pack_array(pk, m->u.entries.n_entries);
        for (uint32_t i = 0; i < m->u.entries.n_entries; i++) {
            const struct wire_entry *e = &m->u.entries.entries[i];
            rc |= msgpack_pack_array(pk, 2);
            rc |= msgpack_pack_uint64(pk, e->seq);
            rc |= msgpack_pack_bin_with_body(pk, e->bytes, e->len);
        }
        rc |= m->u.entries.more ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        if (m->u.entries.has_prev_xxh)
            rc |= msgpack_pack_uint64(pk, m->u.entries.prev_xxh);
        break;
    case WIRE_CHUNK:
        rc |= pack_str(pk, m->u.chunk.name);
        rc |= msgpack_pack_uint64(pk, m->u.chunk.offset);
        rc |= msgpack_pack_uint64(pk, m->u.chunk.total_size);
        rc |= msgpack_pack_uint64(pk, m->u.chunk.file_xxh64);
        rc |= msgpack_pack_bin_with_body(pk, m->u.chunk.data, m->u.chunk.len);
        break;
    case WIRE_ERROR:
        rc |= msgpack_pack_uint32(pk, m->u.error.code);
        rc |= pack_str(pk, m->u.error.text);
        break;
    case WIRE_N_TYPES:
        break;
    }
    return rc;
}

int wire_encode(const struct wire_msg *m, uint8_t **body, size_t *body_len, char *why, size_t why_size)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rc;

    *body = NULL;
    *body_len = 0;
    rc = check_msg(m, RK_EINVAL, why, why_size);
    if (rc)
        return rc;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (pack_body(&pk, m) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return seg_fail(why, why_size, ENOMEM, "%s: out of memory packing the body", wire_type_name(m->type));
    }
    if (sb.size > WIRE_MSG_MAX) { /* unreachable while the limits in wire.h hold; kept as the last guard */
        msgpack_sbuffer_destroy(&sb);
        return seg_fail(why, why_size, RK_EINVAL, "%s: body of %zu bytes (at most %zu)",
                        wire_type_name(m->type), sb.size, (size_t)WIRE_MSG_MAX);
    }
    *body = (uint8_t *)sb.data;
    *body_len = sb.size;
    return 0;
}

/* ------------------------------------------------------------ decoding */

struct dec {
    struct mp_reader r;
    const char *type; /* for messages */
    char *why;
    size_t why_size;
};

static int bad(struct dec *d, const char *field, enum mp_status s)
{
    return seg_fail(d->why, d->why_size, RK_ECORRUPT, "%s: %s %s", d->type, field, mp_status_text(s));
}

static int rd_uint(struct dec *d, const char *field, uint64_t *v)
{
    enum mp_status s = mp_read_uint(&d->r, v);

    return s == MP_OK ? 0 : bad(d, field, s);
}

static int rd_u32(struct dec *d, const char *field, uint32_t *v)
{
    uint64_t u;
    int rc = rd_uint(d, field, &u);

    if (rc)
        return rc;
    if (u > UINT32_MAX)
        return seg_fail(d->why, d->why_size, RK_ECORRUPT, "%s: %s %" PRIu64 " is out of range", d->type,
                        field, u);
    *v = (uint32_t)u;
    return 0;
}

/* A str of 0..max bytes without NUL into buf (max + 1 bytes). */
static int rd_str(struct dec *d, const char *field, char *buf, uint32_t max)
{
    const uint8_t *s;
    uint32_t len;
    enum mp_status st = mp_read_raw(&d->r, 1, &s, &len);

    if (st != MP_OK)
        return bad(d, field, st);
    if (len > max || memchr(s, '\0', len))
        return seg_fail(d->why, d->why_size, RK_ECORRUPT,
                        "%s: %s of %" PRIu32 " bytes (want at most %" PRIu32 ", no NUL)", d->type, field, len,
                        max);
    memcpy(buf, s, len);
    buf[len] = '\0';
    return 0;
}

static int rd_bin(struct dec *d, const char *field, const uint8_t **data, uint32_t *len)
{
    enum mp_status s = mp_read_raw(&d->r, 0, data, len);

    return s == MP_OK ? 0 : bad(d, field, s);
}

/* An array of any count up to max (bounded by the bytes left too). */
static int rd_list(struct dec *d, const char *field, uint32_t max, uint32_t *n)
{
    enum mp_status s = mp_read_container(&d->r, 0, n);

    if (s != MP_OK)
        return bad(d, field, s);
    if (*n > max)
        return seg_fail(d->why, d->why_size, RK_ECORRUPT,
                        "%s: %s holds %" PRIu32 " elements (at most %" PRIu32 ")", d->type, field, *n, max);
    return 0;
}

/* A record: an array of at least want elements; *extra gets the rest. */
static int rd_record(struct dec *d, const char *field, uint32_t want, uint32_t *extra)
{
    uint32_t n;
    enum mp_status s = mp_read_container(&d->r, 0, &n);

    if (s != MP_OK)
        return bad(d, field, s);
    if (n < want)
        return seg_fail(d->why, d->why_size, RK_ECORRUPT,
                        "%s: %s has %" PRIu32 " elements (want %" PRIu32 ")", d->type, field, n, want);
    *extra = n - want;
    return 0;
}

/* Skips the elements a later revision added to a record or the body. */
static int skip_extra(struct dec *d, const char *field, uint32_t extra)
{
    for (uint32_t i = 0; i < extra; i++) {
        enum mp_status s = mp_skip(&d->r);
        if (s != MP_OK)
            return bad(d, field, s);
    }
    return 0;
}

static int rd_checkpoint(struct dec *d, struct wire_checkpoint *c)
{
    uint32_t n, extra;
    int rc;

    if ((rc = rd_uint(d, "journal_seq", &c->journal_seq)) || (rc = rd_uint(d, "lsn", &c->lsn)) ||
        (rc = rd_list(d, "producers", WIRE_MAX_PRODUCERS, &n)))
        return rc;
    /* n <= WIRE_MAX_PRODUCERS and <= the bytes left */
    c->producers = calloc(n ? n : 1, sizeof *c->producers);
    if (!c->producers)
        return seg_fail(d->why, d->why_size, ENOMEM, "%s: out of memory for %" PRIu32 " producers", d->type,
                        n);
    c->n_producers = n;
    for (uint32_t i = 0; i < n; i++) {
        struct wire_producer *p = &c->producers[i];
        if ((rc = rd_record(d, "producer", 2, &extra)) ||
            (rc = rd_str(d, "producer name", p->name, WIRE_NAME_MAX)) ||
            (rc = rd_uint(d, "producer height", &p->height)) || (rc = skip_extra(d, "producer", extra)))
            return rc;
    }
    if ((rc = rd_uint(d, "size", &c->size)) || (rc = rd_uint(d, "digest", &c->digest)) ||
        (rc = rd_str(d, "file name", c->name, WIRE_FILE_MAX)) ||
        (rc = rd_uint(d, "created_ns", &c->created_ns)))
        return rc;
    return 0;
}

static int rd_heartbeat(struct dec *d, struct wire_heartbeat *h)
{
    uint32_t n, extra;
    int rc;

    if ((rc = rd_uint(d, "journal_seq", &h->journal_seq)) ||
        (rc = rd_uint(d, "applied_seq", &h->applied_seq)) ||
        (rc = rd_uint(d, "durable_lsn", &h->durable_lsn)) ||
        (rc = rd_uint(d, "applied_lsn", &h->applied_lsn)) || (rc = rd_uint(d, "digest", &h->digest)) ||
        (rc = rd_uint(d, "digest_seq", &h->digest_seq)) ||
        (rc = rd_list(d, "standbys", WIRE_MAX_STANDBYS, &n)))
        return rc;
    h->standbys = calloc(n ? n : 1, sizeof *h->standbys);
    if (!h->standbys)
        return seg_fail(d->why, d->why_size, ENOMEM, "%s: out of memory for %" PRIu32 " standbys", d->type,
                        n);
    h->n_standbys = n;
    for (uint32_t i = 0; i < n; i++) {
        struct wire_standby *s = &h->standbys[i];
        if ((rc = rd_record(d, "standby", 4, &extra)) ||
            (rc = rd_str(d, "standby id", s->id, WIRE_NAME_MAX)) ||
            (rc = rd_uint(d, "standby acked_seq", &s->acked_seq)) ||
            (rc = rd_uint(d, "standby lag_entries", &s->lag_entries)) ||
            (rc = rd_uint(d, "standby lag_ms", &s->lag_ms)) || (rc = skip_extra(d, "standby", extra)))
            return rc;
    }
    return rd_uint(d, "time_ns", &h->time_ns);
}

static int rd_entries(struct dec *d, struct wire_entries *es)
{
    uint32_t n, extra, len;
    enum mp_status s;
    int rc;

    if ((rc = rd_list(d, "entries", WIRE_MAX_ENTRIES, &n)))
        return rc;
    es->entries = calloc(n ? n : 1, sizeof *es->entries);
    if (!es->entries)
        return seg_fail(d->why, d->why_size, ENOMEM, "%s: out of memory for %" PRIu32 " entries", d->type, n);
    es->n_entries = n;
    for (uint32_t i = 0; i < n; i++) {
        struct wire_entry *e = &es->entries[i];
        if ((rc = rd_record(d, "entry", 2, &extra)) || (rc = rd_uint(d, "entry seq", &e->seq)) ||
            (rc = rd_bin(d, "entry bytes", &e->bytes, &len)) || (rc = skip_extra(d, "entry", extra)))
            return rc;
        e->len = len;
    }
    s = mp_read_bool(&d->r, &es->more);
    return s == MP_OK ? 0 : bad(d, "more", s);
}

static int rd_history(struct dec *d, struct wire_welcome *w)
{
    uint32_t n, extra;
    int rc;

    if ((rc = rd_list(d, "history", WIRE_MAX_HISTORY, &n)))
        return rc;
    w->history = calloc(n ? n : 1, sizeof *w->history); /* n <= the bytes left */
    if (!w->history)
        return seg_fail(d->why, d->why_size, ENOMEM, "%s: out of memory for %" PRIu32 " epochs", d->type, n);
    w->n_history = n;
    for (uint32_t i = 0; i < n; i++) {
        struct epoch_start *e = &w->history[i];
        if ((rc = rd_record(d, "history element", 3, &extra)) || (rc = rd_uint(d, "epoch", &e->epoch)) ||
            (rc = rd_uint(d, "first_seq", &e->first_seq)) || (rc = rd_uint(d, "first_lsn", &e->first_lsn)) ||
            (rc = skip_extra(d, "history element", extra)))
            return rc;
    }
    return 0;
}

static int rd_hello(struct dec *d, struct wire_hello *h)
{
    enum mp_status s;
    int rc, is_nil;

    if ((rc = rd_str(d, "node_id", h->node_id, WIRE_NAME_MAX)) ||
        (rc = rd_uint(d, "last_seq", &h->last_seq)) || (rc = rd_uint(d, "last_epoch", &h->last_epoch)))
        return rc;
    if ((s = mp_read_nil(&d->r, &is_nil)) != MP_OK)
        return bad(d, "last_xxh", s);
    h->has_last_xxh = !is_nil;
    return is_nil ? 0 : rd_uint(d, "last_xxh", &h->last_xxh);
}

static int rd_welcome(struct dec *d, struct wire_welcome *w)
{
    uint32_t extra;
    enum mp_status s;
    int rc, is_nil;

    if ((rc = rd_uint(d, "first_seq", &w->first_seq)) || (rc = rd_uint(d, "last_seq", &w->last_seq)))
        return rc;
    if ((s = mp_read_nil(&d->r, &is_nil)) != MP_OK)
        return bad(d, "checkpoint", s);
    if (!is_nil) {
        w->has_checkpoint = 1;
        if ((rc = rd_record(d, "checkpoint", CHECKPOINT_FIELDS, &extra)) ||
            (rc = rd_checkpoint(d, &w->checkpoint)) || (rc = skip_extra(d, "checkpoint", extra)))
            return rc;
    }
    if ((rc = rd_history(d, w)))
        return rc;
    s = mp_read_bool(&d->r, &w->matched);
    return s == MP_OK ? 0 : bad(d, "matched", s);
}

static int rd_fields(struct dec *d, struct wire_msg *m)
{
    uint32_t len;
    int rc;

    switch (m->type) {
    case WIRE_JOURNAL:
        if ((rc = rd_uint(d, "seq", &m->u.journal.seq)) ||
            (rc = rd_bin(d, "entry", &m->u.journal.bytes, &len)))
            return rc;
        m->u.journal.len = len;
        return 0;
    case WIRE_CHECKPOINT:
        return rd_checkpoint(d, &m->u.checkpoint);
    case WIRE_HEARTBEAT:
        return rd_heartbeat(d, &m->u.heartbeat);
    case WIRE_HELLO:
        return rd_hello(d, &m->u.hello);
    case WIRE_FETCH:
        if ((rc = rd_uint(d, "from_seq", &m->u.fetch.from_seq)))
            return rc;
        return rd_uint(d, "to_seq", &m->u.fetch.to_seq);
    case WIRE_SNAPSHOT:
        if ((rc = rd_str(d, "file name", m->u.snapshot.name, WIRE_FILE_MAX)) ||
            (rc = rd_uint(d, "offset", &m->u.snapshot.offset)))
            return rc;
        return rd_u32(d, "max_len", &m->u.snapshot.max_len);
    case WIRE_ACK:
        return rd_uint(d, "durable_seq", &m->u.ack.durable_seq);
    case WIRE_WELCOME:
        return rd_welcome(d, &m->u.welcome);
    case WIRE_ENTRIES:
        return rd_entries(d, &m->u.entries);
    case WIRE_CHUNK:
        if ((rc = rd_str(d, "file name", m->u.chunk.name, WIRE_FILE_MAX)) ||
            (rc = rd_uint(d, "offset", &m->u.chunk.offset)) ||
            (rc = rd_uint(d, "total_size", &m->u.chunk.total_size)) ||
            (rc = rd_uint(d, "file_xxh64", &m->u.chunk.file_xxh64)))
            return rc;
        return rd_bin(d, "data", &m->u.chunk.data, &m->u.chunk.len);
    case WIRE_ERROR:
        if ((rc = rd_u32(d, "code", &m->u.error.code)))
            return rc;
        return rd_str(d, "text", m->u.error.text, WIRE_TEXT_MAX);
    case WIRE_N_TYPES:
        break;
    }
    return seg_fail(d->why, d->why_size, RK_ECORRUPT, "unknown message type %d", (int)m->type);
}

int wire_decode(const void *name, size_t name_len, const uint8_t *body, size_t body_len, struct wire_msg *m,
                char *why, size_t why_size)
{
    struct dec d = {{body, body_len}, "message", why, why_size};
    uint32_t n, extra;
    uint64_t version;
    enum mp_status s;
    int rc;

    memset(m, 0, sizeof *m);
    m->type = WIRE_N_TYPES;
    for (int t = 0; t < WIRE_N_TYPES; t++)
        if (name_len == strlen(type_names[t]) && memcmp(name, type_names[t], name_len) == 0)
            m->type = (enum wire_type)t;
    if (m->type == WIRE_N_TYPES)
        return seg_fail(why, why_size, RK_ECORRUPT, "unknown message name (first frame of %zu bytes)",
                        name_len);
    d.type = type_names[m->type];
    if (body_len > WIRE_MSG_MAX)
        return seg_fail(why, why_size, RK_ECORRUPT, "%s: body of %zu bytes (at most %zu)", d.type, body_len,
                        (size_t)WIRE_MSG_MAX);
    s = mp_read_container(&d.r, 0, &n);
    if (s != MP_OK)
        return bad(&d, "body (an array)", s);
    if (n < 2)
        return seg_fail(why, why_size, RK_ECORRUPT,
                        "%s: body has %" PRIu32 " elements (want version, epoch, ...)", d.type, n);
    if ((rc = rd_uint(&d, "version", &version)))
        return rc;
    if (version != WIRE_VERSION)
        return seg_fail(why, why_size, RK_EVERSION, "%s: protocol version %" PRIu64 " (this node speaks %u)",
                        d.type, version, WIRE_VERSION);
    if ((rc = rd_uint(&d, "epoch", &m->epoch)))
        return rc;
    if (n < body_fields[m->type]) {
        rc = seg_fail(why, why_size, RK_ECORRUPT, "%s: body has %" PRIu32 " elements (want %" PRIu32 ")",
                      d.type, n, body_fields[m->type]);
        goto fail;
    }
    extra = n - body_fields[m->type];
    if ((rc = rd_fields(&d, m)))
        goto fail;
    if (m->type == WIRE_HELLO && extra) {
        /* the element appended in version 2 (issue 14): a monitor's HELLO */
        if ((s = mp_read_bool(&d.r, &m->u.hello.monitor)) != MP_OK) {
            rc = bad(&d, "monitor", s);
            goto fail;
        }
        extra--;
        /* appended within version 2 (issue 13.6): it checks prev_xxh */
        if (extra && (s = mp_read_bool(&d.r, &m->u.hello.checks_prev)) != MP_OK) {
            rc = bad(&d, "checks_prev", s);
            goto fail;
        }
        if (extra)
            extra--;
    }
    if (m->type == WIRE_ACK && extra) {
        /* appended within version 2 (issue 13.7), the two together: the
         * standby's apply, which a primary bounds in time as its own */
        if (extra < 2) {
            rc = seg_fail(why, why_size, RK_ECORRUPT, "%s: applied_seq without apply_lag_ms", d.type);
            goto fail;
        }
        if ((rc = rd_uint(&d, "applied_seq", &m->u.ack.applied_seq)) ||
            (rc = rd_uint(&d, "apply_lag_ms", &m->u.ack.apply_lag_ms)))
            goto fail;
        m->u.ack.has_apply = 1;
        extra -= 2;
    }
    if (m->type == WIRE_WELCOME && extra) {
        /* appended within version 2: the HELLO it answers */
        if ((rc = rd_uint(&d, "hello_last_seq", &m->u.welcome.hello_last_seq)))
            goto fail;
        m->u.welcome.has_hello_last_seq = 1;
        extra--;
    }
    if ((m->type == WIRE_JOURNAL || m->type == WIRE_ENTRIES) && extra) {
        /* appended within version 2 (issue 13.6): the XXH64 of the entry
         * the (first) entry follows, with which a standby finds an entry
         * of its own that the primary no longer holds (published before
         * its fsync, then lost in a power cut) */
        int *has = m->type == WIRE_JOURNAL ? &m->u.journal.has_prev_xxh : &m->u.entries.has_prev_xxh;
        if ((rc = rd_uint(&d, "prev_xxh",
                          m->type == WIRE_JOURNAL ? &m->u.journal.prev_xxh : &m->u.entries.prev_xxh)))
            goto fail;
        *has = 1;
        extra--;
    }
    if ((rc = skip_extra(&d, "body", extra)))
        goto fail;
    if (d.r.left != 0) {
        rc = seg_fail(why, why_size, RK_ECORRUPT, "%s: %zu bytes after the body", d.type, d.r.left);
        goto fail;
    }
    rc = check_msg(m, RK_ECORRUPT, why, why_size);
fail:
    if (rc)
        wire_msg_free(m);
    return rc;
}
