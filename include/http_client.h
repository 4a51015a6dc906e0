/* http_client.h - asynchronous HTTP client: libcurl multi driven by the
 * control su_root.
 *
 * Every socket curl opens is registered on app->root, curl's timer is one
 * su_timer, so requests progress inside su_root_run() like SIP does: no
 * thread, no blocking call (DNS uses curl's threaded resolver, which reports
 * back through a socket that is registered like any other).
 *
 * Completion callbacks run on the control thread, from the loop, never from
 * inside http_post() and never after http_client_destroy(). A request
 * outlives anything its caller owns, so a callback must not trust a raw
 * pointer to a call, leg or transfer: pass an id (or a cookie) as arg and
 * look the object up again in the callback -- it may be gone. Objects that
 * do hold a pointer must http_cancel() their requests before they are freed.
 */
#ifndef SIPXFER_HTTP_CLIENT_H
#define SIPXFER_HTTP_CLIENT_H

#include <stddef.h>

struct app;
struct http_client;

/* Largest response body accepted; a larger one fails the request
 * (status 0, error "response body too large"). */
#define HTTP_MAX_RESPONSE (64 * 1024)

/* Called once per request accepted by http_post(), unless cancelled or the
 * client is destroyed first.
 *  status: the HTTP status code; 0 when there is no usable response
 *          (connect/DNS/TLS error, timeout, body too large, ...).
 *  body:   the response body, NUL-terminated, len bytes without the NUL
 *          ("" and 0 when empty); NULL when status is 0. Valid only during
 *          the call.
 *  error:  a human-readable reason when status is 0, else NULL.
 * Any status (including 4xx/5xx) is delivered as is: the caller decides
 * what is a success. The callback may call http_post(), http_cancel() and
 * http_client_destroy(). */
typedef void (*http_done_f)(void *arg, long status, const char *body, size_t len,
                            const char *error);

/* Create the client on app->root. NULL on failure (logged). */
struct http_client *http_client_create(struct app *app);

/* Abort every request in flight (their callbacks never run), deregister
 * from the loop and free. Safe from within a completion callback. NULL ok.
 * Destroy users that hold requests (events) before the client. */
void http_client_destroy(struct http_client *c);

/* Start a POST of body[0..len) to url (http:// or https:// only) with
 * "Content-Type: content_type" (omitted when NULL) and the extra headers
 * (a NULL-terminated array of "Name: value" strings, may be NULL). The body
 * and headers are copied. timeout_ms bounds the whole exchange (<= 0 means
 * 10 s). Returns 0 when the request is under way (done will be called
 * later, from the loop), -1 when it could not be started (done is never
 * called). Never blocks. */
int http_post(struct http_client *c, const char *url, const char *content_type, const char *body,
              size_t len, const char *const *headers, long timeout_ms, http_done_f done,
              void *arg);

/* The same with method "GET", "POST" or "DELETE" (body sent with POST
 * only); -1 for any other method. */
int http_request(struct http_client *c, const char *method, const char *url,
                 const char *content_type, const char *body, size_t len,
                 const char *const *headers, long timeout_ms, http_done_f done, void *arg);

/* Abort every in-flight request started with this (done, arg) pair; their
 * callbacks never run. Returns how many were aborted. */
unsigned http_cancel(struct http_client *c, http_done_f done, void *arg);

/* Requests currently in flight (for metrics and tests). */
size_t http_client_inflight(const struct http_client *c);

#endif
