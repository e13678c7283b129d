package dev.flotilla.chaos;

import dev.flotilla.node.local.LocalCluster;
import dev.flotilla.vm.VmDirectory;
import dev.flotilla.vm.VmHandle;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What the fencing scenarios do to a host from outside its node: freeze and thaw a sandbox's
 * cgroup, starve its CPU, find its processes. The sandbox's cgroups are read from the VM handle
 * its node wrote ({@code nI/vms/.../handle.properties}, extras {@code cgroup.freezer},
 * {@code cgroup.cpu}), the same files the node itself trusts.
 *
 * <p>Freezing is done with the cgroup freezer, not by SIGSTOPping pids: it takes every process of
 * the sandbox at once (the agent and whatever tenant processes it forked meanwhile), as a frozen
 * host would, and it is what the process driver's own pause uses (runc pause). cgroup v2's
 * {@code cgroup.freeze} where the handle names a v2 directory (this machine is hybrid: v1
 * controllers, the freezer in the v2 tree), v1's {@code freezer.state} otherwise.
 */
final class FencingHost {
  private FencingHost() {}

  /** One VM of a node's data dir, as its handle names it. */
  record Vm(int node, String sandboxId, long incarnation, Path freezer, Path cpu) {}

  /** The VMs whose handles node {@code i}'s data dir holds (any incarnation, alive or not). */
  static List<Vm> vms(LocalCluster local, int i) {
    List<Vm> out = new ArrayList<>();
    for (VmHandle h : new VmDirectory(local.node(i).dataDir().resolve("vms")).handles()) {
      String f = h.extra().get("cgroup.freezer");
      String c = h.extra().get("cgroup.cpu");
      out.add(new Vm(i, h.sandboxId(), h.incarnation(), f == null ? null : Path.of(f), c == null ? null : Path.of(c)));
    }
    return out;
  }

  static Vm vm(LocalCluster local, int node, String sandboxId, long incarnation) {
    return vms(local, node).stream().filter(v -> v.sandboxId().equals(sandboxId) && v.incarnation() == incarnation)
        .findFirst().orElseThrow(() -> new IllegalStateException("no handle of " + sandboxId + "#" + incarnation
            + " on node " + node));
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
