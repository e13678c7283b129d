#!/usr/bin/env bash
# Benchmarks the process driver (figures only, no pass/fail):
#   spawn-to-agent-ready through the driver (prepare+start+connect+handshake) vs the same agent
#   command started bare (java -jar ..., connect+handshake) as the limit; exec round trip of
#   `true` through the agent (exec+wait); the agent's VmRSS in the sandbox.
# Usage: scripts/bench-driver.sh [--iterations N (spawns of each kind, default 20)] [--exec-iterations M (default 300)]
#                               [--vcpus V (the sandboxes' CPU quota, default 1)]
# Builds what it needs; kills every process it started and removes its cgroups, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
spawns=20
execs=300
vcpus=1
while [ $# -gt 0 ]; do
  case "$1" in
    --iterations) spawns=$2; shift 2 ;;
    --exec-iterations) execs=$2; shift 2 ;;
    --vcpus) vcpus=$2; shift 2 ;;
    *) echo "usage: $0 [--iterations N] [--exec-iterations M] [--vcpus V]" >&2; exit 2 ;;
  esac
done

scripts/setup-host.sh
jar=guest-agent/target/flotilla-guest-agent.jar
if [ ! -f "$jar" ] || [ ! -d "$HOME/.m2/repository/dev/flotilla/agent-protocol" ]; then
  mvn -B -q -ntp -pl agent-protocol,guest-agent install -Dmaven.test.skip=true
fi
mvn -B -q -ntp -pl vm-supervisor test-compile
cpfile=$(mktemp)
mvn -B -q -ntp -pl vm-supervisor dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$cpfile" >/dev/null
cp="vm-supervisor/target/classes:vm-supervisor/target/test-classes:$(cat "$cpfile")"
rm -f "$cpfile"

root=$(mktemp -d /tmp/flotilla-bench.XXXXXX)
chmod 711 "$root"
bench_pid=
cleanup() {
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then kill -9 "$bench_pid" 2>/dev/null || true; fi
  # Whatever a crashed run left: the pids its handles name, then the processes in its cgroups.
  kill_sandbox_leftovers "$root" flotilla-bench
  rm -rf "$root"
}
trap cleanup EXIT INT TERM

echo "bench-driver: $spawns spawns each way (+3 warm-up), $execs exec round trips; state root $root"
java -Dbench.vcpus="$vcpus" -cp "$cp" dev.flotilla.vm.process.DriverBench "$root" "$(realpath "$jar")" "$spawns" "$execs" &
bench_pid=$!
wait "$bench_pid"
