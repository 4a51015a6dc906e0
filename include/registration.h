/* registration.h - trunks with `register = true`: a REGISTER to the
 * trunk's first gateway for sip:USERNAME@GATEWAY-HOST, answered once per
 * challenge with the trunk's credentials, refreshed by nua before it
 * expires, retried with back-off (2 s doubling to 5 min) when refused or
 * unanswered. State on the instance (app->registrations). */
#ifndef SIPXFER_REGISTRATION_H
#define SIPXFER_REGISTRATION_H

#include "sofia_types.h"

#include <stdbool.h>
#include <stddef.h>

#include <sofia-sip/sip.h>

struct app;

/* Start a registration for each trunk of app->cfg that asks for one. */
void registration_start(struct app *app);
/* SIGHUP: registrations follow the new trunk list (those of trunks that
 * are gone or no longer register are removed, new ones started). */
void registration_reload(struct app *app);
/* Handles destroyed, timers stopped (nua_shutdown has unregistered). */
void registration_stop(struct app *app);

/* A nua event on a handle with no leg: true when it is a registration's
 * (and has been handled). */
bool registration_event(struct app *app, nua_handle_t *nh, nua_event_t event, int status,
                        const char *phrase, const sip_t *sip);

/* For /metrics: the i-th registration's trunk and whether it holds now;
 * false past the last. */
bool registration_get(const struct app *app, size_t i, const char **trunk, bool *registered);

#endif
