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
  /** Live VMs of deleted or unknown sandboxes after the bound. */
  int orphans;
  /** Violations the history checker found. */
  int historyViolations;
  /** Creates and deletes still in doubt after the resolver's retries. */
  int unresolved;
  /** Request ids with other than exactly one sandbox (acknowledged) or with one (refused). */
  int requestIdMismatches;

  /**
   * All of them, each to the report as it holds or is violated; then throws the first violation
   * (so one broken invariant does not hide the others).
   */
  void checkAll() {
    List<AssertionError> violated = new ArrayList<>();
    // in-doubt operations first: what they resolve to is checked by all the others
    List<java.util.function.Supplier<String>> checks = List.of(this::inDoubtOperationsResolved,
        this::acknowledgedCreatesExistWithSpec, this::acknowledgedDeletesStayDeleted, this::shouldRunAreRunningAndAnswerExec,
        this::oneSandboxPerRequestId, this::noSandboxHasTwoLiveVms, this::noOrphanVms, this::historyChecks,
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
              || s.getSpec().getVcpus() != sent.getVcpus() || s.getSpec().getMemoryMib() != sent.getMemoryMib()
              || !s.getSpec().getCommandList().equals(sent.getCommandList())) {
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

  /**
   * Every create in doubt retried with its request id until acknowledged or refused, every delete
   * in doubt until OK or NOT_FOUND (the workload stopped), within the bound.
   */
  String inDoubtOperationsResolved() {
    List<String> left = workload.resolveInDoubt(cluster, bound);
    unresolved += left.size();
    String summary = workload.inDoubtSummary();
    if (!left.isEmpty()) throw new AssertionError("in doubt after " + bound.toSeconds() + " s of retries: " + left + " (" + summary + ")");
    return "operations in doubt resolved: " + summary;
  }

  /**
   * Each request id the workload (or the initial creates) had acknowledged has exactly one
   * sandbox, the one answered, with label rid = the request id (or none left, once it was
   * deleted); a refused one has none. The in-doubt ones are also looked up by the label itself.
   */
  String oneSandboxPerRequestId() {
    Map<String, String> expected = new TreeMap<>(); // request id -> sandbox id, or "" for none
    workload.requests.forEach((rid, what) -> {
      if (what.startsWith("id ")) expected.put(rid, what.substring(3));
      else if (what.startsWith("refused")) expected.put(rid, "");
    });
    cluster.initialSpecs.forEach((id, spec) -> expected.put(spec.getLabelsOrDefault("rid", id), id));
    Map<String, String> wrong = new TreeMap<>();
    int[] pages = new int[1];
    await("one sandbox per request id").atMost(bound).pollInterval(Duration.ofMillis(500))
        .ignoreException(StatusRuntimeException.class).until(() -> {
          wrong.clear();
          // small pages: the listing is followed across many of them
          Map<String, List<String>> byRid = new TreeMap<>();
          for (Sandbox s : cluster.anyLiveClient().listAll(Map.of(), true, 7, TestCluster.CALL)) {
            if (s.getSpec().getLabelsMap().containsKey("rid")) {
              byRid.computeIfAbsent(s.getSpec().getLabelsMap().get("rid"), k -> new ArrayList<>()).add(s.getId());
            }
          }
          for (String rid : workload.createResolutions.keySet()) {
            byRid.put(rid, cluster.anyLiveClient().listAll(Map.of("rid", rid), true, 100, TestCluster.CALL).stream()
                .map(Sandbox::getId).toList());
          }
          expected.forEach((rid, id) -> {
            List<String> found = byRid.getOrDefault(rid, List.of());
            boolean gone = workload.deleted.contains(id) || workload.deleteInDoubt.contains(id);
            boolean ok = id.isEmpty() ? found.isEmpty()
                : gone ? found.isEmpty() || found.equals(List.of(id)) : found.equals(List.of(id));
            if (!ok) wrong.put(rid, "expected " + (id.isEmpty() ? "none (refused)" : id) + ", listed " + found);
          });
          byRid.forEach((rid, ids) -> {
            if (ids.size() > 1) wrong.put(rid, "several sandboxes: " + ids);
          });
          pages[0] = byRid.size();
          return wrong.isEmpty();
        });
    requestIdMismatches += wrong.size();
    if (!wrong.isEmpty()) throw new AssertionError("request ids without exactly their one sandbox: " + wrong);
    return "one sandbox per request id: " + expected.size() + " request ids checked (" + pages[0] + " listed by label rid)";
  }

  /** No live VM of a sandbox that is deleted or unknown to the cluster, within the bound. */
  String noOrphanVms() {
    Map<String, String> found = orphans(cluster, workload, bound);
    orphans += found.size();
    if (!found.isEmpty()) throw new AssertionError("orphan VMs (live agents of deleted or unknown sandboxes) "
        + bound.toSeconds() + " s after the fault: " + found);
    return "no orphan VMs: " + cluster.local.liveAgents().size() + " sandboxes with a live agent, each one the cluster runs";
  }

  /**
   * The live agents on this machine whose sandbox is deleted (acknowledged by the workload, or in
   * a phase without a VM) or unknown to the cluster, awaited for at most {@code bound} to be none;
   * what is left then, sandbox id -> why. Callable with the workload running.
   */
  static Map<String, String> orphans(TestCluster cluster, Workload workload, Duration bound) {
    Map<String, String> found = new TreeMap<>();
    boolean[] listed = new boolean[1];
    try {
      await("no orphan VMs").atMost(bound).pollInterval(Duration.ofMillis(500)).ignoreException(StatusRuntimeException.class)
          .until(() -> {
            found.clear();
            listed[0] = false;
            Map<String, List<Long>> live = cluster.local.liveAgents();
            if (live.isEmpty()) return true;
            Map<String, dev.flotilla.api.v1.Phase> phases = new TreeMap<>();
            for (Sandbox s : cluster.anyLiveClient().listAll(Map.of(), true, 1000, TestCluster.CALL)) phases.put(s.getId(), s.getPhase());
            listed[0] = true;
            live.forEach((id, pids) -> {
              dev.flotilla.api.v1.Phase p = phases.get(id);
              String why = workload != null && workload.deleted.contains(id) ? "deleted (acknowledged)"
                  : p == null ? "unknown to the cluster"
                  : p == dev.flotilla.api.v1.Phase.DELETED || p == dev.flotilla.api.v1.Phase.STOPPED
                      || p == dev.flotilla.api.v1.Phase.FAILED ? "phase " + p : null;
              if (why != null) found.put(id, why + ", agent pids " + pids);
            });
            return found.isEmpty();
          });
    } catch (org.awaitility.core.ConditionTimeoutException e) {
      // what was found last is the answer; a cluster that never answered the listing is no answer
      if (!listed[0] && found.isEmpty()) {
        cluster.local.liveAgents().forEach((id, pids) -> found.put(id, "not checked: the cluster did not list its sandboxes"));
      }
    }
    return found;
  }

  /** The history checker over every call of the workload (see {@link HistoryChecker}). */
  String historyChecks() {
    HistoryChecker.Result r = workload.check(bound);
    historyViolations += r.violations().size();
    if (!r.violations().isEmpty()) {
      throw new AssertionError("history: " + r + ": " + r.violations().subList(0, Math.min(10, r.violations().size()))
          + (r.violations().size() > 10 ? " ..." : ""));
    }
    return "history checked: " + r + " (fault windows: " + workload.history.faults().size() + ")";
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
