/* resolver.c - dynamic room lookup over HTTP (see resolver.h). */
#include "sofia_types.h"

#include "resolver.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "b2bua.h"
#include "call.h"
#include "config.h"
#include "http_client.h"
#include "log.h"
#include "target.h"

/* Lookups in flight: their callbacks never run once the HTTP client is
 * destroyed, so resolver_cleanup() frees what they would have. */
struct lookup {
    struct app *app;
    char *id;
    struct lookup *next, *prev;
};
static struct lookup *pending;

static void lookup_unlink(struct lookup *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        pending = l->next;
    if (l->next)
        l->next->prev = l->prev;
    free(l->id);
    free(l);
}

void resolver_cleanup(void)
{
    while (pending)
        lookup_unlink(pending);
}

static void refuse(struct app *app, struct call *c, const char *why)
{
    call_log(c, LOG_WARN, "resolver: %s; answering 480", why);
    b2bua_refuse_call(app->b2bua, c, 480, "Temporarily Unavailable");
}

static void on_answer(void *arg, long status, const char *body, size_t len, const char *error)
{
    struct lookup *l = arg;
    struct app *app = l->app;
    struct call *c = call_find(l->id);
    lookup_unlink(l);
    /* The caller may have cancelled while we waited. */
    if (!c || c->ended || c->caller->state != LEG_EARLY || c->caller->hangup_sent)
        return;

    char why[300];
    if (status < 200 || status > 299) {
        snprintf(why, sizeof why, "lookup failed: %s",
                 status ? "HTTP error status" : (error ? error : "no answer"));
        if (status)
            snprintf(why, sizeof why, "lookup answered HTTP %ld", status);
        refuse(app, c, why);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *uri = cJSON_GetObjectItemCaseSensitive(j, "sipUri");
    if (!cJSON_IsString(uri)) {
        cJSON_Delete(j);
        refuse(app, c, "answer has no \"sipUri\" string");
        return;
    }
    struct target t;
    enum target_result r =
        target_parse(app->cfg, uri->valuestring, app->sip_host, app->sip_port, &t, why, sizeof why);
    if (r == TARGET_FORBIDDEN)
        log_security("target-refused", "-", c->id, "resolver sipUri %.200s not allowed", uri->valuestring);
    cJSON_Delete(j);
    if (r != TARGET_OK || t.kind == TARGET_PSTN) {
        refuse(app, c, r == TARGET_OK ? "sipUri is a phone number, not a room" : why);
        return;
    }
    char name[128];
    if (t.kind == TARGET_ROOM) {
        snprintf(name, sizeof name, "%s", t.room);
    } else {
        /* A room we do not know by name: call it by the URI's user part. */
        const char *user = t.uri + (strncmp(t.uri, "sips:", 5) == 0 ? 5 : 4);
        size_t n = strcspn(user, "@;?");
        if (!strchr(user, '@'))
            n = strcspn(user, ":;?");
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), user);
    }
    call_log(c, LOG_INFO, "resolver: bridging to %s (room %s)", t.uri, name);
    b2bua_dial_room(app->b2bua, c, name, t.uri);
}

void resolver_start(struct app *app, struct call *c)
{
    struct config *cfg = app->cfg;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "From", c->from ? c->from : "");
    cJSON_AddStringToObject(body, "To", c->to ? c->to : "");
    cJSON_AddStringToObject(body, "callId", c->id);
    cJSON_AddStringToObject(body, "callDomain", cfg->rooms_domain ? cfg->rooms_domain : "");
    cJSON *hdrs = c->sip_headers ? cJSON_Parse(c->sip_headers) : NULL;
    cJSON_AddItemToObject(body, "sipHeaders", hdrs ? hdrs : cJSON_CreateObject());
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);

    struct lookup *l = calloc(1, sizeof *l);
    l->app = app;
    l->id = strdup(c->id);
    l->next = pending;
    if (pending)
        pending->prev = l;
    pending = l;
    call_log(c, LOG_INFO, "resolver: asking %s", cfg->resolver);
    if (!app->http || http_post(app->http, cfg->resolver, "application/json", text, strlen(text),
                                NULL, RESOLVER_TIMEOUT_MS, on_answer, l) < 0) {
        lookup_unlink(l);
        refuse(app, c, "cannot start the HTTP request");
    }
    free(text);
}
