package dev.flotilla.cluster;

import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Where a shard goes, as a pure function of what the coordinator knows: the pure half of
 * {@link LeastLoadedAllocation}.
 *
 * <p>A shard whose previous node ("home", by host:port) has just restarted and is joining the
 * cluster again waits for it, up to a grace period: its VMs are still running on that host, and
 * only a node on that host can re-attach to them. Anywhere else the sandbox would start again as
 * a new incarnation.
 *
 * <p>A shard whose home was removed from the cluster and has not come back waits out the
 * down-removal margin, counted from its removal, before it starts elsewhere: that node may be a
 * partitioned minority still stopping its VMs and entities (see {@link FlotillaDowningProvider}).
 * A home that came back as a new incarnation on the same host:port needs no margin: the old JVM
 * is gone, its port is the new one's.
 *
 * <p>Otherwise the shard goes to the Up node holding the fewest shards.
 */
public final class Placement {
  private Placement() {}

  /** A registered shard region: its node's host:port, whether that node is Up and reachable, its shard count. */
  public record Region<R>(R ref, String hostPort, boolean up, int shards) {}

  /** What happens to a shard now. */
  public sealed interface Decision<R> permits Allocate, Wait {}

  /** Allocate the shard to this region. */
  public record Allocate<R>(R region, boolean home) implements Decision<R> {}

  /** Do not allocate yet; decide again within {@code atMost}. */
  public record Wait<R>(String home, Duration atMost, Why why) implements Decision<R> {}

  /** Why a shard waits. */
  public enum Why {
    /** its home node is joining again and will re-attach to its VMs */
    HOME_REJOINING,
    /** its home node was removed moments ago and may still be stopping what it ran */
    REMOVAL_MARGIN
  }

  /**
   * @param home host:port of the node the shard last lived on, empty when unknown or new
   * @param homeRejoining whether a member with that host:port is in the cluster again (joining,
   *     weakly up or up and reachable) without a registered region yet
   * @param waited how long this shard has already waited for its rejoining home
   * @param grace how long a shard may wait for its home at most
   * @param homeGoneFor how long ago its home was removed from the cluster (no member on that
   *     host:port since); null when a member is there, or the home is unknown
   * @param margin the down-removal margin
   * @return the decision; {@code Optional.empty()} when no region can take the shard at all
   */
  public static <R> Optional<Decision<R>> decide(List<Region<R>> regions, String home, boolean homeRejoining,
      Duration waited, Duration grace, Duration homeGoneFor, Duration margin) {
    if (!home.isEmpty()) {
      for (Region<R> r : regions) {
        if (r.up() && r.hostPort().equals(home)) return Optional.of(new Allocate<>(r.ref(), true));
      }
      if (homeRejoining && waited.compareTo(grace) < 0) {
        return Optional.of(new Wait<>(home, grace.minus(waited), Why.HOME_REJOINING));
      }
      if (!homeRejoining && homeGoneFor != null && homeGoneFor.compareTo(margin) < 0) {
        return Optional.of(new Wait<>(home, margin.minus(homeGoneFor), Why.REMOVAL_MARGIN));
      }
    }
    return leastLoaded(regions).map(r -> new Allocate<>(r, false));
  }

  /** The least-loaded Up region, ignoring homes (for a shard that waited its full grace). */
  public static <R> Optional<R> leastLoaded(List<Region<R>> regions) {
    return regions.stream()
        .filter(Region::up)
        .min(Comparator.<Region<R>>comparingInt(Region::shards).thenComparing(Region::hostPort))
        .map(Region::ref);
  }

  /**
   * Remembers, for every shard in {@code current}, the host:port of its region.
   *
   * @return the entries that were new or different
   */
  public static <R> Map<String, String> remember(Map<String, String> homes, Map<R, ? extends Iterable<String>> current,
      java.util.function.Function<R, String> hostPort) {
    Map<String, String> changed = new java.util.HashMap<>();
    for (var e : current.entrySet()) {
      String hp = hostPort.apply(e.getKey());
      for (String shard : e.getValue()) {
        if (!hp.equals(homes.put(shard, hp))) changed.put(shard, hp);
      }
    }
    return changed;
  }
}
