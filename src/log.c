/* log.c - stderr logging.
 *
 * Records are appended to one buffer under a lock, so lines from the relay
 * worker and the control thread never interleave mid-line. The control
 * thread's records are written once per event-loop turn (log_flush() from
 * the loop's prepoll hook) instead of one write(2) per line: at INFO a call
 * logs a few lines, and a syscall per line was a measurable share of a
 * call's CPU. Records from any other thread, and everything when buffering
 * is off, are written at once. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_INFO;
static const char *level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

static char buf[16384];
static size_t used;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int buffered; /* this thread's records wait for log_flush() */

/* write(2) only, so a fatal-signal handler may call it too */
static void flush_locked(void)
{
    size_t off = 0;
    while (off < used) {
        ssize_t w = write(STDERR_FILENO, buf + off, used - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* stderr gone or full: drop rather than stall the loop */
        off += (size_t)w;
    }
    used = 0;
}

void log_flush(void)
{
    pthread_mutex_lock(&lock);
    if (used)
        flush_locked();
    pthread_mutex_unlock(&lock);
}

void log_flush_on_crash(void)
{
    /* no lock: the crashing thread may hold it; a line being appended
     * right now may come out torn */
    flush_locked();
}

void log_buffer_this_thread(int on)
{
    buffered = on;
    if (!on)
        log_flush();
}

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

    char line[1200];
    int n;
    if (sid)
        n = snprintf(line, sizeof line, "%s.%03ldZ %-5s [%s] %s\n", when, ts.tv_nsec / 1000000,
                     level_names[level], sid, text);
    else
        n = snprintf(line, sizeof line, "%s.%03ldZ %-5s %s\n", when, ts.tv_nsec / 1000000,
                     level_names[level], text);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line) { /* cut: keep the line a line */
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }

    pthread_mutex_lock(&lock);
    if (used + (size_t)n > sizeof buf)
        flush_locked();
    memcpy(buf + used, line, (size_t)n);
    used += (size_t)n;
    if (!buffered || level <= LOG_ERROR)
        flush_locked();
    pthread_mutex_unlock(&lock);
}
