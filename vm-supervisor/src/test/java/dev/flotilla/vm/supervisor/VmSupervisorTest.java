package dev.flotilla.vm.supervisor;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.sandbox.protocol.ExecEvent;
import dev.flotilla.sandbox.protocol.ExecExited;
import dev.flotilla.sandbox.protocol.ExecOutput;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.vm.AgentSecrets;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.process.ProcessHypervisor;
import dev.flotilla.vm.process.TestSandboxes;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.AgentLost;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Command;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Exec;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.GetStats;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.GuestStats;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Pause;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.ReadFile;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Report;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Resume;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmExited;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmReady;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmStartFailed;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.WriteFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.Done;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.javadsl.StreamRefs;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The VmSupervisor actor over the real process driver and agent. */
class VmSupervisorTest {
  private static final Duration T = Duration.ofSeconds(30);
  private static ActorTestKit kit;
  private TestSandboxes sandboxes;
  private VmSupervisor.Settings settings;

  @BeforeAll
  static void startKit() {
    kit = ActorTestKit.create();
  }

  @AfterAll
  static void stopKit() {
    kit.shutdownTestKit();
  }

  @BeforeEach
  void setUp() throws Exception {
    sandboxes = new TestSandboxes();
    settings = VmSupervisor.Settings.create(kit.system()).withHealth(Duration.ofMillis(300), 3);
  }

  @AfterEach
  void tearDown() {
    sandboxes.close();
  }

  private SupervisedVm start(VmSpec spec, VmSupervisor.Settings s) {
    return SupervisedVm.start(kit, sandboxes, spec, s);
  }

  private static List<ExecEvent> exec(ActorRef<Command> ref, String... argv) throws Exception {
    return SupervisedVm.exec(kit, ref, argv);
  }

  private static SourceRef<ExecEvent> execRef(ActorRef<Command> ref, String... argv) {
    return SupervisedVm.execRef(kit, ref, argv);
  }

  private static String output(List<ExecEvent> events, boolean stderr) {
    return SupervisedVm.output(events, stderr);
  }

  private static VmExited stop(SupervisedVm s) {
    return s.stop(kit);
  }

  @Test
  void startExecStopLeavesNoProcessBehind() throws Exception {
    VmSpec spec = sandboxes.spec();
    SupervisedVm s = start(spec, settings);
    assertFalse(s.ready().adopted());
    assertEquals(1, s.ready().incarnation());
    assertFalse(s.ready().guestKernel().isBlank());

    List<ExecEvent> events = exec(s.ref(), "sh", "-c", "echo out; echo err >&2; exit 3");
    assertEquals("out\n", output(events, false));
    assertEquals("err\n", output(events, true));
    assertEquals(new ExecExited(3, 0), events.get(events.size() - 1));
    assertEquals(1, events.stream().filter(e -> e instanceof ExecExited).count());

    // a few MB streamed through the agent's flow control and the stream ref, every byte arrives
    SourceRef<ExecEvent> big = execRef(s.ref(), "head", "-c", "3000000", "/dev/zero");
    long bytes = big.getSource()
        .runWith(Sink.fold(0L, (acc, e) -> e instanceof ExecOutput o ? acc + o.data().size() : acc), kit.system())
        .toCompletableFuture().get(T.toSeconds(), TimeUnit.SECONDS);
    assertEquals(3_000_000L, bytes);

    var killed = exec(s.ref(), "sh", "-c", "kill -9 $$");
    assertEquals(new ExecExited(0, 9), killed.get(killed.size() - 1));

    TestProbe<StatusReply<GuestStats>> stats = kit.createTestProbe();
    s.ref().tell(new GetStats(stats.getRef()));
    assertTrue(stats.receiveMessage(T).getValue().processCount() >= 1);

    VmExited exited = stop(s);
    assertTrue(exited.exit().requested());
    assertEquals(1, exited.incarnation());
    await().atMost(T).until(() -> s.pids().stream().noneMatch(TestSandboxes::alive));
    assertFalse(Files.exists(spec.stateDir()), "the state directory is removed after a stop");
  }

  @Test
  void execOutputIsBackpressuredToTheProcessAndAGoneReaderKillsIt() throws Exception {
    VmSpec spec = sandboxes.spec();
    SupervisedVm s = start(spec, settings);
    // Written at /written inside, read through the node's mount of the sandbox's root.
    Path counter = sandboxes.rootfsOnHost(spec.sandboxId(), spec.incarnation()).resolve("written");
    // 64 KiB per step, 64 MiB in all, counting the steps it got through
    SourceRef<ExecEvent> ref = execRef(s.ref(), "sh", "-c",
        "i=0; while [ $i -lt 1000 ]; do head -c 65536 /dev/zero; i=$((i+1)); echo $i > /written; done; echo finished > /written");
    var reader = ref.getSource().runWith(Sink.queue(1), kit.system());
    // Nobody pulls: the writer must come to a halt after what the buffers and the window hold.
    long[] last = {-1};
    await().atMost(T).pollInterval(Duration.ofMillis(400)).until(() -> {
      long now = count(counter);
      boolean still = now > 0 && now == last[0];
      last[0] = now;
      return still;
    });
    long halted = last[0];
    assertTrue(halted < 400, "the writer went on to step " + halted + " of 1000 without a reader");
    await().during(Duration.ofMillis(800)).atMost(Duration.ofSeconds(5)).until(() -> count(counter) == halted);
    // Pull some: it moves again.
    for (int i = 0; i < 200; i++) reader.pull().toCompletableFuture().get(10, TimeUnit.SECONDS);
    await().atMost(T).until(() -> count(counter) > halted);
    // The reader goes away: the process is killed rather than left blocked on its pipe.
    reader.cancel();
    await().atMost(T).until(() -> sandboxes.hypervisor.adopt(s.ready().handle()).orElseThrow().pids().stream().noneMatch(VmSupervisorTest::isWriter));
    assertFalse(Files.readString(counter).contains("finished"));
    assertEquals("alive\n", output(exec(s.ref(), "echo", "alive"), false));
    stop(s);
  }

  private static boolean isWriter(long pid) {
    try {
      return Files.readString(Path.of("/proc/" + pid + "/cmdline")).contains("/dev/zero");
    } catch (Exception e) {
      return false;
    }
  }

  @Test
  void adoptAfterTheSupervisorIsGoneReattachesToTheSameVm() throws Exception {
    SupervisedVm s = start(sandboxes.spec(), settings);
    VmHandle handle = VmHandle.load(s.ready().handle().stateDir());
    kit.stop(s.ref());
    s.parent().expectTerminated(s.ref(), T);
    assertTrue(s.pids().stream().allMatch(TestSandboxes::alive), "the VM outlives its supervisor");

    TestProbe<Report> parent2 = kit.createTestProbe();
    ActorRef<Command> ref2 = kit.spawn(VmSupervisor.adopt(sandboxes.hypervisor, handle, parent2.getRef(), settings));
    VmReady ready = parent2.expectMessageClass(VmReady.class, T);
    assertTrue(ready.adopted());
    assertEquals(1, ready.incarnation());
    assertEquals(handle.pid(), ready.handle().pid());
    assertEquals("again\n", output(exec(ref2, "echo", "again"), false));

    VmExited exited = stop(new SupervisedVm(ref2, parent2, ready, s.pids()));
    assertTrue(exited.exit().requested());
    await().atMost(T).until(() -> s.pids().stream().noneMatch(TestSandboxes::alive));
  }

  /**
   * A background process and its id outlive the supervisor (a node restart): the adopting one
   * lists it, attaches to its kept output and signals it by the same id. An open attach is a call
   * in flight (the idle timeout's measure) until its reader goes.
   */
  @Test
  void aBackgroundProcessKeepsItsIdAcrossAnAdoptionAndAnOpenAttachIsACallInFlight() throws Exception {
    SupervisedVm s = start(sandboxes.spec(), settings);
    TestProbe<StatusReply<dev.flotilla.sandbox.protocol.SandboxProcess>> started = kit.createTestProbe();
    s.ref().tell(new VmSupervisorProtocol.StartProcess(new ExecSpec(List.of("sh", "-c", "echo one; exec sleep 600"), Map.of(), ""),
        started.getRef()));
    var reply = started.receiveMessage(T);
    assertTrue(reply.isSuccess(), () -> String.valueOf(reply.getError()));
    String id = reply.getValue().id();
    assertTrue(id.matches("p-1-[0-9a-f]{8}"), id);

    var open = attach(s.ref(), id, 0).getSource().runWith(Sink.queue(), kit.system());
    var first = (dev.flotilla.sandbox.protocol.ProcessOutput) open.pull().toCompletableFuture().get(T.toSeconds(), TimeUnit.SECONDS)
        .orElseThrow();
    assertEquals(0, first.offset());
    assertEquals("one\n", first.data().utf8String());
    assertEquals(1, callsInFlight(s.ref()), "the open attach");
    open.cancel();
    await().atMost(T).until(() -> callsInFlight(s.ref()) == 0);

    // a file read and a directory watch under way are calls in flight too; a read that fails is none
    exec(s.ref(), "sh", "-c", "head -c 8000000 /dev/zero > /tmp/big");
    TestProbe<StatusReply<SourceRef<ByteString>>> read = kit.createTestProbe();
    s.ref().tell(new VmSupervisorProtocol.ReadFile("/tmp/big", read.getRef()));
    var reading = read.receiveMessage(T).getValue().getSource().runWith(Sink.queue(), kit.system());
    assertTrue(reading.pull().toCompletableFuture().get(T.toSeconds(), TimeUnit.SECONDS).isPresent());
    assertEquals(1, callsInFlight(s.ref()), "the file read under way");
    reading.cancel();
    await().atMost(T).until(() -> callsInFlight(s.ref()) == 0);
    TestProbe<StatusReply<SourceRef<dev.flotilla.sandbox.protocol.FsValue>>> watch = kit.createTestProbe();
    s.ref().tell(new VmSupervisorProtocol.WatchDir("/tmp", false, watch.getRef()));
    var watching = watch.receiveMessage(T).getValue().getSource().runWith(Sink.queue(), kit.system());
    assertTrue(watching.pull().toCompletableFuture().get(T.toSeconds(), TimeUnit.SECONDS).isPresent(), "WatchStarted");
    assertEquals(1, callsInFlight(s.ref()), "the open watch");
    watching.cancel();
    await().atMost(T).until(() -> callsInFlight(s.ref()) == 0);
    s.ref().tell(new VmSupervisorProtocol.ReadFile("/no/such/file", read.getRef()));
    assertFalse(read.receiveMessage(T).isSuccess());
    assertEquals(0, callsInFlight(s.ref()), "a read that failed at once");

    VmHandle handle = VmHandle.load(s.ready().handle().stateDir());
    kit.stop(s.ref());
    s.parent().expectTerminated(s.ref(), T);
    TestProbe<Report> parent2 = kit.createTestProbe();
    ActorRef<Command> ref2 = kit.spawn(VmSupervisor.adopt(sandboxes.hypervisor, handle, parent2.getRef(), settings));
    VmReady ready = parent2.expectMessageClass(VmReady.class, T);

    TestProbe<StatusReply<dev.flotilla.sandbox.protocol.SandboxProcess.Listing>> listed = kit.createTestProbe();
    ref2.tell(new VmSupervisorProtocol.ListProcesses(listed.getRef()));
    var mine = listed.receiveMessage(T).getValue().processes().stream().filter(p -> p.id().equals(id)).findFirst().orElseThrow();
    assertTrue(mine.running() && mine.detached());
    assertEquals(4, mine.outputEnd());
    assertEquals(List.of("sh", "-c", "echo one; exec sleep 600"), mine.argv());

    TestProbe<StatusReply<Done>> signalled = kit.createTestProbe();
    ref2.tell(new VmSupervisorProtocol.SignalProcess(id, 15, signalled.getRef()));
    assertTrue(signalled.receiveMessage(T).isSuccess());
    List<ExecEvent> rest = attach(ref2, id, 2).getSource().runWith(Sink.seq(), kit.system()).toCompletableFuture()
        .get(T.toSeconds(), TimeUnit.SECONDS);
    assertEquals(List.of(new dev.flotilla.sandbox.protocol.ProcessOutput(2, false, ByteString.fromString("e\n")), new ExecExited(0, 15)),
        rest);
    TestProbe<StatusReply<SourceRef<ExecEvent>>> unknown = kit.createTestProbe();
    ref2.tell(new VmSupervisorProtocol.AttachProcess("p-1-00000000", 0, unknown.getRef()));
    assertTrue(unknown.receiveMessage(T).getError().getMessage().contains("NOT_FOUND"));
    await().atMost(T).until(() -> callsInFlight(ref2) == 0);
    stop(new SupervisedVm(ref2, parent2, ready, s.pids()));
  }

  private SourceRef<ExecEvent> attach(ActorRef<Command> ref, String id, long offset) {
    TestProbe<StatusReply<SourceRef<ExecEvent>>> attached = kit.createTestProbe();
    ref.tell(new VmSupervisorProtocol.AttachProcess(id, offset, attached.getRef()));
    var r = attached.receiveMessage(T);
    assertTrue(r.isSuccess(), () -> String.valueOf(r.getError()));
    return r.getValue();
  }

  private int callsInFlight(ActorRef<Command> ref) {
    TestProbe<Integer> n = kit.createTestProbe();
    ref.tell(new VmSupervisorProtocol.CallsInFlight(n.getRef()));
    return n.receiveMessage(T);
  }

  /**
   * A node restarted under a PAUSED sandbox: its frozen VM is adopted as paused (the owner says
   * so), not handshaken into a timeout and killed as an agent that does not answer.
   */
  @Test
  void aPausedVmIsAdoptedPausedAndResumes() throws Exception {
    VmSupervisor.Settings quick = settings.withStartTimeout(Duration.ofSeconds(5));
    SupervisedVm s = start(sandboxes.spec(), quick);
    VmHandle handle = VmHandle.load(s.ready().handle().stateDir());
    TestProbe<StatusReply<Done>> ack = kit.createTestProbe();
    s.ref().tell(new Pause(ack.getRef()));
    assertTrue(ack.receiveMessage(T).isSuccess());
    kit.stop(s.ref());
    s.parent().expectTerminated(s.ref(), T);

    TestProbe<Report> parent2 = kit.createTestProbe();
    ActorRef<Command> ref2 = kit.spawn(VmSupervisor.adopt(sandboxes.hypervisor, handle, parent2.getRef(), quick, null, true));
    VmReady ready = parent2.expectMessageClass(VmReady.class, T);
    assertTrue(ready.adopted());
    // still frozen, and served as such: no exec, no pings that would find the agent lost
    TestProbe<StatusReply<SourceRef<ExecEvent>>> refused = kit.createTestProbe();
    ref2.tell(new Exec(new ExecSpec(List.of("true"), Map.of(), ""), refused.getRef()));
    SandboxError why = SandboxError.fromReplyText(refused.receiveMessage(T).getError().getMessage());
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, why.kind(), why.getMessage());
    parent2.expectNoMessage(quick.healthInterval().multipliedBy(quick.healthMaxFailures() + 2));
    assertTrue(s.pids().stream().allMatch(TestSandboxes::alive), "the paused VM is kept");

    ref2.tell(new Resume(ack.getRef()));
    assertTrue(ack.receiveMessage(T).isSuccess());
    await().atMost(T).untilAsserted(() -> assertEquals("thawed\n", output(exec(ref2, "echo", "thawed"), false)));
    stop(new SupervisedVm(ref2, parent2, ready, s.pids()));
  }

  /** A PAUSED sandbox's new VM (its host was lost) is frozen before it is reported ready, and runs once resumed. */
  @Test
  void aVmStartedForAPausedSandboxIsFrozenBeforeItIsReady() throws Exception {
    VmSpec spec = sandboxes.spec();
    TestProbe<Report> parent = kit.createTestProbe();
    ActorRef<Command> ref = kit.spawn(VmSupervisor.start(sandboxes.hypervisor, spec, parent.getRef(), settings, null, true));
    VmReady ready = parent.expectMessageClass(VmReady.class, T);
    sandboxes.trackHandle(ready.handle());
    Vm vm = sandboxes.hypervisor.adopt(ready.handle()).orElseThrow();
    List<Long> pids = vm.pids();
    sandboxes.trackPids(pids);
    assertTrue(vm.isPaused(), "frozen before anyone heard of it");
    TestProbe<StatusReply<SourceRef<ExecEvent>>> refused = kit.createTestProbe();
    ref.tell(new Exec(new ExecSpec(List.of("true"), Map.of(), ""), refused.getRef()));
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION,
        SandboxError.fromReplyText(refused.receiveMessage(T).getError().getMessage()).kind());

    TestProbe<StatusReply<Done>> ack = kit.createTestProbe();
    ref.tell(new Resume(ack.getRef()));
    assertTrue(ack.receiveMessage(T).isSuccess());
    assertEquals("up\n", output(exec(ref, "echo", "up"), false));
    stop(new SupervisedVm(ref, parent, ready, pids));
  }

  @Test
  void adoptWithAnotherSecretIsRefusedAtOnceAndTheVmEnded() throws Exception {
    SupervisedVm s = start(sandboxes.spec(), settings);
    VmHandle handle = VmHandle.load(s.ready().handle().stateDir());
    kit.stop(s.ref());
    s.parent().expectTerminated(s.ref(), T);
    // the node-only copy no longer matches what the agent was given
    AgentSecrets.write(handle.stateDir(), AgentSecrets.generate());

    TestProbe<Report> parent2 = kit.createTestProbe();
    long t0 = System.nanoTime();
    ActorRef<Command> ref2 = kit.spawn(VmSupervisor.adopt(sandboxes.hypervisor, handle, parent2.getRef(), settings));
    VmStartFailed failed = parent2.expectMessageClass(VmStartFailed.class, T);
    assertTrue(failed.reason().contains("handshake refused: its secret is wrong"), failed.reason());
    assertTrue(System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(10), "refused, not retried until the deadline");
    parent2.expectTerminated(ref2, T);
    await().atMost(T).until(() -> s.pids().stream().noneMatch(TestSandboxes::alive));
  }

  @Test
  void adoptOfAGoneVmFails() throws Exception {
    SupervisedVm s = start(sandboxes.spec(), settings);
    VmHandle handle = s.ready().handle();
    stop(s);
    TestProbe<Report> parent2 = kit.createTestProbe();
    ActorRef<Command> ref2 = kit.spawn(VmSupervisor.adopt(sandboxes.hypervisor, handle, parent2.getRef(), settings));
    VmStartFailed failed = parent2.expectMessageClass(VmStartFailed.class, T);
    assertTrue(failed.reason().contains("gone"), failed.reason());
    parent2.expectTerminated(ref2, T);
  }

  @Test
  void killOfTheAgentIsReportedAsAnExitWithTheSignal() throws Exception {
    SupervisedVm s = start(sandboxes.spec(), settings);
    long agent = s.pids().stream().filter(p -> {
      try {
        String[] argv = Files.readString(Path.of("/proc/" + p + "/cmdline")).split("\0");
        return argv[0].endsWith("/java");
      } catch (Exception e) {
        return false;
      }
    }).findFirst().orElseThrow();
    ProcessHandle.of(agent).orElseThrow().destroyForcibly();
    VmExited exited = s.parent().fishForMessage(T, r -> r instanceof VmExited
        ? org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes.complete()
        : org.apache.pekko.actor.testkit.typed.javadsl.FishingOutcomes.continueAndIgnore())
        .stream().filter(VmExited.class::isInstance).map(VmExited.class::cast).findFirst().orElseThrow();
    assertEquals(9, exited.exit().signal(), exited.toString());
    assertFalse(exited.exit().requested());
    s.parent().expectTerminated(s.ref(), T);
    await().atMost(T).until(() -> s.pids().stream().noneMatch(TestSandboxes::alive));
  }

  @Test
  void pauseFreezesAndResumeLetsAPausedExecFinish() throws Exception {
    VmSpec spec = sandboxes.spec();
    SupervisedVm s = start(spec, settings);
    // Written at /counter inside, read through the node's mount of the sandbox's root.
    Path counter = sandboxes.rootfsOnHost(spec.sandboxId(), spec.incarnation()).resolve("counter");
    SourceRef<ExecEvent> running = execRef(s.ref(), "sh", "-c",
        "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo $i > /counter.t; mv /counter.t /counter; sleep 0.02; done; echo finished");
    var result = running.getSource().runWith(Sink.seq(), kit.system()).toCompletableFuture();
    await().atMost(T).until(() -> count(counter) >= 2);

    TestProbe<StatusReply<Done>> ack = kit.createTestProbe();
    s.ref().tell(new Pause(ack.getRef()));
    assertTrue(ack.receiveMessage(T).isSuccess());
    long at = count(counter);
    await().during(Duration.ofMillis(900)).atMost(Duration.ofSeconds(5)).pollInterval(Duration.ofMillis(100))
        .until(() -> count(counter) == at && !result.isDone());

    TestProbe<StatusReply<SourceRef<ExecEvent>>> refused = kit.createTestProbe();
    s.ref().tell(new Exec(new ExecSpec(List.of("true"), Map.of(), ""), refused.getRef()));
    StatusReply<SourceRef<ExecEvent>> no = refused.receiveMessage(T);
    assertTrue(no.isError(), "no exec into a paused VM");
    // the refusal says its kind, so the API answers FAILED_PRECONDITION (not INTERNAL)
    SandboxError why = SandboxError.fromReplyText(no.getError().getMessage());
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, why.kind(), why.getMessage());
    assertTrue(why.getMessage().contains("paused"), why.getMessage());

    s.ref().tell(new Resume(ack.getRef()));
    assertTrue(ack.receiveMessage(T).isSuccess());
    List<ExecEvent> events = result.get(T.toSeconds(), TimeUnit.SECONDS);
    assertEquals("finished\n", output(events, false));
    assertEquals(new ExecExited(0, 0), events.get(events.size() - 1));
    assertEquals(40, count(counter));
    // pings were held while paused: no AgentLost came, the supervisor still serves
    assertEquals("alive\n", output(exec(s.ref(), "echo", "alive"), false));
    stop(s);
  }

  @Test
  void writeFileAndReadItBack() throws Exception {
    VmSpec spec = sandboxes.spec();
    SupervisedVm s = start(spec, settings);
    List<ByteString> chunks = new ArrayList<>();
    byte[] expected = new byte[700_000];
    for (int i = 0; i < expected.length; i++) expected[i] = (byte) (i * 31 + 7);
    for (int off = 0; off < expected.length; off += 100_000) chunks.add(ByteString.fromArray(expected, off, 100_000));
    SourceRef<ByteString> data = Source.from(chunks).runWith(StreamRefs.sourceRef(), kit.system());
    String path = spec.stateDir().resolve("blob.bin").toString();

    TestProbe<StatusReply<Long>> written = kit.createTestProbe();
    s.ref().tell(new WriteFile(path, 0640, data, written.getRef()));
    StatusReply<Long> w = written.receiveMessage(T);
    assertTrue(w.isSuccess(), () -> "write failed: " + w.getError());
    assertEquals(expected.length, w.getValue());

    TestProbe<StatusReply<SourceRef<ByteString>>> read = kit.createTestProbe();
    s.ref().tell(new ReadFile(path, read.getRef()));
    ByteString back = read.receiveMessage(T).getValue().getSource()
        .runWith(Sink.fold(ByteString.emptyByteString(), ByteString::concat), kit.system())
        .toCompletableFuture().get(T.toSeconds(), TimeUnit.SECONDS);
    assertTrue(java.util.Arrays.equals(expected, back.toArray()), "read back what was written");

    s.ref().tell(new ReadFile(spec.stateDir().resolve("no-such-file").toString(), read.getRef()));
    assertTrue(read.receiveMessage(T).isError());
    stop(s);
  }

  @Test
  void agentThatStopsAnsweringIsLostAndItsVmKilled() throws Exception {
    SupervisedVm s = start(sandboxes.spec(), settings.withHealth(Duration.ofMillis(200), 2).withCallTimeout(Duration.ofMillis(500)));
    // Freeze it behind the supervisor's back: the agent can no longer answer pings.
    Vm same = sandboxes.hypervisor.adopt(s.ready().handle()).orElseThrow();
    same.pause();
    AgentLost lost = s.parent().expectMessageClass(AgentLost.class, T);
    assertTrue(lost.reason().contains("failed"), lost.reason());
    VmExited exited = s.parent().expectMessageClass(VmExited.class, T);
    assertFalse(exited.exit().requested());
    assertTrue(exited.exit().reason().contains("agent was lost"), exited.exit().reason());
    s.parent().expectTerminated(s.ref(), T);
    await().atMost(T).until(() -> s.pids().stream().noneMatch(TestSandboxes::alive));
  }

  @Test
  void aVmWhoseAgentCannotStartIsReportedAndLeavesNothing() throws Exception {
    var broken = new ProcessHypervisor(sandboxes.hypervisor.config().withRuntimeDir(sandboxes.brokenRuntime()), sandboxes.hypervisor.ids());
    VmSpec spec = sandboxes.spec();
    TestProbe<Report> parent = kit.createTestProbe();
    ActorRef<Command> ref = kit.spawn(VmSupervisor.start(broken, spec, parent.getRef(), settings.withStartTimeout(Duration.ofSeconds(15))));
    VmStartFailed failed = parent.expectMessageClass(VmStartFailed.class, T);
    assertFalse(failed.reason().isBlank());
    parent.expectTerminated(ref, T);
    assertFalse(Files.exists(spec.stateDir()), "nothing of the failed VM is left");
  }

  private static long count(Path counter) {
    try {
      String s = Files.readString(counter, StandardCharsets.US_ASCII).trim();
      return s.isEmpty() ? 0 : Long.parseLong(s);
    } catch (Exception e) {
      return 0;
    }
  }

  /**
   * A suspend (the process driver keeps the writable disk only): the owner hears VmSuspended with
   * the snapshot, then the ack, and the supervisor stops without a VmExited. A snapshot (a fork's
   * source) the driver refuses leaves the VM serving, over a new connection.
   */
  @Test
  void aSuspendReportsTheSnapshotAndStopsWhileARefusedSnapshotLeavesTheVmServing() throws Exception {
    VmSpec spec = sandboxes.spec();
    SupervisedVm s = start(spec, settings);
    assertEquals("kept\n", output(exec(s.ref(), "sh", "-c", "echo kept > /kept; cat /kept"), false));

    TestProbe<StatusReply<dev.flotilla.vm.Snapshot>> snap = kit.createTestProbe();
    s.ref().tell(new VmSupervisorProtocol.SnapshotVm(sandboxes.stateRoot.resolve("snapshots").resolve("fork-" + spec.sandboxId()), snap.getRef()));
    StatusReply<dev.flotilla.vm.Snapshot> refused = snap.receiveMessage(T);
    assertTrue(refused.isError(), "the process driver cannot snapshot a running sandbox");
    SandboxError why = SandboxError.fromReplyText(refused.getError().getMessage());
    assertEquals(SandboxError.Kind.FAILED_PRECONDITION, why.kind(), why.getMessage());
    assertEquals("still\n", output(exec(s.ref(), "echo", "still"), false), "it serves on after the refusal");

    Path dir = sandboxes.stateRoot.resolve("snapshots").resolve("snap-" + spec.sandboxId());
    TestProbe<StatusReply<Done>> ack = kit.createTestProbe();
    s.ref().tell(new VmSupervisorProtocol.Suspend(dir, ack.getRef()));
    Report first = s.parent().receiveMessage(T);
    var suspended = assertInstanceOf(VmSupervisorProtocol.VmSuspended.class, first);
    assertEquals(spec.incarnation(), suspended.incarnation());
    assertEquals(dir, suspended.snapshot().dir());
    assertFalse(suspended.snapshot().memory(), "the process driver keeps the disk only");
    assertTrue(ack.receiveMessage(T).isSuccess());
    assertTrue(Files.isRegularFile(dir.resolve("disk")), "the writable layer is in the snapshot");
    kit.createTestProbe().expectTerminated(s.ref(), T);
    s.parent().expectNoMessage(Duration.ofMillis(300)); // no VmExited after it
    for (long pid : s.pids()) await().atMost(T).until(() -> ProcessHandle.of(pid).map(p -> !p.isAlive()).orElse(true));
  }
}
