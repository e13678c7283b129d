package dev.flotilla.persistence;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import dev.flotilla.persistence.testdomain.Counter;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;

/**
 * The journal scenario shared by the H2 and PostgreSQL tests: persist through Kryo, stop the
 * ActorSystem, start a new one on the same database, and see the state replayed.
 */
final class JournalReplay {
  private JournalReplay() {}

  static void run(Config nodeConfig, String system) throws Exception {
    ActorTestKit first = ActorTestKit.create(system, nodeConfig);
    try {
      SchemaBootstrap.ensure(first.system());
      SchemaBootstrap.ensure(first.system()); // a second run must be harmless
      ActorRef<Counter.Command> counter = first.spawn(Counter.create("c-1"));
      TestProbe<Counter.State> probe = first.createTestProbe();
      for (int i = 1; i <= 5; i++) {
        counter.tell(new Counter.Add(i, probe.ref()));
        assertEquals(i * (i + 1) / 2, probe.receiveMessage().total());
      }
    } finally {
      first.shutdownTestKit();
    }

    assertStoredWithKryo(nodeConfig);

    ActorTestKit second = ActorTestKit.create(system, nodeConfig);
    try {
      SchemaBootstrap.ensure(second.system());
      ActorRef<Counter.Command> counter = second.spawn(Counter.create("c-1"));
      TestProbe<Counter.State> probe = second.createTestProbe();
      counter.tell(new Counter.Get(probe.ref()));
      Counter.State replayed = probe.receiveMessage();
      assertEquals(15, replayed.total());
      assertEquals(List.of(1, 2, 3, 4, 5), replayed.recent());
      counter.tell(new Counter.Add(10, probe.ref()));
      assertEquals(25, probe.receiveMessage().total());
    } finally {
      second.shutdownTestKit();
    }
  }

  /** Events and snapshots really are in the database, written by serializer 7070. */
  private static void assertStoredWithKryo(Config nodeConfig) throws Exception {
    Config db = nodeConfig.getConfig(PersistenceSettings.SHARED_DB_PATH + ".db");
    try (Connection c = DriverManager.getConnection(db.getString("url"), db.getString("user"), db.getString("password"));
        Statement s = c.createStatement()) {
      try (ResultSet rs =
          s.executeQuery(
              "SELECT COUNT(*), MIN(\"event_ser_id\"), MAX(\"event_ser_id\") FROM \"event_journal\""
                  + " WHERE \"persistence_id\" = 'Counter|c-1'")) {
        rs.next();
        assertEquals(5, rs.getInt(1));
        assertEquals(KryoSerializer.IDENTIFIER, rs.getInt(2));
        assertEquals(KryoSerializer.IDENTIFIER, rs.getInt(3));
      }
      try (ResultSet rs =
          s.executeQuery(
              "SELECT COUNT(*), MIN(\"snapshot_ser_id\") FROM \"snapshot\" WHERE \"persistence_id\" = 'Counter|c-1'")) {
        rs.next();
        assertTrue(rs.getInt(1) >= 1, "snapshotEvery(3) wrote a snapshot");
        assertEquals(KryoSerializer.IDENTIFIER, rs.getInt(2));
      }
    }
  }
}
