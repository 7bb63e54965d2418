/* botfactoryctl test: runs transcripts (scripted conversations) against a
 * spec. Running a transcript also writes the "actual" transcript: the same
 * input lines, with each expectation replaced by what the bot really did. A
 * transcript passes when the two are equal; otherwise a diff of the two is
 * printed. The format is documented in doc/testing.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "offline.h"

/* The virtual clock starts here (2026-01-01T00:00:00Z), so runs are
 * reproducible. */
#define TEST_EPOCH_MS 1767225600000LL

struct line {
	char *text; /* canonical form, owned */
	int lineno; /* in the transcript; 0 for lines only in the actual */
};

struct lines {
	struct line *v;
	size_t n, cap;
};

static int lines_add(struct lines *l, const char *text, size_t len, int lineno)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		struct line *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	char *p = strndup(text, len);
	if (!p)
		return -ENOMEM;
	l->v[l->n++] = (struct line){p, lineno};
	return 0;
}

static void lines_free(struct lines *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].text);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* Appends "<marker> <text>" with newlines and backslashes escaped. */
static int add_escaped(struct lines *l, char marker, const char *text, int lineno)
{
	struct buf b = BUF_INIT;
	int rc = buf_putc(&b, marker);
	if (!rc && text[0])
		rc = buf_putc(&b, ' ');
	for (const char *p = text; *p && !rc; p++) {
		if (*p == '\n')
			rc = buf_puts(&b, "\\n");
		else if (*p == '\\')
			rc = buf_puts(&b, "\\\\");
		else
			rc = buf_putc(&b, *p);
	}
	/* Telegram drops trailing blanks of a message; transcripts cannot
	 * show them either */
	while (!rc && b.len > 1 && (b.data[b.len - 1] == ' ' || b.data[b.len - 1] == '\t'))
		b.data[--b.len] = '\0';
	if (!rc)
		rc = lines_add(l, b.data, b.len, lineno);
	buf_free(&b);
	return rc;
}

/* Decodes the \n and \\ escapes of a transcript text, in place. */
static void unescape(char *s)
{
	char *w = s;
	for (char *p = s; *p; p++) {
		if (*p == '\\' && p[1] == 'n') {
			*w++ = '\n';
			p++;
		} else if (*p == '\\' && p[1] == '\\') {
			*w++ = '\\';
			p++;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
}

/* Collapses runs of blanks to one space (for `=` lines). */
static void squeeze(char *s)
{
	char *w = s;
	for (char *p = s; *p; p++) {
		if ((*p == ' ' || *p == '\t') && (w == s || w[-1] == ' '))
			continue;
		*w++ = *p == '\t' ? ' ' : *p;
	}
	while (w > s && w[-1] == ' ')
		w--;
	*w = '\0';
}

struct run {
	const char *path;
	struct sim sim;
	struct lines expected, actual;
	/* outputs of the last input not yet matched by an expectation */
	struct sim_outs pending;
	size_t next;   /* next pending output to match */
	long last_msg; /* index of the last message matched by '<', -1 */
	int error;     /* a hard error was reported (bad line, missing button) */
};

/* Moves every unmatched output into the actual transcript (they are extra). */
static int flush(struct run *r)
{
	int rc = 0;
	for (; r->next < r->pending.n && !rc; r->next++) {
		const struct sim_out *o = &r->pending.v[r->next];
		if (o->kind == SIM_NOTICE) {
			rc = add_escaped(&r->actual, '!', o->notice, 0);
			continue;
		}
		const struct sim_msg *m = &r->sim.msgs[o->msg];
		rc = add_escaped(&r->actual, '<', m->text, 0);
		if (!rc && m->nrows) {
			struct buf b = BUF_INIT;
			rc = buf_puts(&b, "= ");
			if (!rc)
				rc = sim_format_buttons(m, &b);
			if (!rc)
				rc = lines_add(&r->actual, b.data, b.len, 0);
			buf_free(&b);
		}
	}
	sim_outs_free(&r->pending);
	r->next = 0;
	return rc;
}

/* Takes the next pending output of the given kind, skipping (and recording
 * as extra) outputs of the other kind. Returns its index or -1. */
static long take(struct run *r, int kind)
{
	for (size_t i = r->next; i < r->pending.n; i++) {
		if ((int)r->pending.v[i].kind != kind)
			continue;
		/* earlier outputs of the other kind stay pending for their own
		 * expectation lines: swap this one forward */
		struct sim_out x = r->pending.v[i];
		memmove(&r->pending.v[r->next + 1], &r->pending.v[r->next],
			(i - r->next) * sizeof(x));
		r->pending.v[r->next] = x;
		return (long)r->next++;
	}
	return -1;
}

static int fail_line(struct run *r, int lineno, const char *fmt, const char *arg)
{
	fprintf(stderr, "%s:%d: ", r->path, lineno);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	r->error = 1;
	return 0;
}

static int do_input(struct run *r, char marker, char *text, int lineno)
{
	int rc = flush(r);
	if (rc)
		return rc;
	r->last_msg = -1; /* an '=' before this input's '<' checks no message */
	switch (marker) {
	case '>':
		unescape(text);
		return sim_text(&r->sim, text, &r->pending);
	case '*':
		rc = sim_press(&r->sim, text, &r->pending);
		if (rc == -ENOENT)
			return fail_line(r, lineno, "no button labelled '%s' on the bot's messages in this chat", text);
		if (rc == -EINVAL)
			return fail_line(r, lineno, "the button '%s' opens a URL; it cannot be pressed here", text);
		return rc;
	case '~': {
		int64_t ms;
		if (spec_parse_duration(text, &ms))
			return fail_line(r, lineno, "'~' takes a duration like 30s, 10m or 1h30m, not '%s'", text);
		return sim_advance(&r->sim, ms, &r->pending);
	}
	case '@':
		for (char *kv = strtok(text, " \t"); kv; kv = strtok(NULL, " \t")) {
			char *eq = strchr(kv, '=');
			if (!eq)
				return fail_line(r, lineno, "'@' takes key=value pairs, not '%s'", kv);
			*eq = '\0';
			if (sim_set(&r->sim, kv, eq + 1))
				return fail_line(r, lineno, "'@': unknown key or bad value '%s'", kv);
		}
		return 0;
	}
	return 0;
}

static int do_expect(struct run *r, char marker, char *text)
{
	long i;
	switch (marker) {
	case '<':
		i = take(r, SIM_MESSAGE);
		if (i < 0) {
			r->last_msg = -1;
			return 0; /* missing: nothing in the actual transcript */
		}
		r->last_msg = (long)r->pending.v[i].msg;
		return add_escaped(&r->actual, '<', r->sim.msgs[r->last_msg].text, 0);
	case '!':
		i = take(r, SIM_NOTICE);
		return i < 0 ? 0 : add_escaped(&r->actual, '!', r->pending.v[i].notice, 0);
	case '=': {
		(void)text;
		struct buf b = BUF_INIT;
		int rc = buf_putc(&b, '=');
		if (!rc && r->last_msg >= 0 && r->sim.msgs[r->last_msg].nrows) {
			rc = buf_putc(&b, ' ');
			if (!rc)
				rc = sim_format_buttons(&r->sim.msgs[r->last_msg], &b);
		}
		if (!rc) {
			squeeze(b.data);
			rc = lines_add(&r->actual, b.data, strlen(b.data), 0);
		}
		buf_free(&b);
		return rc;
	}
	}
	return 0;
}

/* Canonical expected line: marker, one space, text (escapes normalised). */
static int add_expected(struct run *r, char marker, const char *text, int lineno)
{
	char *t = strdup(text);
	if (!t)
		return -ENOMEM;
	int rc;
	if (marker == '=') {
		squeeze(t);
		struct buf b = BUF_INIT;
		rc = buf_printf(&b, "=%s%s", t[0] ? " " : "", t);
		if (!rc)
			rc = lines_add(&r->expected, b.data, b.len, lineno);
		buf_free(&b);
	} else {
		unescape(t);
		rc = add_escaped(&r->expected, marker, t, lineno);
	}
	free(t);
	return rc;
}

static int parse_and_run(struct run *r, FILE *f)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0, rc = 0;
	while (!rc && !r->error && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (memchr(line, '\0', (size_t)len)) { /* the rest would go unseen */
			fail_line(r, lineno, "%s", "a NUL byte in the line");
			break;
		}
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
			       line[len - 1] == ' ' || line[len - 1] == '\t'))
			line[--len] = '\0';
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		char marker = *p++;
		if (*p == ' ')
			p++;
		else if (*p != '\0') {
			fail_line(r, lineno, "a line starts with one of > < = * ! ~ @ # and a space: '%s'", line);
			break;
		}
		switch (marker) {
		case '>':
		case '*':
		case '~':
		case '@':
			if ((rc = add_expected(r, marker, p, lineno)))
				break;
			rc = do_input(r, marker, p, lineno);
			if (!rc && !r->error) {
				/* the actual transcript repeats the input as written */
				rc = lines_add(&r->actual, r->expected.v[r->expected.n - 1].text,
					       strlen(r->expected.v[r->expected.n - 1].text), 0);
			}
			break;
		case '<':
		case '!':
		case '=':
			if (!(rc = add_expected(r, marker, p, lineno)))
				rc = do_expect(r, marker, p);
			break;
		default: {
			char m[2] = {marker, '\0'};
			fail_line(r, lineno, "unknown line type '%s' (use > < = * ! ~ @ or #)", m);
			break;
		}
		}
	}
	/* a read error is not the end of the transcript (a directory, an I/O
	 * error): it fails, never passes */
	if (!rc && !r->error && ferror(f)) {
		fprintf(stderr, "%s: cannot read: %s\n", r->path, strerror(errno));
		r->error = 1;
	}
	free(line);
	if (!rc && !r->error)
		rc = flush(r);
	return rc;
}

/* Prints a diff of expected vs actual (longest common subsequence; both
 * lists are short), with up to 3 lines of context around each change. */
static int print_diff(const struct run *r)
{
	size_t n = r->expected.n, m = r->actual.n;
	unsigned *lcs = calloc((n + 1) * (m + 1), sizeof(*lcs));
	if (!lcs)
		return -ENOMEM;
#define L(i, j) lcs[(i) * (m + 1) + (j)]
	for (size_t i = n; i-- > 0;)
		for (size_t j = m; j-- > 0;)
			L(i, j) = !strcmp(r->expected.v[i].text, r->actual.v[j].text)
					  ? L(i + 1, j + 1) + 1
					  : (L(i + 1, j) > L(i, j + 1) ? L(i + 1, j) : L(i, j + 1));
	/* walk the table into a list of (op, line) */
	size_t cap = n + m, k = 0;
	char *op = malloc(cap ? cap : 1);
	const char **txt = malloc((cap ? cap : 1) * sizeof(*txt));
	int *ln = malloc((cap ? cap : 1) * sizeof(*ln));
	if (!op || !txt || !ln) {
		free(lcs);
		free(op);
		free(txt);
		free(ln);
		return -ENOMEM;
	}
	size_t i = 0, j = 0;
	while (i < n || j < m) {
		if (i < n && j < m && !strcmp(r->expected.v[i].text, r->actual.v[j].text)) {
			op[k] = ' ';
			ln[k] = r->expected.v[i].lineno;
			txt[k++] = r->expected.v[i].text;
			i++;
			j++;
		} else if (i < n && (j == m || L(i + 1, j) >= L(i, j + 1))) {
			op[k] = '-';
			ln[k] = r->expected.v[i].lineno;
			txt[k++] = r->expected.v[i].text;
			i++;
		} else {
			op[k] = '+';
			ln[k] = 0;
			txt[k++] = r->actual.v[j].text;
			j++;
		}
	}
#undef L
	int first = 0;
	for (size_t x = 0; x < k; x++)
		if (op[x] != ' ') {
			first = ln[x];
			for (size_t y = x; !first && y < k; y++)
				first = ln[y];
			break;
		}
	fprintf(stderr, "FAIL %s", r->path);
	if (first)
		fprintf(stderr, ":%d", first);
	fprintf(stderr, ": the conversation differs (- expected, + actual)\n");
	size_t shown_to = 0;
	for (size_t x = 0; x < k; x++) {
		if (op[x] == ' ')
			continue;
		size_t from = x >= 3 ? x - 3 : 0;
		if (from < shown_to)
			from = shown_to;
		else if (shown_to && from > shown_to)
			fprintf(stderr, "  ...\n");
		size_t to = x;
		while (to < k) { /* extend the hunk while changes come within 3 */
			size_t y = to;
			while (y < k && op[y] != ' ')
				y++;
			size_t z = y;
			while (z < k && op[z] == ' ' && z - y < 4)
				z++;
			if (z < k && op[z] != ' ' && z - y < 4) {
				to = z;
				continue;
			}
			to = y + 3 < k ? y + 3 : k;
			break;
		}
		for (size_t y = from; y < to; y++)
			fprintf(stderr, "%c %s\n", op[y], txt[y]);
		shown_to = to;
		x = to - 1;
	}
	free(lcs);
	free(op);
	free(txt);
	free(ln);
	return 0;
}

/* Runs one transcript file. Returns 0 pass, 1 fail, <0 error. */
static int run_one(const struct spec *spec, const char *username, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
		return 1;
	}
	struct run r = {.path = path, .last_msg = -1};
	sim_init(&r.sim, spec, TEST_EPOCH_MS);
	if (username)
		sim_set(&r.sim, "bot", username);
	int rc = parse_and_run(&r, f);
	fclose(f);
	int result = 0;
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(-rc));
		result = rc;
	} else if (r.error) {
		result = 1;
	} else {
		bool same = r.expected.n == r.actual.n;
		for (size_t i = 0; same && i < r.expected.n; i++)
			same = !strcmp(r.expected.v[i].text, r.actual.v[i].text);
		if (!same) {
			result = 1;
			if (print_diff(&r))
				result = -ENOMEM;
		}
	}
	sim_outs_free(&r.pending);
	lines_free(&r.expected);
	lines_free(&r.actual);
	sim_free(&r.sim);
	return result;
}

int cmd_test(int argc, char **argv)
{
	const char *username = NULL, *specfile = NULL;
	int first = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--bot-username") && i + 1 < argc) {
			username = argv[++i];
		} else if (!strcmp(argv[i], "--bot-username")) {
			return ctl_usage_error("test", "--bot-username needs a NAME");
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return ctl_usage_error("test", "unknown option '%s'", argv[i]);
		} else if (!specfile) {
			specfile = argv[i];
		} else {
			first = i;
			break;
		}
	}
	if (!specfile || !first)
		return ctl_usage_error("test", "needs a SPEC and at least one TRANSCRIPT");
	if (username && strlen(username) >= sizeof(((struct sim *)0)->bot_username))
		return ctl_usage_error("test", "--bot-username is too long");
	struct spec *spec = NULL;
	if (offline_load(specfile, stderr, &spec))
		return 1;
	int passed = 0, failed = 0;
	for (int i = first; i < argc; i++) {
		int rc = run_one(spec, username, argv[i]);
		if (rc == 0) {
			printf("PASS %s\n", argv[i]);
			passed++;
		} else {
			failed++;
		}
	}
	spec_free(spec);
	printf("%d transcript%s passed, %d failed\n", passed, passed == 1 ? "" : "s",
	       failed);
	return failed ? 1 : 0;
}
