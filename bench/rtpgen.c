/* rtpgen - G.711 RTP load for the sipxfer relay bench.
 *
 * stdin: one call per line, "PA RA PB RB": side A binds 127.0.0.1:PA and sends to the relay's
 * port RA; side B binds PB and sends to RB (give RA=PB, RB=PA for a direct, relay-less baseline).
 * A line "PA RA PB RB SUITE TXKEY RXKEY" makes side A SDES-SRTP (libsrtp2): SUITE 80 or 32
 * (AES_CM_128_HMAC_SHA1_80/_32), TXKEY the 30-byte master key+salt (60 hex digits) side A encrypts
 * with, RXKEY the one it decrypts and authenticates what it receives with; side B stays plain RTP.
 * Every stream sends a 172-byte RTP packet (12 header + 160 PCMU) every 20 ms; the streams' send
 * times are spread evenly over the 20 ms so the load is smooth, not one burst per tick. Each payload
 * carries the send time (CLOCK_MONOTONIC ns); the receiver takes the one-way delay from it.
 *
 * usage: rtpgen SECONDS [WARMUP_SECONDS [FIRST_SEQ]]   (packets sent in the warm-up are not in the
 * latency histogram; FIRST_SEQ, default 0, is every stream's first RTP sequence number: a second
 * run on the same SRTP calls must start above the first, or the relay's replay check drops it). Prints one line of key=value: streams, sent, received, loss_pct, pps_offered,
 * lat_p50_us, lat_p90_us, lat_p99_us, lat_p999_us, lat_max_us, late_streams (streams that received
 * nothing); with any SRTP line also srtp_streams (SRTP sides), srtp_fail (received packets that
 * failed srtp_unprotect, not counted as received) and the latency of each direction apart:
 * srtp_rx_p50_us/_p99_us (what the SRTP sides received: relay-encrypted) and plain_rx_p50_us/_p99_us
 * (what the plain sides received: relay-decrypted). Latency of an SRTP side is taken after its
 * decryption. Without SRTP lines no libsrtp call is made. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <srtp2/srtp.h>

#define PKT 172
#define PTIME_NS 20000000LL
#define HIST_US 200000 /* 1 us buckets up to 200 ms */

struct stream {
    int fd;
    struct sockaddr_in to;
    uint16_t seq;
    uint32_t ts, ssrc;
    long rx;
    srtp_t tx_srtp, rx_srtp; /* side A of an SRTP call; NULL for plain RTP */
};

static long long mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int open_port(int port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        perror("socket");
        exit(2);
    }
    int size = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "rtpgen: bind %d: %s\n", port, strerror(errno));
        exit(2);
    }
    return fd;
}

static int hexkey(const char *hex, unsigned char *out, int len)
{
    if ((int)strlen(hex) != 2 * len)
        return -1;
    for (int i = 0; i < len; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* one libsrtp session: outbound (what we send) or inbound (what we receive) */
static srtp_t srtp_session(int suite, const char *hex, int inbound)
{
    unsigned char key[30];
    if (hexkey(hex, key, sizeof key) < 0) {
        fprintf(stderr, "rtpgen: bad SRTP key %s (want 60 hex digits)\n", hex);
        exit(2);
    }
    srtp_policy_t pol;
    memset(&pol, 0, sizeof pol);
    if (suite == 80)
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
    else if (suite == 32)
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&pol.rtp);
    else {
        fprintf(stderr, "rtpgen: SRTP suite %d (want 80 or 32)\n", suite);
        exit(2);
    }
    srtp_crypto_policy_set_rtcp_default(&pol.rtcp);
    pol.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
    pol.key = key;
    srtp_t ctx = NULL;
    if (srtp_create(&ctx, &pol) != srtp_err_status_ok) {
        fprintf(stderr, "rtpgen: srtp_create failed\n");
        exit(2);
    }
    return ctx;
}

static uint32_t hist[HIST_US + 1], hist_srtp[HIST_US + 1]; /* all; what SRTP sides received */
static long nlat, nlat_srtp;

/* percentile q of h (n samples); sub, if not NULL, is subtracted from h bucket by bucket */
static double pct_of(const uint32_t *h, const uint32_t *sub, long n, double q)
{
    long want = (long)(q * n), acc = 0;
    for (int i = 0; i <= HIST_US; i++) {
        acc += h[i] - (sub ? sub[i] : 0);
        if (acc > want)
            return i;
    }
    return HIST_US;
}

static double hist_pct(double q)
{
    return pct_of(hist, NULL, nlat, q);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 10;
    double warm = argc > 2 ? atof(argv[2]) : 1;
    uint16_t first_seq = argc > 3 ? (uint16_t)atoi(argv[3]) : 0;
    struct stream *s = NULL;
    int n = 0, cap = 0, pa, ra, pb, rb, nsrtp = 0;
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        int suite = 0;
        char txk[128], rxk[128];
        int got = sscanf(line, "%d %d %d %d %d %127s %127s", &pa, &ra, &pb, &rb, &suite, txk, rxk);
        if (got < 4)
            continue;
        if (got != 4 && got != 7) {
            fprintf(stderr, "rtpgen: bad line: %s", line);
            return 2;
        }
        if (n + 2 > cap) {
            cap = cap ? cap * 2 : 256;
            s = realloc(s, (size_t)cap * sizeof *s);
        }
        int bindp[2] = {pa, pb}, dst[2] = {ra, rb};
        for (int k = 0; k < 2; k++, n++) {
            memset(&s[n], 0, sizeof s[n]);
            s[n].fd = open_port(bindp[k]);
            s[n].to.sin_family = AF_INET;
            s[n].to.sin_port = htons(dst[k]);
            s[n].to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            s[n].ssrc = 0x5000000u + (uint32_t)n;
            s[n].seq = first_seq;
            if (got == 7 && k == 0) {
                if (nsrtp == 0 && srtp_init() != srtp_err_status_ok) {
                    fprintf(stderr, "rtpgen: srtp_init failed\n");
                    return 2;
                }
                s[n].tx_srtp = srtp_session(suite, txk, 0);
                s[n].rx_srtp = srtp_session(suite, rxk, 1);
                nsrtp++;
            }
        }
    }
    if (n == 0) {
        fprintf(stderr, "rtpgen: no calls on stdin\n");
        return 2;
    }
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, s[i].fd, &e);
    }

    long long start = mono_ns() + 10000000LL, end = start + (long long)(secs * 1e9);
    long long warm_end = start + (long long)(warm * 1e9);
    long long gap = PTIME_NS / n; /* spacing between consecutive streams' sends */
    long long round = 0;
    int next = 0; /* next stream to send, in round `round` */
    long sent = 0, received = 0, srtp_fail = 0;
    unsigned char pkt[PKT];
    unsigned char spkt[PKT + SRTP_MAX_TRAILER_LEN]; /* pkt encrypted for an SRTP side */
    memset(pkt, 0xff, sizeof pkt); /* PCMU silence */

    enum { BATCH = 64 };
    static unsigned char rbuf[BATCH][2048];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = rbuf[i];
        iov[i].iov_len = sizeof rbuf[i];
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    struct epoll_event ev[256];
    int sending = 1;
    long long drain_until = end + 300000000LL;

    for (;;) {
        long long now = mono_ns();
        if (sending) {
            /* send everything that is due */
            for (;;) {
                long long due = start + round * PTIME_NS + next * gap;
                if (due > now)
                    break;
                if (due >= end) {
                    sending = 0;
                    break;
                }
                struct stream *st = &s[next];
                pkt[0] = 0x80;
                pkt[1] = 0; /* PT 0 */
                pkt[2] = st->seq >> 8;
                pkt[3] = st->seq & 0xff;
                pkt[4] = st->ts >> 24;
                pkt[5] = st->ts >> 16;
                pkt[6] = st->ts >> 8;
                pkt[7] = st->ts;
                pkt[8] = st->ssrc >> 24;
                pkt[9] = st->ssrc >> 16;
                pkt[10] = st->ssrc >> 8;
                pkt[11] = st->ssrc;
                long long stamp = mono_ns();
                memcpy(pkt + 12, &stamp, sizeof stamp);
                pkt[20] = due < warm_end; /* warm-up marker */
                if (st->tx_srtp) {
                    int len = PKT;
                    memcpy(spkt, pkt, PKT);
                    if (srtp_protect(st->tx_srtp, spkt, &len) == srtp_err_status_ok &&
                        sendto(st->fd, spkt, (size_t)len, 0, (struct sockaddr *)&st->to, sizeof st->to) == len)
                        sent++;
                } else if (sendto(st->fd, pkt, PKT, 0, (struct sockaddr *)&st->to, sizeof st->to) == PKT)
                    sent++;
                st->seq++;
                st->ts += 160;
                if (++next == n) {
                    next = 0;
                    round++;
                }
            }
        } else if (now >= drain_until) {
            break;
        }
        long long due = sending ? start + round * PTIME_NS + next * gap : drain_until;
        long long wait = due - mono_ns();
        struct timespec to = {0, 0};
        if (wait > 0) {
            to.tv_sec = wait / 1000000000LL;
            to.tv_nsec = wait % 1000000000LL;
        }
        int m = epoll_pwait2(ep, ev, 256, &to, NULL);
        for (int j = 0; j < m; j++) {
            struct stream *st = &s[ev[j].data.u32];
            for (;;) {
                int got = recvmmsg(st->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
                if (got <= 0)
                    break;
                long long t = mono_ns();
                for (int k = 0; k < got; k++) {
                    if (st->rx_srtp) {
                        int len = (int)msgs[k].msg_len;
                        if (srtp_unprotect(st->rx_srtp, rbuf[k], &len) != srtp_err_status_ok) {
                            srtp_fail++;
                            continue;
                        }
                        msgs[k].msg_len = (unsigned)len;
                    }
                    if (msgs[k].msg_len != PKT)
                        continue;
                    received++;
                    st->rx++;
                    if (rbuf[k][20])
                        continue;
                    long long stamp;
                    memcpy(&stamp, rbuf[k] + 12, sizeof stamp);
                    long long us = (t - stamp) / 1000;
                    if (us < 0)
                        us = 0;
                    hist[us > HIST_US ? HIST_US : us]++;
                    nlat++;
                    if (st->rx_srtp) {
                        hist_srtp[us > HIST_US ? HIST_US : us]++;
                        nlat_srtp++;
                    }
                }
                if (got < BATCH)
                    break;
            }
        }
    }
    int silent = 0;
    for (int i = 0; i < n; i++)
        silent += s[i].rx == 0;
    double lmax = 0;
    for (int i = HIST_US; i >= 0; i--)
        if (hist[i]) {
            lmax = i;
            break;
        }
    printf("streams=%d sent=%ld received=%ld loss_pct=%.4f pps_offered=%.0f lat_p50_us=%.0f lat_p90_us=%.0f "
           "lat_p99_us=%.0f lat_p999_us=%.0f lat_max_us=%.0f late_streams=%d\n",
           n, sent, received, sent ? 100.0 * (double)(sent - received) / (double)sent : 0.0, sent / secs,
           hist_pct(0.50), hist_pct(0.90), hist_pct(0.99), hist_pct(0.999), lmax, silent);
    if (nsrtp)
        printf("srtp_streams=%d srtp_fail=%ld srtp_rx_p50_us=%.0f srtp_rx_p99_us=%.0f plain_rx_p50_us=%.0f "
               "plain_rx_p99_us=%.0f\n", nsrtp, srtp_fail, pct_of(hist_srtp, NULL, nlat_srtp, 0.50),
               pct_of(hist_srtp, NULL, nlat_srtp, 0.99), pct_of(hist, hist_srtp, nlat - nlat_srtp, 0.50),
               pct_of(hist, hist_srtp, nlat - nlat_srtp, 0.99));
    /* the whole histogram, for a bench that runs several generators and
     * needs the percentiles of all their packets together */
    const char *hp = getenv("RTPGEN_HIST");
    if (hp) {
        FILE *f = fopen(hp, "w");
        if (!f) {
            fprintf(stderr, "rtpgen: %s: %s\n", hp, strerror(errno));
            return 1;
        }
        for (int i = 0; i <= HIST_US; i++)
            if (hist[i])
                fprintf(f, "%d %u\n", i, hist[i]);
        fclose(f);
    }
    return 0;
}
