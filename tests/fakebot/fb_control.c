/* fakebot control API: /control/... on the same port, JSON in and out. Tests
 * inject updates (shorthand messages, button presses, raw updates), configure
 * a bot, read what it sent (long-polling until enough calls arrived), read or
 * wait for its state, and queue fault rules. Bots are addressed by numeric id. */
#include "fakebot.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char json_type[] = "application/json";

static void ctl_error(struct conn *c, int status, const char *msg)
{
	struct fbuf *o = &c->srv->body;
	fbuf_clear(o);
	fbuf_puts(o, "{\"error\":");
	fbuf_json_str(o, msg, strlen(msg));
	fbuf_add(o, "}", 1);
	conn_respond_body(c, status);
}

/* Answers obj (and frees it); NULL means it could not be built. */
static void ctl_json(struct conn *c, cJSON *obj)
{
	char *t = obj ? cJSON_PrintUnformatted(obj) : NULL;
	cJSON_Delete(obj);
	if (!t) {
		ctl_error(c, 500, "fakebot: out of memory");
		return;
	}
	conn_respond(c, 200, json_type, t, strlen(t));
	free(t);
}

static bool is_int(const cJSON *obj, const char *name)
{
	int64_t v;
	return param_i64(obj, name, &v) != -1;
}

static int64_t get_i64(const cJSON *obj, const char *name, int64_t dflt)
{
	int64_t v;
	return param_i64(obj, name, &v) == 0 ? v : dflt;
}

/* ---- injected updates ---- */

static const char *const message_kinds[] = {
	"message", "edited_message", "channel_post", "edited_channel_post",
	"business_message", "edited_business_message",
};

static const char *validate_update(const cJSON *u)
{
	if (!cJSON_IsObject(u))
		return "each update must be a JSON object";
	const cJSON *raw = cJSON_GetObjectItemCaseSensitive(u, "update");
	if (raw)
		return cJSON_IsObject(raw) ? NULL : "\"update\" must be an object";
	static const char *const ints[] = {
		"user_id", "chat_id", "message_id", "date", "reply_to_message_id",
	};
	for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
		if (!is_int(u, ints[i]))
			return "user_id, chat_id, message_id, date and reply_to_message_id must be integers";
	static const char *const strs[] = {
		"chat_type", "first_name", "last_name", "username", "language_code",
		"chat_title", "kind",
	};
	for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
		const cJSON *it = cJSON_GetObjectItemCaseSensitive(u, strs[i]);
		if (it && !cJSON_IsString(it))
			return "chat_type, first_name, last_name, username, language_code, chat_title and kind must be strings";
	}
	const char *ct = param_str(u, "chat_type");
	if (ct && strcmp(ct, "private") && strcmp(ct, "group") &&
	    strcmp(ct, "supergroup") && strcmp(ct, "channel"))
		return "chat_type must be private, group, supergroup or channel";
	if (get_i64(u, "user_id", 1) == 0 || get_i64(u, "chat_id", 1) == 0)
		return "user_id and chat_id must not be 0";
	const cJSON *cd = cJSON_GetObjectItemCaseSensitive(u, "callback_data");
	if (cd) {
		if (!cJSON_IsString(cd))
			return "callback_data must be a string";
		if (get_i64(u, "message_id", 0) <= 0)
			return "a callback needs the message_id of the bot's message";
		return NULL;
	}
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(u, "text");
	if (!cJSON_IsString(t))
		return "an update needs \"text\", \"callback_data\" or \"update\"";
	const char *kind = param_str(u, "kind");
	if (kind) {
		size_t i;
		for (i = 0; i < sizeof message_kinds / sizeof *message_kinds; i++)
			if (!strcmp(kind, message_kinds[i]))
				break;
		if (i == sizeof message_kinds / sizeof *message_kinds)
			return "kind must be one of message, edited_message, channel_post, edited_channel_post, business_message, edited_business_message";
		if (!strncmp(kind, "edited_", 7) && get_i64(u, "message_id", 0) <= 0)
			return "an edit needs message_id";
	}
	return NULL;
}

static int set_str(char **dst, const char *v)
{
	if (!v)
		return 0;
	char *copy = strdup(v);
	if (!copy)
		return -1;
	free(*dst);
	*dst = copy;
	return 0;
}

/* The user object of an injected update. */
static cJSON *user_json(const cJSON *u, int64_t user_id)
{
	cJSON *o = cJSON_CreateObject();
	char fn[48];
	snprintf(fn, sizeof fn, "User %" PRId64, user_id);
	const char *first = param_str(u, "first_name");
	bool ok = o && cJSON_AddNumberToObject(o, "id", (double)user_id) &&
		  cJSON_AddBoolToObject(o, "is_bot", false) &&
		  cJSON_AddStringToObject(o, "first_name", first ? first : fn);
	static const char *const opt[] = {"last_name", "username", "language_code"};
	for (size_t i = 0; ok && i < sizeof opt / sizeof *opt; i++) {
		const char *v = param_str(u, opt[i]);
		if (v)
			ok = cJSON_AddStringToObject(o, opt[i], v) != NULL;
	}
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static cJSON *chat_cjson(const struct chat *ch)
{
	struct fbuf t = {0};
	chat_json(&t, ch);
	cJSON *o = t.oom ? NULL : cJSON_Parse(t.data);
	fbuf_free(&t);
	return o;
}

/* The chat an injected update happens in, created or updated. */
static struct chat *update_chat(struct bot *b, const cJSON *u, int64_t chat_id,
				const char *type)
{
	struct chat *ch = chat_get(b, chat_id, true);
	if (!ch)
		return NULL;
	ch->seen = true;
	snprintf(ch->type, sizeof ch->type, "%s", type);
	if (!strcmp(type, "private")) {
		if (set_str(&ch->first_name, param_str(u, "first_name")) ||
		    set_str(&ch->username, param_str(u, "username")))
			return NULL;
	} else if (set_str(&ch->title, param_str(u, "chat_title"))) {
		return NULL;
	}
	return ch;
}

static bool add_item(cJSON *obj, const char *name, cJSON *item)
{
	if (!item)
		return false;
	if (!cJSON_AddItemToObject(obj, name, item)) {
		cJSON_Delete(item);
		return false;
	}
	return true;
}

static cJSON *build_message(struct bot *b, const cJSON *u, int *kind_out)
{
	const char *kind = param_str(u, "kind");
	kind = kind ? kind : "message";
	bool channel = strstr(kind, "channel_post") != NULL;
	bool edited = !strncmp(kind, "edited_", 7);
	int64_t user_id = get_i64(u, "user_id", 1);
	int64_t chat_id = get_i64(u, "chat_id", user_id);
	const char *type = param_str(u, "chat_type");
	if (!type)
		type = channel ? "channel" : default_chat_type(chat_id);
	struct chat *ch = update_chat(b, u, chat_id, type);
	if (!ch)
		return NULL;
	int64_t mid = get_i64(u, "message_id", 0);
	if (mid <= 0)
		mid = ch->next_msg_id++;
	else if (mid >= ch->next_msg_id)
		ch->next_msg_id = mid + 1;
	const char *text = param_str(u, "text");
	int64_t date = get_i64(u, "date", fb_unix_now());

	cJSON *m = cJSON_CreateObject();
	bool ok = m && cJSON_AddNumberToObject(m, "message_id", (double)mid);
	if (ok && !channel)
		ok = add_item(m, "from", user_json(u, user_id));
	if (ok && channel)
		ok = add_item(m, "sender_chat", chat_cjson(ch));
	ok = ok && add_item(m, "chat", chat_cjson(ch)) &&
	     cJSON_AddNumberToObject(m, "date", (double)date);
	if (ok && edited)
		ok = cJSON_AddNumberToObject(m, "edit_date", (double)fb_unix_now()) != NULL;
	int64_t reply = get_i64(u, "reply_to_message_id", 0);
	const struct msg *rm = reply > 0 ? chat_find_msg(ch, reply) : NULL;
	if (ok && rm)
		ok = add_item(m, "reply_to_message", cJSON_Parse(rm->json));
	ok = ok && cJSON_AddStringToObject(m, "text", text);
	if (ok && text[0] == '/') {
		/* a command gets its bot_command entity, as from Telegram */
		size_t n = strcspn(text, " \n\t");
		cJSON *ents = cJSON_AddArrayToObject(m, "entities");
		cJSON *e = cJSON_CreateObject();
		ok = ents && e && cJSON_AddItemToArray(ents, e) &&
		     cJSON_AddNumberToObject(e, "offset", 0) &&
		     cJSON_AddNumberToObject(e, "length", (double)utf16_units(text, n)) &&
		     cJSON_AddStringToObject(e, "type", "bot_command");
		if (e && !ents)
			cJSON_Delete(e);
	}
	char *j = ok ? cJSON_PrintUnformatted(m) : NULL;
	if (!j || chat_store_msg(ch, mid, j, strlen(j)))
		ok = false;
	free(j);
	cJSON *upd = ok ? cJSON_CreateObject() : NULL;
	if (!upd || !cJSON_AddItemToObject(upd, kind, m)) {
		cJSON_Delete(upd);
		cJSON_Delete(m);
		return NULL;
	}
	*kind_out = upd_kind_lookup(kind);
	return upd;
}

static cJSON *build_callback(struct bot *b, const cJSON *u)
{
	int64_t user_id = get_i64(u, "user_id", 1);
	int64_t chat_id = get_i64(u, "chat_id", user_id);
	int64_t mid = get_i64(u, "message_id", 0);
	const char *type = param_str(u, "chat_type");
	struct chat *ch = update_chat(b, u, chat_id, type ? type : default_chat_type(chat_id));
	if (!ch)
		return NULL;
	if (b->cb_n == b->cb_cap) {
		size_t cap = b->cb_cap ? b->cb_cap * 2 : 64;
		uint8_t *n = realloc(b->cb_state, cap);
		if (!n)
			return NULL;
		b->cb_state = n;
		b->cb_cap = cap;
	}
	char id[64];
	snprintf(id, sizeof id, "cq-%" PRId64 "-%zu", b->id, b->cb_n + 1);

	const struct msg *m = chat_find_msg(ch, mid);
	cJSON *msg = m ? cJSON_Parse(m->json) : cJSON_CreateObject();
	bool ok = msg != NULL;
	if (ok && !m) {
		/* a message the fake does not know: Telegram's inaccessible
		 * message has date 0 */
		ok = cJSON_AddNumberToObject(msg, "message_id", (double)mid) &&
		     add_item(msg, "chat", chat_cjson(ch)) &&
		     cJSON_AddNumberToObject(msg, "date", 0);
	}
	cJSON *cq = cJSON_CreateObject();
	char inst[32];
	snprintf(inst, sizeof inst, "%" PRId64, chat_id);
	ok = ok && cq && cJSON_AddStringToObject(cq, "id", id) &&
	     add_item(cq, "from", user_json(u, user_id)) &&
	     add_item(cq, "message", msg);
	msg = NULL; /* owned by cq now, or freed by add_item */
	ok = ok && cJSON_AddStringToObject(cq, "chat_instance", inst) &&
	     cJSON_AddStringToObject(cq, "data", param_str(u, "callback_data"));
	cJSON *upd = ok ? cJSON_CreateObject() : NULL;
	if (!upd || !cJSON_AddItemToObject(upd, "callback_query", cq)) {
		cJSON_Delete(upd);
		cJSON_Delete(cq);
		return NULL;
	}
	b->cb_state[b->cb_n++] = 1;
	return upd;
}

static cJSON *build_update(struct bot *b, const cJSON *u, int *kind)
{
	const cJSON *raw = cJSON_GetObjectItemCaseSensitive(u, "update");
	if (raw) {
		cJSON *d = cJSON_Duplicate(raw, true);
		*kind = K_UNKNOWN;
		for (const cJSON *it = raw->child; it; it = it->next) {
			int k = it->string ? upd_kind_lookup(it->string) : -1;
			if (k >= 0) {
				*kind = k;
				break;
			}
		}
		return d;
	}
	if (cJSON_GetObjectItemCaseSensitive(u, "callback_data")) {
		*kind = K_CALLBACK_QUERY;
		return build_callback(b, u);
	}
	return build_message(b, u, kind);
}

static void ctl_updates(struct conn *c, struct bot *b, cJSON *body)
{
	cJSON *single = NULL;
	if (cJSON_IsObject(body)) {
		single = body;
	} else if (!cJSON_IsArray(body)) {
		ctl_error(c, 400, "expected an update object or a list of them");
		return;
	}
	const cJSON *it;
	if (single) {
		const char *err = validate_update(single);
		if (err) {
			ctl_error(c, 400, err);
			return;
		}
	} else {
		cJSON_ArrayForEach(it, body) {
			const char *err = validate_update(it);
			if (err) {
				ctl_error(c, 400, err);
				return;
			}
		}
	}
	struct fbuf o = {0};
	fbuf_puts(&o, "{\"update_ids\":[");
	int n = 0;
	for (it = single ? single : body->child; it; it = single ? NULL : it->next) {
		int kind = K_UNKNOWN;
		int64_t id;
		cJSON *u = build_update(b, it, &kind);
		if (!u || bot_push_update(b, kind, u, &id)) {
			cJSON_Delete(u);
			o.oom = true;
			break;
		}
		cJSON_Delete(u);
		fbuf_printf(&o, n++ ? ",%" PRId64 : "%" PRId64, id);
	}
	fbuf_puts(&o, "]}");
	/* wake the poll before answering: a test that reads the poll right
	 * after this answer finds it answered */
	bot_wake_poll(b);
	bot_changed(b);
	conn_respond_buf(c, 200, &o);
	fbuf_free(&o);
}

/* ---- config ---- */

static cJSON *state_with(struct bot *b, bool timed_out)
{
	cJSON *st = bot_state_json(b);
	if (st && !cJSON_AddBoolToObject(st, "timed_out", timed_out)) {
		cJSON_Delete(st);
		return NULL;
	}
	return st;
}

static void ctl_config(struct conn *c, struct bot *b, cJSON *body)
{
	if (!cJSON_IsObject(body)) {
		ctl_error(c, 400, "expected a JSON object");
		return;
	}
	/* check everything first: a bad request changes nothing */
	for (const cJSON *it = body->child; it; it = it->next) {
		const char *k = it->string;
		bool ok;
		if (!strcmp(k, "next_update_id"))
			ok = cJSON_IsNumber(it) && is_int(body, k) && it->valuedouble >= 1;
		else if (!strcmp(k, "username") || !strcmp(k, "first_name") ||
			 !strcmp(k, "webhook") || !strcmp(k, "token"))
			ok = cJSON_IsString(it) || cJSON_IsNull(it);
		else if (!strcmp(k, "invalid_token") || !strcmp(k, "poll_throttle") ||
			 !strcmp(k, "strict_chats"))
			ok = cJSON_IsBool(it);
		else if (!strcmp(k, "max_sent"))
			ok = cJSON_IsNumber(it) && is_int(body, k) && it->valuedouble >= 1;
		else {
			char msg[128];
			snprintf(msg, sizeof msg, "unknown config key \"%.60s\"", k);
			ctl_error(c, 400, msg);
			return;
		}
		if (!ok) {
			char msg[128];
			snprintf(msg, sizeof msg, "bad value for \"%.60s\"", k);
			ctl_error(c, 400, msg);
			return;
		}
	}
	const char *tok = param_str(body, "token");
	const char *colon = tok ? strchr(tok, ':') : NULL;
	char idbuf[32];
	snprintf(idbuf, sizeof idbuf, "%" PRId64 ":", b->id);
	if (tok && (!colon || strncmp(tok, idbuf, strlen(idbuf)) || strlen(colon + 1) < 20)) {
		ctl_error(c, 400, "token must be \"<this bot's id>:<20 or more characters>\"");
		return;
	}
	bool oom = false;
	for (const cJSON *it = body->child; it; it = it->next) {
		const char *k = it->string;
		const char *sv = cJSON_IsString(it) ? it->valuestring : NULL;
		char **dst = NULL;
		if (!strcmp(k, "next_update_id")) {
			b->next_update_id = (int64_t)it->valuedouble;
		} else if (!strcmp(k, "username")) {
			dst = &b->username;
		} else if (!strcmp(k, "first_name")) {
			dst = &b->first_name;
		} else if (!strcmp(k, "webhook")) {
			dst = &b->webhook;
			if (sv && b->held_poll) {
				b->conflicts_sent++;
				botapi_poll_error(b->held_poll, 409, CONFLICT_WEBHOOK);
			}
		} else if (!strcmp(k, "token")) {
			if (sv)
				sv = strchr(sv, ':') + 1;
			dst = &b->secret;
		} else if (!strcmp(k, "invalid_token")) {
			b->invalid_token = cJSON_IsTrue(it);
		} else if (!strcmp(k, "poll_throttle")) {
			b->poll_throttle = cJSON_IsTrue(it);
		} else if (!strcmp(k, "strict_chats")) {
			b->strict_chats = cJSON_IsTrue(it);
		} else if (!strcmp(k, "max_sent")) {
			bot_set_max_sent(b, (size_t)it->valuedouble);
		}
		if (dst) {
			char *v = sv ? strdup(sv) : NULL;
			if (sv && !v) {
				oom = true;
				continue;
			}
			free(*dst);
			*dst = v;
		}
	}
	if (oom) {
		ctl_error(c, 500, "fakebot: out of memory");
		return;
	}
	bot_changed(b);
	ctl_json(c, state_with(b, false));
}

/* ---- sent / state ---- */

void control_answer_sent(struct conn *c, bool timed_out)
{
	struct hold *h = &c->hold;
	struct fbuf o = {0};
	bot_sent_json(h->bot, &o, h->after, h->method, h->all, h->limit, timed_out);
	conn_respond_buf(c, 200, &o);
	fbuf_free(&o);
}

static void ctl_sent(struct conn *c, struct bot *b, const cJSON *q)
{
	int64_t after = get_i64(q, "after", 0), min = get_i64(q, "min", 0);
	int64_t wait = get_i64(q, "wait_ms", 0), limit = get_i64(q, "limit", 0);
	const char *method = param_str(q, "method");
	bool all = false;
	param_bool(q, "all", &all);
	if (method && strlen(method) >= sizeof c->hold.method) {
		ctl_error(c, 400, "method too long");
		return;
	}
	if (wait > FB_MAX_WAIT_MS)
		wait = FB_MAX_WAIT_MS;
	if (min <= 0 || wait <= 0 || bot_count_sent(b, after, method, all) >= min) {
		struct fbuf *o = &c->srv->body;
		fbuf_clear(o);
		bool short_ = min > 0 && bot_count_sent(b, after, method, all) < min;
		bot_sent_json(b, o, after, method, all, limit, short_);
		conn_respond_body(c, 200);
		return;
	}
	struct hold *h = &c->hold;
	h->bot = b;
	h->after = after;
	h->min = min;
	h->count = bot_count_sent(b, after, method, all);
	h->limit = limit;
	h->all = all;
	snprintf(h->method, sizeof h->method, "%s", method ? method : "");
	holdlist_add(&b->sent_waiters, c);
	conn_hold(c, HOLD_SENT, (uint64_t)wait);
}

bool control_state_ready(const struct conn *c)
{
	const struct hold *h = &c->hold;
	const struct bot *b = h->bot;
	if (h->min_calls >= 0 && b->get_updates_calls < h->min_calls)
		return false;
	if (h->held >= 0 && (b->held_poll ? 1 : 0) != h->held)
		return false;
	if (h->max_pending >= 0 && (int64_t)b->qlen > h->max_pending)
		return false;
	if (h->min_pending >= 0 && (int64_t)b->qlen < h->min_pending)
		return false;
	if (h->min_conflicts >= 0 && b->conflicts_sent < h->min_conflicts)
		return false;
	return true;
}

void control_answer_state(struct conn *c, bool timed_out)
{
	ctl_json(c, state_with(c->hold.bot, timed_out));
}

static void ctl_state(struct conn *c, struct bot *b, const cJSON *q)
{
	struct hold *h = &c->hold;
	h->bot = b;
	h->min_calls = get_i64(q, "min_get_updates_calls", -1);
	h->held = get_i64(q, "held_polls", -1);
	h->max_pending = get_i64(q, "max_pending_updates", -1);
	h->min_pending = get_i64(q, "min_pending_updates", -1);
	h->min_conflicts = get_i64(q, "min_conflicts_sent", -1);
	int64_t wait = get_i64(q, "wait_ms", 0);
	if (wait > FB_MAX_WAIT_MS)
		wait = FB_MAX_WAIT_MS;
	bool ready = control_state_ready(c);
	if (ready || wait <= 0) {
		h->bot = NULL;
		ctl_json(c, state_with(b, !ready));
		return;
	}
	holdlist_add(&b->state_waiters, c);
	conn_hold(c, HOLD_STATE, (uint64_t)wait);
}

/* ---- faults ---- */

static const char *parse_fault(const cJSON *r, struct fault **out)
{
	*out = NULL;
	if (!cJSON_IsObject(r))
		return "each fault rule must be a JSON object";
	struct fault f = {.remaining = 1, .retry_after = -1};
	snprintf(f.method, sizeof f.method, "*");
	bool action = false;
	for (const cJSON *it = r->child; it; it = it->next) {
		const char *k = it->string;
		if (!strcmp(k, "method")) {
			if (!cJSON_IsString(it) || !*it->valuestring ||
			    strlen(it->valuestring) >= sizeof f.method)
				return "method must be a method name or \"*\"";
			snprintf(f.method, sizeof f.method, "%s", it->valuestring);
		} else if (!strcmp(k, "count")) {
			if (!cJSON_IsNumber(it) || !is_int(r, k))
				return "count must be an integer (0 or less: until cleared)";
			f.remaining = (int64_t)it->valuedouble;
		} else if (!strcmp(k, "chat_id")) {
			if (param_i64(r, k, &f.chat_id))
				return "chat_id must be an integer";
			f.has_chat = true;
		} else if (!strcmp(k, "status")) {
			if (!cJSON_IsNumber(it) || !is_int(r, k) || it->valuedouble < 100 ||
			    it->valuedouble > 599)
				return "status must be an HTTP status (100..599)";
			f.status = (int)it->valuedouble;
			action = true;
		} else if (!strcmp(k, "retry_after")) {
			if (!cJSON_IsNumber(it) || !is_int(r, k) || it->valuedouble < 0 ||
			    it->valuedouble > 86400)
				return "retry_after must be an integer number of seconds";
			f.retry_after = (int)it->valuedouble;
		} else if (!strcmp(k, "migrate_to_chat_id")) {
			if (param_i64(r, k, &f.migrate_to) || !f.migrate_to)
				return "migrate_to_chat_id must be a non-zero integer";
		} else if (!strcmp(k, "kind")) {
			const char *v = cJSON_IsString(it) ? it->valuestring : "";
			if (strcmp(v, "webhook") && strcmp(v, "other"))
				return "kind must be \"webhook\" or \"other\"";
			f.webhook_kind = !strcmp(v, "webhook");
		} else if (!strcmp(k, "description") || !strcmp(k, "raw")) {
			if (!cJSON_IsString(it))
				return "description and raw must be strings";
			if (!strcmp(k, "raw"))
				action = true;
		} else if (!strcmp(k, "hang") || !strcmp(k, "drop")) {
			if (!cJSON_IsBool(it))
				return "hang and drop must be booleans";
			if (!strcmp(k, "hang"))
				f.hang = cJSON_IsTrue(it);
			else
				f.drop = cJSON_IsTrue(it);
			action |= cJSON_IsTrue(it);
		} else if (!strcmp(k, "delay_ms")) {
			if (!cJSON_IsNumber(it) || !is_int(r, k) || it->valuedouble < 1 ||
			    it->valuedouble > FB_MAX_WAIT_MS)
				return "delay_ms must be an integer from 1 to 600000";
			f.delay_ms = (uint32_t)it->valuedouble;
			action = true;
		} else {
			return "unknown fault key (see tests/fakebot/README.md)";
		}
	}
	if (!action)
		return "a fault needs status, raw, hang, drop or delay_ms";
	if ((f.migrate_to || f.retry_after >= 0 || param_str(r, "description")) &&
	    !f.status)
		return "description, retry_after and migrate_to_chat_id need a status";
	struct fault *p = malloc(sizeof *p);
	if (!p)
		return "";
	*p = f;
	p->description = NULL;
	p->raw = NULL;
	const char *d = param_str(r, "description"), *raw = param_str(r, "raw");
	p->description = d ? strdup(d) : NULL;
	p->raw = raw ? strdup(raw) : NULL;
	p->spec = cJSON_PrintUnformatted(r);
	if ((d && !p->description) || (raw && !p->raw) || !p->spec) {
		fault_free(p);
		return "";
	}
	*out = p;
	return NULL;
}

static void ctl_add_faults(struct conn *c, struct bot *b, cJSON *body)
{
	size_t n = cJSON_IsArray(body) ? (size_t)cJSON_GetArraySize(body) : 1;
	if (!cJSON_IsArray(body) && !cJSON_IsObject(body)) {
		ctl_error(c, 400, "expected a fault rule or a list of them");
		return;
	}
	struct fault **parsed = calloc(n ? n : 1, sizeof *parsed);
	if (!parsed) {
		ctl_error(c, 500, "fakebot: out of memory");
		return;
	}
	size_t i = 0;
	const cJSON *it = cJSON_IsArray(body) ? body->child : body;
	for (; it && i < n; it = cJSON_IsArray(body) ? it->next : NULL, i++) {
		const char *err = parse_fault(it, &parsed[i]);
		if (err) {
			for (size_t k = 0; k < i; k++)
				fault_free(parsed[k]);
			free(parsed);
			if (*err)
				ctl_error(c, 400, err);
			else
				ctl_error(c, 500, "fakebot: out of memory");
			return;
		}
	}
	if (b->nfaults + n > b->faults_cap) {
		size_t cap = b->faults_cap ? b->faults_cap : 8;
		while (cap < b->nfaults + n)
			cap *= 2;
		struct fault **nf = realloc(b->faults, cap * sizeof *nf);
		if (!nf) {
			for (size_t k = 0; k < n; k++)
				fault_free(parsed[k]);
			free(parsed);
			ctl_error(c, 500, "fakebot: out of memory");
			return;
		}
		b->faults = nf;
		b->faults_cap = cap;
	}
	for (size_t k = 0; k < n; k++)
		b->faults[b->nfaults++] = parsed[k];
	free(parsed);
	struct fbuf *o = &c->srv->body;
	fbuf_clear(o);
	fbuf_printf(o, "{\"faults_pending\":%zu}", b->nfaults);
	conn_respond_body(c, 200);
}

static void ctl_list_faults(struct conn *c, struct bot *b)
{
	struct fbuf *o = &c->srv->body;
	fbuf_clear(o);
	fbuf_puts(o, "{\"faults\":[");
	for (size_t i = 0; i < b->nfaults; i++)
		fbuf_printf(o, "%s{\"rule\":%s,\"remaining\":%" PRId64 "}", i ? "," : "",
			    b->faults[i]->spec ? b->faults[i]->spec : "{}",
			    b->faults[i]->remaining);
	fbuf_puts(o, "]}");
	conn_respond_body(c, 200);
}

/* ---- server-wide ---- */

static void ctl_stats(struct conn *c)
{
	struct server *s = c->srv;
	struct fbuf *o = &s->body;
	fbuf_clear(o);
	fbuf_printf(o,
		    "{\"requests\":%" PRIu64 ",\"api_requests\":%" PRIu64
		    ",\"control_requests\":%" PRIu64 ",\"http_errors\":%" PRIu64
		    ",\"connections_total\":%" PRIu64 ",\"open_connections\":%zu"
		    ",\"held_requests\":%zu,\"bots\":%zu,\"bytes_in\":%" PRIu64
		    ",\"bytes_out\":%" PRIu64 ",\"now_ms\":%.3f,\"tls\":%s,\"methods\":{",
		    s->st.requests, s->st.api_requests, s->st.control_requests,
		    s->st.http_errors, s->st.connections_total, s->nconns, s->held,
		    s->bots.n, s->st.bytes_in, s->st.bytes_out, fb_now_ms(),
		    s->tls ? "true" : "false");
	for (int i = 0; i < M__COUNT; i++)
		fbuf_printf(o, "%s\"%s\":%" PRIu64, i ? "," : "", api_method_names[i],
			    s->st.methods[i]);
	fbuf_puts(o, "}}");
	conn_respond_body(c, 200);
}

static void ctl_bots(struct conn *c)
{
	struct server *s = c->srv;
	struct fbuf *o = &s->body;
	fbuf_clear(o);
	fbuf_puts(o, "{\"bots\":[");
	int n = 0;
	for (size_t i = 0; i < s->bots.cap; i++)
		if (s->bots.e[i].val)
			fbuf_printf(o, n++ ? ",%" PRId64 : "%" PRId64, s->bots.e[i].key);
	fbuf_puts(o, "]}");
	conn_respond_body(c, 200);
}

/* ---- routing ---- */

static bool seg_is(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && !memcmp(s, lit, n);
}

void control_handle(struct conn *c, const struct request *r)
{
	struct server *s = c->srv;
	s->st.control_requests++;
	const char *p = r->path + 8, *end = r->path + r->path_len; /* after /control */
	const char *seg[4];
	size_t len[4], nseg = 0;
	while (p < end) {
		if (*p == '/') {
			p++;
			continue;
		}
		const char *q = memchr(p, '/', (size_t)(end - p));
		if (!q)
			q = end;
		if (nseg == 4) {
			ctl_error(c, 404, "no such control endpoint");
			return;
		}
		seg[nseg] = p;
		len[nseg++] = (size_t)(q - p);
		p = q;
	}
	enum http_method m = r->method;
	cJSON *body = NULL, *query = cJSON_CreateObject();
	if (!query || form_decode(r->query, r->query_len, query)) {
		cJSON_Delete(query);
		ctl_error(c, 500, "fakebot: out of memory");
		return;
	}
	if (r->body_len) {
		body = cJSON_ParseWithLength(r->body, r->body_len);
		if (!body) {
			cJSON_Delete(query);
			ctl_error(c, 400, "malformed JSON body");
			return;
		}
	}
	conn_log(s, "control %s %.*s", http_method_str(m), (int)r->path_len, r->path);

	if (nseg == 1 && seg_is(seg[0], len[0], "stats") && m == HTTP_GET) {
		ctl_stats(c);
	} else if (nseg == 1 && seg_is(seg[0], len[0], "reset") && m == HTTP_POST) {
		bool stats = false;
		if (cJSON_IsObject(body))
			param_bool(body, "stats", &stats);
		bots_delete_all(s);
		if (stats)
			memset(&s->st, 0, sizeof s->st);
		static const char ok[] = "{\"ok\":true}";
		conn_respond(c, 200, json_type, ok, sizeof ok - 1);
	} else if (nseg == 1 && seg_is(seg[0], len[0], "bots") && m == HTTP_GET) {
		ctl_bots(c);
	} else if (nseg >= 2 && nseg <= 3 && seg_is(seg[0], len[0], "bots")) {
		int64_t id = 0;
		size_t i;
		for (i = 0; i < len[1] && i < 18 && seg[1][i] >= '0' && seg[1][i] <= '9'; i++)
			id = id * 10 + (seg[1][i] - '0');
		if (i != len[1] || id <= 0) {
			ctl_error(c, 400, "a bot is addressed by its numeric id");
			goto out;
		}
		if (nseg == 2) {
			if (m != HTTP_DELETE) {
				ctl_error(c, 405, "method not allowed");
				goto out;
			}
			struct bot *b = bots_get(s, id, false);
			if (b)
				bots_delete(s, b);
			struct fbuf *o = &s->body;
			fbuf_clear(o);
			fbuf_printf(o, "{\"deleted\":%s}", b ? "true" : "false");
			conn_respond_body(c, 200);
			goto out;
		}
		struct bot *b = bots_get(s, id, true);
		if (!b) {
			ctl_error(c, 500, "fakebot: out of memory");
			goto out;
		}
		const char *what = seg[2];
		size_t wl = len[2];
		bool need_body = m == HTTP_POST;
		if (need_body && !body && !seg_is(what, wl, "state")) {
			ctl_error(c, 400, "this endpoint needs a JSON body");
			goto out;
		}
		if (seg_is(what, wl, "updates") && m == HTTP_POST)
			ctl_updates(c, b, body);
		else if (seg_is(what, wl, "config") && m == HTTP_POST)
			ctl_config(c, b, body);
		else if (seg_is(what, wl, "config") && m == HTTP_GET)
			ctl_json(c, state_with(b, false));
		else if (seg_is(what, wl, "sent") && m == HTTP_GET)
			ctl_sent(c, b, query);
		else if (seg_is(what, wl, "state") && m == HTTP_GET)
			ctl_state(c, b, query);
		else if (seg_is(what, wl, "faults") && m == HTTP_POST)
			ctl_add_faults(c, b, body);
		else if (seg_is(what, wl, "faults") && m == HTTP_GET)
			ctl_list_faults(c, b);
		else if (seg_is(what, wl, "faults") && m == HTTP_DELETE) {
			bot_clear_faults(b);
			static const char ok[] = "{\"faults_pending\":0}";
			conn_respond(c, 200, json_type, ok, sizeof ok - 1);
		} else if (seg_is(what, wl, "updates") || seg_is(what, wl, "config") ||
			   seg_is(what, wl, "sent") || seg_is(what, wl, "state") ||
			   seg_is(what, wl, "faults"))
			ctl_error(c, 405, "method not allowed");
		else
			ctl_error(c, 404, "no such control endpoint");
	} else {
		ctl_error(c, 404, "no such control endpoint");
	}
out:
	cJSON_Delete(body);
	cJSON_Delete(query);
}
