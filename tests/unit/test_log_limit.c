/* test_log_limit.c - per-second limits for repeated log lines (log_limit.h).
 * The clock is a parameter: seconds pass by passing a later one. */
#include <check.h>
#include <string.h>

#include "log_limit.h"
#include "unit_helpers.h"

START_TEST(test_limit_within_a_second)
{
    struct log_limit l = {0};
    time_t now = 1000;
    unsigned long suppressed = 99;
    ck_assert(log_limit_allow(&l, 2, now, &suppressed));
    ck_assert_uint_eq(suppressed, 0);
    ck_assert(log_limit_allow(&l, 2, now, &suppressed));
    for (int i = 0; i < 1000; i++)
        ck_assert(!log_limit_allow(&l, 2, now, &suppressed));
    ck_assert_uint_eq(l.suppressed, 1000);
}
END_TEST

START_TEST(test_next_second_reports_suppressed)
{
    struct log_limit l = {0};
    time_t now = 1000;
    unsigned long suppressed;
    ck_assert(log_limit_allow(&l, 1, now, &suppressed));
    ck_assert(!log_limit_allow(&l, 1, now, &suppressed));
    ck_assert(!log_limit_allow(&l, 1, now, &suppressed));
    now++;
    ck_assert(log_limit_allow(&l, 1, now, &suppressed));
    ck_assert_uint_eq(suppressed, 2);
    ck_assert_str_eq(log_limit_note(suppressed), " (2 similar lines suppressed)");
    now++;
    ck_assert(log_limit_allow(&l, 1, now, &suppressed));
    ck_assert_uint_eq(suppressed, 0);
    ck_assert_str_eq(log_limit_note(suppressed), "");
}
END_TEST

static Suite *log_limit_suite(void)
{
    Suite *s = suite_create("log_limit");
    TCase *tc = tcase_create("limit");
    tcase_add_test(tc, test_limit_within_a_second);
    tcase_add_test(tc, test_next_second_reports_suppressed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(log_limit_suite()); }
