/* relay_kernel.c - loading, attaching and driving the relay's tc program
 * (src/bpf/relay_fast.bpf.c); see relay_kernel.h for the ownership rules. */
#include "relay_kernel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include "log.h"
#include "xalloc.h"

/* linux/bpf.h of Debian 12 (6.1) predates tcx (Linux 6.6) */
#define SIPXFER_BPF_TCX_INGRESS 46

extern const unsigned char relay_fast_obj[];
extern const size_t relay_fast_obj_len;

/* media.address's interface, lo, and up to 8 more (media.kernel_interfaces) */
#define MAX_LINKS 10

struct relay_kernel {
    struct bpf_object *obj;
    int fwd_fd, count_fd, total_fd;
    int link[MAX_LINKS];
    int ifindex[MAX_LINKS];
    char ifname[MAX_LINKS][IF_NAMESIZE];
    int nlinks;
    uint32_t addr;
    unsigned prog_id, fwd_id, count_id;
    int ncpus;
    /* this host's IPv4 addresses at start-up (127/8 is always local) */
    uint32_t *local;
    size_t nlocal;
};

/* libbpf's own messages (verifier log included) at debug level only: the
 * one line that matters is the caller's "why". */
static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (log_get_level() < LOG_DEBUG)
        return 0;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    if (n && line[n - 1] == '\n')
        line[n - 1] = 0;
    log_msg(LOG_DEBUG, NULL, "libbpf: %s", line);
    return 0;
}

/* The interface that holds addr (network order), into name. */
static int iface_of(uint32_t addr, char name[IF_NAMESIZE])
{
    struct ifaddrs *ifs, *i;
    if (getifaddrs(&ifs) < 0)
        return -1;
    int found = -1;
    for (i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
            continue;
        if (((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr == addr) {
            snprintf(name, IF_NAMESIZE, "%s", i->ifa_name);
            found = 0;
            break;
        }
    }
    freeifaddrs(ifs);
    return found;
}

/* The link type of interface name (ARPHRD_*), or -1. The program reads an
 * Ethernet header at the start of every packet: on an L3 device (a tunnel,
 * WireGuard) there is none, so it must not be attached there. */
static int link_type(const char *name)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    int type = ioctl(fd, SIOCGIFHWADDR, &ifr) < 0 ? -1 : ifr.ifr_hwaddr.sa_family;
    close(fd);
    return type;
}

static void learn_local(struct relay_kernel *k)
{
    struct ifaddrs *ifs, *i;
    if (getifaddrs(&ifs) < 0)
        return;
    for (i = ifs; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
            k->local = xrealloc(k->local, (k->nlocal + 1) * sizeof *k->local);
            k->local[k->nlocal++] = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
        }
    freeifaddrs(ifs);
}

bool relay_kernel_is_local(const struct relay_kernel *k, uint32_t addr)
{
    if ((ntohl(addr) >> 24) == 127)
        return true;
    for (size_t i = 0; i < k->nlocal; i++)
        if (k->local[i] == addr)
            return true;
    return false;
}

static int tcx_attach(int prog_fd, int ifindex)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.link_create.prog_fd = (__u32)prog_fd;
    attr.link_create.target_ifindex = (__u32)ifindex;
    attr.link_create.attach_type = SIPXFER_BPF_TCX_INGRESS;
    int fd = (int)syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof attr);
    return fd < 0 ? -errno : fd;
}

static unsigned obj_id(int fd)
{
    struct bpf_prog_info info;
    memset(&info, 0, sizeof info);
    __u32 len = sizeof info;
    /* bpf_prog_info and bpf_map_info both start with type, id */
    if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
        return 0;
    return info.id;
}

static int map_fd(struct relay_kernel *k, const char *name)
{
    struct bpf_map *m = bpf_object__find_map_by_name(k->obj, name);
    return m ? bpf_map__fd(m) : -1;
}

struct relay_kernel *relay_kernel_open(const char *address, const char *const *extra, size_t nextra,
                                       char *why, size_t whylen)
{
    struct in_addr a;
    if (!address || inet_pton(AF_INET, address, &a) != 1) {
        snprintf(why, whylen, "media.address %s is not an IPv4 address (the kernel path is "
                              "IPv4 only)", address ? address : "(none)");
        return NULL;
    }
    if (a.s_addr == htonl(INADDR_ANY)) {
        snprintf(why, whylen, "media.address is 0.0.0.0: the kernel path needs the one address "
                              "relay sockets are bound to");
        return NULL;
    }
    struct relay_kernel *k = xcalloc(1, sizeof *k);
    k->addr = a.s_addr;
    for (int i = 0; i < MAX_LINKS; i++)
        k->link[i] = -1;
    char ifname[IF_NAMESIZE];
    if (iface_of(a.s_addr, ifname) < 0) {
        snprintf(why, whylen, "no interface holds media.address %s", address);
        goto fail;
    }
    int type = link_type(ifname);
    if (type != ARPHRD_ETHER && type != ARPHRD_LOOPBACK) {
        snprintf(why, whylen, "media.address's interface %s is not Ethernet (link type %d): the "
                              "tc program rewrites Ethernet frames", ifname, type);
        goto fail;
    }
    libbpf_set_print(libbpf_log);
    LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = "sipxfer_relay");
    k->obj = bpf_object__open_mem(relay_fast_obj, relay_fast_obj_len, &oo);
    if (!k->obj) {
        snprintf(why, whylen, "cannot open the tc program: %s", strerror(errno));
        goto fail;
    }
    int err = bpf_object__load(k->obj);
    if (err) {
        snprintf(why, whylen, "the kernel refused the tc program: %s%s", strerror(-err),
                 -err == EPERM ? " (needs CAP_BPF and CAP_NET_ADMIN)" : "");
        goto fail;
    }
    struct bpf_program *prog = bpf_object__find_program_by_name(k->obj, "sipxfer_fast");
    k->fwd_fd = map_fd(k, "rk_fwd");
    k->count_fd = map_fd(k, "rk_count");
    k->total_fd = map_fd(k, "rk_total");
    if (!prog || k->fwd_fd < 0 || k->count_fd < 0 || k->total_fd < 0) {
        snprintf(why, whylen, "the tc program lacks its maps");
        goto fail;
    }
    int pfd = bpf_program__fd(prog);
    /* the address's interface, lo for senders on this host (their packets
     * to a local address never cross the other interface), and the ones
     * the operator names (another NIC media comes in on) */
    if (nextra > MAX_LINKS - 2) {
        snprintf(why, whylen, "media.kernel_interfaces names %zu interfaces, at most %d", nextra,
                 MAX_LINKS - 2);
        goto fail;
    }
    const char *names[MAX_LINKS] = {ifname, "lo"};
    int nnames = 2;
    for (size_t i = 0; i < nextra; i++)
        names[nnames++] = extra[i];
    for (int i = 0; i < nnames; i++) {
        bool again = false;
        for (int j = 0; j < i; j++)
            again = again || strcmp(names[j], names[i]) == 0;
        if (again)
            continue;
        int idx = (int)if_nametoindex(names[i]);
        if (!idx) {
            if (i < 2)
                continue;
            snprintf(why, whylen, "media.kernel_interfaces names %s, which is not an interface "
                                  "here", names[i]);
            goto fail;
        }
        if (i >= 2) {
            int type = link_type(names[i]);
            if (type != ARPHRD_ETHER) {
                snprintf(why, whylen, "media.kernel_interfaces names %s, which is not Ethernet "
                                      "(link type %d): the tc program rewrites Ethernet frames",
                         names[i], type);
                goto fail;
            }
        }
        int fd = tcx_attach(pfd, idx);
        if (fd < 0) {
            snprintf(why, whylen, "tcx attach to %s refused: %s%s", names[i], strerror(-fd),
                     -fd == EINVAL ? " (tcx needs Linux 6.6 or later)" : "");
            goto fail;
        }
        k->link[k->nlinks] = fd;
        k->ifindex[k->nlinks] = idx;
        snprintf(k->ifname[k->nlinks], IF_NAMESIZE, "%s", names[i]);
        k->nlinks++;
    }
    k->prog_id = obj_id(pfd);
    k->fwd_id = obj_id(k->fwd_fd);
    k->count_id = obj_id(k->count_fd);
    learn_local(k);
    k->ncpus = libbpf_num_possible_cpus();
    if (k->ncpus < 1)
        k->ncpus = 1;
    return k;
fail:
    relay_kernel_close(k);
    return NULL;
}

void relay_kernel_close(struct relay_kernel *k)
{
    if (!k)
        return;
    for (int i = 0; i < MAX_LINKS; i++)
        if (k->link[i] >= 0)
            close(k->link[i]);
    if (k->obj)
        bpf_object__close(k->obj);
    free(k->local);
    free(k);
}

uint32_t relay_kernel_addr(const struct relay_kernel *k) { return k->addr; }

void relay_kernel_describe(const struct relay_kernel *k, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "prog id %u, maps rk_fwd id %u rk_count id %u, on", k->prog_id,
                     k->fwd_id, k->count_id);
    for (int i = 0; i < k->nlinks && n > 0 && (size_t)n < outlen; i++)
        n += snprintf(out + n, outlen - (size_t)n, " %s (ifindex %d)", k->ifname[i],
                      k->ifindex[i]);
}

int relay_kernel_set(struct relay_kernel *k, const struct rk_key *key, const struct rk_fwd *f)
{
    static const struct rk_count zero;
    struct rk_key out = {.addr = f->out_addr, .port = f->out_port};
    /* counters first, so the first packet the entry lets through counts */
    if (bpf_map_update_elem(k->count_fd, key, &zero, BPF_NOEXIST) < 0 && errno != EEXIST)
        return -errno;
    if (bpf_map_update_elem(k->count_fd, &out, &zero, BPF_NOEXIST) < 0 && errno != EEXIST)
        return -errno;
    if (bpf_map_update_elem(k->fwd_fd, key, f, BPF_ANY) < 0)
        return -errno;
    return 0;
}

void relay_kernel_unset(struct relay_kernel *k, const struct rk_key *key)
{
    bpf_map_delete_elem(k->fwd_fd, key);
}

void relay_kernel_forget(struct relay_kernel *k, const struct rk_key *key)
{
    bpf_map_delete_elem(k->count_fd, key);
}

int relay_kernel_count(struct relay_kernel *k, const struct rk_key *key, struct rk_count *out)
{
    return bpf_map_lookup_elem(k->count_fd, key, out) < 0 ? -1 : 0;
}

void relay_kernel_totals(struct relay_kernel *k, uint64_t *packets, uint64_t *bytes)
{
    *packets = *bytes = 0;
    struct rk_total *v = xcalloc((size_t)k->ncpus, sizeof *v);
    __u32 zero = 0;
    if (bpf_map_lookup_elem(k->total_fd, &zero, v) == 0)
        for (int i = 0; i < k->ncpus; i++) {
            *packets += v[i].packets;
            *bytes += v[i].bytes;
        }
    free(v);
}
