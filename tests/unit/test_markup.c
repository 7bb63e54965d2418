/* Unit tests for markup: HTML and MarkdownV2 checking (every error class and
 * its byte offset), escaping, visible length in UTF-16 units, and splitting
 * (cut preferences, reopening entities, never cutting inside a token). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "botfactory/markup.h"

/* ---- helpers ---- */

static void check_ok(enum parse_mode mode, const char *text)
{
	size_t off = 12345;
	const char *msg = NULL;
	int rc = markup_check(mode, text, strlen(text), &off, &msg);
	if (rc)
		print_error("unexpected error for \"%s\": %s at %zu\n", text,
			    msg ? msg : "?", off);
	assert_int_equal(rc, 0);
}

static void check_err(enum parse_mode mode, const char *text, size_t want_off,
		      const char *want_msg)
{
	size_t off = 12345;
	const char *msg = NULL;
	int rc = markup_check(mode, text, strlen(text), &off, &msg);
	if (rc != -EINVAL)
		print_error("expected an error for \"%s\"\n", text);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(msg);
	assert_string_equal(msg, want_msg);
	assert_int_equal(off, want_off);
}

static const enum parse_mode HTML = PARSE_MODE_HTML;
static const enum parse_mode MD = PARSE_MODE_MARKDOWNV2;
static const enum parse_mode NONE = PARSE_MODE_NONE;

/* Splits text and compares the chunks with want (NULL-terminated); also
 * checks every chunk is well-formed and within the limit. */
static void split_eq(enum parse_mode mode, const char *text, size_t limit,
		     const char *const *want)
{
	char **v = NULL;
	int n = markup_split(mode, text, strlen(text), limit, &v);
	size_t nwant = 0;
	while (want[nwant])
		nwant++;
	assert_true(n >= 0);
	for (int i = 0; i < n; i++) {
		if (i >= (int)nwant || strcmp(v[i], want[i]) != 0)
			print_error("chunk %d: got \"%s\" want \"%s\"\n", i,
				    v[i], i < (int)nwant ? want[i] : "(none)");
	}
	assert_int_equal(n, nwant);
	for (int i = 0; i < n; i++) {
		assert_string_equal(v[i], want[i]);
		check_ok(mode, v[i]);
		free(v[i]);
	}
	free(v);
}

/* Splits and checks the invariants only. Returns the chunk count. */
static int split_props(enum parse_mode mode, const char *text, size_t limit,
		       size_t max_token)
{
	char **v = NULL;
	int n = markup_split(mode, text, strlen(text), limit, &v);
	assert_true(n >= 0);
	for (int i = 0; i < n; i++) {
		size_t len = strlen(v[i]);
		size_t vis = markup_visible_len(mode, v[i], len);
		check_ok(mode, v[i]);
		if (vis > limit && vis > max_token)
			print_error("chunk \"%s\" shows %zu > %zu\n", v[i], vis,
				    limit);
		assert_true(vis <= limit || vis <= max_token);
		assert_true(vis > 0);
		free(v[i]);
	}
	free(v);
	return n;
}

/* ---- modes ---- */

static void test_mode_names(void **state)
{
	(void)state;
	enum parse_mode m = PARSE_MODE_NONE;
	assert_string_equal(markup_mode_api_name(HTML), "HTML");
	assert_string_equal(markup_mode_api_name(MD), "MarkdownV2");
	assert_null(markup_mode_api_name(NONE));
	assert_int_equal(markup_mode_parse("html", &m), 0);
	assert_int_equal(m, HTML);
	assert_int_equal(markup_mode_parse("MARKDOWNV2", &m), 0);
	assert_int_equal(m, MD);
	assert_int_equal(markup_mode_parse("None", &m), 0);
	assert_int_equal(m, NONE);
	assert_int_equal(markup_mode_parse("Markdown", &m), -EINVAL);
	assert_int_equal(markup_mode_parse("", &m), -EINVAL);
	assert_int_equal(markup_mode_parse(NULL, &m), -EINVAL);
}

/* ---- HTML check ---- */

static void test_html_valid(void **state)
{
	(void)state;
	check_ok(HTML, "");
	check_ok(HTML, "plain text, nothing else");
	check_ok(HTML, "<b>bold <i>italic <u>under <s>strike</s></u></i></b>");
	check_ok(HTML, "<strong>a</strong><em>b</em><ins>c</ins>"
		       "<strike>d</strike><del>e</del>");
	check_ok(HTML, "<B>upper</B> <b >spaced</b >");
	check_ok(HTML, "<a href=\"https://x.org/?a=1&amp;b=2\">link</a>");
	check_ok(HTML, "<a href='tg://user?id=1'>single quotes</a>");
	check_ok(HTML, "<a  href = \"u\" >spaces around =</a>");
	check_ok(HTML, "<b><a href=\"u\">bold link</a></b>");
	check_ok(HTML, "<pre><code class=\"language-python\">x &lt; 1"
		       "</code></pre>");
	check_ok(HTML, "<pre>plain pre\nline 2</pre><code>code</code>");
	check_ok(HTML, "<blockquote>q</blockquote>"
		       "<blockquote expandable>long q</blockquote>");
	check_ok(HTML, "<tg-spoiler>s</tg-spoiler> "
		       "<span class=\"tg-spoiler\">s</span>");
	check_ok(HTML, "<tg-emoji emoji-id=\"5368324170671202286\">"
		       "\xF0\x9F\x91\x8D</tg-emoji>");
	check_ok(HTML, "&lt;&gt;&amp;&quot; &#33;&#x21;&#x1F600;&#128512;");
	check_ok(HTML, "<b></b>");
}

/* What Telegram's HTML parser refuses, or reads otherwise than the
 * checker would: refused here too. */
static void test_html_as_telegram_reads_it(void **state)
{
	(void)state;
	/* numeric entities: lowercase x, below U+10FFFF, at most 9 bytes */
	check_err(HTML, "a &#X41; b", 2, "'&' must be written as &amp;");
	check_err(HTML, "&#1114111;", 0, "invalid numeric entity");
	check_err(HTML, "&#x10FFFF;", 0, "invalid numeric entity");
	check_err(HTML, "&#00000065;", 0, "invalid numeric entity");
	/* attribute names are exact */
	check_err(HTML, "<span CLASS=\"tg-spoiler\">x</span>", 6, "unknown attribute");
	check_err(HTML, "<a HREF=\"http://x\">x</a>", 3, "unknown attribute");
	check_ok(HTML, "<SPAN class=\"tg-spoiler\">x</SPAN>"); /* tag names are not */
	/* one href: Telegram keeps the last */
	check_err(HTML, "<a href=\"http://a\" href=\"http://b\">x</a>", 19, "repeated attribute");
	/* custom emoji ids: positive int64, canonical */
	check_err(HTML, "<tg-emoji emoji-id=\"0\">x</tg-emoji>", 20,
		  "emoji-id must be a positive number without leading zeros");
	check_err(HTML, "<tg-emoji emoji-id=\"05\">x</tg-emoji>", 20,
		  "emoji-id must be a positive number without leading zeros");
	check_err(HTML, "<tg-emoji emoji-id=\"99999999999999999999\">x</tg-emoji>", 20,
		  "emoji-id must be a positive number without leading zeros");
	check_ok(HTML, "<tg-emoji emoji-id=\"9223372036854775807\">x</tg-emoji>");
	check_err(MD, "![x](tg://emoji?id=0)", 19,
		  "the emoji id must be a positive number without leading zeros");
	check_err(MD, "![x](tg://emoji?id=025)", 19,
		  "the emoji id must be a positive number without leading zeros");
	check_ok(MD, "![x](tg://emoji?id=5368324170671202286)");
}

static void test_html_errors(void **state)
{
	(void)state;
	/* bare specials */
	check_err(HTML, "a < b", 2, "'<' must be written as &lt;");
	check_err(HTML, "a <", 2, "'<' must be written as &lt;");
	check_err(HTML, "1 > 0", 2, "'>' must be written as &gt;");
	check_err(HTML, "Tom & Jerry", 4, "'&' must be written as &amp;");
	check_err(HTML, "x &lt y", 2, "'&' must be written as &amp;");
	check_err(HTML, "&nbsp;", 0, "'&' must be written as &amp;");
	check_err(HTML, "&#;", 0, "'&' must be written as &amp;");
	check_err(HTML, "ab&#0;", 2, "invalid numeric entity");
	check_err(HTML, "&#xD800;", 0, "invalid numeric entity");
	check_err(HTML, "&#1114112;", 0, "invalid numeric entity");
	check_err(HTML, "&#99999999999999;", 0, "invalid numeric entity");
	/* structure */
	check_err(HTML, "x<b>y", 1, "unclosed <b> tag");
	check_err(HTML, "<b><i>y</i>", 0, "unclosed <b> tag");
	check_err(HTML, "<b>x</i>", 4, "mismatched end tag, expected </b>");
	check_err(HTML, "<b><i>x</b></i>", 7,
		  "mismatched end tag, expected </i>");
	check_err(HTML, "x</b>", 1, "end tag without a start tag");
	check_err(HTML, "<foo>x</foo>", 0, "unknown tag");
	check_err(HTML, "ok <br>", 3, "unknown tag");
	check_err(HTML, "<b>x</foo>", 4, "unknown tag");
	check_err(HTML, "x <b", 2, "unterminated tag");
	check_err(HTML, "<b>x</b", 4, "unterminated tag");
	check_err(HTML, "<b>x</ b>", 4, "malformed end tag");
	check_err(HTML, "<b>x</>", 4, "malformed end tag");
	check_err(HTML, "<b/>", 2, "malformed attribute");
	/* attributes */
	check_err(HTML, "<a>x</a>", 0, "<a> tag needs href");
	check_err(HTML, "<a href=x>y</a>", 8, "attribute value must be quoted");
	check_err(HTML, "<a href=\"x>y</a>", 8, "unterminated attribute value");
	check_err(HTML, "<a href=\"a&b\">y</a>", 10,
		  "'&' must be written as &amp;");
	check_err(HTML, "<a href=\"u\"title=\"t\">y</a>", 11,
		  "malformed attribute");
	check_err(HTML, "<b class=\"x\">y</b>", 3, "unknown attribute");
	check_err(HTML, "<a href=\"u\" target=\"_blank\">y</a>", 12,
		  "unknown attribute");
	check_err(HTML, "<span>x</span>", 0,
		  "<span> tag needs class=\"tg-spoiler\"");
	check_err(HTML, "<span class=\"x\">y</span>", 13,
		  "<span> class must be \"tg-spoiler\"");
	check_err(HTML, "<tg-emoji>x</tg-emoji>", 0,
		  "<tg-emoji> tag needs emoji-id");
	check_err(HTML, "<tg-emoji emoji-id=\"12a\">x</tg-emoji>", 20,
		  "emoji-id must be a positive number without leading zeros");
	check_err(HTML, "<tg-emoji emoji-id=\"1\"><b>x</b></tg-emoji>", 23,
		  "tags are not allowed inside <tg-emoji>");
	check_err(HTML, "<tg-emoji emoji-id=\"1\">x", 0,
		  "unclosed <tg-emoji> tag");
	check_err(HTML, "<blockquote expandable=\"1\">q</blockquote>", 12,
		  "unknown attribute");
	/* nesting rules */
	check_err(HTML, "<code><b>x</b></code>", 6,
		  "tags are not allowed inside <code>");
	check_err(HTML, "<pre><b>x</b></pre>", 5,
		  "only <code> is allowed inside <pre>");
	check_err(HTML, "<code class=\"language-c\">x</code>", 0,
		  "language class is only allowed in <pre><code>");
	check_err(HTML, "<pre><code class=\"c\">x</code></pre>", 18,
		  "<code> class must be \"language-...\"");
	check_err(HTML, "<a href=\"u\"><a href=\"v\">x</a></a>", 12,
		  "links cannot be nested");
	check_err(HTML, "<blockquote><blockquote>x</blockquote></blockquote>",
		  12, "<blockquote> cannot be nested");
	/* encoding */
	check_err(HTML, "ab\xff", 2, "invalid utf-8");
}

/* ---- MarkdownV2 check ---- */

static void test_md_valid(void **state)
{
	(void)state;
	check_ok(MD, "");
	check_ok(MD, "Hello\\, world\\!");
	check_ok(MD, "*bold \\*text*");
	check_ok(MD, "_italic \\*text_ __underline__ ~strike~ ||spoiler||");
	/* the Bot API documentation's nesting example */
	check_ok(MD, "*bold _italic bold ~italic bold strikethrough "
		     "||italic bold strikethrough spoiler||~ __underline "
		     "italic bold___ bold*");
	check_ok(MD, "[inline URL](http://www.example.com/)");
	check_ok(MD, "[mention](tg://user?id=123456789)");
	check_ok(MD, "[a](http://x.com/a\\)b\\\\c)");
	check_ok(MD, "![\xF0\x9F\x91\x8D](tg://emoji?id=5368324170671202286)");
	check_ok(MD, "`inline code with . and * and _`");
	check_ok(MD, "`code with \\` and \\\\`");
	check_ok(MD, "```\npre-formatted fixed-width code block\n```");
	check_ok(MD, "```python\nprint(\"a.b\")\n```");
	check_ok(MD, ">Block quotation started\n>Block quotation continued\n"
		     ">The last line of the block quotation");
	check_ok(MD, "**>The expandable block quotation started\n"
		     ">Expandable block quotation continued\n"
		     ">The last line with the expandability mark||");
	check_ok(MD, ">quote\nafter the quote");
	check_ok(MD, "\\_\\*\\[\\]\\(\\)\\~\\`\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!\\\\");
	check_ok(MD, "**");
	check_ok(MD, "emoji \xF0\x9F\x98\x80 and \\a escaped letters");
}

static void test_md_errors(void **state)
{
	(void)state;
	check_err(MD, "Hello.", 5, "'.' must be escaped as \\.");
	check_err(MD, "Hi!", 2, "'!' must be escaped as \\!");
	check_err(MD, "1+1", 1, "'+' must be escaped as \\+");
	check_err(MD, "a-b", 1, "'-' must be escaped as \\-");
	check_err(MD, "(x)", 0, "'(' must be escaped as \\(");
	check_err(MD, "x]", 1, "']' must be escaped as \\]");
	check_err(MD, "#tag", 0, "'#' must be escaped as \\#");
	check_err(MD, "a|b", 1, "'|' must be escaped as \\|");
	check_err(MD, "a > b", 2, "'>' must be escaped as \\>");
	check_err(MD, "*bold", 0, "unclosed bold '*'");
	check_err(MD, "x *bold* *", 9, "unclosed bold '*'");
	check_err(MD, "snake_case", 5, "unclosed italic '_'");
	check_err(MD, "__u", 0, "unclosed underline '__'");
	check_err(MD, "~s", 0, "unclosed strikethrough '~'");
	check_err(MD, "||s", 0, "unclosed spoiler '||'");
	check_err(MD, "`c", 0, "unclosed code '`'");
	check_err(MD, "```\ncode", 0, "unclosed pre '```'");
	check_err(MD, "[a", 0, "unclosed link '['");
	/* entities must nest: the inner '*' opens a new bold */
	check_err(MD, "*a _b* c_", 8, "unclosed italic '_'");
	check_err(MD, "```\na`b```", 5, "'`' inside pre must be escaped as \\`");
	check_err(MD, "[a](http://x", 3, "unclosed link url");
	check_err(MD, "[a]", 2, "link needs (url) after ']'");
	check_err(MD, "[a [b](c)](d)", 3, "links cannot be nested");
	check_err(MD, "end\\", 3, "'\\' must be escaped as \\\\");
	check_err(MD, "*>q*", 1, "blockquote cannot be inside another entity");
	check_err(MD, ">a *b\nc*", 3, "unclosed bold '*'");
	check_err(MD, "![x](http://x)", 5,
		  "custom emoji needs (tg://emoji?id=...)");
	check_err(MD, "x\xc3", 1, "invalid utf-8");
}

static void test_none_check(void **state)
{
	(void)state;
	check_ok(NONE, "<b> & * _ anything goes");
}

/* ---- escape ---- */

static void escape_eq(enum parse_mode mode, const char *in, const char *want)
{
	struct buf b = BUF_INIT;
	assert_int_equal(buf_puts(&b, "pre:"), 0);
	assert_int_equal(markup_escape(mode, &b, in, strlen(in)), 0);
	assert_string_equal(b.data + 4, want);
	buf_free(&b);
}

static void test_escape(void **state)
{
	(void)state;
	escape_eq(HTML, "a<b>&\"c'", "a&lt;b&gt;&amp;&quot;c'");
	escape_eq(MD, "_*[]()~`>#+-=|{}.!\\",
		  "\\_\\*\\[\\]\\(\\)\\~\\`\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!\\\\");
	escape_eq(MD, "ok\nnew line", "ok\nnew line");
	escape_eq(NONE, "<b>*x*</b>", "<b>*x*</b>");
	escape_eq(HTML, "", "");
}

/* A value full of markup characters, escaped inside literal formatting,
 * is well-formed and shows exactly the value. */
static void test_escape_inside_markup(void **state)
{
	(void)state;
	const char *v = "<i>1+1=2.</i> & [x](y) *z* \\ \"q\" _u_ `c` ||s||";
	struct buf b = BUF_INIT;
	assert_int_equal(buf_puts(&b, "<b>"), 0);
	assert_int_equal(markup_escape(HTML, &b, v, strlen(v)), 0);
	assert_int_equal(buf_puts(&b, "</b>"), 0);
	check_ok(HTML, b.data);
	assert_int_equal(markup_visible_len(HTML, b.data, b.len), strlen(v));
	buf_reset(&b);
	assert_int_equal(buf_puts(&b, "*"), 0);
	assert_int_equal(markup_escape(MD, &b, v, strlen(v)), 0);
	assert_int_equal(buf_puts(&b, "*"), 0);
	check_ok(MD, b.data);
	assert_int_equal(markup_visible_len(MD, b.data, b.len), strlen(v));
	buf_reset(&b);
	/* inside code and inside a link url too */
	assert_int_equal(buf_puts(&b, "`"), 0);
	assert_int_equal(markup_escape(MD, &b, v, strlen(v)), 0);
	assert_int_equal(buf_puts(&b, "` [t]("), 0);
	assert_int_equal(markup_escape(MD, &b, v, strlen(v)), 0);
	assert_int_equal(buf_puts(&b, ")"), 0);
	check_ok(MD, b.data);
	buf_free(&b);
}

/* ---- visible length ---- */

static void test_visible_len(void **state)
{
	(void)state;
	const char *s;
	s = "<b>a&amp;b</b>";
	assert_int_equal(markup_visible_len(HTML, s, strlen(s)), 3);
	s = "&#128512;&#x1F600;&lt;";
	assert_int_equal(markup_visible_len(HTML, s, strlen(s)), 5);
	s = "<a href=\"http://long.example/\">ab</a>\xF0\x9F\x98\x80";
	assert_int_equal(markup_visible_len(HTML, s, strlen(s)), 4);
	s = "<tg-emoji emoji-id=\"1\">\xF0\x9F\x91\x8D</tg-emoji>";
	assert_int_equal(markup_visible_len(HTML, s, strlen(s)), 2);
	s = "*a\\.b*";
	assert_int_equal(markup_visible_len(MD, s, strlen(s)), 3);
	s = "[ab](http://x)";
	assert_int_equal(markup_visible_len(MD, s, strlen(s)), 2);
	s = "```py\nab```";
	assert_int_equal(markup_visible_len(MD, s, strlen(s)), 2);
	s = ">q\n>r||";
	assert_int_equal(markup_visible_len(MD, s, strlen(s)), 3);
	s = "\xF0\x9F\x98\x80" "a\xC3\xA9";
	assert_int_equal(markup_visible_len(NONE, s, strlen(s)), 4);
	assert_int_equal(markup_visible_len(MD, s, strlen(s)), 4);
	assert_int_equal(markup_visible_len(HTML, "", 0), 0);
}

/* ---- split ---- */

#define CHUNKS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_split_plain(void **state)
{
	(void)state;
	/* fits: one chunk, unchanged */
	split_eq(NONE, "short", 10, CHUNKS("short"));
	/* a newline in the last quarter of the window wins over spaces */
	split_eq(NONE, "aaaa bbbb cccc dddd\neeee ffff", 20,
		 CHUNKS("aaaa bbbb cccc dddd", "eeee ffff"));
	/* a blank line wins over a later newline */
	split_eq(NONE, "p1 text here.\n\npara\ntwo\nhere", 16,
		 CHUNKS("p1 text here.", "para\ntwo\nhere"));
	/* spaces */
	split_eq(NONE, "aaaa bbbb cccc", 10, CHUNKS("aaaa bbbb", "cccc"));
	/* no break in the last quarter: cut at the last boundary */
	split_eq(NONE, "abcdefghijkl", 5, CHUNKS("abcde", "fghij", "kl"));
	split_eq(NONE, "ab cdefghijkl", 8, CHUNKS("ab cdefg", "hijkl"));
	/* whitespace-only chunks are dropped */
	split_eq(NONE, "aaaa\n\n\n\n\n\n\nbbbb", 4, CHUNKS("aaaa", "bbbb"));
}

/* Short text without markup takes a path without tokens: it must give
 * exactly what the tokens give. */
static void test_split_short_plain(void **state)
{
	(void)state;
	split_eq(HTML, "  Hello there \n\t\r ", 4096, CHUNKS("  Hello there"));
	split_eq(MD, "Hello there  ", 100, CHUNKS("Hello there"));
	split_eq(NONE, "a < b & c > d\n", 100, CHUNKS("a < b & c > d"));
	char **v = (char **)&v;
	assert_int_equal(markup_split(HTML, " \t\r\n ", 5, 10, &v), 0);
	assert_null(v);
	assert_int_equal(markup_split(MD, " \t ", 3, 10, &v), 0);
	assert_null(v);
	/* with multi-byte characters a text shows fewer units than it has
	 * bytes: a limit between the two takes the token path for the same
	 * text, and both must agree */
	static const char *const texts[] = {
		"caf\xC3\xA9 \xF0\x9F\x98\x80  ",
		"  \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82\t\r",
		"\xF0\x9F\x91\x8B",
		" \xE2\x80\x83 ", /* an em space is not ASCII whitespace: visible */
	};
	const enum parse_mode modes[] = {HTML, MD, NONE};
	for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++)
		for (size_t m = 0; m < 3; m++) {
			size_t len = strlen(texts[t]);
			size_t units = markup_visible_len(modes[m], texts[t], len);
			assert_true(units < len);
			char **fast = NULL, **slow = NULL;
			int nf = markup_split(modes[m], texts[t], len, len, &fast);
			int ns = markup_split(modes[m], texts[t], len, units, &slow);
			assert_int_equal(nf, 1);
			assert_int_equal(ns, 1);
			assert_string_equal(fast[0], slow[0]);
			free(fast[0]);
			free(slow[0]);
			free(fast);
			free(slow);
		}
}

/* What shows as one character is never cut apart: an emoji ZWJ sequence, a
 * flag, a letter and its accent, a skin tone, a keycap. */
static void test_split_keeps_characters_whole(void **state)
{
	(void)state;
	static const char *const whole[] = {
		"\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7", /* family */
		"\xF0\x9F\x87\xBA\xF0\x9F\x87\xA6",                                  /* a flag */
		"e\xCC\x81",                                                              /* e + acute */
		"\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",                                  /* thumbs up, tone */
		"1\xEF\xB8\x8F\xE2\x83\xA3",                                           /* keycap 1 */
	};
	const enum parse_mode modes[] = {HTML, MD, NONE};
	for (size_t w = 0; w < sizeof(whole) / sizeof(whole[0]); w++)
		for (size_t m = 0; m < 3; m++) {
			char text[128];
			snprintf(text, sizeof(text), "ab%s cd", whole[w]);
			size_t units = markup_visible_len(modes[m], whole[w], strlen(whole[w]));
			/* any limit that ends inside the character cuts before it */
			for (size_t limit = 3; limit < 2 + units; limit++) {
				char **v = NULL;
				int n = markup_split(modes[m], text, strlen(text), limit, &v);
				assert_true(n >= 2);
				bool found = false;
				for (int i = 0; i < n; i++) {
					found = found || strstr(v[i], whole[w]);
					free(v[i]);
				}
				free(v);
				if (!found)
					print_error("'%s' cut apart at limit %zu\n", text, limit);
				assert_true(found);
			}
		}
	/* two flags are two characters */
	assert_int_equal(markup_visible_len(NONE, "\xF0\x9F\x87\xBA\xF0\x9F\x87\xA6\xF0\x9F\x87\xBA\xF0\x9F\x87\xA6", 16), 8);
	char **v = NULL;
	assert_int_equal(markup_split(NONE, "\xF0\x9F\x87\xBA\xF0\x9F\x87\xA6\xF0\x9F\x87\xBA\xF0\x9F\x87\xA6", 16, 4, &v), 2);
	assert_string_equal(v[0], "\xF0\x9F\x87\xBA\xF0\x9F\x87\xA6");
	free(v[0]);
	free(v[1]);
	free(v);
}

static void test_split_empty(void **state)
{
	(void)state;
	char **v = (char **)&v;
	assert_int_equal(markup_split(NONE, "", 0, 10, &v), 0);
	assert_null(v);
	v = (char **)&v;
	assert_int_equal(markup_split(HTML, " \n <b> </b>\n", 12, 10, &v), 0);
	assert_null(v);
}

static void test_split_html_reopen(void **state)
{
	(void)state;
	split_eq(HTML, "<b>aaaa bbbb cccc</b>", 10,
		 CHUNKS("<b>aaaa bbbb</b>", "<b>cccc</b>"));
	split_eq(HTML, "x <a href=\"u\"><i>aaaa bbbb</i></a> y", 6,
		 CHUNKS("x <a href=\"u\"><i>aaaa</i></a>",
			"<a href=\"u\"><i>bbbb</i></a> y"));
	/* a chunk never ends with an opening tag: it moves to the next */
	split_eq(HTML, "x <b>abcdef</b>", 2,
		 CHUNKS("x", "<b>ab</b>", "<b>cd</b>", "<b>ef</b>"));
	split_eq(HTML, "<pre><code class=\"language-c\">line1\nline2\n"
		       "line3</code></pre>", 12,
		 CHUNKS("<pre><code class=\"language-c\">line1\nline2"
			"</code></pre>",
			"<pre><code class=\"language-c\">line3</code></pre>"));
	split_eq(HTML, "<blockquote expandable>aaaa bbbb</blockquote>", 5,
		 CHUNKS("<blockquote expandable>aaaa</blockquote>",
			"<blockquote expandable>bbbb</blockquote>"));
}

static void test_split_atomic(void **state)
{
	(void)state;
	/* an entity is never cut */
	split_eq(HTML, "aaaa&amp;bbbb", 5, CHUNKS("aaaa&amp;", "bbbb"));
	split_eq(HTML, "aaaa&amp;bbbb", 4, CHUNKS("aaaa", "&amp;bbb", "b"));
	/* a 4-byte emoji counts 2 and is never cut */
	split_eq(NONE, "aaa\xF0\x9F\x98\x80" "bbb", 4,
		 CHUNKS("aaa", "\xF0\x9F\x98\x80" "bb", "b"));
	split_eq(HTML, "aaa&#128512;b", 4, CHUNKS("aaa", "&#128512;b"));
	/* a MarkdownV2 escape is never cut */
	split_eq(MD, "aaaa\\.bbbb", 5, CHUNKS("aaaa\\.", "bbbb"));
	split_eq(MD, "aaaa\\.bbbb", 4, CHUNKS("aaaa", "\\.bbb", "b"));
	/* custom emoji are one token */
	split_eq(HTML, "a<tg-emoji emoji-id=\"1\">\xF0\x9F\x91\x8D</tg-emoji>",
		 2, CHUNKS("a",
			   "<tg-emoji emoji-id=\"1\">\xF0\x9F\x91\x8D"
			   "</tg-emoji>"));
}

/* A token wider than the limit goes alone into its own chunk (which then
 * exceeds the limit): splitting always makes progress. */
static void test_split_tiny_limit(void **state)
{
	(void)state;
	split_eq(NONE, "\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 1,
		 CHUNKS("\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"));
	split_eq(NONE, "ab", 0, CHUNKS("a", "b"));
	split_eq(HTML, "<b>ab</b>", 1, CHUNKS("<b>a</b>", "<b>b</b>"));
	split_eq(MD, "*\\.\\.*", 1, CHUNKS("*\\.*", "*\\.*"));
}

static void test_split_md_reopen(void **state)
{
	(void)state;
	split_eq(MD, "*aaaa bbbb cccc*", 10,
		 CHUNKS("*aaaa bbbb*", "*cccc*"));
	split_eq(MD, "[aaaa bbbb](http://x.y/) tail", 5,
		 CHUNKS("[aaaa](http://x.y/)", "[bbbb](http://x.y/)", "tail"));
	split_eq(MD, "```py\nline1\nline2\nline3```", 12,
		 CHUNKS("```py\nline1\nline2```", "```py\nline3```"));
	split_eq(MD, "```\nline1 line2```", 6,
		 CHUNKS("```\nline1```", "```\nline2```"));
	/* '_' meeting '_' across the cut is kept apart by an empty bold */
	split_eq(MD, "_aaaa __bbbb cccc___", 10,
		 CHUNKS("_aaaa __bbbb__**_", "_**__cccc___"));
	split_eq(MD, ">aaaa bbbb\n>cccc", 5,
		 CHUNKS(">aaaa", ">bbbb", ">>cccc"));
	split_eq(MD, ">aaaa bbbb||", 5, CHUNKS(">aaaa||", ">bbbb||"));
}

static void test_split_malformed(void **state)
{
	(void)state;
	char **v = (char **)&v;
	assert_int_equal(markup_split(HTML, "<b>x", 4, 10, &v), -EINVAL);
	assert_null(v);
	assert_int_equal(markup_split(MD, "a.b", 3, 10, &v), -EINVAL);
}

/* Every limit from 1 up: chunks are well-formed and within the limit. */
static void test_split_all_limits(void **state)
{
	(void)state;
	static const struct {
		enum parse_mode mode;
		const char *text;
	} cases[] = {
		{PARSE_MODE_HTML,
		 "<b>Hello</b>, <i>dear <u>user</u></i> &amp; friends!\n\n"
		 "<a href=\"https://example.org/?a=1&amp;b=2\">a link with "
		 "words</a> and <code>some code</code>\n<pre><code "
		 "class=\"language-c\">int main(void)\n{\n\treturn 0;\n}"
		 "</code></pre>\n<blockquote>quoted text here</blockquote>"
		 " \xF0\x9F\x98\x80 <tg-spoiler>hidden</tg-spoiler>"},
		{PARSE_MODE_MARKDOWNV2,
		 "*Hello*, _dear __user___ \\& friends\\!\n\n[a link with "
		 "words](https://example.org/?a=1) and `some code`\n"
		 "```c\nint main(void)\n{\n\treturn 0;\n}```\n>quoted text\n"
		 ">more quote\nafter \xF0\x9F\x98\x80 ||hidden *bold*||"
		 " ~x~\n**>exp one\n>exp two||"},
		{PARSE_MODE_NONE,
		 "Plain words and lines\nwith \xF0\x9F\x98\x80 emoji, "
		 "caf\xC3\xA9 and more.\n\nEnd."},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		check_ok(cases[c].mode, cases[c].text);
		size_t vis = markup_visible_len(cases[c].mode, cases[c].text,
						strlen(cases[c].text));
		for (size_t limit = 1; limit <= vis + 1; limit++) {
			int n = split_props(cases[c].mode, cases[c].text,
					    limit, 2);
			assert_true(n >= 1);
			if (limit >= vis)
				assert_int_equal(n, 1);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mode_names),
		cmocka_unit_test(test_html_valid),
		cmocka_unit_test(test_html_errors),
		cmocka_unit_test(test_html_as_telegram_reads_it),
		cmocka_unit_test(test_md_valid),
		cmocka_unit_test(test_md_errors),
		cmocka_unit_test(test_none_check),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_escape_inside_markup),
		cmocka_unit_test(test_visible_len),
		cmocka_unit_test(test_split_plain),
		cmocka_unit_test(test_split_short_plain),
		cmocka_unit_test(test_split_keeps_characters_whole),
		cmocka_unit_test(test_split_empty),
		cmocka_unit_test(test_split_html_reopen),
		cmocka_unit_test(test_split_atomic),
		cmocka_unit_test(test_split_tiny_limit),
		cmocka_unit_test(test_split_md_reopen),
		cmocka_unit_test(test_split_malformed),
		cmocka_unit_test(test_split_all_limits),
	};
	return cmocka_run_group_tests_name("markup", tests, NULL, NULL);
}
