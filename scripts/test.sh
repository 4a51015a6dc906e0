#!/bin/sh
# Install what is missing, build, and run every test: the check unit tests
# and the integration suite (real sipxferd processes driven by SIPp).
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
./scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
exec python3 tests/run_all.py "$@"
