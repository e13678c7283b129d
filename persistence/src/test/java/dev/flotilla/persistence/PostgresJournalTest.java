package dev.flotilla.persistence;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PostgresJournalTest {
  @TempDir Path nodeDataDir;

  @Test
  void eventsPersistedThroughKryoReplayAfterActorSystemRestartOnEmbeddedPostgres() throws Exception {
    try (TestPostgres pg = TestPostgres.start()) {
      Config base =
          ConfigFactory.load("application-test")
              .withValue("flotilla.persistence.jdbc-url", ConfigValueFactory.fromAnyRef(pg.server.jdbcUrl()))
              .withValue("flotilla.persistence.user", ConfigValueFactory.fromAnyRef(pg.server.user()));
      Config node = PersistenceSettings.forNode(nodeDataDir, base).withFallback(base).resolve();
      assertEquals(PersistenceSettings.Backend.POSTGRES, PersistenceSettings.backend(node));
      assertEquals("slick.jdbc.PostgresProfile$", node.getString(PersistenceSettings.SHARED_DB_PATH + ".profile"));

      JournalReplay.run(node, "pg-journal");
    }
  }
}
