#!/usr/bin/env bash
# Egress figures of a QEMU sandbox (printed, not asserted): from a guest with --network egress
# (virtio-net -> passt as the sandbox's uid -> the host's per-uid rules) to an HTTP server in a
# test-made network namespace, against the host fetching the same directly:
#   - 50 HTTP GETs of a 24-byte file in a row, a fresh TCP connection and a wget process each, per
#     GET; with the guest's floor (the same loop of wget processes refused at once by the guest's
#     own loopback: process start-up under TCG, which the difference to the GET removes)
#   - one 50 MiB GET: throughput
#   - 200 wgets by name in a row (a lookup through the sandbox's DNS proxy each): median, p99,
#     and how many took over 4 s or failed (a lost query costs the guest's resolver 5 s)
# It runs QemuEgressNetworkTest with -Dflotilla.bench=true (one boot; the test's own checks run too).
# Usage: scripts/bench-qemu-egress.sh
# Needs root (network namespaces, iptables, QEMU's jail), as the tests do.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
# All in the reactor, nothing installed into ~/.m2.
mvn -B -q -ntp -pl guest-agent -am package -Dmaven.test.skip=true
guest-image/build.sh --agent-jar guest-agent/target/flotilla-guest-agent.jar
guest-image/build-default-image.sh
report=vm-supervisor/target/surefire-reports/dev.flotilla.vm.qemu.QemuEgressNetworkTest-output.txt
rm -f "$report"
mvn -B -q -ntp -pl vm-supervisor -am verify -Dfuzz.smoke.skip=true -Dflotilla.bench=true \
  -Dtest=QemuEgressNetworkTest -Dit.test=none -Dsurefire.failIfNoSpecifiedTests=false -Dfailsafe.failIfNoSpecifiedTests=false
grep -h '^BENCH qemu egress' "$report"
