/* fuzz_via.c - the tolerant Via parser (sip_guard_mclass): sip_guard_via_tidy()
 * on the raw bytes, then a whole request carrying them as its Via parsed with
 * the message class nta uses, and re-encoded when a Via came out of it. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>

#include "sip_guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *value = malloc(size + 1);
    if (!value)
        abort();
    memcpy(value, data, size);
    value[size] = '\0';
    size_t before = strlen(value);
    sip_guard_via_tidy(value);
    assert(strlen(value) <= before); /* in place: never longer */
    free(value);

    static const char head[] = "OPTIONS sip:a@example.com SIP/2.0\r\nVia: ";
    static const char tail[] = "\r\nTo: <sip:a@example.com>\r\nFrom: <sip:b@example.com>;tag=1\r\n"
                               "Call-ID: f\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    size_t len = sizeof head - 1 + size + sizeof tail - 1;
    char *text = malloc(len);
    if (!text)
        abort();
    memcpy(text, head, sizeof head - 1);
    memcpy(text + sizeof head - 1, data, size);
    memcpy(text + sizeof head - 1 + size, tail, sizeof tail - 1);
    msg_t *msg = msg_make(sip_guard_mclass(), 0, text, (isize_t)len);
    if (msg) {
        sip_t *sip = sip_object(msg);
        if (sip && sip->sip_via) {
            char *wire = msg_as_string(msg_home(msg), msg, NULL, 0, NULL);
            (void)wire;
        }
        msg_destroy(msg);
    }
    free(text);
    return 0;
}
