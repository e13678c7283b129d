package dev.flotilla.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A handle read back from disk is checked before the node acts on anything in it. */
class VmHandleTest {

  private static VmHandle handle(Path dir) {
    return new VmHandle("process", "sb-0123456789abcdef", 3, 1234, 99, dir, dir.resolve("agent.sock"), Map.of("k", "v"));
  }

  @Test
  void savedPrivateAndReadBack(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("sb-0123456789abcdef-3");
    VmHandle h = handle(dir);
    h.save();
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(dir.resolve(VmHandle.FILE_NAME))));
    assertEquals(h, VmHandle.load(dir));
  }

  @Test
  void theStateDirIsWhereTheHandleWasFoundNotWhatItSays(@TempDir Path tmp) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve("vm"));
    Path outside = Files.createDirectories(tmp.resolve("precious"));
    write(dir, "stateDir=" + outside, "agentSocket=" + dir.resolve("agent.sock"));
    assertEquals(dir, VmHandle.load(dir).stateDir());
  }

  @Test
  void corruptOrForeignValuesAreRefused(@TempDir Path tmp) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve("vm"));
    String sock = "agentSocket=" + dir.resolve("agent.sock");
    for (List<String> bad : List.of(
        List.of("sandboxId=../../etc", sock),
        List.of("sandboxId=SB_1", sock),
        List.of("incarnation=0", sock),
        List.of("pid=-5", sock),
        List.of("startTime=-1", sock),
        List.of("agentSocket=/run/other/agent.sock"),
        List.of("agentSocket=" + dir + "/../other/agent.sock"),
        List.of("agentSocket=relative/agent.sock"))) {
      write(dir, bad.toArray(String[]::new));
      assertThrows(IOException.class, () -> VmHandle.load(dir), bad.toString());
    }
    // a socket through a link planted in the state directory
    Files.createSymbolicLink(dir.resolve("l"), tmp);
    write(dir, "agentSocket=" + dir.resolve("l/agent.sock"));
    IOException e = assertThrows(IOException.class, () -> VmHandle.load(dir));
    assertTrue(e.getMessage().contains("symbolic link"), e.getMessage());
  }

  @Test
  void aSocketUnderTheRuntimeRootIsAllowedWhenConfigured(@TempDir Path tmp) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve("vm"));
    Path run = Files.createDirectories(tmp.resolve("run"));
    write(dir, "agentSocket=" + run.resolve("sb-1/agent.sock"));
    assertThrows(IOException.class, () -> VmHandle.load(dir));
    assertEquals(run.resolve("sb-1/agent.sock"), VmHandle.load(dir, run).agentSocket());
  }

  @Test
  void aHandleOthersCouldWriteOrAnotherUidOwnsIsNotTrusted(@TempDir Path tmp) throws Exception {
    Path dir = tmp.resolve("vm");
    handle(dir).save();
    Path file = dir.resolve(VmHandle.FILE_NAME);
    Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-rw-rw-"));
    assertThrows(IOException.class, () -> VmHandle.load(dir));
    Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-r--r--"));
    VmHandle.load(dir); // a handle from before they were 0600: readable by others, writable only by the node
    Files.setAttribute(file, "unix:uid", 12345);
    IOException e = assertThrows(IOException.class, () -> VmHandle.load(dir));
    assertTrue(e.getMessage().contains("owned by uid 12345"), e.getMessage());
    Files.delete(file);
    Path elsewhere = tmp.resolve("elsewhere");
    handle(elsewhere).save();
    Files.createSymbolicLink(file, elsewhere.resolve(VmHandle.FILE_NAME));
    assertThrows(IOException.class, () -> VmHandle.load(dir));
  }

  private static void write(Path dir, String... lines) throws IOException {
    StringBuilder s = new StringBuilder("driver=process\nsandboxId=sb-0123456789abcdef\nincarnation=3\npid=1\nstartTime=1\n");
    for (String l : lines) {
      String key = l.substring(0, l.indexOf('='));
      int at = s.indexOf(key + "=");
      if (at >= 0) s.delete(at, s.indexOf("\n", at) + 1);
      s.append(l).append('\n');
    }
    Files.deleteIfExists(dir.resolve(VmHandle.FILE_NAME));
    Files.writeString(dir.resolve(VmHandle.FILE_NAME), s);
  }
}
