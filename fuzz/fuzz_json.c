/* fuzz_json.c - the JSON body of POST /v1/rooms/{room}/sipCallTransfer and
 * .../sipRefer (api_parse_transfer_body), then the accepted toEndPoint
 * through target_parse() as the API does. */
#include <assert.h>

#include "api_body.h"
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
    if (size > 65536) /* MAX_BODY in api.c */
        return 0;
    char *body = malloc(size ? size : 1);
    if (!body)
        abort();
    memcpy(body, data, size);

    struct transfer_body b;
    const char *err = NULL;
    if (api_parse_transfer_body(body, size, &b, &err) == 0) {
        assert(b.session_id && *b.session_id && b.to_endpoint && *b.to_endpoint);
        assert(!b.caller_id || strlen(b.caller_id) <= 32);
        assert(!b.extension || (strlen(b.extension) >= 1 && strlen(b.extension) <= 20));
        assert(b.wait_ext_sec >= 0 && b.wait_ext_sec <= 60);
        struct target t;
        char terr[256];
        (void)target_parse(cfg, b.to_endpoint, "127.0.0.1", 5060, &t, terr, sizeof terr);
        api_transfer_body_free(&b);
    } else {
        assert(err && *err);
    }
    free(body);
    return 0;
}
