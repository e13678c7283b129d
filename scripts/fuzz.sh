#!/usr/bin/env bash
# Fuzzes Flotilla's fuzz targets (Jazzer @FuzzTests, see README "Tests and benchmarks") for longer
# than CI does, one JVM per target (Jazzer fuzzes one @FuzzTest per JVM), and prints the
# executions and findings of each.
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]     default: all targets, 60 s each
#
# A finding fails the target: its input is written to the target's inputs directory
# (src/test/resources/<package>/<Class>Inputs/<method>/crash-*), where every later build replays
# it (regression mode). Rename it to say what it found, fix the code and commit both. The corpus a
# run grows is kept in <module>/.cifuzz-corpus/ (not committed) and seeds the next run. Logs: target/fuzz/.
# Builds with the reactor (never installs). Exit status: 1 when any target had a finding.
set -euo pipefail
cd "$(dirname "$0")/.."

ORDER=(frame agent-client agent-session image-parsers layer-unpack spec-validator grpc-request dns-messages)
declare -A MODULE=(
  [frame]=agent-protocol [agent-client]=agent-protocol [agent-session]=guest-agent
  [image-parsers]=images [layer-unpack]=images [spec-validator]=core-actors [grpc-request]=cluster-node
  [dns-messages]=vm-supervisor)
declare -A TEST=(
  [frame]='FrameFuzzTest#frames'
  [agent-client]='AgentClientFuzzTest#responses'
  [agent-session]='AgentSessionFuzzTest#requests'
  [image-parsers]='ImageParsersFuzzTest#parse'
  [layer-unpack]='LayerUnpackFuzzTest#unpack'
  [spec-validator]='SpecValidatorFuzzTest#spec'
  [grpc-request]='RequestFuzzTest#request'
  [dns-messages]='DnsMessagesFuzzTest#messages')

usage() {
  echo "usage: scripts/fuzz.sh [TARGET|all] [SECONDS]" >&2
  echo "targets: ${ORDER[*]}" >&2
  exit 2
}

target=${1:-all}
seconds=${2:-60}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || usage
if [[ $target == all ]]; then
  targets=("${ORDER[@]}")
elif [[ -n ${MODULE[$target]:-} ]]; then
  targets=("$target")
else
  usage
fi

mkdir -p target/fuzz
echo "building the test classes (reactor, no install) ..."
mvn -B -ntp -q -pl agent-protocol,guest-agent,images,core-actors,cluster-node -am test-compile

rows=()
failed=0
for t in "${targets[@]}"; do
  log=target/fuzz/$t.log
  echo "fuzzing $t (${MODULE[$t]} ${TEST[$t]}) for ${seconds} s ... log: $log"
  status=0
  JAZZER_FUZZ=1 mvn -B -ntp -pl "${MODULE[$t]}" -am test \
    -Dtest="${TEST[$t]}" -Dsurefire.failIfNoSpecifiedTests=false -Dfuzz.hooks=true \
    -Djazzer.internal.arg.0=fuzz -Djazzer.internal.arg.1=-max_total_time="$seconds" \
    -Djazzer.internal.arg.2=-timeout=30 >"$log" 2>&1 || status=$?
  done_line=$(grep -a -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
  runs=$(sed -E 's/Done ([0-9]+) runs in ([0-9]+) second/\1/' <<<"$done_line")
  took=$(sed -E 's/Done ([0-9]+) runs in ([0-9]+) second/\2/' <<<"$done_line")
  findings=$(grep -a -oE 'Test unit written to [^ ]+' "$log" | sed 's/Test unit written to //' || true)
  if [[ -n $findings ]]; then
    failed=1
    what=$(grep -a -m1 -oE 'FuzzTestFindingException: .{0,200}' "$log" || true)
    rows+=("$(printf '%-15s %10s %6s %8s  FINDING %s' "$t" "${runs:-?}" "${took:-?}" \
      "$([[ -n $runs && ${took:-0} -gt 0 ]] && echo $((runs / took)) || echo '?')" "$findings")")
    echo "  $what"
  elif [[ $status -ne 0 || -z $runs ]]; then
    failed=1
    rows+=("$(printf '%-15s %10s %6s %8s  FAILED (no fuzzing run finished, exit %s): see %s' "$t" '-' '-' '-' "$status" "$log")")
  else
    rows+=("$(printf '%-15s %10s %6s %8s  none' "$t" "$runs" "$took" "$((runs / (took > 0 ? took : 1)))")")
  fi
done

echo
printf '%-15s %10s %6s %8s  %s\n' TARGET EXECUTIONS SECONDS EXEC/S FINDINGS
printf '%s\n' "${rows[@]}"
exit $failed
