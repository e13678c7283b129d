package dev.flotilla.persistence;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class PersistenceSettingsTest {
  private static final String DB = PersistenceSettings.SHARED_DB_PATH + ".db.";

  private static Config node(String userConfig) {
    Config user = ConfigFactory.parseString(userConfig).withFallback(ConfigFactory.load("application-test"));
    return PersistenceSettings.forNode(Path.of("/var/lib/flotilla"), user).withFallback(user).resolve();
  }

  @Test
  void defaultsToH2FileInDataDirWithOneSharedPool() {
    Config c = node("flotilla.persistence.jdbc-url = \"\"");
    assertEquals("jdbc:h2:file:/var/lib/flotilla/journal/flotilla;DB_CLOSE_ON_EXIT=FALSE;TRACE_LEVEL_FILE=4;WRITE_DELAY=0", c.getString(DB + "url"));
    assertEquals("org.h2.Driver", c.getString(DB + "driver"));
    assertEquals("slick.jdbc.H2Profile$", c.getString(PersistenceSettings.SHARED_DB_PATH + ".profile"));
    assertEquals(4, c.getInt(DB + "maxConnections"));
    assertEquals(4, c.getInt(DB + "numThreads"));
    for (String plugin : new String[] {"jdbc-journal", "jdbc-snapshot-store", "jdbc-read-journal", "jdbc-durable-state-store"}) {
      assertEquals("flotilla", c.getString(plugin + ".use-shared-db"), plugin);
    }
    assertEquals("jdbc-journal", c.getString("pekko.persistence.journal.plugin"));
    assertEquals("jdbc-snapshot-store", c.getString("pekko.persistence.snapshot-store.plugin"));
  }

  @Test
  void postgresWhenUrlConfigured() {
    Config c =
        node(
            "flotilla.persistence { jdbc-url = \"jdbc:postgresql://db:5432/flotilla\", user = fl, password = secret, pool-size = 6 }");
    assertEquals(PersistenceSettings.Backend.POSTGRES, PersistenceSettings.backend(c));
    assertEquals("jdbc:postgresql://db:5432/flotilla", c.getString(DB + "url"));
    assertEquals("fl", c.getString(DB + "user"));
    assertEquals("secret", c.getString(DB + "password"));
    assertEquals("org.postgresql.Driver", c.getString(DB + "driver"));
    assertEquals("slick.jdbc.PostgresProfile$", c.getString(PersistenceSettings.SHARED_DB_PATH + ".profile"));
    assertEquals(6, c.getInt(DB + "maxConnections"));
  }

  @Test
  void rejectsOtherDatabases() {
    var ex = assertThrows(IllegalArgumentException.class, () -> node("flotilla.persistence.jdbc-url = \"jdbc:mysql://x/y\""));
    assertTrue(ex.getMessage().contains("FLOTILLA_JDBC_URL"), ex.getMessage());
  }

  @Test
  void unreachablePostgresFailsFastWithAClearMessage() throws Exception {
    int closedPort;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      closedPort = s.getLocalPort();
    }
    Config c =
        node("flotilla.persistence { jdbc-url = \"jdbc:postgresql://127.0.0.1:" + closedPort + "/flotilla\", connection-timeout = 3s }");
    long start = System.nanoTime();
    var ex = assertThrows(IllegalStateException.class, () -> PersistenceSettings.verifyReachable(c));
    assertTrue(Duration.ofNanos(System.nanoTime() - start).compareTo(Duration.ofSeconds(10)) < 0, "fails fast");
    assertTrue(ex.getMessage().contains("unreachable") && ex.getMessage().contains("127.0.0.1:" + closedPort), ex.getMessage());
    assertTrue(ex.getMessage().contains("FLOTILLA_JDBC_URL"), ex.getMessage());
  }
}
