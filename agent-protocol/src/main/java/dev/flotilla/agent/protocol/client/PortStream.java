package dev.flotilla.agent.protocol.client;

import java.util.concurrent.CompletableFuture;

/**
 * The host's end of one forwarded TCP connection in the sandbox (see {@link AgentClient#openPort}):
 * bytes go in with {@link #write}, within the credit the agent grants, and come out through the
 * {@link PortSink} given at the open.
 */
public interface PortStream {

  /** Where the agent connected, as it says (e.g. "127.0.0.1:8080"). */
  String address();

  /**
   * Sends {@code data} to the socket in the sandbox. Completes once all of it has been handed to
   * the connection, which is only as fast as the agent grants credit (its writes into the socket);
   * the next write waits for that. Fails when the connection is aborted or lost.
   */
  CompletableFuture<Void> write(byte[] data);

  /** No more bytes: once the writes under way are sent, the socket's output in the sandbox is shut down. */
  void closeWrite();

  /** Aborts the connection both ways (the socket in the sandbox is reset); idempotent. */
  void abort(String reason);

  /**
   * Completes when the connection is over: both directions ended, or an abort (then
   * exceptionally, with the reason).
   */
  CompletableFuture<Void> done();
}
