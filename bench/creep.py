"""RSS growth of botfactoryd over repeated full rescans of its specs
directory (doc/benchmarks.md, section 3).

    bench/creep.py [--bots 1000] [--hups 100] [--binary build/botfactoryd]

Starts fakebot and botfactoryd with --bots spec files (each its own fake
token), waits until every poll is held and the RSS is stable, then sends
SIGHUP --hups times, each time waiting until the log shows one more
"spec reloaded" per bot (a full rescan reloads every spec), then waits for
every poll again and a stable RSS, and prints the growth. Scratch files go
to a new directory under /var/tmp, removed at the end. Standard library
only; uses bench.py's helpers."""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from fakebot import FakeBot, token  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bots", type=int, default=1000)
    ap.add_argument("--hups", type=int, default=100)
    ap.add_argument("--binary", default=bench.BOTFACTORYD)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="botfactory-creep-", dir="/var/tmp")
    try:
        os.makedirs(os.path.join(work, "specs"))
        for i in range(a.bots):
            with open(os.path.join(work, "specs", "b%d.yaml" % (100000 + i)), "w") as f:
                f.write(bench.SPEC.format(id=100000 + i, token=token(100000 + i)))
        log = os.path.join(work, "log")

        def reloaded():
            with open(log, errors="replace") as f:
                return sum(1 for line in f if "spec reloaded" in line)

        with FakeBot(bench.FAKEBOT) as fb, open(log, "w") as logf:
            p = subprocess.Popen([a.binary, "--specs", os.path.join(work, "specs"),
                                  "--db", os.path.join(work, "db"), "--telegram-api", fb.url,
                                  "--log-level", "info"], stdout=logf, stderr=subprocess.STDOUT)
            try:
                bench.wait_stat(fb, lambda st: st["held_requests"] >= a.bots, 120)
                bench.wait_quiet(p.pid)
                r0 = bench.wait_rss_stable(p.pid)
                for _ in range(a.hups):
                    want = reloaded() + a.bots
                    os.kill(p.pid, signal.SIGHUP)
                    deadline = time.monotonic() + 30
                    while reloaded() < want:
                        if time.monotonic() > deadline:
                            raise RuntimeError("a rescan did not finish within 30 s")
                        time.sleep(0.01)
                bench.wait_stat(fb, lambda st: st["held_requests"] >= a.bots, 120)
                bench.wait_quiet(p.pid)
                r1 = bench.wait_rss_stable(p.pid)
            finally:
                p.terminate()
                p.wait()
        print("%d bots: RSS %d -> %d KiB, +%d KiB after %d full rescans"
              % (a.bots, r0, r1, r1 - r0, a.hups))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
