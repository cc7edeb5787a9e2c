/* main.c -- backtest: a multi-timeframe tick backtest on ringkeep, written to
 * be read and copied.  It uses nothing but <ringkeep.h>.
 *
 * Tick t (1, 2, 3 ...) happens at second 2t; its price move and volume are a
 * function of (seed, t) alone, the price a random walk from 100000.  The
 * engine keeps OHLCV bars of three timeframes (1m, 5m, 1h), the last one of
 * each partial, and an EMA(10) of each timeframe's closes, updated when a bar
 * closes.  Everything it keeps is in two ringkeep tables:
 *
 *   bars   key: timeframe (1 byte: 0 = 1m, 1 = 5m, 2 = 1h) + bar index
 *              (8 bytes, big-endian; the bar starts at second index * span)
 *          value: format 1, open, high, low, close (int64), volume (uint64),
 *              ticks (uint32), little-endian: 45 bytes
 *   ema    key: timeframe + index of the bar whose close it folded in
 *          value: format 1, EMA scaled by 10^4 (int64), closes folded in
 *              (uint64), little-endian: 17 bytes
 *
 * A tick's records (its three bars, and the EMA of each bar it closed) and
 * MARK(t) are one atomic group.  Every record holds an absolute value, so a
 * tick written twice leaves the state as it was.
 *
 *   start   rk_state_open(data dir, or with --checkpoint-dir the newest
 *           checkpoint file that verifies), rk_state_height(producer) = h,
 *           both tables scanned back into memory; the price is the close
 *           of tick h's 1m bar, each EMA the one of the newest closed bar
 *   run     ticks h+1 .. --ticks, each one group (unless --offline or
 *           --checkpoint-dir: then in memory only)
 *   exit    rk_wait(last MARK, RK_DURABLE); the node's state is read again
 *           and must hold exactly the bars and EMAs in memory; then the
 *           bars and EMAs are printed, in order, to stdout
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

#include <ringkeep.h>

#define DEFAULT_PRODUCER "backtest"
#define MAX_TICKS 100000000u /* --ticks bound: 2e8 s of ticks */
#define SECONDS_PER_TICK 2u
#define START_PRICE 100000
#define EMA_PERIOD 10
#define EMA_SCALE 10000
#define FULL_TIMEOUT_MS 10000    /* longest wait for room in the ring */
#define DURABLE_TIMEOUT_MS 60000 /* longest wait for the last tick to be durable */
#define N_TF 3
#define BAR_VLEN 45
#define EMA_VLEN 17
#define KEY_LEN 9

static const uint32_t tf_span[N_TF] = {60, 300, 3600};
static const char *const tf_name[N_TF] = {"1m", "5m", "1h"};

struct bar {
    int64_t open, high, low, close;
    uint64_t volume;
    uint32_t ticks; /* 0: no such bar */
};

struct ema {
    int64_t value;  /* scaled by EMA_SCALE */
    uint64_t count; /* 0: no EMA for this bar */
};

struct engine {
    uint64_t tick; /* the last tick applied */
    int64_t price; /* its price */
    uint64_t n_bars[N_TF];
    struct bar *bars[N_TF];   /* by bar index */
    struct ema *emas[N_TF];   /* by index of the bar closed */
    struct ema ema_now[N_TF]; /* the newest EMA of each timeframe */
};

struct options {
    const char *ring, *data_dir, *checkpoint_dir, *producer;
    uint64_t seed, ticks, kill_tick, kill_record;
    int offline;
};

static const char usage[] =
    "usage: backtest --ring NAME --data-dir DIR [--producer NAME] [options]\n"
    "       backtest --checkpoint-dir DIR/checkpoints [--producer NAME] [options]\n"
    "       backtest --offline [options]\n"
    "options:\n"
    "  --seed S              the tick stream (default 1)\n"
    "  --ticks N             run up to tick N, restored ticks included (default 3000)\n"
    "  --kill-at-tick T      test hook: SIGKILL itself in the middle of tick T's group\n"
    "  --kill-at-record K    ... after K of its records (default 1)\n"
    "With --ring the engine resumes after the last tick the node applied for the\n"
    "producer (default \"" DEFAULT_PRODUCER "\"); with --checkpoint-dir, with no node, after the\n"
    "tick of the newest checkpoint file there that verifies, and runs in memory.\n";

/* ---------------------------------------------------------------- ticks */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static void gen_tick(uint64_t seed, uint64_t t, int64_t *move, uint64_t *volume)
{
    uint64_t r = splitmix64(seed * 0x100000001b3u ^ splitmix64(t));
    *move = (int64_t)(r % 201) - 100;
    *volume = 1 + (r >> 32) % 50;
}

/* ---------------------------------------------------------------- encoding */

static void put_u64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void make_key(unsigned char key[KEY_LEN], int tf, uint64_t index)
{
    key[0] = (unsigned char)tf;
    for (int i = 0; i < 8; i++)
        key[1 + i] = (unsigned char)(index >> (56 - 8 * i));
}

static int parse_key(const void *k, uint32_t klen, int *tf, uint64_t *index)
{
    const unsigned char *p = k;
    if (klen != KEY_LEN || p[0] >= N_TF)
        return -1;
    *tf = p[0];
    *index = 0;
    for (int i = 0; i < 8; i++)
        *index = *index << 8 | p[1 + i];
    return 0;
}

static void encode_bar(unsigned char v[BAR_VLEN], const struct bar *b)
{
    v[0] = 1;
    put_u64le(v + 1, (uint64_t)b->open);
    put_u64le(v + 9, (uint64_t)b->high);
    put_u64le(v + 17, (uint64_t)b->low);
    put_u64le(v + 25, (uint64_t)b->close);
    put_u64le(v + 33, b->volume);
    for (int i = 0; i < 4; i++)
        v[41 + i] = (unsigned char)(b->ticks >> (8 * i));
}

static void encode_ema(unsigned char v[EMA_VLEN], const struct ema *e)
{
    v[0] = 1;
    put_u64le(v + 1, (uint64_t)e->value);
    put_u64le(v + 9, e->count);
}

/* ---------------------------------------------------------------- engine */

static int engine_init(struct engine *e, uint64_t ticks)
{
    memset(e, 0, sizeof *e);
    e->price = START_PRICE;
    for (int tf = 0; tf < N_TF; tf++) {
        e->n_bars[tf] = ticks * SECONDS_PER_TICK / tf_span[tf] + 1;
        e->bars[tf] = calloc(e->n_bars[tf], sizeof *e->bars[tf]);
        e->emas[tf] = calloc(e->n_bars[tf], sizeof *e->emas[tf]);
        if (!e->bars[tf] || !e->emas[tf])
            return ENOMEM;
    }
    return 0;
}

static void engine_free(struct engine *e)
{
    for (int tf = 0; tf < N_TF; tf++) {
        free(e->bars[tf]);
        free(e->emas[tf]);
    }
}

/* Where a tick's records go: put(table 0 = bars, 1 = ema). */
struct sink {
    int (*put)(void *arg, int table, const unsigned char *key, const unsigned char *val, uint32_t vlen);
    void *arg;
};

/* Applies tick t = e->tick + 1: closes the bars it leaves (folding their
 * closes into the EMAs), updates the bars it falls in. */
static int engine_tick(struct engine *e, uint64_t seed, const struct sink *out)
{
    uint64_t t = e->tick + 1, volume, second = t * SECONDS_PER_TICK;
    int64_t move;
    unsigned char key[KEY_LEN], val[BAR_VLEN];
    int rc = 0;

    gen_tick(seed, t, &move, &volume);
    e->price += move;
    if (e->price < 1)
        e->price = 1;
    for (int tf = 0; tf < N_TF && !rc; tf++) {
        uint64_t idx = second / tf_span[tf], prev = (second - SECONDS_PER_TICK) / tf_span[tf];
        struct bar *b = &e->bars[tf][idx];
        if (t > 1 && prev != idx) { /* tick t closes bar prev */
            struct ema *now = &e->ema_now[tf];
            int64_t close = e->bars[tf][prev].close * EMA_SCALE;
            now->value = now->count ? now->value + (close - now->value) * 2 / (EMA_PERIOD + 1) : close;
            now->count++;
            e->emas[tf][prev] = *now;
            make_key(key, tf, prev);
            encode_ema(val, now);
            if (out)
                rc = out->put(out->arg, 1, key, val, EMA_VLEN);
        }
        if (b->ticks == 0)
            *b = (struct bar){e->price, e->price, e->price, e->price, 0, 0};
        b->high = e->price > b->high ? e->price : b->high;
        b->low = e->price < b->low ? e->price : b->low;
        b->close = e->price;
        b->volume += volume;
        b->ticks++;
        make_key(key, tf, idx);
        encode_bar(val, b);
        if (out && !rc)
            rc = out->put(out->arg, 0, key, val, BAR_VLEN);
    }
    e->tick = t;
    return rc;
}

static void engine_print(const struct engine *e, FILE *f)
{
    fprintf(f, "tick %" PRIu64 " price %" PRId64 "\n", e->tick, e->price);
    for (int tf = 0; tf < N_TF; tf++)
        for (uint64_t i = 0; i < e->n_bars[tf]; i++) {
            const struct bar *b = &e->bars[tf][i];
            const struct ema *m = &e->emas[tf][i];
            if (!b->ticks)
                continue;
            fprintf(f,
                    "%s %6" PRIu64 " O %" PRId64 " H %" PRId64 " L %" PRId64 " C %" PRId64 " V %" PRIu64
                    " n %u",
                    tf_name[tf], i * tf_span[tf], b->open, b->high, b->low, b->close, b->volume, b->ticks);
            if (m->count)
                fprintf(f, " ema%d %" PRId64 ".%04" PRId64, EMA_PERIOD, m->value / EMA_SCALE,
                        m->value % EMA_SCALE);
            fputc('\n', f);
        }
}

/* ---------------------------------------------------------------- restore */

struct loader {
    struct engine *e;
    int table; /* 0 = bars, 1 = ema */
    uint64_t n;
    int compare; /* 1: check against e instead of loading into it */
    const char *why;
};

static int load_record(void *arg, const void *k, uint32_t klen, const void *v, uint32_t vlen)
{
    struct loader *l = arg;
    const unsigned char *p = v;
    int tf;
    uint64_t idx;

    if (parse_key(k, klen, &tf, &idx) || idx >= l->e->n_bars[tf]) {
        l->why = "a key this engine does not write, or a bar past --ticks";
        return EINVAL;
    }
    if (l->table == 0) {
        unsigned char mine[BAR_VLEN];
        struct bar b = {(int64_t)get_u64le(p + 1),
                        (int64_t)get_u64le(p + 9),
                        (int64_t)get_u64le(p + 17),
                        (int64_t)get_u64le(p + 25),
                        0,
                        0};
        if (vlen != BAR_VLEN || p[0] != 1) {
            l->why = "a bar value of another format";
            return EINVAL;
        }
        b.volume = get_u64le(p + 33);
        b.ticks = (uint32_t)p[41] | (uint32_t)p[42] << 8 | (uint32_t)p[43] << 16 | (uint32_t)p[44] << 24;
        if (l->compare) {
            encode_bar(mine, &l->e->bars[tf][idx]);
            if (memcmp(mine, p, BAR_VLEN)) {
                l->why = "a bar differs";
                return EINVAL;
            }
        } else
            l->e->bars[tf][idx] = b;
    } else {
        unsigned char mine[EMA_VLEN];
        struct ema m = {(int64_t)get_u64le(p + 1), get_u64le(p + 9)};
        if (vlen != EMA_VLEN || p[0] != 1 || m.count == 0) {
            l->why = "an EMA value of another format";
            return EINVAL;
        }
        if (l->compare) {
            encode_ema(mine, &l->e->emas[tf][idx]);
            if (memcmp(mine, p, EMA_VLEN)) {
                l->why = "an EMA differs";
                return EINVAL;
            }
        } else
            l->e->emas[tf][idx] = m;
    }
    l->n++;
    return 0;
}

static const char *const table_name[2] = {"bars", "ema"};

/* Rebuilds e from s at producer's height; the EMA of each timeframe is the
 * one of its newest closed bar. */
static int restore(struct engine *e, rk_state *s, const char *producer, const char *source)
{
    uint64_t h = 0, n[2];
    int rc = rk_state_height(s, producer, &h);

    if (rc == RK_ENOTFOUND)
        h = 0, rc = 0;
    if (!rc && h > MAX_TICKS)
        rc = RK_EINVAL;
    for (int t = 0; t < 2 && !rc; t++) {
        struct loader l = {.e = e, .table = t};
        rc = rk_state_scan(s, table_name[t], NULL, 0, load_record, &l);
        if (rc && l.why)
            fprintf(stderr, "backtest: table %s in %s: %s\n", table_name[t], source, l.why);
        n[t] = l.n;
    }
    if (rc) {
        fprintf(stderr, "backtest: cannot restore from %s: %s\n", source, rk_strerror(rc));
        return rc;
    }
    e->tick = h;
    if (h) {
        const struct bar *b = &e->bars[0][h * SECONDS_PER_TICK / tf_span[0]];
        if (!b->ticks) {
            fprintf(stderr,
                    "backtest: %s is at tick %" PRIu64 " but holds no bar of it: not this engine's state\n",
                    source, h);
            return RK_ECORRUPT;
        }
        e->price = b->close;
        for (int tf = 0; tf < N_TF; tf++)
            for (uint64_t i = h * SECONDS_PER_TICK / tf_span[tf]; i-- > 0;)
                if (e->emas[tf][i].count) {
                    e->ema_now[tf] = e->emas[tf][i];
                    break;
                }
    } else if (n[0] || n[1]) {
        fprintf(stderr, "backtest: %s has no tick of producer %s but holds bars: not this engine's state\n",
                source, producer);
        return RK_ECORRUPT;
    }
    fprintf(stderr,
            "backtest: resuming at tick %" PRIu64 " from %s (tick %" PRIu64 " applied, %" PRIu64
            " bars, %" PRIu64 " EMAs)\n",
            h + 1, source, h, n[0], n[1]);
    return 0;
}

/* The newest checkpoint file of dir that verifies (names are the journal
 * sequence, zero-padded, so the newest sorts last); an older one if the
 * newest is damaged. */
static int restore_from_checkpoints(struct engine *e, const char *dir, const char *producer)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort), rc = RK_ENOTFOUND;

    if (n < 0) {
        rc = errno;
        fprintf(stderr, "backtest: --checkpoint-dir %s: %s\n", dir, strerror(rc));
        return rc;
    }
    for (int i = n - 1; i >= 0 && rc; i--) {
        const char *name = names[i]->d_name;
        size_t len = strlen(name);
        char path[4096];
        rk_state *s = NULL;
        if (name[0] == '.' || len < 6 || strcmp(name + len - 5, ".rkcp") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        rc = rk_state_open(path, &s);
        if (rc) {
            fprintf(stderr, "backtest: skipping checkpoint %s: %s\n", path, rk_strerror(rc));
            continue;
        }
        rc = restore(e, s, producer, path);
        rk_state_close(s);
        if (rc)
            break;
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc == RK_ENOTFOUND)
        fprintf(stderr, "backtest: no checkpoint file in %s that verifies\n", dir);
    return rc;
}

/* ---------------------------------------------------------------- the ring */

struct ring_sink {
    rk_ring *ring;
    uint16_t table_id[2];
    uint64_t kill_tick, kill_record, tick, n_records;
};

static int ring_put(void *arg, int table, const unsigned char *key, const unsigned char *val, uint32_t vlen)
{
    struct ring_sink *rs = arg;
    int rc = rk_put(rs->ring, rs->table_id[table], key, KEY_LEN, val, vlen, NULL);
    if (!rc && ++rs->n_records >= rs->kill_record && rs->tick == rs->kill_tick) {
        fprintf(stderr, "backtest: --kill-at-tick %" PRIu64 ": SIGKILL after %" PRIu64 " records of it\n",
                rs->kill_tick, rs->n_records);
        raise(SIGKILL);
    }
    return rc;
}

/* The node's state must hold exactly what e holds. */
static int check_state(struct engine *e, const char *data_dir)
{
    rk_state *s = NULL;
    uint64_t want[2] = {0, 0};
    int rc = rk_state_open(data_dir, &s);

    for (int tf = 0; tf < N_TF; tf++)
        for (uint64_t i = 0; i < e->n_bars[tf]; i++)
            want[0] += e->bars[tf][i].ticks != 0, want[1] += e->emas[tf][i].count != 0;
    for (int t = 0; t < 2 && !rc; t++) {
        struct loader l = {.e = e, .table = t, .compare = 1};
        rc = rk_state_scan(s, table_name[t], NULL, 0, load_record, &l);
        if (!rc && l.n != want[t])
            l.why = "another number of entries", rc = RK_ECORRUPT;
        if (rc)
            fprintf(stderr,
                    "backtest: the node's table %s is not what the engine computed: %s (%" PRIu64
                    " entries checked, %" PRIu64 " expected)\n",
                    table_name[t], l.why ? l.why : rk_strerror(rc), l.n, want[t]);
    }
    rk_state_close(s);
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
    struct ring_sink rs = {.kill_tick = o->kill_tick, .kill_record = o->kill_record};
    const struct sink sink = {ring_put, &rs};
    rk_state *s = NULL;
    uint64_t mark_lsn = 0, first;
    int rc = rk_state_open(o->data_dir, &s);

    if (rc) {
        fprintf(stderr, "backtest: cannot open the node's state in %s: %s\n", o->data_dir, rk_strerror(rc));
        return rc;
    }
    rc = restore(e, s, o->producer, o->data_dir);
    rk_state_close(s);
    if (rc)
        return rc;
    rc = rk_ring_attach(o->ring, &ro, &rs.ring);
    if (rc) {
        fprintf(stderr, "backtest: cannot attach to ring %s: %s: %s\n", o->ring, rk_strerror(rc), why);
        return rc;
    }
    for (int t = 0; t < 2 && !rc; t++)
        if ((rc = rk_table(rs.ring, table_name[t], &rs.table_id[t])))
            fprintf(stderr, "backtest: table %s: %s\n", table_name[t], rk_strerror(rc));
    first = e->tick;
    while (!rc && e->tick < o->ticks) {
        rs.tick = e->tick + 1;
        rs.n_records = 0;
        rc = engine_tick(e, o->seed, &sink);
        if (!rc)
            rc = rk_mark(rs.ring, e->tick, &mark_lsn);
        if (rc)
            fprintf(stderr, "backtest: tick %" PRIu64 ": %s\n", rs.tick, rk_strerror(rc));
    }
    if (!rc && e->tick > first && (rc = rk_wait(rs.ring, mark_lsn, RK_DURABLE, DURABLE_TIMEOUT_MS)))
        fprintf(stderr, "backtest: tick %" PRIu64 " is not durable after %d s (%s): is the node running?\n",
                e->tick, DURABLE_TIMEOUT_MS / 1000, rk_strerror(rc));
    rk_ring_detach(rs.ring);
    return rc ? rc : check_state(e, o->data_dir);
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
        else if (strcmp(a, "--ticks") == 0)
            ok = parse_u64(v, MAX_TICKS, &o->ticks) == 0;
        else if (strcmp(a, "--kill-at-tick") == 0)
            ok = parse_u64(v, MAX_TICKS, &o->kill_tick) == 0 && o->kill_tick > 0;
        else if (strcmp(a, "--kill-at-record") == 0)
            ok = parse_u64(v, 6, &o->kill_record) == 0 && o->kill_record > 0;
        else
            ok = 0;
        if (!ok) {
            fprintf(stderr, "backtest: bad option %s%s%s\n%s", a, v ? " " : "", v ? v : "", usage);
            return -1;
        }
    }
    if (o->offline + !!o->checkpoint_dir + !!o->ring != 1 || !o->ring != !o->data_dir) {
        fprintf(stderr, "backtest: give one of --ring with --data-dir, --checkpoint-dir, --offline\n%s",
                usage);
        return -1;
    }
    if (o->kill_tick && !o->ring) {
        fprintf(stderr, "backtest: --kill-at-tick kills a run on a ring\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o = {.producer = DEFAULT_PRODUCER, .seed = 1, .ticks = 3000, .kill_record = 1};
    struct engine e;
    int rc;

    if (parse_options(argc, argv, &o) != 0)
        return 2;
    rc = engine_init(&e, o.ticks);
    if (rc)
        fprintf(stderr, "backtest: out of memory for %" PRIu64 " ticks\n", o.ticks);
    else if (o.ring)
        rc = run_on_ring(&e, &o);
    else if (o.checkpoint_dir && (rc = restore_from_checkpoints(&e, o.checkpoint_dir, o.producer)))
        ;
    else
        while (!rc && e.tick < o.ticks)
            rc = engine_tick(&e, o.seed, NULL);
    if (!rc && e.tick > o.ticks) {
        fprintf(stderr, "backtest: the state is at tick %" PRIu64 ", past --ticks %" PRIu64 "\n", e.tick,
                o.ticks);
        rc = RK_EINVAL;
    }
    if (!rc)
        engine_print(&e, stdout);
    engine_free(&e);
    return rc ? 1 : 0;
}
