/* floor: the CPU and memory floor of a Telegram bot on botfactory's libraries.
 *
 * A bare program doing only the HTTP + JSON work of one bot (or of N bots on one
 * loop, for the fleet benchmarks): one libuv loop, one curl multi handle driven
 * through CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION with uv_poll and
 * uv_timer, getMe once, then a getUpdates long poll parsed with cJSON, and one
 * sendMessage per `/start` (built with cJSON) with up to --sends concurrent
 * sends per bot. Keep-alive, HTTP/1.1 set explicitly. No durability, no engine,
 * no per-chat ordering: whatever botfactoryd spends above this is the price of
 * its features. Benchmark-only code: it never retries and has no backoff.
 *
 *   floor --api URL (--token T | --tokens FILE) [--text S] [--parse-mode M]
 *         [--sends N] [--poll-timeout S] [--ca-file PEM] [--multis K]
 *         [--naive-poll] [--quiet]
 *
 * The reply is {"chat_id":C,"text":"Hello!","parse_mode":"HTML"}, the body
 * botfactoryd sends for `reply: "Hello!"` (--parse-mode "" leaves it out).
 *
 * --naive-poll handles curl's socket callback the way the first botfactoryd
 * did (feaa532: a new uv_poll per watch, closed on CURL_POLL_REMOVE), to
 * measure what that costs; the default, like src/curl_uv.c today, keeps one
 * uv_poll per socket for the socket's lifetime (closed from
 * CURLOPT_CLOSESOCKETFUNCTION) and calls uv_poll_start only when the events
 * curl wants change. On SIGINT/SIGTERM it prints one JSON line of
 * counters to stderr and exits 0. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <uv.h>

#define MAX_SENDS 16
#define RESP_MAX (16 * 1024 * 1024)

static void die(const char *what)
{
	fprintf(stderr, "floor: %s\n", what);
	exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (!p)
		die("out of memory");
	return p;
}

/* ---- options and counters ---------------------------------------------- */

static struct {
	const char *api;
	const char *text;
	const char *parse_mode;
	const char *ca_file;
	int sends;
	int poll_timeout;
	bool naive;
	bool quiet;
} opt = {NULL, "Hello!", "HTML", NULL, 4, 30, false, false};

static struct {
	uint64_t updates, replies, polls, errors, getme;
	uint64_t sock_cb[4], sock_remove, poll_inits, poll_starts, idle_wakeups;
} count;

/* ---- curl on uv ------------------------------------------------------------ */

/* One curl multi handle and its timer. --multis K shards the bots over K of
 * them (bot i uses multi i % K): libcurl 7.88 looks for a reusable
 * connection by walking every connection to the host, so one multi holding
 * N busy polls costs O(N) per request started. */
struct mh {
	CURLM *multi;
	uv_timer_t timer; /* first: data points back here */
};

struct sock {
	uv_poll_t poll; /* first: the handle's address is the sock's */
	struct mh *mh;
	curl_socket_t fd;
	int events;     /* what the uv_poll watches (0: stopped) */
	int wanted;     /* what curl wants (0: idle in curl's cache) */
};

static uv_loop_t *loop;
static struct mh *mhs;
static int nmulti = 1;
static struct sock **by_fd; /* keep mode: the sock of each open curl socket */
static size_t nfds;

static void check_done(struct mh *mh);

static void sock_closed(uv_handle_t *h)
{
	free(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct sock *s = (struct sock *)p;
	if (!opt.naive && !s->wanted) {
		count.idle_wakeups++;
		/* an idle kept-alive socket became readable: the server closed
		 * it (or sent junk). Stop watching; curl notices at reuse. */
		uv_poll_stop(&s->poll);
		s->events = 0;
		return;
	}
	int flags = status < 0 ? CURL_CSELECT_ERR : 0;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	curl_multi_socket_action(s->mh->multi, s->fd, flags, &running);
	check_done(s->mh);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	(void)easy;
	struct mh *mh = userp;
	struct sock *s = opt.naive ? socketp : ((size_t)fd < nfds ? by_fd[fd] : NULL);
	if (what == CURL_POLL_REMOVE) {
		count.sock_remove++;
		if (!s)
			return 0;
		if (opt.naive) {
			curl_multi_assign(mh->multi, fd, NULL);
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, sock_closed);
		} else {
			s->wanted = 0; /* keep watching until the socket closes */
		}
		return 0;
	}
	if (!s) {
		if (!opt.naive && (size_t)fd >= nfds)
			return -1;
		s = xcalloc(1, sizeof(*s));
		count.poll_inits++;
		if (uv_poll_init_socket(loop, &s->poll, fd)) {
			free(s);
			return -1;
		}
		s->fd = fd;
		s->mh = mh;
		if (opt.naive)
			curl_multi_assign(mh->multi, fd, s);
		else
			by_fd[fd] = s;
	}
	int events = 0;
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	count.sock_cb[what & 3]++;
	s->wanted = events;
	if (!opt.naive && s->events == events)
		return 0;
	s->events = events;
	count.poll_starts++;
	return uv_poll_start(&s->poll, events, on_poll) ? -1 : 0;
}

/* keep mode: the poll handle lives as long as the socket */
static int on_closesocket(void *clientp, curl_socket_t fd)
{
	(void)clientp;
	if ((size_t)fd < nfds && by_fd[fd]) {
		uv_close((uv_handle_t *)&by_fd[fd]->poll, sock_closed);
		by_fd[fd] = NULL;
	}
	return close(fd);
}

static void on_timer(uv_timer_t *t)
{
	struct mh *mh = t->data;
	int running;
	curl_multi_socket_action(mh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(mh);
}

static int on_timeout(CURLM *m, long ms, void *userp)
{
	(void)m;
	struct mh *mh = userp;
	if (ms < 0)
		uv_timer_stop(&mh->timer);
	else
		uv_timer_start(&mh->timer, on_timer, (uint64_t)ms, 0);
	return 0;
}

/* ---- requests -------------------------------------------------------------- */

struct bot;
struct req;
typedef void (*req_cb)(struct req *r, CURLcode res, cJSON *root);

struct req {
	CURL *easy;
	struct bot *bot;
	req_cb cb;
	char *body; /* owned; curl reads it in place (CURLOPT_POSTFIELDS) */
	char *resp;
	size_t len, cap;
	bool busy;
};

struct bot {
	struct mh *mh;
	char *token;
	char *url_getme, *url_updates, *url_send;
	int64_t offset;
	uv_timer_t retry; /* after a failed poll: no spinning on a dead server */
	struct req poll;
	struct req sends[MAX_SENDS];
	char **q; /* FIFO of reply bodies */
	size_t qhead, qlen, qcap;
};

static struct curl_slist *headers;
static struct bot **bots;
static size_t nbots;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct req *r = arg;
	size_t len = size * n;
	if (r->len + len + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		while (cap < r->len + len + 1)
			cap *= 2;
		if (cap > RESP_MAX)
			return 0;
		char *np = realloc(r->resp, cap);
		if (!np)
			return 0;
		r->resp = np;
		r->cap = cap;
	}
	memcpy(r->resp + r->len, p, len);
	r->len += len;
	r->resp[r->len] = '\0';
	return len;
}

static void req_init(struct req *r, struct bot *b)
{
	r->bot = b;
	r->easy = curl_easy_init();
	if (!r->easy)
		die("curl_easy_init failed");
	CURL *e = r->easy;
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_PROXY, ""); /* no proxy lookup per request */
	curl_easy_setopt(e, CURLOPT_USERAGENT, "floor/1");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	if (opt.ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, opt.ca_file);
	if (!opt.naive)
		curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_closesocket);
}

/* Starts a POST of body (taken) to url. */
static void req_start(struct req *r, const char *url, char *body, long timeout_ms, req_cb cb)
{
	free(r->body);
	r->body = body;
	r->len = 0;
	r->cb = cb;
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	if (curl_multi_add_handle(r->bot->mh->multi, r->easy) != CURLM_OK)
		die("curl_multi_add_handle failed");
	r->busy = true;
}

static void check_done(struct mh *mh)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(mh->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *easy = m->easy_handle;
		CURLcode res = m->data.result;
		struct req *r = NULL;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
		curl_multi_remove_handle(mh->multi, easy);
		r->busy = false;
		cJSON *root = NULL;
		if (res == CURLE_OK) {
			root = cJSON_ParseWithLength(r->resp ? r->resp : "", r->len);
			const cJSON *ok = cJSON_GetObjectItemCaseSensitive(root, "ok");
			if (!cJSON_IsTrue(ok)) {
				cJSON_Delete(root);
				root = NULL;
			}
		}
		if (!root)
			count.errors++;
		r->cb(r, res, root);
		cJSON_Delete(root);
	}
}

/* ---- the bot ---------------------------------------------------------------- */

static void poll_again(struct bot *b);

static void on_sent(struct req *r, CURLcode res, cJSON *root)
{
	(void)res;
	if (root)
		count.replies++;
	struct bot *b = r->bot;
	if (b->qlen) { /* this slot takes the next reply */
		char *body = b->q[b->qhead];
		b->qhead = (b->qhead + 1) % b->qcap;
		b->qlen--;
		req_start(r, b->url_send, body, 30000, on_sent);
	}
}

static void enqueue(struct bot *b, char *body)
{
	if (b->qlen == b->qcap) {
		size_t cap = b->qcap ? b->qcap * 2 : 64;
		char **q = xcalloc(cap, sizeof(*q));
		for (size_t i = 0; i < b->qlen; i++)
			q[i] = b->q[(b->qhead + i) % b->qcap];
		free(b->q);
		b->q = q;
		b->qhead = 0;
		b->qcap = cap;
	}
	b->q[(b->qhead + b->qlen) % b->qcap] = body;
	b->qlen++;
}

static void pump(struct bot *b)
{
	for (int i = 0; i < opt.sends && b->qlen; i++) {
		struct req *r = &b->sends[i];
		if (r->busy)
			continue;
		if (!r->easy)
			req_init(r, b);
		char *body = b->q[b->qhead];
		b->qhead = (b->qhead + 1) % b->qcap;
		b->qlen--;
		req_start(r, b->url_send, body, 30000, on_sent);
	}
}

static char *reply_body(double chat_id)
{
	cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddNumberToObject(o, "chat_id", chat_id) ||
	    !cJSON_AddStringToObject(o, "text", opt.text) ||
	    (opt.parse_mode[0] && !cJSON_AddStringToObject(o, "parse_mode", opt.parse_mode)))
		die("out of memory");
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		die("out of memory");
	return s;
}

static void on_retry(uv_timer_t *t)
{
	poll_again(t->data);
}

static void on_updates(struct req *r, CURLcode res, cJSON *root)
{
	(void)res;
	struct bot *b = r->bot;
	if (!root) {
		uv_timer_start(&b->retry, on_retry, 1000, 0);
		return;
	}
	count.polls++;
	const cJSON *u;
	cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(root, "result"))
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(u, "update_id");
		if (cJSON_IsNumber(id))
			b->offset = (int64_t)id->valuedouble + 1;
		count.updates++;
		const cJSON *msg = cJSON_GetObjectItemCaseSensitive(u, "message");
		const cJSON *text = cJSON_GetObjectItemCaseSensitive(msg, "text");
		const cJSON *chat = cJSON_GetObjectItemCaseSensitive(msg, "chat");
		const cJSON *cid = cJSON_GetObjectItemCaseSensitive(chat, "id");
		if (cJSON_IsString(text) && cJSON_IsNumber(cid) &&
		    !strncmp(text->valuestring, "/start", 6))
			enqueue(b, reply_body(cid->valuedouble));
	}
	poll_again(b); /* no durability: confirm at once */
	pump(b);
}

static void poll_again(struct bot *b)
{
	char body[200];
	if (b->offset)
		snprintf(body, sizeof(body),
			 "{\"offset\":%" PRId64 ",\"timeout\":%d,\"allowed_updates\":[\"message\",\"callback_query\"]}",
			 b->offset, opt.poll_timeout);
	else
		snprintf(body, sizeof(body),
			 "{\"timeout\":%d,\"allowed_updates\":[\"message\",\"callback_query\"]}",
			 opt.poll_timeout);
	char *copy = strdup(body);
	if (!copy)
		die("out of memory");
	long margin = opt.poll_timeout / 2;
	margin = margin < 2 ? 2 : margin > 15 ? 15 : margin;
	req_start(&b->poll, b->url_updates, copy, (opt.poll_timeout + margin) * 1000L, on_updates);
}

static void on_me(struct req *r, CURLcode res, cJSON *root)
{
	(void)res;
	count.getme += root != NULL;
	if (root)
		poll_again(r->bot);
	else
		uv_timer_start(&r->bot->retry, on_retry, 1000, 0);
}

static char *join(const char *token, const char *method)
{
	size_t n = strlen(opt.api) + strlen(token) + strlen(method) + 8;
	char *s = xcalloc(1, n);
	snprintf(s, n, "%s/bot%s/%s", opt.api, token, method);
	return s;
}

static struct bot *bot_new(const char *token)
{
	struct bot *b = xcalloc(1, sizeof(*b));
	b->mh = &mhs[nbots % (size_t)nmulti];
	b->token = strdup(token);
	if (!b->token)
		die("out of memory");
	b->url_getme = join(token, "getMe");
	b->url_updates = join(token, "getUpdates");
	b->url_send = join(token, "sendMessage");
	req_init(&b->poll, b);
	uv_timer_init(loop, &b->retry);
	b->retry.data = b;
	return b;
}

/* ---- main ------------------------------------------------------------------ */

static uv_signal_t sigint_h, sigterm_h;

static void on_signal(uv_signal_t *s, int signum)
{
	(void)s;
	(void)signum;
	fprintf(stderr,
		"{\"bots\":%zu,\"getme\":%" PRIu64 ",\"polls\":%" PRIu64 ",\"updates\":%" PRIu64
		",\"replies\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"socket_cb\":{\"in\":%" PRIu64
		",\"out\":%" PRIu64 ",\"inout\":%" PRIu64 ",\"remove\":%" PRIu64
		"},\"poll_inits\":%" PRIu64 ",\"poll_starts\":%" PRIu64 ",\"idle_wakeups\":%" PRIu64 "}\n",
		nbots, count.getme, count.polls, count.updates, count.replies, count.errors,
		count.sock_cb[CURL_POLL_IN], count.sock_cb[CURL_POLL_OUT], count.sock_cb[CURL_POLL_INOUT],
		count.sock_remove, count.poll_inits, count.poll_starts, count.idle_wakeups);
	fflush(stderr);
	_exit(0); /* a benchmark tool: no orderly teardown of thousands of handles */
}

static void add_bot(const char *token)
{
	struct bot **v = realloc(bots, (nbots + 1) * sizeof(*v));
	if (!v)
		die("out of memory");
	bots = v;
	struct bot *b = bot_new(token); /* reads nbots: its shard */
	bots[nbots++] = b;
}

static void usage(void)
{
	fputs("usage: floor --api URL (--token T | --tokens FILE) [--text S] [--parse-mode M]\n"
	      "             [--sends N] [--poll-timeout S] [--ca-file PEM] [--multis K]\n"
	      "             [--naive-poll] [--quiet]\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *tokens_file = NULL, *token_arg = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--naive-poll"))
			opt.naive = true;
		else if (!strcmp(a, "--quiet"))
			opt.quiet = true;
		else if (!v)
			usage();
		else if (!strcmp(a, "--api"))
			opt.api = v, i++;
		else if (!strcmp(a, "--token"))
			token_arg = v, i++;
		else if (!strcmp(a, "--tokens"))
			tokens_file = v, i++;
		else if (!strcmp(a, "--text"))
			opt.text = v, i++;
		else if (!strcmp(a, "--parse-mode"))
			opt.parse_mode = v, i++;
		else if (!strcmp(a, "--ca-file"))
			opt.ca_file = v, i++;
		else if (!strcmp(a, "--multis"))
			nmulti = atoi(v), i++;
		else if (!strcmp(a, "--sends"))
			opt.sends = atoi(v), i++;
		else if (!strcmp(a, "--poll-timeout"))
			opt.poll_timeout = atoi(v), i++;
		else
			usage();
	}
	if (!opt.api || (!token_arg == !tokens_file) || nmulti < 1 || opt.sends < 1 || opt.sends > MAX_SENDS || opt.poll_timeout < 0)
		usage();
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	nfds = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (size_t)rl.rlim_cur;
	by_fd = xcalloc(nfds, sizeof(*by_fd));
	if (curl_global_init(CURL_GLOBAL_DEFAULT))
		die("curl_global_init failed");
	loop = uv_default_loop();
	mhs = xcalloc((size_t)nmulti, sizeof(*mhs));
	for (int i = 0; i < nmulti; i++) {
		struct mh *mh = &mhs[i];
		mh->multi = curl_multi_init();
		if (!mh->multi)
			die("curl_multi_init failed");
		uv_timer_init(loop, &mh->timer);
		mh->timer.data = mh;
		curl_multi_setopt(mh->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
		curl_multi_setopt(mh->multi, CURLMOPT_SOCKETDATA, mh);
		curl_multi_setopt(mh->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
		curl_multi_setopt(mh->multi, CURLMOPT_TIMERDATA, mh);
		curl_multi_setopt(mh->multi, CURLMOPT_MAXCONNECTS,
				  (long)(nfds > 128 ? nfds - 64 : 64));
		curl_multi_setopt(mh->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
	}
	headers = curl_slist_append(NULL, "Content-Type: application/json");

	if (token_arg)
		add_bot(token_arg);
	if (tokens_file) {
		FILE *f = fopen(tokens_file, "r");
		if (!f)
			die("cannot open the tokens file");
		char line[256];
		while (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\r\n")] = '\0';
			if (line[0])
				add_bot(line);
		}
		fclose(f);
	}
	if (!nbots)
		usage();
	for (size_t i = 0; i < nbots; i++) {
		char *body = strdup("{}");
		if (!body)
			die("out of memory");
		req_start(&bots[i]->poll, bots[i]->url_getme, body, 30000, on_me);
	}
	if (!opt.quiet)
		fprintf(stderr, "floor: %zu bot%s, %d sends each, %d multi handle%s, %s poll handling\n",
			nbots, nbots == 1 ? "" : "s", opt.sends, nmulti, nmulti == 1 ? "" : "s",
			opt.naive ? "naive" : "kept");
	uv_signal_init(loop, &sigint_h);
	uv_signal_init(loop, &sigterm_h);
	uv_signal_start(&sigint_h, on_signal, SIGINT);
	uv_signal_start(&sigterm_h, on_signal, SIGTERM);
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}
