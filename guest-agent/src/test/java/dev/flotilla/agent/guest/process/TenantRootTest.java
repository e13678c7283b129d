package dev.flotilla.agent.guest.process;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.flotilla.agent.guest.AgentError;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Paths and commands of a tenant root the agent is outside of (a microVM's image root). */
class TenantRootTest {
  @TempDir Path tmp;

  @Test
  void pathsResolveInsideTheRootWhateverItsLinksSay() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("root"));
    Files.createDirectories(root.resolve("app/data"));
    Files.createSymbolicLink(root.resolve("abs"), Path.of("/etc"));          // absolute: the tenant's /etc
    Files.createSymbolicLink(root.resolve("up"), Path.of("../../../.."));      // .. stops at the root
    Files.createSymbolicLink(root.resolve("app/here"), Path.of("data"));
    Files.createSymbolicLink(root.resolve("loop"), Path.of("loop"));
    TenantRoot t = new TenantRoot(root, Path.of("/usr/bin/nsenter"));
    assertEquals(root.resolve("etc/passwd"), t.resolve("/abs/passwd"));
    assertEquals(root.resolve("etc"), t.resolve("/up/etc"));
    assertEquals(root.resolve("etc"), t.resolve("/../../etc"));
    assertEquals(root.resolve("app/data/x"), t.resolve("/app/here/x"));
    assertEquals(root, t.resolve("/"));
    assertThrows(AgentError.class, () -> t.resolve("/loop/x"));
    assertThrows(AgentError.class, () -> t.resolve("relative"));
  }

  @Test
  void processesEnterTheRootAsTheirUser() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("root/app"));
    TenantRoot t = new TenantRoot(root.getParent(), Path.of("/usr/bin/nsenter"));
    assertEquals(List.of("/usr/bin/nsenter", "--root=" + root.getParent(), "--wd=" + root, "-S", "1000", "-G", "1001", "--", "id"),
        t.command(List.of("id"), "/app", new long[] {1000, 1001}));
    assertEquals(List.of("/usr/bin/nsenter", "--root=" + root.getParent(), "--wd=" + root.getParent(), "--", "id"),
        t.command(List.of("id"), "/", null));
    assertThrows(AgentError.class, () -> t.command(List.of("id"), "/nope", null));
  }
}
