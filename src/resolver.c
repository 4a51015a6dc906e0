/* resolver.c - dynamic room lookup over HTTP (see resolver.h). */
#include "sofia_types.h"

#include "resolver.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "call.h"
#include "config.h"
#include "http_client.h"
#include "log.h"
#include "target.h"
#include "xalloc.h"

/* Lookups in flight: their callbacks never run once the HTTP client is
 * destroyed, so resolver_cleanup() frees what they would have. */
struct lookup {
    struct app *app;
    char *id;
    resolver_done_h *done;
    struct lookup *next, *prev;
};
static void lookup_unlink(struct lookup *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else
        l->app->lookups = l->next;
    if (l->next)
        l->next->prev = l->prev;
    free(l->id);
    free(l);
}

void resolver_cleanup(struct app *app)
{
    while (app->lookups)
        lookup_unlink(app->lookups);
}

/* Work out the room from the HTTP answer: its name and URI, or why not. */
static void answer(struct app *app, const char *id, long status, const char *body, size_t len,
                   const char *error, resolver_done_h *done)
{
    char why[300];
    struct resolver_answer a = {0};
    if (status < 200 || status > 299) {
        if (status)
            snprintf(why, sizeof why, "lookup answered HTTP %ld", status);
        else
            snprintf(why, sizeof why, "lookup failed: %s", error ? error : "no answer");
        a.why = why;
        done(app, id, &a);
        return;
    }
    cJSON *j = cJSON_ParseWithLength(body, len);
    const cJSON *uri = cJSON_GetObjectItemCaseSensitive(j, "sipUri");
    if (!cJSON_IsString(uri)) {
        cJSON_Delete(j);
        a.why = "answer has no \"sipUri\" string";
        done(app, id, &a);
        return;
    }
    struct target t;
    enum target_result r =
        target_parse(app->cfg, uri->valuestring, app->sip_host, app->sip_port, &t, why, sizeof why);
    if (r == TARGET_FORBIDDEN)
        log_security("target-refused", "-", id, "resolver sipUri %.200s not allowed",
                     uri->valuestring);
    cJSON_Delete(j);
    if (r != TARGET_OK || t.kind == TARGET_PSTN) {
        a.why = r == TARGET_OK ? "sipUri is a phone number, not a room" : why;
        done(app, id, &a);
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
    a.room = name;
    a.uri = t.uri;
    done(app, id, &a);
}

static void on_answer(void *arg, long status, const char *body, size_t len, const char *error)
{
    struct lookup *l = arg;
    /* unlinked first: done() may start calls, never this lookup again */
    struct app *app = l->app;
    resolver_done_h *done = l->done;
    char id[sizeof ((struct call *)0)->id];
    snprintf(id, sizeof id, "%s", l->id);
    lookup_unlink(l);
    answer(app, id, status, body, len, error, done);
}

void resolver_start(struct app *app, struct call *c, resolver_done_h *done)
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

    struct lookup *l = xcalloc(1, sizeof *l);
    l->app = app;
    l->id = xstrdup(c->id);
    l->done = done;
    l->next = app->lookups;
    if (app->lookups)
        app->lookups->prev = l;
    app->lookups = l;
    call_log(c, LOG_INFO, "resolver: asking %s", cfg->resolver);
    if (!app->http || http_post(app->http, cfg->resolver, "application/json", text, strlen(text),
                                NULL, RESOLVER_TIMEOUT_MS, on_answer, l) < 0) {
        lookup_unlink(l);
        struct resolver_answer a = {.why = "cannot start the HTTP request"};
        done(app, c->id, &a);
    }
    free(text);
}
