/* tls_guard.h - TLS 1.2 or newer, whoever makes the TLS context.
 *
 * Debian's sofia-sip (the 2011 tport TLS code with a patch for OpenSSL's
 * version-flexible method) has no tag for a minimum protocol version, and
 * OpenSSL's floor comes from the system's openssl.cnf, which an operator or
 * OPENSSL_CONF may lower. tls_guard.c defines SSL_CTX_new() in the
 * executable, so sofia's (and curl's) calls reach it: it makes the context
 * with libssl's function and sets TLS 1.2 as the minimum version.
 *
 * It also defines sofia's tls_free() (with SSL_set_bio() and SSL_free() to
 * know which SSL objects are sofia's): Debian's sofia never frees the SSL
 * object of a TLS connection that ended; the definition here frees it
 * after sofia's own (tls_guard.c says how, and why it is safe with another
 * sofia build). Linked into sipxferd only (link_whole); nothing calls
 * these by name. */
#ifndef SIPXFER_TLS_GUARD_H
#define SIPXFER_TLS_GUARD_H

/* Contexts made so far with the TLS 1.2 floor (for a log line / tests). */
unsigned long tls_guard_contexts(void);

#endif
