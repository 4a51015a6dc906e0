/* registration.c - see registration.h. */
#include "registration.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_wait.h>
#include <sofia-sip/url.h>

#include "app.h"
#include "config.h"
#include "digest.h"
#include "log.h"
#include "looplag.h"
#include "xalloc.h"

#define BACKOFF_MIN_MS 2000
#define BACKOFF_MAX_MS 300000
#define EXPIRES "600"

struct reg {
    struct app *app;
    char *trunk;    /* its trunk's name: credentials are looked up at each challenge */
    char *gateway;  /* the registrar (the trunk's first gateway, whole) */
    char *aor;      /* <sip:USERNAME@GATEWAY-HOST> */
    nua_handle_t *nh;
    su_timer_t *retry;
    int backoff_ms;
    bool registered;
    bool auth_sent; /* credentials sent for the current request */
    struct reg *next;
};

struct registrations {
    struct reg *list;
};

static struct reg *by_handle(const struct app *app, const nua_handle_t *nh)
{
    for (struct reg *r = app->registrations ? app->registrations->list : NULL; r; r = r->next)
        if (r->nh == nh)
            return r;
    return NULL;
}

static void send_register(struct reg *r)
{
    r->auth_sent = false;
    nua_register(r->nh, NUTAG_REGISTRAR(r->gateway), SIPTAG_EXPIRES_STR(EXPIRES),
                 /* no keep-alive OPTIONS, no contact validation or NAT
                  * games of its own: a trunk registration only */
                 NUTAG_OUTBOUND("no-options-keepalive, no-validate, no-natify"), TAG_END());
}

static void on_retry(struct app *app, su_timer_t *t, void *arg)
{
    (void)app;
    (void)t;
    struct reg *r = arg;
    struct looplag_mark m;
    looplag_begin(&m, "timer", "register-retry", NULL);
    log_info("trunk %s: REGISTER to %s again", r->trunk, r->gateway);
    send_register(r);
    looplag_end(&m);
}

static void failed(struct reg *r, int status, const char *phrase)
{
    if (r->registered)
        log_warn("trunk %s: registration lost (%d %s)", r->trunk, status, phrase ? phrase : "");
    r->registered = false;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (r->backoff_ms > BACKOFF_MAX_MS)
        r->backoff_ms = BACKOFF_MAX_MS;
    log_warn("trunk %s: REGISTER to %s failed %d %s; again in %d s", r->trunk, r->gateway, status,
             phrase ? phrase : "", r->backoff_ms / 1000);
    su_timer_set_interval(r->retry, on_retry, r, (su_duration_t)r->backoff_ms);
}

static bool answer_challenge(struct reg *r, int status, const sip_t *sip)
{
    if (r->auth_sent)
        return false; /* refused credentials */
    const struct trunk_cfg *tr = config_trunk_by_name(r->app->cfg, r->trunk);
    char realm[256];
    if (!tr || !tr->auth.username || !digest_challenge(sip, status, realm, sizeof realm) ||
        (tr->auth.realm && strcmp(tr->auth.realm, realm) != 0))
        return false;
    size_t len = strlen(realm) + strlen(tr->auth.username) + strlen(tr->auth.password) + 16;
    char *cred = xmalloc(len);
    snprintf(cred, len, "Digest:\"%s\":%s:%s", realm, tr->auth.username, tr->auth.password);
    r->auth_sent = true;
    nua_authenticate(r->nh, NUTAG_AUTH(cred), TAG_END());
    memset(cred, 0, len);
    free(cred);
    return true;
}

bool registration_event(struct app *app, nua_handle_t *nh, nua_event_t event, int status,
                        const char *phrase, const sip_t *sip)
{
    struct reg *r = by_handle(app, nh);
    if (!r)
        return false;
    if (event != nua_r_register)
        return true; /* its state changes, nua_r_unregister: nothing to do */
    if (status < 200)
        return true;
    if (status < 300) {
        if (!r->registered)
            log_info("trunk %s: registered at %s as %s", r->trunk, r->gateway, r->aor);
        r->registered = true;
        r->auth_sent = false;
        r->backoff_ms = 0;
        su_timer_reset(r->retry);
        return true;
    }
    if ((status == 401 || status == 407) && answer_challenge(r, status, sip))
        return true;
    failed(r, status, phrase);
    return true;
}

static void reg_free(struct reg *r)
{
    if (r->nh)
        nua_handle_destroy(r->nh);
    if (r->retry)
        su_timer_destroy(r->retry);
    free(r->trunk);
    free(r->gateway);
    free(r->aor);
    free(r);
}

static void start_one(struct app *app, const struct trunk_cfg *tr)
{
    char buf[512];
    url_t url[1];
    if (!tr->gateway || snprintf(buf, sizeof buf, "%s", tr->gateway) >= (int)sizeof buf ||
        url_d(url, buf) < 0 || !url->url_host)
        return;
    struct reg *r = xcalloc(1, sizeof *r);
    r->app = app;
    r->trunk = xstrdup(tr->name);
    r->gateway = xstrdup(tr->gateway);
    char aor[600];
    snprintf(aor, sizeof aor, "<%s:%s@%s%s%s>", url->url_type == url_sips ? "sips" : "sip",
             tr->auth.username, url->url_host, url->url_port ? ":" : "",
             url->url_port ? url->url_port : "");
    r->aor = xstrdup(aor);
    r->retry = su_timer_create(su_root_task(app->root), BACKOFF_MIN_MS);
    r->nh = nua_handle(app->nua, NULL, SIPTAG_TO_STR(aor), SIPTAG_FROM_STR(aor), TAG_END());
    if (!r->nh) {
        reg_free(r);
        return;
    }
    r->next = app->registrations->list;
    app->registrations->list = r;
    log_info("trunk %s: REGISTER %s at %s", r->trunk, r->aor, r->gateway);
    send_register(r);
}

void registration_start(struct app *app)
{
    if (!app->registrations)
        app->registrations = xcalloc(1, sizeof *app->registrations);
    for (size_t i = 0; i < app->cfg->ntrunks; i++) {
        const struct trunk_cfg *tr = &app->cfg->trunks[i];
        if (tr->registration && tr->auth.username && tr->gateway)
            start_one(app, tr);
    }
}

void registration_reload(struct app *app)
{
    if (!app->registrations)
        return;
    /* keep those whose trunk still registers at the same gateway */
    struct reg **pp = &app->registrations->list;
    while (*pp) {
        struct reg *r = *pp;
        const struct trunk_cfg *tr = config_trunk_by_name(app->cfg, r->trunk);
        if (tr && tr->registration && tr->auth.username && tr->gateway &&
            strcmp(tr->gateway, r->gateway) == 0) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        log_info("trunk %s: registration removed by reload", r->trunk);
        nua_unregister(r->nh, TAG_END());
        /* the handle goes with the instance's shutdown; forget it here */
        r->nh = NULL;
        reg_free(r);
    }
    for (size_t i = 0; i < app->cfg->ntrunks; i++) {
        const struct trunk_cfg *tr = &app->cfg->trunks[i];
        if (!tr->registration || !tr->auth.username || !tr->gateway)
            continue;
        bool have = false;
        for (struct reg *r = app->registrations->list; r; r = r->next)
            have |= strcmp(r->trunk, tr->name) == 0;
        if (!have)
            start_one(app, tr);
    }
}

void registration_stop(struct app *app)
{
    if (!app->registrations)
        return;
    while (app->registrations->list) {
        struct reg *r = app->registrations->list;
        app->registrations->list = r->next;
        reg_free(r);
    }
    free(app->registrations);
    app->registrations = NULL;
}

bool registration_get(const struct app *app, size_t i, const char **trunk, bool *registered)
{
    const struct reg *r = app->registrations ? app->registrations->list : NULL;
    for (; r && i; i--)
        r = r->next;
    if (!r)
        return false;
    *trunk = r->trunk;
    *registered = r->registered;
    return true;
}
