package dev.flotilla.persistence;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import com.typesafe.config.ConfigParseOptions;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;

/**
 * Journal and snapshot store configuration for a node.
 *
 * <p>Embedded default: an H2 file database in {@code <dataDir>/journal}. When
 * {@code flotilla.persistence.jdbc-url} (env {@code FLOTILLA_JDBC_URL}) is set, PostgreSQL with
 * {@code flotilla.persistence.user}/{@code password} (env {@code FLOTILLA_JDBC_USER} /
 * {@code FLOTILLA_JDBC_PASSWORD}).
 *
 * <p>Use: {@code ActorSystem.create(guardian, name, PersistenceSettings.forNode(dir, cfg).withFallback(cfg))}
 * then {@link SchemaBootstrap#ensure(org.apache.pekko.actor.typed.ActorSystem)} before the first
 * persistent entity starts.
 */
public final class PersistenceSettings {
  /** Name of the shared slick database all jdbc plugins use. */
  public static final String SHARED_DB = "flotilla";
  /** The query plugin that reads the journal back (a sandbox's history). */
  public static final String READ_JOURNAL = "jdbc-read-journal";
  public static final String SHARED_DB_PATH = "pekko-persistence-jdbc.shared-databases." + SHARED_DB;
  static final String WIRING_RESOURCE = "flotilla-persistence-jdbc.conf";

  /** Which database a configuration points at. */
  public enum Backend {
    H2,
    POSTGRES
  }

  private PersistenceSettings() {}

  /**
   * The configuration overrides that wire the journal, snapshot store, read journal and durable
   * state store to one database. Layer them over the node's config: {@code forNode(..).withFallback(config)}.
   *
   * @param dataDir the node's data directory (holds the H2 files in embedded mode)
   * @param userConfig the node's config; read for {@code flotilla.persistence.*}
   */
  public static Config forNode(Path dataDir, Config userConfig) {
    Config p =
        userConfig.withFallback(ConfigFactory.defaultReference()).resolve().getConfig("flotilla.persistence");
    String url = p.getString("jdbc-url").trim();
    int pool = p.getInt("pool-size");
    if (pool < 1) {
      throw new IllegalArgumentException("flotilla.persistence.pool-size must be >= 1, is " + pool);
    }
    Map<String, Object> db = new HashMap<>();
    String profile;
    if (url.isEmpty()) {
      Path dir = dataDir.toAbsolutePath().normalize().resolve(p.getString("h2-directory"));
      // DB_CLOSE_ON_EXIT=FALSE: Pekko's coordinated shutdown runs in a JVM shutdown hook and must
      // still be able to write; the pool closing the last connection closes the database.
      // TRACE_LEVEL_FILE=4: H2's trace goes to SLF4J, not to a flotilla.trace.db that H2 would
      // create at any time with the umask's mode (the journal's files are kept 0600).
      // WRITE_DELAY=0: every commit is written to the file before it returns (MVStore.commit at
      // the end of each transaction), so an acknowledged create or delete survives a kill of the
      // node; H2's default writes commits in the background up to a second later and lost them.
      db.put("url", "jdbc:h2:file:" + dir.resolve("flotilla") + ";DB_CLOSE_ON_EXIT=FALSE;TRACE_LEVEL_FILE=4;WRITE_DELAY=0");
      db.put("user", "sa");
      db.put("password", "");
      db.put("driver", "org.h2.Driver");
      profile = "slick.jdbc.H2Profile$";
    } else if (url.startsWith("jdbc:postgresql:")) {
      db.put("url", url);
      db.put("user", p.getString("user"));
      db.put("password", p.getString("password"));
      db.put("driver", "org.postgresql.Driver");
      String init = idleInTransactionSql(p.getDuration("idle-in-transaction-timeout"));
      if (init != null) db.put("connectionInitSql", init);
      profile = "slick.jdbc.PostgresProfile$";
    } else {
      throw new IllegalArgumentException(
          "flotilla.persistence.jdbc-url (FLOTILLA_JDBC_URL) must be empty (embedded H2) or a"
              + " jdbc:postgresql:// URL, is: " + url);
    }
    db.put("numThreads", pool);
    db.put("maxConnections", pool);
    db.put("minConnections", Math.min(2, pool));
    db.put("connectionTimeout", p.getDuration("connection-timeout").toMillis());

    Config dynamic =
        ConfigFactory.parseMap(
            Map.of(SHARED_DB_PATH + ".profile", profile), "flotilla.persistence (PersistenceSettings)")
            .withFallback(ConfigFactory.parseMap(prefix(SHARED_DB_PATH + ".db.", db), "flotilla.persistence (PersistenceSettings)"));
    Config wiring =
        ConfigFactory.parseResources(
            PersistenceSettings.class.getClassLoader(),
            WIRING_RESOURCE,
            ConfigParseOptions.defaults().setAllowMissing(false));
    return dynamic.withFallback(wiring);
  }

  /**
   * What every journal connection to PostgreSQL runs first: its session ends (and its transaction
   * rolls back) once it has been idle inside a transaction for {@code timeout}; null for none.
   */
  static String idleInTransactionSql(java.time.Duration timeout) {
    if (timeout.isNegative()) {
      throw new IllegalArgumentException("flotilla.persistence.idle-in-transaction-timeout must not be negative, is " + timeout);
    }
    if (timeout.isZero()) return null;
    return "SET idle_in_transaction_session_timeout = " + Math.max(1, timeout.toMillis());
  }

  private static Map<String, Object> prefix(String prefix, Map<String, Object> values) {
    Map<String, Object> out = new HashMap<>();
    values.forEach((k, v) -> out.put(prefix + k, v));
    return out;
  }

  /** The backend a (system) config produced by {@link #forNode} points at. */
  public static Backend backend(Config config) {
    String url = config.getString(SHARED_DB_PATH + ".db.url");
    return url.startsWith("jdbc:postgresql:") ? Backend.POSTGRES : Backend.H2;
  }

  /**
   * Opens and closes one plain JDBC connection to the configured database, failing with a message
   * that says what to fix. Cheap; call it before starting the cluster to fail fast.
   */
  public static void verifyReachable(Config config) {
    Config db = config.getConfig(SHARED_DB_PATH + ".db");
    String url = db.getString("url");
    Duration timeout = Duration.ofMillis(db.getLong("connectionTimeout"));
    Properties props = new Properties();
    props.setProperty("user", db.getString("user"));
    props.setProperty("password", db.getString("password"));
    if (url.startsWith("jdbc:postgresql:")) {
      String seconds = String.valueOf(Math.max(1, timeout.toSeconds()));
      props.setProperty("connectTimeout", seconds);
      props.setProperty("loginTimeout", seconds);
    }
    try (Connection c = DriverManager.getConnection(url, props)) {
      if (!c.isValid((int) Math.max(1, timeout.toSeconds()))) {
        throw new IllegalStateException("journal database at " + url + " does not answer");
      }
    } catch (SQLException e) {
      throw new IllegalStateException(
          backend(config) == Backend.POSTGRES
              ? "PostgreSQL journal database unreachable at " + url + " as user '"
                  + db.getString("user") + "': " + e.getMessage()
                  + ". Check that it is running, or fix flotilla.persistence.jdbc-url / user /"
                  + " password (env FLOTILLA_JDBC_URL, FLOTILLA_JDBC_USER, FLOTILLA_JDBC_PASSWORD);"
                  + " unset the URL to use the embedded H2 journal."
              : "Embedded H2 journal at " + url + " cannot be opened: " + e.getMessage()
                  + ". Is another node process using the same data directory?",
          e);
    }
  }
}
