/* refer.c - REFER and NOTIFY on the wire: see refer.h. */
#include "sofia_types.h"

#include "refer.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_extra.h>
#include <sofia-sip/sip_header.h>

#include "call.h"
#include "sip_guard.h"
#include "target.h"

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

/* ---- REFER out ---------------------------------------------------------- */

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

void refer_referred_by(const char *room_name, const char *domain, char *out, size_t len)
{
    /* A resolver room's name is a URI user already, so its %XX escapes stay
     * as they are. */
    static const char hexd[] = "0123456789ABCDEF";
    const char *name = room_name ? room_name : "room";
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

void refer_send(struct leg *leg, const struct target *t, const char *referred_by)
{
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
    nua_refer(leg->nh, SIPTAG_REFER_TO_STR(rt), SIPTAG_REFERRED_BY_STR(referred_by), TAG_END());
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

void refer_read_response(int status, const sip_t *sip, tagi_t tags[], struct refer_result *out)
{
    memset(out, 0, sizeof *out);
    sip_event_t const *ev = NULL;
    tl_gets(tags, NUTAG_REFER_EVENT_REF(ev), TAG_END());
    if (ev)
        event_text(ev, out->event, sizeof out->event);
    out->code = status;
    if (status < 200) {
        out->report = REFER_NOTHING;
    } else if (status >= 300) {
        out->report = REFER_REFUSED;
    } else if (!sip_guard_dialog_ok(sip, false, out->why, sizeof out->why)) {
        /* the parser kept the bad URI out of the dialog; the answer itself
         * cannot be trusted */
        out->report = REFER_UNTRUSTED;
    } else {
        out->report = refer_sub_false(sip) ? REFER_NO_SUB : REFER_ACCEPTED;
    }
}

void refer_read_notify(const sip_t *sip, tagi_t tags[], struct refer_result *out)
{
    memset(out, 0, sizeof *out);
    out->report = REFER_NOTHING;
    out->code = -1;
    if (!sip)
        return;
    if (sip->sip_event && sip->sip_event->o_type &&
        strcasecmp(sip->sip_event->o_type, "refer") != 0)
        return;
    if (!sip_guard_dialog_ok(sip, false, out->why, sizeof out->why)) {
        out->report = REFER_UNTRUSTED;
        return;
    }
    int substate = -1;
    tl_gets(tags, NUTAG_SUBSTATE_REF(substate), TAG_END());
    bool terminated = substate == nua_substate_terminated ||
                      (sip->sip_subscription_state && sip->sip_subscription_state->ss_substate &&
                       strcasecmp(sip->sip_subscription_state->ss_substate, "terminated") == 0);
    if (sip->sip_payload && sip->sip_payload->pl_data)
        out->code = sipfrag_status(sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    if (out->code >= 200)
        out->report = REFER_FINAL;
    else if (terminated)
        out->report = REFER_ENDED;
    else
        out->report = REFER_PROGRESS;
}

/* ---- NOTIFY out, REFER in ----------------------------------------------- */

void refer_notify_send(struct leg *leg, const char *event, int status, const char *phrase,
                       bool final)
{
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
               SIPTAG_EVENT_STR(event && event[0] ? event : "refer"),
               TAG_IF(final, SIPTAG_SUBSCRIPTION_STATE_STR("terminated;reason=noresource")),
               SIPTAG_CONTENT_TYPE_STR("message/sipfrag;version=2.0"), SIPTAG_PAYLOAD_STR(body),
               TAG_END());
}

int refer_read_request(const sip_t *sip, tagi_t tags[], char *target, size_t tlen, char *event,
                       size_t elen)
{
    if (!sip || !sip->sip_refer_to)
        return -1;
    url_e(target, (int)tlen, sip->sip_refer_to->r_url);
    target[tlen - 1] = '\0';
    sip_event_t const *ev = NULL;
    tl_gets(tags, NUTAG_REFER_EVENT_REF(ev), TAG_END());
    event_text(ev, event, elen);
    return 0;
}

int refer_refusal(enum transfer_error err, const char **phrase)
{
    switch (err) {
    case XFER_E_FORBIDDEN:
        *phrase = "Forbidden";
        return 403;
    case XFER_E_BAD_TARGET:
        *phrase = "Bad Refer-To";
        return 400;
    case XFER_E_RUNNING:
    case XFER_E_NOT_CONNECTED:
    case XFER_E_NO_MEDIA:
    case XFER_E_NO_PORTS:
        /* try again later: the call is busy with something else */
        *phrase = "Request Pending";
        return 491;
    default:
        *phrase = "Server Internal Error";
        return 500;
    }
}
