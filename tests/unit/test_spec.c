/* Unit tests of the spec compiler: what valid specs compile to, and which
 * errors (at which line:column) invalid ones produce. The golden tests in
 * tests/specs/ cover many more invalid specs through the real CLI. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "botfactory/spec.h"

static struct spec *compile_ok(const char *src)
{
	struct diags d = {0};
	struct spec *s = NULL;
	int rc = spec_compile("bot", src, strlen(src), &s, &d);
	for (size_t i = 0; i < d.n; i++)
		print_error("%d:%d: %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
	assert_int_equal(rc, 0);
	assert_int_equal(d.n, 0);
	diags_free(&d);
	return s;
}

/* Compiles src, which must fail, and checks the sorted errors are exactly
 * the NULL-terminated list of "line:col: message" strings. */
static void expect_errors(const char *src, ...)
{
	struct diags d = {0};
	struct spec *s = NULL;
	assert_int_equal(spec_compile("bot", src, strlen(src), &s, &d), -EINVAL);
	assert_null(s);
	diags_sort(&d);
	va_list ap;
	va_start(ap, src);
	size_t i = 0;
	for (const char *want; (want = va_arg(ap, const char *)); i++) {
		if (i >= d.n)
			fail_msg("missing error: %s", want);
		char got[1024];
		snprintf(got, sizeof(got), "%d:%d: %s", d.v[i].line, d.v[i].col, d.v[i].msg);
		assert_string_equal(got, want);
	}
	va_end(ap);
	if (i != d.n)
		fail_msg("unexpected extra error: %d:%d: %s", d.v[i].line, d.v[i].col,
			 d.v[i].msg);
	diags_free(&d);
}

static void test_seed_json(void **state)
{
	(void)state;
	struct spec *s = compile_ok(
		"{\"flows\":[{\"entry_cmd\":\"/start\",\"steps\":[{\"reply\":\"Hello\"}]},"
		"{\"entry_cmd\":\"/help\",\"steps\":[{\"reply\":\"Commands: /start, /help\"}]}]}");
	assert_int_equal(s->nflows, 2);
	assert_string_equal(s->flows[0].id, "start");
	assert_string_equal(s->flows[0].cmd, "start");
	assert_string_equal(s->flows[1].cmd, "help");
	assert_int_equal(s->flows[1].steps.n, 1);
	assert_int_equal(s->flows[1].steps.v[0].kind, STEP_REPLY);
	assert_int_equal(s->mode, PARSE_MODE_HTML);
	assert_null(s->token);
	assert_null(s->token_env);
	assert_ptr_equal(spec_flow_by_cmd(s, "HELP"), &s->flows[1]);
	spec_free(s);
}

static void test_issue_example(void **state)
{
	(void)state;
	struct spec *s = compile_ok(
		"name: Shop\n"
		"token: ${SHOP_BOT_TOKEN}\n"
		"flows:\n"
		"  - entry_cmd: /start\n"
		"    description: Say hello\n"
		"    steps: [{reply: \"Hello, {{user.first_name}}!\"}]\n"
		"  - id: order\n"
		"    entry_cmd: /order\n"
		"    steps:\n"
		"      - ask: \"Your name?\"\n"
		"        save: name\n"
		"      - ask: \"How many?\"\n"
		"        save: qty\n"
		"        validate: {type: integer, min: 1, max: 10, error: \"Please send a number from 1 to 10\"}\n"
		"      - reply: \"Thanks {{name}}, {{qty}} items\"\n");
	assert_string_equal(s->name, "Shop");
	assert_string_equal(s->token_env, "SHOP_BOT_TOKEN");
	const struct flow *f = spec_flow(s, "order");
	assert_non_null(f);
	assert_int_equal(f->steps.n, 3);
	const struct step *qty = &f->steps.v[1];
	assert_int_equal(qty->kind, STEP_ASK);
	assert_string_equal(qty->save, "qty");
	assert_string_equal(qty->key, "save:qty");
	assert_int_equal(qty->vtype, VALIDATE_INTEGER);
	assert_true(qty->has_min && qty->has_max);
	assert_true(qty->min == 1.0 && qty->max == 10.0);
	assert_non_null(qty->error);
	assert_string_equal(s->flows[0].description, "Say hello");
	spec_free(s);
}

static void test_literal_token(void **state)
{
	(void)state;
	struct spec *s = compile_ok("token: \"123:FAKE-token_for_tests\"\n"
				    "flows: [{entry_cmd: /a, steps: [{reply: a}]}]\n");
	assert_string_equal(s->token, "123:FAKE-token_for_tests");
	spec_free(s);
	expect_errors("token: not-a-token\nflows: [{entry_cmd: /a, steps: [{reply: a}]}]\n",
		      "1:8: token must look like 123456:ABC-def (from @BotFather) or be ${ENV_VAR}",
		      NULL);
}

static void test_implicit_ids_and_buttons(void **state)
{
	(void)state;
	struct spec *s = compile_ok(
		"flows:\n"
		"  - entry_text: '^hi'\n"
		"    steps:\n"
		"      - reply: Hi\n"
		"        buttons: [[{text: Go, flow: go}, {text: Web, url: 'https://example.org'}],\n"
		"                  [{text: V, value: v}]]\n"
		"  - id: go\n"
		"    steps:\n"
		"      - ask: Pick\n"
		"        choices: [A, {text: B, value: b, goto: go}]\n");
	assert_string_equal(s->flows[0].id, "_flow1");
	const struct keyboard *kb = &s->flows[0].steps.v[0].kb;
	assert_int_equal(kb->nrows, 2);
	assert_int_equal(kb->rows[0].n, 2);
	assert_int_equal(kb->rows[0].v[0].kind, BUTTON_FLOW);
	assert_int_equal(kb->rows[0].v[1].kind, BUTTON_URL);
	assert_string_equal(kb->rows[0].v[1].code, "");
	assert_int_equal(kb->rows[1].v[0].kind, BUTTON_VALUE);
	/* every callback button is indexed by its code */
	assert_int_equal(s->nbuttons, 4);
	char code[BUTTON_CODE_LEN + 1];
	const char *f[] = {"flow", "go"};
	button_code(code, f, 2);
	assert_string_equal(kb->rows[0].v[0].code, code);
	assert_ptr_equal(spec_button(s, code), &kb->rows[0].v[0]);
	const struct step *ask = &s->flows[1].steps.v[0];
	assert_string_equal(ask->key, "step:0");
	assert_string_equal(ask->kb.rows[0].v[0].value, "A");
	assert_string_equal(ask->kb.rows[0].v[1].value, "b");
	assert_string_equal(ask->kb.rows[0].v[1].flow, "go");
	assert_ptr_equal(spec_button(s, ask->kb.rows[0].v[1].code), &ask->kb.rows[0].v[1]);
	assert_null(spec_button(s, "1AAAAAAAAAAAAAAAA"));
	spec_free(s);
}

static void test_error_positions(void **state)
{
	(void)state;
	expect_errors("flows:\n"
		      "  - entry_cmd: /start\n"
		      "    stpes: []\n",
		      "2:5: a flow needs 'steps'",
		      "3:5: unknown key 'stpes' in a flow (did you mean 'steps'?)", NULL);
	expect_errors("flows:\n"
		      "  - entry_cmd: /a\n"
		      "    steps:\n"
		      "      - reply: \"Hi {{who}} and {{user.nick}}\"\n",
		      "4:20: '{{who}}' names a variable that no ask saves and no set assigns",
		      "4:32: unknown placeholder '{{user.nick}}' (see doc/spec.md for user.*, chat.* and bot.*)",
		      NULL);
	expect_errors("flows:\n"
		      "  - entry_cmd: /a\n"
		      "    steps: [{goto: b}, {reply: x}]\n"
		      "  - entry_cmd: /a\n"
		      "    steps: [{reply: y}]\n",
		      "3:20: no flow has id 'b'",
		      "3:24: this step never runs: it follows a goto",
		      "4:5: duplicate command /a (first at line 2)", NULL);
	/* an explicit id that clashes is reported as such */
	expect_errors("flows:\n"
		      "  - {entry_cmd: /a, steps: [{reply: x}]}\n"
		      "  - {id: a, steps: [{reply: y}]}\n",
		      "3:5: duplicate flow id 'a' (first at line 2)", NULL);
}

static void test_positions_inside_scalars(void **state)
{
	(void)state;
	/* exact where the source is the text; the scalar's start otherwise */
	expect_errors("flows:\n"
		      "  - entry_cmd: /a\n"
		      "    steps:\n"
		      "      - reply: 'plain {{x1}}'\n"
		      "      - reply: \"tab\\there {{x2}}\"\n"
		      "      - reply: it's {{x3}}\n"
		      "      - reply: folded text that\n"
		      "          goes on {{x4}}\n",
		      "4:23: '{{x1}}' names a variable that no ask saves and no set assigns",
		      "5:16: '{{x2}}' names a variable that no ask saves and no set assigns",
		      "6:21: '{{x3}}' names a variable that no ask saves and no set assigns",
		      "7:16: '{{x4}}' names a variable that no ask saves and no set assigns", NULL);
}

static void test_big_specs_compile_fast(void **state)
{
	(void)state;
	/* 3,000 flows chained by goto: linear, not cubic (this took 30 s) */
	struct buf b = BUF_INIT;
	assert_int_equal(buf_puts(&b, "flows:\n"), 0);
	for (int i = 0; i < 3000; i++)
		assert_int_equal(buf_printf(&b, "  - {id: f%d, steps: [{goto: f%d}]}\n", i,
					    i + 1 < 3000 ? i + 1 : 0), 0);
	struct diags d = {0};
	struct spec *s = NULL;
	assert_int_equal(spec_compile("bot", b.data, b.len, &s, &d), -EINVAL);
	assert_int_equal(d.n, 3000); /* every flow is on the loop */
	diags_free(&d);
	buf_free(&b);
}

static void test_syntax_error_position(void **state)
{
	(void)state;
	expect_errors("flows:\n  - entry_cmd: /a\n    steps: [{reply: x}\n",
		      "4:1: YAML syntax error: did not find expected ',' or ']' while parsing a flow sequence",
		      NULL);
}

static void test_goto_loop(void **state)
{
	(void)state;
	expect_errors("flows:\n"
		      "  - {id: a, steps: [{reply: x}, {goto: b}]}\n"
		      "  - {id: b, steps: [{goto: a}]}\n"
		      "  - {id: c, steps: [{ask: q}, {goto: c}]}\n",
		      "2:5: flow 'a' loops back to itself through goto without any ask",
		      "3:5: flow 'b' loops back to itself through goto without any ask", NULL);
}

static void test_ask_rules(void **state)
{
	(void)state;
	expect_errors("flows:\n"
		      "  - entry_cmd: /a\n"
		      "    steps:\n"
		      "      - ask: q\n"
		      "        timeout: 5 minutes\n"
		      "        on_timeout: [{ask: again}]\n"
		      "      - ask: r\n"
		      "        on_timeout: [{reply: late}]\n"
		      "        choices: [X, X]\n"
		      "        validate: {type: integer}\n"
		      "fallback: [{ask: what}]\n",
		      "5:18: timeout must be a duration from 1s to 30d like 90s, 10m, 2h or 1h30m, not '5 minutes'",
		      "6:22: ask is not allowed in on_timeout (use goto to a flow that asks)",
		      "8:21: on_timeout needs a 'timeout'",
		      "9:22: duplicate choice value 'X'",
		      "10:26: an ask with choices cannot also have a validate type",
		      "11:12: ask is not allowed in fallback (use goto to a flow that asks)", NULL);
}

static void test_ask_keys_unique(void **state)
{
	(void)state;
	struct spec *s = compile_ok("flows:\n"
				    "  - entry_cmd: /a\n"
				    "    steps: [{ask: q1, save: x}, {ask: q2}, {ask: q3, save: x}, {ask: q4, save: y}]\n");
	const struct step_list *l = &s->flows[0].steps;
	assert_string_equal(l->v[0].key, "save:x");
	assert_string_equal(l->v[1].key, "step:1");
	assert_string_equal(l->v[2].key, "save:x:2");
	assert_string_equal(l->v[3].key, "save:y");
	spec_free(s);
}

static void test_empty_strings(void **state)
{
	(void)state;
	expect_errors("flows:\n"
		      "  - entry_cmd: /a\n"
		      "    description: \"\"\n"
		      "    steps: [{reply: a, buttons: [{text: V, value: ''}]}, {set: {v: '', user: x}}]\n",
		      "3:18: description must not be empty",
		      "4:51: value must not be empty",
		      "4:72: 'user' is not a variable name (letters, digits, _; not args, user, chat or bot)",
		      NULL);
}

static void test_menu_limits(void **state)
{
	(void)state;
	char desc[300];
	memset(desc, 'd', 257);
	desc[257] = '\0';
	char src[1024];
	snprintf(src, sizeof(src),
		 "flows:\n  - entry_cmd: /abcdefghijklmnopqrstuvwxyz0123456\n    steps: [{reply: x}]\n"
		 "  - entry_cmd: /ok\n    description: %s\n    steps: [{reply: x}]\n",
		 desc);
	expect_errors(src,
		      "2:16: entry_cmd must be '/' and 1-32 characters of a-z, 0-9 and _ (as Telegram's command menu requires), not '/abcdefghijklmnopqrstuvwxyz0123456'",
		      "5:18: description has 257 characters; Telegram allows 1-256", NULL);
}

static void test_durations(void **state)
{
	(void)state;
	int64_t ms;
	assert_int_equal(spec_parse_duration("90", &ms), 0);
	assert_int_equal(ms, 90000);
	assert_int_equal(spec_parse_duration("90s", &ms), 0);
	assert_int_equal(ms, 90000);
	assert_int_equal(spec_parse_duration("10m", &ms), 0);
	assert_int_equal(ms, 600000);
	assert_int_equal(spec_parse_duration("1h30m", &ms), 0);
	assert_int_equal(ms, 5400000);
	assert_int_equal(spec_parse_duration("2d", &ms), 0);
	assert_int_equal(ms, 172800000);
	assert_int_equal(spec_parse_duration("", &ms), -EINVAL);
	assert_int_equal(spec_parse_duration("m", &ms), -EINVAL);
	assert_int_equal(spec_parse_duration("10x", &ms), -EINVAL);
	assert_int_equal(spec_parse_duration("1h30", &ms), -EINVAL);
	assert_int_equal(spec_parse_duration("-5s", &ms), -EINVAL);
	assert_int_equal(spec_parse_duration("99999999999s", &ms), -EINVAL);
}

static void test_throttle(void **state)
{
	(void)state;
	struct spec *s = compile_ok("throttle: {bot: 30/s, chat: 1/s, group: 20/m}\n"
				    "flows: [{entry_cmd: /a, steps: [{reply: a}]}]\n");
	assert_int_equal(s->throttle_bot.count, 30);
	assert_int_equal(s->throttle_bot.period_ms, 1000);
	assert_int_equal(s->throttle_group.count, 20);
	assert_int_equal(s->throttle_group.period_ms, 60000);
	spec_free(s);
	s = compile_ok("flows: [{entry_cmd: /a, steps: [{reply: a}]}]\n");
	assert_int_equal(s->throttle_chat.count, 0); /* off by default */
	spec_free(s);
	expect_errors("throttle: {chat: 1/d, grop: 2/s}\nflows: [{entry_cmd: /a, steps: [{reply: a}]}]\n",
		      "1:18: throttle chat must be a rate like 30/s, 20/m or 100/h (1 to 10000 per unit), not '1/d'",
		      "1:23: unknown key 'grop' in throttle (did you mean 'group'?)", NULL);
}

static void test_bad_id(void **state)
{
	(void)state;
	struct diags d = {0};
	struct spec *s = NULL;
	const char *src = "flows: [{entry_cmd: /a, steps: [{reply: a}]}]";
	assert_int_equal(spec_compile("my bot", src, strlen(src), &s, &d), -EINVAL);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.v[0].line, 0);
	diags_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_json),
		cmocka_unit_test(test_issue_example),
		cmocka_unit_test(test_literal_token),
		cmocka_unit_test(test_implicit_ids_and_buttons),
		cmocka_unit_test(test_error_positions),
		cmocka_unit_test(test_positions_inside_scalars),
		cmocka_unit_test(test_big_specs_compile_fast),
		cmocka_unit_test(test_syntax_error_position),
		cmocka_unit_test(test_goto_loop),
		cmocka_unit_test(test_ask_rules),
		cmocka_unit_test(test_ask_keys_unique),
		cmocka_unit_test(test_empty_strings),
		cmocka_unit_test(test_menu_limits),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_bad_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
