/* Unit tests of the SQLite store (a real database file in a temporary
 * directory) and of the database thread (dbq) on a real libuv loop. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "botfactory/dbq.h"
#include "botfactory/store.h"

struct fixture {
	char dir[64];
	char path[128];
	struct store *st;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/botfactory-store-XXXXXX");
	if (!f || !mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/test.db", f->dir);
	char err[256];
	if (store_open(f->path, &f->st, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[256];
	store_close(f->st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void test_file_mode_and_schema(void **state)
{
	struct fixture *f = *state;
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* one store per database: a second one is refused while it is open */
	char err[256];
	struct store *again = NULL;
	assert_int_equal(store_open(f->path, &again, err, sizeof(err)), -EBUSY);
	assert_null(again);
	assert_non_null(strstr(err, "another process"));
	/* reopening an existing database migrates nothing and works */
	store_close(f->st);
	assert_int_equal(store_open(f->path, &f->st, err, sizeof(err)), 0);
	store_close(f->st);
	f->st = NULL;
	/* a database from a newer botfactory is refused */
	sqlite3 *db;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(f->path, &again, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "newer than this botfactory"));
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	char q[64];
	snprintf(q, sizeof(q), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
	assert_int_equal(sqlite3_exec(db, q, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(f->path, &f->st, err, sizeof(err)), 0);
}

static void test_conversations(void **state)
{
	struct fixture *f = *state;
	struct convo c = CONVO_INIT, got;
	assert_int_equal(store_convo_get(f->st, "bot", 5, 6, &got), 0);
	assert_null(got.flow);
	assert_int_equal(convo_set_str(&c.flow, "order"), 0);
	assert_int_equal(convo_set_str(&c.ask, "save:qty"), 0);
	assert_int_equal(convo_set(&c, "name", "Bob"), 0);
	c.deadline_ms = 2000;
	assert_int_equal(store_convo_put(f->st, "bot", 5, 6, &c), 0);
	assert_int_equal(store_convo_get(f->st, "bot", 5, 6, &got), 0);
	assert_string_equal(got.flow, "order");
	assert_string_equal(convo_get(&got, "name"), "Bob");
	convo_clear(&got);
	/* another bot, chat or user is another conversation */
	assert_int_equal(store_convo_get(f->st, "other", 5, 6, &got), 0);
	assert_null(got.flow);
	assert_int_equal(store_convo_get(f->st, "bot", 5, 7, &got), 0);
	assert_null(got.flow);
	/* deadlines */
	struct convo d = CONVO_INIT;
	assert_int_equal(convo_set_str(&d.flow, "f"), 0);
	assert_int_equal(convo_set_str(&d.ask, "step:0"), 0);
	d.deadline_ms = 1000;
	assert_int_equal(store_convo_put(f->st, "bot", 8, 8, &d), 0);
	assert_int_equal(store_next_deadline(f->st, "bot"), 1000);
	assert_int_equal(store_next_deadline(f->st, "other"), 0);
	/* an idle state without variables leaves no row behind */
	convo_clear(&d);
	assert_int_equal(store_convo_put(f->st, "bot", 8, 8, &d), 0);
	assert_int_equal(store_next_deadline(f->st, "bot"), 2000);
	/* migrate the chat: the conversation follows */
	assert_int_equal(store_migrate_chat(f->st, "bot", 5, -1005), 0);
	assert_int_equal(store_convo_get(f->st, "bot", -1005, 6, &got), 0);
	assert_string_equal(got.flow, "order");
	convo_clear(&got);
	assert_int_equal(store_purge(f->st, "bot"), 0);
	assert_int_equal(store_convo_get(f->st, "bot", -1005, 6, &got), 0);
	assert_null(got.flow);
	convo_clear(&c);
}

/* The store answers reads of keys it saw without a row from memory: each
 * way a row can come back must be seen. */
static void test_absent_memo_follows_every_write(void **state)
{
	struct fixture *f = *state;
	struct convo c = CONVO_INIT, got;
	assert_int_equal(convo_set(&c, "x", "1"), 0);
	/* absent, remembered, then written: the write is read back */
	assert_int_equal(store_convo_get(f->st, "bot", 1, 1, &got), 0);
	assert_null(convo_get(&got, "x"));
	assert_int_equal(store_convo_put(f->st, "bot", 1, 1, &c), 0);
	assert_int_equal(store_convo_get(f->st, "bot", 1, 1, &got), 0);
	assert_string_equal(convo_get(&got, "x"), "1");
	convo_clear(&got);
	/* deleted inside a transaction that is rolled back: the row is back */
	assert_int_equal(store_begin(f->st), 0);
	assert_int_equal(store_convo_write(f->st, "bot", 1, 1, NULL, 0), 0);
	assert_int_equal(store_convo_get(f->st, "bot", 1, 1, &got), 0);
	assert_null(convo_get(&got, "x"));
	assert_int_equal(store_rollback(f->st), 0);
	assert_int_equal(store_convo_get(f->st, "bot", 1, 1, &got), 0);
	assert_string_equal(convo_get(&got, "x"), "1");
	convo_clear(&got);
	/* the same with a savepoint */
	assert_int_equal(store_begin(f->st), 0);
	assert_int_equal(store_savepoint(f->st), 0);
	assert_int_equal(store_convo_write(f->st, "bot", 1, 1, NULL, 0), 0);
	assert_int_equal(store_convo_get(f->st, "bot", 1, 1, &got), 0);
	assert_null(convo_get(&got, "x"));
	assert_int_equal(store_rollback_to(f->st), 0);
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(store_convo_get(f->st, "bot", 1, 1, &got), 0);
	assert_string_equal(convo_get(&got, "x"), "1");
	convo_clear(&got);
	/* a chat migration brings rows to keys seen absent */
	assert_int_equal(store_convo_get(f->st, "bot", -100, 1, &got), 0);
	assert_null(convo_get(&got, "x"));
	assert_int_equal(store_migrate_chat(f->st, "bot", 1, -100), 0);
	assert_int_equal(store_convo_get(f->st, "bot", -100, 1, &got), 0);
	assert_string_equal(convo_get(&got, "x"), "1");
	convo_clear(&got);
	/* many keys (more than the memo holds) stay exact */
	for (int64_t u = 1; u <= 40000; u++)
		assert_int_equal(store_convo_get(f->st, "bot", 7, u, &got), 0);
	for (int64_t u = 1; u <= 40000; u += 997)
		assert_int_equal(store_convo_put(f->st, "bot", 7, u, &c), 0);
	for (int64_t u = 1; u <= 40000; u++) {
		assert_int_equal(store_convo_get(f->st, "bot", 7, u, &got), 0);
		if ((u - 1) % 997 == 0)
			assert_string_equal(convo_get(&got, "x"), "1");
		else
			assert_null(convo_get(&got, "x"));
		convo_clear(&got);
	}
	convo_clear(&c);
}

static void test_corrupt_state_starts_afresh(void **state)
{
	struct fixture *f = *state;
	struct convo c = CONVO_INIT;
	assert_int_equal(convo_set(&c, "x", "1"), 0);
	assert_int_equal(store_convo_put(f->st, "bot", 1, 1, &c), 0);
	convo_clear(&c);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE conversations SET state='{\"v\":9}'", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_convo_get(f->st, "bot", 1, 1, &c), -EINVAL);
	assert_null(c.flow);
	assert_int_equal(c.nvars, 0);
}

static void due_cb(void *arg, int64_t chat, int64_t user)
{
	int64_t *seen = arg;
	seen[seen[0]++ + 1] = chat * 100 + user;
}

static void test_due_in_deadline_order(void **state)
{
	struct fixture *f = *state;
	int64_t deadlines[] = {300, 100, 200, 900};
	for (int i = 0; i < 4; i++) {
		struct convo c = CONVO_INIT;
		assert_int_equal(convo_set_str(&c.flow, "f"), 0);
		assert_int_equal(convo_set_str(&c.ask, "step:0"), 0);
		c.deadline_ms = deadlines[i];
		assert_int_equal(store_convo_put(f->st, "bot", i + 1, 1, &c), 0);
		convo_clear(&c);
	}
	int64_t seen[8] = {0};
	assert_int_equal(store_due(f->st, "bot", 300, 10, due_cb, seen), 3);
	assert_int_equal(seen[0], 3);
	assert_int_equal(seen[1], 201); /* chat 2 (100) */
	assert_int_equal(seen[2], 301); /* chat 3 (200) */
	assert_int_equal(seen[3], 101); /* chat 1 (300) */
}

/* Appends one call as a row of its own; *id is the call's (and the row's)
 * id. Returns store_outbox_add's result. */
static int add1(struct store *st, const char *bot, int64_t chat, int priority,
		const char *method, const char *body, int64_t *id)
{
	struct outbox_call c = {0, chat, priority, method, (char *)body};
	int64_t row;
	int rc = store_outbox_add(st, bot, &c, 1, &row);
	if (!rc)
		assert_int_equal(row, c.id);
	*id = c.id;
	return rc;
}

static void test_outbox_and_offsets(void **state)
{
	struct fixture *f = *state;
	/* one row of three calls: consecutive ids, the row known by the first */
	struct outbox_call c[3] = {
		{0, 5, 0, "sendMessage", (char *)"{\"text\":\"1\"}"},
		{0, 5, 1, "answerCallbackQuery", (char *)"{}"},
		{0, 6, 0, "sendMessage", (char *)"{\"text\":\"2\"}"},
	};
	int64_t row;
	assert_int_equal(store_outbox_add(f->st, "bot", c, 3, &row), 0);
	assert_int_equal(row, c[0].id);
	assert_int_equal(c[1].id, c[0].id + 1);
	assert_int_equal(c[2].id, c[0].id + 2);
	int64_t a = c[0].id, b = c[1].id, cc = c[2].id;
	/* the answer is done: only it leaves the row */
	int64_t settle_b[] = {row, 1, b};
	assert_int_equal(store_outbox_settle(f->st, settle_b, 3), 0);
	assert_int_equal(store_migrate_chat(f->st, "bot", 6, -6), 0);
	struct outbox_row *rows;
	int n = store_outbox_load(f->st, "bot", &rows);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].id, a);
	assert_int_equal(rows[0].row, row);
	assert_int_equal(rows[0].chat_id, 5);
	assert_string_equal(rows[0].method, "sendMessage");
	assert_int_equal(rows[1].id, cc);
	assert_int_equal(rows[1].row, row);
	assert_int_equal(rows[1].chat_id, -6);
	assert_int_equal(rows[1].priority, 0);
	assert_string_equal(rows[1].body, "{\"text\":\"2\"}");
	store_outbox_free(rows, (size_t)n);
	/* the rest are done one by one: the row goes with the last; settling
	 * a row that is gone is no error; a malformed sequence is refused */
	int64_t settle_rest[] = {row, 1, a, row, 1, cc, row, 0};
	assert_int_equal(store_outbox_settle(f->st, settle_rest, 8), 0);
	assert_int_equal(store_outbox_load(f->st, "bot", &rows), 0);
	store_outbox_free(rows, 0);
	int64_t bad[] = {row, 3, a};
	assert_int_equal(store_outbox_settle(f->st, bad, 3), -EINVAL);
	int64_t neg[] = {row, -1};
	assert_int_equal(store_outbox_settle(f->st, neg, 2), -EINVAL);
	assert_int_equal(store_outbox_settle(f->st, bad, 1), -EINVAL);
	assert_int_equal(store_outbox_settle(f->st, NULL, 0), 0);

	int64_t off = -1;
	assert_int_equal(store_offset_get(f->st, "bot", 42, &off), 0);
	assert_int_equal(off, 0);
	assert_int_equal(store_offset_set(f->st, "bot", 42, 1001), 0);
	assert_int_equal(store_offset_get(f->st, "bot", 42, &off), 0);
	assert_int_equal(off, 1001);
	/* another token: the old offset means nothing to it */
	assert_int_equal(store_offset_get(f->st, "bot", 43, &off), 0);
	assert_int_equal(off, 0);

	char *cmds = NULL;
	assert_int_equal(store_bot_commands_get(f->st, "bot", &cmds), 0);
	assert_null(cmds);
	assert_int_equal(store_bot_commands_set(f->st, "bot", "[1]"), 0);
	assert_int_equal(store_bot_commands_get(f->st, "bot", &cmds), 0);
	assert_string_equal(cmds, "[1]");
	free(cmds);
}

/* A database of schema 1 (botfactory 0.1: the outbox with a bot column and
 * an index) is migrated with every pending row kept, in order, per bot. */
static void test_migration_from_schema_1(void **state)
{
	struct fixture *f = *state;
	char err[256], path[160];
	snprintf(path, sizeof(path), "%s/v1.db", f->dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	const char *v1 =
		"CREATE TABLE bots (id TEXT PRIMARY KEY, source TEXT, content_hash TEXT,"
		"  loaded_at INTEGER, last_error TEXT, commands TEXT);"
		"CREATE TABLE conversations (bot TEXT NOT NULL, chat INTEGER NOT NULL,"
		"  user INTEGER NOT NULL, state TEXT NOT NULL, deadline INTEGER NOT NULL DEFAULT 0,"
		"  PRIMARY KEY (bot, chat, user)) WITHOUT ROWID;"
		"CREATE INDEX conversations_deadline ON conversations(bot, deadline) WHERE deadline > 0;"
		"CREATE TABLE outbox (id INTEGER PRIMARY KEY, bot TEXT NOT NULL, chat INTEGER NOT NULL,"
		"  priority INTEGER NOT NULL DEFAULT 0, method TEXT NOT NULL, body TEXT NOT NULL);"
		"CREATE INDEX outbox_bot ON outbox(bot, id);"
		"CREATE TABLE offsets (bot TEXT PRIMARY KEY, token_fp INTEGER NOT NULL,"
		"  next_offset INTEGER NOT NULL);"
		"INSERT INTO bots(id, commands) VALUES('a', '[1]');"
		"INSERT INTO outbox VALUES(7, 'a', 1, 0, 'sendMessage', '{\"text\":\"a1\"}');"
		"INSERT INTO outbox VALUES(8, 'b', 2, 0, 'sendMessage', '{\"text\":\"b1\"}');"
		"INSERT INTO outbox VALUES(9, 'a', 1, 1, 'answerCallbackQuery', '{}');"
		"INSERT INTO outbox VALUES(12, 'a', 3, 0, 'sendMessage', '{\"text\":\"a2\"}');"
		"INSERT INTO offsets VALUES('a', 42, 1001);"
		"PRAGMA user_version = 1;";
	assert_int_equal(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	struct store *st = NULL;
	assert_int_equal(store_open(path, &st, err, sizeof(err)), 0);
	struct outbox_row *rows;
	int n = store_outbox_load(st, "a", &rows);
	assert_int_equal(n, 3);
	assert_string_equal(rows[0].body, "{\"text\":\"a1\"}");
	assert_string_equal(rows[1].method, "answerCallbackQuery");
	assert_int_equal(rows[1].priority, 1);
	assert_string_equal(rows[2].body, "{\"text\":\"a2\"}");
	assert_int_equal(rows[2].chat_id, 3);
	int64_t last_a = rows[2].id, first_a = rows[0].id;
	store_outbox_free(rows, (size_t)n);
	n = store_outbox_load(st, "b", &rows);
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].body, "{\"text\":\"b1\"}");
	store_outbox_free(rows, (size_t)n);
	/* new rows go after the migrated ones (one row per old row) */
	int64_t id;
	assert_int_equal(add1(st, "a", 1, 0, "sendMessage", "{}", &id), 0);
	assert_true(id > last_a);
	int64_t del[] = {first_a, 0};
	assert_int_equal(store_outbox_settle(st, del, 2), 0);
	n = store_outbox_load(st, "a", &rows);
	assert_int_equal(n, 3);
	assert_int_equal(rows[2].id, id);
	store_outbox_free(rows, (size_t)n);
	/* the rest is as it was */
	char *cmds = NULL;
	assert_int_equal(store_bot_commands_get(st, "a", &cmds), 0);
	assert_string_equal(cmds, "[1]");
	free(cmds);
	int64_t off = 0;
	assert_int_equal(store_offset_get(st, "a", 42, &off), 0);
	assert_int_equal(off, 1001);
	store_close(st);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), STORE_SCHEMA_VERSION);
	sqlite3_finalize(s);
	/* the view for people names the bots */
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM outbox_by_bot WHERE bot='a'",
					    -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s, 0), 3);
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static void test_outbox_rows_settle(void **state)
{
	struct fixture *f = *state;
	int64_t id[8];
	for (int i = 0; i < 8; i++)
		assert_int_equal(add1(f->st, i % 2 ? "a" : "b", i, 0, "sendMessage", "{}", &id[i]), 0);
	/* whole rows, unsorted, across two bots: exactly these go */
	int64_t del[] = {id[6], 0, id[0], 0, id[2], 0, id[1], 0, id[7], 0, id[4], 0};
	assert_int_equal(store_outbox_settle(f->st, del, 12), 0);
	struct outbox_row *rows;
	int n = store_outbox_load(f->st, "a", &rows);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].id, id[3]);
	assert_int_equal(rows[1].id, id[5]);
	store_outbox_free(rows, (size_t)n);
	n = store_outbox_load(f->st, "b", &rows);
	assert_int_equal(n, 0);
	store_outbox_free(rows, 0);

	/* a big row (a busy batch) loses scattered calls in two steps, in
	 * any order; the rest load in id order, bodies byte for byte (escapes,
	 * UTF-8 and a control character written back by cJSON as they came) */
	enum { N = 300 };
	static struct outbox_call many[N];
	const char *body = "{\"text\":\"\\\"q\\\" \\\\ \\n\\u0001 \xc3\xa9\",\"n\":[1,-2.5,true,null]}";
	for (int i = 0; i < N; i++)
		many[i] = (struct outbox_call){0, -1001234567890 - i, i % 7 == 0, "sendMessage",
					       (char *)body};
	int64_t row;
	assert_int_equal(store_outbox_add(f->st, "c", many, N, &row), 0);
	int64_t rec[2 + N], rec2[2 + N];
	size_t k = 0, k2 = 0;
	for (int i = N - 1; i >= 0; i--) /* reversed */
		if (i % 3 == 0)
			rec[2 + k++] = many[i].id;
	for (int i = 0; i < N; i++)
		if (i % 5 == 1)
			rec2[2 + k2++] = many[i].id;
	rec[0] = rec2[0] = row;
	rec[1] = (int64_t)k;
	rec2[1] = (int64_t)k2;
	assert_int_equal(store_outbox_settle(f->st, rec, 2 + k), 0);
	assert_int_equal(store_outbox_settle(f->st, rec2, 2 + k2), 0);
	n = store_outbox_load(f->st, "c", &rows);
	int want = 0;
	for (int i = 0; i < N; i++) {
		if (i % 3 == 0 || i % 5 == 1)
			continue;
		assert_true(want < n);
		assert_int_equal(rows[want].id, many[i].id);
		assert_int_equal(rows[want].row, row);
		assert_int_equal(rows[want].chat_id, -1001234567890 - i);
		assert_int_equal(rows[want].priority, i % 7 == 0);
		assert_string_equal(rows[want].body, body);
		want++;
	}
	assert_int_equal(n, want);
	store_outbox_free(rows, (size_t)n);
	/* the sequence goes on after the row's highest id, also when that
	 * call is done and the store is opened again */
	int64_t tail[] = {row, 1, many[N - 1].id};
	assert_int_equal(store_outbox_settle(f->st, tail, 3), 0);
	char err[256];
	store_close(f->st);
	assert_int_equal(store_open(f->path, &f->st, err, sizeof(err)), 0);
	int64_t next;
	assert_int_equal(add1(f->st, "c", 1, 0, "sendMessage", "{}", &next), 0);
	assert_int_equal(next, many[N - 1].id + 1);

	/* ids a rollback took back are not given out again in this run: a
	 * settlement of the rolled-back row still waiting somewhere must not
	 * name a new call */
	int64_t z0, z;
	assert_int_equal(add1(f->st, "z", 1, 0, "sendMessage", "{}", &z0), 0);
	struct outbox_call zc[2] = {{0, 1, 0, "sendMessage", (char *)"{}"},
				    {0, 2, 0, "sendMessage", (char *)"{}"}};
	assert_int_equal(store_begin(f->st), 0);
	assert_int_equal(store_outbox_add(f->st, "z", zc, 2, &row), 0);
	assert_int_equal(store_rollback(f->st), 0);
	assert_int_equal(add1(f->st, "z", 1, 0, "sendMessage", "{}", &z), 0);
	assert_true(z > zc[1].id);
	n = store_outbox_load(f->st, "z", &rows);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].id, z0);
	assert_int_equal(rows[1].id, z);
	store_outbox_free(rows, (size_t)n);
	/* a bot first seen in a transaction that is rolled back: its number
	 * may go to another bot, and the two must not share rows */
	int64_t x, y;
	assert_int_equal(store_begin(f->st), 0);
	assert_int_equal(add1(f->st, "x", 1, 0, "sendMessage", "{}", &x), 0);
	assert_int_equal(store_rollback(f->st), 0);
	assert_int_equal(add1(f->st, "y", 1, 0, "sendMessage", "{}", &y), 0);
	assert_int_equal(add1(f->st, "x", 1, 0, "sendMessage", "{}", &x), 0);
	n = store_outbox_load(f->st, "x", &rows);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, x);
	store_outbox_free(rows, (size_t)n);
	n = store_outbox_load(f->st, "y", &rows);
	assert_int_equal(n, 1);
	assert_int_equal(rows[0].id, y);
	store_outbox_free(rows, (size_t)n);
}

/* Call ids carry the bot's number in their high bits (62 bits in all, more
 * than a JSON number keeps exactly): a bot numbered far beyond 2^13 still
 * gets back, loads and settles exactly the ids it was given. */
static void test_outbox_ids_of_high_bot_numbers(void **state)
{
	struct fixture *f = *state;
	char err[256];
	store_close(f->st);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "INSERT INTO bots(no, id) VALUES(3000000, 'big')",
				      NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(f->path, &f->st, err, sizeof(err)), 0);
	struct outbox_call c[3] = {{0, 1, 0, "sendMessage", (char *)"{}"},
				   {0, 2, 0, "sendMessage", (char *)"{}"},
				   {0, 3, 0, "sendMessage", (char *)"{}"}};
	int64_t row;
	assert_int_equal(store_outbox_add(f->st, "big", c, 3, &row), 0);
	assert_true(row > ((int64_t)1 << 60));
	int64_t rec[] = {row, 1, c[1].id};
	assert_int_equal(store_outbox_settle(f->st, rec, 3), 0);
	struct outbox_row *rows;
	int n = store_outbox_load(f->st, "big", &rows);
	assert_int_equal(n, 2);
	assert_int_equal(rows[0].id, c[0].id);
	assert_int_equal(rows[1].id, c[2].id);
	assert_int_equal(rows[1].chat_id, 3);
	store_outbox_free(rows, (size_t)n);
	/* the view for people shows the same ids */
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT id, chat, method FROM outbox_by_bot"
					    " WHERE bot='big' ORDER BY id", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int64(s, 0), c[0].id);
	assert_int_equal(sqlite3_column_int64(s, 1), 1);
	assert_string_equal((const char *)sqlite3_column_text(s, 2), "sendMessage");
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int64(s, 0), c[2].id);
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	sqlite3_close(db);
}

/* ---- dbq ---------------------------------------------------------------- */

struct job {
	struct dbq_job base;
	int64_t chat;
	int fail;      /* run fails: its savepoint is rolled back */
	int *order;    /* where done records itself */
	int *norder;
};

static void job_run(struct dbq_job *j, struct store *st)
{
	struct job *x = (struct job *)j;
	int64_t id;
	j->rc = add1(st, "q", x->chat, 0, "sendMessage", "{}", &id);
	if (!j->rc && x->fail)
		j->rc = -EINVAL;
}

static void job_done(struct dbq_job *j)
{
	struct job *x = (struct job *)j;
	x->order[(*x->norder)++] = (int)x->chat;
}

static void closed(void *arg)
{
	*(int *)arg = 1;
}

static void test_dbq_group_commit(void **state)
{
	struct fixture *f = *state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	struct dbq *q = NULL;
	assert_int_equal(dbq_start(&loop, f->st, &q), 0);
	int order[16], norder = 0;
	struct job jobs[10];
	for (int i = 0; i < 10; i++) {
		jobs[i] = (struct job){{job_run, job_done, 0, NULL}, i, i == 4, order, &norder};
		dbq_submit(q, &jobs[i].base);
	}
	assert_int_equal(dbq_pending(q), 10);
	while (norder < 10)
		uv_run(&loop, UV_RUN_ONCE);
	/* done in submission order; the failing job alone was undone */
	for (int i = 0; i < 10; i++)
		assert_int_equal(order[i], i);
	assert_int_equal(jobs[4].base.rc, -EINVAL);
	assert_int_equal(jobs[5].base.rc, 0);
	int is_closed = 0;
	dbq_stop(q, closed, &is_closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(is_closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
	struct outbox_row *rows;
	int n = store_outbox_load(f->st, "q", &rows);
	assert_int_equal(n, 9);
	for (int i = 0; i < n; i++)
		assert_int_not_equal(rows[i].chat_id, 4);
	store_outbox_free(rows, (size_t)n);
}

/* Some statement errors (SQLITE_INTERRUPT here; a full disk or an I/O
 * error do the same) make SQLite roll the whole transaction back by
 * itself. Nothing of the group may then be kept, and every job of it must
 * be reported failed (to be retried): a job reported failed whose writes
 * were committed would be handled twice. */
struct ar_job {
	struct dbq_job base;
	int kind;
	uv_sem_t *started, *go; /* kind 0 says it runs, then waits: the
				   others queue up meanwhile, in one group */
	int *ndone;
};

static int interrupt_now(void *arg)
{
	(void)arg;
	return 1;
}

static void ar_run(struct dbq_job *j, struct store *st)
{
	struct ar_job *x = (struct ar_job *)j;
	sqlite3 *db = *(sqlite3 **)st; /* struct store's first member */
	switch (x->kind) {
	case 0:
		uv_sem_post(x->started);
		uv_sem_wait(x->go);
		break;
	case 1:
		j->rc = store_offset_set(st, "one", 1, 100);
		break;
	case 2:
		sqlite3_progress_handler(db, 1, interrupt_now, NULL);
		j->rc = store_offset_set(st, "two", 1, 200);
		sqlite3_progress_handler(db, 0, NULL, NULL);
		break;
	case 3:
		j->rc = store_offset_set(st, "three", 1, 300);
		break;
	}
}

static void ar_done(struct dbq_job *j)
{
	(*((struct ar_job *)j)->ndone)++;
}

static void test_dbq_transaction_lost_midway(void **state)
{
	struct fixture *f = *state;
	uv_loop_t loop;
	uv_sem_t started, go;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(uv_sem_init(&started, 0), 0);
	assert_int_equal(uv_sem_init(&go, 0), 0);
	struct dbq *q = NULL;
	assert_int_equal(dbq_start(&loop, f->st, &q), 0);
	int ndone = 0;
	struct ar_job jobs[4];
	for (int i = 0; i < 4; i++) {
		jobs[i] = (struct ar_job){{ar_run, ar_done, 0, NULL}, i, &started, &go, &ndone};
		dbq_submit(q, &jobs[i].base);
		if (i == 0) /* job 0's group has begun: 1-3 form the next */
			uv_sem_wait(&started);
	}
	uv_sem_post(&go);
	while (ndone < 4)
		uv_run(&loop, UV_RUN_ONCE);
	int is_closed = 0;
	dbq_stop(q, closed, &is_closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	uv_sem_destroy(&go);
	uv_sem_destroy(&started);
	assert_int_not_equal(jobs[1].base.rc, 0);
	assert_int_not_equal(jobs[2].base.rc, 0);
	assert_int_not_equal(jobs[3].base.rc, 0);
	static const char *const bots[] = {"one", "two", "three"};
	for (int i = 0; i < 3; i++) {
		int64_t off = -1;
		assert_int_equal(store_offset_get(f->st, bots[i], 1, &off), 0);
		assert_int_equal(off, 0); /* reported failed: nothing kept */
	}
	/* and the store works on */
	assert_int_equal(store_offset_set(f->st, "three", 1, 300), 0);
}

static void *bind_here(void *st)
{
	store_bind_thread(st);
	return NULL;
}

/* Once the database thread has the store, a statement from any other
 * thread (the loop, by mistake) stops the process at once, in every test
 * run, instead of blocking the loop on SQLite in production. */
static void test_store_refuses_other_threads(void **state)
{
#ifdef NDEBUG
	skip();
#endif
	struct fixture *f = *state;
	int64_t off;
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pthread_t t;
		if (pthread_create(&t, NULL, bind_here, f->st) || pthread_join(t, NULL))
			_exit(3);
		store_offset_get(f->st, "b", 1, &off); /* not the owner */
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
	/* the owner may */
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, bind_here, f->st), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	store_bind_thread(f->st); /* handed back, as dbq_stop does */
	assert_int_equal(store_offset_get(f->st, "b", 1, &off), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_file_mode_and_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conversations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_absent_memo_follows_every_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_state_starts_afresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_due_in_deadline_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outbox_and_offsets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outbox_rows_settle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_outbox_ids_of_high_bot_numbers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_from_schema_1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dbq_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_refuses_other_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dbq_transaction_lost_midway, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
