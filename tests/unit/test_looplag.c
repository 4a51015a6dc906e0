/* test_looplag.c - the loop-lag histogram (looplag.h): bucket bounds are
 * inclusive upper limits, counts cumulative, sum and slow count kept. */
#include <check.h>

#include "looplag.h"
#include "unit_helpers.h"

#define MS 1000000LL

START_TEST(test_histogram_buckets)
{
    struct looplag_histogram h;
    looplag_histogram(&h);
    ck_assert_uint_eq(h.count, 0);
    ck_assert(h.le[0] == 0.001 && h.le[LOOPLAG_NBUCKETS - 1] == 10);
    for (int i = 1; i < LOOPLAG_NBUCKETS; i++)
        ck_assert(h.le[i] > h.le[i - 1]);

    looplag_observe(MS / 2);       /* 0.5 ms */
    looplag_observe(MS);           /* exactly 1 ms: in le=0.001 */
    looplag_observe(50 * MS);      /* exactly the WARN limit: not slow */
    looplag_observe(50 * MS + 1);  /* slow, in le=0.1 */
    looplag_observe(20000 * MS);   /* 20 s: only in +Inf */
    looplag_histogram(&h);
    ck_assert_uint_eq(h.count, 5);
    ck_assert_uint_eq(h.bucket[0], 2);                    /* le=0.001 */
    ck_assert_uint_eq(h.bucket[4], 2);                    /* le=0.025 */
    ck_assert_uint_eq(h.bucket[5], 3);                    /* le=0.05 */
    ck_assert_uint_eq(h.bucket[6], 4);                    /* le=0.1 */
    ck_assert_uint_eq(h.bucket[LOOPLAG_NBUCKETS - 1], 4); /* le=10 */
    for (int i = 1; i < LOOPLAG_NBUCKETS; i++)
        ck_assert_uint_ge(h.bucket[i], h.bucket[i - 1]);
    ck_assert_uint_eq(h.slow, 2);
    ck_assert(h.sum > 20.1014 && h.sum < 20.1016); /* 20101.5 ms */
}
END_TEST

START_TEST(test_marks_off_the_loop_thread)
{
    /* before looplag_init() marks are inert: nothing counted, no crash */
    struct looplag_histogram h;
    looplag_histogram(&h);
    uint64_t before = h.count;
    struct looplag_mark outer, inner;
    looplag_begin(&outer, "API", "socket", NULL);
    looplag_begin(&inner, "API", "GET", "/metrics");
    looplag_end(&inner);
    looplag_end(&outer);
    looplag_histogram(&h);
    ck_assert_uint_eq(h.count, before);
    ck_assert_ptr_null(outer.up);
}
END_TEST

static Suite *looplag_suite(void)
{
    Suite *s = suite_create("looplag");
    TCase *tc = tcase_create("histogram");
    tcase_add_test(tc, test_histogram_buckets);
    tcase_add_test(tc, test_marks_off_the_loop_thread);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(looplag_suite()); }
