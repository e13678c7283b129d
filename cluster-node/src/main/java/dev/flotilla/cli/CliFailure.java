package dev.flotilla.cli;

/**
 * A failure already phrased for the user: printed as one line, then the CLI exits with the code.
 * A null message prints nothing (the reader of stdout went away: there is no one to tell).
 */
public final class CliFailure extends RuntimeException {
  private final int exitCode;

  public CliFailure(int exitCode, String message) {
    super(message, null, false, false);
    this.exitCode = exitCode;
  }

  public int exitCode() {
    return exitCode;
  }
}
