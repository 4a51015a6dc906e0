/* b2bua.c - the SIP stack: one nua instance on the control loop, and the
 * dispatch of its events.
 *
 * Every nua event lands in on_event() on the control thread. The handle's
 * magic is the struct leg it belongs to (NULL: not ours, or a new INVITE).
 * Events of a leg go to the leg layer (leg.h), which reports to the leg's
 * owner; a new INVITE goes to the bridge; REFER answers and NOTIFYs on the
 * caller leg go to the transfer. After each leg event the call is checked
 * for its end (bridge_call_over). Stray handles are destroyed here. */
#include "sofia_types.h"

#include "b2bua.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tag_io.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/nta_tag.h>

#include "app.h"
#include "bridge.h"
#include "call.h"
#include "config.h"
#include "gateway.h"
#include "leg.h"
#include "log.h"
#include "looplag.h"
#include "registration.h"
#include "router.h"
#include "sip_guard.h"
#include "transfer.h"
#include "xalloc.h"

struct b2bua {
    struct app *app;
    nua_t *nua;
    char host[128]; /* our SIP host, for From of room legs */
    int port;
    void (*shutdown_done)(struct app *);
    bool shut_down; /* nua_r_shutdown reported completion */
};

/* Largest SIP message accepted (over TCP; UDP is capped by the datagram). */
#define SIP_MAX_MESSAGE (128 * 1024)
#define ALLOW "INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REFER, UPDATE"

/* OPTIONS is ours to answer (NUTAG_APPL_METHOD), so that a draining node
 * can tell the proxy in front to send new calls elsewhere (SPEC 13): 503
 * with Retry-After out of dialog; a dialog's keepalive is still 200. */
static void answer_options(nua_t *nua, nua_handle_t *nh, bool draining)
{
    if (!nh)
        return;
    if (draining)
        nua_respond(nh, 503, "Service Unavailable", SIPTAG_RETRY_AFTER_STR("30"),
                    NUTAG_WITH_THIS(nua), TAG_END());
    else
        nua_respond(nh, 200, "OK", SIPTAG_ALLOW_STR(ALLOW), SIPTAG_ACCEPT_STR("application/sdp"),
                    SIPTAG_SUPPORTED_STR("timer"), NUTAG_WITH_THIS(nua), TAG_END());
}

/* An event of one of our legs. */
static void leg_event(nua_event_t event, int status, char const *phrase, nua_t *nua,
                      struct app *app, struct leg *leg, sip_t const *sip, tagi_t tags[])
{
    int cs = -1;
    switch (event) {
    case nua_i_invite:
        leg_i_invite(app, nua, leg, sip);
        return;
    case nua_r_invite:
        leg_invite_response(app, nua, leg, status, phrase, sip);
        return;
    case nua_i_ack:
        leg_i_ack(app, leg, sip);
        return;
    case nua_i_cancel:
        leg_i_cancel(app, leg);
        return;
    case nua_i_bye:
        leg_i_bye(app, leg);
        return;
    case nua_i_update:
        if (leg->nh)
            leg_i_update(app, nua, leg, sip);
        return;
    case nua_r_update:
        leg_update_response(app, leg, status, sip);
        return;
    case nua_i_refer:
        leg_i_refer(app, nua, leg, sip, tags);
        return;
    case nua_i_options:
        /* in a dialog (a keepalive): the call is ours, draining or not */
        answer_options(nua, leg->nh, false);
        return;
    case nua_r_bye:
        /* a BYE challenged: answered once with the leg's trunk credentials */
        leg_bye_response(app, leg, status, sip);
        return;
    case nua_r_notify:
    case nua_r_info:
        leg_auth_response(app, leg, status, sip, event == nua_r_notify ? "NOTIFY" : "INFO");
        return;
    case nua_r_refer:
        if (leg_auth_response(app, leg, status, sip, "REFER"))
            return; /* nua sends the REFER again with our credentials */
        if (leg == leg->call->caller)
            transfer_refer_response(app, leg, status, phrase, sip, tags);
        return;
    case nua_i_notify:
        if (leg == leg->call->caller)
            transfer_refer_notify(app, leg, sip, tags);
        return;
    case nua_i_state:
        tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
        if (cs == nua_callstate_ready && leg->state == LEG_ANSWERED) {
            leg_set_state(leg, LEG_CONFIRMED);
        } else if (cs == nua_callstate_terminated) {
            call_log(leg->call, LOG_DEBUG, "%s leg terminated", leg_role_name(leg->role));
            leg_terminated(app, leg);
        }
        return;
    default:
        return;
    }
}

/* An event of a handle that is not a leg: a new request, or a stray. */
static void stray_event(nua_event_t event, int status, nua_t *nua, struct app *app,
                        nua_handle_t *nh, sip_t const *sip, tagi_t tags[])
{
    struct b2bua *b = app->b2bua;
    int cs = -1;
    switch (event) {
    case nua_i_invite:
        bridge_incoming(app, nua, nh, sip);
        return;
    case nua_i_update:
        if (nh)
            nua_respond(nh, 481, "Call Does Not Exist", NUTAG_WITH_THIS(nua), TAG_END());
        return;
    case nua_i_refer:
        if (nh)
            leg_refuse_refer(nua, nh, NULL);
        return;
    case nua_i_state:
        tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
        if (nh && cs == nua_callstate_terminated)
            nua_handle_destroy(nh);
        return;
    case nua_r_shutdown:
        if (status >= 200)
            b->shut_down = true;
        if (status >= 200 && b->shutdown_done)
            b->shutdown_done(app);
        return;
    case nua_i_options:
        answer_options(nua, nh, app->draining);
        if (nh)
            nua_handle_destroy(nh);
        return;
    case nua_i_register:
    case nua_i_subscribe:
    case nua_i_publish:
    case nua_i_message:
        if (nh) {
            nua_respond(nh, 405, "Method Not Allowed", SIPTAG_ALLOW_STR(ALLOW),
                        NUTAG_WITH_THIS(nua), TAG_END());
            nua_handle_destroy(nh);
        }
        return;
    case nua_r_invite:
    case nua_r_bye:
    case nua_r_cancel:
    case nua_r_ack:
    case nua_r_refer:
    case nua_r_update:
    case nua_i_active:
    case nua_i_terminated:
    case nua_i_prack:
    case nua_i_media_error:
    case nua_i_ack:
    case nua_i_cancel:
    case nua_i_bye:
        return;
    default:
        /* OPTIONS, NOTIFY, INFO...: nua has answered. Stray handles are
         * never bound to a leg and must be destroyed here. */
        if (nh)
            nua_handle_destroy(nh);
        return;
    }
}

static void dispatch(nua_event_t event, int status, char const *phrase, nua_t *nua,
                     struct app *app, nua_handle_t *nh, struct leg *leg, sip_t const *sip,
                     tagi_t tags[])
{
    if (leg_is_quarantine_sentinel(leg))
        return;
    if (log_get_level() >= LOG_DEBUG)
        log_msg(LOG_DEBUG, leg ? leg->call->id : NULL, "nua event %s %d %s", nua_event_name(event),
                status, phrase ? phrase : "");
    if (!leg && gateway_probe_event(app, event, status, phrase, nh))
        return; /* an OPTIONS probe of ours */
    if (!leg) {
        if (nh && registration_event(app, nh, event, status, phrase, sip))
            return;
        stray_event(event, status, nua, app, nh, sip, tags);
        return;
    }
    struct call *c = leg->call;
    leg_event(event, status, phrase, nua, app, leg, sip, tags);
    bridge_call_over(app, c);
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

/* The URL nua listens on. With sip.advertise set it is
 * "sip:PUBLIC:PORT;maddr=BIND": sofia names PUBLIC in Via and Contact while
 * the socket stays on BIND (a private address behind a 1:1 NAT). */
static int listen_url(const struct config *cfg, const char *uri, char *out, size_t len)
{
    char buf[256], pub[128];
    url_t url[1];
    if (snprintf(buf, sizeof buf, "%s", uri) >= (int)sizeof buf || url_d(url, buf) < 0 ||
        !url->url_host)
        return -1;
    if (!cfg->sip_advertise) {
        snprintf(out, len, "%s", uri);
        return 0;
    }
    config_sip_public_host(cfg, pub, sizeof pub);
    snprintf(out, len, "%s:%s%s%s;maddr=%s", url->url_type == url_sips ? "sips" : "sip", pub,
             url->url_port ? ":" : "", url->url_port ? url->url_port : "", url->url_host);
    return 0;
}

/* sofia reads its TLS files from one directory, as agent.pem (key and
 * chain) and cafile.pem, once, when the transport is made: a private
 * directory of links to the configured files, removed right after. */
static int tls_dir_make(const struct config *cfg, char *dir, size_t len, char *err, size_t errlen)
{
    char cert[PATH_MAX], ca[PATH_MAX], link_path[PATH_MAX + 32];
    if (!realpath(cfg->tls.certificate, cert) || !realpath(cfg->tls.ca, ca)) {
        snprintf(err, errlen, "sip.tls: %s: %s", cfg->tls.certificate, strerror(errno));
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, len, "%s/sipxferd-tls-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        snprintf(err, errlen, "sip.tls: cannot make a directory for sofia (%s): %s", dir,
                 strerror(errno));
        return -1;
    }
    snprintf(link_path, sizeof link_path, "%s/agent.pem", dir);
    int rc = symlink(cert, link_path);
    snprintf(link_path, sizeof link_path, "%s/cafile.pem", dir);
    if (rc == 0)
        rc = symlink(ca, link_path);
    if (rc != 0)
        snprintf(err, errlen, "sip.tls: %s: %s", link_path, strerror(errno));
    return rc;
}

/* True when something listens on TCP uri's host:port: a bind there fails.
 * sofia makes no TLS transport, and says so only in its log, when it cannot
 * use the certificate or CA file. The host is numeric (sip.listen's rule):
 * parsed by ip_sockaddr(), nothing is ever resolved here. */
static bool tcp_listening(const char *uri)
{
    char buf[256], host[128];
    url_t url[1];
    if (snprintf(buf, sizeof buf, "%s", uri) >= (int)sizeof buf || url_d(url, buf) < 0 ||
        !url->url_host)
        return false;
    snprintf(host, sizeof host, "%s", url->url_host);
    int port = url->url_port ? atoi(url->url_port) : 5061;
    struct sockaddr_storage ss;
    socklen_t len = ip_sockaddr(host, port, &ss);
    if (!len)
        return true; /* a name: nothing to check without resolving it */
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool used = fd >= 0 && bind(fd, (struct sockaddr *)&ss, len) != 0 && errno == EADDRINUSE;
    if (fd >= 0)
        close(fd);
    return used;
}

static void tls_dir_remove(const char *dir)
{
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/agent.pem", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/cafile.pem", dir);
    unlink(p);
    rmdir(dir);
}

struct b2bua *b2bua_create(struct app *app, char *err, size_t errlen)
{
    struct b2bua *b = xcalloc(1, sizeof *b);
    b->app = app;
    app->b2bua = b;
    if (config_sip_hostport(app->cfg, b->host, sizeof b->host, &b->port) < 0) {
        snprintf(err, errlen, "bad sip.listen \"%s\"", app->cfg->sip_listen);
        free(b);
        app->b2bua = NULL;
        return NULL;
    }

    app->sip_port = b->port;
    if (app->cfg->sips_listen) {
        char tbuf[256];
        url_t turl[1];
        snprintf(tbuf, sizeof tbuf, "%s", app->cfg->sips_listen);
        if (url_d(turl, tbuf) == 0)
            app->sips_port = turl->url_port ? atoi(turl->url_port) : 5061;
    }
    /* what other parties see: our From host, and the address a transfer
     * target must not name (a loop) */
    config_sip_public_host(app->cfg, app->sip_host, sizeof app->sip_host);
    const struct config *cfg = app->cfg;
    char url[300], sips_url[300], tls_dir[PATH_MAX] = "";
    if (listen_url(cfg, cfg->sip_listen, url, sizeof url) < 0 ||
        (cfg->sips_listen && listen_url(cfg, cfg->sips_listen, sips_url, sizeof sips_url) < 0)) {
        snprintf(err, errlen, "bad sip.listen");
        free(b);
        app->b2bua = NULL;
        return NULL;
    }
    if (cfg->sips_listen && tls_dir_make(cfg, tls_dir, sizeof tls_dir, err, errlen) < 0) {
        if (tls_dir[0])
            tls_dir_remove(tls_dir);
        free(b);
        app->b2bua = NULL;
        return NULL;
    }
    /* sofia's SIP parser with a tolerant Via (sip_guard.h); sofia's own if
     * that cannot be built */
    msg_mclass_t const *mclass = sip_guard_mclass();
    b->nua = nua_create(app->root, on_event, app, NUTAG_URL(url),
                        TAG_IF(cfg->sips_listen, NUTAG_SIPS_URL(sips_url)),
                        TAG_IF(cfg->sips_listen, TPTAG_CERTIFICATE(tls_dir)),
                        TAG_IF(cfg->sips_listen,
                               TPTAG_TLS_VERIFY_POLICY(cfg->tls.verify_peer ? TPTLS_VERIFY_ALL
                                                                            : TPTLS_VERIFY_NONE)),
                        NUTAG_MEDIA_ENABLE(0), NUTAG_AUTOANSWER(0), NUTAG_AUTOALERT(0),
                        NUTAG_AUTOACK(0), NUTAG_AUTO302(0), NUTAG_AUTO100(1),
                        NUTAG_APPL_METHOD("INVITE"), NUTAG_APPL_METHOD("UPDATE"),
                        NUTAG_APPL_METHOD("REFER"), NUTAG_APPL_METHOD("OPTIONS"),
                        SIPTAG_SUPPORTED_STR("timer"),
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
    if (tls_dir[0])
        tls_dir_remove(tls_dir);
    if (!b->nua) {
        snprintf(err, errlen, "cannot listen on %s (UDP and TCP)%s%s: address in use or not local?",
                 cfg->sip_listen, cfg->sips_listen ? " and " : "",
                 cfg->sips_listen ? cfg->sips_listen : "");
        free(b);
        app->b2bua = NULL;
        return NULL;
    }
    if (cfg->sips_listen && !tcp_listening(cfg->sips_listen)) {
        snprintf(err, errlen, "no TLS listener on %s: sofia could not use sip.tls.certificate %s "
                 "or sip.tls.ca %s (is the key encrypted, or the certificate not the key's?)",
                 cfg->sips_listen, cfg->tls.certificate, cfg->tls.ca);
        nua_shutdown(b->nua);
        for (int i = 0; i < 100 && !b->shut_down; i++)
            su_root_step(app->root, 20);
        if (b->shut_down)
            nua_destroy(b->nua);
        free(b);
        app->b2bua = NULL;
        return NULL;
    }
    app->nua = b->nua;
    bridge_create(app);
    return b;
}

void b2bua_hangup_all(struct b2bua *b, int status, const char *phrase)
{
    call_hangup_all(b->app->calls, status, phrase, "drain");
}

void b2bua_shutdown(struct b2bua *b, void (*done)(struct app *app))
{
    b->shutdown_done = done;
    if (b->app->stats.quarantined) {
        log_warn("%lu quarantined SIP dialog(s): skipping nua_shutdown", b->app->stats.quarantined);
        done(b->app);
        return;
    }
    nua_shutdown(b->nua);
}

void b2bua_destroy(struct b2bua *b)
{
    if (!b)
        return;
    /* nua_destroy() asserts unless nua_shutdown has completed, and on a
     * stack with live (quarantined) dialogs. A start-up failure (say, the
     * API port is taken) or an instance destroyed with calls up gets here
     * without a shutdown: do it now, while the calls are still there to
     * receive the events it brings (their handlers run as usual). */
    bool parked = b->app->stats.quarantined > 0;
    if (b->nua && !parked && !b->shut_down) {
        b->shutdown_done = NULL;
        nua_shutdown(b->nua);
        for (int i = 0; i < 100 && !b->shut_down; i++)
            su_root_step(b->app->root, 50);
    }
    /* Calls still in the table had their handles torn down by nua_shutdown. */
    bridge_destroy(b->app->bridge);
    if (b->nua && !parked && b->shut_down)
        nua_destroy(b->nua);
    free(b);
}
