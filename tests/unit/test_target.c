/* test_target.c - target_parse() and target_allowed() (target.h). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "target.h"
#include "unit_helpers.h"

#define SELF_HOST "127.0.0.1"
#define SELF_PORT 5060

static const char *const TARGET_CONF =
    "sip = { listen = \"sip:127.0.0.1:5060\"; };\n"
    "trunks = (\n"
    "  { name = \"in-only\"; sources = [ \"192.0.2.0/24\" ]; },\n"
    "  { name = \"carrier\"; sources = [ \"198.51.100.0/24\" ];\n"
    "    gateway = \"sip:gw.example.net:5090\"; }\n"
    ");\n"
    "rooms = {\n"
    "  domain = \"rooms.example.test\";\n"
    "  list = (\n"
    "    { name = \"room-a\"; uri = \"sip:room-a@127.0.0.1:5070\"; },\n"
    "    { name = \"room-b\"; uri = \"sip:room-b@127.0.0.1:5072\"; }\n"
    "  );\n"
    "};\n"
    "transfer = {\n"
    "  allow = [ \"sip:*@example.com\", \"sip:*@127.0.0.1*\", \"sip:*@localhost*\", \"+1*\" ];\n"
    "};\n";

static struct config *load(const char *text)
{
    char err[512];
    struct config *cfg = unit_load_config(text, err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "config failed: %s", err);
    return cfg;
}

static enum target_result parse(const struct config *cfg, const char *text, struct target *t,
                                char *err, size_t errlen)
{
    err[0] = '\0';
    return target_parse(cfg, text, SELF_HOST, SELF_PORT, t, err, errlen);
}

START_TEST(test_room_by_domain)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "sip:room-a@rooms.example.test", &t, err, sizeof err), TARGET_OK);
    ck_assert_int_eq(t.kind, TARGET_ROOM);
    ck_assert_str_eq(t.room, "room-a");
    ck_assert_str_eq(t.uri, "sip:room-a@127.0.0.1:5070");
    /* domain compare is case-insensitive */
    ck_assert_int_eq(parse(cfg, "sip:room-b@ROOMS.example.TEST", &t, err, sizeof err), TARGET_OK);
    ck_assert_int_eq(t.kind, TARGET_ROOM);
    ck_assert_str_eq(t.room, "room-b");
    config_free(cfg);
}
END_TEST

START_TEST(test_room_unknown_in_domain)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "sip:room-z@rooms.example.test", &t, err, sizeof err),
                     TARGET_INVALID);
    ck_assert_msg(strstr(err, "room-z") != NULL, "err: %s", err);
    config_free(cfg);
}
END_TEST

START_TEST(test_room_by_uri)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    /* the room's own URI names it, even though 127.0.0.1 is our host */
    ck_assert_int_eq(parse(cfg, "sip:room-b@127.0.0.1:5072", &t, err, sizeof err), TARGET_OK);
    ck_assert_int_eq(t.kind, TARGET_ROOM);
    ck_assert_str_eq(t.room, "room-b");
    config_free(cfg);
}
END_TEST

START_TEST(test_sip_with_x_header)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_msg(parse(cfg, "sip:bob@example.com?X-Foo=bar", &t, err, sizeof err) == TARGET_OK,
                  "err: %s", err);
    ck_assert_int_eq(t.kind, TARGET_SIP);
    ck_assert_str_eq(t.uri, "sip:bob@example.com");
    ck_assert_int_eq(t.nheaders, 1);
    ck_assert_str_eq(t.headers[0], "X-Foo: bar");
    config_free(cfg);
}
END_TEST

START_TEST(test_sip_multiple_and_escaped_headers)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_msg(parse(cfg, "sip:bob@example.com?X-A=1&x-b=two%20words", &t, err, sizeof err) ==
                      TARGET_OK,
                  "err: %s", err);
    ck_assert_int_eq(t.nheaders, 2);
    ck_assert_str_eq(t.headers[0], "X-A: 1");
    ck_assert_str_eq(t.headers[1], "x-b: two words");
    config_free(cfg);
}
END_TEST

START_TEST(test_sip_plain)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "sip:carol@example.com", &t, err, sizeof err), TARGET_OK);
    ck_assert_int_eq(t.kind, TARGET_SIP);
    ck_assert_str_eq(t.uri, "sip:carol@example.com");
    ck_assert_int_eq(t.nheaders, 0);
    config_free(cfg);
}
END_TEST

START_TEST(test_non_x_header_invalid)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?Subject=x", &t, err, sizeof err),
                     TARGET_INVALID);
    ck_assert_msg(err[0] != '\0', "no message");
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?X-Ok=1&Route=%3Csip:evil%3E", &t, err,
                           sizeof err),
                     TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?X-=1", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?X-Foo", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?=bar", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?X-F%3Ao=1", &t, err, sizeof err),
                     TARGET_INVALID);
    config_free(cfg);
}
END_TEST

START_TEST(test_control_chars_invalid)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com\r\nX-Evil: 1", &t, err, sizeof err),
                     TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com\n", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?X-Foo=a%0d%0aSubject:%20x", &t, err,
                           sizeof err),
                     TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?X-Foo=a%0Ab", &t, err, sizeof err),
                     TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?X-Foo=a%00b", &t, err, sizeof err),
                     TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?X-Foo=%zz", &t, err, sizeof err),
                     TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com?X-Foo=a%4", &t, err, sizeof err),
                     TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob @example.com", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com\t", &t, err, sizeof err), TARGET_INVALID);
    config_free(cfg);
}
END_TEST

START_TEST(test_not_sip_invalid)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, NULL, &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "http://example.com", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "tel:+15551234567", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "bob@example.com", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com:0", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com:70000", &t, err, sizeof err),
                     TARGET_INVALID);
    char longtext[600];
    memset(longtext, 'a', sizeof longtext - 1);
    memcpy(longtext, "sip:", 4);
    longtext[sizeof longtext - 1] = '\0';
    ck_assert_int_eq(parse(cfg, longtext, &t, err, sizeof err), TARGET_INVALID);
    config_free(cfg);
}
END_TEST

START_TEST(test_pstn)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_msg(parse(cfg, "+15551234567", &t, err, sizeof err) == TARGET_OK, "err: %s", err);
    ck_assert_int_eq(t.kind, TARGET_PSTN);
    ck_assert_str_eq(t.number, "+15551234567");
    /* the first trunk with a gateway */
    ck_assert_str_eq(t.uri, "sip:+15551234567@gw.example.net:5090;user=phone");
    config_free(cfg);
}
END_TEST

static void pstn_through(const char *gateway, const char *want)
{
    char conf[512];
    snprintf(conf, sizeof conf,
             "trunks = ( { name = \"t\"; sources = [ \"10.0.0.0/8\" ]; gateway = \"%s\"; } );\n"
             "transfer = { allow = [ \"*\" ]; };\n",
             gateway);
    struct config *cfg = load(conf);
    struct target t;
    char err[256];
    ck_assert_msg(parse(cfg, "+15551234567", &t, err, sizeof err) == TARGET_OK, "%s: %s", gateway,
                  err);
    ck_assert_str_eq(t.uri, want);
    config_free(cfg);
}

/* SPEC 10: with a gateways list, numbers go to its first entry, kept whole */
START_TEST(test_pstn_first_of_gateways)
{
    struct config *cfg = load(
        "trunks = ( { name = \"in\"; sources = [ \"10.0.0.0/8\" ]; },\n"
        "           { name = \"out\"; gateways = [ \"sip:gw1.example.net;transport=tcp\",\n"
        "                                          \"sip:gw2.example.net\" ]; } );\n"
        "transfer = { allow = [ \"*\" ]; };\n");
    struct target t;
    char err[256];
    ck_assert_msg(parse(cfg, "+15551234567", &t, err, sizeof err) == TARGET_OK, "err: %s", err);
    ck_assert_int_eq(t.kind, TARGET_PSTN);
    ck_assert_str_eq(t.uri, "sip:+15551234567@gw1.example.net;transport=tcp;user=phone");
    config_free(cfg);
}
END_TEST

/* issue 12.9: the gateway's transport and other parameters survive */
START_TEST(test_pstn_keeps_gateway_params)
{
    pstn_through("sip:gw.example.net:5090;transport=tcp",
                 "sip:+15551234567@gw.example.net:5090;transport=tcp;user=phone");
    /* one user=phone, ours, wherever the gateway put its own user= */
    pstn_through("sip:gw.example.net;user=phone;transport=tcp",
                 "sip:+15551234567@gw.example.net;transport=tcp;user=phone");
    pstn_through("sip:gw.example.net;transport=tcp;user=ip;lr",
                 "sip:+15551234567@gw.example.net;transport=tcp;lr;user=phone");
    /* "username" is another parameter, not user= */
    pstn_through("sip:gw.example.net;username=x", "sip:+15551234567@gw.example.net;username=x;user=phone");
    /* the gateway's own user and ?headers are not the number's */
    pstn_through("sip:trunk@10.0.0.5:5070;transport=tcp?X-A=1",
                 "sip:+15551234567@10.0.0.5:5070;transport=tcp;user=phone");
    pstn_through("sip:[2001:db8::5]:5090;transport=tcp",
                 "sip:+15551234567@[2001:db8::5]:5090;transport=tcp;user=phone");
}
END_TEST

START_TEST(test_pstn_uri_limits)
{
    char out[64];
    ck_assert_int_eq(target_pstn_uri("sip:gw;transport=tcp", "+15551234567", out, sizeof out), 0);
    ck_assert_str_eq(out, "sip:+15551234567@gw;transport=tcp;user=phone");
    /* does not fit: refused, never cut inside a parameter */
    ck_assert_int_eq(target_pstn_uri("sip:gw;transport=tcp", "+15551234567", out, 40), -1);
    ck_assert_int_eq(target_pstn_uri("sip:gw.example.net;transport=tcp", "+15551234567", out, 44),
                     -1);
    /* config.c refuses TLS gateways while sipxferd has no TLS transport;
     * the URI itself would keep saying TLS */
    char big[128];
    ck_assert_int_eq(target_pstn_uri("sip:gw.example.net;transport=tls", "+15551234567", big,
                                     sizeof big), 0);
    ck_assert_str_eq(big, "sip:+15551234567@gw.example.net;transport=tls;user=phone");
    ck_assert_int_eq(target_pstn_uri("sips:gw.example.net:5061", "+15551234567", big, sizeof big), 0);
    ck_assert_str_eq(big, "sips:+15551234567@gw.example.net:5061;user=phone");
    ck_assert_int_eq(target_pstn_uri("mailto:x@y", "+15551234567", out, sizeof out), -1);
    ck_assert_int_eq(target_pstn_uri("sip:", "+15551234567", out, sizeof out), -1);
    ck_assert_int_eq(target_pstn_uri(NULL, "+15551234567", out, sizeof out), -1);
}
END_TEST

START_TEST(test_name_addr)
{
    char out[64];
    ck_assert_int_eq(target_name_addr("sip:+1555@gw;user=phone", out, sizeof out), 0);
    ck_assert_str_eq(out, "<sip:+1555@gw;user=phone>");
    ck_assert_int_eq(target_name_addr("sip:a@b", out, 10), 0);
    ck_assert_str_eq(out, "<sip:a@b>");
    ck_assert_int_eq(target_name_addr("sip:a@bc", out, 10), -1);
    ck_assert_int_eq(target_name_addr(NULL, out, sizeof out), -1);
}
END_TEST

START_TEST(test_pstn_bad_numbers)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "+", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "+123", &t, err, sizeof err), TARGET_INVALID);       /* too short */
    ck_assert_int_eq(parse(cfg, "+1234567890123456", &t, err, sizeof err), TARGET_INVALID); /* 16 */
    ck_assert_int_eq(parse(cfg, "+05551234567", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "+1555123456a", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "+1-555-123-4567", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "15551234567", &t, err, sizeof err), TARGET_INVALID);
    /* 6 and 15 digits are the limits */
    ck_assert_int_eq(parse(cfg, "+1234567", &t, err, sizeof err), TARGET_OK);
    ck_assert_int_eq(parse(cfg, "+123456789012345", &t, err, sizeof err), TARGET_OK);
    config_free(cfg);
}
END_TEST

START_TEST(test_pstn_not_allowed)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    /* "+1*" only */
    ck_assert_int_eq(parse(cfg, "+445551234567", &t, err, sizeof err), TARGET_FORBIDDEN);
    ck_assert_msg(strstr(err, "+445551234567") != NULL, "err: %s", err);
    config_free(cfg);
}
END_TEST

START_TEST(test_pstn_without_gateway)
{
    struct config *cfg = load("trunks = ( { name = \"t\"; sources = [ \"10.0.0.0/8\" ]; } );\n"
                              "transfer = { allow = [ \"*\" ]; };\n");
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "+15551234567", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_msg(strstr(err, "gateway") != NULL, "err: %s", err);
    config_free(cfg);
}
END_TEST

START_TEST(test_loop_to_self)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "sip:x@127.0.0.1:5060", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_msg(err[0] != '\0', "no message");
    /* default port 5060, localhost is the same host as 127.0.0.1 */
    ck_assert_int_eq(parse(cfg, "sip:x@127.0.0.1", &t, err, sizeof err), TARGET_INVALID);
    ck_assert_int_eq(parse(cfg, "sip:x@localhost:5060", &t, err, sizeof err), TARGET_INVALID);
    /* another port on our host is not a loop */
    ck_assert_int_eq(parse(cfg, "sip:x@127.0.0.1:5099", &t, err, sizeof err), TARGET_OK);
    ck_assert_int_eq(t.kind, TARGET_SIP);
    /* sips defaults to 5061 */
    ck_assert_int_eq(parse(cfg, "sips:x@127.0.0.1", &t, err, sizeof err), TARGET_FORBIDDEN);
    config_free(cfg);
}
END_TEST

START_TEST(test_forbidden)
{
    struct config *cfg = load(TARGET_CONF);
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "sip:bob@example.org", &t, err, sizeof err), TARGET_FORBIDDEN);
    ck_assert_msg(strstr(err, "example.org") != NULL, "err: %s", err);
    /* the allow list sees the URI without its headers */
    ck_assert_int_eq(parse(cfg, "sip:bob@example.org?X-Host=example.com", &t, err, sizeof err),
                     TARGET_FORBIDDEN);
    config_free(cfg);
}
END_TEST

START_TEST(test_allowed_case_insensitive)
{
    struct config *cfg = load(TARGET_CONF);
    ck_assert_int_eq(target_allowed(cfg, "sip:bob@example.com"), 1);
    ck_assert_int_eq(target_allowed(cfg, "SIP:Bob@EXAMPLE.COM"), 1);
    ck_assert_int_eq(target_allowed(cfg, "sip:bob@example.org"), 0);
    ck_assert_int_eq(target_allowed(cfg, "+15551234567"), 1);
    ck_assert_int_eq(target_allowed(cfg, "+445551234567"), 0);
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "SIP:Bob@Example.Com", &t, err, sizeof err), TARGET_OK);
    config_free(cfg);
}
END_TEST

START_TEST(test_empty_allow_list_denies)
{
    struct target t;
    char err[256];
    struct config *cfg = load("transfer = { allow = [ ]; };\n");
    ck_assert_uint_eq(cfg->transfer.nallow, 0);
    ck_assert_int_eq(target_allowed(cfg, "sip:bob@example.com"), 0);
    ck_assert_int_eq(target_allowed(cfg, ""), 0);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com", &t, err, sizeof err), TARGET_FORBIDDEN);
    config_free(cfg);

    /* no allow key at all: same */
    cfg = load("# empty\n");
    ck_assert_int_eq(target_allowed(cfg, "sip:bob@example.com"), 0);
    ck_assert_int_eq(parse(cfg, "sip:bob@example.com", &t, err, sizeof err), TARGET_FORBIDDEN);
    config_free(cfg);
}
END_TEST

START_TEST(test_rooms_need_no_allow)
{
    /* rooms are ours: policy applies to external targets only */
    struct config *cfg = load("rooms = { domain = \"r.test\";\n"
                              "  list = ( { name = \"a\"; uri = \"sip:a@127.0.0.1:5070\"; } ); };\n");
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "sip:a@r.test", &t, err, sizeof err), TARGET_OK);
    ck_assert_int_eq(t.kind, TARGET_ROOM);
    config_free(cfg);
}
END_TEST

/* ---- transfer.allow matched part by part (issue 17 item 6) ------------- */

#define M(pattern, text) target_pattern_match(pattern, text)

START_TEST(test_allow_attack_user_param_at)
{
    const char *pbx = "sip:*@pbx.example.com";
    /* the issue's input: '*' must not run across host and port into a
     * parameter that happens to hold "@pbx.example.com" */
    ck_assert_int_eq(M(pbx, "sip:pstn-premium@127.0.0.1:38091;x=@pbx.example.com"), 0);
    ck_assert_int_eq(M(pbx, "sip:pstn-premium@127.0.0.1;x=@pbx.example.com"), 0);
    ck_assert_int_eq(M(pbx, "sip:a@127.0.0.1;@pbx.example.com"), 0);
    ck_assert_int_eq(M(pbx, "sip:a@127.0.0.1?x=@pbx.example.com"), 0);
    ck_assert_int_eq(M(pbx, "sip:a@127.0.0.1:5060?@pbx.example.com"), 0);
    /* '@' escaped in the user */
    ck_assert_int_eq(M(pbx, "sip:a%40127.0.0.1@pbx.example.com"), 0);
    ck_assert_int_eq(M(pbx, "sip:a%40@pbx.example.com"), 0);
    /* maddr would send the INVITE elsewhere */
    ck_assert_int_eq(M(pbx, "sip:a@pbx.example.com;maddr=127.0.0.1"), 0);
    ck_assert_int_eq(M(pbx, "sip:a@pbx.example.com;lr;MADDR=127.0.0.1"), 0);
    ck_assert_int_eq(M("sip:*", "sip:a@pbx.example.com;maddr=127.0.0.1"), 0);
    ck_assert_int_eq(M("*", "sip:a@pbx.example.com;maddr=127.0.0.1"), 0);
    /* the host is a host, not a suffix of the text */
    ck_assert_int_eq(M(pbx, "sip:a@evilpbx.example.com"), 0);
    ck_assert_int_eq(M(pbx, "sip:a@pbx.example.com.evil.net"), 0);
    ck_assert_int_eq(M(pbx, "sip:a@b@pbx.example.com"), 0);
    ck_assert_int_eq(M(pbx, "sip:a:secret@pbx.example.com"), 0);
    ck_assert_int_eq(M(pbx, "sip:@pbx.example.com"), 0);
    ck_assert_int_eq(M(pbx, "sip:pbx.example.com"), 0); /* the pattern wants a user */
    ck_assert_int_eq(M(pbx, "sips:a@pbx.example.com"), 0);
    ck_assert_int_eq(M(pbx, "+15551234567"), 0);
}
END_TEST

START_TEST(test_allow_parts_match)
{
    const char *pbx = "sip:*@pbx.example.com";
    ck_assert_int_eq(M(pbx, "sip:alice@pbx.example.com"), 1);
    ck_assert_int_eq(M(pbx, "SIP:Alice@PBX.Example.COM"), 1);
    ck_assert_int_eq(M(pbx, "sip:alice@pbx.example.com."), 1);
    ck_assert_int_eq(M(pbx, "sip:a%2Bb@pbx.example.com"), 1);
    ck_assert_int_eq(M(pbx, "sip:+1555;npdi@pbx.example.com"), 1);
    /* parameters are carried, never matched; no port in the pattern: any */
    ck_assert_int_eq(M(pbx, "sip:alice@pbx.example.com;transport=tcp"), 1);
    ck_assert_int_eq(M(pbx, "sip:alice@pbx.example.com:5070"), 1);
    ck_assert_int_eq(M(pbx, "sip:alice@pbx.example.com;x=%40"), 1);
    ck_assert_int_eq(M(pbx, "sip:alice@pbx.example.com;x=a@b"), 0); /* not a paramchar */

    /* user globs see the user only */
    ck_assert_int_eq(M("sip:agent-*@pbx.example.com", "sip:agent-7@pbx.example.com"), 1);
    ck_assert_int_eq(M("sip:agent-*@pbx.example.com", "sip:boss@pbx.example.com"), 0);
    ck_assert_int_eq(M("sip:agent-*@pbx.example.com",
                       "sip:agent-x@127.0.0.1;x=@pbx.example.com"), 0);
    /* no user in the pattern: any user, or none */
    ck_assert_int_eq(M("sip:pbx.example.com", "sip:pbx.example.com"), 1);
    ck_assert_int_eq(M("sip:pbx.example.com", "sip:bob@pbx.example.com"), 1);

    /* label globs */
    const char *sub = "sip:*@*.example.com";
    ck_assert_int_eq(M(sub, "sip:a@pbx.example.com"), 1);
    ck_assert_int_eq(M(sub, "sip:a@a.b.example.com"), 1);
    ck_assert_int_eq(M(sub, "sip:a@example.com"), 0);
    ck_assert_int_eq(M(sub, "sip:a@evilexample.com"), 0);
    ck_assert_int_eq(M(sub, "sip:a@example.com.evil"), 0);
    ck_assert_int_eq(M(sub, "sip:a@127.0.0.1;h=x.example.com"), 0);
    ck_assert_int_eq(M("sip:*@pbx?.example.com", "sip:a@pbx1.example.com"), 1);
    ck_assert_int_eq(M("sip:*@pbx*.example.com", "sip:a@pbx.x.example.com"), 0);
    ck_assert_int_eq(M("sip:*@10.0.0.*", "sip:a@10.0.0.7"), 1);
    ck_assert_int_eq(M("sip:*@10.0.0.*", "sip:a@10.0.1.7"), 0);
    ck_assert_int_eq(M("sip:*@127.0.0.1*", "sip:a@127.0.0.1:5070"), 1);

    /* ports: explicit in the pattern, the URI's (or its scheme's default) must match */
    const char *p5060 = "sip:*@pbx.example.com:5060";
    ck_assert_int_eq(M(p5060, "sip:a@pbx.example.com"), 1);
    ck_assert_int_eq(M(p5060, "sip:a@pbx.example.com:5060"), 1);
    ck_assert_int_eq(M(p5060, "sip:a@pbx.example.com:38091"), 0);
    ck_assert_int_eq(M("sips:*@pbx.example.com:5061", "sips:a@pbx.example.com"), 1);
    ck_assert_int_eq(M("sip:*@pbx.example.com:50*", "sip:a@pbx.example.com:5080"), 1);
    ck_assert_int_eq(M("sip:*@pbx.example.com:50*", "sip:a@pbx.example.com:6000"), 0);
    ck_assert_int_eq(M(p5060, "sip:a@pbx.example.com:0"), 0);
    ck_assert_int_eq(M(p5060, "sip:a@pbx.example.com:x"), 0);

    /* IPv6 literals are addresses */
    ck_assert_int_eq(M("sip:*@[2001:DB8:0::1]", "sip:a@[2001:db8::1]:5070"), 1);
    ck_assert_int_eq(M("sip:*@[2001:db8::1]:5070", "sip:a@[2001:db8::1]:5070"), 1);
    ck_assert_int_eq(M("sip:*@[2001:db8::1]", "sip:a@[2001:db8::2]"), 0);
    ck_assert_int_eq(M("sip:*", "sip:a@[2001:db8::2]"), 1);
    ck_assert_int_eq(M(sub, "sip:a@[2001:db8::2]"), 0);
    ck_assert_int_eq(M("sip:*", "sip:a@[nonsense]"), 0);

    /* schemes */
    ck_assert_int_eq(M("SIP:*", "sip:a@h.example"), 1);
    ck_assert_int_eq(M("sips:*", "SIPS:a@h.example"), 1);
    ck_assert_int_eq(M("sips:*", "sip:a@h.example"), 0);
    ck_assert_int_eq(M("sip:*", "sips:a@h.example"), 0);
    ck_assert_int_eq(M("sip:*", "tel:+15551234567"), 0);
}
END_TEST

START_TEST(test_allow_e164_digits_only)
{
    ck_assert_int_eq(M("+1*", "+15551234567"), 1);
    ck_assert_int_eq(M("+1555*", "+15551234567"), 1);
    ck_assert_int_eq(M("+1555*", "+15561234567"), 0);
    ck_assert_int_eq(M("+*", "+445551234567"), 1);
    ck_assert_int_eq(M("+*", "+1555;x=@pbx"), 0);
    ck_assert_int_eq(M("+*", "+1555@pbx.example.com"), 0);
    ck_assert_int_eq(M("+*", "+12"), 0);
    ck_assert_int_eq(M("+*", "sip:+15551234567@gw.example.net"), 0);
    ck_assert_int_eq(M("*", "+15551234567"), 1);
    ck_assert_int_eq(M("*", "sip:a@h.example"), 1);
    ck_assert_int_eq(M("*", "junk"), 0);
}
END_TEST

START_TEST(test_allow_pattern_check)
{
    char err[160];
    static const char *const good[] = {"*", "+*", "+1555*", "+1??5", "sip:*", "sips:*",
                                       "sip:*@pbx.example.com", "sip:*@*.example.com",
                                       "sip:agent-*@pbx.example.com:5060",
                                       "sip:*@127.0.0.1*", "sip:*@[2001:db8::1]:50*",
                                       "sip:pbx.example.com", NULL};
    for (const char *const *p = good; *p; p++)
        ck_assert_msg(target_pattern_check(*p, err, sizeof err) == 0, "%s: %s", *p, err);
    static const char *const bad[] = {"", "**", "+", "+1a*", "tel:*", "http://x",
                                      "sip:", "sip:*@", "sip:@h", "sip:a@b@c",
                                      "sip:u:pw@h", "sip:*@h;transport=tcp", "sip:*@h?X-A=1",
                                      "sip:*@h:", "sip:*@h:0", "sip:*@h:70000", "sip:*@h:5o",
                                      "sip:*@a..b", "sip:*@h.", "sip:*@[2001:db8::*]",
                                      "sip:*@[::1]x", "sip:*@h/x", "sip:* @h", NULL};
    for (const char *const *p = bad; *p; p++) {
        err[0] = '\0';
        ck_assert_msg(target_pattern_check(*p, err, sizeof err) < 0, "accepted %s", *p);
        ck_assert_msg(err[0], "no reason for %s", *p);
        /* and a pattern that cannot be read matches nothing */
        ck_assert_int_eq(M(*p, "sip:a@h"), 0);
    }
    ck_assert_int_eq(target_pattern_check(NULL, err, sizeof err), -1);
}
END_TEST

/* The shipped example patterns (config/sipxferd.conf, docs) under attack. */
START_TEST(test_allow_shipped_patterns_safe)
{
    struct config *cfg = load("transfer = { allow = [ \"sip:*\", \"+*\" ]; };\n");
    ck_assert_int_eq(target_allowed(cfg, "sip:x@pbx.example.com;maddr=10.0.0.1"), 0);
    ck_assert_int_eq(target_allowed(cfg, "sip:a%40b@pbx.example.com"), 0);
    ck_assert_int_eq(target_allowed(cfg, "sips:a@pbx.example.com"), 0);
    ck_assert_int_eq(target_allowed(cfg, "+1555;x"), 0);
    ck_assert_int_eq(target_allowed(cfg, "sip:a@pbx.example.com:5070"), 1);
    ck_assert_int_eq(target_allowed(cfg, "+15551234567"), 1);
    config_free(cfg);

    cfg = load("transfer = { allow = [ \"+1555*\", \"sip:*@pbx.example.com\" ]; };\n");
    struct target t;
    char err[256];
    ck_assert_int_eq(parse(cfg, "sip:pstn-premium@127.0.0.1:38091;x=@pbx.example.com", &t, err,
                           sizeof err),
                     TARGET_FORBIDDEN);
    ck_assert_int_eq(parse(cfg, "sip:pstn-premium@127.0.0.1:38091;x=@pbx.example.com?X-A=1", &t,
                           err, sizeof err),
                     TARGET_FORBIDDEN);
    ck_assert_int_eq(parse(cfg, "sip:bob@pbx.example.com?X-A=1", &t, err, sizeof err), TARGET_OK);
    ck_assert_str_eq(t.uri, "sip:bob@pbx.example.com");
    ck_assert_int_eq(parse(cfg, "+15551234567", &t, err, sizeof err), TARGET_INVALID); /* no gw */
    config_free(cfg);
}
END_TEST

static Suite *target_suite(void)
{
    Suite *s = suite_create("target");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_room_by_domain);
    tcase_add_test(tc, test_room_unknown_in_domain);
    tcase_add_test(tc, test_room_by_uri);
    tcase_add_test(tc, test_sip_with_x_header);
    tcase_add_test(tc, test_sip_multiple_and_escaped_headers);
    tcase_add_test(tc, test_sip_plain);
    tcase_add_test(tc, test_non_x_header_invalid);
    tcase_add_test(tc, test_control_chars_invalid);
    tcase_add_test(tc, test_not_sip_invalid);
    tcase_add_test(tc, test_pstn);
    tcase_add_test(tc, test_pstn_keeps_gateway_params);
    tcase_add_test(tc, test_pstn_first_of_gateways);
    tcase_add_test(tc, test_pstn_uri_limits);
    tcase_add_test(tc, test_name_addr);
    tcase_add_test(tc, test_pstn_bad_numbers);
    tcase_add_test(tc, test_pstn_not_allowed);
    tcase_add_test(tc, test_pstn_without_gateway);
    tcase_add_test(tc, test_loop_to_self);
    tcase_add_test(tc, test_forbidden);
    suite_add_tcase(s, tc);
    tc = tcase_create("allow");
    tcase_add_test(tc, test_allowed_case_insensitive);
    tcase_add_test(tc, test_empty_allow_list_denies);
    tcase_add_test(tc, test_rooms_need_no_allow);
    tcase_add_test(tc, test_allow_attack_user_param_at);
    tcase_add_test(tc, test_allow_parts_match);
    tcase_add_test(tc, test_allow_e164_digits_only);
    tcase_add_test(tc, test_allow_pattern_check);
    tcase_add_test(tc, test_allow_shipped_patterns_safe);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(target_suite()); }
