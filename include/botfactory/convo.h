/* convo: the state of one conversation (bot, chat, user): the flow and ask
 * it waits in, the saved variables, a pending deadline. The engine reads and
 * writes it; the daemon stores it as JSON (with a version field) in SQLite. */
#ifndef BOTFACTORY_CONVO_H
#define BOTFACTORY_CONVO_H

#include <stddef.h>
#include <stdint.h>

#define CONVO_VERSION 1

struct convo_var {
	char *name;  /* owned */
	char *value; /* owned */
};

struct convo {
	char *flow;          /* id of the flow waiting in an ask, or NULL (idle) */
	size_t step;         /* index of that ask in the flow's steps */
	char *ask;           /* the ask's key (spec.h: struct step.key) */
	char *args;          /* {{args}} of the running flow, or NULL */
	int64_t deadline_ms; /* when the ask times out (unix ms), 0 = never */
	/* the user's names while a deadline is pending: the timeout event has
	 * none of its own, and on_timeout steps may say {{user.first_name}} */
	char *first_name, *last_name, *username;
	struct convo_var *vars;
	size_t nvars;
};

#define CONVO_INIT {NULL, 0, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0}

/* Frees everything the convo owns and leaves it idle and empty. */
void convo_clear(struct convo *c);
/* Leaves the running flow (flow, ask, args, deadline), keeping variables. */
void convo_leave_flow(struct convo *c);
/* Makes dst a deep copy of src (dst must be empty). Returns 0 or -ENOMEM. */
int convo_copy(struct convo *dst, const struct convo *src);
/* Returns the variable's value (borrowed) or NULL. */
const char *convo_get(const struct convo *c, const char *name);
/* Sets (value non-NULL) or removes (value NULL) a variable. Returns 0 or
 * -ENOMEM (the convo is unchanged then). */
int convo_set(struct convo *c, const char *name, const char *value);
/* Sets a string field (flow, ask, args) to a copy of s (or NULL). Returns 0
 * or -ENOMEM. */
int convo_set_str(char **field, const char *s);

/* Serialises to JSON: {"v":1,"flow":..,"step":..,"ask":..,"args":..,
 * "deadline":..,"vars":{..}}. Returns a malloc'ed string (caller frees) or
 * NULL on -ENOMEM. */
char *convo_to_json(const struct convo *c);
/* Parses JSON made by convo_to_json (dst must be empty). Returns 0, -EINVAL
 * (not JSON, wrong shape, or an unknown version), or -ENOMEM. */
int convo_from_json(struct convo *dst, const char *json, size_t len);

#endif
