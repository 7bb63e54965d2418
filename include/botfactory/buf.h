/* buf: a growable byte buffer that always stays NUL-terminated.
 * Used wherever the core builds text (rendered replies, JSON, error lists).
 * Allocation failures are reported, never ignored: every append returns 0 or
 * -ENOMEM, and a failed append leaves the buffer as it was. */
#ifndef BOTFACTORY_BUF_H
#define BOTFACTORY_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	char *data; /* NUL-terminated when non-NULL; owned by the buf */
	size_t len;
	size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

/* Makes room for `extra` more bytes (plus the NUL). Returns 0 or -ENOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Appends len bytes of s. Returns 0 or -ENOMEM. */
int buf_append(struct buf *b, const char *s, size_t len);
/* Appends a NUL-terminated string. Returns 0 or -ENOMEM. */
int buf_puts(struct buf *b, const char *s);
/* Appends one byte. Returns 0 or -ENOMEM. */
int buf_putc(struct buf *b, char c);
/* Appends v in decimal, as printf's "%" PRId64 writes it (without
 * printf's cost: hot paths write ids and chat ids). Returns 0 or -ENOMEM. */
int buf_int(struct buf *b, int64_t v);
/* Appends printf-formatted text. Returns 0, -ENOMEM or -EINVAL (bad format). */
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Appends s as a JSON string: quoted, with `"`, `\` and the control
 * characters escaped exactly as cJSON_PrintUnformatted writes them (\b \f
 * \n \r \t, the others as \u00xx); other bytes, UTF-8 included, as they
 * are. For bodies built on hot paths without a cJSON tree. Returns 0 or
 * -ENOMEM (the buffer unchanged). */
int buf_json_string(struct buf *b, const char *s);
/* Cuts the contents back to its first len bytes (len <= b->len), e.g. to
 * undo a partial append after a failure. */
void buf_truncate(struct buf *b, size_t len);
/* Empties the buffer but keeps its memory. */
void buf_reset(struct buf *b);
/* Hands the NUL-terminated contents to the caller (who frees them) and
 * empties the buffer. Returns "" copied when empty, or NULL on -ENOMEM. */
char *buf_take(struct buf *b);
/* Frees the memory. The buf may be reused afterwards. */
void buf_free(struct buf *b);

#endif
