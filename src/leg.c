/* leg.c - operations on one leg; see leg.h. */
#include "sofia_types.h"

#include "leg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>

#include "app.h"
#include "config.h"
#include "log.h"
#include "relay.h"

bool sip_has_sdp(const sip_t *sip)
{
    if (!sip || !sip->sip_payload || !sip->sip_payload->pl_data || !sip->sip_payload->pl_len)
        return false;
    /* A body without Content-Type is a broken message: not SDP. */
    return sip->sip_content_type && sip->sip_content_type->c_type &&
           strcasecmp(sip->sip_content_type->c_type, "application/sdp") == 0;
}

void leg_learn_sdp(struct leg *leg, const struct sdpx_info *info, const char *body, size_t len)
{
    leg->in_o_id = info->o_id;
    leg->in_o_version = info->o_version;
    leg->have_in_version = true;
    leg->hold_in = info->on_hold;
    if (body) {
        free(leg->sdp_in);
        leg->sdp_in = strndup(body, len);
    }
    if (!leg->ep)
        return;
    int n = relay_ep_nstreams(leg->ep);
    for (int i = 0; i < n && i < info->nstreams; i++)
        relay_ep_set_peer(leg->ep, i, info->s[i].addr, info->s[i].port, info->s[i].rtcp_port);
}

char *leg_sdp_for(struct app *app, struct leg *to, const char *body, size_t len)
{
    char err[160];
    char *out;

    if (!to->ep) {
        out = strndup(body, len);
    } else {
        uint16_t ports[SDPX_MAX_STREAMS] = {0};
        int n = relay_ep_nstreams(to->ep);
        for (int i = 0; i < n && i < SDPX_MAX_STREAMS; i++)
            ports[i] = relay_ep_port(to->ep, i);
        struct sdpx_origin next = to->origin;
        if (to->sdp_out)
            next.version++;
        out = sdpx_rewrite(body, len, app->cfg->media_address, ports, n, &next, err, sizeof err);
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

const char *leg_phrase(nua_handle_t *nh, const char *phrase)
{
    return phrase ? su_strdup(nua_handle_home(nh), phrase) : NULL;
}

void leg_hangup(struct leg *leg, int status, const char *phrase)
{
    if (!leg || !leg->nh || leg->hangup_sent || leg->state == LEG_GONE)
        return;
    leg->hangup_sent = true;
    struct call *c = leg->call;
    const char *role = leg_role_name(leg->role);

    if (leg->role == LEG_CALLER && leg->state < LEG_ANSWERED) {
        call_log(c, LOG_INFO, "caller leg: answering %d %s", status, phrase);
        nua_respond(leg->nh, status, leg_phrase(leg->nh, phrase), TAG_END());
    } else if (leg->role != LEG_CALLER && leg->state < LEG_ANSWERED) {
        call_log(c, LOG_INFO, "%s leg: CANCEL", role);
        nua_cancel(leg->nh, TAG_END());
    } else {
        if (leg->ack_pending) {
            /* A 2xx we never ACKed: ACK it so the peer stops
             * retransmitting, then BYE. */
            leg->ack_pending = false;
            nua_ack(leg->nh, TAG_IF(leg->sdp_out, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
                    TAG_IF(leg->sdp_out, SIPTAG_PAYLOAD_STR(leg->sdp_out)), TAG_END());
        }
        call_log(c, LOG_DEBUG, "%s leg: BYE", role);
        nua_bye(leg->nh, TAG_END());
    }
    leg->state = LEG_ENDING;
}

/* Any ACK, BYE or even nua_handle_destroy() on such a dialog kills the
 * process (endless recursion in nua, or an assertion when destroyed in the
 * middle of its transaction). The peer stops retransmitting after 64*T1. */
static struct leg sentinel;
static unsigned long quarantined;

void leg_quarantine(struct leg *leg)
{
    nua_handle_bind(leg->nh, &sentinel);
    leg->nh = NULL;
    leg->ack_pending = false;
    leg->hangup_sent = true;
    leg->state = LEG_GONE;
    quarantined++;
}

bool leg_is_quarantine_sentinel(const struct leg *leg) { return leg == &sentinel; }
unsigned long leg_quarantined_count(void) { return quarantined; }

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
    leg->media_nets = malloc(trunk->nmedia_sources * sizeof *leg->media_nets);
    if (!leg->media_nets) {
        leg->nmedia_nets = 0;
        return;
    }
    memcpy(leg->media_nets, trunk->media_sources,
           trunk->nmedia_sources * sizeof *leg->media_nets);
    leg->nmedia_nets = trunk->nmedia_sources;
    if (leg->ep)
        relay_ep_allow_nets(leg->ep, leg->media_nets, leg->nmedia_nets);
}
