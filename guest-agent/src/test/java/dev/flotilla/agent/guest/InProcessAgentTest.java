package dev.flotilla.agent.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.ExitStatus;
import dev.flotilla.agent.protocol.frame.MemoryPipe;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The server loop over plain streams, as a serial-port transport would drive it. */
class InProcessAgentTest {

  private static final Duration DEADLINE = Duration.ofSeconds(10);

  @Test
  void servesAnyStreamPair() throws Exception {
    CompletableFuture<Boolean> exited = new CompletableFuture<>();
    GuestAgent agent = new GuestAgent(AgentConfig.of("sbx", 3), exited::complete);
    MemoryPipe toAgent = new MemoryPipe(1 << 16);
    MemoryPipe toHost = new MemoryPipe(1 << 16);
    CompletableFuture<Throwable> served = agent.serveAsync(toAgent.input(), toHost.output(), "pipe");
    try (AgentClient c = AgentClients.over(toHost.input(), toAgent.output(), "pipe")) {
      assertEquals(3, c.handshake("sbx", 3, DEADLINE).get(10, TimeUnit.SECONDS).protocolVersion() + 2);
      CollectingSink sink = new CollectingSink();
      c.exec(ExecRequest.of("e", "sh", "-c", "echo hi; exit 4"), sink, DEADLINE).get(10, TimeUnit.SECONDS);
      assertEquals(new ExitStatus(4, 0), c.waitProcess("e", DEADLINE).get(10, TimeUnit.SECONDS));
      sink.ended.get(10, TimeUnit.SECONDS);
      assertEquals("hi\n", sink.stdout());
      c.shutdown(Duration.ofSeconds(1), true, DEADLINE).get(10, TimeUnit.SECONDS);
      assertTrue(exited.get(10, TimeUnit.SECONDS), "power_off reaches the exit action");
    }
    assertNull(served.get(10, TimeUnit.SECONDS), "the host's close is a clean end");
  }
}
