/* dtmf.h - dial digits into a leg as RFC 4733 telephone-events (the
 * sipCallTransfer "extension"), paced by an su_timer on the control loop. */
#ifndef SIPXFER_DTMF_H
#define SIPXFER_DTMF_H

#include <stddef.h>
#include <stdint.h>

#include "sofia_types.h"

#include <sofia-sip/nua.h>

struct app;
struct relay_ep;
struct dtmf;

/* Start sending digits (0-9 * # A-D, at most 31) from ep's stream 0 with
 * payload type pt, after delay_ms, each tone tone_ms long (0: 120 ms).
 * *slot holds the sender while it runs and is set to NULL when it is done
 * (a sender already in *slot is cancelled first); its owner must
 * dtmf_cancel(*slot) before freeing ep. */
void dtmf_start(struct app *app, struct relay_ep *ep, int pt, const char *digits,
                unsigned delay_ms, unsigned tone_ms, const char *tag, struct dtmf **slot);
/* The same digits as SIP INFO (application/dtmf-relay) in nh's dialog,
 * one per digit at the same pace; the owner cancels before destroying nh. */
void dtmf_start_info(struct app *app, nua_handle_t *nh, const char *digits, unsigned tone_ms,
                     const char *tag, struct dtmf **slot);
void dtmf_cancel(struct dtmf *d);

/* One RFC 4733 packet (RTP header + 4-byte event) into buf (16 bytes). */
size_t dtmf_packet(uint8_t *buf, int pt, int marker, uint16_t seq, uint32_t ts, uint32_t ssrc,
                   int event, int end, uint16_t duration);
/* Event code of a digit, or -1. */
int dtmf_event_code(char digit);

#endif
