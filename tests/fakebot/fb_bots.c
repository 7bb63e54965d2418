/* fakebot per-bot state: the registry of bots by id, each bot's queue of
 * pending updates (offset confirmation, allowed_updates filtering), its record
 * of outgoing calls with the control API's waiters, its chats and messages,
 * its fault rules and the state document the control API returns. */
#include "fakebot.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- registry ---- */

struct bot *bots_get(struct server *s, int64_t id, bool create)
{
	struct bot *b = i64map_get(&s->bots, id);
	if (b || !create)
		return b;
	b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	b->id = id;
	b->next_update_id = 1;
	b->allowed_mask = ALLOWED_DEFAULT;
	b->rmax = s->max_sent;
	b->next_seq = 1;
	b->poll_throttle = s->poll_throttle;
	b->last_limit = 100;
	b->prev_poll_ms = -1e12; /* the first poll is never throttled */
	if (i64map_put(&s->bots, id, b)) {
		free(b);
		return NULL;
	}
	return b;
}

static void record_free(struct record *r)
{
	if (r->method_owned)
		free((char *)r->method);
	free(r->params);
	free(r->result);
	free(r->description);
	memset(r, 0, sizeof *r);
}

void fault_free(struct fault *f)
{
	if (!f)
		return;
	free(f->description);
	free(f->raw);
	free(f->spec);
	free(f);
}

struct fault *fault_dup(const struct fault *f)
{
	struct fault *d = malloc(sizeof *d);
	if (!d)
		return NULL;
	*d = *f;
	d->description = f->description ? strdup(f->description) : NULL;
	d->raw = f->raw ? strdup(f->raw) : NULL;
	d->spec = NULL;
	if ((f->description && !d->description) || (f->raw && !d->raw)) {
		fault_free(d);
		return NULL;
	}
	return d;
}

static void chat_free(struct chat *c)
{
	for (size_t i = 0; i < FB_MSG_KEEP; i++)
		free(c->msgs[i].json);
	free(c->title);
	free(c->first_name);
	free(c->username);
	free(c);
}

static void bot_free(struct bot *b)
{
	for (size_t i = 0; i < b->qlen; i++)
		free(b->q[b->qhead + i].json);
	free(b->q);
	for (size_t i = 0; i < b->rlen; i++)
		record_free(&b->rec[(b->rhead + i) % b->rcap]);
	free(b->rec);
	for (size_t i = 0; i < b->chats.cap; i++)
		if (b->chats.e[i].val)
			chat_free(b->chats.e[i].val);
	i64map_free(&b->chats);
	while (b->commands) {
		struct cmdset *n = b->commands->next;
		free(b->commands->scope_key);
		free(b->commands->scope_json);
		free(b->commands->lang);
		free(b->commands->commands);
		free(b->commands);
		b->commands = n;
	}
	bot_clear_faults(b);
	free(b->faults);
	free(b->cb_state);
	free(b->secret);
	free(b->username);
	free(b->first_name);
	free(b->webhook);
	free(b->allowed_json);
	free(b);
}

void bots_delete(struct server *s, struct bot *b)
{
	/* answer everything that waits on this bot before it goes away */
	if (b->held_poll)
		botapi_answer_poll(b->held_poll);
	while (b->sent_waiters.head)
		control_answer_sent(b->sent_waiters.head, true);
	while (b->state_waiters.head)
		control_answer_state(b->state_waiters.head, true);
	i64map_del(&s->bots, b->id);
	bot_free(b);
}

void bots_delete_all(struct server *s)
{
	while (s->bots.n) {
		for (size_t i = 0; i < s->bots.cap; i++) {
			if (s->bots.e[i].val) {
				bots_delete(s, s->bots.e[i].val);
				break;
			}
		}
	}
	i64map_free(&s->bots);
}

/* ---- hold lists ---- */

void holdlist_add(struct holdlist *l, struct conn *c)
{
	c->hold.prev = NULL;
	c->hold.next = l->head;
	if (l->head)
		l->head->hold.prev = c;
	l->head = c;
}

void holdlist_remove(struct holdlist *l, struct conn *c)
{
	if (c->hold.prev)
		c->hold.prev->hold.next = c->hold.next;
	else if (l->head == c)
		l->head = c->hold.next;
	if (c->hold.next)
		c->hold.next->hold.prev = c->hold.prev;
	c->hold.prev = c->hold.next = NULL;
}

/* ---- updates ---- */

static void kind_count(struct bot *b, int kind, int delta)
{
	b->kind_counts[kind] = (uint32_t)((int64_t)b->kind_counts[kind] + delta);
}

int bot_push_update(struct bot *b, int kind, cJSON *update, int64_t *id_out)
{
	int64_t id = b->next_update_id;
	cJSON_DeleteItemFromObjectCaseSensitive(update, "update_id");
	char *body = cJSON_PrintUnformatted(update);
	if (!body)
		return -1;
	/* update_id goes first, as Telegram writes it */
	struct fbuf j = {0};
	fbuf_printf(&j, "{\"update_id\":%" PRId64, id);
	if (strcmp(body, "{}")) {
		fbuf_add(&j, ",", 1);
		fbuf_puts(&j, body + 1);
	} else {
		fbuf_add(&j, "}", 1);
	}
	free(body);
	if (j.oom) {
		fbuf_free(&j);
		return -1;
	}
	char *json = j.data;
	if (b->qhead + b->qlen == b->qcap) {
		if (b->qhead > 0) {
			memmove(b->q, b->q + b->qhead, b->qlen * sizeof *b->q);
			b->qhead = 0;
		} else {
			size_t cap = b->qcap ? b->qcap * 2 : 16;
			struct upd *q = realloc(b->q, cap * sizeof *q);
			if (!q) {
				free(json);
				return -1;
			}
			b->q = q;
			b->qcap = cap;
		}
	}
	if (b->qlen && id <= b->q_max_id)
		b->q_unsorted = true;
	if (!b->qlen || id > b->q_max_id)
		b->q_max_id = id;
	struct upd *u = &b->q[b->qhead + b->qlen++];
	u->id = id;
	u->kind = (uint8_t)kind;
	u->json = json;
	u->len = (uint32_t)j.len;
	kind_count(b, kind, +1);
	b->next_update_id = id + 1;
	*id_out = id;
	return 0;
}

static void drop_front(struct bot *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct upd *u = &b->q[b->qhead + i];
		kind_count(b, u->kind, -1);
		free(u->json);
	}
	b->qhead += n;
	b->qlen -= n;
	if (!b->qlen) {
		b->qhead = 0;
		b->q_unsorted = false;
	}
}

/* Removes the pending updates for which drop() is true, keeping the order. */
static size_t compact(struct bot *b, bool (*drop)(const struct bot *, const struct upd *, int64_t),
		      int64_t arg)
{
	size_t w = 0, removed = 0;
	for (size_t r = 0; r < b->qlen; r++) {
		struct upd *u = &b->q[b->qhead + r];
		if (drop(b, u, arg)) {
			kind_count(b, u->kind, -1);
			free(u->json);
			removed++;
		} else {
			b->q[b->qhead + w++] = *u;
		}
	}
	b->qlen = w;
	if (!b->qlen) {
		b->qhead = 0;
		b->q_unsorted = false;
	}
	return removed;
}

static bool below(const struct bot *b, const struct upd *u, int64_t offset)
{
	(void)b;
	return u->id < offset;
}

static bool disallowed(const struct bot *b, const struct upd *u, int64_t unused)
{
	(void)unused;
	return !(b->allowed_mask & KIND_BIT(u->kind));
}

void bot_clear_updates(struct bot *b)
{
	drop_front(b, b->qlen);
}

void bot_confirm(struct bot *b, int64_t offset)
{
	if (offset == 0 || !b->qlen)
		return;
	if (offset < 0) {
		/* keep the last -offset updates, forget the others */
		uint64_t keep = (uint64_t)0 - (uint64_t)offset;
		if (keep < b->qlen)
			drop_front(b, b->qlen - (size_t)keep);
		return;
	}
	/* Telegram's queue ignores an offset more than 10 past the next id
	 * ("from_id is in the future") and answers from the queue's head */
	if (offset > b->next_update_id + 10)
		return;
	size_t n = 0;
	while (n < b->qlen && b->q[b->qhead + n].id < offset)
		n++;
	drop_front(b, n);
	if (b->q_unsorted)
		compact(b, below, offset);
}

void bot_prune(struct bot *b)
{
	uint32_t present = 0;
	for (int k = 0; k < K__COUNT; k++)
		if (b->kind_counts[k])
			present |= KIND_BIT(k);
	if (!(present & ~b->allowed_mask))
		return;
	b->filtered_updates += (int64_t)compact(b, disallowed, 0);
}

void bot_deliver(struct bot *b, struct fbuf *out, int64_t limit)
{
	fbuf_add(out, "[", 1);
	size_t n = b->qlen < (uint64_t)limit ? b->qlen : (size_t)limit;
	for (size_t i = 0; i < n; i++) {
		if (i)
			fbuf_add(out, ",", 1);
		fbuf_add(out, b->q[b->qhead + i].json, b->q[b->qhead + i].len);
	}
	fbuf_add(out, "]", 1);
	b->updates_delivered += (int64_t)n;
}

void bot_wake_poll(struct bot *b)
{
	if (!b->held_poll)
		return;
	bot_prune(b);
	if (b->qlen)
		botapi_answer_poll(b->held_poll);
}

void bot_changed(struct bot *b)
{
	struct conn *c = b->state_waiters.head;
	while (c) {
		struct conn *next = c->hold.next;
		if (control_state_ready(c))
			control_answer_state(c, false);
		c = next;
	}
}

/* ---- recorded calls ---- */

void bot_set_max_sent(struct bot *b, size_t max)
{
	if (max < 1)
		max = 1;
	/* drop the oldest records beyond the new bound, then linearize */
	while (b->rlen > max) {
		record_free(&b->rec[b->rhead]);
		b->rhead = (b->rhead + 1) % b->rcap;
		b->rlen--;
		b->rec_dropped++;
	}
	if (b->rcap > max) {
		struct record *n = calloc(max, sizeof *n);
		if (!n) {
			b->rmax = b->rcap; /* keep what is there */
			return;
		}
		for (size_t i = 0; i < b->rlen; i++)
			n[i] = b->rec[(b->rhead + i) % b->rcap];
		free(b->rec);
		b->rec = n;
		b->rcap = max;
		b->rhead = 0;
	}
	b->rmax = max;
}

/* Makes room for one more record: grows the ring up to rmax, then evicts. */
static struct record *record_slot(struct bot *b)
{
	if (b->rlen == b->rcap && b->rcap < b->rmax) {
		size_t cap = b->rcap ? b->rcap * 2 : 64;
		if (cap > b->rmax)
			cap = b->rmax;
		struct record *n = calloc(cap, sizeof *n);
		if (n) {
			for (size_t i = 0; i < b->rlen; i++)
				n[i] = b->rec[(b->rhead + i) % b->rcap];
			free(b->rec);
			b->rec = n;
			b->rcap = cap;
			b->rhead = 0;
		} else if (!b->rcap) {
			return NULL;
		}
	}
	if (b->rlen == b->rcap) {
		record_free(&b->rec[b->rhead]);
		b->rhead = (b->rhead + 1) % b->rcap;
		b->rlen--;
		b->rec_dropped++;
	}
	return &b->rec[(b->rhead + b->rlen++) % b->rcap];
}

bool record_matches(const struct record *r, const char *method, bool all)
{
	if (!all && r->error_code)
		return false;
	return !method || !*method || !strcasecmp(method, r->method);
}

void bot_record(struct bot *b, const char *method, size_t mlen, int midx,
		const cJSON *params, int error_code, const char *description,
		const char *result, size_t rlen)
{
	struct record *r = record_slot(b);
	if (!r)
		return; /* out of memory: the call goes unrecorded */
	memset(r, 0, sizeof *r);
	r->seq = b->next_seq++;
	r->at_ms = fb_now_ms();
	if (midx != M_UNKNOWN) {
		r->method = api_method_names[midx];
	} else {
		char *m = fb_strndup(method, mlen > 63 ? 63 : mlen);
		r->method = m ? m : api_method_names[M_UNKNOWN];
		r->method_owned = m != NULL;
	}
	r->error_code = error_code;
	if (params && params->child)
		r->params = cJSON_PrintUnformatted(params);
	if (result)
		r->result = fb_strndup(result, rlen);
	if (description)
		r->description = strdup(description);

	struct conn *c = b->sent_waiters.head;
	while (c) {
		struct conn *next = c->hold.next;
		if (record_matches(r, c->hold.method, c->hold.all) &&
		    ++c->hold.count >= c->hold.min)
			control_answer_sent(c, false);
		c = next;
	}
}

static void record_json(struct fbuf *o, const struct record *r)
{
	fbuf_printf(o, "{\"seq\":%" PRId64 ",\"method\":", r->seq);
	fbuf_json_str(o, r->method, strlen(r->method));
	fbuf_printf(o, ",\"at_ms\":%.3f,\"ok\":%s", r->at_ms,
		    r->error_code ? "false" : "true");
	fbuf_puts(o, ",\"params\":");
	fbuf_puts(o, r->params ? r->params : "{}");
	if (r->error_code) {
		fbuf_printf(o, ",\"error_code\":%d,\"description\":", r->error_code);
		const char *d = r->description ? r->description : "";
		fbuf_json_str(o, d, strlen(d));
	} else if (r->result) {
		fbuf_puts(o, ",\"result\":");
		fbuf_puts(o, r->result);
	}
	fbuf_add(o, "}", 1);
}

/* Index of the first record with seq > after (records are in seq order). */
static size_t first_after(const struct bot *b, int64_t after)
{
	size_t lo = 0, hi = b->rlen;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->rec[(b->rhead + mid) % b->rcap].seq <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int64_t bot_count_sent(struct bot *b, int64_t after, const char *method, bool all)
{
	int64_t n = 0;
	for (size_t i = first_after(b, after); i < b->rlen; i++)
		n += record_matches(&b->rec[(b->rhead + i) % b->rcap], method, all);
	return n;
}

void bot_sent_json(struct bot *b, struct fbuf *out, int64_t after,
		   const char *method, bool all, int64_t limit, bool timed_out)
{
	size_t lo = first_after(b, after);
	fbuf_puts(out, "{\"calls\":[");
	int64_t n = 0;
	for (size_t i = lo; i < b->rlen && (limit <= 0 || n < limit); i++) {
		const struct record *r = &b->rec[(b->rhead + i) % b->rcap];
		if (!record_matches(r, method, all))
			continue;
		if (n++)
			fbuf_add(out, ",", 1);
		record_json(out, r);
	}
	fbuf_printf(out, "],\"last_seq\":%" PRId64 ",\"dropped\":%" PRId64
		    ",\"timed_out\":%s}",
		    b->next_seq - 1, b->rec_dropped, timed_out ? "true" : "false");
}

/* ---- chats ---- */

const char *default_chat_type(int64_t chat_id)
{
	return chat_id > 0 ? "private" : "supergroup";
}

struct chat *chat_get(struct bot *b, int64_t id, bool create)
{
	struct chat *c = i64map_get(&b->chats, id);
	if (c || !create)
		return c;
	c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->id = id;
	c->next_msg_id = 1;
	snprintf(c->type, sizeof c->type, "%s", default_chat_type(id));
	if (i64map_put(&b->chats, id, c)) {
		free(c);
		return NULL;
	}
	return c;
}

void chat_json(struct fbuf *o, const struct chat *c)
{
	fbuf_printf(o, "{\"id\":%" PRId64, c->id);
	if (!strcmp(c->type, "private")) {
		fbuf_puts(o, ",\"first_name\":");
		if (c->first_name) {
			fbuf_json_str(o, c->first_name, strlen(c->first_name));
		} else {
			fbuf_printf(o, "\"User %" PRId64 "\"", c->id);
		}
		if (c->username) {
			fbuf_puts(o, ",\"username\":");
			fbuf_json_str(o, c->username, strlen(c->username));
		}
	} else {
		fbuf_puts(o, ",\"title\":");
		if (c->title) {
			fbuf_json_str(o, c->title, strlen(c->title));
		} else {
			fbuf_printf(o, "\"Chat %" PRId64 "\"", c->id);
		}
	}
	fbuf_puts(o, ",\"type\":");
	fbuf_json_str(o, c->type, strlen(c->type));
	fbuf_add(o, "}", 1);
}

const struct msg *chat_find_msg(const struct chat *c, int64_t message_id)
{
	if (message_id <= 0)
		return NULL;
	const struct msg *m = &c->msgs[(uint64_t)message_id % FB_MSG_KEEP];
	return m->json && m->id == message_id ? m : NULL;
}

int chat_store_msg(struct chat *c, int64_t message_id, const char *json,
		   size_t len)
{
	if (message_id <= 0)
		return 0;
	char *copy = fb_strndup(json, len);
	if (!copy)
		return -1;
	struct msg *m = &c->msgs[(uint64_t)message_id % FB_MSG_KEEP];
	free(m->json);
	m->id = message_id;
	m->json = copy;
	return 0;
}

/* ---- faults ---- */

struct fault *bot_take_fault(struct bot *b, const char *method, size_t mlen,
			     bool has_chat, int64_t chat_id)
{
	for (size_t i = 0; i < b->nfaults; i++) {
		struct fault *f = b->faults[i];
		if (strcmp(f->method, "*") &&
		    (strlen(f->method) != mlen || strncasecmp(f->method, method, mlen)))
			continue;
		if (f->has_chat && (!has_chat || f->chat_id != chat_id))
			continue;
		if (f->remaining > 1) {
			f->remaining--;
			return fault_dup(f);
		}
		if (f->remaining <= 0)
			return fault_dup(f);
		/* last use: hand the rule itself over */
		memmove(&b->faults[i], &b->faults[i + 1],
			(b->nfaults - i - 1) * sizeof *b->faults);
		b->nfaults--;
		f->remaining = 0;
		return f;
	}
	return NULL;
}

void bot_clear_faults(struct bot *b)
{
	for (size_t i = 0; i < b->nfaults; i++)
		fault_free(b->faults[i]);
	b->nfaults = 0;
}

/* ---- state ---- */

static void add_json_text(cJSON *obj, const char *name, const char *json)
{
	cJSON *v = json ? cJSON_Parse(json) : NULL;
	if (!v)
		v = cJSON_CreateNull();
	if (v && !cJSON_AddItemToObject(obj, name, v))
		cJSON_Delete(v);
}

cJSON *bot_state_json(struct bot *b)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	char uname[64];
	snprintf(uname, sizeof uname, "bot%" PRId64 "_bot", b->id);
	bool ok = true;
	ok &= cJSON_AddNumberToObject(o, "id", (double)b->id) != NULL;
	ok &= cJSON_AddStringToObject(o, "username",
				      b->username ? b->username : uname) != NULL;
	ok &= cJSON_AddBoolToObject(o, "token_bound", b->secret != NULL) != NULL;
	ok &= cJSON_AddBoolToObject(o, "invalid_token", b->invalid_token) != NULL;
	if (b->webhook)
		ok &= cJSON_AddStringToObject(o, "webhook", b->webhook) != NULL;
	else
		ok &= cJSON_AddNullToObject(o, "webhook") != NULL;
	ok &= cJSON_AddNumberToObject(o, "get_updates_calls",
				      (double)b->get_updates_calls) != NULL;
	ok &= cJSON_AddNumberToObject(o, "held_polls", b->held_poll ? 1 : 0) != NULL;
	ok &= cJSON_AddNumberToObject(o, "polls_held_total",
				      (double)b->polls_held_total) != NULL;
	ok &= cJSON_AddNumberToObject(o, "pending_updates", (double)b->qlen) != NULL;
	ok &= cJSON_AddNumberToObject(o, "next_update_id",
				      (double)b->next_update_id) != NULL;
	ok &= cJSON_AddNumberToObject(o, "updates_delivered",
				      (double)b->updates_delivered) != NULL;
	ok &= cJSON_AddNumberToObject(o, "filtered_updates",
				      (double)b->filtered_updates) != NULL;
	if (b->has_offset)
		ok &= cJSON_AddNumberToObject(o, "last_offset",
					      (double)b->last_offset) != NULL;
	else
		ok &= cJSON_AddNullToObject(o, "last_offset") != NULL;
	ok &= cJSON_AddNumberToObject(o, "last_timeout", (double)b->last_timeout) != NULL;
	ok &= cJSON_AddNumberToObject(o, "last_limit", (double)b->last_limit) != NULL;
	ok &= cJSON_AddBoolToObject(o, "last_had_allowed_updates", b->last_had_allowed) != NULL;
	add_json_text(o, "allowed_updates", b->allowed_json);
	cJSON *eff = cJSON_AddArrayToObject(o, "effective_allowed_updates");
	ok &= eff != NULL;
	for (int k = 0; eff && k < K_UNKNOWN; k++) {
		if (!(b->allowed_mask & KIND_BIT(k)))
			continue;
		cJSON *s = cJSON_CreateString(upd_kind_names[k]);
		if (!s || !cJSON_AddItemToArray(eff, s)) {
			cJSON_Delete(s);
			ok = false;
		}
	}
	ok &= cJSON_AddNumberToObject(o, "conflicts_sent", (double)b->conflicts_sent) != NULL;
	ok &= cJSON_AddNumberToObject(o, "sent_count", (double)(b->next_seq - 1)) != NULL;
	ok &= cJSON_AddNumberToObject(o, "sent_dropped", (double)b->rec_dropped) != NULL;
	ok &= cJSON_AddNumberToObject(o, "faults_pending", (double)b->nfaults) != NULL;
	ok &= cJSON_AddNumberToObject(o, "chats", (double)b->chats.n) != NULL;
	ok &= cJSON_AddNumberToObject(o, "set_my_commands_calls",
				      (double)b->set_commands_calls) != NULL;
	ok &= cJSON_AddBoolToObject(o, "poll_throttle", b->poll_throttle) != NULL;
	ok &= cJSON_AddBoolToObject(o, "strict_chats", b->strict_chats) != NULL;
	ok &= cJSON_AddNumberToObject(o, "max_sent", (double)b->rmax) != NULL;

	const struct cmdset *def = NULL;
	cJSON *scopes = cJSON_AddArrayToObject(o, "commands_by_scope");
	ok &= scopes != NULL;
	for (const struct cmdset *cs = b->commands; scopes && cs; cs = cs->next) {
		if (!strcmp(cs->scope_key, "default") && !*cs->lang)
			def = cs;
		cJSON *e = cJSON_CreateObject();
		if (!e || !cJSON_AddItemToArray(scopes, e)) {
			cJSON_Delete(e);
			ok = false;
			continue;
		}
		add_json_text(e, "scope", cs->scope_json);
		ok &= cJSON_AddStringToObject(e, "language_code", cs->lang) != NULL;
		add_json_text(e, "commands", cs->commands);
	}
	add_json_text(o, "commands", def ? def->commands : "[]");
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}
