/* fakebot Bot API: /bot<TOKEN>/<method>. Checks the token, gathers the
 * parameters (query string, JSON or form body), applies the bot's fault rules,
 * then runs the method: getUpdates (long poll, offset, allowed_updates,
 * conflicts), sendMessage and friends, which validate like Telegram, answer
 * like Telegram and are recorded for the control API. */
#include "fakebot.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define QUERY_TOO_OLD                                                          \
	"Bad Request: query is too old and response timeout expired or query " \
	"ID is invalid"
#define NOT_MODIFIED                                                           \
	"Bad Request: message is not modified: specified new message content " \
	"and reply markup are exactly the same as a current content and reply "  \
	"markup of the message"


struct api {
	struct conn *c;
	struct server *s;
	struct bot *b;
	int midx;
	const char *mname;
	size_t mlen;
	cJSON *params;
};

/* ---- answers ---- */

static void error_body(struct fbuf *o, int code, const char *desc,
		       const char *params)
{
	fbuf_clear(o);
	fbuf_printf(o, "{\"ok\":false,\"error_code\":%d,\"description\":", code);
	fbuf_json_str(o, desc, strlen(desc));
	if (params) {
		fbuf_puts(o, ",\"parameters\":");
		fbuf_puts(o, params);
	}
	fbuf_add(o, "}", 1);
}

/* status 0: the request is held */
static void api_log(struct api *x, int status)
{
	if (status)
		conn_log(x->s, "bot %" PRId64 " %.*s -> %d", x->b ? x->b->id : 0,
			 (int)(x->mlen > 64 ? 64 : x->mlen), x->mname, status);
	else
		conn_log(x->s, "bot %" PRId64 " %.*s held", x->b ? x->b->id : 0,
			 (int)(x->mlen > 64 ? 64 : x->mlen), x->mname);
}

static void api_result(struct api *x, const char *result, size_t len)
{
	/* record first: a control waiter answered by the record must not see
	 * a half-built s->body */
	if (x->midx != M_GETUPDATES)
		bot_record(x->b, x->mname, x->mlen, x->midx, x->params, 0, NULL,
			   result, len);
	struct fbuf *o = &x->s->body;
	fbuf_clear(o);
	fbuf_puts(o, "{\"ok\":true,\"result\":");
	fbuf_add(o, result, len);
	fbuf_add(o, "}", 1);
	api_log(x, 200);
	conn_respond_body(x->c, 200);
}

static void api_true(struct api *x)
{
	api_result(x, "true", 4);
}

/* Answers the result being built in s->res. */
static void api_res(struct api *x)
{
	struct fbuf *r = &x->s->res;
	if (r->oom) {
		fbuf_clear(r);
		error_body(&x->s->body, 500, "fakebot: out of memory", NULL);
		conn_respond_body(x->c, 500);
		return;
	}
	api_result(x, r->data ? r->data : "null", r->data ? r->len : 4);
	fbuf_clear(r);
	fbuf_shrink(r, 1 << 20);
}

static void api_error(struct api *x, int code, const char *desc,
		      const char *params)
{
	if (x->b && x->midx != M_GETUPDATES)
		bot_record(x->b, x->mname, x->mlen, x->midx, x->params, code,
			   desc, NULL, 0);
	error_body(&x->s->body, code, desc, params);
	api_log(x, code);
	conn_respond_body(x->c, code);
}

/* ---- parameters ---- */

static int parse_token(const char *t, size_t n, int64_t *id,
		       const char **secret, size_t *slen)
{
	size_t i = 0;
	int64_t v = 0;
	while (i < n && t[i] >= '0' && t[i] <= '9') {
		if (i >= 18)
			return -1;
		v = v * 10 + (t[i] - '0');
		i++;
	}
	if (i == 0 || i >= n || t[i] != ':' || v <= 0)
		return -1;
	i++;
	if (n - i < 20 || n - i > 200)
		return -1;
	for (size_t j = i; j < n; j++) {
		char ch = t[j];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return -1;
	}
	*id = v;
	*secret = t + i;
	*slen = n - i;
	return 0;
}

static int method_lookup(const char *m, size_t n)
{
	for (int i = 0; i < M_UNKNOWN; i++)
		if (strlen(api_method_names[i]) == n &&
		    !strncasecmp(api_method_names[i], m, n))
			return i;
	return M_UNKNOWN;
}

/* Adds the members of src that dst lacks (the body wins over the query). */
static int merge_missing(cJSON *dst, cJSON *src)
{
	while (src->child) {
		cJSON *it = cJSON_DetachItemViaPointer(src, src->child);
		if (cJSON_GetObjectItemCaseSensitive(dst, it->string)) {
			cJSON_Delete(it);
			continue;
		}
		char *k = it->string;
		it->string = NULL;
		bool ok = cJSON_AddItemToObject(dst, k, it);
		free(k);
		if (!ok) {
			cJSON_Delete(it);
			return -1;
		}
	}
	return 0;
}

/* Builds x->params. NULL on success, else the error description. */
static const char *read_params(struct api *x, const struct request *r,
			       int *code)
{
	*code = 400;
	cJSON *p = NULL;
	if (r->body_len && !strcmp(r->ctype, "application/json")) {
		p = cJSON_ParseWithLength(r->body, r->body_len);
		if (!p || !cJSON_IsObject(p)) {
			cJSON_Delete(p);
			return "Bad Request: can't parse JSON object";
		}
	} else {
		p = cJSON_CreateObject();
		if (!p)
			goto oom;
		if (r->body_len) {
			if (strcmp(r->ctype, "application/x-www-form-urlencoded") &&
			    *r->ctype) {
				cJSON_Delete(p);
				return !strcmp(r->ctype, "multipart/form-data")
					       ? "Bad Request: fakebot does not support multipart/form-data"
					       : "Bad Request: unsupported Content-Type";
			}
			if (form_decode(r->body, r->body_len, p)) {
				cJSON_Delete(p);
				goto oom;
			}
		}
	}
	x->params = p;
	if (r->query_len) {
		cJSON *q = cJSON_CreateObject();
		if (!q || form_decode(r->query, r->query_len, q) ||
		    merge_missing(p, q)) {
			cJSON_Delete(q);
			goto oom;
		}
		cJSON_Delete(q);
	}
	return NULL;
oom:
	*code = 500;
	return "fakebot: out of memory";
}

/* A parameter that is a string, or a number written as one. */
static const char *param_text(struct api *x, const char *name, char *tmp,
			      size_t tmplen)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(x->params, name);
	if (cJSON_IsString(it))
		return it->valuestring;
	if (cJSON_IsNumber(it)) {
		snprintf(tmp, tmplen, "%.0f", it->valuedouble);
		return tmp;
	}
	return NULL;
}

/* Reads chat_id; answers the error itself and returns -1 when it is bad. */
static int need_chat(struct api *x, struct chat **out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(x->params, "chat_id");
	int64_t id;
	if (!it || cJSON_IsNull(it) ||
	    (cJSON_IsString(it) && !*it->valuestring)) {
		api_error(x, 400, "Bad Request: chat_id is empty", NULL);
		return -1;
	}
	if (param_i64(x->params, "chat_id", &id) || id == 0) {
		api_error(x, 400, "Bad Request: chat not found", NULL);
		return -1;
	}
	struct chat *c = chat_get(x->b, id, !x->b->strict_chats);
	if (!c || (x->b->strict_chats && !c->seen)) {
		api_error(x, 400, "Bad Request: chat not found", NULL);
		return -1;
	}
	*out = c;
	return 0;
}

/* Checks text like Telegram does; answers and returns -1 when it is bad. */
static int check_text(struct api *x, const char *text, size_t max_units)
{
	if (!text || !*text) {
		api_error(x, 400, "Bad Request: message text is empty", NULL);
		return -1;
	}
	size_t n = strlen(text);
	if (!utf8_valid(text, n)) {
		api_error(x, 400, "Bad Request: strings must be encoded in UTF-8", NULL);
		return -1;
	}
	if (utf16_units(text, n) > max_units) {
		api_error(x, 400, "Bad Request: message is too long", NULL);
		return -1;
	}
	return 0;
}

/* Validates reply_markup; NULL when fine (*inline_kb tells the kind). */
static const char *check_markup(const cJSON *m, bool *inline_kb)
{
	*inline_kb = false;
	if (!cJSON_IsObject(m))
		return "Bad Request: can't parse reply keyboard markup JSON object";
	const cJSON *ik = cJSON_GetObjectItemCaseSensitive(m, "inline_keyboard");
	if (!ik) {
		if (cJSON_GetObjectItemCaseSensitive(m, "keyboard") ||
		    cJSON_GetObjectItemCaseSensitive(m, "remove_keyboard") ||
		    cJSON_GetObjectItemCaseSensitive(m, "force_reply"))
			return NULL;
		return "Bad Request: can't parse reply keyboard markup JSON object";
	}
	if (!cJSON_IsArray(ik))
		return "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays";
	const cJSON *row, *btn;
	cJSON_ArrayForEach(row, ik) {
		if (!cJSON_IsArray(row))
			return "Bad Request: field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays";
		cJSON_ArrayForEach(btn, row) {
			if (!cJSON_IsObject(btn))
				return "Bad Request: can't parse inline keyboard button: InlineKeyboardButton should be an Object";
			const cJSON *t = cJSON_GetObjectItemCaseSensitive(btn, "text");
			if (!cJSON_IsString(t))
				return "Bad Request: can't parse inline keyboard button: Field \"text\" must be of type String";
			const cJSON *cd = cJSON_GetObjectItemCaseSensitive(btn, "callback_data");
			if (cd) {
				size_t n = cJSON_IsString(cd) ? strlen(cd->valuestring) : 0;
				if (n < 1 || n > 64)
					return "Bad Request: BUTTON_DATA_INVALID";
			} else if (!cJSON_GetObjectItemCaseSensitive(btn, "url") &&
				   !cJSON_GetObjectItemCaseSensitive(btn, "switch_inline_query") &&
				   !cJSON_GetObjectItemCaseSensitive(btn, "switch_inline_query_current_chat") &&
				   !cJSON_GetObjectItemCaseSensitive(btn, "web_app") &&
				   !cJSON_GetObjectItemCaseSensitive(btn, "login_url") &&
				   !cJSON_GetObjectItemCaseSensitive(btn, "copy_text") &&
				   !cJSON_GetObjectItemCaseSensitive(btn, "pay") &&
				   !cJSON_GetObjectItemCaseSensitive(btn, "callback_game")) {
				return "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard";
			}
		}
	}
	*inline_kb = true;
	return NULL;
}

/* Reads, validates and returns reply_markup (NULL when absent); answers the
 * error itself and sets *failed when bad. */
static cJSON *need_markup(struct api *x, bool *inline_kb, bool *failed)
{
	bool bad;
	*failed = false;
	*inline_kb = false;
	cJSON *m = param_json(x->params, "reply_markup", &bad);
	if (bad) {
		api_error(x, 400, "Bad Request: can't parse reply keyboard markup JSON object", NULL);
		*failed = true;
		return NULL;
	}
	if (!m)
		return NULL;
	const char *err = check_markup(m, inline_kb);
	if (err) {
		api_error(x, 400, err, NULL);
		*failed = true;
		return NULL;
	}
	return m;
}

static void bot_user_json(struct fbuf *o, const struct bot *b)
{
	fbuf_printf(o, "{\"id\":%" PRId64 ",\"is_bot\":true,\"first_name\":", b->id);
	if (b->first_name)
		fbuf_json_str(o, b->first_name, strlen(b->first_name));
	else
		fbuf_printf(o, "\"Bot %" PRId64 "\"", b->id);
	fbuf_puts(o, ",\"username\":");
	if (b->username)
		fbuf_json_str(o, b->username, strlen(b->username));
	else
		fbuf_printf(o, "\"bot%" PRId64 "_bot\"", b->id);
	fbuf_add(o, "}", 1);
}

static void add_json_member(struct fbuf *o, const char *name, const cJSON *v)
{
	char *t = cJSON_PrintUnformatted(v);
	if (!t) {
		o->oom = true;
		return;
	}
	fbuf_printf(o, ",\"%s\":", name);
	fbuf_puts(o, t);
	free(t);
}

/* ---- methods ---- */

static void m_getMe(struct api *x)
{
	struct fbuf *r = &x->s->res;
	fbuf_clear(r);
	bot_user_json(r, x->b);
	if (!r->oom)
		r->len--; /* reopen the object */
	fbuf_puts(r, ",\"can_join_groups\":true,\"can_read_all_group_messages\":false,"
		     "\"supports_inline_queries\":false}");
	api_res(x);
}

void botapi_poll_error(struct conn *c, int code, const char *desc)
{
	struct fbuf o = {0};
	error_body(&o, code, desc, NULL);
	conn_respond_buf(c, code, &o);
	fbuf_free(&o);
}

void botapi_answer_poll(struct conn *c)
{
	struct bot *b = c->hold.bot;
	struct fbuf o = {0};
	fbuf_puts(&o, "{\"ok\":true,\"result\":");
	bot_deliver(b, &o, c->hold.limit);
	fbuf_add(&o, "}", 1);
	conn_respond_buf(c, 200, &o);
	fbuf_free(&o);
	bot_changed(b);
}

void botapi_poll_expired(struct conn *c)
{
	botapi_answer_poll(c);
}

static void m_getUpdates(struct api *x)
{
	struct bot *b = x->b;
	if (b->webhook) {
		api_error(x, 409, CONFLICT_WEBHOOK, NULL);
		return;
	}
	int64_t offset = 0, limit = 100, timeout = 0;
	int has_offset = param_i64(x->params, "offset", &offset);
	if (has_offset < 0)
		offset = 0;
	if (param_i64(x->params, "limit", &limit))
		limit = 100;
	if (param_i64(x->params, "timeout", &timeout))
		timeout = 0;
	limit = limit < 1 ? 1 : limit > 100 ? 100 : limit;
	timeout = timeout < 0 ? 0 : timeout > 50 ? 50 : timeout;

	bool bad;
	cJSON *au = param_json(x->params, "allowed_updates", &bad);
	if (cJSON_IsArray(au)) {
		uint32_t mask = 0;
		const cJSON *it;
		cJSON_ArrayForEach(it, au) {
			int k = cJSON_IsString(it) ? upd_kind_lookup(it->valuestring) : -1;
			if (k >= 0)
				mask |= KIND_BIT(k);
		}
		b->allowed_mask = (mask ? mask : ALLOWED_DEFAULT) | KIND_BIT(K_UNKNOWN);
		char *j = cJSON_PrintUnformatted(au);
		if (j) {
			free(b->allowed_json);
			b->allowed_json = j;
		}
	}

	double now = fb_now_ms();
	if (b->poll_throttle && offset == b->prev_offset) {
		/* what the real server does to clients that repeat themselves */
		if (timeout < 3 && now < b->prev_poll_ms + 3000)
			timeout = 3;
		if (now < b->prev_poll_ms + 500)
			limit = 1;
	}
	b->prev_offset = offset;
	b->prev_poll_ms = now;
	b->has_offset = has_offset == 0;
	b->last_offset = offset;
	b->last_timeout = timeout;
	b->last_limit = limit;
	b->last_had_allowed = cJSON_IsArray(au);

	if (b->held_poll && b->held_poll != x->c) {
		/* the older poll loses, as on Telegram */
		b->conflicts_sent++;
		botapi_poll_error(b->held_poll, 409, CONFLICT_OTHER);
	}
	bot_confirm(b, offset);
	bot_prune(b);
	if (b->qlen || timeout == 0) {
		struct fbuf *r = &x->s->res;
		fbuf_clear(r);
		bot_deliver(b, r, limit);
		api_res(x);
		return;
	}
	b->held_poll = x->c;
	b->polls_held_total++;
	x->c->hold.bot = b;
	x->c->hold.limit = limit;
	conn_hold(x->c, HOLD_POLL, (uint64_t)timeout * 1000);
	api_log(x, 0);
}

/* The message the bot sends: stored in the chat and returned. */
static void bot_message_json(struct fbuf *o, struct bot *b, struct chat *ch,
			     int64_t mid, const char *text,
			     const struct msg *reply_to, const cJSON *markup)
{
	fbuf_printf(o, "{\"message_id\":%" PRId64 ",\"from\":", mid);
	bot_user_json(o, b);
	fbuf_puts(o, ",\"chat\":");
	chat_json(o, ch);
	fbuf_printf(o, ",\"date\":%" PRId64, fb_unix_now());
	if (reply_to) {
		fbuf_puts(o, ",\"reply_to_message\":");
		fbuf_puts(o, reply_to->json);
	}
	if (text) {
		fbuf_puts(o, ",\"text\":");
		fbuf_json_str(o, text, strlen(text));
	}
	if (markup)
		add_json_member(o, "reply_markup", markup);
	fbuf_add(o, "}", 1);
}

static void m_sendMessage(struct api *x)
{
	struct chat *ch;
	if (need_chat(x, &ch))
		return;
	const char *text = param_str(x->params, "text");
	if (check_text(x, text, 4096))
		return;
	const char *pm = param_str(x->params, "parse_mode");
	if (pm && *pm && strcasecmp(pm, "Markdown") && strcasecmp(pm, "MarkdownV2") &&
	    strcasecmp(pm, "HTML")) {
		api_error(x, 400, "Bad Request: unsupported parse_mode", NULL);
		return;
	}
	bool inline_kb, failed;
	cJSON *markup = need_markup(x, &inline_kb, &failed);
	if (failed)
		return;

	/* reply_parameters, or the older reply_to_message_id */
	bool bad, allow = false;
	int64_t reply_id = 0;
	cJSON *rp = param_json(x->params, "reply_parameters", &bad);
	if (bad || (rp && !cJSON_IsObject(rp))) {
		api_error(x, 400, "Bad Request: can't parse reply parameters JSON object", NULL);
		return;
	}
	if (rp) {
		if (param_i64(rp, "message_id", &reply_id)) {
			api_error(x, 400, "Bad Request: message to be replied not found", NULL);
			return;
		}
		param_bool(rp, "allow_sending_without_reply", &allow);
	} else if (!param_i64(x->params, "reply_to_message_id", &reply_id)) {
		param_bool(x->params, "allow_sending_without_reply", &allow);
	}
	const struct msg *reply_to = NULL;
	if (reply_id) {
		if ((reply_id <= 0 || reply_id >= ch->next_msg_id) && !allow) {
			api_error(x, 400, "Bad Request: message to be replied not found", NULL);
			return;
		}
		reply_to = chat_find_msg(ch, reply_id);
	}

	int64_t mid = ch->next_msg_id++;
	struct fbuf *r = &x->s->res;
	fbuf_clear(r);
	bot_message_json(r, x->b, ch, mid, text, reply_to, inline_kb ? markup : NULL);
	if (!r->oom && chat_store_msg(ch, mid, r->data, r->len))
		r->oom = true;
	api_res(x);
}

/* "cq-<bot>-<n>" -> n, or 0 when it is not one of this bot's ids */
static size_t callback_index(const struct bot *b, const char *id)
{
	char prefix[40];
	int pl = snprintf(prefix, sizeof prefix, "cq-%" PRId64 "-", b->id);
	if (!id || strncmp(id, prefix, (size_t)pl))
		return 0;
	size_t n = 0;
	const char *p = id + pl;
	if (!*p)
		return 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || n > SIZE_MAX / 10 - 10)
			return 0;
		n = n * 10 + (size_t)(*p - '0');
	}
	return n <= b->cb_n ? n : 0;
}

static void m_answerCallbackQuery(struct api *x)
{
	char tmp[32];
	const char *id = param_text(x, "callback_query_id", tmp, sizeof tmp);
	if (!id || !*id) {
		api_error(x, 400, "Bad Request: query_id is empty", NULL);
		return;
	}
	size_t n = callback_index(x->b, id);
	if (!n || x->b->cb_state[n - 1] != 1) {
		api_error(x, 400, QUERY_TOO_OLD, NULL);
		return;
	}
	const char *text = param_str(x->params, "text");
	if (text && utf16_units(text, strlen(text)) > 200) {
		api_error(x, 400, "Bad Request: MESSAGE_TOO_LONG", NULL);
		return;
	}
	x->b->cb_state[n - 1] = 2;
	api_true(x);
}

/* The scope's canonical key; NULL (error answered) when malformed. */
static char *scope_key(struct api *x, cJSON **scope_out)
{
	bool bad;
	cJSON *sc = param_json(x->params, "scope", &bad);
	*scope_out = sc;
	if (bad || (sc && !cJSON_IsObject(sc))) {
		api_error(x, 400, "Bad Request: can't parse BotCommandScope JSON object", NULL);
		return NULL;
	}
	const char *type = sc ? param_str(sc, "type") : "default";
	static const char *const types[] = {
		"default", "all_private_chats", "all_group_chats",
		"all_chat_administrators", "chat", "chat_administrators",
		"chat_member",
	};
	size_t i;
	for (i = 0; type && i < sizeof types / sizeof *types; i++)
		if (!strcmp(type, types[i]))
			break;
	if (!type || i == sizeof types / sizeof *types) {
		api_error(x, 400, "Bad Request: unsupported bot command scope type", NULL);
		return NULL;
	}
	int64_t chat = 0, user = 0;
	if (i >= 4 && param_i64(sc, "chat_id", &chat)) {
		api_error(x, 400, "Bad Request: chat not found", NULL);
		return NULL;
	}
	if (i == 6 && param_i64(sc, "user_id", &user)) {
		api_error(x, 400, "Bad Request: user not found", NULL);
		return NULL;
	}
	char buf[96];
	if (i >= 4)
		snprintf(buf, sizeof buf, "%s:%" PRId64 ":%" PRId64, type, chat, user);
	else
		snprintf(buf, sizeof buf, "%s", type);
	char *k = strdup(buf);
	if (!k)
		api_error(x, 500, "fakebot: out of memory", NULL);
	return k;
}

static struct cmdset **find_cmdset(struct bot *b, const char *key, const char *lang)
{
	struct cmdset **pp = &b->commands;
	for (; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->scope_key, key) && !strcmp((*pp)->lang, lang))
			return pp;
	return pp;
}

static bool valid_command(const char *c)
{
	size_t n = strlen(c);
	if (n < 1 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= '0' && c[i] <= '9') ||
		      c[i] == '_'))
			return false;
	return true;
}

static void m_setMyCommands(struct api *x)
{
	bool bad;
	cJSON *cmds = param_json(x->params, "commands", &bad);
	if (!cmds && !bad) {
		api_error(x, 400, "Bad Request: parameter \"commands\" is required", NULL);
		return;
	}
	if (bad || !cJSON_IsArray(cmds)) {
		api_error(x, 400, "Bad Request: can't parse commands JSON object", NULL);
		return;
	}
	if (cJSON_GetArraySize(cmds) > 100) {
		api_error(x, 400, "Bad Request: BOT_COMMANDS_TOO_MUCH", NULL);
		return;
	}
	struct fbuf *r = &x->s->res;
	fbuf_clear(r);
	fbuf_add(r, "[", 1);
	const cJSON *it;
	int i = 0;
	cJSON_ArrayForEach(it, cmds) {
		const char *c = cJSON_IsObject(it) ? param_str(it, "command") : NULL;
		const char *d = cJSON_IsObject(it) ? param_str(it, "description") : NULL;
		if (!c || !valid_command(c)) {
			api_error(x, 400, "Bad Request: BOT_COMMAND_INVALID", NULL);
			return;
		}
		size_t dl = d ? strlen(d) : 0;
		if (!d || !dl || utf16_units(d, dl) > 256 || !utf8_valid(d, dl)) {
			api_error(x, 400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID", NULL);
			return;
		}
		fbuf_puts(r, i++ ? ",{\"command\":" : "{\"command\":");
		fbuf_json_str(r, c, strlen(c));
		fbuf_puts(r, ",\"description\":");
		fbuf_json_str(r, d, dl);
		fbuf_add(r, "}", 1);
	}
	fbuf_add(r, "]", 1);
	cJSON *scope;
	char *key = scope_key(x, &scope);
	if (!key)
		return;
	const char *lang = param_str(x->params, "language_code");
	lang = lang ? lang : "";
	struct cmdset **pp = find_cmdset(x->b, key, lang);
	char *commands = r->oom ? NULL : fb_strndup(r->data, r->len);
	char *scope_json = scope ? cJSON_PrintUnformatted(scope) : strdup("{\"type\":\"default\"}");
	struct cmdset *cs = *pp ? *pp : calloc(1, sizeof *cs);
	char *lang_copy = *pp ? NULL : strdup(lang);
	if (!commands || !scope_json || !cs || (!*pp && !lang_copy)) {
		free(commands);
		free(scope_json);
		free(lang_copy);
		if (!*pp)
			free(cs);
		free(key);
		fbuf_clear(r);
		api_error(x, 500, "fakebot: out of memory", NULL);
		return;
	}
	if (*pp) {
		free(cs->commands);
		free(cs->scope_json);
		free(key);
	} else {
		cs->scope_key = key;
		cs->lang = lang_copy;
		*pp = cs;
	}
	cs->commands = commands;
	cs->scope_json = scope_json;
	x->b->set_commands_calls++;
	fbuf_clear(r);
	api_true(x);
}

static void m_getMyCommands(struct api *x)
{
	cJSON *scope;
	char *key = scope_key(x, &scope);
	if (!key)
		return;
	const char *lang = param_str(x->params, "language_code");
	struct cmdset **pp = find_cmdset(x->b, key, lang ? lang : "");
	free(key);
	struct fbuf *r = &x->s->res;
	fbuf_clear(r);
	fbuf_puts(r, *pp ? (*pp)->commands : "[]");
	api_res(x);
}

static void m_deleteMyCommands(struct api *x)
{
	cJSON *scope;
	char *key = scope_key(x, &scope);
	if (!key)
		return;
	const char *lang = param_str(x->params, "language_code");
	struct cmdset **pp = find_cmdset(x->b, key, lang ? lang : "");
	free(key);
	if (*pp) {
		struct cmdset *cs = *pp;
		*pp = cs->next;
		free(cs->scope_key);
		free(cs->scope_json);
		free(cs->lang);
		free(cs->commands);
		free(cs);
	}
	api_true(x);
}

static void m_setWebhook(struct api *x)
{
	const char *url = param_str(x->params, "url");
	bool drop = false;
	param_bool(x->params, "drop_pending_updates", &drop);
	if (url && *url) {
		if (strncmp(url, "https://", 8)) {
			api_error(x, 400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook", NULL);
			return;
		}
		char *copy = strdup(url);
		if (!copy) {
			api_error(x, 500, "fakebot: out of memory", NULL);
			return;
		}
		free(x->b->webhook);
		x->b->webhook = copy;
		if (x->b->held_poll) {
			x->b->conflicts_sent++;
			botapi_poll_error(x->b->held_poll, 409, CONFLICT_WEBHOOK);
		}
	} else {
		free(x->b->webhook);
		x->b->webhook = NULL;
	}
	if (drop)
		bot_clear_updates(x->b);
	api_true(x);
}

static void m_deleteWebhook(struct api *x)
{
	bool drop = false;
	param_bool(x->params, "drop_pending_updates", &drop);
	free(x->b->webhook);
	x->b->webhook = NULL;
	if (drop)
		bot_clear_updates(x->b);
	api_true(x);
}

static void m_getWebhookInfo(struct api *x)
{
	struct fbuf *r = &x->s->res;
	const char *url = x->b->webhook ? x->b->webhook : "";
	fbuf_clear(r);
	fbuf_puts(r, "{\"url\":");
	fbuf_json_str(r, url, strlen(url));
	fbuf_printf(r, ",\"has_custom_certificate\":false,\"pending_update_count\":%zu}",
		    x->b->qlen);
	api_res(x);
}

/* editMessageText (text != NULL) and editMessageReplyMarkup. */
static void edit_message(struct api *x, bool is_text)
{
	if (cJSON_GetObjectItemCaseSensitive(x->params, "inline_message_id")) {
		api_true(x);
		return;
	}
	struct chat *ch;
	if (need_chat(x, &ch))
		return;
	int64_t mid;
	if (param_i64(x->params, "message_id", &mid) || mid <= 0 ||
	    mid >= ch->next_msg_id) {
		api_error(x, 400, "Bad Request: message to edit not found", NULL);
		return;
	}
	const char *text = NULL;
	if (is_text) {
		text = param_str(x->params, "text");
		if (check_text(x, text, 4096))
			return;
	}
	bool inline_kb, failed;
	cJSON *markup = need_markup(x, &inline_kb, &failed);
	if (failed)
		return;
	if (markup && !inline_kb) {
		api_error(x, 400, "Bad Request: inline keyboard expected", NULL);
		return;
	}
	struct fbuf *r = &x->s->res;
	fbuf_clear(r);
	const struct msg *old = chat_find_msg(ch, mid);
	cJSON *m = old ? cJSON_Parse(old->json) : NULL;
	if (m) {
		const cJSON *ot = cJSON_GetObjectItemCaseSensitive(m, "text");
		const cJSON *om = cJSON_GetObjectItemCaseSensitive(m, "reply_markup");
		bool same_text = !is_text || (cJSON_IsString(ot) && !strcmp(ot->valuestring, text));
		bool same_markup = (!om && !markup) ||
				   (om && markup && cJSON_Compare(om, markup, true));
		if (same_text && same_markup) {
			cJSON_Delete(m);
			api_error(x, 400, NOT_MODIFIED, NULL);
			return;
		}
		bool ok = true;
		if (is_text) {
			cJSON *nt = cJSON_CreateString(text);
			if (!nt || !(ot ? cJSON_ReplaceItemInObjectCaseSensitive(m, "text", nt)
					: cJSON_AddItemToObject(m, "text", nt))) {
				cJSON_Delete(nt);
				ok = false;
			}
		}
		cJSON_DeleteItemFromObjectCaseSensitive(m, "reply_markup");
		cJSON_DeleteItemFromObjectCaseSensitive(m, "edit_date");
		if (markup) {
			cJSON *dup = cJSON_Duplicate(markup, true);
			if (!dup || !cJSON_AddItemToObject(m, "reply_markup", dup)) {
				cJSON_Delete(dup);
				ok = false;
			}
		}
		ok = ok && cJSON_AddNumberToObject(m, "edit_date", (double)fb_unix_now());
		char *j = ok ? cJSON_PrintUnformatted(m) : NULL;
		cJSON_Delete(m);
		if (!j) {
			api_error(x, 500, "fakebot: out of memory", NULL);
			return;
		}
		fbuf_puts(r, j);
		free(j);
	} else {
		/* not remembered (too old): answer what is known */
		bot_message_json(r, x->b, ch, mid, text, NULL, markup);
		if (!r->oom)
			r->len--;
		fbuf_printf(r, ",\"edit_date\":%" PRId64 "}", fb_unix_now());
	}
	if (!r->oom && chat_store_msg(ch, mid, r->data, r->len))
		r->oom = true;
	api_res(x);
}

static void m_editMessageText(struct api *x)
{
	edit_message(x, true);
}

static void m_editMessageReplyMarkup(struct api *x)
{
	edit_message(x, false);
}

static void m_deleteMessage(struct api *x)
{
	struct chat *ch;
	if (need_chat(x, &ch))
		return;
	int64_t mid;
	if (param_i64(x->params, "message_id", &mid) || mid <= 0 ||
	    mid >= ch->next_msg_id) {
		api_error(x, 400, "Bad Request: message to delete not found", NULL);
		return;
	}
	api_true(x);
}

static void m_sendChatAction(struct api *x)
{
	struct chat *ch;
	if (need_chat(x, &ch))
		return;
	api_true(x);
}

static void m_getChat(struct api *x)
{
	struct chat *ch;
	if (need_chat(x, &ch))
		return;
	struct fbuf *r = &x->s->res;
	fbuf_clear(r);
	chat_json(r, ch);
	api_res(x);
}

static void m_unknown(struct api *x)
{
	api_error(x, 404, "Not Found: method not found", NULL);
}

static void (*const handlers[M__COUNT])(struct api *) = {
	[M_GETME] = m_getMe,
	[M_GETUPDATES] = m_getUpdates,
	[M_SENDMESSAGE] = m_sendMessage,
	[M_ANSWERCALLBACKQUERY] = m_answerCallbackQuery,
	[M_SETMYCOMMANDS] = m_setMyCommands,
	[M_GETMYCOMMANDS] = m_getMyCommands,
	[M_DELETEMYCOMMANDS] = m_deleteMyCommands,
	[M_SETWEBHOOK] = m_setWebhook,
	[M_DELETEWEBHOOK] = m_deleteWebhook,
	[M_GETWEBHOOKINFO] = m_getWebhookInfo,
	[M_EDITMESSAGETEXT] = m_editMessageText,
	[M_EDITMESSAGEREPLYMARKUP] = m_editMessageReplyMarkup,
	[M_DELETEMESSAGE] = m_deleteMessage,
	[M_SENDCHATACTION] = m_sendChatAction,
	[M_GETCHAT] = m_getChat,
	[M_LOGOUT] = api_true,
	[M_CLOSE] = api_true,
	[M_UNKNOWN] = m_unknown,
};

/* ---- faults ---- */

static void fault_error(struct api *x, const struct fault *f)
{
	if (f->raw) {
		int st = f->status ? f->status : 502;
		if (x->midx != M_GETUPDATES)
			bot_record(x->b, x->mname, x->mlen, x->midx, x->params, st,
				   "fakebot fault: raw body", NULL, 0);
		api_log(x, st);
		conn_respond(x->c, st, "text/html", f->raw, strlen(f->raw));
		return;
	}
	int st = f->status;
	const char *desc = f->description;
	char dbuf[96], pbuf[96];
	const char *params = NULL;
	if (st == 429) {
		int ra = f->retry_after > 0 ? f->retry_after : 1;
		snprintf(pbuf, sizeof pbuf, "{\"retry_after\":%d}", ra);
		params = pbuf;
		if (!desc) {
			snprintf(dbuf, sizeof dbuf, "Too Many Requests: retry after %d", ra);
			desc = dbuf;
		}
	} else if (f->retry_after > 0) {
		snprintf(pbuf, sizeof pbuf, "{\"retry_after\":%d}", f->retry_after);
		params = pbuf;
	}
	if (f->migrate_to) {
		snprintf(pbuf, sizeof pbuf, "{\"migrate_to_chat_id\":%" PRId64 "}",
			 f->migrate_to);
		params = pbuf;
		if (!desc)
			desc = "Bad Request: group chat was upgraded to a supergroup chat";
	}
	if (!desc) {
		switch (st) {
		case 400: desc = "Bad Request"; break;
		case 401: desc = "Unauthorized"; break;
		case 403: desc = "Forbidden: bot was blocked by the user"; break;
		case 404: desc = "Not Found"; break;
		case 409: desc = f->webhook_kind ? CONFLICT_WEBHOOK : CONFLICT_OTHER; break;
		case 500: desc = "Internal Server Error"; break;
		case 502: desc = "Bad Gateway"; break;
		default: desc = "fakebot fault"; break;
		}
	}
	api_error(x, st, desc, params);
}

/* Takes ownership of f. */
static void apply_fault(struct api *x, struct fault *f)
{
	conn_log(x->s, "bot %" PRId64 " %.*s: fault", x->b->id,
		 (int)(x->mlen > 64 ? 64 : x->mlen), x->mname);
	if (f->drop) {
		if (x->midx != M_GETUPDATES)
			bot_record(x->b, x->mname, x->mlen, x->midx, x->params, -1,
				   "fakebot fault: connection dropped", NULL, 0);
		fault_free(f);
		conn_abort(x->c);
		return;
	}
	if (f->hang) {
		if (x->midx != M_GETUPDATES)
			bot_record(x->b, x->mname, x->mlen, x->midx, x->params, -1,
				   "fakebot fault: never answered", NULL, 0);
		fault_free(f);
		conn_hold(x->c, HOLD_HANG, 0);
		return;
	}
	if (f->delay_ms) {
		uint32_t ms = f->delay_ms;
		if (!f->status && !f->raw) {
			fault_free(f);
			f = NULL;
		}
		x->c->hold.fault = f;
		conn_hold(x->c, HOLD_DELAY, ms);
		return;
	}
	fault_error(x, f);
	fault_free(f);
}

/* ---- entry ---- */

static void handle(struct conn *c, const struct request *r, struct fault *override)
{
	struct server *s = c->srv;
	struct api x = {.c = c, .s = s};
	const char *p = r->path + 4, *end = r->path + r->path_len;
	const char *slash = memchr(p, '/', (size_t)(end - p));
	int64_t id;
	const char *secret;
	size_t slen;
	if (!r->replay)
		s->st.api_requests++;
	if (!slash || slash + 1 >= end ||
	    memchr(slash + 1, '/', (size_t)(end - slash - 1)) ||
	    parse_token(p, (size_t)(slash - p), &id, &secret, &slen)) {
		fault_free(override);
		error_body(&s->body, 404, "Not Found", NULL);
		conn_respond_body(c, 404);
		return;
	}
	x.mname = slash + 1;
	x.mlen = (size_t)(end - slash - 1);
	x.midx = method_lookup(x.mname, x.mlen);
	if (!r->replay)
		s->st.methods[x.midx]++;
	x.b = bots_get(s, id, true);
	if (!x.b) {
		fault_free(override);
		error_body(&s->body, 500, "fakebot: out of memory", NULL);
		conn_respond_body(c, 500);
		return;
	}
	struct bot *b = x.b;
	if (x.midx == M_GETUPDATES && !r->replay)
		b->get_updates_calls++;
	if (b->invalid_token || (b->secret && (strlen(b->secret) != slen ||
					       memcmp(b->secret, secret, slen)))) {
		fault_free(override);
		api_error(&x, 401, "Unauthorized", NULL);
		goto out;
	}
	if (!b->secret && !(b->secret = fb_strndup(secret, slen))) {
		fault_free(override);
		api_error(&x, 500, "fakebot: out of memory", NULL);
		goto out;
	}
	int code;
	const char *err = read_params(&x, r, &code);
	if (err) {
		fault_free(override);
		api_error(&x, code, err, NULL);
		goto out;
	}
	if (override) {
		fault_error(&x, override);
		fault_free(override);
		goto out;
	}
	if (!r->replay && b->nfaults) {
		int64_t chat_id = 0;
		bool has_chat = param_i64(x.params, "chat_id", &chat_id) == 0;
		struct fault *f = bot_take_fault(b, x.mname, x.mlen, has_chat, chat_id);
		if (f) {
			apply_fault(&x, f);
			goto out;
		}
	}
	handlers[x.midx](&x);
out:
	cJSON_Delete(x.params);
	if (b->state_waiters.head)
		bot_changed(b);
}

void botapi_handle(struct conn *c, const struct request *r)
{
	handle(c, r, NULL);
}

void botapi_delay_expired(struct conn *c, const struct request *r, struct fault *f)
{
	handle(c, r, f);
}
