package dev.flotilla.vm.process;

import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

/**
 * A stand-in node JVM for {@link NodeDeathTest}: starts one sandbox (incarnation 7) with the test
 * driver's settings, prints {@code READY <state dir>}, then waits to be killed. Args: state root,
 * sandbox id. The runtime and image come from the same system properties as in the test JVM.
 */
public final class TestNodeMain {
  public static void main(String[] args) throws Exception {
    Path root = Path.of(args[0]);
    ProcessHypervisorConfig config = TestSandboxes.config(root);
    var hv = new ProcessHypervisor(config);
    VmSpec spec = new VmSpec(args[1], 7, 1, 256, 0, config.stateDirFor(args[1], 7), Map.of());
    Vm vm = hv.prepare(spec);
    vm.start(Duration.ofSeconds(30));
    System.out.println("READY " + spec.stateDir());
    System.out.flush();
    Thread.sleep(Long.MAX_VALUE);
  }
}
