/* call.h - a bridged call and its legs: the one place a call's state lives.
 *
 * Ownership: a call owns its legs (caller, room, target and the detached
 * old rooms still ending); a leg owns its relay endpoint, its timers and
 * the only reference to its nua handle, which the leg layer destroys
 * exactly once (leg_terminated(), at nua_i_state terminated; a refused new
 * INVITE's handle is destroyed by the bridge before any leg exists).
 * leg_free() unlinks the leg from its call, so no pointer to a freed leg
 * is left. A call is freed by call_free() (from bridge_call_over()) once
 * no leg has a handle left. */
#ifndef SIPXFER_CALL_H
#define SIPXFER_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include "identity.h"
#include "log.h"
#include "sdp_rewrite.h"
#include "sofia_types.h"

enum leg_role { LEG_CALLER, LEG_ROOM, LEG_TARGET };

/* Who is at the far end of a leg, fixed when the leg is created. A role
 * changes (a transfer target becomes the call's room leg); this does not:
 * only a room may ask us to move the caller (REFER). */
enum leg_far { FAR_UNKNOWN, FAR_TRUNK, FAR_ROOM, FAR_PSTN, FAR_SIP };

/* Offer/answer state of one leg (RFC 3264 over RFC 3261 transactions), as
 * libre's sdp_neg_state: who owes an answer, and in which message it comes.
 * Changed only through leg_set_neg(). */
enum leg_neg {
    NEG_STABLE,           /* no offer outstanding */
    NEG_OFFER_SENT,       /* we offered in a request; the answer is in its 2xx */
    NEG_OFFER_SENT_IN_2XX, /* we offered in a 2xx (offerless INVITE); the answer is in the ACK */
    NEG_OFFER_WANTED,     /* we sent an offerless INVITE; the offer comes in the 2xx */
    NEG_OFFER_RECEIVED,   /* it offered in a request; we owe the answer in our response */
    NEG_OFFER_RECEIVED_IN_2XX, /* it offered in its 2xx; we owe the answer in our ACK */
};

/* Changed only through leg_set_state(): forward moves only. */
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
struct leg_ops;
struct leg_answer;
struct app;

/* How a re-INVITE we sent ended (leg_reinvite()). */
typedef void leg_answer_h(struct app *app, struct leg *leg, const struct leg_answer *a);

struct leg {
    struct call *call;
    nua_handle_t *nh;
    enum leg_role role;
    /* we sent its dialog-forming INVITE (a room, a target, a dial-out's far
     * end); false: it called us. Set by leg_invite(). */
    bool dialled;
    enum leg_far far;
    enum leg_state state;
    enum leg_neg neg;
    const struct leg_ops *ops; /* its owner's handlers (leg.h); NULL: detached */
    leg_answer_h *reinvite_done; /* the re-INVITE we sent, until its final response */
    struct relay_ep *ep;

    struct sdpx_origin origin; /* our o= toward this leg */
    char *sdp_out;             /* last SDP we sent to this leg */
    uint64_t in_o_id, in_o_version; /* o= of the last SDP this leg sent us */
    bool have_in_version;

    bool hangup_sent;  /* BYE, CANCEL or final error already asked of nua */
    bool ack_pending;  /* (UAC) a 2xx we have not ACKed yet */

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
    /* Our Contact toward this leg, naming the transport its dialog uses
     * (leg_set_contact()); NULL: sofia's default. Owned. */
    char *contact;
    char *route; /* a Route for its INVITE ("<gateway;lr>" for a tel: Request-URI), owned */
    /* its signalling is TLS (the caller's INVITE came over TLS, or the URI
     * dialled is sips:/;transport=tls; set by leg_set_contact()). SRTP keys
     * are only ever written into SDP toward a leg with tls set (SPEC 11,
     * leg_srtp_check() in leg_media.c). */
    bool tls;
    /* Digest (leg.c): the trunk whose credentials answer a 401/407 to a
     * request this leg sends (its name, owned: the trunk is looked up in
     * app->cfg at each challenge); NULL: challenges are not answered. */
    char *auth_trunk;
    bool auth_retrying; /* credentials sent; the next challenge means refused */
    su_timer_t *response_timer; /* outgoing INVITE with no response yet (leg.c), owned */
    int response_timeout;       /* ... its seconds; 0: none */
    /* SDES-SRTP terminated in the relay for this leg (media.srtp): per
     * stream the key it announced (srtp_rx) and ours toward it (srtp_tx);
     * suite NONE: that stream is plain. */
    bool srtp;
    /* best effort (RFC 4568 keys in an RTP/AVP m= line, as offered to a
     * TLS room under media.srtp "allow", or offered so by the leg): the
     * profile stays RTP/AVP and an answer without keys makes the leg plain */
    bool srtp_best_effort;
    bool srtp_offered; /* we offered keys to a leg we dial; its answer decides */
    struct sdpx_crypto srtp_rx[SDPX_MAX_STREAMS], srtp_tx[SDPX_MAX_STREAMS];
    /* ... and what the relay endpoint was last given: contexts are made
     * again only when a key changes (a new context restarts libsrtp's
     * rollover counter and replay window) */
    struct sdpx_crypto srtp_ep_rx[SDPX_MAX_STREAMS], srtp_ep_tx[SDPX_MAX_STREAMS];
};

struct calls;

struct call {
    struct calls *table; /* the instance's call table it is linked into */
    char id[96]; /* sessionId: <node>-<uuid> */
    char *room_name;
    char *room_uri;
    char *from; /* caller's From URI, for the API */
    char *from_hdr; /* the From we put on legs we originate */
    struct identity ident; /* the caller as its carrier asserts it (identity.h) */
    char trunk[64];        /* the trunk the call came in on ("" if none) */
    char *to;   /* the caller's Request-URI, for events */
    char *sip_call_id; /* the caller leg's Call-ID, for events */
    char *sip_headers; /* the INVITE's X- headers as JSON text, for the resolver */
    struct leg *caller;
    struct leg *room;   /* the far end the caller is bridged to (room or target) */
    struct leg *target; /* a transfer's new leg, until it is bridged */
    struct leg *zombies; /* detached legs still ending */
    const struct leg_ops *bridged_ops; /* handlers of a leg bridged to the caller (bridge.c) */
    struct transfer *xfer; /* the transfer in flight or the last one, owned */
    unsigned transfers; /* how many completed */
    bool connected_event; /* dialin.connected (dialout.answered) sent */
    /* placed by POST /v1/rooms/{room}/dialOut/start (dialout.c): the caller
     * leg is the far end we called; events are dialout.* */
    bool dialout;
    bool dialout_connected; /* dialout.connected sent (the far end answered) */
    bool room_originated;   /* ... by a room's own INVITE (rooms.sources): its leg is ours to answer */
    char *dialout_extension; /* digits for the far end once it answered, owned */
    int dialout_wait_ext;
    struct dialout_plan *dialout_plan; /* the far end's gateways and ring timer, owned */
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

/* How dialout.c reaches the far end: the INVITE's extra headers and, for
 * a number, its trunk's gateways in the order tried (those up first); at
 * is the one being dialled, progress whether it sent a provisional (from
 * then on its final answer is the answer). ring bounds the ringing.
 * Freed by call_free(). */
struct dialout_plan {
    char *headers;
    const char *offer; /* the SDP the far end is offered (before leg_sdp_for), owned */
    int nstreams;
    char *trunk, *number;
    char **gws;
    size_t n, at;
    bool progress;
    su_timer_t *ring;
};

/* One instance's call table (app->calls): a hash by session id and a
 * list for iteration. Destroyed empty. */
struct calls *calls_create(void);
void calls_destroy(struct calls *t);

/* A new call with a fresh session id <node>-<uuid>, linked into t. */
struct call *call_new(struct calls *t, const char *node);
/* Unlinks and frees the call and its legs (not their nua handles: those
 * must already be destroyed) and frees relay endpoints still held. The
 * transfer (c->xfer) must be freed first: its owner module does that. */
void call_free(struct call *call);
struct call *call_find(const struct calls *t, const char *id);
size_t call_count(const struct calls *t);
struct call *call_first(const struct calls *t);

/* True when every leg of the call is gone and nothing is detached. */
bool call_is_over(const struct call *call);
/* End the call: mark it ended, hang up caller and room with status (a
 * final response, CANCEL or BYE, whatever each leg's state allows) and a
 * transfer target with 487. The one way a whole call is hung up. */
void call_hangup(struct call *call, int status, const char *phrase);
/* Every call, with reason for dialin.stopped (draining). */
void call_hangup_all(struct calls *t, int status, const char *phrase, const char *reason);

#define call_log(call, level, ...) log_msg(level, (call)->id, __VA_ARGS__)

#endif
