package dev.flotilla.agent.guest.lease;

import static dev.flotilla.agent.guest.lease.Lease.Verdict.EXPIRED;
import static dev.flotilla.agent.guest.lease.Lease.Verdict.FROZEN;
import static dev.flotilla.agent.guest.lease.Lease.Verdict.HELD;
import static dev.flotilla.agent.guest.lease.Lease.Verdict.NONE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class LeaseTest {

  private static final long MS = 1_000_000L;
  private static final long FROZEN_GAP = 2000 * MS;

  @Test
  void judgeIsAPureFunctionOfTimes() {
    // no lease: nothing ever expires, however old the renewal
    assertEquals(NONE, Lease.judge(100_000 * MS, 99_800 * MS, 0, 0, FROZEN_GAP));
    // renewed within the lease
    assertEquals(HELD, Lease.judge(10_000 * MS, 9_800 * MS, 2_000 * MS, 8_000 * MS, FROZEN_GAP));
    // exactly the lease is still held; one nanosecond more is not
    assertEquals(HELD, Lease.judge(10_000 * MS, 9_800 * MS, 2_000 * MS, 8_000 * MS, FROZEN_GAP));
    assertEquals(EXPIRED, Lease.judge(10_000 * MS + 1, 9_800 * MS, 2_000 * MS, 8_000 * MS, FROZEN_GAP));
    // a tick 3 s after the last one: the agent was frozen, whatever the renewal says
    assertEquals(FROZEN, Lease.judge(20_000 * MS, 17_000 * MS, 0, 8_000 * MS, FROZEN_GAP));
    // a late tick under the frozen gap is not a freeze: the lease counts on
    assertEquals(EXPIRED, Lease.judge(10_000 * MS, 8_100 * MS, 0, 8_000 * MS, FROZEN_GAP));
  }

  @Test
  void expiresWithoutRenewalsAndStaysExpired() {
    AtomicLong now = new AtomicLong(1_000 * MS);
    Lease lease = new Lease(now::get, FROZEN_GAP);
    assertEquals(NONE, tickAfter(now, lease, 200).verdict(), "no lease before a handshake states one");
    assertTrue(lease.state(1_000 * MS));
    assertFalse(lease.state(1_000 * MS), "the same lease again is no change");
    for (int i = 0; i < 5; i++) assertEquals(HELD, tickAfter(now, lease, 200).verdict(), "tick " + i);
    Lease.Tick t = tickAfter(now, lease, 200);
    assertEquals(EXPIRED, t.verdict());
    assertEquals(1_200 * MS, t.sinceRenewal());
    assertEquals(1_000 * MS, t.lease());
    lease.renew();
    lease.state(5_000 * MS);
    assertEquals(EXPIRED, tickAfter(now, lease, 200).verdict(), "nothing brings an expired lease back");
  }

  @Test
  void renewalsKeepItHeld() {
    AtomicLong now = new AtomicLong();
    Lease lease = new Lease(now::get, FROZEN_GAP);
    lease.state(1_000 * MS);
    for (int i = 0; i < 50; i++) {
      assertEquals(HELD, tickAfter(now, lease, 200).verdict(), "tick " + i);
      if (i % 3 == 0) lease.renew();
    }
  }

  @Test
  void aFreezeRestartsTheLease() {
    AtomicLong now = new AtomicLong();
    Lease lease = new Lease(now::get, FROZEN_GAP);
    lease.state(1_000 * MS);
    tickAfter(now, lease, 200);
    Lease.Tick t = tickAfter(now, lease, 30_000);
    assertEquals(FROZEN, t.verdict());
    assertEquals(30_000 * MS, t.gap());
    // a full lease from the thaw on: held until it is used up again
    for (int i = 0; i < 5; i++) assertEquals(HELD, tickAfter(now, lease, 200).verdict(), "tick " + i);
    assertEquals(EXPIRED, tickAfter(now, lease, 200).verdict());
  }

  @Test
  void leaseZeroSwitchesItOff() {
    AtomicLong now = new AtomicLong();
    Lease lease = new Lease(now::get, FROZEN_GAP);
    lease.state(1_000 * MS);
    assertTrue(lease.state(0));
    for (int i = 0; i < 20; i++) assertEquals(NONE, tickAfter(now, lease, 200).verdict());
  }

  @Test
  void secondsForLogLines() {
    assertEquals("8 s", LeaseWatchdog.seconds(8_000 * MS));
    assertEquals("8.3 s", LeaseWatchdog.seconds(8_260 * MS));
    assertEquals("0.2 s", LeaseWatchdog.seconds(200 * MS));
  }

  private static Lease.Tick tickAfter(AtomicLong now, Lease lease, long millis) {
    now.addAndGet(millis * MS);
    return lease.tick();
  }
}
