package dev.flotilla.agent.guest.system;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.guest.process.TenantRoot;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.FileInfo;
import dev.flotilla.agent.protocol.v1.ReadFileRequest;
import dev.flotilla.agent.protocol.v1.StatRequest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The walk behind every file call, against a tenant who swaps a directory for a link between resolution and use. */
class ConfinedTest {
  @TempDir Path tmp;

  @Test
  void aDirectorySwappedForALinkAfterResolutionIsNeverFollowed() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("root"));
    Path outside = Files.createDirectories(tmp.resolve("outside/b"));
    Files.writeString(outside.resolve("file"), "host");
    Files.createDirectories(root.resolve("a/b"));
    Files.writeString(root.resolve("a/b/file"), "tenant");
    TenantRoot t = TenantRoot.filesOnly(root);

    List<String> names = t.components("/a/b/file", true); // resolved while /a is a directory
    assertEquals(List.of("a", "b", "file"), names);
    // The swap: /a becomes a link to a host directory with the same layout.
    Files.move(root.resolve("a"), root.resolve("a-old"));
    Files.createSymbolicLink(root.resolve("a"), outside.getParent());

    assertThrows(IOException.class, () -> Confined.openDir(t, names.subList(0, 2), "/a/b"));
    // A call resolving afresh follows the link inside the root: the host's file is not found.
    FileService files = new FileService(4096, t);
    AgentError e = assertThrows(AgentError.class,
        () -> files.read(ReadFileRequest.newBuilder().setPath("/a/b/file").build()));
    assertEquals(Error.Code.NOT_FOUND, e.code());
    assertEquals("host", Files.readString(outside.resolve("file")));
  }

  @Test
  void statReportsTheLinkNotItsTarget() throws Exception {
    Path root = Files.createDirectories(tmp.resolve("root"));
    Files.createSymbolicLink(root.resolve("l"), tmp);
    FileInfo info = new FileService(4096, TenantRoot.filesOnly(root)).stat(StatRequest.newBuilder().setPath("/l").build());
    assertEquals(FileInfo.Type.SYMLINK, info.getType());
    assertEquals(tmp.toString(), info.getSymlinkTarget());
  }
}
