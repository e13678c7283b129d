package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.failure;
import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.AgentProtocol;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException.Code;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.GuestInfo;
import dev.flotilla.agent.protocol.client.GuestStats;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermissions;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class HandshakeIT {

  private TestAgent agent;

  @BeforeEach
  void start() throws Exception {
    agent = TestAgent.start("sbx-1", 7);
  }

  @AfterEach
  void stop() throws Exception {
    agent.close();
  }

  @Test
  void socketIsOwnerOnly() throws Exception {
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(agent.socket)));
  }

  @Test
  void handshakeDescribesTheGuest() throws Exception {
    AgentClient c = agent.connect();
    GuestInfo info = get(c.handshake("sbx-1", 7, DEADLINE));
    assertEquals(agent.pid(), info.agentPid());
    assertEquals(AgentProtocol.VERSION, info.protocolVersion());
    assertTrue(info.kernel().startsWith(Files.readString(java.nio.file.Path.of("/proc/sys/kernel/osrelease")).trim()),
        info.kernel());
    assertFalse(info.hostname().isEmpty());
    assertFalse(info.virtualization().isEmpty());
    assertTrue(info.bootTimeUnixMs() > 0);
    // The test JVM's child is not PID 1 and its parent is not the init of a fresh pid namespace.
    assertFalse(info.pidNamespaceRoot());
  }

  @Test
  void pingAndStatsAfterHandshake() throws Exception {
    AgentClient c = agent.handshaken();
    assertTrue(get(c.ping(DEADLINE)).toNanos() > 0);
    GuestStats s = get(c.stats(DEADLINE));
    assertTrue(s.processCount() >= 1, s.toString());
    assertTrue(s.memoryUsedBytes() >= TestAgent.rss(agent.pid()) / 2, s.toString());
    assertTrue(s.memoryTotalBytes() > 0, s.toString());
    assertTrue(s.cpuTimeNanos() > 0, s.toString());
  }

  @Test
  void callsBeforeHandshakeAreRefused() throws Exception {
    AgentClient c = agent.connect();
    assertTrue(failure(Code.FAILED_PRECONDITION, c.ping(DEADLINE)).getMessage().contains("handshake required"));
    failure(Code.FAILED_PRECONDITION, c.exec(ExecRequest.of("e", "true"), new CollectingSink(), DEADLINE));
    failure(Code.FAILED_PRECONDITION, c.waitProcess("e", DEADLINE));
    // the connection stays usable: a handshake now succeeds
    get(c.handshake("sbx-1", 7, DEADLINE));
    get(c.ping(DEADLINE));
  }

  @Test
  void staleIncarnationOrOtherSandboxIsFenced() throws Exception {
    AgentClient c = agent.connect();
    String msg = failure(Code.FAILED_PRECONDITION, c.handshake("sbx-1", 6, DEADLINE)).getMessage();
    assertTrue(msg.contains("stale incarnation"), msg);
    failure(Code.FAILED_PRECONDITION, c.handshake("sbx-1", 8, DEADLINE));
    failure(Code.FAILED_PRECONDITION, c.handshake("sbx-2", 7, DEADLINE));
    failure(Code.FAILED_PRECONDITION, c.ping(DEADLINE));
  }

  @Test
  void shutdownEndsProcessesAndExitsZero() throws Exception {
    AgentClient c = agent.handshaken();
    long sleeper = get(c.exec(ExecRequest.of("s", "sleep", "1000"), new CollectingSink(), DEADLINE));
    get(c.shutdown(java.time.Duration.ofSeconds(5), false, DEADLINE));
    assertTrue(agent.process.waitFor(DEADLINE.toSeconds(), java.util.concurrent.TimeUnit.SECONDS));
    assertEquals(0, agent.process.exitValue());
    assertFalse(ProcessHandle.of(sleeper).map(ProcessHandle::isAlive).orElse(false));
    get(c.closed());
  }

  @Test
  void aSignalledAgentTakesItsProcessesWithIt() throws Exception {
    AgentClient c = agent.handshaken();
    long sleeper = get(c.exec(ExecRequest.of("s", "sleep", "1000"), new CollectingSink(), DEADLINE));
    try {
      agent.process.destroy(); // SIGTERM to the agent
      assertTrue(agent.process.waitFor(DEADLINE.toSeconds(), java.util.concurrent.TimeUnit.SECONDS));
      org.awaitility.Awaitility.await("sleep ends").atMost(DEADLINE)
          .until(() -> !ProcessHandle.of(sleeper).map(ProcessHandle::isAlive).orElse(false));
    } finally {
      ProcessHandle.of(sleeper).ifPresent(ProcessHandle::destroyForcibly); // orphaned if the test fails
    }
  }
}
