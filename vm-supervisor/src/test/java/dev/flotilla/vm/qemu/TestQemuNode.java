package dev.flotilla.vm.qemu;

import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

/**
 * A node that starts one VM and dies at once (as a crash would: no shutdown hooks), for the test
 * that a VM outlives the JVM that started it. Args: image dir, driver state root, VM state dir,
 * sandbox id, incarnation.
 */
public final class TestQemuNode {
  private TestQemuNode() {}

  public static void main(String[] args) throws Exception {
    Path stateRoot = Path.of(args[1]);
    QemuHypervisor hv = TestQemu.hypervisor(new QemuConfig("qemu-system-x86_64", Path.of(args[0]), "tcg", stateRoot));
    Vm vm = hv.prepare(new VmSpec(args[3], Long.parseLong(args[4]), 1, 256, 0, Path.of(args[2]), Map.of()));
    vm.start(Duration.ofSeconds(60));
    System.out.println("started " + vm.handle().pid());
    Runtime.getRuntime().halt(137);
  }
}
