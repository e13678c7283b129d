package dev.flotilla.vm.supervisor;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.sandbox.protocol.ExecEvent;
import dev.flotilla.sandbox.protocol.ExecExited;
import dev.flotilla.sandbox.protocol.ExecInput;
import dev.flotilla.sandbox.protocol.ExecOutput;
import dev.flotilla.sandbox.protocol.ExecSpec;
import dev.flotilla.sandbox.protocol.InteractiveExec;
import dev.flotilla.vm.process.TestSandboxes;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.ExecInteractive;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.stream.BoundedSourceQueue;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.javadsl.StreamRefs;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Interactive exec through a supervisor into a real process sandbox: the guest agent's
 * pseudo-terminal (its JNA from the sandbox runtime), Ctrl-C as a byte, resize as SIGWINCH, stdin
 * over pipes, and the exit status at the end. One VM for all of it (a VM start is the slow part).
 */
class InteractiveExecTest {
  private static final Duration T = Duration.ofSeconds(30);
  private static ActorTestKit kit;
  private static TestSandboxes sandboxes;
  private static SupervisedVm vm;

  @BeforeAll
  static void start() throws Exception {
    kit = ActorTestKit.create();
    sandboxes = new TestSandboxes();
    vm = SupervisedVm.start(kit, sandboxes, sandboxes.spec(), VmSupervisor.Settings.create(kit.system()));
  }

  @AfterAll
  static void stop() {
    try {
      if (vm != null) vm.stop(kit);
    } finally {
      sandboxes.close();
      kit.shutdownTestKit();
    }
  }

  /** A running interactive exec: what it printed so far, its input queue and its end. */
  private record Session(BoundedSourceQueue<ExecInput> input, List<ExecEvent> events, CompletableFuture<List<ExecEvent>> done) {
    String stdout() {
      StringBuilder sb = new StringBuilder();
      for (ExecEvent e : events) if (e instanceof ExecOutput o && !o.stderr()) sb.append(o.data().utf8String());
      return sb.toString();
    }

    void type(String s) {
      input.offer(new ExecInput.Stdin(ByteString.fromString(s)));
    }

    ExecExited exit() throws Exception {
      List<ExecEvent> all = done.get(T.toSeconds(), java.util.concurrent.TimeUnit.SECONDS);
      return (ExecExited) all.get(all.size() - 1);
    }
  }

  private static Session open(InteractiveExec exec) {
    Pair<BoundedSourceQueue<ExecInput>, Source<ExecInput, org.apache.pekko.NotUsed>> q =
        Source.<ExecInput>queue(64).preMaterialize(kit.system());
    SourceRef<ExecInput> in = q.second().runWith(StreamRefs.sourceRef(), kit.system());
    TestProbe<StatusReply<SourceRef<ExecEvent>>> reply = kit.createTestProbe();
    vm.ref().tell(new ExecInteractive(exec, in, reply.getRef()));
    StatusReply<SourceRef<ExecEvent>> r = reply.receiveMessage(T);
    assertTrue(r.isSuccess(), () -> "exec failed: " + r.getError());
    List<ExecEvent> events = new CopyOnWriteArrayList<>();
    CompletableFuture<List<ExecEvent>> done = r.getValue().getSource()
        .map(e -> {
          events.add(e);
          return e;
        })
        .runWith(Sink.seq(), kit.system()).toCompletableFuture();
    return new Session(q.first(), events, done);
  }

  private static ExecSpec sh(String... argv) {
    return new ExecSpec(List.of(argv), Map.of(), "");
  }

  @Test
  void aShellOnATerminalSeesItsSizeAResizeAndCtrlCAndItsExitCodeComesThrough() throws Exception {
    Session s = open(new InteractiveExec(sh("sh"), true, 30, 100, "xterm-256color"));
    s.type("tty; stty size; echo term=$TERM\n");
    await().atMost(T).until(() -> s.stdout().contains("30 100") && s.stdout().contains("term=xterm-256color"));
    assertTrue(s.stdout().matches("(?s).*/dev/pts/\\d+.*"), s.stdout());

    // a resize reaches the shell's foreground process group as SIGWINCH, and stty sees the new size
    s.type("trap 'echo got-winch' WINCH\n");
    s.type("echo trap-set\n");
    await().atMost(T).until(() -> s.stdout().contains("trap-set\r\n"));
    s.input().offer(new ExecInput.Resize(40, 120));
    await().atMost(T).until(() -> s.stdout().contains("got-winch"));
    s.type("stty size\n");
    await().atMost(T).until(() -> s.stdout().contains("40 120"));

    // Ctrl-C as a byte: the line discipline sends SIGINT to the foreground job, the shell lives on
    s.type("sleep 100; echo sleep-ended-$?\n");
    await().atMost(T).until(() -> s.stdout().contains("sleep 100"));
    s.type("\u0003");
    s.type("echo alive-$((40+2))\n");
    await().atMost(T).until(() -> s.stdout().contains("alive-42"));
    assertTrue(!s.stdout().contains("sleep-ended-0"), "sleep was interrupted: " + s.stdout());

    s.type("exit 7\n");
    assertEquals(new ExecExited(7, 0), s.exit());
  }

  @Test
  void ctrlCEndsAForegroundProgramRunDirectly() throws Exception {
    Session s = open(new InteractiveExec(sh("sh", "-c", "echo ready; exec sleep 100"), true, 0, 0, ""));
    await().atMost(T).until(() -> s.stdout().contains("ready"));
    s.type("\u0003");
    assertEquals(new ExecExited(0, 2), s.exit());
  }

  @Test
  void withoutATerminalStdinIsAPipeAndItsEndEndsCat() throws Exception {
    Session s = open(InteractiveExec.pipes(sh("sh", "-c", "cat; echo err >&2; exit 3")));
    s.type("hello\n");
    s.type("world\n");
    s.input().offer(new ExecInput.CloseStdin());
    assertEquals(new ExecExited(3, 0), s.exit());
    assertEquals("hello\nworld\n", s.stdout());
    assertTrue(s.events.stream().anyMatch(e -> e instanceof ExecOutput o && o.stderr() && o.data().utf8String().equals("err\n")));
  }

  @Test
  void aSignalFromTheClientReachesTheProcess() throws Exception {
    Session s = open(InteractiveExec.pipes(sh("sleep", "100")));
    s.input().offer(new ExecInput.Signal(15));
    assertEquals(new ExecExited(0, 15), s.exit());
  }
}
