/* app.h - the process-wide context: one per daemon, owned by main.c.
 * Everything here is touched only by the control thread, except the relay
 * (which has its own locking). */
#ifndef SIPXFER_APP_H
#define SIPXFER_APP_H

#include <stdbool.h>
#include <stddef.h>

#include "sofia_types.h"

struct config;
struct relay;
struct b2bua;
struct bridge;
struct api;
struct http_client;
struct events;
struct calls;
struct call;
struct lookup;
struct registrations;
struct gateways;
struct leg_ops;
struct cluster;

struct app {
    su_root_t *root;
    struct config *cfg; /* swapped on SIGHUP: always read it through app */
    struct relay *relay; /* NULL in passthrough mode */
    struct b2bua *b2bua;
    struct bridge *bridge; /* calls and their admission state (bridge.c) */
    /* the handlers of a leg bridged in a call (bridge.c), for calls other
     * modules make (dialout.c) to hand their legs over once both are up */
    const struct leg_ops *bridged_ops;
    /* frees a call once every leg is gone (bridge_call_over, set by the
     * bridge): for modules below it that end a call outside a SIP event */
    void (*call_over)(struct app *app, struct call *c);
    struct api *api;
    nua_t *nua;        /* owned by b2bua */
    char sip_host[128]; /* our SIP host and port (from sip.listen) */
    int sip_port;
    int sips_port;      /* TLS (sip.listen's sips: URI), 0: none */
    struct http_client *http;
    struct events *events;
    struct cluster *cluster; /* Redis directory (cluster.c); NULL: a single node */
    bool draining;
    bool stopping;
    int exit_code;

    /* Module state: everything an instance has lives here or in the
     * objects above, so a test can make and destroy one (app.c). */
    struct calls *calls;     /* the call table (call.c) */
    struct lookup *lookups;  /* room resolver lookups awaiting their answer (resolver.c) */
    su_timer_t *media_timer; /* media_watch.c's tick */
    struct registrations *registrations; /* trunk REGISTERs (registration.c) */
    struct gateways *gateways; /* trunk gateways up/down, OPTIONS probes (gateway.c) */
    struct app_stats {
        /* [enum xfer_mode][enum xfer_outcome] (transfer.h), by transfer.c */
        unsigned long long transfers[2][3];
        unsigned long long media_timeouts; /* calls media_watch.c ended */
        unsigned long quarantined; /* dialogs parked for good on this nua (leg.c) */
    } stats;
    /* main.c: drain, exit and idle heap trimming */
    struct app_life {
        su_timer_t *drain_timer, *flush_timer, *trim_timer;
        long drain_deadline;
        int ticks_after_hangup; /* drain: ticks since the remaining calls were hung up; -1 */
        int flush_ticks;
        int idle_trims_left; /* trims still due since calls were last seen */
    } life;
};

/* One instance (app.c): its su_root, call table, relay (relay mode), HTTP
 * client, webhook queue and SIP stack bound to cfg->sip_listen, with the
 * media timeout running. Takes cfg (freed by app_destroy, or here on
 * failure). The API is not started (api_start()). NULL with err. */
struct app *app_create(struct config *cfg, char *err, size_t errlen);
/* Takes the instance apart, calls and all; its SIP stack must have been
 * shut down (b2bua_shutdown) or is shut down here. NULL is a no-op. */
void app_destroy(struct app *app);

#endif
