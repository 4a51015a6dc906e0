/* app.c - one sipxferd instance: its loop, call table, relay, HTTP client,
 * webhook queue and SIP stack. main.c adds the process around it (command
 * line, signals, drain, reload, the API, the TCP guard); an in-process test
 * makes one, runs its root and destroys it (tests/unit/test_calls.c). */
#include "app.h"

#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>
#include <sofia-sip/su_wait.h>

#include "api.h"
#include "b2bua.h"
#include "call.h"
#include "cluster.h"
#include "config.h"
#include "events.h"
#include "gateway.h"
#include "http_client.h"
#include "log.h"
#include "media_watch.h"
#include "registration.h"
#include "relay.h"
#include "resolver.h"
#include "xalloc.h"

struct app *app_create(struct config *cfg, char *err, size_t errlen)
{
    /* cJSON (API bodies, events) allocates under the same policy */
    static cJSON_Hooks hooks = {.malloc_fn = xmalloc, .free_fn = free};
    cJSON_InitHooks(&hooks);
    struct app *app = xcalloc(1, sizeof *app);
    app->cfg = cfg;
    app->life.ticks_after_hangup = -1;
    app->root = su_root_create(app);
    if (!app->root) {
        snprintf(err, errlen, "su_root_create failed");
        goto fail;
    }
    su_root_threading(app->root, 0);
    app->calls = calls_create();
    if (cfg->media_mode == MEDIA_RELAY) {
        app->relay = relay_create(cfg->port_min, cfg->port_max, 1, err, errlen);
        if (!app->relay)
            goto fail;
        char kdesc[512]; /* prog and map ids, then up to 10 interfaces */
        if (!cfg->media_kernel)
            log_info("relay: kernel fast path off (media.kernel = \"off\"): the relay thread "
                     "carries every packet");
        else if (relay_kernel_start(app->relay, cfg->media_address,
                                    (const char *const *)cfg->media_kernel_interfaces,
                                    cfg->nmedia_kernel_interfaces, kdesc, sizeof kdesc) == 0)
            log_info("relay: kernel fast path on: %s", kdesc);
        else
            log_warn("relay: kernel fast path unavailable, the relay thread carries every "
                     "packet: %s", kdesc);
        int warm = relay_warm(app->relay, cfg->media_address, cfg->media_warm_pairs);
        if (cfg->media_warm_pairs > 0)
            log_info("relay: %d port pair(s) warm on %s (media.warm_pairs = %d)", warm,
                     cfg->media_address, cfg->media_warm_pairs);
    }
    app->http = http_client_create(app);
    if (!app->http) {
        snprintf(err, errlen, "cannot create the HTTP client (curl multi)");
        goto fail;
    }
    app->events = events_create(app, app->http);
    /* the directory: after the events (the reaper posts node-lost) */
    if (cluster_start(app) < 0) {
        snprintf(err, errlen, "cannot start the cluster module");
        goto fail;
    }
    if (!b2bua_create(app, err, errlen))
        goto fail;
    media_watch_start(app);
    registration_start(app);
    gateways_sync(app);
    return app;
fail:
    app_destroy(app);
    return NULL;
}

void app_destroy(struct app *app)
{
    if (!app)
        return;
    media_watch_stop(app);
    if (app->life.drain_timer)
        su_timer_destroy(app->life.drain_timer);
    if (app->life.flush_timer)
        su_timer_destroy(app->life.flush_timer);
    if (app->life.trim_timer)
        su_timer_destroy(app->life.trim_timer);
    api_stop(app->api);
    app->api = NULL;
    gateways_destroy(app); /* its probe handles, before the nua goes */
    registration_stop(app); /* its handles go before nua does */
    /* the node and its sessions out of the directory (fire and forget),
     * before the calls go: their ends below are not written any more */
    cluster_stop(app);
    /* the SIP stack first: shutting it down may still run call handlers,
     * which post events and use the relay; it frees the calls left */
    b2bua_destroy(app->b2bua);
    app->b2bua = NULL;
    /* undelivered webhooks are dropped (logged); in-flight HTTP requests
     * are cancelled, so no completion reaches a freed lookup or event */
    events_destroy(app->events);
    app->events = NULL;
    http_client_destroy(app->http);
    app->http = NULL;
    resolver_cleanup(app);
    relay_destroy(app->relay);
    calls_destroy(app->calls);
    if (app->root)
        su_root_destroy(app->root);
    config_free(app->cfg);
    free(app);
}
