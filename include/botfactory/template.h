/* template: `{{name}}` placeholders in spec text. A template is parsed once
 * when the spec loads; rendering substitutes values escaped for the parse mode
 * in force, while the literal text around them is the spec author's markup,
 * checked at load time. Pure, no I/O. */
#ifndef BOTFACTORY_TEMPLATE_H
#define BOTFACTORY_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "botfactory/buf.h"
#include "botfactory/markup.h"

struct template_part {
	int is_var;   /* 0: literal text; 1: placeholder */
	char *text;   /* literal bytes, or the variable name ("name",
			 "user.first_name"); NUL-terminated, owned */
	size_t len;   /* bytes of text */
	size_t off;   /* byte offset of this part in the source string */
};

struct template {
	struct template_part *parts;
	size_t nparts;
};

/* Parses src[0..len). Placeholders are `{{ name }}` with optional spaces
 * inside the braces; a name is [A-Za-z_][A-Za-z0-9_]* optionally followed by
 * one `.field` of the same shape. Everything else is literal. An unclosed
 * `{{`, an empty or malformed name is an error.
 * Returns 0 and a new template in *out (free with template_free), -EINVAL
 * with *err_off (byte offset in src) and *msg (static string) set, or
 * -ENOMEM. */
int template_parse(const char *src, size_t len, struct template **out,
		   size_t *err_off, const char **msg);

void template_free(struct template *t);

/* True when the template has no placeholder and its literal text is empty or
 * only whitespace (it could never produce a message). */
bool template_is_blank(const struct template *t);

/* Checks the template's literal markup for `mode` as it will be sent, with
 * each placeholder standing for some plain text, and for nothing (an unset
 * value); in MarkdownV2 a lone '\' right before a placeholder is an error.
 * Returns 0, or -EINVAL with *err_off = byte offset in the original source
 * (an error inside a placeholder's value points at the placeholder's `{{`)
 * and *msg set (static), or -ENOMEM. */
int template_check_markup(const struct template *t, enum parse_mode mode,
			  size_t *err_off, const char **msg);

/* Looks a placeholder name up. Returns the value (borrowed, must stay valid
 * until template_render returns) or NULL when unset (renders as empty). */
typedef const char *(*template_lookup_fn)(void *ctx, const char *name);

/* Appends the rendered text to out: literal parts as they are, values escaped
 * with markup_escape(mode). Returns 0 or -ENOMEM. */
int template_render(const struct template *t, enum parse_mode mode,
		    template_lookup_fn lookup, void *ctx, struct buf *out);

#endif
