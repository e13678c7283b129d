package dev.flotilla.agent.protocol.client;

import dev.flotilla.agent.protocol.frame.ChannelStreams;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.time.Duration;

/** Opens {@link AgentClient}s. */
public final class AgentClients {
  private AgentClients() {}

  /**
   * Connects to the agent's Unix socket, retrying while the socket does not exist yet or refuses
   * (the agent is still starting) until {@code deadline} has passed.
   *
   * @throws AgentException UNAVAILABLE when no connection could be made in time
   */
  public static AgentClient connect(AgentAddress address, Duration deadline) {
    return connect(address, deadline, ClientOptions.defaults());
  }

  public static AgentClient connect(AgentAddress address, Duration deadline, ClientOptions options) {
    long until = System.nanoTime() + deadline.toNanos();
    long backoffMillis = 5;
    IOException last;
    while (true) {
      SocketChannel ch = null;
      try {
        ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        ch.connect(UnixDomainSocketAddress.of(address.unixSocket()));
        return new FramedAgentClient(ChannelStreams.input(ch), ChannelStreams.output(ch), address.toString(), options);
      } catch (IOException e) {
        last = e;
        closeQuietly(ch);
      }
      long left = until - System.nanoTime();
      if (left <= 0) break;
      try {
        Thread.sleep(Math.min(backoffMillis, Math.max(1, left / 1_000_000)));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AgentException(AgentException.Code.UNAVAILABLE, "interrupted while connecting to " + address, e);
      }
      backoffMillis = Math.min(backoffMillis * 2, 100);
    }
    throw new AgentException(AgentException.Code.UNAVAILABLE,
        "cannot connect to agent at " + address + " within " + deadline + ": " + last.getMessage(), last);
  }

  /** A client over any byte stream pair (a bridged serial port, a pipe in a test). */
  public static AgentClient over(InputStream in, OutputStream out, String description) {
    return over(in, out, description, ClientOptions.defaults());
  }

  public static AgentClient over(InputStream in, OutputStream out, String description, ClientOptions options) {
    return new FramedAgentClient(in, out, description, options);
  }

  private static void closeQuietly(SocketChannel ch) {
    if (ch == null) return;
    try {
      ch.close();
    } catch (IOException ignored) {
      // nothing to do
    }
  }
}
