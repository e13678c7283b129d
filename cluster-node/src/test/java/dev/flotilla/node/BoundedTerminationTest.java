package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;

class BoundedTerminationTest {
  @Test
  void returnsWhenTheActorSystemTerminates() throws TimeoutException {
    assertTrue(BoundedTermination.await(CompletableFuture.completedFuture(null), new CompletableFuture<>(), Duration.ofSeconds(60),
        Duration.ofSeconds(5)));
  }

  @Test
  void aNodeThatNeverShutsDownIsWaitedForForever() {
    // no shutdown begun: the node runs; its main thread keeps waiting
    assertThrows(TimeoutException.class, () -> BoundedTermination.await(new CompletableFuture<>(), new CompletableFuture<>(),
        Duration.ofMillis(100), Duration.ofMillis(500)));
  }

  @Test
  void returnsAGraceAfterTheLastPhaseWhenTheActorSystemDoesNotTerminate() throws TimeoutException {
    // the partition chaos test's stuck node: downed, phases run, actor system never terminated
    long t0 = System.nanoTime();
    assertFalse(BoundedTermination.await(new CompletableFuture<>(), CompletableFuture.completedFuture(null), Duration.ofMillis(300),
        Duration.ofSeconds(5)));
    assertTrue(System.nanoTime() - t0 >= 250_000_000L, "waited the grace");
  }
}
