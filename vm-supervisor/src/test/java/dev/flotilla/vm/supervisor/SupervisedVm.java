package dev.flotilla.vm.supervisor;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.sandbox.protocol.ExecEvent;
import dev.flotilla.sandbox.protocol.ExecOutput;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.process.TestSandboxes;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Command;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Exec;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Report;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Stop;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmExited;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmReady;
import java.time.Duration;
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

/**
 * A {@link VmSupervisor} under test over the real process driver: the supervisor, the probe that
 * stands for its parent, its first report and the VM's processes (tracked for clean-up).
 */
record SupervisedVm(ActorRef<Command> ref, TestProbe<Report> parent, VmReady ready, List<Long> pids) {
  static final Duration T = Duration.ofSeconds(30);

  /** Spawns a supervisor that starts a VM, and waits for it to be ready. */
  static SupervisedVm start(ActorTestKit kit, TestSandboxes sandboxes, VmSpec spec, VmSupervisor.Settings settings) {
    TestProbe<Report> parent = kit.createTestProbe();
    ActorRef<Command> ref = kit.spawn(VmSupervisor.start(sandboxes.hypervisor, spec, parent.getRef(), settings));
    Report first = parent.receiveMessage(T);
    if (!(first instanceof VmReady ready)) throw new AssertionError("expected VmReady, got " + first);
    sandboxes.trackHandle(ready.handle());
    List<Long> pids = sandboxes.hypervisor.adopt(ready.handle()).orElseThrow().pids();
    sandboxes.trackPids(pids);
    return new SupervisedVm(ref, parent, ready, pids);
  }

  /** Stops the VM (5 s grace) and waits for its report and for the supervisor to end. */
  VmExited stop(ActorTestKit kit) {
    TestProbe<Done> done = kit.createTestProbe();
    ref.tell(new Stop(Duration.ofSeconds(5), done.getRef()));
    VmExited exited = parent.expectMessageClass(VmExited.class, T);
    done.expectMessage(T, Done.getInstance());
    parent.expectTerminated(ref, T);
    return exited;
  }

  /** Starts {@code argv} in the VM; the reference to its output stream. */
  static SourceRef<ExecEvent> execRef(ActorTestKit kit, ActorRef<Command> ref, String... argv) {
    TestProbe<StatusReply<SourceRef<ExecEvent>>> reply = kit.createTestProbe();
    ref.tell(new Exec(new ExecSpec(List.of(argv), Map.of(), ""), reply.getRef()));
    StatusReply<SourceRef<ExecEvent>> r = reply.receiveMessage(T);
    assertTrue(r.isSuccess(), () -> "exec failed: " + r.getError());
    return r.getValue();
  }

  /** Runs {@code argv} in the VM to its end; every event it produced. */
  static List<ExecEvent> exec(ActorTestKit kit, ActorRef<Command> ref, String... argv) throws Exception {
    return execRef(kit, ref, argv).getSource().runWith(Sink.seq(), kit.system()).toCompletableFuture()
        .get(T.toSeconds(), TimeUnit.SECONDS);
  }

  /** The stdout (or stderr) of {@code events}, as text. */
  static String output(List<ExecEvent> events, boolean stderr) {
    StringBuilder sb = new StringBuilder();
    for (ExecEvent e : events) {
      if (e instanceof ExecOutput o && o.stderr() == stderr) sb.append(o.data().utf8String());
    }
    return sb.toString();
  }
}
