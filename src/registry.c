/* registry: the running bots, keyed by id and by token (see registry.h).
 * A bot that must go (its file was removed, its token changed) is stopped
 * asynchronously; its entry remembers what should replace it once it has
 * stopped. */
#include "botfactory/registry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "botfactory/log.h"
#include "botfactory/util.h"
#include "botfactory/smap.h"

struct entry {
	struct registry *reg;
	char *id;
	char *source;
	char hash[24];
	struct bot *bot;       /* running (or disabled/refused), or NULL */
	struct bot *stopping;  /* the previous bot, on its way out */
	struct spec *next;     /* what starts once `stopping` has stopped */
	bool removed;          /* the file is gone: free once stopped */
	char *error;           /* why the file's current content did not load */
};

struct registry {
	struct bot_env *env;
	struct smap by_id;    /* id -> entry */
	struct smap by_token; /* token -> entry whose bot polls it */
	size_t refused;       /* bots waiting for their token */
	size_t stopping;      /* bots on their way out */
	void (*done)(void *arg);
	void *done_arg;
	bool closing;
};

static int64_t wall_ms(void)
{
	return util_clock_ms(CLOCK_REALTIME);
}

int registry_new(struct bot_env *env, struct registry **out)
{
	struct registry *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->env = env;
	*out = r;
	return 0;
}

/* ---- the bots table ------------------------------------------------------- */

struct record_job {
	struct dbq_job job;
	char *id, *source, *hash, *error;
	int64_t at;
};

static void record_run(struct dbq_job *j, struct store *st)
{
	struct record_job *rj = (struct record_job *)j;
	j->rc = store_bot_record(st, rj->id, rj->source, rj->hash, rj->at, rj->error);
}

static void record_done(struct dbq_job *j)
{
	struct record_job *rj = (struct record_job *)j;
	free(rj->id);
	free(rj->source);
	free(rj->hash);
	free(rj->error);
	free(rj);
}

/* Records a load (or a failure) in the bots table; best effort: the
 * table informs the admin API, the bots do not depend on it. */
static void record(struct registry *r, const char *id, const char *source,
		   const char *hash, const char *error)
{
	struct record_job *rj = calloc(1, sizeof(*rj));
	if (!rj)
		return;
	rj->job.run = record_run;
	rj->job.done = record_done;
	rj->id = strdup(id);
	rj->source = source ? strdup(source) : NULL;
	rj->hash = hash ? strdup(hash) : NULL;
	rj->error = error ? strdup(error) : NULL;
	rj->at = wall_ms();
	if (!rj->id || (source && !rj->source) || (hash && !rj->hash) ||
	    (error && !rj->error)) {
		record_done(&rj->job);
		return;
	}
	dbq_submit(r->env->dbq, &rj->job);
}

/* ---- starting and stopping -------------------------------------------------- */

static const char *resolve_token(const struct spec *s)
{
	const char *t = s->token;
	if (!t && s->token_env)
		t = getenv(s->token_env);
	return t && *t ? t : NULL;
}

static void start_entry(struct entry *e, struct spec *spec);
static void recheck_refused(struct registry *r);


/* Takes e out of the registry and frees it. */
static void entry_drop(struct registry *r, struct entry *e)
{
	smap_del(&r->by_id, e->id);
	free(e->id);
	free(e->source);
	free(e->error);
	spec_unref(e->next);
	free(e);
}

static void finish_close(struct registry *r)
{
	if (!r->closing || r->stopping)
		return;
	void (*done)(void *) = r->done;
	void *arg = r->done_arg;
	smap_free(&r->by_id);
	smap_free(&r->by_token);
	free(r);
	if (done)
		done(arg);
}

static void on_stopped(struct bot *b, void *arg)
{
	struct entry *e = arg;
	struct registry *r = e->reg;
	if (bot_status(b) == BOT_REFUSED)
		r->refused--;
	const char *t = bot_token(b);
	if (t && smap_get(&r->by_token, t) == e) /* start_entry claims it again */
		smap_del(&r->by_token, t);
	bot_free(b);
	e->stopping = NULL;
	r->stopping--;
	if (r->closing) {
		if (!e->bot)
			entry_drop(r, e);
		finish_close(r);
		return;
	}
	if (e->removed) {
		entry_drop(r, e);
	} else if (e->next) {
		struct spec *s = e->next;
		e->next = NULL;
		start_entry(e, s);
	}
	recheck_refused(r);
}

/* Stops the entry's bot, confirming its offset to Telegram when asked. The
 * entry keeps its claim on the token until the bot has stopped (on_stopped):
 * another bot of the same token starts only after the confirmation, or it
 * could be handed updates this one has already handled. */
static void stop_bot(struct entry *e, bool confirm)
{
	struct registry *r = e->reg;
	struct bot *b = e->bot;
	if (!b)
		return;
	e->bot = NULL;
	e->stopping = b;
	r->stopping++;
	bot_stop(b, confirm, on_stopped, e);
}

/* Creates and starts the bot of an entry with nothing running. */
static void start_entry(struct entry *e, struct spec *spec)
{
	struct registry *r = e->reg;
	const char *token = resolve_token(spec);
	struct bot *b = NULL;
	if (bot_new(r->env, spec, token, &b)) {
		log_error("bot %s: out of memory starting the bot", e->id);
		spec_unref(spec);
		return;
	}
	e->bot = b;
	struct entry *owner = token ? smap_get(&r->by_token, token) : NULL;
	if (owner && owner != e) {
		char why[200];
		snprintf(why, sizeof(why), "bot %s already uses the same token", owner->id);
		log_error("bot %s: not started: %s (two pollers of one token make Telegram answer 409 Conflict to both)",
			  e->id, why);
		bot_refuse(b, why);
		r->refused++;
		return;
	}
	if (token && smap_put(&r->by_token, token, e)) {
		log_error("bot %s: out of memory", e->id);
		return;
	}
	bot_start(b);
}

struct recheck {
	struct registry *r;
	struct entry **v;
	size_t n;
};

static void collect_refused(const char *key, void *value, void *arg)
{
	(void)key;
	struct recheck *rc = arg;
	struct entry *e = value;
	if (e->bot && bot_status(e->bot) == BOT_REFUSED && rc->n < rc->r->refused)
		rc->v[rc->n++] = e;
}

/* Starts refused bots whose token has become free. */
static void recheck_refused(struct registry *r)
{
	if (!r->refused || r->closing)
		return;
	struct recheck rc = {r, calloc(r->refused, sizeof(struct entry *)), 0};
	if (!rc.v)
		return;
	smap_each(&r->by_id, collect_refused, &rc);
	for (size_t i = 0; i < rc.n; i++) {
		struct entry *e = rc.v[i];
		const char *t = bot_token(e->bot);
		if (!t || smap_get(&r->by_token, t))
			continue;
		/* a refused bot never started: stop its (idle) bot and start a
		 * new one with the same spec; claim the token right away so
		 * that no other refused bot takes it meanwhile */
		log_info("bot %s: its token is free now: starting", e->id);
		if (smap_put(&r->by_token, t, e))
			continue;
		spec_unref(e->next);
		e->next = spec_ref((struct spec *)bot_spec(e->bot));
		stop_bot(e, false);
	}
	free(rc.v);
}

/* ---- loading ------------------------------------------------------------------ */

void registry_load(struct registry *r, const char *id, const char *source,
		   const char *hash, struct spec *spec, const char *error)
{
	struct entry *e = smap_get(&r->by_id, id);
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || !(e->id = strdup(id)) || smap_put(&r->by_id, id, e)) {
			if (e)
				free(e->id);
			free(e);
			spec_unref(spec);
			log_error("bot %s: out of memory", id);
			return;
		}
		e->reg = r;
	}
	e->removed = false;
	free(e->source);
	e->source = source ? strdup(source) : NULL;
	snprintf(e->hash, sizeof(e->hash), "%s", hash ? hash : "");
	free(e->error);
	e->error = !spec && error ? strdup(error) : NULL;
	record(r, id, source, hash, error);
	if (!spec) {
		if (e->bot || e->stopping)
			log_error("bot %s: %s: keeping the last good version running", id, error);
		else
			log_error("bot %s: %s: not started", id, error);
		return;
	}
	if (e->stopping) { /* the old bot is on its way out: start this after */
		spec_unref(e->next);
		e->next = spec;
		return;
	}
	if (!e->bot) {
		start_entry(e, spec);
		return;
	}
	const char *old = bot_token(e->bot), *now = resolve_token(spec);
	bool refused = bot_status(e->bot) == BOT_REFUSED;
	if (!refused && ((!old && !now) || (old && now && !strcmp(old, now)))) {
		log_info("bot %s: spec reloaded from %s", id, source ? source : "?");
		bot_swap_spec(e->bot, spec);
		return;
	}
	/* a new token is a new bot: stop this one (confirming its offset),
	 * then start the new one */
	log_info("bot %s: its token changed: restarting the bot", id);
	e->next = spec;
	stop_bot(e, !refused);
}

void registry_unload(struct registry *r, const char *id)
{
	struct entry *e = smap_get(&r->by_id, id);
	if (!e || e->removed)
		return;
	log_info("bot %s: its spec file is gone: stopping the bot (its conversations are kept)", id);
	record(r, id, e->source, e->hash, "spec file removed");
	e->removed = true;
	spec_unref(e->next);
	e->next = NULL;
	if (e->bot) {
		/* confirming the offset: the token may come back under another
		 * id (a renamed file), which must not get these updates again;
		 * the entry goes once its bot has stopped */
		stop_bot(e, bot_status(e->bot) != BOT_REFUSED);
	} else if (!e->stopping) {
		entry_drop(r, e);
	}
	recheck_refused(r);
}

static void repoll_one(const char *key, void *value, void *arg)
{
	(void)key;
	struct entry *e = value;
	if (e->bot && !e->removed)
		bot_repoll(e->bot, *(bool *)arg);
}

void registry_repoll(struct registry *r, bool woke)
{
	smap_each(&r->by_id, repoll_one, &woke);
}

static void abort_one(const char *key, void *value, void *arg)
{
	(void)key;
	(void)arg;
	struct entry *e = value;
	if (e->stopping)
		bot_abort_sends(e->stopping);
}

void registry_abort_sends(struct registry *r)
{
	smap_each(&r->by_id, abort_one, NULL);
}

struct entry_list {
	struct entry **v;
	size_t n;
};

static void collect(const char *key, void *value, void *arg)
{
	(void)key;
	struct entry_list *l = arg;
	l->v[l->n++] = value;
}

/* Every entry, in an array (the caller frees l->v), so that the map may
 * change while they are walked. Returns 0 or -ENOMEM (then l is empty). */
static int entry_list(struct registry *r, struct entry_list *l)
{
	l->n = 0;
	if (!(l->v = calloc(r->by_id.n ? r->by_id.n : 1, sizeof(*l->v))))
		return -ENOMEM;
	smap_each(&r->by_id, collect, l);
	return 0;
}

static int by_id(const void *a, const void *b)
{
	return strcmp((*(struct entry *const *)a)->id, (*(struct entry *const *)b)->id);
}

void registry_report(struct registry *r)
{
	struct entry_list all;
	if (entry_list(r, &all)) {
		log_error("status report: out of memory");
		return;
	}
	qsort(all.v, all.n, sizeof(*all.v), by_id);
	log_info("status of %zu bot%s:", all.n, all.n == 1 ? "" : "s");
	for (size_t i = 0; i < all.n; i++) {
		const struct entry *e = all.v[i];
		const struct bot *b = e->bot ? e->bot : e->stopping;
		if (!b) {
			log_info("bot %s: not started: %s", e->id, e->error ? e->error : "(no spec)");
			continue;
		}
		if (e->error)
			log_info("bot %s: its spec file has errors (the last good version runs): %s",
				 e->id, e->error);
		const struct bot_counters *c = bot_counters(b);
		const char *err = bot_last_error(b);
		log_info("bot %s: %s%s%s; updates %" PRIu64 " (skipped %" PRIu64 "), sent %" PRIu64
			 ", dropped %" PRIu64 ", retries %" PRIu64 ", polls %" PRIu64,
			 e->id, bot_status_name(bot_status(b)), err[0] ? ": " : "", err,
			 c->updates, c->updates_failed, c->sent, c->dropped, c->retries, c->polls);
	}
	free(all.v);
}

void registry_stop(struct registry *r, void (*done)(void *arg), void *arg)
{
	r->closing = true;
	r->done = done;
	r->done_arg = arg;
	struct entry_list all;
	(void)entry_list(r, &all); /* out of memory: nothing to walk */
	for (size_t i = 0; i < all.n; i++) {
		struct entry *e = all.v[i];
		spec_unref(e->next);
		e->next = NULL;
		if (e->bot)
			stop_bot(e, false);
		else if (!e->stopping)
			entry_drop(r, e);
	}
	free(all.v);
	finish_close(r);
}
