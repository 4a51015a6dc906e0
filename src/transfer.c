/* transfer.c - sipCallTransfer and what both modes share: see transfer.h
 * for the flow. The target leg is driven by the leg layer, which reports
 * to target_ops below; sipRefer is in transfer_refer.c. */
#include "sofia_types.h"

#include "transfer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>

#include "app.h"
#include "events.h"
#include "call.h"
#include "config.h"
#include "dtmf.h"
#include "gateway.h"
#include "identity.h"
#include "leg.h"
#include "log.h"
#include "random.h"
#include "relay.h"
#include "refer.h"
#include "router.h"
#include "cluster.h"
#include "looplag.h"
#include "xalloc.h"

static const char *const state_names[] = {"ringing", "answered", "completed", "failed"};

/* ---- events ------------------------------------------------------------ */

_Static_assert(XFER_NOUTCOMES == 3, "app_stats.transfers has room for three outcomes");

void transfer_emit(struct app *app, struct transfer *x, const char *type)
{
    if (strcmp(type, "calltransfer.triggered") == 0)
        app->stats.transfers[x->mode][XFER_STARTED]++;
    else if (strcmp(type, "calltransfer.completed") == 0)
        app->stats.transfers[x->mode][XFER_DONE]++;
    else if (strcmp(type, "calltransfer.failed") == 0)
        app->stats.transfers[x->mode][XFER_FAILED_OUTCOME]++;
    struct call *c = x->call;
    cJSON *p = cJSON_CreateObject();
    char ts[32];
    snprintf(ts, sizeof ts, "%ld", (long)time(NULL));
    cJSON_AddStringToObject(p, "room", x->from_room);
    cJSON_AddStringToObject(p, "session_id", c->id);
    cJSON_AddStringToObject(p, "transfer_id", x->id);
    cJSON_AddStringToObject(p, "to_endpoint", x->to_endpoint);
    cJSON_AddStringToObject(p, "from_endpoint", x->from_endpoint);
    cJSON_AddBoolToObject(p, "is_sip_refer", x->mode == XFER_REFER);
    cJSON_AddStringToObject(p, "timestamp", ts);
    if (x->state == XFER_FAILED) {
        cJSON_AddNumberToObject(p, "sip_status", x->sip_status);
        cJSON_AddStringToObject(p, "reason", x->reason);
    }
    events_post(app, type, p);
}

/* ---- helpers ----------------------------------------------------------- */

bool transfer_active(const struct call *c)
{
    return c->xfer && (c->xfer->state == XFER_RINGING || c->xfer->state == XFER_ANSWERED);
}

void transfer_free(struct transfer *x)
{
    if (!x)
        return;
    if (x->timer)
        su_timer_destroy(x->timer);
    free(x->to_endpoint);
    for (size_t i = 0; i < x->gw_n; i++)
        free(x->gw_uris[i]);
    free(x->gw_uris);
    free(x->gw_trunk);
    free(x);
}

struct cJSON *transfer_json(const struct transfer *x)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "transferId", x->id);
    cJSON_AddStringToObject(j, "mode", x->mode == XFER_REFER ? "sipRefer" : "sipCallTransfer");
    cJSON_AddStringToObject(j, "toEndPoint", x->to_endpoint);
    cJSON_AddStringToObject(j, "state", state_names[x->state]);
    if (x->sip_status)
        cJSON_AddNumberToObject(j, "sipStatus", x->sip_status);
    else
        cJSON_AddNullToObject(j, "sipStatus");
    if (x->reason[0])
        cJSON_AddStringToObject(j, "reason", x->reason);
    cJSON_AddNumberToObject(j, "startedAt", (double)x->started);
    return j;
}

static void stop_timer(struct transfer *x)
{
    if (x->timer)
        su_timer_reset(x->timer);
}

/* The transfer is over without moving the call. The caller stays with the
 * room (or, if the room went away meanwhile, is hung up: nothing to return
 * to). */
void transfer_fail(struct app *app, struct transfer *x, int status, const char *reason)
{
    struct call *c = x->call;
    if (!transfer_active(c))
        return;
    stop_timer(x);
    x->state = XFER_FAILED;
    x->sip_status = status;
    x->ended = time(NULL);
    snprintf(x->reason, sizeof x->reason, "%s", reason);
    call_log(c, LOG_INFO, "transfer %s to %s failed: %d %s", x->id, x->to_endpoint, status, reason);
    if (c->target) {
        leg_hangup(c->target, 487, "Request Terminated");
        /* the target leg is freed when nua reports it terminated */
    }
    if (c->caller->ep && c->room && c->room->ep && c->room->state != LEG_GONE)
        relay_connect(c->caller->ep, c->room->ep);
    transfer_notify_room(x, status, reason, true);
    transfer_emit(app, x, "calltransfer.failed");
    if ((!c->room || c->room->state == LEG_GONE || c->room->hangup_sent) && !c->ended) {
        call_log(c, LOG_INFO, "the room left during the transfer: ending the call");
        call_hangup(c, 480, "Temporarily Unavailable");
    }
}

void transfer_notify_room(struct transfer *x, int status, const char *phrase, bool final)
{
    if (!x->notify_leg)
        return;
    refer_notify_send(x->notify_leg, x->notify_event, status, phrase, final);
    if (final)
        x->notify_leg = NULL;
}

static void on_timer(struct app *app, su_timer_t *t, void *arg)
{
    struct transfer *x = arg;
    if (x->state != XFER_RINGING)
        return;
    struct looplag_mark m;
    looplag_begin(&m, "timer", "transfer", NULL);
    if (x->mode == XFER_REFER)
        transfer_fail(app, x, 408, "no final NOTIFY within notify_timeout");
    else
        transfer_fail(app, x, 408, "ring timeout");
    looplag_end(&m);
}

void transfer_arm_timer(struct app *app, struct transfer *x, int seconds)
{
    su_timer_set_interval(x->timer, on_timer, x, (su_duration_t)seconds * 1000);
}

void transfer_succeed(struct app *app, struct transfer *x)
{
    if (!transfer_active(x->call))
        return;
    stop_timer(x);
    x->state = XFER_COMPLETED;
    x->ended = time(NULL);
    x->call->transfers++;
    call_log(x->call, LOG_INFO, "transfer %s to %s completed", x->id, x->to_endpoint);
    transfer_emit(app, x, "calltransfer.completed");
}

/* ---- start ------------------------------------------------------------- */

static void make_id(char *out, size_t len)
{
    unsigned char b[12];
    random_bytes(b, sizeof b);
    snprintf(out, len, "xfer-%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]);
}

/* The transfer is refused before it started: HTTP-style conflicts are
 * "come back later" (503) for webhook consumers, the rest our failure. */
static int refused_status(enum transfer_error err)
{
    switch (err) {
    case XFER_E_RUNNING:
    case XFER_E_NOT_CONNECTED:
    case XFER_E_NO_MEDIA:
    case XFER_E_NO_PORTS:
        return 503;
    default:
        return 500;
    }
}

/* sipRefer to a number: the caller's side dials it, through the caller's
 * own carrier, so the Refer-To is written for the trunk the call came in
 * on: <tel:+E164> (refer_target "tel"; Twilio refuses sip:+E164@ip) or
 * <sip:+E164@gateway;user=phone> ("sip"). A call from no trunk keeps the
 * number's routed trunk. */
static int refer_number(const struct config *cfg, const struct call *c, struct target *t,
                        char *info, size_t infolen)
{
    const struct trunk_cfg *trunk = c->trunk[0] ? config_trunk_by_name(cfg, c->trunk) : NULL;
    if (!trunk)
        trunk = config_trunk_by_name(cfg, t->trunk);
    if (!trunk)
        return 0;
    t->route[0] = '\0';
    snprintf(t->trunk, sizeof t->trunk, "%s", trunk->name);
    if (trunk->refer_target == REFER_TARGET_TEL) {
        snprintf(t->uri, sizeof t->uri, "tel:%s", t->number);
        return 0;
    }
    if (!trunk->gateway || target_pstn_uri(trunk->gateway, t->number, t->uri, sizeof t->uri) < 0) {
        snprintf(info, infolen, "trunk %s has no gateway to name in a Refer-To for %s",
                 trunk->name, t->number);
        return -1;
    }
    return 0;
}

enum transfer_error transfer_start(struct app *app, struct call *c,
                                   const struct transfer_request *req, char *info,
                                   size_t infolen)
{
    struct config *cfg = app->cfg;
    struct target t;

    if (transfer_active(c)) {
        snprintf(info, infolen, "transfer %s is already running for this session", c->xfer->id);
        return XFER_E_RUNNING;
    }
    if (c->ended || !c->caller || c->caller->state != LEG_CONFIRMED || !c->room ||
        c->room->state != LEG_CONFIRMED || c->caller->neg != NEG_STABLE ||
        c->room->neg != NEG_STABLE) {
        snprintf(info, infolen, "the call is not connected (or is renegotiating media) right now");
        return XFER_E_NOT_CONNECTED;
    }
    enum target_result tr =
        target_parse(cfg, req->to_endpoint, app->sip_host, app->sip_port, &t, info, infolen);
    if (tr == TARGET_FORBIDDEN) {
        log_security("target-refused", "-", c->id, "toEndPoint %.200s not allowed", req->to_endpoint);
        return XFER_E_FORBIDDEN;
    }
    if (tr != TARGET_OK)
        return XFER_E_BAD_TARGET;
    if (req->mode == XFER_REFER && t.kind == TARGET_ROOM) {
        snprintf(info, infolen,
                 "sipRefer needs a target outside the room network; use sipCallTransfer for rooms");
        return XFER_E_BAD_TARGET;
    }
    if (req->mode == XFER_REFER && t.kind == TARGET_PSTN && refer_number(cfg, c, &t, info, infolen) < 0)
        return XFER_E_BAD_TARGET;
    if (t.kind == TARGET_ROOM && c->room_name && strcmp(t.room, c->room_name) == 0) {
        snprintf(info, infolen, "session is already in room %s", t.room);
        return XFER_E_BAD_TARGET;
    }
    if (req->mode == XFER_CALL && !c->caller->sdp_in) {
        snprintf(info, infolen, "the caller has no media description yet");
        return XFER_E_NO_MEDIA;
    }

    struct transfer *x = xcalloc(1, sizeof *x);
    make_id(x->id, sizeof x->id);
    x->call = c;
    x->mode = req->mode;
    x->state = XFER_RINGING;
    x->to_endpoint = xstrdup(req->to_endpoint);
    x->target = t;
    x->started = time(NULL);
    snprintf(x->from_room, sizeof x->from_room, "%s", c->room_name ? c->room_name : "");
    snprintf(x->from_endpoint, sizeof x->from_endpoint, "%s", c->room->uri ? c->room->uri : "");
    if (req->caller_id)
        snprintf(x->caller_id, sizeof x->caller_id, "%s", req->caller_id);
    if (req->extension)
        snprintf(x->extension, sizeof x->extension, "%s", req->extension);
    x->wait_ext_sec = req->wait_ext_sec;
    x->notify_leg = req->notify_leg;
    if (req->refer_event)
        snprintf(x->notify_event, sizeof x->notify_event, "%s", req->refer_event);

    transfer_free(c->xfer); /* the previous, finished one */
    c->xfer = x;
    x->timer = su_timer_create(su_root_task(app->root), 0);
    transfer_emit(app, x, "calltransfer.triggered");
    enum transfer_error err = x->mode == XFER_REFER ? transfer_begin_refer(app, x, info, infolen)
                                                    : transfer_begin_call(app, x, info, infolen);
    if (err != XFER_OK) {
        /* "triggered" went out: tell webhook consumers how it ended */
        x->state = XFER_FAILED;
        x->sip_status = refused_status(err);
        snprintf(x->reason, sizeof x->reason, "%s", info);
        transfer_emit(app, x, "calltransfer.failed");
        c->xfer = NULL;
        transfer_free(x);
    }
    return err;
}

static const struct leg_ops target_ops;

/* A target leg toward a trunk gateway is given up when nothing at all (not
 * even 100 Trying) came back in this many seconds: the next gateway is
 * tried while the ring timeout still runs. */
#define GATEWAY_RESPONSE_TIMEOUT 4

/* The trunk an E.164 target goes out on and its gateways in the order they
 * are tried: those up first, in list order, then those down (a last resort:
 * without probes nothing else would bring them back). */
static void plan_gateways(struct app *app, struct transfer *x)
{
    const struct trunk_cfg *trunk = x->target.trunk[0]
                                        ? config_trunk_by_name(app->cfg, x->target.trunk)
                                        : router_trunk_for_uri(app->cfg, x->target.uri);
    if (!trunk || !trunk->ngateways)
        return;
    x->gw_trunk = xstrdup(trunk->name);
    x->gw_uris = xcalloc(trunk->ngateways, sizeof *x->gw_uris);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < trunk->ngateways; i++) {
            const char *gw = trunk->gateways[i];
            if (gw && gateway_is_up(app, trunk->name, gw) == (pass == 0))
                x->gw_uris[x->gw_n++] = xstrdup(gw);
        }
}

/* The Request-URI toward gateway gw: the one target_parse() made when it is
 * the gateway it made it for (the trunk's first), else the same number
 * through gw. 0, or -1 if gw is not usable. */
static int gateway_uri(struct app *app, struct transfer *x, const char *gw, char *out,
                       size_t outlen, char *route, size_t routelen)
{
    const struct trunk_cfg *trunk = config_trunk_by_name(app->cfg, x->gw_trunk);
    if (!trunk)
        return target_pstn_uri(gw, x->target.number, out, outlen);
    /* the trunk's number_format, toward this gateway */
    struct trunk_cfg via = *trunk;
    via.gateway = (char *)gw;
    return target_number_uri(&via, x->target.number, out, outlen, route, routelen);
}

/* Make the target leg (to uri) and send its INVITE; it becomes c->target. */
static enum transfer_error dial_target(struct app *app, struct transfer *x, const char *uri,
                                       const char *route, char *info, size_t infolen)
{
    struct call *c = x->call;
    struct target *t = &x->target;
    struct leg *tl = leg_new(c, LEG_TARGET,
                             t->kind == TARGET_ROOM   ? FAR_ROOM
                             : t->kind == TARGET_PSTN ? FAR_PSTN
                                                      : FAR_SIP,
                             &target_ops);
    tl->uri = xstrdup(uri);
    char err[160];
    int nstreams = c->caller->ep ? relay_ep_nstreams(c->caller->ep) : 1;
    if (leg_media_new(app, tl, nstreams, c->caller, err, sizeof err) < 0) {
        call_log(c, LOG_ERROR, "transfer refused: %s", err);
        leg_free(tl);
        snprintf(info, infolen, "no media ports left for the transfer");
        return XFER_E_NO_PORTS;
    }
    const char *offer = leg_sdp_for(app, tl, c->caller->sdp_in, strlen(c->caller->sdp_in));
    if (!offer) {
        leg_free(tl);
        snprintf(info, infolen, "cannot build a media offer for the target");
        return XFER_E_BAD_TARGET;
    }

    /* a trunk gateway's media_sources, its credentials for a 401/407, and
     * how it wants the caller's identity */
    const struct trunk_cfg *trunk = x->gw_trunk ? config_trunk_by_name(app->cfg, x->gw_trunk)
                                                : router_trunk_for_uri(app->cfg, uri);

    /* From: the caller's identity (callerId toward a trunk when given,
     * else the caller's number) */
    char from[600];
    struct identity id = c->ident;
    if (t->kind == TARGET_PSTN && x->caller_id[0]) {
        snprintf(id.number, sizeof id.number, "%s", x->caller_id);
        id.display[0] = '\0';
    }
    if (trunk)
        identity_from(&id, app->sip_host, from, sizeof from);
    else
        snprintf(from, sizeof from, "%s", c->from_hdr);

    char headers[TARGET_MAX_HEADERS * 284 + 1200];
    int n = snprintf(headers, sizeof headers, "X-Session-Id: %s", c->id);
    for (int i = 0; i < t->nheaders && n < (int)sizeof headers; i++)
        n += snprintf(headers + n, sizeof headers - (size_t)n, "\r\n%s", t->headers[i]);
    if (trunk && n < (int)sizeof headers) {
        char idh[400];
        identity_headers(&id, trunk->identity, app->sip_host, idh, sizeof idh);
        if (idh[0])
            n += snprintf(headers + n, sizeof headers - (size_t)n, "\r\n%s", idh);
    }
    if (trunk && trunk->diversion && c->room_name && n < (int)sizeof headers) {
        /* RFC 5806: the room the call was diverted from, by its public name */
        const char *domain = app->cfg->rooms_domain && *app->cfg->rooms_domain
                                 ? app->cfg->rooms_domain
                                 : app->sip_host;
        n += snprintf(headers + n, sizeof headers - (size_t)n,
                      "\r\nDiversion: <sip:%s@%s>;reason=unconditional;counter=1", c->room_name,
                      domain);
    }
    if (route && route[0])
        tl->route = xstrdup(route);
    leg_media_from_trunk(tl, trunk);
    leg_auth_from_trunk(tl, trunk);
    int timeout = 0;
    if (x->gw_trunk) {
        int ring = app->cfg->transfer.ring_timeout;
        timeout = ring > 2 * GATEWAY_RESPONSE_TIMEOUT ? GATEWAY_RESPONSE_TIMEOUT
                                                      : (ring / 2 > 0 ? ring / 2 : 1);
    }
    call_log(c, LOG_INFO, "transfer %s: INVITE %s (%s)", x->id, uri,
             t->kind == TARGET_ROOM ? "room" : t->kind == TARGET_PSTN ? "PSTN" : "SIP");
    if (leg_invite(app, tl, from, headers, offer, timeout) < 0) {
        leg_free(tl);
        snprintf(info, infolen, "cannot address the target");
        return XFER_E_BAD_TARGET;
    }
    if (c->target)
        leg_detach(c->target); /* an earlier transfer's target, still ending */
    c->target = tl;
    x->gw_progress = false;
    return XFER_OK;
}

enum transfer_error transfer_begin_call(struct app *app, struct transfer *x, char *info,
                                        size_t infolen)
{
    struct call *c = x->call;
    struct target *t = &x->target;
    if (!c->caller->sdp_in) {
        snprintf(info, infolen, "the caller has no media description yet");
        return XFER_E_NO_MEDIA;
    }
    if (t->kind == TARGET_PSTN && !x->gw_trunk)
        plan_gateways(app, x);
    enum transfer_error err = XFER_E_BAD_TARGET;
    if (!x->gw_trunk) {
        err = dial_target(app, x, t->uri, t->route, info, infolen);
    } else {
        /* the first gateway that takes the INVITE (in plan order) */
        for (x->gw_at = 0; x->gw_at < x->gw_n; x->gw_at++) {
            char uri[512], route[520];
            if (gateway_uri(app, x, x->gw_uris[x->gw_at], uri, sizeof uri, route, sizeof route) < 0) {
                snprintf(info, infolen, "trunk gateway \"%.200s\" is not usable",
                         x->gw_uris[x->gw_at]);
                continue;
            }
            err = dial_target(app, x, uri, route, info, infolen);
            if (err == XFER_OK || err == XFER_E_NO_PORTS)
                break;
        }
    }
    if (err != XFER_OK)
        return err;
    x->mode = XFER_CALL;
    transfer_emit(app, x, "calltransfer.initiated");
    transfer_arm_timer(app, x, app->cfg->transfer.ring_timeout);
    return XFER_OK;
}

enum transfer_error transfer_cancel(struct app *app, struct call *c, char *info, size_t infolen)
{
    if (!transfer_active(c)) {
        snprintf(info, infolen, "no transfer in flight for this session");
        return XFER_E_NOT_FOUND;
    }
    if (c->xfer->state != XFER_RINGING) {
        snprintf(info, infolen, "the target has already answered");
        return XFER_E_ANSWERED;
    }
    if (c->xfer->mode == XFER_REFER) {
        /* the REFER is with the caller's side now; SIP has no way to take
         * it back, and pretending would leave both sides out of step */
        snprintf(info, infolen, "a sipRefer cannot be withdrawn once the REFER is sent");
        return XFER_E_REFER_SENT;
    }
    transfer_fail(app, c->xfer, 487, "cancelled");
    return XFER_OK;
}

/* ---- the target's answer ----------------------------------------------- */

static bool same_media(const char *a, const char *b)
{
    struct sdpx_info x, y;
    char err[80];
    if (!a || !b || sdpx_parse(a, strlen(a), &x, err, sizeof err) < 0 ||
        sdpx_parse(b, strlen(b), &y, err, sizeof err) < 0)
        return false;
    if (x.nstreams != y.nstreams)
        return false;
    for (int i = 0; i < x.nstreams; i++)
        if (strcmp(x.s[i].formats, y.s[i].formats) != 0 || (x.s[i].port == 0) != (y.s[i].port == 0))
            return false;
    return true;
}

/* Send the extension into the new leg once it is bridged. */
static void dial_extension(struct app *app, struct transfer *x, struct leg *tl)
{
    struct sdpx_info info;
    char err[80];
    if (!tl->ep) {
        call_log(x->call, LOG_WARN, "extension not dialled: needs media.mode = \"relay\"");
        return;
    }
    if (!tl->sdp_in || sdpx_parse(tl->sdp_in, strlen(tl->sdp_in), &info, err, sizeof err) < 0 ||
        info.nstreams < 1 || info.s[0].dtmf_pt < 0) {
        call_log(x->call, LOG_WARN,
                 "extension not dialled: the target did not accept telephone-event/8000");
        return;
    }
    call_log(x->call, LOG_INFO, "dialling extension \"%s\" in %d s (payload type %d)", x->extension,
             x->wait_ext_sec, info.s[0].dtmf_pt);
    dtmf_start(app, tl->ep, info.s[0].dtmf_pt, x->extension, (unsigned)x->wait_ext_sec * 1000,
               0, x->call->id, &tl->dtmf);
}

/* Bridge the caller to the target for good and release the old room. */
static void commit(struct app *app, struct transfer *x)
{
    struct call *c = x->call;
    struct leg *old = c->room;
    struct leg *tl = c->target;

    transfer_notify_room(x, 200, "OK", true);
    if (old) {
        bool left = old->state == LEG_GONE; /* it left during the transfer */
        leg_detach(old);                    /* ... and is freed there */
        if (!left)
            leg_hangup(old, 200, "OK");
    }
    c->room = tl;
    c->target = NULL;
    tl->role = LEG_ROOM;
    tl->ops = c->bridged_ops; /* a room like any other from now on */
    if (x->target.kind == TARGET_ROOM) {
        free(c->room_name);
        c->room_name = xstrdup(x->target.room);
        if (c->connected_event)
            cluster_session_moved(app, c, x->from_room); /* the directory's room sets */
    }
    free(c->room_uri);
    c->room_uri = xstrdup(tl->uri);
    stop_timer(x);
    x->state = XFER_COMPLETED;
    x->ended = time(NULL);
    c->transfers++;
    call_log(c, LOG_INFO, "transfer %s completed: now bridged to %s", x->id, tl->uri);
    transfer_emit(app, x, "calltransfer.completed");
    if (x->extension[0])
        dial_extension(app, x, tl);
}

/* ---- the target leg's handlers (called by the leg layer) -------------- */

/* The transfer tl belongs to, while it runs and tl is still its target. */
static struct transfer *running(struct leg *tl)
{
    struct call *c = tl->call;
    return c->xfer && transfer_active(c) && c->target == tl ? c->xfer : NULL;
}

static void target_progress(struct app *app, struct leg *tl, int status, const char *phrase,
                            const struct leg_sdp *early)
{
    struct transfer *x = running(tl);
    if (!x)
        return;
    if (x->gw_trunk && x->gw_at < x->gw_n) {
        /* it is alive, and from now on its final answer is the answer */
        x->gw_progress = true;
        gateway_mark(app, x->gw_trunk, x->gw_uris[x->gw_at], true, "it answered a call");
    }
    transfer_notify_room(x, status, phrase, false);
}

static bool target_wanted(struct leg *tl)
{
    struct call *c = tl->call;
    return running(tl) && c->caller && c->caller->state != LEG_GONE && !c->caller->hangup_sent;
}

/* The target leg toward a trunk gateway failed. 503 (sent by the gateway,
 * or sofia's for a transport error) or no response at all, before any
 * provisional answer: that gateway is marked down and the next one of the
 * plan is dialled with a fresh leg (true). Anything else: the gateway is
 * alive, its answer is the transfer's (false). */
static bool fail_over(struct app *app, struct transfer *x, struct leg *tl, enum leg_failure why,
                      int status, const char *phrase)
{
    if (!x->gw_trunk || x->gw_at >= x->gw_n)
        return false;
    const char *gw = x->gw_uris[x->gw_at];
    char reason[120];
    if (!gateway_failed(app, x->gw_trunk, gw, why == LEG_FAIL_TIMEOUT,
                        why == LEG_FAIL_STATUS ? status : 0, phrase, x->gw_progress, reason,
                        sizeof reason))
        return false;
    x->sip_status = status; /* the last status, should every gateway fail */
    /* The failed leg ends on its own after its 503. One that never got
     * any answer would wait out its INVITE transaction (64*T1: a CANCEL
     * needs a provisional answer first) and hold the call that long: its
     * handle is destroyed now (nua drops the transaction) and it is freed. */
    bool silent = why == LEG_FAIL_TIMEOUT && tl->state == LEG_EARLY && tl->nh;
    leg_detach(tl);
    if (silent)
        leg_terminated(app, tl); /* freed */
    while (++x->gw_at < x->gw_n) {
        char uri[512], route[520], info[160];
        if (gateway_uri(app, x, x->gw_uris[x->gw_at], uri, sizeof uri, route, sizeof route) < 0)
            continue;
        call_log(x->call, LOG_INFO, "transfer %s: gateway %s failed (%s): trying %s", x->id, gw,
                 reason, x->gw_uris[x->gw_at]);
        enum transfer_error err = dial_target(app, x, uri, route, info, sizeof info);
        if (err == XFER_OK)
            return true;
        call_log(x->call, LOG_WARN, "transfer %s: gateway %s not dialled: %s", x->id,
                 x->gw_uris[x->gw_at], info);
        if (err == XFER_E_NO_PORTS)
            break;
    }
    return false; /* the caller fails the transfer with this status */
}

static void target_failed(struct app *app, struct leg *tl, enum leg_failure why, int status,
                          const char *phrase)
{
    struct transfer *x = running(tl);
    if (!x)
        return;
    if (fail_over(app, x, tl, why, status, phrase))
        return;
    switch (why) {
    case LEG_FAIL_STATUS:
        transfer_fail(app, x, status, phrase ? phrase : "failed");
        break;
    case LEG_FAIL_CONTACT:
        transfer_fail(app, x, 502, "target answered with an unusable Contact");
        break;
    case LEG_FAIL_SDP:
        transfer_fail(app, x, 488, "target answered without usable SDP");
        break;
    case LEG_FAIL_TIMEOUT:
        transfer_fail(app, x, 408, "no response from the target");
        break;
    }
}

/* The caller's answer to the re-INVITE with the target's media. */
static void caller_answered(struct app *app, struct leg *caller, const struct leg_answer *a)
{
    struct call *c = caller->call;
    struct transfer *x = c->xfer;
    bool active = x && transfer_active(c);
    if (a->unusable) {
        if (active)
            transfer_fail(app, x, 502, "the caller answered with an unusable Contact");
        return;
    }
    if (a->status >= 300) {
        if (active)
            transfer_fail(app, x, a->status, "the caller refused the new media");
        if (a->status == 408 || a->status == 481)
            call_hangup(c, 500, "Server Internal Error");
        return;
    }
    if (active && c->target)
        commit(app, x);
}

static void target_answered(struct app *app, struct leg *tl, int status, const struct leg_sdp *sdp)
{
    struct call *c = tl->call;
    struct transfer *x = c->xfer;
    if (!sdp) {
        call_log(c, LOG_WARN, "transfer target answered without usable SDP");
        transfer_fail(app, x, 488, "target answered without usable SDP");
        return;
    }
    if (x->gw_trunk && x->gw_at < x->gw_n)
        gateway_mark(app, x->gw_trunk, x->gw_uris[x->gw_at], true, "it answered a call");
    x->sip_status = status;
    x->state = XFER_ANSWERED;
    stop_timer(x);
    call_log(c, LOG_INFO, "transfer %s: target answered %d", x->id, status);
    transfer_emit(app, x, "calltransfer.answered");

    if (c->caller->ep)
        relay_connect(c->caller->ep, tl->ep);

    /* Passthrough: the caller must learn the target's address. Relay: only
     * when the target chose other codecs than the room did. */
    bool reinvite = !c->caller->ep || !c->room || !same_media(tl->sdp_in, c->room->sdp_in);
    if (reinvite) {
        char *body = leg_sdp_for(app, c->caller, tl->sdp_in, strlen(tl->sdp_in));
        if (!body) {
            transfer_fail(app, x, 488, "cannot offer the target's media to the caller");
            return;
        }
        call_log(c, LOG_INFO, "transfer %s: re-INVITE the caller for the new media", x->id);
        leg_reinvite(app, c->caller, body, caller_answered);
        return;
    }
    commit(app, x);
}

/* A target's mid-call 2xx (a session refresh) that cannot be used. */
static void target_broken(struct app *app, struct leg *tl, int status, const char *phrase)
{
    call_hangup(tl->call, status, phrase);
}

static void target_gone(struct app *app, struct leg *tl)
{
    struct transfer *x = running(tl);
    if (x)
        transfer_fail(app, x, x->sip_status ? x->sip_status : 480, "the target left");
    leg_free(tl); /* unlinks it from the call */
}

static const struct leg_ops target_ops = {
    .name = "transfer target",
    .progress = target_progress,
    .wanted = target_wanted,
    .answered = target_answered,
    .failed = target_failed,
    .broken = target_broken,
    .gone = target_gone,
};

bool transfer_leg_gone(struct app *app, struct leg *leg)
{
    struct call *c = leg->call;
    struct transfer *x = c->xfer;
    if (!x || !transfer_active(c))
        return false;
    if (leg == c->caller) {
        if (x->mode == XFER_REFER && x->refer_accepted) {
            /* RFC 3515 peers often hang up before the final NOTIFY: the
             * transferee has left us, which is what success looks like. */
            transfer_succeed(app, x);
        } else {
            transfer_fail(app, x, 487, "the caller hung up");
        }
        return false;
    }
    if (leg == x->notify_leg)
        x->notify_leg = NULL;
    if (leg == c->room) {
        /* The old room left while the target rings: keep the caller for
         * the target; if the target fails, fail() ends the call. */
        call_log(c, LOG_INFO, "the room left during transfer %s: the caller waits for the target",
                 x->id);
        return true;
    }
    return false;
}
