/* call.c - call table (hash by session id plus a list for iteration). */
#include "call.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "dtmf.h"
#include "hash.h"
#include "log.h"
#include "random.h"
#include "relay.h"
#include "transfer.h"

#define BUCKETS 8192

static struct call *buckets[BUCKETS];
static struct call *all;
static size_t count;

static unsigned hash(const char *s) { return hash_str(s) % BUCKETS; }

static void make_uuid(char *out, size_t len)
{
    unsigned char b[16];
    random_bytes(b, sizeof b);
    b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
    b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
    snprintf(out, len,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

struct call *call_new(const char *node)
{
    struct call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    char uuid[40];
    make_uuid(uuid, sizeof uuid);
    snprintf(c->id, sizeof c->id, "%.50s-%s", node, uuid);
    c->started = time(NULL);

    unsigned h = hash(c->id);
    c->hnext = buckets[h];
    buckets[h] = c;
    c->next = all;
    if (all)
        all->prev = c;
    all = c;
    count++;
    return c;
}

void leg_free(struct leg *leg)
{
    if (!leg)
        return;
    dtmf_cancel(leg->dtmf); /* it sends through leg->ep */
    su_timer_destroy(leg->response_timer);
    relay_ep_free(leg->ep);
    free(leg->sdp_out);
    free(leg->sdp_in);
    free(leg->uri);
    free(leg->media_nets);
    free(leg);
}

static bool gone(const struct leg *leg)
{
    return !leg || leg->state == LEG_GONE;
}

bool call_is_over(const struct call *c)
{
    return gone(c->caller) && gone(c->room) && gone(c->target) && !c->zombies;
}

void call_free(struct call *c)
{
    unsigned h = hash(c->id);
    for (struct call **p = &buckets[h]; *p; p = &(*p)->hnext)
        if (*p == c) {
            *p = c->hnext;
            break;
        }
    if (c->prev)
        c->prev->next = c->next;
    else
        all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    count--;

    leg_free(c->caller);
    leg_free(c->room);
    leg_free(c->target);
    while (c->zombies) {
        struct leg *z = c->zombies;
        c->zombies = z->znext;
        leg_free(z);
    }
    transfer_free(c->xfer);
    free(c->room_name);
    free(c->room_uri);
    free(c->from);
    free(c->sip_call_id);
    free(c->from_hdr);
    free(c->to);
    free(c->sip_headers);
    free(c);
}

struct call *call_find(const char *id)
{
    for (struct call *c = buckets[hash(id)]; c; c = c->hnext)
        if (strcmp(c->id, id) == 0)
            return c;
    return NULL;
}

size_t call_count(void) { return count; }
struct call *call_first(void) { return all; }

struct leg *leg_new(struct call *call, enum leg_role role)
{
    struct leg *leg = calloc(1, sizeof *leg);
    if (!leg)
        return NULL;
    leg->call = call;
    leg->role = role;
    uint64_t r;
    random_bytes(&r, sizeof r);
    leg->origin.id = r >> 1; /* keep it positive for peers that parse signed */
    leg->origin.version = 1;
    return leg;
}

struct leg *leg_peer(const struct leg *leg)
{
    struct call *c = leg->call;
    if (leg->detached)
        return NULL;
    if (leg == c->caller)
        return c->room;
    if (leg == c->room)
        return c->caller;
    return NULL; /* a transfer target is bridged to nobody until it answers */
}

const char *leg_role_name(enum leg_role role)
{
    switch (role) {
    case LEG_CALLER:
        return "caller";
    case LEG_ROOM:
        return "room";
    case LEG_TARGET:
        return "target";
    }
    return "?";
}

const char *leg_far_name(enum leg_far far)
{
    switch (far) {
    case FAR_TRUNK:
        return "trunk";
    case FAR_ROOM:
        return "room";
    case FAR_PSTN:
        return "PSTN gateway";
    case FAR_SIP:
        return "external SIP";
    case FAR_UNKNOWN:
        break;
    }
    return "unknown";
}
