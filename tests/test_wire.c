/* test_wire.c -- the replication wire codec (replicator/wire.c): every
 * message type round trips byte for byte and field for field, every
 * truncation is refused, every single-byte corruption is refused or
 * decodes into a message that keeps every rule, lying 32-bit counts and
 * lengths are refused, wrong types, versions, epochs and oversized fields
 * are refused, and the examples printed in docs/PROTOCOL.md are the bytes
 * the encoder makes.
 *
 * Design: every decode reads from a heap block of exactly the bytes under
 * test, so a read past the end is an ASan failure.  Bodies that break a
 * rule the encoder refuses to make are packed here with msgpack-c
 * directly.  Under ASan any allocation above 256 MiB fails the test, so a
 * decoder that allocated by a header's claim would crash.
 *
 * `test_wire --print-examples` prints the documentation examples as hex.
 *
 * Threads: one.
 */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <xxhash.h>

#include "shm/ring.h"
#include "sample_entry.h"
#include "persist/checkpoint.h"
#include "persist/store.h"
#include "replicator/wire.h"

#include "asan_limits.h" /* any allocation above 256 MiB fails the test */

/* ------------------------------------------------------------ journal entries */

/* A real journal entry (sample_entry.h); malloc'd. */
static uint8_t *make_entry(uint64_t seq, uint64_t epoch, unsigned n_puts, size_t *len)
{
    uint8_t *out = sample_entry(seq, epoch, n_puts, len);

    ck_assert_ptr_nonnull(out);
    return out;
}

/* ------------------------------------------------------------ sample messages */

static struct wire_producer sample_producers[] = {{"matcher-1", 20000}, {"risk", 7}};
static struct wire_standby sample_standbys[] = {{"standby-a", 1041, 1, 2}, {"standby-b", 1000, 42, 180}};
static uint8_t *sample_entry_bytes[3];
static size_t sample_entry_len[3];
static struct wire_entry sample_entries[3];
static uint8_t sample_chunk[300];

static void samples_setup(void)
{
    for (int i = 0; i < 3; i++) {
        sample_entry_bytes[i] = make_entry(7 + (uint64_t)i, 2, 3 + (unsigned)i, &sample_entry_len[i]);
        sample_entries[i] = (struct wire_entry){
            .seq = 7 + (uint64_t)i, .bytes = sample_entry_bytes[i], .len = sample_entry_len[i]};
    }
    for (size_t i = 0; i < sizeof sample_chunk; i++)
        sample_chunk[i] = (uint8_t)(i * 7 + 3);
}

static void samples_teardown(void)
{
    for (int i = 0; i < 3; i++)
        free(sample_entry_bytes[i]);
}

static struct wire_checkpoint sample_checkpoint(void)
{
    struct wire_checkpoint c = {.journal_seq = 1000,
                                .lsn = 5242880,
                                .n_producers = 2,
                                .producers = sample_producers,
                                .size = 1843200,
                                .digest = 0x0123456789abcdefull,
                                .name = "00000000000000001000.rkcp",
                                .created_ns = 1700000000000000000ull};
    return c;
}

/* The documentation's examples (docs/PROTOCOL.md). */
static struct wire_msg example_checkpoint(void)
{
    static struct wire_producer producers[] = {{"matcher-1", 20000}};
    struct wire_msg m = {.type = WIRE_CHECKPOINT, .epoch = 3};

    m.u.checkpoint = sample_checkpoint();
    m.u.checkpoint.n_producers = 1;
    m.u.checkpoint.producers = producers;
    return m;
}

static struct wire_msg example_heartbeat(void)
{
    static struct wire_standby standbys[] = {{"standby-a", 1041, 1, 2}};
    struct wire_msg m = {.type = WIRE_HEARTBEAT, .epoch = 3};

    m.u.heartbeat = (struct wire_heartbeat){.journal_seq = 1042,
                                            .applied_seq = 1040,
                                            .durable_lsn = 5439488,
                                            .applied_lsn = 5431296,
                                            .digest = 0x9e3779b97f4a7c15ull,
                                            .digest_seq = 1040,
                                            .n_standbys = 1,
                                            .standbys = standbys,
                                            .time_ns = 1700000000123456789ull};
    return m;
}

/* WELCOME's epoch history in the samples (the first element alone, or both). */
static const struct epoch_start sample_history[2] = {{1, 1, 8}, {2, 900, 1u << 30}};

/* Sample i of type t (i = 0, 1: two shapes of each). */
static struct wire_msg sample(enum wire_type t, int i)
{
    struct wire_msg m = {.type = t, .epoch = i ? 2 : UINT64_MAX - 1};

    switch (t) {
    case WIRE_JOURNAL:
        m.u.journal = sample_entries[i];
        m.u.journal.has_prev_xxh = !i; /* the element appended within version 2, or absent */
        m.u.journal.prev_xxh = i ? 0 : 0xfedcba9876543210ull;
        break;
    case WIRE_CHECKPOINT:
        m.u.checkpoint = sample_checkpoint();
        m.u.checkpoint.n_producers = i ? 0 : 2;
        break;
    case WIRE_HEARTBEAT:
        m = example_heartbeat();
        m.u.heartbeat.n_standbys = i ? 0 : 2;
        m.u.heartbeat.standbys = sample_standbys;
        m.u.heartbeat.standbys[1].lag_entries =
            m.u.heartbeat.journal_seq - m.u.heartbeat.standbys[1].acked_seq;
        break;
    case WIRE_HELLO:
        snprintf(m.u.hello.node_id, sizeof m.u.hello.node_id, "%s",
                 i ? "s" : "standby-with-a-name-of-47-bytes-exactly-123456");
        m.u.hello.last_seq = i ? 0 : 123456789012ull;
        m.u.hello.last_epoch = i ? 0 : 7;
        m.u.hello.has_last_xxh = !i;
        m.u.hello.last_xxh = i ? 0 : 0x9e3779b97f4a7c15ull;
        m.u.hello.checks_prev = !i; /* the 8th element (and the 7th, false), or neither */
        break;
    case WIRE_FETCH:
        m.u.fetch = (struct wire_fetch){i ? 1 : 70000, i ? 1 : UINT64_MAX};
        break;
    case WIRE_SNAPSHOT:
        snprintf(m.u.snapshot.name, sizeof m.u.snapshot.name, "%s", "00000000000000001000.rkcp");
        m.u.snapshot.offset = i ? 0 : 1u << 20;
        m.u.snapshot.max_len = i ? 1 : WIRE_CHUNK_MAX;
        break;
    case WIRE_ACK:
        m.u.ack.durable_seq = i ? 0 : 1u << 31;
        /* with its apply (issue 13.7), or as a standby before it sends them */
        m.u.ack.has_apply = !i;
        m.u.ack.applied_seq = i ? 0 : (1u << 31) - 70000;
        m.u.ack.apply_lag_ms = i ? 0 : UINT64_MAX;
        break;
    case WIRE_WELCOME:
        m.u.welcome.first_seq = i ? 1 : 900;
        m.u.welcome.last_seq = i ? 0 : 1042;
        m.u.welcome.has_checkpoint = !i;
        if (!i)
            m.u.welcome.checkpoint = sample_checkpoint();
        m.u.welcome.n_history = i ? 1 : 2;
        m.u.welcome.history = (struct epoch_start *)sample_history;
        m.u.welcome.matched = !i;
        m.u.welcome.has_hello_last_seq = !i; /* the element appended within version 2, or absent */
        m.u.welcome.hello_last_seq = i ? 0 : 1041;
        break;
    case WIRE_ENTRIES:
        m.u.entries.n_entries = i ? 0 : 3;
        m.u.entries.entries = sample_entries;
        m.u.entries.more = !i;
        m.u.entries.has_prev_xxh = !i;
        m.u.entries.prev_xxh = i ? 0 : 0x0123456789abcdefull;
        break;
    case WIRE_CHUNK:
        snprintf(m.u.chunk.name, sizeof m.u.chunk.name, "%s", "00000000000000001000.rkcp");
        m.u.chunk.total_size = 1843200;
        m.u.chunk.offset = i ? 1843200 : 4096;
        m.u.chunk.file_xxh64 = 0xfedcba9876543210ull;
        m.u.chunk.data = i ? NULL : sample_chunk;
        m.u.chunk.len = i ? 0 : sizeof sample_chunk;
        break;
    case WIRE_ERROR:
        m.u.error.code = i ? 65535 : WIRE_ERR_TRIMMED;
        snprintf(m.u.error.text, sizeof m.u.error.text, "%s", i ? "" : "entries 1..899 were trimmed");
        break;
    case WIRE_N_TYPES:
        break;
    }
    return m;
}

/* ------------------------------------------------------------ comparing */

static void assert_checkpoint_eq(const struct wire_checkpoint *a, const struct wire_checkpoint *b)
{
    ck_assert_uint_eq(a->journal_seq, b->journal_seq);
    ck_assert_uint_eq(a->lsn, b->lsn);
    ck_assert_uint_eq(a->n_producers, b->n_producers);
    for (uint32_t i = 0; i < a->n_producers; i++) {
        ck_assert_str_eq(a->producers[i].name, b->producers[i].name);
        ck_assert_uint_eq(a->producers[i].height, b->producers[i].height);
    }
    ck_assert_uint_eq(a->size, b->size);
    ck_assert_uint_eq(a->digest, b->digest);
    ck_assert_str_eq(a->name, b->name);
    ck_assert_uint_eq(a->created_ns, b->created_ns);
}

static void assert_entry_eq(const struct wire_entry *a, const struct wire_entry *b)
{
    ck_assert_uint_eq(a->seq, b->seq);
    ck_assert_uint_eq(a->len, b->len);
    ck_assert_int_eq(memcmp(a->bytes, b->bytes, a->len), 0);
}

static void assert_msg_eq(const struct wire_msg *a, const struct wire_msg *b)
{
    ck_assert_int_eq(a->type, b->type);
    ck_assert_uint_eq(a->epoch, b->epoch);
    switch (a->type) {
    case WIRE_JOURNAL:
        assert_entry_eq(&a->u.journal, &b->u.journal);
        ck_assert_int_eq(a->u.journal.has_prev_xxh, b->u.journal.has_prev_xxh);
        ck_assert_uint_eq(a->u.journal.prev_xxh, b->u.journal.prev_xxh);
        break;
    case WIRE_CHECKPOINT:
        assert_checkpoint_eq(&a->u.checkpoint, &b->u.checkpoint);
        break;
    case WIRE_HEARTBEAT: {
        const struct wire_heartbeat *x = &a->u.heartbeat, *y = &b->u.heartbeat;
        ck_assert_uint_eq(x->journal_seq, y->journal_seq);
        ck_assert_uint_eq(x->applied_seq, y->applied_seq);
        ck_assert_uint_eq(x->durable_lsn, y->durable_lsn);
        ck_assert_uint_eq(x->applied_lsn, y->applied_lsn);
        ck_assert_uint_eq(x->digest, y->digest);
        ck_assert_uint_eq(x->digest_seq, y->digest_seq);
        ck_assert_uint_eq(x->n_standbys, y->n_standbys);
        for (uint32_t i = 0; i < x->n_standbys; i++) {
            ck_assert_str_eq(x->standbys[i].id, y->standbys[i].id);
            ck_assert_uint_eq(x->standbys[i].acked_seq, y->standbys[i].acked_seq);
            ck_assert_uint_eq(x->standbys[i].lag_entries, y->standbys[i].lag_entries);
            ck_assert_uint_eq(x->standbys[i].lag_ms, y->standbys[i].lag_ms);
        }
        ck_assert_uint_eq(x->time_ns, y->time_ns);
        break;
    }
    case WIRE_HELLO:
        ck_assert_str_eq(a->u.hello.node_id, b->u.hello.node_id);
        ck_assert_uint_eq(a->u.hello.last_seq, b->u.hello.last_seq);
        ck_assert_uint_eq(a->u.hello.last_epoch, b->u.hello.last_epoch);
        ck_assert_int_eq(a->u.hello.has_last_xxh, b->u.hello.has_last_xxh);
        ck_assert_uint_eq(a->u.hello.last_xxh, b->u.hello.last_xxh);
        ck_assert_int_eq(a->u.hello.monitor, b->u.hello.monitor);
        ck_assert_int_eq(a->u.hello.checks_prev, b->u.hello.checks_prev);
        break;
    case WIRE_FETCH:
        ck_assert_uint_eq(a->u.fetch.from_seq, b->u.fetch.from_seq);
        ck_assert_uint_eq(a->u.fetch.to_seq, b->u.fetch.to_seq);
        break;
    case WIRE_SNAPSHOT:
        ck_assert_str_eq(a->u.snapshot.name, b->u.snapshot.name);
        ck_assert_uint_eq(a->u.snapshot.offset, b->u.snapshot.offset);
        ck_assert_uint_eq(a->u.snapshot.max_len, b->u.snapshot.max_len);
        break;
    case WIRE_ACK:
        ck_assert_uint_eq(a->u.ack.durable_seq, b->u.ack.durable_seq);
        ck_assert_int_eq(a->u.ack.has_apply, b->u.ack.has_apply);
        ck_assert_uint_eq(a->u.ack.applied_seq, b->u.ack.applied_seq);
        ck_assert_uint_eq(a->u.ack.apply_lag_ms, b->u.ack.apply_lag_ms);
        break;
    case WIRE_WELCOME:
        ck_assert_uint_eq(a->u.welcome.first_seq, b->u.welcome.first_seq);
        ck_assert_uint_eq(a->u.welcome.last_seq, b->u.welcome.last_seq);
        ck_assert_int_eq(a->u.welcome.has_checkpoint, b->u.welcome.has_checkpoint);
        if (a->u.welcome.has_checkpoint)
            assert_checkpoint_eq(&a->u.welcome.checkpoint, &b->u.welcome.checkpoint);
        ck_assert_uint_eq(a->u.welcome.n_history, b->u.welcome.n_history);
        ck_assert(memcmp(a->u.welcome.history, b->u.welcome.history,
                         a->u.welcome.n_history * sizeof *a->u.welcome.history) == 0);
        ck_assert_int_eq(a->u.welcome.matched, b->u.welcome.matched);
        ck_assert_int_eq(a->u.welcome.has_hello_last_seq, b->u.welcome.has_hello_last_seq);
        ck_assert_uint_eq(a->u.welcome.hello_last_seq, b->u.welcome.hello_last_seq);
        break;
    case WIRE_ENTRIES:
        ck_assert_uint_eq(a->u.entries.n_entries, b->u.entries.n_entries);
        ck_assert_int_eq(a->u.entries.more, b->u.entries.more);
        ck_assert_int_eq(a->u.entries.has_prev_xxh, b->u.entries.has_prev_xxh);
        ck_assert_uint_eq(a->u.entries.prev_xxh, b->u.entries.prev_xxh);
        for (uint32_t i = 0; i < a->u.entries.n_entries; i++)
            assert_entry_eq(&a->u.entries.entries[i], &b->u.entries.entries[i]);
        break;
    case WIRE_CHUNK:
        ck_assert_str_eq(a->u.chunk.name, b->u.chunk.name);
        ck_assert_uint_eq(a->u.chunk.offset, b->u.chunk.offset);
        ck_assert_uint_eq(a->u.chunk.total_size, b->u.chunk.total_size);
        ck_assert_uint_eq(a->u.chunk.file_xxh64, b->u.chunk.file_xxh64);
        ck_assert_uint_eq(a->u.chunk.len, b->u.chunk.len);
        if (a->u.chunk.len)
            ck_assert_int_eq(memcmp(a->u.chunk.data, b->u.chunk.data, a->u.chunk.len), 0);
        break;
    case WIRE_ERROR:
        ck_assert_uint_eq(a->u.error.code, b->u.error.code);
        ck_assert_str_eq(a->u.error.text, b->u.error.text);
        break;
    case WIRE_N_TYPES:
        ck_abort_msg("no such type");
    }
}

/* ------------------------------------------------------------ helpers */

static uint8_t *encode_ok(const struct wire_msg *m, size_t *len)
{
    uint8_t *body = NULL;
    char why[256] = "";
    int rc = wire_encode(m, &body, len, why, sizeof why);

    ck_assert_msg(rc == 0, "encode %s: %d %s", wire_type_name(m->type), rc, why);
    ck_assert_ptr_nonnull(body);
    return body;
}

/* Decodes bytes[0..len) of type t from a heap block of exactly len bytes.
 * why gets the reason; *copy the block (freed by the caller after m). */
static int decode_copy(enum wire_type t, const uint8_t *bytes, size_t len, struct wire_msg *m, uint8_t **copy,
                       char *why, size_t why_size)
{
    const char *name = wire_type_name(t);

    *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(*copy);
    if (len)
        memcpy(*copy, bytes, len);
    why[0] = '\0';
    return wire_decode(name, strlen(name), *copy, len, m, why, why_size);
}

/* Expects bytes of type t to be refused with rc, the reason containing
 * reason (if not NULL). */
static void expect_refused(enum wire_type t, const uint8_t *bytes, size_t len, int rc, const char *reason)
{
    struct wire_msg m;
    uint8_t *copy;
    char why[256];
    int got = decode_copy(t, bytes, len, &m, &copy, why, sizeof why);

    ck_assert_msg(got == rc, "%s: got %d (%s), want %d", wire_type_name(t), got, why, rc);
    ck_assert_msg(why[0] != '\0', "%s: refused without a reason", wire_type_name(t));
    if (reason)
        ck_assert_msg(strstr(why, reason), "%s: reason \"%s\" lacks \"%s\"", wire_type_name(t), why, reason);
    free(copy);
}

/* A packer for hand-made bodies. */
struct raw {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void raw_init(struct raw *r)
{
    msgpack_sbuffer_init(&r->sb);
    msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
}

static void raw_bytes(struct raw *r, const void *p, size_t n)
{
    ck_assert_int_eq(msgpack_sbuffer_write(&r->sb, p, n), 0);
}

static void raw_str(struct raw *r, const char *s)
{
    msgpack_pack_str_with_body(&r->pk, s, strlen(s));
}

/* Every sample of every type. */
#define FOR_EACH_SAMPLE(t, i)                                                                                \
    for (int t = 0; t < WIRE_N_TYPES; t++)                                                                   \
        for (int i = 0; i < 2; i++)

/* ------------------------------------------------------------ round trips */

START_TEST(test_round_trip_every_type)
{
    FOR_EACH_SAMPLE(t, i)
    {
        struct wire_msg in = sample((enum wire_type)t, i), out;
        size_t len, len2;
        uint8_t *body = encode_ok(&in, &len), *copy, *again;
        char why[256];
        int rc = decode_copy((enum wire_type)t, body, len, &out, &copy, why, sizeof why);

        ck_assert_msg(rc == 0, "decode %s sample %d: %d %s", wire_type_name((enum wire_type)t), i, rc, why);
        assert_msg_eq(&in, &out);
        again = encode_ok(&out, &len2);
        ck_assert_uint_eq(len, len2);
        ck_assert_int_eq(memcmp(body, again, len), 0);
        wire_msg_free(&out);
        free(again);
        free(copy);
        free(body);
    }
}
END_TEST

/* The entry that comes out is the entry that went in, and still decodes
 * as a journal entry with its frames. */
START_TEST(test_journal_entry_bytes_survive)
{
    struct wire_msg in = sample(WIRE_JOURNAL, 1), out;
    journal_entry je = {0};
    size_t len;
    uint8_t *body = encode_ok(&in, &len), *copy;
    char why[256];

    ck_assert_int_eq(decode_copy(WIRE_JOURNAL, body, len, &out, &copy, why, sizeof why), 0);
    ck_assert_uint_eq(out.u.journal.len, sample_entry_len[1]);
    ck_assert_int_eq(memcmp(out.u.journal.bytes, sample_entry_bytes[1], sample_entry_len[1]), 0);
    ck_assert_msg(journal_decode(out.u.journal.bytes, out.u.journal.len, &je, why, sizeof why) == 0, "%s",
                  why);
    ck_assert_uint_eq(je.h.seq, 8);
    ck_assert_uint_eq(je.h.n_frames, 5);
    journal_entry_free(&je);
    free(copy);
    free(body);
}
END_TEST

START_TEST(test_type_names)
{
    static const char *want[WIRE_N_TYPES] = {"rk.j", "rk.c",    "rk.h",    "HELLO", "FETCH", "SNAPSHOT",
                                             "ACK",  "WELCOME", "ENTRIES", "CHUNK", "ERROR"};

    for (int t = 0; t < WIRE_N_TYPES; t++)
        ck_assert_str_eq(wire_type_name((enum wire_type)t), want[t]);
    ck_assert_ptr_null(wire_type_name(WIRE_N_TYPES));
    ck_assert_int_eq(wire_max_msg_size(), (int64_t)WIRE_MSG_MAX);
    ck_assert_int_gt(wire_max_msg_size(), (int64_t)WIRE_ENTRY_MAX);
}
END_TEST

/* A body decoded under another type's name is refused; so is a name that
 * is no type, or a topic prefix. */
START_TEST(test_wrong_name_refused)
{
    struct wire_msg in = sample(WIRE_FETCH, 0), out;
    size_t len;
    uint8_t *body = encode_ok(&in, &len);
    char why[256];

    ck_assert_int_eq(wire_decode("rk.", 3, body, len, &out, why, sizeof why), RK_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(why, "unknown message name"));
    ck_assert_int_eq(wire_decode("FETCHX", 6, body, len, &out, why, sizeof why), RK_ECORRUPT);
    ck_assert_int_eq(wire_decode("", 0, body, len, &out, why, sizeof why), RK_ECORRUPT);
    for (int t = 0; t < WIRE_N_TYPES; t++)
        if (t != WIRE_FETCH && t != WIRE_HELLO && t != WIRE_ACK)
            expect_refused((enum wire_type)t, body, len, RK_ECORRUPT, NULL);
    /* HELLO has 6 elements in version 2: a FETCH body is too short for it */
    expect_refused(WIRE_HELLO, body, len, RK_ECORRUPT, "body has 4 elements (want 6)");
    /* ACK is [v, e, durable_seq (, applied_seq, apply_lag_ms)]: the name
     * decides, and a FETCH body under it reads as an ACK whose applied_seq
     * comes without its apply_lag_ms: refused */
    expect_refused(WIRE_ACK, body, len, RK_ECORRUPT, "applied_seq without apply_lag_ms");
    free(body);
}
END_TEST

/* ------------------------------------------------------------ damage */

START_TEST(test_every_truncation_refused)
{
    FOR_EACH_SAMPLE(t, i)
    {
        struct wire_msg in = sample((enum wire_type)t, i);
        size_t len;
        uint8_t *body = encode_ok(&in, &len);

        for (size_t cut = 0; cut < len; cut++)
            expect_refused((enum wire_type)t, body, cut, RK_ECORRUPT, NULL);
        free(body);
    }
}
END_TEST

/* Trailing bytes after the body's array are refused. */
START_TEST(test_trailing_bytes_refused)
{
    FOR_EACH_SAMPLE(t, i)
    {
        struct wire_msg in = sample((enum wire_type)t, i);
        size_t len;
        uint8_t *body = encode_ok(&in, &len), *longer = malloc(len + 1);

        ck_assert_ptr_nonnull(longer);
        memcpy(longer, body, len);
        longer[len] = 0xc0;
        expect_refused((enum wire_type)t, longer, len + 1, RK_ECORRUPT, "bytes after the body");
        free(longer);
        free(body);
    }
}
END_TEST

/* Every byte of every sample, changed to every other value: refused, or
 * decoded into a message that keeps every rule (it encodes again, and that
 * encoding decodes to the same message). */
START_TEST(test_every_byte_corruption)
{
    unsigned long n_refused = 0, n_accepted = 0;

    FOR_EACH_SAMPLE(t, i)
    {
        struct wire_msg in = sample((enum wire_type)t, i);
        size_t len;
        uint8_t *body = encode_ok(&in, &len), *bad = malloc(len);

        ck_assert_ptr_nonnull(bad);
        for (size_t pos = 0; pos < len; pos++) {
            /* bin payloads (entries, chunk data) are opaque here: a few values */
            unsigned step = len > 600 ? 37 : 1;
            for (unsigned delta = 1; delta < 256; delta += step) {
                struct wire_msg out, back;
                uint8_t *copy, *again, *copy2;
                size_t len2;
                char why[256];
                int rc;

                memcpy(bad, body, len);
                bad[pos] ^= (uint8_t)delta;
                rc = decode_copy((enum wire_type)t, bad, len, &out, &copy, why, sizeof why);
                if (rc != 0) {
                    ck_assert_msg(rc == RK_ECORRUPT || rc == RK_EVERSION, "rc %d", rc);
                    ck_assert_msg(why[0] != '\0', "refused without a reason");
                    n_refused++;
                    free(copy);
                    continue;
                }
                n_accepted++;
                again = encode_ok(&out, &len2);
                ck_assert_int_eq(decode_copy((enum wire_type)t, again, len2, &back, &copy2, why, sizeof why),
                                 0);
                assert_msg_eq(&out, &back);
                wire_msg_free(&back);
                wire_msg_free(&out);
                free(copy2);
                free(again);
                free(copy);
            }
        }
        free(bad);
        free(body);
    }
    /* both outcomes happen: the test sees what it claims to see */
    ck_assert_uint_gt(n_refused, 1000);
    ck_assert_uint_gt(n_accepted, 100);
}
END_TEST

/* 32-bit headers claiming billions of elements or bytes: refused at the
 * header (before any loop or allocation sized by them). */
START_TEST(test_huge_claims_refused)
{
    static const uint8_t array32_body[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x03, 0x05, 0x06};
    static const uint8_t map32_body[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x03};
    /* ENTRIES [1, 3, array32(2^32-1) ...] */
    static const uint8_t entries_array32[] = {0x94, 0x02, 0x03, 0xdd, 0xff, 0xff,
                                              0xff, 0xff, 0x92, 0x01, 0xc2};
    /* rk.c [1, 3, 1, 1, array32(2^32-1)...] */
    static const uint8_t producers_array32[] = {0x99, 0x02, 0x03, 0x01, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff,
                                                0x92, 0xa1, 'p',  0x01, 0x01, 0x01, 0xa1, 'f',  0x01};
    /* rk.h standbys array32 */
    static const uint8_t standbys_array32[] = {0x9a, 0x02, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01,
                                               0x01, 0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01};
    /* rk.j [1, 3, 7, bin32(2^32-1)] */
    static const uint8_t entry_bin32[] = {0x94, 0x02, 0x03, 0x07, 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
    /* CHUNK data bin32(2^31) */
    static const uint8_t chunk_bin32[] = {0x97, 0x02, 0x03, 0xa1, 'f',  0x00, 0x01,
                                          0x00, 0xc6, 0x80, 0x00, 0x00, 0x00};
    /* HELLO node_id str32(2^32-1) */
    static const uint8_t hello_str32[] = {0x96, 0x02, 0x03, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 0x00};
    /* ERROR text str16(65535) */
    static const uint8_t error_str16[] = {0x94, 0x02, 0x03, 0x02, 0xda, 0xff, 0xff, 'a'};
    const char *count = "claims more elements than bytes remain", *past = "runs past the end";

    expect_refused(WIRE_FETCH, array32_body, sizeof array32_body, RK_ECORRUPT, count);
    expect_refused(WIRE_FETCH, map32_body, sizeof map32_body, RK_ECORRUPT, "wrong msgpack type");
    expect_refused(WIRE_ENTRIES, entries_array32, sizeof entries_array32, RK_ECORRUPT, count);
    expect_refused(WIRE_CHECKPOINT, producers_array32, sizeof producers_array32, RK_ECORRUPT, count);
    expect_refused(WIRE_HEARTBEAT, standbys_array32, sizeof standbys_array32, RK_ECORRUPT, count);
    expect_refused(WIRE_JOURNAL, entry_bin32, sizeof entry_bin32, RK_ECORRUPT, past);
    expect_refused(WIRE_CHUNK, chunk_bin32, sizeof chunk_bin32, RK_ECORRUPT, past);
    expect_refused(WIRE_HELLO, hello_str32, sizeof hello_str32, RK_ECORRUPT, past);
    expect_refused(WIRE_ERROR, error_str16, sizeof error_str16, RK_ECORRUPT, past);
}
END_TEST

/* A body that is not an array of the right types. */
START_TEST(test_wrong_types_refused)
{
    static const uint8_t not_array[] = {0x81, 0x01, 0x01};
    static const uint8_t too_short[] = {0x91, 0x01};
    static const uint8_t fetch_short[] = {0x93, 0x02, 0x03, 0x01};
    static const uint8_t epoch_str[] = {0x94, 0x02, 0xa1, '3', 0x01, 0x02};
    static const uint8_t epoch_negative[] = {0x94, 0x02, 0xff, 0x01, 0x02};
    static const uint8_t epoch_float[] = {0x94, 0x02, 0xca, 0x40, 0x40, 0x00, 0x00, 0x01, 0x02};
    static const uint8_t seq_bin[] = {0x94, 0x02, 0x03, 0xc4, 0x01, 0x01, 0x02};
    static const uint8_t ack_nil[] = {0x93, 0x02, 0x03, 0xc0};
    static const uint8_t entries_more_uint[] = {0x94, 0x02, 0x03, 0x90, 0x01};
    static const uint8_t entries_entry_not_record[] = {0x94, 0x02, 0x03, 0x91, 0x07, 0xc2};
    static const uint8_t welcome_ckpt_bool[] = {0x97, 0x02, 0x03, 0x01, 0x00, 0xc3, 0x90, 0xc3};
    static const uint8_t hello_bin_id[] = {0x96, 0x02, 0x03, 0xc4, 0x01, 'a', 0x00};
    static const uint8_t error_code_too_big[] = {0x94, 0x02, 0x03, 0xce, 0x00, 0x01, 0x00, 0x00, 0xa0};
    static const uint8_t snapshot_max_len_u64[] = {0x95, 0x02, 0x03, 0xa1, 'f', 0x00, 0xcf, 0,
                                                   0,    0,    1,    0,    0,   0,    0};

    expect_refused(WIRE_ACK, not_array, sizeof not_array, RK_ECORRUPT, "wrong msgpack type");
    expect_refused(WIRE_ACK, too_short, sizeof too_short, RK_ECORRUPT, "want version, epoch");
    expect_refused(WIRE_FETCH, fetch_short, sizeof fetch_short, RK_ECORRUPT, "3 elements (want 4)");
    expect_refused(WIRE_FETCH, epoch_str, sizeof epoch_str, RK_ECORRUPT, "epoch has the wrong msgpack type");
    expect_refused(WIRE_FETCH, epoch_negative, sizeof epoch_negative, RK_ECORRUPT, "epoch has the wrong");
    expect_refused(WIRE_FETCH, epoch_float, sizeof epoch_float, RK_ECORRUPT, "epoch has the wrong");
    expect_refused(WIRE_FETCH, seq_bin, sizeof seq_bin, RK_ECORRUPT, "from_seq has the wrong");
    expect_refused(WIRE_ACK, ack_nil, sizeof ack_nil, RK_ECORRUPT, "durable_seq has the wrong");
    expect_refused(WIRE_ENTRIES, entries_more_uint, sizeof entries_more_uint, RK_ECORRUPT,
                   "more has the wrong");
    expect_refused(WIRE_ENTRIES, entries_entry_not_record, sizeof entries_entry_not_record, RK_ECORRUPT,
                   "entry has the wrong");
    expect_refused(WIRE_WELCOME, welcome_ckpt_bool, sizeof welcome_ckpt_bool, RK_ECORRUPT,
                   "checkpoint has the wrong");
    expect_refused(WIRE_HELLO, hello_bin_id, sizeof hello_bin_id, RK_ECORRUPT, "node_id has the wrong");
    expect_refused(WIRE_ERROR, error_code_too_big, sizeof error_code_too_big, RK_ECORRUPT, "code");
    expect_refused(WIRE_SNAPSHOT, snapshot_max_len_u64, sizeof snapshot_max_len_u64, RK_ECORRUPT,
                   "max_len 4294967296 is out of range");
}
END_TEST

/* ACK's apply elements (issue 13.7): absent (a standby before them: read
 * as none), both (read), both and more (the rest skipped); applied_seq
 * without apply_lag_ms, or either of another msgpack type, is refused as
 * any malformed message is. */
START_TEST(test_ack_apply_elements)
{
    static const uint8_t old[] = {0x93, 0x02, 0x03, 0x05};
    static const uint8_t both[] = {0x95, 0x02, 0x03, 0x05, 0x04, 0xcd, 0x04, 0xd2};
    static const uint8_t more[] = {0x96, 0x02, 0x03, 0x05, 0x04, 0x00, 0xa1, 'x'};
    static const uint8_t lag_missing[] = {0x94, 0x02, 0x03, 0x05, 0x04};
    static const uint8_t applied_str[] = {0x95, 0x02, 0x03, 0x05, 0xa1, '4', 0x00};
    static const uint8_t applied_nil[] = {0x95, 0x02, 0x03, 0x05, 0xc0, 0x00};
    static const uint8_t lag_negative[] = {0x95, 0x02, 0x03, 0x05, 0x04, 0xff};
    static const uint8_t lag_float[] = {0x95, 0x02, 0x03, 0x05, 0x04, 0xca, 0x3f, 0x80, 0x00, 0x00};
    static const uint8_t lag_bool[] = {0x95, 0x02, 0x03, 0x05, 0x04, 0xc3};
    struct wire_msg m;
    char why[256];

    ck_assert_int_eq(wire_decode("ACK", 3, old, sizeof old, &m, why, sizeof why), 0);
    ck_assert_uint_eq(m.u.ack.durable_seq, 5);
    ck_assert_int_eq(m.u.ack.has_apply, 0);
    ck_assert_int_eq(wire_decode("ACK", 3, both, sizeof both, &m, why, sizeof why), 0);
    ck_assert_uint_eq(m.u.ack.durable_seq, 5);
    ck_assert_int_eq(m.u.ack.has_apply, 1);
    ck_assert_uint_eq(m.u.ack.applied_seq, 4);
    ck_assert_uint_eq(m.u.ack.apply_lag_ms, 1234);
    ck_assert_int_eq(wire_decode("ACK", 3, more, sizeof more, &m, why, sizeof why), 0);
    ck_assert_int_eq(m.u.ack.has_apply, 1);
    ck_assert_uint_eq(m.u.ack.applied_seq, 4);
    ck_assert_uint_eq(m.u.ack.apply_lag_ms, 0);
    expect_refused(WIRE_ACK, lag_missing, sizeof lag_missing, RK_ECORRUPT,
                   "applied_seq without apply_lag_ms");
    expect_refused(WIRE_ACK, applied_str, sizeof applied_str, RK_ECORRUPT, "applied_seq has the wrong");
    expect_refused(WIRE_ACK, applied_nil, sizeof applied_nil, RK_ECORRUPT, "applied_seq has the wrong");
    expect_refused(WIRE_ACK, lag_negative, sizeof lag_negative, RK_ECORRUPT, "apply_lag_ms has the wrong");
    expect_refused(WIRE_ACK, lag_float, sizeof lag_float, RK_ECORRUPT, "apply_lag_ms has the wrong");
    expect_refused(WIRE_ACK, lag_bool, sizeof lag_bool, RK_ECORRUPT, "apply_lag_ms has the wrong");
}
END_TEST

/* rk.j's and ENTRIES' prev_xxh, appended within version 2 (issue 13.6):
 * absent (a primary before it) decodes as before; a uint is taken, with
 * any element after it skipped; anything else is refused, naming it. */
START_TEST(test_prev_xxh_element)
{
    static const char *const names[2] = {"rk.j", "ENTRIES"};
    struct wire_msg m;
    char why[256];

    for (int t = 0; t < 2; t++) {
        enum wire_type type = t ? WIRE_ENTRIES : WIRE_JOURNAL;
        for (int shape = 0; shape < 4; shape++) { /* absent, a uint, a uint then more, a str */
            struct raw r;
            raw_init(&r);
            msgpack_pack_array(&r.pk, 4 + (shape > 0) + (shape == 2));
            msgpack_pack_uint8(&r.pk, WIRE_VERSION);
            msgpack_pack_uint8(&r.pk, 2);
            if (type == WIRE_JOURNAL) {
                msgpack_pack_uint64(&r.pk, sample_entries[0].seq);
                msgpack_pack_bin_with_body(&r.pk, sample_entries[0].bytes, sample_entries[0].len);
            } else {
                msgpack_pack_array(&r.pk, 1);
                msgpack_pack_array(&r.pk, 2);
                msgpack_pack_uint64(&r.pk, sample_entries[0].seq);
                msgpack_pack_bin_with_body(&r.pk, sample_entries[0].bytes, sample_entries[0].len);
                msgpack_pack_false(&r.pk);
            }
            if (shape == 1 || shape == 2)
                msgpack_pack_uint64(&r.pk, 0x8877665544332211ull);
            if (shape == 2)
                raw_str(&r, "later");
            if (shape == 3)
                raw_str(&r, "not a checksum");
            int rc = wire_decode(names[t], strlen(names[t]), (const uint8_t *)r.sb.data, r.sb.size, &m, why,
                                 sizeof why);
            if (shape == 3) {
                ck_assert_int_eq(rc, RK_ECORRUPT);
                ck_assert_msg(strstr(why, "prev_xxh") != NULL, "%s", why);
            } else {
                ck_assert_msg(rc == 0, "%s shape %d: %s", names[t], shape, why);
                int has = t ? m.u.entries.has_prev_xxh : m.u.journal.has_prev_xxh;
                uint64_t prev = t ? m.u.entries.prev_xxh : m.u.journal.prev_xxh;
                ck_assert_int_eq(has, shape != 0);
                ck_assert_uint_eq(prev, shape ? 0x8877665544332211ull : 0);
                const struct wire_entry *e = t ? &m.u.entries.entries[0] : &m.u.journal;
                assert_entry_eq(e, &sample_entries[0]);
                wire_msg_free(&m);
            }
            msgpack_sbuffer_destroy(&r.sb);
        }
    }
}
END_TEST

START_TEST(test_wrong_version_refused)
{
    /* version 1 (the one before the epoch history) and 3 are refused as a
     * whole, naming both versions */
    static const uint8_t v1_hello[] = {0x94, 0x01, 0x01, 0xa2, 's', '1', 0x05};
    static const uint8_t v3[] = {0x93, 0x03, 0x03, 0x05};
    static const uint8_t v0[] = {0x93, 0x00, 0x03, 0x05};
    static const uint8_t v3_other_shape[] = {0x92, 0x03, 0xa1, 'x'};
    static const uint8_t v_str[] = {0x93, 0xa1, '1', 0x03, 0x05};
    static const uint8_t v2[] = {0x93, 0x02, 0x03, 0x05};
    struct wire_msg m;
    char why[256];

    expect_refused(WIRE_HELLO, v1_hello, sizeof v1_hello, RK_EVERSION,
                   "protocol version 1 (this node speaks 2)");
    expect_refused(WIRE_ACK, v3, sizeof v3, RK_EVERSION, "protocol version 3");
    expect_refused(WIRE_ACK, v0, sizeof v0, RK_EVERSION, "protocol version 0");
    expect_refused(WIRE_HEARTBEAT, v3_other_shape, sizeof v3_other_shape, RK_EVERSION, "protocol version 3");
    expect_refused(WIRE_ACK, v_str, sizeof v_str, RK_ECORRUPT, "version has the wrong msgpack type");
    ck_assert_int_eq(wire_decode("ACK", 3, v2, sizeof v2, &m, why, sizeof why), 0);
    ck_assert_uint_eq(m.epoch, 3);
    ck_assert_uint_eq(m.u.ack.durable_seq, 5);
}
END_TEST

/* Elements a later revision appends (to the body or a record) are
 * skipped; what v1 defines is read as before. */
START_TEST(test_extra_elements_skipped)
{
    struct raw r;
    struct wire_msg m;
    char why[256];
    int rc;

    raw_init(&r);
    msgpack_pack_array(&r.pk, 9); /* HELLO, its monitor and checks_prev flags, and one extra element: a map */
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 4);
    raw_str(&r, "sb-1");
    msgpack_pack_uint8(&r.pk, 9);
    msgpack_pack_uint8(&r.pk, 3);
    msgpack_pack_nil(&r.pk);
    msgpack_pack_true(&r.pk);
    msgpack_pack_false(&r.pk);
    msgpack_pack_map(&r.pk, 1);
    raw_str(&r, "zone");
    msgpack_pack_array(&r.pk, 2);
    msgpack_pack_double(&r.pk, 1.5);
    msgpack_pack_nil(&r.pk);
    rc = wire_decode("HELLO", 5, (const uint8_t *)r.sb.data, r.sb.size, &m, why, sizeof why);
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert_str_eq(m.u.hello.node_id, "sb-1");
    ck_assert_uint_eq(m.u.hello.last_seq, 9);
    ck_assert_int_eq(m.u.hello.monitor, 1);
    ck_assert_int_eq(m.u.hello.checks_prev, 0);
    msgpack_sbuffer_destroy(&r.sb);

    raw_init(&r); /* rk.h with a standby record of 5 elements */
    msgpack_pack_array(&r.pk, 10);
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 1);
    for (int i = 0; i < 6; i++)
        msgpack_pack_uint8(&r.pk, 10);
    msgpack_pack_array(&r.pk, 1);
    msgpack_pack_array(&r.pk, 5);
    raw_str(&r, "sb");
    msgpack_pack_uint8(&r.pk, 8);
    msgpack_pack_uint8(&r.pk, 2);
    msgpack_pack_uint8(&r.pk, 0);
    raw_str(&r, "later field");
    msgpack_pack_uint8(&r.pk, 77);
    rc = wire_decode("rk.h", 4, (const uint8_t *)r.sb.data, r.sb.size, &m, why, sizeof why);
    ck_assert_msg(rc == 0, "%s", why);
    ck_assert_uint_eq(m.u.heartbeat.n_standbys, 1);
    ck_assert_str_eq(m.u.heartbeat.standbys[0].id, "sb");
    ck_assert_uint_eq(m.u.heartbeat.standbys[0].lag_entries, 2);
    ck_assert_uint_eq(m.u.heartbeat.time_ns, 77);
    wire_msg_free(&m);
    ck_assert_ptr_null(m.u.heartbeat.standbys);
    msgpack_sbuffer_destroy(&r.sb);
}
END_TEST

/* ------------------------------------------------------------ epochs */

START_TEST(test_epoch_rule)
{
    char why[256] = "";
    int newer = -1;

    ck_assert_int_eq(wire_check_epoch(5, 4, &newer, why, sizeof why), RK_ESTALE);
    ck_assert_int_eq(newer, 0);
    ck_assert_ptr_nonnull(strstr(why, "epoch 4, lower than this node's epoch 5"));
    ck_assert_int_eq(wire_check_epoch(5, 0, NULL, why, sizeof why), RK_ESTALE);
    ck_assert_int_eq(wire_check_epoch(5, 5, &newer, why, sizeof why), 0);
    ck_assert_int_eq(newer, 0);
    ck_assert_int_eq(wire_check_epoch(5, 6, &newer, why, sizeof why), 0);
    ck_assert_int_eq(newer, 1);
    ck_assert_int_eq(wire_check_epoch(UINT64_MAX, UINT64_MAX - 1, NULL, why, sizeof why), RK_ESTALE);
    ck_assert_str_eq(rk_strerror(RK_ESTALE), "message from a lower (stale) epoch");
}
END_TEST

/* Epoch 0 never appears on the wire (epochs start at 1). */
START_TEST(test_epoch_zero_refused)
{
    static const uint8_t ack_epoch0[] = {0x93, 0x02, 0x00, 0x05};
    struct wire_msg m = sample(WIRE_ACK, 0);
    uint8_t *body;
    size_t len;
    char why[256];

    expect_refused(WIRE_ACK, ack_epoch0, sizeof ack_epoch0, RK_ECORRUPT, "epoch 0");
    m.epoch = 0;
    ck_assert_int_eq(wire_encode(&m, &body, &len, why, sizeof why), RK_EINVAL);
    ck_assert_ptr_null(body);
}
END_TEST

/* ------------------------------------------------------------ rules */

/* Encoding a message that breaks a rule: RK_EINVAL, nothing made; the
 * same fields packed by hand are refused by the decoder. */
static void expect_rule(struct wire_msg *m, const char *reason)
{
    uint8_t *body = (uint8_t *)"x";
    size_t len = 1;
    char why[256] = "";

    ck_assert_int_eq(wire_encode(m, &body, &len, why, sizeof why), RK_EINVAL);
    ck_assert_ptr_null(body);
    ck_assert_uint_eq(len, 0);
    ck_assert_msg(strstr(why, reason), "reason \"%s\" lacks \"%s\"", why, reason);
}

START_TEST(test_encoder_refuses_broken_rules)
{
    struct wire_standby sb[WIRE_MAX_STANDBYS + 1];
    struct wire_entry many[2];
    struct wire_msg m;

    m = sample(WIRE_HELLO, 0);
    memset(m.u.hello.node_id, 'a', sizeof m.u.hello.node_id); /* 48 bytes, no NUL */
    expect_rule(&m, "bad node_id");
    m.u.hello.node_id[0] = '\0';
    expect_rule(&m, "bad node_id");

    m = sample(WIRE_SNAPSHOT, 0);
    m.u.snapshot.max_len = WIRE_CHUNK_MAX + 1;
    expect_rule(&m, "max_len 1048577");
    m = sample(WIRE_SNAPSHOT, 0);
    snprintf(m.u.snapshot.name, sizeof m.u.snapshot.name, "../etc/passwd");
    expect_rule(&m, "bad file name");
    snprintf(m.u.snapshot.name, sizeof m.u.snapshot.name, "..");
    expect_rule(&m, "bad file name");

    m = sample(WIRE_CHUNK, 0);
    m.u.chunk.len = WIRE_CHUNK_MAX + 1;
    expect_rule(&m, "data bytes (at most");
    m = sample(WIRE_CHUNK, 0);
    m.u.chunk.offset = m.u.chunk.total_size - 10;
    expect_rule(&m, "do not fit a file");
    m = sample(WIRE_CHUNK, 1);
    m.u.chunk.offset = 0;
    expect_rule(&m, "empty only at its end");

    m = sample(WIRE_FETCH, 0);
    m.u.fetch.from_seq = m.u.fetch.to_seq + 1 == 0 ? 5 : m.u.fetch.to_seq;
    m.u.fetch.to_seq = 4;
    expect_rule(&m, "want 1 <= from_seq <= to_seq");
    m.u.fetch.from_seq = 0;
    expect_rule(&m, "want 1 <= from_seq <= to_seq");

    m = sample(WIRE_HEARTBEAT, 0);
    m.u.heartbeat.applied_seq = m.u.heartbeat.journal_seq + 1;
    expect_rule(&m, "sequences out of order");
    m = sample(WIRE_HEARTBEAT, 0);
    m.u.heartbeat.applied_lsn = m.u.heartbeat.durable_lsn + 1;
    expect_rule(&m, "above durable_lsn");
    m = sample(WIRE_HEARTBEAT, 0);
    m.u.heartbeat.standbys = sb;
    m.u.heartbeat.n_standbys = WIRE_MAX_STANDBYS + 1;
    for (unsigned i = 0; i <= WIRE_MAX_STANDBYS; i++)
        sb[i] = (struct wire_standby){"s", m.u.heartbeat.journal_seq, 0, 0};
    expect_rule(&m, "65 standbys");
    m.u.heartbeat.n_standbys = 1;
    sb[0].lag_entries = 3;
    expect_rule(&m, "do not fit journal_seq");

    m = sample(WIRE_WELCOME, 0);
    m.u.welcome.first_seq = m.u.welcome.last_seq + 2;
    expect_rule(&m, "want 1 <= first_seq <= last_seq + 1");
    m = sample(WIRE_WELCOME, 0);
    m.u.welcome.checkpoint.journal_seq = m.u.welcome.last_seq + 1;
    expect_rule(&m, "past last_seq");

    m = sample(WIRE_ENTRIES, 0);
    many[0] = sample_entries[0];
    many[1] = sample_entries[2]; /* seq 7 then 9 */
    m.u.entries.entries = many;
    m.u.entries.n_entries = 2;
    expect_rule(&m, "want consecutive");
    m.u.entries.n_entries = 0;
    expect_rule(&m, "\"more\" with no entries");
    m.u.entries.n_entries = WIRE_MAX_ENTRIES + 1;
    expect_rule(&m, "4097 entries");

    m = sample(WIRE_JOURNAL, 0);
    m.u.journal.seq = 8; /* the entry holds seq 7 */
    expect_rule(&m, "sent as seq 8 holds seq 7");
    m = sample(WIRE_JOURNAL, 1);
    m.epoch = 1; /* the entry was written at epoch 2 */
    expect_rule(&m, "written at epoch 2");
    m = sample(WIRE_JOURNAL, 0);
    m.u.journal.len = WIRE_ENTRY_MIN - 1;
    expect_rule(&m, "71 bytes");

    m = sample(WIRE_CHECKPOINT, 0);
    snprintf(m.u.checkpoint.name, sizeof m.u.checkpoint.name, "a/b.rkcp");
    expect_rule(&m, "bad checkpoint file name");
    m = sample(WIRE_CHECKPOINT, 0);
    m.u.checkpoint.n_producers = WIRE_MAX_PRODUCERS + 1;
    expect_rule(&m, "4097 producers");

    m = sample(WIRE_ERROR, 0);
    m.u.error.code = 0;
    expect_rule(&m, "code 0");
    m.u.error.code = 70000;
    expect_rule(&m, "code 70000");
    m = sample(WIRE_ERROR, 0);
    memset(m.u.error.text, 'x', sizeof m.u.error.text);
    expect_rule(&m, "text longer than 255");

    m.type = WIRE_N_TYPES;
    expect_rule(&m, "unknown message type");
}
END_TEST

/* Oversized and rule-breaking fields packed by hand: the decoder refuses
 * them with a reason naming the field. */
START_TEST(test_decoder_refuses_broken_rules)
{
    char long_name[300];
    struct raw r;

    memset(long_name, 'n', sizeof long_name);
    long_name[WIRE_NAME_MAX + 1] = '\0';
    raw_init(&r); /* HELLO with a 48-byte node id */
    msgpack_pack_array(&r.pk, 6);
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 1);
    raw_str(&r, long_name);
    msgpack_pack_uint8(&r.pk, 0);
    msgpack_pack_uint8(&r.pk, 0);
    msgpack_pack_nil(&r.pk);
    expect_refused(WIRE_HELLO, (uint8_t *)r.sb.data, r.sb.size, RK_ECORRUPT, "node_id of 48 bytes");
    msgpack_sbuffer_destroy(&r.sb);

    raw_init(&r); /* HELLO with a NUL in the node id */
    msgpack_pack_array(&r.pk, 6);
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 1);
    msgpack_pack_str_with_body(&r.pk, "a\0b", 3);
    msgpack_pack_uint8(&r.pk, 0);
    msgpack_pack_uint8(&r.pk, 0);
    msgpack_pack_nil(&r.pk);
    expect_refused(WIRE_HELLO, (uint8_t *)r.sb.data, r.sb.size, RK_ECORRUPT, "no NUL");
    msgpack_sbuffer_destroy(&r.sb);

    long_name[WIRE_FILE_MAX + 1] = '\0';
    memset(long_name, 'f', WIRE_FILE_MAX + 1);
    raw_init(&r); /* SNAPSHOT with a 256-byte file name */
    msgpack_pack_array(&r.pk, 5);
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 1);
    raw_str(&r, long_name);
    msgpack_pack_uint8(&r.pk, 0);
    msgpack_pack_uint8(&r.pk, 1);
    expect_refused(WIRE_SNAPSHOT, (uint8_t *)r.sb.data, r.sb.size, RK_ECORRUPT, "file name of 256 bytes");
    msgpack_sbuffer_destroy(&r.sb);

    raw_init(&r); /* SNAPSHOT of "/" */
    msgpack_pack_array(&r.pk, 5);
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 1);
    raw_str(&r, "/");
    msgpack_pack_uint8(&r.pk, 0);
    msgpack_pack_uint8(&r.pk, 1);
    expect_refused(WIRE_SNAPSHOT, (uint8_t *)r.sb.data, r.sb.size, RK_ECORRUPT, "bad file name");
    msgpack_sbuffer_destroy(&r.sb);

    {
        uint8_t *data = calloc(1, WIRE_CHUNK_MAX + 1);
        ck_assert_ptr_nonnull(data);
        raw_init(&r); /* CHUNK of 1 MiB + 1 */
        msgpack_pack_array(&r.pk, 7);
        msgpack_pack_uint8(&r.pk, WIRE_VERSION);
        msgpack_pack_uint8(&r.pk, 1);
        raw_str(&r, "f");
        msgpack_pack_uint8(&r.pk, 0);
        msgpack_pack_uint64(&r.pk, 1u << 30);
        msgpack_pack_uint8(&r.pk, 0);
        msgpack_pack_bin_with_body(&r.pk, data, WIRE_CHUNK_MAX + 1);
        expect_refused(WIRE_CHUNK, (uint8_t *)r.sb.data, r.sb.size, RK_ECORRUPT, "1048577 data bytes");
        msgpack_sbuffer_destroy(&r.sb);
        free(data);
    }

    raw_init(&r); /* ENTRIES of WIRE_MAX_ENTRIES + 1 (each too small: the count is what is refused) */
    msgpack_pack_array(&r.pk, 4);
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 1);
    msgpack_pack_array(&r.pk, WIRE_MAX_ENTRIES + 1);
    for (unsigned i = 0; i <= WIRE_MAX_ENTRIES; i++) {
        msgpack_pack_array(&r.pk, 2);
        msgpack_pack_uint32(&r.pk, i + 1);
        msgpack_pack_bin_with_body(&r.pk, "e", 1);
    }
    msgpack_pack_false(&r.pk);
    expect_refused(WIRE_ENTRIES, (uint8_t *)r.sb.data, r.sb.size, RK_ECORRUPT,
                   "4097 elements (at most 4096)");
    msgpack_sbuffer_destroy(&r.sb);

    raw_init(&r); /* rk.h with 65 standbys */
    msgpack_pack_array(&r.pk, 10);
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 1);
    for (int i = 0; i < 6; i++)
        msgpack_pack_uint8(&r.pk, 1);
    msgpack_pack_array(&r.pk, WIRE_MAX_STANDBYS + 1);
    for (unsigned i = 0; i <= WIRE_MAX_STANDBYS; i++) {
        msgpack_pack_array(&r.pk, 4);
        raw_str(&r, "s");
        msgpack_pack_uint8(&r.pk, 1);
        msgpack_pack_uint8(&r.pk, 0);
        msgpack_pack_uint8(&r.pk, 0);
    }
    msgpack_pack_uint8(&r.pk, 1);
    expect_refused(WIRE_HEARTBEAT, (uint8_t *)r.sb.data, r.sb.size, RK_ECORRUPT, "65 elements (at most 64)");
    msgpack_sbuffer_destroy(&r.sb);

    raw_init(&r); /* rk.j whose entry is a short bin */
    msgpack_pack_array(&r.pk, 4);
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 1);
    msgpack_pack_uint8(&r.pk, 1);
    msgpack_pack_bin_with_body(&r.pk, "RKJE", 4);
    expect_refused(WIRE_JOURNAL, (uint8_t *)r.sb.data, r.sb.size, RK_ECORRUPT, "is 4 bytes");
    msgpack_sbuffer_destroy(&r.sb);

    raw_init(&r); /* ERROR with 256 bytes of text */
    msgpack_pack_array(&r.pk, 4);
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 1);
    msgpack_pack_uint8(&r.pk, 1);
    raw_str(&r, long_name);
    expect_refused(WIRE_ERROR, (uint8_t *)r.sb.data, r.sb.size, RK_ECORRUPT, "text of 256 bytes");
    msgpack_sbuffer_destroy(&r.sb);

    raw_init(&r); /* a raw extension as a seq */
    msgpack_pack_array(&r.pk, 3);
    msgpack_pack_uint8(&r.pk, WIRE_VERSION);
    msgpack_pack_uint8(&r.pk, 1);
    raw_bytes(&r, "\xd4\x01\x02", 3);
    expect_refused(WIRE_ACK, (uint8_t *)r.sb.data, r.sb.size, RK_ECORRUPT, "durable_seq has the wrong");
    msgpack_sbuffer_destroy(&r.sb);
}
END_TEST

/* A body longer than WIRE_MSG_MAX is refused before a byte of it is read. */
START_TEST(test_oversized_body_refused)
{
    size_t len = WIRE_MSG_MAX + 1;
    uint8_t *big = calloc(1, len);
    struct wire_msg m;
    char why[256];

    ck_assert_ptr_nonnull(big);
    big[0] = 0x93;
    ck_assert_int_eq(wire_decode("ACK", 3, big, len, &m, why, sizeof why), RK_ECORRUPT);
    ck_assert_ptr_nonnull(strstr(why, "body of"));
    free(big);
}
END_TEST

/* ------------------------------------------------------------ documentation */

static const char doc_heartbeat_hex[] = "9a0203cd0412cd0410ce00530000ce0052e000cf9e3779b97f4a7c15cd041091"
                                        "94a97374616e6462792d61cd04110102cf17979cfe3d85cd15";
static const char doc_checkpoint_hex[] = "990203cd03e8ce005000009192a96d6174636865722d31cd4e20ce001c2000cf"
                                         "0123456789abcdefb93030303030303030303030303030303031303030"
                                         "2e726b6370cf17979cfe362a0000";

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
}

static void assert_doc_bytes(struct wire_msg m, const char *want)
{
    size_t len;
    uint8_t *body = encode_ok(&m, &len);
    char *got = malloc(2 * len + 1);

    ck_assert_ptr_nonnull(got);
    got[0] = '\0';
    hex(body, len, got);
    ck_assert_str_eq(got, want);
    free(got);
    free(body);
}

/* docs/FORMAT.md's worked journal entry: seq 1, epoch 1, five frames as a
 * node journals them: producer "matcher" attaches in slot 0, the TABLE
 * frame the node adds before the first record of table id 1 ("accounts"),
 * a PUT, a DEL of a key that is not there, and the MARK of height 1.  Its
 * state afterwards: the one entry of the PUT.  The body is stored plain
 * (flags 0: what journal_encode does when zstd would not make it smaller;
 * here it would, and zstd's output is not the same in every version, so
 * the documented bytes are the plain form, which every reader accepts).
 * malloc'd. */
static uint8_t *example_entry(size_t *len)
{
    static const char value[] = "{\"balance\":0,\"ccy\":\"EUR\"}";
    uint8_t frames[512] = {0}, attach[16] = {0}, height[8] = {1};
    uint32_t pid = 4242;
    size_t off = 0;
    uint8_t *out = NULL;

    attach[0] = 1; /* struct frame_attach: session 1, pid 4242, flags 0 */
    memcpy(attach + 8, &pid, 4);
    off += frame_align(frame_encode(frames + off, FRAME_ATTACH, 0, 0, 4096, "matcher", 7, attach, 16));
    off += frame_align(frame_encode(frames + off, FRAME_TABLE, 1, 0, 4151, "accounts", 8, NULL, 0));
    off +=
        frame_align(frame_encode(frames + off, FRAME_PUT, 1, 0, 4152, "acct-00", 7, value, sizeof value - 1));
    off += frame_align(frame_encode(frames + off, FRAME_DEL, 1, 0, 4216, "acct-99", 7, NULL, 0));
    off += frame_align(frame_encode(frames + off, FRAME_MARK, 0, 0, 4256, NULL, 0, height, 8));
    struct journal_header h = {.magic = JOURNAL_MAGIC,
                               .version = JOURNAL_VERSION,
                               .seq = 1,
                               .epoch = 1,
                               .first_lsn = 4096,
                               .last_lsn = 4256,
                               .next_lsn = 4296,
                               .n_frames = 5,
                               .raw_len = (uint32_t)off,
                               .body_len = (uint32_t)off};
    XXH64_canonical_t trailer;
    *len = JOURNAL_HEADER_SIZE + off + JOURNAL_TRAILER_SIZE;
    out = malloc(*len);
    if (!out)
        return NULL;
    memcpy(out, &h, sizeof h); /* the header's layout, little-endian (x86-64) */
    memcpy(out + JOURNAL_HEADER_SIZE, frames, off);
    XXH64_canonicalFromHash(&trailer, XXH64(out, JOURNAL_HEADER_SIZE + off, 0));
    memcpy(out + JOURNAL_HEADER_SIZE + off, &trailer, sizeof trailer);
    return out;
}

/* docs/FORMAT.md's worked digest: the terms of two entries of the golden
 * checkpoint (an empty key and value among them) and their sum. */
static void example_digests(uint64_t d[3])
{
    static const char value[] = "{\"balance\":0,\"ccy\":\"EUR\"}";

    d[0] = ckpt_entry_digest("accounts", "acct-00", 7, value, sizeof value - 1);
    d[1] = ckpt_entry_digest("positions", "", 0, "", 0);
    d[2] = d[0] + d[1];
}

static const char doc_entry_hex[] =
    "524b4a4501000000010000000000000001000000000000000010000000000000a010000000000000c810000000000000"
    "05000000f0000000f00000000000000037000000050000004424976ed4c9d2ad00100000000000000000000007000000"
    "6d6174636865720100000000000000921000000000000000280000000700010059a9bc0db1a822633710000000000000"
    "00000000080000006163636f756e7473400000000100010044b31ed2b6e7fd6538100000000000000000000007000000"
    "616363742d30307b2262616c616e6365223a302c22636379223a22455552227d270000000200010022478425d91cd23f"
    "78100000000000000000000007000000616363742d393900280000000300000010881041c71a0b01a010000000000000"
    "0000000000000000010000000000000025c652b211cef7ca";
static const uint64_t doc_digests[3] = {0x351a6ca12501b72cull, 0x914a2bd20e67c49bull, 0xc664987333697bc7ull};

/* The examples in docs/PROTOCOL.md and docs/FORMAT.md are what the encoders make. */
START_TEST(test_documented_examples)
{
    size_t len = 0;
    uint8_t *entry = example_entry(&len);
    char *got = malloc(2 * len + 1);
    journal_entry e = {0};
    char why[256];
    uint64_t d[3];

    assert_doc_bytes(example_heartbeat(), doc_heartbeat_hex);
    assert_doc_bytes(example_checkpoint(), doc_checkpoint_hex);
    ck_assert_ptr_nonnull(entry);
    ck_assert_ptr_nonnull(got);
    hex(entry, len, got);
    ck_assert_str_eq(got, doc_entry_hex);
    ck_assert_int_eq(journal_decode(entry, len, &e, why, sizeof why), 0);
    journal_entry_free(&e);
    example_digests(d);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(d[i], doc_digests[i]);
    free(got);
    free(entry);
}
END_TEST

static int print_examples(void)
{
    struct wire_msg ms[2] = {example_heartbeat(), example_checkpoint()};

    for (int i = 0; i < 2; i++) {
        uint8_t *body = NULL;
        size_t len = 0;
        char why[256];
        char *out;

        if (wire_encode(&ms[i], &body, &len, why, sizeof why) != 0 || !(out = malloc(2 * len + 1))) {
            fprintf(stderr, "%s\n", why);
            return 1;
        }
        hex(body, len, out);
        printf("%s (%zu bytes): %s\n", wire_type_name(ms[i].type), len, out);
        free(out);
        free(body);
    }
    size_t len = 0;
    uint8_t *entry = example_entry(&len);
    char *out = entry ? malloc(2 * len + 1) : NULL;
    uint64_t d[3];
    if (!out) {
        free(entry);
        return 1;
    }
    hex(entry, len, out);
    printf("journal entry (%zu bytes): %s\n", len, out);
    free(out);
    free(entry);
    example_digests(d);
    printf("digest terms: %016" PRIx64 " %016" PRIx64 ", sum %016" PRIx64 "\n", d[0], d[1], d[2]);
    return 0;
}

/* ------------------------------------------------------------ suite */

static Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("codec");

    tcase_add_checked_fixture(tc, samples_setup, samples_teardown);
    tcase_add_test(tc, test_round_trip_every_type);
    tcase_add_test(tc, test_journal_entry_bytes_survive);
    tcase_add_test(tc, test_type_names);
    tcase_add_test(tc, test_wrong_name_refused);
    tcase_add_test(tc, test_every_truncation_refused);
    tcase_add_test(tc, test_trailing_bytes_refused);
    tcase_add_test(tc, test_every_byte_corruption);
    tcase_add_test(tc, test_huge_claims_refused);
    tcase_add_test(tc, test_wrong_types_refused);
    tcase_add_test(tc, test_ack_apply_elements);
    tcase_add_test(tc, test_prev_xxh_element);
    tcase_add_test(tc, test_wrong_version_refused);
    tcase_add_test(tc, test_extra_elements_skipped);
    tcase_add_test(tc, test_epoch_rule);
    tcase_add_test(tc, test_epoch_zero_refused);
    tcase_add_test(tc, test_encoder_refuses_broken_rules);
    tcase_add_test(tc, test_decoder_refuses_broken_rules);
    tcase_add_test(tc, test_oversized_body_refused);
    tcase_add_test(tc, test_documented_examples);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    SRunner *sr;
    int n_failed;

    if (argc == 2 && strcmp(argv[1], "--print-examples") == 0)
        return print_examples();
    sr = srunner_create(wire_suite());
    srunner_run_all(sr, CK_NORMAL);
    n_failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
