/* admit.c - the admission checks for a new INVITE (docs/security.md 2.1). */
#include "sofia_types.h"

#include "admit.h"

#include <string.h>

#include "config.h"
#include "ratelimit.h"
#include "router.h"
#include "sip_guard.h"
#include "target.h"

double admit_invite_cost(const sip_t *sip)
{
    size_t len = sip && sip->sip_payload ? sip->sip_payload->pl_len : 0;
    return 1.0 + (double)(len / ADMIT_BODY_BYTES_PER_TOKEN);
}

/* The hop count an INVITE arrived with; 70 (RFC 3261 8.1.1.6) when it has
 * none. More than 70 is taken as 70, as a proxy's maxfwd limit would: a
 * loop through us is bounded by the usual value, not by what a peer sent. */
static unsigned admit_max_forwards(const sip_t *sip)
{
    if (!sip->sip_max_forwards)
        return 70;
    unsigned long n = sip->sip_max_forwards->mf_count;
    return n > 70 ? 70 : (unsigned)n;
}

static void admit_refuse(struct admit_result *out, enum admit_check check, int status,
                         const char *phrase, enum reject_kind kind, const char *reason,
                         const char *retry_after)
{
    out->check = check;
    out->status = status;
    out->phrase = phrase;
    out->kind = kind;
    out->reason = reason;
    out->retry_after = retry_after;
}

/* Step 8: a body must be SDP within the limits. */
static void admit_body(const sip_t *sip, struct admit_result *out)
{
    out->has_sdp = sip_has_sdp(sip);
    if (sip->sip_payload && sip->sip_payload->pl_len && !out->has_sdp) {
        admit_refuse(out, ADMIT_BODY, 415, "Unsupported Media Type", REJ_BAD, NULL, NULL);
        out->accept = "application/sdp";
        return;
    }
    if (!out->has_sdp)
        return;
    int rc = sdpx_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len, &out->offer,
                        out->why, sizeof out->why);
    if (rc < 0) {
        const char *phrase;
        int status = sdpx_refusal(rc, &phrase);
        bool bad = rc == SDPX_BAD;
        admit_refuse(out, ADMIT_SDP, status, phrase, bad ? REJ_BAD : REJ_SDP_LIMIT,
                     bad ? NULL : "sdp-limit", NULL);
    }
}

/* The source is one of rooms.sources and the Request-URI user "+digits". */
static bool room_calls_number(const struct config *cfg, const struct sockaddr *source,
                              const sip_t *sip, char *number, size_t len)
{
    const char *user = sip->sip_request->rq_url->url_user;
    size_t n = user ? strlen(user) : 0;
    if (!cfg->nroom_sources || n < 2 || n >= len || user[0] != '+' ||
        strspn(user + 1, "0123456789") != n - 1)
        return false;
    for (size_t i = 0; i < cfg->nroom_sources; i++)
        if (cidr_match(&cfg->room_sources[i], source)) {
            memcpy(number, user, n + 1);
            return true;
        }
    return false;
}

void admit_invite(const struct admit_input *in, struct admit_result *out)
{
    const struct config *cfg = in->cfg;
    const sip_t *sip = in->sip;
    memset(out, 0, sizeof *out);
    out->check = ADMIT_OK;

    if (in->draining) {
        admit_refuse(out, ADMIT_DRAINING, 503, "Service Unavailable", REJ_DRAIN, NULL, "30");
        return;
    }
    /* before the source check: a flood of untrusted INVITEs is cut off by
     * its bucket, not answered 403 at full rate */
    if (!ratelimit_allow_cost(in->rl, in->source, cfg->rate_limit, 2.0 * cfg->rate_limit,
                              admit_invite_cost(sip), in->now)) {
        admit_refuse(out, ADMIT_RATE, 503, "Rate Limited", REJ_RATE, "rate-limit", "2");
        return;
    }
    /* Source check first, before any lookup: the answer must not tell a
     * scanner whether a number or room exists. A room (rooms.sources)
     * calling an E.164 number places an outbound call; anything else it
     * sends is judged like any source's. */
    out->outbound = room_calls_number(cfg, in->source, sip, out->number, sizeof out->number);
    if (!out->outbound)
        out->trunk = router_trunk_for(cfg, in->source);
    if (!out->outbound && !out->trunk) {
        admit_refuse(out, ADMIT_SOURCE, 403, "Forbidden", REJ_FORBIDDEN, "untrusted-source", NULL);
        return;
    }
    if (!sip_guard_dialog_ok(sip, true, out->why, sizeof out->why)) {
        admit_refuse(out, ADMIT_CONTACT, 400, "Bad Contact", REJ_BAD, "bad-contact", NULL);
        return;
    }
    out->hops = admit_max_forwards(sip);
    if (out->hops == 0) {
        /* RFC 3261 16.3: a request that arrives with Max-Forwards 0 goes no
         * further. A loop through a proxy ends here, not at max_calls. */
        admit_refuse(out, ADMIT_HOPS, 483, "Too Many Hops", REJ_TOO_MANY_HOPS, NULL, NULL);
        return;
    }
    if (in->calls >= (size_t)cfg->max_calls) {
        admit_refuse(out, ADMIT_MAX_CALLS, 503, "Too Many Calls", REJ_MAX_CALLS, NULL, "5");
        return;
    }
    if (out->outbound) {
        out->trunk = target_trunk_for_number(cfg, out->number);
        if (!out->trunk) {
            admit_refuse(out, ADMIT_ROUTE, 404, "Not Found", REJ_NOT_FOUND, NULL, NULL);
            return;
        }
        admit_body(sip, out);
        return;
    }
    out->room = router_room_for(cfg, sip->sip_request->rq_url->url_user);
    out->resolve = !out->room && cfg->resolver && *cfg->resolver;
    if (!out->room && !out->resolve) {
        admit_refuse(out, ADMIT_ROUTE, 404, "Not Found", REJ_NOT_FOUND, NULL, NULL);
        return;
    }
    admit_body(sip, out);
}
