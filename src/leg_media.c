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
        out = sdpx_rewrite(body, len, config_media_public(app->cfg), ports, n, &next, err,
                           sizeof err);
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
