package dev.flotilla.chaos;

import dev.flotilla.node.local.LocalCluster;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
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

  /**
   * The live VM of {@code sandboxId}'s incarnation on node {@code node}: its agent JVM (found as
   * {@link LocalCluster#liveAgents()} finds it, told apart by {@link DuplicateSampler#describe})
   * and the cgroups /proc says it is in (runc put it there: {@code <hierarchy>/flotilla/<container>}).
   */
  static Vm vm(LocalCluster local, int node, String sandboxId, long incarnation) {
    String mark = "@n" + node + "#" + incarnation + " ";
    for (long pid : local.liveAgents().getOrDefault(sandboxId, List.of())) {
      if (!DuplicateSampler.describe(pid).contains(mark)) continue;
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

  /** The live agent JVMs (by {@code --sandbox-id} and {@code --incarnation}) of one sandbox. */
  static List<String> agents(LocalCluster local, String sandboxId) {
    return local.liveAgents().getOrDefault(sandboxId, List.of()).stream().map(DuplicateSampler::describe).toList();
  }

  private static void write(Path file, String value) {
    try {
      Files.writeString(file, value);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + value + " to " + file, e);
    }
  }
}
