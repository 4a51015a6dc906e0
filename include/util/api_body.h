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

#endif
