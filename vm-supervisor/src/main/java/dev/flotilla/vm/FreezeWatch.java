package dev.flotilla.vm;

import java.time.Duration;
import java.util.function.LongSupplier;

/**
 * Notices that this JVM was frozen (SIGSTOP, a stopped cgroup, a GC pause, a starved host) for
 * longer than {@code limit}: long enough for the rest of its cluster to have downed it and started
 * its sandboxes elsewhere. A thread ticks every {@link #PERIOD}; a tick that comes more than
 * {@code limit} after the one before trips the watch, once, and hands the gap to its owner.
 *
 * <p>The tick thread is only one of the threads a thaw wakes, and another may act first: a VM
 * spawn in flight when the node froze would otherwise start its VM beside the sandbox's new
 * incarnation. So {@link #fresh()} also says false when the last tick is older than the limit
 * now, before the tick thread has run: the {@link SpawnGate} asks it before every spawn.
 *
 * <p>{@link System#nanoTime()} is CLOCK_MONOTONIC, which stands still while the whole machine
 * sleeps (a laptop's suspend): only time in which the rest of the cluster ran counts.
 */
public final class FreezeWatch implements AutoCloseable {

  /** How often the watch ticks. */
  public static final Duration PERIOD = Duration.ofMillis(200);

  /** What the owner does with a freeze. */
  @FunctionalInterface
  public interface OnFreeze {
    /**
     * @param gap how long the JVM did not tick
     * @return true to stay tripped (the node fences itself); false to carry on (nobody else could
     *     have taken its sandboxes over), which re-arms the watch
     */
    boolean frozen(Duration gap);
  }

  private final LongSupplier clock;
  private final long limit;
  private final OnFreeze onFreeze;
  private volatile long lastTick;
  private volatile Duration tripped;
  private volatile Thread thread;

  /** A watch ticked by its caller ({@link #tick()}): for tests. */
  public FreezeWatch(LongSupplier clock, Duration limit, OnFreeze onFreeze) {
    if (limit.compareTo(PERIOD.multipliedBy(5)) < 0) {
      throw new IllegalArgumentException("a freeze limit of " + limit.toMillis() + " ms is too close to the tick period ("
          + PERIOD.toMillis() + " ms): a busy host would look frozen");
    }
    this.clock = clock;
    this.limit = limit.toNanos();
    this.onFreeze = onFreeze;
    this.lastTick = clock.getAsLong();
  }

  /** Starts a watch on its own daemon thread, at maximum priority. */
  public static FreezeWatch start(Duration limit, OnFreeze onFreeze) {
    FreezeWatch w = new FreezeWatch(System::nanoTime, limit, onFreeze);
    Thread t = new Thread(w::run, "flotilla-freeze-watch");
    t.setDaemon(true);
    t.setPriority(Thread.MAX_PRIORITY);
    w.thread = t;
    t.start();
    return w;
  }

  private void run() {
    while (!Thread.currentThread().isInterrupted()) {
      try {
        Thread.sleep(PERIOD.toMillis());
      } catch (InterruptedException e) {
        return;
      }
      tick();
    }
  }

  /**
   * One tick: trips the watch when the gap since the last one is over the limit.
   *
   * @return the gap
   */
  public Duration tick() {
    long now = clock.getAsLong();
    Duration gap = Duration.ofNanos(now - lastTick);
    if (tripped == null && now - lastTick > limit) {
      tripped = gap;
      if (!onFreeze.frozen(gap)) tripped = null;
    }
    lastTick = now;
    return gap;
  }

  /**
   * Whether this JVM may act as a member of its cluster now: the watch has not tripped, and its
   * last tick is within the limit (a thaw the tick thread has not seen yet says false).
   */
  public boolean fresh() {
    return tripped == null && clock.getAsLong() - lastTick <= limit;
  }

  /** Why {@link #fresh()} is false, for an error message; empty when it is true. */
  public String why() {
    Duration t = tripped;
    long since = clock.getAsLong() - lastTick;
    if (t != null) {
      return "this node was frozen for " + seconds(t) + ", longer than the " + seconds(Duration.ofNanos(limit))
          + " after which its cluster may start its sandboxes on other nodes, so it fenced itself";
    }
    if (since > limit) {
      return "this node has been frozen for " + seconds(Duration.ofNanos(since)) + ", longer than the "
          + seconds(Duration.ofNanos(limit)) + " after which its cluster may start its sandboxes on other nodes";
    }
    return "";
  }

  /** The limit. */
  public Duration limit() {
    return Duration.ofNanos(limit);
  }

  static String seconds(Duration d) {
    return String.format(java.util.Locale.ROOT, "%.1f s", d.toMillis() / 1000.0);
  }

  @Override
  public void close() {
    Thread t = thread;
    if (t != null) t.interrupt();
  }
}
