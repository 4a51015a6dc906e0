/* events.h - webhook events (SPEC section 7), delivered asynchronously.
 *
 * events_emit() builds the event body at once and queues it; deliveries run
 * on the control loop through the shared http_client and never block the
 * caller. Each attempt POSTs
 *   {"version":"1.0.0","type":T,"id":"<uuid>","payload":{...},"event_ts":<s.ms>}
 * to app->cfg->webhook_url (read at send time, so SIGHUP may change it) with
 *   Content-Type: application/json
 *   X-Webhook-Timestamp: <unix seconds of this attempt>
 *   X-Webhook-Signature: base64(HMAC-SHA256(key, "<timestamp>.<body>"))
 * where key is base64-decode(webhooks.secret) (the raw bytes of the secret
 * if it is not valid base64: logged once); no signature header when the
 * secret is empty.
 *
 * Delivery: FIFO dispatch, at most EVENTS_MAX_INFLIGHT POSTs at once; a
 * failed attempt (transport error or non-2xx) is retried after 1, 2, 4, ...
 * seconds (capped at 60 s) and given up after EVENTS_MAX_ATTEMPTS attempts
 * (logged). When the receiver itself is in trouble (no answer, 5xx, 408,
 * 429) all dispatch pauses for that back-off and then probes with one POST
 * at a time until one succeeds, so an outage costs one attempt per back-off
 * period rather than every queued event's attempts. At most
 * EVENTS_MAX_QUEUE events are held; beyond that the oldest one not in flight
 * is dropped. An empty webhooks.url discards events (still counted as
 * emitted).
 */
#ifndef SIPXFER_EVENTS_H
#define SIPXFER_EVENTS_H

#include <stddef.h>

struct app;
struct http_client;
struct events;
struct cJSON;

#define EVENTS_MAX_INFLIGHT 8
#define EVENTS_MAX_ATTEMPTS 10
#define EVENTS_MAX_QUEUE 10000
#define EVENTS_TIMEOUT_MS 10000L   /* per attempt */
#define EVENTS_SIGNATURE_SIZE 45   /* base64 of 32 bytes + NUL */

struct events_stats {
    unsigned long long emitted;         /* events_emit() calls */
    unsigned long long delivered;       /* answered 2xx */
    unsigned long long failed_attempts; /* attempts that failed (each retry counts) */
    unsigned long long dropped;         /* lost: queue overflow, gave up after
                                           EVENTS_MAX_ATTEMPTS, url removed by a
                                           reload, or pending at events_destroy */
    unsigned long long queued;          /* held now: waiting, backing off or in flight */
};

/* NULL on failure (logged). http must outlive the events object. */
struct events *events_create(struct app *app, struct http_client *http);

/* Drop what is pending (logged with the count), cancel deliveries in
 * flight, free. Call before http_client_destroy(). NULL ok. */
void events_destroy(struct events *ev);

/* Queue an event of this type; takes ownership of payload (a cJSON object,
 * freed here in every case). Never blocks; ev NULL just frees payload. */
void events_emit(struct events *ev, const char *type, struct cJSON *payload);

struct app;
/* Log the event and queue it on app->events (dropped when webhooks are
 * off); takes ownership of payload (a cJSON object). Never blocks. */
void events_post(struct app *app, const char *type, struct cJSON *payload);

void events_stats(const struct events *ev, struct events_stats *out);

/* Events not yet delivered or given up (what events_destroy would drop):
 * lets shutdown wait a little for the queue to drain. */
size_t events_pending(const struct events *ev);

/* Write base64(HMAC-SHA256(base64-decode(secret_b64), "<timestamp>.<body>"))
 * into out (NUL-terminated, 44 characters; outlen >= EVENTS_SIGNATURE_SIZE).
 * A secret that is not valid base64 (missing '=' padding is tolerated) is
 * used as raw bytes. Returns 0 when the secret was valid base64, 1 when its
 * raw bytes were used, -1 on error (outlen too small, NULL argument). */
int events_sign(const char *secret_b64, const char *timestamp, const char *body, char *out,
                size_t outlen);

#endif
