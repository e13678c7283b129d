package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.tenant.TenantEntity;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.Entity;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.apache.pekko.pattern.StatusReply;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@link SandboxControl} through real Cluster Sharding (one node) while the journal is down, with
 * stand-in entities: changes are not even sent, a change under way ends when the journal goes
 * down, and reads reach the entities but do not wait out the ask timeout.
 */
class SandboxControlJournalTest {
  static final Duration ASK_TIMEOUT = Duration.ofSeconds(20);
  static final Duration READ_TIMEOUT = Duration.ofMillis(500);
  /** Sandbox ids whose stand-in entity never answers (as one that cannot recover from the journal). */
  static final String SILENT = "sb-00000000000000ff";
  static final String ANSWERING = "sb-0000000000000001";

  static final ActorTestKit testKit = ActorTestKit.create(ConfigFactory.parseString("""
      pekko.actor.provider = cluster
      pekko.remote.artery.canonical.hostname = 127.0.0.1
      pekko.remote.artery.canonical.port = 0
      pekko.cluster.sharding.remember-entities = off
      pekko.cluster.jmx.multi-mbeans-in-same-jvm = on
      """).withFallback(ConfigFactory.load()));
  static TestProbe<Object> received;
  static final JournalGuardTest.FakeJournal journal = new JournalGuardTest.FakeJournal();
  static SandboxControl control;

  @BeforeAll
  static void cluster() {
    received = testKit.createTestProbe();
    Cluster cluster = Cluster.get(testKit.system());
    cluster.manager().tell(Join.create(cluster.selfMember().address()));
    Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> cluster.selfMember().status() == MemberStatus.up());
    ClusterSharding sharding = ClusterSharding.get(testKit.system());
    // Tenants take every reservation but never answer: the journal write they would do hangs.
    sharding.init(Entity.of(TenantEntity.ENTITY_KEY, ctx -> Behaviors.receiveMessage(m -> {
      // The ledger holds the two sandboxes of these tests (it is in memory: it answers while the journal is down).
      if (m instanceof TenantEntity.Holds h) {
        h.replyTo().tell(h.sandboxId().equals(SILENT) || h.sandboxId().equals(ANSWERING));
        return Behaviors.same();
      }
      received.ref().tell(m);
      return Behaviors.same();
    })));
    sharding.init(Entity.of(SandboxEntity.ENTITY_KEY, ctx -> Behaviors.receiveMessage(m -> {
      received.ref().tell(m);
      if (m instanceof SandboxEntity.Get g && !ctx.getEntityId().equals(SILENT)) {
        g.replyTo().tell(StatusReply.success(view(ctx.getEntityId(), g.tenant())));
      }
      return Behaviors.same();
    })));
    control = new SandboxControl(testKit.system(),
        SpecValidator.fromConfig(testKit.system().settings().config().getConfig("flotilla.sandbox"), Set.of("process")),
        ASK_TIMEOUT, ASK_TIMEOUT, testKit.<org.apache.pekko.actor.typed.pubsub.Topic.Command<SandboxChanged>>createTestProbe().ref(),
        journal, READ_TIMEOUT);
  }

  @Test
  void anIdTheTenantDoesNotHoldIsNotFoundWithoutStartingItsEntity() throws Exception {
    for (int i = 0; i < 20; i++) {
      String made = String.format("sb-%016x", java.util.concurrent.ThreadLocalRandom.current().nextLong() & Long.MAX_VALUE);
      var e = assertThrows(ExecutionException.class, () -> control.get("acme", made).toCompletableFuture().get(10, TimeUnit.SECONDS));
      assertEquals(SandboxError.Kind.NOT_FOUND, SandboxControl.unwrap(e).kind());
      var x = assertThrows(ExecutionException.class, () -> control.exec("acme", made,
          new ExecSpec(java.util.List.of("true"), Map.of(), "")).toCompletableFuture()
          .get(10, TimeUnit.SECONDS));
      assertEquals(SandboxError.Kind.NOT_FOUND, SandboxControl.unwrap(x).kind());
    }
    received.expectNoMessage(Duration.ofMillis(300)); // no sandbox entity was started or asked
  }

  @AfterAll
  static void stop() {
    testKit.shutdownTestKit();
  }

  static SandboxView view(String id, String tenant) {
    Instant now = Instant.now();
    return new SandboxView(id, tenant, spec(), Phase.RUNNING, 1, "127.0.0.1:25520", now, now, "", 0, true);
  }

  static SandboxSpec spec() {
    return new SandboxSpec("process", 1, 256, Map.of(), RestartPolicy.ALWAYS);
  }

  static SandboxError failureOf(CompletionStage<?> stage, Duration within) {
    var e = assertThrows(ExecutionException.class, () -> stage.toCompletableFuture().get(within.toMillis(), TimeUnit.MILLISECONDS));
    return SandboxControl.unwrap(e);
  }

  // One test: the journal's state is shared, and these steps follow each other.
  @Test
  void whileTheJournalIsDownChangesFailFastAndReadsDoNotWaitOutTheAskTimeout() throws Exception {
    // a create under way (its tenant's write hangs) ends as soon as the journal goes down
    var underWay = control.create("acme", spec(), "in-flight");
    assertTrue(received.expectMessageClass(TenantEntity.Reserve.class) != null);
    journal.goDown("PostgreSQL at db:5432: connection refused, for 0.0 s");
    SandboxError unknown = failureOf(underWay, Duration.ofSeconds(5));
    assertEquals(SandboxError.Kind.UNAVAILABLE, unknown.kind());
    assertTrue(unknown.getMessage().contains("under way") && unknown.getMessage().contains("same request id"), unknown.getMessage());

    // changes while it is down are refused without reaching any entity
    for (var call : java.util.List.<CompletionStage<?>>of(control.create("acme", spec(), "while-down"),
        control.start("acme", ANSWERING), control.stop("acme", ANSWERING), control.pause("acme", ANSWERING),
        control.resume("acme", ANSWERING), control.delete("acme", ANSWERING))) {
      SandboxError refused = failureOf(call, Duration.ofSeconds(1));
      assertEquals(SandboxError.Kind.UNAVAILABLE, refused.kind());
      assertTrue(refused.getMessage().startsWith("the sandbox journal is unreachable (PostgreSQL at db:5432")
          && refused.getMessage().contains("nothing was changed"), refused.getMessage());
    }
    received.expectNoMessage(Duration.ofMillis(300));

    // a sandbox in memory answers reads
    assertEquals(ANSWERING, control.get("acme", ANSWERING).toCompletableFuture().get(5, TimeUnit.SECONDS).id());
    assertTrue(received.expectMessageClass(SandboxEntity.Get.class) != null);

    // one that does not answer ends after the read timeout, far from the ask timeout
    long t0 = System.nanoTime();
    SandboxError silent = failureOf(control.get("acme", SILENT), Duration.ofSeconds(5));
    long ms = (System.nanoTime() - t0) / 1_000_000;
    assertEquals(SandboxError.Kind.UNAVAILABLE, silent.kind());
    assertTrue(silent.getMessage().startsWith("no answer within 0.5 s while the sandbox journal is unreachable"), silent.getMessage());
    assertTrue(ms >= READ_TIMEOUT.toMillis(), ms + " ms");

    // back up: changes go through to the entities again
    journal.down = null;
    control.start("acme", ANSWERING);
    assertTrue(received.expectMessageClass(SandboxEntity.Get.class) != null); // the silent get arrived
    assertTrue(received.expectMessageClass(SandboxEntity.Start.class) != null);
    assertTrue(journal.listeners.size() <= 1, "only the start under way listens: " + journal.listeners.size());
  }
}
