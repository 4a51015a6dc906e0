/* digest.h - reading a digest challenge for nua_authenticate().
 * Used by the leg layer (a leg's requests) and the trunk registrations. */
#ifndef SIPXFER_DIGEST_H
#define SIPXFER_DIGEST_H

#include "sofia_types.h"

#include <stddef.h>

#include <sofia-sip/sip.h>

/* The first Digest challenge of a 401 (WWW-Authenticate) or 407
 * (Proxy-Authenticate), with its realm unquoted into realm; NULL when
 * there is none, or its realm is missing or holds bytes that cannot go
 * into sofia's "Digest:\"realm\":user:pass" credential string. */
const msg_auth_t *digest_challenge(const sip_t *sip, int status, char *realm, size_t realmlen);

#endif
