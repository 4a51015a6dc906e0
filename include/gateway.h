/* gateway.h - the up/down state of each trunk gateway (SPEC section 10).
 *
 * One entry per (trunk name, gateway URI) of app->cfg, kept on
 * app->gateways. A gateway is up until it fails: a 503 or no answer to a
 * call's INVITE (the transfer reports it with gateway_mark()) or to an
 * OPTIONS probe. With the trunk's options_interval > 0 each gateway is
 * sent an OPTIONS every interval on a handle of its own, destroyed after
 * the response: 503 or no answer in GATEWAY_PROBE_TIMEOUT s marks it
 * down, any other response (404, 405 too: it is alive) up.
 *
 * Control thread only; nothing here waits (sofia resolves names itself). */
#ifndef SIPXFER_GATEWAY_H
#define SIPXFER_GATEWAY_H

#include "sofia_types.h"

#include <stdbool.h>
#include <stddef.h>

/* Longest wait for a probe's answer (less when options_interval is shorter). */
#define GATEWAY_PROBE_TIMEOUT 4

/* Make the table from app->cfg (app_create) or remake it after SIGHUP
 * swapped app->cfg: gateways kept by trunk name and URI keep their state
 * and their probe in flight; new ones start up and are probed at once. */
void gateways_sync(struct app *app);
/* Probe handles destroyed, table freed (before the nua goes). */
void gateways_destroy(struct app *app);

/* Whether the gateway uri of trunk is up; an unknown one counts as up. */
bool gateway_is_up(struct app *app, const char *trunk, const char *uri);
/* A call told us: the gateway answered (up) or gave 503 / no answer
 * (down). why goes into the log line when the state changes. */
void gateway_mark(struct app *app, const char *trunk, const char *uri, bool up, const char *why);

/* A call's INVITE toward gateway uri of trunk failed. With status 503
 * (the gateway's, or sofia's for a transport error) or no response at all
 * (timed_out), before any provisional answer (provisional false), the
 * gateway is marked down, reason says why for the log, and true says:
 * try the next one. Any other final status (status > 0) is the far end's
 * answer: the gateway is marked up. status 0: an answer we could not use
 * (no state change). */
bool gateway_failed(struct app *app, const char *trunk, const char *uri, bool timed_out,
                    int status, const char *phrase, bool provisional, char *reason,
                    size_t reasonlen);

/* The i-th gateway (0..n-1): false past the end. For /metrics. */
bool gateway_get(struct app *app, size_t i, const char **trunk, const char **uri, bool *up);

/* An event of a handle without a leg (b2bua.c): true when it is one of our
 * probes (then it is dealt with here, its handle destroyed when done). */
bool gateway_probe_event(struct app *app, nua_event_t event, int status, const char *phrase,
                         nua_handle_t *nh);

#endif
