/* call.h - a bridged call and its legs: the one place a call's state lives.
 *
 * Ownership: a call owns its legs; a leg owns its relay endpoint and holds
 * the only reference to its nua handle, which b2bua.c destroys exactly once
 * (at nua_i_state terminated, or right after refusing an INVITE). A call is
 * freed by call_free() once no leg has a handle left. */
#ifndef SIPXFER_CALL_H
#define SIPXFER_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "sdp_rewrite.h"
#include "sofia_types.h"

enum leg_role { LEG_CALLER, LEG_ROOM, LEG_TARGET };

/* Who is at the far end of a leg, fixed when the leg is created. A role
 * changes (a transfer target becomes the call's room leg); this does not:
 * only a room may ask us to move the caller (REFER). */
enum leg_far { FAR_UNKNOWN, FAR_TRUNK, FAR_ROOM, FAR_PSTN, FAR_SIP };

enum leg_state {
    LEG_IDLE,      /* created, nothing sent or received */
    LEG_EARLY,     /* INVITE under way (sent or received), no 2xx */
    LEG_ANSWERED,  /* 2xx sent or received, ACK not yet exchanged */
    LEG_CONFIRMED, /* dialog established */
    LEG_ENDING,    /* BYE/CANCEL/final error sent */
    LEG_GONE,      /* handle destroyed */
};

struct relay_ep;
struct dtmf;

struct leg {
    struct call *call;
    nua_handle_t *nh;
    enum leg_role role;
    enum leg_far far;
    enum leg_state state;
    struct relay_ep *ep;

    struct sdpx_origin origin; /* our o= toward this leg */
    char *sdp_out;             /* last SDP we sent to this leg */
    uint64_t in_o_id, in_o_version; /* o= of the last SDP this leg sent us */
    bool have_in_version;

    bool hangup_sent;  /* BYE, CANCEL or final error already asked of nua */
    bool reinvite_in;  /* its re-INVITE waits for the other leg's answer */
    bool reinvite_out; /* we forwarded a re-INVITE to it */
    bool offer_in_ack; /* we offered in a 2xx to it; its answer comes in ACK */
    bool ack_pending;  /* (UAC) a 2xx we have not ACKed yet */
    bool xfer_reinvite; /* the re-INVITE out is a transfer's media update */

    char *sdp_in;      /* last SDP body this leg sent us */
    bool hold_in;      /* ... and it puts the media on hold (sdpx_info.on_hold) */
    char *uri;         /* whom this leg talks to (room / target URI, caller From) */
    bool detached;     /* replaced by a transfer: ending on its own */
    struct leg *znext; /* call's list of detached legs */
    struct dtmf *dtmf; /* digits being dialled into this leg, owned */
    /* Who may send this leg's media besides its SDP address (SPEC 9),
     * kept for an endpoint made later (offerless calls). */
    struct sockaddr_storage sip_src; /* its SIP's last source; family 0: none */
    struct cidr *media_nets;         /* its trunk's media_sources, owned */
    size_t nmedia_nets;
    su_timer_t *response_timer; /* room INVITE with no response yet (b2bua.c), owned */
};

struct call {
    char id[96]; /* sessionId: <node>-<uuid> */
    char *room_name;
    char *room_uri;
    char *from; /* caller's From URI, for the API */
    char *from_hdr; /* the From we put on legs we originate */
    char *to;   /* the caller's Request-URI, for events */
    char *sip_call_id; /* the caller leg's Call-ID, for events */
    char *sip_headers; /* the INVITE's X- headers as JSON text, for the resolver */
    struct leg *caller;
    struct leg *room;   /* the far end the caller is bridged to (room or target) */
    struct leg *target; /* a transfer's new leg, until it is bridged */
    struct leg *zombies; /* detached legs still ending */
    struct transfer *xfer; /* the transfer in flight or the last one, owned */
    unsigned transfers; /* how many completed */
    bool connected_event; /* dialin.connected sent */
    time_t started;
    bool offerless;  /* initial INVITE had no SDP: answer comes in caller's ACK */
    bool ended;      /* both legs asked to hang up */
    unsigned max_forwards; /* on every leg made for the call: the caller's minus one */
    const char *end_reason; /* static text for dialin.stopped; NULL = "hangup" */
    long long media_quiet_since; /* media_watch.c: CLOCK_MONOTONIC ns it counts silence from */
    bool media_hold;             /* media_watch.c: hold state at the last check */

    struct call *next, *prev; /* all calls, for iteration */
    struct call *hnext;       /* hash chain by id */
};

struct call *call_new(const char *node);
/* Unlinks and frees the call and its legs (not their nua handles: those
 * must already be destroyed) and frees relay endpoints still held. */
void call_free(struct call *call);
struct call *call_find(const char *id);
size_t call_count(void);
struct call *call_first(void);

struct leg *leg_new(struct call *call, enum leg_role role);
/* Frees the leg struct (relay endpoint released); its handle must be gone. */
void leg_free(struct leg *leg);
/* True when every leg of the call is gone and nothing is detached. */
bool call_is_over(const struct call *call);
struct leg *leg_peer(const struct leg *leg);
const char *leg_role_name(enum leg_role role);
const char *leg_far_name(enum leg_far far);

#define call_log(call, level, ...) log_msg(level, (call)->id, __VA_ARGS__)

#endif
