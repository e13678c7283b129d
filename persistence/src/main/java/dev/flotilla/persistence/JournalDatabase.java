package dev.flotilla.persistence;

import java.sql.Connection;
import java.sql.SQLException;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.persistence.jdbc.db.SlickExtension;
import org.apache.pekko.persistence.jdbc.db.SlickExtensionImpl;
import slick.jdbc.JdbcDataSource;

/**
 * Connections from the journal's own pool (the shared slick database {@value PersistenceSettings#SHARED_DB},
 * HikariCP, {@code flotilla.persistence.pool-size} connections), for node state that belongs
 * next to the journal (the shared image store). No second pool: a caller holds a connection only
 * as long as one call and closes it, which returns it to the pool.
 */
public final class JournalDatabase {
  private final JdbcDataSource source;
  private final PersistenceSettings.Backend backend;

  private JournalDatabase(JdbcDataSource source, PersistenceSettings.Backend backend) {
    this.source = source;
    this.backend = backend;
  }

  /** The pool the journal plugin of {@code system} uses (started with it, or now). */
  public static JournalDatabase of(ActorSystem<?> system) {
    SlickExtensionImpl slick = (SlickExtensionImpl) SlickExtension.get(Adapter.toClassic(system));
    JdbcDataSource source = slick.database(system.settings().config().getConfig("jdbc-journal")).database().source();
    return new JournalDatabase(source, PersistenceSettings.backend(system.settings().config()));
  }

  public PersistenceSettings.Backend backend() {
    return backend;
  }

  /** A pooled connection; close it to give it back. */
  public Connection open() throws SQLException {
    return source.createConnection();
  }
}
