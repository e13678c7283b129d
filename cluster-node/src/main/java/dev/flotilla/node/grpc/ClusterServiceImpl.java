package dev.flotilla.node.grpc;

import static dev.flotilla.cluster.NodeAddress.hostPort;

import dev.flotilla.api.v1.ClusterServicePowerApi;
import dev.flotilla.api.v1.DrainNodeRequest;
import dev.flotilla.api.v1.DrainNodeResponse;
import dev.flotilla.api.v1.ListNodesRequest;
import dev.flotilla.api.v1.ListNodesResponse;
import dev.flotilla.api.v1.Node;
import dev.flotilla.node.auth.TokenAuth;
import dev.flotilla.sandbox.SandboxEntity;
import io.grpc.Status;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.AskPattern;
import org.apache.pekko.cluster.Member;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.sharding.typed.GetClusterShardingStats;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Leave;
import org.apache.pekko.grpc.javadsl.Metadata;

/** {@code flotilla.v1.ClusterService}: members, their sandbox counts, and drain. */
public final class ClusterServiceImpl implements ClusterServicePowerApi {
  private final ActorSystem<?> system;
  private final TokenAuth auth;
  private final Set<String> adminTenants;
  private final Duration timeout;

  public ClusterServiceImpl(ActorSystem<?> system, TokenAuth auth, Set<String> adminTenants, Duration timeout) {
    this.system = system;
    this.auth = auth;
    this.adminTenants = Set.copyOf(adminTenants);
    this.timeout = timeout;
  }

  @Override
  public CompletionStage<ListNodesResponse> listNodes(ListNodesRequest in, Metadata md) {
    try {
      Callers.admin(auth, adminTenants, md);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
    return sandboxCounts().thenApply(counts -> {
      var b = ListNodesResponse.newBuilder();
      Cluster cluster = Cluster.get(system);
      for (Member m : cluster.state().getMembers()) b.addNodes(node(m, counts));
      return b.build();
    });
  }

  @Override
  public CompletionStage<DrainNodeResponse> drainNode(DrainNodeRequest in, Metadata md) {
    try {
      Callers.admin(auth, adminTenants, md);
      Cluster cluster = Cluster.get(system);
      Member target = null;
      int othersUp = 0;
      for (Member m : cluster.state().getMembers()) {
        if (hostPort(m.address()).equals(in.getAddress())) target = m;
        else if (m.status() == MemberStatus.up()) othersUp++;
      }
      if (target == null) {
        throw GrpcErrors.status(Status.NOT_FOUND, "no cluster member at '" + in.getAddress() + "': see `flotilla nodes` for the addresses");
      }
      if (target.status() != MemberStatus.up()) {
        throw GrpcErrors.status(Status.FAILED_PRECONDITION, "node " + in.getAddress() + " is " + target.status() + ", not Up");
      }
      if (othersUp == 0) {
        throw GrpcErrors.status(Status.FAILED_PRECONDITION,
            "node " + in.getAddress() + " is the only Up node: there is nowhere to move its sandboxes");
      }
      // A graceful leave: sharding hands the node's shards off; each sandbox stops its VM on the
      // way out (another node takes over) and starts again on the remaining nodes.
      cluster.manager().tell(Leave.create(target.address()));
      Member t = target;
      return sandboxCounts().thenApply(counts -> DrainNodeResponse.newBuilder().setNode(node(t, counts)).build());
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  private Node node(Member m, Map<String, Integer> counts) {
    Cluster cluster = Cluster.get(system);
    String address = hostPort(m.address());
    return Node.newBuilder()
        .setAddress(address)
        .setStatus(m.status().toString())
        .setReachable(!cluster.state().getUnreachable().contains(m))
        .setSandboxes(counts.getOrDefault(address, 0))
        .setAnswering(m.equals(cluster.selfMember()))
        .build();
  }

  /** Running sandbox entities per node; empty when sharding does not answer in time. */
  private CompletionStage<Map<String, Integer>> sandboxCounts() {
    return AskPattern.<org.apache.pekko.cluster.sharding.typed.ClusterShardingQuery, org.apache.pekko.cluster.sharding.ShardRegion.ClusterShardingStats>ask(
            ClusterSharding.get(system).shardState(),
            r -> new GetClusterShardingStats(SandboxEntity.ENTITY_KEY, timeout, r),
            timeout.plusSeconds(1), system.scheduler())
        .<Map<String, Integer>>thenApply(stats -> {
          Map<String, Integer> out = new HashMap<>();
          stats.getRegions().forEach((address, region) -> {
            int entities = 0;
            for (Object n : region.getStats().values()) entities += ((Number) n).intValue();
            out.put(hostPort(address), entities);
          });
          return out;
        })
        .exceptionally(e -> Map.of());
  }
}
