/* dbq: jobs run on the loop in group transactions committed without a
 * sync; one helper thread fdatasyncs the write-ahead log and checkpoints
 * (see dbq.h). The loop's lists (todo -> committed -> syncing -> done) are
 * the loop's alone; the requests to the sync thread and its results are
 * guarded by one mutex, the results announced by a uv_async. */
#include "botfactory/dbq.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "botfactory/log.h"

/* Checkpoint once the log holds this many frames (SQLite's default for
 * its automatic checkpoint): about 4 MiB with 4 KiB pages. */
#define CKPT_FRAMES 1000

struct joblist {
	struct dbq_job *head, **tail;
};

struct dbq {
	uv_loop_t *loop;
	struct store *st;
	struct store_ckpt *ckpt;
	int wal_fd;
	uv_idle_t idle;   /* runs the queued jobs once the loop's callbacks are done */
	uv_async_t async; /* the sync thread has a result */
	uv_thread_t thread;
	int closing; /* handles still to close */

	/* the loop's */
	struct joblist todo;      /* submitted, not run yet */
	struct joblist committed; /* committed, waiting for a sync to start */
	struct joblist syncing;   /* committed before the sync in flight began */
	bool sync_inflight, ckpt_inflight, stopped;
	unsigned pending;
	struct dbq_stats stats;
	void (*closed)(void *arg);
	void *closed_arg;

	/* under lock: requests to the sync thread and its results */
	uv_mutex_t lock;
	uv_cond_t cond;
	bool want_sync, want_ckpt, stopping;
	bool sync_done, ckpt_done;
	int sync_err; /* errno of the sync that is done, 0 */
	uint64_t sync_ns;
};

static void list_init(struct joblist *l)
{
	l->head = NULL;
	l->tail = &l->head;
}

/* Appends the jobs of `from` to `to` and empties `from`. */
static void list_move(struct joblist *to, struct joblist *from)
{
	if (!from->head)
		return;
	*to->tail = from->head;
	to->tail = from->tail;
	list_init(from);
}

static void run_group(struct dbq *q, struct dbq_job *jobs)
{
	int rc = store_begin(q->st);
	for (struct dbq_job *j = jobs; j; j = j->next) {
		if (rc) {
			j->rc = rc;
			continue;
		}
		j->rc = 0;
		if (store_savepoint(q->st)) {
			j->rc = -EIO;
		} else {
			j->run(j, q->st);
			if (j->rc ? store_rollback_to(q->st) : store_release(q->st))
				j->rc = j->rc ? j->rc : -EIO;
		}
		/* Some errors (a full disk, an I/O error, an interrupt) make
		 * SQLite roll the whole transaction back by itself: the jobs
		 * before this one are gone too, and the next SAVEPOINT would
		 * open a transaction of its own that RELEASE commits, outside
		 * the group. Nothing of the group is kept: all of it fails. */
		if (!store_in_txn(q->st))
			rc = -EIO;
	}
	if (!rc && store_commit(q->st))
		rc = -EIO;
	/* (a failed COMMIT may have ended the transaction already) */
	if (rc && store_in_txn(q->st))
		store_rollback(q->st);
	if (rc) {
		log_error("database: a transaction failed; its %s will be retried",
			  jobs && jobs->next ? "jobs" : "job");
		for (struct dbq_job *j = jobs; j; j = j->next)
			j->rc = rc;
	}
}

/* A failed fdatasync: the kernel may have dropped the pages it could not
 * write and marked them clean, so a later sync that succeeds would not
 * vouch for them. Nothing committed since the last good sync was confirmed
 * to Telegram: after a restart each of those updates is found handled in
 * the database (its transaction survived whole) or is fetched and handled
 * again (it did not). Stopping at once keeps that promise; going on could
 * confirm offsets on the strength of lost writes. */
static void sync_failed(int err)
{
	log_error("database: fdatasync of the write-ahead log failed (%s): stopping now; "
		  "what was handled since the last good sync was not confirmed to Telegram, "
		  "so a restart finds it in the database or fetches it again",
		  strerror(err));
	_exit(EXIT_FAILURE);
}

static void sync_thread(void *arg)
{
	struct dbq *q = arg;
	uv_mutex_lock(&q->lock);
	for (;;) {
		while (!q->want_sync && !q->want_ckpt && !q->stopping)
			uv_cond_wait(&q->cond, &q->lock);
		if (q->want_sync) {
			q->want_sync = false;
			uv_mutex_unlock(&q->lock);
			uint64_t t0 = uv_hrtime();
			int err = fdatasync(q->wal_fd) ? errno : 0;
			uint64_t ns = uv_hrtime() - t0;
			uv_mutex_lock(&q->lock);
			q->sync_err = err;
			q->sync_ns = ns;
			q->sync_done = true;
			uv_async_send(&q->async);
		} else if (q->want_ckpt) {
			q->want_ckpt = false;
			uv_mutex_unlock(&q->lock);
			bool complete;
			store_ckpt_run(q->ckpt, &complete); /* (a failure is logged; the next one retries) */
			uv_mutex_lock(&q->lock);
			q->ckpt_done = true;
			uv_async_send(&q->async);
		} else {
			break; /* stopping, nothing asked */
		}
	}
	uv_mutex_unlock(&q->lock);
}

static void ask(struct dbq *q, bool sync, bool ckpt)
{
	uv_mutex_lock(&q->lock);
	q->want_sync |= sync;
	q->want_ckpt |= ckpt;
	uv_cond_signal(&q->cond);
	uv_mutex_unlock(&q->lock);
}

/* Hands every committed job to a new sync, if none is in flight. */
static void start_sync(struct dbq *q)
{
	if (q->sync_inflight || !q->committed.head)
		return;
	list_move(&q->syncing, &q->committed);
	q->sync_inflight = true;
	ask(q, true, false);
}

static void deliver(struct dbq *q, struct joblist *l)
{
	struct dbq_job *jobs = l->head;
	list_init(l);
	while (jobs) {
		struct dbq_job *j = jobs;
		jobs = j->next;
		j->next = NULL;
		q->pending--;
		j->done(j); /* may free j, may submit */
	}
}

/* Runs every queued job in one transaction and queues them for a sync. */
static void run_todo(struct dbq *q)
{
	struct joblist jobs = q->todo;
	if (!jobs.head)
		return;
	list_init(&q->todo);
	uint64_t t0 = uv_hrtime();
	run_group(q, jobs.head);
	uint64_t ns = uv_hrtime() - t0;
	q->stats.groups++;
	if (ns > q->stats.group_max_ns)
		q->stats.group_max_ns = ns;
	/* failed jobs wait for the sync too: done callbacks keep their order */
	list_move(&q->committed, &jobs);
}

static void on_idle(uv_idle_t *h)
{
	struct dbq *q = h->data;
	uv_idle_stop(h);
	/* while a checkpoint runs nothing is written, so that it can copy the
	 * whole log and the next commit restarts it (a log that is never
	 * wholly copied grows without bound) */
	if (q->ckpt_inflight)
		return;
	run_todo(q);
	start_sync(q);
	if (store_wal_frames(q->st) >= CKPT_FRAMES) {
		q->ckpt_inflight = true;
		ask(q, false, true);
	}
}

/* Takes the sync thread's results: delivers what its sync covered. */
static void collect(struct dbq *q)
{
	uv_mutex_lock(&q->lock);
	bool synced = q->sync_done, ckpted = q->ckpt_done;
	int err = q->sync_err;
	uint64_t ns = q->sync_ns;
	q->sync_done = q->ckpt_done = false;
	uv_mutex_unlock(&q->lock);
	if (ckpted) {
		q->ckpt_inflight = false;
		q->stats.checkpoints++;
	}
	if (synced) {
		if (err)
			sync_failed(err);
		q->stats.syncs++;
		if (ns > q->stats.sync_max_ns)
			q->stats.sync_max_ns = ns;
		q->sync_inflight = false;
		deliver(q, &q->syncing);
	}
}

static void on_async(uv_async_t *h)
{
	struct dbq *q = h->data;
	collect(q);
	if (q->stopped)
		return;
	start_sync(q);
	if (q->todo.head && !q->ckpt_inflight)
		uv_idle_start(&q->idle, on_idle);
}

static void free_q(struct dbq *q)
{
	store_ckpt_close(q->ckpt);
	if (q->wal_fd >= 0)
		close(q->wal_fd);
	uv_cond_destroy(&q->cond);
	uv_mutex_destroy(&q->lock);
	free(q);
}

static void on_closed(uv_handle_t *h)
{
	struct dbq *q = h->data;
	if (--q->closing)
		return;
	void (*closed)(void *) = q->closed;
	void *arg = q->closed_arg;
	free_q(q);
	if (closed)
		closed(arg);
}

int dbq_start(uv_loop_t *loop, struct store *st, struct dbq **out)
{
	struct dbq *q = calloc(1, sizeof(*q));
	int rc;
	if (!q)
		return UV_ENOMEM;
	q->loop = loop;
	q->st = st;
	q->wal_fd = -1;
	list_init(&q->todo);
	list_init(&q->committed);
	list_init(&q->syncing);
	if ((rc = uv_mutex_init(&q->lock))) {
		free(q);
		return rc;
	}
	if ((rc = uv_cond_init(&q->cond))) {
		uv_mutex_destroy(&q->lock);
		free(q);
		return rc;
	}
	if (store_defer_sync(st) || (q->wal_fd = store_wal_open(st)) < 0 ||
	    store_ckpt_open(st, &q->ckpt)) {
		free_q(q);
		return UV_EIO;
	}
	store_bind_thread(st);
	uv_idle_init(loop, &q->idle);
	uv_async_init(loop, &q->async, on_async);
	q->idle.data = q->async.data = q;
	if ((rc = uv_thread_create(&q->thread, sync_thread, q))) {
		q->stopped = true;
		q->closing = 2;
		uv_close((uv_handle_t *)&q->idle, on_closed);
		uv_close((uv_handle_t *)&q->async, on_closed); /* frees q */
		return rc;
	}
	*out = q;
	return 0;
}

void dbq_submit(struct dbq *q, struct dbq_job *job)
{
	job->next = NULL;
	q->pending++;
	*q->todo.tail = job;
	q->todo.tail = &job->next;
	if (!q->stopped && !q->ckpt_inflight)
		uv_idle_start(&q->idle, on_idle);
}

unsigned dbq_pending(const struct dbq *q)
{
	return q->pending;
}

void dbq_stats(const struct dbq *q, struct dbq_stats *out)
{
	*out = q->stats;
}

void dbq_stop(struct dbq *q, void (*closed)(void *arg), void *arg)
{
	q->stopped = true;
	uv_mutex_lock(&q->lock);
	q->stopping = true;
	uv_cond_signal(&q->cond);
	uv_mutex_unlock(&q->lock);
	uv_thread_join(&q->thread); /* it did what was asked first */
	collect(q);
	/* the last transaction and its sync, here: the loop has nothing
	 * else to do */
	run_todo(q);
	list_move(&q->syncing, &q->committed);
	if (q->syncing.head) {
		if (fdatasync(q->wal_fd))
			sync_failed(errno);
		q->stats.syncs++;
	}
	deliver(q, &q->syncing);
	q->closed = closed;
	q->closed_arg = arg;
	q->closing = 2;
	uv_close((uv_handle_t *)&q->idle, on_closed);
	uv_close((uv_handle_t *)&q->async, on_closed);
}
