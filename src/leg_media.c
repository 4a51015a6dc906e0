/* leg_media.c - a leg's SDP and relay endpoint: what it announced, what we
 * send it, and who may send its media. See leg.h. */
#include "sofia_types.h"

#include "leg.h"

#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "app.h"
#include "config.h"
#include "log.h"
#include "relay.h"
#include "sip_guard.h"
#include "xalloc.h"

bool leg_sdp_of(const sip_t *sip, struct leg_sdp *out)
{
    memset(out, 0, sizeof *out);
    if (!sip_has_sdp(sip))
        return false;
    out->body = sip->sip_payload->pl_data;
    out->len = sip->sip_payload->pl_len;
    out->rc = sdpx_parse(out->body, out->len, &out->info, out->err, sizeof out->err);
    return true;
}

/* SRTP is terminated in the relay: media.srtp on, relay mode. */
static bool srtp_on(const struct app *app)
{
    return app->cfg->media_srtp != SRTP_OFF && app->cfg->media_mode == MEDIA_RELAY;
}

int leg_srtp_check(struct app *app, struct leg *leg, const struct sdpx_info *offer, char *why,
                   size_t whylen)
{
    if (!srtp_on(app))
        return 0;
    bool savp = false, best_effort = false;
    for (int i = 0; i < offer->nstreams; i++) {
        const struct sdpx_stream *s = &offer->s[i];
        if (s->port == 0)
            continue;
        if (!s->savp) {
            /* keys in an RTP/AVP line (best effort SRTP, baresip's
             * mediaenc=srtp): taken over TLS, else answered plain */
            if (s->crypto.suite != SDPX_SUITE_NONE && leg->tls)
                best_effort = true;
            continue;
        }
        savp = true;
        if (s->crypto.suite == SDPX_SUITE_NONE) {
            snprintf(why, whylen, "stream %d is RTP/SAVP without a usable a=crypto (%d "
                     "malformed or unsupported)", i, s->crypto_bad);
            return 488;
        }
    }
    if (!savp && !best_effort) {
        /* "require" is about the caller's side; rooms and targets we
         * dial over UDP/TCP get plain RTP from us and may re-offer it */
        if (app->cfg->media_srtp == SRTP_REQUIRE && leg->role == LEG_CALLER) {
            snprintf(why, whylen, "plain RTP offered and media.srtp is \"require\"");
            return 488;
        }
        leg->srtp = false;
        return 0;
    }
    if (!leg->tls) {
        snprintf(why, whylen, "SRTP offered over signalling that is not TLS: keys are only "
                              "sent over TLS");
        return 488;
    }
    leg->srtp = true;
    leg->srtp_best_effort = !savp;
    for (int i = 0; i < SDPX_MAX_STREAMS; i++) {
        const struct sdpx_stream *s = i < offer->nstreams ? &offer->s[i] : NULL;
        struct sdpx_crypto *tx = &leg->srtp_tx[i];
        if (!s || s->port == 0 || s->crypto.suite == SDPX_SUITE_NONE ||
            (!s->savp && !leg->srtp_best_effort)) {
            memset(tx, 0, sizeof *tx);
            continue;
        }
        /* our answer: the offer's suite and tag (RFC 4568 section 7.1.1),
         * a fresh key of ours unless it already had one for them */
        if (tx->suite != s->crypto.suite || tx->tag != s->crypto.tag)
            sdpx_crypto_new(tx, s->crypto.suite, s->crypto.tag);
    }
    return 0;
}

/* Keys of ours toward a room or target dialled over TLS, for its first
 * offer: RTP/SAVP under "require", best effort (RTP/AVP + a=crypto) under
 * "allow" so a TLS peer without SRTP still answers. */
static void srtp_offer(struct app *app, struct leg *leg, int nstreams)
{
    leg->tls = true;
    leg->srtp = true;
    leg->srtp_offered = true;
    leg->srtp_best_effort = app->cfg->media_srtp != SRTP_REQUIRE;
    for (int i = 0; i < SDPX_MAX_STREAMS; i++) {
        if (i < nstreams)
            sdpx_crypto_new(&leg->srtp_tx[i], SDPX_SUITE_AES_CM_128_HMAC_SHA1_80, 1);
        else
            memset(&leg->srtp_tx[i], 0, sizeof leg->srtp_tx[i]);
    }
}

int leg_srtp_answer(struct app *app, struct leg *leg, const struct sdpx_info *answer, char *why,
                    size_t whylen)
{
    if (!srtp_on(app) || !leg->srtp_offered)
        return 0;
    leg->srtp_offered = false;
    int bad = -1;
    for (int i = 0; i < SDPX_MAX_STREAMS; i++) {
        struct sdpx_crypto *tx = &leg->srtp_tx[i];
        if (tx->suite == SDPX_SUITE_NONE)
            continue;
        const struct sdpx_stream *s = i < answer->nstreams ? &answer->s[i] : NULL;
        if (!s || s->port == 0) {
            memset(tx, 0, sizeof *tx); /* a stream refused: nothing to key */
            continue;
        }
        /* RFC 4568 7.1.2: the answer names our tag and suite with its key */
        if (s->crypto.suite != tx->suite || s->crypto.tag != tx->tag ||
            (!s->savp && !leg->srtp_best_effort))
            bad = i;
    }
    if (bad < 0)
        return 0;
    if (leg->srtp_best_effort) {
        call_log(leg->call, LOG_INFO, "%s leg answered without SRTP keys: plain RTP toward it",
                 leg_role_name(leg->role));
        leg->srtp = false;
        memset(leg->srtp_tx, 0, sizeof leg->srtp_tx);
        return 0;
    }
    snprintf(why, whylen, "stream %d answered without a usable a=crypto for our offer and "
                          "media.srtp is \"require\"", bad);
    return 488;
}

void leg_srtp_rekey(struct leg *leg)
{
    if (!leg || !leg->srtp)
        return;
    for (int i = 0; i < SDPX_MAX_STREAMS; i++)
        if (leg->srtp_tx[i].suite != SDPX_SUITE_NONE)
            sdpx_crypto_new(&leg->srtp_tx[i], leg->srtp_tx[i].suite, leg->srtp_tx[i].tag);
}

void leg_srtp_rekey_undo(struct leg *leg)
{
    if (!leg || !leg->srtp)
        return;
    memcpy(leg->srtp_tx, leg->srtp_ep_tx, sizeof leg->srtp_tx);
}

static enum relay_srtp_suite relay_suite(enum sdpx_suite s)
{
    return s == SDPX_SUITE_AES_CM_128_HMAC_SHA1_32 ? RELAY_SRTP_AES_CM_128_HMAC_SHA1_32
                                                   : RELAY_SRTP_AES_CM_128_HMAC_SHA1_80;
}

/* Field by field: struct padding is not part of a key. */
static bool crypto_same(const struct sdpx_crypto *a, const struct sdpx_crypto *b)
{
    if (a->suite == SDPX_SUITE_NONE || b->suite == SDPX_SUITE_NONE)
        return a->suite == b->suite;
    return a->suite == b->suite && a->tag == b->tag && memcmp(a->key, b->key, sizeof a->key) == 0;
}

/* The leg's SRTP keys onto its relay endpoint, stream by stream, when they
 * changed. A stream without a=crypto in this SDP keeps what it had. */
static void srtp_apply(struct leg *leg, const struct sdpx_info *info)
{
    int n = relay_ep_nstreams(leg->ep);
    for (int i = 0; i < n && i < SDPX_MAX_STREAMS; i++) {
        if (leg->srtp && i < info->nstreams && (info->s[i].savp || leg->srtp_best_effort) &&
            info->s[i].crypto.suite != SDPX_SUITE_NONE && leg->srtp_tx[i].suite != SDPX_SUITE_NONE)
            leg->srtp_rx[i] = info->s[i].crypto;
        if (!leg->srtp) {
            memset(&leg->srtp_rx[i], 0, sizeof leg->srtp_rx[i]);
            memset(&leg->srtp_tx[i], 0, sizeof leg->srtp_tx[i]);
        }
        const struct sdpx_crypto *rx = &leg->srtp_rx[i], *tx = &leg->srtp_tx[i];
        if (crypto_same(rx, &leg->srtp_ep_rx[i]) && crypto_same(tx, &leg->srtp_ep_tx[i]))
            continue;
        struct relay_srtp_keys krx, ktx;
        if (rx->suite) {
            krx.suite = relay_suite(rx->suite);
            memcpy(krx.key, rx->key, sizeof krx.key);
        }
        if (tx->suite) {
            ktx.suite = relay_suite(tx->suite);
            memcpy(ktx.key, tx->key, sizeof ktx.key);
        }
        if (relay_ep_set_srtp(leg->ep, i, rx->suite ? &krx : NULL, tx->suite ? &ktx : NULL) < 0) {
            call_log(leg->call, LOG_WARN, "relay refused the SRTP keys of stream %d", i);
            continue;
        }
        leg->srtp_ep_rx[i] = *rx;
        leg->srtp_ep_tx[i] = *tx;
    }
}

void leg_learn_sdp(struct leg *leg, const struct sdpx_info *info, const char *body, size_t len)
{
    leg->in_o_id = info->o_id;
    leg->in_o_version = info->o_version;
    leg->have_in_version = true;
    leg->hold_in = info->on_hold;
    if (body) {
        free(leg->sdp_in);
        leg->sdp_in = xstrndup(body, len);
    }
    if (!leg->ep)
        return;
    int n = relay_ep_nstreams(leg->ep);
    for (int i = 0; i < n && i < info->nstreams; i++) {
        relay_ep_set_peer(leg->ep, i, info->s[i].addr, info->s[i].port, info->s[i].rtcp_port);
        relay_ep_set_dtmf_pt(leg->ep, i, info->s[i].dtmf_pt);
    }
    srtp_apply(leg, info);
}

char *leg_sdp_for(struct app *app, struct leg *to, const char *body, size_t len)
{
    char err[160];
    char *out;

    if (!to->ep) {
        out = xstrndup(body, len);
    } else {
        uint16_t ports[SDPX_MAX_STREAMS] = {0};
        int n = relay_ep_nstreams(to->ep);
        for (int i = 0; i < n && i < SDPX_MAX_STREAMS; i++)
            ports[i] = relay_ep_port(to->ep, i);
        struct sdpx_origin next = to->origin;
        if (to->sdp_out)
            next.version++;
        if (srtp_on(app)) {
            /* our key toward an SRTP leg (never toward one without TLS),
             * plain RTP toward every other; a room or target dialled over
             * TLS is offered keys in the first offer it gets */
            if ((to->role != LEG_CALLER || to->dialled) && !to->sdp_out && !to->srtp && to->uri &&
                leg_uri_is_tls(to->uri))
                srtp_offer(app, to, n);
            struct sdpx_srtp_out sec;
            memset(&sec, 0, sizeof sec);
            if (to->srtp && to->tls) {
                memcpy(sec.crypto, to->srtp_tx, sizeof sec.crypto);
                sec.keep_profile = to->srtp_best_effort;
            }
            out = sdpx_rewrite_srtp(body, len, config_media_public(app->cfg), ports, n, &next, &sec,
                                    err, sizeof err);
        } else {
            out = sdpx_rewrite(body, len, config_media_public(app->cfg), ports, n, &next, err,
                               sizeof err);
        }
        if (!out) {
            call_log(to->call, LOG_WARN, "cannot rewrite SDP for the %s leg: %s",
                     leg_role_name(to->role), err);
            return NULL;
        }
        /* RFC 3264 section 8: a new version only when the text changed. */
        if (to->sdp_out && strcmp(out, to->sdp_out) != 0)
            to->origin = next;
        else if (to->sdp_out) {
            free(out);
            return to->sdp_out;
        }
    }
    free(to->sdp_out);
    to->sdp_out = out;
    return out;
}

int leg_media_new(struct app *app, struct leg *leg, int nstreams, struct leg *near, char *err,
                  size_t errlen)
{
    if (!app->relay || leg->ep)
        return 0;
    if (nstreams < 1)
        nstreams = 1;
    if (nstreams > RELAY_MAX_STREAMS)
        nstreams = RELAY_MAX_STREAMS;
    leg->ep = relay_ep_new(app->relay, app->cfg->media_address, nstreams, near ? near->ep : NULL,
                           leg->call->id, err, errlen);
    if (!leg->ep)
        return -1;
    if (leg->sip_src.ss_family)
        relay_ep_allow_sip(leg->ep, (const struct sockaddr *)&leg->sip_src);
    if (leg->nmedia_nets)
        relay_ep_allow_nets(leg->ep, leg->media_nets, leg->nmedia_nets);
    return 0;
}

void leg_media_from_sip(struct leg *leg, const struct sockaddr *sa)
{
    if (!leg || !sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return;
    memcpy(&leg->sip_src, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                                       : sizeof(struct sockaddr_in6));
    if (leg->ep)
        relay_ep_allow_sip(leg->ep, sa);
}

void leg_media_from_trunk(struct leg *leg, const struct trunk_cfg *trunk)
{
    if (!leg || !trunk || !trunk->nmedia_sources)
        return;
    free(leg->media_nets);
    leg->media_nets = xmalloc(trunk->nmedia_sources * sizeof *leg->media_nets);
    memcpy(leg->media_nets, trunk->media_sources,
           trunk->nmedia_sources * sizeof *leg->media_nets);
    leg->nmedia_nets = trunk->nmedia_sources;
    if (leg->ep)
        relay_ep_allow_nets(leg->ep, leg->media_nets, leg->nmedia_nets);
}
