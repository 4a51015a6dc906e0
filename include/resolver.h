/* resolver.h - dynamic rooms: when no room or route matches, ask the
 * rooms.resolver URL (Daily's pinless dial-in webhook body) where the call
 * goes. The caller has had 100 Trying meanwhile; no answer in time, an HTTP
 * error or an unusable sipUri end the call with 480. */
#ifndef SIPXFER_RESOLVER_H
#define SIPXFER_RESOLVER_H

struct app;
struct call;

#define RESOLVER_TIMEOUT_MS 5000

/* What the lookup found: room is its name and uri where to INVITE it, or
 * room NULL and why says what went wrong. */
struct resolver_answer {
    const char *room;
    const char *uri;
    const char *why;
};

/* Called on the control loop for the call with session id call_id (look
 * it up: it may have ended meanwhile); once per resolver_start(), unless
 * the HTTP client is destroyed first. */
typedef void resolver_done_h(struct app *app, const char *call_id,
                             const struct resolver_answer *a);

/* Ask where call c goes. done may run before this returns (the request
 * could not be started). */
void resolver_start(struct app *app, struct call *c, resolver_done_h *done);
/* After the HTTP client is destroyed: free lookups that will never answer. */
void resolver_cleanup(struct app *app);

#endif
