/* bridge.h - a trunk call bridged to a room: the owner of caller and room
 * legs. It admits a new INVITE (admit.c), makes the call, finds the room
 * (config or resolver), dials it through the leg layer and answers the
 * caller with the room's media; then reacts to what the leg layer reports
 * for either leg (hang-ups, a room's REFER, a leg gone) and ends the call
 * once nothing of it is left. Control thread only. */
#ifndef SIPXFER_BRIDGE_H
#define SIPXFER_BRIDGE_H

#include "sofia_types.h"

#include <sofia-sip/sip.h>

#include "admit.h"

struct app;
struct call;
struct bridge;

struct bridge_counters {
    unsigned long long calls_total;    /* INVITEs that became calls */
    unsigned long long calls_answered; /* reached 200 on the caller leg */
    unsigned long long rejected[REJ_COUNT];
};

/* app->bridge; its rate-limit table and counters. */
struct bridge *bridge_create(struct app *app);
/* Frees every call still in the table (their handles died with nua). */
void bridge_destroy(struct bridge *b);
void bridge_counters(const struct bridge *b, struct bridge_counters *out);

/* nua_i_invite without a leg: a new call, or a refusal (the handle is then
 * answered and destroyed here). */
void bridge_incoming(struct app *app, nua_t *nua, nua_handle_t *nh, const sip_t *sip);

/* After any event of c's legs: once nothing of the call is left, report
 * dialin.stopped and free it (with its transfer). c may be freed. */
void bridge_call_over(struct app *app, struct call *c);

#endif
