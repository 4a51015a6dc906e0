/* digest.c - see digest.h. */
#include "digest.h"

#include <string.h>
#include <strings.h>

#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip_header.h>

/* The first Digest challenge of a 401 (WWW-Authenticate) or 407
 * (Proxy-Authenticate), and its realm unquoted into realm. NULL when there
 * is none, or its realm is missing or holds bytes that cannot be put into
 * sofia's "Digest:\"realm\":user:pass" credential string. */
const msg_auth_t *digest_challenge(const sip_t *sip, int status, char *realm,
                                          size_t realmlen)
{
    const msg_auth_t *au = !sip ? NULL
                           : status == 401 ? (const msg_auth_t *)sip->sip_www_authenticate
                                           : (const msg_auth_t *)sip->sip_proxy_authenticate;
    for (; au; au = au->au_next) {
        if (!au->au_scheme || strcasecmp(au->au_scheme, "Digest") != 0)
            continue;
        const char *r = msg_params_find(au->au_params, "realm=");
        if (!r)
            return NULL;
        size_t n = strlen(r);
        if (n >= 2 && r[0] == '"' && r[n - 1] == '"') {
            r++;
            n -= 2;
        }
        if (n >= realmlen)
            return NULL;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)r[i] < 0x20 || r[i] == 0x7f || r[i] == '"' || r[i] == '\\')
                return NULL;
        memcpy(realm, r, n);
        realm[n] = '\0';
        return au;
    }
    return NULL;
}

