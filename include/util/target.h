/* target.h - one normaliser for every transfer target (API toEndPoint, a
 * room's Refer-To, later the resolver): what kind it is, the SIP URI to
 * INVITE, the X- headers to carry, and whether policy allows it. */
#ifndef SIPXFER_TARGET_H
#define SIPXFER_TARGET_H

#include <stddef.h>

struct config;

enum target_kind { TARGET_ROOM, TARGET_SIP, TARGET_PSTN };

#define TARGET_MAX_HEADERS 8

struct target {
    enum target_kind kind;
    char uri[512];       /* what to INVITE / Refer-To, without ?headers */
    char room[128];      /* TARGET_ROOM: the room's name */
    char number[32];     /* TARGET_PSTN: the E.164 number */
    char trunk[64];      /* TARGET_PSTN: the trunk it goes out on (longest prefix) */
    char route[520];     /* TARGET_PSTN with number_format "tel": "<gateway;lr>", else "" */
    int nheaders;
    char headers[TARGET_MAX_HEADERS][280]; /* "X-Name: value" */
};

enum target_result {
    TARGET_OK = 0,
    TARGET_INVALID = -1,   /* 400: not a SIP URI / E.164 number, bad header, ... */
    TARGET_FORBIDDEN = -2, /* 403: not matched by transfer.allow */
};

/* Parse text into out. self_host/self_port (our SIP listen address) refuse
 * loops back to sipxferd. err gets a sentence for the API's "info". */
enum target_result target_parse(const struct config *cfg, const char *text,
                                 const char *self_host, int self_port, struct target *out,
                                 char *err, size_t errlen);

/* The Request-URI for E.164 number through gateway (a sip:/sips: URI):
 * "sip:NUMBER@HOST[:PORT][;gateway params];user=phone". 0, or -1 when the
 * gateway is no SIP URI with a host or the result does not fit. */
int target_pstn_uri(const char *gateway, const char *number, char *out, size_t outlen);

/* The trunk an E.164 number goes out on: among trunks with a gateway, the
 * one with the longest `prefixes` entry the number starts with; a trunk
 * without prefixes takes any number, below every match; ties go to the
 * first in the file. NULL: no trunk has a gateway for it. */
const struct trunk_cfg *target_trunk_for_number(const struct config *cfg, const char *number);

/* The Request-URI for number through trunk's first gateway, written in
 * the trunk's number_format: e164 "sip:+1555...@gw;user=phone", national
 * "sip:1555...@gw" (no +, no user=phone), tel "tel:+1555..." with route
 * "<gateway;lr>" (the gateway as the next hop). route may be NULL when
 * the format is not tel. 0 or -1. */
int target_number_uri(const struct trunk_cfg *trunk, const char *number, char *out,
                      size_t outlen, char *route, size_t routelen);

/* "<uri>" for a To/From/Referred-By header: handed over bare, sofia reads
 * the URI's own ;parameters (transport, user=phone) as header parameters.
 * -1 when it does not fit. */
int target_name_addr(const char *uri, char *out, size_t outlen);

/* 1 when text (a SIP URI without ?headers, or an E.164 number) matches one
 * of transfer.allow; an empty list allows nothing. See target_pattern_match. */
int target_allowed(const struct config *cfg, const char *text);

/* One allow pattern against text, part by part, never on the string:
 *   "*"                     anything below;
 *   "+1555*"                an E.164 number (glob on "+digits");
 *   "sip[s]:[USER@]HOST[:PORT]"  scheme equal (case-insensitive); USER a
 *       glob on the unescaped user (absent: any user or none); HOST a glob
 *       per dot-separated label, a leading "*" label standing for one or
 *       more labels, or a [IPv6] literal compared as an address; PORT a glob
 *       on the port, the scheme's default when the URI has none (absent:
 *       any port).
 * A URI with a password, a user holding '@' (also as %40), maddr or a
 * parameter byte outside RFC 3261's set matches nothing; its parameters and
 * headers are never matched. Case-insensitive except the port. */
int target_pattern_match(const char *pattern, const char *text);

/* 0 if pattern is one target_pattern_match understands, else -1 and why. */
int target_pattern_check(const char *pattern, char *err, size_t errlen);

#endif
