/* dbq: the database thread. The loop never touches SQLite: it submits jobs,
 * the database thread runs every job queued so far inside ONE transaction
 * (group commit: one fsync for many jobs), each job in a savepoint of its
 * own, and the loop gets each job back, in submission order, after the
 * commit. A job's `run` may do anything with the store (and pure work such
 * as the engine); its `done` runs on the loop thread. */
#ifndef BOTFACTORY_DBQ_H
#define BOTFACTORY_DBQ_H

#include <uv.h>

#include "botfactory/store.h"

struct dbq_job {
	/* Database thread, inside the group transaction. Sets job->rc: 0, or
	 * < 0 to have its savepoint rolled back. */
	void (*run)(struct dbq_job *job, struct store *st);
	/* Loop thread, after the commit. job->rc is -EIO when the commit
	 * failed (then nothing of the job was kept). The job is the caller's:
	 * done may free it. */
	void (*done)(struct dbq_job *job);
	int rc;
	struct dbq_job *next; /* queue link, owned by dbq */
};

struct dbq;

/* Starts the database thread on store st (borrowed: it must outlive the
 * dbq). Returns 0 with *out set, or a negative errno. */
int dbq_start(uv_loop_t *loop, struct store *st, struct dbq **out);

/* Queues a job (owned by the caller until its done callback). */
void dbq_submit(struct dbq *q, struct dbq_job *job);

/* Jobs submitted and not yet done. */
unsigned dbq_pending(const struct dbq *q);

/* Runs what is queued, stops the thread (joining it: called at shutdown
 * only), delivers the last done callbacks, and closes the loop handle;
 * `closed` runs once the dbq is freed. */
void dbq_stop(struct dbq *q, void (*closed)(void *arg), void *arg);

#endif
