/* resolver.h - dynamic rooms: when no room or route matches, ask the
 * rooms.resolver URL (Daily's pinless dial-in webhook body) where the call
 * goes. The caller has had 100 Trying meanwhile; no answer in time, an HTTP
 * error or an unusable sipUri end the call with 480. */
#ifndef SIPXFER_RESOLVER_H
#define SIPXFER_RESOLVER_H

struct app;
struct call;

#define RESOLVER_TIMEOUT_MS 5000

void resolver_start(struct app *app, struct call *c);
/* After the HTTP client is destroyed: free lookups that will never answer. */
void resolver_cleanup(void);

#endif
