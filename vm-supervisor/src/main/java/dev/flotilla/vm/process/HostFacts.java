package dev.flotilla.vm.process;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * What this host lets the process driver do, found once: tini, a subordinate id range for user
 * namespaces (tried for real, since newuidmap, /etc/subuid and util-linux must all agree), and
 * the cgroup layout.
 */
record HostFacts(
    Path unshare,
    Optional<Path> tini,
    Optional<IdRange> idRange,
    boolean mapRootUser,
    Cgroups.Layout cgroups,
    List<String> warnings) {

  /** Root inside the sandbox is {@code hostStart} outside; {@code count} ids are mapped. */
  record IdRange(long hostStart, long count) {}

  static HostFacts probe(ProcessHypervisorConfig config) {
    List<String> warnings = new ArrayList<>();
    Path unshare = which("unshare").orElse(Path.of("/usr/bin/unshare"));
    Optional<Path> tini = which("tini").or(() -> which("tini-static"));
    if (tini.isEmpty()) {
      warnings.add("tini is not installed: the guest agent is PID 1 of each sandbox and orphaned processes are not reaped (apt-get install tini)");
    }
    Optional<IdRange> range = Optional.empty();
    if (config.subordinateIds()) {
      range = subordinateRange();
      if (range.isEmpty()) {
        warnings.add("no usable subordinate id range (newuidmap/newgidmap from 'uidmap' and an /etc/subuid+/etc/subgid entry for "
            + user() + "): root in a sandbox is mapped to the node's own uid (--map-root-user)");
      } else if (!works(unshare, mapArgs(range.get()))) {
        warnings.add("unshare --map-users failed with the subordinate range " + range.get()
            + ": root in a sandbox is mapped to the node's own uid (--map-root-user)");
        range = Optional.empty();
      }
    } else {
      warnings.add("subordinate ids disabled by configuration: root in a sandbox is the node's own uid (--map-root-user)");
    }
    boolean mapRoot = range.isPresent() || works(unshare, List.of("--map-root-user"));
    if (!mapRoot) warnings.add("unshare --user does not work on this host: the process driver cannot start sandboxes");
    Cgroups.Layout layout = config.cgroups()
        ? Cgroups.detect(config.cgroupParent())
        : new Cgroups.Layout(java.util.Map.of(), config.cgroupParent(), List.of("cgroups disabled by configuration"));
    warnings.addAll(layout.problems());
    for (Cgroups.Controller c : Cgroups.Controller.values()) {
      if (layout.mount(c).isEmpty()) {
        warnings.add(switch (c) {
          case MEMORY -> "memory limits are not enforced: no writable memory cgroup";
          case CPU -> "CPU limits are not enforced: no writable cpu cgroup";
          case PIDS -> "process-count limits are not enforced: no writable pids cgroup";
          case FREEZER -> "no cgroup freezer: pause sends SIGSTOP to each process, which a process can observe and forks can race";
        });
      }
    }
    return new HostFacts(unshare, tini, range, mapRoot, layout, List.copyOf(warnings));
  }

  static List<String> mapArgs(IdRange r) {
    String m = r.hostStart() + ",0," + r.count();
    return List.of("--map-users=" + m, "--map-groups=" + m, "--setuid", "0", "--setgid", "0");
  }

  private static boolean works(Path unshare, List<String> mapping) {
    List<String> cmd = new ArrayList<>(List.of(unshare.toString(), "--user"));
    cmd.addAll(mapping);
    cmd.add("true");
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
      if (!p.waitFor(10, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        return false;
      }
      return p.exitValue() == 0;
    } catch (IOException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }

  private static Optional<IdRange> subordinateRange() {
    if (which("newuidmap").isEmpty() || which("newgidmap").isEmpty()) return Optional.empty();
    Optional<IdRange> u = entry(Path.of("/etc/subuid"));
    Optional<IdRange> g = entry(Path.of("/etc/subgid"));
    if (u.isEmpty() || g.isEmpty()) return Optional.empty();
    // One range for both keeps file ownership in the state directory simple.
    if (u.get().hostStart() != g.get().hostStart()) return Optional.empty();
    return Optional.of(new IdRange(u.get().hostStart(), Math.min(65536, Math.min(u.get().count(), g.get().count()))));
  }

  private static Optional<IdRange> entry(Path file) {
    String user = user();
    String uid = uid();
    try {
      for (String line : Files.readAllLines(file)) {
        String[] f = line.trim().split(":");
        if (f.length == 3 && (f[0].equals(user) || f[0].equals(uid))) {
          long start = Long.parseLong(f[1]);
          long count = Long.parseLong(f[2]);
          if (count >= 1) return Optional.of(new IdRange(start, count));
        }
      }
    } catch (IOException | RuntimeException e) {
      // no file or a malformed line: no range
    }
    return Optional.empty();
  }

  private static String user() {
    return System.getProperty("user.name");
  }

  private static String uid() {
    try {
      return Files.getAttribute(Path.of("/proc/self"), "unix:uid").toString();
    } catch (IOException | RuntimeException e) {
      return "";
    }
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
