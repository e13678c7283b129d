#!/usr/bin/env bash
# Where a qemu template clone's create-to-RUNNING goes (issue 12; figures only, no pass/fail), on
# one real node (`./flotilla node`, H2, templates on): `flotilla template warm --cpus 1 --memory
# 256`, then N creates one after the other, each exec'd once and kept. For each: the CLI's wall
# time, the node's span from `created` to `vm-started` (`flotilla events`), and the guest agent's
# own `reborn as …` line from the clone's console (its rebirth and the steps of it: reseeding,
# clock and hostname, mounting the root; and how long the handshake waited), and the node's own
# steps from its log (preparing the VM's disks; QEMU's spawn, devices and state load). Then, after IDLE s, the
# PSS of each clone's QEMU (smaps_rollup) and their mean.
# Usage: scripts/bench-clone-steps.sh [--creates N (default 5)] [--idle S (default 30)]
# (FLOTILLA_QEMU_CLONE_TCG_CACHE=32MiB etc. pass through to the node.) About 3 minutes under TCG.
# Deletes its sandboxes, stops the node and removes what it started, also on failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
n=5; idle=30
while [ $# -gt 0 ]; do
  case "$1" in
    --creates) n=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    *) echo "usage: $0 [--creates N] [--idle S]" >&2; exit 2 ;;
  esac
done
for v in "$n" "$idle"; do
  case "$v" in ''|*[!0-9]*) echo "usage: $0 [--creates N] [--idle S] (whole numbers)" >&2; exit 2 ;; esac
done
[ "$n" -ge 1 ] || n=1

# short: a template's sockets live under <data-dir>/qemu/templates/<id>.building/vm/run (108-byte sun_path)
root=$(mktemp -d /tmp/flcs.XXXXXX)
chmod 0711 "$root"
port=$((20000 + RANDOM % 20000))
node_pid=
fl() { FLOTILLA_ENDPOINT=127.0.0.1:$port FLOTILLA_TOKEN_FILE=$root/data/default.token ./flotilla "$@"; }
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    for id in $(fl ls -o json 2>/dev/null | jq -r '.[].id' 2>/dev/null); do fl rm "$id" >/dev/null 2>&1 || true; done
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$node_pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$node_pid" 2>/dev/null || true
  fi
  kill_sandbox_leftovers "$root/data" "flotilla-bcs" || true
  kill_qemu_leftovers "$root" || true
  rm -rf "$root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo 'flotilla.node.drivers.process.cgroup-parent = "flotilla-bcs"' > "$root/bench.conf"
./flotilla node --data-dir "$root/data" --grpc-port "$port" --artery-port "$((port + 1))" --config "$root/bench.conf" \
  > "$root/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 240); do
  grep -q "flotilla node ready" "$root/node.log" && break
  kill -0 "$node_pid" 2>/dev/null || { tail -30 "$root/node.log" >&2; exit 1; }
  sleep 1
done
grep -q "flotilla node ready" "$root/node.log" || { echo "bench-clone-steps: node not ready after 240 s" >&2; exit 1; }

echo "================ a template clone's create, step by step ================"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "template: $(fl template warm --cpus 1 --memory 256)"
ids=()
for i in $(seq 1 "$n"); do
  t0=$(date +%s%3N); id=$(fl create --driver qemu --cpus 1 --memory 256); t1=$(date +%s%3N)
  ids+=("$id")
  span=$(fl events "$id" -o json | jq -r '
    def t: capture("^(?<s>[^.Z]+)(\\.(?<f>[0-9]+))?Z$") as $m
      | (($m.s + "Z") | fromdateiso8601) * 1000 + (((($m.f // "0") + "00")[0:3]) | tonumber);
    (map(select(.kind == "vm-started"))[0].at | t) - (map(select(.kind == "created"))[0].at | t)')
  reborn=$(grep -rh --include='console*' "reborn as sandbox $id " "$root/data" 2>/dev/null | tail -1 | sed 's/.*) in /in /')
  echo "$id: CLI $((t1 - t0)) ms, node span $span ms; agent's rebirth ${reborn:-(no reborn line: cold boot?)}"
  prepared=$(grep -h "sandbox $id incarnation 1 prepared from template" "$root/node.log" | tail -1 | sed 's/.* prepared from template [0-9a-f]* //')
  started=$(grep -h "started for sandbox $id incarnation 1 " "$root/node.log" | tail -1 | sed 's/.*) in /in /')
  answered=$(grep -h "VM of sandbox $id incarnation 1: the agent answered its handshake" "$root/node.log" | tail -1 | sed 's/.*handshake //')
  echo "   node: VM prepared ${prepared:-(no line)}; QEMU started ${started:-(no line)}; handshake answered ${answered:-(no line)}"
  fl exec "$id" -- true > /dev/null
done
sleep "$idle" # the idle period being measured, not a wait for a condition
total=0; count=0
for id in "${ids[@]}"; do
  for p in $(pgrep -f "flotilla-$id-[0-9]" || true); do
    case "$(cat "/proc/$p/comm" 2>/dev/null)" in
      qemu*) k=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"); total=$((total + k)); count=$((count + 1)) ;;
    esac
  done
done
[ "$count" -gt 0 ] && echo "PSS per clone's QEMU after ${idle} s idle, $count running: $((total / count / 1024)) MiB"
echo "node logged \"boots cold\" $(grep -c 'boots cold' "$root/node.log" || true) time(s); load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "========================================================================="
