/* bridge.c - trunk calls bridged to rooms; see bridge.h.
 *
 * One call, start to end: bridge_incoming() admits the INVITE and makes
 * the call with its caller and room legs (both owned by bridged_ops below),
 * dial_room() INVITEs the room through the leg layer (leg.c), whose
 * reports land in room_progress / room_answered / room_failed; the caller
 * gets the room's answer. In the call, the leg layer answers or passes on
 * re-INVITEs itself and reports BYE, REFER and a handle's
 * end here; bridge_call_over() frees the call once every leg is gone. */
#include "sofia_types.h"

#include "bridge.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>

#include "app.h"
#include "events.h"
#include "identity.h"
#include "call.h"
#include "cluster.h"
#include "dialout.h"
#include "config.h"
#include "leg.h"
#include "log.h"
#include "ratelimit.h"
#include "relay.h"
#include "resolver.h"
#include "router.h"
#include "sip_guard.h"
#include "transfer.h"
#include "xalloc.h"

struct bridge {
    struct app *app;
    struct ratelimit *rl;
    struct bridge_counters counters;
};

static const struct leg_ops bridged_ops;

struct bridge *bridge_create(struct app *app)
{
    struct bridge *b = xcalloc(1, sizeof *b);
    b->app = app;
    b->rl = ratelimit_create(8192);
    app->bridge = b;
    app->bridged_ops = &bridged_ops;
    app->call_over = bridge_call_over;
    return b;
}

void bridge_destroy(struct bridge *b)
{
    if (!b)
        return;
    while (call_first(b->app->calls)) {
        struct call *c = call_first(b->app->calls);
        /* their handles went with nua_shutdown / nua_destroy */
        for (struct leg *l = c->zombies; l; l = l->znext)
            l->nh = NULL;
        if (c->caller)
            c->caller->nh = NULL;
        if (c->room)
            c->room->nh = NULL;
        if (c->target)
            c->target->nh = NULL;
        transfer_free(c->xfer);
        c->xfer = NULL;
        call_free(c);
    }
    ratelimit_destroy(b->rl);
    b->app->bridge = NULL;
    free(b);
}

void bridge_counters(const struct bridge *b, struct bridge_counters *out) { *out = b->counters; }

/* ---- the end of a call ------------------------------------------------- */

void bridge_call_over(struct app *app, struct call *c)
{
    if (!call_is_over(c))
        return;
    struct relay_ep_stats a = {0}, r = {0};
    if (c->caller && c->caller->ep)
        relay_ep_stats(c->caller->ep, &a);
    if (c->room && c->room->ep)
        relay_ep_stats(c->room->ep, &r);
    call_log(c, LOG_INFO,
             "call ended after %lds, %u transfer(s): caller rx %llu tx %llu packets, far end rx "
             "%llu tx %llu packets",
             (long)(time(NULL) - c->started), c->transfers, (unsigned long long)a.rx_packets,
             (unsigned long long)a.tx_packets, (unsigned long long)r.rx_packets,
             (unsigned long long)r.tx_packets);
    if (c->connected_event) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "session_id", c->id);
        cJSON_AddStringToObject(p, "room", c->room_name ? c->room_name : "");
        cJSON_AddStringToObject(p, "from", c->from ? c->from : "");
        cJSON_AddNumberToObject(p, "duration", (double)(time(NULL) - c->started));
        cJSON_AddStringToObject(p, "reason", c->end_reason ? c->end_reason : "hangup");
        events_post(app, c->dialout ? "dialout.stopped" : "dialin.stopped", p);
        cluster_session_del(app, c);
    }
    transfer_free(c->xfer);
    c->xfer = NULL;
    call_free(c);
}

/* ---- the room leg while it is dialled ---------------------------------- */

/* What the caller hears when the room fails with status. A B2BUA must not
 * hand its trunk a 503 (the trunk would stop sending us every call), a 3xx
 * (the room's Contact is internal) or an auth challenge (not ours). */
static int map_room_failure(int status, const char **phrase)
{
    if (status >= 300 && status < 400) {
        *phrase = "Temporarily Unavailable";
        return 480;
    }
    if (status == 401 || status == 407) {
        *phrase = "Bad Gateway";
        return 502;
    }
    if (status == 503) {
        *phrase = "Temporarily Unavailable";
        return 480;
    }
    if (status >= 700) {
        *phrase = "Server Internal Error";
        return 500;
    }
    return status;
}

/* Relay endpoints for caller and room once the number of streams is known. */
static int call_media_setup(struct app *app, struct call *c, int nstreams, char *err, size_t errlen)
{
    if (!app->relay || c->caller->ep)
        return 0;
    if (leg_media_new(app, c->caller, nstreams, NULL, err, errlen) < 0)
        return -1;
    if (leg_media_new(app, c->room, nstreams, c->caller, err, errlen) < 0)
        return -1; /* the caller's endpoint is freed with the call */
    relay_connect(c->caller->ep, c->room->ep);
    return 0;
}

static bool caller_waiting(const struct call *c)
{
    const struct leg *caller = c->caller;
    return caller && caller->nh && caller->state == LEG_EARLY && !caller->hangup_sent;
}

static void room_progress(struct app *app, struct leg *room, int status, const char *phrase,
                          const struct leg_sdp *early)
{
    struct call *c = room->call;
    struct leg *caller = c->caller;
    if (room != c->room || !caller_waiting(c))
        return;
    if (early && !c->offerless) {
        if (early->rc == SDPX_TOO_LARGE || early->rc == SDPX_TOO_COMPLEX) {
            /* early media we cannot relay; the 2xx would carry the same */
            call_log(c, LOG_WARN, "room's %d refused: %s", status, early->err);
            call_hangup(c, 502, "Bad Gateway");
            return;
        }
        if (early->rc == 0) {
            leg_learn_sdp(room, &early->info, early->body, early->len);
            char *body = leg_sdp_for(app, caller, early->body, early->len);
            if (body) {
                nua_respond(caller->nh, status, leg_phrase(caller->nh, phrase),
                            LEG_CONTACT(caller), SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                            SIPTAG_PAYLOAD_STR(body), TAG_END());
                return;
            }
        }
    }
    nua_respond(caller->nh, status, leg_phrase(caller->nh, phrase),
                TAG_IF(status < 300, LEG_CONTACT(caller)), TAG_END());
}

static bool room_wanted(struct leg *room) { return caller_waiting(room->call); }

static void room_failed(struct app *app, struct leg *room, enum leg_failure why, int status,
                        const char *phrase)
{
    struct call *c = room->call;
    switch (why) {
    case LEG_FAIL_STATUS: {
        const char *mapped_phrase = phrase;
        int mapped = map_room_failure(status, &mapped_phrase);
        leg_hangup(c->caller, mapped, mapped_phrase);
        break;
    }
    case LEG_FAIL_CONTACT:
    case LEG_FAIL_SDP:
        call_hangup(c, 502, "Bad Gateway");
        break;
    case LEG_FAIL_TIMEOUT:
        call_hangup(c, 408, "Request Timeout");
        break;
    }
}

static void room_answered(struct app *app, struct leg *room, int status, const struct leg_sdp *sdp)
{
    struct call *c = room->call;
    struct leg *caller = c->caller;
    char why[80];

    const char *body = NULL;
    if (sdp) {
        if (c->offerless) {
            if (call_media_setup(app, c, sdp->info.nstreams, why, sizeof why) < 0) {
                call_log(c, LOG_ERROR, "no media ports: %s", why);
                call_hangup(c, 503, "Media Ports Exhausted");
                return;
            }
            /* again, now that its relay endpoint exists */
            leg_learn_sdp(room, &sdp->info, sdp->body, sdp->len);
        }
        body = leg_sdp_for(app, caller, sdp->body, sdp->len);
    } else if (!c->offerless && caller->sdp_out) {
        /* No SDP in the 2xx: the answer was in a reliable 1xx we never
         * asked for; reuse what we already sent. */
        body = caller->sdp_out;
    }
    if (!body) {
        call_log(c, LOG_WARN, "room answered without usable SDP");
        call_hangup(c, 502, "Bad Gateway");
        return;
    }

    /* offerless: the room's offer goes to the caller, whose ACK answers */
    leg_set_neg(caller, c->offerless ? NEG_OFFER_SENT_IN_2XX : NEG_STABLE);
    leg_set_state(caller, LEG_ANSWERED);
    app->bridge->counters.calls_answered++;
    c->connected_event = true;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "session_id", c->id);
    cJSON_AddStringToObject(p, "sessionId", c->id);
    cJSON_AddStringToObject(p, "room", c->room_name);
    cJSON_AddStringToObject(p, "from", c->from);
    cJSON_AddStringToObject(p, "to", c->to);
    cJSON_AddStringToObject(p, "call_id", c->sip_call_id ? c->sip_call_id : "");
    events_post(app, "dialin.connected", p);
    cluster_session_put(app, c, "connected");
    call_log(c, LOG_INFO, "room answered %d; bridging", status);
    nua_respond(caller->nh, 200, "OK", LEG_CONTACT(caller),
                SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(body), TAG_END());
}

/* ---- either leg in the call -------------------------------------------- */

static void bridged_bye(struct app *app, struct leg *leg, bool cancel)
{
    struct call *c = leg->call;
    if (cancel) {
        leg_hangup(leg_peer(leg), 487, "Request Terminated");
        return;
    }
    /* A room leaving while a transfer rings keeps the caller for the
     * target (transfer_leg_gone decides when the leg is gone). */
    if (leg == c->room && transfer_active(c))
        return;
    if (!c->end_reason && (leg == c->caller || leg == c->room))
        c->end_reason = leg == c->room     ? "room-hangup"
                        : c->dialout        ? "far-end-hangup" /* the leg we called */
                                            : "caller-hangup";
    leg_hangup(leg_peer(leg), 200, "OK");
}

static void bridged_broken(struct app *app, struct leg *leg, int status, const char *phrase)
{
    call_hangup(leg->call, status, phrase);
}

static void bridged_refer(struct app *app, nua_t *nua, struct leg *leg, const sip_t *sip,
                          tagi_t tags[])
{
    struct call *c = leg->call;
    char why[80];
    /* only a room may ask us to move the caller; a transfer target stays
     * what it was (a PSTN gateway, an outside URI) once it is the room leg */
    if (leg != c->room || leg->far != FAR_ROOM) {
        leg_refuse_refer(nua, leg->nh, leg);
        return;
    }
    if (!sip_guard_dialog_ok(sip, false, why, sizeof why)) {
        log_security("bad-contact", "-", c->id, "room REFER refused 400: %s", why);
        nua_respond(leg->nh, 400, "Bad Contact", NUTAG_WITH_THIS(nua), TAG_END());
        return;
    }
    transfer_from_room(app, nua, leg, sip, tags);
}

static void bridged_gone(struct app *app, struct leg *leg)
{
    struct call *c = leg->call;
    bool keep_caller = transfer_leg_gone(app, leg);
    if (leg == c->caller)
        leg_hangup(c->target, 487, "Request Terminated");
    struct leg *other = leg_peer(leg);
    if (other && other->state != LEG_GONE && !(keep_caller && other == c->caller))
        leg_hangup(other, leg->role == LEG_CALLER ? 487 : 480,
                   leg->role == LEG_CALLER ? "Request Terminated" : "Temporarily Unavailable");
    /* a bridged leg is freed with its call (bridge_call_over) */
}

static const struct leg_ops bridged_ops = {
    .name = "room",
    .progress = room_progress,
    .wanted = room_wanted,
    .answered = room_answered,
    .failed = room_failed,
    .bye = bridged_bye,
    .broken = bridged_broken,
    .refer = bridged_refer,
    .gone = bridged_gone,
};

/* ---- a new call -------------------------------------------------------- */

static void dial_room(struct app *app, struct call *c, const char *room_name, const char *room_uri)
{
    free(c->room_name);
    c->room_name = xstrdup(room_name);
    free(c->room_uri);
    c->room_uri = xstrdup(room_uri);
    free(c->room->uri);
    c->room->uri = xstrdup(room_uri);

    char *body = NULL;
    if (!c->offerless) {
        body = leg_sdp_for(app, c->room, c->caller->sdp_in, strlen(c->caller->sdp_in));
        if (!body) {
            call_hangup(c, 488, "Not Acceptable Here");
            return;
        }
    }
    /* our rooms are trusted with the caller's identity, private or not */
    char sid_header[600], idh[400];
    identity_headers(&c->ident, IDENTITY_PAI, app->sip_host, idh, sizeof idh);
    snprintf(sid_header, sizeof sid_header, "X-Session-Id: %s%s%s", c->id, idh[0] ? "\r\n" : "",
             idh);
    const struct trunk_cfg *trunk = router_trunk_for_uri(app->cfg, room_uri);
    leg_media_from_trunk(c->room, trunk);
    leg_auth_from_trunk(c->room, trunk);
    if (leg_invite(app, c->room, c->from_hdr, sid_header, body,
                   app->cfg->room_response_timeout) < 0) {
        call_log(c, LOG_ERROR, "cannot create the room leg to %s", room_uri);
        call_hangup(c, 500, "Server Internal Error");
    }
}

static void resolved(struct app *app, const char *call_id, const struct resolver_answer *a)
{
    struct call *c = call_find(app->calls, call_id);
    /* the caller may have cancelled while we waited */
    if (!c || c->ended || !caller_waiting(c))
        return;
    if (!a->room) {
        call_log(c, LOG_WARN, "resolver: %s; answering 480", a->why);
        call_hangup(c, 480, "Temporarily Unavailable");
        return;
    }
    call_log(c, LOG_INFO, "resolver: bridging to %s (room %s)", a->uri, a->room);
    dial_room(app, c, a->room, a->uri);
}

/* Answer a new INVITE with an error and drop its handle. retry_after and
 * accept add those headers when not NULL. */
static void refuse(struct bridge *b, nua_handle_t *nh, int status, const char *phrase,
                   enum reject_kind kind, const char *retry_after, const char *accept)
{
    nua_respond(nh, status, phrase, TAG_IF(retry_after, SIPTAG_RETRY_AFTER_STR(retry_after)),
                TAG_IF(accept, SIPTAG_ACCEPT_STR(accept)), TAG_END());
    nua_handle_destroy(nh);
    b->counters.rejected[kind]++;
}

/* The INVITE's X- headers as a JSON object text, for the resolver. */
static char *collect_x_headers(const sip_t *sip)
{
    cJSON *o = cJSON_CreateObject();
    int n = 0;
    for (const sip_unknown_t *u = sip->sip_unknown; u && n < 32; u = u->un_next)
        if (u->un_name && u->un_value && strncasecmp(u->un_name, "X-", 2) == 0) {
            cJSON_AddStringToObject(o, u->un_name, u->un_value);
            n++;
        }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* The log line for a refused INVITE; the checks themselves are admit.c's. */
static void refusal_log(const struct config *cfg, const struct admit_result *r, const char *src,
                        const char *callid, const char *user)
{
    switch (r->check) {
    case ADMIT_OK:
    case ADMIT_BODY:
        break;
    case ADMIT_DRAINING:
        log_info("INVITE from %s (Call-ID %s) refused: draining", src, callid);
        break;
    case ADMIT_RATE:
        log_security(r->reason, src, NULL, "INVITE refused 503: over %d/s (Call-ID %.80s)",
                     cfg->rate_limit, callid);
        break;
    case ADMIT_SOURCE:
        log_security(r->reason, src, NULL, "INVITE refused 403 (Call-ID %.80s)", callid);
        break;
    case ADMIT_CONTACT:
        log_security(r->reason, src, NULL, "INVITE refused 400: %s (Call-ID %.80s)", r->why,
                     callid);
        break;
    case ADMIT_HOPS:
        log_warn("INVITE from %s refused 483: Max-Forwards 0 (Call-ID %.80s)", src, callid);
        break;
    case ADMIT_MAX_CALLS:
        log_warn("INVITE from %s refused 503: max_calls (%d) reached", src, cfg->max_calls);
        break;
    case ADMIT_ROUTE:
        log_info("INVITE from %s for '%.64s' refused 404: no such room or route", src,
                 user ? user : "");
        break;
    case ADMIT_SDP:
        if (!r->reason)
            log_info("INVITE from %s refused 488: %s", src, r->why);
        else
            log_security(r->reason, src, NULL, "INVITE refused %d: %s (Call-ID %.80s)", r->status,
                         r->why, callid);
        break;
    }
}

/* Behind a proxy in sip.trusted_proxies (Kamailio, SPEC 13) every INVITE
 * comes from the proxy: the carrier is the hop the proxy's Via sits on,
 * which the proxy stamped with received= (RFC 3261 18.2.1) when the sent-by
 * was not where the request came from. Trunk sources and rate limits then
 * apply per carrier. Only from a trusted proxy: anyone else could write a
 * Via naming a trunk. */
static void carrier_source(const struct config *cfg, const sip_t *sip, char *src, size_t len,
                           struct sockaddr_storage *sa)
{
    if (!cidr_list_match(cfg->trusted_proxies, cfg->ntrusted_proxies, (struct sockaddr *)sa))
        return;
    const sip_via_t *v = sip && sip->sip_via ? sip->sip_via->v_next : NULL;
    if (!v)
        return;
    const char *host = v->v_received ? v->v_received : v->v_host;
    const char *port = v->v_rport && *v->v_rport ? v->v_rport : v->v_port;
    long p = port ? strtol(port, NULL, 10) : 5060;
    if (p <= 0 || p > 65535)
        p = 5060;
    struct sockaddr_storage out;
    if (!ip_sockaddr(host, (int)p, &out))
        return; /* a name: the proxy did not say where it came from */
    char proxy[64];
    snprintf(proxy, sizeof proxy, "%.63s", src);
    snprintf(src, len, "%.48s:%ld via %s", host, p, proxy);
    *sa = out;
}

void bridge_incoming(struct app *app, nua_t *nua, nua_handle_t *nh, const sip_t *sip)
{
    struct bridge *b = app->bridge;
    struct config *cfg = app->cfg;
    char src[128];
    struct sockaddr_storage sa;
    leg_source(nua, src, sizeof src, &sa);
    carrier_source(cfg, sip, src, sizeof src, &sa);
    const char *callid = sip && sip->sip_call_id ? sip->sip_call_id->i_id : "?";

    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct admit_input in = {
        .cfg = cfg,
        .source = (struct sockaddr *)&sa,
        .sip = sip,
        .calls = call_count(app->calls),
        .draining = app->draining,
        .rl = b->rl,
        .now = (double)now.tv_sec + now.tv_nsec / 1e9,
    };
    struct admit_result ar;
    admit_invite(&in, &ar);
    const char *user = sip && sip->sip_request ? sip->sip_request->rq_url->url_user : NULL;
    if (ar.check != ADMIT_OK) {
        refusal_log(cfg, &ar, src, callid, user);
        refuse(b, nh, ar.status, ar.phrase, ar.kind, ar.retry_after, ar.accept);
        return;
    }
    if (ar.outbound) {
        dialout_incoming(app, nua, nh, sip, &ar); /* a room placing a call */
        return;
    }
    const struct room_cfg *room = ar.room;
    const struct sdpx_info *offer = &ar.offer;
    char why[80];

    struct call *c = call_new(app->calls, cfg->node);
    c->bridged_ops = &bridged_ops;
    c->caller = leg_new(c, LEG_CALLER, FAR_TRUNK, &bridged_ops);
    /* a configured room, or the one the resolver names */
    c->room = leg_new(c, LEG_ROOM, FAR_ROOM, &bridged_ops);
    c->caller->nh = nh;
    leg_set_contact_from_request(app, c->caller, sip);
    leg_set_state(c->caller, LEG_EARLY);
    c->max_forwards = ar.hops - 1;
    leg_media_from_sip(c->caller, (struct sockaddr *)&sa);
    leg_media_from_trunk(c->caller, ar.trunk);
    leg_auth_from_trunk(c->caller, ar.trunk); /* its carrier may challenge our BYE, re-INVITE */
    nua_handle_bind(nh, c->caller);
    b->counters.calls_total++;

    const sip_from_t *from = sip->sip_from;
    /* the number its carrier asserts (P-Asserted-Identity, Remote-Party-ID,
     * From), kept private when Privacy says so */
    identity_of_invite(sip, &c->ident);
    if (ar.trunk && ar.trunk->name)
        snprintf(c->trunk, sizeof c->trunk, "%s", ar.trunk->name);
    char fromtext[512];
    identity_from(&c->ident, app->sip_host, fromtext, sizeof fromtext);
    char caller_uri[300];
    if (from)
        url_e(caller_uri, sizeof caller_uri, from->a_url);
    else
        snprintf(caller_uri, sizeof caller_uri, "?");
    c->from = xstrdup(caller_uri);
    c->from_hdr = xstrdup(fromtext);
    c->caller->uri = xstrdup(caller_uri);
    char ruri[300];
    url_e(ruri, sizeof ruri, sip->sip_request->rq_url);
    c->to = xstrdup(ruri);
    c->sip_call_id = xstrdup(callid);
    c->sip_headers = collect_x_headers(sip);

    call_log(c, LOG_INFO, "INVITE from %s (%s, Call-ID %s) for '%s' -> %s%s", src, caller_uri,
             callid, user ? user : "", room ? "room " : "the resolver", room ? room->name : "");

    /* media.srtp (SPEC 11): an offer we cannot take; an offerless INVITE
     * under "require" too (our offer would have to carry a key, and no
     * leg has TLS yet) */
    char swhy[160];
    int srtp_refusal = 0;
    if (ar.has_sdp) {
        srtp_refusal = leg_srtp_check(app, c->caller, offer, swhy, sizeof swhy);
    } else if (cfg->media_srtp == SRTP_REQUIRE && cfg->media_mode == MEDIA_RELAY) {
        snprintf(swhy, sizeof swhy, "offerless INVITE and media.srtp is \"require\"");
        srtp_refusal = 488;
    }
    if (srtp_refusal) {
        call_log(c, LOG_INFO, "INVITE refused 488: %s", swhy);
        call_hangup(c, 488, "Not Acceptable Here");
        b->counters.rejected[REJ_BAD]++;
        return;
    }
    if (ar.has_sdp) {
        if (call_media_setup(app, c, offer->nstreams, why, sizeof why) < 0) {
            call_log(c, LOG_ERROR, "no media ports: %s; refusing 503", why);
            log_security("ports-exhausted", src, c->id, "INVITE refused 503");
            call_hangup(c, 503, "Media Ports Exhausted");
            b->counters.rejected[REJ_NO_PORTS]++;
            return;
        }
        leg_set_neg(c->caller, NEG_OFFER_RECEIVED);
        leg_learn_sdp(c->caller, offer, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    } else {
        c->offerless = true;
    }

    if (ar.resolve) {
        resolver_start(app, c, resolved);
        return;
    }
    dial_room(app, c, room->name, room->uri);
}
