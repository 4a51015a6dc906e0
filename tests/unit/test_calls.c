/* test_calls.c - the call state machines in-process: a whole sipxferd
 * instance (app_create) and a second nua, the far ends, on one su_root.
 *
 * The second nua plays every remote party: it sends the caller's INVITE
 * from its own port, and the rooms (sip:room-a@, sip:room-b@) and transfer
 * targets (sip:target@) sipxferd dials are on that same port, told apart by
 * their Request-URI user. Each remote dialog is a `struct ua`; what it
 * answers is set by the test before the request arrives (or it waits, and
 * the test answers). Everything runs on the one thread: run_until() steps
 * the root until a condition holds, so a case takes milliseconds (the ring
 * and NOTIFY timeouts are the configured 1 and 2 s). Real SIP over
 * loopback UDP, nothing mocked; check forks every case, so each gets a
 * fresh instance and ports. */
#include "sofia_types.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>

#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_log.h>
#include <sofia-sip/su_tag_io.h>

#include "app.h"
#include "b2bua.h"
#include "call.h"
#include "leg.h"
#include "log.h"
#include "transfer.h"
#include "unit_helpers.h"

/* ---- the far ends ------------------------------------------------------ */

/* How a far end answers an INVITE (or re-INVITE) it receives. */
struct answer {
    int status;   /* 0: don't answer, the test will (ua_respond) */
    bool no_sdp;  /* 2xx without a body */
    bool ringing; /* send 180 first */
};

struct ua {
    char name[16]; /* "caller", "room-a", "room-b", "target" */
    nua_handle_t *nh;
    bool outgoing; /* we sent its INVITE (the caller) */
    int invites;   /* INVITEs and re-INVITEs received */
    char last_sdp[2048]; /* body of the last INVITE/2xx/ACK received */
    int final;     /* final status of the last INVITE we sent on it */
    int provisional;
    int acks, byes, cancels;
    bool ack_had_sdp;
    bool pending_invite; /* a received INVITE not answered yet */
    bool terminated;
    int reinvite_answer; /* status for received re-INVITEs (default 200) */
    /* REFER received (the caller, for sipRefer) */
    int refers;
    char refer_to[512];
    int refer_answer;  /* 0: leave it to the test */
    bool refer_no_sub; /* ... with Refer-Sub: false (RFC 4488) */
    char notify_frags[8][64]; /* sipfrag status lines of NOTIFYs received */
    int notifies;
    bool notify_terminated;
};

#define MAX_UA 16
static struct {
    struct app *app;
    nua_t *nua;
    int port;   /* the far ends' port */
    int sut;    /* sipxferd's SIP port */
    struct ua ua[MAX_UA];
    int nua_count;
    struct answer room, target; /* how new room/target dialogs answer */
    bool shut_down;
} P;

static struct ua *ua_new(const char *name)
{
    ck_assert_int_lt(P.nua_count, MAX_UA);
    struct ua *u = &P.ua[P.nua_count++];
    memset(u, 0, sizeof *u);
    snprintf(u->name, sizeof u->name, "%s", name);
    u->reinvite_answer = 200;
    return u;
}

static struct ua *ua_find(const char *name)
{
    for (int i = P.nua_count - 1; i >= 0; i--)
        if (strcmp(P.ua[i].name, name) == 0)
            return &P.ua[i];
    return NULL;
}

static char *sdp(char *buf, size_t len, unsigned version, const char *dir, int port)
{
    snprintf(buf, len,
             "v=0\r\no=- 4242 %u IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
             "a=rtpmap:101 telephone-event/8000\r\na=%s\r\n",
             version, port, dir);
    return buf;
}

static void keep_sdp(struct ua *u, const sip_t *sip)
{
    if (sip && sip->sip_payload && sip->sip_payload->pl_len) {
        size_t n = sip->sip_payload->pl_len;
        if (n >= sizeof u->last_sdp)
            n = sizeof u->last_sdp - 1;
        memcpy(u->last_sdp, sip->sip_payload->pl_data, n);
        u->last_sdp[n] = '\0';
    }
}

static void ua_respond(struct ua *u, int status, bool with_sdp)
{
    char body[512];
    u->pending_invite = false;
    if (with_sdp && status < 300) {
        nua_respond(u->nh, status, sip_status_phrase(status),
                    SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                    SIPTAG_PAYLOAD_STR(sdp(body, sizeof body, (unsigned)(u->invites + 1),
                                           "sendrecv", 41000 + 2 * (int)(u - P.ua))),
                    TAG_END());
    } else {
        nua_respond(u->nh, status, sip_status_phrase(status), TAG_END());
    }
}

static void on_invite(nua_handle_t *nh, struct ua *u, const sip_t *sip)
{
    bool initial = !u;
    if (initial) {
        const char *user = sip->sip_request->rq_url->url_user;
        u = ua_new(user ? user : "?");
        u->nh = nh;
        nua_handle_bind(nh, (struct leg *)u);
    }
    u->invites++;
    u->pending_invite = true;
    keep_sdp(u, sip);
    if (!initial) {
        if (u->reinvite_answer)
            ua_respond(u, u->reinvite_answer, true);
        return;
    }
    const struct answer *a = strcmp(u->name, "target") == 0 ? &P.target : &P.room;
    if (a->ringing)
        nua_respond(nh, 180, "Ringing", TAG_END());
    if (a->status)
        ua_respond(u, a->status, !a->no_sdp);
}

static void peer_event(nua_event_t event, int status, char const *phrase, nua_t *nua,
                       struct app *magic, nua_handle_t *nh, struct leg *hmagic,
                       sip_t const *sip, tagi_t tags[])
{
    (void)phrase;
    (void)magic;
    struct ua *u = (struct ua *)hmagic;
    switch (event) {
    case nua_i_invite:
        on_invite(nh, u, sip);
        break;
    case nua_r_invite:
        if (!u)
            break;
        if (status < 200) {
            u->provisional = status;
            break;
        }
        u->final = status;
        keep_sdp(u, sip);
        break;
    case nua_i_ack:
        if (u) {
            u->acks++;
            u->ack_had_sdp = sip && sip->sip_payload && sip->sip_payload->pl_len;
            keep_sdp(u, sip);
        }
        break;
    case nua_i_bye:
        if (u)
            u->byes++;
        break;
    case nua_i_cancel:
        if (u)
            u->cancels++;
        break;
    case nua_i_refer:
        if (!u)
            break;
        u->refers++;
        if (sip && sip->sip_refer_to)
            url_e(u->refer_to, sizeof u->refer_to, sip->sip_refer_to->r_url);
        if (u->refer_answer)
            nua_respond(nh, u->refer_answer, sip_status_phrase(u->refer_answer),
                        NUTAG_WITH_THIS(nua),
                        TAG_IF(u->refer_no_sub, SIPTAG_HEADER_STR("Refer-Sub: false")),
                        TAG_END());
        break;
    case nua_i_notify:
        if (!u)
            break;
        if (u->notifies < 8 && sip && sip->sip_payload) {
            size_t n = sip->sip_payload->pl_len;
            if (n > 63)
                n = 63;
            memcpy(u->notify_frags[u->notifies], sip->sip_payload->pl_data, n);
            u->notify_frags[u->notifies][n] = '\0';
            char *eol = strpbrk(u->notify_frags[u->notifies], "\r\n");
            if (eol)
                *eol = '\0';
        }
        u->notifies++;
        if (sip && sip->sip_subscription_state &&
            strcasecmp(sip->sip_subscription_state->ss_substate, "terminated") == 0)
            u->notify_terminated = true;
        break;
    case nua_i_state: {
        int cs = -1;
        tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
        if (u && cs == nua_callstate_terminated)
            u->terminated = true;
        break;
    }
    case nua_r_shutdown:
        if (status >= 200)
            P.shut_down = true;
        break;
    default:
        break;
    }
}

/* ---- the instance ------------------------------------------------------ */


static void start_media(const char *media)
{
    memset(&P, 0, sizeof P);
    P.room = (struct answer){.status = 200, .ringing = true};
    P.target = (struct answer){.status = 200, .ringing = true};
    log_set_level(getenv("TEST_CALLS_DEBUG") ? LOG_DEBUG : LOG_ERROR);
    su_init();
    if (!getenv("TEST_CALLS_DEBUG"))
        su_log_set_level(NULL, 0); /* sofia's ICMP lines after a far end is gone */
    P.sut = unit_free_port();
    P.port = unit_free_port();
    ck_assert_int_ne(P.sut, P.port);
    char text[2048];
    snprintf(text, sizeof text,
             "node = \"t\";\n"
             "sip = { listen = \"sip:127.0.0.1:%d\"; max_calls = 10; rate_limit = 0; };\n"
             "api = { listen = \"127.0.0.1:1\"; tokens = [ \"t\" ]; };\n"
             "media = { %s };\n"
             "trunks = ( { name = \"carrier\"; sources = [ \"127.0.0.0/8\" ];"
             " gateway = \"sip:127.0.0.1:%d\"; } );\n"
             "rooms = { domain = \"rooms.test\"; list = (\n"
             "  { name = \"room-a\"; uri = \"sip:room-a@127.0.0.1:%d\"; },\n"
             "  { name = \"room-b\"; uri = \"sip:room-b@127.0.0.1:%d\"; } ); };\n"
             "webhooks = { url = \"\"; secret = \"\"; };\n"
             "transfer = { ring_timeout = 1; notify_timeout = 2; allow = [ \"sip:*\", \"+*\" ]; };\n",
             P.sut, media, P.port, P.port, P.port);
    char err[512];
    struct config *cfg = unit_load_config(text, err, sizeof err, NULL, 0);
    ck_assert_msg(cfg != NULL, "config: %s", err);
    P.app = app_create(cfg, err, sizeof err);
    ck_assert_msg(P.app != NULL, "app_create: %s", err);

    char url[64];
    snprintf(url, sizeof url, "sip:127.0.0.1:%d", P.port);
    P.nua = nua_create(P.app->root, peer_event, NULL, NUTAG_URL(url), NUTAG_MEDIA_ENABLE(0),
                       NUTAG_AUTOANSWER(0), NUTAG_AUTOALERT(0), NUTAG_AUTOACK(0),
                       NUTAG_APPL_METHOD("INVITE"), NUTAG_APPL_METHOD("REFER"),
                       NTATAG_USE_NAPTR(0), NTATAG_USE_SRV(0), TAG_END());
    ck_assert_msg(P.nua != NULL, "peer nua on %s", url);
}

static void start(void) { start_media("mode = \"passthrough\"; address = \"127.0.0.1\";"); }

/* Relay mode with media.srtp = srtp, on a port range of its own. */
static void start_relay(const char *srtp)
{
    char media[256];
    int base = 30000 + (int)(getpid() % 1500) * 20;
    snprintf(media, sizeof media,
             "mode = \"relay\"; address = \"127.0.0.1\"; port_min = %d; port_max = %d; "
             "srtp = \"%s\";",
             base, base + 19, srtp);
    start_media(media);
}

static void stop(void)
{
    for (int i = 0; i < P.nua_count; i++)
        if (P.ua[i].nh)
            nua_handle_destroy(P.ua[i].nh);
    nua_shutdown(P.nua);
    for (int i = 0; i < 200 && !P.shut_down; i++)
        su_root_step(P.app->root, 10);
    ck_assert(P.shut_down);
    nua_destroy(P.nua);
    app_destroy(P.app); /* shuts its own stack down */
    su_deinit();
}

#define run_until(expr, ms) unit_run_until(P.app->root, expr, ms)

/* Run the loop for ms whatever happens: only to show something does NOT
 * happen (a request that must not be sent). */
static void run_for(int ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (unit_elapsed_ms(&t0) < ms)
        su_root_step(P.app->root, 5);
}

static struct call *the_call(void) { return call_first(P.app->calls); }

/* The caller dials room-a (offer in the INVITE unless offerless). */
static struct ua *dial(bool offerless)
{
    struct ua *c = ua_new("caller");
    c->outgoing = true;
    char to[96], body[512];
    snprintf(to, sizeof to, "sip:room-a@127.0.0.1:%d", P.sut);
    c->nh = nua_handle(P.nua, (struct leg *)c, SIPTAG_TO_STR(to), TAG_END());
    if (offerless)
        nua_invite(c->nh, TAG_END());
    else
        nua_invite(c->nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                   SIPTAG_PAYLOAD_STR(sdp(body, sizeof body, 1, "sendrecv", 40000)), TAG_END());
    return c;
}

/* The caller dials room-a offering body. */
static struct ua *dial_body(const char *body)
{
    struct ua *c = ua_new("caller");
    c->outgoing = true;
    char to[96];
    snprintf(to, sizeof to, "sip:room-a@127.0.0.1:%d", P.sut);
    c->nh = nua_handle(P.nua, (struct leg *)c, SIPTAG_TO_STR(to), TAG_END());
    nua_invite(c->nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(body),
               TAG_END());
    return c;
}

/* A bridged call: caller <-> room-a, both legs confirmed. */
static struct ua *bridged(void)
{
    struct ua *c = dial(false);
    run_until(c->final == 200, 2000);
    nua_ack(c->nh, TAG_END());
    run_until(ua_find("room-a") && ua_find("room-a")->acks == 1 && the_call() &&
                  the_call()->caller->state == LEG_CONFIRMED,
              2000);
    return c;
}

static void reinvite(struct ua *u, unsigned version, const char *dir)
{
    char body[512];
    nua_invite(u->nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"),
               SIPTAG_PAYLOAD_STR(sdp(body, sizeof body, version, dir, 40000)), TAG_END());
}

static enum transfer_error start_transfer(enum xfer_mode mode, const char *target)
{
    char to[128], info[256];
    if (strchr(target, ':'))
        snprintf(to, sizeof to, "%s", target);
    else
        snprintf(to, sizeof to, "sip:%s@127.0.0.1:%d", target, P.port);
    struct transfer_request req = {.mode = mode, .to_endpoint = to};
    return transfer_start(P.app, the_call(), &req, info, sizeof info);
}

/* The caller still bridged to room-a, the transfer failed with status. */
static void assert_kept_on_room(int status)
{
    struct call *c = the_call();
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(c->xfer);
    run_until(c->xfer->state == XFER_FAILED, 3000);
    ck_assert_int_eq(c->xfer->sip_status, status);
    ck_assert_str_eq(c->room_name, "room-a");
    ck_assert_int_eq(c->caller->state, LEG_CONFIRMED);
    ck_assert_int_eq(c->room->state, LEG_CONFIRMED);
    ck_assert_ptr_ne(c->room, c->target);
    /* the failed target leg ends on its own and is freed when gone */
    run_until(c->target == NULL, 3000);
    ck_assert_int_eq(ua_find("room-a")->byes, 0);
    ck_assert_int_eq(ua_find("caller")->byes, 0);
}

/* ---- bridging ---------------------------------------------------------- */

START_TEST(bridge_then_bye)
{
    start();
    struct ua *c = bridged();
    struct ua *r = ua_find("room-a");
    ck_assert_int_eq(c->provisional, 180);
    ck_assert_ptr_nonnull(strstr(r->last_sdp, "m=audio 40000")); /* passthrough */
    ck_assert_ptr_nonnull(strstr(c->last_sdp, "m=audio 41"));
    ck_assert_int_eq(call_count(P.app->calls), 1);
    nua_bye(c->nh, TAG_END());
    run_until(r->byes == 1 && call_count(P.app->calls) == 0, 2000);
    stop();
}
END_TEST

START_TEST(room_busy)
{
    start();
    P.room.status = 486;
    struct ua *c = dial(false);
    run_until(c->final >= 300, 2000);
    ck_assert_int_eq(c->final, 486);
    run_until(call_count(P.app->calls) == 0, 2000);
    stop();
}
END_TEST

START_TEST(caller_cancels)
{
    start();
    P.room.status = 0; /* rings for ever */
    struct ua *c = dial(false);
    run_until(ua_find("room-a") && c->provisional == 180, 2000);
    nua_cancel(c->nh, TAG_END());
    run_until(c->final == 487 && ua_find("room-a")->cancels == 1, 2000);
    run_until(call_count(P.app->calls) == 0, 2000);
    stop();
}
END_TEST

START_TEST(offerless_invite)
{
    start();
    struct ua *c = dial(true);
    struct ua *r;
    run_until(c->final == 200, 2000);
    r = ua_find("room-a");
    ck_assert_str_eq(r->last_sdp, ""); /* the room got no offer */
    ck_assert_ptr_nonnull(strstr(c->last_sdp, "m=audio 41")); /* room's offer, in the 2xx */
    ck_assert_int_eq(r->acks, 0); /* not ACKed until the caller's answer is there */
    char body[512];
    nua_ack(c->nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"),
            SIPTAG_PAYLOAD_STR(sdp(body, sizeof body, 1, "sendrecv", 40000)), TAG_END());
    run_until(r->acks == 1, 2000);
    ck_assert(r->ack_had_sdp);
    ck_assert_ptr_nonnull(strstr(r->last_sdp, "m=audio 40000"));
    ck_assert_int_eq(the_call()->caller->state, LEG_CONFIRMED);
    ck_assert_int_eq(the_call()->room->neg, NEG_STABLE);
    stop();
}
END_TEST

START_TEST(hold_and_unhold)
{
    start();
    struct ua *c = bridged();
    struct ua *r = ua_find("room-a");
    struct call *call = the_call();
    c->final = 0;
    reinvite(c, 2, "sendonly");
    run_until(c->final == 200, 2000);
    nua_ack(c->nh, TAG_END());
    ck_assert_int_eq(r->invites, 2);
    ck_assert_ptr_nonnull(strstr(r->last_sdp, "a=sendonly"));
    ck_assert(call->caller->hold_in);
    run_until(r->acks == 2, 2000);
    ck_assert_int_eq(call->caller->neg, NEG_STABLE);
    ck_assert_int_eq(call->room->neg, NEG_STABLE);

    c->final = 0;
    reinvite(c, 3, "sendrecv");
    run_until(c->final == 200, 2000);
    nua_ack(c->nh, TAG_END());
    ck_assert_ptr_nonnull(strstr(r->last_sdp, "a=sendrecv"));
    ck_assert(!call->caller->hold_in);
    stop();
}
END_TEST

START_TEST(session_refresh_answered_here)
{
    start();
    struct ua *c = bridged();
    struct ua *r = ua_find("room-a");
    c->final = 0;
    reinvite(c, 1, "sendrecv"); /* same o= version: a refresh, not a new offer */
    run_until(c->final == 200, 2000);
    nua_ack(c->nh, TAG_END());
    run_for(50);
    ck_assert_int_eq(r->invites, 1); /* not forwarded */
    stop();
}
END_TEST

START_TEST(glare_gets_491)
{
    start();
    struct ua *c = bridged();
    struct ua *r = ua_find("room-a");
    r->reinvite_answer = 0; /* the room sits on the caller's re-INVITE */
    c->final = 0;
    reinvite(c, 2, "sendonly");
    run_until(r->invites == 2 && r->pending_invite, 2000);
    ck_assert_int_eq(the_call()->room->neg, NEG_OFFER_SENT);
    /* ... and offers itself meanwhile: sipxferd refuses, one offer at a time */
    r->final = 0;
    reinvite(r, 5, "sendrecv");
    run_until(r->final != 0, 2000);
    ck_assert_int_eq(r->final, 491);
    ck_assert_int_eq(c->invites, 0); /* never reached the caller */
    ua_respond(r, 200, true);
    run_until(c->final == 200, 2000);
    nua_ack(c->nh, TAG_END());
    run_until(the_call()->room->neg == NEG_STABLE && the_call()->caller->neg == NEG_STABLE,
              2000);
    stop();
}
END_TEST

START_TEST(reinvite_refused_by_peer)
{
    start();
    struct ua *c = bridged();
    struct ua *r = ua_find("room-a");
    r->reinvite_answer = 488;
    c->final = 0;
    reinvite(c, 2, "sendonly");
    run_until(c->final != 0, 2000);
    ck_assert_int_eq(c->final, 488); /* the room's answer, carried back */
    run_for(30);
    ck_assert_int_eq(call_count(P.app->calls), 1); /* the call goes on */
    ck_assert_int_eq(the_call()->caller->neg, NEG_STABLE);
    stop();
}
END_TEST

START_TEST(room_hangs_up)
{
    start();
    struct ua *c = bridged();
    nua_bye(ua_find("room-a")->nh, TAG_END());
    run_until(c->byes == 1 && call_count(P.app->calls) == 0, 2000);
    stop();
}
END_TEST

/* ---- sipCallTransfer --------------------------------------------------- */

START_TEST(transfer_completes)
{
    start();
    struct ua *c = bridged();
    struct ua *r = ua_find("room-a");
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    /* passthrough: the caller is re-INVITEd with the target's media */
    run_until(c->invites == 1, 2000);
    struct ua *t = ua_find("target");
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strstr(t->last_sdp, "m=audio 40000")); /* caller's offer */
    run_until(the_call()->xfer->state == XFER_COMPLETED && r->byes == 1, 2000);
    ck_assert_ptr_nonnull(strstr(c->last_sdp, "m=audio 41"));
    ck_assert_int_eq(t->acks, 1);
    ck_assert_ptr_eq(the_call()->room->uri ? the_call()->room : NULL, the_call()->room);
    ck_assert_int_eq(the_call()->room->role, LEG_ROOM);
    ck_assert_int_eq(the_call()->transfers, 1);
    ck_assert_ptr_null(the_call()->target);
    /* the target is the caller's far end now: its BYE ends the call */
    nua_bye(t->nh, TAG_END());
    run_until(c->byes == 1 && call_count(P.app->calls) == 0, 2000);
    stop();
}
END_TEST

START_TEST(transfer_target_busy)
{
    start();
    bridged();
    P.target.status = 486;
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    assert_kept_on_room(486);
    ck_assert_int_eq(ua_find("caller")->invites, 0);
    stop();
}
END_TEST

START_TEST(transfer_target_no_sdp)
{
    start();
    bridged();
    P.target.no_sdp = true;
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    assert_kept_on_room(488);
    struct ua *t = ua_find("target");
    run_until(t->acks == 1 && t->byes == 1, 2000); /* its dialog is ACKed and ended */
    stop();
}
END_TEST

START_TEST(transfer_ring_timeout)
{
    start();
    bridged();
    P.target.status = 0; /* rings past ring_timeout (1 s) */
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    assert_kept_on_room(408);
    run_until(ua_find("target")->cancels == 1, 2000);
    stop();
}
END_TEST

START_TEST(transfer_cancelled)
{
    start();
    bridged();
    P.target.status = 0;
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    run_until(ua_find("target") && ua_find("target")->invites == 1, 2000);
    char info[128];
    ck_assert_int_eq(transfer_cancel(P.app, the_call(), info, sizeof info), XFER_OK);
    assert_kept_on_room(487);
    run_until(ua_find("target")->cancels == 1, 2000);
    stop();
}
END_TEST

START_TEST(transfer_caller_refuses_reinvite)
{
    start();
    struct ua *c = bridged();
    c->reinvite_answer = 488;
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    assert_kept_on_room(488);
    struct ua *t = ua_find("target");
    run_until(t->byes == 1, 2000);
    stop();
}
END_TEST

START_TEST(transfer_target_hangs_up_first)
{
    start();
    struct ua *c = bridged();
    c->reinvite_answer = 0; /* the caller sits on the re-INVITE */
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    run_until(c->invites == 1 && ua_find("target")->acks == 1, 2000);
    nua_bye(ua_find("target")->nh, TAG_END());
    run_for(30);
    ua_respond(c, 200, true);
    run_until(the_call()->xfer->state == XFER_FAILED, 2000);
    ck_assert_str_eq(the_call()->room_name, "room-a");
    ck_assert_int_eq(ua_find("room-a")->byes, 0);
    stop();
}
END_TEST

START_TEST(transfer_old_room_leaves_while_ringing)
{
    start();
    struct ua *c = bridged();
    P.target.status = 0; /* the target rings */
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    run_until(ua_find("target") && ua_find("target")->invites == 1, 2000);
    nua_bye(ua_find("room-a")->nh, TAG_END());
    run_until(the_call()->room->state == LEG_GONE, 2000);
    ck_assert_int_eq(c->byes, 0); /* the caller waits for the target */
    ua_respond(ua_find("target"), 200, true);
    run_until(the_call()->xfer->state == XFER_COMPLETED, 2000);
    ck_assert_ptr_eq(the_call()->room->uri ? the_call()->room : NULL, the_call()->room);
    ck_assert_int_eq(the_call()->room->role, LEG_ROOM);
    ck_assert_ptr_null(the_call()->zombies);
    nua_bye(c->nh, TAG_END());
    run_until(ua_find("target")->byes == 1 && call_count(P.app->calls) == 0, 2000);
    stop();
}
END_TEST

START_TEST(transfer_caller_hangs_up)
{
    start();
    struct ua *c = bridged();
    P.target.status = 0;
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    run_until(ua_find("target") && ua_find("target")->invites == 1, 2000);
    nua_bye(c->nh, TAG_END());
    run_until(ua_find("target")->cancels == 1 && ua_find("room-a")->byes == 1 &&
                  call_count(P.app->calls) == 0,
              2000);
    stop();
}
END_TEST

START_TEST(transfer_refused_while_running)
{
    start();
    bridged();
    P.target.status = 0;
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_E_RUNNING);
    ck_assert_int_eq(start_transfer(XFER_CALL, "sip:x@evil.example"), XFER_E_RUNNING);
    stop();
}
END_TEST

START_TEST(transfer_to_room)
{
    start();
    struct ua *c = bridged();
    ck_assert_int_eq(start_transfer(XFER_CALL, "sip:room-b@rooms.test"), XFER_OK);
    run_until(the_call()->xfer->state == XFER_COMPLETED, 2000);
    ck_assert_str_eq(the_call()->room_name, "room-b");
    run_until(ua_find("room-a")->byes == 1, 2000);
    ck_assert_int_eq(c->byes, 0);
    ck_assert_int_eq(start_transfer(XFER_CALL, "sip:room-b@rooms.test"), XFER_E_BAD_TARGET);
    stop();
}
END_TEST

/* ---- sipRefer ------------------------------------------------------------ */

/* The caller answers sipxferd's REFER with 202, then NOTIFYs frag. */
static void notify_caller(struct ua *c, const char *frag, bool terminated)
{
    nua_notify(c->nh, NUTAG_SUBSTATE(terminated ? nua_substate_terminated : nua_substate_active),
               SIPTAG_EVENT_STR("refer"),
               TAG_IF(terminated, SIPTAG_SUBSCRIPTION_STATE_STR("terminated;reason=noresource")),
               SIPTAG_CONTENT_TYPE_STR("message/sipfrag;version=2.0"), SIPTAG_PAYLOAD_STR(frag),
               TAG_END());
}

START_TEST(refer_completes)
{
    start();
    struct ua *c = bridged();
    c->refer_answer = 202;
    ck_assert_int_eq(start_transfer(XFER_REFER, "target"), XFER_OK);
    run_until(c->refers == 1 && the_call()->xfer->refer_accepted, 2000);
    ck_assert_ptr_nonnull(strstr(c->refer_to, "sip:target@127.0.0.1"));
    notify_caller(c, "SIP/2.0 100 Trying\r\n", false);
    run_for(30);
    ck_assert_int_eq(the_call()->xfer->state, XFER_RINGING);
    notify_caller(c, "SIP/2.0 200 OK\r\n", true);
    /* sipxferd leaves the path: BYE to both */
    run_until(c->byes == 1 && ua_find("room-a")->byes == 1 && call_count(P.app->calls) == 0,
              2000);
    ck_assert_int_eq(P.app->stats.transfers[XFER_REFER][XFER_DONE], 1);
    stop();
}
END_TEST

START_TEST(refer_without_subscription)
{
    start();
    struct ua *c = bridged();
    c->refer_answer = 202;
    c->refer_no_sub = true; /* no NOTIFY will come: success at once */
    ck_assert_int_eq(start_transfer(XFER_REFER, "target"), XFER_OK);
    run_until(c->byes == 1 && ua_find("room-a")->byes == 1 && call_count(P.app->calls) == 0,
              2000);
    ck_assert_int_eq(P.app->stats.transfers[XFER_REFER][XFER_DONE], 1);
    stop();
}
END_TEST

START_TEST(refer_refused)
{
    start();
    struct ua *c = bridged();
    c->refer_answer = 403;
    ck_assert_int_eq(start_transfer(XFER_REFER, "target"), XFER_OK);
    assert_kept_on_room(403);
    stop();
}
END_TEST

START_TEST(refer_notify_failure)
{
    start();
    struct ua *c = bridged();
    c->refer_answer = 202;
    ck_assert_int_eq(start_transfer(XFER_REFER, "target"), XFER_OK);
    run_until(the_call()->xfer->refer_accepted, 2000);
    notify_caller(c, "SIP/2.0 503 Service Unavailable\r\n", true);
    assert_kept_on_room(503);
    stop();
}
END_TEST

START_TEST(refer_subscription_ends_without_final)
{
    start();
    struct ua *c = bridged();
    c->refer_answer = 202;
    ck_assert_int_eq(start_transfer(XFER_REFER, "target"), XFER_OK);
    run_until(the_call()->xfer->refer_accepted, 2000);
    notify_caller(c, "SIP/2.0 180 Ringing\r\n", true);
    assert_kept_on_room(500);
    stop();
}
END_TEST

START_TEST(refer_no_final_notify)
{
    start();
    struct ua *c = bridged();
    c->refer_answer = 202;
    ck_assert_int_eq(start_transfer(XFER_REFER, "target"), XFER_OK);
    run_until(the_call()->xfer->refer_accepted, 2000);
    notify_caller(c, "SIP/2.0 100 Trying\r\n", false);
    assert_kept_on_room(408); /* notify_timeout = 2 s */
    stop();
}
END_TEST

START_TEST(refer_caller_hangs_up_after_202)
{
    start();
    struct ua *c = bridged();
    c->refer_answer = 202;
    ck_assert_int_eq(start_transfer(XFER_REFER, "target"), XFER_OK);
    run_until(the_call()->xfer->refer_accepted, 2000);
    struct transfer *x = the_call()->xfer;
    (void)x;
    nua_bye(c->nh, TAG_END());
    /* counted as success (the transferee left to reach the target) */
    run_until(ua_find("room-a")->byes == 1 && call_count(P.app->calls) == 0, 2000);
    ck_assert_int_eq(P.app->stats.transfers[XFER_REFER][XFER_DONE], 1);
    ck_assert_int_eq(P.app->stats.transfers[XFER_REFER][XFER_FAILED_OUTCOME], 0);
    stop();
}
END_TEST

START_TEST(refer_to_room_refused)
{
    start();
    bridged();
    ck_assert_int_eq(start_transfer(XFER_REFER, "sip:room-b@rooms.test"), XFER_E_BAD_TARGET);
    stop();
}
END_TEST

/* ---- REFER from a room --------------------------------------------------- */

static void room_refers(struct ua *r, const char *target)
{
    char rt[128];
    snprintf(rt, sizeof rt, "<sip:%s@127.0.0.1:%d>", target, P.port);
    nua_refer(r->nh, SIPTAG_REFER_TO_STR(rt), TAG_END());
}

START_TEST(room_refer_moves_the_caller)
{
    start();
    bridged();
    struct ua *r = ua_find("room-a");
    room_refers(r, "target");
    run_until(r->notify_terminated, 3000);
    ck_assert_int_ge(r->notifies, 2);
    ck_assert_str_eq(r->notify_frags[0], "SIP/2.0 100 Trying");
    ck_assert_str_eq(r->notify_frags[r->notifies - 1], "SIP/2.0 200 OK");
    run_until(r->byes == 1 && the_call()->xfer->state == XFER_COMPLETED, 2000);
    stop();
}
END_TEST

START_TEST(room_refer_target_fails)
{
    start();
    bridged();
    P.target.status = 603;
    struct ua *r = ua_find("room-a");
    room_refers(r, "target");
    run_until(r->notify_terminated, 3000);
    ck_assert_str_eq(r->notify_frags[r->notifies - 1], "SIP/2.0 603 Decline");
    assert_kept_on_room(603);
    stop();
}
END_TEST

START_TEST(caller_refer_refused)
{
    start();
    struct ua *c = bridged();
    c->final = 0;
    room_refers(c, "target"); /* a caller may not move itself */
    run_for(100);
    ck_assert_int_eq(c->notifies, 0);
    ck_assert_ptr_null(the_call()->xfer);
    ck_assert_ptr_null(ua_find("target"));
    stop();
}
END_TEST

/* ---- the instance -------------------------------------------------------- */

START_TEST(instance_teardown_with_calls_up)
{
    start();
    bridged();
    P.target.status = 0;
    ck_assert_int_eq(start_transfer(XFER_CALL, "target"), XFER_OK);
    run_until(ua_find("target") && ua_find("target")->invites == 1, 2000);
    /* destroy with a call and a ringing transfer: nothing leaks, nothing
     * is left registered on the root */
    stop();
}
END_TEST

/* ---- SRTP (media.srtp, SPEC 11) ---------------------------------------- */

#define SRTP_KEY "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0"
#define SAVP_BODY                                                                                  \
    "v=0\r\no=- 4242 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"                 \
    "m=audio 40000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"                                     \
    "a=rtpmap:101 telephone-event/8000\r\n"                                                        \
    "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:" SRTP_KEY "\r\na=sendrecv\r\n"

START_TEST(srtp_require_refuses_plain_offer)
{
    start_relay("require");
    struct ua *c = dial(false);
    run_until(c->final >= 300, 2000);
    ck_assert_int_eq(c->final, 488);
    ck_assert_ptr_null(ua_find("room-a")); /* no room was dialled */
    run_until(call_count(P.app->calls) == 0, 2000);
    stop();
}
END_TEST

START_TEST(srtp_require_refuses_offerless)
{
    start_relay("require");
    struct ua *c = dial(true);
    run_until(c->final >= 300, 2000);
    ck_assert_int_eq(c->final, 488);
    run_until(call_count(P.app->calls) == 0, 2000);
    stop();
}
END_TEST

/* No TLS, no keys: an RTP/SAVP offer cannot be answered with ours. */
START_TEST(srtp_offer_without_tls_refused)
{
    start_relay("allow");
    struct ua *c = dial_body(SAVP_BODY);
    run_until(c->final >= 300, 2000);
    ck_assert_int_eq(c->final, 488);
    ck_assert_ptr_null(ua_find("room-a"));
    run_until(call_count(P.app->calls) == 0, 2000);
    stop();
}
END_TEST

/* "allow" and a plain caller: a plain call, as with "off". */
START_TEST(srtp_allow_plain_call)
{
    start_relay("allow");
    struct ua *c = bridged();
    struct ua *r = ua_find("room-a");
    ck_assert_ptr_nonnull(strstr(r->last_sdp, " RTP/AVP 0 101"));
    ck_assert_ptr_null(strstr(r->last_sdp, "a=crypto"));
    ck_assert_ptr_nonnull(strstr(c->last_sdp, " RTP/AVP 0 101"));
    ck_assert_ptr_null(strstr(c->last_sdp, "a=crypto"));
    ck_assert_ptr_null(strstr(r->last_sdp, "m=audio 40000")); /* relayed */

    /* a re-INVITE switching to SRTP without TLS: refused, the call stays */
    char body[] = SAVP_BODY;
    body[strlen("v=0\r\no=- 4242 ")] = '2'; /* o= version 2 */
    c->final = 0;
    nua_invite(c->nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(body),
               TAG_END());
    run_until(c->final >= 300, 2000);
    ck_assert_int_eq(c->final, 488);
    ck_assert_int_eq(r->invites, 1);
    ck_assert_int_eq(the_call()->caller->state, LEG_CONFIRMED);
    ck_assert(!the_call()->caller->srtp);
    nua_bye(c->nh, TAG_END());
    run_until(r->byes == 1 && call_count(P.app->calls) == 0, 2000);
    stop();
}
END_TEST

/* A leg with TLS signalling (set by hand: nothing sets leg->tls yet) that
 * offers SRTP gets it: our answer toward it has RTP/SAVP and one a=crypto
 * with its tag and suite and a key of ours; toward the plain room the same
 * offer goes as RTP/AVP without crypto. The same offer again keeps our key
 * (no re-key, no new relay contexts); a new key from the leg is learnt. */
START_TEST(srtp_tls_leg_gets_our_key)
{
    start_relay("allow");
    struct call *c = call_new(P.app->calls, "t");
    struct leg *caller = leg_new(c, LEG_CALLER, FAR_TRUNK, NULL);
    struct leg *room = leg_new(c, LEG_ROOM, FAR_ROOM, NULL);
    c->caller = caller;
    c->room = room;
    char err[256];
    ck_assert_int_eq(leg_media_new(P.app, caller, 1, NULL, err, sizeof err), 0);
    ck_assert_int_eq(leg_media_new(P.app, room, 1, caller, err, sizeof err), 0);
    struct sdpx_info offer;
    ck_assert_int_eq(sdpx_parse(SAVP_BODY, strlen(SAVP_BODY), &offer, err, sizeof err), 0);

    char why[160];
    ck_assert_int_eq(leg_srtp_check(P.app, caller, &offer, why, sizeof why), 488);
    ck_assert(!caller->srtp);
    caller->tls = true;
    ck_assert_int_eq(leg_srtp_check(P.app, caller, &offer, why, sizeof why), 0);
    ck_assert(caller->srtp);
    leg_learn_sdp(caller, &offer, SAVP_BODY, strlen(SAVP_BODY));
    ck_assert_int_eq(caller->srtp_rx[0].suite, SDPX_SUITE_AES_CM_128_HMAC_SHA1_32);
    ck_assert_int_eq(memcmp(caller->srtp_ep_rx[0].key, "0123456789abcdefghijklmnopqrst", 30), 0);

    char *to_room = leg_sdp_for(P.app, room, SAVP_BODY, strlen(SAVP_BODY));
    ck_assert_ptr_nonnull(to_room);
    ck_assert_ptr_nonnull(strstr(to_room, " RTP/AVP 0 101\r\n"));
    ck_assert_ptr_null(strstr(to_room, "a=crypto"));

    char plain[512];
    sdp(plain, sizeof plain, 1, "sendrecv", 41000);
    char *to_caller = leg_sdp_for(P.app, caller, plain, strlen(plain));
    ck_assert_ptr_nonnull(to_caller);
    ck_assert_msg(strstr(to_caller, " RTP/SAVP 0 101\r\n") != NULL, "%s", to_caller);
    ck_assert_ptr_null(strstr(to_caller, SRTP_KEY)); /* never the leg's own key */
    struct sdpx_info ans;
    ck_assert_int_eq(sdpx_parse(to_caller, strlen(to_caller), &ans, err, sizeof err), 0);
    ck_assert(ans.s[0].savp);
    ck_assert_int_eq(ans.s[0].crypto.suite, SDPX_SUITE_AES_CM_128_HMAC_SHA1_32);
    ck_assert_uint_eq(ans.s[0].crypto.tag, 3);
    ck_assert_int_eq(memcmp(ans.s[0].crypto.key, caller->srtp_tx[0].key, SDPX_KEY_LEN), 0);
    ck_assert_int_eq(memcmp(&caller->srtp_ep_tx[0], &caller->srtp_tx[0],
                            sizeof caller->srtp_tx[0]), 0);

    /* the same offer again (a refresh): our key stays */
    struct sdpx_crypto ours = caller->srtp_tx[0];
    ck_assert_int_eq(leg_srtp_check(P.app, caller, &offer, why, sizeof why), 0);
    ck_assert_int_eq(memcmp(&caller->srtp_tx[0], &ours, sizeof ours), 0);
    /* the leg re-keys: learnt, ours stays for the same suite and tag */
    offer.s[0].crypto.key[0] ^= 1;
    ck_assert_int_eq(leg_srtp_check(P.app, caller, &offer, why, sizeof why), 0);
    leg_learn_sdp(caller, &offer, NULL, 0);
    ck_assert_int_eq(caller->srtp_ep_rx[0].key[0], '0' ^ 1);
    ck_assert_int_eq(memcmp(&caller->srtp_tx[0], &ours, sizeof ours), 0);
    /* a transfer re-keys: a new key of ours in the next offer, which the
     * relay takes with the leg's answer */
    ck_assert_int_eq(memcmp(caller->srtp_ep_tx[0].key, ours.key, SDPX_KEY_LEN), 0);
    leg_srtp_rekey(caller);
    ck_assert_uint_eq(caller->srtp_tx[0].tag, 3);
    ck_assert_int_eq(caller->srtp_tx[0].suite, SDPX_SUITE_AES_CM_128_HMAC_SHA1_32);
    ck_assert_int_ne(memcmp(caller->srtp_tx[0].key, ours.key, SDPX_KEY_LEN), 0);
    ck_assert_int_eq(memcmp(caller->srtp_ep_tx[0].key, ours.key, SDPX_KEY_LEN), 0);
    to_caller = leg_sdp_for(P.app, caller, SAVP_BODY, strlen(SAVP_BODY));
    ck_assert_int_eq(sdpx_parse(to_caller, strlen(to_caller), &ans, err, sizeof err), 0);
    ck_assert_int_eq(memcmp(ans.s[0].crypto.key, caller->srtp_tx[0].key, SDPX_KEY_LEN), 0);
    leg_learn_sdp(caller, &offer, NULL, 0); /* the caller's answer */
    ck_assert_int_eq(memcmp(caller->srtp_ep_tx[0].key, caller->srtp_tx[0].key, SDPX_KEY_LEN), 0);
    /* a refused re-key: back to what the relay has */
    memcpy(ours.key, caller->srtp_tx[0].key, SDPX_KEY_LEN);
    leg_srtp_rekey(caller);
    leg_srtp_rekey_undo(caller);
    ck_assert_int_eq(memcmp(caller->srtp_tx[0].key, ours.key, SDPX_KEY_LEN), 0);

    /* back to plain RTP under "allow": plain both ways */
    struct sdpx_info plain_offer;
    ck_assert_int_eq(sdpx_parse(plain, strlen(plain), &plain_offer, err, sizeof err), 0);
    ck_assert_int_eq(leg_srtp_check(P.app, caller, &plain_offer, why, sizeof why), 0);
    ck_assert(!caller->srtp);
    leg_learn_sdp(caller, &plain_offer, NULL, 0);
    ck_assert_int_eq(caller->srtp_ep_rx[0].suite, SDPX_SUITE_NONE);
    ck_assert_int_eq(caller->srtp_ep_tx[0].suite, SDPX_SUITE_NONE);
    to_caller = leg_sdp_for(P.app, caller, SAVP_BODY, strlen(SAVP_BODY));
    ck_assert_ptr_nonnull(strstr(to_caller, " RTP/AVP 0 101\r\n"));
    ck_assert_ptr_null(strstr(to_caller, "a=crypto"));

    /* an RTP/SAVP offer whose only a=crypto is malformed */
    struct sdpx_info bad = offer;
    bad.s[0].crypto.suite = SDPX_SUITE_NONE;
    bad.s[0].crypto_bad = 1;
    ck_assert_int_eq(leg_srtp_check(P.app, caller, &bad, why, sizeof why), 488);
    call_free(c);
    stop();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("calls");
    TCase *b = tcase_create("bridge");
    tcase_set_timeout(b, 10);
    tcase_add_test(b, bridge_then_bye);
    tcase_add_test(b, room_busy);
    tcase_add_test(b, caller_cancels);
    tcase_add_test(b, offerless_invite);
    tcase_add_test(b, hold_and_unhold);
    tcase_add_test(b, session_refresh_answered_here);
    tcase_add_test(b, glare_gets_491);
    tcase_add_test(b, reinvite_refused_by_peer);
    tcase_add_test(b, room_hangs_up);
    tcase_add_test(b, instance_teardown_with_calls_up);
    suite_add_tcase(s, b);

    TCase *sr = tcase_create("srtp");
    tcase_set_timeout(sr, 10);
    tcase_add_test(sr, srtp_require_refuses_plain_offer);
    tcase_add_test(sr, srtp_require_refuses_offerless);
    tcase_add_test(sr, srtp_offer_without_tls_refused);
    tcase_add_test(sr, srtp_allow_plain_call);
    tcase_add_test(sr, srtp_tls_leg_gets_our_key);
    suite_add_tcase(s, sr);

    TCase *x = tcase_create("sipCallTransfer");
    tcase_set_timeout(x, 10);
    tcase_add_test(x, transfer_completes);
    tcase_add_test(x, transfer_target_busy);
    tcase_add_test(x, transfer_target_no_sdp);
    tcase_add_test(x, transfer_ring_timeout);
    tcase_add_test(x, transfer_cancelled);
    tcase_add_test(x, transfer_caller_refuses_reinvite);
    tcase_add_test(x, transfer_target_hangs_up_first);
    tcase_add_test(x, transfer_caller_hangs_up);
    tcase_add_test(x, transfer_old_room_leaves_while_ringing);
    tcase_add_test(x, transfer_refused_while_running);
    tcase_add_test(x, transfer_to_room);
    suite_add_tcase(s, x);

    TCase *r = tcase_create("sipRefer");
    tcase_set_timeout(r, 10);
    tcase_add_test(r, refer_completes);
    tcase_add_test(r, refer_without_subscription);
    tcase_add_test(r, refer_refused);
    tcase_add_test(r, refer_notify_failure);
    tcase_add_test(r, refer_subscription_ends_without_final);
    tcase_add_test(r, refer_no_final_notify);
    tcase_add_test(r, refer_caller_hangs_up_after_202);
    tcase_add_test(r, refer_to_room_refused);
    tcase_add_test(r, room_refer_moves_the_caller);
    tcase_add_test(r, room_refer_target_fails);
    tcase_add_test(r, caller_refer_refused);
    suite_add_tcase(s, r);
    return s;
}

int main(void) { return unit_run(suite()); }
