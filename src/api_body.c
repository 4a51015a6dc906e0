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
