/* admit.h - whether a new INVITE may become a call, decided without I/O.
 *
 * The checks and their order are the admission policy of docs/security.md
 * section 2.1; bridge.c acts on the answer (response, log line, counter).
 * Keeping the decision apart makes the order testable on parsed messages. */
#ifndef SIPXFER_ADMIT_H
#define SIPXFER_ADMIT_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/socket.h>

#include <sofia-sip/sip.h>

#include "sdp_rewrite.h"

struct config;
struct ratelimit;
struct trunk_cfg;
struct room_cfg;

/* A new INVITE costs one rate-limit token plus one per this many body
 * bytes: a source sending large bodies is limited sooner than one sending
 * ordinary calls. */
#define ADMIT_BODY_BYTES_PER_TOKEN 2048

/* Why an INVITE was refused before it became a call: the index of the
 * rejected-calls counters, named in /metrics (metrics.c). */
enum reject_kind {
    REJ_FORBIDDEN, /* 403: source in no trunk */
    REJ_NOT_FOUND, /* 404: no room, route or resolver */
    REJ_MAX_CALLS, /* 503: sip.max_calls */
    REJ_DRAIN,     /* 503: draining after SIGTERM */
    REJ_BAD,       /* 400 Bad Contact, 415, 488 */
    REJ_NO_PORTS,  /* 503: no relay port pair (or descriptor) */
    REJ_RATE,      /* 503: sip.rate_limit */
    REJ_SDP_LIMIT, /* 413 / 488: SDP over the SDPX_MAX_* limits */
    REJ_TOO_MANY_HOPS, /* 483: Max-Forwards 0 (a loop) */
    REJ_COUNT
};

/* The check that refused, in the order they run. */
enum admit_check {
    ADMIT_OK,        /* admitted */
    ADMIT_DRAINING,  /* 503 Service Unavailable, Retry-After 30 */
    ADMIT_RATE,      /* 503 Rate Limited, Retry-After 2 */
    ADMIT_SOURCE,    /* 403: source in no trunk */
    ADMIT_CONTACT,   /* 400 Bad Contact */
    ADMIT_HOPS,      /* 483: Max-Forwards 0 */
    ADMIT_MAX_CALLS, /* 503 Too Many Calls, Retry-After 5 */
    ADMIT_ROUTE,     /* 404: no room and no resolver */
    ADMIT_BODY,      /* 415: a body that is not SDP */
    ADMIT_SDP,       /* 413 / 488: SDP over the limits or unusable */
};

struct admit_input {
    const struct config *cfg;
    const struct sockaddr *source; /* where the INVITE came from (the socket) */
    const sip_t *sip;              /* the INVITE; must have a request line */
    size_t calls;                  /* calls up now */
    bool draining;
    struct ratelimit *rl; /* charged for the INVITE when the rate limit is reached */
    double now;           /* monotonic seconds, for rl */
};

struct admit_result {
    enum admit_check check;
    int status; /* 0 when admitted */
    const char *phrase;
    enum reject_kind kind;     /* counters.rejected index when refused */
    const char *reason;      /* SECURITY category to log, or NULL */
    const char *retry_after; /* Retry-After value, or NULL */
    const char *accept;      /* Accept value, or NULL */
    char why[80];            /* detail for ADMIT_CONTACT and ADMIT_SDP */
    /* filled as far as the checks got */
    const struct trunk_cfg *trunk;
    const struct room_cfg *room; /* NULL: ask the resolver when resolve */
    bool resolve;
    unsigned hops; /* Max-Forwards it arrived with (missing: 70, capped at 70) */
    bool has_sdp;
    struct sdpx_info offer; /* when has_sdp */
    /* A room placing a call (SPEC 12): the source is in rooms.sources and
     * the Request-URI user an E.164 number, which goes out through trunk
     * (the one the number routes to; no trunk: ADMIT_ROUTE). */
    bool outbound;
    char number[40];
};

/* Runs the checks on in, in order, stopping at the first that refuses.
 * Touches nothing but out and the rate-limit bucket of the source. */
void admit_invite(const struct admit_input *in, struct admit_result *out);

/* The rate-limit tokens an INVITE costs. */
double admit_invite_cost(const sip_t *sip);

#endif
