/* identity.h - who is calling: the caller's number as the carrier asserts
 * it, and the identity headers of the legs we make (SPEC section 10).
 *
 * Inbound: P-Asserted-Identity, else Remote-Party-ID, else From; a
 * Privacy header naming "id" (RFC 3323/3325) marks it private. Pure
 * functions of the parsed message; no nua, no call. */
#ifndef SIPXFER_IDENTITY_H
#define SIPXFER_IDENTITY_H

#include "sofia_types.h"

#include <stdbool.h>
#include <stddef.h>

#include <sofia-sip/sip.h>

#include "config.h"

struct identity {
    char number[64];   /* the user part (an E.164 number for a carrier), "" if none */
    char display[96];  /* a display name to keep, "" if none */
    const char *from_header; /* which header it came from: "P-Asserted-Identity", ... */
    bool private_id;   /* Privacy: id (or header, user): not to be shown */
};

void identity_of_invite(const sip_t *sip, struct identity *out);

/* The From, and extra header lines (without a trailing CRLF, "" if none),
 * of a leg we originate for a caller of identity id, sent as mode (a
 * trunk's `identity`; IDENTITY_PAI toward our rooms) from host. A private
 * id goes out as an anonymous From with the number in P-Asserted-Identity
 * and Privacy: id (RFC 3325: the next hop is trusted to withhold it). */
void identity_from(const struct identity *id, const char *host, char *out, size_t len);
void identity_headers(const struct identity *id, enum trunk_identity mode, const char *host,
                      char *out, size_t len);

#endif
