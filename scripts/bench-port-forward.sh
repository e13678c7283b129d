#!/usr/bin/env bash
# Benchmarks `flotilla port-forward` (figures only, no pass/fail) against a direct TCP connection
# on the host, side by side in one run, with the same server program on both sides (busybox nc
# handing each connection to a shell command) and the same client (a few lines of Python):
#   1. download: one connection reads SIZE bytes the server writes (head -c SIZE /dev/zero), MiB/s;
#   2. upload: one connection writes SIZE bytes and half-closes; the server reads them to the end
#      (cat > /dev/null) and answers "done", which stops the clock, MiB/s;
#   3. connect latency: a fresh connection until the server's first bytes ("hi") arrive, ms: for
#      the port-forward this is the CLI's accept, the PortForward call, the node, the guest agent's
#      connect inside the sandbox and the way back.
# A real node (./flotilla node) on its embedded default (H2, process driver) in a temp data dir;
# the port-forward is the real CLI in its own JVM, as a user runs it.
# Usage: scripts/bench-port-forward.sh [--runs N (default 5)] [--size MiB (default 128)] [--connects N (default 50)]
# Deletes the sandbox, stops the forwarder and the node, and removes what they started, also on
# failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
runs=5 size_mib=128 connects=50
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --size) size_mib=$2; shift 2 ;;
    --connects) connects=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--size MiB] [--connects N]" >&2; exit 2 ;;
  esac
done
for v in "$runs" "$size_mib" "$connects"; do
  case "$v" in ''|*[!0-9]*|0) echo "usage: $0 [--runs N] [--size MiB] [--connects N] (positive whole numbers)" >&2; exit 2 ;; esac
done
size=$((size_mib * 1024 * 1024))
busybox=guest-image/out/sandbox-runtime/bin/busybox
[ -x "$busybox" ] || { echo "bench-port-forward: $busybox is missing: run guest-image/build-sandbox-runtime.sh" >&2; exit 1; }
root=$(mktemp -d /tmp/flbench-pf.XXXXXX)
port=$((20000 + RANDOM % 20000))
node_pid="" fwd_pid="" host_pids=()
cleanup() {
  trap - EXIT INT TERM
  [ -n "$fwd_pid" ] && kill -TERM "$fwd_pid" 2>/dev/null || true
  for p in "${host_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$node_pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$node_pid" 2>/dev/null || true
  fi
  kill_sandbox_leftovers "$root/data" flotilla-bpf
  rm -rf "$root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo 'flotilla.node.drivers.process.cgroup-parent = "flotilla-bpf"' > "$root/bench.conf"
./flotilla node --data-dir "$root/data" --grpc-port "$port" --artery-port "$((port + 1))" --config "$root/bench.conf" > "$root/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 180); do grep -q "flotilla node ready" "$root/node.log" && break; kill -0 "$node_pid" || { tail -20 "$root/node.log" >&2; exit 1; }; sleep 1; done
export FLOTILLA_ENDPOINT=127.0.0.1:$port FLOTILLA_TOKEN_FILE=$root/data/default.token

# The same three servers in the sandbox and on the host (busybox nc -ll: one shell command per connection).
down_cmd="head -c $size /dev/zero"
up_cmd="cat > /dev/null; echo done"
hi_cmd="echo hi"
id=$(./flotilla create)
./flotilla exec -d "$id" -- nc -ll -p 9100 -e sh -c "$down_cmd" > /dev/null
./flotilla exec -d "$id" -- nc -ll -p 9101 -e sh -c "$up_cmd" > /dev/null
./flotilla exec -d "$id" -- nc -ll -p 9102 -e sh -c "$hi_cmd" > /dev/null
hp=$((port + 2))
"$busybox" nc -ll -p "$hp" -e sh -c "$down_cmd" & host_pids+=($!)
"$busybox" nc -ll -p "$((hp + 1))" -e sh -c "$up_cmd" & host_pids+=($!)
"$busybox" nc -ll -p "$((hp + 2))" -e sh -c "$hi_cmd" & host_pids+=($!)

./flotilla port-forward "$id" 0:9100 0:9101 0:9102 > "$root/pf.out" 2> "$root/pf.err" &
fwd_pid=$!
for _ in $(seq 1 60); do [ "$(grep -c '^Forwarding from' "$root/pf.out" 2>/dev/null)" = 3 ] && break; kill -0 "$fwd_pid" || { cat "$root/pf.err" >&2; exit 1; }; sleep 0.5; done
mapfile -t locals < <(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) -> .*/\1/p' "$root/pf.out")
[ "${#locals[@]}" = 3 ] || { echo "bench-port-forward: the forwarder did not say where it listens" >&2; cat "$root/pf.out" "$root/pf.err" >&2; exit 1; }
# The sandbox's servers may take a moment to listen: one greeting through the tunnel first.
for _ in $(seq 1 60); do
  python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',${locals[2]})); sys.exit(0 if s.recv(8).startswith(b'hi') else 1)" 2>/dev/null && break
  sleep 0.5
done

cat > "$root/client.py" <<'EOF'
import socket, statistics, sys, time
what, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def down():
    s = socket.create_connection(("127.0.0.1", port))
    t = time.perf_counter(); got = 0
    while True:
        b = s.recv(1 << 20)
        if not b: break
        got += len(b)
    dt = time.perf_counter() - t; s.close()
    if got != size: sys.exit(f"download: got {got} bytes of {size}")
    return size / dt / 2**20

def up():
    s = socket.create_connection(("127.0.0.1", port))
    buf = bytes(1 << 20); left = size
    t = time.perf_counter()
    while left > 0:
        k = min(left, len(buf)); s.sendall(buf[:k]); left -= k
    s.shutdown(socket.SHUT_WR)
    answer = s.recv(16)
    dt = time.perf_counter() - t; s.close()
    if not answer.startswith(b"done"): sys.exit(f"upload: the server answered {answer!r}")
    return size / dt / 2**20

def connect():
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    b = s.recv(16)
    dt = time.perf_counter() - t; s.close()
    if not b.startswith(b"hi"): sys.exit(f"connect: the server answered {b!r}")
    return dt * 1000

f = {"down": down, "up": up, "connect": connect}[what]
xs = [f() for _ in range(n)]
q = statistics.quantiles(xs, n=10) if len(xs) >= 2 else xs
print(f"{statistics.median(xs):.1f} {q[-1]:.1f} " + " ".join(f"{x:.1f}" for x in xs))
EOF
row() { # label unit tunnel-port host-port what n
  local t h
  t=$(python3 "$root/client.py" "$4" "$2" "$5" "$size")
  h=$(python3 "$root/client.py" "$4" "$3" "$5" "$size")
  echo "$1|$t|$h"
}
report() { # label, "median p90 all..." tunnel, host, unit
  local label=$1 t=$2 h=$3 unit=$4 tm hm
  tm=${t%% *}; hm=${h%% *}
  echo "bench-port-forward: $label: port-forward median $tm $unit, host directly median $hm $unit (ratio $(awk -v a="$tm" -v b="$hm" 'BEGIN {printf "%.2f", a / b}'))"
  echo "  port-forward: ${t#* }"
  echo "  host:         ${h#* }"
}
echo "bench-port-forward: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), ${size_mib} MiB per transfer, $runs runs, $connects connects"
IFS='|' read -r _ t h < <(row down "${locals[0]}" "$hp" down "$runs"); report "download (sandbox to client)" "$t" "$h" "MiB/s"
IFS='|' read -r _ t h < <(row up "${locals[1]}" "$((hp + 1))" up "$runs"); report "upload (client to sandbox, to the server's answer)" "$t" "$h" "MiB/s"
IFS='|' read -r _ t h < <(row connect "${locals[2]}" "$((hp + 2))" connect "$connects"); report "connect to first bytes" "$t" "$h" "ms"
echo "  (the first two figures of each line: median and 90th percentile; then every run)"
./flotilla rm "$id" > /dev/null
