/* log.h - one-line log records on stderr, tagged with the call's session id. */
#ifndef SIPXFER_LOG_H
#define SIPXFER_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* sid may be NULL for records not about a call. Thread-safe: a record is
 * never split. */
void log_msg(enum log_level level, const char *sid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One fixed-format line per refusal, for fail2ban and friends:
 *   "<time> WARN  SECURITY <reason> src=<ip>:<port> [<session>] <detail>"
 * src is the socket address the request came from ("-" when the refusal is
 * about something a room or target sent). */
void log_security(const char *reason, const char *src, const char *sid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records of the calling thread wait in a buffer until log_flush() (the
 * control thread calls it before each poll) instead of one write per line.
 * Errors, and other threads' records, are written at once. */
void log_buffer_this_thread(int on);
void log_flush(void);
/* log_flush() for a fatal-signal handler: async-signal-safe, takes no lock. */
void log_flush_on_crash(void);

#define log_error(...) log_msg(LOG_ERROR, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, NULL, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, NULL, __VA_ARGS__)

#endif
