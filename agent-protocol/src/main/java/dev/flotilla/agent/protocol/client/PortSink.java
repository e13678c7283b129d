package dev.flotilla.agent.protocol.client;

/**
 * Receives what the socket of a forwarded port read in the sandbox. Called on the connection's
 * reader thread, so implementations must not block: hand the data off and return.
 *
 * <p>Flow control as for {@link OutputSink}: each chunk counts against the port's window until
 * {@code release.run()} is called for it; the agent stops reading the socket while the window is
 * used up, so the sandbox's server blocks and nothing is buffered without bound.
 */
public interface PortSink {

  void onData(byte[] data, Runnable release);

  /** The socket in the sandbox read its end: its server half-closed. Nothing more comes. */
  void onEnd();

  /**
   * The connection was aborted (reset in the sandbox, the agent connection lost, or aborted by
   * this side); no more calls follow.
   */
  void onError(Throwable error);
}
