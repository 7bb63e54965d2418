/* fakebot: a fake Telegram Bot API server for botfactory's integration tests
 * and benchmarks. This file is the program: command line, listening socket,
 * port file, signals and a clean shutdown (every handle closed, the loop closed).
 * The Bot API lives in fb_botapi.c, the control API in fb_control.c, bot state in
 * fb_bots.c, HTTP and TLS in fb_http.c; tests/fakebot/README.md is the manual. */
#include "fakebot.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/resource.h>

static void usage(FILE *f)
{
	fputs("usage: fakebot [--listen HOST:PORT] [--port-file PATH]\n"
	      "               [--tls-cert PEM --tls-key PEM] [--max-sent N]\n"
	      "               [--poll-throttle] [--verbose] [--quiet]\n"
	      "A fake Telegram Bot API server (see tests/fakebot/README.md).\n"
	      "  --listen HOST:PORT  address to listen on (default 127.0.0.1:0,\n"
	      "                      port 0: any free port; IPv6 as [::1]:0)\n"
	      "  --port-file PATH    write the bound port there (atomically)\n"
	      "  --tls-cert/--tls-key  serve HTTPS with this certificate chain and key\n"
	      "  --max-sent N        recorded calls kept per bot (default 100000)\n"
	      "  --poll-throttle     imitate Telegram's throttling of repeated polls\n"
	      "  --verbose           log every request (bot ids, never tokens)\n"
	      "  --quiet             print nothing but the listening line and errors\n",
	      f);
}

static int write_port_file(const char *path, int port)
{
	char tmp[4096];
	int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof tmp)
		return -ENAMETOOLONG;
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	int werr = fprintf(f, "%d\n", port) < 0;
	if (fclose(f) || werr) {
		int e = errno ? errno : EIO;
		unlink(tmp);
		return -e;
	}
	if (rename(tmp, path)) {
		int e = errno;
		unlink(tmp);
		return -e;
	}
	return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct server *s = h->data;
	if (s->stopping)
		return;
	s->stopping = true;
	if (!s->quiet)
		fprintf(stderr, "fakebot: signal %d, stopping (%zu bots, %zu connections)\n",
			signum, s->bots.n, s->nconns);
	bots_delete_all(s); /* answers held polls and waits */
	http_close_all(s);
	uv_close((uv_handle_t *)&s->sig_term, NULL);
	uv_close((uv_handle_t *)&s->sig_int, NULL);
}

/* "127.0.0.1:0", "[::1]:8081" -> host and port. */
static int parse_listen(const char *arg, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(arg, ':');
	if (!colon)
		return -1;
	const char *h = arg;
	size_t hl = (size_t)(colon - arg);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hostlen)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || p < 0 || p > 65535)
		return -1;
	*port = (int)p;
	return 0;
}

int main(int argc, char **argv)
{
	const char *listen_arg = "127.0.0.1:0", *port_file = NULL;
	const char *cert = NULL, *key = NULL;
	struct server *s = calloc(1, sizeof *s);
	uv_loop_t loop;
	int rc;

	if (!s) {
		fputs("fakebot: out of memory\n", stderr);
		return 1;
	}
	s->max_sent = FB_DEFAULT_MAX_SENT;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has_val = i + 1 < argc;
		if (!strcmp(a, "--listen") && has_val) {
			listen_arg = argv[++i];
		} else if (!strcmp(a, "--port-file") && has_val) {
			port_file = argv[++i];
		} else if (!strcmp(a, "--tls-cert") && has_val) {
			cert = argv[++i];
		} else if (!strcmp(a, "--tls-key") && has_val) {
			key = argv[++i];
		} else if (!strcmp(a, "--max-sent") && has_val) {
			char *end;
			long long v = strtoll(argv[++i], &end, 10);
			if (*end || v < 1) {
				fputs("fakebot: --max-sent needs a positive number\n", stderr);
				free(s);
				return 2;
			}
			s->max_sent = (size_t)v;
		} else if (!strcmp(a, "--poll-throttle")) {
			s->poll_throttle = true;
		} else if (!strcmp(a, "--verbose")) {
			s->verbose = true;
		} else if (!strcmp(a, "--quiet")) {
			s->quiet = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			free(s);
			return 0;
		} else {
			fprintf(stderr, "fakebot: unknown or incomplete option %s\n", a);
			usage(stderr);
			free(s);
			return 2;
		}
	}
	if (!cert != !key) {
		fputs("fakebot: --tls-cert and --tls-key go together\n", stderr);
		free(s);
		return 2;
	}
	char host[256];
	int port;
	if (parse_listen(listen_arg, host, sizeof host, &port)) {
		fprintf(stderr, "fakebot: bad --listen %s (want HOST:PORT)\n", listen_arg);
		free(s);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	/* thousands of held polls need thousands of descriptors */
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	fb_now_ms(); /* time starts now */
	if ((rc = uv_loop_init(&loop))) {
		fprintf(stderr, "fakebot: uv_loop_init: %s\n", uv_strerror(rc));
		free(s);
		return 1;
	}
	s->loop = &loop;
	if (cert && tls_setup(s, cert, key)) {
		s->exit_code = 1;
		goto out;
	}
	int bound = 0;
	if ((rc = http_listen(s, host, port, &bound))) {
		fprintf(stderr, "fakebot: listen on %s: %s\n", listen_arg, uv_strerror(rc));
		s->exit_code = 1;
		http_close_all(s);
		uv_run(&loop, UV_RUN_DEFAULT);
		goto out;
	}
	uv_signal_init(&loop, &s->sig_term);
	uv_signal_init(&loop, &s->sig_int);
	s->sig_term.data = s->sig_int.data = s;
	uv_signal_start(&s->sig_term, on_signal, SIGTERM);
	uv_signal_start(&s->sig_int, on_signal, SIGINT);
	if (port_file && (rc = write_port_file(port_file, bound))) {
		fprintf(stderr, "fakebot: writing %s: %s\n", port_file, strerror(-rc));
		s->exit_code = 1;
		on_signal(&s->sig_term, 0);
		uv_run(&loop, UV_RUN_DEFAULT);
		goto out;
	}
	printf("fakebot listening on %s%s%s:%d%s\n", strchr(host, ':') ? "[" : "",
	       host, strchr(host, ':') ? "]" : "", bound, s->tls ? " (TLS)" : "");
	fflush(stdout);

	uv_run(&loop, UV_RUN_DEFAULT);
	if (!s->quiet)
		fprintf(stderr, "fakebot: stopped after %llu requests\n",
			(unsigned long long)s->st.requests);
out:
	bots_delete_all(s);
	fbuf_free(&s->body);
	fbuf_free(&s->res);
	fbuf_free(&s->plain);
	if (s->tls)
		SSL_CTX_free(s->tls);
	if ((rc = uv_loop_close(&loop))) {
		fprintf(stderr, "fakebot: uv_loop_close: %s (a handle was left open)\n",
			uv_strerror(rc));
		s->exit_code = 1;
	}
	rc = s->exit_code;
	free(s);
	return rc;
}
