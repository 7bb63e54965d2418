#!/usr/bin/env python3
"""The benchmarks of doc/benchmarks.md: botfactoryd against the floor program
(bench/floor.c), both driven by fakebot on loopback, measured in the same run.

    bench.py [--out DIR] [--work DIR] [--reps N] PHASE...

Phases (all of them when none is given, in this order):

  headline   one bot, 20,000 /start updates from 100 chats: CPU per update
  chats      the same from 20,000 chats (one update each)
  syscalls   the same load, syscalls per update (perf stat tracepoints)
  profile    the same load under perf record (cpu-clock): where the time goes
  fleet      RSS per idle polling bot and start-up time, 1,000 and 10,000 bots
  tls        RSS per bot over HTTPS (fakebot --tls-cert, botfactoryd --ca-file)
  idle       CPU of 1,000 idle polling bots over 60 s windows
  burst      10 updates to each of 1,000 bots at once
  latency    one update every 20 ms: injection to reply, p50/p99

Binaries come from $BOTFACTORYD, $FAKEBOT and $FLOOR (bench/run.sh sets
them); $BOTFACTORYD_B, when set, is a second daemon build measured beside
the first in the headline (an A/B in one run). Results are appended to DIR/results.jsonl (one JSON object per
measurement) and summarised as Markdown tables in DIR/summary.md. Standard
library only; CPU is read from /proc/PID/stat (utime + stime of the whole
process, every thread), memory from VmRSS in /proc/PID/status. Every wait
is on an event (fakebot's long polls or its counters) with a deadline.
No assertion on timings: this only measures.
"""

import argparse
import http.client
import io
import json
import os
import re
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from fakebot import FakeBot, token  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
BOTFACTORYD = os.environ.get("BOTFACTORYD", os.path.join(ROOT, "build", "botfactoryd"))
FAKEBOT = os.environ.get("FAKEBOT", os.path.join(ROOT, "build", "tests", "fakebot", "fakebot"))
FLOOR = os.environ.get("FLOOR", os.path.join(ROOT, "build", "bench", "floor"))
# A second daemon (another commit's build) measured beside the first in the
# headline, as "botfactoryd-b": an A/B of a change in one run.
BOTFACTORYD_B = os.environ.get("BOTFACTORYD_B")

SPEC = """name: Bench {id}
token: "{token}"
flows:
  - entry_cmd: /start
    steps:
      - reply: "Hello!"
"""

OUT = None
WORK = None


# ---- small tools ----------------------------------------------------------------

def log(*a):
    print(*a, file=sys.stderr, flush=True)


def record(kind, **fields):
    fields["kind"] = kind
    with open(os.path.join(OUT, "results.jsonl"), "a") as f:
        f.write(json.dumps(fields) + "\n")
    return fields


def summary(text):
    print(text, flush=True)
    with open(os.path.join(OUT, "summary.md"), "a") as f:
        f.write(text + "\n")


def cpu(pid):
    """(user, sys) seconds of the whole process (all threads, live or gone)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def thread_cpu(pid):
    """{tid: (user, sys)} of the live threads."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)
        except OSError:
            pass
    return out


def runtime_ns(pid):
    """CPU time in ns of the live threads (schedstat: finer than ticks)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def status_number(pid, field):
    """A number from /proc/PID/status ("VmRSS" in KiB, "Threads"), or 0."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    return status_number(pid, "VmRSS")


def threads(pid):
    return status_number(pid, "Threads")


def wait_quiet(pid, below_ms=0.5, step=0.1, timeout=30.0):
    """Waits until the process used less than below_ms of CPU over two
    consecutive steps (it finished its work), with a deadline."""
    deadline = time.monotonic() + timeout
    last = runtime_ns(pid)
    calm = 0
    while time.monotonic() < deadline:
        time.sleep(step)
        now = runtime_ns(pid)
        calm = calm + 1 if now - last < below_ms * 1e6 else 0
        last = now
        if calm >= 2:
            return True
    log("warning: pid %d did not become quiet within %.0f s" % (pid, timeout))
    return False


def wait_rss_stable(pid, step=0.1, timeout=10.0):
    deadline = time.monotonic() + timeout
    last = rss_kib(pid)
    same = 0
    while time.monotonic() < deadline:
        time.sleep(step)
        now = rss_kib(pid)
        same = same + 1 if now == last else 0
        last = now
        if same >= 3:
            break
    return last


def median(v):
    return statistics.median(v) if v else float("nan")


def pct(v, p):
    v = sorted(v)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def fmt_runs(v, f="%.1f"):
    return " / ".join(f % x for x in v)


# ---- fakebot helpers ------------------------------------------------------------

def start_fakebot(tls=None, args=()):
    kw = {"binary": FAKEBOT, "args": list(args),
          "stderr": open(os.path.join(WORK, "fakebot.log"), "a")}
    if tls:
        kw.update(tls_cert=tls + "/server.pem", tls_key=tls + "/server.key",
                  cafile=tls + "/ca.pem")
    return FakeBot(**kw)  # started by `with`


def fb_clock_offset(fb, tries=30):
    """fakebot's clock (ms since it started) minus time.monotonic() in ms,
    from the stats request with the shortest round trip (error <= rtt/2)."""
    best = None
    for _ in range(tries):
        t0 = time.monotonic()
        now = fb.stats()["now_ms"]
        t1 = time.monotonic()
        rtt = (t1 - t0) * 1000
        off = now - (t0 + t1) * 500
        if best is None or rtt < best[0]:
            best = (rtt, off)
    return best[1], best[0]


def wait_stat(fb, pred, timeout, step=0.005):
    """Polls fakebot's /control/stats until pred(stats) holds (deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        st = fb.stats()
        if pred(st):
            return st
        if time.monotonic() > deadline:
            raise TimeoutError("fakebot stats condition not met within %.0f s: %r"
                               % (timeout, {k: st.get(k) for k in
                                            ("held_requests", "open_connections", "methods")}))
        time.sleep(step)


class _KeepOpen:
    """The stream of a connection, which an HTTPResponse may not close."""

    def __init__(self, f):
        self.f = f

    def __getattr__(self, name):
        return getattr(self.f, name)

    def close(self):
        pass


class _SharedFile:
    """Lets http.client.HTTPResponse read pipelined answers from one stream."""

    def __init__(self, f):
        self.f = _KeepOpen(f)

    def makefile(self, *a, **k):
        return self.f


def pipelined(fb, requests, timeout=120.0):
    """Sends requests [(method, path, body bytes or None)] on one connection
    at once (fakebot answers pipelined requests in order), then reads every
    answer. Returns ([(status, body bytes)], t_sent, t_last_answer) with
    time.monotonic() stamps."""
    conn = fb.connect(timeout=timeout)
    conn.connect()
    sock = conn.sock
    buf = io.BytesIO()
    for method, path, body in requests:
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        buf.write(head.encode() + b"\r\n" + (body or b""))
    data = buf.getvalue()
    import threading
    stamps = {}

    def send():
        sock.sendall(data)
        stamps["sent"] = time.monotonic()
    sender = threading.Thread(target=send)  # fakebot answers while we send
    t0 = time.monotonic()
    sender.start()
    shared = _SharedFile(sock.makefile("rb"))
    out = []
    for _ in requests:
        r = http.client.HTTPResponse(shared)
        r.begin()
        out.append((r.status, r.read()))
    t_last = time.monotonic()
    sender.join()
    conn.close()
    return out, t0, stamps["sent"], t_last


# ---- the two subjects -------------------------------------------------------------

class Subject:
    """A running botfactoryd or floor process for a set of fakebot bot ids."""

    def __init__(self, kind, fb, ids, name, level="info", fresh_db=True,
                 ca=None, extra=(), prefix=()):
        self.kind = kind
        self.prefix = list(prefix)
        self.fb = fb
        self.ids = list(ids)
        self.dir = os.path.join(WORK, name)
        self.ca = ca
        self.extra = list(extra)
        self.level = level
        os.makedirs(self.dir, exist_ok=True)
        self.db = os.path.join(self.dir, "bf.db")
        if fresh_db:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(self.db + suffix)
                except FileNotFoundError:
                    pass
        self.proc = None
        self.logf = None

    def _specs(self):
        d = os.path.join(self.dir, "specs")
        want = set("b%d.yaml" % i for i in self.ids)
        if os.path.isdir(d) and set(os.listdir(d)) == want:
            return d
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for i in self.ids:
            with open(os.path.join(d, "b%d.yaml" % i), "w") as f:
                f.write(SPEC.format(id=i, token=token(i)))
        return d

    def command(self):
        if self.kind in ("botfactoryd", "botfactoryd-b"):
            exe = BOTFACTORYD if self.kind == "botfactoryd" else BOTFACTORYD_B
            cmd = [exe, "--specs", self._specs(), "--db", self.db,
                   "--telegram-api", self.fb.url, "--log-level", self.level]
            if self.ca:
                cmd += ["--ca-file", self.ca]
        else:
            tf = os.path.join(self.dir, "tokens")
            with open(tf, "w") as f:
                f.write("".join(token(i) + "\n" for i in self.ids))
            cmd = [FLOOR, "--api", self.fb.url, "--tokens", tf, "--quiet"]
            if self.ca:
                cmd += ["--ca-file", self.ca]
        return cmd + self.extra

    def start(self):
        cmd = self.command()
        self.logf = open(os.path.join(self.dir, "log"), "a")
        self.t_exec = time.monotonic()
        self.proc = subprocess.Popen(self.prefix + cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        if self.prefix:  # the subject is the child of the wrapper (perf)
            deadline = time.monotonic() + 30
            self.pid = None
            while self.pid is None:
                try:
                    with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                        kids = f.read().split()
                except OSError:
                    kids = []
                if kids:
                    self.pid = int(kids[0])
                elif time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("%s did not start under %s" % (self.kind, self.prefix[0]))
                else:
                    time.sleep(0.01)
        return self

    def stop(self, timeout=60.0):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)  # a wrapper ends with its child
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            log("warning: %s did not stop within %.0f s of SIGTERM" % (self.kind, timeout))
        self.logf.close()
        if rc:
            log("warning: %s exited %s; log in %s" % (self.kind, rc, self.dir))
        return rc


class PerfCtl:
    """perf started disabled (-D -1) with a control FIFO: enable() and
    disable() bracket exactly the measured window."""

    def __init__(self, name):
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir, exist_ok=True)
        self.ctl = os.path.join(self.dir, "ctl")
        self.ack = os.path.join(self.dir, "ack")
        for f in (self.ctl, self.ack):
            if os.path.exists(f):
                os.unlink(f)
            os.mkfifo(f)
        # O_RDWR: never blocks on the other end
        self.ctl_fd = os.open(self.ctl, os.O_RDWR)
        self.ack_fd = os.open(self.ack, os.O_RDWR)

    def args(self):
        return ["-D", "-1", "--control", "fifo:%s,%s" % (self.ctl, self.ack)]

    def cmd(self, what, timeout=30.0):
        import select
        os.write(self.ctl_fd, (what + "\n").encode())
        r, _, _ = select.select([self.ack_fd], [], [], timeout)
        if not r:
            raise RuntimeError("perf did not acknowledge %r" % what)
        os.read(self.ack_fd, 64)

    def close(self):
        os.close(self.ctl_fd)
        os.close(self.ack_fd)


def wait_polling(fb, subj, n_total, timeout=120.0):
    """Waits until fakebot holds n_total polls; returns the seconds since
    the subject's exec."""
    def ok(st):
        if subj.proc.poll() is not None:
            raise RuntimeError("%s exited (%s); log in %s"
                               % (subj.kind, subj.proc.returncode, subj.dir))
        return st["held_requests"] >= n_total
    wait_stat(fb, ok, timeout, step=0.002)
    return time.monotonic() - subj.t_exec


# ---- 1. headline: one bot, 20,000 updates -----------------------------------------

BOT = 1001


def batches(n, chats, per=1000):
    out = []
    for start in range(0, n, per):
        ups = [{"text": "/start", "user_id": 1 + i % chats, "first_name": "Ann"}
               for i in range(start, min(n, start + per))]
        out.append(json.dumps(ups).encode())
    return out


def inject_all(fb, bot, bodies):
    for b in bodies:
        st, data = fb.request("POST", "/control/bots/%d/updates" % bot, raw_body=b,
                              headers={"Content-Type": "application/json"})
        if st != 200:
            raise RuntimeError("inject failed: %s %r" % (st, data))


def one_load(fb, kind, n, chats, name, extra=(), prefix=(), ctl=None):
    """Runs one subject through n updates; returns the measurement. With
    prefix (a perf command) and ctl (its PerfCtl), perf counts only the
    window from the first injection to the end of the work."""
    fb.reset(stats=True)
    subj = Subject(kind, fb, [BOT], name, extra=extra, prefix=prefix).start()
    try:
        fb.wait_state(BOT, held_polls=1, timeout=30)
        wait_quiet(subj.pid)
        bodies = batches(n, chats)
        if ctl:
            ctl.cmd("enable")
        u0, s0 = cpu(subj.pid)
        th0 = thread_cpu(subj.pid)
        fu0, fs0 = cpu(fb.proc.pid)
        ns0 = runtime_ns(subj.pid)
        t0 = time.monotonic()
        inject_all(fb, BOT, bodies)
        t_inj = time.monotonic()
        r = fb.control("GET", "bots/%d/sent" % BOT, min=n, wait_ms=300000,
                       method="sendMessage", limit=1, timeout=310)
        if r["timed_out"]:
            raise RuntimeError("%s: not all replies arrived" % kind)
        t1 = time.monotonic()
        fb.wait_state(BOT, held_polls=1, max_pending_updates=0, timeout=60)
        wait_quiet(subj.pid)
        u1, s1 = cpu(subj.pid)
        th1 = thread_cpu(subj.pid)
        fu1, fs1 = cpu(fb.proc.pid)
        ns1 = runtime_ns(subj.pid)
        if ctl:
            ctl.cmd("disable")
        sent = fb.state(BOT)["sent_count"]
    finally:
        subj.stop()
    per_thread = {}
    for tid, (u, s) in th1.items():
        b = th0.get(tid, (0.0, 0.0))
        per_thread["main" if tid == subj.pid else "thread-%d" % len(per_thread)] = \
            round((u - b[0] + s - b[1]) / n * 1e6, 2)
    return {
        "subject": kind, "updates": n, "chats": chats,
        "user_us": (u1 - u0) / n * 1e6, "sys_us": (s1 - s0) / n * 1e6,
        "cpu_us": (u1 - u0 + s1 - s0) / n * 1e6,
        "schedstat_us": (ns1 - ns0) / n / 1e3,
        "per_thread_us": per_thread,
        "fakebot_us": (fu1 - fu0 + fs1 - fs0) / n * 1e6,
        "wall_s": t1 - t0, "inject_s": t_inj - t0,
        "updates_per_s": n / (t1 - t0), "sent_total": sent,
    }


def phase_headline(reps, n=20000, chats=100):
    summary("\n## Headline: one bot, %d /start updates from %d chats\n" % (n, chats))
    runs = {"floor": [], "botfactoryd": [], "floor-naive": [], "botfactoryd-b": []}
    with start_fakebot() as fb:
        for rep in range(reps):
            order = ["floor", "botfactoryd"] if rep % 2 == 0 else ["botfactoryd", "floor"]
            if BOTFACTORYD_B:
                order.insert(1, "botfactoryd-b")
            for kind in order:
                m = one_load(fb, kind, n, chats, "headline-" + kind)
                runs[kind].append(m)
                record("headline", rep=rep, **m)
                log("headline rep %d %-12s %6.1f us/update (user %.1f sys %.1f) fakebot %.1f us, %.2f s"
                    % (rep, kind, m["cpu_us"], m["user_us"], m["sys_us"], m["fakebot_us"], m["wall_s"]))
            # the floor with botfactoryd's way of handling curl's sockets
            m = one_load(fb, "floor", n, chats, "headline-floor-naive", extra=["--naive-poll"])
            m["subject"] = "floor-naive"
            runs["floor-naive"].append(m)
            record("headline", rep=rep, **m)
            log("headline rep %d %-12s %6.1f us/update" % (rep, "floor-naive", m["cpu_us"]))
    fl = median([m["cpu_us"] for m in runs["floor"]])
    summary("| subject | CPU µs/update (median) | runs | user | sys | ratio to floor | fakebot µs/update | updates/s |")
    summary("|---|---|---|---|---|---|---|---|")
    for kind, label in (("floor", "floor (bench/floor.c)"),
                        ("floor-naive", "floor --naive-poll (feaa532's socket handling)"),
                        ("botfactoryd", "botfactoryd"),
                        ("botfactoryd-b", "botfactoryd-b ($BOTFACTORYD_B)")):
        v = runs[kind]
        if not v:
            continue
        c = median([m["cpu_us"] for m in v])
        summary("| %s | **%.1f** | %s | %.1f | %.1f | %.2fx | %.1f | %.0f |" % (
            label, c, fmt_runs([m["cpu_us"] for m in v]),
            median([m["user_us"] for m in v]), median([m["sys_us"] for m in v]),
            c / fl, median([m["fakebot_us"] for m in v]),
            median([m["updates_per_s"] for m in v])))
    d = runs["botfactoryd"]
    thr = {}
    for m in d:
        for k, v in m["per_thread_us"].items():
            thr.setdefault(k, []).append(v)
    summary("\nbotfactoryd per thread (median µs/update): " +
            ", ".join("%s %.1f" % (k, median(v)) for k, v in sorted(thr.items())))
    # each rep runs the two back to back: the ratio within a rep cancels
    # the drift of a noisy machine between reps
    paired = [b["schedstat_us"] / f["schedstat_us"] for b, f in zip(d, runs["floor"])]
    summary("\nbotfactoryd / floor within each rep (schedstat): %s; median **%.2fx**"
            % (" / ".join("%.2f" % r for r in paired), median(paired)))
    if runs["botfactoryd-b"]:
        pb = [b["schedstat_us"] / f["schedstat_us"] for b, f in zip(runs["botfactoryd-b"], runs["floor"])]
        ab = [a["schedstat_us"] / b["schedstat_us"] for a, b in zip(d, runs["botfactoryd-b"])]
        summary("\nbotfactoryd-b / floor within each rep: %s; median **%.2fx**"
                % (" / ".join("%.2f" % r for r in pb), median(pb)))
        summary("\nbotfactoryd / botfactoryd-b within each rep: %s; median **%.2fx**"
                % (" / ".join("%.2f" % r for r in ab), median(ab)))
    record("headline_summary", floor=fl, botfactoryd=median([m["cpu_us"] for m in d]),
           floor_naive=median([m["cpu_us"] for m in runs["floor-naive"]]),
           paired_ratio=median(paired))


def phase_chats(reps, n=20000):
    """The headline load, but every update from another chat (the bot's
    per-chat send queues grow to n)."""
    summary("\n## One bot, %d /start updates from %d chats (one each) against 100 chats\n" % (n, n))
    runs = {}
    with start_fakebot() as fb:
        for rep in range(reps):
            for chats in (100, n):
                for kind in ("floor", "botfactoryd"):
                    m = one_load(fb, kind, n, chats, "chats-" + kind)
                    runs.setdefault((kind, chats), []).append(m)
                    record("chats", rep=rep, **m)
                    log("chats rep %d %-12s %5d chats: %.1f us/update" % (rep, kind, chats, m["cpu_us"]))
    summary("| subject | chats | CPU µs/update (runs) | median | loop thread (median) |")
    summary("|---|---|---|---|---|")
    for (kind, chats), v in sorted(runs.items()):
        summary("| %s | %d | %s | **%.1f** | %.1f |" % (
            kind, chats, fmt_runs([m["cpu_us"] for m in v]), median([m["cpu_us"] for m in v]),
            median([m["per_thread_us"].get("main", 0) for m in v])))


# ---- 1b. syscalls per update -------------------------------------------------------

SYSCALLS = ("poll ppoll epoll_wait epoll_pwait epoll_ctl sendto recvfrom sendmsg recvmsg "
            "write writev read readv pwrite64 pread64 fsync fdatasync futex ioctl fcntl "
            "close socket connect accept4 getsockopt setsockopt getsockname getpeername "
            "openat newfstatat newfstat lseek unlink mmap munmap mprotect brk madvise "
            "clock_nanosleep sched_yield getpid gettid getrandom rt_sigprocmask").split()


def read_perf_stat(path):
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
                try:
                    c = int(parts[0])
                except ValueError:
                    continue
                if c:
                    counts[parts[2][len("syscalls:sys_enter_"):]] = c
    return counts


def phase_syscalls(n=20000, chats=100):
    summary("\n## Syscalls per update (same load, perf stat tracepoints, one run each)\n")
    res = {}
    with start_fakebot() as fb:
        for kind, extra in (("floor", []), ("floor-naive", ["--naive-poll"]), ("botfactoryd", [])):
            real = "botfactoryd" if kind == "botfactoryd" else "floor"
            ctl = PerfCtl("perfctl-" + kind)
            path = os.path.join(WORK, "perfstat-%s.csv" % kind)
            prefix = ["perf", "stat", "-x,", "-o", path] + ctl.args() + \
                ["-e", ",".join("syscalls:sys_enter_" + x for x in SYSCALLS), "--"]
            one_load(fb, real, n, chats, "syscalls-" + kind, extra=extra, prefix=prefix, ctl=ctl)
            ctl.close()
            res[kind] = {k: v / n for k, v in read_perf_stat(path).items()}
            record("syscalls", subject=kind, per_update=res[kind])
    names = sorted(set().union(*[set(v) for v in res.values()]),
                   key=lambda k: -max(r.get(k, 0) for r in res.values()))
    summary("| syscall | floor | floor --naive-poll | botfactoryd |")
    summary("|---|---|---|---|")
    for k in names:
        if max(r.get(k, 0) for r in res.values()) < 0.01:
            continue
        summary("| %s | %.2f | %.2f | %.2f |" % (k, res["floor"].get(k, 0),
                                                  res["floor-naive"].get(k, 0),
                                                  res["botfactoryd"].get(k, 0)))
    summary("| **total** | %.2f | %.2f | %.2f |" % tuple(
        sum(res[k].values()) for k in ("floor", "floor-naive", "botfactoryd")))


# ---- 2. profiles ---------------------------------------------------------------------

MALLOC = re.compile(r"^(__libc_)?(malloc|free|calloc|realloc|cfree)$|^_int_(malloc|free|realloc)"
                    r"|^malloc_consolidate$|^tcache|^__libc_(malloc|free|calloc|realloc)"
                    r"|^unlink_chunk|^_int_free_merge_chunk|^_int_free_create_chunk|^_int_free_maybe")
SYSCALL = re.compile(r"^(?:__x64_sys|__do_sys|__se_sys|__ia32_sys)_(\w+)")


WRAPPERS = {"send": "sendto", "recv": "recvfrom", "libc_pwrite64": "pwrite64", "pwrite": "pwrite64",
            "libc_pread64": "pread64", "pread": "pread64", "libc_fcntl64": "fcntl", "fcntl64": "fcntl"}


def syscall_name(frames, i):
    """The syscall of a kernel stack whose entry is frames[i]: the sys_
    frame just inside the entry, else the libc wrapper just outside."""
    for s2, _ in reversed(frames[:i]):
        mm = SYSCALL.match(s2)
        if mm:
            return mm.group(1)
    for s2, d2 in frames[i + 1:]:
        if "kernel" not in d2:
            name = re.sub(r"@.*$", "", s2).lstrip("_")
            name = re.sub(r"^libc_", "", name) if name not in WRAPPERS else name
            return WRAPPERS.get(name, name)
    return "other syscall"


def classify(frames):
    """frames: [(sym, dso)] innermost first. Returns (category, detail)."""
    sym, dso = frames[0]
    if "kernel.kallsyms" in dso or dso.startswith("[kernel"):
        sc = None
        for i, (s, d) in enumerate(frames):
            if s in ("do_syscall_64", "entry_SYSCALL_64_after_hwframe"):
                sc = syscall_name(frames, i)
                break
        if sc is None:
            if any(s == "exc_page_fault" for s, _ in frames):
                sc = "page faults"
            else:
                sc = "interrupts/other"
        return "kernel", sc
    base = os.path.basename(dso)
    if base.startswith("libcurl"):
        return "libcurl", sym
    if base.startswith("libsqlite3"):
        return "sqlite", sym
    if base.startswith("libcjson"):
        return "cJSON", sym
    if base.startswith("libuv"):
        return "libuv", sym
    if base.startswith(("libssl", "libcrypto")):
        return "OpenSSL", sym
    if base.startswith("libc.so") or base.startswith("libc-"):
        if MALLOC.search(re.sub(r"@.*$", "", sym)):  # cfree@GLIBC_2.2.5 is free
            return "malloc/free", sym
        return "libc other", sym
    if base.startswith("libpcre2"):
        return "pcre2", sym
    if base.startswith("libyaml"):
        return "libyaml", sym
    if base in ("botfactoryd", "floor"):
        return "program", sym
    if base.startswith(("libz", "libnghttp2", "libidn2", "libpsl", "libssh", "libbrotli",
                        "libgssapi", "libkrb5", "librtmp", "libldap", "libzstd")):
        return "curl deps", base
    return "other", "%s (%s)" % (sym, base)


def perf_script_parse(path):
    """Reads perf script output; returns a list of (tid, frames)."""
    p = subprocess.run(["perf", "script", "-i", path, "-F", "tid,ip,sym,dso"],
                       capture_output=True, text=True)
    samples = []
    tid, frames = None, []
    for line in p.stdout.splitlines():
        if not line.strip():
            if tid is not None and frames:
                samples.append((tid, frames))
            tid, frames = None, []
            continue
        if not line.startswith((" ", "\t")) or (tid is None and line.strip().isdigit()):
            tid = int(line.split()[0])
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            frames.append((sym, m.group(2)))
    if tid is not None and frames:
        samples.append((tid, frames))
    return samples


_SRC = {}


def program_category(binary, sym):
    """The source file a symbol of the program comes from (nm -l, -g build)."""
    if binary not in _SRC:
        _SRC[binary] = {}
        p = subprocess.run(["nm", "-l", "--defined-only", binary], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[1] in "tT":
                _SRC[binary][parts[2]] = os.path.basename(parts[3].rsplit(":", 1)[0])
    base = re.sub(r"\.(part|constprop|isra|cold)\..*$", "", sym)
    return _SRC[binary].get(sym) or _SRC[binary].get(base) or "?"


def phase_profile(n=20000, chats=100):
    summary("\n## Profiles (perf record -e cpu-clock -g, one run each, same load)\n")
    tables = {}
    with start_fakebot() as fb:
        for kind in ("floor", "botfactoryd"):
            data = os.path.join(WORK, "perf-%s.data" % kind)
            ctl = PerfCtl("perfctl-rec-" + kind)
            prefix = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g",
                      "-o", data] + ctl.args() + ["--"]
            m = one_load(fb, kind, n, chats, "profile-" + kind, prefix=prefix, ctl=ctl)
            ctl.close()
            deadline = time.monotonic() + 60
            while not os.path.exists(data) and time.monotonic() < deadline:
                time.sleep(0.05)
            samples = perf_script_parse(data)
            cats, details = {}, {}
            main_tid = None
            tids = {}
            for tid, frames in samples:
                tids[tid] = tids.get(tid, 0) + 1
            main_tid = min(tids) if tids else None  # the main thread's tid is the pid
            for tid, frames in samples:
                c, d = classify(frames)
                if c == "program":
                    c = "%s: %s" % (kind, program_category(BOTFACTORYD if kind == "botfactoryd" else FLOOR, d))
                key = c
                cats[key] = cats.get(key, 0) + 1
                details.setdefault(key, {})
                details[key][d] = details[key].get(d, 0) + 1
            total = sum(cats.values())
            tables[kind] = (total, cats, details, {("main" if t == main_tid else "other"): v
                                                   for t, v in tids.items()})
            record("profile", subject=kind, samples=total, categories=cats,
                   threads=tables[kind][3],
                   top={k: sorted(v.items(), key=lambda x: -x[1])[:15] for k, v in details.items()})
            with open(os.path.join(OUT, "perf-%s.txt" % kind), "w") as f:
                subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                                "--sort", "dso,sym", "-g", "none", "--percent-limit", "0.3"],
                               stdout=f, stderr=subprocess.DEVNULL)
    # CPU per update from the headline medians, to turn shares into µs
    per = {}
    try:
        with open(os.path.join(OUT, "results.jsonl")) as f:
            for line in f:
                r = json.loads(line)
                if r["kind"] == "headline_summary":
                    per = {"floor": r["floor"], "botfactoryd": r["botfactoryd"]}
    except FileNotFoundError:
        pass
    for kind, (total, cats, details, thr) in tables.items():
        us = per.get(kind)
        summary("\n### %s: %d samples%s\n" % (kind, total,
                                             " (threads: %s)" % ", ".join("%s %.0f%%" % (k, 100.0 * v / total) for k, v in sorted(thr.items())) if len(thr) > 1 else ""))
        summary("| where | share | ≈ µs/update | top entries |")
        summary("|---|---|---|---|")
        for c, v in sorted(cats.items(), key=lambda x: -x[1]):
            share = v / total
            top = sorted(details[c].items(), key=lambda x: -x[1])[:6]
            summary("| %s | %.1f%% | %s | %s |" % (
                c, 100 * share, "%.1f" % (share * us) if us else "-",
                ", ".join("%s %.1f%%" % (k, 100.0 * x / total) for k, x in top)))


# ---- 3 and 5. fleets: memory per bot and start-up time ---------------------------------

def fleet_ids(n, base=100001):
    return list(range(base, base + n))


def daemon_multis(default=16):
    """TG_API_MULTIS of include/botfactory/tg_api.h: the multi handles the
    daemon spreads its requests over."""
    try:
        with open(os.path.join(ROOT, "include", "botfactory", "tg_api.h")) as f:
            m = re.search(r"#define\s+TG_API_MULTIS\s+(\d+)", f.read())
        return int(m.group(1)) if m else default
    except OSError:
        return default


# multi handles of the sharded floor: the daemon's count (--floor-multis K),
# or 0 for one per 250 bots (the prototype of feaa532's measurements)
FLOOR_MULTIS = daemon_multis()
BOTS_PER_MULTI = 250


def shards(n):
    """Multi handles for the sharded floor."""
    if FLOOR_MULTIS > 0:
        return FLOOR_MULTIS
    return max(1, (n + BOTS_PER_MULTI - 1) // BOTS_PER_MULTI)


def fleet_measure(fb, kind, n, name, level="warn", fresh_db=True, ca=None, extra=(),
                  timeout=120.0):
    subj = Subject(kind, fb, fleet_ids(n), name, level=level, fresh_db=fresh_db, ca=ca,
                   extra=extra).start()
    try:
        if n:
            try:
                startup = wait_polling(fb, subj, n, timeout=timeout)
            except TimeoutError:
                held = fb.stats()["held_requests"]
                log("%s: only %d of %d polls held after %.0f s" % (kind, held, n, timeout))
                return {"subject": kind, "bots": n, "startup_s": None, "held": held,
                        "timeout_s": timeout, "rss_kib": rss_kib(subj.pid),
                        "startup_cpu_s": sum(cpu(subj.pid))}
        else:
            deadline = time.monotonic() + 10
            while threads(subj.pid) < (2 if kind == "botfactoryd" else 1) and time.monotonic() < deadline:
                time.sleep(0.01)
            startup = None
        cpu_start = sum(cpu(subj.pid))
        wait_quiet(subj.pid)
        rss = wait_rss_stable(subj.pid)
        st = fb.stats()
    finally:
        subj.stop()
        fb.reset()
    return {"subject": kind, "bots": n, "startup_s": startup, "rss_kib": rss,
            "startup_cpu_s": cpu_start, "fakebot_rss_kib": rss_kib(fb.proc.pid),
            "connections": st["open_connections"]}


def phase_fleet(reps, sizes=(1000, 10000), tls_dir=None, label="HTTP", tls_reps=None):
    summary("\n## Fleet over %s: RSS per idle polling bot and start-up time\n" % label)
    summary("botfactoryd runs with `--log-level warn`; `cold` = a new database "
            "(getMe, getUpdates per bot; the bench spec has no command menu, so no setMyCommands), "
            "`warm` = a restart on that database (getMe, getUpdates). RSS is read once fakebot "
            "holds every poll and the process is quiet.\n")
    ca = tls_dir + "/ca.pem" if tls_dir else None
    res = {}
    with start_fakebot(tls=tls_dir) as fb:
        for rep in range(reps):
            m = fleet_measure(fb, "botfactoryd", 0, "fleet-empty", ca=ca)
            res.setdefault(("botfactoryd-empty", 0), []).append(m)
            record("fleet", proto=label, rep=rep, variant="empty", **m)
            for n in sizes:
                if tls_reps is not None and n > 1000 and rep >= tls_reps:
                    continue
                for variant, kind, fresh in (("floor", "floor", True),
                                             ("floor-sharded", "floor", True),
                                             ("cold", "botfactoryd", True),
                                             ("warm", "botfactoryd", False)):
                    name = "fleet-%s-%d" % ("floor" if kind == "floor" else "bfd", n)
                    extra = ["--multis", str(shards(n))] if variant == "floor-sharded" else []
                    m = fleet_measure(fb, kind, n, name, fresh_db=fresh, ca=ca, extra=extra)
                    res.setdefault((variant, n), []).append(m)
                    record("fleet", proto=label, rep=rep, variant=variant, **m)
                    log("fleet %s rep %d %-6s %5d bots: start-up %.3f s, RSS %d KiB"
                        % (label, rep, variant, n, m["startup_s"], m["rss_kib"]))
    empty = median([m["rss_kib"] for m in res[("botfactoryd-empty", 0)]])
    summary("Empty daemon (0 bots): RSS %s KiB (median %d).\n" % (
        fmt_runs([m["rss_kib"] for m in res[("botfactoryd-empty", 0)]], "%d"), empty))
    summary("| bots | subject | start-up s (runs) | median | RSS MiB | KiB per bot | CPU of start-up s |")
    summary("|---|---|---|---|---|---|---|")
    per_bot = {}
    for n in sizes:
        for variant in ("floor", "floor-sharded", "cold", "warm"):
            v = res.get((variant, n))
            if not v:
                continue
            failed = [m for m in v if m["startup_s"] is None]
            v = [m for m in v if m["startup_s"] is not None]
            if failed:
                summary("| %d | %s | not all polling after %.0f s (%s of %d held) | - | %.1f | - | %.2f |" % (
                    n, variant, failed[0]["timeout_s"], ", ".join(str(m["held"]) for m in failed), n,
                    failed[0]["rss_kib"] / 1024.0, failed[0]["startup_cpu_s"]))
            if not v:
                continue
            rss = median([m["rss_kib"] for m in v])
            if variant.startswith("floor"):
                # the floor has no 0-bot mode: per bot from its own slope
                small = res.get((variant, sizes[0]))
                kib = "-"
                if n != sizes[0] and small:
                    kib = "%.1f (slope %d→%d)" % ((rss - median([m["rss_kib"] for m in small])) / (n - sizes[0]), sizes[0], n)
            else:
                per = (rss - empty) / n
                per_bot[(variant, n)] = per
                kib = "**%.1f**" % per
            label = {"floor": "floor", "floor-sharded": "floor --multis %d" % shards(n)}.get(
                variant, "botfactoryd " + variant)
            summary("| %d | %s | %s | %.3f | %.1f | %s | %.2f |" % (
                n, label,
                fmt_runs([m["startup_s"] for m in v], "%.3f"),
                median([m["startup_s"] for m in v]), rss / 1024.0, kib,
                median([m["startup_cpu_s"] for m in v])))
    record("fleet_summary", proto=label, empty_kib=empty,
           per_bot={"%s-%d" % k: v for k, v in per_bot.items()})


def phase_tls(reps, big_reps=1, sizes=(1000, 10000)):
    tls = os.path.join(WORK, "tls")
    if not os.path.exists(tls + "/ca.pem"):
        subprocess.run(["sh", os.path.join(ROOT, "tests", "fakebot", "make-ca.sh"), tls], check=True)
    sizes = tuple(n for n in sizes if n <= 1000 or big_reps > 0)
    phase_fleet(reps, sizes=sizes, tls_dir=tls, label="HTTPS", tls_reps=big_reps)


# ---- the disk: what one fdatasync costs here -----------------------------------------------

def phase_disk(n=500):
    """Appends 8 KiB and fdatasyncs, n times, in the work directory (where
    the daemon's database lives): the floor under a durable commit."""
    path = os.path.join(WORK, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = b"x" * 8192
    append, overwrite = [], []
    for i in range(n):
        os.write(fd, block)
        t = time.monotonic()
        os.fdatasync(fd)
        append.append((time.monotonic() - t) * 1000)
    for i in range(n):
        os.pwrite(fd, block, (i % 64) * 8192)
        t = time.monotonic()
        os.fdatasync(fd)
        overwrite.append((time.monotonic() - t) * 1000)
    os.close(fd)
    os.unlink(path)
    summary("\n## The disk under the database: fdatasync after an 8 KiB write (%d each)\n" % n)
    summary("| write | p50 ms | p90 | p99 | max |")
    summary("|---|---|---|---|---|")
    for label, v in (("appending (file grows)", append), ("overwriting", overwrite)):
        summary("| %s | %.2f | %.2f | %.2f | %.2f |" % (label, pct(v, 50), pct(v, 90), pct(v, 99), max(v)))
        record("disk", write=label, p50=pct(v, 50), p90=pct(v, 90), p99=pct(v, 99), max=max(v))


# ---- 4, 6. idle CPU and burst, 1,000 bots each ---------------------------------------------

def phase_idle_burst(idle_windows=3, window=60.0, burst_reps=3, n=1000):
    summary("\n## Idle CPU and burst: %d bots each in botfactoryd, the floor and the floor "
            "with --multis %d, side by side on one fakebot\n" % (n, shards(n)))
    with start_fakebot() as fb:
        d = Subject("botfactoryd", fb, fleet_ids(n, 100001), "idle-bfd", level="warn").start()
        f = Subject("floor", fb, fleet_ids(n, 200001), "idle-floor").start()
        g = Subject("floor", fb, fleet_ids(n, 300001), "idle-floor-sharded",
                    extra=["--multis", str(shards(n))]).start()
        g.kind = "floor-sharded"
        try:
            wait_polling(fb, d, 3 * n, timeout=120)
            wait_quiet(d.pid)
            if idle_windows:
                # start the windows off the 30 s poll rhythm's edges
                time.sleep(10)
                rows = []
                for w in range(idle_windows):
                    # schedstat (ns) rather than stat's 10 ms ticks: the
                    # amounts are small; the threads live throughout
                    a = {p: runtime_ns(p) / 1e9 for p in (d.pid, f.pid, g.pid, fb.proc.pid)}
                    s0 = fb.stats()
                    t0 = time.monotonic()
                    time.sleep(window)
                    t1 = time.monotonic()
                    s1 = fb.stats()
                    b = {p: runtime_ns(p) / 1e9 for p in (d.pid, f.pid, g.pid, fb.proc.pid)}
                    el = t1 - t0
                    row = {"window_s": el,
                           "botfactoryd_pct": 100 * (b[d.pid] - a[d.pid]) / el,
                           "floor_pct": 100 * (b[f.pid] - a[f.pid]) / el,
                           "floor_sharded_pct": 100 * (b[g.pid] - a[g.pid]) / el,
                           "fakebot_pct": 100 * (b[fb.proc.pid] - a[fb.proc.pid]) / el,
                           "polls": s1["methods"].get("getUpdates", 0) - s0["methods"].get("getUpdates", 0),
                           "botfactoryd_rss_kib": rss_kib(d.pid)}
                    rows.append(row)
                    record("idle", window=w, **row)
                    log("idle window %d: botfactoryd %.3f%%, floor %.3f%%, sharded floor %.3f%%, fakebot %.3f%% of a core, %d polls"
                        % (w, row["botfactoryd_pct"], row["floor_pct"], row["floor_sharded_pct"],
                           row["fakebot_pct"], row["polls"]))
                summary("Idle, poll timeout 30 s, %d windows of %.0f s (each process's 1,000 polls "
                        "answered `[]` and re-sent twice per window):\n" % (idle_windows, window))
                summary("| process | % of one core, per window | median | CPU per re-poll |")
                summary("|---|---|---|---|")
                polls_per_subject = median([r["polls"] for r in rows]) / 3
                for key, label in (("botfactoryd_pct", "botfactoryd (%d bots)" % n),
                                   ("floor_pct", "floor (%d bots)" % n),
                                   ("floor_sharded_pct", "floor --multis %d (%d bots)" % (shards(n), n)),
                                   ("fakebot_pct", "fakebot (all three fleets)")):
                    v = [r[key] for r in rows]
                    polls = polls_per_subject * (3 if key == "fakebot_pct" else 1)
                    per = "%.0f µs" % (median(v) / 100 * window / polls * 1e6) if polls else "-"
                    summary("| %s | %s | **%.3f %%** | %s |" % (label, fmt_runs(v, "%.3f"), median(v), per))

            # burst: 10 updates to each bot at once, botfactoryd and floor in turn
            summary("\nBurst: 10 `/start` updates to each of %d bots, injected by %d pipelined "
                    "control requests on one connection:\n" % (n, n))
            res = {"botfactoryd": [], "floor": [], "floor-sharded": []}
            for rep in range(burst_reps):
                order = [(d, 100001), (f, 200001), (g, 300001)]
                if rep % 2:
                    order.reverse()
                for subj, base in order:
                    m = burst_once(fb, subj, fleet_ids(n, base))
                    res[subj.kind].append(m)
                    record("burst", rep=rep, **m)
                    log("burst rep %d %-12s tail %.3f s, total %.3f s, %.1f us/update, fakebot %.1f us/update"
                        % (rep, subj.kind, m["tail_s"], m["total_s"], m["cpu_us"], m["fakebot_us"]))
            summary("| subject | last injection → last reply, s (runs) | median | first injection → last reply | injection took | CPU µs/update | fakebot µs/update | cores busy (subject + fakebot) |")
            summary("|---|---|---|---|---|---|---|---|")
            for kind in ("floor", "floor-sharded", "botfactoryd"):
                v = res[kind]
                summary("| %s | %s | **%.3f** | %.3f | %.3f | %.1f | %.1f | %.2f + %.2f |" % (
                    kind if kind != "floor-sharded" else "floor --multis %d" % shards(n), fmt_runs([m["tail_s"] for m in v], "%.3f"), median([m["tail_s"] for m in v]),
                    median([m["total_s"] for m in v]), median([m["inject_s"] for m in v]),
                    median([m["cpu_us"] for m in v]), median([m["fakebot_us"] for m in v]),
                    median([m["subject_cores"] for m in v]), median([m["fakebot_cores"] for m in v])))
            r = median([m["tail_s"] for m in res["botfactoryd"]]) / median([m["tail_s"] for m in res["floor"]])
            r2 = median([m["tail_s"] for m in res["botfactoryd"]]) / median([m["tail_s"] for m in res["floor-sharded"]])
            summary("\nbotfactoryd / floor (tail): %.2fx; botfactoryd / sharded floor: %.2fx" % (r, r2))
        finally:
            d.stop()
            f.stop()
            g.stop()


def burst_once(fb, subj, ids, per_bot=10):
    off, rtt = fb_clock_offset(fb)
    base = fb.stats()["methods"].get("sendMessage", 0)
    reqs = []
    for i in ids:
        ups = [{"text": "/start", "user_id": 1 + k, "first_name": "Ann"} for k in range(per_bot)]
        reqs.append(("POST", "/control/bots/%d/updates" % i, json.dumps(ups).encode()))
    c0 = sum(cpu(subj.pid))
    f0 = sum(cpu(fb.proc.pid))
    answers, t0, t_sent, t_last = pipelined(fb, reqs)
    bad = [s for s, _ in answers if s != 200]
    if bad:
        raise RuntimeError("burst injection refused: %r" % bad[:3])
    want = base + per_bot * len(ids)
    wait_stat(fb, lambda st: st["methods"].get("sendMessage", 0) >= want, 120, step=0.01)
    t_seen = time.monotonic()
    wait_quiet(subj.pid)
    c1 = sum(cpu(subj.pid))
    f1 = sum(cpu(fb.proc.pid))
    # the last reply's time on fakebot's clock
    answers, _, _, _ = pipelined(fb, [("GET", "/control/bots/%d/sent?method=sendMessage" % i, None)
                                      for i in ids])
    last = max(max(c["at_ms"] for c in json.loads(body)["calls"]) for _, body in answers)
    t_first_ms = t0 * 1000 + off
    t_last_inj_ms = t_last * 1000 + off
    n = per_bot * len(ids)
    wall = t_seen - t0
    return {"subject": subj.kind, "bots": len(ids), "updates": n,
            "tail_s": (last - t_last_inj_ms) / 1000, "total_s": (last - t_first_ms) / 1000,
            "inject_s": t_last - t0, "clock_rtt_ms": rtt,
            "cpu_us": (c1 - c0) / n * 1e6, "fakebot_us": (f1 - f0) / n * 1e6,
            "subject_cores": (c1 - c0) / ((last - t_first_ms) / 1000),
            "fakebot_cores": (f1 - f0) / ((last - t_first_ms) / 1000), "wall_s": wall}


# ---- 7. latency ------------------------------------------------------------------------

def phase_latency(reps, count=1000, period_ms=20.0):
    summary("\n## Latency at light load: one update every %.0f ms, %d per run\n" % (period_ms, count))
    res = {"botfactoryd": [], "floor": []}
    with start_fakebot() as fb:
        ids = {"botfactoryd": 1001, "floor": 1002}
        for rep in range(reps):
            fb.reset(stats=True)
            d = Subject("botfactoryd", fb, [1001], "latency-bfd").start()
            f = Subject("floor", fb, [1002], "latency-floor").start()
            try:
                fb.wait_state(1001, held_polls=1, timeout=30)
                fb.wait_state(1002, held_polls=1, timeout=30)
                wait_quiet(d.pid)
                wait_quiet(f.pid)
                c0 = {"botfactoryd": sum(cpu(d.pid)), "floor": sum(cpu(f.pid))}
                off0, rtt0 = fb_clock_offset(fb)
                sends = {"botfactoryd": [], "floor": []}
                t_start = time.monotonic() + 0.05
                for k in range(count):
                    for j, kind in enumerate(("botfactoryd", "floor")):
                        due = t_start + (k * period_ms + j * period_ms / 2) / 1000
                        delay = due - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        body = json.dumps([{"text": "/start", "user_id": 1 + k % 100,
                                            "first_name": "Ann"}]).encode()
                        t = time.monotonic()
                        st, _ = fb.request("POST", "/control/bots/%d/updates" % ids[kind],
                                           raw_body=body, headers={"Content-Type": "application/json"})
                        sends[kind].append(t)
                for kind in ids:
                    fb.wait_sent(ids[kind], count, method="sendMessage", timeout=60)
                    fb.wait_state(ids[kind], held_polls=1, max_pending_updates=0, timeout=30)
                wait_quiet(d.pid)
                wait_quiet(f.pid)
                c1 = {"botfactoryd": sum(cpu(d.pid)), "floor": sum(cpu(f.pid))}
                off1, rtt1 = fb_clock_offset(fb)
                off = (off0 + off1) / 2
                for kind in ids:
                    calls = fb.sent(ids[kind], method="sendMessage")["calls"]
                    lat = [c["at_ms"] - (t * 1000 + off) for c, t in zip(calls, sends[kind])]
                    with open(os.path.join(OUT, "latency-%s-%d.txt" % (kind, rep)), "w") as lf:
                        lf.write("".join("%.3f\n" % x for x in lat))
                    m = {"subject": kind, "n": len(lat), "p50_ms": pct(lat, 50),
                         "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99), "max_ms": max(lat),
                         "min_ms": min(lat), "clock_rtt_ms": max(rtt0, rtt1),
                         "clock_drift_ms": off1 - off0,
                         "cpu_us": (c1[kind] - c0[kind]) / count * 1e6}
                    res[kind].append(m)
                    record("latency", rep=rep, **m)
                    log("latency rep %d %-12s p50 %.2f p90 %.2f p99 %.2f max %.2f ms, %.0f us CPU/update"
                        % (rep, kind, m["p50_ms"], m["p90_ms"], m["p99_ms"], m["max_ms"], m["cpu_us"]))
            finally:
                d.stop()
                f.stop()
    summary("| subject | p50 ms (runs) | median p50 | p90 | p99 (runs) | median p99 | max | CPU µs/update (one update per poll) |")
    summary("|---|---|---|---|---|---|---|---|")
    for kind in ("floor", "botfactoryd"):
        v = res[kind]
        summary("| %s | %s | **%.2f** | %.2f | %s | **%.2f** | %.2f | %.0f |" % (
            kind, fmt_runs([m["p50_ms"] for m in v], "%.2f"), median([m["p50_ms"] for m in v]),
            median([m["p90_ms"] for m in v]), fmt_runs([m["p99_ms"] for m in v], "%.2f"),
            median([m["p99_ms"] for m in v]), max(m["max_ms"] for m in v),
            median([m["cpu_us"] for m in v])))


# ---- main ----------------------------------------------------------------------------------

PHASES = ["headline", "chats", "syscalls", "profile", "fleet", "tls", "idle", "disk", "latency"]


def main():
    global OUT, WORK, FLOOR_MULTIS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench-results"))
    ap.add_argument("--work", default=None, help="scratch directory (specs, databases, perf data)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--headline-reps", type=int, default=5)
    ap.add_argument("--updates", type=int, default=20000)
    ap.add_argument("--idle-windows", type=int, default=3)
    ap.add_argument("--tls-big-reps", type=int, default=0,
                    help="runs of 10,000 bots over HTTPS (0: skip; each takes 1-2 minutes)")
    ap.add_argument("--fleet-sizes", default="1000,10000", help="bot counts of the fleet phases")
    ap.add_argument("--idle-window", type=float, default=60.0, help="seconds per idle window")
    ap.add_argument("--fleet-bots", type=int, default=1000, help="bots of the idle and burst phases")
    ap.add_argument("--floor-multis", type=int, default=FLOOR_MULTIS,
                    help="multi handles of the sharded floor (default: the daemon's TG_API_MULTIS, "
                    "%d; 0: one per 250 bots)" % FLOOR_MULTIS)
    ap.add_argument("phases", nargs="*", help="%s (idle also runs the burst)" % ", ".join(PHASES))
    a = ap.parse_args()
    FLOOR_MULTIS = a.floor_multis
    OUT = os.path.abspath(a.out)
    os.makedirs(OUT, exist_ok=True)
    WORK = os.path.abspath(a.work or tempfile.mkdtemp(prefix="botfactory-bench-", dir="/var/tmp"))
    os.makedirs(WORK, exist_ok=True)
    for b in (BOTFACTORYD, FAKEBOT, FLOOR):
        if not os.access(b, os.X_OK):
            sys.exit("bench.py: %s is not an executable (set BOTFACTORYD, FAKEBOT, FLOOR)" % b)
    phases = a.phases or PHASES
    sizes = tuple(int(x) for x in a.fleet_sizes.split(","))
    log("bench: out %s, work %s, phases %s" % (OUT, WORK, " ".join(phases)))
    t0 = time.monotonic()
    for ph in phases:
        tp = time.monotonic()
        if ph == "headline":
            phase_headline(a.headline_reps, n=a.updates)
        elif ph == "chats":
            phase_chats(a.reps, n=a.updates)
        elif ph == "syscalls":
            phase_syscalls(n=a.updates)
        elif ph == "profile":
            phase_profile(n=a.updates)
        elif ph == "fleet":
            phase_fleet(a.reps, sizes=sizes)
        elif ph == "tls":
            phase_tls(a.reps, big_reps=a.tls_big_reps, sizes=sizes)
        elif ph in ("idle", "burst"):
            phase_idle_burst(idle_windows=a.idle_windows if ph == "idle" else 0,
                             window=a.idle_window, burst_reps=a.reps, n=a.fleet_bots)
        elif ph == "disk":
            phase_disk()
        elif ph == "latency":
            phase_latency(a.reps)
        else:
            sys.exit("bench.py: unknown phase %r" % ph)
        log("phase %s took %.0f s" % (ph, time.monotonic() - tp))
    log("bench: all done in %.0f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
