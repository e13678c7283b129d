package dev.flotilla.vm.qemu;

import dev.flotilla.vm.ids.IdRangeAllocator;
import dev.flotilla.vm.ids.SubordinateIds;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/**
 * The QEMU driver as the tests run it: the image from the environment, the driver's state in a
 * test directory, and sandbox uids from a test delegation (this host's /etc/subuid may have none;
 * root may give any uid, and these are far from the ranges scripts/setup-host.sh delegates).
 */
final class TestQemu {
  /** 16 sandbox ranges from here. */
  static final long TEST_IDS_START = 1_200_000_000L;

  private TestQemu() {}

  static QemuConfig config(Path stateRoot) {
    QemuConfig env = QemuConfig.fromEnvironment();
    return new QemuConfig(env.qemuBinary(), env.imageDir(), env.accel(), stateRoot);
  }

  static IdRangeAllocator ids(Path stateRoot) throws IOException {
    return new IdRangeAllocator(stateRoot.resolve("id-ranges.properties"),
        List.of(new SubordinateIds.Delegation(TEST_IDS_START, 16 * SubordinateIds.RANGE)), stateRoot);
  }

  static QemuHypervisor hypervisor(Path stateRoot) throws IOException {
    return new QemuHypervisor(config(stateRoot), ids(stateRoot));
  }

  static QemuHypervisor hypervisor(QemuConfig config) throws IOException {
    return new QemuHypervisor(config, ids(config.stateRoot()));
  }

  /**
   * A test's end: its agents closed, its VMs killed, their consoles printed (for a failure's
   * report), then every VM whose handle is under {@code base} reaped (cgroups, networks) and
   * {@code base} deleted.
   */
  static void tearDown(QemuHypervisor hv, Path base, List<dev.flotilla.vm.Vm> vms,
      List<dev.flotilla.agent.protocol.client.AgentClient> agents) throws IOException {
    agents.forEach(dev.flotilla.agent.protocol.client.AgentClient::close);
    for (dev.flotilla.vm.Vm vm : vms) {
      vm.kill();
      vm.exitFuture().orTimeout(20, java.util.concurrent.TimeUnit.SECONDS).exceptionally(e -> null).join();
    }
    if (base == null || !java.nio.file.Files.isDirectory(base)) return;
    for (dev.flotilla.vm.Vm vm : vms) {
      System.out.println("console of " + vm.handle().stateDir() + ":\n"
          + ConsoleLog.tail(vm.handle().stateDir().resolve("console.log"), 6000));
    }
    try (java.util.stream.Stream<Path> files = java.nio.file.Files.walk(base)) {
      for (Path h : files.filter(f -> f.getFileName().toString().equals(dev.flotilla.vm.VmHandle.FILE_NAME)).toList()) {
        hv.reap(dev.flotilla.vm.VmHandle.load(h.getParent()));
      }
    }
    QemuJail.deleteTree(base);
  }
}
