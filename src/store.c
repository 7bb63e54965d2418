/* store: the SQLite implementation of store.h. All SQL of the project lives
 * here. Statements are prepared once and reused; the schema is migrated
 * step by step with PRAGMA user_version.
 *
 * Most updates come from chats without a stored conversation (a stateless
 * command leaves no row), so the store remembers which (bot, chat, user)
 * keys it has seen without a row and answers store_convo_get for them
 * without SQL. That is exact because this connection is the only writer
 * (the daemon locks the database, see store_open): every write of a key
 * goes through this file and updates the memo, and a rollback, which could
 * bring rows back, forgets the whole memo at once (a generation bump). */
#include "botfactory/store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "botfactory/buf.h"
#include "botfactory/log.h"
#include "botfactory/smap.h"
#include "botfactory/util.h"

enum stmt_id {
	S_CONVO_GET,
	S_CONVO_PUT,
	S_CONVO_DEL,
	S_NEXT_DEADLINE,
	S_DUE,
	S_MIGRATE_CONVO,
	S_PURGE_CONVO,
	S_PURGE_OUTBOX,
	S_OFFSET_GET,
	S_OFFSET_SET,
	S_OUTBOX_ADD,
	S_OUTBOX_DEL,
	S_OUTBOX_GET,
	S_OUTBOX_SET,
	S_OUTBOX_LOAD,
	S_OUTBOX_MAX,
	S_BOT_NO_GET,
	S_BOT_NO_ADD,
	S_BOT_CMDS_GET,
	S_BOT_CMDS_SET,
	S_BOT_RECORD,
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_SAVEPOINT,
	S_RELEASE,
	S_ROLLBACK_TO,
	S_COUNT
};

static const char *const sql[S_COUNT] = {
	[S_CONVO_GET] = "SELECT state FROM conversations WHERE bot=?1 AND chat=?2 AND user=?3",
	[S_CONVO_PUT] = "INSERT INTO conversations(bot, chat, user, state, deadline) "
			"VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(bot, chat, user) "
			"DO UPDATE SET state=excluded.state, deadline=excluded.deadline",
	[S_CONVO_DEL] = "DELETE FROM conversations WHERE bot=?1 AND chat=?2 AND user=?3",
	[S_NEXT_DEADLINE] = "SELECT MIN(deadline) FROM conversations WHERE bot=?1 AND deadline > 0",
	[S_DUE] = "SELECT chat, user FROM conversations WHERE bot=?1 AND deadline > 0 "
		  "AND deadline <= ?2 ORDER BY deadline LIMIT ?3",
	[S_MIGRATE_CONVO] = "UPDATE OR REPLACE conversations SET chat=?3 WHERE bot=?1 AND chat=?2",
	[S_PURGE_CONVO] = "DELETE FROM conversations WHERE bot=?1",
	[S_PURGE_OUTBOX] = "DELETE FROM outbox WHERE id BETWEEN ?1 AND ?2",
	[S_OFFSET_GET] = "SELECT next_offset FROM offsets WHERE bot=?1 AND token_fp=?2",
	[S_OFFSET_SET] = "INSERT INTO offsets(bot, token_fp, next_offset) VALUES(?1, ?2, ?3) "
			 "ON CONFLICT(bot) DO UPDATE SET token_fp=excluded.token_fp, "
			 "next_offset=excluded.next_offset",
	[S_OUTBOX_ADD] = "INSERT INTO outbox(id, last, calls) VALUES(?1, ?2, ?3)",
	[S_OUTBOX_DEL] = "DELETE FROM outbox WHERE id=?1",
	[S_OUTBOX_GET] = "SELECT calls FROM outbox WHERE id=?1",
	[S_OUTBOX_SET] = "UPDATE outbox SET calls=?2 WHERE id=?1",
	[S_OUTBOX_LOAD] = "SELECT id, calls FROM outbox WHERE id BETWEEN ?1 AND ?2 ORDER BY id",
	[S_OUTBOX_MAX] = "SELECT MAX(last) FROM outbox WHERE id BETWEEN ?1 AND ?2",
	[S_BOT_NO_GET] = "SELECT no FROM bots WHERE id=?1",
	[S_BOT_NO_ADD] = "INSERT INTO bots(id) VALUES(?1)",
	[S_BOT_CMDS_GET] = "SELECT commands FROM bots WHERE id=?1",
	[S_BOT_CMDS_SET] = "INSERT INTO bots(id, commands) VALUES(?1, ?2) "
			   "ON CONFLICT(id) DO UPDATE SET commands=excluded.commands",
	[S_BOT_RECORD] = "INSERT INTO bots(id, source, content_hash, loaded_at, last_error) "
			 "VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO UPDATE SET "
			 "source=excluded.source, content_hash=excluded.content_hash, "
			 "loaded_at=CASE WHEN excluded.last_error IS NULL THEN excluded.loaded_at "
			 "ELSE bots.loaded_at END, last_error=excluded.last_error",
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_SAVEPOINT] = "SAVEPOINT job",
	[S_RELEASE] = "RELEASE job",
	[S_ROLLBACK_TO] = "ROLLBACK TO job",
};

/* Migrations: migrations[i] takes the schema from version i to i + 1. */
static const char *const migrations[] = {
	"CREATE TABLE bots ("
	"  id TEXT PRIMARY KEY,"
	"  source TEXT,"
	"  content_hash TEXT,"
	"  loaded_at INTEGER,"
	"  last_error TEXT,"
	"  commands TEXT"
	");"
	"CREATE TABLE conversations ("
	"  bot TEXT NOT NULL,"
	"  chat INTEGER NOT NULL,"
	"  user INTEGER NOT NULL,"
	"  state TEXT NOT NULL,"
	"  deadline INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (bot, chat, user)"
	") WITHOUT ROWID;"
	"CREATE INDEX conversations_deadline ON conversations(bot, deadline) WHERE deadline > 0;"
	"CREATE TABLE outbox ("
	"  id INTEGER PRIMARY KEY,"
	"  bot TEXT NOT NULL,"
	"  chat INTEGER NOT NULL,"
	"  priority INTEGER NOT NULL DEFAULT 0,"
	"  method TEXT NOT NULL,"
	"  body TEXT NOT NULL"
	");"
	"CREATE INDEX outbox_bot ON outbox(bot, id);"
	"CREATE TABLE offsets ("
	"  bot TEXT PRIMARY KEY,"
	"  token_fp INTEGER NOT NULL,"
	"  next_offset INTEGER NOT NULL"
	");",
	/* v2: the outbox without an index. A row's id carries its bot: the
	 * bot's number (bots.no, an explicit INTEGER PRIMARY KEY, which VACUUM
	 * keeps) times 2^40, plus a sequence; a bot's rows are one range of the
	 * table's own key, so adding and deleting a row touches one b-tree. */
	"CREATE TABLE bots2 ("
	"  no INTEGER PRIMARY KEY,"
	"  id TEXT NOT NULL UNIQUE,"
	"  source TEXT,"
	"  content_hash TEXT,"
	"  loaded_at INTEGER,"
	"  last_error TEXT,"
	"  commands TEXT"
	");"
	"INSERT INTO bots2(id, source, content_hash, loaded_at, last_error, commands)"
	"  SELECT id, source, content_hash, loaded_at, last_error, commands FROM bots;"
	"INSERT OR IGNORE INTO bots2(id) SELECT DISTINCT bot FROM outbox;"
	"DROP TABLE bots;"
	"ALTER TABLE bots2 RENAME TO bots;"
	"CREATE TABLE outbox2 ("
	"  id INTEGER PRIMARY KEY,"
	"  chat INTEGER NOT NULL,"
	"  priority INTEGER NOT NULL DEFAULT 0,"
	"  method TEXT NOT NULL,"
	"  body TEXT NOT NULL"
	");"
	"INSERT INTO outbox2(id, chat, priority, method, body)"
	"  SELECT (SELECT no FROM bots WHERE bots.id = o.bot) * 1099511627776 + o.id,"
	"         o.chat, o.priority, o.method, o.body FROM outbox o;"
	"DROP TABLE outbox;"
	"ALTER TABLE outbox2 RENAME TO outbox;"
	/* for people reading the database */
	"CREATE VIEW outbox_by_bot AS SELECT b.id AS bot, o.* FROM outbox o"
	"  JOIN bots b ON b.no = o.id >> 40;",
	/* v3: one row per batch of calls (what one transaction produced), so
	 * that a busy bot writes and deletes one row per batch, not one per
	 * reply. The row's id is its first call's id; `last` the highest call
	 * id it was given (the bot's sequence goes on from MAX(last)); `calls`
	 * a JSON array of the pending calls, each [id - row id, chat,
	 * priority, method, body] (ids as offsets: an id needs 62 bits, more
	 * than a JSON number keeps). */
	"CREATE TABLE outbox3 ("
	"  id INTEGER PRIMARY KEY,"
	"  last INTEGER NOT NULL,"
	"  calls TEXT NOT NULL"
	");"
	"INSERT INTO outbox3(id, last, calls)"
	"  SELECT id, id, json_array(json_array(0, chat, priority, method, json(body)))"
	"  FROM outbox;"
	"DROP VIEW outbox_by_bot;"
	"DROP TABLE outbox;"
	"ALTER TABLE outbox3 RENAME TO outbox;"
	/* for people reading the database: one line per pending call */
	"CREATE VIEW outbox_by_bot AS SELECT b.id AS bot, o.id + c.value ->> 0 AS id,"
	"  c.value ->> 1 AS chat, c.value ->> 2 AS priority, c.value ->> 3 AS method,"
	"  c.value -> 4 AS body"
	"  FROM outbox o JOIN bots b ON b.no = o.id >> 40, json_each(o.calls) c;",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == STORE_SCHEMA_VERSION,
	       "one migration per schema version");

/* Outbox ids: bots.no << OUTBOX_BOT_SHIFT | a sequence within the bot. */
#define OUTBOX_BOT_SHIFT 40

/* The memo of keys without a conversation row: direct-mapped (a new key
 * evicts the slot's old one), 24 bytes a slot, allocated on first use. */
#define ABSENT_SLOTS 16384

struct absent {
	uint32_t gen; /* the memo's generation when stored; 0: empty */
	uint32_t bot; /* the bot's number in `bots` */
	int64_t chat, user;
};

/* What the store keeps per bot id. */
struct bot_info {
	uint32_t memo; /* the bot's number in the memo (1, 2, ...) */
	int64_t no;    /* bots.no, 0 = not looked up (or forgotten) */
	int64_t next;  /* the next outbox id, 0 = not looked up */
	int64_t floor; /* ids below it were given out in this run, also ones a
			  rollback took back: next never goes below it (an
			  old settlement naming a reused id would hit a new
			  call) */
};

struct store {
	sqlite3 *db; /* first: tests/unit/test_store.c reaches it to inject errors */
	sqlite3_stmt *stmt[S_COUNT];
	int lock_fd; /* flock'ed: one daemon per database */
	struct absent *absent;
	uint32_t gen;
	struct smap bots; /* bot id -> struct bot_info */
	uint32_t nbots;
	pthread_t owner; /* with owned: the only thread that may use it */
	bool owned;
};

/* The bot's info, created on first use. NULL when out of memory. */
static struct bot_info *bot_info(struct store *st, const char *bot)
{
	struct bot_info *bi = smap_get(&st->bots, bot);
	if (bi || st->nbots == UINT32_MAX)
		return bi;
	if (!(bi = calloc(1, sizeof(*bi))))
		return NULL;
	bi->memo = st->nbots + 1;
	if (smap_put(&st->bots, bot, bi)) {
		free(bi);
		return NULL;
	}
	st->nbots++;
	return bi;
}

static void forget_rows(const char *key, void *value, void *arg)
{
	(void)key;
	(void)arg;
	struct bot_info *bi = value;
	if (bi->next > bi->floor)
		bi->floor = bi->next;
	bi->no = bi->next = 0;
}

static void free_info(const char *key, void *value, void *arg)
{
	(void)key;
	(void)arg;
	free(value);
}

/* Forgets every remembered absent key and every bot's number and next
 * outbox id (after a rollback: a bots row added by the transaction is gone,
 * and its number could go to another bot). */
static void absent_forget(struct store *st)
{
	smap_each(&st->bots, forget_rows, NULL);
	if (++st->gen == 0) { /* wrapped: old entries could match again */
		if (st->absent)
			memset(st->absent, 0, ABSENT_SLOTS * sizeof(*st->absent));
		st->gen = 1;
	}
}

/* The memo slot of a key, or NULL when the memo is unavailable (no memory
 * for it: then every read goes to SQL). *botno is the bot's number. */
static struct absent *absent_slot(struct store *st, const char *bot, int64_t chat,
				  int64_t user, uint32_t *botno)
{
	struct bot_info *bi = bot_info(st, bot);
	if (!bi)
		return NULL;
	if (!st->absent && !(st->absent = calloc(ABSENT_SLOTS, sizeof(*st->absent))))
		return NULL;
	*botno = bi->memo;
	int64_t k[3] = {(int64_t)bi->memo, chat, user};
	return &st->absent[util_fnv1a(UTIL_FNV_OFFSET, k, sizeof(k)) % ABSENT_SLOTS];
}

static bool absent_has(const struct absent *a, uint32_t botno, int64_t chat, int64_t user,
		       uint32_t gen)
{
	return a->gen == gen && a->bot == botno && a->chat == chat && a->user == user;
}

static int db_err(struct store *st, const char *what)
{
	log_error("database: %s: %s", what, sqlite3_errmsg(st->db));
	/* SQLite may have rolled the transaction back on its own */
	absent_forget(st);
	return -EIO;
}

void store_bind_thread(struct store *st)
{
	st->owner = pthread_self();
	st->owned = true;
}

/* Resets and returns a prepared statement, ready for binding. */
static sqlite3_stmt *prep(struct store *st, enum stmt_id id)
{
	/* every statement starts here: a call from another thread than the
	 * database thread (the loop!) is a bug, caught in every test run */
	assert(!st->owned || pthread_equal(st->owner, pthread_self()));
	sqlite3_stmt *s = st->stmt[id];
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

/* Runs a statement that returns no rows. Returns 0 or -EIO. */
static int exec_stmt(struct store *st, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : db_err(st, what);
}

static int exec_sql(sqlite3 *db, const char *q, char *err, size_t errlen)
{
	char *msg = NULL;
	if (sqlite3_exec(db, q, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
	sqlite3_free(msg);
	return -EIO;
}

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int version = 0;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		snprintf(err, errlen, "cannot read the schema version: %s", sqlite3_errmsg(db));
		sqlite3_finalize(s);
		return -EIO;
	}
	version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	int latest = (int)(sizeof(migrations) / sizeof(migrations[0]));
	if (version > latest) {
		snprintf(err, errlen,
			 "the database has schema version %d, newer than this botfactory (%d): use a newer botfactory or another --db",
			 version, latest);
		return -EPROTO;
	}
	for (int v = version; v < latest; v++) {
		char q[64];
		snprintf(q, sizeof(q), "PRAGMA user_version = %d", v + 1);
		if (exec_sql(db, "BEGIN IMMEDIATE", err, errlen) ||
		    exec_sql(db, migrations[v], err, errlen) ||
		    exec_sql(db, q, err, errlen) || exec_sql(db, "COMMIT", err, errlen)) {
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -EIO;
		}
	}
	return 0;
}

int store_open(const char *path, struct store **out, char *err, size_t errlen)
{
	struct store *st = calloc(1, sizeof(*st));
	int rc = -EIO;
	*out = NULL;
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	st->gen = 1;
	/* create the file 0600 ourselves: SQLite would use the umask */
	st->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->lock_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto fail;
	}
	/* one writer: two daemons on one database would poll the same tokens,
	 * and the memo of absent conversations relies on it. flock locks do
	 * not interact with SQLite's POSIX locks; the descriptor stays open
	 * until after sqlite3_close (closing it earlier would drop SQLite's
	 * POSIX locks of this process). */
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB)) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(err, errlen, "%s: %s", path,
			 rc == -EBUSY ? "another process (another botfactoryd?) is using this database"
				      : strerror(errno));
		goto fail;
	}
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open %s: %s", path,
			 st->db ? sqlite3_errmsg(st->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(st->db, 5000);
	if (exec_sql(st->db,
		     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
		     "PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
		     err, errlen))
		goto fail;
	if ((rc = migrate(st->db, err, errlen)))
		goto fail;
	for (int i = 0; i < S_COUNT; i++) {
		if (sqlite3_prepare_v3(st->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &st->stmt[i], NULL) != SQLITE_OK) {
			snprintf(err, errlen, "cannot prepare a statement: %s",
				 sqlite3_errmsg(st->db));
			rc = -EIO;
			goto fail;
		}
	}
	*out = st;
	return 0;
fail:
	store_close(st);
	return rc;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	smap_each(&st->bots, free_info, NULL);
	smap_free(&st->bots);
	free(st->absent);
	free(st);
}

int store_begin(struct store *st)
{
	return exec_stmt(st, prep(st, S_BEGIN), "begin");
}

int store_commit(struct store *st)
{
	return exec_stmt(st, prep(st, S_COMMIT), "commit");
}

int store_rollback(struct store *st)
{
	absent_forget(st);
	return exec_stmt(st, prep(st, S_ROLLBACK), "rollback");
}

bool store_in_txn(struct store *st)
{
	return !sqlite3_get_autocommit(st->db);
}

int store_savepoint(struct store *st)
{
	return exec_stmt(st, prep(st, S_SAVEPOINT), "savepoint");
}

int store_release(struct store *st)
{
	return exec_stmt(st, prep(st, S_RELEASE), "release savepoint");
}

int store_rollback_to(struct store *st)
{
	absent_forget(st);
	int rc = exec_stmt(st, prep(st, S_ROLLBACK_TO), "rollback to savepoint");
	return rc ? rc : store_release(st);
}

static void bind_key(sqlite3_stmt *s, const char *bot, int64_t chat, int64_t user)
{
	sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, chat);
	sqlite3_bind_int64(s, 3, user);
}

#define OUTBOX_SEQ_MASK (((int64_t)1 << OUTBOX_BOT_SHIFT) - 1)

/* Binds the outbox id range of bot number no to parameters i and i + 1. */
static void bind_range(sqlite3_stmt *s, int i, int64_t no)
{
	sqlite3_bind_int64(s, i, no << OUTBOX_BOT_SHIFT);
	sqlite3_bind_int64(s, i + 1, no << OUTBOX_BOT_SHIFT | OUTBOX_SEQ_MASK);
}

/* The number (bots.no) of the bot whose info is bi, in *no: 0 when it has
 * no row yet, unless create (then the row is added). Returns 0 or -EIO. */
static int bot_no_of(struct store *st, struct bot_info *bi, const char *bot, bool create,
		     int64_t *no)
{
	*no = bi->no;
	if (bi->no)
		return 0;
	sqlite3_stmt *s = prep(st, S_BOT_NO_GET);
	sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_err(st, "read bot");
	if (!v && create) {
		s = prep(st, S_BOT_NO_ADD);
		sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
		if ((rc = exec_stmt(st, s, "add bot")))
			return rc;
		v = sqlite3_last_insert_rowid(st->db);
	}
	if (v >= (int64_t)1 << (62 - OUTBOX_BOT_SHIFT)) {
		log_error("database: bot %s: bot number %lld is too large", bot, (long long)v);
		return -EIO;
	}
	*no = bi->no = v;
	return 0;
}

/* The same by bot id. Returns 0, -ENOMEM or -EIO. */
static int bot_no(struct store *st, const char *bot, bool create, int64_t *no)
{
	struct bot_info *bi = bot_info(st, bot);
	return bi ? bot_no_of(st, bi, bot, create, no) : -ENOMEM;
}

int store_convo_get(struct store *st, const char *bot, int64_t chat,
		    int64_t user, struct convo *c)
{
	uint32_t botno = 0;
	struct absent *a = absent_slot(st, bot, chat, user, &botno);
	*c = (struct convo)CONVO_INIT;
	if (a && absent_has(a, botno, chat, user, st->gen))
		return 0;
	sqlite3_stmt *s = prep(st, S_CONVO_GET);
	bind_key(s, bot, chat, user);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(s);
		if (a)
			*a = (struct absent){st->gen, botno, chat, user};
		return 0;
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return db_err(st, "read conversation");
	}
	const char *json = (const char *)sqlite3_column_text(s, 0);
	int n = sqlite3_column_bytes(s, 0);
	rc = convo_from_json(c, json ? json : "", (size_t)n);
	sqlite3_reset(s);
	if (rc == -EINVAL)
		log_warn("bot %s: unreadable conversation state of chat %lld user %lld: starting afresh",
			 bot, (long long)chat, (long long)user);
	return rc;
}

int store_convo_write(struct store *st, const char *bot, int64_t chat,
		      int64_t user, const char *json, int64_t deadline)
{
	uint32_t botno = 0;
	struct absent *a = absent_slot(st, bot, chat, user, &botno);
	/* (no slot: the memo has nothing of this bot, or nothing at all) */
	if (a && json && absent_has(a, botno, chat, user, st->gen))
		a->gen = 0;
	sqlite3_stmt *s = prep(st, json ? S_CONVO_PUT : S_CONVO_DEL);
	bind_key(s, bot, chat, user);
	if (json) {
		sqlite3_bind_text(s, 4, json, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, deadline);
	}
	int rc = exec_stmt(st, s, json ? "write conversation" : "delete conversation");
	if (!rc && a && !json) /* gone now (a rollback forgets it again) */
		*a = (struct absent){st->gen, botno, chat, user};
	return rc;
}

int store_convo_put(struct store *st, const char *bot, int64_t chat,
		    int64_t user, const struct convo *c)
{
	if (!c->flow && c->nvars == 0 && !c->deadline_ms)
		return store_convo_write(st, bot, chat, user, NULL, 0);
	char *json = convo_to_json(c);
	if (!json)
		return -ENOMEM;
	int rc = store_convo_write(st, bot, chat, user, json, c->flow ? c->deadline_ms : 0);
	free(json);
	return rc;
}

int64_t store_next_deadline(struct store *st, const char *bot)
{
	sqlite3_stmt *s = prep(st, S_NEXT_DEADLINE);
	sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? v : db_err(st, "next deadline");
}

int store_due(struct store *st, const char *bot, int64_t now, int limit,
	      void (*fn)(void *arg, int64_t chat, int64_t user), void *arg)
{
	sqlite3_stmt *s = prep(st, S_DUE);
	sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int(s, 3, limit);
	/* collect first: fn may write to the same table */
	int64_t keys[2 * 256];
	int n = 0, rc;
	if (limit > 256)
		limit = 256;
	while (n < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		keys[2 * n] = sqlite3_column_int64(s, 0);
		keys[2 * n + 1] = sqlite3_column_int64(s, 1);
		n++;
	}
	sqlite3_reset(s);
	if (n < limit && rc != SQLITE_DONE)
		return db_err(st, "due conversations");
	for (int i = 0; i < n; i++)
		fn(arg, keys[2 * i], keys[2 * i + 1]);
	return n;
}

static int outbox_put(struct store *st, int64_t row, const cJSON *calls);

/* A row's calls parsed: a JSON array, or NULL when text is not one (a row
 * edited by hand; or no memory to parse it: cJSON does not tell the two
 * apart). Free with cJSON_Delete. */
static cJSON *calls_parse(const char *text)
{
	cJSON *calls = text ? cJSON_Parse(text) : NULL;
	if (cJSON_IsArray(calls))
		return calls;
	cJSON_Delete(calls);
	return NULL;
}

/* Re-targets the calls of bot number no from chat `from` to `to`: the
 * rows that change are collected first, then written (not while the
 * SELECT walks the table). Returns 0, -ENOMEM or -EIO. */
static int outbox_migrate(struct store *st, int64_t no, int64_t from, int64_t to)
{
	struct changed {
		int64_t row;
		cJSON *calls;
	} *v = NULL;
	size_t n = 0, cap = 0;
	int rc;
	sqlite3_stmt *s = prep(st, S_OUTBOX_LOAD);
	bind_range(s, 1, no);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		cJSON *calls = calls_parse((const char *)sqlite3_column_text(s, 1));
		bool changed = false;
		for (cJSON *e = calls ? calls->child : NULL; e; e = e->next) {
			cJSON *chat = cJSON_GetArrayItem(e, 1);
			if (cJSON_IsNumber(chat) && (int64_t)chat->valuedouble == from) {
				cJSON_SetNumberValue(chat, (double)to);
				changed = true;
			}
		}
		if (!changed) {
			cJSON_Delete(calls);
			continue;
		}
		if (n == cap) {
			size_t c = cap ? cap * 2 : 8;
			struct changed *nv = realloc(v, c * sizeof(*nv));
			if (!nv) {
				cJSON_Delete(calls);
				rc = SQLITE_NOMEM;
				break;
			}
			v = nv;
			cap = c;
		}
		v[n].row = sqlite3_column_int64(s, 0);
		v[n++].calls = calls;
	}
	sqlite3_reset(s);
	rc = rc == SQLITE_NOMEM ? -ENOMEM : rc != SQLITE_DONE ? db_err(st, "migrate outbox") : 0;
	for (size_t i = 0; i < n; i++) {
		if (!rc)
			rc = outbox_put(st, v[i].row, v[i].calls);
		cJSON_Delete(v[i].calls);
	}
	free(v);
	return rc;
}

int store_migrate_chat(struct store *st, const char *bot, int64_t from,
		       int64_t to)
{
	absent_forget(st); /* rows appear under `to` */
	sqlite3_stmt *s = prep(st, S_MIGRATE_CONVO);
	bind_key(s, bot, from, to);
	int rc = exec_stmt(st, s, "migrate conversations");
	if (rc)
		return rc;
	int64_t no;
	if ((rc = bot_no(st, bot, false, &no)) || !no)
		return rc;
	return outbox_migrate(st, no, from, to);
}

int store_purge(struct store *st, const char *bot)
{
	sqlite3_stmt *s = prep(st, S_PURGE_CONVO);
	sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
	int rc = exec_stmt(st, s, "purge conversations");
	if (rc)
		return rc;
	int64_t no;
	if ((rc = bot_no(st, bot, false, &no)) || !no)
		return rc;
	s = prep(st, S_PURGE_OUTBOX);
	bind_range(s, 1, no);
	return exec_stmt(st, s, "purge outbox");
}

int store_offset_get(struct store *st, const char *bot, uint64_t token_fp,
		     int64_t *offset)
{
	sqlite3_stmt *s = prep(st, S_OFFSET_GET);
	sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (int64_t)token_fp);
	int rc = sqlite3_step(s);
	*offset = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(st, "read offset");
}

int store_offset_set(struct store *st, const char *bot, uint64_t token_fp,
		     int64_t offset)
{
	sqlite3_stmt *s = prep(st, S_OFFSET_SET);
	sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (int64_t)token_fp);
	sqlite3_bind_int64(s, 3, offset);
	return exec_stmt(st, s, "write offset");
}

/* The next call id of the bot whose info is bi (number no), looked up
 * once. Returns 0 or -EIO. */
static int outbox_next(struct store *st, struct bot_info *bi, const char *bot, int64_t no,
		       size_t n)
{
	if (!bi->next) {
		sqlite3_stmt *m = prep(st, S_OUTBOX_MAX);
		bind_range(m, 1, no);
		int rc = sqlite3_step(m);
		int64_t max = rc == SQLITE_ROW ? sqlite3_column_int64(m, 0) : 0;
		sqlite3_reset(m);
		if (rc != SQLITE_ROW)
			return db_err(st, "read outbox");
		bi->next = max ? max + 1 : no << OUTBOX_BOT_SHIFT | 1;
		/* (a floor from before a rollback counts while the bot kept
		 * its number) */
		if (bi->floor >> OUTBOX_BOT_SHIFT == no && bi->floor > bi->next)
			bi->next = bi->floor;
	}
	if ((int64_t)n > OUTBOX_SEQ_MASK - (bi->next & OUTBOX_SEQ_MASK)) {
		log_error("database: bot %s: the outbox sequence is exhausted", bot);
		return -EIO;
	}
	return 0;
}

/* Appends one call, [offset from its row's id, chat, priority, method,
 * body], to the JSON array being written in b. Returns 0 or -ENOMEM. */
static int call_json(struct buf *b, int64_t off, const struct outbox_call *c)
{
	return buf_puts(b, off ? ",[" : "[") || buf_int(b, off) || buf_putc(b, ',') ||
			       buf_int(b, c->chat_id) || buf_putc(b, ',') ||
			       buf_int(b, c->priority) || buf_putc(b, ',') ||
			       buf_json_string(b, c->method) || buf_putc(b, ',') ||
			       buf_puts(b, c->body) || buf_putc(b, ']')
		       ? -ENOMEM
		       : 0;
}

int store_outbox_add(struct store *st, const char *bot, struct outbox_call *calls,
		     size_t n, int64_t *row)
{
	struct bot_info *bi = bot_info(st, bot);
	struct buf b = BUF_INIT;
	int64_t no;
	int rc;
	if (!bi)
		return -ENOMEM;
	if ((rc = bot_no_of(st, bi, bot, true, &no)) || (rc = outbox_next(st, bi, bot, no, n)))
		return rc;
	rc = buf_putc(&b, '[');
	for (size_t i = 0; !rc && i < n; i++)
		rc = call_json(&b, (int64_t)i, &calls[i]);
	if (rc || buf_putc(&b, ']')) {
		buf_free(&b);
		return -ENOMEM;
	}
	sqlite3_stmt *s = prep(st, S_OUTBOX_ADD);
	sqlite3_bind_int64(s, 1, bi->next);
	sqlite3_bind_int64(s, 2, bi->next + (int64_t)n - 1);
	sqlite3_bind_text(s, 3, b.data, (int)b.len, SQLITE_STATIC);
	rc = exec_stmt(st, s, "add to outbox");
	buf_free(&b);
	if (rc)
		return rc;
	*row = bi->next;
	for (size_t i = 0; i < n; i++)
		calls[i].id = bi->next++;
	return 0;
}

/* Reads one element of a row's calls (see migration 3) into r, the strings
 * allocated. Returns 0, -EINVAL when it is not a call, or -ENOMEM. */
static int call_read(const cJSON *e, int64_t row, struct outbox_row *r)
{
	const cJSON *f[5];
	for (int i = 0; i < 5; i++)
		f[i] = cJSON_GetArrayItem(e, i);
	if (!cJSON_IsArray(e) || !cJSON_IsNumber(f[0]) || f[0]->valuedouble < 0 ||
	    !cJSON_IsNumber(f[1]) || !cJSON_IsNumber(f[2]) || !cJSON_IsString(f[3]) ||
	    !cJSON_IsObject(f[4]))
		return -EINVAL;
	r->id = row + (int64_t)f[0]->valuedouble;
	r->row = row;
	r->chat_id = (int64_t)f[1]->valuedouble;
	r->priority = (int)f[2]->valuedouble;
	r->method = strdup(f[3]->valuestring);
	r->body = cJSON_PrintUnformatted(f[4]);
	if (!r->method || !r->body) {
		free(r->method);
		free(r->body);
		return -ENOMEM;
	}
	return 0;
}

/* The calls of the row whose id is row, parsed, in *calls: NULL when the
 * row is gone, or cannot be read (logged; a row edited by hand, or no
 * memory to parse it: cJSON does not tell the two apart). Returns 0 or
 * -EIO. */
static int outbox_get(struct store *st, int64_t row, cJSON **calls)
{
	sqlite3_stmt *s = prep(st, S_OUTBOX_GET);
	sqlite3_bind_int64(s, 1, row);
	int rc = sqlite3_step(s);
	*calls = NULL;
	if (rc == SQLITE_ROW && !(*calls = calls_parse((const char *)sqlite3_column_text(s, 0))))
		log_error("database: outbox row %lld could not be read", (long long)row);
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(st, "read outbox");
}

/* Deletes the row. Returns 0 or -EIO. */
static int outbox_del(struct store *st, int64_t row)
{
	sqlite3_stmt *s = prep(st, S_OUTBOX_DEL);
	sqlite3_bind_int64(s, 1, row);
	return exec_stmt(st, s, "delete from outbox");
}

/* Writes calls back as row's calls, or deletes the row when none is left.
 * Returns 0, -ENOMEM or -EIO. */
static int outbox_put(struct store *st, int64_t row, const cJSON *calls)
{
	if (!cJSON_GetArraySize(calls))
		return outbox_del(st, row);
	char *text = cJSON_PrintUnformatted(calls);
	if (!text)
		return -ENOMEM;
	sqlite3_stmt *s = prep(st, S_OUTBOX_SET);
	sqlite3_bind_int64(s, 1, row);
	sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
	int rc = exec_stmt(st, s, "update outbox");
	free(text);
	return rc;
}

/* Removes the calls ids[0..k) from the row. Returns 0, -ENOMEM or -EIO. */
static int outbox_remove(struct store *st, int64_t row, const int64_t *ids, size_t k)
{
	cJSON *calls;
	int rc = outbox_get(st, row, &calls);
	if (rc || !calls)
		return rc;
	for (cJSON *e = calls->child, *next; e; e = next) {
		next = e->next;
		const cJSON *off = cJSON_GetArrayItem(e, 0);
		if (!cJSON_IsNumber(off))
			continue;
		int64_t id = row + (int64_t)off->valuedouble;
		for (size_t i = 0; i < k; i++)
			if (ids[i] == id) {
				cJSON_Delete(cJSON_DetachItemViaPointer(calls, e));
				break;
			}
	}
	rc = outbox_put(st, row, calls);
	cJSON_Delete(calls);
	return rc;
}

int store_outbox_settle(struct store *st, const int64_t *recs, size_t n)
{
	for (size_t i = 0; i < n;) {
		if (n - i < 2 || recs[i + 1] < 0 || (uint64_t)recs[i + 1] > n - i - 2)
			return -EINVAL;
		int64_t row = recs[i];
		size_t k = (size_t)recs[i + 1];
		int rc = k ? outbox_remove(st, row, recs + i + 2, k) : outbox_del(st, row);
		if (rc)
			return rc;
		i += 2 + k;
	}
	return 0;
}

void store_outbox_free(struct outbox_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(rows[i].method);
		free(rows[i].body);
	}
	free(rows);
}

/* Appends the calls of one row to *v (n used, cap allocated). Returns 0 or
 * -ENOMEM. */
static int load_row(int64_t row, const char *text, struct outbox_row **v, size_t *n,
		    size_t *cap)
{
	cJSON *calls = calls_parse(text);
	if (!calls) {
		log_error("database: outbox row %lld could not be read: its calls are not sent",
			  (long long)row);
		return 0;
	}
	const cJSON *e;
	int rc = 0;
	cJSON_ArrayForEach(e, calls)
	{
		if (*n == *cap) {
			size_t c = *cap ? *cap * 2 : 16;
			struct outbox_row *nv = realloc(*v, c * sizeof(*nv));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			*v = nv;
			*cap = c;
		}
		int r = call_read(e, row, &(*v)[*n]);
		if (r == -EINVAL)
			log_error("database: outbox row %lld holds something that is not a call: not sent",
				  (long long)row);
		else if (r) {
			rc = r;
			break;
		} else {
			(*n)++;
		}
	}
	cJSON_Delete(calls);
	return rc;
}

int store_outbox_load(struct store *st, const char *bot, struct outbox_row **rows)
{
	struct outbox_row *v = NULL;
	size_t n = 0, cap = 0;
	int64_t no;
	int rc;
	*rows = NULL;
	if ((rc = bot_no(st, bot, false, &no)) || !no)
		return rc;
	sqlite3_stmt *s = prep(st, S_OUTBOX_LOAD);
	bind_range(s, 1, no);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int r = load_row(sqlite3_column_int64(s, 0),
				 (const char *)sqlite3_column_text(s, 1), &v, &n, &cap);
		if (r) {
			sqlite3_reset(s);
			store_outbox_free(v, n);
			return r;
		}
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		store_outbox_free(v, n);
		return db_err(st, "load outbox");
	}
	*rows = v;
	return (int)n;
}

int store_bot_commands_get(struct store *st, const char *bot, char **json)
{
	sqlite3_stmt *s = prep(st, S_BOT_CMDS_GET);
	sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	*json = NULL;
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
		*json = strdup((const char *)sqlite3_column_text(s, 0));
		if (!*json) {
			sqlite3_reset(s);
			return -ENOMEM;
		}
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_err(st, "read bot");
}

int store_bot_commands_set(struct store *st, const char *bot, const char *json)
{
	sqlite3_stmt *s = prep(st, S_BOT_CMDS_SET);
	sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, json, -1, SQLITE_STATIC);
	return exec_stmt(st, s, "write bot");
}

int store_bot_record(struct store *st, const char *bot, const char *source,
		     const char *hash, int64_t loaded_at, const char *error)
{
	sqlite3_stmt *s = prep(st, S_BOT_RECORD);
	sqlite3_bind_text(s, 1, bot, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, source, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, loaded_at);
	if (error)
		sqlite3_bind_text(s, 5, error, -1, SQLITE_STATIC);
	return exec_stmt(st, s, "record bot");
}
