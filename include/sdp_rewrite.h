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

struct sdpx_stream {
    char addr[64];    /* connection address (media level, else session level) */
    uint16_t port;    /* 0 = rejected stream */
    uint16_t rtcp_port; /* a=rtcp if present, else port + 1 */
    bool hold_addr;   /* c= 0.0.0.0 (RFC 2543 hold) */
    bool sendrecv;    /* direction (media level, else session level) is sendrecv */
    char formats[64]; /* the m= line's formats, space separated ("0 8 101") */
    int dtmf_pt;      /* payload type of telephone-event/8000, or -1 */
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

#endif
