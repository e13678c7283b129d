package dev.flotilla.agent.protocol.client;

import dev.flotilla.agent.protocol.frame.ChannelStreams;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.FileSystems;
import java.nio.file.attribute.UserPrincipal;
import jdk.net.ExtendedSocketOptions;
import jdk.net.UnixDomainPrincipal;
import java.time.Duration;

/** Opens {@link AgentClient}s. */
public final class AgentClients {
  private AgentClients() {}

  /** Closes connects that outlive their deadline. */
  private static final java.util.concurrent.ScheduledExecutorService CONNECT_TIMEOUTS = timer();

  private static java.util.concurrent.ScheduledExecutorService timer() {
    var s = new java.util.concurrent.ScheduledThreadPoolExecutor(1, r -> {
      Thread t = new Thread(r, "agent-connect-timeouts");
      t.setDaemon(true);
      return t;
    });
    s.setRemoveOnCancelPolicy(true);
    return java.util.concurrent.Executors.unconfigurableScheduledExecutorService(s);
  }

  /**
   * Connects to the agent's Unix socket, retrying while the socket does not exist yet or refuses
   * (the agent is still starting) until {@code deadline} has passed. When the address names an
   * expected peer uid, the process holding the other end must run as that uid (SO_PEERCRED): a
   * socket planted by anyone else is refused at once, not retried. The client sends the address's
   * secret in every handshake, and for an address with a {@link AgentAddress#rebirth()} asks the
   * clone's agent to take the sandbox's identity in each.
   *
   * @throws AgentException UNAVAILABLE when no connection could be made in time; PERMISSION_DENIED
   *     when the socket is held by another uid
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
      java.util.concurrent.ScheduledFuture<?> timeout = null;
      try {
        ch = SocketChannel.open(StandardProtocolFamily.UNIX);
        // connect(2) on a Unix socket whose listener never accepts blocks once its backlog is
        // full: the deadline closes the channel under it (AsynchronousCloseException).
        SocketChannel pending = ch;
        timeout = CONNECT_TIMEOUTS.schedule(() -> closeQuietly(pending), Math.max(1, until - System.nanoTime()),
            java.util.concurrent.TimeUnit.NANOSECONDS);
        ch.connect(UnixDomainSocketAddress.of(address.unixSocket()));
        timeout.cancel(false);
        if (!ch.isOpen()) throw new IOException("connect did not finish within " + deadline);
        checkPeer(ch, address);
        return new FramedAgentClient(ChannelStreams.input(ch), ChannelStreams.output(ch), address.toString(), options,
            address.secret(), address.rebirth().orElse(null));
      } catch (AgentException e) {
        closeQuietly(ch);
        throw e;
      } catch (IOException e) {
        last = e;
        closeQuietly(ch);
      } finally {
        if (timeout != null) timeout.cancel(false);
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

  /** As {@link #over(InputStream, OutputStream, String, ClientOptions)}, sending {@code secret} in every handshake. */
  public static AgentClient over(InputStream in, OutputStream out, String description, ClientOptions options,
      byte[] secret) {
    return new FramedAgentClient(in, out, description, options, secret);
  }

  /**
   * As {@link #over(InputStream, OutputStream, String, ClientOptions, byte[])} for a clone's agent
   * that still has the template's identity ({@code rebirth}; null: none): see {@link AgentAddress.Rebirth}.
   */
  public static AgentClient over(InputStream in, OutputStream out, String description, ClientOptions options,
      byte[] secret, AgentAddress.Rebirth rebirth) {
    return new FramedAgentClient(in, out, description, options, secret, rebirth);
  }

  /**
   * The kernel's record of who bound the socket (the peer's credentials at connect time) cannot be
   * forged by the peer, unlike anything it could say over the connection.
   */
  private static void checkPeer(SocketChannel ch, AgentAddress address) throws IOException {
    if (address.expectedPeerUid().isEmpty()) return;
    long expected = address.expectedPeerUid().getAsLong();
    UnixDomainPrincipal peer = ch.getOption(ExtendedSocketOptions.SO_PEERCRED);
    UserPrincipal want = FileSystems.getDefault().getUserPrincipalLookupService().lookupPrincipalByName(Long.toString(expected));
    // UserPrincipal equality compares uids; its name may be a user name or the uid in decimal.
    if (!peer.user().equals(want)) {
      throw new AgentException(AgentException.Code.PERMISSION_DENIED, "agent socket " + address.unixSocket()
          + " is held by uid " + uidOf(peer.user()) + ", expected " + expected
          + ": not talking to it (a socket planted by another process?)");
    }
  }

  /** The JDK names a principal by user name when the uid has one: find the number for the message. */
  private static String uidOf(UserPrincipal user) {
    String name = user.getName();
    if (!name.isEmpty() && name.chars().allMatch(Character::isDigit)) return name;
    try (var lines = java.nio.file.Files.lines(java.nio.file.Path.of("/etc/passwd"))) {
      return lines.map(l -> l.split(":"))
          .filter(f -> f.length > 2 && f[0].equals(name))
          .map(f -> f[2] + " (" + name + ")")
          .findFirst().orElse("'" + name + "'");
    } catch (IOException | RuntimeException e) {
      return "'" + name + "'";
    }
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
