package dev.flotilla.cluster;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.pekko.actor.ActorRef;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.actor.Address;
import org.apache.pekko.cluster.Cluster;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.ShardCoordinator;
import org.apache.pekko.event.Logging;
import org.apache.pekko.event.LoggingAdapter;
import org.apache.pekko.pattern.Patterns;
import scala.collection.immutable.IndexedSeq;
import scala.concurrent.Future;
import scala.jdk.javaapi.CollectionConverters;
import scala.jdk.javaapi.FutureConverters;

/**
 * Places a new shard on the Up node that holds the fewest shards, brings a shard back to its
 * restarted home node, and never rebalances. The decisions are {@link Placement}'s.
 *
 * <p>Moving a shard restarts every VM in it, so nodes that join take only new sandboxes. Moving
 * sandboxes away is an explicit drain (the node leaves; its shards are handed off). Regions of
 * nodes that are not Up (leaving, exiting, unreachable members still listed) get nothing new.
 *
 * <p>When a node's JVM dies and is started again on the same host:port, the cluster removes the
 * old incarnation and its shards need a new home. Their VMs still run on that host and only that
 * node can re-attach to them, so each such shard waits for the restarted node's region, up to
 * {@code flotilla.sandbox.placement.rejoin-grace}, before it goes elsewhere (where its sandboxes
 * start as new incarnations, and the restarted node's reaper stops the old VMs). The shard's last
 * home is remembered by the coordinator and shared with every node ({@link SharedShardHomes}), so
 * a coordinator that moved (the oldest node was the one restarted) knows it too. A shard is placed
 * only once its home is recorded on a majority of the nodes: a shard placed on a node that dies a
 * moment later (a sandbox being created there) is still known to have lived there.
 *
 * <p>A shard whose home was removed and has not come back waits out the down-removal margin
 * first (the coordinator does not: see {@link FlotillaDowningProvider}). While a shard waits, its
 * case is decided again every {@link #POLL}, so a home that starts rejoining during the margin
 * ends it.
 */
public final class LeastLoadedAllocation extends ShardCoordinator.AbstractShardAllocationStrategy
    implements ShardCoordinator.StartableAllocationStrategy {
  /** How often a waiting shard's case is decided again. */
  static final Duration POLL = Duration.ofMillis(250);
  /** How long a placement waits for its shard's home to be recorded on a majority of the nodes. */
  static final Duration PUBLISH_TIMEOUT = Duration.ofSeconds(3);

  private final ActorSystem system;
  private final Cluster cluster;
  private final Duration rejoinGrace;
  private final Duration margin;
  private final LoggingAdapter log;
  /** shard id -> host:port of the node it last lived on, as seen by this node's coordinator since it started */
  private final Map<String, String> homes = new ConcurrentHashMap<>();
  /** the same as last seen by any node's coordinator; null when nothing waits for a restarted node */
  private final SharedShardHomes shared;
  /** shard id -> System.nanoTime() when it started waiting for its rejoining home */
  private final Map<String, Long> rejoinWaitSince = new ConcurrentHashMap<>();
  /** host:port -> System.nanoTime() when it was first seen with no member left on it */
  private final Map<String, Long> goneSince = new ConcurrentHashMap<>();
  /**
   * host:port of every member seen alive (not down or removed) since the coordinator last started
   * here, null before its first start. A home never seen alive was gone before the coordinator
   * started, and so removed at least the margin before: the coordinator's singleton starts only
   * that long after its previous node was removed. (Every node this coordinator placed a shard on
   * was alive at that call.)
   */
  private volatile Set<String> seenAlive;
  /**
   * shard id -> its last placement: the region, and the answer (given once its home is recorded).
   * Until the coordinator's state lists the shard there, the region counts it as one of its own,
   * so that placements under way at once spread as they would one after the other.
   */
  private final Map<String, Placed> decided = new ConcurrentHashMap<>();

  private record Placed(ActorRef region, CompletableFuture<ActorRef> answer) {}
  /** shard id -> why it waits (the last reason logged), while a wait is under way */
  private final Map<String, Placement.Why> waiting = new ConcurrentHashMap<>();

  /**
   * For sandboxes: a shard waits for its rejoining home up to
   * {@code flotilla.sandbox.placement.rejoin-grace}.
   *
   * @param typeName the entity type, naming the shared homes
   */
  public LeastLoadedAllocation(ActorSystem system, String typeName) {
    this(system, system.settings().config().getDuration("flotilla.sandbox.placement.rejoin-grace"), typeName);
  }

  /**
   * @param rejoinGrace how long a shard waits for its restarted home; zero for entities with
   *     nothing to re-attach to (then homes are not shared either)
   */
  public LeastLoadedAllocation(ActorSystem system, Duration rejoinGrace, String typeName) {
    this.system = system;
    this.cluster = Cluster.get(system);
    this.rejoinGrace = rejoinGrace;
    this.margin = FlotillaDowningProvider.removalMargin(system);
    this.log = Logging.getLogger(system, LeastLoadedAllocation.class);
    this.shared = rejoinGrace.isZero() ? null : new SharedShardHomes(system, typeName);
  }

  /**
   * The coordinator starts on this node: what it remembered from an earlier turn may be stale
   * (another node's coordinator has moved shards since); the shared homes are not.
   */
  @Override
  public void start() {
    homes.clear();
    decided.clear();
    seenAlive = ConcurrentHashMap.newKeySet();
    seenAlive.addAll(livingHostPorts());
  }

  @Override
  public Future<ActorRef> allocateShard(ActorRef requester, String shardId, Map<ActorRef, IndexedSeq<String>> current) {
    remember(current);
    return FutureConverters.asScala(place(requester, shardId, current));
  }

  private void remember(Map<ActorRef, IndexedSeq<String>> current) {
    Set<String> seen = seenAlive;
    if (seen != null) {
      // members alive now, and nodes whose regions are registered (a region registers from an Up node)
      seen.addAll(livingHostPorts());
      for (ActorRef region : current.keySet()) seen.add(hostPort(region));
    }
    var changed = Placement.remember(homes, asJava(current), this::hostPort);
    if (shared != null) shared.publish(changed);
  }

  /** The host:port the shard last lived on, as far as this node knows; empty when unknown. */
  String homeOf(String shardId) {
    String home = homes.get(shardId);
    if (home != null) return home;
    return shared == null ? "" : shared.get(shardId);
  }

  /** Why the shard waits to be placed, or null when it does not wait (placed, or being recorded). */
  Placement.Why waitingFor(String shardId) {
    return waiting.get(shardId);
  }

  private CompletionStage<ActorRef> place(ActorRef requester, String shardId, Map<ActorRef, IndexedSeq<String>> current) {
    String home = homeOf(shardId);
    List<Placement.Region<ActorRef>> regions = regions(current);
    boolean rejoining = rejoining(home, regions);
    long now = System.nanoTime();
    Long since = rejoining && !rejoinGrace.isZero() ? rejoinWaitSince.computeIfAbsent(shardId, k -> now) : rejoinWaitSince.get(shardId);
    Duration waited = since == null ? Duration.ZERO : Duration.ofNanos(now - since);
    var decision = Placement.decide(regions, home, rejoining, waited, rejoinGrace, goneFor(home, now), margin);
    if (decision.isEmpty()) return CompletableFuture.completedFuture(requester); // no Up region: the coordinator retries
    if (decision.get() instanceof Placement.Allocate<ActorRef> a) {
      // recorded before the wait ends, so that a request waiting for the same shard answers this
      CompletableFuture<ActorRef> placed = new CompletableFuture<>();
      decided.put(shardId, new Placed(a.region(), placed));
      Placement.Why waitedFor = waiting.remove(shardId);
      rejoinWaitSince.remove(shardId);
      String to = hostPort(a.region());
      if (a.home() && since != null) log.info("shard {} back on its restarted home node {} after {} ms", shardId, to, waited.toMillis());
      if (!a.home() && !home.isEmpty() && !home.equals(to)) {
        log.info("shard {} moves from node {} (gone{}) to {}", shardId, home,
            since != null ? ", did not come back within " + rejoinGrace.toMillis() + " ms"
                : waitedFor == Placement.Why.REMOVAL_MARGIN ? ", after the " + margin.toMillis() + " ms down-removal margin"
                : ", not rejoining", to);
      }
      homes.put(shardId, to);
      if (shared == null) {
        placed.complete(a.region());
        return placed;
      }
      // Before any sandbox of the shard can start a VM there: if that node dies at once (a JVM
      // killed and restarted on its host), the coordinator that takes over must know to wait for
      // it, or it starts the shard's sandboxes elsewhere beside their VMs that still run there.
      shared.publishToMajority(shardId, to, PUBLISH_TIMEOUT).thenAccept(recorded -> {
        if (!recorded) {
          log.warning("shard {}: its home {} is not recorded on a majority of the nodes within {} ms; placed anyway (gossip"
              + " spreads it)", shardId, to, PUBLISH_TIMEOUT.toMillis());
        }
        placed.complete(a.region());
      });
      return placed;
    }
    Placement.Wait<ActorRef> w = (Placement.Wait<ActorRef>) decision.get();
    if (waiting.put(shardId, w.why()) != w.why()) {
      if (w.why() == Placement.Why.HOME_REJOINING) {
        log.info("shard {} waits up to {} ms for its home node {}, which is rejoining the cluster (its VMs run there)", shardId,
            w.atMost().toMillis(), w.home());
      } else {
        log.info("shard {}: its node {} was removed from the cluster; waits {} ms (down-removal margin) for it to stop what"
            + " it ran before the shard starts elsewhere", shardId, w.home(), w.atMost().toMillis());
      }
    }
    // The restarted node's region registering asks for this shard again (remember-entities) and
    // gets its home at once; this wait meanwhile decides again every POLL until the case is over.
    Duration pause = w.atMost().compareTo(POLL) < 0 ? w.atMost() : POLL;
    return Patterns.after(pause, system.scheduler(), system.dispatcher(), () -> {
      // Decided meanwhile by another request for the same shard (on its home, normally): this one
      // answers the same. Its answer may reach the coordinator first (that placement completes
      // only once its home is recorded), and the coordinator takes the first answer it gets.
      if (!waiting.containsKey(shardId)) {
        Placed same = decided.get(shardId);
        return same != null ? same.answer() : place(requester, shardId, current);
      }
      return place(requester, shardId, current);
    });
  }

  @Override
  public Future<Set<String>> rebalance(Map<ActorRef, IndexedSeq<String>> current, Set<String> inProgress) {
    remember(current);
    return Future.successful(Set.of());
  }

  private List<Placement.Region<ActorRef>> regions(Map<ActorRef, IndexedSeq<String>> current) {
    Set<Address> up = upMembers();
    Set<String> listed = new java.util.HashSet<>();
    for (IndexedSeq<String> shards : current.values()) listed.addAll(CollectionConverters.asJava(shards));
    Map<ActorRef, Integer> underWay = new java.util.HashMap<>();
    decided.forEach((shard, p) -> {
      if (!listed.contains(shard)) underWay.merge(p.region(), 1, Integer::sum);
    });
    List<Placement.Region<ActorRef>> out = new ArrayList<>();
    for (var e : current.entrySet()) {
      int shards = e.getValue().size() + underWay.getOrDefault(e.getKey(), 0);
      out.add(new Placement.Region<>(e.getKey(), hostPort(e.getKey()), up.contains(addressOf(e.getKey())), shards));
    }
    return out;
  }

  /** A member on {@code home} is in the cluster again, reachable, but has no Up region yet. */
  private boolean rejoining(String home, List<Placement.Region<ActorRef>> regions) {
    if (home.isEmpty() || regions.stream().anyMatch(r -> r.up() && r.hostPort().equals(home))) return false;
    var state = cluster.state();
    return NodeAddress.isLiveMember(state.getMembers(), state.getUnreachable(), home);
  }

  /**
   * How long {@code home} has had no member that is not down (as first seen here); null when it
   * has one, or the home is unknown.
   */
  private Duration goneFor(String home, long now) {
    if (home.isEmpty()) return null;
    if (livingHostPorts().contains(home)) {
      goneSince.remove(home);
      return null;
    }
    Set<String> seen = seenAlive;
    if (!goneSince.containsKey(home) && seen != null && !seen.contains(home)) return margin; // gone before this coordinator
    return Duration.ofNanos(now - goneSince.computeIfAbsent(home, k -> now));
  }

  /** host:port of every member that is not down or removed */
  private Set<String> livingHostPorts() {
    Set<String> out = new java.util.HashSet<>();
    for (Member m : cluster.state().getMembers()) {
      MemberStatus s = m.status();
      if (s != MemberStatus.down() && s != MemberStatus.removed()) out.add(NodeAddress.hostPort(m.address()));
    }
    return out;
  }

  private Set<Address> upMembers() {
    var out = new java.util.HashSet<Address>();
    for (Member m : cluster.state().getMembers()) {
      if (m.status() == MemberStatus.up() && !cluster.state().getUnreachable().contains(m)) out.add(m.address());
    }
    return out;
  }

  private static Map<ActorRef, List<String>> asJava(Map<ActorRef, IndexedSeq<String>> current) {
    Map<ActorRef, List<String>> out = new java.util.HashMap<>();
    current.forEach((k, v) -> out.put(k, CollectionConverters.asJava(v)));
    return out;
  }

  private Address addressOf(ActorRef region) {
    Address a = region.path().address();
    return a.hasGlobalScope() ? a : cluster.selfAddress();
  }

  private String hostPort(ActorRef region) {
    return NodeAddress.hostPort(addressOf(region));
  }
}
