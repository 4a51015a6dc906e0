/* unit_helpers.h - small helpers shared by the unit tests. */
#ifndef SIPXFER_UNIT_HELPERS_H
#define SIPXFER_UNIT_HELPERS_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

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
