package dev.flotilla.node;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.pekko.Done;
import org.apache.pekko.actor.CoordinatedShutdown;
import org.apache.pekko.actor.typed.ActorSystem;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A node process must end once its coordinated shutdown has run (SIGTERM, or the cluster downed
 * it), even when the actor system does not terminate. The partition chaos test saw a downed node
 * whose {@code actor-system-terminate} phase timed out stay alive for minutes: gRPC unbound, out of
 * the cluster, its VMs fenced, but never exiting (Pekko's dispatcher threads are not daemons), so
 * nothing that restarts exited nodes would ever bring it back. The node's {@code main} waits for
 * termination or, at most, {@code grace} after the last phase began, and then exits.
 */
final class BoundedTermination {
  private static final Logger log = LoggerFactory.getLogger(BoundedTermination.class);

  private BoundedTermination() {}

  /** Completes when coordinated shutdown reaches its last phase (all others done or timed out). */
  static CompletableFuture<Void> lastPhase(ActorSystem<?> system) {
    CompletableFuture<Void> reached = new CompletableFuture<>();
    CoordinatedShutdown.get(system).addTask(CoordinatedShutdown.PhaseActorSystemTerminate(), "flotilla-bounded-termination", () -> {
      reached.complete(null);
      return CompletableFuture.completedFuture(Done.getInstance());
    });
    return reached;
  }

  /**
   * Returns when {@code terminated} completes, or {@code grace} after {@code lastPhase} completed
   * while {@code terminated} still has not (then it says so in the log).
   *
   * @return true if the actor system terminated
   */
  static boolean await(CompletionStage<?> terminated, CompletionStage<?> lastPhase, Duration grace) {
    CompletableFuture<Object> done = new CompletableFuture<>();
    terminated.whenComplete((v, e) -> done.complete(Boolean.TRUE));
    lastPhase.whenComplete((v, e) -> CompletableFuture.delayedExecutor(grace.toMillis(), TimeUnit.MILLISECONDS)
        .execute(() -> done.complete(Boolean.FALSE)));
    while (true) {
      try {
        boolean ok = (Boolean) done.get();
        if (!ok) {
          log.warn("the actor system did not terminate within {} ms of coordinated shutdown's last phase: exiting anyway",
              grace.toMillis());
        }
        return ok;
      } catch (InterruptedException e) {
        // the node's main thread waits until the end, whatever interrupts it
      } catch (ExecutionException e) {
        return false;
      }
    }
  }

  /** For tests: {@link #await} with a timeout of its own. */
  static boolean await(CompletionStage<?> terminated, CompletionStage<?> lastPhase, Duration grace, Duration atMost)
      throws TimeoutException {
    CompletableFuture<Boolean> r = CompletableFuture.supplyAsync(() -> await(terminated, lastPhase, grace));
    try {
      return r.get(atMost.toMillis(), TimeUnit.MILLISECONDS);
    } catch (InterruptedException | ExecutionException e) {
      throw new IllegalStateException(e);
    }
  }
}
