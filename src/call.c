/* call.c - the call table (hash by session id plus a list for iteration)
 * and the ending of a whole call. */
#include "call.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "hash.h"
#include "leg.h"
#include "log.h"
#include "random.h"
#include "xalloc.h"

#include <sofia-sip/su_wait.h>

#define BUCKETS 8192

/* The call table of one instance (app->calls). */
struct calls {
    struct call *buckets[BUCKETS];
    struct call *all;
    size_t count;
};

struct calls *calls_create(void) { return xcalloc(1, sizeof(struct calls)); }

void calls_destroy(struct calls *t)
{
    /* its calls are freed by their owner (bridge_destroy) first */
    free(t);
}

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

struct call *call_new(struct calls *t, const char *node)
{
    struct call *c = xcalloc(1, sizeof *c);
    c->table = t;
    char uuid[40];
    make_uuid(uuid, sizeof uuid);
    snprintf(c->id, sizeof c->id, "%.50s-%s", node, uuid);
    c->started = time(NULL);

    unsigned h = hash(c->id);
    c->hnext = t->buckets[h];
    t->buckets[h] = c;
    c->next = t->all;
    if (t->all)
        t->all->prev = c;
    t->all = c;
    t->count++;
    return c;
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
    struct calls *t = c->table;
    unsigned h = hash(c->id);
    for (struct call **p = &t->buckets[h]; *p; p = &(*p)->hnext)
        if (*p == c) {
            *p = c->hnext;
            break;
        }
    if (c->prev)
        c->prev->next = c->next;
    else
        t->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    t->count--;

    /* each leg_free() unlinks the leg, so these empty the call */
    while (c->zombies)
        leg_free(c->zombies);
    leg_free(c->caller);
    leg_free(c->room);
    leg_free(c->target);
    free(c->room_name);
    free(c->dialout_extension);
    if (c->dialout_plan) {
        struct dialout_plan *p = c->dialout_plan;
        su_timer_destroy(p->ring);
        for (size_t i = 0; i < p->n; i++)
            free(p->gws[i]);
        free(p->gws);
        free(p->headers);
        free((char *)p->offer);
        free(p->trunk);
        free(p->number);
        free(p);
    }
    free(c->room_uri);
    free(c->from);
    free(c->sip_call_id);
    free(c->from_hdr);
    free(c->to);
    free(c->sip_headers);
    free(c);
}

struct call *call_find(const struct calls *t, const char *id)
{
    for (struct call *c = t->buckets[hash(id)]; c; c = c->hnext)
        if (strcmp(c->id, id) == 0)
            return c;
    return NULL;
}

size_t call_count(const struct calls *t) { return t->count; }
struct call *call_first(const struct calls *t) { return t->all; }

void call_hangup(struct call *c, int status, const char *phrase)
{
    c->ended = true;
    leg_hangup(c->caller, status, phrase);
    leg_hangup(c->room, status, phrase);
    leg_hangup(c->target, 487, "Request Terminated");
}

void call_hangup_all(struct calls *t, int status, const char *phrase, const char *reason)
{
    for (struct call *c = t->all; c; c = c->next) {
        if (!c->end_reason)
            c->end_reason = reason;
        call_hangup(c, status, phrase);
    }
}
