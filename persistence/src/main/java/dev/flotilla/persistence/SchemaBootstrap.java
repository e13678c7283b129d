package dev.flotilla.persistence;

import com.typesafe.config.Config;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.persistence.Persistence;
import org.apache.pekko.persistence.jdbc.testkit.javadsl.SchemaUtils;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Creates the journal, tag, snapshot and durable-state tables if they are missing. Safe to run on
 * every start and from several nodes at once.
 *
 * <p>Uses pekko-persistence-jdbc's own DDL ({@code SchemaUtils.createIfNotExists}, which applies
 * the bundled script statement by statement and only logs failures such as "index exists"); so
 * afterwards it checks that the tables really are there and fails with a clear message if not.
 * Finally it loads the Persistence extension, which starts the journal and snapshot plugins
 * listed as auto-start in {@code flotilla-persistence-jdbc.conf}.
 */
public final class SchemaBootstrap {
  private static final Logger log = LoggerFactory.getLogger(SchemaBootstrap.class);
  static final List<String> TABLES = List.of("event_journal", "event_tag", "snapshot", "durable_state");

  private SchemaBootstrap() {}

  /** Blocking; run once at node start before persistent entities start. */
  public static void ensure(ActorSystem<?> system) {
    ensure(system, Duration.ofSeconds(60));
  }

  public static void ensure(ActorSystem<?> system, Duration timeout) {
    Config config = system.settings().config();
    PersistenceSettings.verifyReachable(config);
    long start = System.nanoTime();
    try {
      SchemaUtils.createIfNotExists(system).toCompletableFuture().get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while creating the journal schema", e);
    } catch (ExecutionException | TimeoutException e) {
      throw new IllegalStateException("creating the journal schema failed: " + e, e);
    }
    verifyTables(config);
    // Loading the extension starts the auto-start journal and snapshot plugins now, so the first
    // persistent entity does not pay for plugin and pool start-up.
    Persistence.get(Adapter.toClassic(system));
    log.info(
        "Journal schema ready ({}) in {} ms",
        PersistenceSettings.backend(config),
        (System.nanoTime() - start) / 1_000_000);
  }

  private static void verifyTables(Config config) {
    Config db = config.getConfig(PersistenceSettings.SHARED_DB_PATH + ".db");
    String url = db.getString("url");
    try (Connection c = DriverManager.getConnection(url, db.getString("user"), db.getString("password"));
        Statement s = c.createStatement()) {
      for (String table : TABLES) {
        // Quoted: the H2 schema uses quoted lower-case names; PostgreSQL folds unquoted to lower.
        try {
          s.executeQuery("SELECT 1 FROM \"" + table + "\" WHERE 1 = 0").close();
        } catch (SQLException e) {
          throw new IllegalStateException(
              "journal table " + table + " is missing after schema bootstrap at " + url
                  + " (may the configured user create tables?): " + e.getMessage(),
              e);
        }
      }
    } catch (SQLException e) {
      throw new IllegalStateException("cannot check the journal schema at " + url + ": " + e.getMessage(), e);
    }
  }
}
