/* test_sdp.c - sdpx_parse() and sdpx_rewrite() (sdp_rewrite.h). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sdp_rewrite.h"
#include "unit_helpers.h"

#define OFFER                                                                                      \
    "v=0\r\n"                                                                                      \
    "o=alice 2890844526 2890844527 IN IP4 198.51.100.10\r\n"                                       \
    "s=-\r\n"                                                                                      \
    "c=IN IP4 198.51.100.10\r\n"                                                                   \
    "t=0 0\r\n"                                                                                    \
    "m=audio 49170 RTP/AVP 0 8 101\r\n"                                                            \
    "a=rtpmap:0 PCMU/8000\r\n"                                                                     \
    "a=rtpmap:8 PCMA/8000\r\n"                                                                     \
    "a=rtpmap:101 telephone-event/8000\r\n"                                                        \
    "a=fmtp:101 0-16\r\n"                                                                          \
    "a=sendrecv\r\n"

static int parse(const char *body, struct sdpx_info *info, char *err, size_t errlen)
{
    return sdpx_parse(body, strlen(body), info, err, errlen);
}

static char *rewrite(const char *body, const char *addr, const uint16_t *ports, int nports,
                     uint64_t id, uint64_t version)
{
    char err[256] = "";
    struct sdpx_origin o = {.id = id, .version = version};
    char *out = sdpx_rewrite(body, strlen(body), addr, ports, nports, &o, err, sizeof err);
    ck_assert_msg(out != NULL, "rewrite failed: %s", err);
    return out;
}

/* Number of lines in text that start with prefix. */
static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t plen = strlen(prefix);
    for (const char *p = text; p && *p;) {
        if (strncmp(p, prefix, plen) == 0)
            n++;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return n;
}

START_TEST(test_parse_typical_offer)
{
    struct sdpx_info info;
    char err[256] = "";
    ck_assert_msg(parse(OFFER, &info, err, sizeof err) == 0, "parse: %s", err);
    ck_assert_int_eq(info.nstreams, 1);
    ck_assert_int_eq(info.nlines, 1);
    ck_assert_uint_eq(info.o_id, 2890844526ULL);
    ck_assert_uint_eq(info.o_version, 2890844527ULL);
    ck_assert_str_eq(info.s[0].addr, "198.51.100.10");
    ck_assert_uint_eq(info.s[0].port, 49170);
    ck_assert_uint_eq(info.s[0].rtcp_port, 49171);
    ck_assert(!info.s[0].hold_addr);
    ck_assert_int_eq(info.s[0].dtmf_pt, 101);
    ck_assert(info.s[0].sendrecv);
    ck_assert(!info.on_hold);
}
END_TEST

static bool held(const char *session_attr, const char *media_attr, const char *addr)
{
    char body[512];
    snprintf(body, sizeof body,
             "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n%s"
             "m=audio 4000 RTP/AVP 0\r\n%s",
             addr, session_attr, media_attr);
    struct sdpx_info info;
    char err[256] = "";
    ck_assert_msg(parse(body, &info, err, sizeof err) == 0, "parse: %s", err);
    return info.on_hold;
}

START_TEST(test_parse_on_hold)
{
    /* RFC 3264 section 8.4 holds, media or session level, and RFC 2543's */
    ck_assert(held("", "a=sendonly\r\n", "192.0.2.1"));
    ck_assert(held("", "a=recvonly\r\n", "192.0.2.1"));
    ck_assert(held("", "a=inactive\r\n", "192.0.2.1"));
    ck_assert(held("a=sendonly\r\n", "", "192.0.2.1"));
    ck_assert(held("", "", "0.0.0.0"));
    ck_assert(held("", "a=sendrecv\r\n", "0.0.0.0"));
    /* not on hold: explicit or implied sendrecv, media level overriding */
    ck_assert(!held("", "", "192.0.2.1"));
    ck_assert(!held("", "a=sendrecv\r\n", "192.0.2.1"));
    ck_assert(!held("a=inactive\r\n", "a=sendrecv\r\n", "192.0.2.1"));
}
END_TEST

START_TEST(test_parse_on_hold_streams)
{
    /* one live stream is enough to count as media flowing; none at all
     * (every stream rejected) is as quiet as a hold */
    struct sdpx_info info;
    char err[256] = "";
    const char *video_live = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
                             "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=inactive\r\n"
                             "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    ck_assert_msg(parse(video_live, &info, err, sizeof err) == 0, "parse: %s", err);
    ck_assert(!info.on_hold);
    ck_assert(!info.s[0].sendrecv);
    ck_assert(info.s[1].sendrecv);
    const char *all_rejected = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n"
                               "c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
    ck_assert_msg(parse(all_rejected, &info, err, sizeof err) == 0, "parse: %s", err);
    ck_assert(info.on_hold);
}
END_TEST

START_TEST(test_parse_no_dtmf)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(body, &info, err, sizeof err), 0);
    ck_assert_int_eq(info.s[0].dtmf_pt, -1);
    /* telephone-event at another clock rate is not our DTMF */
    const char *wb = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                     "m=audio 4000 RTP/AVP 9 100\r\na=rtpmap:9 G722/8000\r\n"
                     "a=rtpmap:100 telephone-event/16000\r\n";
    ck_assert_int_eq(parse(wb, &info, err, sizeof err), 0);
    ck_assert_int_eq(info.s[0].dtmf_pt, -1);
}
END_TEST

START_TEST(test_parse_rtcp_attribute)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\na=rtcp:4711\r\n";
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(body, &info, err, sizeof err), 0);
    ck_assert_uint_eq(info.s[0].port, 4000);
    ck_assert_uint_eq(info.s[0].rtcp_port, 4711);
}
END_TEST

START_TEST(test_parse_media_level_connection)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\n"
                       "c=IN IP4 203.0.113.5\r\n"
                       "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(body, &info, err, sizeof err), 0);
    ck_assert_int_eq(info.nstreams, 2);
    ck_assert_str_eq(info.s[0].addr, "203.0.113.5"); /* media level wins */
    ck_assert_str_eq(info.s[1].addr, "192.0.2.1");   /* session level fallback */
    ck_assert_uint_eq(info.s[1].port, 5000);
}
END_TEST

START_TEST(test_parse_media_only_connection)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 203.0.113.5\r\n";
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(body, &info, err, sizeof err), 0);
    ck_assert_str_eq(info.s[0].addr, "203.0.113.5");
}
END_TEST

START_TEST(test_parse_ipv6)
{
    const char *body = "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\n";
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(body, &info, err, sizeof err), 0);
    ck_assert_str_eq(info.s[0].addr, "2001:db8::1");
}
END_TEST

START_TEST(test_parse_hold)
{
    const char *body = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\n";
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(body, &info, err, sizeof err), 0);
    ck_assert(info.s[0].hold_addr);
    ck_assert_str_eq(info.s[0].addr, "0.0.0.0");
}
END_TEST

START_TEST(test_parse_rejected_stream)
{
    /* port 0: rejected, needs no address */
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n"
                       "m=video 0 RTP/AVP 96\r\n";
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(body, &info, err, sizeof err), 0);
    ck_assert_int_eq(info.nstreams, 2);
    ck_assert_uint_eq(info.s[1].port, 0);
}
END_TEST

START_TEST(test_parse_stream_cap)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\n"
                       "m=audio 4002 RTP/AVP 0\r\n"
                       "m=audio 4004 RTP/AVP 0\r\n"
                       "m=audio 4006 RTP/AVP 0\r\n"
                       "m=audio 4008 RTP/AVP 0\r\n"
                       "m=audio 4010 RTP/AVP 0\r\n";
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(body, &info, err, sizeof err), 0);
    ck_assert_int_eq(info.nstreams, SDPX_MAX_STREAMS);
    ck_assert_int_eq(info.nlines, 6);
    ck_assert_uint_eq(info.s[3].port, 4006);
}
END_TEST

START_TEST(test_parse_garbage)
{
    struct sdpx_info info;
    char err[256];
    err[0] = '\0';
    ck_assert_int_eq(sdpx_parse("", 0, &info, err, sizeof err), -1);
    ck_assert_msg(err[0] != '\0', "no error message");
    ck_assert_int_eq(sdpx_parse(NULL, 0, &info, err, sizeof err), -1);
    err[0] = '\0';
    ck_assert_int_eq(parse("this is not sdp at all", &info, err, sizeof err), -1);
    ck_assert_msg(err[0] != '\0', "no error message");
    /* an active stream with no connection address anywhere */
    err[0] = '\0';
    ck_assert_int_eq(parse("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
                           "m=audio 4000 RTP/AVP 0\r\n",
                           &info, err, sizeof err),
                     -1);
    ck_assert_msg(err[0] != '\0', "no error message");
}
END_TEST

START_TEST(test_rewrite_basic)
{
    uint16_t ports[] = {30000};
    char *out = rewrite(OFFER, "192.0.2.99", ports, 1, 42, 7);
    ck_assert_msg(strstr(out, "c=IN IP4 192.0.2.99\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "m=audio 30000 RTP/AVP 0 8 101\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "o=sipxfer 42 7 IN IP4 192.0.2.99\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "198.51.100.10") == NULL, "far address kept:\n%s", out);
    ck_assert_msg(strstr(out, "a=rtpmap:101 telephone-event/8000") != NULL, "%s", out);

    /* the output parses back to what we asked for */
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(out, &info, err, sizeof err), 0);
    ck_assert_str_eq(info.s[0].addr, "192.0.2.99");
    ck_assert_uint_eq(info.s[0].port, 30000);
    ck_assert_uint_eq(info.s[0].rtcp_port, 30001);
    ck_assert_uint_eq(info.o_id, 42);
    ck_assert_uint_eq(info.o_version, 7);
    ck_assert_int_eq(info.s[0].dtmf_pt, 101);
    free(out);
}
END_TEST

START_TEST(test_rewrite_keeps_direction)
{
    /* a=sendonly / a=inactive (RFC 3264 hold) must reach the other side */
    const char *body = "v=0\r\no=- 1 3 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"
                       "m=audio 4002 RTP/AVP 0\r\na=inactive\r\n";
    uint16_t ports[] = {30070, 30072};
    char *out = rewrite(body, "10.9.8.7", ports, 2, 1, 4);
    ck_assert_msg(strstr(out, "a=sendonly\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "a=inactive\r\n") != NULL, "%s", out);
    free(out);
}
END_TEST

START_TEST(test_rewrite_drops_transport_attributes)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                       "a=ice-lite\r\n"
                       "a=ice-options:trickle\r\n"
                       "m=audio 4000 RTP/AVP 0\r\n"
                       "a=rtcp:4711 IN IP4 192.0.2.1\r\n"
                       "a=ice-ufrag:abcd\r\n"
                       "a=ice-pwd:0123456789012345678901\r\n"
                       "a=candidate:1 1 UDP 2130706431 192.0.2.1 4000 typ host\r\n"
                       "a=rtcp-mux\r\n"
                       "a=ptime:20\r\n";
    uint16_t ports[] = {30010};
    char *out = rewrite(body, "10.9.8.7", ports, 1, 1, 2);
    ck_assert_msg(strstr(out, "a=rtcp") == NULL, "%s", out);
    ck_assert_msg(strstr(out, "a=candidate") == NULL, "%s", out);
    ck_assert_msg(strstr(out, "a=ice-") == NULL, "%s", out);
    ck_assert_msg(strstr(out, "a=ptime:20") != NULL, "unrelated attribute lost:\n%s", out);
    ck_assert_msg(strstr(out, "192.0.2.1") == NULL, "far address kept:\n%s", out);

    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(out, &info, err, sizeof err), 0);
    ck_assert_uint_eq(info.s[0].rtcp_port, 30011);
    free(out);
}
END_TEST

START_TEST(test_rewrite_keeps_hold)
{
    const char *session_hold = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\n"
                               "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    uint16_t ports[] = {30020};
    char *out = rewrite(session_hold, "10.9.8.7", ports, 1, 5, 6);
    ck_assert_msg(strstr(out, "c=IN IP4 0.0.0.0\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "m=audio 30020 ") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "o=sipxfer 5 6 IN IP4 10.9.8.7\r\n") != NULL, "%s", out);
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(out, &info, err, sizeof err), 0);
    ck_assert(info.s[0].hold_addr);
    free(out);

    const char *media_hold = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
                             "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\n"
                             "m=video 5000 RTP/AVP 96\r\n";
    uint16_t ports2[] = {30020, 30022};
    out = rewrite(media_hold, "10.9.8.7", ports2, 2, 5, 6);
    ck_assert_int_eq(parse(out, &info, err, sizeof err), 0);
    ck_assert(info.s[0].hold_addr);
    ck_assert_str_eq(info.s[1].addr, "10.9.8.7");
    ck_assert(!info.s[1].hold_addr);
    ck_assert_uint_eq(info.s[1].port, 30022);
    free(out);
}
END_TEST

START_TEST(test_rewrite_extra_streams_rejected)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\n"
                       "m=video 5000 RTP/AVP 96\r\n"
                       "m=audio 6000 RTP/AVP 8\r\n";
    uint16_t ports[] = {30030};
    char *out = rewrite(body, "10.9.8.7", ports, 1, 1, 1);
    ck_assert_msg(strstr(out, "m=audio 30030 RTP/AVP 0\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "m=video 0 ") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "m=audio 0 ") != NULL, "%s", out);
    ck_assert_int_eq(count_lines(out, "m="), 3);
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(out, &info, err, sizeof err), 0);
    ck_assert_int_eq(info.nstreams, 3);
    ck_assert_uint_eq(info.s[0].port, 30030);
    ck_assert_uint_eq(info.s[1].port, 0);
    ck_assert_uint_eq(info.s[2].port, 0);
    free(out);
}
END_TEST

START_TEST(test_rewrite_zero_port_entry_rejects)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\n"
                       "m=video 5000 RTP/AVP 96\r\n";
    uint16_t ports[] = {0, 30042};
    char *out = rewrite(body, "10.9.8.7", ports, 2, 1, 1);
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(out, &info, err, sizeof err), 0);
    ck_assert_uint_eq(info.s[0].port, 0);
    ck_assert_uint_eq(info.s[1].port, 30042);
    free(out);
}
END_TEST

START_TEST(test_rewrite_already_rejected_stays_rejected)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\n"
                       "m=video 0 RTP/AVP 96\r\n";
    uint16_t ports[] = {30050, 30052};
    char *out = rewrite(body, "10.9.8.7", ports, 2, 1, 1);
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(parse(out, &info, err, sizeof err), 0);
    ck_assert_uint_eq(info.s[0].port, 30050);
    ck_assert_uint_eq(info.s[1].port, 0);
    free(out);
}
END_TEST

START_TEST(test_rewrite_media_level_only_and_ipv6)
{
    const char *body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
                       "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n";
    uint16_t ports[] = {30060};
    char *out = rewrite(body, "2001:db8::99", ports, 1, 3, 4);
    ck_assert_msg(strstr(out, "c=IN IP6 2001:db8::99\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "o=sipxfer 3 4 IN IP6 2001:db8::99\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "192.0.2.1") == NULL, "%s", out);
    free(out);
}
END_TEST

START_TEST(test_rewrite_garbage)
{
    char err[256] = "";
    uint16_t ports[] = {30000};
    struct sdpx_origin o = {1, 1};
    const char *junk = "nothing to see";
    ck_assert_ptr_null(sdpx_rewrite(junk, strlen(junk), "10.0.0.1", ports, 1, &o, err, sizeof err));
    ck_assert_msg(err[0] != '\0', "no error message");
    ck_assert_ptr_null(sdpx_rewrite("", 0, "10.0.0.1", ports, 1, &o, err, sizeof err));
}
END_TEST

/* ---- limits (SDPX_MAX_*) ------------------------------------------------ */

#define HEAD "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"

/* A growing body (malloc'd, NUL-terminated). */
struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const char *text)
{
    size_t n = strlen(text);
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->len, text, n + 1);
    b->len += n;
}

/* HEAD, one audio stream, then a= lines padded so the body is exactly
 * `bytes` long with `attrs` attributes in all. */
static char *body_of(size_t bytes, int attrs)
{
    struct buf b = {0};
    put(&b, HEAD "m=audio 4000 RTP/AVP 0\r\n");
    for (int i = 0; i < attrs - 1; i++)
        put(&b, "a=x-n\r\n");
    size_t last = strlen("a=x-pad:\r\n");
    ck_assert_uint_ge(bytes, b.len + last);
    put(&b, "a=x-pad:");
    while (b.len + 2 < bytes)
        put(&b, "x");
    put(&b, "\r\n");
    ck_assert_uint_eq(b.len, bytes);
    return b.p;
}

START_TEST(test_limit_bytes_exact)
{
    struct sdpx_info info;
    char err[256] = "";
    char *ok = body_of(SDPX_MAX_BYTES, 1);
    ck_assert_msg(parse(ok, &info, err, sizeof err) == 0, "at the limit: %s", err);
    ck_assert_uint_eq(info.s[0].port, 4000);
    free(ok);

    char *big = body_of(SDPX_MAX_BYTES + 1, 1);
    ck_assert_int_eq(parse(big, &info, err, sizeof err), SDPX_TOO_LARGE);
    ck_assert_msg(strstr(err, "16385 bytes") != NULL, "err: %s", err);
    uint16_t ports[] = {30000};
    struct sdpx_origin o = {1, 1};
    err[0] = '\0';
    ck_assert_ptr_null(sdpx_rewrite(big, strlen(big), "10.0.0.1", ports, 1, &o, err, sizeof err));
    ck_assert_msg(strstr(err, "limit") != NULL, "err: %s", err);
    free(big);

    const char *phrase = NULL;
    ck_assert_int_eq(sdpx_refusal(SDPX_TOO_LARGE, &phrase), 413);
    ck_assert_str_eq(phrase, "SDP Too Large");
}
END_TEST

/* The 59 KB offer: thousands of ICE candidates. Refused outright,
 * before sofia's parser builds a list of them. */
START_TEST(test_limit_59k_candidates_refused)
{
    struct buf b = {0};
    put(&b, HEAD "m=audio 4000 RTP/AVP 0\r\n");
    while (b.len < 59 * 1024)
        put(&b, "a=candidate:1 1 UDP 2130706431 192.0.2.1 4000 typ host\r\n");
    struct sdpx_info info;
    char err[256];
    ck_assert_int_eq(sdpx_parse(b.p, b.len, &info, err, sizeof err), SDPX_TOO_LARGE);
    free(b.p);
}
END_TEST

START_TEST(test_limit_attributes_exact)
{
    struct sdpx_info info;
    char err[256] = "";
    char *ok = body_of(4096, SDPX_MAX_ATTRIBUTES);
    ck_assert_msg(parse(ok, &info, err, sizeof err) == 0, "at the limit: %s", err);
    free(ok);
    char *over = body_of(4096, SDPX_MAX_ATTRIBUTES + 1);
    ck_assert_int_eq(parse(over, &info, err, sizeof err), SDPX_TOO_COMPLEX);
    ck_assert_msg(strstr(err, "attributes") != NULL, "err: %s", err);
    free(over);

    /* session-level attributes count too, and so does an indented line */
    struct buf b = {0};
    put(&b, HEAD);
    for (int i = 0; i < SDPX_MAX_ATTRIBUTES; i++)
        put(&b, i % 2 ? "a=x-s\r\n" : " a=x-s\r\n");
    put(&b, "m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n");
    ck_assert_int_eq(parse(b.p, &info, err, sizeof err), SDPX_TOO_COMPLEX);
    free(b.p);

    const char *phrase = NULL;
    ck_assert_int_eq(sdpx_refusal(SDPX_TOO_COMPLEX, &phrase), 488);
    ck_assert_str_eq(phrase, "SDP Too Complex");
    ck_assert_int_eq(sdpx_refusal(SDPX_BAD, &phrase), 488);
    ck_assert_str_eq(phrase, "Not Acceptable Here");
}
END_TEST

/* HEAD is 5 lines and the m= line one more; fill to n lines with b=. */
static char *lines_of(int n)
{
    struct buf b = {0};
    put(&b, HEAD "m=audio 4000 RTP/AVP 0\r\n");
    for (int i = 6; i < n; i++)
        put(&b, "b=AS:64\r\n");
    return b.p;
}

START_TEST(test_limit_lines_exact)
{
    struct sdpx_info info;
    char err[256] = "";
    char *ok = lines_of(SDPX_MAX_LINES);
    ck_assert_msg(parse(ok, &info, err, sizeof err) == 0, "at the limit: %s", err);
    free(ok);
    char *over = lines_of(SDPX_MAX_LINES + 1);
    ck_assert_int_eq(parse(over, &info, err, sizeof err), SDPX_TOO_COMPLEX);
    ck_assert_msg(strstr(err, "lines") != NULL, "err: %s", err);
    free(over);
    /* blank lines between are not lines to sofia, nor to the count */
    struct buf b = {0};
    put(&b, HEAD "m=audio 4000 RTP/AVP 0\r\n");
    for (int i = 6; i < SDPX_MAX_LINES; i++)
        put(&b, "b=AS:64\r\n\r\n\n");
    ck_assert_msg(parse(b.p, &info, err, sizeof err) == 0, "blank lines counted: %s", err);
    free(b.p);
}
END_TEST

START_TEST(test_limit_media_and_formats_exact)
{
    struct sdpx_info info;
    char err[256] = "";
    struct buf b = {0};
    put(&b, HEAD);
    for (int i = 0; i < SDPX_MAX_MEDIA; i++)
        put(&b, "m=audio 4000 RTP/AVP 0\r\n");
    ck_assert_msg(parse(b.p, &info, err, sizeof err) == 0, "16 m= lines: %s", err);
    ck_assert_int_eq(info.nlines, SDPX_MAX_MEDIA);
    ck_assert_int_eq(info.nstreams, SDPX_MAX_STREAMS);
    put(&b, "m=audio 4000 RTP/AVP 0\r\n");
    ck_assert_int_eq(parse(b.p, &info, err, sizeof err), SDPX_TOO_COMPLEX);
    ck_assert_msg(strstr(err, "m= lines") != NULL, "err: %s", err);
    free(b.p);

    struct buf f = {0};
    put(&f, HEAD "m=audio 4000 RTP/AVP");
    char fmt[16];
    for (int i = 0; i < SDPX_MAX_FORMATS; i++) {
        snprintf(fmt, sizeof fmt, " %d", i);
        put(&f, fmt);
    }
    size_t at = f.len;
    put(&f, "\r\n");
    ck_assert_msg(parse(f.p, &info, err, sizeof err) == 0, "64 formats: %s", err);
    f.len = at;
    f.p[at] = '\0';
    put(&f, " 99\r\n");
    ck_assert_int_eq(parse(f.p, &info, err, sizeof err), SDPX_TOO_COMPLEX);
    ck_assert_msg(strstr(err, "formats") != NULL, "err: %s", err);
    free(f.p);
}
END_TEST

/* The rewrite unlinks every transport attribute in one walk: all of them
 * go, whatever their number and position (first, last, consecutive, mixed
 * case), and everything else stays in order. */
START_TEST(test_rewrite_drops_many_transport_attributes)
{
    struct buf b = {0};
    put(&b, HEAD "a=ice-lite\r\na=x-s\r\na=ICE-options:trickle\r\n"
                 "m=audio 4000 RTP/AVP 0\r\n");
    char line[96];
    int kept = 0;
    for (int i = 0; kept + 2 * (i + 1) < SDPX_MAX_ATTRIBUTES - 8; i++) {
        snprintf(line, sizeof line, "a=candidate:%d 1 UDP 1 192.0.2.1 %d typ host\r\n", i,
                 5000 + i);
        put(&b, line);
        if (i % 3 == 0)
            put(&b, "a=Rtcp-Mux\r\n");
        snprintf(line, sizeof line, "a=x-keep:%d\r\n", kept++);
        put(&b, line);
    }
    put(&b, "a=rtcp:4001\r\n");
    uint16_t ports[] = {30010};
    char *out = rewrite(b.p, "10.9.8.7", ports, 1, 1, 2);
    ck_assert_int_eq(count_lines(out, "a=candidate"), 0);
    ck_assert_int_eq(count_lines(out, "a=Rtcp"), 0);
    ck_assert_int_eq(count_lines(out, "a=rtcp"), 0);
    ck_assert_int_eq(count_lines(out, "a=ice"), 0);
    ck_assert_int_eq(count_lines(out, "a=ICE"), 0);
    ck_assert_int_eq(count_lines(out, "a=x-s"), 1);
    ck_assert_int_eq(count_lines(out, "a=x-keep:"), kept);
    const char *p = out;
    for (int i = 0; i < kept; i++) {
        snprintf(line, sizeof line, "a=x-keep:%d\r\n", i);
        p = strstr(p, line);
        ck_assert_msg(p != NULL, "x-keep:%d missing or out of order", i);
    }
    free(out);
    free(b.p);
}
END_TEST

/* ---- SDES crypto (RFC 4568) -------------------------------------------- */

#define KEY_B64 "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0" /* "0123456789abcdefghijklmnopqrst" */

#define SAVP_OFFER                                                                                 \
    "v=0\r\n"                                                                                      \
    "o=alice 1 1 IN IP4 198.51.100.10\r\n"                                                         \
    "s=-\r\n"                                                                                      \
    "c=IN IP4 198.51.100.10\r\n"                                                                   \
    "t=0 0\r\n"                                                                                    \
    "m=audio 49170 RTP/SAVP 0 101\r\n"                                                             \
    "a=rtpmap:0 PCMU/8000\r\n"                                                                     \
    "a=rtpmap:101 telephone-event/8000\r\n"                                                        \
    "a=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:" KEY_B64 "|2^31\r\n"                              \
    "a=crypto:8 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "\r\n"                                   \
    "a=sendrecv\r\n"

static int crypto(const char *v, struct sdpx_crypto *c)
{
    char err[128] = "";
    return sdpx_crypto_parse(v, strlen(v), c, err, sizeof err);
}

START_TEST(test_crypto_parse_good)
{
    struct sdpx_crypto c;
    ck_assert_int_eq(crypto("1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64, &c), 0);
    ck_assert_int_eq(c.suite, SDPX_SUITE_AES_CM_128_HMAC_SHA1_80);
    ck_assert_uint_eq(c.tag, 1);
    ck_assert_int_eq(memcmp(c.key, "0123456789abcdefghijklmnopqrst", SDPX_KEY_LEN), 0);
    ck_assert_int_eq(crypto("999999999 AES_CM_128_HMAC_SHA1_32 inline:" KEY_B64 "|2^20", &c),
                     0);
    ck_assert_int_eq(c.suite, SDPX_SUITE_AES_CM_128_HMAC_SHA1_32);
    ck_assert_uint_eq(c.tag, 999999999);
    ck_assert_int_eq(crypto("2  AES_CM_128_HMAC_SHA1_80\tinline:" KEY_B64 "|1048576 ", &c), 0);
    ck_assert_uint_eq(c.tag, 2);
}
END_TEST

/* Malformed or unsupported lines are refused with a reason and leave no
 * key behind. */
START_TEST(test_crypto_parse_refused)
{
    static const char *const bad[] = {
        "",
        "1",
        "1 AES_CM_128_HMAC_SHA1_80",
        "x AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64,
        "1234567890 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64,          /* 10-digit tag */
        "1 AES_CM_128_HMAC_SHA1_81 inline:" KEY_B64,                   /* unknown suite */
        "1 AES_256_CM_HMAC_SHA1_80 inline:" KEY_B64,                   /* unsupported */
        "1 F8_128_HMAC_SHA1_80 inline:" KEY_B64,
        "1 AES_CM_128_HMAC_SHA1_80 uri:" KEY_B64,                      /* not inline */
        "1 AES_CM_128_HMAC_SHA1_80 inline:",
        "1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN",  /* 39 */
        "1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0M", /* 41 */
        "1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3Bxcn==", /* pad */
        "1 AES_CM_128_HMAC_SHA1_80 inline:MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3Bxc*N0", /* byte */
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|1:4",           /* MKI */
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^20|1:4",      /* MKI */
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|",              /* empty lifetime */
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^",
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|2^123",
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|20|30",         /* two lifetimes */
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|123456789012345678901",
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 ";inline:" KEY_B64, /* two keys */
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 " UNENCRYPTED_SRTP", /* session param */
        "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 " KDR=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct sdpx_crypto c;
        char err[128] = "";
        memset(&c, 0x55, sizeof c);
        ck_assert_msg(sdpx_crypto_parse(bad[i], strlen(bad[i]), &c, err, sizeof err) == -1,
                      "accepted: %s", bad[i]);
        ck_assert_msg(err[0] != '\0', "no reason for: %s", bad[i]);
        ck_assert_int_eq(c.suite, SDPX_SUITE_NONE);
        static const uint8_t zero[SDPX_KEY_LEN];
        ck_assert_int_eq(memcmp(c.key, zero, sizeof zero), 0);
    }
}
END_TEST

/* Over SDPX_CRYPTO_MAX bytes is refused unread; a value that is not
 * NUL-terminated is read only within its length. */
START_TEST(test_crypto_parse_bounded)
{
    char big[SDPX_CRYPTO_MAX + 64];
    memset(big, '1', sizeof big);
    struct sdpx_crypto c;
    char err[128];
    ck_assert_int_eq(sdpx_crypto_parse(big, sizeof big, &c, err, sizeof err), -1);
    static const char line[] = "1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64;
    char unterminated[sizeof line - 1];
    memcpy(unterminated, line, sizeof unterminated);
    ck_assert_int_eq(sdpx_crypto_parse(unterminated, sizeof unterminated, &c, err, sizeof err),
                     0);
    /* cut inside the key: refused, nothing read past n */
    ck_assert_int_eq(sdpx_crypto_parse(unterminated, sizeof unterminated - 5, &c, err,
                                       sizeof err), -1);
}
END_TEST

START_TEST(test_parse_savp_crypto)
{
    struct sdpx_info info;
    char err[256] = "";
    ck_assert_msg(parse(SAVP_OFFER, &info, err, sizeof err) == 0, "parse: %s", err);
    ck_assert(info.s[0].savp);
    /* the first usable line, the offerer's preference */
    ck_assert_int_eq(info.s[0].crypto.suite, SDPX_SUITE_AES_CM_128_HMAC_SHA1_32);
    ck_assert_uint_eq(info.s[0].crypto.tag, 7);
    ck_assert_int_eq(info.s[0].crypto_bad, 0);
    ck_assert_str_eq(info.s[0].formats, "0 101");
    ck_assert_int_eq(info.s[0].dtmf_pt, 101);

    ck_assert_int_eq(parse(OFFER, &info, err, sizeof err), 0);
    ck_assert(!info.s[0].savp);
    ck_assert_int_eq(info.s[0].crypto.suite, SDPX_SUITE_NONE);
}
END_TEST

/* Bad lines are skipped and counted; a good one after them is used. A
 * SAVP stream with only bad lines has no crypto: the caller refuses it. */
START_TEST(test_parse_crypto_bad_lines)
{
    struct sdpx_info info;
    char err[256] = "";
    const char *sdp = HEAD "m=audio 4000 RTP/SAVPF 0\r\n"
                           "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:short\r\n"
                           "a=crypto:\r\n"
                           "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "|1:1\r\n"
                           "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "\r\n";
    ck_assert_msg(parse(sdp, &info, err, sizeof err) == 0, "parse: %s", err);
    ck_assert(info.s[0].savp);
    ck_assert_int_eq(info.s[0].crypto_bad, 3);
    ck_assert_uint_eq(info.s[0].crypto.tag, 3);

    sdp = HEAD "m=audio 4000 RTP/SAVP 0\r\n"
               "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "=\r\n";
    ck_assert_int_eq(parse(sdp, &info, err, sizeof err), 0);
    ck_assert(info.s[0].savp);
    ck_assert_int_eq(info.s[0].crypto.suite, SDPX_SUITE_NONE);
    ck_assert_int_eq(info.s[0].crypto_bad, 1);

    /* a very long value */
    struct buf b = {0};
    put(&b, HEAD "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:");
    for (int i = 0; i < 200; i++)
        put(&b, KEY_B64);
    put(&b, "\r\n");
    ck_assert_int_eq(parse(b.p, &info, err, sizeof err), 0);
    ck_assert_int_eq(info.s[0].crypto.suite, SDPX_SUITE_NONE);
    ck_assert_int_eq(info.s[0].crypto_bad, 1);
    free(b.p);
}
END_TEST

/* Toward an SRTP leg: RTP/SAVP with our one a=crypto line, whatever the
 * source body said; toward a plain leg: RTP/AVP and no a=crypto. */
START_TEST(test_rewrite_srtp_out)
{
    uint16_t ports[] = {30000};
    struct sdpx_origin o = {.id = 5, .version = 6};
    char err[256] = "";
    struct sdpx_srtp_out sec = {0};
    memset(&sec, 0, sizeof sec);
    sdpx_crypto_new(&sec.crypto[0], SDPX_SUITE_AES_CM_128_HMAC_SHA1_80, 42);
    char *out = sdpx_rewrite_srtp(OFFER, strlen(OFFER), "10.0.0.1", ports, 1, &o, &sec, err,
                                  sizeof err);
    ck_assert_msg(out != NULL, "rewrite: %s", err);
    ck_assert_msg(strstr(out, "m=audio 30000 RTP/SAVP 0 8 101\r\n") != NULL, "%s", out);
    ck_assert_int_eq(count_lines(out, "a=crypto:"), 1);
    ck_assert_int_eq(count_lines(out, "a=crypto:42 AES_CM_128_HMAC_SHA1_80 inline:"), 1);
    /* what we wrote parses back to our key */
    struct sdpx_info info;
    ck_assert_int_eq(parse(out, &info, err, sizeof err), 0);
    ck_assert(info.s[0].savp);
    ck_assert_int_eq(info.s[0].crypto.suite, SDPX_SUITE_AES_CM_128_HMAC_SHA1_80);
    ck_assert_uint_eq(info.s[0].crypto.tag, 42);
    ck_assert_int_eq(memcmp(info.s[0].crypto.key, sec.crypto[0].key, SDPX_KEY_LEN), 0);
    free(out);

    /* the source is SAVP with two lines of its own: replaced by ours */
    sdpx_crypto_new(&sec.crypto[0], SDPX_SUITE_AES_CM_128_HMAC_SHA1_32, 7);
    out = sdpx_rewrite_srtp(SAVP_OFFER, strlen(SAVP_OFFER), "10.0.0.1", ports, 1, &o, &sec, err,
                            sizeof err);
    ck_assert_msg(out != NULL, "rewrite: %s", err);
    ck_assert_int_eq(count_lines(out, "a=crypto:"), 1);
    ck_assert_int_eq(count_lines(out, "a=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:"), 1);
    ck_assert(strstr(out, KEY_B64) == NULL); /* the offerer's key never goes on */
    ck_assert(strstr(out, "RTP/SAVP 0 101\r\n") != NULL);
    free(out);

    /* plain toward the leg */
    memset(&sec, 0, sizeof sec);
    out = sdpx_rewrite_srtp(SAVP_OFFER, strlen(SAVP_OFFER), "10.0.0.1", ports, 1, &o, &sec, err,
                            sizeof err);
    ck_assert_msg(out != NULL, "rewrite: %s", err);
    ck_assert_int_eq(count_lines(out, "a=crypto"), 0);
    ck_assert_msg(strstr(out, "m=audio 30000 RTP/AVP 0 101\r\n") != NULL, "%s", out);
    ck_assert_int_eq(count_lines(out, "a=rtpmap:101 telephone-event/8000"), 1);
    free(out);

    /* no srtp: crypto and profile pass as they are */
    out = rewrite(SAVP_OFFER, "10.0.0.1", ports, 1, 5, 6);
    ck_assert_int_eq(count_lines(out, "a=crypto:"), 2);
    ck_assert(strstr(out, "RTP/SAVP") != NULL);
    free(out);
}
END_TEST

/* AVPF <-> SAVPF; a rejected or non-RTP stream gets no crypto. */
START_TEST(test_rewrite_srtp_profiles)
{
    const char *sdp = HEAD "m=audio 4000 RTP/AVPF 0\r\n"
                           "m=video 0 RTP/AVP 96\r\n"
                           "m=image 4004 udptl t38\r\n";
    uint16_t ports[] = {30000, 30002, 30004};
    struct sdpx_srtp_out sec = {0};
    for (int i = 0; i < 3; i++)
        sdpx_crypto_new(&sec.crypto[i], SDPX_SUITE_AES_CM_128_HMAC_SHA1_80, 1);
    char err[256] = "";
    char *out = sdpx_rewrite_srtp(sdp, strlen(sdp), "10.0.0.1", ports, 3, NULL, &sec, err,
                                  sizeof err);
    ck_assert_msg(out != NULL, "rewrite: %s", err);
    ck_assert_msg(strstr(out, "m=audio 30000 RTP/SAVPF 0\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "m=video 0 RTP/AVP 96\r\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "m=image 30004 udptl t38\r\n") != NULL, "%s", out);
    ck_assert_int_eq(count_lines(out, "a=crypto:"), 1);
    struct sdpx_info info;
    ck_assert_int_eq(parse(out, &info, err, sizeof err), 0);
    ck_assert(info.s[0].savp);
    ck_assert(!info.s[2].savp);
    free(out);

    memset(&sec, 0, sizeof sec);
    const char *back = HEAD "m=audio 4000 RTP/SAVPF 0\r\n"
                            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "\r\n";
    out = sdpx_rewrite_srtp(back, strlen(back), "10.0.0.1", ports, 1, NULL, &sec, err,
                            sizeof err);
    ck_assert_msg(out != NULL, "rewrite: %s", err);
    ck_assert_msg(strstr(out, "m=audio 30000 RTP/AVPF 0\r\n") != NULL, "%s", out);
    ck_assert_int_eq(count_lines(out, "a=crypto"), 0);
    free(out);
}
END_TEST

/* keep_profile (best effort SRTP): a stream with a key keeps RTP/AVP and
 * gets the a=crypto line; one without a key is plain as always. */
START_TEST(test_rewrite_srtp_best_effort)
{
    const char *sdp = HEAD "m=audio 4000 RTP/AVP 0\r\n"
                           "m=audio 4002 RTP/SAVP 0\r\n"
                           "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" KEY_B64 "\r\n";
    uint16_t ports[] = {30000, 30002};
    struct sdpx_srtp_out sec = {0};
    sec.keep_profile = true;
    sdpx_crypto_new(&sec.crypto[0], SDPX_SUITE_AES_CM_128_HMAC_SHA1_32, 7);
    char err[256] = "";
    char *out = sdpx_rewrite_srtp(sdp, strlen(sdp), "10.0.0.1", ports, 2, NULL, &sec, err,
                                  sizeof err);
    ck_assert_msg(out != NULL, "rewrite: %s", err);
    ck_assert_msg(strstr(out, "m=audio 30000 RTP/AVP 0\r\n"
                              "a=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "m=audio 30002 RTP/AVP 0\r\n") != NULL, "%s", out);
    ck_assert_int_eq(count_lines(out, "a=crypto:"), 1);
    struct sdpx_info info;
    ck_assert_int_eq(parse(out, &info, err, sizeof err), 0);
    ck_assert(!info.s[0].savp);
    ck_assert_int_eq(info.s[0].crypto.suite, SDPX_SUITE_AES_CM_128_HMAC_SHA1_32);
    ck_assert_int_eq(info.s[0].crypto.tag, 7);
    free(out);
}
END_TEST

/* Two fresh keys differ (random_bytes). */
START_TEST(test_crypto_new_fresh)
{
    struct sdpx_crypto a, b;
    sdpx_crypto_new(&a, SDPX_SUITE_AES_CM_128_HMAC_SHA1_80, 1);
    sdpx_crypto_new(&b, SDPX_SUITE_AES_CM_128_HMAC_SHA1_80, 1);
    ck_assert_int_ne(memcmp(a.key, b.key, SDPX_KEY_LEN), 0);
    ck_assert_str_eq(sdpx_suite_name(SDPX_SUITE_AES_CM_128_HMAC_SHA1_32),
                     "AES_CM_128_HMAC_SHA1_32");
    ck_assert(sdpx_suite_name(SDPX_SUITE_NONE) == NULL);
}
END_TEST

static Suite *sdp_suite(void)
{
    Suite *s = suite_create("sdp");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_parse_typical_offer);
    tcase_add_test(tc, test_parse_no_dtmf);
    tcase_add_test(tc, test_parse_rtcp_attribute);
    tcase_add_test(tc, test_parse_media_level_connection);
    tcase_add_test(tc, test_parse_media_only_connection);
    tcase_add_test(tc, test_parse_ipv6);
    tcase_add_test(tc, test_parse_hold);
    tcase_add_test(tc, test_parse_on_hold);
    tcase_add_test(tc, test_parse_on_hold_streams);
    tcase_add_test(tc, test_parse_rejected_stream);
    tcase_add_test(tc, test_parse_stream_cap);
    tcase_add_test(tc, test_parse_garbage);
    suite_add_tcase(s, tc);
    tc = tcase_create("rewrite");
    tcase_add_test(tc, test_rewrite_basic);
    tcase_add_test(tc, test_rewrite_keeps_direction);
    tcase_add_test(tc, test_rewrite_drops_transport_attributes);
    tcase_add_test(tc, test_rewrite_keeps_hold);
    tcase_add_test(tc, test_rewrite_extra_streams_rejected);
    tcase_add_test(tc, test_rewrite_zero_port_entry_rejects);
    tcase_add_test(tc, test_rewrite_already_rejected_stays_rejected);
    tcase_add_test(tc, test_rewrite_media_level_only_and_ipv6);
    tcase_add_test(tc, test_rewrite_garbage);
    tcase_add_test(tc, test_rewrite_drops_many_transport_attributes);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, test_limit_bytes_exact);
    tcase_add_test(tc, test_limit_59k_candidates_refused);
    tcase_add_test(tc, test_limit_attributes_exact);
    tcase_add_test(tc, test_limit_lines_exact);
    tcase_add_test(tc, test_limit_media_and_formats_exact);
    suite_add_tcase(s, tc);
    tc = tcase_create("crypto");
    tcase_add_test(tc, test_crypto_parse_good);
    tcase_add_test(tc, test_crypto_parse_refused);
    tcase_add_test(tc, test_crypto_parse_bounded);
    tcase_add_test(tc, test_parse_savp_crypto);
    tcase_add_test(tc, test_parse_crypto_bad_lines);
    tcase_add_test(tc, test_rewrite_srtp_out);
    tcase_add_test(tc, test_rewrite_srtp_profiles);
    tcase_add_test(tc, test_rewrite_srtp_best_effort);
    tcase_add_test(tc, test_crypto_new_fresh);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(sdp_suite()); }
