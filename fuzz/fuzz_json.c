/* fuzz_json.c - the JSON body of POST /v1/rooms/{room}/sipCallTransfer and
 * .../sipRefer (api_parse_transfer_body), then the accepted toEndPoint
 * through target_parse() as the API does; the same bytes as each dial-out
 * body (api_parse_dialout_body). */
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
    /* the dial-out bodies (SPEC 12), each kind */
    for (int kind = DIALOUT_BODY_START; kind <= DIALOUT_BODY_DTMF; kind++) {
        struct dialout_body o;
        err = NULL;
        if (api_parse_dialout_body(body, size, (enum dialout_body_kind)kind, &o, &err) == 0) {
            if (kind == DIALOUT_BODY_START) {
                assert(!o.phone_number != !o.sip_uri);
                assert(!o.caller_id || strlen(o.caller_id) <= 32);
                assert(o.wait_ext_sec >= 0 && o.wait_ext_sec <= 60);
                struct target t;
                char terr[256];
                (void)target_parse(cfg, o.phone_number ? o.phone_number : o.sip_uri, "127.0.0.1",
                                   5060, &t, terr, sizeof terr);
            } else {
                assert(o.session_id && *o.session_id);
            }
            if (kind == DIALOUT_BODY_DTMF)
                assert(o.tones && strlen(o.tones) >= 1 && strlen(o.tones) <= 20 &&
                       o.digit_ms >= 50 && o.digit_ms <= 2000 && o.method >= 0 && o.method <= 2);
            api_dialout_body_free(&o);
        } else {
            assert(err && *err);
        }
    }
    free(body);
    return 0;
}
