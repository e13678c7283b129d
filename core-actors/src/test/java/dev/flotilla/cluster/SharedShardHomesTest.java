package dev.flotilla.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import java.time.Duration;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.ddata.DistributedData;
import org.apache.pekko.cluster.ddata.LWWMap;
import org.apache.pekko.cluster.ddata.LWWMapKey;
import org.apache.pekko.cluster.ddata.Replicator;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.apache.pekko.pattern.Patterns;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import scala.collection.immutable.IndexedSeq;
import scala.concurrent.Future;
import scala.jdk.javaapi.CollectionConverters;

/**
 * A shard's home outlives the node whose coordinator placed it: on a two-node cluster whose
 * Distributed Data gossip is too slow to matter, the other node has the home by the time the
 * placement completes, that is before any sandbox of the shard can start a VM.
 */
class SharedShardHomesTest {
  static ActorTestKit first;
  static ActorTestKit second;

  static Config config() {
    return ConfigFactory.parseString("""
        pekko.actor.provider = cluster
        pekko.remote.artery.canonical.hostname = 127.0.0.1
        pekko.remote.artery.canonical.port = 0
        pekko.cluster.downing-provider-class = "dev.flotilla.cluster.FlotillaDowningProvider"
        # only a direct write reaches the other node within the test
        pekko.cluster.distributed-data.gossip-interval = 60s
        """).withFallback(ConfigFactory.load());
  }

  @BeforeAll
  static void cluster() {
    first = ActorTestKit.create("flotilla", config());
    second = ActorTestKit.create("flotilla", config());
    var seed = Cluster.get(first.system()).selfMember().address();
    Cluster.get(first.system()).manager().tell(Join.create(seed));
    Cluster.get(second.system()).manager().tell(Join.create(seed));
    Awaitility.await().atMost(Duration.ofSeconds(30)).until(() -> Cluster.get(first.system()).state().members().size() == 2
        && java.util.stream.StreamSupport.stream(Cluster.get(first.system()).state().getMembers().spliterator(), false)
            .allMatch(m -> m.status() == MemberStatus.up())
        && Cluster.get(second.system()).selfMember().status() == MemberStatus.up());
  }

  @AfterAll
  static void stop() {
    if (second != null) second.shutdownTestKit();
    if (first != null) first.shutdownTestKit();
  }

  @Test
  void aPlacedShardsHomeIsOnAMajorityBeforeThePlacementCompletes() throws Exception {
    String type = "Homes" + UUID.randomUUID();
    ActorSystem a = Adapter.toClassic(first.system());
    ActorSystem b = Adapter.toClassic(second.system());
    var strategy = new LeastLoadedAllocation(a, Duration.ofSeconds(15), type);
    var readerElsewhere = new LeastLoadedAllocation(b, Duration.ofSeconds(15), type);
    strategy.start();
    ActorRef here = Adapter.toClassic(first.createTestProbe().ref());

    Future<ActorRef> placed = strategy.allocateShard(here, "5", current(Map.of(here, new String[0])));
    Awaitility.await().atMost(Duration.ofSeconds(10)).until(placed::isCompleted);
    assertEquals(here, placed.value().get().get());

    // at that moment, the other node's replica has it already
    var key = LWWMapKey.<String, String>create("flotilla-shard-homes-" + type);
    Object reply = Patterns.ask(DistributedData.get(b).replicator(), new Replicator.Get<>(key, Replicator.readLocal()),
        Duration.ofSeconds(5)).toCompletableFuture().get(5, TimeUnit.SECONDS);
    assertTrue(reply instanceof Replicator.GetSuccess, "the other node has no record of the shard's home: " + reply);
    @SuppressWarnings("unchecked")
    LWWMap<String, String> homes = ((Replicator.GetSuccess<LWWMap<String, String>>) reply).dataValue();
    String home = NodeAddress.hostPort(Cluster.get(first.system()).selfMember().address());
    assertEquals(home, homes.getEntries().get("5"));
    // and a coordinator that starts there knows where the shard lived
    Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> readerElsewhere.homeOf("5").equals(home));
  }

  @Test
  void aRequestThatWaitedForTheHomeGetsThePlacementAnotherRequestMadeMeanwhile() {
    ActorSystem a = Adapter.toClassic(first.system());
    var strategy = new LeastLoadedAllocation(a, Duration.ofSeconds(15), "Rejoin" + UUID.randomUUID());
    strategy.start();
    ActorRef here = Adapter.toClassic(first.createTestProbe().ref());
    // the second node's region, as the first node sees it (an address of its own)
    var secondAddress = Cluster.get(second.system()).selfMember().address();
    ActorRef there = a.provider().resolveActorRef(secondAddress + "/system/sharding/Sandbox");
    // shard 3 lived on the second node
    strategy.rebalance(current(Map.of(there, new String[] {"3"}, here, new String[0])), Set.of());

    // the second node is a member without a region (as a restarted node while it rejoins): the shard waits for it
    Future<ActorRef> waited = strategy.allocateShard(here, "3", current(Map.of(here, new String[0])));
    Awaitility.await().atMost(Duration.ofSeconds(5)).until(() -> strategy.waitingFor("3") == Placement.Why.HOME_REJOINING);
    // its region registers and asks for the shard: placed at home
    Future<ActorRef> home = strategy.allocateShard(here, "3", current(Map.of(here, new String[0], there, new String[0])));
    Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> home.isCompleted() && waited.isCompleted());
    assertEquals(there, home.value().get().get());
    // the request that waited answers the same, not the least loaded region it knew of: the
    // coordinator takes whichever answer comes first
    assertEquals(there, waited.value().get().get());
  }

  private static Map<ActorRef, IndexedSeq<String>> current(Map<ActorRef, String[]> m) {
    var out = new java.util.HashMap<ActorRef, IndexedSeq<String>>();
    m.forEach((k, v) -> out.put(k, CollectionConverters.asScala(java.util.List.of(v)).toIndexedSeq()));
    return out;
  }
}
