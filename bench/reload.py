#!/usr/bin/env python3
"""Reload latency of botfactoryd: with N bots running (default 1,000), the
time from the atomic rename of one bot's spec file to the first reply
produced by the new spec.

The reply is observed by this script through fakebot's control API (a long
poll on what the bot sent), so each figure is an upper bound of the time to
fakebot: it includes the control request's return (about 0.1-0.3 ms on
loopback). Each reload is probed in a closed loop: /start is injected, the
reply read; while it still has the old text, /start is injected again.

usage: bench/reload.py [--bots 1000] [--reloads 200]
Binaries: $BOTFACTORYD and $FAKEBOT (default build/...).
"""

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from fakebot import FakeBot, token  # noqa: E402

SPEC = """token: "%s"
flows:
  - entry_cmd: /start
    steps: [{reply: "%s"}]
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bots", type=int, default=1000)
    ap.add_argument("--reloads", type=int, default=200)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    daemon = os.environ.get("BOTFACTORYD", os.path.join(ROOT, "build", "botfactoryd"))
    os.environ.setdefault("FAKEBOT", os.path.join(ROOT, "build", "tests", "fakebot", "fakebot"))
    work = tempfile.mkdtemp(prefix="botfactory-reload-", dir="/var/tmp")
    specs = os.path.join(work, "specs")
    os.mkdir(specs)
    first = 100000
    ids = list(range(first, first + a.bots))
    for i in ids:
        with open(os.path.join(specs, "b%d.yaml" % i), "w") as f:
            f.write(SPEC % (token(i), "v0"))
    fb = FakeBot().start()
    proc = subprocess.Popen([daemon, "--specs", specs, "--db", os.path.join(work, "bf.db"),
                             "--telegram-api", fb.url, "--log-level", "warn"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for i in ids:
            fb.wait_state(i, timeout=60, held_polls=1)
        rng = random.Random(1)
        version = {i: 0 for i in ids}
        lat = []
        probes = []
        for n in range(a.reloads):
            k = rng.choice(ids)
            version[k] += 1
            text = "v%d" % version[k]
            tmp = os.path.join(specs, ".b%d.tmp" % k)
            with open(tmp, "w") as f:
                f.write(SPEC % (token(k), text))
            seq = fb.sent(k)["last_seq"]
            t0 = time.monotonic()
            os.rename(tmp, os.path.join(specs, "b%d.yaml" % k))
            tries = 0
            while True:
                tries += 1
                fb.message(k, "/start", user_id=7)
                calls = fb.wait_sent(k, 1, method="sendMessage", after=seq, timeout=10)
                seq = calls[-1]["seq"]
                if calls[-1]["params"]["text"] == text:
                    break
            lat.append((time.monotonic() - t0) * 1000.0)
            probes.append(tries)
        lat.sort()
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
        print("bots %d, reloads %d" % (a.bots, len(lat)))
        print("reload latency ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  (mean %.1f)"
              % (p(0.50), p(0.90), p(0.99), lat[-1], statistics.mean(lat)))
        print("probes per reload: median %d, max %d" % (statistics.median(probes), max(probes)))
    finally:
        proc.terminate()
        proc.wait(30)
        fb.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
