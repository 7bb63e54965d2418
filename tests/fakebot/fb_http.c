/* fakebot HTTP/1.1 server: accepts TCP connections on the loop, optionally
 * wraps them in TLS (OpenSSL over memory BIOs), parses requests with
 * http-parser (pausing after each message so pipelined requests are answered in
 * order), enforces the header and body limits (431, 413), routes each request
 * to the Bot API or the control API, and writes responses with keep-alive.
 * A request may be held (long poll, control wait, fault): the connection keeps
 * reading, to notice the client going away, and stashes any pipelined bytes. */
#include "fakebot.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

enum { HC_NONE, HC_CTYPE, HC_EXPECT };

static const char json_type[] = "application/json";

void conn_log(struct server *s, const char *fmt, ...)
{
	if (!s->verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs("fakebot: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- closing ---- */

static void on_close(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (--c->handles > 0)
		return;
	struct server *s = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	if (c->ssl)
		SSL_free(c->ssl);
	fbuf_free(&c->url);
	fbuf_free(&c->body);
	fbuf_free(&c->pending);
	fbuf_free(&c->out);
	fbuf_free(&c->wout);
	fault_free(c->hold.fault);
	free(c);
}

/* Forgets the hold: unlinks the connection from its bot and stops the timer. */
static struct bot *release_hold(struct conn *c)
{
	struct hold *h = &c->hold;
	struct bot *b = h->bot;
	switch (h->kind) {
	case HOLD_POLL:
		if (b && b->held_poll == c)
			b->held_poll = NULL;
		break;
	case HOLD_SENT:
		if (b)
			holdlist_remove(&b->sent_waiters, c);
		break;
	case HOLD_STATE:
		if (b)
			holdlist_remove(&b->state_waiters, c);
		break;
	default:
		break;
	}
	if (h->kind != HOLD_NONE)
		c->srv->held--;
	fault_free(h->fault);
	h->fault = NULL;
	h->kind = HOLD_NONE;
	h->bot = NULL;
	uv_timer_stop(&c->timer);
	return b;
}

void conn_unhold(struct conn *c)
{
	release_hold(c);
}

void conn_abort(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	bool was_poll = c->hold.kind == HOLD_POLL;
	struct bot *b = release_hold(c);
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_close((uv_handle_t *)&c->tcp, on_close);
	uv_close((uv_handle_t *)&c->timer, on_close);
	if (was_poll && b)
		bot_changed(b); /* held_polls went down */
}

static void on_drain_timeout(uv_timer_t *t)
{
	conn_abort(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;
	if (status < 0)
		conn_abort(c);
}

static void tls_drain(struct conn *c);
static void flush(struct conn *c);
static void on_resume(uv_timer_t *t);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* All answers are written: say goodbye (TLS close_notify, FIN), then wait a
 * little for the peer's FIN so the last response is not cut by a reset. */
static void begin_drain(struct conn *c)
{
	if (c->draining || c->closing)
		return;
	if (c->peer_eof) {
		conn_abort(c);
		return;
	}
	if (c->ssl && !(SSL_get_shutdown(c->ssl) & SSL_SENT_SHUTDOWN)) {
		SSL_shutdown(c->ssl);
		tls_drain(c);
		if (c->out.len) {
			flush(c);
			return;
		}
	}
	c->draining = true;
	c->sreq.data = c;
	if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown)) {
		conn_abort(c);
		return;
	}
	uv_timer_start(&c->timer, on_drain_timeout, 2000, 0);
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	c->writing = false;
	c->wout.len = 0;
	fbuf_shrink(&c->wout, 65536);
	if (status < 0) {
		conn_abort(c);
		return;
	}
	flush(c);
}

static void flush(struct conn *c)
{
	if (c->writing || c->closing)
		return;
	if (!c->out.len) {
		if (c->close_after_write)
			begin_drain(c);
		return;
	}
	struct fbuf t = c->wout;
	c->wout = c->out;
	c->out = t;
	c->out.len = 0;
	c->srv->st.bytes_out += c->wout.len;
	uv_buf_t b = uv_buf_init(c->wout.data, (unsigned)c->wout.len);
	c->wreq.data = c;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write)) {
		conn_abort(c);
		return;
	}
	c->writing = true;
}

/* Moves what OpenSSL produced (records, alerts) to the output buffer. */
static void tls_drain(struct conn *c)
{
	BIO *w = SSL_get_wbio(c->ssl);
	size_t pend;
	while ((pend = BIO_ctrl_pending(w)) > 0) {
		if (pend > INT_MAX)
			pend = INT_MAX;
		if (fbuf_reserve(&c->out, pend)) {
			conn_abort(c);
			return;
		}
		int n = BIO_read(w, c->out.data + c->out.len, (int)pend);
		if (n <= 0)
			break;
		c->out.len += (size_t)n;
	}
}

/* Queues bytes for the peer, through TLS when the connection has it. */
static void emit(struct conn *c, const char *data, size_t len)
{
	if (!c->ssl) {
		fbuf_add(&c->out, data, len);
		if (c->out.oom)
			conn_abort(c);
		return;
	}
	size_t off = 0;
	while (off < len) {
		size_t chunk = len - off > INT_MAX ? INT_MAX : len - off;
		int n = SSL_write(c->ssl, data + off, (int)chunk);
		if (n <= 0) {
			conn_abort(c);
			return;
		}
		off += (size_t)n;
	}
	tls_drain(c);
}

void conn_respond(struct conn *c, int status, const char *ctype,
		  const char *body, size_t len)
{
	if (c->closing)
		return;
	struct server *s = c->srv;
	bool resume = c->hold.kind != HOLD_NONE;
	if (resume)
		release_hold(c);
	c->req_open = false;
	bool keep = c->keep_alive && !c->close_after_write && !s->stopping;
	if (!keep)
		c->close_after_write = true;
	struct fbuf *h = &s->plain;
	fbuf_clear(h);
	const char *reason = http_status_str((enum http_status)status);
	if (!strcmp(reason, "<unknown>"))
		reason = "Unknown";
	fbuf_printf(h,
		    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		    "Connection: %s\r\n\r\n",
		    status, reason, ctype, len, keep ? "keep-alive" : "close");
	if (c->ssl) {
		/* one SSL_write: headers and body in the same records */
		fbuf_add(h, body, len);
		if (h->oom) {
			conn_abort(c);
			return;
		}
		emit(c, h->data, h->len);
	} else {
		if (h->oom) {
			conn_abort(c);
			return;
		}
		emit(c, h->data, h->len);
		emit(c, body, len);
	}
	fbuf_clear(&s->plain);
	fbuf_shrink(&s->plain, 1 << 20);
	if (c->closing)
		return;
	flush(c);
	if (resume && !c->close_after_write && !c->closing)
		uv_timer_start(&c->timer, on_resume, 0, 0);
}

void conn_respond_buf(struct conn *c, int status, const struct fbuf *b)
{
	if (b->oom) {
		static const char oom[] =
			"{\"ok\":false,\"error_code\":500,\"description\":\"fakebot: out of memory\"}";
		conn_respond(c, 500, json_type, oom, sizeof oom - 1);
	} else {
		conn_respond(c, status, json_type, b->data ? b->data : "", b->len);
	}
}

void conn_respond_body(struct conn *c, int status)
{
	struct server *s = c->srv;
	conn_respond_buf(c, status, &s->body);
	fbuf_clear(&s->body);
	fbuf_shrink(&s->body, 1 << 20);
}

static void error_close(struct conn *c, int status)
{
	struct server *s = c->srv;
	s->st.http_errors++;
	c->close_after_write = true;
	fbuf_clear(&s->body);
	const char *reason = http_status_str((enum http_status)status);
	fbuf_printf(&s->body, "{\"ok\":false,\"error_code\":%d,\"description\":\"%s\"}",
		    status, reason);
	conn_respond_body(c, status);
}

/* ---- holding ---- */

static void process(struct conn *c, const char *data, size_t len);

static void on_hold_timeout(uv_timer_t *t);

void conn_hold(struct conn *c, enum hold_kind kind, uint64_t timeout_ms)
{
	c->hold.kind = kind;
	c->srv->held++;
	if (timeout_ms)
		uv_timer_start(&c->timer, on_hold_timeout, timeout_ms, 0);
}

/* A request was answered after a hold: go on with what the client pipelined
 * meanwhile. Runs from a zero timer, never inside another connection's
 * handler. */
static void on_resume(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->closing || c->hold.kind != HOLD_NONE)
		return;
	struct fbuf p = c->pending;
	memset(&c->pending, 0, sizeof c->pending);
	if (p.len)
		process(c, p.data, p.len);
	fbuf_free(&p);
	if (c->read_paused && !c->closing && c->hold.kind == HOLD_NONE &&
	    c->pending.len < FB_MAX_PENDING) {
		c->read_paused = false;
		if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))
			conn_abort(c);
	}
	flush(c);
}

static int build_request(struct conn *c, struct request *r);

static void on_hold_timeout(uv_timer_t *t)
{
	struct conn *c = t->data;
	switch (c->hold.kind) {
	case HOLD_POLL:
		botapi_poll_expired(c);
		break;
	case HOLD_SENT:
		control_answer_sent(c, true);
		break;
	case HOLD_STATE:
		control_answer_state(c, true);
		break;
	case HOLD_DELAY: {
		struct fault *f = c->hold.fault;
		c->hold.fault = NULL;
		release_hold(c);
		struct request r;
		if (build_request(c, &r)) {
			fault_free(f);
			error_close(c, 400);
			break;
		}
		r.replay = true;
		c->req_open = true;
		botapi_delay_expired(c, &r, f);
		if (!c->closing && c->hold.kind == HOLD_NONE && !c->close_after_write)
			uv_timer_start(&c->timer, on_resume, 0, 0);
		break;
	}
	default:
		break;
	}
}

/* ---- parsing ---- */

static struct conn *pconn(http_parser *p)
{
	return p->data;
}

static int limit_header(struct conn *c, size_t n)
{
	c->header_bytes += n;
	if (c->header_bytes > FB_MAX_HEADER) {
		c->req_error = 431;
		return -1;
	}
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct conn *c = pconn(p);
	fbuf_clear(&c->url);
	fbuf_clear(&c->body);
	fbuf_shrink(&c->body, 65536);
	c->hname_len = 0;
	c->hcapture = HC_NONE;
	c->ctype_len = 0;
	c->ctype[0] = '\0';
	c->expect_len = 0;
	c->expect[0] = '\0';
	c->header_bytes = 0;
	c->req_error = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct conn *c = pconn(p);
	if (limit_header(c, n))
		return -1;
	fbuf_add(&c->url, at, n);
	if (c->url.oom) {
		c->req_error = 500;
		return -1;
	}
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct conn *c = pconn(p);
	if (limit_header(c, n))
		return -1;
	if (c->hcapture != HC_NONE || c->hname_len == SIZE_MAX) {
		/* a value was being read: this is a new header */
		c->hname_len = 0;
		c->hcapture = HC_NONE;
	}
	if (c->hname_len + n < sizeof c->hname) {
		memcpy(c->hname + c->hname_len, at, n);
		c->hname_len += n;
	} else {
		c->hname_len = sizeof c->hname; /* too long to be one we want */
	}
	return 0;
}

static void capture(char *dst, size_t cap, size_t *len, const char *at, size_t n)
{
	if (*len + n >= cap)
		n = cap - 1 - *len;
	memcpy(dst + *len, at, n);
	*len += n;
	dst[*len] = '\0';
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	struct conn *c = pconn(p);
	if (limit_header(c, n))
		return -1;
	if (c->hname_len != SIZE_MAX) {
		/* first piece of this value: which header is it? */
		size_t hl = c->hname_len;
		c->hcapture = HC_NONE;
		if (hl == 12 && !strncasecmp(c->hname, "content-type", 12))
			c->hcapture = HC_CTYPE;
		else if (hl == 6 && !strncasecmp(c->hname, "expect", 6))
			c->hcapture = HC_EXPECT;
		else
			c->hcapture = HC_NONE + 3; /* some other header's value */
		c->hname_len = SIZE_MAX;
	}
	if (c->hcapture == HC_CTYPE)
		capture(c->ctype, sizeof c->ctype, &c->ctype_len, at, n);
	else if (c->hcapture == HC_EXPECT)
		capture(c->expect, sizeof c->expect, &c->expect_len, at, n);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct conn *c = pconn(p);
	/* media type only, lower case */
	size_t i = 0, o = 0;
	while (c->ctype[i] == ' ' || c->ctype[i] == '\t')
		i++;
	for (; c->ctype[i] && c->ctype[i] != ';' && c->ctype[i] != ' '; i++) {
		char ch = c->ctype[i];
		c->ctype[o++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
	}
	c->ctype[o] = '\0';
	c->ctype_len = o;

	if (p->content_length != ULLONG_MAX && p->content_length > FB_MAX_BODY) {
		c->req_error = 413;
		return -1;
	}
	if (c->expect_len && !strcasecmp(c->expect, "100-continue") &&
	    p->http_major == 1 && p->http_minor >= 1) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		emit(c, cont, sizeof cont - 1);
		flush(c);
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct conn *c = pconn(p);
	if (c->body.len + n > FB_MAX_BODY) {
		c->req_error = 413;
		return -1;
	}
	fbuf_add(&c->body, at, n);
	if (c->body.oom) {
		c->req_error = 500;
		return -1;
	}
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct conn *c = pconn(p);
	c->keep_alive = http_should_keep_alive(p) != 0;
	/* stop here: the request is dispatched before the next one is parsed */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

static int build_request(struct conn *c, struct request *r)
{
	struct http_parser_url u;
	memset(r, 0, sizeof *r);
	if (!c->url.len)
		return -1;
	http_parser_url_init(&u);
	if (http_parser_parse_url(c->url.data, c->url.len, 0, &u) ||
	    !(u.field_set & (1 << UF_PATH)))
		return -1;
	r->method = (enum http_method)c->parser.method;
	r->path = c->url.data + u.field_data[UF_PATH].off;
	r->path_len = u.field_data[UF_PATH].len;
	if (u.field_set & (1 << UF_QUERY)) {
		r->query = c->url.data + u.field_data[UF_QUERY].off;
		r->query_len = u.field_data[UF_QUERY].len;
	} else {
		r->query = "";
	}
	r->body = c->body.data ? c->body.data : "";
	r->body_len = c->body.len;
	r->ctype = c->ctype;
	return 0;
}

static bool has_prefix(const char *s, size_t n, const char *prefix)
{
	size_t pl = strlen(prefix);
	return n >= pl && !memcmp(s, prefix, pl);
}

static void dispatch(struct conn *c)
{
	struct server *s = c->srv;
	struct request r;
	s->st.requests++;
	c->req_open = true;
	if (build_request(c, &r)) {
		error_close(c, 400);
		return;
	}
	if (has_prefix(r.path, r.path_len, "/bot")) {
		botapi_handle(c, &r);
	} else if (has_prefix(r.path, r.path_len, "/control/") ||
		   (r.path_len == 8 && !memcmp(r.path, "/control", 8))) {
		control_handle(c, &r);
	} else {
		static const char nf[] =
			"{\"ok\":false,\"error_code\":404,\"description\":\"Not Found\"}";
		conn_respond(c, 404, json_type, nf, sizeof nf - 1);
	}
	if (c->req_open && c->hold.kind == HOLD_NONE && !c->closing) {
		/* a handler that neither answered nor held: a bug, say so */
		static const char ie[] =
			"{\"ok\":false,\"error_code\":500,\"description\":\"fakebot: unanswered request\"}";
		conn_respond(c, 500, json_type, ie, sizeof ie - 1);
	}
}

static void stash(struct conn *c, const char *data, size_t len)
{
	fbuf_add(&c->pending, data, len);
	if (c->pending.oom) {
		conn_abort(c);
		return;
	}
	if (c->pending.len >= FB_MAX_PENDING && !c->read_paused) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->read_paused = true;
	}
}

static void process(struct conn *c, const char *data, size_t len)
{
	while (len > 0) {
		if (c->closing || c->draining || c->close_after_write)
			return; /* anything after a final answer is ignored */
		if (c->hold.kind != HOLD_NONE) {
			stash(c, data, len);
			return;
		}
		size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
		enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
		if (err == HPE_PAUSED) {
			http_parser_pause(&c->parser, 0);
			data += n;
			len -= n;
			dispatch(c);
			continue;
		}
		if (err != HPE_OK || c->parser.upgrade || n != len) {
			conn_log(c->srv, "bad request: %s", http_errno_name(err));
			error_close(c, c->req_error ? c->req_error : 400);
			return;
		}
		data += n;
		len -= n;
	}
}

/* Plaintext from the peer (after TLS, when there is TLS). */
static void input(struct conn *c, const char *data, size_t len)
{
	if (c->hold.kind != HOLD_NONE || c->pending.len) {
		/* keep the order: earlier bytes wait for a resume */
		stash(c, data, len);
		return;
	}
	process(c, data, len);
}

static void tls_input(struct conn *c, const char *data, size_t len)
{
	struct server *s = c->srv;
	BIO *rb = SSL_get_rbio(c->ssl);
	if (len > INT_MAX || BIO_write(rb, data, (int)len) != (int)len) {
		conn_abort(c);
		return;
	}
	/* the ciphertext is in the BIO now: the read buffer is free again */
	for (;;) {
		int n = SSL_read(c->ssl, s->rbuf, (int)sizeof s->rbuf);
		if (n > 0) {
			input(c, s->rbuf, (size_t)n);
			if (c->closing)
				return;
			continue;
		}
		int err = SSL_get_error(c->ssl, n);
		if (err == SSL_ERROR_WANT_READ)
			break;
		if (err != SSL_ERROR_ZERO_RETURN)
			conn_log(s, "TLS error: %s",
				 ERR_reason_error_string(ERR_peek_last_error()));
		ERR_clear_error();
		c->close_after_write = true;
		break;
	}
	tls_drain(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	(void)suggested;
	/* one buffer for all: libuv reads one stream at a time and the bytes are
	 * parsed (or copied) before the next read */
	buf->base = c->srv->rbuf;
	buf->len = sizeof c->srv->rbuf;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = st->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		/* EOF or error: a held request's client gave up; otherwise finish
		 * writing what is queued, then close */
		if (c->hold.kind != HOLD_NONE || c->draining ||
		    (!c->writing && !c->out.len)) {
			conn_abort(c);
		} else {
			uv_read_stop(st);
			c->peer_eof = true;
			c->close_after_write = true;
			c->keep_alive = false;
		}
		return;
	}
	c->srv->st.bytes_in += (uint64_t)nread;
	if (c->draining || c->close_after_write)
		return;
	if (c->ssl)
		tls_input(c, buf->base, (size_t)nread);
	else
		input(c, buf->base, (size_t)nread);
	if (!c->closing)
		flush(c);
}

static void on_connection(uv_stream_t *ls, int status)
{
	struct server *s = ls->data;
	if (status < 0) {
		fprintf(stderr, "fakebot: accept: %s\n", uv_strerror(status));
		return;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (!c) {
		fprintf(stderr, "fakebot: out of memory accepting a connection\n");
		return;
	}
	c->srv = s;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles = 2;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	s->st.connections_total++;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	if (uv_accept(ls, (uv_stream_t *)&c->tcp)) {
		conn_abort(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (s->tls) {
		c->ssl = SSL_new(s->tls);
		BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
		if (!c->ssl || !rb || !wb) {
			BIO_free(rb);
			BIO_free(wb);
			conn_abort(c);
			return;
		}
		SSL_set_bio(c->ssl, rb, wb);
		SSL_set_accept_state(c->ssl);
	}
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read))
		conn_abort(c);
}

int http_listen(struct server *s, const char *host, int port, int *bound_port)
{
	struct sockaddr_storage ss;
	int rc;
	if (strchr(host, ':'))
		rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
	else
		rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
	if (rc)
		return rc;
	if ((rc = uv_tcp_init(s->loop, &s->listener)))
		return rc;
	s->listening = true;
	s->listener.data = s;
	if ((rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0)))
		return rc;
	if ((rc = uv_listen((uv_stream_t *)&s->listener, 4096, on_connection)))
		return rc;
	int len = (int)sizeof ss;
	if ((rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len)))
		return rc;
	if (ss.ss_family == AF_INET6)
		*bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else
		*bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

/* ALPN as api.telegram.org answers it: h2 first, then http/1.1. fakebot
 * speaks only HTTP/1.1, so a client that lets ALPN pick h2 (libcurl's
 * default over TLS) fails at once: the tests prove the daemon asks for
 * HTTP/1.1 explicitly. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	static const unsigned char ours[] = "\x02h2\x08http/1.1";
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

int tls_setup(struct server *s, const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		goto fail;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	s->tls = ctx;
	return 0;
fail:
	fprintf(stderr, "fakebot: TLS setup failed: %s\n",
		ERR_reason_error_string(ERR_peek_last_error()));
	SSL_CTX_free(ctx);
	return -1;
}

void http_close_all(struct server *s)
{
	if (s->listening) {
		uv_close((uv_handle_t *)&s->listener, NULL);
		s->listening = false;
	}
	for (struct conn *c = s->conns; c; c = c->next)
		conn_abort(c);
}
