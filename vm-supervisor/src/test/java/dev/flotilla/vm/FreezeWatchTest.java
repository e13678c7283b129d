package dev.flotilla.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class FreezeWatchTest {
  static final long MS = 1_000_000L;

  @Test
  void ticksWithinTheLimitNeverTrip() {
    AtomicLong now = new AtomicLong(0);
    List<Duration> freezes = new ArrayList<>();
    FreezeWatch w = new FreezeWatch(now::get, Duration.ofSeconds(11), g -> freezes.add(g));
    for (int i = 0; i < 100; i++) {
      now.addAndGet(10_900 * MS); // a busy host, but never 11 s between ticks
      w.tick();
      assertTrue(w.fresh());
    }
    assertTrue(freezes.isEmpty());
  }

  @Test
  void aThawIsStaleBeforeTheTickThreadRunsThenTheTickTripsTheWatchForGood() throws Exception {
    AtomicLong now = new AtomicLong(0);
    AtomicInteger trips = new AtomicInteger();
    FreezeWatch w = new FreezeWatch(now::get, Duration.ofSeconds(11), g -> {
      trips.incrementAndGet();
      assertEquals(15_700, g.toMillis());
      return true;
    });
    now.set(15_700 * MS); // SIGCONT: another thread runs before the tick
    assertFalse(w.fresh());
    assertTrue(w.why().contains("15.7 s"), w.why());
    SpawnGate gate = new SpawnGate();
    gate.watch(w);
    AtomicInteger spawned = new AtomicInteger();
    VmException e = assertThrows(VmException.class, () -> gate.through("sb-1", spawned::incrementAndGet));
    assertTrue(e.getMessage().contains("sb-1") && e.getMessage().contains("frozen for 15.7 s")
        && e.getMessage().contains("starts no VM"), e.getMessage());
    assertEquals(0, spawned.get());
    w.tick();
    assertEquals(1, trips.get());
    // tripped for good: fresh ticks do not make it fresh again, nor trip it twice
    for (int i = 0; i < 5; i++) {
      now.addAndGet(200 * MS);
      w.tick();
    }
    assertFalse(w.fresh());
    assertTrue(w.why().contains("fenced itself"), w.why());
    assertEquals(1, trips.get());
    assertThrows(VmException.class, () -> gate.through("sb-2", spawned::incrementAndGet));
    assertEquals(0, spawned.get());
  }

  @Test
  void anOwnerThatCarriesOnReArmsTheWatch() throws Exception {
    AtomicLong now = new AtomicLong(0);
    AtomicInteger trips = new AtomicInteger();
    FreezeWatch w = new FreezeWatch(now::get, Duration.ofSeconds(11), g -> {
      trips.incrementAndGet();
      return false; // nobody else could have taken over
    });
    SpawnGate gate = new SpawnGate();
    gate.watch(w);
    now.set(20_000 * MS);
    w.tick();
    assertTrue(w.fresh());
    assertEquals("vm", gate.through("sb-1", () -> "vm"));
    now.addAndGet(12_000 * MS);
    w.tick();
    assertEquals(2, trips.get(), "a second freeze is seen as well");
  }

  @Test
  void aLimitNearTheTickPeriodIsRefused() {
    assertThrows(IllegalArgumentException.class, () -> new FreezeWatch(System::nanoTime, Duration.ofMillis(500), g -> true));
  }

  @Test
  void theThreadTicks() {
    // a real watch on its own thread stays fresh while this JVM runs
    try (FreezeWatch w = FreezeWatch.start(Duration.ofSeconds(5), g -> true)) {
      org.awaitility.Awaitility.await().during(Duration.ofMillis(1500)).atMost(Duration.ofSeconds(10)).until(w::fresh);
    }
  }
}
