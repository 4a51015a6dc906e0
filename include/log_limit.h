/* log_limit.h - keep a repeated log line from flooding the log.
 *
 * A line that can be triggered by every packet or connection of a flood
 * goes through a log_limit: a few per second are written, the rest are
 * counted and the next written line says how many were left out. */
#ifndef SIPXFER_LOG_LIMIT_H
#define SIPXFER_LOG_LIMIT_H

#include <stdarg.h>
#include <stdbool.h>
#include <time.h>

struct log_limit {
    time_t second;
    unsigned lines;           /* written in that second */
    unsigned long suppressed; /* since the last written line */
};

/* True when a line may be written at now (time(NULL); a parameter so tests
 * need no clock); *suppressed then holds how many were left out before it
 * (and the count restarts). */
bool log_limit_allow(struct log_limit *l, unsigned per_second, time_t now,
                     unsigned long *suppressed);
/* " (N similar lines suppressed)" or "" - for appending to that line;
 * the text lives until the next call. */
const char *log_limit_note(unsigned long suppressed);

/* su_logger_f for su_log_redirect(): sofia's lines become WARN records;
 * stream is (void *)(uintptr_t) the lines per second one format string
 * (one call site) may write. */
void log_limit_sofia(void *stream, const char *fmt, va_list ap);

#endif
