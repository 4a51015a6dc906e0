/* cluster.c - Redis as the cluster's directory and node registry (see
 * cluster.h).
 *
 * The hiredis async context runs on app->root: its ev hooks (addRead,
 * delRead, addWrite, delWrite, cleanup) keep one su_root registration of
 * its socket in step with what it wants to wait for; the registration is
 * dropped when it wants nothing (a level-triggered hang-up would otherwise
 * wake the loop for ever) and in cleanup, which hiredis calls before it
 * closes the socket.
 *
 * Every command sent is a struct cmd on a list in send order (Redis answers
 * in that order); one watchdog timer fires at the oldest one's deadline.
 * A late reply, a failed connect or a connect that takes too long tears the
 * context down (redisAsyncFree: every command still pending gets its
 * callback with a NULL reply, at once) and the retry timer makes a new one.
 * Contexts are only ever made from that timer, never from inside a hiredis
 * callback.
 *
 * Lookups (struct req) are answered from a 0 ms timer, so a callback never
 * runs inside the call that started it nor inside hiredis. */
#include "sofia_types.h"

#include "cluster.h"

#include <cjson/cJSON.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "call.h"
#include "config.h"
#include "events.h"
#include "log.h"
#include "router.h"
#include "xalloc.h"

#define CMD_TIMEOUT_MS 1000
#define CONNECT_TIMEOUT_MS 1000
#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS 5000
#define REAP_LOCK_SECONDS "30"

/* LINK_HELLO: connected, our PING not answered yet (a stopped Redis
 * still accepts connections: up means it answers) */
enum link { LINK_OFF, LINK_WAIT, LINK_CONNECTING, LINK_HELLO, LINK_UP };

enum kind {
    K_IGNORE,       /* a write: the reply says nothing we act on */
    K_HELLO,        /* PING on a new connection */
    K_CATCHUP,      /* SMEMBERS nodesess:<me> after a (re)connect */
    K_DEL_ROOM,     /* HGET sess:<id> room of a session being removed */
    K_REAP_NODES,   /* SMEMBERS nodes */
    K_REAP_EXISTS,  /* EXISTS node:<n> */
    K_REAP_LOCK,    /* SET reap:<n> <me> NX EX 30 */
    K_REAP_LIST,    /* SMEMBERS nodesess:<n> */
    K_REAP_CLAIM,   /* SREM nodesess:<n> <id> */
    K_REAP_SESS,    /* HGETALL sess:<id> */
    K_NODE_API,     /* HGET node:<n> api */
    K_LIST_NODES,   /* SMEMBERS nodes */
    K_LIST_NODESESS, /* SMEMBERS nodesess:<n> */
    K_LIST_SESS,    /* HGETALL sess:<id> */
};

struct req {
    struct req *next;
    bool list; /* cluster_list_sessions; else cluster_node_api */
    cluster_node_f node_cb;
    cluster_list_f list_cb;
    void *arg;
    char *node;
    int pending; /* commands in flight for it */
    bool failed, done, cancelled;
    int result;
    char *api;
    cJSON *arr;
};

/* Taking a lost node's sessions down. */
struct reap {
    struct reap *next;
    char *node;
    int pending;
    bool failed, listed;
    bool claimed; /* the last SREM nodesess:<n> <id> removed it (answers come in order) */
    unsigned ended;
};

struct cmd {
    struct cmd *prev, *next;
    struct cluster *cl;
    enum kind kind;
    long long deadline;
    struct req *req;
    struct reap *reap;
    char *a;
};

struct cluster {
    struct app *app;
    char host[64];
    int port;
    char addr[96]; /* as configured, for the log */
    enum link link;
    int logged; /* -1 nothing yet, 0 down, 1 up: what was last logged */
    redisAsyncContext *ac;
    /* the context's su_root registration (one context at a time) */
    redisAsyncContext *ev_ac;
    int ev_index; /* 0: not registered */
    int ev_events;

    su_timer_t *retry;   /* reconnect, and the connect's bound while connecting */
    su_timer_t *watch;   /* the oldest command's deadline */
    su_timer_t *tick;    /* lease refresh and reaper, every lease/3 s */
    su_timer_t *deliver; /* lookups answered from the loop */
    bool watch_armed, deliver_armed;
    int retry_ms;
    struct cmd *cmds, *cmds_tail;
    struct req *reqs;
    struct reap *reaps;
    char state[16]; /* node:<me>.state */
    bool stopping;
    unsigned long long reaped;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void connect_now(struct cluster *cl);
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* ---- up / down --------------------------------------------------------- */

static void log_up(struct cluster *cl)
{
    if (cl->logged != 1)
        log_info("redis at %s: up", cl->addr);
    cl->logged = 1;
}

static void log_down(struct cluster *cl, const char *reason)
{
    if (cl->logged != 0)
        log_warn("redis at %s: down (%s)", cl->addr, reason && *reason ? reason : "unknown");
    cl->logged = 0;
}

static void on_retry(struct app *app, su_timer_t *t, void *arg);

static void schedule_retry(struct cluster *cl)
{
    if (cl->stopping)
        return;
    cl->link = LINK_WAIT;
    su_timer_set_interval(cl->retry, on_retry, cl, cl->retry_ms);
    cl->retry_ms = cl->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : cl->retry_ms * 2;
}

/* Drop the context now: commands pending get NULL replies (inside this). */
static void force_down(struct cluster *cl, const char *reason)
{
    redisAsyncContext *ac = cl->ac;
    cl->ac = NULL;
    log_down(cl, reason);
    if (ac)
        redisAsyncFree(ac); /* on_disconnect sees cl->ac != ac: ignored */
    schedule_retry(cl);
}

/* ---- the event-loop adapter --------------------------------------------- */

static int on_wait(struct app *app, su_wait_t *w, void *arg)
{
    struct cluster *cl = arg;
    redisAsyncContext *ac = cl->ev_ac;
    if (!ac)
        return 0;
    int ev = su_wait_events(w, ac->c.fd);
    int want = cl->ev_events;
    /* either handler may free ac (a disconnect): cleanup clears ev_ac */
    if ((want & SU_WAIT_IN) && (ev & (SU_WAIT_IN | SU_WAIT_HUP | SU_WAIT_ERR)))
        redisAsyncHandleRead(ac);
    if (cl->ev_ac == ac && (want & SU_WAIT_OUT) && (ev & (SU_WAIT_OUT | SU_WAIT_HUP | SU_WAIT_ERR)))
        redisAsyncHandleWrite(ac);
    return 0;
}

static void ev_set(struct cluster *cl, int events)
{
    redisAsyncContext *ac = cl->ev_ac;
    if (!ac || events == cl->ev_events)
        return;
    su_root_t *root = cl->app->root;
    if (events == 0) {
        if (cl->ev_index > 0)
            su_root_deregister(root, cl->ev_index);
        cl->ev_index = 0;
    } else if (cl->ev_index > 0) {
        if (su_root_eventmask(root, cl->ev_index, ac->c.fd, events) < 0)
            log_error("redis: cannot change the socket's events on the loop");
    } else {
        su_wait_t w;
        if (su_wait_create(&w, ac->c.fd, events) < 0 ||
            (cl->ev_index = su_root_register(root, &w, on_wait, cl, 0)) <= 0) {
            log_error("redis: cannot register its socket on the loop");
            cl->ev_index = 0;
            return;
        }
    }
    cl->ev_events = events;
}

static void ev_add_read(void *p)
{
    struct cluster *cl = p;
    ev_set(cl, cl->ev_events | SU_WAIT_IN);
}
static void ev_del_read(void *p)
{
    struct cluster *cl = p;
    ev_set(cl, cl->ev_events & ~SU_WAIT_IN);
}
static void ev_add_write(void *p)
{
    struct cluster *cl = p;
    ev_set(cl, cl->ev_events | SU_WAIT_OUT);
}
static void ev_del_write(void *p)
{
    struct cluster *cl = p;
    ev_set(cl, cl->ev_events & ~SU_WAIT_OUT);
}
static void ev_cleanup(void *p)
{
    struct cluster *cl = p;
    ev_set(cl, 0);
    cl->ev_ac = NULL;
}

/* ---- commands ------------------------------------------------------------ */

static void on_watch(struct app *app, su_timer_t *t, void *arg)
{
    struct cluster *cl = arg;
    cl->watch_armed = false;
    if (!cl->cmds)
        return;
    long long left = cl->cmds->deadline - now_ms();
    if (left <= 0) {
        char why[64];
        snprintf(why, sizeof why, "no reply in %d ms", CMD_TIMEOUT_MS);
        force_down(cl, why);
        return;
    }
    cl->watch_armed = true;
    su_timer_set_interval(cl->watch, on_watch, cl, (su_duration_t)left);
}

static void cmd_unlink(struct cluster *cl, struct cmd *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        cl->cmds = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        cl->cmds_tail = c->prev;
    c->prev = c->next = NULL;
}

/* Send argv; its reply goes to on_reply with a cmd of this kind. false
 * (nothing sent) while Redis is down. a is copied. */
static bool sendv(struct cluster *cl, enum kind kind, struct req *rq, struct reap *rp,
                  const char *a, int argc, const char **argv)
{
    if (!cl->ac || cl->stopping || !(cl->link == LINK_UP || (kind == K_HELLO && cl->link == LINK_HELLO)))
        return false;
    struct cmd *c = xcalloc(1, sizeof *c);
    c->cl = cl;
    c->kind = kind;
    c->req = rq;
    c->reap = rp;
    c->a = a ? xstrdup(a) : NULL;
    c->deadline = now_ms() + CMD_TIMEOUT_MS;
    if (redisAsyncCommandArgv(cl->ac, on_reply, c, argc, argv, NULL) != REDIS_OK) {
        free(c->a);
        free(c);
        return false;
    }
    c->prev = cl->cmds_tail;
    if (cl->cmds_tail)
        cl->cmds_tail->next = c;
    else
        cl->cmds = c;
    cl->cmds_tail = c;
    if (rq)
        rq->pending++;
    if (rp)
        rp->pending++;
    if (!cl->watch_armed) {
        cl->watch_armed = true;
        su_timer_set_interval(cl->watch, on_watch, cl, CMD_TIMEOUT_MS);
    }
    return true;
}

#define SEND(cl, kind, rq, rp, a, ...)                                                        \
    do {                                                                                      \
        const char *argv_[] = {__VA_ARGS__};                                                  \
        sendv(cl, kind, rq, rp, a, (int)(sizeof argv_ / sizeof argv_[0]), argv_);             \
    } while (0)
#define SEND_OK(ok, cl, kind, rq, rp, a, ...)                                                 \
    do {                                                                                      \
        const char *argv_[] = {__VA_ARGS__};                                                  \
        ok = sendv(cl, kind, rq, rp, a, (int)(sizeof argv_ / sizeof argv_[0]), argv_);        \
    } while (0)

static void key(char *buf, size_t len, const char *prefix, const char *name)
{
    snprintf(buf, len, "%s:%s", prefix, name);
}

/* The value of field in an HGETALL reply, or NULL. */
static const char *hfield(const redisReply *r, const char *field)
{
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, field) == 0)
            return r->element[i + 1]->type == REDIS_REPLY_STRING ? r->element[i + 1]->str : NULL;
    return NULL;
}

/* The same, "" when absent. */
static const char *hstr(const redisReply *r, const char *field)
{
    const char *v = hfield(r, field);
    return v ? v : "";
}

/* ---- lookups: answered from the loop ------------------------------------ */

static void on_deliver(struct app *app, su_timer_t *t, void *arg);

static void req_done(struct cluster *cl, struct req *rq)
{
    rq->done = true;
    if (!cl->deliver_armed && !cl->stopping) {
        cl->deliver_armed = true;
        su_timer_set_interval(cl->deliver, on_deliver, cl, 0);
    }
}

static void req_free(struct req *rq)
{
    free(rq->node);
    free(rq->api);
    cJSON_Delete(rq->arr);
    free(rq);
}

static void on_deliver(struct app *app, su_timer_t *t, void *arg)
{
    struct cluster *cl = arg;
    cl->deliver_armed = false;
    /* one at a time: a callback may start or cancel lookups */
    for (;;) {
        struct req **pp = &cl->reqs;
        while (*pp && !(*pp)->done)
            pp = &(*pp)->next;
        struct req *rq = *pp;
        if (!rq)
            break;
        *pp = rq->next;
        if (!rq->cancelled) {
            if (rq->list) {
                bool ok = !rq->failed;
                rq->list_cb(rq->arg, ok, ok ? rq->arr : NULL);
            } else {
                int result = rq->failed ? -1 : rq->result;
                const char *api = result == 1 ? rq->api : NULL;
                if (result == -1 && (api = config_peer_api(cl->app->cfg, rq->node)) != NULL)
                    result = 1;
                rq->node_cb(rq->arg, result, api);
            }
        }
        req_free(rq);
    }
}

static struct req *req_new(struct cluster *cl, void *arg)
{
    struct req *rq = xcalloc(1, sizeof *rq);
    rq->arg = arg;
    rq->next = cl->reqs;
    cl->reqs = rq;
    return rq;
}

/* ---- the reaper ------------------------------------------------------------ */

static void reap_free(struct cluster *cl, struct reap *rp)
{
    for (struct reap **pp = &cl->reaps; *pp; pp = &(*pp)->next)
        if (*pp == rp) {
            *pp = rp->next;
            break;
        }
    free(rp->node);
    free(rp);
}

/* A reap whose commands all answered: finish or give up. */
static void reap_settle(struct cluster *cl, struct reap *rp)
{
    if (rp->pending > 0)
        return;
    if (!rp->failed && rp->listed && !cl->stopping) {
        char k[160];
        key(k, sizeof k, "nodesess", rp->node);
        SEND(cl, K_IGNORE, NULL, NULL, NULL, "DEL", k);
        SEND(cl, K_IGNORE, NULL, NULL, NULL, "SREM", "nodes", rp->node);
        cl->reaped += rp->ended;
        log_info("node %s lost: %u session(s) ended (node-lost)", rp->node, rp->ended);
    } else if (rp->failed && !cl->stopping) {
        log_warn("node %s lost: reaping interrupted after %u session(s); retried once its "
                 "lock expires", rp->node, rp->ended);
    }
    reap_free(cl, rp);
}

static void reap_session(struct cluster *cl, struct reap *rp, const char *id, const redisReply *r)
{
    const char *room = hstr(r, "room");
    if (!rp->claimed || !hfield(r, "node"))
        return; /* someone else took it, or its hash is gone */
    long long t0 = atoll(hstr(r, "started"));
    long long dur = t0 > 0 ? (long long)time(NULL) - t0 : 0;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "session_id", id);
    cJSON_AddStringToObject(p, "sessionId", id);
    cJSON_AddStringToObject(p, "room", room);
    cJSON_AddStringToObject(p, "from", hstr(r, "from"));
    cJSON_AddNumberToObject(p, "duration", (double)(dur < 0 ? 0 : dur));
    cJSON_AddStringToObject(p, "reason", "node-lost");
    cJSON_AddStringToObject(p, "node", rp->node);
    events_post(cl->app, strcmp(hstr(r, "type"), "dialout") == 0 ? "dialout.stopped"
                                                                : "dialin.stopped", p);
    rp->ended++;
    char k[160];
    key(k, sizeof k, "sess", id);
    SEND(cl, K_IGNORE, NULL, NULL, NULL, "DEL", k);
    if (*room) {
        key(k, sizeof k, "room", room);
        SEND(cl, K_IGNORE, NULL, NULL, NULL, "SREM", k, id);
    }
}

static bool reaping(const struct cluster *cl, const char *node)
{
    for (const struct reap *rp = cl->reaps; rp; rp = rp->next)
        if (strcmp(rp->node, node) == 0)
            return true;
    return false;
}

/* ---- node registration and the directory ------------------------------- */

static void register_node(struct cluster *cl)
{
    const struct config *cfg = cl->app->cfg;
    char k[160], calls[24], ttl[16];
    key(k, sizeof k, "node", cfg->node);
    snprintf(calls, sizeof calls, "%zu", call_count(cl->app->calls));
    snprintf(ttl, sizeof ttl, "%d", cfg->cluster.lease);
    SEND(cl, K_IGNORE, NULL, NULL, NULL, "HSET", k, "api", cfg->api_listen ? cfg->api_listen : "",
         "sip", cfg->sip_listen ? cfg->sip_listen : "", "state", cl->state, "calls", calls);
    SEND(cl, K_IGNORE, NULL, NULL, NULL, "EXPIRE", k, ttl);
    SEND(cl, K_IGNORE, NULL, NULL, NULL, "SADD", "nodes", cfg->node);
}

static void put_session(struct cluster *cl, const struct call *c, const char *state)
{
    const char *node = cl->app->cfg->node;
    char k[160], started[24];
    key(k, sizeof k, "sess", c->id);
    snprintf(started, sizeof started, "%lld", (long long)c->started);
    const char *room = c->room_name ? c->room_name : "";
    SEND(cl, K_IGNORE, NULL, NULL, NULL, "HSET", k, "node", node, "room", room, "from",
         c->from ? c->from : "", "started", started, "type", c->dialout ? "dialout" : "dialin",
         "state", state ? state : "");
    key(k, sizeof k, "nodesess", node);
    SEND(cl, K_IGNORE, NULL, NULL, NULL, "SADD", k, c->id);
    if (*room) {
        key(k, sizeof k, "room", room);
        SEND(cl, K_IGNORE, NULL, NULL, NULL, "SADD", k, c->id);
    }
}

static void del_session(struct cluster *cl, const char *id, const char *room)
{
    char k[160];
    key(k, sizeof k, "sess", id);
    /* the room it was written with (a transfer may have moved the call to
     * another room since): read before the DEL, Redis runs them in order */
    SEND(cl, K_DEL_ROOM, NULL, NULL, id, "HGET", k, "room");
    SEND(cl, K_IGNORE, NULL, NULL, NULL, "DEL", k);
    key(k, sizeof k, "nodesess", cl->app->cfg->node);
    SEND(cl, K_IGNORE, NULL, NULL, NULL, "SREM", k, id);
    if (room && *room) {
        key(k, sizeof k, "room", room);
        SEND(cl, K_IGNORE, NULL, NULL, NULL, "SREM", k, id);
    }
}

/* After a (re)connect: the directory catches up with what is local. */
static void catch_up(struct cluster *cl)
{
    register_node(cl);
    unsigned n = 0;
    for (struct call *c = call_first(cl->app->calls); c; c = c->next)
        if (c->connected_event) {
            put_session(cl, c, "connected");
            n++;
        }
    if (n)
        log_info("redis: %u live session(s) written again", n);
    char k[160];
    key(k, sizeof k, "nodesess", cl->app->cfg->node);
    SEND(cl, K_CATCHUP, NULL, NULL, NULL, "SMEMBERS", k);
}

static void reap_scan(struct cluster *cl)
{
    SEND(cl, K_REAP_NODES, NULL, NULL, NULL, "SMEMBERS", "nodes");
}

/* The lease refresh (and reaper scan): three times per lease, at most once a second. */
static void tick_arm(struct cluster *cl);

static void on_tick(struct app *app, su_timer_t *t, void *arg)
{
    struct cluster *cl = arg;
    if (cl->link == LINK_UP) {
        register_node(cl);
        reap_scan(cl);
    }
    tick_arm(cl);
}

static void tick_arm(struct cluster *cl)
{
    int every = cl->app->cfg->cluster.lease * 1000 / 3;
    su_timer_set_interval(cl->tick, on_tick, cl, every < 1000 ? 1000 : every);
}

/* ---- replies ------------------------------------------------------------- */

static bool is_array(const redisReply *r) { return r && r->type == REDIS_REPLY_ARRAY; }

static void list_reply(struct cluster *cl, struct cmd *c, const redisReply *r)
{
    struct req *rq = c->req;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        rq->failed = true;
        return;
    }
    if (rq->failed || rq->cancelled)
        return;
    char k[160];
    if (c->kind == K_LIST_NODES || c->kind == K_LIST_NODESESS) {
        if (!is_array(r))
            return;
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            bool ok;
            if (c->kind == K_LIST_NODES) {
                key(k, sizeof k, "nodesess", e->str);
                SEND_OK(ok, cl, K_LIST_NODESESS, rq, NULL, e->str, "SMEMBERS", k);
            } else {
                key(k, sizeof k, "sess", e->str);
                SEND_OK(ok, cl, K_LIST_SESS, rq, NULL, e->str, "HGETALL", k);
            }
            if (!ok) {
                rq->failed = true;
                return;
            }
        }
        return;
    }
    /* K_LIST_SESS */
    const char *node = hfield(r, "node");
    if (!node)
        return; /* ended meanwhile */
    const char *started = hfield(r, "started");
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "sessionId", c->a);
    cJSON_AddStringToObject(j, "node", node);
    cJSON_AddStringToObject(j, "room", hstr(r, "room"));
    cJSON_AddStringToObject(j, "caller", hstr(r, "from"));
    cJSON_AddStringToObject(j, "state", hstr(r, "state"));
    cJSON_AddNumberToObject(j, "startedAt", started ? (double)atoll(started) : 0);
    cJSON_AddItemToArray(rq->arr, j);
}

static void reap_reply(struct cluster *cl, struct cmd *c, const redisReply *r)
{
    char k[160];
    const char *me = cl->app->cfg->node;
    switch (c->kind) {
    case K_REAP_NODES:
        if (!is_array(r))
            return;
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_STRING || strcmp(e->str, me) == 0 || reaping(cl, e->str))
                continue;
            key(k, sizeof k, "node", e->str);
            SEND(cl, K_REAP_EXISTS, NULL, NULL, e->str, "EXISTS", k);
        }
        return;
    case K_REAP_EXISTS:
        if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != 0 || reaping(cl, c->a))
            return;
        key(k, sizeof k, "reap", c->a);
        SEND(cl, K_REAP_LOCK, NULL, NULL, c->a, "SET", k, me, "NX", "EX", REAP_LOCK_SECONDS);
        return;
    case K_REAP_LOCK: {
        if (!r || r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0)
            return; /* another node has it */
        struct reap *rp = xcalloc(1, sizeof *rp);
        rp->node = xstrdup(c->a);
        rp->next = cl->reaps;
        cl->reaps = rp;
        key(k, sizeof k, "nodesess", c->a);
        bool ok;
        SEND_OK(ok, cl, K_REAP_LIST, NULL, rp, NULL, "SMEMBERS", k);
        if (!ok)
            reap_free(cl, rp);
        return;
    }
    default:
        break;
    }
    struct reap *rp = c->reap;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        rp->failed = true;
        return;
    }
    if (rp->failed)
        return;
    switch (c->kind) {
    case K_REAP_LIST:
        rp->listed = true;
        if (!is_array(r))
            return;
        key(k, sizeof k, "nodesess", rp->node);
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            char sk[160];
            key(sk, sizeof sk, "sess", e->str);
            bool ok1, ok2;
            /* the SREM claims the id (once, whoever reaps); its answer
             * comes just before the HGETALL's */
            SEND_OK(ok1, cl, K_REAP_CLAIM, NULL, rp, NULL, "SREM", k, e->str);
            SEND_OK(ok2, cl, K_REAP_SESS, NULL, rp, e->str, "HGETALL", sk);
            if (!ok1 || !ok2) {
                rp->failed = true;
                return;
            }
        }
        return;
    case K_REAP_CLAIM:
        rp->claimed = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        return;
    case K_REAP_SESS:
        reap_session(cl, rp, c->a, r);
        rp->claimed = false;
        return;
    default:
        return;
    }
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct cmd *c = privdata;
    struct cluster *cl = c->cl;
    const redisReply *r = reply;
    cmd_unlink(cl, c);
    char k[160];
    switch (c->kind) {
    case K_IGNORE:
        if (r && r->type == REDIS_REPLY_ERROR)
            log_warn("redis: a write failed: %s", r->str);
        break;
    case K_HELLO:
        if (r && r->type == REDIS_REPLY_STATUS && cl->link == LINK_HELLO && !cl->stopping) {
            cl->link = LINK_UP;
            cl->retry_ms = RETRY_FIRST_MS;
            log_up(cl);
            catch_up(cl);
        } else if (r && cl->link == LINK_HELLO) {
            force_down(cl, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected answer to PING");
        }
        break;
    case K_CATCHUP:
        if (!is_array(r) || cl->stopping)
            break;
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            const struct call *lc = call_find(cl->app->calls, e->str);
            if (lc && lc->connected_event)
                continue;
            del_session(cl, e->str, NULL);
            log_info("redis: session %s is no longer here: removed from the directory", e->str);
        }
        break;
    case K_DEL_ROOM:
        if (r && r->type == REDIS_REPLY_STRING && *r->str && !cl->stopping) {
            key(k, sizeof k, "room", r->str);
            SEND(cl, K_IGNORE, NULL, NULL, NULL, "SREM", k, c->a);
        }
        break;
    case K_REAP_NODES:
    case K_REAP_EXISTS:
    case K_REAP_LOCK:
        if (!cl->stopping)
            reap_reply(cl, c, r);
        break;
    case K_REAP_LIST:
    case K_REAP_CLAIM:
    case K_REAP_SESS:
        if (cl->stopping)
            c->reap->failed = true;
        reap_reply(cl, c, r);
        c->reap->pending--;
        reap_settle(cl, c->reap);
        break;
    case K_NODE_API: {
        struct req *rq = c->req;
        if (!r || r->type == REDIS_REPLY_ERROR)
            rq->failed = true;
        else if (r->type == REDIS_REPLY_STRING) {
            rq->result = 1;
            rq->api = xstrdup(r->str);
        } else
            rq->result = 0;
        if (--rq->pending == 0)
            req_done(cl, rq);
        break;
    }
    case K_LIST_NODES:
    case K_LIST_NODESESS:
    case K_LIST_SESS: {
        struct req *rq = c->req;
        list_reply(cl, c, r);
        if (--rq->pending == 0)
            req_done(cl, rq);
        break;
    }
    }
    free(c->a);
    free(c);
    (void)ac;
}

/* ---- connecting ----------------------------------------------------------- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct cluster *cl = ac->data;
    if (cl->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac once this returns */
        cl->ac = NULL;
        su_timer_reset(cl->retry);
        log_down(cl, ac->errstr[0] ? ac->errstr : "connect failed");
        schedule_retry(cl);
        return;
    }
    su_timer_reset(cl->retry);
    cl->link = LINK_HELLO;
    SEND(cl, K_HELLO, NULL, NULL, NULL, "PING");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct cluster *cl = ac->data;
    if (cl->ac != ac)
        return; /* we freed it ourselves */
    cl->ac = NULL;
    log_down(cl, ac->err && ac->errstr[0] ? ac->errstr : "connection closed");
    schedule_retry(cl);
}

static void on_retry(struct app *app, su_timer_t *t, void *arg)
{
    struct cluster *cl = arg;
    if (cl->link == LINK_CONNECTING) {
        char why[64];
        snprintf(why, sizeof why, "no connection in %d ms", CONNECT_TIMEOUT_MS);
        force_down(cl, why);
        return;
    }
    connect_now(cl);
}

static void connect_now(struct cluster *cl)
{
    redisAsyncContext *ac = redisAsyncConnect(cl->host, cl->port);
    if (!ac) {
        log_down(cl, "out of memory");
        schedule_retry(cl);
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        log_down(cl, why);
        schedule_retry(cl);
        return;
    }
    cl->ac = ac;
    cl->ev_ac = ac;
    cl->ev_index = 0;
    cl->ev_events = 0;
    ac->data = cl;
    ac->ev.data = cl;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    cl->link = LINK_CONNECTING;
    /* with the hooks in place: this asks for the first write event */
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    su_timer_set_interval(cl->retry, on_retry, cl, CONNECT_TIMEOUT_MS);
}

/* ---- public ---------------------------------------------------------------- */

static bool parse_addr(struct cluster *cl, const char *text)
{
    const char *colon = strrchr(text, ':');
    if (!colon)
        return false;
    const char *h = text;
    size_t n = (size_t)(colon - text);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof cl->host)
        return false;
    memcpy(cl->host, h, n);
    cl->host[n] = '\0';
    cl->port = atoi(colon + 1);
    struct sockaddr_storage ss;
    return ip_sockaddr(cl->host, cl->port, &ss) > 0; /* numeric, never resolved */
}

int cluster_start(struct app *app)
{
    const struct config *cfg = app->cfg;
    if (!cfg->cluster.redis || !*cfg->cluster.redis)
        return 0;
    struct cluster *cl = xcalloc(1, sizeof *cl);
    cl->app = app;
    cl->logged = -1;
    cl->retry_ms = RETRY_FIRST_MS;
    snprintf(cl->addr, sizeof cl->addr, "%s", cfg->cluster.redis);
    snprintf(cl->state, sizeof cl->state, "%s", app->draining ? "draining" : "active");
    cl->retry = su_timer_create(su_root_task(app->root), 0);
    cl->watch = su_timer_create(su_root_task(app->root), 0);
    cl->tick = su_timer_create(su_root_task(app->root), 0);
    cl->deliver = su_timer_create(su_root_task(app->root), 0);
    if (!cl->retry || !cl->watch || !cl->tick || !cl->deliver) {
        log_error("redis: cannot create its timers");
        su_timer_destroy(cl->retry);
        su_timer_destroy(cl->watch);
        su_timer_destroy(cl->tick);
        su_timer_destroy(cl->deliver);
        free(cl);
        return -1;
    }
    app->cluster = cl;
    if (!parse_addr(cl, cfg->cluster.redis)) {
        log_error("redis at %s: cluster.redis must name a numeric IP address (no DNS on the "
                  "control thread): staying disconnected",
                  cl->addr);
        cl->link = LINK_OFF;
        return 0;
    }
    log_info("cluster: node %s, redis at %s, lease %d s", cfg->node, cl->addr, cfg->cluster.lease);
    connect_now(cl);
    tick_arm(cl);
    return 0;
}

void cluster_stop(struct app *app)
{
    struct cluster *cl = app ? app->cluster : NULL;
    if (!cl)
        return;
    for (struct req *rq = cl->reqs; rq; rq = rq->next)
        rq->cancelled = true;
    if (cl->ac && cl->link == LINK_UP) {
        /* the node's sessions still listed and the node itself: written
         * once, without waiting for anything */
        for (struct call *c = call_first(app->calls); c; c = c->next)
            if (c->connected_event)
                del_session(cl, c->id, c->room_name);
        /* out of `nodes` before its key goes: a reaper never sees a
         * member without a lease */
        char k[160];
        key(k, sizeof k, "node", app->cfg->node);
        SEND(cl, K_IGNORE, NULL, NULL, NULL, "SREM", "nodes", app->cfg->node);
        SEND(cl, K_IGNORE, NULL, NULL, NULL, "DEL", k);
        int done = 0;
        if (redisBufferWrite(&cl->ac->c, &done) == REDIS_ERR || !done)
            log_warn("redis at %s: could not write the node's removal at stop", cl->addr);
    }
    cl->stopping = true;
    redisAsyncContext *ac = cl->ac;
    cl->ac = NULL;
    if (ac)
        redisAsyncFree(ac); /* NULL replies: commands, reaps and requests let go */
    while (cl->reaps)
        reap_free(cl, cl->reaps);
    while (cl->reqs) {
        struct req *rq = cl->reqs;
        cl->reqs = rq->next;
        req_free(rq);
    }
    su_timer_destroy(cl->retry);
    su_timer_destroy(cl->watch);
    su_timer_destroy(cl->tick);
    su_timer_destroy(cl->deliver);
    app->cluster = NULL;
    free(cl);
}

bool cluster_redis_up(const struct app *app)
{
    return app && app->cluster && app->cluster->link == LINK_UP;
}

unsigned long long cluster_sessions_reaped(const struct app *app)
{
    return app && app->cluster ? app->cluster->reaped : 0;
}

void cluster_set_state(struct app *app, const char *state)
{
    struct cluster *cl = app ? app->cluster : NULL;
    if (!cl || !state)
        return;
    snprintf(cl->state, sizeof cl->state, "%s", state);
    char k[160];
    key(k, sizeof k, "node", app->cfg->node);
    SEND(cl, K_IGNORE, NULL, NULL, NULL, "HSET", k, "state", cl->state);
}

void cluster_session_put(struct app *app, const struct call *c, const char *state)
{
    struct cluster *cl = app ? app->cluster : NULL;
    if (cl && c)
        put_session(cl, c, state);
}

void cluster_session_moved(struct app *app, const struct call *c, const char *old_room)
{
    struct cluster *cl = app ? app->cluster : NULL;
    if (!cl || !c)
        return;
    put_session(cl, c, "connected");
    if (old_room && *old_room && (!c->room_name || strcmp(old_room, c->room_name) != 0)) {
        char k[160];
        key(k, sizeof k, "room", old_room);
        SEND(cl, K_IGNORE, NULL, NULL, NULL, "SREM", k, c->id);
    }
}

void cluster_session_del(struct app *app, const struct call *c)
{
    struct cluster *cl = app ? app->cluster : NULL;
    if (cl && c)
        del_session(cl, c->id, c->room_name);
}

int cluster_node_api(struct app *app, const char *node, cluster_node_f cb, void *arg)
{
    struct cluster *cl = app ? app->cluster : NULL;
    if (!cl || !node || !cb || cl->stopping)
        return -1;
    struct req *rq = req_new(cl, arg);
    rq->node_cb = cb;
    rq->node = xstrdup(node);
    char k[160];
    key(k, sizeof k, "node", node);
    bool ok;
    SEND_OK(ok, cl, K_NODE_API, rq, NULL, NULL, "HGET", k, "api");
    if (!ok) {
        rq->failed = true;
        req_done(cl, rq);
    }
    return 0;
}

int cluster_list_sessions(struct app *app, cluster_list_f cb, void *arg)
{
    struct cluster *cl = app ? app->cluster : NULL;
    if (!cl || !cb || cl->stopping)
        return -1;
    struct req *rq = req_new(cl, arg);
    rq->list = true;
    rq->list_cb = cb;
    rq->arr = cJSON_CreateArray();
    bool ok;
    SEND_OK(ok, cl, K_LIST_NODES, rq, NULL, NULL, "SMEMBERS", "nodes");
    if (!ok) {
        rq->failed = true;
        req_done(cl, rq);
    }
    return 0;
}

unsigned cluster_cancel(struct app *app, void *arg)
{
    struct cluster *cl = app ? app->cluster : NULL;
    unsigned n = 0;
    if (!cl)
        return 0;
    for (struct req *rq = cl->reqs; rq; rq = rq->next)
        if (rq->arg == arg && !rq->cancelled) {
            rq->cancelled = true;
            n++;
        }
    return n;
}
