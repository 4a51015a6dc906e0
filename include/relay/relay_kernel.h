/* relay_kernel.h - the relay's eBPF fast path (SPEC section 14), used by
 * relay.c only: loads the tc program carried in the binary, attaches it
 * (tcx ingress) to the interface holding media.address and to lo, and
 * gives access to its maps.
 *
 * Ownership: the attachment is a bpf_link held by this process's file
 * descriptor, never pinned, so the kernel detaches the program and frees
 * its maps when the daemon exits for any reason, SIGKILL included: a dead
 * daemon leaves nothing that forwards packets. Each daemon loads its own
 * program and maps; its program only touches packets for its own sockets
 * and passes the rest on (TCX_NEXT), so daemons on one host stay apart. */
#ifndef SIPXFER_RELAY_KERNEL_H
#define SIPXFER_RELAY_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay_kernel_abi.h"

struct relay_kernel;

/* NULL, with why filled (one sentence for the log), where the kernel path
 * cannot run: address not a concrete IPv4 address, no interface holds it,
 * it or one of the extra interfaces (names, nextra of them) is missing or
 * not Ethernet, BPF or tcx refused. Otherwise the program is attached to
 * the address's interface, lo and the extra ones. */
struct relay_kernel *relay_kernel_open(const char *address, const char *const *extra, size_t nextra,
                                       char *why, size_t whylen);
/* Detaches the program; the maps go with it. */
void relay_kernel_close(struct relay_kernel *k);

/* Whether addr (network order) is this host's: 127/8 or an address an
 * interface held at start-up. */
bool relay_kernel_is_local(const struct relay_kernel *k, uint32_t addr);
/* The address relay sockets are bound to, network order. */
uint32_t relay_kernel_addr(const struct relay_kernel *k);
/* "prog id P, maps fwd F count C, on lo (ifindex 1)": for the log. */
void relay_kernel_describe(const struct relay_kernel *k, char *out, size_t outlen);

/* Install or replace (atomically) what happens to key's packets; creates
 * the counters of key and of the out socket if missing. 0 or -errno. */
int relay_kernel_set(struct relay_kernel *k, const struct rk_key *key, const struct rk_fwd *f);
/* Remove key's forwarding entry (its packets go to the relay thread). */
void relay_kernel_unset(struct relay_kernel *k, const struct rk_key *key);
/* Remove key's counters (its socket is closing). */
void relay_kernel_forget(struct relay_kernel *k, const struct rk_key *key);
/* key's counters; -1 if it has none. Any thread. */
int relay_kernel_count(struct relay_kernel *k, const struct rk_key *key, struct rk_count *out);
/* All the program forwarded, summed over CPUs. Any thread. */
void relay_kernel_totals(struct relay_kernel *k, uint64_t *packets, uint64_t *bytes);

#endif
