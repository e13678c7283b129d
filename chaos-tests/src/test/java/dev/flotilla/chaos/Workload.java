package dev.flotilla.chaos;

import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Creates, execs and deletes from several client threads, each call through a random node's API,
 * recorded in a {@link History}. What it knows afterwards: the acknowledged creates (with their
 * specs), the acknowledged deletes, and the deletes in doubt.
 */
final class Workload implements AutoCloseable {
  static final Duration CALL = Duration.ofSeconds(10);

  final History history = new History();
  /** Acknowledged creates, id -> the spec sent (the initial sandboxes included). */
  final Map<String, SandboxSpec> acknowledged = new ConcurrentHashMap<>();
  final Set<String> deleted = ConcurrentHashMap.newKeySet();
  final Set<String> deleteInDoubt = ConcurrentHashMap.newKeySet();
  /** Workload-made sandboxes a client may still delete (the initial ones are never deleted). */
  private final Set<String> deletable = ConcurrentHashMap.newKeySet();
  private final TestCluster cluster;
  private final AtomicBoolean running = new AtomicBoolean(true);
  private final AtomicInteger created = new AtomicInteger();
  private final List<Thread> threads = new ArrayList<>();
  private final String runId = Long.toString(System.nanoTime() % 1_000_000_000L, 36);

  private Workload(TestCluster cluster) {
    this.cluster = cluster;
    for (Sandbox s : cluster.initial) acknowledged.put(s.getId(), TestCluster.spec("base"));
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
      if (dice < 25 && deletable.size() < 8) create(client, node, c);
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
    SandboxSpec spec = TestCluster.spec("workload").toBuilder().putLabels("n", Integer.toString(created.incrementAndGet())).build();
    String requestId = "w" + runId + "-" + created.get();
    long t0 = System.nanoTime();
    try {
      Sandbox s = c.create(spec, requestId, CALL);
      acknowledged.put(s.getId(), spec);
      deletable.add(s.getId());
      history.record(client, "create", s.getId(), node, t0, History.Outcome.OK, "OK");
    } catch (RuntimeException e) {
      history.record(client, "create", requestId, node, t0, History.outcomeOf(e), History.codeOf(e));
    }
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

  private void exec(String client, int node, ChaosClient c) {
    List<String> ids = new ArrayList<>(acknowledged.keySet());
    ids.removeAll(deleted);
    ids.removeAll(deleteInDoubt);
    if (ids.isEmpty()) return;
    String id = ids.get(ThreadLocalRandom.current().nextInt(ids.size()));
    long t0 = System.nanoTime();
    try {
      ChaosClient.ExecResult r = c.exec(id, CALL, "echo", id);
      boolean ok = r.exitCode() == 0 && r.stdout().equals(id + "\n");
      history.record(client, "exec", id, node, t0, ok ? History.Outcome.OK : History.Outcome.FAILED, ok ? "OK" : "WRONG_OUTPUT");
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
