package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.ExitStatus;
import dev.flotilla.agent.protocol.client.GuestInfo;
import dev.flotilla.agent.protocol.client.GuestStats;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The agent in a fresh pid namespace with its own /proc, as PID 1 itself and under tini (as the
 * process driver runs it). Skipped where {@code unshare} is not allowed.
 */
class PidNamespaceIT {

  private static final List<String> UNSHARE = List.of("unshare", "--pid", "--fork", "--mount-proc");
  private TestAgent agent;

  @BeforeAll
  static void requireUnshare() throws Exception {
    boolean ok;
    try {
      Process p = new ProcessBuilder(List.of("unshare", "--pid", "--fork", "--mount-proc", "true")).redirectErrorStream(true).start();
      ok = p.waitFor(20, TimeUnit.SECONDS) && p.exitValue() == 0;
    } catch (java.io.IOException e) {
      ok = false;
    }
    Assumptions.assumeTrue(ok, "unshare --pid --mount-proc is not permitted here");
  }

  @AfterEach
  void stop() throws Exception {
    if (agent != null) agent.close();
  }

  @Test
  void agentAsPidOneRunsProcessesAndReportsItself() throws Exception {
    agent = TestAgent.startUnder(UNSHARE, "sbx-ns", 1);
    AgentClient c = agent.handshaken();
    GuestInfo info = get(c.handshake("sbx-ns", 1, DEADLINE));
    assertEquals(1, info.agentPid());
    assertTrue(info.pidNamespaceRoot());
    CollectingSink sink = new CollectingSink();
    get(c.exec(ExecRequest.of("pid", "sh", "-c", "echo $$"), sink, DEADLINE));
    assertEquals(new ExitStatus(0, 0), get(c.waitProcess("pid", DEADLINE)));
    get(sink.ended);
    assertTrue(Integer.parseInt(sink.stdout().trim()) > 1, sink.stdout());
    get(c.exec(ExecRequest.of("sleep", "sleep", "1000"), new CollectingSink(), DEADLINE));
    get(c.signalProcess("sleep", 15, DEADLINE));
    assertEquals(new ExitStatus(0, 15), get(c.waitProcess("sleep", DEADLINE)));
    GuestStats stats = get(c.stats(DEADLINE));
    assertTrue(stats.processCount() >= 1 && stats.processCount() < 10, "own /proc: " + stats);
  }

  @Test
  void agentUnderTiniIsTheNamespaceRootsChild() throws Exception {
    Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/tini")), "no tini");
    agent = TestAgent.startUnder(List.of("unshare", "--pid", "--fork", "--mount-proc", "/usr/bin/tini", "--"), "sbx-tini", 2);
    AgentClient c = agent.connect();
    GuestInfo info = get(c.handshake("sbx-tini", 2, DEADLINE));
    assertTrue(info.agentPid() > 1, "tini is PID 1, the agent its child: " + info);
    assertTrue(info.pidNamespaceRoot());
  }
}
