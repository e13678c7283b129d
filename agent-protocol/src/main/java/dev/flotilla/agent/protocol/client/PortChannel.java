package dev.flotilla.agent.protocol.client;

import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameConnection;
import dev.flotilla.agent.protocol.frame.ProtocolException;
import java.lang.System.Logger.Level;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The host's end of one forwarded port on a {@link FramedAgentClient}'s connection (see
 * OpenPortRequest in agent.proto). The agent is not trusted: what it sends is held to the window
 * this side granted (an overrun is a protocol error, the connection goes), and what this side
 * sends is held to the smaller of the agent's credit and {@link #MAX_UNACKED}, so that a guest that
 * grants without reading cannot make the node queue more than that per port (past the
 * connection's own bound it loses the connection).
 */
final class PortChannel implements PortStream {

  private static final System.Logger LOG = System.getLogger(PortChannel.class.getName());
  /**
   * DATA credit this side grants the agent: the most one port makes the node hold for it. A round
   * trip through the agent bounds a port's download at WINDOW per round trip: 512 KiB gave ~100
   * MiB/s on the busy 2-core machine, 2 MiB ~135, hence 1 MiB.
   */
  static final int WINDOW = 1024 * 1024;
  /** Bytes sent to the agent and not yet credited back, at most, whatever credit it grants. */
  static final int MAX_UNACKED = 512 * 1024;
  /**
   * Largest DATA payload either way: what this side sends, and what it takes from the agent (a
   * larger one is a protocol error), so that each chunk the node queues for a reader is small.
   */
  static final int CHUNK = 64 * 1024;
  /** An abort's reason is cut to this many bytes, either way. */
  static final int MAX_REASON = 1024;
  /**
   * Port data waits while the connection has this much queued for the guest: the connection's
   * queue is shared (with every other port and call) and a guest that lets it overflow loses the
   * connection, so many ports sending at once must not fill it between two reads of an honest guest.
   */
  static final long MAX_QUEUED = 1 << 20;
  /** How soon a send held back by a full connection queue is tried again. */
  static final long RETRY_MICROS = 2_000;

  private final int streamId;
  private final FrameConnection connection;
  private final PortSink sink;
  private final Runnable forget;
  private final java.util.concurrent.ScheduledExecutorService timer;
  private boolean retryScheduled;
  private final CompletableFuture<Void> done = new CompletableFuture<>();
  private final AtomicBoolean failed = new AtomicBoolean();
  private volatile String address = "";

  // Inbound (agent -> host), under this.
  private long inFlight;
  private long released;
  private boolean inEnded;

  // Outbound (host -> agent), under this.
  private long credit;
  private long unacked;
  private boolean opened;
  private boolean outEnded;
  private boolean closeWriteAsked;
  private final ArrayDeque<Pending> pending = new ArrayDeque<>();

  private record Pending(byte[] data, int[] offset, CompletableFuture<Void> sent) {}

  PortChannel(int streamId, FrameConnection connection, PortSink sink, Runnable forget,
      java.util.concurrent.ScheduledExecutorService timer) {
    this.streamId = streamId;
    this.connection = connection;
    this.sink = sink;
    this.forget = forget;
    this.timer = timer;
  }

  int streamId() {
    return streamId;
  }

  /** The agent connected and granted {@code window} bytes of credit. */
  void opened(String address, long window) {
    this.address = address.length() > 64 ? address.substring(0, 64) : address; // the agent's words: bounded
    synchronized (this) {
      opened = true;
      credit = Math.max(0, window);
    }
    flush();
  }

  @Override
  public String address() {
    return address;
  }

  @Override
  public CompletableFuture<Void> write(byte[] data) {
    CompletableFuture<Void> sent = new CompletableFuture<>();
    synchronized (this) {
      if (done.isDone()) {
        sent.completeExceptionally(closedError());
        return sent;
      }
      if (outEnded || closeWriteAsked) {
        sent.completeExceptionally(new IllegalStateException("port stream " + streamId + ": write after closeWrite"));
        return sent;
      }
      if (data.length == 0) {
        sent.complete(null);
        return sent;
      }
      pending.add(new Pending(data, new int[1], sent));
    }
    flush();
    return sent;
  }

  @Override
  public void closeWrite() {
    synchronized (this) {
      if (closeWriteAsked || done.isDone()) return;
      closeWriteAsked = true;
    }
    flush();
  }

  @Override
  public void abort(String reason) {
    if (done.isDone()) return;
    byte[] why = cut(reason == null ? "aborted" : reason).getBytes(StandardCharsets.UTF_8);
    connection.trySend(new Frame(streamId, dev.flotilla.agent.protocol.frame.FrameType.DATA,
        Frame.FLAG_STDERR | Frame.FLAG_END_OF_STREAM, why));
    fail(new AgentException(AgentException.Code.UNAVAILABLE, "port stream aborted: " + reason));
  }

  @Override
  public CompletableFuture<Void> done() {
    return done;
  }

  /**
   * Sends what the credit allows, in order; then the half-close once nothing waits. Frames are
   * handed to the connection under the lock, so that two flushes (a write, a credit) never
   * reorder them; queued sends never block.
   */
  private void flush() {
    List<Pending> finished = new ArrayList<>(1);
    boolean lost = false;
    boolean ended = false;
    synchronized (this) {
      while (opened && !done.isDone() && !outEnded) {
        Pending p = pending.peekFirst();
        Frame frame;
        if (p == null) {
          if (!closeWriteAsked) break;
          outEnded = true;
          ended = true;
          frame = Frame.data(streamId, false, new byte[0], true);
        } else {
          long allowed = Math.min(credit, MAX_UNACKED - unacked);
          if (allowed <= 0) break;
          if (connection.pendingBytes() > MAX_QUEUED) {
            if (!retryScheduled) {
              retryScheduled = true;
              timer.schedule(this::retry, RETRY_MICROS, java.util.concurrent.TimeUnit.MICROSECONDS);
            }
            break;
          }
          int from = p.offset()[0];
          int n = (int) Math.min(Math.min(allowed, CHUNK), p.data().length - from);
          frame = Frame.data(streamId, false, Arrays.copyOfRange(p.data(), from, from + n), false);
          credit -= n;
          unacked += n;
          p.offset()[0] = from + n;
          if (p.offset()[0] == p.data().length) finished.add(pending.pollFirst());
        }
        if (!connection.trySend(frame)) {
          lost = true;
          break;
        }
      }
    }
    if (lost) {
      fail(new AgentException(AgentException.Code.CONNECTION_LOST, "port stream " + streamId + ": connection to "
          + connection.description() + " lost"));
      return;
    }
    for (Pending p : finished) p.sent().complete(null);
    if (ended) maybeDone();
  }

  private void retry() {
    synchronized (this) {
      retryScheduled = false;
    }
    flush();
  }

  /** A WINDOW_UPDATE from the agent: it wrote that much into the socket. */
  void onCredit(int increment) {
    synchronized (this) {
      credit += increment;
      unacked = Math.max(0, unacked - increment);
    }
    flush();
  }

  void onData(Frame frame) throws ProtocolException {
    if (frame.stderr()) {
      // The agent aborted: the socket in the sandbox failed or was reset.
      String reason = cut(new String(frame.payload(), StandardCharsets.UTF_8));
      forget.run();
      fail(new AgentException(AgentException.Code.UNAVAILABLE, "the connection in the sandbox was aborted: " + reason));
      return;
    }
    int len = frame.payload().length;
    if (len > CHUNK) {
      throw new ProtocolException("agent sent " + len + " bytes in one DATA frame on port stream " + streamId + "; at most " + CHUNK);
    }
    synchronized (this) {
      if (inEnded) throw new ProtocolException("DATA after the end of port stream " + streamId);
      inFlight += len;
      if (inFlight > WINDOW) {
        throw new ProtocolException("agent overran the flow-control window of " + WINDOW + " bytes on port stream " + streamId);
      }
      if (frame.endOfStream()) inEnded = true;
    }
    if (len > 0) {
      AtomicBoolean once = new AtomicBoolean();
      Runnable release = () -> {
        if (once.compareAndSet(false, true)) release(len);
      };
      try {
        sink.onData(frame.payload(), release);
      } catch (RuntimeException e) {
        LOG.log(Level.WARNING, "port sink of stream " + streamId + " failed; its data is dropped", e);
        release.run();
      }
    }
    if (frame.endOfStream()) {
      try {
        sink.onEnd();
      } catch (RuntimeException e) {
        LOG.log(Level.WARNING, "port sink of stream " + streamId + " failed at its end", e);
      }
      maybeDone();
    }
  }

  private void release(int len) {
    int grant = 0;
    synchronized (this) {
      released += len;
      // Coalesced, as for exec output: one update per quarter window.
      if (!inEnded && released >= WINDOW / 4) {
        grant = (int) released;
        inFlight -= grant;
        released = 0;
      }
    }
    if (grant > 0) connection.trySend(Frame.windowUpdate(streamId, false, grant));
  }

  private void maybeDone() {
    boolean both;
    synchronized (this) {
      both = inEnded && outEnded;
    }
    if (both) {
      forget.run();
      done.complete(null);
    }
  }

  /** Ends the stream with {@code error}: the sink hears of it (unless its end came already), waiting writes fail. */
  void fail(Throwable error) {
    if (!failed.compareAndSet(false, true)) return;
    forget.run();
    java.util.List<Pending> waiting;
    boolean tellSink;
    synchronized (this) {
      waiting = java.util.List.copyOf(pending);
      pending.clear();
      tellSink = !inEnded;
      inEnded = true;
      outEnded = true;
    }
    for (Pending p : waiting) p.sent().completeExceptionally(error);
    if (tellSink) {
      try {
        sink.onError(error);
      } catch (RuntimeException e) {
        LOG.log(Level.WARNING, "port sink of stream " + streamId + " failed in onError", e);
      }
    }
    done.completeExceptionally(error);
  }

  private Throwable closedError() {
    return done.handle((v, e) -> e != null ? e
        : new IllegalStateException("port stream " + streamId + " is over")).join();
  }

  private static String cut(String s) {
    return s.length() > MAX_REASON ? s.substring(0, MAX_REASON) : s;
  }
}
