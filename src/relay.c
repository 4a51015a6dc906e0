/* relay.c - RTP/RTCP forwarding in worker threads.
 *
 * Ownership: the control thread allocates a relay_ep, binds its sockets and
 * adds them to its worker's epoll set; from then on only the worker reads or
 * writes its forwarding state (peer addresses, partner link), driven by
 * commands posted through a mutex-guarded queue. The worker frees the
 * endpoint and returns its ports to the pool, so a port is never reused
 * while its socket is still open.
 *
 * Wake-ups: a worker that has nothing to do sleeps without a timeout and is
 * woken through its eventfd by the next command. A worker that just ran
 * commands sleeps at most CMD_LINGER_MS instead, and commands posted
 * meanwhile do not wake it: they are picked up by that timeout or by the
 * next packet, whichever comes first. At a thousand call set-ups a second
 * that is a few dozen wake-ups instead of one per call, and no context
 * switch per call for the control thread. Commands that must not wait (a
 * packet to send, stop) always wake it. */
#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <srtp2/srtp.h>

#include "log.h"
#include "relay_kernel.h"
#include "router.h"
#include "xalloc.h"

#define RELAY_MAX_WORKERS 16
#define BATCH 16
#define CMD_LINGER_MS 20
/* A latched source that has been quiet this long may be replaced by another
 * allowed address; a live one may not (RTP hijack). */
#define RELATCH_QUIET_NS (1000LL * 1000 * 1000)
/* Addresses a leg's SIP came from (the caller's INVITE, each response of a
 * room or target): a forking proxy or a re-routed dialog may add a few. */
#define RELAY_MAX_SIP_SOURCES 4
/* Largest datagram taken in; the worker's buffers have SRTP_MAX_TRAILER_LEN
 * more, room for the tag srtp_protect() appends. */
#define RELAY_PKT_MAX 2048

/* One bound UDP socket, registered in a worker's epoll set with itself as
 * the event's data. A warm socket (bound ahead of demand) has no endpoint
 * yet: ep is published by the control thread when a call takes it, after
 * stream and rtcp are set and the endpoint is ready, so the worker either
 * sees NULL (and discards what arrived) or a complete endpoint. */
struct relay_sock {
    int fd;
    _Atomic(struct relay_ep *) ep;
    int stream;
    int rtcp; /* 0 = RTP, 1 = RTCP */
    /* kernel path, worker-owned: kfwd = an rk_fwd entry (kval) forwards
     * what arrives here; kcount = the socket has rk_count counters */
    bool kfwd, kcount;
    struct rk_fwd kval;
};

/* A warm RTP/RTCP pair, bound and registered by the worker. */
struct relay_warm_pair {
    uint16_t port;
    struct relay_sock *sock[2];
};

struct relay_peer {
    struct sockaddr_storage sdp; /* from the peer's SDP */
    socklen_t sdp_len;
    struct sockaddr_storage latched; /* where it really sends from */
    socklen_t latched_len;
    long long last_ns; /* last packet from the latched source */
    /* The last real (not 0.0.0.0) SDP address: still who may send while
     * the peer is on hold. */
    struct sockaddr_storage sdp_ip;
    socklen_t sdp_ip_len;
    bool warned; /* a foreign source has been logged for this socket */
};

/* Who besides the SDP address may send a leg's media (SPEC section 9). */
struct relay_allow {
    struct sockaddr_storage sip[RELAY_MAX_SIP_SOURCES];
    int nsip;
    struct cidr *nets; /* the trunk's media_sources, owned */
    size_t nnets;
};

struct relay_worker;

struct relay_ep {
    struct relay *relay;
    struct relay_worker *w;
    int nstreams;
    char tag[64];
    uint16_t port[RELAY_MAX_STREAMS];
    struct relay_sock *sock[RELAY_MAX_STREAMS][2];
    /* worker-owned from here */
    struct relay_peer peer[RELAY_MAX_STREAMS][2];
    struct relay_allow allow;
    struct relay_ep *partner;
    _Atomic uint64_t rx, tx;
    _Atomic long long last_rtp_ns; /* written by the worker, read by the control thread */
    /* telephone-event payload type this endpoint's leg uses per stream (its
     * SDP), -1: none; set by the control thread, read per packet */
    _Atomic int dtmf_pt[RELAY_MAX_STREAMS];
    /* SRTP per stream (NULL: plain), worker-owned: rx decrypts what the
     * peer sends (its key), tx encrypts what we send it (ours) */
    srtp_t srtp_rx[RELAY_MAX_STREAMS], srtp_tx[RELAY_MAX_STREAMS];
    _Atomic uint64_t srtp_decrypted, srtp_auth_failures;
};

enum cmd_kind { CMD_SET_PEER, CMD_CONNECT, CMD_FREE, CMD_SEND, CMD_STOP, CMD_ALLOW_SIP,
                CMD_ALLOW_NETS, CMD_SET_SRTP, CMD_REFILL };

struct cmd {
    struct cmd *next;
    enum cmd_kind kind;
    struct relay_ep *ep, *other;
    int stream;
    struct sockaddr_storage rtp, rtcp;
    socklen_t len;
    unsigned char *payload; /* CMD_SEND */
    size_t payload_len;
    struct cidr *nets; /* CMD_ALLOW_NETS, handed to the endpoint */
    size_t nnets;
    srtp_t srtp_rx, srtp_tx; /* CMD_SET_SRTP, handed to the endpoint */
};

struct relay_worker {
    struct relay *relay;
    pthread_t thread;
    int epfd, evfd;
    pthread_mutex_t lock;
    struct cmd *head, *tail;
    bool sleeping; /* blocked with no timeout: the next command must wake it */
    /* Warm pairs, under lock: the worker pushes, relay_ep_new() pops. */
    struct relay_warm_pair *warm;
    int nwarm, warm_target;
    bool refill_posted; /* a CMD_REFILL is queued or running */
};

struct relay {
    int base, npairs;
    pthread_mutex_t pool_lock;
    unsigned char *pair_used;
    int cursor;
    int nworkers, next_worker;
    struct relay_worker workers[RELAY_MAX_WORKERS];
    _Atomic uint64_t ports_in_use, endpoints, forwarded, bytes;
    _Atomic uint64_t dropped[RELAY_DROP_COUNT];
    _Atomic uint64_t srtp_decrypted, srtp_auth_failures;
    _Atomic uint64_t ports_warm, warm_misses;
    char *warm_address; /* media.address, where warm pairs are bound */
    struct relay_kernel *kernel; /* NULL: userspace only */
    _Atomic uint64_t kernel_streams;
};

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int ip_bytes(const struct sockaddr_storage *sa, uint8_t out[16])
{
    if (sa->ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa->ss_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            memcpy(out, &a6->s6_addr[12], 4);
            return 4;
        }
        memcpy(out, a6, 16);
        return 16;
    }
    return 0;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

/* The same host, whatever the port; an IPv4-mapped IPv6 address is its
 * IPv4 address. */
static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    uint8_t x[16], y[16];
    int xl = ip_bytes(a, x), yl = ip_bytes(b, y);
    return xl && xl == yl && memcmp(x, y, (size_t)xl) == 0;
}

/* ---- commands ---------------------------------------------------------- */

static void post(struct relay_worker *w, struct cmd *c)
{
    c->next = NULL;
    /* a refill is posted when the warm pool runs low: it must not wait for
     * the linger timeout while calls keep taking pairs */
    bool urgent = c->kind == CMD_SEND || c->kind == CMD_STOP ||
                  (c->kind == CMD_REFILL && c->stream);
    /* With the kernel forwarding, a packet no longer wakes the worker (and
     * so runs its queued commands first): a change of where media goes
     * must reach the kernel's entries now, not after the linger timeout,
     * or up to CMD_LINGER_MS of a transferred call went to the old far end */
    if (w->relay->kernel && (c->kind == CMD_CONNECT || c->kind == CMD_SET_PEER ||
                             c->kind == CMD_SET_SRTP || c->kind == CMD_FREE))
        urgent = true;
    pthread_mutex_lock(&w->lock);
    /* The worker takes the whole list under the lock, so one wake-up per
     * burst is enough: only the command that finds the worker asleep for
     * good (or one that cannot wait) writes the eventfd. */
    bool wake = w->sleeping || urgent;
    w->sleeping = false;
    if (w->tail)
        w->tail->next = c;
    else
        w->head = c;
    w->tail = c;
    pthread_mutex_unlock(&w->lock);
    uint64_t one = 1;
    if (wake && write(w->evfd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_error("relay: cannot wake worker: %s", strerror(errno));
}

static struct cmd *cmd_new(enum cmd_kind kind, struct relay_ep *ep)
{
    struct cmd *c = xcalloc(1, sizeof *c);
    c->kind = kind;
    c->ep = ep;
    return c;
}

/* ---- port pool --------------------------------------------------------- */

static int pool_take(struct relay *r)
{
    int found = -1;
    pthread_mutex_lock(&r->pool_lock);
    for (int i = 0; i < r->npairs; i++) {
        int k = (r->cursor + i) % r->npairs;
        if (!r->pair_used[k]) {
            r->pair_used[k] = 1;
            r->cursor = (k + 1) % r->npairs;
            found = k;
            break;
        }
    }
    pthread_mutex_unlock(&r->pool_lock);
    return found;
}

static void pool_give(struct relay *r, int pair)
{
    pthread_mutex_lock(&r->pool_lock);
    r->pair_used[pair] = 0;
    pthread_mutex_unlock(&r->pool_lock);
}

static int bind_udp(const char *address, uint16_t port)
{
    /* numeric addresses (the usual media.address) skip getaddrinfo: this
     * runs four times per call */
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        sslen = sizeof *in4;
    } else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        sslen = sizeof *in6;
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICHOST};
        struct addrinfo *ai;
        char service[8];
        snprintf(service, sizeof service, "%u", port);
        if (getaddrinfo(address, service, &hints, &ai) != 0)
            return -2;
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        sslen = ai->ai_addrlen;
        freeaddrinfo(ai);
    }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM ? -3
                                                                                          : -1;
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* ---- worker ------------------------------------------------------------ */

static void srtp_free(srtp_t ctx)
{
    if (ctx)
        srtp_dealloc(ctx);
}

static void ep_free_srtp(struct relay_ep *ep)
{
    for (int s = 0; s < RELAY_MAX_STREAMS; s++) {
        srtp_free(ep->srtp_rx[s]);
        srtp_free(ep->srtp_tx[s]);
        ep->srtp_rx[s] = ep->srtp_tx[s] = NULL;
    }
}

/* Encrypt the RTP (or RTCP) packet in buf, len bytes, in place for ctx;
 * buf has SRTP_MAX_TRAILER_LEN bytes of room after len. The new length, or
 * 0 if libsrtp refused. */
static size_t srtp_out(srtp_t ctx, bool rtcp, unsigned char *buf, size_t len)
{
    int n = (int)len;
    srtp_err_status_t st = rtcp ? srtp_protect_rtcp(ctx, buf, &n) : srtp_protect(ctx, buf, &n);
    return st == srtp_err_status_ok && n > 0 ? (size_t)n : 0;
}

/* A socket registered in w's epoll set; ep stays NULL until published.
 * NULL if epoll refuses it (the caller still owns fd). */
static struct relay_sock *sock_new(struct relay_worker *w, int fd, int stream, int rtcp)
{
    struct relay_sock *so = xcalloc(1, sizeof *so);
    so->fd = fd;
    so->stream = stream;
    so->rtcp = rtcp;
    atomic_init(&so->ep, NULL);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = so};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        free(so);
        return NULL;
    }
    return so;
}

/* close() also takes it out of the epoll set (the fd is never dup'ed). */
static void sock_close(struct relay_sock *so)
{
    if (so) {
        close(so->fd);
        free(so);
    }
}

/* Worker only: FREE runs after the round's events are handled, so no
 * fetched event points at these sockets any more. */
static void ep_release(struct relay_ep *ep)
{
    struct relay *r = ep->relay;
    for (int s = 0; s < ep->nstreams; s++) {
        for (int k = 0; k < 2; k++) {
            if (ep->sock[s][k]) {
                sock_close(ep->sock[s][k]);
                atomic_fetch_sub(&r->ports_in_use, 1);
            }
        }
        pool_give(r, (ep->port[s] - r->base) / 2);
    }
    atomic_fetch_sub(&r->endpoints, 1);
    ep_free_srtp(ep);
    free(ep->allow.nets);
    free(ep);
}

/* ---- warm pool --------------------------------------------------------- */

/* Pairs bound per round of the worker loop: packets never wait behind more
 * than this many bind() calls. */
#define WARM_BATCH 64

/* Bind and register warm pairs on the worker (or at start-up) until its
 * pool holds its target. True if there is more to do. */
static bool warm_fill(struct relay_worker *w)
{
    struct relay *r = w->relay;
    pthread_mutex_lock(&w->lock);
    int want = w->warm_target - w->nwarm;
    pthread_mutex_unlock(&w->lock);
    int made = 0, tries = r->npairs;
    bool stuck = false;
    while (want > 0 && made < WARM_BATCH && tries-- > 0) {
        int pair = pool_take(r);
        if (pair < 0) {
            stuck = true; /* every pair is in a call: the next FREE makes room */
            break;
        }
        uint16_t port = (uint16_t)(r->base + pair * 2);
        int fd[2] = {bind_udp(r->warm_address, port), -1};
        if (fd[0] >= 0)
            fd[1] = bind_udp(r->warm_address, (uint16_t)(port + 1));
        if (fd[0] < 0 || fd[1] < 0) {
            bool fatal = fd[0] == -2 || fd[0] == -3 || fd[1] == -3;
            if (fd[0] >= 0)
                close(fd[0]);
            pool_give(r, pair); /* taken by another program: try the next */
            if (fatal) {
                stuck = true;
                break;
            }
            continue;
        }
        struct relay_warm_pair wp = {.port = port};
        wp.sock[0] = sock_new(w, fd[0], 0, 0);
        wp.sock[1] = wp.sock[0] ? sock_new(w, fd[1], 0, 1) : NULL;
        if (!wp.sock[1]) {
            /* nothing was published on them: no event can name them yet
             * except one already fetched by this very thread, and this
             * runs outside the event round */
            sock_close(wp.sock[0]);
            if (!wp.sock[0])
                close(fd[0]);
            close(fd[1]);
            pool_give(r, pair);
            stuck = true;
            break;
        }
        pthread_mutex_lock(&w->lock);
        w->warm[w->nwarm++] = wp;
        pthread_mutex_unlock(&w->lock);
        atomic_fetch_add(&r->ports_warm, 2);
        want--;
        made++;
    }
    bool more = want > 0 && !stuck && made == WARM_BATCH;
    if (!more) {
        pthread_mutex_lock(&w->lock);
        w->refill_posted = false;
        pthread_mutex_unlock(&w->lock);
    }
    return more;
}

static struct cmd *cmd_new(enum cmd_kind kind, struct relay_ep *ep);
static void post(struct relay_worker *w, struct cmd *c);

/* Control thread: take a warm pair bound on address, if there is one, and
 * ask the worker to top the pool up: at its next turn, or at once (waking
 * it) when the pool is half empty. */
static bool warm_take(struct relay_worker *w, const char *address, struct relay_warm_pair *out)
{
    struct relay *r = w->relay;
    if (!w->warm_target || !r->warm_address || strcmp(address, r->warm_address) != 0)
        return false;
    bool got = false, refill = false, low = false;
    pthread_mutex_lock(&w->lock);
    if (w->nwarm > 0) {
        *out = w->warm[--w->nwarm];
        got = true;
    }
    low = w->nwarm < (w->warm_target + 1) / 2;
    if (!w->refill_posted) {
        w->refill_posted = true;
        refill = true;
    }
    pthread_mutex_unlock(&w->lock);
    if (got)
        atomic_fetch_sub(&r->ports_warm, 2);
    else
        atomic_fetch_add(&r->warm_misses, 1);
    if (refill) {
        struct cmd *c = cmd_new(CMD_REFILL, NULL);
        c->stream = low; /* urgent */
        post(w, c);
    }
    return got;
}

/* ---- kernel path (worker) ---------------------------------------------- */

static struct rk_key kernel_key(const struct relay *r, const struct relay_ep *ep, int s, int k)
{
    return (struct rk_key){.addr = relay_kernel_addr(r->kernel),
                           .port = htons((uint16_t)(ep->port[s] + k))};
}

/* What the kernel should do with what arrives on ep's socket (s, k): false
 * when the relay thread must see it - not latched yet, no partner or no
 * address to send to (hold), SRTP terminated on either side, IPv6. */
static bool kernel_entry(const struct relay *r, const struct relay_ep *ep, int s, int k,
                         struct rk_fwd *f)
{
    const struct relay_peer *me = &ep->peer[s][k];
    const struct relay_ep *out = ep->partner;
    if (!me->latched_len || me->latched.ss_family != AF_INET || ep->srtp_rx[s] || !out ||
        s >= out->nstreams || out->srtp_tx[s] || !out->sock[s][k])
        return false;
    const struct relay_peer *dst = &out->peer[s][k];
    const struct sockaddr_storage *to = dst->latched_len ? &dst->latched : &dst->sdp;
    socklen_t tolen = dst->latched_len ? dst->latched_len : dst->sdp_len;
    if (!tolen || to->ss_family != AF_INET)
        return false;
    const struct sockaddr_in *src4 = (const void *)&me->latched, *to4 = (const void *)to;
    memset(f, 0, sizeof *f);
    f->src_addr = src4->sin_addr.s_addr;
    f->src_port = src4->sin_port;
    f->out_addr = relay_kernel_addr(r->kernel);
    f->out_port = htons((uint16_t)(out->port[s] + k));
    f->dst_addr = to4->sin_addr.s_addr;
    f->dst_port = to4->sin_port;
    f->pt_from = f->pt_to = 0xff;
    if (relay_kernel_is_local(r->kernel, f->dst_addr))
        f->flags = RK_LOCAL;
    if (!k) {
        int mine = atomic_load_explicit(&((struct relay_ep *)ep)->dtmf_pt[s], memory_order_relaxed);
        int theirs =
            atomic_load_explicit(&((struct relay_ep *)out)->dtmf_pt[s], memory_order_relaxed);
        if (mine >= 0 && theirs >= 0 && theirs != mine) {
            f->pt_from = (uint8_t)mine;
            f->pt_to = (uint8_t)theirs;
        }
    }
    return true;
}

/* Bring the kernel's entry for ep's socket (s, k) in line with the
 * worker's state: installed, replaced (atomically, one map update) or
 * removed. */
static void kernel_sync(struct relay *r, struct relay_ep *ep, int s, int k)
{
    if (!r->kernel || !ep || s >= ep->nstreams || !ep->sock[s][k])
        return;
    struct relay_sock *in = ep->sock[s][k];
    struct rk_key key = kernel_key(r, ep, s, k);
    struct rk_fwd f;
    if (kernel_entry(r, ep, s, k, &f)) {
        if (in->kfwd && memcmp(&in->kval, &f, sizeof f) == 0)
            return;
        int err = relay_kernel_set(r->kernel, &key, &f);
        if (err) {
            /* the relay thread keeps carrying it; not worth a line per packet */
            if (in->kfwd) {
                relay_kernel_unset(r->kernel, &key);
                in->kfwd = false;
                atomic_fetch_sub(&r->kernel_streams, 1);
            }
            log_msg(LOG_DEBUG, ep->tag, "relay: kernel entry for port %u refused: %s",
                    ep->port[s] + k, strerror(-err));
            return;
        }
        if (!in->kfwd)
            atomic_fetch_add(&r->kernel_streams, 1);
        in->kfwd = in->kcount = true;
        in->kval = f;
        ep->partner->sock[s][k]->kcount = true;
        if (log_get_level() >= LOG_DEBUG)
            log_msg(LOG_DEBUG, ep->tag, "relay: port %u forwarded in the kernel", ep->port[s] + k);
    } else if (in->kfwd) {
        relay_kernel_unset(r->kernel, &key);
        in->kfwd = false;
        atomic_fetch_sub(&r->kernel_streams, 1);
    }
}

/* Every entry that depends on ep's state: its own sockets' and its
 * partner's (which send toward ep's peer). */
static void kernel_sync_ep(struct relay *r, struct relay_ep *ep)
{
    if (!r->kernel || !ep)
        return;
    for (int s = 0; s < ep->nstreams; s++)
        for (int k = 0; k < 2; k++) {
            kernel_sync(r, ep, s, k);
            kernel_sync(r, ep->partner, s, k);
        }
}

/* ep's sockets are about to close: no entry of theirs may outlive them. */
static void kernel_forget_ep(struct relay *r, struct relay_ep *ep)
{
    if (!r->kernel)
        return;
    for (int s = 0; s < ep->nstreams; s++)
        for (int k = 0; k < 2; k++) {
            struct relay_sock *so = ep->sock[s][k];
            if (!so)
                continue;
            struct rk_key key = kernel_key(r, ep, s, k);
            if (so->kfwd) {
                relay_kernel_unset(r->kernel, &key);
                so->kfwd = false;
                atomic_fetch_sub(&r->kernel_streams, 1);
            }
            if (so->kcount) {
                relay_kernel_forget(r->kernel, &key);
                so->kcount = false;
            }
        }
}

/* When the kernel last forwarded a packet that arrived on ep's socket
 * (s, k): CLOCK_MONOTONIC ns, 0 if never. */
static long long kernel_last_rx(struct relay *r, const struct relay_ep *ep, int s, int k)
{
    struct rk_count c;
    if (!r->kernel)
        return 0;
    struct rk_key key = kernel_key(r, ep, s, k);
    return relay_kernel_count(r->kernel, &key, &c) == 0 ? (long long)c.last_rx_ns : 0;
}

static void run_command(struct relay_worker *w, struct cmd *c)
{
    struct relay_ep *ep = c->ep;
    switch (c->kind) {
    case CMD_SET_PEER: {
        struct relay_peer *p = ep->peer[c->stream];
        p[0].sdp = c->rtp;
        p[1].sdp = c->rtcp;
        p[0].sdp_len = p[1].sdp_len = c->len;
        p[0].latched_len = p[1].latched_len = 0;
        if (c->len) {
            /* the host is what counts: RTCP's is the RTP address's */
            p[0].sdp_ip = p[1].sdp_ip = c->rtp;
            p[0].sdp_ip_len = p[1].sdp_ip_len = c->len;
        }
        kernel_sync_ep(w->relay, ep);
        break;
    }
    case CMD_ALLOW_SIP: {
        struct relay_allow *a = &ep->allow;
        bool known = false;
        for (int i = 0; i < a->nsip; i++)
            known = known || same_ip(&a->sip[i], &c->rtp);
        if (known)
            break;
        /* full: the oldest goes, the dialog has moved on from it */
        if (a->nsip == RELAY_MAX_SIP_SOURCES) {
            memmove(&a->sip[0], &a->sip[1], sizeof a->sip[0] * (RELAY_MAX_SIP_SOURCES - 1));
            a->nsip--;
        }
        a->sip[a->nsip++] = c->rtp;
        break;
    }
    case CMD_ALLOW_NETS:
        free(ep->allow.nets);
        ep->allow.nets = c->nets;
        ep->allow.nnets = c->nnets;
        c->nets = NULL;
        break;
    case CMD_CONNECT: {
        /* the old partners lose their link: their entries go too */
        struct relay_ep *old_a = ep ? ep->partner : NULL;
        struct relay_ep *old_b = c->other ? c->other->partner : NULL;
        if (ep) {
            if (ep->partner && ep->partner->partner == ep)
                ep->partner->partner = NULL;
            ep->partner = c->other;
        }
        if (c->other) {
            if (c->other->partner && c->other->partner->partner == c->other)
                c->other->partner->partner = NULL;
            c->other->partner = ep;
        }
        kernel_sync_ep(w->relay, old_a);
        kernel_sync_ep(w->relay, old_b);
        kernel_sync_ep(w->relay, ep);
        kernel_sync_ep(w->relay, c->other);
        break;
    }
    case CMD_FREE: {
        struct relay_ep *p = ep->partner;
        if (p && p->partner == ep)
            p->partner = NULL;
        ep->partner = NULL;
        /* the partner's entries send out of ep's sockets: they go first */
        if (p)
            kernel_sync_ep(w->relay, p);
        kernel_forget_ep(w->relay, ep);
        ep_release(ep);
        break;
    }
    case CMD_SEND: {
        struct relay_peer *dst = &ep->peer[c->stream][0];
        const struct sockaddr_storage *to = dst->latched_len ? &dst->latched : &dst->sdp;
        socklen_t tolen = dst->latched_len ? dst->latched_len : dst->sdp_len;
        const unsigned char *pkt = c->payload;
        size_t len = c->payload_len;
        unsigned char sbuf[RELAY_PKT_MAX + SRTP_MAX_TRAILER_LEN];
        if (ep->srtp_tx[c->stream]) {
            if (len > RELAY_PKT_MAX)
                break;
            memcpy(sbuf, c->payload, len);
            len = srtp_out(ep->srtp_tx[c->stream], false, sbuf, len);
            if (!len) {
                atomic_fetch_add(&w->relay->dropped[RELAY_DROP_SRTP], 1);
                break;
            }
            pkt = sbuf;
        }
        if (tolen && sendto(ep->sock[c->stream][0]->fd, pkt, len, 0,
                            (const struct sockaddr *)to, tolen) >= 0)
            atomic_fetch_add(&ep->tx, 1);
        break;
    }
    case CMD_SET_SRTP:
        srtp_free(ep->srtp_rx[c->stream]);
        srtp_free(ep->srtp_tx[c->stream]);
        ep->srtp_rx[c->stream] = c->srtp_rx;
        ep->srtp_tx[c->stream] = c->srtp_tx;
        kernel_sync_ep(w->relay, ep);
        break;
    case CMD_STOP:
    case CMD_REFILL: /* worker_main looks at the kind */
        break;
    }
    free(c->payload);
    c->payload = NULL;
}

static bool source_allowed(const struct relay_ep *ep, const struct relay_peer *me,
                           const struct sockaddr_storage *src)
{
    if (me->sdp_ip_len && same_ip(&me->sdp_ip, src))
        return true;
    for (int i = 0; i < ep->allow.nsip; i++)
        if (same_ip(&ep->allow.sip[i], src))
            return true;
    for (size_t i = 0; i < ep->allow.nnets; i++)
        if (cidr_match(&ep->allow.nets[i], (const struct sockaddr *)src))
            return true;
    return false;
}

/* One SECURITY line per socket, not per packet: a stranger's stream would
 * flood the log. */
static void warn_foreign(const struct relay_ep *ep, const struct relay_sock *in,
                         const struct sockaddr_storage *src)
{
    char host[INET6_ADDRSTRLEN] = "?", text[INET6_ADDRSTRLEN + 8];
    uint8_t ip[16];
    int n = ip_bytes(src, ip);
    if (n)
        inet_ntop(n == 4 ? AF_INET : AF_INET6, ip, host, sizeof host);
    in_port_t raw = src->ss_family == AF_INET ? ((const struct sockaddr_in *)src)->sin_port
                                              : ((const struct sockaddr_in6 *)src)->sin6_port;
    unsigned port = ntohs(raw);
    snprintf(text, sizeof text, "%s:%u", host, port);
    log_security("foreign-rtp", text, ep->tag,
                 "relay port %u: %s from outside the leg's SDP/SIP addresses and media_sources "
                 "dropped (logged once per port)",
                 ep->port[in->stream] + in->rtcp, in->rtcp ? "RTCP" : "RTP");
}

/* Symmetric RTP without bleed (SPEC section 9): latch only onto an address
 * the leg's SDP, its SIP or its trunk's media_sources vouch for. The
 * latched host may move to another port at once (NAT rebinding); another
 * allowed host takes over only once the latched one has been quiet. A
 * stranger is never latched, however long the stream has been quiet (hold,
 * silence suppression). False: drop the packet (counted). */
static int source_check(struct relay *r, struct relay_ep *ep, const struct relay_sock *in,
                        const struct sockaddr_storage *src, long long t)
{
    struct relay_peer *me = &ep->peer[in->stream][in->rtcp];
    if (me->latched_len && same_addr(&me->latched, src))
        return 0;
    if (!source_allowed(ep, me, src)) {
        atomic_fetch_add(&r->dropped[RELAY_DROP_FOREIGN], 1);
        if (!me->warned) {
            me->warned = true;
            warn_foreign(ep, in, src);
        }
        return -1;
    }
    if (me->latched_len && !same_ip(&me->latched, src) && in->kfwd) {
        /* the latched source's packets go by in the kernel: its counters
         * say when it last sent */
        long long k = kernel_last_rx(r, ep, in->stream, in->rtcp);
        if (k > me->last_ns)
            me->last_ns = k;
    }
    if (me->latched_len && !same_ip(&me->latched, src) && t - me->last_ns <= RELATCH_QUIET_NS) {
        atomic_fetch_add(&r->dropped[RELAY_DROP_NOT_LATCHED], 1);
        return -1;
    }
    return 1;
}

/* After source_check() said 1 (and, for SRTP, the packet authenticated:
 * a forged packet from an allowed host never moves the latch). */
static void source_latch(struct relay_ep *ep, const struct relay_sock *in,
                         const struct sockaddr_storage *src, socklen_t srclen)
{
    struct relay_peer *me = &ep->peer[in->stream][in->rtcp];
    if (me->latched_len && log_get_level() >= LOG_DEBUG)
        log_msg(LOG_DEBUG, ep->tag, "relay: port %u re-latched", ep->port[in->stream]);
    me->latched = *src;
    me->latched_len = srclen;
}

/* Authenticate and decrypt, in place, what the leg sent over SRTP/SRTCP.
 * False: drop it (counted). */
static bool srtp_in(struct relay *r, struct relay_ep *ep, srtp_t ctx, bool rtcp,
                    unsigned char *buf, size_t *len)
{
    int n = (int)*len;
    srtp_err_status_t st = rtcp ? srtp_unprotect_rtcp(ctx, buf, &n) : srtp_unprotect(ctx, buf, &n);
    if (st == srtp_err_status_ok && n > 0) {
        *len = (size_t)n;
        atomic_fetch_add_explicit(&ep->srtp_decrypted, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->srtp_decrypted, 1, memory_order_relaxed);
        return true;
    }
    if (st == srtp_err_status_auth_fail) {
        atomic_fetch_add_explicit(&ep->srtp_auth_failures, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->srtp_auth_failures, 1, memory_order_relaxed);
        atomic_fetch_add(&r->dropped[RELAY_DROP_SRTP_AUTH], 1);
    } else {
        atomic_fetch_add(&r->dropped[RELAY_DROP_SRTP], 1);
    }
    return false;
}

/* RFC 4733 events keep their meaning between legs that numbered them
 * differently: a packet sent with its own leg's telephone-event type goes
 * on with the type the partner's leg declared. A sender that already uses
 * the partner's numbering (as RFC 3264 asks) is left alone. */
static void map_dtmf_pt(const struct relay_ep *ep, const struct relay_ep *out, int stream,
                        unsigned char *buf, size_t len)
{
    if (len < 12)
        return;
    int mine = atomic_load_explicit(&((struct relay_ep *)ep)->dtmf_pt[stream],
                                    memory_order_relaxed);
    if (mine < 0 || (buf[1] & 0x7f) != mine)
        return;
    int theirs = atomic_load_explicit(&((struct relay_ep *)out)->dtmf_pt[stream],
                                      memory_order_relaxed);
    if (theirs >= 0 && theirs != mine)
        buf[1] = (unsigned char)((buf[1] & 0x80) | theirs);
}

/* buf holds len bytes and has room for RELAY_PKT_MAX + SRTP_MAX_TRAILER_LEN. */
static void forward(struct relay *r, struct relay_ep *ep, struct relay_sock *in,
                    unsigned char *buf, size_t len, const struct sockaddr_storage *src,
                    socklen_t srclen)
{
    struct relay_peer *me = &ep->peer[in->stream][in->rtcp];
    long long t = now_ns();

    int fresh = source_check(r, ep, in, src, t);
    if (fresh < 0)
        return;
    srtp_t rx = ep->srtp_rx[in->stream];
    if (rx && !srtp_in(r, ep, rx, in->rtcp, buf, &len))
        return;
    if (fresh) {
        source_latch(ep, in, src, srclen);
        /* from the next packet on, the kernel forwards this direction (and
         * the partner's entry now sends to the latched address) */
        kernel_sync(r, ep, in->stream, in->rtcp);
        kernel_sync(r, ep->partner, in->stream, in->rtcp);
    }
    me->last_ns = t;
    atomic_fetch_add(&ep->rx, 1);
    if (!in->rtcp)
        atomic_store_explicit(&ep->last_rtp_ns, t, memory_order_relaxed);

    struct relay_ep *out = ep->partner;
    if (!out || in->stream >= out->nstreams) {
        atomic_fetch_add(&r->dropped[RELAY_DROP_NO_PEER], 1);
        return;
    }
    struct relay_peer *dst = &out->peer[in->stream][in->rtcp];
    const struct sockaddr_storage *to = dst->latched_len ? &dst->latched : &dst->sdp;
    socklen_t tolen = dst->latched_len ? dst->latched_len : dst->sdp_len;
    if (tolen == 0) {
        atomic_fetch_add(&r->dropped[RELAY_DROP_NO_PEER], 1);
        return;
    }
    if (!in->rtcp)
        map_dtmf_pt(ep, out, in->stream, buf, len);
    srtp_t tx = out->srtp_tx[in->stream];
    if (tx && !(len = srtp_out(tx, in->rtcp, buf, len))) {
        atomic_fetch_add(&r->dropped[RELAY_DROP_SRTP], 1);
        return;
    }
    if (sendto(out->sock[in->stream][in->rtcp]->fd, buf, len, 0, (const struct sockaddr *)to,
               tolen) < 0) {
        atomic_fetch_add(&r->dropped[RELAY_DROP_SEND_FAILED], 1);
        return;
    }
    atomic_fetch_add(&out->tx, 1);
    atomic_fetch_add(&r->forwarded, 1);
    atomic_fetch_add(&r->bytes, len);
}

static void *worker_main(void *arg)
{
    struct relay_worker *w = arg;
    struct relay *r = w->relay;
    struct epoll_event evs[64];
    /* recvmmsg: one syscall per ready socket takes whatever is queued (at
     * 50 packets/s per stream that is usually one), where a recvfrom loop
     * pays a second, failing call to learn the socket is empty */
    unsigned char bufs[BATCH][RELAY_PKT_MAX + SRTP_MAX_TRAILER_LEN];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage srcs[BATCH];
    for (int k = 0; k < BATCH; k++) {
        /* the trailer room stays out of what recvmmsg may fill */
        iov[k] = (struct iovec){.iov_base = bufs[k], .iov_len = RELAY_PKT_MAX};
        msgs[k].msg_hdr = (struct msghdr){.msg_iov = &iov[k], .msg_iovlen = 1};
    }

    bool ran_commands = false, fill = false;
    for (;;) {
        if (fill)
            fill = warm_fill(w);
        pthread_mutex_lock(&w->lock);
        w->sleeping = w->head == NULL && !ran_commands && !fill;
        int timeout = w->sleeping ? -1 : w->head || fill ? 0 : CMD_LINGER_MS;
        pthread_mutex_unlock(&w->lock);

        int n = epoll_wait(w->epfd, evs, 64, timeout);
        if (n < 0) {
            if (errno != EINTR) {
                log_error("relay: epoll_wait: %s", strerror(errno));
                return NULL;
            }
            n = 0;
        }

        pthread_mutex_lock(&w->lock);
        struct cmd *c = w->head;
        w->head = w->tail = NULL;
        w->sleeping = false;
        pthread_mutex_unlock(&w->lock);
        ran_commands = c != NULL;

        /* Peers and partners first, so this round's packets already go
         * where the latest SDP / bridge says; FREE last, so it does not pull
         * an endpoint out from under an event already fetched. */
        struct cmd *frees = NULL, **frees_tail = &frees;
        bool stop = false;
        while (c) {
            struct cmd *next = c->next;
            if (c->kind == CMD_FREE) {
                c->next = NULL;
                *frees_tail = c;
                frees_tail = &c->next;
            } else {
                if (c->kind == CMD_STOP)
                    stop = true;
                else if (c->kind == CMD_REFILL)
                    fill = true;
                else
                    run_command(w, c);
                free(c);
            }
            c = next;
        }

        for (int i = 0; i < n && !stop; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t v;
                if (read(w->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
                    log_error("relay: eventfd read: %s", strerror(errno));
                continue;
            }
            struct relay_sock *s = evs[i].data.ptr;
            /* acquire: pairs with the release in relay_ep_new(), so a
             * published endpoint is seen whole, stream and rtcp included */
            struct relay_ep *owner = atomic_load_explicit(&s->ep, memory_order_acquire);
            for (int k = 0; k < BATCH; k++) {
                msgs[k].msg_hdr.msg_name = &srcs[k];
                msgs[k].msg_hdr.msg_namelen = sizeof srcs[k];
            }
            /* level-triggered: anything left beyond BATCH comes back in the
             * next epoll_wait */
            int got = recvmmsg(s->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (!owner) {
                /* a warm port no SDP has named yet: nobody may send to it */
                if (got > 0)
                    atomic_fetch_add(&r->dropped[RELAY_DROP_FOREIGN], (uint64_t)got);
                continue;
            }
            for (int k = 0; k < got; k++)
                forward(r, owner, s, bufs[k], msgs[k].msg_len, &srcs[k],
                        msgs[k].msg_hdr.msg_namelen);
        }

        bool freed = frees != NULL;
        while (frees) {
            struct cmd *next = frees->next;
            run_command(w, frees);
            free(frees);
            frees = next;
        }
        if (stop)
            return NULL;
        /* A fill that found every pair in a call stopped ("stuck"), and no
         * later take may come to ask again (the calls just ended): the
         * pairs these frees gave back top the pool up from here. */
        if (freed && !fill) {
            pthread_mutex_lock(&w->lock);
            fill = w->nwarm < w->warm_target;
            pthread_mutex_unlock(&w->lock);
        }
    }
}

/* ---- public ------------------------------------------------------------ */

static pthread_once_t srtp_once = PTHREAD_ONCE_INIT;
static bool srtp_ready;

static void srtp_start(void)
{
    srtp_err_status_t st = srtp_init();
    srtp_ready = st == srtp_err_status_ok;
    if (!srtp_ready)
        log_error("relay: srtp_init failed (%d): SRTP unavailable", (int)st);
}

struct relay *relay_create(int port_min, int port_max, int nworkers, char *err, size_t errlen)
{
    pthread_once(&srtp_once, srtp_start);
    if (nworkers < 1)
        nworkers = 1;
    if (nworkers > RELAY_MAX_WORKERS)
        nworkers = RELAY_MAX_WORKERS;
    struct relay *r = xcalloc(1, sizeof *r);
    r->base = port_min + (port_min & 1); /* RTP on even ports (RFC 3550) */
    r->npairs = (port_max - r->base + 1) / 2;
    if (r->npairs < 2) {
        snprintf(err, errlen, "media port range %d-%d holds fewer than two port pairs", port_min,
                 port_max);
        free(r);
        return NULL;
    }
    r->pair_used = xcalloc((size_t)r->npairs, 1);
    pthread_mutex_init(&r->pool_lock, NULL);
    r->nworkers = nworkers;
    for (int i = 0; i < nworkers; i++) {
        struct relay_worker *w = &r->workers[i];
        w->relay = r;
        pthread_mutex_init(&w->lock, NULL);
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            snprintf(err, errlen, "cannot start relay worker: %s", strerror(errno));
            return NULL;
        }
    }
    return r;
}

void relay_destroy(struct relay *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nworkers; i++) {
        post(&r->workers[i], cmd_new(CMD_STOP, NULL));
        pthread_join(r->workers[i].thread, NULL);
        close(r->workers[i].epfd);
        close(r->workers[i].evfd);
        /* leftover commands: free what they would have freed */
        struct cmd *c = r->workers[i].head;
        while (c) {
            struct cmd *next = c->next;
            if (c->kind == CMD_FREE) {
                for (int s = 0; s < c->ep->nstreams; s++)
                    for (int k = 0; k < 2; k++)
                        sock_close(c->ep->sock[s][k]);
                ep_free_srtp(c->ep);
                free(c->ep->allow.nets);
                free(c->ep);
            }
            srtp_free(c->srtp_rx);
            srtp_free(c->srtp_tx);
            free(c->payload);
            free(c->nets);
            free(c);
            c = next;
        }
        for (int k = 0; k < r->workers[i].nwarm; k++) {
            sock_close(r->workers[i].warm[k].sock[0]);
            sock_close(r->workers[i].warm[k].sock[1]);
        }
        free(r->workers[i].warm);
        pthread_mutex_destroy(&r->workers[i].lock);
    }
    free(r->warm_address);
    /* after the workers: detaching the program drops its maps */
    relay_kernel_close(r->kernel);
    pthread_mutex_destroy(&r->pool_lock);
    free(r->pair_used);
    free(r);
}

void relay_stats(struct relay *r, struct relay_stats *out)
{
    out->ports_in_use = atomic_load(&r->ports_in_use);
    out->endpoints = atomic_load(&r->endpoints);
    out->packets_forwarded = atomic_load(&r->forwarded);
    out->packets_dropped = 0;
    for (int i = 0; i < RELAY_DROP_COUNT; i++) {
        out->dropped[i] = atomic_load(&r->dropped[i]);
        out->packets_dropped += out->dropped[i];
    }
    out->bytes_forwarded = atomic_load(&r->bytes);
    out->srtp_decrypted = atomic_load(&r->srtp_decrypted);
    out->srtp_auth_failures = atomic_load(&r->srtp_auth_failures);
    out->ports_warm = atomic_load(&r->ports_warm);
    out->warm_misses = atomic_load(&r->warm_misses);
    out->kernel_on = r->kernel != NULL;
    out->kernel_streams = atomic_load(&r->kernel_streams);
    out->kernel_packets = out->kernel_bytes = 0;
    if (r->kernel)
        relay_kernel_totals(r->kernel, &out->kernel_packets, &out->kernel_bytes);
}

int relay_kernel_start(struct relay *r, const char *address, const char *const *extra,
                       size_t nextra, char *desc, size_t desclen)
{
    r->kernel = relay_kernel_open(address, extra, nextra, desc, desclen);
    if (!r->kernel)
        return -1;
    relay_kernel_describe(r->kernel, desc, desclen);
    return 0;
}

int relay_warm(struct relay *r, const char *address, int pairs)
{
    if (pairs <= 0 || !address)
        return 0;
    /* a small range stays mostly for calls: a quarter of it at most */
    int cap = r->npairs / 4 / r->nworkers;
    int per = (pairs + r->nworkers - 1) / r->nworkers;
    if (per > cap)
        per = cap;
    if (per <= 0)
        return 0;
    free(r->warm_address);
    r->warm_address = xstrdup(address);
    int total = 0;
    for (int i = 0; i < r->nworkers; i++) {
        struct relay_worker *w = &r->workers[i];
        pthread_mutex_lock(&w->lock);
        w->warm = xcalloc((size_t)per, sizeof *w->warm);
        w->warm_target = per;
        w->refill_posted = true;
        pthread_mutex_unlock(&w->lock);
        /* at start-up, before any call: bound here so the daemon is warm
         * the moment it listens */
        while (warm_fill(w))
            ;
        pthread_mutex_lock(&w->lock);
        total += w->nwarm;
        pthread_mutex_unlock(&w->lock);
    }
    return total;
}

struct relay_ep *relay_ep_new(struct relay *r, const char *address, int nstreams,
                              struct relay_ep *near, const char *tag, char *err, size_t errlen)
{
    if (nstreams < 1 || nstreams > RELAY_MAX_STREAMS) {
        snprintf(err, errlen, "relay: %d media streams (1..%d supported)", nstreams,
                 RELAY_MAX_STREAMS);
        return NULL;
    }
    struct relay_ep *ep = xcalloc(1, sizeof *ep);
    ep->relay = r;
    ep->nstreams = 0;
    for (int i = 0; i < RELAY_MAX_STREAMS; i++)
        atomic_init(&ep->dtmf_pt[i], -1);
    snprintf(ep->tag, sizeof ep->tag, "%s", tag ? tag : "-");
    if (near) {
        ep->w = near->w;
    } else {
        ep->w = &r->workers[r->next_worker];
        r->next_worker = (r->next_worker + 1) % r->nworkers;
    }

    for (int s = 0; s < nstreams; s++) {
        struct relay_warm_pair wp;
        if (warm_take(ep->w, address, &wp)) {
            ep->port[s] = wp.port;
            for (int k = 0; k < 2; k++) {
                wp.sock[k]->stream = s;
                ep->sock[s][k] = wp.sock[k];
            }
            ep->nstreams++;
            atomic_fetch_add(&r->ports_in_use, 2);
            continue;
        }
        /* Cold: bound here, on the caller's thread. A pair whose ports are
         * taken by another program is skipped, not fatal; give up after one
         * sweep of the range. */
        int tries = r->npairs;
        for (;;) {
            int pair = tries-- > 0 ? pool_take(r) : -1;
            if (pair < 0) {
                snprintf(err, errlen, "relay: media port range exhausted");
                goto fail;
            }
            uint16_t port = (uint16_t)(r->base + pair * 2);
            int rtp = bind_udp(address, port);
            if (rtp == -2) {
                pool_give(r, pair);
                snprintf(err, errlen, "relay: bad media address \"%s\"", address);
                goto fail;
            }
            int rtcp = rtp >= 0 ? bind_udp(address, (uint16_t)(port + 1)) : -1;
            if (rtp == -3 || rtcp == -3) {
                /* out of file descriptors: no other pair will do better */
                if (rtp >= 0)
                    close(rtp);
                pool_give(r, pair);
                snprintf(err, errlen, "relay: out of file descriptors (raise LimitNOFILE / "
                                      "ulimit -n)");
                goto fail;
            }
            if (rtp < 0 || rtcp < 0) {
                if (rtp >= 0)
                    close(rtp);
                /* the cursor has moved past it: the next try is another */
                pool_give(r, pair);
                continue;
            }
            struct relay_sock *a = sock_new(ep->w, rtp, s, 0);
            struct relay_sock *b = a ? sock_new(ep->w, rtcp, s, 1) : NULL;
            if (!b) {
                snprintf(err, errlen, "relay: epoll add: %s", strerror(errno));
                if (!a) {
                    close(rtp);
                    close(rtcp);
                    pool_give(r, pair);
                    goto fail;
                }
                close(rtcp);
                /* a is in the epoll set: only the worker may free it */
                ep->port[s] = port;
                ep->sock[s][0] = a;
                ep->nstreams++;
                atomic_fetch_add(&r->ports_in_use, 1);
                goto fail;
            }
            ep->port[s] = port;
            ep->sock[s][0] = a;
            ep->sock[s][1] = b;
            ep->nstreams++;
            atomic_fetch_add(&r->ports_in_use, 2);
            break;
        }
    }
    atomic_fetch_add(&r->endpoints, 1);
    /* Publish: from here the worker forwards what arrives on them. */
    for (int s = 0; s < ep->nstreams; s++)
        for (int k = 0; k < 2; k++)
            atomic_store_explicit(&ep->sock[s][k]->ep, ep, memory_order_release);
    return ep;

fail:
    if (ep->nstreams == 0) {
        free(ep);
        return NULL;
    }
    /* Registered sockets (warm ones, or a cold pair) may be named by an
     * event the worker has already fetched: it frees them after its round,
     * as for a call that ended. */
    atomic_fetch_add(&r->endpoints, 1);
    post(ep->w, cmd_new(CMD_FREE, ep));
    return NULL;
}

int relay_ep_nstreams(const struct relay_ep *ep) { return ep->nstreams; }

long long relay_ep_last_rtp(const struct relay_ep *ep)
{
    long long t = atomic_load_explicit(&((struct relay_ep *)ep)->last_rtp_ns, memory_order_relaxed);
    for (int s = 0; s < ep->nstreams; s++) {
        long long k = kernel_last_rx(ep->relay, ep, s, 0);
        if (k > t)
            t = k;
    }
    return t;
}

uint16_t relay_ep_port(const struct relay_ep *ep, int stream)
{
    return stream >= 0 && stream < ep->nstreams ? ep->port[stream] : 0;
}

static socklen_t make_addr(const char *addr, uint16_t port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *v4 = (void *)out;
    struct sockaddr_in6 *v6 = (void *)out;
    if (port && inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        if (v4->sin_addr.s_addr == 0)
            return 0; /* 0.0.0.0: hold, nowhere to send */
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return sizeof *v4;
    }
    if (port && inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        return sizeof *v6;
    }
    return 0;
}

void relay_ep_set_peer(struct relay_ep *ep, int stream, const char *addr, uint16_t rtp_port,
                       uint16_t rtcp_port)
{
    if (stream < 0 || stream >= ep->nstreams)
        return;
    struct cmd *c = cmd_new(CMD_SET_PEER, ep);
    c->stream = stream;
    c->len = make_addr(addr, rtp_port, &c->rtp);
    if (c->len)
        make_addr(addr, rtcp_port, &c->rtcp);
    post(ep->w, c);
}

void relay_ep_set_dtmf_pt(struct relay_ep *ep, int stream, int pt)
{
    if (!ep || stream < 0 || stream >= ep->nstreams)
        return;
    atomic_store_explicit(&ep->dtmf_pt[stream], pt >= 0 && pt < 128 ? pt : -1,
                          memory_order_relaxed);
}

void relay_connect(struct relay_ep *a, struct relay_ep *b)
{
    struct relay_ep *any = a ? a : b;
    if (!any)
        return;
    struct cmd *c = cmd_new(CMD_CONNECT, a);
    c->other = b;
    post(any->w, c);
}

void relay_ep_allow_sip(struct relay_ep *ep, const struct sockaddr *sa)
{
    if (!ep || !sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return;
    struct cmd *c = cmd_new(CMD_ALLOW_SIP, ep);
    memcpy(&c->rtp, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                                 : sizeof(struct sockaddr_in6));
    post(ep->w, c);
}

void relay_ep_allow_nets(struct relay_ep *ep, const struct cidr *nets, size_t n)
{
    if (!ep)
        return;
    struct cmd *c = cmd_new(CMD_ALLOW_NETS, ep);
    if (n) {
        c->nets = xmalloc(n * sizeof *nets);
        memcpy(c->nets, nets, n * sizeof *nets);
        c->nnets = n;
    }
    post(ep->w, c);
}

void relay_ep_stats(const struct relay_ep *ep, struct relay_ep_stats *out)
{
    struct relay_ep *e = (struct relay_ep *)ep;
    out->rx_packets = atomic_load(&e->rx);
    out->tx_packets = atomic_load(&e->tx);
    /* what the kernel forwarded for this endpoint, read from its counters
     * (ports never change once the endpoint is made) */
    struct relay *r = e->relay;
    for (int s = 0; r->kernel && s < e->nstreams; s++)
        for (int k = 0; k < 2; k++) {
            struct rk_count c;
            struct rk_key key = kernel_key(r, e, s, k);
            if (relay_kernel_count(r->kernel, &key, &c) == 0) {
                out->rx_packets += c.rx_packets;
                out->tx_packets += c.tx_packets;
            }
        }
    out->srtp_decrypted = atomic_load(&e->srtp_decrypted);
    out->srtp_auth_failures = atomic_load(&e->srtp_auth_failures);
}

/* A libsrtp session for keys: every inbound (rx) or outbound SSRC. The
 * contexts are made here, on the caller's thread (key derivation, no
 * I/O), and handed to the worker. NULL if libsrtp refuses. */
static srtp_t srtp_session(const struct relay_srtp_keys *k, bool inbound)
{
    srtp_policy_t pol;
    memset(&pol, 0, sizeof pol);
    if (k->suite == RELAY_SRTP_AES_CM_128_HMAC_SHA1_80)
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
    else if (k->suite == RELAY_SRTP_AES_CM_128_HMAC_SHA1_32)
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&pol.rtp);
    else
        return NULL;
    /* SRTCP is HMAC-SHA1-80 for both suites (RFC 4568 section 6.2) */
    srtp_crypto_policy_set_rtcp_default(&pol.rtcp);
    pol.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
    unsigned char key[RELAY_SRTP_KEY_LEN];
    memcpy(key, k->key, sizeof key);
    pol.key = key;
    pol.window_size = 0; /* libsrtp's default replay window (128) */
    pol.next = NULL;
    srtp_t ctx = NULL;
    srtp_err_status_t st = srtp_create(&ctx, &pol);
    memset(key, 0, sizeof key);
    if (st != srtp_err_status_ok) {
        srtp_free(ctx);
        return NULL;
    }
    return ctx;
}

int relay_ep_set_srtp(struct relay_ep *ep, int stream, const struct relay_srtp_keys *rx,
                      const struct relay_srtp_keys *tx)
{
    if (!ep || stream < 0 || stream >= ep->nstreams)
        return -1;
    pthread_once(&srtp_once, srtp_start);
    if ((rx || tx) && !srtp_ready)
        return -1;
    srtp_t rctx = rx ? srtp_session(rx, true) : NULL;
    srtp_t tctx = tx ? srtp_session(tx, false) : NULL;
    if ((rx && !rctx) || (tx && !tctx)) {
        srtp_free(rctx);
        srtp_free(tctx);
        return -1;
    }
    struct cmd *c = cmd_new(CMD_SET_SRTP, ep);
    c->stream = stream;
    c->srtp_rx = rctx;
    c->srtp_tx = tctx;
    post(ep->w, c);
    return 0;
}

int relay_ep_send(struct relay_ep *ep, int stream, const void *buf, size_t len)
{
    if (stream < 0 || stream >= ep->nstreams)
        return -1;
    /* The peer addresses are the worker's; post the packet to it so it is
     * sent where the forwarded media goes. */
    struct cmd *c = cmd_new(CMD_SEND, ep);
    c->stream = stream;
    c->payload = xmalloc(len);
    memcpy(c->payload, buf, len);
    c->payload_len = len;
    post(ep->w, c);
    return 0;
}

void relay_ep_free(struct relay_ep *ep)
{
    if (ep)
        post(ep->w, cmd_new(CMD_FREE, ep));
}
