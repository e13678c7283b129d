package dev.flotilla.vm.process;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The fallbacks, forced on this host: no cgroups (limits unenforced and said so, pause by
 * SIGSTOP of every process in the tree) and no subordinate ids (--map-root-user, said so).
 */
class DegradedHostTest {
  private static final Duration T = Duration.ofSeconds(20);
  private TestSandboxes sandboxes;

  @BeforeEach
  void setUp() throws Exception {
    sandboxes = new TestSandboxes(false, false);
  }

  @AfterEach
  void tearDown() {
    sandboxes.close();
  }

  @Test
  void withoutCgroupsLimitsAreReportedUnenforcedAndPauseStopsEveryProcess() throws Exception {
    HypervisorCapabilities caps = sandboxes.hypervisor.capabilities();
    assertTrue(caps.enforcedLimits().isEmpty(), caps.toString());
    for (String what : List.of("memory", "CPU", "process-count", "SIGSTOP", "--map-root-user")) {
      assertTrue(caps.warnings().stream().anyMatch(w -> w.contains(what)), "no warning about " + what + ": " + caps.warnings());
    }
    VmSpec spec = sandboxes.spec();
    Vm vm = sandboxes.start(spec);
    AgentClient c = sandboxes.connect(vm);
    var map = TestSandboxes.run(c, T, "cat", "/proc/self/uid_map").stdout().trim().split("\\s+");
    assertEquals(List.of("0", "0", "1"), List.of(map), "--map-root-user maps root to the node's own uid");

    Path counter = spec.stateDir().resolve("counter");
    TestSandboxes.spawn(c, "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > " + counter + ".t; mv " + counter + ".t " + counter + "; sleep 0.02; done");
    await().atMost(T).until(() -> count(counter) > 3);
    vm.pause();
    long init = Procfs.namespaceInit(vm.handle().pid()).orElseThrow();
    List<Long> tree = Procfs.tree(init);
    assertTrue(tree.size() >= 3, "init, agent and the shell at least: " + tree);
    // stopped, or a child that had already exited and waits, as a zombie, for its stopped parent
    await().atMost(T).until(() -> tree.stream().allMatch(p -> Procfs.stat(p).map(s -> s.state() == 'T' || s.state() == 'Z').orElse(true)));
    long at = count(counter);
    await().during(Duration.ofMillis(600)).atMost(Duration.ofSeconds(3)).pollInterval(Duration.ofMillis(100)).until(() -> count(counter) == at);
    vm.resume();
    await().atMost(T).until(() -> count(counter) > at + 3);

    // killing the whole VM from outside leaves nothing, even without a cgroup to find the tree
    List<Long> all = vm.pids();
    ProcessHandle.of(vm.handle().pid()).orElseThrow().destroyForcibly();
    VmExit exit = vm.exitFuture().get(20, TimeUnit.SECONDS);
    assertEquals(9, exit.signal(), exit.toString());
    await().atMost(T).until(() -> all.stream().noneMatch(TestSandboxes::alive));
  }

  private static long count(Path counter) {
    try {
      String s = Files.readString(counter).trim();
      return s.isEmpty() ? 0 : Long.parseLong(s);
    } catch (Exception e) {
      return 0;
    }
  }
}
