/* Unit tests for template: parsing `{{name}}` placeholders (errors with their
 * byte offsets), blank detection, checking literal markup with offsets mapped
 * back to the source, and rendering with values escaped per parse mode. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "botfactory/template.h"

static struct template *parse_ok(const char *src)
{
	struct template *t = NULL;
	size_t off = 0;
	const char *msg = NULL;
	int rc = template_parse(src, strlen(src), &t, &off, &msg);
	if (rc)
		print_error("parse \"%s\": %s at %zu\n", src, msg ? msg : "?",
			    off);
	assert_int_equal(rc, 0);
	assert_non_null(t);
	return t;
}

static void parse_err(const char *src, size_t want_off, const char *want_msg)
{
	struct template *t = (struct template *)&t;
	size_t off = 12345;
	const char *msg = NULL;
	assert_int_equal(template_parse(src, strlen(src), &t, &off, &msg),
			 -EINVAL);
	assert_null(t);
	assert_non_null(msg);
	assert_string_equal(msg, want_msg);
	assert_int_equal(off, want_off);
}

static void part_eq(const struct template *t, size_t i, int is_var,
		    const char *text, size_t off)
{
	assert_true(i < t->nparts);
	assert_int_equal(t->parts[i].is_var, is_var);
	assert_string_equal(t->parts[i].text, text);
	assert_int_equal(t->parts[i].len, strlen(text));
	assert_int_equal(t->parts[i].off, off);
}

static void test_parse_parts(void **state)
{
	(void)state;
	struct template *t = parse_ok("Hello {{name}}!");
	assert_int_equal(t->nparts, 3);
	part_eq(t, 0, 0, "Hello ", 0);
	part_eq(t, 1, 1, "name", 6);
	part_eq(t, 2, 0, "!", 14);
	template_free(t);

	t = parse_ok("{{  user.first_name\t}}{{_x1}}");
	assert_int_equal(t->nparts, 2);
	part_eq(t, 0, 1, "user.first_name", 0);
	part_eq(t, 1, 1, "_x1", 22);
	template_free(t);

	/* single braces and stray closers are literal */
	t = parse_ok("a { b } }} c {");
	assert_int_equal(t->nparts, 1);
	part_eq(t, 0, 0, "a { b } }} c {", 0);
	template_free(t);

	t = parse_ok("");
	assert_int_equal(t->nparts, 0);
	template_free(t);
}

static void test_parse_errors(void **state)
{
	(void)state;
	parse_err("Hi {{name", 3, "unclosed {{");
	parse_err("Hi {{name}", 3, "unclosed {{");
	parse_err("{{", 0, "unclosed {{");
	parse_err("a {{ }} b", 2, "empty placeholder name");
	parse_err("a {{}}", 2, "empty placeholder name");
	parse_err("{{na-me}}", 4, "invalid character in placeholder name");
	parse_err("{{ a b }}", 4, "invalid character in placeholder name");
	parse_err("{{a.b.c}}", 5, "invalid character in placeholder name");
	parse_err("{{1x}}", 2, "placeholder name must start with a letter or '_'");
	parse_err("{{{x}}}", 2, "placeholder name must start with a letter or '_'");
	parse_err("ok {{a.}}", 6, "'.' must be followed by a field name");
	parse_err("{{a.1}}", 3, "'.' must be followed by a field name");
	/* the first error wins, later text is not looked at */
	parse_err("{{ok}} {{b@d}} {{", 10,
		  "invalid character in placeholder name");
}

static void test_blank(void **state)
{
	(void)state;
	struct template *t = parse_ok("");
	assert_true(template_is_blank(t));
	template_free(t);
	t = parse_ok("  \n\t\r\n");
	assert_true(template_is_blank(t));
	template_free(t);
	t = parse_ok(" {{x}} ");
	assert_false(template_is_blank(t));
	template_free(t);
	t = parse_ok(" a ");
	assert_false(template_is_blank(t));
	template_free(t);
}

static void check_markup_err(const char *src, enum parse_mode mode,
			     size_t want_off, const char *want_msg)
{
	struct template *t = parse_ok(src);
	size_t off = 12345;
	const char *msg = NULL;
	assert_int_equal(template_check_markup(t, mode, &off, &msg), -EINVAL);
	assert_non_null(msg);
	assert_string_equal(msg, want_msg);
	assert_int_equal(off, want_off);
	template_free(t);
}

static void check_markup_ok(const char *src, enum parse_mode mode)
{
	struct template *t = parse_ok(src);
	size_t off = 0;
	const char *msg = NULL;
	int rc = template_check_markup(t, mode, &off, &msg);
	if (rc)
		print_error("check \"%s\": %s at %zu\n", src, msg ? msg : "?",
			    off);
	assert_int_equal(rc, 0);
	template_free(t);
}

static void test_check_markup(void **state)
{
	(void)state;
	check_markup_ok("<b>{{name}}</b>, welcome!", PARSE_MODE_HTML);
	check_markup_ok("<a href=\"https://x.org/u/{{user.id}}\">{{x}}</a>",
			PARSE_MODE_HTML);
	check_markup_ok("*{{name}}*, welcome\\!", PARSE_MODE_MARKDOWNV2);
	check_markup_ok("[{{t}}](https://x.org/{{u}})", PARSE_MODE_MARKDOWNV2);
	check_markup_ok("a \\\\{{v}}", PARSE_MODE_MARKDOWNV2);
	/* plain text never fails */
	check_markup_ok("<b> & {{x}} *", PARSE_MODE_NONE);

	/* offsets after placeholders map back into the source */
	check_markup_err("Hi {{name}}, <b>x", PARSE_MODE_HTML, 13,
			 "unclosed <b> tag");
	check_markup_err("{{a}}{{b}} *x", PARSE_MODE_MARKDOWNV2, 11,
			 "unclosed bold '*'");
	check_markup_err("Price: {{p}}.", PARSE_MODE_MARKDOWNV2, 12,
			 "'.' must be escaped as \\.");
	/* an error on the stand-in itself points at the placeholder */
	check_markup_err("<b {{attr}}>x</b>", PARSE_MODE_HTML, 3,
			 "unknown attribute");
	check_markup_err("Q: <{{tag}}>", PARSE_MODE_HTML, 3, "unknown tag");
	/* a backslash would escape the value's first character */
	check_markup_err("a\\{{v}}", PARSE_MODE_MARKDOWNV2, 1,
			 "'\\' before a placeholder must be escaped as \\\\");
	/* a value's ' would end a single-quoted attribute (and could add one) */
	struct template *sq = parse_ok("<a href='https://shop.example/{{u}}'>open</a>");
	size_t off = 0;
	const char *m = NULL;
	assert_int_equal(template_check_markup(sq, PARSE_MODE_HTML, &off, &m), -EINVAL);
	assert_string_equal(m, "a placeholder inside a '...' attribute: quote the attribute with \"...\"");
	template_free(sq);
	struct template *dq = parse_ok("<a href=\"https://shop.example/{{u}}\">open</a> it's {{u}}");
	assert_int_equal(template_check_markup(dq, PARSE_MODE_HTML, &off, &m), 0);
	template_free(dq);
	/* an unset (empty) value must not break the markup either */
	check_markup_err("_a_{{v}}_b_", PARSE_MODE_MARKDOWNV2, 10,
			 "unclosed italic '_'");
}

struct kv {
	const char *k;
	const char *v;
};

static const char *lookup(void *ctx, const char *name)
{
	for (const struct kv *p = ctx; p->k; p++)
		if (strcmp(p->k, name) == 0)
			return p->v;
	return NULL;
}

static void render_eq(const char *src, enum parse_mode mode,
		      template_lookup_fn fn, void *ctx, const char *want)
{
	struct template *t = parse_ok(src);
	struct buf b = BUF_INIT;
	assert_int_equal(buf_puts(&b, ">>"), 0);
	assert_int_equal(template_render(t, mode, fn, ctx, &b), 0);
	assert_string_equal(b.data, want);
	buf_free(&b);
	template_free(t);
}

static void test_render(void **state)
{
	(void)state;
	struct kv vals[] = {
		{"name", "<Tom & \"Jerry\">"},
		{"user.first_name", "Ann"},
		{"sum", "1+1=2. (ok)!"},
		{NULL, NULL},
	};
	render_eq("<b>{{name}}</b>", PARSE_MODE_HTML, lookup, vals,
		  ">><b>&lt;Tom &amp; &quot;Jerry&quot;&gt;</b>");
	render_eq("*{{sum}}*", PARSE_MODE_MARKDOWNV2, lookup, vals,
		  ">>*1\\+1\\=2\\. \\(ok\\)\\!*");
	render_eq("Hi {{ user.first_name }}, {{name}}", PARSE_MODE_NONE,
		  lookup, vals, ">>Hi Ann, <Tom & \"Jerry\">");
	/* unset values and a NULL lookup render as nothing */
	render_eq("<b>{{missing}}</b>", PARSE_MODE_HTML, lookup, vals,
		  ">><b></b>");
	render_eq("a{{x}}b{{y}}", PARSE_MODE_HTML, NULL, NULL, ">>ab");
	render_eq("", PARSE_MODE_HTML, NULL, NULL, ">>");

	/* what render produces passes the markup check */
	struct template *t = parse_ok("<i>{{name}}</i> \xF0\x9F\x98\x80");
	struct buf b = BUF_INIT;
	size_t off;
	const char *msg;
	assert_int_equal(template_render(t, PARSE_MODE_HTML, lookup, vals, &b),
			 0);
	assert_int_equal(markup_check(PARSE_MODE_HTML, b.data, b.len, &off,
				      &msg), 0);
	assert_int_equal(markup_visible_len(PARSE_MODE_HTML, b.data, b.len),
			 strlen("<Tom & \"Jerry\">") + 1 + 2);
	buf_free(&b);
	template_free(t);
}

/* A line break in a value stays inside a MarkdownV2 quotation it is
 * written in, and changes nothing anywhere else. */
static void test_render_newline_in_quote(void **state)
{
	(void)state;
	struct kv vals[] = {{"v", "a\nb.\nc"}, {NULL, NULL}};
	const enum parse_mode md = PARSE_MODE_MARKDOWNV2;
	render_eq(">Note: *{{v}}*", md, lookup, vals, ">>>Note: *a\n>b\\.\n>c*");
	render_eq("**>Note {{v}} end||", md, lookup, vals, ">>**>Note a\n>b\\.\n>c end||");
	/* not in a quotation: as it is (the buffer's ">>" is not this message) */
	render_eq("*{{v}}*", md, lookup, vals, ">>*a\nb\\.\nc*");
	render_eq("\\>no {{v}}", md, lookup, vals, ">>\\>no a\nb\\.\nc");
	render_eq(">q\n{{v}}", md, lookup, vals, ">>>q\na\nb\\.\nc");
	render_eq("<blockquote>{{v}}</blockquote>", PARSE_MODE_HTML, lookup, vals,
		  ">><blockquote>a\nb.\nc</blockquote>");
	/* and the quoted result is well-formed where the plain one was not */
	static const char *const srcs[] = {">Note: *{{v}}*", "**>Note {{v}} end||", ">_{{v}}_ x"};
	for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++) {
		struct template *t = parse_ok(srcs[i]);
		struct buf b = BUF_INIT;
		size_t off;
		const char *msg;
		assert_int_equal(template_render(t, md, lookup, vals, &b), 0);
		assert_int_equal(markup_check(md, b.data, b.len, &off, &msg), 0);
		buf_free(&b);
		template_free(t);
	}
}

/* Inside code '>' is text, not a quotation mark: a value's line break
 * there gains none (the code would show "a" and ">b"). */
static void test_render_newline_in_quoted_code(void **state)
{
	(void)state;
	struct kv vals[] = {{"v", "a\nb"}, {NULL, NULL}};
	render_eq(">`{{v}}`", PARSE_MODE_MARKDOWNV2, lookup, vals, ">>>`a\nb`");
	render_eq(">x ```\n{{v}} c```", PARSE_MODE_MARKDOWNV2, lookup, vals, ">>>x ```\na\nb c```");
	assert_int_equal(markup_visible_len(PARSE_MODE_MARKDOWNV2, ">`a\nb`", 6), 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_parts),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_blank),
		cmocka_unit_test(test_check_markup),
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_render_newline_in_quote),
		cmocka_unit_test(test_render_newline_in_quoted_code),
	};
	return cmocka_run_group_tests_name("template", tests, NULL, NULL);
}
