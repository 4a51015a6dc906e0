/* fuzz_sdp.c - sdpx_parse() then sdpx_rewrite() on SDP from the far end.
 *
 * Besides memory errors it checks the relay's promise: every stream that
 * survives the rewrite points at our address (or is a 0.0.0.0 hold), and
 * what we print parses again. Every other input is rewritten with SRTP
 * (sdpx_rewrite_srtp: our key on stream 0, plain elsewhere): the output
 * then carries no a=crypto but ours. */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sdp_rewrite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a little past SDPX_MAX_BYTES, so the limit itself is exercised */
    if (size > SDPX_MAX_BYTES + 64)
        return 0;
    char *body = malloc(size ? size : 1);
    if (!body)
        abort();
    memcpy(body, data, size);

    struct sdpx_info info;
    char err[256];
    if (sdpx_parse(body, size, &info, err, sizeof err) == 0) {
        assert(info.nstreams >= 0 && info.nstreams <= SDPX_MAX_STREAMS);
        assert(info.nlines >= info.nstreams);
        for (int i = 0; i < info.nstreams; i++) {
            assert(memchr(info.s[i].addr, '\0', sizeof info.s[i].addr));
            assert(memchr(info.s[i].formats, '\0', sizeof info.s[i].formats));
        }
    }

    /* vary the rewrite parameters with the input, cheaply */
    const char *address = (size & 1) ? "2001:db8::7" : "192.0.2.7";
    static const uint16_t ports[SDPX_MAX_STREAMS] = {30000, 30002, 0, 30006};
    int nports = (int)(size % (SDPX_MAX_STREAMS + 1));
    struct sdpx_origin origin = {.id = 42, .version = size};
    struct sdpx_srtp_out sec;
    memset(&sec, 0, sizeof sec);
    sec.crypto[0].suite = (size & 4) ? SDPX_SUITE_AES_CM_128_HMAC_SHA1_32
                                     : SDPX_SUITE_AES_CM_128_HMAC_SHA1_80;
    sec.crypto[0].tag = (uint32_t)size;
    memset(sec.crypto[0].key, 0x5a, sizeof sec.crypto[0].key);
    bool srtp = size & 2;
    char *out = sdpx_rewrite_srtp(body, size, address, ports, nports, &origin,
                                  srtp ? &sec : NULL, err, sizeof err);
    if (out) {
        struct sdpx_info again;
        char err2[256];
        int rc = sdpx_parse(out, strlen(out), &again, err2, sizeof err2);
        /* our printed form may be longer (IPv6 address, added t=) than an
         * input just under the limits; it must never be bad SDP */
        assert(rc == 0 || rc == SDPX_TOO_LARGE || rc == SDPX_TOO_COMPLEX);
        for (int i = 0; rc == 0 && i < again.nstreams; i++) {
            if (!again.s[i].port)
                continue;
            assert(i < nports && ports[i] == again.s[i].port);
            assert(strcmp(again.s[i].addr, address) == 0 || again.s[i].hold_addr);
        }
        for (int i = 0; srtp && rc == 0 && i < again.nstreams; i++) {
            assert(again.s[i].crypto_bad == 0);
            const struct sdpx_crypto *c = &again.s[i].crypto;
            assert(c->suite == SDPX_SUITE_NONE ||
                   (i == 0 && c->suite == sec.crypto[0].suite && c->tag == sec.crypto[0].tag &&
                    memcmp(c->key, sec.crypto[0].key, sizeof c->key) == 0));
        }
        assert(rc != 0 || (again.o_id == 42 && again.o_version == size));
        free(out);
    }
    free(body);
    return 0;
}
