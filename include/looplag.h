/* looplag.h - how long each control-loop turn keeps the thread busy, and
 * what ran in it (SPEC section 9: sipxfer_loop_lag_seconds, WARN > 50 ms).
 *
 * A turn is the time between two waits of the su_root's epoll: it covers our
 * handlers and everything sofia does itself (transport reads, parsing, a
 * blocking lookup in its transport). Each of our entry points brackets its
 * work with looplag_begin()/looplag_end() so a slow turn can be named; the
 * marks nest (an API request inside the MHD socket handler). Control thread
 * only. */
#ifndef SIPXFER_LOOPLAG_H
#define SIPXFER_LOOPLAG_H

#include <stdint.h>

#include "sofia_types.h"

/* Turns longer than this get a WARN line. */
#define LOOPLAG_WARN_MS 50

#define LOOPLAG_NBUCKETS 13

/* kind and name must be string literals (or as long-lived): the watchdog
 * thread may print them at any time. detail may be any string that lives
 * until looplag_end(). */
struct looplag_mark {
    long long start, child; /* ns; child: time spent in nested marks */
    const char *kind;       /* "SIP", "API", "timer", "curl", "signal", ... */
    const char *name;       /* nua event name, HTTP method, timer name */
    const char *detail;     /* optional third word (the API path), or NULL */
    struct looplag_mark *up;
};

struct looplag_histogram {
    double le[LOOPLAG_NBUCKETS];          /* upper bounds, seconds */
    uint64_t bucket[LOOPLAG_NBUCKETS];    /* cumulative counts, as Prometheus wants */
    uint64_t count;                       /* also the +Inf bucket */
    double sum;                           /* seconds */
    uint64_t slow;                        /* turns over LOOPLAG_WARN_MS */
};

/* Start measuring on the calling thread, which must be the one that runs
 * root, and start the watchdog thread (WARN "control loop busy for N s so
 * far" while one turn lasts over a second). Logs a warning when root's port
 * is not epoll (then nothing is measured). */
void looplag_init(su_root_t *root);
/* Stop measuring (before su_root_run returns for good, or after). */
void looplag_stop(void);

void looplag_begin(struct looplag_mark *m, const char *kind, const char *name,
                   const char *detail);
/* What ran turned out to be something more specific (a signal's name). */
void looplag_rename(struct looplag_mark *m, const char *name);
void looplag_end(struct looplag_mark *m);

/* Count one turn of ns nanoseconds (exported for the unit test). */
void looplag_observe(long long ns);
void looplag_histogram(struct looplag_histogram *out);

#endif
