package dev.flotilla.tenant;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps every tenant's ledger true to the sandboxes that exist: a reservation whose sandbox was
 * never created (a create that ended in doubt and was not retried) or is deleted (a node that died
 * between a delete and its release) is released, so the quota it holds comes back. A reservation
 * younger than the grace is left alone: its create may still be under way.
 *
 * <p>The logic is here, over two small ports; the node runs one pass at start and then
 * periodically, on one node of the cluster (a cluster singleton).
 */
public final class LedgerReconciler {
  private static final Logger log = LoggerFactory.getLogger(LedgerReconciler.class);
  private static final int PAGE = 200;

  private LedgerReconciler() {}

  /** A tenant's ledger. */
  public interface Ledger {
    CompletionStage<TenantEntity.Page> list(String tenant, String afterId, int limit);

    CompletionStage<Void> release(String tenant, String sandboxId);
  }

  /** Whether a sandbox exists (created and not deleted). */
  @FunctionalInterface
  public interface Sandboxes {
    CompletionStage<Boolean> exists(String sandboxId);
  }

  /** What a pass saw: reservations checked (old enough to be), and released. */
  public record Result(int checked, int released, List<String> releasedIds) {}

  /** One pass over {@code tenants}, one reservation at a time (the cluster's other work goes first). */
  public static CompletionStage<Result> pass(Ledger ledger, Sandboxes sandboxes, Iterable<String> tenants, Instant now, Duration grace) {
    List<String> released = new ArrayList<>();
    int[] checked = {0};
    CompletionStage<Void> chain = CompletableFuture.completedFuture(null);
    for (String tenant : tenants) {
      chain = chain.thenCompose(x -> tenantPass(ledger, sandboxes, tenant, "", now, grace, checked, released));
    }
    return chain.thenApply(x -> new Result(checked[0], released.size(), List.copyOf(released)));
  }

  private static CompletionStage<Void> tenantPass(Ledger ledger, Sandboxes sandboxes, String tenant, String after, Instant now,
      Duration grace, int[] checked, List<String> released) {
    return ledger.list(tenant, after, PAGE).thenCompose(page -> {
      CompletionStage<Void> chain = CompletableFuture.completedFuture(null);
      for (TenantEntity.Reservation r : page.reservations()) {
        if (r.createdAt() != null && r.createdAt().plus(grace).isAfter(now)) continue;
        chain = chain.thenCompose(x -> sandboxes.exists(r.sandboxId()).thenCompose(exists -> {
          checked[0]++;
          if (exists) return CompletableFuture.<Void>completedFuture(null);
          log.info("tenant {}: releasing the reservation of sandbox {}, which does not exist (a create in doubt, or a delete"
              + " whose release was lost)", tenant, r.sandboxId());
          return ledger.release(tenant, r.sandboxId()).thenRun(() -> released.add(r.sandboxId()));
        }));
      }
      if (!page.more() || page.reservations().isEmpty()) return chain;
      String last = page.reservations().get(page.reservations().size() - 1).sandboxId();
      return chain.thenCompose(x -> tenantPass(ledger, sandboxes, tenant, last, now, grace, checked, released));
    });
  }

  private enum Tick { INSTANCE }

  private record Done(Result result, Throwable error) {}

  /**
   * Runs the passes on one node of the cluster (a cluster singleton): the first after
   * {@code first}, then every {@code interval}; none while the journal is down or a pass runs.
   *
   * @param tenants the tenants to go over (those the node's tokens name)
   */
  public static void start(org.apache.pekko.actor.typed.ActorSystem<?> system, java.util.function.Supplier<java.util.Set<String>> tenants,
      Duration first, Duration interval, Duration grace, Duration askTimeout, dev.flotilla.sandbox.JournalStatus journal) {
    var sharding = org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding.get(system);
    Ledger ledger = new Ledger() {
      @Override
      public CompletionStage<TenantEntity.Page> list(String tenant, String afterId, int limit) {
        return sharding.entityRefFor(TenantEntity.ENTITY_KEY, tenant)
            .ask(r -> new TenantEntity.ListReservations(afterId, limit, r), askTimeout);
      }

      @Override
      public CompletionStage<Void> release(String tenant, String sandboxId) {
        return sharding.entityRefFor(TenantEntity.ENTITY_KEY, tenant)
            .<org.apache.pekko.pattern.StatusReply<org.apache.pekko.Done>>ask(r -> new TenantEntity.Release(sandboxId, r), askTimeout)
            .thenAccept(reply -> {
              if (reply.isError()) throw new java.util.concurrent.CompletionException(reply.getError());
            });
      }
    };
    Sandboxes sandboxes = id -> sharding.entityRefFor(dev.flotilla.sandbox.SandboxEntity.ENTITY_KEY, id)
        .ask(dev.flotilla.sandbox.SandboxEntity.Inspect::new, askTimeout)
        .thenApply(dev.flotilla.sandbox.SandboxEntity.Inspection::exists);
    var behavior = org.apache.pekko.actor.typed.javadsl.Behaviors.<Object>setup(ctx ->
        org.apache.pekko.actor.typed.javadsl.Behaviors.withTimers(timers -> {
          timers.startTimerWithFixedDelay(Tick.INSTANCE, first, interval);
          boolean[] running = {false};
          return org.apache.pekko.actor.typed.javadsl.Behaviors.receiveMessage(m -> {
            if (m == Tick.INSTANCE) {
              var down = journal.unavailable();
              if (running[0] || down.isPresent()) return org.apache.pekko.actor.typed.javadsl.Behaviors.same();
              running[0] = true;
              ctx.pipeToSelf(pass(ledger, sandboxes, tenants.get(), Instant.now(), grace), Done::new);
            } else if (m instanceof Done d) {
              running[0] = false;
              if (d.error() != null) {
                log.warn("tenant ledger reconciliation stopped early, next pass in {}: {}", interval, d.error().toString());
              } else if (d.result().released() > 0) {
                log.info("tenant ledger reconciliation: {} reservations checked, {} released", d.result().checked(), d.result().released());
              }
            }
            return org.apache.pekko.actor.typed.javadsl.Behaviors.same();
          });
        }));
    org.apache.pekko.cluster.typed.ClusterSingleton.get(system).init(
        org.apache.pekko.cluster.typed.SingletonActor.of(behavior, "tenant-ledger-reconciler"));
  }
}
