/* spec: compiles a YAML/JSON bot definition into an immutable struct spec.
 * The compiler walks the document tree once, building the spec and recording
 * every problem with its position; cross-references (goto and button targets,
 * template variables, goto loops) are checked once the whole tree is read, so
 * that one run reports every error. The language is documented in doc/spec.md. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "botfactory/spec.h"

#include <ctype.h>
#include <errno.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "botfactory/utf8.h"

/* A place where something is referenced, checked after the whole walk. */
struct ref {
	char *name;
	int line, col;
};

struct refs {
	struct ref *v;
	size_t n, cap;
};

struct cc {
	const char *src;      /* the spec's text */
	size_t len;
	size_t *lines;        /* byte offset of each line's start, built lazily */
	size_t nlines;
	struct diags *d;
	struct spec *s;
	int nomem;            /* sticky -ENOMEM */
	struct refs var_uses; /* {{name}} in templates */
	struct refs var_defs; /* save: and set: */
	struct refs targets;  /* goto and button flow targets */
	struct button **buttons;
	size_t nbuttons, capbuttons;
	const struct doc_node *flows_node;
};

static const char *const builtin_vars[] = {
	"args", "user.id", "user.first_name", "user.last_name",
	"user.username", "chat.id", "chat.title", "bot.username",
};

/* ---- small helpers ---------------------------------------------------- */

static void err(struct cc *c, const struct doc_node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void err(struct cc *c, const struct doc_node *n, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	int rc = buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (rc || diags_add(c->d, n ? n->line : 0, n ? n->col : 0, "%s", b.data))
		c->nomem = 1;
	buf_free(&b);
}

static char *dup(struct cc *c, const char *s)
{
	char *p = strdup(s);
	if (!p)
		c->nomem = 1;
	return p;
}

static void *zalloc(struct cc *c, size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		c->nomem = 1;
	return p;
}

static void ref_add(struct cc *c, struct refs *r, const char *name, int line,
		    int col)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct ref *v = realloc(r->v, cap * sizeof(*v));
		if (!v) {
			c->nomem = 1;
			return;
		}
		r->v = v;
		r->cap = cap;
	}
	char *p = dup(c, name);
	if (!p)
		return;
	r->v[r->n++] = (struct ref){p, line, col};
}

static void refs_free(struct refs *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].name);
	free(r->v);
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 32 || lb > 32)
		return 99;
	size_t row[33];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cur = row[j];
			size_t best = prev + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

/* Reports keys of map that are not in allowed[] (NULL-terminated), with a
 * suggestion for likely typos. */
static void check_keys(struct cc *c, const struct doc_node *map,
		       const char *const *allowed, const char *where)
{
	for (size_t i = 0; i < map->n; i++) {
		const struct doc_node *k = map->items[2 * i];
		const char *best = NULL;
		size_t bestd = 3;
		bool ok = false;
		for (const char *const *a = allowed; *a; a++) {
			if (!strcmp(k->str, *a)) {
				ok = true;
				break;
			}
			size_t dist = edit_distance(k->str, *a);
			if (dist < bestd) {
				bestd = dist;
				best = *a;
			}
		}
		if (ok)
			continue;
		struct buf list = BUF_INIT;
		for (const char *const *a = allowed; *a; a++)
			if (buf_printf(&list, "%s%s", a == allowed ? "" : ", ", *a))
				c->nomem = 1;
		if (best)
			err(c, k, "unknown key '%s' in %s (did you mean '%s'?)",
			    k->str, where, best);
		else
			err(c, k, "unknown key '%s' in %s (allowed: %s)", k->str,
			    where, list.data ? list.data : "");
		buf_free(&list);
	}
}

/* Returns the scalar's text, or NULL after reporting that n is not a
 * non-empty string. Checks UTF-8 and NUL bytes. */
static const char *want_str(struct cc *c, const struct doc_node *n,
			    const char *what)
{
	if (n->kind != DOC_SCALAR) {
		err(c, n, "%s must be a string, not %s", what, doc_kind_name(n));
		return NULL;
	}
	if (doc_is_null(n) || n->len == 0) {
		err(c, n, "%s must not be empty", what);
		return NULL;
	}
	size_t bad;
	if (strlen(n->str) != n->len) {
		err(c, n, "%s contains a NUL character", what);
		return NULL;
	}
	if (!utf8_valid(n->str, n->len, &bad)) {
		err(c, n, "%s is not valid UTF-8 (byte %zu)", what, bad);
		return NULL;
	}
	return n->str;
}

static bool is_ident(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

/* Names that save: and set: may assign: identifiers other than the
 * built-in namespaces. */
static bool var_name_ok(const char *s)
{
	return is_ident(s, 64) && strcmp(s, "args") && strcmp(s, "user") &&
	       strcmp(s, "chat") && strcmp(s, "bot");
}

/* Flow ids: 1-64 of [A-Za-z0-9_-], starting with a letter, digit or _. */
static bool is_slug(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SPEC_MAX_ID_LEN || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

static size_t count_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* Line and column of byte `off` inside scalar n, where that can be known
 * (single-line plain or quoted scalars); else the scalar's own position. */
/* Byte offset in the source of (1-based line, column in characters), or
 * (size_t)-1 when unknown. */
static size_t src_offset(struct cc *c, int line, int col)
{
	if (!c->lines) {
		size_t n = 1;
		for (size_t i = 0; i < c->len; i++)
			n += c->src[i] == '\n';
		c->lines = malloc(n * sizeof(*c->lines));
		if (!c->lines)
			return (size_t)-1;
		c->lines[0] = 0;
		c->nlines = 1;
		for (size_t i = 0; i < c->len; i++)
			if (c->src[i] == '\n')
				c->lines[c->nlines++] = i + 1;
	}
	if (line < 1 || (size_t)line > c->nlines || col < 1)
		return (size_t)-1;
	size_t i = c->lines[line - 1];
	for (int k = 1; k < col && i < c->len; k++) {
		i++;
		while (i < c->len && ((unsigned char)c->src[i] & 0xC0) == 0x80)
			i++;
	}
	return i;
}

/* Line and column of byte `off` of scalar n's text. Exact when the scalar
 * sits on one line and its source is its text (no escapes, no folding);
 * otherwise the scalar's own position, never a wrong one. */
static void scalar_pos(struct cc *c, const struct doc_node *n, size_t off,
		       int *line, int *col)
{
	*line = n->line;
	*col = n->col;
	if (n->end_line != n->line || (n->style != 'p' && n->style != '\'' &&
				       n->style != '"'))
		return;
	size_t a = src_offset(c, n->line, n->col), b = src_offset(c, n->end_line, n->end_col);
	size_t q = n->style == 'p' ? 0 : 1;
	if (a == (size_t)-1 || b == (size_t)-1 || b < a + 2 * q ||
	    b - a - 2 * q != n->len || memcmp(c->src + a + q, n->str, n->len))
		return;
	size_t chars = 0;
	for (size_t i = 0; i < off && i < n->len; i++)
		chars += ((unsigned char)n->str[i] & 0xC0) != 0x80;
	*col += (int)(chars + q);
}

static void err_at(struct cc *c, const struct doc_node *n, size_t off,
		   const char *what, const char *msg)
{
	int line, col;
	scalar_pos(c, n, off, &line, &col);
	if (diags_add(c->d, line, col, "%s: %s", what, msg))
		c->nomem = 1;
}

/* Compiles a text template: placeholders are recorded for the variable
 * check, literal markup is checked for `mode`. Returns NULL on error
 * (reported). */
static struct template *want_template(struct cc *c, const struct doc_node *n,
				      const char *what, enum parse_mode mode,
				      bool check_markup)
{
	const char *s = want_str(c, n, what);
	if (!s)
		return NULL;
	struct template *t = NULL;
	size_t off = 0;
	const char *msg = NULL;
	int rc = template_parse(s, n->len, &t, &off, &msg);
	if (rc == -ENOMEM) {
		c->nomem = 1;
		return NULL;
	}
	if (rc) {
		err_at(c, n, off, what, msg);
		return NULL;
	}
	if (template_is_blank(t)) {
		err(c, n, "%s must not be empty", what);
		template_free(t);
		return NULL;
	}
	if (check_markup) {
		rc = template_check_markup(t, mode, &off, &msg);
		if (rc == -ENOMEM)
			c->nomem = 1;
		else if (rc) {
			struct buf b = BUF_INIT;
			if (buf_printf(&b, "%s (parse_mode %s)", msg,
				       markup_mode_api_name(mode)))
				c->nomem = 1;
			err_at(c, n, off, what, b.data ? b.data : msg);
			buf_free(&b);
			template_free(t);
			return NULL;
		}
	}
	for (size_t i = 0; i < t->nparts; i++) {
		if (!t->parts[i].is_var)
			continue;
		int line, col;
		scalar_pos(c, n, t->parts[i].off, &line, &col);
		ref_add(c, &c->var_uses, t->parts[i].text, line, col);
	}
	return t;
}

static bool want_bool(struct cc *c, const struct doc_node *n, const char *what,
		      bool *out)
{
	if (n->kind == DOC_SCALAR && n->plain) {
		if (!strcmp(n->str, "true") || !strcmp(n->str, "True") ||
		    !strcmp(n->str, "TRUE")) {
			*out = true;
			return true;
		}
		if (!strcmp(n->str, "false") || !strcmp(n->str, "False") ||
		    !strcmp(n->str, "FALSE")) {
			*out = false;
			return true;
		}
	}
	err(c, n, "%s must be true or false", what);
	return false;
}

static bool want_number(struct cc *c, const struct doc_node *n,
			const char *what, bool integer, double *out)
{
	/* decimal notation only (strtod would also take 0x10, inf, nan) */
	if (n->kind == DOC_SCALAR && n->plain && n->len > 0 &&
	    strspn(n->str, "0123456789+-.eE") == n->len) {
		char *end = NULL;
		errno = 0;
		double v = strtod(n->str, &end);
		if (errno == ERANGE && v > -1 && v < 1)
			errno = 0; /* underflow (1e-400): as good as 0 */
		/* range first: casting an out-of-range double is undefined */
		if (errno == 0 && end && *end == '\0' && v == v &&
		    v < 1e300 && v > -1e300 &&
		    (!integer || (v <= 9007199254740992.0 && v >= -9007199254740992.0 &&
				  v == (double)(long long)v))) {
			*out = v;
			return true;
		}
	}
	err(c, n, "%s must be %s", what, integer ? "an integer" : "a number");
	return false;
}

static pcre2_code *want_regex(struct cc *c, const struct doc_node *n,
			      const char *what)
{
	const char *s = want_str(c, n, what);
	if (!s)
		return NULL;
	int errcode;
	PCRE2_SIZE erroff;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)s, n->len, PCRE2_UTF,
				       &errcode, &erroff, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
			strcpy((char *)msg, "invalid pattern");
		struct buf b = BUF_INIT;
		if (buf_printf(&b, "invalid regular expression: %s", (char *)msg))
			c->nomem = 1;
		err_at(c, n, erroff, what, b.data ? b.data : "invalid");
		buf_free(&b);
	}
	return re;
}

static bool want_mode(struct cc *c, const struct doc_node *n,
		      enum parse_mode *out)
{
	const char *s = want_str(c, n, "parse_mode");
	if (!s)
		return false;
	if (markup_mode_parse(s, out)) {
		err(c, n, "parse_mode must be HTML, MarkdownV2 or none, not '%s'", s);
		return false;
	}
	return true;
}

int spec_parse_duration(const char *s, int64_t *ms)
{
	int64_t total = 0;
	const char *p = s;
	if (!*p)
		return -EINVAL;
	while (*p) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		int64_t v = 0;
		while (isdigit((unsigned char)*p)) {
			v = v * 10 + (*p - '0');
			if (v > 100000000)
				return -EINVAL;
			p++;
		}
		int64_t unit;
		switch (*p) {
		case '\0':
			if (p != s && total == 0 && strspn(s, "0123456789") == strlen(s))
				unit = 1000; /* bare number: seconds */
			else
				return -EINVAL;
			break;
		case 's':
			unit = 1000;
			p++;
			break;
		case 'm':
			unit = 60 * 1000;
			p++;
			break;
		case 'h':
			unit = 3600 * 1000;
			p++;
			break;
		case 'd':
			unit = 24 * 3600 * 1000;
			p++;
			break;
		default:
			return -EINVAL;
		}
		total += v * unit;
		if (total > SPEC_MAX_TIMEOUT_MS * 10)
			return -EINVAL;
	}
	*ms = total;
	return 0;
}

/* ---- buttons ------------------------------------------------------------ */

static void index_button(struct cc *c, struct button *b)
{
	if (c->nbuttons == c->capbuttons) {
		size_t cap = c->capbuttons ? c->capbuttons * 2 : 16;
		struct button **v = realloc(c->buttons, cap * sizeof(*v));
		if (!v) {
			c->nomem = 1;
			return;
		}
		c->buttons = v;
		c->capbuttons = cap;
	}
	c->buttons[c->nbuttons++] = b;
}

/* Compiles one button (reply `buttons` entry, or an ask's choice when
 * ask_flow is set). */
static void compile_button(struct cc *c, const struct doc_node *n,
			   struct button *b, const char *ask_flow,
			   const char *ask_key)
{
	static const char *const keys[] = {"text", "flow", "url", "value", NULL};
	static const char *const choice_keys[] = {"text", "value", "goto", NULL};
	b->line = n->line;
	b->col = n->col;
	if (ask_flow && n->kind == DOC_SCALAR) {
		/* a choice written as a plain string: label and value */
		b->kind = BUTTON_CHOICE;
		b->label = want_template(c, n, "choice", PARSE_MODE_NONE, false);
		if (b->label && b->label->nparts == 1 && !b->label->parts[0].is_var)
			b->value = dup(c, n->str);
		else if (b->label)
			err(c, n, "a choice with a placeholder needs a 'value'");
	} else if (n->kind != DOC_MAP) {
		err(c, n, "a %s must be a mapping like {text: ..., %s}, not %s",
		    ask_flow ? "choice" : "button",
		    ask_flow ? "value: ..." : "flow: ...", doc_kind_name(n));
		return;
	} else {
		check_keys(c, n, ask_flow ? choice_keys : keys,
			   ask_flow ? "a choice" : "a button");
		const struct doc_node *text = doc_map_get(n, "text");
		if (!text) {
			err(c, n, "a %s needs 'text'", ask_flow ? "choice" : "button");
			return;
		}
		b->label = want_template(c, text, "button text", PARSE_MODE_NONE,
					 false);
		const struct doc_node *flow = doc_map_get(n, ask_flow ? "goto" : "flow");
		const struct doc_node *url = ask_flow ? NULL : doc_map_get(n, "url");
		const struct doc_node *value = doc_map_get(n, "value");
		if (ask_flow) {
			b->kind = BUTTON_CHOICE;
			if (value) {
				const char *v = want_str(c, value, "value");
				if (v)
					b->value = dup(c, v);
			} else if (b->label && b->label->nparts == 1 &&
				   !b->label->parts[0].is_var) {
				b->value = dup(c, text->str);
			} else if (b->label) {
				err(c, n, "a choice with a placeholder needs a 'value'");
			}
		} else {
			int count = !!flow + !!url + !!value;
			if (count != 1) {
				err(c, n, "a button needs exactly one of 'flow', 'url' or 'value'");
				return;
			}
			b->kind = flow ? BUTTON_FLOW : url ? BUTTON_URL : BUTTON_VALUE;
			if (value) {
				const char *v = want_str(c, value, "value");
				if (v)
					b->value = dup(c, v);
			}
			if (url) {
				const char *u = want_str(c, url, "url");
				if (u && strncmp(u, "https://", 8) &&
				    strncmp(u, "http://", 7) && strncmp(u, "tg://", 5))
					err(c, url, "url must start with https://, http:// or tg://");
				else if (u)
					b->url = dup(c, u);
			}
		}
		if (flow) {
			const char *f = want_str(c, flow, ask_flow ? "goto" : "flow");
			if (f) {
				b->flow = dup(c, f);
				ref_add(c, &c->targets, f, flow->line, flow->col);
			}
		}
	}
	if (b->value && strlen(b->value) > SPEC_MAX_VALUE_LEN)
		err(c, n, "value is longer than %d bytes", SPEC_MAX_VALUE_LEN);
	if (b->kind == BUTTON_URL)
		return;
	if (b->kind == BUTTON_FLOW && b->flow) {
		const char *f[] = {"flow", b->flow};
		button_code(b->code, f, 2);
	} else if (b->kind == BUTTON_VALUE && b->value) {
		const char *f[] = {"value", b->value};
		button_code(b->code, f, 2);
	} else if (b->kind == BUTTON_CHOICE && b->value) {
		b->ask_flow = (char *)ask_flow;
		b->ask_key = ask_key;
		const char *f[] = {"choice", ask_flow, ask_key, b->value};
		button_code(b->code, f, 4);
	} else {
		return;
	}
	index_button(c, b);
}

/* Compiles `buttons:` or `choices:`: a flat list is one row, a list of lists
 * is rows. */
static void compile_keyboard(struct cc *c, const struct doc_node *n,
			     struct keyboard *kb, const char *what,
			     const char *ask_flow, const char *ask_key)
{
	if (n->kind != DOC_SEQ || n->n == 0) {
		err(c, n, "%s must be a non-empty list", what);
		return;
	}
	size_t lists = 0;
	for (size_t i = 0; i < n->n; i++)
		lists += n->items[i]->kind == DOC_SEQ;
	if (lists && lists != n->n) {
		err(c, n, "%s must be either one row (a list of %s) or rows (a list of lists), not a mix",
		    what, ask_flow ? "choices" : "buttons");
		return;
	}
	size_t nrows = lists ? n->n : 1;
	kb->rows = zalloc(c, nrows, sizeof(*kb->rows));
	if (!kb->rows)
		return;
	kb->nrows = nrows;
	size_t total = 0;
	for (size_t r = 0; r < nrows; r++) {
		const struct doc_node *row = lists ? n->items[r] : n;
		if (row->n == 0) {
			err(c, row, "a row of %s must not be empty", what);
			continue;
		}
		if (row->n > SPEC_MAX_ROW_BUTTONS)
			err(c, row, "a row has %zu buttons; Telegram allows at most %d per row",
			    row->n, SPEC_MAX_ROW_BUTTONS);
		kb->rows[r].v = zalloc(c, row->n, sizeof(struct button));
		if (!kb->rows[r].v)
			return;
		kb->rows[r].n = row->n;
		for (size_t i = 0; i < row->n; i++)
			compile_button(c, row->items[i], &kb->rows[r].v[i],
				       ask_flow, ask_key);
		total += row->n;
	}
	if (total > SPEC_MAX_MSG_BUTTONS)
		err(c, n, "%zu buttons on one message; Telegram allows at most %d",
		    total, SPEC_MAX_MSG_BUTTONS);
	if (ask_flow) {
		/* two choices with one value would be indistinguishable: each
		 * repeat is reported once, at itself */
		for (size_t r2 = 0; r2 < kb->nrows; r2++)
			for (size_t j = 0; j < kb->rows[r2].n; j++) {
				const struct button *b = &kb->rows[r2].v[j];
				bool seen = false;
				for (size_t r = 0; b->value && !seen && r <= r2; r++)
					for (size_t i = 0; !seen && i < (r == r2 ? j : kb->rows[r].n); i++)
						seen = kb->rows[r].v[i].value &&
						       !strcmp(kb->rows[r].v[i].value, b->value);
				if (seen && diags_add(c->d, b->line, b->col, "duplicate choice value '%s'",
						      b->value))
					c->nomem = 1;
			}
	}
}

/* ---- steps ---------------------------------------------------------------- */

static void compile_steps(struct cc *c, const struct doc_node *n,
			  struct step_list *out, const char *flow_id,
			  enum parse_mode mode, const char *where);

static void compile_validate(struct cc *c, const struct doc_node *n,
			     struct step *st, enum parse_mode mode, bool choices)
{
	static const char *const keys[] = {"type", "min", "max", "pattern",
					   "error", NULL};
	if (n->kind != DOC_MAP) {
		err(c, n, "validate must be a mapping like {type: integer, min: 1}, not %s",
		    doc_kind_name(n));
		return;
	}
	check_keys(c, n, keys, "validate");
	const struct doc_node *type = doc_map_get(n, "type");
	const struct doc_node *min = doc_map_get(n, "min");
	const struct doc_node *max = doc_map_get(n, "max");
	const struct doc_node *pattern = doc_map_get(n, "pattern");
	const struct doc_node *error = doc_map_get(n, "error");
	if (error)
		st->error = want_template(c, error, "error", mode, true);
	if (!type) {
		if (!choices)
			err(c, n, "validate needs 'type' (integer, number or regex)");
		else if (min || max || pattern)
			err(c, n, "an ask with choices accepts only 'error' under validate");
		return;
	}
	if (choices) {
		err(c, type, "an ask with choices cannot also have a validate type");
		return;
	}
	const char *t = want_str(c, type, "type");
	if (!t)
		return;
	if (!strcmp(t, "integer"))
		st->vtype = VALIDATE_INTEGER;
	else if (!strcmp(t, "number"))
		st->vtype = VALIDATE_NUMBER;
	else if (!strcmp(t, "regex"))
		st->vtype = VALIDATE_REGEX;
	else {
		err(c, type, "unknown validate type '%s' (use integer, number or regex)", t);
		return;
	}
	bool numeric = st->vtype != VALIDATE_REGEX;
	if (min) {
		if (!numeric)
			err(c, min, "min applies only to integer and number");
		else
			st->has_min = want_number(c, min, "min",
						  st->vtype == VALIDATE_INTEGER, &st->min);
	}
	if (max) {
		if (!numeric)
			err(c, max, "max applies only to integer and number");
		else
			st->has_max = want_number(c, max, "max",
						  st->vtype == VALIDATE_INTEGER, &st->max);
	}
	if (st->has_min && st->has_max && st->min > st->max)
		err(c, max, "max is smaller than min");
	if (pattern && numeric)
		err(c, pattern, "pattern applies only to type regex");
	else if (pattern)
		st->re = want_regex(c, pattern, "pattern");
	else if (!numeric)
		err(c, n, "validate type regex needs 'pattern'");
}

static void compile_ask(struct cc *c, const struct doc_node *n, struct step *st,
			const char *flow_id, size_t index, size_t occurrence)
{
	const struct doc_node *save = doc_map_get(n, "save");
	const struct doc_node *validate = doc_map_get(n, "validate");
	const struct doc_node *choices = doc_map_get(n, "choices");
	const struct doc_node *timeout = doc_map_get(n, "timeout");
	const struct doc_node *on_timeout = doc_map_get(n, "on_timeout");
	struct buf key = BUF_INIT;

	st->text = want_template(c, doc_map_get(n, "ask"), "ask", st->mode, true);
	if (save) {
		const char *v = want_str(c, save, "save");
		if (v && !var_name_ok(v))
			err(c, save, "save must be a variable name (letters, digits, _; not args, user, chat or bot), not '%s'",
			    v);
		else if (v) {
			st->save = dup(c, v);
			ref_add(c, &c->var_defs, v, save->line, save->col);
		}
	}
	/* the key must tell apart two asks that save the same variable */
	if (st->save ? (occurrence ? buf_printf(&key, "save:%s:%zu", st->save,
						 occurrence + 1)
				   : buf_printf(&key, "save:%s", st->save))
		     : buf_printf(&key, "step:%zu", index))
		c->nomem = 1;
	st->key = key.data;
	if (validate)
		compile_validate(c, validate, st, st->mode, choices != NULL);
	if (choices && st->key)
		compile_keyboard(c, choices, &st->kb, "choices", flow_id, st->key);
	if (timeout) {
		const char *t = want_str(c, timeout, "timeout");
		if (t && (spec_parse_duration(t, &st->timeout_ms) ||
			  st->timeout_ms < 1000 || st->timeout_ms > SPEC_MAX_TIMEOUT_MS))
			err(c, timeout, "timeout must be a duration from 1s to 30d like 90s, 10m, 2h or 1h30m, not '%s'",
			    t);
	}
	if (on_timeout && !timeout)
		err(c, on_timeout, "on_timeout needs a 'timeout'");
	if (on_timeout)
		compile_steps(c, on_timeout, &st->on_timeout, NULL, st->mode,
			      "on_timeout");
}

static void compile_step(struct cc *c, const struct doc_node *n, struct step *st,
			 const char *flow_id, size_t index, size_t occurrence,
			 enum parse_mode mode, const char *where)
{
	static const char *const actions[] = {"reply", "ask", "goto", "set"};
	static const char *const reply_keys[] = {"reply", "buttons", "parse_mode", NULL};
	static const char *const ask_keys[] = {"ask", "save", "validate", "choices",
					       "timeout", "on_timeout", "parse_mode", NULL};
	static const char *const goto_keys[] = {"goto", NULL};
	static const char *const set_keys[] = {"set", NULL};
	static const char *const all_keys[] = {"reply", "ask", "goto", "set",
					       "buttons", "parse_mode", "save",
					       "validate", "choices", "timeout",
					       "on_timeout", NULL};
	st->line = n->line;
	st->col = n->col;
	st->mode = mode;
	if (n->kind != DOC_MAP) {
		err(c, n, "a step must be a mapping like {reply: \"...\"}, not %s",
		    doc_kind_name(n));
		return;
	}
	int found = -1;
	for (int i = 0; i < 4; i++) {
		if (!doc_map_get(n, actions[i]))
			continue;
		if (found >= 0) {
			err(c, n, "a step has exactly one of reply, ask, goto, set; found '%s' and '%s'",
			    actions[found], actions[i]);
			return;
		}
		found = i;
	}
	if (found < 0) {
		check_keys(c, n, all_keys, "a step");
		err(c, n, "a step needs one of reply, ask, goto, set");
		return;
	}
	st->kind = (enum step_kind)found;
	const struct doc_node *pm = doc_map_get(n, "parse_mode");
	if (pm && (st->kind == STEP_REPLY || st->kind == STEP_ASK))
		want_mode(c, pm, &st->mode);
	switch (st->kind) {
	case STEP_REPLY: {
		check_keys(c, n, reply_keys, "a reply step");
		st->text = want_template(c, doc_map_get(n, "reply"), "reply",
					 st->mode, true);
		const struct doc_node *buttons = doc_map_get(n, "buttons");
		if (buttons)
			compile_keyboard(c, buttons, &st->kb, "buttons", NULL, NULL);
		break;
	}
	case STEP_ASK:
		check_keys(c, n, ask_keys, "an ask step");
		if (!flow_id) {
			err(c, n, "ask is not allowed in %s (use goto to a flow that asks)",
			    where);
			return;
		}
		compile_ask(c, n, st, flow_id, index, occurrence);
		break;
	case STEP_GOTO: {
		check_keys(c, n, goto_keys, "a goto step");
		const struct doc_node *g = doc_map_get(n, "goto");
		const char *t = want_str(c, g, "goto");
		if (t) {
			st->target = dup(c, t);
			ref_add(c, &c->targets, t, g->line, g->col);
		}
		break;
	}
	case STEP_SET: {
		check_keys(c, n, set_keys, "a set step");
		const struct doc_node *m = doc_map_get(n, "set");
		if (m->kind != DOC_MAP || m->n == 0) {
			err(c, m, "set must be a non-empty mapping like {var: value}");
			return;
		}
		st->sets = zalloc(c, m->n, sizeof(*st->sets));
		if (!st->sets)
			return;
		st->nsets = m->n;
		for (size_t i = 0; i < m->n; i++) {
			const struct doc_node *k = m->items[2 * i];
			const struct doc_node *v = m->items[2 * i + 1];
			if (!var_name_ok(k->str)) {
				err(c, k, "'%s' is not a variable name (letters, digits, _; not args, user, chat or bot)",
				    k->str);
				continue;
			}
			st->sets[i].var = dup(c, k->str);
			ref_add(c, &c->var_defs, k->str, k->line, k->col);
			if (v->kind == DOC_SCALAR && (doc_is_null(v) || v->len == 0)) {
				/* `var: ""`/null clears the variable */
				continue;
			}
			const char *vs = want_str(c, v, "a set value");
			if (!vs)
				continue;
			size_t off;
			const char *msg;
			int rc = template_parse(vs, v->len, &st->sets[i].value, &off, &msg);
			if (rc == -ENOMEM)
				c->nomem = 1;
			else if (rc)
				err_at(c, v, off, "set value", msg);
			else
				for (size_t p = 0; p < st->sets[i].value->nparts; p++)
					if (st->sets[i].value->parts[p].is_var) {
						int line, col;
						scalar_pos(c, v, st->sets[i].value->parts[p].off,
							   &line, &col);
						ref_add(c, &c->var_uses,
							st->sets[i].value->parts[p].text,
							line, col);
					}
		}
		break;
	}
	}
}

/* How many steps before item i of the list save the same variable. */
static size_t save_occurrence(const struct doc_node *list, size_t i)
{
	const struct doc_node *save = doc_map_get(list->items[i], "save");
	size_t count = 0;
	if (!save || save->kind != DOC_SCALAR)
		return 0;
	for (size_t j = 0; j < i; j++) {
		const struct doc_node *prev = doc_map_get(list->items[j], "save");
		count += prev && prev->kind == DOC_SCALAR && !strcmp(prev->str, save->str);
	}
	return count;
}

static void compile_steps(struct cc *c, const struct doc_node *n,
			  struct step_list *out, const char *flow_id,
			  enum parse_mode mode, const char *where)
{
	if (n->kind != DOC_SEQ) {
		err(c, n, "%s must be a list of steps, not %s", where,
		    doc_kind_name(n));
		return;
	}
	if (n->n == 0) {
		err(c, n, "%s must not be empty", where);
		return;
	}
	out->v = zalloc(c, n->n, sizeof(*out->v));
	if (!out->v)
		return;
	out->n = n->n;
	for (size_t i = 0; i < n->n; i++) {
		compile_step(c, n->items[i], &out->v[i], flow_id, i,
			     save_occurrence(n, i), mode, where);
		if (out->v[i].kind == STEP_GOTO && out->v[i].target && i + 1 < n->n)
			err(c, n->items[i + 1], "this step never runs: it follows a goto");
	}
}

/* ---- flows and top level ---------------------------------------------------- */

static void compile_flow(struct cc *c, const struct doc_node *n, struct flow *f,
			 size_t index)
{
	static const char *const keys[] = {"id", "entry_cmd", "entry_text",
					   "description", "steps", NULL};
	f->line = n->line;
	f->col = n->col;
	if (n->kind != DOC_MAP) {
		err(c, n, "a flow must be a mapping with entry_cmd/entry_text and steps, not %s",
		    doc_kind_name(n));
		return;
	}
	check_keys(c, n, keys, "a flow");
	const struct doc_node *id = doc_map_get(n, "id");
	const struct doc_node *cmd = doc_map_get(n, "entry_cmd");
	const struct doc_node *text = doc_map_get(n, "entry_text");
	const struct doc_node *desc = doc_map_get(n, "description");
	const struct doc_node *steps = doc_map_get(n, "steps");

	if (cmd) {
		const char *s = want_str(c, cmd, "entry_cmd");
		bool ok = s && s[0] == '/' && strlen(s) >= 2 &&
			  strlen(s) <= SPEC_MAX_CMD_LEN + 1;
		for (const char *p = s ? s + 1 : ""; ok && *p; p++)
			ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			     *p == '_';
		if (s && !ok)
			err(c, cmd, "entry_cmd must be '/' and 1-%d characters of a-z, 0-9 and _ (as Telegram's command menu requires), not '%s'",
			    SPEC_MAX_CMD_LEN, s);
		else if (s)
			f->cmd = dup(c, s + 1);
	}
	if (text) {
		f->text_re = want_regex(c, text, "entry_text");
		if (f->text_re)
			f->text_pattern = dup(c, text->str);
	}
	if (id) {
		const char *s = want_str(c, id, "id");
		if (s && !is_slug(s))
			err(c, id, "id must be 1-%d characters of A-Z, a-z, 0-9, _ and -, not '%s'",
			    SPEC_MAX_ID_LEN, s);
		else if (s)
			f->id = dup(c, s);
	} else if (f->cmd) {
		f->id = dup(c, f->cmd);
		f->id_implicit = true;
	} else if (!cmd && !text) {
		err(c, n, "a flow needs entry_cmd, entry_text or id (to be reached by goto or a button)");
	} else {
		struct buf b = BUF_INIT;
		if (buf_printf(&b, "_flow%zu", index + 1))
			c->nomem = 1;
		f->id = b.data;
		f->id_implicit = true;
	}
	if (desc) {
		const char *s = want_str(c, desc, "description");
		size_t chars = s ? count_chars(s) : 0;
		if (s && chars > SPEC_MAX_CMD_DESC)
			err(c, desc, "description has %zu characters; Telegram allows 1-%d",
			    chars, SPEC_MAX_CMD_DESC);
		else if (s && !f->cmd && cmd == NULL)
			err(c, desc, "description is shown in the command menu: it needs an entry_cmd");
		else if (s)
			f->description = dup(c, s);
	}
	if (!steps)
		err(c, n, "a flow needs 'steps'");
	else
		compile_steps(c, steps, &f->steps, f->id ? f->id : "", c->s->mode,
			      "steps");
}

static void compile_messages(struct cc *c, const struct doc_node *n)
{
	static const char *const keys[] = {"cancelled", "nothing_to_cancel",
					   "unknown_command", "invalid_choice",
					   "stale_button", "expired_question", NULL};
	struct template **slots[] = {
		&c->s->msg.cancelled, &c->s->msg.nothing_to_cancel,
		&c->s->msg.unknown_command, &c->s->msg.invalid_choice,
		&c->s->msg.stale_button, &c->s->msg.expired_question,
	};
	if (n->kind != DOC_MAP) {
		err(c, n, "messages must be a mapping, not %s", doc_kind_name(n));
		return;
	}
	check_keys(c, n, keys, "messages");
	for (size_t i = 0; keys[i]; i++) {
		const struct doc_node *v = doc_map_get(n, keys[i]);
		if (!v)
			continue;
		/* the last two are button-press notices: plain text, shown by
		 * Telegram in a popup of at most 200 characters */
		*slots[i] = want_template(c, v, keys[i],
					  i >= 4 ? PARSE_MODE_NONE : c->s->mode, i < 4);
		if (i >= 4 && *slots[i] && count_chars(v->str) > SPEC_MAX_NOTICE)
			err(c, v, "%s is shown in a popup of at most %d characters; this has %zu",
			    keys[i], SPEC_MAX_NOTICE, count_chars(v->str));
	}
}

/* Default texts; compiled from constants so that the engine sees one kind. */
static void default_messages(struct cc *c)
{
	static const char *const defaults[] = {
		"Cancelled.",
		"Nothing to cancel.",
		"Sorry, I don't know that command.",
		"Please choose one of the options.",
		"This button is no longer available.",
		"This question is no longer open.",
	};
	struct template **slots[] = {
		&c->s->msg.cancelled, &c->s->msg.nothing_to_cancel,
		&c->s->msg.unknown_command, &c->s->msg.invalid_choice,
		&c->s->msg.stale_button, &c->s->msg.expired_question,
	};
	for (size_t i = 0; i < 6; i++) {
		if (*slots[i])
			continue;
		/* the first four are messages in the spec's parse mode */
		struct buf b = BUF_INIT;
		size_t off;
		const char *msg;
		if (markup_escape(i < 4 ? c->s->mode : PARSE_MODE_NONE, &b, defaults[i],
				  strlen(defaults[i])) ||
		    template_parse(b.data, b.len, slots[i], &off, &msg))
			c->nomem = 1;
		buf_free(&b);
	}
}

int spec_parse_rate(const char *s, struct spec_rate *out)
{
	char *end;
	errno = 0;
	long n = strtol(s, &end, 10);
	if (errno || end == s || n < 1 || n > 10000 || end[0] != '/' || !end[1] || end[2])
		return -EINVAL;
	switch (end[1]) {
	case 's':
		out->period_ms = 1000;
		break;
	case 'm':
		out->period_ms = 60 * 1000;
		break;
	case 'h':
		out->period_ms = 3600 * 1000;
		break;
	default:
		return -EINVAL;
	}
	out->count = (int)n;
	return 0;
}

static void compile_throttle(struct cc *c, const struct doc_node *n)
{
	static const char *const keys[] = {"bot", "chat", "group", NULL};
	struct spec_rate *slots[] = {&c->s->throttle_bot, &c->s->throttle_chat,
				     &c->s->throttle_group};
	if (n->kind != DOC_MAP) {
		err(c, n, "throttle must be a mapping like {chat: 1/s, group: 20/m}, not %s",
		    doc_kind_name(n));
		return;
	}
	check_keys(c, n, keys, "throttle");
	for (size_t i = 0; keys[i]; i++) {
		const struct doc_node *v = doc_map_get(n, keys[i]);
		const char *r = v ? want_str(c, v, keys[i]) : NULL;
		if (r && spec_parse_rate(r, slots[i]))
			err(c, v, "throttle %s must be a rate like 30/s, 20/m or 100/h (1 to 10000 per unit), not '%s'",
			    keys[i], r);
	}
}

static void compile_token(struct cc *c, const struct doc_node *n)
{
	const char *s = want_str(c, n, "token");
	if (!s)
		return;
	size_t len = strlen(s);
	if (len > 3 && s[0] == '$' && s[1] == '{' && s[len - 1] == '}') {
		char name[256];
		if (len - 3 >= sizeof(name)) {
			err(c, n, "token: environment variable name is too long");
			return;
		}
		memcpy(name, s + 2, len - 3);
		name[len - 3] = '\0';
		/* the name is not echoed: it may be a token pasted inside ${} */
		if (!is_ident(name, 200))
			err(c, n, "token: ${...} must name an environment variable: a letter or _, then letters, digits or _");
		else
			c->s->token_env = dup(c, name);
		return;
	}
	size_t digits = strspn(s, "0123456789");
	bool ok = digits > 0 && s[digits] == ':' && s[digits + 1] != '\0';
	for (const char *p = s + digits + 1; ok && *p; p++)
		ok = isalnum((unsigned char)*p) || *p == '_' || *p == '-';
	if (!ok)
		err(c, n, "token must look like 123456:ABC-def (from @BotFather) or be ${ENV_VAR}");
	else
		c->s->token = dup(c, s);
}

static int ref_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ref *)a)->name, ((const struct ref *)b)->name);
}

static bool refs_has(const struct refs *r, const char *name)
{
	struct ref key = {(char *)name, 0, 0};
	return r->n && bsearch(&key, r->v, r->n, sizeof(*r->v), ref_cmp);
}

/* A flow can reach its goto without waiting for the user only when its
 * steps (the top-level list) contain no ask. */
static const char *flow_goto_without_ask(const struct flow *f)
{
	for (size_t i = 0; i < f->steps.n; i++) {
		if (f->steps.v[i].kind == STEP_ASK)
			return NULL;
		if (f->steps.v[i].kind == STEP_GOTO)
			return f->steps.v[i].target;
	}
	return NULL;
}

/* Every flow has at most one goto that runs without waiting for the user,
 * so these gotos form a functional graph: one walk per flow, each flow
 * visited once, finds the flows that lie on a cycle (O(n log n)). */
static void check_goto_loops(struct cc *c)
{
	const struct spec *s = c->s;
	size_t n = s->nflows;
	unsigned char *state = calloc(n ? n : 1, 1); /* 0 new, 1 on path, 2 done, 3 cycle */
	size_t *path = malloc((n ? n : 1) * sizeof(*path));
	if (!state || !path) {
		c->nomem = 1;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		size_t len = 0, k = i;
		while (state[k] == 0) {
			state[k] = 1;
			path[len++] = k;
			const char *t = flow_goto_without_ask(&s->flows[k]);
			const struct flow *f = t ? spec_flow(s, t) : NULL;
			if (!f)
				break;
			k = (size_t)(f - s->flows);
		}
		bool cycle = state[k] == 1 && len && (path[len - 1] != k ||
						       flow_goto_without_ask(&s->flows[k]));
		for (size_t p = len; p-- > 0;) {
			state[path[p]] = cycle ? 3 : 2;
			if (path[p] == k)
				cycle = false; /* nodes before k only lead into the cycle */
		}
	}
	for (size_t i = 0; i < n; i++)
		if (state[i] == 3 && diags_add(c->d, s->flows[i].line, s->flows[i].col,
					       "flow '%s' loops back to itself through goto without any ask",
					       s->flows[i].id))
			c->nomem = 1;
out:
	free(state);
	free(path);
}

static int button_ptr_cmp(const void *a, const void *b)
{
	const struct button *x = *(const struct button *const *)a;
	const struct button *y = *(const struct button *const *)b;
	return strcmp(x->code, y->code);
}

static int flow_id_cmp(const void *a, const void *b)
{
	const struct flow *x = *(const struct flow *const *)a;
	const struct flow *y = *(const struct flow *const *)b;
	int r = strcmp(x->id, y->id);
	return r ? r : (x > y) - (x < y); /* equal ids: in file order */
}

static int flow_cmd_cmp(const void *a, const void *b)
{
	const struct flow *x = *(const struct flow *const *)a;
	const struct flow *y = *(const struct flow *const *)b;
	int r = strcmp(x->cmd, y->cmd);
	return r ? r : (x > y) - (x < y);
}

/* Builds the sorted indexes by id and by command, reporting duplicates
 * (a duplicate command whose ids are both implied by it is reported once,
 * as a command). */
static void index_flows(struct cc *c)
{
	struct spec *s = c->s;
	s->by_id = calloc(s->nflows ? s->nflows : 1, sizeof(*s->by_id));
	s->by_cmd = calloc(s->nflows ? s->nflows : 1, sizeof(*s->by_cmd));
	if (!s->by_id || !s->by_cmd) {
		c->nomem = 1;
		return;
	}
	for (size_t i = 0; i < s->nflows; i++) {
		if (s->flows[i].id)
			s->by_id[s->nids++] = &s->flows[i];
		if (s->flows[i].cmd)
			s->by_cmd[s->ncmds++] = &s->flows[i];
	}
	qsort(s->by_id, s->nids, sizeof(*s->by_id), flow_id_cmp);
	qsort(s->by_cmd, s->ncmds, sizeof(*s->by_cmd), flow_cmd_cmp);
	for (size_t i = 1, first = 0; i < s->nids; i++) {
		const struct flow *f = s->by_id[i], *g = s->by_id[first];
		if (strcmp(f->id, g->id)) {
			first = i;
			continue;
		}
		if (f->id_implicit && g->id_implicit && f->cmd && g->cmd)
			continue; /* reported below as a duplicate command */
		/* a flow named by its position (_flowN) collides with a flow
		 * whose command or id is that name */
		const struct flow *pos = f->id_implicit && !f->cmd   ? f
					 : g->id_implicit && !g->cmd ? g
								     : NULL;
		if (pos) {
			const struct flow *other = pos == f ? g : f;
			if (diags_add(c->d, pos->line, pos->col,
				      "this flow has no id, and its implicit id '%s' is the id of the flow at line %d: give it an id",
				      pos->id, other->line))
				c->nomem = 1;
		} else if (diags_add(c->d, f->line, f->col,
				     "duplicate flow id '%s' (first at line %d)", f->id, g->line)) {
			c->nomem = 1;
		}
	}
	for (size_t i = 1, first = 0; i < s->ncmds; i++) {
		const struct flow *f = s->by_cmd[i], *g = s->by_cmd[first];
		if (strcmp(f->cmd, g->cmd)) {
			first = i;
			continue;
		}
		if (diags_add(c->d, f->line, f->col, "duplicate command /%s (first at line %d)",
			      f->cmd, g->line))
			c->nomem = 1;
	}
}

static void check_refs(struct cc *c)
{
	struct spec *s = c->s;
	index_flows(c);
	if (c->nomem)
		return;
	for (size_t i = 0; i < c->targets.n; i++)
		if (!spec_flow(s, c->targets.v[i].name))
			if (diags_add(c->d, c->targets.v[i].line, c->targets.v[i].col,
				      "no flow has id '%s'", c->targets.v[i].name))
				c->nomem = 1;
	if (c->var_defs.n)
		qsort(c->var_defs.v, c->var_defs.n, sizeof(*c->var_defs.v), ref_cmp);
	for (size_t i = 0; i < c->var_uses.n; i++) {
		const char *name = c->var_uses.v[i].name;
		bool ok = refs_has(&c->var_defs, name);
		for (size_t b = 0; !ok && b < sizeof(builtin_vars) / sizeof(*builtin_vars); b++)
			ok = !strcmp(name, builtin_vars[b]);
		if (!ok && diags_add(c->d, c->var_uses.v[i].line, c->var_uses.v[i].col,
				     strchr(name, '.')
					     ? "unknown placeholder '{{%s}}' (see doc/spec.md for user.*, chat.* and bot.*)"
					     : "'{{%s}}' names a variable that no ask saves and no set assigns",
				     name))
			c->nomem = 1;
	}
	size_t menu = 0;
	for (size_t i = 0; i < s->nflows; i++)
		menu += s->flows[i].description != NULL;
	if (menu > SPEC_MAX_MENU_CMDS)
		err(c, c->flows_node, "%zu commands have a description; Telegram's menu allows at most %d",
		    menu, SPEC_MAX_MENU_CMDS);
	if (!c->nomem && c->d->n == 0)
		check_goto_loops(c);
	if (c->nbuttons)
		qsort(c->buttons, c->nbuttons, sizeof(*c->buttons), button_ptr_cmp);
	s->buttons = (const struct button **)c->buttons;
	s->nbuttons = c->nbuttons;
	c->buttons = NULL;
}

static void compile_top(struct cc *c, const struct doc_node *root)
{
	static const char *const keys[] = {"name", "token", "description",
					   "parse_mode", "flows", "fallback",
					   "messages", "delete_webhook", "throttle", NULL};
	struct spec *s = c->s;
	if (root->kind != DOC_MAP) {
		err(c, root, "a spec must be a mapping with 'flows', not %s",
		    doc_kind_name(root));
		return;
	}
	check_keys(c, root, keys, "the spec");
	const struct doc_node *n;
	s->mode = PARSE_MODE_HTML;
	if ((n = doc_map_get(root, "parse_mode")))
		want_mode(c, n, &s->mode);
	if ((n = doc_map_get(root, "name"))) {
		const char *v = want_str(c, n, "name");
		if (v)
			s->name = dup(c, v);
	}
	if ((n = doc_map_get(root, "description"))) {
		const char *v = want_str(c, n, "description");
		if (v)
			s->description = dup(c, v);
	}
	if ((n = doc_map_get(root, "token")))
		compile_token(c, n);
	if ((n = doc_map_get(root, "delete_webhook")))
		want_bool(c, n, "delete_webhook", &s->delete_webhook);
	if ((n = doc_map_get(root, "throttle")))
		compile_throttle(c, n);
	if ((n = doc_map_get(root, "messages")))
		compile_messages(c, n);
	n = doc_map_get(root, "flows");
	c->flows_node = n;
	if (!n) {
		err(c, root, "a spec needs 'flows'");
	} else if (n->kind != DOC_SEQ) {
		err(c, n, "flows must be a list of flows, not %s", doc_kind_name(n));
	} else if (n->n == 0) {
		err(c, n, "flows must not be empty");
	} else {
		s->flows = zalloc(c, n->n, sizeof(*s->flows));
		if (s->flows) {
			s->nflows = n->n;
			for (size_t i = 0; i < n->n; i++)
				compile_flow(c, n->items[i], &s->flows[i], i);
		}
	}
	if ((n = doc_map_get(root, "fallback")))
		compile_steps(c, n, &s->fallback, NULL, s->mode, "fallback");
}

int spec_compile(const char *id, const char *data, size_t len,
		 struct spec **out, struct diags *d)
{
	/* a UTF-8 byte order mark (Windows editors write one) is not part of
	 * the text: libyaml would take it for a character of line 1 */
	if (len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3)) {
		data += 3;
		len -= 3;
	}
	struct cc c = {.src = data, .len = len, .d = d};
	struct doc_node *root = NULL;
	size_t nerr = d->n;
	int rc;

	*out = NULL;
	if (len > SPEC_MAX_BYTES) {
		rc = diags_add(d, 1, 1, "spec is larger than %d bytes", SPEC_MAX_BYTES);
		return rc ? rc : -EINVAL;
	}
	c.s = calloc(1, sizeof(*c.s));
	if (!c.s)
		return -ENOMEM;
	c.s->refs = 1;
	if (!is_slug(id)) {
		rc = diags_add(d, 0, 0,
			       "bot id '%s' (the file name without extension) must be 1-%d characters of A-Z, a-z, 0-9, _ and -, not starting with -",
			       id, SPEC_MAX_ID_LEN);
		if (rc)
			goto out;
	}
	c.s->id = dup(&c, id);
	rc = doc_parse(data, len, &root, d);
	if (rc)
		goto out;
	if (!root) {
		rc = diags_add(d, 1, 1, "the spec is empty: it needs 'flows'");
		rc = rc ? rc : -EINVAL;
		goto out;
	}
	compile_top(&c, root);
	default_messages(&c);
	if (!c.nomem)
		check_refs(&c);
	rc = c.nomem ? -ENOMEM : d->n > nerr ? -EINVAL : 0;
out:
	doc_free(root);
	free(c.lines);
	refs_free(&c.var_uses);
	refs_free(&c.var_defs);
	refs_free(&c.targets);
	free(c.buttons);
	if (rc) {
		spec_free(c.s);
		return rc;
	}
	*out = c.s;
	return 0;
}

/* ---- lookup and free ------------------------------------------------------ */

/* Binary search of a sorted flow index by key (the first of equals). */
static const struct flow *find_flow(const struct flow *const *v, size_t n,
				    const char *key, bool by_cmd)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(by_cmd ? v[mid]->cmd : v[mid]->id, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && !strcmp(by_cmd ? v[lo]->cmd : v[lo]->id, key) ? v[lo] : NULL;
}

const struct flow *spec_flow(const struct spec *s, const char *id)
{
	return find_flow(s->by_id, s->nids, id, false);
}

const struct flow *spec_flow_by_cmd(const struct spec *s, const char *cmd)
{
	char lower[SPEC_MAX_CMD_LEN + 1];
	size_t n = strlen(cmd);
	if (n > SPEC_MAX_CMD_LEN)
		return NULL;
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char)tolower((unsigned char)cmd[i]);
	return find_flow(s->by_cmd, s->ncmds, lower, true);
}

const struct button *spec_button(const struct spec *s, const char *code)
{
	size_t lo = 0, hi = s->nbuttons;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(s->buttons[mid]->code, code);
		if (r == 0)
			return s->buttons[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static void keyboard_free(struct keyboard *kb)
{
	for (size_t r = 0; r < kb->nrows; r++) {
		for (size_t i = 0; i < kb->rows[r].n; i++) {
			struct button *b = &kb->rows[r].v[i];
			template_free(b->label);
			free(b->flow);
			free(b->url);
			free(b->value);
		}
		free(kb->rows[r].v);
	}
	free(kb->rows);
}

static void steps_free(struct step_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		struct step *st = &l->v[i];
		template_free(st->text);
		keyboard_free(&st->kb);
		free(st->key);
		free(st->save);
		pcre2_code_free(st->re);
		template_free(st->error);
		steps_free(&st->on_timeout);
		free(st->target);
		for (size_t j = 0; j < st->nsets; j++) {
			free(st->sets[j].var);
			template_free(st->sets[j].value);
		}
		free(st->sets);
	}
	free(l->v);
}

struct spec *spec_ref(struct spec *s)
{
	s->refs++;
	return s;
}

void spec_unref(struct spec *s)
{
	if (s && --s->refs == 0)
		spec_free(s);
}

void spec_free(struct spec *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nflows; i++) {
		struct flow *f = &s->flows[i];
		free(f->id);
		free(f->cmd);
		free(f->text_pattern);
		pcre2_code_free(f->text_re);
		free(f->description);
		steps_free(&f->steps);
	}
	free(s->flows);
	steps_free(&s->fallback);
	template_free(s->msg.cancelled);
	template_free(s->msg.nothing_to_cancel);
	template_free(s->msg.unknown_command);
	template_free(s->msg.invalid_choice);
	template_free(s->msg.stale_button);
	template_free(s->msg.expired_question);
	free(s->buttons);
	free(s->by_id);
	free(s->by_cmd);
	free(s->id);
	free(s->name);
	free(s->description);
	free(s->token);
	free(s->token_env);
	free(s);
}
