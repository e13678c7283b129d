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
    assertEquals(NONE, Lease.judge(100_000 * MS, 99_800 * MS, 0, 0, FROZEN_GAP, false));
    // renewed within the lease
    assertEquals(HELD, Lease.judge(10_000 * MS, 9_800 * MS, 2_000 * MS, 8_000 * MS, FROZEN_GAP, false));
    // exactly the lease is still held; one nanosecond more is not
    assertEquals(HELD, Lease.judge(10_000 * MS, 9_800 * MS, 2_000 * MS, 8_000 * MS, FROZEN_GAP, false));
    assertEquals(EXPIRED, Lease.judge(10_000 * MS + 1, 9_800 * MS, 2_000 * MS, 8_000 * MS, FROZEN_GAP, false));
    // a tick 3 s after the last one after the node announced a pause: frozen by its node
    assertEquals(FROZEN, Lease.judge(20_000 * MS, 17_000 * MS, 0, 8_000 * MS, FROZEN_GAP, true));
    // the same gap unannounced (a frozen host, a starved agent): the lease ran out meanwhile
    assertEquals(EXPIRED, Lease.judge(20_000 * MS, 17_000 * MS, 0, 8_000 * MS, FROZEN_GAP, false));
    // and a late tick within the lease is just late
    assertEquals(HELD, Lease.judge(7_000 * MS, 4_000 * MS, 0, 8_000 * MS, FROZEN_GAP, false));
    // a late tick under the frozen gap is not a freeze: the lease counts on
    assertEquals(EXPIRED, Lease.judge(10_000 * MS, 8_100 * MS, 0, 8_000 * MS, FROZEN_GAP, true));
  }

  @Test
  void expiresWithoutRenewalsAndStaysExpired() {
    AtomicLong now = new AtomicLong(1_000 * MS);
    Lease lease = new Lease(now::get, FROZEN_GAP);
    assertEquals(NONE, tickAfter(now, lease, 200).verdict(), "no lease before a handshake states one");
    assertTrue(lease.state(1_000 * MS));
    assertTrue(lease.state(1_000 * MS), "the same lease again is accepted");
    for (int i = 0; i < 5; i++) assertEquals(HELD, tickAfter(now, lease, 200).verdict(), "tick " + i);
    Lease.Tick t = tickAfter(now, lease, 200);
    assertEquals(EXPIRED, t.verdict());
    assertEquals(1_200 * MS, t.sinceRenewal());
    assertEquals(1_000 * MS, t.lease());
    assertFalse(lease.renew());
    assertFalse(lease.state(5_000 * MS));
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
  void anAnnouncedPauseRestartsTheLeaseOnceAtTheThaw() {
    AtomicLong now = new AtomicLong();
    Lease lease = new Lease(now::get, FROZEN_GAP);
    assertTrue(lease.state(1_000 * MS, true));
    tickAfter(now, lease, 200);
    Lease.Tick t = tickAfter(now, lease, 30_000);
    assertEquals(FROZEN, t.verdict());
    assertEquals(30_000 * MS, t.gap());
    // a third of the lease from the thaw on (the resuming node renews at once): held until used up
    assertEquals(HELD, tickAfter(now, lease, 333).verdict());
    assertEquals(EXPIRED, tickAfter(now, lease, 1).verdict());
  }

  @Test
  void anAnnouncementIsUsedUpByOneThaw() {
    AtomicLong now = new AtomicLong();
    Lease lease = new Lease(now::get, FROZEN_GAP);
    lease.state(1_000 * MS, true);
    assertEquals(FROZEN, tickAfter(now, lease, 30_000).verdict());
    assertTrue(lease.renew());
    // a second freeze, unannounced: a frozen host
    assertEquals(EXPIRED, tickAfter(now, lease, 30_000).verdict());
  }

  @Test
  void aHandshakeWithoutPausingWithdrawsTheAnnouncement() {
    AtomicLong now = new AtomicLong();
    Lease lease = new Lease(now::get, FROZEN_GAP);
    lease.state(1_000 * MS, true);
    now.addAndGet(500 * MS); // paused too briefly for the watchdog to notice, then resumed
    assertTrue(lease.state(1_000 * MS, false));
    assertEquals(EXPIRED, tickAfter(now, lease, 30_000).verdict(), "a later unannounced freeze counts");
  }

  @Test
  void anUnannouncedFreezeLongerThanTheLeaseEndsIt() {
    // a host frozen with its VMs, or an agent starved of CPU: its ticks come late
    AtomicLong now = new AtomicLong();
    Lease lease = new Lease(now::get, FROZEN_GAP);
    lease.state(1_000 * MS);
    tickAfter(now, lease, 200);
    Lease.Tick t = tickAfter(now, lease, 30_000);
    assertEquals(EXPIRED, t.verdict());
    assertEquals(30_200 * MS, t.sinceRenewal());
  }

  @Test
  void aFrameThatComesAfterTheLeaseRanOutDoesNotReviveIt() {
    // the thawed node's ping reaches the thawed agent before its watchdog's first tick
    AtomicLong now = new AtomicLong();
    Lease lease = new Lease(now::get, FROZEN_GAP);
    lease.state(1_000 * MS);
    now.addAndGet(30_000 * MS);
    assertFalse(lease.renew(), "refused: the lease ran out while nobody ticked");
    assertTrue(lease.expired());
    assertFalse(lease.state(1_000 * MS), "a new handshake of the same incarnation does not revive it either");
    assertEquals(EXPIRED, lease.tick().verdict());
  }

  @Test
  void afterAnAnnouncedPauseTheFirstFrameMayComeBeforeTheWatchdog() {
    AtomicLong now = new AtomicLong();
    Lease lease = new Lease(now::get, FROZEN_GAP);
    lease.state(1_000 * MS, true);
    now.addAndGet(30_000 * MS);
    assertTrue(lease.renew(), "the resumed node's ping restarts the lease");
    for (int i = 0; i < 5; i++) assertEquals(HELD, tickAfter(now, lease, 200).verdict(), "tick " + i);
    assertEquals(EXPIRED, tickAfter(now, lease, 1).verdict(), "a full lease from that renewal, no more");
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
