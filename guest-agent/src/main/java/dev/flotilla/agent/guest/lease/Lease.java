package dev.flotilla.agent.guest.lease;

import java.util.function.LongSupplier;

/**
 * The agent's lease: how long it may go on without hearing from its node. The node states it in
 * every handshake; every frame from a handshaken node renews it; a {@link LeaseWatchdog} ticks
 * {@link #tick()} and ends the sandbox when it says {@link Verdict#EXPIRED}.
 *
 * <p>Run out is run out, whether or not the agent was running meanwhile: time it spent frozen
 * with its host (SIGSTOP, a cgroup freezer, a stopped VM) or starved of CPU is time in which the
 * cluster may have started the sandbox elsewhere. So a renewal or a handshake that comes after the
 * lease ran out does not revive it ({@link #renew()} and {@link #state} say false, and the agent
 * refuses to serve), even if the watchdog has not ticked yet. The one exception is a freeze the
 * node announced ({@link #state} with {@code pausing}: PauseSandbox): its node keeps the sandbox
 * meanwhile, so the lease restarts once at the thaw, with a third of it left.
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
     * The tick came far later than its period after the node announced a pause: the agent was
     * frozen by its node, which kept the sandbox meanwhile; the lease restarts now (once).
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
   * @param pauseAnnounced the node said it was about to freeze the agent (and has not resumed it)
   */
  public static Verdict judge(long now, long lastTick, long lastRenewal, long lease, long frozenGap,
      boolean pauseAnnounced) {
    if (lease <= 0) return Verdict.NONE;
    // Only a freeze the node announced is forgiven: after one the renewal looks old only because
    // the node kept its sandbox paused. An unannounced gap (a frozen host, CPU starvation) counts.
    if (pauseAnnounced && now - lastTick > frozenGap) return Verdict.FROZEN;
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
  private boolean pauseAnnounced;

  /** @param frozenGap see {@link #judge}; well above the watchdog's period */
  public Lease(LongSupplier clock, long frozenGap) {
    this.clock = clock;
    this.frozenGap = frozenGap;
    long now = clock.getAsLong();
    this.lastRenewal = now;
    this.lastTick = now;
  }

  /**
   * The lease of an accepted handshake (0: none from now on); counts as a renewal, unless the
   * lease in force has already run out.
   *
   * @param pausing the node is about to freeze the agent (PauseSandbox): the next freeze restarts
   *     the lease once instead of ending it; false (any other handshake, e.g. after a resume)
   *     withdraws an earlier announcement
   * @return false if the lease had already run out: the agent must refuse the handshake
   */
  public synchronized boolean state(long leaseNanos, boolean pausing) {
    long now = clock.getAsLong();
    if (!current(now)) return false;
    lease = Math.max(0, leaseNanos);
    lastRenewal = now;
    pauseAnnounced = pausing && lease > 0;
    return true;
  }

  /**
   * The thaw after an announced pause. The node that resumes a sandbox renews at once (and pings
   * every third of the lease at least), so the lease restarts with only a third of it left: a
   * paused VM whose node died and that somebody thaws later (its sandbox running elsewhere by
   * then) ends itself within that third instead of a whole lease.
   */
  private void thawed(long now) {
    pauseAnnounced = false;
    lastRenewal = now - (lease - lease / 3);
  }

  /** {@link #state(long, boolean)} without a pause. */
  public synchronized boolean state(long leaseNanos) {
    return state(leaseNanos, false);
  }

  /**
   * Whether the lease still holds at {@code now}; marks it expired when it has run out (a thaw
   * after an announced pause restarts it instead).
   */
  private boolean current(long now) {
    if (expired) return false;
    if (lease <= 0 || now - lastRenewal <= lease) return true;
    if (pauseAnnounced) {
      // the node's first frame after a resume came before the watchdog's first tick
      thawed(now);
      return true;
    }
    expired = true;
    return false;
  }

  /**
   * The watchdog starts ticking now: the gap before its first tick counts from here, not from when
   * this lease was made (a handshake that comes late is not a frozen agent).
   */
  public synchronized void ticking() {
    lastTick = clock.getAsLong();
  }

  /**
   * A frame from a handshaken node.
   *
   * @return false if the lease had already run out (it stays so): the agent must not serve
   */
  public synchronized boolean renew() {
    long now = clock.getAsLong();
    if (!current(now)) return false;
    lastRenewal = now;
    return true;
  }

  /** Whether the lease has run out (whether or not the watchdog has noticed yet). */
  public synchronized boolean expired() {
    return !current(clock.getAsLong());
  }

  /** The watchdog's tick. After {@link Verdict#EXPIRED} the lease stays expired: nothing renews it. */
  public synchronized Tick tick() {
    long now = clock.getAsLong();
    if (expired) return new Tick(Verdict.EXPIRED, now - lastRenewal, now - lastTick, lease);
    Verdict v = judge(now, lastTick, lastRenewal, lease, frozenGap, pauseAnnounced);
    Tick t = new Tick(v, now - lastRenewal, now - lastTick, lease);
    lastTick = now;
    if (v == Verdict.FROZEN) thawed(now);
    if (v == Verdict.EXPIRED) expired = true;
    return t;
  }

  public synchronized long lease() {
    return lease;
  }
}
