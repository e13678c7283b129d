package dev.flotilla.chaos;

import static org.awaitility.Awaitility.await;

import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.node.local.LocalCluster;
import dev.flotilla.node.local.LocalNode;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ThreadLocalRandom;

/**
 * A real cluster for a chaos test: PostgreSQL and N node JVMs through {@link LocalCluster} (the
 * launcher `flotilla dev-cluster` uses), one gRPC client per node, the topology awaited, and
 * optionally a set of running sandboxes. {@link #close()} leaves no process behind; the files stay
 * until {@link LogsOnFailure} has printed the logs of a failed test.
 */
final class TestCluster implements AutoCloseable {
  static final Duration CALL = Duration.ofSeconds(10);
  /**
   * Deadline of a recovery probe (an exec of echo): short, since a probe that waits out a long
   * deadline would add up to that much to the measured recovery time.
   */
  static final Duration PROBE = Duration.ofSeconds(3);
  /** Clusters started by the current test, for {@link LogsOnFailure}. */
  static final List<TestCluster> STARTED = Collections.synchronizedList(new ArrayList<>());

  final LocalCluster local;
  final String name;
  /**
   * The snapshot store every node of this cluster uses ({@code flotilla.node.snapshots.dir}), when
   * the builder asked for a shared one; null: each node's own ({@code <data-dir>/snapshots}).
   */
  final java.nio.file.Path snapshotDir;
  private final List<ChaosClient> clients = new ArrayList<>();
  final List<Sandbox> initial = new ArrayList<>();
  /** The spec each initial sandbox was created with (its value and request id label), by id. */
  final java.util.Map<String, SandboxSpec> initialSpecs = new java.util.concurrent.ConcurrentHashMap<>();
  /** For probing many sandboxes at once (the common pool has one thread on 2 cores). */
  final java.util.concurrent.ExecutorService probes = java.util.concurrent.Executors.newFixedThreadPool(12, r -> {
    Thread t = new Thread(r, "chaos-probe");
    t.setDaemon(true);
    return t;
  });

  private TestCluster(LocalCluster local, String name, java.nio.file.Path snapshotDir) {
    this.local = local;
    this.name = name;
    this.snapshotDir = snapshotDir;
    for (LocalNode n : local.nodes()) clients.add(new ChaosClient(n.grpcAddress(), local.token()));
  }

  static Builder builder() {
    return new Builder();
  }

  static final class Builder {
    private int nodes = 3;
    private int sandboxes;
    private String config = "";
    private String name = "cluster";
    private boolean sharedSnapshots;
    private Duration topologyTimeout = Duration.ofSeconds(120);

    Builder nodes(int n) {
      nodes = n;
      return this;
    }

    /** Sandboxes created (spread over the nodes' APIs) and awaited RUNNING before start() returns. */
    Builder sandboxes(int n) {
      sandboxes = n;
      return this;
    }

    /** HOCON for every node (e.g. Pekko's default failure detector and SBR timings). */
    Builder config(String hocon) {
      config = hocon;
      return this;
    }

    Builder name(String n) {
      name = n;
      return this;
    }

    /**
     * One snapshot store for all nodes: {@code flotilla.node.snapshots.dir} = {@code <base>/snapshots}
     * (made 0700 by the first node that suspends a sandbox). The nodes all run on this machine, so
     * one path stands for a directory every host mounts (NFS, CephFS): any node can resume a
     * sandbox another suspended, also once that node's host is lost (its data dir is not the store).
     */
    Builder sharedSnapshotStore() {
      sharedSnapshots = true;
      return this;
    }

    /** Starts the nodes in parallel, awaits the topology, creates the sandboxes. */
    TestCluster start() throws IOException {
      LocalCluster.Builder b = LocalCluster.builder().nodes(nodes).deleteOnClose(false);
      java.nio.file.Path snapshots = null;
      String store = "";
      if (sharedSnapshots) {
        // the base directory is made here (as LocalCluster would) so the config can name a path in it
        java.nio.file.Path base = java.nio.file.Files.createTempDirectory(java.nio.file.Path.of("/tmp"), "flc");
        b.baseDir(base);
        snapshots = base.resolve("snapshots");
        store = "flotilla.node.snapshots.dir = \"" + snapshots + "\"\n";
      }
      LocalCluster local = b.config(quotaFor(sandboxes) + WORKLOAD_LIMITS + store + config).start();
      TestCluster c = new TestCluster(local, name, snapshots);
      STARTED.add(c);
      try {
        c.awaitTopology(topologyTimeout);
        c.createInitial(sandboxes, topologyTimeout.plusSeconds(2L * sandboxes)); // ~1.5 VM starts/s on 2 cores
      } catch (RuntimeException | Error e) {
        c.close();
        throw e;
      }
      return c;
    }
  }

  /**
   * The default tenant's quota (100 sandboxes, 64 vCPUs) holds the ci profile plus a workload that
   * runs into it now and then (RESOURCE_EXHAUSTED is part of what the suite exercises); a larger
   * run gets room for its sandboxes plus the same headroom for the workload.
   */
  /**
   * The workload retries a refused call at once, as fast as the node answers (hundreds a second
   * while the journal is down): it is a load generator, not a client the rate limit is for. The
   * invariants are about what the cluster answers, so the request rate is not limited here; the
   * caps on concurrent calls stay as shipped.
   */
  static final String WORKLOAD_LIMITS = "flotilla.tenants.default-limits.requests-per-second = 0\n";

  static String quotaFor(int sandboxes) {
    if (sandboxes <= 40) return "";
    int vcpus = sandboxes + 40;
    return "flotilla.tenants.default-quota { sandboxes = " + (sandboxes + 60) + ", vcpus = " + vcpus + ", memory-mib = "
        + vcpus * 128 + " }\n";
  }

  /** Node i's client (1-based). */
  ChaosClient client(int i) {
    return clients.get(i - 1);
  }

  /** A client of a random node that is running (and not SIGSTOPped) right now. */
  ChaosClient anyLiveClient() {
    List<Integer> live = new ArrayList<>();
    for (LocalNode n : local.nodes()) if (n.isAlive() && !n.isPaused()) live.add(n.index());
    if (live.isEmpty()) throw new IllegalStateException("no node is running");
    return client(live.get(ThreadLocalRandom.current().nextInt(live.size())));
  }

  ChaosClient randomClient() {
    return client(1 + ThreadLocalRandom.current().nextInt(clients.size()));
  }

  int size() {
    return clients.size();
  }

  /** Every running node's health is SERVING and it answers ListSandboxes. */
  void awaitTopology(Duration timeout) {
    for (LocalNode n : local.nodes()) {
      if (n.isAlive()) awaitNode(n.index(), timeout);
    }
  }

  void awaitNode(int i, Duration timeout) {
    ChaosClient c = client(i);
    await("node " + i + " serving and answering ListSandboxes").atMost(timeout).pollInterval(Duration.ofMillis(250))
        .ignoreException(StatusRuntimeException.class)
        .until(() -> c.serving(CALL) && c.list(CALL) != null);
  }

  private void createInitial(int n, Duration timeout) {
    List<CompletableFuture<Sandbox>> made = new ArrayList<>();
    for (int k = 0; k < n; k++) {
      ChaosClient c = client(1 + k % clients.size());
      String requestId = name + "-base-" + k;
      SandboxSpec spec = spec("base", valueFor(requestId), requestId);
      made.add(CompletableFuture.supplyAsync(() -> {
        Sandbox s = await("create " + requestId).atMost(timeout)
            .pollInterval(Duration.ofMillis(500)).ignoreException(StatusRuntimeException.class)
            .until(() -> c.create(spec, requestId, CALL), x -> x != null);
        initialSpecs.put(s.getId(), spec);
        return s;
      }, probes));
    }
    for (var f : made) initial.add(f.join());
    awaitRunningAndExec(initial.stream().map(Sandbox::getId).toList(), timeout);
  }

  static SandboxSpec spec(String origin) {
    return SandboxSpec.newBuilder().setDriver("process").setVcpus(1).setMemoryMib(128).putLabels("origin", origin).build();
  }

  /** Where each incarnation's main process writes the sandbox's value (its writable layer). */
  static final String VALUE_FILE = "/tmp/chaos-value";

  /**
   * A sandbox whose main process writes {@code value} to {@link #VALUE_FILE} and then sleeps, and
   * labelled with its create's request id (label {@code rid}, for ListSandboxes' label_selector).
   * The value travels in the spec's command, the only part of a journaled spec that reaches the
   * VM: an exec that reads it back proves the VM serving runs this sandbox's recorded spec. Every
   * incarnation runs the command again (a host loss gives the new one a fresh writable layer), and
   * writes through a rename so a reader sees the whole value or none.
   */
  static SandboxSpec spec(String origin, String value, String requestId) {
    return spec(origin).toBuilder().putLabels("rid", requestId).addAllCommand(List.of("sh", "-c",
        "printf %s \"$0\" > " + VALUE_FILE + ".tmp && mv -f " + VALUE_FILE + ".tmp " + VALUE_FILE + "; exec sleep 2147483647",
        value)).build();
  }

  /** A value unique to this request id and run: a VM of another sandbox (or run) cannot print it. */
  static String valueFor(String requestId) {
    return "v-" + requestId + "-" + Long.toString(ThreadLocalRandom.current().nextLong() & Long.MAX_VALUE, 36);
  }

  /** Awaits (bounded) every given sandbox RUNNING and answering an exec, through random live nodes. */
  void awaitRunningAndExec(List<String> ids, Duration timeout) {
    List<String> pending = Collections.synchronizedList(new ArrayList<>(ids));
    await("sandboxes running and answering exec: " + pending).atMost(timeout).pollInterval(Duration.ofMillis(200))
        .until(() -> {
          List<CompletableFuture<String>> probe = new ArrayList<>();
          for (String id : List.copyOf(pending)) {
            probe.add(CompletableFuture.supplyAsync(() -> answersExec(id) ? id : null, probes));
          }
          for (var f : probe) {
            String ok = f.join();
            if (ok != null) pending.remove(ok);
          }
          return pending.isEmpty();
        });
  }

  boolean answersExec(String id) {
    try {
      return anyLiveClient().exec(id, PROBE, "echo", "ok").stdout().equals("ok\n");
    } catch (RuntimeException e) {
      return false;
    }
  }

  /**
   * The sandbox, or null when NOT_FOUND: the workload may delete it between the snapshot of what
   * should run and this read. Other errors (a cluster still recovering) are retried for {@code bound}.
   */
  Sandbox getUnlessDeleted(String id, Duration bound) {
    return await("get " + id).atMost(bound).pollInterval(Duration.ofMillis(250))
        .until(() -> {
          try {
            return java.util.Optional.of(anyLiveClient().get(id, CALL));
          } catch (StatusRuntimeException e) {
            return e.getStatus().getCode() == io.grpc.Status.Code.NOT_FOUND ? java.util.Optional.<Sandbox>empty() : null;
          }
        }, x -> x != null).orElse(null);
  }

  /** The current incarnation of each of {@code ids} that still exists ({@link #getUnlessDeleted}). */
  java.util.Map<String, Long> incarnations(java.util.Collection<String> ids, Duration bound) {
    java.util.Map<String, Long> out = new java.util.TreeMap<>();
    for (String id : ids) {
      Sandbox s = getUnlessDeleted(id, bound);
      if (s != null) out.put(id, s.getIncarnation());
    }
    return out;
  }

  /** The node's artery address for each node index, to read Sandbox.node. */
  String arteryOf(int i) {
    return local.node(i).arteryAddress();
  }

  /** The last lines of every node's log and of PostgreSQL's. */
  String logTails(int lines) {
    StringBuilder b = new StringBuilder();
    for (LocalNode n : local.nodes()) {
      b.append("----- ").append(name).append(": ").append(n).append(" log ").append(n.logFile()).append(" (last ")
          .append(lines).append(" lines)\n").append(n.logTail(lines)).append('\n');
    }
    return b.toString();
  }

  @Override
  public void close() {
    for (ChaosClient c : clients) c.close();
    probes.shutdownNow();
    local.close();
  }
}
