/* transfer.h - moving a live call: sipCallTransfer (we stay in the path,
 * make-before-break). One transfer per call at a time; the call owns it.
 *
 * Flow: transfer_start() INVITEs the target with the caller's media
 * description while the caller stays bridged to the room; on the target's
 * 2xx the relay is re-pointed caller<->target, the caller is re-INVITEd if
 * the media description must change, and only then the old room leg gets
 * BYE. Any failure before that point leaves the caller where it was. */
#ifndef SIPXFER_TRANSFER_H
#define SIPXFER_TRANSFER_H

#include "sofia_types.h"

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <sofia-sip/sip.h>

#include "target.h"
#include "transfer_error.h"

struct app;
struct call;
struct leg;
struct cJSON;

enum xfer_mode { XFER_CALL, XFER_REFER };
enum xfer_state { XFER_RINGING, XFER_ANSWERED, XFER_COMPLETED, XFER_FAILED };

struct transfer {
    char id[48];
    struct call *call;
    enum xfer_mode mode;
    enum xfer_state state;
    char *to_endpoint;       /* as the client gave it */
    struct target target;
    char caller_id[64];
    char extension[24];
    int wait_ext_sec;
    char from_room[128];     /* the room when it was triggered */
    char from_endpoint[512]; /* the far end when it was triggered */
    int sip_status;          /* last final status from the target */
    char reason[128];
    time_t started, ended;
    su_timer_t *timer; /* ring timeout (sipCallTransfer) or NOTIFY timeout (sipRefer) */

    /* sipRefer: the REFER we sent on the caller leg */
    char refer_event[64]; /* "refer;id=N", from nua */
    bool refer_accepted;  /* 2xx to the REFER */

    /* A transfer a room asked for with REFER: progress goes back to it as
     * NOTIFY sipfrag on this leg (the old room), under this event. */
    struct leg *notify_leg;
    char notify_event[64];

    /* sipCallTransfer to an E.164 number through a trunk (SPEC section 10):
     * the trunk's gateways in the order they are tried (up ones first, in
     * list order, then the ones down), the one dialled now, and whether it
     * sent a provisional answer (then its final answer is the answer). */
    char *gw_trunk; /* NULL: no trunk target */
    char **gw_uris;
    size_t gw_n, gw_at;
    bool gw_progress;
};

struct transfer_request {
    enum xfer_mode mode;
    const char *to_endpoint;
    const char *caller_id; /* may be NULL */
    const char *extension; /* may be NULL */
    int wait_ext_sec;
    struct leg *notify_leg;  /* REFER from a room: where NOTIFYs go */
    const char *refer_event; /* ... and under which event */
};

/* Validate and start: XFER_OK with c->xfer set, or why not (info says it
 * in words). */
enum transfer_error transfer_start(struct app *app, struct call *c,
                                   const struct transfer_request *req, char *info,
                                   size_t infolen);

/* DELETE /v1/sessions/{id}/transfer: cancel a transfer still ringing. */
enum transfer_error transfer_cancel(struct app *app, struct call *c, char *info, size_t infolen);

bool transfer_active(const struct call *c);
void transfer_free(struct transfer *x);
struct cJSON *transfer_json(const struct transfer *x);

/* ---- called by the bridge (bridge.c) ----------------------------------- */

/* A caller or room leg of c is gone while a transfer may run. Returns true
 * when the caller must stay up (the transfer goes on). */
bool transfer_leg_gone(struct app *app, struct leg *leg);
/* A room leg sent REFER (the bridge has checked it may): carried out as a
 * sipCallTransfer, answered 202 or refused, NOTIFYs back to the room. */
void transfer_from_room(struct app *app, nua_t *nua, struct leg *room, const sip_t *sip,
                        tagi_t tags[]);

/* ---- called by the dispatcher (b2bua.c) -------------------------------- */

/* nua_r_refer / nua_i_notify on the caller leg (sipRefer). */
void transfer_refer_response(struct app *app, struct leg *caller, int status,
                             const char *phrase, const sip_t *sip, tagi_t tags[]);
void transfer_refer_notify(struct app *app, struct leg *caller, const sip_t *sip, tagi_t tags[]);

/* Transfers counted by mode (XFER_CALL, XFER_REFER) and outcome: started,
 * completed, failed. For /metrics. */
enum xfer_outcome { XFER_STARTED, XFER_DONE, XFER_FAILED_OUTCOME, XFER_NOUTCOMES };

/* ---- inside the transfer module (transfer.c, transfer_refer.c) --------- */

void transfer_emit(struct app *app, struct transfer *x, const char *type);
void transfer_fail(struct app *app, struct transfer *x, int status, const char *reason);
/* INVITE the target (sipCallTransfer, or a sipRefer falling back). */
enum transfer_error transfer_begin_call(struct app *app, struct transfer *x, char *info,
                                        size_t infolen);
/* Send the REFER (sipRefer). */
enum transfer_error transfer_begin_refer(struct app *app, struct transfer *x, char *info,
                                         size_t infolen);
/* (Re)start the transfer's guard timer: ring timeout for a
 * sipCallTransfer, NOTIFY timeout for a sipRefer. */
void transfer_arm_timer(struct app *app, struct transfer *x, int seconds);
/* The transfer ended well without a new leg (sipRefer): mark and report. */
void transfer_succeed(struct app *app, struct transfer *x);
/* Tell the room that asked for x (by REFER) how it goes. */
void transfer_notify_room(struct transfer *x, int status, const char *phrase, bool final);

#endif
