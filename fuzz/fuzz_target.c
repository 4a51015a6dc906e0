/* fuzz_target.c - target_parse() / target_allowed(): toEndPoint from API
 * clients and Refer-To from rooms (SIP URIs with ?X- headers, E.164). */
#include <assert.h>

#include "fuzz_common.h"
#include "target.h"

static struct config *cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cfg = fuzz_load_config();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = fuzz_strndup(data, size);
    struct target t;
    char err[256];
    enum target_result r = target_parse(cfg, text, "127.0.0.1", 5060, &t, err, sizeof err);
    if (r == TARGET_OK) {
        /* what we hand to sofia must be NUL-terminated and free of header
         * smuggling bytes */
        assert(memchr(t.uri, '\0', sizeof t.uri));
        assert(t.nheaders >= 0 && t.nheaders <= TARGET_MAX_HEADERS);
        for (int i = 0; i < t.nheaders; i++) {
            assert(memchr(t.headers[i], '\0', sizeof t.headers[i]));
            assert(strncasecmp(t.headers[i], "X-", 2) == 0);
            assert(!strpbrk(t.headers[i], "\r\n"));
        }
        assert(!strpbrk(t.uri, "\r\n"));
        /* loop-back protection */
        assert(t.kind != TARGET_SIP || strcasecmp(t.uri, "sip:127.0.0.1:5060") != 0);
    } else {
        assert(r == TARGET_INVALID || r == TARGET_FORBIDDEN);
        assert(memchr(err, '\0', sizeof err) && err[0]);
    }
    (void)target_allowed(cfg, text);
    free(text);
    return 0;
}
