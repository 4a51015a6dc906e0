/* media_watch.h - media timeout (SPEC section 9): a relayed call whose two
 * sides sent no RTP for media.timeout seconds (media.hold_timeout while it is
 * on hold) is hung up with BYE on both legs and dialin.stopped reason
 * "media-timeout". One su_timer checks every call once a second on the
 * control thread; the relay worker only stamps the time of each accepted
 * RTP packet. Passthrough mode: the relay sees no media, nothing is ended. */
#ifndef SIPXFER_MEDIA_WATCH_H
#define SIPXFER_MEDIA_WATCH_H

struct app;

void media_watch_start(struct app *app);
void media_watch_stop(struct app *app);
/* Calls it ended are counted in app->stats.media_timeouts. */

#endif
