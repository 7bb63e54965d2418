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
#define STORE_SCHEMA_VERSION 2

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
/* Moves the bot's conversations and pending outbox rows from chat `from`
 * to chat `to` (a group that became a supergroup). Returns 0 or -EIO. */
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

/* Outbox rows: one pending Bot API call each. */
struct outbox_row {
	int64_t id;
	int64_t chat_id;
	int priority;  /* 1: answerCallbackQuery, sent ahead of the chat queue */
	char *method;  /* owned */
	char *body;    /* JSON, owned */
};

/* Appends a call. Returns 0 with *id set, or -EIO. */
int store_outbox_add(struct store *st, const char *bot, int64_t chat,
		     int priority, const char *method, const char *body,
		     int64_t *id);
/* Deletes the rows ids[0..n) (their calls were accepted, or dropped for
 * good); sorts ids in place. Returns 0 or -EIO. */
int store_outbox_delete(struct store *st, int64_t *ids, size_t n);
/* Loads the bot's pending rows in id order (the order they must be sent in).
 * Returns the count with a malloc'ed array in *rows (free with
 * store_outbox_free), or -ENOMEM / -EIO. */
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
