/* api.c - REST API on libmicrohttpd, driven from the control su_root.
 *
 * MHD runs with MHD_USE_EPOLL and no thread: its epoll fd is registered on
 * the su_root, MHD_run() is called when it is readable, and an su_timer
 * follows MHD_get_timeout() so idle connections are reaped. Handlers
 * therefore run on the control thread and may touch calls directly. */
#include "xalloc.h"
#include "sofia_types.h"

#include "api.h"
#include "api_body.h"
#include "leg.h"
#include "relay.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "call.h"
#include "dialout.h"
#include "http_client.h"
#include "cluster.h"
#include "config.h"
#include "log.h"
#include "log_limit.h"
#include "metrics.h"
#include "transfer.h"
#include "looplag.h"

#define MAX_BODY (64 * 1024)

struct api {
    struct app *app;
    struct MHD_Daemon *mhd;
    su_wait_t wait;
    int wait_index;
    su_timer_t *timer;
    bool closed; /* a connection closed during the last MHD_run() */
    struct forward *forwards; /* waiting for their owner's answer */
};

/* the hop header: a forwarded request is never forwarded again */
#define FORWARDED_BY "X-Sipxfer-Forwarded-By"
#define FORWARD_TIMEOUT_MS 5000

/* Total and per-address connection caps. 64 per address leaves three
 * quarters of the total to other clients when one address holds its
 * share (SPEC 9; docs/operations.md). */
#define API_MAX_CONNECTIONS 256
#define API_MAX_PER_SOURCE 64

struct request {
    char *body;
    size_t len;
    bool too_big;
    /* A request for a session another node owns (SPEC 13): forwarded to
     * the owner with its connection suspended until the answer comes. */
    struct forward *fwd;
};

/* One forwarded request. The connection stays suspended (MHD neither reads
 * nor times it out) until http_client answers, which its timeout bounds;
 * then the owner's status and body are queued as ours. */
struct forward {
    struct api *api;
    struct MHD_Connection *con;
    struct request *req;
    bool done;    /* status and body are set: queued when MHD runs the connection */
    long status;  /* the owner's, or ours when it could not answer */
    char *body;   /* the owner's body, or our error envelope */
    char node[64];
    char url[256];
    char method[8];
    char *auth;           /* the client's Authorization, passed on */
    struct forward *next; /* api->forwards */
};

/* ---- responses --------------------------------------------------------- */

static enum MHD_Result send_text(struct MHD_Connection *con, unsigned status, const char *type,
                                 char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(con, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *con, unsigned status, cJSON *json)
{
    char *text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    return send_text(con, status, "application/json", text);
}

/* Daily's error envelope: {"error": kind, "info": text}, as text. */
static char *error_text(const char *kind, const char *info)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", kind);
    cJSON_AddStringToObject(j, "info", info);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return text;
}

static enum MHD_Result send_error(struct MHD_Connection *con, unsigned status, const char *kind,
                                  const char *info)
{
    return send_text(con, status, "application/json", error_text(kind, info));
}

/* ---- auth -------------------------------------------------------------- */

/* Compare without an early exit so the time taken says nothing about how
 * much of a token matched. */
static bool token_equal(const char *given, size_t glen, const char *want)
{
    size_t wlen = strlen(want);
    unsigned char diff = (unsigned char)(glen != wlen);
    for (size_t i = 0; i < wlen; i++)
        diff |= (unsigned char)(want[i] ^ (i < glen ? given[i] : 0));
    return diff == 0;
}

static bool authorized(struct api *api, struct MHD_Connection *con)
{
    const char *h = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    bool ok = false;
    struct config *cfg = api->app->cfg;
    for (size_t i = 0; i < cfg->ntokens; i++)
        ok |= token_equal(tok, len, cfg->tokens[i]);
    return ok;
}

/* ---- sessions ---------------------------------------------------------- */

static const char *call_state_name(const struct call *c)
{
    if (c->ended || c->caller->state >= LEG_ENDING)
        return "ending";
    /* "connected" only once both legs are confirmed (ACKs exchanged): that
     * is when a transfer is accepted, so a client that waits for it can
     * transfer at once instead of meeting a 409 */
    if (c->caller->state == LEG_CONFIRMED && c->room && c->room->state == LEG_CONFIRMED)
        return "connected";
    if (c->caller->state == LEG_CONFIRMED || c->caller->state == LEG_ANSWERED)
        return "answering";
    return "ringing";
}

static cJSON *call_json(const struct call *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "sessionId", c->id);
    cJSON_AddStringToObject(j, "room", c->room_name ? c->room_name : "");
    cJSON_AddStringToObject(j, "caller", c->from ? c->from : "");
    cJSON_AddStringToObject(j, "state", call_state_name(c));
    cJSON_AddNumberToObject(j, "startedAt", (double)c->started);
    cJSON_AddNumberToObject(j, "transfers", c->transfers);
    /* relay counters: what the relay received from and sent to each side */
    cJSON *media = cJSON_AddObjectToObject(j, "media");
    const struct leg *sides[2] = {c->caller, c->room};
    const char *names[2] = {"caller", "room"};
    for (int i = 0; i < 2; i++) {
        struct relay_ep_stats st = {0};
        if (sides[i] && sides[i]->ep)
            relay_ep_stats(sides[i]->ep, &st);
        cJSON *o = cJSON_AddObjectToObject(media, names[i]);
        cJSON_AddNumberToObject(o, "rxPackets", (double)st.rx_packets);
        cJSON_AddNumberToObject(o, "txPackets", (double)st.tx_packets);
    }
    if (c->xfer)
        cJSON_AddItemToObject(j, "transfer", transfer_json(c->xfer));
    else
        cJSON_AddNullToObject(j, "transfer");
    return j;
}

static enum MHD_Result sessions_list(struct app *app, struct MHD_Connection *con)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "sessions");
    for (struct call *c = call_first(app->calls); c; c = c->next)
        cJSON_AddItemToArray(arr, call_json(c));
    cJSON_AddNumberToObject(j, "total", (double)call_count(app->calls));
    return send_json(con, 200, j);
}

/* ---- transfers --------------------------------------------------------- */

/* How the API words a refused transfer: HTTP status and Daily's error kind. */
static unsigned api_transfer_error(enum transfer_error err, const char **kind)
{
    switch (err) {
    case XFER_OK:
        break;
    case XFER_E_RUNNING:
    case XFER_E_NOT_CONNECTED:
    case XFER_E_NO_MEDIA:
    case XFER_E_NO_PORTS:
    case XFER_E_ANSWERED:
    case XFER_E_REFER_SENT:
        *kind = "conflict";
        return 409;
    case XFER_E_FORBIDDEN:
        *kind = "forbidden";
        return 403;
    case XFER_E_BAD_TARGET:
        *kind = "invalid-request-error";
        return 400;
    case XFER_E_NOT_FOUND:
        *kind = "not-found";
        return 404;
    }
    *kind = "invalid-request-error";
    return 500;
}

/* POST /v1/rooms/{room}/sipCallTransfer and .../sipRefer */
static enum MHD_Result room_transfer(struct api *api, struct MHD_Connection *con,
                                     const char *room, enum xfer_mode mode, struct request *req)
{
    struct transfer_body body;
    const char *bad = NULL;
    if (api_parse_transfer_body(req->body, req->len, &body, &bad) < 0)
        return send_error(con, 400, "invalid-request-error", bad);

    struct call *c = call_find(api->app->calls, body.session_id);
    if (!c || !c->room_name || strcmp(c->room_name, room) != 0) {
        api_transfer_body_free(&body);
        return send_error(con, 404, "not-found",
                          c ? "session is not in this room" : "invalid sessionId");
    }

    struct transfer_request tr = {
        .mode = mode,
        .to_endpoint = body.to_endpoint,
        .caller_id = body.caller_id,
        .extension = body.extension,
        .wait_ext_sec = body.wait_ext_sec,
    };
    char info[300];
    enum transfer_error err = transfer_start(api->app, c, &tr, info, sizeof info);
    api_transfer_body_free(&body);
    if (err != XFER_OK) {
        const char *kind;
        unsigned status = api_transfer_error(err, &kind);
        return send_error(con, status, kind, info);
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "ok", true);
    cJSON_AddStringToObject(j, "transferId", c->xfer->id);
    cJSON_AddStringToObject(j, "sessionId", c->id);
    return send_json(con, 200, j);
}

/* ---- dial-out (SPEC 12) ------------------------------------------------ */

static enum MHD_Result dialout_error_reply(struct MHD_Connection *con, enum dialout_error err,
                                           const char *info)
{
    switch (err) {
    case DIALOUT_E_FORBIDDEN:
        return send_error(con, 403, "forbidden", info);
    case DIALOUT_E_NOT_FOUND:
        return send_error(con, 404, "not-found", info);
    case DIALOUT_E_BUSY:
        return send_error(con, 503, "unavailable", info);
    case DIALOUT_E_CONFLICT:
        return send_error(con, 409, "conflict", info);
    case DIALOUT_OK:
    case DIALOUT_E_BAD:
        break;
    }
    return send_error(con, 400, "invalid-request-error", info);
}

/* POST /v1/rooms/{room}/dialOut/{start,stop,sendDTMF} */
static enum MHD_Result room_dialout(struct api *api, struct MHD_Connection *con,
                                    const char *room, enum dialout_body_kind kind,
                                    struct request *req)
{
    struct dialout_body body;
    const char *bad = NULL;
    if (api_parse_dialout_body(req->body, req->len, kind, &body, &bad) < 0)
        return send_error(con, 400, "invalid-request-error", bad);
    char info[300] = "", id[128] = "";
    enum dialout_error err;
    if (kind == DIALOUT_BODY_START) {
        struct dialout_request dr = {
            .room = room,
            .phone_number = body.phone_number,
            .sip_uri = body.sip_uri,
            .caller_id = body.caller_id,
            .display_name = body.display_name,
            .extension = body.extension,
            .wait_ext_sec = body.wait_ext_sec,
        };
        err = dialout_start(api->app, &dr, id, sizeof id, info, sizeof info);
    } else if (kind == DIALOUT_BODY_STOP) {
        err = dialout_stop(api->app, room, body.session_id, info, sizeof info);
    } else {
        err = dialout_send_dtmf(api->app, room, body.session_id, body.tones, body.digit_ms,
                                body.method == 1   ? DTMF_TELEPHONE_EVENT
                                : body.method == 2 ? DTMF_SIP_INFO
                                                   : DTMF_AUTO,
                                info, sizeof info);
    }
    api_dialout_body_free(&body);
    if (err != DIALOUT_OK)
        return dialout_error_reply(con, err, info);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "ok", true);
    if (id[0])
        cJSON_AddStringToObject(j, "sessionId", id);
    return send_json(con, 200, j);
}

/* ---- forwarding to a session's owner (SPEC 13) ----------------------- */

/* The node a session id names: ids are "<node>-<uuid>" (call.c), the uuid
 * 36 characters. */
static bool session_node(const char *id, char *node, size_t len)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 38 || id[n - 37] != '-' || n - 37 >= len)
        return false;
    memcpy(node, id, n - 37);
    node[n - 37] = '\0';
    return true;
}

static bool in_cluster(const struct config *cfg)
{
    return *cfg->cluster.redis || cfg->cluster.npeers > 0;
}

static void on_timer(struct app *app, su_timer_t *t, void *arg);

static void forward_unlink(struct api *api, struct forward *f)
{
    for (struct forward **pp = &api->forwards; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            return;
        }
}

/* The request's answer is known: queued from on_request when MHD runs the
 * resumed connection. */
static void forward_finish(struct forward *f, long status, char *body)
{
    forward_unlink(f->api, f);
    f->done = true;
    f->status = status;
    f->body = body;
    MHD_resume_connection(f->con);
    /* MHD calls on_request again for this connection from its next run,
     * and nothing on its epoll fd says a run is due: run it now */
    su_timer_set_interval(f->api->timer, on_timer, f->api, 0);
}

/* An answer of our own (not the owner's) in the error envelope. */
static void forward_fail(struct forward *f, unsigned status, const char *kind, const char *info)
{
    forward_finish(f, status, error_text(kind, info));
}

static void forward_done(void *arg, long status, const char *body, size_t len, const char *error)
{
    struct forward *f = arg;
    (void)len;
    log_msg(LOG_DEBUG, NULL, "API forward to node %s answered %ld", f->node, status);
    if (status)
        forward_finish(f, status, xstrdup(body));
    else {
        char info[400];
        snprintf(info, sizeof info, "session belongs to node %s, which did not answer (%.200s): gone",
                 f->node, error ? error : "no answer");
        forward_fail(f, 404, "not-found", info);
    }
}

/* The owner's answer (or why there is none) as this request's response. */
static enum MHD_Result forward_reply(struct MHD_Connection *con, struct forward *f)
{
    char *text = f->body;
    f->body = NULL;
    return send_text(con, (unsigned)f->status, "application/json", text);
}

/* The request, as it came, to the owner's API at addr. */
static void forward_send(struct forward *f, const char *addr)
{
    struct api *api = f->api;
    const struct config *cfg = api->app->cfg;
    char target[400];
    snprintf(target, sizeof target, "http://%s%s", addr, f->url);
    char auth_h[600], hop_h[128];
    snprintf(auth_h, sizeof auth_h, "Authorization: %.580s", f->auth ? f->auth : "");
    snprintf(hop_h, sizeof hop_h, "%s: %s", FORWARDED_BY, cfg->node);
    const char *headers[] = {auth_h, hop_h, NULL};
    struct request *req = f->req;
    if (http_request(api->app->http, f->method, target, req->len ? "application/json" : NULL,
                     req->body, req->len, headers, FORWARD_TIMEOUT_MS, forward_done, f) < 0) {
        char info[300];
        snprintf(info, sizeof info, "cannot forward to node %s at %s", f->node, addr);
        forward_fail(f, 503, "service-unavailable", info);
        return;
    }
    log_msg(LOG_DEBUG, NULL, "API %s %s forwarded to node %s at %s", f->method, f->url, f->node,
            addr);
}

/* Redis (cluster.c) has said where the owner's API is, or that it is gone. */
static void forward_found(void *arg, int result, const char *addr)
{
    struct forward *f = arg;
    char info[300];
    if (result == 1 && addr) {
        forward_send(f, addr);
        return;
    }
    if (result == 0)
        snprintf(info, sizeof info, "session belongs to node %s, which is gone (no lease in the "
                 "cluster directory)", f->node);
    else
        snprintf(info, sizeof info, "session belongs to node %s; the cluster directory is "
                 "unavailable and cluster.peers does not name it", f->node);
    forward_fail(f, 404, "not-found", info);
}

/* A request waits (its connection suspended) for something on the loop. */
static struct forward *pending_new(struct api *api, struct MHD_Connection *con,
                                   struct request *req, const char *url, const char *method,
                                   const char *node)
{
    struct forward *f = xcalloc(1, sizeof *f);
    f->api = api;
    f->con = con;
    f->req = req;
    snprintf(f->node, sizeof f->node, "%s", node);
    snprintf(f->url, sizeof f->url, "%s", url);
    snprintf(f->method, sizeof f->method, "%s", method);
    const char *auth = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Authorization");
    f->auth = auth ? xstrdup(auth) : NULL;
    req->fwd = f;
    f->next = api->forwards;
    api->forwards = f;
    MHD_suspend_connection(con);
    return f;
}

/* Whatever f still waits for (an HTTP answer, a Redis lookup) never calls
 * back into it. */
static void pending_cancel(struct api *api, struct forward *f)
{
    http_cancel(api->app->http, forward_done, f);
    cluster_cancel(api->app, f);
}

static void pending_free(struct api *api, struct forward *f)
{
    if (!f->done) {
        pending_cancel(api, f);
        forward_unlink(api, f);
    }
    free(f->body);
    free(f->auth);
    free(f);
}

/* A session not found here: forwarded to the node its id names, when this
 * node is in a cluster and that node is another one whose API address
 * Redis (or cluster.peers, when Redis cannot say) gives; else the 404 a
 * single node gives. */
static enum MHD_Result forward_or_404(struct api *api, struct MHD_Connection *con,
                                      struct request *req, const char *url, const char *method,
                                      const char *id, const char *info404)
{
    struct app *app = api->app;
    const struct config *cfg = app->cfg;
    char node[64];
    if (!in_cluster(cfg) || !session_node(id, node, sizeof node) || strcmp(node, cfg->node) == 0)
        return send_error(con, 404, "not-found", info404);
    const char *by = MHD_lookup_connection_value(con, MHD_HEADER_KIND, FORWARDED_BY);
    char info[300];
    if (by) {
        /* the owner forwarded it back, or a peer thinks this node owns it */
        snprintf(info, sizeof info, "%s (forwarded by node %.64s; node %s does not have it)",
                 info404, by, cfg->node);
        return send_error(con, 404, "not-found", info);
    }
    if (strlen(url) >= sizeof ((struct forward *)0)->url)
        return send_error(con, 404, "not-found", info404);
    const char *addr = config_peer_api(cfg, node);
    if (!*cfg->cluster.redis && !addr) {
        snprintf(info, sizeof info, "session belongs to node %s, which is not in this cluster",
                 node);
        return send_error(con, 404, "not-found", info);
    }
    struct forward *f = pending_new(api, con, req, url, method, node);
    /* Redis first: it knows nodes cluster.peers does not, and whether a
     * node's lease is gone; it falls back on the peers itself */
    if (*cfg->cluster.redis && cluster_node_api(app, node, forward_found, f) == 0)
        return MHD_YES;
    if (addr)
        forward_send(f, addr);
    else
        forward_found(f, -1, NULL);
    return MHD_YES;
}

/* ---- the cluster's sessions (SPEC 13) ---------------------------------- */

/* Redis's listing of every node's sessions; this node's own come from its
 * call table, with everything a local listing has. */
static void listing_done(void *arg, int ok, cJSON *sessions)
{
    struct forward *f = arg;
    struct app *app = f->api->app;
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(j, "sessions");
    for (struct call *c = call_first(app->calls); c; c = c->next)
        cJSON_AddItemToArray(arr, call_json(c));
    if (ok) {
        cJSON *e;
        cJSON_ArrayForEach(e, sessions)
        {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "node");
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "sessionId");
            bool mine = cJSON_IsString(n) && strcmp(n->valuestring, app->cfg->node) == 0;
            if (!mine && cJSON_IsString(id))
                cJSON_AddItemToArray(arr, cJSON_Duplicate(e, true));
        }
    } else {
        /* this node's sessions are still worth having */
        cJSON_AddBoolToObject(j, "partial", true);
        cJSON_AddStringToObject(j, "info",
                                "the cluster directory is unavailable: this node's sessions only");
    }
    cJSON_AddNumberToObject(j, "total", (double)cJSON_GetArraySize(arr));
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    forward_finish(f, 200, text);
}

/* The sessionId of a JSON body, for routes that name the session there. */
static bool body_session_id(const struct request *req, char *out, size_t len)
{
    cJSON *j = req->body ? cJSON_ParseWithLength(req->body, req->len) : NULL;
    const cJSON *sid = j ? cJSON_GetObjectItemCaseSensitive(j, "sessionId") : NULL;
    bool ok = cJSON_IsString(sid) && sid->valuestring[0] && strlen(sid->valuestring) < len;
    if (ok)
        snprintf(out, len, "%s", sid->valuestring);
    cJSON_Delete(j);
    return ok;
}

/* Whether the body's sessionId (into sid) names a session another node of
 * the cluster owns: that request goes there; everything else is answered
 * here as a single node answers it. */
static bool owned_elsewhere(const struct app *app, const struct request *req, char *sid,
                            size_t len)
{
    char owner[64];
    return in_cluster(app->cfg) && body_session_id(req, sid, len) && !call_find(app->calls, sid) &&
           session_node(sid, owner, sizeof owner) && strcmp(owner, app->cfg->node) != 0;
}

/* ---- routing ----------------------------------------------------------- */

static enum MHD_Result route(struct api *api, struct MHD_Connection *con, const char *url,
                             const char *method, struct request *req)
{
    struct app *app = api->app;
    bool get = strcmp(method, "GET") == 0;

    if (strcmp(url, "/v1/health") == 0) {
        if (!get)
            return send_error(con, 405, "invalid-request-error", "use GET");
        /* 503 while draining, so a load balancer probing it takes the
         * node out (SPEC 13); the body says why */
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", !app->draining);
        cJSON_AddStringToObject(j, "state", app->draining ? "draining" : "active");
        cJSON_AddNumberToObject(j, "calls", (double)call_count(app->calls));
        cJSON_AddBoolToObject(j, "draining", app->draining);
        return send_json(con, app->draining ? 503 : 200, j);
    }
    if (strcmp(url, "/metrics") == 0) {
        if (!get)
            return send_error(con, 405, "invalid-request-error", "use GET");
        return send_text(con, 200, "text/plain; version=0.0.4", metrics_render(app));
    }

    /* Everything else needs a token, and is checked before anything is
     * looked up so a 404 never tells an unauthenticated client anything. */
    if (!authorized(api, con)) {
        char src[80] = "-";
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            char host[64] = "?";
            int port = 0;
            if (ci->client_addr->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const void *)ci->client_addr;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
                port = ntohs(in->sin_port);
            } else if (ci->client_addr->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const void *)ci->client_addr;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
                port = ntohs(in6->sin6_port);
            }
            snprintf(src, sizeof src, "%s:%d", host, port);
        }
        log_security("api-auth", src, NULL, "%s %.100s refused 401", method, url);
        return send_error(con, 401, "authentication-error", "missing or invalid Bearer token");
    }
    if (req->too_big)
        return send_error(con, 413, "invalid-request-error", "request body larger than 64 KiB");

    if (strcmp(url, "/v1/sessions") == 0) {
        if (!get)
            return send_error(con, 405, "invalid-request-error", "use GET");
        const char *which = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "node");
        if (which && strcmp(which, "local") != 0)
            return send_error(con, 400, "invalid-request-error",
                              "node must be \"local\" (or absent: the whole cluster)");
        /* the whole cluster from the directory; a forwarded listing never
         * fans out again */
        if (!which && *app->cfg->cluster.redis &&
            !MHD_lookup_connection_value(con, MHD_HEADER_KIND, FORWARDED_BY)) {
            struct forward *f = pending_new(api, con, req, url, method, app->cfg->node);
            if (cluster_list_sessions(app, listing_done, f) < 0)
                listing_done(f, 0, NULL);
            return MHD_YES;
        }
        return sessions_list(api->app, con);
    }
    const char *rooms = "/v1/rooms/";
    if (strncmp(url, rooms, strlen(rooms)) == 0) {
        char room[128];
        const char *name = url + strlen(rooms);
        const char *slash = strchr(name, '/');
        if (!slash || (size_t)(slash - name) >= sizeof room || slash == name)
            return send_error(con, 404, "not-found", "no such resource");
        snprintf(room, sizeof room, "%.*s", (int)(slash - name), name);
        enum xfer_mode mode;
        const char *const dialouts[] = {"/dialOut/start", "/dialOut/stop", "/dialOut/sendDTMF"};
        char sid[128];
        for (int k = 0; k < 3; k++)
            if (strcmp(slash, dialouts[k]) == 0) {
                if (strcmp(method, "POST") != 0)
                    return send_error(con, 405, "invalid-request-error", "use POST");
                if (k > 0 && owned_elsewhere(app, req, sid, sizeof sid))
                    return forward_or_404(api, con, req, url, method, sid, "no such session");
                return room_dialout(api, con, room, (enum dialout_body_kind)k, req);
            }
        if (strcmp(slash, "/sipCallTransfer") == 0)
            mode = XFER_CALL;
        else if (strcmp(slash, "/sipRefer") == 0)
            mode = XFER_REFER;
        else
            return send_error(con, 404, "not-found", "no such resource");
        if (strcmp(method, "POST") != 0)
            return send_error(con, 405, "invalid-request-error", "use POST");
        if (owned_elsewhere(app, req, sid, sizeof sid))
            return forward_or_404(api, con, req, url, method, sid, "invalid sessionId");
        return room_transfer(api, con, room, mode, req);
    }

    const char *prefix = "/v1/sessions/";
    if (strncmp(url, prefix, strlen(prefix)) == 0) {
        char id[128];
        const char *rest = url + strlen(prefix);
        const char *slash = strchr(rest, '/');
        size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
        if (idlen >= sizeof id || (slash && strcmp(slash, "/transfer") != 0))
            return send_error(con, 404, "not-found", "no such resource");
        snprintf(id, sizeof id, "%.*s", (int)idlen, rest);
        struct call *c = call_find(app->calls, id);
        if (!c)
            return forward_or_404(api, con, req, url, method, id, "no such session");
        if (slash) {
            if (strcmp(method, "DELETE") != 0)
                return send_error(con, 405, "invalid-request-error", "use DELETE");
            char info[200];
            enum transfer_error err = transfer_cancel(app, c, info, sizeof info);
            if (err != XFER_OK) {
                const char *kind;
                unsigned status = api_transfer_error(err, &kind);
                return send_error(con, status, kind, info);
            }
            cJSON *j = cJSON_CreateObject();
            cJSON_AddBoolToObject(j, "ok", true);
            return send_json(con, 200, j);
        }
        if (get)
            return send_json(con, 200, call_json(c));
        if (strcmp(method, "DELETE") == 0) {
            call_log(c, LOG_INFO, "hang-up requested through the API");
            if (!c->end_reason)
                c->end_reason = "api-hangup";
            call_hangup(c, 480, "Temporarily Unavailable");
            cJSON *j = cJSON_CreateObject();
            cJSON_AddBoolToObject(j, "ok", true);
            return send_json(con, 200, j);
        }
        return send_error(con, 405, "invalid-request-error", "use GET or DELETE");
    }
    return send_error(con, 404, "not-found", "no such resource");
}

/* The method as a literal, for looplag (its names must outlive the request). */
static const char *http_method_name(const char *method)
{
    static const char *const known[] = {"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return "other-method";
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct api *api = cls;
    struct request *req = *con_cls;
    if (!req) {
        req = xcalloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (req->len + *upload_data_size > MAX_BODY) {
            req->too_big = true;
        } else {
            char *p = xrealloc(req->body, req->len + *upload_data_size + 1);
            if (!p)
                return MHD_NO;
            req->body = p;
            memcpy(req->body + req->len, upload_data, *upload_data_size);
            req->len += *upload_data_size;
            req->body[req->len] = '\0';
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->fwd) {
        /* resumed: the owner has answered (or could not) */
        struct forward *f = req->fwd;
        if (!f->done)
            return MHD_YES;
        enum MHD_Result r = forward_reply(con, f);
        req->fwd = NULL;
        pending_free(api, f);
        return r;
    }
    struct looplag_mark m;
    looplag_begin(&m, "API", http_method_name(method), url);
    enum MHD_Result r = route(api, con, url, method, req);
    looplag_end(&m);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *req = *con_cls;
    if (req) {
        if (req->fwd)
            pending_free(cls, req->fwd);
        free(req->body);
        free(req);
        *con_cls = NULL;
    }
}

/* ---- loop integration -------------------------------------------------- */

static void on_connection(void *cls, struct MHD_Connection *con, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct api *api = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
        api->closed = true;
}

static void rearm(struct api *api);

static void on_timer(struct app *app, su_timer_t *t, void *arg)
{
    struct api *api = arg;
    struct looplag_mark m;
    looplag_begin(&m, "API", "timer", NULL);
    MHD_run(api->mhd);
    rearm(api);
    looplag_end(&m);
}

static void rearm(struct api *api)
{
    MHD_UNSIGNED_LONG_LONG ms;
    /* At its connection limit MHD takes the listen socket out of its epoll
     * set and puts it back only at the start of a later MHD_run(). When the
     * run that closed the last connections was the final one (nothing left
     * to time out, nothing readable), nothing would call MHD again and the
     * API stayed deaf until restart: after any close, run once more. */
    if (api->closed) {
        api->closed = false;
        su_timer_set_interval(api->timer, on_timer, api, 1);
    } else if (MHD_get_timeout(api->mhd, &ms) == MHD_YES)
        su_timer_set_interval(api->timer, on_timer, api, (su_duration_t)(ms > 60000 ? 60000 : ms));
    else
        su_timer_reset(api->timer);
}

static int on_readable(struct app *app, su_wait_t *w, void *arg)
{
    struct api *api = arg;
    struct looplag_mark m;
    looplag_begin(&m, "API", "socket", NULL);
    MHD_run(api->mhd);
    rearm(api);
    looplag_end(&m);
    return 0;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    /* at a descriptor or connection limit MHD repeats itself per attempt */
    static struct log_limit limit;
    unsigned long suppressed;
    if (!log_limit_allow(&limit, 5, time(NULL), &suppressed))
        return;
    char text[256];
    vsnprintf(text, sizeof text, fmt, ap);
    size_t n = strlen(text);
    if (n && text[n - 1] == '\n')
        text[n - 1] = '\0';
    log_warn("api: %s%s", text, log_limit_note(suppressed));
}

struct api *api_start(struct app *app, char *err, size_t errlen)
{
    char host[128];
    const char *listen = app->cfg->api_listen;
    const char *colon = strrchr(listen, ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    if (host[0] == '[') { /* [::1]:8080 */
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
        snprintf(err, errlen, "api.listen \"%s\": host must be an IP address", listen);
        return NULL;
    }

    struct api *api = xcalloc(1, sizeof *api);
    api->app = app;
    /* suspend/resume: a request forwarded to another node waits (SPEC 13) */
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    api->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, api, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, api, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, api, MHD_OPTION_CONNECTION_LIMIT, (unsigned)API_MAX_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)API_MAX_PER_SOURCE,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)app->cfg->api_idle_timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(128 * 1024), MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!api->mhd) {
        snprintf(err, errlen, "cannot listen on api.listen \"%s\" (address in use?)", listen);
        free(api);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(api->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info || su_wait_create(&api->wait, info->epoll_fd, SU_WAIT_IN) < 0 ||
        (api->wait_index = su_root_register(app->root, &api->wait, on_readable, api, 0)) < 0) {
        snprintf(err, errlen, "cannot register the API on the event loop");
        MHD_stop_daemon(api->mhd);
        free(api);
        return NULL;
    }
    api->timer = su_timer_create(su_root_task(app->root), 0);
    rearm(api);
    return api;
}

void api_stop(struct api *api)
{
    if (!api)
        return;
    /* Forwards still waiting get no answer: their connections are resumed
     * so MHD_stop_daemon closes them (it will not stop over suspended ones). */
    while (api->forwards) {
        struct forward *f = api->forwards;
        pending_cancel(api, f);
        forward_fail(f, 503, "service-unavailable", "the node is stopping"); /* unlinks f */
    }
    /* Deregister before MHD closes the fd (su's epoll would see EBADF). */
    su_root_deregister(api->app->root, api->wait_index);
    su_timer_destroy(api->timer);
    MHD_stop_daemon(api->mhd);
    free(api);
}
