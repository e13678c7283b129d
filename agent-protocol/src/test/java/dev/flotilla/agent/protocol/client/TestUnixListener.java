package dev.flotilla.agent.protocol.client;

import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Path;

/**
 * A process that binds a Unix socket and holds it until its stdin closes: run under another uid
 * (setpriv) it plays the "socket planted by someone else" of {@link AgentAddressTest}.
 */
public final class TestUnixListener {
  private TestUnixListener() {}

  public static void main(String[] args) throws Exception {
    try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
      server.bind(UnixDomainSocketAddress.of(Path.of(args[0])));
      // Connections wait in the backlog: the client's peer check needs no accept.
      while (System.in.read() >= 0) {
        // until the test closes our stdin (or kills us)
      }
    }
  }
}
