/* config.h - the daemon's configuration (SPEC section 4), loaded with libconfig.
 *
 * A struct config is immutable once loaded; SIGHUP builds a new one and swaps
 * the reloadable parts in. Strings are owned by the struct (config_free). */
#ifndef SIPXFER_CONFIG_H
#define SIPXFER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router.h"

enum media_mode { MEDIA_RELAY = 0, MEDIA_PASSTHROUGH = 1 };
/* media.srtp (SPEC 11): SDES-SRTP terminated in the relay. OFF: SDP and
 * packets pass as they are (default); ALLOW: a leg that offers SRTP gets
 * it; REQUIRE: a plain offer is refused with 488. */
enum media_srtp { SRTP_OFF = 0, SRTP_ALLOW = 1, SRTP_REQUIRE = 2 };

struct trunk_cfg {
    char *name;
    struct cidr *sources;
    size_t nsources;
    char *gateway; /* SIP URI, may be NULL */
    struct cidr *media_sources; /* where its RTP may come from besides SDP/SIP */
    size_t nmedia_sources;
};

struct room_cfg {
    char *name;
    char *uri;
};

struct route_cfg {
    char *user;
    char *room;
};

struct transfer_cfg {
    int ring_timeout;   /* seconds */
    int notify_timeout; /* seconds */
    char **allow;
    size_t nallow;
    bool refer_fallback;
};

struct config {
    char *path;
    char *node;
    int drain_timeout;

    char *sip_listen; /* "sip:host:port" */
    int max_calls;
    int rate_limit; /* new INVITEs per second per source address; 0 = off */
    int tcp_max_connections; /* accepted SIP TCP connections open at once */
    int tcp_max_per_source;  /* of those, from one source address */
    int tcp_idle_timeout;    /* seconds a silent SIP TCP connection may stay */

    char *api_listen; /* "host:port" */
    char **tokens;
    size_t ntokens;
    int api_idle_timeout; /* seconds without traffic before MHD closes a connection */

    enum media_mode media_mode;
    char *media_address;
    int port_min, port_max;
    int media_timeout;      /* s without RTP from either side before a call ends; 0 = off */
    int media_hold_timeout; /* the same while the call is on hold; 0 = off */
    enum media_srtp media_srtp;

    struct trunk_cfg *trunks;
    size_t ntrunks;

    char *rooms_domain;
    struct room_cfg *rooms;
    size_t nrooms;
    char *resolver;
    int room_response_timeout; /* seconds a room INVITE may go without any response */

    struct route_cfg *routes;
    size_t nroutes;

    char *webhook_url;
    char *webhook_secret;

    struct transfer_cfg transfer;
};

/* Load and validate FILE. On failure returns NULL and writes a message of the
 * form "FILE:LINE: ..." (naming the offending key) into err. */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *cfg);

/* The part of sip_listen after "sip:" split into host and port. */
int config_sip_hostport(const struct config *cfg, char *host, size_t hostlen, int *port);

#endif
