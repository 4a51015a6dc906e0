/* ratelimit.h - per-source token buckets for new INVITEs (flood control
 * before any call state is made). Fixed memory: sources hash into a table
 * of buckets; a colliding newcomer takes the bucket over, which can only
 * ever give a flooder fewer tokens, never more than `burst`. */
#ifndef SIPXFER_RATELIMIT_H
#define SIPXFER_RATELIMIT_H

#include <stdbool.h>
#include <sys/socket.h>

struct ratelimit;

struct ratelimit *ratelimit_create(unsigned buckets);
void ratelimit_destroy(struct ratelimit *rl);

/* One request from sa at time now (seconds, monotonic). rate: tokens per
 * second (<= 0: unlimited); burst: bucket size. */
bool ratelimit_allow(struct ratelimit *rl, const struct sockaddr *sa, double rate, double burst,
                     double now);

/* The same for a request that costs `cost` tokens (at least 1), so that a
 * source sending expensive requests (large bodies) runs out sooner. A cost
 * above burst is charged as burst: from a full bucket any request passes. */
bool ratelimit_allow_cost(struct ratelimit *rl, const struct sockaddr *sa, double rate,
                          double burst, double cost, double now);

#endif
