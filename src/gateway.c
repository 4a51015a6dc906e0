/* gateway.c - trunk gateways up or down, and their OPTIONS probes: see
 * gateway.h. */
#include "sofia_types.h"

#include "gateway.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>

#include "app.h"
#include "config.h"
#include "log.h"
#include "looplag.h"
#include "target.h"
#include "xalloc.h"

#define TICK_MS 250

struct gw {
    char *trunk;
    char *uri;
    bool up;
    int interval;      /* the trunk's options_interval, s; 0: never probed */
    long long due;     /* ms (monotonic): next probe */
    long long deadline; /* ms: the probe in flight is given up */
    nua_handle_t *probe; /* OPTIONS in flight, NULL: none */
};

struct gateways {
    struct gw *v;
    size_t n;
    su_timer_t *timer; /* runs while some gateway is probed */
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct gw *find(struct gateways *g, const char *trunk, const char *uri)
{
    if (!g || !trunk || !uri)
        return NULL;
    for (size_t i = 0; i < g->n; i++)
        if (g->v[i].trunk && strcmp(g->v[i].trunk, trunk) == 0 && strcmp(g->v[i].uri, uri) == 0)
            return &g->v[i];
    return NULL;
}

static void set_state(struct gw *e, bool up, const char *why)
{
    if (e->up == up)
        return;
    e->up = up;
    if (up)
        log_info("trunk %s: gateway %s is up (%s)", e->trunk, e->uri, why);
    else
        log_warn("trunk %s: gateway %s is down (%s): the next gateway is tried first", e->trunk,
                 e->uri, why);
}

static void probe_end(struct gw *e)
{
    if (!e->probe)
        return;
    nua_handle_destroy(e->probe);
    e->probe = NULL;
}

static void probe_send(struct app *app, struct gw *e, long long now)
{
    char to[600];
    e->due = now + (long long)e->interval * 1000;
    if (target_name_addr(e->uri, to, sizeof to) < 0)
        return;
    e->probe = nua_handle(app->nua, NULL, NUTAG_URL(e->uri), SIPTAG_TO_STR(to), TAG_END());
    if (!e->probe) {
        set_state(e, false, "cannot address it");
        return;
    }
    int wait = e->interval < GATEWAY_PROBE_TIMEOUT ? e->interval : GATEWAY_PROBE_TIMEOUT;
    e->deadline = now + (long long)wait * 1000;
    nua_options(e->probe, TAG_END());
}

static void on_tick(struct app *app, su_timer_t *t, void *arg)
{
    (void)t;
    (void)arg;
    struct gateways *g = app->gateways;
    if (!g || !app->nua || app->stopping)
        return;
    struct looplag_mark m;
    looplag_begin(&m, "timer", "gateway probes", NULL);
    long long now = now_ms();
    for (size_t i = 0; i < g->n; i++) {
        struct gw *e = &g->v[i];
        if (e->interval <= 0)
            continue;
        if (e->probe && now >= e->deadline) {
            probe_end(e);
            set_state(e, false, "no answer to OPTIONS");
        }
        if (!e->probe && now >= e->due)
            probe_send(app, e, now);
    }
    looplag_end(&m);
}

void gateways_sync(struct app *app)
{
    struct gateways *old = app->gateways;
    struct gateways *g = xcalloc(1, sizeof *g);
    const struct config *cfg = app->cfg;
    size_t total = 0;
    for (size_t i = 0; i < cfg->ntrunks; i++)
        total += cfg->trunks[i].ngateways;
    g->v = xcalloc(total ? total : 1, sizeof *g->v);
    long long now = now_ms();
    bool probing = false;
    for (size_t i = 0; i < cfg->ntrunks; i++) {
        const struct trunk_cfg *tk = &cfg->trunks[i];
        for (size_t j = 0; j < tk->ngateways; j++) {
            if (!tk->gateways[j] || find(g, tk->name, tk->gateways[j]))
                continue; /* listed twice: one entry */
            struct gw *e = &g->v[g->n++];
            struct gw *was = find(old, tk->name, tk->gateways[j]);
            if (was) {
                *e = *was; /* state, probe in flight and its times */
                was->probe = NULL;
                was->trunk = was->uri = NULL;
            } else {
                e->trunk = xstrdup(tk->name);
                e->uri = xstrdup(tk->gateways[j]);
                e->up = true;
                e->due = now;
            }
            if (e->interval != tk->options_interval && tk->options_interval > 0 &&
                e->due > now + (long long)tk->options_interval * 1000)
                e->due = now; /* a shorter interval: probe soon */
            e->interval = tk->options_interval;
            if (e->interval <= 0)
                probe_end(e);
            else
                probing = true;
        }
    }
    if (old) {
        g->timer = old->timer;
        old->timer = NULL;
        for (size_t i = 0; i < old->n; i++) {
            probe_end(&old->v[i]);
            free(old->v[i].trunk);
            free(old->v[i].uri);
        }
        free(old->v);
        free(old);
    }
    app->gateways = g;
    if (probing && !g->timer) {
        g->timer = su_timer_create(su_root_task(app->root), TICK_MS);
        if (g->timer)
            su_timer_run(g->timer, on_tick, NULL);
    } else if (!probing && g->timer) {
        su_timer_destroy(g->timer);
        g->timer = NULL;
    }
}

void gateways_destroy(struct app *app)
{
    struct gateways *g = app->gateways;
    if (!g)
        return;
    if (g->timer)
        su_timer_destroy(g->timer);
    for (size_t i = 0; i < g->n; i++) {
        probe_end(&g->v[i]);
        free(g->v[i].trunk);
        free(g->v[i].uri);
    }
    free(g->v);
    free(g);
    app->gateways = NULL;
}

bool gateway_is_up(struct app *app, const char *trunk, const char *uri)
{
    struct gw *e = find(app->gateways, trunk, uri);
    return !e || e->up;
}

void gateway_mark(struct app *app, const char *trunk, const char *uri, bool up, const char *why)
{
    struct gw *e = find(app->gateways, trunk, uri);
    if (e)
        set_state(e, up, why);
}

bool gateway_failed(struct app *app, const char *trunk, const char *uri, bool timed_out,
                    int status, const char *phrase, bool provisional, char *reason,
                    size_t reasonlen)
{
    bool unavailable = timed_out || status == 503;
    if (!unavailable || provisional) {
        if (status > 0 && !timed_out)
            gateway_mark(app, trunk, uri, true, "it answered a call");
        return false;
    }
    if (timed_out)
        snprintf(reason, reasonlen, "no response to an INVITE");
    else
        snprintf(reason, reasonlen, "INVITE answered %d %.60s", status, phrase ? phrase : "");
    gateway_mark(app, trunk, uri, false, reason);
    return true;
}

bool gateway_get(struct app *app, size_t i, const char **trunk, const char **uri, bool *up)
{
    struct gateways *g = app->gateways;
    if (!g || i >= g->n)
        return false;
    *trunk = g->v[i].trunk;
    *uri = g->v[i].uri;
    *up = g->v[i].up;
    return true;
}

bool gateway_probe_event(struct app *app, nua_event_t event, int status, const char *phrase,
                         nua_handle_t *nh)
{
    struct gateways *g = app->gateways;
    if (!g || !nh)
        return false;
    for (size_t i = 0; i < g->n; i++) {
        struct gw *e = &g->v[i];
        if (e->probe != nh)
            continue;
        if (event != nua_r_options || status < 200)
            return true; /* a provisional answer: wait for the final one */
        char why[80];
        snprintf(why, sizeof why, "OPTIONS answered %d %.40s", status, phrase ? phrase : "");
        /* 503, or sofia's own 408 (no answer) / 503 (transport error) */
        set_state(e, !(status == 503 || status == 408), why);
        probe_end(e);
        return true;
    }
    return false;
}
