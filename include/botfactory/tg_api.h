/* tg_api: Bot API calls over curl_uv, with replies turned into typed
 * results (ok / retry after N s / unauthorized / the two kinds of conflict /
 * bad request / forbidden / transient), so that callers decide on facts, not
 * on strings. A request object is reused for many calls (its easy handle
 * keeps the connection warm). URLs carry the token: they are never logged. */
#ifndef BOTFACTORY_TG_API_H
#define BOTFACTORY_TG_API_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "botfactory/buf.h"
#include "botfactory/curl_uv.h"

/* Requests are spread over several curl multi handles: libcurl 7.88 looks
 * through every connection to the host when a request starts, so one multi
 * holding 10,000 long polls makes each start slow (doc/benchmarks.md). */
#define TG_API_MULTIS 16

struct tg_api {
	struct curl_uv *cus[TG_API_MULTIS];
	unsigned ncu, next;
	char *base;    /* e.g. "https://api.telegram.org", no trailing '/' */
	char *ca_file; /* or NULL: the system's CAs */
	char *proxy;   /* read once from the environment; "" = none */
	char *noproxy; /* no_proxy, read once; "" = none */
	struct curl_slist *headers;
	long keep_idle, keep_intvl; /* TCP keepalive, seconds (3 probes) */
	CURLSH *share; /* one DNS cache for every request, whatever its multi */
};

/* Sets up the shared settings over n (1..TG_API_MULTIS) multi handles
 * (borrowed; each request object sticks to one, chosen in turn). Reads the
 * proxy environment once here (https_proxy or http_proxy by the base's
 * scheme, then all_proxy; no_proxy), so that libcurl does not look it up on
 * every request. TCP keepalive is tuned from the poll timeout: a dead
 * connection under a held poll is noticed before the poll's own deadline
 * (idle min(10, T/3) s, then 3 probes min(5, T/6) s apart, at least 1 s
 * each). Returns 0 or -ENOMEM. */
int tg_api_init(struct tg_api *api, struct curl_uv *const *cus, unsigned n,
		const char *base, const char *ca_file, int poll_timeout_s);
/* Frees what tg_api_init made; every request must be freed first. */
void tg_api_free(struct tg_api *api);
/* True when a connection to the API needs a name lookup (the base's host
 * is a name, not an address literal, or a proxy is used): then the daemon
 * makes one call first, so that thousands of bots starting together find
 * the address in the shared DNS cache instead of each starting a lookup
 * thread of its own. */
bool tg_api_needs_lookup(const struct tg_api *api);

enum tg_status {
	TG_OK,
	TG_RETRY_AFTER,      /* 429: retry_after seconds */
	TG_UNAUTHORIZED,     /* 401: the token is not valid */
	TG_CONFLICT_WEBHOOK, /* 409: a webhook is set */
	TG_CONFLICT_POLLER,  /* 409: another getUpdates took over */
	TG_NOT_FOUND,        /* 404 */
	TG_BAD_REQUEST,      /* 400 and other permanent 4xx */
	TG_FORBIDDEN,        /* 403: blocked, kicked... */
	TG_TRANSIENT,        /* 5xx, timeout, connection error, garbage */
};

struct tg_result {
	enum tg_status status;
	cJSON *root;             /* the parsed reply, or NULL; freed after the
				    callback unless it sets root = NULL (then
				    it owns the tree) */
	long http;               /* HTTP status, 0 when none came */
	const cJSON *result;     /* TG_OK: the "result" member */
	const char *description; /* Telegram's or curl's words (never a URL) */
	int retry_after;         /* TG_RETRY_AFTER */
	int64_t migrate_to;      /* TG_BAD_REQUEST: migrate_to_chat_id, or 0 */
};

/* A short name of a status for logs and the admin API. Static string. */
const char *tg_status_name(enum tg_status s);

struct tg_req;
typedef void (*tg_done_cb)(struct tg_req *r, struct tg_result *res, void *arg);

struct tg_req {
	struct tg_api *api;
	struct curl_uv *cu; /* the multi handle this request uses */
	CURL *easy;
	struct buf url, body, resp;
	char errbuf[CURL_ERROR_SIZE];
	tg_done_cb cb;
	void *arg;
	bool busy;
};

/* Prepares a reusable request. Returns 0 or -ENOMEM. */
int tg_req_init(struct tg_req *r, struct tg_api *api);
/* Cancels a call in progress (no callback) and frees the request. */
void tg_req_free(struct tg_req *r);

/* Calls method with a JSON body (copied), giving up after timeout_ms. cb
 * runs once on the loop (the result and what it points to live until cb
 * returns). Returns 0, -EBUSY when a call is in progress, or -ENOMEM/-EIO. */
int tg_req_call(struct tg_req *r, const char *token, const char *method,
		const char *body, size_t len, long timeout_ms, tg_done_cb cb,
		void *arg);
/* The request's body, emptied, for the caller to write the next call's
 * JSON into (owned by the request; not while a call is in progress). */
struct buf *tg_req_body(struct tg_req *r);
/* Like tg_req_call with the body written into tg_req_body(r). */
int tg_req_send(struct tg_req *r, const char *token, const char *method,
		long timeout_ms, tg_done_cb cb, void *arg);
/* Abandons the call in progress, if any (no callback). */
void tg_req_cancel(struct tg_req *r);
/* Makes every call of r open a new connection and close it after (no
 * pooled connection, which may have died unseen). */
void tg_req_fresh(struct tg_req *r);

#endif
