package dev.flotilla.vm.process;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.vm.Vm;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The runtime's class-data archive ({@code agent.jsa}, dumped by build-sandbox-runtime.sh for the
 * paths under /.fl) is used by the agent inside the sandbox. The agent runs with -Xshare:auto, which
 * silently unmaps an archive that fails validation (another JVM build, another class path), so
 * "mapped after the agent is ready" is the honest check that it was accepted.
 */
class ClassDataArchiveTest {
  private TestSandboxes sandboxes;

  @BeforeEach
  void setUp() throws Exception {
    sandboxes = new TestSandboxes();
  }

  @AfterEach
  void tearDown() {
    sandboxes.close();
  }

  @Test
  void theSandboxedAgentMapsTheRuntimesArchive() throws Exception {
    Path archive = sandboxes.hypervisor.config().runtimeDir().resolve("agent.jsa");
    assertTrue(Files.isRegularFile(archive), "build-sandbox-runtime.sh made no archive (cds=no in runtime.properties?)");
    Vm vm = sandboxes.start(sandboxes.spec());
    var c = sandboxes.connect(vm);
    assertEquals("ok\n", TestSandboxes.run(c, Duration.ofSeconds(20), "echo", "ok").stdout());
    long agent = TestSandboxes.agentHostPid(vm);
    assertTrue(TestSandboxes.argv(agent).contains("-XX:SharedArchiveFile=/.fl/agent.jsa"), TestSandboxes.argv(agent).toString());
    List<String> mapped = Files.readAllLines(Path.of("/proc/" + agent + "/maps")).stream().filter(l -> l.endsWith("agent.jsa")).toList();
    assertTrue(!mapped.isEmpty(), "the agent's JVM maps agent.jsa (it was accepted, not unmapped after a failed check)");
  }
}
