/* sdp_rewrite.h - read a far end's media endpoints from SDP and rewrite SDP so
 * that every stream points at our relay. Uses sofia's SDP parser and printer. */
#ifndef SIPXFER_SDP_REWRITE_H
#define SIPXFER_SDP_REWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SDPX_MAX_STREAMS 4

/* What one SDP body may hold. Real offers from trunks and rooms are a few
 * hundred bytes with a dozen attributes (a WebRTC offer with candidates a
 * few KB); anything beyond is refused before sofia's parser sees it, so the
 * cost of one body is bounded whatever a peer sends. Each limit is
 * inclusive: a body of exactly SDPX_MAX_BYTES is accepted. */
#define SDPX_MAX_BYTES 16384     /* the body, Content-Length */
#define SDPX_MAX_LINES 512       /* lines of any type */
#define SDPX_MAX_ATTRIBUTES 256  /* a= lines, session and media level together */
#define SDPX_MAX_MEDIA 16        /* m= lines */
#define SDPX_MAX_FORMATS 64      /* formats on one m= line */

/* sdpx_parse() / sdpx_rewrite() failures */
enum sdpx_error {
    SDPX_BAD = -1,         /* not SDP we can use */
    SDPX_TOO_LARGE = -2,   /* more than SDPX_MAX_BYTES */
    SDPX_TOO_COMPLEX = -3, /* over one of the line, attribute, media or format limits */
};

/* SDES-SRTP (RFC 4568) crypto suites we terminate in the relay. */
enum sdpx_suite {
    SDPX_SUITE_NONE = 0,
    SDPX_SUITE_AES_CM_128_HMAC_SHA1_80, /* 10-byte auth tag */
    SDPX_SUITE_AES_CM_128_HMAC_SHA1_32, /* 4-byte auth tag on RTP, 10 on RTCP */
};

/* Both suites: a 16-byte AES key and a 14-byte salt, 40 base64 bytes inline. */
#define SDPX_KEY_LEN 30
/* What one a=crypto line may hold before we look at it: a real one is
 * under 100 bytes (a lifetime and an MKI add a few). */
#define SDPX_CRYPTO_MAX 256
/* a=crypto lines looked at per m= line; later ones are ignored */
#define SDPX_MAX_CRYPTO 8

/* One usable a=crypto line: "<tag> <suite> inline:<key||salt>[|lifetime]".
 * A line with an MKI, several keys or session parameters is not used (no
 * peer we know sends them; RFC 4568 6.3: an answerer refuses what it does
 * not support). */
struct sdpx_crypto {
    enum sdpx_suite suite; /* NONE: no usable line */
    uint32_t tag;          /* 0..999999999 (RFC 4568: 1*9DIGIT) */
    uint8_t key[SDPX_KEY_LEN];
};

struct sdpx_stream {
    char addr[64];    /* connection address (media level, else session level) */
    uint16_t port;    /* 0 = rejected stream */
    uint16_t rtcp_port; /* a=rtcp if present, else port + 1 */
    bool hold_addr;   /* c= 0.0.0.0 (RFC 2543 hold) */
    bool sendrecv;    /* direction (media level, else session level) is sendrecv */
    char formats[64]; /* the m= line's formats, space separated ("0 8 101") */
    int dtmf_pt;      /* payload type of telephone-event/8000, or -1 */
    bool savp;        /* profile RTP/SAVP or RTP/SAVPF (secure RTP) */
    /* The first usable a=crypto line of the stream (suite NONE if none);
     * crypto_bad counts the lines that were malformed or unsupported. */
    struct sdpx_crypto crypto;
    int crypto_bad;
};

struct sdpx_info {
    int nstreams; /* m= lines, capped at SDPX_MAX_STREAMS */
    int nlines;   /* m= lines in the body (at most SDPX_MAX_MEDIA) */
    uint64_t o_id, o_version;
    struct sdpx_stream s[SDPX_MAX_STREAMS];
    /* no accepted stream is sendrecv on a real address: sendonly, recvonly,
     * inactive or c=0.0.0.0 everywhere (hold), or every stream rejected */
    bool on_hold;
};

/* Our identity in the SDP we emit toward one leg (RFC 3264 section 8: the
 * version goes up by one each time the description changes). */
struct sdpx_origin {
    uint64_t id;
    uint64_t version;
};

/* Parse body; fill info. Returns 0, or an enum sdpx_error with a message in
 * err. */
int sdpx_parse(const char *body, size_t len, struct sdpx_info *info, char *err, size_t errlen);

/* The SIP answer to a request whose SDP failed with rc (enum sdpx_error):
 * 413 "SDP Too Large", 488 "SDP Too Complex" or 488 "Not Acceptable Here". */
int sdpx_refusal(int rc, const char **phrase);

/* Rewrite body for relaying: connection addresses become address, stream i's
 * port becomes ports[i] (streams beyond nports are rejected with port 0),
 * a=rtcp / ICE attributes are dropped (our RTCP is always port + 1), and the
 * o= line becomes ours. A c=0.0.0.0 hold is kept as such. Returns a malloc'd
 * string, or NULL with a message in err. */
char *sdpx_rewrite(const char *body, size_t len, const char *address,
                   const uint16_t *ports, int nports, const struct sdpx_origin *origin,
                   char *err, size_t errlen);

/* What sdpx_rewrite_srtp() writes about SRTP, per stream: with suite NONE
 * the stream becomes plain (a=crypto lines dropped, RTP/SAVP -> RTP/AVP,
 * RTP/SAVPF -> RTP/AVPF); otherwise secure (RTP/AVP -> RTP/SAVP, AVPF ->
 * SAVPF) with crypto[i] as its only a=crypto line. */
struct sdpx_srtp_out {
    struct sdpx_crypto crypto[SDPX_MAX_STREAMS];
    /* best effort SRTP: streams with a key keep their profile (RTP/AVP
     * with an a=crypto line) */
    bool keep_profile;
};

/* sdpx_rewrite() that also sets each stream's SRTP as srtp says; srtp NULL
 * is sdpx_rewrite(): profile and crypto lines pass as they are. */
char *sdpx_rewrite_srtp(const char *body, size_t len, const char *address,
                        const uint16_t *ports, int nports, const struct sdpx_origin *origin,
                        const struct sdpx_srtp_out *srtp, char *err, size_t errlen);

/* Parse one a=crypto value (after "crypto:"), n bytes. 0 and *out filled,
 * or -1 with a reason in err: malformed, or a suite, MKI, key count or
 * session parameter we do not support. Bounded: n over SDPX_CRYPTO_MAX is
 * refused without a look. */
int sdpx_crypto_parse(const char *value, size_t n, struct sdpx_crypto *out, char *err,
                      size_t errlen);

/* Our a=crypto for a stream: suite, tag and a fresh key from random_bytes(). */
void sdpx_crypto_new(struct sdpx_crypto *out, enum sdpx_suite suite, uint32_t tag);

/* "AES_CM_128_HMAC_SHA1_80" etc.; NULL for NONE. */
const char *sdpx_suite_name(enum sdpx_suite suite);

#endif
