package dev.flotilla.agent.guest.transport;

import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.flotilla.agent.guest.ConsoleLines;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameType;
import dev.flotilla.agent.protocol.v1.Request;
import java.util.Arrays;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * A virtio-serial port ({@code serial:/dev/virtio-ports/NAME}) as a listener: one connection per
 * host connection, e.g. a restarted node reconnecting to QEMU's socket.
 *
 * <p>The port is opened once, read-write (a virtio console port refuses a second open). A guest
 * cannot rely on seeing the host leave: {@code read} returns 0 while no host is attached, but a
 * host that closes and reconnects before the guest reads (routine under TCG) is never seen to
 * go. So the stream resyncs on its content: every host connection starts with a Handshake
 * REQUEST frame and none sends a second one, which makes that frame the resync marker. One pump
 * thread owns all reads and follows the frame boundaries:
 * <ul>
 *   <li>a Handshake frame at a frame boundary ends the current session and starts a new one with
 *       a fresh frame decoder (the old session's writes are refused from then on);
 *   <li>zero reads (no host) for {@link #HOST_GONE_AFTER_MILLIS} end the current session's input
 *       with end-of-file. One zero read is not enough: the guest learns of the host's connects and
 *       disconnects from control messages that reach it apart from the data, and a stale one can
 *       come after the next host's first bytes. A template's clone starts with such a message
 *       queued: the template's own host left just before the save, and the restored guest takes
 *       that in only after the clone's host has connected and sent its handshake, followed at
 *       once by the message of that connect. Ending the session on that one zero read would drop
 *       the clone's handshake unanswered;
 *   <li>with no session, at start and after the agent dropped one (malformed bytes, GOAWAY), bytes
 *       are scanned for a Handshake frame at any offset and discarded until one is found.
 * </ul>
 * A write blocked in the kernel while no host is attached completes to the next host: that host
 * sees the previous session's frame before its handshake answer, and drops it (a frame on a stream
 * it never opened, before the agent's first answer). No write of a previous session ever follows
 * the new session's first write: writes check their session under the port's lock.
 */
public final class SerialListener implements AgentListener {

  /** While the host is away a read returns at once: poll at this pace instead of spinning. */
  private static final long DISCONNECTED_POLL_MILLIS = 20;

  /**
   * How long reads must find no host before the session ends: a flicker of the port's state (a
   * stale disconnect followed by the connect that came after it) is no host leaving. A host that
   * did leave and a new one that came within this time are told apart by the new one's handshake,
   * as when the guest never saw the first one go.
   */
  static final long HOST_GONE_AFTER_MILLIS = 200;

  private final Path path;
  private final java.io.Closeable port;
  private final InputStream portIn;
  private final OutputStream portOut;
  private final BlockingQueue<Session> accepted = new ArrayBlockingQueue<>(1);
  private final Thread pump;
  private volatile boolean closed;
  private int sessions;

  /**
   * @param portIn the port's reads: a read of no bytes (0 or -1) while no host is attached
   * @param portOut the port's writes
   * @param port closed by {@link #close()}
   */
  SerialListener(Path path, InputStream portIn, OutputStream portOut, java.io.Closeable port) {
    this.path = path;
    this.port = port;
    this.portIn = portIn;
    this.portOut = portOut;
    this.pump = new Thread(this::pump, "serial-pump");
    pump.setDaemon(true);
  }

  /** Starts reading: one pump thread owns all reads. */
  SerialListener start() {
    pump.start();
    return this;
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
    RandomAccessFile port = new RandomAccessFile(path.toFile(), "rw");
    return new SerialListener(path, new FileInputStream(port.getFD()), new FileOutputStream(port.getFD()), port).start();
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
    Resync sync = new Resync();
    long noHostSince = 0; // System.nanoTime() of the first of the zero reads in a row; 0: none
    try {
      while (!closed) {
        int n = portIn.read(buf);
        if (n <= 0) { // no host attached (any more), or a flicker of the port's state
          long now = System.nanoTime();
          if (noHostSince == 0) noHostSince = now;
          if (now - noHostSince >= TimeUnit.MILLISECONDS.toNanos(HOST_GONE_AFTER_MILLIS)) sync.hostGone();
          Thread.sleep(DISCONNECTED_POLL_MILLIS);
          continue;
        }
        noHostSince = 0;
        sync.feed(buf, n);
      }
    } catch (IOException | InterruptedException e) {
      if (!closed) System.err.println("flotilla-guest-agent: serial port " + path + " failed: " + e);
    } finally {
      sync.hostGone();
      accepted.offer(Session.CLOSED);
    }
  }

  /** Follows frame boundaries in the host's bytes and starts a session at each Handshake frame. */
  private final class Resync {
    private static final int MAX_HANDSHAKE = 4096;
    /** Far above any --max-frame in use: a longer "frame" is garbage, not a big payload. */
    private static final long MAX_PLAUSIBLE_PAYLOAD = 64L << 20;
    private Session current;
    /** Bytes not yet handed on: a header, or a small REQUEST frame being inspected, or hunted through. */
    private byte[] pending = new byte[256];
    private int pendingLength;
    /** Payload bytes of the current frame still to pass through unexamined. */
    private long passThrough;

    void hostGone() {
      if (current != null) log("session " + current.id() + ": host gone");
      if (current != null) current.in.end();
      current = null;
      pendingLength = 0;
      passThrough = 0;
    }

    void feed(byte[] b, int n) throws InterruptedException {
      int off = 0;
      if (current != null && current.in.isClosed()) dropSession("closed by the agent");
      while (off < n) {
        if (current != null && passThrough > 0) {
          int k = (int) Math.min(passThrough, n - off);
          deliver(b, off, k);
          passThrough -= k;
          off += k;
          continue;
        }
        int k = Math.min(n - off, 64 * 1024);
        append(b, off, k);
        off += k;
        examine();
      }
    }

    /** Works through {@code pending}: frames at boundaries with a session, a hunt without. */
    private void examine() throws InterruptedException {
      while (true) {
        if (current == null) {
          int at = findHandshake();
          if (at < 0) return;
          consume(at);
          startSession();
          int whole = Frame.HEADER_SIZE + ByteBuffer.wrap(pending, 0, 4).getInt();
          deliver(pending, 0, whole);
          consume(whole);
          continue;
        }
        if (passThrough > 0) {
          int k = (int) Math.min(passThrough, pendingLength);
          deliver(pending, 0, k);
          consume(k);
          passThrough -= k;
          if (pendingLength == 0) return;
          continue;
        }
        if (pendingLength < Frame.HEADER_SIZE) return;
        long length = Integer.toUnsignedLong(ByteBuffer.wrap(pending, 0, 4).getInt());
        int type = pending[8] & 0xff;
        if (type == FrameType.REQUEST.code() && length <= MAX_HANDSHAKE) {
          int whole = Frame.HEADER_SIZE + (int) length;
          if (pendingLength < whole) return; // wait for the payload to decide
          if (isHandshake(pending, 0)) startSession(); // a new host: this frame is its first
          deliver(pending, 0, whole);
          consume(whole);
          continue;
        }
        deliver(pending, 0, Frame.HEADER_SIZE);
        consume(Frame.HEADER_SIZE);
        if (!plausible(type, length)) {
          // the session drops the stream on this header (and says why to its host); what follows
          // is not its payload: look for the next host's handshake instead
          dropSession("malformed frame header");
          continue;
        }
        passThrough = length; // any other frame passes through
      }
    }

    private boolean plausible(int type, long length) {
      if (length > MAX_PLAUSIBLE_PAYLOAD) return false;
      try {
        FrameType.fromCode(type);
        return true;
      } catch (IOException e) {
        return false;
      }
    }

    /** Offset of a complete Handshake frame in {@code pending}, or -1 (dropping what cannot start one). */
    private int findHandshake() {
      for (int i = 0; i + Frame.HEADER_SIZE <= pendingLength; i++) {
        if ((pending[i + 8] & 0xff) != FrameType.REQUEST.code()) continue;
        long length = Integer.toUnsignedLong(ByteBuffer.wrap(pending, i, 4).getInt());
        if (length > MAX_HANDSHAKE || ByteBuffer.wrap(pending, i + 4, 4).getInt() == 0) continue;
        if (i + Frame.HEADER_SIZE + length > pendingLength) {
          consume(i); // might be one still arriving
          return -1;
        }
        if (isHandshake(pending, i)) return i;
      }
      consume(Math.max(0, pendingLength - (Frame.HEADER_SIZE - 1)));
      return -1;
    }

    private boolean isHandshake(byte[] b, int at) {
      int length = ByteBuffer.wrap(b, at, 4).getInt();
      try {
        return Request.parseFrom(ByteBuffer.wrap(b, at + Frame.HEADER_SIZE, length)).getKindCase()
            == Request.KindCase.HANDSHAKE;
      } catch (InvalidProtocolBufferException e) {
        return false;
      }
    }

    private void startSession() throws InterruptedException {
      if (current != null) log("session " + current.id() + ": a new host's handshake ends it");
      if (current != null) current.in.end();
      SessionInput in = new SessionInput();
      current = new Session(++sessions, in, new SessionOutput(in));
      log("session " + current.id() + " started by a handshake");
      passThrough = 0;
      accepted.put(current);
    }

    private void dropSession(String why) {
      if (current != null) log("session " + current.id() + ": " + why + ", waiting for a handshake");
      current = null;
      passThrough = 0;
    }

    private void deliver(byte[] b, int off, int len) throws InterruptedException {
      if (current == null || len == 0) return;
      if (!current.in.offer(b, off, len)) dropSession("closed by the agent"); // hunt for the next host
    }

    private void append(byte[] b, int off, int len) {
      if (pendingLength + len > pending.length) pending = Arrays.copyOf(pending, Math.max(pending.length * 2, pendingLength + len));
      System.arraycopy(b, off, pending, pendingLength, len);
      pendingLength += len;
    }

    private void consume(int k) {
      System.arraycopy(pending, k, pending, 0, pendingLength - k);
      pendingLength -= k;
    }
  }

  private void log(String what) {
    ConsoleLines.console().say("flotilla-guest-agent: serial " + path + ": " + what);
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

    boolean offer(byte[] buf, int off, int n) throws InterruptedException {
      byte[] copy = Arrays.copyOfRange(buf, off, off + n);
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
    private final SessionInput in;

    SessionOutput(SessionInput in) {
      this.in = in;
    }

    @Override
    public void write(int b) throws IOException {
      write(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
      // Checked under the port's lock: a write of this session that waited for the lock while the
      // pump started the next one must not follow the next session's first frame (its handshake
      // answer), after which the host holds unknown streams to be a protocol error. One already
      // in the kernel cannot be taken back: it reaches the next host before that answer, and the
      // host drops it (FramedAgentClient).
      synchronized (portOut) {
        if (in.hostGone || in.isClosed() || closed) {
          throw new IOException("host side of " + path + " disconnected");
        }
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
      in.close();
    }
  }
}
