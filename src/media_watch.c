/* media_watch.c - media timeout (see media_watch.h). */
#include "sofia_types.h"

#include "media_watch.h"

#include <stdbool.h>
#include <time.h>

#include <sofia-sip/su_wait.h>

#include "app.h"
#include "call.h"
#include "config.h"
#include "log.h"
#include "looplag.h"
#include "relay.h"
#include "transfer.h"

#define CHECK_EVERY_MS 1000


static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Only a settled, relayed call is judged: while it is being set up, torn
 * down or transferred its media may rightly pause, and the silence is
 * counted again from the moment it is settled (or changes hold state, so
 * an unhold after a long hold gets the full media.timeout). */
static bool settled(const struct call *c)
{
    const struct leg *a = c->caller, *r = c->room;
    return !c->ended && a && r && a->ep && r->ep && a->state == LEG_CONFIRMED &&
           r->state == LEG_CONFIRMED && !transfer_active(c);
}

static void check_call(struct app *app, struct call *c, long long now)
{
    if (!settled(c)) {
        c->media_quiet_since = 0;
        return;
    }
    bool hold = c->caller->hold_in || c->room->hold_in;
    if (!c->media_quiet_since || hold != c->media_hold) {
        c->media_quiet_since = now;
        c->media_hold = hold;
    }
    long long last = relay_ep_last_rtp(c->caller->ep);
    long long other = relay_ep_last_rtp(c->room->ep);
    if (other > last)
        last = other;
    if (last < c->media_quiet_since)
        last = c->media_quiet_since;
    int limit = hold ? app->cfg->media_hold_timeout : app->cfg->media_timeout;
    if (limit <= 0 || now - last < limit * 1000000000LL)
        return;
    call_log(c, LOG_INFO, "media timeout: no RTP from either side for %lld s (%s %d s): hanging up",
             (now - last) / 1000000000LL, hold ? "on hold, media.hold_timeout" : "media.timeout",
             limit);
    c->end_reason = "media-timeout";
    app->stats.media_timeouts++;
    call_hangup(c, 408, "Media Timeout");
}

static void on_tick(struct app *app, su_timer_t *t, void *arg)
{
    struct looplag_mark m;
    looplag_begin(&m, "timer", "media-timeout", NULL);
    long long now = now_ns();
    for (struct call *c = call_first(app->calls); c; c = c->next)
        check_call(app, c, now);
    looplag_end(&m);
}

void media_watch_start(struct app *app)
{
    if (!app->relay) {
        if (app->cfg->media_timeout > 0 || app->cfg->media_hold_timeout > 0)
            log_info("media.mode = passthrough: the relay sees no media, so media.timeout and "
                     "media.hold_timeout end no call");
        return;
    }
    app->media_timer = su_timer_create(su_root_task(app->root), CHECK_EVERY_MS);
    su_timer_run(app->media_timer, on_tick, NULL);
}

void media_watch_stop(struct app *app)
{
    if (app->media_timer)
        su_timer_destroy(app->media_timer);
    app->media_timer = NULL;
}
