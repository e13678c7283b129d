package dev.flotilla.persistence;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Optional;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class EmbeddedJournalFilesTest {

  private static Config node(Path dataDir, String userConfig) {
    Config user = ConfigFactory.parseString(userConfig).withFallback(ConfigFactory.load("application-test"));
    return PersistenceSettings.forNode(dataDir, user).withFallback(user).resolve();
  }

  private static String mode(Path p) throws Exception {
    return PosixFilePermissions.toString(Files.getPosixFilePermissions(p));
  }

  @Test
  void theJournalIsCreatedPrivateAndItsFilesAreKeptSo(@TempDir Path dataDir) throws Exception {
    Config c = node(dataDir, "flotilla.persistence.jdbc-url = \"\"");
    Path journal = dataDir.resolve("journal");
    assertEquals(Optional.of(journal), EmbeddedJournalFiles.directory(c));

    assertTrue(EmbeddedJournalFiles.secure(c).isEmpty(), "created private: nothing to tighten");
    assertEquals("rwx------", mode(journal));
    PersistenceSettings.verifyReachable(c); // H2 creates its file with the umask's mode
    List<String> changed = EmbeddedJournalFiles.secure(c);
    try (Stream<Path> files = Files.list(journal)) {
      List<Path> all = files.toList();
      assertTrue(all.stream().anyMatch(p -> p.getFileName().toString().endsWith(".mv.db")), all.toString());
      for (Path f : all) assertEquals("rw-------", mode(f), f.toString());
    }
    assertTrue(changed.stream().allMatch(s -> s.contains(" was ")), changed.toString());
  }

  @Test
  void anOpenJournalIsTightenedAndLinksAreNotFollowed(@TempDir Path dataDir) throws Exception {
    Config c = node(dataDir, "flotilla.persistence.jdbc-url = \"\"");
    Path journal = Files.createDirectories(dataDir.resolve("journal"));
    Files.setPosixFilePermissions(journal, PosixFilePermissions.fromString("rwxr-xr-x"));
    Path db = Files.writeString(journal.resolve("flotilla.mv.db"), "x");
    Files.setPosixFilePermissions(db, PosixFilePermissions.fromString("rw-r--r--"));
    Path outside = Files.writeString(dataDir.resolve("outside"), "y");
    Files.setPosixFilePermissions(outside, PosixFilePermissions.fromString("rw-r--r--"));
    Files.createSymbolicLink(journal.resolve("link"), outside);

    List<String> changed = EmbeddedJournalFiles.secure(c);

    assertEquals("rwx------", mode(journal));
    assertEquals("rw-------", mode(db));
    assertEquals("rw-r--r--", mode(outside), "a link's target is not the journal's");
    assertEquals(2, changed.size(), changed.toString());
  }

  @Test
  void postgresHasNoFilesHere(@TempDir Path dataDir) throws Exception {
    Config c = node(dataDir, "flotilla.persistence.jdbc-url = \"jdbc:postgresql://db:5432/f\"");
    assertEquals(Optional.empty(), EmbeddedJournalFiles.directory(c));
    assertTrue(EmbeddedJournalFiles.secure(c).isEmpty());
    assertTrue(Files.notExists(dataDir.resolve("journal")));
  }
}
