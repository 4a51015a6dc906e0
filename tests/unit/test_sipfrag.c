/* test_sipfrag.c - sipfrag_status(): status code of a message/sipfrag body. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "refer.h"
#include "unit_helpers.h"


static int st(const char *s)
{
    return sipfrag_status(s, strlen(s));
}

START_TEST(test_final_codes)
{
    ck_assert_int_eq(st("SIP/2.0 200 OK\r\n"), 200);
    ck_assert_int_eq(st("SIP/2.0 486 Busy Here\r\n"), 486);
    ck_assert_int_eq(st("SIP/2.0 603 Decline\r\n\r\n"), 603);
    ck_assert_int_eq(st("SIP/2.0 699 Whatever"), 699);
}
END_TEST

START_TEST(test_provisional)
{
    ck_assert_int_eq(st("SIP/2.0 100 Trying"), 100);
    ck_assert_int_eq(st("SIP/2.0 180 Ringing\r\n"), 180);
}
END_TEST

START_TEST(test_bare_code)
{
    /* no reason phrase at all, code ends the body or the line */
    ck_assert_int_eq(st("SIP/2.0 200"), 200);
    ck_assert_int_eq(st("SIP/2.0 200\r\n"), 200);
}
END_TEST

START_TEST(test_leading_whitespace_and_case)
{
    ck_assert_int_eq(st("\r\n  SIP/2.0 200 OK\r\n"), 200);
    ck_assert_int_eq(st("\t SIP/2.0 183 Session Progress"), 183);
    ck_assert_int_eq(st("sip/2.0 202 Accepted"), 202);
    /* several spaces before the code */
    ck_assert_int_eq(st("SIP/2.0   500 Server Error"), 500);
}
END_TEST

START_TEST(test_len_is_honoured)
{
    const char *s = "SIP/2.0 200 OK";
    /* cut in the middle of the code: not a status line */
    ck_assert_int_eq(sipfrag_status(s, 10), -1);
    ck_assert_int_eq(sipfrag_status(s, 11), 200);
    /* the buffer is not read beyond len: a digit past len does not count */
    const char *t = "SIP/2.0 2001";
    ck_assert_int_eq(sipfrag_status(t, 11), 200);
    ck_assert_int_eq(sipfrag_status(t, 12), -1);
}
END_TEST

START_TEST(test_garbage)
{
    ck_assert_int_eq(st(""), -1);
    ck_assert_int_eq(sipfrag_status(NULL, 0), -1);
    ck_assert_int_eq(st("   \r\n"), -1);
    ck_assert_int_eq(st("hello world, not sip"), -1);
    ck_assert_int_eq(st("SIP/2.0 abc Nope"), -1);
    ck_assert_int_eq(st("SIP/2.0 abc"), -1);
    ck_assert_int_eq(st("SIP/2.0 99 x"), -1);
    ck_assert_int_eq(st("SIP/2.0 20 OK"), -1);
    ck_assert_int_eq(st("SIP/2.0 2000 OK"), -1);
    ck_assert_int_eq(st("SIP/2.0200 OK"), -1);
    ck_assert_int_eq(st("SIP/3.0 200 OK"), -1);
    ck_assert_int_eq(st("HTTP/1.1 200 OK"), -1);
    ck_assert_int_eq(st("INVITE sip:a@b SIP/2.0"), -1);
    ck_assert_int_eq(st("SIP/2.0 20x OK"), -1);
}
END_TEST

START_TEST(test_out_of_range)
{
    ck_assert_int_eq(st("SIP/2.0 099 Low"), -1);
    ck_assert_int_eq(st("SIP/2.0 000 Zero"), -1);
    ck_assert_int_eq(st("SIP/2.0 700 High"), -1);
    ck_assert_int_eq(st("SIP/2.0 999 High"), -1);
}
END_TEST

static Suite *sipfrag_suite(void)
{
    Suite *s = suite_create("sipfrag");
    TCase *tc = tcase_create("status");
    tcase_add_test(tc, test_final_codes);
    tcase_add_test(tc, test_provisional);
    tcase_add_test(tc, test_bare_code);
    tcase_add_test(tc, test_leading_whitespace_and_case);
    tcase_add_test(tc, test_len_is_honoured);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_out_of_range);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(sipfrag_suite()); }
