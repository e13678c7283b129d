package dev.flotilla.agent.protocol.frame;

import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.lang.System.Logger.Level;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A framed connection over any byte stream pair, used by host and guest alike.
 *
 * <p>One reader thread decodes frames and hands them to the {@link Handler} in order; writes are
 * serialized so that frames never interleave. A frame that breaks the rules (or a handler that
 * throws {@link ProtocolException}) ends the connection: a GOAWAY with the reason is sent best
 * effort, both streams are closed and {@link #closed()} completes with the cause. The reader
 * thread always ends with the connection, whatever the peer sends.
 *
 * <p>By default {@link #send} writes on the caller's thread and blocks while the peer does not
 * read (the guest agent relies on that: it is its flow control). A side that must never block on
 * its peer (the node, whose peer is a guest it does not trust) turns on {@link #queueWrites}: sends
 * go to a bounded queue that a writer thread of the connection drains; a peer that lets more than
 * the bound pile up, or does not take a write within the stall timeout, loses the connection
 * ({@link PeerNotReadingException}).
 */
public final class FrameConnection implements AutoCloseable {

  private static final System.Logger LOG = System.getLogger(FrameConnection.class.getName());
  private static final AtomicInteger COUNTER = new AtomicInteger();
  /** Most bytes read and dropped after a protocol error, before the close. */
  private static final long DRAIN_LIMIT = 1 << 20;
  /** Closes connections whose GOAWAY write or drain does not finish in time. */
  private static final ScheduledExecutorService WATCHDOG = watchdog();

  /** Receives the frames of a connection, on its reader thread. */
  @FunctionalInterface
  public interface Handler {
    /** GOAWAY frames are handled by the connection itself and never reach the handler. */
    void onFrame(Frame frame) throws ProtocolException;
  }

  private final ScheduledExecutorService guards;
  private final InputStream in;
  private final OutputStream out;
  private final String description;
  private final FrameCodec codec;
  private final ReentrantLock writeLock = new ReentrantLock();
  private final AtomicBoolean closing = new AtomicBoolean();
  private final AtomicBoolean started = new AtomicBoolean();
  private final CompletableFuture<Throwable> closed = new CompletableFuture<>();
  private volatile Handler handler;
  private volatile Thread reader;
  /** Why the connection is closing, set as soon as it starts to (closed() completes later, after the GOAWAY). */
  private volatile Throwable closingCause;
  // Queued writes (see queueWrites): null when sends write on the caller's thread.
  private WriteQueue queue;
  /** GOAWAY frames it accepts are dropped instead of ending the connection (see dropGoAways); null: none. */
  private java.util.function.Predicate<Frame> staleGoAway;

  /** The sends waiting for the writer thread, bounded in bytes. */
  private final class WriteQueue {
    final long maxPendingBytes;
    final long stallNanos;
    final java.util.ArrayDeque<byte[]> frames = new java.util.ArrayDeque<>();
    long pendingBytes;

    WriteQueue(long maxPendingBytes, java.time.Duration stall) {
      this.maxPendingBytes = maxPendingBytes;
      this.stallNanos = stall.toNanos();
    }
  }

  public FrameConnection(InputStream in, OutputStream out, String description, int maxPayload) {
    this(in, out, description, maxPayload, WATCHDOG);
  }

  /** With the scheduler of the close guard (tests: one that cannot make a thread). */
  FrameConnection(InputStream in, OutputStream out, String description, int maxPayload, ScheduledExecutorService guards) {
    this.guards = Objects.requireNonNull(guards, "guards");
    this.in = Objects.requireNonNull(in, "in");
    this.out = Objects.requireNonNull(out, "out");
    this.description = Objects.requireNonNull(description, "description");
    this.codec = new FrameCodec(maxPayload);
  }

  /**
   * Sends go through a queue of at most {@code maxPendingBytes} that a writer thread drains, so
   * that no sender ever blocks on the peer; a peer that lets the queue overflow, or takes longer
   * than {@code stall} to accept one write, is not reading and loses the connection. Call before
   * {@link #start}.
   */
  public FrameConnection queueWrites(long maxPendingBytes, java.time.Duration stall) {
    if (started.get()) throw new IllegalStateException("queueWrites after start: " + description);
    if (maxPendingBytes < Frame.HEADER_SIZE + codec.maxPayload()) {
      throw new IllegalArgumentException("the write queue must hold at least one frame of the largest size");
    }
    this.queue = new WriteQueue(maxPendingBytes, stall);
    return this;
  }

  /**
   * A GOAWAY for which {@code stale} answers true (asked on the reader thread) is dropped instead of
   * ending the connection: on a serial port, one the peer wrote to a previous connection can reach
   * this one (see FramedAgentClient). Call before {@link #start}.
   */
  public FrameConnection dropGoAways(java.util.function.Predicate<Frame> stale) {
    if (started.get()) throw new IllegalStateException("dropGoAways after start: " + description);
    this.staleGoAway = Objects.requireNonNull(stale, "stale");
    return this;
  }

  /** Starts the reader thread (and the writer, with queued writes); frames go to {@code handler}. Call once. */
  public void start(Handler handler) {
    if (!started.compareAndSet(false, true)) throw new IllegalStateException("already started: " + description);
    this.handler = Objects.requireNonNull(handler, "handler");
    int n = COUNTER.incrementAndGet();
    Thread t = new Thread(this::readLoop, "frame-reader-" + n + "-" + description);
    t.setDaemon(true);
    reader = t;
    if (queue != null) {
      Thread w = new Thread(this::writeLoop, "frame-writer-" + n + "-" + description);
      w.setDaemon(true);
      w.start();
    }
    t.start();
  }

  public String description() {
    return description;
  }

  public int maxPayload() {
    return codec.maxPayload();
  }

  /** True on this connection's reader thread, which must never block on a write of its own. */
  public boolean onReaderThread() {
    return Thread.currentThread() == reader;
  }

  public boolean isOpen() {
    return !closing.get();
  }

  /**
   * Completes when the connection has closed: with {@code null} after a clean end (EOF, local
   * close), otherwise with the cause (a {@link ProtocolException}, an I/O error, or a
   * {@link GoAwayException} when the peer said goodbye). Never completes exceptionally.
   */
  public CompletableFuture<Throwable> closed() {
    return closed;
  }

  /**
   * Why the connection is closing or closed, as soon as it starts to: null while open and after a
   * clean close (see {@link #closed()} for the values).
   */
  public Throwable closingCause() {
    return closingCause;
  }

  /** Runs {@code callback} with the close cause (null for a clean end) once the connection has closed. */
  public void onClose(java.util.function.Consumer<Throwable> callback) {
    closed.thenAccept(callback);
  }

  /**
   * Sends a frame: blocks while the peer does not read, or with {@link #queueWrites} queues it
   * and returns at once.
   *
   * @throws IOException when the connection is closed or the write fails (the connection is then
   *     closed); with queued writes, also when the peer has let the queue overflow
   */
  public void send(Frame frame) throws IOException {
    byte[] bytes = codec.encode(frame);
    if (queue != null) {
      enqueue(bytes);
      return;
    }
    writeLock.lock();
    try {
      if (closing.get()) throw new IOException("connection " + description + " is closed");
      out.write(bytes);
      out.flush();
    } catch (IOException e) {
      closeWith(e, null);
      throw e;
    } finally {
      writeLock.unlock();
    }
  }

  private void enqueue(byte[] bytes) throws IOException {
    WriteQueue q = queue;
    long pending;
    synchronized (q) {
      if (closing.get()) throw new IOException("connection " + description + " is closed");
      pending = q.pendingBytes + bytes.length;
      if (pending <= q.maxPendingBytes) {
        q.frames.addLast(bytes);
        q.pendingBytes = pending;
        q.notifyAll();
        return;
      }
    }
    PeerNotReadingException e = new PeerNotReadingException(description + " does not read: " + pending
        + " bytes would be waiting to be sent, more than the " + q.maxPendingBytes + " allowed");
    LOG.log(Level.WARNING, "closing " + e.getMessage());
    closeWith(e, null);
    throw e;
  }

  private void writeLoop() {
    WriteQueue q = queue;
    try {
      while (true) {
        byte[] next;
        synchronized (q) {
          while (q.frames.isEmpty() && !closing.get()) q.wait();
          if (closing.get()) return;
          next = q.frames.peekFirst();
        }
        // A peer that takes longer than this to accept a write is not reading: its connection goes.
        ScheduledFuture<?> stall = WATCHDOG.schedule(() -> {
          PeerNotReadingException e = new PeerNotReadingException(description + " has not accepted a write of "
              + next.length + " bytes for " + java.time.Duration.ofNanos(q.stallNanos).toMillis() + " ms");
          LOG.log(Level.WARNING, "closing " + e.getMessage());
          closeWith(e, null);
        }, q.stallNanos, TimeUnit.NANOSECONDS);
        writeLock.lock();
        try {
          out.write(next);
          out.flush();
        } finally {
          writeLock.unlock();
          stall.cancel(false);
        }
        synchronized (q) {
          q.frames.pollFirst();
          q.pendingBytes -= next.length;
        }
      }
    } catch (IOException e) {
      closeWith(closing.get() ? null : e, null);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Bytes queued for the writer and not yet written (0 without queued writes). */
  public long pendingBytes() {
    WriteQueue q = queue;
    if (q == null) return 0;
    synchronized (q) {
      return q.pendingBytes;
    }
  }

  /** Sends a frame, reporting failure (connection closed) as {@code false} instead of an exception. */
  public boolean trySend(Frame frame) {
    try {
      send(frame);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  /** Closes the connection without a reason. */
  @Override
  public void close() {
    closeWith(null, null);
  }

  /** Sends GOAWAY({@code reason}) best effort and closes. */
  public void goAway(String reason) {
    closeWith(null, reason);
  }

  private void readLoop() {
    Throwable cause = null;
    try {
      while (!closing.get()) {
        Frame f = codec.read(in);
        if (f == null) break;
        if (f.type() == FrameType.GOAWAY) {
          if (staleGoAway != null && staleGoAway.test(f)) continue;
          cause = new GoAwayException(f.reason());
          break;
        }
        handler.onFrame(f);
      }
    } catch (ProtocolException e) {
      LOG.log(Level.WARNING, "closing " + description + ": " + e.getMessage());
      closeWith(e, e.getMessage());
      return;
    } catch (InterruptedIOException e) {
      cause = closing.get() ? null : e;
    } catch (IOException e) {
      cause = closing.get() ? null : e;
    } catch (RuntimeException | Error e) {
      LOG.log(Level.ERROR, "frame handler of " + description + " failed", e);
      closeWith(e, "internal error: " + e);
      return;
    }
    closeWith(cause, null);
  }

  private void closeWith(Throwable cause, String goAwayReason) {
    if (!closing.compareAndSet(false, true)) return;
    closingCause = cause;
    boolean onReader = Thread.currentThread() == reader;
    // A peer that never reads could block the GOAWAY write, one that never stops sending the
    // drain: past this guard the streams are closed under them.
    ScheduledFuture<?> guard;
    try {
      guard = guards.schedule(this::forceClose, 2, TimeUnit.SECONDS);
    } catch (RuntimeException | Error noThread) {
      // No thread for the guard (a sandbox out of pids or memory): close at once, without the
      // GOAWAY and drain it would guard, rather than leave the connection open with no reader.
      guard = null;
      goAwayReason = null;
    }
    try {
      if (goAwayReason != null) writeGoAway(goAwayReason);
      closeQuietly(out); // a socket is half-closed here: the peer reads the GOAWAY, then EOF
      // Closing with unread input makes the kernel reset the connection, and the peer would lose
      // the GOAWAY: read (and drop) what it still sends, within bounds, first.
      if (goAwayReason != null && onReader) drain();
    } finally {
      if (guard != null) guard.cancel(false);
      closeQuietly(in);
      Thread r = reader;
      // Some streams (pipes) only notice a close when their blocked reader is interrupted.
      if (r != null && !onReader) r.interrupt();
      WriteQueue q = queue;
      if (q != null) {
        synchronized (q) {
          q.frames.clear();
          q.pendingBytes = 0;
          q.notifyAll(); // the writer ends
        }
      }
      closed.complete(cause);
    }
  }

  private void forceClose() {
    closeQuietly(out);
    closeQuietly(in);
    Thread r = reader;
    if (r != null) r.interrupt();
  }

  private void drain() {
    byte[] buf = new byte[8192];
    long total = 0;
    try {
      int n;
      while (total < DRAIN_LIMIT && (n = in.read(buf)) >= 0) total += n;
    } catch (IOException ignored) {
      // closing anyway
    }
  }

  private void writeGoAway(String reason) {
    byte[] bytes = reason.getBytes(StandardCharsets.UTF_8);
    int max = Math.min(codec.maxPayload(), 1024);
    if (bytes.length > max) bytes = Arrays.copyOf(bytes, max);
    byte[] frame = codec.encode(new Frame(0, FrameType.GOAWAY, 0, bytes));
    try {
      if (writeLock.tryLock(1, TimeUnit.SECONDS)) {
        try {
          out.write(frame);
          out.flush();
        } finally {
          writeLock.unlock();
        }
      }
    } catch (IOException e) {
      // best effort
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static void closeQuietly(AutoCloseable c) {
    try {
      c.close();
    } catch (Exception ignored) {
      // closing is best effort
    }
  }

  private static ScheduledExecutorService watchdog() {
    ScheduledThreadPoolExecutor s = new ScheduledThreadPoolExecutor(1, r -> {
      Thread t = new Thread(r, "frame-goaway-watchdog");
      t.setDaemon(true);
      return t;
    });
    s.setRemoveOnCancelPolicy(true);
    return Executors.unconfigurableScheduledExecutorService(s);
  }

  @Override
  public String toString() {
    return "FrameConnection[" + description + (isOpen() ? "" : ", closed") + "]";
  }

  /** The peer stopped reading: its writes piled up past the bound, or one stalled past the timeout. */
  public static final class PeerNotReadingException extends IOException {
    public PeerNotReadingException(String message) {
      super(message);
    }
  }

  /** The peer closed the connection with a GOAWAY; the message is its reason. */
  public static final class GoAwayException extends IOException {
    public GoAwayException(String reason) {
      super("peer sent GOAWAY: " + reason);
    }
  }
}
