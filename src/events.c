/* events.c - webhook events: queue, signing, delivery with back-off.
 *
 * Data structures (all touched by the control thread only):
 *  - every held event is on the "all" list in emission order (seq); that is
 *    where the oldest is found when the queue overflows;
 *  - an event waiting to be sent is on the "ready" list (seq order, so a
 *    retry goes ahead of newer events: FIFO dispatch);
 *  - an event backing off sits in the wait bucket of its delay (1, 2, 4, 8,
 *    16, 32, 60 s): events enter a bucket at now + its fixed delay, so each
 *    bucket is sorted by due time and only the bucket heads need looking at;
 *  - an event in flight is on none of those lists but "all"; its POST's
 *    callback gets the event pointer, which stays valid because in-flight
 *    events are never freed without http_cancel() first (events_destroy).
 */
#include "xalloc.h"
#include "sofia_types.h"

#include "events.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "config.h"
#include "hash.h"
#include "http_client.h"
#include "log.h"
#include "looplag.h"

#define NBUCKETS 7 /* delays 1, 2, 4, 8, 16, 32, 60 s */
#define SID_BUCKETS 1024 /* sessions with undelivered events, by session id */
#define MAX_DELAY_MS 60000

enum where { W_NONE = -3, W_INFLIGHT = -2, W_READY = -1 /* 0..NBUCKETS-1: wait bucket */ };

struct event {
    struct events *owner;
    struct event *aprev, *anext; /* "all" list */
    struct event *lprev, *lnext; /* ready list or a wait bucket */
    int where;
    unsigned long long seq;
    unsigned attempts;
    int64_t due_ms; /* monotonic */
    char *body;
    size_t len;
    char *sid; /* payload's session_id (may be NULL) */
    /* the session's undelivered events in emission order; the newest one is
     * in ev->sid_tail[], chained by hnext */
    struct event *sprev, *snext, *hnext;
    char id[37];
    char type[48];
    char last_error[96];
};

struct elist {
    struct event *head, *tail;
    size_t n;
};

struct events {
    struct app *app;
    struct http_client *http;
    su_timer_t *timer;
    struct event *all_head, *all_tail;
    struct event *sid_tail[SID_BUCKETS];
    size_t held;
    struct elist ready;
    struct elist wait[NBUCKETS];
    unsigned inflight;
    unsigned long long next_seq;
    struct events_stats st;
    bool failing;      /* last attempt failed: log the next success */
    bool outage;       /* receiver trouble: one probe in flight at a time */
    int64_t paused_until; /* no new attempt before this (monotonic ms) */
    bool overflowing;  /* dropping on overflow: logged once per episode */
    /* decoded signing key, cached for the secret string it came from */
    char *key_src;
    unsigned char *key;
    size_t keylen;
};

static const int bucket_delay_ms[NBUCKETS] = {1000, 2000, 4000, 8000, 16000, 32000, 60000};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- base64 / HMAC -------------------------------------------------------- */

static bool b64_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '+' || ch == '/';
}

/* Decode standard base64 (the '=' padding may be missing). Returns a
 * malloc'ed buffer (never NULL on success, even for 0 bytes) and its length
 * in *outlen, or NULL if s is not valid base64 (or out of memory). */
static unsigned char *b64_decode(const char *s, size_t *outlen)
{
    size_t n = strlen(s), d = 0, pad = 0;
    while (d < n && b64_char((unsigned char)s[d]))
        d++;
    while (d + pad < n && s[d + pad] == '=')
        pad++;
    size_t need = (4 - d % 4) % 4;
    if (d + pad != n || d % 4 == 1 || pad > need || (pad && pad != need))
        return NULL;
    char *padded = xmalloc(d + need + 1);
    unsigned char *out = xmalloc((d + need) / 4 * 3 + 1);
    if (!padded || !out) {
        free(padded);
        free(out);
        return NULL;
    }
    memcpy(padded, s, d);
    memset(padded + d, '=', need);
    padded[d + need] = '\0';
    int r = d ? EVP_DecodeBlock(out, (const unsigned char *)padded, (int)(d + need)) : 0;
    free(padded);
    if (r < 0 || (size_t)r < need) {
        free(out);
        return NULL;
    }
    *outlen = (size_t)r - need; /* EVP_DecodeBlock counts the padding as zero bytes */
    return out;
}

static int sign_with_key(const unsigned char *key, size_t keylen, const char *timestamp,
                         const char *body, size_t bodylen, char *out, size_t outlen)
{
    static const unsigned char nokey[1];
    if (outlen < EVENTS_SIGNATURE_SIZE)
        return -1;
    size_t tlen = strlen(timestamp);
    unsigned char *msg = xmalloc(tlen + 1 + bodylen + 1);
    if (!msg)
        return -1;
    memcpy(msg, timestamp, tlen);
    msg[tlen] = '.';
    memcpy(msg + tlen + 1, body, bodylen);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    unsigned char *ok = HMAC(EVP_sha256(), keylen ? key : nokey, (int)keylen, msg,
                             tlen + 1 + bodylen, md, &mdlen);
    free(msg);
    if (!ok || mdlen != 32)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen); /* 44 chars + NUL */
    return 0;
}

int events_sign(const char *secret_b64, const char *timestamp, const char *body, char *out,
                size_t outlen)
{
    if (!secret_b64 || !timestamp || !body || !out || outlen < EVENTS_SIGNATURE_SIZE)
        return -1;
    size_t keylen;
    unsigned char *key = b64_decode(secret_b64, &keylen);
    int raw = 0;
    if (!key) {
        raw = 1;
        keylen = strlen(secret_b64);
    }
    int r = sign_with_key(raw ? (const unsigned char *)secret_b64 : key, keylen, timestamp, body,
                          strlen(body), out, outlen);
    if (key)
        OPENSSL_cleanse(key, keylen);
    free(key);
    return r < 0 ? -1 : raw;
}

/* The key for the current secret, decoded once per distinct secret value. */
static void forget_key(struct events *ev)
{
    if (ev->key_src)
        OPENSSL_cleanse(ev->key_src, strlen(ev->key_src));
    if (ev->key)
        OPENSSL_cleanse(ev->key, ev->keylen);
    free(ev->key_src);
    free(ev->key);
    ev->key_src = NULL;
    ev->key = NULL;
}

static bool current_key(struct events *ev, const char *secret)
{
    if (ev->key_src && strcmp(ev->key_src, secret) == 0)
        return ev->key != NULL;
    forget_key(ev);
    ev->key = NULL;
    ev->keylen = 0;
    ev->key_src = xstrdup(secret);
    if (!ev->key_src)
        return false;
    ev->key = b64_decode(secret, &ev->keylen);
    if (!ev->key) {
        log_error("webhooks.secret is not valid base64: signing with its raw bytes");
        ev->keylen = strlen(secret);
        ev->key = xmalloc(ev->keylen + 1);
        if (!ev->key)
            return false;
        memcpy(ev->key, secret, ev->keylen + 1);
    }
    return true;
}

/* ---- lists ------------------------------------------------------------- */

static void list_append(struct elist *l, struct event *e)
{
    e->lnext = NULL;
    e->lprev = l->tail;
    if (l->tail)
        l->tail->lnext = e;
    else
        l->head = e;
    l->tail = e;
    l->n++;
}

/* Insert keeping seq order; scans from the head (retried events are old). */
static void list_insert_seq(struct elist *l, struct event *e)
{
    struct event *p = l->head;
    while (p && p->seq < e->seq)
        p = p->lnext;
    if (!p) {
        list_append(l, e);
        return;
    }
    e->lnext = p;
    e->lprev = p->lprev;
    if (p->lprev)
        p->lprev->lnext = e;
    else
        l->head = e;
    p->lprev = e;
    l->n++;
}

static void list_remove(struct elist *l, struct event *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        l->head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        l->tail = e->lprev;
    e->lprev = e->lnext = NULL;
    l->n--;
}

static void event_unqueue(struct events *ev, struct event *e)
{
    if (e->where == W_READY)
        list_remove(&ev->ready, e);
    else if (e->where >= 0)
        list_remove(&ev->wait[e->where], e);
    e->where = W_NONE;
}

/* ---- per-session order ----------------------------------------------------- */

static struct event **sid_slot(struct events *ev, const char *sid)
{
    struct event **pp = &ev->sid_tail[hash_str(sid) % SID_BUCKETS];
    while (*pp && strcmp((*pp)->sid, sid) != 0)
        pp = &(*pp)->hnext;
    return pp; /* the session's newest event, or where it goes */
}

static void session_link(struct events *ev, struct event *e)
{
    if (!e->sid)
        return;
    struct event **pp = sid_slot(ev, e->sid);
    struct event *tail = *pp;
    if (tail) {
        tail->snext = e;
        e->sprev = tail;
        e->hnext = tail->hnext;
        tail->hnext = NULL;
    }
    *pp = e;
}

static void session_unlink(struct events *ev, struct event *e)
{
    if (!e->sid)
        return;
    if (e->sprev)
        e->sprev->snext = e->snext;
    if (e->snext) {
        e->snext->sprev = e->sprev;
        return;
    }
    struct event **pp = sid_slot(ev, e->sid); /* e is the newest: it is in the table */
    if (e->sprev) {
        e->sprev->hnext = e->hnext;
        *pp = e->sprev;
    } else {
        *pp = e->hnext;
    }
}

/* Remove from everything and free. Not for events in flight. */
static void event_free(struct events *ev, struct event *e)
{
    event_unqueue(ev, e);
    session_unlink(ev, e);
    if (e->aprev)
        e->aprev->anext = e->anext;
    else
        ev->all_head = e->anext;
    if (e->anext)
        e->anext->aprev = e->aprev;
    else
        ev->all_tail = e->aprev;
    ev->held--;
    free(e->body);
    free(e->sid);
    free(e);
}

/* ---- delivery -------------------------------------------------------------- */

static void dispatch(struct events *ev);
static void on_delivered(void *arg, long status, const char *body, size_t len, const char *error);

static void on_retry_timer(struct app *app, su_timer_t *t, void *arg);

static void arm_timer(struct events *ev)
{
    int64_t due = INT64_MAX;
    for (int i = 0; i < NBUCKETS; i++)
        if (ev->wait[i].head && ev->wait[i].head->due_ms < due)
            due = ev->wait[i].head->due_ms;
    if (ev->ready.head && ev->paused_until && ev->paused_until < due)
        due = ev->paused_until;
    if (due == INT64_MAX) {
        su_timer_reset(ev->timer);
        return;
    }
    int64_t ms = due - now_ms();
    su_timer_set_interval(ev->timer, on_retry_timer, ev, (su_duration_t)(ms < 0 ? 0 : ms));
}

static void on_retry_timer(struct app *app, su_timer_t *t, void *arg)
{
    struct events *ev = arg;
    struct looplag_mark m;
    looplag_begin(&m, "timer", "webhook-retry", NULL);
    int64_t now = now_ms();
    for (int i = 0; i < NBUCKETS; i++) {
        struct event *e;
        while ((e = ev->wait[i].head) && e->due_ms <= now) {
            list_remove(&ev->wait[i], e);
            e->where = W_READY;
            list_insert_seq(&ev->ready, e);
        }
    }
    arm_timer(ev);
    dispatch(ev);
    looplag_end(&m);
}

static void give_up(struct events *ev, struct event *e)
{
    ev->st.dropped++;
    log_msg(LOG_WARN, e->sid, "webhook %s (id %s) given up after %u attempt(s): %s", e->type, e->id,
            e->attempts, e->last_error);
    event_free(ev, e);
}

static int delay_ms(unsigned attempts)
{
    int b = (int)attempts - 1;
    return bucket_delay_ms[b < 0 ? 0 : b >= NBUCKETS ? NBUCKETS - 1 : b];
}

/* An attempt failed (e->last_error says why): back off or give up.
 * receiver_trouble (no answer, 5xx, 408, 429) also pauses all dispatch for
 * the same delay and, until the next success, allows one attempt in flight
 * at a time: a dead receiver gets one probe per back-off period instead of
 * every queued event burning its attempts. Other answers (4xx) concern this
 * event only. */
static void attempt_failed(struct events *ev, struct event *e, bool receiver_trouble)
{
    int64_t due = now_ms() + delay_ms(e->attempts);
    if (receiver_trouble) {
        ev->outage = true;
        if (due > ev->paused_until)
            ev->paused_until = due;
    }
    ev->st.failed_attempts++;
    if (!ev->failing) {
        ev->failing = true;
        log_msg(LOG_WARN, e->sid, "webhook delivery failing (%s): retrying with back-off",
                e->last_error);
    } else {
        log_msg(LOG_DEBUG, e->sid, "webhook %s (id %s) attempt %u failed: %s", e->type, e->id,
                e->attempts, e->last_error);
    }
    if (e->attempts >= EVENTS_MAX_ATTEMPTS) {
        give_up(ev, e);
        return;
    }
    int b = (int)e->attempts - 1;
    if (b >= NBUCKETS)
        b = NBUCKETS - 1;
    e->due_ms = due;
    e->where = b;
    list_append(&ev->wait[b], e);
    arm_timer(ev);
}

/* Start one attempt. False when it could not even start (e->last_error). */
static bool send_event(struct events *ev, struct event *e, const char *url, const char *secret)
{
    char ts[32], tsh[64], sigh[96];
    snprintf(ts, sizeof ts, "%lld", (long long)time(NULL));
    snprintf(tsh, sizeof tsh, "X-Webhook-Timestamp: %s", ts);
    const char *headers[3] = {tsh, NULL, NULL};
    e->attempts++;
    if (secret && *secret) {
        char sig[EVENTS_SIGNATURE_SIZE];
        if (!current_key(ev, secret) ||
            sign_with_key(ev->key, ev->keylen, ts, e->body, e->len, sig, sizeof sig) < 0) {
            snprintf(e->last_error, sizeof e->last_error, "cannot sign the event");
            return false;
        }
        snprintf(sigh, sizeof sigh, "X-Webhook-Signature: %s", sig);
        headers[1] = sigh;
    }
    if (http_post(ev->http, url, "application/json", e->body, e->len, headers, EVENTS_TIMEOUT_MS,
                  on_delivered, e) < 0) {
        snprintf(e->last_error, sizeof e->last_error, "cannot start the HTTP request");
        return false;
    }
    return true;
}

/* A session's events reach the receiver in the order they happened: an
 * event waits while an earlier one of the same session is undelivered (in
 * flight or waiting for a retry). O(1): a long outage backlog is scanned
 * once per dispatch, not once per event. */
static bool held_back(const struct event *e) { return e->sprev != NULL; }

static void dispatch(struct events *ev)
{
    if (ev->paused_until) {
        if (ev->paused_until > now_ms()) {
            arm_timer(ev);
            return;
        }
        ev->paused_until = 0;
    }
    unsigned limit = ev->outage ? 1 : EVENTS_MAX_INFLIGHT;
    struct event *next;
    for (struct event *e = ev->ready.head; e && ev->inflight < limit; e = next) {
        next = e->lnext;
        if (held_back(e))
            continue;
        list_remove(&ev->ready, e);
        e->where = W_NONE;
        const struct config *cfg = ev->app->cfg;
        const char *url = cfg ? cfg->webhook_url : NULL;
        if (!url || !*url) { /* webhooks.url removed by a reload */
            ev->st.dropped++;
            log_msg(LOG_DEBUG, e->sid, "webhook %s (id %s) dropped: no webhooks.url", e->type,
                    e->id);
            event_free(ev, e);
            continue;
        }
        if (!send_event(ev, e, url, cfg->webhook_secret)) {
            attempt_failed(ev, e, false);
            continue;
        }
        e->where = W_INFLIGHT;
        ev->inflight++;
    }
}

static void on_delivered(void *arg, long status, const char *body, size_t len, const char *error)
{
    struct event *e = arg; /* in flight: cancelled before it could be freed */
    struct events *ev = e->owner;
    ev->inflight--;
    e->where = W_NONE;
    if (status >= 200 && status < 300) {
        ev->st.delivered++;
        log_msg(LOG_DEBUG, e->sid, "webhook %s (id %s) delivered: %ld", e->type, e->id, status);
        if (ev->failing) {
            ev->failing = false;
            log_info("webhook deliveries succeeding again");
        }
        ev->outage = false;
        ev->paused_until = 0;
        event_free(ev, e);
    } else {
        if (status == 0)
            snprintf(e->last_error, sizeof e->last_error, "%s", error ? error : "transport error");
        else
            snprintf(e->last_error, sizeof e->last_error, "HTTP %ld", status);
        attempt_failed(ev, e, status == 0 || status >= 500 || status == 408 || status == 429);
    }
    dispatch(ev);
}

/* ---- emit ------------------------------------------------------------------ */

static void make_uuid(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) { /* never expected; still unique enough */
        static unsigned long long n;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long x = (unsigned long long)ts.tv_sec * 1000000000ull +
                               (unsigned long long)ts.tv_nsec, y = ++n ^ (uintptr_t)&n;
        memcpy(b, &x, 8);
        memcpy(b + 8, &y, 8);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

/* Keep at most EVENTS_MAX_QUEUE events: drop the oldest not in flight. */
static void enforce_bound(struct events *ev)
{
    if (ev->held <= EVENTS_MAX_QUEUE) {
        if (ev->overflowing && ev->held < EVENTS_MAX_QUEUE * 9 / 10)
            ev->overflowing = false;
        return;
    }
    struct event *e = ev->all_head;
    while (e && ev->held > EVENTS_MAX_QUEUE) {
        struct event *next = e->anext;
        if (e->where != W_INFLIGHT) {
            if (!ev->overflowing) {
                ev->overflowing = true;
                log_warn("webhook queue full (%d events): dropping the oldest", EVENTS_MAX_QUEUE);
            }
            log_msg(LOG_DEBUG, e->sid, "webhook %s (id %s) dropped: queue full", e->type, e->id);
            ev->st.dropped++;
            event_free(ev, e);
        }
        e = next;
    }
    arm_timer(ev);
}

void events_emit(struct events *ev, const char *type, struct cJSON *payload)
{
    if (!ev || !type) {
        cJSON_Delete(payload);
        return;
    }
    ev->st.emitted++;
    const struct config *cfg = ev->app->cfg;
    if (!cfg || !cfg->webhook_url || !*cfg->webhook_url) {
        cJSON_Delete(payload);
        return;
    }

    struct event *e = xcalloc(1, sizeof *e);
    if (!e) {
        ev->st.dropped++;
        cJSON_Delete(payload);
        return;
    }
    e->owner = ev;
    e->seq = ++ev->next_seq;
    make_uuid(e->id);
    snprintf(e->type, sizeof e->type, "%s", type);
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(payload, "session_id");
    if (cJSON_IsString(sid) && sid->valuestring)
        e->sid = xstrdup(sid->valuestring);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* milliseconds, so the float prints short: 1770005095.25 */
    double event_ts = (double)((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000) / 1000.0;

    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddStringToObject(j, "version", "1.0.0");
        cJSON_AddStringToObject(j, "type", type);
        cJSON_AddStringToObject(j, "id", e->id);
        if (payload && cJSON_IsObject(payload))
            cJSON_AddItemToObject(j, "payload", payload);
        else {
            cJSON_Delete(payload);
            cJSON_AddObjectToObject(j, "payload");
        }
        payload = NULL;
        cJSON_AddNumberToObject(j, "event_ts", event_ts);
        e->body = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
    }
    cJSON_Delete(payload);
    if (!e->body) {
        log_msg(LOG_ERROR, e->sid, "webhook %s: cannot build the event", type);
        ev->st.dropped++;
        free(e->sid);
        free(e);
        return;
    }
    e->len = strlen(e->body);

    e->aprev = ev->all_tail;
    if (ev->all_tail)
        ev->all_tail->anext = e;
    else
        ev->all_head = e;
    ev->all_tail = e;
    session_link(ev, e);
    ev->held++;
    e->where = W_READY;
    list_append(&ev->ready, e);

    enforce_bound(ev);
    dispatch(ev);
}

/* ---- lifecycle ---------------------------------------------------------- */

struct events *events_create(struct app *app, struct http_client *http)
{
    struct events *ev = xcalloc(1, sizeof *ev);
    if (!ev)
        return NULL;
    ev->app = app;
    ev->http = http;
    ev->timer = su_timer_create(su_root_task(app->root), 0);
    if (!ev->timer) {
        log_error("events: cannot create a timer");
        free(ev);
        return NULL;
    }
    return ev;
}

void events_destroy(struct events *ev)
{
    if (!ev)
        return;
    if (ev->held)
        log_warn("webhooks: dropping %zu undelivered event(s) at shutdown", ev->held);
    while (ev->all_head) {
        struct event *e = ev->all_head;
        if (e->where == W_INFLIGHT) {
            http_cancel(ev->http, on_delivered, e);
            ev->inflight--;
            e->where = W_NONE;
        }
        ev->st.dropped++;
        event_free(ev, e);
    }
    su_timer_destroy(ev->timer);
    forget_key(ev);
    free(ev);
}

void events_stats(const struct events *ev, struct events_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!ev)
        return;
    *out = ev->st;
    out->queued = ev->held;
}

size_t events_pending(const struct events *ev)
{
    return ev ? ev->held : 0;
}

void events_post(struct app *app, const char *type, cJSON *p)
{
    cJSON *sid = cJSON_GetObjectItemCaseSensitive(p, "session_id");
    /* dialin.* repeat what the call's own INFO lines say: DEBUG keeps a
     * call at four log writes; transfer events stay visible */
    log_msg(strncmp(type, "dialin.", 7) == 0 ? LOG_DEBUG : LOG_INFO,
            cJSON_IsString(sid) ? sid->valuestring : NULL, "event %s", type);
    if (app->events)
        events_emit(app->events, type, p);
    else
        cJSON_Delete(p);
}
