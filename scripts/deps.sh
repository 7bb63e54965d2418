#!/usr/bin/env bash
# Install the Debian 12 packages botfactory needs to build and test.
# Only missing packages are installed; if everything is present this does
# nothing (no apt-get update, no root needed).
set -eu

# The one list of build/test dependencies. Extend it here.
# libssl-dev and openssl: the fake Bot API server's HTTPS; python3: integration tests
PACKAGES="build-essential meson ninja-build pkg-config libuv1-dev libcurl4-openssl-dev libsqlite3-dev libcjson-dev libyaml-dev libpcre2-dev libhttp-parser-dev libcmocka-dev libssl-dev openssl curl python3 ca-certificates"

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps.sh: dpkg-query not found; this script supports Debian/Ubuntu only. Install: $PACKAGES" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing="${missing:+$missing }$pkg"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    # Without a terminal (CI) sudo cannot prompt, so fail fast instead of hanging.
    if [ -t 0 ]; then as_root=(sudo); else as_root=(sudo -n); fi
else
    echo "deps.sh: not root and sudo not available; as root run: apt-get install -y $missing" >&2
    exit 1
fi

echo "deps.sh: installing missing packages: $missing"

# $missing is a space-separated list of package names: split it on purpose.
# shellcheck disable=SC2086
{
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends $missing
} </dev/null
