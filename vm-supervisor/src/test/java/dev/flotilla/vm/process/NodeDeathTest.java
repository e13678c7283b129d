package dev.flotilla.vm.process;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmDirectory;
import dev.flotilla.vm.VmHandle;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** A sandbox outlives the node JVM that started it (SIGKILL, no shutdown hooks) and can be adopted. */
class NodeDeathTest {
  private TestSandboxes sandboxes;
  private Process node;

  @BeforeEach
  void setUp() throws Exception {
    sandboxes = new TestSandboxes();
  }

  @AfterEach
  void tearDown() {
    if (node != null) node.destroyForcibly();
    for (VmHandle h : new VmDirectory(sandboxes.stateRoot).handles()) sandboxes.trackHandle(h);
    sandboxes.close();
  }

  /** Starts a sandbox from a stand-in node JVM, SIGKILLs that JVM, returns the sandbox's state directory. */
  private Path startFromADyingNode(String id) throws Exception {
    node = new ProcessBuilder(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-cp", System.getProperty("java.class.path"),
        TestNodeMain.class.getName(),
        sandboxes.stateRoot.toString(), TestSandboxes.agentJar().toString(), id)
        .redirectErrorStream(true)
        .start();
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
  void aSandboxSurvivesItsNodeJvmAndIsAdopted() throws Exception {
    Path stateDir = startFromADyingNode("node-death-" + ProcessHandle.current().pid());

    List<VmHandle> found = new VmDirectory(sandboxes.stateRoot).handles();
    assertEquals(1, found.size());
    assertEquals(stateDir, found.get(0).stateDir());
    Vm vm = sandboxes.track(sandboxes.hypervisor.adopt(found.get(0)).orElseThrow(() -> new AssertionError("sandbox died with its node")));
    AgentClient c = sandboxes.connect(vm);
    assertEquals(7, vm.handle().incarnation());
    assertEquals("still here\n", TestSandboxes.run(c, Duration.ofSeconds(20), "echo", "still here").stdout());
    vm.stop(Duration.ofSeconds(5));
    assertTrue(vm.exitFuture().isDone());
  }

  @Test
  void reapEndsWhatIsLeftWhenTheRootDiedWhileNoNodeWatched() throws Exception {
    Path stateDir = startFromADyingNode("reaped-" + ProcessHandle.current().pid());
    VmHandle h = VmHandle.load(stateDir);
    long init = Long.parseLong(h.extra().get("init.pid"));
    List<Long> all = Procfs.tree(h.pid());
    assertTrue(all.contains(init), "the handle names the namespace's init: " + all + " / " + init);
    // No node watches: the sandbox's root process dies, its namespace lives on.
    ProcessHandle.of(h.pid()).orElseThrow().destroyForcibly();
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> !Procfs.isSameProcess(h.pid(), h.startTime()));
    assertTrue(TestSandboxes.alive(init), "its namespace outlives it (unshare's --kill-child does not hold)");
    assertTrue(sandboxes.hypervisor.adopt(h).isEmpty(), "nothing to adopt");

    sandboxes.hypervisor.reap(h);
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> all.stream().noneMatch(TestSandboxes::alive));
    assertTrue(!java.nio.file.Files.exists(stateDir), "state removed");
    String cg = h.extra().get("cgroup.pids");
    if (cg != null) assertTrue(!java.nio.file.Files.exists(Path.of(cg)), "cgroup removed");
    assertTrue(new VmDirectory(sandboxes.stateRoot).handles().isEmpty());
  }
}
