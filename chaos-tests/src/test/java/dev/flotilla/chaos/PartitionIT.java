package dev.flotilla.chaos;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.node.local.LocalCluster;
import dev.flotilla.node.local.LocalNode;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Network partitions (docs/chaos.md, "Partitions"): one 3-node cluster whose nodes each run in a
 * network namespace of their own ({@link LocalCluster.Builder#networkNamespaces}), taken through
 * the faults in sequence (one cluster start for all: CI time), each with a workload and a
 * duplicate sampler running throughout, and after each heal: the invariants of every fault, no two
 * live VMs of one sandbox at any sample, every old VM gone before its successor appeared, and every
 * sandbox answering an exec within the recovery bound of the heal.
 *
 * <p>{@code -Dpartition.faults=majority,one-way,flap,postgres} (default: all, in that order)
 * runs a subset.
 */
@ExtendWith(LogsOnFailure.class)
class PartitionIT {
  static final Profile P = Profile.current();
  static final Duration BOUND = P.recoveryBound();
  /** A flapping link: cut this long, healed this long, for {@link #FLAPPING}. */
  static final Duration FLAP_CUT = Duration.ofSeconds(5);
  static final Duration FLAP_HEALED = Duration.ofSeconds(1);
  static final Duration FLAPPING = Duration.ofSeconds(30);
  /**
   * Half the profile's sandboxes (at least 6): the one-way and flapping faults leave a single node
   * that restarts every sandbox (and the workload's leftovers) on 2 shared cores.
   */
  static final int SANDBOXES = Math.max(6, P.sandboxes() / 2);
  /** How long one node stays cut from PostgreSQL (longer than the node's 10 s ask-timeout). */
  static final Duration POSTGRES_CUT = Duration.ofSeconds(20);
  /** How long a one-way cut is held at most when no node leaves meanwhile. */
  static final Duration ONE_WAY_HOLD = Duration.ofSeconds(30);

  static int overlapTotal;
  /** Probe calls that ran into their deadline while one node was cut from PostgreSQL (a figure). */
  static long postgresCutDeadlines;
  /** Probe deadline during the PostgreSQL cut: below the node's 10 s ask-timeout, as ChaosIT's outage probes. */
  static final Duration OUTAGE_CALL = Duration.ofSeconds(8);
  /** Cut to a minority sandbox's new incarnation answering through the majority (2|1). */
  static final List<Long> recoveries = new ArrayList<>();
  static final List<String> summary = new ArrayList<>();

  @BeforeAll
  static void header() {
    ChaosReport.line("Flotilla partition report, profile " + P + ", " + SANDBOXES + " initial sandboxes, started " + java.time.Instant.now());
  }

  @AfterAll
  static void footer() {
    ChaosReport.section("Partitions: summary");
    summary.forEach(ChaosReport::line);
    ChaosReport.line("2|1 partition, cut to the minority's sandboxes answering through the majority: " + ChaosReport.millis(recoveries));
    ChaosReport.line("two live VMs of one sandbox seen during any partition: " + overlapTotal + " (must be 0)");
    ChaosReport.line("probe calls that ran into their deadline while a node was cut from PostgreSQL: " + postgresCutDeadlines
        + " (a figure: ChaosIT asserts 0 for a whole-PostgreSQL outage)");
    ChaosReport.write();
  }

  @Test
  void partitionsInSequence() throws IOException {
    List<String> faults = List.of(System.getProperty("partition.faults", "majority,one-way,flap,postgres").split(","));
    List<String> violations = new ArrayList<>();
    try (TestCluster c = start()) {
      ChaosReport.line("   topology: " + c.local.network().orElseThrow().cidr() + ", bridge "
          + c.local.network().orElseThrow().bridgeAddress() + "; " + c.local.nodes());
      for (String f : faults) {
        switch (f.strip()) {
          case "majority" -> fault(c, "2|1 partition: node 3 cut from nodes 1 and 2 (both ways; PostgreSQL and clients still reach it)",
              violations, this::majorityMinority);
          case "one-way" -> fault(c, "One-way partition: node 1's packets to node 3 dropped, node 3's to node 1 delivered",
              violations, this::oneWay);
          case "flap" -> fault(c, "Flapping link between nodes 2 and 3: cut " + FLAP_CUT.toSeconds() + " s, healed "
              + FLAP_HEALED.toSeconds() + " s, for " + FLAPPING.toSeconds() + " s", violations, this::flap);
          case "postgres" -> fault(c, "The node with most sandboxes cut from PostgreSQL only, " + POSTGRES_CUT.toSeconds() + " s (nodes and clients still reach it)",
              violations, this::postgresOnly);
          default -> throw new IllegalArgumentException("unknown fault " + f + " (majority, one-way, flap, postgres)");
        }
      }
    }
    assertTrue(violations.isEmpty(), String.join("; ", violations));
  }

  /** The chaos fixture, with its nodes in network namespaces (TestCluster builds its LocalCluster itself). */
  private static TestCluster start() throws IOException {
    String before = System.getProperty(LocalCluster.NETWORK_NAMESPACES_PROPERTY);
    System.setProperty(LocalCluster.NETWORK_NAMESPACES_PROPERTY, "true");
    try {
      return TestCluster.builder().name("partition").nodes(P.nodes()).sandboxes(SANDBOXES)
          // room for what the faults leave behind (deletes in doubt, probe creates): a full quota
          // would answer RESOURCE_EXHAUSTED and hide what a create meets during a fault
          .config(TestCluster.quotaFor(200)).start();
    } finally {
      if (before == null) System.clearProperty(LocalCluster.NETWORK_NAMESPACES_PROPERTY);
      else System.setProperty(LocalCluster.NETWORK_NAMESPACES_PROPERTY, before);
    }
  }

  // ------------------------------------------------------------------------------ one fault

  /** What a fault does between its start and its heal; returns what it saw, for the report. */
  interface Fault {
    String play(TestCluster c, Workload w, VmTimeline t) throws IOException;
  }

  /**
   * Given the cluster with a workload, a duplicate sampler and a VM timeline running, when the
   * fault plays out and heals, then: the nodes that left are restarted, every sandbox that should
   * run answers an exec within the bound of the heal, no sandbox ever had two live VMs, each
   * sandbox's old VM was gone before its successor started, and the invariants hold.
   */
  private void fault(TestCluster c, String title, List<String> violations, Fault fault) throws IOException {
    ChaosReport.section("Partition: " + title);
    Workload w = Workload.start(c, P.clients());
    String seen;
    long healedAt;
    long began;
    List<Integer> restarted = new ArrayList<>();
    try (DuplicateSampler dups = new DuplicateSampler(c); VmTimeline t = new VmTimeline(c.local)) {
      began = t.now();
      long faultStart = System.nanoTime();
      try {
        seen = fault.play(c, w, t);
      } finally {
        c.local.heal();
      }
      healedAt = t.now();
      // then: whoever left the cluster is started again (as an operator's supervisor would)
      // then: every sandbox answers within the bound of the heal, through the nodes still running
      // (a node that left is restarted only afterwards: that is an operator's or a supervisor's doing)
      List<String> ids = w.shouldRun();
      long answered;
      try {
        if (c.local.nodes().stream().noneMatch(LocalNode::isAlive)) throw new org.awaitility.core.ConditionTimeoutException("no node runs");
        awaitAnswering(c, w, ids);
        answered = t.now() - healedAt;
      } catch (org.awaitility.core.ConditionTimeoutException e) {
        answered = -1;
        violations.add(title + ": not every sandbox answered an exec within " + BOUND.toSeconds() + " s of the heal (nodes running: "
            + c.local.nodes().stream().filter(LocalNode::isAlive).map(LocalNode::index).toList() + ")");
      }
      for (LocalNode n : c.local.nodes()) {
        if (!n.isAlive()) {
          c.local.restart(n.index());
          restarted.add(n.index());
        }
      }
      for (LocalNode n : c.local.nodes()) c.awaitNode(n.index(), BOUND);
      // the history checker allows NOT_FOUND and stale answers only within a fault (+ the bound)
      w.history.fault("partition: " + title, faultStart, System.nanoTime());
      ChaosReport.line("   " + seen);
      ChaosReport.line(String.format("   healed at +%d ms; nodes restarted after the heal: %s; all %d sandboxes that should run"
          + " answered an exec %s", healedAt, restarted, ids.size(), answered < 0 ? "NOT within the bound"
          : answered + " ms after the heal, " + (answered + healedAt - began) + " ms after the fault began (bound " + BOUND.toSeconds()
              + " s from the heal)"));
      reportHandOvers(t, title, violations);
      overlapTotal += dups.max();
      ChaosReport.line("   two live VMs of one sandbox at one sample (DuplicateSampler, 250 ms): " + dups.max() + " (must be 0)"
          + (dups.max() > 0 ? " " + dups.examples() : ""));
      if (dups.max() > 0) violations.add(title + ": two live VMs of one sandbox: " + dups.examples());
      summary.add(title + ": " + seen + "; all answered " + (answered < 0 ? "NOT within the bound"
          : answered + " ms after the heal (" + (answered + healedAt - began) + " ms after the fault began)")
          + "; overlap " + dups.max());
    } finally {
      w.close();
    }
    ChaosReport.history(w.history);
    try {
      new Invariants(c, w, BOUND).checkAll();
    } catch (AssertionError e) {
      violations.add(title + ": " + e.getMessage());
    }
  }

  /** Each sandbox that got a new VM: when the old one was last seen alive, when the new one first. */
  private static void reportHandOvers(VmTimeline t, String title, List<String> violations) {
    Map<String, Long> gaps = t.handOverGaps();
    if (gaps.isEmpty()) {
      ChaosReport.line("   no sandbox got a new VM");
      return;
    }
    List<Long> all = new ArrayList<>(gaps.values());
    ChaosReport.line("   " + gaps.size() + " sandboxes got a new VM; old VM last seen alive -> new VM first seen (100 ms samples): "
        + ChaosReport.millis(all));
    t.bySandbox().forEach((id, vms) -> {
      if (!gaps.containsKey(id)) return;
      StringBuilder b = new StringBuilder("     " + id + ":");
      for (VmTimeline.Vm v : vms) {
        b.append(String.format(" [%s #%d pid %d: +%d..+%d ms]", v.node(), v.incarnation(), v.pid(), v.firstSeen(), v.lastSeen()));
      }
      ChaosReport.line(b.toString());
    });
    List<String> overlapping = gaps.entrySet().stream().filter(e -> e.getValue() <= 0).map(Map.Entry::getKey).toList();
    if (!overlapping.isEmpty()) violations.add(title + ": a new VM appeared before the old one was gone: " + overlapping);
  }

  // ------------------------------------------------------------------------------ the faults

  /**
   * 2|1: node 3 loses nodes 1 and 2. Expected: the split brain resolver (keep-majority) downs
   * node 3 on both sides; node 3 fences (kills) its VMs and exits; nodes 1 and 2 restart its
   * sandboxes after the down-removal margin.
   */
  private String majorityMinority(TestCluster c, Workload w, VmTimeline t) {
    int minority = 3;
    Map<String, Long> affected = incarnationsOn(c, minority, w.shouldRun());
    long cut = t.now();
    c.local.cut(minority, 1);
    c.local.cut(minority, 2);
    Map<String, Long> answered = awaitNewIncarnations(c, List.of(1, 2), affected, t);
    try {
      await("node " + minority + " leaves").atMost(BOUND).pollInterval(Duration.ofMillis(200)).until(() -> t.nodeExit(minority) >= 0);
    } catch (org.awaitility.core.ConditionTimeoutException e) {
      // a downed node that keeps running: its threads, for the report (SIGQUIT: the JVM prints them to its log)
      LocalNode n = c.local.node(minority);
      try {
        new ProcessBuilder("kill", "-QUIT", Long.toString(n.pid())).start().waitFor();
      } catch (IOException | InterruptedException x) {
        // the dump is a diagnostic only
      }
      ChaosReport.line("   node " + minority + " (pid " + n.pid() + ") still runs " + BOUND.toSeconds() + " s after the cut: thread dump in "
          + n.logFile());
    }
    long exit = t.nodeExit(minority);
    List<Long> sinceCut = answered.values().stream().map(v -> v - cut).toList();
    long lastOld = lastSeen(t, affected);
    recoveries.addAll(sinceCut);
    return String.format("%d sandboxes on node %d (times from the cut): node %d %s; its old VMs last seen alive at %s; their new"
        + " incarnations answered through nodes 1 and 2 at %s", affected.size(), minority, minority,
        exit >= 0 ? "exited at +" + (exit - cut) + " ms" : "did NOT exit", lastOld < 0 ? "n/a" : "+" + (lastOld - cut) + " ms",
        ChaosReport.millis(sinceCut));
  }

  /**
   * One way: node 1's packets to node 3 are lost, node 3's to node 1 arrive (TCP on that link then
   * stalls both ways: acknowledgements are packets too). Node 2 sees both. Held until a node leaves
   * the cluster or {@link #ONE_WAY_HOLD}.
   */
  private String oneWay(TestCluster c, Workload w, VmTimeline t) {
    Map<String, Long> before = incarnations(c, w.shouldRun());
    long cut = t.now();
    c.local.cutOneWay(1, 3);
    try {
      await("a node leaves the cluster").atMost(ONE_WAY_HOLD).pollInterval(Duration.ofMillis(200))
          .until(() -> c.local.nodes().stream().anyMatch(n -> !n.isAlive()));
    } catch (org.awaitility.core.ConditionTimeoutException e) {
      // nobody left: the report says so
    }
    // give a decision that downs several nodes the time to finish (exits are observed, not awaited)
    List<Integer> survivors = awaitSettled(c, t);
    return String.format("node exits: %s; survivors %s; %s", exits(c, t, cut), survivors, movedSummary(c, before, t, cut));
  }

  /** The link between nodes 2 and 3 cut and healed on a schedule. */
  private String flap(TestCluster c, Workload w, VmTimeline t) throws IOException {
    Map<String, Long> before = incarnations(c, w.shouldRun());
    long start = t.now();
    try (AutoCloseable flapping = c.local.flap(2, 3, FLAP_CUT, FLAP_HEALED)) {
      Thread.sleep(FLAPPING.toMillis()); // the fault's schedule, not a wait for a condition
    } catch (Exception e) {
      throw new IOException("stopping the flapping link: " + e.getMessage(), e);
    }
    List<Integer> survivors = awaitSettled(c, t);
    return String.format("flapping for %d ms; node exits: %s; survivors %s; %s", t.now() - start, exits(c, t, start), survivors,
        movedSummary(c, before, t, start));
  }

  /**
   * The node running most of the sandboxes that should run loses PostgreSQL (its packets dropped
   * both ways); the other nodes and the clients still reach it.
   */
  private String postgresOnly(TestCluster c, Workload w, VmTimeline t) {
    Set<String> should = Set.copyOf(w.shouldRun());
    Map<Integer, Integer> held = new TreeMap<>();
    for (LocalCluster.LiveVm v : c.local.liveVms()) if (should.contains(v.sandboxId())) held.merge(v.node(), 1, Integer::sum);
    int victim = held.entrySet().stream().max(Map.Entry.comparingByValue()).map(Map.Entry::getKey).orElse(2);
    Map<String, Long> before = incarnations(c, w.shouldRun());
    Map<String, Long> onVictim = incarnationsOn(c, victim, w.shouldRun());
    long cut = t.now();
    c.local.cutFromPostgres(victim);
    // during the cut, one probe thread per node and call kind (as ChaosIT's outage probes): does
    // each call end, and how; an exec goes to the victim's own sandboxes, a get to any
    List<String> own = List.copyOf(onVictim.keySet());
    List<String> any = List.copyOf(should);
    Map<String, Map<String, Integer>> outcomes = new ConcurrentHashMap<>();
    Map<String, Long> slowest = new ConcurrentHashMap<>();
    long until = System.nanoTime() + POSTGRES_CUT.toNanos();
    List<Thread> probes = new ArrayList<>();
    for (LocalNode n : c.local.nodes()) {
      for (String kind : List.of("create", "get", "exec")) {
        String key = kind + "@n" + n.index();
        Thread th = new Thread(() -> {
          int k = 0;
          while (System.nanoTime() < until) {
            long t0 = System.nanoTime();
            String code;
            try {
              switch (kind) {
                case "create" -> c.client(n.index()).create(TestCluster.spec("probe"), "pgcut-" + kind + "-n" + n.index() + "-" + k, OUTAGE_CALL);
                case "get" -> c.client(n.index()).get(any.get(k % Math.max(1, any.size())), OUTAGE_CALL);
                default -> {
                  if (own.isEmpty()) return;
                  c.client(n.index()).exec(own.get(k % own.size()), OUTAGE_CALL, "echo", "ok");
                }
              }
              code = "OK";
            } catch (StatusRuntimeException e) {
              code = e.getStatus().getCode().toString();
            } catch (RuntimeException e) {
              code = e.getClass().getSimpleName();
            }
            k++;
            outcomes.computeIfAbsent(key, x -> new ConcurrentHashMap<>()).merge(code, 1, Integer::sum);
            slowest.merge(key, (System.nanoTime() - t0) / 1_000_000, Math::max);
            if (!code.equals("OK")) {
              try {
                Thread.sleep(100); // pacing after a refusal, not a wait for a condition
              } catch (InterruptedException e) {
                return;
              }
            }
          }
        }, "pg-cut-probe-" + key);
        th.setDaemon(true);
        probes.add(th);
        th.start();
      }
    }
    for (Thread th : probes) {
      try {
        th.join(POSTGRES_CUT.plus(OUTAGE_CALL).plusSeconds(5).toMillis());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    StringBuilder b = new StringBuilder();
    new TreeMap<>(outcomes).forEach((key, codes) -> b.append(key).append(' ').append(new TreeMap<>(codes)).append(" slowest ")
        .append(slowest.get(key)).append(" ms; "));
    long deadlines = outcomes.values().stream().mapToLong(m -> m.getOrDefault("DEADLINE_EXCEEDED", 0)).sum();
    postgresCutDeadlines += deadlines;
    return String.format("node %d cut (%d of its sandboxes); probes (%d s deadline): %scalls that ran into the deadline: %d;"
        + " node exits: %s; %s", victim, own.size(), OUTAGE_CALL.toSeconds(), b, deadlines, exits(c, t, cut),
        movedSummary(c, before, t, cut));
  }

  // ------------------------------------------------------------------------------ helpers

  /**
   * Waits (at most the bound) until each of {@code ids} answers an exec through a running node, or
   * the still running workload has deleted it meanwhile.
   */
  private static void awaitAnswering(TestCluster c, Workload w, List<String> ids) {
    Set<String> pending = ConcurrentHashMap.newKeySet();
    pending.addAll(ids);
    await("sandboxes answer exec: " + pending).atMost(BOUND).pollInterval(Duration.ofMillis(200)).until(() -> {
      List<CompletableFuture<Void>> probes = new ArrayList<>();
      for (String id : List.copyOf(pending)) {
        probes.add(CompletableFuture.runAsync(() -> {
          if (w.deleted.contains(id) || w.deleteInDoubt.contains(id) || c.answersExec(id)) pending.remove(id);
        }, c.probes));
      }
      probes.forEach(CompletableFuture::join);
      return pending.isEmpty();
    });
  }

  /**
   * Waits (bounded) until membership stops changing: no node exits for 10 s (failure detection
   * plus stable-after, and a second), then returns the nodes still running.
   */
  private static List<Integer> awaitSettled(TestCluster c, VmTimeline t) {
    long[] lastChange = {t.now()};
    int[] alive = {aliveCount(c)};
    try {
      await("membership settles").atMost(BOUND).pollInterval(Duration.ofMillis(500)).until(() -> {
        int now = aliveCount(c);
        if (now != alive[0]) {
          alive[0] = now;
          lastChange[0] = t.now();
        }
        return t.now() - lastChange[0] > 10_000;
      });
    } catch (org.awaitility.core.ConditionTimeoutException e) {
      // still changing after the bound: reported through the exits
    }
    List<Integer> out = new ArrayList<>();
    for (LocalNode n : c.local.nodes()) if (n.isAlive()) out.add(n.index());
    return out;
  }

  private static int aliveCount(TestCluster c) {
    return (int) c.local.nodes().stream().filter(LocalNode::isAlive).count();
  }

  /** Which nodes exited, ms after {@code from}. */
  private static String exits(TestCluster c, VmTimeline t, long from) {
    List<String> out = new ArrayList<>();
    for (LocalNode n : c.local.nodes()) {
      if (t.nodeExit(n.index()) >= 0) out.add("node " + n.index() + " at +" + (t.nodeExit(n.index()) - from) + " ms");
    }
    return out.isEmpty() ? "none" : String.join(", ", out);
  }

  /**
   * How many of the sandboxes that ran before the fault got a new VM so far (from the timeline, not
   * the API: after some faults no node may be there to ask).
   */
  private static String movedSummary(TestCluster c, Map<String, Long> before, VmTimeline t, long from) {
    Set<String> moved = new java.util.TreeSet<>(t.handOverGaps().keySet());
    moved.retainAll(before.keySet());
    long lastNew = -1;
    for (String id : moved) {
      for (VmTimeline.Vm v : t.bySandbox().get(id)) if (v.firstSeen() > 0) lastNew = Math.max(lastNew, v.firstSeen());
    }
    return moved.size() + " of " + before.size() + " sandboxes got a new VM"
        + (lastNew < 0 ? "" : ", the last first seen +" + (lastNew - from) + " ms after the fault began");
  }

  /** The old VMs of {@code affected}: when the last of them was last seen alive (ms on {@code t}), -1 if none was seen. */
  private static long lastSeen(VmTimeline t, Map<String, Long> affected) {
    long last = -1;
    for (var e : t.bySandbox().entrySet()) {
      Long inc = affected.get(e.getKey());
      if (inc == null) continue;
      for (VmTimeline.Vm v : e.getValue()) if (v.incarnation() == inc) last = Math.max(last, v.lastSeen());
    }
    return last;
  }

  /**
   * Waits (bounded) until each sandbox answers an exec through one of {@code via} with an
   * incarnation other than the given one (its own variable FLOTILLA_INCARNATION); returns ms (on
   * {@code t}) of each first such answer.
   */
  private static Map<String, Long> awaitNewIncarnations(TestCluster c, List<Integer> via, Map<String, Long> old, VmTimeline t) {
    Map<String, Long> answered = new ConcurrentHashMap<>();
    Set<String> pending = ConcurrentHashMap.newKeySet();
    pending.addAll(old.keySet());
    long start = System.nanoTime();
    await("sandboxes " + pending + " answer as new incarnations through nodes " + via).atMost(BOUND)
        .pollInterval(Duration.ofMillis(200)).until(() -> {
          List<CompletableFuture<Void>> probes = new ArrayList<>();
          for (String id : List.copyOf(pending)) {
            probes.add(CompletableFuture.runAsync(() -> {
              ChaosClient client = c.client(via.get((int) ((System.nanoTime() - start) / 1_000_000 % via.size())));
              try {
                String out = client.exec(id, TestCluster.PROBE, "sh", "-c", "echo $FLOTILLA_INCARNATION").stdout().strip();
                if (!out.equals(Long.toString(old.get(id)))) {
                  answered.putIfAbsent(id, t.now());
                  pending.remove(id);
                }
              } catch (StatusRuntimeException e) {
                if (e.getStatus().getCode() == Status.Code.NOT_FOUND) pending.remove(id); // deleted by the workload
              } catch (RuntimeException e) {
                // not yet
              }
            }, c.probes));
          }
          probes.forEach(CompletableFuture::join);
          return pending.isEmpty();
        });
    return answered;
  }

  /** Incarnation per sandbox whose current VM runs on node {@code i}. */
  private static Map<String, Long> incarnationsOn(TestCluster c, int i, List<String> ids) {
    String artery = c.local.node(i).arteryAddress();
    Map<String, Long> out = new TreeMap<>();
    for (String id : ids) {
      Sandbox s = getUnlessDeleted(c, id);
      if (s != null && s.getNode().equals(artery)) out.put(id, s.getIncarnation());
    }
    return out;
  }

  private static Map<String, Long> incarnations(TestCluster c, java.util.Collection<String> ids) {
    return c.incarnations(ids, BOUND);
  }

  private static Sandbox getUnlessDeleted(TestCluster c, String id) {
    return c.getUnlessDeleted(id, BOUND);
  }
}
