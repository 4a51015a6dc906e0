/* refer.h - REFER and NOTIFY on the wire (RFC 3515, 4488, 3420 sipfrag):
 * building the REFER we send and the NOTIFYs we owe, reading the answers
 * and NOTIFYs we get, reading a REFER a room sends. No policy: the transfer
 * (transfer_refer.c) decides what each report means. */
#ifndef SIPXFER_REFER_H
#define SIPXFER_REFER_H

#include "sofia_types.h"

#include <stdbool.h>
#include <stddef.h>

#include <sofia-sip/sip.h>

#include "transfer_error.h"

struct leg;
struct target;

/* Status code of a message/sipfrag body ("SIP/2.0 200 OK..."), or -1. */
int sipfrag_status(const char *body, size_t len);

/* Referred-By naming a room as a carrier may see it, by its name in
 * domain (its URI is an address inside our network). */
void refer_referred_by(const char *room_name, const char *domain, char *out, size_t len);

/* An in-dialog REFER on leg to t (its ?X- headers escaped into Refer-To). */
void refer_send(struct leg *leg, const struct target *t, const char *referred_by);

/* What an answer to our REFER, or a NOTIFY of its subscription, reports. */
enum refer_report {
    REFER_NOTHING,      /* 1xx, or a NOTIFY of another event package */
    REFER_ACCEPTED,     /* 2xx: NOTIFYs will follow */
    REFER_NO_SUB,       /* 2xx with Refer-Sub: false (RFC 4488): none will */
    REFER_REFUSED,      /* >= 300 to the REFER */
    REFER_UNTRUSTED,    /* its Contact or Record-Route cannot be used (why) */
    REFER_PROGRESS,     /* NOTIFY: a provisional status of the new call */
    REFER_FINAL,        /* NOTIFY: the new call's final status (code) */
    REFER_ENDED,        /* NOTIFY: subscription terminated without a final status */
};

struct refer_result {
    enum refer_report report;
    int code;          /* REFUSED: the status; PROGRESS/FINAL: the sipfrag's, or -1 */
    char event[64];    /* "refer;id=N" when nua names the subscription, else "" */
    char why[80];      /* UNTRUSTED */
};

void refer_read_response(int status, const sip_t *sip, tagi_t tags[], struct refer_result *out);
void refer_read_notify(const sip_t *sip, tagi_t tags[], struct refer_result *out);

/* A REFER from a room: its Refer-To as text and its event ("refer;id=N").
 * -1 when it has no Refer-To. */
int refer_read_request(const sip_t *sip, tagi_t tags[], char *target, size_t tlen, char *event,
                       size_t elen);

/* The SIP answer to a room's REFER the transfer refused. */
int refer_refusal(enum transfer_error err, const char **phrase);

/* The sipfrag NOTIFY about the transfer a room asked for, on its leg. */
void refer_notify_send(struct leg *leg, const char *event, int status, const char *phrase,
                       bool final);

#endif
