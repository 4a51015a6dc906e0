/* hash.h - FNV-1a, the one hash for the daemon's small tables (calls by
 * session id, webhook events by session, rate-limit buckets by source). */
#ifndef SIPXFER_HASH_H
#define SIPXFER_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t hash_bytes(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static inline uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

#endif
