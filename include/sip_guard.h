/* sip_guard.h - checks on what a peer sends before nua may act on it.
 *
 * Debian's sofia nua recurses without end (and the process dies) when it
 * must send an in-dialog request to a remote target it cannot turn into a
 * request URI. So the Contact and Record-Route of every dialog-forming
 * request and response pass through here first. */
#ifndef SIPXFER_SIP_GUARD_H
#define SIPXFER_SIP_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include <sofia-sip/sip.h>
#include <sofia-sip/url.h>

/* The SIP message class nta parses with: sofia's, except that a Via with
 * empty parameters or empty list elements (";;", ",,", RFC 4475 badinv01)
 * is read past them instead of being thrown away. Without a Via nta cannot
 * answer at all and drops the request; with it, the request's other bad
 * headers get their 400 as usual. Built once; NULL if out of memory. */
msg_mclass_t const *sip_guard_mclass(void);

/* Rewrites a Via field value in place without empty parameters and empty
 * list elements; quoted strings are left alone. Exposed for unit tests. */
void sip_guard_via_tidy(char *value);

/* sip/sips, a non-empty host, a port (if any) in 1..65535. */
bool sip_guard_uri_ok(const url_t *url);

/* Every Contact and Record-Route of sip is usable; require_contact also
 * demands at least one Contact. On failure writes why. */
bool sip_guard_dialog_ok(const sip_t *sip, bool require_contact, char *why, size_t whylen);

/* An unusable Contact or Record-Route URI of sip is one nua has seen (and
 * may have made a dialog's target): it got past the parser, which happens
 * only when sip_guard_mclass() could not be built. */
bool sip_guard_reached_dialog(const sip_t *sip);

#endif
