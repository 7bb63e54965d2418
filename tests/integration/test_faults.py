"""Every Bot API fault is handled as specified, inside the bot that met it,
while another bot of the same daemon keeps answering."""

import os
import shutil
import tempfile
import time
import unittest

from harness import BotTest, Daemon

HELLO = """
flows:
  - entry_cmd: /start
    description: Say hello
    steps: [{reply: "Hello, {{user.first_name}}!"}]
  - entry_cmd: /name
    steps:
      - ask: "Your name?"
        save: name
      - reply: "Hi {{name}}"
"""

BUTTONS = """
flows:
  - entry_cmd: /start
    steps: [{reply: "Hello, {{user.first_name}}!"}]
  - entry_cmd: /go
    steps: [{reply: "Pick", buttons: [{text: X, flow: x}]}]
  - id: x
    steps: [{reply: "X!"}]
"""

A, B = 401, 402


def preload(var):
    """Environment that loads the test shim named by $var into the daemon."""
    return {"LD_PRELOAD": os.environ[var],
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}


class FaultTest(BotTest):
    def two_bots(self, spec_a=HELLO, args=(), env=None):
        env = dict(env or {}, TA=self.token(A), TB=self.token(B))
        d = self.daemon({"a.yaml": self.spec(spec_a, "TA"), "b.yaml": self.spec(HELLO, "TB")},
                        env=env, args=args)
        return d

    def pick(self, user):
        """Sends bot A's /go (BUTTONS) for user; returns the button's
        callback_data and the message id carrying it."""
        before = self.fb.sent(A)["last_seq"]
        self.fb.message(A, "/go", user_id=user)
        [c] = self.fb.wait_sent(A, 1, method="sendMessage", after=before)
        return (c["params"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
                c["result"]["message_id"])

    def many_bots(self, ids, url=None, env=None, nofile=None):
        """Starts a daemon running HELLO for each bot id (token T<id>)."""
        env, specs = dict(env or {}), {}
        for i in ids:
            env["T%d" % i] = self.token(i)
            specs["b%d.yaml" % i] = self.spec(HELLO, "T%d" % i)
        d = Daemon(url or self.fb.url, specs, env=env, nofile=nofile)
        self.daemons.append(d)
        return d.start()

    def assert_b_answers(self, name="Bea"):
        before = self.fb.sent(B)["last_seq"]
        self.fb.message(B, "/start", user_id=9, first_name=name)
        calls = self.fb.wait_sent(B, 1, method="sendMessage", after=before)
        self.assertEqual(calls[0]["params"]["text"], "Hello, %s!" % name)

    def test_401_on_getme_disables_only_that_bot(self):
        self.fb.config(A, invalid_token=True)
        d = self.two_bots()
        d.wait_log(r"bot a: Telegram rejects its token \(401 Unauthorized on getMe\)")
        self.wait_polling(B)
        self.assert_b_answers()
        self.assertEqual(self.fb.state(A)["get_updates_calls"], 0)
        self.assertEqual(d.stop(), 0)

    def test_401_on_getupdates(self):
        d = self.two_bots()
        self.wait_polling(A)
        self.fb.add_faults(A, {"method": "getUpdates", "status": 401})
        # the held poll is answered by the next one only: make it come back
        self.fb.message(A, "/start", user_id=3)
        d.wait_log(r"bot a: Telegram rejects its token \(401 Unauthorized on getUpdates\)")
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_429_on_send_waits_exactly_retry_after(self):
        d = self.two_bots()
        self.wait_polling(A)
        self.wait_polling(B)
        self.fb.add_faults(A, {"method": "sendMessage", "status": 429, "retry_after": 2})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        d.wait_log(r"bot a: Telegram asks to wait 2 s")
        # meanwhile the other bot answers at once
        self.assert_b_answers()
        calls = self.fb.wait_sent(A, 2, method="sendMessage", all=True, timeout=15)
        self.assertEqual(calls[0]["error_code"], 429)
        self.assertEqual(calls[1]["params"]["text"], "Hello, Al!")
        waited = calls[1]["at_ms"] - calls[0]["at_ms"]
        self.assertGreaterEqual(waited, 2000)
        self.assertLess(waited, 4000)
        self.assertEqual(d.stop(), 0)

    def test_429_on_getupdates_waits_exactly_retry_after(self):
        d = self.two_bots()
        self.wait_polling(A)
        self.wait_polling(B)
        self.fb.add_faults(A, {"method": "getUpdates", "status": 429, "retry_after": 2})
        # the held poll is answered by the next one only: make it come back
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 1), ["Hello, Al!"])
        self.wait_faults_taken(A)
        t0 = time.monotonic()
        polls = self.fb.state(A)["get_updates_calls"]
        self.assert_b_answers()
        self.fb.wait_state(A, timeout=10, min_get_updates_calls=polls + 1)
        waited = time.monotonic() - t0
        self.assertGreaterEqual(waited, 1.9)
        self.assertLess(waited, 4.0)
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 2)[1], "Hello, Al!")
        self.assertEqual(d.stop(), 0)

    def test_429_on_getme_waits_exactly_retry_after(self):
        self.fb.add_faults(A, {"method": "getMe", "status": 429, "retry_after": 2})
        t0 = time.monotonic()
        d = self.two_bots()
        self.wait_polling(B)
        [limited] = self.fb.wait_sent(A, 1, method="getMe", all=True)
        self.assertEqual(limited["error_code"], 429)
        calls = self.fb.wait_sent(A, 2, method="getMe", all=True)
        self.assertGreaterEqual(calls[1]["at_ms"] - calls[0]["at_ms"], 2000)
        self.assertLess(calls[1]["at_ms"] - calls[0]["at_ms"], 4000)
        self.wait_polling(A)
        self.assertLess(time.monotonic() - t0, 10)
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_409_webhook_is_reported(self):
        self.fb.config(A, webhook="https://example.org/hook")
        d = self.two_bots()
        d.wait_log(r"bot a: a webhook is set for this token.*deleteWebhook.*delete_webhook: true")
        self.wait_polling(B)
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_409_webhook_deleted_when_the_spec_opts_in(self):
        self.fb.config(A, webhook="https://example.org/hook")
        d = self.two_bots(spec_a="delete_webhook: true\n" + HELLO)
        d.wait_log(r"bot a: deleted the webhook")
        self.wait_polling(A)
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 1), ["Hello, Al!"])
        self.assertEqual(len(self.fb.sent(A, method="deleteWebhook")["calls"]), 1)
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_409_other_poller_backs_off(self):
        d = self.two_bots()
        self.wait_polling(A)
        self.fb.add_faults(A, {"method": "getUpdates", "status": 409, "kind": "other", "count": 2})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        d.wait_log(r"bot a: another process is polling this token \(409 Conflict\)")
        self.assert_b_answers()
        # after the conflicts the bot polls again and answers
        self.assertEqual(self.texts(A, 1, timeout=20), ["Hello, Al!"])
        self.assertEqual(d.stop(), 0)

    def test_500_and_dropped_connection_are_retried(self):
        d = self.two_bots()
        self.wait_polling(A)
        self.fb.add_faults(A, {"method": "sendMessage", "status": 500},
                           {"method": "sendMessage", "drop": True})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assert_b_answers()
        self.assertEqual(self.texts(A, 1, timeout=20), ["Hello, Al!"])
        d.wait_log(r"bot a: sending to chat 3 failed")
        self.assertEqual(d.stop(), 0)

    def test_an_outage_is_one_warning_and_one_recovery_line(self):
        # at info level: a streak of failures is announced once, its
        # retries are not logged, and the recovery says how long it was
        d = self.two_bots(args=("--log-level", "info", "--poll-timeout", "1"))
        self.wait_polling(A)
        mark = len(d.lines)
        self.fb.add_faults(A, {"method": "getUpdates", "status": 502},
                           {"method": "getUpdates", "status": 502})
        # the held poll ends on its own after --poll-timeout: the next two
        # calls fail (retried after about 1 and 2 s), then polling works
        d.wait_log(r"bot a: polling again after 2 failed attempts", start=mark, timeout=30)
        failed = [l for l in d.lines[mark:] if "bot a: getUpdates failed" in l]
        self.assertEqual(len(failed), 1, failed)
        self.assertTrue(failed[0].startswith("warn: "), failed)
        self.assert_b_answers()
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 1), ["Hello, Al!"])
        self.assertEqual(d.stop(), 0)

    def test_button_answer_is_not_queued_behind_the_chats_replies(self):
        d = self.two_bots(spec_a=BUTTONS)
        self.wait_polling(A)
        data, mid = self.pick(3)
        # the chat's next reply is held by Telegram for 5 s
        self.fb.add_faults(A, {"method": "sendMessage", "delay_ms": 5000})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.wait_faults_taken(A)
        t0 = time.monotonic()
        self.fb.callback(A, data, mid, user_id=3)
        # the press is answered at once, not after the held reply...
        self.fb.wait_sent(A, 1, method="answerCallbackQuery", timeout=2.5)
        self.assertLess(time.monotonic() - t0, 2.5)
        # ...while the chat's replies keep their order
        self.assertEqual(self.texts(A, 3, timeout=15), ["Pick", "Hello, Al!", "X!"])
        self.assertEqual(d.stop(), 0)

    def test_send_backoff_grows_and_starts_over_after_a_success(self):
        d = self.two_bots()
        self.wait_polling(A)
        self.fb.add_faults(A, *[{"method": "sendMessage", "status": 500}] * 3)
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        calls = self.fb.wait_sent(A, 4, method="sendMessage", all=True, timeout=20)
        self.assertEqual([c["ok"] for c in calls], [False, False, False, True])
        t = [c["at_ms"] for c in calls]
        # about 1, 2 and 4 s: +-20 %, never under the 1 s floor (the upper
        # bounds leave room for a loaded machine)
        for gap, base in zip([b - a for a, b in zip(t, t[1:])], (1000, 2000, 4000)):
            self.assertGreaterEqual(gap, max(1000, base * 0.8) - 20)
            self.assertLess(gap, base * 1.2 + 1000)
        # a success resets it: the next failure waits the first delay again
        self.fb.add_faults(A, {"method": "sendMessage", "status": 500})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        more = self.fb.wait_sent(A, 2, method="sendMessage", all=True,
                                 after=calls[3]["seq"], timeout=10)
        gap = more[1]["at_ms"] - more[0]["at_ms"]
        self.assertGreaterEqual(gap, 1000 - 20)
        self.assertLess(gap, 1200 + 1000)
        self.assertEqual(d.stop(), 0)

    def test_429_pauses_its_chat_or_on_a_second_chat_the_bot(self):
        d = self.two_bots()
        self.wait_polling(A)
        # one chat's limit: another chat is answered meanwhile
        self.fb.add_faults(A, {"method": "sendMessage", "chat_id": 3, "status": 429,
                               "retry_after": 3})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        d.wait_log(r"bot a: Telegram asks to wait 3 s before sending to chat 3")
        self.fb.message(A, "/start", user_id=4, first_name="Di")
        calls = self.fb.wait_sent(A, 3, method="sendMessage", all=True, timeout=15)
        self.assertEqual([c["params"]["text"] for c in calls],
                         ["Hello, Al!", "Hello, Di!", "Hello, Al!"])
        self.assertGreaterEqual(calls[2]["at_ms"] - calls[0]["at_ms"], 3000)
        # two chats limited within a second: the bot's limit; a third chat
        # waits too
        last = calls[2]["seq"]
        self.fb.add_faults(A, {"method": "sendMessage", "chat_id": 5, "status": 429, "retry_after": 3},
                           {"method": "sendMessage", "chat_id": 6, "status": 429, "retry_after": 3})
        self.fb.inject(A, [{"text": "/start", "user_id": 5, "first_name": "Eve"},
                           {"text": "/start", "user_id": 6, "first_name": "Fay"}])
        d.wait_log(r"bot a: Telegram asks to wait 3 s before sending to any chat")
        self.fb.message(A, "/start", user_id=7, first_name="Gus")
        calls = self.fb.wait_sent(A, 5, method="sendMessage", all=True, after=last, timeout=15)
        limited = max(c["at_ms"] for c in calls if not c["ok"])
        gus = [c for c in calls if c["params"]["chat_id"] == 7]
        self.assertEqual(len(gus), 1)
        self.assertGreaterEqual(gus[0]["at_ms"] - limited, 2900)
        self.assertEqual(d.stop(), 0)

    def test_wake_from_suspend_restarts_polls_and_backoffs(self):
        """After a suspend (CLOCK_BOOTTIME ahead of CLOCK_MONOTONIC) every
        held poll starts again, and a bot waiting out a backoff tries at
        once: the network it failed on may be gone."""
        work = tempfile.mkdtemp(prefix="bf-sleep-")
        self.addCleanup(shutil.rmtree, work, True)
        slept = os.path.join(work, "slept_ms")
        env = dict(preload("SLEEP_CLOCK"), SLEEP_CLOCK_FILE=slept)
        self.fb.config(A, webhook="https://example.org/hook")
        d = self.two_bots(args=("--poll-timeout", "30"), env=env)
        d.wait_log(r"bot a: a webhook is set for this token")  # retried in 60 s
        self.wait_polling(B)
        polls_b = self.fb.state(B)["get_updates_calls"]
        self.fb.config(A, webhook=None)
        with open(slept, "w") as f:
            f.write("120000")
        d.wait_log(r"the machine was suspended for 1[12]\d\.\d s: restarting every poll")
        self.fb.wait_state(B, timeout=5, min_get_updates_calls=polls_b + 1)
        self.wait_polling(A, timeout=5)
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 1), ["Hello, Al!"])
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_keepalive_gives_up_on_a_dead_path_before_the_poll_deadline(self):
        for timeout, want in (("30", (10, 5)), ("6", (2, 1))):
            log = tempfile.mktemp(prefix="bf-sockopts-")
            self.addCleanup(lambda p=log: os.path.exists(p) and os.unlink(p))
            d = self.two_bots(args=("--poll-timeout", timeout),
                              env=dict(preload("SOCKOPTS"), SOCKOPTS_LOG=log))
            self.wait_polling(A)
            self.wait_polling(B)
            self.assertEqual(d.stop(), 0)
            with open(log) as f:
                lines = set(f.read().split("\n")) - {""}
            idle, intvl = want
            self.assertEqual(lines, {"TCP_KEEPIDLE %d" % idle, "TCP_KEEPINTVL %d" % intvl,
                                     "TCP_KEEPCNT 3"})
            self.assertLess(idle + 3 * intvl, int(timeout))

    def test_404_on_a_send_drops_it_but_is_not_a_bad_token(self):
        d = self.two_bots()
        self.wait_polling(A)
        self.fb.add_faults(A, {"method": "sendMessage", "status": 404})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        d.wait_log(r"bot a: dropped a sendMessage to chat 3: Not Found")
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 1), ["Hello, Al!"])
        self.assertNotIn("rejects its token", d.log())
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_update_ids_may_start_again_lower(self):
        self.fb.config(A, next_update_id=1000)
        d = self.two_bots()
        self.wait_polling(A)
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 1), ["Hello, Al!"])
        # Telegram numbers again from 1, far below the confirmed offset
        self.fb.config(A, next_update_id=1)
        self.fb.message(A, "/start", user_id=4, first_name="Bo")
        self.fb.message(A, "/start", user_id=5, first_name="Cy")
        self.assertEqual(self.texts(A, 3), ["Hello, Al!", "Hello, Bo!", "Hello, Cy!"])
        # the new numbering is what a restart continues from: nothing again
        self.assertEqual(d.stop(), 0)
        d.restart()
        self.wait_polling(A)
        self.fb.message(A, "/start", user_id=6, first_name="Di")
        self.assertEqual(self.texts(A, 4), ["Hello, Al!", "Hello, Bo!", "Hello, Cy!", "Hello, Di!"])
        self.assertEqual(d.stop(), 0)

    def test_updates_it_cannot_read_are_skipped(self):
        d = self.two_bots()
        self.wait_polling(A)
        chat = {"id": 3, "type": "private"}
        for u in ({"message": "text"},
                  {"message": {"message_id": 1, "chat": {"id": "x"}, "text": "/start"}},
                  {"message": {"message_id": 2, "from": {"id": 3}, "chat": chat, "text": 5}},
                  {"message": {"message_id": 3, "from": {"id": 3, "first_name": 7}, "chat": chat}},
                  {"callback_query": {"id": "q1", "from": {"id": 3}, "data": "zz"}},
                  {"callback_query": {"id": "q2", "from": {"id": 3}, "data": 1,
                                      "message": {"message_id": 9, "chat": chat}}}):
            self.fb.raw_update(A, u)
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 1), ["Hello, Al!"])
        # confirmed, not retried: after a restart nothing comes again
        self.assertEqual(d.stop(), 0)
        self.assertEqual(self.fb.state(A)["pending_updates"], 0)
        d.restart()
        self.wait_polling(A)
        self.assert_b_answers()
        self.assertEqual(len(self.fb.sent(A, method="sendMessage")["calls"]), 1)
        self.assertEqual(d.stop(), 0)

    def test_connections_are_reused(self):
        d = self.two_bots()
        self.wait_polling(A)
        before = self.fb.stats()["connections_total"]
        for i in range(20):
            self.fb.message(A, "/start", user_id=10 + i, first_name="U%d" % i)
            self.texts(A, i + 1)
        # 20 polls and 20 replies, over a handful of connections (the
        # test's own control connection included)
        self.assertLessEqual(self.fb.stats()["connections_total"] - before, 6)
        self.assertEqual(d.stop(), 0)

    def test_many_bots_share_one_name_lookup(self):
        """With a host name in --telegram-api, 20 bots starting together
        make one lookup between them (one call goes first, and its answer
        is in a DNS cache every request shares), not one each."""
        log = tempfile.mktemp(prefix="bf-gai-")
        self.addCleanup(lambda: os.path.exists(log) and os.unlink(log))
        ids = range(410, 430)
        d = self.many_bots(ids, url=self.fb.url.replace("127.0.0.1", "api.botfactory.test"),
                           env=dict(preload("GAI_LOG_SHIM"), GAI_LOG=log))
        for i in ids:
            self.wait_polling(i)
        self.fb.message(ids[-1], "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(ids[-1], 1), ["Hello, Al!"])
        with open(log) as f:
            lookups = f.read().split()
        self.assertEqual(set(lookups), {"api.botfactory.test"})
        self.assertLessEqual(len(lookups), 2, lookups)
        self.assertEqual(d.stop(), 0)

    def test_replies_wait_for_a_connection_under_a_small_open_files_limit(self):
        """40 bots under an open-files limit of 160 (room for 80
        connections): 40 polls and 160 replies at once do not fit, and the
        replies wait for a connection instead of failing."""
        ids = range(440, 480)
        d = self.many_bots(ids, nofile=160)
        d.wait_log(r"open-files limit 160$")
        for i in ids:
            self.wait_polling(i)
        # Telegram takes 300 ms per reply: all of them are in flight at once
        for i in ids:
            self.fb.add_faults(i, {"method": "sendMessage", "delay_ms": 300, "count": 4})
        for i in ids:
            self.fb.inject(i, [{"text": "/start", "user_id": u, "first_name": "U%d" % u}
                               for u in (1, 2, 3, 4)])
        for i in ids:
            self.assertEqual(sorted(self.texts(i, 4, timeout=30)),
                             ["Hello, U1!", "Hello, U2!", "Hello, U3!", "Hello, U4!"])
        self.assertNotIn("failed", d.log())
        self.assertEqual(d.stop(), 0)

    def test_sigterm_during_a_slow_name_lookup(self):
        """A lookup libcurl's resolver thread is stuck in (a slow DNS
        server) holds neither the loop nor the shutdown: the daemon is not
        waiting for that thread to finish."""
        log = tempfile.mktemp(prefix="bf-gai-")
        self.addCleanup(lambda: os.path.exists(log) and os.unlink(log))
        env = dict(preload("GAI_LOG_SHIM"), GAI_DELAY_MS="4000", GAI_LOG=log,
                   TA=self.token(A))
        url = self.fb.url.replace("127.0.0.1", "slow.test")
        d = Daemon(url, {"a.yaml": self.spec(HELLO, "TA")}, env=env)
        self.daemons.append(d)
        d.start()
        d.wait_log(r"a first call to the Bot API host, for its address")
        # the shim logs the name as the lookup begins, then sleeps
        deadline = time.monotonic() + 10
        while not (os.path.exists(log) and "slow.test" in open(log).read()):
            self.assertLess(time.monotonic(), deadline, "no lookup started")
            time.sleep(0.005)
        t0 = time.monotonic()
        self.assertEqual(d.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - t0, 2.0)

    def test_sighup_before_the_specs_are_read(self):
        """While the first call to a slow API host is pending, the specs
        directory is not open yet: a SIGHUP then is noted, not a crash."""
        import signal
        env = dict(preload("GAI_LOG_SHIM"), GAI_DELAY_MS="2000", TA=self.token(A))
        url = self.fb.url.replace("127.0.0.1", "slow.test")
        d = Daemon(url, {"a.yaml": self.spec(HELLO, "TA")}, env=env)
        self.daemons.append(d)
        d.start()
        d.wait_log(r"a first call to the Bot API host, for its address")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"SIGHUP: .* is read once the first call to the Bot API ends")
        self.wait_polling(A, timeout=10)
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 1), ["Hello, Al!"])
        self.assertEqual(d.stop(), 0)

    def test_a_failed_button_answer_does_not_hold_the_others(self):
        d = self.two_bots(spec_a=BUTTONS)
        self.wait_polling(A)
        press = {u: self.pick(u) for u in (3, 4)}
        self.fb.add_faults(A, {"method": "answerCallbackQuery", "status": 500})
        self.fb.callback(A, press[3][0], press[3][1], user_id=3)
        [failed] = self.fb.wait_sent(A, 1, method="answerCallbackQuery", all=True)
        self.assertFalse(failed["ok"])
        self.fb.callback(A, press[4][0], press[4][1], user_id=4)
        calls = self.fb.wait_sent(A, 3, method="answerCallbackQuery", all=True, timeout=10)
        # the other user's answer goes at once; the failed one 1 s later
        ids = [c["params"]["callback_query_id"] for c in calls]
        self.assertEqual(ids[0], ids[2])
        self.assertNotEqual(ids[0], ids[1])
        self.assertTrue(calls[1]["ok"] and calls[2]["ok"])
        self.assertLess(calls[1]["at_ms"] - calls[0]["at_ms"], 900)
        self.assertGreaterEqual(calls[2]["at_ms"] - calls[0]["at_ms"], 980)
        self.assertEqual(d.stop(), 0)

    def test_too_many_bots_for_the_open_files_limit_are_announced(self):
        d = self.many_bots(range(480, 510), nofile=90)
        d.wait_log(r"30 spec files, but the open-files limit leaves room for 32 connections")
        self.assertEqual(d.stop(), 0)

    def test_status_and_counters_on_sigusr1(self):
        d = self.daemon({"a.yaml": self.spec(HELLO, "TA"), "b.yaml": self.spec(HELLO, "TB"),
                         "c.yaml": self.spec(HELLO, "TC")},
                        env={"TA": self.token(A), "TB": self.token(B)})
        self.wait_polling(A)
        self.wait_polling(B)
        self.fb.add_faults(A, {"method": "sendMessage", "status": 500})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 1, timeout=10), ["Hello, Al!"])
        self.fb.add_faults(A, {"method": "sendMessage", "status": 403})
        self.fb.message(A, "/start", user_id=4, first_name="Di")
        d.wait_log(r"bot a: dropped a sendMessage to chat 4")
        self.assert_b_answers()
        self.report(d, [r"^info: bot a: running; updates 2 \(skipped 0\), sent 1, dropped 1, retries 1, polls [2-9]",
                        r"^info: bot b: running; updates 1 \(skipped 0\), sent 1, dropped 0, retries 0, polls [1-9]",
                        r"^info: bot c: disabled: .*TC"])
        # a bot whose token Telegram refuses says so
        self.fb.add_faults(A, {"method": "getUpdates", "status": 401})
        self.fb.message(A, "/start", user_id=3)
        d.wait_log(r"bot a: Telegram rejects its token")
        self.report(d, [r"^info: bot a: unauthorized: 401 Unauthorized on getUpdates"])
        self.assertEqual(d.stop(), 0)

    def test_a_button_answer_waiting_for_a_free_slot_does_not_spin(self):
        """A button answer due for its retry while every send slot is busy
        waits for a slot without busy-looping the send timer."""
        d = self.two_bots(spec_a=BUTTONS)
        self.wait_polling(A)
        data, mid = self.pick(3)
        self.fb.add_faults(A, {"method": "answerCallbackQuery", "status": 500})
        self.fb.callback(A, data, mid, user_id=3)
        self.fb.wait_sent(A, 1, method="answerCallbackQuery", all=True)
        # the 4 send slots busy for 3 s: the answer is due after 1 s
        self.fb.add_faults(A, {"method": "sendMessage", "delay_ms": 3000, "count": 4})
        self.fb.inject(A, [{"text": "/start", "user_id": u, "first_name": "U"} for u in (4, 5, 6, 7)])
        self.wait_faults_taken(A)
        with open("/proc/%d/stat" % d.proc.pid) as f:
            before = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
        calls = self.fb.wait_sent(A, 2, method="answerCallbackQuery", all=True, timeout=10)
        with open("/proc/%d/stat" % d.proc.pid) as f:
            after = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
        self.assertTrue(calls[1]["ok"])
        # about 2 s of waiting for a slot: an idle loop uses almost no CPU
        self.assertLess((after - before) / os.sysconf("SC_CLK_TCK"), 0.5)
        self.assertEqual(d.stop(), 0)

    def test_report_names_a_spec_that_does_not_load(self):
        d = self.daemon({"a.yaml": self.spec(HELLO, "TA"), "z.yaml": "flows: nope\n"},
                        env={"TA": self.token(A)})
        self.wait_polling(A)
        self.report(d, [r"^info: bot a: running",
                        r"^info: bot z: not started: .*flows"], last="z")
        # a broken edit of a running bot: the last good version runs
        with open(os.path.join(d.specs_dir, "a.yaml"), "w") as f:
            f.write("flows: nope\n")
        d.wait_log(r"bot a: .*keeping the last good version running")
        self.report(d, [r"^info: bot a: running",
                        r"^info: bot a: its spec file has errors \(the last good version runs\)"],
                    last="z")
        self.assertEqual(d.stop(), 0)

    def test_signals_during_shutdown_do_not_kill_it(self):
        import signal
        d = self.two_bots()
        self.wait_polling(A)
        self.fb.add_faults(A, {"method": "sendMessage", "delay_ms": 1500})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.wait_faults_taken(A)  # a reply in flight: the stop waits for it
        d.proc.send_signal(signal.SIGTERM)
        d.wait_log(r"stopping$")
        d.proc.send_signal(signal.SIGUSR1)
        d.proc.send_signal(signal.SIGHUP)
        self.assertEqual(d.stop(), 0)
        d.wait_log(r"stopping: signal %d ignored" % signal.SIGUSR1)
        d.wait_log(r"^info: stopped$")
        # the reply was acknowledged: nothing is sent again after a restart
        d.restart()
        self.wait_polling(A)
        self.assertNotIn("pending repl", d.log())
        self.assertEqual(len(self.fb.sent(A, method="sendMessage")["calls"]), 1)
        self.assertEqual(d.stop(), 0)

    def test_sigterm_while_a_reply_hangs(self):
        # b stops at once; a's reply gets the 3 s grace, then is abandoned
        # (the grace used to walk b's freed registry entry); the request
        # deadline is longer than the grace
        d = self.two_bots(args=("--request-timeout", "20"))
        self.wait_polling(A)
        self.wait_polling(B)
        self.fb.add_faults(A, {"method": "sendMessage", "hang": True})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.wait_faults_taken(A)
        self.assertEqual(d.stop(timeout=30), 0)
        d.restart()  # the reply was not accepted: it is sent again
        self.assertEqual(self.texts(A, 1, timeout=15), ["Hello, Al!"])
        self.assertEqual(d.stop(), 0)

    def test_migration_while_a_reply_to_the_supergroup_is_in_flight(self):
        d = self.two_bots()
        self.wait_polling(A)
        self.fb.add_faults(A, {"method": "sendMessage", "chat_id": -1005, "delay_ms": 1500},
                           {"method": "sendMessage", "chat_id": -5, "status": 400,
                            "migrate_to_chat_id": -1005})
        self.fb.message(A, "/start", user_id=4, first_name="New", chat_id=-1005,
                        chat_type="supergroup")
        self.wait_faults_taken(A, left=1)  # the reply to -1005 is in flight
        self.fb.message(A, "/start", user_id=3, first_name="Old", chat_id=-5,
                        chat_type="group")
        d.wait_log(r"bot a: chat -5 became supergroup -1005")

        def both(calls):
            ok = [c["params"]["text"] for c in calls if c.get("error_code") is None]
            return len(ok) >= 2
        calls = self.wait_until(A, both, timeout=20)
        ok = sorted(c["params"]["text"] for c in calls if c.get("error_code") is None)
        self.assertEqual(ok, ["Hello, New!", "Hello, Old!"])
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_proxy_is_chosen_by_the_scheme_and_no_proxy_is_obeyed(self):
        # port 9 on loopback: nothing listens, a proxy there fails at once
        dead = "http://127.0.0.1:9"
        for env in ({"https_proxy": dead},                         # not for http
                    {"http_proxy": dead, "no_proxy": "127.0.0.1"}):  # excepted
            self.fb.reset()
            d = self.daemon({"a.yaml": self.spec(HELLO, "TA")},
                            env=dict(env, TA=self.token(A)))
            self.wait_polling(A)
            self.fb.message(A, "/start", user_id=3, first_name="Al")
            self.assertEqual(self.texts(A, 1), ["Hello, Al!"])
            self.assertEqual(d.stop(), 0)
        # and a proxy that applies is used (and fails here)
        self.fb.reset()
        d = self.daemon({"a.yaml": self.spec(HELLO, "TA")},
                        env={"http_proxy": dead, "no_proxy": "", "TA": self.token(A)})
        d.wait_log(r"bot a: getMe failed")
        self.assertEqual(d.stop(), 0)

    def test_hung_poll_is_abandoned_and_retried(self):
        # poll timeout 1 s: the client deadline is 1 + 2 s
        d = self.two_bots(args=("--poll-timeout", "1"))
        self.wait_polling(A)
        self.fb.add_faults(A, {"method": "getUpdates", "hang": True})
        calls_before = self.fb.state(A)["get_updates_calls"]
        self.fb.wait_state(A, timeout=15, min_get_updates_calls=calls_before + 2)
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        self.assertEqual(self.texts(A, 1, timeout=15), ["Hello, Al!"])
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_403_drops_the_reply_and_carries_on(self):
        d = self.two_bots()
        self.wait_polling(A)
        self.fb.add_faults(A, {"method": "sendMessage", "status": 403, "chat_id": 3,
                               "description": "Forbidden: bot was blocked by the user"})
        self.fb.message(A, "/start", user_id=3, first_name="Al")
        d.wait_log(r"bot a: dropped a sendMessage to chat 3: Forbidden: bot was blocked")
        self.fb.message(A, "/start", user_id=4, first_name="Di")
        calls = self.fb.wait_sent(A, 2, method="sendMessage", all=True)
        self.assertEqual(calls[0]["error_code"], 403)
        self.assertEqual(calls[1]["params"]["text"], "Hello, Di!")
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_migrate_to_supergroup(self):
        d = self.two_bots()
        self.wait_polling(A)
        self.fb.add_faults(A, {"method": "sendMessage", "status": 400, "chat_id": -5,
                               "description": "Bad Request: group chat was upgraded to a supergroup chat",
                               "migrate_to_chat_id": -1005})
        self.fb.message(A, "/name", user_id=3, chat_id=-5, chat_type="group")
        d.wait_log(r"bot a: chat -5 became supergroup -1005")
        calls = self.fb.wait_sent(A, 2, method="sendMessage", all=True)
        self.assertEqual(calls[1]["params"]["chat_id"], -1005)
        self.assertEqual(calls[1]["params"]["text"], "Your name?")
        # the conversation moved too: the answer from the supergroup continues it
        self.fb.message(A, "Kim", user_id=3, chat_id=-1005, chat_type="supergroup")
        calls = self.fb.wait_sent(A, 3, method="sendMessage", all=True)
        self.assertEqual(calls[2]["params"]["text"], "Hi Kim")
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_stall_restarts_every_poll(self):
        """A frozen process (like a laptop lid closed) restarts its polls at
        once when it runs again, instead of waiting on dead connections."""
        import signal
        import time
        d = self.two_bots()
        self.wait_polling(A)
        self.wait_polling(B)
        calls_a = self.fb.state(A)["get_updates_calls"]
        calls_b = self.fb.state(B)["get_updates_calls"]
        d.proc.send_signal(signal.SIGSTOP)
        time.sleep(6)  # the stall itself (over the 2 s watch + 3 s threshold)
        d.proc.send_signal(signal.SIGCONT)
        d.wait_log(r"the machine stalled for .* s: restarting every poll")
        self.fb.wait_state(A, min_get_updates_calls=calls_a + 1)
        self.fb.wait_state(B, min_get_updates_calls=calls_b + 1)
        self.assert_b_answers()
        self.assertEqual(d.stop(), 0)

    def test_unresolvable_api_host(self):
        """Name resolution failing for many bots at once (the resolver's own
        sockets come and go) is a transient error, never a crash."""
        from harness import Daemon
        specs = {"b%d.yaml" % i: self.spec(HELLO, "T%d" % i) for i in range(30)}
        env = {"T%d" % i: self.token(800 + i) for i in range(30)}
        d = Daemon("http://nonexistent.invalid:1", specs, env=env)
        self.daemons.append(d)
        d.start()
        for i in range(30):
            d.wait_log(r"bot b%d: getMe failed" % i, timeout=20)
        # and it keeps retrying
        d.wait_log(r"bot b0: getMe failed", start=d.wait_log(r"bot b0: getMe failed") + 1,
                   timeout=20)
        self.assertTrue(d.alive())
        self.assertEqual(d.stop(), 0)


THROTTLED = """
throttle: {chat: 2/s, bot: 100/s}
flows:
  - entry_cmd: /four
    steps: [{reply: one}, {reply: two}, {reply: three}, {reply: four}]
"""


BOT_THROTTLED = """
throttle: {bot: 2/s, group: 1/s}
flows:
  - entry_cmd: /start
    steps: [{reply: "hi {{user.first_name}}"}]
  - entry_cmd: /two
    steps: [{reply: one}, {reply: two}]
"""


class ThrottleTest(BotTest):
    def test_bot_and_group_throttles(self):
        tok = self.token(452)
        d = self.daemon({"t.yaml": self.spec(BOT_THROTTLED, "T")}, env={"T": tok})
        self.wait_polling(452)
        # four private chats at once: the bot's bucket lets 2 go, then one
        # every 500 ms, whatever the chat
        self.fb.inject(452, [{"text": "/start", "user_id": u, "first_name": "U%d" % u}
                             for u in (1, 2, 3, 4)])
        calls = self.fb.wait_sent(452, 4, method="sendMessage", timeout=10)
        at = [c["at_ms"] for c in calls]
        self.assertGreaterEqual(at[2] - at[0], 450)
        self.assertGreaterEqual(at[3] - at[0], 950)
        self.assertEqual(sorted(c["params"]["text"] for c in calls),
                         ["hi U1", "hi U2", "hi U3", "hi U4"])
        # a group: one message a second there (the bot's bucket allows 2/s)
        last = calls[-1]["seq"]
        self.fb.message(452, "/two", user_id=5, chat_id=-7, chat_type="group")
        calls = self.fb.wait_sent(452, 2, method="sendMessage", after=last, timeout=10)
        self.assertEqual([c["params"]["text"] for c in calls], ["one", "two"])
        self.assertGreaterEqual(calls[1]["at_ms"] - calls[0]["at_ms"], 950)
        self.assertEqual(d.stop(), 0)

    def test_chat_throttle_spaces_messages(self):
        tok = self.token(451)
        d = self.daemon({"t.yaml": self.spec(THROTTLED, "T")}, env={"T": tok})
        self.wait_polling(451)
        self.fb.message(451, "/four", user_id=3)
        calls = self.fb.wait_sent(451, 4, method="sendMessage", timeout=10)
        self.assertEqual([c["params"]["text"] for c in calls], ["one", "two", "three", "four"])
        # a burst of 2, then one every 500 ms
        at = [c["at_ms"] for c in calls]
        self.assertGreaterEqual(at[2] - at[0], 450)
        self.assertGreaterEqual(at[3] - at[0], 950)
        self.assertEqual(d.stop(), 0)

    def test_idle_throttled_chats_are_freed(self):
        # a chat's queue is kept while its bucket remembers recent sends,
        # and freed once the bucket is full again (here within 1 ms)
        tok = self.token(453)
        spec = "throttle: {chat: 10000/s}\n" + HELLO
        d = self.daemon({"t.yaml": self.spec(spec, "T")}, env={"T": tok})
        self.wait_polling(453)
        for user in range(1, 17):  # as many chats as the first table holds
            self.fb.message(453, "/start", user_id=user)
        self.fb.wait_sent(453, 16, method="sendMessage", timeout=10)
        # every answer is back (fakebot records a call before the daemon
        # reads its answer: a chat may still be busy a moment longer)
        self.report(d, [r"bot t: .*sent 16\b"], last="t")
        mark = len(d.lines)
        self.fb.message(453, "/start", user_id=17)  # the table is full
        # (the last chat's bucket may still be refilling within the same ms)
        d.wait_log(r"bot t: freed 1[56] idle chat queues", start=mark)
        self.assertEqual(len(self.fb.wait_sent(453, 17, method="sendMessage")), 17)
        self.assertEqual(d.stop(), 0)

    def test_unthrottled_by_default(self):
        tok = self.token(452)
        d = self.daemon({"t.yaml": self.spec(THROTTLED.replace("throttle: {chat: 2/s, bot: 100/s}\n", ""), "T")},
                        env={"T": tok})
        self.wait_polling(452)
        self.fb.message(452, "/four", user_id=3)
        calls = self.fb.wait_sent(452, 4, method="sendMessage", timeout=10)
        self.assertLess(calls[3]["at_ms"] - calls[0]["at_ms"], 450)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
