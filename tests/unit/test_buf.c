/* Unit tests of buf (growable strings, JSON strings), utf8 and log redaction. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "botfactory/buf.h"
#include "botfactory/log.h"
#include "botfactory/utf8.h"

static void test_buf_grows_and_takes(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_printf(&b, "%d,", i % 10), 0);
	assert_int_equal(b.len, 2000);
	assert_int_equal(b.data[b.len], '\0');
	assert_memory_equal(b.data, "0,1,2,", 6);
	char *s = buf_take(&b);
	assert_non_null(s);
	assert_null(b.data);
	assert_int_equal(strlen(s), 2000);
	free(s);
	/* taking an untouched buffer gives an empty string */
	s = buf_take(&b);
	assert_string_equal(s, "");
	free(s);
	buf_free(&b);
}

static void test_buf_reset_keeps_memory(void **state)
{
	(void)state;
	struct buf b = BUF_INIT;
	assert_int_equal(buf_puts(&b, "hello"), 0);
	char *before = b.data;
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	assert_ptr_equal(b.data, before);
	assert_int_equal(buf_putc(&b, 'x'), 0);
	assert_string_equal(b.data, "x");
	buf_free(&b);
}

static void test_utf8_valid(void **state)
{
	(void)state;
	size_t off = 99;
	assert_true(utf8_valid("plain", 5, NULL));
	assert_true(utf8_valid("\xd0\x9f\xd1\x80\xd0\xb8", 6, NULL)); /* При */
	assert_true(utf8_valid("\xf0\x9f\x91\x8b", 4, NULL));         /* 👋 */
	assert_false(utf8_valid("ab\xff", 3, &off));
	assert_int_equal(off, 2);
	assert_false(utf8_valid("\xc0\xaf", 2, &off)); /* overlong '/' */
	assert_int_equal(off, 0);
	assert_false(utf8_valid("\xed\xa0\x80", 3, &off)); /* surrogate */
	assert_false(utf8_valid("x\xe2\x82", 3, &off));    /* truncated */
	assert_int_equal(off, 1);
	assert_false(utf8_valid("a\0b", 3, &off));
	assert_int_equal(off, 1);
}

static void test_utf16_len(void **state)
{
	(void)state;
	assert_int_equal(utf8_utf16_len("abc", 3), 3);
	assert_int_equal(utf8_utf16_len("\xd0\x9f", 2), 1);
	assert_int_equal(utf8_utf16_len("\xf0\x9f\x91\x8b", 4), 2);
}

static void test_log_redact(void **state)
{
	(void)state;
	char s[] = "GET /bot123456:FAKE_token_for_tests_only_000000/getMe failed";
	log_redact(s);
	assert_string_equal(s, "GET /bot123456:***/getMe failed");
	char t[] = "time 12:30 and 42:short stay";
	log_redact(t);
	assert_string_equal(t, "time 12:30 and 42:short stay");
}

/* buf_json_string writes what cJSON writes for the same string, and cJSON
 * reads it back to the same bytes: every byte value, and mixed text. */
static void check_json_string(const char *s)
{
	struct buf b = BUF_INIT;
	assert_int_equal(buf_puts(&b, "x"), 0); /* appends after what is there */
	assert_int_equal(buf_json_string(&b, s), 0);
	cJSON *str = cJSON_CreateString(s);
	char *want = cJSON_PrintUnformatted(str);
	assert_non_null(want);
	assert_string_equal(b.data + 1, want);
	assert_int_equal(b.len, 1 + strlen(want));
	cJSON *back = cJSON_Parse(b.data + 1);
	assert_true(cJSON_IsString(back));
	assert_string_equal(back->valuestring, s);
	cJSON_Delete(back);
	cJSON_free(want);
	cJSON_Delete(str);
	buf_free(&b);
}

static void test_int(void **state)
{
	(void)state;
	const int64_t v[] = {0, 1, -1, 9, 10, -10, 123456789, -1001234567890,
			     INT64_MAX, INT64_MIN, INT64_MIN + 1, (int64_t)1 << 62};
	struct buf b = BUF_INIT;
	char want[32];
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		buf_reset(&b);
		assert_int_equal(buf_puts(&b, "x"), 0);
		assert_int_equal(buf_int(&b, v[i]), 0);
		snprintf(want, sizeof(want), "x%" PRId64, v[i]);
		assert_string_equal(b.data, want);
	}
	buf_free(&b);
}

static void test_json_string(void **state)
{
	(void)state;
	char one[4] = {'a', 0, 'z', 0};
	for (int c = 1; c < 256; c++) {
		one[1] = (char)c;
		check_json_string(one);
	}
	check_json_string("");
	check_json_string("say \"hi\" \\ back\n\ttab \x01\x1f\x7f </b> \xd0\x9f\xf0\x9f\x91\x8b \xe2\x80\xa8");
	struct buf b = BUF_INIT;
	assert_int_equal(buf_json_string(&b, "\x02\""), 0);
	assert_string_equal(b.data, "\"\\u0002\\\"\"");
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_grows_and_takes),
		cmocka_unit_test(test_buf_reset_keeps_memory),
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_utf16_len),
		cmocka_unit_test(test_log_redact),
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_json_string),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
