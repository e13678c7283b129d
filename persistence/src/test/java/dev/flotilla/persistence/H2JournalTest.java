package dev.flotilla.persistence;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class H2JournalTest {
  @TempDir Path dataDir;

  @Test
  void eventsPersistedThroughKryoReplayAfterActorSystemRestartOnSameDataDir() throws Exception {
    Config base = ConfigFactory.load("application-test");
    Config node = PersistenceSettings.forNode(dataDir, base).withFallback(base).resolve();
    assertEquals(PersistenceSettings.Backend.H2, PersistenceSettings.backend(node));
    assertEquals("jdbc-journal", node.getString("pekko.persistence.journal.plugin"));
    assertEquals("slick.jdbc.H2Profile$", node.getString(PersistenceSettings.SHARED_DB_PATH + ".profile"));

    JournalReplay.run(node, "h2-journal");

    assertTrue(Files.exists(dataDir.resolve("journal/flotilla.mv.db")), "H2 file lives in the data dir");
  }
}
