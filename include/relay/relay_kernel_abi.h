/* relay_kernel_abi.h - the maps shared by the relay (relay_kernel.c) and
 * its tc program (src/bpf/relay_fast.bpf.c). Addresses and ports are in
 * network byte order, as they sit in the packet. IPv4 only: IPv6 streams
 * stay in userspace. */
#ifndef SIPXFER_RELAY_KERNEL_ABI_H
#define SIPXFER_RELAY_KERNEL_ABI_H

#include <linux/types.h>

/* A relay socket: where a stream's packets arrive (or leave from). */
struct rk_key {
    __u32 addr;
    __u16 port;
    __u16 pad; /* zero */
};

/* What to do with a packet that arrives on a key's socket: only one from
 * src_addr:src_port (the latched source) is rewritten to leave from
 * out_addr:out_port (the partner leg's socket) toward dst_addr:dst_port;
 * any other goes up to the relay thread. pt_from/pt_to: RFC 4733
 * telephone-event payload types to renumber (pt_from 0xff: none). */
struct rk_fwd {
    __u32 src_addr;
    __u16 src_port;
    __u16 out_port;
    __u32 out_addr;
    __u32 dst_addr;
    __u16 dst_port;
    __u8 pt_from, pt_to;
    __u8 flags; /* RK_LOCAL */
    __u8 pad[3];
};

/* dst_addr is this host's: the stack delivers the rewritten packet. Else
 * it leaves by the route to dst_addr (bpf_fib_lookup, which needs IPv4
 * forwarding enabled on the interface it came in on: where it is not, or
 * the neighbour is unknown, the relay thread sends it). */
#define RK_LOCAL 1

/* Per socket, created by the relay when it first installs a stream that
 * uses the socket, removed when the socket closes: rx counts packets
 * forwarded in the kernel that arrived on it, tx those that left from it. */
struct rk_count {
    __u64 rx_packets;
    __u64 rx_bytes; /* UDP payload */
    __u64 tx_packets;
    __u64 last_rx_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
};

/* rk_total, a per-CPU array of one: what the program forwarded. */
struct rk_total {
    __u64 packets;
    __u64 bytes;
};

#define RK_MAX_STREAMS 65536 /* fwd entries: one per relay socket at most */

#endif
