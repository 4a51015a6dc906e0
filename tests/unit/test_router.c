/* test_router.c - CIDR parsing/matching, trunk source check, room selection. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "router.h"
#include "unit_helpers.h"

static struct sockaddr_in v4(const char *ip)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(5060);
    ck_assert_int_eq(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
    return sin;
}

static struct sockaddr_in6 v6(const char *ip)
{
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(5060);
    ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
    return sin6;
}

#define SA(x) ((const struct sockaddr *)&(x))

/* ---- cidr_parse ---------------------------------------------------------- */

START_TEST(test_parse_v4)
{
    struct cidr c;
    ck_assert(cidr_parse("10.1.2.0/24", &c));
    ck_assert_int_eq(c.family, AF_INET);
    ck_assert_int_eq(c.prefix, 24);
    ck_assert_uint_eq(c.addr[0], 10);
    ck_assert_uint_eq(c.addr[1], 1);
    ck_assert_uint_eq(c.addr[2], 2);
    ck_assert_uint_eq(c.addr[3], 0);

    ck_assert(cidr_parse("0.0.0.0/0", &c));
    ck_assert_int_eq(c.prefix, 0);
    ck_assert(cidr_parse("192.0.2.1/32", &c));
    ck_assert_int_eq(c.prefix, 32);
}
END_TEST

START_TEST(test_parse_v4_no_prefix)
{
    struct cidr c;
    ck_assert(cidr_parse("192.0.2.77", &c));
    ck_assert_int_eq(c.family, AF_INET);
    ck_assert_int_eq(c.prefix, 32);
    ck_assert_uint_eq(c.addr[3], 77);
}
END_TEST

START_TEST(test_parse_v6)
{
    struct cidr c;
    ck_assert(cidr_parse("2001:db8::/32", &c));
    ck_assert_int_eq(c.family, AF_INET6);
    ck_assert_int_eq(c.prefix, 32);
    ck_assert_uint_eq(c.addr[0], 0x20);
    ck_assert_uint_eq(c.addr[1], 0x01);
    ck_assert_uint_eq(c.addr[2], 0x0d);
    ck_assert_uint_eq(c.addr[3], 0xb8);

    ck_assert(cidr_parse("::1", &c));
    ck_assert_int_eq(c.family, AF_INET6);
    ck_assert_int_eq(c.prefix, 128);
    ck_assert_uint_eq(c.addr[15], 1);

    ck_assert(cidr_parse("fe80::/128", &c));
    ck_assert_int_eq(c.prefix, 128);
}
END_TEST

START_TEST(test_parse_bad)
{
    struct cidr c;
    ck_assert(!cidr_parse("1.2.3.4/33", &c));
    ck_assert(!cidr_parse("2001:db8::/129", &c));
    ck_assert(!cidr_parse("1.2.3.4/", &c));
    ck_assert(!cidr_parse("1.2.3.4/-1", &c));
    ck_assert(!cidr_parse("1.2.3.4/8x", &c));
    ck_assert(!cidr_parse("/8", &c));
    ck_assert(!cidr_parse("abc", &c));
    ck_assert(!cidr_parse("abc/8", &c));
    ck_assert(!cidr_parse("", &c));
    ck_assert(!cidr_parse(NULL, &c));
    ck_assert(!cidr_parse("1.2.3", &c));
    ck_assert(!cidr_parse("256.1.1.1", &c));
    ck_assert(!cidr_parse("1.2.3.4.5", &c));
    ck_assert(!cidr_parse("example.com", &c));
    /* longer than any address could be */
    ck_assert(!cidr_parse("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc/64", &c));
}
END_TEST

/* ---- cidr_match ---------------------------------------------------------- */

START_TEST(test_match_v4)
{
    struct cidr c;
    ck_assert(cidr_parse("10.1.2.0/24", &c));
    struct sockaddr_in in1 = v4("10.1.2.0"), in2 = v4("10.1.2.255"), out1 = v4("10.1.3.0"),
                       out2 = v4("11.1.2.1");
    ck_assert(cidr_match(&c, SA(in1)));
    ck_assert(cidr_match(&c, SA(in2)));
    ck_assert(!cidr_match(&c, SA(out1)));
    ck_assert(!cidr_match(&c, SA(out2)));
}
END_TEST

START_TEST(test_match_v4_odd_prefix)
{
    struct cidr c;
    ck_assert(cidr_parse("172.16.0.0/12", &c));
    struct sockaddr_in a = v4("172.31.255.255"), b = v4("172.32.0.0"), d = v4("172.15.255.255");
    ck_assert(cidr_match(&c, SA(a)));
    ck_assert(!cidr_match(&c, SA(b)));
    ck_assert(!cidr_match(&c, SA(d)));
}
END_TEST

START_TEST(test_match_host_and_any)
{
    struct cidr host, any;
    ck_assert(cidr_parse("192.0.2.5", &host));
    ck_assert(cidr_parse("0.0.0.0/0", &any));
    struct sockaddr_in a = v4("192.0.2.5"), b = v4("192.0.2.6");
    ck_assert(cidr_match(&host, SA(a)));
    ck_assert(!cidr_match(&host, SA(b)));
    ck_assert(cidr_match(&any, SA(a)));
    ck_assert(cidr_match(&any, SA(b)));
}
END_TEST

START_TEST(test_match_v6)
{
    struct cidr c;
    ck_assert(cidr_parse("2001:db8:1::/48", &c));
    struct sockaddr_in6 a = v6("2001:db8:1:ffff::1"), b = v6("2001:db8:2::1");
    ck_assert(cidr_match(&c, SA(a)));
    ck_assert(!cidr_match(&c, SA(b)));
}
END_TEST

START_TEST(test_match_family_mismatch)
{
    struct cidr v4net, v6net;
    ck_assert(cidr_parse("0.0.0.0/0", &v4net));
    ck_assert(cidr_parse("::/0", &v6net));
    struct sockaddr_in a = v4("10.0.0.1");
    struct sockaddr_in6 b = v6("2001:db8::1");
    ck_assert(!cidr_match(&v4net, SA(b)));
    ck_assert(!cidr_match(&v6net, SA(a)));
}
END_TEST

START_TEST(test_match_v4_mapped)
{
    struct cidr c;
    ck_assert(cidr_parse("10.0.0.0/8", &c));
    struct sockaddr_in6 in = v6("::ffff:10.20.30.40"), out = v6("::ffff:11.0.0.1");
    ck_assert(cidr_match(&c, SA(in)));
    ck_assert(!cidr_match(&c, SA(out)));
}
END_TEST

START_TEST(test_match_unknown_family)
{
    struct cidr c;
    ck_assert(cidr_parse("0.0.0.0/0", &c));
    struct sockaddr sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_family = AF_UNIX;
    ck_assert(!cidr_match(&c, &sa));
}
END_TEST

/* ---- router_trunk_for / router_room_for --------------------------------- */

static const char *const ROUTER_CONF =
    "trunks = (\n"
    "  { name = \"carrier\"; sources = [ \"192.0.2.0/24\", \"2001:db8::/32\" ];\n"
    "    gateway = \"sip:192.0.2.10:5090\"; },\n"
    "  { name = \"backup\"; sources = [ \"198.51.100.0/24\", \"192.0.2.128/25\" ];\n"
    "    gateways = [ \"sip:198.51.100.7\", \"sip:198.51.100.8:5070;transport=tcp\" ]; }\n"
    ");\n"
    "rooms = {\n"
    "  domain = \"rooms.example.test\";\n"
    "  list = (\n"
    "    { name = \"room-a\"; uri = \"sip:room-a@127.0.0.1:5070\"; },\n"
    "    { name = \"room-b\"; uri = \"sip:room-b@127.0.0.1:5072\"; }\n"
    "  );\n"
    "};\n"
    "routes = (\n"
    "  { user = \"+15550100\"; room = \"room-a\"; },\n"
    "  { user = \"support\"; room = \"room-b\"; },\n"
    "  { user = \"room-b\"; room = \"room-a\"; }\n"
    ");\n";

static struct config *router_cfg(void)
{
    char err[512];
    struct config *cfg = unit_load_config(ROUTER_CONF, err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "config failed: %s", err);
    return cfg;
}

START_TEST(test_trunk_for_v4)
{
    struct config *cfg = router_cfg();
    struct sockaddr_in a = v4("192.0.2.50"), b = v4("198.51.100.1"), none = v4("203.0.113.1");
    const struct trunk_cfg *t = router_trunk_for(cfg, SA(a));
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "carrier");
    t = router_trunk_for(cfg, SA(b));
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "backup");
    ck_assert_ptr_null(router_trunk_for(cfg, SA(none)));
    config_free(cfg);
}
END_TEST

START_TEST(test_trunk_for_first_match_wins)
{
    struct config *cfg = router_cfg();
    /* 192.0.2.200 is in both carrier (192.0.2.0/24) and backup (192.0.2.128/25) */
    struct sockaddr_in a = v4("192.0.2.200");
    const struct trunk_cfg *t = router_trunk_for(cfg, SA(a));
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "carrier");
    config_free(cfg);
}
END_TEST

START_TEST(test_trunk_for_v6_and_mapped)
{
    struct config *cfg = router_cfg();
    struct sockaddr_in6 a = v6("2001:db8:abcd::5"), m = v6("::ffff:198.51.100.9"),
                        mnone = v6("::ffff:203.0.113.1"), none = v6("2001:db9::1");
    const struct trunk_cfg *t = router_trunk_for(cfg, SA(a));
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "carrier");
    t = router_trunk_for(cfg, SA(m));
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "backup");
    ck_assert_ptr_null(router_trunk_for(cfg, SA(mnone)));
    ck_assert_ptr_null(router_trunk_for(cfg, SA(none)));
    config_free(cfg);
}
END_TEST

START_TEST(test_trunk_for_uri)
{
    struct config *cfg = router_cfg();
    /* the gateway is sip:192.0.2.10:5090: host and port must both match */
    const struct trunk_cfg *t =
        router_trunk_for_uri(cfg, "sip:+15550100@192.0.2.10:5090;user=phone");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "carrier");
    ck_assert_ptr_null(router_trunk_for_uri(cfg, "sip:+15550100@192.0.2.10"));
    ck_assert_ptr_null(router_trunk_for_uri(cfg, "sip:+15550100@192.0.2.10:5091"));
    ck_assert_ptr_null(router_trunk_for_uri(cfg, "sip:room-a@127.0.0.1:5070"));
    /* any gateway of a trunk's list names it */
    t = router_trunk_for_uri(cfg, "sip:+15550100@198.51.100.8:5070;transport=tcp;user=phone");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "backup");
    t = router_trunk_for_uri(cfg, "sip:+15550100@198.51.100.7:5060");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, "backup");
    ck_assert_ptr_null(router_trunk_for_uri(cfg, "sip:+15550100@198.51.100.8"));
    ck_assert_ptr_null(router_trunk_for_uri(cfg, "tel:+15550100"));
    ck_assert_ptr_null(router_trunk_for_uri(cfg, "not a uri"));
    ck_assert_ptr_null(router_trunk_for_uri(cfg, NULL));
    config_free(cfg);
}
END_TEST

START_TEST(test_room_for)
{
    struct config *cfg = router_cfg();
    const struct room_cfg *r = router_room_for(cfg, "room-a");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->name, "room-a");
    ck_assert_str_eq(r->uri, "sip:room-a@127.0.0.1:5070");

    r = router_room_for(cfg, "+15550100");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->name, "room-a");

    r = router_room_for(cfg, "support");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->name, "room-b");
    config_free(cfg);
}
END_TEST

START_TEST(test_room_for_name_beats_route)
{
    struct config *cfg = router_cfg();
    /* a routes entry with user "room-b" exists, but the room name wins */
    const struct room_cfg *r = router_room_for(cfg, "room-b");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->name, "room-b");
    config_free(cfg);
}
END_TEST

START_TEST(test_room_for_unknown)
{
    struct config *cfg = router_cfg();
    ck_assert_ptr_null(router_room_for(cfg, "nobody"));
    ck_assert_ptr_null(router_room_for(cfg, "+15550101"));
    ck_assert_ptr_null(router_room_for(cfg, "ROOM-A")); /* exact names */
    ck_assert_ptr_null(router_room_for(cfg, ""));
    ck_assert_ptr_null(router_room_for(cfg, NULL));
    config_free(cfg);
}
END_TEST

START_TEST(test_room_by_name)
{
    struct config *cfg = router_cfg();
    const struct room_cfg *r = router_room_by_name(cfg, "room-b");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->uri, "sip:room-b@127.0.0.1:5072");
    /* by name only: route users are not names */
    ck_assert_ptr_null(router_room_by_name(cfg, "support"));
    ck_assert_ptr_null(router_room_by_name(cfg, NULL));
    config_free(cfg);
}
END_TEST

START_TEST(test_ip_sockaddr)
{
    struct sockaddr_storage ss;
    ck_assert_uint_eq(ip_sockaddr("192.0.2.7", 5070, &ss), sizeof(struct sockaddr_in));
    const struct sockaddr_in *v4 = (const void *)&ss;
    ck_assert_int_eq(v4->sin_family, AF_INET);
    ck_assert_int_eq(ntohs(v4->sin_port), 5070);
    ck_assert_uint_eq(ntohl(v4->sin_addr.s_addr), 0xc0000207u);
    ck_assert_uint_eq(ip_sockaddr("[2001:db8::1]", 5060, &ss), sizeof(struct sockaddr_in6));
    ck_assert_int_eq(ss.ss_family, AF_INET6);
    ck_assert_uint_eq(ip_sockaddr("2001:db8::1", 1, &ss), sizeof(struct sockaddr_in6));
    /* names are never resolved; ports out of range and junk refused */
    ck_assert_uint_eq(ip_sockaddr("localhost", 5060, &ss), 0);
    ck_assert_uint_eq(ip_sockaddr("192.0.2.7", 0, &ss), 0);
    ck_assert_uint_eq(ip_sockaddr("192.0.2.7", 65536, &ss), 0);
    ck_assert_uint_eq(ip_sockaddr("[]", 5060, &ss), 0);
    ck_assert_uint_eq(ip_sockaddr(NULL, 5060, &ss), 0);
}
END_TEST

START_TEST(test_cidr_list_match)
{
    struct cidr nets[2];
    ck_assert(cidr_parse("10.0.0.0/8", &nets[0]));
    ck_assert(cidr_parse("192.0.2.1", &nets[1]));
    struct sockaddr_storage ss;
    ip_sockaddr("192.0.2.1", 5060, &ss);
    ck_assert(cidr_list_match(nets, 2, (struct sockaddr *)&ss));
    ck_assert(!cidr_list_match(nets, 1, (struct sockaddr *)&ss));
    ip_sockaddr("10.9.8.7", 5060, &ss);
    ck_assert(cidr_list_match(nets, 2, (struct sockaddr *)&ss));
    ck_assert(!cidr_list_match(nets, 0, (struct sockaddr *)&ss));
}
END_TEST

static Suite *router_suite(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("cidr");
    tcase_add_test(tc, test_parse_v4);
    tcase_add_test(tc, test_parse_v4_no_prefix);
    tcase_add_test(tc, test_parse_v6);
    tcase_add_test(tc, test_parse_bad);
    tcase_add_test(tc, test_match_v4);
    tcase_add_test(tc, test_match_v4_odd_prefix);
    tcase_add_test(tc, test_match_host_and_any);
    tcase_add_test(tc, test_match_v6);
    tcase_add_test(tc, test_match_family_mismatch);
    tcase_add_test(tc, test_match_v4_mapped);
    tcase_add_test(tc, test_match_unknown_family);
    suite_add_tcase(s, tc);
    tc = tcase_create("routing");
    tcase_add_test(tc, test_trunk_for_v4);
    tcase_add_test(tc, test_trunk_for_first_match_wins);
    tcase_add_test(tc, test_trunk_for_v6_and_mapped);
    tcase_add_test(tc, test_trunk_for_uri);
    tcase_add_test(tc, test_room_for);
    tcase_add_test(tc, test_room_for_name_beats_route);
    tcase_add_test(tc, test_room_for_unknown);
    tcase_add_test(tc, test_room_by_name);
    tcase_add_test(tc, test_ip_sockaddr);
    tcase_add_test(tc, test_cidr_list_match);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(router_suite()); }
