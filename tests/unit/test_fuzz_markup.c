/* Deterministic fuzz test for markup and template: random fragment soups,
 * mutations and raw bytes go through markup_check, markup_split and
 * template_parse; every split chunk must re-check fine and fit the limit,
 * and text that checks fine for a template must render to valid markup.
 * BOTFACTORY_FUZZ_ITERS and BOTFACTORY_FUZZ_SEED override the defaults. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "botfactory/markup.h"
#include "botfactory/template.h"

struct rng {
	uint64_t s;
};

static uint32_t rnd(struct rng *r, uint32_t n)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return n ? (uint32_t)(r->s % n) : 0;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const html_frags[] = {
	"<b>", "</b>", "<i>", "</i>", "<u>", "</u>", "<s>", "</s>",
	"<a href=\"https://x.org/?a=1&amp;b=2\">", "</a>", "<code>",
	"</code>", "<pre>", "</pre>", "<code class=\"language-c\">",
	"<blockquote>", "<blockquote expandable>", "</blockquote>",
	"<tg-spoiler>", "</tg-spoiler>", "<span class=\"tg-spoiler\">",
	"</span>", "<tg-emoji emoji-id=\"1\">\xF0\x9F\x91\x8D</tg-emoji>",
	"&amp;", "&lt;", "&gt;", "&quot;", "&#128512;", "&#x41;", "&#32;",
	"word", "x", "long-ish words", " ", " ", "\n", "\n\n", "\t",
	"\xF0\x9F\x98\x80", "\xC3\xA9", "\xE2\x82\xAC", "<", ">", "&", "\"",
};

static const char *const md_frags[] = {
	"*", "_", "__", "~", "||", "`", "```", "```py\n", "[", "](http://x.y)",
	"](tg://user?id=1)", "![\xF0\x9F\x91\x8D](tg://emoji?id=5)", ">", "**>",
	"\\.", "\\!", "\\*", "\\_", "\\\\", "\\`", "\\|", "\\>", "\\(", "\\)",
	"word", "x", "long-ish words", " ", " ", "\n", "\n", "\n\n", "\r",
	"\xF0\x9F\x98\x80", "\xC3\xA9", ".", "!", "(", ")", "\\",
};

static const char *const none_frags[] = {
	"word", "x", " ", "\n", "\n\n", "\xF0\x9F\x98\x80", "\xC3\xA9", "<b>",
};

static const char *const tpl_frags[] = {
	"{{", "}}", "{{ name }}", "{{user.first_name}}", "{{x}}", "{", "}",
	"a.b", " ", "1", "_", "-", "\n",
};

static const char *const values[] = {
	"", "x", "Tom & Jerry", "<b>hi</b>", "1+1=2. (ok)!", "*bold* _it_",
	"`code` ||s|| ~x~ [l](u)", "back\\slash", "\xF0\x9F\x98\x80 \"q\"",
	"> quote # + - = { } .",
};

static void put(struct buf *b, const char *s)
{
	assert_int_equal(buf_puts(b, s), 0);
}

static const char *const words[] = {
	"a", "word", "longer words here", "\xF0\x9F\x98\x80", "caf\xC3\xA9",
	" ", " ", " ", "\n", "\n\n", "x y z",
};

/* Well-formed HTML (mostly): nested inline tags, links, code, pre,
 * blockquotes and custom emoji around text and entities. */
static void gen_html(struct rng *r, struct buf *b, int depth, bool in_a)
{
	static const char *const inl[][2] = {
		{"<b>", "</b>"}, {"<i>", "</i>"}, {"<u>", "</u>"},
		{"<s>", "</s>"}, {"<tg-spoiler>", "</tg-spoiler>"},
		{"<span class=\"tg-spoiler\">", "</span>"},
		{"<strong>", "</strong>"}, {"<em>", "</em>"},
	};
	static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;",
					   "&#128512;", "&#x41;"};
	for (size_t n = rnd(r, 6) + 1; n; n--) {
		uint32_t k = rnd(r, depth > 3 ? 4 : 10);
		if (k < 2) {
			put(b, words[rnd(r, N(words))]);
		} else if (k == 2) {
			put(b, ents[rnd(r, N(ents))]);
		} else if (k == 3) {
			put(b, "<tg-emoji emoji-id=\"5\">\xF0\x9F\x91\x8D"
			       "</tg-emoji>");
		} else if (k < 7) {
			uint32_t t = rnd(r, N(inl));
			put(b, inl[t][0]);
			gen_html(r, b, depth + 1, in_a);
			put(b, inl[t][1]);
		} else if (k == 7 && !in_a) {
			put(b, "<a href=\"https://x.org/?q=1&amp;r=2\">");
			gen_html(r, b, depth + 1, true);
			put(b, "</a>");
		} else if (k == 8) {
			bool lang = rnd(r, 2);
			put(b, rnd(r, 2) ? "<pre>" : "");
			if (b->len >= 5 && !memcmp(b->data + b->len - 5,
						   "<pre>", 5)) {
				put(b, lang ? "<code class=\"language-c\">" :
					      "");
				put(b, "int x = 1 &lt; 2;\n\treturn x;");
				put(b, lang ? "</code></pre>" : "</pre>");
			} else {
				put(b, "<code>a &amp;&amp; b</code>");
			}
		} else if (depth == 0) {
			put(b, rnd(r, 2) ? "<blockquote>" :
					   "<blockquote expandable>");
			gen_html(r, b, depth + 1, in_a);
			put(b, "</blockquote>");
		}
	}
}

/* Well-formed MarkdownV2 (mostly): entities never nest in themselves, code
 * escapes only ` and \, blockquotes are whole lines at the top level. */
static void gen_md(struct rng *r, struct buf *b, int depth, unsigned open)
{
	static const char *const delim[] = {"*", "_", "__", "~", "||"};
	static const char *const esc[] = {"\\.", "\\!", "\\*", "\\_", "\\\\",
					  "\\(", "\\)", "\\|", "\\>", "\\#"};
	for (size_t n = rnd(r, 6) + 1; n; n--) {
		uint32_t k = rnd(r, depth > 3 ? 4 : 10);
		if (k < 2) {
			put(b, words[rnd(r, N(words))]);
		} else if (k == 2) {
			put(b, esc[rnd(r, N(esc))]);
		} else if (k == 3) {
			put(b, "![\xF0\x9F\x91\x8D](tg://emoji?id=5)");
		} else if (k < 7) {
			uint32_t t = rnd(r, N(delim));
			if (open & (1u << t))
				continue;
			/* keep '_' runs unambiguous: a space on each side */
			put(b, t == 1 || t == 2 ? " " : "");
			put(b, delim[t]);
			gen_md(r, b, depth + 1, open | (1u << t));
			put(b, delim[t]);
			put(b, t == 1 || t == 2 ? " " : "");
		} else if (k == 7 && !(open & 32)) {
			put(b, "[");
			gen_md(r, b, depth + 1, open | 32);
			put(b, "](https://x.org/a\\)b)");
		} else if (k == 8) {
			put(b, rnd(r, 2) ? "`a.b \\` \\\\ c`" :
					   "```c\nint x = 1;\n\treturn x;```");
		} else if (depth == 0) {
			if (b->len && b->data[b->len - 1] != '\n')
				put(b, "\n");
			put(b, rnd(r, 2) ? ">" : "**>");
			for (size_t l = rnd(r, 3) + 1; l; l--) {
				put(b, words[rnd(r, 4)]);
				put(b, rnd(r, 2) ? " *bold* " : " \\. ");
				put(b, words[rnd(r, 4)]);
				put(b, l > 1 ? "\n>" : "");
			}
			put(b, rnd(r, 2) ? "||\n" : "\n");
		}
	}
}

static void soup(struct rng *r, struct buf *b, const char *const *frags,
		 size_t n, size_t max)
{
	size_t k = rnd(r, (uint32_t)max) + 1;
	for (size_t i = 0; i < k; i++)
		assert_int_equal(buf_puts(b, frags[rnd(r, (uint32_t)n)]), 0);
}

static void mutate(struct rng *r, struct buf *b, const char *const *frags,
		   size_t n)
{
	size_t k = rnd(r, 3) + 1;
	for (size_t i = 0; i < k && b->len; i++) {
		size_t at = rnd(r, (uint32_t)b->len);
		switch (rnd(r, 3)) {
		case 0: /* delete a byte */
			memmove(b->data + at, b->data + at + 1, b->len - at);
			b->len--;
			break;
		case 1: { /* insert a fragment */
			const char *f = frags[rnd(r, (uint32_t)n)];
			size_t fl = strlen(f);
			assert_int_equal(buf_reserve(b, fl), 0);
			memmove(b->data + at + fl, b->data + at,
				b->len - at + 1);
			memcpy(b->data + at, f, fl);
			b->len += fl;
			break;
		}
		default: /* random byte */
			b->data[at] = (char)(rnd(r, 255) + 1);
			break;
		}
	}
}

/* Text of HTML or plain text without tags and whitespace: splitting must
 * keep it (entities stay as written, so they compare as text). */
static void skeleton(enum parse_mode mode, const char *s, struct buf *out)
{
	bool tag = false;
	char quote = 0;
	for (; *s; s++) {
		if (mode == PARSE_MODE_HTML && *s == '<' && !tag) {
			tag = true;
			continue;
		}
		if (!tag && !strncmp(s, "&#32;", 5)) {
			s += 4; /* a space, which a dropped chunk may hold */
		} else if (!tag) {
			if (!strchr(" \n\t\r", *s))
				assert_int_equal(buf_putc(out, *s), 0);
		} else if (quote) {
			if (*s == quote)
				quote = 0;
		} else if (*s == '"' || *s == '\'') {
			quote = *s;
		} else if (*s == '>') {
			tag = false;
		}
	}
}

static void check_split(struct rng *r, enum parse_mode mode, const char *s,
			size_t len)
{
	size_t off;
	const char *msg;
	size_t limit = rnd(r, 40) + 1;
	char **v = NULL;
	(void)markup_visible_len(mode, s, len);
	int ok = markup_check(mode, s, len, &off, &msg) == 0;
	int n = markup_split(mode, s, len, limit, &v);
	if (!ok) {
		assert_true(n < 0);
		assert_null(v);
		return;
	}
	assert_true(n >= 0);
	/* chunks show the text once: nothing but whitespace may go */
	size_t total = markup_visible_len(mode, s, len), shown = 0, ws = 0;
	for (size_t i = 0; i < len; i++)
		ws += strchr(" \n\t\r", s[i]) || !strncmp(s + i, "&#32;", 5);
	struct buf whole = BUF_INIT, parts = BUF_INIT;
	for (int i = 0; i < n; i++) {
		size_t cl = strlen(v[i]);
		int rc = markup_check(mode, v[i], cl, &off, &msg);
		size_t vis = markup_visible_len(mode, v[i], cl);
		/* only an unbreakable token may exceed the limit: an emoji
		 * (2 units) or a custom emoji element of any content */
		bool custom = strstr(v[i], "tg-emoji") ||
			      strstr(v[i], "tg://emoji");
		if (rc || (vis > limit && vis > 2 && !custom)) {
			print_error("input \"%s\" limit %zu: chunk \"%s\" "
				    "(%s at %zu, visible %zu)\n", s, limit,
				    v[i], rc ? msg : "ok", rc ? off : 0, vis);
			fail();
		}
		if (mode != PARSE_MODE_MARKDOWNV2)
			skeleton(mode, v[i], &parts);
		shown += vis;
		free(v[i]);
	}
	free(v);
	assert_true(shown <= total && shown + ws >= total);
	if (mode != PARSE_MODE_MARKDOWNV2) {
		skeleton(mode, s, &whole);
		assert_string_equal(whole.data ? whole.data : "",
				    parts.data ? parts.data : "");
	}
	buf_free(&whole);
	buf_free(&parts);
}

static const char *pick_value(void *ctx, const char *name)
{
	struct rng *r = ctx;
	(void)name;
	uint32_t k = rnd(r, N(values) + 1);
	return k == N(values) ? NULL : values[k];
}

static void check_template(struct rng *r, enum parse_mode mode,
			   const char *s, size_t len)
{
	struct template *t = NULL;
	size_t off;
	const char *msg;
	if (template_parse(s, len, &t, &off, &msg)) {
		assert_null(t);
		assert_true(off <= len);
		return;
	}
	(void)template_is_blank(t);
	if (template_check_markup(t, mode, &off, &msg) == 0) {
		/* checked templates render to valid markup for any value */
		for (int k = 0; k < 3; k++) {
			struct buf b = BUF_INIT;
			assert_int_equal(template_render(t, mode, pick_value, r,
							 &b), 0);
			if (markup_check(mode, b.data ? b.data : "", b.len,
					 &off, &msg)) {
				print_error("template \"%s\" rendered \"%s\": "
					    "%s at %zu\n", s, b.data, msg, off);
				fail();
			}
			buf_free(&b);
		}
	} else {
		assert_true(off <= len);
	}
	template_free(t);
}

static unsigned long env_num(const char *name, unsigned long def)
{
	const char *v = getenv(name);
	return v && *v ? strtoul(v, NULL, 0) : def;
}

static void test_fuzz(void **state)
{
	(void)state;
	struct rng r = {env_num("BOTFACTORY_FUZZ_SEED", 0x9E3779B97F4A7C15ull)};
	unsigned long iters = env_num("BOTFACTORY_FUZZ_ITERS", 6000);
	static const struct mode_case {
		enum parse_mode mode;
		const char *const *frags;
		size_t n;
	} modes[] = {
		{PARSE_MODE_HTML, html_frags, N(html_frags)},
		{PARSE_MODE_MARKDOWNV2, md_frags, N(md_frags)},
		{PARSE_MODE_NONE, none_frags, N(none_frags)},
	};
	if (!r.s)
		r.s = 1;
	for (unsigned long it = 0; it < iters; it++) {
		const struct mode_case *m = &modes[it % N(modes)];
		struct buf b = BUF_INIT;
		if (m->mode == PARSE_MODE_HTML && rnd(&r, 4))
			gen_html(&r, &b, 0, false);
		else if (m->mode == PARSE_MODE_MARKDOWNV2 && rnd(&r, 4))
			gen_md(&r, &b, 0, 0);
		else
			soup(&r, &b, m->frags, m->n, 40);
		if (!rnd(&r, 4))
			mutate(&r, &b, m->frags, m->n);
		check_split(&r, m->mode, b.data ? b.data : "", b.len);

		/* raw bytes */
		buf_reset(&b);
		size_t k = rnd(&r, 64);
		for (size_t i = 0; i < k; i++)
			assert_int_equal(buf_putc(&b, (char)(rnd(&r, 255) + 1)),
					 0);
		check_split(&r, m->mode, b.data ? b.data : "", b.len);

		/* templates: literal soup with placeholders */
		buf_reset(&b);
		for (size_t i = rnd(&r, 12) + 1; i; i--) {
			uint32_t pick = rnd(&r, 4);
			if (pick == 0 && m->mode == PARSE_MODE_HTML)
				gen_html(&r, &b, 1, false);
			else if (pick == 0 && m->mode == PARSE_MODE_MARKDOWNV2)
				gen_md(&r, &b, 1, 0);
			else if (pick == 1)
				soup(&r, &b, m->frags, m->n, 3);
			else
				soup(&r, &b, tpl_frags, N(tpl_frags), 2);
		}
		check_template(&r, m->mode, b.data ? b.data : "", b.len);
		buf_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fuzz),
	};
	return cmocka_run_group_tests_name("fuzz_markup", tests, NULL, NULL);
}
