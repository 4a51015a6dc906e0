/* test_config.c - config_load(): a valid file, defaults, and refusals with
 * "FILE:LINE: ..." messages naming the key. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "unit_helpers.h"

static const char *const FULL_CONF =
    "node = \"edge-7\";\n"                                          /* 1 */
    "drain_timeout = 45;\n"                                         /* 2 */
    "sip = {\n"                                                     /* 3 */
    "  listen = \"sip:192.0.2.1:5080\";\n"                          /* 4 */
    "  max_calls = 500;\n"                                          /* 5 */
    "  rate_limit = 20;\n"                                          /* 6 */
    "};\n"                                                          /* 7 */
    "api = {\n"                                                     /* 8 */
    "  listen = \"0.0.0.0:8081\";\n"                                /* 9 */
    "  tokens = [ \"tok-1\", \"tok-2\" ];\n"                        /* 10 */
    "};\n"                                                          /* 11 */
    "media = {\n"                                                   /* 12 */
    "  mode = \"passthrough\";\n"                                   /* 13 */
    "  address = \"192.0.2.1\";\n"                                  /* 14 */
    "  port_min = 30000;\n"                                         /* 15 */
    "  port_max = 30099;\n"                                         /* 16 */
    "};\n"                                                          /* 17 */
    "trunks = (\n"                                                  /* 18 */
    "  { name = \"carrier\"; sources = [ \"10.0.0.0/8\", \"2001:db8::/32\" ];\n"
    "    gateway = \"sip:10.0.0.5:5090\"; },\n"
    "  { name = \"lab\"; sources = [ \"192.168.1.1\" ]; }\n"
    ");\n"
    "rooms = {\n"
    "  domain = \"rooms.example.test\";\n"
    "  list = (\n"
    "    { name = \"room-a\"; uri = \"sip:room-a@127.0.0.1:5070\"; },\n"
    "    { name = \"room-b\"; uri = \"sip:room-b@127.0.0.1:5072\"; }\n"
    "  );\n"
    "  resolver = \"https://resolver.example.test/rooms\";\n"
    "};\n"
    "routes = (\n"
    "  { user = \"+15550100\"; room = \"room-b\"; }\n"
    ");\n"
    "webhooks = { url = \"https://hooks.example.test/in\"; secret = \"c2VjcmV0\"; };\n"
    "transfer = {\n"
    "  ring_timeout = 20;\n"
    "  notify_timeout = 40;\n"
    "  allow = [ \"sip:*@example.com\", \"+1*\" ];\n"
    "  refer_fallback = true;\n"
    "};\n";

START_TEST(test_full_config)
{
    char err[512], path[64];
    struct config *cfg = unit_load_config(FULL_CONF, err, sizeof err, path, sizeof path);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);

    ck_assert_str_eq(cfg->path, path);
    ck_assert_str_eq(cfg->node, "edge-7");
    ck_assert_int_eq(cfg->drain_timeout, 45);
    ck_assert_str_eq(cfg->sip_listen, "sip:192.0.2.1:5080");
    ck_assert_int_eq(cfg->max_calls, 500);
    ck_assert_int_eq(cfg->rate_limit, 20);
    ck_assert_str_eq(cfg->api_listen, "0.0.0.0:8081");
    ck_assert_uint_eq(cfg->ntokens, 2);
    ck_assert_str_eq(cfg->tokens[0], "tok-1");
    ck_assert_str_eq(cfg->tokens[1], "tok-2");
    ck_assert_int_eq(cfg->media_mode, MEDIA_PASSTHROUGH);
    ck_assert_str_eq(cfg->media_address, "192.0.2.1");
    ck_assert_int_eq(cfg->port_min, 30000);
    ck_assert_int_eq(cfg->port_max, 30099);

    ck_assert_uint_eq(cfg->ntrunks, 2);
    ck_assert_str_eq(cfg->trunks[0].name, "carrier");
    ck_assert_uint_eq(cfg->trunks[0].nsources, 2);
    ck_assert_int_eq(cfg->trunks[0].sources[0].prefix, 8);
    ck_assert_uint_eq(cfg->trunks[0].sources[0].addr[0], 10);
    ck_assert_int_eq(cfg->trunks[0].sources[1].prefix, 32);
    ck_assert_str_eq(cfg->trunks[0].gateway, "sip:10.0.0.5:5090");
    ck_assert_str_eq(cfg->trunks[1].name, "lab");
    ck_assert_uint_eq(cfg->trunks[1].nsources, 1);
    ck_assert_int_eq(cfg->trunks[1].sources[0].prefix, 32);
    ck_assert_ptr_null(cfg->trunks[1].gateway);

    ck_assert_str_eq(cfg->rooms_domain, "rooms.example.test");
    ck_assert_uint_eq(cfg->nrooms, 2);
    ck_assert_str_eq(cfg->rooms[0].name, "room-a");
    ck_assert_str_eq(cfg->rooms[0].uri, "sip:room-a@127.0.0.1:5070");
    ck_assert_str_eq(cfg->rooms[1].name, "room-b");
    ck_assert_str_eq(cfg->resolver, "https://resolver.example.test/rooms");
    ck_assert_uint_eq(cfg->nroutes, 1);
    ck_assert_str_eq(cfg->routes[0].user, "+15550100");
    ck_assert_str_eq(cfg->routes[0].room, "room-b");

    ck_assert_str_eq(cfg->webhook_url, "https://hooks.example.test/in");
    ck_assert_str_eq(cfg->webhook_secret, "c2VjcmV0");

    ck_assert_int_eq(cfg->transfer.ring_timeout, 20);
    ck_assert_int_eq(cfg->transfer.notify_timeout, 40);
    ck_assert_uint_eq(cfg->transfer.nallow, 2);
    ck_assert_str_eq(cfg->transfer.allow[0], "sip:*@example.com");
    ck_assert_str_eq(cfg->transfer.allow[1], "+1*");
    ck_assert(cfg->transfer.refer_fallback);

    char host[64];
    int port = 0;
    ck_assert_int_eq(config_sip_hostport(cfg, host, sizeof host, &port), 0);
    ck_assert_str_eq(host, "192.0.2.1");
    ck_assert_int_eq(port, 5080);
    config_free(cfg);
}
END_TEST

START_TEST(test_defaults)
{
    char err[512];
    struct config *cfg = unit_load_config("# nothing set\n", err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_str_eq(cfg->node, "sipxfer");
    ck_assert_int_eq(cfg->drain_timeout, 30);
    ck_assert_str_eq(cfg->sip_listen, "sip:127.0.0.1:5060");
    ck_assert_int_eq(cfg->max_calls, 10000);
    ck_assert_int_eq(cfg->rate_limit, 0);
    ck_assert_str_eq(cfg->api_listen, "127.0.0.1:8080");
    ck_assert_uint_eq(cfg->ntokens, 0);
    ck_assert_int_eq(cfg->media_mode, MEDIA_RELAY);
    ck_assert_int_eq(cfg->media_srtp, SRTP_OFF);
    ck_assert_str_eq(cfg->media_address, "127.0.0.1");
    ck_assert_int_eq(cfg->port_min, 20000);
    ck_assert_int_eq(cfg->port_max, 29999);
    ck_assert_int_eq(cfg->media_timeout, 60);
    ck_assert_int_eq(cfg->media_hold_timeout, 3600);
    ck_assert_uint_eq(cfg->ntrunks, 0);
    ck_assert_uint_eq(cfg->nrooms, 0);
    ck_assert_uint_eq(cfg->nroutes, 0);
    ck_assert_str_eq(cfg->rooms_domain, "rooms.sipxfer.test");
    ck_assert_str_eq(cfg->resolver, "");
    ck_assert_int_eq(cfg->room_response_timeout, 32);
    ck_assert_str_eq(cfg->webhook_url, "");
    ck_assert_int_eq(cfg->transfer.ring_timeout, 30);
    ck_assert_int_eq(cfg->transfer.notify_timeout, 32);
    ck_assert(!cfg->transfer.refer_fallback);
    /* deny by default */
    ck_assert_uint_eq(cfg->transfer.nallow, 0);

    char host[64];
    int port = 0;
    ck_assert_int_eq(config_sip_hostport(cfg, host, sizeof host, &port), 0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 5060);
    config_free(cfg);
}
END_TEST

START_TEST(test_media_timeouts)
{
    char err[512];
    struct config *cfg = unit_load_config("media = { timeout = 0; hold_timeout = 7200; };\n", err,
                                          sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_int_eq(cfg->media_timeout, 0);
    ck_assert_int_eq(cfg->media_hold_timeout, 7200);
    config_free(cfg);
    cfg = unit_load_config("media = { timeout = 86400; hold_timeout = 0; };\n", err, sizeof err,
                           NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_int_eq(cfg->media_timeout, 86400);
    ck_assert_int_eq(cfg->media_hold_timeout, 0);
    config_free(cfg);
}
END_TEST

START_TEST(test_shipped_config)
{
    /* the default configuration in the source tree loads */
    char err[512];
    struct config *cfg = config_load(SIPXFER_SOURCE_ROOT "/config/sipxferd.conf", err, sizeof err);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_str_eq(cfg->node, "edge-1");
    ck_assert_int_eq(cfg->rate_limit, 200);
    ck_assert_uint_eq(cfg->nrooms, 2);
    ck_assert_uint_eq(cfg->ntrunks, 1);
    ck_assert_uint_eq(cfg->transfer.nallow, 2);
    config_free(cfg);
}
END_TEST

/* Load text expecting failure; check the message holds "PATH:LINE:" and
 * every string in `needles`. */
static void expect_error(const char *text, int line, const char *needle1, const char *needle2)
{
    char err[512], path[64];
    struct config *cfg = unit_load_config(text, err, sizeof err, path, sizeof path);
    ck_assert_msg(cfg == NULL, "config unexpectedly accepted:\n%s", text);
    char prefix[96];
    if (line > 0)
        snprintf(prefix, sizeof prefix, "%s:%d:", path, line);
    else
        snprintf(prefix, sizeof prefix, "%s:", path);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "error \"%s\" does not start with \"%s\"",
                  err, prefix);
    if (needle1)
        ck_assert_msg(strstr(err, needle1) != NULL, "error \"%s\" lacks \"%s\"", err, needle1);
    if (needle2)
        ck_assert_msg(strstr(err, needle2) != NULL, "error \"%s\" lacks \"%s\"", err, needle2);
}

START_TEST(test_media_kernel_interfaces)
{
    char err[512];
    struct config *cfg = unit_load_config("media = { kernel_interfaces = [ \"eth1\", \"bond0.20\" ]; };\n",
                                          err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_uint_eq(cfg->nmedia_kernel_interfaces, 2);
    ck_assert_str_eq(cfg->media_kernel_interfaces[1], "bond0.20");
    config_free(cfg);
    cfg = unit_load_config("node = \"a\";\n", err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_uint_eq(cfg->nmedia_kernel_interfaces, 0);
    config_free(cfg);
    expect_error("media = {\n  kernel_interfaces = [ \"eth1\", \"\" ];\n};\n", 2,
                 "media.kernel_interfaces", "not an interface name");
    expect_error("media = {\n  kernel_interfaces = [ \"a-name-of-16-ch\", \"a-name-of-16-chr\" ];\n};\n",
                 2, "\"a-name-of-16-chr\"", "not an interface name");
    expect_error("media = {\n  kernel_interfaces = [ \"eth0:1\" ];\n};\n", 2, "eth0:1", NULL);
    expect_error("media = {\n  kernel_interfaces = \"eth1\";\n};\n", 2, "must be a list of strings",
                 NULL);
    expect_error("media = {\n  kernel_interfaces = [ \"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", "
                 "\"h\", \"i\" ];\n};\n", 2, "at most 8", NULL);
}
END_TEST

START_TEST(test_unknown_top_key)
{
    expect_error("node = \"a\";\n"
                 "colour = \"blue\";\n",
                 2, "unknown key", "colour");
}
END_TEST

START_TEST(test_unknown_nested_key)
{
    expect_error("sip = {\n"
                 "  listen = \"sip:127.0.0.1:5060\";\n"
                 "  max_call = 5;\n"
                 "};\n",
                 3, "unknown key", "sip.max_call");
}
END_TEST

START_TEST(test_unknown_key_in_list_entry)
{
    expect_error("trunks = (\n"
                 "  { name = \"t\"; sources = [ \"10.0.0.0/8\" ];\n"
                 "    gatway = \"sip:10.0.0.1\"; }\n"
                 ");\n",
                 3, "unknown key", "gatway");
    expect_error("rooms = {\n"
                 "  list = (\n"
                 "    { name = \"r\"; uri = \"sip:r@127.0.0.1\"; url = \"x\"; }\n"
                 "  );\n"
                 "};\n",
                 3, "unknown key", "url");
}
END_TEST

START_TEST(test_media_srtp)
{
    static const char *const names[] = {"off", "allow", "require"};
    for (int i = 0; i < 3; i++) {
        char text[128], err[512];
        snprintf(text, sizeof text, "media = { srtp = \"%s\"; };\n", names[i]);
        struct config *cfg = unit_load_config(text, err, sizeof err, NULL, 0);
        ck_assert_msg(cfg != NULL, "%s", err);
        ck_assert_int_eq(cfg->media_srtp, i);
        config_free(cfg);
    }
    expect_error("media = {\n"
                 "  srtp = \"mandatory\";\n"
                 "};\n",
                 2, "media.srtp", "mandatory");
    expect_error("media = {\n"
                 "  srtp = true;\n"
                 "};\n",
                 2, "srtp", NULL);
}
END_TEST

START_TEST(test_bad_media_mode)
{
    expect_error("media = {\n"
                 "  mode = \"foo\";\n"
                 "};\n",
                 2, "media.mode", "foo");
}
END_TEST

START_TEST(test_port_range)
{
    expect_error("media = {\n"
                 "  port_min = 30000;\n"
                 "  port_max = 20000;\n"
                 "};\n",
                 3, "port_max", NULL);
    /* fewer than two RTP/RTCP pairs */
    expect_error("media = {\n"
                 "  port_min = 30000;\n"
                 "  port_max = 30002;\n"
                 "};\n",
                 3, "port_max", NULL);
    expect_error("media = {\n"
                 "  port_min = 80;\n"
                 "};\n",
                 2, "media.port_min", "out of range");
    expect_error("media = {\n"
                 "  port_max = 70000;\n"
                 "};\n",
                 2, "media.port_max", "out of range");
}
END_TEST

START_TEST(test_port_range_minimal_ok)
{
    char err[512];
    struct config *cfg = unit_load_config("media = { port_min = 30000; port_max = 30003; };\n", err,
                                          sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_int_eq(cfg->port_max - cfg->port_min, 3);
    config_free(cfg);
}
END_TEST

START_TEST(test_bad_trunk_cidr)
{
    expect_error("trunks = (\n"
                 "  { name = \"t\";\n"
                 "    sources = [ \"10.0.0.0/8\", \"10.0.0.0/33\" ]; }\n"
                 ");\n",
                 3, "trunks[0].sources", "10.0.0.0/33");
    expect_error("trunks = (\n"
                 "  { name = \"t\"; sources = [ \"not-an-address\" ]; }\n"
                 ");\n",
                 2, "trunks[0].sources", "not-an-address");
}
END_TEST

START_TEST(test_trunk_media_sources)
{
    char err[512];
    struct config *cfg = unit_load_config(
        "trunks = (\n"
        "  { name = \"c\"; sources = [ \"10.0.0.0/8\" ];\n"
        "    media_sources = [ \"203.0.113.0/24\", \"2001:db8::7\" ]; },\n"
        "  { name = \"d\"; sources = [ \"10.0.0.0/8\" ]; }\n"
        ");\n",
        err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_uint_eq(cfg->trunks[0].nmedia_sources, 2);
    ck_assert_int_eq(cfg->trunks[0].media_sources[0].prefix, 24);
    ck_assert_uint_eq(cfg->trunks[0].media_sources[0].addr[0], 203);
    ck_assert_int_eq(cfg->trunks[0].media_sources[1].prefix, 128);
    /* optional: none means SDP and SIP addresses only */
    ck_assert_uint_eq(cfg->trunks[1].nmedia_sources, 0);
    config_free(cfg);

    expect_error("trunks = (\n"
                 "  { name = \"t\"; sources = [ \"10.0.0.0/8\" ];\n"
                 "    media_sources = [ \"203.0.113.0/24\", \"203.0.113.0/40\" ]; }\n"
                 ");\n",
                 3, "trunks[0].media_sources", "203.0.113.0/40");
    expect_error("trunks = (\n"
                 "  { name = \"t\"; sources = [ \"10.0.0.0/8\" ]; media_sources = \"x\"; }\n"
                 ");\n",
                 2, "media_sources", "list of strings");
    expect_error("trunks = (\n"
                 "  { name = \"t\"; sources = [ \"10.0.0.0/8\" ]; media_sources = [ 7 ]; }\n"
                 ");\n",
                 2, "media_sources", "list of strings");
}
END_TEST

START_TEST(test_negative_max_calls)
{
    expect_error("sip = {\n"
                 "  max_calls = -1;\n"
                 "};\n",
                 2, "sip.max_calls", "out of range");
    expect_error("sip = { max_calls = 0; };\n", 1, "sip.max_calls", NULL);
    expect_error("sip = { rate_limit = -5; };\n", 1, "sip.rate_limit", NULL);
    expect_error("drain_timeout = -1;\n", 1, "drain_timeout", NULL);
}
END_TEST

START_TEST(test_connection_limits)
{
    char err[512];
    struct config *cfg = unit_load_config("# nothing set\n", err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_int_eq(cfg->api_idle_timeout, 15);
    ck_assert_int_eq(cfg->tcp_max_connections, 1024);
    ck_assert_int_eq(cfg->tcp_max_per_source, 32);
    ck_assert_int_eq(cfg->tcp_idle_timeout, 30);
    config_free(cfg);

    cfg = unit_load_config("api = { idle_timeout = 3; };\n"
                           "sip = { tcp_max_connections = 5000; tcp_max_per_source = 7;\n"
                           "        tcp_idle_timeout = 2; };\n",
                           err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_int_eq(cfg->api_idle_timeout, 3);
    ck_assert_int_eq(cfg->tcp_max_connections, 5000);
    ck_assert_int_eq(cfg->tcp_max_per_source, 7);
    ck_assert_int_eq(cfg->tcp_idle_timeout, 2);
    config_free(cfg);

    expect_error("api = {\n  idle_timeout = 0;\n};\n", 2, "api.idle_timeout", "out of range");
    expect_error("api = { idle_timeout = 3601; };\n", 1, "api.idle_timeout", NULL);
    expect_error("sip = {\n\n  tcp_max_connections = 0;\n};\n", 3, "sip.tcp_max_connections",
                 "out of range");
    expect_error("sip = { tcp_max_per_source = -1; };\n", 1, "sip.tcp_max_per_source", NULL);
    expect_error("sip = { tcp_idle_timeout = 0; };\n", 1, "sip.tcp_idle_timeout", NULL);
    expect_error("sip = { tcp_idle_timeout = \"30s\"; };\n", 1, "sip.tcp_idle_timeout",
                 "integer");
}
END_TEST

START_TEST(test_wrong_types)
{
    expect_error("sip = {\n  max_calls = \"many\";\n};\n", 2, "sip.max_calls", "integer");
    expect_error("node = 5;\n", 1, "node", "string");
    expect_error("transfer = {\n  refer_fallback = 1;\n};\n", 2, "transfer.refer_fallback", NULL);
    expect_error("api = {\n  tokens = [ 1, 2 ];\n};\n", 2, "api.tokens", NULL);
    expect_error("sip = \"x\";\n", 1, "sip", "group");
}
END_TEST

START_TEST(test_bad_values)
{
    expect_error("sip = {\n  listen = \"127.0.0.1:5060\";\n};\n", 2, "sip.listen", NULL);
    expect_error("sip = {\n  listen = \"sip:user@127.0.0.1:5060\";\n};\n", 2, "sip.listen", NULL);
    expect_error("api = {\n  listen = \"localhost\";\n};\n", 2, "api.listen", NULL);
    expect_error("api = {\n  tokens = [ \"\" ];\n};\n", 2, "api.tokens", NULL);
    expect_error("media = {\n  address = \"10.0.0.0/8\";\n};\n", 2, "media.address", NULL);
    expect_error("media = {\n  address = \"media.example.com\";\n};\n", 2, "media.address", NULL);
    expect_error("node = \"two words\";\n", 1, "node", NULL);
    expect_error("webhooks = {\n  url = \"ftp://x\";\n};\n", 2, "webhooks.url", NULL);
    expect_error("rooms = {\n  resolver = \"file:///etc\";\n};\n", 2, "rooms.resolver", NULL);
    expect_error("transfer = {\n  ring_timeout = 0;\n};\n", 2, "transfer.ring_timeout", NULL);
    expect_error("media = {\n  timeout = -1;\n};\n", 2, "media.timeout", "out of range");
    expect_error("media = {\n  timeout = 86401;\n};\n", 2, "media.timeout", "out of range");
    expect_error("media = {\n  hold_timeout = -5;\n};\n", 2, "media.hold_timeout", "out of range");
    expect_error("media = {\n  hold_timeout = 604801;\n};\n", 2, "media.hold_timeout", NULL);
    expect_error("media = {\n  timeout = \"60s\";\n};\n", 2, "media.timeout", "integer");
    expect_error("media = {\n  media_timeout = 60;\n};\n", 2, "media_timeout", NULL);
    expect_error("rooms = {\n  response_timeout = 0;\n};\n", 2, "rooms.response_timeout",
                 "out of range");
    expect_error("rooms = {\n\n  response_timeout = 301;\n};\n", 3, "rooms.response_timeout",
                 "out of range");
    expect_error("rooms = {\n  response_timeout = \"5\";\n};\n", 2, "rooms.response_timeout",
                 "integer");
}
END_TEST

START_TEST(test_room_response_timeout)
{
    char err[512];
    struct config *cfg =
        unit_load_config("rooms = {\n  response_timeout = 5;\n};\n", err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    ck_assert_int_eq(cfg->room_response_timeout, 5);
    config_free(cfg);
}
END_TEST

START_TEST(test_bad_rooms_and_routes)
{
    expect_error("rooms = {\n  list = (\n    { name = \"bad name\"; uri = \"sip:r@h\"; }\n  );\n};\n",
                 3, "rooms.list[0].name", NULL);
    expect_error("rooms = {\n  list = (\n    { name = \"r\"; uri = \"http://h\"; }\n  );\n};\n", 3,
                 "rooms.list[0].uri", NULL);
    expect_error("rooms = {\n  list = (\n"
                 "    { name = \"r\"; uri = \"sip:r@h\"; },\n"
                 "    { name = \"r\"; uri = \"sip:r2@h\"; }\n"
                 "  );\n};\n",
                 4, "duplicate room", "\"r\"");
    expect_error("rooms = {\n  list = (\n    { uri = \"sip:r@h\"; }\n  );\n};\n", 3, "missing key",
                 "name");
    expect_error("routes = (\n  { user = \"100\"; room = \"ghost\"; }\n);\n", 2, "routes[0].room",
                 "ghost");
    expect_error("trunks = (\n  { name = \"t\"; },\n  { name = \"t\"; }\n);\n", 3, "duplicate trunk",
                 NULL);
    expect_error("trunks = (\n  { name = \"t\"; gateway = \"mailto:x@y\"; }\n);\n", 2,
                 "trunks[0].gateway", NULL);
}
END_TEST

/* issue 12.9: a URI sipxferd cannot send to fails --check-config, not
 * every call with 503 "No transport" */
START_TEST(test_listen_list_advertise_tls)
{
    /* a sips: listen needs the tls group, whose files must be there */
    expect_error("sip = { listen = [ \"sip:127.0.0.1:5060\", \"sips:127.0.0.1:5061\" ]; };\n", 1,
                 "sip.tls", NULL);
    expect_error("sip = {\n  listen = [ \"sip:127.0.0.1:5060\", \"sips:127.0.0.1:5061\" ];\n"
                 "  tls = { certificate = \"/nonexistent/agent.pem\"; ca = \"/etc/hostname\"; };\n};\n",
                 3, "/nonexistent/agent.pem", "No such file");
    expect_error("sip = { listen = [ \"sip:127.0.0.1:5060\", \"sip:127.0.0.1:5070\" ]; };\n", 1,
                 "second sip:", NULL);
    expect_error("sip = { listen = [ \"sips:127.0.0.1:5061\" ]; };\n", 1, "needs a sip: URI", NULL);
    expect_error("sip = { listen = \"sip:127.0.0.1:5060;transport=udp\"; };\n", 1, "sip.listen",
                 NULL);
    expect_error("sip = { advertise = \"1.2.3.4:5060\"; };\n", 1, "sip.advertise", "no port");
    expect_error("media = { advertise = \"not-an-ip\"; };\n", 1, "media.advertise", NULL);

    /* a certificate file without its key is refused before sofia sees it */
    char cert[64], key_and_cert[64];
    unit_write_temp("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", cert,
                    sizeof cert);
    unit_write_temp("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
                    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                    key_and_cert, sizeof key_and_cert);
    char text[1024];
    snprintf(text, sizeof text,
             "sip = {\n  listen = [ \"sip:127.0.0.1:5060\", \"sips:127.0.0.1:5061\" ];\n"
             "  tls = { certificate = \"%s\"; ca = \"%s\"; };\n};\n", cert, cert);
    expect_error(text, 3, "no PEM private key", NULL);

    snprintf(text, sizeof text,
             "sip = {\n  listen = [ \"sip:[::1]:5060\", \"sips:0.0.0.0:5061\" ];\n"
             "  advertise = \"203.0.113.10\";\n"
             "  tls = { certificate = \"%s\"; ca = \"%s\"; verify_peer = true; };\n};\n"
             "media = { address = \"10.0.0.5\"; advertise = \"203.0.113.10\"; };\n"
             "trunks = ( { name = \"t\"; gateway = \"sips:gw.example\"; } );\n",
             key_and_cert, cert);
    char err[512];
    struct config *cfg = unit_load_config(text, err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "refused: %s", err);
    ck_assert_str_eq(cfg->sip_listen, "sip:[::1]:5060");
    ck_assert_str_eq(cfg->sips_listen, "sips:0.0.0.0:5061");
    ck_assert_str_eq(cfg->sip_advertise, "203.0.113.10");
    ck_assert(cfg->tls.verify_peer);
    ck_assert_str_eq(config_media_public(cfg), "203.0.113.10");
    char host[64];
    ck_assert_str_eq(config_sip_public_host(cfg, host, sizeof host), "203.0.113.10");
    config_free(cfg);

    cfg = unit_load_config("sip = { listen = \"sip:[::1]:5060\"; advertise = \"2001:db8::1\"; };\n",
                           err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "refused: %s", err);
    ck_assert_str_eq(config_sip_public_host(cfg, host, sizeof host), "[2001:db8::1]");
    ck_assert_str_eq(config_media_public(cfg), "127.0.0.1");
    ck_assert_ptr_null(cfg->sips_listen);
    config_free(cfg);
    unlink(cert);
    unlink(key_and_cert);
}
END_TEST

START_TEST(test_uri_transport_checked)
{
    expect_error("trunks = (\n  { name = \"t\";\n    gateway = \"sip:gw:5061;transport=tls\"; }\n);\n",
                 3, "trunks[0].gateway", "udp or tcp");
    expect_error("trunks = (\n  { name = \"t\"; gateway = \"sips:gw\"; }\n);\n", 2,
                 "trunks[0].gateway", "TLS");
    expect_error("rooms = {\n  list = (\n    { name = \"r\"; uri = \"sip:r@h;transport=sctp\"; }\n"
                 "  );\n};\n",
                 3, "rooms.list[0].uri", "udp or tcp");
    expect_error("rooms = {\n  list = (\n    { name = \"r\"; uri = \"sips:r@h\"; }\n  );\n};\n", 3,
                 "rooms.list[0].uri", "TLS");

    char err[512];
    struct config *cfg = unit_load_config(
        "trunks = ( { name = \"t\"; gateway = \"sip:gw:5090;transport=TCP;user=phone\"; } );\n"
        "rooms = { list = ( { name = \"r\"; uri = \"sip:r@h;transport=udp;lr\"; } ); };\n",
        err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "refused: %s", err);
    ck_assert_str_eq(cfg->trunks[0].gateway, "sip:gw:5090;transport=TCP;user=phone");
    ck_assert_str_eq(cfg->rooms[0].uri, "sip:r@h;transport=udp;lr");
    config_free(cfg);
}
END_TEST

START_TEST(test_bad_allow_pattern)
{
    /* patterns the part-by-part matcher cannot read are refused at load,
     * not left to silently match nothing */
    expect_error("transfer = {\n"
                 "  allow = [ \"sip:*@pbx.example.com\",\n"
                 "            \"sip:*@pbx.example.com;transport=tcp\" ];\n"
                 "};\n",
                 3, "transfer.allow[1]", "not a pattern");
    expect_error("transfer = { allow = [ \"tel:+1*\" ]; };\n", 1, "transfer.allow[0]", "sip:");
    expect_error("transfer = { allow = [ \"+1a*\" ]; };\n", 1, "transfer.allow[0]", "E.164");
}
END_TEST

START_TEST(test_syntax_error)
{
    /* syntax errors name the file and line too */
    expect_error("node = \"a\";\nsip = { listen = ; };\n", 2, "syntax error", NULL);
}
END_TEST

START_TEST(test_missing_file)
{
    char err[512] = "";
    struct config *cfg = config_load("/nonexistent/sipxfer-unit.conf", err, sizeof err);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(err, "/nonexistent/sipxfer-unit.conf") != NULL, "error: %s", err);
}
END_TEST

START_TEST(test_free_null)
{
    config_free(NULL);
}
END_TEST

/* SPEC section 10: the whole trunk block, as the SPEC writes it. */
static const char *const SPEC10_TRUNK =
    "trunks = (\n"                                                              /* 1 */
    "  { name = \"carrier\";\n"                                                 /* 2 */
    "    sources = [ \"198.51.100.0/24\" ];\n"                                  /* 3 */
    "    media_sources = [ \"203.0.113.0/24\" ];\n"                             /* 4 */
    "    gateways = [ \"sip:gw1.carrier.example\",\n"                           /* 5 */
    "                 \"sip:gw2.carrier.example;transport=tcp\" ];\n"           /* 6 */
    "    auth = { username = \"acct\"; password = \"se cr\\\"et\"; };\n"       /* 7 */
    "    register = false;\n"                                                   /* 8 */
    "    prefixes = [ \"+1\", \"+44\" ];\n"                                     /* 9 */
    "    number_format = \"national\";\n"                                       /* 10 */
    "    identity = \"pai\";\n"                                                 /* 11 */
    "    diversion = true;\n"                                                   /* 12 */
    "    options_interval = 30;\n"                                              /* 13 */
    "    refer_target = \"tel\";\n"                                             /* 14 */
    "  },\n"                                                                    /* 15 */
    "  { name = \"old\"; sources = [ \"10.0.0.0/8\" ]; gateway = \"sip:10.0.0.9\";\n"
    "    auth = { username = \"u\"; password = \"p\"; realm = \"carrier.example\"; }; }\n"
    ");\n";

START_TEST(test_trunk_spec10)
{
    char err[512];
    struct config *cfg = unit_load_config(SPEC10_TRUNK, err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    const struct trunk_cfg *t = &cfg->trunks[0];
    ck_assert_uint_eq(t->ngateways, 2);
    ck_assert_str_eq(t->gateways[0], "sip:gw1.carrier.example");
    ck_assert_str_eq(t->gateways[1], "sip:gw2.carrier.example;transport=tcp");
    ck_assert_ptr_eq(t->gateway, t->gateways[0]);
    ck_assert_str_eq(t->auth.username, "acct");
    ck_assert_str_eq(t->auth.password, "se cr\"et"); /* spaces and quotes are fine */
    ck_assert_ptr_null(t->auth.realm);
    ck_assert(!t->registration);
    ck_assert_uint_eq(t->nprefixes, 2);
    ck_assert_str_eq(t->prefixes[1], "+44");
    ck_assert_int_eq(t->number_format, NUMBER_NATIONAL);
    ck_assert_int_eq(t->identity, IDENTITY_PAI);
    ck_assert(t->diversion);
    ck_assert_int_eq(t->options_interval, 30);
    ck_assert_int_eq(t->refer_target, REFER_TARGET_TEL);
    ck_assert_uint_eq(t->nmedia_sources, 1);

    /* "gateway" is the one-element form */
    t = &cfg->trunks[1];
    ck_assert_uint_eq(t->ngateways, 1);
    ck_assert_str_eq(t->gateway, "sip:10.0.0.9");
    ck_assert_str_eq(t->auth.realm, "carrier.example");
    ck_assert_ptr_eq(config_trunk_by_name(cfg, "old"), t);
    ck_assert_ptr_eq(config_trunk_by_name(cfg, "carrier"), &cfg->trunks[0]);
    ck_assert_ptr_null(config_trunk_by_name(cfg, "nobody"));
    ck_assert_ptr_null(config_trunk_by_name(cfg, NULL));
    config_free(cfg);
}
END_TEST

START_TEST(test_trunk_defaults)
{
    char err[512];
    struct config *cfg = unit_load_config(
        "trunks = ( { name = \"t\"; sources = [ \"10.0.0.0/8\" ]; },\n"
        "           { name = \"e\"; gateway = \"\"; } );\n",
        err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "load failed: %s", err);
    for (int i = 0; i < 2; i++) {
        const struct trunk_cfg *t = &cfg->trunks[i];
        ck_assert_uint_eq(t->ngateways, 0);
        ck_assert_ptr_null(t->gateway);
        ck_assert_ptr_null(t->auth.username);
        ck_assert(!t->registration);
        ck_assert_uint_eq(t->nprefixes, 0);
        ck_assert_int_eq(t->number_format, NUMBER_E164);
        ck_assert_int_eq(t->identity, IDENTITY_FROM);
        ck_assert(!t->diversion);
        ck_assert_int_eq(t->options_interval, 0);
        ck_assert_int_eq(t->refer_target, REFER_TARGET_SIP);
    }
    config_free(cfg);
}
END_TEST

START_TEST(test_trunk_refusals)
{
    expect_error("trunks = (\n  { name = \"t\";\n    gateway = \"sip:a\";\n"
                 "    gateways = [ \"sip:b\" ]; }\n);\n",
                 4, "both 'gateway' and 'gateways'", NULL);
    expect_error("trunks = (\n  { name = \"t\";\n    gateways = [ ]; }\n);\n", 3,
                 "trunks[0].gateways", "empty");
    expect_error("trunks = (\n  { name = \"t\"; gateways = [ \"sip:a\",\n"
                 "      \"sip:b;transport=tls\" ]; }\n);\n",
                 3, "trunks[0].gateways[1]", "udp or tcp");
    expect_error("trunks = (\n  { name = \"t\"; gateways = [ \"sip:a\",\n"
                 "      \"http://b\" ]; }\n);\n",
                 3, "trunks[0].gateways[1]", "sip: URI");
    expect_error("trunks = (\n  { name = \"t\"; gateways = [ \"sip:a\", \"sip:a\" ]; }\n);\n", 2,
                 "gateways[1]", "twice");
    expect_error("trunks = (\n  { name = \"t\"; gateways = \"sip:a\"; }\n);\n", 2,
                 "trunks[0].gateways", "list of strings");
    /* auth */
    expect_error("trunks = (\n  { name = \"t\";\n    auth = { username = \"u\"; }; }\n);\n", 3,
                 "missing key", "password");
    expect_error("trunks = (\n  { name = \"t\";\n    auth = { username = \"u\"; password = \"p\";\n"
                 "             pass = \"x\"; }; }\n);\n",
                 4, "unknown key", "trunks[0].auth.pass");
    expect_error("trunks = (\n  { name = \"t\";\n    auth = { username = \"a:b\"; password = \"p\"; }; }\n);\n",
                 3, "trunks[0].auth.username", "':'");
    expect_error("trunks = (\n  { name = \"t\"; auth = { username = \"\"; password = \"p\"; }; }\n);\n",
                 2, "trunks[0].auth.username", NULL);
    expect_error("trunks = (\n  { name = \"t\"; auth = { username = \"u\"; password = \"p\\n\"; }; }\n);\n",
                 2, "trunks[0].auth.password", "control");
    /* sofia would digest "se:cret" as "se" */
    expect_error("trunks = (\n  { name = \"t\";\n    auth = { username = \"u\"; password = \"se:cret\"; }; }\n);\n",
                 3, "trunks[0].auth.password", "':'");
    expect_error("trunks = (\n  { name = \"t\"; auth = { username = \"u\"; password = \"p\";\n"
                 "    realm = \"a\\\"b\"; }; }\n);\n",
                 3, "trunks[0].auth.realm", NULL);
    expect_error("trunks = (\n  { name = \"t\"; auth = \"u:p\"; }\n);\n", 2, "auth", "group");
    expect_error("trunks = (\n  { name = \"t\"; auth = { username = 7; password = \"p\"; }; }\n);\n",
                 2, "trunks[0].auth.username", "string");
    /* the other keys */
    expect_error("trunks = (\n  { name = \"t\";\n    number_format = \"E164\"; }\n);\n", 3,
                 "number_format", "\"e164\", \"national\", \"tel\"");
    expect_error("trunks = (\n  { name = \"t\"; identity = \"ppi\"; }\n);\n", 2, "identity",
                 "ppi");
    expect_error("trunks = (\n  { name = \"t\"; refer_target = \"sips\"; }\n);\n", 2,
                 "refer_target", NULL);
    expect_error("trunks = (\n  { name = \"t\"; diversion = \"yes\"; }\n);\n", 2, "diversion",
                 "true or false");
    expect_error("trunks = (\n  { name = \"t\"; options_interval = -1; }\n);\n", 2,
                 "options_interval", "out of range");
    expect_error("trunks = (\n  { name = \"t\";\n    prefixes = [ \"+1\", \"44\" ]; }\n);\n", 3,
                 "trunks[0].prefixes[1]", "\"44\"");
    expect_error("trunks = (\n  { name = \"t\"; prefixes = [ \"+\" ]; }\n);\n", 2, "prefixes[0]",
                 NULL);
    expect_error("trunks = (\n  { name = \"t\"; gateway = \"sip:a\";\n    register = true; }\n);\n",
                 3, "register", "no auth");
    expect_error("trunks = (\n  { name = \"t\"; auth = { username = \"u\"; password = \"p\"; };\n"
                 "    register = true; }\n);\n",
                 3, "register", "no gateway");
    expect_error("trunks = (\n  { name = \"t\"; registr = true; }\n);\n", 2, "unknown key",
                 "registr");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, test_full_config);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_shipped_config);
    tcase_add_test(tc, test_media_timeouts);
    tcase_add_test(tc, test_port_range_minimal_ok);
    tcase_add_test(tc, test_free_null);
    tcase_add_test(tc, test_room_response_timeout);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, test_unknown_top_key);
    tcase_add_test(tc, test_unknown_nested_key);
    tcase_add_test(tc, test_unknown_key_in_list_entry);
    tcase_add_test(tc, test_bad_media_mode);
    tcase_add_test(tc, test_media_srtp);
    tcase_add_test(tc, test_port_range);
    tcase_add_test(tc, test_bad_trunk_cidr);
    tcase_add_test(tc, test_trunk_media_sources);
    tcase_add_test(tc, test_negative_max_calls);
    tcase_add_test(tc, test_wrong_types);
    tcase_add_test(tc, test_connection_limits);
    tcase_add_test(tc, test_bad_values);
    tcase_add_test(tc, test_bad_rooms_and_routes);
    tcase_add_test(tc, test_syntax_error);
    tcase_add_test(tc, test_uri_transport_checked);
    tcase_add_test(tc, test_listen_list_advertise_tls);
    tcase_add_test(tc, test_bad_allow_pattern);
    tcase_add_test(tc, test_trunk_spec10);
    tcase_add_test(tc, test_trunk_defaults);
    tcase_add_test(tc, test_trunk_refusals);
    tcase_add_test(tc, test_media_kernel_interfaces);
    tcase_add_test(tc, test_missing_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(config_suite()); }
