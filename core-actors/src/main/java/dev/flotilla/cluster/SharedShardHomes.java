package dev.flotilla.cluster;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.AbstractActor;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.actor.Props;
import org.apache.pekko.cluster.ddata.DistributedData;
import org.apache.pekko.cluster.ddata.Key;
import org.apache.pekko.cluster.ddata.LWWMap;
import org.apache.pekko.cluster.ddata.LWWMapKey;
import org.apache.pekko.cluster.ddata.Replicator;
import org.apache.pekko.cluster.ddata.SelfUniqueAddress;
import org.apache.pekko.pattern.Patterns;

/**
 * Where each shard last lived (shard id to host:port), replicated to every node through
 * Distributed Data, so that a shard coordinator that starts on another node (the previous one's
 * node died, or restarted on the same host:port) still knows which shards to keep for a
 * restarting node. Only the coordinator writes: a shard it places, to a majority before the shard
 * is placed; what it sees in its own state, locally (gossip spreads it within seconds). Every node
 * keeps the latest copy it has seen.
 */
final class SharedShardHomes {
  private final ActorRef replicator;
  private final SelfUniqueAddress self;
  private final Key<LWWMap<String, String>> key;
  private volatile Map<String, String> latest = Map.of();
  private static final AtomicInteger LISTENERS = new AtomicInteger();

  SharedShardHomes(ActorSystem system, String name) {
    DistributedData dd = DistributedData.get(system);
    this.replicator = dd.replicator();
    this.self = dd.selfUniqueAddress();
    this.key = LWWMapKey.create("flotilla-shard-homes-" + name);
    ActorRef listener = ((ExtendedActorSystem) system).systemActorOf(Props.create(Listener.class, () -> new Listener(this)),
        "flotilla-shard-homes-" + name + "-" + LISTENERS.incrementAndGet());
    replicator.tell(new Replicator.Subscribe<>(key, listener), ActorRef.noSender());
  }

  /** The shard's last host:port as replicated here; empty when unknown. */
  String get(String shard) {
    return latest.getOrDefault(shard, "");
  }

  /** Records homes seen in the coordinator's state (shard id to host:port); gossip spreads them. */
  void publish(Map<String, String> changed) {
    if (changed.isEmpty()) return;
    replicator.tell(update(changed, Replicator.writeLocal()), ActorRef.noSender());
  }

  /**
   * Records a shard's new home on a majority of the nodes (this one and, in a cluster of three,
   * one other) before the returned stage completes, so that the home outlives this node: a
   * coordinator that takes over after this node dies knows it even if this node died at once
   * (gossip alone spreads it only every few seconds). Completes with false when no majority
   * answered within {@code timeout} (the home is still recorded here and spreads by gossip).
   */
  CompletionStage<Boolean> publishToMajority(String shard, String home, Duration timeout) {
    var update = update(Map.of(shard, home), new Replicator.WriteMajority(timeout));
    return Patterns.ask(replicator, update, timeout.plusSeconds(1))
        .handle((reply, failure) -> failure == null && reply instanceof Replicator.UpdateSuccess);
  }

  private Replicator.Update<LWWMap<String, String>> update(Map<String, String> changed, Replicator.WriteConsistency consistency) {
    return new Replicator.Update<>(key, LWWMap.<String, String>create(), consistency, m -> {
      LWWMap<String, String> out = m;
      for (var e : changed.entrySet()) out = out.put(self, e.getKey(), e.getValue());
      return out;
    });
  }

  private static final class Listener extends AbstractActor {
    private final SharedShardHomes homes;

    Listener(SharedShardHomes homes) {
      this.homes = homes;
    }

    @Override
    @SuppressWarnings("unchecked")
    public Receive createReceive() {
      return receiveBuilder()
          .match(Replicator.Changed.class, c -> homes.latest = Map.copyOf(((LWWMap<String, String>) c.dataValue()).getEntries()))
          .build();
    }
  }
}
