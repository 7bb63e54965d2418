/* Unit tests of doc: the YAML/JSON tree the spec compiler walks. Positions
 * (1-based lines, columns counting characters), scalar styles, the errors
 * doc_parse reports itself (syntax, duplicate keys, aliases, non-scalar keys,
 * nesting depth, several documents), empty input, JSON, and the helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "botfactory/doc.h"

/* Parses a NUL-terminated text; returns doc_parse's result. */
static int parse(const char *text, struct doc_node **root, struct diags *d)
{
	return doc_parse(text, strlen(text), root, d);
}

/* Parses text that must be valid; returns the root. */
static struct doc_node *parse_ok(const char *text)
{
	struct doc_node *root = NULL;
	struct diags d = {0};
	int rc = parse(text, &root, &d);
	if (rc != 0 && d.n)
		print_error("unexpected error %d:%d: %s\n", d.v[0].line, d.v[0].col,
			    d.v[0].msg);
	assert_int_equal(rc, 0);
	assert_int_equal(d.n, 0);
	diags_free(&d);
	return root;
}

/* Parses text that must fail with exactly one error at line:col whose
 * message contains `needle`. */
static void parse_fails(const char *text, size_t len, int line, int col,
			const char *needle)
{
	struct doc_node *root = (struct doc_node *)(uintptr_t)1; /* poison */
	struct diags d = {0};
	int rc = doc_parse(text, len, &root, &d);
	assert_int_equal(rc, -EINVAL);
	assert_null(root);
	assert_int_equal(d.n, 1);
	if (!strstr(d.v[0].msg, needle))
		fail_msg("message '%s' lacks '%s'", d.v[0].msg, needle);
	assert_int_equal(d.v[0].line, line);
	assert_int_equal(d.v[0].col, col);
	diags_free(&d);
}

static void assert_pos(const struct doc_node *n, int line, int col)
{
	assert_non_null(n);
	assert_int_equal(n->line, line);
	assert_int_equal(n->col, col);
}

static void assert_scalar(const struct doc_node *n, const char *text)
{
	assert_non_null(n);
	assert_int_equal(n->kind, DOC_SCALAR);
	assert_string_equal(n->str, text);
	assert_int_equal(n->len, strlen(text));
}

/* ---- positions and shapes ------------------------------------------------ */

static void test_block_positions(void **state)
{
	(void)state;
	struct doc_node *root = parse_ok("name: Shop\n"
					 "flows:\n"
					 "  - entry_cmd: /start\n"
					 "    steps:\n"
					 "      - reply: \"Hi\"\n");
	assert_int_equal(root->kind, DOC_MAP);
	assert_int_equal(root->n, 2);
	assert_pos(root, 1, 1);
	assert_scalar(root->items[0], "name");
	assert_pos(root->items[0], 1, 1);
	assert_scalar(root->items[1], "Shop");
	assert_pos(root->items[1], 1, 7);

	struct doc_node *flows = doc_map_get(root, "flows");
	assert_non_null(flows);
	assert_int_equal(flows->kind, DOC_SEQ);
	assert_int_equal(flows->n, 1);
	assert_pos(flows, 3, 3);
	struct doc_node *flow = flows->items[0];
	assert_int_equal(flow->kind, DOC_MAP);
	assert_pos(flow, 3, 5);
	assert_pos(doc_map_get(flow, "entry_cmd"), 3, 16);
	struct doc_node *steps = doc_map_get(flow, "steps");
	assert_int_equal(steps->kind, DOC_SEQ);
	assert_pos(steps, 5, 7);
	struct doc_node *reply = doc_map_get(steps->items[0], "reply");
	assert_scalar(reply, "Hi");
	assert_pos(reply, 5, 16); /* the opening quote */
	assert_int_equal(reply->style, '"');
	assert_false(reply->plain);
	doc_free(root);
}

static void test_flow_positions(void **state)
{
	(void)state;
	struct doc_node *root = parse_ok("a: [x, {b: y}, 'z']\n");
	struct doc_node *a = doc_map_get(root, "a");
	assert_int_equal(a->kind, DOC_SEQ);
	assert_int_equal(a->n, 3);
	assert_pos(a, 1, 4);
	assert_pos(a->items[0], 1, 5);
	assert_int_equal(a->items[1]->kind, DOC_MAP);
	assert_pos(a->items[1], 1, 8);
	assert_pos(doc_map_get(a->items[1], "b"), 1, 12);
	assert_pos(a->items[2], 1, 16);
	assert_int_equal(a->items[2]->style, '\'');
	doc_free(root);
}

static void test_columns_count_characters(void **state)
{
	(void)state;
	/* é is 2 bytes, 漢 3, 😀 4: each is one column */
	struct doc_node *root = parse_ok("k: é漢😀 x\n"
					 "z: [éé, b]\n"
					 "é: v\n"
					 "😀😀: \"漢 {{name}}\"\n");
	struct doc_node *k = doc_map_get(root, "k");
	assert_scalar(k, "é漢😀 x");
	assert_int_equal(k->len, 11);
	assert_pos(k, 1, 4);
	struct doc_node *z = doc_map_get(root, "z");
	assert_pos(z->items[0], 2, 5);
	assert_pos(z->items[1], 2, 9);
	assert_pos(doc_map_get(root, "é"), 3, 4);
	assert_pos(doc_map_get(root, "😀😀"), 4, 5);
	doc_free(root);
}

static void test_scalar_styles(void **state)
{
	(void)state;
	struct doc_node *root = parse_ok("p: plain\n"
					 "s: 'single ''q'''\n"
					 "d: \"dq \\t\\u00e9\"\n"
					 "l: |\n"
					 "  line1\n"
					 "  line2\n"
					 "f: >\n"
					 "  folded\n"
					 "  text\n");
	struct doc_node *n = doc_map_get(root, "p");
	assert_int_equal(n->style, 'p');
	assert_true(n->plain);
	n = doc_map_get(root, "s");
	assert_int_equal(n->style, '\'');
	assert_scalar(n, "single 'q'");
	n = doc_map_get(root, "d");
	assert_int_equal(n->style, '"');
	assert_scalar(n, "dq \té");
	n = doc_map_get(root, "l");
	assert_int_equal(n->style, '|');
	assert_false(n->plain);
	assert_scalar(n, "line1\nline2\n");
	assert_pos(n, 4, 4);
	n = doc_map_get(root, "f");
	assert_int_equal(n->style, '>');
	assert_scalar(n, "folded text\n");
	doc_free(root);
}

static void test_nul_in_scalar_keeps_length(void **state)
{
	(void)state;
	struct doc_node *root = parse_ok("{\"a\": \"x\\u0000y\"}");
	struct doc_node *a = doc_map_get(root, "a");
	assert_non_null(a);
	assert_int_equal(a->len, 3);
	assert_int_equal(strlen(a->str), 1);
	assert_memory_equal(a->str, "x\0y", 4);
	doc_free(root);
}

static void test_json_input(void **state)
{
	(void)state;
	struct doc_node *root = parse_ok(
		"{\n"
		"\t\"name\": \"Shop \\u00e9\",\n"
		"\t\"n\": 12,\n"
		"\t\"list\": [1, \"two\", {\"b\": null}, true, []],\n"
		"\t\"empty\": {}\n"
		"}\n");
	assert_int_equal(root->kind, DOC_MAP);
	assert_int_equal(root->n, 4);
	assert_pos(root, 1, 1);
	struct doc_node *name = doc_map_get(root, "name");
	assert_scalar(name, "Shop é");
	assert_pos(name, 2, 10); /* a tab is one column */
	struct doc_node *n = doc_map_get(root, "n");
	assert_scalar(n, "12");
	assert_true(n->plain);
	struct doc_node *list = doc_map_get(root, "list");
	assert_int_equal(list->kind, DOC_SEQ);
	assert_int_equal(list->n, 5);
	assert_pos(list, 4, 10);
	assert_true(list->items[0]->plain);
	assert_false(list->items[1]->plain);
	assert_int_equal(list->items[2]->kind, DOC_MAP);
	assert_true(doc_is_null(doc_map_get(list->items[2], "b")));
	assert_scalar(list->items[3], "true");
	assert_int_equal(list->items[4]->kind, DOC_SEQ);
	assert_int_equal(list->items[4]->n, 0);
	struct doc_node *empty = doc_map_get(root, "empty");
	assert_int_equal(empty->kind, DOC_MAP);
	assert_int_equal(empty->n, 0);
	doc_free(root);
}

static void test_json_one_line(void **state)
{
	(void)state;
	const char *seed = "{\"flows\":[{\"entry_cmd\":\"/start\",\"steps\":"
			   "[{\"reply\":\"Hello\"}]}]}";
	struct doc_node *root = parse_ok(seed);
	struct doc_node *flows = doc_map_get(root, "flows");
	assert_non_null(flows);
	assert_pos(flows, 1, 10);
	struct doc_node *cmd = doc_map_get(flows->items[0], "entry_cmd");
	assert_scalar(cmd, "/start");
	assert_pos(cmd, 1, 24);
	doc_free(root);
}

/* ---- empty input ------------------------------------------------------- */

static void test_empty_inputs(void **state)
{
	(void)state;
	static const char *const empties[] = {
		"", "\n", "   \n\n", "# only a comment\n", "# a\n\n# b", "\xef\xbb\xbf",
	};
	for (size_t i = 0; i < sizeof(empties) / sizeof(*empties); i++) {
		struct doc_node *root = (struct doc_node *)(uintptr_t)1;
		struct diags d = {0};
		assert_int_equal(parse(empties[i], &root, &d), 0);
		assert_null(root);
		assert_int_equal(d.n, 0);
		diags_free(&d);
	}
	/* len 0 means empty, whatever the buffer holds */
	struct doc_node *root = (struct doc_node *)(uintptr_t)1;
	struct diags d = {0};
	assert_int_equal(doc_parse("flows: []", 0, &root, &d), 0);
	assert_null(root);
	assert_int_equal(d.n, 0);
}

static void test_explicit_empty_document(void **state)
{
	(void)state;
	/* `---` alone is a document holding one empty (null) scalar */
	struct doc_node *root = parse_ok("---\n");
	assert_non_null(root);
	assert_int_equal(root->kind, DOC_SCALAR);
	assert_true(doc_is_null(root));
	doc_free(root);
	/* explicit start and end markers around one document are fine */
	root = parse_ok("---\na: 1\n...\n");
	assert_int_equal(root->kind, DOC_MAP);
	doc_free(root);
}

/* ---- errors ------------------------------------------------------------ */

static void test_syntax_error(void **state)
{
	(void)state;
	const char *text = "a: [1, 2\nb: 3\n";
	parse_fails(text, strlen(text), 2, 2, "YAML syntax error: ");
	text = "a: b: c\n";
	parse_fails(text, strlen(text), 1, 5, "YAML syntax error: ");
	text = "a: \"unclosed\n";
	parse_fails(text, strlen(text), 2, 1, "YAML syntax error: ");
}

static void test_syntax_error_inside_mapping(void **state)
{
	(void)state;
	/* an error several mappings deep frees every partial mapping */
	const char *text = "flows:\n"
			   "  - entry_cmd: /start\n"
			   "    steps: [{reply: \"Hello\"}\n"
			   "  - entry_cmd: /help\n";
	parse_fails(text, strlen(text), 4, 3, "YAML syntax error: ");
	text = "a:\n  b:\n    c: 1\n\td: 2\n";
	parse_fails(text, strlen(text), 4, 1, "YAML syntax error: ");
}

static void test_tab_indentation(void **state)
{
	(void)state;
	const char *text = "flows:\n\t- reply: x\n";
	parse_fails(text, strlen(text), 2, 1, "YAML syntax error: ");
}

/* The input is (data, len): no NUL after it. A syntax error at the very
 * end once made the tab hint read one byte past it (ASan shows it). */
static void test_error_at_the_end_reads_nothing_after_it(void **state)
{
	(void)state;
	static const char text[] = "#\r    @\nx";
	size_t len = sizeof(text) - 1;
	char *exact = malloc(len);
	assert_non_null(exact);
	memcpy(exact, text, len);
	struct diags d = {0};
	struct doc_node *root = NULL;
	assert_int_equal(doc_parse(exact, len, &root, &d), -EINVAL);
	assert_null(root);
	assert_true(d.n >= 1);
	diags_free(&d);
	free(exact);
}

static void test_duplicate_keys(void **state)
{
	(void)state;
	const char *text = "a: 1\nb: 2\na: 3\n";
	parse_fails(text, strlen(text), 3, 1, "duplicate key 'a' (first at line 1)");
	/* nested, and in flow style */
	text = "flows:\n  - {entry_cmd: /a, steps: [], steps: []}\n";
	parse_fails(text, strlen(text), 2, 32, "duplicate key 'steps' (first at line 2)");
	text = "{\"x\": 1, \"x\": 2}";
	parse_fails(text, strlen(text), 1, 10, "duplicate key 'x'");
}

static void test_every_duplicate_key_reported(void **state)
{
	(void)state;
	/* duplicate keys do not stop parsing: each one is reported */
	struct doc_node *root = (struct doc_node *)(uintptr_t)1;
	struct diags d = {0};
	assert_int_equal(parse("a: 1\na: 2\nb: [1]\nb: [2]\n", &root, &d), -EINVAL);
	assert_null(root);
	assert_int_equal(d.n, 2);
	assert_int_equal(d.v[0].line, 2);
	assert_int_equal(d.v[1].line, 4);
	diags_free(&d);
}

static void test_same_key_in_sibling_mappings(void **state)
{
	(void)state;
	/* a key may repeat in different mappings */
	struct doc_node *root = parse_ok("x: {a: 1}\ny: {a: 2}\nz: [{a: 1}, {a: 1}]\n");
	assert_int_equal(root->n, 3);
	doc_free(root);
}

static void test_alias_rejected(void **state)
{
	(void)state;
	const char *text = "a: &x 1\nb: *x\n";
	parse_fails(text, strlen(text), 2, 4, "aliases");
	text = "- &anchor [1, 2]\n- *anchor\n";
	parse_fails(text, strlen(text), 2, 3, "aliases");
	/* an anchor alone is harmless */
	struct doc_node *root = parse_ok("a: &x 1\nb: 2\n");
	assert_scalar(doc_map_get(root, "a"), "1");
	doc_free(root);
}

static void test_non_scalar_key(void **state)
{
	(void)state;
	const char *text = "? [a, b]\n: value\n";
	parse_fails(text, strlen(text), 1, 3, "mapping keys must be plain strings, not a list");
	text = "x: 1\n? {k: v}\n: value\n";
	parse_fails(text, strlen(text), 2, 3, "not a mapping");
	text = "{[1]: 2}";
	parse_fails(text, strlen(text), 1, 2, "not a list");
}

static void test_multiple_documents(void **state)
{
	(void)state;
	const char *text = "a: 1\n---\nb: 2\n";
	parse_fails(text, strlen(text), 2, 1, "only one YAML document");
	text = "---\na: 1\n...\n---\nb: 2\n";
	parse_fails(text, strlen(text), 4, 1, "only one YAML document");
}

/* Builds `depth` nested flow lists: [[[...]]]. */
static char *nested_lists(size_t depth)
{
	char *s = malloc(2 * depth + 1);
	assert_non_null(s);
	memset(s, '[', depth);
	memset(s + depth, ']', depth);
	s[2 * depth] = '\0';
	return s;
}

static void test_depth_limit(void **state)
{
	(void)state;
	/* DOC_MAX_DEPTH levels are fine */
	char *s = nested_lists(DOC_MAX_DEPTH);
	struct doc_node *root = parse_ok(s);
	assert_int_equal(root->kind, DOC_SEQ);
	doc_free(root);
	free(s);

	/* 100 levels are an error, not a crash */
	s = nested_lists(100);
	struct diags d = {0};
	root = (struct doc_node *)(uintptr_t)1;
	assert_int_equal(parse(s, &root, &d), -EINVAL);
	assert_null(root);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.v[0].msg, "nesting deeper than"));
	assert_int_equal(d.v[0].line, 1);
	diags_free(&d);
	free(s);

	/* so are 100,000 unclosed ones */
	s = malloc(100001);
	assert_non_null(s);
	memset(s, '[', 100000);
	s[100000] = '\0';
	root = (struct doc_node *)(uintptr_t)1;
	assert_int_equal(parse(s, &root, &d), -EINVAL);
	assert_null(root);
	assert_true(d.n >= 1);
	diags_free(&d);
	free(s);
}

static void test_depth_limit_block_mappings(void **state)
{
	(void)state;
	/* 100 nested block mappings: a: / b: / ... each indented one more */
	char *s = malloc(100 * 104);
	assert_non_null(s);
	size_t len = 0;
	for (int i = 0; i < 100; i++) {
		memset(s + len, ' ', (size_t)i);
		len += (size_t)i;
		len += (size_t)sprintf(s + len, "k%d:\n", i);
	}
	struct doc_node *root = (struct doc_node *)(uintptr_t)1;
	struct diags d = {0};
	assert_int_equal(doc_parse(s, len, &root, &d), -EINVAL);
	assert_null(root);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.v[0].msg, "nesting deeper than"));
	diags_free(&d);
	free(s);
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	/* a lone 0xff on line 3: an error on that line, not a crash */
	const char text[] = "a: 1\nb: caf\xc3\xa9\nc: \"x \xff\"\n";
	struct doc_node *root = (struct doc_node *)(uintptr_t)1;
	struct diags d = {0};
	assert_int_equal(doc_parse(text, sizeof(text) - 1, &root, &d), -EINVAL);
	assert_null(root);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.v[0].msg, "UTF-8"));
	assert_int_equal(d.v[0].line, 3);
	assert_int_equal(d.v[0].col, 7);
	diags_free(&d);
}

static void test_raw_nul_byte(void **state)
{
	(void)state;
	const char text[] = "a: x\0y\n";
	struct doc_node *root = (struct doc_node *)(uintptr_t)1;
	struct diags d = {0};
	assert_int_equal(doc_parse(text, sizeof(text) - 1, &root, &d), -EINVAL);
	assert_null(root);
	assert_int_equal(d.n, 1);
	diags_free(&d);
}

static void test_errors_append_to_existing_diags(void **state)
{
	(void)state;
	struct diags d = {0};
	assert_int_equal(diags_add(&d, 7, 1, "earlier %s", "error"), 0);
	struct doc_node *root = NULL;
	assert_int_equal(parse("a: 1\na: 2\n", &root, &d), -EINVAL);
	assert_int_equal(d.n, 2);
	assert_string_equal(d.v[0].msg, "earlier error");
	assert_int_equal(d.v[1].line, 2);
	diags_free(&d);
	assert_null(d.v);
	assert_int_equal(d.n, 0);
}

/* ---- helpers ------------------------------------------------------------- */

static void test_doc_is_null(void **state)
{
	(void)state;
	struct doc_node *root = parse_ok("a: ~\nb: null\nc: Null\nd: NULL\ne:\n"
					 "f: ''\ng: \"null\"\nh: nULL\ni: 0\n"
					 "j: []\nk: {}\nl: \"\"\nm: none\n");
	static const char *const nulls[] = {"a", "b", "c", "d", "e"};
	static const char *const not_nulls[] = {"f", "g", "h", "i", "j", "k", "l", "m"};
	for (size_t i = 0; i < sizeof(nulls) / sizeof(*nulls); i++) {
		struct doc_node *n = doc_map_get(root, nulls[i]);
		assert_non_null(n);
		if (!doc_is_null(n))
			fail_msg("'%s' should be null", nulls[i]);
		assert_string_equal(doc_kind_name(n), "empty");
	}
	for (size_t i = 0; i < sizeof(not_nulls) / sizeof(*not_nulls); i++) {
		struct doc_node *n = doc_map_get(root, not_nulls[i]);
		assert_non_null(n);
		if (doc_is_null(n))
			fail_msg("'%s' should not be null", not_nulls[i]);
	}
	assert_false(doc_is_null(NULL));
	doc_free(root);
}

static void test_map_get_and_kind_name(void **state)
{
	(void)state;
	struct doc_node *root = parse_ok("s: x\nl: [1]\nm: {a: b}\n");
	assert_null(doc_map_get(root, "missing"));
	assert_null(doc_map_get(root, "S"));
	assert_null(doc_map_get(NULL, "s"));
	struct doc_node *l = doc_map_get(root, "l");
	assert_null(doc_map_get(l, "s")); /* not a mapping */
	assert_string_equal(doc_kind_name(doc_map_get(root, "s")), "a string");
	assert_string_equal(doc_kind_name(l), "a list");
	assert_string_equal(doc_kind_name(doc_map_get(root, "m")), "a mapping");
	assert_string_equal(doc_kind_name(NULL), "nothing");
	assert_string_equal(doc_kind_name(root->items[1]), "a string"); /* key */
	doc_free(root);
	doc_free(NULL);
}

static void test_diags_sort_is_stable(void **state)
{
	(void)state;
	struct diags d = {0};
	assert_int_equal(diags_add(&d, 3, 1, "c"), 0);
	assert_int_equal(diags_add(&d, 1, 5, "b1"), 0);
	assert_int_equal(diags_add(&d, 0, 0, "no position"), 0);
	assert_int_equal(diags_add(&d, 1, 5, "b2"), 0);
	assert_int_equal(diags_add(&d, 1, 2, "a"), 0);
	for (int i = 0; i < 20; i++) /* grows past the first capacity */
		assert_int_equal(diags_add(&d, 9, 20 - i, "z%d", i), 0);
	diags_sort(&d);
	assert_string_equal(d.v[0].msg, "no position");
	assert_string_equal(d.v[1].msg, "a");
	assert_string_equal(d.v[2].msg, "b1");
	assert_string_equal(d.v[3].msg, "b2");
	assert_string_equal(d.v[4].msg, "c");
	assert_string_equal(d.v[5].msg, "z19");
	assert_string_equal(d.v[24].msg, "z0");
	diags_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_positions),
		cmocka_unit_test(test_flow_positions),
		cmocka_unit_test(test_columns_count_characters),
		cmocka_unit_test(test_scalar_styles),
		cmocka_unit_test(test_nul_in_scalar_keeps_length),
		cmocka_unit_test(test_json_input),
		cmocka_unit_test(test_json_one_line),
		cmocka_unit_test(test_empty_inputs),
		cmocka_unit_test(test_explicit_empty_document),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_syntax_error_inside_mapping),
		cmocka_unit_test(test_tab_indentation),
		cmocka_unit_test(test_error_at_the_end_reads_nothing_after_it),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_every_duplicate_key_reported),
		cmocka_unit_test(test_same_key_in_sibling_mappings),
		cmocka_unit_test(test_alias_rejected),
		cmocka_unit_test(test_non_scalar_key),
		cmocka_unit_test(test_multiple_documents),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_depth_limit_block_mappings),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_raw_nul_byte),
		cmocka_unit_test(test_errors_append_to_existing_diags),
		cmocka_unit_test(test_doc_is_null),
		cmocka_unit_test(test_map_get_and_kind_name),
		cmocka_unit_test(test_diags_sort_is_stable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
