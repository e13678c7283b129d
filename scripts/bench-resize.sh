#!/usr/bin/env bash
# Benchmarks live resize (figures only, no pass/fail): Vm.resize latency, p50 over N back-and-forth
# resizes of one running sandbox per driver (process: runc update of its cgroup limits; qemu: the
# virtio balloon, 384 <-> 256 MiB, until QMP reports the target).
# Usage: scripts/bench-resize.sh [--iterations N (default 10)]
# Builds what it needs (agent jar, guest image, sandbox runtime); kills every QEMU it started, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
n=10
while [ $# -gt 0 ]; do
  case "$1" in
    --iterations) n=$2; shift 2 ;;
    *) echo "usage: $0 [--iterations N]" >&2; exit 2 ;;
  esac
done

scripts/setup-host.sh
# All in the reactor, nothing installed into ~/.m2: this tree's modules come first on the class path.
mvn -B -q -ntp -pl guest-agent -am package -Dmaven.test.skip=true
guest-image/build.sh --agent-jar guest-agent/target/flotilla-guest-agent.jar
guest-image/build-default-image.sh
guest-image/build-sandbox-runtime.sh
cpfile=$(mktemp)
mvn -B -q -ntp -pl vm-supervisor -am test-compile dependency:build-classpath -Dmdep.includeScope=test \
  -Dmdep.outputFile="$cpfile" >/dev/null
cp="agent-protocol/target/classes:sandbox-protocol/target/classes:guest-agent/target/classes:vm-supervisor/target/classes:vm-supervisor/target/test-classes:$(cat "$cpfile")"
rm -f "$cpfile"

root=$(mktemp -d /tmp/fl-rbench.XXXXXX)
bench_pid=
cleanup() {
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then kill -9 "$bench_pid" 2>/dev/null || true; fi
  # QEMUs a crashed run left: the pids its handles name (driver boots) or its cmdlines (bare ones)
  # (a jailed QEMU's command line has only the jail's paths: the handle's start time tells it)
  for h in $(find "$root" -name handle.properties 2>/dev/null); do
    pid=$(sed -n 's/^pid=//p' "$h")
    st=$(sed -n 's/^startTime=//p' "$h")
    if [ -n "$pid" ] && [ "$pid" != 0 ] && [ "$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null)" = "$st" ]; then
      kill -9 "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    # and the QEMU's cgroups (extra.cgroup.memory=..., one per hierarchy)
    for cg in $(sed -n 's/^extra\.cgroup\.[a-z]*=//p' "$h"); do rmdir "$cg" 2>/dev/null || true; done
  done
  for p in /proc/[0-9]*; do
    if grep -qs "$root" "$p/cmdline" 2>/dev/null; then kill -9 "${p#/proc/}" 2>/dev/null || true; fi
  done
  rm -rf "$root"
  # the process sandbox (its TestSandboxes cleans up unless the JVM was killed)
  for r in /tmp/flotilla-vm-test*; do
    [ -d "$r/.runc" ] && grep -q flotilla-bench "$r"/*/config.json 2>/dev/null || continue
    for c in $(runc --root "$r/.runc" list -q 2>/dev/null); do runc --root "$r/.runc" delete --force "$c" || true; done
  done
  kill_sandbox_leftovers /nonexistent flotilla-bench
}
trap cleanup EXIT
java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dlogback.configurationFile=/dev/null -cp "$cp" \
  -Dflotilla.sandbox.runtime="$PWD/guest-image/out/sandbox-runtime" -Dflotilla.default.image="$PWD/guest-image/out/default-image/rootfs" \
  dev.flotilla.vm.qemu.ResizeBench "$n" "$root" &
bench_pid=$!
wait "$bench_pid"
