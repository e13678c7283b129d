#!/usr/bin/env bash
# Benchmarks the qemu driver (figures only, no pass/fail):
#   create-to-agent-ready (prepare + start + connect + handshake) through the driver (jailed: own
#   uid, namespaces, cgroups) with the default image as the guest's root (erofs image disk, writable
#   ext4 disk, config disk) vs the same driver booting the initramfs alone (rootfs=initramfs: what
#   the image's disks cost) vs that QEMU command run bare as root (what the jail costs), alternating,
#   p50/p90 over N boots of each; QEMU RSS and the guest agent's RSS; QMP pause/resume latency.
#   With --compare-jdk17, only this instead: a guest image on Temurin 25 + AOT cache (guest-image/
#   out/qemu-jdk25; FLOTILLA_AOT_JDK or /usr/lib/jvm/temurin-25-jdk-amd64) against one on the
#   build's JDK 17 + CDS (out/qemu-jdk17), through the driver with rootfs=initramfs, one boot on
#   each in turn.
# Usage: scripts/bench-qemu.sh [--iterations N (default 5)] [--compare-jdk17]
# Builds what it needs (agent jar, guest image); kills every QEMU it started, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
n=5
other=
while [ $# -gt 0 ]; do
  case "$1" in
    --iterations) n=$2; shift 2 ;;
    --compare-jdk17) other="$PWD/guest-image/out/qemu-jdk17"; shift ;;
    *) echo "usage: $0 [--iterations N] [--compare-jdk17]" >&2; exit 2 ;;
  esac
done

scripts/setup-host.sh
# All in the reactor, nothing installed into ~/.m2: this tree's modules come first on the class path.
mvn -B -q -ntp -pl guest-agent -am package -Dmaven.test.skip=true
guest-image/build.sh --agent-jar guest-agent/target/flotilla-guest-agent.jar
image_dir=()
if [ -n "$other" ]; then
  aot_jdk="${FLOTILLA_AOT_JDK:-/usr/lib/jvm/temurin-25-jdk-$(dpkg --print-architecture)}"
  guest-image/build.sh --agent-jar guest-agent/target/flotilla-guest-agent.jar --jdk "$aot_jdk" --out "$PWD/guest-image/out/qemu-jdk25"
  guest-image/build.sh --agent-jar guest-agent/target/flotilla-guest-agent.jar --jdk build --out "$other"
  image_dir=(-Dflotilla.qemu.image-dir="$PWD/guest-image/out/qemu-jdk25")
fi
guest-image/build-default-image.sh
cp=$(vm_test_classpath)

root=$(mktemp -d /tmp/fl-qbench.XXXXXX)
bench_pid=
cleanup() {
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then kill -9 "$bench_pid" 2>/dev/null || true; fi
  kill_qemu_leftovers "$root"
}
trap cleanup EXIT
java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dlogback.configurationFile=/dev/null "${image_dir[@]}" -cp "$cp" \
  dev.flotilla.vm.qemu.QemuBench "$n" "$root" ${other:+"$other"} &
bench_pid=$!
wait "$bench_pid"
