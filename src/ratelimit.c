/* ratelimit.c - see ratelimit.h. */
#include "xalloc.h"
#include "ratelimit.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

struct bucket {
    uint8_t addr[16];
    uint8_t used;
    double tokens;
    double last;
};

struct ratelimit {
    unsigned n;
    struct bucket *b;
};

struct ratelimit *ratelimit_create(unsigned buckets)
{
    struct ratelimit *rl = xcalloc(1, sizeof *rl);
    rl->n = buckets ? buckets : 4096;
    rl->b = xcalloc(rl->n, sizeof *rl->b);
    return rl;
}

void ratelimit_destroy(struct ratelimit *rl)
{
    if (rl) {
        free(rl->b);
        free(rl);
    }
}

/* The address only (no port): one source host, one bucket. */
static void key_of(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff; /* as a v4-mapped v6 address */
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

bool ratelimit_allow(struct ratelimit *rl, const struct sockaddr *sa, double rate, double burst,
                     double now)
{
    return ratelimit_allow_cost(rl, sa, rate, burst, 1.0, now);
}

bool ratelimit_allow_cost(struct ratelimit *rl, const struct sockaddr *sa, double rate,
                          double burst, double cost, double now)
{
    if (rate <= 0)
        return true;
    uint8_t key[16];
    key_of(sa, key);
    struct bucket *b = &rl->b[hash_bytes(key, sizeof key) % rl->n];
    if (!b->used) {
        b->used = 1;
        b->tokens = burst;
        b->last = now;
    }
    /* A colliding newcomer inherits the tokens left in the bucket: sources
     * that share a bucket share one budget, so alternating between them
     * never refills it. */
    memcpy(b->addr, key, 16);
    b->tokens += (now - b->last) * rate;
    if (b->tokens > burst)
        b->tokens = burst;
    b->last = now;
    if (cost < 1.0)
        cost = 1.0;
    if (cost > burst)
        cost = burst;
    if (b->tokens < cost)
        return false;
    b->tokens -= cost;
    return true;
}
