package dev.flotilla.vm.qemu;

import java.io.IOException;
import java.io.OutputStream;
import java.io.RandomAccessFile;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The guest's serial console, capped. QEMU serves it on a Unix socket in the VM's run directory
 * (its {@code -chardev file} cannot cap a file, and a file QEMU writes in a directory the
 * sandbox's uid owns is not one the node should trust); the node reads it into {@code console.log}
 * in its own, node-only directory and, past half the cap, moves that to {@code console.log.1}
 * (replacing the one before), so the guest can never fill the node's disk: at most the cap stays.
 *
 * <p>While no node reads (between a node's death and the next node's adoption) QEMU drops what
 * the guest writes. The console is for diagnostics and for the agent's last words (its lease
 * expiry, the kernel's panic line), which the node reads after QEMU exits: {@link #drained} says
 * when everything QEMU wrote has been read.
 */
final class ConsoleLog implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(ConsoleLog.class);

  private final Path socket;
  private final Path log;
  private final long maxBytes;
  private final CompletableFuture<Void> drained = new CompletableFuture<>();
  private volatile SocketChannel channel;

  private ConsoleLog(Path socket, Path log, long maxBytes) {
    this.socket = socket;
    this.log = log;
    this.maxBytes = maxBytes;
  }

  /** Connects to QEMU's console socket and copies it to {@code log} on a daemon thread. */
  static ConsoleLog connect(Path socket, java.util.OptionalLong qemuUid, Path log, long maxBytes, String name) throws IOException {
    // The run directory is the sandbox uid's: what sits there is QEMU's to choose. A link could
    // point the node at any socket of the host; only a socket is read (and never written to).
    if (!Files.readAttributes(socket, java.nio.file.attribute.BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS).isOther()) {
      throw new IOException(socket + " is not a socket");
    }
    ConsoleLog c = new ConsoleLog(socket, log, maxBytes);
    SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
    try {
      ch.connect(UnixDomainSocketAddress.of(socket));
      Qmp.requirePeer(ch, qemuUid, socket);
    } catch (IOException e) {
      ch.close();
      throw e;
    }
    c.channel = ch;
    Thread t = new Thread(c::copy, "flotilla-console-" + name);
    t.setDaemon(true);
    t.start();
    return c;
  }

  /** Completes once QEMU closed its end (it exited) and all it wrote is in the log, or reading failed. */
  CompletableFuture<Void> drained() {
    return drained;
  }

  /** Waits up to {@code millis} for {@link #drained}. */
  boolean awaitDrained(long millis) {
    try {
      drained.get(millis, TimeUnit.MILLISECONDS);
      return true;
    } catch (Exception e) {
      if (e instanceof InterruptedException) Thread.currentThread().interrupt();
      return drained.isDone();
    }
  }

  private void copy() {
    ByteBuffer buf = ByteBuffer.allocate(8192);
    OutputStream out = null;
    long size = 0;
    try {
      out = open();
      size = Files.size(log);
      while (true) {
        buf.clear();
        int n = channel.read(buf);
        if (n < 0) break;
        if (size + n > maxBytes / 2) {
          out.close();
          Files.move(log, log.resolveSibling(log.getFileName() + ".1"), StandardCopyOption.REPLACE_EXISTING);
          out = open();
          size = 0;
        }
        out.write(buf.array(), 0, n);
        out.flush();
        size += n;
      }
    } catch (IOException e) {
      if (channel.isOpen()) LOG.debug("console {}: {}", socket, e.toString());
    } finally {
      try {
        if (out != null) out.close();
      } catch (IOException e) {
        LOG.debug("console log {}: {}", log, e.toString());
      }
      try {
        channel.close();
      } catch (IOException ignored) {
        // closing
      }
      drained.complete(null);
    }
  }

  /** Appends to the log; never through a link (the node-only directory should hold none, but be sure). */
  private OutputStream open() throws IOException {
    return Files.newOutputStream(log, StandardOpenOption.CREATE, StandardOpenOption.APPEND, StandardOpenOption.WRITE,
        LinkOption.NOFOLLOW_LINKS);
  }

  /** Stops reading (the node lets go of the VM; QEMU keeps serving the socket for the next reader). */
  @Override
  public void close() {
    try {
      channel.close();
    } catch (IOException ignored) {
      // already closed
    }
  }

  /** The last {@code bytes} of the console, across the current file and the one before it. */
  static String tail(Path log, int bytes) {
    byte[] current = tailBytes(log, bytes);
    byte[] previous = current.length < bytes
        ? tailBytes(log.resolveSibling(log.getFileName() + ".1"), bytes - current.length) : new byte[0];
    byte[] all = new byte[previous.length + current.length];
    System.arraycopy(previous, 0, all, 0, previous.length);
    System.arraycopy(current, 0, all, previous.length, current.length);
    return new String(all, StandardCharsets.UTF_8);
  }

  private static byte[] tailBytes(Path file, int bytes) {
    try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "r")) {
      long from = Math.max(0, f.length() - bytes);
      byte[] buf = new byte[(int) (f.length() - from)];
      f.seek(from);
      f.readFully(buf);
      return buf;
    } catch (IOException e) {
      return new byte[0];
    }
  }
}
