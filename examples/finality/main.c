/* main.c -- finality: a blockchain finality store on ringkeep, written to be
 * read and copied.  It uses <ringkeep.h> and libsodium (Ed25519) only.
 *
 * V validators (--validators, default 7) each hold an Ed25519 key made from
 * (seed, validator).  Checkpoint h (1, 2, 3 ...) has a 32-byte hash,
 * BLAKE2b(hash of h-1 || h).  Validator v signs checkpoint h (the hash)
 * with probability 7/8, and its signature arrives at step h + 0, 1 or 2: all
 * a function of (seed, h, v).  Once 2V/3+1 validators have signed h, the
 * engine forms h's certificate and h is finalized: the last finalized height
 * is the highest certified one.  Signatures and certificates of heights more
 * than --retention below the last finalized one are pruned (deleted).
 *
 *   sigs   key: height (8 bytes BE) + validator (2 bytes BE); value: the
 *          64-byte Ed25519 signature
 *   certs  key: height (8 bytes BE); value: format 1, the checkpoint hash
 *          (32), signer bitmap (8, LE), then the signers' signatures in
 *          validator order (64 each)
 *   meta   key "finalized"; value: the last finalized height (8 bytes LE)
 *
 * Step s is one atomic group (MARK(s)): the signatures arriving at s, the
 * certificates they complete, the new finalized height and the pruning.
 * Every record holds an absolute value, so a step written twice leaves the
 * state as it was.  Restart: rk_state_open (the node's data directory, or
 * with --checkpoint-dir with no node the newest checkpoint file that
 * verifies), rk_state_height = s, the tables scanned back; the last
 * finalized certificate is verified (every signature, against the signers'
 * public keys) before the engine goes on at step s + 1.
 *
 * Threads: one.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ringkeep.h>
#include <sodium.h>

#define DEFAULT_PRODUCER "finality"
#define MAX_STEPS 10000000u
#define MAX_VALIDATORS 64
#define MAX_DELAY 2
#define FULL_TIMEOUT_MS 10000
#define DURABLE_TIMEOUT_MS 60000
#define SIG_LEN crypto_sign_BYTES /* 64 */
#define HASH_LEN 32
#define CERT_HEAD (1 + HASH_LEN + 8)

enum { T_SIGS, T_CERTS, T_META, N_TABLES };
static const char *const table_name[N_TABLES] = {"sigs", "certs", "meta"};

struct height {
    unsigned char hash[HASH_LEN];
    uint64_t signers; /* bitmap of validators whose signature arrived */
    unsigned char sig[MAX_VALIDATORS][SIG_LEN];
    int certified;
};

struct engine {
    unsigned n_val, quorum;
    uint64_t steps, retention, seed;
    uint64_t step;      /* the last step applied */
    uint64_t finalized; /* the last finalized height */
    uint64_t pruned;    /* heights below this are pruned */
    unsigned char pk[MAX_VALIDATORS][crypto_sign_PUBLICKEYBYTES];
    unsigned char sk[MAX_VALIDATORS][crypto_sign_SECRETKEYBYTES];
    struct height *h; /* by height, 1..steps */
};

struct options {
    const char *ring, *data_dir, *checkpoint_dir, *producer;
    uint64_t seed, steps, retention, validators, kill_step;
    int offline;
};

static const char usage[] =
    "usage: finality --ring NAME --data-dir DIR [--producer NAME] [options]\n"
    "       finality --checkpoint-dir DIR/checkpoints [--producer NAME] [options]\n"
    "       finality --offline [options]\n"
    "options:\n"
    "  --seed S            keys, signatures' arrival (default 1)\n"
    "  --steps N           run up to step (checkpoint height) N, resumed ones included (default 300)\n"
    "  --validators V      1 to 64 (default 7); a certificate needs 2V/3+1 signatures\n"
    "  --retention R       keep signatures and certificates of the last R heights below the\n"
    "                      last finalized one (default 50)\n"
    "  --kill-at-step S    test hook: SIGKILL itself in the middle of step S's group\n"
    "A resume must use the seed, validators and retention of the first run.\n";

/* ---------------------------------------------------------------- model */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* Whether validator v signs height h, and at which step it arrives. */
static int arrival(uint64_t seed, uint64_t h, unsigned v, uint64_t *step)
{
    uint64_t r = splitmix64(splitmix64(seed ^ 0x51u) ^ splitmix64(h * 131u + v));
    *step = h + r % (MAX_DELAY + 1);
    return (r >> 8) % 8 != 0;
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static int engine_init(struct engine *e, const struct options *o)
{
    unsigned char prev[HASH_LEN] = {0}, buf[HASH_LEN + 8], kseed[crypto_sign_SEEDBYTES];

    memset(e, 0, sizeof *e);
    e->n_val = (unsigned)o->validators;
    e->quorum = 2 * e->n_val / 3 + 1;
    e->steps = o->steps;
    e->retention = o->retention;
    e->seed = o->seed;
    e->pruned = 1;
    e->h = calloc(o->steps + 1, sizeof *e->h);
    if (!e->h)
        return ENOMEM;
    for (unsigned v = 0; v < e->n_val; v++) {
        for (int i = 0; i < (int)sizeof kseed; i += 8)
            put_be(kseed + i, splitmix64(o->seed * 1000003u + v * 8u + (unsigned)i), 8);
        crypto_sign_seed_keypair(e->pk[v], e->sk[v], kseed);
    }
    for (uint64_t h = 1; h <= o->steps; h++) {
        memcpy(buf, prev, HASH_LEN);
        put_be(buf + HASH_LEN, h, 8);
        crypto_generichash(e->h[h].hash, HASH_LEN, buf, sizeof buf, NULL, 0);
        memcpy(prev, e->h[h].hash, HASH_LEN);
    }
    return 0;
}

struct sink {
    int (*put)(void *arg, int table, const void *key, uint32_t klen, const void *val, uint32_t vlen);
    int (*del)(void *arg, int table, const void *key, uint32_t klen);
    void *arg;
};

static uint32_t encode_cert(const struct engine *e, uint64_t h, unsigned char *out)
{
    const struct height *x = &e->h[h];
    uint32_t n = CERT_HEAD;
    out[0] = 1;
    memcpy(out + 1, x->hash, HASH_LEN);
    for (int i = 0; i < 8; i++)
        out[1 + HASH_LEN + i] = (unsigned char)(x->signers >> (8 * i));
    for (unsigned v = 0; v < e->n_val; v++)
        if (x->signers >> v & 1)
            memcpy(out + n, x->sig[v], SIG_LEN), n += SIG_LEN;
    return n;
}

/* Step s = e->step + 1. */
static int engine_step(struct engine *e, const struct sink *out)
{
    uint64_t s = e->step + 1, at;
    unsigned char key[10], cert[CERT_HEAD + MAX_VALIDATORS * SIG_LEN], fin[8];
    int rc = 0;

    for (uint64_t h = s > MAX_DELAY ? s - MAX_DELAY : 1; h <= s && !rc; h++) {
        struct height *x = &e->h[h];
        unsigned n = 0;
        if (h < e->pruned)
            continue;
        for (unsigned v = 0; v < e->n_val && !rc; v++) {
            if (!arrival(e->seed, h, v, &at) || at != s)
                continue;
            crypto_sign_detached(x->sig[v], NULL, x->hash, HASH_LEN, e->sk[v]);
            x->signers |= 1ull << v;
            put_be(key, h, 8);
            put_be(key + 8, v, 2);
            if (out)
                rc = out->put(out->arg, T_SIGS, key, 10, x->sig[v], SIG_LEN);
        }
        for (unsigned v = 0; v < e->n_val; v++)
            n += x->signers >> v & 1;
        if (!rc && !x->certified && n >= e->quorum) {
            x->certified = 1;
            put_be(key, h, 8);
            if (out)
                rc = out->put(out->arg, T_CERTS, key, 8, cert, encode_cert(e, h, cert));
            if (h > e->finalized) {
                e->finalized = h;
                for (int i = 0; i < 8; i++)
                    fin[i] = (unsigned char)(h >> (8 * i));
                if (out && !rc)
                    rc = out->put(out->arg, T_META, "finalized", 9, fin, 8);
            }
        }
    }
    /* prune: everything of heights below finalized - retention */
    while (!rc && e->finalized > e->retention && e->pruned < e->finalized - e->retention) {
        struct height *x = &e->h[e->pruned];
        put_be(key, e->pruned, 8);
        for (unsigned v = 0; v < e->n_val && !rc; v++)
            if (x->signers >> v & 1) {
                put_be(key + 8, v, 2);
                if (out)
                    rc = out->del(out->arg, T_SIGS, key, 10);
            }
        if (!rc && x->certified && out)
            rc = out->del(out->arg, T_CERTS, key, 8);
        x->signers = 0;
        x->certified = 0;
        e->pruned++;
    }
    e->step = s;
    return rc;
}

/* The output: what a finality store holds, deterministically. */
static void engine_print(const struct engine *e, FILE *f)
{
    unsigned char cert[CERT_HEAD + MAX_VALIDATORS * SIG_LEN];
    unsigned char d[16];
    crypto_generichash_state st;

    fprintf(f, "step %" PRIu64 " finalized %" PRIu64 " retained-from %" PRIu64 "\n", e->step, e->finalized,
            e->pruned);
    for (uint64_t h = e->pruned; h <= e->step; h++) {
        const struct height *x = &e->h[h];
        uint32_t n = encode_cert(e, h, cert);
        crypto_generichash_init(&st, NULL, 0, sizeof d);
        crypto_generichash_update(&st, cert, n);
        crypto_generichash_final(&st, d, sizeof d);
        fprintf(f, "%" PRIu64 " %s signers %016" PRIx64 " digest ", h, x->certified ? "cert" : "open",
                x->signers);
        for (size_t i = 0; i < sizeof d; i++)
            fprintf(f, "%02x", d[i]);
        fputc('\n', f);
    }
}

/* ---------------------------------------------------------------- restore */

struct loader {
    struct engine *e;
    int table;
    uint64_t n;
    const char *why;
};

static int load_record(void *arg, const void *k, uint32_t klen, const void *v, uint32_t vlen)
{
    struct loader *l = arg;
    struct engine *e = l->e;
    const unsigned char *key = k, *val = v;
    uint64_t h = klen >= 8 ? get_be(key, 8) : 0;

    l->why = "a key or value this engine does not write (other --validators or --steps?)";
    if (l->table == T_META) {
        if (klen != 9 || memcmp(k, "finalized", 9) || vlen != 8)
            return EINVAL;
        e->finalized = 0;
        for (int i = 7; i >= 0; i--)
            e->finalized = e->finalized << 8 | val[i];
        if (e->finalized > e->steps)
            return EINVAL;
    } else if (h == 0 || h > e->steps) {
        return EINVAL;
    } else if (l->table == T_SIGS) {
        uint64_t vi = klen == 10 ? get_be(key + 8, 2) : MAX_VALIDATORS;
        if (vi >= e->n_val || vlen != SIG_LEN)
            return EINVAL;
        memcpy(e->h[h].sig[vi], val, SIG_LEN);
        e->h[h].signers |= 1ull << vi;
    } else {
        if (klen != 8 || vlen < CERT_HEAD || val[0] != 1 || memcmp(val + 1, e->h[h].hash, HASH_LEN))
            return EINVAL;
        e->h[h].certified = 1;
    }
    l->n++;
    l->why = NULL;
    return 0;
}

/* Verifies the certificate of height h as stored: hash, quorum, signatures. */
static int verify_cert(rk_state *s, const struct engine *e, uint64_t h)
{
    unsigned char key[8];
    void *val = NULL;
    uint32_t vlen = 0, off = CERT_HEAD;
    uint64_t signers = 0;
    unsigned n = 0;
    int rc;

    put_be(key, h, 8);
    rc = rk_state_get(s, "certs", key, 8, &val, &vlen);
    if (rc)
        return rc;
    const unsigned char *p = val;
    rc = RK_ECORRUPT;
    if (vlen >= CERT_HEAD && p[0] == 1 && !memcmp(p + 1, e->h[h].hash, HASH_LEN)) {
        for (int i = 7; i >= 0; i--)
            signers = signers << 8 | p[1 + HASH_LEN + i];
        rc = 0;
        for (unsigned v = 0; v < e->n_val && !rc; v++) {
            if (!(signers >> v & 1))
                continue;
            if (off + SIG_LEN > vlen || crypto_sign_verify_detached(p + off, p + 1, HASH_LEN, e->pk[v]))
                rc = RK_ECORRUPT;
            off += SIG_LEN, n++;
        }
        if (!rc && (n < e->quorum || off != vlen || signers >> e->n_val))
            rc = RK_ECORRUPT;
    }
    free(val);
    return rc;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Rebuilds e from s at producer's height; t0 is when the restore began
 * (rk_state_open included), for the restore time printed on stderr. */
static int restore(struct engine *e, rk_state *s, const char *producer, const char *source,
                   const struct timespec *t0)
{
    uint64_t step = 0, n[N_TABLES] = {0, 0, 0};
    int rc = rk_state_height(s, producer, &step);

    if (rc == RK_ENOTFOUND)
        step = 0, rc = 0;
    if (!rc && step > e->steps) {
        fprintf(stderr, "finality: %s is at step %" PRIu64 ", past --steps %" PRIu64 "\n", source, step,
                e->steps);
        return RK_EINVAL;
    }
    for (int t = 0; t < N_TABLES && !rc; t++) {
        struct loader l = {.e = e, .table = t};
        rc = rk_state_scan(s, table_name[t], NULL, 0, load_record, &l);
        if (rc && l.why)
            fprintf(stderr, "finality: table %s in %s: %s\n", table_name[t], source, l.why);
        n[t] = l.n;
    }
    if (!rc && e->finalized && (rc = verify_cert(s, e, e->finalized)))
        fprintf(stderr,
                "finality: the certificate of finalized height %" PRIu64 " in %s does not verify: %s\n",
                e->finalized, source, rk_strerror(rc));
    if (rc) {
        fprintf(stderr, "finality: cannot restore from %s: %s\n", source, rk_strerror(rc));
        return rc;
    }
    e->step = step;
    e->pruned = e->finalized > e->retention ? e->finalized - e->retention : 1;
    fprintf(stderr,
            "finality: resuming at step %" PRIu64 " from %s (finalized %" PRIu64 ", %" PRIu64
            " certificates, %" PRIu64 " signatures; restore %.1f ms)\n",
            step + 1, source, e->finalized, n[T_CERTS], n[T_SIGS], ms_since(t0));
    return 0;
}

static int restore_from_checkpoints(struct engine *e, const char *dir, const char *producer)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort), rc = RK_ENOTFOUND;

    if (n < 0) {
        rc = errno;
        fprintf(stderr, "finality: --checkpoint-dir %s: %s\n", dir, strerror(rc));
        return rc;
    }
    for (int i = n - 1; i >= 0 && rc; i--) {
        const char *name = names[i]->d_name;
        size_t len = strlen(name);
        char path[4096];
        rk_state *s = NULL;
        struct timespec t0;
        if (name[0] == '.' || len < 6 || strcmp(name + len - 5, ".rkcp") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = rk_state_open(path, &s);
        if (rc) {
            fprintf(stderr, "finality: skipping checkpoint %s: %s\n", path, rk_strerror(rc));
            continue;
        }
        rc = restore(e, s, producer, path, &t0);
        rk_state_close(s);
        if (rc)
            break;
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc == RK_ENOTFOUND)
        fprintf(stderr, "finality: no checkpoint file in %s that verifies\n", dir);
    return rc;
}

/* ---------------------------------------------------------------- the ring */

struct ring_sink {
    rk_ring *ring;
    uint16_t table_id[N_TABLES];
    uint64_t kill_step, step, n_records;
};

/* The --kill-at-step hook: after a record of the step, or before its MARK
 * when the step has none (count 0: called before the MARK). */
static void maybe_die(struct ring_sink *rs, int count)
{
    if ((rs->n_records += (uint64_t)count, rs->step == rs->kill_step)) {
        fprintf(stderr, "finality: --kill-at-step %" PRIu64 ": SIGKILL after %" PRIu64 " records of it\n",
                rs->kill_step, rs->n_records);
        raise(SIGKILL);
    }
}

static int ring_put(void *arg, int table, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    struct ring_sink *rs = arg;
    int rc = rk_put(rs->ring, rs->table_id[table], key, klen, val, vlen, NULL);
    if (!rc)
        maybe_die(rs, 1);
    return rc;
}

static int ring_del(void *arg, int table, const void *key, uint32_t klen)
{
    struct ring_sink *rs = arg;
    int rc = rk_del(rs->ring, rs->table_id[table], key, klen, NULL);
    if (!rc)
        maybe_die(rs, 1);
    return rc;
}

static int run_on_ring(struct engine *e, const struct options *o)
{
    char why[256] = "";
    rk_ring_opts ro = {.producer = o->producer,
                       .full_policy = RK_FULL_WAIT,
                       .full_timeout_ms = FULL_TIMEOUT_MS,
                       .errmsg = why,
                       .errmsg_size = sizeof why};
    struct ring_sink rs = {.kill_step = o->kill_step};
    const struct sink sink = {ring_put, ring_del, &rs};
    rk_state *s = NULL;
    uint64_t mark_lsn = 0, first;
    struct timespec t0;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = rk_state_open(o->data_dir, &s);
    if (rc) {
        fprintf(stderr, "finality: cannot open the node's state in %s: %s\n", o->data_dir, rk_strerror(rc));
        return rc;
    }
    rc = restore(e, s, o->producer, o->data_dir, &t0);
    rk_state_close(s);
    if (rc)
        return rc;
    rc = rk_ring_attach(o->ring, &ro, &rs.ring);
    if (rc) {
        fprintf(stderr, "finality: cannot attach to ring %s: %s: %s\n", o->ring, rk_strerror(rc), why);
        return rc;
    }
    for (int t = 0; t < N_TABLES && !rc; t++)
        if ((rc = rk_table(rs.ring, table_name[t], &rs.table_id[t])))
            fprintf(stderr, "finality: table %s: %s\n", table_name[t], rk_strerror(rc));
    first = e->step;
    while (!rc && e->step < o->steps) {
        rs.step = e->step + 1;
        rs.n_records = 0;
        rc = engine_step(e, &sink);
        if (!rc)
            maybe_die(&rs, 0);
        if (!rc)
            rc = rk_mark(rs.ring, e->step, &mark_lsn);
        if (rc)
            fprintf(stderr, "finality: step %" PRIu64 ": %s\n", rs.step, rk_strerror(rc));
    }
    if (!rc && e->step > first && (rc = rk_wait(rs.ring, mark_lsn, RK_DURABLE, DURABLE_TIMEOUT_MS)))
        fprintf(stderr, "finality: step %" PRIu64 " is not durable after %d s (%s): is the node running?\n",
                e->step, DURABLE_TIMEOUT_MS / 1000, rk_strerror(rc));
    rk_ring_detach(rs.ring);
    return rc;
}

/* ---------------------------------------------------------------- main */

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (strcmp(a, "--offline") == 0)
            o->offline = 1;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        } else if (!v)
            ok = 0;
        else if (i++, strcmp(a, "--ring") == 0)
            o->ring = v;
        else if (strcmp(a, "--data-dir") == 0)
            o->data_dir = v;
        else if (strcmp(a, "--checkpoint-dir") == 0)
            o->checkpoint_dir = v;
        else if (strcmp(a, "--producer") == 0)
            o->producer = v;
        else if (strcmp(a, "--seed") == 0)
            ok = parse_u64(v, UINT64_MAX, &o->seed) == 0;
        else if (strcmp(a, "--steps") == 0)
            ok = parse_u64(v, MAX_STEPS, &o->steps) == 0;
        else if (strcmp(a, "--validators") == 0)
            ok = parse_u64(v, MAX_VALIDATORS, &o->validators) == 0 && o->validators > 0;
        else if (strcmp(a, "--retention") == 0)
            ok = parse_u64(v, MAX_STEPS, &o->retention) == 0 && o->retention > 0;
        else if (strcmp(a, "--kill-at-step") == 0)
            ok = parse_u64(v, MAX_STEPS, &o->kill_step) == 0 && o->kill_step > 0;
        else
            ok = 0;
        if (!ok) {
            fprintf(stderr, "finality: bad option %s%s%s\n%s", a, v ? " " : "", v ? v : "", usage);
            return -1;
        }
    }
    if (o->offline + !!o->checkpoint_dir + !!o->ring != 1 || !o->ring != !o->data_dir) {
        fprintf(stderr, "finality: give one of --ring with --data-dir, --checkpoint-dir, --offline\n%s",
                usage);
        return -1;
    }
    if (o->kill_step && !o->ring) {
        fprintf(stderr, "finality: --kill-at-step kills a run on a ring\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {
        .producer = DEFAULT_PRODUCER, .seed = 1, .steps = 300, .retention = 50, .validators = 7};
    struct engine e;
    int rc;

    if (parse_options(argc, argv, &o) != 0)
        return 2;
    if (sodium_init() < 0) {
        fprintf(stderr, "finality: libsodium failed to initialize\n");
        return 1;
    }
    rc = engine_init(&e, &o);
    if (rc)
        fprintf(stderr, "finality: out of memory for %" PRIu64 " steps\n", o.steps);
    else if (o.ring)
        rc = run_on_ring(&e, &o);
    else if (o.checkpoint_dir && (rc = restore_from_checkpoints(&e, o.checkpoint_dir, o.producer)))
        ;
    else
        while (!rc && e.step < o.steps)
            rc = engine_step(&e, NULL);
    if (!rc)
        engine_print(&e, stdout);
    free(e.h);
    return rc ? 1 : 0;
}
