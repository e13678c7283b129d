package dev.flotilla.vm.qemu;

import java.io.BufferedReader;
import java.io.Closeable;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.SocketTimeoutException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A QMP client (QEMU Machine Protocol: JSON lines over a Unix socket), one command at a time.
 *
 * <p>QEMU serves one QMP client per socket at a time, so a {@code Qmp} is short-lived: open,
 * negotiate, run a command or two, close. That keeps a restarted node (or a second caller) from
 * finding the monitor taken. Asynchronous events interleaved with replies are skipped.
 */
final class Qmp implements Closeable {

  /** QMP said no: {@code class} is QMP's error class (e.g. {@code CommandNotFound}). */
  static final class QmpException extends IOException {
    final String errorClass;

    QmpException(String errorClass, String desc) {
      super(errorClass + ": " + desc);
      this.errorClass = errorClass;
    }
  }

  private static final ExecutorService READERS = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "qmp-reader");
    t.setDaemon(true);
    return t;
  });

  private final SocketChannel channel;
  private final BufferedReader in;
  private final OutputStream out;
  private final Duration timeout;

  private Qmp(SocketChannel channel, Duration timeout) {
    this.channel = channel;
    this.in = new BufferedReader(new InputStreamReader(Channels.newInputStream(channel), StandardCharsets.UTF_8));
    this.out = Channels.newOutputStream(channel);
    this.timeout = timeout;
  }

  /** Connects, reads the greeting and leaves negotiation mode. */
  static Qmp connect(Path socket, Duration timeout) throws IOException {
    return connect(socket, java.util.OptionalLong.empty(), timeout);
  }

  /**
   * @param expectedPeerUid the uid QEMU runs as: the socket sits in a directory that uid owns, so
   *     what is there is QEMU's to choose; the node speaks only to a socket that uid holds
   */
  static Qmp connect(Path socket, java.util.OptionalLong expectedPeerUid, Duration timeout) throws IOException {
    SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
    try {
      ch.connect(UnixDomainSocketAddress.of(socket));
      requirePeer(ch, expectedPeerUid, socket);
      Qmp q = new Qmp(ch, timeout);
      Map<String, Object> greeting = q.readMessage();
      if (!greeting.containsKey("QMP")) throw new IOException("not a QMP greeting: " + greeting);
      q.execute("qmp_capabilities", null);
      return q;
    } catch (IOException | RuntimeException e) {
      ch.close();
      throw e;
    }
  }

  /**
   * The kernel's record of who holds the other end (SO_PEERCRED), which the peer cannot forge:
   * {@code expected} or an IOException that says who it was.
   */
  static void requirePeer(SocketChannel ch, java.util.OptionalLong expected, Path socket) throws IOException {
    if (expected.isEmpty()) return;
    java.nio.file.attribute.UserPrincipal peer = ch.getOption(jdk.net.ExtendedSocketOptions.SO_PEERCRED).user();
    java.nio.file.attribute.UserPrincipal want = java.nio.file.FileSystems.getDefault().getUserPrincipalLookupService()
        .lookupPrincipalByName(Long.toString(expected.getAsLong()));
    // UserPrincipal equality compares uids; the name may be a user name or the uid in decimal
    if (!peer.equals(want)) {
      throw new IOException(socket + " is held by " + peer.getName() + ", not by uid " + expected.getAsLong()
          + " (QEMU's): not talking to it");
    }
  }

  /** Runs a command and returns its {@code return} value (a map, list, or empty map). */
  Object execute(String command, Map<String, Object> arguments) throws IOException {
    Map<String, Object> msg = new LinkedHashMap<>();
    msg.put("execute", command);
    if (arguments != null && !arguments.isEmpty()) msg.put("arguments", arguments);
    out.write((Json.write(msg) + "\n").getBytes(StandardCharsets.UTF_8));
    out.flush();
    while (true) {
      Map<String, Object> reply = readMessage();
      if (reply.containsKey("event")) continue;
      if (reply.containsKey("return")) return reply.get("return");
      if (reply.get("error") instanceof Map<?, ?> err) {
        throw new QmpException(String.valueOf(err.get("class")), String.valueOf(err.get("desc")));
      }
      throw new IOException("unexpected QMP reply to " + command + ": " + reply);
    }
  }

  /** {@code query-status}'s {@code status}: "running", "paused", "shutdown", ... */
  String status() throws IOException {
    Object r = execute("query-status", null);
    if (r instanceof Map<?, ?> m) return String.valueOf(m.get("status"));
    throw new IOException("unexpected query-status reply " + r);
  }

  /** How many vCPUs the VM has ({@code query-cpus-fast}). */
  int vcpuCount() throws IOException {
    if (execute("query-cpus-fast", null) instanceof java.util.List<?> l) return l.size();
    throw new IOException("unexpected query-cpus-fast reply");
  }

  /** The guest RAM QEMU booted with ({@code query-memory-size-summary}'s base-memory), in bytes. */
  long bootMemoryBytes() throws IOException {
    return number(execute("query-memory-size-summary", null), "base-memory");
  }

  /**
   * The guest RAM the balloon leaves the guest now ({@code query-balloon}'s actual), in bytes.
   * QMP error class {@code DeviceNotActive} when the VM has no balloon device.
   */
  long balloonActual() throws IOException {
    return number(execute("query-balloon", null), "actual");
  }

  /** Asks the guest's balloon driver to leave the guest {@code bytes} of RAM; it gets there in its own time. */
  void balloon(long bytes) throws IOException {
    execute("balloon", Map.of("value", bytes));
  }

  private static long number(Object reply, String key) throws IOException {
    if (reply instanceof Map<?, ?> m && m.get(key) instanceof Number n) return n.longValue();
    throw new IOException("QMP reply without " + key + ": " + reply);
  }

  /** Asks QEMU to exit; the connection may close before the reply arrives. */
  void quit() throws IOException {
    try {
      execute("quit", null);
    } catch (QmpException e) {
      throw e;
    } catch (IOException e) {
      // QEMU exits right after replying: EOF or a reset instead of the reply is success too
    }
  }

  @SuppressWarnings("unchecked")
  private Map<String, Object> readMessage() throws IOException {
    // Blocking socket channels ignore SO_TIMEOUT: read on a helper thread to bound the wait.
    Future<String> line = READERS.submit(in::readLine);
    String text;
    try {
      text = line.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    } catch (TimeoutException e) {
      line.cancel(true);
      close();
      throw new SocketTimeoutException("QMP: no reply within " + timeout);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      close();
      throw new IOException("interrupted waiting for QMP", e);
    } catch (java.util.concurrent.ExecutionException e) {
      Throwable c = e.getCause();
      if (c instanceof IOException io) throw io;
      throw new IOException("QMP read failed: " + c, c);
    }
    if (text == null) throw new IOException("QMP connection closed");
    Object v;
    try {
      v = Json.parse(text);
    } catch (IllegalArgumentException e) {
      throw new IOException("bad QMP message '" + text + "': " + e.getMessage(), e);
    }
    if (!(v instanceof Map)) throw new IOException("bad QMP message " + text);
    return (Map<String, Object>) v;
  }

  @Override
  public void close() {
    try {
      channel.close();
    } catch (IOException ignored) {
      // nothing left to do
    }
  }
}
