package dev.flotilla.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The terminal on the CLI's stdin, driven with {@code stty} (POSIX; it acts on its own stdin, which
 * is the CLI's): whether there is one, its size, raw mode, and putting its settings back. Raw mode
 * turns Ctrl-C, Ctrl-Z and Ctrl-\ into bytes for the remote terminal, and stops local echo and line
 * editing, as {@code docker exec -it} does.
 */
final class LocalTerminal {
  private final String saved;
  private volatile boolean restored;
  private final Thread restoreOnExit = new Thread(this::restore, "flotilla-cli-restore-terminal");

  private LocalTerminal(String saved) {
    this.saved = saved;
  }

  /** Whether the CLI's stdin is a terminal. */
  static boolean stdinIsATerminal() {
    try {
      return run(List.of("sh", "-c", "test -t 0")).code == 0;
    } catch (IOException e) {
      return false;
    }
  }

  /**
   * Saves the terminal's settings and puts it in raw mode; {@link #restore} (also run at JVM exit,
   * however the CLI ends) puts them back.
   */
  static LocalTerminal raw() {
    Result g = stty("-g");
    if (g.code != 0 || g.out.isBlank()) throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot read the terminal's settings: " + g.out.strip());
    LocalTerminal t = new LocalTerminal(g.out.strip());
    Runtime.getRuntime().addShutdownHook(t.restoreOnExit);
    Result raw = stty("raw", "-echo");
    if (raw.code != 0) {
      t.restore();
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot put the terminal in raw mode: " + raw.out.strip());
    }
    return t;
  }

  /** Rows and columns, or null when the terminal does not say. */
  static int[] size() {
    Result r = stty("size");
    String[] parts = r.out.strip().split("\\s+");
    if (r.code != 0 || parts.length != 2) return null;
    try {
      int rows = Integer.parseInt(parts[0]);
      int cols = Integer.parseInt(parts[1]);
      return rows > 0 && cols > 0 && rows <= 0xffff && cols <= 0xffff ? new int[] {rows, cols} : null;
    } catch (NumberFormatException e) {
      return null;
    }
  }

  /** Puts the saved settings back, once. */
  synchronized void restore() {
    if (restored) return;
    restored = true;
    stty(saved);
    try {
      Runtime.getRuntime().removeShutdownHook(restoreOnExit);
    } catch (IllegalStateException shuttingDown) {
      // this is the hook running
    }
  }

  private static Result stty(String... args) {
    List<String> cmd = new ArrayList<>(List.of("stty"));
    cmd.addAll(List.of(args));
    try {
      return run(cmd);
    } catch (IOException e) {
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot run stty for the terminal: " + e.getMessage());
    }
  }

  private record Result(int code, String out) {}

  private static Result run(List<String> cmd) throws IOException {
    Process p = new ProcessBuilder(cmd).redirectInput(ProcessBuilder.Redirect.INHERIT).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    try {
      if (!p.waitFor(5, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        return new Result(-1, cmd + " did not finish");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return new Result(-1, "interrupted");
    }
    return new Result(p.exitValue(), out);
  }
}
