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
