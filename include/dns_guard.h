/* dns_guard.h - no blocking name resolution on the control thread.
 *
 * sofia's transport resolves a reply's destination with glibc's blocking
 * getaddrinfo() on the thread that runs the su_root; a Via that names a host
 * (maddr=<name>, the raw Via of a request nta could not parse, a SIP/7.0
 * request) therefore stalled every call for as long as DNS took to give up.
 * This module defines getaddrinfo() and getnameinfo() in the executable, so
 * the calls of libsofia (and of every other library) land here first. Once
 * dns_guard_arm() ran on a thread, lookups made on that thread are
 * numeric-only: a name fails at once with EAI_NONAME, as if DNS had said
 * NXDOMAIN, is counted and logged (WARN, at most one line a second). Other
 * threads (curl's resolver threads) are passed through untouched. Names the
 * daemon needs at run time go through asynchronous resolvers instead:
 * sofia's sres for SIP, curl's threaded resolver for HTTP. */
#ifndef SIPXFER_DNS_GUARD_H
#define SIPXFER_DNS_GUARD_H

#include <stdbool.h>

/* From now on, lookups on the calling thread are numeric-only. */
void dns_guard_arm(void);

/* Lookups of a name refused so far (any thread that armed the guard). */
unsigned long long dns_guard_blocked(void);

/* text is an IPv4 or IPv6 address literal (IPv6 with or without [] and an
 * optional %scope). Exposed for unit tests and for sip_guard. */
bool dns_guard_is_numeric(const char *text);

#endif
