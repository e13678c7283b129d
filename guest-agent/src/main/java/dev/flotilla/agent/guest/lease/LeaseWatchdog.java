package dev.flotilla.agent.guest.lease;

import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * Ticks a {@link Lease} on its own daemon thread (so that a busy scheduler or worker pool never
 * looks like a frozen agent) and hands the expiry over once.
 */
public final class LeaseWatchdog {

  /** How often the lease is checked. */
  public static final Duration PERIOD = Duration.ofMillis(200);
  /** A tick this late after an announced pause means the agent was frozen (see {@link Lease.Verdict#FROZEN}). */
  public static final Duration FROZEN_GAP = Duration.ofSeconds(2);

  private final Lease lease;
  private final java.util.function.Supplier<String> what;
  private final Consumer<String> onExpiry;
  private Thread thread;

  /**
   * @param what the sandbox and incarnation, for the log lines
   * @param onExpiry gets the log line of the expiry; ends the sandbox
   */
  public LeaseWatchdog(Lease lease, String what, Consumer<String> onExpiry) {
    this(lease, () -> what, onExpiry);
  }

  /** @param what the sandbox and incarnation now (a clone's agent takes another identity), for the log lines */
  public LeaseWatchdog(Lease lease, java.util.function.Supplier<String> what, Consumer<String> onExpiry) {
    this.lease = lease;
    this.what = what;
    this.onExpiry = onExpiry;
  }

  /** Starts ticking (once; later calls do nothing). */
  public synchronized void start() {
    if (thread != null) return;
    lease.ticking();
    thread = new Thread(this::run, "agent-lease");
    thread.setDaemon(true);
    thread.start();
  }

  private void run() {
    while (true) {
      try {
        Thread.sleep(PERIOD.toMillis());
      } catch (InterruptedException e) {
        return;
      }
      Lease.Tick t = lease.tick();
      switch (t.verdict()) {
        case FROZEN -> System.err.println("flotilla-guest-agent: this agent was paused by its node for " + seconds(t.gap())
            + "; it did not act meanwhile, so its lease of " + seconds(t.lease())
            + " restarts now, with a third of it left for the resuming node to renew");
        case EXPIRED -> {
          onExpiry.accept(expiryMessage(t));
          return;
        }
        default -> { }
      }
    }
  }

  String expiryMessage(Lease.Tick t) {
    return "flotilla-guest-agent: lease expired: no renewal from the node for " + seconds(t.sinceRenewal())
        + " (lease " + seconds(t.lease()) + "); ending sandbox " + what.get()
        + " so that another node can take it over";
  }

  /** "8 s", "8.3 s", "0.2 s". */
  static String seconds(long nanos) {
    long tenths = Math.round(nanos / (double) TimeUnit.MILLISECONDS.toNanos(100));
    return (tenths % 10 == 0 ? Long.toString(tenths / 10) : String.format(Locale.ROOT, "%.1f", tenths / 10.0)) + " s";
  }
}
