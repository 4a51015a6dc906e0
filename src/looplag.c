/* looplag.c - control-loop turn durations (see looplag.h).
 *
 * Where a turn starts and ends: sofia's su_base_port_run() calls the prepoll
 * hook, delivers messages (nua events), runs timers and then
 * su_epoll_port_wait_events(), which blocks in epoll_wait() and runs the
 * callbacks of the sockets that woke it. sofia offers no hook around that
 * wait, and a prepoll-to-prepoll interval includes the idle wait, so the one
 * exact boundary is the epoll_wait() call itself: this file defines
 * epoll_wait(), which the dynamic linker resolves for libsofia-sip-ua too.
 * On any thread but the control thread, and for a wait made inside one of
 * our handlers (libmicrohttpd's own epoll in MHD_run), it is a plain
 * epoll_pwait(). On the control thread it costs two clock reads per wait.
 * Time in sofia (transport reads, parsing, a blocking getaddrinfo in
 * tport_tsend) is therefore counted, in the turn that paid for it. */
#include "looplag.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include <sofia-sip/su_wait.h>

#include "log.h"

static const double bounds_s[LOOPLAG_NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                  0.25,  0.5,    1,     2.5,  5,     10};
static const long long bounds_ns[LOOPLAG_NBUCKETS] = {
    1000000LL,   2500000LL,   5000000LL,    10000000LL,   25000000LL,
    50000000LL,  100000000LL, 250000000LL,  500000000LL,  1000000000LL,
    2500000000LL, 5000000000LL, 10000000000LL};

/* loop thread only */
static uint64_t hits[LOOPLAG_NBUCKETS + 1]; /* per bucket, last = over 10 s */
static uint64_t turns, slow_turns;
static long long sum_ns;

static __thread bool measuring; /* this is the control thread, measuring */
static struct looplag_mark *cur; /* innermost open mark */

static struct {
    long long start;   /* epoll_wait returned */
    long long tracked; /* spent in our top-level marks */
    unsigned handlers;
    long long worst_ns; /* largest self time of one mark */
    char worst[128];
} turn;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- watchdog ----------------------------------------------------------
 * The WARN at the end of a turn comes only once the turn is over; a loop
 * stuck for good (a lookup that never returns) would never say so. A
 * thread polls what the loop publishes and warns while a turn is still
 * running. It reads only the kind and name of the open mark, which are
 * string literals (a detail may be freed by the time it looks). */
#define WATCH_EVERY_MS 200
#define STUCK_MS 1000
#define STUCK_REPEAT_MS 5000

static _Atomic long long busy_since;    /* start of the running turn; 0 while waiting */
static const char *_Atomic busy_kind;   /* kind and name of the open top-level mark, */
static const char *_Atomic busy_name;   /* or NULL */

static pthread_t watch_thread;
static bool watch_running;
static bool watch_stop;
static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t watch_cond;

static void *watch_main(void *arg)
{
    (void)arg;
    long long reported = 0; /* turn start already reported, and when */
    long long last_report = 0;
    pthread_mutex_lock(&watch_lock);
    while (!watch_stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += WATCH_EVERY_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&watch_cond, &watch_lock, &until);
        if (watch_stop)
            break;
        long long since = atomic_load(&busy_since);
        long long t = now_ns();
        if (!since || t - since < STUCK_MS * 1000000LL)
            continue;
        if (since == reported && t - last_report < STUCK_REPEAT_MS * 1000000LL)
            continue;
        const char *kind = atomic_load(&busy_kind);
        const char *name = atomic_load(&busy_name);
        log_warn("control loop busy for %.1f s so far, in %s%s%s", (double)(t - since) / 1e9,
                 kind ? kind : "sofia (SIP transport/stack, no handler of ours)",
                 kind && name ? " " : "", kind && name ? name : "");
        reported = since;
        last_report = t;
    }
    pthread_mutex_unlock(&watch_lock);
    return NULL;
}

static void watch_start(void)
{
    /* its deadlines are CLOCK_MONOTONIC, like the loop's times */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&watch_cond, &ca);
    pthread_condattr_destroy(&ca);
    watch_stop = false;
    /* the thread inherits main's blocked signals: they stay for the signalfd */
    watch_running = pthread_create(&watch_thread, NULL, watch_main, NULL) == 0;
    if (!watch_running) {
        pthread_cond_destroy(&watch_cond);
        log_warn("loop watchdog thread not started: stuck turns are reported only when they end");
    }
}

static void watch_end(void)
{
    if (!watch_running)
        return;
    pthread_mutex_lock(&watch_lock);
    watch_stop = true;
    pthread_cond_signal(&watch_cond);
    pthread_mutex_unlock(&watch_lock);
    pthread_join(watch_thread, NULL);
    pthread_cond_destroy(&watch_cond);
    watch_running = false;
}

void looplag_observe(long long ns)
{
    int i = 0;
    while (i < LOOPLAG_NBUCKETS && ns > bounds_ns[i])
        i++;
    hits[i]++;
    turns++;
    sum_ns += ns;
    if (ns > LOOPLAG_WARN_MS * 1000000LL)
        slow_turns++;
}

void looplag_histogram(struct looplag_histogram *out)
{
    uint64_t acc = 0;
    for (int i = 0; i < LOOPLAG_NBUCKETS; i++) {
        acc += hits[i];
        out->le[i] = bounds_s[i];
        out->bucket[i] = acc;
    }
    out->count = turns;
    out->sum = (double)sum_ns / 1e9;
    out->slow = slow_turns;
}

static void turn_end(long long t)
{
    long long d = t - turn.start;
    looplag_observe(d);
    if (d > LOOPLAG_WARN_MS * 1000000LL) {
        long long outside = d - turn.tracked;
        bool sofia = turn.handlers == 0 || outside > turn.worst_ns;
        log_warn("control loop turn took %lld ms: longest %s %lld ms (%u handler(s) ran; %lld ms "
                 "in sofia outside them)",
                 d / 1000000, sofia ? "sofia (SIP transport/stack, no handler of ours)" : turn.worst,
                 (sofia ? outside : turn.worst_ns) / 1000000, turn.handlers, outside / 1000000);
        /* the next prepoll flush may be a long idle wait away */
        log_flush();
    }
    turn.tracked = 0;
    turn.handlers = 0;
    turn.worst_ns = 0;
    turn.worst[0] = '\0';
}

int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
    if (!measuring || cur)
        return epoll_pwait(epfd, events, maxevents, timeout, NULL);
    turn_end(now_ns());
    atomic_store_explicit(&busy_since, 0, memory_order_relaxed);
    int n = epoll_pwait(epfd, events, maxevents, timeout, NULL);
    int saved = errno;
    turn.start = now_ns();
    atomic_store_explicit(&busy_since, turn.start, memory_order_relaxed);
    errno = saved;
    return n;
}

void looplag_init(su_root_t *root)
{
    const char *port = su_root_name(root);
    if (!port || strcmp(port, "epoll") != 0) {
        log_warn("su_root port is \"%s\", not epoll (SU_PORT set?): sipxfer_loop_lag_seconds "
                 "stays empty",
                 port ? port : "?");
        return;
    }
    measuring = true;
    cur = NULL;
    turn.start = now_ns();
    atomic_store(&busy_since, turn.start);
    watch_start();
}

void looplag_stop(void)
{
    if (!measuring)
        return;
    measuring = false;
    atomic_store(&busy_since, 0);
    watch_end();
}

void looplag_begin(struct looplag_mark *m, const char *kind, const char *name, const char *detail)
{
    m->kind = kind;
    m->name = name;
    m->detail = detail;
    m->child = 0;
    m->up = NULL;
    if (!measuring)
        return;
    m->up = cur;
    cur = m;
    if (!m->up) {
        atomic_store_explicit(&busy_name, name, memory_order_relaxed);
        atomic_store_explicit(&busy_kind, kind, memory_order_relaxed);
    }
    m->start = now_ns();
}

void looplag_rename(struct looplag_mark *m, const char *name)
{
    m->name = name;
    if (measuring && cur == m && !m->up)
        atomic_store_explicit(&busy_name, name, memory_order_relaxed);
}

void looplag_end(struct looplag_mark *m)
{
    if (!measuring || cur != m)
        return;
    long long d = now_ns() - m->start;
    cur = m->up;
    if (cur) {
        cur->child += d;
    } else {
        turn.tracked += d;
        atomic_store_explicit(&busy_kind, NULL, memory_order_relaxed);
    }
    turn.handlers++;
    long long self = d - m->child;
    if (self > turn.worst_ns) {
        turn.worst_ns = self;
        snprintf(turn.worst, sizeof turn.worst, "%s %s%s%s", m->kind, m->name ? m->name : "-",
                 m->detail ? " " : "", m->detail ? m->detail : "");
    }
}
