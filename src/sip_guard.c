/* sip_guard.c - see sip_guard.h for why this exists. */
#include "sip_guard.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/msg_mclass.h>
#include <sofia-sip/sip_header.h>

#include "dns_guard.h"

bool sip_guard_uri_ok(const url_t *url)
{
    if (!url || (url->url_type != url_sip && url->url_type != url_sips))
        return false;
    const char *host = url->url_host;
    if (!host || !*host || strlen(host) > 255)
        return false;
    for (const char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-[]:_", *p))
            return false;
    if (url->url_port) {
        const char *p = url->url_port;
        if (!*p || strlen(p) > 5)
            return false;
        for (; *p; p++)
            if (!isdigit((unsigned char)*p))
                return false;
        long port = strtol(url->url_port, NULL, 10);
        if (port < 1 || port > 65535)
            return false;
    }
    return true;
}

static msg_hclass_t *sofia_contact, *sofia_record_route; /* set by sip_guard_mclass() */

/* Whether an error header is one our parser refused as class hc. Compared
 * by pointer, never read as a string: sofia also turns a duplicate of a
 * single-valued header (a second Max-Forwards, Date...) into an error
 * header in place, and then the er_name slot holds that header's own field
 * (the number 70), not a name (found by the network mutator: a SIGSEGV in
 * strcasecmp). A header our parser refused carries its class's name. */
static bool error_header_is(const sip_error_t *e, const msg_hclass_t *hc)
{
    return hc && e->er_name == hc->hc_name;
}

bool sip_guard_dialog_ok(const sip_t *sip, bool require_contact, char *why, size_t whylen)
{
    if (!sip)
        return false;
    /* refused by the parser (sip_guard_mclass): the header is not there */
    for (const sip_error_t *e = sip->sip_error; e; e = e->er_next) {
        if (error_header_is(e, sofia_contact)) {
            snprintf(why, whylen, "unusable Contact URI");
            return false;
        }
        if (error_header_is(e, sofia_record_route)) {
            snprintf(why, whylen, "unusable Record-Route URI");
            return false;
        }
    }
    if (require_contact && !sip->sip_contact) {
        snprintf(why, whylen, "no Contact");
        return false;
    }
    for (const sip_contact_t *m = sip->sip_contact; m; m = m->m_next) {
        if (!sip_guard_uri_ok(m->m_url)) {
            snprintf(why, whylen, "unusable Contact URI");
            return false;
        }
    }
    for (const sip_record_route_t *r = sip->sip_record_route; r; r = r->r_next) {
        if (!sip_guard_uri_ok(r->r_url)) {
            snprintf(why, whylen, "unusable Record-Route URI");
            return false;
        }
    }
    return true;
}

bool sip_guard_reached_dialog(const sip_t *sip)
{
    if (!sip)
        return false;
    for (const sip_contact_t *m = sip->sip_contact; m; m = m->m_next)
        if (!sip_guard_uri_ok(m->m_url))
            return true;
    for (const sip_record_route_t *r = sip->sip_record_route; r; r = r->r_next)
        if (!sip_guard_uri_ok(r->r_url))
            return true;
    return false;
}

/* ---- tolerant Via ------------------------------------------------------- */

void sip_guard_via_tidy(char *s)
{
    char *w = s;
    bool content = false; /* the current list element has something in it */
    bool comma = false;   /* a ',' is owed before the next element's content */
    for (char *p = s; *p; p++) {
        char c = *p;
        if (c == ',') {
            if (content)
                comma = true;
            content = false;
            continue;
        }
        if (c == ';') {
            const char *q = p + 1;
            while (*q == ' ' || *q == '\t')
                q++;
            if (*q == ';' || *q == ',' || *q == '\0') {
                p = (char *)q - 1; /* an empty parameter: drop it */
                continue;
            }
        }
        if (!content) {
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
                continue;
            if (comma)
                *w++ = ','; /* never past p: it stands for a ',' already read */
            comma = false;
            content = true;
        }
        if (c == '"') { /* copy a quoted string as it is */
            *w++ = *p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    *w++ = *p++;
                *w++ = *p++;
            }
            if (!*p)
                break;
            c = *p;
        }
        *w++ = c;
    }
    *w = '\0';
}

static msg_hclass_t *sofia_via;

/* nta sends a reply to a Via's maddr before its received= address, and its
 * transport resolves that with a blocking lookup: a name there is dropped
 * (from every Via: we never forward responses, so only the top one is ever
 * used to send), and the reply goes where the request came from. */
static bool via_has_named_maddr(const sip_via_t *v)
{
    /* every maddr, not only the one v_maddr points at: a copy of the header
     * (nta's reply) takes its own pick among duplicates */
    for (const char *const *p = v->v_params; p && *p; p++)
        if (strncasecmp(*p, "maddr", 5) == 0 && ((*p)[5] == '=' || (*p)[5] == '\0') &&
            !dns_guard_is_numeric((*p)[5] ? *p + 6 : ""))
            return true;
    return false;
}

static void via_drop_named_maddr(msg_header_t *h)
{
    for (sip_via_t *v = (sip_via_t *)h; v; v = v->v_next)
        if (via_has_named_maddr(v))
            for (int i = 0; i < 16 && msg_header_remove_param(v->v_common, "maddr") > 0; i++)
                ;
}

static issize_t via_parse(su_home_t *home, msg_header_t *h, char *s, isize_t slen)
{
    (void)slen;
    sip_guard_via_tidy(s);
    issize_t rc = sofia_via->hc_parse(home, h, s, (isize_t)strlen(s));
    if (rc >= 0)
        via_drop_named_maddr(h);
    return rc;
}

/* ---- Contact and Record-Route ------------------------------------------ */

/* nua copies a request's or response's Contact into the dialog's remote
 * target (and Record-Route into its route set) before the application sees
 * the message, for every target-refresh request (re-INVITE, UPDATE, NOTIFY,
 * REFER...) and every 2xx (and reliable 1xx) to one we send. So an unusable
 * URI is refused while parsing: the header becomes an error header
 * (sip_error, its raw line naming Contact), the dialog keeps its last good target,
 * and sip_guard_dialog_ok() reports it. */
static issize_t contact_parse(su_home_t *home, msg_header_t *h, char *s, isize_t slen)
{
    issize_t n = sofia_contact->hc_parse(home, h, s, slen);
    if (n < 0)
        return n;
    for (const sip_contact_t *m = (const sip_contact_t *)h; m; m = m->m_next)
        if (!sip_guard_uri_ok(m->m_url))
            return -1;
    return n;
}

static issize_t record_route_parse(su_home_t *home, msg_header_t *h, char *s, isize_t slen)
{
    issize_t n = sofia_record_route->hc_parse(home, h, s, slen);
    if (n < 0)
        return n;
    for (const sip_record_route_t *r = (const sip_record_route_t *)h; r; r = r->r_next)
        if (!sip_guard_uri_ok(r->r_url))
            return -1;
    return n;
}

/* Put a copy of the header class `name` with its own parser into m, found
 * first when parsing (by name and by compact form). Its flags are 0: a
 * header refused here is not one nta answers 400 for (or drops a response
 * for) by itself; sipxferd decides, and can say why. */
static int override_header(msg_mclass_t *m, const char *name, char compact,
                           struct msg_hclass_s *copy, msg_hclass_t **orig,
                           issize_t (*parse)(su_home_t *, msg_header_t *, char *, isize_t))
{
    /* sofia's class as its own tables know it: the exported symbol (say
     * sip_via_class) may be a copy in a non-PIE executable (copy relocation) */
    msg_href_t const *href = msg_find_hclass(m, name, NULL);
    if (!href || !href->hr_class)
        return -1;
    *orig = href->hr_class;
    unsigned short offset = href->hr_offset;
    int at = (int)(href - m->mc_hash);
    *copy = **orig; /* same name, hash, printer and size: only parsing differs */
    copy->hc_parse = parse;
    /* the compact form (the clone has its own copy of the short-form
     * table); set first, since inserting checks it */
    if (compact && m->mc_short) {
        msg_href_t *v = (msg_href_t *)&m->mc_short[compact - 'a'];
        if (v->hr_class == *orig) {
            v->hr_class = copy;
            v->hr_flags = 0;
        }
    }
    if (at < 0 || at >= m->mc_hash_size || msg_mclass_insert_header(m, copy, offset) < 0)
        return -1;
    /* Both classes stay in the table, so headers sofia builds with its own
     * class (nta's Via on every request) are still found by class; the
     * parser looks up by name and must meet ours first: swap the two. */
    for (int j = 0; j < m->mc_hash_size; j++)
        if (m->mc_hash[j].hr_class == copy) {
            msg_href_t t = m->mc_hash[at];
            m->mc_hash[at] = m->mc_hash[j];
            m->mc_hash[j] = t;
            break;
        }
    return 0;
}

msg_mclass_t const *sip_guard_mclass(void)
{
    static msg_mclass_t *mc;
    static struct msg_hclass_s via, contact, record_route;
    if (mc)
        return mc;

    msg_mclass_t *m = msg_mclass_clone(sip_default_mclass(), 0, 0);
    if (!m)
        return NULL;
    if (override_header(m, "Via", 'v', &via, &sofia_via, via_parse) < 0 ||
        override_header(m, "Contact", 'm', &contact, &sofia_contact, contact_parse) < 0 ||
        override_header(m, "Record-Route", 0, &record_route, &sofia_record_route,
                        record_route_parse) < 0) {
        free(m);
        return NULL;
    }
    mc = m;
    return mc;
}

bool sip_has_sdp(const sip_t *sip)
{
    if (!sip || !sip->sip_payload || !sip->sip_payload->pl_data || !sip->sip_payload->pl_len)
        return false;
    /* A body without Content-Type is a broken message: not SDP. */
    return sip->sip_content_type && sip->sip_content_type->c_type &&
           strcasecmp(sip->sip_content_type->c_type, "application/sdp") == 0;
}
