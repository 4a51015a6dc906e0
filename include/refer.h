/* refer.h - SIP REFER both ways.
 *
 * Out (sipRefer): an in-dialog REFER on the caller leg; the refer
 * subscription is followed through its NOTIFY sipfrag reports. On a 2xx
 * report both legs get BYE and sipxferd is out of the path; a refusal, a
 * failing report or silence past notify_timeout leaves the call bridged
 * (or falls back to a sipCallTransfer when refer_fallback is set).
 *
 * In (a room REFERs its leg): checked against policy, answered 202 and
 * carried out as a sipCallTransfer, with NOTIFY progress sent back. */
#ifndef SIPXFER_REFER_H
#define SIPXFER_REFER_H

#include "sofia_types.h"

#include <stdbool.h>
#include <stddef.h>

#include <sofia-sip/sip.h>

struct app;
struct transfer;
struct leg;

/* Status code of a message/sipfrag body ("SIP/2.0 200 OK..."), or -1. */
int sipfrag_status(const char *body, size_t len);

/* Send the REFER for transfer x (called by transfer_start). */
int refer_begin(struct app *app, struct transfer *x, const char **kind, char *info,
                size_t infolen);

/* nua_r_refer / nua_i_notify on the caller leg. */
void refer_response(struct app *app, struct leg *caller, int status, const char *phrase,
                    const sip_t *sip, tagi_t tags[]);
void refer_notify_in(struct app *app, struct leg *caller, const sip_t *sip, tagi_t tags[]);

/* nua_i_refer on a room leg. */
void refer_from_room(struct app *app, nua_t *nua, struct leg *room, const sip_t *sip,
                     tagi_t tags[]);

/* If a room asked for transfer x, tell it how it goes (sipfrag NOTIFY). */
void refer_notify(struct transfer *x, int status, const char *phrase, bool final);

#endif
