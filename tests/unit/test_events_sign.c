/* test_events_sign.c - events_sign() against vectors computed independently
 * with python's hmac module and `openssl dgst -sha256 -hmac`:
 *
 *   base64(hmac.new(key, b"1770005095." + BODY, hashlib.sha256).digest())
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "unit_helpers.h"

#define TS "1770005095"
#define BODY                                                                                       \
    "{\"version\":\"1.0.0\",\"type\":\"calltransfer.initiated\",\"id\":\"3f0c1e2a-6b7d-4c8e-9f10-" \
    "112233445566\",\"payload\":{\"room\":\"room-a\",\"session_id\":\"edge-1-abc\"},\"event_ts\":"  \
    "1770005095.25}"

/* key = b"secret-key-for-tests" */
#define SIG_SECRET "S5pyE4EydmmQPgpteTN2tYmGYlzkBiqIics5mbrLhjw="

START_TEST(test_base64_secret)
{
    char out[EVENTS_SIGNATURE_SIZE];
    ck_assert_int_eq(events_sign("c2VjcmV0LWtleS1mb3ItdGVzdHM=", TS, BODY, out, sizeof out), 0);
    ck_assert_str_eq(out, SIG_SECRET);
    ck_assert_uint_eq(strlen(out), 44);
}
END_TEST

START_TEST(test_unpadded_secret)
{
    char out[EVENTS_SIGNATURE_SIZE];
    ck_assert_int_eq(events_sign("c2VjcmV0LWtleS1mb3ItdGVzdHM", TS, BODY, out, sizeof out), 0);
    ck_assert_str_eq(out, SIG_SECRET);
}
END_TEST

START_TEST(test_short_key)
{
    char out[EVENTS_SIGNATURE_SIZE];
    /* "QUJD" = b"ABC" */
    ck_assert_int_eq(events_sign("QUJD", TS, BODY, out, sizeof out), 0);
    ck_assert_str_eq(out, "2wps9kGxKOoiun1IAqFYFRBI47SLtIb4gPuIMKReEZE=");
}
END_TEST

START_TEST(test_raw_secret)
{
    char out[EVENTS_SIGNATURE_SIZE];
    /* not base64: keyed with the raw bytes b"not base64!" */
    ck_assert_int_eq(events_sign("not base64!", TS, BODY, out, sizeof out), 1);
    ck_assert_str_eq(out, "CS5zQZQSUZjdAfDUZtBxyN0kdBDsxel7rZPe2x8Sc0w=");
    /* wrong padding is not base64 either: raw b"QQ=" */
    ck_assert_int_eq(events_sign("QQ=", TS, BODY, out, sizeof out), 1);
    ck_assert_str_eq(out, "thzVg1P4am1F6O+zCaTL/Q1zAeU8yYtIY6D5pWXO034=");
}
END_TEST

START_TEST(test_empty_secret)
{
    char out[EVENTS_SIGNATURE_SIZE];
    ck_assert_int_eq(events_sign("", TS, BODY, out, sizeof out), 0);
    ck_assert_str_eq(out, "AJxUCyEAgs9Uh8Yz4S/giak9SS2dazA0rIBwGm29gw0=");
}
END_TEST

START_TEST(test_body_changes_signature)
{
    char a[EVENTS_SIGNATURE_SIZE], b[EVENTS_SIGNATURE_SIZE];
    ck_assert_int_eq(events_sign("c2VjcmV0LWtleS1mb3ItdGVzdHM=", TS, BODY, a, sizeof a), 0);
    ck_assert_int_eq(events_sign("c2VjcmV0LWtleS1mb3ItdGVzdHM=", "1770005096", BODY, b, sizeof b),
                     0);
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(test_errors)
{
    char out[EVENTS_SIGNATURE_SIZE];
    ck_assert_int_eq(events_sign("QUJD", TS, BODY, out, EVENTS_SIGNATURE_SIZE - 1), -1);
    ck_assert_int_eq(events_sign(NULL, TS, BODY, out, sizeof out), -1);
    ck_assert_int_eq(events_sign("QUJD", NULL, BODY, out, sizeof out), -1);
    ck_assert_int_eq(events_sign("QUJD", TS, NULL, out, sizeof out), -1);
    ck_assert_int_eq(events_sign("QUJD", TS, BODY, NULL, sizeof out), -1);
}
END_TEST

static Suite *sign_suite(void)
{
    Suite *s = suite_create("events_sign");
    TCase *tc = tcase_create("hmac");
    tcase_add_test(tc, test_base64_secret);
    tcase_add_test(tc, test_unpadded_secret);
    tcase_add_test(tc, test_short_key);
    tcase_add_test(tc, test_raw_secret);
    tcase_add_test(tc, test_empty_secret);
    tcase_add_test(tc, test_body_changes_signature);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(sign_suite()); }
