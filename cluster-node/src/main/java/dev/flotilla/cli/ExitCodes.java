package dev.flotilla.cli;

/** The CLI's own exit codes (documented in docs/cli.md); {@code exec} passes the remote code through. */
public final class ExitCodes {
  public static final int OK = 0;
  /** The node answered and refused or failed the request. */
  public static final int REQUEST_FAILED = 1;
  /** Bad command line: nothing was sent. */
  public static final int USAGE = 2;
  /** No node answered in time: not running, unreachable, or overloaded. Safe to retry. */
  public static final int UNAVAILABLE = 3;
  /** stdout was closed under a streaming command (128 + SIGPIPE), as shells report it. */
  public static final int BROKEN_PIPE = 141;
  /** Interrupted by Ctrl-C (128 + SIGINT), as shells report it. */
  public static final int INTERRUPTED = 130;

  private ExitCodes() {}
}
