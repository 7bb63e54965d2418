/* curl_uv: the libcurl multi interface on a libuv loop (see curl_uv.h). */
#include "botfactory/curl_uv.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "botfactory/log.h"

/* Per transfer, kept in CURLOPT_PRIVATE and in the list of running ones. */
struct xfer {
	CURL *easy;
	curl_uv_done_cb done;
	void *arg;
	struct xfer *prev, *next;
};

struct curl_uv {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct xfer *xfers; /* running transfers */
	struct sock *socks; /* watched sockets */
	struct sock **by_fd; /* the sock of each open curl socket, by fd */
	unsigned char *ours; /* by fd: opened by on_open_socket (so its close
				is reported to on_close_socket) */
	size_t nfds;
	unsigned handles;   /* open loop handles (timer + polls) */
	int closing;
	void (*closed)(void *arg);
	void *closed_arg;
};

/* One per socket curl asks us to watch. */
/* A socket lives as long as curl keeps it open (CURLOPT_CLOSESOCKETFUNCTION
 * tells when it goes), not just while a transfer uses it: libcurl stops
 * watching a kept-alive socket after every transfer and asks again for the
 * next, and libuv 1.44 turns each restart of a poll into an epoll DEL + ADD.
 * Keeping the poll and changing it only when the events change saves those
 * system calls (about 10 us per request, doc/benchmarks.md). */
struct sock {
	uv_poll_t poll; /* first: the handle's address is the sock's */
	struct curl_uv *cu;
	curl_socket_t fd;
	int events;     /* what the poll watches now */
	int wanted;     /* what curl wants; 0 = idle in curl's cache */
	struct sock *prev, *next;
};

static void sock_closed(uv_handle_t *h);

/* Stops watching a socket and closes its poll handle. */
static void sock_release(struct curl_uv *cu, struct sock *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		cu->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static void handle_gone(struct curl_uv *cu)
{
	if (--cu->handles == 0 && cu->closing) {
		void (*closed)(void *) = cu->closed;
		void *arg = cu->closed_arg;
		free(cu);
		if (closed)
			closed(arg);
	}
}

static void sock_closed(uv_handle_t *h)
{
	struct sock *s = (struct sock *)h;
	struct curl_uv *cu = s->cu;
	free(s);
	handle_gone(cu);
}

static void timer_closed(uv_handle_t *h)
{
	handle_gone(h->data);
}

/* Unlinks and frees the transfer record of easy; returns it detached
 * (caller frees) or NULL when easy is not running. */
static struct xfer *detach(struct curl_uv *cu, CURL *easy)
{
	struct xfer *x = NULL;
	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
	if (!x)
		return NULL;
	curl_multi_remove_handle(cu->multi, easy);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
	if (x->prev)
		x->prev->next = x->next;
	else
		cu->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
	return x;
}

static void check_done(struct curl_uv *cu)
{
	CURLMsg *m;
	int left;
	while (cu->multi && (m = curl_multi_info_read(cu->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURLcode res = m->data.result;
		struct xfer *x = detach(cu, m->easy_handle);
		if (x) {
			curl_uv_done_cb done = x->done;
			void *arg = x->arg;
			CURL *easy = x->easy;
			free(x);
			done(easy, res, arg);
		}
	}
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct sock *s = (struct sock *)p;
	if (!s->wanted) {
		/* an idle kept-alive connection became readable: the server
		 * closed it (or sent junk); curl finds out when it next uses
		 * it. Stop watching, or this would fire again and again. */
		uv_poll_stop(&s->poll);
		s->events = 0;
		return;
	}
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	curl_multi_socket_action(s->cu->multi, s->fd, flags, &running);
	check_done(s->cu);
}

static void on_timer(uv_timer_t *t)
{
	struct curl_uv *cu = t->data;
	int running;
	curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(cu);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching a socket. Only
 * loop handles are touched here (curl_multi_assign is the one multi call
 * curl allows inside this callback). */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
		     void *socketp)
{
	(void)easy;
	struct curl_uv *cu = userp;
	struct sock *s = socketp;
	if (!s && fd >= 0 && (size_t)fd < cu->nfds)
		s = cu->by_fd[fd];
	if (what == CURL_POLL_REMOVE) {
		if (!s)
			return 0;
		if (fd >= 0 && (size_t)fd < cu->nfds && cu->ours[fd]) {
			s->wanted = 0; /* kept until curl closes the socket */
			return 0;
		}
		/* not a connection of ours (the resolver's socket): its close
		 * would not be reported, so its poll goes now */
		if (fd >= 0 && (size_t)fd < cu->nfds)
			cu->by_fd[fd] = NULL;
		sock_release(cu, s);
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		if (uv_poll_init_socket(cu->loop, &s->poll, fd)) {
			free(s);
			return -1;
		}
		s->cu = cu;
		s->fd = fd;
		s->next = cu->socks;
		if (s->next)
			s->next->prev = s;
		cu->socks = s;
		cu->handles++;
		if (fd >= 0 && (size_t)fd < cu->nfds)
			cu->by_fd[fd] = s;
	}
	int events = 0;
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	s->wanted = events;
	if (s->events == events)
		return 0;
	s->events = events;
	return uv_poll_start(&s->poll, events, on_poll) ? -1 : 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: connections are opened here, so that their
 * polls may outlive a transfer (on_close_socket will say when they go). */
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose,
				    struct curl_sockaddr *addr)
{
	struct curl_uv *cu = arg;
	(void)purpose;
	int fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
	if (fd < 0)
		return CURL_SOCKET_BAD;
	if ((size_t)fd < cu->nfds)
		cu->ours[fd] = 1;
	return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the poll goes before its socket. */
static int on_close_socket(void *arg, curl_socket_t fd)
{
	struct curl_uv *cu = arg;
	if (fd >= 0 && (size_t)fd < cu->nfds) {
		struct sock *s = cu->by_fd[fd];
		cu->by_fd[fd] = NULL;
		cu->ours[fd] = 0;
		if (s)
			sock_release(cu, s);
	}
	return close(fd);
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms the uv timer. */
static int on_timeout(CURLM *multi, long ms, void *userp)
{
	(void)multi;
	struct curl_uv *cu = userp;
	if (ms < 0)
		uv_timer_stop(&cu->timer);
	else
		uv_timer_start(&cu->timer, on_timer, (uint64_t)ms, 0);
	return 0;
}

int curl_uv_init(uv_loop_t *loop, long maxconnects, struct curl_uv **out)
{
	struct curl_uv *cu = calloc(1, sizeof(*cu));
	if (!cu)
		return -ENOMEM;
	cu->loop = loop;
	/* sockets are file descriptors below the open-files limit */
	struct rlimit rl;
	cu->nfds = getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY ||
				   rl.rlim_cur > (1u << 20)
			   ? (1u << 20)
			   : (size_t)rl.rlim_cur;
	cu->by_fd = calloc(cu->nfds, sizeof(*cu->by_fd));
	cu->ours = calloc(cu->nfds, 1);
	cu->multi = cu->by_fd && cu->ours ? curl_multi_init() : NULL;
	if (!cu->multi) {
		free(cu->by_fd);
		free(cu->ours);
		free(cu);
		return -ENOMEM;
	}
	uv_timer_init(loop, &cu->timer);
	cu->timer.data = cu;
	cu->handles = 1;
	curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
	curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
	curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
	curl_multi_setopt(cu->multi, CURLMOPT_MAXCONNECTS, maxconnects);
	/* more transfers than that wait in libcurl for a connection to free
	 * up, instead of failing for want of a descriptor */
	curl_multi_setopt(cu->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxconnects);
	/* HTTP/1.1 only: no multiplexing to wait for */
	curl_multi_setopt(cu->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
	*out = cu;
	return 0;
}

int curl_uv_add(struct curl_uv *cu, CURL *easy, curl_uv_done_cb done, void *arg)
{
	struct xfer *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->easy = easy;
	x->done = done;
	x->arg = arg;
	curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, cu);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, cu);
	if (curl_multi_add_handle(cu->multi, easy) != CURLM_OK) {
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		free(x);
		return -EIO;
	}
	x->next = cu->xfers;
	if (x->next)
		x->next->prev = x;
	cu->xfers = x;
	return 0;
}

void curl_uv_cancel(struct curl_uv *cu, CURL *easy)
{
	free(detach(cu, easy));
}

void curl_uv_close(struct curl_uv *cu, void (*closed)(void *arg), void *arg)
{
	/* cancel what still runs: the owners must not hear from us again */
	while (cu->xfers)
		curl_uv_cancel(cu, cu->xfers->easy);
	cu->closing = 1;
	cu->closed = closed;
	cu->closed_arg = arg;
	curl_multi_cleanup(cu->multi); /* may ask to stop watching sockets */
	cu->multi = NULL;
	while (cu->socks) /* those it did not close */
		sock_release(cu, cu->socks);
	free(cu->by_fd);
	free(cu->ours);
	cu->by_fd = NULL;
	cu->ours = NULL;
	cu->nfds = 0;
	uv_timer_stop(&cu->timer);
	uv_close((uv_handle_t *)&cu->timer, timer_closed);
}
