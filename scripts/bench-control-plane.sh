#!/usr/bin/env bash
# Benchmarks the control plane (figures only, no pass/fail), side by side in one run:
#   1. create-to-RUNNING through gRPC (CreateSandbox, then WatchSandbox until RUNNING) vs the bare
#      process-driver spawn (prepare+start+agent connect+handshake);
#   2. Exec of `true` through gRPC (stream until the exit message) vs the agent client directly
#      (exec+waitProcess) on the same sandbox;
#   3. sustained creates/s from several concurrent gRPC clients, to acknowledgement and to RUNNING;
#   4. heap bytes per idle RUNNING sandbox in the node JVM (used heap after GC, K sandboxes vs 0).
# A real node (FlotillaNode.start) runs in the benchmark JVM on H2 with the real process driver;
# see docs/benchmarks.md for what each figure means.
# Usage: scripts/bench-control-plane.sh [--iterations N (create-to-running samples, default 30)]
#          [--creates N (sustained creates, default 40)] [--sandboxes K (idle sandboxes for heap, default 32)]
#          [--exec-iterations M (default 400)] [--concurrency C (gRPC clients for creates, default 4)]
# BENCH_KEEP_LOG=FILE keeps a copy of the node's log (INFO) in FILE.
# Builds what it needs; deletes every sandbox, stops the node, kills every process it started,
# removes its cgroups and its temp dir, also on failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
iterations=30
creates=40
sandboxes=32
execs=400
concurrency=4
image_iterations=10
usage() { echo "usage: $0 [--iterations N] [--creates N] [--sandboxes K] [--exec-iterations M] [--concurrency C] [--image-iterations I]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case "$1" in
    --iterations) iterations=$2 ;;
    --creates) creates=$2 ;;
    --sandboxes) sandboxes=$2 ;;
    --exec-iterations) execs=$2 ;;
    --concurrency) concurrency=$2 ;;
    --image-iterations) image_iterations=$2 ;;
    *) usage ;;
  esac
  case "$2" in ''|*[!0-9]*) usage ;; esac
  shift 2
done

scripts/setup-host.sh
jar=guest-agent/target/flotilla-guest-agent.jar
if [ ! -f "$jar" ] || [ ! -f cluster-node/target/flotilla.jar ] || [ ! -d "$HOME/.m2/repository/dev/flotilla/core-actors" ]; then
  mvn -B -q -ntp -DskipTests install -pl cluster-node -am
fi
# The process driver's sandbox runtime (with the agent just built) and default image; cached.
guest-image/build-sandbox-runtime.sh
guest-image/build-default-image.sh
mvn -B -q -ntp -pl cluster-node test-compile
cpfile=$(mktemp)
mvn -B -q -ntp -pl cluster-node dependency:build-classpath -Dmdep.includeScope=test -Dmdep.outputFile="$cpfile" >/dev/null
# Short (Unix socket paths < 108 bytes) and searchable by the sandbox's unprivileged root (0711).
root=$(mktemp -d /tmp/flcp.XXXXXX)
chmod 711 "$root"
log=$(mktemp /tmp/flcp-node.XXXXXX.log)
logback=$(mktemp /tmp/flcp-logback.XXXXXX.xml)
# The node logs as a real node does (INFO), to a file rather than over the report.
cat > "$logback" <<EOF
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$log</file>
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{24} - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.pekko.cluster" level="WARN"/>
  <logger name="org.apache.pekko.remote" level="WARN"/>
  <logger name="slick" level="WARN"/>
  <logger name="com.zaxxer.hikari" level="WARN"/>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
EOF

bench_pid=
status=0
cleanup() {
  local rc=$?
  [ "$status" = 0 ] && status=$rc
  trap - EXIT INT TERM
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
    # Its shutdown hook deletes the sandboxes and stops the node; give it time, then force.
    kill -TERM "$bench_pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$bench_pid" 2>/dev/null || true
  fi
  # Whatever a crashed run left: the pids its handles name, then the processes in its cgroups.
  kill_sandbox_leftovers "$root" flotilla-bcp
  if [ "$status" != 0 ] && [ -s "$log" ]; then
    echo "bench-control-plane: last node log lines ($log):" >&2
    tail -n 40 "$log" >&2
  fi
  rm -rf "$root" "$logback" "$log"
}
trap cleanup EXIT
trap 'status=130; exit 130' INT TERM

# Run from a private copy of this repository's classes and jars: other builds in the same tree
# (or `mvn install` of a sibling module) must not swap classes under a running benchmark.
snap="$root/cp"
mkdir -p "$snap/lib"
cp -r cluster-node/target/classes "$snap/classes"
cp -r cluster-node/target/test-classes "$snap/test-classes"
cp="$snap/test-classes:$snap/classes"
IFS=: read -r -a deps < "$cpfile" || true  # no trailing newline
for d in "${deps[@]}"; do
  case "$d" in
    */dev/flotilla/*) cp "$d" "$snap/lib/"; cp="$cp:$snap/lib/$(basename "$d")" ;;
    *) cp="$cp:$d" ;;
  esac
done
rm -f "$cpfile"
agent="$snap/lib/flotilla-guest-agent.jar"
cp "$jar" "$agent"

echo "bench-control-plane: create-to-running $iterations (+3 warm-up), exec $execs (+30 warm-up), $creates sustained creates" \
  "from $concurrency clients, heap with $sandboxes idle sandboxes; data dir $root"
java -Dflotilla.agent.jar="$agent" -Dflotilla.sandbox.runtime="$PWD/guest-image/out/sandbox-runtime" \
  -Dflotilla.default.image="$PWD/guest-image/out/default-image/rootfs" -Dlogback.configurationFile="$logback" -cp "$cp" \
  dev.flotilla.bench.ControlPlaneBench --data-dir "$root" --iterations "$iterations" --exec-iterations "$execs" \
  --creates "$creates" --concurrency "$concurrency" --sandboxes "$sandboxes" --image-iterations "$image_iterations" &
bench_pid=$!
wait "$bench_pid" || status=$?
# The node's own complaints during the run, for whoever reads the figures.
errors=$(grep -c ' ERROR ' "$log" || true)
warns=$(grep -c ' WARN ' "$log" || true)
echo "node log: $errors ERROR, $warns WARN lines"
grep -E ' (ERROR|WARN) ' "$log" | sed -E 's/^[0-9:.]+ //' | cut -c1-240 | sort | uniq -c | sort -rn | head -n 8 || true
if [ -n "${BENCH_KEEP_LOG:-}" ]; then cp "$log" "$BENCH_KEEP_LOG" && echo "node log kept in $BENCH_KEEP_LOG"; fi
exit "$status"
