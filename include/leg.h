/* leg.h - SIP and media operations on one call leg, shared by the bridging
 * (b2bua.c) and transfer (transfer.c) code. Control thread only. */
#ifndef SIPXFER_LEG_H
#define SIPXFER_LEG_H

#include "sofia_types.h"

#include <stdbool.h>

#include <sofia-sip/sip.h>

#include "call.h"
#include "sdp_rewrite.h"

struct app;

/* The message carries an SDP body. */
bool sip_has_sdp(const sip_t *sip);

/* Remember the SDP body a leg sent (its raw text and o= line) and point the
 * leg's relay endpoint at the addresses it announced. */
void leg_learn_sdp(struct leg *leg, const struct sdpx_info *info, const char *body, size_t len);

/* The SDP we send to `to`, made from a body another leg gave us: rewritten
 * onto to's relay ports (relay mode) or copied (passthrough). Kept in
 * to->sdp_out; NULL if it cannot be rewritten. */
char *leg_sdp_for(struct app *app, struct leg *to, const char *body, size_t len);

/* End the leg in whatever way its state allows: a final response, CANCEL,
 * or (ACK and) BYE. Idempotent. */
void leg_hangup(struct leg *leg, int status, const char *phrase);

/* nua_respond() keeps the phrase pointer, uncopied, until the stack runs the
 * signal, after the current event (and a phrase taken from it) is freed:
 * return a copy that lives as long as the handle. */
const char *leg_phrase(nua_handle_t *nh, const char *phrase);

/* Give up on a dialog whose remote target sofia cannot use (see
 * sip_guard.h): the handle is parked for good, never destroyed. */
void leg_quarantine(struct leg *leg);
bool leg_is_quarantine_sentinel(const struct leg *leg);
unsigned long leg_quarantined_count(void);

struct trunk_cfg;
/* Allow the leg's media from the address its SIP came from / from its
 * trunk's media_sources (copied): now if it has an endpoint, else when
 * leg_media_new() makes one. trunk may be NULL. */
void leg_media_from_sip(struct leg *leg, const struct sockaddr *sa);
void leg_media_from_trunk(struct leg *leg, const struct trunk_cfg *trunk);

/* Relay endpoints for a new leg: nstreams port pairs, served by the same
 * worker as near. 0, or -1 with err. No-op in passthrough mode. */
int leg_media_new(struct app *app, struct leg *leg, int nstreams, struct leg *near, char *err,
                  size_t errlen);

#endif
