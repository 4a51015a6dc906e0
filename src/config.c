/* config.c - load and validate the configuration file.
 *
 * Every accepted name is listed in the schema tables below; anything else is
 * refused with "file:line: unknown key 'x'" so a typo never silently falls
 * back to a default. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/url.h>

#include "target.h"
#include "xalloc.h"

struct ctx {
    const char *path;
    char *err;
    size_t errlen;
};

static int fail(struct ctx *c, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct ctx *c, const config_setting_t *s, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s:%d: %s", c->path, s ? (int)config_setting_source_line(s) : 0,
             msg);
    return -1;
}

/* Dotted path of a setting, for messages: "sip.listen", "trunks[0].name". */
static void setting_path(const config_setting_t *s, char *buf, size_t len)
{
    const config_setting_t *chain[16];
    int n = 0;
    for (const config_setting_t *p = s; p && !config_setting_is_root(p) && n < 16;
         p = config_setting_parent(p))
        chain[n++] = p;
    buf[0] = '\0';
    size_t used = 0;
    for (int i = n - 1; i >= 0; i--) {
        const char *name = config_setting_name(chain[i]);
        int w;
        if (name)
            w = snprintf(buf + used, len - used, "%s%s", used ? "." : "", name);
        else
            w = snprintf(buf + used, len - used, "[%d]", config_setting_index(chain[i]));
        if (w < 0 || (size_t)w >= len - used)
            return;
        used += (size_t)w;
    }
}

static int check_members(struct ctx *c, const config_setting_t *group, const char *const *allowed)
{
    int n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(m);
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (name && strcmp(name, *a) == 0)
                ok = true;
        if (!ok) {
            char p[128];
            setting_path(m, p, sizeof p);
            return fail(c, m, "unknown key '%s'", p);
        }
    }
    return 0;
}

static const config_setting_t *member(const config_setting_t *g, const char *name)
{
    return g ? config_setting_get_member(g, name) : NULL;
}

static int get_string(struct ctx *c, const config_setting_t *g, const char *name, bool required,
                      const char *def, char **out)
{
    const config_setting_t *s = member(g, name);
    if (!s) {
        if (required)
            return fail(c, g, "missing key '%s'", name);
        *out = def ? xstrdup(def) : NULL;
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        char p[128];
        setting_path(s, p, sizeof p);
        return fail(c, s, "'%s' must be a string", p);
    }
    *out = xstrdup(config_setting_get_string(s));
    return 0;
}

static int get_int(struct ctx *c, const config_setting_t *g, const char *name, int def, int min,
                   int max, int *out)
{
    const config_setting_t *s = member(g, name);
    char p[128];
    if (!s) {
        *out = def;
        return 0;
    }
    setting_path(s, p, sizeof p);
    if (config_setting_type(s) != CONFIG_TYPE_INT)
        return fail(c, s, "'%s' must be an integer", p);
    int v = config_setting_get_int(s);
    if (v < min || v > max)
        return fail(c, s, "'%s' = %d is out of range [%d, %d]", p, v, min, max);
    *out = v;
    return 0;
}

static int get_bool(struct ctx *c, const config_setting_t *g, const char *name, bool def,
                    bool *out)
{
    const config_setting_t *s = member(g, name);
    if (!s) {
        *out = def;
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        char p[128];
        setting_path(s, p, sizeof p);
        return fail(c, s, "'%s' must be true or false", p);
    }
    *out = config_setting_get_bool(s);
    return 0;
}

static void free_strv(char **v, size_t n);

static int get_string_array(struct ctx *c, const config_setting_t *g, const char *name,
                            char ***out, size_t *count)
{
    const config_setting_t *s = member(g, name);
    *out = NULL;
    *count = 0;
    if (!s)
        return 0;
    char p[128];
    setting_path(s, p, sizeof p);
    if (config_setting_type(s) != CONFIG_TYPE_ARRAY && config_setting_type(s) != CONFIG_TYPE_LIST)
        return fail(c, s, "'%s' must be a list of strings", p);
    int n = config_setting_length(s);
    *out = xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            free_strv(*out, *count);
            *out = NULL;
            *count = 0;
            return fail(c, e, "'%s' must be a list of strings", p);
        }
        (*out)[i] = xstrdup(config_setting_get_string(e));
        (*count)++;
    }
    return 0;
}

static const config_setting_t *get_group(struct ctx *c, const config_setting_t *g, const char *name,
                                         const char *const *allowed, int *rc)
{
    const config_setting_t *s = member(g, name);
    if (!s)
        return NULL;
    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        *rc = fail(c, s, "'%s' must be a group { ... }", name);
        return NULL;
    }
    if (check_members(c, s, allowed) < 0)
        *rc = -1;
    return s;
}

/* A SIP URI we can send to: sip/sips with a host. */
static bool sip_uri_ok(const char *text)
{
    if (!text)
        return false;
    url_t url[1];
    char buf[512];
    if (strlen(text) >= sizeof buf)
        return false;
    strcpy(buf, text);
    if (url_d(url, buf) < 0)
        return false;
    if (url->url_type != url_sip && url->url_type != url_sips)
        return false;
    if (!url->url_host || !*url->url_host)
        return false;
    if (url->url_port) {
        char *end;
        long port = strtol(url->url_port, &end, 10);
        if (*end || port < 1 || port > 65535)
            return false;
    }
    return true;
}

/* NULL when sipxferd can send to uri, else why not: sip.listen opens UDP
 * and TCP only, and nua would fail every call to a TLS (or other
 * transport's) URI with 503 "No transport" that --check-config passed. */
static const char *uri_transport_why(const struct config *cfg, const char *text)
{
    char buf[512], tp[16];
    url_t url[1];
    if (snprintf(buf, sizeof buf, "%s", text) >= (int)sizeof buf || url_d(url, buf) < 0)
        return NULL; /* sip_uri_ok's to refuse */
    bool tls = cfg->sips_listen != NULL;
    if (url->url_type == url_sips && !tls)
        return "sips: needs TLS: sipxferd listens on udp or tcp only until sip.listen has a "
               "sips: URI (and sip.tls)";
    if (!url->url_params || !url_param(url->url_params, "transport", tp, sizeof tp))
        return NULL;
    if (strcasecmp(tp, "tls") == 0 && !tls)
        return "transport=tls needs TLS: sipxferd listens on udp or tcp only until sip.listen "
               "has a sips: URI (and sip.tls)";
    if (strcasecmp(tp, "udp") != 0 && strcasecmp(tp, "tcp") != 0 && strcasecmp(tp, "tls") != 0)
        return "transport must be udp or tcp (or tls, with a sips: URI in sip.listen)";
    return NULL;
}

static bool hostport_ok(const char *text)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text)
        return false;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    return *end == '\0' && port > 0 && port < 65536;
}

static const char *const top_keys[] = {"node", "drain_timeout", "sip", "api", "media", "trunks",
                                       "rooms", "routes", "webhooks", "transfer", "cluster", NULL};
static const char *const cluster_keys[] = {"redis", "lease", "peers", NULL};
static const char *const peer_keys[] = {"node", "api", NULL};
static const char *const tls_keys[] = {"certificate", "ca", "verify_peer", NULL};
static const char *const sip_keys[] = {"listen", "advertise", "tls",
                                       "max_calls",
                                       "rate_limit",
                                       "tcp_max_connections",
                                       "tcp_max_per_source",
                                       "tcp_idle_timeout",
                                       "trusted_proxies",
                                       NULL};
static const char *const api_keys[] = {"listen", "tokens", "idle_timeout", NULL};
static const char *const media_keys[] = {"mode",    "address", "advertise", "port_min", "port_max",
                                         "timeout", "hold_timeout", "srtp", "warm_pairs", "kernel",
                                         "kernel_interfaces", NULL};
static const char *const trunk_keys[] = {"name",          "sources",       "gateway",
                                         "gateways",      "media_sources", "auth",
                                         "register",      "prefixes",      "number_format",
                                         "identity",      "diversion",     "options_interval",
                                         "refer_target",  NULL};
static const char *const trunk_auth_keys[] = {"username", "password", "realm", NULL};
static const char *const rooms_keys[] = {"domain", "list", "resolver", "response_timeout",
                                         "sources", NULL};
static const char *const room_keys[] = {"name", "uri", NULL};
static const char *const route_keys[] = {"user", "room", NULL};
static const char *const webhook_keys[] = {"url", "secret", NULL};
static const char *const transfer_keys[] = {"ring_timeout", "notify_timeout", "allow",
                                            "refer_fallback", NULL};

/* <where>.<name> (where: "sip", "rooms", "trunks[2]"): an optional list of
 * "address[/prefix]" strings. */
static int get_cidr_list(struct ctx *c, const config_setting_t *t, const char *where,
                         const char *name, struct cidr **out, size_t *count)
{
    char **v;
    size_t n;
    *out = NULL;
    *count = 0;
    if (get_string_array(c, t, name, &v, &n) < 0)
        return -1;
    int rc = 0;
    *out = xcalloc(n + 1, sizeof **out);
    for (size_t j = 0; j < n && rc == 0; j++) {
        if (cidr_parse(v[j], &(*out)[j]))
            (*count)++;
        else
            rc = fail(c, member(t, name), "'%s.%s' has a bad address/prefix \"%s\"", where, name,
                      v[j]);
    }
    free_strv(v, n);
    return rc;
}

/* One listen URI: "sip:HOST:PORT" or "sips:HOST:PORT", no user, no
 * parameters (HOST may be an IPv6 reference, 0.0.0.0 or [::]). */
static int listen_uri(struct ctx *c, const config_setting_t *s, const char *text,
                      struct config *cfg)
{
    bool sips = strncasecmp(text, "sips:", 5) == 0;
    if (!sip_uri_ok(text) || strchr(text, '@') || strchr(text, ';') || strchr(text, '?'))
        return fail(c, s, "'sip.listen' entries must be \"sip:HOST:PORT\" (UDP and TCP) or "
                          "\"sips:HOST:PORT\" (TLS), got \"%s\"", text);
    char **slot = sips ? &cfg->sips_listen : &cfg->sip_listen;
    if (*slot)
        return fail(c, s, "'sip.listen' holds a second %s URI (\"%s\"): sofia's nua takes one "
                          "sip: and one sips: address", sips ? "sips:" : "sip:", text);
    *slot = xstrdup(text);
    return 0;
}

static int load_listen(struct ctx *c, const config_setting_t *sip, struct config *cfg)
{
    const config_setting_t *s = member(sip, "listen");
    if (!s) {
        cfg->sip_listen = xstrdup("sip:127.0.0.1:5060");
    } else if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        if (listen_uri(c, s, config_setting_get_string(s), cfg) < 0)
            return -1;
    } else if (config_setting_type(s) == CONFIG_TYPE_ARRAY ||
               config_setting_type(s) == CONFIG_TYPE_LIST) {
        int n = config_setting_length(s);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(e) != CONFIG_TYPE_STRING)
                return fail(c, e, "'sip.listen' must be a URI or a list of URIs");
            if (listen_uri(c, e, config_setting_get_string(e), cfg) < 0)
                return -1;
        }
    } else {
        return fail(c, s, "'sip.listen' must be a URI or a list of URIs");
    }
    if (!cfg->sip_listen)
        return fail(c, s ? s : sip, "'sip.listen' needs a sip: URI (UDP and TCP); sips: (TLS) "
                                    "comes beside it");
    if (get_string(c, sip, "advertise", false, NULL, &cfg->sip_advertise) < 0)
        return -1;
    if (cfg->sip_advertise) {
        struct cidr tmp;
        const char *a = cfg->sip_advertise;
        bool ok = *a && strlen(a) < 100 && !strpbrk(a, " \t\r\n;:@<>\"/?") ;
        if (!ok && cidr_parse(a, &tmp) && !strchr(a, '/'))
            ok = true; /* an IPv6 address */
        if (!ok)
            return fail(c, member(sip, "advertise"),
                        "'sip.advertise' must be an IP address or host name (no port), got \"%s\"",
                        a);
    }
    return 0;
}

/* A PEM file sofia will read at start: it must open, and hold what it is
 * for. Sofia itself would only log and run without TLS. */
static int pem_file_ok(struct ctx *c, const config_setting_t *s, const char *key,
                       const char *path, bool want_key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(c, s, "'sip.tls.%s' %s: %s", key, path, strerror(errno));
    bool has_cert = false, has_key = false;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "-----BEGIN CERTIFICATE-----", 27) == 0)
            has_cert = true;
        else if (strncmp(line, "-----BEGIN ", 11) == 0 && strstr(line, "PRIVATE KEY-----"))
            has_key = true;
    }
    fclose(f);
    if (!has_cert)
        return fail(c, s, "'sip.tls.%s' %s holds no PEM certificate", key, path);
    if (want_key && !has_key)
        return fail(c, s, "'sip.tls.%s' %s holds no PEM private key (sofia wants the key and the "
                          "certificate chain in one file)", key, path);
    return 0;
}

static int load_tls(struct ctx *c, const config_setting_t *sip, struct config *cfg)
{
    int rc = 0;
    const config_setting_t *tls = get_group(c, sip, "tls", tls_keys, &rc);
    if (rc < 0)
        return -1;
    if (!tls) {
        if (cfg->sips_listen)
            return fail(c, sip, "'sip.listen' has a sips: URI but there is no 'sip.tls' group "
                                "(certificate, ca)");
        return 0;
    }
    if (get_string(c, tls, "certificate", true, NULL, &cfg->tls.certificate) < 0 ||
        get_string(c, tls, "ca", true, NULL, &cfg->tls.ca) < 0 ||
        get_bool(c, tls, "verify_peer", false, &cfg->tls.verify_peer) < 0)
        return -1;
    if (pem_file_ok(c, member(tls, "certificate"), "certificate", cfg->tls.certificate, true) < 0 ||
        pem_file_ok(c, member(tls, "ca"), "ca", cfg->tls.ca, false) < 0)
        return -1;
    return 0;
}

/* g.<name>: one of names (values[i] for names[i]); def when absent. */
static int get_choice(struct ctx *c, const config_setting_t *g, const char *name,
                      const char *const *names, const int *values, int def, int *out)
{
    char *v = NULL;
    *out = def;
    if (get_string(c, g, name, false, NULL, &v) < 0)
        return -1;
    if (!v)
        return 0;
    for (size_t i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0) {
            *out = values[i];
            free(v);
            return 0;
        }
    char p[128], list[160] = "";
    setting_path(member(g, name), p, sizeof p);
    for (size_t i = 0, n = 0; names[i]; i++)
        n += (size_t)snprintf(list + n, n < sizeof list ? sizeof list - n : 0, "%s\"%s\"",
                              i ? ", " : "", names[i]);
    int rc = fail(c, member(g, name), "'%s' must be one of %s, got \"%.60s\"", p, list, v);
    free(v);
    return rc;
}

/* Bytes that may not appear in a credential: controls, and what would
 * break sofia's "Digest:\"realm\":user:pass" credential string. */
static bool credential_ok(const char *s, const char *forbidden)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || strchr(forbidden, *p))
            return false;
    return true;
}

static int load_trunk_auth(struct ctx *c, const config_setting_t *t, int i, struct trunk_auth *a)
{
    int rc = 0;
    const config_setting_t *g = get_group(c, t, "auth", trunk_auth_keys, &rc);
    if (rc < 0)
        return -1;
    if (!g)
        return 0;
    if (get_string(c, g, "username", true, NULL, &a->username) < 0 ||
        get_string(c, g, "password", true, NULL, &a->password) < 0 ||
        get_string(c, g, "realm", false, NULL, &a->realm) < 0)
        return -1;
    if (!*a->username || !credential_ok(a->username, ":\"\\"))
        return fail(c, member(g, "username"),
                    "'trunks[%d].auth.username' must be non-empty, without ':', '\"', '\\' or "
                    "control characters",
                    i);
    /* sofia's credential string ends the password at a ':' (measured:
     * "se:cret" is digested as "se"), so such a password could never work */
    if (!credential_ok(a->password, ":"))
        return fail(c, member(g, "password"),
                    "'trunks[%d].auth.password' may not hold ':' (sofia cannot send it) or "
                    "control characters",
                    i);
    if (a->realm && (!*a->realm || !credential_ok(a->realm, "\"\\")))
        return fail(c, member(g, "realm"),
                    "'trunks[%d].auth.realm' must be non-empty, without '\"', '\\' or control "
                    "characters (leave it out to answer any realm)",
                    i);
    return 0;
}

/* One gateway URI of trunks[i] (s: its setting, for the line). */
static int check_gateway(struct ctx *c, const struct config *cfg, const config_setting_t *s, int i, const char *key,
                         const char *gw)
{
    if (!sip_uri_ok(gw))
        return fail(c, s, "'trunks[%d].%s' is not a sip: URI with a host: \"%s\"", i, key, gw);
    const char *why = uri_transport_why(cfg, gw);
    if (why)
        return fail(c, s, "'trunks[%d].%s' \"%s\": %s", i, key, gw, why);
    return 0;
}

static int load_gateways(struct ctx *c, const struct config *cfg, const config_setting_t *t, int i, struct trunk_cfg *tr)
{
    const config_setting_t *one = member(t, "gateway"), *list = member(t, "gateways");
    if (one && list)
        return fail(c, list, "'trunks[%d]' has both 'gateway' and 'gateways': use one", i);
    if (one) {
        char *gw;
        if (get_string(c, t, "gateway", false, NULL, &gw) < 0)
            return -1;
        if (!*gw) { /* "": no gateway, as when the key is left out */
            free(gw);
            return 0;
        }
        tr->gateways = calloc(2, sizeof(char *));
        tr->gateways[0] = gw;
        tr->ngateways = 1;
    } else if (list) {
        if (get_string_array(c, t, "gateways", &tr->gateways, &tr->ngateways) < 0)
            return -1;
        if (tr->ngateways == 0)
            return fail(c, list, "'trunks[%d].gateways' is empty (leave it out for none)", i);
    } else {
        return 0;
    }
    for (size_t j = 0; j < tr->ngateways; j++) {
        const config_setting_t *s = list ? config_setting_get_elem(list, (unsigned)j) : one;
        char key[32];
        if (list)
            snprintf(key, sizeof key, "gateways[%zu]", j);
        else
            snprintf(key, sizeof key, "gateway");
        if (check_gateway(c, cfg, s, i, key, tr->gateways[j]) < 0)
            return -1;
        for (size_t k = 0; k < j; k++)
            if (strcmp(tr->gateways[k], tr->gateways[j]) == 0)
                return fail(c, s, "'trunks[%d].%s' \"%s\" is listed twice", i, key,
                            tr->gateways[j]);
    }
    tr->gateway = tr->gateways[0];
    return 0;
}

static int load_prefixes(struct ctx *c, const config_setting_t *t, int i, struct trunk_cfg *tr)
{
    if (get_string_array(c, t, "prefixes", &tr->prefixes, &tr->nprefixes) < 0)
        return -1;
    for (size_t j = 0; j < tr->nprefixes; j++) {
        const char *p = tr->prefixes[j];
        size_t n = strlen(p);
        if (n < 2 || n > 16 || p[0] != '+' || strspn(p + 1, "0123456789") != n - 1)
            return fail(c, config_setting_get_elem(member(t, "prefixes"), (unsigned)j),
                        "'trunks[%d].prefixes[%zu]' \"%.40s\" is not + and 1 to 15 digits", i, j,
                        p);
    }
    return 0;
}

static const char *const number_format_names[] = {"e164", "national", "tel", NULL};
static const int number_format_values[] = {NUMBER_E164, NUMBER_NATIONAL, NUMBER_TEL};
static const char *const identity_names[] = {"from", "pai", "rpid", NULL};
static const int identity_values[] = {IDENTITY_FROM, IDENTITY_PAI, IDENTITY_RPID};
static const char *const refer_target_names[] = {"sip", "tel", NULL};
static const int refer_target_values[] = {REFER_TARGET_SIP, REFER_TARGET_TEL};

static int load_trunks(struct ctx *c, const config_setting_t *root, struct config *cfg)
{
    const config_setting_t *list = member(root, "trunks");
    if (!list)
        return 0;
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return fail(c, list, "'trunks' must be a list ( { ... }, ... )");
    int n = config_setting_length(list);
    cfg->trunks = xcalloc((size_t)n + 1, sizeof *cfg->trunks);
    for (int i = 0; i < n; i++) {
        const config_setting_t *t = config_setting_get_elem(list, (unsigned)i);
        struct trunk_cfg *tr = &cfg->trunks[i];
        cfg->ntrunks++;
        if (config_setting_type(t) != CONFIG_TYPE_GROUP)
            return fail(c, t, "'trunks[%d]' must be a group { ... }", i);
        if (check_members(c, t, trunk_keys) < 0 || get_string(c, t, "name", true, NULL, &tr->name) < 0 ||
            load_gateways(c, cfg, t, i, tr) < 0)
            return -1;
        char where[32];
        snprintf(where, sizeof where, "trunks[%d]", i);
        if (get_cidr_list(c, t, where, "sources", &tr->sources, &tr->nsources) < 0)
            return -1;
        int nf, id, rt;
        if (get_cidr_list(c, t, where, "media_sources", &tr->media_sources, &tr->nmedia_sources) < 0 ||
            load_trunk_auth(c, t, i, &tr->auth) < 0 ||
            get_bool(c, t, "register", false, &tr->registration) < 0 ||
            load_prefixes(c, t, i, tr) < 0 ||
            get_choice(c, t, "number_format", number_format_names, number_format_values,
                       NUMBER_E164, &nf) < 0 ||
            get_choice(c, t, "identity", identity_names, identity_values, IDENTITY_FROM, &id) < 0 ||
            get_bool(c, t, "diversion", false, &tr->diversion) < 0 ||
            get_int(c, t, "options_interval", 0, 0, 86400, &tr->options_interval) < 0 ||
            get_choice(c, t, "refer_target", refer_target_names, refer_target_values,
                       REFER_TARGET_SIP, &rt) < 0)
            return -1;
        tr->number_format = (enum trunk_number_format)nf;
        tr->identity = (enum trunk_identity)id;
        tr->refer_target = (enum trunk_refer_target)rt;
        if (tr->registration && tr->ngateways == 0)
            return fail(c, member(t, "register"),
                        "'trunks[%d].register' is true but the trunk has no gateway", i);
        if (tr->registration && !tr->auth.username)
            return fail(c, member(t, "register"),
                        "'trunks[%d].register' is true but the trunk has no auth", i);
        for (int j = 0; j < i; j++)
            if (strcmp(cfg->trunks[j].name, tr->name) == 0)
                return fail(c, t, "duplicate trunk name \"%s\"", tr->name);
    }
    return 0;
}

static int load_rooms(struct ctx *c, const config_setting_t *root, struct config *cfg)
{
    int rc = 0;
    const config_setting_t *g = get_group(c, root, "rooms", rooms_keys, &rc);
    if (rc < 0)
        return -1;
    if (get_string(c, g, "domain", false, "rooms.sipxfer.test", &cfg->rooms_domain) < 0 ||
        get_string(c, g, "resolver", false, "", &cfg->resolver) < 0 ||
        get_int(c, g, "response_timeout", 32, 1, 300, &cfg->room_response_timeout) < 0)
        return -1;
    if (*cfg->resolver && strncmp(cfg->resolver, "http://", 7) != 0 &&
        strncmp(cfg->resolver, "https://", 8) != 0)
        return fail(c, member(g, "resolver"), "'rooms.resolver' must be an http(s) URL or \"\"");
    if (get_cidr_list(c, g, "rooms", "sources", &cfg->room_sources, &cfg->nroom_sources) < 0)
        return -1;
    const config_setting_t *list = member(g, "list");
    if (!list)
        return 0;
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return fail(c, list, "'rooms.list' must be a list ( { ... }, ... )");
    int n = config_setting_length(list);
    cfg->rooms = xcalloc((size_t)n + 1, sizeof *cfg->rooms);
    for (int i = 0; i < n; i++) {
        const config_setting_t *r = config_setting_get_elem(list, (unsigned)i);
        struct room_cfg *room = &cfg->rooms[i];
        cfg->nrooms++;
        if (config_setting_type(r) != CONFIG_TYPE_GROUP)
            return fail(c, r, "'rooms.list[%d]' must be a group { ... }", i);
        if (check_members(c, r, room_keys) < 0 ||
            get_string(c, r, "name", true, NULL, &room->name) < 0 ||
            get_string(c, r, "uri", true, NULL, &room->uri) < 0)
            return -1;
        if (!*room->name)
            return fail(c, r, "'rooms.list[%d].name' is empty", i);
        for (const char *p = room->name; *p; p++)
            if (!isalnum((unsigned char)*p) && !strchr("-_.+", *p))
                return fail(c, member(r, "name"),
                            "'rooms.list[%d].name' \"%s\" may hold only letters, digits and -_.+", i,
                            room->name);
        if (!sip_uri_ok(room->uri))
            return fail(c, member(r, "uri"), "'rooms.list[%d].uri' is not a sip: URI with a host: \"%s\"",
                        i, room->uri);
        const char *why = uri_transport_why(cfg, room->uri);
        if (why)
            return fail(c, member(r, "uri"), "'rooms.list[%d].uri' \"%s\": %s", i, room->uri, why);
        for (int j = 0; j < i; j++)
            if (strcmp(cfg->rooms[j].name, room->name) == 0)
                return fail(c, r, "duplicate room name \"%s\"", room->name);
    }
    return 0;
}

/* cluster { redis, lease, peers } (SPEC 13): absent or redis = "" is a
 * single node. Peers are nodes other than this one; their API addresses
 * are literal host:port so forwarding never resolves a name. */
static int load_cluster(struct ctx *c, const config_setting_t *root, struct config *cfg)
{
    int rc = 0;
    const config_setting_t *g = get_group(c, root, "cluster", cluster_keys, &rc);
    if (rc < 0 || get_string(c, g, "redis", false, "", &cfg->cluster.redis) < 0 ||
        get_int(c, g, "lease", 15, 3, 3600, &cfg->cluster.lease) < 0)
        return -1;
    if (*cfg->cluster.redis && !hostport_ok(cfg->cluster.redis))
        return fail(c, member(g, "redis"), "'cluster.redis' must be \"HOST:PORT\" or \"\", got \"%s\"",
                    cfg->cluster.redis);
    const config_setting_t *list = member(g, "peers");
    if (!list)
        return 0;
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return fail(c, list, "'cluster.peers' must be a list ( { node = ...; api = ...; }, ... )");
    int n = config_setting_length(list);
    cfg->cluster.peers = xcalloc((size_t)n + 1, sizeof *cfg->cluster.peers);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        struct peer_cfg *p = &cfg->cluster.peers[i];
        cfg->cluster.npeers++;
        if (config_setting_type(e) != CONFIG_TYPE_GROUP)
            return fail(c, e, "'cluster.peers[%d]' must be a group { ... }", i);
        if (check_members(c, e, peer_keys) < 0 || get_string(c, e, "node", true, NULL, &p->node) < 0 ||
            get_string(c, e, "api", true, NULL, &p->api) < 0)
            return -1;
        if (!*p->node || strpbrk(p->node, " \t\r\n\"/"))
            return fail(c, member(e, "node"), "'cluster.peers[%d].node' must be a non-empty word", i);
        struct cidr tmp;
        char host[128];
        const char *colon = strrchr(p->api, ':');
        if (!hostport_ok(p->api) || (size_t)(colon - p->api) >= sizeof host)
            return fail(c, member(e, "api"), "'cluster.peers[%d].api' must be \"ADDRESS:PORT\", got \"%s\"",
                        i, p->api);
        memcpy(host, p->api, (size_t)(colon - p->api));
        host[colon - p->api] = '\0';
        if (!cidr_parse(host, &tmp) || strchr(host, '/'))
            return fail(c, member(e, "api"),
                        "'cluster.peers[%d].api' must name an IP address (no DNS on the control "
                        "loop), got \"%s\"", i, p->api);
    }
    return 0;
}

static int load_routes(struct ctx *c, const config_setting_t *root, struct config *cfg)
{
    const config_setting_t *list = member(root, "routes");
    if (!list)
        return 0;
    if (config_setting_type(list) != CONFIG_TYPE_LIST)
        return fail(c, list, "'routes' must be a list ( { ... }, ... )");
    int n = config_setting_length(list);
    cfg->routes = xcalloc((size_t)n + 1, sizeof *cfg->routes);
    for (int i = 0; i < n; i++) {
        const config_setting_t *r = config_setting_get_elem(list, (unsigned)i);
        struct route_cfg *route = &cfg->routes[i];
        cfg->nroutes++;
        if (config_setting_type(r) != CONFIG_TYPE_GROUP)
            return fail(c, r, "'routes[%d]' must be a group { ... }", i);
        if (check_members(c, r, route_keys) < 0 ||
            get_string(c, r, "user", true, NULL, &route->user) < 0 ||
            get_string(c, r, "room", true, NULL, &route->room) < 0)
            return -1;
        if (!router_room_by_name(cfg, route->room))
            return fail(c, member(r, "room"), "'routes[%d].room' names no room in rooms.list: \"%s\"",
                        i, route->room);
    }
    return 0;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
    struct ctx c = {.path = path, .err = err, .errlen = errlen};
    config_t lc;
    config_init(&lc);
    struct config *cfg = xcalloc(1, sizeof *cfg);
    cfg->path = xstrdup(path);

    if (config_read_file(&lc, path) != CONFIG_TRUE) {
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        else
            snprintf(err, errlen, "%s:%d: syntax error: %s",
                     config_error_file(&lc) ? config_error_file(&lc) : path,
                     config_error_line(&lc), config_error_text(&lc));
        goto bad;
    }

    const config_setting_t *root = config_root_setting(&lc);
    int rc = 0;
    if (check_members(&c, root, top_keys) < 0)
        goto bad;

    if (get_string(&c, root, "node", false, "sipxfer", &cfg->node) < 0 ||
        get_int(&c, root, "drain_timeout", 30, 0, 86400, &cfg->drain_timeout) < 0)
        goto bad;
    if (!*cfg->node || strpbrk(cfg->node, " \t\r\n\"")) {
        fail(&c, member(root, "node"), "'node' must be a non-empty word");
        goto bad;
    }

    const config_setting_t *sip = get_group(&c, root, "sip", sip_keys, &rc);
    if (rc < 0 || load_listen(&c, sip, cfg) < 0 || load_tls(&c, sip, cfg) < 0 ||
        get_int(&c, sip, "max_calls", 10000, 1, 1000000, &cfg->max_calls) < 0 ||
        get_int(&c, sip, "rate_limit", 0, 0, 1000000, &cfg->rate_limit) < 0 ||
        get_int(&c, sip, "tcp_max_connections", 1024, 1, 1000000, &cfg->tcp_max_connections) < 0 ||
        get_int(&c, sip, "tcp_max_per_source", 32, 1, 1000000, &cfg->tcp_max_per_source) < 0 ||
        get_int(&c, sip, "tcp_idle_timeout", 30, 1, 3600, &cfg->tcp_idle_timeout) < 0)
        goto bad;
    if (get_cidr_list(&c, sip, "sip", "trusted_proxies", &cfg->trusted_proxies,
                      &cfg->ntrusted_proxies) < 0)
        goto bad;

    const config_setting_t *api = get_group(&c, root, "api", api_keys, &rc);
    if (rc < 0 || get_string(&c, api, "listen", false, "127.0.0.1:8080", &cfg->api_listen) < 0 ||
        get_string_array(&c, api, "tokens", &cfg->tokens, &cfg->ntokens) < 0 ||
        get_int(&c, api, "idle_timeout", 15, 1, 3600, &cfg->api_idle_timeout) < 0)
        goto bad;
    if (!hostport_ok(cfg->api_listen)) {
        fail(&c, member(api, "listen") ? member(api, "listen") : api,
             "'api.listen' must be \"HOST:PORT\", got \"%s\"", cfg->api_listen);
        goto bad;
    }
    for (size_t i = 0; i < cfg->ntokens; i++)
        if (!*cfg->tokens[i]) {
            fail(&c, member(api, "tokens"), "'api.tokens' holds an empty token");
            goto bad;
        }

    const config_setting_t *media = get_group(&c, root, "media", media_keys, &rc);
    char *mode = NULL;
    if (rc < 0 || get_string(&c, media, "mode", false, "relay", &mode) < 0)
        goto bad;
    if (strcmp(mode, "relay") == 0)
        cfg->media_mode = MEDIA_RELAY;
    else if (strcmp(mode, "passthrough") == 0)
        cfg->media_mode = MEDIA_PASSTHROUGH;
    else {
        fail(&c, member(media, "mode"), "'media.mode' must be \"relay\" or \"passthrough\", got \"%s\"",
             mode);
        free(mode);
        goto bad;
    }
    free(mode);
    char *srtp = NULL;
    if (get_string(&c, media, "srtp", false, "off", &srtp) < 0)
        goto bad;
    if (strcmp(srtp, "off") == 0)
        cfg->media_srtp = SRTP_OFF;
    else if (strcmp(srtp, "allow") == 0)
        cfg->media_srtp = SRTP_ALLOW;
    else if (strcmp(srtp, "require") == 0)
        cfg->media_srtp = SRTP_REQUIRE;
    else {
        fail(&c, member(media, "srtp"),
             "'media.srtp' must be \"off\", \"allow\" or \"require\", got \"%s\"", srtp);
        free(srtp);
        goto bad;
    }
    free(srtp);
    char *kernel = NULL;
    if (get_string(&c, media, "kernel", false, "auto", &kernel) < 0)
        goto bad;
    if (strcmp(kernel, "auto") == 0)
        cfg->media_kernel = true;
    else if (strcmp(kernel, "off") == 0)
        cfg->media_kernel = false;
    else {
        fail(&c, member(media, "kernel"), "'media.kernel' must be \"auto\" or \"off\", got \"%s\"",
             kernel);
        free(kernel);
        goto bad;
    }
    free(kernel);
    if (get_string_array(&c, media, "kernel_interfaces", &cfg->media_kernel_interfaces,
                         &cfg->nmedia_kernel_interfaces) < 0)
        goto bad;
    if (cfg->nmedia_kernel_interfaces > CONFIG_MAX_KERNEL_INTERFACES) {
        fail(&c, member(media, "kernel_interfaces"),
             "'media.kernel_interfaces' names %zu interfaces, at most %d",
             cfg->nmedia_kernel_interfaces, CONFIG_MAX_KERNEL_INTERFACES);
        goto bad;
    }
    for (size_t i = 0; i < cfg->nmedia_kernel_interfaces; i++) {
        const char *n = cfg->media_kernel_interfaces[i];
        /* what the kernel accepts as a name: 1-15 bytes, no '/', ':' or space */
        if (!*n || strlen(n) >= 16 || strcspn(n, "/: \t\r\n") != strlen(n)) {
            fail(&c, member(media, "kernel_interfaces"),
                 "'media.kernel_interfaces' holds \"%s\", which is not an interface name", n);
            goto bad;
        }
    }
    if (get_string(&c, media, "address", false, "127.0.0.1", &cfg->media_address) < 0 ||
        get_string(&c, media, "advertise", false, NULL, &cfg->media_advertise) < 0 ||
        get_int(&c, media, "port_min", 20000, 1024, 65534, &cfg->port_min) < 0 ||
        get_int(&c, media, "port_max", 29999, 1025, 65535, &cfg->port_max) < 0 ||
        get_int(&c, media, "timeout", 60, 0, 86400, &cfg->media_timeout) < 0 ||
        get_int(&c, media, "hold_timeout", 3600, 0, 604800, &cfg->media_hold_timeout) < 0 ||
        get_int(&c, media, "warm_pairs", 64, 0, 16384, &cfg->media_warm_pairs) < 0)
        goto bad;
    {
        struct cidr tmp;
        if (!cidr_parse(cfg->media_address, &tmp) || strchr(cfg->media_address, '/')) {
            fail(&c, member(media, "address"), "'media.address' must be an IP address, got \"%s\"",
                 cfg->media_address);
            goto bad;
        }
        if (cfg->media_advertise &&
            (!cidr_parse(cfg->media_advertise, &tmp) || strchr(cfg->media_advertise, '/'))) {
            fail(&c, member(media, "advertise"),
                 "'media.advertise' must be an IP address (the one written into SDP), got \"%s\"",
                 cfg->media_advertise);
            goto bad;
        }
    }
    if (cfg->port_max - cfg->port_min < 3) {
        fail(&c, member(media, "port_max") ? member(media, "port_max") : media,
             "'media.port_max' must be at least port_min + 3 (one RTP/RTCP pair per side)");
        goto bad;
    }

    if (load_trunks(&c, root, cfg) < 0 || load_rooms(&c, root, cfg) < 0 ||
        load_routes(&c, root, cfg) < 0 || load_cluster(&c, root, cfg) < 0)
        goto bad;

    const config_setting_t *wh = get_group(&c, root, "webhooks", webhook_keys, &rc);
    if (rc < 0 || get_string(&c, wh, "url", false, "", &cfg->webhook_url) < 0 ||
        get_string(&c, wh, "secret", false, "", &cfg->webhook_secret) < 0)
        goto bad;
    if (*cfg->webhook_url && strncmp(cfg->webhook_url, "http://", 7) != 0 &&
        strncmp(cfg->webhook_url, "https://", 8) != 0) {
        fail(&c, member(wh, "url"), "'webhooks.url' must be an http(s) URL or \"\"");
        goto bad;
    }

    const config_setting_t *xfer = get_group(&c, root, "transfer", transfer_keys, &rc);
    if (rc < 0 ||
        get_int(&c, xfer, "ring_timeout", 30, 1, 3600, &cfg->transfer.ring_timeout) < 0 ||
        get_int(&c, xfer, "notify_timeout", 32, 1, 3600, &cfg->transfer.notify_timeout) < 0 ||
        get_bool(&c, xfer, "refer_fallback", false, &cfg->transfer.refer_fallback) < 0 ||
        get_string_array(&c, xfer, "allow", &cfg->transfer.allow, &cfg->transfer.nallow) < 0)
        goto bad;
    if (!member(xfer, "allow")) {
        /* Deny by default: with no allow list no external target is allowed. */
        cfg->transfer.allow = xcalloc(1, sizeof(char *));
    }
    for (size_t i = 0; i < cfg->transfer.nallow; i++) {
        /* a pattern the matcher cannot read would silently match nothing */
        char why[160];
        if (target_pattern_check(cfg->transfer.allow[i], why, sizeof why) < 0) {
            fail(&c, config_setting_get_elem(member(xfer, "allow"), (unsigned)i),
                 "'transfer.allow[%zu]' \"%.80s\" is not a pattern: %s", i,
                 cfg->transfer.allow[i], why);
            goto bad;
        }
    }

    config_destroy(&lc);
    return cfg;

bad:
    config_destroy(&lc);
    config_free(cfg);
    return NULL;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->node);
    free(cfg->sip_listen);
    free(cfg->sips_listen);
    free(cfg->sip_advertise);
    free(cfg->tls.certificate);
    free(cfg->tls.ca);
    free(cfg->media_advertise);
    free(cfg->api_listen);
    free_strv(cfg->tokens, cfg->ntokens);
    free(cfg->media_address);
    free_strv(cfg->media_kernel_interfaces, cfg->nmedia_kernel_interfaces);
    for (size_t i = 0; i < cfg->ntrunks; i++) {
        free(cfg->trunks[i].name);
        free(cfg->trunks[i].sources);
        free_strv(cfg->trunks[i].gateways, cfg->trunks[i].ngateways);
        free(cfg->trunks[i].media_sources);
        free(cfg->trunks[i].auth.username);
        free(cfg->trunks[i].auth.password);
        free(cfg->trunks[i].auth.realm);
        free_strv(cfg->trunks[i].prefixes, cfg->trunks[i].nprefixes);
    }
    free(cfg->trunks);
    free(cfg->rooms_domain);
    free(cfg->room_sources);
    for (size_t i = 0; i < cfg->nrooms; i++) {
        free(cfg->rooms[i].name);
        free(cfg->rooms[i].uri);
    }
    free(cfg->rooms);
    free(cfg->resolver);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        free(cfg->routes[i].user);
        free(cfg->routes[i].room);
    }
    free(cfg->routes);
    free(cfg->webhook_url);
    free(cfg->webhook_secret);
    free_strv(cfg->transfer.allow, cfg->transfer.nallow);
    free(cfg->trusted_proxies);
    free(cfg->cluster.redis);
    for (size_t i = 0; i < cfg->cluster.npeers; i++) {
        free(cfg->cluster.peers[i].node);
        free(cfg->cluster.peers[i].api);
    }
    free(cfg->cluster.peers);
    free(cfg);
}

int config_sip_hostport(const struct config *cfg, char *host, size_t hostlen, int *port)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", cfg->sip_listen);
    url_t url[1];
    if (url_d(url, buf) < 0 || !url->url_host)
        return -1;
    snprintf(host, hostlen, "%s", url->url_host);
    *port = url->url_port ? atoi(url->url_port) : 5060;
    return 0;
}

const char *config_sip_public_host(const struct config *cfg, char *buf, size_t len)
{
    int port;
    if (cfg->sip_advertise) {
        /* an IPv6 address goes into a URI as a reference */
        if (strchr(cfg->sip_advertise, ':') && cfg->sip_advertise[0] != '[')
            snprintf(buf, len, "[%s]", cfg->sip_advertise);
        else
            snprintf(buf, len, "%s", cfg->sip_advertise);
        return buf;
    }
    if (config_sip_hostport(cfg, buf, len, &port) < 0)
        snprintf(buf, len, "127.0.0.1");
    return buf;
}

const char *config_media_public(const struct config *cfg)
{
    return cfg->media_advertise ? cfg->media_advertise : cfg->media_address;
}

const struct trunk_cfg *config_trunk_by_name(const struct config *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->ntrunks; i++)
        if (cfg->trunks[i].name && strcmp(cfg->trunks[i].name, name) == 0)
            return &cfg->trunks[i];
    return NULL;
}

const char *config_peer_api(const struct config *cfg, const char *node)
{
    for (size_t i = 0; cfg && node && i < cfg->cluster.npeers; i++)
        if (strcmp(cfg->cluster.peers[i].node, node) == 0)
            return cfg->cluster.peers[i].api;
    return NULL;
}
