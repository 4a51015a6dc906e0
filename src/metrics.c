/* metrics.c - gather counters from the modules into Prometheus text. */
#include "xalloc.h"
#include "sofia_types.h"

#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "bridge.h"
#include "call.h"
#include "cluster.h"
#include "dns_guard.h"
#include "events.h"
#include "gateway.h"
#include "http_client.h"
#include "looplag.h"
#include "media_watch.h"
#include "registration.h"
#include "relay.h"
#include "tcp_guard.h"
#include "transfer.h"

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)n;
        b->p = xrealloc(b->p, b->cap);
    }
}

static void metric(struct buf *b, const char *name, const char *type, const char *help,
                   unsigned long long value)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, value);
}

/* A label value: backslash, double quote and newline escaped (text format 0.0.4). */
static void put_label(struct buf *b, const char *v)
{
    for (; v && *v; v++) {
        if (*v == '\\' || *v == '"')
            put(b, "\\%c", *v);
        else if (*v == '\n')
            put(b, "\\n");
        else
            put(b, "%c", *v);
    }
}

static void gateways(struct buf *b, struct app *app)
{
    put(b, "# HELP sipxfer_gateway_up 1 while a trunk gateway is tried in its turn, 0 while it is "
           "skipped (503, no answer, failed OPTIONS probe).\n# TYPE sipxfer_gateway_up gauge\n");
    const char *trunk, *uri;
    bool up;
    for (size_t i = 0; gateway_get(app, i, &trunk, &uri, &up); i++) {
        put(b, "sipxfer_gateway_up{trunk=\"");
        put_label(b, trunk);
        put(b, "\",gateway=\"");
        put_label(b, uri);
        put(b, "\"} %d\n", up ? 1 : 0);
    }
}

static void loop_lag(struct buf *b)
{
    struct looplag_histogram h;
    looplag_histogram(&h);
    put(b, "# HELP sipxfer_loop_lag_seconds Control-loop turn durations (busy time between two "
           "waits).\n# TYPE sipxfer_loop_lag_seconds histogram\n");
    for (int i = 0; i < LOOPLAG_NBUCKETS; i++)
        put(b, "sipxfer_loop_lag_seconds_bucket{le=\"%g\"} %llu\n", h.le[i],
            (unsigned long long)h.bucket[i]);
    put(b, "sipxfer_loop_lag_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)h.count);
    put(b, "sipxfer_loop_lag_seconds_sum %.6f\nsipxfer_loop_lag_seconds_count %llu\n", h.sum,
        (unsigned long long)h.count);
    metric(b, "sipxfer_loop_slow_turns_total", "counter",
           "Control-loop turns over 50 ms (each has a WARN line).", h.slow);
}

char *metrics_render(struct app *app)
{
    struct buf b = {.cap = 4096};
    b.p = xmalloc(b.cap);
    b.p[0] = '\0';

    struct bridge_counters bc = {0};
    if (app->bridge)
        bridge_counters(app->bridge, &bc);
    metric(&b, "sipxfer_calls_active", "gauge", "Bridged calls in progress.", call_count(app->calls));
    metric(&b, "sipxfer_calls_total", "counter", "INVITEs that became calls.", bc.calls_total);
    metric(&b, "sipxfer_calls_answered_total", "counter", "Calls answered by their room.",
           bc.calls_answered);
    static const char *const reasons[REJ_COUNT] = {
        [REJ_FORBIDDEN] = "forbidden", [REJ_NOT_FOUND] = "not_found",
        [REJ_MAX_CALLS] = "max_calls", [REJ_DRAIN] = "draining",
        [REJ_BAD] = "bad_request",     [REJ_NO_PORTS] = "no_ports",
        [REJ_RATE] = "rate_limit",     [REJ_SDP_LIMIT] = "sdp_limit",
        [REJ_TOO_MANY_HOPS] = "too_many_hops",
    };
    put(&b, "# HELP sipxfer_calls_rejected_total INVITEs refused before a call was made.\n"
            "# TYPE sipxfer_calls_rejected_total counter\n");
    for (int i = 0; i < REJ_COUNT; i++)
        put(&b, "sipxfer_calls_rejected_total{reason=\"%s\"} %llu\n", reasons[i], bc.rejected[i]);
    metric(&b, "sipxfer_draining", "gauge", "1 while draining after SIGTERM.", app->draining);
    {
        const char *trunk;
        bool up;
        for (size_t i = 0; registration_get(app, i, &trunk, &up); i++) {
            if (i == 0)
                put(&b, "# HELP sipxfer_trunk_registered 1 while the trunk's REGISTER holds.\n"
                        "# TYPE sipxfer_trunk_registered gauge\n");
            /* trunk names are config words; escape what Prometheus needs */
            put(&b, "sipxfer_trunk_registered{trunk=\"");
            for (const char *p = trunk; *p; p++)
                put(&b, *p == '"' || *p == '\\' ? "\\%c" : *p == '\n' ? "\\n" : "%c", *p);
            put(&b, "\"} %d\n", up ? 1 : 0);
        }
    }

    const unsigned long long (*xc)[XFER_NOUTCOMES] = app->stats.transfers;
    static const char *const modes[2] = {"sipCallTransfer", "sipRefer"};
    static const char *const outcomes[XFER_NOUTCOMES] = {"started", "completed", "failed"};
    put(&b, "# HELP sipxfer_transfers_total Transfers by mode and outcome (started counts every "
            "accepted request).\n# TYPE sipxfer_transfers_total counter\n");
    for (int m = 0; m < 2; m++)
        for (int o = 0; o < XFER_NOUTCOMES; o++)
            put(&b, "sipxfer_transfers_total{mode=\"%s\",outcome=\"%s\"} %llu\n", modes[m],
                outcomes[o], xc[m][o]);

    struct relay_stats rs = {0};
    if (app->relay)
        relay_stats(app->relay, &rs);
    metric(&b, "sipxfer_relay_ports_in_use", "gauge",
           "UDP ports of live relay endpoints (RTP+RTCP), warm ones not included.",
           rs.ports_in_use);
    metric(&b, "sipxfer_relay_ports_warm", "gauge",
           "UDP ports bound ahead of demand (media.warm_pairs), not in a call yet.",
           rs.ports_warm);
    metric(&b, "sipxfer_relay_kernel", "gauge",
           "1 while the eBPF kernel fast path is attached (media.kernel).", rs.kernel_on);
    metric(&b, "sipxfer_relay_kernel_streams", "gauge",
           "Latched stream directions (RTP and RTCP each) forwarded in the kernel now.",
           rs.kernel_streams);
    put(&b, "# HELP sipxfer_relay_packets_total Packets forwarded by the relay, by path.\n"
            "# TYPE sipxfer_relay_packets_total counter\n"
            "sipxfer_relay_packets_total{path=\"kernel\"} %llu\n"
            "sipxfer_relay_packets_total{path=\"user\"} %llu\n",
        (unsigned long long)rs.kernel_packets, (unsigned long long)rs.packets_forwarded);
    put(&b, "# HELP sipxfer_relay_bytes_total Payload bytes forwarded by the relay, by path.\n"
            "# TYPE sipxfer_relay_bytes_total counter\n"
            "sipxfer_relay_bytes_total{path=\"kernel\"} %llu\n"
            "sipxfer_relay_bytes_total{path=\"user\"} %llu\n",
        (unsigned long long)rs.kernel_bytes, (unsigned long long)rs.bytes_forwarded);
    metric(&b, "sipxfer_relay_warm_misses_total", "counter",
           "Media streams that found the warm pool empty and bound their ports on the call path.",
           rs.warm_misses);
    metric(&b, "sipxfer_relay_endpoints", "gauge", "Relay endpoints (one per media leg).",
           rs.endpoints);
    metric(&b, "sipxfer_relay_packets_forwarded_total", "counter",
           "RTP/RTCP packets forwarded, both paths (see sipxfer_relay_packets_total).",
           rs.packets_forwarded + rs.kernel_packets);
    metric(&b, "sipxfer_relay_packets_dropped_total", "counter",
           "Packets dropped, all reasons (see sipxfer_relay_dropped_total).", rs.packets_dropped);
    static const char *const drops[RELAY_DROP_COUNT] = {
        [RELAY_DROP_NO_PEER] = "no-peer",
        [RELAY_DROP_SEND_FAILED] = "send-failed",
        [RELAY_DROP_FOREIGN] = "foreign-source",
        [RELAY_DROP_NOT_LATCHED] = "not-latched",
        [RELAY_DROP_SRTP_AUTH] = "srtp-auth",
        [RELAY_DROP_SRTP] = "srtp",
    };
    put(&b, "# HELP sipxfer_relay_dropped_total Packets dropped by the relay, by reason.\n"
            "# TYPE sipxfer_relay_dropped_total counter\n");
    for (int i = 0; i < RELAY_DROP_COUNT; i++)
        put(&b, "sipxfer_relay_dropped_total{reason=\"%s\"} %llu\n", drops[i],
            (unsigned long long)rs.dropped[i]);
    metric(&b, "sipxfer_relay_bytes_forwarded_total", "counter", "Bytes forwarded, both paths.",
           rs.bytes_forwarded + rs.kernel_bytes);
    metric(&b, "sipxfer_srtp_decrypted_total", "counter",
           "SRTP/SRTCP packets from legs authenticated and decrypted by the relay.",
           rs.srtp_decrypted);
    metric(&b, "sipxfer_srtp_auth_failures_total", "counter",
           "SRTP/SRTCP packets from legs that failed authentication (dropped).",
           rs.srtp_auth_failures);
    struct tcp_guard_stats ts;
    tcp_guard_stats(&ts);
    metric(&b, "sipxfer_sip_tcp_connections", "gauge", "SIP TCP connections accepted and open.",
           ts.connections);
    static const char *const tcp_reasons[TCPG_NREASONS] = {
        [TCPG_TOTAL] = "total", [TCPG_PER_SOURCE] = "per_source",
        [TCPG_DESCRIPTORS] = "descriptors"};
    put(&b, "# HELP sipxfer_sip_tcp_refused_total SIP TCP connections closed at accept.\n"
            "# TYPE sipxfer_sip_tcp_refused_total counter\n");
    for (int i = 0; i < TCPG_NREASONS; i++)
        put(&b, "sipxfer_sip_tcp_refused_total{reason=\"%s\"} %llu\n", tcp_reasons[i],
            (unsigned long long)ts.refused[i]);
    metric(&b, "sipxfer_sip_tcp_idle_closed_total", "counter",
           "SIP TCP connections closed for sending nothing within sip.tcp_idle_timeout.",
           ts.idle_closed);
    metric(&b, "sipxfer_sip_tcp_fd_reserve", "gauge",
           "Descriptors SIP TCP leaves free for calls.", ts.reserve);
    struct events_stats es = {0};
    if (app->events)
        events_stats(app->events, &es);
    metric(&b, "sipxfer_webhook_events_total", "counter", "Webhook events emitted.", es.emitted);
    metric(&b, "sipxfer_webhook_deliveries_total", "counter", "Webhook events delivered (2xx).",
           es.delivered);
    metric(&b, "sipxfer_webhook_failed_attempts_total", "counter",
           "Webhook delivery attempts that failed (retried with back-off).", es.failed_attempts);
    metric(&b, "sipxfer_webhook_dropped_total", "counter",
           "Webhook events given up or dropped from a full queue.", es.dropped);
    metric(&b, "sipxfer_webhook_queued", "gauge", "Webhook events waiting for delivery.",
           es.queued);
    loop_lag(&b);
    metric(&b, "sipxfer_calls_media_timeout_total", "counter",
           "Calls ended because no RTP arrived from either side (media.timeout / hold_timeout).",
           app->stats.media_timeouts);
    metric(&b, "sipxfer_dns_blocked_total", "counter",
           "Name lookups refused on the control thread (answered as NXDOMAIN, never sent to DNS).",
           dns_guard_blocked());
    if (app->cluster) {
        metric(&b, "sipxfer_cluster_redis_up", "gauge",
               "1 while the connection to the cluster's Redis is up.", cluster_redis_up(app));
        metric(&b, "sipxfer_cluster_sessions_reaped_total", "counter",
               "Sessions of lost nodes this node ended (reason node-lost).",
               cluster_sessions_reaped(app));
    }
    gateways(&b, app);
    return b.p;
}
