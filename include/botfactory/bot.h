/* bot: one running bot. Its poller keeps one getUpdates outstanding (after
 * getMe and, when the command list changed, setMyCommands), hands each
 * batch to the database thread (engine steps, states, outbox rows and the
 * new offset in one transaction) and polls again only after that commit.
 * Its sender drains the outbox in per-chat order, button answers first, and
 * obeys 429s exactly. Its deadline timer fires ask timeouts. Every error
 * stays inside the bot: other bots never notice. */
#ifndef BOTFACTORY_BOT_H
#define BOTFACTORY_BOT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "botfactory/dbq.h"
#include "botfactory/spec.h"
#include "botfactory/tg_api.h"

/* What all bots share; owned by the daemon, outlives every bot. */
struct bot_env {
	uv_loop_t *loop;
	struct tg_api *api;
	struct dbq *dbq;
	int poll_timeout_s;  /* getUpdates timeout (Telegram clamps to 0..50) */
	int send_slots;      /* concurrent sends per bot */
	long request_timeout_ms; /* deadline of every call but getUpdates */
};

enum bot_status {
	BOT_DISABLED,     /* no token */
	BOT_STARTING,     /* getMe / setMyCommands */
	BOT_RUNNING,      /* polling */
	BOT_BACKOFF,      /* transient errors: retrying */
	BOT_UNAUTHORIZED, /* 401: the token is not valid; not polling */
	BOT_CONFLICT,     /* 409: a webhook or another poller */
	BOT_REFUSED,      /* not started: another bot has the same token */
	BOT_STOPPED,
};

const char *bot_status_name(enum bot_status s);

/* The client's margin beyond a getUpdates timeout of poll_timeout_s: half
 * of it, 2 to 15 s. A poll not answered by then is abandoned and sent again;
 * the daemon's stall watch uses the same margin. Returns milliseconds. */
long bot_poll_margin_ms(int poll_timeout_s);

struct bot_counters {
	uint64_t updates;        /* updates handled and committed */
	uint64_t updates_failed; /* updates skipped because handling failed */
	uint64_t sent;           /* calls Telegram accepted */
	uint64_t dropped;        /* calls dropped for good (400, 403...) */
	uint64_t retries;        /* calls retried after an error */
	uint64_t polls;          /* getUpdates answered */
};

struct bot;

/* Creates a bot for spec (the bot takes ownership of spec) with token
 * (copied; NULL: disabled). Nothing starts yet. Returns 0 or -ENOMEM. */
int bot_new(struct bot_env *env, struct spec *spec, const char *token,
	    struct bot **out);

/* Starts the bot (getMe, then polling). A bot without token only logs how
 * to enable it. */
void bot_start(struct bot *b);

/* Marks a bot as refused (not started) with a reason. */
void bot_refuse(struct bot *b, const char *why);

/* Restarts the long poll at once (after a suspend/resume or a stall): the
 * outstanding getUpdates is abandoned and sent again. After a suspend
 * (woke), a bot waiting out a backoff also tries again at once, from the
 * first delay: the network it failed on may be gone (not a 429's wait). */
void bot_repoll(struct bot *b, bool woke);

/* Replaces the bot's spec (the bot takes ownership of spec) between two
 * updates: a batch already handed to the database finishes with the spec
 * it started with. Conversations keep their state where their flow and ask
 * still exist (the engine checks). The command menu is published again if
 * it changed. The token must be the same (a new token is a new bot).
 * Returns 0 or -ENOMEM (the swap happened; only the menu was not sent). */
int bot_swap_spec(struct bot *b, struct spec *spec);

/* The spec the bot runs (borrowed). */
const struct spec *bot_spec(const struct bot *b);

/* Stops polling and sending; in-flight sends may finish within the
 * daemon's grace period. With confirm, the last committed offset is also
 * confirmed to Telegram (a getUpdates with timeout 0) before the bot lets
 * go of its token: used when a spec's token changes. `stopped` runs once
 * the bot holds no loop handle and no database job; then bot_free may be
 * called. */
void bot_stop(struct bot *b, bool confirm,
	      void (*stopped)(struct bot *b, void *arg), void *arg);

/* Sends still in flight (for the shutdown grace period). */
unsigned bot_sending(const struct bot *b);
/* Abandons in-flight sends (their outbox rows stay for the next start). */
void bot_abort_sends(struct bot *b);

void bot_free(struct bot *b);

const char *bot_id(const struct bot *b);
const char *bot_token(const struct bot *b);
enum bot_status bot_status(const struct bot *b);
const char *bot_last_error(const struct bot *b);
const struct bot_counters *bot_counters(const struct bot *b);

#endif
