/* dbq: the daemon's database queue. The loop submits jobs; once the loop's
 * callbacks of the moment are done, every job queued so far runs, on the
 * loop thread, inside ONE transaction (each job in a savepoint of its own),
 * and that transaction is committed without a sync (store_defer_sync). A
 * helper thread, the sync thread, then fdatasyncs the write-ahead log
 * (group commit: one fsync for every transaction committed meanwhile) and
 * runs the checkpoints, on a connection of its own. The loop gets each job
 * back, in submission order, only once a sync that started after its
 * commit has returned: what a done callback sees is durable.
 *
 * So SQL runs on the loop (page-cache writes and reads, no fsync) and the
 * fsync never does. A job's `run` may do anything with the store (and pure
 * work such as the engine). A failed fdatasync ends the process: the
 * kernel may have dropped the pages it could not write, so no later sync
 * could vouch for them (doc/reliability.md). */
#ifndef BOTFACTORY_DBQ_H
#define BOTFACTORY_DBQ_H

#include <stdint.h>
#include <uv.h>

#include "botfactory/store.h"

struct dbq_job {
	/* Loop thread, inside the group transaction. Sets job->rc: 0, or
	 * < 0 to have its savepoint rolled back. */
	void (*run)(struct dbq_job *job, struct store *st);
	/* Loop thread, after the commit and its sync. job->rc is -EIO when the
	 * commit failed (then nothing of the job was kept). The job is the
	 * caller's: done may free it. */
	void (*done)(struct dbq_job *job);
	int rc;
	struct dbq_job *next; /* queue link, owned by dbq */
};

struct dbq;

/* What the queue did so far (for the status report and the benchmarks). */
struct dbq_stats {
	uint64_t groups;       /* transactions run on the loop */
	uint64_t group_max_ns; /* the longest of them, SQL and jobs' work */
	uint64_t syncs;        /* fdatasyncs of the log */
	uint64_t sync_max_ns;  /* the longest of them */
	uint64_t checkpoints;  /* checkpoints run */
};

/* Starts the queue on store st (borrowed: it must outlive the dbq; the
 * queue calls store_defer_sync and binds st to the calling thread, the
 * loop's) and its sync thread. Returns 0 with *out set, or a negative
 * errno (a uv error code). */
int dbq_start(uv_loop_t *loop, struct store *st, struct dbq **out);

/* Queues a job (owned by the caller until its done callback). */
void dbq_submit(struct dbq *q, struct dbq_job *job);

/* Jobs submitted and not yet done. */
unsigned dbq_pending(const struct dbq *q);

/* A copy of the queue's counters. */
void dbq_stats(const struct dbq *q, struct dbq_stats *out);

/* Runs what is queued, stops the sync thread (joining it: called at
 * shutdown only), syncs, delivers the last done callbacks, and closes the
 * loop handles; `closed` runs once the dbq is freed. */
void dbq_stop(struct dbq *q, void (*closed)(void *arg), void *arg);

#endif
