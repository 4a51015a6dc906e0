/* dialout.c - a room calls out: see dialout.h.
 *
 * Flow: dialout_start() makes the call with two legs: the far end (in the
 * caller's slot, role LEG_CALLER, handlers far_ops) and the room (room_ops).
 * It offers the far end our relay's media (PCMU, PCMA, telephone-event).
 * The far end's 2xx answer (dialout.connected) becomes the offer to the
 * room, with X-Session-Id; the room's 2xx (dialout.answered) makes the
 * session a bridged call: both legs get c->bridged_ops, as a dial-in call
 * has, and transfers move the far end. A failure before that ends the
 * session with dialout.error; bridge_call_over() frees it and says
 * dialout.stopped once it was answered. */
#include "xalloc.h"
#include "sofia_types.h"

#include "dialout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sofia-sip/nua.h>
#include <sofia-sip/sip_tag.h>

#include "app.h"
#include "call.h"
#include "config.h"
#include "dtmf.h"
#include "events.h"
#include "identity.h"
#include "leg.h"
#include "log.h"
#include "relay.h"
#include "router.h"
#include "sdp_rewrite.h"
#include "target.h"
#include "admit.h"
#include "sip_guard.h"

#include <sofia-sip/url.h>

/* What we offer the far end: the relay's address and port are written in
 * by leg_sdp_for(). */
static const char OFFER[] = "v=0\r\n"
                            "o=sipxfer 1 1 IN IP4 0.0.0.0\r\n"
                            "s=-\r\n"
                            "c=IN IP4 0.0.0.0\r\n"
                            "t=0 0\r\n"
                            "m=audio 9 RTP/AVP 0 8 101\r\n"
                            "a=rtpmap:0 PCMU/8000\r\n"
                            "a=rtpmap:8 PCMA/8000\r\n"
                            "a=rtpmap:101 telephone-event/8000\r\n"
                            "a=fmtp:101 0-16\r\n"
                            "a=ptime:20\r\n"
                            "a=sendrecv\r\n";

static const struct leg_ops far_ops, room_ops;

static void post(struct app *app, struct call *c, const char *type, int status,
                 const char *reason)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "session_id", c->id);
    cJSON_AddStringToObject(p, "sessionId", c->id);
    cJSON_AddStringToObject(p, "room", c->room_name ? c->room_name : "");
    cJSON_AddStringToObject(p, "to", c->to ? c->to : "");
    cJSON_AddStringToObject(p, "from", c->from ? c->from : "");
    if (status) {
        cJSON_AddNumberToObject(p, "sip_status", status);
        cJSON_AddStringToObject(p, "reason", reason ? reason : "");
    }
    events_post(app, type, p);
}

/* Before both legs are up, one failure ends the whole session. A room
 * that placed the call itself hears the far end's status, unless it is
 * one a carrier's must not be passed on as (a challenge, a redirect, 503
 * which would make the room stop sending us calls): 502 then. */
static void fail(struct app *app, struct call *c, int status, const char *reason)
{
    if (c->ended)
        return;
    call_log(c, LOG_INFO, "dial-out failed: %d %s", status, reason);
    post(app, c, "dialout.error", status, reason);
    if (!c->end_reason)
        c->end_reason = "dialout-error";
    if (c->room_originated) {
        bool pass = status >= 400 && status < 700 && status != 401 && status != 407 &&
                    status != 503;
        call_hangup(c, pass ? status : 502, pass ? (reason ? reason : "Failed") : "Bad Gateway");
        return;
    }
    call_hangup(c, 487, "Request Terminated");
}

/* Both legs are up: a bridged call like a dial-in one from now on. */
static void bridged(struct app *app, struct call *c)
{
    c->caller->ops = c->bridged_ops;
    c->room->ops = c->bridged_ops;
    c->connected_event = true;
    post(app, c, "dialout.answered", 0, NULL);
}

static bool wanted(struct leg *leg) { return !leg->call->ended; }

/* ---- the far end ------------------------------------------------------- */

static void far_progress(struct app *app, struct leg *far, int status, const char *phrase,
                         const struct leg_sdp *early)
{
    struct call *c = far->call;
    call_log(c, LOG_INFO, "dial-out: far end %d %s", status, phrase ? phrase : "");
    /* a room that placed the call hears it ring (no early media: the
     * relay's answer to it is the far end's final one) */
    struct leg *room = c->room;
    if (c->room_originated && room && room->nh && room->state == LEG_EARLY && !room->hangup_sent)
        nua_respond(room->nh, status == 183 ? 180 : status,
                    leg_phrase(room->nh, status == 183 ? "Ringing" : phrase), TAG_END());
}

static void far_failed(struct app *app, struct leg *far, enum leg_failure why, int status,
                       const char *phrase)
{
    switch (why) {
    case LEG_FAIL_STATUS:
        fail(app, far->call, status, phrase ? phrase : "refused");
        break;
    case LEG_FAIL_CONTACT:
        fail(app, far->call, 502, "the far end answered with an unusable Contact");
        break;
    case LEG_FAIL_SDP:
        fail(app, far->call, 488, "the far end answered without usable SDP");
        break;
    case LEG_FAIL_TIMEOUT:
        fail(app, far->call, 408, "no response from the far end");
        break;
    }
}

static void far_answered(struct app *app, struct leg *far, int status, const struct leg_sdp *sdp)
{
    struct call *c = far->call;
    if (!sdp || !far->sdp_in) {
        fail(app, c, 488, "the far end answered without SDP");
        return;
    }
    c->dialout_connected = true;
    if (c->room_originated) {
        /* the room asked for this call: it gets the far end's answer */
        call_log(c, LOG_INFO, "dial-out: far end answered %d; answering the room", status);
        post(app, c, "dialout.connected", 0, NULL);
        char *ans = leg_sdp_for(app, c->room, far->sdp_in, strlen(far->sdp_in));
        if (!ans) {
            fail(app, c, 488, "cannot build the room's answer");
            return;
        }
        leg_set_neg(c->room, NEG_STABLE);
        leg_set_state(c->room, LEG_ANSWERED);
        nua_respond(c->room->nh, 200, "OK", LEG_CONTACT(c->room),
                    SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(ans), TAG_END());
        bridged(app, c);
        return;
    }
    call_log(c, LOG_INFO, "dial-out: far end answered %d; inviting room %s", status,
             c->room_name);
    post(app, c, "dialout.connected", 0, NULL);

    /* the far end's answer is what the room is offered: the codecs it took */
    char *body = leg_sdp_for(app, c->room, far->sdp_in, strlen(far->sdp_in));
    if (!body) {
        fail(app, c, 500, "cannot build the room's offer");
        return;
    }
    char headers[900], idh[400];
    identity_headers(&c->ident, IDENTITY_PAI, app->sip_host, idh, sizeof idh);
    snprintf(headers, sizeof headers, "X-Session-Id: %s%s%s", c->id, idh[0] ? "\r\n" : "", idh);
    const struct trunk_cfg *trunk = router_trunk_for_uri(app->cfg, c->room_uri);
    leg_media_from_trunk(c->room, trunk);
    leg_auth_from_trunk(c->room, trunk);
    if (leg_invite(app, c->room, c->from_hdr, headers, body, app->cfg->room_response_timeout) < 0)
        fail(app, c, 500, "cannot create the room leg");
}

static void handed_over(struct app *app, struct leg *leg)
{
    /* the bridge's handlers from now on; they free a gone leg with its call */
    if (leg->call->bridged_ops && leg->call->bridged_ops->gone)
        leg->call->bridged_ops->gone(app, leg);
}

static void far_gone(struct app *app, struct leg *far)
{
    struct call *c = far->call;
    if (!c->ended)
        fail(app, c, 480, "the far end's dialog ended");
    handed_over(app, far);
}

static void early_bye(struct app *app, struct leg *leg, bool cancel)
{
    struct call *c = leg->call;
    if (!c->end_reason)
        c->end_reason = leg == c->caller ? "far-end-hangup" : "room-hangup";
    /* before the bridge: the session did not come about */
    fail(app, c, 487, leg == c->caller ? "the far end hung up before the room joined"
                                       : "the room hung up before it joined");
}

static void early_broken(struct app *app, struct leg *leg, int status, const char *phrase)
{
    fail(app, leg->call, status, phrase ? phrase : "dialog broken");
}

static const struct leg_ops far_ops = {
    .name = "dial-out far end",
    .progress = far_progress,
    .wanted = wanted,
    .answered = far_answered,
    .failed = far_failed,
    .bye = early_bye,
    .broken = early_broken,
    .gone = far_gone,
};

/* ---- the room ---------------------------------------------------------- */

static void room_failed(struct app *app, struct leg *room, enum leg_failure why, int status,
                        const char *phrase)
{
    char reason[160];
    snprintf(reason, sizeof reason, "the room answered %d %.100s", status,
             why == LEG_FAIL_STATUS && phrase ? phrase
             : why == LEG_FAIL_TIMEOUT        ? "(no response)"
                                              : "(unusable answer)");
    fail(app, room->call, why == LEG_FAIL_STATUS ? status : why == LEG_FAIL_TIMEOUT ? 408 : 502,
         reason);
}

static void room_answered(struct app *app, struct leg *room, int status, const struct leg_sdp *sdp)
{
    struct call *c = room->call;
    if (!sdp) {
        fail(app, c, 502, "the room answered without SDP");
        return;
    }
    call_log(c, LOG_INFO, "dial-out: room answered %d; bridged", status);
    bridged(app, c);
    if (c->dialout_extension && c->caller->ep) {
        struct sdpx_info info;
        char err[120];
        if (c->caller->sdp_in &&
            sdpx_parse(c->caller->sdp_in, strlen(c->caller->sdp_in), &info, err, sizeof err) == 0 &&
            info.nstreams > 0 && info.s[0].dtmf_pt >= 0)
            dtmf_start(app, c->caller->ep, info.s[0].dtmf_pt, c->dialout_extension,
                       (unsigned)c->dialout_wait_ext * 1000, 0, c->id, &c->caller->dtmf);
        else if (c->caller->nh)
            dtmf_start_info(app, c->caller->nh, c->dialout_extension, 0, c->id,
                            &c->caller->dtmf);
    }
}

static void room_gone(struct app *app, struct leg *room)
{
    struct call *c = room->call;
    if (!c->ended)
        fail(app, c, 480, "the room's dialog ended");
    handed_over(app, room);
}

static const struct leg_ops room_ops = {
    .name = "dial-out room",
    .wanted = wanted,
    .answered = room_answered,
    .failed = room_failed,
    .bye = early_bye,
    .broken = early_broken,
    .gone = room_gone,
};

/* ---- the API ----------------------------------------------------------- */

static struct call *session_of(struct app *app, const char *room, const char *id)
{
    struct call *c = id ? call_find(app->calls, id) : NULL;
    if (!c || !c->dialout || !c->room_name || strcmp(c->room_name, room) != 0)
        return NULL;
    return c;
}

enum dialout_error dialout_start(struct app *app, const struct dialout_request *req, char *id,
                                 size_t idlen, char *info, size_t infolen)
{
    const struct config *cfg = app->cfg;
    const struct room_cfg *room = router_room_by_name(cfg, req->room);
    if (!room) {
        snprintf(info, infolen, "no such room");
        return DIALOUT_E_NOT_FOUND;
    }
    if (!app->relay) {
        snprintf(info, infolen, "dial-out needs media.mode = \"relay\" (its offer is the relay's)");
        return DIALOUT_E_CONFLICT;
    }
    if (app->draining) {
        snprintf(info, infolen, "draining: no new calls");
        return DIALOUT_E_BUSY;
    }
    if (cfg->max_calls > 0 && call_count(app->calls) >= (size_t)cfg->max_calls) {
        snprintf(info, infolen, "sip.max_calls reached");
        return DIALOUT_E_BUSY;
    }
    const char *text = req->phone_number ? req->phone_number : req->sip_uri;
    struct target t;
    char err[200];
    enum target_result tr = target_parse(cfg, text, app->sip_host, app->sip_port, &t, err,
                                         sizeof err);
    if (tr == TARGET_FORBIDDEN) {
        snprintf(info, infolen, "%s", err);
        return DIALOUT_E_FORBIDDEN;
    }
    if (tr != TARGET_OK) {
        snprintf(info, infolen, "%s", err);
        return DIALOUT_E_BAD;
    }
    if (req->phone_number && t.kind != TARGET_PSTN) {
        snprintf(info, infolen, "phoneNumber must be an E.164 number (+ and digits)");
        return DIALOUT_E_BAD;
    }
    if (req->sip_uri && t.kind == TARGET_PSTN) {
        snprintf(info, infolen, "sipUri must be a SIP URI (a number goes in phoneNumber)");
        return DIALOUT_E_BAD;
    }
    const struct trunk_cfg *trunk = t.kind == TARGET_PSTN && t.trunk[0]
                                        ? config_trunk_by_name(cfg, t.trunk)
                                        : router_trunk_for_uri(cfg, t.uri);

    struct call *c = call_new(app->calls, cfg->node);
    c->dialout = true;
    c->bridged_ops = app->bridged_ops;
    c->room_name = xstrdup(room->name);
    c->room_uri = xstrdup(room->uri);
    c->to = xstrdup(t.uri);
    c->max_forwards = 70;
    /* who the far end sees: callerId / displayName */
    if (req->caller_id)
        snprintf(c->ident.number, sizeof c->ident.number, "%s", req->caller_id);
    if (req->display_name)
        snprintf(c->ident.display, sizeof c->ident.display, "%s", req->display_name);
    if (!c->ident.number[0])
        snprintf(c->ident.number, sizeof c->ident.number, "sipxfer");
    char from[600];
    identity_from(&c->ident, app->sip_host, from, sizeof from);
    c->from_hdr = xstrdup(from);
    char self[300];
    snprintf(self, sizeof self, "sip:%s@%s", c->ident.number, app->sip_host);
    c->from = xstrdup(self);
    if (req->extension && *req->extension) {
        c->dialout_extension = xstrdup(req->extension);
        c->dialout_wait_ext = req->wait_ext_sec;
    }

    struct leg *far = leg_new(c, LEG_CALLER, t.kind == TARGET_PSTN ? FAR_PSTN : FAR_SIP, &far_ops);
    c->caller = far;
    c->room = leg_new(c, LEG_ROOM, FAR_ROOM, &room_ops);
    far->uri = xstrdup(t.uri);
    far->dialled = true; /* for leg_sdp_for(): our offer, not an answer */
    c->room->uri = xstrdup(room->uri);
    if (t.route[0])
        far->route = xstrdup(t.route);
    if (leg_media_new(app, far, 1, NULL, err, sizeof err) < 0 ||
        leg_media_new(app, c->room, 1, far, err, sizeof err) < 0) {
        call_log(c, LOG_ERROR, "dial-out refused: %s", err);
        snprintf(info, infolen, "no media ports left");
        call_free(c);
        return DIALOUT_E_BUSY;
    }
    relay_connect(far->ep, c->room->ep);
    const char *offer = leg_sdp_for(app, far, OFFER, sizeof OFFER - 1);
    char headers[TARGET_MAX_HEADERS * 284 + 600];
    int n = snprintf(headers, sizeof headers, "X-Session-Id: %s", c->id);
    for (int i = 0; i < t.nheaders && n < (int)sizeof headers; i++)
        n += snprintf(headers + n, sizeof headers - (size_t)n, "\r\n%s", t.headers[i]);
    if (trunk && n < (int)sizeof headers) {
        char idh[400];
        identity_headers(&c->ident, trunk->identity, app->sip_host, idh, sizeof idh);
        if (idh[0])
            snprintf(headers + n, sizeof headers - (size_t)n, "\r\n%s", idh);
    }
    leg_media_from_trunk(far, trunk);
    leg_auth_from_trunk(far, trunk);
    if (!offer || leg_invite(app, far, c->from_hdr, headers, offer, 0) < 0) {
        snprintf(info, infolen, "cannot address %s", t.uri);
        call_free(c);
        return DIALOUT_E_BAD;
    }
    call_log(c, LOG_INFO, "dial-out from room %s: INVITE %s%s%s", room->name, t.uri,
             trunk ? " via trunk " : "", trunk ? trunk->name : "");
    snprintf(id, idlen, "%s", c->id);
    return DIALOUT_OK;
}

/* The room's name for the API: the configured room whose URI names the
 * address the INVITE came from, else the From user. */
static void name_room(const struct config *cfg, const char *src_host, const sip_t *sip,
                      char *out, size_t len)
{
    for (size_t i = 0; cfg->rooms && cfg->rooms[i].name; i++) {
        const char *at = strchr(cfg->rooms[i].uri, '@');
        const char *host = at ? at + 1 : cfg->rooms[i].uri + 4;
        size_t n = strlen(src_host);
        if (strncmp(host, src_host, n) == 0 && (host[n] == ':' || host[n] == ';' || !host[n])) {
            snprintf(out, len, "%s", cfg->rooms[i].name);
            return;
        }
    }
    const char *user = sip->sip_from && sip->sip_from->a_url->url_user
                           ? sip->sip_from->a_url->url_user
                           : "room";
    snprintf(out, len, "%s", user);
}

void dialout_incoming(struct app *app, nua_t *nua, nua_handle_t *nh, const sip_t *sip,
                      const struct admit_result *ar)
{
    const struct config *cfg = app->cfg;
    char src[80];
    struct sockaddr_storage sa;
    leg_source(nua, src, sizeof src, &sa);
    if (!ar->has_sdp || !app->relay) {
        log_msg(LOG_INFO, NULL, "room INVITE from %s for %s refused 488: %s", src, ar->number,
                !ar->has_sdp ? "a room placing a call must offer SDP" : "needs media.mode relay");
        nua_respond(nh, 488, "Not Acceptable Here", TAG_END());
        nua_handle_destroy(nh);
        return;
    }
    char uri[512], route[520] = "";
    if (target_number_uri(ar->trunk, ar->number, uri, sizeof uri, route, sizeof route) < 0) {
        nua_respond(nh, 500, "Trunk Gateway Unusable", TAG_END());
        nua_handle_destroy(nh);
        return;
    }
    struct call *c = call_new(app->calls, cfg->node);
    c->dialout = true;
    c->room_originated = true;
    c->bridged_ops = app->bridged_ops;
    struct leg *room = leg_new(c, LEG_ROOM, FAR_ROOM, &room_ops);
    c->room = room;
    room->nh = nh;
    nua_handle_bind(nh, room);
    leg_set_contact_from_request(app, room, sip);
    leg_set_state(room, LEG_EARLY);
    leg_media_from_sip(room, (struct sockaddr *)&sa);
    c->max_forwards = ar->hops - 1;
    identity_of_invite(sip, &c->ident);
    char host[80];
    snprintf(host, sizeof host, "%s", src);
    char *colon = strrchr(host, ':');
    if (colon && !strchr(host, ']'))
        *colon = '\0';
    char name[128];
    name_room(cfg, host, sip, name, sizeof name);
    c->room_name = xstrdup(name);
    char ruri[300] = "";
    if (sip->sip_from)
        url_e(ruri, sizeof ruri, sip->sip_from->a_url);
    c->from = xstrdup(ruri);
    c->room_uri = xstrdup(ruri);
    room->uri = xstrdup(ruri);
    c->to = xstrdup(uri);
    if (sip->sip_call_id)
        c->sip_call_id = xstrdup(sip->sip_call_id->i_id);
    char from[600];
    identity_from(&c->ident, app->sip_host, from, sizeof from);
    c->from_hdr = xstrdup(from);
    call_log(c, LOG_INFO, "INVITE from room %s at %s for %s: out through trunk %s", name, src,
             ar->number, ar->trunk->name);

    char err[200];
    const struct sdpx_info *offer = &ar->offer;
    int refusal = leg_srtp_check(app, room, offer, err, sizeof err);
    if (refusal) {
        call_log(c, LOG_INFO, "room INVITE refused %d: %s", refusal, err);
        call_hangup(c, refusal, "Not Acceptable Here");
        return;
    }
    struct leg *far = leg_new(c, LEG_CALLER, FAR_PSTN, &far_ops);
    c->caller = far;
    far->uri = xstrdup(uri);
    far->dialled = true;
    if (route[0])
        far->route = xstrdup(route);
    if (leg_media_new(app, room, offer->nstreams, NULL, err, sizeof err) < 0 ||
        leg_media_new(app, far, offer->nstreams, room, err, sizeof err) < 0) {
        call_log(c, LOG_ERROR, "no media ports: %s; refusing 503", err);
        call_hangup(c, 503, "Media Ports Exhausted");
        return;
    }
    relay_connect(room->ep, far->ep);
    leg_set_neg(room, NEG_OFFER_RECEIVED);
    leg_learn_sdp(room, offer, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    const char *body = leg_sdp_for(app, far, room->sdp_in, strlen(room->sdp_in));
    char headers[900], idh[400];
    identity_headers(&c->ident, ar->trunk->identity, app->sip_host, idh, sizeof idh);
    snprintf(headers, sizeof headers, "X-Session-Id: %s%s%s", c->id, idh[0] ? "\r\n" : "", idh);
    leg_media_from_trunk(far, ar->trunk);
    leg_auth_from_trunk(far, ar->trunk);
    if (!body || leg_invite(app, far, c->from_hdr, headers, body, 0) < 0) {
        call_log(c, LOG_ERROR, "cannot call %s", uri);
        call_hangup(c, 500, "Server Internal Error");
    }
}

enum dialout_error dialout_stop(struct app *app, const char *room, const char *session_id,
                                char *info, size_t infolen)
{
    struct call *c = session_of(app, room, session_id);
    if (!c || c->ended) {
        snprintf(info, infolen, "No dialout to stop");
        return DIALOUT_E_NOT_FOUND;
    }
    call_log(c, LOG_INFO, "dial-out stopped through the API");
    if (!c->end_reason)
        c->end_reason = "dialout-stop";
    if (!c->connected_event)
        post(app, c, "dialout.stopped", 0, NULL); /* no bridge_call_over event for it */
    call_hangup(c, 487, "Request Terminated");
    return DIALOUT_OK;
}

enum dialout_error dialout_send_dtmf(struct app *app, const char *room, const char *session_id,
                                     const char *tones, int duration_ms,
                                     enum dialout_dtmf_method method, char *info, size_t infolen)
{
    struct call *c = session_of(app, room, session_id);
    if (!c || c->ended) {
        snprintf(info, infolen, "no such dial-out session in this room");
        return DIALOUT_E_NOT_FOUND;
    }
    struct leg *far = c->caller;
    if (!far || far->state != LEG_CONFIRMED) {
        snprintf(info, infolen, "the far end has not answered");
        return DIALOUT_E_CONFLICT;
    }
    if (far->dtmf) {
        snprintf(info, infolen, "digits are still being sent");
        return DIALOUT_E_CONFLICT;
    }
    int pt = -1;
    struct sdpx_info si;
    char err[120];
    if (far->sdp_in && sdpx_parse(far->sdp_in, strlen(far->sdp_in), &si, err, sizeof err) == 0 &&
        si.nstreams > 0)
        pt = si.s[0].dtmf_pt;
    if (method == DTMF_AUTO)
        method = pt >= 0 && far->ep ? DTMF_TELEPHONE_EVENT : DTMF_SIP_INFO;
    if (method == DTMF_TELEPHONE_EVENT) {
        if (pt < 0 || !far->ep) {
            snprintf(info, infolen, "the far end did not accept telephone-event/8000");
            return DIALOUT_E_CONFLICT;
        }
        dtmf_start(app, far->ep, pt, tones, 0, (unsigned)duration_ms, c->id, &far->dtmf);
    } else {
        dtmf_start_info(app, far->nh, tones, (unsigned)duration_ms, c->id, &far->dtmf);
    }
    call_log(c, LOG_INFO, "sending DTMF \"%s\" to the far end (%s, %d ms)", tones,
             method == DTMF_TELEPHONE_EVENT ? "telephone-event" : "sip-info", duration_ms);
    return DIALOUT_OK;
}
