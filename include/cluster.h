/* cluster.h - Redis as the cluster's directory and node registry (SPEC 13).
 *
 * One hiredis async connection to cfg->cluster.redis, driven by app->root
 * (su_wait registrations for its socket, su_timers for the rest): nothing
 * here blocks the control thread. The address must be a numeric IP (no
 * DNS on the control thread): a name is logged as an error at start and
 * the module stays disconnected for good.
 *
 * Every command is bounded: a reply that has not come 1000 ms after its
 * command was sent takes Redis for down; the connection is dropped and
 * made again after 1 s, then after up to 5 s between tries. Each change is
 * logged once ("redis at X: up", WARN "redis at X: down (reason)").
 *
 * Keys (<me> is cfg->node):
 *   node:<n>     hash {api, sip, state ("active"|"draining"), calls} with
 *                EXPIRE cfg->cluster.lease, refreshed every lease/3 s
 *   nodes        set of node names
 *   sess:<id>    hash {node, room, from, started (unix s), type
 *                ("dialin"|"dialout"), state}
 *   nodesess:<n> set of the session ids node n owns
 *   room:<room>  set of the session ids in a room
 *   reap:<n>     the lock of the node reaping n (SET NX EX 30)
 *
 * While Redis is down, writes are dropped, not queued. On every
 * (re)connect the node is registered again, every live local call that
 * has its connected event is put again and ids in nodesess:<me> that are
 * no longer local are removed with their sess:/room: entries.
 *
 * Every lease/3 s the node also looks for nodes in `nodes` without a
 * node:<n> key (lease expired); the one node that takes reap:<n> posts
 * dialin.stopped / dialout.stopped with reason "node-lost" for each of
 * its sessions and removes them, then n itself.
 *
 * Everything is called on the control thread. With cfg->cluster.redis ""
 * (a single node) every function is a no-op (lookups return -1). */
#ifndef SIPXFER_CLUSTER_H
#define SIPXFER_CLUSTER_H

#include <stdbool.h>

struct app;
struct call;
struct cJSON;

/* Start the module on app->root (app->cluster). 0 when running or when
 * clustering is off; -1 on failure (out of memory, logged). A Redis that is
 * not there yet is not a failure: the module keeps trying. */
int cluster_start(struct app *app);
/* Clean stop (app_destroy, before the calls are freed): a best-effort
 * removal of the live local sessions, SREM nodes <me> and DEL node:<me>,
 * written in one non-blocking write without waiting for the answers, then
 * everything is freed. Lookups still in flight are dropped: their callbacks
 * are NOT called. Not to be called from a lookup's callback. NULL module ok. */
void cluster_stop(struct app *app);

/* Whether the connection to Redis is up now (the metric). */
bool cluster_redis_up(const struct app *app);
/* Sessions of lost nodes this node ended (node-lost) since it started. */
unsigned long long cluster_sessions_reaped(const struct app *app);

/* node:<me>.state, written at once ("active" or "draining"); remembered
 * for later registrations. */
void cluster_set_state(struct app *app, const char *state);

/* Write the call into the directory (sess:<id>, nodesess:<me>, room:<room>)
 * with this state ("connected", ...); dropped while Redis is down. */
void cluster_session_put(struct app *app, const struct call *c, const char *state);
/* The call is in another room now (a transfer): its sess:<id> names the
 * new room and the id moves from room:<old_room> to room:<new>. */
void cluster_session_moved(struct app *app, const struct call *c, const char *old_room);
/* Remove the call from the directory (all three keys). */
void cluster_session_del(struct app *app, const struct call *c);

/* Lookups. A callback is always called from the loop, never from inside
 * the function that started it, and at most once; never after
 * cluster_stop() or cluster_cancel(). A function returning -1 could not
 * start the lookup (clustering off, out of memory): its callback is never
 * called. */

/* result 1: the node has a lease, api is its API address ("host:port");
 * 0: no lease (the node is gone), api NULL; -1: Redis unavailable, api NULL
 * -- unless cfg->cluster.peers names the node: then 1 with the peer's api.
 * api is valid only during the callback. */
typedef void (*cluster_node_f)(void *arg, int result, const char *api);
int cluster_node_api(struct app *app, const char *node, cluster_node_f cb, void *arg);

/* ok 1: sessions is a cJSON array of {sessionId, node, room, caller, state,
 * startedAt (unix s, a number)} of the sessions of every node in `nodes`
 * (this one included); ok 0: Redis is unavailable or failed midway,
 * sessions NULL. The array is freed once the callback returns: detach
 * (cJSON_DetachItemFromArray) or copy what is to be kept. */
typedef void (*cluster_list_f)(void *arg, int ok, struct cJSON *sessions);
int cluster_list_sessions(struct app *app, cluster_list_f cb, void *arg);

/* Drop every lookup started with this arg (whichever function): their
 * callbacks are not called. For an owner freed while its lookup runs.
 * Returns how many were dropped. */
unsigned cluster_cancel(struct app *app, void *arg);

#endif
