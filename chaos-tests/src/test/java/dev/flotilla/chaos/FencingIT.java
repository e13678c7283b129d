package dev.flotilla.chaos;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.Sandbox;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Fencing where it is weakest (docs/chaos.md, "Fencing"): a host frozen together with its VMs, a
 * CPU-starved agent whose node dies, a PAUSED sandbox whose node dies. One 3-node cluster runs the
 * three in sequence. Through all of them probes exec {@code echo $FLOTILLA_INCARNATION} in the
 * affected sandboxes through every node's API; the check: once an exec answered by incarnation k
 * has ended, no exec that starts later is answered by a lower one. Also: no sandbox has two live
 * agents once the recovery bound has passed, and nothing is left running at the end.
 */
@ExtendWith(LogsOnFailure.class)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class FencingIT {
  static final Duration BOUND = Profile.current().recoveryBound();

  /** The check must be able to fail: a crafted history with a stale answer, one without. */
  @Test
  @Order(1)
  void historyCheckFlagsAnOldIncarnationThatAnswersAfterTheNewOne() {
    FencingHistory bad = new FencingHistory();
    bad.add(exec("a", 1, 0, 10, 1));
    bad.add(exec("a", 2, 20, 30, 2)); // incarnation 2 answered, ended at 30
    bad.add(exec("a", 3, 31, 40, 1)); // started after 30, answered by 1: stale
    bad.add(exec("b", 1, 31, 40, 1)); // another sandbox: no relation
    assertEquals(1, bad.violations().size(), bad.violations().toString());
    assertEquals(3, bad.violations().get(0).stale().node());

    FencingHistory good = new FencingHistory();
    good.add(exec("a", 1, 0, 10, 1));
    good.add(exec("a", 2, 20, 30, 2));
    good.add(exec("a", 3, 25, 40, 1)); // overlaps the first answer of 2: not ordered after it
    good.add(new FencingHistory.Exec("a", 3, 35, 45, -1, FencingHistory.Outcome.UNKNOWN, "UNAVAILABLE"));
    good.add(exec("a", 1, 50, 60, 2));
    assertEquals(List.of(), good.violations());
  }

  private static FencingHistory.Exec exec(String id, int node, long start, long end, long incarnation) {
    return new FencingHistory.Exec(id, node, start, end, incarnation, FencingHistory.Outcome.OK, "");
  }

  @Test
  @Order(2)
  void anOldIncarnationNeverServesOnceTheNewOneHas() throws IOException {
    ChaosReport.section("Fencing (FencingIT): 3 nodes, 6 sandboxes, recovery bound " + BOUND.toSeconds() + " s");
    List<String> problems = new ArrayList<>();
    TestCluster c = TestCluster.builder().nodes(3).sandboxes(6).name("fencing").start();
    try (c; FencingProbes probes = new FencingProbes(c)) {
      scenario("host frozen with its VMs", problems, () -> frozenHost(c, probes, 3, problems));
      scenario("CPU-starved agent, node JVM killed", problems, () -> starvedAgent(c, probes, 2, problems));
      scenario("PAUSED sandbox on a node that dies", problems, () -> pausedOnDeadNode(c, probes, 1, problems));
      probes.close();

      List<FencingHistory.Violation> v = probes.history.violations();
      ChaosReport.line("execs probed: " + probes.history.all().size() + "; an old incarnation answering after the new one had: "
          + v.size() + " (must be 0)");
      v.stream().limit(10).forEach(x -> ChaosReport.line("   VIOLATED: " + x));
      if (!v.isEmpty()) problems.add(v.size() + " execs answered by an old incarnation after the new one had answered");
      leftAtTheEnd(c, problems);
    } finally {
      ChaosReport.write();
    }
    String base = c.local.baseDir().toString() + "/";
    List<String> leaked = ProcessHandle.allProcesses().filter(p -> p.info().commandLine().orElse("").contains(base))
        .map(p -> p.pid() + " " + p.info().commandLine().orElse("").substring(0, Math.min(160,
            p.info().commandLine().orElse("").length()))).toList();
    if (!leaked.isEmpty()) problems.add("processes left after close: " + leaked);
    List<String> containers = FencingHost.containersWithProcesses(c.initial.stream().map(Sandbox::getId).toList());
    if (!containers.isEmpty()) problems.add("sandbox containers with processes after close: " + containers);
    assertTrue(problems.isEmpty(), "fencing problems:\n  " + String.join("\n  ", problems));
  }

  private interface Step {
    void run() throws Exception;
  }

  /** Runs one scenario; a failure is noted and the next scenario still runs. */
  private static void scenario(String name, List<String> problems, Step s) {
    ChaosReport.line("-- " + name);
    try {
      s.run();
    } catch (Exception | AssertionError e) {
      ChaosReport.line("   VIOLATED: " + name + ": " + e);
      problems.add(name + ": " + e);
    }
  }

  // ------------------------------------------------------------------------------ scenario 1

  /**
   * Node {@code n}'s JVM SIGSTOPped and every VM of it frozen (cgroup freezer) until the majority
   * has restarted its sandboxes elsewhere as new incarnations that answer; then everything thawed
   * (the JVM first: its renewals reach the old agents before their own watchdogs tick, the harder
   * order for the lease). The old agents must end, and nothing may answer for them meanwhile.
   */
  private static void frozenHost(TestCluster c, FencingProbes probes, int n, List<String> problems) throws IOException {
    Map<String, Long> old = incarnationsOn(c, n);
    List<String> ids = List.copyOf(old.keySet());
    ChaosReport.line("   node " + n + " holds " + old + " (sandbox=incarnation)");
    probes.watch(ids);
    List<FencingHost.Vm> vms = new ArrayList<>();
    for (var e : old.entrySet()) vms.add(FencingHost.vm(c.local, n, e.getKey(), e.getValue()));
    long t0 = System.nanoTime();
    try {
      c.local.pause(n);
      for (FencingHost.Vm vm : vms) FencingHost.freeze(vm, true);
      await("VMs of node " + n + " frozen").atMost(Duration.ofSeconds(10)).until(() -> vms.stream().allMatch(FencingHost::frozen));
      ChaosReport.line("   froze node " + n + "'s JVM (SIGSTOP) and " + vms.size() + " VM cgroups (" + vms.stream()
          .mapToInt(vm -> FencingHost.pids(vm).size()).sum() + " processes)");
      long took = awaitNewIncarnations(c, old, n);
      ChaosReport.line("   new incarnations answered elsewhere " + took + " ms after the freeze: " + incarnations(c, ids));
      ChaosReport.line("   live agents while frozen: " + agentsOf(c, ids));
    } finally {
      c.local.resume(n);
      for (FencingHost.Vm vm : vms) {
        try {
          FencingHost.freeze(vm, false);
        } catch (RuntimeException gone) {
          // its cgroup is gone: nothing to thaw
        }
      }
    }
    long thawed = System.nanoTime();
    ChaosReport.line("   thawed " + FencingProbes.since(t0).toMillis() + " ms after the freeze (JVM, then VMs)");
    long gone = awaitOldAgentsGone(c, ids, old, "thaw", problems);
    ChaosReport.line("   old agents gone " + gone + " ms after the thaw; live agents now: " + agentsOf(c, ids));
    awaitNodeBackOrRestart(c, n, thawed);
  }

  // ------------------------------------------------------------------------------ scenario 2

  /**
   * One sandbox of node {@code n} gets a CPU-bound tenant and then almost no CPU (1 ms per 100 ms
   * for its whole cgroup), and node {@code n}'s JVM is SIGKILLed alone: its VMs outlive it and
   * nobody renews their leases. The starved agent's watchdog runs late; it must still end its
   * sandbox, and nothing may serve its old incarnation, not even node {@code n} restarted.
   */
  private static void starvedAgent(TestCluster c, FencingProbes probes, int n, List<String> problems) throws IOException {
    Map<String, Long> old = incarnationsOn(c, n);
    List<String> ids = List.copyOf(old.keySet());
    String starvedId = ids.get(0);
    ChaosReport.line("   node " + n + " holds " + old + "; starving " + starvedId);
    probes.watch(ids);
    FencingHost.Vm vm = FencingHost.vm(c.local, n, starvedId, old.get(starvedId));
    // two busy loops compete with the agent's threads for the cgroup's quota
    var spin = c.client(n).exec(starvedId, TestCluster.CALL, "sh", "-c",
        "(while :; do :; done) >/dev/null 2>&1 & (while :; do :; done) >/dev/null 2>&1 & echo spinning");
    assertEquals("spinning\n", spin.stdout(), "busy loops started");
    String before = FencingHost.starve(vm, 1000);
    try {
      long t0 = System.nanoTime();
      c.local.kill(n);
      long took = awaitNewIncarnations(c, old, n);
      ChaosReport.line("   node " + n + " JVM killed; new incarnations answered elsewhere " + took + " ms later: "
          + incarnations(c, ids));
      ChaosReport.line("   live agents at takeover: " + agentsOf(c, ids) + "; processes in the starved old container: "
          + FencingHost.commands(FencingHost.pids(vm)));
      long gone = awaitOldAgentsGone(c, List.of(starvedId), old, "takeover, node " + n + " still down", problems);
      ChaosReport.line("   starved old agent gone " + gone + " ms after the takeover (" + FencingProbes.since(t0).toMillis()
          + " ms after the kill), with node " + n + " still down");
      // its tenant's processes too (the busy loops are not the agent's children): a figure, bounded by the await
      await("the starved old container empty").atMost(BOUND).pollInterval(Duration.ofMillis(250))
          .until(() -> FencingHost.pids(vm).isEmpty());
      ChaosReport.line("   starved old container empty " + FencingProbes.since(t0).toMillis() + " ms after the kill");
    } finally {
      FencingHost.restoreCpu(vm, before);
      c.local.restart(n);
    }
    c.awaitNode(n, BOUND);
    long gone = awaitOldAgentsGone(c, ids, old, "restart of node " + n, problems);
    ChaosReport.line("   node " + n + " restarted and serving; no old agent " + gone + " ms later: " + agentsOf(c, ids));
  }

  // ------------------------------------------------------------------------------ scenario 3

  /**
   * A sandbox of node {@code n} paused (its VM frozen by the node), then node {@code n}'s JVM
   * SIGKILLed: the frozen VM lives on, its watchdog frozen with it. The cluster takes the sandbox
   * over; then the old VM is thawed by hand (as a restarted node's reaper or an operator might),
   * and must never serve; the sandbox must still be PAUSED, and serve as its new incarnation once
   * resumed.
   */
  private static void pausedOnDeadNode(TestCluster c, FencingProbes probes, int n, List<String> problems) throws IOException {
    Map<String, Long> old = incarnationsOn(c, n);
    List<String> ids = List.copyOf(old.keySet());
    String pausedId = ids.get(0);
    ChaosReport.line("   node " + n + " holds " + old + "; pausing " + pausedId);
    probes.watch(ids);
    int other = n == 1 ? 2 : 1;
    Sandbox p = FencingProbes.pause(c, other, pausedId);
    assertEquals(Phase.PAUSED, p.getPhase(), "paused");
    FencingHost.Vm vm = FencingHost.vm(c.local, n, pausedId, old.get(pausedId));
    ChaosReport.line("   " + pausedId + " PAUSED; its cgroup frozen: " + FencingHost.frozen(vm));
    long t0 = System.nanoTime();
    c.local.kill(n);
    Map<String, Long> running = new TreeMap<>(old);
    running.remove(pausedId);
    long took = awaitNewIncarnations(c, running, n);
    ChaosReport.line("   node " + n + " JVM killed; its running sandboxes answered elsewhere " + took + " ms later");
    Sandbox after = await("the cluster takes " + pausedId + " over").atMost(BOUND).pollInterval(Duration.ofMillis(250))
        .ignoreExceptions().until(() -> c.client(other).get(pausedId, TestCluster.CALL),
            s -> !s.getNode().equals(c.arteryOf(n)) || s.getIncarnation() != old.get(pausedId));
    ChaosReport.line("   " + pausedId + " after the takeover (" + FencingProbes.since(t0).toMillis() + " ms): phase "
        + after.getPhase() + ", incarnation " + after.getIncarnation() + ", node " + after.getNode() + ", status '"
        + after.getStatusMessage() + "'; live agents: " + agentsOf(c, List.of(pausedId)));
    try {
      if (FencingHost.frozen(vm)) {
        FencingHost.freeze(vm, false);
        ChaosReport.line("   thawed the old frozen VM of " + pausedId + "#" + old.get(pausedId) + " by hand");
      } else {
        ChaosReport.line("   the old VM of " + pausedId + " was not frozen any more (gone or thawed)");
      }
    } catch (RuntimeException gone) {
      ChaosReport.line("   the old VM of " + pausedId + " is gone: " + gone.getMessage());
    }
    long gone = awaitOldAgentsGone(c, List.of(pausedId), old, "thaw of the paused VM", problems);
    ChaosReport.line("   old agent of " + pausedId + " gone " + gone + " ms after its thaw");
    Sandbox now = c.client(other).get(pausedId, TestCluster.CALL);
    if (now.getPhase() != Phase.PAUSED) {
      problems.add("PAUSED sandbox " + pausedId + " is " + now.getPhase() + " after its node died (incarnation "
          + now.getIncarnation() + "): the pause was lost");
      ChaosReport.line("   VIOLATED: " + pausedId + " was PAUSED, is " + now.getPhase() + " after the takeover");
    } else {
      FencingProbes.resume(c, other, pausedId);
      long resumed = System.nanoTime();
      var ok = await(pausedId + " answers after resume").atMost(BOUND).pollInterval(Duration.ofMillis(200))
          .until(() -> FencingProbes.execOnce(c, other, pausedId), e -> e.outcome() == FencingHistory.Outcome.OK);
      ChaosReport.line("   resumed: answered by incarnation " + ok.incarnation() + " " + FencingProbes.since(resumed).toMillis()
          + " ms after ResumeSandbox");
      if (ok.incarnation() <= old.get(pausedId)) problems.add(pausedId + " resumed as old incarnation " + ok.incarnation());
    }
    c.local.restart(n);
    c.awaitNode(n, BOUND);
    awaitOldAgentsGone(c, ids, old, "restart of node " + n, problems);
    ChaosReport.line("   node " + n + " restarted and serving; live agents: " + agentsOf(c, ids));
  }

  // ------------------------------------------------------------------------------ shared steps

  /** The sandboxes whose current VM runs on node {@code n}, with their incarnations. */
  private static Map<String, Long> incarnationsOn(TestCluster c, int n) {
    Map<String, Long> out = new TreeMap<>();
    for (Sandbox s : c.anyLiveClient().list(TestCluster.CALL)) {
      if (s.getNode().equals(c.arteryOf(n)) && s.getPhase() == Phase.RUNNING) out.put(s.getId(), s.getIncarnation());
    }
    if (out.isEmpty()) throw new IllegalStateException("node " + n + " runs no sandbox");
    return out;
  }

  private static Map<String, Long> incarnations(TestCluster c, List<String> ids) {
    Map<String, Long> out = new TreeMap<>();
    for (String id : ids) {
      try {
        out.put(id, c.anyLiveClient().get(id, TestCluster.CALL).getIncarnation());
      } catch (RuntimeException e) {
        out.put(id, -1L);
      }
    }
    return out;
  }

  /**
   * Awaits (bound) every sandbox of {@code old} answering an exec, through a node other than
   * {@code n}, as a higher incarnation than it had; returns how long that took.
   */
  private static long awaitNewIncarnations(TestCluster c, Map<String, Long> old, int n) {
    long t0 = System.nanoTime();
    List<Integer> others = new ArrayList<>();
    for (int i = 1; i <= c.size(); i++) if (i != n && c.local.node(i).isAlive() && !c.local.node(i).isPaused()) others.add(i);
    for (var e : old.entrySet()) {
      await(e.getKey() + " answers as an incarnation above " + e.getValue()).atMost(BOUND.minus(FencingProbes.since(t0)))
          .pollInterval(Duration.ofMillis(200))
          .until(() -> FencingProbes.execOnce(c, others.get((int) (System.nanoTime() % others.size())), e.getKey()),
              x -> x.outcome() == FencingHistory.Outcome.OK && x.incarnation() > e.getValue());
    }
    return FencingProbes.since(t0).toMillis();
  }

  /**
   * Awaits (bound) no live agent of an old incarnation for {@code ids}; a timeout is a problem
   * (a stale agent that never ends), noted with what is still alive. Returns the time it took.
   */
  private static long awaitOldAgentsGone(TestCluster c, List<String> ids, Map<String, Long> old, String after,
      List<String> problems) {
    long t0 = System.nanoTime();
    try {
      await("old agents of " + ids + " gone after the " + after).atMost(BOUND).pollInterval(Duration.ofMillis(250))
          .until(() -> ids.stream().allMatch(id -> incarnationsOfAgents(c, id).stream().noneMatch(i -> i <= old.get(id))));
    } catch (org.awaitility.core.ConditionTimeoutException e) {
      String alive = agentsOf(c, ids).toString();
      ChaosReport.line("   VIOLATED: an old agent still lives " + BOUND.toSeconds() + " s after the " + after + ": " + alive);
      problems.add("old agent alive " + BOUND.toSeconds() + " s after the " + after + ": " + alive);
    }
    return FencingProbes.since(t0).toMillis();
  }

  private static List<Long> incarnationsOfAgents(TestCluster c, String id) {
    return FencingHost.agents(c.local, id).stream().map(FencingHost.Agent::incarnation).toList();
  }

  private static Map<String, List<FencingHost.Agent>> agentsOf(TestCluster c, List<String> ids) {
    Map<String, List<FencingHost.Agent>> out = new TreeMap<>();
    for (String id : ids) out.put(id, FencingHost.agents(c.local, id));
    return out;
  }

  /** The thawed node either exits (downed) or serves again; if it exited it is restarted. */
  private static void awaitNodeBackOrRestart(TestCluster c, int n, long thawed) throws IOException {
    await("node " + n + " exits or serves again").atMost(BOUND).pollInterval(Duration.ofMillis(250)).ignoreExceptions()
        .until(() -> !c.local.node(n).isAlive() || c.client(n).serving(TestCluster.PROBE) && c.client(n).list(TestCluster.PROBE) != null);
    if (!c.local.node(n).isAlive()) {
      ChaosReport.line("   node " + n + " exited (downed) " + FencingProbes.since(thawed).toMillis() + " ms after the thaw; restarting it");
      c.local.restart(n);
      c.awaitNode(n, BOUND);
    } else {
      ChaosReport.line("   node " + n + " serves again " + FencingProbes.since(thawed).toMillis() + " ms after the thaw");
    }
  }

  /** Every sandbox: RUNNING, one live agent, of the incarnation the cluster names. */
  private static void leftAtTheEnd(TestCluster c, List<String> problems) {
    var agents = FencingHost.agents(c.local);
    int bad = 0;
    for (Sandbox s : c.anyLiveClient().list(TestCluster.CALL)) {
      List<Long> inc = incarnationsOfAgents(c, s.getId());
      if (s.getPhase() != Phase.RUNNING || !inc.equals(List.of(s.getIncarnation()))) {
        bad++;
        problems.add("at the end " + s.getId() + " is " + s.getPhase() + "#" + s.getIncarnation() + " with agents " + inc);
      }
    }
    ChaosReport.line("at the end: " + agents.size() + " live agents, " + bad + " not RUNNING with exactly one "
        + "agent of their current incarnation (must be 0)");
  }
}
