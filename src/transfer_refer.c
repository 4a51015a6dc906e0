/* transfer_refer.c - the transfer's REFER policy: sipRefer (a REFER to the
 * caller's side; we leave once it reports success) and a room's REFER
 * (carried out as a sipCallTransfer). refer.c reads and writes the SIP;
 * what each report means is decided here. */
#include "sofia_types.h"

#include "transfer.h"

#include <stdio.h>
#include <string.h>

#include <sofia-sip/nua_tag.h>

#include "app.h"
#include "call.h"
#include "config.h"
#include "leg.h"
#include "log.h"
#include "refer.h"

/* ---- sipRefer ---------------------------------------------------------- */

enum transfer_error transfer_begin_refer(struct app *app, struct transfer *x, char *info,
                                         size_t infolen)
{
    struct call *c = x->call;
    char rb[600];
    const char *domain = app->cfg->rooms_domain && *app->cfg->rooms_domain ? app->cfg->rooms_domain
                                                                          : app->sip_host;
    refer_referred_by(c->room_name, domain, rb, sizeof rb);
    call_log(c, LOG_INFO, "transfer %s: REFER the caller to %s", x->id, x->target.uri);
    refer_send(c->caller, &x->target, rb);
    return XFER_OK;
}

/* The transferee has taken the call over: leave the path. */
static void leave(struct app *app, struct transfer *x)
{
    struct call *c = x->call;
    transfer_succeed(app, x);
    call_log(c, LOG_INFO, "sipRefer succeeded: hanging up both legs");
    call_hangup(c, 200, "OK");
}

static bool fallback_applies(int status)
{
    return status == 403 || status == 405 || status == 420 || status == 501 || status == 408;
}

/* The sipRefer of caller's call, while it runs. */
static struct transfer *running_refer(struct leg *caller)
{
    struct call *c = caller->call;
    struct transfer *x = c->xfer;
    return x && x->mode == XFER_REFER && transfer_active(c) ? x : NULL;
}

void transfer_refer_response(struct app *app, struct leg *caller, int status,
                             const char *phrase, const sip_t *sip, tagi_t tags[])
{
    struct call *c = caller->call;
    struct transfer *x = running_refer(caller);
    if (!x)
        return;
    struct refer_result r;
    refer_read_response(status, sip, tags, &r);
    if (r.event[0])
        snprintf(x->refer_event, sizeof x->refer_event, "%s", r.event);

    switch (r.report) {
    case REFER_UNTRUSTED:
        log_security("bad-contact", "-", c->id, "REFER 2xx refused: %s", r.why);
        transfer_fail(app, x, 502, "the REFER was answered with an unusable Contact");
        return;
    case REFER_ACCEPTED:
    case REFER_NO_SUB:
        x->refer_accepted = true;
        x->sip_status = status;
        call_log(c, LOG_INFO, "transfer %s: REFER accepted (%d)", x->id, status);
        transfer_emit(app, x, "calltransfer.initiated");
        if (r.report == REFER_NO_SUB)
            leave(app, x); /* RFC 4488: no NOTIFYs will come; the 2xx is all we learn */
        else
            transfer_arm_timer(app, x, app->cfg->transfer.notify_timeout);
        return;
    case REFER_REFUSED:
        break;
    default:
        return;
    }

    call_log(c, LOG_INFO, "transfer %s: REFER refused %d %s", x->id, status, phrase);
    if (app->cfg->transfer.refer_fallback && fallback_applies(status)) {
        char info[200];
        call_log(c, LOG_INFO, "transfer %s: refer_fallback: trying a sipCallTransfer", x->id);
        x->sip_status = status;
        if (transfer_begin_call(app, x, info, sizeof info) == XFER_OK)
            return;
        transfer_fail(app, x, 500, info);
        return;
    }
    transfer_fail(app, x, status, phrase ? phrase : "REFER refused");
}

void transfer_refer_notify(struct app *app, struct leg *caller, const sip_t *sip, tagi_t tags[])
{
    struct call *c = caller->call;
    struct transfer *x = running_refer(caller);
    if (!x)
        return;
    struct refer_result r;
    refer_read_notify(sip, tags, &r);
    switch (r.report) {
    case REFER_NOTHING:
        return;
    case REFER_UNTRUSTED:
        /* nua has answered it; what it reports is not believed (the
         * notify_timeout decides if no good NOTIFY follows) */
        log_security("bad-contact", "-", c->id, "NOTIFY ignored: %s", r.why);
        return;
    default:
        break;
    }
    x->refer_accepted = true;
    if (r.report == REFER_FINAL && r.code < 300) {
        x->sip_status = r.code;
        call_log(c, LOG_INFO, "transfer %s: NOTIFY reports %d: success", x->id, r.code);
        leave(app, x);
    } else if (r.report == REFER_FINAL) {
        char why[64];
        snprintf(why, sizeof why, "the target answered %d", r.code);
        transfer_fail(app, x, r.code, why);
    } else if (r.report == REFER_ENDED) {
        transfer_fail(app, x, 500, "refer subscription ended without a final status");
    } else {
        call_log(c, LOG_INFO, "transfer %s: NOTIFY progress %d", x->id, r.code);
    }
}

/* ---- a room's REFER ---------------------------------------------------- */

void transfer_from_room(struct app *app, nua_t *nua, struct leg *room, const sip_t *sip,
                        tagi_t tags[])
{
    struct call *c = room->call;
    char text[1024], event[64];
    if (refer_read_request(sip, tags, text, sizeof text, event, sizeof event) < 0) {
        nua_respond(room->nh, 400, "Missing Refer-To", NUTAG_WITH_THIS(nua), TAG_END());
        return;
    }
    struct transfer_request req = {
        .mode = XFER_CALL,
        .to_endpoint = text,
        .notify_leg = room,
        .refer_event = event,
    };
    char info[300];
    enum transfer_error err = transfer_start(app, c, &req, info, sizeof info);
    if (err == XFER_OK) {
        call_log(c, LOG_INFO, "REFER from the room to %s accepted: transfer %s", text, c->xfer->id);
        nua_respond(room->nh, 202, "Accepted", NUTAG_WITH_THIS(nua), TAG_END());
        transfer_notify_room(c->xfer, 100, "Trying", false);
        return;
    }
    call_log(c, LOG_INFO, "REFER from the room to %s refused: %s", text, info);
    if (err == XFER_E_FORBIDDEN)
        log_security("refer-refused", "-", c->id, "room REFER to %.200s refused 403", text);
    const char *phrase;
    int status = refer_refusal(err, &phrase);
    nua_respond(room->nh, status, phrase, NUTAG_WITH_THIS(nua), TAG_END());
}
