package dev.flotilla.vm.supervisor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameCodec;
import dev.flotilla.agent.protocol.v1.GuestDetails;
import dev.flotilla.agent.protocol.v1.Response;
import dev.flotilla.sandbox.protocol.ExecExited;
import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.process.TestSandboxes;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.AgentLost;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Command;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Report;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmExited;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmReady;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmStartFailed;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ThreadLocalRandom;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Guests that attack the node through their agent channel, beside a healthy sandbox on the same
 * node (the same actor system, dispatchers and agent client code): a guest that never reads,
 * floods, stops mid-frame, never accepts, answers garbage or on streams the node never opened.
 * Each hostile guest's sandbox ends as agent-lost (or fails to start); the healthy sandbox keeps
 * answering throughout, and the node's threads come back to where they were.
 *
 * <p>The hostile agents serve a Unix socket from this JVM (a real socket and the node's real
 * client and supervisor; only the guest side is the attacker's code), the healthy one is a real
 * process-driver sandbox.
 */
class HostileAgentTest {
  private static final Duration T = Duration.ofSeconds(60);
  private static ActorTestKit kit;
  @TempDir Path tmp;

  @BeforeAll
  static void startKit() {
    kit = ActorTestKit.create();
  }

  @AfterAll
  static void stopKit() {
    kit.shutdownTestKit();
  }

  enum Attack { NEVER_READS, FLOODS_UNOPENED_STREAMS, STOPS_MID_FRAME, NEVER_ACCEPTS, GARBAGE, OVERSIZED_LENGTH, ANSWERS_UNOPENED_STREAMS }

  /** One hostile guest: a socket it serves, answering the handshake correctly, then attacking. */
  static final class HostileGuest implements AutoCloseable {
    final Attack attack;
    final Path socket;
    final ServerSocketChannel server;
    final List<SocketChannel> accepted = Collections.synchronizedList(new ArrayList<>());
    final Thread thread;
    volatile boolean closed;

    HostileGuest(Attack attack, Path socket) throws IOException {
      this.attack = attack;
      this.socket = socket;
      this.server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
      server.bind(UnixDomainSocketAddress.of(socket), 1);
      this.thread = new Thread(this::serve, "hostile-guest-" + attack);
      thread.setDaemon(true);
      if (attack != Attack.NEVER_ACCEPTS) thread.start();
    }

    private void serve() {
      try {
        while (!closed) {
          SocketChannel ch = server.accept();
          accepted.add(ch);
          Thread t = new Thread(() -> attack(ch), "hostile-conn-" + attack);
          t.setDaemon(true);
          t.start();
        }
      } catch (IOException e) {
        // closed
      }
    }

    private void attack(SocketChannel ch) {
      FrameCodec codec = new FrameCodec(1 << 20);
      try (InputStream in = Channels.newInputStream(ch); OutputStream out = Channels.newOutputStream(ch)) {
        Frame hello = codec.read(in);
        Response ok = Response.newBuilder().setHandshake(GuestDetails.newBuilder().setKernel("hostile").setProtocolVersion(1)).build();
        out.write(codec.encode(Frame.response(hello.streamId(), ok.toByteArray())));
        out.flush();
        byte[] junk = new byte[32 * 1024];
        switch (attack) {
          case NEVER_READS -> {
            while (!closed) Thread.sleep(50); // holds the connection, reads nothing more: the attacker's loop, not the test's wait
          }
          case FLOODS_UNOPENED_STREAMS -> {
            while (!closed) out.write(codec.encode(Frame.data(1_000_000, false, junk, false)));
          }
          case STOPS_MID_FRAME -> {
            byte[] frame = codec.encode(Frame.response(hello.streamId() + 1, junk));
            out.write(frame, 0, Frame.HEADER_SIZE + 10);
            out.flush();
            while (!closed) Thread.sleep(50);
          }
          case GARBAGE -> {
            while (!closed) {
              ThreadLocalRandom.current().nextBytes(junk);
              out.write(junk);
            }
          }
          case OVERSIZED_LENGTH -> {
            byte[] header = codec.encode(Frame.response(3, new byte[0]));
            header[0] = 0x7f; // a payload length (the first 4 bytes) far past the limit
            out.write(header);
            out.flush();
            while (!closed) Thread.sleep(50);
          }
          case ANSWERS_UNOPENED_STREAMS -> {
            byte[] answer = Response.newBuilder().setPing(dev.flotilla.agent.protocol.v1.PingResponse.newBuilder().setNonce(1)).build().toByteArray();
            for (int id = 100_000; !closed; id++) out.write(codec.encode(Frame.response(id, answer)));
          }
          default -> { }
        }
      } catch (Exception e) {
        // the node hung up on us: that is the point
      }
    }

    @Override
    public void close() throws IOException {
      closed = true;
      server.close();
      for (SocketChannel ch : List.copyOf(accepted)) ch.close();
      Files.deleteIfExists(socket);
    }
  }

  /** A driver whose "VMs" are hostile guests: nothing runs, the agent socket is the attacker's. */
  static final class HostileHypervisor implements Hypervisor {
    final Map<String, HostileGuest> guests;

    HostileHypervisor(Map<String, HostileGuest> guests) {
      this.guests = guests;
    }

    @Override
    public String driver() {
      return "hostile";
    }

    @Override
    public HypervisorCapabilities capabilities() {
      return null;
    }

    @Override
    public Vm prepare(VmSpec spec) {
      HostileGuest g = guests.get(spec.sandboxId());
      CompletableFuture<VmExit> exit = new CompletableFuture<>();
      VmHandle handle = new VmHandle("hostile", spec.sandboxId(), spec.incarnation(), 0, 0, spec.stateDir(), g.socket, Map.of());
      return new Vm() {
        @Override public VmHandle handle() { return handle; }
        @Override public void start(Duration deadline) { }
        @Override public AgentAddress agentAddress() { return new AgentAddress(g.socket); }
        @Override public void pause() { }
        @Override public void resume() { }
        @Override public boolean isPaused() { return false; }
        @Override public void stop(Duration grace) { kill(); }
        @Override public void kill() {
          try {
            g.close();
          } catch (IOException ignored) {
            // closing the attacker's socket
          }
          exit.complete(new VmExit(-1, 9, "killed", false));
        }
        @Override public CompletableFuture<VmExit> exitFuture() { return exit; }
        @Override public List<Long> pids() { return List.of(); }
        @Override public void destroy() { }
      };
    }

    @Override
    public Optional<Vm> adopt(VmHandle handle) {
      return Optional.empty();
    }

    @Override
    public boolean fence(Duration wait) {
      return true;
    }

    @Override
    public void watchFreezes(dev.flotilla.vm.FreezeWatch watch) { }
  }

  /** Every attack; {@code -Dhostile.attacks=A,B} runs only those (to look at one closely). */
  static List<Attack> attacks() {
    String only = System.getProperty("hostile.attacks", "");
    if (only.isBlank()) return List.of(Attack.values());
    return java.util.Arrays.stream(only.split(",")).map(String::trim).map(Attack::valueOf).toList();
  }

  static long execMillis(ActorRef<Command> healthy) throws Exception {
    long t0 = System.nanoTime();
    var events = SupervisedVm.exec(kit, healthy, "true");
    assertEquals(new ExecExited(0, 0), events.get(events.size() - 1));
    return (System.nanoTime() - t0) / 1_000_000;
  }

  static List<Long> execs(ActorRef<Command> healthy, int n) throws Exception {
    List<Long> ms = new ArrayList<>();
    for (int i = 0; i < n; i++) ms.add(execMillis(healthy));
    Collections.sort(ms);
    return ms;
  }

  static Report receive(TestProbe<Report> parent, Attack a) {
    try {
      return parent.receiveMessage(T);
    } catch (AssertionError e) {
      throw new AssertionError(a + ": no report after VmReady", e);
    }
  }

  static long pct(List<Long> sorted, double p) {
    return sorted.get(Math.min(sorted.size() - 1, (int) Math.ceil(p * sorted.size()) - 1));
  }

  static long threads(String prefix) {
    return Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith(prefix)).count();
  }

  @Test
  void hostileGuestsLoseTheirSandboxesAndTheHealthyOneKeepsAnswering() throws Exception {
    VmSupervisor.Settings settings = VmSupervisor.Settings.create(kit.system())
        .withHealth(Duration.ofMillis(300), 3).withStartTimeout(Duration.ofSeconds(5)).withCallTimeout(Duration.ofSeconds(2));
    try (TestSandboxes sandboxes = new TestSandboxes()) {
      SupervisedVm healthy = SupervisedVm.start(kit, sandboxes, sandboxes.spec(), settings);
      execs(healthy.ref(), 10); // warm-up
      List<Long> idle = execs(healthy.ref(), 40);
      long threadsBefore = Thread.activeCount();
      long readersBefore = threads("frame-reader-");
      long writersBefore = threads("frame-writer-");
      Runtime rt = Runtime.getRuntime();
      long heapBefore = rt.totalMemory() - rt.freeMemory();

      Map<String, HostileGuest> guests = new java.util.HashMap<>();
      for (Attack a : attacks()) {
        // Short paths: a Unix socket path must stay under 108 bytes.
        String id = "h" + a.ordinal();
        guests.put(id, new HostileGuest(a, Files.createTempDirectory(Path.of("/tmp"), "hg").resolve("s")));
      }
      HostileHypervisor hv = new HostileHypervisor(guests);
      Map<Attack, TestProbe<Report>> parents = new java.util.EnumMap<>(Attack.class);
      for (var e : guests.entrySet()) {
        TestProbe<Report> parent = kit.createTestProbe();
        parents.put(e.getValue().attack, parent);
        VmSpec spec = new VmSpec(e.getKey(), 1, 1, 64, 0, tmp.resolve(e.getKey()), Map.of());
        kit.spawn(VmSupervisor.start(hv, spec, parent.getRef(), settings));
      }
      // While they attack, the healthy sandbox is measured.
      List<Long> during = execs(healthy.ref(), 40);
      long heapDuring = rt.totalMemory() - rt.freeMemory();
      long threadsDuring = Thread.activeCount();

      for (var e : parents.entrySet()) {
        Attack a = e.getKey();
        TestProbe<Report> parent = e.getValue();
        Report first = parent.receiveMessage(T);
        if (a == Attack.NEVER_ACCEPTS) {
          assertInstanceOf(VmStartFailed.class, first, a + ": " + first);
          continue;
        }
        assertInstanceOf(VmReady.class, first, a + ": " + first);
        Report lost = receive(parent, a);
        assertInstanceOf(AgentLost.class, lost, a + ": " + lost);
        VmExited exited = parent.expectMessageClass(VmExited.class, T);
        assertTrue(exited.exit().reason().startsWith("killed after the agent was lost"), a + ": " + exited.exit().reason());
        if (a != Attack.NEVER_READS && a != Attack.STOPS_MID_FRAME) {
          assertTrue(((AgentLost) lost).reason().startsWith("the guest agent broke the protocol"),
              a + " is found out at once, not by missed pings: " + ((AgentLost) lost).reason());
        }
      }
      for (HostileGuest g : guests.values()) g.close();
      List<Long> after = execs(healthy.ref(), 40);
      // Every connection of the hostile guests is gone: no reader or writer thread of theirs is left.
      org.awaitility.Awaitility.await().atMost(T)
          .until(() -> threads("frame-reader-") <= readersBefore && threads("frame-writer-") <= writersBefore);
      long threadsAfter = Thread.activeCount();

      System.out.printf("hostile-agent: healthy exec ms p50/p99 idle %d/%d, under attack %d/%d (%.2fx p99), after %d/%d;"
              + " threads %d -> %d -> %d; heap MiB %d -> %d%n",
          pct(idle, 0.5), pct(idle, 0.99), pct(during, 0.5), pct(during, 0.99),
          (double) pct(during, 0.99) / Math.max(1, pct(idle, 0.99)), pct(after, 0.5), pct(after, 0.99),
          threadsBefore, threadsDuring, threadsAfter, heapBefore >> 20, heapDuring >> 20);
      healthy.stop(kit);
    }
  }
}
