package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.sandbox.SandboxEntity.Command;
import dev.flotilla.sandbox.SandboxEntity.Event;
import dev.flotilla.sandbox.SandboxEntity.Live;
import dev.flotilla.sandbox.SandboxEntity.State;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.tenant.TenantEntity;
import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.process.ProcessHypervisor;
import dev.flotilla.vm.process.ProcessHypervisorConfig;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Report;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.apache.pekko.Done;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.Behavior;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.pubsub.Topic;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.persistence.testkit.javadsl.EventSourcedBehaviorTestKit;
import org.apache.pekko.persistence.testkit.javadsl.PersistenceTestKit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The sandbox entity's state machine, with its VM supervisor child replaced by a recorder that
 * the test drives: every transition, rejection, fencing of stale reports, restart budget,
 * idempotent create, tombstone, and replay. Commands, events and state go through the real Kryo
 * serializer on every step (the testkit's serialization check). Real VMs are exercised by the
 * node's end-to-end tests.
 */
class SandboxEntityTest {
  // Generous expectations: CI machines are shared and slow at times; a pass is never slower.
  // A one-node cluster (joined below), so that an entity can see which nodes are members.
  static final ActorTestKit testKit = ActorTestKit.create(
      ConfigFactory.parseString("""
          pekko.actor.testkit.typed.single-expect-default = 15s
          pekko.actor.provider = cluster
          pekko.remote.artery.canonical.hostname = 127.0.0.1
          pekko.remote.artery.canonical.port = 0
          """)
          .withFallback(EventSourcedBehaviorTestKit.config()).withFallback(ConfigFactory.load()));

  static {
    var cluster = org.apache.pekko.cluster.typed.Cluster.get(testKit.system());
    cluster.manager().tell(org.apache.pekko.cluster.typed.Join.create(cluster.selfMember().address()));
    // in this thread: a lambda of a class being initialized cannot run on another one
    org.awaitility.Awaitility.await().pollInSameThread().atMost(Duration.ofSeconds(30))
        .until(() -> cluster.selfMember().status() == org.apache.pekko.cluster.MemberStatus.up());
  }

  @TempDir Path tmp;

  /** What the entity told its (stand-in) VM supervisors, and which ones it launched. */
  TestProbe<VmSupervisorProtocol.Command> vmCommands;
  TestProbe<String> launches;
  TestProbe<Topic.Command<SandboxChanged>> published;
  /** What the stand-in supervisors answer to CallsInFlight (the idle check). */
  final java.util.concurrent.atomic.AtomicInteger callsInFlight = new java.util.concurrent.atomic.AtomicInteger();
  /** What the stand-in supervisors answer to a Resize (the driver's verdict). */
  volatile StatusReply<Done> resizeAnswer = StatusReply.ack();
  /** What the stand-in supervisors answer to a Suspend (ack: suspended, as the driver would). */
  volatile StatusReply<Done> suspendAnswer = StatusReply.ack();
  volatile boolean suspendKeepsMemory = true;
  /** The spec of the last VM launched (not adopted). */
  volatile VmSpec lastStarted;
  /** The parent ref each launched supervisor got, to send reports as the real one would. */
  volatile ActorRef<Report> parent;

  /** A fresh sandbox per test: the testkit's in-memory journal is shared by the whole class. */
  String ID;
  static final String T = "acme";
  static final SandboxSpec SPEC = new SandboxSpec("process", 1, 256, Map.of("team", "infra"), RestartPolicy.ALWAYS);

  @AfterAll
  static void shutdown() {
    testKit.shutdownTestKit();
  }

  @BeforeEach
  void probes() {
    ID = SandboxIds.random();
    vmCommands = testKit.createTestProbe();
    launches = testKit.createTestProbe();
    published = testKit.createTestProbe();
  }

  SandboxRuntime runtime(String hostId, int maxRestarts) {
    return runtime(hostId, maxRestarts, "127.0.0.1:25520", Duration.ZERO);
  }

  /** On the node {@code nodeAddress}, whose VMs' agents hold a {@code lease}. */
  SandboxRuntime runtime(String hostId, int maxRestarts, String nodeAddress, Duration lease) {
    Hypervisor hv = new ProcessHypervisor(ProcessHypervisorConfig.of(tmp.resolve("runtime"), tmp.resolve("rootfs"), tmp.resolve("vms")));
    SandboxRuntime.VmLauncher launcher = new SandboxRuntime.VmLauncher() {
      @Override
      public Behavior<VmSupervisorProtocol.Command> start(Hypervisor h, VmSpec spec, VmSupervisorProtocol.MainProcess main,
          boolean paused, ActorRef<Report> p) {
        parent = p;
        lastStarted = spec;
        launches.ref().tell("start " + spec.incarnation() + (paused ? " paused" : "") + mainOf(main));
        return fakeSupervisor(spec.incarnation(), p);
      }

      @Override
      public Behavior<VmSupervisorProtocol.Command> adopt(Hypervisor h, VmHandle handle, VmSupervisorProtocol.MainProcess main,
          boolean paused, ActorRef<Report> p) {
        parent = p;
        launches.ref().tell("adopt " + handle.incarnation() + (paused ? " paused" : "") + mainOf(main));
        return fakeSupervisor(handle.incarnation(), p);
      }

      @Override
      public Duration lease() {
        return lease;
      }
    };
    return new SandboxRuntime(Map.of("process", hv), tmp.resolve("vms"), nodeAddress, hostId, launcher,
        new SandboxRuntime.RestartSettings(maxRestarts, Duration.ofMillis(10), Duration.ofMillis(50), Duration.ofMinutes(5)),
        Duration.ofSeconds(3), Duration.ofMillis(100), 1024, published.ref(), () -> false,
        new dev.flotilla.vm.supervisor.MainLogs(tmp.resolve("vms").resolve("logs"), 64 * 1024), "flotilla.vm.blocking-dispatcher");
  }

  /** What a launch says of the main process: nothing when there is none. */
  static String mainOf(VmSupervisorProtocol.MainProcess main) {
    return main == null ? "" : " main=" + String.join(" ", main.spec().argv());
  }

  /** Acknowledges pause/resume, and on Stop reports the requested exit as the real supervisor does. */
  Behavior<VmSupervisorProtocol.Command> fakeSupervisor(long incarnation, ActorRef<Report> p) {
    return Behaviors.receive(VmSupervisorProtocol.Command.class)
        .onMessage(VmSupervisorProtocol.Pause.class, m -> {
          vmCommands.ref().tell(m);
          m.replyTo().tell(StatusReply.ack());
          return Behaviors.same();
        })
        .onMessage(VmSupervisorProtocol.Resume.class, m -> {
          vmCommands.ref().tell(m);
          m.replyTo().tell(StatusReply.ack());
          return Behaviors.same();
        })
        .onMessage(VmSupervisorProtocol.Resize.class, m -> {
          vmCommands.ref().tell(m);
          m.replyTo().tell(resizeAnswer);
          return Behaviors.same();
        })
        .onMessage(VmSupervisorProtocol.Suspend.class, m -> {
          vmCommands.ref().tell(m);
          StatusReply<Done> answer = suspendAnswer;
          if (answer == null) throw new IllegalStateException("the stand-in supervisor crashes during the suspend");
          if (answer.isError()) {
            m.replyTo().tell(answer);
            return Behaviors.same();
          }
          // As the driver does: the snapshot's directory, then the report, the ack, and the supervisor stops.
          java.nio.file.Files.createDirectories(m.dir());
          java.nio.file.Files.writeString(m.dir().resolve("state"), "saved");
          p.tell(new VmSupervisorProtocol.VmSuspended(incarnation,
              new dev.flotilla.vm.Snapshot(m.dir(), 5, 0, 0, 1, 1, suspendKeepsMemory)));
          m.replyTo().tell(StatusReply.ack());
          return Behaviors.stopped();
        })
        .onMessage(VmSupervisorProtocol.SnapshotVm.class, m -> {
          vmCommands.ref().tell(m);
          java.nio.file.Files.createDirectories(m.dir());
          java.nio.file.Files.writeString(m.dir().resolve("state"), "saved");
          m.replyTo().tell(StatusReply.success(new dev.flotilla.vm.Snapshot(m.dir(), 5, 0, 0, 1, 1, true)));
          return Behaviors.same();
        })
        .onMessage(VmSupervisorProtocol.CallsInFlight.class, m -> {
          m.replyTo().tell(callsInFlight.get());
          return Behaviors.same();
        })
        .onMessage(VmSupervisorProtocol.Stop.class, m -> {
          vmCommands.ref().tell(m);
          p.tell(new VmSupervisorProtocol.VmExited(incarnation, new VmExit(0, 0, "stopped", true)));
          m.replyTo().tell(Done.getInstance());
          return Behaviors.stopped();
        })
        .onAnyMessage(m -> {
          vmCommands.ref().tell(m);
          return Behaviors.same();
        })
        .build();
  }

  EventSourcedBehaviorTestKit<Command, Event, State> kit(SandboxRuntime rt) {
    return EventSourcedBehaviorTestKit.create(testKit.system(), SandboxEntity.create(ID, rt, null));
  }

  VmHandle handle(long incarnation) {
    return new VmHandle("process", ID, incarnation, 4242, 99, Path.of("/tmp/x"), Path.of("/tmp/x/agent.sock"), Map.of());
  }

  void ready(long incarnation) {
    parent.tell(new VmSupervisorProtocol.VmReady(incarnation, handle(incarnation), "6.1", false));
  }

  SandboxView get(EventSourcedBehaviorTestKit<Command, Event, State> kit, String tenant) {
    var r = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(tenant, ref));
    return r.reply().getValue();
  }

  /** Runs a command and returns the state once a reply came back (the entity may reply late). */
  SandboxView running(EventSourcedBehaviorTestKit<Command, Event, State> kit) {
    return running(kit, SPEC);
  }

  SandboxView running(EventSourcedBehaviorTestKit<Command, Event, State> kit, SandboxSpec spec) {
    return running(kit, spec, "start 1");
  }

  /** Creates, expects the first launch to read {@code launch}, reports the VM ready, waits for RUNNING. */
  SandboxView running(EventSourcedBehaviorTestKit<Command, Event, State> kit, SandboxSpec spec, String launch) {
    var created = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create(T, spec, "req-1", ref));
    assertEquals(Phase.CREATING, created.reply().getValue().phase());
    assertEquals(List.of(SandboxEntity.Created.class, SandboxEntity.VmStartRequested.class),
        created.events().stream().map(Object::getClass).toList());
    assertEquals(launch, launches.receiveMessage());
    ready(1);
    return awaitPhase(kit, Phase.RUNNING);
  }

  /** Creates a sandbox, lets it run, and pauses it through its (stand-in) VM supervisor. */
  void runningThenPaused(EventSourcedBehaviorTestKit<Command, Event, State> kit) {
    running(kit);
    var paused = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Pause(T, ref));
    assertEquals(Phase.PAUSED, paused.reply().getValue().phase());
    assertInstanceOf(VmSupervisorProtocol.Pause.class, vmCommands.receiveMessage());
  }

  /** Its node restarted (the VM ran on): the entity recovers, adopts incarnation 1 as {@code launch} says, and records the re-attach. */
  void restartedAndReattached(EventSourcedBehaviorTestKit<Command, Event, State> kit, String launch) {
    kit.restart();
    assertEquals(launch, launches.receiveMessage());
    parent.tell(new VmSupervisorProtocol.VmReady(1, handle(1), "6.1", true));
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20))
        .until(() -> ((Live) kit.getState()).statusMessage().startsWith("re-attached"));
  }

  SandboxView awaitPhase(EventSourcedBehaviorTestKit<Command, Event, State> kit, Phase phase) {
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> get(kit, T).phase() == phase);
    return get(kit, T);
  }

  @Test
  void createStartsIncarnationOneAndRunsWhenTheVmIsReady() {
    var kit = kit(runtime("host-a", 3));
    SandboxView v = running(kit);
    assertEquals(1, v.incarnation());
    assertEquals("127.0.0.1:25520", v.node());
    assertTrue(v.desiredRunning());
    Live s = (Live) kit.getState();
    assertEquals(4242, s.vm().pid());
    assertEquals("host-a", s.vm().hostId());
    // Changes are published for watchers.
    // (the publish message's class is internal to Pekko: its text names the event)
    assertTrue(published.receiveMessage().toString().contains("event=created"));
  }

  @Test
  void retriedCreateReturnsTheSameSandboxAndADifferentSpecIsRefused() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    var again = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create(T, SPEC, "req-1", ref));
    assertTrue(again.hasNoEvents());
    assertEquals(ID, again.reply().getValue().id());
    var other = new SandboxSpec("process", 2, 256, Map.of(), RestartPolicy.ALWAYS);
    var conflict = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create(T, other, "req-1", ref));
    assertTrue(conflict.reply().isError());
    assertEquals(SandboxError.Kind.ALREADY_EXISTS, SandboxError.fromReplyText(conflict.reply().getError().getMessage()).kind());
  }

  @Test
  void anotherTenantSeesNothing() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    for (var r : List.of(
        kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get("other", ref)).reply(),
        kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Stop("other", ref)).reply(),
        kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Delete("other", ref)).reply(),
        kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Pause("other", ref)).reply(),
        kit.<StatusReply<Object>>runCommand(ref -> new SandboxEntity.Exec("other",
            new ExecSpec(List.of("true"), Map.of(), ""), castRef(ref))).reply(),
        kit.<StatusReply<Object>>runCommand(ref -> new SandboxEntity.ReadFile("other", "/etc/hostname", castRef(ref))).reply(),
        kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create("other", SPEC, "req-1", ref)).reply())) {
      assertTrue(r.isError());
      assertEquals(SandboxError.Kind.NOT_FOUND, SandboxError.fromReplyText(r.getError().getMessage()).kind());
    }
    assertEquals(Phase.RUNNING, get(kit, T).phase());
    vmCommands.expectNoMessage(Duration.ofMillis(100));
  }

  @Test
  void unknownSandboxIsNotFound() {
    var kit = kit(runtime("host-a", 3));
    var r = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(T, ref));
    assertEquals(SandboxError.Kind.NOT_FOUND, SandboxError.fromReplyText(r.reply().getError().getMessage()).kind());
    assertTrue(r.hasNoEvents());
  }

  @Test
  void pauseAndResumeGoThroughTheVmAndWrongPhasesAreRefused() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    // Resuming a running sandbox is a no-op success (idempotent, like a retried call).
    var resumeRunning = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resume(T, ref));
    assertEquals(Phase.RUNNING, resumeRunning.reply().getValue().phase());
    assertTrue(resumeRunning.hasNoEvents());

    var paused = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Pause(T, ref));
    assertEquals(Phase.PAUSED, paused.reply().getValue().phase());
    assertInstanceOf(VmSupervisorProtocol.Pause.class, vmCommands.receiveMessage());

    var exec = kit.<StatusReply<Object>>runCommand(ref -> new SandboxEntity.Exec(T,
        new ExecSpec(List.of("true"), Map.of(), ""), castRef(ref)));
    assertTrue(exec.reply().getError().getMessage().contains("resume it first"));

    var resumed = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resume(T, ref));
    assertEquals(Phase.RUNNING, resumed.reply().getValue().phase());
    assertInstanceOf(VmSupervisorProtocol.Resume.class, vmCommands.receiveMessage());
  }

  @SuppressWarnings("unchecked")
  static <T> ActorRef<T> castRef(ActorRef<?> ref) {
    return (ActorRef<T>) ref;
  }

  @Test
  void abnormalExitRestartsAsANewIncarnationUntilTheBudgetIsSpent() {
    var kit = kit(runtime("host-a", 2));
    running(kit);
    parent.tell(new VmSupervisorProtocol.VmExited(1, new VmExit(-1, 9, "killed by signal 9", false)));
    assertEquals("start 2", launches.receiveMessage());
    SandboxView v = awaitPhase(kit, Phase.CREATING);
    assertEquals(2, v.incarnation());
    assertEquals(1, v.restartCount());
    assertTrue(v.statusMessage().contains("killed by signal 9"), v.statusMessage());

    parent.tell(new VmSupervisorProtocol.VmStartFailed(2, "agent did not answer"));
    assertEquals("start 3", launches.receiveMessage());
    parent.tell(new VmSupervisorProtocol.VmStartFailed(3, "agent did not answer"));
    v = awaitPhase(kit, Phase.FAILED);
    assertTrue(v.statusMessage().contains("restart budget exhausted"), v.statusMessage());
    assertFalse(v.desiredRunning());
    launches.expectNoMessage(Duration.ofMillis(200));

    // A manual start resets the budget and starts a new incarnation.
    var started = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Start(T, ref));
    assertEquals(4, started.reply().getValue().incarnation());
    assertEquals("start 4", launches.receiveMessage());
  }

  @Test
  void reportsOfAStaleIncarnationAreIgnored() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    parent.tell(new VmSupervisorProtocol.VmExited(1, new VmExit(-1, 9, "killed", false)));
    assertEquals("start 2", launches.receiveMessage());
    ready(2);
    awaitPhase(kit, Phase.RUNNING);
    // Late news from incarnation 1 must not touch incarnation 2.
    parent.tell(new VmSupervisorProtocol.VmExited(1, new VmExit(-1, 9, "late", false)));
    parent.tell(new VmSupervisorProtocol.VmReady(1, handle(1), "6.1", false));
    launches.expectNoMessage(Duration.ofMillis(200));
    SandboxView v = get(kit, T);
    assertEquals(Phase.RUNNING, v.phase());
    assertEquals(2, v.incarnation());
  }

  @Test
  void neverPolicyStopsInsteadOfRestarting() {
    var kit = kit(runtime("host-a", 3));
    running(kit, new SandboxSpec("process", 1, 256, Map.of(), RestartPolicy.NEVER));
    parent.tell(new VmSupervisorProtocol.VmExited(1, new VmExit(3, 0, "exited with 3", false)));
    SandboxView v = awaitPhase(kit, Phase.STOPPED);
    assertEquals("exited with 3", v.statusMessage());
    launches.expectNoMessage(Duration.ofMillis(200));
  }

  @Test
  void aMainProcessGoesWithEveryIncarnationAndItsExitAppliesTheRestartPolicy() {
    var kit = kit(runtime("host-a", 3));
    running(kit, new SandboxSpec("process", 1, 256, Map.of(), RestartPolicy.ON_FAILURE, 0, "", List.of("sh", "-c", "exit 3")),
        "start 1 main=sh -c exit 3");
    // The supervisor reports the main process's status as the VM's, not requested: ON_FAILURE restarts.
    parent.tell(new VmSupervisorProtocol.VmExited(1, new VmExit(3, 0, "main process exited with code 3", false)));
    assertEquals("start 2 main=sh -c exit 3", launches.receiveMessage());
    ready(2);
    awaitPhase(kit, Phase.RUNNING);
    parent.tell(new VmSupervisorProtocol.VmExited(2, new VmExit(0, 0, "main process exited with code 0", false)));
    SandboxView v = awaitPhase(kit, Phase.STOPPED);
    assertEquals("main process exited with code 0", v.statusMessage());
    launches.expectNoMessage(Duration.ofMillis(200));

    // Its log is readable in any phase, by its tenant only.
    var logs = kit.<StatusReply<Object>>runCommand(ref -> new SandboxEntity.ReadLogs(T, -1, false, castRef(ref)));
    assertTrue(logs.reply().isSuccess(), () -> String.valueOf(logs.reply()));
    var other = kit.<StatusReply<Object>>runCommand(ref -> new SandboxEntity.ReadLogs("intruder", -1, false, castRef(ref)));
    assertEquals(SandboxError.Kind.NOT_FOUND, SandboxError.fromReplyText(other.reply().getError().getMessage()).kind());
  }

  @Test
  void aSandboxWithoutAMainProcessHasNoLogsToRead() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    var logs = kit.<StatusReply<Object>>runCommand(ref -> new SandboxEntity.ReadLogs(T, -1, true, castRef(ref)));
    SandboxError e = SandboxError.fromReplyText(logs.reply().getError().getMessage());
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, e.kind());
    assertTrue(e.getMessage().contains("no main process"), e.getMessage());
  }

  @Test
  void stopWaitsForTheVmThenStartMakesANewIncarnation() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    var stopped = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Stop(T, ref));
    assertEquals(Phase.STOPPED, stopped.reply().getValue().phase());
    assertFalse(stopped.reply().getValue().desiredRunning());
    assertInstanceOf(VmSupervisorProtocol.Stop.class, vmCommands.receiveMessage());
    assertNull(((Live) kit.getState()).vm());

    var exec = kit.<StatusReply<Object>>runCommand(ref -> new SandboxEntity.Exec(T,
        new ExecSpec(List.of("true"), Map.of(), ""), castRef(ref)));
    assertTrue(exec.reply().getError().getMessage().contains("start it first"));
    var pause = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Pause(T, ref));
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, SandboxError.fromReplyText(pause.reply().getError().getMessage()).kind());

    var started = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Start(T, ref));
    assertEquals(2, started.reply().getValue().incarnation());
    assertEquals("start 2", launches.receiveMessage());
  }

  @Test
  void resizeChangesTheVmThenRecordsItSoTheNextIncarnationStartsWithIt() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    var resized = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resize(T, 2, 512, ref));
    // the VM was changed first, then the fact recorded
    var asked = assertInstanceOf(VmSupervisorProtocol.Resize.class, vmCommands.receiveMessage());
    assertEquals(List.of(2, 512), List.of(asked.vcpus(), asked.memoryMiB()));
    assertEquals(List.of(new SandboxEntity.Resized(2, 512, 1, 256, ((SandboxEntity.Resized) resized.events().get(0)).at())),
        resized.events());
    SandboxView v = resized.reply().getValue();
    assertEquals(List.of(2, 512, 1), List.of(v.spec().vcpus(), v.spec().memoryMiB(), (int) v.incarnation()), "same incarnation, new resources");
    assertEquals(Phase.RUNNING, v.phase());
    assertEquals("resized", SandboxHistory.describe(9, resized.events().get(0)).kind());

    // the same resources again: nothing to do, nothing recorded, the VM not asked
    var same = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resize(T, 2, 512, ref));
    assertTrue(same.events().isEmpty());
    vmCommands.expectNoMessage(Duration.ofMillis(200));

    // a node crash: the journal has it, and the next incarnation starts with the new resources
    kit.restart();
    assertEquals(512, get(kit, T).spec().memoryMiB());
    launches.receiveMessage(); // re-attached (the test does not answer)
    kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Stop(T, ref));
    kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Start(T, ref));
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> lastStarted != null && lastStarted.incarnation() == 2);
    assertEquals(List.of(2, 512), List.of(lastStarted.vcpus(), lastStarted.memoryMiB()));
  }

  @Test
  void aResizeTheDriverRefusesOrTheSandboxsPhaseForbidsChangesNothing() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    resizeAnswer = new SandboxError(SandboxError.Kind.FAILED_PRECONDITION,
        "cannot resize: the sandbox uses 180 MiB (page cache not counted), more than 128 MiB").reply();
    var refused = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resize(T, 1, 128, ref));
    assertInstanceOf(VmSupervisorProtocol.Resize.class, vmCommands.receiveMessage());
    SandboxError e = SandboxError.fromReplyText(refused.reply().getError().getMessage());
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, e.kind());
    assertTrue(e.getMessage().contains("uses 180 MiB"), e.getMessage());
    assertTrue(refused.events().isEmpty());
    assertEquals(256, get(kit, T).spec().memoryMiB());

    // another tenant does not see it
    var foreign = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resize("other", 2, 512, ref));
    assertEquals(SandboxError.Kind.NOT_FOUND, SandboxError.fromReplyText(foreign.reply().getError().getMessage()).kind());

    // a stopped sandbox has no VM to change, and nothing is kept for its next start
    kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Stop(T, ref));
    vmCommands.receiveMessage(); // the Stop
    resizeAnswer = StatusReply.ack();
    var stopped = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resize(T, 2, 512, ref));
    SandboxError p = SandboxError.fromReplyText(stopped.reply().getError().getMessage());
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, p.kind());
    assertTrue(p.getMessage().contains("is STOPPED") && p.getMessage().contains("never at a later start"), p.getMessage());
    assertTrue(stopped.events().isEmpty());
    vmCommands.expectNoMessage(Duration.ofMillis(200));
  }

  /** The tenant ledger's side of a resize (SandboxControl charges it before asking the sandbox): here for this class's testkit. */
  @Test
  void theTenantLedgerChargesAResizesGrowthWithinTheQuotaAlwaysTakesAShrinkAndRefusesAStaleCharge() {
    var kit = EventSourcedBehaviorTestKit.<TenantEntity.Command, TenantEntity.Event, TenantEntity.State>create(testKit.system(),
        TenantEntity.create("t-resize", new TenantEntity.Quota(10, 4, 1024)));
    reserveInLedger(kit, "sb-a", 1, 512);
    reserveInLedger(kit, "sb-b", 1, 256);

    // grows within the quota: charged
    var ok = ledgerResize(kit, "sb-a", 1, 512, 1, 768);
    assertTrue(ok.reply().isSuccess());
    assertEquals(768, kit.getState().reservations().get("sb-a").memoryMiB());
    assertEquals(Map.of(), kit.getState().reservations().get("sb-a").labels());

    // past the memory quota (768 + 256 = 1024 in use; 1025 would not fit): refused, nothing recorded
    var over = ledgerResize(kit, "sb-a", 1, 768, 1, 769);
    assertEquals("RESOURCE_EXHAUSTED: tenant 't-resize' would use 1025 MiB of memory, over its quota of 1024 MiB (1024 MiB in use)",
        over.reply().getError().getMessage());
    assertTrue(over.events().isEmpty());
    // past the vCPU quota
    var cpus = ledgerResize(kit, "sb-a", 1, 768, 4, 768);
    assertTrue(cpus.reply().getError().getMessage().startsWith("RESOURCE_EXHAUSTED: tenant 't-resize' would use 5 vCPUs"),
        cpus.reply().getError().getMessage());

    // from a stale view (another resize got there first): refused
    var stale = ledgerResize(kit, "sb-a", 1, 512, 1, 600);
    assertTrue(stale.reply().getError().getMessage().startsWith("FAILED_PRECONDITION: sandbox sb-a was resized meanwhile"),
        stale.reply().getError().getMessage());

    // shrinking always takes, even with the tenant at its quota
    var back = ledgerResize(kit, "sb-a", 1, 768, 1, 256);
    assertTrue(back.reply().isSuccess());
    assertEquals(List.of(1, 256), List.of(kit.getState().reservations().get("sb-a").vcpus(),
        kit.getState().reservations().get("sb-a").memoryMiB()));
    // an unknown sandbox
    assertTrue(ledgerResize(kit, "sb-x", 1, 1, 1, 2).reply().getError().getMessage().startsWith("NOT_FOUND"));
  }

  static void reserveInLedger(EventSourcedBehaviorTestKit<TenantEntity.Command, TenantEntity.Event, TenantEntity.State> kit,
      String id, int vcpus, int memory) {
    var r = kit.<StatusReply<Boolean>>runCommand(ref -> new TenantEntity.Reserve(
        new TenantEntity.Reservation(id, vcpus, memory, Map.of(), Instant.now()), ref));
    assertTrue(r.reply().getValue());
  }

  static EventSourcedBehaviorTestKit.CommandResultWithReply<TenantEntity.Command, TenantEntity.Event, TenantEntity.State,
      StatusReply<Done>> ledgerResize(EventSourcedBehaviorTestKit<TenantEntity.Command, TenantEntity.Event, TenantEntity.State> kit,
          String id, int fromV, int fromM, int toV, int toM) {
    return kit.runCommand(ref -> new TenantEntity.Resize(id, fromV, fromM, toV, toM, ref));
  }

  @Test
  void deleteLeavesATombstoneThatAnswersNotFound() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    var deleted = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Delete(T, ref));
    assertEquals(Phase.DELETED, deleted.reply().getValue().phase());
    var r = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(T, ref)).reply();
    assertEquals(SandboxError.Kind.NOT_FOUND, SandboxError.fromReplyText(r.getError().getMessage()).kind());
    var recreate = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create(T, SPEC, "req-1", ref));
    assertEquals(SandboxError.Kind.ALREADY_EXISTS, SandboxError.fromReplyText(recreate.reply().getError().getMessage()).kind());
    assertTrue(recreate.hasNoEvents());
    // Another tenant cannot even learn that the id was used.
    var foreign = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create("other", SPEC, "req-1", ref));
    assertEquals(SandboxError.Kind.NOT_FOUND, SandboxError.fromReplyText(foreign.reply().getError().getMessage()).kind());
    // Replay keeps it deleted.
    kit.restart();
    assertEquals(Phase.DELETED, ((Live) kit.getState()).phase());
  }

  @Test
  void afterRestartOnTheSameHostTheVmIsReattachedWithoutANewIncarnation() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    restartedAndReattached(kit, "adopt 1");
    SandboxView v = get(kit, T);
    assertEquals(Phase.RUNNING, v.phase());
    assertEquals(1, v.incarnation());
  }

  @Test
  void afterAMoveToAnotherHostANewIncarnationStartsAtOnceWhateverItsRestartPolicy() {
    var kit = kit(runtime("host-a", 3));
    // A lost host is not the workload's exit: even a NEVER sandbox that should run comes back,
    // and the move does not count against its crash-loop budget.
    running(kit, new SandboxSpec("process", 1, 256, Map.of(), RestartPolicy.NEVER));
    // Same journal, another host: the old VM cannot be re-attached from here. (A new testkit
    // starts from a clean journal, so the first one's events are handed over explicitly.)
    String pid = "Sandbox|" + ID;
    var journal = PersistenceTestKit.create(testKit.system());
    List<Object> history = journal.persistedInStorage(pid);
    var moved = EventSourcedBehaviorTestKit.<Command, Event, State>create(testKit.system(),
        SandboxEntity.create(ID, runtime("host-b", 3), null));
    // Let its first instance finish recovering the (cleared) journal before the history goes in,
    // so only the restarted instance sees it.
    moved.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(T, ref));
    journal.persistForRecovery(pid, history);
    moved.restart();
    assertEquals("start 2", launches.receiveMessage());
    var v = moved.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(T, ref)).reply().getValue();
    assertEquals(2, v.incarnation());
    assertEquals(Phase.CREATING, v.phase());
    assertEquals(0, v.restartCount(), "a move is not a restart of a crashing workload");
    assertTrue(v.statusMessage().contains("host-a"), v.statusMessage());
  }

  @Test
  void aMoveAwayFromANodeThatIsStillAMemberStartsTheNewVmOnlyOnceTheOldOnesLeaseIsOver() {
    movedFromALiveMember(false);
  }

  @Test
  void aPausedSandboxMovedFromANodeThatIsStillAMemberStartsPausedOnceTheOldVmsLeaseIsOver() {
    movedFromALiveMember(true);
  }

  /**
   * The VM ran on a node that is a member of the cluster now (this test's own node: as a node
   * whose JVM restarted at once, while its shard went elsewhere all the same).
   */
  void movedFromALiveMember(boolean paused) {
    String live = dev.flotilla.cluster.NodeAddress.hostPort(
        org.apache.pekko.cluster.typed.Cluster.get(testKit.system()).selfMember().address());
    Duration lease = Duration.ofMillis(1500);
    var kit = kit(runtime("host-a", 3, live, lease));
    if (paused) runningThenPaused(kit);
    else running(kit);
    String pid = "Sandbox|" + ID;
    var journal = PersistenceTestKit.create(testKit.system());
    List<Object> history = journal.persistedInStorage(pid);
    var moved = EventSourcedBehaviorTestKit.<Command, Event, State>create(testKit.system(),
        SandboxEntity.create(ID, runtime("host-b", 3, "127.0.0.1:1", lease), null));
    moved.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(T, ref));
    journal.persistForRecovery(pid, history);
    moved.restart();
    // the next incarnation is recorded at once (the old node's reaper stops the old VM on it) ...
    var v = moved.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(T, ref)).reply().getValue();
    assertEquals(2, v.incarnation());
    assertEquals(paused ? Phase.PAUSED : Phase.CREATING, v.phase());
    // ... and its VM starts once the old one's lease (and a second more) is over, not at once
    launches.expectNoMessage(lease);
    assertEquals(paused ? "start 2 paused" : "start 2", launches.receiveMessage(Duration.ofSeconds(10)));
  }

  @Test
  void aPausedSandboxWhoseHostIsLostComesBackPausedAsANewIncarnation() {
    var kit = kit(runtime("host-a", 3));
    runningThenPaused(kit);
    // Its node dies; the entity recovers on another host (as in the test above).
    String pid = "Sandbox|" + ID;
    var journal = PersistenceTestKit.create(testKit.system());
    List<Object> history = journal.persistedInStorage(pid);
    var moved = EventSourcedBehaviorTestKit.<Command, Event, State>create(testKit.system(),
        SandboxEntity.create(ID, runtime("host-b", 3), null));
    moved.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(T, ref));
    journal.persistForRecovery(pid, history);
    moved.restart();
    // the new VM is started paused: its supervisor freezes it before it reports it ready
    assertEquals("start 2 paused", launches.receiveMessage());
    var starting = moved.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(T, ref)).reply().getValue();
    assertEquals(2, starting.incarnation());
    assertEquals(Phase.PAUSED, starting.phase(), "the move does not resume it");
    var exec = moved.<StatusReply<Object>>runCommand(ref -> new SandboxEntity.Exec(T,
        new ExecSpec(List.of("true"), Map.of(), ""), castRef(ref)));
    assertTrue(exec.reply().getError().getMessage().contains("resume it first"), exec.reply().getError().getMessage());

    ready(2);
    // the sandbox stays PAUSED, and the entity asks nothing more of the VM (one account of its state)
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20))
        .until(() -> ((Live) moved.getState()).vm() != null);
    SandboxView after = moved.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(T, ref)).reply().getValue();
    assertEquals(Phase.PAUSED, after.phase());
    assertEquals(2, after.incarnation());
    vmCommands.expectNoMessage(Duration.ofMillis(200));

    var resumed = moved.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resume(T, ref));
    assertEquals(Phase.RUNNING, resumed.reply().getValue().phase());
    assertInstanceOf(VmSupervisorProtocol.Resume.class, vmCommands.receiveMessage());
    // and replay rebuilds it
    State before = moved.getState();
    moved.restart();
    assertEquals(before, moved.getState());
  }

  @Test
  void aPausedSandboxIsReattachedPausedAfterItsNodeRestartsAndResumes() {
    var kit = kit(runtime("host-a", 3));
    runningThenPaused(kit);
    // the supervisor is told the VM is frozen: it adopts it as such instead of handshaking an agent that cannot answer
    restartedAndReattached(kit, "adopt 1 paused");
    assertEquals(Phase.PAUSED, get(kit, T).phase());
    assertEquals(1, get(kit, T).incarnation());
    vmCommands.expectNoMessage(Duration.ofMillis(200));

    var resumed = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resume(T, ref));
    assertEquals(Phase.RUNNING, resumed.reply().getValue().phase());
    assertInstanceOf(VmSupervisorProtocol.Resume.class, vmCommands.receiveMessage());
  }

  @Test
  void aSupervisorStoppedByTheRestartAfterAFailedPersistIsReplacedAndTheDeleteCompletes() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    // The journal refuses the delete's first event: the entity restarts, and the restart stops its
    // VM supervisor (the VM itself stays, as when a node's journal is cut).
    PersistenceTestKit.create(testKit.system()).failNextPersisted("Sandbox|" + ID);
    TestProbe<StatusReply<SandboxView>> firstDelete = testKit.createTestProbe();
    kit.runCommand(new SandboxEntity.Delete(T, firstDelete.ref()));
    firstDelete.expectNoMessage(Duration.ofMillis(300));
    // Recovered, the entity re-attaches the VM instead of remembering the stopped supervisor...
    assertEquals("adopt 1", launches.receiveMessage());
    ready(1);
    awaitPhase(kit, Phase.RUNNING);
    // ...so the retried delete reaches a live supervisor and completes.
    var deleted = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Delete(T, ref));
    assertEquals(Phase.DELETED, deleted.reply().getValue().phase());
    assertInstanceOf(VmSupervisorProtocol.Stop.class, vmCommands.receiveMessage());
  }

  SandboxHistory history() {
    return new SandboxHistory(testKit.system(), org.apache.pekko.persistence.query.PersistenceQuery.get(testKit.system())
        .getReadJournalFor(org.apache.pekko.persistence.query.javadsl.CurrentEventsByPersistenceIdQuery.class, org.apache.pekko.persistence.testkit.query.javadsl.PersistenceTestKitReadJournal.Identifier()));
  }

  @Test
  void theHistoryIsReadBackFromTheJournalOldestFirstPagedAndForItsTenantOnly() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Pause(T, ref));
    kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resume(T, ref));
    var deleted = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Delete(T, ref));
    assertEquals(Phase.DELETED, deleted.reply().getValue().phase());

    SandboxHistory h = history();
    var page = h.read(T, ID, 1, 0).toCompletableFuture().join();
    assertEquals(List.of("created", "vm-starting", "vm-started", "paused", "resumed", "delete-requested", "vm-exited",
        "deleted"), page.entries().stream().map(SandboxHistory.Entry::kind).toList());
    assertEquals(0, page.nextSequence(), "one page holds it all");
    var started = page.entries().get(2);
    assertEquals(1, started.incarnation());
    assertEquals("127.0.0.1:25520", started.node());
    assertEquals("VM started on node 127.0.0.1:25520 (host host-a) as incarnation 1", started.description());
    assertEquals("incarnation 1 exited with status 0, as requested: stopped", page.entries().get(6).description());

    // paged: three at a time, the token is where the next page starts
    List<String> kinds = new java.util.ArrayList<>();
    long from = 1;
    int pages = 0;
    do {
      var p = h.read(T, ID, from, 3).toCompletableFuture().join();
      p.entries().forEach(e -> kinds.add(e.kind()));
      from = p.nextSequence();
      pages++;
    } while (from != 0);
    assertEquals(3, pages);
    assertEquals(page.entries().stream().map(SandboxHistory.Entry::kind).toList(), kinds);

    // another tenant, and an id that never was: NOT_FOUND, as for every other call
    assertEquals(SandboxError.Kind.NOT_FOUND, failure(() -> h.read("other", ID, 1, 0).toCompletableFuture().join()));
    assertEquals(SandboxError.Kind.NOT_FOUND,
        failure(() -> h.read(T, SandboxIds.random(), 1, 0).toCompletableFuture().join()));
    assertEquals(SandboxError.Kind.INVALID_ARGUMENT,
        failure(() -> h.read(T, ID, 0, 0).toCompletableFuture().join()));
    assertEquals(SandboxError.Kind.INVALID_ARGUMENT,
        failure(() -> h.read(T, ID, 1, SandboxHistory.MAX_PAGE + 1).toCompletableFuture().join()));
  }

  private static SandboxError.Kind failure(Runnable r) {
    try {
      r.run();
    } catch (java.util.concurrent.CompletionException e) {
      return SandboxControl.unwrap(e).kind();
    }
    throw new AssertionError("no failure");
  }

  static SandboxSpec withLifetime(Duration timeout, Lifetime.TimeoutAction onTimeout, Duration idle, Lifetime.IdleAction onIdle) {
    return SPEC.withLifetime(new Lifetime(timeout, onTimeout, idle, onIdle));
  }

  private SandboxView getOrNull(EventSourcedBehaviorTestKit<Command, Event, State> kit) {
    var r = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Get(T, ref)).reply();
    return r.isSuccess() ? r.getValue() : null;
  }

  @Test
  void aTimeoutDeletesTheSandboxWhenItRunsOutAndGivesItsQuotaBack() {
    var released = new java.util.concurrent.CopyOnWriteArrayList<String>();
    var kit = EventSourcedBehaviorTestKit.<Command, Event, State>create(testKit.system(),
        SandboxEntity.create(ID, withRelease(runtime("host-a", 3), released), null));
    SandboxView v = running(kit, withLifetime(Duration.ofSeconds(2), Lifetime.TimeoutAction.DELETE, Duration.ZERO, Lifetime.IdleAction.STOP));
    assertNotNull(v.expiresAt());
    assertEquals(v.createdAt().plusSeconds(2), v.expiresAt(), "the timeout counts from the create");
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> getOrNull(kit) == null);
    assertInstanceOf(VmSupervisorProtocol.Stop.class, vmCommands.receiveMessage(), "its VM was stopped");
    assertEquals(List.of(T + "/" + ID), released);
    List<Object> journal = PersistenceTestKit.create(testKit.system()).persistedInStorage("Sandbox|" + ID);
    assertTrue(journal.stream().anyMatch(e -> e instanceof SandboxEntity.TimedOut t && !t.idle()), journal.toString());
    assertEquals(SandboxEntity.Deleted.class, journal.get(journal.size() - 1).getClass());
  }

  private SandboxRuntime withRelease(SandboxRuntime r, List<String> released) {
    return new SandboxRuntime(r.drivers(), r.vmRoot(), r.nodeAddress(), r.hostId(), r.vmLauncher(), r.restart(), r.vmCallTimeout(),
        r.stopGrace(), r.pidsLimit(), r.events(), r.handOffStopsVm(), r.mainLogs(), r.blockingDispatcher(), Duration.ofSeconds(2),
        (tenant, id) -> released.add(tenant + "/" + id));
  }

  @Test
  void setTimeoutMovesTheEndAndTheTimerSurvivesARestartOfTheEntity() {
    var kit = kit(runtime("host-a", 3));
    running(kit, withLifetime(Duration.ofHours(1), Lifetime.TimeoutAction.STOP, Duration.ZERO, Lifetime.IdleAction.STOP));
    var set = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.SetTimeout(T, Duration.ofSeconds(3), ref));
    Instant expires = set.reply().getValue().expiresAt();
    assertTrue(Duration.between(Instant.now(), expires).toSeconds() <= 3, "now 3 s from now: " + expires);
    // A node crash: the entity recovers from the journal, and the end is still 3 s from the SetTimeout.
    kit.restart();
    assertEquals(expires, get(kit, T).expiresAt());
    SandboxView stopped = awaitPhase(kit, Phase.STOPPED);
    assertNull(stopped.expiresAt(), "the timeout is spent: a start runs it again without one");
    assertTrue(stopped.statusMessage().contains("stopped") || stopped.statusMessage().contains("timeout"), stopped.statusMessage());
    // SetTimeout 0 removes it
    var removed = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.SetTimeout(T, Duration.ZERO, ref));
    assertNull(removed.reply().getValue().expiresAt());
  }

  @Test
  void anIdleSandboxIsStoppedButNotWhileACallIsUnderWay() {
    var kit = kit(runtime("host-a", 3));
    running(kit, withLifetime(Duration.ZERO, Lifetime.TimeoutAction.DELETE, Duration.ofSeconds(1), Lifetime.IdleAction.STOP));
    callsInFlight.set(1); // a long exec: not idle
    vmCommands.expectNoMessage(Duration.ofMillis(2500));
    assertEquals(Phase.RUNNING, get(kit, T).phase());
    callsInFlight.set(0);
    assertInstanceOf(VmSupervisorProtocol.Stop.class, vmCommands.receiveMessage(), "idle: stopped");
    SandboxView stopped = awaitPhase(kit, Phase.STOPPED);
    assertTrue(stopped.statusMessage().contains("idle") || stopped.statusMessage().contains("stopped"), stopped.statusMessage());
    List<Object> journal = PersistenceTestKit.create(testKit.system()).persistedInStorage("Sandbox|" + ID);
    assertTrue(journal.stream().anyMatch(e -> e instanceof SandboxEntity.TimedOut t && t.idle()), journal.toString());
  }

  @Test
  void anIdleSandboxIsPausedWhenItsSpecSaysSo() {
    var kit = kit(runtime("host-a", 3));
    running(kit, withLifetime(Duration.ZERO, Lifetime.TimeoutAction.DELETE, Duration.ofSeconds(1), Lifetime.IdleAction.PAUSE));
    assertInstanceOf(VmSupervisorProtocol.Pause.class, vmCommands.receiveMessage());
    awaitPhase(kit, Phase.PAUSED);
  }

  @Test
  void aCallOnACreatingSandboxWaitsForItsVmOrHearsWhyItDidNotStart() {
    var kit = kit(runtime("host-a", 0));
    var created = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create(T, SPEC, "req-1", ref));
    assertEquals(Phase.CREATING, created.reply().getValue().phase());
    assertEquals("start 1", launches.receiveMessage());
    TestProbe<StatusReply<Object>> exec = testKit.createTestProbe();
    kit.runCommand(new SandboxEntity.Exec(T, new ExecSpec(List.of("echo", "hi"), Map.of(), ""), castRef(exec.ref())));
    exec.expectNoMessage(Duration.ofMillis(300));
    ready(1);
    // the exec reaches the VM once it runs, and its reply comes from there (the stand-in keeps it)
    var forwarded = vmCommands.expectMessageClass(VmSupervisorProtocol.Exec.class);
    assertEquals(List.of("echo", "hi"), forwarded.spec().argv());

    // A sandbox whose VM never starts: a waiting call hears why, at once.
    ID = SandboxIds.random();
    var failing = kit(runtime("host-a", 0));
    failing.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create(T, SPEC, "req-2", ref));
    assertEquals("start 1", launches.receiveMessage());
    TestProbe<StatusReply<Object>> waiting = testKit.createTestProbe();
    failing.runCommand(new SandboxEntity.Exec(T, new ExecSpec(List.of("true"), Map.of(), ""), castRef(waiting.ref())));
    parent.tell(new VmSupervisorProtocol.VmStartFailed(1, "no such image"));
    StatusReply<Object> refused = waiting.receiveMessage();
    assertTrue(refused.isError());
    assertTrue(refused.getError().getMessage().contains("FAILED") && refused.getError().getMessage().contains("no such image"),
        refused.getError().getMessage());
  }

  @Test
  void aPortForwardWaitsForACreatingSandboxGoesToItsVmAndIsTheTenantsOnly() {
    var kit = kit(runtime("host-a", 0));
    kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create(T, SPEC, "req-1", ref));
    assertEquals("start 1", launches.receiveMessage());
    var in = org.apache.pekko.stream.javadsl.Source.<org.apache.pekko.util.ByteString>empty()
        .runWith(org.apache.pekko.stream.javadsl.StreamRefs.sourceRef(), testKit.system());
    var other = kit.<StatusReply<Object>>runCommand(ref -> new SandboxEntity.PortForward("other", 8080, in, castRef(ref))).reply();
    assertEquals(SandboxError.Kind.NOT_FOUND, SandboxError.fromReplyText(other.getError().getMessage()).kind());
    TestProbe<StatusReply<Object>> forward = testKit.createTestProbe();
    kit.runCommand(new SandboxEntity.PortForward(T, 8080, in, castRef(forward.ref())));
    forward.expectNoMessage(Duration.ofMillis(300));
    ready(1);
    var forwarded = vmCommands.expectMessageClass(VmSupervisorProtocol.PortForward.class);
    assertEquals(8080, forwarded.port());
    assertEquals(in, forwarded.in());
  }

  @Test
  void replayRebuildsTheSameState() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Pause(T, ref));
    State before = kit.getState();
    kit.restart();
    assertEquals(before, kit.getState());
  }

  // ------------------------------------------------------------------------------ suspend

  /** Runs, then suspends through the (stand-in) supervisor; returns the snapshot's directory. */
  Path runningThenSuspended(EventSourcedBehaviorTestKit<Command, Event, State> kit, SandboxSpec spec) {
    running(kit, spec);
    var suspended = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Suspend(T, ref));
    var asked = vmCommands.expectMessageClass(VmSupervisorProtocol.Suspend.class);
    assertEquals(tmp.resolve("snapshots").resolve(ID + "-1").toAbsolutePath(), asked.dir(), "the store's directory of incarnation 1");
    assertEquals(Phase.SUSPENDED, suspended.reply().getValue().phase(), "the reply comes once it is suspended");
    SandboxView v = get(kit, T);
    assertEquals(Phase.SUSPENDED, v.phase());
    assertEquals("", v.node(), "no VM runs anywhere");
    assertEquals(asked.dir().toString(), ((Live) kit.getState()).snapshot());
    return asked.dir();
  }

  @Test
  void aSuspendedSandboxResumesFromItsSnapshotWhichIsThenDiscarded() {
    var kit = kit(runtime("host-a", 3));
    Path dir = runningThenSuspended(kit, SPEC);
    assertTrue(get(kit, T).statusMessage().contains("memory and disk are saved"), get(kit, T).statusMessage());
    List<Object> journal = PersistenceTestKit.create(testKit.system()).persistedInStorage("Sandbox|" + ID);
    var saved = (SandboxEntity.Suspended) journal.get(journal.size() - 1);
    assertEquals(1, saved.incarnation());
    assertTrue(saved.memory());
    // suspended again: nothing to do
    var again = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Suspend(T, ref));
    assertEquals(Phase.SUSPENDED, again.reply().getValue().phase());
    assertTrue(again.hasNoEvents());
    // a restart of the entity (its node) keeps it suspended and launches nothing
    kit.restart();
    launches.expectNoMessage(Duration.ofMillis(300));
    assertEquals(Phase.SUSPENDED, get(kit, T).phase());

    var resumed = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resume(T, ref));
    assertEquals(Phase.CREATING, resumed.reply().getValue().phase());
    assertEquals(2, resumed.reply().getValue().incarnation());
    assertEquals("start 2", launches.receiveMessage());
    assertEquals(dir.toString(), lastStarted.options().get(VmSpec.RESTORE_FROM), "the VM is restored from the snapshot");
    assertTrue(java.nio.file.Files.isDirectory(dir), "kept until the restored VM runs");
    ready(2);
    awaitPhase(kit, Phase.RUNNING);
    assertNull(((Live) kit.getState()).snapshot());
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> !java.nio.file.Files.exists(dir));
  }

  @Test
  void aCallToASuspendedSandboxResumesItAndRunsOnceItIsBack() {
    var kit = kit(runtime("host-a", 3));
    Path dir = runningThenSuspended(kit, SPEC);
    TestProbe<StatusReply<Object>> exec = testKit.createTestProbe();
    kit.runCommand(new SandboxEntity.Exec(T, new ExecSpec(List.of("echo", "hi"), Map.of(), ""), castRef(exec.ref())));
    assertEquals("start 2", launches.receiveMessage());
    assertEquals(dir.toString(), lastStarted.options().get(VmSpec.RESTORE_FROM));
    exec.expectNoMessage(Duration.ofMillis(200));
    ready(2);
    var forwarded = vmCommands.expectMessageClass(VmSupervisorProtocol.Exec.class);
    assertEquals(List.of("echo", "hi"), forwarded.spec().argv());
    assertEquals(Phase.RUNNING, get(kit, T).phase());
  }

  @Test
  void stoppingOrDeletingASuspendedSandboxDiscardsItsSnapshotAndAStartBootsAfresh() {
    var kit = kit(runtime("host-a", 3));
    Path dir = runningThenSuspended(kit, SPEC);
    var stopped = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Stop(T, ref));
    assertEquals(Phase.STOPPED, stopped.reply().getValue().phase());
    assertTrue(stopped.reply().getValue().statusMessage().contains("snapshot was discarded"));
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> !java.nio.file.Files.exists(dir));
    kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Start(T, ref));
    assertEquals("start 2", launches.receiveMessage());
    assertNull(lastStarted.options().get(VmSpec.RESTORE_FROM), "nothing to restore");
    ready(2);
    awaitPhase(kit, Phase.RUNNING);

    var suspended = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Suspend(T, ref));
    Path dir2 = vmCommands.expectMessageClass(VmSupervisorProtocol.Suspend.class).dir();
    assertEquals(ID + "-2", dir2.getFileName().toString());
    awaitPhase(kit, Phase.SUSPENDED);
    var deleted = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Delete(T, ref));
    assertEquals(Phase.DELETED, deleted.reply().getValue().phase());
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> !java.nio.file.Files.exists(dir2));
  }

  @Test
  void aRefusedSuspendLeavesTheSandboxRunningAndSaysWhy() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    suspendAnswer = new SandboxError(SandboxError.Kind.FAILED_PRECONDITION, "cannot suspend: this driver cannot").reply();
    TestProbe<StatusReply<SandboxView>> caller = testKit.createTestProbe();
    kit.runCommand(new SandboxEntity.Suspend(T, caller.ref()));
    var reply = caller.receiveMessage();
    assertTrue(reply.isError());
    SandboxError e = SandboxError.fromReplyText(reply.getError().getMessage());
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, e.kind());
    assertTrue(e.getMessage().contains("this driver cannot"), e.getMessage());
    assertEquals(Phase.RUNNING, get(kit, T).phase());
    // a paused sandbox is told to resume first, without asking its VM
    kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Pause(T, ref));
    vmCommands.expectMessageClass(VmSupervisorProtocol.Suspend.class);
    vmCommands.expectMessageClass(VmSupervisorProtocol.Pause.class);
    var paused = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Suspend(T, ref));
    assertTrue(paused.reply().getError().getMessage().contains("resume it first"), paused.reply().getError().getMessage());
    vmCommands.expectNoMessage(Duration.ofMillis(100));
  }

  @Test
  void anIdleSandboxIsSuspendedWhenItsSpecSaysSo() {
    var kit = kit(runtime("host-a", 3));
    suspendKeepsMemory = false; // as the process driver: the disk only
    running(kit, withLifetime(Duration.ZERO, Lifetime.TimeoutAction.DELETE, Duration.ofSeconds(1), Lifetime.IdleAction.SUSPEND));
    vmCommands.expectMessageClass(VmSupervisorProtocol.Suspend.class);
    SandboxView v = awaitPhase(kit, Phase.SUSPENDED);
    assertTrue(v.statusMessage().contains("processes and memory are not"), v.statusMessage());
  }

  @Test
  void aSnapshotThatIsNotOnThisNodeBootsAfreshAndSaysSo() {
    var kit = kit(runtime("host-a", 3));
    Path dir = runningThenSuspended(kit, SPEC);
    // its node-local store went with its node: here there is no such directory
    deleteTree(dir);
    var resumed = kit.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Resume(T, ref));
    assertTrue(resumed.reply().getValue().statusMessage().contains("boots afresh"), resumed.reply().getValue().statusMessage());
    assertEquals("start 2", launches.receiveMessage());
    assertNull(lastStarted.options().get(VmSpec.RESTORE_FROM));
    ready(2);
    awaitPhase(kit, Phase.RUNNING);
  }

  static void deleteTree(Path p) {
    try (var walk = java.nio.file.Files.walk(p)) {
      for (Path q : walk.sorted(java.util.Comparator.reverseOrder()).toList()) java.nio.file.Files.delete(q);
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  @Test
  void aForkSavesTheSourceWhichRunsOnAndTheNewSandboxStartsFromTheSnapshot() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    String source = ID;
    String forkId = SandboxIds.random();
    var forked = kit.<StatusReply<String>>runCommand(ref -> new SandboxEntity.Fork(T, forkId, ref));
    var asked = vmCommands.expectMessageClass(VmSupervisorProtocol.SnapshotVm.class);
    assertEquals(asked.dir().toString(), forked.reply().getValue());
    assertTrue(asked.dir().getFileName().toString().startsWith(forkId + "-fork-"), asked.dir().toString());
    assertTrue(forked.hasNoEvents(), "nothing of the source changes");
    assertEquals(List.of(Phase.RUNNING, 1L), List.of(get(kit, T).phase(), get(kit, T).incarnation()));
    // another tenant cannot fork it
    var foreign = kit.<StatusReply<String>>runCommand(ref -> new SandboxEntity.Fork("other", forkId, ref));
    assertEquals(SandboxError.Kind.NOT_FOUND, SandboxError.fromReplyText(foreign.reply().getError().getMessage()).kind());

    // the fork: a create that starts from the snapshot, which is removed once its VM runs
    ID = forkId;
    var fork = kit(runtime("host-a", 3));
    var created = fork.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create(T, SPEC, "", asked.dir().toString(), ref));
    assertEquals(Phase.CREATING, created.reply().getValue().phase());
    assertEquals("start 1", launches.receiveMessage());
    assertEquals(asked.dir().toString(), lastStarted.options().get(VmSpec.RESTORE_FROM));
    assertEquals(forkId, lastStarted.sandboxId());
    ready(1);
    awaitPhase(fork, Phase.RUNNING);
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> !java.nio.file.Files.exists(asked.dir()));
    // a retried fork's create (same request id, so the same sandbox) removes the snapshot it came with
    Path spare = tmp.resolve("snapshots").resolve(forkId + "-fork-spare");
    createDirs(spare);
    fork.<StatusReply<SandboxView>>runCommand(ref -> new SandboxEntity.Create(T, SPEC, "", spare.toString(), ref));
    org.awaitility.Awaitility.await().atMost(Duration.ofSeconds(20)).until(() -> !java.nio.file.Files.exists(spare));
    ID = source;
  }

  @Test
  void onlyARunningSandboxIsForked() {
    var kit = kit(runtime("host-a", 3));
    runningThenPaused(kit);
    var r = kit.<StatusReply<String>>runCommand(ref -> new SandboxEntity.Fork(T, SandboxIds.random(), ref));
    SandboxError e = SandboxError.fromReplyText(r.reply().getError().getMessage());
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, e.kind());
    assertTrue(e.getMessage().contains("only a RUNNING sandbox can be forked; resume it first"), e.getMessage());
    vmCommands.expectNoMessage(Duration.ofMillis(100));
  }

  static void createDirs(Path p) {
    try {
      java.nio.file.Files.createDirectories(p);
    } catch (java.io.IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  @Test
  void aSupervisorThatDiesDuringASuspendLeavesNoCallerWaitingAndTheSandboxRestarts() {
    var kit = kit(runtime("host-a", 3));
    running(kit);
    suspendAnswer = null; // crashes
    TestProbe<StatusReply<SandboxView>> caller = testKit.createTestProbe();
    kit.runCommand(new SandboxEntity.Suspend(T, caller.ref()));
    var reply = caller.receiveMessage(Duration.ofSeconds(10));
    SandboxError e = SandboxError.fromReplyText(reply.getError().getMessage());
    assertEquals(SandboxError.Kind.UNAVAILABLE, e.kind());
    assertTrue(e.getMessage().contains("supervisor failed"), e.getMessage());
    assertEquals("start 2", launches.receiveMessage(), "its VM is as good as lost: the restart policy applies");
    suspendAnswer = StatusReply.ack();
    ready(2);
    assertEquals(2, awaitPhase(kit, Phase.RUNNING).incarnation());
  }
}
