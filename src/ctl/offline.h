/* offline: what `botfactoryctl validate|chat|test` share: loading a spec file
 * with errors printed as `file:line:col: message`, and a simulated Telegram
 * around the engine (virtual clock, several users and chats, the bot's
 * messages and buttons) so that a spec runs exactly as in the daemon. */
#ifndef BOTFACTORY_CTL_OFFLINE_H
#define BOTFACTORY_CTL_OFFLINE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "botfactory/engine.h"
#include "botfactory/spec.h"

/* Reads and compiles the spec file at path (bot id = file name without
 * .yaml/.yml/.json). Errors go to `errs` as "path:line:col: message" lines.
 * Returns 0 with *out set (free with spec_free), -EINVAL (invalid spec or
 * unreadable file, reported), or -ENOMEM. */
int offline_load(const char *path, FILE *errs, struct spec **out);

/* One message the simulated bot sent. */
struct sim_msg {
	int64_t id;
	int64_t chat_id;
	char *text;
	struct action_row *rows; /* owned copy of the keyboard */
	size_t nrows;
	bool force_reply;
};

struct sim_convo {
	int64_t chat_id, user_id;
	enum chat_kind chat_kind;
	/* who the user was when last heard from (timeouts use these) */
	char first_name[128], last_name[128], username[128], title[128];
	struct convo st;
};

struct sim {
	const struct spec *spec;
	struct engine_ctx ctx;
	char bot_username[80];
	int64_t now_ms;
	/* who is talking now (see `@` in doc/testing.md) */
	int64_t chat_id, user_id;
	enum chat_kind chat_kind;
	char first_name[128], last_name[128], username[128], title[128];
	int64_t next_id;
	struct sim_convo *convos;
	size_t nconvos;
	struct sim_msg *msgs; /* every message sent, oldest first */
	size_t nmsgs;
};

/* Output of one simulated input, in order. */
struct sim_out {
	enum { SIM_MESSAGE, SIM_NOTICE } kind;
	size_t msg;                /* MESSAGE: index into sim.msgs */
	char *notice;              /* NOTICE: answerCallbackQuery text (owned) */
};

struct sim_outs {
	struct sim_out *v;
	size_t n;
};

void sim_outs_free(struct sim_outs *o);

/* Prepares a simulation of spec (borrowed) starting at now_ms, with the
 * default user (id 1001, Alice) in a private chat. */
void sim_init(struct sim *s, const struct spec *spec, int64_t now_ms);
void sim_free(struct sim *s);

/* Sets who talks: "user=ID", "first_name=X", "last_name=X", "username=X",
 * "chat=ID", "type=private|group|supergroup", "title=X", "bot=NAME".
 * Returns 0 or -EINVAL (unknown key or bad value). */
int sim_set(struct sim *s, const char *key, const char *value);

/* The current user sends text. Returns 0 or -ENOMEM. */
int sim_text(struct sim *s, const char *text, struct sim_outs *out);

/* The current user presses the newest button labelled `label` on a message
 * of the current chat. Returns 0, -ENOENT (no such button), -EINVAL (it is
 * a URL button) or -ENOMEM. */
int sim_press(struct sim *s, const char *label, struct sim_outs *out);
/* Presses button b of message m (of the current chat). Returns as
 * sim_press (-EINVAL for a URL button). */
int sim_press_button(struct sim *s, const struct sim_msg *m, const struct action_button *b,
		     struct sim_outs *out);

/* Advances the clock by ms and fires every deadline now due, oldest first.
 * Returns 0 or -ENOMEM. */
int sim_advance(struct sim *s, int64_t ms, struct sim_outs *out);

/* The earliest pending deadline (unix ms), or 0 when none. */
int64_t sim_next_deadline(const struct sim *s);

/* The newest message of the current chat that has buttons, or NULL. */
const struct sim_msg *sim_last_keyboard(const struct sim *s);

/* Writes a keyboard as "[A] [B] | [C]" (URL buttons as "[A](url)"). */
int sim_format_buttons(const struct sim_msg *m, struct buf *out);

#endif
