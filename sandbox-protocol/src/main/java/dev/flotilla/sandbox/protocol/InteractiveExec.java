package dev.flotilla.sandbox.protocol;

/**
 * An exec whose stdin the client writes while it runs ({@link ExecInput}), with a
 * pseudo-terminal when {@code tty}: the process's stdout and stderr are then one stream (stdout),
 * and Ctrl-C, window sizes and TERM work as in a terminal.
 *
 * @param exec what to run
 * @param tty a terminal of {@code rows} x {@code cols} (0: 24 x 80) with TERM {@code term} (empty:
 *     xterm) unless the exec's env names one
 */
public record InteractiveExec(ExecSpec exec, boolean tty, int rows, int cols, String term) {
  /** The largest terminal side accepted (a terminal's winsize holds 16 bits). */
  public static final int MAX_SIDE = 0xffff;

  public InteractiveExec {
    java.util.Objects.requireNonNull(exec, "exec");
    term = term == null ? "" : term;
    checkSize(rows, cols);
  }

  /** Pipes only: stdin written by the client, no terminal. */
  public static InteractiveExec pipes(ExecSpec exec) {
    return new InteractiveExec(exec, false, 0, 0, "");
  }

  static void checkSize(int rows, int cols) {
    if (rows < 0 || cols < 0 || rows > MAX_SIDE || cols > MAX_SIDE) {
      throw new IllegalArgumentException("rows and cols must be 0-" + MAX_SIDE + " (0: the default 24 x 80)");
    }
  }
}
