"""Runs the real botfactoryd against fakebot for the integration tests.

Daemon starts botfactoryd in a temporary directory (its own specs/ and
database), reads its log through a pipe, and lets tests wait for a log line
with a deadline. BotTest is a unittest base class that starts a fakebot
per test class and checks, after every test, that no daemon log contained a
bot token. Standard library only. Binaries come from $BOTFACTORYD and
$FAKEBOT (meson sets both).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from fakebot import FakeBot, token

__all__ = ["Daemon", "BotTest", "token", "transcript_calls"]


class Daemon:
    """One botfactoryd process with its own specs directory and database."""

    def __init__(self, api_url, specs, env=None, args=(), workdir=None, bare=False,
                 nofile=None):
        """bare: run with args only, in the daemon's directory, so that its
        defaults (./specs, ./botfactory.db) and the environment apply.
        nofile: the open-files limit (soft and hard) to run it under."""
        self.binary = os.environ["BOTFACTORYD"]
        self.bare = bare
        self.nofile = nofile
        self.api_url = api_url
        self.dir = workdir or tempfile.mkdtemp(prefix="botfactoryd-")
        self.specs_dir = os.path.join(self.dir, "specs")
        self.db = os.path.join(self.dir, "bf.db")
        os.makedirs(self.specs_dir, exist_ok=True)
        for name, text in specs.items():
            with open(os.path.join(self.specs_dir, name), "w") as f:
                f.write(text)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.args = list(args)
        self.proc = None
        self.lines = []
        self.eof = False  # the reader has seen the end of the output
        self.cond = threading.Condition()
        self.reader = None

    def start(self):
        self.eof = False
        if self.bare:
            cmd = [self.binary] + self.args
        else:
            cmd = [self.binary, "--specs", self.specs_dir, "--db", self.db,
                   "--telegram-api", self.api_url, "--poll-timeout", "5",
                   "--request-timeout", "3", "--log-level", "debug"] + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.dir, preexec_fn=self._limits)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _limits(self):
        if self.nofile:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def _read(self):
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def log(self):
        with self.cond:
            return "\n".join(self.lines)

    def wait_log(self, pattern, timeout=10.0, start=0):
        """Waits for a log line matching the regex; returns its index."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i]):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                # an exited process may still have lines in the pipe: give
                # up early only once the reader has seen the end
                if left <= 0 or (self.eof and i >= len(self.lines)):
                    raise TimeoutError("no log line matching %r within %.1fs; log:\n%s"
                                       % (pattern, timeout, "\n".join(self.lines)))
                self.cond.wait(left)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=15.0, sig=signal.SIGTERM):
        """SIGTERM (or sig); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("botfactoryd did not stop within %.0fs of signal %d; log:\n%s"
                                 % (timeout, sig, self.log()))
        self.reader.join(5)
        self.proc.stdout.close()
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()

    def restart(self):
        """Starts a new process on the same directory (log continues)."""
        self.start()
        return self

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)


def transcript_calls(calls):
    """The sendMessage texts of a list of recorded calls."""
    return [c["params"].get("text") for c in calls if c["method"] == "sendMessage"]


class BotTest(unittest.TestCase):
    """A fakebot for the class, daemons per test, token checks after each."""

    fakebot_args = {}

    @classmethod
    def setUpClass(cls):
        cls.fb = FakeBot(**cls.fakebot_args).start()

    @classmethod
    def tearDownClass(cls):
        cls.fb.stop()

    def setUp(self):
        self.daemons = []
        self.tokens = []
        self.fb.reset()

    def tearDown(self):
        for d in self.daemons:
            if d.proc and d.proc.poll() is None:
                d.kill9()
            log = d.log()
            for t in self.tokens:
                secret = t.split(":", 1)[1]
                self.assertNotIn(secret, log, "a token leaked into the daemon's log")
            d.cleanup()

    def token(self, bot_id):
        t = token(bot_id)
        self.tokens.append(t)
        return t

    def daemon(self, specs, env=None, args=(), start=True):
        d = Daemon(self.fb.url, specs, env=env, args=args)
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def spec(self, text, token_var):
        """A YAML spec taking its token from token_var."""
        return "token: ${%s}\n%s" % (token_var, text)

    def wait_polling(self, bot_id, timeout=10.0):
        """Waits until the daemon holds a long poll for the bot."""
        return self.fb.wait_state(bot_id, timeout=timeout, held_polls=1)

    def wait_until(self, bot_id, done, method="sendMessage", timeout=30.0):
        """Waits until done(calls) is true of the bot's recorded calls,
        waking on every new call (no sleeping). Returns the calls."""
        import time as _time
        deadline = _time.monotonic() + timeout
        calls = self.fb.sent(bot_id, method=method)["calls"]
        while not done(calls):
            left = deadline - _time.monotonic()
            if left <= 0:
                raise TimeoutError("condition not met within %.0fs; calls: %r"
                                   % (timeout, [c["params"].get("text") for c in calls]))
            calls = self.fb.wait_sent(bot_id, len(calls) + 1, method=method,
                                      timeout=left)
        return calls

    def report(self, d, want, timeout=10.0, last="c"):
        """Sends SIGUSR1 until the status report matches every regex of
        want (the counters settle a moment after fakebot saw the calls);
        returns the report's lines."""
        deadline = time.monotonic() + timeout
        while True:
            mark = len(d.lines)
            d.proc.send_signal(signal.SIGUSR1)
            i = d.wait_log(r"status of \d+ bots?:", start=mark)
            d.wait_log(r"bot %s: " % last, start=i)  # the last one, by id
            lines = d.lines[i:]
            if all(any(re.search(w, l) for l in lines) for w in want):
                return lines
            self.assertLess(time.monotonic(), deadline, "report: %r" % lines)
            time.sleep(0.05)

    def wait_faults_taken(self, bot_id, left=0, timeout=10.0):
        """Waits until only `left` of the fault rules queued for the bot
        are still to be applied (a delayed or hung call is then in
        flight); polls fakebot, with a deadline."""
        import time as _time
        deadline = _time.monotonic() + timeout
        while len(self.fb.faults(bot_id)) > left:
            if _time.monotonic() > deadline:
                raise TimeoutError("bot %d: faults still pending after %.0fs: %r"
                                   % (bot_id, timeout, self.fb.faults(bot_id)))
            _time.sleep(0.005)

    def texts(self, bot_id, count, after=0, timeout=10.0):
        calls = self.fb.wait_sent(bot_id, count, method="sendMessage",
                                  after=after, timeout=timeout)
        return [c["params"]["text"] for c in calls]
