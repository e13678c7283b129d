package dev.flotilla.vm.supervisor;

import com.typesafe.config.Config;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.GuestInfo;
import dev.flotilla.agent.protocol.client.OutputRead;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.sandbox.protocol.SandboxProcess;
import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.AgentLost;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Command;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Exec;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.GetStats;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.GuestStats;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.MainProcess;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Pause;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.ReadFile;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.ListDir;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Stat;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.MakeDir;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Remove;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Rename;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.WatchDir;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Report;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Resume;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Stop;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmExited;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmReady;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmStartFailed;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.WriteFile;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletionStage;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.PostStop;
import org.apache.pekko.actor.typed.javadsl.AbstractBehavior;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.Receive;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.stream.Materializer;

/**
 * Owns one VM and its agent connection, for one incarnation of a sandbox. Driver calls and
 * agent connects block, so they run on the blocking dispatcher and come back as messages; the
 * actor itself never waits.
 *
 * <p>Life: start (or adopt) → connect the agent with backoff → handshake → {@link VmReady};
 * then health pings; the VM's exit → {@link VmExited} and the actor stops. Whether the VM is
 * frozen is its owner's to say (start/adopt {@code paused}, then Pause/Resume): the supervisor
 * brings the VM to that state and keeps no other account of it. Only {@link Stop} or
 * a lost agent kills the VM: when the actor is stopped any other way (its node shutting down)
 * the VM runs on, for a later node to adopt from its saved handle.
 */
public final class VmSupervisor extends AbstractBehavior<Object> {

  /**
   * @param blockingDispatcher config path of the dispatcher for driver calls
   * @param startTimeout prepare + start + connect + handshake
   * @param connectBackoffMin first delay between agent connect attempts, doubled each time
   * @param connectBackoffMax the longest delay between attempts
   * @param callTimeout deadline of one agent call
   * @param healthInterval how often the agent is pinged
   * @param lease the agent's lease stated in every handshake, {@link Duration#ZERO} for none: an
   *     agent that hears nothing for this long ends its sandbox (see reference.conf)
   * @param healthMaxFailures consecutive failed pings before the agent is lost
   * @param execWaitSlice how long one waitProcess call lasts before it is re-issued
   * @param execBuffer exec output chunks buffered between the agent and the stream ref
   * @param fileChunkSize bytes per ReadFile chunk
   * @param fileTimeout deadline of one whole WriteFile
   * @param connector opens agent connections
   */
  public record Settings(
      String blockingDispatcher,
      Duration startTimeout,
      Duration connectBackoffMin,
      Duration connectBackoffMax,
      Duration callTimeout,
      Duration healthInterval,
      Duration lease,
      int healthMaxFailures,
      Duration execWaitSlice,
      int execBuffer,
      int fileChunkSize,
      Duration fileTimeout,
      AgentConnector connector) {

    public Settings {
      if (lease.isNegative() || lease.toMillis() > 0xFFFF_FFFFL) {
        throw new IllegalArgumentException("flotilla.vm.supervisor.lease = " + lease.toMillis()
            + " ms is out of range: give a duration such as 8s, or 0/off for no lease");
      }
      if (!lease.isZero() && healthInterval.multipliedBy(3).compareTo(lease) >= 0) {
        throw new IllegalArgumentException("flotilla.vm.supervisor.health-interval (" + healthInterval.toMillis()
            + " ms) must be under a third of flotilla.vm.supervisor.lease (" + lease.toMillis()
            + " ms): the health pings renew the guest agent's lease and several must fit in one, or a late ping"
            + " ends the sandbox; lower health-interval (1s for the default 10s lease) or raise lease");
      }
    }

    /** From {@code flotilla.vm.supervisor} (see reference.conf). */
    public static Settings fromConfig(Config c) {
      return new Settings(
          c.getString("blocking-dispatcher"),
          c.getDuration("start-timeout"),
          c.getDuration("connect-backoff-min"),
          c.getDuration("connect-backoff-max"),
          c.getDuration("call-timeout"),
          c.getDuration("health-interval"),
          lease(c),
          c.getInt("health-max-failures"),
          c.getDuration("exec-wait-slice"),
          c.getInt("exec-buffer"),
          (int) c.getMemorySize("file-chunk-size").toBytes(),
          c.getDuration("file-timeout"),
          AgentConnector.DEFAULT);
    }

    /** {@code lease}: a duration, or 0 / off for none. */
    private static Duration lease(Config c) {
      if (c.getValue("lease").valueType() == com.typesafe.config.ConfigValueType.BOOLEAN && !c.getBoolean("lease")) {
        return Duration.ZERO; // HOCON reads a bare off as false
      }
      String raw = c.getValue("lease").unwrapped().toString().trim();
      if (raw.equals("off") || raw.equals("0")) return Duration.ZERO;
      return c.getDuration("lease");
    }

    public static Settings create(ActorSystem<?> system) {
      return fromConfig(system.settings().config().getConfig("flotilla.vm.supervisor"));
    }

    public Settings withHealth(Duration interval, int maxFailures) {
      return new Settings(blockingDispatcher, startTimeout, connectBackoffMin, connectBackoffMax, callTimeout, interval, lease, maxFailures,
          execWaitSlice, execBuffer, fileChunkSize, fileTimeout, connector);
    }

    public Settings withStartTimeout(Duration timeout) {
      return new Settings(blockingDispatcher, timeout, connectBackoffMin, connectBackoffMax, callTimeout, healthInterval, lease, healthMaxFailures,
          execWaitSlice, execBuffer, fileChunkSize, fileTimeout, connector);
    }

    public Settings withCallTimeout(Duration timeout) {
      return new Settings(blockingDispatcher, startTimeout, connectBackoffMin, connectBackoffMax, timeout, healthInterval, lease, healthMaxFailures,
          execWaitSlice, execBuffer, fileChunkSize, fileTimeout, connector);
    }

    /** The lease and, to fit it, the health interval (zero lease: none). */
    public Settings withLease(Duration newLease, Duration interval) {
      return new Settings(blockingDispatcher, startTimeout, connectBackoffMin, connectBackoffMax, callTimeout, interval, newLease,
          healthMaxFailures, execWaitSlice, execBuffer, fileChunkSize, fileTimeout, connector);
    }

    public Settings withConnector(AgentConnector c) {
      return new Settings(blockingDispatcher, startTimeout, connectBackoffMin, connectBackoffMax, callTimeout, healthInterval, lease, healthMaxFailures,
          execWaitSlice, execBuffer, fileChunkSize, fileTimeout, c);
    }
  }

  /** Starts a new VM for {@code spec}. */
  public static Behavior<Command> start(Hypervisor hypervisor, VmSpec spec, ActorRef<Report> parent, Settings settings) {
    return start(hypervisor, spec, parent, settings, null);
  }

  /** Starts a new VM for {@code spec} and, once its agent answers, its main process (null: none). */
  public static Behavior<Command> start(Hypervisor hypervisor, VmSpec spec, ActorRef<Report> parent, Settings settings,
      MainProcess main) {
    return start(hypervisor, spec, parent, settings, main, false);
  }

  /**
   * @param paused the state the owner holds its sandbox in: a paused one's new VM is frozen (its
   *     agent told first, as for any pause) before it is reported ready, and its main process
   *     starts when it is resumed
   */
  public static Behavior<Command> start(Hypervisor hypervisor, VmSpec spec, ActorRef<Report> parent, Settings settings,
      MainProcess main, boolean paused) {
    return Behaviors.<Object>setup(ctx -> Behaviors.withTimers(timers -> {
      var s = new VmSupervisor(ctx, timers, hypervisor, parent, settings, spec.incarnation(), false, main, paused);
      s.beginStart(spec);
      return s;
    })).narrow();
  }

  /** Re-attaches to a VM started earlier (by this node or a previous one), from its saved handle. */
  public static Behavior<Command> adopt(Hypervisor hypervisor, VmHandle handle, ActorRef<Report> parent, Settings settings) {
    return adopt(hypervisor, handle, parent, settings, null);
  }

  /** Re-attaches to a VM and goes on reading its main process (null: it has none). */
  public static Behavior<Command> adopt(Hypervisor hypervisor, VmHandle handle, ActorRef<Report> parent, Settings settings,
      MainProcess main) {
    return adopt(hypervisor, handle, parent, settings, main, false);
  }

  /**
   * @param paused the state the owner holds its sandbox in, which the VM is brought to: a frozen
   *     VM of a paused sandbox is adopted as it is, without a handshake its frozen agent could not
   *     answer (it is connected, and its identity checked, when resumed); a frozen VM of a running
   *     sandbox is thawed; a running VM of a paused sandbox is frozen before it is reported ready
   */
  public static Behavior<Command> adopt(Hypervisor hypervisor, VmHandle handle, ActorRef<Report> parent, Settings settings,
      MainProcess main, boolean paused) {
    return Behaviors.<Object>setup(ctx -> Behaviors.withTimers(timers -> {
      var s = new VmSupervisor(ctx, timers, hypervisor, parent, settings, handle.incarnation(), true, main, paused);
      s.beginAdopt(handle);
      return s;
    })).narrow();
  }

  // ---------------------------------------------------------------- internal messages

  /** @param frozen an adopted VM that stays frozen, as its owner holds it */
  private record Started(Vm vm, boolean frozen, Throwable error) {}

  private record Connected(AgentClient client, GuestInfo info, Throwable error, boolean reconnect) {}

  private record Exited(VmExit exit) {}

  private enum HealthTick { INSTANCE }

  private record PingDone(Throwable error) {}

  /** A connection to the agent closed; its cause says whether the agent broke the rules. */
  private record ConnectionClosed(AgentClient client) {}

  private record Abandoned(Report report) {}

  private record PauseDone(boolean pause, ActorRef<StatusReply<Done>> replyTo, Throwable error) {}

  private record StopDone(VmExit exit, Throwable error) {}

  private record SnapshotDone(dev.flotilla.vm.Snapshot snapshot, Throwable error,
      ActorRef<StatusReply<dev.flotilla.vm.Snapshot>> replyTo) {}

  private record SuspendDone(dev.flotilla.vm.Snapshot snapshot, Throwable error, ActorRef<StatusReply<Done>> replyTo) {}

  // The main process: started (or found, when adopting), then read in a loop into its log.
  private record MainStarted(long offset, Throwable error) {}

  private record MainRead(OutputRead read, Throwable error) {}

  private record MainLogged(long next, boolean eof, Throwable error) {}

  private record MainEnded(int exitCode, int signal, String reason, boolean logged) {}

  private enum MainRetry { INSTANCE }

  private enum MainRetryLater { INSTANCE }

  /** The exec id of the main process in every incarnation's agent. */
  static final String MAIN_EXEC_ID = "main";
  private static final int MAIN_READ_BYTES = 64 * 1024;
  private static final Duration MAIN_READ_WAIT = Duration.ofSeconds(5);
  private static final Duration MAIN_RETRY = Duration.ofMillis(500);

  private enum Phase { STARTING, CONNECTING, RUNNING, LOST, STOPPING, DONE }

  // ---------------------------------------------------------------- state

  private static final AtomicLong EXEC_IDS = new AtomicLong();

  private final TimerScheduler<Object> timers;
  private final Hypervisor hypervisor;
  private final ActorRef<Report> parent;
  private final Settings settings;
  private final long incarnation;
  private final boolean adopting;
  /** The owner's sandbox is PAUSED: the VM is to be frozen, and is kept so until Resume. */
  private final boolean keepPaused;
  /** The guest kernel to report ready once the VM of a paused sandbox is frozen; null otherwise. */
  private String readyOncePaused;
  private final Executor blocking;
  /**
   * A VM whose start completed on the blocking dispatcher and that this actor has not taken yet
   * ({@link #onStarted}). If the actor stops first (its node downed, the sandbox handed off), no
   * one would supervise, ping or fence that VM, and nothing recorded it for the node's fencing:
   * it would run beside its next incarnation until its lease ran out (seen in PartitionIT). Whichever
   * of {@link #onPostStop} and the start itself comes second kills it.
   */
  private final java.util.concurrent.atomic.AtomicReference<Vm> starting = new java.util.concurrent.atomic.AtomicReference<>();
  private final java.util.concurrent.atomic.AtomicBoolean stopped = new java.util.concurrent.atomic.AtomicBoolean();
  private final Materializer mat;
  private final String execPrefix = UUID.randomUUID().toString().substring(0, 8);

  private Phase phase = Phase.STARTING;
  private long startDeadlineNanos;
  private Vm vm;
  private AgentClient client;
  private boolean paused;
  private boolean pingInFlight;
  private int failures;
  private String lostReason;
  private Duration pendingStopGrace;
  private final List<ActorRef<Done>> stopReplies = new ArrayList<>();
  private final MainProcess main;
  private long mainOffset;
  /** Started (or found running) in this incarnation: from now on only read. */
  private boolean mainStartedOk;
  /** All its output is logged: what is left is its exit. */
  private boolean mainDrained;
  /** The main process ended (logged, or being logged); no more reads. */
  private boolean mainEnded;
  /** Why the VM is being stopped because its main process ended; null otherwise. */
  private VmExit mainExit;
  private boolean ownerStopped;
  /** A suspend is under way: the VM's exit is its doing, reported by {@link #onSuspendDone}. */
  private boolean suspending;
  /** A snapshot (a fork's source) is under way or reconnecting after it. */
  private boolean snapshotting;
  /**
   * Replies that wait for the agent's new connection after a save closed the old one (a snapshot, a
   * failed suspend): whoever hears them may call into the guest at once. Run once the reconnect is
   * done, whatever its outcome.
   */
  private final List<Runnable> afterReconnect = new ArrayList<>();

  private VmSupervisor(
      ActorContext<Object> ctx, TimerScheduler<Object> timers, Hypervisor hypervisor, ActorRef<Report> parent, Settings settings,
      long incarnation, boolean adopting, MainProcess main, boolean keepPaused) {
    super(ctx);
    this.keepPaused = keepPaused;
    this.main = main;
    this.timers = timers;
    this.hypervisor = hypervisor;
    this.parent = parent;
    this.settings = settings;
    this.incarnation = incarnation;
    this.adopting = adopting;
    this.blocking = ctx.getSystem().dispatchers().lookup(DispatcherSelector.fromConfig(settings.blockingDispatcher()));
    this.mat = Materializer.matFromSystem(ctx.getSystem());
  }

  private <T> CompletableFuture<T> onBlocking(Callable<T> work) {
    return CompletableFuture.supplyAsync(() -> {
      try {
        return work.call();
      } catch (Exception e) {
        throw new CompletionException(e);
      }
    }, blocking);
  }

  private void beginStart(VmSpec spec) {
    startDeadlineNanos = System.nanoTime() + settings.startTimeout().toNanos();
    VmSpec leased = settings.lease().isZero() ? spec
        : spec.withOption(VmSpec.AGENT_LEASE_MS, Long.toString(settings.lease().toMillis()));
    getContext().pipeToSelf(onBlocking(() -> {
      Vm v = hypervisor.prepare(leased);
      try {
        v.start(settings.startTimeout());
      } catch (VmException | RuntimeException e) {
        v.destroy();
        throw e;
      }
      starting.set(v);
      if (stopped.get() && starting.compareAndSet(v, null)) {
        killOrphan(v);
        throw new VmException("the supervisor stopped while the VM started: killed, nobody would supervise it");
      }
      return v;
    }), (v, err) -> new Started(v, false, err));
  }

  private void beginAdopt(VmHandle handle) {
    startDeadlineNanos = System.nanoTime() + settings.startTimeout().toNanos();
    boolean expectPaused = keepPaused;
    getContext().pipeToSelf(onBlocking(() -> {
      Vm v = hypervisor.adopt(handle).orElseThrow(() ->
          new VmException("VM of " + handle.sandboxId() + " incarnation " + handle.incarnation() + " (pid " + handle.pid() + ") is gone"));
      boolean frozen = v.isPaused();
      // Frozen although its sandbox runs (paused when its node went, before the sandbox recorded
      // it): thawed, as the sandbox says. Its agent had heard of the pause, so its lease restarts.
      if (frozen && !expectPaused) v.resume();
      return new Started(v, frozen && expectPaused, null);
    }), (started, err) -> err != null ? new Started(null, false, err) : started);
  }

  @Override
  public Receive<Object> createReceive() {
    return newReceiveBuilder()
        .onMessage(Started.class, this::onStarted)
        .onMessage(Connected.class, this::onConnected)
        .onMessage(Exited.class, this::onExited)
        .onMessageEquals(HealthTick.INSTANCE, this::onHealthTick)
        .onMessage(PingDone.class, this::onPingDone)
        .onMessage(ConnectionClosed.class, this::onConnectionClosed)
        .onMessage(Abandoned.class, this::onAbandoned)
        .onMessage(PauseDone.class, this::onPauseDone)
        .onMessage(StopDone.class, this::onStopDone)
        .onMessage(SuspendDone.class, this::onSuspendDone)
        .onMessage(VmSupervisorProtocol.Suspend.class, this::onSuspend)
        .onMessage(VmSupervisorProtocol.SnapshotVm.class, this::onSnapshotVm)
        .onMessage(SnapshotDone.class, this::onSnapshotDone)
        .onMessage(MainStarted.class, this::onMainStarted)
        .onMessage(MainRead.class, this::onMainRead)
        .onMessage(MainLogged.class, this::onMainLogged)
        .onMessage(MainEnded.class, this::onMainEnded)
        .onMessageEquals(MainRetry.INSTANCE, this::readMain)
        .onMessageEquals(MainRetryLater.INSTANCE, () -> {
          timers.startSingleTimer(MainRetry.INSTANCE, MAIN_RETRY);
          return this;
        })
        .onMessage(Stop.class, this::onStop)
        .onMessage(Pause.class, this::onPause)
        .onMessage(Resume.class, this::onResume)
        .onMessage(VmSupervisorProtocol.Resize.class, this::onResize)
        .onMessage(Exec.class, this::onExec)
        .onMessage(VmSupervisorProtocol.ExecInteractive.class, this::onExecInteractive)
        .onMessage(WriteFile.class, this::onWriteFile)
        .onMessage(ReadFile.class, this::onReadFile)
        .onMessage(GetStats.class, this::onGetStats)
        .onMessage(VmSupervisorProtocol.StartProcess.class, this::onStartProcess)
        .onMessage(VmSupervisorProtocol.ListProcesses.class, this::onListProcesses)
        .onMessage(VmSupervisorProtocol.AttachProcess.class, this::onAttachProcess)
        .onMessage(VmSupervisorProtocol.SignalProcess.class, this::onSignalProcess)
        .onMessage(VmSupervisorProtocol.PortForward.class, this::onPortForward)
        .onMessage(VmSupervisorProtocol.CallsInFlight.class, m -> {
          m.replyTo().tell(callsInFlight.get());
          return this;
        })
        .onMessage(ListDir.class, m -> intoGuest(m.replyTo(), "cannot list " + m.path(),
            c -> c.listDir(m.path(), m.depth(), m.maxEntries(), m.startAfter(), settings.callTimeout()).thenApply(AgentStreams::page)))
        .onMessage(Stat.class, m -> intoGuest(m.replyTo(), "cannot stat " + m.path(),
            c -> c.stat(m.path(), m.followLinks(), settings.callTimeout()).thenApply(AgentStreams::entry)))
        .onMessage(MakeDir.class, m -> intoGuest(m.replyTo(), "cannot make directory " + m.path(),
            c -> c.makeDir(m.path(), m.parents(), m.mode(), settings.callTimeout()).thenApply(AgentStreams::entry)))
        .onMessage(Remove.class, m -> intoGuest(m.replyTo(), "cannot remove " + m.path(),
            c -> c.remove(m.path(), m.recursive(), settings.fileTimeout())))
        .onMessage(Rename.class, m -> intoGuest(m.replyTo(), "cannot rename " + m.from() + " to " + m.to(),
            c -> c.rename(m.from(), m.to(), m.overwrite(), settings.callTimeout()).thenApply(x -> Done.getInstance())))
        .onMessage(WatchDir.class, m -> intoGuest(m.replyTo(), "cannot watch " + m.path(),
            c -> {
              callsInFlight.incrementAndGet();
              return AgentStreams.watchDir(c, m.path(), m.recursive(), settings, mat, callsInFlight::decrementAndGet);
            }))
        .onSignal(PostStop.class, s -> onPostStop())
        .build();
  }

  // ---------------------------------------------------------------- start / adopt

  private Behavior<Object> onStarted(Started m) {
    if (m.error() != null) {
      String reason = reason(m.error());
      getContext().getLog().warn("VM incarnation {} did not {}: {}", incarnation, adopting ? "adopt" : "start", reason);
      replyStopped();
      return report(new VmStartFailed(incarnation, reason), true);
    }
    starting.compareAndSet(m.vm(), null);
    vm = m.vm();
    getContext().pipeToSelf(vm.exitFuture(), (exit, err) -> new Exited(exit != null ? exit : new VmExit(-1, 0, reason(err), false)));
    if (pendingStopGrace != null) return beginStop(pendingStopGrace);
    if (m.frozen()) {
      // Its sandbox is PAUSED and so is the VM: a frozen agent can neither answer a handshake nor
      // a ping, and is not lost for it. It is connected when resumed.
      getContext().getLog().info("VM incarnation {} adopted paused; the agent is connected when it is resumed", incarnation);
      phase = Phase.RUNNING;
      paused = true;
      timers.startTimerWithFixedDelay(HealthTick.INSTANCE, settings.healthInterval());
      return ready("");
    }
    phase = Phase.CONNECTING;
    connectingSince = System.nanoTime();
    connect(startDeadlineNanos, settings.connectBackoffMin(), false);
    return this;
  }

  /** When the first connect of this VM began: the handshake's time is logged. */
  private long connectingSince;

  /** Connect + handshake, retried with doubling delays until {@code deadlineNanos}. */
  private void connect(long deadlineNanos, Duration delay, boolean reconnect) {
    getContext().pipeToSelf(connectWithRetry(deadlineNanos, delay), (pair, err) ->
        err != null ? new Connected(null, null, err, reconnect) : new Connected(pair.client, pair.info, null, reconnect));
  }

  private record ClientAndInfo(AgentClient client, GuestInfo info) {}

  private CompletableFuture<ClientAndInfo> connectWithRetry(long deadlineNanos, Duration delay) {
    Vm v = vm;
    VmHandle h = v.handle();
    // The connect blocks (bounded by its deadline) on the blocking dispatcher; the handshake is a
    // call like any other, waited for by nobody: a guest that never answers holds no thread.
    return onBlocking(() -> {
      Duration left = Duration.ofNanos(Math.max(1_000_000, deadlineNanos - System.nanoTime()));
      return settings.connector().connect(v.agentAddress(), min(left, settings.callTimeout()));
    }).thenCompose(c -> {
      Duration left = Duration.ofNanos(Math.max(1_000_000, deadlineNanos - System.nanoTime()));
      return c.handshake(h.sandboxId(), incarnation, settings.lease(), min(left, settings.callTimeout()))
          .handle((info, err) -> {
            if (err != null) {
              c.close();
              throw new CompletionException(AgentStreams.unwrap(err));
            }
            return new ClientAndInfo(c, info);
          });
    }).exceptionallyCompose(err -> {
      Throwable cause = AgentStreams.unwrap(err);
      // Fenced (stale incarnation), or not our agent (wrong secret, socket held by another uid): retrying cannot help.
      boolean refused = cause instanceof AgentException ae
          && (ae.code() == AgentException.Code.FAILED_PRECONDITION || ae.code() == AgentException.Code.PERMISSION_DENIED);
      boolean late = System.nanoTime() + delay.toNanos() > deadlineNanos;
      if (refused || late || v.exitFuture().isDone()) return CompletableFuture.failedFuture(cause);
      Duration next = min(delay.multipliedBy(2), settings.connectBackoffMax());
      return CompletableFuture.supplyAsync(() -> null, CompletableFuture.delayedExecutor(delay.toMillis(), TimeUnit.MILLISECONDS, blocking))
          .thenCompose(x -> connectWithRetry(deadlineNanos, next));
    });
  }

  private Behavior<Object> onConnected(Connected m) {
    if (m.reconnect()) {
      pingInFlight = false;
      if (phase != Phase.RUNNING) runAfterReconnect(m.error());
      if (phase != Phase.RUNNING) {
        if (m.client() != null) m.client().close();
        return this;
      }
      runAfterReconnect(m.error());
      if (m.error() != null) return healthFailure("reconnect failed: " + reason(m.error()));
      client = m.client();
      watchConnection(client);
      failures = 0;
      return this;
    }
    if (phase != Phase.CONNECTING) {
      if (m.client() != null) m.client().close();
      return this;
    }
    if (m.error() != null) {
      String reason = "the guest agent did not answer the handshake: " + reason(m.error());
      phase = Phase.DONE;
      Vm v = vm;
      getContext().pipeToSelf(onBlocking(() -> {
        killAndForget(v);
        return null;
      }), (x, e) -> new Abandoned(new VmStartFailed(incarnation, reason)));
      return this;
    }
    client = m.client();
    watchConnection(client);
    phase = Phase.RUNNING;
    getContext().getLog().info("VM of sandbox {} incarnation {}: the agent answered its handshake {} ms after the VM started",
        vm.handle().sandboxId(), incarnation, (System.nanoTime() - connectingSince) / 1_000_000);
    timers.startTimerWithFixedDelay(HealthTick.INSTANCE, settings.healthInterval());
    if (keepPaused) {
      // Its sandbox is PAUSED: frozen (announced, like any pause) before anyone hears of it.
      readyOncePaused = m.info().kernel();
      onPause(new Pause(getContext().getSystem().ignoreRef()));
      if (paused) return this; // ready once frozen (readyIfPausing)
      readyOncePaused = null;
      getContext().getLog().warn("VM incarnation {}: could not pause it as its sandbox is: it runs until resumed", incarnation);
    }
    return ready(m.info().kernel());
  }

  /** Tells the owner the VM is there, and starts (or goes on reading) the main process, which waits while the VM is paused. */
  private Behavior<Object> ready(String kernel) {
    parent.tell(new VmReady(incarnation, vm.handle(), kernel, adopting));
    return main != null ? readMain() : this;
  }

  /** Kills the VM, waits for it, removes its state: nothing of it is left. Blocking. */
  private static void killAndForget(Vm v) {
    v.kill();
    try {
      v.exitFuture().get(15, TimeUnit.SECONDS);
    } catch (Exception e) {
      // reported by the driver's own log; the state directory is kept for inspection then
      return;
    }
    v.destroy();
  }

  private Behavior<Object> onAbandoned(Abandoned m) {
    replyStopped();
    return report(m.report(), true);
  }

  // ---------------------------------------------------------------- running

  private Behavior<Object> onExited(Exited in) {
    Exited m = new Exited(explained(in.exit()));
    if (suspending) return this; // the suspend ends it; onSuspendDone reports what happened
    switch (phase) {
      case STOPPING, DONE -> {
        return this;
      }
      case CONNECTING -> {
        phase = Phase.DONE;
        closeClient();
        Vm v = vm;
        getContext().pipeToSelf(onBlocking(() -> {
          v.destroy();
          return null;
        }), (x, e) -> new Abandoned(new VmStartFailed(incarnation, "the VM exited during start: " + m.exit().reason())));
        return this;
      }
      case LOST -> {
        closeClient();
        mainEndsWithVm(m.exit());
        VmExit e = m.exit();
        return report(new VmExited(incarnation, new VmExit(e.exitCode(), e.signal(), "killed after the agent was lost (" + lostReason + "): " + e.reason(), false)), true);
      }
      default -> {
        closeClient();
        mainEndsWithVm(m.exit());
        getContext().getLog().info("VM incarnation {} exited: {}", incarnation, m.exit().reason());
        return report(new VmExited(incarnation, m.exit()), true);
      }
    }
  }

  private Behavior<Object> onHealthTick() {
    if (phase != Phase.RUNNING || paused || pingInFlight) return this;
    pingInFlight = true;
    AgentClient c = client;
    if (c != null && !c.isOpen()) {
      // Not given another connection after breaking the last one.
      Optional<String> broke = violation(c);
      if (broke.isPresent()) {
        pingInFlight = false;
        return agentLost(broke.get());
      }
    }
    if (c == null || !c.isOpen()) {
      connect(System.nanoTime() + settings.callTimeout().toNanos(), settings.connectBackoffMin(), true);
      return this;
    }
    getContext().pipeToSelf(c.ping(settings.callTimeout()), (rtt, err) -> new PingDone(err));
    return this;
  }

  private Behavior<Object> onPingDone(PingDone m) {
    pingInFlight = false;
    if (phase != Phase.RUNNING || paused) return this;
    if (m.error() == null) {
      failures = 0;
      return this;
    }
    return healthFailure("ping failed: " + reason(m.error()));
  }

  private void watchConnection(AgentClient c) {
    getContext().pipeToSelf(c.closed(), (x, err) -> new ConnectionClosed(c));
  }

  /**
   * A guest that broke the protocol, or stopped reading, is not given another connection: the
   * agent is lost at once (its VM is killed; the restart policy decides what comes next). Any
   * other close is left to the health checks, which reconnect.
   */
  private Behavior<Object> onConnectionClosed(ConnectionClosed m) {
    if (m.client() != client || phase != Phase.RUNNING) return this;
    return violation(m.client()).map(this::agentLost).orElse(this);
  }

  /** How the agent broke its connection (the protocol, or not reading), if it did. */
  private Optional<String> violation(AgentClient c) {
    Throwable cause = c.closeCause();
    if (cause instanceof dev.flotilla.agent.protocol.frame.ProtocolException
        || cause instanceof dev.flotilla.agent.protocol.frame.FrameConnection.PeerNotReadingException) {
      getContext().getLog().warn("VM incarnation {}: the guest agent broke its connection: {}", incarnation, cause.getMessage());
      return Optional.of("the guest agent broke the protocol: " + cause.getMessage());
    }
    return Optional.empty();
  }

  private Behavior<Object> healthFailure(String why) {
    failures++;
    getContext().getLog().warn("VM incarnation {}: agent health check {} of {} failed: {}", incarnation, failures, settings.healthMaxFailures(), why);
    if (failures < settings.healthMaxFailures()) return this;
    return agentLost(failures + " health checks failed, last: " + why);
  }

  private Behavior<Object> agentLost(String why) {
    phase = Phase.LOST;
    lostReason = why;
    timers.cancelAll();
    closeClient();
    parent.tell(new AgentLost(incarnation, lostReason));
    Vm v = vm;
    onBlocking(() -> {
      v.kill();
      return null;
    });
    return this;
  }

  private Behavior<Object> onPause(Pause m) {
    if (phase != Phase.RUNNING) {
      m.replyTo().tell(notRunning().doing("cannot pause").reply());
      return this;
    }
    AgentClient c = client;
    boolean leased = !settings.lease().isZero();
    if (leased && (c == null || !c.isOpen())) {
      m.replyTo().tell(SandboxError.unavailable("cannot pause: the guest agent is not connected").reply());
      return this;
    }
    paused = true; // no pings into a freezing guest
    Vm v = vm;
    // The agent must hear of the pause before it freezes: only an announced freeze restarts its
    // lease at the thaw; any other time it does not run (a frozen host) counts, since the
    // cluster may have started the sandbox elsewhere meanwhile.
    CompletableFuture<Object> announced = !leased ? CompletableFuture.completedFuture(null)
        : c.handshake(v.handle().sandboxId(), incarnation, settings.lease(), true, settings.callTimeout())
            .thenApply(info -> null);
    getContext().pipeToSelf(announced.thenCompose(x -> onBlocking(() -> {
      v.pause();
      return null;
    })), (x, err) -> new PauseDone(true, m.replyTo(), err));
    return this;
  }

  private Behavior<Object> onResume(Resume m) {
    if (phase != Phase.RUNNING) {
      m.replyTo().tell(notRunning().doing("cannot resume").reply());
      return this;
    }
    Vm v = vm;
    getContext().pipeToSelf(onBlocking(() -> {
      v.resume();
      return null;
    }), (x, err) -> new PauseDone(false, m.replyTo(), err));
    return this;
  }

  /** The driver saves the VM and ends it (see {@link #save}). */
  private Behavior<Object> onSuspend(VmSupervisorProtocol.Suspend m) {
    return save(true, m.replyTo(), v -> v.suspend(m.dir()), (snap, err) -> new SuspendDone(snap, err, m.replyTo()));
  }

  /** As {@link #onSuspend}, but the VM runs on after the save, and the agent is connected again. */
  private Behavior<Object> onSnapshotVm(VmSupervisorProtocol.SnapshotVm m) {
    return save(false, m.replyTo(), v -> v.snapshot(m.dir()), (snap, err) -> new SnapshotDone(snap, err, m.replyTo()));
  }

  private interface Save {
    dev.flotilla.vm.Snapshot of(Vm v) throws VmException;
  }

  /**
   * A suspend ({@code suspend}) or a snapshot of the running VM: refused with why unless it can be
   * saved now; otherwise the agent hears of a pause first (as for {@link #onPause}: its lease
   * restarts once when the restored VM thaws), its connection is closed, and the driver's
   * {@code save} runs on the blocking dispatcher, its outcome piped back as {@code done}.
   */
  private Behavior<Object> save(boolean suspend, ActorRef<? extends StatusReply<?>> replyTo, Save save,
      java.util.function.BiFunction<dev.flotilla.vm.Snapshot, Throwable, Object> done) {
    @SuppressWarnings("unchecked")
    ActorRef<StatusReply<Object>> reply = (ActorRef<StatusReply<Object>>) (ActorRef<?>) replyTo;
    String doing = suspend ? "cannot suspend" : "cannot snapshot";
    AgentClient c = client;
    boolean leased = !settings.lease().isZero();
    SandboxError no = phase != Phase.RUNNING ? notRunning().doing(doing)
        : suspending || snapshotting ? SandboxError.precondition("the VM is being " + (suspending ? "suspended" : "snapshotted") + " already")
        : paused ? SandboxError.precondition("the VM is paused; resume it first")
        : leased && (c == null || !c.isOpen()) ? SandboxError.unavailable(doing + ": the guest agent is not connected")
        : null;
    if (no != null) {
      reply.tell(no.reply());
      return this;
    }
    if (suspend) suspending = true;
    else snapshotting = true;
    paused = true; // no pings into a guest being saved
    Vm v = vm;
    CompletableFuture<Object> announced = !leased ? CompletableFuture.completedFuture(null)
        : c.handshake(v.handle().sandboxId(), incarnation, settings.lease(), true, settings.callTimeout()).thenApply(info -> null);
    getContext().pipeToSelf(announced.thenCompose(x -> onBlocking(() -> {
      if (c != null) c.close();
      return save.of(v);
    })), done::apply);
    return this;
  }

  private Behavior<Object> onSnapshotDone(SnapshotDone m) {
    paused = false;
    if (m.error() == null) {
      getContext().getLog().info("VM incarnation {} snapshotted into {} (stopped {} ms)", incarnation, m.snapshot().dir(),
          m.snapshot().pausedMillis());
    }
    reconnectThen(() -> {
      snapshotting = false;
      m.replyTo().tell(m.error() == null ? StatusReply.success(m.snapshot()) : GuestErrors.of("cannot snapshot", m.error()).reply());
    });
    return this;
  }

  /**
   * The connection was closed for a save: a new one, whose plain handshake withdraws the pause
   * announcement; {@code then} runs once it is made (or could not be: the health checks see to that).
   */
  private void reconnectThen(Runnable then) {
    afterReconnect.add(then);
    if (phase == Phase.RUNNING && !pingInFlight) {
      pingInFlight = true;
      connect(System.nanoTime() + settings.callTimeout().toNanos(), settings.connectBackoffMin(), true);
    } else if (phase != Phase.RUNNING) {
      runAfterReconnect(null);
    } // else: a reconnect under way runs it
  }

  private void runAfterReconnect(Throwable connectError) {
    if (afterReconnect.isEmpty()) return;
    if (connectError != null) {
      getContext().getLog().warn("VM incarnation {}: no connection to its agent after a save: {}", incarnation, reason(connectError));
    }
    List<Runnable> todo = new ArrayList<>(afterReconnect);
    afterReconnect.clear();
    todo.forEach(Runnable::run);
  }

  private Behavior<Object> onSuspendDone(SuspendDone m) {
    suspending = false;
    if (m.error() == null) {
      getContext().getLog().info("VM incarnation {} suspended into {} ({} bytes of state, {} of disk, paused {} ms)", incarnation,
          m.snapshot().dir(), m.snapshot().stateBytes(), m.snapshot().diskAllocatedBytes(), m.snapshot().pausedMillis());
      timers.cancelAll();
      closeClient();
      Vm v = vm;
      onBlocking(() -> {
        v.destroy(); // the incarnation's own state; the snapshot is elsewhere
        return null;
      });
      parent.tell(new VmSupervisorProtocol.VmSuspended(incarnation, m.snapshot()));
      m.replyTo().tell(StatusReply.ack());
      phase = Phase.DONE;
      replyStopped();
      return Behaviors.stopped();
    }
    if (vm.exitFuture().isDone()) {
      m.replyTo().tell(GuestErrors.of("cannot suspend", m.error()).reply());
      // Ended by the failed suspend: reported as any exit.
      VmExit exit = vm.exitFuture().getNow(new VmExit(-1, 0, "ended while suspending", false));
      return onExited(new Exited(exit.withReason("ended by a failed suspend (" + reason(m.error()) + "): " + exit.reason())));
    }
    paused = false;
    reconnectThen(() -> m.replyTo().tell(GuestErrors.of("cannot suspend", m.error()).reply()));
    return this;
  }

  /** The driver changes the VM's limits on the blocking dispatcher; the reply goes straight back from there. */
  private Behavior<Object> onResize(VmSupervisorProtocol.Resize m) {
    if (phase != Phase.RUNNING) {
      m.replyTo().tell(notRunning().doing("cannot resize").reply());
      return this;
    }
    Vm v = vm;
    onBlocking(() -> {
      v.resize(m.vcpus(), m.memoryMiB());
      return Done.getInstance();
    }).whenComplete((done, err) -> m.replyTo().tell(err == null ? StatusReply.ack() : GuestErrors.of("cannot resize", err).reply()));
    return this;
  }

  private Behavior<Object> onPauseDone(PauseDone m) {
    if (m.error() != null) {
      if (m.pause()) paused = false;
      m.replyTo().tell(GuestErrors.of(m.pause() ? "cannot pause" : "cannot resume", m.error()).reply());
      return readyIfPausing(m);
    }
    paused = m.pause();
    failures = 0;
    if (!paused && !settings.lease().isZero() && client != null && client.isOpen()) {
      // withdraws the pause announcement (a pause too short for the agent to notice leaves it
      // standing); also a renewal. A failure shows in the next pings.
      client.handshake(vm.handle().sandboxId(), incarnation, settings.lease(), false, settings.callTimeout());
    }
    if (!paused && (client == null || !client.isOpen()) && !pingInFlight && phase == Phase.RUNNING) {
      // Adopted frozen, so never connected: connect now rather than at the next health tick.
      pingInFlight = true;
      connect(System.nanoTime() + settings.callTimeout().toNanos(), settings.connectBackoffMin(), true);
    }
    m.replyTo().tell(StatusReply.ack());
    return readyIfPausing(m);
  }

  /** The VM of a paused sandbox is frozen (or could not be): now its owner hears of it. */
  private Behavior<Object> readyIfPausing(PauseDone m) {
    String kernel = readyOncePaused;
    if (kernel == null || !m.pause() || phase != Phase.RUNNING) return this;
    readyOncePaused = null;
    if (m.error() != null) {
      getContext().getLog().warn("VM incarnation {}: could not pause it as its sandbox is ({}): it runs until resumed",
          incarnation, reason(m.error()));
    }
    return ready(kernel);
  }

  /**
   * Why calls into the guest cannot be served now, if they cannot. A paused VM is the caller's
   * to resume (FAILED_PRECONDITION); a VM on its way up or an agent reconnecting will serve
   * again shortly (UNAVAILABLE).
   */
  private Optional<SandboxError> notServing() {
    if (phase != Phase.RUNNING) return Optional.of(notRunning());
    if (paused) return Optional.of(SandboxError.precondition("the VM is paused; resume it first"));
    if (client == null || !client.isOpen()) return Optional.of(SandboxError.unavailable("the guest agent is not connected"));
    return Optional.empty();
  }

  /** The VM is not RUNNING: starting (or being re-attached, or replaced after a lost agent) it will be; stopping it will not. */
  private SandboxError notRunning() {
    String message = "the VM is " + phase.name().toLowerCase();
    return switch (phase) {
      case STARTING, CONNECTING, LOST -> SandboxError.unavailable(message);
      case RUNNING, STOPPING, DONE -> SandboxError.precondition(message);
    };
  }

  /**
   * Exec, attach, file read and directory watch streams still open, and file writes under way (see
   * {@link VmSupervisorProtocol.CallsInFlight}): while any is, the sandbox is not idle.
   */
  private final java.util.concurrent.atomic.AtomicInteger callsInFlight = new java.util.concurrent.atomic.AtomicInteger();

  private Behavior<Object> onExec(Exec m) {
    Optional<SandboxError> no = notServing();
    if (no.isPresent()) {
      m.replyTo().tell(no.get().doing("cannot exec").reply());
      return this;
    }
    if (m.spec().argv().isEmpty()) {
      m.replyTo().tell(SandboxError.invalid("cannot exec: argv is empty; name a command").reply());
      return this;
    }
    String execId = "x-" + incarnation + "-" + execPrefix + "-" + EXEC_IDS.incrementAndGet();
    callsInFlight.incrementAndGet();
    AgentStreams.exec(client, execId, m.spec(), settings, mat, callsInFlight::decrementAndGet).whenComplete((ref, err) ->
        m.replyTo().tell(err == null ? StatusReply.success(ref) : GuestErrors.of("exec failed", err).reply()));
    return this;
  }

  /** As {@link #onExec}, its input stream read into the agent's stdin, resize and signal calls while it runs. */
  private Behavior<Object> onExecInteractive(VmSupervisorProtocol.ExecInteractive m) {
    Optional<SandboxError> no = notServing();
    if (no.isPresent()) {
      m.replyTo().tell(no.get().doing("cannot exec").reply());
      return this;
    }
    if (m.exec().exec().argv().isEmpty()) {
      m.replyTo().tell(SandboxError.invalid("cannot exec: argv is empty; name a command").reply());
      return this;
    }
    String execId = "x-" + incarnation + "-" + execPrefix + "-" + EXEC_IDS.incrementAndGet();
    callsInFlight.incrementAndGet();
    AgentStreams.execInteractive(client, execId, m.exec(), m.input(), settings, mat, callsInFlight::decrementAndGet)
        .whenComplete((ref, err) ->
            m.replyTo().tell(err == null ? StatusReply.success(ref) : GuestErrors.of("exec failed", err).reply()));
    return this;
  }

  private Behavior<Object> onWriteFile(WriteFile m) {
    Optional<SandboxError> no = notServing();
    if (no.isPresent()) {
      m.replyTo().tell(no.get().doing("cannot write " + m.path()).reply());
      return this;
    }
    callsInFlight.incrementAndGet();
    AgentStreams.writeFile(client, m.path(), m.mode(), m.data(), settings, mat, blocking).whenComplete((size, err) -> {
      callsInFlight.decrementAndGet();
      m.replyTo().tell(err == null ? StatusReply.success(size) : GuestErrors.of("cannot write " + m.path(), err).reply());
    });
    return this;
  }

  private Behavior<Object> onReadFile(ReadFile m) {
    Optional<SandboxError> no = notServing();
    if (no.isPresent()) {
      m.replyTo().tell(no.get().doing("cannot read " + m.path()).reply());
      return this;
    }
    callsInFlight.incrementAndGet();
    AgentStreams.readFile(client, m.path(), settings, mat, callsInFlight::decrementAndGet).whenComplete((ref, err) ->
        m.replyTo().tell(err == null ? StatusReply.success(ref) : GuestErrors.of("cannot read " + m.path(), err).reply()));
    return this;
  }

  private Behavior<Object> onGetStats(GetStats m) {
    Optional<SandboxError> no = notServing();
    if (no.isPresent()) {
      m.replyTo().tell(no.get().doing("cannot get stats").reply());
      return this;
    }
    client.stats(settings.callTimeout()).whenComplete((s, err) -> m.replyTo().tell(err == null
        ? StatusReply.success(new GuestStats(s.memoryUsedBytes(), s.memoryTotalBytes(), s.cpuTimeNanos(), s.processCount(), s.uptimeMillis()))
        : GuestErrors.of("cannot get stats", err).reply()));
    return this;
  }

  // ---------------------------------------------------------------- background processes

  /** Output ring of each background process in the guest: what it keeps for a reader that is away. */
  static final int PROCESS_RING_BYTES = 1 << 20;
  private static final java.security.SecureRandom PROCESS_IDS = new java.security.SecureRandom();

  /**
   * Its id is the agent's exec id: the agent keeps it (and the process, and its output) across
   * node restarts, so an id stays good for as long as the incarnation runs, and no node-side table
   * has to survive anything. The incarnation in it makes an id of an earlier VM plainly unknown.
   */
  private Behavior<Object> onStartProcess(VmSupervisorProtocol.StartProcess m) {
    ExecSpec e = m.spec();
    if (e.argv().isEmpty()) {
      m.replyTo().tell(SandboxError.invalid("cannot start a process: argv is empty; name a command").reply());
      return this;
    }
    String id = String.format("p-%d-%08x", incarnation, PROCESS_IDS.nextInt());
    java.time.Instant now = java.time.Instant.now();
    return intoGuest(m.replyTo(), "cannot start a process", c -> c.execDetached(
            new ExecRequest(id, e.argv(), e.env(), e.workingDir(), false, e.user()), PROCESS_RING_BYTES, settings.callTimeout())
        .thenApply(pid -> new SandboxProcess(id, pid, e.argv(), false, true, 0, 0, true, 0, now)));
  }

  private Behavior<Object> onListProcesses(VmSupervisorProtocol.ListProcesses m) {
    return intoGuest(m.replyTo(), "cannot list processes",
        c -> c.listProcesses(0, settings.callTimeout()).thenApply(AgentStreams::listing));
  }

  /** An attach stream counts as a call in flight (the sandbox is in use) from its start until it ends. */
  private Behavior<Object> onAttachProcess(VmSupervisorProtocol.AttachProcess m) {
    return intoGuest(m.replyTo(), "cannot attach to " + m.processId(), c -> {
      callsInFlight.incrementAndGet();
      return AgentStreams.attach(c, m.processId(), m.offset(), settings, mat, callsInFlight::decrementAndGet);
    });
  }

  /** A forwarded connection counts as a call in flight (the sandbox is in use) from its open until it is over. */
  private Behavior<Object> onPortForward(VmSupervisorProtocol.PortForward m) {
    if (m.port() < 1 || m.port() > 65535) {
      m.replyTo().tell(SandboxError.invalid("cannot forward port " + m.port() + ": a port is 1-65535").reply());
      return this;
    }
    Optional<SandboxError> no = notServing();
    if (no.isPresent()) {
      m.replyTo().tell(no.get().doing("cannot forward port " + m.port()).reply());
      return this;
    }
    callsInFlight.incrementAndGet();
    PortForwarding.open(client, m.port(), m.in(), settings, mat, callsInFlight::decrementAndGet).whenComplete((ref, err) -> {
      Throwable cause = err == null ? null : AgentStreams.unwrap(err);
      m.replyTo().tell(cause == null ? StatusReply.success(ref)
          : (cause instanceof SandboxError se ? se : GuestErrors.of("cannot forward port " + m.port(), cause)).reply());
    });
    return this;
  }

  private Behavior<Object> onSignalProcess(VmSupervisorProtocol.SignalProcess m) {
    return intoGuest(m.replyTo(), "cannot signal " + m.processId(),
        c -> c.signalProcess(m.processId(), m.signal(), settings.callTimeout()).thenApply(v -> Done.getInstance()));
  }

  /**
   * One call into the guest (its file system, its processes): refused as exec is while the VM
   * cannot serve ({@link #notServing}), else asked of the agent, whose error codes become the
   * reply's kind.
   */
  private <T> Behavior<Object> intoGuest(ActorRef<StatusReply<T>> replyTo, String doing,
      java.util.function.Function<AgentClient, java.util.concurrent.CompletionStage<T>> call) {
    Optional<SandboxError> no = notServing();
    if (no.isPresent()) {
      replyTo.tell(no.get().doing(doing).reply());
      return this;
    }
    call.apply(client).whenComplete((v, err) -> replyTo.tell(err == null ? StatusReply.success(v) : GuestErrors.of(doing, err).reply()));
    return this;
  }

  // ---------------------------------------------------------------- the main process

  /**
   * Starts the main process, or (adopting) goes on reading the one the VM already runs. Never
   * starts it twice in an incarnation: an adopted VM whose agent does not know it any more has
   * lost it, and ends.
   */
  private void startMain() {
    AgentClient c = client;
    MainLog log = main.log();
    getContext().pipeToSelf(onBlocking(() -> log.progress(incarnation)).thenCompose(p -> {
      if (p.exited()) return CompletableFuture.completedFuture(p);
      if (adopting) return CompletableFuture.completedFuture(p);
      ExecSpec e = main.spec();
      return c.execDetached(new ExecRequest(MAIN_EXEC_ID, e.argv(), e.env(), e.workingDir(), false, e.user()), main.ringBytes(),
          settings.callTimeout()).thenApply(pid -> p);
    }), (p, err) -> {
      if (err != null) return new MainStarted(0, err);
      if (p.exited()) return new MainEnded(p.exitCode(), p.signal(), p.reason(), true);
      return new MainStarted(p.offset(), null);
    });
  }

  private Behavior<Object> onMainStarted(MainStarted m) {
    if (phase != Phase.RUNNING || mainEnded) return this;
    if (m.error() != null) {
      Throwable c = AgentStreams.unwrap(m.error());
      if (c instanceof AgentException ae && ae.code() == AgentException.Code.INVALID_ARGUMENT) {
        // The guest could not start it (no such command, bad user or directory): a container's 127.
        return onMainEnded(new MainEnded(127, 0, "main process could not start: " + reason(c), false));
      }
      getContext().getLog().warn("VM incarnation {}: starting the main process failed, retrying: {}", incarnation, reason(c));
      timers.startSingleTimer(MainRetry.INSTANCE, MAIN_RETRY);
      return this;
    }
    mainOffset = m.offset();
    mainStartedOk = true;
    return readMain();
  }

  private Behavior<Object> readMain() {
    if (phase != Phase.RUNNING || mainEnded) return this;
    AgentClient c = client;
    if (paused || c == null || !c.isOpen()) {
      timers.startSingleTimer(MainRetry.INSTANCE, MAIN_RETRY);
      return this;
    }
    if (!mainStartedOk) {
      startMain();
      return this;
    }
    if (mainDrained) return waitMain(c);
    getContext().pipeToSelf(c.readOutput(MAIN_EXEC_ID, mainOffset, MAIN_READ_BYTES, MAIN_READ_WAIT,
        MAIN_READ_WAIT.plus(settings.callTimeout())), MainRead::new);
    return this;
  }

  private Behavior<Object> onMainRead(MainRead m) {
    if (phase != Phase.RUNNING || mainEnded) return this;
    if (m.error() != null) {
      Throwable c = AgentStreams.unwrap(m.error());
      if (c instanceof AgentException ae && ae.code() == AgentException.Code.NOT_FOUND) {
        return onMainEnded(new MainEnded(-1, 0, "main process lost: the guest agent no longer knows it", false));
      }
      timers.startSingleTimer(MainRetry.INSTANCE, MAIN_RETRY);
      return this;
    }
    OutputRead r = m.read();
    if (r.offset() > mainOffset) {
      getContext().getLog().warn("VM incarnation {}: {} bytes of main process output were dropped by the guest's ring before the node read them",
          incarnation, r.offset() - mainOffset);
    }
    MainLog log = main.log();
    getContext().pipeToSelf(onBlocking(() -> {
      long at = r.offset();
      for (OutputRead.Chunk ch : r.chunks()) {
        log.appendOutput(incarnation, at, ch.stderr(), ch.data());
        at += ch.data().length;
      }
      return at;
    }), (next, err) -> new MainLogged(next == null ? mainOffset : next, r.eof(), err));
    return this;
  }

  private Behavior<Object> onMainLogged(MainLogged m) {
    if (m.error() != null) {
      getContext().getLog().error("VM incarnation {}: cannot write the main process's log: {}", incarnation, reason(m.error()));
    }
    mainOffset = m.next();
    if (m.eof()) mainDrained = true;
    return readMain();
  }

  /**
   * Its output has ended; its exit is waited for in slices (a process may close its output and
   * run on for hours). A lost connection is retried like a read.
   */
  private Behavior<Object> waitMain(AgentClient c) {
    getContext().pipeToSelf(c.waitProcess(MAIN_EXEC_ID, settings.execWaitSlice()), (exit, err) -> {
      if (err == null) {
        String why = exit.signal() != 0 ? "main process killed by signal " + exit.signal()
            : "main process exited with code " + exit.exitCode();
        return new MainEnded(exit.exitCode(), exit.signal(), why, false);
      }
      Throwable cause = AgentStreams.unwrap(err);
      if (cause instanceof AgentException ae && ae.code() == AgentException.Code.NOT_FOUND) {
        return new MainEnded(-1, 0, "main process lost: the guest agent no longer knows it", false);
      }
      // A wait slice ran out: wait again at once; anything else (the connection went): a little later.
      boolean slice = cause instanceof AgentException ae && ae.code() == AgentException.Code.DEADLINE_EXCEEDED;
      return slice ? MainRetry.INSTANCE : MainRetryLater.INSTANCE;
    });
    return this;
  }

  /** The main process ended: log it (once), and end the VM with its status unless it is ending anyway. */
  private Behavior<Object> onMainEnded(MainEnded m) {
    if (!mainEnded) {
      mainEnded = true;
      if (!m.logged()) logMainEnd(m.exitCode(), m.signal(), m.reason());
    }
    if (phase != Phase.RUNNING) return this;
    getContext().getLog().info("VM incarnation {}: {}; stopping the VM", incarnation, m.reason());
    mainExit = new VmExit(m.exitCode(), m.signal(), m.reason(), false);
    return beginStop(main.stopGrace());
  }

  private void logMainEnd(int exitCode, int signal, String reason) {
    MainLog log = main.log();
    long at = mainOffset;
    long inc = incarnation;
    org.slf4j.Logger logger = getContext().getLog(); // the context itself is not for other threads
    onBlocking(() -> {
      log.appendExit(inc, at, exitCode, signal, reason);
      return null;
    }).exceptionally(e -> {
      logger.error("cannot log the end of the main process of incarnation {}: {}", inc, reason(e));
      return null;
    });
  }

  /** The VM ended with the main process still running (or unread): its log says so, and followers stop. */
  private void mainEndsWithVm(VmExit e) {
    if (main == null || mainEnded) return;
    mainEnded = true;
    logMainEnd(e.exitCode(), e.signal(), "main process ended with its VM: " + e.reason());
  }

  // ---------------------------------------------------------------- stop

  private Behavior<Object> onStop(Stop m) {
    stopReplies.add(m.replyTo());
    ownerStopped = true;
    switch (phase) {
      case STARTING -> {
        // The driver call in flight cannot be interrupted: stop once it has returned.
        pendingStopGrace = m.grace();
        return this;
      }
      case CONNECTING, RUNNING, LOST -> {
        return beginStop(m.grace());
      }
      default -> {
        return this; // STOPPING answers everyone at the end; DONE is about to answer
      }
    }
  }

  private Behavior<Object> beginStop(Duration grace) {
    phase = Phase.STOPPING;
    timers.cancelAll();
    AgentClient c = client;
    Vm v = vm;
    getContext().pipeToSelf(onBlocking(() -> {
      if (c != null && c.isOpen() && !paused) {
        try {
          c.shutdown(grace, false, grace.plus(settings.callTimeout())).get(grace.plus(settings.callTimeout()).toMillis(), TimeUnit.MILLISECONDS);
        } catch (Exception e) {
          // the driver's stop below ends it anyway
        }
      }
      v.stop(grace);
      VmExit exit = v.exitFuture().get(15, TimeUnit.SECONDS);
      v.destroy();
      return exit;
    }), StopDone::new);
    return this;
  }

  private Behavior<Object> onStopDone(StopDone m) {
    closeClient();
    VmExit exit = m.error() != null
        ? new VmExit(-1, 0, "stop failed: " + reason(m.error()), true)
        : new VmExit(m.exit().exitCode(), m.exit().signal(), explained(m.exit()).reason(), true);
    mainEndsWithVm(exit);
    // Ended because its main process did (and nobody asked for a stop meanwhile): the main's status is the VM's.
    parent.tell(new VmExited(incarnation, mainExit != null && !ownerStopped ? mainExit : exit));
    replyStopped();
    phase = Phase.DONE;
    return Behaviors.stopped();
  }

  private void replyStopped() {
    stopReplies.forEach(r -> r.tell(Done.getInstance()));
    stopReplies.clear();
  }

  private Behavior<Object> report(Report r, boolean stop) {
    parent.tell(r);
    if (!stop) return this;
    phase = Phase.DONE;
    replyStopped();
    return Behaviors.stopped();
  }

  private Behavior<Object> onPostStop() {
    stopped.set(true);
    runAfterReconnect(null); // their answers, rather than their askers' timeouts
    Vm orphan = starting.getAndSet(null);
    if (orphan != null && orphan != vm) {
      getContext().getLog().warn("supervisor of VM incarnation {} stopped while its VM (pid {}) was starting: killing it, nobody"
          + " would supervise it", incarnation, orphan.handle().pid());
      killOrphan(orphan);
    }
    if (phase != Phase.DONE && vm != null) {
      getContext().getLog().info("supervisor of VM incarnation {} stopped without Stop: the VM (pid {}) runs on, to be adopted",
          incarnation, vm.handle().pid());
    }
    closeClient();
    return this;
  }

  /** SIGKILL (does not wait), then its state once it has exited; off the actor's thread. */
  static void killOrphan(Vm v) {
    try {
      v.kill();
    } catch (RuntimeException e) {
      // already gone
    }
    v.exitFuture().whenComplete((x, e) -> {
      try {
        v.destroy();
      } catch (RuntimeException ignored) {
        // its state stays for the reaper
      }
    });
  }

  private void closeClient() {
    AgentClient c = client;
    client = null;
    if (c != null) {
      try {
        c.close();
      } catch (RuntimeException e) {
        // closing a broken connection
      }
    }
  }

  /** A driver's VM exit, told in the lease this supervisor stated when the agent ended the sandbox for it. */
  private VmExit explained(VmExit e) {
    if (!e.leaseExpired()) return e;
    Duration l = settings.lease();
    String within = l.isZero() ? "in time" : "within " + (l.toMillis() % 1000 == 0 ? l.toSeconds() + " s" : l.toMillis() + " ms");
    return e.withReason("the agent ended the sandbox: lease expired (its node did not renew it " + within + ")");
  }

  private static Duration min(Duration a, Duration b) {
    return a.compareTo(b) <= 0 ? a : b;
  }

  static String reason(Throwable t) {
    Throwable c = AgentStreams.unwrap(t);
    String msg = c.getMessage();
    return msg == null || msg.isBlank() ? c.getClass().getSimpleName() : msg;
  }
}
