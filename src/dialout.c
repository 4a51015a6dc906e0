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
#include <sofia-sip/su_wait.h>

#include "app.h"
#include "call.h"
#include "cluster.h"
#include "config.h"
#include "dtmf.h"
#include "events.h"
#include "gateway.h"
#include "identity.h"
#include "leg.h"
#include "log.h"
#include "looplag.h"
#include "relay.h"
#include "router.h"
#include "sdp_rewrite.h"
#include "target.h"
#include "admit.h"
#include "sip_guard.h"

#include <sofia-sip/url.h>

/* What we offer the far end: the relay's address and port are written in
 * by leg_sdp_for(). The placeholder address must not be 0.0.0.0, which
 * the rewrite keeps as it is (RFC 2543 hold): the far end would have
 * nowhere to send its media. */
static const char OFFER[] = "v=0\r\n"
                            "o=sipxfer 1 1 IN IP4 192.0.2.1\r\n"
                            "s=-\r\n"
                            "c=IN IP4 192.0.2.1\r\n"
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
    cluster_session_put(app, c, "connected");
}

static bool wanted(struct leg *leg) { return !leg->call->ended; }

/* ---- reaching the far end: gateways, failover, ring bound ------------- */

/* A gateway that sends nothing at all (not even 100 Trying) in this many
 * seconds is given up and the next one of the trunk is tried, as for a
 * transfer (transfer.c). */
#define GATEWAY_RESPONSE_TIMEOUT 4

static void ring_expired(struct app *app, su_timer_t *t, void *arg)
{
    struct call *c = arg;
    (void)t;
    if (c->ended || c->dialout_connected)
        return;
    struct looplag_mark m;
    looplag_begin(&m, "timer", "dial-out ring", c->id);
    char reason[80];
    snprintf(reason, sizeof reason, "no answer in %d s (transfer.ring_timeout)",
             app->cfg->transfer.ring_timeout);
    fail(app, c, 408, reason);
    looplag_end(&m);
}

/* The plan of call c: how its far end is reached. A number with a trunk
 * of several gateways gets them in the order tried: those up first (list
 * order), then those down, a last resort as for transfers. */
static struct dialout_plan *plan_new(struct app *app, struct call *c, const char *offer,
                                     int nstreams, const char *headers,
                                     const struct trunk_cfg *trunk, const char *number)
{
    struct dialout_plan *p = xcalloc(1, sizeof *p);
    c->dialout_plan = p;
    p->offer = xstrdup(offer);
    p->nstreams = nstreams;
    p->headers = xstrdup(headers);
    if (trunk && number && trunk->ngateways) {
        p->trunk = xstrdup(trunk->name);
        p->number = xstrdup(number);
        p->gws = xcalloc(trunk->ngateways, sizeof *p->gws);
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < trunk->ngateways; i++) {
                const char *gw = trunk->gateways[i];
                if (gw && gateway_is_up(app, trunk->name, gw) == (pass == 0))
                    p->gws[p->n++] = xstrdup(gw);
            }
    }
    p->ring = su_timer_create(su_root_task(app->root), 0);
    if (p->ring)
        su_timer_set_interval(p->ring, ring_expired, c,
                              (su_duration_t)app->cfg->transfer.ring_timeout * 1000);
    return p;
}

/* The Request-URI (and Route) of the number toward the plan's gateway at
 * index i, in its trunk's number_format; -1 if that gateway is unusable. */
static int plan_uri(struct app *app, const struct dialout_plan *p, size_t i, char *uri,
                    size_t urilen, char *route, size_t routelen)
{
    const struct trunk_cfg *trunk = config_trunk_by_name(app->cfg, p->trunk);
    if (!trunk)
        return target_pstn_uri(p->gws[i], p->number, uri, urilen);
    struct trunk_cfg via = *trunk;
    via.gateway = p->gws[i];
    route[0] = '\0';
    return target_number_uri(&via, p->number, uri, urilen, route, routelen);
}

/* A new far-end leg toward uri, INVITEd with the plan's offer and headers;
 * NULL (err says why) if it could not be made. The caller makes it
 * c->caller. */
static struct leg *far_dial(struct app *app, struct call *c, enum leg_far kind, const char *uri,
                            const char *route, char *err, size_t errlen, bool *no_ports)
{
    struct dialout_plan *p = c->dialout_plan;
    const struct trunk_cfg *trunk = p->trunk ? config_trunk_by_name(app->cfg, p->trunk)
                                             : router_trunk_for_uri(app->cfg, uri);
    struct leg *far = leg_new(c, LEG_CALLER, kind, &far_ops);
    far->uri = xstrdup(uri);
    far->dialled = true; /* for leg_sdp_for(): our offer, not an answer */
    if (route && route[0])
        far->route = xstrdup(route);
    if (leg_media_new(app, far, p->nstreams, c->room, err, errlen) < 0) {
        *no_ports = true;
        leg_free(far);
        return NULL;
    }
    if (c->room && c->room->ep)
        relay_connect(far->ep, c->room->ep);
    leg_media_from_trunk(far, trunk);
    leg_auth_from_trunk(far, trunk);
    const char *offer = leg_sdp_for(app, far, p->offer, strlen(p->offer));
    if (!offer || leg_invite(app, far, c->from_hdr, p->headers, offer,
                             p->n ? GATEWAY_RESPONSE_TIMEOUT : 0) < 0) {
        snprintf(err, errlen, "cannot address %.180s", uri);
        leg_free(far);
        return NULL;
    }
    return far;
}

/* The far end through the first of the plan's gateways that takes the
 * INVITE (p->at is then its index); NULL if none did. */
static struct leg *dial_first(struct app *app, struct call *c, enum leg_far kind, char *err,
                              size_t errlen, bool *no_ports)
{
    struct dialout_plan *p = c->dialout_plan;
    snprintf(err, errlen, "no usable gateway");
    for (p->at = 0; p->at < p->n && !*no_ports; p->at++) {
        char uri[512], route[520];
        if (plan_uri(app, p, p->at, uri, sizeof uri, route, sizeof route) < 0)
            continue;
        struct leg *far = far_dial(app, c, kind, uri, route, err, errlen, no_ports);
        if (far)
            return far;
    }
    return NULL;
}

/* The far end's INVITE toward a trunk gateway failed: 503 (the gateway's
 * or sofia's for a transport error) or nothing at all, before any
 * provisional answer, marks that gateway down and dials the next one with
 * a fresh leg (true). Anything else is the far end's answer (false). */
static bool fail_over(struct app *app, struct leg *far, enum leg_failure why, int status,
                      const char *phrase)
{
    struct call *c = far->call;
    struct dialout_plan *p = c->dialout_plan;
    if (!p || !p->n || p->at >= p->n || c->ended || far != c->caller)
        return false;
    const char *gw = p->gws[p->at];
    char reason[120];
    if (!gateway_failed(app, p->trunk, gw, why == LEG_FAIL_TIMEOUT,
                        why == LEG_FAIL_STATUS ? status : 0, phrase, p->progress, reason,
                        sizeof reason))
        return false;
    while (++p->at < p->n) {
        char uri[512], route[520], err[200];
        if (plan_uri(app, p, p->at, uri, sizeof uri, route, sizeof route) < 0)
            continue;
        call_log(c, LOG_INFO, "dial-out: gateway %s failed (%s): trying %s", gw, reason,
                 p->gws[p->at]);
        bool no_ports = false;
        struct leg *next = far_dial(app, c, far->far, uri, route, err, sizeof err, &no_ports);
        if (!next) {
            call_log(c, LOG_WARN, "dial-out: gateway %s not dialled: %s", p->gws[p->at], err);
            if (no_ports)
                break;
            continue;
        }
        /* The failed leg ends on its own after its 503. One that never got
         * any answer would wait out its INVITE transaction (a CANCEL needs
         * a provisional first) and hold the call: its handle is destroyed
         * now and it is freed. */
        bool silent = why == LEG_FAIL_TIMEOUT && far->state == LEG_EARLY && far->nh;
        leg_detach(far);
        c->caller = next;
        if (silent)
            leg_terminated(app, far); /* freed */
        return true;
    }
    return false;
}

/* ---- the far end ------------------------------------------------------- */

static void far_progress(struct app *app, struct leg *far, int status, const char *phrase,
                         const struct leg_sdp *early)
{
    struct call *c = far->call;
    call_log(c, LOG_INFO, "dial-out: far end %d %s", status, phrase ? phrase : "");
    struct dialout_plan *p = c->dialout_plan;
    if (p && p->at < p->n && !p->progress) {
        /* it is alive, and from now on its final answer is the answer */
        p->progress = true;
        gateway_mark(app, p->trunk, p->gws[p->at], true, "it answered a call");
    }
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
    if (fail_over(app, far, why, status, phrase))
        return;
    /* nothing at all came back: its INVITE transaction would hold the
     * call for 32 s (a CANCEL needs a provisional first), so its handle is
     * destroyed once the session is failed */
    bool silent = why == LEG_FAIL_TIMEOUT && far->state == LEG_EARLY && far->nh;
    struct call *c = far->call;
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
    if (silent && far->nh && c->caller == far) {
        leg_terminated(app, far);
        if (app->call_over)
            app->call_over(app, c);
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
    struct dialout_plan *p = c->dialout_plan;
    if (p) {
        su_timer_reset(p->ring);
        if (p->at < p->n)
            gateway_mark(app, p->trunk, p->gws[p->at], true, "it answered a call");
    }
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

    c->room = leg_new(c, LEG_ROOM, FAR_ROOM, &room_ops);
    c->room->uri = xstrdup(room->uri);
    if (leg_media_new(app, c->room, 1, NULL, err, sizeof err) < 0) {
        call_log(c, LOG_ERROR, "dial-out refused: %s", err);
        snprintf(info, infolen, "no media ports left");
        call_free(c);
        return DIALOUT_E_BUSY;
    }
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
    bool pstn = t.kind == TARGET_PSTN;
    struct dialout_plan *p = plan_new(app, c, OFFER, 1, headers, pstn ? trunk : NULL,
                                      pstn ? t.number : NULL);
    enum leg_far kind = pstn ? FAR_PSTN : FAR_SIP;
    bool no_ports = false;
    struct leg *far = p->n ? dial_first(app, c, kind, err, sizeof err, &no_ports)
                           : far_dial(app, c, kind, t.uri, t.route, err, sizeof err, &no_ports);
    if (!far) {
        call_log(c, LOG_ERROR, "dial-out refused: %s", err);
        snprintf(info, infolen, "%s", no_ports ? "no media ports left" : err);
        call_free(c);
        return no_ports ? DIALOUT_E_BUSY : DIALOUT_E_BAD;
    }
    c->caller = far;
    call_log(c, LOG_INFO, "dial-out from room %s: INVITE %s%s%s", room->name, far->uri,
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
    c->to = xstrdup(ar->number);
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
    if (leg_media_new(app, room, offer->nstreams, NULL, err, sizeof err) < 0) {
        call_log(c, LOG_ERROR, "no media ports: %s; refusing 503", err);
        call_hangup(c, 503, "Media Ports Exhausted");
        return;
    }
    leg_set_neg(room, NEG_OFFER_RECEIVED);
    leg_learn_sdp(room, offer, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    char headers[900], idh[400];
    identity_headers(&c->ident, ar->trunk->identity, app->sip_host, idh, sizeof idh);
    snprintf(headers, sizeof headers, "X-Session-Id: %s%s%s", c->id, idh[0] ? "\r\n" : "", idh);
    plan_new(app, c, room->sdp_in, offer->nstreams, headers, ar->trunk, ar->number);
    bool no_ports = false;
    struct leg *far = dial_first(app, c, FAR_PSTN, err, sizeof err, &no_ports);
    if (!far) {
        call_log(c, LOG_ERROR, "cannot call %s: %s", ar->number, err);
        if (no_ports)
            call_hangup(c, 503, "Media Ports Exhausted");
        else
            call_hangup(c, 500, "Trunk Gateway Unusable");
        return;
    }
    c->caller = far;
    free(c->to);
    c->to = xstrdup(far->uri);
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
