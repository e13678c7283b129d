package dev.flotilla.agent.guest.lease;

import java.util.function.LongSupplier;

/**
 * The agent's lease: how long it may go on without hearing from its node. The node states it in
 * every handshake; every frame from a handshaken node renews it; a {@link LeaseWatchdog} ticks
 * {@link #tick()} and ends the sandbox when it says {@link Verdict#EXPIRED}.
 *
 * <p>All times come from one monotonic clock (nanoseconds, {@link System#nanoTime()} unless a
 * test supplies another). The clock survives disconnects: a node that reconnects and handshakes
 * renews the lease like any other frame.
 */
public final class Lease {

  /** What one tick of the watchdog found. */
  public enum Verdict {
    /** No lease in force (none stated yet, or the last handshake said 0). */
    NONE,
    /** Renewed within the lease. */
    HELD,
    /**
     * The tick came far later than its period: this agent was not running (cgroup freezer,
     * SIGSTOP, a paused VM, a long stall), so it did not act meanwhile; the lease restarts now.
     */
    FROZEN,
    /** No renewal within the lease: end the sandbox. */
    EXPIRED
  }

  /**
   * The watchdog's decision as a pure function of times (nanoseconds of one monotonic clock).
   *
   * @param now this tick
   * @param lastTick the previous tick (or when the watchdog started)
   * @param lastRenewal the last renewal (or when the lease was stated)
   * @param lease the lease, 0 or less for none
   * @param frozenGap a gap between ticks longer than this means the agent itself was frozen
   */
  public static Verdict judge(long now, long lastTick, long lastRenewal, long lease, long frozenGap) {
    if (lease <= 0) return Verdict.NONE;
    // Frozen first: after a pause the renewal looks old only because nobody was running.
    if (now - lastTick > frozenGap) return Verdict.FROZEN;
    if (now - lastRenewal > lease) return Verdict.EXPIRED;
    return Verdict.HELD;
  }

  /**
   * One tick's verdict with the figures a log line needs.
   *
   * @param sinceRenewal time since the last renewal, before any restart of the clock
   * @param gap time since the previous tick
   * @param lease the lease in force
   */
  public record Tick(Verdict verdict, long sinceRenewal, long gap, long lease) {}

  private final LongSupplier clock;
  private final long frozenGap;
  private long lease;
  private long lastRenewal;
  private long lastTick;
  private boolean expired;

  /** @param frozenGap see {@link #judge}; well above the watchdog's period */
  public Lease(LongSupplier clock, long frozenGap) {
    this.clock = clock;
    this.frozenGap = frozenGap;
    long now = clock.getAsLong();
    this.lastRenewal = now;
    this.lastTick = now;
  }

  /**
   * The lease of an accepted handshake (0: none from now on); counts as a renewal.
   *
   * @return true if this changed the lease in force
   */
  public synchronized boolean state(long leaseNanos) {
    if (expired) return false;
    long before = lease;
    lease = Math.max(0, leaseNanos);
    lastRenewal = clock.getAsLong();
    return before != lease;
  }

  /**
   * The watchdog starts ticking now: the gap before its first tick counts from here, not from when
   * this lease was made (a handshake that comes late is not a frozen agent).
   */
  public synchronized void ticking() {
    lastTick = clock.getAsLong();
  }

  /** A frame from a handshaken node. */
  public synchronized void renew() {
    if (!expired) lastRenewal = clock.getAsLong();
  }

  /** The watchdog's tick. After {@link Verdict#EXPIRED} the lease stays expired: nothing renews it. */
  public synchronized Tick tick() {
    long now = clock.getAsLong();
    if (expired) return new Tick(Verdict.EXPIRED, now - lastRenewal, now - lastTick, lease);
    Verdict v = judge(now, lastTick, lastRenewal, lease, frozenGap);
    Tick t = new Tick(v, now - lastRenewal, now - lastTick, lease);
    lastTick = now;
    if (v == Verdict.FROZEN) lastRenewal = now;
    if (v == Verdict.EXPIRED) expired = true;
    return t;
  }

  public synchronized long lease() {
    return lease;
  }
}
