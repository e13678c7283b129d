package dev.flotilla.persistence;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigValueFactory;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import slick.jdbc.JdbcBackend;

/**
 * A journal writer that stops between its write and its commit (its node frozen) must not hold
 * the row: the sandbox's next owner writes the same key (its next sequence number) and must get
 * through, and the frozen write must never commit. Uses the journal's own connection pool, as
 * configured for a node, against a real PostgreSQL.
 */
class PostgresFrozenWriterTest {
  @TempDir Path nodeDataDir;

  @Test
  void aWriterFrozenInsideItsTransactionLosesItsRowAndTheNextOwnerWrites() throws Exception {
    try (TestPostgres pg = TestPostgres.start()) {
      Config base = ConfigFactory.load("application-test")
          .withValue("flotilla.persistence.jdbc-url", ConfigValueFactory.fromAnyRef(pg.server.jdbcUrl()))
          .withValue("flotilla.persistence.user", ConfigValueFactory.fromAnyRef(pg.server.user()))
          .withValue("flotilla.persistence.idle-in-transaction-timeout", ConfigValueFactory.fromAnyRef("1s"));
      Config node = PersistenceSettings.forNode(nodeDataDir, base).withFallback(base).resolve();
      Properties props = new Properties();
      props.setProperty("user", pg.server.user());
      try (Connection owner = DriverManager.getConnection(pg.server.jdbcUrl(), props); Statement s = owner.createStatement()) {
        s.execute("CREATE TABLE journal_like (persistence_id text, seq bigint, writer text, PRIMARY KEY (persistence_id, seq))");
      }

      JdbcBackend.JdbcDatabaseDef db = slick.jdbc.JdbcBackend$.MODULE$.Database().forConfig("db",
          node.getConfig(PersistenceSettings.SHARED_DB_PATH), null, getClass().getClassLoader());
      try {
        // the frozen node: its write is in, its commit never comes
        Connection frozen = db.source().createConnection();
        frozen.setAutoCommit(false);
        try (Statement s = frozen.createStatement()) {
          s.executeUpdate("INSERT INTO journal_like VALUES ('Sandbox|sb-1', 6, 'frozen')");
        }

        // the new owner writes the same sequence number; without the timeout it waits for the
        // frozen one for as long as it stays frozen (here: until its 30 s statement timeout)
        try (Connection next = DriverManager.getConnection(pg.server.jdbcUrl(), props); Statement s = next.createStatement()) {
          s.execute("SET statement_timeout = 30000");
          s.executeUpdate("INSERT INTO journal_like VALUES ('Sandbox|sb-1', 6, 'next owner')");
          try (var rs = s.executeQuery("SELECT writer FROM journal_like WHERE persistence_id = 'Sandbox|sb-1' AND seq = 6")) {
            rs.next();
            assertEquals("next owner", rs.getString(1));
          }
        }
        // the frozen node, thawed, cannot commit its stale write
        assertThrows(SQLException.class, frozen::commit);
        frozen.close();
      } finally {
        db.close();
      }
    }
  }
}
