/* log: leveled, one-line log messages to stderr. A message never contains a
 * bot token: callers pass bot ids, never tokens, and log_redact() is there
 * for text that might carry one (URLs, library error strings). */
#ifndef BOTFACTORY_LOG_H
#define BOTFACTORY_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Sets the most verbose level printed (default LOG_INFO). The level is
 * process-wide configuration, set once at start. */
void log_set_level(enum log_level level);
/* Parses "error", "warn", "info", "debug". Returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Replaces, in place, every substring shaped like a bot token
 * (digits ':' then 30+ chars of [A-Za-z0-9_-]) with "<digits>:***". */
void log_redact(char *s);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
