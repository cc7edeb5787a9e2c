/* gen_wire_corpus.c -- writes the seed corpus of fuzz_wire
 * (tests/fuzz/corpus/wire/): each file is one selector byte (the message
 * type, enum wire_type order) followed by a body.  Valid bodies of every
 * type made with wire_encode (with real journal entries from
 * journal_encode), and damaged ones of the kinds the decoder refuses:
 * truncated, a trailing byte, version 1 (an old peer), epoch 0, array32/bin32/str32
 * headers claiming billions, wrong types, broken rules; plus bodies with
 * elements a later revision might append (accepted).  Not built by CMake;
 * from the top of the repository:
 *
 *   cc -std=c11 -Iinclude -I. -Itests -o /tmp/gen_wire_corpus tests/fuzz/gen_wire_corpus.c \
 *      build/librkreplicator.a build/librkpersist.a build/librkshm.a \
 *      -lmsgpackc -lzstd -lxxhash -ldb-5.3 -lpthread -lrt
 *   rm -rf tests/fuzz/corpus/wire && mkdir tests/fuzz/corpus/wire
 *   /tmp/gen_wire_corpus tests/fuzz/corpus/wire
 *
 * Deterministic for one zstd version.  Threads: one.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "shm/ring.h"
#include "sample_entry.h"
#include "persist/store.h"
#include "replicator/wire.h"

static const char *out_dir;

static void write_out(const char *name, enum wire_type t, const uint8_t *body, size_t len)
{
    char path[4096];
    uint8_t selector = (uint8_t)t;
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(&selector, 1, 1, f) != 1 || (len && fwrite(body, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* A journal entry of n_puts PUTs and a MARK (tests/sample_entry.h, as
 * test_wire.c makes them). */
static uint8_t *make_entry(uint64_t seq, uint64_t epoch, unsigned n_puts, size_t *len)
{
    uint8_t *out = sample_entry(seq, epoch, n_puts, len);

    if (!out)
        exit(1);
    return out;
}

static uint8_t *encode(const struct wire_msg *m, size_t *len)
{
    uint8_t *body;
    char why[256];

    if (wire_encode(m, &body, len, why, sizeof why) != 0) {
        fprintf(stderr, "encode %s: %s\n", wire_type_name(m->type), why);
        exit(1);
    }
    return body;
}

static void valid(const char *name, const struct wire_msg *m)
{
    size_t len;
    uint8_t *body = encode(m, &len);

    write_out(name, m->type, body, len);
    free(body);
}

static void raw(const char *name, enum wire_type t, const void *bytes, size_t len)
{
    write_out(name, t, bytes, len);
}

int main(int argc, char **argv)
{
    struct wire_producer producers[] = {{"matcher-1", 20000}, {"risk", 7}};
    struct wire_standby standbys[] = {{"standby-a", 1041, 1, 2}, {"standby-b", 1000, 42, 180}};
    struct wire_checkpoint ckpt = {1000,
                                   5242880,
                                   2,
                                   producers,
                                   1843200,
                                   0x0123456789abcdefull,
                                   "00000000000000001000.rkcp",
                                   1700000000000000000ull};
    struct wire_entry entries[3];
    uint8_t *entry_bytes[3], chunk[512];
    struct wire_msg m;
    size_t len;
    uint8_t *body;

    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    for (int i = 0; i < 3; i++) {
        size_t n;
        entry_bytes[i] = make_entry(7 + (uint64_t)i, 2, 2 + (unsigned)i, &n);
        entries[i] = (struct wire_entry){7 + (uint64_t)i, entry_bytes[i], n};
    }
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (uint8_t)(i * 13);

    /* ------------------------------------------------ valid, every type */
    m = (struct wire_msg){.type = WIRE_JOURNAL, .epoch = 2};
    m.u.journal = entries[0];
    valid("valid-journal", &m);
    m = (struct wire_msg){.type = WIRE_CHECKPOINT, .epoch = 3};
    m.u.checkpoint = ckpt;
    valid("valid-checkpoint", &m);
    m.u.checkpoint.n_producers = 0;
    valid("valid-checkpoint-no-producers", &m);
    m = (struct wire_msg){.type = WIRE_HEARTBEAT, .epoch = 3};
    m.u.heartbeat = (struct wire_heartbeat){
        1042, 1040, 5439488, 5431296, 0x9e3779b97f4a7c15ull, 1040, 2, standbys, 1700000000123456789ull};
    valid("valid-heartbeat", &m);
    m.u.heartbeat.n_standbys = 0;
    valid("valid-heartbeat-no-standbys", &m);
    m = (struct wire_msg){.type = WIRE_HELLO, .epoch = 3};
    snprintf(m.u.hello.node_id, sizeof m.u.hello.node_id, "standby-a");
    m.u.hello.last_seq = 1000;
    m.u.hello.last_epoch = 2;
    m.u.hello.has_last_xxh = 1;
    m.u.hello.last_xxh = 0x0123456789abcdefull;
    valid("valid-hello", &m);
    m.u.hello.has_last_xxh = 0; /* after a bootstrap: the entry is not held */
    valid("valid-hello-no-xxh", &m);
    m.u.hello.monitor = 1; /* a monitor's HELLO: the 7th element */
    valid("valid-hello-monitor", &m);
    m.u.hello.monitor = 0;
    m = (struct wire_msg){.type = WIRE_FETCH, .epoch = 3, .u.fetch = {1001, 1042}};
    valid("valid-fetch", &m);
    m = (struct wire_msg){.type = WIRE_SNAPSHOT, .epoch = 3};
    snprintf(m.u.snapshot.name, sizeof m.u.snapshot.name, "%s", ckpt.name);
    m.u.snapshot.offset = 1 << 20;
    m.u.snapshot.max_len = WIRE_CHUNK_MAX;
    valid("valid-snapshot", &m);
    m = (struct wire_msg){.type = WIRE_ACK, .epoch = 3, .u.ack = {1041}};
    valid("valid-ack", &m);
    m.u.ack = (struct wire_ack){1041, 1, 1000, 250}; /* with its apply: elements of issue 13.7 */
    valid("valid-ack-apply", &m);
    m = (struct wire_msg){.type = WIRE_WELCOME, .epoch = 3};
    static const struct epoch_start history[2] = {{1, 1, 8}, {3, 950, 4000000}};
    m.u.welcome = (struct wire_welcome){900, 1042, 1, ckpt, 2, (struct epoch_start *)history, 1};
    valid("valid-welcome", &m);
    m.u.welcome = (struct wire_welcome){1, 0, 0, {0}, 1, (struct epoch_start *)history, 0};
    valid("valid-welcome-empty", &m);
    m.u.welcome = (struct wire_welcome){900, 1042, 0, {0}, 2, (struct epoch_start *)history, 0, 1, 1100};
    valid("valid-welcome-hello-last-seq", &m); /* the 8th element, appended within version 2 */
    m = (struct wire_msg){.type = WIRE_ENTRIES, .epoch = 2};
    m.u.entries = (struct wire_entries){3, entries, 1};
    valid("valid-entries", &m);
    m.u.entries = (struct wire_entries){0, NULL, 0};
    valid("valid-entries-none", &m);
    m = (struct wire_msg){.type = WIRE_CHUNK, .epoch = 3};
    snprintf(m.u.chunk.name, sizeof m.u.chunk.name, "%s", ckpt.name);
    m.u.chunk.offset = 4096;
    m.u.chunk.total_size = 1843200;
    m.u.chunk.file_xxh64 = 0xfedcba9876543210ull;
    m.u.chunk.data = chunk;
    m.u.chunk.len = sizeof chunk;
    valid("valid-chunk", &m);
    m = (struct wire_msg){
        .type = WIRE_ERROR, .epoch = 3, .u.error = {WIRE_ERR_TRIMMED, "entries 1..899 trimmed"}};
    valid("valid-error", &m);

    /* ------------------------------------------------ damaged valid bodies */
    m = (struct wire_msg){.type = WIRE_HEARTBEAT, .epoch = 3};
    m.u.heartbeat = (struct wire_heartbeat){1042, 1040, 5439488, 5431296, 7, 1040, 2, standbys, 1};
    body = encode(&m, &len);
    raw("bad-heartbeat-truncated", WIRE_HEARTBEAT, body, len - 3);
    {
        uint8_t *longer = malloc(len + 1);
        if (!longer)
            return 1;
        memcpy(longer, body, len);
        longer[len] = 0xc0;
        raw("bad-heartbeat-trailing-byte", WIRE_HEARTBEAT, longer, len + 1);
        free(longer);
    }
    body[1] = 0x01;
    raw("bad-heartbeat-version-1", WIRE_HEARTBEAT, body, len);
    body[1] = 0x02;
    body[2] = 0x00;
    raw("bad-heartbeat-epoch-0", WIRE_HEARTBEAT, body, len);
    free(body);

    /* ------------------------------------------------ crafted */
    {
        static const uint8_t entries_array32[] = {0x94, 0x02, 0x03, 0xdd, 0xff, 0xff,
                                                  0xff, 0xff, 0x92, 0x01, 0xc2};
        static const uint8_t body_array32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x02, 0x03, 0x05};
        static const uint8_t entry_bin32[] = {0x94, 0x02, 0x03, 0x07, 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
        static const uint8_t hello_str32[] = {0x96, 0x02, 0x03, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 0x00};
        static const uint8_t producers_array32[] = {0x99, 0x02, 0x03, 0x01, 0x01, 0xdd, 0xff,
                                                    0xff, 0xff, 0xff, 0x92, 0xa1, 'p',  0x01,
                                                    0x01, 0x01, 0xa1, 'f',  0x01};
        static const uint8_t ack_map[] = {0x83, 0x02, 0x03, 0x05};
        static const uint8_t fetch_backwards[] = {0x94, 0x02, 0x03, 0x09, 0x05};
        static const uint8_t ack_epoch_str[] = {0x93, 0x02, 0xa1, '3', 0x05};
        static const uint8_t snapshot_slash[] = {0x95, 0x02, 0x03, 0xa3, '.', '.', '/', 0x00, 0x01};
        static const uint8_t welcome_first_past[] = {0x97, 0x02, 0x03, 0x09, 0x05, 0xc0,
                                                     0x91, 0x93, 0x01, 0x01, 0x00, 0xc3};
        /* HELLO + its monitor flag (false) + a map a later revision appended */
        static const uint8_t hello_extra[] = {0x98, 0x02, 0x03, 0xa2, 's', 'b', 0x09,
                                              0x02, 0xc0, 0xc2, 0x81, 0xa1, 'z', 0xc3};
        /* a monitor flag that is not a bool */
        static const uint8_t hello_monitor_int[] = {0x97, 0x02, 0x03, 0xa2, 's', 'b', 0x00, 0x00, 0xc0, 0x01};
        /* ACK's applied_seq without apply_lag_ms, and an apply_lag_ms that is a str */
        static const uint8_t ack_lag_missing[] = {0x94, 0x02, 0x03, 0x05, 0x04};
        static const uint8_t ack_lag_str[] = {0x95, 0x02, 0x03, 0x05, 0x04, 0xa1, '1'};
        static const uint8_t chunk_past_end[] = {0x97, 0x02, 0x03, 0xa1, 'f', 0x0a,
                                                 0x0b, 0x00, 0xc4, 0x02, 'x', 'y'};
        raw("bad-entries-array32-huge", WIRE_ENTRIES, entries_array32, sizeof entries_array32);
        raw("bad-body-array32-huge", WIRE_ACK, body_array32, sizeof body_array32);
        raw("bad-journal-bin32-huge", WIRE_JOURNAL, entry_bin32, sizeof entry_bin32);
        raw("bad-hello-str32-huge", WIRE_HELLO, hello_str32, sizeof hello_str32);
        raw("bad-checkpoint-producers-array32-huge", WIRE_CHECKPOINT, producers_array32,
            sizeof producers_array32);
        raw("bad-ack-map", WIRE_ACK, ack_map, sizeof ack_map);
        raw("bad-fetch-backwards", WIRE_FETCH, fetch_backwards, sizeof fetch_backwards);
        raw("bad-ack-epoch-str", WIRE_ACK, ack_epoch_str, sizeof ack_epoch_str);
        raw("bad-snapshot-slash", WIRE_SNAPSHOT, snapshot_slash, sizeof snapshot_slash);
        raw("bad-welcome-first-past-last", WIRE_WELCOME, welcome_first_past, sizeof welcome_first_past);
        raw("valid-hello-extra-element", WIRE_HELLO, hello_extra, sizeof hello_extra);
        raw("bad-hello-monitor-int", WIRE_HELLO, hello_monitor_int, sizeof hello_monitor_int);
        raw("bad-chunk-past-end", WIRE_CHUNK, chunk_past_end, sizeof chunk_past_end);
        raw("bad-ack-lag-missing", WIRE_ACK, ack_lag_missing, sizeof ack_lag_missing);
        raw("bad-ack-lag-str", WIRE_ACK, ack_lag_str, sizeof ack_lag_str);
    }
    /* an ENTRIES reply whose seqs skip one */
    m = (struct wire_msg){.type = WIRE_ENTRIES, .epoch = 2};
    m.u.entries = (struct wire_entries){2, entries, 0};
    body = encode(&m, &len);
    {
        /* the second entry record begins with 0x92 and its seq (8): make it 9 */
        uint8_t *p = body + 4;
        for (size_t i = 4; i + 1 < len; i++)
            if (body[i] == 0x92 && body[i + 1] == 0x08)
                p = body + i + 1;
        *p = 0x09;
        raw("bad-entries-gap", WIRE_ENTRIES, body, len);
    }
    free(body);
    for (int i = 0; i < 3; i++)
        free(entry_bytes[i]);
    return 0;
}
