package dev.flotilla.sandbox;

import dev.flotilla.cluster.NodeAddress;
import dev.flotilla.persistence.FlotillaSerializable;
import dev.flotilla.sandbox.protocol.ExecEvent;
import dev.flotilla.sandbox.protocol.ExecInput;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.InteractiveExec;
import dev.flotilla.sandbox.protocol.DirPage;
import dev.flotilla.sandbox.protocol.FsEntry;
import dev.flotilla.sandbox.protocol.FsValue;

import dev.flotilla.sandbox.protocol.SandboxProcess;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Report;
import java.io.IOException;
import java.nio.file.Files;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.apache.pekko.Done;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.SupervisorStrategy;
import org.apache.pekko.actor.typed.javadsl.ActorContext;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.javadsl.TimerScheduler;
import org.apache.pekko.actor.typed.pubsub.Topic;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.sharding.typed.javadsl.Entity;
import org.apache.pekko.cluster.sharding.typed.javadsl.EntityTypeKey;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.persistence.typed.PersistenceId;
import org.apache.pekko.persistence.typed.RecoveryCompleted;
import org.apache.pekko.persistence.typed.javadsl.CommandHandlerWithReply;
import org.apache.pekko.persistence.typed.javadsl.EventHandler;
import org.apache.pekko.persistence.typed.javadsl.EventSourcedBehaviorWithEnforcedReplies;
import org.apache.pekko.persistence.typed.javadsl.ReplyEffect;
import org.apache.pekko.persistence.typed.javadsl.RetentionCriteria;
import org.apache.pekko.persistence.typed.javadsl.SignalHandler;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.util.ByteString;

/**
 * One sandbox: an event-sourced entity under Cluster Sharding that owns at most one VM at a time
 * through a VM supervisor child (see {@link SandboxRuntime.VmLauncher}).
 *
 * <p>The entity persists an intent ({@link VmStartRequested} with a new incarnation) and only then
 * spawns the supervisor; the supervisor's reports come back as commands that persist facts
 * ({@link VmStarted}, {@link VmEnded}). Every report names its incarnation, and news about an
 * older incarnation is ignored: together with the agent's handshake check this is the fencing
 * that keeps two copies of a sandbox from acting.
 *
 * <p>After a restart of its node (or a move to another node) the entity reconciles: a VM of the
 * current incarnation on this host is adopted (same incarnation, no restart); otherwise the loss
 * is recorded and a new incarnation is started when the sandbox should run.
 */
public final class SandboxEntity
    extends EventSourcedBehaviorWithEnforcedReplies<SandboxEntity.Command, SandboxEntity.Event, SandboxEntity.State> {

  public static final EntityTypeKey<Command> ENTITY_KEY = EntityTypeKey.create(Command.class, "Sandbox");

  // ------------------------------------------------------------------------------ commands

  public sealed interface Command extends FlotillaSerializable {}

  /**
   * A caller's command: it names the tenant that asks, and only that sandbox's tenant gets past
   * the one guard in {@link #commandHandler()}; anyone else hears NOT_FOUND, as if it did not exist.
   */
  public sealed interface TenantCommand extends Command {
    String tenant();

    ActorRef<? extends StatusReply<?>> replyTo();
  }

  /**
   * Replies are shared by the lifecycle commands: the sandbox after the change.
   *
   * @param restoreFrom a fork's snapshot (see {@link Fork}) its first VM starts from; null: it boots.
   *     A create that does not make the sandbox (a retry, a refusal) removes it.
   */
  public record Create(String tenant, SandboxSpec spec, String requestId, String restoreFrom, ActorRef<StatusReply<SandboxView>> replyTo)
      implements TenantCommand {
    public Create(String tenant, SandboxSpec spec, String requestId, ActorRef<StatusReply<SandboxView>> replyTo) {
      this(tenant, spec, requestId, null, replyTo);
    }
  }

  /**
   * Saves the RUNNING sandbox's live state as the start of a new sandbox {@code forkId} of the same
   * tenant (its VM is stopped for the save only, then runs on). Replies with the snapshot's
   * directory, for that sandbox's {@link Create}. Nothing of this sandbox changes.
   */
  public record Fork(String tenant, String forkId, ActorRef<StatusReply<String>> replyTo) implements TenantCommand {}

  public record Get(String tenant, ActorRef<StatusReply<SandboxView>> replyTo) implements TenantCommand {}

  public record Start(String tenant, ActorRef<StatusReply<SandboxView>> replyTo) implements TenantCommand {}

  /** Replies once the VM is gone (phase STOPPED). */
  public record Stop(String tenant, ActorRef<StatusReply<SandboxView>> replyTo) implements TenantCommand {}

  public record Pause(String tenant, ActorRef<StatusReply<SandboxView>> replyTo) implements TenantCommand {}

  /** Resumes a PAUSED sandbox, or a SUSPENDED one from its snapshot (a new incarnation). */
  public record Resume(String tenant, ActorRef<StatusReply<SandboxView>> replyTo) implements TenantCommand {}

  /**
   * Saves the RUNNING sandbox's VM (memory, devices, writable disk) into the snapshot store and
   * ends it: the sandbox is SUSPENDED and holds no RAM. Replies once it is. Resume, Start or any call
   * into the sandbox (exec, file, process, port-forward) resumes it where it was.
   */
  public record Suspend(String tenant, ActorRef<StatusReply<SandboxView>> replyTo) implements TenantCommand {}

  /** Replies once the VM is gone and the tombstone is stored. */
  public record Delete(String tenant, ActorRef<StatusReply<SandboxView>> replyTo) implements TenantCommand {}

  public record Exec(String tenant, ExecSpec spec, ActorRef<StatusReply<SourceRef<ExecEvent>>> replyTo)
      implements TenantCommand {}

  public record WriteFile(String tenant, String path, int mode, SourceRef<ByteString> data, ActorRef<StatusReply<Long>> replyTo)
      implements TenantCommand {}

  /** An exec whose stdin (terminal size, signals) the caller streams in {@code input} while it runs; see VmSupervisorProtocol.ExecInteractive. */
  public record ExecInteractive(String tenant, InteractiveExec exec, SourceRef<ExecInput> input,
      ActorRef<StatusReply<SourceRef<ExecEvent>>> replyTo) implements TenantCommand {}

  public record ReadFile(String tenant, String path, ActorRef<StatusReply<SourceRef<ByteString>>> replyTo)
      implements TenantCommand {}

  // Background processes (see VmSupervisorProtocol.StartProcess): named by the id StartProcess gave.

  public record StartProcess(String tenant, ExecSpec spec, ActorRef<StatusReply<SandboxProcess>> replyTo) implements TenantCommand {}

  public record ListProcesses(String tenant, ActorRef<StatusReply<SandboxProcess.Listing>> replyTo) implements TenantCommand {}

  public record AttachProcess(String tenant, String processId, long offset, ActorRef<StatusReply<SourceRef<ExecEvent>>> replyTo)
      implements TenantCommand {}

  public record SignalProcess(String tenant, String processId, int signal, ActorRef<StatusReply<org.apache.pekko.Done>> replyTo)
      implements TenantCommand {}

  /**
   * Forwards one TCP connection to {@code port} on the sandbox's own loopback (see
   * VmSupervisorProtocol.PortForward): {@code in} to the socket, its bytes back as the reply's stream.
   */
  public record PortForward(String tenant, int port, SourceRef<ByteString> in, ActorRef<StatusReply<SourceRef<ByteString>>> replyTo)
      implements TenantCommand {}

  /**
   * The main process's log on this node: the last {@code tail} lines (negative: all it keeps),
   * then with {@code follow} new output until the main process ends (its exit last).
   */
  /** The sandbox now ends {@code timeout} from now (zero: never), with its spec's on-timeout action. */
  public record SetTimeout(String tenant, Duration timeout, ActorRef<StatusReply<SandboxView>> replyTo) implements TenantCommand {}

  /**
   * The running (or paused) sandbox's VM now has {@code vcpus} and {@code memoryMiB} (the new
   * totals), changed in place by its driver; recorded once done, so the next incarnation starts
   * with them. What the driver cannot change live is refused with its reason. The tenant's quota is
   * the caller's to charge (see SandboxControl#resize).
   */
  public record Resize(String tenant, int vcpus, int memoryMiB, ActorRef<StatusReply<SandboxView>> replyTo) implements TenantCommand {}

  public record ReadLogs(String tenant, int tail, boolean follow, ActorRef<StatusReply<SourceRef<ExecEvent>>> replyTo)
      implements TenantCommand {}

  // The sandbox's file system: forwarded to its VM as they are (see VmSupervisorProtocol), RUNNING only.

  public record ListDir(String tenant, String path, int depth, int maxEntries, String startAfter,
      ActorRef<StatusReply<DirPage>> replyTo) implements TenantCommand {}

  public record Stat(String tenant, String path, boolean followLinks, ActorRef<StatusReply<FsEntry>> replyTo)
      implements TenantCommand {}

  public record MakeDir(String tenant, String path, boolean parents, int mode, ActorRef<StatusReply<FsEntry>> replyTo)
      implements TenantCommand {}

  public record Remove(String tenant, String path, boolean recursive, ActorRef<StatusReply<Long>> replyTo)
      implements TenantCommand {}

  public record Rename(String tenant, String from, String to, boolean overwrite, ActorRef<StatusReply<Done>> replyTo)
      implements TenantCommand {}

  public record WatchDir(String tenant, String path, boolean recursive, ActorRef<StatusReply<SourceRef<FsValue>>> replyTo)
      implements TenantCommand {}

  /**
   * Sharding's stop message (hand-off or passivation). When another node will take the sandbox
   * over, its VM is stopped first, so two VMs of one sandbox never run at once; when this node
   * is alone (a restart in place), the VM keeps running and is re-attached when the node is back.
   */
  public record HandOff() implements Command {}

  /** Internal state for the node's VM reaper, regardless of tenant. */
  public record Inspect(ActorRef<Inspection> replyTo) implements Command {}

  /**
   * @param exists false for a sandbox never created or deleted
   * @param hostId the host its current VM was last seen on, "" if none
   * @param snapshot the snapshot it resumes (or, a fork, starts) from; null if none
   */
  public record Inspection(boolean exists, Phase phase, long incarnation, String hostId, String snapshot) implements FlotillaSerializable {
    public Inspection(boolean exists, Phase phase, long incarnation, String hostId) {
      this(exists, phase, incarnation, hostId, null);
    }
  }

  /** The VM of a handed-off sandbox is gone. Local only. */
  record HandOffDone() implements Command {}

  /** A report of the VM supervisor, wrapped. Local only. */
  record FromVm(Report report) implements Command {}

  /** The supervisor actor of an incarnation stopped (normally after its final report). Local only. */
  record SupervisorTerminated(long incarnation) implements Command {}

  /** Sent to itself after recovery. Local only. */
  record Reconcile() implements Command {}

  /** The sandbox's timeout ran out (a timer). */
  record DeadlineReached() implements Command {}

  /** Time to see whether the sandbox has been idle for its idle timeout (a timer). */
  record IdleCheck() implements Command {}

  /** The VM supervisor's count of calls under way; -1: it did not answer. */
  record IdleVerdict(long incarnation, int callsInFlight) implements Command {}

  /** Calls kept while CREATING are looked at again (their callers' patience ran out). */
  record Unstash() implements Command {}

  /** Restart backoff elapsed: start the VM of this incarnation. Local only. */
  record SpawnVm(long incarnation) implements Command {}

  /** The supervisor answered a resize. Local only. */
  record ResizeResult(long incarnation, int vcpus, int memoryMiB, StatusReply<Done> result, ActorRef<StatusReply<SandboxView>> replyTo)
      implements Command {}

  /** The supervisor's answer to a fork's snapshot. Local only. */
  record ForkSaved(String dir, SandboxError error, ActorRef<StatusReply<String>> replyTo) implements Command {}

  /** The supervisor refused a suspend, or did not answer. Local only. */
  record SuspendFailed(long incarnation, SandboxError error) implements Command {}

  /** The supervisor answered a pause or resume. Local only. */
  record FreezeResult(boolean pause, long incarnation, StatusReply<Done> result, ActorRef<StatusReply<SandboxView>> replyTo)
      implements Command {}

  // ------------------------------------------------------------------------------ events
  // Events are forever: never change how a stored event replays; add new types instead.

  public sealed interface Event extends FlotillaSerializable {
    Instant at();
  }

  /** @param snapshot a fork's snapshot its first VM starts from (null: it boots; and in events of before forks) */
  public record Created(String sandboxId, String tenant, SandboxSpec spec, String requestId, Instant at, String snapshot) implements Event {
    public Created(String sandboxId, String tenant, SandboxSpec spec, String requestId, Instant at) {
      this(sandboxId, tenant, spec, requestId, at, null);
    }
  }

  /** The intent to run a VM for {@code incarnation}, recorded before it is started. */
  public record VmStartRequested(long incarnation, String node, String reason, int restartCount, Instant at) implements Event {}

  public record VmStarted(long incarnation, VmLocation location, boolean adopted, Instant at) implements Event {}

  public record VmEnded(long incarnation, VmEnd end, Instant at) implements Event {}

  public record Paused(Instant at) implements Event {}

  public record Resumed(Instant at) implements Event {}

  public record StopRequested(Instant at) implements Event {}

  public record StartRequested(Instant at) implements Event {}

  public record DeleteRequested(Instant at) implements Event {}

  public record Deleted(Instant at) implements Event {}

  public record SandboxFailed(String reason, Instant at) implements Event {}

  /** SetTimeout: the sandbox now ends at {@code deadline} (null: never). */
  public record TimeoutSet(Instant deadline, Instant at) implements Event {}

  /**
   * Its lifetime ran out: the timeout ({@code idle} false; the deadline is then spent) or the idle
   * timeout. The delete, stop or pause it leads to follows as its own events.
   */
  public record TimedOut(boolean idle, Instant at) implements Event {}

  /** A live resize: the VM now has {@code vcpus} and {@code memoryMiB}, where it had the {@code from} ones. */
  public record Resized(int vcpus, int memoryMiB, int fromVcpus, int fromMemoryMiB, Instant at) implements Event {}

  /**
   * The VM of {@code incarnation} was saved into {@code snapshot} (a directory of the snapshot
   * store) and has ended. {@code memory}: the snapshot holds its memory (its processes continue on
   * resume); false for a driver that keeps only the writable disk.
   */
  public record Suspended(long incarnation, String snapshot, boolean memory, long stateBytes, long diskBytes, Instant at)
      implements Event {}

  // ------------------------------------------------------------------------------ state

  public sealed interface State extends FlotillaSerializable {}

  public record Empty() implements State {}

  /**
   * @param vm where the current incarnation's VM runs; null while none is known to run
   * @param vmSince when the current VM started (not when it was adopted), for the restart budget
   */
  public record Live(
      String id,
      String tenant,
      SandboxSpec spec,
      String requestId,
      Instant createdAt,
      Instant updatedAt,
      Phase phase,
      boolean desiredRunning,
      long incarnation,
      VmLocation vm,
      Instant vmSince,
      int restartCount,
      String statusMessage,
      Instant deadline,
      String snapshot)
      implements State {

    Live with(Phase p, Instant at) {
      return new Live(id, tenant, spec, requestId, createdAt, at, p, desiredRunning, incarnation, vm, vmSince, restartCount, statusMessage, deadline, snapshot);
    }

    Live withDesired(boolean desired) {
      return new Live(id, tenant, spec, requestId, createdAt, updatedAt, phase, desired, incarnation, vm, vmSince, restartCount, statusMessage, deadline, snapshot);
    }

    Live withVm(VmLocation location, Instant since) {
      return new Live(id, tenant, spec, requestId, createdAt, updatedAt, phase, desiredRunning, incarnation, location, since, restartCount, statusMessage, deadline, snapshot);
    }

    Live withStatus(String message) {
      return new Live(id, tenant, spec, requestId, createdAt, updatedAt, phase, desiredRunning, incarnation, vm, vmSince, restartCount, message, deadline, snapshot);
    }

    Live withIncarnation(long n, int restarts) {
      return new Live(id, tenant, spec, requestId, createdAt, updatedAt, phase, desiredRunning, n, null, null, restarts, statusMessage, deadline, snapshot);
    }

    /** A live resize: the spec with its new resources. */
    Live withSpec(SandboxSpec newSpec, Instant at) {
      return new Live(id, tenant, newSpec, requestId, createdAt, at, phase, desiredRunning, incarnation, vm, vmSince, restartCount,
          statusMessage, deadline, snapshot);
    }

    Live withDeadline(Instant d) {
      return new Live(id, tenant, spec, requestId, createdAt, updatedAt, phase, desiredRunning, incarnation, vm, vmSince, restartCount,
          statusMessage, d, snapshot);
    }

    /** The snapshot a SUSPENDED sandbox resumes from (a directory of the snapshot store), or null. */
    Live withSnapshot(String dir) {
      return new Live(id, tenant, spec, requestId, createdAt, updatedAt, phase, desiredRunning, incarnation, vm, vmSince, restartCount,
          statusMessage, deadline, dir);
    }

    public SandboxView view() {
      String node = vm != null ? vm.node() : "";
      return new SandboxView(id, tenant, spec, phase, incarnation, node, createdAt, updatedAt, statusMessage,
          restartCount, desiredRunning, deadline);
    }
  }

  // ------------------------------------------------------------------------------ set-up

  public static void init(org.apache.pekko.actor.typed.ActorSystem<?> system, SandboxRuntime runtime) {
    ClusterSharding.get(system).init(
        Entity.of(ENTITY_KEY, ectx -> create(ectx.getEntityId(), runtime, ectx.getShard()))
            .withStopMessage(new HandOff())
            .withSettings(dev.flotilla.cluster.ShardingSettings.of(system))
            .withAllocationStrategy(new dev.flotilla.cluster.LeastLoadedAllocation(
                org.apache.pekko.actor.typed.javadsl.Adapter.toClassic(system), ENTITY_KEY.name())));
  }

  /**
   * @param shard the shard to ask for passivation, null outside sharding (tests)
   */
  public static Behavior<Command> create(String sandboxId, SandboxRuntime runtime,
      ActorRef<ClusterSharding.ShardCommand> shard) {
    return Behaviors.setup(ctx -> Behaviors.withTimers(timers -> new SandboxEntity(sandboxId, runtime, shard, ctx, timers)));
  }

  private final String sandboxId;
  private final SandboxRuntime runtime;
  private final ActorRef<ClusterSharding.ShardCommand> shard;
  private final ActorContext<Command> ctx;
  private final TimerScheduler<Command> timers;
  private final ActorRef<Report> reportAdapter;

  // Runtime-only facts, never persisted: the live supervisor child and callers waiting for the VM
  // to be gone. After a crash they are rebuilt by reconciliation or the callers retry.
  private ActorRef<VmSupervisorProtocol.Command> supervisor;
  private long supervisorIncarnation;
  private final List<ActorRef<StatusReply<SandboxView>>> waitingForStop = new ArrayList<>();
  private boolean handingOff;

  private SandboxEntity(String sandboxId, SandboxRuntime runtime, ActorRef<ClusterSharding.ShardCommand> shard,
      ActorContext<Command> ctx, TimerScheduler<Command> timers) {
    // A failed persist or recovery (journal down) restarts the entity, which recovers again: at
    // most 3 s apart, so after a journal outage it is back, and its VM looked after, within ~3 s.
    super(PersistenceId.of(ENTITY_KEY.name(), sandboxId),
        SupervisorStrategy.restartWithBackoff(Duration.ofMillis(200), Duration.ofSeconds(3), 0.2));
    this.sandboxId = sandboxId;
    this.runtime = runtime;
    this.shard = shard;
    this.ctx = ctx;
    this.timers = timers;
    this.reportAdapter = ctx.messageAdapter(Report.class, FromVm::new);
  }

  @Override
  public State emptyState() {
    return new Empty();
  }

  @Override
  public RetentionCriteria retentionCriteria() {
    return RetentionCriteria.snapshotEvery(100, 2);
  }

  @Override
  public SignalHandler<State> signalHandler() {
    return newSignalHandlerBuilder()
        .onSignal(RecoveryCompleted.instance(), state -> {
          forgetStoppedSupervisor();
          waitingSince.clear(); // a restart drops the stash (Pekko makes a new one): no call waits any more
          resizing = false; // its answer went with the old behaviour; the caller hears a timeout
          if (state instanceof Live l && l.phase() != Phase.DELETED) scheduleLifetime(l);
          ctx.getSelf().tell(new Reconcile());
        })
        .build();
  }

  /**
   * A failed persist restarts the entity's behaviour but not this object, and the restart stops its
   * children: the VM supervisor it remembers may be gone without a {@link SupervisorTerminated}
   * (the restart consumes that). Remembering a stopped one would leave the VM unsupervised and every
   * Stop, Delete and Exec talking to a dead actor; forgotten, {@link Reconcile} re-attaches the VM.
   */
  private void forgetStoppedSupervisor() {
    if (supervisor != null && ctx.getChild(supervisor.path().name()).isEmpty()) {
      ctx.getLog().info("sandbox {}: its VM supervisor stopped with the entity's restart; re-attaching", sandboxId);
      supervisor = null;
    }
  }

  // ------------------------------------------------------------------------------ commands

  /**
   * One guard, then dispatch by state and command type. The guard answers a foreign tenant's
   * command NOT_FOUND before any handler runs (a deleted sandbox's tombstone included), so the
   * handlers below only ever see the owner's. While the entity hands off, every command but the
   * entity's own is left unhandled (callers retry on the new owner), and the guard stays out of it.
   */
  @Override
  public CommandHandlerWithReply<Command, Event, State> commandHandler() {
    CommandHandlerWithReply<Command, Event, State> byState = byState();
    return (state, cmd) -> {
      if (!handingOff && cmd instanceof TenantCommand t && state instanceof Live l && !l.tenant().equals(t.tenant())) return rejectAll(t);
      // While its VM is being saved, what would change the sandbox waits for the outcome (calls into
      // it wait in forwardToVm, and resume it if it was suspended).
      if ((suspendingIncarnation >= 0 || forking) && (cmd instanceof Start || cmd instanceof Stop || cmd instanceof Pause || cmd instanceof Resume
          || cmd instanceof Delete || cmd instanceof Resize || cmd instanceof SetTimeout)) {
        return Effect().stash();
      }
      return byState.apply(state, cmd);
    };
  }

  private CommandHandlerWithReply<Command, Event, State> byState() {
    var builder = newCommandHandlerWithReplyBuilder();

    builder.forAnyState()
        .onCommand(HandOff.class, this::onHandOff)
        .onCommand(HandOffDone.class, () -> Effect().stop().thenNoReply())
        .onCommand(Inspect.class, this::onInspect)
        .onCommand(c -> handingOff, c -> Effect().unhandled().thenNoReply()); // going away: callers retry on the new owner

    builder.forStateType(Empty.class)
        .onCommand(Create.class, this::onCreate)
        .onCommand(TenantCommand.class, this::rejectAll)
        .onAnyCommand(() -> Effect().none().thenNoReply()); // internal news of a sandbox that has none

    // The tombstone: a deleted sandbox is gone for every caller, exactly as if it never existed.
    builder.forState(Live.class, s -> s.phase() == Phase.DELETED)
        .onCommand(Create.class, (s, c) -> rejectCreate(c, new SandboxError(SandboxError.Kind.ALREADY_EXISTS,
            "request id '" + c.requestId() + "' was used for sandbox " + s.id() + ", which has been deleted; use a new request id")))
        .onCommand(TenantCommand.class, this::rejectAll)
        .onAnyCommand(() -> Effect().none().thenNoReply());

    builder.forStateType(Live.class)
        .onCommand(Create.class, this::onCreateAgain)
        .onCommand(Get.class, (s, c) -> Effect().reply(c.replyTo(), StatusReply.success(s.view())))
        .onCommand(Start.class, this::onStart)
        .onCommand(Stop.class, this::onStop)
        .onCommand(Pause.class, (s, c) -> onFreeze(s, true, c.replyTo()))
        .onCommand(Resume.class, (s, c) -> s.phase() == Phase.SUSPENDED
            ? resumeFromSnapshot(s, "resumed").thenReply(c.replyTo(), ns -> StatusReply.success(((Live) ns).view()))
            : onFreeze(s, false, c.replyTo()))
        .onCommand(Suspend.class, this::onSuspend)
        .onCommand(Fork.class, this::onFork)
        .onCommand(ForkSaved.class, this::onForkSaved)
        .onCommand(SuspendFailed.class, this::onSuspendFailed)
        .onCommand(Delete.class, (s, c) -> delete(s, c.replyTo(), List.of()))
        .onCommand(SetTimeout.class, this::onSetTimeout)
        .onCommand(Resize.class, this::onResize)
        .onCommand(ResizeResult.class, this::onResizeResult)
        .onCommand(DeadlineReached.class, (s, c) -> onDeadline(s))
        .onCommand(IdleCheck.class, (s, c) -> onIdleCheck(s))
        .onCommand(IdleVerdict.class, this::onIdleVerdict)
        .onCommand(Unstash.class, (s, c) -> unstashing(Effect().none()).thenNoReply())
        .onCommand(Exec.class, (s, c) -> forwardToVm(s, c, c.replyTo(), vm -> vm.tell(new VmSupervisorProtocol.Exec(c.spec(), c.replyTo()))))
        .onCommand(ExecInteractive.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.ExecInteractive(c.exec(), c.input(), c.replyTo()))))
        .onCommand(WriteFile.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.WriteFile(c.path(), c.mode(), c.data(), c.replyTo()))))
        .onCommand(ReadFile.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.ReadFile(c.path(), c.replyTo()))))
        .onCommand(StartProcess.class, (s, c) -> forwardToVm(s, c, c.replyTo(), vm -> vm.tell(new VmSupervisorProtocol.StartProcess(c.spec(), c.replyTo()))))
        .onCommand(ListProcesses.class, (s, c) -> forwardToVm(s, c, c.replyTo(), vm -> vm.tell(new VmSupervisorProtocol.ListProcesses(c.replyTo()))))
        .onCommand(AttachProcess.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.AttachProcess(c.processId(), c.offset(), c.replyTo()))))
        .onCommand(SignalProcess.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.SignalProcess(c.processId(), c.signal(), c.replyTo()))))
        .onCommand(PortForward.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.PortForward(c.port(), c.in(), c.replyTo()))))
        .onCommand(ReadLogs.class, this::onReadLogs)
        .onCommand(ListDir.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.ListDir(c.path(), c.depth(), c.maxEntries(), c.startAfter(), c.replyTo()))))
        .onCommand(Stat.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.Stat(c.path(), c.followLinks(), c.replyTo()))))
        .onCommand(MakeDir.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.MakeDir(c.path(), c.parents(), c.mode(), c.replyTo()))))
        .onCommand(Remove.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.Remove(c.path(), c.recursive(), c.replyTo()))))
        .onCommand(Rename.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.Rename(c.from(), c.to(), c.overwrite(), c.replyTo()))))
        .onCommand(WatchDir.class, (s, c) -> forwardToVm(s, c, c.replyTo(),
            vm -> vm.tell(new VmSupervisorProtocol.WatchDir(c.path(), c.recursive(), c.replyTo()))))
        .onCommand(FromVm.class, (s, c) -> onReport(s, c.report()))
        .onCommand(SupervisorTerminated.class, this::onSupervisorTerminated)
        .onCommand(Reconcile.class, (s, c) -> onReconcile(s))
        .onCommand(SpawnVm.class, this::onSpawnVm)
        .onCommand(FreezeResult.class, this::onFreezeResult);

    return builder.build();
  }

  private ReplyEffect<Event, State> onCreate(Create c) {
    Instant now = Instant.now();
    List<Event> events = List.of(
        new Created(sandboxId, c.tenant(), c.spec(), c.requestId(), now, c.restoreFrom()),
        new VmStartRequested(1, runtime.nodeAddress(), "created", 0, now));
    return Effect().persist(events)
        .thenRun(s -> afterChange(s, "created"))
        .thenRun(s -> spawnVm((Live) s, Duration.ZERO))
        .thenReply(c.replyTo(), s -> StatusReply.success(((Live) s).view()));
  }

  private ReplyEffect<Event, State> onInspect(State state, Inspect i) {
    // Asked about an id that was never created (the ledger reconciler, a create that lost a race):
    // nothing to keep in memory or remember.
    if (state instanceof Empty) passivateLater();
    return Effect().reply(i.replyTo(), inspection(state));
  }

  /** A create that makes nothing: a fork's snapshot it came with is not needed. */
  private ReplyEffect<Event, State> rejectCreate(Create c, SandboxError e) {
    discardSnapshot(c.restoreFrom());
    return reject(c.replyTo(), e);
  }

  /** NOT_FOUND, to a caller who may not know this sandbox exists. */
  private ReplyEffect<Event, State> rejectAll(TenantCommand cmd) {
    @SuppressWarnings("unchecked")
    ActorRef<StatusReply<Object>> r = (ActorRef<StatusReply<Object>>) (ActorRef<?>) cmd.replyTo();
    return notFound(r);
  }

  /** A retried create (same request id, hence same sandbox id) returns the sandbox as it is. */
  private ReplyEffect<Event, State> onCreateAgain(Live s, Create c) {
    if (c.restoreFrom() != null && !c.restoreFrom().equals(s.snapshot())) discardSnapshot(c.restoreFrom()); // a retried fork's second snapshot
    if (!Objects.equals(s.spec(), c.spec())) {
      return reject(c.replyTo(), new SandboxError(SandboxError.Kind.ALREADY_EXISTS,
          "request id '" + c.requestId() + "' was already used to create sandbox " + s.id()
              + " with a different spec; use a new request id"));
    }
    return Effect().reply(c.replyTo(), StatusReply.success(s.view()));
  }

  private ReplyEffect<Event, State> onStart(Live s, Start c) {
    return switch (s.phase()) {
      case STOPPED, FAILED -> {
        Instant now = Instant.now();
        yield Effect().persist(List.of(new StartRequested(now),
                new VmStartRequested(s.incarnation() + 1, runtime.nodeAddress(), "started", 0, now)))
            .thenRun(ns -> afterChange(ns, "starting"))
            .thenRun(ns -> spawnVm((Live) ns, Duration.ZERO))
            .thenReply(c.replyTo(), ns -> StatusReply.success(((Live) ns).view()));
      }
      case CREATING, RUNNING, PAUSED -> Effect().reply(c.replyTo(), StatusReply.success(s.view()));
      case SUSPENDED -> resumeFromSnapshot(s, "started").thenReply(c.replyTo(), ns -> StatusReply.success(((Live) ns).view()));
      default -> reject(c.replyTo(), SandboxError.precondition(
          "sandbox " + s.id() + " is " + s.phase() + "; it can be started once it is STOPPED"));
    };
  }

  private ReplyEffect<Event, State> onStop(Live s, Stop c) {
    return stop(s, c.replyTo(), List.of());
  }

  /** Stops the sandbox; {@code first} are events recorded with the stop (why it stops, if not asked to). */
  private ReplyEffect<Event, State> stop(Live s, ActorRef<StatusReply<SandboxView>> replyTo, List<Event> first) {
    return switch (s.phase()) {
      case STOPPED, FAILED -> first.isEmpty() ? Effect().reply(replyTo, StatusReply.success(s.view()))
          : Effect().persist(first).thenRun(ns -> afterChange(ns, "timed-out"))
              .thenReply(replyTo, ns -> StatusReply.success(((Live) ns).view()));
      case STOPPING -> {
        waitingForStop.add(replyTo);
        yield first.isEmpty() ? Effect().noReply() : Effect().persist(first).thenNoReply();
      }
      case SUSPENDED -> {
        // No VM to stop: the snapshot is discarded (a start boots afresh).
        List<Event> events = new ArrayList<>(first);
        events.add(new StopRequested(Instant.now()));
        String snapshot = s.snapshot();
        yield Effect().persist(events)
            .thenRun(ns -> afterChange(ns, "stopped"))
            .thenRun(ns -> discardSnapshot(snapshot))
            .thenReply(replyTo, ns -> StatusReply.success(((Live) ns).view()));
      }
      case CREATING, RUNNING, PAUSED -> {
        Instant now = Instant.now();
        List<Event> events = new ArrayList<>(first);
        events.add(new StopRequested(now));
        if (supervisor == null) {
          // No VM runs (restart backoff pending): nothing to wait for.
          events.add(new VmEnded(s.incarnation(), new VmEnd(0, 0, "stopped before the VM started", true), now));
          yield unstashing(Effect().persist(events)
              .thenRun(ns -> afterChange(ns, "stopped")))
              .thenReply(replyTo, ns -> StatusReply.success(((Live) ns).view()));
        }
        waitingForStop.add(replyTo);
        yield unstashing(Effect().persist(events)
            .thenRun(ns -> afterChange(ns, "stopping"))
            .thenRun(ns -> stopVm()))
            .thenNoReply();
      }
      default -> reject(replyTo, SandboxError.precondition("sandbox " + s.id() + " is " + s.phase()));
    };
  }

  /** Deletes the sandbox; {@code first} are events recorded with the delete (why, if not asked to). */
  private ReplyEffect<Event, State> delete(Live s, ActorRef<StatusReply<SandboxView>> replyTo, List<Event> first) {
    Instant now = Instant.now();
    if (s.phase() == Phase.DELETING) {
      waitingForStop.add(replyTo);
      return Effect().noReply();
    }
    List<Event> events = new ArrayList<>(first);
    events.add(new DeleteRequested(now));
    if (supervisor == null) {
      events.add(new Deleted(now));
      String snapshot = s.snapshot();
      return unstashing(Effect().persist(events)
          .thenRun(ns -> afterChange(ns, "deleted"))
          .thenRun(ns -> discardSnapshot(snapshot))
          .thenRun(ns -> passivateLater()))
          .thenReply(replyTo, ns -> StatusReply.success(((Live) ns).view()));
    }
    waitingForStop.add(replyTo);
    return unstashing(Effect().persist(events)
        .thenRun(ns -> afterChange(ns, "deleting"))
        .thenRun(ns -> stopVm()))
        .thenNoReply();
  }

  // ------------------------------------------------------------------------------ lifetimes

  private static final String DEADLINE_TIMER = "deadline";
  private static final String IDLE_TIMER = "idle";

  /**
   * The last exec, process or file call this entity saw: the idle clock. In memory only: after a
   * recovery (a node crash, a move) it restarts from then.
   */
  private Instant lastActivity = Instant.now();

  private ReplyEffect<Event, State> onSetTimeout(Live s, SetTimeout c) {
    if (s.phase() == Phase.DELETING) {
      return reject(c.replyTo(), SandboxError.precondition("sandbox " + s.id() + " is being deleted"));
    }
    Instant now = Instant.now();
    Instant deadline = c.timeout().isZero() ? null : now.plus(c.timeout());
    return Effect().persist(new TimeoutSet(deadline, now))
        .thenRun(ns -> afterChange(ns, deadline == null ? "timeout-removed" : "timeout-set"))
        .thenReply(c.replyTo(), ns -> StatusReply.success(((Live) ns).view()));
  }

  // ------------------------------------------------------------------------------ live resize

  /** A resize under way (its VM is being changed): one at a time. In memory only, as a pause's ask is. */
  private boolean resizing;

  private ReplyEffect<Event, State> onResize(Live s, Resize c) {
    if (c.vcpus() == s.spec().vcpus() && c.memoryMiB() == s.spec().memoryMiB()) {
      return Effect().reply(c.replyTo(), StatusReply.success(s.view()));
    }
    if ((s.phase() != Phase.RUNNING && s.phase() != Phase.PAUSED) || supervisor == null) {
      return reject(c.replyTo(), SandboxError.precondition("sandbox " + s.id() + " is " + s.phase()
          + "; only a RUNNING (or PAUSED) sandbox can be resized: its VM's resources change in place, never at a later start"));
    }
    if (resizing) {
      return reject(c.replyTo(), SandboxError.precondition("sandbox " + s.id() + " is being resized already; try again once that is done"));
    }
    resizing = true;
    long incarnation = s.incarnation();
    ctx.askWithStatus(Done.class, supervisor, runtime.vmCallTimeout(),
        ref -> new VmSupervisorProtocol.Resize(c.vcpus(), c.memoryMiB(), ref),
        (done, err) -> new ResizeResult(incarnation, c.vcpus(), c.memoryMiB(),
            err == null ? StatusReply.ack() : fromVm(err).reply(), c.replyTo()));
    return Effect().noReply();
  }

  private ReplyEffect<Event, State> onResizeResult(Live s, ResizeResult r) {
    resizing = false;
    if (r.result().isError()) {
      return reject(r.replyTo(), SandboxError.fromReplyText(r.result().getError().getMessage())
          .doing("could not resize sandbox " + s.id()));
    }
    if (r.incarnation() != s.incarnation()) {
      // Resized, then replaced (a crash, a stop): the new VM started with the old resources.
      return reject(r.replyTo(), new SandboxError(SandboxError.Kind.UNAVAILABLE,
          "the sandbox's VM was replaced while it was being resized; try again"));
    }
    return Effect().persist(new Resized(r.vcpus(), r.memoryMiB(), s.spec().vcpus(), s.spec().memoryMiB(), Instant.now()))
        .thenRun(ns -> afterChange(ns, "resized"))
        .thenReply(r.replyTo(), ns -> StatusReply.success(((Live) ns).view()));
  }

  private ReplyEffect<Event, State> onDeadline(Live s) {
    Instant now = Instant.now();
    if (s.deadline() == null || s.phase() == Phase.DELETING) return Effect().none().thenNoReply();
    if (now.isBefore(s.deadline())) {
      scheduleLifetime(s); // moved meanwhile
      return Effect().none().thenNoReply();
    }
    ctx.getLog().info("sandbox {}: its timeout ran out ({}): {}", sandboxId, s.deadline(), s.spec().lifetime().onTimeout());
    List<Event> timedOut = List.of(new TimedOut(false, now));
    return s.spec().lifetime().onTimeout() == Lifetime.TimeoutAction.STOP
        ? stop(s, ctx.getSystem().ignoreRef(), timedOut)
        : delete(s, ctx.getSystem().ignoreRef(), timedOut);
  }

  /** An exec, process or file call: the sandbox is in use. */
  private void touch(Live s) {
    lastActivity = Instant.now();
    scheduleIdle(s);
  }

  private ReplyEffect<Event, State> onIdleCheck(Live s) {
    Lifetime l = s.spec().lifetime();
    if (!l.idles() || s.phase() != Phase.RUNNING || supervisor == null) return Effect().none().thenNoReply();
    if (Instant.now().isBefore(lastActivity.plus(l.idleTimeout()))) {
      scheduleIdle(s);
      return Effect().none().thenNoReply();
    }
    // No call began for the idle timeout: is one still under way (a long exec)?
    long incarnation = s.incarnation();
    ctx.ask(Integer.class, supervisor, runtime.vmCallTimeout(), VmSupervisorProtocol.CallsInFlight::new,
        (n, err) -> new IdleVerdict(incarnation, err != null ? -1 : n));
    return Effect().none().thenNoReply();
  }

  private ReplyEffect<Event, State> onIdleVerdict(Live s, IdleVerdict v) {
    Lifetime l = s.spec().lifetime();
    if (v.incarnation() != s.incarnation() || s.phase() != Phase.RUNNING || !l.idles()) return Effect().none().thenNoReply();
    if (v.callsInFlight() != 0 || Instant.now().isBefore(lastActivity.plus(l.idleTimeout()))) {
      // In use, or no answer (not idle for sure): the idle clock starts again.
      if (v.callsInFlight() != 0) lastActivity = Instant.now();
      scheduleIdle(s);
      return Effect().none().thenNoReply();
    }
    ctx.getLog().info("sandbox {}: idle for {}: {}", sandboxId, l.idleTimeout(), l.onIdle());
    List<Event> idle = List.of(new TimedOut(true, Instant.now()));
    if (l.onIdle() == Lifetime.IdleAction.STOP) return stop(s, ctx.getSystem().ignoreRef(), idle);
    Command next = l.onIdle() == Lifetime.IdleAction.SUSPEND ? new Suspend(s.tenant(), ctx.getSystem().ignoreRef())
        : new Pause(s.tenant(), ctx.getSystem().ignoreRef());
    return Effect().persist(idle)
        .thenRun(ns -> afterChange(ns, "idle"))
        .thenRun(ns -> ctx.getSelf().tell(next))
        .thenNoReply();
  }

  /** (Re)arms the timers of the sandbox's lifetime as its state says. */
  private void scheduleLifetime(Live s) {
    if (s.deadline() != null && s.phase() != Phase.DELETING && s.phase() != Phase.DELETED) {
      Duration left = Duration.between(Instant.now(), s.deadline());
      timers.startSingleTimer(DEADLINE_TIMER, new DeadlineReached(), left.isNegative() ? Duration.ZERO : left);
    } else {
      timers.cancel(DEADLINE_TIMER);
    }
    scheduleIdle(s);
  }

  private void scheduleIdle(Live s) {
    Lifetime l = s.spec().lifetime();
    if (l.idles() && s.phase() == Phase.RUNNING) {
      Duration left = Duration.between(Instant.now(), lastActivity.plus(l.idleTimeout()));
      timers.startSingleTimer(IDLE_TIMER, new IdleCheck(), left.isNegative() ? Duration.ZERO : left);
    } else {
      timers.cancel(IDLE_TIMER);
    }
  }

  private ReplyEffect<Event, State> onFreeze(Live s, boolean pause, ActorRef<StatusReply<SandboxView>> replyTo) {
    Phase target = pause ? Phase.PAUSED : Phase.RUNNING;
    if (s.phase() == target) return Effect().reply(replyTo, StatusReply.success(s.view()));
    Phase from = pause ? Phase.RUNNING : Phase.PAUSED;
    if (s.phase() != from || supervisor == null) {
      return reject(replyTo, SandboxError.precondition("sandbox " + s.id() + " is " + s.phase() + "; "
          + (pause ? "only a RUNNING sandbox can be paused" : "only a PAUSED or SUSPENDED sandbox can be resumed")));
    }
    long incarnation = s.incarnation();
    ActorRef<VmSupervisorProtocol.Command> vm = supervisor;
    ctx.askWithStatus(Done.class, vm,
        runtime.vmCallTimeout(),
        ref -> pause ? new VmSupervisorProtocol.Pause(ref) : new VmSupervisorProtocol.Resume(ref),
        (done, err) -> new FreezeResult(pause, incarnation,
            err == null ? StatusReply.ack() : fromVm(err).reply(), replyTo));
    return Effect().noReply();
  }

  private ReplyEffect<Event, State> onFreezeResult(Live s, FreezeResult r) {
    if (r.incarnation() != s.incarnation()) {
      return reject(r.replyTo(), new SandboxError(SandboxError.Kind.UNAVAILABLE,
          "the sandbox's VM was replaced while " + (r.pause() ? "pausing" : "resuming") + "; try again"));
    }
    if (r.result().isError()) {
      return reject(r.replyTo(), SandboxError.fromReplyText(r.result().getError().getMessage())
          .doing("could not " + (r.pause() ? "pause" : "resume") + " sandbox " + s.id()));
    }
    Instant now = Instant.now();
    Event e = r.pause() ? new Paused(now) : new Resumed(now);
    return Effect().persist(e)
        .thenRun(ns -> afterChange(ns, r.pause() ? "paused" : "resumed"))
        .thenReply(r.replyTo(), ns -> StatusReply.success(((Live) ns).view()));
  }

  // ------------------------------------------------------------------------------ suspend

  /** How long a suspend may take in the driver (saving all of the guest's memory and its disk). */
  private static final Duration SUSPEND_TIMEOUT = Duration.ofMinutes(10);

  /** The incarnation being suspended, -1 when none is. In memory, as a pause's ask is. */
  private long suspendingIncarnation = -1;
  private final List<ActorRef<StatusReply<SandboxView>>> waitingForSuspend = new ArrayList<>();

  private ReplyEffect<Event, State> onSuspend(Live s, Suspend c) {
    if (s.phase() == Phase.SUSPENDED) return Effect().reply(c.replyTo(), StatusReply.success(s.view()));
    if (suspendingIncarnation >= 0) {
      waitingForSuspend.add(c.replyTo());
      return Effect().noReply();
    }
    if (s.phase() != Phase.RUNNING || supervisor == null) {
      String hint = switch (s.phase()) {
        case PAUSED -> "; resume it first";
        case CREATING -> "; suspend it once it is RUNNING";
        default -> "";
      };
      return reject(c.replyTo(), SandboxError.precondition("sandbox " + s.id() + " is " + s.phase()
          + "; only a RUNNING sandbox can be suspended" + hint));
    }
    if (resizing) {
      return reject(c.replyTo(), SandboxError.precondition("sandbox " + s.id() + " is being resized; try again once that is done"));
    }
    java.nio.file.Path dir;
    try {
      dir = runtime.snapshots().dirFor(sandboxId, s.incarnation());
    } catch (java.io.IOException e) {
      return reject(c.replyTo(), SandboxError.unavailable("cannot suspend sandbox " + s.id() + ": the snapshot store "
          + runtime.snapshots().root() + " is not usable: " + e.getMessage()));
    }
    long incarnation = s.incarnation();
    suspendingIncarnation = incarnation;
    waitingForSuspend.add(c.replyTo());
    ctx.askWithStatus(Done.class, supervisor, SUSPEND_TIMEOUT, ref -> new VmSupervisorProtocol.Suspend(dir, ref),
        (done, err) -> new SuspendFailed(incarnation, err == null ? null : fromVm(err)));
    return Effect().noReply();
  }

  /** A fork's snapshot is being saved (its VM stopped, then reconnected): one at a time; calls wait. In memory only. */
  private boolean forking;

  private ReplyEffect<Event, State> onFork(Live s, Fork c) {
    if (s.phase() != Phase.RUNNING || supervisor == null || suspendingIncarnation >= 0) {
      String hint = switch (s.phase()) {
        case PAUSED -> "; resume it first";
        case SUSPENDED -> "; resume it first (any call into it does)";
        case CREATING -> "; fork it once it is RUNNING";
        default -> "";
      };
      return reject(c.replyTo(), SandboxError.precondition("sandbox " + s.id() + " is "
          + (suspendingIncarnation >= 0 ? "being suspended" : s.phase()) + "; only a RUNNING sandbox can be forked" + hint));
    }
    if (forking || resizing) {
      return reject(c.replyTo(), SandboxError.precondition("sandbox " + s.id() + " is being " + (forking ? "forked" : "resized")
          + " already; try again once that is done"));
    }
    java.nio.file.Path dir;
    try {
      dir = runtime.snapshots().forkDirFor(c.forkId());
    } catch (java.io.IOException e) {
      return reject(c.replyTo(), SandboxError.unavailable("cannot fork sandbox " + s.id() + ": the snapshot store "
          + runtime.snapshots().root() + " is not usable: " + e.getMessage()));
    }
    forking = true;
    ctx.askWithStatus(dev.flotilla.vm.Snapshot.class, supervisor, SUSPEND_TIMEOUT, ref -> new VmSupervisorProtocol.SnapshotVm(dir, ref),
        (snap, err) -> new ForkSaved(err == null ? snap.dir().toString() : dir.toString(), err == null ? null : fromVm(err), c.replyTo()));
    return Effect().noReply();
  }

  private ReplyEffect<Event, State> onForkSaved(Live s, ForkSaved f) {
    forking = false;
    if (f.error() != null) {
      discardSnapshot(f.dir()); // whatever a failed save left
      f.replyTo().tell(f.error().doing("could not fork sandbox " + s.id()).reply());
    } else {
      f.replyTo().tell(StatusReply.success(f.dir()));
    }
    return unstashing(Effect().none()).thenNoReply();
  }

  /** The supervisor's answer to a suspend: a success was recorded with VmSuspended already. */
  private ReplyEffect<Event, State> onSuspendFailed(Live s, SuspendFailed f) {
    if (f.error() == null || suspendingIncarnation != f.incarnation()) return Effect().none().thenNoReply();
    suspendingIncarnation = -1;
    SandboxError e = f.error().doing("could not suspend sandbox " + s.id());
    ctx.getLog().info("sandbox {}: {}", sandboxId, e.getMessage());
    // An idle suspend that failed (a save QEMU refused, a full disk) tries again after another idle timeout, not at once.
    lastActivity = Instant.now();
    scheduleIdle(s);
    for (var w : waitingForSuspend) w.tell(e.reply());
    waitingForSuspend.clear();
    if (supervisor == null && s.incarnation() == f.incarnation() && s.phase().hasVm()) {
      // Its supervisor died during the suspend: the VM is as good as lost.
      return onVmGone(s, new VmEnd(-1, 0, "VM supervisor failed while suspending: " + e.getMessage(), false), Instant.now());
    }
    return unstashing(Effect().none()).thenNoReply();
  }

  /** A new incarnation from the SUSPENDED sandbox's snapshot (spawnVm restores it). */
  private org.apache.pekko.persistence.typed.javadsl.EffectBuilder<Event, State> resumeFromSnapshot(Live s, String why) {
    Instant now = Instant.now();
    String reason = runtime.snapshots().find(s.snapshot()).isPresent() ? why + ": resuming from its snapshot"
        : why + ": its snapshot is not on this node (" + s.snapshot() + "), so it boots afresh";
    return Effect().persist(List.of(new StartRequested(now), new VmStartRequested(s.incarnation() + 1, runtime.nodeAddress(),
            reason, 0, now)))
        .thenRun(ns -> afterChange(ns, "resuming"))
        .thenRun(ns -> spawnVm((Live) ns, Duration.ZERO));
  }

  /** Removes a snapshot nobody resumes from any more, off the actor's thread. */
  private void discardSnapshot(String snapshot) {
    if (snapshot == null) return;
    var blocking = ctx.getSystem().dispatchers().lookup(org.apache.pekko.actor.typed.DispatcherSelector.fromConfig(runtime.blockingDispatcher()));
    var log = ctx.getLog();
    String id = sandboxId;
    java.util.concurrent.CompletableFuture.runAsync(() -> {
      try {
        runtime.snapshots().discard(snapshot);
      } catch (java.io.IOException | RuntimeException e) {
        log.warn("sandbox {}: could not remove its snapshot {}: {}", id, snapshot, e.getMessage());
      }
    }, blocking);
  }

  /**
   * Sends a call to the VM. A CREATING sandbox keeps it (Pekko's stash) until its VM runs, at most
   * as long as its caller waits (the ask timeout): then it goes to the VM, or is refused with the
   * reason the sandbox did not start.
   */
  private <R> ReplyEffect<Event, State> forwardToVm(Live s, Command cmd, ActorRef<StatusReply<R>> replyTo,
      java.util.function.Consumer<ActorRef<VmSupervisorProtocol.Command>> send) {
    Instant since = waitingSince.remove(cmd);
    if (s.phase() == Phase.SUSPENDED) {
      // Auto-resume: the call resumes the sandbox and waits for it as for a CREATING one.
      Instant first = since != null ? since : Instant.now();
      waitingSince.put(cmd, first);
      if (since == null) timers.startSingleTimer(WAIT_TIMER, new Unstash(), runtime.askTimeout());
      return resumeFromSnapshot(s, "resumed by a call").thenRun(ns -> ctx.getSelf().tell(cmd)).thenNoReply();
    }
    if (s.phase() == Phase.CREATING || suspendingIncarnation >= 0 || forking) {
      Instant first = since != null ? since : Instant.now();
      if (Duration.between(first, Instant.now()).compareTo(runtime.askTimeout()) >= 0) {
        return reject(replyTo, new SandboxError(SandboxError.Kind.UNAVAILABLE, "sandbox " + s.id()
            + " is still " + (suspendingIncarnation >= 0 ? "being suspended" : forking ? "being forked" : "CREATING") + " after "
            + runtime.askTimeout().toSeconds() + " s; try again once it is RUNNING"));
      }
      if (waitingSince.size() >= MAX_WAITING) {
        return reject(replyTo, new SandboxError(SandboxError.Kind.UNAVAILABLE, "sandbox " + s.id()
            + " is CREATING and " + MAX_WAITING + " calls already wait for it; try again once it is RUNNING"));
      }
      waitingSince.put(cmd, first);
      if (since == null) timers.startSingleTimer(WAIT_TIMER, new Unstash(), runtime.askTimeout());
      return Effect().stash();
    }
    if (since != null && Duration.between(since, Instant.now()).compareTo(runtime.askTimeout()) >= 0) {
      // Its caller has given up by now: running it would be a call nobody asked for any more.
      return reject(replyTo, new SandboxError(SandboxError.Kind.UNAVAILABLE, "sandbox " + s.id()
          + " took longer than " + runtime.askTimeout().toSeconds() + " s to start; the call was not run"));
    }
    if (s.phase() != Phase.RUNNING || supervisor == null) {
      String hint = switch (s.phase()) {
        case PAUSED -> "; resume it first";
        case STOPPED, FAILED -> "; start it first" + (s.statusMessage().isEmpty() ? "" : " (" + s.statusMessage() + ")");
        default -> "";
      };
      return reject(replyTo, SandboxError.precondition("sandbox " + s.id() + " is " + s.phase() + hint));
    }
    touch(s);
    send.accept(supervisor);
    return Effect().noReply();
  }

  /**
   * {@code b}, then the calls kept while CREATING are handled again in the new state. (Pekko's
   * javadsl types thenUnstashAll as a plain Effect; it is the same builder, which still takes the
   * reply a command handler with enforced replies needs.)
   */
  @SuppressWarnings("unchecked")
  private static org.apache.pekko.persistence.typed.javadsl.EffectBuilder<Event, State> unstashing(
      org.apache.pekko.persistence.typed.javadsl.EffectBuilder<Event, State> b) {
    return (org.apache.pekko.persistence.typed.javadsl.EffectBuilder<Event, State>) b.thenUnstashAll();
  }

  private static final String WAIT_TIMER = "waiting";
  private static final int MAX_WAITING = 1000;
  /** Calls stashed while CREATING, with when they came (by identity: a command is one call). */
  private final Map<Command, Instant> waitingSince = new java.util.IdentityHashMap<>();

  /**
   * Any phase: the log tells why a main process ended, and a stopped sandbox is when people ask.
   * The log is this node's (a sandbox that moved here starts a new one).
   */
  private ReplyEffect<Event, State> onReadLogs(Live s, ReadLogs c) {
    if (s.spec().command().isEmpty()) {
      return reject(c.replyTo(), SandboxError.precondition("sandbox " + s.id()
          + " has no main process, so no logs: create it with a command (create ... -- CMD, or --image-command)"));
    }
    var log = runtime.mainLogs().of(sandboxId);
    var mat = org.apache.pekko.stream.Materializer.matFromSystem(ctx.getSystem());
    // Reading the files happens when the stream starts, on the blocking dispatcher, never here.
    SourceRef<ExecEvent> ref = org.apache.pekko.stream.javadsl.Source.lazySource(() -> log.read(c.tail(), c.follow(), mat))
        .mapMaterializedValue(m -> org.apache.pekko.NotUsed.getInstance())
        .async(runtime.blockingDispatcher())
        .runWith(org.apache.pekko.stream.javadsl.StreamRefs.sourceRef(), mat);
    return Effect().reply(c.replyTo(), StatusReply.success(ref));
  }

  private ReplyEffect<Event, State> onHandOff(HandOff c) {
    if (supervisor == null || !runtime.handOffStopsVm().getAsBoolean()) {
      return Effect().stop().thenNoReply();
    }
    // Nothing is persisted: the next owner finds the VM on another host, records it as lost and
    // starts the next incarnation; it can only do so after this entity has stopped.
    handingOff = true;
    ctx.getLog().info("sandbox {}: handing off to another node, stopping its VM first", sandboxId);
    ctx.pipeToSelf(
        org.apache.pekko.actor.typed.javadsl.AskPattern.<VmSupervisorProtocol.Command, Done>ask(
            supervisor, r -> new VmSupervisorProtocol.Stop(runtime.stopGrace(), r),
            runtime.stopGrace().plus(runtime.vmCallTimeout()), ctx.getSystem().scheduler()),
        (done, err) -> new HandOffDone());
    return Effect().none().thenNoReply();
  }

  private static Inspection inspection(State state) {
    if (!(state instanceof Live l) || l.phase() == Phase.DELETED) return new Inspection(false, Phase.DELETED, 0, "");
    return new Inspection(true, l.phase(), l.incarnation(), l.vm() == null ? "" : l.vm().hostId(), l.snapshot());
  }

  // ------------------------------------------------------------------------------ VM reports

  private ReplyEffect<Event, State> onReport(Live s, Report report) {
    if (handingOff) return Effect().none().thenNoReply();
    if (report.incarnation() != s.incarnation()) {
      ctx.getLog().info("sandbox {}: ignoring {} from stale incarnation {} (current {})",
          sandboxId, report.getClass().getSimpleName(), report.incarnation(), s.incarnation());
      return Effect().none().thenNoReply();
    }
    Instant now = Instant.now();
    if (report instanceof VmSupervisorProtocol.VmReady r) {
      VmLocation loc = VmLocation.of(runtime.nodeAddress(), runtime.hostId(), r.handle());
      org.apache.pekko.persistence.typed.javadsl.EffectBuilder<Event, State> eff =
          Effect().persist(new VmStarted(r.incarnation(), loc, r.adopted(), now));
      if (s.phase() == Phase.STOPPING || s.phase() == Phase.DELETING) {
        // Adopted (or finished starting) while the sandbox should go away: finish that.
        return eff.thenRun(ns -> stopVm()).thenNoReply();
      }
      // A PAUSED sandbox stays PAUSED (VmStarted keeps the phase): its supervisor was told so
      // (spawnVm, adoptVm) and froze the VM, or kept it frozen, before reporting it ready.
      String event = r.adopted() ? "reattached" : s.phase() == Phase.PAUSED ? "paused"
          : s.snapshot() != null && s.incarnation() > 1 ? "resumed" : "running";
      String snapshot = s.snapshot();
      if (snapshot != null) eff = eff.thenRun(ns -> discardSnapshot(snapshot)); // the VM runs on from it; not needed any more
      // Calls that waited for it to start go to it now.
      return unstashing(eff.thenRun(ns -> afterChange(ns, event))).thenNoReply();
    }
    if (report instanceof VmSupervisorProtocol.VmSuspended v) {
      supervisor = null;
      suspendingIncarnation = -1;
      var snap = v.snapshot();
      ctx.getLog().info("sandbox {}: incarnation {} suspended into {} (memory {}: {} bytes of state, {} bytes of disk)", sandboxId,
          v.incarnation(), snap.dir(), snap.memory() ? "kept" : "lost", snap.stateBytes(), snap.diskAllocatedBytes());
      return unstashing(Effect().persist(new Suspended(v.incarnation(), snap.dir().toString(), snap.memory(), snap.stateBytes(),
              snap.diskAllocatedBytes(), now))
          .thenRun(ns -> afterChange(ns, "suspended"))
          .thenRun(ns -> {
            for (var w : waitingForSuspend) w.tell(StatusReply.success(((Live) ns).view()));
            waitingForSuspend.clear();
          }))
          .thenNoReply();
    }
    if (report instanceof VmSupervisorProtocol.VmStartFailed f) {
      return onVmGone(s, new VmEnd(-1, 0, "VM did not start: " + f.reason(), false), now);
    }
    if (report instanceof VmSupervisorProtocol.VmExited e) {
      return onVmGone(s, new VmEnd(e.exit().exitCode(), e.exit().signal(), e.exit().reason(), e.exit().requested()), now);
    }
    if (report instanceof VmSupervisorProtocol.AgentLost l) {
      // The supervisor kills the VM and reports VmExited next; the reason is in that report too.
      ctx.getLog().warn("sandbox {} incarnation {}: agent lost: {}", sandboxId, l.incarnation(), l.reason());
    }
    return Effect().none().thenNoReply();
  }

  private ReplyEffect<Event, State> onSupervisorTerminated(Live s, SupervisorTerminated t) {
    if (t.incarnation() != supervisorIncarnation || supervisor == null) return Effect().none().thenNoReply();
    // The supervisor stopped without a final report (it failed): treat the VM as lost.
    supervisor = null;
    if (forking) {
      // its answer will never come: calls waiting for the fork's save go on (to whatever comes next)
      forking = false;
    }
    if (suspendingIncarnation == t.incarnation()) {
      // A suspend's success reached us before this (the supervisor reports VmSuspended, then stops):
      // it failed instead, and took the VM's supervision with it.
      suspendingIncarnation = -1;
      SandboxError e = SandboxError.unavailable("could not suspend sandbox " + s.id() + ": its VM supervisor failed; try again");
      for (var w : waitingForSuspend) w.tell(e.reply());
      waitingForSuspend.clear();
    }
    if (t.incarnation() != s.incarnation() || (s.vm() == null && s.phase() != Phase.CREATING)) {
      return unstashing(Effect().none()).thenNoReply();
    }
    return onVmGone(s, new VmEnd(-1, 0, "VM supervisor failed", false), Instant.now());
  }

  /** The current incarnation's VM is gone: record it and decide what comes next. */
  private ReplyEffect<Event, State> onVmGone(Live s, VmEnd end, Instant now) {
    return onVmGone(s, end, false, now);
  }

  /**
   * @param hostLost the VM was lost with its host (or its node), not ended by its workload: a
   *     sandbox that should run starts again at once whatever its restart policy, and the restart
   *     does not count against its crash-loop budget
   */
  private ReplyEffect<Event, State> onVmGone(Live s, VmEnd end, boolean hostLost, Instant now) {
    return onVmGone(s, end, hostLost, Duration.ZERO, now);
  }

  /** @param hold how long a sandbox moved here waits before its new VM starts (see onReconcile) */
  private ReplyEffect<Event, State> onVmGone(Live s, VmEnd end, boolean hostLost, Duration hold, Instant now) {
    supervisor = null;
    List<Event> events = new ArrayList<>();
    events.add(new VmEnded(s.incarnation(), end, now));
    String event;
    Duration delay = Duration.ZERO;
    switch (s.phase()) {
      case DELETING -> {
        events.add(new Deleted(now));
        event = "deleted";
      }
      case STOPPING -> event = "stopped";
      default -> {
        if (hostLost && s.desiredRunning()) {
          events.add(new VmStartRequested(s.incarnation() + 1, runtime.nodeAddress(), "moved here: " + end.reason(),
              s.restartCount(), now));
          // A paused sandbox stays paused wherever it moves: its new VM starts and is paused at
          // once (onReport), rather than running again unasked.
          if (s.phase() == Phase.PAUSED) events.add(new Paused(now));
          delay = hold;
          event = "restarting";
        } else if (!s.desiredRunning() || !s.spec().restartPolicy().restartsAfter(end)) {
          event = "vm-exited";
        } else {
          boolean stableRun = s.vmSince() != null
              && Duration.between(s.vmSince(), now).compareTo(runtime.restart().resetAfter()) >= 0;
          int restarts = stableRun ? 1 : s.restartCount() + 1;
          if (restarts > runtime.restart().maxRestarts()) {
            events.add(new SandboxFailed("restart budget exhausted after " + s.restartCount()
                + " restarts; last: " + end.reason(), now));
            event = "failed";
          } else {
            delay = runtime.restart().backoff(restarts);
            events.add(new VmStartRequested(s.incarnation() + 1, runtime.nodeAddress(),
                "restart " + restarts + "/" + runtime.restart().maxRestarts() + " after: " + end.reason(), restarts, now));
            event = "restarting";
          }
        }
      }
    }
    Duration spawnDelay = delay;
    String what = event;
    // Calls that waited for a start that failed hear why (a restart keeps them waiting).
    return unstashing(Effect().persist(events)
        .thenRun(ns -> afterChange(ns, what))
        .thenRun(ns -> {
          Live l = (Live) ns;
          if (awaitsVm(l)) spawnVm(l, spawnDelay);
          if (l.phase() == Phase.DELETED) passivateLater();
          if (l.phase() != Phase.STOPPING && l.phase() != Phase.DELETING) replyToStopWaiters(l);
        }))
        .thenNoReply();
  }

  // ------------------------------------------------------------------------------ recovery

  private ReplyEffect<Event, State> onReconcile(Live s) {
    if (supervisor != null || !s.phase().hasVm()) return Effect().none().thenNoReply();
    Instant now = Instant.now();
    VmLocation loc = s.vm();
    VmHandle handle = null;
    if (loc != null && runtime.hostId().equals(loc.hostId())) {
      handle = loc.toHandle(sandboxId, s.incarnation());
    } else if (loc == null) {
      handle = savedHandle(s.incarnation());
    }
    Hypervisor hv = runtime.drivers().get(s.spec().driver());
    if (handle != null && hv != null) {
      ctx.getLog().info("sandbox {}: re-attaching to incarnation {} ({})", sandboxId, s.incarnation(), handle.stateDir());
      adoptVm(s, hv, handle);
      return Effect().none().thenNoReply();
    }
    // Cannot re-attach here: the VM, if any, lived on another host or never got a handle. Its
    // node's reaper stops it (older incarnation); we move on to a new incarnation.
    String why = loc == null ? "node restarted while the VM was starting" : "VM was on host " + loc.hostId() + " (node " + loc.node() + ")";
    ctx.getLog().info("sandbox {}: incarnation {} cannot be re-attached here: {}", sandboxId, s.incarnation(), why);
    // The cluster moves a sandbox only once its old VM has ended (a dead node's VMs end by their
    // lease before the takeover; a restarted node gets its shards back). Should the old VM's node
    // be a live member now all the same (its JVM restarted and the shard came here), that VM may
    // still run: the next incarnation is recorded now, so that node's reaper stops the old VM at
    // its next pass, and its VM starts only once the old one's lease is over.
    Duration lease = runtime.vmLauncher().lease();
    Duration hold = loc != null && !lease.isZero() && !loc.node().equals(runtime.nodeAddress())
        && NodeAddress.isLiveMember(ctx.getSystem(), loc.node()) ? lease.plusSeconds(1) : Duration.ZERO;
    if (!hold.isZero()) {
      ctx.getLog().warn("sandbox {}: its VM's node {} is in the cluster and may still run incarnation {}: incarnation {} starts"
          + " in {} ms, once that VM's lease is over", sandboxId, loc.node(), s.incarnation(), s.incarnation() + 1, hold.toMillis());
    }
    return onVmGone(s, new VmEnd(-1, 0, "lost: " + why, false), true, hold, now);
  }

  private VmHandle savedHandle(long incarnation) {
    var dir = runtime.vmStateDir(sandboxId, incarnation);
    if (!Files.isRegularFile(dir.resolve(VmHandle.FILE_NAME))) return null;
    try {
      return VmHandle.load(dir);
    } catch (IOException e) {
      ctx.getLog().warn("sandbox {}: unreadable VM handle in {}: {}", sandboxId, dir, e.getMessage());
      return null;
    }
  }

  private ReplyEffect<Event, State> onSpawnVm(Live s, SpawnVm sp) {
    if (sp.incarnation() == s.incarnation() && awaitsVm(s) && supervisor == null) {
      spawnVm(s, Duration.ZERO);
    }
    return Effect().none().thenNoReply();
  }

  /** The sandbox's current incarnation needs a VM started: it is being created, or moved while paused. */
  private static boolean awaitsVm(Live s) {
    return s.phase() == Phase.CREATING || s.phase() == Phase.PAUSED && s.vm() == null;
  }

  // ------------------------------------------------------------------------------ side effects

  private void spawnVm(Live s, Duration delay) {
    if (!delay.isZero()) {
      timers.startSingleTimer(new SpawnVm(s.incarnation()), delay);
      return;
    }
    Hypervisor hv = runtime.drivers().get(s.spec().driver());
    if (hv == null) {
      reportAdapter.tell(new VmSupervisorProtocol.VmStartFailed(s.incarnation(),
          "driver '" + s.spec().driver() + "' is not available on node " + runtime.nodeAddress()));
      return;
    }
    java.util.Map<String, String> options = new java.util.HashMap<>();
    if (s.spec().diskMiB() > 0) options.put(VmSpec.DISK_MIB, Integer.toString(s.spec().diskMiB()));
    options.putAll(s.spec().network().vmOptions());
    options.put(VmSpec.TENANT, s.tenant());
    if (s.snapshot() != null) {
      var here = runtime.snapshots().find(s.snapshot());
      if (here.isPresent()) {
        options.put(VmSpec.RESTORE_FROM, here.get().toString());
      } else {
        ctx.getLog().warn("sandbox {}: its snapshot {} is not on this node (a node-local snapshot store, and its node was lost?):"
            + " incarnation {} boots afresh, without the memory and writable disk it had", sandboxId, s.snapshot(), s.incarnation());
      }
    }
    if (!s.spec().image().isEmpty()) {
      options.put(VmSpec.IMAGE, s.spec().image());
      options.put(VmSpec.IMAGE_OWNER, s.tenant());
    }
    VmSpec spec = new VmSpec(sandboxId, s.incarnation(), s.spec().vcpus(), s.spec().memoryMiB(), runtime.pidsLimit(),
        runtime.vmStateDir(sandboxId, s.incarnation()), options);
    watchSupervisor(s.incarnation(), ctx.spawn(runtime.vmLauncher().start(hv, spec, mainProcess(s), s.phase() == Phase.PAUSED,
        reportAdapter), "vm-" + s.incarnation()));
  }

  /** The VM is brought to the sandbox's phase: a PAUSED sandbox's stays frozen (its agent is not handshaken until resumed). */
  private void adoptVm(Live s, Hypervisor hv, VmHandle handle) {
    watchSupervisor(handle.incarnation(), ctx.spawn(runtime.vmLauncher().adopt(hv, handle, mainProcess(s), s.phase() == Phase.PAUSED,
        reportAdapter), "vm-" + handle.incarnation()));
  }

  /** The spec's main process with its log, or null when it names none. */
  private VmSupervisorProtocol.MainProcess mainProcess(Live s) {
    if (s.spec().command().isEmpty()) return null;
    var logs = runtime.mainLogs();
    return new VmSupervisorProtocol.MainProcess(new ExecSpec(s.spec().command(), java.util.Map.of(), ""),
        logs.of(sandboxId), (int) Math.min(logs.maxBytes(), Integer.MAX_VALUE), runtime.stopGrace());
  }

  private void watchSupervisor(long incarnation, ActorRef<VmSupervisorProtocol.Command> ref) {
    supervisor = ref;
    supervisorIncarnation = incarnation;
    ctx.watchWith(ref, new SupervisorTerminated(incarnation));
  }

  private void stopVm() {
    if (supervisor != null) {
      supervisor.tell(new VmSupervisorProtocol.Stop(runtime.stopGrace(), ctx.getSystem().ignoreRef()));
    }
  }

  private void replyToStopWaiters(Live s) {
    for (var w : waitingForStop) w.tell(StatusReply.success(s.view()));
    waitingForStop.clear();
  }

  private void passivateLater() {
    // A deleted sandbox needs no memory (and must not be remembered): stop the entity; its
    // tombstone is replayed and answers if it is asked again.
    if (shard != null) shard.tell(new ClusterSharding.Passivate<>(ctx.getSelf()));
  }

  private void afterChange(State ns, String event) {
    if (ns instanceof Live l) {
      runtime.events().tell(Topic.publish(new SandboxChanged(l.view(), event, l.updatedAt())));
      scheduleLifetime(l);
      // Deleted by its own timeout too: the tenant's quota is given back (idempotent; API deletes
      // release it as well, and the ledger reconciler catches anything lost).
      if (l.phase() == Phase.DELETED) runtime.releaseQuota().accept(l.tenant(), l.id());
    }
  }

  // ------------------------------------------------------------------------------ helpers

  private <R> ReplyEffect<Event, State> notFound(ActorRef<StatusReply<R>> replyTo) {
    return reject(replyTo, SandboxError.notFound(sandboxId));
  }

  private <R> ReplyEffect<Event, State> reject(ActorRef<StatusReply<R>> replyTo, SandboxError error) {
    return Effect().reply(replyTo, error.reply());
  }

  /** The VM supervisor's refusal (it says its kind), or the ask's own failure: no answer in time is UNAVAILABLE. */
  private static SandboxError fromVm(Throwable err) {
    if (err instanceof java.util.concurrent.TimeoutException) return SandboxError.unavailable("the VM did not answer in time; try again");
    return SandboxError.fromReplyText(String.valueOf(err.getMessage()));
  }

  // ------------------------------------------------------------------------------ events

  @Override
  public EventHandler<State, Event> eventHandler() {
    return newEventHandlerBuilder().forAnyState().onAnyEvent(SandboxEntity::apply);
  }

  /** Pure: the state after {@code e}. Old events keep replaying through here forever. */
  static State apply(State state, Event e) {
    if (e instanceof Created c) {
      return new Live(c.sandboxId(), c.tenant(), c.spec(), c.requestId(), c.at(), c.at(), Phase.CREATING, true, 0,
          null, null, 0, "", c.spec().lifetime().deadlineFrom(c.at()), c.snapshot());
    }
    Live s = (Live) state;
    if (e instanceof VmStartRequested r) {
      return s.withIncarnation(r.incarnation(), r.restartCount()).with(Phase.CREATING, r.at()).withStatus(r.reason());
    }
    if (e instanceof VmStarted v) {
      if (v.incarnation() != s.incarnation()) return s;
      boolean keepPhase = s.phase() == Phase.PAUSED || s.phase() == Phase.STOPPING || s.phase() == Phase.DELETING;
      // A VM restored from the snapshot runs on from it: the snapshot is spent.
      return s.withVm(v.location(), v.adopted() && s.vmSince() != null ? s.vmSince() : v.at()).withSnapshot(null)
          .with(keepPhase ? s.phase() : Phase.RUNNING, v.at())
          .withStatus(v.adopted() ? "re-attached to the running VM" : "");
    }
    if (e instanceof VmEnded v) {
      if (v.incarnation() != s.incarnation()) return s;
      return s.withVm(null, null).with(s.phase() == Phase.DELETING ? Phase.DELETING : Phase.STOPPED, v.at())
          .withStatus(v.end().reason());
    }
    if (e instanceof Suspended u) {
      if (u.incarnation() != s.incarnation()) return s;
      return s.withVm(null, null).withDesired(false).withSnapshot(u.snapshot()).with(Phase.SUSPENDED, u.at())
          .withStatus(u.memory() ? "suspended: its memory and disk are saved"
              : "suspended: its writable disk is kept; its processes and memory are not (its driver cannot save them)");
    }
    if (e instanceof Paused p) return s.with(Phase.PAUSED, p.at());
    if (e instanceof Resumed r) return s.with(Phase.RUNNING, r.at());
    if (e instanceof StopRequested r) {
      if (s.phase() == Phase.SUSPENDED) {
        return s.withDesired(false).withSnapshot(null).with(Phase.STOPPED, r.at()).withStatus("stopped while suspended: its snapshot was discarded");
      }
      return s.withDesired(false).with(Phase.STOPPING, r.at());
    }
    if (e instanceof StartRequested r) return s.withDesired(true).with(s.phase(), r.at());
    if (e instanceof DeleteRequested r) return s.withDesired(false).with(Phase.DELETING, r.at());
    if (e instanceof Deleted d) return s.withVm(null, null).withSnapshot(null).with(Phase.DELETED, d.at()).withStatus("deleted");
    if (e instanceof SandboxFailed f) return s.withDesired(false).with(Phase.FAILED, f.at()).withStatus(f.reason());
    if (e instanceof Resized r) {
      return s.withSpec(s.spec().withResources(r.vcpus(), r.memoryMiB()), r.at());
    }
    if (e instanceof TimeoutSet t) return s.withDeadline(t.deadline()).with(s.phase(), t.at());
    if (e instanceof TimedOut t) {
      String why = t.idle() ? "idle for " + SpecValidator.text(s.spec().lifetime().idleTimeout())
          : "its timeout ran out";
      return (t.idle() ? s : s.withDeadline(null)).with(s.phase(), t.at()).withStatus(why);
    }
    return s; // Created on a live sandbox cannot happen: creation is refused by the command handler
  }
}
