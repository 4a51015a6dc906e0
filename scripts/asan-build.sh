#!/bin/sh
# asan-build.sh - build the daemon with AddressSanitizer + UBSan into build-asan/
# (gcc is fine) for running the integration suite under the sanitizers:
#
#   scripts/asan-build.sh
#   . scripts/asan-build.sh --env     # exports ASAN_OPTIONS / UBSAN_OPTIONS below
#   SIPXFERD=$PWD/build-asan/sipxferd python3 tests/integration/run.py
#
# The harness passes the environment through (it only defaults ASAN_OPTIONS
# when unset), so the options below apply to every sipxferd it starts.

# halt_on_error: any UBSan finding is fatal (exit != 0 -> the harness sees
# "sipxferd died"). LeakSanitizer runs at exit (detect_leaks=1); a clean
# SIGTERM exit after calls reports nothing; scripts/lsan.supp is empty (the
# TLS leak of Debian's sofia it once held is freed by src/tls_guard.c).
# quarantine_size_mb=16 (default 256): the suite's memory-growth checks
# (test_mutator_bounded, test_sipvicious_scan_and_sipsak_flood) otherwise
# see ASan's quarantine of freed blocks as +60..110 MB of RSS.
ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:quarantine_size_mb=16}"
UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# (sourced with --env, $0 is the shell: bash names the file in BASH_SOURCE,
# else scripts/ under the current directory is assumed)
_supp_dir=$(cd "$(dirname "${BASH_SOURCE:-$0}")" 2>/dev/null && pwd)
[ -f "$_supp_dir/lsan.supp" ] || _supp_dir=$(pwd)/scripts
LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$_supp_dir/lsan.supp}"
export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
if [ "${1:-}" = "--env" ]; then
    return 0 2>/dev/null || exit 0
fi

set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-asan"

cd "$ROOT"
if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug
fi
ninja -C "$BUILD" sipxferd

# Smoke check: the shipped config validates and the binary runs.
"$BUILD/sipxferd" --check-config -c config/sipxferd.conf
echo "asan-build: $BUILD/sipxferd ready"
echo "run: SIPXFERD=$BUILD/sipxferd python3 tests/integration/run.py"
