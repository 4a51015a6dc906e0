/* test_looplag.c - the loop-lag histogram (looplag.h): bucket bounds are
 * inclusive upper limits, counts cumulative, sum and slow count kept. */
#include "sofia_types.h"

#include <check.h>
#include <time.h>

#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

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

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void busy_timer(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    struct looplag_mark m;
    looplag_begin(&m, "timer", "busy", NULL);
    long long until = mono_ms() + 80;
    while (mono_ms() < until)
        ;
    looplag_end(&m);
    *(int *)arg = 1;
}

START_TEST(test_real_loop_counts_busy_time_not_waits)
{
    /* a real su_root: idle waits of 300 ms are not turns of 300 ms, an
     * 80 ms busy timer callback is one slow turn */
    su_init();
    su_root_t *root = su_root_create(NULL);
    ck_assert_ptr_nonnull(root);
    su_root_threading(root, 0);
    looplag_init(root);
    struct looplag_histogram h0, h1, h2;
    looplag_histogram(&h0);
    for (int i = 0; i < 3; i++)
        su_root_step(root, 300);
    looplag_histogram(&h1);
    ck_assert_uint_ge(h1.count, h0.count + 3);
    ck_assert_uint_eq(h1.slow, h0.slow);
    ck_assert_msg(h1.sum - h0.sum < 0.05, "idle waits counted as busy: %f s", h1.sum - h0.sum);

    int fired = 0;
    su_timer_t *t = su_timer_create(su_root_task(root), 10);
    su_timer_set(t, busy_timer, &fired);
    /* by the clock: sofia may return at once while the timer is < 1 ms away */
    for (long long until = mono_ms() + 2000; !fired && mono_ms() < until;)
        su_root_step(root, 100);
    su_root_step(root, 0); /* the wait that closes the busy turn */
    ck_assert(fired);
    looplag_histogram(&h2);
    ck_assert_uint_eq(h2.slow, h1.slow + 1);
    ck_assert_msg(h2.sum - h1.sum >= 0.075, "busy turn not counted: %f s", h2.sum - h1.sum);
    looplag_stop();
    su_timer_destroy(t);
    su_root_destroy(root);
    su_deinit();
}
END_TEST

static Suite *looplag_suite(void)
{
    Suite *s = suite_create("looplag");
    TCase *tc = tcase_create("histogram");
    tcase_add_test(tc, test_histogram_buckets);
    tcase_add_test(tc, test_marks_off_the_loop_thread);
    tcase_add_test(tc, test_real_loop_counts_busy_time_not_waits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(looplag_suite()); }
