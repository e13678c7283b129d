package dev.flotilla.chaos;

import static org.awaitility.Awaitility.await;

import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The invariants every fault must keep, checked after the cluster had {@code bound} to recover.
 * Each check returns what it found (for the report) and throws AssertionError listing the
 * violations.
 */
final class Invariants {
  private final TestCluster cluster;
  private final Workload workload;
  private final Duration bound;

  Invariants(TestCluster cluster, Workload workload, Duration bound) {
    this.cluster = cluster;
    this.workload = workload;
    this.bound = bound;
  }

  /** Acknowledged operations found lost (creates gone or changed, deletes come back). */
  int lost;
  /** Sandboxes still with two live VMs after the bound. */
  int duplicatesAfterBound;

  /**
   * All of them, each to the report as it holds or is violated; then throws the first violation
   * (so one broken invariant does not hide the others).
   */
  void checkAll() {
    List<AssertionError> violated = new ArrayList<>();
    List<java.util.function.Supplier<String>> checks = List.of(this::acknowledgedCreatesExistWithSpec,
        this::acknowledgedDeletesStayDeleted, this::shouldRunAreRunningAndAnswerExec, this::noSandboxHasTwoLiveVms,
        this::journalSequenceNumbersContiguous);
    for (var check : checks) {
      try {
        ChaosReport.line("   holds: " + check.get());
      } catch (AssertionError | RuntimeException e) {
        AssertionError a = e instanceof AssertionError ae ? ae : new AssertionError(e.toString(), e);
        ChaosReport.line("   VIOLATED: " + a.getMessage());
        violated.add(a);
      }
    }
    if (!violated.isEmpty()) {
      AssertionError first = violated.get(0);
      for (int i = 1; i < violated.size(); i++) first.addSuppressed(violated.get(i));
      throw first;
    }
  }

  /** Every acknowledged create (not deleted since) exists, with the spec it was created with. */
  String acknowledgedCreatesExistWithSpec() {
    List<String> ids = workload.shouldRun();
    Map<String, String> wrong = new TreeMap<>();
    await("acknowledged creates readable").atMost(bound).pollInterval(Duration.ofMillis(500)).until(() -> {
      wrong.clear();
      for (String id : ids) {
        try {
          Sandbox s = cluster.anyLiveClient().get(id, TestCluster.CALL);
          SandboxSpec sent = workload.acknowledged.get(id);
          if (!s.getSpec().getLabelsMap().equals(sent.getLabelsMap()) || !s.getSpec().getDriver().equals(sent.getDriver())
              || s.getSpec().getVcpus() != sent.getVcpus() || s.getSpec().getMemoryMib() != sent.getMemoryMib()) {
            wrong.put(id, "spec differs: sent " + sent.toString().replace('\n', ' ') + " got " + s.getSpec().toString().replace('\n', ' '));
          }
        } catch (StatusRuntimeException e) {
          wrong.put(id, e.getStatus().toString());
        }
      }
      // a NOT_FOUND or a wrong spec is final; UNAVAILABLE is a cluster still recovering: retry
      return wrong.values().stream().noneMatch(v -> v.startsWith("Status{code=UNAVAILABLE") || v.startsWith("Status{code=DEADLINE"));
    });
    lost += wrong.size();
    if (!wrong.isEmpty()) throw new AssertionError("acknowledged creates lost or changed: " + wrong);
    return "acknowledged creates exist with their spec: " + ids.size() + " checked, 0 lost";
  }

  /** Nothing acknowledged as deleted comes back. */
  String acknowledgedDeletesStayDeleted() {
    List<String> back = new ArrayList<>();
    for (String id : workload.deleted) {
      try {
        Sandbox s = cluster.anyLiveClient().get(id, TestCluster.CALL);
        if (s.getPhase() != dev.flotilla.api.v1.Phase.DELETED && s.getPhase() != dev.flotilla.api.v1.Phase.DELETING) {
          back.add(id + " " + s.getPhase());
        }
      } catch (StatusRuntimeException e) {
        if (e.getStatus().getCode() != Status.Code.NOT_FOUND) back.add(id + " " + e.getStatus());
      }
    }
    lost += back.size();
    if (!back.isEmpty()) throw new AssertionError("acknowledged deletes came back (or unreadable): " + back);
    return "acknowledged deletes stay deleted: " + workload.deleted.size() + " checked (" + workload.deleteInDoubt.size()
        + " in doubt, not checked)";
  }

  /** Every sandbox that should run is RUNNING and answers an exec within the recovery bound. */
  String shouldRunAreRunningAndAnswerExec() {
    List<String> ids = workload.shouldRun();
    long t0 = System.nanoTime();
    cluster.awaitRunningAndExec(ids, bound);
    return "sandboxes that should run answer exec: " + ids.size() + " within " + (System.nanoTime() - t0) / 1_000_000
        + " ms of the check (bound " + bound.toSeconds() + " s)";
  }

  /** No sandbox has two live VMs (agent processes on this machine), once the bound has passed. */
  String noSandboxHasTwoLiveVms() {
    Map<String, List<Long>> dup = new TreeMap<>();
    try {
      await("at most one live VM per sandbox").atMost(bound).pollInterval(Duration.ofMillis(500)).until(() -> {
        dup.clear();
        cluster.local.liveAgents().forEach((id, pids) -> {
          if (pids.size() > 1) dup.put(id, pids);
        });
        return dup.isEmpty();
      });
    } catch (org.awaitility.core.ConditionTimeoutException e) {
      duplicatesAfterBound += dup.size();
      throw new AssertionError("sandboxes with two live VMs " + bound.toSeconds() + " s after the fault: " + dup, e);
    }
    return "no sandbox has two live VMs: " + cluster.local.liveAgents().size() + " sandboxes with a live agent";
  }

  /** Per sandbox, the journal's sequence numbers are 1..n (or m..n after a deletion) with no gap. */
  String journalSequenceNumbersContiguous() {
    List<String> gaps = new ArrayList<>();
    int entities = 0;
    try (Connection c = DriverManager.getConnection(cluster.local.jdbcUrl(), cluster.local.jdbcUser(), "");
        Statement st = c.createStatement();
        ResultSet rs = st.executeQuery("select persistence_id, min(sequence_number), max(sequence_number), count(*)"
            + " from event_journal where persistence_id like 'Sandbox|%' group by persistence_id")) {
      while (rs.next()) {
        entities++;
        long min = rs.getLong(2);
        long max = rs.getLong(3);
        long count = rs.getLong(4);
        if (count != max - min + 1) gaps.add(rs.getString(1) + " min=" + min + " max=" + max + " count=" + count);
      }
    } catch (java.sql.SQLException e) {
      throw new AssertionError("cannot read the journal: " + e.getMessage(), e);
    }
    if (!gaps.isEmpty()) throw new AssertionError("journal sequence gaps: " + gaps);
    if (entities == 0) throw new AssertionError("no Sandbox|* persistence ids in event_journal: is the journal where the nodes write?");
    return "journal sequence numbers contiguous: " + entities + " sandboxes, 0 gaps";
  }

  /** Sandboxes sampled with more than one live VM, for sampling during a fault. */
  static int duplicates(TestCluster cluster) {
    int n = 0;
    for (var e : cluster.local.liveAgents().entrySet()) if (e.getValue().size() > 1) n++;
    return n;
  }
}
