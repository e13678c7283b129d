package dev.flotilla.agent.protocol.client;

/**
 * Receives a process's output. Called on the connection's reader thread, so implementations
 * must not block: hand the data off and return.
 *
 * <p>Flow control: each chunk counts against the channel's window until the sink calls
 * {@code release.run()} for it (at once, or later when its consumer has taken the data). The
 * agent stops reading the process's pipe while the window is used up, so the process itself
 * blocks and nothing is buffered without bound on either side.
 */
public interface OutputSink {

  enum Channel {
    STDOUT,
    STDERR
  }

  void onData(Channel channel, byte[] data, Runnable release);

  /** The channel reached end of file. */
  void onEnd(Channel channel);

  /** The output stream broke (connection lost); no more calls follow. */
  default void onError(Throwable error) {}

  /** Takes every chunk and forgets it at once (for processes whose output nobody reads). */
  OutputSink DISCARD = new OutputSink() {
    @Override
    public void onData(Channel channel, byte[] data, Runnable release) {
      release.run();
    }

    @Override
    public void onEnd(Channel channel) {}
  };
}
