/* unit_helpers.h - small helpers shared by the unit tests. */
#ifndef SIPXFER_UNIT_HELPERS_H
#define SIPXFER_UNIT_HELPERS_H

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static inline long unit_elapsed_ms(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Step root's loop until expr holds; fail after ms (a wait on an event,
 * never a fixed sleep). */
#define unit_run_until(root, expr, ms)                                                         \
    do {                                                                                       \
        struct timespec t0_;                                                                   \
        clock_gettime(CLOCK_MONOTONIC, &t0_);                                                  \
        while (!(expr)) {                                                                      \
            su_root_step((root), 5);                                                           \
            ck_assert_msg(unit_elapsed_ms(&t0_) < (ms), "timed out after %d ms waiting for: %s", \
                          (ms), #expr);                                                        \
        }                                                                                      \
    } while (0)

/* A loopback port free for both UDP and TCP now (SIP on both, Redis on TCP). */
static inline int unit_free_port(void)
{
    for (int tries = 0; tries < 50; tries++) {
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof sa;
        ck_assert_int_eq(bind(u, (struct sockaddr *)&sa, sizeof sa), 0);
        getsockname(u, (struct sockaddr *)&sa, &sl);
        int t = socket(AF_INET, SOCK_STREAM, 0);
        int ok = bind(t, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(t);
        close(u);
        if (ok)
            return ntohs(sa.sin_port);
    }
    ck_abort_msg("no free port");
    return -1;
}

/* Write text to a fresh temporary file; path receives its name. */
static inline void unit_write_temp(const char *text, char *path, size_t pathlen)
{
    snprintf(path, pathlen, "/tmp/sipxfer-unit-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t len = strlen(text);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* Load text as a config file. err (may be NULL) receives the error message. */
static inline struct config *unit_load_config(const char *text, char *err, size_t errlen,
                                              char *path, size_t pathlen)
{
    char localerr[512];
    char localpath[64];
    if (!err) {
        err = localerr;
        errlen = sizeof localerr;
    }
    if (!path) {
        path = localpath;
        pathlen = sizeof localpath;
    }
    err[0] = '\0';
    unit_write_temp(text, path, pathlen);
    struct config *cfg = config_load(path, err, errlen);
    unlink(path);
    return cfg;
}

/* Run a suite, print check's summary, exit status for meson. */
static inline int unit_run(Suite *suite)
{
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
