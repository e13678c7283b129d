package dev.flotilla.vm.process;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmDirectory;
import dev.flotilla.vm.VmHandle;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A sandbox outlives the node JVM that started it (SIGKILL, no shutdown hooks) and another node
 * JVM on the same host adopts it, or reaps what is left of it when its runc died unwatched.
 */
class NodeDeathTest {
  private static final Duration T = Duration.ofSeconds(20);
  private TestSandboxes sandboxes;
  private Process node;

  @BeforeEach
  void setUp() throws Exception {
    sandboxes = new TestSandboxes();
  }

  @AfterEach
  void tearDown() {
    if (node != null) node.destroyForcibly();
    // whatever the stand-in node started: TestSandboxes.close() deletes every container of this state root
    sandboxes.close();
  }

  /** Starts a sandbox from a stand-in node JVM, SIGKILLs that JVM, returns the sandbox's state directory. */
  private Path startFromADyingNode(String id) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
    for (String p : List.of("flotilla.sandbox.runtime", "flotilla.default.image")) cmd.add("-D" + p + "=" + System.getProperty(p));
    cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), TestNodeMain.class.getName(), sandboxes.stateRoot.toString(), id));
    node = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String line;
    try (var r = new BufferedReader(new InputStreamReader(node.getInputStream()))) {
      while ((line = r.readLine()) != null && !line.startsWith("READY ")) {
        System.out.println("node: " + line);
      }
      assertTrue(line != null, "the stand-in node did not start its sandbox");
      node.destroyForcibly();
      assertTrue(node.waitFor(20, TimeUnit.SECONDS));
    }
    return Path.of(line.substring("READY ".length()));
  }

  @Test
  void aSandboxSurvivesItsNodeJvmAndIsAdoptedByAnother() throws Exception {
    Path stateDir = startFromADyingNode("node-death-" + ProcessHandle.current().pid());
    assertFalse(node.isAlive());

    ProcessHypervisor next = sandboxes.restartNode();
    List<VmHandle> found = new VmDirectory(sandboxes.stateRoot, 1).handles();
    assertEquals(1, found.size(), found.toString());
    assertEquals(stateDir, found.get(0).stateDir());
    Vm vm = sandboxes.track(next.adopt(found.get(0)).orElseThrow(() -> new AssertionError("the sandbox died with its node")));
    AgentClient c = sandboxes.connect(vm);
    assertEquals(7, vm.handle().incarnation());
    assertEquals("still here\n", TestSandboxes.run(c, T, "echo", "still here").stdout());
    assertTrue(next.sandboxRootHostUid(vm.handle().sandboxId()).isPresent(), "the new node knows the range the old one gave");
    vm.stop(Duration.ofSeconds(5));
    assertTrue(vm.exitFuture().isDone());
    assertTrue(vm.exitFuture().join().requested());
  }

  @Test
  void reapEndsWhatIsLeftWhenRuncDiedWhileNoNodeWatched() throws Exception {
    Path stateDir = startFromADyingNode("reaped-" + ProcessHandle.current().pid());
    ProcessHypervisor next = sandboxes.restartNode();
    VmHandle h = VmHandle.load(stateDir);
    String container = h.extra().get("container");
    Path pidsCgroup = next.facts().cgroups().mount(Cgroups.Controller.PIDS).orElseThrow().root()
        .resolve(next.config().cgroupParent()).resolve(container);
    List<Long> inside = next.containerPids(container);
    assertTrue(inside.size() >= 2, "tini and the agent at least: " + inside);
    // No node watches: runc dies, the container it ran lives on.
    ProcessHandle.of(h.pid()).orElseThrow().destroyForcibly();
    await().atMost(T).until(() -> !Procfs.isSameProcess(h.pid(), h.startTime()));
    assertTrue(inside.stream().allMatch(TestSandboxes::alive), "the container outlives its runc");
    assertTrue(next.adopt(h).isEmpty(), "nothing to adopt: the handle's process is gone");

    next.reap(h);
    await().atMost(T).until(() -> inside.stream().noneMatch(TestSandboxes::alive));
    assertFalse(sandboxes.containers().contains(container), "runc forgot the container");
    assertFalse(Files.exists(pidsCgroup), "cgroup removed");
    assertFalse(Files.exists(stateDir), "state removed");
    Path inc = ProcessVm.Places.of(next.config(), h.sandboxId(), h.incarnation()).incDir();
    assertFalse(Files.exists(inc), "run directory removed");
    assertTrue(sandboxes.mountsUnderRunRoot().stream().noneMatch(m -> m.startsWith(inc)), sandboxes.mountsUnderRunRoot().toString());
    assertTrue(new VmDirectory(sandboxes.stateRoot, 1).handles().isEmpty());
  }
}
