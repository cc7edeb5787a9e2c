/* test_history.c -- the epoch history (persist/history.h, persist/history.c,
 * the store_history / store_epoch_* API of persist/store.h):
 *   - the rules H1-H3, the epoch of a sequence, fork points (the stale
 *     standby's case included), the stored form;
 *   - a new directory begins epoch 1 and a restart goes on in it; a new
 *     epoch is above every epoch known; a directory that follows another's
 *     history begins its own when it writes; all of it survives a reopen;
 *   - a directory made before histories gets the history its journal
 *     implies, and keeps it through a trim;
 *   - J4: an entry of the wrong epoch is refused on append and found on
 *     read; a history that would re-label held entries is not adopted.
 * Data directories under a mkdtemp folder; no processes. */
#define _GNU_SOURCE
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <db.h>

#include "persist/history.h"
#include "persist/store.h"
#include "shm/ring.h"
#include "shm/ring_format.h"

static char base_dir[256], data_dir[400], err[512];

/* ------------------------------------------------------------ helpers */

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void new_data_dir(const char *what)
{
    snprintf(data_dir, sizeof data_dir, "%s/%s", base_dir, what);
    ck_assert_msg(mkdir(data_dir, 0700) == 0, "mkdir %s: %s", data_dir, strerror(errno));
}

static store *open_store(void)
{
    store *s = NULL;
    int rc = store_open(data_dir, STORE_CREATE, 16, &s, err, sizeof err);

    ck_assert_msg(rc == 0, "store_open %s: %s", data_dir, err);
    return s;
}

/* The entry for seq of epoch: one MARK frame at LSN 64 * seq. */
static uint8_t *entry_of(uint64_t seq, uint64_t epoch, size_t *len)
{
    uint8_t frame[64] = {0}, *out = NULL;
    uint64_t height = seq;
    uint32_t n = frame_encode(frame, FRAME_MARK, 0, 0, 64 * seq, NULL, 0, &height, sizeof height);
    struct journal_header h = {.seq = seq,
                               .epoch = epoch,
                               .first_lsn = 64 * seq,
                               .last_lsn = 64 * seq,
                               .next_lsn = 64 * seq + 64,
                               .n_frames = 1};

    ck_assert_int_eq(journal_encode(&h, frame, frame_align(n), 1, &out, len), 0);
    return out;
}

static int append(store *s, uint64_t seq, uint64_t epoch)
{
    size_t len = 0;
    uint8_t *e = entry_of(seq, epoch, &len);
    int rc = store_journal_append(s, seq, e, len);

    free(e);
    return rc;
}

/* s's history equals want[0..n). */
static void assert_history(store *s, const struct epoch_start *want, uint32_t n)
{
    struct epoch_start *h = NULL;
    uint32_t got = 0;

    ck_assert_int_eq(store_history(s, &h, &got), 0);
    ck_assert_uint_eq(got, n);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_uint_eq(h[i].epoch, want[i].epoch);
        ck_assert_uint_eq(h[i].first_seq, want[i].first_seq);
        ck_assert_uint_eq(h[i].first_lsn, want[i].first_lsn);
    }
    free(h);
}

/* ------------------------------------------------------------ values */

START_TEST(rules_epoch_of_and_fork_points)
{
    const struct epoch_start good[3] = {{1, 1, 8}, {2, 10, 600}, {5, 10, 600}};
    const struct epoch_start down[2] = {{2, 1, 8}, {2, 5, 9}}, back[2] = {{1, 5, 8}, {2, 4, 9}},
                             zero[1] = {{0, 1, 0}};
    char why[256];

    ck_assert_int_eq(history_check(good, 3, why, sizeof why), 0);
    ck_assert_int_eq(history_check(down, 2, why, sizeof why), RK_ECORRUPT);
    ck_assert_msg(strstr(why, "H1") != NULL, "%s", why);
    ck_assert_int_eq(history_check(back, 2, why, sizeof why), RK_ECORRUPT);
    ck_assert_msg(strstr(why, "H2") != NULL, "%s", why);
    ck_assert_int_eq(history_check(zero, 1, why, sizeof why), RK_ECORRUPT);

    /* H3: below the first element, its epoch; an epoch that wrote nothing
     * (2, begun at 10 like 5) is nobody's */
    ck_assert_uint_eq(history_epoch_of(good, 0, 7), 0);
    ck_assert_uint_eq(history_epoch_of(good + 1, 2, 3), 2);
    ck_assert_uint_eq(history_epoch_of(good, 3, 1), 1);
    ck_assert_uint_eq(history_epoch_of(good, 3, 9), 1);
    ck_assert_uint_eq(history_epoch_of(good, 3, 10), 5);
    ck_assert_uint_eq(history_epoch_of(good, 3, 1000), 5);
    ck_assert_uint_eq(history_cut(good, 3, 9), 1);
    ck_assert_uint_eq(history_cut(good, 3, 10), 3);

    /* the stale standby: it followed epoch 1 to entry 100; the primary was
     * restored to 50 and writes epoch 2 from 51 on, now at 120 */
    const struct epoch_start standby[1] = {{1, 1, 8}}, primary[2] = {{1, 1, 8}, {2, 51, 3208}};
    ck_assert_uint_eq(history_fork(standby, 1, 100, primary, 2, 120), 50);
    ck_assert_uint_eq(history_fork(primary, 2, 120, standby, 1, 100), 50);
    /* a standby behind the restore point is a prefix */
    ck_assert_uint_eq(history_fork(standby, 1, 40, primary, 2, 120), 40);
    /* the same history: the shorter journal */
    ck_assert_uint_eq(history_fork(primary, 2, 70, primary, 2, 120), 70);
    /* an empty epoch does not matter; a history of other epochs shares nothing */
    const struct epoch_start with_empty[3] = {{1, 1, 8}, {2, 51, 3208}, {3, 51, 3208}},
                             without[2] = {{1, 1, 8}, {3, 51, 3208}}, other[1] = {{4, 1, 8}};
    ck_assert_uint_eq(history_fork(with_empty, 3, 90, without, 2, 80), 80);
    ck_assert_uint_eq(history_fork(other, 1, 90, without, 2, 80), 0);
    ck_assert_uint_eq(history_fork(NULL, 0, 90, without, 2, 80), 0);
    ck_assert_uint_eq(history_fork(NULL, 0, 90, NULL, 0, 80), 80);
}
END_TEST

START_TEST(stored_form_round_trips_and_bad_bytes_are_refused)
{
    const struct epoch_start h[2] = {{1, 1, 8}, {0x0102030405060708ull, 77, 0xa1a2a3a4a5a6a7a8ull}};
    uint8_t bytes[2 * HISTORY_ELEMENT_SIZE];
    struct epoch_start *back = NULL;
    uint32_t n = 0;
    char why[256];

    history_encode(h, 2, bytes);
    ck_assert_uint_eq(bytes[24], 0x08); /* little-endian, epoch first */
    ck_assert_uint_eq(bytes[31], 0x01);
    ck_assert_int_eq(history_decode(bytes, sizeof bytes, &back, &n, why, sizeof why), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert(memcmp(back, h, sizeof h) == 0);
    free(back);
    ck_assert_int_eq(history_decode(bytes, sizeof bytes - 1, &back, &n, why, sizeof why), RK_ECORRUPT);
    history_encode(h + 1, 1, bytes);
    history_encode(h, 1, bytes + HISTORY_ELEMENT_SIZE); /* epochs going down */
    ck_assert_int_eq(history_decode(bytes, sizeof bytes, &back, &n, why, sizeof why), RK_ECORRUPT);
    ck_assert_ptr_null(back);
}
END_TEST

/* ------------------------------------------------------------ a directory */

START_TEST(new_directory_begins_epoch_one_and_a_restart_goes_on_in_it)
{
    uint64_t epoch = 0;
    store *s;

    new_data_dir("new");
    s = open_store();
    ck_assert_uint_eq(store_history_length(s), 0);
    ck_assert_uint_eq(store_epoch_of(s, 1), 0);
    ck_assert_int_eq(store_epoch_resume(s, 1, 8, &epoch), 0);
    ck_assert_uint_eq(epoch, 1);
    ck_assert_int_eq(append(s, 1, 1), 0);
    ck_assert_int_eq(append(s, 2, 1), 0);
    store_close(s);

    /* a restart: the same epoch, nothing added */
    s = open_store();
    assert_history(s, (struct epoch_start[]){{1, 1, 8}}, 1);
    ck_assert_uint_eq(store_epoch_began(s), 1);
    ck_assert_int_eq(store_epoch_resume(s, 3, 192, &epoch), 0);
    ck_assert_uint_eq(epoch, 1);
    ck_assert_uint_eq(store_history_length(s), 1);
    /* a new epoch is above every one known, and at least what is asked */
    ck_assert_int_eq(store_epoch_begin(s, 0, 3, 192, &epoch), 0);
    ck_assert_uint_eq(epoch, 2);
    ck_assert_int_eq(store_epoch_begin(s, 7, 3, 192, &epoch), 0);
    ck_assert_uint_eq(epoch, 7);
    /* H2: it cannot begin before the last one did */
    ck_assert_int_eq(store_epoch_begin(s, 0, 2, 192, &epoch), RK_EINVAL);
    ck_assert_int_eq(append(s, 3, 7), 0);
    store_close(s);

    s = open_store();
    assert_history(s, (struct epoch_start[]){{1, 1, 8}, {2, 3, 192}, {7, 3, 192}}, 3);
    ck_assert_uint_eq(store_epoch_of(s, 2), 1);
    ck_assert_uint_eq(store_epoch_of(s, 3), 7);
    ck_assert_uint_eq(store_epoch_seen(s), 7);
    store_close(s);
}
END_TEST

START_TEST(a_followed_history_is_not_written_in)
{
    const struct epoch_start theirs[2] = {{1, 1, 8}, {4, 3, 192}};
    uint64_t epoch = 0;
    store *s;

    new_data_dir("follower");
    s = open_store();
    ck_assert_int_eq(store_history_adopt(s, theirs, 2, err, sizeof err), 0);
    ck_assert_int_eq(append(s, 1, 1), 0);
    ck_assert_int_eq(append(s, 3 - 1, 1), 0);
    ck_assert_int_eq(append(s, 3, 4), 0);
    store_close(s);
    /* started as a primary: epoch 4 is another node's, so it begins 5 */
    s = open_store();
    ck_assert_uint_eq(store_epoch_began(s), 0);
    ck_assert_int_eq(store_epoch_resume(s, 4, 256, &epoch), 0);
    ck_assert_uint_eq(epoch, 5);
    assert_history(s, (struct epoch_start[]){{1, 1, 8}, {4, 3, 192}, {5, 4, 256}}, 3);
    store_close(s);
}
END_TEST

START_TEST(old_directory_gets_the_history_its_journal_implies)
{
    store *s;

    new_data_dir("old");
    s = open_store(); /* no history stored: as before histories existed */
    ck_assert_int_eq(append(s, 1, 1), 0);
    ck_assert_int_eq(append(s, 2, 1), 0);
    ck_assert_int_eq(append(s, 3, 2), 0);
    ck_assert_int_eq(append(s, 4, 2), 0);
    /* epochs never go down, even without a stored history */
    ck_assert_int_eq(append(s, 5, 1), RK_EINVAL);
    assert_history(s, (struct epoch_start[]){{1, 1, 64}, {2, 3, 192}}, 2);
    store_close(s);

    s = open_store();
    assert_history(s, (struct epoch_start[]){{1, 1, 64}, {2, 3, 192}}, 2);
    ck_assert_int_eq(store_journal_trim(s, 2), 0);
    store_close(s);
    /* trimmed: it starts at the oldest entry held */
    s = open_store();
    assert_history(s, (struct epoch_start[]){{1, 2, 128}, {2, 3, 192}}, 2);
    ck_assert_uint_eq(store_epoch_of(s, 1), 1);
    store_close(s);
}
END_TEST

/* history_entry_ok's mutex is never held while waiting for a Berkeley DB
 * lock.  A standby's main thread adopting its primary's history waited
 * for meta.db page locks held by the apply thread's open transaction while
 * holding the history's mutex; the apply thread, in that transaction,
 * then waited for the mutex (store_journal_get checks each entry's epoch):
 * both hung for ever, unseen by the deadlock detector.  Here the test's
 * transaction on meta.db is the apply thread's: the adopt waits for it
 * (seen in the lock statistics), and store_epoch_of, as apply's check,
 * must still return before it commits. */
struct adopt_job {
    store *s;
    int rc, done;
};

static void *adopt_main(void *arg)
{
    struct adopt_job *j = arg;
    const struct epoch_start theirs[2] = {{1, 1, 64}, {2, 2, 128}};
    char why[256];

    j->rc = store_history_adopt(j->s, theirs, 2, why, sizeof why);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE); /* pairs with the acquire loads below */
    return NULL;
}

static void *epoch_of_main(void *arg)
{
    struct adopt_job *j = arg;

    j->rc = (int)store_epoch_of(j->s, 1);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE); /* pairs with the acquire load below */
    return NULL;
}

static uint32_t lock_waits(store *s)
{
    DB_LOCK_STAT *st = NULL;
    uint32_t n;

    ck_assert_int_eq(store_env(s)->lock_stat(store_env(s), &st, 0), 0);
    n = (uint32_t)st->st_lock_wait;
    free(st);
    return n;
}

START_TEST(adopting_a_history_does_not_block_apply_while_it_waits)
{
    const struct epoch_start ours[1] = {{1, 1, 64}};
    struct adopt_job adopt = {0}, check = {0};
    pthread_t ta, tc;
    DB_ENV *env;
    DB *meta;
    DB_TXN *txn = NULL;
    DBT k = {.data = "test-apply-key", .size = 14}, v = {.data = "x", .size = 1};
    uint32_t waits;
    int i;

    new_data_dir("adopt_vs_apply");
    adopt.s = check.s = open_store();
    env = store_env(adopt.s);
    meta = store_meta(adopt.s);
    ck_assert_int_eq(store_history_adopt(adopt.s, ours, 1, err, sizeof err), 0);
    ck_assert_int_eq(append(adopt.s, 1, 1), 0);
    ck_assert_int_eq(env->txn_begin(env, NULL, &txn, 0), 0); /* apply's open transaction */
    ck_assert_int_eq(meta->put(meta, txn, &k, &v, 0), 0);
    waits = lock_waits(adopt.s);
    ck_assert_int_eq(pthread_create(&ta, NULL, adopt_main, &adopt), 0);
    for (i = 0; i < 30000 && lock_waits(adopt.s) == waits && !__atomic_load_n(&adopt.done, __ATOMIC_ACQUIRE);
         i++)
        usleep(1000); /* hang guard only: until the adopt waits for our page lock */
    ck_assert_msg(!__atomic_load_n(&adopt.done, __ATOMIC_ACQUIRE),
                  "the adopt did not wait for the open transaction");
    ck_assert_msg(lock_waits(adopt.s) != waits, "the adopt never waited for a lock");
    ck_assert_int_eq(pthread_create(&tc, NULL, epoch_of_main, &check), 0);
    for (i = 0; i < 30000 && !__atomic_load_n(&check.done, __ATOMIC_ACQUIRE); i++)
        usleep(1000); /* hang guard only */
    ck_assert_msg(__atomic_load_n(&check.done, __ATOMIC_ACQUIRE),
                  "store_epoch_of blocked while the adopt waited for the open transaction (deadlock)");
    ck_assert_int_eq(check.rc, 1);
    ck_assert_int_eq(pthread_join(tc, NULL), 0);
    ck_assert_int_eq(txn->commit(txn, 0), 0);
    ck_assert_int_eq(pthread_join(ta, NULL), 0);
    ck_assert_int_eq(adopt.rc, 0);
    assert_history(adopt.s, (struct epoch_start[]){{1, 1, 64}, {2, 2, 128}}, 2);
    store_close(adopt.s);
}
END_TEST

START_TEST(entry_of_a_wrong_epoch_is_refused_on_append_and_found_on_read)
{
    const struct epoch_start relabel[1] = {{9, 1, 8}};
    struct journal_header last;
    journal_entry e;
    uint64_t epoch = 0;
    char why[256] = "";
    store *s;

    new_data_dir("wrong");
    s = open_store();
    ck_assert_int_eq(store_epoch_begin(s, 3, 1, 8, &epoch), 0);
    ck_assert_uint_eq(epoch, 3);
    ck_assert_int_eq(append(s, 1, 2), RK_EINVAL);
    store_last_error(s, why, sizeof why);
    ck_assert_msg(strstr(why, "entry 1 has epoch 2, the epoch history says 3 (J4)") != NULL, "%s", why);
    ck_assert_int_eq(append(s, 1, 4), RK_EINVAL);
    ck_assert_int_eq(append(s, 1, 3), 0);
    ck_assert_int_eq(append(s, 2, 3), 0);
    /* a history that gives the entries held another epoch is not adopted */
    ck_assert_int_eq(store_history_adopt(s, relabel, 1, why, sizeof why), RK_EINVAL);
    /* ... but a damaged one on disk is found on read */
    {
        uint8_t bytes[HISTORY_ELEMENT_SIZE];
        DB *meta = store_meta(s);
        DBT k = {.data = STORE_HISTORY_KEY, .size = (u_int32_t)strlen(STORE_HISTORY_KEY)};
        DBT v = {.data = bytes, .size = sizeof bytes};
        history_encode(relabel, 1, bytes);
        ck_assert_int_eq(meta->put(meta, NULL, &k, &v, DB_AUTO_COMMIT), 0);
    }
    store_close(s);
    s = open_store();
    ck_assert_int_eq(store_journal_get(s, 2, &e, why, sizeof why), RK_ECORRUPT);
    ck_assert_msg(strstr(why, "entry 2 has epoch 3, the epoch history says 9") != NULL, "%s", why);
    ck_assert_int_eq(store_journal_last(s, &last), RK_ECORRUPT);
    store_close(s);
}
END_TEST

static Suite *history_suite(void)
{
    Suite *s = suite_create("history");
    TCase *tc = tcase_create("values");

    tcase_add_test(tc, rules_epoch_of_and_fork_points);
    tcase_add_test(tc, stored_form_round_trips_and_bad_bytes_are_refused);
    suite_add_tcase(s, tc);
    tc = tcase_create("directory");
    tcase_add_test(tc, new_directory_begins_epoch_one_and_a_restart_goes_on_in_it);
    tcase_add_test(tc, a_followed_history_is_not_written_in);
    tcase_add_test(tc, old_directory_gets_the_history_its_journal_implies);
    tcase_add_test(tc, entry_of_a_wrong_epoch_is_refused_on_append_and_found_on_read);
    tcase_add_test(tc, adopting_a_history_does_not_block_apply_while_it_waits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int n_failed;

    snprintf(base_dir, sizeof base_dir, "/tmp/rk-test-history-XXXXXX");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    sr = srunner_create(history_suite());
    srunner_run_all(sr, CK_NORMAL);
    n_failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nftw(base_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    return n_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
