/* fuzz_common.h - shared bits of the libFuzzer harnesses (see fuzz/run). */
#ifndef SIPXFER_FUZZ_COMMON_H
#define SIPXFER_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* A config like the shipped one: rooms by domain and by URI, a trunk with a
 * PSTN gateway, and an allow list with sip:, sips: and E.164 patterns. */
static const char fuzz_config_text[] =
    "node = \"fuzz-1\";\n"
    "sip = { listen = \"sip:127.0.0.1:5060\"; };\n"
    "api = { listen = \"127.0.0.1:8080\"; tokens = [ \"t\" ]; };\n"
    "media = { mode = \"relay\"; address = \"127.0.0.1\"; port_min = 20000; port_max = 29999; };\n"
    "trunks = ( { name = \"carrier\"; sources = [ \"127.0.0.0/8\", \"::1/128\" ];\n"
    "             gateway = \"sip:gw.example.net:5090;transport=udp\"; } );\n"
    "rooms = { domain = \"rooms.sipxfer.test\";\n"
    "          list = ( { name = \"room-a\"; uri = \"sip:room-a@127.0.0.1:5070\"; },\n"
    "                   { name = \"room-b\"; uri = \"sip:room-b@127.0.0.1:5072\"; } ); };\n"
    "routes = ( { user = \"+15550100\"; room = \"room-a\"; } );\n"
    "transfer = { allow = [ \"sip:*@*.example.com\", \"sips:*\", \"+1*\", \"sip:*@[2001:db8::10]:*\" ]; };\n";

/* Load fuzz_config_text through the real loader (config_load wants a file). */
static struct config *fuzz_load_config(void)
{
    char path[] = "/tmp/sipxfer-fuzz-cfg-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, fuzz_config_text, sizeof fuzz_config_text - 1) !=
                      (ssize_t)(sizeof fuzz_config_text - 1)) {
        perror("fuzz: config file");
        abort();
    }
    close(fd);
    char err[512];
    struct config *cfg = config_load(path, err, sizeof err);
    unlink(path);
    if (!cfg) {
        fprintf(stderr, "fuzz: harness config refused: %s\n", err);
        abort();
    }
    return cfg;
}

/* libFuzzer data is not NUL-terminated; the string APIs want it to be. */
static char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
