/* b2bua.h - the SIP side: one nua instance on the control loop, bridging
 * trunk calls to rooms. */
#ifndef SIPXFER_B2BUA_H
#define SIPXFER_B2BUA_H

#include <stdbool.h>
#include <stddef.h>

struct app;
struct b2bua;

/* Binds sip.listen (UDP and TCP). NULL with a message in err on failure. */
struct b2bua *b2bua_create(struct app *app, char *err, size_t errlen);

/* Stop taking calls (503) and hang up every call still up. */
void b2bua_hangup_all(struct b2bua *b, int status, const char *phrase);

struct call;
/* Hang up one call: BYE to answered legs, CANCEL / status to the others. */
void b2bua_hangup_call(struct b2bua *b, struct call *c, int status, const char *phrase);

/* Continue a call whose room was found later (dynamic rooms): INVITE the
 * room, or refuse the caller. */
void b2bua_dial_room(struct b2bua *b, struct call *c, const char *room_name, const char *room_uri);
void b2bua_refuse_call(struct b2bua *b, struct call *c, int status, const char *phrase);

/* nua_shutdown; when done, calls done() on the control loop. */
void b2bua_shutdown(struct b2bua *b, void (*done)(struct app *app));
void b2bua_destroy(struct b2bua *b);

/* Counters for /metrics. */
/* Why an INVITE was refused before it became a call: counters.rejected
 * index, named in /metrics (metrics.c). */
enum b2bua_reject {
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

struct b2bua_counters {
    unsigned long long calls_total;    /* INVITEs that became calls */
    unsigned long long calls_answered; /* reached 200 on the caller leg */
    unsigned long long rejected[REJ_COUNT];
};
void b2bua_counters(const struct b2bua *b, struct b2bua_counters *out);

#endif
