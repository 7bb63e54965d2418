#!/bin/sh
# Runs every engine behaviour transcript: DIR/NAME.yaml with DIR/NAME.txt.
# usage: transcripts.sh PATH-TO-BOTFACTORYCTL DIR
set -u
ctl=$1
dir=$2
status=0
count=0
for spec in "$dir"/*.yaml; do
	name=${spec%.yaml}
	count=$((count + 1))
	if ! "$ctl" test "$spec" "$name".txt; then
		status=1
	fi
done
if [ "$count" -eq 0 ]; then
	echo "no transcripts found in $dir" >&2
	exit 1
fi
exit $status
