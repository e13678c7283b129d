package dev.flotilla.vm.process;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.vm.Vm;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The runtime's class archive, made by build-sandbox-runtime.sh for the paths under /.fl, is used by
 * the agent inside the sandbox: {@code agent.aot} (an AOT cache, runtime on JDK 25) or
 * {@code agent.jsa} (a CDS archive, runtime on JDK 17), whichever runtime.properties names. The
 * agent takes either in the JVM's auto mode, which silently unmaps an archive that fails validation
 * (another JVM build, another class path, other flags), so "mapped after the agent is ready" is the
 * honest check that it was accepted.
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
    Path runtime = sandboxes.hypervisor.config().runtimeDir();
    Properties props = new Properties();
    try (var in = Files.newInputStream(runtime.resolve("runtime.properties"))) {
      props.load(in);
    }
    String name = props.getProperty("archive", "none");
    assertTrue(name.equals("agent.aot") || name.equals("agent.jsa"),
        "build-sandbox-runtime.sh made no archive (archive=" + name + " in runtime.properties; its log says why)");
    assertTrue(Files.isRegularFile(runtime.resolve(name)), runtime.resolve(name) + " is missing");
    String flag = name.equals("agent.aot") ? "-XX:AOTCache=/.fl/agent.aot" : "-XX:SharedArchiveFile=/.fl/agent.jsa";
    assertEquals(List.of(flag), ProcessVm.classArchiveFlags(runtime));
    Vm vm = sandboxes.start(sandboxes.spec());
    var c = sandboxes.connect(vm);
    assertEquals("ok\n", TestSandboxes.run(c, Duration.ofSeconds(20), "echo", "ok").stdout());
    long agent = TestSandboxes.agentHostPid(vm);
    assertTrue(TestSandboxes.argv(agent).contains(flag), TestSandboxes.argv(agent).toString());
    List<String> mapped = Files.readAllLines(Path.of("/proc/" + agent + "/maps")).stream().filter(l -> l.endsWith(name)).toList();
    assertTrue(!mapped.isEmpty(), "the agent's JVM maps " + name + " (it was accepted, not unmapped after a failed check)");
  }
}
