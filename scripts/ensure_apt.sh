#!/usr/bin/env bash
# Install Debian packages only when they are missing.
#
#   bash scripts/ensure_apt.sh PKG...        # install the missing ones
#   source scripts/ensure_apt.sh             # get the functions below
#
# `apt-get update` runs at most once per process, and only when something
# has to be installed.  Quiet when every package is already there.
# Uses sudo when not root (and sudo exists).

# as_root CMD...: run CMD as root (directly, or through sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: '$*' needs root and sudo is not available" >&2
        return 1
    fi
}

# apt_installed PKG: true when PKG is installed.
apt_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

_ENSURE_APT_UPDATED=${_ENSURE_APT_UPDATED:-0}

# ensure_apt PKG...: install the packages that are not installed yet.
ensure_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        apt_installed "$pkg" || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: missing packages (${missing[*]}) and apt-get is not available" >&2
        return 1
    fi
    if [ "$_ENSURE_APT_UPDATED" != 1 ]; then
        echo "+ apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
        _ENSURE_APT_UPDATED=1
    fi
    echo "+ apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" || {
        echo "error: apt-get install ${missing[*]} failed" >&2
        return 1
    }
}

# Executed (not sourced): install the packages named on the command line.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    ensure_apt "$@"
fi
