/* log.c - stderr logging. One fprintf per record so lines from the relay
 * worker and the control thread never interleave mid-line. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum log_level current_level = LOG_INFO;
static const char *level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void log_set_level(enum log_level level) { current_level = level; }
enum log_level log_get_level(void) { return current_level; }

static void sanitize(char *text)
{
    /* Never let a peer's bytes forge a log line: CR/LF and other controls
     * become '?' (fail2ban reads these lines). */
    for (char *p = text; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

void log_security(const char *reason, const char *src, const char *sid, const char *fmt, ...)
{
    char text[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    sanitize(text);
    if (sid)
        log_msg(LOG_WARN, NULL, "SECURITY %s src=%s [%s] %s", reason, src ? src : "-", sid, text);
    else
        log_msg(LOG_WARN, NULL, "SECURITY %s src=%s %s", reason, src ? src : "-", text);
}

void log_msg(enum log_level level, const char *sid, const char *fmt, ...)
{
    if (level > current_level)
        return;

    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);

    sanitize(text);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);

    if (sid)
        fprintf(stderr, "%s.%03ldZ %-5s [%s] %s\n", when, ts.tv_nsec / 1000000,
                level_names[level], sid, text);
    else
        fprintf(stderr, "%s.%03ldZ %-5s %s\n", when, ts.tv_nsec / 1000000, level_names[level],
                text);
}
