/* engine.c -- the tiny engine tests/install_test.sh builds against an
 * installed ringkeep (pkg-config and find_package), using <ringkeep.h>
 * only.
 *
 *   engine RING DATA_DIR PRODUCER N
 *
 * Writes N PUTs to table "install" (key "PRODUCER/i", a value of 1 to 300
 * bytes made from i) in groups of 10, each ended by MARK(group), waits
 * until the last is durable, detaches; then opens the node's state
 * (rk_state_open on DATA_DIR: the running node answers) and checks that
 * every value reads back byte for byte and that the producer's height is
 * the last group's.  Prints one line and exits 0, or names the first
 * difference and exits 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ringkeep.h>

#define GROUP 10

static uint32_t make_value(unsigned i, unsigned char *val)
{
    uint32_t len = 1 + (i * 7919u) % 300u;

    for (uint32_t j = 0; j < len; j++)
        val[j] = (unsigned char)(i * 31u + j * 17u + (i >> 8));
    return len;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "engine: %s: %s\n", what, rk_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    char key[96], errmsg[256] = "";
    unsigned char val[300];
    uint64_t lsn = 0, height = 0;
    rk_ring *r = NULL;
    rk_state *s = NULL;
    uint16_t table;
    unsigned n, i;
    int rc;

    if (argc != 5) {
        fprintf(stderr, "usage: engine RING DATA_DIR PRODUCER N\n");
        return 2;
    }
    n = (unsigned)strtoul(argv[4], NULL, 10);
    rk_ring_opts opts = {.producer = argv[3], .errmsg = errmsg, .errmsg_size = sizeof errmsg};
    rc = rk_ring_attach(argv[1], &opts, &r);
    if (rc) {
        fprintf(stderr, "engine: attach %s: %s (%s)\n", argv[1], rk_strerror(rc), errmsg);
        return 1;
    }
    rc = rk_table(r, "install", &table);
    if (rc)
        return fail("rk_table", rc);
    for (i = 0; i < n; i++) {
        uint32_t vlen = make_value(i, val);
        int klen = snprintf(key, sizeof key, "%s/%u", argv[3], i);

        rc = rk_put(r, table, key, (uint32_t)klen, val, vlen, NULL);
        if (rc)
            return fail("rk_put", rc);
        if (i % GROUP == GROUP - 1 || i == n - 1) {
            rc = rk_mark(r, i / GROUP + 1, &lsn);
            if (rc)
                return fail("rk_mark", rc);
        }
    }
    rc = rk_wait(r, lsn, RK_DURABLE, 60000); /* a hang guard, not a time limit on the node */
    if (rc)
        return fail("rk_wait durable", rc);
    rk_ring_detach(r);

    rc = rk_state_open(argv[2], &s);
    if (rc)
        return fail("rk_state_open", rc);
    for (i = 0; i < n; i++) {
        unsigned char want[300];
        uint32_t want_len = make_value(i, want), got_len = 0;
        int klen = snprintf(key, sizeof key, "%s/%u", argv[3], i);
        void *got = NULL;

        rc = rk_state_get(s, "install", key, (uint32_t)klen, &got, &got_len);
        if (rc) {
            fprintf(stderr, "engine: %s missing from the state: %s\n", key, rk_strerror(rc));
            return 1;
        }
        if (got_len != want_len || memcmp(got, want, want_len) != 0) {
            fprintf(stderr, "engine: %s reads back %u bytes, not the %u written\n", key, got_len, want_len);
            return 1;
        }
        free(got);
    }
    rc = rk_state_height(s, argv[3], &height);
    if (rc)
        return fail("rk_state_height", rc);
    if (height != (n + GROUP - 1) / GROUP) {
        fprintf(stderr, "engine: height %llu, not %u\n", (unsigned long long)height, (n + GROUP - 1) / GROUP);
        return 1;
    }
    rk_state_close(s);
    printf("engine: %s wrote %u records and read them back (height %llu, libringkeep %s)\n", argv[3], n,
           (unsigned long long)height, rk_version(NULL, NULL, NULL));
    return 0;
}
