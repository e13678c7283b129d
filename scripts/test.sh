#!/usr/bin/env bash
# Runs every test of Flotilla on this machine. Installs what the tests need first (idempotent),
# so it works on a fresh machine: see scripts/setup-host.sh for the list.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
exec mvn -B -ntp verify "$@"
