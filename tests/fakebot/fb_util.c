/* fakebot utilities: the growable buffer responses are built in, an int64
 * hash map (bots by id, chats by id), form decoding, UTF-8/UTF-16 helpers and
 * the readers that take a parameter from a query string, a form or JSON alike. */
#include "fakebot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- fbuf ---- */

int fbuf_reserve(struct fbuf *b, size_t extra)
{
	if (b->oom)
		return -1;
	if (extra > SIZE_MAX / 4 - b->len) {
		b->oom = true;
		return -1;
	}
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return -1;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

void fbuf_add(struct fbuf *b, const void *p, size_t n)
{
	if (fbuf_reserve(b, n))
		return;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void fbuf_puts(struct fbuf *b, const char *s)
{
	fbuf_add(b, s, strlen(s));
}

void fbuf_printf(struct fbuf *b, const char *fmt, ...)
{
	va_list ap;
	if (fbuf_reserve(b, 64))
		return;
	size_t room = b->cap - b->len;
	va_start(ap, fmt);
	int n = vsnprintf(b->data + b->len, room, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if ((size_t)n >= room) {
		if (fbuf_reserve(b, (size_t)n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void fbuf_i64(struct fbuf *b, int64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
	fbuf_add(b, tmp, (size_t)n);
}

void fbuf_json_str(struct fbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	/* worst case every byte becomes \u00XX */
	if (n > SIZE_MAX / 8 || fbuf_reserve(b, n * 6 + 2))
		return;
	char *o = b->data + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		switch (ch) {
		case '"': *o++ = '\\'; *o++ = '"'; break;
		case '\\': *o++ = '\\'; *o++ = '\\'; break;
		case '\n': *o++ = '\\'; *o++ = 'n'; break;
		case '\r': *o++ = '\\'; *o++ = 'r'; break;
		case '\t': *o++ = '\\'; *o++ = 't'; break;
		default:
			if (ch < 0x20) {
				*o++ = '\\'; *o++ = 'u'; *o++ = '0'; *o++ = '0';
				*o++ = hex[ch >> 4];
				*o++ = hex[ch & 15];
			} else {
				*o++ = (char)ch;
			}
		}
	}
	*o++ = '"';
	b->len = (size_t)(o - b->data);
	b->data[b->len] = '\0';
}

void fbuf_clear(struct fbuf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->data)
		b->data[0] = '\0';
}

void fbuf_free(struct fbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

void fbuf_shrink(struct fbuf *b, size_t keep)
{
	if (b->len == 0 && b->cap > keep)
		fbuf_free(b);
}

char *fb_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* ---- i64map: linear probing, backward-shift deletion ---- */

static size_t slot_of(int64_t key, size_t cap)
{
	uint64_t x = (uint64_t)key + UINT64_C(0x9e3779b97f4a7c15);
	x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return (size_t)x & (cap - 1);
}

void *i64map_get(const struct i64map *m, int64_t key)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (!m->e[i].val)
			return NULL;
		if (m->e[i].key == key)
			return m->e[i].val;
	}
}

static int grow(struct i64map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	struct i64ent *e = calloc(cap, sizeof *e);
	if (!e)
		return -1;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->e[i].val)
			continue;
		size_t j = slot_of(m->e[i].key, cap);
		while (e[j].val)
			j = (j + 1) & (cap - 1);
		e[j] = m->e[i];
	}
	free(m->e);
	m->e = e;
	m->cap = cap;
	return 0;
}

int i64map_put(struct i64map *m, int64_t key, void *val)
{
	if ((m->n + 1) * 4 > m->cap * 3 && grow(m))
		return -1;
	size_t i = slot_of(key, m->cap);
	while (m->e[i].val && m->e[i].key != key)
		i = (i + 1) & (m->cap - 1);
	if (!m->e[i].val)
		m->n++;
	m->e[i].key = key;
	m->e[i].val = val;
	return 0;
}

void *i64map_del(struct i64map *m, int64_t key)
{
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1, i = slot_of(key, m->cap);
	while (m->e[i].val && m->e[i].key != key)
		i = (i + 1) & mask;
	void *val = m->e[i].val;
	if (!val)
		return NULL;
	/* shift back the entries of the probe run that follows */
	size_t j = i;
	for (;;) {
		m->e[i].val = NULL;
		for (;;) {
			j = (j + 1) & mask;
			if (!m->e[j].val)
				goto done;
			size_t home = slot_of(m->e[j].key, m->cap);
			/* can the entry at j move to the hole at i? */
			if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
				break;
		}
		m->e[i] = m->e[j];
		i = j;
	}
done:
	m->n--;
	return val;
}

void i64map_free(struct i64map *m)
{
	free(m->e);
	m->e = NULL;
	m->cap = m->n = 0;
}

/* ---- form decoding ---- */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..n) into a new NUL-terminated string. */
static char *pct_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			*o++ = ' ';
		} else if (s[i] == '%' && i + 2 < n &&
			   hexval((unsigned char)s[i + 1]) >= 0 &&
			   hexval((unsigned char)s[i + 2]) >= 0) {
			*o++ = (char)(hexval((unsigned char)s[i + 1]) * 16 +
				      hexval((unsigned char)s[i + 2]));
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

int form_decode(const char *s, size_t n, cJSON *obj)
{
	size_t i = 0;
	while (i < n) {
		size_t end = i;
		while (end < n && s[end] != '&')
			end++;
		size_t eq = i;
		while (eq < end && s[eq] != '=')
			eq++;
		if (eq > i) {
			char *k = pct_decode(s + i, eq - i);
			char *v = pct_decode(s + (eq < end ? eq + 1 : end),
					     eq < end ? end - eq - 1 : 0);
			cJSON *item = (k && v) ? cJSON_CreateString(v) : NULL;
			int rc = 0;
			if (!item) {
				rc = -1;
			} else {
				cJSON_DeleteItemFromObjectCaseSensitive(obj, k);
				if (!cJSON_AddItemToObject(obj, k, item)) {
					cJSON_Delete(item);
					rc = -1;
				}
			}
			free(k);
			free(v);
			if (rc)
				return -1;
		}
		i = end + 1;
	}
	return 0;
}

/* ---- UTF-8 ---- */

bool utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t len;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

size_t utf16_units(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t units = 0;
	for (size_t i = 0; i < n; i++) {
		if ((s[i] & 0xc0) == 0x80)
			continue; /* continuation byte */
		units += s[i] >= 0xf0 ? 2 : 1;
	}
	return units;
}

/* ---- parameters ---- */

static bool parse_i64_str(const char *s, int64_t *out)
{
	const char *p = s;
	bool neg = false;
	while (*p == ' ')
		p++;
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (*p < '0' || *p > '9')
		return false;
	uint64_t v = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		uint64_t d = (uint64_t)(*p - '0');
		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	while (*p == ' ')
		p++;
	if (*p)
		return false;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

int param_i64(const cJSON *obj, const char *name, int64_t *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!it || cJSON_IsNull(it))
		return 1;
	if (cJSON_IsNumber(it)) {
		double d = it->valuedouble;
		if (!(d > -9.0e18 && d < 9.0e18)) /* NaN fails too */
			return -1;
		int64_t v = (int64_t)d;
		if ((double)v != d)
			return -1;
		*out = v;
		return 0;
	}
	if (cJSON_IsString(it) && it->valuestring)
		return parse_i64_str(it->valuestring, out) ? 0 : -1;
	return -1;
}

int param_bool(const cJSON *obj, const char *name, bool *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!it || cJSON_IsNull(it))
		return 1;
	if (cJSON_IsBool(it)) {
		*out = cJSON_IsTrue(it);
		return 0;
	}
	if (cJSON_IsNumber(it)) {
		*out = it->valuedouble != 0;
		return 0;
	}
	if (cJSON_IsString(it) && it->valuestring) {
		const char *v = it->valuestring;
		if (!strcasecmp(v, "true") || !strcmp(v, "1")) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(v, "false") || !strcmp(v, "0") || !*v) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

const char *param_str(const cJSON *obj, const char *name)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsString(it) ? it->valuestring : NULL;
}

cJSON *param_json(cJSON *obj, const char *name, bool *bad)
{
	cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	*bad = false;
	if (!it || cJSON_IsNull(it))
		return NULL;
	if (!cJSON_IsString(it))
		return it;
	cJSON *parsed = cJSON_Parse(it->valuestring);
	if (!parsed) {
		*bad = true;
		return NULL;
	}
	if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, name, parsed)) {
		cJSON_Delete(parsed);
		*bad = true;
		return NULL;
	}
	return parsed;
}

/* ---- time ---- */

static double start_ms = -1;

double fb_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double now = (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
	if (start_ms < 0)
		start_ms = now;
	return now - start_ms;
}

int64_t fb_unix_now(void)
{
	return (int64_t)time(NULL);
}

/* ---- names ---- */

const char *const upd_kind_names[K__COUNT] = {
	"message", "edited_message", "channel_post", "edited_channel_post",
	"business_connection", "business_message", "edited_business_message",
	"deleted_business_messages", "message_reaction",
	"message_reaction_count", "inline_query", "chosen_inline_result",
	"callback_query", "shipping_query", "pre_checkout_query",
	"purchased_paid_media", "poll", "poll_answer", "my_chat_member",
	"chat_member", "chat_join_request", "chat_boost", "removed_chat_boost",
	"unknown",
};

int upd_kind_lookup(const char *name)
{
	for (int k = 0; k < K_UNKNOWN; k++)
		if (!strcmp(upd_kind_names[k], name))
			return k;
	return -1;
}

const char *const api_method_names[M__COUNT] = {
	"getMe", "getUpdates", "sendMessage", "answerCallbackQuery",
	"setMyCommands", "getMyCommands", "deleteMyCommands", "setWebhook",
	"deleteWebhook", "getWebhookInfo", "editMessageText",
	"editMessageReplyMarkup", "deleteMessage", "sendChatAction", "getChat",
	"logOut", "close", "other",
};
