#!/usr/bin/env bash
# Benchmarks interactive exec (figures only, no pass/fail): a keystroke to its echo on a remote
# terminal (`stty raw -echo; exec cat` on the sandbox's pseudo-terminal), p50/p99, through a real
# node's gRPC ExecInteractive (grpc-java, as `flotilla exec -it` sends it) against the same
# keystroke straight to a sandbox's guest agent (no node), and the agent's ping as the floor.
# A node in the benchmark's JVM on its embedded default (H2, process driver).
# Usage: scripts/bench-interactive.sh [--iterations N (default 2000)]
# Builds what it needs (agent jar, sandbox runtime, default image), all in the reactor.
set -euo pipefail
cd "$(dirname "$0")/.."
n=2000
[ "${1:-}" = "--iterations" ] && n=$2
case "$n" in ''|*[!0-9]*) echo "usage: $0 [--iterations N]" >&2; exit 2 ;; esac
scripts/setup-host.sh
mvn -B -q -ntp -pl guest-agent -am package -DskipTests
guest-image/build-sandbox-runtime.sh
guest-image/build-default-image.sh
mvn -B -q -ntp -pl cluster-node -am verify -Dfuzz.smoke.skip=true -Dtest=none -Dit.test=InteractiveExecBench \
  -Dsurefire.failIfNoSpecifiedTests=false -Dfailsafe.failIfNoSpecifiedTests=false -Dbench.iterations="$n" \
  -DargLine="-Dbench.iterations=$n"
grep -h '^BENCH interactive' cluster-node/target/failsafe-reports/dev.flotilla.node.InteractiveExecBench-output.txt
