/* tls_guard.c - see tls_guard.h. */
#include "tls_guard.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- the SSL object of a closed TLS connection ------------------------
 *
 * Debian's sofia-sip 1.12.11 frees a TLS transport with tls_free(), which
 * shuts the SSL connection down and frees its socket BIO but never calls
 * SSL_free(): every TLS connection that ends leaves its SSL object behind
 * (~26 KB: 300 handshakes grew RSS by 7.9 MB). FreeSWITCH's fork fixed it
 * in 2013 by freeing the SSL object there. We do the same from outside:
 * sofia calls tls_free() through its PLT, so the definition below is the
 * one it reaches.
 *
 * tls_t is private to sofia; its SSL and BIO pointers are read at the
 * offsets of Debian 12's build (0x20, 0x28) and used only when that exact
 * pair was handed to SSL_set_bio() and the SSL object is still alive
 * (remembered below, pointers compared, never dereferenced): with any
 * other layout nothing matches and sofia's own tls_free() runs as before.
 *
 * The BIO: SSL_set_bio(ssl, bio, bio) gives the SSL object two references
 * to the one BIO (read and write side); sofia's tls_free() drops one with
 * BIO_free(), and SSL_free() drops both. One reference is added first so
 * the counts meet at zero.
 *
 * The context: a secondary tls_t copies its master's type, so sofia's
 * tls_free() also calls SSL_CTX_free() on the listener's shared context, a
 * reference the connection never took. The leaked SSL object's own
 * reference used to cover it; once that is released too the listener's
 * context would be freed under it (the next SSL_new() read freed memory,
 * found by ASan). That one SSL_CTX_free() call, made inside sofia's
 * tls_free() for the connection's own context, is swallowed (FreeSWITCH
 * dropped the type copy for the same reason). */

typedef void (*tls_free_f)(void *);
typedef void (*ssl_ctx_free_f)(SSL_CTX *);
typedef void (*ssl_set_bio_f)(SSL *, BIO *, BIO *);
typedef void (*ssl_free_f)(SSL *);

#define TLS_T_CON 0x20
#define TLS_T_BIO 0x28

struct bio_pair {
    SSL *ssl;
    BIO *bio;
};

static pthread_mutex_t pairs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bio_pair *pairs;
static size_t npairs, cap_pairs;
/* the context whose SSL_CTX_free() sofia's tls_free() must not do, while
 * it runs on this thread */
static __thread SSL_CTX *swallow_ctx;

void SSL_CTX_free(SSL_CTX *ctx)
{
    static ssl_ctx_free_f real;
    if (!real)
        real = (ssl_ctx_free_f)dlsym(RTLD_NEXT, "SSL_CTX_free");
    if (!real)
        return;
    if (ctx && ctx == swallow_ctx) {
        swallow_ctx = NULL; /* once */
        return;
    }
    real(ctx);
}

static void pair_forget_locked(SSL *s)
{
    for (size_t i = 0; i < npairs; i++)
        if (pairs[i].ssl == s) {
            pairs[i] = pairs[--npairs];
            return;
        }
}

void SSL_set_bio(SSL *s, BIO *rbio, BIO *wbio)
{
    static ssl_set_bio_f real;
    if (!real)
        real = (ssl_set_bio_f)dlsym(RTLD_NEXT, "SSL_set_bio");
    if (!real)
        return;
    real(s, rbio, wbio);
    if (!s)
        return;
    pthread_mutex_lock(&pairs_lock);
    pair_forget_locked(s);
    if (rbio && rbio == wbio) {
        if (npairs == cap_pairs) {
            size_t n = cap_pairs ? 2 * cap_pairs : 64;
            struct bio_pair *p = realloc(pairs, n * sizeof *p);
            if (!p) {
                /* not remembered: that connection keeps sofia's leak */
                pthread_mutex_unlock(&pairs_lock);
                return;
            }
            pairs = p;
            cap_pairs = n;
        }
        pairs[npairs++] = (struct bio_pair){s, rbio};
    }
    pthread_mutex_unlock(&pairs_lock);
}

void SSL_free(SSL *s)
{
    static ssl_free_f real;
    if (!real)
        real = (ssl_free_f)dlsym(RTLD_NEXT, "SSL_free");
    if (!real)
        return;
    if (s) {
        pthread_mutex_lock(&pairs_lock);
        pair_forget_locked(s);
        pthread_mutex_unlock(&pairs_lock);
    }
    real(s);
}

void tls_free(void *tls)
{
    static tls_free_f real;
    if (!real)
        real = (tls_free_f)dlsym(RTLD_NEXT, "tls_free");
    if (!real)
        return;
    SSL *con = NULL;
    BIO *bio = NULL;
    bool ours = false;
    if (tls) {
        memcpy(&con, (const char *)tls + TLS_T_CON, sizeof con);
        memcpy(&bio, (const char *)tls + TLS_T_BIO, sizeof bio);
        pthread_mutex_lock(&pairs_lock);
        for (size_t i = 0; con && bio && i < npairs; i++)
            if (pairs[i].ssl == con && pairs[i].bio == bio) {
                ours = true;
                break;
            }
        pthread_mutex_unlock(&pairs_lock);
    }
    if (ours) {
        BIO_up_ref(bio);
        swallow_ctx = SSL_get_SSL_CTX(con);
    }
    real(tls); /* SSL_shutdown, BIO_free, maybe SSL_CTX_free, the tls_t itself */
    swallow_ctx = NULL;
    if (ours) {
        SSL_free(con);
    }
}
