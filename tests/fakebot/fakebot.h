/* fakebot: shared declarations of the fake Telegram Bot API server that the
 * integration tests and benchmarks run botfactoryd against. One libuv loop, no
 * threads: every struct here lives on that loop. tests/fakebot/README.md describes
 * the interface (Bot API subset, control API, faults). */
#ifndef FAKEBOT_H
#define FAKEBOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <http_parser.h>
#include <openssl/ssl.h>
#include <uv.h>

#define FB_MAX_BODY (1024 * 1024)   /* larger request bodies: 413 */
#define FB_MAX_HEADER (16 * 1024)   /* request line + headers above this: 431 */
#define FB_MAX_PENDING (FB_MAX_BODY + FB_MAX_HEADER + 65536)
#define FB_MAX_WAIT_MS 600000       /* longest control-API hold */
#define FB_MSG_KEEP 128             /* bot/user messages remembered per chat */
#define FB_DEFAULT_MAX_SENT 100000  /* recorded calls kept per bot */

/* ---- fb_util.c: buffers, maps, small codecs ---- */

/* Growable byte buffer, NUL-terminated whenever data != NULL. An allocation
 * failure sets oom and makes later appends no-ops, so a caller can append a
 * whole response and check once. */
struct fbuf {
	char *data;
	size_t len, cap;
	bool oom;
};

int fbuf_reserve(struct fbuf *b, size_t extra); /* 0, or -1 (and oom set) */
void fbuf_add(struct fbuf *b, const void *p, size_t n);
void fbuf_puts(struct fbuf *b, const char *s);
void fbuf_printf(struct fbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void fbuf_i64(struct fbuf *b, int64_t v);
/* Appends s[0..n) as a quoted JSON string. */
void fbuf_json_str(struct fbuf *b, const char *s, size_t n);
void fbuf_clear(struct fbuf *b);
void fbuf_free(struct fbuf *b);
/* Frees the storage if it grew beyond keep bytes (a big request is over). */
void fbuf_shrink(struct fbuf *b, size_t keep);

/* Open-addressing map from int64 keys to non-NULL pointers. */
struct i64ent {
	int64_t key;
	void *val;
};
struct i64map {
	struct i64ent *e;
	size_t cap, n;
};
void *i64map_get(const struct i64map *m, int64_t key);
int i64map_put(struct i64map *m, int64_t key, void *val); /* 0 or -1 (ENOMEM) */
void *i64map_del(struct i64map *m, int64_t key);          /* the removed value */
void i64map_free(struct i64map *m);

/* Decodes application/x-www-form-urlencoded pairs into string members of obj
 * (a later key replaces an earlier one). 0, or -1 when out of memory. */
int form_decode(const char *s, size_t n, cJSON *obj);
bool utf8_valid(const char *s, size_t n);
size_t utf16_units(const char *s, size_t n);
char *fb_strndup(const char *s, size_t n); /* NULL when out of memory */

/* Parameter readers shared by the Bot API and the control API. A request's
 * parameters are one cJSON object: query string and form values are strings,
 * JSON bodies keep their types. Readers accept both forms.
 * Return 1 when absent, 0 when read, -1 when present but malformed. */
int param_i64(const cJSON *obj, const char *name, int64_t *out);
int param_bool(const cJSON *obj, const char *name, bool *out);
/* The string value, or NULL when absent or not a string. */
const char *param_str(const cJSON *obj, const char *name);
/* The value as JSON: a string member is parsed (and replaced by the parsed
 * value) first. NULL when absent; *bad set when present but not valid JSON. */
cJSON *param_json(cJSON *obj, const char *name, bool *bad);

double fb_now_ms(void);   /* monotonic milliseconds since the server started */
int64_t fb_unix_now(void);

/* ---- update kinds ---- */
enum upd_kind {
	K_MESSAGE,
	K_EDITED_MESSAGE,
	K_CHANNEL_POST,
	K_EDITED_CHANNEL_POST,
	K_BUSINESS_CONNECTION,
	K_BUSINESS_MESSAGE,
	K_EDITED_BUSINESS_MESSAGE,
	K_DELETED_BUSINESS_MESSAGES,
	K_MESSAGE_REACTION,
	K_MESSAGE_REACTION_COUNT,
	K_INLINE_QUERY,
	K_CHOSEN_INLINE_RESULT,
	K_CALLBACK_QUERY,
	K_SHIPPING_QUERY,
	K_PRE_CHECKOUT_QUERY,
	K_PURCHASED_PAID_MEDIA,
	K_POLL,
	K_POLL_ANSWER,
	K_MY_CHAT_MEMBER,
	K_CHAT_MEMBER,
	K_CHAT_JOIN_REQUEST,
	K_CHAT_BOOST,
	K_REMOVED_CHAT_BOOST,
	K_UNKNOWN, /* a raw update with no known kind: always delivered */
	K__COUNT
};
extern const char *const upd_kind_names[K__COUNT];
int upd_kind_lookup(const char *name); /* -1 when unknown */
/* Telegram's default (and "empty list"): every kind but these three. */
#define KIND_BIT(k) (UINT32_C(1) << (k))
#define ALLOWED_DEFAULT                                                        \
	(((KIND_BIT(K__COUNT) - 1)) &                                          \
	 ~(KIND_BIT(K_CHAT_MEMBER) | KIND_BIT(K_MESSAGE_REACTION) |             \
	   KIND_BIT(K_MESSAGE_REACTION_COUNT)))

/* ---- Bot API methods the fake knows (stats and records) ---- */
enum api_method {
	M_GETME,
	M_GETUPDATES,
	M_SENDMESSAGE,
	M_ANSWERCALLBACKQUERY,
	M_SETMYCOMMANDS,
	M_GETMYCOMMANDS,
	M_DELETEMYCOMMANDS,
	M_SETWEBHOOK,
	M_DELETEWEBHOOK,
	M_GETWEBHOOKINFO,
	M_EDITMESSAGETEXT,
	M_EDITMESSAGEREPLYMARKUP,
	M_DELETEMESSAGE,
	M_SENDCHATACTION,
	M_GETCHAT,
	M_LOGOUT,
	M_CLOSE,
	M_UNKNOWN,
	M__COUNT
};
extern const char *const api_method_names[M__COUNT];

/* ---- fb_bots.c: per-bot state ---- */

struct conn;

/* One fault rule (POST /control/bots/<id>/faults). */
struct fault {
	char method[64];    /* "*" or a method name, compared case-insensitively */
	bool has_chat;
	int64_t chat_id;
	int64_t remaining;  /* <= 0: applies until cleared */
	int status;         /* 0: none (hang/drop/delay only) */
	int retry_after;
	int64_t migrate_to; /* 0: none */
	bool webhook_kind;  /* 409 "webhook is active" rather than "other getUpdates" */
	bool hang, drop;
	uint32_t delay_ms;
	char *description;  /* NULL: the status's usual text */
	char *raw;          /* non-NULL: answer this text/html body instead of JSON */
	char *spec;         /* the rule as given, for listing */
};
void fault_free(struct fault *f);
struct fault *fault_dup(const struct fault *f); /* NULL when out of memory */

struct upd {
	int64_t id;
	uint8_t kind;
	uint32_t len;
	char *json; /* the whole Update object, update_id included */
};

struct record {
	int64_t seq;
	double at_ms;
	const char *method; /* static name, or owned copy when method_owned */
	bool method_owned;
	int error_code;     /* 0: ok */
	char *params;       /* JSON object text, NULL: {} */
	char *result;       /* JSON text on success */
	char *description;  /* on failure */
};

struct msg {
	int64_t id;
	char *json; /* the Message object */
};

struct chat {
	int64_t id;
	int64_t next_msg_id;
	bool seen;          /* appeared in an injected update */
	char type[16];
	char *title;        /* groups and channels */
	char *first_name, *username; /* private chats */
	struct msg msgs[FB_MSG_KEEP]; /* ring indexed by message_id % FB_MSG_KEEP */
};

struct cmdset {
	struct cmdset *next;
	char *scope_key;   /* canonical scope, e.g. "default" or "chat:42" */
	char *scope_json;
	char *lang;
	char *commands;    /* JSON array text */
};

/* Intrusive list of held requests (control waits) on one bot. */
struct holdlist {
	struct conn *head;
};

struct bot {
	int64_t id;
	char *secret;            /* token part after ':', bound on first use */
	char *username, *first_name;
	char *webhook;
	bool invalid_token, poll_throttle, strict_chats;

	/* pending updates: q[qhead .. qhead+qlen) in delivery order */
	struct upd *q;
	size_t qhead, qlen, qcap;
	bool q_unsorted;
	int64_t q_max_id;
	uint32_t kind_counts[K__COUNT];
	int64_t next_update_id;
	uint32_t allowed_mask;
	char *allowed_json;      /* allowed_updates as last given, NULL: never */

	/* getUpdates bookkeeping */
	int64_t get_updates_calls, conflicts_sent, filtered_updates;
	int64_t updates_delivered, polls_held_total;
	bool has_offset;
	int64_t last_offset, last_timeout, last_limit;
	bool last_had_allowed; /* the last getUpdates carried allowed_updates */
	int64_t prev_offset;
	double prev_poll_ms;
	struct conn *held_poll;

	/* recorded calls: ring rec[(rhead + i) % rcap], i < rlen */
	struct record *rec;
	size_t rhead, rlen, rcap, rmax;
	int64_t next_seq, rec_dropped;

	struct holdlist sent_waiters, state_waiters;
	struct i64map chats;
	struct cmdset *commands;
	int64_t set_commands_calls;
	struct fault **faults;
	size_t nfaults, faults_cap;
	uint8_t *cb_state;       /* callback query n (1-based) -> 1 pending, 2 answered */
	size_t cb_n, cb_cap;
};

struct server;

/* The bot with this id; created (with defaults) when create is set. NULL
 * when absent, or when creating failed for lack of memory. */
struct bot *bots_get(struct server *s, int64_t id, bool create);
/* Answers the bot's held requests (polls with [], waits as timed out) and
 * frees it. */
void bots_delete(struct server *s, struct bot *b);
void bots_delete_all(struct server *s);

/* Queues an update (json must be an Update object without update_id, or with
 * one that gets replaced). Returns the assigned id through *id_out. 0 or -1. */
int bot_push_update(struct bot *b, int kind, cJSON *update, int64_t *id_out);
void bot_confirm(struct bot *b, int64_t offset);
void bot_prune(struct bot *b); /* drops pending updates of kinds not allowed */
void bot_clear_updates(struct bot *b);
/* Appends a JSON array of at most limit pending updates. */
void bot_deliver(struct bot *b, struct fbuf *out, int64_t limit);
/* A held getUpdates is answered when something became deliverable. */
void bot_wake_poll(struct bot *b);
/* Re-evaluates the state waiters (call after anything on the bot changed). */
void bot_changed(struct bot *b);

/* Records a call (all methods but getUpdates). params may be NULL. */
void bot_record(struct bot *b, const char *method, size_t mlen, int midx,
		const cJSON *params, int error_code, const char *description,
		const char *result, size_t rlen);
void bot_set_max_sent(struct bot *b, size_t max);
/* Appends the sent-listing JSON object (see README). */
void bot_sent_json(struct bot *b, struct fbuf *out, int64_t after,
		   const char *method, bool all, int64_t limit, bool timed_out);
bool record_matches(const struct record *r, const char *method, bool all);
/* How many recorded calls after seq `after` match. */
int64_t bot_count_sent(struct bot *b, int64_t after, const char *method, bool all);

struct chat *chat_get(struct bot *b, int64_t id, bool create);
const char *default_chat_type(int64_t chat_id);
void chat_json(struct fbuf *out, const struct chat *c);
const struct msg *chat_find_msg(const struct chat *c, int64_t message_id);
int chat_store_msg(struct chat *c, int64_t message_id, const char *json,
		   size_t len);

/* The first rule that matches; its count is consumed (and an exhausted rule
 * removed). The caller owns the returned copy. NULL: none matched (or no
 * memory to copy: treated as none). */
struct fault *bot_take_fault(struct bot *b, const char *method, size_t mlen,
			     bool has_chat, int64_t chat_id);
void bot_clear_faults(struct bot *b);

cJSON *bot_state_json(struct bot *b);

void holdlist_add(struct holdlist *l, struct conn *c);
void holdlist_remove(struct holdlist *l, struct conn *c);

/* ---- fb_http.c: connections ---- */

enum hold_kind {
	HOLD_NONE,
	HOLD_POLL,   /* getUpdates long poll; bot->held_poll == conn */
	HOLD_SENT,   /* GET /control/bots/<id>/sent waiting for min calls */
	HOLD_STATE,  /* GET /control/bots/<id>/state waiting for a condition */
	HOLD_HANG,   /* fault: never answered */
	HOLD_DELAY,  /* fault: answered after delay_ms */
};

struct hold {
	enum hold_kind kind;
	struct bot *bot;              /* POLL, SENT, STATE */
	struct conn *prev, *next;     /* in bot->sent_waiters / state_waiters */
	int64_t limit;                /* POLL: getUpdates limit; SENT: max calls */
	/* SENT */
	int64_t after, min, count;
	bool all;
	char method[64];
	/* STATE: conditions, -1 when not given */
	int64_t min_calls, held, max_pending, min_pending, min_conflicts;
	/* DELAY */
	struct fault *fault;          /* answer with this fault's error; NULL: replay */
};

struct request {
	enum http_method method;
	const char *path;
	size_t path_len;
	const char *query;
	size_t query_len;
	const char *body;
	size_t body_len;
	const char *ctype; /* lower-case media type, "" when none */
	bool replay;       /* a delayed request coming back: faults are skipped */
};

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;     /* hold deadline, resume, or drain deadline */
	uv_write_t wreq;
	uv_shutdown_t sreq;
	struct server *srv;
	struct conn *prev, *next; /* all connections */
	int handles;
	http_parser parser;
	SSL *ssl;

	struct fbuf url, body, pending, out, wout;
	char hname[32];
	size_t hname_len;
	int hcapture;         /* which header value is being captured */
	char ctype[64];
	size_t ctype_len;
	char expect[32];
	size_t expect_len;
	size_t header_bytes;
	int req_error;        /* HTTP status to answer instead of dispatching */
	bool keep_alive;
	bool req_open;        /* a dispatched request awaits its response */

	bool writing, close_after_write, closing, draining, read_paused, peer_eof;
	struct hold hold;
};

struct stats {
	uint64_t requests, api_requests, control_requests, http_errors;
	uint64_t connections_total, bytes_in, bytes_out;
	uint64_t methods[M__COUNT];
};

struct server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_signal_t sig_term, sig_int;
	bool listening;
	SSL_CTX *tls;
	bool verbose, quiet, stopping;
	struct conn *conns;
	size_t nconns, held;
	struct i64map bots;
	struct stats st;
	struct fbuf body;   /* scratch: response body being built */
	struct fbuf res;    /* scratch: a method's result being built */
	struct fbuf plain;  /* scratch: TLS plaintext on its way into SSL_write */
	size_t max_sent;
	bool poll_throttle;
	int exit_code;
	char rbuf[65536];
};

int http_listen(struct server *s, const char *host, int port, int *bound_port);
int tls_setup(struct server *s, const char *cert, const char *key);
void http_close_all(struct server *s);

/* Sends a complete response. A held connection is released first. */
void conn_respond(struct conn *c, int status, const char *ctype,
		  const char *body, size_t len);
/* Sends b as JSON (or a 500 when building it ran out of memory). */
void conn_respond_buf(struct conn *c, int status, const struct fbuf *b);
/* Sends and clears s->body. Functions that answer a connection other than the
 * one being handled (held requests) build their own buffer instead, since
 * s->body may be half-built by the handler that triggered them. */
void conn_respond_body(struct conn *c, int status);
/* Holds the current request; timeout_ms 0 means no deadline. */
void conn_hold(struct conn *c, enum hold_kind kind, uint64_t timeout_ms);
/* Releases a hold without answering (the caller answers next). */
void conn_unhold(struct conn *c);
/* Closes the connection at once, answering nothing. */
void conn_abort(struct conn *c);
void conn_log(struct server *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- fb_botapi.c / fb_control.c ---- */
#define CONFLICT_OTHER                                                         \
	"Conflict: terminated by other getUpdates request; make sure that only " \
	"one bot instance is running"
#define CONFLICT_WEBHOOK                                                       \
	"Conflict: can't use getUpdates method while webhook is active; use "    \
	"deleteWebhook to delete the webhook first"
/* Answers a held getUpdates with an error (a conflict). */
void botapi_poll_error(struct conn *c, int code, const char *desc);
void botapi_handle(struct conn *c, const struct request *r);
void botapi_poll_expired(struct conn *c);
void botapi_answer_poll(struct conn *c);
/* A delayed request's time has come: answer f's error, or (f without a
 * status) process the request normally. Takes ownership of f. */
void botapi_delay_expired(struct conn *c, const struct request *r,
			  struct fault *f);
void control_handle(struct conn *c, const struct request *r);
void control_answer_sent(struct conn *c, bool timed_out);
void control_answer_state(struct conn *c, bool timed_out);
bool control_state_ready(const struct conn *c);

#endif
