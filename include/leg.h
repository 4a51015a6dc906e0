/* leg.h - the leg session layer: one SIP dialog of a call and its media.
 *
 * The layer does what every leg needs whoever owns it: it sends the
 * INVITE, handles each response to it (guard checks, quarantine, "peer
 * gone", SDP, ACK, offer/answer state) and the in-dialog requests (re-INVITE,
 * UPDATE, ACK, BYE, CANCEL), passes re-INVITE offers between the two bridged
 * legs, and destroys the nua handle exactly once. What a response *means*
 * is the owner's: it calls the handlers in leg->ops — the bridge's for
 * caller and room legs (bridge.c), the transfer's for a target being dialled
 * (transfer.c). A new kind of outgoing leg brings its own leg_ops.
 *
 * Control thread only. The layer calls no module above it (bridge,
 * transfer, call table): it reports to the handlers. */
#ifndef SIPXFER_LEG_H
#define SIPXFER_LEG_H

#include "sofia_types.h"

#include <stdbool.h>

#include <sofia-sip/sip.h>

#include "call.h"
#include "sdp_rewrite.h"

struct app;
struct trunk_cfg;

/* An SDP body a leg sent us, parsed (rc 0) or refused (rc an enum
 * sdpx_error; info then undefined). */
struct leg_sdp {
    int rc;
    struct sdpx_info info;
    const char *body;
    size_t len;
    char err[80]; /* why rc < 0 */
};

/* Why an outgoing INVITE did not give a usable dialog. */
enum leg_failure {
    LEG_FAIL_STATUS,  /* the far end answered >= 300: status, phrase are its own */
    LEG_FAIL_CONTACT, /* a 1xx/2xx with a Contact or Record-Route we cannot use */
    LEG_FAIL_SDP,     /* a 2xx whose SDP cannot be parsed */
    LEG_FAIL_TIMEOUT, /* nothing at all came back in leg->response_timeout s */
};

/* The final answer to a re-INVITE we sent (leg_reinvite()). */
struct leg_answer {
    int status;
    const char *phrase;
    const struct leg_sdp *sdp; /* 2xx with parsed SDP (already learnt), else NULL */
    bool unusable;             /* 2xx with a Contact we cannot use: the call ends */
};

/* A leg owner's handlers. Any may be NULL (then nothing happens, or for
 * refer, the REFER is refused 403). */
struct leg_ops {
    const char *name; /* for log lines: "room", "transfer target" */
    /* Outgoing INVITE (state EARLY). A 1xx other than 100; early is its
     * SDP, if it had a body. */
    void (*progress)(struct app *app, struct leg *leg, int status, const char *phrase,
                     const struct leg_sdp *early);
    /* A 2xx arrived: is it still wanted? false: the layer ACKs and BYEs. */
    bool (*wanted)(struct leg *leg);
    /* The 2xx is taken: the leg is ANSWERED and, unless its answer must
     * go in our ACK (NEG_OFFER_RECEIVED_IN_2XX), ACKed and CONFIRMED; its
     * SDP (NULL: none) has been learnt. */
    void (*answered)(struct app *app, struct leg *leg, int status, const struct leg_sdp *sdp);
    /* No dialog (the layer has ended or quarantined the leg). */
    void (*failed)(struct app *app, struct leg *leg, enum leg_failure why, int status,
                   const char *phrase);

    /* In dialog. The far end hung up: BYE (cancel false) or CANCEL of the
     * INVITE it sent us (cancel true; nua has answered 487). */
    void (*bye)(struct app *app, struct leg *leg, bool cancel);
    /* The dialog cannot go on (an unusable Contact in a mid-call 2xx, an
     * ACK without the answer the other leg waits for). */
    void (*broken)(struct app *app, struct leg *leg, int status, const char *phrase);
    /* An in-dialog REFER (nua waits for our answer: NUTAG_APPL_METHOD). */
    void (*refer)(struct app *app, nua_t *nua, struct leg *leg, const sip_t *sip, tagi_t tags[]);
    /* The handle is destroyed (state GONE); the handler frees the leg or
     * keeps it (a bridged leg is freed with its call). */
    void (*gone)(struct app *app, struct leg *leg);
};

/* ---- life (leg.c) ------------------------------------------------------ */

/* A new leg of call in role; not linked into the call (the caller does). */
struct leg *leg_new(struct call *call, enum leg_role role, enum leg_far far,
                    const struct leg_ops *ops);
/* Frees the leg (relay endpoint, timers, digits) and clears every pointer
 * to it: the call's caller/room/target, its place among the detached legs,
 * a transfer's NOTIFY leg. Its handle must be gone. NULL is a no-op. */
void leg_free(struct leg *leg);
/* A replaced room (or an earlier transfer's target still ending): it ends
 * on its own, bridged to nobody, freed when gone; a leg that is already
 * gone is freed here and then, so the caller must not touch it after. */
void leg_detach(struct leg *leg);

/* The one place a leg's state changes: logs the move at debug level and
 * refuses (false, logged as a warning) a move backwards. */
bool leg_set_state(struct leg *leg, enum leg_state to);
void leg_set_neg(struct leg *leg, enum leg_neg to);
const char *leg_state_name(enum leg_state s);
const char *leg_neg_name(enum leg_neg n);

/* The leg this one is bridged to (caller <-> room), or NULL. */
struct leg *leg_peer(const struct leg *leg);
const char *leg_role_name(enum leg_role role);
const char *leg_far_name(enum leg_far far);

/* Our Contact toward the leg for transport ("udp", "tcp", "tls"): the
 * address others reach us at (sip.advertise or the listen host) with that
 * transport named, so the far end's in-dialog requests come back the way
 * the dialog runs. leg_set_contact_from_request() takes the transport the
 * request arrived on (its top Via) and sips from its Request-URI;
 * leg_invite() sets both from the URI dialled. sips: a sips: Contact (on the
 * TLS port), else a TLS dialog gets sip:...;transport=tls. */
void leg_set_contact(struct app *app, struct leg *leg, const char *transport, bool sips);
void leg_set_contact_from_request(struct app *app, struct leg *leg, const sip_t *sip);
/* The Contact tag for a dialog-forming or target-refresh message to leg. */
#define LEG_CONTACT(leg) TAG_IF((leg)->contact, SIPTAG_CONTACT_STR((leg)->contact))

/* ---- media (leg_media.c) ----------------------------------------------------- */

/* Remember the SDP body a leg sent (its raw text and o= line) and point the
 * leg's relay endpoint at the addresses it announced. */
void leg_learn_sdp(struct leg *leg, const struct sdpx_info *info, const char *body, size_t len);

/* media.srtp (SPEC 11) for an offer the leg sent: decides whether the leg
 * gets SRTP (it offers RTP/SAVP with a usable a=crypto and its signalling
 * is TLS; our answer then carries our own key) and sets leg->srtp. 0, or
 * 488 with a reason in why: under "require" a caller's plain offer; under
 * "allow" or "require" an RTP/SAVP offer we cannot take (no usable crypto,
 * or no TLS to send our key over). Call before leg_learn_sdp(). media.srtp
 * "off" and passthrough mode: always 0, SDP passes as it is. */
int leg_srtp_check(struct app *app, struct leg *leg, const struct sdpx_info *offer, char *why,
                   size_t whylen);

/* media.srtp for the answer of a room or target we offered keys to (see
 * leg_sdp_for): 0 when it named our tag and suite with a key of its own
 * (SRTP), or when under "allow" it answered plain (the leg becomes plain);
 * 488 with a reason under "require". Call before leg_learn_sdp(). */
int leg_srtp_answer(struct app *app, struct leg *leg, const struct sdpx_info *answer, char *why,
                    size_t whylen);

/* The URI is reached over TLS (sips:, or ;transport=tls). */
bool leg_uri_is_tls(const char *uri);

/* SPEC 11, transfers re-key: fresh keys of ours (same suites and tags)
 * toward an SRTP leg, for the offer leg_sdp_for() makes next. The relay
 * takes them when the leg's answer is learnt (leg_learn_sdp); until then it
 * keeps encrypting with the old ones. leg_srtp_rekey_undo(): the offer was
 * not made or was refused, back to the keys the relay has. No-ops for a
 * plain leg. */
void leg_srtp_rekey(struct leg *leg);
void leg_srtp_rekey_undo(struct leg *leg);

/* Parse the SDP of sip into out; false when it has none. */
bool leg_sdp_of(const sip_t *sip, struct leg_sdp *out);

/* The SDP we send to `to`, made from a body another leg gave us: rewritten
 * onto to's relay ports (relay mode) or copied (passthrough). Kept in
 * to->sdp_out; NULL if it cannot be rewritten. */
char *leg_sdp_for(struct app *app, struct leg *to, const char *body, size_t len);

/* Allow the leg's media from the address its SIP came from / from its
 * trunk's media_sources (copied): now if it has an endpoint, else when
 * leg_media_new() makes one. trunk may be NULL. */
void leg_media_from_sip(struct leg *leg, const struct sockaddr *sa);
void leg_media_from_trunk(struct leg *leg, const struct trunk_cfg *trunk);

/* Relay endpoints for a new leg: nstreams port pairs, served by the same
 * worker as near. 0, or -1 with err. No-op in passthrough mode. */
int leg_media_new(struct app *app, struct leg *leg, int nstreams, struct leg *near, char *err,
                  size_t errlen);

/* ---- ending (leg.c) ---------------------------------------------------- */

/* End the leg in whatever way its state allows: a final response, CANCEL,
 * or (ACK and) BYE. Idempotent. */
void leg_hangup(struct leg *leg, int status, const char *phrase);

/* nua_respond() keeps the phrase pointer, uncopied, until the stack runs the
 * signal, after the current event (and a phrase taken from it) is freed:
 * return a copy that lives as long as the handle. */
const char *leg_phrase(nua_handle_t *nh, const char *phrase);

/* Give up on a dialog whose remote target sofia cannot use (see
 * sip_guard.h): the handle is parked for good, never destroyed. */
void leg_quarantine(struct app *app, struct leg *leg);
bool leg_is_quarantine_sentinel(const struct leg *leg);

/* nua_i_state terminated: destroy the handle (the only place for a leg
 * with a handle), mark the leg GONE and tell its owner (ops->gone; a
 * detached leg is freed). The leg may be freed on return. Also how an
 * owner drops a detached leg whose INVITE never got any response (nua
 * gives up the transaction instead of waiting it out). */
void leg_terminated(struct app *app, struct leg *leg);

/* ---- digest authentication (leg.c) ------------------------------ */

/* Answer digest challenges to the requests this leg sends (its INVITE,
 * re-INVITEs, BYE, UPDATE, REFER, NOTIFY, INFO) with trunk's auth credentials; NULL or
 * a trunk without auth: none. Only the trunk's name is kept, and the
 * trunk is looked up in app->cfg at each challenge (SIGHUP may swap it). */
void leg_auth_from_trunk(struct leg *leg, const struct trunk_cfg *trunk);

/* A final response to a request the leg sent. A first 401/407 that the
 * leg's trunk has credentials for (Digest, its realm if it names one) is
 * answered with nua_authenticate() and true is returned: nua sends the
 * request again, and the response goes no further. false otherwise,
 * among them a challenge to the request already sent with credentials
 * (refused credentials: the caller treats it as the failure it is).
 * method names the request in log lines. */
bool leg_auth_response(struct app *app, struct leg *leg, int status, const sip_t *sip,
                       const char *method);

/* ---- the outgoing INVITE (leg.c) -------------------------------- */

/* INVITE the leg's URI (leg->uri) with body as the offer (NULL: offerless,
 * the offer is wanted in the 2xx), extra headers (SIP header lines, may be
 * NULL), from and the call's Max-Forwards. A timeout > 0 gives the leg up
 * (ops->failed LEG_FAIL_TIMEOUT) when no response at all came back in that
 * many seconds. 0, or -1 when the URI cannot be addressed (no handle). */
int leg_invite(struct app *app, struct leg *leg, const char *from, const char *headers,
               const char *body, int timeout);

/* nua_r_invite on any leg: the set-up answer of an EARLY leg (to ops), the
 * answer to a re-INVITE we sent (to its done handler), or a refresh. */
void leg_invite_response(struct app *app, nua_t *nua, struct leg *leg, int status,
                         const char *phrase, const sip_t *sip);
/* nua_r_bye: a challenge is answered (leg_auth_response), else one that
 * cannot be ends the handle (nua would wait for credentials). */
void leg_bye_response(struct app *app, struct leg *leg, int status, const sip_t *sip);
/* nua_r_update: nua refreshes sessions with UPDATE on its own. */
void leg_update_response(struct app *app, struct leg *leg, int status, const sip_t *sip);

/* ---- in dialog (leg.c) ------------------------------------------ */

/* Send a re-INVITE offering body; done runs once with its final answer
 * (never, if the leg is freed first). */
void leg_reinvite(struct app *app, struct leg *leg, const char *body, leg_answer_h *done);

/* Requests inside a leg's dialog (or, for INVITE/ACK/CANCEL, its own
 * initial transaction): answered here, passed on to the peer leg (an
 * offer), or reported to the owner (BYE, CANCEL, REFER). */
void leg_i_invite(struct app *app, nua_t *nua, struct leg *leg, const sip_t *sip);
void leg_i_ack(struct app *app, struct leg *leg, const sip_t *sip);
void leg_i_update(struct app *app, nua_t *nua, struct leg *leg, const sip_t *sip);
void leg_i_bye(struct app *app, struct leg *leg);
void leg_i_cancel(struct app *app, struct leg *leg);
void leg_i_refer(struct app *app, nua_t *nua, struct leg *leg, const sip_t *sip, tagi_t tags[]);
/* 403 to a REFER from a leg that may not transfer (logged as security);
 * leg NULL: a stray handle, destroyed. */
void leg_refuse_refer(nua_t *nua, nua_handle_t *nh, struct leg *leg);

/* Where the current request came from, as text ("1.2.3.4:5060") and
 * address (family 0 if unknown). */
void leg_source(nua_t *nua, char *buf, size_t len, struct sockaddr_storage *sa_out);

#endif
