/* log: leveled one-line messages on stderr, with token redaction. The level
 * is the only process-wide state: it is configuration, written once at start. */
#include "botfactory/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static enum log_level max_level = LOG_INFO;
static const char *const names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
	max_level = level;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > max_level)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_redact(line);
	fprintf(stderr, "%s: %s\n", names[level], line);
}

static int token_char(int c)
{
	return isalnum(c) || c == '_' || c == '-';
}

void log_redact(char *s)
{
	char *p = s;
	while (*p) {
		if (!isdigit((unsigned char)*p) ||
		    (p > s && isdigit((unsigned char)p[-1]))) {
			p++;
			continue;
		}
		char *q = p;
		while (isdigit((unsigned char)*q))
			q++;
		if (*q != ':') {
			p = q;
			continue;
		}
		char *r = q + 1;
		while (token_char((unsigned char)*r))
			r++;
		if (r - (q + 1) < 30) {
			p = q + 1;
			continue;
		}
		memcpy(q + 1, "***", 3);
		memmove(q + 4, r, strlen(r) + 1);
		p = q + 4;
	}
}
