/* test_sip_guard.c - sip_guard_mclass: the tolerant Via parser, Contact and
 * Record-Route URIs refused while parsing. */
#include <check.h>
#include <string.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_alloc.h>

#include "sip_guard.h"
#include "unit_helpers.h"

static void tidy_eq(const char *in, const char *want)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", in);
    sip_guard_via_tidy(buf);
    ck_assert_str_eq(buf, want);
}

START_TEST(test_tidy)
{
    tidy_eq("SIP/2.0/UDP 192.0.2.15;;,;,,", "SIP/2.0/UDP 192.0.2.15");
    tidy_eq("SIP/2.0/UDP h;branch=z9hG4bK1;;rport", "SIP/2.0/UDP h;branch=z9hG4bK1;rport");
    tidy_eq("SIP/2.0/UDP a;branch=1 , SIP/2.0/TCP b", "SIP/2.0/UDP a;branch=1 ,SIP/2.0/TCP b");
    tidy_eq(",, SIP/2.0/UDP a ; ", "SIP/2.0/UDP a ");
    tidy_eq("SIP/2.0/UDP [2001:db8::1]:5060;received=2001:db8::9", "SIP/2.0/UDP [2001:db8::1]:5060;received=2001:db8::9");
    tidy_eq("SIP/2.0/UDP a;x=\";;,,\";;", "SIP/2.0/UDP a;x=\";;,,\"");
    tidy_eq("SIP/2.0/UDP a;x=\"unterminated;;", "SIP/2.0/UDP a;x=\"unterminated;;");
    tidy_eq("", "");
    tidy_eq(";;;,,,", "");
}
END_TEST

static msg_t *parse(const char *text)
{
    msg_mclass_t const *mc = sip_guard_mclass();
    ck_assert_ptr_nonnull(mc);
    return msg_make(mc, 0, text, (isize_t)strlen(text));
}

static const char badinv01[] = "INVITE sip:user@example.com SIP/2.0\r\n"
                               "To: sip:j.user@example.com\r\n"
                               "From: sip:caller@example.net;tag=1\r\n"
                               "Max-Forwards: 7\r\nCall-ID: x\r\nCSeq: 8 INVITE\r\n"
                               "Via: SIP/2.0/UDP 192.0.2.15;;,;,,\r\n"
                               "Contact: \"Joe\" <sip:joe@example.org>;;;;\r\n"
                               "Content-Length: 0\r\n\r\n";

START_TEST(test_bad_via_params_still_give_a_via)
{
    /* sofia's own class loses the Via, and nta then drops the request */
    msg_t *plain = msg_make(sip_default_mclass(), 0, badinv01, (isize_t)strlen(badinv01));
    ck_assert_ptr_nonnull(plain);
    ck_assert_ptr_null(sip_object(plain)->sip_via);
    msg_destroy(plain);

    msg_t *msg = parse(badinv01);
    ck_assert_ptr_nonnull(msg);
    sip_t *sip = sip_object(msg);
    ck_assert_ptr_nonnull(sip->sip_via);
    ck_assert_str_eq(sip->sip_via->v_host, "192.0.2.15");
    ck_assert_ptr_null(sip->sip_via->v_next);
    ck_assert_ptr_null(sip->sip_contact); /* still a bad header: nta answers 400 */
    ck_assert_ptr_nonnull(sip->sip_error);
    msg_destroy(msg);

    /* the compact form goes through the same parser */
    char compact[sizeof badinv01];
    memcpy(compact, badinv01, sizeof badinv01);
    char *via = strstr(compact, "\r\nVia: ");
    ck_assert_ptr_nonnull(via);
    memcpy(via + 2, "v:  ", 4);
    msg = parse(compact);
    ck_assert_ptr_nonnull(msg);
    ck_assert_ptr_nonnull(sip_object(msg)->sip_via);
    ck_assert_str_eq(sip_object(msg)->sip_via->v_host, "192.0.2.15");
    msg_destroy(msg);
}
END_TEST

START_TEST(test_good_vias_unchanged)
{
    msg_t *msg = parse("OPTIONS sip:a@example.com SIP/2.0\r\n"
                       "v: SIP/2.0/UDP a.example.com:5070;branch=z9hG4bK1;rport, SIP/2.0/TCP b;branch=z9hG4bK2\r\n"
                       "Via: SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bK3;received=2001:db8::9\r\n"
                       "To: <sip:a@example.com>\r\nFrom: <sip:b@example.com>;tag=1\r\n"
                       "Call-ID: y\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    ck_assert_ptr_nonnull(msg);
    sip_t *sip = sip_object(msg);
    ck_assert_ptr_null(sip->sip_error);
    sip_via_t *v = sip->sip_via;
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v->v_host, "a.example.com");
    ck_assert_str_eq(v->v_port, "5070");
    ck_assert_str_eq(v->v_branch, "z9hG4bK1");
    ck_assert_ptr_nonnull(v->v_params);
    ck_assert_str_eq(v->v_params[1], "rport");
    v = v->v_next;
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v->v_protocol, "SIP/2.0/TCP");
    ck_assert_str_eq(v->v_branch, "z9hG4bK2");
    v = v->v_next;
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v->v_host, "[2001:db8::9]");
    ck_assert_str_eq(v->v_received, "2001:db8::9");
    ck_assert_ptr_null(v->v_next);

    /* a Via made with sofia's own class (as nta adds to every request)
     * still goes into the message and out on the wire */
    su_home_t *home = msg_home(msg);
    sip_via_t *mine = sip_via_make(home, "SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKours");
    ck_assert_ptr_nonnull(mine);
    ck_assert_int_eq(msg_header_insert(msg, (msg_pub_t *)sip, (msg_header_t *)mine), 0);
    ck_assert_str_eq(sip->sip_via->v_branch, "z9hG4bKours");
    ck_assert_int_ge(msg_serialize(msg, (msg_pub_t *)sip), 0);
    char *wire = msg_as_string(home, msg, NULL, 0, NULL);
    ck_assert_ptr_nonnull(wire);
    ck_assert_ptr_nonnull(strstr(wire, "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKours\r\n"));
    ck_assert_ptr_nonnull(strstr(wire, "z9hG4bK3"));
    msg_destroy(msg);
}
END_TEST

static const char bad_2xx[] = "SIP/2.0 200 OK\r\n"
                              "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK1\r\n"
                              "To: <sip:a@example.com>;tag=2\r\nFrom: <sip:b@example.com>;tag=1\r\n"
                              "Call-ID: z\r\nCSeq: 2 INVITE\r\n"
                              "Contact: <sipmple.net;lr>\r\n"
                              "Content-Length: 0\r\n\r\n";

static char *replace(const char *text, const char *from, const char *to)
{
    static char buf[1024];
    const char *at = strstr(text, from);
    ck_assert_ptr_nonnull(at);
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return buf;
}

static void refused(const char *text, const char *want_why)
{
    msg_t *msg = parse(text);
    ck_assert_ptr_nonnull(msg);
    sip_t *sip = sip_object(msg);
    ck_assert_ptr_nonnull(sip->sip_status);
    if (strstr(want_why, "Contact"))
        ck_assert_msg(sip->sip_contact == NULL, "Contact kept: %s", text);
    else
        ck_assert_msg(sip->sip_record_route == NULL, "Record-Route kept: %s", text);
    ck_assert_ptr_nonnull(sip->sip_error);
    char why[80] = "";
    ck_assert(!sip_guard_dialog_ok(sip, false, why, sizeof why));
    ck_assert_str_eq(why, want_why);
    ck_assert(!sip_guard_reached_dialog(sip));
    msg_destroy(msg);
}

START_TEST(test_unusable_contact_never_reaches_the_dialog)
{
    /* sofia's own class takes it (and nua would make it the remote target) */
    msg_t *plain = msg_make(sip_default_mclass(), 0, bad_2xx, (isize_t)strlen(bad_2xx));
    ck_assert_ptr_nonnull(plain);
    ck_assert_ptr_nonnull(sip_object(plain)->sip_contact);
    ck_assert(sip_guard_reached_dialog(sip_object(plain)));
    msg_destroy(plain);

    refused(bad_2xx, "unusable Contact URI");
    refused(replace(bad_2xx, "Contact: ", "m: "), "unusable Contact URI");
    /* one bad value in a list spoils the header line */
    refused(replace(bad_2xx, "<sipmple.net;lr>", "<sip:ok@127.0.0.1>, <sip:x@h:99999>"),
            "unusable Contact URI");
    refused(replace(bad_2xx, "<sipmple.net;lr>", "<tel:+15551234>"), "unusable Contact URI");
    refused(replace(bad_2xx, "Contact: <sipmple.net;lr>",
                    "Contact: <sip:ok@127.0.0.1>\r\nRecord-Route: <sip:p1@127.0.0.1;lr>, <sipmple.net;lr>"),
            "unusable Record-Route URI");
}
END_TEST

START_TEST(test_usable_contact_and_route_kept)
{
    msg_t *msg = parse(replace(bad_2xx, "Contact: <sipmple.net;lr>",
                               "m: <sip:a@127.0.0.1:5070;transport=udp>, \"B\" <sips:b@[2001:db8::1]>\r\n"
                               "Record-Route: <sip:p1.example.com;lr>, <sip:10.0.0.1:5060;lr>"));
    ck_assert_ptr_nonnull(msg);
    sip_t *sip = sip_object(msg);
    ck_assert_ptr_null(sip->sip_error);
    ck_assert_ptr_nonnull(sip->sip_contact);
    ck_assert_str_eq(sip->sip_contact->m_url->url_port, "5070");
    ck_assert_ptr_nonnull(sip->sip_contact->m_next);
    ck_assert_str_eq(sip->sip_contact->m_next->m_url->url_host, "[2001:db8::1]");
    ck_assert_ptr_nonnull(sip->sip_record_route);
    ck_assert_ptr_nonnull(sip->sip_record_route->r_next);
    char why[80] = "";
    ck_assert(sip_guard_dialog_ok(sip, true, why, sizeof why));
    msg_destroy(msg);
}
END_TEST

START_TEST(test_named_maddr_dropped)
{
    msg_t *msg = parse("OPTIONS sip:a@example.com SIP/2.0\r\n"
                       "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport;maddr=x.example.invalid"
                       ", SIP/2.0/UDP b;branch=z9hG4bK2;maddr=192.0.2.7\r\n"
                       "v: SIP/2.0/UDP c;maddr=[2001:db8::1];branch=z9hG4bK3;MADDR=y.example\r\n"
                       "To: <sip:a@example.com>\r\nFrom: <sip:b@example.com>;tag=1\r\n"
                       "Call-ID: m\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    ck_assert_ptr_nonnull(msg);
    sip_t *sip = sip_object(msg);
    ck_assert_ptr_null(sip->sip_error);
    sip_via_t *v = sip->sip_via;
    /* a name: gone, so nta replies to received/rport; the rest stays */
    ck_assert_ptr_null(v->v_maddr);
    ck_assert_str_eq(v->v_branch, "z9hG4bK1");
    ck_assert_ptr_nonnull(v->v_rport);
    v = v->v_next;
    ck_assert_str_eq(v->v_maddr, "192.0.2.7");
    v = v->v_next;
    /* a numeric maddr beside a named one: both go (duplicates are malformed) */
    ck_assert_ptr_null(v->v_maddr);
    ck_assert_str_eq(v->v_branch, "z9hG4bK3");
    msg_t *msg2 = parse("OPTIONS sip:a@example.com SIP/2.0\r\n"
                        "Via: SIP/2.0/UDP c;maddr=[2001:db8::1];branch=z9hG4bK4\r\n"
                        "To: <sip:a@example.com>\r\nFrom: <sip:b@example.com>;tag=1\r\n"
                        "Call-ID: m2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    ck_assert_ptr_nonnull(msg2);
    ck_assert_str_eq(sip_object(msg2)->sip_via->v_maddr, "[2001:db8::1]");
    msg_destroy(msg2);
    char *wire = msg_as_string(msg_home(msg), msg, NULL, 0, NULL);
    ck_assert_ptr_nonnull(wire);
    ck_assert_ptr_null(strstr(wire, "example.invalid"));
    ck_assert_ptr_null(strstr(wire, "y.example"));
    msg_destroy(msg);
}
END_TEST

START_TEST(test_duplicate_singleton_headers_are_not_names)
{
    /* sofia turns the second Max-Forwards / Date into error headers in
     * place: their er_name slot is a number, never to be read as a name */
    static const char dup[] = "SIP/2.0 200 OK\r\n"
                              "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK1\r\n"
                              "To: <sip:a@example.com>;tag=2\r\nFrom: <sip:b@example.com>;tag=1\r\n"
                              "Call-ID: z\r\nCSeq: 2 INVITE\r\n"
                              "Max-Forwards: 70\r\nMax-Forwards: 70\r\n"
                              "Date: Fri, 01 Jan 2010 16:00:00 EST\r\n"
                              "Date: Fri, 01 Jan 2010 16:00:00 EST\r\n"
                              "Contact: <sip:a@127.0.0.1>\r\n"
                              "Content-Length: 0\r\n\r\n";
    msg_t *msg = parse(dup);
    ck_assert_ptr_nonnull(msg);
    sip_t *sip = sip_object(msg);
    ck_assert_ptr_nonnull(sip->sip_error);
    char why[80] = "";
    ck_assert_msg(sip_guard_dialog_ok(sip, true, why, sizeof why), "refused: %s", why);
    msg_destroy(msg);
    refused(replace(dup, "<sip:a@127.0.0.1>", "<sipmple.net;lr>"), "unusable Contact URI");
}
END_TEST

/* A repeated single-valued header is chained into sip_error as the header
 * it is, not as an error header: the mutator's INVITE with two
 * Max-Forwards crashed sip_guard_dialog_ok() reading its er_name. */
START_TEST(test_repeated_header_in_error_list)
{
    const char *inv = "INVITE sip:nobody@127.0.0.1 SIP/2.0\r\n"
                      "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-dup\r\n"
                      "Max-Forwards: 0\r\n"
                      "From: <sip:a@127.0.0.1:5999>;tag=1\r\nTo: <sip:nobody@127.0.0.1>\r\n"
                      "Call-ID: dup\r\nCSeq: 1 INVITE\r\n"
                      "Contact: %s\r\n"
                      "Max-Forwards: 70\r\n"
                      "Content-Length: 0\r\n\r\n";
    char text[1024], why[80];
    snprintf(text, sizeof text, inv, "<sip:a@127.0.0.1:5999>");
    msg_t *msg = parse(text);
    ck_assert_ptr_nonnull(msg);
    sip_t *sip = sip_object(msg);
    ck_assert_ptr_nonnull(sip->sip_error); /* the second Max-Forwards */
    ck_assert(sip_guard_dialog_ok(sip, true, why, sizeof why));
    msg_destroy(msg);

    snprintf(text, sizeof text, inv, "<sip:a@127.0.0.1:0>");
    msg = parse(text);
    ck_assert_ptr_nonnull(msg);
    ck_assert(!sip_guard_dialog_ok(sip_object(msg), true, why, sizeof why));
    ck_assert_str_eq(why, "unusable Contact URI");
    msg_destroy(msg);
}
END_TEST

static Suite *guard_suite(void)
{
    Suite *s = suite_create("sip_guard");
    TCase *tc = tcase_create("via");
    tcase_add_test(tc, test_tidy);
    tcase_add_test(tc, test_bad_via_params_still_give_a_via);
    tcase_add_test(tc, test_good_vias_unchanged);
    tcase_add_test(tc, test_named_maddr_dropped);
    suite_add_tcase(s, tc);
    TCase *tc2 = tcase_create("contact");
    tcase_add_test(tc2, test_unusable_contact_never_reaches_the_dialog);
    tcase_add_test(tc2, test_usable_contact_and_route_kept);
    tcase_add_test(tc2, test_duplicate_singleton_headers_are_not_names);
    tcase_add_test(tc2, test_repeated_header_in_error_list);
    suite_add_tcase(s, tc2);
    return s;
}

int main(void) { return unit_run(guard_suite()); }
