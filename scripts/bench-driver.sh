#!/usr/bin/env bash
# Benchmarks the process driver (figures only, no pass/fail): see DriverBench for what it measures.
#   spawn-to-agent-ready through the driver (new sandbox, restart) vs the agent started bare, exec
#   round trip of `true`, host memory (PSS) and disk (writable layer) per idle sandbox.
#   With --compare-jdk17: first the agent's start on the default runtime (JDK 25 + AOT cache where
#   the machine has Temurin 25) against the runtime of the build's JDK 17 + CDS, one spawn on each
#   in turn.
# Usage: scripts/bench-driver.sh [--iterations N (spawns of each kind, default 10)]
#                               [--exec-iterations M (default 300)] [--idle K (idle sandboxes, default 5)]
#                               [--compare-jdk17]
# Builds what it needs; removes every container, mount and cgroup it made, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
spawns=10
execs=300
idle=5
other=
while [ $# -gt 0 ]; do
  case "$1" in
    --iterations) spawns=$2; shift 2 ;;
    --exec-iterations) execs=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --compare-jdk17) other="$PWD/guest-image/out/sandbox-runtime-jdk17"; shift ;;
    *) echo "usage: $0 [--iterations N] [--exec-iterations M] [--idle K] [--compare-jdk17]" >&2; exit 2 ;;
  esac
done

scripts/setup-host.sh
mvn -B -q -ntp -pl guest-agent -am package -DskipTests
guest-image/build-sandbox-runtime.sh
[ -n "$other" ] && guest-image/build-sandbox-runtime.sh --jdk build --out "$other"
guest-image/build-default-image.sh
mvn -B -q -ntp -pl vm-supervisor -am test-compile
cpfile=$(mktemp)
mvn -B -q -ntp -pl vm-supervisor -am dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$cpfile" >/dev/null
# This checkout's modules, not whatever another checkout installed in ~/.m2.
cp="vm-supervisor/target/classes:vm-supervisor/target/test-classes:agent-protocol/target/classes:sandbox-protocol/target/classes:guest-agent/target/classes"
cp="$cp:$(tr ':' '\n' <"$cpfile" | grep -v '/dev/flotilla/' | paste -sd:)"
rm -f "$cpfile"

bench_pid=
cleanup() {
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then kill -9 "$bench_pid" 2>/dev/null || true; fi
  # What a killed bench JVM could leave (its TestSandboxes cleans up otherwise): containers, then cgroups.
  for root in /tmp/flotilla-vm-test*; do
    [ -d "$root/.runc" ] && grep -q flotilla-bench "$root"/*/config.json 2>/dev/null || continue
    for c in $(runc --root "$root/.runc" list -q 2>/dev/null); do runc --root "$root/.runc" delete --force "$c" || true; done
    run="/run/flotilla/$(printf %s "$root" | sha256sum | cut -c1-16)"
    awk -v r="$run" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
    rm -rf "$root" "$run"
  done
  kill_sandbox_leftovers /nonexistent flotilla-bench
}
trap cleanup EXIT INT TERM

echo "bench-driver: $spawns spawns of each kind (+2 warm-up), $execs exec round trips, $idle idle sandboxes"
java -Dflotilla.sandbox.runtime="$PWD/guest-image/out/sandbox-runtime" \
  -Dflotilla.default.image="$PWD/guest-image/out/default-image/rootfs" -Dlogback.configurationFile=/dev/null \
  -cp "$cp" dev.flotilla.vm.process.DriverBench "$spawns" "$execs" "$idle" ${other:+"$other"} &
bench_pid=$!
wait "$bench_pid"
