/* test_dns_guard.c - numeric-only lookups on an armed thread, untouched
 * lookups elsewhere; what counts as an address literal. */
#include <check.h>
#include <netdb.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "dns_guard.h"
#include "unit_helpers.h"

START_TEST(test_is_numeric)
{
    ck_assert(dns_guard_is_numeric("192.0.2.1"));
    ck_assert(dns_guard_is_numeric("2001:db8::1"));
    ck_assert(dns_guard_is_numeric("[2001:db8::1]"));
    ck_assert(dns_guard_is_numeric("fe80::1%eth0"));
    ck_assert(!dns_guard_is_numeric("example.com"));
    ck_assert(!dns_guard_is_numeric("localhost"));
    ck_assert(!dns_guard_is_numeric("192.0.2.1.example"));
    ck_assert(!dns_guard_is_numeric("[192.0.2.1"));
    ck_assert(!dns_guard_is_numeric("[]"));
    ck_assert(!dns_guard_is_numeric("192.0.2.1%eth0"));
    ck_assert(!dns_guard_is_numeric("fe80::1%"));
    ck_assert(!dns_guard_is_numeric(""));
    ck_assert(!dns_guard_is_numeric(NULL));
}
END_TEST

static int lookup(const char *node)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(node, "5060", &hints, &ai);
    if (rc == 0)
        freeaddrinfo(ai);
    return rc;
}

static void *unarmed_thread(void *arg)
{
    /* "localhost" comes from /etc/hosts: a name, resolved without DNS */
    *(int *)arg = lookup("localhost");
    return NULL;
}

START_TEST(test_armed_thread_numeric_only)
{
    ck_assert_int_eq(lookup("localhost"), 0); /* before arming: as glibc does */
    dns_guard_arm();
    unsigned long long before = dns_guard_blocked();
    ck_assert_int_eq(lookup("127.0.0.1"), 0);
    ck_assert_int_eq(lookup("::1"), 0);
    ck_assert(dns_guard_blocked() == before);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(lookup("localhost"), EAI_NONAME);
    ck_assert_int_eq(lookup("name.that.would.go.to.dns.invalid"), EAI_NONAME);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert(dns_guard_blocked() == before + 2);
    /* refused, not asked: no resolver time-out (5 s per server) was waited
     * for. Whole milliseconds: comparing tv_sec alone failed whenever the
     * two reads straddled a second boundary. */
    long long ms = (t1.tv_sec - t0.tv_sec) * 1000LL + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    ck_assert_msg(ms < 2000, "name lookups took %lld ms", ms);

    /* a reverse lookup gives the address; one that insists on a name fails */
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(5060)};
    sin.sin_addr.s_addr = htonl(0x7f000001);
    char host[64];
    ck_assert_int_eq(getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, NULL, 0, 0),
                     0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, NULL, 0,
                                 NI_NAMEREQD),
                     EAI_NONAME);
    ck_assert_int_eq(getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, NULL, 0,
                                 NI_NUMERICHOST),
                     0);

    /* other threads (curl's resolver threads) are not affected */
    int rc = -1;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, unarmed_thread, &rc), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(rc, 0);
}
END_TEST

static Suite *dns_guard_suite(void)
{
    Suite *s = suite_create("dns_guard");
    TCase *tc = tcase_create("guard");
    tcase_add_test(tc, test_is_numeric);
    tcase_add_test(tc, test_armed_thread_numeric_only);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return unit_run(dns_guard_suite()); }
