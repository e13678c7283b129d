package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.cli.SandboxServiceMethods;
import io.grpc.CallOptions;
import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import java.io.InputStream;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The gRPC edge's connection idle timeout (grpc.conf), shortened here to 2 s with a ping every
 * second: a connection that sends nothing, or only calls that fail authentication, is closed by
 * the node; a call that is open but quiet (an exec of sleep) is kept alive by the pings.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ConnectionIdleIT extends NodeScenarios {
  static final Duration IDLE = Duration.ofSeconds(2);

  @BeforeAll
  void startNode() throws Exception {
    Path dataDir = TestNode.shortTempDir();
    boot(new TestNode(dataDir, null, ConfigFactory.parseString("pekko.http.server.idle-timeout = " + IDLE.toMillis() + "ms\n"
        + "pekko.http.server.http2.ping-interval = 1s\npekko.http.server.http2.ping-timeout = 1s\n")));
  }

  @AfterAll
  void stopNode() {
    tearDown(node);
  }

  @Test
  void aConnectionThatSendsNothingIsClosedByTheNode() throws Exception {
    try (Socket s = new Socket("127.0.0.1", node.node.grpcPort())) {
      // well past the idle timeout: a node that never closes it fails this read with a timeout
      s.setSoTimeout(30_000);
      InputStream in = s.getInputStream();
      long t0 = System.nanoTime();
      try {
        while (in.read() != -1) {
          // the node's HTTP/2 preface (SETTINGS), then end of stream
        }
      } catch (java.net.SocketException reset) {
        // closed with a reset (the client never read the node's SETTINGS): closed all the same
      }
      long ms = (System.nanoTime() - t0) / 1_000_000;
      System.out.println("idle connection closed by the node after " + ms + " ms (idle-timeout " + IDLE.toMillis() + " ms)");
    }
  }

  @Test
  void aConnectionWhoseCallsFailAuthenticationHoldsNothingOnceIdle() {
    ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", node.node.grpcPort()).usePlaintext()
        .idleTimeout(1, TimeUnit.HOURS).build(); // the client would keep it; only the node closes it
    try {
      Metadata h = new Metadata();
      h.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer not-a-token-of-anyone-0123456789");
      var calls = io.grpc.ClientInterceptors.intercept(channel, MetadataUtils.newAttachHeadersInterceptor(h));
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> ClientCalls.blockingUnaryCall(calls,
          SandboxServiceMethods.LIST_SANDBOXES, CallOptions.DEFAULT.withDeadlineAfter(10, TimeUnit.SECONDS),
          ListSandboxesRequest.getDefaultInstance()));
      assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
      assertEquals(ConnectivityState.READY, channel.getState(false), "the connection is up after the refused call");
      // then: the node closes it (the channel falls back to IDLE once its transport is gone)
      org.awaitility.Awaitility.await("the node closes the unauthenticated connection").atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(100))
          .until(() -> channel.getState(false) != ConnectivityState.READY);
    } finally {
      channel.shutdownNow();
    }
  }

  @Test
  void aQuietCallOutlivesTheIdleTimeout() {
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    // the exec's stream carries nothing for 3x the idle timeout; the node's pings keep it open
    Cli r = cli("", "exec", id, "--", "sh", "-c", "sleep " + IDLE.multipliedBy(3).toSeconds() + "; echo done");
    assertEquals(0, r.code(), r.err());
    assertEquals("done\n", r.out());
  }
}
