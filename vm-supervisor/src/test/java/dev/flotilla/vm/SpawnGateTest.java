package dev.flotilla.vm;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class SpawnGateTest {
  @Test
  void aClosedGateRefusesEverySpawnWithoutRunningIt() throws Exception {
    SpawnGate gate = new SpawnGate();
    assertEquals("vm", gate.through("sb-1", () -> "vm"));
    assertTrue(gate.close(Duration.ofSeconds(1)));
    AtomicInteger ran = new AtomicInteger();
    VmException e = assertThrows(VmException.class, () -> gate.through("sb-2", ran::incrementAndGet));
    assertTrue(e.getMessage().contains("sb-2") && e.getMessage().contains("another node"), e.getMessage());
    assertEquals(0, ran.get());
  }

  @Test
  void closeWaitsForTheSpawnInProgressToSaveItsHandle() throws Exception {
    SpawnGate gate = new SpawnGate();
    CountDownLatch entered = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    AtomicBoolean saved = new AtomicBoolean();
    CompletableFuture<Object> spawn = CompletableFuture.supplyAsync(() -> {
      try {
        return gate.through("sb-1", () -> {
          entered.countDown();
          await().atMost(Duration.ofSeconds(30)).until(() -> release.getCount() == 0);
          saved.set(true); // the handle is written
          return "vm";
        });
      } catch (VmException e) {
        throw new IllegalStateException(e);
      }
    });
    assertTrue(entered.await(30, TimeUnit.SECONDS));
    CompletableFuture<Boolean> closing = CompletableFuture.supplyAsync(() -> {
      boolean quiet = gate.close(Duration.ofSeconds(30));
      return quiet && saved.get();
    });
    await().atMost(Duration.ofSeconds(30)).until(gate::closed);
    // a spawn that comes while the gate closes is refused at once, not queued behind the close
    assertThrows(VmException.class, () -> gate.through("sb-2", () -> "late"));
    assertFalse(closing.isDone(), "close returned while a spawn was still in progress");
    release.countDown();
    assertTrue(closing.get(30, TimeUnit.SECONDS), "close returned only after the spawn had saved its handle");
    assertEquals("vm", spawn.get(30, TimeUnit.SECONDS));
  }

  @Test
  void closeSaysSoWhenASpawnOutlastsItsWait() throws Exception {
    SpawnGate gate = new SpawnGate();
    CountDownLatch entered = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    CompletableFuture<Object> spawn = CompletableFuture.supplyAsync(() -> {
      try {
        return gate.through("sb-1", () -> {
          entered.countDown();
          await().atMost(Duration.ofSeconds(30)).until(() -> release.getCount() == 0);
          return "vm";
        });
      } catch (VmException e) {
        throw new IllegalStateException(e);
      }
    });
    assertTrue(entered.await(30, TimeUnit.SECONDS));
    assertFalse(gate.close(Duration.ofMillis(50)));
    assertTrue(gate.closed());
    release.countDown();
    assertEquals("vm", spawn.get(30, TimeUnit.SECONDS));
  }
}
