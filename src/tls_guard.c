/* tls_guard.c - see tls_guard.h. */
#include "tls_guard.h"

#include <dlfcn.h>
#include <stdatomic.h>

#include <openssl/ssl.h>

#include "log.h"

typedef SSL_CTX *(*ssl_ctx_new_f)(const SSL_METHOD *);

static atomic_ulong made;

SSL_CTX *SSL_CTX_new(const SSL_METHOD *method)
{
    static ssl_ctx_new_f real;
    if (!real)
        real = (ssl_ctx_new_f)dlsym(RTLD_NEXT, "SSL_CTX_new");
    if (!real)
        return NULL;
    SSL_CTX *ctx = real(method);
    if (ctx) {
        if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
            /* a method that cannot do 1.2 (TLSv1_method): refuse it */
            log_error("TLS: a context without TLS 1.2 was asked for; refused");
            SSL_CTX_free(ctx);
            return NULL;
        }
        atomic_fetch_add(&made, 1);
    }
    return ctx;
}

unsigned long tls_guard_contexts(void) { return atomic_load(&made); }
