/* api_body.c - JSON body validation for the transfer endpoints: see api_body.h. */
#include "api_body.h"

#include <cjson/cJSON.h>
#include <string.h>

int api_parse_transfer_body(const char *body, size_t len, struct transfer_body *out,
                            const char **err)
{
    memset(out, 0, sizeof *out);
    cJSON *json = body ? cJSON_ParseWithLength(body, len) : NULL;
    if (!json || !cJSON_IsObject(json)) {
        cJSON_Delete(json);
        *err = "body must be a JSON object";
        return -1;
    }
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(json, "sessionId");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(json, "toEndPoint");
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(json, "callerId");
    const cJSON *ext = cJSON_GetObjectItemCaseSensitive(json, "extension");
    const cJSON *wait = cJSON_GetObjectItemCaseSensitive(json, "waitBeforeExtensionDialSec");
    const char *bad = NULL;

    if (!cJSON_IsString(sid) || !*sid->valuestring)
        bad = "sessionId is required (a string)";
    else if (!cJSON_IsString(to) || !*to->valuestring)
        bad = "toEndPoint is required (a string)";
    else if (cid && !cJSON_IsNull(cid) &&
             (!cJSON_IsString(cid) || strlen(cid->valuestring) > 32 ||
              strspn(cid->valuestring, "+0123456789abcdefghijklmnopqrstuvwxyz"
                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ-_.") !=
                  strlen(cid->valuestring)))
        bad = "callerId must be a string of at most 32 letters, digits, + - _ .";
    else if (ext && !cJSON_IsNull(ext) &&
             (!cJSON_IsString(ext) || strlen(ext->valuestring) < 1 ||
              strlen(ext->valuestring) > 20 ||
              strspn(ext->valuestring, "0123456789*#ABCDabcd") != strlen(ext->valuestring)))
        bad = "extension must be 1 to 20 DTMF digits (0-9 * # A-D)";
    else if (wait && !cJSON_IsNull(wait) &&
             (!cJSON_IsNumber(wait) || wait->valuedouble < 0 || wait->valuedouble > 60 ||
              wait->valuedouble != (double)(int)wait->valuedouble))
        bad = "waitBeforeExtensionDialSec must be an integer from 0 to 60";
    if (bad) {
        cJSON_Delete(json);
        *err = bad;
        return -1;
    }

    out->session_id = sid->valuestring;
    out->to_endpoint = to->valuestring;
    out->caller_id = cJSON_IsString(cid) ? cid->valuestring : NULL;
    out->extension = cJSON_IsString(ext) ? ext->valuestring : NULL;
    out->wait_ext_sec = cJSON_IsNumber(wait) ? (int)wait->valuedouble : 0;
    out->json = json;
    return 0;
}

void api_transfer_body_free(struct transfer_body *b)
{
    cJSON_Delete(b->json);
    b->json = NULL;
}

/* A string member: absent or null -> *out NULL (0); a string within
 * [1, max] bytes of set (NULL: any printable) -> 0; else -1. */
static int opt_string(const cJSON *json, const char *name, size_t max, const char *set,
                      const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v))
        return -1;
    size_t n = strlen(v->valuestring);
    if (n < 1 || n > max)
        return -1;
    if (set && strspn(v->valuestring, set) != n)
        return -1;
    for (size_t i = 0; !set && i < n; i++)
        if ((unsigned char)v->valuestring[i] < 0x20 || v->valuestring[i] == 0x7f)
            return -1;
    *out = v->valuestring;
    return 0;
}

#define DTMF_SET "0123456789*#ABCDabcd"
#define ID_SET "+0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_."

int api_parse_dialout_body(const char *body, size_t len, enum dialout_body_kind kind,
                           struct dialout_body *out, const char **err)
{
    memset(out, 0, sizeof *out);
    cJSON *json = body ? cJSON_ParseWithLength(body, len) : NULL;
    if (!json || !cJSON_IsObject(json)) {
        cJSON_Delete(json);
        *err = "body must be a JSON object";
        return -1;
    }
    const char *bad = NULL;
    if (kind == DIALOUT_BODY_START) {
        const cJSON *wait = cJSON_GetObjectItemCaseSensitive(json, "waitBeforeExtensionDialSec");
        if (opt_string(json, "phoneNumber", 32, "+0123456789", &out->phone_number) < 0)
            bad = "phoneNumber must be an E.164 number (+ and up to 31 digits)";
        else if (opt_string(json, "sipUri", 1000, NULL, &out->sip_uri) < 0)
            bad = "sipUri must be a string of at most 1000 printable characters";
        else if (!out->phone_number == !out->sip_uri)
            bad = "give exactly one of phoneNumber and sipUri";
        else if (opt_string(json, "callerId", 32, ID_SET, &out->caller_id) < 0)
            bad = "callerId must be a string of at most 32 letters, digits, + - _ .";
        else if (opt_string(json, "displayName", 64, NULL, &out->display_name) < 0 ||
                 (out->display_name && strpbrk(out->display_name, "\"\\<>")))
            bad = "displayName must be at most 64 printable characters without \" \\ < >";
        else if (opt_string(json, "extension", 20, DTMF_SET, &out->extension) < 0)
            bad = "extension must be 1 to 20 DTMF digits (0-9 * # A-D)";
        else if (opt_string(json, "userId", 128, NULL, &out->user_id) < 0)
            bad = "userId must be a string of at most 128 printable characters";
        else if (wait && !cJSON_IsNull(wait) &&
                 (!cJSON_IsNumber(wait) || wait->valuedouble < 0 || wait->valuedouble > 60 ||
                  wait->valuedouble != (double)(int)wait->valuedouble))
            bad = "waitBeforeExtensionDialSec must be an integer from 0 to 60";
        else
            out->wait_ext_sec = cJSON_IsNumber(wait) ? (int)wait->valuedouble : 0;
    } else {
        if (opt_string(json, "sessionId", 128, NULL, &out->session_id) < 0 || !out->session_id)
            bad = "sessionId is required (a string)";
    }
    if (!bad && kind == DIALOUT_BODY_DTMF) {
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(json, "digitDurationMs");
        const char *method = NULL;
        if (opt_string(json, "tones", 20, DTMF_SET, &out->tones) < 0 || !out->tones)
            bad = "tones is required: 1 to 20 of 0-9 * # A-D";
        else if (ms && !cJSON_IsNull(ms) &&
                 (!cJSON_IsNumber(ms) || ms->valuedouble < 50 || ms->valuedouble > 2000 ||
                  ms->valuedouble != (double)(int)ms->valuedouble))
            bad = "digitDurationMs must be an integer from 50 to 2000";
        else if (opt_string(json, "method", 20, NULL, &method) < 0 ||
                 (method && strcmp(method, "auto") != 0 && strcmp(method, "telephone-event") != 0 &&
                  strcmp(method, "sip-info") != 0))
            bad = "method must be \"telephone-event\", \"sip-info\" or \"auto\"";
        else {
            out->digit_ms = cJSON_IsNumber(ms) ? (int)ms->valuedouble : 500;
            out->method = !method || strcmp(method, "auto") == 0 ? 0
                          : strcmp(method, "telephone-event") == 0 ? 1
                                                                   : 2;
        }
    }
    if (bad) {
        cJSON_Delete(json);
        memset(out, 0, sizeof *out);
        *err = bad;
        return -1;
    }
    out->json = json;
    return 0;
}

void api_dialout_body_free(struct dialout_body *b)
{
    cJSON_Delete(b->json);
    b->json = NULL;
}
