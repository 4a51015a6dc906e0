/* test_admit.c - admit_invite(): each outcome of the admission checks and
 * the order they run in (docs/security.md 2.1), on INVITEs parsed by the
 * message class nta uses. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>

#include "admit.h"
#include "config.h"
#include "ratelimit.h"
#include "sip_guard.h"
#include "unit_helpers.h"

#define TRUSTED "192.0.2.50"
#define UNTRUSTED "203.0.113.9"
#define MAX_CALLS 3

static const char *const ADMIT_CONF_FMT =
    "sip = { max_calls = %d; rate_limit = %d; };\n"
    "trunks = ( { name = \"carrier\"; sources = [ \"192.0.2.0/24\" ]; } );\n"
    "rooms = {\n"
    "  domain = \"rooms.example.test\";\n"
    "  resolver = \"%s\";\n"
    "  list = ( { name = \"room-a\"; uri = \"sip:room-a@127.0.0.1:5070\"; } );\n"
    "};\n";

static const char SDP[] = "v=0\r\n"
                          "o=- 1 1 IN IP4 192.0.2.50\r\n"
                          "s=-\r\n"
                          "c=IN IP4 192.0.2.50\r\n"
                          "t=0 0\r\n"
                          "m=audio 4000 RTP/AVP 0\r\n";

/* One test's world: config, rate-limit table, the INVITE's properties. */
struct fixture {
    struct config *cfg;
    struct ratelimit *rl;
    struct sockaddr_in src;
    size_t calls;
    bool draining;
    double now;
    /* the INVITE */
    const char *user;
    const char *contact; /* NULL: no Contact header */
    int max_forwards;    /* < 0: no Max-Forwards header */
    const char *ctype;   /* NULL: no body */
    const char *body;
    msg_t *msg;
};

static void fx_init(struct fixture *f, int rate_limit, const char *resolver)
{
    memset(f, 0, sizeof *f);
    char text[1024], err[512];
    snprintf(text, sizeof text, ADMIT_CONF_FMT, MAX_CALLS, rate_limit, resolver);
    f->cfg = unit_load_config(text, err, sizeof err, NULL, 0);
    ck_assert_msg(f->cfg != NULL, "config failed: %s", err);
    f->rl = ratelimit_create(64);
    ck_assert_ptr_nonnull(f->rl);
    f->src.sin_family = AF_INET;
    f->src.sin_port = htons(5060);
    ck_assert_int_eq(inet_pton(AF_INET, TRUSTED, &f->src.sin_addr), 1);
    f->now = 1000.0;
    f->user = "room-a";
    f->contact = "<sip:caller@192.0.2.50:5060>";
    f->max_forwards = 70;
    f->ctype = "application/sdp";
    f->body = SDP;
}

static void fx_from(struct fixture *f, const char *ip)
{
    ck_assert_int_eq(inet_pton(AF_INET, ip, &f->src.sin_addr), 1);
}

static void fx_free(struct fixture *f)
{
    if (f->msg)
        msg_destroy(f->msg);
    ratelimit_destroy(f->rl);
    config_free(f->cfg);
}

/* Builds the INVITE the fixture describes and runs the checks on it. */
static void fx_admit(struct fixture *f, struct admit_result *r)
{
    static char text[40000];
    size_t blen = f->ctype ? strlen(f->body) : 0;
    int n = snprintf(text, sizeof text,
                     "INVITE sip:%s@127.0.0.1:5060 SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP 192.0.2.50:5060;branch=z9hG4bK-admit\r\n"
                     "From: <sip:alice@192.0.2.50>;tag=a1\r\n"
                     "To: <sip:%s@127.0.0.1>\r\n"
                     "Call-ID: admit-test\r\n"
                     "CSeq: 1 INVITE\r\n",
                     f->user, f->user);
    if (f->contact)
        n += snprintf(text + n, sizeof text - n, "Contact: %s\r\n", f->contact);
    if (f->max_forwards >= 0)
        n += snprintf(text + n, sizeof text - n, "Max-Forwards: %d\r\n", f->max_forwards);
    if (f->ctype)
        n += snprintf(text + n, sizeof text - n, "Content-Type: %s\r\n", f->ctype);
    n += snprintf(text + n, sizeof text - n, "Content-Length: %zu\r\n\r\n%s", blen,
                  f->ctype ? f->body : "");
    ck_assert_int_lt(n, (int)sizeof text);
    if (f->msg)
        msg_destroy(f->msg);
    f->msg = msg_make(sip_guard_mclass(), 0, text, (isize_t)n);
    ck_assert_ptr_nonnull(f->msg);
    const sip_t *sip = sip_object(f->msg);
    ck_assert_ptr_nonnull(sip->sip_request);

    struct admit_input in = {
        .cfg = f->cfg,
        .source = (const struct sockaddr *)&f->src,
        .sip = sip,
        .calls = f->calls,
        .draining = f->draining,
        .rl = f->rl,
        .now = f->now,
    };
    memset(r, 0xa5, sizeof *r); /* nothing may be left over from before */
    admit_invite(&in, r);
}

static void expect(const struct admit_result *r, enum admit_check check, int status,
                   const char *phrase, enum reject_kind kind, const char *reason,
                   const char *retry_after)
{
    ck_assert_int_eq(r->check, check);
    ck_assert_int_eq(r->status, status);
    ck_assert_str_eq(r->phrase, phrase);
    ck_assert_int_eq(r->kind, kind);
    ck_assert_pstr_eq(r->reason, reason);
    ck_assert_pstr_eq(r->retry_after, retry_after);
}

/* ---- outcomes -------------------------------------------------------------- */

START_TEST(test_admitted_to_room)
{
    struct fixture f;
    fx_init(&f, 0, "");
    struct admit_result r;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_null(r.retry_after);
    ck_assert_ptr_null(r.accept);
    ck_assert_ptr_nonnull(r.trunk);
    ck_assert_str_eq(r.trunk->name, "carrier");
    ck_assert_ptr_nonnull(r.room);
    ck_assert_str_eq(r.room->name, "room-a");
    ck_assert(!r.resolve);
    ck_assert_uint_eq(r.hops, 70);
    ck_assert(r.has_sdp);
    ck_assert_int_eq(r.offer.nstreams, 1);
    ck_assert_uint_eq(r.offer.s[0].port, 4000);
    fx_free(&f);
}
END_TEST

START_TEST(test_admitted_without_body)
{
    struct fixture f;
    fx_init(&f, 0, "");
    f.ctype = NULL;
    struct admit_result r;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    ck_assert(!r.has_sdp);
    fx_free(&f);
}
END_TEST

START_TEST(test_hops)
{
    struct fixture f;
    fx_init(&f, 0, "");
    struct admit_result r;
    f.max_forwards = 1;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    ck_assert_uint_eq(r.hops, 1);
    f.max_forwards = 200; /* capped: a loop is bounded by the usual value */
    fx_admit(&f, &r);
    ck_assert_uint_eq(r.hops, 70);
    f.max_forwards = -1; /* none: RFC 3261's 70 */
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    ck_assert_uint_eq(r.hops, 70);
    f.max_forwards = 0;
    fx_admit(&f, &r);
    expect(&r, ADMIT_HOPS, 483, "Too Many Hops", REJ_TOO_MANY_HOPS, NULL, NULL);
    fx_free(&f);
}
END_TEST

START_TEST(test_draining)
{
    struct fixture f;
    fx_init(&f, 0, "");
    f.draining = true;
    struct admit_result r;
    fx_admit(&f, &r);
    expect(&r, ADMIT_DRAINING, 503, "Service Unavailable", REJ_DRAIN, NULL, "30");
    fx_free(&f);
}
END_TEST

START_TEST(test_rate_limited)
{
    struct fixture f;
    fx_init(&f, 1, ""); /* 1/s, burst 2 */
    struct admit_result r;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    fx_admit(&f, &r);
    expect(&r, ADMIT_RATE, 503, "Rate Limited", REJ_RATE, "rate-limit", "2");
    /* the port does not make a new source, another address does */
    f.src.sin_port = htons(5099);
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_RATE);
    fx_from(&f, "192.0.2.51");
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    /* a second later the first source has a token again */
    fx_from(&f, TRUSTED);
    f.now += 1.0;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    fx_free(&f);
}
END_TEST

START_TEST(test_rate_cost_of_body)
{
    ck_assert(admit_invite_cost(NULL) == 1.0);
    struct fixture f;
    fx_init(&f, 2, ""); /* burst 4 */
    static char big[ADMIT_BODY_BYTES_PER_TOKEN * 2 + sizeof SDP];
    /* SDP padded with attributes to two tokens' worth of bytes: 3 tokens */
    size_t n = snprintf(big, sizeof big, "%s", SDP);
    while (n < ADMIT_BODY_BYTES_PER_TOKEN * 2)
        n += snprintf(big + n, sizeof big - n, "a=x-pad:%060d\r\n", 0);
    f.body = big;
    struct admit_result r;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    ck_assert(admit_invite_cost(sip_object(f.msg)) == 3.0);
    /* 1 token left: the next large INVITE is refused, a small one passes */
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_RATE);
    f.body = SDP;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    ck_assert(admit_invite_cost(sip_object(f.msg)) == 1.0);
    fx_free(&f);
}
END_TEST

START_TEST(test_untrusted_source)
{
    struct fixture f;
    fx_init(&f, 0, "");
    fx_from(&f, UNTRUSTED);
    struct admit_result r;
    fx_admit(&f, &r);
    expect(&r, ADMIT_SOURCE, 403, "Forbidden", REJ_FORBIDDEN, "untrusted-source", NULL);
    ck_assert_ptr_null(r.trunk);
    ck_assert_ptr_null(r.room);
    fx_free(&f);
}
END_TEST

/* rooms.sources (SPEC 12): a room INVITing an E.164 number places an
 * outbound call on the number's trunk; any other user from a room's
 * address is judged as from any source (403 here); a number no trunk takes
 * is 404; the same number from a trunk address is an ordinary dial-in. */
START_TEST(test_room_places_a_call)
{
    struct fixture f;
    fx_init(&f, 0, "");
    config_free(f.cfg);
    char err[512];
    f.cfg = unit_load_config(
        "trunks = ( { name = \"carrier\"; sources = [ \"192.0.2.0/24\" ];\n"
        "             gateway = \"sip:198.51.100.1\"; prefixes = [ \"+1\" ]; } );\n"
        "routes = ( { user = \"+15550100\"; room = \"room-a\"; } );\n"
        "rooms = { sources = [ \"10.1.0.0/16\" ];\n"
        "  list = ( { name = \"room-a\"; uri = \"sip:room-a@10.1.0.5\"; } ); };\n",
        err, sizeof err, NULL, 0);
    ck_assert_msg(f.cfg != NULL, "config failed: %s", err);
    struct admit_result r;

    fx_from(&f, "10.1.2.3");
    f.user = "+15557654321";
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    ck_assert(r.outbound);
    ck_assert_str_eq(r.number, "+15557654321");
    ck_assert_ptr_nonnull(r.trunk);
    ck_assert_str_eq(r.trunk->name, "carrier");
    ck_assert(r.has_sdp);

    f.user = "+447700900123"; /* no trunk takes +44 */
    fx_admit(&f, &r);
    expect(&r, ADMIT_ROUTE, 404, "Not Found", REJ_NOT_FOUND, NULL, NULL);

    f.user = "room-a"; /* not a number: a room address is no trunk */
    fx_admit(&f, &r);
    expect(&r, ADMIT_SOURCE, 403, "Forbidden", REJ_FORBIDDEN, "untrusted-source", NULL);

    fx_from(&f, TRUSTED); /* a carrier calling the number: dial-in */
    f.user = "+15550100";
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    ck_assert(!r.outbound);
    ck_assert_ptr_nonnull(r.room);
    fx_free(&f);
}
END_TEST

START_TEST(test_bad_contact)
{
    struct fixture f;
    fx_init(&f, 0, "");
    f.contact = "<sip:caller@192.0.2.50:0>";
    struct admit_result r;
    fx_admit(&f, &r);
    expect(&r, ADMIT_CONTACT, 400, "Bad Contact", REJ_BAD, "bad-contact", NULL);
    ck_assert_str_ne(r.why, "");
    f.contact = NULL; /* an INVITE makes a dialog: it needs one */
    fx_admit(&f, &r);
    expect(&r, ADMIT_CONTACT, 400, "Bad Contact", REJ_BAD, "bad-contact", NULL);
    f.contact = "<tel:+15550100>";
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_CONTACT);
    fx_free(&f);
}
END_TEST

START_TEST(test_max_calls)
{
    struct fixture f;
    fx_init(&f, 0, "");
    struct admit_result r;
    f.calls = MAX_CALLS - 1;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    f.calls = MAX_CALLS;
    fx_admit(&f, &r);
    expect(&r, ADMIT_MAX_CALLS, 503, "Too Many Calls", REJ_MAX_CALLS, NULL, "5");
    fx_free(&f);
}
END_TEST

START_TEST(test_no_route)
{
    struct fixture f;
    fx_init(&f, 0, "");
    f.user = "nobody";
    struct admit_result r;
    fx_admit(&f, &r);
    expect(&r, ADMIT_ROUTE, 404, "Not Found", REJ_NOT_FOUND, NULL, NULL);
    ck_assert_ptr_nonnull(r.trunk);
    fx_free(&f);
}
END_TEST

START_TEST(test_resolver_takes_unknown_rooms)
{
    struct fixture f;
    fx_init(&f, 0, "http://127.0.0.1:9/rooms");
    f.user = "nobody";
    struct admit_result r;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    ck_assert_ptr_null(r.room);
    ck_assert(r.resolve);
    /* a configured room is still found without asking */
    f.user = "room-a";
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    ck_assert_ptr_nonnull(r.room);
    ck_assert(!r.resolve);
    fx_free(&f);
}
END_TEST

START_TEST(test_body_not_sdp)
{
    struct fixture f;
    fx_init(&f, 0, "");
    f.ctype = "text/plain";
    f.body = "hello";
    struct admit_result r;
    fx_admit(&f, &r);
    expect(&r, ADMIT_BODY, 415, "Unsupported Media Type", REJ_BAD, NULL, NULL);
    ck_assert_str_eq(r.accept, "application/sdp");
    fx_free(&f);
}
END_TEST

START_TEST(test_sdp_refused)
{
    struct fixture f;
    fx_init(&f, 0, "");
    struct admit_result r;
    f.body = "this is not SDP\r\n";
    fx_admit(&f, &r);
    expect(&r, ADMIT_SDP, 488, "Not Acceptable Here", REJ_BAD, NULL, NULL);
    ck_assert_str_ne(r.why, "");
    ck_assert_ptr_null(r.accept);

    static char big[SDPX_MAX_BYTES + 200];
    size_t n = snprintf(big, sizeof big, "%s", SDP);
    while (n <= SDPX_MAX_BYTES)
        n += snprintf(big + n, sizeof big - n, "a=x-pad:%060d\r\n", 0);
    f.body = big;
    fx_admit(&f, &r);
    expect(&r, ADMIT_SDP, 413, "SDP Too Large", REJ_SDP_LIMIT, "sdp-limit", NULL);

    n = snprintf(big, sizeof big, "%s", SDP);
    for (int i = 0; i < SDPX_MAX_MEDIA; i++)
        n += snprintf(big + n, sizeof big - n, "m=audio %d RTP/AVP 0\r\n", 5000 + 2 * i);
    fx_admit(&f, &r);
    expect(&r, ADMIT_SDP, 488, "SDP Too Complex", REJ_SDP_LIMIT, "sdp-limit", NULL);
    fx_free(&f);
}
END_TEST

/* ---- order ----------------------------------------------------------------- */

/* Everything wrong at once; each step below fixes the failing check and
 * the next one in the documented order must answer. */
START_TEST(test_order_of_checks)
{
    struct fixture f;
    fx_init(&f, 1, "");
    fx_from(&f, UNTRUSTED);
    f.draining = true;
    f.contact = "<sip:caller@192.0.2.50:0>";
    f.max_forwards = 0;
    f.calls = MAX_CALLS;
    f.user = "nobody";
    f.ctype = "text/plain";
    f.body = "hello";
    struct admit_result r;

    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_DRAINING);
    f.draining = false;
    /* draining charged no tokens: the burst of 2 is still there */
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_SOURCE);
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_SOURCE);
    fx_admit(&f, &r); /* an untrusted source is rate-limited before its 403 */
    ck_assert_int_eq(r.check, ADMIT_RATE);
    f.cfg->rate_limit = 0;
    fx_admit(&f, &r); /* over max_calls, unknown room: still 403, nothing told */
    expect(&r, ADMIT_SOURCE, 403, "Forbidden", REJ_FORBIDDEN, "untrusted-source", NULL);
    fx_from(&f, TRUSTED);
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_CONTACT);
    f.contact = "<sip:caller@192.0.2.50:5060>";
    fx_admit(&f, &r); /* a loop ends at 483, not at max_calls */
    ck_assert_int_eq(r.check, ADMIT_HOPS);
    f.max_forwards = 70;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_MAX_CALLS);
    f.calls = 0;
    fx_admit(&f, &r); /* the room before the body */
    ck_assert_int_eq(r.check, ADMIT_ROUTE);
    f.user = "room-a";
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_BODY);
    f.ctype = "application/sdp";
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_SDP);
    f.body = SDP;
    fx_admit(&f, &r);
    ck_assert_int_eq(r.check, ADMIT_OK);
    fx_free(&f);
}
END_TEST

static Suite *admit_suite(void)
{
    Suite *s = suite_create("admit");
    TCase *tc = tcase_create("outcomes");
    tcase_add_test(tc, test_admitted_to_room);
    tcase_add_test(tc, test_admitted_without_body);
    tcase_add_test(tc, test_hops);
    tcase_add_test(tc, test_draining);
    tcase_add_test(tc, test_rate_limited);
    tcase_add_test(tc, test_rate_cost_of_body);
    tcase_add_test(tc, test_untrusted_source);
    tcase_add_test(tc, test_room_places_a_call);
    tcase_add_test(tc, test_bad_contact);
    tcase_add_test(tc, test_max_calls);
    tcase_add_test(tc, test_no_route);
    tcase_add_test(tc, test_resolver_takes_unknown_rooms);
    tcase_add_test(tc, test_body_not_sdp);
    tcase_add_test(tc, test_sdp_refused);
    suite_add_tcase(s, tc);
    tc = tcase_create("order");
    tcase_add_test(tc, test_order_of_checks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(admit_suite()); }
