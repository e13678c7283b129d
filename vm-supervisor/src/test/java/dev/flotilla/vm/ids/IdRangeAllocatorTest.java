package dev.flotilla.vm.ids;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class IdRangeAllocatorTest {
  @TempDir Path dir;

  private static final List<SubordinateIds.Delegation> THREE = List.of(new SubordinateIds.Delegation(1_000_000, 3 * 65536 + 100));

  @Test
  void liveSandboxesNeverShareARange() throws Exception {
    var a = new IdRangeAllocator(dir.resolve("ids"), THREE, n1());
    assertEquals(3, a.capacity());
    Set<Long> starts = new HashSet<>();
    for (String s : List.of("sb-a", "sb-b", "sb-c")) starts.add(a.acquire(s).hostStart());
    assertEquals(Set.of(1_000_000L, 1_065_536L, 1_131_072L), starts);
    var e = assertThrows(IdRangeAllocator.NoRangeException.class, () -> a.acquire("sb-d"));
    assertTrue(e.getMessage().contains("/etc/subuid"), e.getMessage());
  }

  @Test
  void aSandboxKeepsItsRangeAndAReleasedOneIsReused() throws Exception {
    var a = new IdRangeAllocator(dir.resolve("ids"), THREE, n1());
    long first = a.acquire("sb-a").hostStart();
    assertEquals(first, a.acquire("sb-a").hostStart());
    long second = a.acquire("sb-b").hostStart();
    assertNotEquals(first, second);
    a.release("sb-a");
    assertEquals(first, a.acquire("sb-c").hostStart());
  }

  @Test
  void theTableSurvivesARestartAndIsNodeOnly() throws Exception {
    Path file = dir.resolve("ids");
    var a = new IdRangeAllocator(file, THREE, n1());
    long held = a.acquire("sb-a").hostStart();
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(file)));
    var b = new IdRangeAllocator(file, THREE, n1());
    assertEquals(held, b.rangeOf("sb-a").orElseThrow().hostStart());
    assertNotEquals(held, b.acquire("sb-b").hostStart());
  }

  @Test
  void twoNodesOnOneHostNeverShareARange() throws Exception {
    Path file = dir.resolve("ids");
    var n1 = new IdRangeAllocator(file, THREE, n1());
    var n2 = new IdRangeAllocator(file, THREE, node("n2"));
    long a = n1.acquire("sb-a").hostStart();
    long b = n2.acquire("sb-a").hostStart(); // the same sandbox moved to another node on this host
    assertNotEquals(a, b, "each node's copy of a sandbox has its own range");
    assertEquals(java.util.Map.of("sb-a", a), n1.holders());
    n1.release("sb-a");
    assertEquals(b, n2.rangeOf("sb-a").orElseThrow().hostStart(), "n1's release leaves n2's range alone");
  }

  private Path n1() throws java.io.IOException {
    return node("n1");
  }

  private Path node(String name) throws java.io.IOException {
    return Files.createDirectories(dir.resolve(name));
  }

  @Test
  void aRangeOfANodeWhoseStateIsGoneIsGivenAgain() throws Exception {
    Path file = dir.resolve("ids");
    Path gone = node("gone");
    var old = new IdRangeAllocator(file, List.of(new SubordinateIds.Delegation(1_000_000, 65536)), gone);
    long held = old.acquire("sb-a").hostStart();
    var other = new IdRangeAllocator(file, List.of(new SubordinateIds.Delegation(1_000_000, 65536)), n1());
    assertThrows(IdRangeAllocator.NoRangeException.class, () -> other.acquire("sb-b"), "held while its node's state exists");
    Files.delete(gone);
    assertEquals(held, other.acquire("sb-b").hostStart(), "a thrown-away node holds nothing");
  }

  @Test
  void noDelegationMeansNoRangeWithAClearMessage() throws Exception {
    var a = new IdRangeAllocator(dir.resolve("ids"), List.of(), n1());
    var e = assertThrows(IdRangeAllocator.NoRangeException.class, () -> a.acquire("sb-a"));
    assertTrue(e.getMessage().contains("no subordinate id range"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> a.acquire("../etc"));
  }

  @Test
  void delegationsMustMatchInBothFiles() throws Exception {
    Files.writeString(dir.resolve("subuid"), "root:100000:65536\nroot:1000000:655360\nbob:5:5\n0:9000000:65536\n");
    Files.writeString(dir.resolve("subgid"), "root:100000:65536\nroot:2000000:655360\n0:9000000:131072\n");
    var d = SubordinateIds.of("root", "0", dir.resolve("subuid"), dir.resolve("subgid"));
    assertEquals(List.of(new SubordinateIds.Delegation(100000, 65536), new SubordinateIds.Delegation(9000000, 65536)), d);
  }
}
