package dev.flotilla.vm.supervisor;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.flotilla.vm.VmExit;
import dev.flotilla.vm.process.TestSandboxes;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Command;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Pause;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.Resume;
import dev.flotilla.vm.supervisor.VmSupervisorProtocol.VmExited;
import java.time.Duration;
import org.apache.pekko.Done;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.pattern.StatusReply;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The guest agent's lease as the supervisor states and renews it, over the real process driver. */
class VmSupervisorLeaseTest {
  private static final Duration T = Duration.ofSeconds(30);
  private static final Duration LEASE = Duration.ofSeconds(2);
  private static ActorTestKit kit;
  private TestSandboxes sandboxes;
  private VmSupervisor.Settings settings;

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
    settings = VmSupervisor.Settings.create(kit.system()).withLease(LEASE, Duration.ofMillis(400));
  }

  @AfterEach
  void tearDown() {
    sandboxes.close();
  }

  private SupervisedVm start(VmSupervisor.Settings s) {
    return SupervisedVm.start(kit, sandboxes, sandboxes.spec(), s);
  }

  private static String echo(ActorRef<Command> ref, String word) throws Exception {
    return SupervisedVm.output(SupervisedVm.exec(kit, ref, "echo", word), false);
  }

  private static void stop(SupervisedVm s) {
    VmExited exited = s.stop(kit);
    assertTrue(exited.exit().requested(), exited.toString());
  }

  @Test
  void healthPingsRenewTheLeaseForAsLongAsTheSandboxRuns() throws Exception {
    SupervisedVm s = start(settings);
    // three and a half leases without a call from anyone but the health pings
    s.parent().expectNoMessage(LEASE.multipliedBy(7).dividedBy(2));
    assertTrue(s.pids().stream().allMatch(TestSandboxes::alive), "the sandbox still runs");
    assertEquals("still here\n", echo(s.ref(), "still here"));
    stop(s);
  }

  @Test
  void aNodeThatStopsRenewingFindsItsSandboxEndedWithTheReason() throws Exception {
    TestSilentNode node = new TestSilentNode();
    SupervisedVm s = start(settings.withConnector(node));
    assertEquals("before\n", echo(s.ref(), "before"));
    node.silence();
    VmExited exited = s.parent().expectMessageClass(VmExited.class, T);
    VmExit e = exited.exit();
    assertEquals(VmExit.AGENT_LEASE_EXPIRED, e.exitCode(), e.toString());
    assertFalse(e.requested(), e.toString());
    assertEquals("the agent ended the sandbox: lease expired (its node did not renew it within 2 s)", e.reason());
    s.parent().expectTerminated(s.ref(), T);
    await().atMost(T).until(() -> s.pids().stream().noneMatch(TestSandboxes::alive));
  }

  @Test
  void aSandboxPausedForLongerThanItsLeaseResumes() throws Exception {
    SupervisedVm s = start(settings);
    TestProbe<StatusReply<Done>> ack = kit.createTestProbe();
    s.ref().tell(new Pause(ack.getRef()));
    assertTrue(ack.receiveMessage(T).isSuccess());
    // no pings into a paused sandbox: the agent is frozen and its lease with it
    s.parent().expectNoMessage(LEASE.plusSeconds(1));
    s.ref().tell(new Resume(ack.getRef()));
    assertTrue(ack.receiveMessage(T).isSuccess());
    s.parent().expectNoMessage(LEASE.multipliedBy(2));
    assertEquals("resumed\n", echo(s.ref(), "resumed"));
    stop(s);
  }

  @Test
  void settingsReadTheLeaseAndRefuseOneThatPingsCannotRenew() {
    Config base = ConfigFactory.load().getConfig("flotilla.vm.supervisor");
    VmSupervisor.Settings defaults = VmSupervisor.Settings.fromConfig(base);
    assertEquals(Duration.ofSeconds(10), defaults.lease());
    assertEquals(Duration.ofSeconds(1), defaults.healthInterval());
    assertEquals(Duration.ZERO, VmSupervisor.Settings.fromConfig(ConfigFactory.parseString("lease = off").withFallback(base)).lease());
    assertEquals(Duration.ZERO, VmSupervisor.Settings.fromConfig(ConfigFactory.parseString("lease = 0").withFallback(base)).lease());
    assertEquals(Duration.ZERO, VmSupervisor.Settings.fromConfig(ConfigFactory.parseString("lease = 0s").withFallback(base)).lease());
    // no lease, no constraint on the pings
    VmSupervisor.Settings.fromConfig(ConfigFactory.parseString("lease = off, health-interval = 30s").withFallback(base));
    IllegalArgumentException tooRare = assertThrows(IllegalArgumentException.class, () ->
        VmSupervisor.Settings.fromConfig(ConfigFactory.parseString("health-interval = 4s").withFallback(base)));
    assertTrue(tooRare.getMessage().contains("health-interval (4000 ms) must be under a third of flotilla.vm.supervisor.lease (10000 ms)"),
        tooRare.getMessage());
    assertThrows(IllegalArgumentException.class, () -> settingsWith("lease = -1s", base));
  }

  private static VmSupervisor.Settings settingsWith(String conf, Config base) {
    return VmSupervisor.Settings.fromConfig(ConfigFactory.parseString(conf).withFallback(base));
  }
}
