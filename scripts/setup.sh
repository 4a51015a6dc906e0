#!/bin/sh
# Install what is missing (Debian 12, as root), then configure and build.
# Used by scripts/run.sh and scripts/test.sh; safe to run again.
set -eu
cd "$(dirname "$0")/.."

PKGS="meson ninja-build pkg-config gcc libsofia-sip-ua-dev libconfig-dev libcjson-dev
libcurl4-openssl-dev libssl-dev libsrtp2-dev libmicrohttpd-dev check sip-tester baresip sipvicious sipsak kamailio clang libclang-rt-14-dev libbpf-dev strace python3 curl iproute2 procps redis-server libhiredis-dev"
[ -n "${SIPXFER_EXTRA_PKGS:-}" ] && PKGS="$PKGS $SIPXFER_EXTRA_PKGS"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
fi

if [ ! -f build/build.ninja ]; then
    meson setup build >&2
fi
ninja -C build >&2
