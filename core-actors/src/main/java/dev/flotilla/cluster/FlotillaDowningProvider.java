package dev.flotilla.cluster;

import com.typesafe.config.Config;
import java.time.Duration;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.actor.Props;
import org.apache.pekko.cluster.DowningProvider;
import org.apache.pekko.cluster.sbr.SplitBrainResolverProvider;
import scala.Option;
import scala.concurrent.duration.FiniteDuration;

/**
 * Pekko's split brain resolver, with the down-removal margin moved from the shard coordinator into
 * Flotilla's shard placement ({@link LeastLoadedAllocation}).
 *
 * <p>The margin keeps a removed node's shards from starting elsewhere while that node may still be
 * running them (a partitioned minority that has not yet downed itself). Pekko's coordinator
 * applies it to every region whose node was removed, including a node whose JVM died and was
 * started again on the same host:port. There the old JVM is provably gone (its port is taken by
 * the new one), yet its shards waited the margin before they could go back, while its VMs' leases
 * ran out (the chaos suite's immediate restart missed the lease on a slower machine). Placement
 * knows the difference: it waits the margin for a home that is gone and skips it for a home that
 * has come back as a new incarnation.
 *
 * <p>So this provider tells the coordinator the margin is zero, and {@link #removalMargin} gives
 * the real one (Pekko's rule: {@code pekko.cluster.down-removal-margin}, or stable-after when that
 * is off) to placement and, explicitly, to the coordinator singletons ({@link ShardingSettings}).
 * Only the shard coordinator and cluster singletons read a downing provider's margin.
 */
public final class FlotillaDowningProvider extends DowningProvider {
  private final SplitBrainResolverProvider sbr;

  public FlotillaDowningProvider(ActorSystem system) {
    this.sbr = new SplitBrainResolverProvider(system);
  }

  @Override
  public FiniteDuration downRemovalMargin() {
    return FiniteDuration.Zero();
  }

  @Override
  public Option<Props> downingActorProps() {
    return sbr.downingActorProps();
  }

  /**
   * The margin a removed node's shards wait before they start elsewhere: the split brain
   * resolver's margin when this provider is configured, zero otherwise (then the coordinator
   * applies its provider's margin itself).
   */
  public static Duration removalMargin(ActorSystem system) {
    Config config = system.settings().config();
    String configured = config.getString("pekko.cluster.downing-provider-class");
    if (!configured.equals(FlotillaDowningProvider.class.getName())) return Duration.ZERO;
    return removalMargin(config);
  }

  /**
   * The split brain resolver's down-removal margin: {@code pekko.cluster.down-removal-margin}, or
   * its stable-after when that is off (as {@link SplitBrainResolverProvider} computes it).
   */
  public static Duration removalMargin(Config config) {
    Config cluster = config.getConfig("pekko.cluster");
    String raw = cluster.getValue("down-removal-margin").unwrapped().toString().trim();
    Duration margin = raw.equals("off") ? Duration.ZERO : cluster.getDuration("down-removal-margin");
    return margin.isZero() ? cluster.getDuration("split-brain-resolver.stable-after") : margin;
  }
}
