package dev.flotilla.sandbox.protocol;

import org.apache.pekko.util.ByteString;

/**
 * What a client sends to an interactive exec while it runs, in order: bytes for its stdin, a new
 * terminal size, a signal, the end of its stdin. Crosses nodes inside a StreamRef (core-actors
 * registers these types with Kryo).
 */
public sealed interface ExecInput {

  /** Bytes for the process's stdin (with a terminal: keystrokes, 0x03 is Ctrl-C). */
  record Stdin(ByteString data) implements ExecInput {}

  /** The terminal is now {@code rows} x {@code cols}; the process gets SIGWINCH. */
  record Resize(int rows, int cols) implements ExecInput {
    public Resize {
      InteractiveExec.checkSize(rows, cols);
    }
  }

  /** Signal number {@code signal} for the process (see {@link Signals}). */
  record Signal(int signal) implements ExecInput {
    public Signal {
      if (signal < 1 || signal > Signals.MAX) throw new IllegalArgumentException("signal must be 1-" + Signals.MAX);
    }
  }

  /** The end of stdin (with a terminal: an end-of-file, as ^D). Later stdin is refused. */
  record CloseStdin() implements ExecInput {}
}
