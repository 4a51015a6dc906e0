/* tcp_guard.c - SIP TCP connection caps and idle reaping (tcp_guard.h).
 *
 * State is touched by the control thread only: sofia accepts and closes
 * its TCP connections there. close() is called by every thread, so the
 * per-descriptor "tracked" flag it reads is atomic; a descriptor is tracked
 * only between the accept that made it and its close, and no other thread
 * can hold that number meanwhile. */
#include "sofia_types.h"

#include "tcp_guard.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"
#include "log_limit.h"
#include "xalloc.h"

#define MAX_LISTENERS 8
/* refusals handled in one accept() call before the loop gets a turn */
#define REFUSE_BATCH 64
/* how stale the count of open descriptors may get */
#define RECOUNT_MS 100

struct conn {
    atomic_bool on;
    bool queued; /* in the idle list: has not been seen to send yet */
    int prev, next;
    int64_t since_ms;
    unsigned char addr[16];
};

struct source {
    unsigned char addr[16];
    int count; /* 0: free slot */
};

static struct {
    bool started;
    su_root_t *root;
    su_timer_t *timer;
    int listeners[MAX_LISTENERS];
    int nlisteners;
    struct conn *conns; /* indexed by descriptor */
    atomic_int nconns;  /* read by close() on any thread */
    struct source *sources; /* open addressing, linear probing */
    uint32_t smask;
    int head, tail; /* idle list, oldest first */
    int spare;      /* kept open to drain one connection at EMFILE */
    int max_total, max_per_source, idle_ms, reserve;
    long open_fds; /* estimate, recounted every RECOUNT_MS */
    int64_t counted_ms;
    struct tcp_guard_stats st;
    struct log_limit refuse_log[TCPG_NREASONS];
} g = {.head = -1, .tail = -1, .spare = -1};

static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_close)(int);

/* Resolved before main() so close() never has to call dlsym. Under ASan
 * RTLD_NEXT finds the sanitizer's interceptors, which forward to libc. */
__attribute__((constructor)) static void resolve_real(void)
{
    real_accept = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    real_accept4 =
        (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
}

static int do_accept4(int l, struct sockaddr *sa, socklen_t *len, int flags)
{
    if (real_accept4)
        return real_accept4(l, sa, len, flags);
    return (int)syscall(SYS_accept4, l, sa, len, flags);
}

static int do_close(int fd)
{
    if (real_close)
        return real_close(fd);
    return (int)syscall(SYS_close, fd);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- sources ----------------------------------------------------------- */

static void addr_key(const struct sockaddr *sa, unsigned char key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        /* as a v4-mapped v6 address, so both families share one table */
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    }
}

static uint32_t source_slot(const unsigned char key[16])
{
    uint32_t i = hash_bytes(key, 16) & g.smask;
    while (g.sources[i].count && memcmp(g.sources[i].addr, key, 16) != 0)
        i = (i + 1) & g.smask;
    return i;
}

static void source_del(const unsigned char key[16])
{
    uint32_t i = source_slot(key);
    if (!g.sources[i].count || --g.sources[i].count)
        return;
    /* backward-shift deletion keeps every probe chain unbroken */
    for (uint32_t j = (i + 1) & g.smask; g.sources[j].count; j = (j + 1) & g.smask) {
        uint32_t home = hash_bytes(g.sources[j].addr, 16) & g.smask;
        if (((j - home) & g.smask) >= ((j - i) & g.smask)) {
            g.sources[i] = g.sources[j];
            g.sources[j].count = 0;
            i = j;
        }
    }
}

/* ---- descriptors ------------------------------------------------------- */

static long fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (rlim_t)1 << 30)
        return 1L << 30;
    return (long)rl.rlim_cur;
}

static long count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return g.open_fds;
    long n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static bool descriptors_short(void)
{
    int64_t now = now_ms();
    if (now - g.counted_ms >= RECOUNT_MS) {
        g.open_fds = count_open_fds();
        g.counted_ms = now;
    }
    /* a limit too small for the reserve (sip.max_calls far above what the
     * limit allows; main.c warns) still leaves SIP TCP half of it */
    long limit = fd_limit();
    long reserve = g.reserve < limit / 2 ? g.reserve : limit / 2;
    return limit - g.open_fds < reserve;
}

/* ---- tracking ---------------------------------------------------------- */

static void idle_unlink(int fd)
{
    struct conn *c = &g.conns[fd];
    if (!c->queued)
        return;
    if (c->prev >= 0)
        g.conns[c->prev].next = c->next;
    else
        g.head = c->next;
    if (c->next >= 0)
        g.conns[c->next].prev = c->prev;
    else
        g.tail = c->prev;
    c->queued = false;
}

static void rearm(void);

static void track(int fd, const unsigned char key[16])
{
    struct conn *c = &g.conns[fd];
    memcpy(c->addr, key, 16);
    c->since_ms = now_ms();
    c->queued = true;
    c->next = -1;
    c->prev = g.tail;
    if (g.tail >= 0)
        g.conns[g.tail].next = fd;
    else
        g.head = fd;
    g.tail = fd;
    uint32_t i = source_slot(key);
    memcpy(g.sources[i].addr, key, 16);
    g.sources[i].count++;
    g.st.connections++;
    g.open_fds++;
    atomic_store_explicit(&c->on, true, memory_order_relaxed);
    if (g.head == fd)
        rearm();
}

static void untrack(int fd)
{
    struct conn *c = &g.conns[fd];
    atomic_store_explicit(&c->on, false, memory_order_relaxed);
    idle_unlink(fd);
    source_del(c->addr);
    g.st.connections--;
    g.open_fds--;
}

static void refuse_log(enum tcp_guard_reason why, const struct sockaddr *sa)
{
    static const char *const what[TCPG_NREASONS] = {
        [TCPG_TOTAL] = "sip.tcp_max_connections reached",
        [TCPG_PER_SOURCE] = "sip.tcp_max_per_source reached",
        [TCPG_DESCRIPTORS] = "too few free descriptors (kept for calls)",
    };
    unsigned long suppressed;
    if (!log_limit_allow(&g.refuse_log[why], 1, time(NULL), &suppressed))
        return;
    char host[INET6_ADDRSTRLEN] = "-";
    int port = 0;
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    char src[INET6_ADDRSTRLEN + 8];
    snprintf(src, sizeof src, "%s:%d", host, port);
    log_security("sip-tcp-refused", src, NULL,
                 "TCP connection closed: %s (%llu SIP TCP connections open)%s", what[why],
                 (unsigned long long)g.st.connections, log_limit_note(suppressed));
}

/* -1 to admit, else why not */
static int admission(int fd, const unsigned char key[16])
{
    if (fd >= atomic_load_explicit(&g.nconns, memory_order_relaxed))
        return TCPG_DESCRIPTORS;
    if (g.st.connections >= (uint64_t)g.max_total)
        return TCPG_TOTAL;
    if (g.sources[source_slot(key)].count >= g.max_per_source)
        return TCPG_PER_SOURCE;
    if (descriptors_short())
        return TCPG_DESCRIPTORS;
    return -1;
}

static bool is_listener(int fd)
{
    for (int i = 0; i < g.nlisteners; i++)
        if (g.listeners[i] == fd)
            return true;
    return false;
}

/* Out of descriptors: the pending connection would keep the listen
 * socket readable and the loop spinning. Give up the spare descriptor
 * for long enough to take the connection off the queue and close it. */
static void drain_one(int l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (g.spare >= 0)
        do_close(g.spare);
    g.spare = -1;
    int fd = do_accept4(l, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
    if (fd >= 0) {
        do_close(fd);
        g.st.refused[TCPG_DESCRIPTORS]++;
        refuse_log(TCPG_DESCRIPTORS, (struct sockaddr *)&ss);
    }
    g.spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static int guarded_accept(int l, struct sockaddr *sa, socklen_t *len, int flags)
{
    for (int refused = 0; refused < REFUSE_BATCH; refused++) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof ss;
        int fd = do_accept4(l, (struct sockaddr *)&ss, &sslen, flags);
        if (fd < 0) {
            if (errno != EMFILE && errno != ENFILE)
                return -1;
            drain_one(l);
            continue;
        }
        unsigned char key[16];
        addr_key((struct sockaddr *)&ss, key);
        int why = admission(fd, key);
        if (why < 0) {
            track(fd, key);
            if (sa && len) {
                memcpy(sa, &ss, *len < sslen ? *len : sslen);
                *len = sslen;
            }
            return fd;
        }
        do_close(fd);
        g.st.refused[why]++;
        refuse_log((enum tcp_guard_reason)why, (struct sockaddr *)&ss);
    }
    /* more may be queued: the listen socket stays readable, the loop comes
     * back after serving everything else */
    errno = EAGAIN;
    return -1;
}

int accept4(int l, struct sockaddr *sa, socklen_t *len, int flags)
{
    if (g.started && is_listener(l))
        return guarded_accept(l, sa, len, flags);
    return do_accept4(l, sa, len, flags);
}

int accept(int l, struct sockaddr *sa, socklen_t *len)
{
    if (g.started && is_listener(l))
        return guarded_accept(l, sa, len, 0);
    if (real_accept)
        return real_accept(l, sa, len);
    return (int)syscall(SYS_accept4, l, sa, len, 0);
}

int close(int fd)
{
    if (fd >= 0 && fd < atomic_load_explicit(&g.nconns, memory_order_acquire) &&
        atomic_load_explicit(&g.conns[fd].on, memory_order_relaxed))
        untrack(fd);
    return do_close(fd);
}

/* ---- idle reaper ------------------------------------------------------- */

static bool has_received(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    /* a kernel too old to report the byte count (before 4.1) gets no
     * reaping rather than a guess */
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received)
        return true;
    return ti.tcpi_bytes_received > 0;
}

static void on_timer(struct app *app, su_timer_t *t, void *arg)
{
    int64_t now = now_ms();
    while (g.head >= 0 && g.conns[g.head].since_ms + g.idle_ms <= now) {
        int fd = g.head;
        idle_unlink(fd);
        if (has_received(fd))
            continue; /* it spoke: sofia's own timers take over */
        /* sofia sees end-of-stream and closes the transport itself */
        shutdown(fd, SHUT_RDWR);
        g.st.idle_closed++;
    }
    rearm();
}

static void rearm(void)
{
    if (!g.timer)
        return;
    if (g.head < 0) {
        su_timer_reset(g.timer);
        return;
    }
    int64_t wait = g.conns[g.head].since_ms + g.idle_ms - now_ms();
    su_timer_set_interval(g.timer, on_timer, NULL, (su_duration_t)(wait > 0 ? wait : 0));
}

/* ---- lifecycle --------------------------------------------------------- */

static bool is_listening_on(int fd, int port)
{
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) != 0 || !v)
        return false;
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) != 0 || v != SOCK_STREAM)
        return false;
    struct sockaddr_storage ss;
    len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return false;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port) == port;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == port;
    return false;
}

int tcp_guard_start(su_root_t *root, int port)
{
    struct rlimit rl;
    long n = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
        rl.rlim_max < (rlim_t)n)
        n = (long)rl.rlim_max;
    g.conns = xcalloc((size_t)n, sizeof *g.conns);
    uint32_t cap = 1024;
    while (cap < (uint32_t)n * 2)
        cap <<= 1;
    g.sources = xcalloc(cap, sizeof *g.sources);
    g.smask = cap - 1;

    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != dirfd(d) && g.nlisteners < MAX_LISTENERS &&
            is_listening_on(fd, port))
            g.listeners[g.nlisteners++] = fd;
    }
    if (d)
        closedir(d);
    if (!g.nlisteners) {
        free(g.conns);
        free(g.sources);
        g.conns = NULL;
        g.sources = NULL;
        return -1;
    }
    g.spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    g.root = root;
    g.timer = su_timer_create(su_root_task(root), 0);
    g.open_fds = count_open_fds();
    g.counted_ms = now_ms();
    /* published last: from here on close() may index conns */
    atomic_store_explicit(&g.nconns, (int)n, memory_order_release);
    g.started = true;
    return 0;
}

void tcp_guard_configure(int max_total, int max_per_source, int idle_timeout, int reserve)
{
    g.max_total = max_total;
    g.max_per_source = max_per_source;
    g.idle_ms = idle_timeout * 1000;
    g.reserve = reserve;
    g.st.reserve = (uint64_t)reserve;
    rearm();
}

void tcp_guard_stop(void)
{
    if (!g.started)
        return;
    /* sofia has closed its transports by now; anything left just stops
     * being watched */
    g.started = false;
    if (g.timer)
        su_timer_destroy(g.timer);
    g.timer = NULL;
}

void tcp_guard_stats(struct tcp_guard_stats *out) { *out = g.st; }
