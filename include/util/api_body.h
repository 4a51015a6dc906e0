/* api_body.h - validation of the JSON body of POST /v1/rooms/{room}/
 * sipCallTransfer and .../sipRefer, kept free of HTTP and call state so it
 * can be unit tested and fuzzed on its own (fuzz/fuzz_json.c). */
#ifndef SIPXFER_API_BODY_H
#define SIPXFER_API_BODY_H

#include <stddef.h>

struct cJSON;

struct transfer_body {
    const char *session_id;  /* non-empty */
    const char *to_endpoint; /* non-empty, not yet normalised (target_parse) */
    const char *caller_id;   /* NULL when absent or null */
    const char *extension;   /* NULL when absent or null */
    int wait_ext_sec;        /* 0 when absent or null */
    struct cJSON *json;      /* owns the strings above */
};

/* Parse and validate body (len bytes, NUL not required). Returns 0 and fills
 * out (release with api_transfer_body_free), or -1 with *err set to the
 * sentence for a 400 invalid-request-error; out then holds nothing to free. */
int api_parse_transfer_body(const char *body, size_t len, struct transfer_body *out,
                            const char **err);
void api_transfer_body_free(struct transfer_body *b);

/* POST /v1/rooms/{room}/dialOut/start, .../stop, .../sendDTMF (SPEC 12):
 * the same contract (0, or -1 with *err for a 400); free with
 * api_dialout_body_free. Strings point into json. */
struct dialout_body {
    const char *phone_number; /* exactly one of phone_number, sip_uri (start) */
    const char *sip_uri;
    const char *caller_id, *display_name, *extension, *user_id; /* NULL if absent */
    int wait_ext_sec;
    const char *session_id; /* stop, sendDTMF */
    const char *tones;      /* sendDTMF: 1-20 of 0-9 * # A-D */
    int digit_ms;           /* sendDTMF: 50-2000, default 500 */
    int method;             /* sendDTMF: 0 auto, 1 telephone-event, 2 sip-info */
    struct cJSON *json;
};
enum dialout_body_kind { DIALOUT_BODY_START, DIALOUT_BODY_STOP, DIALOUT_BODY_DTMF };
int api_parse_dialout_body(const char *body, size_t len, enum dialout_body_kind kind,
                           struct dialout_body *out, const char **err);
void api_dialout_body_free(struct dialout_body *b);

#endif
