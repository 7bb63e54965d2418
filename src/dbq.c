/* dbq: one thread owns the store; the loop hands it jobs (see dbq.h).
 * Two queues guarded by one mutex: `todo` filled by the loop, `finished`
 * filled by the thread and drained by the loop on a uv_async wake-up. */
#include "botfactory/dbq.h"

#include <errno.h>
#include <stdlib.h>

#include "botfactory/log.h"

struct dbq {
	uv_loop_t *loop;
	struct store *st;
	uv_thread_t thread;
	uv_mutex_t lock;
	uv_cond_t cond;
	uv_async_t async;
	struct dbq_job *todo, **todo_tail;
	struct dbq_job *finished, **finished_tail;
	unsigned pending;
	int stopping;
	void (*closed)(void *arg);
	void *closed_arg;
};

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

static void thread_main(void *arg)
{
	struct dbq *q = arg;
	store_bind_thread(q->st);
	uv_mutex_lock(&q->lock);
	for (;;) {
		while (!q->todo && !q->stopping)
			uv_cond_wait(&q->cond, &q->lock);
		if (!q->todo && q->stopping)
			break;
		struct dbq_job *jobs = q->todo;
		q->todo = NULL;
		q->todo_tail = &q->todo;
		uv_mutex_unlock(&q->lock);

		run_group(q, jobs);

		uv_mutex_lock(&q->lock);
		*q->finished_tail = jobs;
		while (*q->finished_tail)
			q->finished_tail = &(*q->finished_tail)->next;
		uv_async_send(&q->async);
	}
	uv_mutex_unlock(&q->lock);
}

static void deliver(struct dbq *q)
{
	uv_mutex_lock(&q->lock);
	struct dbq_job *jobs = q->finished;
	q->finished = NULL;
	q->finished_tail = &q->finished;
	uv_mutex_unlock(&q->lock);
	while (jobs) {
		struct dbq_job *j = jobs;
		jobs = j->next;
		j->next = NULL;
		q->pending--;
		j->done(j); /* may free j */
	}
}

static void on_async(uv_async_t *h)
{
	deliver(h->data);
}

static void on_closed(uv_handle_t *h)
{
	struct dbq *q = h->data;
	void (*closed)(void *) = q->closed;
	void *arg = q->closed_arg;
	uv_cond_destroy(&q->cond);
	uv_mutex_destroy(&q->lock);
	free(q);
	if (closed)
		closed(arg);
}

int dbq_start(uv_loop_t *loop, struct store *st, struct dbq **out)
{
	struct dbq *q = calloc(1, sizeof(*q));
	int rc;
	if (!q)
		return -ENOMEM;
	q->loop = loop;
	q->st = st;
	q->todo_tail = &q->todo;
	q->finished_tail = &q->finished;
	if ((rc = uv_mutex_init(&q->lock)))
		goto fail_mutex;
	if ((rc = uv_cond_init(&q->cond)))
		goto fail_cond;
	if ((rc = uv_async_init(loop, &q->async, on_async)))
		goto fail_async;
	q->async.data = q;
	if ((rc = uv_thread_create(&q->thread, thread_main, q))) {
		/* the async handle is open: free q in its close callback */
		uv_close((uv_handle_t *)&q->async, on_closed);
		return rc;
	}
	*out = q;
	return 0;
fail_async:
	uv_cond_destroy(&q->cond);
fail_cond:
	uv_mutex_destroy(&q->lock);
fail_mutex:
	free(q);
	return rc;
}

void dbq_submit(struct dbq *q, struct dbq_job *job)
{
	job->next = NULL;
	q->pending++;
	uv_mutex_lock(&q->lock);
	*q->todo_tail = job;
	q->todo_tail = &job->next;
	uv_cond_signal(&q->cond);
	uv_mutex_unlock(&q->lock);
}

unsigned dbq_pending(const struct dbq *q)
{
	return q->pending;
}

void dbq_stop(struct dbq *q, void (*closed)(void *arg), void *arg)
{
	uv_mutex_lock(&q->lock);
	q->stopping = 1;
	uv_cond_signal(&q->cond);
	uv_mutex_unlock(&q->lock);
	uv_thread_join(&q->thread);
	store_bind_thread(q->st); /* the store is the caller's again */
	deliver(q);
	q->closed = closed;
	q->closed_arg = arg;
	uv_close((uv_handle_t *)&q->async, on_closed);
}
