package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.AgentProtocol;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.ExecRequest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The agent's lease against a real agent process: it ends the sandbox when nobody renews it. */
class LeaseIT {

  private static final Duration LEASE = Duration.ofSeconds(1);

  private TestAgent agent;
  private final ScheduledExecutorService pinger = Executors.newSingleThreadScheduledExecutor(r -> {
    Thread t = new Thread(r, "lease-it-pinger");
    t.setDaemon(true);
    return t;
  });

  @BeforeEach
  void start() throws Exception {
    agent = TestAgent.start("sbx-lease", 4);
  }

  @AfterEach
  void stop() throws Exception {
    pinger.shutdownNow();
    signal("CONT", agent.pid()); // never leave a stopped agent behind
    agent.close();
  }

  @Test
  void withoutRenewalsTheAgentKillsItsProcessesAndExits75() throws Exception {
    AgentClient c = agent.connect();
    get(c.handshake(agent.sandboxId, agent.incarnation, LEASE, DEADLINE));
    long sleepPid = get(c.exec(ExecRequest.of("sleep", "sleep", "1000"), new CollectingSink(), DEADLINE));
    long since = System.nanoTime();
    assertTrue(alive(sleepPid));
    // the connection stays open, but the host sends nothing more
    await("lease expiry").atMost(Duration.ofSeconds(10)).until(() -> !agent.process.isAlive());
    long took = System.nanoTime() - since;
    assertEquals(AgentProtocol.EXIT_LEASE_EXPIRED, agent.process.exitValue(), agent.logText());
    assertTrue(took >= LEASE.toNanos() - TimeUnit.MILLISECONDS.toNanos(100), "ended after " + took / 1_000_000 + " ms, before the lease ran out");
    await("the sandbox's process is gone").atMost(Duration.ofSeconds(5)).until(() -> !alive(sleepPid));
    assertTrue(agent.logText().contains("lease expired: no renewal from the node for"), agent.logText());
    assertTrue(agent.logText().contains("ending sandbox sbx-lease incarnation 4"), agent.logText());
  }

  @Test
  void aLeaseGivenAtStartEndsAnAgentThatNoNodeEverHandshakes() throws Exception {
    // a node frozen (or dead) between starting the VM and its first handshake
    agent.close();
    agent = TestAgent.startWithArgs(List.of("--lease-ms", Long.toString(LEASE.toMillis())), "sbx-lease", 4);
    await("lease expiry without any handshake").atMost(Duration.ofSeconds(10)).until(() -> !agent.process.isAlive());
    assertEquals(AgentProtocol.EXIT_LEASE_EXPIRED, agent.process.exitValue(), agent.logText());
    assertFalse(agent.logText().contains("did not run"), agent.logText());
  }

  @Test
  void theLeaseOutlivesTheConnection() throws Exception {
    AgentClient c = agent.connect();
    get(c.handshake(agent.sandboxId, agent.incarnation, LEASE, DEADLINE));
    c.close();
    await("lease expiry after the host went away").atMost(Duration.ofSeconds(10)).until(() -> !agent.process.isAlive());
    assertEquals(AgentProtocol.EXIT_LEASE_EXPIRED, agent.process.exitValue(), agent.logText());
  }

  @Test
  void aHostOfAnotherIncarnationDoesNotRenew() throws Exception {
    get(agent.connect().handshake(agent.sandboxId, agent.incarnation, LEASE, DEADLINE));
    AgentClient stale = agent.connect();
    // refused handshakes and refused calls: frames, but not from a host that may drive this agent
    pinger.scheduleWithFixedDelay(() -> {
      stale.handshake(agent.sandboxId, agent.incarnation + 1, LEASE, DEADLINE);
      stale.ping(DEADLINE);
    }, 0, 100, TimeUnit.MILLISECONDS);
    await("lease expiry").atMost(Duration.ofSeconds(10)).until(() -> !agent.process.isAlive());
    assertEquals(AgentProtocol.EXIT_LEASE_EXPIRED, agent.process.exitValue(), agent.logText());
  }

  @Test
  void pingsKeepItAlive() throws Exception {
    AgentClient c = agent.connect();
    get(c.handshake(agent.sandboxId, agent.incarnation, LEASE, DEADLINE));
    pinger.scheduleAtFixedRate(() -> c.ping(DEADLINE), 0, 200, TimeUnit.MILLISECONDS);
    await("alive through several leases").during(Duration.ofMillis(3500)).atMost(Duration.ofSeconds(5))
        .until(() -> agent.process.isAlive());
    // and a reconnect with a new handshake renews like any other frame
    AgentClient again = agent.connect();
    get(again.handshake(agent.sandboxId, agent.incarnation, LEASE, DEADLINE));
    get(again.ping(DEADLINE));
  }

  @Test
  void aPauseTheHostAnnouncedRestartsTheLeaseInsteadOfEndingTheSandbox() throws Exception {
    AgentClient c = agent.connect();
    get(c.handshake(agent.sandboxId, agent.incarnation, LEASE, DEADLINE));
    get(c.handshake(agent.sandboxId, agent.incarnation, LEASE, true, DEADLINE)); // PauseSandbox: announced, then frozen
    signal("STOP", agent.pid());
    // nothing is sent while it is stopped: only its own clock could see the time pass
    await("stopped for 3 s, three leases").during(Duration.ofSeconds(3)).atMost(Duration.ofSeconds(5))
        .until(() -> state(agent.pid()) == 'T');
    signal("CONT", agent.pid());
    // no ping before the agent has judged its lease: it must see the announced pause, not an expiry
    await("frozen detection").atMost(Duration.ofSeconds(5))
        .until(() -> agent.logText().contains("paused by its node for") || !agent.process.isAlive());
    assertTrue(agent.process.isAlive(), agent.logText());
    pinger.scheduleAtFixedRate(() -> c.ping(DEADLINE), 0, 200, TimeUnit.MILLISECONDS);
    await("alive after the thaw").during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(4))
        .until(() -> agent.process.isAlive());
  }

  @Test
  void anAgentFrozenWithItsHostPastItsLeaseServesNobodyAfterTheThawAndEnds() throws Exception {
    AgentClient c = agent.connect();
    get(c.handshake(agent.sandboxId, agent.incarnation, LEASE, DEADLINE));
    get(c.ping(DEADLINE));
    signal("STOP", agent.pid());
    await("stopped for 3 s, three leases").during(Duration.ofSeconds(3)).atMost(Duration.ofSeconds(5))
        .until(() -> state(agent.pid()) == 'T');
    // the thawed node's frame is waiting before the agent runs again: the harder order
    var exec = c.exec(ExecRequest.of("echo", "echo", "stale"), new CollectingSink(), DEADLINE);
    signal("CONT", agent.pid());
    var refused = Calls.failure(dev.flotilla.agent.protocol.client.AgentException.Code.FAILED_PRECONDITION, exec);
    assertTrue(refused.getMessage().contains("lease expired"), refused.getMessage());
    await("lease expiry").atMost(Duration.ofSeconds(10)).until(() -> !agent.process.isAlive());
    assertEquals(AgentProtocol.EXIT_LEASE_EXPIRED, agent.process.exitValue(), agent.logText());
  }

  @Test
  void aShutdownLongerThanTheLeaseEndsCleanly() throws Exception {
    AgentClient c = agent.connect();
    get(c.handshake(agent.sandboxId, agent.incarnation, LEASE, DEADLINE));
    CollectingSink sink = new CollectingSink();
    get(c.exec(ExecRequest.of("stubborn", "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"), sink, DEADLINE));
    await("trap set").atMost(DEADLINE).until(() -> sink.stdout().contains("ready"));
    // the process ignores SIGTERM, so the agent waits out the whole grace, three leases, in silence
    get(c.shutdown(LEASE.multipliedBy(3), false, DEADLINE.plus(LEASE.multipliedBy(3))));
    await("agent exit").atMost(DEADLINE).until(() -> !agent.process.isAlive());
    assertEquals(0, agent.process.exitValue(), agent.logText());
    assertFalse(agent.logText().contains("lease expired"), agent.logText());
  }

  @Test
  void leaseZeroSwitchesItOff() throws Exception {
    get(agent.connect().handshake(agent.sandboxId, agent.incarnation, LEASE, DEADLINE));
    // the latest handshake's lease applies: none
    AgentClient c = agent.connect();
    get(c.handshake(agent.sandboxId, agent.incarnation, Duration.ZERO, DEADLINE));
    long sleepPid = get(c.exec(ExecRequest.of("sleep", "sleep", "1000"), new CollectingSink(), DEADLINE));
    await("no expiry without a lease").during(Duration.ofMillis(2500)).atMost(Duration.ofSeconds(4))
        .until(() -> agent.process.isAlive() && alive(sleepPid));
    assertTrue(agent.logText().contains("lease off"), agent.logText());
  }

  /** Alive and not a zombie. */
  private static boolean alive(long pid) {
    char s = state(pid);
    return s != 0 && s != 'Z' && s != 'X';
  }

  /** The state letter of /proc/PID/stat, 0 when there is no such process. */
  private static char state(long pid) {
    try {
      String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
      return stat.charAt(stat.lastIndexOf(')') + 2);
    } catch (IOException e) {
      return 0;
    }
  }

  private static void signal(String sig, long pid) throws Exception {
    Process k = new ProcessBuilder("kill", "-" + sig, Long.toString(pid)).redirectErrorStream(true).start();
    k.waitFor(10, TimeUnit.SECONDS);
  }
}
