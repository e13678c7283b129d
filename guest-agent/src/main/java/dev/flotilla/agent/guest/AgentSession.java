package dev.flotilla.agent.guest;

import com.google.protobuf.InvalidProtocolBufferException;
import dev.flotilla.agent.guest.process.GuestProcess;
import dev.flotilla.agent.guest.process.OutputRing;
import dev.flotilla.agent.guest.process.ProcessExit;
import dev.flotilla.agent.guest.process.ProcessTable;
import dev.flotilla.agent.guest.system.DirWatcher;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameConnection;
import dev.flotilla.agent.protocol.frame.FrameType;
import dev.flotilla.agent.protocol.frame.ProtocolException;
import dev.flotilla.agent.protocol.v1.Empty;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.ExecProcessResponse;
import dev.flotilla.agent.protocol.v1.HandshakeRequest;
import dev.flotilla.agent.protocol.v1.PingResponse;
import dev.flotilla.agent.protocol.v1.ReadOutputRequest;
import dev.flotilla.agent.protocol.v1.Request;
import dev.flotilla.agent.protocol.v1.Response;
import dev.flotilla.agent.protocol.v1.WaitProcessResponse;
import dev.flotilla.agent.protocol.v1.WatchDirRequest;
import dev.flotilla.agent.protocol.v1.WriteStdinResponse;
import java.lang.System.Logger.Level;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;

/**
 * One host connection: checks the handshake, runs each request (check, do, map the error) and
 * routes WINDOW_UPDATEs to the output of the processes it started.
 *
 * <p>Handshake, exec, wait, signal and ping run on the reader thread, in the order they came;
 * calls that may block (stdin, files, stats, shutdown, watches) run elsewhere so that the reader
 * keeps taking WINDOW_UPDATEs.
 *
 * <p>A WatchDir lives as long as its connection (at most {@link #MAX_WATCHES} of them): its
 * events go out as DATA on its stream, paced by the host's WINDOW_UPDATEs like exec output.
 */
final class AgentSession implements FrameConnection.Handler {

  static final String LEASE_OVER = "lease expired: this incarnation no longer serves (its node did not renew the lease"
      + " in time; the sandbox may run elsewhere by now)";
  private static final System.Logger LOG = System.getLogger(AgentSession.class.getName());

  private final GuestAgent agent;
  private final FrameConnection conn;
  /** Processes this connection started, by the stream their output goes to. */
  private final Map<Integer, GuestProcess> outputs = new ConcurrentHashMap<>();
  /** Watches of this connection, by their stream. */
  private final Map<Integer, DirWatcher.Watch> watches = new ConcurrentHashMap<>();
  static final int MAX_WATCHES = 16;
  /** Forwarded ports of this connection (OpenPort). */
  private final dev.flotilla.agent.guest.net.PortForwards ports;
  private volatile boolean handshaken;
  /** The identity this connection's last accepted handshake named: a rebirth since makes it stale. */
  private volatile Identity handshakenAs;

  AgentSession(GuestAgent agent, FrameConnection conn) {
    this.agent = agent;
    this.conn = conn;
    this.ports = new dev.flotilla.agent.guest.net.PortForwards(conn::trySend, conn.maxPayload());
  }

  @Override
  public void onFrame(Frame frame) throws ProtocolException {
    // Only a node that named this sandbox and incarnation keeps it alive. A handshake renews only
    // once accepted (see onRequest), so that a refused one never does.
    if (handshaken && frame.type() != FrameType.REQUEST && !agent.renewLease()) {
      conn.goAway(LEASE_OVER);
      return;
    }
    switch (frame.type()) {
      case REQUEST -> onRequest(frame.streamId(), frame.payload());
      case WINDOW_UPDATE -> {
        GuestProcess p = outputs.get(frame.streamId());
        if (p != null) p.grant(frame.stderr(), frame.windowIncrement());
        DirWatcher.Watch w = watches.get(frame.streamId());
        if (w != null) w.grant(frame.windowIncrement());
        ports.onCredit(frame.streamId(), frame.windowIncrement());
      }
      case DATA -> {
        // Only forwarded ports take DATA from the host; late DATA of a port that ended is dropped.
        if (!ports.onData(frame) && frame.streamId() <= 0) {
          throw new ProtocolException("DATA from the host on stream " + frame.streamId());
        }
      }
      default -> throw new ProtocolException("unexpected " + frame.type() + " frame from the host on stream "
          + frame.streamId());
    }
  }

  /** The connection is gone; its processes live on and their output is drained and dropped. */
  void onClosed(Throwable cause) {
    if (cause != null) LOG.log(Level.INFO, conn.description() + " closed: " + cause.getMessage());
    for (GuestProcess p : outputs.values()) p.discardOutput();
    outputs.clear();
    ports.closeAll();
    for (Integer id : watches.keySet()) {
      DirWatcher.Watch w = watches.remove(id);
      if (w != null) agent.workers().execute(() -> w.end(null));
    }
  }

  private void onRequest(int streamId, byte[] payload) {
    Request request;
    try {
      request = Request.parseFrom(payload);
    } catch (InvalidProtocolBufferException e) {
      reply(streamId, error(AgentError.invalid("malformed Request: " + e.getMessage())));
      return;
    }
    if (handshaken && request.getKindCase() != Request.KindCase.HANDSHAKE && !agent.renewLease()) {
      // Thawed after its lease ran out (a frozen host, a starved agent): another incarnation may
      // serve by now, so this one answers nothing any more, whoever asks; the watchdog ends it.
      reply(streamId, error(AgentError.precondition(LEASE_OVER)));
      conn.goAway(LEASE_OVER);
      return;
    }
    if (handshaken && request.getKindCase() != Request.KindCase.HANDSHAKE && handshakenAs != agent.identity()) {
      // This connection named the identity a clone's agent had before its rebirth: that sandbox
      // is not this one any more (fencing, as for a stale incarnation).
      String stale = "stale incarnation: this connection's handshake named " + handshakenAs
          + ", which this agent no longer serves (it was reborn as " + agent.identity() + ")";
      reply(streamId, error(AgentError.precondition(stale)));
      conn.goAway(stale);
      return;
    }
    try {
      if (!handshaken && request.getKindCase() != Request.KindCase.HANDSHAKE) {
        throw AgentError.precondition("handshake required before " + request.getKindCase());
      }
      switch (request.getKindCase()) {
        case WRITE_FILE, READ_FILE, LIST_DIR, STAT, MAKE_DIR, REMOVE, RENAME, WATCH_DIR -> agent.requireRoot(request.getKindCase());
        default -> { }
      }
      switch (request.getKindCase()) {
        case HANDSHAKE -> {
          try {
            reply(streamId, handshake(request.getHandshake()));
          } catch (Refusal r) {
            reply(streamId, error(r.error));
            conn.goAway(r.error.getMessage());
          } catch (AgentError e) {
            reply(streamId, error(e));
          } finally {
            // a clone's console lines, held from its template's save, once its first answer is out
            if (!request.getHandshake().getPausing()) ConsoleLines.console().release();
          }
        }
        case EXEC_PROCESS -> exec(streamId, request);
        case WAIT_PROCESS -> waitProcess(streamId, request.getWaitProcess().getExecId());
        case SIGNAL_PROCESS -> {
          agent.processes().get(request.getSignalProcess().getExecId()).signal(request.getSignalProcess().getSignal());
          reply(streamId, Response.newBuilder().setSignalProcess(Empty.getDefaultInstance()).build());
        }
        case WRITE_STDIN -> later(streamId, agent.processes().get(request.getWriteStdin().getExecId())
            .writeStdin(request.getWriteStdin().getData().toByteArray())
            .thenApply(n -> Response.newBuilder().setWriteStdin(WriteStdinResponse.newBuilder().setLength(n)).build()));
        case RESIZE_TTY -> {
          agent.processes().get(request.getResizeTty().getExecId())
              .resize(request.getResizeTty().getRows(), request.getResizeTty().getCols());
          reply(streamId, Response.newBuilder().setResizeTty(Empty.getDefaultInstance()).build());
        }
        case CLOSE_STDIN -> later(streamId, agent.processes().get(request.getCloseStdin().getExecId()).closeStdin()
            .thenApply(v -> Response.newBuilder().setCloseStdin(Empty.getDefaultInstance()).build()));
        case WRITE_FILE -> onWorker(streamId,
            () -> Response.newBuilder().setWriteFile(agent.files().write(request.getWriteFile())).build());
        case READ_FILE -> onWorker(streamId,
            () -> Response.newBuilder().setReadFile(agent.files().read(request.getReadFile())).build());
        case LIST_DIR -> onWorker(streamId,
            () -> Response.newBuilder().setListDir(agent.lister().list(request.getListDir())).build());
        case STAT -> onWorker(streamId,
            () -> Response.newBuilder().setStat(agent.files().stat(request.getStat())).build());
        case MAKE_DIR -> onWorker(streamId,
            () -> Response.newBuilder().setMakeDir(agent.files().makeDir(request.getMakeDir())).build());
        case REMOVE -> onWorker(streamId,
            () -> Response.newBuilder().setRemove(agent.files().remove(request.getRemove())).build());
        case RENAME -> onWorker(streamId, () -> {
          agent.files().rename(request.getRename());
          return Response.newBuilder().setRename(Empty.getDefaultInstance()).build();
        });
        case WATCH_DIR -> agent.workers().execute(() -> watchDir(streamId, request.getWatchDir()));
        case CANCEL_WATCH -> cancelWatch(streamId, request.getCancelWatch().getStreamId());
        case OPEN_PORT -> agent.workers().execute(() -> openPort(streamId, request));
        case STATS -> onWorker(streamId, () -> Response.newBuilder().setStats(agent.probe().stats()).build());
        case READ_OUTPUT -> readOutput(streamId, request.getReadOutput());
        case LIST_PROCESSES -> reply(streamId, Response.newBuilder()
            .setListProcesses(agent.processes().list(request.getListProcesses().getMaxEntries())).build());
        case PING -> reply(streamId, Response.newBuilder()
            .setPing(PingResponse.newBuilder().setNonce(request.getPing().getNonce())).build());
        case SHUTDOWN -> shutdown(streamId, request);
        case KIND_NOT_SET -> throw AgentError.invalid("empty request: no call named (unknown to this agent?)");
      }
    } catch (AgentError e) {
      reply(streamId, error(e));
    } catch (RuntimeException e) {
      LOG.log(Level.ERROR, "request " + request.getKindCase() + " failed", e);
      reply(streamId, error(new AgentError(Error.Code.INTERNAL, request.getKindCase() + " failed: " + e)));
    } catch (OutOfMemoryError e) {
      // No thread (or memory) for this call: the sandbox is out of pids or memory. Refuse the call
      // and keep serving the connection, rather than lose its reader.
      reply(streamId, error(new AgentError(Error.Code.RESOURCE_EXHAUSTED, request.getKindCase()
          + " failed: the sandbox is out of processes or memory (" + e.getMessage() + "); retry once it has room")));
    }
  }

  private Response handshake(HandshakeRequest h) {
    long received = System.nanoTime();
    // One handshake at a time across connections: a rebirth changes what the others are checked against.
    synchronized (agent.identityLock()) {
      Identity c = agent.identity();
      String sandboxId = h.getSandboxId();
      long incarnation = h.getIncarnation();
      byte[] secret = h.getSecret().toByteArray();
      boolean rebirth = h.hasRebirth();
      if (rebirth && c.is(h.getRebirth().getSandboxId(), h.getRebirth().getIncarnation(),
          h.getRebirth().getSecret().toByteArray())) {
        // A retry after the answer to the rebirth was lost: the agent already is what it asks for.
        sandboxId = h.getRebirth().getSandboxId();
        incarnation = h.getRebirth().getIncarnation();
        secret = h.getRebirth().getSecret().toByteArray();
        rebirth = false;
      }
      try {
        c.secret().check(secret);
      } catch (AgentError refused) {
        // Whoever this is has no business on this connection: answer once (so a misconfigured node
        // learns why), then hang up rather than let it keep guessing on the same connection.
        handshaken = false;
        LOG.log(Level.WARNING, conn.description() + ": " + refused.getMessage());
        throw new Refusal(refused);
      }
      if (!sandboxId.equals(c.sandboxId()) || incarnation != c.incarnation()) {
        throw AgentError.precondition("stale incarnation: this agent serves sandbox '" + c.sandboxId()
            + "' incarnation " + c.incarnation() + ", the host named sandbox '" + sandboxId
            + "' incarnation " + incarnation);
      }
      if (rebirth) {
        agent.rebirth(dev.flotilla.agent.guest.rebirth.RebirthOrder.of(h.getRebirth()), received);
      } else {
        try {
          c.secret().accepted(secret);
        } catch (AgentError refused) {
          throw new Refusal(refused);
        }
      }
      if (!agent.stateLease(Integer.toUnsignedLong(h.getLeaseMs()), h.getPausing())) {
        handshaken = false;
        throw new Refusal(AgentError.precondition(LEASE_OVER));
      }
      if (h.getPausing()) agent.beforePause();
      handshakenAs = agent.identity();
      handshaken = true;
      return Response.newBuilder().setHandshake(agent.details()).build();
    }
  }

  /** A handshake refused for its secret: the connection closes after the answer. */
  private static final class Refusal extends RuntimeException {
    final AgentError error;

    Refusal(AgentError error) {
      super(error.getMessage(), null, false, false);
      this.error = error;
    }
  }

  private void exec(int streamId, Request request) {
    ProcessTable.Started started = agent.processes()
        .start(request.getExecProcess(), streamId, conn::trySend);
    if (started.process().ring().isPresent()) {
      // Detached: its output goes to its ring, whatever becomes of this connection.
      reply(streamId, Response.newBuilder()
          .setExecProcess(ExecProcessResponse.newBuilder().setPid(started.process().pid())).build());
      started.startOutput();
      return;
    }
    outputs.put(streamId, started.process());
    started.process().exit().thenCompose(x -> CompletableFuture.allOf(started.stdout().done(), started.stderr().done()))
        .thenRun(() -> outputs.remove(streamId));
    reply(streamId, Response.newBuilder()
        .setExecProcess(ExecProcessResponse.newBuilder().setPid(started.process().pid())).build());
    if (!conn.isOpen()) started.process().discardOutput();
    started.startOutput();
  }

  private void waitProcess(int streamId, String execId) {
    GuestProcess p = agent.processes().get(execId);
    p.exit().thenAccept(exit -> {
      reply(streamId, Response.newBuilder().setWaitProcess(toProto(exit)).build());
      agent.processes().exitReported(p);
    });
  }

  private void readOutput(int streamId, ReadOutputRequest r) {
    OutputRing ring = agent.processes().get(r.getExecId()).ring().orElseThrow(() -> AgentError.precondition(
        "exec " + r.getExecId() + " is not detached: its output went to the connection that started it"));
    int max = Math.min(r.getMaxBytes() == 0 ? agent.config().fileChunk() : r.getMaxBytes(), agent.config().fileChunk());
    later(streamId, ring.read(r.getOffset(), max, Duration.ofMillis(Math.min(Integer.toUnsignedLong(r.getWaitMillis()), 60_000)),
            agent.timer())
        .thenApply(out -> Response.newBuilder().setReadOutput(out).build()));
  }

  /** On a worker: starts the watch, answers, and only then lets its events out. */
  private void watchDir(int streamId, WatchDirRequest r) {
    try {
      DirWatcher.Watch w;
      synchronized (watches) {
        if (watches.size() >= MAX_WATCHES) {
          throw new AgentError(Error.Code.RESOURCE_EXHAUSTED, "this connection already runs " + MAX_WATCHES
              + " watches; cancel one");
        }
        if (watches.containsKey(streamId)) throw AgentError.invalid("stream " + streamId + " already carries a watch");
        w = agent.watcher().watch(r, (payload, end) -> {
          if (end) watches.remove(streamId);
          conn.trySend(Frame.data(streamId, false, payload, end));
        });
        watches.put(streamId, w);
      }
      reply(streamId, Response.newBuilder().setWatchDir(w.response()).build());
      if (!conn.isOpen() && watches.remove(streamId, w)) {
        w.end(null); // the connection went meanwhile: onClosed has not seen this one
        return;
      }
      w.activate();
    } catch (AgentError e) {
      reply(streamId, error(e));
    } catch (RuntimeException e) {
      LOG.log(Level.ERROR, "WATCH_DIR failed", e);
      reply(streamId, error(new AgentError(Error.Code.INTERNAL, "WATCH_DIR failed: " + e)));
    }
  }

  /** On a worker (the connect blocks, bounded): connects, answers, and only then lets the bytes flow. */
  private void openPort(int streamId, Request request) {
    try {
      dev.flotilla.agent.guest.net.PortForwards.Port p = ports.open(streamId, request.getOpenPort());
      reply(streamId, Response.newBuilder().setOpenPort(p.response()).build());
      p.start();
    } catch (AgentError e) {
      reply(streamId, error(e));
    } catch (RuntimeException e) {
      LOG.log(Level.ERROR, "OPEN_PORT failed", e);
      reply(streamId, error(new AgentError(Error.Code.INTERNAL, "OPEN_PORT failed: " + e)));
    }
  }

  private void cancelWatch(int streamId, int watchStream) {
    DirWatcher.Watch w = watches.remove(watchStream);
    if (w == null) {
      throw AgentError.notFound("no watch on stream " + Integer.toUnsignedLong(watchStream) + " of this connection");
    }
    onWorker(streamId, () -> {
      w.end("cancelled");
      return Response.newBuilder().setCancelWatch(Empty.getDefaultInstance()).build();
    });
  }

  private static WaitProcessResponse toProto(ProcessExit e) {
    return WaitProcessResponse.newBuilder().setExitCode(e.exitCode()).setSignal(e.signal()).build();
  }

  private void shutdown(int streamId, Request request) {
    Duration grace = Duration.ofMillis(Integer.toUnsignedLong(request.getShutdown().getGraceMillis()));
    boolean powerOff = request.getShutdown().getPowerOff();
    // The node asked for the end: the lease no longer counts while the processes get their grace
    // (which may be longer than the lease); the agent exits when it is over.
    agent.stateLease(0);
    Thread t = new Thread(() -> {
      agent.stopProcesses(grace);
      reply(streamId, Response.newBuilder().setShutdown(Empty.getDefaultInstance()).build());
      agent.exit(powerOff);
    }, "agent-shutdown");
    t.setDaemon(true);
    t.start();
  }

  private void onWorker(int streamId, Supplier<Response> call) {
    later(streamId, CompletableFuture.supplyAsync(call, agent.workers()));
  }

  private void later(int streamId, CompletableFuture<Response> f) {
    f.whenComplete((r, e) -> {
      if (e == null) {
        reply(streamId, r);
        return;
      }
      Throwable c = e instanceof CompletionException && e.getCause() != null ? e.getCause() : e;
      if (c instanceof AgentError ae) {
        reply(streamId, error(ae));
      } else {
        LOG.log(Level.ERROR, "request on stream " + streamId + " failed", c);
        reply(streamId, error(new AgentError(Error.Code.INTERNAL, String.valueOf(c))));
      }
    });
  }

  private static Response error(AgentError e) {
    return Response.newBuilder().setError(e.toProto()).build();
  }

  private void reply(int streamId, Response r) {
    conn.trySend(Frame.response(streamId, r.toByteArray()));
  }
}
