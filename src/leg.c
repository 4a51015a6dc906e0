/* leg.c - the leg session layer: a leg's life and state, the INVITE it
 * sends and every response to it, the requests inside its dialog, and its
 * end. What a response means is decided by the leg's owner (leg->ops); see
 * leg.h. SDP and relay helpers are in leg_media.c. */
#include "sofia_types.h"

#include "leg.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/msg_header.h>
#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>

#include "app.h"
#include "config.h"
#include "digest.h"
#include "dtmf.h"
#include "log.h"
#include "looplag.h"
#include "random.h"
#include "relay.h"
#include "sip_guard.h"
#include "target.h"
#include "transfer.h"
#include "xalloc.h"

/* ---- life -------------------------------------------------------------- */

struct leg *leg_new(struct call *call, enum leg_role role, enum leg_far far,
                    const struct leg_ops *ops)
{
    struct leg *leg = xcalloc(1, sizeof *leg);
    leg->call = call;
    leg->role = role;
    leg->far = far;
    leg->ops = ops;
    uint64_t r;
    random_bytes(&r, sizeof r);
    leg->origin.id = r >> 1; /* keep it positive for peers that parse signed */
    leg->origin.version = 1;
    return leg;
}

void leg_free(struct leg *leg)
{
    if (!leg)
        return;
    struct call *c = leg->call;
    if (c) {
        if (c->caller == leg)
            c->caller = NULL;
        if (c->room == leg)
            c->room = NULL;
        if (c->target == leg)
            c->target = NULL;
        for (struct leg **p = &c->zombies; *p; p = &(*p)->znext)
            if (*p == leg) {
                *p = leg->znext;
                break;
            }
        if (c->xfer && c->xfer->notify_leg == leg)
            c->xfer->notify_leg = NULL;
    }
    dtmf_cancel(leg->dtmf); /* it sends through leg->ep */
    su_timer_destroy(leg->response_timer);
    relay_ep_free(leg->ep);
    free(leg->sdp_out);
    free(leg->sdp_in);
    free(leg->uri);
    free(leg->contact);
    free(leg->route);
    free(leg->media_nets);
    free(leg->auth_trunk);
    /* SRTP keys do not outlive the leg in freed memory */
    explicit_bzero(leg->srtp_rx, sizeof leg->srtp_rx);
    explicit_bzero(leg->srtp_tx, sizeof leg->srtp_tx);
    explicit_bzero(leg->srtp_ep_rx, sizeof leg->srtp_ep_rx);
    explicit_bzero(leg->srtp_ep_tx, sizeof leg->srtp_ep_tx);
    free(leg);
}

void leg_detach(struct leg *leg)
{
    struct call *c = leg->call;
    if (c->room == leg)
        c->room = NULL;
    if (c->target == leg)
        c->target = NULL;
    if (leg->state == LEG_GONE && !leg->nh) {
        /* nothing left to end (a quarantined leg's handle is parked for
         * good): as a zombie it would keep the call from ever being over */
        leg_free(leg);
        return;
    }
    leg->detached = true;
    leg->ops = NULL;
    leg->reinvite_done = NULL;
    leg->znext = c->zombies;
    c->zombies = leg;
}

void leg_set_contact(struct app *app, struct leg *leg, const char *transport, bool sips)
{
    free(leg->contact);
    leg->contact = NULL;
    bool tls = sips || (transport && strcasecmp(transport, "tls") == 0);
    leg->tls = tls;
    /* a wildcard listen address is no address to give anyone: sofia then
     * picks an interface's (sip.advertise names the right one) */
    const char *h = app->sip_host;
    if (!*h || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "[::]") == 0 || strcmp(h, "::") == 0 ||
        strcmp(h, "*") == 0)
        return;
    char buf[200];
    /* The scheme follows the dialog's: a sips: Request-URI needs a sips:
     * Contact (RFC 3261 8.1.1.8), a sip: one over TLS gets sip: with
     * ;transport=tls, as the peer wrote its own. libre (baresip 1.0) cannot
     * send its ACK to a sips: Contact it did not ask for (ENOSYS) and leaves
     * the call. */
    if (tls && app->sips_port && sips)
        snprintf(buf, sizeof buf, "<sips:%s:%d>", h, app->sips_port);
    else if (tls && app->sips_port)
        snprintf(buf, sizeof buf, "<sip:%s:%d;transport=tls>", h, app->sips_port);
    else if (tls || (transport && strcasecmp(transport, "tcp") == 0))
        snprintf(buf, sizeof buf, "<sip:%s:%d;transport=tcp>", h, app->sip_port);
    else
        snprintf(buf, sizeof buf, "<sip:%s:%d>", h, app->sip_port);
    leg->contact = xstrdup(buf);
}

void leg_set_contact_from_request(struct app *app, struct leg *leg, const sip_t *sip)
{
    const char *tp = sip && sip->sip_via ? sip->sip_via->v_protocol : NULL;
    const char *slash = tp ? strrchr(tp, '/') : NULL;
    bool sips = sip && sip->sip_request && sip->sip_request->rq_url->url_type == url_sips;
    leg_set_contact(app, leg, slash ? slash + 1 : "udp", sips);
}

/* The transport a request to uri takes: sips: or ;transport=tls is TLS. */
static const char *uri_transport(const char *uri);

bool leg_uri_is_tls(const char *uri)
{
    return strcmp(uri_transport(uri), "tls") == 0;
}

static const char *uri_transport(const char *uri)
{
    if (strncasecmp(uri, "sips:", 5) == 0)
        return "tls";
    const char *t = strcasestr(uri, ";transport=");
    if (t) {
        t += 11;
        if (strncasecmp(t, "tls", 3) == 0)
            return "tls";
        if (strncasecmp(t, "tcp", 3) == 0)
            return "tcp";
    }
    return "udp";
}

static const char *const state_names[] = {"idle", "early", "answered", "confirmed", "ending",
                                          "gone"};
static const char *const neg_names[] = {"stable", "offer-sent", "offer-sent-in-2xx",
                                        "offer-wanted", "offer-received",
                                        "offer-received-in-2xx"};

const char *leg_state_name(enum leg_state s) { return state_names[s]; }
const char *leg_neg_name(enum leg_neg n) { return neg_names[n]; }

bool leg_set_state(struct leg *leg, enum leg_state to)
{
    enum leg_state from = leg->state;
    if (to == from)
        return true;
    /* Dialogs only move forward; ENDING and GONE may be reached from any
     * state (a CANCEL, a quarantine). */
    if (to < from) {
        call_log(leg->call, LOG_WARN, "%s leg: refused state change %s -> %s",
                 leg_role_name(leg->role), state_names[from], state_names[to]);
        return false;
    }
    if (log_get_level() >= LOG_DEBUG)
        call_log(leg->call, LOG_DEBUG, "%s leg: %s -> %s", leg_role_name(leg->role),
                 state_names[from], state_names[to]);
    leg->state = to;
    return true;
}

void leg_set_neg(struct leg *leg, enum leg_neg to)
{
    if (leg->neg == to)
        return;
    if (log_get_level() >= LOG_DEBUG)
        call_log(leg->call, LOG_DEBUG, "%s leg: offer/answer %s -> %s",
                 leg_role_name(leg->role), neg_names[leg->neg], neg_names[to]);
    leg->neg = to;
}

struct leg *leg_peer(const struct leg *leg)
{
    struct call *c = leg->call;
    if (leg->detached)
        return NULL;
    if (leg == c->caller)
        return c->room;
    if (leg == c->room)
        return c->caller;
    return NULL; /* a transfer target is bridged to nobody until it answers */
}

const char *leg_role_name(enum leg_role role)
{
    switch (role) {
    case LEG_CALLER:
        return "caller";
    case LEG_ROOM:
        return "room";
    case LEG_TARGET:
        return "target";
    }
    return "?";
}

const char *leg_far_name(enum leg_far far)
{
    switch (far) {
    case FAR_TRUNK:
        return "trunk";
    case FAR_ROOM:
        return "room";
    case FAR_PSTN:
        return "PSTN gateway";
    case FAR_SIP:
        return "external SIP";
    case FAR_UNKNOWN:
        break;
    }
    return "unknown";
}

void leg_source(nua_t *nua, char *buf, size_t len, struct sockaddr_storage *sa_out)
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

/* ---- ending ------------------------------------------------------------ */

const char *leg_phrase(nua_handle_t *nh, const char *phrase)
{
    return phrase ? su_strdup(nua_handle_home(nh), phrase) : NULL;
}

void leg_hangup(struct leg *leg, int status, const char *phrase)
{
    if (!leg)
        return;
    if (!leg->nh) {
        /* never dialled (a room waiting for the resolver), or its handle
         * is already given up: nothing to end */
        leg_set_state(leg, LEG_GONE);
        return;
    }
    if (leg->hangup_sent || leg->state == LEG_GONE)
        return;
    leg->hangup_sent = true;
    struct call *c = leg->call;
    const char *role = leg_role_name(leg->role);

    if (!leg->dialled && leg->state < LEG_ANSWERED) {
        call_log(c, LOG_INFO, "caller leg: answering %d %s", status, phrase);
        nua_respond(leg->nh, status, leg_phrase(leg->nh, phrase), TAG_END());
    } else if (leg->dialled && leg->state < LEG_ANSWERED) {
        call_log(c, LOG_INFO, "%s leg: CANCEL", role);
        nua_cancel(leg->nh, TAG_END());
    } else {
        if (leg->ack_pending) {
            /* A 2xx we never ACKed: ACK it so the peer stops
             * retransmitting, then BYE. */
            leg->ack_pending = false;
            nua_ack(leg->nh, TAG_IF(leg->sdp_out, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
                    TAG_IF(leg->sdp_out, SIPTAG_PAYLOAD_STR(leg->sdp_out)), TAG_END());
        }
        call_log(c, LOG_DEBUG, "%s leg: BYE", role);
        nua_bye(leg->nh, TAG_END());
    }
    leg_set_state(leg, LEG_ENDING);
}

/* Any ACK, BYE or even nua_handle_destroy() on such a dialog kills the
 * process (endless recursion in nua, or an assertion when destroyed in the
 * middle of its transaction). The peer stops retransmitting after 64*T1. */
static struct leg sentinel; /* a marker: its contents are never used */

void leg_quarantine(struct app *app, struct leg *leg)
{
    nua_handle_bind(leg->nh, &sentinel);
    leg->nh = NULL;
    leg->ack_pending = false;
    leg->hangup_sent = true;
    leg->reinvite_done = NULL;
    leg_set_state(leg, LEG_GONE);
    app->stats.quarantined++;
}

bool leg_is_quarantine_sentinel(const struct leg *leg) { return leg == &sentinel; }

void leg_terminated(struct app *app, struct leg *leg)
{
    dtmf_cancel(leg->dtmf); /* digits by SIP INFO go through leg->nh */
    if (leg->nh) {
        nua_handle_bind(leg->nh, NULL);
        nua_handle_destroy(leg->nh);
        leg->nh = NULL;
    }
    leg_set_state(leg, LEG_GONE);
    leg->reinvite_done = NULL;
    if (leg->ops && leg->ops->gone)
        leg->ops->gone(app, leg);
    else
        leg_free(leg); /* detached: nobody else holds it */
}

/* ---- digest authentication --------------------------------------------- */

void leg_auth_from_trunk(struct leg *leg, const struct trunk_cfg *trunk)
{
    free(leg->auth_trunk);
    leg->auth_trunk = trunk && trunk->auth.username ? xstrdup(trunk->name) : NULL;
    leg->auth_retrying = false;
}

bool leg_auth_response(struct app *app, struct leg *leg, int status, const sip_t *sip,
                       const char *method)
{
    if (status != 401 && status != 407) {
        if (status >= 200)
            leg->auth_retrying = false; /* that request is over */
        return false;
    }
    if (!leg->nh || !leg->auth_trunk)
        return false;
    if (leg->state == LEG_EARLY && (leg->hangup_sent || leg->detached))
        return false; /* a set-up we are giving up: no second INVITE */
    struct call *c = leg->call;
    const char *who = leg->ops ? leg->ops->name : leg_role_name(leg->role);
    if (leg->auth_retrying) {
        /* nua drops refused credentials and reports the challenge: never
         * answer it again (carrier-interop notes, section 2) */
        leg->auth_retrying = false;
        call_log(c, LOG_WARN, "%s: %s challenged again (%d) after our credentials: refused",
                 who, method, status);
        return false;
    }
    const struct trunk_cfg *tr = config_trunk_by_name(app->cfg, leg->auth_trunk);
    if (!tr || !tr->auth.username) {
        call_log(c, LOG_WARN, "%s: %s challenged (%d) but trunk \"%s\" has no credentials now",
                 who, method, status, leg->auth_trunk);
        return false;
    }
    char realm[256];
    if (!digest_challenge(sip, status, realm, sizeof realm)) {
        call_log(c, LOG_WARN, "%s: %s challenged (%d) without a usable Digest challenge", who,
                 method, status);
        return false;
    }
    if (tr->auth.realm && strcmp(tr->auth.realm, realm) != 0) {
        call_log(c, LOG_WARN,
                 "%s: %s challenged (%d) for realm \"%s\", trunk \"%s\" answers only \"%s\"",
                 who, method, status, realm, tr->name, tr->auth.realm);
        return false;
    }
    /* nua_authenticate() copies its tags; the password is never logged */
    size_t len = strlen(realm) + strlen(tr->auth.username) + strlen(tr->auth.password) + 16;
    char *cred = xmalloc(len);
    snprintf(cred, len, "Digest:\"%s\":%s:%s", realm, tr->auth.username, tr->auth.password);
    call_log(c, LOG_INFO, "%s: %s challenged (%d, realm \"%s\"): answering as \"%s\" (trunk %s)",
             who, method, status, realm, tr->auth.username, tr->name);
    if (leg->response_timer)
        su_timer_reset(leg->response_timer); /* a response came back */
    leg->auth_retrying = true;
    nua_authenticate(leg->nh, NUTAG_AUTH(cred), TAG_END());
    memset(cred, 0, len);
    free(cred);
    return true;
}

/* ---- set-up ------------------------------------------------------------ */

/* nta gives an INVITE that never gets an answer 408 after 64*T1, but a URI
 * naming a host whose DNS never answers waits in sofia's resolver for a
 * minute or more (its retries of A and AAAA): the leg is given up when
 * nothing at all, not even 100 Trying, came back in time. */
static void no_response(struct app *app, su_timer_t *t, void *arg)
{
    struct leg *leg = arg;
    if (leg->state != LEG_EARLY || leg->hangup_sent || !leg->ops || !leg->ops->failed)
        return;
    struct looplag_mark m;
    looplag_begin(&m, "timer", "response", NULL);
    call_log(leg->call, LOG_WARN,
             "%s %s: no response in %d s (its host does not resolve or does not answer): "
             "giving up",
             leg->ops->name, leg->uri ? leg->uri : "?", leg->response_timeout);
    leg->ops->failed(app, leg, LEG_FAIL_TIMEOUT, 408, "Request Timeout");
    looplag_end(&m);
}

int leg_invite(struct app *app, struct leg *leg, const char *from, const char *headers,
               const char *body, int timeout)
{
    char to[600];
    if (!leg->uri || target_name_addr(leg->uri, to, sizeof to) < 0)
        return -1;
    leg->nh = nua_handle(app->nua, leg, NUTAG_URL(leg->uri), SIPTAG_TO_STR(to),
                         SIPTAG_FROM_STR(from), TAG_END());
    if (!leg->nh)
        return -1;
    leg_set_contact(app, leg, uri_transport(leg->uri), strncasecmp(leg->uri, "sips:", 5) == 0);
    leg->dialled = true;
    leg_set_state(leg, LEG_EARLY);
    leg_set_neg(leg, body ? NEG_OFFER_SENT : NEG_OFFER_WANTED);
    /* the call's hop count, whoever asked for the leg (RFC 7332) */
    char hops[16];
    snprintf(hops, sizeof hops, "%u", leg->call->max_forwards);
    nua_invite(leg->nh, LEG_CONTACT(leg), TAG_IF(leg->route, SIPTAG_ROUTE_STR(leg->route)),
               TAG_IF(headers, SIPTAG_HEADER_STR(headers)),
               SIPTAG_MAX_FORWARDS_STR(hops),
               TAG_IF(body, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
               TAG_IF(body, SIPTAG_PAYLOAD_STR(body)), TAG_END());
    if (timeout > 0) {
        leg->response_timeout = timeout;
        if (!leg->response_timer)
            leg->response_timer = su_timer_create(su_root_task(app->root), 0);
        if (leg->response_timer)
            su_timer_set_interval(leg->response_timer, no_response, leg,
                                  (su_duration_t)timeout * 1000);
    }
    return 0;
}

static void setup_response(struct app *app, struct leg *leg, int status, const char *phrase,
                           const sip_t *sip)
{
    const struct leg_ops *ops = leg->ops;
    struct call *c = leg->call;
    char why[80];

    if (leg->response_timer)
        su_timer_reset(leg->response_timer);
    if (status < 200) {
        if (status == 100)
            return;
        /* an early dialog: CANCEL needs no target, nothing else goes to it */
        if (sip && sip->sip_to && sip->sip_to->a_tag &&
            !sip_guard_dialog_ok(sip, false, why, sizeof why)) {
            log_security("bad-contact", "-", c->id, "%s %d refused: %s", ops->name, status, why);
            if (ops->failed)
                ops->failed(app, leg, LEG_FAIL_CONTACT, status, phrase);
            return;
        }
        struct leg_sdp early;
        bool has = leg_sdp_of(sip, &early);
        if (ops->progress)
            ops->progress(app, leg, status, phrase, has ? &early : NULL);
        return;
    }

    if (status >= 300) {
        call_log(c, LOG_INFO, "%s answered %d %s", ops->name, status, phrase ? phrase : "");
        leg->hangup_sent = true; /* the INVITE transaction is over */
        leg_set_state(leg, LEG_ENDING);
        leg_set_neg(leg, NEG_STABLE);
        if (ops->failed)
            ops->failed(app, leg, LEG_FAIL_STATUS, status, phrase);
        if (status == 401 || status == 407)
            /* nua keeps a challenge nobody answered waiting for
             * nua_authenticate() and never ends that handle itself */
            leg_terminated(app, leg); /* the leg may be freed */
        return;
    }

    /* 2xx */
    leg_set_state(leg, LEG_ANSWERED);
    leg->ack_pending = true;
    if (!sip_guard_dialog_ok(sip, true, why, sizeof why)) {
        /* Never let nua send ACK or BYE to that target (sofia guide
         * section 0): the handle is parked for good. */
        log_security("bad-contact", "-", c->id, "%s 2xx refused: %s; leg quarantined", ops->name,
                     why);
        leg_quarantine(app, leg);
        if (ops->failed)
            ops->failed(app, leg, LEG_FAIL_CONTACT, status, phrase);
        return;
    }
    if (ops->wanted && !ops->wanted(leg)) {
        /* the answer crossed a hang-up or a cancel: take it and end it */
        call_log(c, LOG_INFO, "%s answered when no longer wanted: ACK and BYE", ops->name);
        leg_hangup(leg, 487, "Request Terminated");
        return;
    }
    struct leg_sdp sdp;
    bool has = leg_sdp_of(sip, &sdp);
    if (has && sdp.rc < 0) {
        call_log(c, LOG_WARN, "%s answered with SDP it cannot use", ops->name);
        if (ops->failed)
            ops->failed(app, leg, LEG_FAIL_SDP, status, phrase);
        return;
    }
    char swhy[160];
    if (has && leg_srtp_answer(app, leg, &sdp.info, swhy, sizeof swhy)) {
        call_log(c, LOG_WARN, "%s answer refused: %s", ops->name, swhy);
        if (ops->failed)
            ops->failed(app, leg, LEG_FAIL_SDP, status, phrase);
        return;
    }
    if (leg->neg == NEG_OFFER_WANTED && has)
        leg_set_neg(leg, NEG_OFFER_RECEIVED_IN_2XX); /* our answer goes in the ACK */
    else if (leg->neg == NEG_OFFER_SENT)
        leg_set_neg(leg, NEG_STABLE); /* the answer, here or in a reliable 1xx */
    if (has)
        leg_learn_sdp(leg, &sdp.info, sdp.body, sdp.len);
    if (leg->neg != NEG_OFFER_RECEIVED_IN_2XX) {
        leg->ack_pending = false;
        nua_ack(leg->nh, TAG_END());
        /* our ACK is on its way: the dialog is confirmed for us now, not
         * only when nua reports it (a transfer may start at once) */
        leg_set_state(leg, LEG_CONFIRMED);
    }
    if (ops->answered)
        ops->answered(app, leg, status, has ? &sdp : NULL);
}

/* ---- re-INVITE --------------------------------------------------------- */

void leg_reinvite(struct app *app, struct leg *leg, const char *body, leg_answer_h *done)
{
    leg_set_neg(leg, NEG_OFFER_SENT);
    leg->reinvite_done = done;
    nua_invite(leg->nh, LEG_CONTACT(leg), SIPTAG_CONTENT_TYPE_STR("application/sdp"),
               SIPTAG_PAYLOAD_STR(body),
               TAG_END());
}

static void reinvite_response(struct app *app, struct leg *leg, int status, const char *phrase,
                              const sip_t *sip)
{
    if (status < 200)
        return;
    leg_answer_h *done = leg->reinvite_done;
    leg->reinvite_done = NULL;
    leg_set_neg(leg, NEG_STABLE);
    struct leg_answer a = {.status = status, .phrase = phrase};
    struct leg_sdp sdp;
    if (status < 300) {
        nua_ack(leg->nh, TAG_END());
        if (leg_sdp_of(sip, &sdp) && sdp.rc == 0) {
            leg_learn_sdp(leg, &sdp.info, sdp.body, sdp.len);
            a.sdp = &sdp;
        }
    }
    done(app, leg, &a);
}

/* A 2xx to a request we sent mid-call (re-INVITE, session refresh,
 * transfer re-INVITE, UPDATE) carried a Contact or Record-Route sofia
 * cannot send to. Whoever waits for the re-INVITE hears of it, then the
 * owner ends the call (ops->broken). The parser (sip_guard_mclass) kept the
 * bad URI out of the dialog, so this leg's 2xx is ACKed and its BYE goes to
 * the target it had before. Only if the URI did reach nua (no guarded
 * parser) is the dialog quarantined instead: never ACKed or BYEd (see
 * leg_quarantine), the leg treated as gone. */
static void unusable(struct app *app, struct leg *leg, const sip_t *sip, bool ack,
                     const char *what, const char *why)
{
    struct call *c = leg->call;
    bool poisoned = sip_guard_reached_dialog(sip);
    log_security("bad-contact", "-", c->id, "%s from the %s leg refused: %s; %s", what,
                 leg_role_name(leg->role), why, poisoned ? "leg quarantined" : "call ended");
    leg_answer_h *done = leg->reinvite_done;
    leg->reinvite_done = NULL;
    leg_set_neg(leg, NEG_STABLE);
    if (done) {
        struct leg_answer a = {.status = 500, .phrase = "Far End Sent Unusable Contact",
                               .unusable = true};
        done(app, leg, &a);
    }
    if (poisoned) {
        leg_quarantine(app, leg);
        leg_terminated(app, leg);
        return;
    }
    if (ack)
        nua_ack(leg->nh, TAG_END());
    if (!leg->detached && !leg->hangup_sent && leg->ops && leg->ops->broken)
        leg->ops->broken(app, leg, 500, "Server Internal Error");
}

/* ---- dispatch ---------------------------------------------------------- */

void leg_invite_response(struct app *app, nua_t *nua, struct leg *leg, int status,
                         const char *phrase, const sip_t *sip)
{
    char why[80];
    if (leg_auth_response(app, leg, status, sip,
                          leg->state == LEG_EARLY && leg->dialled ? "INVITE"
                                                                             : "re-INVITE"))
        return; /* nua sends it again with our credentials */
    if (status > 100 && status < 300 && leg->dialled) {
        /* a room's or target's media may come from where its SIP answers
         * came from (SPEC section 9), as well as from its SDP address */
        char src[80];
        struct sockaddr_storage sa;
        leg_source(nua, src, sizeof src, &sa);
        leg_media_from_sip(leg, (struct sockaddr *)&sa);
    }
    /* Set-up answers (EARLY) are checked where they are handled; the
     * Contact is optional in a 2xx that only refreshes a dialog. */
    if (status >= 200 && status < 300 && leg->state != LEG_EARLY && leg->nh &&
        !sip_guard_dialog_ok(sip, false, why, sizeof why)) {
        unusable(app, leg, sip, true, leg->reinvite_done ? "re-INVITE 2xx" : "2xx", why);
        return;
    }
    if (leg->reinvite_done)
        reinvite_response(app, leg, status, phrase, sip);
    else if (leg->state == LEG_EARLY && leg->ops && !leg->detached)
        setup_response(app, leg, status, phrase, sip);
    else if (leg->state == LEG_EARLY && (status == 401 || status == 407) && leg->nh)
        leg_terminated(app, leg); /* detached: nua would hold the challenged handle; freed */
    else if (status >= 200 && status < 300 && leg->nh)
        nua_ack(leg->nh, TAG_END()); /* a 2xx to nua's own session refresh */
}

void leg_bye_response(struct app *app, struct leg *leg, int status, const sip_t *sip)
{
    if (leg_auth_response(app, leg, status, sip, "BYE"))
        return; /* nua sends the BYE again with our credentials */
    if ((status == 401 || status == 407) && leg->nh) {
        /* refused or not answerable: nua would wait for credentials
         * forever; the dialog is over for us */
        call_log(leg->call, LOG_WARN, "%s leg: BYE challenged %d and not answered: giving the "
                 "dialog up", leg_role_name(leg->role), status);
        leg_terminated(app, leg); /* the leg may be freed */
    }
}

void leg_update_response(struct app *app, struct leg *leg, int status, const sip_t *sip)
{
    char why[80];
    if (leg_auth_response(app, leg, status, sip, "UPDATE"))
        return;
    if (leg->nh && status >= 200 && status < 300 &&
        !sip_guard_dialog_ok(sip, false, why, sizeof why))
        unusable(app, leg, sip, false, "UPDATE 2xx", why);
}

/* ---- in dialog --------------------------------------------------------- */

static void broken(struct app *app, struct leg *leg, int status, const char *phrase)
{
    if (leg->ops && leg->ops->broken)
        leg->ops->broken(app, leg, status, phrase);
}

/* The peer's answer to an offer we passed on from its partner (the leg
 * that offered waits in NEG_OFFER_RECEIVED). */
static void forwarded_answer(struct app *app, struct leg *leg, const struct leg_answer *a)
{
    struct leg *from = leg_peer(leg);
    bool waiting = from && from->nh && from->neg == NEG_OFFER_RECEIVED;
    if (a->status >= 300) {
        if (waiting) {
            /* a challenge is this hop's business (and our credentials, if
             * any, were refused): never passed on to the other leg */
            bool keep = a->status < 700 && a->status != 401 && a->status != 407;
            leg_set_neg(from, NEG_STABLE);
            nua_respond(from->nh, keep ? a->status : 500,
                        keep ? leg_phrase(from->nh, a->phrase) : "Server Internal Error",
                        TAG_END());
        }
        if (!a->unusable && (a->status == 408 || a->status == 481)) {
            call_log(leg->call, LOG_INFO, "re-INVITE to the %s leg failed %d: ending the call",
                     leg_role_name(leg->role), a->status);
            broken(app, leg, 500, "Server Internal Error");
        }
        return;
    }
    if (!waiting)
        return;
    leg_set_neg(from, NEG_STABLE);
    char *body = a->sdp ? leg_sdp_for(app, from, a->sdp->body, a->sdp->len) : NULL;
    if (!body) {
        nua_respond(from->nh, 488, "Not Acceptable Here", TAG_END());
        return;
    }
    nua_respond(from->nh, 200, "OK", LEG_CONTACT(from), SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                SIPTAG_PAYLOAD_STR(body), TAG_END());
}

void leg_i_invite(struct app *app, nua_t *nua, struct leg *leg, const sip_t *sip)
{
    struct call *c = leg->call;
    struct leg *other = leg_peer(leg);
    char why[80];

    if (!sip_guard_dialog_ok(sip, false, why, sizeof why)) {
        char src[80];
        struct sockaddr_storage sa;
        leg_source(nua, src, sizeof src, &sa);
        log_security("bad-contact", src, c->id, "re-INVITE refused 400: %s", why);
        nua_respond(leg->nh, 400, "Bad Contact", TAG_END());
        return;
    }
    /* glare, or a leg not (or no longer) bridged: RFC 3261 section 14.2 */
    if (!other || !other->nh || other->state != LEG_CONFIRMED || leg->state != LEG_CONFIRMED ||
        leg->neg != NEG_STABLE || other->neg != NEG_STABLE) {
        nua_respond(leg->nh, 491, "Request Pending", TAG_END());
        return;
    }
    struct leg_sdp sdp;
    if (!leg_sdp_of(sip, &sdp)) {
        /* Offerless re-INVITE: offer what this leg already has; its
         * answer arrives in the ACK. */
        if (!leg->sdp_out) {
            nua_respond(leg->nh, 488, "Not Acceptable Here", TAG_END());
            return;
        }
        leg_set_neg(leg, NEG_OFFER_SENT_IN_2XX);
        nua_respond(leg->nh, 200, "OK", LEG_CONTACT(leg), SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                    SIPTAG_PAYLOAD_STR(leg->sdp_out), TAG_END());
        return;
    }
    if (sdp.rc < 0) {
        const char *phrase;
        int status = sdpx_refusal(sdp.rc, &phrase);
        call_log(c, LOG_INFO, "re-INVITE refused %d: %s", status, sdp.err);
        nua_respond(leg->nh, status, phrase, TAG_END());
        return;
    }
    if (leg->have_in_version && sdp.info.o_id == leg->in_o_id &&
        sdp.info.o_version == leg->in_o_version && leg->sdp_out) {
        /* Same description (a session refresh): answer here, unchanged. */
        nua_respond(leg->nh, 200, "OK", LEG_CONTACT(leg), SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                    SIPTAG_PAYLOAD_STR(leg->sdp_out), TAG_END());
        return;
    }
    char swhy[160];
    if (leg_srtp_check(app, leg, &sdp.info, swhy, sizeof swhy)) {
        call_log(c, LOG_INFO, "re-INVITE refused 488: %s", swhy);
        nua_respond(leg->nh, 488, "Not Acceptable Here", TAG_END());
        return;
    }
    leg_learn_sdp(leg, &sdp.info, sdp.body, sdp.len);
    char *body = leg_sdp_for(app, other, sdp.body, sdp.len);
    if (!body) {
        nua_respond(leg->nh, 488, "Not Acceptable Here", TAG_END());
        return;
    }
    call_log(c, LOG_INFO, "re-INVITE from the %s leg forwarded", leg_role_name(leg->role));
    leg_set_neg(leg, NEG_OFFER_RECEIVED);
    leg_reinvite(app, other, body, forwarded_answer);
}

void leg_i_ack(struct app *app, struct leg *leg, const sip_t *sip)
{
    if (leg->state == LEG_ANSWERED)
        leg_set_state(leg, LEG_CONFIRMED);
    if (leg->neg != NEG_OFFER_SENT_IN_2XX)
        return;
    leg_set_neg(leg, NEG_STABLE);
    struct leg_sdp sdp;
    bool ok = leg_sdp_of(sip, &sdp) && sdp.rc == 0;
    if (ok)
        leg_learn_sdp(leg, &sdp.info, sdp.body, sdp.len);

    /* An offerless call: the peer's 2xx made the offer we passed on, and it
     * still waits for our ACK with this answer. */
    struct leg *peer = leg_peer(leg);
    if (!peer || !peer->nh || peer->neg != NEG_OFFER_RECEIVED_IN_2XX || !peer->ack_pending)
        return;
    peer->ack_pending = false;
    leg_set_neg(peer, NEG_STABLE);
    char *body = ok ? leg_sdp_for(app, peer, sdp.body, sdp.len) : NULL;
    if (!body) {
        call_log(leg->call, LOG_WARN, "%s's ACK carried no usable SDP answer",
                 leg_role_name(leg->role));
        nua_ack(peer->nh, TAG_END());
        broken(app, leg, 488, "Not Acceptable Here");
        return;
    }
    nua_ack(peer->nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(body),
            TAG_END());
    if (peer->state == LEG_ANSWERED)
        leg_set_state(peer, LEG_CONFIRMED);
}

void leg_i_update(struct app *app, nua_t *nua, struct leg *leg, const sip_t *sip)
{
    char why[80];
    if (!sip_guard_dialog_ok(sip, false, why, sizeof why)) {
        nua_respond(leg->nh, 400, "Bad Contact", NUTAG_WITH_THIS(nua), TAG_END());
        return;
    }
    struct leg_sdp sdp;
    if (!leg_sdp_of(sip, &sdp)) {
        /* Session refresh: nua adds the Session-Expires it negotiated. */
        nua_respond(leg->nh, 200, "OK", NUTAG_WITH_THIS(nua), LEG_CONTACT(leg), TAG_END());
        return;
    }
    /* An UPDATE offer: the relay keeps our side where it is, so the answer
     * is what this leg already has; learn where the peer now receives. */
    int rc = leg->sdp_out ? sdp.rc : SDPX_BAD;
    if (rc < 0) {
        const char *phrase;
        int status = sdpx_refusal(rc, &phrase);
        nua_respond(leg->nh, status, phrase, NUTAG_WITH_THIS(nua), TAG_END());
        return;
    }
    /* Our answer is the SDP the leg already has: an UPDATE may bring a new
     * key of the leg's, but may not switch SRTP on or off nor change the
     * suite or tag we answered. */
    char swhy[160];
    bool was_srtp = leg->srtp;
    struct sdpx_crypto was_tx[SDPX_MAX_STREAMS];
    memcpy(was_tx, leg->srtp_tx, sizeof was_tx);
    int srtp_refusal = leg_srtp_check(app, leg, &sdp.info, swhy, sizeof swhy);
    if (!srtp_refusal && (leg->srtp != was_srtp ||
                          memcmp(was_tx, leg->srtp_tx, sizeof was_tx) != 0)) {
        leg->srtp = was_srtp;
        memcpy(leg->srtp_tx, was_tx, sizeof was_tx);
        snprintf(swhy, sizeof swhy, "an UPDATE may not change SRTP (use a re-INVITE)");
        srtp_refusal = 488;
    }
    explicit_bzero(was_tx, sizeof was_tx);
    if (srtp_refusal) {
        call_log(leg->call, LOG_INFO, "UPDATE refused 488: %s", swhy);
        nua_respond(leg->nh, 488, "Not Acceptable Here", NUTAG_WITH_THIS(nua), TAG_END());
        return;
    }
    if (leg->ep)
        leg_learn_sdp(leg, &sdp.info, sdp.body, sdp.len);
    nua_respond(leg->nh, 200, "OK", NUTAG_WITH_THIS(nua), LEG_CONTACT(leg),
                SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(leg->sdp_out),
                TAG_END());
}

void leg_i_bye(struct app *app, struct leg *leg)
{
    call_log(leg->call, LOG_INFO, "BYE from the %s leg", leg_role_name(leg->role));
    leg->hangup_sent = true;
    leg_set_state(leg, LEG_ENDING);
    if (leg->ops && leg->ops->bye)
        leg->ops->bye(app, leg, false);
}

void leg_i_cancel(struct app *app, struct leg *leg)
{
    call_log(leg->call, LOG_INFO, "caller cancelled");
    leg->hangup_sent = true; /* nua already answered 487 */
    leg_set_state(leg, LEG_ENDING);
    if (leg->ops && leg->ops->bye)
        leg->ops->bye(app, leg, true);
}

void leg_refuse_refer(nua_t *nua, nua_handle_t *nh, struct leg *leg)
{
    char src[80];
    struct sockaddr_storage sa;
    leg_source(nua, src, sizeof src, &sa);
    /* a transfer target stays what it was (a PSTN gateway, an outside URI)
     * once it becomes the call's room leg */
    log_security("refer-refused", src, leg ? leg->call->id : NULL,
                 "REFER on a %s leg (far end: %s) refused 403",
                 leg ? leg_role_name(leg->role) : "stray", leg ? leg_far_name(leg->far) : "none");
    nua_respond(nh, 403, leg && leg->role == LEG_ROOM ? "Only Rooms May Transfer" : "Forbidden",
                NUTAG_WITH_THIS(nua), TAG_END());
    if (!leg)
        nua_handle_destroy(nh);
}

void leg_i_refer(struct app *app, nua_t *nua, struct leg *leg, const sip_t *sip, tagi_t tags[])
{
    /* REFER is in appl_method: nua waits for our answer, so nothing is
     * accepted before the owner's policy check. */
    if (leg->nh && leg->ops && leg->ops->refer && !leg->detached &&
        leg->state == LEG_CONFIRMED)
        leg->ops->refer(app, nua, leg, sip, tags);
    else if (leg->nh)
        leg_refuse_refer(nua, leg->nh, leg);
}
