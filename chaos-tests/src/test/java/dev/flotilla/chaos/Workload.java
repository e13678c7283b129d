package dev.flotilla.chaos;

import static org.awaitility.Awaitility.await;

import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Creates, execs and deletes from several client threads, each call through a random node's API,
 * recorded in a {@link History}. Every create carries a request id (also as label {@code rid}) and
 * a value of its own in the spec's main process ({@link TestCluster#spec(String, String, String)});
 * every exec reads back, from inside the VM, the sandbox id, the incarnation and that value
 * ({@link #READ_BACK}). Calls in doubt are retried: a create with the same request id and spec,
 * a delete until OK or NOT_FOUND; during the run now and then, and the rest by
 * {@link #resolveInDoubt(TestCluster, Duration)} before the invariants are checked.
 */
final class Workload implements AutoCloseable {
  static final Duration CALL = Duration.ofSeconds(10);
  /**
   * The exec: prints "sandbox-id incarnation value". The agent sets the first two in every
   * process's environment (a request cannot override them); the value is what this incarnation's
   * main process wrote. It waits up to 5 s for it: a new incarnation answers execs before its
   * main process has run.
   */
  static final String READ_BACK = "i=0; while [ ! -s " + TestCluster.VALUE_FILE + " ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done;"
      + " printf '%s %s %s\\n' \"$FLOTILLA_SANDBOX_ID\" \"$FLOTILLA_INCARNATION\" \"$(cat " + TestCluster.VALUE_FILE + " 2>/dev/null)\"";

  final History history = new History();
  /** Acknowledged creates, id -> the spec sent (the initial sandboxes included). */
  final Map<String, SandboxSpec> acknowledged = new ConcurrentHashMap<>();
  final Set<String> deleted = ConcurrentHashMap.newKeySet();
  /** Deletes whose outcome is unknown, until a retry answers OK or NOT_FOUND. */
  final Set<String> deleteInDoubt = ConcurrentHashMap.newKeySet();
  /** Creates whose outcome is unknown, request id -> spec, until a retry is answered. */
  final Map<String, SandboxSpec> createInDoubt = new ConcurrentHashMap<>();
  /** Every create sent, request id -> what became of it: "id <sandbox>", "refused <code>", "in doubt". */
  final Map<String, String> requests = new ConcurrentHashMap<>();
  /** How each create or delete that was ever in doubt was resolved, for the report. */
  final Map<String, String> createResolutions = new ConcurrentHashMap<>();
  final Map<String, String> deleteResolutions = new ConcurrentHashMap<>();
  /** When each sandbox was acknowledged (nanoTime; the initial ones before the workload began). */
  private final Map<String, Long> acknowledgedAt = new ConcurrentHashMap<>();
  /** Workload-made sandboxes a client may still delete (the initial ones are never deleted). */
  private final Set<String> deletable = ConcurrentHashMap.newKeySet();
  private final TestCluster cluster;
  private final AtomicBoolean running = new AtomicBoolean(true);
  private final AtomicInteger created = new AtomicInteger();
  private final List<Thread> threads = new ArrayList<>();
  private final String runId = Long.toString(System.nanoTime() % 1_000_000_000L, 36);

  private Workload(TestCluster cluster) {
    this.cluster = cluster;
    for (Sandbox s : cluster.initial) {
      acknowledged.put(s.getId(), cluster.initialSpecs.getOrDefault(s.getId(), TestCluster.spec("base")));
      acknowledgedAt.put(s.getId(), Long.MIN_VALUE);
    }
  }

  /** Starts {@code clients} threads against {@code cluster}. */
  static Workload start(TestCluster cluster, int clients) {
    Workload w = new Workload(cluster);
    for (int i = 0; i < clients; i++) {
      String name = "client-" + i;
      Thread t = new Thread(() -> w.loop(name), "chaos-" + name);
      t.setDaemon(true);
      w.threads.add(t);
      t.start();
    }
    return w;
  }

  private void loop(String client) {
    ThreadLocalRandom r = ThreadLocalRandom.current();
    while (running.get()) {
      int node = 1 + r.nextInt(cluster.size());
      ChaosClient c = cluster.client(node);
      int dice = r.nextInt(100);
      // cap the sandboxes the workload adds: the machine's memory, not the faults, would fail the test
      if (dice < 5 && !createInDoubt.isEmpty()) retryCreate(client, node, c);
      else if (dice < 10 && !deleteInDoubt.isEmpty()) retryDelete(client, node, c);
      else if (dice < 25 && deletable.size() < 8) create(client, node, c);
      else if (dice < 40 && !deletable.isEmpty()) delete(client, node, c);
      else exec(client, node, c);
      // pacing, not waiting: keeps a few calls per second per client
      try {
        Thread.sleep(50 + r.nextInt(150));
      } catch (InterruptedException e) {
        return;
      }
    }
  }

  private void create(String client, int node, ChaosClient c) {
    int n = created.incrementAndGet();
    String requestId = "w" + runId + "-" + n;
    SandboxSpec spec = TestCluster.spec("workload", TestCluster.valueFor(requestId), requestId).toBuilder()
        .putLabels("n", Integer.toString(n)).build();
    create(client, node, c, requestId, spec);
  }

  /** One attempt of a create; an unknown outcome leaves it in doubt (to be retried with the same request id). */
  private History.Outcome create(String client, int node, ChaosClient c, String requestId, SandboxSpec spec) {
    long t0 = System.nanoTime();
    try {
      Sandbox s = c.create(spec, requestId, CALL);
      acknowledged.put(s.getId(), spec);
      acknowledgedAt.putIfAbsent(s.getId(), System.nanoTime());
      requests.put(requestId, "id " + s.getId());
      if (createInDoubt.remove(requestId) != null) {
        createResolutions.put(requestId, "acknowledged");
        if (!deleted.contains(s.getId()) && !deleteInDoubt.contains(s.getId())) deletable.add(s.getId());
      } else {
        deletable.add(s.getId());
      }
      history.record(client, "create", s.getId(), node, t0, History.Outcome.OK, "OK", requestId, null);
      return History.Outcome.OK;
    } catch (RuntimeException e) {
      History.Outcome o = History.outcomeOf(e);
      if (o == History.Outcome.FAILED) {
        requests.put(requestId, "refused " + History.codeOf(e));
        if (createInDoubt.remove(requestId) != null) createResolutions.put(requestId, "refused " + History.codeOf(e));
      } else {
        requests.putIfAbsent(requestId, "in doubt");
        createInDoubt.put(requestId, spec);
      }
      history.record(client, "create", requestId, node, t0, o, History.codeOf(e), requestId, null);
      return o;
    }
  }

  private void retryCreate(String client, int node, ChaosClient c) {
    List<String> ids = new ArrayList<>(createInDoubt.keySet());
    if (ids.isEmpty()) return;
    String requestId = ids.get(ThreadLocalRandom.current().nextInt(ids.size()));
    SandboxSpec spec = createInDoubt.get(requestId);
    if (spec != null) create(client, node, c, requestId, spec);
  }

  private void delete(String client, int node, ChaosClient c) {
    List<String> ids = new ArrayList<>(deletable);
    if (ids.isEmpty()) return;
    String id = ids.get(ThreadLocalRandom.current().nextInt(ids.size()));
    if (!deletable.remove(id)) return; // another client took it
    long t0 = System.nanoTime();
    try {
      c.delete(id, CALL);
      deleted.add(id);
      history.record(client, "delete", id, node, t0, History.Outcome.OK, "OK");
    } catch (RuntimeException e) {
      History.Outcome o = History.outcomeOf(e);
      if (o == History.Outcome.FAILED) deletable.add(id); else deleteInDoubt.add(id);
      history.record(client, "delete", id, node, t0, o, History.codeOf(e));
    }
  }

  /** One more attempt of a delete in doubt: OK or NOT_FOUND resolves it (deleted either way). */
  private History.Outcome retryDelete(String client, int node, ChaosClient c, String id) {
    long t0 = System.nanoTime();
    try {
      c.delete(id, CALL);
      resolveDelete(id, "OK");
      history.record(client, "delete", id, node, t0, History.Outcome.OK, "OK");
      return History.Outcome.OK;
    } catch (RuntimeException e) {
      History.Outcome o = History.outcomeOf(e);
      if (History.codeOf(e).equals("NOT_FOUND")) resolveDelete(id, "NOT_FOUND");
      history.record(client, "delete", id, node, t0, o, History.codeOf(e));
      return History.codeOf(e).equals("NOT_FOUND") ? History.Outcome.OK : History.Outcome.UNKNOWN;
    }
  }

  private void retryDelete(String client, int node, ChaosClient c) {
    List<String> ids = new ArrayList<>(deleteInDoubt);
    if (!ids.isEmpty()) retryDelete(client, node, c, ids.get(ThreadLocalRandom.current().nextInt(ids.size())));
  }

  private void resolveDelete(String id, String how) {
    if (deleteInDoubt.remove(id)) deleteResolutions.put(id, how);
    deleted.add(id);
  }

  private void exec(String client, int node, ChaosClient c) {
    List<String> ids = new ArrayList<>(acknowledged.keySet());
    ids.removeAll(deleted);
    ids.removeAll(deleteInDoubt);
    if (ids.isEmpty()) return;
    String id = ids.get(ThreadLocalRandom.current().nextInt(ids.size()));
    long t0 = System.nanoTime();
    try {
      ChaosClient.ExecResult r = c.exec(id, CALL, "sh", "-c", READ_BACK);
      // answered, whatever it printed: the checker judges the output ("SIGNAL": killed, e.g. its VM stopped under it)
      history.record(client, "exec", id, node, t0, History.Outcome.OK, r.exitCode() > 128 ? "SIGNAL" : "OK", "",
          History.Seen.parse(r.stdout(), r.exitCode()));
    } catch (RuntimeException e) {
      history.record(client, "exec", id, node, t0, History.outcomeOf(e), History.codeOf(e));
    }
  }

  /** Ids that must exist and run: acknowledged, not (possibly) deleted. */
  List<String> shouldRun() {
    List<String> ids = new ArrayList<>(acknowledged.keySet());
    ids.removeAll(deleted);
    ids.removeAll(deleteInDoubt);
    ids.sort(null);
    return ids;
  }

  /** The value sent in a spec made by {@link TestCluster#spec(String, String, String)} ("" for another). */
  static String valueOf(SandboxSpec spec) {
    return spec.getCommandCount() == 4 ? spec.getCommand(3) : "";
  }

  /** What the history checker compares the execs with: each acknowledged sandbox's value and time. */
  Map<String, HistoryChecker.Expected> expected() {
    Map<String, HistoryChecker.Expected> out = new TreeMap<>();
    acknowledged.forEach((id, spec) -> out.put(id,
        new HistoryChecker.Expected(valueOf(spec), acknowledgedAt.getOrDefault(id, Long.MIN_VALUE))));
    return out;
  }

  /** Checks the history so far (call after {@link #close()} and {@link #resolveInDoubt}). */
  HistoryChecker.Result check(Duration recoveryBound) {
    return new HistoryChecker(recoveryBound).check(history.ops(), history.faults(), expected());
  }

  /**
   * Retries every create in doubt (same request id, same spec) until it is acknowledged or
   * refused, and every delete in doubt until OK or NOT_FOUND, each through random live nodes for
   * at most {@code bound}. Call with the clients stopped. Returns what stays unresolved.
   */
  List<String> resolveInDoubt(TestCluster c, Duration bound) {
    List<String> unresolved = new ArrayList<>();
    long deadline = System.nanoTime() + bound.toNanos();
    for (String requestId : List.copyOf(createInDoubt.keySet())) {
      SandboxSpec spec = createInDoubt.get(requestId);
      if (spec == null) continue;
      if (!retryUntil(deadline, () -> {
        int node = liveNode(c);
        return create("resolver", node, c.client(node), requestId, spec) != History.Outcome.UNKNOWN;
      })) {
        unresolved.add("create " + requestId);
      }
    }
    for (String id : List.copyOf(deleteInDoubt)) {
      if (!retryUntil(deadline, () -> {
        int node = liveNode(c);
        return retryDelete("resolver", node, c.client(node), id) != History.Outcome.UNKNOWN;
      })) {
        unresolved.add("delete " + id);
      }
    }
    return unresolved;
  }

  private static boolean retryUntil(long deadline, java.util.concurrent.Callable<Boolean> attempt) {
    try {
      await().atMost(Duration.ofNanos(Math.max(deadline - System.nanoTime(), 1_000_000))).pollInterval(Duration.ofMillis(500))
          .until(attempt);
      return true;
    } catch (org.awaitility.core.ConditionTimeoutException e) {
      return false;
    }
  }

  private static int liveNode(TestCluster c) {
    List<Integer> live = new ArrayList<>();
    for (var n : c.local.nodes()) if (n.isAlive() && !n.isPaused()) live.add(n.index());
    return live.isEmpty() ? 1 : live.get(ThreadLocalRandom.current().nextInt(live.size()));
  }

  /** "n in doubt: k acknowledged, m refused, u unresolved" for creates, and the same for deletes. */
  String inDoubtSummary() {
    Map<String, Integer> creates = new TreeMap<>();
    createResolutions.values().forEach(v -> creates.merge(v, 1, Integer::sum));
    if (!createInDoubt.isEmpty()) creates.put("unresolved", createInDoubt.size());
    Map<String, Integer> deletes = new TreeMap<>();
    deleteResolutions.values().forEach(v -> deletes.merge(v, 1, Integer::sum));
    if (!deleteInDoubt.isEmpty()) deletes.put("unresolved", deleteInDoubt.size());
    return "creates in doubt: " + (createResolutions.size() + createInDoubt.size()) + " " + creates + "; deletes in doubt: "
        + (deleteResolutions.size() + deleteInDoubt.size()) + " " + deletes;
  }

  /** Stops the clients and waits for their last calls (each has a deadline). */
  @Override
  public void close() {
    running.set(false);
    for (Thread t : threads) {
      try {
        t.join(CALL.toMillis() * 2);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }
}
