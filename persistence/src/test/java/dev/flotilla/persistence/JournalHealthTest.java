package dev.flotilla.persistence;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.Test;

class JournalHealthTest {

  static Config node(String jdbcUrl) {
    Config user = ConfigFactory.parseString("flotilla.persistence { jdbc-url = \"" + jdbcUrl + "\","
        + " journal-probe { interval = 100ms, timeout = 1s } }").withFallback(ConfigFactory.load("application-test"));
    return PersistenceSettings.forNode(Path.of("/var/lib/flotilla"), user).withFallback(user).resolve();
  }

  @Test
  void h2IsAlwaysAvailable() {
    try (JournalHealth h = JournalHealth.start(node(""))) {
      assertTrue(h.status().available());
      assertEquals(Optional.empty(), h.unavailable());
    }
  }

  @Test
  void aStoppedPostgresIsNoticedAtOnceWithItsAddressAndItsReturnToo() throws Exception {
    Path dir = TestPostgres.newDataDir();
    EmbeddedPostgresServer pg = EmbeddedPostgresServer.start(dir);
    int port = pg.port();
    try (JournalHealth h = JournalHealth.start(node(pg.jdbcUrl()))) {
      Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> h.status().available());
      var downs = new LinkedBlockingQueue<String>();
      Runnable unsubscribe = h.onDown(downs::add);
      assertTrue(downs.isEmpty(), "not called while available");

      pg.close();
      long stopped = System.nanoTime();
      String why = downs.poll(10, TimeUnit.SECONDS);
      long ms = (System.nanoTime() - stopped) / 1_000_000;
      // noticed while it shuts down ("the database system is shutting down") or after ("connection refused")
      assertTrue(why != null && why.startsWith("PostgreSQL at 127.0.0.1:" + port + ": ") && why.contains(", for "), why);
      assertFalse(h.status().available());
      Awaitility.await().atMost(Duration.ofSeconds(10))
          .until(() -> h.unavailable().orElse("").startsWith("PostgreSQL at 127.0.0.1:" + port + ": connection refused, for "));
      // a listener added while it is down hears at once
      var late = new LinkedBlockingQueue<String>();
      h.onDown(late::add).run();
      assertEquals(1, late.size());
      System.out.printf("journal probe: PostgreSQL stop noticed after %d ms%n", ms);

      pg = EmbeddedPostgresServer.start(dir, port);
      Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> h.status().available());
      assertEquals(Optional.empty(), h.unavailable());
      unsubscribe.run();
    } finally {
      pg.close();
      TestPostgres.deleteRecursively(dir);
    }
  }
}
