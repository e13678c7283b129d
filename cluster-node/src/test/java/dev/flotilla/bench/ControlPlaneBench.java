package dev.flotilla.bench;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.OutputSink;
import dev.flotilla.api.v1.CreateSandboxRequest;
import dev.flotilla.api.v1.DeleteSandboxRequest;
import dev.flotilla.api.v1.ExecRequest;
import dev.flotilla.api.v1.ExecResponse;
import dev.flotilla.api.v1.GetSandboxRequest;
import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxEvent;
import dev.flotilla.api.v1.SandboxServiceClient;
import dev.flotilla.api.v1.SandboxSpec;
import dev.flotilla.api.v1.WatchSandboxRequest;
import dev.flotilla.node.FlotillaNode;
import dev.flotilla.node.auth.TokenAuth;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmDirectory;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.process.ProcessHypervisor;
import dev.flotilla.vm.process.ProcessHypervisorConfig;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.grpc.GrpcClientSettings;
import org.apache.pekko.stream.javadsl.Sink;

/**
 * Control-plane figures for scripts/bench-control-plane.sh (figures only, no assertions): a real
 * node ({@link FlotillaNode#start}) in this JVM on H2 with the real process driver, driven through
 * the generated Pekko gRPC client over TCP loopback, side by side with the bare process driver and
 * a direct agent client. Everything it starts it deletes or kills, also on failure and on SIGINT/SIGTERM.
 *
 * <p>Args: {@code --data-dir DIR --iterations N --exec-iterations M --creates N --concurrency C --sandboxes K}.
 */
public final class ControlPlaneBench {
  private static final Duration T = Duration.ofSeconds(60);
  private static final int WARMUP = 3;
  private static final String CGROUP_PARENT = "flotilla-bcp";

  // Everything cleanup() must undo.
  private static final AtomicBoolean cleaned = new AtomicBoolean();
  private static final Set<Vm> bareVms = ConcurrentHashMap.newKeySet();
  private static volatile FlotillaNode node;
  private static volatile ActorSystem clientSystem;
  private static volatile Path dataDir;
  private static volatile boolean ownDataDir;
  private static volatile String token;

  private static final List<SandboxServiceClient> clients = new ArrayList<>();
  private static int imageIterations;

  public static void main(String[] args) throws Exception {
    Map<String, String> o = parse(args);
    int iterations = Integer.parseInt(o.getOrDefault("--iterations", "30"));
    int execIterations = Integer.parseInt(o.getOrDefault("--exec-iterations", "400"));
    int creates = Integer.parseInt(o.getOrDefault("--creates", "40"));
    int concurrency = Integer.parseInt(o.getOrDefault("--concurrency", "4"));
    int sandboxes = Integer.parseInt(o.getOrDefault("--sandboxes", "32"));
    imageIterations = Integer.parseInt(o.getOrDefault("--image-iterations", "10"));
    if (o.containsKey("--data-dir")) {
      dataDir = Path.of(o.get("--data-dir"));
    } else {
      dataDir = Files.createTempDirectory(Path.of("/tmp"), "flcp");
      ownDataDir = true;
    }
    Files.setPosixFilePermissions(dataDir, PosixFilePermissions.fromString("rwx--x--x"));

    Runtime.getRuntime().addShutdownHook(new Thread(ControlPlaneBench::cleanup, "bench-cleanup"));
    int rc = 0;
    try {
      run(iterations, execIterations, creates, concurrency, sandboxes);
    } catch (Throwable t) {
      System.out.println();
      if (cleaned.get()) {
        System.out.println("bench-control-plane: interrupted (" + t + "); cleaned up");
      } else {
        System.out.println("bench-control-plane: FAILED: " + t);
        t.printStackTrace(System.out);
      }
      rc = 1;
    } finally {
      cleanup();
    }
    System.exit(rc);
  }

  // ------------------------------------------------------------------------------ the run

  private static void run(int iterations, int execIterations, int creates, int concurrency, int sandboxes) throws Exception {
    String loadStart = loadAvg();
    Instant started = Instant.now();
    Path agentJar = Path.of(System.getProperty("flotilla.agent.jar", "guest-agent/target/flotilla-guest-agent.jar")).toAbsolutePath();

    long b0 = System.nanoTime();
    node = FlotillaNode.start(nodeConfig());
    double bootMs = (System.nanoTime() - b0) / 1e6;
    token = TokenAuth.defaultToken(dataDir);
    clientSystem = ActorSystem.create("bench-client", ConfigFactory.parseString(
            "pekko.actor.provider = local\npekko.coordinated-shutdown.run-by-jvm-shutdown-hook = off\npekko.loglevel = WARNING")
        .withFallback(ConfigFactory.load()));
    for (int i = 0; i < Math.max(1, concurrency); i++) {
      clients.add(SandboxServiceClient.create(
          GrpcClientSettings.connectToServiceAt("127.0.0.1", node.grpcPort(), clientSystem).withTls(false), clientSystem));
    }
    SandboxServiceClient client = clients.get(0);
    // The same driver configuration as the node's (runtime, default image, cgroup parent, lean agent
    // JVM flags), beside it: its own state root, ranges from the same host-wide id table.
    ProcessHypervisor hv = new ProcessHypervisor(ProcessHypervisorConfig.of(
        Path.of(System.getProperty("flotilla.sandbox.runtime")), Path.of(System.getProperty("flotilla.default.image")),
        dataDir.resolve("bare-vms")).withCgroupParent(CGROUP_PARENT));

    System.out.println("node up in " + Math.round(bootMs) + " ms; gRPC " + node.grpcAddress() + "; data dir " + dataDir);
    System.out.println("driver: " + hv.capabilities());

    // 1. create-to-running through gRPC vs bare driver spawn, interleaved.
    section("1/4 create-to-running: " + iterations + " + " + WARMUP + " warm-up, gRPC and bare driver interleaved");
    Stats grpcAck = new Stats();
    Stats grpcRunning = new Stats();
    Stats grpcDelete = new Stats();
    Stats serverSpan = new Stats();
    Stats watchDelivery = new Stats();
    Stats bare = new Stats();
    for (int i = 0; i < iterations + WARMUP; i++) {
      boolean keep = i >= WARMUP;
      double[] g = null;
      double d;
      if (i % 2 == 0) {
        g = createToRunning(client, i);
        d = bareSpawn(hv, "bare-" + i);
      } else {
        d = bareSpawn(hv, "bare-" + i);
        g = createToRunning(client, i);
      }
      if (keep) {
        grpcAck.add(g[0]);
        grpcRunning.add(g[1]);
        grpcDelete.add(g[2]);
        serverSpan.add(g[3]);
        watchDelivery.add(g[4]);
        bare.add(d);
      }
      System.out.print(".");
    }
    System.out.println();

    // 2. Exec of `true`: gRPC vs direct agent client on the same sandbox, interleaved.
    section("2/4 exec of `true`: " + execIterations + " + " + (WARMUP * 10) + " warm-up each, interleaved");
    Stats execGrpc = new Stats();
    Stats execDirect = new Stats();
    Stats getUnary = new Stats();
    String execId = await(client.createSandbox().addHeader("authorization", bearer())
        .invoke(CreateSandboxRequest.newBuilder().setSpec(spec("exec")).build())).getId();
    Sandbox running = awaitRunning(client, execId);
    VmHandle handle = new VmDirectory(dataDir.resolve("vms")).handles().stream()
        .filter(h -> h.sandboxId().equals(execId) && h.incarnation() == running.getIncarnation())
        .findFirst().orElseThrow(() -> new IllegalStateException("no VM handle for " + execId));
    // The agent serves only the holder of its incarnation's secret, kept in the node-only state dir.
    AgentAddress address = new AgentAddress(handle.agentSocket(), java.util.OptionalLong.empty(),
        dev.flotilla.vm.AgentSecrets.read(handle.stateDir()));
    try (AgentClient direct = AgentClients.connect(address, T)) {
      direct.handshake(execId, running.getIncarnation(), T).get(30, TimeUnit.SECONDS);
      OutputSink drop = OutputSink.DISCARD;
      ExecRequest req = ExecRequest.newBuilder().setSandboxId(execId).addArgv("true").build();
      GetSandboxRequest get = GetSandboxRequest.newBuilder().setId(execId).build();
      for (int i = 0; i < execIterations + WARMUP * 10; i++) {
        boolean keep = i >= WARMUP * 10;
        long t0 = System.nanoTime();
        ExecResponse last = await(client.exec().addHeader("authorization", bearer()).invoke(req).runWith(Sink.last(), clientSystem));
        long t1 = System.nanoTime();
        if (!last.hasExit() || last.getExit().getExitCode() != 0) throw new IllegalStateException("gRPC exec ended with " + last);
        String xid = "bench-direct-" + i;
        long t2 = System.nanoTime();
        direct.exec(dev.flotilla.agent.protocol.client.ExecRequest.of(xid, "true"), drop, T).get(30, TimeUnit.SECONDS);
        var exit = direct.waitProcess(xid, T).get(30, TimeUnit.SECONDS);
        long t3 = System.nanoTime();
        if (exit.exitCode() != 0) throw new IllegalStateException("direct exec ended with " + exit);
        long t4 = System.nanoTime();
        await(client.getSandbox().addHeader("authorization", bearer()).invoke(get));
        long t5 = System.nanoTime();
        if (keep) {
          execGrpc.addNanos(t1 - t0);
          execDirect.addNanos(t3 - t2);
          getUnary.addNanos(t5 - t4);
        }
      }
    }
    deleteAll();
    awaitNoVms();

    // 3. Sustained creates from several concurrent clients.
    section("3/4 sustained creates: " + creates + " creates from " + clients.size() + " concurrent gRPC clients");
    Stats loadAck = new Stats();
    Stats loadRunning = new Stats();
    AtomicLong lastAck = new AtomicLong();
    AtomicLong lastRunning = new AtomicLong();
    List<CompletableFuture<Void>> workers = new ArrayList<>();
    long s0 = System.nanoTime();
    for (int c = 0; c < clients.size(); c++) {
      SandboxServiceClient cl = clients.get(c);
      int share = creates / clients.size() + (c < creates % clients.size() ? 1 : 0);
      int worker = c;
      workers.add(CompletableFuture.runAsync(() -> {
        List<CompletableFuture<?>> runs = new ArrayList<>();
        for (int k = 0; k < share; k++) {
          long t0 = System.nanoTime();
          Sandbox s = await(cl.createSandbox().addHeader("authorization", bearer())
              .invoke(CreateSandboxRequest.newBuilder().setSpec(spec("load-" + worker)).build()));
          long t1 = System.nanoTime();
          loadAck.addNanos(t1 - t0);
          lastAck.accumulateAndGet(t1, Math::max);
          runs.add(runningStage(cl, s.getId()).thenAccept(ev -> {
            long t2 = System.nanoTime();
            loadRunning.addNanos(t2 - t0);
            lastRunning.accumulateAndGet(t2, Math::max);
          }));
        }
        CompletableFuture.allOf(runs.toArray(CompletableFuture[]::new)).orTimeout(3, TimeUnit.MINUTES).join();
      }));
    }
    CompletableFuture.allOf(workers.toArray(CompletableFuture[]::new)).get(5, TimeUnit.MINUTES);
    double ackSpan = (lastAck.get() - s0) / 1e9;
    double runSpan = (lastRunning.get() - s0) / 1e9;
    long d0 = System.nanoTime();
    int deleted = deleteAll();
    double deleteSpan = (System.nanoTime() - d0) / 1e9;
    awaitNoVms();

    // 4. Heap per idle running sandbox.
    images(client, imageIterations);

    section("4/4 heap: " + sandboxes + " idle running sandboxes vs none");
    Thread.sleep(2000);
    HeapProbe.Reading h0 = HeapProbe.read(dataDir.resolve("histo-0.txt"));
    List<CompletableFuture<?>> up = new ArrayList<>();
    for (int i = 0; i < sandboxes; i++) {
      SandboxServiceClient cl = clients.get(i % clients.size());
      String id = await(cl.createSandbox().addHeader("authorization", bearer())
          .invoke(CreateSandboxRequest.newBuilder().setSpec(spec("heap")).build())).getId();
      up.add(runningStage(cl, id));
    }
    CompletableFuture.allOf(up.toArray(CompletableFuture[]::new)).get(3, TimeUnit.MINUTES);
    up.clear(); // the events they hold are the client's, not the node's
    Thread.sleep(3000); // idle: let start-up garbage and pending timers settle
    HeapProbe.Reading h1 = HeapProbe.read(dataDir.resolve("histo-k.txt"));
    deleteAll();
    awaitNoVms();
    Thread.sleep(2000);
    HeapProbe.Reading h2 = HeapProbe.read(dataDir.resolve("histo-after.txt"));

    String loadEnd = loadAvg();

    // ------------------------------------------------------------------------------ report
    System.out.println();
    System.out.println("================ Flotilla control-plane benchmark ================");
    System.out.printf("machine: nproc=%d (JVM sees %d), %s, MemTotal %s; %s %s, GC %s%n", nproc(),
        Runtime.getRuntime().availableProcessors(), cpuModel(), memTotal(), System.getProperty("java.vm.name"),
        System.getProperty("java.version"), gcNames());
    System.out.println("load average (1/5/15 min): start " + loadStart + ", end " + loadEnd
        + "; run took " + Duration.between(started, Instant.now()).toSeconds() + " s");
    System.out.println("node: in this JVM (FlotillaNode.start), H2 journal, process driver; client: generated Pekko gRPC"
        + " client, own ActorSystem, TCP loopback, bearer token; sandboxes 1 vCPU / 256 MiB");
    System.out.println();
    System.out.printf("%-58s %9s %9s %5s%n", "latency (ms)", "p50", "p99", "n");
    row("1. create-to-RUNNING via gRPC (Create + WatchSandbox)", grpcRunning);
    row("   bare driver spawn (prepare+start+connect+handshake)", bare);
    ratio("   ratio gRPC / bare", grpcRunning, bare);
    row("   (CreateSandbox acknowledgement alone)", grpcAck);
    row("   (node: Sandbox.created_at to the RUNNING event's `at`)", serverSpan);
    row("   (RUNNING event's `at` to its arrival at the watcher)", watchDelivery);
    row("   (DeleteSandbox of a running sandbox)", grpcDelete);
    row("2. Exec `true` via gRPC (stream until exit message)", execGrpc);
    row("   Exec `true` via direct agent client (exec+waitProcess)", execDirect);
    ratio("   ratio gRPC / direct", execGrpc, execDirect);
    row("   (GetSandbox unary, same connection: gRPC floor)", getUnary);
    System.out.println();
    System.out.printf("3. sustained creates: %d creates from %d concurrent clients%n", creates, clients.size());
    System.out.printf("   to acknowledgement: %.1f creates/s (last ack after %.2f s)%n", creates / ackSpan, ackSpan);
    System.out.printf("   to RUNNING:         %.1f creates/s (all RUNNING after %.2f s)%n", creates / runSpan, runSpan);
    row("   per-create ack latency under load", loadAck);
    row("   per-create create-to-RUNNING under load", loadRunning);
    System.out.printf("   then deleting all %d: %.2f s (%.1f deletes/s)%n", deleted, deleteSpan, deleted / deleteSpan);
    System.out.println();
    System.out.printf("4. heap per idle RUNNING sandbox (K=%d), node JVM used heap after System.gc() x4 (min):%n", sandboxes);
    System.out.printf("   0 sandboxes: %s, K running: %s, after deleting them: %s%n", mib(h0.usedAfterGc()),
        mib(h1.usedAfterGc()), mib(h2.usedAfterGc()));
    System.out.printf("   per sandbox: %,d bytes vs before (%,d vs after delete)%n",
        (h1.usedAfterGc() - h0.usedAfterGc()) / sandboxes, (h1.usedAfterGc() - h2.usedAfterGc()) / sandboxes);
    System.out.printf("   live-object class histogram (GC.class_histogram) per sandbox: %,d bytes vs before (%,d vs after delete)%n",
        (h1.histogramBytes() - h0.histogramBytes()) / sandboxes, (h1.histogramBytes() - h2.histogramBytes()) / sandboxes);
    System.out.println("   by package, bytes per sandbox (K running minus 0 before):");
    Map<String, long[]> histo0 = h0.histogram();
    Map<String, long[]> histoK = h1.histogram();
    HeapProbe.groupDelta(histo0, histoK).forEach((g, b) -> System.out.printf("     %-42s %,10d%n", g, b / sandboxes));
    System.out.println("   largest classes, per sandbox (instances, bytes):");
    for (Object[] r : HeapProbe.topClasses(histo0, histoK, 15)) {
      System.out.printf("     %-70s %6.1f %,9d%n", shortName((String) r[0]), (long) r[1] / (double) sandboxes, (long) r[2] / sandboxes);
    }
    System.out.printf("   outside the heap: +%.1f node JVM threads per sandbox (each with its native stack)%n",
        (h1.threads() - h0.threads()) / (double) sandboxes);
    System.out.println("==================================================================");
  }

  // ------------------------------------------------------------------------------ measurements

  /**
   * {ack, create-to-RUNNING, delete, server createdAt-to-RUNNING-event, RUNNING event time to its
   * arrival at the client} in ms, of one sandbox. The last two use the node's event timestamps
   * (same host clock: the node is in this JVM).
   */
  private static double[] createToRunning(SandboxServiceClient client, int i) throws Exception {
    return createToRunning(client, spec("latency"));
  }

  private static double[] createToRunning(SandboxServiceClient client, SandboxSpec spec) throws Exception {
    long t0 = System.nanoTime();
    Sandbox s = await(client.createSandbox().addHeader("authorization", bearer())
        .invoke(CreateSandboxRequest.newBuilder().setSpec(spec).build()));
    long t1 = System.nanoTime();
    SandboxEvent ev = runningStage(client, s.getId()).get(T.toSeconds(), TimeUnit.SECONDS);
    long t2 = System.nanoTime();
    Instant arrived = Instant.now();
    Instant createdAt = ts(s.getCreatedAt());
    Instant runningAt = ts(ev.getAt());
    await(client.deleteSandbox().addHeader("authorization", bearer()).invoke(DeleteSandboxRequest.newBuilder().setId(s.getId()).build()));
    long t3 = System.nanoTime();
    awaitNoVms();
    return new double[] {(t1 - t0) / 1e6, (t2 - t0) / 1e6, (t3 - t2) / 1e6,
        Duration.between(createdAt, runningAt).toNanos() / 1e6, Duration.between(runningAt, arrived).toNanos() / 1e6};
  }

  private static Instant ts(com.google.protobuf.Timestamp t) {
    return Instant.ofEpochSecond(t.getSeconds(), t.getNanos());
  }

  /** The same measurement DriverBench makes: prepare + start + connect + handshake through the driver. */
  private static double bareSpawn(ProcessHypervisor hv, String id) throws Exception {
    VmSpec spec = new VmSpec(id, 1, 1, 256, 4096, dataDir.resolve("vms").resolve(id).resolve("1"), Map.of());
    long t0 = System.nanoTime();
    Vm vm = hv.prepare(spec);
    bareVms.add(vm);
    try {
      vm.start(T);
      try (AgentClient c = AgentClients.connect(vm.agentAddress(), T)) {
        c.handshake(id, 1, T).get(30, TimeUnit.SECONDS);
        return (System.nanoTime() - t0) / 1e6;
      }
    } finally {
      destroy(vm);
    }
  }

  private static void destroy(Vm vm) {
    try {
      vm.kill();
      vm.exitFuture().get(30, TimeUnit.SECONDS);
    } catch (Exception e) {
      System.out.println("bench: killing bare VM: " + e);
    }
    try {
      vm.destroy();
    } catch (Exception e) {
      System.out.println("bench: destroying bare VM: " + e);
    }
    bareVms.remove(vm);
  }

  /** Completes with the first event showing the sandbox RUNNING; fails if it shows FAILED or the stream ends. */
  private static CompletableFuture<SandboxEvent> runningStage(SandboxServiceClient client, String id) {
    return client.watchSandbox().addHeader("authorization", bearer())
        .invoke(WatchSandboxRequest.newBuilder().setId(id).build())
        .filter(ev -> ev.getSandbox().getPhase() == Phase.RUNNING || ev.getSandbox().getPhase() == Phase.FAILED)
        .runWith(Sink.head(), clientSystem)
        .toCompletableFuture()
        .thenApply(ev -> {
          if (ev.getSandbox().getPhase() == Phase.FAILED) {
            throw new IllegalStateException("sandbox " + id + " FAILED: " + ev.getSandbox().getStatusMessage());
          }
          return ev;
        })
        .orTimeout(T.toSeconds(), TimeUnit.SECONDS);
  }

  private static Sandbox awaitRunning(SandboxServiceClient client, String id) throws Exception {
    return runningStage(client, id).get(T.toSeconds(), TimeUnit.SECONDS).getSandbox();
  }

  // ------------------------------------------------------------------------------ cleanup

  /** Deletes every sandbox of the tenant, in parallel; returns how many. */
  private static int deleteAll() throws Exception {
    SandboxServiceClient client = clients.get(0);
    List<String> ids = new ArrayList<>();
    String page = "";
    do {
      var resp = await(client.listSandboxes().addHeader("authorization", bearer())
          .invoke(ListSandboxesRequest.newBuilder().setPageSize(1000).setPageToken(page).build()));
      resp.getSandboxesList().forEach(s -> ids.add(s.getId()));
      page = resp.getNextPageToken();
    } while (!page.isEmpty());
    List<CompletableFuture<?>> all = new ArrayList<>();
    for (int i = 0; i < ids.size(); i++) {
      all.add(clients.get(i % clients.size()).deleteSandbox().addHeader("authorization", bearer())
          .invoke(DeleteSandboxRequest.newBuilder().setId(ids.get(i)).build()).toCompletableFuture());
    }
    CompletableFuture.allOf(all.toArray(CompletableFuture[]::new)).get(2, TimeUnit.MINUTES);
    return ids.size();
  }

  /** Waits until no sandbox process the data dir knows of is alive (deleted VMs have ended). */
  private static void awaitNoVms() throws InterruptedException {
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (System.nanoTime() < until) {
      if (liveVmPids().isEmpty()) return;
      Thread.sleep(20);
    }
    System.out.println("bench: sandbox processes still alive 30 s after delete: " + liveVmPids());
  }

  private static List<Long> liveVmPids() {
    List<Long> pids = new ArrayList<>();
    for (VmHandle h : new VmDirectory(dataDir.resolve("vms")).handles()) {
      if (h.pid() > 0 && ProcessHandle.of(h.pid()).map(ProcessHandle::isAlive).orElse(false)) pids.add(h.pid());
    }
    return pids;
  }

  /** Idempotent: deletes all sandboxes, stops the node and the client, kills any sandbox process left, removes the data dir if ours. */
  private static void cleanup() {
    if (!cleaned.compareAndSet(false, true)) return;
    try {
      if (node != null && clientSystem != null && !clients.isEmpty()) deleteAll();
    } catch (Throwable t) {
      System.out.println("bench cleanup: deleting sandboxes: " + t);
    }
    for (Vm vm : List.copyOf(bareVms)) destroy(vm);
    // The bare driver's sandboxes keep writable layers and id ranges until released: release them all.
    if (dataDir != null) ProcessHypervisor.forgetAll(dataDir.resolve("bare-vms"));
    try {
      if (node != null) node.close();
    } catch (Throwable t) {
      System.out.println("bench cleanup: closing node: " + t);
    }
    try {
      if (clientSystem != null) clientSystem.terminate();
    } catch (Throwable t) {
      System.out.println("bench cleanup: client: " + t);
    }
    if (dataDir != null) {
      // As TestNode.killVms: whatever a handle under the data dir names, and its descendants.
      for (VmHandle h : new VmDirectory(dataDir.resolve("vms")).handles()) {
        if (h.pid() > 0) {
          ProcessHandle.of(h.pid()).ifPresent(p -> {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
          });
        }
      }
      if (ownDataDir) {
        try (Stream<Path> walk = Files.walk(dataDir)) {
          walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (Exception e) {
          System.out.println("bench cleanup: removing " + dataDir + ": " + e);
        }
      }
    }
  }

  // ------------------------------------------------------------------------------ plumbing

  private static Config nodeConfig() {
    Map<String, Object> o = new HashMap<>();
    o.put("flotilla.node.data-dir", dataDir.toString());
    o.put("flotilla.node.grpc.port", 0);
    o.put("pekko.remote.artery.canonical.port", 0);
    o.put("flotilla.persistence.jdbc-url", "");
    o.put("flotilla.node.drivers.process.cgroup-parent", CGROUP_PARENT);
    // No quota in the way of the sustained-create phase.
    o.put("flotilla.tenants.default-quota.sandboxes", 0);
    o.put("flotilla.tenants.default-quota.vcpus", 0);
    o.put("flotilla.tenants.default-quota.memory-mib", 0);
    // Our own shutdown hook deletes the sandboxes before the node stops.
    o.put("pekko.coordinated-shutdown.run-by-jvm-shutdown-hook", "off");
    return ConfigFactory.parseMap(o).withFallback(ConfigFactory.load()).resolve();
  }

  /**
   * Images: the first pull of a small image (busybox plus a file, built with umoci, pushed with
   * skopeo to Debian's registry on loopback) and its second (cached), then create-to-RUNNING of a
   * sandbox on that image (warm cache) against the default image, interleaved.
   */
  private static void images(SandboxServiceClient client, int n) throws Exception {
    section("images: first pull of a small image, then create-to-RUNNING on it (warm) vs the default image, " + n + " each");
    try {
      dev.flotilla.images.TestUmoci.requireTools();
    } catch (Throwable t) {
      System.out.println("   skipped: " + t.getMessage());
      return;
    }
    Path work = Files.createTempDirectory(Path.of("/tmp"), "flcp-img");
    try (dev.flotilla.images.TestRegistry registry = dev.flotilla.images.TestRegistry.start(work, "127.0.0.1", "")) {
      Path layout = work.resolve("layout");
      dev.flotilla.images.TestUmoci.build(work, layout, "v1", Path.of(System.getProperty("flotilla.default.image")),
          Map.of("srv/hello", "hello\n"), List.of("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), "/srv", "");
      String ref = registry.address() + "/bench/app:1";
      dev.flotilla.images.TestUmoci.push(layout, "v1", registry.address(), "bench/app:1");
      var images = dev.flotilla.api.v1.ImageServiceClient.create(
          GrpcClientSettings.connectToServiceAt("127.0.0.1", node.grpcPort(), clientSystem).withTls(false), clientSystem);
      var pull = dev.flotilla.api.v1.PullImageRequest.newBuilder().setRef(ref).build();
      long p0 = System.nanoTime();
      var img = await(images.pullImage().addHeader("authorization", bearer()).invoke(pull));
      long p1 = System.nanoTime();
      await(images.pullImage().addHeader("authorization", bearer()).invoke(pull));
      long p2 = System.nanoTime();
      System.out.printf("   first pull %.1f ms (%s, %d bytes); second pull (cached) %.1f ms%n",
          (p1 - p0) / 1e6, ref, img.getSize(), (p2 - p1) / 1e6);
      Stats plain = new Stats();
      Stats withImage = new Stats();
      SandboxSpec imageSpec = spec("image").toBuilder().setImage(ref).build();
      for (int i = 0; i < n + WARMUP; i++) {
        double a = i % 2 == 0 ? createToRunning(client, spec("latency"))[1] : createToRunning(client, imageSpec)[1];
        double b = i % 2 == 0 ? createToRunning(client, imageSpec)[1] : createToRunning(client, spec("latency"))[1];
        if (i >= WARMUP) {
          plain.add(i % 2 == 0 ? a : b);
          withImage.add(i % 2 == 0 ? b : a);
        }
        System.out.print(".");
      }
      System.out.println();
      row("create-to-RUNNING via gRPC, default image", plain);
      row("create-to-RUNNING via gRPC, registry image (warm)", withImage);
      ratio("image / default", withImage, plain);
    } finally {
      new ProcessBuilder("rm", "-rf", work.toString()).start().waitFor();
    }
  }

  private static SandboxSpec spec(String phase) {
    return SandboxSpec.newBuilder().setDriver("process").setVcpus(1).setMemoryMib(256).putLabels("bench", phase).build();
  }

  private static String bearer() {
    return "Bearer " + token;
  }

  static <R> R await(java.util.concurrent.CompletionStage<R> stage) {
    try {
      return stage.toCompletableFuture().get(T.toSeconds(), TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof RuntimeException r) throw r;
      throw new IllegalStateException(e.getCause());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException(e);
    } catch (java.util.concurrent.TimeoutException e) {
      throw new IllegalStateException("no answer within " + T, e);
    }
  }

  private static void section(String s) {
    System.out.println("-- " + s + " (load " + loadAvg() + ")");
  }

  private static void row(String name, Stats s) {
    System.out.printf("%-58s %9.2f %9.2f %5d%n", name, s.median(), s.p99(), s.n());
  }

  private static void ratio(String name, Stats a, Stats b) {
    System.out.printf("%-58s %8.2fx %8.2fx%n", name, a.median() / b.median(), a.p99() / b.p99());
  }

  private static String mib(long bytes) {
    return String.format("%.2f MiB", bytes / 1048576.0);
  }

  private static String shortName(String cls) {
    return cls.length() <= 70 ? cls : "..." + cls.substring(cls.length() - 67);
  }

  private static String loadAvg() {
    try {
      String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
      return f[0] + " " + f[1] + " " + f[2];
    } catch (Exception e) {
      return "?";
    }
  }

  private static int nproc() {
    try {
      Process p = new ProcessBuilder("nproc").redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes()).trim();
      p.waitFor();
      return Integer.parseInt(out);
    } catch (Exception e) {
      return Runtime.getRuntime().availableProcessors();
    }
  }

  private static String cpuModel() {
    try (Stream<String> lines = Files.lines(Path.of("/proc/cpuinfo"))) {
      return lines.filter(l -> l.startsWith("model name")).findFirst().map(l -> l.substring(l.indexOf(':') + 1).trim()).orElse("?");
    } catch (Exception e) {
      return "?";
    }
  }

  private static String memTotal() {
    try (Stream<String> lines = Files.lines(Path.of("/proc/meminfo"))) {
      return lines.filter(l -> l.startsWith("MemTotal")).findFirst()
          .map(l -> Long.parseLong(l.replaceAll("[^0-9]", "")) / 1024 + " MiB").orElse("?");
    } catch (Exception e) {
      return "?";
    }
  }

  private static String gcNames() {
    return String.join("+", ManagementFactory.getGarbageCollectorMXBeans().stream().map(b -> b.getName()).toList());
  }

  private static Map<String, String> parse(String[] args) {
    Map<String, String> o = new HashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      if (!args[i].startsWith("--")) throw new IllegalArgumentException("unexpected argument " + args[i]);
      o.put(args[i], args[i + 1]);
    }
    return o;
  }
}
