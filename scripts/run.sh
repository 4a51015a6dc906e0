#!/bin/sh
# Quick start: install what is missing, build, and run sipxferd in the
# foreground on the shipped configuration (Ctrl-C drains and stops it).
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec ./build/sipxferd -c "${1:-config/sipxferd.conf}"
