package dev.flotilla.vm.process;

import dev.flotilla.vm.ids.IdRangeAllocator;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * What this host lets the process driver do, found once. The driver runs only when everything a
 * hardened sandbox needs is here: there is no degraded mode (no running as the node's uid, no
 * sandbox without limits). {@link #missing()} says what is not, and what to run about it.
 */
record HostFacts(boolean root, Cgroups.Layout cgroups, List<String> missing) {

  static final String FIX = "run scripts/setup-host.sh as root (./flotilla node does it when started as root)";

  static HostFacts probe(ProcessHypervisorConfig config, IdRangeAllocator ids) {
    List<String> missing = new ArrayList<>();
    boolean root = dev.flotilla.vm.ids.SubordinateIds.currentUid().map(u -> u == 0).orElse(false);
    if (!root) missing.add("the process driver runs sandboxes in user namespaces with their own id ranges, which needs the node to run as root");
    if (!Files.isExecutable(config.ociRuntime())) missing.add("no OCI runtime at " + config.ociRuntime() + " (apt-get install runc)");
    if (!Files.isReadable(config.seccompProfile())) {
      missing.add("no seccomp profile at " + config.seccompProfile() + " (apt-get install golang-github-containers-common)");
    }
    if (!Files.isRegularFile(config.runtimeDir().resolve("agent.jar"))) {
      missing.add("no sandbox runtime at " + config.runtimeDir() + " (guest-image/build-sandbox-runtime.sh)");
    }
    if (!Files.isDirectory(config.defaultRootfs())) {
      missing.add("no default image at " + config.defaultRootfs() + " (guest-image/build-default-image.sh)");
    }
    if (which("mkfs.ext4").isEmpty()) missing.add("no mkfs.ext4 for the sandboxes' writable layers (apt-get install e2fsprogs)");
    if (ids.capacity() == 0) {
      missing.add("no subordinate id range for the node's user in /etc/subuid and /etc/subgid: every sandbox needs its own 65536 ids");
    }
    Cgroups.Layout layout = Cgroups.detect(config.cgroupParent());
    for (Cgroups.Controller c : List.of(Cgroups.Controller.MEMORY, Cgroups.Controller.CPU, Cgroups.Controller.PIDS)) {
      if (layout.mount(c).isEmpty()) missing.add("no writable " + c.name().toLowerCase() + " cgroup: sandbox limits cannot be enforced");
    }
    if (layout.mount(Cgroups.Controller.FREEZER).isEmpty()) missing.add("no cgroup freezer: sandboxes cannot be paused");
    return new HostFacts(root, layout, List.copyOf(missing));
  }

  boolean usable() {
    return missing.isEmpty();
  }

  /** Why the driver is not offered, with what to run. */
  String why() {
    return "the process driver is not available on this host: " + String.join("; ", missing) + ". To fix: " + FIX;
  }

  static Optional<Path> which(String name) {
    String path = System.getenv().getOrDefault("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
    List<String> dirs = new ArrayList<>(List.of(path.split(":")));
    dirs.addAll(List.of("/usr/bin", "/bin", "/usr/sbin", "/sbin"));
    for (String d : dirs) {
      if (d.isEmpty()) continue;
      Path p = Path.of(d, name);
      if (Files.isExecutable(p)) return Optional.of(p);
    }
    return Optional.empty();
  }
}
