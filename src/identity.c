/* identity.c - see identity.h. */
#include "identity.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/sip_header.h>
#include <sofia-sip/url.h>

/* A header sofia's parser keeps as unknown (P-Asserted-Identity and
 * Remote-Party-ID are extensions outside its default class). */
static const char *unknown_header(const sip_t *sip, const char *name)
{
    for (const sip_unknown_t *u = sip ? sip->sip_unknown : NULL; u; u = u->un_next)
        if (u->un_name && u->un_value && strcasecmp(u->un_name, name) == 0)
            return u->un_value;
    return NULL;
}

/* A number or SIP user that may go into a URI's user part: digits, +, and
 * the few unreserved characters carriers use; anything else is dropped. */
static bool clean_user(const char *in, size_t n, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n && in[i]; i++) {
        char ch = in[i];
        bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  strchr("+-_.!~*'()", ch) != NULL;
        if (!ok || o + 1 >= len)
            return false;
        out[o++] = ch;
    }
    out[o] = '\0';
    return o > 0;
}

/* A display name we may put between quotes: printable, no '"' or '\\'. */
static void clean_display(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; in[i] && o + 1 < len; i++)
        if ((unsigned char)in[i] >= 0x20 && in[i] != '"' && in[i] != '\\' && in[i] != 0x7f)
            out[o++] = in[i];
    out[o] = '\0';
}

/* name-addr text ("Name" <sip:+1555@host;user=phone>, <tel:+1555>) ->
 * the user part / telephone number, and the display name. */
static bool parse_name_addr(const char *v, struct identity *out)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", v);
    char *lt = strchr(buf, '<');
    char *gt = lt ? strchr(lt, '>') : NULL;
    if (!lt || !gt)
        return false;
    *gt = '\0';
    char *uri = lt + 1;
    char user[64];
    if (strncasecmp(uri, "tel:", 4) == 0) {
        const char *num = uri + 4;
        if (!clean_user(num, strcspn(num, ";"), user, sizeof user))
            return false;
    } else if (strncasecmp(uri, "sip:", 4) == 0 || strncasecmp(uri, "sips:", 5) == 0) {
        const char *u = strchr(uri, ':') + 1;
        const char *at = strchr(u, '@');
        if (!at || !clean_user(u, (size_t)(at - u), user, sizeof user))
            return false;
    } else {
        return false;
    }
    snprintf(out->number, sizeof out->number, "%s", user);
    /* display name: quoted or a token before '<' */
    *lt = '\0';
    char *d = buf;
    while (*d == ' ' || *d == '\t')
        d++;
    size_t dl = strlen(d);
    while (dl && (d[dl - 1] == ' ' || d[dl - 1] == '\t'))
        d[--dl] = '\0';
    if (dl >= 2 && d[0] == '"' && d[dl - 1] == '"') {
        d[dl - 1] = '\0';
        d++;
    }
    clean_display(d, out->display, sizeof out->display);
    return true;
}

static bool privacy_names_id(const sip_t *sip)
{
    if (sip && sip->sip_privacy && sip->sip_privacy->priv_values) {
        for (const msg_param_t *p = sip->sip_privacy->priv_values; *p; p++)
            if (strcasecmp(*p, "id") == 0 || strcasecmp(*p, "user") == 0 ||
                strcasecmp(*p, "header") == 0)
                return true;
        return false;
    }
    const char *v = unknown_header(sip, "Privacy");
    if (!v)
        return false;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *tok = strtok_r(buf, ";, \t", &save); tok;
         tok = strtok_r(NULL, ";, \t", &save))
        if (strcasecmp(tok, "id") == 0 || strcasecmp(tok, "user") == 0 ||
            strcasecmp(tok, "header") == 0)
            return true;
    return false;
}

void identity_of_invite(const sip_t *sip, struct identity *out)
{
    memset(out, 0, sizeof *out);
    out->private_id = privacy_names_id(sip);
    const char *pai = unknown_header(sip, "P-Asserted-Identity");
    if (pai && parse_name_addr(pai, out)) {
        out->from_header = "P-Asserted-Identity";
        return;
    }
    const char *rpid = unknown_header(sip, "Remote-Party-ID");
    if (rpid && parse_name_addr(rpid, out)) {
        out->from_header = "Remote-Party-ID";
        if (strcasestr(rpid, "privacy=full") || strcasestr(rpid, "privacy=name"))
            out->private_id = true;
        return;
    }
    const sip_from_t *f = sip ? sip->sip_from : NULL;
    out->from_header = "From";
    if (f && f->a_url->url_user)
        clean_user(f->a_url->url_user, strlen(f->a_url->url_user), out->number,
                   sizeof out->number);
    if (f && f->a_display && *f->a_display)
        clean_display(f->a_display, out->display, sizeof out->display);
}

void identity_from(const struct identity *id, const char *host, char *out, size_t len)
{
    if (id->private_id || !id->number[0]) {
        snprintf(out, len, "\"Anonymous\" <sip:anonymous@anonymous.invalid>");
        return;
    }
    if (id->display[0])
        snprintf(out, len, "\"%s\" <sip:%s@%s>", id->display, id->number, host);
    else
        snprintf(out, len, "<sip:%s@%s>", id->number, host);
}

void identity_headers(const struct identity *id, enum trunk_identity mode, const char *host,
                      char *out, size_t len)
{
    out[0] = '\0';
    if (!id->number[0])
        return;
    bool phone = id->number[0] == '+';
    const char *up = phone ? ";user=phone" : "";
    switch (mode) {
    case IDENTITY_FROM:
        if (id->private_id)
            snprintf(out, len, "Privacy: id");
        break;
    case IDENTITY_PAI:
        snprintf(out, len, "P-Asserted-Identity: <sip:%s@%s%s>%s", id->number, host, up,
                 id->private_id ? "\r\nPrivacy: id" : "");
        break;
    case IDENTITY_RPID:
        snprintf(out, len, "Remote-Party-ID: <sip:%s@%s%s>;party=calling;screen=yes;privacy=%s",
                 id->number, host, up, id->private_id ? "full" : "off");
        break;
    }
}
