package dev.flotilla.agent.guest;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * The agent's own lines on its console (stderr, the VM's serial console), which a template's
 * agent holds back from its save until its clone has answered its first handshake.
 *
 * <p>Under TCG every line on the emulated serial console costs a clone's first handshake 16–80
 * ms: the guest's tty and UART code runs, translated afresh in each clone, a port write and an
 * interrupt per few bytes. A clone says three or four lines before it answers (its session, its
 * rebirth, its lease). Held, they are written right after the answer, in the order said, and are
 * never lost: {@link #release()} runs after every handshake's answer but a pausing one, and the
 * hold's timer releases them after {@link #MAX_HOLD_MILLIS} of the guest's time (which stands still
 * while the template is saved) should no such handshake come.
 */
public final class ConsoleLines {

  /** The longest a line waits, in the guest's monotonic time. */
  static final long MAX_HOLD_MILLIS = 2_000;

  private final PrintStream out;
  private final List<String> held = new ArrayList<>();
  private boolean holding;

  private static final ConsoleLines STDERR = new ConsoleLines(System.err);

  ConsoleLines(PrintStream out) {
    this.out = out;
  }

  /** The agent's console: its stderr. */
  public static ConsoleLines console() {
    return STDERR;
  }

  /** Writes {@code line}, or keeps it for {@link #release()} while held. */
  public void say(String line) {
    synchronized (this) {
      if (holding) {
        held.add(line);
        return;
      }
    }
    out.println(line);
  }

  /**
   * Holds lines from now on, until {@link #release()} or {@link #MAX_HOLD_MILLIS} from now, when
   * {@code timer} releases them.
   */
  public void hold(ScheduledExecutorService timer) {
    synchronized (this) {
      holding = true;
    }
    timer.schedule(this::release, MAX_HOLD_MILLIS, TimeUnit.MILLISECONDS);
  }

  /** Whether lines are held now. */
  synchronized boolean holding() {
    return holding;
  }

  /** Ends a hold: the held lines are written now. */
  public synchronized void release() {
    holding = false;
    for (String l : held) out.println(l);
    held.clear();
  }
}
