/* dns_guard.c - see dns_guard.h. */
#include "dns_guard.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"

typedef int (*getaddrinfo_f)(const char *, const char *, const struct addrinfo *,
                             struct addrinfo **);
typedef int (*getnameinfo_f)(const struct sockaddr *, socklen_t, char *, socklen_t, char *,
                             socklen_t, int);

static _Thread_local bool armed;
static atomic_ullong blocked;

/* Found once, before main: the next definition in lookup order is libc's,
 * or the sanitizer's interceptor in an ASan build (which calls libc's). */
static getaddrinfo_f real_getaddrinfo;
static getnameinfo_f real_getnameinfo;

__attribute__((constructor)) static void find_real(void)
{
    real_getaddrinfo = (getaddrinfo_f)dlsym(RTLD_NEXT, "getaddrinfo");
    real_getnameinfo = (getnameinfo_f)dlsym(RTLD_NEXT, "getnameinfo");
}

void dns_guard_arm(void)
{
    if (!real_getaddrinfo || !real_getnameinfo)
        find_real();
    armed = true;
}

unsigned long long dns_guard_blocked(void) { return atomic_load(&blocked); }

bool dns_guard_is_numeric(const char *text)
{
    if (!text || !*text)
        return false;
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(text);
    if (text[0] == '[') {
        if (n < 3 || text[n - 1] != ']' || n - 2 >= sizeof buf)
            return false;
        memcpy(buf, text + 1, n - 2);
        buf[n - 2] = '\0';
    } else {
        if (n >= sizeof buf)
            return false;
        memcpy(buf, text, n + 1);
    }
    char *scope = strchr(buf, '%');
    if (scope) {
        if (!scope[1])
            return false;
        *scope = '\0';
    }
    unsigned char addr[16];
    return inet_pton(AF_INET6, buf, addr) == 1 || (!scope && inet_pton(AF_INET, buf, addr) == 1);
}

/* Every refusal is counted; the log gets one line a second at most, so a
 * flood of such datagrams cannot turn into a flood of log writes. */
static void note_refusal(const char *what, const char *name)
{
    atomic_fetch_add(&blocked, 1);
    static time_t last;
    static unsigned long long quiet;
    time_t now = time(NULL);
    if (now == last) {
        quiet++;
        return;
    }
    last = now;
    log_warn("dns: %s \"%.80s\" refused on the control thread (only numeric addresses are "
             "used there; %llu more refusal(s) not logged)",
             what, name, quiet);
    quiet = 0;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    if (!real_getaddrinfo)
        find_real();
    if (!armed || !node)
        return real_getaddrinfo(node, service, hints, res);
    struct addrinfo h;
    if (hints)
        h = *hints;
    else
        memset(&h, 0, sizeof h);
    h.ai_flags |= AI_NUMERICHOST;
    int rc = real_getaddrinfo(node, service, &h, res);
    if (rc == EAI_NONAME && !(hints && (hints->ai_flags & AI_NUMERICHOST)) &&
        !dns_guard_is_numeric(node))
        note_refusal("name", node);
    return rc;
}

int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                char *serv, socklen_t servlen, int flags)
{
    if (!real_getnameinfo)
        find_real();
    bool reverse = armed && host && hostlen && !(flags & NI_NUMERICHOST);
    if (reverse && (flags & NI_NAMEREQD)) {
        note_refusal("reverse lookup", "(name required)");
        return EAI_NONAME;
    }
    /* a reverse lookup would go to DNS: the address is given instead */
    int rc = real_getnameinfo(sa, salen, host, hostlen, serv, servlen,
                              reverse ? flags | NI_NUMERICHOST : flags);
    if (reverse && rc == 0)
        note_refusal("reverse lookup of", host);
    return rc;
}
