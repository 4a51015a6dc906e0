/* target.c - transfer target normaliser and allow-list matcher.
 *
 * Defensive by design: the text comes from API clients and (later) SIP
 * peers. Anything that is not plainly a sip:/sips: URI with a host or an
 * E.164 number is refused, and so is every byte that could smuggle a header
 * (CR, LF, NUL, other controls) and every URI header that is not X-. */
#include "target.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fnmatch.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/url.h>

#include "config.h"
#include "router.h"

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

/* ---- transfer.allow ------------------------------------------------------
 *
 * A pattern is matched against the parts of the candidate as sofia parses
 * it (the same parse nua uses for the Request-URI), never against its
 * text: a glob on the whole string let "sip:*@pbx.example.com" admit
 * "sip:x@127.0.0.1:38091;x=@pbx.example.com", whose '*' ran across the
 * host and into a parameter. */

struct allow_pattern {
    enum { PAT_ANY, PAT_E164, PAT_SIP } kind;
    bool sips;
    const char *user; /* glob on the unescaped user; NULL: any user or none */
    const char *host; /* label glob, or a bracketed IPv6 literal */
    const char *port; /* glob on the port (default 5060/5061); NULL: any */
    char buf[256];
};

static bool chars_in(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
            return false;
    return true;
}

static bool ipv6_literal(const char *h, struct in6_addr *out)
{
    size_t n = strlen(h);
    char in[INET6_ADDRSTRLEN];
    if (n < 3 || h[0] != '[' || h[n - 1] != ']' || n - 2 >= sizeof in)
        return false;
    memcpy(in, h + 1, n - 2);
    in[n - 2] = '\0';
    return inet_pton(AF_INET6, in, out) == 1;
}

/* Host labels: no empty one, except that a host may end in one dot. */
static bool labels_ok(const char *h)
{
    if (!*h || *h == '.')
        return false;
    for (const char *p = h; *p; p++)
        if (*p == '.' && (p[1] == '.' || (p[1] == '\0' && p == h)))
            return false;
    return true;
}

static int pattern_parse(const char *text, struct allow_pattern *pt, char *err, size_t errlen)
{
    memset(pt, 0, sizeof *pt);
    if (strcmp(text, "*") == 0) {
        pt->kind = PAT_ANY;
        return 0;
    }
    if (text[0] == '+') {
        if (!text[1] || strspn(text + 1, "0123456789*?") != strlen(text + 1)) {
            snprintf(err, errlen, "an E.164 pattern is + then digits, * and ?");
            return -1;
        }
        pt->kind = PAT_E164;
        return 0;
    }
    pt->kind = PAT_SIP;
    const char *rest;
    if (strncasecmp(text, "sip:", 4) == 0)
        rest = text + 4;
    else if (strncasecmp(text, "sips:", 5) == 0) {
        rest = text + 5;
        pt->sips = true;
    } else {
        snprintf(err, errlen, "a pattern is *, +digits or a sip:/sips: URI");
        return -1;
    }
    if (strlen(rest) >= sizeof pt->buf) {
        snprintf(err, errlen, "pattern longer than %zu bytes", sizeof pt->buf - 1);
        return -1;
    }
    memcpy(pt->buf, rest, strlen(rest) + 1);
    char *hp = pt->buf;
    char *at = strchr(hp, '@');
    if (at) {
        *at = '\0';
        pt->user = hp;
        hp = at + 1;
        if (!*pt->user || strpbrk(pt->user, ":@") || !chars_in(pt->user, "-_.!~*'()&=+$,;?/%[]")) {
            snprintf(err, errlen, "bad user part \"%.40s\" (one @, no password)", pt->user);
            return -1;
        }
    }
    char *colon;
    if (*hp == '[') {
        char *close = strchr(hp, ']');
        colon = close ? close + 1 : NULL;
        if (!close || (*colon && *colon != ':')) {
            snprintf(err, errlen, "bad IPv6 host");
            return -1;
        }
    } else {
        colon = strchr(hp, ':');
    }
    if (colon && *colon == ':') {
        *colon = '\0';
        pt->port = colon + 1;
        if (!*pt->port || strspn(pt->port, "0123456789*?") != strlen(pt->port)) {
            snprintf(err, errlen, "a port is digits, * and ?");
            return -1;
        }
        if (!strpbrk(pt->port, "*?") && (atoi(pt->port) < 1 || atoi(pt->port) > 65535)) {
            snprintf(err, errlen, "port %s out of range", pt->port);
            return -1;
        }
    }
    pt->host = hp;
    struct in6_addr a6;
    if (*hp == '[' ? !ipv6_literal(hp, &a6)
                   : !chars_in(hp, ".-*?") || !labels_ok(hp) || hp[strlen(hp) - 1] == '.') {
        snprintf(err, errlen,
                 "bad host \"%.60s\" (letters, digits, '.', '-', '*', '?' or [IPv6]; no "
                 "parameters or headers)",
                 hp);
        return -1;
    }
    return 0;
}

int target_pattern_check(const char *pattern, char *err, size_t errlen)
{
    struct allow_pattern pt;
    if (!pattern)
        return -1;
    return pattern_parse(pattern, &pt, err, errlen);
}

/* One label glob per candidate label; a leading "*" label stands for one
 * or more labels, so "*.example.com" is every name under example.com. */
static bool host_match(const char *pat, const char *host)
{
    if (strcmp(pat, "*") == 0)
        return true;
    struct in6_addr a, b;
    if (pat[0] == '[' || host[0] == '[')
        return ipv6_literal(pat, &a) && ipv6_literal(host, &b) && memcmp(&a, &b, sizeof a) == 0;
    char p[256], h[256];
    snprintf(p, sizeof p, "%s", pat);
    snprintf(h, sizeof h, "%s", host);
    size_t hl = strlen(h);
    if (hl && h[hl - 1] == '.')
        h[hl - 1] = '\0'; /* the absolute form of the same name */
    char *pl[128], *hlab[128];
    int np = 0, nh = 0;
    for (char *save = NULL, *t = strtok_r(p, ".", &save); t && np < 128; t = strtok_r(NULL, ".", &save))
        pl[np++] = t;
    for (char *save = NULL, *t = strtok_r(h, ".", &save); t && nh < 128; t = strtok_r(NULL, ".", &save))
        hlab[nh++] = t;
    int skip = 0;
    if (strcmp(pl[0], "*") == 0) {
        if (nh < np)
            return false;
        skip = nh - np; /* "*" took labels 0..skip */
        for (int i = 1; i < np; i++)
            if (fnmatch(pl[i], hlab[i + skip], FNM_CASEFOLD) != 0)
                return false;
        return true;
    }
    if (nh != np)
        return false;
    for (int i = 0; i < np; i++)
        if (fnmatch(pl[i], hlab[i], FNM_CASEFOLD) != 0)
            return false;
    return true;
}

/* uri-parameter bytes (RFC 3261 paramchar) and the ';' '=' between them */
static bool params_ok(const char *params)
{
    if (!chars_in(params, "-_.!~*'()[]/:&+$%;="))
        return false;
    for (const char *p = params; p && *p; p = strchr(p, ';'), p = p ? p + 1 : NULL)
        if (strncasecmp(p, "maddr", 5) == 0 && (p[5] == '=' || p[5] == ';' || !p[5]))
            return false; /* would send the request to another host */
    return true;
}

/* The candidate's parts, or false when it is nothing a pattern may match:
 * a password, a user holding '@' (even escaped), a bad host, port or
 * parameter, or maddr. */
static bool candidate_parse(const char *text, char *buf, size_t buflen, url_t *url, char *user,
                            size_t userlen, char *port, size_t portlen)
{
    if (strlen(text) >= buflen)
        return false;
    memcpy(buf, text, strlen(text) + 1);
    if (url_d(url, buf) < 0 || (url->url_type != url_sip && url->url_type != url_sips) ||
        !url->url_host || url->url_password)
        return false;
    struct in6_addr a6;
    const char *h = url->url_host;
    if (*h == '[' ? !ipv6_literal(h, &a6) : !chars_in(h, ".-") || !labels_ok(h))
        return false;
    user[0] = '\0';
    if (url->url_user && (!*url->url_user ||
                          unescape(url->url_user, strlen(url->url_user), user, userlen) < 0 ||
                          strchr(user, '@')))
        return false;
    if (url->url_port) {
        if (!*url->url_port || strspn(url->url_port, "0123456789") != strlen(url->url_port) ||
            strlen(url->url_port) > 5 || atoi(url->url_port) < 1 || atoi(url->url_port) > 65535)
            return false;
        snprintf(port, portlen, "%d", atoi(url->url_port));
    } else {
        snprintf(port, portlen, "%d", url->url_type == url_sips ? 5061 : 5060);
    }
    return !url->url_params || params_ok(url->url_params);
}

int target_pattern_match(const char *pattern, const char *text)
{
    struct allow_pattern pt;
    char err[160];
    if (!pattern || !text || pattern_parse(pattern, &pt, err, sizeof err) < 0)
        return 0;
    if (text[0] == '+')
        return is_e164(text) && (pt.kind == PAT_ANY ||
                                 (pt.kind == PAT_E164 && fnmatch(pattern, text, 0) == 0));
    if (pt.kind == PAT_E164)
        return 0;
    char buf[512], user[256], port[8];
    url_t url[1];
    if (!candidate_parse(text, buf, sizeof buf, url, user, sizeof user, port, sizeof port))
        return 0;
    if (pt.kind == PAT_ANY)
        return 1;
    if (pt.sips != (url->url_type == url_sips))
        return 0;
    if (pt.user && (!url->url_user || fnmatch(pt.user, user, FNM_CASEFOLD) != 0))
        return 0;
    if (pt.port && fnmatch(pt.port, port, 0) != 0)
        return 0;
    return host_match(pt.host, url->url_host);
}

int target_allowed(const struct config *cfg, const char *text)
{
    for (size_t i = 0; i < cfg->transfer.nallow; i++)
        if (target_pattern_match(cfg->transfer.allow[i], text))
            return 1;
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

/* The gateway's scheme, host, port and parameters stay: a
 * ";transport=tcp" gateway is reached over TCP only if the Request-URI
 * still says so. Its user (the number replaces it) and ?headers go, and
 * user=phone is ours whatever the gateway said. */
int target_pstn_uri(const char *gateway, const char *number, char *out, size_t outlen)
{
    char buf[512];
    url_t url[1];
    if (!gateway || !number || snprintf(buf, sizeof buf, "%s", gateway) >= (int)sizeof buf ||
        url_d(url, buf) < 0 || (url->url_type != url_sip && url->url_type != url_sips) ||
        !url->url_host || !*url->url_host)
        return -1;
    int n = snprintf(out, outlen, "%s:%s@%s%s%s", url->url_type == url_sips ? "sips" : "sip",
                     number, url->url_host, url->url_port ? ":" : "",
                     url->url_port ? url->url_port : "");
    for (const char *p = url->url_params; p && *p && n >= 0 && (size_t)n < outlen;) {
        size_t len = strcspn(p, ";");
        if (len && !(len >= 4 && strncasecmp(p, "user", 4) == 0 && (len == 4 || p[4] == '=')))
            n += snprintf(out + n, outlen - (size_t)n, ";%.*s", (int)len, p);
        p += len;
        if (*p == ';')
            p++;
    }
    if (n >= 0 && (size_t)n < outlen)
        n += snprintf(out + n, outlen - (size_t)n, ";user=phone");
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

const struct trunk_cfg *target_trunk_for_number(const struct config *cfg, const char *number)
{
    const struct trunk_cfg *best = NULL;
    long best_len = -2;
    for (size_t i = 0; i < cfg->ntrunks; i++) {
        const struct trunk_cfg *tr = &cfg->trunks[i];
        if (!tr->gateway || !*tr->gateway)
            continue;
        long len = -1; /* no prefixes: any number, below every match */
        if (tr->nprefixes == 0)
            len = -1;
        else {
            len = -2;
            for (size_t j = 0; j < tr->nprefixes; j++) {
                size_t pl = strlen(tr->prefixes[j]);
                if (strncmp(number, tr->prefixes[j], pl) == 0 && (long)pl > len)
                    len = (long)pl;
            }
        }
        if (len > best_len) {
            best = tr;
            best_len = len;
        }
    }
    return best_len >= -1 ? best : NULL;
}

int target_number_uri(const struct trunk_cfg *trunk, const char *number, char *out,
                      size_t outlen, char *route, size_t routelen)
{
    if (route && routelen)
        route[0] = '\0';
    if (!trunk || !trunk->gateway)
        return -1;
    switch (trunk->number_format) {
    case NUMBER_E164:
        return target_pstn_uri(trunk->gateway, number, out, outlen);
    case NUMBER_NATIONAL: {
        char tmp[600];
        if (target_pstn_uri(trunk->gateway, number[0] == '+' ? number + 1 : number, tmp,
                            sizeof tmp) < 0)
            return -1;
        /* a number without its + is no global telephone-subscriber */
        char *up = strstr(tmp, ";user=phone");
        if (up)
            memmove(up, up + 11, strlen(up + 11) + 1);
        return snprintf(out, outlen, "%s", tmp) >= (int)outlen ? -1 : 0;
    }
    case NUMBER_TEL:
        if (!route || snprintf(route, routelen, "<%s;lr>", trunk->gateway) >= (int)routelen)
            return -1;
        return snprintf(out, outlen, "tel:%s", number) >= (int)outlen ? -1 : 0;
    }
    return -1;
}

int target_name_addr(const char *uri, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "<%s>", uri ? uri : "");
    return uri && n > 0 && (size_t)n < outlen ? 0 : -1;
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
        const struct trunk_cfg *trunk = target_trunk_for_number(cfg, text);
        const char *gw = trunk ? trunk->gateway : NULL;
        if (!gw) {
            snprintf(err, errlen, "no trunk has a gateway for %s (trunks[].prefixes)", text);
            return TARGET_INVALID;
        }
        if (!target_allowed(cfg, text)) {
            snprintf(err, errlen, "toEndPoint \"%s\" is not allowed by transfer.allow", text);
            return TARGET_FORBIDDEN;
        }
        if (target_number_uri(trunk, text, out->uri, sizeof out->uri, out->route,
                              sizeof out->route) < 0) {
            snprintf(err, errlen, "trunk gateway \"%s\" is not usable", gw);
            return TARGET_INVALID;
        }
        out->kind = TARGET_PSTN;
        snprintf(out->number, sizeof out->number, "%s", text);
        snprintf(out->trunk, sizeof out->trunk, "%s", trunk->name ? trunk->name : "");
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
