/* engine: the conversation state machine. engine_step(spec, state, event)
 * computes the next state and the Bot API calls to make, with no I/O and no
 * clock of its own (time comes in the event), so the daemon and the offline
 * `botfactoryctl chat|test` run exactly the same logic. */
#ifndef BOTFACTORY_ENGINE_H
#define BOTFACTORY_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "botfactory/convo.h"
#include "botfactory/markup.h"
#include "botfactory/spec.h"

enum event_kind {
	EVENT_MESSAGE,  /* a user's message */
	EVENT_CALLBACK, /* a press on an inline button */
	EVENT_TIMEOUT,  /* the conversation's deadline has passed */
};

enum chat_kind { CHAT_PRIVATE, CHAT_GROUP, CHAT_CHANNEL };

/* Everything the engine may know about one incoming event. Strings are
 * borrowed for the duration of engine_step; any may be NULL. */
struct event {
	enum event_kind kind;
	int64_t now_ms;          /* current time, unix ms */
	int64_t sent_ms;         /* MESSAGE: when the user sent it (Telegram's
				    date, whole seconds), 0 = unknown */
	int64_t chat_id;
	enum chat_kind chat_kind;
	const char *chat_title;
	int64_t user_id;
	const char *first_name, *last_name, *username;
	int64_t message_id;      /* MESSAGE: the user's message; CALLBACK: the
				    message carrying the button (0 = unknown) */
	const char *text;        /* MESSAGE: its text (NULL: not a text message) */
	const char *callback_id; /* CALLBACK */
	const char *callback_data; /* CALLBACK */
};

/* Facts about the bot the engine runs as. */
struct engine_ctx {
	const char *bot_username; /* without '@'; NULL when not yet known */
};

struct action_button {
	char *text;  /* owned */
	char *data;  /* callback_data, or NULL for a URL button (owned) */
	char *url;   /* owned, or NULL */
};

struct action_row {
	struct action_button *v;
	size_t n;
};

enum action_kind {
	ACTION_SEND,            /* sendMessage */
	ACTION_ANSWER_CALLBACK, /* answerCallbackQuery */
};

struct action {
	enum action_kind kind;
	int64_t chat_id;
	char *text;              /* SEND: message text; ANSWER: notice or NULL */
	enum parse_mode mode;    /* SEND */
	struct action_row *rows; /* SEND: inline keyboard, nrows rows */
	size_t nrows;
	bool force_reply;        /* SEND: ForceReply markup (group asks) */
	int64_t reply_to;        /* SEND: reply_to_message_id, 0 = none */
	char *callback_id;       /* ANSWER */
};

struct actions {
	struct action *v;
	size_t n, cap;
};

void actions_free(struct actions *a);

/* Runs one event. `in` is the conversation's state before the event (never
 * modified); on success *out is the new state (caller frees with
 * convo_clear) and the calls to make, in order, are appended to acts.
 * Per-chat order matters: callers send SEND actions in order and may send
 * ANSWER_CALLBACK ahead of them. A state that names a flow or ask the spec
 * no longer has (after a reload) is reset to idle before the event runs.
 * Returns 0, or -ENOMEM (then *out is empty and acts unchanged). */
int engine_step(const struct spec *spec, const struct engine_ctx *ctx,
		const struct convo *in, const struct event *ev,
		struct convo *out, struct actions *acts);

/* Builds the Bot API call for an action: *method is a static string
 * ("sendMessage", "answerCallbackQuery") and *json a malloc'ed JSON body
 * (caller frees). With with_chat false the body leaves out "chat_id" (the
 * daemon's outbox keeps the chat in a column, so that a migrated group can
 * be re-targeted, and adds it when sending). Returns 0 or -ENOMEM. */
int engine_action_json(const struct action *a, bool with_chat,
		       const char **method, char **json);

/* The static string engine_action_json uses for the method called name,
 * or NULL when it writes no such call (the daemon keeps method names of
 * its outbox as these pointers). */
const char *engine_method(const char *name);

#endif
