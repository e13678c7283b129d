package dev.flotilla.cli;

import java.io.PrintStream;

/** Writing what a stream delivers, as it arrives. */
final class Output {
  private Output() {}

  /**
   * Writes and flushes at once, so output shows up while the stream is still open. When the
   * reader has gone (`flotilla watch ID | head -3`), ends the command the way SIGPIPE would,
   * which also cancels the stream instead of reading it into nowhere until the sandbox is gone.
   */
  static void writeLive(PrintStream out, byte[] bytes) {
    out.write(bytes, 0, bytes.length);
    out.flush();
    if (out.checkError()) {
      throw new CliFailure(ExitCodes.BROKEN_PIPE, null);
    }
  }
}
