/* test_retain.c -- checkpoint retention (persist/retain.c): which
 * checkpoints a policy keeps, on made-up clocks, and what retain_apply
 * removes from a folder and how far back it says the journal must reach.
 */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "persist/checkpoint.h"
#include "persist/retain.h"

#define S 1000000000ull
#define H (3600ull * S)
#define D (24ull * H)

/* a day far from the epoch, at 00:00 UTC */
static const uint64_t day0 = 20000ull * D;

static void select_case(const uint64_t *t, size_t n, uint64_t now, struct retain_policy p, const char *want)
{
    uint8_t keep[64];
    char got[65];

    retain_select(t, n, now, &p, keep);
    for (size_t i = 0; i < n; i++)
        got[i] = keep[i] ? 'K' : '-';
    got[n] = '\0';
    ck_assert_str_eq(got, want);
}

START_TEST(keep_last_only)
{
    uint64_t t[6];
    for (int i = 0; i < 6; i++)
        t[i] = day0 + (uint64_t)(10 - i) * 60 * S; /* a minute apart, newest first */
    select_case(t, 6, day0 + H, (struct retain_policy){2, 0, 0}, "KK----");
    select_case(t, 6, day0 + H, (struct retain_policy){6, 0, 0}, "KKKKKK");
    select_case(t, 6, day0 + H, (struct retain_policy){10, 0, 0}, "KKKKKK");
    select_case(t, 0, day0, (struct retain_policy){1, 0, 0}, "");
}
END_TEST

START_TEST(one_per_hour_for_the_last_hours)
{
    /* at :40, :20 and :00 of hours 4, 3, 2, 1, 0 of the day, newest first */
    uint64_t t[15], now = day0 + 4 * H + 50 * 60 * S;
    for (int i = 0; i < 15; i++)
        t[i] = day0 + (uint64_t)(4 - i / 3) * H + (uint64_t)(40 - (i % 3) * 20) * 60 * S;
    /* hours back from now's: 0: i=0,1,2  1: 3,4,5  2: 6,7,8  3: 9..11  4: 12..14 */
    select_case(t, 15, now, (struct retain_policy){1, 3, 0}, "K--K--K--------");
    select_case(t, 15, now, (struct retain_policy){2, 24, 0}, "KK-K--K--K--K--");
    /* hours without any checkpoint still count: a 2-hour window back from
     * a later now holds only hour 0 of the list */
    select_case(t, 15, now + H, (struct retain_policy){1, 2, 0}, "K--------------");
}
END_TEST

START_TEST(one_per_day_for_the_last_days)
{
    /* two a day (06:00 and 18:00) for 4 days, newest first */
    uint64_t t[8], now = day0 + 4 * D - 1;
    for (int i = 0; i < 8; i++)
        t[i] = day0 + (uint64_t)(3 - i / 2) * D + (i % 2 ? 6 : 18) * H;
    select_case(t, 8, now, (struct retain_policy){1, 0, 2}, "K-K-----");
    select_case(t, 8, now, (struct retain_policy){1, 0, 30}, "K-K-K-K-");
    /* hourly and daily together: hour windows of the last 13 hours catch
     * 18:00 of today only */
    select_case(t, 8, now, (struct retain_policy){1, 13, 3}, "K-K-K---");
}
END_TEST

START_TEST(clock_gone_back_counts_as_now)
{
    uint64_t t[3] = {day0 + 10 * H, day0 + 2 * H, day0 + 1 * H}, now = day0 + 3 * H;
    /* the newest claims a time after now: it is in the current hour */
    select_case(t, 3, now, (struct retain_policy){1, 2, 0}, "KK-");
}
END_TEST

/* ------------------------------------------------------------ on files */

static void write_ckpt(const char *dir, uint64_t seq, uint64_t created, int has_replay, uint64_t restart)
{
    struct ckpt_info info = {0};
    ckpt_writer *w = NULL;
    char err[512], path[4200];

    info.epoch = 1;
    info.journal_seq = seq;
    info.lsn = seq * 100;
    info.created_ns = created;
    info.has_replay = has_replay;
    info.replay.restart_seq = restart;
    ck_assert_msg(ckpt_writer_open(dir, &info, 1, &w, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ckpt_writer_add(w, "t", "k", 1, &seq, sizeof seq), 0);
    ck_assert_msg(ckpt_writer_finish(w, path, sizeof path, err, sizeof err) == 0, "%s", err);
}

static int exists(const char *dir, uint64_t seq)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%020llu.rkcp", dir, (unsigned long long)seq);
    return stat(path, &st) == 0;
}

START_TEST(apply_removes_and_reports_the_journal_floor)
{
    char dir[] = "/tmp/rk-retain-XXXXXX", path[4200], cmd[4300];
    uint64_t floor = 0, now = day0 + 10 * H;
    uint32_t removed = 0;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    /* seq 10..60, an hour apart; restart points a little below each */
    for (uint64_t i = 0; i < 6; i++)
        write_ckpt(dir, 10 + 10 * i, now - (6 - i) * H, 1, 10 + 10 * i - 3);
    /* an unreadable file is neither counted nor removed */
    snprintf(path, sizeof path, "%s/%020llu.rkcp", dir, 5ull);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a checkpoint", f);
    fclose(f);
    ck_assert_int_eq(retain_apply(dir, &(struct retain_policy){2, 0, 0}, now, UINT64_MAX, &floor, &removed),
                     0);
    ck_assert_uint_eq(removed, 4);
    ck_assert(exists(dir, 60) && exists(dir, 50) && !exists(dir, 40) && !exists(dir, 10) && exists(dir, 5));
    ck_assert_uint_eq(floor, 47); /* the restart point of seq 50 */
    /* a checkpoint whose restart point is past its own entry needs its entry */
    write_ckpt(dir, 70, now, 1, 71);
    ck_assert_int_eq(retain_apply(dir, &(struct retain_policy){1, 0, 0}, now, UINT64_MAX, &floor, &removed),
                     0);
    ck_assert_uint_eq(floor, 70);
    ck_assert(exists(dir, 70) && !exists(dir, 60));
    /* format 1.0 (no replay record) needs no journal */
    write_ckpt(dir, 80, now, 0, 0);
    ck_assert_int_eq(retain_apply(dir, &(struct retain_policy){1, 0, 0}, now, UINT64_MAX, &floor, &removed),
                     0);
    ck_assert_uint_eq(floor, UINT64_MAX);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* The floor never passes what the store's own apply needs, the
 * checkpoint just taken of its state, even when that one is not kept: a
 * newer file (a copy put there, or one whose state a power cut took back
 * before the log flush came first) is the newest, and with keep = 1 the
 * floor was its restart point, past where apply restarts. */
START_TEST(floor_never_passes_what_apply_needs)
{
    char dir[] = "/tmp/rk-retain-XXXXXX", cmd[4300];
    uint64_t floor = 0, now = day0 + 10 * H;
    uint32_t removed = 0;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    write_ckpt(dir, 70, now - H, 1, 67); /* ahead of the state */
    write_ckpt(dir, 40, now, 1, 37);     /* just taken, as apply catches up */
    ck_assert_int_eq(retain_apply(dir, &(struct retain_policy){1, 0, 0}, now, 37, &floor, &removed), 0);
    ck_assert_uint_eq(removed, 1);
    ck_assert(exists(dir, 70) && !exists(dir, 40)); /* the newest by sequence is kept */
    ck_assert_uint_eq(floor, 37);
    /* below the kept ones' needs it changes nothing */
    ck_assert_int_eq(retain_apply(dir, &(struct retain_policy){1, 0, 0}, now, 80, &floor, &removed), 0);
    ck_assert_uint_eq(floor, 67);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("retain");
    TCase *tc = tcase_create("retain");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, keep_last_only);
    tcase_add_test(tc, one_per_hour_for_the_last_hours);
    tcase_add_test(tc, one_per_day_for_the_last_days);
    tcase_add_test(tc, clock_gone_back_counts_as_now);
    tcase_add_test(tc, apply_removes_and_reports_the_journal_floor);
    tcase_add_test(tc, floor_never_passes_what_apply_needs);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
