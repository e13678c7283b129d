# Shared shell helpers of Flotilla's scripts. Source it: . "$(dirname "$0")/lib.sh"

# kill_sandbox_leftovers ROOT CGROUP_PARENT
# Kills what a crashed run left: the process driver's containers (runc --root ROOT/.runc) and
# their mounts, every pid a VM handle under ROOT names, then whatever still sits in the
# CGROUP_PARENT cgroups (thawed first, so a frozen sandbox can die), and removes those cgroups.
# Safe to call when nothing is left.
kill_sandbox_leftovers() {
  local root=$1 parent=$2 h key p d c m
  # The process driver's containers (runc --root STATE/.runc) and mounts (its run root,
  # /run/flotilla/<first 16 hex of sha256(STATE)>: ProcessHypervisorConfig.runRootFor), where
  # STATE is ROOT itself or a node data directory's vms/.
  local state run
  for state in "$root" "$root/vms"; do
    # (the mounts are looked for even when STATE is gone: a deleted data dir leaves them behind)
    if [ -d "$state/.runc" ] && command -v runc >/dev/null 2>&1; then
      for c in $(runc --root "$state/.runc" list -q 2>/dev/null); do runc --root "$state/.runc" delete --force "$c" 2>/dev/null || true; done
    fi
    run="/run/flotilla/$(printf '%s' "$state" | sha256sum | cut -c1-16)"
    for m in $(awk '{print $5}' /proc/self/mountinfo | grep "^$run/" | sort -r); do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$run"
  done
  for h in $(find "$root" -name handle.properties 2>/dev/null); do
    for key in pid init.pid; do
      p=$(sed -n "s/^extra\.$key=//p; s/^$key=//p" "$h" | head -1)
      [ -n "$p" ] && [ "$p" != 0 ] && kill -9 "$p" 2>/dev/null || true
    done
  done
  for d in /sys/fs/cgroup/*/"$parent"/*/ /sys/fs/cgroup/"$parent"/*/; do
    [ -d "$d" ] || continue
    for p in $(cat "$d/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    [ -f "$d/freezer.state" ] && echo THAWED > "$d/freezer.state" 2>/dev/null || true
    rmdir "$d" 2>/dev/null || true
  done
  rmdir /sys/fs/cgroup/*/"$parent" /sys/fs/cgroup/"$parent" 2>/dev/null || true
}

# vm_test_classpath: compiles vm-supervisor and its tests and prints their class path, this
# checkout's modules first (nothing installed into ~/.m2, whatever another checkout installed there
# left out). For benchmarks that run classes of vm-supervisor's tests.
vm_test_classpath() {
  local f
  f=$(mktemp)
  mvn -B -q -ntp -pl vm-supervisor -am test-compile dependency:build-classpath -Dmdep.includeScope=test \
    -Dmdep.outputFile="$f" >/dev/null
  printf '%s:%s\n' "agent-protocol/target/classes:sandbox-protocol/target/classes:guest-agent/target/classes:vm-supervisor/target/classes:vm-supervisor/target/test-classes" \
    "$(tr ':' '\n' <"$f" | grep -v '/dev/flotilla/' | paste -sd:)"
  rm -f "$f"
}

# kill_qemu_leftovers ROOT
# Kills the QEMUs a crashed run under ROOT left: those its VM handles name (pid and start time
# checked: a jailed QEMU's command line has only the jail's paths), whose cgroups it removes, then
# any process whose command line names ROOT (bare QEMUs), and removes ROOT.
kill_qemu_leftovers() {
  local root=$1 h pid st cg p
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
}
