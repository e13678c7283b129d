package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.tenant.TenantEntity;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
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
 * {@link SandboxControl}'s creates against the real tenant ledger ({@link TenantEntity}, in-memory
 * journal) and a stand-in sandbox entity whose answers the test orders: the interleavings of two
 * creates with one request id that a real node produces only now and then.
 */
class SandboxControlLedgerTest {
  static final Duration ASK = Duration.ofSeconds(10);
  static final ActorTestKit testKit = ActorTestKit.create(ConfigFactory.parseString("""
      pekko.actor.provider = cluster
      pekko.remote.artery.canonical.hostname = 127.0.0.1
      pekko.remote.artery.canonical.port = 0
      pekko.cluster.sharding.remember-entities = off
      pekko.cluster.jmx.multi-mbeans-in-same-jvm = on
      pekko.persistence.journal.plugin = "pekko.persistence.journal.inmem"
      pekko.persistence.snapshot-store.plugin = "pekko.persistence.snapshot-store.local"
      pekko.persistence.snapshot-store.local.dir = "target/snapshots-ledger-test"
      """).withFallback(ConfigFactory.load()));
  /** Resize commands the stand-in sandbox entities got, for the test to answer. */
  static TestProbe<SandboxEntity.Resize> resizes;
  /** What the stand-in answers to Get, by sandbox id. */
  static final Map<String, SandboxView> views = new ConcurrentHashMap<>();
  /** Create commands the stand-in sandbox entities got, for the test to answer. */
  static TestProbe<SandboxEntity.Create> creates;
  /** Sandbox ids the stand-in reports as existing (Inspect). */
  static final Set<String> existing = ConcurrentHashMap.newKeySet();
  static SandboxControl control;

  @BeforeAll
  static void cluster() {
    creates = testKit.createTestProbe();
    resizes = testKit.createTestProbe();
    Cluster cluster = Cluster.get(testKit.system());
    cluster.manager().tell(Join.create(cluster.selfMember().address()));
    Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> cluster.selfMember().status() == MemberStatus.up());
    ClusterSharding sharding = ClusterSharding.get(testKit.system());
    sharding.init(Entity.of(TenantEntity.ENTITY_KEY, ctx -> TenantEntity.create(ctx.getEntityId(), new TenantEntity.Quota(10, 10, 10_000))));
    sharding.init(Entity.of(SandboxEntity.ENTITY_KEY, ctx -> Behaviors.receiveMessage(m -> {
      if (m instanceof SandboxEntity.Create c) creates.ref().tell(c);
      if (m instanceof SandboxEntity.Resize r) resizes.ref().tell(r);
      if (m instanceof SandboxEntity.Get g) g.replyTo().tell(StatusReply.success(views.get(ctx.getEntityId())));
      if (m instanceof SandboxEntity.Inspect i) {
        boolean exists = existing.contains(ctx.getEntityId());
        i.replyTo().tell(new SandboxEntity.Inspection(exists, exists ? Phase.RUNNING : Phase.DELETED, exists ? 1 : 0, ""));
      }
      return Behaviors.same();
    })));
    control = new SandboxControl(testKit.system(),
        SpecValidator.fromConfig(testKit.system().settings().config().getConfig("flotilla.sandbox"), Set.of("process")),
        ASK, ASK, testKit.<org.apache.pekko.actor.typed.pubsub.Topic.Command<SandboxChanged>>createTestProbe().ref());
  }

  @AfterAll
  static void stop() {
    testKit.shutdownTestKit();
  }

  static SandboxSpec spec(int memory, String side) {
    return new SandboxSpec("process", 1, memory, Map.of("side", side), RestartPolicy.ALWAYS);
  }

  static SandboxView created(SandboxEntity.Create c, String id) {
    Instant now = Instant.now();
    return new SandboxView(id, c.tenant(), c.spec(), Phase.CREATING, 1, "127.0.0.1:25520", now, now, "", 0, true);
  }

  static TenantEntity.Page ledger(String tenant) throws Exception {
    return ClusterSharding.get(testKit.system()).entityRefFor(TenantEntity.ENTITY_KEY, tenant)
        .<TenantEntity.Page>ask(r -> new TenantEntity.ListReservations("", 100, r), ASK).toCompletableFuture().get(10, TimeUnit.SECONDS);
  }

  static <T> T get(CompletionStage<T> s) throws Exception {
    return s.toCompletableFuture().get(10, TimeUnit.SECONDS);
  }

  /**
   * A reserves first, B's spec is created, A is told the id is taken: the reservation stays (it is
   * B's sandbox's now) and holds what B's spec reserves.
   */
  @Test
  void theLoserOfARaceThatReservedFirstLeavesTheWinnersReservationInPlaceAndItIsTheWinners() throws Exception {
    String tenant = "race-1";
    String id = SandboxIds.forRequest(tenant, "same");
    var a = control.create(tenant, spec(256, "a"), "same");
    SandboxEntity.Create createA = creates.expectMessageClass(SandboxEntity.Create.class); // A's reservation is in
    var b = control.create(tenant, spec(320, "b"), "same");
    SandboxEntity.Create createB = creates.expectMessageClass(SandboxEntity.Create.class); // B found it held
    assertEquals(256, createA.spec().memoryMiB());
    existing.add(id);
    createB.replyTo().tell(StatusReply.success(created(createB, id)));
    createA.replyTo().tell(StatusReply.error(new SandboxError(SandboxError.Kind.ALREADY_EXISTS,
        "request id 'same' was used with another spec").toReplyText()));
    assertEquals(id, get(b).id());
    var e = org.junit.jupiter.api.Assertions.assertThrows(java.util.concurrent.ExecutionException.class, () -> get(a));
    assertEquals(SandboxError.Kind.ALREADY_EXISTS, SandboxControl.unwrap(e).kind());
    // the sandbox that exists keeps its reservation, and the reservation is B's
    Awaitility.await().atMost(ASK).untilAsserted(() -> {
      var held = ledger(tenant).reservations();
      assertEquals(1, held.size(), held.toString());
      assertEquals(id, held.get(0).sandboxId());
      assertEquals(320, held.get(0).memoryMiB(), "the created sandbox's memory, not the loser's: " + held);
      assertEquals(Map.of("side", "b"), held.get(0).labels());
    });
  }

  /**
   * A resize charges the tenant's ledger with what grows before the VM is asked, gives it back when
   * the resize is refused, refuses past the quota without asking the VM, and gives back what
   * shrinks only once the VM has shrunk.
   */
  @Test
  void aResizeIsChargedFirstReleasedWhenRefusedAndShrinksTheLedgerOnlyOnceDone() throws Exception {
    String tenant = "resize-1";
    var c = control.create(tenant, spec(256, "r"), "resize");
    SandboxEntity.Create create = creates.expectMessageClass(SandboxEntity.Create.class);
    String id = SandboxIds.forRequest(tenant, "resize");
    existing.add(id);
    SandboxView v = created(create, id);
    views.put(id, v);
    create.replyTo().tell(StatusReply.success(v));
    get(c);

    // grow: charged while the VM is being asked, given back when it refuses
    var grow = control.resize(tenant, id, 2, 1024);
    SandboxEntity.Resize asked = resizes.expectMessageClass(SandboxEntity.Resize.class);
    assertEquals(List.of(2, 1024), List.of(asked.vcpus(), asked.memoryMiB()));
    assertEquals(List.of(2, 1024), held(tenant), "charged before the VM changes");
    asked.replyTo().tell(new SandboxError(SandboxError.Kind.FAILED_PRECONDITION, "microvm cannot hot-plug vCPUs").reply());
    var e = org.junit.jupiter.api.Assertions.assertThrows(java.util.concurrent.ExecutionException.class, () -> get(grow));
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, SandboxControl.unwrap(e).kind());
    Awaitility.await().atMost(ASK).untilAsserted(() -> assertEquals(List.of(1, 256), held(tenant), "released"));

    // past the quota (10 000 MiB): refused by the ledger, the VM never asked
    var over = control.resize(tenant, id, 0, 10_001);
    e = org.junit.jupiter.api.Assertions.assertThrows(java.util.concurrent.ExecutionException.class, () -> get(over));
    assertEquals(SandboxError.Kind.RESOURCE_EXHAUSTED, SandboxControl.unwrap(e).kind());
    assertTrue(SandboxControl.unwrap(e).getMessage().contains("over its quota of 10000 MiB"), SandboxControl.unwrap(e).getMessage());
    resizes.expectNoMessage(Duration.ofMillis(200));

    // shrink: the ledger keeps the larger figure until the VM has shrunk
    var shrink = control.resize(tenant, id, 0, 128);
    asked = resizes.expectMessageClass(SandboxEntity.Resize.class);
    assertEquals(List.of(1, 128), List.of(asked.vcpus(), asked.memoryMiB()));
    assertEquals(List.of(1, 256), held(tenant));
    SandboxView after = new SandboxView(id, tenant, v.spec().withResources(1, 128), Phase.RUNNING, 1, "", v.createdAt(), Instant.now(), "", 0, true);
    asked.replyTo().tell(StatusReply.success(after));
    assertEquals(128, get(shrink).spec().memoryMiB());
    Awaitility.await().atMost(ASK).untilAsserted(() -> assertEquals(List.of(1, 128), held(tenant), "given back"));

    // nothing to change is a usage error
    var none = control.resize(tenant, id, 0, 0);
    e = org.junit.jupiter.api.Assertions.assertThrows(java.util.concurrent.ExecutionException.class, () -> get(none));
    assertEquals(SandboxError.Kind.INVALID_ARGUMENT, SandboxControl.unwrap(e).kind());
  }

  static List<Integer> held(String tenant) throws Exception {
    var r = ledger(tenant).reservations().get(0);
    return List.of(r.vcpus(), r.memoryMiB());
  }

  /** A create refused for a sandbox that does not exist gives its reservation back, as before. */
  @Test
  void aRefusedCreateWhoseSandboxDoesNotExistReleasesItsReservation() throws Exception {
    String tenant = "race-2";
    var a = control.create(tenant, spec(256, "a"), "refused");
    SandboxEntity.Create createA = creates.expectMessageClass(SandboxEntity.Create.class);
    createA.replyTo().tell(StatusReply.error(new SandboxError(SandboxError.Kind.ALREADY_EXISTS,
        "request id 'refused' was used for a sandbox which has been deleted").toReplyText()));
    var e = org.junit.jupiter.api.Assertions.assertThrows(java.util.concurrent.ExecutionException.class, () -> get(a));
    assertEquals(SandboxError.Kind.ALREADY_EXISTS, SandboxControl.unwrap(e).kind());
    Awaitility.await().atMost(ASK).untilAsserted(() -> assertTrue(ledger(tenant).reservations().isEmpty()));
  }
}
