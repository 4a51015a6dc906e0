/* relay.h - the RTP/RTCP relay: endpoints of UDP port pairs served by worker
 * thread(s) with their own epoll.
 *
 * A call leg owns one relay endpoint (one RTP+RTCP port pair per media
 * stream). Two endpoints are connected: what arrives on one is sent out of
 * the other toward that endpoint's peer. The control thread creates,
 * connects, re-points and frees endpoints; each call posts a command to the
 * worker, so the worker is the only thread that touches forwarding state.
 * Ports go back to the pool once the worker has closed the sockets. */
#ifndef SIPXFER_RELAY_H
#define SIPXFER_RELAY_H

#include <stddef.h>
#include <stdint.h>

#define RELAY_MAX_STREAMS 4

struct relay;
struct relay_ep;
struct cidr;
struct sockaddr;

/* Why the relay dropped a packet; index of relay_stats.dropped, named in
 * /metrics (metrics.c). */
enum relay_drop {
    RELAY_DROP_NO_PEER,     /* no partner, or it has no address to send to yet */
    RELAY_DROP_SEND_FAILED, /* sendto() failed */
    RELAY_DROP_FOREIGN,     /* source IP not the leg's SDP, SIP or media_sources */
    RELAY_DROP_NOT_LATCHED, /* another allowed source while the latched one is live */
    RELAY_DROP_SRTP_AUTH,   /* SRTP/SRTCP from the leg failed authentication */
    RELAY_DROP_SRTP,        /* other SRTP failure: replayed or malformed packet, protect failed */
    RELAY_DROP_COUNT
};

struct relay_stats {
    uint64_t ports_in_use;      /* UDP ports bound (RTP and RTCP) */
    uint64_t endpoints;         /* live endpoints */
    uint64_t packets_forwarded; /* since start */
    uint64_t packets_dropped;   /* sum of dropped[] */
    uint64_t dropped[RELAY_DROP_COUNT];
    uint64_t bytes_forwarded;
    uint64_t srtp_decrypted;     /* SRTP/SRTCP packets authenticated and decrypted */
    uint64_t srtp_auth_failures; /* of them, failed authentication (also in dropped[]) */
    uint64_t ports_warm;         /* bound ahead of demand, not in a call yet (not in ports_in_use) */
    uint64_t warm_misses;        /* endpoint streams that found the warm pool empty */
    int kernel_on;               /* the eBPF fast path is attached */
    uint64_t kernel_streams;     /* stream directions forwarded in the kernel now */
    uint64_t kernel_packets;     /* forwarded by the kernel path (packets_forwarded: user path) */
    uint64_t kernel_bytes;
};

struct relay_ep_stats {
    uint64_t rx_packets; /* received from this endpoint's peer */
    uint64_t tx_packets; /* sent to this endpoint's peer */
    uint64_t srtp_decrypted;     /* from the peer, authenticated and decrypted */
    uint64_t srtp_auth_failures; /* from the peer, failed authentication */
};

/* SDES-SRTP (RFC 4568) suites the relay terminates (SPEC section 11). */
enum relay_srtp_suite {
    RELAY_SRTP_AES_CM_128_HMAC_SHA1_80 = 1,
    RELAY_SRTP_AES_CM_128_HMAC_SHA1_32 = 2, /* 32-bit tag on SRTP; SRTCP keeps 80 (RFC 4568) */
};

#define RELAY_SRTP_KEY_LEN 30 /* master key (16) + master salt (14) */

struct relay_srtp_keys {
    enum relay_srtp_suite suite;
    unsigned char key[RELAY_SRTP_KEY_LEN];
};

struct relay *relay_create(int port_min, int port_max, int nworkers, char *err, size_t errlen);
/* Keep about pairs RTP/RTCP port pairs on address bound and registered
 * ahead of demand (at most a quarter of the range), so relay_ep_new() on
 * that address makes no socket, bind or epoll_ctl call: the workers refill
 * the pool as calls take pairs, and close what calls release. Binds the
 * first batch before returning (start-up). Returns the pairs bound. */
int relay_warm(struct relay *relay, const char *address, int pairs);
/* The eBPF fast path (SPEC section 14) for sockets bound on address: once
 * a stream is latched and neither side is SRTP the relay terminates, its
 * packets are forwarded in the kernel; the worker keeps the entries in
 * step with peers, partners and latches. 0 with desc naming the program
 * and interfaces, or -1 with desc saying why not (the userspace relay then
 * carries everything). Call once, before the first endpoint. */
int relay_kernel_start(struct relay *relay, const char *address, const char *const *extra,
                       size_t nextra, char *desc, size_t desclen);
/* Stops the workers and closes every socket. */
void relay_destroy(struct relay *relay);
void relay_stats(struct relay *relay, struct relay_stats *out);

/* Bind nstreams port pairs on address. near, if given, is an endpoint this
 * one will be connected to: both are then served by the same worker. NULL
 * when the port range is exhausted or address is unusable (err says which).
 * tag (the session id) names the endpoint in log lines. */
struct relay_ep *relay_ep_new(struct relay *relay, const char *address, int nstreams,
                              struct relay_ep *near, const char *tag, char *err, size_t errlen);
int relay_ep_nstreams(const struct relay_ep *ep);
uint16_t relay_ep_port(const struct relay_ep *ep, int stream);

/* Where the peer said (in SDP) it receives stream's RTP; RTCP goes to
 * rtcp_port. Clears the latch: the next packet from an allowed source
 * re-latches. The address is also allowed to send (a 0.0.0.0 hold keeps the
 * previous one allowed). */
void relay_ep_set_peer(struct relay_ep *ep, int stream, const char *addr, uint16_t rtp_port,
                       uint16_t rtcp_port);

/* Who may send the endpoint's media besides its SDP address (SPEC section
 * 9; the port may differ, for NAT): an address the leg's SIP came from
 * (added to a few kept), and the trunk's media_sources (copied, replacing
 * the previous list). Anyone else is dropped, never latched. */
void relay_ep_allow_sip(struct relay_ep *ep, const struct sockaddr *sa);
void relay_ep_allow_nets(struct relay_ep *ep, const struct cidr *nets, size_t n);

/* The telephone-event payload type the endpoint's leg declared for stream
 * in its SDP (-1: none). RTP it sends with that type is forwarded with the
 * type of the partner's leg, so RFC 4733 digits survive two legs that
 * numbered them differently (SPEC 10). */
void relay_ep_set_dtmf_pt(struct relay_ep *ep, int stream, int pt);

/* SRTP for stream of the endpoint: rx is the key the leg announced (what
 * it sends us is authenticated and decrypted before anything else; a
 * packet that fails is dropped and counted), tx ours (what we send it is
 * encrypted), each NULL for plain RTP/RTCP. The keys are copied; contexts
 * set before are replaced (their replay state with them). -1 (nothing
 * changed) for a bad stream or suite or a key libsrtp refuses. */
int relay_ep_set_srtp(struct relay_ep *ep, int stream, const struct relay_srtp_keys *rx,
                      const struct relay_srtp_keys *tx);

/* Connect a and b (either may be NULL to disconnect the other). */
void relay_connect(struct relay_ep *a, struct relay_ep *b);

void relay_ep_stats(const struct relay_ep *ep, struct relay_ep_stats *out);

/* When the last RTP packet (not RTCP) was accepted from the endpoint's
 * peer: CLOCK_MONOTONIC nanoseconds, 0 if none yet. Thread-safe. */
long long relay_ep_last_rtp(const struct relay_ep *ep);

/* Release: the worker closes the sockets and returns the ports. ep must not
 * be used after this call. */
void relay_ep_free(struct relay_ep *ep);

/* Send one datagram from the RTP socket of the endpoint's
 * stream to where its peer receives (latched source, else SDP address),
 * encrypted if the stream has a tx SRTP context. For media we originate
 * ourselves (RFC 4733 digits). Thread-safe. */
int relay_ep_send(struct relay_ep *ep, int stream, const void *buf, size_t len);

#endif
