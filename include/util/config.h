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

/* How an E.164 number is written toward a trunk (SPEC section 10). */
enum trunk_number_format {
    NUMBER_E164,     /* sip:+15551234567@gw;user=phone */
    NUMBER_NATIONAL, /* the number without its + */
    NUMBER_TEL,      /* tel:+15551234567 */
};
/* How the caller id goes out on a trunk's legs. */
enum trunk_identity { IDENTITY_FROM, IDENTITY_PAI, IDENTITY_RPID };
/* Refer-To form for an E.164 sipRefer target. */
enum trunk_refer_target { REFER_TARGET_SIP, REFER_TARGET_TEL };

/* Digest credentials a trunk answers 401/407 with (trunks[i].auth). */
struct trunk_auth {
    char *username; /* NULL: the trunk has no credentials */
    char *password;
    char *realm; /* only challenges of this realm are answered; NULL: any */
};

struct trunk_cfg {
    char *name;
    struct cidr *sources;
    size_t nsources;
    /* Outbound gateways (SIP URIs, kept whole), tried in order. "gateway"
     * in the file is the one-element form. gateway is gateways[0] (not
     * owned apart), NULL when there is none. */
    char **gateways;
    size_t ngateways;
    char *gateway;
    struct cidr *media_sources; /* where its RTP may come from besides SDP/SIP */
    size_t nmedia_sources;
    struct trunk_auth auth;
    bool registration;  /* "register": REGISTER to the first gateway */
    char **prefixes;    /* "+digits" E.164 prefixes routed out here; none: any */
    size_t nprefixes;
    enum trunk_number_format number_format;
    enum trunk_identity identity;
    bool diversion;       /* Diversion header on legs a transfer creates */
    int options_interval; /* s between OPTIONS probes per gateway; 0 = off */
    enum trunk_refer_target refer_target;
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

/* cluster.peers[i] (SPEC 13): where a node's API is when Redis cannot say */
struct peer_cfg {
    char *node;
    char *api; /* "host:port" */
};

struct cluster_cfg {
    char *redis;  /* "host:port" of Redis; "" (the default): a single node */
    int lease;    /* seconds a node's registration lives without refresh */
    struct peer_cfg *peers;
    size_t npeers;
};

#define CONFIG_MAX_KERNEL_INTERFACES 8

struct config {
    char *path;
    char *node;
    int drain_timeout;

    char *sip_listen;  /* "sip:host:port": UDP and TCP */
    char *sips_listen; /* "sips:host:port": TLS, or NULL */
    char *sip_advertise; /* address written into Via and Contact; NULL: the listen host */
    struct tls_cfg {
        char *certificate; /* PEM: private key and certificate chain */
        char *ca;          /* PEM: CAs that sign the peers' certificates */
        bool verify_peer;  /* refuse peers whose certificate does not verify */
    } tls;
    int max_calls;
    int rate_limit; /* new INVITEs per second per source address; 0 = off */
    int tcp_max_connections; /* accepted SIP TCP connections open at once */
    int tcp_max_per_source;  /* of those, from one source address */
    int tcp_idle_timeout;    /* seconds a silent SIP TCP connection may stay */
    /* sip.trusted_proxies: a SIP proxy in front (Kamailio, SPEC 13). A
     * request from one of these is taken as coming from the address its
     * proxy's Via names below its own (received=, else the sent-by host),
     * for trunk sources and rate limits. */
    struct cidr *trusted_proxies;
    size_t ntrusted_proxies;

    char *api_listen; /* "host:port" */
    char **tokens;
    size_t ntokens;
    int api_idle_timeout; /* seconds without traffic before MHD closes a connection */

    enum media_mode media_mode;
    char *media_address;   /* relay ports bind here */
    char *media_advertise; /* written into SDP; NULL: media_address */
    int port_min, port_max;
    int media_timeout;      /* s without RTP from either side before a call ends; 0 = off */
    int media_hold_timeout; /* the same while the call is on hold; 0 = off */
    enum media_srtp media_srtp;
    int media_warm_pairs; /* relay port pairs bound ahead of demand; 0 = bind per call */
    bool media_kernel;    /* media.kernel = "auto": the eBPF fast path where BPF allows */
    /* more interfaces to attach the fast path to, besides media.address's and lo (a second NIC
     * that media also comes in on) */
    char **media_kernel_interfaces;
    size_t nmedia_kernel_interfaces;

    struct trunk_cfg *trunks;
    size_t ntrunks;

    char *rooms_domain;
    /* rooms.sources (SPEC 12): addresses of rooms that may place calls by
     * INVITEing an E.164 number, which goes out through its trunk */
    struct cidr *room_sources;
    size_t nroom_sources;
    struct room_cfg *rooms;
    size_t nrooms;
    char *resolver;
    int room_response_timeout; /* seconds a room INVITE may go without any response */

    struct route_cfg *routes;
    size_t nroutes;

    char *webhook_url;
    char *webhook_secret;

    struct transfer_cfg transfer;
    struct cluster_cfg cluster;
};

/* Load and validate FILE. On failure returns NULL and writes a message of the
 * form "FILE:LINE: ..." (naming the offending key) into err. */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *cfg);

/* The trunk called name, or NULL. Look it up each time it is needed:
 * app->cfg is swapped on SIGHUP. */
const struct trunk_cfg *config_trunk_by_name(const struct config *cfg, const char *name);

/* The API address cluster.peers gives for node, or NULL. */
const char *config_peer_api(const struct config *cfg, const char *node);

/* The part of sip_listen after "sip:" split into host and port. */
int config_sip_hostport(const struct config *cfg, char *host, size_t hostlen, int *port);
/* The host other parties are told to reach us at: sip.advertise, else the
 * listen host. */
const char *config_sip_public_host(const struct config *cfg, char *buf, size_t len);
/* The address written into SDP: media.advertise, else media.address. */
const char *config_media_public(const struct config *cfg);

#endif
