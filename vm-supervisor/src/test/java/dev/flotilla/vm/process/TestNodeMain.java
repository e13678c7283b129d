package dev.flotilla.vm.process;

import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmSpec;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

/**
 * A stand-in node JVM for {@link NodeDeathTest}: starts one sandbox, says where its state is,
 * then waits to be killed. Args: state root, agent jar, sandbox id.
 */
public final class TestNodeMain {
  public static void main(String[] args) throws Exception {
    Path root = Path.of(args[0]);
    var hv = new ProcessHypervisor(ProcessHypervisorConfig.of(Path.of(args[1]), root).withCgroupParent("flotilla-test"));
    VmSpec spec = new VmSpec(args[2], 7, 1, 256, 0, root.resolve(args[2]).resolve("7"), Map.of());
    Vm vm = hv.prepare(spec);
    vm.start(Duration.ofSeconds(30));
    System.out.println("READY " + spec.stateDir());
    System.out.flush();
    Thread.sleep(Long.MAX_VALUE);
  }
}
