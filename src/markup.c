/* markup: checking, escaping, measuring and splitting Telegram's HTML and
 * MarkdownV2 text (see include/botfactory/markup.h). One tokenizer per mode
 * turns text into text, open, close and zero-width marker tokens; the
 * checker, the visible length and the splitter are all built on it. */
#include "botfactory/markup.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "botfactory/utf8.h"

/* Deepest nesting of formatting accepted; deeper text is an error. A fixed
 * bound keeps markup_check and markup_visible_len free of allocations. */
#define MAX_DEPTH 64

#define NO_ENT ((size_t)-1)

enum tok_kind {
	TOK_TEXT,  /* visible: a code point, an entity, an escape, an emoji */
	TOK_OPEN,  /* opening markup of a formatting entity */
	TOK_CLOSE, /* closing markup of a formatting entity */
	TOK_MARK,  /* zero-width markup inside an entity (MarkdownV2 '>') */
};

struct tok {
	size_t off;
	size_t len;
	size_t ent;          /* entity index for TOK_OPEN and TOK_CLOSE */
	uint32_t width;      /* UTF-16 code units shown */
	unsigned char kind;
	unsigned char plain; /* a single literal ASCII whitespace byte */
	unsigned char vis_ws; /* shows as whitespace: nothing to send */
	unsigned char skip;  /* dropped by the splitter at a chunk start */
};

/* What the splitter emits to reopen and close an entity around a cut. */
struct ent {
	const char *open;
	size_t open_len;
	const char *open2;
	size_t open2_len;
	const char *close;
	size_t close_len;
};

struct frame {
	int type;
	size_t off;
	size_t ent;
	size_t tok;
};

struct scan {
	enum parse_mode mode;
	const char *s;
	size_t len;
	bool record; /* keep tokens and entities (for the splitter) */
	bool prefix; /* the text is a beginning: leave what is open open */
	struct tok *toks;
	size_t ntok, ctok;
	struct ent *ents;
	size_t nent, cent;
	struct frame stack[MAX_DEPTH];
	size_t depth;
	size_t visible;
	size_t err_off;
	const char *msg;
};

static int fail(struct scan *sc, size_t off, const char *msg)
{
	sc->err_off = off;
	sc->msg = msg;
	return -EINVAL;
}

static bool is_ascii_ws(unsigned char c)
{
	return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int push_tok(struct scan *sc, enum tok_kind kind, size_t off,
		    size_t len, uint32_t width, size_t ent, bool plain,
		    bool vis_ws)
{
	sc->visible += width;
	if (!sc->record)
		return 0;
	if (sc->ntok == sc->ctok) {
		size_t cap = sc->ctok ? sc->ctok * 2 : 64;
		if (cap > SIZE_MAX / sizeof(struct tok))
			return -ENOMEM;
		struct tok *t = realloc(sc->toks, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		sc->toks = t;
		sc->ctok = cap;
	}
	struct tok *t = &sc->toks[sc->ntok++];
	t->off = off;
	t->len = len;
	t->ent = ent;
	t->width = width;
	t->kind = (unsigned char)kind;
	t->plain = plain;
	t->vis_ws = vis_ws;
	t->skip = 0;
	return 0;
}

/* Records an entity; *idx is its index (0 when not recording). */
static int new_ent(struct scan *sc, const char *open, size_t open_len,
		   const char *close, size_t close_len, size_t *idx)
{
	*idx = 0;
	if (!sc->record)
		return 0;
	if (sc->nent == sc->cent) {
		size_t cap = sc->cent ? sc->cent * 2 : 16;
		if (cap > SIZE_MAX / sizeof(struct ent))
			return -ENOMEM;
		struct ent *e = realloc(sc->ents, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		sc->ents = e;
		sc->cent = cap;
	}
	struct ent *e = &sc->ents[sc->nent];
	e->open = open;
	e->open_len = open_len;
	e->open2 = "";
	e->open2_len = 0;
	e->close = close;
	e->close_len = close_len;
	*idx = sc->nent++;
	return 0;
}

/* Bytes of the UTF-8 sequence at s[i]; a broken sequence is 1 byte (shown
 * as one replacement character), so that a token never swallows text. */
static size_t seq_at(const char *s, size_t len, size_t i)
{
	size_t k = utf8_seqlen((unsigned char)s[i]);
	if (k > len - i)
		return 1;
	for (size_t j = 1; j < k; j++)
		if (((unsigned char)s[i + j] & 0xC0) != 0x80)
			return 1;
	return k;
}

/* The code point of the well-formed sequence of k bytes at p. */
static uint32_t cp_of(const unsigned char *p, size_t k)
{
	if (k == 1)
		return p[0];
	uint32_t v = p[0] & (0x7F >> k);
	for (size_t j = 1; j < k; j++)
		v = v << 6 | (p[j] & 0x3F);
	return v;
}

/* True for what joins the character before it on screen: a zero-width
 * joiner (and what follows it), variation selectors, combining marks,
 * emoji skin tones and the keycap mark. */
static bool cp_extends(uint32_t cp)
{
	return cp == 0x200D || cp == 0xFE0E || cp == 0xFE0F || cp == 0x20E3 ||
	       (cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x1F3FB && cp <= 0x1F3FF);
}

static bool cp_regional(uint32_t cp)
{
	return cp >= 0x1F1E6 && cp <= 0x1F1FF;
}

/* Emits one literal character at s[i] as a text token; *n = its bytes. A
 * character is a code point with what joins it on screen (an emoji ZWJ
 * sequence, a flag's two regional indicators, a letter and its combining
 * accent): a split never cuts one apart. Its width is its UTF-16 units. */
static int text_tok(struct scan *sc, size_t i, size_t *n)
{
	const unsigned char *s = (const unsigned char *)sc->s;
	unsigned char c = s[i];
	size_t k = seq_at(sc->s, sc->len, i);
	uint32_t width = k == 4 ? 2 : 1;
	if (!is_ascii_ws(c) && (k > 1 || c < 0x80)) {
		uint32_t first = cp_of(s + i, k);
		bool flag = false, join = false;
		while (i + k < sc->len) {
			size_t m = seq_at(sc->s, sc->len, i + k);
			if (m == 1 && s[i + k] >= 0x80)
				break; /* not well-formed: left to itself */
			uint32_t cp = cp_of(s + i + k, m);
			bool take = join || cp_extends(cp) ||
				    (!flag && cp_regional(first) && cp_regional(cp) &&
				     (flag = true));
			if (!take || (join && cp < 0x80))
				break;
			join = cp == 0x200D;
			k += m;
			width += m == 4 ? 2 : 1;
		}
	}
	*n = k;
	return push_tok(sc, TOK_TEXT, i, k, width, NO_ENT, is_ascii_ws(c), is_ascii_ws(c));
}

static int scan_none(struct scan *sc)
{
	size_t i = 0, n;
	while (i < sc->len) {
		int rc = text_tok(sc, i, &n);
		if (rc)
			return rc;
		i += n;
	}
	return 0;
}

/* ---- HTML ---- */

enum html_tag {
	H_B, H_STRONG, H_I, H_EM, H_U, H_INS, H_S, H_STRIKE, H_DEL, H_SPAN,
	H_TGSPOILER, H_A, H_CODE, H_PRE, H_BLOCKQUOTE, H_TGEMOJI, H_NTAGS
};

static const struct {
	const char *name;
	const char *close;
	const char *unclosed;
	const char *expected;
} html_tags[H_NTAGS] = {
	{"b", "</b>", "unclosed <b> tag", "mismatched end tag, expected </b>"},
	{"strong", "</strong>", "unclosed <strong> tag",
	 "mismatched end tag, expected </strong>"},
	{"i", "</i>", "unclosed <i> tag", "mismatched end tag, expected </i>"},
	{"em", "</em>", "unclosed <em> tag",
	 "mismatched end tag, expected </em>"},
	{"u", "</u>", "unclosed <u> tag", "mismatched end tag, expected </u>"},
	{"ins", "</ins>", "unclosed <ins> tag",
	 "mismatched end tag, expected </ins>"},
	{"s", "</s>", "unclosed <s> tag", "mismatched end tag, expected </s>"},
	{"strike", "</strike>", "unclosed <strike> tag",
	 "mismatched end tag, expected </strike>"},
	{"del", "</del>", "unclosed <del> tag",
	 "mismatched end tag, expected </del>"},
	{"span", "</span>", "unclosed <span> tag",
	 "mismatched end tag, expected </span>"},
	{"tg-spoiler", "</tg-spoiler>", "unclosed <tg-spoiler> tag",
	 "mismatched end tag, expected </tg-spoiler>"},
	{"a", "</a>", "unclosed <a> tag", "mismatched end tag, expected </a>"},
	{"code", "</code>", "unclosed <code> tag",
	 "mismatched end tag, expected </code>"},
	{"pre", "</pre>", "unclosed <pre> tag",
	 "mismatched end tag, expected </pre>"},
	{"blockquote", "</blockquote>", "unclosed <blockquote> tag",
	 "mismatched end tag, expected </blockquote>"},
	{"tg-emoji", "</tg-emoji>", "unclosed <tg-emoji> tag",
	 "mismatched end tag, expected </tg-emoji>"},
};

static bool is_name_char(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '_';
}

static int html_lookup(const char *name, size_t n)
{
	for (int t = 0; t < H_NTAGS; t++) {
		if (strlen(html_tags[t].name) == n &&
		    strncasecmp(html_tags[t].name, name, n) == 0)
			return t;
	}
	return -1;
}

static bool name_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

/* Attribute names, unlike tag names, are matched by Telegram exactly
 * (`<span CLASS=...>` is refused, `<a HREF=...>` loses its link). */
static bool attr_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && memcmp(name, want, n) == 0;
}

/* A custom emoji id as Telegram takes it: a positive 64-bit integer in
 * canonical form (no leading zero). */
static bool emoji_id_ok(const char *v, size_t n)
{
	if (n == 0 || n > 19 || v[0] == '0')
		return false;
	for (size_t k = 0; k < n; k++)
		if (!is_digit((unsigned char)v[k]))
			return false;
	return n < 19 || memcmp(v, "9223372036854775807", 19) <= 0;
}

/* Parses an HTML entity at p[0..n) (p[0] == '&'). Returns NULL and sets
 * *used and *cp, or returns the error message. */
static const char *html_entity(const char *p, size_t n, size_t *used,
			       uint32_t *cp)
{
	static const struct {
		const char *name;
		uint32_t cp;
	} named[] = {
		{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'},
	};
	const char *bad = "'&' must be written as &amp;";
	for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
		size_t l = strlen(named[k].name);
		if (n >= l && memcmp(p, named[k].name, l) == 0) {
			*used = l;
			*cp = named[k].cp;
			return NULL;
		}
	}
	if (n < 2 || p[1] != '#')
		return bad;
	size_t i = 2;
	bool hex = false;
	if (i < n && p[i] == 'x') { /* Telegram decodes no &#X...; */
		hex = true;
		i++;
	}
	size_t start = i;
	uint32_t v = 0;
	bool big = false;
	for (; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		uint32_t d;
		if (is_digit(c))
			d = c - '0';
		else if (hex && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (hex && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			break;
		if (v > 0x10FFFF)
			big = true;
		else
			v = v * (hex ? 16 : 10) + d;
	}
	if (i == start || i >= n || p[i] != ';')
		return bad;
	/* as Telegram decodes them: below U+10FFFF, and at most 9 bytes
	 * long (it shows a longer one, like &#00000065;, as it is written) */
	if (big || v == 0 || v >= 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || i + 1 >= 10)
		return "invalid numeric entity";
	*used = i + 1;
	*cp = v;
	return NULL;
}

static bool cp_is_ws(uint32_t cp)
{
	return cp == ' ' || cp == '\n' || cp == '\t' || cp == '\r';
}

/* Entity at s[i]: emits it as one text token. */
static int html_amp(struct scan *sc, size_t i, size_t *n)
{
	uint32_t cp = 0;
	const char *msg = html_entity(sc->s + i, sc->len - i, n, &cp);
	if (msg)
		return fail(sc, i, msg);
	return push_tok(sc, TOK_TEXT, i, *n, cp > 0xFFFF ? 2 : 1, NO_ENT,
			false, cp_is_ws(cp));
}

static bool html_in(const struct scan *sc, int type)
{
	for (size_t k = 0; k < sc->depth; k++)
		if (sc->stack[k].type == type)
			return true;
	return false;
}

/* <tg-emoji ...> at start, its start tag ending at *pi: the whole element is
 * one unbreakable text token. */
static int html_emoji(struct scan *sc, size_t start, size_t *pi)
{
	const char *s = sc->s;
	size_t i = *pi;
	uint32_t width = 0;
	while (i < sc->len) {
		unsigned char c = (unsigned char)s[i];
		if (c == '<') {
			size_t j = i + 2;
			if (i + 1 < sc->len && s[i + 1] == '/') {
				size_t k = j;
				while (k < sc->len && is_name_char(
						(unsigned char)s[k]))
					k++;
				if (name_is(s + j, k - j, "tg-emoji")) {
					while (k < sc->len &&
					       is_ascii_ws((unsigned char)s[k]))
						k++;
					if (k >= sc->len)
						return fail(sc, i,
							    "unterminated tag");
					if (s[k] != '>')
						return fail(sc, i,
							    "malformed end tag");
					*pi = k + 1;
					return push_tok(sc, TOK_TEXT, start,
							k + 1 - start, width,
							NO_ENT, false, false);
				}
			}
			return fail(sc, i, "tags are not allowed inside "
					   "<tg-emoji>");
		}
		if (c == '>')
			return fail(sc, i, "'>' must be written as &gt;");
		size_t n;
		if (c == '&') {
			uint32_t cp = 0;
			const char *msg = html_entity(s + i, sc->len - i, &n,
						      &cp);
			if (msg)
				return fail(sc, i, msg);
			width += cp > 0xFFFF ? 2 : 1;
		} else {
			n = seq_at(s, sc->len, i);
			width += n == 4 ? 2 : 1;
		}
		i += n;
	}
	return fail(sc, start, html_tags[H_TGEMOJI].unclosed);
}

static int html_end_tag(struct scan *sc, size_t start, size_t *pi)
{
	const char *s = sc->s;
	size_t i = start + 2, name = i;
	while (i < sc->len && is_name_char((unsigned char)s[i]))
		i++;
	size_t nlen = i - name;
	while (i < sc->len && is_ascii_ws((unsigned char)s[i]))
		i++;
	if (i >= sc->len)
		return fail(sc, start, "unterminated tag");
	if (nlen == 0 || s[i] != '>')
		return fail(sc, start, "malformed end tag");
	int t = html_lookup(s + name, nlen);
	if (t < 0)
		return fail(sc, start, "unknown tag");
	if (sc->depth == 0)
		return fail(sc, start, "end tag without a start tag");
	struct frame *f = &sc->stack[sc->depth - 1];
	if (f->type != t)
		return fail(sc, start, html_tags[f->type].expected);
	*pi = i + 1;
	int rc = push_tok(sc, TOK_CLOSE, start, i + 1 - start, 0, f->ent,
			  false, false);
	sc->depth--;
	return rc;
}

/* Checks one attribute of tag t; bare is true for `name` without a value. */
static int html_attr(struct scan *sc, int t, size_t aoff, size_t alen,
		     size_t voff, size_t vlen, bool bare, unsigned *seen)
{
	const char *an = sc->s + aoff, *v = sc->s + voff;
	const char *unknown = "unknown attribute";
	switch (t) {
	case H_A:
		if (bare || !attr_is(an, alen, "href"))
			return fail(sc, aoff, unknown);
		if (*seen & 1) /* Telegram keeps the last one */
			return fail(sc, aoff, "repeated attribute");
		*seen |= 1;
		return 0;
	case H_SPAN:
		if (bare || !attr_is(an, alen, "class"))
			return fail(sc, aoff, unknown);
		if (!(vlen == 10 && memcmp(v, "tg-spoiler", 10) == 0))
			return fail(sc, voff,
				    "<span> class must be \"tg-spoiler\"");
		*seen |= 1;
		return 0;
	case H_TGEMOJI:
		if (bare || !attr_is(an, alen, "emoji-id"))
			return fail(sc, aoff, unknown);
		if (!emoji_id_ok(v, vlen))
			return fail(sc, voff, "emoji-id must be a positive number without leading zeros");
		*seen |= 1;
		return 0;
	case H_CODE:
		if (bare || !attr_is(an, alen, "class"))
			return fail(sc, aoff, unknown);
		if (vlen < 9 || memcmp(v, "language-", 9) != 0)
			return fail(sc, voff, "<code> class must be "
					      "\"language-...\"");
		*seen |= 2;
		return 0;
	case H_BLOCKQUOTE:
		if (!bare || !attr_is(an, alen, "expandable"))
			return fail(sc, aoff, unknown);
		return 0;
	default:
		return fail(sc, aoff, unknown);
	}
}

static int html_start_tag(struct scan *sc, size_t start, size_t *pi)
{
	const char *s = sc->s;
	size_t len = sc->len;
	size_t i = start + 1;
	while (i < len && is_name_char((unsigned char)s[i]))
		i++;
	int t = html_lookup(s + start + 1, i - start - 1);
	if (t < 0)
		return fail(sc, start, "unknown tag");
	unsigned seen = 0;
	for (;;) {
		size_t ws = i;
		while (i < len && is_ascii_ws((unsigned char)s[i]))
			i++;
		if (i >= len)
			return fail(sc, start, "unterminated tag");
		if (s[i] == '>') {
			i++;
			break;
		}
		if (i == ws)
			return fail(sc, i, "malformed attribute");
		size_t aoff = i;
		while (i < len && (is_name_char((unsigned char)s[i]) ||
				   s[i] == ':'))
			i++;
		size_t alen = i - aoff;
		if (alen == 0)
			return fail(sc, aoff, "malformed attribute");
		size_t save = i;
		while (i < len && is_ascii_ws((unsigned char)s[i]))
			i++;
		if (i >= len)
			return fail(sc, start, "unterminated tag");
		if (s[i] != '=') {
			int rc = html_attr(sc, t, aoff, alen, 0, 0, true,
					   &seen);
			if (rc)
				return rc;
			i = save;
			continue;
		}
		i++;
		while (i < len && is_ascii_ws((unsigned char)s[i]))
			i++;
		if (i >= len)
			return fail(sc, start, "unterminated tag");
		char q = s[i];
		if (q != '"' && q != '\'')
			return fail(sc, i, "attribute value must be quoted");
		size_t voff = i + 1, j = voff;
		while (j < len && s[j] != q) {
			if (s[j] == '&') {
				size_t n;
				uint32_t cp;
				const char *msg = html_entity(s + j, len - j,
							      &n, &cp);
				if (msg)
					return fail(sc, j, msg);
				j += n;
			} else {
				j++;
			}
		}
		if (j >= len)
			return fail(sc, i, "unterminated attribute value");
		int rc = html_attr(sc, t, aoff, alen, voff, j - voff, false,
				   &seen);
		if (rc)
			return rc;
		i = j + 1;
		/* attributes must be separated by whitespace */
		if (i < len && !is_ascii_ws((unsigned char)s[i]) &&
		    s[i] != '>')
			return fail(sc, i, "malformed attribute");
	}
	if (t == H_A && !(seen & 1))
		return fail(sc, start, "<a> tag needs href");
	if (t == H_SPAN && !(seen & 1))
		return fail(sc, start, "<span> tag needs class=\"tg-spoiler\"");
	if (t == H_TGEMOJI && !(seen & 1))
		return fail(sc, start, "<tg-emoji> tag needs emoji-id");
	int top = sc->depth ? sc->stack[sc->depth - 1].type : -1;
	if (top == H_CODE)
		return fail(sc, start, "tags are not allowed inside <code>");
	if (top == H_PRE && t != H_CODE)
		return fail(sc, start, "only <code> is allowed inside <pre>");
	if (t == H_CODE && (seen & 2) && top != H_PRE)
		return fail(sc, start,
			    "language class is only allowed in <pre><code>");
	if (t == H_A && html_in(sc, H_A))
		return fail(sc, start, "links cannot be nested");
	if (t == H_BLOCKQUOTE && html_in(sc, H_BLOCKQUOTE))
		return fail(sc, start, "<blockquote> cannot be nested");
	if (t == H_TGEMOJI) {
		*pi = i;
		return html_emoji(sc, start, pi);
	}
	if (sc->depth == MAX_DEPTH)
		return fail(sc, start, "markup nested too deeply");
	size_t e;
	int rc = new_ent(sc, s + start, i - start, html_tags[t].close,
			 strlen(html_tags[t].close), &e);
	if (rc)
		return rc;
	struct frame *f = &sc->stack[sc->depth++];
	f->type = t;
	f->off = start;
	f->ent = e;
	f->tok = sc->ntok;
	*pi = i;
	return push_tok(sc, TOK_OPEN, start, i - start, 0, e, false, false);
}

static int scan_html(struct scan *sc)
{
	const char *s = sc->s;
	size_t i = 0, n;
	int rc;
	while (i < sc->len) {
		unsigned char c = (unsigned char)s[i];
		if (c == '<') {
			if (i + 1 < sc->len && s[i + 1] == '/')
				rc = html_end_tag(sc, i, &i);
			else if (i + 1 < sc->len &&
				 is_alpha((unsigned char)s[i + 1]))
				rc = html_start_tag(sc, i, &i);
			else
				rc = fail(sc, i, "'<' must be written as &lt;");
			if (rc)
				return rc;
			continue;
		}
		if (c == '>')
			return fail(sc, i, "'>' must be written as &gt;");
		if (c == '&')
			rc = html_amp(sc, i, &n);
		else
			rc = text_tok(sc, i, &n);
		if (rc)
			return rc;
		i += n;
	}
	if (sc->depth) {
		struct frame *f = &sc->stack[sc->depth - 1];
		return fail(sc, f->off, html_tags[f->type].unclosed);
	}
	return 0;
}

/* ---- MarkdownV2 ---- */

enum md_type {
	M_BOLD, M_ITALIC, M_UNDER, M_STRIKE, M_SPOILER, M_CODE, M_PRE, M_LINK,
	M_QUOTE,
};

static const char *const md_unclosed[] = {
	[M_BOLD] = "unclosed bold '*'",
	[M_ITALIC] = "unclosed italic '_'",
	[M_UNDER] = "unclosed underline '__'",
	[M_STRIKE] = "unclosed strikethrough '~'",
	[M_SPOILER] = "unclosed spoiler '||'",
	[M_CODE] = "unclosed code '`'",
	[M_PRE] = "unclosed pre '```'",
	[M_LINK] = "unclosed link '['",
	[M_QUOTE] = "unclosed blockquote",
};

static const char md_reserved[] = "_*[]()~`>#+-=|{}.!\n";

static const char *md_escape_msg(unsigned char c)
{
	switch (c) {
	case '_': return "'_' must be escaped as \\_";
	case '*': return "'*' must be escaped as \\*";
	case '[': return "'[' must be escaped as \\[";
	case ']': return "']' must be escaped as \\]";
	case '(': return "'(' must be escaped as \\(";
	case ')': return "')' must be escaped as \\)";
	case '~': return "'~' must be escaped as \\~";
	case '`': return "'`' must be escaped as \\`";
	case '>': return "'>' must be escaped as \\>";
	case '#': return "'#' must be escaped as \\#";
	case '+': return "'+' must be escaped as \\+";
	case '-': return "'-' must be escaped as \\-";
	case '=': return "'=' must be escaped as \\=";
	case '|': return "'|' must be escaped as \\|";
	case '{': return "'{' must be escaped as \\{";
	case '}': return "'}' must be escaped as \\}";
	case '.': return "'.' must be escaped as \\.";
	case '!': return "'!' must be escaped as \\!";
	default: return "reserved character must be escaped with '\\'";
	}
}

static const char md_lone_bs[] = "'\\' must be escaped as \\\\";

static bool md_escapable(const char *s, size_t len, size_t i)
{
	return i + 1 < len && s[i + 1] > 0 && (unsigned char)s[i + 1] <= 126;
}

static bool md_is_reserved(unsigned char c)
{
	return c && memchr(md_reserved, c, sizeof(md_reserved) - 1);
}

static int md_push(struct scan *sc, int type, size_t off, size_t len,
		   const char *close, size_t close_len, size_t *ent)
{
	if (sc->depth == MAX_DEPTH)
		return fail(sc, off, "markup nested too deeply");
	size_t e;
	int rc = new_ent(sc, sc->s + off, len, close, close_len, &e);
	if (rc)
		return rc;
	struct frame *f = &sc->stack[sc->depth++];
	f->type = type;
	f->off = off;
	f->ent = e;
	f->tok = sc->ntok;
	if (ent)
		*ent = e;
	return push_tok(sc, TOK_OPEN, off, len, 0, e, false, false);
}

/* The url part of a link or custom emoji: s[i] == '('. *end = after ')'. */
static int md_url(struct scan *sc, size_t i, size_t *end)
{
	const char *s = sc->s;
	size_t j = i + 1;
	while (j < sc->len && s[j] != ')') {
		if (s[j] == '\\') {
			if (!md_escapable(s, sc->len, j))
				return fail(sc, j, md_lone_bs);
			j += 2;
		} else {
			j++;
		}
	}
	if (j >= sc->len)
		return fail(sc, i, "unclosed link url");
	*end = j + 1;
	return 0;
}

/* ![emoji](tg://emoji?id=N) at s[i]: one unbreakable text token. */
static int md_emoji(struct scan *sc, size_t i, size_t *end)
{
	const char *s = sc->s;
	size_t j = i + 2;
	uint32_t width = 0;
	while (j < sc->len && s[j] != ']') {
		unsigned char c = (unsigned char)s[j];
		if (c == '\\') {
			if (!md_escapable(s, sc->len, j))
				return fail(sc, j, md_lone_bs);
			width++;
			j += 2;
			continue;
		}
		if (c != '\n' && md_is_reserved(c))
			return fail(sc, j, md_escape_msg(c));
		size_t n = seq_at(s, sc->len, j);
		width += n == 4 ? 2 : 1;
		j += n;
	}
	if (j >= sc->len)
		return fail(sc, i, "unclosed custom emoji '!['");
	if (j + 1 >= sc->len || s[j + 1] != '(')
		return fail(sc, j, "custom emoji needs (tg://emoji?id=...)");
	size_t u = j + 2, uend;
	int rc = md_url(sc, j + 1, &uend);
	if (rc)
		return rc;
	static const char pfx[] = "tg://emoji?id=";
	size_t plen = sizeof(pfx) - 1, k = u + plen;
	bool ok = uend - 1 - u > plen && memcmp(s + u, pfx, plen) == 0;
	if (!ok)
		return fail(sc, u, "custom emoji needs (tg://emoji?id=...)");
	if (!emoji_id_ok(s + k, uend - 1 - k))
		return fail(sc, k, "the emoji id must be a positive number without leading zeros");
	*end = uend;
	return push_tok(sc, TOK_TEXT, i, uend - i, width, NO_ENT, false,
			false);
}

/* Turns the `||` spoiler on top of the stack into the closing mark of the
 * expandable blockquote right below it. */
static int md_expandable(struct scan *sc)
{
	struct frame *sp = &sc->stack[sc->depth - 1];
	if (sc->depth < 2 || sc->stack[sc->depth - 2].type != M_QUOTE) {
		struct frame *f = sc->depth < 2 ? sp : sp - 1;
		return fail(sc, f->off, md_unclosed[f->type]);
	}
	struct frame *q = sp - 1;
	if (sc->record) {
		sc->toks[sp->tok].kind = TOK_CLOSE;
		sc->toks[sp->tok].ent = q->ent;
		sc->ents[q->ent].close = sc->s + sp->off;
		sc->ents[q->ent].close_len = 2;
	}
	sc->depth -= 2;
	return 0;
}

static bool md_is_end(const struct scan *sc, size_t i, bool have_quote)
{
	const char *s = sc->s;
	size_t len = sc->len;
	unsigned char c = (unsigned char)s[i];
	bool n1 = i + 1 < len;
	if (!sc->depth)
		return false;
	if (have_quote && c == '\n' && (!n1 || s[i + 1] != '>'))
		return true;
	switch (sc->stack[sc->depth - 1].type) {
	case M_BOLD:
		return c == '*';
	case M_ITALIC:
		return c == '_' && !(n1 && s[i + 1] == '_');
	case M_UNDER:
		return c == '_' && n1 && s[i + 1] == '_';
	case M_STRIKE:
		return c == '~';
	case M_SPOILER:
		return c == '|' && n1 && s[i + 1] == '|';
	case M_CODE:
		return c == '`';
	case M_PRE:
		return c == '`' && i + 2 < len && s[i + 1] == '`' &&
		       s[i + 2] == '`';
	case M_LINK:
		return c == ']';
	default:
		return false;
	}
}

static int md_close(struct scan *sc, size_t i, size_t *next,
		    bool *have_quote, bool *can_quote)
{
	const char *s = sc->s;
	struct frame *f = &sc->stack[sc->depth - 1];
	size_t n = 1;
	int rc;
	if (s[i] == '\n') {
		if (f->type != M_QUOTE) {
			size_t o = f->off;
			bool marker = f->type == M_SPOILER &&
				      (o + 2 == i ||
				       (o + 3 == i && s[i - 1] == '\r'));
			if (!marker)
				return fail(sc, f->off, md_unclosed[f->type]);
			rc = md_expandable(sc);
			if (rc)
				return rc;
		} else {
			rc = push_tok(sc, TOK_CLOSE, i, 0, 0, f->ent, false,
				      false);
			if (rc)
				return rc;
			sc->depth--;
		}
		*have_quote = false;
		*can_quote = true;
		*next = i + 1;
		return push_tok(sc, TOK_TEXT, i, 1, 1, NO_ENT, true, true);
	}
	switch (f->type) {
	case M_UNDER:
	case M_SPOILER:
		n = 2;
		break;
	case M_PRE:
		n = 3;
		break;
	case M_LINK:
		if (i + 1 >= sc->len || s[i + 1] != '(')
			return fail(sc, i, "link needs (url) after ']'");
		rc = md_url(sc, i + 1, next);
		if (rc)
			return rc;
		n = *next - i;
		if (sc->record) {
			sc->ents[f->ent].close = s + i;
			sc->ents[f->ent].close_len = n;
		}
		break;
	default:
		break;
	}
	*next = i + n;
	rc = push_tok(sc, TOK_CLOSE, i, n, 0, f->ent, false, false);
	sc->depth--;
	return rc;
}

/* ``` at s[i]: optional language up to whitespace, one newline skipped. */
static int md_pre(struct scan *sc, size_t i, size_t *next)
{
	const char *s = sc->s;
	size_t len = sc->len, j = i + 3, lend = j;
	while (lend < len && !is_ascii_ws((unsigned char)s[lend]) &&
	       s[lend] != '`')
		lend++;
	if (!(lend != j && lend < len && s[lend] != '`'))
		lend = j; /* no language */
	size_t k = lend;
	if (k < len && (s[k] == '\n' || s[k] == '\r')) {
		if (k + 1 < len && (s[k + 1] == '\n' || s[k + 1] == '\r') &&
		    s[k] != s[k + 1])
			k += 2;
		else
			k += 1;
	}
	size_t e;
	int rc = md_push(sc, M_PRE, i, k - i, "```", 3, &e);
	if (rc)
		return rc;
	if (sc->record) {
		sc->ents[e].open_len = lend - i;
		sc->ents[e].open2 = "\n";
		sc->ents[e].open2_len = 1;
	}
	*next = k;
	return 0;
}

static int md_open(struct scan *sc, size_t i, size_t *next,
		   bool *have_quote, bool *can_quote)
{
	const char *s = sc->s;
	size_t len = sc->len;
	unsigned char c = (unsigned char)s[i];
	bool n1 = i + 1 < len;
	int top = sc->depth ? sc->stack[sc->depth - 1].type : -1;
	*next = i + 1;
	switch (c) {
	case '_':
		if (n1 && s[i + 1] == '_') {
			*next = i + 2;
			return md_push(sc, M_UNDER, i, 2, "__", 2, NULL);
		}
		return md_push(sc, M_ITALIC, i, 1, "_", 1, NULL);
	case '*':
		return md_push(sc, M_BOLD, i, 1, "*", 1, NULL);
	case '~':
		return md_push(sc, M_STRIKE, i, 1, "~", 1, NULL);
	case '|':
		if (!(n1 && s[i + 1] == '|'))
			break;
		*next = i + 2;
		return md_push(sc, M_SPOILER, i, 2, "||", 2, NULL);
	case '[':
		for (size_t k = 0; k < sc->depth; k++)
			if (sc->stack[k].type == M_LINK)
				return fail(sc, i, "links cannot be nested");
		return md_push(sc, M_LINK, i, 1, "]()", 3, NULL);
	case '`':
		if (top == M_PRE)
			return fail(sc, i, "'`' inside pre must be escaped "
					   "as \\`");
		if (i + 2 < len && s[i + 1] == '`' && s[i + 2] == '`')
			return md_pre(sc, i, next);
		return md_push(sc, M_CODE, i, 1, "`", 1, NULL);
	case '!':
		if (!(n1 && s[i + 1] == '['))
			break;
		*can_quote = false;
		return md_emoji(sc, i, next);
	case '\n':
		*can_quote = true;
		return push_tok(sc, TOK_TEXT, i, 1, 1, NO_ENT, true, true);
	case '>':
		if (!*can_quote)
			break;
		if (*have_quote)
			return push_tok(sc, TOK_MARK, i, 1, 0, NO_ENT, false,
					false);
		if (sc->depth)
			return fail(sc, i, "blockquote cannot be inside "
					   "another entity");
		*have_quote = true;
		return md_push(sc, M_QUOTE, i, 1, "", 0, NULL);
	default:
		break;
	}
	return fail(sc, i, md_escape_msg(c));
}

static int scan_md(struct scan *sc)
{
	const char *s = sc->s;
	size_t len = sc->len, i = 0, n;
	bool have_quote = false, can_quote = true;
	int rc;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		int top = sc->depth ? sc->stack[sc->depth - 1].type : -1;
		if (c == '\\') {
			if (!md_escapable(s, len, i))
				return fail(sc, i, md_lone_bs);
			unsigned char e = (unsigned char)s[i + 1];
			rc = push_tok(sc, TOK_TEXT, i, 2, 1, NO_ENT, false,
				      is_ascii_ws(e));
			if (rc)
				return rc;
			if (e != '\r')
				can_quote = e == '\n';
			i += 2;
			continue;
		}
		bool special = (top == M_CODE || top == M_PRE) ?
				       c == '`' : md_is_reserved(c);
		if (!special) {
			rc = text_tok(sc, i, &n);
			if (rc)
				return rc;
			if (c != '\r')
				can_quote = false;
			i += n;
			continue;
		}
		if (md_is_end(sc, i, have_quote))
			rc = md_close(sc, i, &n, &have_quote, &can_quote);
		else
			rc = md_open(sc, i, &n, &have_quote, &can_quote);
		if (rc)
			return rc;
		i = n;
	}
	if (sc->prefix)
		return 0;
	if (have_quote) {
		struct frame *f = &sc->stack[sc->depth - 1];
		if (f->type == M_SPOILER && f->off + 2 == len) {
			rc = md_expandable(sc);
			if (rc)
				return rc;
		} else if (f->type == M_QUOTE) {
			rc = push_tok(sc, TOK_CLOSE, len, 0, 0, f->ent, false,
				      false);
			if (rc)
				return rc;
			sc->depth--;
		}
	}
	if (sc->depth) {
		struct frame *f = &sc->stack[sc->depth - 1];
		return fail(sc, f->off, md_unclosed[f->type]);
	}
	return 0;
}

/* ---- common ---- */

static void scan_free(struct scan *sc)
{
	free(sc->toks);
	free(sc->ents);
	sc->toks = NULL;
	sc->ents = NULL;
}

static int scan_run(struct scan *sc, enum parse_mode mode, const char *text,
		    size_t len, bool record)
{
	memset(sc, 0, sizeof(*sc));
	sc->mode = mode;
	sc->s = text ? text : "";
	sc->len = text ? len : 0;
	sc->record = record;
	if (mode == PARSE_MODE_HTML || mode == PARSE_MODE_MARKDOWNV2) {
		size_t bad;
		if (!utf8_valid(sc->s, sc->len, &bad))
			return fail(sc, bad, "invalid utf-8");
	}
	switch (mode) {
	case PARSE_MODE_HTML:
		return scan_html(sc);
	case PARSE_MODE_MARKDOWNV2:
		return scan_md(sc);
	default:
		return scan_none(sc);
	}
}

const char *markup_mode_api_name(enum parse_mode mode)
{
	switch (mode) {
	case PARSE_MODE_HTML:
		return "HTML";
	case PARSE_MODE_MARKDOWNV2:
		return "MarkdownV2";
	default:
		return NULL;
	}
}

int markup_mode_parse(const char *s, enum parse_mode *out)
{
	if (!s)
		return -EINVAL;
	if (strcasecmp(s, "HTML") == 0)
		*out = PARSE_MODE_HTML;
	else if (strcasecmp(s, "MarkdownV2") == 0)
		*out = PARSE_MODE_MARKDOWNV2;
	else if (strcasecmp(s, "none") == 0)
		*out = PARSE_MODE_NONE;
	else
		return -EINVAL;
	return 0;
}

int markup_check(enum parse_mode mode, const char *text, size_t len,
		 size_t *err_off, const char **msg)
{
	struct scan sc;
	if (mode != PARSE_MODE_HTML && mode != PARSE_MODE_MARKDOWNV2)
		return 0;
	int rc = scan_run(&sc, mode, text, len, false);
	if (rc == -EINVAL) {
		if (err_off)
			*err_off = sc.err_off;
		if (msg)
			*msg = sc.msg;
	}
	return rc;
}

int markup_escape(enum parse_mode mode, struct buf *out, const char *s,
		  size_t len)
{
	size_t orig = out->len;
	int rc = 0;
	if (mode != PARSE_MODE_HTML && mode != PARSE_MODE_MARKDOWNV2)
		return len ? buf_append(out, s, len) : 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (mode == PARSE_MODE_HTML) {
			switch (c) {
			case '<':
				rc = buf_append(out, "&lt;", 4);
				break;
			case '>':
				rc = buf_append(out, "&gt;", 4);
				break;
			case '&':
				rc = buf_append(out, "&amp;", 5);
				break;
			case '"':
				rc = buf_append(out, "&quot;", 6);
				break;

			default:
				rc = buf_putc(out, c);
				break;
			}
		} else {
			if (c == '\\' || (c != '\n' &&
					  md_is_reserved((unsigned char)c)))
				rc = buf_putc(out, '\\');
			if (!rc)
				rc = buf_putc(out, c);
		}
		if (rc)
			goto out;
	}
out:
	if (rc)
		buf_truncate(out, orig);
	return rc;
}

bool markup_md_quote_open(const char *text, size_t len)
{
	struct scan sc;
	if (!len || text[len - 1] == '\n')
		return false;
	memset(&sc, 0, sizeof(sc));
	sc.mode = PARSE_MODE_MARKDOWNV2;
	sc.s = text;
	sc.len = len;
	sc.prefix = true;
	if (!utf8_valid(text, len, NULL) || scan_md(&sc))
		return false;
	bool quote = false;
	for (size_t k = 0; k < sc.depth; k++) {
		if (sc.stack[k].type == M_CODE || sc.stack[k].type == M_PRE)
			return false; /* there '>' is text, and a break is fine */
		quote = quote || sc.stack[k].type == M_QUOTE;
	}
	return quote;
}

size_t markup_visible_len(enum parse_mode mode, const char *text, size_t len)
{
	struct scan sc;
	if (!text)
		return 0;
	/* malformed markup: the UTF-16 length of the raw text */
	if (scan_run(&sc, mode, text, len, false))
		return utf8_utf16_len(text, len);
	return sc.visible;
}

/* ---- splitting ---- */

struct chunks {
	char **v;
	size_t n, cap;
};

/* Appends a piece of a chunk. In MarkdownV2 a '_' meeting a '_' across
 * pieces would re-pair as "__"; an empty bold entity keeps them apart. */
static int put(struct buf *b, enum parse_mode mode, const char *p, size_t n)
{
	if (!n)
		return 0;
	if (mode == PARSE_MODE_MARKDOWNV2 && b->len &&
	    b->data[b->len - 1] == '_' && p[0] == '_') {
		int rc = buf_append(b, "**", 2);
		if (rc)
			return rc;
	}
	return buf_append(b, p, n);
}

static void stack_apply(const struct scan *sc, size_t from, size_t to,
			size_t *stack, size_t *depth)
{
	for (size_t q = from; q < to; q++) {
		const struct tok *t = &sc->toks[q];
		if (t->kind == TOK_OPEN && *depth < MAX_DEPTH)
			stack[(*depth)++] = t->ent;
		else if (t->kind == TOK_CLOSE && *depth)
			(*depth)--;
	}
}

/* Emits tokens [s, e) as a chunk, reopening `stack` (open at s) first and
 * closing what is open at e last. Chunks showing nothing are dropped. */
static int emit_chunk(const struct scan *sc, size_t s, size_t e,
		      const size_t *stack, size_t depth, struct chunks *out)
{
	struct buf b = BUF_INIT;
	size_t st[MAX_DEPTH], d = depth;
	bool vis = false;
	int rc = 0;
	for (size_t q = s; q < e && !vis; q++) {
		const struct tok *t = &sc->toks[q];
		vis = !t->skip && t->kind == TOK_TEXT && t->width &&
		      !t->vis_ws;
	}
	if (!vis)
		return 0;
	for (size_t k = 0; k < depth; k++) {
		const struct ent *en = &sc->ents[stack[k]];
		rc = put(&b, sc->mode, en->open, en->open_len);
		if (!rc)
			rc = put(&b, sc->mode, en->open2, en->open2_len);
		if (rc)
			goto out;
		st[k] = stack[k];
	}
	for (size_t q = s; q < e;) {
		if (sc->toks[q].skip) {
			q++;
			continue;
		}
		size_t r = q;
		while (r < e && !sc->toks[r].skip)
			r++;
		size_t from = sc->toks[q].off;
		size_t to = sc->toks[r - 1].off + sc->toks[r - 1].len;
		rc = put(&b, sc->mode, sc->s + from, to - from);
		if (rc)
			goto out;
		q = r;
	}
	stack_apply(sc, s, e, st, &d);
	while (d) {
		const struct ent *en = &sc->ents[st[--d]];
		rc = put(&b, sc->mode, en->close, en->close_len);
		if (rc)
			goto out;
	}
	if (out->n == out->cap) {
		size_t cap = out->cap ? out->cap * 2 : 8;
		char **v = realloc(out->v, cap * sizeof(*v));
		if (!v) {
			rc = -ENOMEM;
			goto out;
		}
		out->v = v;
		out->cap = cap;
	}
	char *str = buf_take(&b);
	if (!str) {
		rc = -ENOMEM;
		goto out;
	}
	out->v[out->n++] = str;
out:
	buf_free(&b);
	return rc;
}

enum { CUT_SPACE, CUT_NEWLINE, CUT_BLANK, CUT_NCLASS };

static bool is_open(const struct tok *t)
{
	return t->kind == TOK_OPEN || t->kind == TOK_MARK;
}

static bool is_break(const struct tok *t, const char *s, char c)
{
	return t->kind == TOK_TEXT && t->plain && !t->skip && s[t->off] == c;
}

/* Chooses where the chunk starting at token s ends: the body is [s, *end),
 * the next chunk starts at *next; break whitespace to drop is marked skip. */
static void find_cut(struct scan *sc, size_t s, size_t limit, size_t *end,
		     size_t *next)
{
	struct tok *toks = sc->toks;
	size_t best[CUT_NCLASS] = {0, 0, 0}, bestw[CUT_NCLASS] = {0, 0, 0};
	bool have[CUT_NCLASS] = {false, false, false};
	size_t w = 0, q, cut, nskip = 0;
	for (q = s; q < sc->ntok; q++) {
		const struct tok *t = &toks[q];
		if (t->skip || t->kind != TOK_TEXT)
			continue;
		int cls = -1;
		if (is_break(t, sc->s, ' '))
			cls = CUT_SPACE;
		else if (is_break(t, sc->s, '\n'))
			cls = (q + 1 < sc->ntok &&
			       is_break(&toks[q + 1], sc->s, '\n')) ?
				      CUT_BLANK : CUT_NEWLINE;
		if (w > 0 && cls >= 0) {
			have[cls] = true;
			best[cls] = q;
			bestw[cls] = w;
		}
		if (w > 0 && w + t->width > limit)
			break;
		w += t->width;
	}
	cut = q;
	if (q < sc->ntok) {
		size_t thr = limit - limit / 4;
		for (int cls = CUT_BLANK; cls >= CUT_SPACE; cls--) {
			if (have[cls] && bestw[cls] >= thr) {
				cut = best[cls];
				nskip = cls == CUT_BLANK ? 2 : 1;
				break;
			}
		}
		/* opening markup goes with the text it opens */
		q = cut;
		while (q > s && is_open(&toks[q - 1]))
			q--;
	}
	/* trailing whitespace shows nothing (Telegram trims it); opening
	 * markup it uncovers moves to the next chunk too, since a chunk
	 * ending with it could read differently ("```lang" + "```") */
	size_t e = q;
	for (;;) {
		while (e > s && toks[e - 1].kind == TOK_TEXT &&
		       toks[e - 1].plain)
			e--;
		if (e == s || !is_open(&toks[e - 1]))
			break;
		while (e > s && is_open(&toks[e - 1]))
			e--;
		if (e == s)
			break; /* nothing visible before it: dropped anyway */
		q = e;
	}
	/* drop the break whitespace when it starts the next chunk; in
	 * MarkdownV2 not before a closing mark, which could glue onto the
	 * reopened one ("`" + "`" + "`..." reads as "```") */
	size_t after = cut + nskip;
	if (nskip && q == cut &&
	    (sc->mode != PARSE_MODE_MARKDOWNV2 || after >= sc->ntok ||
	     toks[after].kind != TOK_CLOSE))
		for (size_t k = cut; k < after; k++)
			toks[k].skip = 1;
	*next = q;
	*end = e;
}

/* Splits the common reply, plain text that fits, without tokens: true
 * when it did (*rc as markup_split returns). Plain means no byte the mode
 * gives a meaning to; a chunk is at most `limit` UTF-16 units and a text
 * has no more units than bytes. The result is the one the tokens give: the
 * text without its trailing whitespace, nothing when that leaves nothing. */
static bool split_plain(enum parse_mode mode, const char *text, size_t len,
			size_t limit, char ***out, int *rc)
{
	const char *special = mode == PARSE_MODE_HTML	     ? "<>&"
			      : mode == PARSE_MODE_MARKDOWNV2 ? "_*[]()~`>#+-=|{}.!\n\\"
							      : "";
	if (len > limit || !utf8_valid(text, len, NULL))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!text[i] || strchr(special, text[i]))
			return false;
	while (len && is_ascii_ws((unsigned char)text[len - 1]))
		len--;
	*rc = 0;
	if (!len)
		return true;
	char **v = malloc(sizeof(*v));
	if (!v || !(v[0] = strndup(text, len))) {
		free(v);
		*rc = -ENOMEM;
		return true;
	}
	*out = v;
	*rc = 1;
	return true;
}

int markup_split(enum parse_mode mode, const char *text, size_t len,
		 size_t limit, char ***out)
{
	struct scan sc;
	struct chunks ch = {NULL, 0, 0};
	size_t stack[MAX_DEPTH], depth = 0;
	int rc;
	*out = NULL;
	if (limit == 0)
		limit = 1;
	if (text && split_plain(mode, text, len, limit, out, &rc))
		return rc;
	rc = scan_run(&sc, mode, text, len, true);
	if (rc)
		goto out;
	for (size_t s = 0; s < sc.ntok;) {
		size_t end, next;
		find_cut(&sc, s, limit, &end, &next);
		rc = emit_chunk(&sc, s, end, stack, depth, &ch);
		if (rc)
			goto out;
		stack_apply(&sc, s, next, stack, &depth);
		s = next;
	}
	if (ch.n > (size_t)INT32_MAX) {
		rc = -ENOMEM;
		goto out;
	}
	*out = ch.v;
	rc = (int)ch.n;
	ch.v = NULL;
	ch.n = 0;
out:
	for (size_t k = 0; k < ch.n; k++)
		free(ch.v[k]);
	free(ch.v);
	scan_free(&sc);
	return rc;
}
