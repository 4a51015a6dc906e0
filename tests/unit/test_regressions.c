/* test_regressions.c - bugs found by review, kept as regression tests. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "router.h"
#include "sdp_rewrite.h"
#include "unit_helpers.h"

/* sdp_rewrite.h: formats = "the m= line's formats, space separated
 * ("0 8 101")". For RTP/AVP, sofia puts the payload types in m_rtpmaps,
 * not m_format; sdpx_parse once left formats empty (and a transfer then never
 * saw a codec change). */
START_TEST(test_sdp_formats_of_rtp_stream)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0 8 101\r\n"
                       "a=rtpmap:101 telephone-event/8000\r\n";
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(sdpx_parse(body, strlen(body), &info, err, sizeof err), 0);
    ck_assert_str_eq(info.s[0].formats, "0 8 101");
}
END_TEST

/* ratelimit.h: a colliding newcomer taking a bucket over "can only ever give
 * a flooder fewer tokens, never more than `burst`". Two sources that share a
 * bucket and alternate once reset it to full on every request. */
START_TEST(test_ratelimit_alternating_collision)
{
    struct ratelimit *rl = ratelimit_create(1); /* every source collides */
    struct sockaddr_in a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.sin_family = b.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &a.sin_addr);
    inet_pton(AF_INET, "192.0.2.2", &b.sin_addr);
    int ok_a = 0;
    for (int i = 0; i < 100; i++) {
        ok_a += ratelimit_allow(rl, (struct sockaddr *)&a, 1, 3, 0.0) ? 1 : 0;
        (void)ratelimit_allow(rl, (struct sockaddr *)&b, 1, 3, 0.0);
    }
    ratelimit_destroy(rl);
    /* no time passes: a must not get more than burst */
    ck_assert_int_le(ok_a, 3);
}
END_TEST

/* strtol accepted a sign or blanks in the prefix: "1.2.3.4/ 8" was a /8. */
START_TEST(test_cidr_prefix_digits_only)
{
    struct cidr n;
    ck_assert(!cidr_parse("1.2.3.4/ 8", &n));
    ck_assert(!cidr_parse("1.2.3.4/+8", &n));
    ck_assert(!cidr_parse("1.2.3.4/-0", &n));
    ck_assert(cidr_parse("1.2.3.4/8", &n));
    ck_assert_int_eq(n.prefix, 8);
}
END_TEST

/* sofia's sdp_parse() allocates forever on these m= lines (found by
 * fuzz_sdp): sdpx_parse must refuse them before sofia sees them. */
START_TEST(test_sdp_format_loop_refused)
{
    static const char *const bodies[] = {
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=video 400 X /6\r\n",
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=image 7000 udptl \t\r\n",
    };
    struct sdpx_info info;
    char err[256];
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        ck_assert_int_eq(sdpx_parse(bodies[i], strlen(bodies[i]), &info, err, sizeof err), -1);
    const char *ok = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                     "m=image 7000 udptl t38\r\n";
    ck_assert_int_eq(sdpx_parse(ok, strlen(ok), &info, err, sizeof err), 0);
}
END_TEST

static Suite *bugs_suite(void)
{
    Suite *s = suite_create("regressions");
    TCase *tc = tcase_create("bugs");
    tcase_add_test(tc, test_sdp_formats_of_rtp_stream);
    tcase_add_test(tc, test_ratelimit_alternating_collision);
    tcase_add_test(tc, test_cidr_prefix_digits_only);
    tcase_add_test(tc, test_sdp_format_loop_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(bugs_suite()); }
