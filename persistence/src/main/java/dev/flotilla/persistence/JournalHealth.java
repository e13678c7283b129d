package dev.flotilla.persistence;

import com.typesafe.config.Config;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.time.Instant;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Whether the node's journal database answers, for callers that must not wait for the journal's
 * own timeouts to find out (the API turns requests away at once while it is down).
 *
 * <p>PostgreSQL is probed with {@code SELECT 1} every {@code flotilla.persistence.journal-probe.interval}
 * on one connection of its own, with connect, login and socket timeouts of
 * {@code journal-probe.timeout}: a probe never takes a connection from the journal's pool, and a
 * dead or hung server is found within about interval + timeout. A failure on the kept
 * connection is retried at once on a new one, so a connection dropped by a proxy is not an
 * outage. The embedded H2 journal lives in the node's own process: always available, no thread.
 *
 * <p>Why not the journal's own failures: pekko-persistence-jdbc reports them to the entity that
 * wrote (and its circuit breaker keeps its state to itself), so they cannot tell a caller of
 * another entity in time. Its breaker and the pool's timeouts are set short in
 * {@code flotilla-persistence-jdbc.conf} instead.
 */
public final class JournalHealth implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(JournalHealth.class);

  /**
   * @param since when the journal became (un)available; the probe's start for the first status
   * @param problem why it is unavailable; empty while available
   */
  public record Status(boolean available, Instant since, String problem) {}

  private final String url;
  private final String what;
  private final Properties props;
  private final int timeoutSeconds;
  private final ScheduledExecutorService prober;
  private final Set<Consumer<String>> listeners = ConcurrentHashMap.newKeySet();
  private volatile Status status = new Status(true, Instant.now(), "");
  private Connection connection; // probe thread only

  private JournalHealth(String url, String user, String password, Duration timeout, Duration interval) {
    this.url = url;
    this.what = url == null ? "" : "PostgreSQL at " + hostPort(url);
    this.timeoutSeconds = (int) Math.max(1, (timeout.toMillis() + 999) / 1000);
    this.props = new Properties();
    props.setProperty("user", user == null ? "" : user);
    props.setProperty("password", password == null ? "" : password);
    props.setProperty("connectTimeout", String.valueOf(timeoutSeconds));
    props.setProperty("loginTimeout", String.valueOf(timeoutSeconds));
    props.setProperty("socketTimeout", String.valueOf(timeoutSeconds));
    props.setProperty("ApplicationName", "flotilla-journal-probe");
    if (url == null) {
      prober = null;
    } else {
      prober = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "flotilla-journal-probe");
        t.setDaemon(true);
        return t;
      });
      prober.scheduleWithFixedDelay(this::probe, 0, interval.toMillis(), TimeUnit.MILLISECONDS);
    }
  }

  /**
   * Starts probing the journal a node's configuration (from {@link PersistenceSettings#forNode})
   * points at: PostgreSQL is probed, H2 is always available.
   */
  public static JournalHealth start(Config systemConfig) {
    if (PersistenceSettings.backend(systemConfig) != PersistenceSettings.Backend.POSTGRES) return alwaysAvailable();
    Config db = systemConfig.getConfig(PersistenceSettings.SHARED_DB_PATH + ".db");
    Config probe = systemConfig.getConfig("flotilla.persistence.journal-probe");
    return new JournalHealth(db.getString("url"), db.getString("user"), db.getString("password"),
        probe.getDuration("timeout"), probe.getDuration("interval"));
  }

  /** A journal in this process (H2): nothing to probe. */
  public static JournalHealth alwaysAvailable() {
    return new JournalHealth(null, null, null, Duration.ofSeconds(1), Duration.ofSeconds(1));
  }

  public Status status() {
    return status;
  }

  /**
   * What is wrong with the journal and for how long, for a user, e.g. {@code PostgreSQL at
   * db:5432: connection refused, for 3.2 s}; empty while it is available.
   */
  public Optional<String> unavailable() {
    Status s = status;
    if (s.available()) return Optional.empty();
    long ms = Math.max(0, Duration.between(s.since(), Instant.now()).toMillis());
    return Optional.of(s.problem() + ", for " + String.format(java.util.Locale.ROOT, "%.1f s", ms / 1000.0));
  }

  /**
   * Calls {@code onDown} with {@link #unavailable()}'s text when the journal is found unavailable:
   * at once (on the caller's thread) if it is now, else on the probe thread when it goes down.
   * Until the returned handle is run, which removes it; it may be called more than once.
   */
  public Runnable onDown(Consumer<String> onDown) {
    listeners.add(onDown);
    unavailable().ifPresent(onDown);
    return () -> listeners.remove(onDown);
  }

  /** One probe, and the status change it shows. Probe thread only (tests call it directly). */
  void probe() {
    try {
      try {
        check();
      } catch (SQLException first) {
        if (!closeConnection()) throw first; // it could not even connect: no point in a second try
        check();
      }
      up();
    } catch (SQLException | RuntimeException e) {
      closeConnection();
      down(what + ": " + reason(e));
    }
  }

  private void check() throws SQLException {
    if (connection == null) connection = DriverManager.getConnection(url, props);
    try (Statement s = connection.createStatement()) {
      s.setQueryTimeout(timeoutSeconds);
      s.execute("SELECT 1");
    }
  }

  /** @return whether there was a connection to close */
  private boolean closeConnection() {
    if (connection == null) return false;
    try {
      connection.close();
    } catch (SQLException ignored) {
      // broken anyway
    }
    connection = null;
    return true;
  }

  private void up() {
    Status was = status;
    if (was.available()) return;
    status = new Status(true, Instant.now(), "");
    log.info("journal available again ({}), after {} ms unavailable", what,
        Duration.between(was.since(), status.since()).toMillis());
  }

  private void down(String problem) {
    Status was = status;
    if (!was.available()) {
      if (!was.problem().equals(problem)) status = new Status(false, was.since(), problem);
      return;
    }
    status = new Status(false, Instant.now(), problem);
    log.warn("journal unavailable: {}; sandbox changes are refused until it is back", problem);
    String why = unavailable().orElse(problem);
    for (Consumer<String> l : listeners) {
      try {
        l.accept(why);
      } catch (RuntimeException e) {
        log.warn("journal-down listener failed", e);
      }
    }
  }

  /** The root cause in a few words: "connection refused", "connect timed out", or the server's message. */
  static String reason(Throwable e) {
    Throwable t = e;
    while (t.getCause() != null && t.getCause() != t) {
      t = t.getCause();
      if (t instanceof java.io.IOException) {
        String m = t.getMessage();
        return m == null || m.isEmpty() ? t.getClass().getSimpleName() : m.toLowerCase(java.util.Locale.ROOT);
      }
    }
    String m = String.valueOf(e.getMessage());
    int dot = m.indexOf(". ");
    return dot > 0 ? m.substring(0, dot) : m;
  }

  static String hostPort(String jdbcUrl) {
    String rest = jdbcUrl.replaceFirst("^jdbc:postgresql://", "");
    int slash = rest.indexOf('/');
    return slash >= 0 ? rest.substring(0, slash) : rest;
  }

  @Override
  public void close() {
    if (prober == null) return;
    prober.shutdownNow();
    try {
      prober.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    closeConnection();
  }
}
