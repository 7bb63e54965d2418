/* markup: Telegram's text formatting modes (HTML, MarkdownV2, none).
 * Checks literal markup written in a spec at load time (so a malformed tag is
 * a validation error, not a runtime 400), escapes values for the mode in force,
 * and splits long output into messages Telegram accepts, never inside a tag,
 * an entity or an escape. Pure functions, no I/O. */
#ifndef BOTFACTORY_MARKUP_H
#define BOTFACTORY_MARKUP_H

#include <stdbool.h>
#include <stddef.h>

#include "botfactory/buf.h"

enum parse_mode {
	PARSE_MODE_NONE = 0, /* plain text: no parse_mode sent */
	PARSE_MODE_HTML,
	PARSE_MODE_MARKDOWNV2,
};

/* Telegram's limit for one message, in UTF-16 code units of visible text. */
#define MARKUP_MAX_MESSAGE 4096

/* The name Telegram expects in `parse_mode` ("HTML", "MarkdownV2"), or NULL
 * for PARSE_MODE_NONE. Static string. */
const char *markup_mode_api_name(enum parse_mode mode);

/* Parses a spec's parse_mode value: "HTML", "MarkdownV2" or "none"
 * (case-insensitive). Returns 0 and sets *out, or -EINVAL. */
int markup_mode_parse(const char *s, enum parse_mode *out);

/* Checks that text[0..len) (valid UTF-8) is well-formed markup for `mode`:
 * HTML: only Telegram's tags (b strong i em u ins s strike del span
 * class="tg-spoiler" tg-spoiler a href code pre blockquote tg-emoji), properly
 * nested and closed, attributes quoted, '<' '>' '&' only as markup or entities
 * (&lt; &gt; &amp; &quot; &#N; &#xN;). MarkdownV2: every special character
 * _*[]()~`>#+-=|{}.! outside code is either escaped with '\' or part of a
 * balanced entity; code/pre escape only ` and \. NONE: always fine.
 * Returns 0 when fine; else -EINVAL with *err_off = byte offset of the
 * problem and *msg = a static, human-readable description. */
int markup_check(enum parse_mode mode, const char *text, size_t len,
		 size_t *err_off, const char **msg);

/* Appends s[0..len) to out escaped so that Telegram shows it literally in
 * `mode` (HTML: < > & "; MarkdownV2: all specials and backslash; NONE: as is).
 * Returns 0 or -ENOMEM. */
int markup_escape(enum parse_mode mode, struct buf *out, const char *s,
		  size_t len);

/* Length of the visible text of well-formed markup, in UTF-16 code units
 * (what Telegram counts against MARKUP_MAX_MESSAGE). For text that is not
 * well-formed, the UTF-16 length of the raw text. */
size_t markup_visible_len(enum parse_mode mode, const char *text, size_t len);

/* Splits well-formed markup text[0..len) into messages whose visible text is
 * at most `limit` UTF-16 code units. Cuts only between tokens (never inside a
 * tag, entity, escape or UTF-8 sequence, nor inside what shows as one
 * character: an emoji ZWJ sequence, a flag, a letter and its combining
 * accent, a skin tone or keycap), preferring, within the last part of
 * the window, a blank line, then a newline, then a space; a formatting
 * entity open at a cut is closed at the end of one chunk and reopened at the
 * start of the next, so each chunk is well-formed on its own. Chunks that
 * would show nothing (empty or whitespace only) are dropped. A single token
 * wider than `limit` (an emoji counts 2; a custom emoji is one token) gets a
 * chunk of its own, which then exceeds the limit; a limit of 0 acts as 1.
 * Returns the number of chunks (0 when nothing is visible) and stores a
 * malloc'ed array of malloc'ed NUL-terminated strings in *out (caller frees
 * each and the array; *out is NULL when 0 or an error is returned),
 * -EINVAL when text is not well-formed for `mode` (see markup_check), or
 * -ENOMEM. */
int markup_split(enum parse_mode mode, const char *text, size_t len,
		 size_t limit, char ***out);

/* True when MarkdownV2 text[0..len), the beginning of a message, ends in
 * the middle of a line of a block quotation: a line break written there
 * must be followed by '>' for the text after it to stay quoted. False at
 * the start of a line, outside quotations, inside code or pre (where a
 * line break is text and '>' would show), and for text that is not
 * well-formed so far. */
bool markup_md_quote_open(const char *text, size_t len);

#endif
