/* tcp_guard.h - caps and idle reaping for the SIP TCP listener.
 *
 * sofia's tport accepts every TCP connection it is offered and, in the
 * Debian snapshot, never arms an idle timer for one that has not sent a
 * byte. tcp_guard interposes accept()/accept4()/close() in the executable
 * (libsofia's calls resolve to these definitions) and, for the SIP listen
 * sockets only, closes at once a connection over the total or per-source
 * cap or one that would eat into the descriptors kept for calls; it also
 * shuts down connections still silent after the idle timeout (sofia then
 * closes them). Every other socket of the process passes straight through. */
#ifndef SIPXFER_TCP_GUARD_H
#define SIPXFER_TCP_GUARD_H

#include <stdint.h>

#include "sofia_types.h"

enum tcp_guard_reason { TCPG_TOTAL, TCPG_PER_SOURCE, TCPG_DESCRIPTORS, TCPG_NREASONS };

struct tcp_guard_stats {
    uint64_t connections;            /* SIP TCP connections open now */
    uint64_t refused[TCPG_NREASONS]; /* closed at accept, by reason */
    uint64_t idle_closed;            /* silent past the idle timeout */
    uint64_t reserve;                /* descriptors kept free for calls */
};

/* Adopt the listening TCP sockets bound to port (call after nua_create)
 * and start the idle reaper on root. 0, or -1 when none was found. */
int tcp_guard_start(su_root_t *root, int port);
/* Caps and timeout (seconds); reserve: descriptors that must stay free. */
void tcp_guard_configure(int max_total, int max_per_source, int idle_timeout, int reserve);
void tcp_guard_stop(void);
void tcp_guard_stats(struct tcp_guard_stats *out);

#endif
