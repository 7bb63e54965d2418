/* offline: spec loading and the simulated Telegram used by the ctl's
 * offline commands (see offline.h). The simulation feeds the same events the
 * daemon builds from Telegram updates into engine_step and keeps what the
 * bot sent, so that buttons can be pressed later. */
#include "offline.h"

#include "botfactory/specfile.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

int offline_load(const char *path, FILE *errs, struct spec **out)
{
	struct diags d = {0};
	int rc = specfile_load(path, out, &d);
	diags_sort(&d);
	for (size_t i = 0; i < d.n; i++) {
		if (d.v[i].line)
			fprintf(errs, "%s:%d:%d: %s\n", path, d.v[i].line, d.v[i].col,
				d.v[i].msg);
		else
			fprintf(errs, "%s: %s\n", path, d.v[i].msg);
	}
	if (rc == -ENOMEM)
		fprintf(errs, "%s: out of memory\n", path);
	diags_free(&d);
	return rc == -ENOMEM ? rc : rc ? -EINVAL : 0;
}

/* ---- simulation ------------------------------------------------------------ */

void sim_outs_free(struct sim_outs *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->v[i].notice);
	free(o->v);
	o->v = NULL;
	o->n = 0;
}

void sim_init(struct sim *s, const struct spec *spec, int64_t now_ms)
{
	memset(s, 0, sizeof(*s));
	s->spec = spec;
	s->now_ms = now_ms;
	snprintf(s->bot_username, sizeof(s->bot_username), "%s_bot", spec->id);
	for (char *p = s->bot_username; *p; p++)
		if (*p == '-')
			*p = '_';
	s->ctx.bot_username = s->bot_username;
	s->chat_id = s->user_id = 1001;
	s->chat_kind = CHAT_PRIVATE;
	strcpy(s->first_name, "Alice");
	strcpy(s->username, "alice");
	s->next_id = 1;
}

static void msg_free(struct sim_msg *m)
{
	free(m->text);
	for (size_t r = 0; r < m->nrows; r++) {
		for (size_t i = 0; i < m->rows[r].n; i++) {
			free(m->rows[r].v[i].text);
			free(m->rows[r].v[i].data);
			free(m->rows[r].v[i].url);
		}
		free(m->rows[r].v);
	}
	free(m->rows);
}

void sim_free(struct sim *s)
{
	for (size_t i = 0; i < s->nconvos; i++)
		convo_clear(&s->convos[i].st);
	free(s->convos);
	for (size_t i = 0; i < s->nmsgs; i++)
		msg_free(&s->msgs[i]);
	free(s->msgs);
	memset(s, 0, sizeof(*s));
}

static int parse_i64(const char *v, int64_t *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || !*v || *end)
		return -EINVAL;
	*out = x;
	return 0;
}

static int set_str(char *dst, size_t size, const char *v)
{
	if (strlen(v) >= size)
		return -EINVAL;
	strcpy(dst, v);
	return 0;
}

int sim_set(struct sim *s, const char *key, const char *v)
{
	if (!strcmp(key, "user"))
		return parse_i64(v, &s->user_id);
	if (!strcmp(key, "chat"))
		return parse_i64(v, &s->chat_id);
	if (!strcmp(key, "first_name"))
		return set_str(s->first_name, sizeof(s->first_name), v);
	if (!strcmp(key, "last_name"))
		return set_str(s->last_name, sizeof(s->last_name), v);
	if (!strcmp(key, "username"))
		return set_str(s->username, sizeof(s->username), v);
	if (!strcmp(key, "title"))
		return set_str(s->title, sizeof(s->title), v);
	if (!strcmp(key, "bot"))
		return set_str(s->bot_username, sizeof(s->bot_username), v);
	if (!strcmp(key, "type")) {
		if (!strcmp(v, "private"))
			s->chat_kind = CHAT_PRIVATE;
		else if (!strcmp(v, "group") || !strcmp(v, "supergroup"))
			s->chat_kind = CHAT_GROUP;
		else
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

/* The state of the current (chat, user), created idle when new. */
static struct sim_convo *convo_for(struct sim *s, int64_t chat, int64_t user)
{
	for (size_t i = 0; i < s->nconvos; i++)
		if (s->convos[i].chat_id == chat && s->convos[i].user_id == user)
			return &s->convos[i];
	struct sim_convo *v = realloc(s->convos, (s->nconvos + 1) * sizeof(*v));
	if (!v)
		return NULL;
	s->convos = v;
	memset(&v[s->nconvos], 0, sizeof(v[0]));
	v[s->nconvos].chat_id = chat;
	v[s->nconvos].user_id = user;
	v[s->nconvos].st = (struct convo)CONVO_INIT;
	return &v[s->nconvos++];
}

static int out_push(struct sim_outs *o, struct sim_out x)
{
	struct sim_out *v = realloc(o->v, (o->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	o->v = v;
	o->v[o->n++] = x;
	return 0;
}

/* Performs the actions as Telegram would: messages are stored (and get
 * ids), callback answers with a text become notices. */
static int perform(struct sim *s, struct actions *acts, struct sim_outs *out)
{
	int rc = 0;
	for (size_t i = 0; i < acts->n && !rc; i++) {
		struct action *a = &acts->v[i];
		if (a->kind == ACTION_ANSWER_CALLBACK) {
			if (a->text && a->text[0]) {
				rc = out_push(out, (struct sim_out){SIM_NOTICE, 0, a->text});
				if (!rc)
					a->text = NULL;
			}
			continue;
		}
		struct sim_msg *v = realloc(s->msgs, (s->nmsgs + 1) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->msgs = v;
		struct sim_msg *m = &v[s->nmsgs++];
		*m = (struct sim_msg){s->next_id++, a->chat_id, a->text, a->rows,
				      a->nrows, a->force_reply};
		a->text = NULL;
		a->rows = NULL;
		a->nrows = 0;
		rc = out_push(out, (struct sim_out){SIM_MESSAGE, s->nmsgs - 1, NULL});
	}
	return rc;
}

static int step(struct sim *s, struct sim_convo *c, struct event *ev,
		struct sim_outs *out)
{
	struct convo next;
	struct actions acts = {0};
	ev->now_ms = s->now_ms;
	int rc = engine_step(s->spec, &s->ctx, &c->st, ev, &next, &acts);
	if (rc)
		return rc;
	convo_clear(&c->st);
	c->st = next;
	rc = perform(s, &acts, out);
	actions_free(&acts);
	return rc;
}

/* Records the current speaker in c and describes them in ev. */
static void fill_event(struct sim *s, struct sim_convo *c, struct event *ev,
		       enum event_kind kind)
{
	if (kind != EVENT_TIMEOUT) {
		c->chat_kind = s->chat_kind;
		strcpy(c->first_name, s->first_name);
		strcpy(c->last_name, s->last_name);
		strcpy(c->username, s->username);
		strcpy(c->title, s->title);
	}
	memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->chat_id = c->chat_id;
	ev->chat_kind = c->chat_kind;
	ev->user_id = c->user_id;
	if (kind == EVENT_TIMEOUT)
		return; /* as in the daemon: a deadline knows no names or title
			   (on_timeout speaks with those the question stored) */
	ev->chat_title = c->title[0] ? c->title : NULL;
	ev->first_name = c->first_name;
	ev->last_name = c->last_name[0] ? c->last_name : NULL;
	ev->username = c->username[0] ? c->username : NULL;
}

int sim_text(struct sim *s, const char *text, struct sim_outs *out)
{
	struct sim_convo *c = convo_for(s, s->chat_id, s->user_id);
	if (!c)
		return -ENOMEM;
	struct event ev;
	fill_event(s, c, &ev, EVENT_MESSAGE);
	ev.message_id = s->next_id++;
	ev.text = text;
	return step(s, c, &ev, out);
}

int sim_press_button(struct sim *s, const struct sim_msg *m, const struct action_button *b,
		     struct sim_outs *out)
{
	if (!b->data)
		return -EINVAL;
	struct sim_convo *c = convo_for(s, s->chat_id, s->user_id);
	if (!c)
		return -ENOMEM;
	char cbid[32];
	snprintf(cbid, sizeof(cbid), "cb%" PRId64, s->next_id++);
	struct event ev;
	fill_event(s, c, &ev, EVENT_CALLBACK);
	ev.message_id = m->id;
	ev.callback_id = cbid;
	ev.callback_data = b->data;
	return step(s, c, &ev, out);
}

int sim_press(struct sim *s, const char *label, struct sim_outs *out)
{
	for (size_t k = s->nmsgs; k-- > 0;) {
		const struct sim_msg *m = &s->msgs[k];
		if (m->chat_id != s->chat_id)
			continue;
		for (size_t r = 0; r < m->nrows; r++)
			for (size_t i = 0; i < m->rows[r].n; i++)
				if (!strcmp(m->rows[r].v[i].text, label))
					return sim_press_button(s, m, &m->rows[r].v[i], out);
	}
	return -ENOENT;
}

int64_t sim_next_deadline(const struct sim *s)
{
	int64_t best = 0;
	for (size_t i = 0; i < s->nconvos; i++) {
		int64_t d = s->convos[i].st.deadline_ms;
		if (d && (!best || d < best))
			best = d;
	}
	return best;
}

int sim_advance(struct sim *s, int64_t ms, struct sim_outs *out)
{
	s->now_ms += ms;
	for (;;) {
		int64_t due = sim_next_deadline(s);
		if (!due || due > s->now_ms)
			return 0;
		for (size_t i = 0; i < s->nconvos; i++) {
			struct sim_convo *c = &s->convos[i];
			if (c->st.deadline_ms != due)
				continue;
			struct event ev;
			fill_event(s, c, &ev, EVENT_TIMEOUT);
			int rc = step(s, c, &ev, out);
			if (rc)
				return rc;
			if (c->st.deadline_ms == due) /* never fire twice */
				c->st.deadline_ms = 0;
			break;
		}
	}
}

const struct sim_msg *sim_last_keyboard(const struct sim *s)
{
	for (size_t k = s->nmsgs; k-- > 0;)
		if (s->msgs[k].chat_id == s->chat_id && s->msgs[k].nrows)
			return &s->msgs[k];
	return NULL;
}

int sim_format_buttons(const struct sim_msg *m, struct buf *out)
{
	int rc = 0;
	for (size_t r = 0; r < m->nrows && !rc; r++) {
		if (r)
			rc = buf_puts(out, " | ");
		for (size_t i = 0; i < m->rows[r].n && !rc; i++) {
			const struct action_button *b = &m->rows[r].v[i];
			rc = buf_printf(out, "%s[%s]", i ? " " : "", b->text);
			if (!rc && b->url)
				rc = buf_printf(out, "(%s)", b->url);
		}
	}
	return rc;
}
