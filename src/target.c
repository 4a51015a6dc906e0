/* target.c - transfer target normaliser and allow-list matcher.
 *
 * Defensive by design: the text comes from API clients and (later) SIP
 * peers. Anything that is not plainly a sip:/sips: URI with a host or an
 * E.164 number is refused, and so is every byte that could smuggle a header
 * (CR, LF, NUL, other controls) and every URI header that is not X-. */
#include "target.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/url.h>

#include "config.h"
#include "router.h"

int target_allowed(const struct config *cfg, const char *text)
{
    for (size_t i = 0; i < cfg->transfer.nallow; i++)
        if (fnmatch(cfg->transfer.allow[i], text, FNM_CASEFOLD) == 0)
            return 1;
    return 0;
}

static int is_e164(const char *s)
{
    if (s[0] != '+' || s[1] < '1' || s[1] > '9')
        return 0;
    size_t n = strlen(s + 1);
    if (n < 6 || n > 15)
        return 0;
    for (const char *p = s + 1; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    return 1;
}

static int hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode into out; refuses controls (CR/LF/NUL included). */
static int unescape(const char *in, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int h = hex(in[i + 1]), l = hex(in[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = h * 16 + l;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f)
            return -1;
        if (o + 1 >= outlen)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int header_name_ok(const char *n)
{
    if (strncasecmp(n, "X-", 2) != 0 || !n[2])
        return 0;
    for (const char *p = n; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return 0;
    return 1;
}

static enum target_result parse_headers(const char *q, struct target *out, char *err,
                                        size_t errlen)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        if (!eq || eq == q) {
            snprintf(err, errlen, "URI header must be Name=value");
            return TARGET_INVALID;
        }
        char name[64], value[200];
        if (unescape(q, (size_t)(eq - q), name, sizeof name) < 0 ||
            unescape(eq + 1, len - (size_t)(eq - q) - 1, value, sizeof value) < 0) {
            snprintf(err, errlen, "URI header too long or holds control characters");
            return TARGET_INVALID;
        }
        if (!header_name_ok(name)) {
            snprintf(err, errlen, "only X- headers may be passed in the URI (got \"%.40s\")", name);
            return TARGET_INVALID;
        }
        if (out->nheaders >= TARGET_MAX_HEADERS) {
            snprintf(err, errlen, "at most %d URI headers", TARGET_MAX_HEADERS);
            return TARGET_INVALID;
        }
        snprintf(out->headers[out->nheaders++], sizeof out->headers[0], "%s: %s", name, value);
        q += len;
        if (*q == '&')
            q++;
    }
    return TARGET_OK;
}

static int same_host(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0 || ((strcmp(a, "localhost") == 0 || strcmp(a, "127.0.0.1") == 0) &&
                                     (strcmp(b, "localhost") == 0 || strcmp(b, "127.0.0.1") == 0));
}

enum target_result target_parse(const struct config *cfg, const char *text,
                                 const char *self_host, int self_port, struct target *out,
                                 char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!text || !*text) {
        snprintf(err, errlen, "toEndPoint is empty");
        return TARGET_INVALID;
    }
    size_t len = strlen(text);
    if (len >= sizeof out->uri) {
        snprintf(err, errlen, "toEndPoint is longer than %zu bytes", sizeof out->uri - 1);
        return TARGET_INVALID;
    }
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            snprintf(err, errlen, "toEndPoint holds spaces or control characters");
            return TARGET_INVALID;
        }

    if (text[0] == '+') {
        if (!is_e164(text)) {
            snprintf(err, errlen, "\"%.40s\" is not an E.164 number (+ and 7 to 15 digits)", text);
            return TARGET_INVALID;
        }
        const char *gw = NULL;
        for (size_t i = 0; i < cfg->ntrunks && !gw; i++)
            if (cfg->trunks[i].gateway && *cfg->trunks[i].gateway)
                gw = cfg->trunks[i].gateway;
        if (!gw) {
            snprintf(err, errlen, "no trunk has a gateway for E.164 numbers");
            return TARGET_INVALID;
        }
        if (!target_allowed(cfg, text)) {
            snprintf(err, errlen, "toEndPoint \"%s\" is not allowed by transfer.allow", text);
            return TARGET_FORBIDDEN;
        }
        char gwbuf[512];
        snprintf(gwbuf, sizeof gwbuf, "%s", gw);
        url_t url[1];
        if (url_d(url, gwbuf) < 0 || !url->url_host) {
            snprintf(err, errlen, "trunk gateway \"%s\" is not usable", gw);
            return TARGET_INVALID;
        }
        out->kind = TARGET_PSTN;
        snprintf(out->number, sizeof out->number, "%s", text);
        snprintf(out->uri, sizeof out->uri, "sip:%s@%s%s%s;user=phone", text, url->url_host,
                 url->url_port ? ":" : "", url->url_port ? url->url_port : "");
        return TARGET_OK;
    }

    if (strncasecmp(text, "sip:", 4) != 0 && strncasecmp(text, "sips:", 5) != 0) {
        snprintf(err, errlen, "toEndPoint must be a sip: URI or an E.164 number");
        return TARGET_INVALID;
    }

    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    char *q = strchr(buf, '?');
    if (q)
        *q++ = '\0';
    char base[512];
    snprintf(base, sizeof base, "%s", buf);

    url_t url[1];
    if (url_d(url, buf) < 0 || (url->url_type != url_sip && url->url_type != url_sips) ||
        !url->url_host || !*url->url_host) {
        snprintf(err, errlen, "\"%.60s\" is not a SIP URI with a host", base);
        return TARGET_INVALID;
    }
    for (const char *p = url->url_host; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-[]:", *p)) {
            snprintf(err, errlen, "bad host in \"%.60s\"", base);
            return TARGET_INVALID;
        }
    if (url->url_port) {
        char *end;
        long port = strtol(url->url_port, &end, 10);
        if (*end || port < 1 || port > 65535) {
            snprintf(err, errlen, "bad port in \"%.60s\"", base);
            return TARGET_INVALID;
        }
    }
    if (q && parse_headers(q, out, err, errlen) != TARGET_OK)
        return TARGET_INVALID;

    if (cfg->rooms_domain && strcasecmp(url->url_host, cfg->rooms_domain) == 0) {
        const struct room_cfg *room = router_room_by_name(cfg, url->url_user);
        if (!room) {
            snprintf(err, errlen, "no room named \"%.60s\"", url->url_user ? url->url_user : "");
            return TARGET_INVALID;
        }
        out->kind = TARGET_ROOM;
        snprintf(out->room, sizeof out->room, "%s", room->name);
        snprintf(out->uri, sizeof out->uri, "%s", room->uri);
        return TARGET_OK;
    }
    /* A room's own URI names the room too. */
    for (size_t i = 0; i < cfg->nrooms; i++)
        if (strcasecmp(cfg->rooms[i].uri, base) == 0) {
            out->kind = TARGET_ROOM;
            snprintf(out->room, sizeof out->room, "%s", cfg->rooms[i].name);
            snprintf(out->uri, sizeof out->uri, "%s", cfg->rooms[i].uri);
            return TARGET_OK;
        }

    int port = url->url_port ? atoi(url->url_port) : (url->url_type == url_sips ? 5061 : 5060);
    if (self_host && same_host(url->url_host, self_host) && port == self_port) {
        snprintf(err, errlen, "toEndPoint points back at sipxferd itself");
        return TARGET_INVALID;
    }
    if (!target_allowed(cfg, base)) {
        snprintf(err, errlen, "toEndPoint \"%.80s\" is not allowed by transfer.allow", base);
        return TARGET_FORBIDDEN;
    }
    out->kind = TARGET_SIP;
    snprintf(out->uri, sizeof out->uri, "%s", base);
    return TARGET_OK;
}
