/* b2bua.c - trunk calls bridged to rooms on one nua instance.
 *
 * Every nua event lands in on_event() on the control thread. The handle's
 * magic is the struct leg it belongs to (NULL: not ours, or a new INVITE).
 * A leg's nua handle is destroyed exactly once: in leg_gone(), at
 * nua_i_state terminated, or right after refusing a new INVITE. */
#include "sofia_types.h"

#include "b2bua.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tag_io.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/nta_tag.h>

#include "admit.h"
#include "app.h"
#include "call.h"
#include "config.h"
#include "log.h"
#include "looplag.h"
#include "relay.h"
#include "ratelimit.h"
#include "router.h"
#include "sdp_rewrite.h"
#include "sip_guard.h"
#include "target.h"
#include "leg.h"
#include "refer.h"
#include "resolver.h"
#include "transfer.h"
#include <cjson/cJSON.h>

struct b2bua {
    struct app *app;
    nua_t *nua;
    char host[128]; /* our SIP host, for From of room legs */
    int port;
    void (*shutdown_done)(struct app *);
    bool shut_down; /* nua_r_shutdown reported completion */
    struct ratelimit *rl;
    struct b2bua_counters counters;
};

/* Largest SIP message accepted (over TCP; UDP is capped by the datagram). */
#define SIP_MAX_MESSAGE (128 * 1024)
#define ALLOW "INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REFER, UPDATE"

/* ---- helpers ----------------------------------------------------------- */

static void source_text(nua_t *nua, char *buf, size_t len, struct sockaddr_storage *sa_out)
{
    snprintf(buf, len, "?");
    memset(sa_out, 0, sizeof *sa_out);
    msg_t *msg = nua_current_request(nua);
    su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
    if (!ai || !ai->ai_addr)
        return;
    memcpy(sa_out, ai->ai_addr, ai->ai_addrlen < sizeof *sa_out ? ai->ai_addrlen : sizeof *sa_out);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ai->ai_addr->sa_family == AF_INET) {
        struct sockaddr_in *in = (void *)ai->ai_addr;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (ai->ai_addr->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (void *)ai->ai_addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(buf, len, "%s:%d", host, port);
}

/* Answer a new INVITE with an error and drop its handle. retry_after and
 * accept add those headers when not NULL. */
static void refuse(struct b2bua *b, nua_handle_t *nh, int status, const char *phrase, int kind,
                   const char *retry_after, const char *accept)
{
    nua_respond(nh, status, phrase, TAG_IF(retry_after, SIPTAG_RETRY_AFTER_STR(retry_after)),
                TAG_IF(accept, SIPTAG_ACCEPT_STR(accept)), TAG_END());
    nua_handle_destroy(nh);
    b->counters.rejected[kind]++;
}

/* Relay endpoints for caller and room once the number of streams is known. */
static int call_media_setup(struct b2bua *b, struct call *c, int nstreams, char *err, size_t errlen)
{
    if (!b->app->relay || c->caller->ep)
        return 0;
    if (leg_media_new(b->app, c->caller, nstreams, NULL, err, errlen) < 0)
        return -1;
    if (leg_media_new(b->app, c->room, nstreams, c->caller, err, errlen) < 0)
        return -1; /* the caller's endpoint is freed with the call */
    relay_connect(c->caller->ep, c->room->ep);
    return 0;
}


static void call_hangup(struct call *c, int status, const char *phrase)
{
    c->ended = true;
    leg_hangup(c->caller, status, phrase);
    leg_hangup(c->room, status, phrase);
    leg_hangup(c->target, 487, "Request Terminated");
}

static void call_finish(struct b2bua *b, struct call *c)
{
    struct relay_ep_stats a = {0}, r = {0};
    if (c->caller->ep)
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
        app_event(b->app, "dialin.stopped", p);
    }
    call_free(c);
}

/* The leg's handle is finished: destroy it (the only place for call legs),
 * deal with what that means for the call, free the call once nothing of it
 * is left. */
static void leg_gone(struct b2bua *b, struct leg *leg)
{
    struct call *c = leg->call;
    if (leg->nh) {
        nua_handle_bind(leg->nh, NULL);
        nua_handle_destroy(leg->nh);
        leg->nh = NULL;
    }
    leg->state = LEG_GONE;

    if (leg->detached) {
        /* an old room released by a transfer */
        if (c->xfer && c->xfer->notify_leg == leg)
            c->xfer->notify_leg = NULL;
        for (struct leg **p = &c->zombies; *p; p = &(*p)->znext)
            if (*p == leg) {
                *p = leg->znext;
                break;
            }
        leg_free(leg);
    } else if (leg == c->target) {
        transfer_leg_gone(b->app, leg);
        c->target = NULL;
        leg_free(leg);
    } else {
        bool keep_caller = transfer_leg_gone(b->app, leg);
        if (leg == c->caller)
            leg_hangup(c->target, 487, "Request Terminated");
        struct leg *other = leg_peer(leg);
        if (other && other->state != LEG_GONE && !(keep_caller && other == c->caller)) {
            leg_hangup(other, leg->role == LEG_CALLER ? 487 : 480,
                       leg->role == LEG_CALLER ? "Request Terminated" : "Temporarily Unavailable");
            if (!other->nh)
                other->state = LEG_GONE;
        }
    }
    if (call_is_over(c))
        call_finish(b, c);
}

/* A 2xx to a request we sent mid-call (re-INVITE, session refresh,
 * transfer re-INVITE, UPDATE) carried a Contact or Record-Route sofia
 * cannot send to. The call ends: a re-INVITE the other leg is waiting on
 * gets 500, a running transfer fails, every leg gets BYE. The parser
 * (sip_guard_mclass) kept the bad URI out of the dialog, so this leg's 2xx
 * is ACKed and its BYE goes to the target it had before. Only if the URI
 * did reach nua (no guarded parser) is the dialog quarantined instead:
 * never ACKed or BYEd (see leg_quarantine), the leg treated as gone. */
static void leg_unusable(struct b2bua *b, struct leg *leg, const sip_t *sip, bool ack,
                         const char *what, const char *why)
{
    struct call *c = leg->call;
    struct leg *other = leg_peer(leg);
    bool poisoned = sip_guard_reached_dialog(sip);
    log_security("bad-contact", "-", c->id, "%s from the %s leg refused: %s; %s", what,
                 leg_role_name(leg->role), why, poisoned ? "leg quarantined" : "call ended");
    if (leg->xfer_reinvite && transfer_active(c))
        transfer_fail(b->app, c->xfer, 502, "the caller answered with an unusable Contact");
    leg->reinvite_out = false;
    leg->xfer_reinvite = false;
    if (other && other->nh && other->reinvite_in) {
        /* not 502: mid-dialog that ends the dialog at once (RFC 5057),
         * and nua then drops the BYE that follows */
        other->reinvite_in = false;
        nua_respond(other->nh, 500, "Far End Sent Unusable Contact", TAG_END());
    }
    if (poisoned) {
        leg_quarantine(leg);
        leg_gone(b, leg);
        return;
    }
    if (ack)
        nua_ack(leg->nh, TAG_END());
    if (!leg->detached && !leg->hangup_sent)
        call_hangup(c, 500, "Server Internal Error");
}

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

/* ---- new call ---------------------------------------------------------- */

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

static void incoming_call(struct b2bua *b, nua_t *nua, nua_handle_t *nh, const sip_t *sip)
{
    struct app *app = b->app;
    struct config *cfg = app->cfg;
    char src[80];
    struct sockaddr_storage sa;
    source_text(nua, src, sizeof src, &sa);
    const char *callid = sip && sip->sip_call_id ? sip->sip_call_id->i_id : "?";

    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct admit_input in = {
        .cfg = cfg,
        .source = (struct sockaddr *)&sa,
        .sip = sip,
        .calls = call_count(),
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
    const struct trunk_cfg *trunk = ar.trunk;
    const struct room_cfg *room = ar.room;
    bool resolve = ar.resolve;
    unsigned hops = ar.hops;
    bool has_sdp = ar.has_sdp;
    const struct sdpx_info *offer = &ar.offer;
    char why[80];

    struct call *c = call_new(cfg->node);
    c->caller = leg_new(c, LEG_CALLER);
    c->room = leg_new(c, LEG_ROOM);
    c->caller->far = FAR_TRUNK;
    c->room->far = FAR_ROOM; /* a configured room, or the one the resolver names */
    c->caller->nh = nh;
    c->caller->state = LEG_EARLY;
    c->max_forwards = hops - 1;
    leg_media_from_sip(c->caller, (struct sockaddr *)&sa);
    leg_media_from_trunk(c->caller, trunk);
    nua_handle_bind(nh, c->caller);
    b->counters.calls_total++;

    const sip_from_t *from = sip->sip_from;
    char fromtext[512];
    const char *fuser = from && from->a_url->url_user ? from->a_url->url_user : "anonymous";
    if (from && from->a_display && *from->a_display)
        snprintf(fromtext, sizeof fromtext, "%s <sip:%s@%s>", from->a_display, fuser, b->host);
    else
        snprintf(fromtext, sizeof fromtext, "<sip:%s@%s>", fuser, b->host);
    char caller_uri[300];
    if (from)
        url_e(caller_uri, sizeof caller_uri, from->a_url);
    else
        snprintf(caller_uri, sizeof caller_uri, "?");
    c->from = strdup(caller_uri);
    c->from_hdr = strdup(fromtext);
    c->caller->uri = strdup(caller_uri);
    char ruri[300];
    url_e(ruri, sizeof ruri, sip->sip_request->rq_url);
    c->to = strdup(ruri);
    c->sip_call_id = strdup(callid);
    c->sip_headers = collect_x_headers(sip);

    call_log(c, LOG_INFO, "INVITE from %s (%s, Call-ID %s) for '%s' -> %s%s", src, caller_uri,
             callid, user ? user : "", room ? "room " : "the resolver", room ? room->name : "");

    if (has_sdp) {
        if (call_media_setup(b, c, offer->nstreams, why, sizeof why) < 0) {
            call_log(c, LOG_ERROR, "no media ports: %s; refusing 503", why);
            log_security("ports-exhausted", src, c->id, "INVITE refused 503");
            leg_hangup(c->caller, 503, "Media Ports Exhausted");
            c->room->state = LEG_GONE;
            b->counters.rejected[REJ_NO_PORTS]++;
            return;
        }
        leg_learn_sdp(c->caller, offer, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    } else {
        c->offerless = true;
    }

    if (resolve) {
        resolver_start(app, c);
        return;
    }
    b2bua_dial_room(b, c, room->name, room->uri);
}

/* nta gives a room that never answers 408 after 64*T1, but a room named by
 * a host whose DNS never answers waits in sofia's resolver for a minute or
 * more (its retries of A and AAAA): the leg is given up when nothing at all,
 * not even 100 Trying, came back in rooms.response_timeout seconds. */
static void room_no_response(struct app *app, su_timer_t *t, void *arg)
{
    struct leg *room = arg;
    struct call *c = room->call;
    if (room->state != LEG_EARLY || room->hangup_sent || c->room != room)
        return;
    call_log(c, LOG_WARN, "room %s: no response in %d s (its host does not resolve or does not "
             "answer): giving up", room->uri ? room->uri : "?", app->cfg->room_response_timeout);
    call_hangup(c, 408, "Request Timeout");
}

static void room_watch_response(struct app *app, struct leg *room)
{
    if (!room->response_timer)
        room->response_timer = su_timer_create(su_root_task(app->root), 0);
    if (room->response_timer)
        su_timer_set_interval(room->response_timer, room_no_response, room,
                              (su_duration_t)app->cfg->room_response_timeout * 1000);
}

void b2bua_dial_room(struct b2bua *b, struct call *c, const char *room_name, const char *room_uri)
{
    free(c->room_name);
    c->room_name = strdup(room_name);
    free(c->room_uri);
    c->room_uri = strdup(room_uri);
    free(c->room->uri);
    c->room->uri = strdup(room_uri);

    char *body = NULL;
    if (!c->offerless) {
        body = leg_sdp_for(b->app, c->room, c->caller->sdp_in, strlen(c->caller->sdp_in));
        if (!body) {
            leg_hangup(c->caller, 488, "Not Acceptable Here");
            c->room->state = LEG_GONE;
            return;
        }
    }

    char sid_header[160];
    snprintf(sid_header, sizeof sid_header, "X-Session-Id: %s", c->id);
    char to[600];
    c->room->nh = target_name_addr(room_uri, to, sizeof to) < 0
                      ? NULL
                      : nua_handle(b->nua, c->room, NUTAG_URL(room_uri), SIPTAG_TO_STR(to),
                                   SIPTAG_FROM_STR(c->from_hdr), TAG_END());
    if (!c->room->nh) {
        call_log(c, LOG_ERROR, "cannot create the room leg to %s", room_uri);
        leg_hangup(c->caller, 500, "Server Internal Error");
        c->room->state = LEG_GONE;
        return;
    }
    c->room->state = LEG_EARLY;
    leg_media_from_trunk(c->room, router_trunk_for_uri(b->app->cfg, room_uri));
    char hops[16];
    snprintf(hops, sizeof hops, "%u", c->max_forwards);
    nua_invite(c->room->nh, SIPTAG_HEADER_STR(sid_header), SIPTAG_MAX_FORWARDS_STR(hops),
               TAG_IF(body, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
               TAG_IF(body, SIPTAG_PAYLOAD_STR(body)), TAG_END());
    room_watch_response(b->app, c->room);
}

void b2bua_refuse_call(struct b2bua *b, struct call *c, int status, const char *phrase)
{
    (void)b;
    c->ended = true;
    leg_hangup(c->caller, status, phrase);
    if (!c->room->nh)
        c->room->state = LEG_GONE;
}

/* ---- responses on the room leg ---------------------------------------- */

static void room_setup_response(struct b2bua *b, struct leg *room, int status, const char *phrase,
                                const sip_t *sip)
{
    struct call *c = room->call;
    struct leg *caller = c->caller;
    char why[80];

    su_timer_reset(room->response_timer);
    if (status < 200) {
        if (status == 100 || !caller->nh || caller->state != LEG_EARLY || caller->hangup_sent)
            return;
        if (sip && sip->sip_to && sip->sip_to->a_tag &&
            !sip_guard_dialog_ok(sip, false, why, sizeof why)) {
            log_security("bad-contact", "-", c->id, "room %d refused: %s", status, why);
            call_hangup(c, 502, "Bad Gateway");
            return;
        }
        if (sip_has_sdp(sip) && !c->offerless) {
            struct sdpx_info info;
            int rc = sdpx_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len, &info, why,
                                sizeof why);
            if (rc == SDPX_TOO_LARGE || rc == SDPX_TOO_COMPLEX) {
                /* early media we cannot relay; the 2xx would carry the same */
                call_log(c, LOG_WARN, "room's %d refused: %s", status, why);
                call_hangup(c, 502, "Bad Gateway");
                return;
            }
            if (rc == 0) {
                leg_learn_sdp(room, &info, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
                char *body = leg_sdp_for(b->app, caller, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
                if (body) {
                    nua_respond(caller->nh, status, leg_phrase(caller->nh, phrase),
                                SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                                SIPTAG_PAYLOAD_STR(body), TAG_END());
                    return;
                }
            }
        }
        nua_respond(caller->nh, status, leg_phrase(caller->nh, phrase), TAG_END());
        return;
    }

    if (status >= 300) {
        const char *mapped_phrase = phrase;
        int mapped = map_room_failure(status, &mapped_phrase);
        call_log(c, LOG_INFO, "room answered %d %s", status, phrase);
        room->hangup_sent = true; /* the INVITE transaction is over */
        room->state = LEG_ENDING;
        leg_hangup(caller, mapped, mapped_phrase);
        return;
    }

    /* 2xx */
    room->state = LEG_ANSWERED;
    room->ack_pending = true;
    if (!sip_guard_dialog_ok(sip, true, why, sizeof why)) {
        /* Never let nua send ACK or BYE to that target (sofia guide
         * section 0): forget the handle's dialog by destroying it. */
        log_security("bad-contact", "-", c->id, "room 2xx refused: %s; leg quarantined", why);
        leg_quarantine(room);
        leg_hangup(caller, 502, "Bad Gateway");
        return;
    }
    if (caller->state != LEG_EARLY || caller->hangup_sent || !caller->nh) {
        /* The caller went away while the room was answering. */
        call_log(c, LOG_INFO, "room answered after the caller left: ACK and BYE");
        leg_hangup(room, 487, "Request Terminated");
        return;
    }

    const char *body = NULL;
    if (sip_has_sdp(sip)) {
        struct sdpx_info info;
        if (sdpx_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len, &info, why,
                       sizeof why) < 0) {
            call_log(c, LOG_WARN, "room answered with bad SDP: %s", why);
            call_hangup(c, 502, "Bad Gateway");
            return;
        }
        if (c->offerless && call_media_setup(b, c, info.nstreams, why, sizeof why) < 0) {
            call_log(c, LOG_ERROR, "no media ports: %s", why);
            call_hangup(c, 503, "Media Ports Exhausted");
            return;
        }
        leg_learn_sdp(room, &info, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
        body = leg_sdp_for(b->app, caller, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
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

    if (!c->offerless) {
        room->ack_pending = false;
        nua_ack(room->nh, TAG_END());
        /* our ACK is on its way: the dialog is confirmed for us now, not
         * only when nua reports it (a transfer may start at once) */
        room->state = LEG_CONFIRMED;
    } else {
        caller->offer_in_ack = true; /* room's ACK waits for the caller's answer */
    }
    caller->state = LEG_ANSWERED;
    b->counters.calls_answered++;
    c->connected_event = true;
    {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "session_id", c->id);
        cJSON_AddStringToObject(p, "sessionId", c->id);
        cJSON_AddStringToObject(p, "room", c->room_name);
        cJSON_AddStringToObject(p, "from", c->from);
        cJSON_AddStringToObject(p, "to", c->to);
        cJSON_AddStringToObject(p, "call_id", c->sip_call_id ? c->sip_call_id : "");
        app_event(b->app, "dialin.connected", p);
    }
    call_log(c, LOG_INFO, "room answered %d; bridging", status);
    nua_respond(caller->nh, 200, "OK", SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                SIPTAG_PAYLOAD_STR(body), TAG_END());
}

/* ---- re-INVITE / UPDATE / ACK ----------------------------------------- */

static void reinvite_in(struct b2bua *b, nua_t *nua, struct leg *leg, const sip_t *sip)
{
    struct call *c = leg->call;
    struct leg *other = leg_peer(leg);
    char why[80];

    if (!sip_guard_dialog_ok(sip, false, why, sizeof why)) {
        char src[80];
        struct sockaddr_storage sa;
        source_text(nua, src, sizeof src, &sa);
        log_security("bad-contact", src, c->id, "re-INVITE refused 400: %s", why);
        nua_respond(leg->nh, 400, "Bad Contact", TAG_END());
        return;
    }
    if (!other || !other->nh || other->state != LEG_CONFIRMED || leg->state != LEG_CONFIRMED ||
        leg->reinvite_in || leg->reinvite_out || other->reinvite_in || other->reinvite_out) {
        nua_respond(leg->nh, 491, "Request Pending", TAG_END());
        return;
    }
    if (!sip_has_sdp(sip)) {
        /* Offerless re-INVITE: offer what this leg already has; its
         * answer arrives in the ACK. */
        if (!leg->sdp_out) {
            nua_respond(leg->nh, 488, "Not Acceptable Here", TAG_END());
            return;
        }
        leg->offer_in_ack = true;
        nua_respond(leg->nh, 200, "OK", SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                    SIPTAG_PAYLOAD_STR(leg->sdp_out), TAG_END());
        return;
    }
    struct sdpx_info info;
    int rc = sdpx_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len, &info, why, sizeof why);
    if (rc < 0) {
        const char *phrase;
        int status = sdpx_refusal(rc, &phrase);
        call_log(c, LOG_INFO, "re-INVITE refused %d: %s", status, why);
        nua_respond(leg->nh, status, phrase, TAG_END());
        return;
    }
    if (leg->have_in_version && info.o_id == leg->in_o_id &&
        info.o_version == leg->in_o_version && leg->sdp_out) {
        /* Same description (a session refresh): answer here, unchanged. */
        nua_respond(leg->nh, 200, "OK", SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                    SIPTAG_PAYLOAD_STR(leg->sdp_out), TAG_END());
        return;
    }
    leg_learn_sdp(leg, &info, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    char *body = leg_sdp_for(b->app, other, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    if (!body) {
        nua_respond(leg->nh, 488, "Not Acceptable Here", TAG_END());
        return;
    }
    call_log(c, LOG_INFO, "re-INVITE from the %s leg forwarded", leg_role_name(leg->role));
    leg->reinvite_in = true;
    other->reinvite_out = true;
    nua_invite(other->nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(body),
               TAG_END());
}

static void reinvite_response(struct b2bua *b, struct leg *leg, int status, const char *phrase,
                              const sip_t *sip)
{
    struct call *c = leg->call;
    struct leg *from = leg_peer(leg);
    char why[80];

    if (status < 200)
        return;
    leg->reinvite_out = false;
    if (status >= 300) {
        if (status >= 200 && from && from->nh && from->reinvite_in) {
            from->reinvite_in = false;
            nua_respond(from->nh, status == 491 ? 491 : status < 700 ? status : 500,
                        status < 700 ? leg_phrase(from->nh, phrase) : "Server Internal Error",
                        TAG_END());
        }
        if (status == 408 || status == 481) {
            call_log(c, LOG_INFO, "re-INVITE to the %s leg failed %d: ending the call",
                     leg_role_name(leg->role), status);
            call_hangup(c, 500, "Server Internal Error");
        }
        return;
    }
    nua_ack(leg->nh, TAG_END());
    if (!from || !from->nh || !from->reinvite_in)
        return;
    from->reinvite_in = false;
    struct sdpx_info info;
    if (!sip_has_sdp(sip) ||
        sdpx_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len, &info, why, sizeof why) <
            0) {
        nua_respond(from->nh, 488, "Not Acceptable Here", TAG_END());
        return;
    }
    leg_learn_sdp(leg, &info, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    char *body = leg_sdp_for(b->app, from, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    if (!body) {
        nua_respond(from->nh, 488, "Not Acceptable Here", TAG_END());
        return;
    }
    nua_respond(from->nh, 200, "OK", SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                SIPTAG_PAYLOAD_STR(body), TAG_END());
}

static void ack_in(struct b2bua *b, struct leg *leg, const sip_t *sip)
{
    struct call *c = leg->call;
    if (leg->state == LEG_ANSWERED)
        leg->state = LEG_CONFIRMED;
    if (!leg->offer_in_ack)
        return;
    leg->offer_in_ack = false;
    char why[80];
    struct sdpx_info info;
    bool ok = sip_has_sdp(sip) && sdpx_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len,
                                        &info, why, sizeof why) == 0;
    if (ok)
        leg_learn_sdp(leg, &info, sip->sip_payload->pl_data, sip->sip_payload->pl_len);

    /* Initial offerless call: the room still waits for our ACK with the
     * caller's answer. */
    struct leg *room = c->room;
    if (leg == c->caller && c->offerless && room->ack_pending && room->nh) {
        room->ack_pending = false;
        char *body = ok ? leg_sdp_for(b->app, room, sip->sip_payload->pl_data, sip->sip_payload->pl_len)
                        : NULL;
        if (!body) {
            call_log(c, LOG_WARN, "caller's ACK carried no usable SDP answer");
            nua_ack(room->nh, TAG_END());
            call_hangup(c, 488, "Not Acceptable Here");
            return;
        }
        nua_ack(room->nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(body),
                TAG_END());
        if (room->state == LEG_ANSWERED)
            room->state = LEG_CONFIRMED;
    }
}

static void update_in(struct b2bua *b, nua_t *nua, struct leg *leg, const sip_t *sip)
{
    char why[80];
    if (!sip_guard_dialog_ok(sip, false, why, sizeof why)) {
        nua_respond(leg->nh, 400, "Bad Contact", NUTAG_WITH_THIS(nua), TAG_END());
        return;
    }
    if (!sip_has_sdp(sip)) {
        /* Session refresh: nua adds the Session-Expires it negotiated. */
        nua_respond(leg->nh, 200, "OK", NUTAG_WITH_THIS(nua), TAG_END());
        return;
    }
    /* An UPDATE offer: the relay keeps our side where it is, so the answer
     * is what this leg already has; learn where the peer now receives. */
    struct sdpx_info info;
    int rc = leg->sdp_out ? sdpx_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len, &info,
                                       why, sizeof why)
                          : SDPX_BAD;
    if (rc < 0) {
        const char *phrase;
        int status = sdpx_refusal(rc, &phrase);
        nua_respond(leg->nh, status, phrase, NUTAG_WITH_THIS(nua), TAG_END());
        return;
    }
    if (leg->ep)
        leg_learn_sdp(leg, &info, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    nua_respond(leg->nh, 200, "OK", NUTAG_WITH_THIS(nua),
                SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(leg->sdp_out),
                TAG_END());
}

/* ---- dispatch ---------------------------------------------------------- */

/* A room's or target's media may come from where its SIP answers came from
 * (SPEC section 9), as well as from its SDP address. */
static void note_response_source(nua_t *nua, struct leg *leg)
{
    if (leg->role == LEG_CALLER)
        return;
    char src[80];
    struct sockaddr_storage sa;
    source_text(nua, src, sizeof src, &sa);
    leg_media_from_sip(leg, (struct sockaddr *)&sa);
}

static void leg_callstate(struct b2bua *b, struct leg *leg, tagi_t tags[])
{
    int cs = -1;
    tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
    if (cs == nua_callstate_ready && leg->state == LEG_ANSWERED) {
        leg->state = LEG_CONFIRMED;
    } else if (cs == nua_callstate_terminated) {
        call_log(leg->call, LOG_DEBUG, "%s leg terminated", leg_role_name(leg->role));
        leg_gone(b, leg);
    }
}

static void dispatch(nua_event_t event, int status, char const *phrase, nua_t *nua,
                     struct app *app, nua_handle_t *nh, struct leg *leg, sip_t const *sip,
                     tagi_t tags[])
{
    struct b2bua *b = app->b2bua;
    char why[80];

    if (leg_is_quarantine_sentinel(leg))
        return;
    if (log_get_level() >= LOG_DEBUG)
        log_msg(LOG_DEBUG, leg ? leg->call->id : NULL, "nua event %s %d %s", nua_event_name(event),
                status, phrase ? phrase : "");

    switch (event) {
    case nua_i_invite:
        if (!leg)
            incoming_call(b, nua, nh, sip);
        else
            reinvite_in(b, nua, leg, sip);
        return;

    case nua_r_invite:
        if (!leg)
            return;
        if (status > 100 && status < 300)
            note_response_source(nua, leg);
        /* Set-up answers (EARLY) are checked where they are handled; the
         * Contact is optional in a 2xx that only refreshes a dialog. */
        if (status >= 200 && status < 300 && leg->state != LEG_EARLY && leg->nh &&
            !sip_guard_dialog_ok(sip, false, why, sizeof why)) {
            leg_unusable(b, leg, sip, true, leg->reinvite_out ? "re-INVITE 2xx" : "2xx", why);
            return;
        }
        if (leg->reinvite_out && leg->xfer_reinvite) {
            transfer_caller_reinvite_response(app, leg, status, phrase, sip);
        } else if (leg->reinvite_out) {
            reinvite_response(b, leg, status, phrase, sip);
        } else if (leg == leg->call->target && leg->state == LEG_EARLY) {
            transfer_target_response(app, leg, status, phrase, sip);
        } else if (leg->role == LEG_ROOM && leg->state == LEG_EARLY && !leg->detached) {
            room_setup_response(b, leg, status, phrase, sip);
        } else if (status >= 200 && status < 300 && leg->nh) {
            /* A 2xx to an INVITE nua sent by itself (session refresh). */
            nua_ack(leg->nh, TAG_END());
        }
        return;

    case nua_i_ack:
        if (leg)
            ack_in(b, leg, sip);
        return;

    case nua_i_cancel:
        if (leg) {
            call_log(leg->call, LOG_INFO, "caller cancelled");
            leg->hangup_sent = true; /* nua already answered 487 */
            leg->state = LEG_ENDING;
            leg_hangup(leg_peer(leg), 487, "Request Terminated");
        }
        return;

    case nua_i_bye:
        if (leg) {
            call_log(leg->call, LOG_INFO, "BYE from the %s leg", leg_role_name(leg->role));
            leg->hangup_sent = true;
            leg->state = LEG_ENDING;
            /* A room leaving while a transfer rings keeps the caller for
             * the target (transfer_leg_gone decides when the leg is gone). */
            if (!(leg == leg->call->room && transfer_active(leg->call))) {
                struct call *c = leg->call;
                if (!c->end_reason && (leg == c->caller || leg == c->room))
                    c->end_reason = leg == c->caller ? "caller-hangup" : "room-hangup";
                leg_hangup(leg_peer(leg), 200, "OK");
            }
        }
        return;

    case nua_i_update:
        if (leg && leg->nh)
            update_in(b, nua, leg, sip);
        else if (nh)
            nua_respond(nh, 481, "Call Does Not Exist", NUTAG_WITH_THIS(nua), TAG_END());
        return;

    case nua_i_refer:
        /* REFER is in appl_method: nua waits for our answer, so nothing is
         * accepted before the policy check. Only a room may ask. */
        if (leg && leg->nh && leg == leg->call->room && leg->far == FAR_ROOM && !leg->detached &&
            leg->state == LEG_CONFIRMED) {
            if (!sip_guard_dialog_ok(sip, false, why, sizeof why)) {
                log_security("bad-contact", "-", leg->call->id, "room REFER refused 400: %s", why);
                nua_respond(nh, 400, "Bad Contact", NUTAG_WITH_THIS(nua), TAG_END());
                return;
            }
            refer_from_room(app, nua, leg, sip, tags);
        } else if (nh) {
            char src[80];
            struct sockaddr_storage sa;
            source_text(nua, src, sizeof src, &sa);
            /* a transfer target stays what it was (a PSTN gateway, an
             * outside URI) after commit() makes it the call's room leg */
            log_security("refer-refused", src, leg ? leg->call->id : NULL,
                         "REFER on a %s leg (far end: %s) refused 403",
                         leg ? leg_role_name(leg->role) : "stray",
                         leg ? leg_far_name(leg->far) : "none");
            nua_respond(nh, 403, leg && leg->role == LEG_ROOM ? "Only Rooms May Transfer" : "Forbidden",
                        NUTAG_WITH_THIS(nua), TAG_END());
            if (!leg)
                nua_handle_destroy(nh);
        }
        return;

    case nua_r_refer:
        if (leg && leg == leg->call->caller)
            refer_response(app, leg, status, phrase, sip, tags);
        return;

    case nua_i_notify:
        if (leg && leg == leg->call->caller)
            refer_notify_in(app, leg, sip, tags);
        else if (nh && !leg)
            nua_handle_destroy(nh);
        return;

    case nua_i_state:
        if (leg)
            leg_callstate(b, leg, tags);
        else if (nh) {
            int cs = -1;
            tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
            if (cs == nua_callstate_terminated)
                nua_handle_destroy(nh);
        }
        return;

    case nua_r_shutdown:
        if (status >= 200)
            b->shut_down = true;
        if (status >= 200 && b->shutdown_done)
            b->shutdown_done(app);
        return;

    case nua_r_update:
        /* only nua sends UPDATE (session refresh) */
        if (leg && leg->nh && status >= 200 && status < 300 &&
            !sip_guard_dialog_ok(sip, false, why, sizeof why))
            leg_unusable(b, leg, sip, false, "UPDATE 2xx", why);
        return;

    case nua_r_bye:
    case nua_r_cancel:
    case nua_r_ack:
    case nua_i_active:
    case nua_i_terminated:
    case nua_i_prack:
    case nua_i_media_error:
        return;

    case nua_i_register:
    case nua_i_subscribe:
    case nua_i_publish:
    case nua_i_message:
        if (nh && !leg) {
            nua_respond(nh, 405, "Method Not Allowed", SIPTAG_ALLOW_STR(ALLOW),
                        NUTAG_WITH_THIS(nua), TAG_END());
            nua_handle_destroy(nh);
        }
        return;

    default:
        /* OPTIONS, NOTIFY, INFO...: nua has answered. Stray handles are
         * never bound to a leg and must be destroyed here. */
        if (nh && !leg)
            nua_handle_destroy(nh);
        return;
    }
}

static void on_event(nua_event_t event, int status, char const *phrase, nua_t *nua,
                     struct app *app, nua_handle_t *nh, struct leg *leg, sip_t const *sip,
                     tagi_t tags[])
{
    struct looplag_mark m;
    looplag_begin(&m, "SIP", nua_event_name(event), NULL);
    dispatch(event, status, phrase, nua, app, nh, leg, sip, tags);
    looplag_end(&m);
}

/* ---- lifecycle --------------------------------------------------------- */

struct b2bua *b2bua_create(struct app *app, char *err, size_t errlen)
{
    struct b2bua *b = calloc(1, sizeof *b);
    b->app = app;
    b->rl = ratelimit_create(8192);
    app->b2bua = b;
    if (config_sip_hostport(app->cfg, b->host, sizeof b->host, &b->port) < 0) {
        snprintf(err, errlen, "bad sip.listen \"%s\"", app->cfg->sip_listen);
        ratelimit_destroy(b->rl);
        free(b);
        app->b2bua = NULL;
        return NULL;
    }

    app->sip_port = b->port;
    snprintf(app->sip_host, sizeof app->sip_host, "%s", b->host);
    /* sofia's SIP parser with a tolerant Via (sip_guard.h); sofia's own if
     * that cannot be built */
    msg_mclass_t const *mclass = sip_guard_mclass();
    b->nua = nua_create(app->root, on_event, app, NUTAG_URL(app->cfg->sip_listen),
                        NUTAG_MEDIA_ENABLE(0), NUTAG_AUTOANSWER(0), NUTAG_AUTOALERT(0),
                        NUTAG_AUTOACK(0), NUTAG_AUTO302(0), NUTAG_AUTO100(1),
                        NUTAG_APPL_METHOD("INVITE"), NUTAG_APPL_METHOD("UPDATE"),
                        NUTAG_APPL_METHOD("REFER"), SIPTAG_SUPPORTED_STR("timer"),
                        SIPTAG_ALLOW_STR(ALLOW), SIPTAG_USER_AGENT_STR("sipxfer/" SIPXFER_VERSION),
                        NUTAG_SESSION_TIMER(1800), NUTAG_MIN_SE(90), NUTAG_UPDATE_REFRESH(1),
                        NTATAG_UDP_MTU(65535), NTATAG_SERVER_RPORT(1), NTATAG_CLIENT_RPORT(1),
                        NTATAG_USE_NAPTR(0), NTATAG_USE_SRV(0), TPTAG_UDP_RMEM(4 * 1024 * 1024),
                        TPTAG_UDP_WMEM(4 * 1024 * 1024),
                        /* a TCP peer stalled inside a message is dropped
                         * (silent ones are tcp_guard.c's) */
                        TPTAG_TIMEOUT((unsigned)app->cfg->tcp_idle_timeout * 1000u),
                        /* a message may claim any Content-Length: sofia sizes
                         * its receive buffer by it, up to this cap */
                        NTATAG_MAXSIZE(SIP_MAX_MESSAGE),
                        TAG_IF(mclass, NTATAG_MCLASS(mclass)), TAG_END());
    if (!b->nua) {
        snprintf(err, errlen, "cannot listen on %s (UDP and TCP): address in use or not local?",
                 app->cfg->sip_listen);
        ratelimit_destroy(b->rl);
        free(b);
        app->b2bua = NULL;
        return NULL;
    }
    app->nua = b->nua;
    return b;
}

void b2bua_hangup_all(struct b2bua *b, int status, const char *phrase)
{
    for (struct call *c = call_first(); c; c = c->next) {
        if (!c->end_reason)
            c->end_reason = "drain";
        call_hangup(c, status, phrase);
    }
}

void b2bua_hangup_call(struct b2bua *b, struct call *c, int status, const char *phrase)
{
    call_hangup(c, status, phrase);
}

void b2bua_shutdown(struct b2bua *b, void (*done)(struct app *app))
{
    b->shutdown_done = done;
    if (leg_quarantined_count()) {
        log_warn("%lu quarantined SIP dialog(s): skipping nua_shutdown", leg_quarantined_count());
        done(b->app);
        return;
    }
    nua_shutdown(b->nua);
}

void b2bua_destroy(struct b2bua *b)
{
    if (!b)
        return;
    /* Calls still in the table had their handles torn down by nua_shutdown. */
    while (call_first()) {
        struct call *c = call_first();
        if (c->caller)
            c->caller->nh = NULL;
        if (c->room)
            c->room->nh = NULL;
        call_free(c);
    }
    /* nua_destroy() asserts unless nua_shutdown has completed, and on a
     * stack with live (quarantined) dialogs. A start-up failure (say, the
     * API port is taken) gets here without a shutdown: do it now. */
    if (b->nua && !leg_quarantined_count()) {
        if (!b->shut_down) {
            b->shutdown_done = NULL;
            nua_shutdown(b->nua);
            for (int i = 0; i < 100 && !b->shut_down; i++)
                su_root_step(b->app->root, 50);
        }
        if (b->shut_down)
            nua_destroy(b->nua);
    }
    ratelimit_destroy(b->rl);
    free(b);
}

void b2bua_counters(const struct b2bua *b, struct b2bua_counters *out) { *out = b->counters; }
