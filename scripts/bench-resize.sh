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
cp=$(vm_test_classpath)

root=$(mktemp -d /tmp/fl-rbench.XXXXXX)
bench_pid=
cleanup() {
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then kill -9 "$bench_pid" 2>/dev/null || true; fi
  kill_qemu_leftovers "$root"
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
