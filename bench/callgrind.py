#!/usr/bin/env python3
"""Instructions per update of botfactoryd, by thread and function: the
headline load (one bot, /start from 100 chats) under valgrind's callgrind,
with instrumentation on only while the load runs (doc/benchmarks.md, rounds
4 to 6).

    bench/callgrind.py [--updates N] [--daemon PATH] [--out PREFIX]

Writes PREFIX.<pid>-NN, one file per thread (--separate-threads); read them
with `callgrind_annotate --inclusive=yes FILE`. Thread 01 is the loop, 02
the database thread. Prints each thread's instructions per update.
Needs valgrind (Debian: valgrind). Binaries as for bench.py ($FAKEBOT,
$BOTFACTORYD). Waits are on events with deadlines, as in bench.py.
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--updates", type=int, default=5000)
    ap.add_argument("--daemon", default=bench.BOTFACTORYD)
    ap.add_argument("--out", default=None, help="output prefix [WORK/callgrind.out]")
    a = ap.parse_args()
    bench.WORK = tempfile.mkdtemp(prefix="botfactory-callgrind-", dir="/var/tmp")
    bench.BOTFACTORYD = a.daemon
    out = a.out or os.path.join(bench.WORK, "callgrind.out")
    n = a.updates
    with bench.start_fakebot() as fb:
        fb.reset(stats=True)
        s = bench.Subject("botfactoryd", fb, [bench.BOT], "cg", level="warn")
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
               "--callgrind-out-file=" + out + ".%p"] + s.command()
        s.logf = open(os.path.join(s.dir, "log"), "a")
        s.proc = subprocess.Popen(cmd, stdout=s.logf, stderr=subprocess.STDOUT)
        s.pid = s.proc.pid
        fb.wait_state(bench.BOT, held_polls=1, timeout=120)
        bench.wait_quiet(s.pid, timeout=60)
        subprocess.run(["callgrind_control", "-i", "on", str(s.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        bench.inject_all(fb, bench.BOT, bench.batches(n, 100))
        r = fb.control("GET", "bots/%d/sent" % bench.BOT, min=n, wait_ms=600000,
                       method="sendMessage", limit=1, timeout=610)
        if r["timed_out"]:
            sys.exit("callgrind.py: not all replies arrived")
        fb.wait_state(bench.BOT, held_polls=1, max_pending_updates=0, timeout=120)
        bench.wait_quiet(s.pid, timeout=60)
        subprocess.run(["callgrind_control", "-i", "off", str(s.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        s.stop(120)
    for f in sorted(glob.glob("%s.%d-*" % (out, s.pid))):
        total = 0
        with open(f) as fh:
            for line in fh:
                m = re.match(r"(?:summary|totals): (\d+)", line)
                if m:
                    total = int(m.group(1))
        print("%s: %d instructions, %.0f per update" % (f, total, total / n))


if __name__ == "__main__":
    main()
