/* Unit tests of button codes: the 64-byte bound, stability, distinctness,
 * version detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "botfactory/button.h"

static void test_code_shape(void **state)
{
	(void)state;
	char code[BUTTON_CODE_LEN + 1];
	const char *f[] = {"flow", "order"};
	button_code(code, f, 2);
	assert_int_equal(strlen(code), BUTTON_CODE_LEN);
	assert_true(strlen(code) <= BUTTON_CALLBACK_MAX);
	assert_int_equal(code[0], BUTTON_CODE_VERSION);
	assert_int_equal(button_classify(code), BUTTON_DATA_CURRENT);
	/* the same meaning always gives the same code */
	char again[BUTTON_CODE_LEN + 1];
	button_code(again, f, 2);
	assert_string_equal(code, again);
}

static void test_code_independent_of_length(void **state)
{
	(void)state;
	char value[5000];
	memset(value, 'v', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	char code[BUTTON_CODE_LEN + 1];
	const char *f[] = {"value", value};
	button_code(code, f, 2);
	assert_int_equal(strlen(code), BUTTON_CODE_LEN);
}

static void test_fields_are_separated(void **state)
{
	(void)state;
	char a[BUTTON_CODE_LEN + 1], b[BUTTON_CODE_LEN + 1];
	const char *fa[] = {"choice", "ab", "c"};
	const char *fb[] = {"choice", "a", "bc"};
	button_code(a, fa, 3);
	button_code(b, fb, 3);
	assert_string_not_equal(a, b);
}

static void test_distinct_codes(void **state)
{
	(void)state;
	/* 20,000 different meanings, no two alike */
	enum { N = 20000 };
	static char codes[N][BUTTON_CODE_LEN + 1];
	for (int i = 0; i < N; i++) {
		char v[16];
		snprintf(v, sizeof(v), "%d", i);
		const char *f[] = {"value", v};
		button_code(codes[i], f, 2);
	}
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			if (codes[i][1] == codes[j][1] && !strcmp(codes[i], codes[j]))
				fail_msg("codes %d and %d collide", i, j);
}

static void test_classify(void **state)
{
	(void)state;
	assert_int_equal(button_classify(""), BUTTON_DATA_FOREIGN);
	assert_int_equal(button_classify("order:1"), BUTTON_DATA_FOREIGN);
	assert_int_equal(button_classify("1AAAAAAAAAAAAAAAA"), BUTTON_DATA_CURRENT);
	assert_int_equal(button_classify("2AAAAAAAAAAAAAAAA"), BUTTON_DATA_OLD_VERSION);
	assert_int_equal(button_classify("1AAAAAAAAAAAAAAA"), BUTTON_DATA_FOREIGN);
	assert_int_equal(button_classify("1AAAAAAAAAAAAAA=A"), BUTTON_DATA_FOREIGN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_code_shape),
		cmocka_unit_test(test_code_independent_of_length),
		cmocka_unit_test(test_fields_are_separated),
		cmocka_unit_test(test_distinct_codes),
		cmocka_unit_test(test_classify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
