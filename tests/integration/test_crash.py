"""Durability: kill -9 in the middle of a stream of updates loses nothing and
applies no state transition twice; neither does a full disk or a failing
fdatasync; ask deadlines
survive a restart; TLS with --ca-file."""

import os
import sqlite3
import subprocess
import tempfile
import shutil
import time
import unittest

from harness import BotTest

# Each chat walks /q -> three answers -> a summary. If an update were lost,
# a chat would never get its summary; if a transition were applied twice, an
# answer would land in the wrong variable and the summary would show it.
QUIZ = """
flows:
  - entry_cmd: /q
    steps:
      - ask: "Q1"
        save: a
      - ask: "Q2"
        save: b
      - ask: "Q3"
        save: c
      - reply: "Done {{a}} {{b}} {{c}}"
"""

TIMER = """
flows:
  - entry_cmd: /t
    steps:
      - ask: "Quick?"
        save: x
        timeout: 2s
        on_timeout: [{reply: "Too late, {{user.first_name}}"}]
"""

HI = """
flows:
  - entry_cmd: /start
    steps: [{reply: "Hi {{user.first_name}}"}]
"""

ASK = """
flows:
  - entry_cmd: /order
    steps:
      - ask: "Your name?"
        save: name
      - reply: "Thanks {{name}}"
"""

BOT = 501
CHATS = 40


def dedup_consecutive(texts):
    out = []
    for t in texts:
        if not out or out[-1] != t:
            out.append(t)
    return out


class CrashTest(BotTest):
    def test_kill9_during_a_stream(self):
        tok = self.token(BOT)
        d = self.daemon({"quiz.yaml": self.spec(QUIZ, "T")}, env={"T": tok})
        self.wait_polling(BOT)
        script = ["/q", "x1", "x2", "x3"]
        # round 0 and 1 while it runs, then kill -9 right after round 2 is
        # injected: part of it is handled, part is not
        for rnd in range(len(script)):
            batch = [dict(user_id=1000 + c, chat_id=1000 + c,
                          text=script[rnd] if rnd == 0 else "%s-%d" % (script[rnd], c))
                     for c in range(CHATS)]
            self.fb.inject(BOT, batch)
            if rnd == 2:
                self.fb.wait_sent(BOT, 2 * CHATS + 5, method="sendMessage", timeout=20)
                d.kill9()
                d.restart()
            elif rnd < 2:
                self.fb.wait_sent(BOT, (rnd + 1) * CHATS, method="sendMessage", timeout=20)
        def all_done(calls):
            done = {c["params"]["chat_id"] for c in calls
                    if c["params"]["text"].startswith("Done")}
            return len(done) == CHATS
        calls = self.wait_until(BOT, all_done, timeout=30)
        # every chat got the whole conversation, in order, answers in place
        last = {}
        by_chat = {}
        for c in calls:
            by_chat.setdefault(c["params"]["chat_id"], []).append(c["params"]["text"])
        for c in range(CHATS):
            chat = 1000 + c
            texts = by_chat.get(chat, [])
            # at-least-once delivery may repeat a message, never skip or reorder
            self.assertEqual(dedup_consecutive(texts),
                             ["Q1", "Q2", "Q3", "Done x1-%d x2-%d x3-%d" % (c, c, c)],
                             "chat %d saw %r" % (chat, texts))
            last[chat] = texts
        dupes = sum(len(t) - 4 for t in last.values())
        self.assertLessEqual(dupes, CHATS, "too many repeated replies")
        self.assertEqual(d.stop(), 0)

    def stuck_row(self, bot, crash):
        """One batch's replies are kept as one outbox row, deleted when all
        are done. A reply done while another of its row is stuck (here a
        chat whose sends fail) leaves the row within about a second (crash)
        or when the daemon stops (not crash), so that it is not sent again
        after the restart."""
        tok = self.token(bot)
        d = self.daemon({"hi.yaml": self.spec(HI, "T")}, env={"T": tok})
        self.wait_polling(bot)
        self.fb.add_faults(bot, {"method": "sendMessage", "chat_id": 2, "count": 0,
                                 "status": 500})
        # one getUpdates: one row of two replies
        self.fb.inject(bot, [dict(user_id=1, text="/start", first_name="Al"),
                             dict(user_id=2, text="/start", first_name="Bo")])
        self.assertEqual(self.texts(bot, 1), ["Hi Al"])
        db = sqlite3.connect(d.db)
        self.addCleanup(db.close)

        def pending():
            return [r[0] for r in db.execute("SELECT chat FROM outbox_by_bot")]
        if crash:
            deadline = time.monotonic() + 10
            while pending() != [2]:
                self.assertLess(time.monotonic(), deadline,
                                "the done reply never left its row: %r" % pending())
                time.sleep(0.05)
            d.kill9()
        else:
            self.assertEqual(d.stop(), 0)
            self.assertEqual(pending(), [2])
        # it is the second call of its row: the two shared one
        self.assertEqual([r[0] for r in db.execute(
            "SELECT c.value ->> 0 FROM outbox o, json_each(o.calls) c")], [1])
        self.fb.clear_faults(bot)
        d.restart()
        d.wait_log(r"bot hi: 1 pending reply from before the restart")
        self.assertEqual(self.texts(bot, 2), ["Hi Al", "Hi Bo"])
        self.assertEqual(d.stop(), 0)
        self.assertEqual(pending(), [])

    def test_a_reply_done_beside_a_stuck_one_is_not_sent_again(self):
        self.stuck_row(504, crash=True)

    def test_a_stop_settles_the_replies_done_beside_a_stuck_one(self):
        self.stuck_row(505, crash=False)

    def disk_fault(self, bot, trigger_var, error):
        """Runs the ASK spec with fail_wal failing the database's log while
        the file named by $trigger_var exists: an answer given then is
        neither kept, confirmed nor answered (the daemon logs `error`), and
        is handled exactly once when the disk works again."""
        tok = self.token(bot)
        bad = os.path.join(tempfile.mkdtemp(prefix="bf-disk-"), "bad")
        self.addCleanup(shutil.rmtree, os.path.dirname(bad), True)
        env = {"T": tok, "LD_PRELOAD": os.environ["FAIL_WAL"], trigger_var: bad,
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        d = self.daemon({"ask.yaml": self.spec(ASK, "T")}, env=env)
        self.wait_polling(bot)
        self.fb.message(bot, "/order", user_id=9, first_name="Ann")
        self.assertEqual(self.texts(bot, 1), ["Your name?"])
        # the disk fails: the answer cannot be kept, so it is not
        # confirmed to Telegram and nothing is sent for it
        open(bad, "w").close()
        mark = len(d.lines)
        self.fb.message(bot, "Ann", user_id=9, first_name="Ann")
        d.wait_log(r"database: .*" + error, start=mark)
        d.wait_log(r"database: a transaction failed; its jobs? will be retried", start=mark)
        self.assertEqual(len(self.fb.sent(bot, method="sendMessage")["calls"]), 1)
        self.assertEqual(self.fb.state(bot)["pending_updates"], 1)
        # the disk works again: the answer is handled once, after a backoff
        os.unlink(bad)
        self.assertEqual(self.texts(bot, 2, timeout=30), ["Your name?", "Thanks Ann"])
        self.fb.message(bot, "/order", user_id=9, first_name="Ann")
        self.assertEqual(self.texts(bot, 3)[2], "Your name?")
        self.assertEqual(d.stop(), 0)
        # nothing was left in the outbox to send again after a restart
        d.restart()
        self.wait_polling(bot)
        self.fb.message(bot, "Bo", user_id=9, first_name="Ann")
        self.assertEqual(self.texts(bot, 4)[3], "Thanks Bo")
        self.assertEqual(d.stop(), 0)
        self.assertNotIn("cannot rollback", d.log())

    def test_a_full_disk_loses_and_doubles_nothing(self):
        # writes to the log fail with ENOSPC
        self.disk_fault(504, "FAIL_WAL_TRIGGER", "disk is full")

    def test_a_failing_sync_loses_and_doubles_nothing(self):
        # fdatasync of the log fails with EIO: the commit fails
        self.disk_fault(506, "FAIL_WAL_SYNC_TRIGGER", "disk I/O error")

    def test_deadline_fires_after_a_restart(self):
        tok = self.token(502)
        d = self.daemon({"timer.yaml": self.spec(TIMER, "T")}, env={"T": tok})
        self.wait_polling(502)
        self.fb.message(502, "/t", user_id=8, first_name="Uma")
        self.assertEqual(self.texts(502, 1), ["Quick?"])
        self.assertEqual(d.stop(), 0)
        # the daemon is down while the deadline passes (time must pass here)
        time.sleep(2.5)
        d.restart()
        self.assertEqual(self.texts(502, 2, timeout=10)[1], "Too late, Uma")
        self.assertEqual(d.stop(), 0)

    def test_answer_typed_in_time_while_down_is_the_answer(self):
        tok = self.token(505)
        spec = TIMER.replace('on_timeout: [{reply: "Too late, {{user.first_name}}"}]',
                             'on_timeout: [{reply: "Too late, {{user.first_name}}"}]\n'
                             '      - reply: "Got {{x}}"')
        self.assertIn("Got {{x}}", spec)
        d = self.daemon({"timer.yaml": self.spec(spec, "T")}, env={"T": tok})
        self.wait_polling(505)
        self.fb.message(505, "/t", user_id=8, first_name="Uma")
        self.assertEqual(self.texts(505, 1), ["Quick?"])
        self.assertEqual(d.stop(), 0)
        # answered within the 2 s while the daemon is down; handled after
        # the deadline has passed (time must pass here)
        self.fb.message(505, "yes", user_id=8, first_name="Uma")
        time.sleep(2.5)
        d.restart()
        self.assertEqual(self.texts(505, 2, timeout=10)[1], "Got yes")
        self.assertEqual(d.stop(), 0)
        calls = self.fb.sent(505, method="sendMessage")["calls"]
        self.assertEqual([c["params"]["text"] for c in calls], ["Quick?", "Got yes"])

    def test_deadline_fires_on_time(self):
        tok = self.token(503)
        d = self.daemon({"timer.yaml": self.spec(TIMER, "T")}, env={"T": tok})
        self.wait_polling(503)
        self.fb.message(503, "/t", user_id=8, first_name="Uma")
        calls = self.fb.wait_sent(503, 2, method="sendMessage", timeout=10)
        self.assertEqual(calls[1]["params"]["text"], "Too late, Uma")
        waited = calls[1]["at_ms"] - calls[0]["at_ms"]
        self.assertGreaterEqual(waited, 1900)
        self.assertLess(waited, 3500)  # on time: not at the next poll's end (5 s)
        self.assertEqual(d.stop(), 0)


class TlsTest(BotTest):
    @classmethod
    def setUpClass(cls):
        cls.cadir = tempfile.mkdtemp(prefix="fakebot-ca-")
        script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "fakebot", "make-ca.sh")
        subprocess.run(["sh", script, cls.cadir], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        cls.fakebot_args = dict(tls_cert=os.path.join(cls.cadir, "server.pem"),
                                tls_key=os.path.join(cls.cadir, "server.key"),
                                cafile=os.path.join(cls.cadir, "ca.pem"))
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.cadir, ignore_errors=True)

    def test_https_with_ca_file(self):
        tok = self.token(601)
        d = self.daemon({"t.yaml": self.spec(QUIZ, "T")}, env={"T": tok},
                        args=("--ca-file", os.path.join(self.cadir, "ca.pem")))
        self.assertTrue(self.fb.url.startswith("https://"))
        self.wait_polling(601)
        self.fb.message(601, "/q", user_id=2)
        self.assertEqual(self.texts(601, 1), ["Q1"])
        self.assertEqual(d.stop(), 0)

    def test_https_without_the_ca_is_refused(self):
        tok = self.token(602)
        d = self.daemon({"t.yaml": self.spec(QUIZ, "T")}, env={"T": tok})
        d.wait_log(r"bot t: getMe failed \(.*(certificate|SSL).*\); retrying")
        self.assertEqual(self.fb.state(602)["get_updates_calls"], 0)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
