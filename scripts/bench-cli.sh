#!/usr/bin/env bash
# Benchmarks what a user of the CLI waits for (figures only, no pass/fail), side by side in one run:
#   1. `id=$(flotilla create); flotilla exec "$id" -- echo hi`: create-and-wait to the first exec
#      output, each CLI a process of its own, as a script runs them;
#   2. `flotilla exec` of the same command into a sandbox that already runs: the floor (the CLI's
#      own start-up and one exec).
# A real node (./flotilla node) on its embedded default (H2, process driver) in a temp data dir.
# Usage: scripts/bench-cli.sh [--iterations N (default 9)]
# Deletes every sandbox, stops the node, and removes what it started (containers, mounts, cgroups,
# temp dir), also on failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
n=9
[ "${1:-}" = "--iterations" ] && n=$2
case "$n" in ''|*[!0-9]*) echo "usage: $0 [--iterations N]" >&2; exit 2 ;; esac
root=$(mktemp -d /tmp/flbench-cli.XXXXXX)
port=$((20000 + RANDOM % 20000))
node_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$node_pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$node_pid" 2>/dev/null || true
  fi
  kill_sandbox_leftovers "$root/data" flotilla-bcli
  rm -rf "$root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo 'flotilla.node.drivers.process.cgroup-parent = "flotilla-bcli"' > "$root/bench.conf"
./flotilla node --data-dir "$root/data" --grpc-port "$port" --artery-port "$((port + 1))" --config "$root/bench.conf" > "$root/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 180); do grep -q "flotilla node ready" "$root/node.log" && break; kill -0 "$node_pid" || { tail -20 "$root/node.log" >&2; exit 1; }; sleep 1; done
export FLOTILLA_ENDPOINT=127.0.0.1:$port FLOTILLA_TOKEN_FILE=$root/data/default.token
ms() { date +%s%3N; }
warm=$(./flotilla create)
./flotilla exec "$warm" -- true
created=(); floor=()
for _ in $(seq 1 "$n"); do
  t0=$(ms); id=$(./flotilla create); out=$(./flotilla exec "$id" -- echo hi); t1=$(ms)
  [ "$out" = hi ] || { echo "bench-cli: unexpected output '$out'" >&2; exit 1; }
  created+=($((t1 - t0)))
  t0=$(ms); ./flotilla exec "$warm" -- echo hi > /dev/null; t1=$(ms)
  floor+=($((t1 - t0)))
  ./flotilla rm "$id" > /dev/null
done
./flotilla rm "$warm" > /dev/null
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
c=$(median "${created[@]}"); f=$(median "${floor[@]}")
echo "bench-cli: create-and-wait to first exec output: median ${c} ms over $n (all: ${created[*]})"
echo "bench-cli: exec into a running sandbox (the floor): median ${f} ms over $n (all: ${floor[*]})"
echo "bench-cli: ratio $(awk -v a="$c" -v b="$f" 'BEGIN {printf "%.1f", a / b}')x the floor"
