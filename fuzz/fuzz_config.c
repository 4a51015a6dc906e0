/* fuzz_config.c - config_load()/config_free() on arbitrary files (libconfig
 * syntax plus our schema and value checks). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    snprintf(path, sizeof path, "/tmp/sipxfer-fuzz-config-%ld.conf", (long)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    /* @include reads other files: not a parser of ours, and a path such as
     * "/dev/zero" would only hang the fuzzer. */
    if (memmem(data, size, "@include", 8) || memmem(data, size, "@INCLUDE", 8))
        return 0;
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    char err[600];
    struct config *cfg = config_load(path, err, sizeof err);
    if (cfg) {
        char host[128];
        int port;
        (void)config_sip_hostport(cfg, host, sizeof host, &port);
        config_free(cfg);
    } else if (!memchr(err, '\0', sizeof err)) {
        abort();
    }
    unlink(path);
    return 0;
}
