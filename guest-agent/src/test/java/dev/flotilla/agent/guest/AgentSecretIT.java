package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.failure;
import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.AgentProtocol;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException;
import dev.flotilla.agent.protocol.client.AgentException.Code;
import java.nio.file.Files;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The per-incarnation secret against a real agent process: only the node that holds it drives the agent. */
class AgentSecretIT {

  private static final SecureRandom RANDOM = new SecureRandom();
  private TestAgent agent;

  @AfterEach
  void stop() throws Exception {
    if (agent != null) agent.close();
  }

  private static byte[] secret() {
    byte[] s = new byte[32];
    RANDOM.nextBytes(s);
    return s;
  }

  @Test
  void theRightSecretIsAcceptedAndTheFileIsGone() throws Exception {
    byte[] s = secret();
    agent = TestAgent.startWithSecret(s, List.of(), "sbx-s", 2);
    // read at start, then deleted: the sandbox's processes never find it
    assertFalse(Files.exists(agent.dir.resolve(TestAgent.SECRET_FILE)), agent.logText());
    assertFalse(agent.logText().contains(HexFormat.of().formatHex(s)), agent.logText());
    AgentClient c = agent.connectWithSecret(s);
    get(c.handshake("sbx-s", 2, DEADLINE));
    assertTrue(get(c.ping(DEADLINE)).toNanos() > 0);
    // every handshake carries it: a second one on the same connection is fine too
    get(c.handshake("sbx-s", 2, DEADLINE));
  }

  @Test
  void aWrongOrMissingSecretIsRefusedAndTheConnectionClosed() throws Exception {
    byte[] s = secret();
    agent = TestAgent.startWithSecret(s, List.of(), "sbx-s", 2);

    byte[] wrong = s.clone();
    wrong[31] ^= 1;
    AgentClient c = agent.connectWithSecret(wrong);
    AgentException e = failure(Code.PERMISSION_DENIED, c.handshake("sbx-s", 2, DEADLINE));
    assertTrue(e.getMessage().contains("handshake refused: its secret is wrong"), e.getMessage());
    get(c.closed());
    assertFalse(c.isOpen());

    AgentClient none = agent.connect();
    e = failure(Code.PERMISSION_DENIED, none.handshake("sbx-s", 2, DEADLINE));
    assertTrue(e.getMessage().contains("carries no secret"), e.getMessage());
    get(none.closed());

    // the refusal says nothing about which sandbox or incarnation this agent serves
    AgentClient guess = agent.connectWithSecret(wrong);
    e = failure(Code.PERMISSION_DENIED, guess.handshake("other", 1, DEADLINE));
    assertFalse(e.getMessage().contains("sbx-s"), e.getMessage());

    // the agent is unharmed: its node still gets in
    AgentClient right = agent.connectWithSecret(s);
    get(right.handshake("sbx-s", 2, DEADLINE));
    get(right.ping(DEADLINE));
  }

  @Test
  void refusedHandshakesNeverRenewTheLease() throws Exception {
    byte[] s = secret();
    Duration lease = Duration.ofMillis(1500);
    agent = TestAgent.startWithSecret(s, List.of(), "sbx-s", 2);
    AgentClient node = agent.connectWithSecret(s);
    get(node.handshake("sbx-s", 2, lease, DEADLINE));
    byte[] wrong = secret();
    AtomicBoolean go = new AtomicBoolean(true);
    AtomicInteger refused = new AtomicInteger();
    // Someone else keeps knocking, faster than the lease, after the node went silent.
    Thread knocker = new Thread(() -> {
      while (go.get() && agent.process.isAlive()) {
        try (AgentClient c = agent.connectWithSecret(wrong)) {
          c.handshake("sbx-s", 2, lease, DEADLINE).get();
        } catch (Exception ex) {
          if (ex.getCause() instanceof AgentException ae && ae.code() == Code.PERMISSION_DENIED) refused.incrementAndGet();
        }
      }
    }, "knocker");
    knocker.start();
    try {
      await("lease expiry despite the knocking").atMost(Duration.ofSeconds(15)).until(() -> !agent.process.isAlive());
    } finally {
      go.set(false);
      knocker.join(DEADLINE.toMillis());
    }
    assertEquals(AgentProtocol.EXIT_LEASE_EXPIRED, agent.process.exitValue(), agent.logText());
    assertTrue(refused.get() > 3, "only " + refused.get() + " refused handshakes: the test did not knock");
  }

  @Test
  void onFirstUseTheFirstSecretIsFixed() throws Exception {
    agent = TestAgent.startWithArgs(List.of("--secret-on-first-handshake"), "sbx-t", 5);
    byte[] first = secret();
    // a handshake without a secret fixes nothing and is refused
    failure(Code.PERMISSION_DENIED, agent.connect().handshake("sbx-t", 5, DEADLINE));
    // nor does a stale one: the secret is fixed only by an accepted handshake
    failure(Code.FAILED_PRECONDITION, agent.connectWithSecret(secret()).handshake("sbx-t", 4, DEADLINE));

    AgentClient c = agent.connectWithSecret(first);
    get(c.handshake("sbx-t", 5, DEADLINE));
    c.close();
    AgentException e = failure(Code.PERMISSION_DENIED, agent.connectWithSecret(secret()).handshake("sbx-t", 5, DEADLINE));
    assertTrue(e.getMessage().contains("secret is wrong"), e.getMessage());
    AgentClient again = agent.connectWithSecret(first);
    get(again.handshake("sbx-t", 5, DEADLINE));
    get(again.ping(DEADLINE));
  }

  @Test
  void withoutASecretOptionTheLegacyHandshakeWorksWithAWarning() throws Exception {
    agent = TestAgent.start("sbx-l", 1);
    get(agent.connect().handshake("sbx-l", 1, DEADLINE));
    assertTrue(agent.logText().contains("WARNING: no --secret-file or --secret-on-first-handshake"), agent.logText());
  }

  @Test
  void aSecretFileThatIsNotHexStopsTheAgent() throws Exception {
    var dir = Files.createTempDirectory("flotilla-agent-badsecret");
    var file = dir.resolve("agent.secret");
    Files.writeString(file, "not hex at all, and short");
    String jar = System.getProperty("flotilla.agent.jar", "target/flotilla-guest-agent.jar");
    Process p = new ProcessBuilder(java.nio.file.Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar", jar,
        "--listen", "unix:" + dir.resolve("agent.sock"), "--sandbox-id", "x", "--incarnation", "1", "--secret-file", file.toString())
        .redirectErrorStream(true).start();
    try {
      String out = new String(p.getInputStream().readAllBytes());
      assertTrue(p.waitFor(DEADLINE.toSeconds(), java.util.concurrent.TimeUnit.SECONDS));
      assertEquals(2, p.exitValue(), out);
      assertTrue(out.contains("does not hold hexadecimal digits only"), out);
      assertFalse(Files.exists(dir.resolve("agent.sock")));
    } finally {
      p.destroyForcibly();
      Files.deleteIfExists(file);
      Files.deleteIfExists(dir);
    }
  }
}
