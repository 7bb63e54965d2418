/* Unit tests of conversation state: variables, copy, JSON round trip and
 * rejection of what the daemon must never load. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "botfactory/convo.h"

static void test_vars(void **state)
{
	(void)state;
	struct convo c = CONVO_INIT;
	assert_null(convo_get(&c, "x"));
	assert_int_equal(convo_set(&c, "x", "1"), 0);
	assert_int_equal(convo_set(&c, "y", "2"), 0);
	assert_int_equal(convo_set(&c, "x", "3"), 0);
	assert_string_equal(convo_get(&c, "x"), "3");
	assert_int_equal(c.nvars, 2);
	assert_int_equal(convo_set(&c, "x", NULL), 0);
	assert_null(convo_get(&c, "x"));
	assert_string_equal(convo_get(&c, "y"), "2");
	convo_clear(&c);
	assert_int_equal(c.nvars, 0);
}

static void test_json_round_trip(void **state)
{
	(void)state;
	struct convo c = CONVO_INIT, d;
	assert_int_equal(convo_set_str(&c.flow, "order"), 0);
	assert_int_equal(convo_set_str(&c.ask, "save:qty"), 0);
	assert_int_equal(convo_set_str(&c.args, "a \"quoted\" arg"), 0);
	c.step = 2;
	c.deadline_ms = 1767225600123LL;
	assert_int_equal(convo_set_str(&c.first_name, "Zoë"), 0);
	assert_int_equal(convo_set(&c, "name", "Zoë \xf0\x9f\x91\x8b"), 0);
	char *j = convo_to_json(&c);
	assert_non_null(j);
	assert_int_equal(convo_from_json(&d, j, strlen(j)), 0);
	assert_string_equal(d.flow, "order");
	assert_string_equal(d.ask, "save:qty");
	assert_string_equal(d.args, "a \"quoted\" arg");
	assert_int_equal(d.step, 2);
	assert_int_equal(d.deadline_ms, 1767225600123LL);
	assert_string_equal(d.first_name, "Zoë");
	assert_null(d.username);
	assert_string_equal(convo_get(&d, "name"), "Zoë \xf0\x9f\x91\x8b");
	char *j2 = convo_to_json(&d);
	assert_string_equal(j, j2);
	free(j);
	free(j2);
	convo_clear(&c);
	convo_clear(&d);
}

static void test_idle_json(void **state)
{
	(void)state;
	struct convo c = CONVO_INIT;
	char *j = convo_to_json(&c);
	assert_string_equal(j, "{\"v\":1,\"vars\":{}}");
	free(j);
}

static void test_json_rejects(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"not json",
		"[]",
		"{}",
		"{\"v\":2,\"vars\":{}}",
		"{\"v\":1,\"flow\":\"x\"}",                 /* flow without ask */
		"{\"v\":1,\"flow\":1,\"ask\":\"a\"}",       /* wrong type */
		"{\"v\":1,\"step\":-1}",
		"{\"v\":1,\"vars\":[]}",
		"{\"v\":1,\"vars\":{\"a\":1}}",
		"{\"v\":1,\"vars\":{\"a\":\"\xff\"}}",       /* invalid UTF-8 */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct convo d;
		assert_int_equal(convo_from_json(&d, bad[i], strlen(bad[i])), -EINVAL);
		assert_null(d.flow);
		assert_int_equal(d.nvars, 0);
	}
}

static void test_copy_is_deep(void **state)
{
	(void)state;
	struct convo c = CONVO_INIT, d;
	assert_int_equal(convo_set_str(&c.flow, "f"), 0);
	assert_int_equal(convo_set_str(&c.ask, "step:0"), 0);
	assert_int_equal(convo_set(&c, "a", "1"), 0);
	assert_int_equal(convo_copy(&d, &c), 0);
	convo_clear(&c);
	assert_string_equal(d.flow, "f");
	assert_string_equal(convo_get(&d, "a"), "1");
	convo_leave_flow(&d);
	assert_null(d.flow);
	assert_string_equal(convo_get(&d, "a"), "1");
	convo_clear(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vars),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_idle_json),
		cmocka_unit_test(test_json_rejects),
		cmocka_unit_test(test_copy_is_deep),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
