/* refer.c - sipRefer out, REFER in from rooms: see refer.h. */
#include "sofia_types.h"

#include "refer.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_extra.h>
#include <sofia-sip/sip_header.h>

#include "app.h"
#include "call.h"
#include "config.h"
#include "leg.h"
#include "log.h"
#include "sip_guard.h"
#include "target.h"
#include "transfer.h"

/* ---- sipfrag ----------------------------------------------------------- */

int sipfrag_status(const char *body, size_t len)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (len - i < 11 || strncasecmp(body + i, "SIP/2.0", 7) != 0)
        return -1;
    i += 7;
    if (body[i] != ' ')
        return -1;
    while (i < len && body[i] == ' ')
        i++;
    if (len - i < 3)
        return -1;
    int code = 0;
    for (int k = 0; k < 3; k++) {
        if (!isdigit((unsigned char)body[i + (size_t)k]))
            return -1;
        code = code * 10 + body[i + (size_t)k] - '0';
    }
    i += 3;
    if (i < len && body[i] != ' ' && body[i] != '\r' && body[i] != '\n')
        return -1;
    return code >= 100 && code <= 699 ? code : -1;
}

static void event_text(const sip_event_t *ev, char *out, size_t len)
{
    if (!ev || !ev->o_type) {
        snprintf(out, len, "refer");
        return;
    }
    if (ev->o_id)
        snprintf(out, len, "%s;id=%s", ev->o_type, ev->o_id);
    else
        snprintf(out, len, "%s", ev->o_type);
}

/* ---- sipRefer (out) ---------------------------------------------------- */

static void escape_into(char *out, size_t len, const char *in)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t o = strlen(out);
    for (; *in && o + 4 < len; in++) {
        unsigned char ch = (unsigned char)*in;
        if (isalnum(ch) || strchr("-_.!~*'()[]/:+$", ch)) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hexd[ch >> 4];
            out[o++] = hexd[ch & 15];
        }
    }
    out[o] = '\0';
}

/* Referred-By names the room as the carrier may see it, by its name in
 * rooms.domain: its URI is an address inside our network. A resolver room's
 * name is a URI user already, so its %XX escapes stay as they are. */
static void referred_by(const struct app *app, const struct call *c, char *out, size_t len)
{
    static const char hexd[] = "0123456789ABCDEF";
    const char *name = c->room_name ? c->room_name : "room";
    const char *domain = app->cfg->rooms_domain && *app->cfg->rooms_domain
                             ? app->cfg->rooms_domain
                             : app->sip_host;
    size_t o = (size_t)snprintf(out, len, "<sip:");
    for (const char *p = name; *p && o + 4 < len; p++) {
        unsigned char ch = (unsigned char)*p;
        if (isalnum(ch) || strchr("-_.!~*'()+", ch) ||
            (ch == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]))) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hexd[ch >> 4];
            out[o++] = hexd[ch & 15];
        }
    }
    snprintf(out + o, len - o, "@%s>", domain);
}

int refer_begin(struct app *app, struct transfer *x, const char **kind, char *info,
                size_t infolen)
{
    struct call *c = x->call;
    const struct target *t = &x->target;

    /* Refer-To: <uri?X-A=1&X-B=2>, the headers escaped again (RFC 3261
     * section 19.1.1). */
    char rt[2048];
    snprintf(rt, sizeof rt, "<%s", t->uri);
    for (int i = 0; i < t->nheaders; i++) {
        const char *colon = strchr(t->headers[i], ':');
        size_t nlen = (size_t)(colon - t->headers[i]);
        size_t used = strlen(rt);
        snprintf(rt + used, sizeof rt - used, "%s%.*s=", i ? "&" : "?", (int)nlen, t->headers[i]);
        escape_into(rt, sizeof rt - 2, colon + 2);
    }
    strcat(rt, ">");
    char rb[600];
    referred_by(app, c, rb, sizeof rb);

    call_log(c, LOG_INFO, "transfer %s: REFER the caller to %s", x->id, t->uri);
    nua_refer(c->caller->nh, SIPTAG_REFER_TO_STR(rt), SIPTAG_REFERRED_BY_STR(rb), TAG_END());
    (void)kind;
    (void)info;
    (void)infolen;
    return 200;
}

static bool refer_sub_false(const sip_t *sip)
{
    const sip_refer_sub_t *rs = sip_refer_sub(sip);
    if (rs && rs->rs_value)
        return strcasecmp(rs->rs_value, "false") == 0;
    for (const sip_unknown_t *u = sip ? sip->sip_unknown : NULL; u; u = u->un_next)
        if (u->un_name && strcasecmp(u->un_name, "Refer-Sub") == 0 && u->un_value)
            return strncasecmp(u->un_value, "false", 5) == 0;
    return false;
}

/* The transferee has taken the call over: leave the path. */
static void leave(struct app *app, struct transfer *x)
{
    struct call *c = x->call;
    transfer_succeed(app, x);
    call_log(c, LOG_INFO, "sipRefer succeeded: hanging up both legs");
    c->ended = true;
    leg_hangup(c->caller, 200, "OK");
    leg_hangup(c->room, 200, "OK");
}

static bool fallback_applies(int status)
{
    return status == 403 || status == 405 || status == 420 || status == 501 || status == 408;
}

void refer_response(struct app *app, struct leg *caller, int status, const char *phrase,
                    const sip_t *sip, tagi_t tags[])
{
    struct call *c = caller->call;
    struct transfer *x = c->xfer;
    if (!x || x->mode != XFER_REFER || !transfer_active(c))
        return;

    sip_event_t const *ev = NULL;
    tl_gets(tags, NUTAG_REFER_EVENT_REF(ev), TAG_END());
    if (ev)
        event_text(ev, x->refer_event, sizeof x->refer_event);
    if (status < 200)
        return;

    char why[80];
    if (status < 300 && !sip_guard_dialog_ok(sip, false, why, sizeof why)) {
        /* the parser kept the bad URI out of the dialog; the answer itself
         * cannot be trusted */
        log_security("bad-contact", "-", c->id, "REFER 2xx refused: %s", why);
        transfer_fail(app, x, 502, "the REFER was answered with an unusable Contact");
        return;
    }
    if (status < 300) {
        x->refer_accepted = true;
        x->sip_status = status;
        call_log(c, LOG_INFO, "transfer %s: REFER accepted (%d)", x->id, status);
        transfer_emit(app, x, "calltransfer.initiated");
        if (refer_sub_false(sip)) {
            /* RFC 4488: no NOTIFYs will come; the 2xx is all we learn. */
            leave(app, x);
            return;
        }
        transfer_arm_timer(app, x, app->cfg->transfer.notify_timeout);
        return;
    }

    call_log(c, LOG_INFO, "transfer %s: REFER refused %d %s", x->id, status, phrase);
    if (app->cfg->transfer.refer_fallback && fallback_applies(status)) {
        const char *kind;
        char info[200];
        call_log(c, LOG_INFO, "transfer %s: refer_fallback: trying a sipCallTransfer", x->id);
        x->sip_status = status;
        if (transfer_begin_call(app, x, &kind, info, sizeof info) == 200)
            return;
        transfer_fail(app, x, 500, info);
        return;
    }
    transfer_fail(app, x, status, phrase ? phrase : "REFER refused");
}

void refer_notify_in(struct app *app, struct leg *caller, const sip_t *sip, tagi_t tags[])
{
    struct call *c = caller->call;
    struct transfer *x = c->xfer;
    if (!x || x->mode != XFER_REFER || !transfer_active(c) || !sip)
        return;
    if (sip->sip_event && sip->sip_event->o_type &&
        strcasecmp(sip->sip_event->o_type, "refer") != 0)
        return;
    char why[80];
    if (!sip_guard_dialog_ok(sip, false, why, sizeof why)) {
        /* nua has answered it; what it reports is not believed (the
         * notify_timeout decides if no good NOTIFY follows) */
        log_security("bad-contact", "-", c->id, "NOTIFY ignored: %s", why);
        return;
    }

    int substate = -1;
    tl_gets(tags, NUTAG_SUBSTATE_REF(substate), TAG_END());
    bool terminated = substate == nua_substate_terminated ||
                      (sip->sip_subscription_state && sip->sip_subscription_state->ss_substate &&
                       strcasecmp(sip->sip_subscription_state->ss_substate, "terminated") == 0);
    int code = -1;
    if (sip->sip_payload && sip->sip_payload->pl_data)
        code = sipfrag_status(sip->sip_payload->pl_data, sip->sip_payload->pl_len);

    x->refer_accepted = true;
    if (code >= 200 && code < 300) {
        x->sip_status = code;
        call_log(c, LOG_INFO, "transfer %s: NOTIFY reports %d: success", x->id, code);
        leave(app, x);
    } else if (code >= 300) {
        char why[64];
        snprintf(why, sizeof why, "the target answered %d", code);
        transfer_fail(app, x, code, why);
    } else if (terminated) {
        transfer_fail(app, x, 500, "refer subscription ended without a final status");
    } else {
        call_log(c, LOG_INFO, "transfer %s: NOTIFY progress %d", x->id, code);
    }
}

/* ---- REFER from a room (in) -------------------------------------------- */

void refer_notify(struct transfer *x, int status, const char *phrase, bool final)
{
    struct leg *leg = x->notify_leg;
    if (!leg || !leg->nh || leg->state == LEG_GONE)
        return;
    char body[160];
    snprintf(body, sizeof body, "SIP/2.0 %d %s\r\n", status, phrase ? phrase : "");
    for (char *p = body + 12; *p && p < body + sizeof body - 3; p++)
        if (*p == '\r' || *p == '\n') {
            strcpy(p, "\r\n");
            break;
        }
    nua_notify(leg->nh, NUTAG_SUBSTATE(final ? nua_substate_terminated : nua_substate_active),
               SIPTAG_EVENT_STR(x->notify_event[0] ? x->notify_event : "refer"),
               TAG_IF(final, SIPTAG_SUBSCRIPTION_STATE_STR("terminated;reason=noresource")),
               SIPTAG_CONTENT_TYPE_STR("message/sipfrag;version=2.0"), SIPTAG_PAYLOAD_STR(body),
               TAG_END());
    if (final)
        x->notify_leg = NULL;
}

void refer_from_room(struct app *app, nua_t *nua, struct leg *room, const sip_t *sip,
                     tagi_t tags[])
{
    struct call *c = room->call;
    if (!sip || !sip->sip_refer_to) {
        nua_respond(room->nh, 400, "Missing Refer-To", NUTAG_WITH_THIS(nua), TAG_END());
        return;
    }
    char text[1024];
    url_e(text, sizeof text, sip->sip_refer_to->r_url);
    text[sizeof text - 1] = '\0';

    sip_event_t const *ev = NULL;
    tl_gets(tags, NUTAG_REFER_EVENT_REF(ev), TAG_END());
    char evtext[64];
    event_text(ev, evtext, sizeof evtext);

    struct transfer_request req = {
        .mode = XFER_CALL,
        .to_endpoint = text,
        .notify_leg = room,
        .refer_event = evtext,
    };
    const char *kind = "";
    char info[300];
    int status = transfer_start(app, c, &req, &kind, info, sizeof info);
    if (status == 200) {
        call_log(c, LOG_INFO, "REFER from the room to %s accepted: transfer %s", text, c->xfer->id);
        nua_respond(room->nh, 202, "Accepted", NUTAG_WITH_THIS(nua), TAG_END());
        refer_notify(c->xfer, 100, "Trying", false);
        return;
    }
    call_log(c, LOG_INFO, "REFER from the room to %s refused: %s", text, info);
    if (status == 403) {
        log_security("refer-refused", "-", c->id, "room REFER to %.200s refused 403", text);
        nua_respond(room->nh, 403, "Forbidden", NUTAG_WITH_THIS(nua), TAG_END());
    } else if (status == 400) {
        nua_respond(room->nh, 400, "Bad Refer-To", NUTAG_WITH_THIS(nua), TAG_END());
    } else if (status == 409) {
        nua_respond(room->nh, 491, "Request Pending", NUTAG_WITH_THIS(nua), TAG_END());
    } else {
        nua_respond(room->nh, 500, "Server Internal Error", NUTAG_WITH_THIS(nua), TAG_END());
    }
}
