"""Client for fakebot, the fake Telegram Bot API server in tests/fakebot.

Starts the server on an ephemeral loopback port and drives its control API:
inject updates, configure bots, wait for what a bot sent, wait for its state,
queue faults. Standard library only. Every wait is a server-side long poll with
a deadline: nothing here sleeps and hopes.

    from fakebot import FakeBot, token

    with FakeBot() as fb:                       # binary from $FAKEBOT
        tok = token(1001)                        # "1001:AAH..." for bot id 1001
        api = fb.url                             # give this to the daemon as its Telegram API
        fb.message(1001, "/start", user_id=42)   # the user says /start
        calls = fb.wait_sent(1001, 1, method="sendMessage")
        assert calls[0]["params"]["text"] == "Hello"

The server's whole interface is described in tests/fakebot/README.md.
"""

import http.client
import json
import os
import selectors
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse

__all__ = ["FakeBot", "FakeBotError", "token"]


def token(bot_id, secret=None):
    """A well-formed token for bot_id (the secret part is derived from the id)."""
    if secret is None:
        secret = "AAH" + format(int(bot_id), "x").rjust(32, "k")
    return "%d:%s" % (int(bot_id), secret)


class FakeBotError(Exception):
    """The control API refused a request (status and the server's error text)."""

    def __init__(self, status, body):
        self.status = status
        self.body = body
        msg = body.get("error") if isinstance(body, dict) else body
        super().__init__("fakebot answered %s: %s" % (status, msg))


class FakeBot:
    """One fakebot process. Use as a context manager, or start() and stop()."""

    def __init__(self, binary=None, tls_cert=None, tls_key=None, cafile=None,
                 args=(), env=None, start_timeout=10.0, stderr=None):
        self.binary = binary or os.environ.get("FAKEBOT")
        if not self.binary:
            raise RuntimeError("no fakebot binary: pass binary= or set $FAKEBOT")
        self.tls = bool(tls_cert)
        self.tls_cert, self.tls_key, self.cafile = tls_cert, tls_key, cafile
        self.args = list(args)
        self.env = env
        self.stderr = stderr  # for Popen: None inherits, a file collects the log
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self.tmpdir = None
        self.port_file = None
        self.listening_line = None
        self._local = threading.local()

    # ---- process ----

    @property
    def url(self):
        """Base URL, e.g. http://127.0.0.1:PORT (the daemon's --telegram-api)."""
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def start(self):
        self.tmpdir = tempfile.mkdtemp(prefix="fakebot-")
        self.port_file = os.path.join(self.tmpdir, "port")
        cmd = [self.binary, "--listen", "127.0.0.1:0", "--port-file",
               self.port_file, "--quiet"]
        if self.tls:
            cmd += ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key]
        cmd += self.args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=self.env,
                                     stderr=self.stderr)
        line = self._read_line(self.start_timeout)
        prefix = b"fakebot listening on 127.0.0.1:"
        if not line.startswith(prefix):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("fakebot did not start: %r (exit %s)"
                               % (line, self.proc.returncode))
        self.listening_line = line.decode().strip()
        self.port = int(line[len(prefix):].split()[0])
        return self

    def _read_line(self, timeout):
        """First stdout line, waiting at most timeout seconds for it."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return buf
                chunk = os.read(fd, 4096)
                if not chunk:
                    return buf
                buf += chunk
        return buf

    def stop(self, timeout=10.0, sig=signal.SIGTERM):
        """Signals the server and waits for it; returns its exit code."""
        self._close_connections()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("fakebot did not exit within %.0fs of signal %d"
                               % (timeout, sig))
        finally:
            self.proc.stdout.close()
            if self.tmpdir:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        rc = self.stop()
        if exc_type is None and rc != 0:
            raise RuntimeError("fakebot exited with %s" % rc)

    # ---- HTTP ----

    def connect(self, timeout=30.0):
        """A new keep-alive connection to the server (the caller closes it)."""
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.cafile)
            return http.client.HTTPSConnection("127.0.0.1", self.port,
                                               timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = self.connect()
            conns = getattr(self, "_all_conns", None)
            if conns is None:
                conns = self._all_conns = []
            conns.append(c)
        return c

    def _close_connections(self):
        for c in getattr(self, "_all_conns", []):
            c.close()
        self._all_conns = []
        self._local = threading.local()

    def request(self, method, path, body=None, query=None, timeout=30.0,
                headers=None, raw_body=None):
        """One request on this thread's keep-alive connection.
        Returns (status, decoded JSON or text)."""
        if query:
            q = {k: (json.dumps(v) if isinstance(v, (list, dict, bool)) else v)
                 for k, v in query.items() if v is not None}
            path += "?" + urllib.parse.urlencode(q)
        hdrs = dict(headers or {})
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        c = self._conn()
        c.timeout = timeout
        if c.sock is not None:
            c.sock.settimeout(timeout)
        try:
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            text = r.read()
        except Exception:
            c.close()
            self._local.conn = None
            raise
        ctype = r.getheader("Content-Type", "")
        if ctype.startswith("application/json"):
            return r.status, json.loads(text)
        return r.status, text.decode(errors="replace")

    def control(self, verb, path, body=None, timeout=30.0, **query):
        """A control API request; query parameters as keywords (None: left
        out). Returns the decoded answer; FakeBotError unless it is a 200."""
        status, data = self.request(verb, "/control/" + path, body=body,
                                    query=query, timeout=timeout)
        if status != 200:
            raise FakeBotError(status, data)
        return data

    # ---- Bot API, to act as a bot ----

    def api(self, tok, method, params=None, http_method="POST", encoding="json",
            timeout=30.0):
        """Calls a Bot API method. encoding: "json", "form" or "query".
        Returns (http status, response dict)."""
        path = "/bot%s/%s" % (tok, method)
        params = params or {}
        if encoding == "json" and http_method != "GET":
            return self.request(http_method, path, body=params, timeout=timeout)
        flat = {k: (json.dumps(v) if isinstance(v, (list, dict)) else
                    ("true" if v is True else "false" if v is False else v))
                for k, v in params.items()}
        if encoding == "form" and http_method != "GET":
            return self.request(http_method, path, timeout=timeout,
                                raw_body=urllib.parse.urlencode(flat).encode(),
                                headers={"Content-Type":
                                         "application/x-www-form-urlencoded"})
        return self.request(http_method, path, query=flat, timeout=timeout)

    # ---- control API ----

    def inject(self, bot_id, updates):
        """Queues updates (shorthand dicts, see README); returns their ids."""
        return self.control("POST", "bots/%d/updates" % bot_id, updates)["update_ids"]

    def message(self, bot_id, text, **fields):
        """A user's text message; returns the update id."""
        return self.inject(bot_id, [dict(fields, text=text)])[0]

    def callback(self, bot_id, data, message_id, **fields):
        """A press on a button of the bot's message message_id; returns the
        update id. The callback query id is cq-<bot_id>-<n>."""
        return self.inject(bot_id, [dict(fields, callback_data=data,
                                         message_id=message_id)])[0]

    def raw_update(self, bot_id, update):
        """Any Update object (update_id is assigned); returns the update id."""
        return self.inject(bot_id, [{"update": update}])[0]

    def config(self, bot_id, **fields):
        """Sets next_update_id, username, first_name, invalid_token, webhook,
        token, poll_throttle, strict_chats, max_sent; returns the state."""
        return self.control("POST", "bots/%d/config" % bot_id, fields)

    def state(self, bot_id):
        return self.control("GET", "bots/%d/state" % bot_id)

    def wait_state(self, bot_id, timeout=10.0, **conditions):
        """Waits until every condition holds: min_get_updates_calls,
        held_polls, max_pending_updates, min_pending_updates,
        min_conflicts_sent. Returns the state; TimeoutError past timeout."""
        st = self.control("GET", "bots/%d/state" % bot_id, timeout=timeout + 5,
                          wait_ms=int(timeout * 1000), **conditions)
        if st["timed_out"]:
            raise TimeoutError("bot %d: %r not reached within %.1fs; state: %r"
                               % (bot_id, conditions, timeout, st))
        return st

    def sent(self, bot_id, after=0, method=None, all=False, limit=None):
        """Recorded calls with seq > after: {"calls", "last_seq", ...}."""
        return self.control("GET", "bots/%d/sent" % bot_id, after=after,
                            method=method, all=1 if all else None, limit=limit)

    def wait_sent(self, bot_id, count=1, method=None, after=0, timeout=10.0,
                  all=False):
        """Waits until at least count calls (seq > after) were recorded;
        returns them. TimeoutError past timeout."""
        r = self.control("GET", "bots/%d/sent" % bot_id, timeout=timeout + 5,
                         after=after, min=count, wait_ms=int(timeout * 1000),
                         method=method, all=1 if all else None)
        if r["timed_out"]:
            raise TimeoutError("bot %d: wanted %d %s calls after seq %d within "
                               "%.1fs, got %d: %r"
                               % (bot_id, count, method or "", after, timeout,
                                  len(r["calls"]), r["calls"]))
        return r["calls"]

    def add_faults(self, bot_id, *rules):
        """Queues fault rules (see README); returns how many are pending."""
        return self.control("POST", "bots/%d/faults" % bot_id,
                            list(rules))["faults_pending"]

    def faults(self, bot_id):
        return self.control("GET", "bots/%d/faults" % bot_id)["faults"]

    def clear_faults(self, bot_id):
        self.control("DELETE", "bots/%d/faults" % bot_id)

    def delete_bot(self, bot_id):
        return self.control("DELETE", "bots/%d" % bot_id)["deleted"]

    def bots(self):
        return self.control("GET", "bots")["bots"]

    def stats(self):
        return self.control("GET", "stats")

    def reset(self, stats=False):
        """Forgets every bot (held polls are answered with [])."""
        self.control("POST", "reset", {"stats": bool(stats)})
