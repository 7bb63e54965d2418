#!/usr/bin/env python3
"""Tests of fakebot, the fake Telegram Bot API server, through real HTTP.

Each test talks to a fakebot process on an ephemeral loopback port. Nothing
sleeps and hopes: a test waits for an event (a held poll, a recorded call, a
response) with a deadline, through the server's long-polling control API or a
socket timeout. Run:

    FAKEBOT=build/tests/fakebot/fakebot python3 tests/fakebot/test_fakebot.py

The server must exit 0 on SIGTERM after every test class; under ASan a leak
makes that exit code non-zero, so leaks fail the tests.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from fakebot import FakeBot, FakeBotError, token  # noqa: E402

BOT = 1001
TOK = token(BOT)
WAIT = 10.0  # seconds: the deadline of every wait (generous for ASan)

CONFLICT_OTHER = ("Conflict: terminated by other getUpdates request; make sure "
                  "that only one bot instance is running")
CONFLICT_WEBHOOK = ("Conflict: can't use getUpdates method while webhook is "
                    "active; use deleteWebhook to delete the webhook first")
TOO_OLD = ("Bad Request: query is too old and response timeout expired or "
           "query ID is invalid")


def fakebot_binary():
    path = os.environ.get("FAKEBOT")
    if not path:
        for cand in ("build/tests/fakebot/fakebot", "build-ci/tests/fakebot/fakebot"):
            p = os.path.join(HERE, "..", "..", cand)
            if os.path.exists(p):
                path = p
                break
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError("set FAKEBOT to the fakebot binary (got %r)" % path)
    return path


class _Shared:
    """A socket's buffered reader that http.client.HTTPResponse can share:
    several responses are read from one stream (pipelining) without any of
    them closing it."""

    def __init__(self, sock):
        self.sock = sock
        self.f = sock.makefile("rb")

    def makefile(self, *a, **k):
        return self

    def readline(self, *a):
        return self.f.readline(*a)

    def read(self, *a):
        return self.f.read(*a)

    def readinto(self, b):
        return self.f.readinto(b)

    def peek(self, *a):
        return self.f.peek(*a)

    def flush(self):
        pass

    def close(self):
        pass

    def response(self):
        """Reads the next response: (status, headers dict, body bytes)."""
        r = http.client.HTTPResponse(self)
        r.begin()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body

    def response_json(self):
        status, headers, body = self.response()
        return status, json.loads(body)


def raw_socket(fb, timeout=WAIT):
    s = socket.create_connection(("127.0.0.1", fb.port), timeout=timeout)
    return s, _Shared(s)


def get_request(path, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (path, extra)).encode()


def post_json(path, obj):
    body = json.dumps(obj).encode()
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (path, len(body))).encode()
    return head + body


class FakebotCase(unittest.TestCase):
    """One server per class, reset before each test."""

    fb = None

    @classmethod
    def setUpClass(cls):
        cls.fb = FakeBot(fakebot_binary()).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.fb.stop()
        if rc != 0:
            raise AssertionError("fakebot exited with %s on SIGTERM" % rc)

    def setUp(self):
        self.fb.reset()

    def call(self, method, params=None, tok=TOK, **kw):
        return self.fb.api(tok, method, params, **kw)

    def ok(self, method, params=None, tok=TOK, **kw):
        status, body = self.call(method, params, tok=tok, **kw)
        self.assertEqual(status, 200, body)
        self.assertIs(body["ok"], True, body)
        return body["result"]

    def fails(self, method, params, code, description, tok=TOK, **kw):
        status, body = self.call(method, params, tok=tok, **kw)
        self.assertEqual(status, code, body)
        self.assertEqual(body["ok"], False)
        self.assertEqual(body["error_code"], code)
        self.assertEqual(body["description"], description)
        return body

    def poll_async(self, params, timeout=WAIT):
        """Sends getUpdates on a new connection without reading the answer:
        returns the connection; .getresponse() reads it later."""
        conn = self.fb.connect(timeout=timeout)
        conn.request("POST", "/bot%s/getUpdates" % TOK, body=json.dumps(params),
                     headers={"Content-Type": "application/json"})
        return conn

    @staticmethod
    def read_json(conn):
        r = conn.getresponse()
        return r.status, json.loads(r.read())


class TestProcess(unittest.TestCase):
    """Start-up, the port file, signals, bad arguments."""

    def test_port_file_listening_line_and_sigterm(self):
        fb = FakeBot(fakebot_binary()).start()
        try:
            with open(fb.port_file) as f:
                self.assertEqual(f.read(), "%d\n" % fb.port)
            self.assertEqual(fb.listening_line,
                             "fakebot listening on 127.0.0.1:%d" % fb.port)
            self.assertEqual(fb.api(TOK, "getMe")[0], 200)
        finally:
            self.assertEqual(fb.stop(), 0)

    def test_sigint_with_held_requests_exits_0(self):
        fb = FakeBot(fakebot_binary()).start()
        held = []
        try:
            fb.add_faults(BOT, {"method": "getMe", "hang": True})
            c1 = fb.connect()
            c1.request("GET", "/bot%s/getMe" % TOK)
            held.append(c1)
            c2 = fb.connect()
            c2.request("GET", "/bot%s/getUpdates?timeout=50" % TOK)
            held.append(c2)
            st = fb.wait_state(BOT, held_polls=1, timeout=WAIT)
            self.assertEqual(st["held_polls"], 1)
            c3 = fb.connect()
            c3.request("GET", "/control/bots/%d/sent?min=5&wait_ms=50000" % BOT)
            held.append(c3)
        finally:
            rc = fb.stop(sig=signal.SIGINT)
            for c in held:
                c.close()
        self.assertEqual(rc, 0)

    def test_verbose_log_names_bots_never_tokens(self):
        with tempfile.TemporaryFile() as log:
            fb = FakeBot(fakebot_binary(), args=["--verbose"], stderr=log).start()
            try:
                fb.api(TOK, "getMe")
                fb.api(TOK, "sendMessage", {"chat_id": 1})
                fb.api(TOK + "x", "getMe")
            finally:
                self.assertEqual(fb.stop(), 0)
            log.seek(0)
            text = log.read().decode()
        self.assertIn("bot %d getMe -> 200" % BOT, text)
        self.assertIn("bot %d sendMessage -> 400" % BOT, text)
        self.assertIn("bot %d getMe -> 401" % BOT, text)
        self.assertNotIn(TOK.split(":")[1], text)

    def test_bad_arguments(self):
        for args in (["--listen", "nonsense"], ["--tls-cert", "x.pem"],
                     ["--bogus"], ["--max-sent", "0"]):
            r = subprocess.run([fakebot_binary()] + args, capture_output=True,
                               timeout=WAIT)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(b"fakebot:", r.stderr)

    def test_port_in_use(self):
        with FakeBot(fakebot_binary()) as fb:
            r = subprocess.run([fakebot_binary(), "--listen",
                                "127.0.0.1:%d" % fb.port], capture_output=True,
                               timeout=WAIT)
            self.assertEqual(r.returncode, 1)
            self.assertIn(b"listen", r.stderr)

    def test_help(self):
        r = subprocess.run([fakebot_binary(), "--help"], capture_output=True,
                           timeout=WAIT)
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"--port-file", r.stdout)


class TestTokens(FakebotCase):

    def test_get_me(self):
        me = self.ok("getMe")
        self.assertEqual(me, {
            "id": BOT, "is_bot": True, "first_name": "Bot %d" % BOT,
            "username": "bot%d_bot" % BOT, "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False})
        self.fb.config(BOT, username="shop_bot", first_name="Shop")
        me = self.ok("getMe")
        self.assertEqual((me["username"], me["first_name"]), ("shop_bot", "Shop"))
        self.fb.config(BOT, username=None)
        self.assertEqual(self.ok("getMe")["username"], "bot%d_bot" % BOT)

    def test_malformed_token_is_404(self):
        for path in ("/bot123/getMe", "/botabc:AAAAAAAAAAAAAAAAAAAAAAAA/getMe",
                     "/bot123:short/getMe", "/bot123:AAAAAAAAAAAAAAAAAAAAAA$A/getMe",
                     "/bot%s" % TOK, "/bot%s/" % TOK, "/bot%s/getMe/x" % TOK,
                     "/bot:AAAAAAAAAAAAAAAAAAAAAAAA/getMe", "/", "/elsewhere"):
            status, body = self.fb.request("GET", path)
            self.assertEqual(status, 404, path)
            self.assertEqual(body, {"ok": False, "error_code": 404,
                                    "description": "Not Found"}, path)

    def test_unknown_method(self):
        self.fails("sendTelegram", {}, 404, "Not Found: method not found")

    def test_method_names_are_case_insensitive(self):
        self.assertEqual(self.ok("GETME")["id"], BOT)
        self.assertEqual(self.ok("getme")["id"], BOT)

    def test_invalid_token(self):
        self.fb.config(BOT, invalid_token=True)
        for m, p in (("getMe", {}), ("getUpdates", {}),
                     ("sendMessage", {"chat_id": 1, "text": "x"})):
            self.fails(m, p, 401, "Unauthorized")
        self.fb.config(BOT, invalid_token=False)
        self.ok("getMe")

    def test_token_bound_on_first_use(self):
        self.ok("getMe")
        other = token(BOT, "ZZZ" + "z" * 30)
        self.fails("getMe", {}, 401, "Unauthorized", tok=other)
        self.assertTrue(self.fb.state(BOT)["token_bound"])
        self.fb.config(BOT, token=other)  # the token was "revoked" and replaced
        self.ok("getMe", tok=other)
        self.fails("getMe", {}, 401, "Unauthorized")
        with self.assertRaises(FakeBotError) as cm:
            self.fb.config(BOT, token=token(BOT + 1))
        self.assertEqual(cm.exception.status, 400)

    def test_bots_are_independent(self):
        self.ok("getMe", tok=token(2002))
        self.fb.config(2002, invalid_token=True)
        self.ok("getMe")
        self.fails("getMe", {}, 401, "Unauthorized", tok=token(2002))
        self.assertEqual(sorted(self.fb.bots()), [BOT, 2002])


class TestParams(FakebotCase):

    def test_encodings(self):
        p = {"chat_id": 42, "text": "héllo & bye"}
        for enc, meth in (("json", "POST"), ("form", "POST"), ("query", "GET"),
                          ("query", "POST")):
            m = self.ok("sendMessage", p, encoding=enc, http_method=meth)
            self.assertEqual(m["text"], "héllo & bye", enc)
            self.assertEqual(m["chat"]["id"], 42, enc)

    def test_form_reply_markup_is_decoded(self):
        kb = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
        m = self.ok("sendMessage", {"chat_id": 5, "text": "x", "reply_markup": kb},
                    encoding="form")
        self.assertEqual(m["reply_markup"], kb)
        call = self.fb.wait_sent(BOT, 1)[0]
        self.assertEqual(call["params"]["reply_markup"], kb)
        self.assertEqual(call["params"]["chat_id"], "5")  # form values stay strings

    def test_query_and_body_merge(self):
        status, body = self.fb.request(
            "POST", "/bot%s/sendMessage?chat_id=7&text=fromquery" % TOK,
            body={"text": "frombody"})
        self.assertEqual(status, 200)
        self.assertEqual((body["result"]["chat"]["id"], body["result"]["text"]),
                         (7, "frombody"))

    def test_bad_json_body(self):
        status, body = self.fb.request(
            "POST", "/bot%s/sendMessage" % TOK, raw_body=b"{nope",
            headers={"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertEqual(body["description"], "Bad Request: can't parse JSON object")

    def test_multipart_is_refused(self):
        status, body = self.fb.request(
            "POST", "/bot%s/sendMessage" % TOK, raw_body=b"--x--\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=x"})
        self.assertEqual(status, 400)
        self.assertIn("multipart", body["description"])


class TestGetUpdates(FakebotCase):

    def ids(self, result):
        return [u["update_id"] for u in result]

    def test_order_and_offset_confirmation(self):
        ids = self.fb.inject(BOT, [{"text": "a"}, {"text": "b"}, {"text": "c"}])
        self.assertEqual(ids, [1, 2, 3])
        r = self.ok("getUpdates")
        self.assertEqual(self.ids(r), [1, 2, 3])
        self.assertEqual([u["message"]["text"] for u in r], ["a", "b", "c"])
        self.assertEqual(self.ids(self.ok("getUpdates")), [1, 2, 3])  # unconfirmed
        self.assertEqual(self.ids(self.ok("getUpdates", {"offset": 3})), [3])
        self.assertEqual(self.fb.state(BOT)["pending_updates"], 1)
        self.assertEqual(self.ok("getUpdates", {"offset": 4}), [])
        st = self.fb.state(BOT)
        self.assertEqual(st["pending_updates"], 0)
        self.assertEqual(st["last_offset"], 4)
        self.assertEqual(st["get_updates_calls"], 4)

    def test_limit_and_clamping(self):
        self.fb.inject(BOT, [{"text": str(i)} for i in range(120)])
        self.assertEqual(len(self.ok("getUpdates", {"limit": 2})), 2)
        self.assertEqual(len(self.ok("getUpdates", {"limit": 0})), 1)
        self.assertEqual(len(self.ok("getUpdates", {"limit": 1000})), 100)
        self.assertEqual(len(self.ok("getUpdates")), 100)
        self.assertEqual(self.fb.state(BOT)["last_limit"], 100)

    def test_negative_offset_keeps_the_last(self):
        self.fb.inject(BOT, [{"text": str(i)} for i in range(5)])
        self.assertEqual(self.ids(self.ok("getUpdates", {"offset": -2})), [4, 5])
        self.assertEqual(self.fb.state(BOT)["pending_updates"], 2)

    def test_offset_far_in_the_future_is_ignored(self):
        self.fb.inject(BOT, [{"text": "a"}, {"text": "b"}])  # next id: 3
        # more than 10 past the next id: Telegram reads from the head instead
        self.assertEqual(self.ids(self.ok("getUpdates", {"offset": 14})), [1, 2])
        # 10 past the next id still confirms
        self.assertEqual(self.ok("getUpdates", {"offset": 13}), [])
        self.assertEqual(self.fb.state(BOT)["pending_updates"], 0)

    def test_update_ids_jump_backwards(self):
        self.fb.inject(BOT, [{"text": "a"}, {"text": "b"}])
        self.assertEqual(self.ok("getUpdates", {"offset": 3}), [])
        self.fb.config(BOT, next_update_id=1000)
        self.assertEqual(self.fb.message(BOT, "up"), 1000)
        self.assertEqual(self.ids(self.ok("getUpdates", {"offset": 3})), [1000])
        self.assertEqual(self.ok("getUpdates", {"offset": 1001}), [])
        self.fb.config(BOT, next_update_id=5)  # a new, lower sequence
        self.assertEqual(self.fb.message(BOT, "down"), 5)
        # the stale offset 1001 is far past the next id (6): ignored
        r = self.ok("getUpdates", {"offset": 1001})
        self.assertEqual(self.ids(r), [5])
        self.assertEqual(self.ok("getUpdates", {"offset": 6}), [])

    def test_backwards_ids_while_pending(self):
        self.fb.inject(BOT, [{"text": "a"}, {"text": "b"}])  # 1, 2
        self.fb.config(BOT, next_update_id=100)
        self.fb.message(BOT, "c")  # 100
        self.fb.config(BOT, next_update_id=50)
        self.fb.message(BOT, "d")  # 50, queued after 100
        self.assertEqual(self.ids(self.ok("getUpdates")), [1, 2, 100, 50])
        # offset 51 confirms everything below it, wherever it is in the queue
        self.assertEqual(self.ids(self.ok("getUpdates", {"offset": 51})), [100])

    def test_allowed_updates_is_sticky(self):
        self.fb.message(BOT, "hi")
        self.ok("sendMessage", {"chat_id": 1, "text": "pick"})
        self.fb.callback(BOT, "x", 2)
        r = self.ok("getUpdates", {"allowed_updates": ["callback_query"]})
        self.assertEqual([list(u)[1] for u in r], ["callback_query"])
        st = self.fb.state(BOT)
        self.assertEqual(st["allowed_updates"], ["callback_query"])
        self.assertEqual(st["filtered_updates"], 1)
        self.fb.message(BOT, "again")
        # not given: the previous setting stays
        r = self.ok("getUpdates", {"offset": r[-1]["update_id"] + 1})
        self.assertEqual(r, [])
        self.assertEqual(self.fb.state(BOT)["allowed_updates"], ["callback_query"])
        # an empty list means the default set again
        self.fb.message(BOT, "third")
        r = self.ok("getUpdates", {"allowed_updates": []})
        self.assertEqual([u["message"]["text"] for u in r], ["third"])
        self.assertEqual(self.fb.state(BOT)["allowed_updates"], [])

    def test_allowed_updates_as_form_string(self):
        self.fb.message(BOT, "m")
        self.ok("getUpdates", {"allowed_updates": ["message", "callback_query"]},
                encoding="query", http_method="GET")
        self.assertEqual(self.fb.state(BOT)["allowed_updates"],
                         ["message", "callback_query"])

    def test_default_kinds_exclude_chat_member(self):
        self.fb.raw_update(BOT, {"chat_member": {"chat": {"id": -5}}})
        self.fb.message(BOT, "m")
        r = self.ok("getUpdates")
        self.assertEqual([list(u)[1] for u in r], ["message"])
        self.fb.raw_update(BOT, {"chat_member": {"chat": {"id": -5}}})
        r = self.ok("getUpdates", {"offset": r[-1]["update_id"] + 1,
                                   "allowed_updates": ["chat_member"]})
        self.assertEqual([list(u)[1] for u in r], ["chat_member"])

    def test_long_poll_answered_on_inject(self):
        conn = self.poll_async({"timeout": 30})
        try:
            st = self.fb.wait_state(BOT, held_polls=1, timeout=WAIT)
            self.assertEqual(st["last_timeout"], 30)
            self.fb.message(BOT, "wake up")
            status, body = self.read_json(conn)  # socket timeout: WAIT, not 30 s
            self.assertEqual(status, 200)
            self.assertEqual(body["result"][0]["message"]["text"], "wake up")
            self.assertEqual(self.fb.state(BOT)["held_polls"], 0)
        finally:
            conn.close()

    def test_long_poll_times_out_empty(self):
        status, body = self.call("getUpdates", {"timeout": 1})
        self.assertEqual((status, body), (200, {"ok": True, "result": []}))
        st = self.fb.state(BOT)
        self.assertEqual((st["held_polls"], st["polls_held_total"]), (0, 1))

    def test_timeout_is_clamped(self):
        conn = self.poll_async({"timeout": 500})
        try:
            st = self.fb.wait_state(BOT, held_polls=1, timeout=WAIT)
            self.assertEqual(st["last_timeout"], 50)
            self.fb.message(BOT, "x")
            self.assertEqual(self.read_json(conn)[0], 200)
        finally:
            conn.close()

    def test_second_poll_terminates_the_first(self):
        a = self.poll_async({"timeout": 30})
        b = None
        try:
            self.fb.wait_state(BOT, held_polls=1, timeout=WAIT)
            b = self.poll_async({"timeout": 30})
            status, body = self.read_json(a)
            self.assertEqual(status, 409)
            self.assertEqual(body, {"ok": False, "error_code": 409,
                                    "description": CONFLICT_OTHER})
            st = self.fb.wait_state(BOT, min_get_updates_calls=2, held_polls=1,
                                    timeout=WAIT)
            self.assertEqual(st["conflicts_sent"], 1)
            self.fb.message(BOT, "for b")
            status, body = self.read_json(b)
            self.assertEqual(body["result"][0]["message"]["text"], "for b")
        finally:
            a.close()
            if b:
                b.close()

    def test_abandoned_poll_is_forgotten(self):
        conn = self.poll_async({"timeout": 30})
        self.fb.wait_state(BOT, held_polls=1, timeout=WAIT)
        conn.close()
        st = self.fb.wait_state(BOT, held_polls=0, timeout=WAIT)
        self.assertEqual(st["conflicts_sent"], 0)

    def test_webhook_blocks_get_updates(self):
        self.fb.config(BOT, webhook="https://example.invalid/hook")
        self.fails("getUpdates", {}, 409, CONFLICT_WEBHOOK)
        info = self.ok("getWebhookInfo")
        self.assertEqual(info["url"], "https://example.invalid/hook")
        self.assertIs(self.ok("deleteWebhook"), True)
        self.assertIsNone(self.fb.state(BOT)["webhook"])
        self.assertEqual(self.ok("getUpdates"), [])

    def test_set_webhook_ends_a_held_poll(self):
        conn = self.poll_async({"timeout": 30})
        try:
            self.fb.wait_state(BOT, held_polls=1, timeout=WAIT)
            self.assertIs(self.ok("setWebhook", {"url": "https://x.invalid/h"}), True)
            status, body = self.read_json(conn)
            self.assertEqual((status, body["description"]), (409, CONFLICT_WEBHOOK))
        finally:
            conn.close()
        self.fails("setWebhook", {"url": "http://plain.invalid/"}, 400,
                   "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")

    def test_control_webhook_ends_a_held_poll(self):
        conn = self.poll_async({"timeout": 30})
        try:
            self.fb.wait_state(BOT, held_polls=1, timeout=WAIT)
            st = self.fb.config(BOT, webhook="https://x.invalid/h")
            self.assertEqual((st["webhook"], st["held_polls"]), ("https://x.invalid/h", 0))
            status, body = self.read_json(conn)
            self.assertEqual((status, body["description"]), (409, CONFLICT_WEBHOOK))
        finally:
            conn.close()
        self.fb.config(BOT, webhook=None)
        self.assertEqual(self.ok("getUpdates"), [])

    def test_delete_webhook_drops_pending(self):
        self.fb.inject(BOT, [{"text": "a"}, {"text": "b"}])
        self.ok("deleteWebhook", {"drop_pending_updates": True})
        self.assertEqual(self.fb.state(BOT)["pending_updates"], 0)

    def test_poll_throttle(self):
        self.fb.config(BOT, poll_throttle=True)
        self.assertEqual(self.ok("getUpdates", {"offset": 0}), [])
        # the same offset again at once: Telegram makes it wait at least 3 s
        conn = self.poll_async({"offset": 0, "timeout": 0})
        try:
            st = self.fb.wait_state(BOT, held_polls=1, timeout=WAIT)
            self.assertEqual((st["last_timeout"], st["last_limit"]), (3, 1))
            self.fb.inject(BOT, [{"text": "a"}, {"text": "b"}])
            status, body = self.read_json(conn)
            self.assertEqual(len(body["result"]), 1)
        finally:
            conn.close()


class TestSendMessage(FakebotCase):

    def test_message_ids_per_chat(self):
        m1 = self.ok("sendMessage", {"chat_id": 100, "text": "one"})
        m2 = self.ok("sendMessage", {"chat_id": 100, "text": "two"})
        g1 = self.ok("sendMessage", {"chat_id": -100123, "text": "group"})
        self.assertEqual((m1["message_id"], m2["message_id"], g1["message_id"]),
                         (1, 2, 1))
        self.assertEqual(m1["chat"], {"id": 100, "first_name": "User 100",
                                      "type": "private"})
        self.assertEqual(g1["chat"], {"id": -100123, "title": "Chat -100123",
                                      "type": "supergroup"})
        self.assertEqual(m1["from"]["id"], BOT)
        self.assertIs(m1["from"]["is_bot"], True)
        self.assertIsInstance(m1["date"], int)
        self.assertNotIn("reply_markup", m1)

    def test_counter_shared_with_user_messages(self):
        self.fb.message(BOT, "/start", user_id=7, first_name="Ann", username="ann")
        m = self.ok("sendMessage", {"chat_id": 7, "text": "hi Ann"})
        self.assertEqual(m["message_id"], 2)
        self.assertEqual(m["chat"], {"id": 7, "first_name": "Ann",
                                     "username": "ann", "type": "private"})

    def test_validation(self):
        self.fails("sendMessage", {"text": "x"}, 400, "Bad Request: chat_id is empty")
        self.fails("sendMessage", {"chat_id": "", "text": "x"}, 400,
                   "Bad Request: chat_id is empty")
        self.fails("sendMessage", {"chat_id": "@somechannel", "text": "x"}, 400,
                   "Bad Request: chat not found")
        self.fails("sendMessage", {"chat_id": 1}, 400,
                   "Bad Request: message text is empty")
        self.fails("sendMessage", {"chat_id": 1, "text": ""}, 400,
                   "Bad Request: message text is empty")
        self.fails("sendMessage", {"chat_id": 1, "text": "x" * 4097}, 400,
                   "Bad Request: message is too long")
        self.ok("sendMessage", {"chat_id": 1, "text": "x" * 4096})
        # length counts UTF-16 code units: an emoji is two
        self.ok("sendMessage", {"chat_id": 1, "text": "\U0001F600" * 2048})
        self.fails("sendMessage", {"chat_id": 1, "text": "\U0001F600" * 2049}, 400,
                   "Bad Request: message is too long")
        self.fails("sendMessage", {"chat_id": 1, "text": "x", "parse_mode": "BBCode"},
                   400, "Bad Request: unsupported parse_mode")
        self.ok("sendMessage", {"chat_id": 1, "text": "*x*", "parse_mode": "MarkdownV2"})
        self.fails("sendMessage", {"chat_id": 1, "text": "x", "reply_markup": "{no"},
                   400, "Bad Request: can't parse reply keyboard markup JSON object")
        self.fails("sendMessage", {"chat_id": 1, "text": "x", "reply_markup":
                                   {"inline_keyboard": [[{"text": "A",
                                                          "callback_data": "d" * 65}]]}},
                   400, "Bad Request: BUTTON_DATA_INVALID")
        self.fails("sendMessage", {"chat_id": 1, "text": "x", "reply_markup":
                                   {"inline_keyboard": [[{"text": "A"}]]}},
                   400, "Bad Request: can't parse inline keyboard button: "
                   "Text buttons are unallowed in the inline keyboard")
        self.ok("sendMessage", {"chat_id": 1, "text": "x",
                                "reply_markup": {"remove_keyboard": True}})

    def test_invalid_utf8(self):
        status, body = self.fb.request(
            "POST", "/bot%s/sendMessage" % TOK, raw_body=b"chat_id=1&text=%FF%FE",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 400)
        self.assertEqual(body["description"],
                         "Bad Request: strings must be encoded in UTF-8")

    def test_strict_chats(self):
        self.fb.config(BOT, strict_chats=True)
        self.fails("sendMessage", {"chat_id": 55, "text": "x"}, 400,
                   "Bad Request: chat not found")
        self.fb.message(BOT, "hello", user_id=55)
        self.ok("sendMessage", {"chat_id": 55, "text": "x"})

    def test_reply_parameters(self):
        self.fb.message(BOT, "question", user_id=9)
        m = self.ok("sendMessage", {"chat_id": 9, "text": "answer",
                                    "reply_parameters": {"message_id": 1}})
        self.assertEqual(m["reply_to_message"]["text"], "question")
        self.fails("sendMessage", {"chat_id": 9, "text": "x",
                                   "reply_parameters": {"message_id": 99}},
                   400, "Bad Request: message to be replied not found")
        m = self.ok("sendMessage", {"chat_id": 9, "text": "x",
                                    "reply_parameters": {"message_id": 99,
                                                         "allow_sending_without_reply": True}})
        self.assertNotIn("reply_to_message", m)

    def test_calls_are_recorded(self):
        kb = {"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}
        self.ok("sendMessage", {"chat_id": 3, "text": "hi", "reply_markup": kb})
        self.fails("sendMessage", {"chat_id": 3}, 400,
                   "Bad Request: message text is empty")
        calls = self.fb.sent(BOT)["calls"]
        self.assertEqual(len(calls), 1)  # failed calls only with all=1
        c = calls[0]
        self.assertEqual((c["seq"], c["method"], c["ok"]), (1, "sendMessage", True))
        self.assertEqual(c["params"], {"chat_id": 3, "text": "hi", "reply_markup": kb})
        self.assertEqual(c["result"]["message_id"], 1)
        self.assertIsInstance(c["at_ms"], float)
        every = self.fb.sent(BOT, all=True)
        self.assertEqual([x["ok"] for x in every["calls"]], [True, False])
        self.assertEqual(every["calls"][1]["error_code"], 400)
        self.assertEqual(every["last_seq"], 2)
        self.assertEqual(self.fb.sent(BOT, after=1, all=True)["calls"][0]["seq"], 2)

    def test_sent_filters(self):
        self.ok("getMe")
        self.ok("sendMessage", {"chat_id": 1, "text": "a"})
        self.ok("sendChatAction", {"chat_id": 1, "action": "typing"})
        self.ok("sendMessage", {"chat_id": 1, "text": "b"})
        r = self.fb.sent(BOT, method="sendMessage")
        self.assertEqual([c["params"]["text"] for c in r["calls"]], ["a", "b"])
        self.assertEqual(r["last_seq"], 4)
        self.assertEqual(len(self.fb.sent(BOT, limit=2)["calls"]), 2)
        self.assertEqual(len(self.fb.sent(BOT, method="SENDMESSAGE", after=2)["calls"]), 1)

    def test_wait_sent_holds_until_enough(self):
        conn = self.fb.connect(timeout=WAIT + 5)
        try:
            conn.request("GET", "/control/bots/%d/sent?min=2&wait_ms=%d&method=sendMessage"
                         % (BOT, WAIT * 1000))
            self.ok("sendMessage", {"chat_id": 1, "text": "first"})
            self.ok("getMe")
            self.ok("sendMessage", {"chat_id": 1, "text": "second"})
            status, body = self.read_json(conn)
            self.assertEqual(status, 200)
            self.assertIs(body["timed_out"], False)
            self.assertEqual([c["params"]["text"] for c in body["calls"]],
                             ["first", "second"])
        finally:
            conn.close()

    def test_wait_sent_times_out(self):
        r = self.fb.control("GET", "bots/%d/sent" % BOT, min=1, wait_ms=100)
        self.assertEqual((r["calls"], r["timed_out"]), ([], True))
        with self.assertRaises(TimeoutError):
            self.fb.wait_sent(BOT, 1, timeout=0.1)

    def test_max_sent(self):
        self.fb.config(BOT, max_sent=3)
        for i in range(5):
            self.ok("sendMessage", {"chat_id": 1, "text": str(i)})
        r = self.fb.sent(BOT)
        self.assertEqual([c["params"]["text"] for c in r["calls"]], ["2", "3", "4"])
        self.assertEqual((r["dropped"], r["last_seq"]), (2, 5))

    def test_other_methods(self):
        self.ok("sendMessage", {"chat_id": 4, "text": "x"})
        self.assertIs(self.ok("sendChatAction", {"chat_id": 4, "action": "typing"}), True)
        self.assertIs(self.ok("deleteMessage", {"chat_id": 4, "message_id": 1}), True)
        self.fails("deleteMessage", {"chat_id": 4, "message_id": 5}, 400,
                   "Bad Request: message to delete not found")
        self.assertEqual(self.ok("getChat", {"chat_id": 4})["type"], "private")
        self.assertIs(self.ok("logOut"), True)
        self.assertIs(self.ok("close"), True)


class TestCallbacks(FakebotCase):

    def test_press_and_answer(self):
        kb = {"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}
        m = self.ok("sendMessage", {"chat_id": 8, "text": "Sure?", "reply_markup": kb})
        uid = self.fb.callback(BOT, "y", m["message_id"], user_id=8, first_name="Bo")
        u = self.ok("getUpdates")[0]
        self.assertEqual(u["update_id"], uid)
        cq = u["callback_query"]
        self.assertEqual(cq["id"], "cq-%d-1" % BOT)
        self.assertEqual(cq["data"], "y")
        self.assertEqual(cq["from"], {"id": 8, "is_bot": False, "first_name": "Bo"})
        self.assertEqual(cq["message"]["message_id"], m["message_id"])
        self.assertEqual(cq["message"]["text"], "Sure?")
        self.assertEqual(cq["message"]["reply_markup"], kb)
        self.assertEqual(cq["chat_instance"], "8")
        self.assertIs(self.ok("answerCallbackQuery",
                              {"callback_query_id": cq["id"], "text": "Done"}), True)
        call = self.fb.wait_sent(BOT, 1, method="answerCallbackQuery")[0]
        self.assertEqual(call["params"]["text"], "Done")
        # twice, unknown, or another bot's: all too old
        self.fails("answerCallbackQuery", {"callback_query_id": cq["id"]}, 400, TOO_OLD)
        self.fails("answerCallbackQuery", {"callback_query_id": "cq-%d-9" % BOT},
                   400, TOO_OLD)
        self.fails("answerCallbackQuery", {"callback_query_id": "nonsense"}, 400, TOO_OLD)
        self.fb.callback(2002, "z", 1)
        self.fails("answerCallbackQuery", {"callback_query_id": "cq-2002-1"}, 400, TOO_OLD)
        self.fails("answerCallbackQuery", {"callback_query_id": cq["id"] + "0"}, 400,
                   TOO_OLD)

    def test_press_on_unknown_message(self):
        self.fb.callback(BOT, "old", 77, chat_id=-100500, user_id=3)
        cq = self.ok("getUpdates")[0]["callback_query"]
        self.assertEqual(cq["message"], {"message_id": 77, "date": 0, "chat": {
            "id": -100500, "title": "Chat -100500", "type": "supergroup"}})


class TestCommands(FakebotCase):

    CMDS = [{"command": "start", "description": "Start"},
            {"command": "order", "description": "Place an order"}]

    def test_set_and_get(self):
        self.assertEqual(self.ok("getMyCommands"), [])
        self.assertIs(self.ok("setMyCommands", {"commands": self.CMDS}), True)
        self.assertEqual(self.ok("getMyCommands"), self.CMDS)
        st = self.fb.state(BOT)
        self.assertEqual(st["commands"], self.CMDS)
        self.assertEqual(st["set_my_commands_calls"], 1)
        scope = {"type": "chat", "chat_id": 42}
        self.ok("setMyCommands", {"commands": self.CMDS[:1], "scope": scope})
        self.ok("setMyCommands", {"commands": self.CMDS[1:], "language_code": "de"})
        self.assertEqual(self.ok("getMyCommands", {"scope": scope}), self.CMDS[:1])
        self.assertEqual(self.ok("getMyCommands", {"language_code": "de"}), self.CMDS[1:])
        self.assertEqual(self.ok("getMyCommands"), self.CMDS)
        self.assertEqual(len(self.fb.state(BOT)["commands_by_scope"]), 3)
        self.ok("deleteMyCommands")
        self.assertEqual(self.ok("getMyCommands"), [])
        self.assertEqual(self.fb.state(BOT)["commands"], [])
        # form encoding: a JSON-serialized list
        self.ok("setMyCommands", {"commands": self.CMDS}, encoding="form")
        self.assertEqual(self.ok("getMyCommands"), self.CMDS)

    def test_validation(self):
        for bad, desc in (([{"command": "Start", "description": "x"}],
                           "Bad Request: BOT_COMMAND_INVALID"),
                          ([{"command": "a" * 33, "description": "x"}],
                           "Bad Request: BOT_COMMAND_INVALID"),
                          ([{"command": "ok", "description": ""}],
                           "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID"),
                          ([{"command": "c%d" % i, "description": "d"} for i in range(101)],
                           "Bad Request: BOT_COMMANDS_TOO_MUCH")):
            self.fails("setMyCommands", {"commands": bad}, 400, desc)
        self.fails("setMyCommands", {}, 400,
                   "Bad Request: parameter \"commands\" is required")
        self.fails("setMyCommands", {"commands": self.CMDS, "scope": {"type": "moon"}},
                   400, "Bad Request: unsupported bot command scope type")
        self.assertEqual(self.fb.state(BOT)["set_my_commands_calls"], 0)


class TestEdits(FakebotCase):

    def test_edit_reply_markup(self):
        kb1 = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
        kb2 = {"inline_keyboard": [[{"text": "B", "callback_data": "b"}]]}
        m = self.ok("sendMessage", {"chat_id": 6, "text": "pick", "reply_markup": kb1})
        p = {"chat_id": 6, "message_id": m["message_id"], "reply_markup": kb2}
        e = self.ok("editMessageReplyMarkup", p)
        self.assertEqual((e["reply_markup"], e["text"]), (kb2, "pick"))
        self.assertIn("edit_date", e)
        body = self.fails("editMessageReplyMarkup", p, 400,
                          "Bad Request: message is not modified: specified new message "
                          "content and reply markup are exactly the same as a current "
                          "content and reply markup of the message")
        self.assertNotIn("parameters", body)
        e = self.ok("editMessageReplyMarkup", {"chat_id": 6, "message_id": m["message_id"]})
        self.assertNotIn("reply_markup", e)
        # the press sees the current markup
        self.ok("editMessageReplyMarkup", p)
        self.fb.callback(BOT, "b", m["message_id"], user_id=6)
        cq = self.ok("getUpdates")[0]["callback_query"]
        self.assertEqual(cq["message"]["reply_markup"], kb2)
        self.fails("editMessageReplyMarkup", {"chat_id": 6, "message_id": 99}, 400,
                   "Bad Request: message to edit not found")
        self.assertIs(self.ok("editMessageReplyMarkup", {"inline_message_id": "abc"}), True)
        edits = self.fb.sent(BOT, method="editMessageReplyMarkup")["calls"]
        self.assertEqual(len(edits), 4)

    def test_edit_text(self):
        m = self.ok("sendMessage", {"chat_id": 6, "text": "v1"})
        e = self.ok("editMessageText", {"chat_id": 6, "message_id": m["message_id"],
                                        "text": "v2"})
        self.assertEqual(e["text"], "v2")
        self.fails("editMessageText", {"chat_id": 6, "message_id": m["message_id"],
                                       "text": "v2"}, 400,
                   "Bad Request: message is not modified: specified new message "
                   "content and reply markup are exactly the same as a current "
                   "content and reply markup of the message")
        self.fails("editMessageText", {"chat_id": 6, "message_id": m["message_id"],
                                       "text": ""}, 400,
                   "Bad Request: message text is empty")


class TestFaults(FakebotCase):

    def test_429_with_retry_after_count_2(self):
        self.fb.add_faults(BOT, {"method": "sendMessage", "count": 2, "status": 429,
                                 "retry_after": 3})
        p = {"chat_id": 1, "text": "x"}
        for _ in range(2):
            body = self.fails("sendMessage", p, 429, "Too Many Requests: retry after 3")
            self.assertEqual(body["parameters"], {"retry_after": 3})
        self.ok("sendMessage", p)
        self.assertEqual(self.fb.faults(BOT), [])
        every = self.fb.sent(BOT, all=True)["calls"]
        self.assertEqual([c["ok"] for c in every], [False, False, True])

    def test_status_faults(self):
        cases = [
            ({"status": 401}, 401, "Unauthorized", None),
            ({"status": 409}, 409, CONFLICT_OTHER, None),
            ({"status": 409, "kind": "webhook"}, 409, CONFLICT_WEBHOOK, None),
            ({"status": 409, "kind": "other"}, 409, CONFLICT_OTHER, None),
            ({"status": 500}, 500, "Internal Server Error", None),
            ({"status": 403}, 403, "Forbidden: bot was blocked by the user", None),
            ({"status": 403, "description": "Forbidden: user is deactivated"}, 403,
             "Forbidden: user is deactivated", None),
            ({"status": 400, "description": "Bad Request: chat not found"}, 400,
             "Bad Request: chat not found", None),
            ({"status": 400, "migrate_to_chat_id": -1001234567890}, 400,
             "Bad Request: group chat was upgraded to a supergroup chat",
             {"migrate_to_chat_id": -1001234567890}),
        ]
        for rule, code, desc, params in cases:
            self.fb.add_faults(BOT, rule)
            body = self.fails("sendMessage", {"chat_id": -5, "text": "x"}, code, desc)
            self.assertEqual(body.get("parameters"), params, rule)
        self.ok("sendMessage", {"chat_id": -5, "text": "x"})

    def test_method_and_chat_filters(self):
        self.fb.add_faults(BOT, {"method": "sendMessage", "chat_id": 7, "count": 0,
                                 "status": 403})
        self.ok("getMe")
        self.ok("sendMessage", {"chat_id": 8, "text": "x"})
        for _ in range(3):  # count 0: until cleared
            self.fails("sendMessage", {"chat_id": 7, "text": "x"}, 403,
                       "Forbidden: bot was blocked by the user")
        self.fails("sendMessage", {"chat_id": "7", "text": "x"}, 403,
                   "Forbidden: bot was blocked by the user", encoding="form")
        faults = self.fb.faults(BOT)
        self.assertEqual(len(faults), 1)
        self.assertEqual(faults[0]["rule"]["chat_id"], 7)
        self.fb.clear_faults(BOT)
        self.ok("sendMessage", {"chat_id": 7, "text": "x"})

    def test_star_and_order(self):
        self.fb.add_faults(BOT, {"status": 500}, {"method": "*", "status": 502})
        self.fails("getMe", {}, 500, "Internal Server Error")
        self.fails("sendChatAction", {"chat_id": 1}, 502, "Bad Gateway")
        self.ok("getMe")

    def test_get_updates_faults(self):
        self.fb.add_faults(BOT, {"method": "getUpdates", "status": 409},
                           {"method": "getUpdates", "status": 429, "retry_after": 1})
        self.fails("getUpdates", {}, 409, CONFLICT_OTHER)
        self.fails("getUpdates", {}, 429, "Too Many Requests: retry after 1")
        self.assertEqual(self.ok("getUpdates"), [])
        st = self.fb.state(BOT)
        self.assertEqual(st["get_updates_calls"], 3)
        self.assertEqual(self.fb.sent(BOT, all=True)["calls"], [])  # polls unrecorded

    def test_hang(self):
        self.fb.add_faults(BOT, {"method": "sendMessage", "hang": True})
        with self.assertRaises(socket.timeout):
            self.call("sendMessage", {"chat_id": 1, "text": "x"}, timeout=0.3)
        self.ok("sendMessage", {"chat_id": 1, "text": "x"})
        hung = [c for c in self.fb.sent(BOT, all=True)["calls"] if not c["ok"]]
        self.assertEqual(hung[0]["description"], "fakebot fault: never answered")

    def test_drop(self):
        self.fb.add_faults(BOT, {"method": "getMe", "drop": True})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError)):
            self.call("getMe")
        self.ok("getMe")
        calls = self.fb.sent(BOT, all=True)["calls"]
        self.assertEqual([(c["ok"], c["error_code"] if not c["ok"] else 0)
                          for c in calls], [(False, -1), (True, 0)])

    def test_delay(self):
        self.fb.add_faults(BOT, {"method": "sendMessage", "delay_ms": 50},
                           {"method": "sendMessage", "delay_ms": 50, "status": 429,
                            "retry_after": 2})
        before = self.fb.stats()["methods"]["sendMessage"]
        m = self.ok("sendMessage", {"chat_id": 1, "text": "late"})
        self.assertEqual(m["text"], "late")
        self.fails("sendMessage", {"chat_id": 1, "text": "x"}, 429,
                   "Too Many Requests: retry after 2")
        # a delayed request is counted once
        self.assertEqual(self.fb.stats()["methods"]["sendMessage"] - before, 2)

    def test_raw_body(self):
        self.fb.add_faults(BOT, {"status": 502, "raw": "<html>Bad Gateway</html>"})
        status, body = self.call("getMe")
        self.assertEqual((status, body), (502, "<html>Bad Gateway</html>"))

    def test_rule_validation(self):
        for rule in ({"method": "getMe"}, {"status": 42}, {"status": 429, "bogus": 1},
                     {"retry_after": 3, "hang": True}, {"hang": "yes"},
                     {"delay_ms": 0}, {"status": 400, "count": "2"}, [1]):
            with self.assertRaises(FakeBotError) as cm:
                self.fb.control("POST", "bots/%d/faults" % BOT,
                                rule if isinstance(rule, list) else [rule])
            self.assertEqual(cm.exception.status, 400, rule)
            self.assertIn("error", cm.exception.body)
        self.assertEqual(self.fb.faults(BOT), [])


class TestControl(FakebotCase):

    def test_errors(self):
        for method, path, body, status in (
                ("POST", "/control/bots/1/updates", b"{bad json", 400),
                ("POST", "/control/bots/1/updates", b"", 400),
                ("GET", "/control/nothing", None, 404),
                ("GET", "/control/bots/abc/state", None, 400),
                ("GET", "/control/bots/1/updates", None, 405),
                ("PUT", "/control/bots/1/config", b"{}", 405),
                ("POST", "/control/bots/1/config", b'{"colour":"red"}', 400),
                ("POST", "/control/bots/1/config", b'{"next_update_id":"x"}', 400),
                ("POST", "/control/bots/1/updates", b'[{"chat_id":5}]', 400),
                ("POST", "/control/bots/1/updates", b'{"callback_data":"x"}', 400),
                ("POST", "/control/bots/1/updates", b'{"text":"x","kind":"poll"}', 400),
                ("POST", "/control/bots/1/updates", b'{"text":"x","user_id":"a"}', 400)):
            st, data = self.fb.request(method, path, raw_body=body,
                                       headers={"Content-Type": "application/json"})
            self.assertEqual(st, status, (method, path, body))
            self.assertIsInstance(data.get("error"), str, (path, body))

    def test_injection_is_atomic(self):
        with self.assertRaises(FakeBotError):
            self.fb.inject(BOT, [{"text": "fine"}, {"nothing": 1}])
        self.assertEqual(self.fb.state(BOT)["pending_updates"], 0)
        self.assertEqual(self.fb.state(BOT)["next_update_id"], 1)

    def test_shorthand_shapes(self):
        self.fb.inject(BOT, [
            {"text": "/start@bot1001_bot go", "user_id": 5, "first_name": "Ann",
             "username": "ann", "language_code": "en", "last_name": "Lee"},
            {"text": "in group", "chat_id": -42, "user_id": 5, "chat_title": "Team"},
            {"text": "basic", "chat_id": -43, "chat_type": "group"},
            {"text": "post", "chat_id": -100777, "kind": "channel_post"},
            {"text": "fixed", "user_id": 5, "kind": "edited_message", "message_id": 1},
            {"single": 1, "update": {"message": {"message_id": 9, "text": "raw"}}},
            {"update": {"something_new": {"x": 1}}},
        ])
        r = self.ok("getUpdates")
        self.assertEqual([u["update_id"] for u in r], list(range(1, 8)))
        m = r[0]["message"]
        self.assertEqual(m["from"], {"id": 5, "is_bot": False, "first_name": "Ann",
                                     "last_name": "Lee", "username": "ann",
                                     "language_code": "en"})
        self.assertEqual(m["chat"], {"id": 5, "first_name": "Ann", "username": "ann",
                                     "type": "private"})
        self.assertEqual(m["entities"], [{"offset": 0, "length": 18,
                                          "type": "bot_command"}])
        self.assertEqual(m["message_id"], 1)
        g = r[1]["message"]
        self.assertEqual(g["chat"], {"id": -42, "title": "Team", "type": "supergroup"})
        self.assertNotIn("entities", g)
        self.assertEqual(r[2]["message"]["chat"]["type"], "group")
        cp = r[3]["channel_post"]
        self.assertEqual(cp["chat"]["type"], "channel")
        self.assertEqual(cp["sender_chat"]["id"], -100777)
        self.assertNotIn("from", cp)
        e = r[4]["edited_message"]
        self.assertEqual((e["message_id"], e["text"]), (1, "fixed"))
        self.assertIn("edit_date", e)
        self.assertEqual(r[5], {"update_id": 6, "message": {"message_id": 9,
                                                            "text": "raw"}})
        self.assertEqual(r[6], {"update_id": 7, "something_new": {"x": 1}})

    def test_single_object_and_defaults(self):
        ids = self.fb.control("POST", "bots/%d/updates" % BOT, {"text": "hi"})
        self.assertEqual(ids, {"update_ids": [1]})
        m = self.ok("getUpdates")[0]["message"]
        self.assertEqual((m["from"]["id"], m["chat"]["id"], m["chat"]["type"]),
                         (1, 1, "private"))

    def test_reply_to_bot_message(self):
        self.ok("sendMessage", {"chat_id": -42, "text": "Your name?",
                                "reply_markup": {"force_reply": True}})
        self.fb.message(BOT, "Ann", chat_id=-42, user_id=5, reply_to_message_id=1)
        m = self.ok("getUpdates")[0]["message"]
        self.assertEqual(m["reply_to_message"]["text"], "Your name?")
        self.assertEqual(m["reply_to_message"]["from"]["id"], BOT)
        self.assertEqual(m["message_id"], 2)

    def test_state_wait(self):
        with self.assertRaises(TimeoutError):
            self.fb.wait_state(BOT, min_get_updates_calls=1, timeout=0.1)
        conn = self.fb.connect(timeout=WAIT + 5)
        try:
            conn.request("GET", "/control/bots/%d/state?min_get_updates_calls=2"
                         "&max_pending_updates=0&wait_ms=%d" % (BOT, WAIT * 1000))
            self.fb.message(BOT, "x")
            self.ok("getUpdates")
            self.ok("getUpdates", {"offset": 2})
            status, st = self.read_json(conn)
            self.assertEqual(status, 200)
            self.assertIs(st["timed_out"], False)
            self.assertEqual((st["get_updates_calls"], st["pending_updates"]), (2, 0))
        finally:
            conn.close()
        st = self.fb.wait_state(BOT, min_pending_updates=0, held_polls=0, timeout=1)
        self.assertEqual(st["id"], BOT)

    def test_stats(self):
        before = self.fb.stats()
        self.ok("getMe")
        self.ok("getMe")
        self.fails("nope", {}, 404, "Not Found: method not found")
        after = self.fb.stats()
        self.assertEqual(after["methods"]["getMe"] - before["methods"]["getMe"], 2)
        self.assertEqual(after["methods"]["other"] - before["methods"]["other"], 1)
        self.assertEqual(after["api_requests"] - before["api_requests"], 3)
        self.assertGreaterEqual(after["open_connections"], 1)
        self.assertIs(after["tls"], False)
        self.fb.reset(stats=True)
        self.assertEqual(self.fb.stats()["methods"]["getMe"], 0)

    def test_reset_answers_held_polls(self):
        conn = self.poll_async({"timeout": 30})
        try:
            self.fb.wait_state(BOT, held_polls=1, timeout=WAIT)
            self.fb.reset()
            self.assertEqual(self.read_json(conn), (200, {"ok": True, "result": []}))
            self.assertEqual(self.fb.bots(), [])
        finally:
            conn.close()

    def test_delete_bot(self):
        self.ok("getMe")
        self.assertIs(self.fb.delete_bot(BOT), True)
        self.assertIs(self.fb.delete_bot(BOT), False)
        self.assertEqual(self.fb.bots(), [])


class TestHttp(FakebotCase):

    def test_keep_alive(self):
        before = self.fb.stats()["connections_total"]
        conn = self.fb.connect()
        try:
            for _ in range(20):
                conn.request("GET", "/bot%s/getMe" % TOK)
                r = conn.getresponse()
                self.assertEqual(r.getheader("Connection"), "keep-alive")
                self.assertEqual(r.getheader("Content-Type"), "application/json")
                r.read()
        finally:
            conn.close()
        # the control client's own connection is kept alive too
        self.assertEqual(self.fb.stats()["connections_total"] - before, 1)

    def test_pipelining(self):
        s, rd = raw_socket(self.fb)
        try:
            s.sendall(get_request("/bot%s/getMe" % TOK) +
                      post_json("/bot%s/sendMessage" % TOK, {"chat_id": 1, "text": "p"}) +
                      get_request("/control/bots/%d/state" % BOT))
            st, me = rd.response_json()
            self.assertEqual(me["result"]["id"], BOT)
            st, m = rd.response_json()
            self.assertEqual(m["result"]["text"], "p")
            st, state = rd.response_json()
            self.assertEqual(state["sent_count"], 2)
        finally:
            s.close()

    def test_pipelining_behind_a_held_poll(self):
        s, rd = raw_socket(self.fb)
        try:
            s.sendall(get_request("/bot%s/getUpdates?timeout=30" % TOK) +
                      get_request("/bot%s/getMe" % TOK))
            self.fb.wait_state(BOT, held_polls=1, timeout=WAIT)
            self.fb.message(BOT, "first")
            st, upd = rd.response_json()
            self.assertEqual(upd["result"][0]["message"]["text"], "first")
            st, me = rd.response_json()
            self.assertEqual(me["result"]["id"], BOT)
        finally:
            s.close()

    def test_request_split_in_pieces(self):
        s, rd = raw_socket(self.fb)
        try:
            data = post_json("/bot%s/sendMessage" % TOK, {"chat_id": 1, "text": "split"})
            for i in range(0, len(data), 7):
                s.sendall(data[i:i + 7])
            st, m = rd.response_json()
            self.assertEqual(m["result"]["text"], "split")
        finally:
            s.close()

    def test_http10_closes(self):
        s, rd = raw_socket(self.fb)
        try:
            s.sendall(b"GET /bot%s/getMe HTTP/1.0\r\n\r\n" % TOK.encode())
            st, headers, body = rd.response()
            self.assertEqual(st, 200)
            self.assertEqual(headers["connection"], "close")
            self.assertEqual(s.recv(1), b"")  # the server closed
        finally:
            s.close()

    def test_connection_close_header(self):
        s, rd = raw_socket(self.fb)
        try:
            s.sendall(get_request("/bot%s/getMe" % TOK, "Connection: close\r\n"))
            st, headers, body = rd.response()
            self.assertEqual(headers["connection"], "close")
            self.assertEqual(s.recv(1), b"")
        finally:
            s.close()

    def test_expect_100_continue(self):
        s, rd = raw_socket(self.fb)
        try:
            body = json.dumps({"chat_id": 1, "text": "big"}).encode()
            s.sendall(("POST /bot%s/sendMessage HTTP/1.1\r\nHost: x\r\n"
                       "Content-Type: application/json\r\nExpect: 100-continue\r\n"
                       "Content-Length: %d\r\n\r\n" % (TOK, len(body))).encode())
            self.assertEqual(rd.readline(), b"HTTP/1.1 100 Continue\r\n")
            self.assertEqual(rd.readline(), b"\r\n")
            s.sendall(body)
            st, m = rd.response_json()
            self.assertEqual(m["result"]["text"], "big")
        finally:
            s.close()

    def test_empty_header_values(self):
        s, rd = raw_socket(self.fb)
        try:
            body = json.dumps({"chat_id": 1, "text": "after empty"}).encode()
            s.sendall(("POST /bot%s/sendMessage HTTP/1.1\r\nX-Empty:\r\nX-Blank: \r\n"
                       "Content-Type: Application/JSON; charset=utf-8\r\n"
                       "Content-Length: %d\r\n\r\n" % (TOK, len(body))).encode() + body)
            st, m = rd.response_json()
            self.assertEqual(m["result"]["text"], "after empty")
        finally:
            s.close()

    def test_chunked_body(self):
        s, rd = raw_socket(self.fb)
        try:
            body = json.dumps({"chat_id": 1, "text": "chunky"}).encode()
            s.sendall(("POST /bot%s/sendMessage HTTP/1.1\r\nHost: x\r\n"
                       "Content-Type: application/json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n" % TOK).encode() +
                      b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            st, m = rd.response_json()
            self.assertEqual(m["result"]["text"], "chunky")
        finally:
            s.close()

    def test_body_too_large(self):
        s, rd = raw_socket(self.fb)
        try:
            s.sendall(("POST /bot%s/sendMessage HTTP/1.1\r\nHost: x\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: %d\r\n\r\n" % (TOK, 2 * 1024 * 1024)).encode())
            st, headers, body = rd.response()
            self.assertEqual(st, 413)
            self.assertEqual(headers["connection"], "close")
            self.assertEqual(json.loads(body)["error_code"], 413)
        finally:
            s.close()

    def test_chunked_body_too_large(self):
        s, rd = raw_socket(self.fb)
        try:
            s.sendall(("POST /bot%s/sendMessage HTTP/1.1\r\nHost: x\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n" % TOK).encode())
            chunk = b"x" * 65536
            try:
                for _ in range(17):
                    s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                pass
            st, headers, body = rd.response()
            self.assertEqual(st, 413)
        finally:
            s.close()

    def test_headers_too_large(self):
        s, rd = raw_socket(self.fb)
        try:
            s.sendall(get_request("/bot%s/getMe" % TOK, "X-Big: %s\r\n" % ("a" * 20000)))
            st, headers, body = rd.response()
            self.assertEqual(st, 431)
        finally:
            s.close()

    def test_garbage(self):
        s, rd = raw_socket(self.fb)
        try:
            s.sendall(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
            st, headers, body = rd.response()
            self.assertEqual(st, 400)
            self.assertEqual(s.recv(1), b"")
        finally:
            s.close()
        self.ok("getMe")  # the server is fine

    def test_many_bots_with_held_polls(self):
        n = 300
        conns = []
        try:
            for i in range(n):
                c = self.fb.connect(timeout=WAIT)
                c.request("GET", "/bot%s/getUpdates?timeout=30" % token(5000 + i))
                conns.append(c)
            for i in range(n):
                self.fb.wait_state(5000 + i, held_polls=1, timeout=WAIT)
            self.assertEqual(self.fb.stats()["held_requests"], n)
            for i in range(n):
                self.fb.message(5000 + i, "to %d" % i)
            for i, c in enumerate(conns):
                r = c.getresponse()
                body = json.loads(r.read())
                self.assertEqual(body["result"][0]["message"]["text"], "to %d" % i)
            self.assertEqual(self.fb.stats()["held_requests"], 0)
        finally:
            for c in conns:
                c.close()


class TestTls(unittest.TestCase):
    """HTTPS with a throwaway CA made by make-ca.sh."""

    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl") or not shutil.which("curl"):
            raise unittest.SkipTest("needs the openssl and curl command line tools")
        cls.dir = tempfile.mkdtemp(prefix="fakebot-ca-")
        subprocess.run(["sh", os.path.join(HERE, "make-ca.sh"), cls.dir], check=True,
                       timeout=60)
        cls.fb = FakeBot(fakebot_binary(), tls_cert=os.path.join(cls.dir, "server.pem"),
                         tls_key=os.path.join(cls.dir, "server.key"),
                         cafile=os.path.join(cls.dir, "ca.pem")).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.fb.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        if rc != 0:
            raise AssertionError("fakebot exited with %s" % rc)

    def test_curl_get_me(self):
        r = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", os.path.join(self.dir, "ca.pem"),
                            "%s/bot%s/getMe" % (self.fb.url, TOK)],
                           capture_output=True, timeout=WAIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["result"]["id"], BOT)

    def test_alpn_offers_h2_which_it_does_not_speak(self):
        # as api.telegram.org: h2 first in ALPN; a client that lets ALPN
        # choose gets h2, which fakebot does not speak
        r = subprocess.run(["curl", "-sS", "--http2", "--cacert", os.path.join(self.dir, "ca.pem"),
                            "%s/bot%s/getMe" % (self.fb.url, TOK)],
                           capture_output=True, timeout=WAIT)
        self.assertNotEqual(r.returncode, 0, r.stdout)

    def test_curl_keep_alive_and_post(self):
        url = "%s/bot%s/sendMessage" % (self.fb.url, TOK)
        r = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", os.path.join(self.dir, "ca.pem"),
                            "-H", "Content-Type: application/json",
                            "-d", '{"chat_id":1,"text":"tls"}', url, "--next",
                            "--http1.1", "--cacert", os.path.join(self.dir, "ca.pem"),
                            "%s/control/bots/%d/sent" % (self.fb.url, BOT)],
                           capture_output=True, timeout=WAIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b'"text":"tls"', r.stdout)

    def test_python_client_and_long_poll(self):
        conn = self.fb.connect(timeout=WAIT)
        try:
            conn.request("GET", "/bot%s/getUpdates?timeout=30" % TOK)
            self.fb.wait_state(BOT, held_polls=1, timeout=WAIT)
            self.fb.message(BOT, "secure")
            r = conn.getresponse()
            self.assertEqual(json.loads(r.read())["result"][-1]["message"]["text"],
                             "secure")
        finally:
            conn.close()
        self.assertIs(self.fb.stats()["tls"], True)

    def test_old_tls_and_plain_http_refused(self):
        r = subprocess.run(["curl", "-sS", "--tlsv1.1", "--tls-max", "1.1", "--cacert",
                            os.path.join(self.dir, "ca.pem"),
                            "%s/bot%s/getMe" % (self.fb.url, TOK)],
                           capture_output=True, timeout=WAIT)
        self.assertNotEqual(r.returncode, 0)
        s = socket.create_connection(("127.0.0.1", self.fb.port), timeout=WAIT)
        try:
            s.sendall(get_request("/bot%s/getMe" % TOK))
            data = b""
            while True:  # the server answers with a TLS alert (or nothing) and closes
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.assertFalse(data.startswith(b"HTTP/"))
        finally:
            s.close()
        self.assertEqual(self.fb.api(TOK, "getMe")[0], 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
