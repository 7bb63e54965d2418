/* Unit tests of the engine: what transcripts cannot show (the Bot API JSON
 * of actions, ForceReply in groups, splitting long output, purity) and what
 * needs two versions of a spec (stale buttons, states surviving a reload).
 * The conversation rules themselves are also exercised end to end by the
 * transcripts in tests/transcripts/. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "botfactory/engine.h"

#define NOW 1767225600000LL

static struct spec *compile(const char *src)
{
	struct diags d = {0};
	struct spec *s = NULL;
	int rc = spec_compile("bot", src, strlen(src), &s, &d);
	for (size_t i = 0; i < d.n; i++)
		print_error("%d:%d: %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
	diags_free(&d);
	assert_int_equal(rc, 0);
	return s;
}

static const struct engine_ctx ctx = {"test_bot"};

static struct event msg(const char *text)
{
	struct event ev = {0};
	ev.kind = EVENT_MESSAGE;
	ev.now_ms = NOW;
	ev.chat_id = 42;
	ev.user_id = 42;
	ev.first_name = "Ann";
	ev.message_id = 7;
	ev.text = text;
	return ev;
}

static struct event press(const char *data)
{
	struct event ev = msg(NULL);
	ev.kind = EVENT_CALLBACK;
	ev.callback_id = "cb1";
	ev.callback_data = data;
	return ev;
}

/* Runs ev on *st (replacing it with the new state); returns the actions. */
static struct actions run(const struct spec *s, struct convo *st, struct event ev)
{
	struct convo next;
	struct actions a = {0};
	assert_int_equal(engine_step(s, &ctx, st, &ev, &next, &a), 0);
	convo_clear(st);
	*st = next;
	return a;
}

static char *json_of(const struct action *a, const char **method)
{
	char *j = NULL;
	assert_int_equal(engine_action_json(a, true, method, &j), 0);
	return j;
}

static const char *quiz_spec =
	"flows:\n"
	"  - entry_cmd: /quiz\n"
	"    steps:\n"
	"      - ask: '2+2?'\n"
	"        save: a\n"
	"        timeout: 30s\n"
	"        on_timeout: [{reply: 'Too slow, {{user.first_name}}!'}]\n"
	"      - reply: 'You said {{a}}.'\n"
	"fallback: [{reply: 'Unknown: {{args}}'}]\n";

/* What the daemon delivers when a deadline falls due: no names of its own. */
static struct event due_at(int64_t now)
{
	struct event ev = {0};
	ev.kind = EVENT_TIMEOUT;
	ev.now_ms = now;
	ev.chat_id = 42;
	ev.user_id = 42;
	return ev;
}

/* A timed question keeps the user's names for its on_timeout, also across
 * an input that only the fallback handles (the question stays open). */
static void test_fallback_keeps_the_names_of_a_timed_question(void **state)
{
	(void)state;
	struct spec *s = compile(quiz_spec);
	struct convo st = CONVO_INIT;
	struct actions a = run(s, &st, msg("/quiz"));
	actions_free(&a);
	struct event ev = msg("/help");
	ev.now_ms = NOW + 1000;
	a = run(s, &st, ev);
	assert_string_equal(a.v[0].text, "Unknown: /help");
	actions_free(&a);
	assert_non_null(st.flow);
	a = run(s, &st, due_at(NOW + 30000));
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].text, "Too slow, Ann!");
	actions_free(&a);
	convo_clear(&st);
	spec_free(s);
}

/* An answer that arrives after the deadline (the daemon was down, its timer
 * behind) is not taken: the question timed out first, then the text is
 * ordinary input. */
static void test_an_answer_after_the_deadline_is_too_late(void **state)
{
	(void)state;
	struct spec *s = compile(quiz_spec);
	struct convo st = CONVO_INIT;
	struct actions a = run(s, &st, msg("/quiz"));
	actions_free(&a);
	struct event ev = msg("4");
	ev.now_ms = NOW + 3600 * 1000;
	a = run(s, &st, ev);
	assert_true(a.n >= 1);
	assert_string_equal(a.v[0].text, "Too slow, Ann!");
	for (size_t i = 0; i < a.n; i++)
		assert_string_not_equal(a.v[i].text, "You said 4.");
	assert_null(convo_get(&st, "a"));
	assert_null(st.flow);
	actions_free(&a);
	/* the timeout the daemon delivers later finds nothing to do */
	a = run(s, &st, due_at(NOW + 3600 * 1000 + 5));
	assert_int_equal(a.n, 0);
	actions_free(&a);
	/* typed in time, handled late (the daemon was down): still an answer */
	a = run(s, &st, msg("/quiz"));
	actions_free(&a);
	ev = msg("5");
	ev.sent_ms = NOW + 29000;
	ev.now_ms = NOW + 3600 * 1000;
	a = run(s, &st, ev);
	assert_string_equal(a.v[0].text, "You said 5.");
	actions_free(&a);
	/* a date after now (the local clock behind Telegram's) counts as now */
	a = run(s, &st, msg("/quiz"));
	actions_free(&a);
	ev = msg("6");
	ev.sent_ms = NOW + 40000;
	ev.now_ms = NOW + 20000;
	a = run(s, &st, ev);
	assert_string_equal(a.v[0].text, "You said 6.");
	actions_free(&a);
	/* just in time still counts */
	a = run(s, &st, msg("/quiz"));
	actions_free(&a);
	ev = msg("4");
	ev.now_ms = NOW + 29999;
	a = run(s, &st, ev);
	assert_string_equal(a.v[0].text, "You said 4.");
	actions_free(&a);
	convo_clear(&st);
	spec_free(s);
}

/* The daemon keeps an outbox row's method as engine_method's pointer: every
 * call the engine writes must be known to it, and nothing else. */
static void test_every_method_is_known(void **state)
{
	(void)state;
	char text[] = "x", id[] = "1";
	struct action acts[2] = {{0}, {0}};
	acts[0].kind = ACTION_SEND;
	acts[0].text = text;
	acts[1].kind = ACTION_ANSWER_CALLBACK;
	acts[1].callback_id = id;
	for (size_t i = 0; i < 2; i++) {
		const char *m = NULL;
		char *j = json_of(&acts[i], &m);
		assert_ptr_equal(engine_method(m), m);
		char copy[64];
		snprintf(copy, sizeof(copy), "%s", m);
		assert_ptr_equal(engine_method(copy), m);
		free(j);
	}
	assert_null(engine_method("sendSticker"));
	assert_null(engine_method(""));
}

static void test_send_json_with_keyboard(void **state)
{
	(void)state;
	struct spec *s = compile(
		"flows:\n"
		"  - entry_cmd: /start\n"
		"    steps:\n"
		"      - reply: \"<b>Hi</b> {{user.first_name}}\"\n"
		"        buttons: [[{text: Go, flow: start}, {text: Site, url: 'https://example.org'}]]\n");
	struct convo st = CONVO_INIT;
	struct actions a = run(s, &st, msg("/start"));
	assert_int_equal(a.n, 1);
	const char *method;
	char *j = json_of(&a.v[0], &method);
	assert_string_equal(method, "sendMessage");
	char code[BUTTON_CODE_LEN + 1];
	const char *f[] = {"flow", "start"};
	button_code(code, f, 2);
	char want[512];
	snprintf(want, sizeof(want),
		 "{\"chat_id\":42,\"text\":\"<b>Hi</b> Ann\",\"parse_mode\":\"HTML\","
		 "\"reply_markup\":{\"inline_keyboard\":[[{\"text\":\"Go\",\"callback_data\":\"%s\"},"
		 "{\"text\":\"Site\",\"url\":\"https://example.org\"}]]}}",
		 code);
	assert_string_equal(j, want);
	free(j);
	actions_free(&a);
	convo_clear(&st);
	spec_free(s);
}

static void test_group_ask_uses_force_reply(void **state)
{
	(void)state;
	struct spec *s = compile("flows:\n"
				 "  - entry_cmd: /name\n"
				 "    steps: [{ask: Name?, save: n}, {reply: 'Hi {{n}}'}]\n");
	struct convo st = CONVO_INIT;
	struct event ev = msg("/name@test_bot");
	ev.chat_kind = CHAT_GROUP;
	ev.chat_id = -100123;
	struct actions a = run(s, &st, ev);
	assert_int_equal(a.n, 1);
	assert_true(a.v[0].force_reply);
	assert_int_equal(a.v[0].reply_to, 7);
	const char *method;
	char *j = json_of(&a.v[0], &method);
	assert_string_equal(j, "{\"chat_id\":-100123,\"text\":\"Name?\",\"parse_mode\":\"HTML\","
			       "\"reply_parameters\":{\"message_id\":7,\"allow_sending_without_reply\":true},"
			       "\"reply_markup\":{\"force_reply\":true,\"selective\":true}}");
	free(j);
	/* reached by a button press there is no user message to reply to:
	 * ForceReply then cannot be selective (it would target nobody) */
	convo_clear(&st);
	char code[BUTTON_CODE_LEN + 1];
	const char *f[] = {"flow", "name"};
	button_code(code, f, 2);
	assert_null(spec_button(s, code)); /* no button in this spec... */
	struct spec *s2 = compile("flows:\n"
				  "  - {entry_cmd: /go, steps: [{reply: go, buttons: [{text: N, flow: name}]}]}\n"
				  "  - id: name\n"
				  "    steps: [{ask: Name?, save: n}]\n");
	struct event pr = press(code);
	pr.chat_kind = CHAT_GROUP;
	actions_free(&a);
	a = run(s2, &st, pr);
	assert_int_equal(a.n, 2);
	assert_true(a.v[1].force_reply);
	assert_int_equal(a.v[1].reply_to, 0);
	j = json_of(&a.v[1], &method);
	assert_string_equal(j, "{\"chat_id\":42,\"text\":\"Name?\",\"parse_mode\":\"HTML\","
			       "\"reply_markup\":{\"force_reply\":true}}");
	free(j);
	actions_free(&a);
	spec_free(s2);
	/* the same ask in a private chat needs no ForceReply */
	convo_clear(&st);
	a = run(s, &st, msg("/name"));
	assert_false(a.v[0].force_reply);
	assert_int_equal(a.v[0].reply_to, 0);
	actions_free(&a);
	convo_clear(&st);
	spec_free(s);
}

static void test_callback_answered_first(void **state)
{
	(void)state;
	struct spec *s = compile("flows:\n"
				 "  - entry_cmd: /a\n"
				 "    steps: [{reply: A, buttons: [{text: B, flow: b}]}]\n"
				 "  - id: b\n"
				 "    steps: [{reply: B1}, {reply: B2}]\n");
	struct convo st = CONVO_INIT;
	const char *data = s->flows[0].steps.v[0].kb.rows[0].v[0].code;
	struct actions a = run(s, &st, press(data));
	assert_int_equal(a.n, 3);
	assert_int_equal(a.v[0].kind, ACTION_ANSWER_CALLBACK);
	assert_null(a.v[0].text);
	const char *method;
	char *j = json_of(&a.v[0], &method);
	assert_string_equal(method, "answerCallbackQuery");
	assert_string_equal(j, "{\"callback_query_id\":\"cb1\"}");
	free(j);
	assert_string_equal(a.v[1].text, "B1");
	assert_string_equal(a.v[2].text, "B2");
	actions_free(&a);
	convo_clear(&st);
	spec_free(s);
}

static void test_stale_buttons_across_versions(void **state)
{
	(void)state;
	const char *v1 = "flows:\n"
			 "  - entry_cmd: /a\n"
			 "    steps: [{reply: A, buttons: [[{text: B, flow: b}, {text: C, flow: c}]]}]\n"
			 "  - {id: b, steps: [{reply: B}]}\n"
			 "  - {id: c, steps: [{reply: C}]}\n";
	const char *v2 = "flows:\n"
			 "  - entry_cmd: /a\n"
			 "    steps: [{reply: A2, buttons: [{text: B, flow: b}]}]\n"
			 "  - {id: b, steps: [{reply: B again}]}\n";
	struct spec *s1 = compile(v1), *s2 = compile(v2);
	char to_b[BUTTON_CODE_LEN + 1], to_c[BUTTON_CODE_LEN + 1];
	strcpy(to_b, s1->flows[0].steps.v[0].kb.rows[0].v[0].code);
	strcpy(to_c, s1->flows[0].steps.v[0].kb.rows[0].v[1].code);
	struct convo st = CONVO_INIT;
	/* a v1 button whose meaning still exists in v2 keeps working */
	struct actions a = run(s2, &st, press(to_b));
	assert_int_equal(a.n, 2);
	assert_string_equal(a.v[1].text, "B again");
	actions_free(&a);
	/* a v1 button whose flow is gone is stale: only a notice */
	a = run(s2, &st, press(to_c));
	assert_int_equal(a.n, 1);
	assert_int_equal(a.v[0].kind, ACTION_ANSWER_CALLBACK);
	assert_string_equal(a.v[0].text, "This button is no longer available.");
	actions_free(&a);
	/* data from an older encoding or from elsewhere: stale as well */
	a = run(s2, &st, press("0AAAAAAAAAAAAAAAA"));
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].text, "This button is no longer available.");
	actions_free(&a);
	a = run(s2, &st, press("legacy:order"));
	assert_int_equal(a.n, 1);
	actions_free(&a);
	convo_clear(&st);
	spec_free(s1);
	spec_free(s2);
}

static void test_state_survives_reload(void **state)
{
	(void)state;
	const char *v1 = "flows:\n"
			 "  - entry_cmd: /o\n"
			 "    steps: [{ask: Name?, save: name}, {ask: Qty?, save: qty}, {reply: '{{name}} {{qty}}'}]\n";
	/* v2 inserts a step before the pending ask: the state follows its key */
	const char *v2 = "flows:\n"
			 "  - entry_cmd: /o\n"
			 "    steps: [{reply: New intro}, {ask: Name?, save: name}, {ask: How many?, save: qty},\n"
			 "            {reply: 'v2 {{name}} {{qty}}'}]\n";
	/* v3 no longer has that ask: the conversation resets */
	const char *v3 = "flows:\n"
			 "  - entry_cmd: /o\n"
			 "    steps: [{ask: Name?, save: name}, {reply: 'v3 {{name}}'}]\n"
			 "fallback: [{reply: 'fallback {{args}}'}]\n";
	struct spec *s1 = compile(v1), *s2 = compile(v2), *s3 = compile(v3);
	struct convo st = CONVO_INIT;
	struct actions a = run(s1, &st, msg("/o"));
	actions_free(&a);
	a = run(s1, &st, msg("Bob"));
	assert_string_equal(a.v[0].text, "Qty?");
	assert_string_equal(st.ask, "save:qty");
	assert_int_equal(st.step, 1);
	actions_free(&a);
	struct convo saved;
	assert_int_equal(convo_copy(&saved, &st), 0);

	a = run(s2, &st, msg("3"));
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].text, "v2 Bob 3");
	assert_null(st.flow);
	actions_free(&a);

	convo_clear(&st);
	st = saved;
	a = run(s3, &st, msg("3"));
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].text, "fallback 3");
	assert_null(st.flow);
	assert_string_equal(convo_get(&st, "name"), "Bob");
	actions_free(&a);
	convo_clear(&st);
	spec_free(s1);
	spec_free(s2);
	spec_free(s3);
}

static void test_long_output_is_split(void **state)
{
	(void)state;
	struct spec *s = compile("flows:\n"
				 "  - entry_cmd: /long\n"
				 "    steps:\n"
				 "      - ask: Text?\n"
				 "        save: t\n"
				 "      - reply: '<b>{{t}}</b>'\n"
				 "        buttons: [{text: Again, flow: long}]\n");
	struct convo st = CONVO_INIT;
	struct actions a = run(s, &st, msg("/long"));
	actions_free(&a);
	/* 1500 words of "a<b " (4 chars, 6 bytes once escaped) = 6000 chars */
	struct buf in = BUF_INIT;
	for (int i = 0; i < 1500; i++)
		assert_int_equal(buf_puts(&in, "a<b "), 0);
	a = run(s, &st, msg(in.data));
	assert_int_equal(a.n, 2);
	for (size_t i = 0; i < a.n; i++) {
		size_t off;
		const char *m;
		assert_int_equal(markup_check(PARSE_MODE_HTML, a.v[i].text, strlen(a.v[i].text),
					      &off, &m), 0);
		assert_true(markup_visible_len(PARSE_MODE_HTML, a.v[i].text,
					       strlen(a.v[i].text)) <= MARKUP_MAX_MESSAGE);
		assert_true(strstr(a.v[i].text, "a&lt;b") != NULL);
	}
	assert_int_equal(a.v[0].nrows, 0); /* the keyboard goes on the last part */
	assert_int_equal(a.v[1].nrows, 1);
	actions_free(&a);
	buf_free(&in);
	convo_clear(&st);
	spec_free(s);
}

static void test_empty_output_not_sent(void **state)
{
	(void)state;
	struct spec *s = compile("flows:\n"
				 "  - entry_cmd: /x\n"
				 "    steps: [{reply: '{{maybe}}'}, {reply: done}]\n"
				 "  - entry_cmd: /set\n"
				 "    steps: [{set: {maybe: value}}]\n");
	struct convo st = CONVO_INIT;
	struct actions a = run(s, &st, msg("/x"));
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].text, "done");
	actions_free(&a);
	a = run(s, &st, msg("/set"));
	assert_int_equal(a.n, 0);
	actions_free(&a);
	a = run(s, &st, msg("/x"));
	assert_int_equal(a.n, 2);
	assert_string_equal(a.v[0].text, "value");
	actions_free(&a);
	convo_clear(&st);
	spec_free(s);
}

static void test_markdown_escaping(void **state)
{
	(void)state;
	struct spec *s = compile("parse_mode: MarkdownV2\n"
				 "flows:\n"
				 "  - entry_cmd: /hi\n"
				 "    steps: [{reply: '*Hi* {{args}}\\!'}]\n");
	struct convo st = CONVO_INIT;
	struct actions a = run(s, &st, msg("/hi Mr. [X]_1!"));
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].text, "*Hi* Mr\\. \\[X\\]\\_1\\!\\!");
	assert_int_equal(a.v[0].mode, PARSE_MODE_MARKDOWNV2);
	const char *method;
	char *j = json_of(&a.v[0], &method);
	assert_non_null(strstr(j, "\"parse_mode\":\"MarkdownV2\""));
	free(j);
	actions_free(&a);
	convo_clear(&st);
	spec_free(s);
}

static void test_step_is_pure(void **state)
{
	(void)state;
	struct spec *s = compile("flows:\n"
				 "  - entry_cmd: /o\n"
				 "    steps: [{ask: Name?, save: name, timeout: 1m,\n"
				 "             on_timeout: [{reply: 'late, {{user.first_name}}'}]}]\n");
	struct convo in = CONVO_INIT, out, out2;
	struct actions a = {0}, b = {0};
	struct event ev = msg("/o");
	assert_int_equal(engine_step(s, &ctx, &in, &ev, &out, &a), 0);
	assert_null(in.flow); /* the input state is untouched */
	assert_string_equal(out.flow, "o");
	assert_int_equal(out.deadline_ms, NOW + 60000);
	/* the same input gives the same output */
	assert_int_equal(engine_step(s, &ctx, &in, &ev, &out2, &b), 0);
	char *j1 = convo_to_json(&out), *j2 = convo_to_json(&out2);
	assert_string_equal(j1, j2);
	assert_int_equal(a.n, b.n);
	assert_string_equal(a.v[0].text, b.v[0].text);
	/* a timeout event before the deadline does nothing */
	/* the state keeps the user's names for the timeout event, which has none */
	assert_string_equal(out.first_name, "Ann");
	struct event early = msg(NULL);
	early.kind = EVENT_TIMEOUT;
	early.first_name = NULL;
	early.now_ms = NOW + 59999;
	struct convo out3;
	struct actions c = {0};
	assert_int_equal(engine_step(s, &ctx, &out, &early, &out3, &c), 0);
	assert_int_equal(c.n, 0);
	assert_string_equal(out3.flow, "o");
	early.now_ms = NOW + 60000;
	struct convo out4;
	assert_int_equal(engine_step(s, &ctx, &out3, &early, &out4, &c), 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.v[0].text, "late, Ann");
	assert_null(out4.flow);
	assert_null(out4.first_name);
	free(j1);
	free(j2);
	actions_free(&a);
	actions_free(&b);
	actions_free(&c);
	convo_clear(&out);
	convo_clear(&out2);
	convo_clear(&out3);
	convo_clear(&out4);
	spec_free(s);
}

static void test_unknown_command_lists_menu(void **state)
{
	(void)state;
	struct spec *s = compile("flows:\n"
				 "  - {entry_cmd: /start, description: 'Start <here> & now', steps: [{reply: s}]}\n"
				 "  - {entry_cmd: /hidden, steps: [{reply: h}]}\n");
	struct convo st = CONVO_INIT;
	struct actions a = run(s, &st, msg("/nope"));
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].text,
			    "Sorry, I don't know that command.\n\n/start - Start &lt;here&gt; &amp; now");
	actions_free(&a);
	/* in a group: silence */
	struct event ev = msg("/nope");
	ev.chat_kind = CHAT_GROUP;
	a = run(s, &st, ev);
	assert_int_equal(a.n, 0);
	actions_free(&a);
	/* not a command at all: "/ x", "/path/to" are plain text, no reply */
	a = run(s, &st, msg("/path/to"));
	assert_int_equal(a.n, 0);
	actions_free(&a);
	convo_clear(&st);
	spec_free(s);
}

/* The body is written without cJSON: it must still be exactly what cJSON
 * prints for it (the form every other test and the outbox rows expect),
 * whatever the strings hold. */
static void assert_canonical(const char *j)
{
	cJSON *o = cJSON_Parse(j);
	assert_non_null(o);
	char *again = cJSON_PrintUnformatted(o);
	assert_string_equal(again, j);
	cJSON_free(again);
	cJSON_Delete(o);
}

static void test_action_json_is_cjson_form(void **state)
{
	(void)state;
	char nasty[] = "\"q\" \\ \n\r\t\b\f\x01\x1f \xd0\x9f </b> \xf0\x9f\x91\x8b";
	char data[] = "c\"1", label[] = "url", url[] = "https://e.org/?a=\"1\"", empty[] = "";
	char empty2[] = "", cbid[] = "id\"1";
	struct action_button bt[3] = {{nasty, data, NULL}, {label, NULL, url}, {empty, empty2, NULL}};
	struct action_row rows[2] = {{bt, 2}, {bt + 2, 1}};
	struct action a = {0};
	a.kind = ACTION_SEND;
	a.chat_id = -1001234567890123;
	a.text = nasty;
	a.rows = rows;
	a.nrows = 2;
	a.reply_to = 9007199254740993; /* beyond a double's integers: written exactly */
	for (int mode = 0; mode < 3; mode++) {
		a.mode = (enum parse_mode)mode;
		for (int with_chat = 0; with_chat < 2; with_chat++) {
			const char *m;
			char *j = NULL;
			assert_int_equal(engine_action_json(&a, with_chat, &m, &j), 0);
			assert_string_equal(m, "sendMessage");
			assert_non_null(strstr(j, "\"message_id\":9007199254740993,"));
			assert_true(!with_chat == !strstr(j, "\"chat_id\":-1001234567890123,"));
			assert_true(!mode == !strstr(j, "\"parse_mode\""));
			free(j);
		}
	}
	/* every shape, checked against cJSON's own printing */
	for (int shape = 0; shape < 8; shape++) {
		a.nrows = shape & 1 ? 2 : 0;
		a.force_reply = shape & 2;
		a.reply_to = shape & 4 ? 7 : 0;
		a.chat_id = 42;
		const char *m;
		char *j = NULL;
		assert_int_equal(engine_action_json(&a, true, &m, &j), 0);
		assert_canonical(j);
		cJSON *o = cJSON_Parse(j);
		assert_string_equal(cJSON_GetObjectItem(o, "text")->valuestring, nasty);
		cJSON *kb = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "reply_markup"), "inline_keyboard");
		assert_int_equal(cJSON_GetArraySize(kb), a.nrows);
		if (a.nrows)
			assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetArrayItem(kb, 0), 1),
								"url")->valuestring,
					    "https://e.org/?a=\"1\"");
		cJSON_Delete(o);
		free(j);
	}
	struct action cb = {0};
	cb.kind = ACTION_ANSWER_CALLBACK;
	cb.callback_id = cbid;
	for (int t = 0; t < 2; t++) {
		cb.text = t ? nasty : NULL;
		const char *m;
		char *j = NULL;
		assert_int_equal(engine_action_json(&cb, true, &m, &j), 0);
		assert_string_equal(m, "answerCallbackQuery");
		assert_canonical(j);
		assert_true(!t == !strstr(j, "\"text\""));
		free(j);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_send_json_with_keyboard),
		cmocka_unit_test(test_action_json_is_cjson_form),
		cmocka_unit_test(test_group_ask_uses_force_reply),
		cmocka_unit_test(test_callback_answered_first),
		cmocka_unit_test(test_stale_buttons_across_versions),
		cmocka_unit_test(test_state_survives_reload),
		cmocka_unit_test(test_long_output_is_split),
		cmocka_unit_test(test_empty_output_not_sent),
		cmocka_unit_test(test_markdown_escaping),
		cmocka_unit_test(test_step_is_pure),
		cmocka_unit_test(test_unknown_command_lists_menu),
		cmocka_unit_test(test_every_method_is_known),
		cmocka_unit_test(test_fallback_keeps_the_names_of_a_timed_question),
		cmocka_unit_test(test_an_answer_after_the_deadline_is_too_late),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
