package dev.flotilla.agent.protocol.client;

import com.google.protobuf.InvalidProtocolBufferException;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameConnection;
import dev.flotilla.agent.protocol.frame.ProtocolException;
import dev.flotilla.agent.protocol.v1.Request;
import dev.flotilla.agent.protocol.v1.Response;
import dev.flotilla.agent.protocol.v1.Response.KindCase;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.System.Logger.Level;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.SynchronousQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * {@link AgentClient} over one {@link FrameConnection}: each call is a REQUEST on a fresh,
 * client-allocated stream id answered by one RESPONSE; an exec's output then arrives as DATA on
 * the exec's stream, paced by the WINDOW_UPDATEs this client sends as the sink releases data.
 */
public final class FramedAgentClient implements AgentClient {

  private static final System.Logger LOG = System.getLogger(FramedAgentClient.class.getName());
  /** One timer thread for the deadlines of every client in the JVM. */
  private static final ScheduledExecutorService DEADLINES = daemonScheduler();
  /**
   * The guest is not trusted once it has booted: nothing the node sends it may wait on it. Sends
   * are queued (bounded) for the connection's writer thread; a guest that lets this much pile up,
   * or does not take a write for {@link #WRITE_STALL}, is not reading and loses its connection.
   */
  static final int QUEUED_FRAMES = 4;
  static final Duration WRITE_STALL = Duration.ofSeconds(15);
  /** Frames of the largest size another connection's leftovers may take before the first answer. */
  static final int STALE_FRAMES = 8;
  /** File transfers read/write caller streams, which may block: never on the reader thread. */
  private static final ExecutorService TRANSFERS = daemonPool();

  private final FrameConnection connection;
  private final ClientOptions options;
  /** Sent in every handshake; empty when the agent runs without one (legacy). */
  private final byte[] secret;
  /** The template identity of a clone's agent: every handshake asks it to take the one named. Null: none. */
  private final AgentAddress.Rebirth rebirth;
  /** The seeds of rebirths: fresh for each handshake. */
  private static final SecureRandom SEEDS = new SecureRandom();
  static final int SEED_BYTES = 32;
  private final AtomicInteger nextStreamId = new AtomicInteger(1);
  private final Map<Integer, CompletableFuture<Response>> calls = new ConcurrentHashMap<>();
  private final Map<Integer, ExecOutput> outputs = new ConcurrentHashMap<>();
  private final Map<Integer, WatchStream> watches = new ConcurrentHashMap<>();
  /** Forwarded ports (openPort), by their stream. */
  private final Map<Integer, PortChannel> ports = new ConcurrentHashMap<>();
  /** Ports open at once on one connection, at most: each may hold up to PortChannel's window and bound. */
  static final int MAX_PORTS = 64;
  private final CompletableFuture<Void> closed = new CompletableFuture<>();
  /**
   * A serial port has no connection boundary: frames the agent wrote for the previous host's
   * streams (a write blocked in the guest's kernel while no host was attached completes to the
   * next one) can reach this client before the agent's first answer. Until that answer, frames on
   * streams this client never opened are dropped, up to this many bytes; from it on they end the
   * connection. The agent writes no frame of an old session after its first answer to a new one.
   */
  private final long staleBytesLimit;
  /** Bytes of frames dropped as another connection's; -1 once the agent has answered this client. */
  private long staleBytes;
  private int staleFrames;

  public FramedAgentClient(InputStream in, OutputStream out, String description, ClientOptions options) {
    this(in, out, description, options, new byte[0]);
  }

  /** @param secret the agent's per-incarnation secret, sent in every handshake (copied; empty: none) */
  public FramedAgentClient(InputStream in, OutputStream out, String description, ClientOptions options, byte[] secret) {
    this(in, out, description, options, secret, null);
  }

  /**
   * @param rebirth the template identity the agent (a clone's) still has: every handshake presents
   *     it and asks the agent to take the identity named with {@code secret}; null: none
   */
  public FramedAgentClient(InputStream in, OutputStream out, String description, ClientOptions options, byte[] secret,
      AgentAddress.Rebirth rebirth) {
    if (rebirth != null && secret.length == 0) {
      throw new IllegalArgumentException("a rebirth needs the clone's own secret");
    }
    this.options = options;
    this.secret = secret.clone();
    this.rebirth = rebirth;
    this.staleBytesLimit = (long) STALE_FRAMES * (Frame.HEADER_SIZE + options.maxPayload());
    this.connection = new FrameConnection(in, out, description, options.maxPayload())
        .queueWrites((long) QUEUED_FRAMES * (Frame.HEADER_SIZE + options.maxPayload()), WRITE_STALL)
        // the agent's goodbye to a previous host (one that sent it garbage, one whose lease it
        // refused) is another connection's too; its own refusals come with an answer first
        .dropGoAways(this::isStale);
    connection.closed().thenAccept(this::onClosed);
    connection.start(this::onFrame);
  }

  public String description() {
    return connection.description();
  }

  @Override
  public CompletableFuture<GuestInfo> handshake(String sandboxId, long incarnation, Duration lease, Duration deadline) {
    return handshake(sandboxId, incarnation, lease, false, deadline);
  }

  @Override
  public CompletableFuture<GuestInfo> handshake(String sandboxId, long incarnation, Duration lease, boolean pausing,
      Duration deadline) {
    if (rebirth == null) {
      return call(AgentTranslations.handshake(sandboxId, incarnation, lease, pausing, secret), deadline, "handshake")
          .thenApply(AgentTranslations::guestInfo);
    }
    // Every handshake, not just the first: a retry after a lost answer must still name the
    // template, and the agent treats one whose new identity it already has as a plain handshake.
    return call(rebirthRequest(sandboxId, incarnation, lease, pausing), deadline, "handshake")
        .thenApply(r -> AgentTranslations.rebornGuestInfo(r, sandboxId, incarnation));
  }

  /** The handshake request this client sends to a clone's agent (its clock now, a fresh seed). */
  Request rebirthRequest(String sandboxId, long incarnation, Duration lease, boolean pausing) {
    byte[] seed = new byte[SEED_BYTES];
    SEEDS.nextBytes(seed);
    return AgentTranslations.rebirthHandshake(sandboxId, incarnation, lease, pausing, secret, rebirth,
        System.currentTimeMillis(), seed);
  }

  @Override
  public CompletableFuture<Long> exec(ExecRequest request, OutputSink sink, Duration deadline) {
    int id = allocateStreamId();
    ExecOutput output = new ExecOutput(id, sink, options.outputWindow());
    // Registered before the request goes out: DATA may follow the RESPONSE immediately.
    outputs.put(id, output);
    String what = "exec " + request.execId();
    return call(id, AgentTranslations.exec(request, options.outputWindow()), deadline, what)
        .handle((r, e) -> {
          if (e == null && r.getKindCase() == KindCase.EXEC_PROCESS) return AgentTranslations.pid(r, what);
          Throwable cause = unwrap(e);
          // On a timeout the process may still start in the guest: keep delivering its output.
          if (!(cause instanceof AgentException ae && ae.code() == AgentException.Code.DEADLINE_EXCEEDED)) {
            outputs.remove(id);
          }
          if (cause != null) throw asCompletion(cause);
          return AgentTranslations.pid(r, what);
        });
  }

  @Override
  public CompletableFuture<Long> execDetached(ExecRequest request, int ringBytes, Duration deadline) {
    if (ringBytes <= 0) throw new IllegalArgumentException("ringBytes must be positive");
    String what = "exec " + request.execId() + " (detached)";
    return call(AgentTranslations.execDetached(request, ringBytes), deadline, what)
        .thenApply(r -> AgentTranslations.pid(r, what));
  }

  @Override
  public CompletableFuture<OutputRead> readOutput(String execId, long offset, int maxBytes, Duration wait, Duration deadline) {
    String what = "readOutput " + execId + " at " + offset;
    return call(AgentTranslations.readOutput(execId, offset, Math.min(maxBytes, options.fileChunk()), wait), deadline, what)
        .thenApply(r -> AgentTranslations.outputRead(r, what, offset));
  }

  @Override
  public CompletableFuture<ExitStatus> waitProcess(String execId, Duration deadline) {
    String what = "waitProcess " + execId;
    return call(AgentTranslations.waitProcess(execId), deadline, what)
        .thenApply(r -> AgentTranslations.exitStatus(r, what));
  }

  @Override
  public CompletableFuture<Void> signalProcess(String execId, int signal, Duration deadline) {
    String what = "signalProcess " + execId + " " + signal;
    return call(AgentTranslations.signal(execId, signal), deadline, what)
        .thenAccept(r -> AgentTranslations.empty(r, KindCase.SIGNAL_PROCESS, what));
  }

  @Override
  public CompletableFuture<Void> writeStdin(String execId, byte[] data, Duration deadline) {
    String what = "writeStdin " + execId;
    return call(AgentTranslations.writeStdin(execId, data), deadline, what)
        .thenAccept(r -> AgentTranslations.empty(r, KindCase.WRITE_STDIN, what));
  }

  @Override
  public CompletableFuture<Void> resizeTty(String execId, int rows, int cols, Duration deadline) {
    String what = "resizeTty " + execId;
    return call(AgentTranslations.resizeTty(execId, rows, cols), deadline, what)
        .thenAccept(r -> AgentTranslations.empty(r, KindCase.RESIZE_TTY, what));
  }

  @Override
  public CompletableFuture<Void> closeStdin(String execId, Duration deadline) {
    String what = "closeStdin " + execId;
    return call(AgentTranslations.closeStdin(execId), deadline, what)
        .thenAccept(r -> AgentTranslations.empty(r, KindCase.CLOSE_STDIN, what));
  }

  @Override
  public CompletableFuture<Long> writeFile(String path, InputStream data, int mode, Duration deadline) {
    long deadlineAt = System.nanoTime() + deadline.toNanos();
    String what = "writeFile " + path;
    return transfer(deadline, what, () -> {
      byte[] buf = new byte[options.fileChunk()];
      long offset = 0;
      long size = 0;
      boolean first = true;
      while (true) {
        int n = data.readNBytes(buf, 0, buf.length);
        if (n == 0 && !first) break;
        Response r = await(call(AgentTranslations.writeFile(path, offset, buf, n, first, mode),
            remaining(deadlineAt, what), what));
        size = AgentTranslations.fileSize(r, what);
        offset += n;
        first = false;
        if (n < buf.length) break;
      }
      return size;
    });
  }

  @Override
  public CompletableFuture<Long> readFile(String path, OutputStream out, Duration deadline) {
    long deadlineAt = System.nanoTime() + deadline.toNanos();
    String what = "readFile " + path;
    return transfer(deadline, what, () -> {
      long offset = 0;
      while (true) {
        FileChunk chunk = await(readFileChunk(path, offset, options.fileChunk(), remaining(deadlineAt, what)));
        out.write(chunk.data());
        offset += chunk.data().length;
        if (chunk.eof() || chunk.data().length == 0) return offset;
      }
    });
  }

  @Override
  public CompletableFuture<FileChunk> readFileChunk(String path, long offset, int maxLength, Duration deadline) {
    String what = "readFile " + path + " at " + offset;
    int length = Math.min(maxLength, options.fileChunk());
    return call(AgentTranslations.readFile(path, offset, length), deadline, what)
        .thenApply(r -> AgentTranslations.fileChunk(r, what));
  }

  @Override
  public CompletableFuture<GuestProcesses> listProcesses(int maxEntries, Duration deadline) {
    String what = "listProcesses";
    return call(AgentTranslations.listProcesses(maxEntries), deadline, what)
        .thenApply(r -> AgentTranslations.guestProcesses(r, what));
  }

  @Override
  public CompletableFuture<DirListing> listDir(String path, int depth, int maxEntries, String startAfter,
      Duration deadline) {
    String what = "listDir " + path;
    return call(AgentTranslations.listDir(path, depth, maxEntries, startAfter), deadline, what)
        .thenApply(r -> AgentTranslations.dirListing(r, what));
  }

  @Override
  public CompletableFuture<FileEntry> stat(String path, boolean followLinks, Duration deadline) {
    String what = "stat " + path;
    return call(AgentTranslations.stat(path, followLinks), deadline, what)
        .thenApply(r -> AgentTranslations.fileEntry(AgentTranslations.expect(r, KindCase.STAT, what).getStat()));
  }

  @Override
  public CompletableFuture<FileEntry> makeDir(String path, boolean parents, int mode, Duration deadline) {
    String what = "makeDir " + path;
    return call(AgentTranslations.makeDir(path, parents, mode), deadline, what)
        .thenApply(r -> AgentTranslations.fileEntry(AgentTranslations.expect(r, KindCase.MAKE_DIR, what).getMakeDir()));
  }

  @Override
  public CompletableFuture<Long> remove(String path, boolean recursive, Duration deadline) {
    String what = "remove " + path;
    return call(AgentTranslations.remove(path, recursive), deadline, what)
        .thenApply(r -> AgentTranslations.expect(r, KindCase.REMOVE, what).getRemove().getRemoved());
  }

  @Override
  public CompletableFuture<Void> rename(String from, String to, boolean overwrite, Duration deadline) {
    String what = "rename " + from + " to " + to;
    return call(AgentTranslations.rename(from, to, overwrite), deadline, what)
        .thenAccept(r -> AgentTranslations.empty(r, KindCase.RENAME, what));
  }

  @Override
  public CompletableFuture<DirWatch> watchDir(String path, boolean recursive, WatchListener listener,
      Duration deadline) {
    int id = allocateStreamId();
    WatchStream watch = new WatchStream(id, listener, options.outputWindow());
    // Registered before the request goes out: events may follow the RESPONSE immediately.
    watches.put(id, watch);
    String what = "watchDir " + path;
    return call(id, AgentTranslations.watchDir(path, recursive, options.outputWindow()), deadline, what)
        .handle((r, e) -> {
          Throwable cause = unwrap(e);
          if (cause == null && r.getKindCase() == KindCase.WATCH_DIR) {
            var w = r.getWatchDir();
            watch.started(w.getPath(), w.getWatchedDirs(), w.getPartial());
            return (DirWatch) watch;
          }
          watches.remove(id, watch);
          // On a timeout the watch may run in the agent all the same: end it there.
          if (cause instanceof AgentException ae && ae.code() == AgentException.Code.DEADLINE_EXCEEDED) {
            watch.cancel(deadline);
          }
          if (cause != null) throw asCompletion(cause);
          AgentTranslations.expect(r, KindCase.WATCH_DIR, what);
          throw new AssertionError("unreachable");
        });
  }

  @Override
  public CompletableFuture<PortStream> openPort(int port, PortSink sink, Duration deadline) {
    String what = "openPort " + port;
    if (ports.size() >= MAX_PORTS) {
      return CompletableFuture.failedFuture(new AgentException(AgentException.Code.RESOURCE_EXHAUSTED,
          what + ": " + MAX_PORTS + " ports are forwarded on this connection already; close one"));
    }
    int id = allocateStreamId();
    PortChannel channel = new PortChannel(id, connection, sink, () -> ports.remove(id), DEADLINES);
    // Registered before the request goes out: DATA may follow the RESPONSE immediately.
    ports.put(id, channel);
    return call(id, AgentTranslations.openPort(port, PortChannel.WINDOW), deadline, what).handle((r, e) -> {
      Throwable cause = unwrap(e);
      if (cause == null && r.getKindCase() == KindCase.OPEN_PORT) {
        channel.opened(r.getOpenPort().getAddress(), Integer.toUnsignedLong(r.getOpenPort().getWindow()));
        return (PortStream) channel;
      }
      if (cause instanceof AgentException ae && ae.code() == AgentException.Code.DEADLINE_EXCEEDED) {
        channel.abort(what + ": no answer in time"); // it may connect all the same: reset it there
      }
      ports.remove(id, channel);
      if (cause != null) throw asCompletion(cause);
      AgentTranslations.expect(r, KindCase.OPEN_PORT, what);
      throw new AssertionError("unreachable");
    });
  }

  @Override
  public CompletableFuture<GuestStats> stats(Duration deadline) {
    return call(AgentTranslations.stats(), deadline, "stats")
        .thenApply(AgentTranslations::guestStats);
  }

  @Override
  public CompletableFuture<Duration> ping(Duration deadline) {
    long nonce = ThreadLocalRandom.current().nextLong();
    long start = System.nanoTime();
    return call(AgentTranslations.ping(nonce), deadline, "ping").thenApply(r -> {
      long took = System.nanoTime() - start;
      long echoed = AgentTranslations.pingNonce(r);
      if (echoed != nonce) {
        throw new AgentException(AgentException.Code.INTERNAL, "ping: agent echoed nonce " + echoed + ", sent " + nonce);
      }
      return Duration.ofNanos(took);
    });
  }

  @Override
  public CompletableFuture<Void> shutdown(Duration grace, boolean powerOff, Duration deadline) {
    return call(AgentTranslations.shutdown(grace, powerOff), deadline, "shutdown")
        .thenAccept(r -> AgentTranslations.empty(r, KindCase.SHUTDOWN, "shutdown"));
  }

  @Override
  public CompletableFuture<Void> closed() {
    return closed;
  }

  @Override
  public boolean isOpen() {
    return connection.isOpen();
  }

  @Override
  public Throwable closeCause() {
    return connection.closingCause();
  }

  @Override
  public void close() {
    connection.close();
  }

  @Override
  public String toString() {
    return "FramedAgentClient[" + connection.description() + (isOpen() ? "" : ", closed") + "]";
  }

  // ------------------------------------------------------------------------------------------
  // Calls

  private int allocateStreamId() {
    int id = nextStreamId.getAndUpdate(i -> i == Integer.MAX_VALUE ? 1 : i + 1);
    if (id == Integer.MAX_VALUE) wrapped = true;
    return id;
  }

  /** Stream ids have wrapped around: every id may have been opened. */
  private volatile boolean wrapped;

  private CompletableFuture<Response> call(Request request, Duration deadline, String what) {
    return call(allocateStreamId(), request, deadline, what);
  }

  private CompletableFuture<Response> call(int id, Request request, Duration deadline, String what) {
    CompletableFuture<Response> f = new CompletableFuture<>();
    if (!connection.isOpen()) {
      f.completeExceptionally(lost(what, null));
      return f;
    }
    calls.put(id, f);
    ScheduledFuture<?> timer = DEADLINES.schedule(() -> {
      if (calls.remove(id, f)) {
        f.completeExceptionally(new AgentException(AgentException.Code.DEADLINE_EXCEEDED,
            what + ": no answer from " + connection.description() + " within " + deadline));
      }
    }, Math.max(0, deadline.toNanos()), TimeUnit.NANOSECONDS);
    f.whenComplete((r, e) -> timer.cancel(false));
    try {
      connection.send(Frame.request(id, request.toByteArray()));
    } catch (IllegalArgumentException e) {
      calls.remove(id);
      f.completeExceptionally(new AgentException(AgentException.Code.INVALID_ARGUMENT, what + ": " + e.getMessage()));
    } catch (IOException e) {
      calls.remove(id);
      f.completeExceptionally(lost(what, e));
    }
    return f;
  }

  private AgentException lost(String what, Throwable cause) {
    Throwable c = cause != null ? cause : connection.closed().getNow(null);
    return new AgentException(AgentException.Code.CONNECTION_LOST,
        what + ": connection to " + connection.description() + " lost" + (c == null ? "" : ": " + c.getMessage()), c);
  }

  private void onFrame(Frame frame) throws ProtocolException {
    switch (frame.type()) {
      case RESPONSE -> {
        Response r;
        try {
          r = Response.parseFrom(frame.payload());
        } catch (InvalidProtocolBufferException e) {
          throw new ProtocolException("malformed Response on stream " + frame.streamId() + ": " + e.getMessage(), e);
        }
        CompletableFuture<Response> f = calls.remove(frame.streamId());
        if (f != null) {
          if (staleBytes >= 0) firstAnswer(); // anything older than the agent's first answer came before it
          f.complete(r);
        } else {
          requireAllocated(frame);  // a late answer to a call that timed out is dropped
        }
      }
      case DATA -> {
        PortChannel port = ports.get(frame.streamId());
        if (port != null) {
          port.onData(frame);
          return;
        }
        ExecOutput o = outputs.get(frame.streamId());
        WatchStream w = o == null ? watches.get(frame.streamId()) : null;
        if (o != null) {
          o.onData(frame);
        } else if (w != null) {
          w.onData(frame);
        } else {
          requireAllocated(frame);  // late output of an exec whose call gave up is dropped
        }
      }
      case WINDOW_UPDATE -> {
        // Only forwarded ports take the agent's credit (stdin is request/response).
        PortChannel port = ports.get(frame.streamId());
        if (port != null) port.onCredit(frame.windowIncrement());
      }
      case REQUEST -> throw new ProtocolException("unexpected REQUEST from the agent on stream " + frame.streamId());
      default -> throw new ProtocolException("unexpected " + frame.type() + " frame");
    }
  }

  /**
   * Only this client opens streams: a frame on one it never opened is an agent making things up
   * (and could be a flood the client would otherwise read for ever), so the connection goes.
   */
  private void requireAllocated(Frame frame) throws ProtocolException {
    int id = frame.streamId();
    int next = nextStreamId.get();
    if (id <= 0 || (id >= next && !wrapped)) {
      if (isStale(frame)) return;
      if (staleBytes > staleBytesLimit) {
        throw new ProtocolException(staleBytes + " bytes of frames on streams this client never opened before the agent's"
            + " first answer, more than the " + staleBytesLimit + " another connection can have left");
      }
      throw new ProtocolException(frame.type() + " on stream " + id + ", which this client never opened");
    }
  }

  private void firstAnswer() {
    if (staleFrames > 0) {
      LOG.log(Level.INFO, connection.description() + ": dropped " + staleFrames + " frames (" + staleBytes
          + " bytes) of a previous connection before the agent's first answer");
    }
    staleBytes = -1;
  }

  /**
   * Whether a frame on no stream of this client is a previous connection's leftover, to drop (see
   * staleBytesLimit): only before the agent's first answer, and within the bound. On the reader thread.
   */
  private boolean isStale(Frame frame) {
    if (staleBytes < 0) return false;
    staleBytes += Frame.HEADER_SIZE + frame.payload().length;
    if (staleBytes > staleBytesLimit) return false;
    staleFrames++;
    LOG.log(Level.DEBUG, () -> "dropped " + frame.type() + " on stream " + frame.streamId() + " before the agent's first"
        + " answer (another connection's, on a serial port)");
    return true;
  }

  private void onClosed(Throwable cause) {
    for (Integer id : calls.keySet()) {
      CompletableFuture<Response> f = calls.remove(id);
      if (f != null) f.completeExceptionally(lost("call on stream " + id, cause));
    }
    for (Integer id : outputs.keySet()) {
      ExecOutput o = outputs.remove(id);
      if (o != null) o.fail(lost("output of stream " + id, cause));
    }
    for (Integer id : watches.keySet()) {
      WatchStream w = watches.remove(id);
      if (w != null) w.fail(lost("watch on stream " + id, cause));
    }
    for (Integer id : ports.keySet()) {
      PortChannel p = ports.remove(id);
      if (p != null) p.fail(lost("port stream " + id, cause));
    }
    closed.complete(null);
  }

  // ------------------------------------------------------------------------------------------
  // File transfers

  private interface Transfer<T> {
    T run() throws Exception;
  }

  private <T> CompletableFuture<T> transfer(Duration deadline, String what, Transfer<T> body) {
    CompletableFuture<T> result = new CompletableFuture<>();
    TRANSFERS.execute(() -> {
      try {
        result.complete(body.run());
      } catch (Throwable t) {
        Throwable c = unwrap(t);
        result.completeExceptionally(c instanceof AgentException ? c
            : new AgentException(AgentException.Code.INTERNAL, what + ": " + c, c));
      }
    });
    return result;
  }

  private static Duration remaining(long deadlineAt, String what) {
    long left = deadlineAt - System.nanoTime();
    if (left <= 0) throw new AgentException(AgentException.Code.DEADLINE_EXCEEDED, what + ": deadline passed");
    return Duration.ofNanos(left);
  }

  private static <T> T await(CompletableFuture<T> f) throws InterruptedException {
    try {
      return f.get();
    } catch (ExecutionException e) {
      Throwable c = unwrap(e);
      if (c instanceof RuntimeException re) throw re;
      throw new CompletionException(c);
    }
  }

  private static Throwable unwrap(Throwable t) {
    while ((t instanceof CompletionException || t instanceof ExecutionException) && t.getCause() != null) {
      t = t.getCause();
    }
    return t;
  }

  private static CompletionException asCompletion(Throwable t) {
    return t instanceof CompletionException ce ? ce : new CompletionException(t);
  }

  // ------------------------------------------------------------------------------------------
  // Output streams and flow control

  /** The output of one exec: hands DATA to the sink and returns credit as the sink releases it. */
  private final class ExecOutput {
    private final int streamId;
    private final OutputSink sink;
    private final int window;
    /** Per channel (0 stdout, 1 stderr): bytes received and not yet credited back. */
    private final long[] inFlight = new long[2];
    /** Per channel: bytes released by the sink, not yet sent as a WINDOW_UPDATE. */
    private final long[] released = new long[2];
    private final boolean[] ended = new boolean[2];
    private final AtomicBoolean failed = new AtomicBoolean();

    ExecOutput(int streamId, OutputSink sink, int window) {
      this.streamId = streamId;
      this.sink = sink;
      this.window = window;
    }

    void onData(Frame frame) throws ProtocolException {
      int ch = frame.stderr() ? 1 : 0;
      OutputSink.Channel channel = frame.stderr() ? OutputSink.Channel.STDERR : OutputSink.Channel.STDOUT;
      int len = frame.payload().length;
      if (len > 0) {
        synchronized (this) {
          if (ended[ch]) throw new ProtocolException("DATA after end of " + channel + " on stream " + streamId);
          inFlight[ch] += len;
          if (inFlight[ch] > window) {
            throw new ProtocolException("agent overran the flow-control window of " + window + " bytes on "
                + channel + " of stream " + streamId);
          }
        }
        AtomicBoolean once = new AtomicBoolean();
        Runnable release = () -> {
          if (once.compareAndSet(false, true)) release(ch, len);
        };
        try {
          sink.onData(channel, frame.payload(), release);
        } catch (RuntimeException e) {
          LOG.log(Level.WARNING, "output sink of stream " + streamId + " failed; its data is dropped", e);
          release.run();
        }
      }
      if (frame.endOfStream()) {
        boolean all;
        synchronized (this) {
          ended[ch] = true;
          all = ended[0] && ended[1];
        }
        if (all) outputs.remove(streamId, this);
        try {
          sink.onEnd(channel);
        } catch (RuntimeException e) {
          LOG.log(Level.WARNING, "output sink of stream " + streamId + " failed at end of " + channel, e);
        }
      }
    }

    private void release(int ch, int len) {
      int credit = 0;
      synchronized (this) {
        released[ch] += len;
        // Coalesced: one update per quarter window. Never a deadlock, as the agent keeps at least
        // three quarters of its window while less than a quarter waits here.
        if (!ended[ch] && released[ch] >= Math.max(1, window / 4)) {
          credit = (int) released[ch];
          inFlight[ch] -= credit;
          released[ch] = 0;
        }
      }
      if (credit <= 0) return;
      // Queued, never blocking: safe on the reader thread too (a sink that releases inline).
      connection.trySend(Frame.windowUpdate(streamId, ch == 1, credit));
    }

    void fail(AgentException e) {
      boolean open;
      synchronized (this) {
        open = !(ended[0] && ended[1]);
      }
      if (open && failed.compareAndSet(false, true)) {
        try {
          sink.onError(e);
        } catch (RuntimeException ex) {
          LOG.log(Level.WARNING, "output sink of stream " + streamId + " failed in onError", ex);
        }
      }
    }
  }

  // ------------------------------------------------------------------------------------------
  // Watches

  /** A WatchDir's stream: WatchEvents in DATA frames, credited back once the listener has taken them. */
  private final class WatchStream implements DirWatch {
    /** The last frame carries only a short reason: it may come when no credit is left. */
    private static final int END_SLACK = 1024;
    private final int streamId;
    private final WatchListener listener;
    private final int window;
    private final CompletableFuture<String> ended = new CompletableFuture<>();
    private long inFlight;
    private volatile String path = "";
    private volatile int watchedDirs;
    private volatile boolean partial;

    WatchStream(int streamId, WatchListener listener, int window) {
      this.streamId = streamId;
      this.listener = listener;
      this.window = window;
    }

    void started(String path, int watchedDirs, boolean partial) {
      this.path = path;
      this.watchedDirs = watchedDirs;
      this.partial = partial;
    }

    @Override
    public String path() {
      return path;
    }

    @Override
    public int watchedDirs() {
      return watchedDirs;
    }

    @Override
    public boolean partial() {
      return partial;
    }

    @Override
    public CompletableFuture<String> ended() {
      return ended;
    }

    @Override
    public CompletableFuture<Void> cancel(Duration deadline) {
      String what = "cancel watch " + path + " (stream " + streamId + ")";
      return call(AgentTranslations.cancelWatch(streamId), deadline, what).thenAccept(r -> {
        // Gone already (ended, or never started): nothing left to cancel.
        if (r.getKindCase() == KindCase.ERROR && r.getError().getCode() == dev.flotilla.agent.protocol.v1.Error.Code.NOT_FOUND) {
          return;
        }
        AgentTranslations.empty(r, KindCase.CANCEL_WATCH, what);
      });
    }

    void onData(Frame frame) throws ProtocolException {
      if (ended.isDone()) throw new ProtocolException("DATA after the end of watch stream " + streamId);
      int len = frame.payload().length;
      synchronized (this) {
        inFlight += len;
        if (inFlight > window + (frame.endOfStream() ? END_SLACK : 0)) {
          throw new ProtocolException("agent overran the flow-control window of " + window + " bytes on watch stream "
              + streamId);
        }
      }
      dev.flotilla.agent.protocol.v1.WatchEvents batch;
      try {
        batch = dev.flotilla.agent.protocol.v1.WatchEvents.parseFrom(frame.payload());
      } catch (InvalidProtocolBufferException e) {
        throw new ProtocolException("malformed WatchEvents on stream " + streamId + ": " + e.getMessage(), e);
      }
      if (batch.getEventsCount() > 0) {
        try {
          listener.onEvents(AgentTranslations.fsEvents(batch));
        } catch (RuntimeException e) {
          LOG.log(Level.WARNING, "watch listener of stream " + streamId + " failed; its events are dropped", e);
        }
      }
      if (frame.endOfStream()) {
        watches.remove(streamId, this);
        String reason = batch.getEndReason();
        try {
          listener.onEnd(reason);
        } catch (RuntimeException e) {
          LOG.log(Level.WARNING, "watch listener of stream " + streamId + " failed at its end", e);
        }
        ended.complete(reason);
        return;
      }
      int credit = 0;
      synchronized (this) {
        // Coalesced like exec output: one update per quarter window.
        if (inFlight >= Math.max(1, window / 4)) {
          credit = (int) inFlight;
          inFlight = 0;
        }
      }
      if (credit > 0) connection.trySend(Frame.windowUpdate(streamId, false, credit));
    }

    void fail(AgentException e) {
      if (ended.isDone()) return;
      try {
        listener.onError(e);
      } catch (RuntimeException ex) {
        LOG.log(Level.WARNING, "watch listener of stream " + streamId + " failed in onError", ex);
      }
      ended.completeExceptionally(e);
    }
  }

  // ------------------------------------------------------------------------------------------

  private static ScheduledExecutorService daemonScheduler() {
    ScheduledThreadPoolExecutor s = new ScheduledThreadPoolExecutor(1, r -> {
      Thread t = new Thread(r, "agent-client-deadlines");
      t.setDaemon(true);
      return t;
    });
    s.setRemoveOnCancelPolicy(true);
    return Executors.unconfigurableScheduledExecutorService(s);
  }

  private static ExecutorService daemonPool() {
    AtomicInteger n = new AtomicInteger();
    ThreadPoolExecutor p = new ThreadPoolExecutor(0, 64, 30, TimeUnit.SECONDS, new SynchronousQueue<>(), r -> {
      Thread t = new Thread(r, "agent-client-transfer-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
    return p;
  }

}
