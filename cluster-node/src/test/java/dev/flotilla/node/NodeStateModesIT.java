package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.node.auth.TokenAuth;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** A real node on H2 keeps its data directory, journal files and token file to its own uid. */
class NodeStateModesIT {

  private Path dataDir;
  private TestNode node;

  @BeforeEach
  void dir() throws IOException {
    dataDir = TestNode.shortTempDir(); // 0711, as tests make it for sandboxes that run as another uid
  }

  @AfterEach
  void cleanUp() throws IOException {
    if (node != null) {
      node.close();
      node.killVms();
    }
    try (Stream<Path> s = Files.walk(dataDir)) {
      s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  private static String mode(Path p) throws IOException {
    return PosixFilePermissions.toString(Files.getPosixFilePermissions(p));
  }

  /** rwx------, or rwx-----x where the process driver's sandboxes run as their own uid and must traverse it. */
  private static void assertPrivateDir(Path p) throws IOException {
    String m = mode(p);
    assertTrue(m.equals("rwx------") || m.equals("rwx-----x"), p + " is " + m);
  }

  private List<Path> journalFiles() throws IOException {
    try (Stream<Path> s = Files.list(dataDir.resolve("journal"))) {
      return s.toList();
    }
  }

  @Test
  void theNodesStateIsPrivateAndIsTightenedAgainAtStart() throws Exception {
    node = new TestNode(dataDir, null).start();
    assertPrivateDir(dataDir);
    assertEquals("rwx------", mode(dataDir.resolve("journal")));
    assertFalse(journalFiles().isEmpty());
    for (Path f : journalFiles()) assertEquals("rw-------", mode(f), f.toString());
    assertEquals("rw-------", mode(dataDir.resolve(TokenAuth.DEFAULT_TOKEN_FILE)));
    node.close();
    node = null;

    // an older node (or an admin) left it all open: the next start closes it again
    Files.setPosixFilePermissions(dataDir, PosixFilePermissions.fromString("rwxr-xr-x"));
    Files.setPosixFilePermissions(dataDir.resolve("journal"), PosixFilePermissions.fromString("rwxr-xr-x"));
    for (Path f : journalFiles()) Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rw-r--r--"));
    node = new TestNode(dataDir, null).start();
    assertPrivateDir(dataDir);
    assertEquals("rwx------", mode(dataDir.resolve("journal")));
    for (Path f : journalFiles()) assertEquals("rw-------", mode(f), f.toString());
  }

  @Test
  void aTokenFileOthersCanReadStopsTheNodeWithTheFix() throws Exception {
    Path token = dataDir.resolve(TokenAuth.DEFAULT_TOKEN_FILE);
    Files.writeString(token, "some-token-that-others-could-read\n");
    Files.setPosixFilePermissions(token, PosixFilePermissions.fromString("rw-r--r--"));
    TestNode n = new TestNode(dataDir, null);
    IOException e = assertThrows(IOException.class, n::start);
    assertTrue(e.getMessage().contains("chmod 600 " + token), e.getMessage());
    assertEquals("rw-r--r--", mode(token), "refused, not silently fixed: the token may have been copied");

    Files.setPosixFilePermissions(token, PosixFilePermissions.fromString("rw-------"));
    node = n.start();
    assertEquals("some-token-that-others-could-read", node.defaultToken());
  }
}
