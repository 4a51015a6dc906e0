/* relay_fast.bpf.c - the relay's kernel fast path (SPEC section 14): a tc
 * (tcx ingress) program that forwards a latched stream's packets without
 * waking the relay thread.
 *
 * A packet whose destination is one of this daemon's relay sockets and
 * whose source is that stream's latched source is rewritten (addresses,
 * ports, checksums, telephone-event type) to leave from the partner leg's
 * socket toward its peer, then handed to the local stack (peer on this
 * host) or redirected out of the interface the route names. Everything
 * else - other sources, first packets, IP options, fragments, IPv6,
 * another daemon's sockets - goes on unchanged (TCX_NEXT): to the next
 * program, then to the relay thread and its latching rules, so the fast
 * path opens no RTP-bleed hole. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "relay_kernel_abi.h"

#define TCX_NEXT -1
#define TCX_PASS 0
#define AF_INET 2
/* lo is ifindex 1 in every network namespace (the kernel's LOOPBACK_IFINDEX) */
#define LOOPBACK_IFINDEX 1

#define IP_OFF ((int)sizeof(struct ethhdr))
#define UDP_OFF (IP_OFF + (int)sizeof(struct iphdr))
#define IP_CSUM (IP_OFF + (int)offsetof(struct iphdr, check))
#define IP_SRC (IP_OFF + (int)offsetof(struct iphdr, saddr))
#define IP_DST (IP_OFF + (int)offsetof(struct iphdr, daddr))
#define UDP_CSUM (UDP_OFF + (int)offsetof(struct udphdr, check))
#define UDP_SRC (UDP_OFF + (int)offsetof(struct udphdr, source))
#define UDP_DST (UDP_OFF + (int)offsetof(struct udphdr, dest))
#define RTP_OFF (UDP_OFF + (int)sizeof(struct udphdr))

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, RK_MAX_STREAMS);
    __type(key, struct rk_key);
    __type(value, struct rk_fwd);
} rk_fwd SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, RK_MAX_STREAMS);
    __type(key, struct rk_key);
    __type(value, struct rk_count);
} rk_count SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct rk_total);
} rk_total SEC(".maps");

SEC("tc")
int sipxfer_fast(struct __sk_buff *skb)
{
    /* one datagram per packet: a GRO super-packet (UDP GRO forwarding) has
     * several under one header, which a header rewrite would mangle */
    if (skb->gso_segs > 1)
        return TCX_NEXT;
    void *data = (void *)(long)skb->data;
    void *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return TCX_NEXT;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
        (ip->frag_off & bpf_htons(0x3fff)))
        return TCX_NEXT;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end)
        return TCX_NEXT;

    struct rk_key key = {.addr = ip->daddr, .port = udp->dest};
    struct rk_fwd *f = bpf_map_lookup_elem(&rk_fwd, &key);
    if (!f || f->src_addr != ip->saddr || f->src_port != udp->source)
        return TCX_NEXT;
    /* a copy: userspace replaces the entry as a whole (re-INVITE,
     * transfer), this packet goes by one version of it */
    struct rk_fwd fw = *f;
    __u32 old_saddr = ip->saddr, old_daddr = ip->daddr;
    __u16 old_sport = udp->source, old_dport = udp->dest;
    __u16 udp_len = bpf_ntohs(udp->len);
    __u16 tot_len = bpf_ntohs(ip->tot_len);
    if (udp_len < sizeof(struct udphdr))
        return TCX_NEXT;

    /* Where it goes. A local peer is delivered by the stack after the
     * rewrite, but only for a packet that came in on lo: one from another
     * host, now with one of our addresses as its source (and perhaps
     * 127.x as its destination), is a martian to the input route of a real
     * interface and would be dropped after we counted it, so those go to
     * the relay thread. A remote peer needs a route (looked up as the
     * stack would forward from the incoming interface, so the way out may
     * be another interface) and a known neighbour, else the relay thread
     * sends it (and the kernel learns the neighbour). */
    struct bpf_fib_lookup fib = {};
    long rc = BPF_FIB_LKUP_RET_NOT_FWDED;
    if (fw.flags & RK_LOCAL) {
        if (skb->ingress_ifindex != LOOPBACK_IFINDEX)
            return TCX_NEXT;
    } else {
        fib.family = AF_INET;
        fib.l4_protocol = IPPROTO_UDP;
        fib.tot_len = tot_len;
        fib.ipv4_src = fw.out_addr;
        fib.ipv4_dst = fw.dst_addr;
        fib.ifindex = skb->ingress_ifindex;
        rc = bpf_fib_lookup(skb, &fib, sizeof fib, 0);
        if (rc != BPF_FIB_LKUP_RET_SUCCESS)
            return TCX_NEXT;
    }

    /* RFC 4733 events keep their meaning between legs that number them
     * differently (as the relay thread does): RTP byte 1, low 7 bits */
    if (fw.pt_from != 0xff && udp_len >= sizeof(struct udphdr) + 12) {
        __u16 word;
        if (bpf_skb_load_bytes(skb, RTP_OFF, &word, 2) == 0) {
            __u8 *b = (__u8 *)&word;
            if ((b[1] & 0x7f) == fw.pt_from) {
                __u16 nw = word;
                ((__u8 *)&nw)[1] = (__u8)((b[1] & 0x80) | (fw.pt_to & 0x7f));
                bpf_l4_csum_replace(skb, UDP_CSUM, word, nw, BPF_F_MARK_MANGLED_0 | 2);
                bpf_skb_store_bytes(skb, RTP_OFF, &nw, 2, 0);
            }
        }
    }
    __u16 new_sport = fw.out_port, new_dport = fw.dst_port;
    bpf_l4_csum_replace(skb, UDP_CSUM, old_saddr, fw.out_addr,
                        BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
    bpf_l4_csum_replace(skb, UDP_CSUM, old_daddr, fw.dst_addr,
                        BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
    bpf_l4_csum_replace(skb, UDP_CSUM, old_sport, new_sport, BPF_F_MARK_MANGLED_0 | 2);
    bpf_l4_csum_replace(skb, UDP_CSUM, old_dport, new_dport, BPF_F_MARK_MANGLED_0 | 2);
    bpf_l3_csum_replace(skb, IP_CSUM, old_saddr, fw.out_addr, 4);
    bpf_l3_csum_replace(skb, IP_CSUM, old_daddr, fw.dst_addr, 4);
    bpf_skb_store_bytes(skb, IP_SRC, &fw.out_addr, 4, 0);
    bpf_skb_store_bytes(skb, IP_DST, &fw.dst_addr, 4, 0);
    bpf_skb_store_bytes(skb, UDP_SRC, &new_sport, 2, 0);
    bpf_skb_store_bytes(skb, UDP_DST, &new_dport, 2, 0);

    __u64 payload = udp_len - sizeof(struct udphdr);
    struct rk_count *c = bpf_map_lookup_elem(&rk_count, &key);
    if (c) {
        __sync_fetch_and_add(&c->rx_packets, 1);
        __sync_fetch_and_add(&c->rx_bytes, payload);
        c->last_rx_ns = bpf_ktime_get_ns();
    }
    struct rk_key out = {.addr = fw.out_addr, .port = fw.out_port};
    c = bpf_map_lookup_elem(&rk_count, &out);
    if (c)
        __sync_fetch_and_add(&c->tx_packets, 1);
    __u32 zero = 0;
    struct rk_total *t = bpf_map_lookup_elem(&rk_total, &zero);
    if (t) {
        t->packets++;
        t->bytes += payload;
    }

    if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
        bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0);
        bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0);
        return bpf_redirect(fib.ifindex, 0);
    }
    return TCX_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
