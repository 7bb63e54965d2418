#!/usr/bin/env bash
# Build botfactory (installing missing dependencies first) and start it.
# Runs from the repository root, whatever the current directory is.
# Extra arguments are passed through to the program.
set -eu
cd "$(dirname "$0")/.."

bash scripts/deps.sh

if [ ! -f build/meson-private/coredata.dat ]; then
    meson setup build
elif [ ! -f build/build.ninja ]; then
    # A previous setup was interrupted or failed half-way: regenerate it.
    meson setup --reconfigure build
fi
meson compile -C build

# Start the daemon on the bundled specs with the default SQLite database
# (./botfactory.db). Bots whose token variable is not set stay disabled and
# the log says which variable enables each one.
exec ./build/botfactoryd --specs specs "$@"
