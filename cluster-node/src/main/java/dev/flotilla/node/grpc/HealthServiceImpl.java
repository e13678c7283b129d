package dev.flotilla.node.grpc;

import dev.flotilla.api.v1.SandboxService;
import dev.flotilla.grpc.health.v1.Health;
import dev.flotilla.grpc.health.v1.HealthCheckRequest;
import dev.flotilla.grpc.health.v1.HealthCheckResponse;
import dev.flotilla.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.Status;
import java.time.Duration;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.apache.pekko.NotUsed;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.stream.javadsl.Source;

/**
 * grpc.health.v1: SERVING while this node is an Up member of the cluster, so a load balancer or a
 * Kubernetes probe stops sending it requests when it leaves or is downed.
 */
public final class HealthServiceImpl implements Health {
  private static final Set<String> SERVICES = Set.of("", SandboxService.name, Health.name);
  private final ActorSystem<?> system;

  public HealthServiceImpl(ActorSystem<?> system) {
    this.system = system;
  }

  private ServingStatus status() {
    MemberStatus s = Cluster.get(system).selfMember().status();
    return s == MemberStatus.up() || s == MemberStatus.weaklyUp() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }

  @Override
  public CompletionStage<HealthCheckResponse> check(HealthCheckRequest in) {
    if (!SERVICES.contains(in.getService())) {
      return CompletableFuture.failedFuture(GrpcErrors.status(Status.NOT_FOUND, "unknown service '" + in.getService() + "'"));
    }
    return CompletableFuture.completedFuture(HealthCheckResponse.newBuilder().setStatus(status()).build());
  }

  @Override
  public Source<HealthCheckResponse, NotUsed> watch(HealthCheckRequest in) {
    if (!SERVICES.contains(in.getService())) {
      return Source.single(HealthCheckResponse.newBuilder().setStatus(ServingStatus.SERVICE_UNKNOWN).build());
    }
    // Membership changes are rare; a one-second look is cheap and needs no subscription to clean up.
    return Source.tick(Duration.ZERO, Duration.ofSeconds(1), NotUsed.getInstance())
        .map(x -> status())
        .statefulMapConcat(() -> {
          ServingStatus[] last = {null};
          return s -> {
            if (s == last[0]) return java.util.List.of();
            last[0] = s;
            return java.util.List.of(HealthCheckResponse.newBuilder().setStatus(s).build());
          };
        })
        .mapMaterializedValue(c -> NotUsed.getInstance());
  }
}
