/* tg_api: Bot API requests and their typed results (see tg_api.h). */
#include "botfactory/tg_api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "botfactory/log.h"

/* A reply larger than this is not from the Bot API. */
#define MAX_RESPONSE (16 * 1024 * 1024)

static const char *const names[] = {
	[TG_OK] = "ok",
	[TG_RETRY_AFTER] = "retry_after",
	[TG_UNAUTHORIZED] = "unauthorized",
	[TG_CONFLICT_WEBHOOK] = "conflict_webhook",
	[TG_CONFLICT_POLLER] = "conflict_poller",
	[TG_NOT_FOUND] = "not_found",
	[TG_BAD_REQUEST] = "bad_request",
	[TG_FORBIDDEN] = "forbidden",
	[TG_TRANSIENT] = "transient",
};

const char *tg_status_name(enum tg_status s)
{
	return names[s];
}

/* The first of vars set in the environment, copied, or "". */
static char *env_first(const char *const *vars)
{
	for (const char *const *v = vars; *v; v++) {
		const char *p = getenv(*v);
		if (p && *p)
			return strdup(p);
	}
	return strdup("");
}

/* The proxy for the API base, picked as curl picks it from the
 * environment: https_proxy for an https base, http_proxy (lowercase only,
 * as curl: HTTP_PROXY can come from a CGI request) for http, then
 * all_proxy. "" for none. */
static char *env_proxy(const char *base)
{
	static const char *const https_vars[] = {"https_proxy", "HTTPS_PROXY", "all_proxy",
						 "ALL_PROXY", NULL};
	static const char *const http_vars[] = {"http_proxy", "all_proxy", "ALL_PROXY", NULL};
	return env_first(strncasecmp(base, "https:", 6) ? http_vars : https_vars);
}

/* Keepalive probes before the connection counts as dead. */
#define KEEP_PROBES 3

static long clamp_s(long v, long lo, long hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

int tg_api_init(struct tg_api *api, struct curl_uv *const *cus, unsigned ncus,
		const char *base, const char *ca_file, int poll_timeout_s)
{
	memset(api, 0, sizeof(*api));
	api->keep_idle = clamp_s(poll_timeout_s / 3, 1, 10);
	api->keep_intvl = clamp_s(poll_timeout_s / 6, 1, 5);
	for (unsigned i = 0; i < ncus && i < TG_API_MULTIS; i++)
		api->cus[api->ncu++] = cus[i];
	size_t n = strlen(base);
	while (n && base[n - 1] == '/')
		n--;
	api->base = strndup(base, n);
	api->ca_file = ca_file ? strdup(ca_file) : NULL;
	api->proxy = env_proxy(api->base);
	static const char *const noproxy_vars[] = {"no_proxy", "NO_PROXY", NULL};
	api->noproxy = env_first(noproxy_vars);
	api->headers = curl_slist_append(NULL, "Content-Type: application/json");
	/* the loop thread is the only user of the share: no lock callbacks */
	api->share = curl_share_init();
	if (api->share &&
	    curl_share_setopt(api->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
		curl_share_cleanup(api->share);
		api->share = NULL;
	}
	if (!api->base || (ca_file && !api->ca_file) || !api->proxy || !api->noproxy ||
	    !api->headers || !api->share) {
		tg_api_free(api);
		return -ENOMEM;
	}
	return 0;
}

void tg_api_free(struct tg_api *api)
{
	free(api->base);
	free(api->ca_file);
	free(api->proxy);
	free(api->noproxy);
	curl_slist_free_all(api->headers);
	if (api->share && curl_share_cleanup(api->share) != CURLSHE_OK)
		log_error("internal: the DNS cache is still in use at exit");
	memset(api, 0, sizeof(*api));
}

bool tg_api_needs_lookup(const struct tg_api *api)
{
	if (api->proxy[0])
		return true;
	CURLU *u = curl_url();
	char *host = NULL;
	bool name = true;
	if (u && !curl_url_set(u, CURLUPART_URL, api->base, 0) &&
	    !curl_url_get(u, CURLUPART_HOST, &host, 0)) {
		unsigned char addr[sizeof(struct in6_addr)];
		name = host[0] != '[' && inet_pton(AF_INET, host, addr) != 1;
	}
	curl_free(host);
	curl_url_cleanup(u);
	return name;
}

/* CURLOPT_SOCKOPTFUNCTION: the probe count, which libcurl 7.88 has no
 * option for (the system's default, 9, would take a dead path past the
 * poll's deadline). */
static int on_sockopt(void *arg, curl_socket_t fd, curlsocktype purpose)
{
	(void)arg;
	int probes = KEEP_PROBES;
	if (purpose == CURLSOCKTYPE_IPCXN &&
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes)))
		log_debug("TCP_KEEPCNT: %s", strerror(errno)); /* not a TCP socket */
	return CURL_SOCKOPT_OK;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct tg_req *r = arg;
	size_t len = size * n;
	if (r->resp.len + len > MAX_RESPONSE || buf_append(&r->resp, p, len))
		return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
	return len;
}

int tg_req_init(struct tg_req *r, struct tg_api *api)
{
	memset(r, 0, sizeof(*r));
	r->api = api;
	r->cu = api->cus[api->next++ % api->ncu];
	r->easy = curl_easy_init();
	if (!r->easy)
		return -ENOMEM;
	CURL *e = r->easy;
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, api->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	/* keepalive probes well inside the poll timeout, so that a dead path
	 * (a laptop changing networks) is noticed */
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, api->keep_idle);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, api->keep_intvl);
	curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
	curl_easy_setopt(e, CURLOPT_SHARE, api->share);
	curl_easy_setopt(e, CURLOPT_PROXY, api->proxy);
	curl_easy_setopt(e, CURLOPT_NOPROXY, api->noproxy);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "botfactory/" BOTFACTORY_VERSION);
	if (api->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, api->ca_file);
#if CURL_AT_LEAST_VERSION(7, 87, 0)
	/* never join a resolver thread when a request is abandoned */
	curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
	return 0;
}

void tg_req_fresh(struct tg_req *r)
{
	curl_easy_setopt(r->easy, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(r->easy, CURLOPT_FORBID_REUSE, 1L);
}

void tg_req_cancel(struct tg_req *r)
{
	if (r->busy) {
		curl_uv_cancel(r->cu, r->easy);
		r->busy = false;
	}
}

void tg_req_free(struct tg_req *r)
{
	if (!r->easy)
		return;
	tg_req_cancel(r);
	curl_easy_cleanup(r->easy);
	buf_free(&r->url);
	buf_free(&r->body);
	buf_free(&r->resp);
	r->easy = NULL;
}

/* Classifies a finished call. root is the parsed reply (or NULL). */
static void classify(struct tg_req *r, CURLcode res, const cJSON *root,
		     struct tg_result *out)
{
	memset(out, 0, sizeof(*out));
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &out->http);
	if (res != CURLE_OK) {
		out->status = TG_TRANSIENT;
		out->description = r->errbuf[0] ? r->errbuf : curl_easy_strerror(res);
		log_redact(r->errbuf);
		return;
	}
	const cJSON *ok = cJSON_GetObjectItemCaseSensitive(root, "ok");
	if (!cJSON_IsBool(ok)) {
		out->status = TG_TRANSIENT;
		out->description = "the reply is not a Bot API answer";
		return;
	}
	if (cJSON_IsTrue(ok)) {
		out->status = TG_OK;
		out->result = cJSON_GetObjectItemCaseSensitive(root, "result");
		return;
	}
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(root, "error_code");
	const cJSON *desc = cJSON_GetObjectItemCaseSensitive(root, "description");
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
	out->description = cJSON_IsString(desc) ? desc->valuestring : "no description";
	long ec = cJSON_IsNumber(code) ? (long)code->valuedouble : out->http;
	if (ec == 429) {
		const cJSON *ra = cJSON_GetObjectItemCaseSensitive(params, "retry_after");
		out->status = TG_RETRY_AFTER;
		out->retry_after = cJSON_IsNumber(ra) && ra->valuedouble >= 0 &&
						   ra->valuedouble < 86400
					   ? (int)ra->valuedouble
					   : 1;
	} else if (ec == 401) {
		out->status = TG_UNAUTHORIZED;
	} else if (ec == 409) {
		out->status = strcasestr(out->description, "webhook") ? TG_CONFLICT_WEBHOOK
								     : TG_CONFLICT_POLLER;
	} else if (ec == 404) {
		out->status = TG_NOT_FOUND;
	} else if (ec == 403) {
		out->status = TG_FORBIDDEN;
	} else if (ec >= 500 || ec < 400) {
		out->status = TG_TRANSIENT;
	} else {
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(params, "migrate_to_chat_id");
		out->status = TG_BAD_REQUEST;
		if (cJSON_IsNumber(m))
			out->migrate_to = (int64_t)m->valuedouble;
	}
}

static void on_done(CURL *easy, CURLcode res, void *arg)
{
	(void)easy;
	struct tg_req *r = arg;
	struct tg_result result;
	cJSON *root = NULL;
	r->busy = false;
	if (res == CURLE_OK)
		root = cJSON_ParseWithLength(r->resp.data ? r->resp.data : "", r->resp.len);
	classify(r, res, root, &result);
	result.root = root;
	r->cb(r, &result, r->arg); /* may start the next call on r */
	cJSON_Delete(result.root);
}

/* Points the easy handle at base/bot<token>/<method>, unless it already
 * is: a send slot calls the same method again and again. */
static int set_url(struct tg_req *r, const char *token, const char *method)
{
	size_t blen = strlen(r->api->base), tlen = strlen(token), mlen = strlen(method);
	const char *u = r->url.data;
	if (u && r->url.len == blen + 4 + tlen + 1 + mlen &&
	    !memcmp(u + blen + 4, token, tlen) && u[blen + 4 + tlen] == '/' &&
	    !memcmp(u + blen + 4 + tlen + 1, method, mlen))
		return 0;
	buf_reset(&r->url);
	if (buf_printf(&r->url, "%s/bot%s/%s", r->api->base, token, method))
		return -ENOMEM;
	curl_easy_setopt(r->easy, CURLOPT_URL, r->url.data);
	return 0;
}

struct buf *tg_req_body(struct tg_req *r)
{
	buf_reset(&r->body);
	return &r->body;
}

int tg_req_send(struct tg_req *r, const char *token, const char *method,
		long timeout_ms, tg_done_cb cb, void *arg)
{
	if (r->busy)
		return -EBUSY;
	buf_reset(&r->resp);
	if (set_url(r, token, method) || (!r->body.data && buf_append(&r->body, "", 0)))
		return -ENOMEM;
	r->errbuf[0] = '\0';
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body.data);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)r->body.len);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	r->cb = cb;
	r->arg = arg;
	int rc = curl_uv_add(r->cu, r->easy, on_done, r);
	if (!rc)
		r->busy = true;
	return rc;
}

int tg_req_call(struct tg_req *r, const char *token, const char *method,
		const char *body, size_t len, long timeout_ms, tg_done_cb cb,
		void *arg)
{
	if (r->busy)
		return -EBUSY;
	if (buf_append(tg_req_body(r), body, len))
		return -ENOMEM;
	return tg_req_send(r, token, method, timeout_ms, cb, arg);
}
