/* dtmf.c - RFC 4733 digit sender.
 *
 * Each digit: packets every 20 ms with a growing duration for the tone
 * (120 ms unless told), the first with the marker bit, then three end
 * packets (RFC 4733 section 2.5.1.4 asks for redundant ends), then a 100 ms
 * gap. All packets of one event share its timestamp.
 *
 * Or, by SIP INFO (application/dtmf-relay, the de facto format: Signal and
 * Duration lines), one request per digit paced the same way. */
#include "xalloc.h"
#include "sofia_types.h"

#include "dtmf.h"

#include <sofia-sip/nua.h>
#include <sofia-sip/sip_tag.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "app.h"
#include "log.h"
#include "random.h"
#include "relay.h"
#include "looplag.h"

#define TICK_MS 20
#define SAMPLES_PER_TICK 160 /* 8 kHz clock */
#define TONE_TICKS 6
#define END_PACKETS 3
#define GAP_TICKS 5

struct dtmf {
    struct relay_ep *ep; /* RFC 4733 through the relay, or */
    nua_handle_t *nh;    /* SIP INFO in this dialog */
    int tone_ticks;
    su_timer_t *timer;
    int pt;
    char digits[32];
    int pos;     /* digit being sent */
    int tick;    /* within the digit */
    uint16_t seq;
    uint32_t ts, ssrc;
    char tag[96];
    struct dtmf **slot;
};

int dtmf_event_code(char d)
{
    if (d >= '0' && d <= '9')
        return d - '0';
    if (d == '*')
        return 10;
    if (d == '#')
        return 11;
    if (d >= 'A' && d <= 'D')
        return 12 + d - 'A';
    if (d >= 'a' && d <= 'd')
        return 12 + d - 'a';
    return -1;
}

size_t dtmf_packet(uint8_t *buf, int pt, int marker, uint16_t seq, uint32_t ts, uint32_t ssrc,
                   int event, int end, uint16_t duration)
{
    buf[0] = 0x80; /* V=2 */
    buf[1] = (uint8_t)((marker ? 0x80 : 0) | (pt & 0x7f));
    uint16_t nseq = htons(seq);
    uint32_t nts = htonl(ts), nssrc = htonl(ssrc);
    memcpy(buf + 2, &nseq, 2);
    memcpy(buf + 4, &nts, 4);
    memcpy(buf + 8, &nssrc, 4);
    buf[12] = (uint8_t)event;
    buf[13] = (uint8_t)((end ? 0x80 : 0) | 10); /* volume -10 dBm0 */
    uint16_t ndur = htons(duration);
    memcpy(buf + 14, &ndur, 2);
    return 16;
}

static void finish(struct dtmf *d)
{
    if (d->slot)
        *d->slot = NULL;
    su_timer_destroy(d->timer);
    free(d);
}

static void on_tick(struct app *app, su_timer_t *t, void *arg);

static void tick(struct app *app, su_timer_t *t, void *arg)
{
    struct dtmf *d = arg;
    char digit = d->digits[d->pos];
    if (!digit) {
        log_msg(LOG_INFO, d->tag, "digits \"%s\" sent (%s)", d->digits,
                d->nh ? "SIP INFO" : "RFC 4733");
        finish(d);
        return;
    }
    int tone = d->tone_ticks;
    if (d->nh) {
        if (d->tick == 0) {
            char body[64];
            snprintf(body, sizeof body, "Signal=%c\r\nDuration=%d\r\n", digit, tone * TICK_MS);
            nua_info(d->nh, SIPTAG_CONTENT_TYPE_STR("application/dtmf-relay"),
                     SIPTAG_PAYLOAD_STR(body), TAG_END());
        }
    } else {
        int event = dtmf_event_code(digit);
        uint8_t pkt[16];
        if (d->tick < tone) {
            uint16_t dur = (uint16_t)((d->tick + 1) * SAMPLES_PER_TICK);
            relay_ep_send(d->ep, 0, pkt,
                          dtmf_packet(pkt, d->pt, d->tick == 0, d->seq++, d->ts, d->ssrc, event,
                                      0, dur));
        } else if (d->tick < tone + END_PACKETS) {
            uint16_t dur = (uint16_t)(tone * SAMPLES_PER_TICK);
            relay_ep_send(d->ep, 0, pkt,
                          dtmf_packet(pkt, d->pt, 0, d->seq++, d->ts, d->ssrc, event, 1, dur));
        }
    }
    d->tick++;
    if (d->tick >= tone + END_PACKETS + GAP_TICKS) {
        d->ts += (uint32_t)((tone + END_PACKETS + GAP_TICKS) * SAMPLES_PER_TICK);
        d->tick = 0;
        d->pos++;
    }
    su_timer_set_interval(t, on_tick, d, TICK_MS);
}

static void on_tick(struct app *app, su_timer_t *t, void *arg)
{
    struct looplag_mark m;
    looplag_begin(&m, "timer", "dtmf", NULL);
    tick(app, t, arg);
    looplag_end(&m);
}

static void start(struct app *app, struct dtmf *d, const char *digits, unsigned delay_ms,
                  unsigned tone_ms, const char *tag, struct dtmf **slot)
{
    d->slot = slot;
    *slot = d;
    d->tone_ticks = tone_ms ? (int)((tone_ms + TICK_MS - 1) / TICK_MS) : TONE_TICKS;
    if (d->tone_ticks < 2)
        d->tone_ticks = 2;
    snprintf(d->digits, sizeof d->digits, "%s", digits);
    snprintf(d->tag, sizeof d->tag, "%s", tag ? tag : "-");
    uint32_t r[3];
    random_bytes(r, sizeof r);
    d->seq = (uint16_t)r[0];
    d->ts = r[1];
    d->ssrc = r[2];
    d->timer = su_timer_create(su_root_task(app->root), 0);
    su_timer_set_interval(d->timer, on_tick, d, delay_ms ? delay_ms : 1);
}

void dtmf_start(struct app *app, struct relay_ep *ep, int pt, const char *digits,
                unsigned delay_ms, unsigned tone_ms, const char *tag, struct dtmf **slot)
{
    if (!ep || pt < 0 || pt > 127 || !digits || !*digits)
        return;
    dtmf_cancel(*slot);
    struct dtmf *d = xcalloc(1, sizeof *d);
    d->ep = ep;
    d->pt = pt;
    start(app, d, digits, delay_ms, tone_ms, tag, slot);
}

void dtmf_start_info(struct app *app, nua_handle_t *nh, const char *digits, unsigned tone_ms,
                     const char *tag, struct dtmf **slot)
{
    if (!nh || !digits || !*digits)
        return;
    dtmf_cancel(*slot);
    struct dtmf *d = xcalloc(1, sizeof *d);
    d->nh = nh;
    start(app, d, digits, 0, tone_ms, tag, slot);
}

void dtmf_cancel(struct dtmf *d)
{
    if (d)
        finish(d);
}
