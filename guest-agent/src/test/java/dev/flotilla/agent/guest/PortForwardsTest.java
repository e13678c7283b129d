package dev.flotilla.agent.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.AgentException;
import dev.flotilla.agent.protocol.client.PortSink;
import dev.flotilla.agent.protocol.client.PortStream;
import dev.flotilla.agent.protocol.frame.MemoryPipe;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The agent's port forwarding in process (its loopback is this JVM's): the server's half-close
 * reaches the host, which sends on; the host's half-close reaches the server; a refused port; the
 * host's abort resets the socket; the server's reset reaches the host.
 */
class PortForwardsTest {
  private static final Duration DEADLINE = Duration.ofSeconds(10);
  private AgentClient client;
  private ServerSocket server;

  @BeforeEach
  void connect() throws Exception {
    GuestAgent agent = new GuestAgent(AgentConfig.of("sbx", 1), powerOff -> { });
    MemoryPipe toAgent = new MemoryPipe(1 << 20);
    MemoryPipe toHost = new MemoryPipe(1 << 20);
    agent.serveAsync(toAgent.input(), toHost.output(), "pipe");
    client = AgentClients.over(toHost.input(), toAgent.output(), "pipe");
    client.handshake("sbx", 1, DEADLINE).get(10, TimeUnit.SECONDS);
    server = new ServerSocket(0, 8, InetAddress.getByName("127.0.0.1"));
  }

  @AfterEach
  void close() throws IOException {
    client.close();
    server.close();
  }

  /** What the host's side of a port received, and how it ended. */
  static final class Collected implements PortSink {
    final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    final CompletableFuture<String> end = new CompletableFuture<>();

    @Override
    public synchronized void onData(byte[] data, Runnable release) {
      bytes.writeBytes(data);
      release.run();
    }

    @Override
    public void onEnd() {
      end.complete(text());
    }

    @Override
    public void onError(Throwable error) {
      end.completeExceptionally(error);
    }

    synchronized String text() {
      return bytes.toString(StandardCharsets.UTF_8);
    }
  }

  @Test
  void eachHalfCloseReachesTheOtherSideWhichGoesOn() throws Exception {
    CompletableFuture<String> serverRead = CompletableFuture.supplyAsync(() -> {
      try (Socket s = server.accept()) {
        s.getOutputStream().write("hello\n".getBytes(StandardCharsets.UTF_8));
        s.shutdownOutput(); // the server is done talking, and listens on
        return new String(s.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      } catch (IOException e) {
        throw new IllegalStateException(e);
      }
    });
    Collected sink = new Collected();
    PortStream port = client.openPort(server.getLocalPort(), sink, DEADLINE).get(10, TimeUnit.SECONDS);
    assertEquals("127.0.0.1:" + server.getLocalPort(), port.address());
    assertEquals("hello\n", sink.end.get(10, TimeUnit.SECONDS), "the server's half-close ends what the host reads");
    assertTrue(!port.done().isDone(), "the host's side is still open");
    port.write("still here\n".getBytes(StandardCharsets.UTF_8)).get(10, TimeUnit.SECONDS);
    port.closeWrite();
    assertEquals("still here\n", serverRead.get(10, TimeUnit.SECONDS), "the host's half-close ends what the server reads");
    port.done().get(10, TimeUnit.SECONDS);
  }

  @Test
  void aRefusedPortIsUnavailable() throws Exception {
    int port = server.getLocalPort();
    server.close();
    ExecutionException e = assertThrows(ExecutionException.class,
        () -> client.openPort(port, new Collected(), DEADLINE).get(10, TimeUnit.SECONDS));
    AgentException ae = assertInstanceOf(AgentException.class, e.getCause());
    assertEquals(AgentException.Code.UNAVAILABLE, ae.code());
    assertEquals("openPort " + port + ": nothing listens on port " + port + " in the sandbox", ae.getMessage());
    ExecutionException bad = assertThrows(ExecutionException.class,
        () -> client.openPort(0, new Collected(), DEADLINE).get(10, TimeUnit.SECONDS));
    assertEquals(AgentException.Code.INVALID_ARGUMENT, ((AgentException) bad.getCause()).code());
  }

  @Test
  void theHostsAbortResetsTheSocketAndTheServersResetReachesTheHost() throws Exception {
    CompletableFuture<Throwable> serverSaw = CompletableFuture.supplyAsync(() -> {
      try (Socket s = server.accept(); InputStream in = s.getInputStream()) {
        while (in.read() >= 0) { }
        return null; // a FIN, not a reset
      } catch (IOException e) {
        return e;
      }
    });
    Collected sink = new Collected();
    PortStream port = client.openPort(server.getLocalPort(), sink, DEADLINE).get(10, TimeUnit.SECONDS);
    port.write(new byte[1000]).get(10, TimeUnit.SECONDS);
    port.abort("client gone");
    Throwable seen = serverSaw.get(10, TimeUnit.SECONDS);
    assertTrue(seen != null && String.valueOf(seen.getMessage()).contains("reset"), "the server saw a reset: " + seen);

    CompletableFuture<Void> resetByServer = CompletableFuture.runAsync(() -> {
      try (Socket s = server.accept()) {
        s.setSoLinger(true, 0); // close with RST
      } catch (IOException e) {
        throw new IllegalStateException(e);
      }
    });
    Collected other = new Collected();
    PortStream second;
    try {
      second = client.openPort(server.getLocalPort(), other, DEADLINE).get(10, TimeUnit.SECONDS);
    } catch (ExecutionException opening) {
      // the reset came before the agent's connect returned: the open fails, saying so (never "nothing listens")
      resetByServer.get(10, TimeUnit.SECONDS);
      AgentException ae = assertInstanceOf(AgentException.class, opening.getCause());
      assertEquals(AgentException.Code.UNAVAILABLE, ae.code());
      assertTrue(ae.getMessage().contains("aborted as it opened"), ae.getMessage());
      return;
    }
    resetByServer.get(10, TimeUnit.SECONDS);
    ExecutionException e = assertThrows(ExecutionException.class, () -> other.end.get(10, TimeUnit.SECONDS));
    assertTrue(e.getCause().getMessage().contains("the connection in the sandbox was aborted"), e.getCause().getMessage());
    assertThrows(ExecutionException.class, () -> second.done().get(10, TimeUnit.SECONDS));
  }
}
