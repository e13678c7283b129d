package dev.flotilla.agent.guest.net;

import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameType;
import dev.flotilla.agent.protocol.frame.ProtocolException;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.OpenPortRequest;
import dev.flotilla.agent.protocol.v1.OpenPortResponse;
import java.io.IOException;
import java.lang.System.Logger.Level;
import java.net.ConnectException;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Predicate;

/**
 * The forwarded ports of one host connection (OpenPortRequest in agent.proto): each a TCP
 * connection to the loopback of the sandbox's own network, never to another address, its bytes
 * carried as DATA on the request's stream both ways, each way within the other side's credit.
 *
 * <p>Per port two threads: one reads the socket (only while the host has granted credit, so a slow
 * host makes the sandbox's server block, not the agent buffer), one writes what the host sent
 * (at most the credit this side granted, {@link #WINDOW}: a host that sends more breaks the
 * protocol) and grants it again as it is written.
 */
public final class PortForwards {

  private static final System.Logger LOG = System.getLogger(PortForwards.class.getName());
  /** Ports open at once on one connection. */
  public static final int MAX_PORTS = 64;
  /** Bytes from the host this side holds for one port before they are written: the credit it grants. */
  static final int WINDOW = 512 * 1024;
  /** The host's credit when it names none. */
  static final int DEFAULT_HOST_WINDOW = 128 * 1024;
  /** At most what the host takes in one DATA frame (64 KiB). */
  static final int READ_BUFFER = 64 * 1024;
  static final int CONNECT_TIMEOUT_MS = 5_000;

  private final Predicate<Frame> send;
  private final int maxPayload;
  private final Map<Integer, Port> ports = new ConcurrentHashMap<>();
  private volatile boolean closed;

  /** @param send sends a frame to the host (blocking while it does not read); false once the connection is gone */
  public PortForwards(Predicate<Frame> send, int maxPayload) {
    this.send = send;
    this.maxPayload = maxPayload;
  }

  /**
   * Connects to the port (blocking, bounded by {@link #CONNECT_TIMEOUT_MS}); the port's stream is
   * registered, its threads wait for {@link Port#start} (after the answer is sent).
   */
  public Port open(int streamId, OpenPortRequest r) {
    long port = Integer.toUnsignedLong(r.getPort());
    if (port < 1 || port > 65535) throw AgentError.invalid("port must be 1-65535, not " + port);
    if (ports.size() >= MAX_PORTS) {
      throw new AgentError(Error.Code.RESOURCE_EXHAUSTED, "this connection already forwards " + MAX_PORTS + " ports; close one");
    }
    if (ports.containsKey(streamId)) throw AgentError.invalid("stream " + streamId + " already carries a port");
    SocketChannel ch = connect((int) port);
    long hostWindow = r.getInitialWindow() == 0 ? DEFAULT_HOST_WINDOW : Integer.toUnsignedLong(r.getInitialWindow());
    Port p = new Port(streamId, ch, hostWindow);
    ports.put(streamId, p);
    if (closed && ports.remove(streamId, p)) {
      p.abort(); // the connection went meanwhile
      throw new AgentError(Error.Code.UNAVAILABLE, "the connection closed");
    }
    return p;
  }

  /** The loopback of this network namespace: IPv4 first, then IPv6. */
  private static SocketChannel connect(int port) {
    IOException last = null;
    boolean refused = false;
    for (InetAddress a : List.of(v4Loopback(), v6Loopback())) {
      SocketChannel ch = null;
      try {
        ch = SocketChannel.open();
        ch.socket().connect(new InetSocketAddress(a, port), CONNECT_TIMEOUT_MS);
      } catch (SocketTimeoutException e) {
        close(ch);
        throw new AgentError(Error.Code.UNAVAILABLE, "port " + port + " in the sandbox did not accept within "
            + CONNECT_TIMEOUT_MS / 1000 + " s");
      } catch (IOException e) {
        close(ch);
        boolean refusedHere = e instanceof ConnectException && String.valueOf(e.getMessage()).contains("refused");
        if (!refusedHere && a instanceof java.net.Inet4Address) {
          // Something answered on the IPv4 loopback and went at once (a server that accepts and
          // resets before the connect returns): not "nothing listens", whatever ::1 says.
          throw new AgentError(Error.Code.UNAVAILABLE, "the connection to port " + port
              + " in the sandbox was aborted as it opened: " + e);
        }
        refused |= refusedHere;
        last = e;
        continue;
      }
      // Connected: whatever happens to it from now on (a server that resets at once) is the stream's news, not a refusal.
      try {
        ch.setOption(StandardSocketOptions.TCP_NODELAY, true);
      } catch (IOException | RuntimeException ignored) {
        // a nicety; the reader will see what became of the socket
      }
      return ch;
    }
    // Refused on one loopback and not reachable on the other (a namespace without IPv6): nothing listens.
    if (refused) {
      throw new AgentError(Error.Code.UNAVAILABLE, "nothing listens on port " + port + " in the sandbox");
    }
    throw new AgentError(Error.Code.UNAVAILABLE, "cannot connect to port " + port + " in the sandbox: " + last);
  }

  private static InetAddress v4Loopback() {
    try {
      return InetAddress.getByAddress("localhost", new byte[] {127, 0, 0, 1});
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  private static InetAddress v6Loopback() {
    try {
      return Inet6Address.getByAddress("localhost", new byte[] {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  /** DATA from the host on a port's stream; false when the stream carries no port. On the reader thread: never blocks. */
  public boolean onData(Frame f) throws ProtocolException {
    Port p = ports.get(f.streamId());
    if (p == null) return false;
    p.fromHost(f);
    return true;
  }

  /** A WINDOW_UPDATE on a port's stream; false when the stream carries no port. */
  public boolean onCredit(int streamId, int increment) {
    Port p = ports.get(streamId);
    if (p == null) return false;
    p.grant(increment);
    return true;
  }

  /** The host connection is gone: every port is reset. */
  public void closeAll() {
    closed = true;
    for (Integer id : ports.keySet()) {
      Port p = ports.remove(id);
      if (p != null) p.abort();
    }
  }

  private static void close(SocketChannel ch) {
    if (ch == null) return;
    try {
      ch.close();
    } catch (IOException ignored) {
      // closing
    }
  }

  /** One forwarded connection. */
  public final class Port {
    private final int streamId;
    private final SocketChannel ch;
    private final String address;
    private final Object lock = new Object();
    // socket -> host, under lock
    private long credit;
    // host -> socket, under lock
    private final ArrayDeque<byte[]> queue = new ArrayDeque<>();
    private long queued;
    private boolean hostEnded;
    // both, under lock
    private boolean readDone;
    private boolean writeDone;
    private boolean aborted;
    private boolean started;

    Port(int streamId, SocketChannel ch, long hostWindow) {
      this.streamId = streamId;
      this.ch = ch;
      String where;
      try {
        InetSocketAddress remote = (InetSocketAddress) ch.getRemoteAddress();
        where = (remote.getAddress() instanceof Inet6Address ? "[::1]" : "127.0.0.1") + ":" + remote.getPort();
      } catch (IOException e) {
        where = "loopback";
      }
      this.address = where;
      this.credit = hostWindow;
    }

    public OpenPortResponse response() {
      return OpenPortResponse.newBuilder().setWindow(WINDOW).setAddress(address).build();
    }

    /** After the answer: the bytes may flow. */
    public void start() {
      synchronized (lock) {
        if (aborted) return;
        started = true;
      }
      try {
        thread(this::readLoop, "port-read-" + streamId).start();
        thread(this::writeLoop, "port-write-" + streamId).start();
      } catch (OutOfMemoryError e) {
        // no thread for it (the sandbox is out of pids or memory): reset it, tell the host
        failed("the sandbox is out of processes or memory");
      }
    }

    private Thread thread(Runnable r, String name) {
      Thread t = new Thread(r, name);
      t.setDaemon(true);
      return t;
    }

    void grant(int increment) {
      synchronized (lock) {
        credit += increment;
        lock.notifyAll();
      }
    }

    void fromHost(Frame f) throws ProtocolException {
      if (f.stderr()) {
        // the host aborted: reset, say nothing more on this stream
        ports.remove(streamId, this);
        abort();
        return;
      }
      synchronized (lock) {
        if (hostEnded) throw new ProtocolException("DATA after the end of port stream " + streamId + " from the host");
        if (aborted) return; // late, after this side aborted
        if (f.payload().length > 0) {
          queued += f.payload().length;
          if (queued > WINDOW) {
            throw new ProtocolException("the host overran the flow-control window of " + WINDOW + " bytes on port stream " + streamId);
          }
          queue.addLast(f.payload());
        }
        if (f.endOfStream()) hostEnded = true;
        lock.notifyAll();
      }
    }

    private void readLoop() {
      byte[] buf = new byte[Math.min(READ_BUFFER, maxPayload)];
      ByteBuffer bb = ByteBuffer.wrap(buf);
      try {
        while (true) {
          int allowed;
          synchronized (lock) {
            while (!aborted && credit <= 0) lock.wait();
            if (aborted) return;
            allowed = (int) Math.min(credit, buf.length);
          }
          bb.clear().limit(allowed);
          int n = ch.read(bb);
          if (n < 0) break;
          synchronized (lock) {
            if (aborted) return;
            credit -= n;
          }
          if (n > 0 && !send.test(Frame.data(streamId, false, Arrays.copyOf(buf, n), false))) {
            abort();
            return;
          }
        }
        synchronized (lock) {
          if (aborted) return;
        }
        send.test(Frame.data(streamId, false, new byte[0], true));
        synchronized (lock) {
          readDone = true;
        }
        maybeDone();
      } catch (IOException e) {
        failed("the connection in the sandbox failed: " + e.getMessage());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }

    private void writeLoop() {
      try {
        while (true) {
          byte[] next;
          synchronized (lock) {
            while (!aborted && queue.isEmpty() && !hostEnded) lock.wait();
            if (aborted) return;
            next = queue.pollFirst();
            if (next == null) break; // the host's end, all written
          }
          ByteBuffer bb = ByteBuffer.wrap(next);
          while (bb.hasRemaining()) ch.write(bb);
          synchronized (lock) {
            queued -= next.length;
            if (aborted) return;
          }
          send.test(Frame.windowUpdate(streamId, false, next.length));
        }
        ch.shutdownOutput();
        synchronized (lock) {
          writeDone = true;
        }
        maybeDone();
      } catch (IOException e) {
        failed("the connection in the sandbox failed: " + e.getMessage());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }

    private void maybeDone() {
      synchronized (lock) {
        if (!readDone || !writeDone || aborted) return;
        aborted = true; // over: nothing more either way
      }
      ports.remove(streamId, this);
      close(ch);
    }

    /** This side's socket failed: the host hears why, and the stream is over. */
    private void failed(String reason) {
      boolean tell;
      synchronized (lock) {
        tell = !aborted;
      }
      ports.remove(streamId, this);
      abort();
      if (tell) {
        byte[] why = reason.getBytes(StandardCharsets.UTF_8);
        if (why.length > 1024) why = Arrays.copyOf(why, 1024);
        send.test(new Frame(streamId, FrameType.DATA, Frame.FLAG_STDERR | Frame.FLAG_END_OF_STREAM, why));
      }
    }

    /** Resets the socket (RST, not FIN) and ends both threads; idempotent. */
    void abort() {
      synchronized (lock) {
        if (aborted && !ch.isOpen()) return;
        aborted = true;
        queue.clear();
        lock.notifyAll();
      }
      try {
        if (ch.isOpen()) ch.setOption(StandardSocketOptions.SO_LINGER, 0);
      } catch (IOException | RuntimeException ignored) {
        // closing anyway
      }
      close(ch);
      LOG.log(Level.DEBUG, "port stream " + streamId + " reset");
    }
  }
}
