/* fuzz_sipfrag.c - sipfrag_status(): the status line of a NOTIFY's
 * message/sipfrag body, from whoever a REFER went to. The input is passed
 * with its exact length and no terminating NUL so over-reads are caught. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "app.h"
#include "refer.h"

/* refer.c links transfer.c, which reports events through app_event(); the
 * daemon defines it in main.c, which is not part of the core library. */
void app_event(struct app *app, const char *type, void *payload)
{
    (void)app;
    (void)type;
    cJSON_Delete(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy so ASan's redzone sits right after the last byte */
    char *body = malloc(size ? size : 1);
    if (!body)
        abort();
    memcpy(body, data, size);
    int code = sipfrag_status(body, size);
    assert(code == -1 || (code >= 100 && code <= 699));
    free(body);
    return 0;
}
