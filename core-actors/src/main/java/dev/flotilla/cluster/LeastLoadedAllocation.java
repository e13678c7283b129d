package dev.flotilla.cluster;

import java.util.Comparator;
import java.util.Map;
import java.util.Set;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.Address;
import org.apache.pekko.cluster.Cluster;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.ShardCoordinator;
import scala.collection.immutable.IndexedSeq;
import scala.concurrent.Future;

/**
 * Places a new shard on the Up node that holds the fewest shards, and never rebalances.
 *
 * <p>Moving a shard restarts every VM in it, so nodes that join take only new sandboxes. Moving
 * sandboxes away is an explicit drain (the node leaves; its shards are handed off). Regions of
 * nodes that are not Up (leaving, exiting, unreachable members still listed) get nothing new.
 */
public final class LeastLoadedAllocation extends ShardCoordinator.AbstractShardAllocationStrategy {
  private final Cluster cluster;

  public LeastLoadedAllocation(org.apache.pekko.actor.ActorSystem system) {
    this.cluster = Cluster.get(system);
  }

  @Override
  public Future<ActorRef> allocateShard(ActorRef requester, String shardId, Map<ActorRef, IndexedSeq<String>> current) {
    Set<Address> up = upMembers();
    ActorRef best = current.entrySet().stream()
        .filter(e -> up.contains(addressOf(e.getKey())))
        .min(Comparator.<Map.Entry<ActorRef, IndexedSeq<String>>>comparingInt(e -> e.getValue().size())
            .thenComparing(e -> addressOf(e.getKey()).toString()))
        .map(Map.Entry::getKey)
        .orElse(requester);
    return Future.successful(best);
  }

  @Override
  public Future<Set<String>> rebalance(Map<ActorRef, IndexedSeq<String>> current, Set<String> inProgress) {
    return Future.successful(Set.of());
  }

  private Set<Address> upMembers() {
    var out = new java.util.HashSet<Address>();
    for (Member m : cluster.state().getMembers()) {
      if (m.status() == MemberStatus.up() && !cluster.state().getUnreachable().contains(m)) out.add(m.address());
    }
    return out;
  }

  private Address addressOf(ActorRef region) {
    Address a = region.path().address();
    return a.hasGlobalScope() ? a : cluster.selfAddress();
  }
}
