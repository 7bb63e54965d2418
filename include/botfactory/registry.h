/* registry: the set of bots the daemon runs, changed by diff. A spec that
 * loads starts a bot, replaces the running bot's spec between two updates
 * (same token) or restarts the bot (new token, after confirming its last
 * offset); a spec that fails to load leaves the last good version running
 * and records the error; a spec that disappears stops its bot (its stored
 * conversations stay). Two specs never poll one token: the later is
 * refused until the token is free. Every change is recorded in the bots
 * table (source, content hash, load time, last error). */
#ifndef BOTFACTORY_REGISTRY_H
#define BOTFACTORY_REGISTRY_H

#include <stddef.h>

#include "botfactory/bot.h"

struct registry;

/* Creates an empty registry on env (borrowed; it outlives the registry).
 * Returns 0 or -ENOMEM. */
int registry_new(struct bot_env *env, struct registry **out);

/* The spec file of bot `id` (at `source`, content hash `hash`) loaded:
 * spec is the compiled spec (ownership passes to the registry) or NULL,
 * then `error` says why it did not load. */
void registry_load(struct registry *r, const char *id, const char *source,
		   const char *hash, struct spec *spec, const char *error);

/* Logs one line per bot, by id: its status, last error and counters (for
 * SIGUSR1, until the admin API serves them). */
void registry_report(struct registry *r);

/* The spec file of bot `id` is gone: its bot stops. */
void registry_unload(struct registry *r, const char *id);

/* Restarts every bot's long poll at once (after a suspend or a stall; see
 * bot_repoll for woke). */
void registry_repoll(struct registry *r, bool woke);

/* Stops every bot (in-flight replies get the daemon's grace period) and
 * frees the registry; `done` runs when all bots are gone. */
void registry_stop(struct registry *r, void (*done)(void *arg), void *arg);

/* Abandons the replies still in flight (end of the grace period). */
void registry_abort_sends(struct registry *r);

#endif
