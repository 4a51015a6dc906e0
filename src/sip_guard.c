/* sip_guard.c - see sip_guard.h for why this exists. */
#include "sip_guard.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

bool sip_guard_dialog_ok(const sip_t *sip, bool require_contact, char *why, size_t whylen)
{
    if (!sip)
        return false;
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
