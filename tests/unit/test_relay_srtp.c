/* test_relay_srtp.c - SDES-SRTP terminated in the relay (relay.h,
 * relay_ep_set_srtp): a relay with two endpoints on loopback, A toward an
 * SRTP leg and B toward a plain one, and test sockets playing both legs.
 * What the SRTP leg sends (protected with its own key) reaches the plain
 * leg as the original RTP/RTCP; what the plain leg sends reaches the SRTP
 * leg encrypted with our key; a tampered packet is dropped and counted.
 * Each case runs for both suites. Links the relay library only. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <srtp2/srtp.h>

#include "relay.h"

static const enum relay_srtp_suite suites[] = {RELAY_SRTP_AES_CM_128_HMAC_SHA1_80,
                                               RELAY_SRTP_AES_CM_128_HMAC_SHA1_32};

struct rig {
    struct relay *relay;
    struct relay_ep *a, *b;
    int sa, sa_rtcp; /* the SRTP leg's RTP and RTCP sockets */
    int sb, sb_rtcp; /* the plain leg's */
    struct relay_srtp_keys leg_key;  /* what the SRTP leg announced */
    struct relay_srtp_keys our_key;  /* what we announced to it */
    srtp_t leg_tx; /* the SRTP leg protecting with its key */
    srtp_t leg_rx; /* ... and unprotecting with ours */
};

static int udp_socket(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    return fd;
}

static uint16_t local_port(int fd)
{
    struct sockaddr_in in;
    socklen_t len = sizeof in;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    return ntohs(in.sin_port);
}

static void send_to(int fd, uint16_t port, const void *buf, size_t len)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(sendto(fd, buf, len, 0, (struct sockaddr *)&to, sizeof to), (ssize_t)len);
}

/* The next datagram on fd, waiting up to 3 s for it; -1 if none. */
static int recv_wait(int fd, void *buf, size_t cap)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 3000) != 1)
        return -1;
    return (int)recv(fd, buf, cap, 0);
}

static srtp_t session(const struct relay_srtp_keys *k, bool inbound)
{
    srtp_policy_t pol;
    memset(&pol, 0, sizeof pol);
    if (k->suite == RELAY_SRTP_AES_CM_128_HMAC_SHA1_32)
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&pol.rtp);
    else
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
    srtp_crypto_policy_set_rtcp_default(&pol.rtcp);
    pol.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
    pol.key = (unsigned char *)k->key;
    srtp_t s = NULL;
    ck_assert_int_eq(srtp_create(&s, &pol), srtp_err_status_ok);
    return s;
}

static void rig_up(struct rig *g, enum relay_srtp_suite suite)
{
    char err[256] = "";
    /* a wide range: the relay skips ports others hold (a bench or a test
     * run beside this one may hold hundreds in 20000-60000) */
    int base = 20000 + (int)(getpid() % 2000) * 2;
    g->relay = relay_create(base, base + 19999, 1, err, sizeof err);
    ck_assert_msg(g->relay != NULL, "relay_create: %s", err);
    g->a = relay_ep_new(g->relay, "127.0.0.1", 1, NULL, "A", err, sizeof err);
    ck_assert_msg(g->a != NULL, "ep A: %s", err);
    g->b = relay_ep_new(g->relay, "127.0.0.1", 1, g->a, "B", err, sizeof err);
    ck_assert_msg(g->b != NULL, "ep B: %s", err);
    g->sa = udp_socket();
    g->sa_rtcp = udp_socket();
    g->sb = udp_socket();
    g->sb_rtcp = udp_socket();
    relay_ep_set_peer(g->a, 0, "127.0.0.1", local_port(g->sa), local_port(g->sa_rtcp));
    relay_ep_set_peer(g->b, 0, "127.0.0.1", local_port(g->sb), local_port(g->sb_rtcp));

    g->leg_key.suite = g->our_key.suite = suite;
    for (int i = 0; i < RELAY_SRTP_KEY_LEN; i++) {
        g->leg_key.key[i] = (unsigned char)(i * 7 + 1);
        g->our_key.key[i] = (unsigned char)(255 - i * 3);
    }
    ck_assert_int_eq(relay_ep_set_srtp(g->a, 0, &g->leg_key, &g->our_key), 0);
    ck_assert_int_eq(relay_ep_set_srtp(g->b, 0, NULL, NULL), 0);
    relay_connect(g->a, g->b);
    /* relay_create ran srtp_init() */
    g->leg_tx = session(&g->leg_key, false);
    g->leg_rx = session(&g->our_key, true);
}

static void rig_down(struct rig *g)
{
    srtp_dealloc(g->leg_tx);
    srtp_dealloc(g->leg_rx);
    relay_ep_free(g->a);
    relay_ep_free(g->b);
    relay_destroy(g->relay);
    close(g->sa);
    close(g->sa_rtcp);
    close(g->sb);
    close(g->sb_rtcp);
}

/* A PCMU packet: 12-byte header and 160 bytes of payload. */
static size_t rtp_packet(unsigned char *buf, uint16_t seq, uint32_t ssrc)
{
    buf[0] = 0x80;
    buf[1] = 0;
    buf[2] = (unsigned char)(seq >> 8);
    buf[3] = (unsigned char)seq;
    uint32_t ts = seq * 160u;
    for (int i = 0; i < 4; i++) {
        buf[4 + i] = (unsigned char)(ts >> (24 - 8 * i));
        buf[8 + i] = (unsigned char)(ssrc >> (24 - 8 * i));
    }
    for (int i = 0; i < 160; i++)
        buf[12 + i] = (unsigned char)(seq + i);
    return 172;
}

static size_t tag_len(enum relay_srtp_suite suite)
{
    return suite == RELAY_SRTP_AES_CM_128_HMAC_SHA1_32 ? 4 : 10;
}

static void wait_auth_failures(struct relay_ep *ep, uint64_t n)
{
    struct relay_ep_stats st;
    for (int i = 0; i < 3000; i++) {
        relay_ep_stats(ep, &st);
        if (st.srtp_auth_failures >= n)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    relay_ep_stats(ep, &st);
    ck_assert_uint_eq(st.srtp_auth_failures, n);
}

/* SRTP in at A, plain out at B: the original packet. */
START_TEST(test_srtp_in_plain_out)
{
    struct rig g;
    rig_up(&g, suites[_i]);
    unsigned char plain[2048], pkt[2048 + SRTP_MAX_TRAILER_LEN], got[4096];
    for (uint16_t seq = 100; seq < 105; seq++) {
        size_t n = rtp_packet(plain, seq, 0x11223344);
        memcpy(pkt, plain, n);
        int len = (int)n;
        ck_assert_int_eq(srtp_protect(g.leg_tx, pkt, &len), srtp_err_status_ok);
        ck_assert_int_eq(len, (int)(n + tag_len(suites[_i])));
        send_to(g.sa, relay_ep_port(g.a, 0), pkt, (size_t)len);
        int r = recv_wait(g.sb, got, sizeof got);
        ck_assert_int_eq(r, (int)n);
        ck_assert_int_eq(memcmp(got, plain, n), 0);
    }
    struct relay_ep_stats st;
    relay_ep_stats(g.a, &st);
    ck_assert_uint_eq(st.srtp_decrypted, 5);
    ck_assert_uint_eq(st.srtp_auth_failures, 0);
    struct relay_stats rs;
    relay_stats(g.relay, &rs);
    ck_assert_uint_eq(rs.srtp_decrypted, 5);

    /* SRTCP the same way: a receiver report, 8 bytes */
    unsigned char rr[8] = {0x80, 201, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd};
    memcpy(pkt, rr, sizeof rr);
    int len = sizeof rr;
    ck_assert_int_eq(srtp_protect_rtcp(g.leg_tx, pkt, &len), srtp_err_status_ok);
    send_to(g.sa_rtcp, relay_ep_port(g.a, 0) + 1, pkt, (size_t)len);
    ck_assert_int_eq(recv_wait(g.sb_rtcp, got, sizeof got), (int)sizeof rr);
    ck_assert_int_eq(memcmp(got, rr, sizeof rr), 0);
    relay_ep_stats(g.a, &st);
    ck_assert_uint_eq(st.srtp_decrypted, 6);
    rig_down(&g);
}
END_TEST

/* Plain in at B, SRTP out at A, under our key; our own packets
 * (relay_ep_send, RFC 4733 digits) are encrypted too. */
START_TEST(test_plain_in_srtp_out)
{
    struct rig g;
    rig_up(&g, suites[_i]);
    unsigned char plain[2048], got[4096];
    for (uint16_t seq = 7; seq < 12; seq++) {
        size_t n = rtp_packet(plain, seq, 0x55667788);
        send_to(g.sb, relay_ep_port(g.b, 0), plain, n);
        int r = recv_wait(g.sa, got, sizeof got);
        ck_assert_int_eq(r, (int)(n + tag_len(suites[_i])));
        ck_assert_int_ne(memcmp(got + 12, plain + 12, n - 12), 0); /* the payload is encrypted */
        ck_assert_int_eq(srtp_unprotect(g.leg_rx, got, &r), srtp_err_status_ok);
        ck_assert_int_eq(r, (int)n);
        ck_assert_int_eq(memcmp(got, plain, n), 0);
    }
    unsigned char rr[8] = {0x80, 201, 0, 1, 1, 2, 3, 4};
    send_to(g.sb_rtcp, relay_ep_port(g.b, 0) + 1, rr, sizeof rr);
    int r = recv_wait(g.sa_rtcp, got, sizeof got);
    ck_assert_int_eq(r, (int)sizeof rr + 4 + 10); /* SRTCP index and an 80-bit tag */
    ck_assert_int_eq(srtp_unprotect_rtcp(g.leg_rx, got, &r), srtp_err_status_ok);
    ck_assert_int_eq(r, (int)sizeof rr);
    ck_assert_int_eq(memcmp(got, rr, sizeof rr), 0);

    /* a digit we originate toward the SRTP leg */
    size_t n = rtp_packet(plain, 40, 0x99aabbcc);
    plain[1] = 101;
    ck_assert_int_eq(relay_ep_send(g.a, 0, plain, n), 0);
    r = recv_wait(g.sa, got, sizeof got);
    ck_assert_int_eq(r, (int)(n + tag_len(suites[_i])));
    ck_assert_int_eq(srtp_unprotect(g.leg_rx, got, &r), srtp_err_status_ok);
    ck_assert_int_eq(memcmp(got, plain, n), 0);
    rig_down(&g);
}
END_TEST

/* A tampered packet, and one under another key, fail authentication: dropped
 * and counted; the next good packet is the one the plain leg gets. A replay
 * is dropped too, not as an authentication failure. */
START_TEST(test_tampered_dropped)
{
    struct rig g;
    rig_up(&g, suites[_i]);
    unsigned char plain[2048], pkt[2048 + SRTP_MAX_TRAILER_LEN], got[4096];
    size_t n = rtp_packet(plain, 1, 0x01020304);
    memcpy(pkt, plain, n);
    int len = (int)n;
    ck_assert_int_eq(srtp_protect(g.leg_tx, pkt, &len), srtp_err_status_ok);
    pkt[40] ^= 0x01;
    send_to(g.sa, relay_ep_port(g.a, 0), pkt, (size_t)len);
    wait_auth_failures(g.a, 1);

    /* a stranger's key */
    struct relay_srtp_keys other = g.leg_key;
    other.key[0] ^= 0xff;
    srtp_t forged = session(&other, false);
    n = rtp_packet(plain, 2, 0x01020304);
    memcpy(pkt, plain, n);
    len = (int)n;
    ck_assert_int_eq(srtp_protect(forged, pkt, &len), srtp_err_status_ok);
    srtp_dealloc(forged);
    send_to(g.sa, relay_ep_port(g.a, 0), pkt, (size_t)len);
    wait_auth_failures(g.a, 2);

    /* too short to be SRTP at all */
    send_to(g.sa, relay_ep_port(g.a, 0), pkt, 6);

    n = rtp_packet(plain, 3, 0x01020304);
    memcpy(pkt, plain, n);
    len = (int)n;
    ck_assert_int_eq(srtp_protect(g.leg_tx, pkt, &len), srtp_err_status_ok);
    send_to(g.sa, relay_ep_port(g.a, 0), pkt, (size_t)len);
    ck_assert_int_eq(recv_wait(g.sb, got, sizeof got), (int)n);
    ck_assert_int_eq(memcmp(got, plain, n), 0);

    /* the same packet again: a replay */
    send_to(g.sa, relay_ep_port(g.a, 0), pkt, (size_t)len);
    n = rtp_packet(plain, 4, 0x01020304);
    memcpy(pkt, plain, n);
    len = (int)n;
    ck_assert_int_eq(srtp_protect(g.leg_tx, pkt, &len), srtp_err_status_ok);
    send_to(g.sa, relay_ep_port(g.a, 0), pkt, (size_t)len);
    ck_assert_int_eq(recv_wait(g.sb, got, sizeof got), (int)n);
    ck_assert_int_eq(memcmp(got, plain, n), 0); /* seq 4: the replay went nowhere */

    struct relay_ep_stats st;
    relay_ep_stats(g.a, &st);
    ck_assert_uint_eq(st.srtp_auth_failures, 2);
    ck_assert_uint_eq(st.srtp_decrypted, 2);
    struct relay_stats rs;
    relay_stats(g.relay, &rs);
    ck_assert_uint_eq(rs.srtp_auth_failures, 2);
    ck_assert_uint_eq(rs.dropped[RELAY_DROP_SRTP_AUTH], 2);
    ck_assert_uint_eq(rs.dropped[RELAY_DROP_SRTP], 2); /* the short one and the replay */
    rig_down(&g);
}
END_TEST

/* Bad arguments are refused and change nothing. */
START_TEST(test_set_srtp_refused)
{
    struct rig g;
    rig_up(&g, RELAY_SRTP_AES_CM_128_HMAC_SHA1_80);
    struct relay_srtp_keys bad = g.leg_key;
    bad.suite = (enum relay_srtp_suite)9;
    ck_assert_int_eq(relay_ep_set_srtp(g.a, 0, &bad, NULL), -1);
    ck_assert_int_eq(relay_ep_set_srtp(g.a, 1, &g.leg_key, NULL), -1);
    ck_assert_int_eq(relay_ep_set_srtp(g.a, -1, NULL, NULL), -1);
    ck_assert_int_eq(relay_ep_set_srtp(NULL, 0, NULL, NULL), -1);
    /* the contexts set before still work */
    unsigned char plain[2048], pkt[2048 + SRTP_MAX_TRAILER_LEN], got[4096];
    size_t n = rtp_packet(plain, 9, 1);
    memcpy(pkt, plain, n);
    int len = (int)n;
    ck_assert_int_eq(srtp_protect(g.leg_tx, pkt, &len), srtp_err_status_ok);
    send_to(g.sa, relay_ep_port(g.a, 0), pkt, (size_t)len);
    ck_assert_int_eq(recv_wait(g.sb, got, sizeof got), (int)n);
    ck_assert_int_eq(memcmp(got, plain, n), 0);
    /* back to plain: packets pass untouched */
    ck_assert_int_eq(relay_ep_set_srtp(g.a, 0, NULL, NULL), 0);
    send_to(g.sa, relay_ep_port(g.a, 0), pkt, (size_t)len);
    ck_assert_int_eq(recv_wait(g.sb, got, sizeof got), len);
    ck_assert_int_eq(memcmp(got, pkt, (size_t)len), 0);
    rig_down(&g);
}
END_TEST

static Suite *relay_srtp_suite(void)
{
    Suite *s = suite_create("relay_srtp");
    TCase *tc = tcase_create("srtp");
    tcase_set_timeout(tc, 20);
    tcase_add_loop_test(tc, test_srtp_in_plain_out, 0, 2);
    tcase_add_loop_test(tc, test_plain_in_srtp_out, 0, 2);
    tcase_add_loop_test(tc, test_tampered_dropped, 0, 2);
    tcase_add_test(tc, test_set_srtp_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(relay_srtp_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
