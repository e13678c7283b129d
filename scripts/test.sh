#!/usr/bin/env bash
# Runs every test of Flotilla on this machine. Installs what the tests need first (idempotent),
# so it works on a fresh machine: see scripts/setup-host.sh for the list.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
# The QEMU driver's tests boot the guest image, which holds the agent jar: build both first
# (cached: a no-op in seconds when nothing changed). See guest-image/README.md.
mvn -B -ntp -q -pl guest-agent -am package -DskipTests
guest-image/build.sh
# The process driver's tests run sandboxes from these (cached as well).
guest-image/build-sandbox-runtime.sh
guest-image/build-default-image.sh
# -Dfuzz.smoke.skip=false: every fuzz target also fuzzes for a few seconds (pom.xml, fuzz-smoke).
exec mvn -B -ntp verify -Dfuzz.smoke.skip=false "$@"
