#!/usr/bin/env bash
# Benchmarks qemu VM templates against cold boots (issue 12; figures only, no pass/fail), side by
# side in one run, on two real nodes (`./flotilla node`, H2, qemu driver) running at once: T with
# templates on (the default) and C with them off (FLOTILLA_QEMU_TEMPLATE_CACHE=0). Every sandbox is
# `--driver qemu --cpus 1 --memory 256`, the default image.
#   0. T: `flotilla template warm` (its wall time: the build) and the bytes `template ls` reports;
#   1. create-to-RUNNING through gRPC, N creates on each node, alternating (C then T, T then C), each
#      deleted before the next: the CLI's wall time (`flotilla create` waits for RUNNING; it
#      includes the CLI's own JVM start, shown as the floor `flotilla ls`), and the node's own span
#      from the `created` event to `vm-started` (`flotilla events`: no CLI start in it);
#      then 3 creates at once on each node: wall time until all 3 are RUNNING, and each one's;
#   2. PSS per idle sandbox with 1 and with 10 running on each node at once (each one's first exec
#      `true` done, then idle SETTLE s): the sum of the QEMU processes' Pss (smaps_rollup) / count;
#      the template's memory file (shared page cache) on its own: size and resident (fincore);
#   3. suspend, resume and fork, N of each on each node (a cold-booted sandbox on C, a template's
#      clone on T): `flotilla suspend` (CLI wall), the snapshot's size (state, and the store's
#      directory as allocated), the exec that resumes it (CLI wall; node: its vm-starting to
#      vm-started), and `flotilla fork` (CLI wall, waits for RUNNING; node: the fork's created to
#      vm-started);
#   4. process create-to-RUNNING, the agent's runtime on JDK 17 + CDS (node C, a runtime built here
#      with guest-image/build-sandbox-runtime.sh --jdk <JDK 17>, cached in guest-image/out) against
#      the default (node T: JDK 25 + AOT cache where the machine has Temurin 25): N creates each,
#      alternating, `--driver process`: CLI wall and the node's created-to-vm-started span.
# Prints the accelerator, the load average at start and end, and every "boots cold" line T logged.
# Usage: scripts/bench-templates.sh [--iterations N (default 10)] [--idle K (default 10)] [--settle S (default 5)]
# (BENCH_KEEP=DIR keeps the raw figures and the nodes' logs.) About 15 minutes under TCG on 2 busy cores.
# Deletes every sandbox, stops both nodes, and removes what they started (QEMUs, their cgroups,
# mounts, temp dir), also on failure and Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
n=10; idle=10; settle=5
while [ $# -gt 0 ]; do
  case "$1" in
    --iterations) n=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    *) echo "usage: $0 [--iterations N] [--idle K] [--settle S]" >&2; exit 2 ;;
  esac
done
for v in "$n" "$idle" "$settle"; do
  case "$v" in ''|*[!0-9]*|0) echo "usage: $0 [--iterations N] [--idle K] [--settle S] (whole numbers above 0)" >&2; exit 2 ;; esac
done
[ "$idle" -ge 1 ] || idle=1

# short: a template's sockets live under <data-dir>/qemu/templates/<id>.building/vm/run (108-byte sun_path)
root=$(mktemp -d /tmp/fltb.XXXXXX)
chmod 0711 "$root"
port=$((20000 + RANDOM % 20000))
declare -A node_pid=() node_port=()
node_port[T]=$port
node_port[C]=$((port + 2))
cleanup() {
  trap - EXIT INT TERM
  local k p
  # delete what still runs through the nodes first, so they release ids, cgroups and mounts themselves
  for k in T C; do
    p=${node_pid[$k]:-}
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      for id in $(fl "$k" ls -o json 2>/dev/null | jq -r '.[].id' 2>/dev/null); do fl "$k" rm "$id" >/dev/null 2>&1 || true; done
    fi
  done
  for k in T C; do
    p=${node_pid[$k]:-}
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
  for k in T C; do
    p=${node_pid[$k]:-}
    [ -n "$p" ] || continue
    for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
    kill -9 "$p" 2>/dev/null || true
  done
  # BENCH_KEEP=DIR keeps the raw figures and both nodes' logs (before kill_qemu_leftovers removes the nodes' dirs)
  if [ -n "${BENCH_KEEP:-}" ]; then mkdir -p "$BENCH_KEEP"; cp -r "$root/out" "$BENCH_KEEP/" 2>/dev/null || true
    for k in T C; do cp "$root/$k/node.log" "$BENCH_KEEP/node-$k.log" 2>/dev/null || true; done; fi
  for k in T C; do
    [ -d "$root/$k" ] && kill_sandbox_leftovers "$root/$k/data" "flotilla-btpl$k"
    [ -d "$root/$k" ] && kill_qemu_leftovers "$root/$k"
  done
  rm -rf "$root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# fl NODE ARGS...: the CLI against node T or C
fl() {
  local k=$1; shift
  FLOTILLA_ENDPOINT=127.0.0.1:${node_port[$k]} FLOTILLA_TOKEN_FILE=$root/$k/data/default.token ./flotilla "$@"
}
ms() { date +%s%3N; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

start_node() {
  local k=$1 cache=$2 runtime=$3 p=${node_port[$1]}
  mkdir -p "$root/$k"
  echo "flotilla.node.drivers.process.cgroup-parent = \"flotilla-btpl$k\"" > "$root/$k/bench.conf"
  FLOTILLA_SANDBOX_RUNTIME=$runtime FLOTILLA_QEMU_TEMPLATE_CACHE=$cache ./flotilla node --data-dir "$root/$k/data" --grpc-port "$p" --artery-port "$((p + 1))" \
    --config "$root/$k/bench.conf" > "$root/$k/node.log" 2>&1 &
  node_pid[$k]=$!
  for _ in $(seq 1 240); do
    grep -q "flotilla node ready" "$root/$k/node.log" && return 0
    kill -0 "${node_pid[$k]}" 2>/dev/null || { tail -30 "$root/$k/node.log" >&2; exit 1; }
    sleep 1
  done
  echo "bench-templates: node $k not ready after 240 s" >&2; tail -30 "$root/$k/node.log" >&2; exit 1
}

# qemu_pid ID: the QEMU of sandbox ID (its -name is flotilla-<id>-<incarnation>)
qemu_pid() {
  local p
  for p in $(pgrep -f "flotilla-$1-[0-9]" || true); do
    case "$(cat "/proc/$p/comm" 2>/dev/null)" in qemu*) echo "$p"; return 0 ;; esac
  done
  return 1
}
# rm_wait NODE ID: deletes ID and waits (up to 60 s) until its QEMU is gone
rm_wait() {
  local p
  p=$(qemu_pid "$2" || true)
  fl "$1" rm "$2" > /dev/null
  [ -n "$p" ] || return 0
  for _ in $(seq 1 600); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  echo "bench-templates: $2's QEMU ($p) still runs 60 s after its delete" >&2
}
# span NODE ID: ms from the sandbox's `created` event to its first `vm-started` (the node's own time)
span() {
  fl "$1" events "$2" -o json | jq -r '
    def t: capture("^(?<s>[^.Z]+)(\\.(?<f>[0-9]+))?Z$") as $m
      | (($m.s + "Z") | fromdateiso8601) * 1000 + (((($m.f // "0") + "00")[0:3]) | tonumber);
    (map(select(.kind == "vm-started"))[0].at | t) - (map(select(.kind == "created"))[0].at | t)'
}
# create NODE OUT: one create, timed; appends "id cli_ms" to OUT
create() {
  local t0 t1 id
  t0=$(ms); id=$(fl "$1" create --driver qemu --cpus 1 --memory 256); t1=$(ms)
  echo "$id $((t1 - t0))" >> "$2"
}
# pct P FILE-OF-NUMBERS: nearest-rank percentile
pct() { sort -n "$2" | awk -v p="$1" '{a[NR]=$1} END {i=int((p*NR+99)/100); if (i<1) i=1; print a[i]}'; }
col() { awk -v c="$1" '{print $c}' "$2"; }
pss_of() { # pss_of ID...: "count pss anon file rss tcg" (KiB) over their QEMUs; tcg: anonymous executable mappings (TCG's code cache)
  local id p c=0 pss=0 an=0 fi=0 rss=0 tcg=0 a b f r x
  for id in "$@"; do
    p=$(qemu_pid "$id") || { echo "bench-templates: no QEMU found for $id" >&2; continue; }
    read -r a b f r < <(awk '/^Pss:/{a=$2} /^Pss_Anon:/{b=$2} /^Pss_File:/{c=$2} /^Rss:/{d=$2} END {print a+0, b+0, c+0, d+0}' "/proc/$p/smaps_rollup")
    x=$(awk '/^[0-9a-f]+-[0-9a-f]+ / {ex = ($2 ~ /x/ && $6 == "")} /^Pss:/ && ex {t += $2} END {print t+0}' "/proc/$p/smaps")
    pss=$((pss + a)); an=$((an + b)); fi=$((fi + f)); rss=$((rss + r)); tcg=$((tcg + x)); c=$((c + 1))
  done
  echo "$c $pss $an $fi $rss $tcg"
}

# node C's process sandboxes run their agent on a JDK 17 + CDS runtime (section 4)
jdk17=$(ls -d /usr/lib/jvm/java-17-openjdk-* /usr/lib/jvm/temurin-17-* 2>/dev/null | head -1 || true)
[ -n "$jdk17" ] || { echo "bench-templates: no JDK 17 under /usr/lib/jvm for the comparison runtime" >&2; exit 1; }
rt17=guest-image/out/sandbox-runtime-jdk17
echo "bench-templates: building (or finding) the JDK 17 sandbox runtime in $rt17" >&2
guest-image/build-sandbox-runtime.sh --jdk "$jdk17" --out "$rt17" >&2
rt_default=guest-image/out/sandbox-runtime
runtime_of() { sed -n 's/^jdk=//p; s/^archive=/archive /p' "$1/runtime.properties" | paste -sd' '; }

load_start=$(load); t_start=$(date +%s)
echo "bench-templates: starting node T (templates on) and node C (FLOTILLA_QEMU_TEMPLATE_CACHE=0) in $root" >&2
start_node T 4GiB "$(realpath "$rt_default")"
start_node C 0 "$(realpath "$rt17")"
out=$root/out; mkdir -p "$out"

# 0. the template: build time and bytes
t0=$(ms); warm=$(fl T template warm --cpus 1 --memory 256); t1=$(ms)
warm_ms=$((t1 - t0))
tpl_id=${warm%% *}
tpl_ls=$(fl T template ls)
tpl_bytes=$(fl T template ls -o json | jq -r --arg id "$tpl_id" '.[] | select(.id == $id) | (.bytes // .sizeBytes // empty)' 2>/dev/null || true)
tpl_dir=$(find "$root/T/data" -type d -path "*/templates/$tpl_id" | head -1)

# a first create on each, not counted: the image's disk and the node's first-call paths
for k in C T; do
  : > "$out/first$k"; create "$k" "$out/first$k"; id=$(col 1 "$out/first$k")
  accel=$(sed -n 's/^extra\.accel=//p' "$(find "$root/$k/data" -path "*$id*" -name handle.properties | head -1)" 2>/dev/null || true)
  [ "$k" = C ] && accel_c=${accel:-?}
  [ "$k" = T ] && accel_t=${accel:-?}
  rm_wait "$k" "$id"
done

# the CLI floor: its own start + one unary call
: > "$out/floor"
for i in $(seq 1 "$n"); do
  t0=$(ms); fl T ls >/dev/null; t1=$(ms); echo $((t1 - t0)) >> "$out/floor"
done

# 1. create-to-RUNNING, alternating
: > "$out/C"; : > "$out/T"
for i in $(seq 1 "$n"); do
  if [ $((i % 2)) = 1 ]; then order="C T"; else order="T C"; fi
  for k in $order; do
    create "$k" "$out/$k"
    id=$(tail -1 "$out/$k" | cut -d' ' -f1)
    echo "$id $(span "$k" "$id")" >> "$out/span$k"
    rm_wait "$k" "$id"
  done
  echo "bench-templates: create $i/$n done (load $(load))" >&2
done

# 1b. 3 at once, on C then on T
for k in C T; do
  : > "$out/three$k"
  t0=$(ms)
  pids=()
  for j in 1 2 3; do create "$k" "$out/three$k" & pids+=($!); done
  wait "${pids[@]}" # (not a bare wait: the nodes are this shell's children too)
  t1=$(ms)
  echo $((t1 - t0)) > "$out/threewall$k"
  for id in $(col 1 "$out/three$k"); do echo "$id $(span "$k" "$id")" >> "$out/threespan$k"; done
  for id in $(col 1 "$out/three$k"); do rm_wait "$k" "$id"; done
done

# 2. PSS with 1, then K, idle sandboxes on each node (created alternately, each exec'd once)
# exec_true NODE ID: the sandbox's first exec; retried (a loaded host's agent may miss the 5 s call deadline), never fatal
exec_true() {
  local a
  for a in 1 2 3; do fl "$1" exec "$2" -- true && return 0; sleep 2; done
  echo "bench-templates: exec into $2 failed 3 times; measured anyway" >&2
}
declare -A ids=()
ids[C]=""; ids[T]=""
measure_pss() { # measure_pss COUNT
  local k
  for k in C T; do for id in ${ids[$k]}; do exec_true "$k" "$id"; done; done
  sleep "$settle"
  for k in C T; do echo "$(pss_of ${ids[$k]})" > "$out/pss$k.$1"; done
  if [ -n "$tpl_dir" ]; then
    fincore --bytes --noheadings --output RES,SIZE "$tpl_dir/memory" > "$out/fincore.$1" 2>/dev/null || echo "? ?" > "$out/fincore.$1"
  fi
}
for k in C T; do : > "$out/idle$k"; create "$k" "$out/idle$k"; ids[$k]="$(col 1 "$out/idle$k" | paste -sd' ')"; done
measure_pss 1
for i in $(seq 2 "$idle"); do
  for k in C T; do create "$k" "$out/idle$k"; done
done
for k in C T; do ids[$k]="$(col 1 "$out/idle$k" | paste -sd' ')"; done
measure_pss "$idle"
load_end=$(load)
cold_lines=$(grep -c "boots cold" "$root/T/node.log" || true)
cold_reasons=$(grep -o "boots cold: .*" "$root/T/node.log" | sed 's/sb-[A-Za-z0-9-]*//g' | sort | uniq -c || true)
for k in C T; do for id in ${ids[$k]}; do rm_wait "$k" "$id"; done; done
ids[C]=""; ids[T]=""

# 3. suspend, resume (by an exec), fork: on C (cold-booted) and T (template clones)
# restart_span NODE ID: ms from the sandbox's last vm-starting event to its last vm-started (the node's own time)
restart_span() {
  fl "$1" events "$2" -o json | jq -r '
    def t: capture("^(?<s>[^.Z]+)(\\.(?<f>[0-9]+))?Z$") as $m
      | (($m.s + "Z") | fromdateiso8601) * 1000 + (((($m.f // "0") + "00")[0:3]) | tonumber);
    (map(select(.kind == "vm-started"))[-1].at | t) - (map(select(.kind == "vm-starting"))[-1].at | t)'
}
for k in C T; do : > "$out/susp$k"; done
for i in $(seq 1 "$n"); do
  for k in C T; do
    : > "$out/one"; create "$k" "$out/one"; id=$(col 1 "$out/one")
    exec_true "$k" "$id"
    t0=$(ms); fl "$k" suspend "$id" > /dev/null; t1=$(ms)
    snap=$(find "$root/$k/data/snapshots" -maxdepth 1 -name "$id-*" | head -1)
    state=$(stat -c %s "$snap/state" 2>/dev/null || echo 0)
    alloc=$(du -sk "$snap" | cut -f1)
    t2=$(ms); fl "$k" exec "$id" -- true; t3=$(ms)
    resume_span=$(restart_span "$k" "$id")
    t4=$(ms); fid=$(fl "$k" fork "$id"); t5=$(ms)
    fork_span=$(span "$k" "$fid")
    # suspend_ms state_bytes alloc_kib resume_cli_ms resume_node_ms fork_cli_ms fork_node_ms
    echo "$((t1 - t0)) $state $alloc $((t3 - t2)) $resume_span $((t5 - t4)) $fork_span" >> "$out/susp$k"
    rm_wait "$k" "$fid"; rm_wait "$k" "$id"
  done
  echo "bench-templates: suspend/resume/fork $i/$n done (load $(load))" >&2
done
# 4. process create-to-RUNNING, agent runtime 17+CDS (C) vs the default (T), alternating
: > "$out/procC"; : > "$out/procT"
for i in $(seq 0 "$n"); do
  if [ $((i % 2)) = 1 ]; then order="C T"; else order="T C"; fi
  for k in $order; do
    t0=$(ms); id=$(fl "$k" create --driver process); t1=$(ms)
    # the first round warms each node's process driver (image, runtime mount) and is not counted
    [ "$i" = 0 ] || echo "$((t1 - t0)) $(span "$k" "$id")" >> "$out/proc$k"
    fl "$k" rm "$id" > /dev/null
  done
done
load_end=$(load)

# the report
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
row() { # row LABEL FILE-C FILE-T: p50/p99 (ms) of each and the ratio T/C at p50
  local c50 c99 t50 t99
  c50=$(pct 50 "$2"); c99=$(pct 99 "$2"); t50=$(pct 50 "$3"); t99=$(pct 99 "$3")
  printf '%-52s %8s %8s %8s %8s   %5s\n' "$1" "$c50" "$c99" "$t50" "$t99" "$(awk -v a="$t50" -v b="$c50" 'BEGIN {printf "%.2fx", a / b}')"
}
col 2 "$out/C" > "$out/C.cli"; col 2 "$out/T" > "$out/T.cli"
col 2 "$out/spanC" > "$out/C.span"; col 2 "$out/spanT" > "$out/T.span"
col 2 "$out/threeC" > "$out/3C.cli"; col 2 "$out/threeT" > "$out/3T.cli"
col 2 "$out/threespanC" > "$out/3C.span"; col 2 "$out/threespanT" > "$out/3T.span"
echo "================ Flotilla VM templates vs cold boots ================"
echo "machine: nproc=$(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), MemTotal $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
echo "accelerator: node C $accel_c, node T $accel_t$(grep -q 'guests run under TCG' "$root/T/node.log" && echo ' (node: no usable KVM, TCG emulation)')"
echo "load average (1/5/15 min): start $load_start, end $load_end; run took $(( $(date +%s) - t_start )) s"
echo "sandboxes: --driver qemu --cpus 1 --memory 256, default image; node T templates on, node C FLOTILLA_QEMU_TEMPLATE_CACHE=0"
echo
echo "0. template build (\`flotilla template warm --cpus 1 --memory 256\`, CLI wall): ${warm_ms} ms"
echo "   $warm"
echo "   template ls: $(echo "$tpl_ls" | tail -n +1 | paste -sd' ')${tpl_bytes:+ ($tpl_bytes bytes)}"
echo
printf '%-52s %17s %17s   %s\n' "1. create-to-RUNNING (ms), n=$n each" "cold (node C)" "template (node T)" "T/C"
printf '%-52s %8s %8s %8s %8s   %s\n' "" p50 p99 p50 p99 p50
row "flotilla create (CLI wall, waits for RUNNING)" "$out/C.cli" "$out/T.cli"
row "node: created event to vm-started event" "$out/C.span" "$out/T.span"
printf '%-52s %8s %8s\n' "(CLI floor: \`flotilla ls\`, n=$n)" "$(pct 50 "$out/floor")" "$(pct 99 "$out/floor")"
echo "   all, CLI wall:  cold $(paste -sd' ' "$out/C.cli"); template $(paste -sd' ' "$out/T.cli")"
echo "   all, node span: cold $(paste -sd' ' "$out/C.span"); template $(paste -sd' ' "$out/T.span")"
echo "   3 at once: cold wall $(cat "$out/threewallC") ms (each, CLI: $(paste -sd' ' "$out/3C.cli"); node: $(paste -sd' ' "$out/3C.span"))"
echo "              template wall $(cat "$out/threewallT") ms (each, CLI: $(paste -sd' ' "$out/3T.cli"); node: $(paste -sd' ' "$out/3T.span"))"
echo
echo "2. PSS per idle sandbox (sum of the QEMUs' Pss / count; each exec'd once, then idle ${settle} s)"
for c in 1 "$idle"; do
  read -r nc pc ac fc rc xc < "$out/pssC.$c"; read -r nt pt at ft rt xt < "$out/pssT.$c"
  dc=$((nc > 0 ? nc : 1)); dt=$((nt > 0 ? nt : 1))
  printf '   %2s running: cold %7s MiB, template %7s MiB, T/C %s\n' "$c" "$(mib $((pc / dc)))" "$(mib $((pt / dt)))" \
    "$(awk -v a="$pt" -v b="$pc" -v x="$dt" -v y="$dc" 'BEGIN {if (b > 0) printf "%.2fx", (a / x) / (b / y); else print "?"}')"
  printf '      cold:     Pss_Anon %s, Pss_File %s, of the Pss TCG code cache %s; Rss %s (MiB per sandbox)\n' \
    "$(mib $((ac / dc)))" "$(mib $((fc / dc)))" "$(mib $((xc / dc)))" "$(mib $((rc / dc)))"
  printf '      template: Pss_Anon %s, Pss_File %s, of the Pss TCG code cache %s; Rss %s (MiB per sandbox)\n' \
    "$(mib $((at / dt)))" "$(mib $((ft / dt)))" "$(mib $((xt / dt)))" "$(mib $((rt / dt)))"
  [ "$nc" = "$c" ] && [ "$nt" = "$c" ] || echo "   (QEMUs found: cold $nc, template $nt, of $c)"
  if [ -f "$out/fincore.$c" ]; then
    read -r res size < "$out/fincore.$c"
    echo "      template memory file: $(mib $(( ${size:-0} / 1024 ))) MiB, resident in page cache $(mib $(( ${res:-0} / 1024 ))) MiB (shared by its clones; counted in their Pss only for the pages they map)"
  fi
done
echo
printf '%-52s %17s %17s   %s\n' "3. suspend / resume / fork, n=$n each" "cold (node C)" "template (node T)" "T/C"
printf '%-52s %8s %8s %8s %8s   %s\n' "" p50 p99 p50 p99 p50
for spec in "1:flotilla suspend (CLI wall, ms)" "4:resume by an exec (CLI wall, ms)" "5:resume, node: vm-starting to vm-started (ms)" \
    "6:flotilla fork (CLI wall, waits for RUNNING, ms)" "7:fork, node: created to vm-started (ms)"; do
  c=${spec%%:*}; col "$c" "$out/suspC" > "$out/s.C"; col "$c" "$out/suspT" > "$out/s.T"
  row "${spec#*:}" "$out/s.C" "$out/s.T"
done
col 2 "$out/suspC" > "$out/s.C"; col 2 "$out/suspT" > "$out/s.T"
echo "   snapshot state (MiB, p50): cold $(mib $(( $(pct 50 "$out/s.C") / 1024 ))), template clone $(mib $(( $(pct 50 "$out/s.T") / 1024 )))"
col 3 "$out/suspC" > "$out/s.C"; col 3 "$out/suspT" > "$out/s.T"
echo "   snapshot directory allocated (MiB, p50; state + sparse disk): cold $(mib "$(pct 50 "$out/s.C")"), template clone $(mib "$(pct 50 "$out/s.T")")"
echo
printf '%-52s %17s %17s   %s\n' "4. process create-to-RUNNING (ms), n=$n each" "17+CDS (node C)" "default (node T)" "T/C"
printf '%-52s %8s %8s %8s %8s   %s\n' "" p50 p99 p50 p99 p50
col 1 "$out/procC" > "$out/p.C"; col 1 "$out/procT" > "$out/p.T"
row "flotilla create --driver process (CLI wall)" "$out/p.C" "$out/p.T"
col 2 "$out/procC" > "$out/p.C"; col 2 "$out/procT" > "$out/p.T"
row "node: created event to vm-started event" "$out/p.C" "$out/p.T"
echo "   agent runtime: node C $(runtime_of "$rt17"); node T $(runtime_of "$rt_default")"
echo
echo "node T logged \"boots cold\" $cold_lines time(s)$( [ -n "$cold_reasons" ] && printf ':\n%s' "$cold_reasons")"
echo "====================================================================="
