/* dialout.h - a room calls out (SPEC 12, Daily's dialOut): sipxferd INVITEs
 * a number (through the trunk it routes to) or a SIP URI with an offer from
 * its relay; when the far end answers it INVITEs the room with
 * X-Session-Id, and the session is then a call like a dial-in one, the far
 * end in the caller's place (transfers, DELETE, /v1/sessions).
 *
 * The call (struct call, c->dialout set) is owned by the call table like
 * any other; this module gives its two legs their handlers until both are
 * up (then c->bridged_ops, the bridge's), and posts dialout.* events. */
#ifndef SIPXFER_DIALOUT_H
#define SIPXFER_DIALOUT_H

#include <stddef.h>

#include "sofia_types.h"

#include <sofia-sip/nua.h>

struct app;

enum dialout_error {
    DIALOUT_OK = 0,
    DIALOUT_E_BAD,       /* 400 invalid-request-error */
    DIALOUT_E_FORBIDDEN, /* 403: not matched by transfer.allow */
    DIALOUT_E_NOT_FOUND, /* 404: no such room / no dial-out to stop */
    DIALOUT_E_BUSY,      /* 503: draining, max_calls, no media ports */
    DIALOUT_E_CONFLICT,  /* 409: the session cannot do that now */
};

struct dialout_request {
    const char *room;
    const char *phone_number; /* one of phone_number, sip_uri */
    const char *sip_uri;
    const char *caller_id;    /* may be NULL */
    const char *display_name; /* may be NULL */
    const char *extension;    /* digits sent once the far end answered; may be NULL */
    int wait_ext_sec;
};

/* Validate and place the call; DIALOUT_OK with its session id in id. */
enum dialout_error dialout_start(struct app *app, const struct dialout_request *req, char *id,
                                 size_t idlen, char *info, size_t infolen);
/* Hang the dial-out session up (CANCEL while it rings). */
enum dialout_error dialout_stop(struct app *app, const char *room, const char *session_id,
                                char *info, size_t infolen);

/* A room's INVITE to an E.164 number (admit_invite() set ar->outbound):
 * the number is called through ar->trunk with the room's offer, and the
 * room answered with the far end's answer; a session like the others. */
struct admit_result;
void dialout_incoming(struct app *app, nua_t *nua, nua_handle_t *nh, const sip_t *sip,
                      const struct admit_result *ar);

enum dialout_dtmf_method { DTMF_AUTO, DTMF_TELEPHONE_EVENT, DTMF_SIP_INFO };
/* Send tones (0-9 * # A-D) to the far end, each lasting duration_ms. */
enum dialout_error dialout_send_dtmf(struct app *app, const char *room, const char *session_id,
                                     const char *tones, int duration_ms,
                                     enum dialout_dtmf_method method, char *info, size_t infolen);

#endif
