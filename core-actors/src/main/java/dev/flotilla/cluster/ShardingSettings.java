package dev.flotilla.cluster;

import java.time.Duration;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Adapter;
import org.apache.pekko.cluster.sharding.typed.ClusterShardingSettings;

/** Sharding settings every Flotilla entity type uses. */
public final class ShardingSettings {
  private ShardingSettings() {}

  /**
   * The configured settings, with the down-removal margin given to the shard coordinator's
   * singleton explicitly: a coordinator whose node was removed starts elsewhere only after it.
   * (The singleton would otherwise take its downing provider's margin, which
   * {@link FlotillaDowningProvider} sets to zero for the coordinator's sake.)
   */
  public static ClusterShardingSettings of(ActorSystem<?> system) {
    ClusterShardingSettings s = ClusterShardingSettings.create(system);
    Duration margin = FlotillaDowningProvider.removalMargin(Adapter.toClassic(system));
    if (margin.isZero()) return s;
    return s.withCoordinatorSingletonSettings(s.coordinatorSingletonSettings().withRemovalMargin(margin));
  }
}
