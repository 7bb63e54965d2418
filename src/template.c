/* template: `{{name}}` placeholders in spec text (see
 * include/botfactory/template.h). Parsing splits the source into literal and
 * placeholder parts once; checking runs the literal markup through markup.c
 * with stand-in values; rendering escapes each value for the parse mode. */
#include "botfactory/template.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool is_ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident(unsigned char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9');
}

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static int add_part(struct template *t, size_t *cap, int is_var,
		    const char *s, size_t len, size_t off)
{
	if (t->nparts == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct template_part *p = realloc(t->parts,
						  ncap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		t->parts = p;
		*cap = ncap;
	}
	char *text = malloc(len + 1);
	if (!text)
		return -ENOMEM;
	memcpy(text, s, len);
	text[len] = '\0';
	struct template_part *p = &t->parts[t->nparts++];
	p->is_var = is_var;
	p->text = text;
	p->len = len;
	p->off = off;
	return 0;
}

/* Checks the name src[a..b) (trimmed, non-empty). Returns NULL or the error
 * message with *bad set to the offending offset. */
static const char *check_name(const char *src, size_t a, size_t b,
			      size_t *bad)
{
	size_t i = a;
	if (!is_ident_start((unsigned char)src[i])) {
		*bad = i;
		return "placeholder name must start with a letter or '_'";
	}
	while (i < b && is_ident((unsigned char)src[i]))
		i++;
	if (i < b && src[i] == '.') {
		i++;
		if (i == b || !is_ident_start((unsigned char)src[i])) {
			*bad = i - 1;
			return "'.' must be followed by a field name";
		}
		while (i < b && is_ident((unsigned char)src[i]))
			i++;
	}
	if (i < b) {
		*bad = i;
		return "invalid character in placeholder name";
	}
	return NULL;
}

static const char *find_close(const char *s, size_t from, size_t len)
{
	for (size_t i = from; i + 1 < len; i++)
		if (s[i] == '}' && s[i + 1] == '}')
			return s + i;
	return NULL;
}

int template_parse(const char *src, size_t len, struct template **out,
		   size_t *err_off, const char **msg)
{
	struct template *t = calloc(1, sizeof(*t));
	size_t cap = 0, lit = 0, i = 0, bad = 0;
	const char *m = NULL;
	int rc = 0;
	*out = NULL;
	if (!t)
		return -ENOMEM;
	if (!src)
		len = 0;
	while (i + 1 < len) {
		if (src[i] != '{' || src[i + 1] != '{') {
			i++;
			continue;
		}
		const char *close = find_close(src, i + 2, len);
		if (!close) {
			bad = i;
			m = "unclosed {{";
			rc = -EINVAL;
			goto out;
		}
		size_t a = i + 2, b = (size_t)(close - src);
		while (a < b && is_space((unsigned char)src[a]))
			a++;
		while (b > a && is_space((unsigned char)src[b - 1]))
			b--;
		if (a == b) {
			bad = i;
			m = "empty placeholder name";
			rc = -EINVAL;
			goto out;
		}
		m = check_name(src, a, b, &bad);
		if (m) {
			rc = -EINVAL;
			goto out;
		}
		if (i > lit) {
			rc = add_part(t, &cap, 0, src + lit, i - lit, lit);
			if (rc)
				goto out;
		}
		rc = add_part(t, &cap, 1, src + a, b - a, i);
		if (rc)
			goto out;
		i = (size_t)(close - src) + 2;
		lit = i;
	}
	if (len > lit)
		rc = add_part(t, &cap, 0, src + lit, len - lit, lit);
out:
	if (rc) {
		if (rc == -EINVAL) {
			if (err_off)
				*err_off = bad;
			if (msg)
				*msg = m;
		}
		template_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void template_free(struct template *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nparts; i++)
		free(t->parts[i].text);
	free(t->parts);
	free(t);
}

bool template_is_blank(const struct template *t)
{
	for (size_t i = 0; i < t->nparts; i++) {
		const struct template_part *p = &t->parts[i];
		if (p->is_var)
			return false;
		for (size_t k = 0; k < p->len; k++) {
			char c = p->text[k];
			if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
				return false;
		}
	}
	return true;
}

/* Maps an offset in the text rendered with `standin` back to the source:
 * inside a placeholder's stand-in it is the placeholder's start. */
static size_t map_off(const struct template *t, size_t standin_len,
		      size_t off)
{
	size_t dst = 0;
	for (size_t i = 0; i < t->nparts; i++) {
		const struct template_part *p = &t->parts[i];
		size_t n = p->is_var ? standin_len : p->len;
		if (off < dst + n)
			return p->is_var ? p->off : p->off + (off - dst);
		dst += n;
	}
	if (!t->nparts)
		return 0;
	const struct template_part *last = &t->parts[t->nparts - 1];
	return last->is_var ? last->off : last->off + last->len;
}

static int check_with(const struct template *t, enum parse_mode mode,
		      const char *standin, size_t *err_off, const char **msg)
{
	struct buf b = BUF_INIT;
	size_t slen = strlen(standin), off = 0;
	const char *m = NULL;
	int rc = 0;
	for (size_t i = 0; i < t->nparts; i++) {
		const struct template_part *p = &t->parts[i];
		if (p->is_var)
			rc = buf_append(&b, standin, slen);
		else
			rc = buf_append(&b, p->text, p->len);
		if (rc)
			goto out;
	}
	rc = markup_check(mode, b.data ? b.data : "", b.len, &off, &m);
	if (rc == -EINVAL) {
		if (err_off)
			*err_off = map_off(t, slen, off);
		if (msg)
			*msg = m;
	}
out:
	buf_free(&b);
	return rc;
}

/* In MarkdownV2 an odd run of backslashes right before a placeholder
 * escapes the first character of the (already escaped) value. */
static int check_backslash(const struct template *t, size_t *err_off,
			   const char **msg)
{
	for (size_t i = 1; i < t->nparts; i++) {
		const struct template_part *p = &t->parts[i - 1];
		if (!t->parts[i].is_var || p->is_var)
			continue;
		size_t n = 0;
		while (n < p->len && p->text[p->len - 1 - n] == '\\')
			n++;
		if (n % 2) {
			if (err_off)
				*err_off = p->off + p->len - 1;
			if (msg)
				*msg = "'\\' before a placeholder must be "
				       "escaped as \\\\";
			return -EINVAL;
		}
	}
	return 0;
}

int template_check_markup(const struct template *t, enum parse_mode mode,
			  size_t *err_off, const char **msg)
{
	int rc;
	if (mode != PARSE_MODE_HTML && mode != PARSE_MODE_MARKDOWNV2)
		return 0;
	/* any non-empty value, then an unset (empty) one */
	rc = check_with(t, mode, "x", err_off, msg);
	if (!rc && mode == PARSE_MODE_MARKDOWNV2)
		rc = check_backslash(t, err_off, msg);
	/* values are escaped for text and double-quoted attributes; a ' in a
	 * value would end a single-quoted one (and could add an attribute) */
	if (!rc && mode == PARSE_MODE_HTML && check_with(t, mode, "'", err_off, msg) == -EINVAL) {
		if (msg)
			*msg = "a placeholder inside a '...' attribute: quote the attribute with \"...\"";
		return -EINVAL;
	}
	if (!rc)
		rc = check_with(t, mode, "", err_off, msg);
	return rc;
}

/* Appends value v escaped for mode. In MarkdownV2 a line break of a value
 * written inside a block quotation continues the quotation ("\n>"): the
 * rest of the value stays quoted, and formatting opened before it can be
 * closed after it (a quotation ended by the value would leave it open
 * across the quotation's end, which Telegram refuses). out[orig..] is the
 * message rendered so far. */
static int render_value(enum parse_mode mode, struct buf *out, size_t orig, const char *v)
{
	const char *nl = mode == PARSE_MODE_MARKDOWNV2 ? strchr(v, '\n') : NULL;
	if (!nl || out->len <= orig || !markup_md_quote_open(out->data + orig, out->len - orig))
		return markup_escape(mode, out, v, strlen(v));
	for (;;) {
		int rc = markup_escape(mode, out, v, (size_t)(nl - v));
		if (rc)
			return rc;
		if (!*nl)
			return 0;
		if ((rc = buf_append(out, "\n>", 2)))
			return rc;
		v = nl + 1;
		nl = strchr(v, '\n');
		if (!nl)
			nl = v + strlen(v);
	}
}

int template_render(const struct template *t, enum parse_mode mode,
		    template_lookup_fn lookup, void *ctx, struct buf *out)
{
	size_t orig = out->len;
	int rc = 0;
	for (size_t i = 0; i < t->nparts; i++) {
		const struct template_part *p = &t->parts[i];
		if (!p->is_var) {
			rc = buf_append(out, p->text, p->len);
		} else {
			const char *v = lookup ? lookup(ctx, p->text) : NULL;
			if (v)
				rc = render_value(mode, out, orig, v);
		}
		if (rc)
			goto out;
	}
out:
	if (rc)
		buf_truncate(out, orig);
	return rc;
}
