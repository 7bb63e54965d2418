/* store: everything botfactory keeps in SQLite: bots, conversations
 * (bot, chat, user -> engine state), the outbox of pending Bot API calls and
 * the update offsets. The interface speaks of those things, not of SQL, so
 * that another backend can replace it. A store is used by ONE thread at a
 * time (the daemon's database thread, see dbq.h); it is not thread-safe. */
#ifndef BOTFACTORY_STORE_H
#define BOTFACTORY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "botfactory/convo.h"

struct store;

/* The schema version this code writes (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 3

/* Opens (creating with mode 0600 when missing) and migrates the database at
 * path: WAL mode, synchronous=FULL, foreign keys on. The store is the
 * database's only writer: it holds an exclusive flock on the file until
 * store_close (readers such as the sqlite3 shell are not affected). Returns
 * 0 and a new store in *out (close with store_close), or a negative errno
 * (-EACCES, -EIO...) with a one-line reason in err[errlen]: -EBUSY when
 * another store (another process) has the database open. A database
 * written by a newer botfactory (higher user_version) is refused with
 * -EPROTO. */
int store_open(const char *path, struct store **out, char *err, size_t errlen);
void store_close(struct store *st);
/* From now on only the calling thread may run statements on st (checked
 * by an assertion in builds without NDEBUG): the database thread calls it
 * when it starts, so that the loop can never block on SQLite by mistake,
 * and dbq_stop when it has joined that thread. */
void store_bind_thread(struct store *st);

/* Transactions. begin/commit/rollback return 0 or -EIO. Savepoints nest
 * inside a transaction so that one failing job does not undo the others. */
int store_begin(struct store *st);
int store_commit(struct store *st);
int store_rollback(struct store *st);
/* True while a transaction is open (SQLite may roll one back by itself
 * after a full disk, an I/O error or an interrupt). */
bool store_in_txn(struct store *st);
int store_savepoint(struct store *st);
int store_release(struct store *st);
int store_rollback_to(struct store *st);

/* The conversation state of (bot, chat, user). Returns 0 with *c filled
 * (idle when none is stored), -EINVAL when the stored JSON is unreadable
 * (then *c is idle: a corrupt state must not block the user), or -EIO. */
int store_convo_get(struct store *st, const char *bot, int64_t chat,
		    int64_t user, struct convo *c);
/* Stores the state (deleting the row when it is idle with no variables).
 * Returns 0, -ENOMEM or -EIO. */
int store_convo_put(struct store *st, const char *bot, int64_t chat,
		    int64_t user, const struct convo *c);
/* Writes a state already serialised by convo_to_json (json NULL: the
 * conversation is idle and empty, its row is deleted), with the deadline to
 * index (0: none). Returns 0 or -EIO. */
int store_convo_write(struct store *st, const char *bot, int64_t chat,
		      int64_t user, const char *json, int64_t deadline);
/* The earliest deadline among the bot's conversations, or 0. -EIO < 0. */
int64_t store_next_deadline(struct store *st, const char *bot);
/* Calls fn for each (chat, user) of the bot whose deadline is <= now,
 * earliest first, at most `limit`. Returns the count or -EIO. */
int store_due(struct store *st, const char *bot, int64_t now, int limit,
	      void (*fn)(void *arg, int64_t chat, int64_t user), void *arg);
/* Moves the bot's conversations and pending outbox calls from chat `from`
 * to chat `to` (a group that became a supergroup). Returns 0, -ENOMEM or
 * -EIO. */
int store_migrate_chat(struct store *st, const char *bot, int64_t from,
		       int64_t to);
/* Deletes every conversation and outbox row of the bot. 0 or -EIO. */
int store_purge(struct store *st, const char *bot);

/* The offset to confirm on the next getUpdates of the bot when polled with
 * the token whose fingerprint is token_fp (0 when unknown: start from what
 * Telegram has). Returns 0 or -EIO. */
int store_offset_get(struct store *st, const char *bot, uint64_t token_fp,
		     int64_t *offset);
int store_offset_set(struct store *st, const char *bot, uint64_t token_fp,
		     int64_t offset);

/* The outbox: pending Bot API calls, kept in rows of one or more calls.
 * A call's id orders it (within a run of the store, a bot's ids only grow,
 * also past calls a rollback took back); a row is known by its
 * first call's id, and goes when every call in it is done. */

/* A call to append. */
struct outbox_call {
	int64_t id; /* out: set by store_outbox_add */
	int64_t chat_id;
	int priority; /* 1: answerCallbackQuery, sent ahead of the chat queue */
	const char *method;
	char *body;   /* JSON (an object), owned by the caller */
};

/* Appends calls[0..n) (n > 0) as ONE row and sets their ids, consecutive,
 * in order; *row is the row's id (calls[0].id). Returns 0, -ENOMEM or
 * -EIO. */
int store_outbox_add(struct store *st, const char *bot, struct outbox_call *calls,
		     size_t n, int64_t *row);

/* Settles rows whose calls are done (accepted, or dropped for good).
 * recs[0..n) is a sequence of records {row, k, id_1 .. id_k}: k = 0 deletes
 * the row (all its calls are done); k > 0 removes those calls from it (the
 * row goes when none is left). A row that is gone already is skipped.
 * Returns 0, -ENOMEM or -EIO; -EINVAL for a malformed sequence. */
int store_outbox_settle(struct store *st, const int64_t *recs, size_t n);

/* A pending call as loaded. */
struct outbox_row {
	int64_t id;
	int64_t row;   /* the id of the row it is kept in */
	int64_t chat_id;
	int priority;
	char *method;  /* owned */
	char *body;    /* JSON, owned */
};

/* Loads the bot's pending calls in id order (the order they must be sent
 * in). Returns the count with a malloc'ed array in *rows (free with
 * store_outbox_free), or -ENOMEM / -EIO. A call the store cannot read (a
 * row edited by hand) is logged and left out: it goes with its row. */
int store_outbox_load(struct store *st, const char *bot, struct outbox_row **rows);
void store_outbox_free(struct outbox_row *rows, size_t n);

/* Bot bookkeeping: what the daemon last published with setMyCommands
 * (a JSON string, or NULL when never). get returns 0 with *json malloc'ed
 * (or NULL), -ENOMEM or -EIO. */
int store_bot_commands_get(struct store *st, const char *bot, char **json);
int store_bot_commands_set(struct store *st, const char *bot, const char *json);
/* Records where a bot's spec came from and how its last load went: source
 * file, content hash (hex), load time (unix ms; kept from before when the
 * load failed), last error or NULL. Returns 0 or -EIO. */
int store_bot_record(struct store *st, const char *bot, const char *source,
		     const char *hash, int64_t loaded_at, const char *error);

#endif
