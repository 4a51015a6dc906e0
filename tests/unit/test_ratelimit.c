/* test_ratelimit.c - per-source token buckets (ratelimit.h). The clock is a
 * parameter, so refills are tested by moving `now` forward, never sleeping. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "unit_helpers.h"

static struct sockaddr_in v4(const char *ip, int port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    ck_assert_int_eq(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
    return sin;
}

static struct sockaddr_in6 v6(const char *ip, int port)
{
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons((uint16_t)port);
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
    return sin6;
}

#define SA(x) ((const struct sockaddr *)&(x))

/* How many of n requests at time now are allowed. */
static int allowed_n(struct ratelimit *rl, const struct sockaddr *sa, double rate, double burst,
                     double now, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += ratelimit_allow(rl, sa, rate, burst, now) ? 1 : 0;
    return ok;
}

START_TEST(test_burst_then_refuse)
{
    struct ratelimit *rl = ratelimit_create(64);
    struct sockaddr_in a = v4("192.0.2.1", 5060);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(ratelimit_allow(rl, SA(a), 5, 5, 100.0), "request %d within burst", i);
    ck_assert(!ratelimit_allow(rl, SA(a), 5, 5, 100.0));
    ck_assert(!ratelimit_allow(rl, SA(a), 5, 5, 100.0));
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_refill_over_time)
{
    struct ratelimit *rl = ratelimit_create(64);
    struct sockaddr_in a = v4("192.0.2.1", 5060);
    ck_assert_int_eq(allowed_n(rl, SA(a), 2, 4, 10.0, 10), 4);
    /* 0.25 s at 2/s: half a token, still refused */
    ck_assert(!ratelimit_allow(rl, SA(a), 2, 4, 10.25));
    /* 0.5 s after the bucket emptied: one token */
    ck_assert(ratelimit_allow(rl, SA(a), 2, 4, 10.5));
    ck_assert(!ratelimit_allow(rl, SA(a), 2, 4, 10.5));
    /* one more second: two tokens */
    ck_assert_int_eq(allowed_n(rl, SA(a), 2, 4, 11.5, 10), 2);
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_refill_capped_at_burst)
{
    struct ratelimit *rl = ratelimit_create(64);
    struct sockaddr_in a = v4("198.51.100.7", 5060);
    ck_assert_int_eq(allowed_n(rl, SA(a), 10, 3, 0.0, 10), 3);
    /* a long idle time never gives more than burst */
    ck_assert_int_eq(allowed_n(rl, SA(a), 10, 3, 1000.0, 10), 3);
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_steady_rate)
{
    struct ratelimit *rl = ratelimit_create(64);
    struct sockaddr_in a = v4("203.0.113.9", 5060);
    ck_assert_int_eq(allowed_n(rl, SA(a), 10, 10, 0.0, 10), 10);
    /* 10 s of requests every 10 ms (100/s) at 10/s: about 100 allowed */
    int ok = 0;
    for (int i = 1; i <= 1000; i++)
        ok += ratelimit_allow(rl, SA(a), 10, 10, i * 0.01) ? 1 : 0;
    ck_assert_int_ge(ok, 99);
    ck_assert_int_le(ok, 101);
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_sources_independent)
{
    struct ratelimit *rl = ratelimit_create(4096);
    struct sockaddr_in a = v4("192.0.2.1", 5060);
    struct sockaddr_in b = v4("192.0.2.2", 5060);
    ck_assert_int_eq(allowed_n(rl, SA(a), 1, 2, 0.0, 5), 2);
    /* a different host has its own full bucket, and using it leaves a's
     * bucket (still empty) alone */
    ck_assert_int_eq(allowed_n(rl, SA(b), 1, 2, 0.0, 5), 2);
    ck_assert(!ratelimit_allow(rl, SA(a), 1, 2, 0.0));
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_port_ignored)
{
    struct ratelimit *rl = ratelimit_create(64);
    struct sockaddr_in a1 = v4("192.0.2.1", 5060);
    struct sockaddr_in a2 = v4("192.0.2.1", 40000);
    ck_assert(ratelimit_allow(rl, SA(a1), 1, 2, 0.0));
    ck_assert(ratelimit_allow(rl, SA(a2), 1, 2, 0.0));
    /* same host, other port: same bucket, now empty */
    ck_assert(!ratelimit_allow(rl, SA(a1), 1, 2, 0.0));
    ck_assert(!ratelimit_allow(rl, SA(a2), 1, 2, 0.0));
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_v4_mapped_same_bucket)
{
    struct ratelimit *rl = ratelimit_create(64);
    struct sockaddr_in a = v4("192.0.2.1", 5060);
    struct sockaddr_in6 m = v6("::ffff:192.0.2.1", 5060);
    ck_assert(ratelimit_allow(rl, SA(a), 1, 2, 0.0));
    ck_assert(ratelimit_allow(rl, SA(m), 1, 2, 0.0));
    ck_assert(!ratelimit_allow(rl, SA(a), 1, 2, 0.0));
    ck_assert(!ratelimit_allow(rl, SA(m), 1, 2, 0.0));
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_ipv6_source)
{
    struct ratelimit *rl = ratelimit_create(0); /* default size */
    struct sockaddr_in6 a = v6("2001:db8::1", 5060);
    ck_assert_int_eq(allowed_n(rl, SA(a), 3, 3, 5.0, 10), 3);
    ck_assert(!ratelimit_allow(rl, SA(a), 3, 3, 5.1));
    ck_assert(ratelimit_allow(rl, SA(a), 3, 3, 5.5));
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_unlimited)
{
    struct ratelimit *rl = ratelimit_create(8);
    struct sockaddr_in a = v4("192.0.2.1", 5060);
    ck_assert_int_eq(allowed_n(rl, SA(a), 0, 1, 0.0, 1000), 1000);
    ck_assert_int_eq(allowed_n(rl, SA(a), -1, 1, 0.0, 1000), 1000);
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_collision_takeover_never_more_than_burst)
{
    /* one bucket: every source collides. A newcomer taking the bucket over
     * inherits what is left of it, so colliding sources share one budget
     * and never get more than burst between them. */
    struct ratelimit *rl = ratelimit_create(1);
    struct sockaddr_in a = v4("192.0.2.1", 5060);
    struct sockaddr_in b = v4("192.0.2.2", 5060);
    ck_assert_int_eq(allowed_n(rl, SA(a), 1, 3, 0.0, 10), 3);
    ck_assert_int_eq(allowed_n(rl, SA(b), 1, 3, 0.0, 10), 0);
    ck_assert_int_eq(allowed_n(rl, SA(b), 1, 3, 3.0, 10), 3);
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_destroy_null)
{
    ratelimit_destroy(NULL);
}
END_TEST

START_TEST(test_cost_charges_several_tokens)
{
    struct ratelimit *rl = ratelimit_create(64);
    struct sockaddr_in a = v4("192.0.2.1", 5060), b = v4("192.0.2.2", 5060);
    /* burst 10: two requests of cost 4, then 2 tokens left: a third is
     * refused, a plain one still passes */
    ck_assert(ratelimit_allow_cost(rl, SA(a), 5, 10, 4, 100.0));
    ck_assert(ratelimit_allow_cost(rl, SA(a), 5, 10, 4, 100.0));
    ck_assert(!ratelimit_allow_cost(rl, SA(a), 5, 10, 4, 100.0));
    ck_assert(ratelimit_allow(rl, SA(a), 5, 10, 100.0));
    /* another source has its own budget */
    ck_assert(ratelimit_allow_cost(rl, SA(b), 5, 10, 4, 100.0));
    /* 1 s at 5/s refills 5 tokens: 6 now, 4 + 1 + 1 of them used */
    ck_assert(ratelimit_allow_cost(rl, SA(a), 5, 10, 4, 101.0));
    ck_assert_int_eq(allowed_n(rl, SA(a), 5, 10, 101.0, 5), 2);
    ratelimit_destroy(rl);
}
END_TEST

START_TEST(test_cost_above_burst_needs_full_bucket)
{
    struct ratelimit *rl = ratelimit_create(64);
    struct sockaddr_in a = v4("192.0.2.1", 5060);
    /* charged as the burst (4): passes from a full bucket, never twice */
    ck_assert(ratelimit_allow_cost(rl, SA(a), 2, 4, 30, 10.0));
    ck_assert(!ratelimit_allow_cost(rl, SA(a), 2, 4, 30, 10.0));
    ck_assert(!ratelimit_allow(rl, SA(a), 2, 4, 10.0));
    ck_assert(!ratelimit_allow_cost(rl, SA(a), 2, 4, 30, 11.5)); /* 3 tokens */
    ck_assert(ratelimit_allow_cost(rl, SA(a), 2, 4, 30, 12.0));  /* 4 tokens */
    /* a cost below one is one */
    ck_assert(ratelimit_allow_cost(rl, SA(a), 2, 4, 0, 12.5));
    ck_assert(!ratelimit_allow_cost(rl, SA(a), 2, 4, 0, 12.5));
    /* unlimited stays unlimited */
    for (int i = 0; i < 100; i++)
        ck_assert(ratelimit_allow_cost(rl, SA(a), 0, 0, 1000, 12.5));
    ratelimit_destroy(rl);
}
END_TEST

static Suite *ratelimit_suite(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("bucket");
    tcase_add_test(tc, test_burst_then_refuse);
    tcase_add_test(tc, test_refill_over_time);
    tcase_add_test(tc, test_refill_capped_at_burst);
    tcase_add_test(tc, test_steady_rate);
    tcase_add_test(tc, test_sources_independent);
    tcase_add_test(tc, test_port_ignored);
    tcase_add_test(tc, test_v4_mapped_same_bucket);
    tcase_add_test(tc, test_ipv6_source);
    tcase_add_test(tc, test_unlimited);
    tcase_add_test(tc, test_collision_takeover_never_more_than_burst);
    tcase_add_test(tc, test_destroy_null);
    tcase_add_test(tc, test_cost_charges_several_tokens);
    tcase_add_test(tc, test_cost_above_burst_needs_full_bucket);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(ratelimit_suite()); }
