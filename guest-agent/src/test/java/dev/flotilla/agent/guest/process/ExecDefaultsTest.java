package dev.flotilla.agent.guest.process;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.guest.AgentError;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ExecDefaultsTest {
  @TempDir Path dir;

  @Test
  void theImagesDefaultsApplyAndTheExecOverridesThem() throws Exception {
    Path f = Files.writeString(dir.resolve("d.properties"), "env.FOO=image\nenv.PATH=/app/bin\\:/bin\nworkingDir=/app\nuser=app\n");
    ExecDefaults d = ExecDefaults.load(f, Path.of("/.fl/bin/setpriv"));
    Map<String, String> env = d.environment(ProcessTable.DEFAULT_ENV, Map.of("FOO", "exec"));
    assertEquals("exec", env.get("FOO"));
    assertEquals("/app/bin:/bin", env.get("PATH"), "the image's PATH replaces the agent's default");
    assertEquals("/root", env.get("HOME"));
    assertEquals("/app", d.workingDir(""));
    assertEquals("/tmp", d.workingDir("/tmp"));
    assertEquals("/", ExecDefaults.NONE.workingDir(""));
  }

  @Test
  void usersResolveInTheSandboxesOwnEtcFiles() throws Exception {
    Files.writeString(dir.resolve("passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n");
    Files.writeString(dir.resolve("group"), "root:x:0:\napp:x:1001:\nstaff:x:50:\n");
    assertArrayEquals(new long[] {1000, 1001}, ExecDefaults.resolve("app", dir));
    assertArrayEquals(new long[] {1000, 50}, ExecDefaults.resolve("app:staff", dir));
    assertArrayEquals(new long[] {1000, 1001}, ExecDefaults.resolve("1000", dir), "a known uid takes its passwd group");
    assertArrayEquals(new long[] {4242, 4242}, ExecDefaults.resolve("4242", dir));
    assertArrayEquals(new long[] {7, 8}, ExecDefaults.resolve("7:8", dir));
    var e = assertThrows(AgentError.class, () -> ExecDefaults.resolve("nobody-here", dir));
    assertTrue(e.getMessage().contains("/etc/passwd"), e.getMessage());
    assertThrows(AgentError.class, () -> ExecDefaults.resolve("app:nogroup", dir));
    assertThrows(AgentError.class, () -> ExecDefaults.resolve("70000", dir));
  }

  @Test
  void aNonRootUserRunsThroughSetprivAndRootDoesNot() throws Exception {
    Files.writeString(dir.resolve("passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n");
    ExecDefaults d = new ExecDefaults(Map.of(), "", "app", java.util.Optional.of(Path.of("/.fl/bin/setpriv")));
    assertEquals(List.of("/.fl/bin/setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--", "id"), d.command(List.of("id"), "", dir));
    assertEquals(List.of("id"), d.command(List.of("id"), "root", dir), "the exec's user overrides the image's");
    assertEquals(List.of("id"), d.command(List.of("id"), "0:0", dir));
    ExecDefaults noHelper = new ExecDefaults(Map.of(), "", "app", java.util.Optional.empty());
    assertThrows(AgentError.class, () -> noHelper.command(List.of("id"), "", dir));
  }
}
