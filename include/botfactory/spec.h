/* spec: a bot definition compiled from YAML or JSON into an immutable,
 * validated `struct spec`. Compilation reports every problem at once as
 * `line:col: message`; a spec that compiled is safe to run (targets exist,
 * templates name known variables, markup is well-formed, regexes compile).
 * A running bot holds a spec read-only; a reload compiles a new one and swaps. */
#ifndef BOTFACTORY_SPEC_H
#define BOTFACTORY_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "botfactory/button.h"
#include "botfactory/doc.h"
#include "botfactory/markup.h"
#include "botfactory/template.h"

struct pcre2_real_code_8;

enum button_kind {
	BUTTON_FLOW,   /* starts a flow */
	BUTTON_URL,    /* opens a URL (no callback) */
	BUTTON_VALUE,  /* acts as if the user sent `value` */
	BUTTON_CHOICE, /* answers the ask it belongs to with `value` */
};

struct button {
	enum button_kind kind;
	struct template *label; /* button text; placeholders allowed */
	char *flow;  /* FLOW: target; CHOICE: optional goto target */
	char *url;   /* URL */
	char *value; /* VALUE, CHOICE */
	char *ask_flow; /* CHOICE: the flow of the ask (borrowed from flow) */
	const char *ask_key; /* CHOICE: the ask's key (borrowed) */
	char code[BUTTON_CODE_LEN + 1]; /* callback_data; "" for URL */
	int line, col;
};

struct button_row {
	struct button *v;
	size_t n;
};

struct keyboard {
	struct button_row *rows;
	size_t nrows;
};

enum step_kind { STEP_REPLY, STEP_ASK, STEP_GOTO, STEP_SET };

enum validate_type {
	VALIDATE_NONE,
	VALIDATE_INTEGER,
	VALIDATE_NUMBER,
	VALIDATE_REGEX,
};

struct set_item {
	char *var;
	struct template *value;
};

struct step_list {
	struct step *v;
	size_t n;
};

struct step {
	enum step_kind kind;
	int line, col;
	enum parse_mode mode;    /* REPLY, ASK: the parse mode in force */
	struct template *text;   /* REPLY: text; ASK: prompt */
	struct keyboard kb;      /* REPLY: buttons; ASK: choices */
	/* ASK */
	char *key;               /* identity of the ask within its flow:
				    "save:<var>" or "step:<index>" */
	char *save;              /* variable name, or NULL */
	enum validate_type vtype;
	bool has_min, has_max;
	double min, max;
	struct pcre2_real_code_8 *re;
	struct template *error;  /* invalid-answer text, or NULL for default */
	int64_t timeout_ms;      /* 0: none */
	struct step_list on_timeout;
	/* GOTO */
	char *target;
	/* SET */
	struct set_item *sets;
	size_t nsets;
};

struct flow {
	char *id;
	bool id_implicit;        /* id derived from entry_cmd or position */
	char *cmd;               /* command without '/', or NULL */
	char *text_pattern;      /* entry_text source, or NULL */
	struct pcre2_real_code_8 *text_re;
	char *description;       /* menu description, or NULL */
	struct step_list steps;
	int line, col;
};

/* A rate: at most `count` messages per `period_ms`; count 0 = unlimited. */
struct spec_rate {
	int count;
	int64_t period_ms;
};

/* Texts the runtime sends on its own; overridable under `messages:`. */
struct spec_messages {
	struct template *cancelled;
	struct template *nothing_to_cancel;
	struct template *unknown_command;
	struct template *invalid_choice;
	struct template *stale_button;
	struct template *expired_question;
};

struct spec {
	unsigned refs;           /* see spec_ref(); 1 after spec_compile */
	char *id;                /* bot id (file stem or API id) */
	char *name;
	char *description;
	char *token;             /* literal token, or NULL */
	char *token_env;         /* VAR of `${VAR}`, or NULL */
	enum parse_mode mode;    /* default parse mode */
	bool delete_webhook;     /* on a 409 "webhook is active": delete it */
	/* optional pre-throttles of the bot's messages (all off by default:
	 * Telegram's 429s are obeyed exactly either way) */
	struct spec_rate throttle_bot, throttle_chat, throttle_group;
	struct flow *flows;
	size_t nflows;
	struct step_list fallback;
	struct spec_messages msg;
	const struct button **buttons; /* every callback button, sorted by code */
	size_t nbuttons;
	const struct flow **by_id;  /* flows sorted by id (lookup index) */
	size_t nids;
	const struct flow **by_cmd; /* flows with a command, sorted by it */
	size_t ncmds;
};

/* Limits the validator enforces (Telegram's or ours, documented in doc/spec.md). */
#define SPEC_MAX_CMD_LEN 32
#define SPEC_MAX_CMD_DESC 256
#define SPEC_MAX_MENU_CMDS 100
#define SPEC_MAX_ROW_BUTTONS 8
#define SPEC_MAX_MSG_BUTTONS 100
#define SPEC_MAX_ID_LEN 64
#define SPEC_MAX_VALUE_LEN 4096
#define SPEC_MAX_NOTICE 200
#define SPEC_MAX_TIMEOUT_MS (30LL * 24 * 3600 * 1000)
#define SPEC_MAX_BYTES (1024 * 1024)

/* Compiles a spec. `id` is the bot id (checked: 1-64 chars of
 * [A-Za-z0-9_-]); data[0..len) is YAML or JSON. Errors are appended to d
 * with positions. Returns 0 with a new spec in *out (free with spec_free),
 * -EINVAL when the spec is invalid (d holds every error found), or -ENOMEM. */
int spec_compile(const char *id, const char *data, size_t len,
		 struct spec **out, struct diags *d);

void spec_free(struct spec *s);

/* Reference counting, for specs shared between a running bot and the jobs
 * that still use the version it replaced. Only one thread may call these
 * (the daemon's loop); other threads may read a spec they were handed.
 * spec_ref returns s; spec_unref frees s when the last reference goes. */
struct spec *spec_ref(struct spec *s);
void spec_unref(struct spec *s);

/* Finds a flow by id. Returns it (borrowed) or NULL. */
const struct flow *spec_flow(const struct spec *s, const char *id);
/* Finds the flow whose entry_cmd is `cmd` (no '/', compared
 * case-insensitively). Returns it (borrowed) or NULL. */
const struct flow *spec_flow_by_cmd(const struct spec *s, const char *cmd);
/* Finds the button whose callback code is `code`. Returns it (borrowed) or
 * NULL (stale or unknown). */
const struct button *spec_button(const struct spec *s, const char *code);

/* Parses a rate "N/s", "N/m" or "N/h" (N from 1 to 10000). Returns 0 or
 * -EINVAL. */
int spec_parse_rate(const char *s, struct spec_rate *out);

/* Parses a duration: "90", "90s", "10m", "2h", "1d", "1h30m". Returns 0 with
 * milliseconds in *ms, or -EINVAL. */
int spec_parse_duration(const char *s, int64_t *ms);

#endif
