/* router.h - who may send calls in (trunk source check) and which room a call goes to. */
#ifndef SIPXFER_ROUTER_H
#define SIPXFER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct config;
struct trunk_cfg;
struct room_cfg;

struct cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int prefix;
};

/* "a.b.c.d/n", "a.b.c.d", "x::y/n"; returns false on anything else. */
bool cidr_parse(const char *text, struct cidr *out);
bool cidr_match(const struct cidr *net, const struct sockaddr *sa);
/* Whether sa is in one of the n networks. */
bool cidr_list_match(const struct cidr *nets, size_t n, const struct sockaddr *sa);

/* A numeric IPv4/IPv6 address (an IPv6 one may be bracketed, "[::1]") and a
 * port as a socket address; its length, 0 for anything that is not a
 * numeric address (nothing is ever resolved). */
socklen_t ip_sockaddr(const char *host, int port, struct sockaddr_storage *out);

/* The first trunk whose sources contain sa, or NULL. IPv4-mapped IPv6
 * addresses are matched as IPv4. */
const struct trunk_cfg *router_trunk_for(const struct config *cfg, const struct sockaddr *sa);

/* The trunk one of whose gateways is the host (and port) of a SIP URI we are about
 * to call, or NULL: media from that leg follows the trunk's media_sources. */
const struct trunk_cfg *router_trunk_for_uri(const struct config *cfg, const char *uri);

/* Room by name, else by a routes entry for the Request-URI user; NULL if none. */
const struct room_cfg *router_room_for(const struct config *cfg, const char *ruri_user);

/* Room by its exact name only. */
const struct room_cfg *router_room_by_name(const struct config *cfg, const char *name);

#endif
