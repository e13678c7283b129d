# Shared shell helpers of Flotilla's scripts. Source it: . "$(dirname "$0")/lib.sh"

# kill_sandbox_leftovers ROOT CGROUP_PARENT
# Kills what a crashed run left: every pid a VM handle under ROOT names, then whatever still sits
# in the CGROUP_PARENT cgroups (thawed first, so a frozen sandbox can die), and removes those
# cgroups. Safe to call when nothing is left.
kill_sandbox_leftovers() {
  local root=$1 parent=$2 h key p d
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
