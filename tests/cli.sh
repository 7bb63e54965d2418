#!/bin/sh
# End-to-end checks of botfactoryctl's command line: help, exit statuses,
# error lines, piped `chat` and a failing `test` with its diff.
# usage: cli.sh PATH-TO-BOTFACTORYCTL REPO-ROOT
set -u
ctl=$1
root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# check NAME WANT-STATUS GREP-PATTERN FILE -- COMMAND...: runs COMMAND with
# stdout in $tmp/out and stderr in $tmp/err, then checks the exit status and
# that FILE (out or err) contains the pattern.
check() {
	name=$1 want=$2 pattern=$3 file=$4
	shift 5
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" -ne "$want" ]; then
		echo "FAIL $name: exit status $got, expected $want"
		sed 's/^/  | /' "$tmp/out" "$tmp/err"
		fail=$((fail + 1))
	elif ! grep -q -e "$pattern" "$tmp/$file"; then
		echo "FAIL $name: $file does not contain '$pattern'"
		sed 's/^/  | /' "$tmp/$file"
		fail=$((fail + 1))
	else
		echo "PASS $name"
		pass=$((pass + 1))
	fi
}

order=$root/specs/order.yaml

check help 0 'validate' out -- "$ctl" --help
check help-validate 0 'usage: botfactoryctl validate' out -- "$ctl" validate --help
check help-chat 0 ':wait 10m' out -- "$ctl" chat --help
check help-test 0 'usage: botfactoryctl test' out -- "$ctl" test -h
check no-command 2 'usage: botfactoryctl COMMAND' err -- "$ctl"
check unknown-command 2 "unknown command 'frobnicate'" err -- "$ctl" frobnicate
check validate-no-args 2 'needs at least one spec FILE' err -- "$ctl" validate
check validate-ok 0 'order.yaml: ok (7 flows)' out -- "$ctl" validate "$order"
check validate-unknown-option 2 "unknown option '--foo'" err -- "$ctl" validate --foo "$order"
check validate-dashdash 0 'order.yaml: ok (7 flows)' out -- "$ctl" validate -- "$order"
check validate-missing 1 'cannot open: No such file or directory' err -- "$ctl" validate "$tmp/nope.yaml"

printf 'flows:\n  - entry_cmd: /start\n    stepz: []\n' >"$tmp/bad.yaml"
check validate-bad 1 'bad.yaml:3:5: unknown key .stepz. in a flow (did you mean .steps.?)' err -- "$ctl" validate "$order" "$tmp/bad.yaml"
# every error line has the file:line:col: prefix
if [ "$(grep -c "^$tmp/bad.yaml:[0-9]*:[0-9]*: " "$tmp/err")" -eq 2 ]; then
	echo "PASS validate-bad-lines"
	pass=$((pass + 1))
else
	echo "FAIL validate-bad-lines"
	cat "$tmp/err"
	fail=$((fail + 1))
fi

printf '/order\nBob\n' >"$tmp/in"
check chat-piped 0 'bot: How many?' out -- sh -c '"$1" chat "$2" <"$3"' sh "$ctl" "$order" "$tmp/in"
printf '/start\n#1\n' >"$tmp/in"
check chat-press 0 'bot: Your name?' out -- sh -c '"$1" chat "$2" <"$3"' sh "$ctl" "$order" "$tmp/in"
printf '/order\n:wait 10m\n' >"$tmp/in"
check chat-wait 0 'No answer for 10 minutes' out -- sh -c '"$1" chat "$2" <"$3"' sh "$ctl" "$order" "$tmp/in"
printf '#9\n' >"$tmp/in"
check chat-bad-press 0 'no button 9' err -- sh -c '"$1" chat "$2" <"$3"' sh "$ctl" "$order" "$tmp/in"
check chat-bad-spec 1 'bad.yaml:3:5:' err -- "$ctl" chat "$tmp/bad.yaml"
# #N presses that very button, also when labels repeat
cat >"$tmp/twins.yaml" <<'EOF2'
flows:
  - entry_cmd: /start
    steps: [{reply: "Pick", buttons: [[{text: Go, flow: a}, {text: Go, flow: b}]]}]
  - id: a
    steps: [{reply: "went to a"}]
  - id: b
    steps: [{reply: "went to b"}]
EOF2
printf '/start\n#2\n' >"$tmp/in"
check chat-press-twin 0 'bot: went to b' out -- sh -c '"$1" chat "$2" <"$3"' sh "$ctl" "$tmp/twins.yaml" "$tmp/in"

printf '> /order\n< What is your name?\n> Bob\n< How many?\n' >"$tmp/t.txt"
check test-fail 1 '^- < What is your name?' err -- "$ctl" test "$order" "$tmp/t.txt"
check test-fail-plus 1 '^+ < Your name?' err -- "$ctl" test "$order" "$tmp/t.txt"
check test-fail-line 1 't.txt:2: the conversation differs' err -- "$ctl" test "$order" "$tmp/t.txt"
printf '> /order\n< Your name?\n> Bob\n' >"$tmp/extra.txt"
check test-extra-message 1 '^+ < How many?' err -- "$ctl" test "$order" "$tmp/extra.txt"
printf '> /start\n* Nope\n' >"$tmp/press.txt"
check test-no-button 1 "press.txt:2: no button labelled 'Nope'" err -- "$ctl" test "$order" "$tmp/press.txt"
check test-usage 2 'needs a SPEC and at least one TRANSCRIPT' err -- "$ctl" test "$order"
check test-pass 0 '1 transcript passed, 0 failed' out -- "$ctl" test "$order" "$root/tests/transcripts/order.txt"
long=$(printf '%0300d' 0)
check test-long-username 2 'bot-username is too long' err -- "$ctl" test --bot-username "$long" "$order" "$root/tests/transcripts/order.txt"

# a NUL byte would hide the rest of its line: an error
printf '> /start\n< Hello\000junk\n' >"$tmp/nul.txt"
check test-nul 1 'a NUL byte in the line' err -- "$ctl" test "$order" "$tmp/nul.txt"

# a FIFO is not a spec (validate used to wait on it for ever)
mkfifo "$tmp/fifo.yaml"
check validate-fifo 1 'cannot read: not a regular file' err -- "$ctl" validate "$tmp/fifo.yaml"

# a transcript that cannot be read fails (it used to pass as empty)
mkdir "$tmp/adir"
check test-unreadable 1 'cannot read: Is a directory' err -- "$ctl" test "$order" "$tmp/adir"

# an '=' written before this input's '<' checks no message (it used to
# check the previous input's message, and pass)
cat >"$tmp/menu.yaml" <<'EOF2'
flows:
  - entry_cmd: /menu
    steps: [{reply: "Menu", buttons: [[{text: "Say hi", flow: hi}]]}]
  - id: hi
    steps: [{reply: "Hi!"}]
EOF2
printf '> /menu\n< Menu\n= [Say hi]\n* Say hi\n= [Say hi]\n< Hi!\n' >"$tmp/eq.txt"
check test-misplaced-buttons 1 'FAIL' err -- "$ctl" test "$tmp/menu.yaml" "$tmp/eq.txt"

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
