/* log_limit.c - rate limits for repeated log lines (log_limit.h). */
#include "log_limit.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "hash.h"
#include "log.h"

#define SOFIA_SLOTS 64

bool log_limit_allow(struct log_limit *l, unsigned per_second, time_t now,
                     unsigned long *suppressed)
{
    if (now != l->second) {
        l->second = now;
        l->lines = 0;
    }
    if (l->lines >= per_second) {
        l->suppressed++;
        return false;
    }
    l->lines++;
    *suppressed = l->suppressed;
    l->suppressed = 0;
    return true;
}

const char *log_limit_note(unsigned long suppressed)
{
    static char note[64];
    if (!suppressed)
        return "";
    snprintf(note, sizeof note, " (%lu similar lines suppressed)", suppressed);
    return note;
}

/* stream: the lines allowed per second for one format, as an integer.
 * sofia logs from the control thread only (threading is off), so the
 * partial-line buffer and the slots need no lock. A slot is picked by the
 * format string's address: the same call site shares one limit. */
void log_limit_sofia(void *stream, const char *fmt, va_list ap)
{
    static struct {
        const char *fmt;
        struct log_limit limit;
    } slots[SOFIA_SLOTS];
    static char line[512];
    static size_t used;
    static const char *line_fmt;

    if (!used)
        line_fmt = fmt;
    int n = vsnprintf(line + used, sizeof line - used, fmt, ap);
    if (n < 0)
        return;
    used += (size_t)n < sizeof line - used ? (size_t)n : sizeof line - used - 1;
    if (used < sizeof line - 1 && (!used || line[used - 1] != '\n'))
        return; /* sofia writes some lines in pieces */
    while (used && line[used - 1] == '\n')
        line[--used] = '\0';
    used = 0;

    uintptr_t key = (uintptr_t)line_fmt;
    unsigned i = hash_bytes(&key, sizeof key) % SOFIA_SLOTS;
    if (slots[i].fmt != line_fmt) {
        slots[i].fmt = line_fmt;
        memset(&slots[i].limit, 0, sizeof slots[i].limit);
    }
    unsigned long suppressed;
    if (log_limit_allow(&slots[i].limit, (unsigned)(uintptr_t)stream, time(NULL), &suppressed))
        log_warn("sofia: %s%s", line, log_limit_note(suppressed));
}
