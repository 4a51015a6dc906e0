/* b2bua.h - the SIP stack: one nua instance on the control loop whose
 * events b2bua.c dispatches to the leg layer, the bridge and the transfer. */
#ifndef SIPXFER_B2BUA_H
#define SIPXFER_B2BUA_H

#include <stdbool.h>
#include <stddef.h>

struct app;
struct b2bua;

/* Binds sip.listen (UDP and TCP). NULL with a message in err on failure. */
struct b2bua *b2bua_create(struct app *app, char *err, size_t errlen);

/* Hang up every call still up (draining). */
void b2bua_hangup_all(struct b2bua *b, int status, const char *phrase);

/* nua_shutdown; when done, calls done() on the control loop. */
void b2bua_shutdown(struct b2bua *b, void (*done)(struct app *app));
void b2bua_destroy(struct b2bua *b);

#endif
