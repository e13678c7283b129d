package dev.flotilla.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import java.time.Duration;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import scala.collection.immutable.IndexedSeq;
import scala.concurrent.Future;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The down-removal margin, which {@link FlotillaDowningProvider} takes away from the shard
 * coordinator, is applied by placement: on a one-node cluster, a shard whose home node is gone
 * waits it out; a new shard does not.
 */
class LeastLoadedAllocationTest {
  static final Duration MARGIN = Duration.ofMillis(1500);
  static ActorTestKit testKit;
  static ActorSystem system;

  @BeforeAll
  static void cluster() {
    testKit = ActorTestKit.create("flotilla", ConfigFactory.parseString("""
        pekko.actor.provider = cluster
        pekko.remote.artery.canonical.hostname = 127.0.0.1
        pekko.remote.artery.canonical.port = 0
        pekko.cluster.downing-provider-class = "dev.flotilla.cluster.FlotillaDowningProvider"
        pekko.cluster.down-removal-margin = 1500ms
        """).withFallback(ConfigFactory.load()));
    Cluster cluster = Cluster.get(testKit.system());
    cluster.manager().tell(Join.create(cluster.selfMember().address()));
    Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> cluster.selfMember().status() == MemberStatus.up());
    system = Adapter.toClassic(testKit.system());
  }

  @AfterAll
  static void stop() {
    testKit.shutdownTestKit();
  }

  @Test
  void theMarginIsPlacementsAndTheCoordinatorSingletonsNotTheCoordinators() {
    assertEquals(MARGIN, FlotillaDowningProvider.removalMargin(system));
    assertEquals(Duration.ZERO, Duration.ofNanos(new FlotillaDowningProvider(system).downRemovalMargin().toNanos()));
    assertEquals(MARGIN, Duration.ofNanos(ShardingSettings.of(testKit.system()).coordinatorSingletonSettings().removalMargin().toNanos()),
        "a coordinator whose node was removed must still start elsewhere only after the margin");
  }

  @Test
  void aShardWhoseHomeWasRemovedWaitsTheMarginThenGoesToASurvivor() {
    var strategy = new LeastLoadedAllocation(system, Duration.ofSeconds(15), "Test" + UUID.randomUUID());
    ActorRef here = Adapter.toClassic(testKit.createTestProbe().ref());
    // a region on a node that is not (any longer) a member of this cluster
    ActorRef gone = system.provider().resolveActorRef("pekko://flotilla@10.255.255.1:25520/system/sharding/Sandbox");
    strategy.rebalance(current(Map.of(gone, new String[] {"7", "8"}, here, new String[0])), Set.of());

    long t0 = System.nanoTime();
    Future<ActorRef> seven = strategy.allocateShard(here, "7", current(Map.of(here, new String[0])));
    assertFalse(seven.isCompleted(), "placed at once, without the down-removal margin");
    Awaitility.await().atMost(Duration.ofSeconds(10)).until(seven::isCompleted);
    Duration waited = Duration.ofNanos(System.nanoTime() - t0);
    assertEquals(here, seven.value().get().get());
    assertTrue(waited.compareTo(MARGIN.minusMillis(100)) >= 0, "placed after " + waited.toMillis() + " ms");

    // the margin counts from the home's removal (as first seen), not once per shard
    Future<ActorRef> eight = strategy.allocateShard(here, "8", current(Map.of(here, new String[0])));
    assertNull(strategy.waitingFor("8"), "the margin was over already");
    assertEquals(here, placed(eight));
  }

  @Test
  void aCoordinatorThatStartsElsewhereKnowsTheHomesAnotherOneSaw() {
    String type = "Shared" + UUID.randomUUID();
    ActorRef here = Adapter.toClassic(testKit.createTestProbe().ref());
    ActorRef gone = system.provider().resolveActorRef("pekko://flotilla@10.255.255.2:25520/system/sharding/Sandbox");
    // the first coordinator saw shard 9 on a node that is gone now
    new LeastLoadedAllocation(system, Duration.ofSeconds(15), type).rebalance(current(Map.of(gone, new String[] {"9"})), Set.of());

    // a second one (as on another node, after the first one's node died) learns it through Distributed Data
    var next = new LeastLoadedAllocation(system, Duration.ofSeconds(15), type);
    next.start();
    Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> next.homeOf("9").equals("10.255.255.2:25520"));
    // that node was gone before this coordinator started, and so removed at least the margin
    // before (the coordinator's singleton starts only that long after its previous node was removed)
    Future<ActorRef> nine = next.allocateShard(here, "9", current(Map.of(here, new String[0])));
    assertNull(next.waitingFor("9"), "waited a second margin");
    assertEquals(here, placed(nine));
    // where it placed the shard itself comes first
    assertEquals(NodeAddress.hostPort(Cluster.get(testKit.system()).selfMember().address()), next.homeOf("9"));
  }

  @Test
  void aHomeSeenAliveSinceTheCoordinatorStartedWaitsTheMarginWhenItGoes() {
    // as a node that joined after the coordinator started, got shards, then died
    var strategy = new LeastLoadedAllocation(system, Duration.ofSeconds(15), "Test" + UUID.randomUUID());
    ActorRef here = Adapter.toClassic(testKit.createTestProbe().ref());
    ActorRef later = system.provider().resolveActorRef("pekko://flotilla@10.255.255.4:25520/system/sharding/Sandbox");
    strategy.start();
    strategy.rebalance(current(Map.of(later, new String[] {"6"}, here, new String[0])), Set.of());
    Future<ActorRef> six = strategy.allocateShard(here, "6", current(Map.of(here, new String[0])));
    assertFalse(six.isCompleted(), "placed at once, without the down-removal margin");
    Awaitility.await().atMost(Duration.ofSeconds(10)).until(six::isCompleted);
    assertEquals(here, six.value().get().get());
  }

  @Test
  void aNewShardIsPlacedAtOnce() {
    var strategy = new LeastLoadedAllocation(system, Duration.ofSeconds(15), "Test" + UUID.randomUUID());
    ActorRef here = Adapter.toClassic(testKit.createTestProbe().ref());
    Future<ActorRef> f = strategy.allocateShard(here, "42", current(Map.of(here, new String[0])));
    assertNull(strategy.waitingFor("42"), "a new shard waited");
    assertEquals(here, placed(f));
  }

  @Test
  void placementsUnderWayAtOnceSpreadAsTheyWouldOneAfterTheOther() {
    // The coordinator asks for several new shards before the answers (given once each home is
    // recorded) are in its state: each region counts what was placed on it meanwhile.
    var strategy = new LeastLoadedAllocation(system, Duration.ofSeconds(15), "Spread" + UUID.randomUUID());
    ActorRef one = Adapter.toClassic(testKit.createTestProbe().ref());
    ActorRef two = Adapter.toClassic(testKit.createTestProbe().ref());
    var current = current(Map.of(one, new String[0], two, new String[0]));
    Future<ActorRef> a = strategy.allocateShard(one, "100", current);
    Future<ActorRef> b = strategy.allocateShard(one, "101", current);
    assertNotEquals(placed(a), placed(b), "both new shards on one of two empty regions");
    // once the coordinator's state lists them, they are not counted twice
    var listed = current(Map.of(one, new String[] {"100", "101"}, two, new String[0]));
    assertEquals(two, placed(strategy.allocateShard(one, "102", listed)));
  }

  /** The region a placement that does not wait gives, once its home is recorded. */
  private static ActorRef placed(Future<ActorRef> f) {
    Awaitility.await().atMost(Duration.ofSeconds(10)).until(f::isCompleted);
    return f.value().get().get();
  }

  private static Map<ActorRef, IndexedSeq<String>> current(Map<ActorRef, String[]> m) {
    var out = new java.util.HashMap<ActorRef, IndexedSeq<String>>();
    m.forEach((k, v) -> out.put(k, CollectionConverters.asScala(java.util.List.of(v)).toIndexedSeq()));
    return out;
  }
}
