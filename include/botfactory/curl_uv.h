/* curl_uv: one libcurl multi handle driven by a libuv loop. libcurl tells
 * which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake it
 * (CURLMOPT_TIMERFUNCTION); this module keeps a uv_poll per socket (owned
 * here, not by the requests, since curl shares connections between easy
 * handles) and one uv_timer, and reports finished transfers. No thread, no
 * busy loop; curl_multi_* is never called from inside a curl callback. */
#ifndef BOTFACTORY_CURL_UV_H
#define BOTFACTORY_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

struct curl_uv;

/* Called on the loop when a transfer ends (result CURLE_OK or an error). The
 * easy handle is already removed from the multi handle and may be reused or
 * added again from inside the callback. */
typedef void (*curl_uv_done_cb)(CURL *easy, CURLcode result, void *arg);

/* Creates the multi handle. maxconnects bounds the connection cache and
 * the connections open at once (a transfer beyond waits for one to free
 * up). Returns 0 with *out set, or -ENOMEM. */
int curl_uv_init(uv_loop_t *loop, long maxconnects, struct curl_uv **out);

/* Starts a transfer; done is called exactly once unless curl_uv_cancel is
 * called first. Uses CURLOPT_PRIVATE of the easy handle. Returns 0 or -EIO. */
int curl_uv_add(struct curl_uv *cu, CURL *easy, curl_uv_done_cb done, void *arg);

/* Abandons a transfer in progress (no done callback). Safe to call for an
 * easy handle that is not in a transfer. */
void curl_uv_cancel(struct curl_uv *cu, CURL *easy);

/* Closes the multi handle (cancelling what still runs) and its loop
 * handles; `closed` is called once everything is freed. */
void curl_uv_close(struct curl_uv *cu, void (*closed)(void *arg), void *arg);

#endif
