package dev.flotilla.chaos;

import dev.flotilla.node.local.LocalCluster;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What the fencing scenarios do to a host from outside its node: freeze and thaw a sandbox's
 * cgroup, starve its CPU, find its processes. A sandbox's cgroups are the ones its agent JVM is
 * in ({@code /proc/<pid>/cgroup}): the container's, made by runc.
 *
 * <p>Freezing is done with the cgroup freezer, not by SIGSTOPping pids: it takes every process of
 * the sandbox at once (the agent and whatever tenant processes it forked meanwhile), as a frozen
 * host would, and it is what the process driver's own pause uses (runc pause). cgroup v2's
 * {@code freezer.state} where the agent is in a v1 freezer hierarchy (this machine: hybrid,
 * v1 controllers), cgroup v2's {@code cgroup.freeze} otherwise.
 */
final class FencingHost {
  private FencingHost() {}

  /** One VM: its agent's pid and the cgroups (freezer, cpu) the agent runs in. */
  record Vm(int node, String sandboxId, long incarnation, long agentPid, Path freezer, Path cpu) {}

  /** A live guest-agent JVM of this cluster: which node's runc state holds its container. */
  record Agent(int node, String sandboxId, long incarnation, long pid) {
    @Override
    public String toString() {
      return pid + "@n" + node + "#" + incarnation;
    }
  }

  /**
   * The live agents of this cluster's sandboxes. {@link LocalCluster#liveAgents()} looks for the
   * base directory on the agent's command line, which a runc sandbox's agent does not have (it
   * runs as {@code /.fl/jre/bin/java ... --listen unix:/.fl/run/agent.sock}, paths inside its
   * container), so it finds none; here each node's runc state ({@code nI/vms/.runc/<container>})
   * names its containers ({@code fl-<sandbox>-<incarnation>}), and the agent is the java process
   * with {@code --sandbox-id} in that container's cgroup.
   */
  static List<Agent> agents(LocalCluster local) {
    List<Agent> out = new ArrayList<>();
    for (int i = 1; i <= local.nodes().size(); i++) {
      Path runc = local.node(i).dataDir().resolve("vms").resolve(".runc");
      if (!Files.isDirectory(runc)) continue;
      try (var dirs = Files.list(runc)) {
        for (Path d : (Iterable<Path>) dirs::iterator) {
          String cid = d.getFileName().toString();
          int dash = cid.lastIndexOf('-');
          if (!cid.startsWith("fl-") || dash < 4) continue;
          String id = cid.substring(3, dash);
          long inc = Long.parseLong(cid.substring(dash + 1));
          for (long pid : procs(cid)) {
            if (isAgent(pid, id)) out.add(new Agent(i, id, inc, pid));
          }
        }
      } catch (IOException | NumberFormatException e) {
        // a container went away meanwhile: the next look sees it gone
      }
    }
    return out;
  }

  /** The live agents of one sandbox. */
  static List<Agent> agents(LocalCluster local, String sandboxId) {
    return agents(local).stream().filter(a -> a.sandboxId().equals(sandboxId)).toList();
  }

  /**
   * Containers of these sandboxes that still have processes, by their cgroups (which outlive a
   * cluster's files): after {@code close()} there must be none.
   */
  static List<String> containersWithProcesses(java.util.Collection<String> sandboxIds) {
    List<String> out = new ArrayList<>();
    for (String dir : List.of("/sys/fs/cgroup/pids/flotilla", "/sys/fs/cgroup/unified/flotilla", "/sys/fs/cgroup/flotilla")) {
      if (!Files.isDirectory(Path.of(dir))) continue;
      try (var dirs = Files.list(Path.of(dir))) {
        for (Path d : (Iterable<Path>) dirs::iterator) {
          String cid = d.getFileName().toString();
          if (sandboxIds.stream().anyMatch(id -> cid.startsWith("fl-" + id + "-")) && !procs(cid).isEmpty()) out.add(cid);
        }
      } catch (IOException e) {
        // unreadable: nothing to report from here
      }
      return out;
    }
    return out;
  }

  /** The pids in the container's pids cgroup (every v1 or v2 host has one). */
  private static List<Long> procs(String cid) {
    for (String dir : List.of("/sys/fs/cgroup/pids/flotilla/", "/sys/fs/cgroup/unified/flotilla/", "/sys/fs/cgroup/flotilla/")) {
      Path procs = Path.of(dir + cid, "cgroup.procs");
      if (!Files.exists(procs)) continue;
      try {
        return Files.readAllLines(procs).stream().filter(x -> !x.isBlank()).map(Long::parseLong).toList();
      } catch (IOException e) {
        return List.of();
      }
    }
    return List.of();
  }

  /** A java process (not a zombie) of {@code --sandbox-id id} whose parent is not one too (fork before exec). */
  private static boolean isAgent(long pid, String id) {
    try {
      String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
      int close = stat.lastIndexOf(')');
      if (stat.charAt(close + 2) == 'Z') return false;
      long ppid = Long.parseLong(stat.substring(close + 2).split(" ")[1]);
      return isAgentCommand(pid, id) && !isAgentCommand(ppid, id);
    } catch (IOException | RuntimeException e) {
      return false;
    }
  }

  private static boolean isAgentCommand(long pid, String id) {
    try {
      List<String> argv = List.of(new String(Files.readAllBytes(Path.of("/proc", Long.toString(pid), "cmdline")),
          java.nio.charset.StandardCharsets.UTF_8).split("\0"));
      int at = argv.indexOf("--sandbox-id");
      return !argv.isEmpty() && argv.get(0).endsWith("/java") && at >= 0 && at + 1 < argv.size() && argv.get(at + 1).equals(id);
    } catch (IOException e) {
      return false;
    }
  }

  /** The live VM of {@code sandboxId}'s incarnation on node {@code node}, with the cgroups its agent is in. */
  static Vm vm(LocalCluster local, int node, String sandboxId, long incarnation) {
    for (Agent a : agents(local, sandboxId)) {
      if (a.node() != node || a.incarnation() != incarnation) continue;
      long pid = a.pid();
      Path freezer = null;
      Path cpu = null;
      try {
        for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "cgroup"))) {
          String[] f = line.split(":", 3);
          if (f.length < 3) continue;
          List<String> controllers = List.of(f[1].split(","));
          if (controllers.contains("freezer")) freezer = Path.of("/sys/fs/cgroup/freezer" + f[2]);
          if (controllers.contains("cpu")) cpu = Path.of("/sys/fs/cgroup/" + f[1] + f[2]);
          if (f[0].equals("0") && f[1].isEmpty()) {
            Path v2 = Files.isDirectory(Path.of("/sys/fs/cgroup/unified")) ? Path.of("/sys/fs/cgroup/unified" + f[2])
                : Path.of("/sys/fs/cgroup" + f[2]);
            if (freezer == null && !f[2].equals("/")) freezer = v2;
            if (cpu == null && Files.exists(v2.resolve("cpu.max"))) cpu = v2;
          }
        }
      } catch (IOException e) {
        throw new UncheckedIOException("agent " + pid + " of " + sandboxId + " is gone", e);
      }
      return new Vm(node, sandboxId, incarnation, pid, freezer, cpu);
    }
    throw new IllegalStateException("no live agent of " + sandboxId + "#" + incarnation + " on node " + node + ": "
        + agents(local, sandboxId));
  }

  static void freeze(Vm vm, boolean frozen) {
    if (vm.freezer() == null) throw new IllegalStateException("no freezer cgroup in the handle of " + vm);
    if (Files.exists(vm.freezer().resolve("cgroup.freeze"))) {
      write(vm.freezer().resolve("cgroup.freeze"), frozen ? "1" : "0");
    } else {
      write(vm.freezer().resolve("freezer.state"), frozen ? "FROZEN" : "THAWED");
    }
  }

  /** Whether the cgroup is frozen now (false when it is gone: nothing left to freeze). */
  static boolean frozen(Vm vm) {
    try {
      if (Files.exists(vm.freezer().resolve("cgroup.events"))) {
        return Files.readAllLines(vm.freezer().resolve("cgroup.events")).contains("frozen 1");
      }
      return Files.readString(vm.freezer().resolve("freezer.state")).trim().equals("FROZEN");
    } catch (IOException e) {
      return false;
    }
  }

  /** The pids in the VM's freezer cgroup (its agent and everything it started). */
  static List<Long> pids(Vm vm) {
    try {
      return Files.readAllLines(vm.freezer().resolve("cgroup.procs")).stream().filter(s -> !s.isBlank())
          .map(Long::parseLong).toList();
    } catch (IOException e) {
      return List.of();
    }
  }

  /** "pid:comm" of each pid, for the report. */
  static List<String> commands(List<Long> pids) {
    List<String> out = new ArrayList<>();
    for (long pid : pids) {
      try {
        out.add(pid + ":" + Files.readString(Path.of("/proc", Long.toString(pid), "comm")).trim());
      } catch (IOException e) {
        out.add(pid + ":gone");
      }
    }
    return out;
  }

  /**
   * Sets the VM's CPU bandwidth to {@code quotaMicros} per 100 ms (v2 {@code cpu.max}, v1
   * {@code cpu.cfs_quota_us}); returns what to write back to restore it.
   */
  static String starve(Vm vm, long quotaMicros) {
    if (vm.cpu() == null) throw new IllegalStateException("no cpu cgroup in the handle of " + vm);
    Path max = vm.cpu().resolve("cpu.max");
    try {
      if (Files.exists(max)) {
        String before = Files.readString(max).trim();
        write(max, quotaMicros + " 100000");
        return before;
      }
      String before = Files.readString(vm.cpu().resolve("cpu.cfs_quota_us")).trim() + " "
          + Files.readString(vm.cpu().resolve("cpu.cfs_period_us")).trim();
      write(vm.cpu().resolve("cpu.cfs_period_us"), "100000");
      write(vm.cpu().resolve("cpu.cfs_quota_us"), Long.toString(quotaMicros));
      return before;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** Writes back what {@link #starve} returned; quietly nothing when the cgroup is gone. */
  static void restoreCpu(Vm vm, String before) {
    if (before == null || vm.cpu() == null || !Files.isDirectory(vm.cpu())) return;
    Path max = vm.cpu().resolve("cpu.max");
    String[] qp = before.split(" ");
    try {
      if (Files.exists(max)) {
        Files.writeString(max, before);
      } else {
        Files.writeString(vm.cpu().resolve("cpu.cfs_quota_us"), qp[0]);
        Files.writeString(vm.cpu().resolve("cpu.cfs_period_us"), qp[1]);
      }
    } catch (IOException ignored) {
      // the sandbox ended meanwhile: nothing to restore
    }
  }

  private static void write(Path file, String value) {
    try {
      Files.writeString(file, value);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + value + " to " + file, e);
    }
  }
}
