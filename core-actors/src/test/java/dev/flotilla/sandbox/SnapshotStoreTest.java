package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The snapshot store's names, and what it removes: only its own directories, never through a link. */
class SnapshotStoreTest {
  static final String ID = "sb-0123456789abcdef";

  @Test
  void namesAreTheSandboxsAndTheRootIsNodeOnly(@TempDir Path tmp) throws IOException {
    SnapshotStore store = new SnapshotStore(tmp.resolve("snaps"));
    Path dir = store.dirFor(ID, 3);
    assertEquals(tmp.resolve("snaps").resolve(ID + "-3"), dir);
    assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(store.root())));
    Path fork = store.forkDirFor(ID);
    assertTrue(fork.getFileName().toString().matches(ID + "-fork-[0-9a-f]{8}"), fork.toString());
    assertThrows(IOException.class, () -> store.dirFor("../etc", 1));
    assertThrows(IOException.class, () -> store.forkDirFor("sb-x/../../y"));
  }

  @Test
  void listsItsOwnDirectoriesOnlyAndFindsOnlyWhatIsThere(@TempDir Path tmp) throws IOException {
    SnapshotStore store = new SnapshotStore(tmp.resolve("snaps"));
    Files.createDirectories(store.dirFor(ID, 2));
    Path fork = Files.createDirectories(store.forkDirFor(ID));
    Files.createDirectories(store.root().resolve("not-a-snapshot"));
    Files.writeString(store.root().resolve(ID + "-9"), "a file, not a directory");
    List<SnapshotStore.Entry> listed = store.list().stream().sorted(java.util.Comparator.comparing(e -> e.dir().toString())).toList();
    assertEquals(List.of(store.root().resolve(ID + "-2"), fork), listed.stream().map(SnapshotStore.Entry::dir).toList());
    assertEquals(List.of(false, true), listed.stream().map(SnapshotStore.Entry::fork).toList());
    assertTrue(listed.stream().allMatch(e -> e.sandboxId().equals(ID)));
    assertTrue(store.find(store.root().resolve(ID + "-2").toString()).isPresent());
    assertTrue(store.find(store.root().resolve(ID + "-5").toString()).isEmpty(), "not on this node");
    assertTrue(store.find(tmp.toString()).isEmpty(), "not the store's");
    assertTrue(store.find(null).isEmpty());
  }

  @Test
  void discardRemovesItsDirectoryWithoutFollowingLinksAndNothingOutsideTheStore(@TempDir Path tmp) throws IOException {
    SnapshotStore store = new SnapshotStore(tmp.resolve("snaps"));
    Path precious = Files.createDirectories(tmp.resolve("precious"));
    Files.writeString(precious.resolve("keep"), "x");
    Path dir = Files.createDirectories(store.dirFor(ID, 1));
    Files.writeString(dir.resolve("state"), "saved");
    Files.createSymbolicLink(dir.resolve("link"), precious);
    store.discard(dir.toString());
    assertFalse(Files.exists(dir));
    assertTrue(Files.exists(precious.resolve("keep")), "the link was removed, not followed");
    store.discard(dir.toString()); // gone already: fine
    assertThrows(IOException.class, () -> store.discard(precious.toString()));
    assertThrows(IOException.class, () -> store.discard(store.root().resolve("a/../../precious").toString()));
    assertTrue(Files.exists(precious.resolve("keep")));
  }

  @Test
  void theReaperKeepsOnlyTheSnapshotItsSandboxRecords() {
    Path dir = Path.of("/s/" + ID + "-2");
    assertNull(VmReaper.snapshotReason(new SandboxEntity.Inspection(true, Phase.SUSPENDED, 2, "", dir.toString()), dir));
    assertNull(VmReaper.snapshotReason(new SandboxEntity.Inspection(true, Phase.CREATING, 3, "", dir.toString()), dir),
        "being resumed from it");
    assertEquals("does not exist", VmReaper.snapshotReason(new SandboxEntity.Inspection(false, Phase.DELETED, 0, "", null), dir));
    assertTrue(VmReaper.snapshotReason(new SandboxEntity.Inspection(true, Phase.RUNNING, 3, "h", null), dir)
        .startsWith("does not resume from it"));
    assertTrue(VmReaper.snapshotReason(new SandboxEntity.Inspection(true, Phase.SUSPENDED, 4, "", "/s/" + ID + "-4"), dir) != null,
        "an older suspend's leftover");
  }
}
