/* bot: one running bot: poller, database jobs, sender, deadline timer (see
 * bot.h). Everything here runs on the loop thread except the `run`
 * functions of the database jobs, which run on the database thread and touch
 * only their job, the store and the (immutable) spec. */
#include "botfactory/bot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "botfactory/engine.h"
#include "botfactory/log.h"
#include "botfactory/util.h"
#include "botfactory/utf8.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000
#define WEBHOOK_RETRY_MS 60000
#define DUE_BATCH 100
/* How long acknowledged outbox rows may wait for a batch of updates to
 * carry their deletion, before a transaction of their own deletes them. */
#define ACK_DELAY_MS 100
/* How long the done calls of an outbox row whose other calls are still
 * pending (a chat paused by a 429, say) wait for the rest, before they are
 * taken out of the row one by one: a crash within this time sends them
 * again. Under load a row is done as a whole long before. */
#define SETTLE_HOLD_MS 1000
/* How long a first poll must be held before the bot takes it that nothing
 * waited at Telegram while it was down (Telegram answers at once when
 * updates wait). */
#define DRAIN_GRACE_MS 1000
/* The kinds of update every getUpdates asks for. Telegram keeps the last
 * list it was given, so every call carries it, the shutdown's confirmation
 * included. */
#define ALLOWED_UPDATES "\"allowed_updates\":[\"message\",\"callback_query\"]"
/* Idle chat queues a bot keeps (about 100 bytes each). */
#define CHATQ_KEEP 128

/* ---- small helpers -------------------------------------------------------- */

/* The wall clock: what ask deadlines are stored in (they must mean the
 * same after a restart). */
static int64_t wall_ms(void)
{
	return util_clock_ms(CLOCK_REALTIME);
}

/* The clock of the sender's pauses (429s, backoffs, throttles): a step of
 * the wall clock (NTP, an administrator) must not hold replies for an hour
 * or end a 429's wait early. */
static int64_t mono_ms(void)
{
	return util_clock_ms(CLOCK_MONOTONIC);
}

/* Exponential backoff with jitter: the next delay after `prev` (0 = first),
 * always within BACKOFF_MIN_MS..BACKOFF_MAX_MS. */
static int next_backoff(int prev)
{
	int base = prev ? prev * 2 : BACKOFF_MIN_MS;
	if (base > BACKOFF_MAX_MS)
		base = BACKOFF_MAX_MS;
	/* +-20% jitter so that many bots do not retry in step (only upwards
	 * at the floor, only downwards at the ceiling) */
	int jitter = base / 5;
	int ms = base - jitter + (int)((unsigned)rand() % (unsigned)(2 * jitter + 1));
	return ms < BACKOFF_MIN_MS ? BACKOFF_MIN_MS + (BACKOFF_MIN_MS - ms)
	       : ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS - (ms - BACKOFF_MAX_MS)
				     : ms;
}

/* Starts a timer `ms` from now. The loop's cached time may lag behind the
 * clock, which would fire the timer early: a 429's retry_after is a lower
 * bound, so refresh it first (and round the wall clock's truncation up). */
static void start_timer(struct bot *b, uv_timer_t *t, uv_timer_cb cb, int64_t ms);

static uint64_t fingerprint(const char *token)
{
	const char *f[] = {"token", token};
	return button_hash(0, f, 2);
}

/* ---- the bot ------------------------------------------------------------ */

/* An outbox row (one batch's calls) while its calls are queued: it is
 * deleted when all of them are done. */
struct orow {
	int64_t id;
	size_t items; /* out_items that point here */
	size_t left;  /* its calls not done yet */
	int64_t *done; /* done calls not settled yet, while others are left */
	size_t ndone, capdone;
	int64_t since; /* monotonic ms of the first of them */
	struct orow *prev, *next; /* the bot's partial list, while ndone > 0 */
};

struct out_item {
	int64_t id;
	struct orow *row;
	int64_t chat;
	int priority;
	const char *method; /* static: see engine_method */
	char *body; /* JSON without chat_id */
	int attempts;
	int64_t retry_at; /* a button answer: not before (monotonic ms) */
	struct out_item *next;
};

/* A token bucket for the optional pre-throttles. */
struct bucket {
	double tokens;
	int64_t last; /* monotonic ms of the last refill, 0 = never used (full) */
};

struct chatq {
	int64_t chat;
	struct bucket bucket;
	struct out_item *head, *tail;
	bool busy;      /* a send of this chat is in flight */
	bool queued;    /* on the ready list */
	int64_t paused_until; /* monotonic ms (mono_ms), 0 = not paused */
	bool in_paused;       /* on the bot's list of paused chats */
	struct chatq *next_paused;
	int backoff_ms;
	struct chatq *next_ready;
	struct chatq *hnext; /* hash chain */
};

struct send_slot {
	struct tg_req req;
	struct bot *bot;
	struct out_item *item;
	struct chatq *q; /* NULL for priority items */
	bool ready;      /* req initialised */
};

struct bot {
	struct bot_env *env;
	struct spec *spec;
	char *token;
	uint64_t token_fp;
	char username[64];
	enum bot_status status;
	char last_error[256];
	struct bot_counters counters;

	/* poller */
	struct tg_req poll;
	int64_t offset;
	int backoff_ms;
	unsigned failures; /* transient poll errors in a row */
	long fail_http;    /* the last one's HTTP status (0: none came) */
	uv_timer_t timer; /* poller retries */
	bool loaded;      /* offset and outbox loaded */
	bool polling;     /* a getUpdates is in flight */
	bool retry_exact; /* the timer waits out a 429's retry_after */
	struct batch_job *retry_batch; /* a batch to hand to the database again */
	char *pending_cmds; /* setMyCommands body in flight */
	struct tg_req ctl;  /* setMyCommands after a spec swap (lazily set up) */
	bool ctl_ready;
	char *ctl_cmds;     /* its body in flight */
	char *ctl_next;     /* a newer menu, sent when the menu call in flight
			       (pending_cmds or ctl_cmds) ends */

	/* sender */
	struct send_slot *slots;
	struct chatq **table;
	size_t nbuckets, nchats;
	struct chatq *ready_head, *ready_tail;
	struct out_item *prio_head, *prio_tail;
	int64_t paused_until; /* the whole bot, monotonic ms */
	struct chatq *paused; /* chats with a pause: only these are scanned */
	int64_t throttled_until; /* chat messages held by the bot's throttle */
	struct bucket bucket;    /* the bot's throttle */
	int64_t last_429_at;
	int64_t last_429_chat;
	uv_timer_t send_timer;
	int64_t *acks;    /* outbox settlements to write (store_outbox_settle) */
	size_t nacks, capacks;
	struct orow *partial_head, *partial_tail; /* rows partly done, oldest first */
	bool ack_job;     /* a settle job is in flight */
	uv_timer_t ack_timer; /* writes them when no batch comes to carry them */

	/* deadlines */
	uv_timer_t deadline_timer;
	int64_t next_deadline;
	bool drained; /* what waited at Telegram when the bot started is handled:
			 until then no deadline fires (an answer typed in time
			 while the daemon was down is still the answer) */
	int64_t drain_at;     /* wall ms: the first poll, still held then, had
				 nothing waiting (0: not sent yet) */
	bool due_job;

	unsigned jobs;    /* database jobs in flight */
	unsigned handles; /* open timers */
	bool stopping;
	bool confirm;          /* confirm the offset to Telegram before stopping */
	bool confirm_inflight;
	void (*stopped)(struct bot *b, void *arg);
	void *stopped_arg;
};

static const char *const status_names[] = {
	[BOT_DISABLED] = "disabled",
	[BOT_STARTING] = "starting",
	[BOT_RUNNING] = "running",
	[BOT_BACKOFF] = "backoff",
	[BOT_UNAUTHORIZED] = "unauthorized",
	[BOT_CONFLICT] = "conflict",
	[BOT_REFUSED] = "refused",
	[BOT_STOPPED] = "stopped",
};

const char *bot_status_name(enum bot_status s)
{
	return status_names[s];
}

long bot_poll_margin_ms(int poll_timeout_s)
{
	long margin = poll_timeout_s / 2;
	return (margin < 2 ? 2 : margin > 15 ? 15 : margin) * 1000;
}

const char *bot_id(const struct bot *b)
{
	return b->spec->id;
}

const struct spec *bot_spec(const struct bot *b)
{
	return b->spec;
}

const char *bot_token(const struct bot *b)
{
	return b->token;
}

enum bot_status bot_status(const struct bot *b)
{
	return b->status;
}

const char *bot_last_error(const struct bot *b)
{
	return b->last_error;
}

const struct bot_counters *bot_counters(const struct bot *b)
{
	return &b->counters;
}

static void set_error(struct bot *b, enum bot_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(struct bot *b, enum bot_status st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b->last_error, sizeof(b->last_error), fmt, ap);
	va_end(ap);
	log_redact(b->last_error);
	b->status = st;
}

static void maybe_stopped(struct bot *b);

static void start_timer(struct bot *b, uv_timer_t *t, uv_timer_cb cb, int64_t ms)
{
	uv_update_time(b->env->loop);
	uv_timer_start(t, cb, ms > 0 ? (uint64_t)ms + 1 : 0, 0);
}

/* ---- database jobs --------------------------------------------------------- */

/* Output of jobs that produce outbox calls: one outbox row (method: static,
 * see engine_method; body owned). */
struct rows {
	struct outbox_call *v;
	size_t n, cap;
	int64_t row; /* the row's id once written */
};

static void rows_free(struct rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].body);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* Runs one event through the engine, stores the conversation and appends
 * the calls to out (database thread; the job writes them as one outbox
 * row, rows_write), all or nothing: everything that can run out of memory
 * (the engine, the JSON of the state and of every call) happens before the
 * write, so a failure leaves nothing behind without a savepoint, and a
 * write error fails the whole job. Returns 0, -ENOMEM (the event is
 * skipped) or -EIO. */
static int handle_event(struct store *st, const struct spec *spec,
			const struct engine_ctx *ctx, const struct event *ev,
			struct rows *out)
{
	struct convo cur, next;
	struct actions acts = {0};
	char *state = NULL;
	size_t built = 0;
	int rc = store_convo_get(st, spec->id, ev->chat_id, ev->user_id, &cur);
	if (rc == -EIO)
		return rc;
	/* a conversation that was and stays idle without variables (a plain
	 * /start) has no row: nothing to write */
	bool was_empty = !cur.flow && !cur.nvars && !cur.deadline_ms;
	rc = engine_step(spec, ctx, &cur, ev, &next, &acts);
	convo_clear(&cur);
	if (rc)
		return rc;
	bool is_empty = !next.flow && !next.nvars && !next.deadline_ms;
	int64_t deadline = next.flow ? next.deadline_ms : 0;
	if (!is_empty && !(state = convo_to_json(&next)))
		rc = -ENOMEM;
	convo_clear(&next);
	if (!rc && out->cap - out->n < acts.n) {
		size_t cap = out->n + acts.n + 8;
		struct outbox_call *v = realloc(out->v, cap * sizeof(*v));
		if (!v)
			rc = -ENOMEM;
		else {
			out->v = v;
			out->cap = cap;
		}
	}
	for (; !rc && built < acts.n; built++) {
		struct outbox_call *r = &out->v[out->n + built];
		*r = (struct outbox_call){0, acts.v[built].chat_id,
					  acts.v[built].kind == ACTION_ANSWER_CALLBACK, NULL, NULL};
		if ((rc = engine_action_json(&acts.v[built], false, &r->method, &r->body)))
			break;
	}
	/* the write */
	if (!rc && !(was_empty && is_empty))
		rc = store_convo_write(st, spec->id, ev->chat_id, ev->user_id, state, deadline);
	if (rc) {
		for (size_t i = 0; i < built; i++)
			free(out->v[out->n + i].body);
	} else {
		out->n += acts.n;
	}
	free(state);
	actions_free(&acts);
	return rc;
}

/* Writes a job's calls as one outbox row (none when there are none).
 * Returns 0, -ENOMEM or -EIO: the job fails, nothing of it is kept. */
static int rows_write(struct store *st, const struct spec *spec, struct rows *out)
{
	return out->n ? store_outbox_add(st, spec->id, out->v, out->n, &out->row) : 0;
}

static const char *str_member(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) && utf8_valid(v->valuestring, strlen(v->valuestring), NULL)
		       ? v->valuestring
		       : NULL;
}

static int64_t num_member(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

/* Fills ev from a Telegram Update. Returns false for updates the engine
 * has nothing to do with (channel posts, inline callbacks...). */
static bool update_event(const cJSON *u, int64_t now, struct event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->now_ms = now;
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(u, "message");
	const cJSON *cb = cJSON_GetObjectItemCaseSensitive(u, "callback_query");
	const cJSON *from;
	if (cJSON_IsObject(msg)) {
		ev->kind = EVENT_MESSAGE;
		from = cJSON_GetObjectItemCaseSensitive(msg, "from");
		ev->message_id = num_member(msg, "message_id");
		ev->sent_ms = num_member(msg, "date") * 1000;
		ev->text = str_member(msg, "text");
	} else if (cJSON_IsObject(cb)) {
		ev->kind = EVENT_CALLBACK;
		from = cJSON_GetObjectItemCaseSensitive(cb, "from");
		msg = cJSON_GetObjectItemCaseSensitive(cb, "message");
		ev->callback_id = str_member(cb, "id");
		ev->callback_data = str_member(cb, "data");
		ev->message_id = num_member(msg, "message_id");
		if (!cJSON_IsObject(msg) || !ev->callback_id)
			return false; /* inline-mode callback: no chat */
	} else {
		return false;
	}
	const cJSON *chat = cJSON_GetObjectItemCaseSensitive(msg, "chat");
	const char *type = str_member(chat, "type");
	if (!cJSON_IsObject(from) || !cJSON_IsObject(chat) || !type ||
	    !strcmp(type, "channel"))
		return false;
	ev->chat_id = num_member(chat, "id");
	ev->chat_kind = strcmp(type, "private") ? CHAT_GROUP : CHAT_PRIVATE;
	ev->chat_title = str_member(chat, "title");
	ev->user_id = num_member(from, "id");
	ev->first_name = str_member(from, "first_name");
	ev->last_name = str_member(from, "last_name");
	ev->username = str_member(from, "username");
	return ev->chat_id && ev->user_id;
}

/* A batch of updates from one getUpdates. */
struct batch_job {
	struct dbq_job job;
	struct bot *bot;
	struct spec *spec; /* a reference: the bot may swap its spec meanwhile */
	char username[64];
	uint64_t token_fp;
	cJSON *root;   /* the whole reply; result = the updates */
	cJSON *updates;
	int64_t *acks;   /* outbox settlements (store_outbox_settle) for the same transaction */
	size_t nacks;
	int64_t offset;  /* out: the next offset */
	int64_t next_deadline;
	bool drains;     /* the last batch of what waited at start */
	size_t handled, failed;
	struct rows rows;
};

static void batch_run(struct dbq_job *j, struct store *st)
{
	struct batch_job *bj = (struct batch_job *)j;
	struct engine_ctx ctx = {bj->username[0] ? bj->username : NULL};
	const cJSON *u;
	int64_t now = wall_ms();
	rows_free(&bj->rows);
	bj->handled = bj->failed = 0;
	if ((j->rc = store_outbox_settle(st, bj->acks, bj->nacks)))
		return;
	cJSON_ArrayForEach(u, bj->updates)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(u, "update_id");
		if (!cJSON_IsNumber(id))
			continue;
		/* ids may restart after a long silence: the next offset is the
		 * last id of the batch + 1, whatever came before */
		bj->offset = (int64_t)id->valuedouble + 1;
		struct event ev;
		if (!update_event(u, now, &ev))
			continue;
		int rc = handle_event(st, bj->spec, &ctx, &ev, &bj->rows);
		if (rc == -EIO) {
			j->rc = rc;
			return;
		}
		if (rc) { /* logged on the loop; skipped, never retried */
			bj->failed++;
			continue;
		}
		bj->handled++;
	}
	if ((j->rc = rows_write(st, bj->spec, &bj->rows)))
		return;
	if (store_offset_set(st, bj->spec->id, bj->token_fp, bj->offset)) {
		j->rc = -EIO;
		return;
	}
	bj->next_deadline = store_next_deadline(st, bj->spec->id);
	if (bj->next_deadline < 0)
		j->rc = -EIO;
}

/* Deadlines that fell due. */
struct due_job {
	struct dbq_job job;
	struct bot *bot;
	struct spec *spec; /* a reference */
	char username[64];
	struct store *st;
	int64_t now;
	int64_t next_deadline;
	int err;
	struct rows rows;
};

static void due_one(void *arg, int64_t chat, int64_t user)
{
	struct due_job *dj = arg;
	struct engine_ctx ctx = {dj->username[0] ? dj->username : NULL};
	struct event ev = {0};
	ev.kind = EVENT_TIMEOUT;
	ev.now_ms = dj->now;
	ev.chat_id = chat;
	ev.user_id = user;
	ev.chat_kind = chat < 0 ? CHAT_GROUP : CHAT_PRIVATE;
	int rc = dj->err ? 0 : handle_event(dj->st, dj->spec, &ctx, &ev, &dj->rows);
	if (rc == -EIO)
		dj->err = rc;
	else if (rc) {
		/* the engine could not run: clear the deadline so that it does
		 * not fire again and again */
		struct convo c;
		if (!store_convo_get(dj->st, dj->spec->id, chat, user, &c)) {
			c.deadline_ms = 0;
			if (store_convo_put(dj->st, dj->spec->id, chat, user, &c))
				dj->err = -EIO;
			convo_clear(&c);
		}
	}
}

static void due_run(struct dbq_job *j, struct store *st)
{
	struct due_job *dj = (struct due_job *)j;
	rows_free(&dj->rows);
	dj->st = st;
	dj->err = 0;
	int n = store_due(st, dj->spec->id, dj->now, DUE_BATCH, due_one, dj);
	if (n < 0 || dj->err) {
		j->rc = -EIO;
		return;
	}
	if ((j->rc = rows_write(st, dj->spec, &dj->rows)))
		return;
	dj->next_deadline = store_next_deadline(st, dj->spec->id);
	if (dj->next_deadline < 0)
		j->rc = -EIO;
}

/* Start-up: what the database knows of this bot. */
struct load_job {
	struct dbq_job job;
	struct bot *bot;
	struct spec *spec; /* a reference */
	uint64_t token_fp;
	int64_t offset;
	int64_t next_deadline;
	char *commands; /* last published */
	struct outbox_row *outbox;
	int noutbox;
};

static void load_run(struct dbq_job *j, struct store *st)
{
	struct load_job *lj = (struct load_job *)j;
	const char *id = lj->spec->id;
	if (store_offset_get(st, id, lj->token_fp, &lj->offset) ||
	    store_bot_commands_get(st, id, &lj->commands)) {
		j->rc = -EIO;
		return;
	}
	lj->noutbox = store_outbox_load(st, id, &lj->outbox);
	lj->next_deadline = store_next_deadline(st, id);
	if (lj->noutbox < 0 || lj->next_deadline < 0)
		j->rc = lj->noutbox < 0 ? lj->noutbox : -EIO;
}

/* Small write jobs: settle outbox rows, record published commands,
 * migrate a chat. */
struct write_job {
	struct dbq_job job;
	struct bot *bot;
	struct spec *spec; /* a reference: its id is read on the database
			      thread, and a reload may swap the bot's spec */
	int64_t *recs; /* store_outbox_settle's records */
	size_t nrecs;
	char *commands;
	int64_t from, to;
};

static void write_run(struct dbq_job *j, struct store *st)
{
	struct write_job *wj = (struct write_job *)j;
	j->rc = store_outbox_settle(st, wj->recs, wj->nrecs);
	if (!j->rc && wj->commands)
		j->rc = store_bot_commands_set(st, wj->spec->id, wj->commands);
	if (!j->rc && wj->from)
		j->rc = store_migrate_chat(st, wj->spec->id, wj->from, wj->to);
}

/* ---- sender ------------------------------------------------------------------- */

static void pump(struct bot *b);
static void flush_acks(struct bot *b);

static bool bucket_full(const struct bucket *bk, const struct spec_rate *r, int64_t now);

/* Frees the idle chat queues that hold nothing worth keeping: no reply, no
 * send in flight, no pause, and a throttle bucket full again (a new queue
 * would start the same). Run when the table is full, so that a throttled
 * bot's queues (kept while their bucket remembers recent sends) do not
 * grow with every chat it ever answered. Returns how many went. */
static size_t chat_sweep(struct bot *b, int64_t now)
{
	size_t freed = 0;
	for (size_t i = 0; i < b->nbuckets; i++) {
		for (struct chatq **p = &b->table[i]; *p;) {
			struct chatq *q = *p;
			const struct spec_rate *r = q->chat < 0 ? &b->spec->throttle_group
								: &b->spec->throttle_chat;
			if (q->head || q->busy || q->queued || q->in_paused ||
			    !bucket_full(&q->bucket, r, now)) {
				p = &q->hnext;
				continue;
			}
			*p = q->hnext;
			b->nchats--;
			free(q);
			freed++;
		}
	}
	if (freed)
		log_debug("bot %s: freed %zu idle chat queues", bot_id(b), freed);
	return freed;
}

static struct chatq *chat_find(struct bot *b, int64_t chat, bool create)
{
	if (b->nbuckets) {
		for (struct chatq *q = b->table[(uint64_t)chat % b->nbuckets]; q; q = q->hnext)
			if (q->chat == chat)
				return q;
	}
	if (!create)
		return NULL;
	/* full: free idle queues, and grow unless that made a quarter free
	 * (so that a sweep comes at most once per nbuckets / 4 new chats) */
	if (b->nchats >= b->nbuckets &&
	    (!b->nbuckets || chat_sweep(b, mono_ms()) < b->nbuckets / 4)) {
		size_t n = b->nbuckets ? b->nbuckets * 2 : 16;
		struct chatq **t = calloc(n, sizeof(*t));
		if (!t)
			return NULL;
		for (size_t i = 0; i < b->nbuckets; i++)
			for (struct chatq *q = b->table[i], *next; q; q = next) {
				next = q->hnext;
				q->hnext = t[(uint64_t)q->chat % n];
				t[(uint64_t)q->chat % n] = q;
			}
		free(b->table);
		b->table = t;
		b->nbuckets = n;
	}
	struct chatq *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->chat = chat;
	q->hnext = b->table[(uint64_t)chat % b->nbuckets];
	b->table[(uint64_t)chat % b->nbuckets] = q;
	b->nchats++;
	return q;
}

/* Frees a chat's queue once nothing is left in it (a bot answers many
 * chats over its life), unless the bot has few queues: a chat that talks
 * keeps its queue instead of allocating one per reply. Kept while a
 * throttle of chats is configured: its bucket remembers how much the chat
 * has just been sent. */
static void chat_release(struct bot *b, struct chatq *q)
{
	if (q->head || q->busy || q->queued || q->in_paused || b->nchats <= CHATQ_KEEP ||
	    b->spec->throttle_chat.count || b->spec->throttle_group.count)
		return;
	struct chatq **p = &b->table[(uint64_t)q->chat % b->nbuckets];
	while (*p && *p != q)
		p = &(*p)->hnext;
	if (!*p)
		return;
	*p = q->hnext;
	b->nchats--;
	free(q);
}

static void make_ready(struct bot *b, struct chatq *q)
{
	if (q->queued || q->busy || !q->head || q->paused_until)
		return;
	q->queued = true;
	q->next_ready = NULL;
	if (b->ready_tail)
		b->ready_tail->next_ready = q;
	else
		b->ready_head = q;
	b->ready_tail = q;
}

/* A new row tracker for an outbox row of ncalls pending calls; NULL when
 * out of memory (its calls then stay in the outbox: sent after the next
 * start). Freed by orow_unref once no item points to it. */
static struct orow *orow_new(struct bot *b, int64_t id, size_t ncalls)
{
	struct orow *r = calloc(1, sizeof(*r));
	if (!r)
		log_error("bot %s: out of memory queueing replies", bot_id(b));
	else {
		r->id = id;
		r->left = ncalls;
		r->items = 1; /* the caller's, until orow_unref */
	}
	return r;
}

static void orow_free(struct orow *r)
{
	free(r->done);
	free(r);
}

/* Drops a reference; frees the tracker when none is left and no done call
 * waits in it to be settled (it is then on the partial list, which owns
 * it). */
static void orow_unref(struct orow *r)
{
	if (!--r->items && !r->ndone)
		orow_free(r);
}

/* Takes r off the partial list, its done calls settled or moot. */
static void partial_unlink(struct bot *b, struct orow *r)
{
	*(r->prev ? &r->prev->next : &b->partial_head) = r->next;
	*(r->next ? &r->next->prev : &b->partial_tail) = r->prev;
	r->prev = r->next = NULL;
	r->ndone = 0;
}

static void item_free(struct out_item *it)
{
	if (it->row)
		orow_unref(it->row);
	free(it->body);
	free(it);
}

/* Takes a pending call of row r into the send queues (the body is moved). */
static void enqueue(struct bot *b, struct orow *r, int64_t id, int64_t chat, int priority,
		    const char *method, char *body)
{
	struct out_item *it = calloc(1, sizeof(*it));
	struct chatq *q = priority ? NULL : chat_find(b, chat, true);
	if (!it || (!priority && !q)) {
		/* stays in the outbox: sent after the next start */
		log_error("bot %s: out of memory queueing a reply", bot_id(b));
		free(it);
		free(body);
		return;
	}
	*it = (struct out_item){id, r, chat, priority, method, body, 0, 0, NULL};
	r->items++;
	if (priority) {
		if (b->prio_tail)
			b->prio_tail->next = it;
		else
			b->prio_head = it;
		b->prio_tail = it;
		return;
	}
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	make_ready(b, q);
}

/* Makes room for n more settlement values. Returns false when out of
 * memory. */
static bool acks_reserve(struct bot *b, size_t n)
{
	if (b->capacks - b->nacks >= n)
		return true;
	size_t cap = b->capacks ? b->capacks : 64;
	while (cap - b->nacks < n)
		cap *= 2;
	int64_t *nv = realloc(b->acks, cap * sizeof(*nv));
	if (!nv)
		return false;
	b->acks = nv;
	b->capacks = cap;
	return true;
}

/* Appends v[0..n) to the settlements to write, all or nothing. Returns
 * false when out of memory: the rows stay, at worst sent once more. */
static bool acks_push(struct bot *b, const int64_t *v, size_t n)
{
	if (!n) /* (v may be NULL) */
		return true;
	if (!acks_reserve(b, n))
		return false;
	memcpy(b->acks + b->nacks, v, n * sizeof(*v));
	b->nacks += n;
	return true;
}

/* Call id of row r is done (accepted, or dropped for good): the row is
 * deleted with its last call; until then the done ones wait in it. */
static void call_done(struct bot *b, struct orow *r, int64_t id)
{
	if (!--r->left) {
		if (r->ndone)
			partial_unlink(b, r);
		int64_t rec[2] = {r->id, 0};
		acks_push(b, rec, 2);
		return;
	}
	if (r->ndone == r->capdone) {
		size_t cap = r->capdone ? r->capdone * 2 : 4;
		int64_t *v = realloc(r->done, cap * sizeof(*v));
		if (!v)
			return; /* stays in the row: at worst sent once more */
		r->done = v;
		r->capdone = cap;
	}
	if (!r->ndone++) { /* the first: onto the partial list */
		r->since = mono_ms();
		r->prev = b->partial_tail;
		r->next = NULL;
		*(r->prev ? &r->prev->next : &b->partial_head) = r;
		b->partial_tail = r;
	}
	r->done[r->ndone - 1] = id;
}

/* Moves the done calls of partly done rows that waited SETTLE_HOLD_MS (all
 * of them when stopping) into the settlements to write. Returns false when
 * out of memory (the rest wait for the next flush). */
static bool settle_partial(struct bot *b)
{
	int64_t now = mono_ms();
	while (b->partial_head &&
	       (b->stopping || now - b->partial_head->since >= SETTLE_HOLD_MS)) {
		struct orow *r = b->partial_head;
		int64_t rec[2] = {r->id, (int64_t)r->ndone};
		if (!acks_reserve(b, 2 + r->ndone))
			return false;
		acks_push(b, rec, 2);
		acks_push(b, r->done, r->ndone);
		partial_unlink(b, r);
		if (!r->items)
			orow_free(r);
	}
	return true;
}

static void on_ack_timer(uv_timer_t *t);

/* Takes the item *pp out of a list whose last item is *tail (prev: the item
 * before it, NULL when it is the first). Returns it, unlinked. */
static struct out_item *item_unlink(struct out_item **pp, struct out_item *prev,
				    struct out_item **tail)
{
	struct out_item *it = *pp;
	*pp = it->next;
	if (*tail == it)
		*tail = prev;
	it->next = NULL;
	return it;
}

/* Settlements wait for the next batch to carry them, or ACK_DELAY_MS at
 * most; the done calls of a partly done row SETTLE_HOLD_MS (settle_partial):
 * arms the timer for the earlier of the two, unless it is due sooner. */
static void acks_soon(struct bot *b)
{
	int64_t ms;
	if (b->nacks)
		ms = ACK_DELAY_MS;
	else if (b->partial_head)
		ms = b->partial_head->since + SETTLE_HOLD_MS - mono_ms();
	else
		return;
	uv_timer_t *t = &b->ack_timer;
	if (!uv_is_active((uv_handle_t *)t) || (int64_t)uv_timer_get_due_in(t) > ms)
		start_timer(b, t, on_ack_timer, ms);
}

static void write_done(struct dbq_job *j)
{
	struct write_job *wj = (struct write_job *)j;
	struct bot *b = wj->bot;
	bool failed = j->rc && wj->nrecs && !b->stopping;
	if (wj->nrecs)
		b->ack_job = false;
	b->jobs--;
	/* settlements that failed (the database said why) are written again
	 * after a while; when stopping they are lost: those replies would be
	 * sent again after the restart, which is better than no exit */
	if (failed)
		acks_push(b, wj->recs, wj->nrecs);
	free(wj->recs);
	free(wj->commands);
	spec_unref(wj->spec);
	free(wj);
	/* rows acknowledged meanwhile wait for the next batch or the timer,
	 * like the others (maybe_stopped flushes them when stopping) */
	if (failed)
		start_timer(b, &b->ack_timer, on_ack_timer, BACKOFF_MIN_MS);
	else if (!b->stopping)
		acks_soon(b);
	maybe_stopped(b);
}

static struct write_job *new_write_job(struct bot *b)
{
	struct write_job *wj = calloc(1, sizeof(*wj));
	if (wj) {
		wj->job.run = write_run;
		wj->job.done = write_done;
		wj->bot = b;
		wj->spec = spec_ref(b->spec);
	}
	return wj;
}

static void submit(struct bot *b, struct dbq_job *j)
{
	b->jobs++;
	dbq_submit(b->env->dbq, j);
}

/* Writes the settlements, one job at a time (they pile up meanwhile: many
 * share a transaction). */
static void flush_acks(struct bot *b)
{
	if (b->ack_job)
		return;
	bool settled = settle_partial(b);
	struct write_job *wj = b->nacks ? new_write_job(b) : NULL;
	if (!wj) {
		/* nothing to write yet; or out of memory: try again later,
		 * not at once */
		if (settled && !b->nacks)
			acks_soon(b);
		else if (!b->stopping)
			start_timer(b, &b->ack_timer, on_ack_timer, ACK_DELAY_MS);
		return;
	}
	wj->recs = b->acks;
	wj->nrecs = b->nacks;
	b->acks = NULL;
	b->nacks = b->capacks = 0;
	b->ack_job = true;
	submit(b, &wj->job);
}

static void arm_send_timer(struct bot *b);

static void on_ack_timer(uv_timer_t *t)
{
	flush_acks(t->data);
}

/* Hands the settlements to a batch, whose transaction writes them (no
 * transaction of their own while updates keep coming). */
static void acks_to_batch(struct bot *b, struct batch_job *bj)
{
	settle_partial(b);
	if (!b->nacks)
		return;
	bj->acks = b->acks;
	bj->nacks = b->nacks;
	b->acks = NULL;
	b->nacks = b->capacks = 0;
	uv_timer_stop(&b->ack_timer);
	acks_soon(b); /* for the rows still partly done */
}

/* A failed batch gives its settlements back. */
static void acks_back(struct bot *b, struct batch_job *bj)
{
	acks_push(b, bj->acks, bj->nacks);
	free(bj->acks);
	bj->acks = NULL;
	bj->nacks = 0;
	acks_soon(b);
}

static void on_send_timer(uv_timer_t *t)
{
	struct bot *b = t->data;
	int64_t now = mono_ms();
	if (b->paused_until && b->paused_until <= now)
		b->paused_until = 0;
	if (b->throttled_until && b->throttled_until <= now)
		b->throttled_until = 0;
	for (struct chatq **p = &b->paused; *p;) {
		struct chatq *q = *p;
		if (q->paused_until > now) {
			p = &q->next_paused;
			continue;
		}
		*p = q->next_paused;
		q->in_paused = false;
		q->paused_until = 0;
		make_ready(b, q);
	}
	/* the timer first, then the pump: an answer due in between is sent
	 * by the pump, not left out of both (pump arms again for the pauses
	 * it makes) */
	arm_send_timer(b);
	pump(b);
}

/* Holds a chat's queue until `until` (monotonic ms). */
static void pause_chat(struct bot *b, struct chatq *q, int64_t until)
{
	q->paused_until = until;
	if (!q->in_paused) {
		q->in_paused = true;
		q->next_paused = b->paused;
		b->paused = q;
	}
}

/* Arms the send timer for the earliest pause that ends. */
static void arm_send_timer(struct bot *b)
{
	int64_t earliest = b->paused_until;
	if (b->throttled_until && (!earliest || b->throttled_until < earliest))
		earliest = b->throttled_until;
	/* a button answer already due waits for a free slot (on_sent pumps),
	 * not for the timer, which would fire again and again meanwhile */
	int64_t now = mono_ms();
	for (struct out_item *it = b->prio_head; it; it = it->next)
		if (it->retry_at > now && (!earliest || it->retry_at < earliest))
			earliest = it->retry_at;
	for (struct chatq *q = b->paused; q; q = q->next_paused)
		if (q->paused_until && (!earliest || q->paused_until < earliest))
			earliest = q->paused_until;
	if (!earliest || b->stopping) {
		uv_timer_stop(&b->send_timer);
		return;
	}
	start_timer(b, &b->send_timer, on_send_timer, earliest - now);
}

static void migrate_chat(struct bot *b, int64_t from, int64_t to)
{
	struct chatq *old = chat_find(b, from, false);
	struct chatq *q = chat_find(b, to, true);
	log_info("bot %s: chat %" PRId64 " became supergroup %" PRId64 ": moving its replies and conversations",
		 bot_id(b), from, to);
	if (old && q && old != q) {
		/* the old chat's items go first: they are older */
		for (struct out_item *it = old->head; it; it = it->next)
			it->chat = to;
		if (old->tail) {
			old->tail->next = q->head;
			q->head = old->head;
			if (!q->tail)
				q->tail = old->tail;
		}
		old->head = old->tail = NULL;
		make_ready(b, q);
		chat_release(b, old);
	}
	struct write_job *wj = new_write_job(b);
	if (wj) {
		wj->from = from;
		wj->to = to;
		submit(b, &wj->job);
	}
}

static void bot_unauthorized(struct bot *b, const char *what);

/* Decides what a send's result means for its item and queue. */
static void on_sent(struct tg_req *r, struct tg_result *res, void *arg)
{
	(void)r;
	struct send_slot *s = arg;
	struct bot *b = s->bot;
	struct out_item *it = s->item;
	struct chatq *q = s->q;
	int64_t now = mono_ms();
	bool done = false;
	s->item = NULL;
	s->q = NULL;
	if (q)
		q->busy = false;
	switch (res->status) {
	case TG_OK:
		b->counters.sent++;
		done = true;
		if (q)
			q->backoff_ms = 0;
		break;
	case TG_RETRY_AFTER: {
		/* A 429 does not say whether the chat or the whole bot hit the
		 * limit. It pauses the chat it came for; a second 429 for
		 * another chat within a second (or one for a call without chat
		 * order, like a button answer) means the bot-wide limit: the
		 * whole sender pauses. */
		int64_t until = now + (int64_t)res->retry_after * 1000;
		bool bot_wide = !q || (b->last_429_at && now - b->last_429_at < 1000 &&
				       b->last_429_chat != it->chat);
		b->last_429_at = now;
		b->last_429_chat = it->chat;
		if (bot_wide && until > b->paused_until)
			b->paused_until = until;
		if (q)
			pause_chat(b, q, until);
		b->counters.retries++;
		log_info("bot %s: Telegram asks to wait %d s before sending to %s %" PRId64,
			 bot_id(b), res->retry_after, bot_wide ? "any chat; last was" : "chat",
			 it->chat);
		break;
	}
	case TG_BAD_REQUEST:
		if (res->migrate_to && q) {
			/* the body has no chat_id: moving the queue (this item
			 * is its head) re-targets every pending reply */
			migrate_chat(b, q->chat, res->migrate_to);
			/* (without memory for the new queue the old one stays:
			 * made ready below, it tries again) */
			struct chatq *nq = chat_find(b, res->migrate_to, false);
			if (nq)
				q = nq;
			it = NULL;
			break;
		}
		/* fall through */
	case TG_FORBIDDEN:
	case TG_NOT_FOUND:
		b->counters.dropped++;
		done = true;
		log_warn("bot %s: dropped a %s to chat %" PRId64 ": %s", bot_id(b),
			 it->method, it->chat, res->description);
		break;
	case TG_UNAUTHORIZED:
		bot_unauthorized(b, it->method);
		break;
	case TG_CONFLICT_WEBHOOK:
	case TG_CONFLICT_POLLER:
	case TG_TRANSIENT:
		b->counters.retries++;
		if (it->priority) {
			/* a button answer is useless after Telegram's ~15 s:
			 * try a few times, 1 then 2 s apart, then give up */
			if (++it->attempts >= 3) {
				done = true;
				b->counters.dropped++;
			} else {
				it->retry_at = now + (int64_t)it->attempts * BACKOFF_MIN_MS;
			}
			break;
		}
		/* a warning for the first failure in a row, debug after */
		log_msg(q && q->backoff_ms ? LOG_DEBUG : LOG_WARN,
			"bot %s: sending to chat %" PRId64 " failed (%s), retrying",
			bot_id(b), it->chat, res->description);
		if (q) {
			q->backoff_ms = next_backoff(q->backoff_ms);
			pause_chat(b, q, now + q->backoff_ms);
		}
		break;
	}
	if (it && done) {
		if (q) { /* the head, unless a migration put older items before it */
			struct out_item **p = &q->head, *prev = NULL;
			while (*p && *p != it) {
				prev = *p;
				p = &(*p)->next;
			}
			if (*p)
				item_unlink(p, prev, &q->tail);
		}
		call_done(b, it->row, it->id);
		item_free(it);
	} else if (it && it->priority) {
		/* back to the front of the priority queue */
		it->next = b->prio_head;
		b->prio_head = it;
		if (!b->prio_tail)
			b->prio_tail = it;
	}
	if (q) {
		make_ready(b, q);
		chat_release(b, q);
	}
	acks_soon(b);
	arm_send_timer(b);
	if (b->stopping)
		maybe_stopped(b);
	else
		pump(b);
}

/* Writes the body with "chat_id" in front of the stored fields into out
 * (empty). */
static int with_chat(struct buf *out, const struct out_item *it)
{
	if (it->priority) /* answerCallbackQuery has no chat */
		return buf_puts(out, it->body);
	const char *rest = it->body[0] == '{' ? it->body + 1 : "}";
	if (buf_puts(out, "{\"chat_id\":") || buf_int(out, it->chat) ||
	    (rest[0] != '}' && buf_putc(out, ',')))
		return -ENOMEM;
	return buf_puts(out, rest);
}

/* Starts sends while there are free slots and sendable items. */
/* True when the bucket has refilled to its rate's count by now (or no
 * rate applies). */
static bool bucket_full(const struct bucket *bk, const struct spec_rate *r, int64_t now)
{
	if (!r->count || !bk->last)
		return true;
	double t = bk->tokens;
	if (now > bk->last)
		t += (double)(now - bk->last) * r->count / (double)r->period_ms;
	return t >= r->count;
}

/* Refills a bucket for rate r. Returns 0 when a message may go now, or
 * the milliseconds until one may. */
static int64_t bucket_wait(struct bucket *bk, const struct spec_rate *r, int64_t now)
{
	if (!r->count)
		return 0;
	if (!bk->last)
		bk->tokens = r->count; /* a full bucket: a burst of count is fine */
	else if (now > bk->last)
		bk->tokens += (double)(now - bk->last) * r->count / (double)r->period_ms;
	if (bk->tokens > r->count)
		bk->tokens = r->count;
	bk->last = now;
	if (bk->tokens >= 1.0)
		return 0;
	return (int64_t)((1.0 - bk->tokens) * (double)r->period_ms / r->count) + 1;
}

/* Checks the pre-throttles for a message to chat q. Returns true when it
 * may go now (and takes its tokens); otherwise pauses the chat or the
 * bot's chat messages until it may. */
static bool throttle_ok(struct bot *b, struct chatq *q, int64_t now)
{
	const struct spec *s = b->spec;
	const struct spec_rate *per_chat = q->chat < 0 ? &s->throttle_group : &s->throttle_chat;
	int64_t wb = bucket_wait(&b->bucket, &s->throttle_bot, now);
	int64_t wc = bucket_wait(&q->bucket, per_chat, now);
	if (wc) {
		pause_chat(b, q, now + wc);
		return false;
	}
	if (wb) {
		b->throttled_until = now + wb;
		return false;
	}
	if (s->throttle_bot.count)
		b->bucket.tokens -= 1.0;
	if (per_chat->count)
		q->bucket.tokens -= 1.0;
	return true;
}

static void pump(struct bot *b)
{
	if (b->stopping || b->status == BOT_UNAUTHORIZED || !b->loaded)
		return;
	int64_t now = mono_ms();
	if (b->paused_until > now)
		return;
	for (int i = 0; i < b->env->send_slots; i++) {
		struct send_slot *s = &b->slots[i];
		if (s->item)
			continue;
		struct out_item *it = NULL;
		struct chatq *q = NULL;
		/* the first button answer not waiting to be retried */
		struct out_item **pp = &b->prio_head, *prev = NULL;
		while (*pp && (*pp)->retry_at > now) {
			prev = *pp;
			pp = &(*pp)->next;
		}
		if (*pp) {
			it = item_unlink(pp, prev, &b->prio_tail);
		} else if (b->ready_head && b->throttled_until <= now) {
			q = b->ready_head;
			b->ready_head = q->next_ready;
			if (!b->ready_head)
				b->ready_tail = NULL;
			q->queued = false;
			if (!throttle_ok(b, q, now)) {
				if (!q->paused_until) /* held by the bot's throttle */
					make_ready(b, q);
				arm_send_timer(b);
				if (b->throttled_until > now)
					return;
				i--; /* this slot is still free: try the next chat */
				continue;
			}
			it = q->head;
			q->busy = true;
		} else {
			return;
		}
		if (!s->ready) {
			if (tg_req_init(&s->req, b->env->api)) {
				tg_req_free(&s->req);
				goto requeue;
			}
			s->ready = true;
			s->bot = b;
		}
		if (with_chat(tg_req_body(&s->req), it) ||
		    tg_req_send(&s->req, b->token, it->method, b->env->request_timeout_ms,
				on_sent, s))
			goto requeue;
		s->item = it;
		s->q = q;
		continue;
requeue:
		/* could not start: try again shortly */
		if (q) {
			q->busy = false;
			pause_chat(b, q, now + BACKOFF_MIN_MS);
		} else {
			it->next = b->prio_head;
			b->prio_head = it;
			if (!b->prio_tail)
				b->prio_tail = it;
			b->paused_until = now + BACKOFF_MIN_MS;
		}
		arm_send_timer(b);
		return;
	}
}

/* Takes the calls a job wrote (one outbox row) into the send queues. */
static void take_rows(struct bot *b, struct rows *rows)
{
	struct orow *r = rows->n ? orow_new(b, rows->row, rows->n) : NULL;
	for (size_t i = 0; r && i < rows->n; i++) {
		struct outbox_call *c = &rows->v[i];
		enqueue(b, r, c->id, c->chat_id, c->priority, c->method, c->body);
		c->body = NULL;
	}
	if (r)
		orow_unref(r);
	pump(b);
}

unsigned bot_sending(const struct bot *b)
{
	unsigned n = 0;
	for (int i = 0; b->slots && i < b->env->send_slots; i++)
		n += b->slots[i].item != NULL;
	return n;
}

/* ---- deadlines ----------------------------------------------------------------- */

static void arm_deadline(struct bot *b, int64_t next);

static void due_done(struct dbq_job *j)
{
	struct due_job *dj = (struct due_job *)j;
	struct bot *b = dj->bot;
	b->jobs--;
	b->due_job = false;
	if (j->rc) {
		log_error("bot %s: could not run ask timeouts (database error); retrying",
			  bot_id(b));
		rows_free(&dj->rows);
		spec_unref(dj->spec);
		free(dj);
		if (!b->stopping)
			arm_deadline(b, wall_ms() + BACKOFF_MIN_MS);
		maybe_stopped(b);
		return;
	}
	if (!b->stopping)
		take_rows(b, &dj->rows);
	int64_t next = dj->next_deadline;
	rows_free(&dj->rows);
	spec_unref(dj->spec);
	free(dj);
	if (!b->stopping)
		arm_deadline(b, next);
	maybe_stopped(b);
}

static void on_deadline(uv_timer_t *t)
{
	struct bot *b = t->data;
	if (b->due_job || b->stopping)
		return;
	if (!b->drained) {
		/* the first poll has answered (polls counts answers): its
		 * batches decide (batch_done arms again) */
		if (b->counters.polls)
			return;
		b->drained = true; /* held past the grace: nothing waited */
	}
	struct due_job *dj = calloc(1, sizeof(*dj));
	if (!dj) {
		arm_deadline(b, wall_ms() + BACKOFF_MIN_MS);
		return;
	}
	dj->job.run = due_run;
	dj->job.done = due_done;
	dj->bot = b;
	dj->spec = spec_ref(b->spec);
	snprintf(dj->username, sizeof(dj->username), "%s", b->username);
	dj->now = wall_ms();
	b->due_job = true;
	submit(b, &dj->job);
}

static void arm_deadline(struct bot *b, int64_t next)
{
	b->next_deadline = next;
	if (!next || (!b->drained && !b->drain_at)) {
		uv_timer_stop(&b->deadline_timer);
		return;
	}
	/* not before what waited at Telegram is known: Telegram answers a poll
	 * at once when updates wait, so a first poll still held after
	 * DRAIN_GRACE_MS found none */
	if (!b->drained && next < b->drain_at)
		next = b->drain_at;
	int64_t delay = next - wall_ms();
	start_timer(b, &b->deadline_timer, on_deadline, delay);
}

/* ---- poller ---------------------------------------------------------------------- */

static void poll_again(struct bot *b);
static void get_me(struct bot *b);

static void submit_batch(struct bot *b, struct batch_job *bj);

static void on_timer(uv_timer_t *t)
{
	struct bot *b = t->data;
	if (b->stopping)
		return;
	if (b->retry_batch) {
		struct batch_job *bj = b->retry_batch;
		b->retry_batch = NULL;
		if (bj->spec != b->spec) { /* handled again: by the current spec */
			spec_unref(bj->spec);
			bj->spec = spec_ref(b->spec);
		}
		submit_batch(b, bj);
	} else if (!b->username[0]) {
		get_me(b);
	} else {
		poll_again(b);
	}
}

static void retry_in(struct bot *b, int ms)
{
	b->retry_exact = false;
	start_timer(b, &b->timer, on_timer, ms);
}

static void bot_unauthorized(struct bot *b, const char *what)
{
	if (b->status != BOT_UNAUTHORIZED)
		log_error("bot %s: Telegram rejects its token (401 Unauthorized on %s): not polling; fix the token and restart",
			  bot_id(b), what);
	set_error(b, BOT_UNAUTHORIZED, "401 Unauthorized on %s: the token is not valid", what);
	tg_req_cancel(&b->poll);
	uv_timer_stop(&b->timer);
}

static void delete_webhook_done(struct tg_req *r, struct tg_result *res, void *arg)
{
	(void)r;
	struct bot *b = arg;
	if (b->stopping)
		return;
	if (res->status == TG_OK) {
		log_info("bot %s: deleted the webhook (delete_webhook: true); polling", bot_id(b));
		poll_again(b);
	} else {
		set_error(b, BOT_CONFLICT, "deleteWebhook failed: %s", res->description);
		retry_in(b, WEBHOOK_RETRY_MS);
	}
}

/* Handles an error of getMe/getUpdates/setMyCommands. */
static void poll_error(struct bot *b, const char *method, const struct tg_result *res)
{
	switch (res->status) {
	case TG_OK:
		return;
	case TG_RETRY_AFTER:
		set_error(b, BOT_BACKOFF, "%s: 429, retry after %d s", method, res->retry_after);
		retry_in(b, res->retry_after * 1000);
		b->retry_exact = true;
		return;
	case TG_UNAUTHORIZED:
		bot_unauthorized(b, method);
		return;
	case TG_NOT_FOUND:
		if (!strcmp(method, "getMe") || !strcmp(method, "getUpdates")) {
			/* what Telegram answers for a malformed or deleted token */
			bot_unauthorized(b, method);
			return;
		}
		break;
	case TG_CONFLICT_WEBHOOK:
		if (b->spec->delete_webhook) {
			if (!tg_req_call(&b->poll, b->token, "deleteWebhook", "{}", 2,
					 b->env->request_timeout_ms, delete_webhook_done, b))
				return;
		}
		if (b->status != BOT_CONFLICT || !strstr(b->last_error, "webhook"))
			log_error("bot %s: a webhook is set for this token, so Telegram refuses getUpdates: delete it (deleteWebhook), or add 'delete_webhook: true' to the spec; retrying every %d s",
				  bot_id(b), WEBHOOK_RETRY_MS / 1000);
		set_error(b, BOT_CONFLICT, "409: a webhook is active for this token; delete it or set delete_webhook: true");
		retry_in(b, WEBHOOK_RETRY_MS);
		return;
	case TG_CONFLICT_POLLER:
		b->backoff_ms = next_backoff(b->backoff_ms);
		log_warn("bot %s: another process is polling this token (409 Conflict); retrying in %d s",
			 bot_id(b), b->backoff_ms / 1000);
		set_error(b, BOT_CONFLICT, "409: another process polls this token");
		retry_in(b, b->backoff_ms);
		return;
	case TG_BAD_REQUEST:
	case TG_FORBIDDEN:
	case TG_TRANSIENT:
		break;
	}
	b->backoff_ms = next_backoff(b->backoff_ms);
	/* a warning when a streak of failures starts or its kind changes
	 * (another HTTP status, or none); the retries of an outage are debug
	 * lines (10,000 bots would log 10,000 lines a minute) */
	bool news = !b->failures++ || b->fail_http != res->http;
	b->fail_http = res->http;
	set_error(b, BOT_BACKOFF, "%s failed: %s", method, res->description);
	log_msg(news ? LOG_WARN : LOG_DEBUG, "bot %s: %s failed (%s); retrying in %.1f s",
		bot_id(b), method, res->description, b->backoff_ms / 1000.0);
	retry_in(b, b->backoff_ms);
}

static void batch_done(struct dbq_job *j);

static void submit_batch(struct bot *b, struct batch_job *bj)
{
	bj->job.run = batch_run;
	bj->job.done = batch_done;
	submit(b, &bj->job);
}


static void batch_done(struct dbq_job *j)
{
	struct batch_job *bj = (struct batch_job *)j;
	struct bot *b = bj->bot;
	b->jobs--;
	if (j->rc && !b->stopping) {
		/* the database failed: nothing was kept; the same updates are
		 * handled again (the offset was not confirmed) */
		b->backoff_ms = next_backoff(b->backoff_ms);
		set_error(b, BOT_BACKOFF, "database error while handling updates");
		acks_back(b, bj);
		bj->job.rc = 0;
		b->retry_batch = bj; /* handed to the database again after the backoff */
		retry_in(b, b->backoff_ms);
		return;
	}
	if (!j->rc) {
		b->offset = bj->offset;
		b->counters.updates += bj->handled;
		b->counters.updates_failed += bj->failed;
		if (bj->failed)
			log_error("bot %s: %zu update(s) could not be handled (out of memory) and were skipped",
				  bot_id(b), bj->failed);
		if (!b->stopping) {
			take_rows(b, &bj->rows);
			b->drained = b->drained || bj->drains;
			arm_deadline(b, bj->next_deadline);
		}
	}
	if (j->rc)
		acks_back(b, bj);
	free(bj->acks);
	rows_free(&bj->rows);
	cJSON_Delete(bj->root);
	spec_unref(bj->spec);
	free(bj);
	if (b->stopping)
		maybe_stopped(b);
	else
		poll_again(b);
}

static void on_updates(struct tg_req *r, struct tg_result *res, void *arg)
{
	(void)r;
	struct bot *b = arg;
	b->polling = false;
	if (b->stopping)
		return;
	if (res->status != TG_OK) {
		poll_error(b, "getUpdates", res);
		return;
	}
	b->counters.polls++;
	b->backoff_ms = 0;
	if (b->failures) {
		log_info("bot %s: polling again after %u failed attempt%s", bot_id(b),
			 b->failures, b->failures == 1 ? "" : "s");
		b->failures = 0;
	}
	if (b->status != BOT_RUNNING) {
		b->status = BOT_RUNNING;
		b->last_error[0] = '\0';
	}
	int n = cJSON_IsArray(res->result) ? cJSON_GetArraySize(res->result) : 0;
	if (n == 0) {
		if (!b->drained) { /* nothing waited: deadlines may fire now */
			b->drained = true;
			arm_deadline(b, b->next_deadline);
		}
		poll_again(b);
		return;
	}
	struct batch_job *bj = calloc(1, sizeof(*bj));
	if (!bj) {
		retry_in(b, BACKOFF_MIN_MS);
		return;
	}
	bj->bot = b;
	bj->drains = !b->drained && n < 100; /* fewer than getUpdates' limit */
	bj->spec = spec_ref(b->spec);
	bj->token_fp = b->token_fp;
	bj->offset = b->offset;
	snprintf(bj->username, sizeof(bj->username), "%s", b->username);
	bj->root = res->root; /* the batch owns the parsed reply now */
	bj->updates = (cJSON *)res->result;
	res->root = NULL;
	acks_to_batch(b, bj);
	submit_batch(b, bj);
}

static void poll_again(struct bot *b)
{
	if (b->stopping || b->status == BOT_UNAUTHORIZED)
		return;
	char body[256];
	int n;
	int timeout = b->env->poll_timeout_s;
	if (b->offset)
		n = snprintf(body, sizeof(body),
			     "{\"offset\":%" PRId64 ",\"timeout\":%d," ALLOWED_UPDATES "}",
			     b->offset, timeout);
	else
		n = snprintf(body, sizeof(body),
			     "{\"timeout\":%d," ALLOWED_UPDATES "}",
			     timeout);
	/* past its deadline a poll is abandoned and sent again, so that a dead
	 * connection never silences the bot */
	long deadline = (long)timeout * 1000 + bot_poll_margin_ms(timeout);
	if (tg_req_call(&b->poll, b->token, "getUpdates", body, (size_t)n, deadline,
			on_updates, b)) {
		retry_in(b, BACKOFF_MIN_MS);
		return;
	}
	b->polling = true;
	if (!b->drained && !b->drain_at) {
		b->drain_at = wall_ms() + DRAIN_GRACE_MS;
		arm_deadline(b, b->next_deadline);
	}
}

void bot_repoll(struct bot *b, bool woke)
{
	if (b->stopping || b->status == BOT_UNAUTHORIZED)
		return;
	if (b->polling) {
		tg_req_cancel(&b->poll);
		b->polling = false;
		poll_again(b);
	} else if (woke && uv_is_active((uv_handle_t *)&b->timer) && !b->retry_exact) {
		/* waiting out a backoff: what failed may have been the network
		 * the machine had before; try again now, from the first delay
		 * (a 429's wait is Telegram's: it is kept) */
		uv_timer_stop(&b->timer);
		b->backoff_ms = 0;
		on_timer(&b->timer);
	}
}

/* The command menu as setMyCommands wants it, or NULL when empty. */
static char *commands_json(const struct spec *s)
{
	cJSON *arr = cJSON_CreateArray();
	char *out = NULL;
	if (!arr)
		return NULL;
	for (size_t i = 0; i < s->nflows; i++) {
		const struct flow *f = &s->flows[i];
		if (!f->cmd || !f->description)
			continue;
		cJSON *c = cJSON_CreateObject();
		if (!c || !cJSON_AddItemToArray(arr, c) ||
		    !cJSON_AddStringToObject(c, "command", f->cmd) ||
		    !cJSON_AddStringToObject(c, "description", f->description))
			goto out;
	}
	cJSON *o = cJSON_CreateObject();
	if (o && cJSON_AddItemToObject(o, "commands", arr)) {
		arr = NULL;
		out = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(o);
out:
	cJSON_Delete(arr);
	return out;
}

static void commands_set(struct tg_req *r, struct tg_result *res, void *arg);

static void start_polling(struct bot *b)
{
	if (b->status == BOT_STARTING || b->status == BOT_BACKOFF)
		b->status = BOT_RUNNING;
	log_info("bot %s: polling as @%s", bot_id(b), b->username);
	poll_again(b);
}

static void load_done(struct dbq_job *j)
{
	struct load_job *lj = (struct load_job *)j;
	struct bot *b = lj->bot;
	b->jobs--;
	if (j->rc || b->stopping) {
		if (!b->stopping) {
			set_error(b, BOT_BACKOFF, "database error while loading the bot");
			retry_in(b, BACKOFF_MIN_MS * 5);
			b->username[0] = '\0'; /* start over from getMe */
		}
		goto out;
	}
	b->offset = lj->offset;
	b->loaded = true;
	for (int i = 0, end; i < lj->noutbox; i = end) {
		/* the calls of one row */
		for (end = i + 1; end < lj->noutbox && lj->outbox[end].row == lj->outbox[i].row;)
			end++;
		struct orow *row = orow_new(b, lj->outbox[i].row, (size_t)(end - i));
		for (int k = i; row && k < end; k++) {
			struct outbox_row *r = &lj->outbox[k];
			const char *m = engine_method(r->method);
			if (!m) { /* not written by this version: nothing can send it */
				log_error("bot %s: dropped a pending %s call (unknown method) from the outbox",
					  bot_id(b), r->method);
				call_done(b, row, r->id);
				continue;
			}
			enqueue(b, row, r->id, r->chat_id, r->priority, m, r->body);
			r->body = NULL;
		}
		if (row)
			orow_unref(row);
	}
	acks_soon(b);
	if (lj->noutbox > 0)
		log_info("bot %s: %d pending repl%s from before the restart", bot_id(b),
			 lj->noutbox, lj->noutbox == 1 ? "y" : "ies");
	pump(b);
	arm_deadline(b, lj->next_deadline);
	char *cmds = commands_json(b->spec);
	/* never published and nothing to publish: leave Telegram's menu be */
	if (cmds && !lj->commands && !strcmp(cmds, "{\"commands\":[]}")) {
		free(cmds);
		cmds = NULL;
	}
	if (cmds && (!lj->commands || strcmp(cmds, lj->commands)) &&
	    !tg_req_call(&b->poll, b->token, "setMyCommands", cmds, strlen(cmds),
			 b->env->request_timeout_ms, commands_set, b)) {
		/* the menu changed since it was last published; recorded once
		 * Telegram accepts it (commands_set) */
		b->pending_cmds = cmds;
		goto out;
	}
	free(cmds);
	start_polling(b);
out:
	if (lj->outbox)
		store_outbox_free(lj->outbox, (size_t)(lj->noutbox > 0 ? lj->noutbox : 0));
	free(lj->commands);
	spec_unref(lj->spec);
	free(lj);
	maybe_stopped(b);
}

static int publish_menu(struct bot *b, char *cmds);

/* After a menu call ended: publishes the menu that waited for it
 * (publish_menu), so that the newer menu is the one left, unless the bot
 * stops or lost its token. `next` is owned. */
static void publish_waiting(struct bot *b, char *next)
{
	if (!next || b->stopping || b->status == BOT_UNAUTHORIZED)
		free(next);
	else if (publish_menu(b, next))
		log_warn("bot %s: out of memory: its new command menu is not published", bot_id(b));
}

static void commands_set(struct tg_req *r, struct tg_result *res, void *arg)
{
	(void)r;
	struct bot *b = arg;
	char *cmds = b->pending_cmds, *next = b->ctl_next;
	b->pending_cmds = b->ctl_next = NULL;
	if (next && !strcmp(next, cmds)) { /* edited back meanwhile */
		free(next);
		next = NULL;
	}
	if (b->stopping || res->status == TG_UNAUTHORIZED) {
		free(next);
		free(cmds);
		if (!b->stopping)
			bot_unauthorized(b, "setMyCommands");
		return;
	}
	if (res->status == TG_OK) {
		struct write_job *wj = new_write_job(b);
		if (wj) {
			wj->commands = cmds;
			cmds = NULL;
			submit(b, &wj->job);
		}
		log_info("bot %s: published its command menu", bot_id(b));
	} else {
		/* not worth holding the bot back: tried again at next start */
		log_warn("bot %s: setMyCommands failed (%s); the command menu is not updated",
			 bot_id(b), res->description);
	}
	free(cmds);
	publish_waiting(b, next);
	start_polling(b);
}

static void on_me(struct tg_req *r, struct tg_result *res, void *arg)
{
	(void)r;
	struct bot *b = arg;
	if (b->stopping)
		return;
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(res->result, "username");
	if (res->status == TG_OK && !cJSON_IsString(u)) {
		res->status = TG_TRANSIENT;
		res->description = "getMe returned no username";
	}
	if (res->status != TG_OK) {
		poll_error(b, "getMe", res);
		return;
	}
	snprintf(b->username, sizeof(b->username), "%s", u->valuestring);
	b->backoff_ms = 0;
	if (b->loaded) { /* a retry after an error: the rest is known */
		start_polling(b);
		return;
	}
	struct load_job *lj = calloc(1, sizeof(*lj));
	if (!lj) {
		b->username[0] = '\0';
		retry_in(b, BACKOFF_MIN_MS);
		return;
	}
	lj->job.run = load_run;
	lj->job.done = load_done;
	lj->bot = b;
	lj->spec = spec_ref(b->spec);
	lj->token_fp = b->token_fp;
	submit(b, &lj->job);
}

static void get_me(struct bot *b)
{
	b->status = b->status == BOT_BACKOFF ? BOT_BACKOFF : BOT_STARTING;
	if (tg_req_call(&b->poll, b->token, "getMe", "{}", 2, b->env->request_timeout_ms, on_me, b))
		retry_in(b, BACKOFF_MIN_MS);
}

static void swap_commands_done(struct tg_req *r, struct tg_result *res, void *arg)
{
	(void)r;
	struct bot *b = arg;
	char *cmds = b->ctl_cmds, *next = b->ctl_next;
	b->ctl_cmds = b->ctl_next = NULL;
	if (res->status == TG_OK && !b->stopping) {
		struct write_job *wj = new_write_job(b);
		if (wj) {
			wj->commands = cmds;
			cmds = NULL;
			submit(b, &wj->job);
		}
		log_info("bot %s: published its new command menu", bot_id(b));
	} else if (res->status != TG_OK) {
		log_warn("bot %s: setMyCommands failed (%s); the command menu is not updated",
			 bot_id(b), res->description);
	}
	free(cmds);
	publish_waiting(b, next);
	maybe_stopped(b);
}

int bot_swap_spec(struct bot *b, struct spec *spec)
{
	char *before = commands_json(b->spec), *after = commands_json(spec);
	struct spec *old = b->spec;
	b->spec = spec; /* batches already handed to the database keep theirs */
	spec_unref(old);
	bool changed = after && (!before || strcmp(before, after));
	free(before);
	if (!changed || !b->token || !b->loaded || b->stopping ||
	    b->status == BOT_UNAUTHORIZED) {
		free(after);
		return 0;
	}
	return publish_menu(b, after);
}

/* Sends the menu `after` (owned: freed here or when the call ends) on the
 * bot's control request. While an older menu is in flight (the start's or
 * an edit's), `after` waits for it to end (replacing a menu already
 * waiting): two calls at once could land in either order, and a cancelled
 * one may still reach Telegram, so the older menu could be the one left.
 * Returns 0 or -ENOMEM. */
static int publish_menu(struct bot *b, char *after)
{
	if (b->pending_cmds || b->ctl_cmds) {
		free(b->ctl_next);
		b->ctl_next = after;
		return 0;
	}
	if (!b->ctl_ready) {
		if (tg_req_init(&b->ctl, b->env->api)) {
			tg_req_free(&b->ctl);
			free(after);
			return -ENOMEM;
		}
		b->ctl_ready = true;
	}
	b->ctl_cmds = after;
	if (tg_req_call(&b->ctl, b->token, "setMyCommands", after, strlen(after),
			b->env->request_timeout_ms, swap_commands_done, b)) {
		free(b->ctl_cmds);
		b->ctl_cmds = NULL;
	}
	return 0;
}

/* ---- life cycle ------------------------------------------------------------------ */

int bot_new(struct bot_env *env, struct spec *spec, const char *token,
	    struct bot **out)
{
	struct bot *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->env = env;
	b->spec = spec;
	b->status = token ? BOT_STOPPED : BOT_DISABLED;
	if (token) {
		b->token = strdup(token);
		b->token_fp = fingerprint(token);
	}
	b->slots = calloc((size_t)env->send_slots, sizeof(*b->slots));
	if ((token && !b->token) || !b->slots) {
		free(b->token);
		free(b->slots);
		free(b);
		return -ENOMEM;
	}
	int rc = tg_req_init(&b->poll, env->api);
	if (rc) {
		tg_req_free(&b->poll);
		free(b->token);
		free(b->slots);
		free(b);
		return rc;
	}
	uv_timer_init(env->loop, &b->timer);
	uv_timer_init(env->loop, &b->send_timer);
	uv_timer_init(env->loop, &b->deadline_timer);
	uv_timer_init(env->loop, &b->ack_timer);
	b->timer.data = b->send_timer.data = b->deadline_timer.data = b->ack_timer.data = b;
	b->handles = 4;
	*out = b;
	return 0;
}

void bot_start(struct bot *b)
{
	if (!b->token) {
		if (b->spec->token_env)
			set_error(b, BOT_DISABLED, "set %s to its token from @BotFather to enable it",
				  b->spec->token_env);
		else
			set_error(b, BOT_DISABLED, "its spec has no token");
		log_info("bot %s: disabled: %s", bot_id(b), b->last_error);
		return;
	}
	get_me(b);
}

void bot_refuse(struct bot *b, const char *why)
{
	set_error(b, BOT_REFUSED, "%s", why);
}

void bot_abort_sends(struct bot *b)
{
	for (int i = 0; i < b->env->send_slots; i++) {
		struct send_slot *s = &b->slots[i];
		if (!s->item)
			continue;
		tg_req_cancel(&s->req);
		/* the row stays in the outbox: sent at the next start. A chat's
		 * item is still the head of its queue; a button answer is not
		 * queued anywhere any more */
		if (s->q)
			s->q->busy = false;
		else
			item_free(s->item);
		s->item = NULL;
		s->q = NULL;
	}
	maybe_stopped(b);
}

static void timer_closed(uv_handle_t *h)
{
	struct bot *b = h->data;
	b->handles--;
	maybe_stopped(b);
}

static void confirm_done(struct tg_req *r, struct tg_result *res, void *arg)
{
	(void)r;
	(void)res;
	struct bot *b = arg;
	b->confirm_inflight = false;
	maybe_stopped(b);
}

/* Calls the stopped callback once nothing refers to the bot any more. */
static void maybe_stopped(struct bot *b)
{
	if (!b->stopping || !b->stopped)
		return;
	if ((b->nacks || b->partial_head) && !b->ack_job)
		flush_acks(b); /* what was sent must not be sent again */
	if (b->jobs || bot_sending(b) || b->confirm_inflight)
		return;
	if (b->confirm) {
		/* tell Telegram the last committed offset, so that the updates
		 * handled under this token are not delivered again if the token
		 * comes back (its next bot starts from the stored offset of the
		 * new token) */
		b->confirm = false;
		if (b->offset && b->token && b->username[0] && b->status != BOT_UNAUTHORIZED) {
			char body[160];
			int n = snprintf(body, sizeof(body),
					 "{\"offset\":%" PRId64 ",\"timeout\":0,\"limit\":1," ALLOWED_UPDATES "}",
					 b->offset);
			if (!tg_req_call(&b->poll, b->token, "getUpdates", body, (size_t)n,
					 b->env->request_timeout_ms, confirm_done, b)) {
				b->confirm_inflight = true;
				return;
			}
		}
	}
	if (b->handles == 4) {
		uv_close((uv_handle_t *)&b->ack_timer, timer_closed);
		uv_close((uv_handle_t *)&b->timer, timer_closed);
		uv_close((uv_handle_t *)&b->send_timer, timer_closed);
		uv_close((uv_handle_t *)&b->deadline_timer, timer_closed);
		return;
	}
	if (b->handles)
		return;
	void (*stopped)(struct bot *, void *) = b->stopped;
	b->stopped = NULL;
	if (b->status != BOT_DISABLED && b->status != BOT_REFUSED &&
	    b->status != BOT_UNAUTHORIZED)
		b->status = BOT_STOPPED;
	stopped(b, b->stopped_arg);
}

void bot_stop(struct bot *b, bool confirm,
	      void (*stopped)(struct bot *b, void *arg), void *arg)
{
	b->confirm = confirm;
	b->stopping = true;
	b->stopped = stopped;
	b->stopped_arg = arg;
	tg_req_cancel(&b->poll);
	b->polling = false;
	free(b->pending_cmds);
	b->pending_cmds = NULL;
	if (b->ctl_ready)
		tg_req_cancel(&b->ctl);
	free(b->ctl_cmds);
	free(b->ctl_next);
	b->ctl_cmds = b->ctl_next = NULL;
	uv_timer_stop(&b->timer);
	uv_timer_stop(&b->send_timer);
	uv_timer_stop(&b->deadline_timer);
	uv_timer_stop(&b->ack_timer);
	if (b->retry_batch) {
		acks_back(b, b->retry_batch);
		rows_free(&b->retry_batch->rows);
		cJSON_Delete(b->retry_batch->root);
		spec_unref(b->retry_batch->spec);
		free(b->retry_batch);
		b->retry_batch = NULL;
	}
	maybe_stopped(b);
}

void bot_free(struct bot *b)
{
	if (!b)
		return;
	tg_req_free(&b->poll);
	if (b->ctl_ready)
		tg_req_free(&b->ctl);
	free(b->ctl_cmds);
	free(b->ctl_next);
	for (int i = 0; i < b->env->send_slots; i++) {
		if (b->slots[i].ready)
			tg_req_free(&b->slots[i].req);
		if (b->slots[i].item && !b->slots[i].q)
			item_free(b->slots[i].item);
	}
	free(b->slots);
	for (size_t i = 0; i < b->nbuckets; i++)
		for (struct chatq *q = b->table[i], *next; q; q = next) {
			next = q->hnext;
			for (struct out_item *it = q->head, *n; it; it = n) {
				n = it->next;
				item_free(it);
			}
			free(q);
		}
	free(b->table);
	for (struct out_item *it = b->prio_head, *n; it; it = n) {
		n = it->next;
		item_free(it);
	}
	while (b->partial_head) {
		struct orow *r = b->partial_head;
		partial_unlink(b, r);
		orow_free(r); /* (the items are freed above) */
	}
	free(b->acks);
	free(b->pending_cmds);
	free(b->token);
	spec_unref(b->spec);
	free(b);
}
