/* botfactoryd: the daemon. Watches the specs directory (specdir), keeps
 * the set of bots in step with it (registry), opens the SQLite database,
 * and runs each bot with a token on one libuv loop (one curl multi handle,
 * one database thread). SIGINT/SIGTERM stop it
 * cleanly: polls end, in-flight replies get a short grace period, pending
 * database work is committed, and it exits 0. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>
#include <uv.h>

#include "botfactory/bot.h"
#include "botfactory/curl_uv.h"
#include "botfactory/dbq.h"
#include "botfactory/log.h"
#include "botfactory/registry.h"
#include "botfactory/specdir.h"
#include "botfactory/store.h"
#include "botfactory/tg_api.h"
#include "botfactory/util.h"

#define DEFAULT_API "https://api.telegram.org"
#define SHUTDOWN_GRACE_MS 3000
#define WATCH_INTERVAL_MS 2000
/* a clock jump this much larger than the watch interval means the machine
 * slept (CLOCK_BOOTTIME runs on in suspend, CLOCK_MONOTONIC does not) or the
 * loop stalled: every poll is restarted */
#define JUMP_MS 3000

struct options {
	const char *specs;
	const char *db;
	const char *api;
	const char *ca_file;
	int poll_timeout;
	int request_timeout;
	enum log_level level;
};

struct daemon {
	struct options opt;
	uv_loop_t *loop;
	struct store *store;
	struct dbq *dbq;
	struct curl_uv *cus[TG_API_MULTIS];
	struct tg_api api;
	struct bot_env env;
	struct registry *reg;
	struct specdir *specdir;
	int closing;    /* parts still closing during shutdown */
	uv_signal_t sigint, sigterm, sighup, sigusr1;
	uv_timer_t watch, grace;
	int64_t last_boot, last_mono;
	long maxconn; /* connections open at once, at most */
	struct tg_req warm; /* the one call made before many (see warm_up) */
	bool warm_ready;
	unsigned warm_then; /* WARM_START and/or WARM_REPOLL, once it ends */
	int stopping;
	int exit_code;
};

static const char usage_text[] =
	"usage: botfactoryd [OPTIONS]\n"
	"\n"
	"Runs every bot of the specs directory, each long-polling Telegram.\n"
	"\n"
	"  --specs DIR          spec files (*.yaml, *.yml, *.json)     [BOTFACTORY_SPECS, ./specs]\n"
	"  --db PATH            SQLite database (0600), one daemon each [BOTFACTORY_DB, ./botfactory.db]\n"
	"  --telegram-api URL   Bot API base URL                       [BOTFACTORY_TELEGRAM_API, " DEFAULT_API "]\n"
	"  --ca-file PEM        CA certificates for the Bot API        [BOTFACTORY_CA_FILE, the system's]\n"
	"  --poll-timeout S     getUpdates long-poll timeout, 1-50 s   [BOTFACTORY_POLL_TIMEOUT, 30]\n"
	"  --request-timeout S  deadline of other calls, 1-300 s       [BOTFACTORY_REQUEST_TIMEOUT, 30]\n"
	"  --log-level L        error, warn, info or debug             [BOTFACTORY_LOG_LEVEL, info]\n"
	"  -h, --help           this text\n"
	"  --version            the version\n"
	"\n"
	"A bot's token comes from its spec (token: ${ENV_VAR} or a literal).\n"
	"Spec files are watched: adding, editing or removing one starts, changes\n"
	"or stops its bot at once. SIGHUP rescans the directory. SIGUSR1 logs each\n"
	"bot's status and counters. SIGINT or SIGTERM stop the daemon cleanly.\n";

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && *v ? v : def;
}

/* Returns 0, 1 (exit 0: help/version printed) or 2 (usage error). */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"specs", required_argument, NULL, 's'},
		{"db", required_argument, NULL, 'd'},
		{"telegram-api", required_argument, NULL, 'a'},
		{"ca-file", required_argument, NULL, 'c'},
		{"poll-timeout", required_argument, NULL, 't'},
		{"request-timeout", required_argument, NULL, 'r'},
		{"log-level", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *timeout = env_or("BOTFACTORY_POLL_TIMEOUT", "30");
	const char *rtimeout = env_or("BOTFACTORY_REQUEST_TIMEOUT", "30");
	const char *level = env_or("BOTFACTORY_LOG_LEVEL", "info");
	o->specs = env_or("BOTFACTORY_SPECS", "./specs");
	o->db = env_or("BOTFACTORY_DB", "./botfactory.db");
	o->api = env_or("BOTFACTORY_TELEGRAM_API", DEFAULT_API);
	o->ca_file = env_or("BOTFACTORY_CA_FILE", NULL);
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			o->specs = optarg;
			break;
		case 'd':
			o->db = optarg;
			break;
		case 'a':
			o->api = optarg;
			break;
		case 'c':
			o->ca_file = optarg;
			break;
		case 't':
			timeout = optarg;
			break;
		case 'r':
			rtimeout = optarg;
			break;
		case 'l':
			level = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 1;
		case 'V':
			printf("botfactoryd " BOTFACTORY_VERSION "\n");
			return 1;
		default:
			fprintf(stderr, "botfactoryd: unknown or incomplete option '%s' (see botfactoryd --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "botfactoryd: unexpected argument '%s' (see botfactoryd --help)\n",
			argv[optind]);
		return 2;
	}
	char *end;
	long t = strtol(timeout, &end, 10);
	if (*end || t < 1 || t > 50) {
		fprintf(stderr, "botfactoryd: --poll-timeout must be 1 to 50 seconds, not '%s'\n",
			timeout);
		return 2;
	}
	o->poll_timeout = (int)t;
	t = strtol(rtimeout, &end, 10);
	if (*end || t < 1 || t > 300) {
		fprintf(stderr, "botfactoryd: --request-timeout must be 1 to 300 seconds, not '%s'\n",
			rtimeout);
		return 2;
	}
	o->request_timeout = (int)t;
	if (log_level_parse(level, &o->level)) {
		fprintf(stderr, "botfactoryd: --log-level must be error, warn, info or debug, not '%s'\n",
			level);
		return 2;
	}
	if (strncmp(o->api, "http://", 7) && strncmp(o->api, "https://", 8)) {
		fprintf(stderr, "botfactoryd: --telegram-api must be an http:// or https:// URL, not '%s'\n",
			o->api);
		return 2;
	}
	return 0;
}

/* Raises the open-files soft limit to the hard limit. Returns the limit. */
static long raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
}

/* Descriptors kept out of the connection budget: the daemon holds about
 * 50 with no bot (libcurl's wake-up socket pairs, the loop, the database,
 * the specs directory), and lookups, spec reads and connection races need
 * a few more for a moment. */
#define FD_RESERVE 128

#define WARM_START 1u
#define WARM_REPOLL 2u  /* restart the polls (a stall) */
#define WARM_WOKE 4u    /* ... and the backoffs (a suspend) */
/* The warm-up call's deadline: past it the bots start anyway. */
#define WARM_TIMEOUT_MS 5000

static void start_specs(struct daemon *d);

/* What waited for the first call: WARM_START and/or WARM_REPOLL. */
static void warm_then_run(struct daemon *d, unsigned then)
{
	if (then & WARM_START)
		start_specs(d);
	if (then & WARM_REPOLL)
		registry_repoll(d->reg, then & WARM_WOKE);
}

static void warm_done(struct tg_req *r, struct tg_result *res, void *arg)
{
	(void)r;
	struct daemon *d = arg;
	unsigned then = d->warm_then;
	d->warm_then = 0;
	/* any answer will do (it is a 404: no token): the address is known */
	log_debug("the Bot API host answered the first call (%s)",
		  res->status == TG_TRANSIENT ? res->description : "reachable");
	if (!d->stopping)
		warm_then_run(d, then);
}

/* Runs `then` once one call has been made to the API host (or at once,
 * when its address needs no lookup). Thousands of bots starting at once
 * would each start a resolver thread before the first answer reaches the
 * shared DNS cache; after this call they find it there. */
static void warm_up(struct daemon *d, unsigned then)
{
	if (tg_api_needs_lookup(&d->api)) {
		if (!d->warm_ready) {
			if (tg_req_init(&d->warm, &d->api)) {
				tg_req_free(&d->warm);
			} else {
				/* a new connection, so a new lookup when the cache
				 * has expired; never a pooled one that died in the
				 * sleep */
				tg_req_fresh(&d->warm);
				d->warm_ready = true;
			}
		}
		if (d->warm_ready && d->warm_then) { /* one is in flight */
			d->warm_then |= then;
			return;
		}
		if (d->warm_ready && !tg_req_call(&d->warm, "", "getMe", "{}", 2, WARM_TIMEOUT_MS,
						  warm_done, d)) {
			log_debug("a first call to the Bot API host, for its address, before %s",
				  then & WARM_START ? "the bots start" : "the polls restart");
			d->warm_then = then;
			return;
		}
	}
	warm_then_run(d, then);
}

static void on_watch(uv_timer_t *t)
{
	struct daemon *d = t->data;
	int64_t boot = util_clock_ms(CLOCK_BOOTTIME), mono = util_clock_ms(CLOCK_MONOTONIC);
	int64_t slept = (boot - d->last_boot) - (mono - d->last_mono);
	int64_t stalled = (mono - d->last_mono) - WATCH_INTERVAL_MS;
	d->last_boot = boot;
	d->last_mono = mono;
	/* a stall only matters when it outlasts the polls' margin (then a
	 * poll may have passed its deadline unseen); shorter ones, like a busy
	 * start-up with thousands of bots, must not restart every poll */
	int64_t margin = bot_poll_margin_ms(d->opt.poll_timeout);
	if (slept < JUMP_MS && stalled < (margin > JUMP_MS ? margin : JUMP_MS))
		return;
	log_info("the machine %s for %.1f s: restarting every poll",
		 slept >= JUMP_MS ? "was suspended" : "stalled",
		 (double)(slept >= JUMP_MS ? slept : stalled) / 1000.0);
	/* after a sleep the DNS cache has expired: one lookup, not one per bot */
	warm_up(d, WARM_REPOLL | (slept >= JUMP_MS ? WARM_WOKE : 0));
}

static void close_handle_cb(uv_handle_t *h)
{
	(void)h;
}

static void on_curl_closed(void *arg)
{
	(void)arg;
}

static void on_dbq_closed(void *arg)
{
	struct daemon *d = arg;
	store_close(d->store);
	d->store = NULL;
	if (d->warm_ready)
		tg_req_free(&d->warm);
	tg_api_free(&d->api);
	for (int i = 0; i < TG_API_MULTIS; i++)
		if (d->cus[i])
			curl_uv_close(d->cus[i], on_curl_closed, d);
	uv_close((uv_handle_t *)&d->sigint, close_handle_cb);
	uv_close((uv_handle_t *)&d->sigterm, close_handle_cb);
	uv_close((uv_handle_t *)&d->sighup, close_handle_cb);
	uv_close((uv_handle_t *)&d->sigusr1, close_handle_cb);
	/* (closing them restored the default actions) */
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	log_info("stopped");
}

/* The last steps of a shutdown, once no bot runs any more. */
static void on_part_closed(void *arg)
{
	struct daemon *d = arg;
	if (--d->closing)
		return;
	uv_timer_stop(&d->grace);
	uv_close((uv_handle_t *)&d->grace, close_handle_cb);
	dbq_stop(d->dbq, on_dbq_closed, d);
	d->dbq = NULL;
}

static void on_grace(uv_timer_t *t)
{
	struct daemon *d = t->data;
	log_warn("replies still in flight after %d s: they stay queued for the next start",
		 SHUTDOWN_GRACE_MS / 1000);
	registry_abort_sends(d->reg);
}

static void shutdown_daemon(struct daemon *d)
{
	if (d->stopping)
		return;
	d->stopping = 1;
	log_info("stopping");
	/* the signal handles stay open until the end (on_dbq_closed): closed,
	 * a signal would take its default action, which for SIGHUP and
	 * SIGUSR1 is to kill the process mid-shutdown */
	uv_timer_stop(&d->watch);
	uv_close((uv_handle_t *)&d->watch, close_handle_cb);
	if (d->warm_ready)
		tg_req_cancel(&d->warm);
	d->warm_then = 0;
	uv_timer_start(&d->grace, on_grace, SHUTDOWN_GRACE_MS, 0);
	d->closing = 2;
	if (d->specdir)
		specdir_stop(d->specdir, on_part_closed, d);
	else
		d->closing--;
	registry_stop(d->reg, on_part_closed, d);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct daemon *d = s->data;
	if (d->stopping) {
		if (signum == SIGUSR1 || signum == SIGHUP)
			log_info("stopping: signal %d ignored", signum);
		return;
	}
	if (signum == SIGUSR1) {
		registry_report(d->reg);
		return;
	}
	if (signum == SIGHUP) {
		if (!d->specdir) { /* the first call has not ended: no scan yet */
			log_info("SIGHUP: %s is read once the first call to the Bot API ends",
				 d->opt.specs);
			return;
		}
		log_info("SIGHUP: rescanning %s", d->opt.specs);
		specdir_rescan(d->specdir, true);
		return;
	}
	shutdown_daemon(d);
}

static void on_first_scan(void *arg, unsigned nfiles)
{
	struct daemon *d = arg;
	log_info("botfactoryd " BOTFACTORY_VERSION ": %u spec file%s in %s (watched), database %s",
		 nfiles, nfiles == 1 ? "" : "s", d->opt.specs, d->opt.db);
	/* each polling bot holds a connection; replies need some more */
	if ((long)nfiles > d->maxconn * 3 / 4)
		log_warn("%u spec files, but the open-files limit leaves room for %ld connections: "
			 "requests will wait for a connection (their deadlines running) and "
			 "some may fail; raise the limit (ulimit -n, or LimitNOFILE= in the service)",
			 nfiles, d->maxconn);
}

/* Starts watching and loading the specs directory (its bots start). */
static void start_specs(struct daemon *d)
{
	int rc = specdir_start(d->loop, d->opt.specs, d->reg, on_first_scan, d, &d->specdir);
	if (rc) {
		log_error("cannot read the specs directory %s: %s", d->opt.specs, strerror(-rc));
		d->specdir = NULL;
		d->exit_code = 1;
		shutdown_daemon(d);
	}
}

int main(int argc, char **argv)
{
	struct daemon d = {0};
	char err[512];
	int rc = parse_options(argc, argv, &d.opt);
	if (rc)
		return rc == 1 ? 0 : 2;
	log_set_level(d.opt.level);
	signal(SIGPIPE, SIG_IGN);
	/* until their handlers are installed, neither may kill the daemon */
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	long nofile = raise_nofile();

	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		log_error("cannot initialise libcurl");
		return 1;
	}
	d.loop = uv_default_loop();
	if ((rc = store_open(d.opt.db, &d.store, err, sizeof(err)))) {
		log_error("database: %s", err);
		curl_global_cleanup();
		return 1;
	}
	/* the connection budget: one poll connection per bot plus room for
	 * sends, split over the multi handles; FD_RESERVE descriptors stay for
	 * the database, the specs directory, the loop and the log */
	d.maxconn = nofile > 2 * FD_RESERVE ? nofile - FD_RESERVE : nofile / 2;
	/* what the multi handles can really hold, each its share rounded down */
	d.maxconn = (d.maxconn / TG_API_MULTIS > 2 ? d.maxconn / TG_API_MULTIS : 2) * TG_API_MULTIS;
	if ((rc = dbq_start(d.loop, d.store, &d.dbq))) {
		log_error("cannot start: %s", uv_strerror(rc));
		return 1;
	}
	for (int i = 0; i < TG_API_MULTIS && !rc; i++)
		rc = curl_uv_init(d.loop, d.maxconn / TG_API_MULTIS, &d.cus[i]);
	if (rc || (rc = tg_api_init(&d.api, d.cus, TG_API_MULTIS, d.opt.api, d.opt.ca_file,
						d.opt.poll_timeout))) {
		log_error("cannot start: %s", uv_strerror(rc));
		return 1;
	}
	d.env = (struct bot_env){d.loop, &d.api, d.dbq, d.opt.poll_timeout, 4,
				 d.opt.request_timeout * 1000L};

	if ((rc = registry_new(&d.env, &d.reg))) {
		log_error("cannot start: %s", uv_strerror(rc));
		return 1;
	}
	log_info("open-files limit %ld", nofile);

	uv_signal_init(d.loop, &d.sigint);
	uv_signal_init(d.loop, &d.sigterm);
	uv_signal_init(d.loop, &d.sighup);
	uv_signal_init(d.loop, &d.sigusr1);
	d.sigint.data = d.sigterm.data = d.sighup.data = d.sigusr1.data = &d;
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_signal_start(&d.sighup, on_signal, SIGHUP);
	uv_signal_start(&d.sigusr1, on_signal, SIGUSR1);
	uv_timer_init(d.loop, &d.watch);
	uv_timer_init(d.loop, &d.grace);
	d.watch.data = d.grace.data = &d;
	d.last_boot = util_clock_ms(CLOCK_BOOTTIME);
	d.last_mono = util_clock_ms(CLOCK_MONOTONIC);
	uv_timer_start(&d.watch, on_watch, WATCH_INTERVAL_MS, WATCH_INTERVAL_MS);
	warm_up(&d, WARM_START);

	uv_run(d.loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(d.loop);
	if (rc)
		log_error("internal: the loop still had open handles at exit");
	curl_global_cleanup();
	return d.exit_code ? d.exit_code : rc ? 1 : 0;
}
