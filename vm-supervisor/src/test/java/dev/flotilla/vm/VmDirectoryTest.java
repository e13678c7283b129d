package dev.flotilla.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class VmDirectoryTest {

  @Test
  void listsSavedHandlesAndToleratesWhatACrashLeaves(@TempDir Path root) throws Exception {
    Path good = root.resolve("a").resolve("3");
    new VmHandle("process", "a", 3, 1234, 99, good, good.resolve("agent.sock"), Map.of("cgroup.pids", "/x")).save();
    Path corrupt = Files.createDirectories(root.resolve("b").resolve("1"));
    Files.writeString(corrupt.resolve(VmHandle.FILE_NAME), "driver=process\nsandboxId=b\nincarnation=not-a-number\nagentSocket=/s\n");
    Path half = Files.createDirectories(root.resolve("c").resolve("1"));
    Files.writeString(half.resolve(VmHandle.FILE_NAME + ".tmp"), "driver=pro");
    Path missingKey = Files.createDirectories(root.resolve("d").resolve("2"));
    Files.writeString(missingKey.resolve(VmHandle.FILE_NAME), "driver=process\n");
    Files.createDirectories(root.resolve("e").resolve("1")); // never got a handle: not a VM

    List<VmDirectory.Entry> entries = new VmDirectory(root).list();
    assertEquals(List.of(good, corrupt, half, missingKey), entries.stream().map(VmDirectory.Entry::stateDir).toList());
    VmDirectory.Entry first = entries.get(0);
    assertTrue(first.readable());
    assertEquals(3, first.handle().incarnation());
    assertEquals(1234, first.handle().pid());
    assertEquals("/x", first.handle().extra().get("cgroup.pids"));
    for (VmDirectory.Entry e : entries.subList(1, 4)) {
      assertFalse(e.readable());
      assertNotNull(e.problem());
    }
    assertEquals(1, new VmDirectory(root).handles().size());
  }

  @Test
  void linksAreNeverStateDirectories(@TempDir Path tmp) throws Exception {
    Path root = Files.createDirectories(tmp.resolve("root"));
    Path elsewhere = tmp.resolve("elsewhere").resolve("x");
    new VmHandle("process", "a", 3, 1234, 99, elsewhere, elsewhere.resolve("agent.sock"), Map.of()).save();
    Files.createSymbolicLink(root.resolve("planted"), elsewhere);
    Path dir = root.resolve("real");
    new VmHandle("process", "b", 1, 1, 1, dir, dir.resolve("agent.sock"), Map.of()).save();
    Files.delete(dir.resolve(VmHandle.FILE_NAME));
    Files.createSymbolicLink(dir.resolve(VmHandle.FILE_NAME), elsewhere.resolve(VmHandle.FILE_NAME));

    List<VmDirectory.Entry> entries = new VmDirectory(root).list();
    assertEquals(List.of(dir), entries.stream().map(VmDirectory.Entry::stateDir).toList());
    assertFalse(entries.get(0).readable(), "a handle that is a link is not read");
  }

  @Test
  void aMissingRootIsEmpty(@TempDir Path root) {
    assertTrue(new VmDirectory(root.resolve("nothing-here")).list().isEmpty());
  }
}
