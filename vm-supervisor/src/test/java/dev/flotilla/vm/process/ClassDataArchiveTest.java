package dev.flotilla.vm.process;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.vm.Vm;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The agent's class-data archive is made once and mapped by the agent inside the sandbox. */
class ClassDataArchiveTest {
  private TestSandboxes sandboxes;

  @BeforeEach
  void setUp() throws Exception {
    sandboxes = new TestSandboxes(true, true, true);
  }

  @AfterEach
  void tearDown() {
    sandboxes.close();
  }

  @Test
  void theSandboxedAgentMapsTheArchive() throws Exception {
    Vm first = sandboxes.start(sandboxes.spec());
    Vm second = sandboxes.start(sandboxes.spec());
    List<Path> archives;
    try (Stream<Path> s = Files.list(sandboxes.stateRoot.resolve(".cds"))) {
      archives = s.filter(p -> p.toString().endsWith(".jsa")).toList();
    }
    assertEquals(1, archives.size(), "one archive for both: " + archives);
    for (Vm vm : List.of(first, second)) {
      AgentClient c = sandboxes.connect(vm);
      assertEquals("ok\n", TestSandboxes.run(c, Duration.ofSeconds(20), "echo", "ok").stdout());
      long agent = ProcessHypervisorTest.agentHostPid(vm);
      String maps = Files.readString(Path.of("/proc/" + agent + "/maps"));
      assertTrue(maps.contains(archives.get(0).getFileName().toString()), "the agent maps " + archives.get(0));
    }
  }
}
