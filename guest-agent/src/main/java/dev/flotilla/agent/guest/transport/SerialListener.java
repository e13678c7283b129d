package dev.flotilla.agent.guest.transport;

import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * A virtio-serial port ({@code serial:/dev/virtio-ports/NAME}) as a listener: one connection per
 * time the host side is (re)opened, e.g. by a restarted node reconnecting to QEMU's socket.
 *
 * <p>The port is opened once, read-write (a virtio console port refuses a second open). The
 * kernel reports the host's side through {@code read}: it returns 0 (Java's -1) when no data is
 * queued and the host is not connected, and blocks otherwise. One pump thread owns all reads, so
 * no byte of a new host connection is ever consumed by a session that has ended:
 * <ul>
 *   <li>bytes while no session is open start a new session (a fresh frame decoder, so the stream
 *       resyncs at the host's first byte);
 *   <li>a zero read (host gone) ends the current session's input with end-of-file;
 *   <li>after the agent itself ended a session (a malformed frame, GOAWAY) the host is still
 *       attached mid-stream: its bytes are discarded until it disconnects, so the next session
 *       again starts at a frame boundary.
 * </ul>
 * Writes go straight to the port. One race remains: a write blocked in the kernel when the host
 * disconnects completes to the next host; that host's decoder then sees a bad frame and
 * reconnects, which lands in the first case.
 */
public final class SerialListener implements AgentListener {

  /** While the host is away a read returns at once: poll at this pace instead of spinning. */
  private static final long DISCONNECTED_POLL_MILLIS = 20;

  private final Path path;
  private final RandomAccessFile port;
  private final InputStream portIn;
  private final OutputStream portOut;
  private final BlockingQueue<Session> accepted = new ArrayBlockingQueue<>(1);
  private final Thread pump;
  private volatile boolean closed;
  private int sessions;

  private SerialListener(Path path, RandomAccessFile port) throws IOException {
    this.path = path;
    this.port = port;
    this.portIn = new FileInputStream(port.getFD());
    this.portOut = new FileOutputStream(port.getFD());
    this.pump = new Thread(this::pump, "serial-pump");
    pump.setDaemon(true);
  }

  /** Opens the port, waiting up to {@code wait} for its device node to appear. */
  public static SerialListener open(Path path, long waitMillis) throws IOException {
    long until = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(waitMillis);
    while (!Files.exists(path) && System.nanoTime() < until) {
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted waiting for " + path);
      }
    }
    SerialListener l = new SerialListener(path, new RandomAccessFile(path.toFile(), "rw"));
    l.pump.start();
    return l;
  }

  @Override
  public Connection accept() throws IOException {
    try {
      Session s = accepted.take();
      if (s == Session.CLOSED) throw new IOException("serial listener on " + path + " closed");
      return new Connection(s.in, s.out, "serial:" + path + "/" + s.id);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new InterruptedIOException("interrupted");
    }
  }

  @Override
  public String address() {
    return "serial:" + path;
  }

  @Override
  public void close() throws IOException {
    closed = true;
    accepted.offer(Session.CLOSED);
    port.close();
  }

  private void pump() {
    byte[] buf = new byte[64 * 1024];
    Session current = null;
    boolean draining = false; // the agent ended a session while the host stayed attached
    try {
      while (!closed) {
        int n = portIn.read(buf);
        if (n <= 0) { // the host side is not connected (or went away)
          if (current != null) current.in.end();
          current = null;
          draining = false;
          Thread.sleep(DISCONNECTED_POLL_MILLIS);
          continue;
        }
        if (current != null && current.in.isClosed()) {
          current = null;
          draining = true;
        }
        if (draining) continue;
        if (current == null) {
          current = new Session(++sessions, new SessionInput(), new SessionOutput());
          current.out.session = current;
          accepted.put(current);
        }
        if (!current.in.offer(buf, n)) { // the session closed its input meanwhile
          current = null;
          draining = true;
        }
      }
    } catch (IOException | InterruptedException e) {
      if (!closed) System.err.println("flotilla-guest-agent: serial port " + path + " failed: " + e);
    } finally {
      if (current != null) current.in.end();
      accepted.offer(Session.CLOSED);
    }
  }

  private record Session(int id, SessionInput in, SessionOutput out) {
    static final Session CLOSED = new Session(0, null, null);
  }

  /** The bytes of one host connection, handed over by the pump; end-of-file when the host leaves. */
  private static final class SessionInput extends InputStream {
    private static final byte[] EOF = new byte[0];
    private final BlockingQueue<byte[]> chunks = new ArrayBlockingQueue<>(16);
    private byte[] head;
    private int pos;
    private volatile boolean closed;
    private volatile boolean hostGone;
    private boolean ended;

    boolean offer(byte[] buf, int n) throws InterruptedException {
      byte[] copy = java.util.Arrays.copyOf(buf, n);
      while (!closed) {
        if (chunks.offer(copy, 100, TimeUnit.MILLISECONDS)) return true;
      }
      return false;
    }

    void end() {
      hostGone = true;
      // never blocks the pump: a reader that stopped reading has closed, or will see EOF later
      if (!chunks.offer(EOF)) closed = true;
    }

    boolean isClosed() {
      return closed;
    }

    @Override
    public int read() throws IOException {
      byte[] one = new byte[1];
      int n = read(one, 0, 1);
      return n < 0 ? -1 : one[0] & 0xff;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      if (len == 0) return 0;
      if (closed || ended) return -1;
      try {
        if (head == null || pos == head.length) {
          head = chunks.take();
          pos = 0;
          if (head == EOF) {
            ended = true;
            return -1;
          }
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted");
      }
      int n = Math.min(len, head.length - pos);
      System.arraycopy(head, pos, b, off, n);
      pos += n;
      return n;
    }

    @Override
    public void close() {
      closed = true;
      chunks.clear();
    }
  }

  /** Writes of one session; refused once the session's host has gone, so they never reach the next one. */
  private final class SessionOutput extends OutputStream {
    Session session;

    @Override
    public void write(int b) throws IOException {
      write(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
      if (session.in.hostGone || session.in.isClosed() || closed) {
        throw new IOException("host side of " + path + " disconnected");
      }
      synchronized (portOut) {
        portOut.write(b, off, len);
      }
    }

    @Override
    public void flush() throws IOException {
      portOut.flush();
    }

    @Override
    public void close() {
      // the port stays open for the next host connection; closing the input ends this session
      session.in.close();
    }
  }
}
