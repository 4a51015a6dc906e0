/* http_client.c - libcurl multi on the control su_root (see http_client.h).
 *
 * Integration (curl's "multi_socket" API):
 *  - CURLMOPT_SOCKETFUNCTION: each socket curl wants watched gets an
 *    su_root registration (su_root_register / su_root_eventmask), removed
 *    with su_root_deregister on CURL_POLL_REMOVE -- curl sends that before
 *    it closes the socket, so the epoll deregistration sees a live fd.
 *    Our per-socket state is kept in our own fd-indexed table, not with
 *    curl_multi_assign(), so no curl_multi_* call is ever made from inside
 *    a curl callback.
 *  - CURLMOPT_TIMERFUNCTION: one su_timer. curl asking for "0 ms" (e.g. from
 *    curl_multi_add_handle) just arms that timer at 0 ms, which defers the
 *    curl_multi_socket_action() call to the loop.
 *  - After every curl_multi_socket_action() finished transfers are collected
 *    with curl_multi_info_read(), removed from the multi handle and only then
 *    reported to their callbacks (so callbacks may start new requests).
 */
#include "xalloc.h"
#include "sofia_types.h"

#include "http_client.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "log.h"
#include "looplag.h"

#ifndef SIPXFER_VERSION
#define SIPXFER_VERSION "dev"
#endif

#define DEFAULT_TIMEOUT_MS 10000L

/* One socket curl asked us to watch. */
struct hsock {
    curl_socket_t fd;
    int index;  /* su_root registration index */
    int events; /* SU_WAIT_IN / SU_WAIT_OUT currently requested */
    struct http_client *client;
};

struct request {
    struct request *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    http_done_f done;
    void *arg;
    char *buf; /* response body, always NUL-terminated when non-NULL */
    size_t len, cap;
    bool too_big;
    char errbuf[CURL_ERROR_SIZE];
};

struct http_client {
    struct app *app;
    CURLM *multi;
    su_timer_t *timer;
    struct hsock **socks; /* indexed by fd */
    size_t nsocks;
    struct request *reqs; /* in flight */
    size_t inflight;
    int depth;  /* > 0 while completion callbacks run */
    bool dead;  /* destroy requested from inside a callback */
    bool closing;
};

static void client_free(struct http_client *c);

/* ---- requests ---------------------------------------------------------- */

static void req_link(struct http_client *c, struct request *r)
{
    r->prev = NULL;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->inflight++;
}

static void req_unlink(struct http_client *c, struct request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    c->inflight--;
}

static void req_free(struct request *r)
{
    if (!r)
        return;
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->buf);
    free(r);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    struct request *r = userp;
    size_t n = size * nmemb;
    if (r->len + n > HTTP_MAX_RESPONSE) {
        r->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *p = xrealloc(r->buf, cap);
        if (!p)
            return 0;
        r->buf = p;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    r->buf[r->len] = '\0';
    return n;
}

/* ---- completions -------------------------------------------------------- */

static void finish(struct http_client *c, CURL *easy, CURLcode rc)
{
    char *priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    struct request *r = (struct request *)priv;
    if (!r)
        return;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    req_unlink(c, r);
    curl_multi_remove_handle(c->multi, easy);

    const char *error = NULL;
    if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        status = 0;
        error = "response body too large";
    } else if (rc != CURLE_OK) {
        status = 0;
        error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
    } else if (status <= 0) {
        status = 0;
        error = "no HTTP response";
    }
    if (status == 0)
        r->done(r->arg, 0, NULL, 0, error);
    else
        r->done(r->arg, status, r->buf ? r->buf : "", r->len, NULL);
    req_free(r);
}

/* Report finished transfers. Must be the last thing its caller does with
 * c: a callback may have destroyed the client. */
static void process_done(struct http_client *c)
{
    c->depth++;
    CURLMsg *m;
    int left;
    while (!c->dead && (m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        /* m is invalid once the handle is removed: copy what we need. */
        CURL *easy = m->easy_handle;
        CURLcode rc = m->data.result;
        finish(c, easy, rc);
    }
    c->depth--;
    if (c->dead && c->depth == 0)
        client_free(c);
}

/* ---- loop integration ---------------------------------------------------- */

static void on_timeout(struct app *app, su_timer_t *t, void *arg)
{
    struct http_client *c = arg;
    struct looplag_mark m;
    looplag_begin(&m, "curl", "timer", NULL);
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    process_done(c);
    looplag_end(&m);
}

static int on_socket(struct app *app, su_wait_t *w, void *arg)
{
    struct hsock *s = arg;
    struct http_client *c = s->client;
    curl_socket_t fd = s->fd;
    int ev = su_wait_events(w, fd);
    int mask = 0;
    if (ev & (SU_WAIT_IN | SU_WAIT_HUP))
        mask |= CURL_CSELECT_IN;
    if (ev & SU_WAIT_OUT)
        mask |= CURL_CSELECT_OUT;
    if (ev & SU_WAIT_ERR)
        mask |= CURL_CSELECT_ERR;
    int running;
    struct looplag_mark m;
    looplag_begin(&m, "curl", "socket", NULL);
    /* s may be freed inside this call (CURL_POLL_REMOVE). */
    curl_multi_socket_action(c->multi, fd, mask, &running);
    process_done(c);
    looplag_end(&m);
    return 0;
}

static struct hsock *sock_get(struct http_client *c, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < c->nsocks ? c->socks[fd] : NULL;
}

static bool sock_put(struct http_client *c, curl_socket_t fd, struct hsock *s)
{
    if (fd < 0)
        return false;
    if ((size_t)fd >= c->nsocks) {
        size_t n = c->nsocks ? c->nsocks : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct hsock **p = xrealloc(c->socks, n * sizeof *p);
        if (!p)
            return false;
        memset(p + c->nsocks, 0, (n - c->nsocks) * sizeof *p);
        c->socks = p;
        c->nsocks = n;
    }
    c->socks[fd] = s;
    return true;
}

static void sock_drop(struct http_client *c, struct hsock *s)
{
    su_root_deregister(c->app->root, s->index);
    c->socks[s->fd] = NULL;
    free(s);
}

static int sock_register(struct http_client *c, curl_socket_t fd, int events)
{
    struct hsock *s = xcalloc(1, sizeof *s);
    if (!s)
        return -1;
    s->fd = fd;
    s->events = events;
    s->client = c;
    su_wait_t w;
    if (su_wait_create(&w, fd, events) < 0 ||
        (s->index = su_root_register(c->app->root, &w, on_socket, s, 0)) < 0) {
        log_error("http: cannot register socket %d on the event loop", (int)fd);
        free(s);
        return -1;
    }
    if (!sock_put(c, fd, s)) {
        su_root_deregister(c->app->root, s->index);
        free(s);
        return -1;
    }
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION. Touches only su_root, never curl. */
static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct hsock *s = sock_get(c, fd);

    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_drop(c, s);
        return 0;
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= SU_WAIT_IN;
    if (what & CURL_POLL_OUT)
        events |= SU_WAIT_OUT;

    if (!s)
        return sock_register(c, fd, events);
    if (s->events != events) {
        if (su_root_eventmask(c->app->root, s->index, fd, events) < 0) {
            /* Stale registration (should not happen): start afresh. */
            sock_drop(c, s);
            return sock_register(c, fd, events);
        }
        s->events = events;
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION. Touches only the su_timer, never curl. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_client *c = userp;
    if (!c->timer)
        return 0;
    if (timeout_ms < 0)
        su_timer_reset(c->timer);
    else
        su_timer_set_interval(c->timer, on_timeout, c,
                              (su_duration_t)(timeout_ms > 3600000 ? 3600000 : timeout_ms));
    return 0;
}

/* ---- public API ----------------------------------------------------------- */

struct http_client *http_client_create(struct app *app)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("http: curl_global_init failed");
        return NULL;
    }
    struct http_client *c = xcalloc(1, sizeof *c);
    if (!c) {
        curl_global_cleanup();
        return NULL;
    }
    c->app = app;
    c->timer = su_timer_create(su_root_task(app->root), 0);
    c->multi = curl_multi_init();
    if (!c->timer || !c->multi) {
        log_error("http: cannot create the HTTP client");
        if (c->multi)
            curl_multi_cleanup(c->multi);
        su_timer_destroy(c->timer);
        free(c);
        curl_global_cleanup();
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

static void client_free(struct http_client *c)
{
    c->closing = true;
    while (c->reqs) {
        struct request *r = c->reqs;
        req_unlink(c, r);
        curl_multi_remove_handle(c->multi, r->easy); /* may call sock_cb REMOVE */
        req_free(r);
    }
    curl_multi_cleanup(c->multi); /* closes cached connections (sock_cb again) */
    for (size_t fd = 0; fd < c->nsocks; fd++)
        if (c->socks[fd]) {
            log_debug("http: socket %zu still registered at shutdown", fd);
            sock_drop(c, c->socks[fd]);
        }
    free(c->socks);
    su_timer_destroy(c->timer);
    free(c);
    curl_global_cleanup();
}

void http_client_destroy(struct http_client *c)
{
    if (!c || c->dead)
        return;
    if (c->depth > 0) { /* inside a completion callback: finish there */
        c->dead = true;
        return;
    }
    client_free(c);
}

size_t http_client_inflight(const struct http_client *c)
{
    return c ? c->inflight : 0;
}

int http_post(struct http_client *c, const char *url, const char *content_type, const char *body,
              size_t len, const char *const *headers, long timeout_ms, http_done_f done,
              void *arg)
{
    return http_request(c, "POST", url, content_type, body, len, headers, timeout_ms, done, arg);
}

int http_request(struct http_client *c, const char *method, const char *url,
                 const char *content_type, const char *body, size_t len,
                 const char *const *headers, long timeout_ms, http_done_f done, void *arg)
{
    bool post = strcmp(method, "POST") == 0;
    if (!post && strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0)
        return -1;
    if (!c || c->dead || c->closing || !url || !done)
        return -1;
    struct request *r = xcalloc(1, sizeof *r);
    if (!r)
        return -1;
    r->done = done;
    r->arg = arg;
    r->easy = curl_easy_init();
    if (!r->easy)
        goto fail;

    char line[512];
    bool ok = true;
    if (content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", content_type);
        ok &= (r->headers = curl_slist_append(r->headers, line)) != NULL;
    }
    /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
    if (ok)
        ok &= (r->headers = curl_slist_append(r->headers, "Expect:")) != NULL;
    for (size_t i = 0; ok && headers && headers[i]; i++) {
        struct curl_slist *h = curl_slist_append(r->headers, headers[i]);
        ok &= h != NULL;
        if (h)
            r->headers = h;
    }
    if (!ok)
        goto fail;

    CURL *e = r->easy;
    ok &= curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS) ==
          CURLE_OK;
    if (post) {
        ok &= curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
        ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) == CURLE_OK;
        ok &= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body ? body : "") == CURLE_OK;
    } else if (strcmp(method, "DELETE") == 0) {
        ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE") == CURLE_OK;
    }
    ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_USERAGENT, "sipxferd/" SIPXFER_VERSION) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, r) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)HTTP_MAX_RESPONSE) == CURLE_OK;
    if (!ok)
        goto fail;
    /* A transfer that ends (timeout, cancel) while its name is still being
     * resolved would otherwise join the resolver thread, i.e. wait on the
     * control thread for as long as DNS takes to give up; with this set
     * curl leaves that thread to finish on its own. */
#if LIBCURL_VERSION_NUM >= 0x075700
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#else
#warning "libcurl < 7.87: a webhook/resolver host whose DNS hangs stalls the loop when it times out"
#endif

    /* Only arms our su_timer (at 0 ms): the transfer starts from the loop. */
    CURLMcode mc = curl_multi_add_handle(c->multi, e);
    if (mc != CURLM_OK) {
        log_error("http: cannot start a request: %s", curl_multi_strerror(mc));
        goto fail;
    }
    req_link(c, r);
    return 0;

fail:
    req_free(r);
    return -1;
}

unsigned http_cancel(struct http_client *c, http_done_f done, void *arg)
{
    if (!c)
        return 0;
    unsigned n = 0;
    struct request *r = c->reqs;
    while (r) {
        struct request *next = r->next;
        if (r->done == done && r->arg == arg) {
            req_unlink(c, r);
            curl_multi_remove_handle(c->multi, r->easy);
            req_free(r);
            n++;
        }
        r = next;
    }
    return n;
}
