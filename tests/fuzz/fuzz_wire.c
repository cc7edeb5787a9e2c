/* fuzz_wire.c -- libFuzzer target for the replication wire decoder
 * (wire_decode, replicator/wire.c).
 *
 * Input: the first byte picks the message name (its value modulo the
 * number of types; the types' first frames are "rk.j", "rk.c", ... in enum
 * wire_type order), the rest is the body.  Each body is decoded from a
 * heap block of exactly its size, so a read past the end is an ASan report.
 *
 * What must hold: a refusal is RK_ECORRUPT or RK_EVERSION (or ENOMEM) with
 * a one-line reason and leaves nothing allocated; an accepted message keeps
 * every rule, so the encoder takes it back (wire_encode refuses anything
 * that breaks a rule), and its encoding decodes to a message that encodes
 * to the same bytes again (the encoder's output is a fixed point).
 *
 * Threads: one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/wire.h"
#include "fuzz_require.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wire_msg m, back;
    enum wire_type type;
    const char *name;
    uint8_t *body, *enc = NULL, *enc2 = NULL;
    size_t body_len, enc_len, enc2_len;
    char why[512] = "";
    int rc;

    if (size < 1)
        return 0;
    type = (enum wire_type)(data[0] % WIRE_N_TYPES);
    name = wire_type_name(type);
    body_len = size - 1;
    body = malloc(body_len ? body_len : 1);
    if (!body)
        abort();
    memcpy(body, data + 1, body_len);
    rc = wire_decode(name, strlen(name), body, body_len, &m, why, sizeof why);
    if (rc != 0) {
        REQUIRE(rc == RK_ECORRUPT || rc == RK_EVERSION || rc == ENOMEM);
        REQUIRE(why[0] != '\0' && strlen(why) < sizeof why);
        free(body);
        return 0;
    }
    REQUIRE(m.type == type && m.epoch >= 1);
    rc = wire_encode(&m, &enc, &enc_len, why, sizeof why);
    if (rc != 0)
        fprintf(stderr, "accepted but not encodable: %s\n", why);
    REQUIRE(rc == 0);
    REQUIRE(enc_len <= body_len); /* shortest forms, extra elements dropped */
    rc = wire_decode(name, strlen(name), enc, enc_len, &back, why, sizeof why);
    REQUIRE(rc == 0);
    /* HELLO's optional monitor flag (issue 14) is a bool and survives the round trip */
    REQUIRE(type != WIRE_HELLO || ((m.u.hello.monitor == 0 || m.u.hello.monitor == 1) &&
                                   back.u.hello.monitor == m.u.hello.monitor));
    REQUIRE(wire_encode(&back, &enc2, &enc2_len, why, sizeof why) == 0);
    REQUIRE(enc2_len == enc_len && memcmp(enc, enc2, enc_len) == 0);
    wire_msg_free(&back);
    wire_msg_free(&m);
    free(enc2);
    free(enc);
    free(body);
    return 0;
}
