/* app.h - the process-wide context: one per daemon, owned by main.c.
 * Everything here is touched only by the control thread, except the relay
 * (which has its own locking). */
#ifndef SIPXFER_APP_H
#define SIPXFER_APP_H

#include <stdbool.h>

#include "sofia_types.h"

struct config;
struct relay;
struct b2bua;
struct bridge;
struct api;
struct http_client;
struct events;

struct app {
    su_root_t *root;
    struct config *cfg; /* swapped on SIGHUP: always read it through app */
    struct relay *relay; /* NULL in passthrough mode */
    struct b2bua *b2bua;
    struct bridge *bridge; /* calls and their admission state (bridge.c) */
    struct api *api;
    nua_t *nua;        /* owned by b2bua */
    char sip_host[128]; /* our SIP host and port (from sip.listen) */
    int sip_port;
    struct http_client *http;
    struct events *events;
    bool draining;
    bool stopping;
    int exit_code;
};

#endif
