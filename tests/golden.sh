#!/bin/sh
# Golden tests of the spec compiler, through `botfactoryctl validate`.
#
#   sh tests/golden.sh CTL SPECS_DIR [--update]
#
# CTL is the botfactoryctl binary; SPECS_DIR is tests/specs (absolute or
# relative). The script cd's to the repository root (the parent of the
# parent of SPECS_DIR) and names every spec as `tests/specs/...`, so the
# paths inside error messages do not depend on where the build runs.
#
#   invalid/NAME.yaml|.yml|.json  must fail: exit status 1, and stderr
#                                 identical to invalid/NAME.err
#   valid/NAME.yaml|.yml|.json    must pass: exit status 0
#
# One line per case (PASS/FAIL name), a diff -u on a mismatch, then a
# summary; the exit status is 1 when any case failed.
#
# --update (maintainers): rewrites every invalid/NAME.err from what the
# compiler prints now. Review the result with `git diff tests/specs` before
# committing: a changed .err is a changed user-visible message.
set -u

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: sh $0 CTL SPECS_DIR [--update]" >&2
	exit 2
fi
ctl=$1
specs=$2
update=0
if [ $# -eq 3 ]; then
	if [ "$3" != "--update" ]; then
		echo "golden.sh: unknown option '$3' (only --update)" >&2
		exit 2
	fi
	update=1
fi

# Make CTL usable after the cd (a bare name is looked up in PATH).
case $ctl in
/*) ;;
*/*) ctl=$(pwd)/$ctl ;;
esac

if [ ! -d "$specs" ]; then
	echo "golden.sh: $specs is not a directory" >&2
	exit 2
fi
specs_abs=$(cd "$specs" && pwd) || exit 2
rel=$(basename "$(dirname "$specs_abs")")/$(basename "$specs_abs")
cd "$specs_abs/../.." || exit 2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/golden.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

pass=0
fail=0
updated=0

ok() {
	echo "PASS $1"
	pass=$((pass + 1))
}

bad() {
	echo "FAIL $1: $2"
	fail=$((fail + 1))
}

for spec in "$rel"/invalid/*.yaml "$rel"/invalid/*.yml "$rel"/invalid/*.json; do
	[ -e "$spec" ] || continue
	name=${spec#"$rel"/}
	golden=${spec%.*}.err
	"$ctl" validate "$spec" >"$tmp/out" 2>"$tmp/err"
	status=$?
	if [ "$update" -eq 1 ]; then
		if [ ! -f "$golden" ] || ! cmp -s "$tmp/err" "$golden"; then
			cp "$tmp/err" "$golden"
			echo "UPDATED $golden"
			updated=$((updated + 1))
		fi
	fi
	if [ "$status" -ne 1 ]; then
		bad "$name" "exit status $status, expected 1"
		sed 's/^/    /' "$tmp/err"
		continue
	fi
	if [ ! -f "$golden" ]; then
		bad "$name" "no $golden (create it with --update)"
		sed 's/^/    /' "$tmp/err"
		continue
	fi
	if ! cmp -s "$golden" "$tmp/err"; then
		bad "$name" "stderr differs from $golden"
		diff -u "$golden" "$tmp/err" | sed 's/^/    /'
		continue
	fi
	ok "$name"
done

for spec in "$rel"/valid/*.yaml "$rel"/valid/*.yml "$rel"/valid/*.json; do
	[ -e "$spec" ] || continue
	name=${spec#"$rel"/}
	"$ctl" validate "$spec" >"$tmp/out" 2>"$tmp/err"
	status=$?
	if [ "$status" -ne 0 ]; then
		bad "$name" "exit status $status, expected 0"
		sed 's/^/    /' "$tmp/err"
		continue
	fi
	if [ -s "$tmp/err" ]; then
		bad "$name" "a valid spec printed to stderr"
		sed 's/^/    /' "$tmp/err"
		continue
	fi
	ok "$name"
done

total=$((pass + fail))
if [ "$update" -eq 1 ]; then
	echo "golden: $updated .err file(s) rewritten"
fi
if [ "$total" -eq 0 ]; then
	echo "golden: no cases found under $rel"
	exit 1
fi
echo "golden: $pass passed, $fail failed, $total total"
[ "$fail" -eq 0 ]
