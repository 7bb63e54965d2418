/* engine: runs one event through a spec's flows (see engine.h and the
 * conversation rules in doc/spec.md). Everything happens on a copy of the
 * state and a private action list, which are handed over only on success,
 * so a failed allocation never leaves a half-applied transition. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "botfactory/engine.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

/* Steps one event may execute before the engine gives up on a flow
 * (the validator already rejects goto loops without an ask). */
#define STEP_BUDGET 256

struct run {
	const struct spec *spec;
	const struct engine_ctx *ctx;
	const struct event *ev;
	struct convo *st;
	struct actions acts;
	int budget;
	int rc;
	char num[4][24];
	/* TIMEOUT: the names stored with the conversation (owned) */
	char *first_name, *last_name, *username;
};

/* ---- actions ---------------------------------------------------------- */

static void action_free(struct action *a)
{
	free(a->text);
	free(a->callback_id);
	for (size_t r = 0; r < a->nrows; r++) {
		for (size_t i = 0; i < a->rows[r].n; i++) {
			free(a->rows[r].v[i].text);
			free(a->rows[r].v[i].data);
			free(a->rows[r].v[i].url);
		}
		free(a->rows[r].v);
	}
	free(a->rows);
}

void actions_free(struct actions *a)
{
	for (size_t i = 0; i < a->n; i++)
		action_free(&a->v[i]);
	free(a->v);
	a->v = NULL;
	a->n = a->cap = 0;
}

/* Appends a zeroed action. Returns it, or NULL (r->rc = -ENOMEM). */
static struct action *push(struct run *r, enum action_kind kind)
{
	struct actions *a = &r->acts;
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 4;
		struct action *v = realloc(a->v, cap * sizeof(*v));
		if (!v) {
			r->rc = -ENOMEM;
			return NULL;
		}
		a->v = v;
		a->cap = cap;
	}
	struct action *x = &a->v[a->n++];
	memset(x, 0, sizeof(*x));
	x->kind = kind;
	x->chat_id = r->ev->chat_id;
	return x;
}

static void answer_callback(struct run *r, const struct template *notice);

/* ---- templates --------------------------------------------------------- */

static const char *lookup(void *p, const char *name)
{
	struct run *r = p;
	const struct event *ev = r->ev;
	if (!strncmp(name, "user.", 5)) {
		name += 5;
		if (!strcmp(name, "id")) {
			snprintf(r->num[0], sizeof(r->num[0]), "%" PRId64, ev->user_id);
			return r->num[0];
		}
		if (!strcmp(name, "first_name"))
			return ev->first_name ? ev->first_name : r->first_name;
		if (!strcmp(name, "last_name"))
			return ev->last_name ? ev->last_name : r->last_name;
		if (!strcmp(name, "username"))
			return ev->username ? ev->username : r->username;
		return NULL;
	}
	if (!strncmp(name, "chat.", 5)) {
		name += 5;
		if (!strcmp(name, "id")) {
			snprintf(r->num[1], sizeof(r->num[1]), "%" PRId64, ev->chat_id);
			return r->num[1];
		}
		if (!strcmp(name, "title"))
			return ev->chat_title;
		return NULL;
	}
	if (!strcmp(name, "bot.username"))
		return r->ctx->bot_username;
	if (!strcmp(name, "args"))
		return r->st->args;
	return convo_get(r->st, name);
}

/* Renders t for mode into a new string. Returns it (caller frees) or NULL
 * (r->rc = -ENOMEM). */
static char *render(struct run *r, const struct template *t, enum parse_mode mode)
{
	struct buf b = BUF_INIT;
	char *s = NULL;
	if (!template_render(t, mode, lookup, r, &b))
		s = buf_take(&b);
	buf_free(&b);
	if (!s)
		r->rc = -ENOMEM;
	return s;
}

/* ---- sending ------------------------------------------------------------- */

static int build_keyboard(struct run *r, const struct keyboard *kb,
			  struct action *a)
{
	if (!kb->nrows)
		return 0;
	a->rows = calloc(kb->nrows, sizeof(*a->rows));
	if (!a->rows)
		return -ENOMEM;
	a->nrows = kb->nrows;
	for (size_t i = 0; i < kb->nrows; i++) {
		const struct button_row *row = &kb->rows[i];
		a->rows[i].v = calloc(row->n ? row->n : 1, sizeof(*a->rows[i].v));
		if (!a->rows[i].v)
			return -ENOMEM;
		a->rows[i].n = row->n;
		for (size_t j = 0; j < row->n; j++) {
			const struct button *b = &row->v[j];
			struct action_button *ab = &a->rows[i].v[j];
			ab->text = render(r, b->label, PARSE_MODE_NONE);
			if (!ab->text)
				return -ENOMEM;
			if (!ab->text[0]) { /* Telegram rejects an empty label */
				free(ab->text);
				if (!(ab->text = strdup("\xe2\x80\xa2")))
					return -ENOMEM;
			}
			if (b->kind == BUTTON_URL)
				ab->url = strdup(b->url);
			else
				ab->data = strdup(b->code);
			if (!ab->url && !ab->data)
				return -ENOMEM;
		}
	}
	return 0;
}

/* Renders and sends text, split into as many messages as Telegram's limit
 * needs; the keyboard (or ForceReply) goes on the last one. Output that
 * renders to nothing visible is not sent. */
static void send(struct run *r, const struct template *t, enum parse_mode mode,
		 const struct keyboard *kb, bool force_reply)
{
	char *text = render(r, t, mode);
	char **chunks = NULL;
	if (!text)
		return;
	int n = markup_split(mode, text, strlen(text), MARKUP_MAX_MESSAGE, &chunks);
	if (n < 0 && n != -ENOMEM) {
		/* cannot happen: literal markup is checked at load and values
		 * are escaped; should it anyway, the text goes out as plain
		 * text rather than being lost to a 400 */
		mode = PARSE_MODE_NONE;
		n = markup_split(mode, text, strlen(text), MARKUP_MAX_MESSAGE, &chunks);
	}
	free(text);
	if (n < 0) {
		r->rc = -ENOMEM;
		return;
	}
	for (int i = 0; i < n; i++) {
		struct action *a = r->rc ? NULL : push(r, ACTION_SEND);
		if (!a) {
			free(chunks[i]);
			continue;
		}
		a->text = chunks[i];
		a->mode = mode;
		if (i == n - 1) {
			if (kb && build_keyboard(r, kb, a))
				r->rc = -ENOMEM;
			if (force_reply && !a->nrows) {
				a->force_reply = true;
				if (r->ev->kind == EVENT_MESSAGE)
					a->reply_to = r->ev->message_id;
			}
		}
	}
	free(chunks);
}

/* Sends a fixed text (no keyboard). */
static void say(struct run *r, const struct template *t)
{
	send(r, t, r->spec->mode, NULL, false);
}

/* Sends text that is already markup for `mode` (not a template). */
static void send_markup(struct run *r, const char *text, size_t len,
			enum parse_mode mode, const struct keyboard *kb,
			bool force_reply)
{
	struct template_part part = {0, (char *)text, len, 0};
	struct template t = {&part, 1};
	send(r, &t, mode, kb, force_reply);
}

static void answer_callback(struct run *r, const struct template *notice)
{
	struct action *a = push(r, ACTION_ANSWER_CALLBACK);
	if (!a)
		return;
	if (r->ev->callback_id && !(a->callback_id = strdup(r->ev->callback_id)))
		r->rc = -ENOMEM;
	if (notice && !(a->text = render(r, notice, PARSE_MODE_NONE)))
		r->rc = -ENOMEM;
	/* Telegram shows at most 200 characters: cut at a character */
	size_t chars = 0;
	for (char *p = a->text; p && *p; p++)
		if ((*p & 0xC0) != 0x80 && ++chars > SPEC_MAX_NOTICE) {
			*p = '\0';
			break;
		}
}

/* ---- running steps ---------------------------------------------------------- */

static bool in_group(const struct run *r)
{
	return r->ev->chat_kind != CHAT_PRIVATE;
}

static void prompt(struct run *r, const struct step *st, const struct template *t)
{
	send(r, t, st->mode, &st->kb, in_group(r));
}

/* Runs steps from `start` of list (which belongs to flow f, or to no flow for
 * fallback and on_timeout), following gotos, until the steps end or an ask
 * suspends the conversation. */
static void run_steps(struct run *r, const struct flow *f,
		      const struct step_list *list, size_t start)
{
	for (size_t i = start; i < list->n && !r->rc; i++) {
		const struct step *st = &list->v[i];
		if (--r->budget < 0) {
			convo_leave_flow(r->st);
			return;
		}
		switch (st->kind) {
		case STEP_REPLY:
			send(r, st->text, st->mode, &st->kb, false);
			break;
		case STEP_SET:
			for (size_t j = 0; j < st->nsets && !r->rc; j++) {
				char *v = st->sets[j].value
						  ? render(r, st->sets[j].value, PARSE_MODE_NONE)
						  : NULL;
				if (r->rc)
					break;
				if (convo_set(r->st, st->sets[j].var, v && v[0] ? v : NULL))
					r->rc = -ENOMEM;
				free(v);
			}
			break;
		case STEP_GOTO:
			f = spec_flow(r->spec, st->target);
			if (!f) /* cannot happen in a validated spec */
				break;
			list = &f->steps;
			i = (size_t)-1;
			break;
		case STEP_ASK:
			if (!f)
				break;
			if (convo_set_str(&r->st->flow, f->id) ||
			    convo_set_str(&r->st->ask, st->key)) {
				r->rc = -ENOMEM;
				return;
			}
			r->st->step = i;
			r->st->deadline_ms = st->timeout_ms ? r->ev->now_ms + st->timeout_ms : 0;
			if (st->timeout_ms &&
			    (convo_set_str(&r->st->first_name, lookup(r, "user.first_name")) ||
			     convo_set_str(&r->st->last_name, lookup(r, "user.last_name")) ||
			     convo_set_str(&r->st->username, lookup(r, "user.username")))) {
				r->rc = -ENOMEM;
				return;
			}
			prompt(r, st, st->text);
			return;
		}
	}
	convo_leave_flow(r->st);
}

static void start_flow(struct run *r, const struct flow *f, const char *args)
{
	convo_leave_flow(r->st);
	if (convo_set_str(&r->st->args, args && *args ? args : NULL)) {
		r->rc = -ENOMEM;
		return;
	}
	run_steps(r, f, &f->steps, 0);
}

static void run_fallback(struct run *r, const char *args)
{
	char *saved = NULL;
	/* fallback sees {{args}} = the input, without leaving a running ask */
	if (convo_set_str(&saved, r->st->args) ||
	    convo_set_str(&r->st->args, args)) {
		free(saved);
		r->rc = -ENOMEM;
		return;
	}
	char *flow = r->st->flow;
	r->st->flow = NULL; /* so that run_steps' end does not leave the ask */
	char *ask = r->st->ask;
	r->st->ask = NULL;
	size_t step = r->st->step;
	int64_t deadline = r->st->deadline_ms;
	/* and the names a timed question keeps for its on_timeout */
	char *names[3] = {r->st->first_name, r->st->last_name, r->st->username};
	r->st->first_name = r->st->last_name = r->st->username = NULL;
	run_steps(r, NULL, &r->spec->fallback, 0);
	if (!r->st->flow) { /* fallback did not start a flow: restore the ask */
		free(r->st->args);
		r->st->flow = flow;
		r->st->ask = ask;
		r->st->step = step;
		r->st->deadline_ms = deadline;
		r->st->args = saved;
		r->st->first_name = names[0];
		r->st->last_name = names[1];
		r->st->username = names[2];
	} else {
		free(flow);
		free(ask);
		free(saved);
		for (int i = 0; i < 3; i++)
			free(names[i]);
	}
}

/* Finds where the conversation waits: the ask step, or NULL when idle. A
 * state from an older spec is moved to the ask with the same key, or reset. */
static const struct step *current_ask(struct run *r, const struct flow **fp)
{
	struct convo *st = r->st;
	if (!st->flow)
		return NULL;
	const struct flow *f = spec_flow(r->spec, st->flow);
	if (f && st->ask) {
		if (st->step < f->steps.n && f->steps.v[st->step].kind == STEP_ASK &&
		    !strcmp(f->steps.v[st->step].key, st->ask)) {
			*fp = f;
			return &f->steps.v[st->step];
		}
		for (size_t i = 0; i < f->steps.n; i++) {
			if (f->steps.v[i].kind == STEP_ASK &&
			    !strcmp(f->steps.v[i].key, st->ask)) {
				st->step = i;
				*fp = f;
				return &f->steps.v[i];
			}
		}
	}
	convo_leave_flow(st);
	return NULL;
}

/* ---- answers ----------------------------------------------------------------- */

static void trim(const char *s, const char **start, size_t *len)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	*start = s;
	*len = n;
}

/* Appends a bound of a validation as people write numbers: a whole number
 * without exponent or sign of zero, anything else in the fewest digits that
 * read back as the same value. Returns 0 or -ENOMEM. */
static int put_bound(struct buf *b, double v)
{
	if (v == 0)
		return buf_putc(b, '0'); /* and not -0 */
	char s[400];
	if (v > -1e21 && v < 1e21) { /* a whole number: all its digits */
		snprintf(s, sizeof(s), "%.0f", v);
		if (strtod(s, NULL) == v)
			return buf_puts(b, s);
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(s, sizeof(s), "%.*g", prec, v);
		if (strtod(s, NULL) == v)
			break;
	}
	return buf_puts(b, s);
}

static void default_error(struct run *r, const struct step *st)
{
	struct buf b = BUF_INIT, esc = BUF_INIT;
	const char *what = st->vtype == VALIDATE_INTEGER ? "a whole number" : "a number";
	int rc = 0;
	if (st->vtype == VALIDATE_INTEGER || st->vtype == VALIDATE_NUMBER) {
		rc = buf_printf(&b, "Please send %s", what);
		if (!rc && st->has_min && st->has_max)
			rc = buf_puts(&b, " from ") || put_bound(&b, st->min) ||
			     buf_puts(&b, " to ") || put_bound(&b, st->max);
		else if (!rc && st->has_min)
			rc = buf_puts(&b, " of at least ") || put_bound(&b, st->min);
		else if (!rc && st->has_max)
			rc = buf_puts(&b, " of at most ") || put_bound(&b, st->max);
		if (!rc)
			rc = buf_putc(&b, '.');
	} else if (st->vtype == VALIDATE_REGEX) {
		rc = buf_puts(&b, "That doesn't look right. Please try again.");
	} else {
		rc = buf_puts(&b, "Please answer with a text message.");
	}
	if (!rc)
		rc = markup_escape(st->mode, &esc, b.data, b.len);
	if (rc)
		r->rc = -ENOMEM;
	else
		send_markup(r, esc.data, esc.len, st->mode, &st->kb, in_group(r));
	buf_free(&b);
	buf_free(&esc);
}

/* Checks a typed answer. Returns a malloc'ed normalised value, or NULL when
 * invalid (r->rc set on -ENOMEM). */
static char *check_answer(struct run *r, const struct step *st, const char *text)
{
	const char *s;
	size_t n;
	trim(text, &s, &n);
	char *v = strndup(s, n);
	if (!v) {
		r->rc = -ENOMEM;
		return NULL;
	}
	bool ok = n > 0;
	switch (st->vtype) {
	case VALIDATE_NONE:
		break;
	case VALIDATE_INTEGER: {
		char *end;
		errno = 0;
		long long x = ok ? strtoll(v, &end, 10) : 0;
		ok = ok && errno == 0 && *end == '\0' && !isspace((unsigned char)v[0]) &&
		     (!st->has_min || (double)x >= st->min) &&
		     (!st->has_max || (double)x <= st->max);
		if (ok) /* normalise "+007" to "7" */
			snprintf(v, n + 1, "%lld", x);
		break;
	}
	case VALIDATE_NUMBER: {
		for (char *p = v; *p; p++)
			if (*p == ',')
				*p = '.';
		char *end;
		errno = 0;
		double x = ok ? strtod(v, &end) : 0;
		ok = ok && errno == 0 && *end == '\0' && isfinite(x) &&
		     strspn(v, "+-0123456789.eE") == n &&
		     (!st->has_min || x >= st->min) && (!st->has_max || x <= st->max);
		break;
	}
	case VALIDATE_REGEX: {
		pcre2_match_data *md = pcre2_match_data_create_from_pattern(st->re, NULL);
		pcre2_match_context *mc = pcre2_match_context_create(NULL);
		if (!md || !mc) {
			r->rc = -ENOMEM;
			ok = false;
		} else {
			pcre2_set_match_limit(mc, 100000);
			ok = pcre2_match(st->re, (PCRE2_SPTR)v, n, 0,
					 PCRE2_ANCHORED | PCRE2_ENDANCHORED, md, mc) >= 0;
		}
		pcre2_match_data_free(md);
		pcre2_match_context_free(mc);
		break;
	}
	}
	if (!ok) {
		free(v);
		return NULL;
	}
	return v;
}

/* True when text[0..n) equals s ignoring case, for all of Unicode (PCRE2
 * folds case of non-ASCII letters in UTF mode: "да" equals "Да"). */
static bool same_caseless(struct run *r, const char *s, const char *text, size_t n)
{
	if (strlen(s) == n && !strncasecmp(s, text, n))
		return true;
	int err;
	PCRE2_SIZE off;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)s, strlen(s),
				       PCRE2_LITERAL | PCRE2_CASELESS | PCRE2_UTF |
					       PCRE2_ANCHORED | PCRE2_ENDANCHORED,
				       &err, &off, NULL);
	pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
	bool hit = false;
	if (!re && err != PCRE2_ERROR_HEAPLIMIT && err != PCRE2_ERROR_NOMEMORY)
		return false; /* a literal too long for PCRE2 (a label of ~32K
				 characters) matches by its exact case only */
	if (!md)
		r->rc = -ENOMEM;
	else
		hit = pcre2_match(re, (PCRE2_SPTR)text, n, 0, 0, md, NULL) >= 0;
	pcre2_match_data_free(md);
	pcre2_code_free(re);
	return hit;
}

/* Finds the choice a typed answer names (its value or its label, ignoring
 * case and surrounding space). Returns it (borrowed) or NULL. */
static const struct button *typed_choice(struct run *r, const struct step *st,
					 const char *text)
{
	const char *s;
	size_t n;
	trim(text, &s, &n);
	for (size_t i = 0; i < st->kb.nrows; i++)
		for (size_t j = 0; j < st->kb.rows[i].n; j++) {
			const struct button *b = &st->kb.rows[i].v[j];
			if (same_caseless(r, b->value, s, n))
				return b;
			char *label = render(r, b->label, PARSE_MODE_NONE);
			bool hit = label && same_caseless(r, label, s, n);
			free(label);
			if (hit)
				return b;
		}
	return NULL;
}

/* The user answered the pending ask st (of flow f) with text, or by pressing
 * the choice `choice`. */
static void answer(struct run *r, const struct flow *f, const struct step *st,
		   const char *text, const struct button *choice)
{
	char *value = NULL;
	if (st->kb.nrows) {
		if (!choice && text)
			choice = typed_choice(r, st, text);
		if (!choice) {
			if (r->rc)
				return;
			if (st->error)
				prompt(r, st, st->error);
			else /* a spec-wide text: in the spec's parse mode */
				send(r, r->spec->msg.invalid_choice, r->spec->mode, &st->kb,
				     in_group(r));
			return;
		}
		if (!(value = strdup(choice->value))) {
			r->rc = -ENOMEM;
			return;
		}
	} else {
		value = text ? check_answer(r, st, text) : NULL;
		if (!value) {
			if (r->rc)
				return;
			if (st->error)
				prompt(r, st, st->error);
			else
				default_error(r, st);
			return;
		}
	}
	if (st->save && convo_set(r->st, st->save, value))
		r->rc = -ENOMEM;
	free(value);
	if (r->rc)
		return;
	r->st->deadline_ms = 0;
	if (choice && choice->flow) {
		const struct flow *target = spec_flow(r->spec, choice->flow);
		if (target) {
			char *args = NULL;
			if (convo_set_str(&args, r->st->args)) {
				r->rc = -ENOMEM;
				return;
			}
			start_flow(r, target, args);
			free(args);
			return;
		}
	}
	run_steps(r, f, &f->steps, (size_t)(st - f->steps.v) + 1);
}

/* ---- input -------------------------------------------------------------------- */

static void unknown_command(struct run *r, const char *text)
{
	if (r->spec->fallback.n) {
		run_fallback(r, text);
		return;
	}
	if (in_group(r))
		return; /* a bot must not answer every stray command in a group */
	char *head = render(r, r->spec->msg.unknown_command, r->spec->mode);
	if (!head)
		return;
	struct buf b = BUF_INIT;
	int rc = buf_puts(&b, head);
	free(head);
	bool first = true;
	for (size_t i = 0; i < r->spec->nflows && !rc; i++) {
		const struct flow *f = &r->spec->flows[i];
		if (!f->description)
			continue;
		rc = buf_puts(&b, first ? "\n\n/" : "\n/");
		first = false;
		if (!rc)
			rc = markup_escape(r->spec->mode, &b, f->cmd, strlen(f->cmd));
		if (!rc)
			rc = markup_escape(r->spec->mode, &b, " - ", 3);
		if (!rc)
			rc = markup_escape(r->spec->mode, &b, f->description,
					   strlen(f->description));
	}
	if (rc)
		r->rc = -ENOMEM;
	else
		send_markup(r, b.data, b.len, r->spec->mode, NULL, false);
	buf_free(&b);
}

/* Splits "/cmd@bot args" into its parts. Returns false when text is not a
 * command (no '/', or a name outside [A-Za-z0-9_]). */
static bool parse_command(const char *text, char *name, size_t namesz,
			  const char **target, size_t *target_len, const char **args)
{
	if (text[0] != '/')
		return false;
	const char *p = text + 1;
	size_t n = 0;
	while (isalnum((unsigned char)p[n]) || p[n] == '_')
		n++;
	if (n == 0)
		return false;
	/* a name too long for any command (32 at most) is still a command:
	 * an unknown one (kept cut short: it matches no flow) */
	size_t keep = n < namesz ? n : namesz - 1;
	for (size_t i = 0; i < keep; i++)
		name[i] = (char)tolower((unsigned char)p[i]);
	name[keep] = '\0';
	p += n;
	*target = NULL;
	*target_len = 0;
	if (*p == '@') {
		*target = ++p;
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		*target_len = (size_t)(p - *target);
	}
	if (*p && !isspace((unsigned char)*p))
		return false;
	while (isspace((unsigned char)*p))
		p++;
	*args = p;
	return true;
}

static void on_text(struct run *r, const char *text)
{
	const struct flow *f = NULL;
	const struct step *ask = current_ask(r, &f);
	char name[64];
	const char *target, *args;
	size_t tlen;

	if (text && parse_command(text, name, sizeof(name), &target, &tlen, &args)) {
		const char *me = r->ctx->bot_username;
		if (target && me && (strlen(me) != tlen || strncasecmp(target, me, tlen)))
			return; /* /cmd@otherbot: not for us */
		const struct flow *cf = spec_flow_by_cmd(r->spec, name);
		if (cf) {
			start_flow(r, cf, args);
		} else if (!strcmp(name, "cancel")) {
			if (ask) {
				convo_leave_flow(r->st);
				say(r, r->spec->msg.cancelled);
			} else {
				say(r, r->spec->msg.nothing_to_cancel);
			}
		} else {
			unknown_command(r, text);
		}
		return;
	}
	if (ask) {
		answer(r, f, ask, text, NULL);
		return;
	}
	if (!text)
		return; /* a photo, a sticker...: nothing asked for it */
	for (size_t i = 0; i < r->spec->nflows; i++) {
		const struct flow *tf = &r->spec->flows[i];
		if (!tf->text_re)
			continue;
		pcre2_match_data *md = pcre2_match_data_create(1, NULL);
		pcre2_match_context *mc = pcre2_match_context_create(NULL);
		int m = -1;
		if (md && mc) {
			pcre2_set_match_limit(mc, 100000);
			m = pcre2_match(tf->text_re, (PCRE2_SPTR)text, strlen(text), 0,
					0, md, mc);
		} else {
			r->rc = -ENOMEM;
		}
		pcre2_match_data_free(md);
		pcre2_match_context_free(mc);
		if (r->rc)
			return;
		if (m >= 0) {
			start_flow(r, tf, text);
			return;
		}
	}
	if (r->spec->fallback.n)
		run_fallback(r, text);
}

static void on_callback(struct run *r)
{
	const char *data = r->ev->callback_data ? r->ev->callback_data : "";
	const struct button *b = NULL;
	if (button_classify(data) == BUTTON_DATA_CURRENT)
		b = spec_button(r->spec, data);
	if (!b) {
		answer_callback(r, r->spec->msg.stale_button);
		return;
	}
	const struct flow *f = NULL;
	const struct step *ask = current_ask(r, &f);
	switch (b->kind) {
	case BUTTON_FLOW:
		answer_callback(r, NULL);
		if ((f = spec_flow(r->spec, b->flow)))
			start_flow(r, f, NULL);
		break;
	case BUTTON_VALUE:
		answer_callback(r, NULL);
		on_text(r, b->value);
		break;
	case BUTTON_CHOICE:
		if (!ask || strcmp(f->id, b->ask_flow) || strcmp(ask->key, b->ask_key)) {
			answer_callback(r, r->spec->msg.expired_question);
			break;
		}
		answer_callback(r, NULL);
		answer(r, f, ask, NULL, b);
		break;
	case BUTTON_URL:
		answer_callback(r, NULL);
		break;
	}
}

static void on_timeout(struct run *r)
{
	const struct flow *f = NULL;
	const struct step *ask = current_ask(r, &f);
	if (!ask || !r->st->deadline_ms || r->ev->now_ms < r->st->deadline_ms)
		return; /* answered meanwhile, or not yet due */
	/* the user is not here: on_timeout speaks with the stored names */
	r->first_name = r->st->first_name;
	r->last_name = r->st->last_name;
	r->username = r->st->username;
	r->st->first_name = r->st->last_name = r->st->username = NULL;
	convo_leave_flow(r->st);
	if (ask->on_timeout.n)
		run_steps(r, NULL, &ask->on_timeout, 0);
}

int engine_step(const struct spec *spec, const struct engine_ctx *ctx,
		const struct convo *in, const struct event *ev,
		struct convo *out, struct actions *acts)
{
	struct convo st;
	struct run r = {.spec = spec, .ctx = ctx, .ev = ev, .st = &st,
			.budget = STEP_BUDGET};
	if (convo_copy(&st, in))
		return -ENOMEM;
	switch (ev->kind) {
	case EVENT_MESSAGE:
	case EVENT_CALLBACK:
		/* a question whose deadline passed before this input came (the
		 * daemon was down, or its timer is behind) timed out first: its
		 * on_timeout speaks, then the input is ordinary input. A message
		 * counts from when it was sent (the earlier of Telegram's date
		 * and now, against clock skew): an answer typed in time while the
		 * daemon was down is still an answer. */
		if (st.flow && st.deadline_ms &&
		    (ev->sent_ms && ev->sent_ms < ev->now_ms ? ev->sent_ms : ev->now_ms) >=
			    st.deadline_ms) {
			on_timeout(&r);
			free(r.first_name);
			free(r.last_name);
			free(r.username);
			r.first_name = r.last_name = r.username = NULL;
		}
		if (r.rc)
			break;
		if (ev->kind == EVENT_MESSAGE)
			on_text(&r, ev->text);
		else
			on_callback(&r);
		break;
	case EVENT_TIMEOUT:
		on_timeout(&r);
		break;
	}
	if (!r.rc && r.acts.n) {
		if (acts->cap - acts->n < r.acts.n) {
			struct action *v = realloc(acts->v, (acts->n + r.acts.n) * sizeof(*v));
			if (!v)
				r.rc = -ENOMEM;
			else {
				acts->v = v;
				acts->cap = acts->n + r.acts.n;
			}
		}
		if (!r.rc) {
			memcpy(acts->v + acts->n, r.acts.v, r.acts.n * sizeof(*r.acts.v));
			acts->n += r.acts.n;
			free(r.acts.v);
			r.acts.v = NULL;
			r.acts.n = 0;
		}
	}
	actions_free(&r.acts);
	free(r.first_name);
	free(r.last_name);
	free(r.username);
	if (r.rc) {
		convo_clear(&st);
		*out = (struct convo)CONVO_INIT;
		return r.rc;
	}
	*out = st;
	return 0;
}

/* ---- Bot API JSON ------------------------------------------------------------- */

/* The methods engine_action_json writes, by action kind. */
static const char *const methods[] = {
	[ACTION_SEND] = "sendMessage",
	[ACTION_ANSWER_CALLBACK] = "answerCallbackQuery",
};

const char *engine_method(const char *name)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (methods[i] && !strcmp(name, methods[i]))
			return methods[i];
	return NULL;
}

/* Appends `,"key":` and the JSON string v (',' left out at the start of
 * an object). `key` comes quoted, with its colon: `"text":`. */
static int put_str(struct buf *b, const char *key, const char *v)
{
	if (b->data[b->len - 1] != '{' && buf_putc(b, ','))
		return -ENOMEM;
	return buf_puts(b, key) || buf_json_string(b, v) ? -ENOMEM : 0;
}

/* The body is written directly (no cJSON tree: this runs for every reply
 * on the database thread), with cJSON's key order and escaping; the tests
 * parse it back. */
int engine_action_json(const struct action *a, bool with_chat,
		       const char **method, char **json)
{
	struct buf b = BUF_INIT;
	int rc = buf_putc(&b, '{');
	if (a->kind == ACTION_ANSWER_CALLBACK) {
		*method = methods[ACTION_ANSWER_CALLBACK];
		rc = rc || put_str(&b, "\"callback_query_id\":", a->callback_id ? a->callback_id : "") ||
		     (a->text && put_str(&b, "\"text\":", a->text));
	} else {
		*method = methods[ACTION_SEND];
		const char *pm = markup_mode_api_name(a->mode);
		rc = rc || (with_chat && buf_printf(&b, "\"chat_id\":%" PRId64, a->chat_id)) ||
		     put_str(&b, "\"text\":", a->text ? a->text : "") ||
		     (pm && put_str(&b, "\"parse_mode\":", pm)) ||
		     (a->reply_to &&
		      buf_printf(&b, ",\"reply_parameters\":{\"message_id\":%" PRId64
				     ",\"allow_sending_without_reply\":true}",
				 a->reply_to));
		if (a->nrows) {
			rc = rc || buf_puts(&b, ",\"reply_markup\":{\"inline_keyboard\":[");
			for (size_t i = 0; !rc && i < a->nrows; i++) {
				rc = (i && buf_putc(&b, ',')) || buf_putc(&b, '[');
				for (size_t j = 0; !rc && j < a->rows[i].n; j++) {
					const struct action_button *bt = &a->rows[i].v[j];
					rc = (j && buf_putc(&b, ',')) || buf_putc(&b, '{') ||
					     put_str(&b, "\"text\":", bt->text) ||
					     put_str(&b, bt->url ? "\"url\":" : "\"callback_data\":",
						     bt->url ? bt->url : bt->data) ||
					     buf_putc(&b, '}');
				}
				rc = rc || buf_putc(&b, ']');
			}
			rc = rc || buf_puts(&b, "]}");
		} else if (a->force_reply) {
			/* selective targets the user replied to; with no message
			 * to reply to it would target nobody */
			rc = rc || buf_puts(&b, a->reply_to ? ",\"reply_markup\":{\"force_reply\":true,\"selective\":true}"
							    : ",\"reply_markup\":{\"force_reply\":true}");
		}
	}
	if (rc || buf_putc(&b, '}') || !(*json = buf_take(&b))) {
		buf_free(&b);
		return -ENOMEM;
	}
	return 0;
}
