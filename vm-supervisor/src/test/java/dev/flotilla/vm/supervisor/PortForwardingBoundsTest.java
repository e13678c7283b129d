package dev.flotilla.vm.supervisor;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.ClientOptions;
import dev.flotilla.agent.protocol.client.FramedAgentClient;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameConnection;
import dev.flotilla.agent.protocol.frame.FrameType;
import dev.flotilla.agent.protocol.frame.MemoryPipe;
import dev.flotilla.agent.protocol.v1.OpenPortResponse;
import dev.flotilla.agent.protocol.v1.Request;
import dev.flotilla.agent.protocol.v1.Response;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.stream.Materializer;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.stream.javadsl.Source;
import org.apache.pekko.stream.javadsl.StreamRefs;
import org.apache.pekko.util.ByteString;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A guest that floods a forwarded port as fast as the node's credit lets it, to a caller that
 * never reads: the node holds a bounded amount for it (its queue of {@link PortForwarding#BUFFER}
 * chunks, each at most the port's window, plus one window in flight) and the guest is left
 * waiting for credit; the node's real agent client and the supervisor's real data path, only the
 * guest is the attacker's.
 */
class PortForwardingBoundsTest {
  private static ActorTestKit kit;
  private static Materializer mat;

  @BeforeAll
  static void start() {
    kit = ActorTestKit.create();
    mat = Materializer.matFromSystem(kit.system());
  }

  @AfterAll
  static void stop() {
    kit.shutdownTestKit();
  }

  @Test
  void aFloodingGuestIsHeldToTheCreditTheNodeGives() throws Exception {
    MemoryPipe toAgent = new MemoryPipe(1 << 20);
    MemoryPipe toHost = new MemoryPipe(4 << 20);
    AtomicLong credit = new AtomicLong();
    AtomicLong sent = new AtomicLong();
    CompletableFuture<Integer> opened = new CompletableFuture<>();
    FrameConnection guest = new FrameConnection(toAgent.input(), toHost.output(), "flooding-guest", 1 << 20);
    guest.start(f -> {
      if (f.type() == FrameType.REQUEST) {
        try {
          Request r = Request.parseFrom(f.payload());
          credit.addAndGet(r.getOpenPort().getInitialWindow());
          guest.trySend(Frame.response(f.streamId(), Response.newBuilder()
              .setOpenPort(OpenPortResponse.newBuilder().setWindow(1 << 20).setAddress("127.0.0.1:80")).build().toByteArray()));
          opened.complete(f.streamId());
        } catch (com.google.protobuf.InvalidProtocolBufferException e) {
          throw new IllegalStateException(e);
        }
      } else if (f.type() == FrameType.WINDOW_UPDATE) {
        credit.addAndGet(f.windowIncrement());
      }
    });
    FramedAgentClient client = new FramedAgentClient(toHost.input(), toAgent.output(), "node", ClientOptions.defaults());
    try {
      SourceRef<ByteString> in = Source.<ByteString>never().runWith(StreamRefs.sourceRef(), mat);
      var settings = VmSupervisor.Settings.create(kit.system());
      // The reply's stream is never read.
      PortForwarding.open(client, 80, in, settings, mat, () -> { }).toCompletableFuture().get(10, TimeUnit.SECONDS);
      int stream = opened.get(10, TimeUnit.SECONDS);
      Thread flood = new Thread(() -> {
        byte[] chunk = new byte[8 * 1024];
        // the attacker's loop: it sends whenever it has credit, and spins on the node's WINDOW_UPDATEs
        while (guest.isOpen() && !Thread.currentThread().isInterrupted()) {
          if (credit.get() >= chunk.length) {
            credit.addAndGet(-chunk.length);
            if (!guest.trySend(Frame.data(stream, false, chunk, false))) return;
            sent.addAndGet(chunk.length);
          } else {
            Thread.onSpinWait();
          }
        }
      }, "flood");
      flood.setDaemon(true);
      flood.start();
      // the port's window (PortChannel.WINDOW, 1 MiB) and the chunks in the queue (each at most 64 KiB)
      long bound = 1024 * 1024 + (long) (PortForwarding.BUFFER + 1) * 64 * 1024;
      // Stalled: the guest has used all the credit it got, and no more comes.
      Awaitility.await().atMost(Duration.ofSeconds(20)).pollInterval(Duration.ofMillis(200))
          .until(() -> credit.get() < 8 * 1024 && sent.get() > 0);
      long stalledAt = sent.get();
      Awaitility.await().during(Duration.ofSeconds(1)).atMost(Duration.ofSeconds(5)).until(() -> sent.get() == stalledAt);
      assertTrue(stalledAt <= bound, "the node took " + stalledAt + " bytes for a reader that reads nothing; bound " + bound);
      assertTrue(client.isOpen(), "a guest that keeps to its credit keeps its connection");
      flood.interrupt();
    } finally {
      client.close();
      guest.close();
    }
  }
}
