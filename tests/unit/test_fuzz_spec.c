/* Robustness tests of the spec compiler: the example specs (specs/) and the
 * valid golden specs (tests/specs/valid/) are mutated with a seeded
 * pseudo-random generator (bit flips, truncations, deletions, duplicated and
 * moved lines, YAML-significant characters, valid and invalid UTF-8, splices
 * from other specs) and each result goes through spec_compile, which must
 * return 0 with a spec and no error, or -EINVAL with at least one non-empty
 * message at a position inside the input; never crash, never leak (the CI
 * runs this under ASan+UBSan). Deterministic: fixed seed, bounded work.
 *
 * Runs with the repository root as working directory. Environment knobs for
 * longer runs by hand:
 *   FUZZ_ITERATIONS=N  random mutants to try (default 20000)
 *   FUZZ_SEED=N        seed (default 0x5eed0b07)
 *   FUZZ_DUMP=path     write each input there before compiling it, so that
 *                      after a crash the file holds the crashing input
 *   FUZZ_STRICT_POS=1  also require that every column lies inside its line */
#include <dirent.h>
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

#define DEFAULT_ITERATIONS 20000
#define DEFAULT_SEED 0x5eed0b07ULL

struct sample {
	char *name;
	char *data;
	size_t len;
};

static struct sample corpus[64];
static size_t ncorpus;
static const char *dump_path;
static int strict_pos;

/* ---- deterministic randomness (splitmix64) --------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, n); n > 0. */
static size_t rnd_below(size_t n)
{
	return (size_t)(rnd() % n);
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 0);
	if (errno || *end) {
		fprintf(stderr, "%s: not a number: %s\n", name, v);
		return def;
	}
	return (uint64_t)x;
}

/* ---- corpus ------------------------------------------------------------------ */

static int read_whole(const char *path, char **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return -ENOMEM;
			}
			buf = nb;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		if (got == 0)
			break;
		n += got;
	}
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		free(buf);
		return -EIO;
	}
	*data = buf;
	*len = n;
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sample *)a)->name,
		      ((const struct sample *)b)->name);
}

static bool is_spec_name(const char *name)
{
	size_t n = strlen(name);
	return (n > 5 && !strcmp(name + n - 5, ".yaml")) ||
	       (n > 4 && !strcmp(name + n - 4, ".yml")) ||
	       (n > 5 && !strcmp(name + n - 5, ".json"));
}

/* Adds every spec file of dir, in name order. */
static void load_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "cannot open %s (run from the repository root)\n", dir);
		return;
	}
	size_t first = ncorpus;
	struct dirent *e;
	while ((e = readdir(d)) && ncorpus < sizeof(corpus) / sizeof(*corpus)) {
		if (!is_spec_name(e->d_name))
			continue;
		size_t plen = strlen(dir) + 1 + strlen(e->d_name) + 1;
		char *path = malloc(plen);
		if (!path)
			break;
		snprintf(path, plen, "%s/%s", dir, e->d_name);
		struct sample *s = &corpus[ncorpus];
		if (read_whole(path, &s->data, &s->len)) {
			fprintf(stderr, "cannot read %s\n", path);
			free(path);
			continue;
		}
		s->name = path;
		ncorpus++;
	}
	closedir(d);
	qsort(corpus + first, ncorpus - first, sizeof(*corpus), name_cmp);
}

static int setup(void **state)
{
	(void)state;
	load_dir("specs");
	load_dir("tests/specs/valid");
	dump_path = getenv("FUZZ_DUMP");
	strict_pos = getenv("FUZZ_STRICT_POS") != NULL;
	return ncorpus >= 3 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < ncorpus; i++) {
		free(corpus[i].name);
		free(corpus[i].data);
	}
	ncorpus = 0;
	return 0;
}

static const struct sample *find_sample(const char *name)
{
	for (size_t i = 0; i < ncorpus; i++)
		if (!strcmp(corpus[i].name, name))
			return &corpus[i];
	return NULL;
}

/* ---- the property ------------------------------------------------------------- */

/* Prints the input as a C string so that a failure can be reproduced. */
static void print_input(const char *data, size_t len)
{
	fprintf(stderr, "input (%zu bytes): \"", len);
	for (size_t i = 0; i < len && i < 8192; i++) {
		unsigned char c = (unsigned char)data[i];
		if (c == '\n')
			fputs("\\n\"\n\t\"", stderr);
		else if (c == '"' || c == '\\')
			fprintf(stderr, "\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			fputc(c, stderr);
		else
			fprintf(stderr, "\\x%02x\"\"", c);
	}
	fputs("\"\n", stderr);
}

/* Bytes of the line break at data[i], or 0. Line breaks as libyaml counts
 * them (YAML 1.1): \n, \r\n, a lone \r, and U+0085, U+2028, U+2029. */
static size_t break_len(const char *data, size_t len, size_t i)
{
	const unsigned char *u = (const unsigned char *)data;
	if (u[i] == '\n')
		return 1;
	if (u[i] == '\r')
		return i + 1 < len && u[i + 1] == '\n' ? 2 : 1;
	if (u[i] == 0xc2 && i + 1 < len && u[i + 1] == 0x85)
		return 2;
	if (u[i] == 0xe2 && i + 2 < len && u[i + 1] == 0x80 &&
	    (u[i + 2] == 0xa8 || u[i + 2] == 0xa9))
		return 3;
	return 0;
}

static int count_lines(const char *data, size_t len)
{
	int lines = 1;
	for (size_t i = 0; i < len;) {
		size_t b = break_len(data, len, i);
		lines += b > 0;
		i += b ? b : 1;
	}
	return lines;
}

/* Characters of line `line` (1-based) of data, or 0 past the end. */
static size_t line_chars(const char *data, size_t len, int line)
{
	size_t i = 0, chars = 0;
	int l = 1;
	while (i < len) {
		size_t b = break_len(data, len, i);
		if (b) {
			if (l == line)
				return chars;
			l++;
			i += b;
			continue;
		}
		if (l == line)
			chars += ((unsigned char)data[i] & 0xC0) != 0x80;
		i++;
	}
	return l == line ? chars : 0;
}

/* Compiles data[0..len) and checks the contract. `what` names the input in
 * failure messages. */
static void check_compile(const char *data, size_t len, const char *what)
{
	if (dump_path) {
		FILE *f = fopen(dump_path, "wb");
		if (f) {
			fwrite(data, 1, len, f);
			fclose(f);
		}
	}
	struct spec *s = NULL;
	struct diags d = {0};
	int rc = spec_compile("fuzz", data, len, &s, &d);
	if (rc != 0 && rc != -EINVAL) {
		print_input(data, len);
		fail_msg("%s: spec_compile returned %d", what, rc);
	}
	if (rc == 0) {
		if (!s || d.n) {
			print_input(data, len);
			fail_msg("%s: success with spec %p and %zu errors", what,
				 (void *)s, d.n);
		}
		/* the lookups a running bot makes must work on what compiled */
		for (size_t i = 0; i < s->nflows; i++) {
			const struct flow *f = &s->flows[i];
			assert_non_null(f->id);
			assert_non_null(spec_flow(s, f->id));
			if (f->cmd)
				assert_non_null(spec_flow_by_cmd(s, f->cmd));
			assert_true(f->steps.n > 0);
		}
		for (size_t i = 0; i < s->nbuttons; i++) {
			/* equal meanings share a code, so any button with it */
			const struct button *b = spec_button(s, s->buttons[i]->code);
			assert_non_null(b);
			assert_string_equal(b->code, s->buttons[i]->code);
		}
		spec_free(s);
		return;
	}
	if (s || d.n == 0) {
		print_input(data, len);
		fail_msg("%s: -EINVAL with spec %p and no error", what, (void *)s);
	}
	int lines = count_lines(data, len);
	/* libyaml ends an unterminated last line before it reports the end of
	 * the stream, so errors there name the line after it */
	int max_line = len && data[len - 1] != '\n' ? lines + 1 : lines;
	for (size_t i = 0; i < d.n; i++) {
		const struct diag *g = &d.v[i];
		bool ok = g->msg && g->msg[0] && g->line >= 0 && g->col >= 0 &&
			  g->line <= max_line && (g->line == 0) == (g->col == 0);
		if (ok && strict_pos && g->line > 0)
			ok = (size_t)g->col <= line_chars(data, len, g->line) + 1;
		if (!ok) {
			print_input(data, len);
			fail_msg("%s: bad error %d:%d '%s' (input has %d lines)", what,
				 g->line, g->col, g->msg ? g->msg : "(null)", lines);
		}
	}
	diags_free(&d);
}

/* ---- mutations ------------------------------------------------------------------ */

struct mbuf {
	char *p;
	size_t len, cap;
};

static void mb_reserve(struct mbuf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	char *p = realloc(b->p, cap);
	assert_non_null(p);
	b->p = p;
	b->cap = cap;
}

static void mb_insert(struct mbuf *b, size_t at, const char *s, size_t n)
{
	mb_reserve(b, n);
	memmove(b->p + at + n, b->p + at, b->len - at);
	memcpy(b->p + at, s, n);
	b->len += n;
}

static void mb_delete(struct mbuf *b, size_t at, size_t n)
{
	if (at + n > b->len)
		n = b->len - at;
	memmove(b->p + at, b->p + at + n, b->len - at - n);
	b->len -= n;
}

/* Start and end (past the '\n', or len) of the line holding offset at. */
static void line_bounds(const struct mbuf *b, size_t at, size_t *start, size_t *end)
{
	size_t s = at;
	while (s > 0 && b->p[s - 1] != '\n')
		s--;
	size_t e = at;
	while (e < b->len && b->p[e] != '\n')
		e++;
	if (e < b->len)
		e++;
	*start = s;
	*end = e;
}

static const char *const tokens[] = {
	":", ": ", "-", "- ", "[", "]", "{", "}", ",", "&", "&a ", "*", "*a",
	"!", "!!str ", "!!binary ", "|", "|-", ">", ">+", "\"", "'", "\t", "\n",
	"#", " #", "?", "? ", "%YAML 1.1\n", "---\n", "...\n", "@", "`", "\\",
	"\\u0000", "\\x", "{{", "}}", "{{ name }}", "{{user.first_name}}", "<b>",
	"</b>", "<a href=\"x\">", "&amp;", "&", "*bold*", "_", ".", "!",
	"${X}", "${", "null", "~", "true", "0x1p3", "1e999", "-1", "99999999999999999999",
	"flows: []\n", "steps:\n", "- reply: x\n", "- ask: q\n  save: v\n",
	"goto: ", "entry_cmd: /x\n", "{reply: x}", "[{goto: a}]", "\r\n", "\r",
	"  ", "    ", "\xef\xbb\xbf",
};

static const char *const utf8_bits[] = {
	"\xc3\xa9", "\xe6\xbc\xa2", "\xf0\x9f\x98\x80", "\xef\xbf\xbd", /* valid */
	"\xe2\x80\xa8", "\xc2\x85", "\xc2\xa0",                         /* odd spaces */
	"\xff", "\xfe", "\xc3", "\xe6\xbc", "\x80", "\xbf",             /* invalid */
	"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
	"\x01", "\x1b", "\x7f",
};

static void mutate_once(struct mbuf *b)
{
	size_t at = b->len ? rnd_below(b->len + 1) : 0;
	switch (rnd_below(13)) {
	case 0: /* flip a bit */
		if (b->len)
			b->p[rnd_below(b->len)] ^= (char)(1u << rnd_below(8));
		break;
	case 1: /* replace a byte */
		if (b->len)
			b->p[rnd_below(b->len)] = (char)rnd_below(256);
		break;
	case 2: /* delete a short run */
		if (at < b->len)
			mb_delete(b, at, 1 + rnd_below(16));
		break;
	case 3: /* truncate */
		b->len = at;
		break;
	case 4: { /* duplicate a line */
		if (!b->len)
			break;
		size_t s, e;
		line_bounds(b, rnd_below(b->len), &s, &e);
		char tmp[512];
		size_t n = e - s < sizeof(tmp) ? e - s : sizeof(tmp);
		memcpy(tmp, b->p + s, n);
		mb_insert(b, e, tmp, n);
		break;
	}
	case 5: { /* delete a line */
		if (!b->len)
			break;
		size_t s, e;
		line_bounds(b, rnd_below(b->len), &s, &e);
		mb_delete(b, s, e - s);
		break;
	}
	case 6: { /* copy a line to the start of another */
		if (!b->len)
			break;
		size_t s, e, s2, e2;
		line_bounds(b, rnd_below(b->len), &s, &e);
		char tmp[512];
		size_t n = e - s < sizeof(tmp) ? e - s : sizeof(tmp);
		memcpy(tmp, b->p + s, n);
		line_bounds(b, rnd_below(b->len), &s2, &e2);
		mb_insert(b, s2, tmp, n);
		break;
	}
	case 7:
	case 8: { /* insert YAML-significant text */
		const char *t = tokens[rnd_below(sizeof(tokens) / sizeof(*tokens))];
		mb_insert(b, at, t, strlen(t));
		break;
	}
	case 9: { /* insert valid or invalid UTF-8 */
		const char *t = utf8_bits[rnd_below(sizeof(utf8_bits) / sizeof(*utf8_bits))];
		mb_insert(b, at, t, strlen(t));
		break;
	}
	case 10: { /* insert random bytes, NUL included */
		char tmp[4];
		size_t n = 1 + rnd_below(sizeof(tmp));
		for (size_t i = 0; i < n; i++)
			tmp[i] = (char)rnd_below(256);
		mb_insert(b, at, tmp, n);
		break;
	}
	case 11: { /* splice a chunk of another spec */
		const struct sample *o = &corpus[rnd_below(ncorpus)];
		if (!o->len)
			break;
		size_t from = rnd_below(o->len);
		size_t n = 1 + rnd_below(200);
		if (from + n > o->len)
			n = o->len - from;
		mb_insert(b, at, o->data + from, n);
		break;
	}
	case 12: { /* indent or dedent a line */
		if (!b->len)
			break;
		size_t s, e;
		line_bounds(b, rnd_below(b->len), &s, &e);
		if (rnd() & 1)
			mb_insert(b, s, "  ", 1 + rnd_below(2));
		else if (s < b->len && b->p[s] == ' ')
			mb_delete(b, s, 1 + (s + 1 < b->len && b->p[s + 1] == ' '));
		break;
	}
	}
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_corpus_compiles(void **state)
{
	(void)state;
	for (size_t i = 0; i < ncorpus; i++) {
		struct spec *s = NULL;
		struct diags d = {0};
		int rc = spec_compile("fuzz", corpus[i].data, corpus[i].len, &s, &d);
		if (rc)
			fail_msg("%s does not compile (%d): %s", corpus[i].name, rc,
				 d.n ? d.v[0].msg : "");
		spec_free(s);
		diags_free(&d);
	}
}

static void test_truncate_order_at_every_offset(void **state)
{
	(void)state;
	const struct sample *o = find_sample("specs/order.yaml");
	if (!o) {
		fail_msg("specs/order.yaml is missing");
		return;
	}
	char what[64];
	for (size_t i = 0; i <= o->len; i++) {
		/* a copy of exactly i bytes, so that ASan sees any overread */
		char *p = malloc(i ? i : 1);
		assert_non_null(p);
		memcpy(p, o->data, i);
		snprintf(what, sizeof(what), "order.yaml[0..%zu)", i);
		check_compile(p, i, what);
		free(p);
	}
}

static void test_truncate_corpus_every_nth_offset(void **state)
{
	(void)state;
	char what[128];
	for (size_t c = 0; c < ncorpus; c++) {
		const struct sample *o = &corpus[c];
		for (size_t i = 0; i <= o->len; i += 7) {
			char *p = malloc(i ? i : 1);
			assert_non_null(p);
			memcpy(p, o->data, i);
			snprintf(what, sizeof(what), "%s[0..%zu)", o->name, i);
			check_compile(p, i, what);
			free(p);
		}
	}
}

static void test_delete_each_byte_of_order(void **state)
{
	(void)state;
	const struct sample *o = find_sample("specs/order.yaml");
	if (!o) {
		fail_msg("specs/order.yaml is missing");
		return;
	}
	char what[64];
	char *p = malloc(o->len);
	assert_non_null(p);
	for (size_t i = 0; i < o->len; i++) {
		memcpy(p, o->data, i);
		memcpy(p + i, o->data + i + 1, o->len - i - 1);
		snprintf(what, sizeof(what), "order.yaml without byte %zu", i);
		check_compile(p, o->len - 1, what);
	}
	free(p);
}

static void test_random_mutations(void **state)
{
	(void)state;
	uint64_t seed = env_u64("FUZZ_SEED", DEFAULT_SEED);
	uint64_t iterations = env_u64("FUZZ_ITERATIONS", DEFAULT_ITERATIONS);
	struct mbuf b = {0};
	char what[128];
	rng_state = seed;
	for (uint64_t it = 0; it < iterations; it++) {
		const struct sample *o = &corpus[rnd_below(ncorpus)];
		b.len = 0;
		mb_reserve(&b, o->len);
		memcpy(b.p, o->data, o->len);
		b.len = o->len;
		size_t rounds = 1 + rnd_below(rnd_below(4) ? 3 : 12);
		for (size_t r = 0; r < rounds; r++)
			mutate_once(&b);
		/* an exact-size copy, so that ASan sees any overread */
		char *p = malloc(b.len ? b.len : 1);
		assert_non_null(p);
		memcpy(p, b.p, b.len);
		snprintf(what, sizeof(what), "seed %llu iteration %llu (%s)",
			 (unsigned long long)seed, (unsigned long long)it, o->name);
		check_compile(p, b.len, what);
		free(p);
	}
	free(b.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corpus_compiles),
		cmocka_unit_test(test_truncate_order_at_every_offset),
		cmocka_unit_test(test_truncate_corpus_every_nth_offset),
		cmocka_unit_test(test_delete_each_byte_of_order),
		cmocka_unit_test(test_random_mutations),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
