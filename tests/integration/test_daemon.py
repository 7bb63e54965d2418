"""botfactoryd end to end against fakebot: start-up, the example bots'
conversations over HTTP, per-bot error handling, shutdown."""

import os
import signal
import sqlite3
import stat
import unittest

from harness import BotTest, Daemon

HELLO = """
flows:
  - entry_cmd: /start
    description: Say hello
    steps: [{reply: "Hello, {{user.first_name}}!"}]
  - id: order
    entry_cmd: /order
    steps:
      - ask: "Your name?"
        save: name
      - reply: "Thanks {{name}}"
        buttons: [{text: Again, flow: order}]
"""

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StartTest(BotTest):
    def test_no_tokens_one_line_per_bot_and_keeps_running(self):
        specs = {}
        for name in ("business_assistant.yaml", "order.yaml", "terminal_bot.json"):
            with open(os.path.join(ROOT, "specs", name)) as f:
                specs[name] = f.read()
        env = {"BUSINESS_ASSISTANT_TOKEN": "", "ORDER_BOT_TOKEN": "", "TERMINAL_BOT_TOKEN": ""}
        d = self.daemon(specs, env=env)
        d.wait_log(r"bot business_assistant: disabled: set BUSINESS_ASSISTANT_TOKEN")
        d.wait_log(r"bot order: disabled: set ORDER_BOT_TOKEN")
        d.wait_log(r"bot terminal_bot: disabled: set TERMINAL_BOT_TOKEN")
        self.assertTrue(d.alive())
        self.assertEqual(d.stop(), 0)
        mode = stat.S_IMODE(os.stat(d.db).st_mode)
        self.assertEqual(mode, 0o600)

    def test_getme_commands_and_poll(self):
        tok = self.token(101)
        self.fb.config(101, username="hello_bot")
        d = self.daemon({"hello.yaml": self.spec(HELLO, "T101")}, env={"T101": tok})
        st = self.wait_polling(101)
        self.assertEqual(st["allowed_updates"], ["message", "callback_query"])
        self.assertEqual(st["commands"], [{"command": "start", "description": "Say hello"}])
        d.wait_log(r"bot hello: polling as @hello_bot")
        self.fb.message(101, "/start", user_id=7, first_name="Ann")
        self.assertEqual(self.texts(101, 1), ["Hello, Ann!"])
        # the menu is published once: a restart with the same spec does not
        # call setMyCommands again
        self.assertEqual(d.stop(), 0)
        d.restart()
        self.wait_polling(101)
        self.fb.message(101, "/start", user_id=7, first_name="Ann")
        self.texts(101, 2)
        calls = self.fb.sent(101, method="setMyCommands")["calls"]
        self.assertEqual(len(calls), 1)
        self.assertEqual(d.stop(), 0)

    def test_defaults_environment_and_sigint(self):
        """Without options the daemon runs ./specs on ./botfactory.db; the
        BOTFACTORY_* variables set the rest; SIGINT stops it cleanly."""
        tok = self.token(105)
        env = {"T": tok, "BOTFACTORY_TELEGRAM_API": self.fb.url,
               "BOTFACTORY_POLL_TIMEOUT": "7", "BOTFACTORY_LOG_LEVEL": "warn"}
        d = Daemon(self.fb.url, {"hi.yaml": self.spec(HELLO, "T")}, env=env, bare=True)
        self.daemons.append(d)
        d.start()
        self.wait_polling(105)
        self.assertEqual(self.fb.state(105)["last_timeout"], 7)
        self.fb.message(105, "/start", user_id=7, first_name="Ann")
        self.assertEqual(self.texts(105, 1), ["Hello, Ann!"])
        db = os.path.join(d.dir, "botfactory.db")
        self.assertEqual(stat.S_IMODE(os.stat(db).st_mode), 0o600)
        self.assertEqual(d.stop(sig=signal.SIGINT), 0)
        self.assertEqual(d.log(), "")  # warn: no info lines
        # BOTFACTORY_SPECS and BOTFACTORY_DB, from a directory without
        # specs; the default level is info
        other = os.path.join(d.dir, "other.db")
        env = dict(env, BOTFACTORY_SPECS=d.specs_dir, BOTFACTORY_DB=other)
        del env["BOTFACTORY_LOG_LEVEL"]
        elsewhere = Daemon(self.fb.url, {}, bare=True, env=env)
        self.daemons.append(elsewhere)
        elsewhere.start()
        elsewhere.wait_log(r"^info: bot hi: polling as")
        self.wait_polling(105)
        self.fb.message(105, "/start", user_id=8, first_name="Bo")
        self.assertEqual(self.texts(105, 2)[1], "Hello, Bo!")
        self.assertEqual(stat.S_IMODE(os.stat(other).st_mode), 0o600)
        self.assertEqual(elsewhere.stop(sig=signal.SIGINT), 0)

    def test_two_specs_with_one_token(self):
        tok = self.token(102)
        d = self.daemon({"a.yaml": self.spec(HELLO, "T"), "b.yaml": self.spec(HELLO, "T")},
                        env={"T": tok})
        d.wait_log(r"bot b: not started: bot a already uses the same token")
        self.wait_polling(102)
        self.fb.message(102, "/start", user_id=1, first_name="Bo")
        self.assertEqual(self.texts(102, 1), ["Hello, Bo!"])
        self.assertEqual(d.stop(), 0)


    def test_second_daemon_on_one_database_is_refused(self):
        tok = self.token(103)
        a = self.daemon({"hi.yaml": self.spec(HELLO, "T")}, env={"T": tok})
        self.wait_polling(103)
        # another process on the same database would poll the same tokens
        b = Daemon(self.fb.url, {}, env={"T": tok}, workdir=a.dir)
        self.daemons.append(b)
        b.start()
        b.wait_log(r"database: .*bf\.db: another process \(another botfactoryd\?\) is using this database")
        self.assertEqual(b.proc.wait(10), 1)
        # the first one never noticed
        self.fb.message(103, "/start", user_id=1, first_name="Cy")
        self.assertEqual(self.texts(103, 1), ["Hello, Cy!"])
        self.assertEqual(a.stop(), 0)
        # once it is gone, the database is free again
        b.restart()
        self.wait_polling(103)
        self.assertEqual(b.stop(), 0)


    def test_pending_call_of_unknown_method_is_dropped(self):
        tok = self.token(104)
        d = self.daemon({"hi.yaml": self.spec(HELLO, "T")}, env={"T": tok})
        self.wait_polling(104)
        self.fb.message(104, "/start", user_id=1, first_name="Di")
        self.texts(104, 1)
        self.assertEqual(d.stop(), 0)
        # a row with a call no version of this daemon writes (a newer one
        # might) beside one it knows: the first is dropped, the second sent,
        # and the row goes with the two
        db = sqlite3.connect(d.db)
        with db:
            db.execute("INSERT INTO outbox(id, last, calls) SELECT (no << 40) + 999,"
                       " (no << 40) + 1000, '[[0,1,0,\"sendSticker\",{}],"
                       "[1,1,0,\"sendMessage\",{\"text\":\"left over\"}]]'"
                       " FROM bots WHERE id='hi'")
        db.close()
        d.restart()
        d.wait_log(r"bot hi: dropped a pending sendSticker call \(unknown method\)")
        self.assertEqual(self.texts(104, 2)[1], "left over")
        self.wait_polling(104)
        self.fb.message(104, "/start", user_id=1, first_name="Di")
        self.texts(104, 3)
        self.assertEqual(d.stop(), 0)
        db = sqlite3.connect(d.db)
        self.assertEqual(db.execute("SELECT count(*) FROM outbox").fetchone()[0], 0)
        db.close()


class ConversationTest(BotTest):
    def test_buttons_and_asks_over_http(self):
        tok = self.token(201)
        self.daemon({"hello.yaml": self.spec(HELLO, "T")}, env={"T": tok})
        self.wait_polling(201)
        self.fb.message(201, "/order", user_id=5)
        self.assertEqual(self.texts(201, 1), ["Your name?"])
        self.fb.message(201, "Zoe", user_id=5)
        calls = self.fb.wait_sent(201, 2, method="sendMessage")
        self.assertEqual(calls[1]["params"]["text"], "Thanks Zoe")
        kb = calls[1]["params"]["reply_markup"]["inline_keyboard"]
        self.assertEqual(kb[0][0]["text"], "Again")
        mid = json_result(calls[1])["message_id"]
        self.fb.callback(201, kb[0][0]["callback_data"], mid, user_id=5)
        answers = self.fb.wait_sent(201, 1, method="answerCallbackQuery")
        self.assertNotIn("text", answers[0]["params"])
        self.assertEqual(self.texts(201, 3)[2], "Your name?")
        # the button answer went out before the chat's reply
        allcalls = [c["method"] for c in self.fb.sent(201)["calls"]
                    if c["method"] in ("sendMessage", "answerCallbackQuery")]
        self.assertEqual(allcalls[-2:], ["answerCallbackQuery", "sendMessage"])

    def test_example_transcripts_end_to_end(self):
        """The example specs' transcripts, replayed over HTTP (up to the first
        '~' line: time cannot be advanced in a real daemon)."""
        cases = [("business_assistant.yaml", "business_assistant.txt", 301),
                 ("terminal_bot.json", "terminal_bot.txt", 302),
                 ("order.yaml", "order.txt", 303)]
        specs, env = {}, {}
        for spec, _, bot_id in cases:
            with open(os.path.join(ROOT, "specs", spec)) as f:
                text = f.read()
            var = {"business_assistant.yaml": "BUSINESS_ASSISTANT_TOKEN",
                   "terminal_bot.json": "TERMINAL_BOT_TOKEN",
                   "order.yaml": "ORDER_BOT_TOKEN"}[spec]
            env[var] = self.token(bot_id)
            specs[spec] = text
            self.fb.config(bot_id, username=os.path.splitext(spec)[0] + "_bot")
        self.daemon(specs, env=env)
        for spec, transcript, bot_id in cases:
            self.wait_polling(bot_id)
            with self.subTest(transcript=transcript):
                replay(self, bot_id, os.path.join(ROOT, "tests", "transcripts", transcript))


def json_result(call):
    r = call.get("result")
    return r if isinstance(r, dict) else {}


def unescape(s):
    return s.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")


def replay(test, bot_id, path):
    """Replays a transcript against the daemon: '>' and '*' become updates,
    '<' lines are the expected sendMessage texts, in order. Ends with a
    sentinel /start so that missing and extra replies both show."""
    fb = test.fb
    user = dict(user_id=1001, chat_id=1001, first_name="Alice", username="alice")
    expected = []
    start = fb.sent(bot_id)["last_seq"]

    def sends():
        return [c for c in fb.sent(bot_id, after=start)["calls"] if c["method"] == "sendMessage"]

    with open(path) as f:
        lines = f.read().splitlines()
    for raw in lines:
        line = raw.rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        marker, text = line[0], line[2:] if len(line) > 1 else ""
        if marker == "~":
            break
        if marker == "<":
            expected.append(unescape(text))
        elif marker == ">":
            fb.wait_sent(bot_id, len(expected), method="sendMessage", after=start)
            fb.message(bot_id, unescape(text), **user)
        elif marker == "*":
            calls = fb.wait_sent(bot_id, len(expected), method="sendMessage", after=start)
            target = None
            for c in reversed(calls):
                for row in c["params"].get("reply_markup", {}).get("inline_keyboard", []):
                    for b in row:
                        if b["text"] == text and "callback_data" in b:
                            target = (b["callback_data"], json_result(c)["message_id"])
                if target:
                    break
            test.assertIsNotNone(target, "no button %r" % text)
            fb.callback(bot_id, target[0], target[1], **user)
    fb.message(bot_id, "/start", **user)
    calls = fb.wait_sent(bot_id, len(expected) + 1, method="sendMessage", after=start)
    got = [c["params"]["text"] for c in calls]
    test.assertEqual(got[:-1], expected)


if __name__ == "__main__":
    unittest.main()
