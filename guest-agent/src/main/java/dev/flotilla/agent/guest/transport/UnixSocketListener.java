package dev.flotilla.agent.guest.transport;

import dev.flotilla.agent.protocol.frame.ChannelStreams;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Listens on a Unix socket that only its owner may connect to (mode 0600). The socket is bound
 * under a temporary name, restricted, then renamed into place: it never exists at its real path
 * with wider permissions, and a client that sees the path can connect at once.
 */
public final class UnixSocketListener implements AgentListener {

  private final Path path;
  private final ServerSocketChannel server;
  private final AtomicInteger accepted = new AtomicInteger();

  private UnixSocketListener(Path path, ServerSocketChannel server) {
    this.path = path;
    this.server = server;
  }

  public static UnixSocketListener bind(Path path) throws IOException {
    Path abs = path.toAbsolutePath();
    if (abs.getParent() != null) Files.createDirectories(abs.getParent());
    Files.deleteIfExists(abs); // a stale socket of an earlier run
    Path tmp = abs.resolveSibling(abs.getFileName() + "." + ProcessHandle.current().pid() + ".tmp");
    Files.deleteIfExists(tmp);
    ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
    try {
      server.bind(UnixDomainSocketAddress.of(tmp), 64);
      Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rw-------"));
      Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (IOException | RuntimeException e) {
      server.close();
      Files.deleteIfExists(tmp);
      throw e;
    }
    return new UnixSocketListener(abs, server);
  }

  @Override
  public Connection accept() throws IOException {
    SocketChannel ch = server.accept();
    return new Connection(ChannelStreams.input(ch), ChannelStreams.output(ch),
        "unix:" + path + "/" + accepted.incrementAndGet());
  }

  @Override
  public String address() {
    return "unix:" + path;
  }

  @Override
  public void close() throws IOException {
    server.close();
    Files.deleteIfExists(path);
  }
}
