#!/bin/sh
# bench/run.sh [bench.py options] [PHASE...]: runs the benchmarks of
# doc/benchmarks.md (all phases when none is named; about 7 minutes on a
# 2-core machine) and writes OUT/summary.md, OUT/results.jsonl,
# OUT/environment.txt and the perf reports.
#
#   BUILD        meson build directory             [build]
#   BOTFACTORYD  the daemon                        [$BUILD/botfactoryd]
#   BOTFACTORYD_B another daemon build, measured beside it in the headline [none]
#   FAKEBOT      the fake Bot API server           [$BUILD/tests/fakebot/fakebot]
#   FLOOR        the floor program                 [$BUILD/bench/floor, else compiled into OUT]
#   OUT          results                           [$BUILD/bench-results]
#   WORK         scratch (specs, databases, perf)  [a new /var/tmp/botfactory-bench-* dir]
#   KEEP_WORK=1  keep WORK afterwards
#
# Needs python3, perf (linux-perf) for the syscalls and profile phases, and
# openssl for the tls phase. Run as root or with perf_event_paranoid <= 1
# for the perf phases.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
BUILD=${BUILD:-$root/build}
BOTFACTORYD=${BOTFACTORYD:-$BUILD/botfactoryd}
FAKEBOT=${FAKEBOT:-$BUILD/tests/fakebot/fakebot}
OUT=${OUT:-$BUILD/bench-results}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ -z "${FLOOR:-}" ]; then
	if [ -x "$BUILD/bench/floor" ]; then
		FLOOR=$BUILD/bench/floor
	else
		FLOOR=$OUT/floor
		# the same flags as a debugoptimized meson build
		${CC:-cc} -std=c11 -O2 -g -D_GNU_SOURCE -Wall -Wextra -o "$FLOOR" "$here/floor.c" \
			$(pkg-config --cflags --libs libuv libcurl libcjson)
	fi
fi
for b in "$BOTFACTORYD" "$FAKEBOT" "$FLOOR"; do
	[ -x "$b" ] || { echo "run.sh: $b is missing: meson setup build && meson compile -C build" >&2; exit 1; }
done
export BOTFACTORYD FAKEBOT FLOOR

# thousands of sockets in three processes
ulimit -n "$(ulimit -Hn)"

if [ -z "${WORK:-}" ]; then
	WORK=$(mktemp -d /var/tmp/botfactory-bench-XXXXXX)
	[ "${KEEP_WORK:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "nproc: $(nproc)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "kernel: $(uname -srm)"
	echo "memory: $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
	echo "filesystem of WORK: $(df -T "$WORK" | awk 'NR == 2 {print $2 " on " $1}')"
	echo "botfactoryd: $("$BOTFACTORYD" --version) at $BOTFACTORYD"
	[ -z "${BOTFACTORYD_B:-}" ] || echo "botfactoryd-b: $("$BOTFACTORYD_B" --version) at $BOTFACTORYD_B"
	if rev=$(cd "$root" && git rev-parse --short HEAD 2>/dev/null); then
		echo "source tree: $rev$(cd "$root" && git diff --quiet HEAD -- src include 2>/dev/null || echo ' (src/ or include/ modified)') (the binaries may be older: rebuild first)"
	else
		echo "source tree: not a git checkout (a git archive?): note the commit yourself"
	fi
	for p in libuv libcurl sqlite3 libcjson openssl; do
		echo "$p: $(pkg-config --modversion "$p" 2>/dev/null || echo '?')"
	done
	echo "python: $(python3 --version 2>&1)"
	echo "perf: $(perf --version 2>/dev/null || echo 'not installed')"
	echo "open files: $(ulimit -n)"
} >"$OUT/environment.txt"
cat "$OUT/environment.txt"

if ! perf stat -e cpu-clock true >/dev/null 2>&1; then
	echo "run.sh: perf does not work here: the syscalls and profile phases will fail" >&2
fi

: >"$OUT/summary.md"
: >"$OUT/results.jsonl"
python3 "$here/bench.py" --out "$OUT" --work "$WORK" "$@"
echo "results: $OUT/summary.md"
