/* router.c - trunk source check and room selection. */
#include "router.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/url.h>

#include "config.h"

bool cidr_parse(const char *text, struct cidr *out)
{
    char buf[64];
    if (!text || strlen(text) >= sizeof buf)
        return false;
    strcpy(buf, text);

    int prefix = -1;
    char *slash = strchr(buf, '/');
    if (slash) {
        *slash = '\0';
        char *end;
        if (!slash[1] || strspn(slash + 1, "0123456789") != strlen(slash + 1))
            return false; /* digits only: strtol would take " 8" or "+8" */
        long n = strtol(slash + 1, &end, 10);
        if (*end || n < 0 || n > 128)
            return false;
        prefix = (int)n;
    }

    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        if (prefix > 32)
            return false;
        out->prefix = prefix < 0 ? 32 : prefix;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->prefix = prefix < 0 ? 128 : prefix;
    } else {
        return false;
    }
    return true;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0)
        return false;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((a[bytes] & mask) != (b[bytes] & mask))
            return false;
    }
    return true;
}

bool cidr_match(const struct cidr *net, const struct sockaddr *sa)
{
    uint8_t addr[16];
    int family;

    if (sa->sa_family == AF_INET) {
        family = AF_INET;
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            family = AF_INET;
            memcpy(addr, &a6->s6_addr[12], 4);
        } else {
            family = AF_INET6;
            memcpy(addr, a6, 16);
        }
    } else {
        return false;
    }
    return family == net->family && prefix_equal(addr, net->addr, net->prefix);
}

const struct trunk_cfg *router_trunk_for(const struct config *cfg, const struct sockaddr *sa)
{
    for (size_t i = 0; i < cfg->ntrunks; i++)
        for (size_t j = 0; j < cfg->trunks[i].nsources; j++)
            if (cidr_match(&cfg->trunks[i].sources[j], sa))
                return &cfg->trunks[i];
    return NULL;
}

/* host and port of a sip:/sips: URI, the port made explicit. */
static bool uri_hostport(const char *uri, char *host, size_t hostlen, char *port, size_t portlen)
{
    char buf[512];
    if (!uri || snprintf(buf, sizeof buf, "%s", uri) >= (int)sizeof buf)
        return false;
    url_t url[1];
    if (url_d(url, buf) < 0 || !url->url_host || (url->url_type != url_sip &&
                                                   url->url_type != url_sips))
        return false;
    snprintf(host, hostlen, "%s", url->url_host);
    snprintf(port, portlen, "%s",
             url->url_port && *url->url_port ? url->url_port
                                             : url->url_type == url_sips ? "5061" : "5060");
    return true;
}

const struct trunk_cfg *router_trunk_for_uri(const struct config *cfg, const char *uri)
{
    char host[256], port[16];
    if (!uri_hostport(uri, host, sizeof host, port, sizeof port))
        return NULL;
    for (size_t i = 0; i < cfg->ntrunks; i++)
        for (size_t j = 0; j < cfg->trunks[i].ngateways; j++) {
            char gh[256], gp[16];
            if (uri_hostport(cfg->trunks[i].gateways[j], gh, sizeof gh, gp, sizeof gp) &&
                strcasecmp(gh, host) == 0 && strcmp(gp, port) == 0)
                return &cfg->trunks[i];
        }
    return NULL;
}

const struct room_cfg *router_room_by_name(const struct config *cfg, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < cfg->nrooms; i++)
        if (strcmp(cfg->rooms[i].name, name) == 0)
            return &cfg->rooms[i];
    return NULL;
}

const struct room_cfg *router_room_for(const struct config *cfg, const char *ruri_user)
{
    if (!ruri_user || !*ruri_user)
        return NULL;
    const struct room_cfg *room = router_room_by_name(cfg, ruri_user);
    if (room)
        return room;
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (strcmp(cfg->routes[i].user, ruri_user) == 0)
            return router_room_by_name(cfg, cfg->routes[i].room);
    return NULL;
}

bool cidr_list_match(const struct cidr *nets, size_t n, const struct sockaddr *sa)
{
    for (size_t i = 0; i < n; i++)
        if (cidr_match(&nets[i], sa))
            return true;
    return false;
}

socklen_t ip_sockaddr(const char *host, int port, struct sockaddr_storage *out)
{
    char h[INET6_ADDRSTRLEN];
    size_t n = host ? strlen(host) : 0;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof h || port <= 0 || port > 65535)
        return 0;
    memcpy(h, host, n);
    h[n] = '\0';
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, h, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return sizeof *v4;
    }
    if (inet_pton(AF_INET6, h, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        return sizeof *v6;
    }
    return 0;
}
