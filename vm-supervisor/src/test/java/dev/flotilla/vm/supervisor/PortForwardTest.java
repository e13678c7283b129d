package dev.flotilla.vm.supervisor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.sandbox.protocol.SandboxError;
import dev.flotilla.vm.process.TestSandboxes;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.PortForward;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.japi.Pair;
import org.apache.pekko.pattern.StatusReply;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.stream.javadsl.Keep;
import org.apache.pekko.stream.javadsl.Sink;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.javadsl.StreamRefs;
import org.apache.pekko.util.ByteString;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@link VmSupervisorProtocol.PortForward} over the real process driver and agent: a server in the
 * sandbox (busybox nc) reached on its loopback, bytes both ways with their digests checked, the
 * caller's half-close and the server's close, a refused port, and a caller that goes away resetting
 * the socket in the sandbox. (A server that half-closes and reads on: guest-agent's PortForwardsTest.)
 */
class PortForwardTest {
  private static final Duration T = Duration.ofSeconds(30);
  private static ActorTestKit kit;
  private TestSandboxes sandboxes;
  private SupervisedVm vm;

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
    vm = SupervisedVm.start(kit, sandboxes, sandboxes.spec(), VmSupervisor.Settings.create(kit.system()));
  }

  @AfterEach
  void tearDown() {
    vm.stop(kit);
    sandboxes.close();
  }

  private String sh(String script) throws Exception {
    var events = SupervisedVm.exec(kit, vm.ref(), "sh", "-c", script);
    return SupervisedVm.output(events, false);
  }

  /** Starts {@code script} in the background of the sandbox and waits until something listens on {@code port}. */
  private void serve(int port, String script) throws Exception {
    sh("(" + script + ") >/dev/null 2>&1 &");
    String hex = String.format("%04X", port);
    Awaitility.await().atMost(T).until(() -> sh("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null").lines()
        .anyMatch(l -> l.contains(":" + hex + " ") && l.trim().split("\\s+")[3].equals("0A")));
  }

  /** Connections to {@code port} in the sandbox in state ESTABLISHED, as its kernel lists them. */
  private long established(int port) throws Exception {
    String hex = String.format(":%04X", port);
    return sh("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null").lines()
        .map(l -> l.trim().split("\\s+"))
        .filter(f -> f.length > 3 && f[1].endsWith(hex) && f[3].equals("01"))
        .count();
  }

  private record Forwarded(StatusReply<SourceRef<ByteString>> reply, org.apache.pekko.stream.javadsl.SourceQueueWithComplete<ByteString> in) {}

  private Forwarded forward(int port) {
    Pair<org.apache.pekko.stream.javadsl.SourceQueueWithComplete<ByteString>, SourceRef<ByteString>> in =
        Source.<ByteString>queue(16, org.apache.pekko.stream.OverflowStrategy.backpressure())
            .toMat(StreamRefs.sourceRef(), Keep.both()).run(kit.system());
    TestProbe<StatusReply<SourceRef<ByteString>>> reply = kit.createTestProbe();
    vm.ref().tell(new PortForward(port, in.second(), reply.getRef()));
    return new Forwarded(reply.receiveMessage(T), in.first());
  }

  private int callsInFlight() {
    TestProbe<Integer> p = kit.createTestProbe();
    vm.ref().tell(new VmSupervisorProtocol.CallsInFlight(p.getRef()));
    return p.receiveMessage(T);
  }

  @Test
  void largeTransfersBothWaysWithHalfClosesAndDigests() throws Exception {
    // The server reads to the caller's end (its half-close), answers with the digest of what came,
    // then sends 8 MiB of its own and closes: the caller sees the end after all of it.
    sh("head -c 8388608 /dev/urandom > /tmp/down");
    String downDigest = sh("sha256sum /tmp/down").substring(0, 64);
    serve(9001, "nc -l -p 9001 -e sh -c 'cat > /tmp/up; sha256sum /tmp/up | cut -c1-64; cat /tmp/down'");
    Forwarded f = forward(9001);
    assertTrue(f.reply().isSuccess(), () -> "port-forward failed: " + f.reply().getError());
    CompletableFuture<ByteString> got = f.reply().getValue().getSource()
        .runWith(Sink.fold(ByteString.emptyByteString(), ByteString::concat), kit.system()).toCompletableFuture();
    assertEquals(1, callsInFlight(), "an open port-forward is a call in flight");
    byte[] up = new byte[8 << 20];
    new Random(7).nextBytes(up);
    for (int i = 0; i < up.length; i += 60_000) {
      f.in().offer(ByteString.fromArray(up, i, Math.min(60_000, up.length - i))).toCompletableFuture().get(T.toSeconds(), TimeUnit.SECONDS);
    }
    f.in().complete();
    ByteString all = got.get(T.toSeconds(), TimeUnit.SECONDS);
    String answer = all.take(65).utf8String();
    assertEquals(sha256(up) + "\n", answer, "the server read exactly what was sent, to its end");
    assertEquals(downDigest, sha256(all.drop(65).toArray()), "and the caller got exactly what the server sent");
    Awaitility.await().atMost(T).until(() -> callsInFlight() == 0);
    assertEquals(0, established(9001));
  }

  @Test
  void aRefusedPortSaysNothingListens() {
    Forwarded f = forward(9009);
    assertTrue(f.reply().isError());
    SandboxError e = SandboxError.fromReplyText(f.reply().getError().getMessage());
    assertEquals(SandboxError.Kind.UNAVAILABLE, e.kind());
    assertEquals("nothing listens on port 9009 in the sandbox", e.getMessage());
    Awaitility.await().atMost(T).until(() -> callsInFlight() == 0);
    Forwarded bad = forward(70000);
    assertEquals(SandboxError.Kind.INVALID_ARGUMENT, SandboxError.fromReplyText(bad.reply().getError().getMessage()).kind());
  }

  @Test
  void aCallerThatGoesAwayResetsTheSocketInTheSandbox() throws Exception {
    serve(9002, "nc -l -p 9002 -e sh -c 'cat > /dev/null; echo gone > /tmp/closed'");
    Forwarded f = forward(9002);
    assertTrue(f.reply().isSuccess(), () -> "port-forward failed: " + f.reply().getError());
    var reading = f.reply().getValue().getSource().runWith(Sink.ignore(), kit.system()).toCompletableFuture();
    f.in().offer(ByteString.fromString("x")).toCompletableFuture().get(T.toSeconds(), TimeUnit.SECONDS);
    Awaitility.await().atMost(T).until(() -> established(9002) == 1);
    f.in().fail(new RuntimeException("client gone"));
    Awaitility.await().atMost(T).until(() -> sh("cat /tmp/closed 2>/dev/null").equals("gone\n"));
    Awaitility.await().atMost(T).until(() -> established(9002) == 0);
    Awaitility.await().atMost(T).until(() -> callsInFlight() == 0);
    Awaitility.await().atMost(T).until(reading::isDone);
  }

  static String sha256(byte[] data) throws Exception {
    return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
  }

  static String utf8(byte[] b) {
    return new String(b, StandardCharsets.UTF_8);
  }
}
