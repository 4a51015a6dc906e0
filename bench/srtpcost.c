/* srtpcost - libsrtp2's own cost per packet on this machine, outside the relay: a loop of
 * srtp_protect + srtp_unprotect of a 172-byte G.711 RTP packet (AES_CM_128_HMAC_SHA1_80),
 * round-robin over CONTEXTS sender/receiver pairs with their own random keys (as a relay with
 * that many SRTP legs has). Not run by bench/run; for docs/performance.md section 6.3.
 *
 *   gcc -O2 -o srtpcost bench/srtpcost.c -lsrtp2 && taskset -c 1 ./srtpcost 250
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <srtp2/srtp.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int contexts = argc > 1 ? atoi(argv[1]) : 1, packets = argc > 2 ? atoi(argv[2]) : 200000;
    if (contexts < 1 || packets < 1 || srtp_init() != srtp_err_status_ok)
        return 2;
    srtp_t *tx = calloc((size_t)contexts, sizeof *tx), *rx = calloc((size_t)contexts, sizeof *rx);
    for (int c = 0; c < contexts; c++) {
        unsigned char key[30];
        for (int i = 0; i < 30; i++)
            key[i] = (unsigned char)rand();
        srtp_policy_t p;
        memset(&p, 0, sizeof p);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtp);
        srtp_crypto_policy_set_rtcp_default(&p.rtcp);
        p.key = key;
        p.ssrc.type = ssrc_any_outbound;
        if (srtp_create(&tx[c], &p) != srtp_err_status_ok)
            return 2;
        p.ssrc.type = ssrc_any_inbound;
        if (srtp_create(&rx[c], &p) != srtp_err_status_ok)
            return 2;
    }
    unsigned char pkt[172 + SRTP_MAX_TRAILER_LEN];
    double tp = 0, tu = 0;
    for (int i = 0; i < packets; i++) {
        int c = i % contexts, seq = i / contexts, len = 172;
        memset(pkt, 0xff, 172);
        pkt[0] = 0x80;
        pkt[1] = 0;
        pkt[2] = (unsigned char)(seq >> 8);
        pkt[3] = (unsigned char)seq;
        memset(pkt + 4, 0, 8);
        pkt[11] = 1;
        double a = now();
        if (srtp_protect(tx[c], pkt, &len) != srtp_err_status_ok)
            return 1;
        double b = now();
        if (srtp_unprotect(rx[c], pkt, &len) != srtp_err_status_ok || len != 172)
            return 1;
        tp += b - a;
        tu += now() - b;
    }
    printf("contexts=%d packets=%d protect_us=%.2f unprotect_us=%.2f\n", contexts, packets,
           1e6 * tp / packets, 1e6 * tu / packets);
    return 0;
}
