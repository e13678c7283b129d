package dev.flotilla.node;

import com.typesafe.config.Config;
import dev.flotilla.cluster.NodeAddress;
import dev.flotilla.node.auth.TokenAuth;
import dev.flotilla.node.grpc.GrpcServer;
import dev.flotilla.node.tls.ClusterTls;
import dev.flotilla.node.tls.GrpcTls;
import dev.flotilla.persistence.EmbeddedJournalFiles;
import dev.flotilla.persistence.JournalDatabase;
import dev.flotilla.persistence.JournalHealth;
import dev.flotilla.persistence.PersistenceSettings;
import dev.flotilla.persistence.SchemaBootstrap;
import dev.flotilla.sandbox.JournalStatus;
import dev.flotilla.sandbox.SandboxChanged;
import dev.flotilla.sandbox.SandboxControl;
import dev.flotilla.sandbox.SandboxEntity;
import dev.flotilla.sandbox.SandboxHistory;
import dev.flotilla.sandbox.SandboxRuntime;
import dev.flotilla.sandbox.SpecValidator;
import dev.flotilla.sandbox.VmReaper;
import dev.flotilla.tenant.TenantEntity;
import dev.flotilla.tenant.TenantLimits;
import dev.flotilla.vm.Hypervisor;
import dev.flotilla.node.images.NodeImages;
import dev.flotilla.node.templates.NodeTemplates;
import dev.flotilla.images.shared.SharedImages;
import dev.flotilla.vm.NodeOnlyFiles;
import dev.flotilla.vm.ids.IdRangeAllocator;
import dev.flotilla.vm.process.ProcessHypervisor;
import dev.flotilla.vm.process.ProcessHypervisorConfig;
import dev.flotilla.vm.qemu.QemuConfig;
import dev.flotilla.vm.qemu.QemuHypervisor;
import dev.flotilla.vm.supervisor.MainLogs;
import dev.flotilla.vm.supervisor.VmSupervisor;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.typed.ActorRef;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.DispatcherSelector;
import org.apache.pekko.actor.typed.Props;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.actor.typed.pubsub.Topic;
import org.apache.pekko.cluster.sharding.typed.javadsl.ClusterSharding;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.apache.pekko.http.javadsl.ServerBinding;
import org.apache.pekko.persistence.query.PersistenceQuery;
import org.apache.pekko.persistence.query.javadsl.CurrentEventsByPersistenceIdQuery;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One Flotilla node: the actor system (cluster member), the journal, the drivers, the sandbox
 * and tenant entities, and the gRPC port. {@link Main} runs one from the command line; tests
 * start several in one JVM or in separate ones.
 */
public final class FlotillaNode implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(FlotillaNode.class);

  private final ActorSystem<Void> system;
  /** Completes when coordinated shutdown reaches its last phase ({@link BoundedTermination}). */
  private final CompletableFuture<Void> lastShutdownPhase;
  private final ServerBinding binding;
  private final SandboxControl control;
  private final Path dataDir;

  private FlotillaNode(ActorSystem<Void> system, ServerBinding binding, SandboxControl control, Path dataDir,
      CompletableFuture<Void> lastShutdownPhase) {
    this.lastShutdownPhase = lastShutdownPhase;
    this.system = system;
    this.binding = binding;
    this.control = control;
    this.dataDir = dataDir;
  }

  /**
   * Starts a node from a resolved configuration (application.conf plus overrides). Returns once
   * the gRPC port is bound; fails with a message saying what to fix when the journal or the port
   * cannot be had.
   */
  public static FlotillaNode start(Config config) throws IOException {
    Path dataDir = Path.of(config.getString("flotilla.node.data-dir")).toAbsolutePath().normalize();
    privateDataDir(dataDir);
    // Artery switched to mutual TLS when certificates are configured; plaintext off loopback stops the node here.
    Config full = ClusterTls.apply(PersistenceSettings.forNode(dataDir, config).withFallback(config).resolve());
    EmbeddedJournalFiles.secure(full);
    PersistenceSettings.verifyReachable(full);
    EmbeddedJournalFiles.secure(full);
    // Before anything starts: a token file others can read stops the node here, with the fix.
    TokenAuth auth = TokenAuth.fromConfig(full.getConfig("flotilla.auth"), dataDir);
    TokenAuth.requireOwnerOnlySecretFiles(full.getConfig("flotilla.images"));
    // So do unreadable certificates, and plaintext gRPC off loopback.
    GrpcTls.Settings grpcTls = GrpcTls.fromConfig(full.getConfig("flotilla.node.grpc"));

    ActorSystem<Void> system = ActorSystem.create(Behaviors.empty(), "flotilla", full);
    try {
      Cluster cluster = Cluster.get(system);
      if (full.getList("pekko.cluster.seed-nodes").isEmpty()) {
        cluster.manager().tell(Join.create(cluster.selfMember().address()));
      }
      SchemaBootstrap.ensure(system);

      Config node = full.getConfig("flotilla.node");
      NodeImages images = NodeImages.fromConfig(full.getConfig("flotilla.images"), dataDir,
          system.dispatchers().lookup(DispatcherSelector.fromConfig(full.getString("flotilla.vm.supervisor.blocking-dispatcher"))));
      if (PersistenceSettings.backend(full) == PersistenceSettings.Backend.POSTGRES) {
        // A cluster: imported images go to the shared journal database, so every node can run them.
        SharedImages shared = new SharedImages(JournalDatabase.of(system)::open);
        shared.ensureSchema();
        images.store().share(shared);
        log.info("images: imports are shared through the PostgreSQL journal database");
      }
      Map<String, java.util.List<String>> unavailable = new LinkedHashMap<>();
      Map<String, Hypervisor> drivers = drivers(node, dataDir, unavailable, images, protectedEndpoints(full));
      for (Hypervisor h : drivers.values()) {
        for (String w : h.capabilities().warnings()) log.warn("driver {}: {}", h.driver(), w);
      }
      ActorRef<Topic.Command<SandboxChanged>> events =
          system.systemActorOf(Topic.create(SandboxChanged.class, "flotilla-sandbox-events"), "sandbox-events", Props.empty());
      // A topic registers with the receptionist on its first local subscriber and deregisters on
      // its last; a watch that ends at once races that and crashes the cluster receptionist. One
      // subscriber for the node's lifetime keeps the topic registered once.
      events.tell(Topic.subscribe(system.systemActorOf(Behaviors.<SandboxChanged>ignore(), "sandbox-events-anchor", Props.empty())));
      VmSupervisor.Settings supervision = VmSupervisor.Settings.create(system);
      Duration takeover = null;
      if (full.getList("pekko.cluster.seed-nodes").isEmpty()) {
        // Standalone: no other node can ever start these sandboxes, so nothing to fence against,
        // and a node stopped for any length of time re-attaches to its sandboxes.
        supervision = supervision.withLease(Duration.ZERO, supervision.healthInterval());
        log.info("standalone node (no seed nodes): sandboxes hold no lease and outlive a stopped node");
      } else {
        takeover = NodeFencing.checkLease(full, supervision.lease());
        log.info("sandbox lease {} ms: a frozen node's VMs end themselves before the cluster restarts them elsewhere"
            + " (at the earliest {} ms after the node's last heartbeat)", supervision.lease().toMillis(), takeover.toMillis());
      }
      Config sb = full.getConfig("flotilla.sandbox");
      Config restart = sb.getConfig("restart");
      SandboxRuntime runtime = new SandboxRuntime(
          drivers,
          dataDir.resolve("vms"),
          NodeAddress.hostPort(cluster.selfMember().address()),
          hostId(node.getString("host-id"), dataDir),
          SandboxRuntime.supervised(supervision),
          new SandboxRuntime.RestartSettings(restart.getInt("max-restarts"), restart.getDuration("min-backoff"),
              restart.getDuration("max-backoff"), restart.getDuration("reset-after")),
          sb.getDuration("vm-call-timeout"),
          sb.getDuration("stop-grace"),
          sb.getInt("pids-limit"),
          events,
          () -> NodeFencing.othersCanTakeOver(system),
          new MainLogs(dataDir.resolve("vms").resolve("logs"), mainLogMax(sb)),
          full.getString("flotilla.vm.supervisor.blocking-dispatcher"),
          sb.getDuration("ask-timeout"),
          // A sandbox deleted by its own timeout gives its tenant's quota back (fire and forget:
          // the ledger reconciler catches a lost one).
          (tenant, id) -> ClusterSharding.get(system).entityRefFor(TenantEntity.ENTITY_KEY, tenant)
              .tell(new TenantEntity.Release(id, system.ignoreRef())),
          new dev.flotilla.sandbox.SnapshotStore(node.getString("snapshots.dir").isEmpty() ? dataDir.resolve("snapshots")
              : Path.of(node.getString("snapshots.dir"))));
      dev.flotilla.vm.NodeOnlyFiles.createPrivateDir(runtime.snapshots().root());
      log.info("snapshots of suspended sandboxes: {}{}", runtime.snapshots().root(),
          node.getString("snapshots.dir").isEmpty() ? " (node-local: only this node can resume them)" : "");
      Files.createDirectories(runtime.vmRoot());
      NodeFencing.install(system, drivers, runtime.vmRoot());
      if (takeover != null) NodeFencing.watchFreezes(system, drivers, runtime.vmRoot(), takeover.minus(NodeFencing.LEASE_MARGIN));
      // what the drivers run of their own (a VM template being built) ends with the node; the
      // sandboxes' VMs do not
      org.apache.pekko.actor.CoordinatedShutdown.get(system).addTask(org.apache.pekko.actor.CoordinatedShutdown.PhaseServiceStop(),
          "flotilla-driver-shutdown", () -> java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            drivers.values().forEach(hv -> hv.shutdown(Duration.ofSeconds(4)));
            return org.apache.pekko.Done.getInstance();
          }));
      CompletableFuture<Void> lastShutdownPhase = BoundedTermination.lastPhase(system);
      SandboxEntity.init(system, runtime);
      TenantEntity.init(system, tenant -> quota(full.getConfig("flotilla.tenants"), tenant));

      JournalHealth journal = JournalHealth.start(full);
      system.getWhenTerminated().whenComplete((d, e) -> journal.close());
      JournalStatus journalStatus = journalStatus(journal);
      Config reconcile = full.getConfig("flotilla.tenants.reconcile");
      dev.flotilla.tenant.LedgerReconciler.start(system, auth::tenants, reconcile.getDuration("first-run"),
          reconcile.getDuration("interval"), reconcile.getDuration("grace"), sb.getDuration("ask-timeout"), journalStatus);
      new VmReaper(system, runtime,
          system.dispatchers().lookup(DispatcherSelector.fromConfig(full.getString("flotilla.vm.supervisor.blocking-dispatcher"))),
          sb.getDuration("ask-timeout"), journalStatus)
          .schedule(node.getDuration("reaper.first-run"), node.getDuration("reaper.interval"));

      Set<String> egressDrivers = new java.util.TreeSet<>();
      drivers.forEach((name, hv) -> {
        if (hv.capabilities().enforcedLimits().contains("network-egress")) egressDrivers.add(name);
      });
      SpecValidator validator = SpecValidator.fromConfig(sb, drivers.keySet(), unavailable).withEgressDrivers(egressDrivers);
      SandboxControl control = new SandboxControl(system, validator,
          sb.getDuration("ask-timeout"), sb.getDuration("file-timeout"), events, journalStatus,
          sb.getDuration("read-timeout-while-journal-down")).withImages(images)
          .withLimits(TenantLimits.fromConfig(full.getConfig("flotilla.tenants")))
          .withHistory(new SandboxHistory(system, PersistenceQuery.get(system)
              .getReadJournalFor(CurrentEventsByPersistenceIdQuery.class, PersistenceSettings.READ_JOURNAL)));
      // Templates are the drivers' and node-local: warmed, listed and removed on the node a call reaches.
      NodeTemplates templates = NodeTemplates.of(drivers, validator, images, NodeAddress.hostPort(cluster.selfMember().address()),
          system.dispatchers().lookup(DispatcherSelector.fromConfig(full.getString("flotilla.vm.supervisor.blocking-dispatcher"))),
          full.getConfig("flotilla.templates"));
      Config grpc = node.getConfig("grpc");
      ServerBinding binding;
      try {
        binding = GrpcServer.bind(system, control, images, templates, auth, Set.copyOf(full.getStringList("flotilla.auth.admin-tenants")),
                sb.getDuration("ask-timeout"), grpc.getString("interface"), grpc.getInt("port"), grpcTls.context())
            .toCompletableFuture().get(30, TimeUnit.SECONDS);
      } catch (Exception e) {
        Throwable cause = e.getCause() != null ? e.getCause() : e;
        throw new IOException("cannot serve gRPC on " + grpc.getString("interface") + ":" + grpc.getInt("port") + ": "
            + cause.getMessage() + " (is another node running? use --grpc-port)", cause);
      }
      log.info("gRPC on {}: {}; cluster transport: {}", GrpcServer.hostPort(binding), grpcTls.description(),
          full.getString("pekko.remote.artery.transport").equals("tls-tcp") ? "mutual TLS" : "plaintext");
      return new FlotillaNode(system, binding, control, dataDir, lastShutdownPhase);
    } catch (IOException | RuntimeException e) {
      system.terminate();
      throw e;
    }
  }

  /** {@code flotilla.sandbox.main-log-max}, checked: a log must hold something, and its ring must fit the agent. */
  static long mainLogMax(Config sb) {
    long max = sb.getMemorySize("main-log-max").toBytes();
    if (max < 64 * 1024 || max > 16L << 20) {
      throw new IllegalArgumentException("flotilla.sandbox.main-log-max = " + max + " bytes is out of range: give 64KiB to 16MiB");
    }
    return max;
  }

  /**
   * The data directory holds the journal, the tokens and the VMs' state: 0700, owned by the
   * node's uid. One an older node (or an admin) left open to group or others is tightened, and
   * the log says so. A configured path that is a link (to another disk) is the admin's to make:
   * the directory it leads to is the one made private.
   */
  static void privateDataDir(Path dataDir) throws IOException {
    Path real = Files.exists(dataDir) ? dataDir.toRealPath() : dataDir;
    Set<PosixFilePermission> before = Files.exists(real) ? Files.getPosixFilePermissions(real) : null;
    NodeOnlyFiles.createPrivateDir(real);
    if (before != null && !before.equals(NodeOnlyFiles.DIR_MODE)) {
      log.warn("data directory {} was {}: tightened to {} (it holds the journal, tokens and VM state)",
          real, PosixFilePermissions.toString(before), PosixFilePermissions.toString(NodeOnlyFiles.DIR_MODE));
    }
  }

  /**
   * The process driver's sandboxes, when they run as their own unprivileged host uid, bind their
   * agent socket in their state directory under the data directory, so they must be able to pass
   * through it (o+x: traverse, not list). Until that driver keeps sockets elsewhere.
   */
  private static JournalStatus journalStatus(JournalHealth health) {
    return new JournalStatus() {
      @Override
      public java.util.Optional<String> unavailable() {
        return health.unavailable();
      }

      @Override
      public Runnable onDown(java.util.function.Consumer<String> onDown) {
        return health.onDown(onDown);
      }
    };
  }

  /**
   * What no sandbox's egress may reach, whatever its lists say (besides every address of this host,
   * which the driver refuses anyway): this node's gRPC and Artery endpoints, the cluster's seed
   * nodes, and the journal's database.
   */
  static java.util.List<String> protectedEndpoints(Config full) {
    java.util.List<String> out = new java.util.ArrayList<>();
    Config node = full.getConfig("flotilla.node");
    out.add(hostPort(node.getString("grpc.interface"), node.getInt("grpc.port")));
    out.add(hostPort(full.getString("pekko.remote.artery.canonical.hostname"), full.getInt("pekko.remote.artery.canonical.port")));
    for (String seed : full.getStringList("pekko.cluster.seed-nodes")) {
      int at = seed.lastIndexOf('@');
      if (at >= 0) out.add(seed.substring(at + 1));
    }
    String url = full.getString("flotilla.persistence.jdbc-url").trim();
    if (!url.isEmpty()) {
      // jdbc:postgresql://host[:port]/db
      java.util.regex.Matcher m = java.util.regex.Pattern.compile("jdbc:postgresql://(\\[[^]]+]|[^/:,]+)(?::(\\d+))?/.*").matcher(url);
      if (m.matches()) out.add(hostPort(m.group(1).replace("[", "").replace("]", ""), m.group(2) == null ? 5432 : Integer.parseInt(m.group(2))));
    }
    // port 0 (picked at start) protects nothing there: every address of this host is refused anyway
    return out.stream().filter(e -> !e.endsWith(":0")).distinct().toList();
  }

  private static String hostPort(String host, int port) {
    String h = host.isEmpty() || host.equals("0.0.0.0") || host.equals("::") ? "127.0.0.1" : host;
    return (h.contains(":") ? "[" + h + "]" : h) + ":" + port;
  }

  private static Map<String, Hypervisor> drivers(Config node, Path dataDir, Map<String, java.util.List<String>> unavailable,
      NodeImages images, java.util.List<String> protectedEndpoints) throws IOException {
    Map<String, Hypervisor> drivers = new LinkedHashMap<>();
    // One id range per sandbox on this host, whichever driver runs it.
    IdRangeAllocator ids = IdRangeAllocator.forNode(dataDir.resolve("vms"));
    Config process = node.getConfig("drivers.process");
    if (process.getBoolean("enabled")) {
      ProcessHypervisorConfig pc = ProcessHypervisorConfig.of(
              built(process.getString("runtime-dir"), "flotilla.sandbox.runtime", Path.of("guest-image", "out", "sandbox-runtime")),
              built(process.getString("default-image"), "flotilla.default.image", Path.of("guest-image", "out", "default-image", "rootfs")),
              dataDir.resolve("vms"))
          .withCgroupParent(process.getString("cgroup-parent"))
          .withDefaultDiskMiB(process.getInt("default-disk-mib"))
          .withProtectedEndpoints(protectedEndpoints);
      ProcessHypervisor hv = new ProcessHypervisor(pc, ids, images);
      if (hv.capabilities().warnings().isEmpty()) {
        drivers.put(ProcessHypervisor.DRIVER, hv);
      } else {
        // Not offered: a create naming it is told why (see SandboxEntity), and so is the operator.
        log.warn("process driver not offered: {}", String.join("; ", hv.capabilities().warnings()));
        unavailable.put(ProcessHypervisor.DRIVER, hv.capabilities().warnings());
      }
    }
    Config qemu = node.getConfig("drivers.qemu");
    String enabled = qemu.getString("enabled");
    if (!enabled.equals("off")) {
      String dir = qemu.getString("image-dir");
      // the driver's own node-only state (the jails' shared root, image disks, writable disks); the
      // id ranges are the node's, shared. The same default image and disk size as the process driver.
      QemuConfig qc = new QemuConfig(qemu.getString("binary"),
          dir.isEmpty() ? repoFile(Path.of("guest-image", "out")) : Path.of(dir), qemu.getString("accel"),
          dataDir.resolve("qemu"))
          .withDefaultRootfs(built(process.getString("default-image"), "flotilla.default.image",
              Path.of("guest-image", "out", "default-image", "rootfs")))
          .withDefaultDiskMiB(process.getInt("default-disk-mib"))
          .withTemplateCacheBytes(qemu.getBytes("template-cache"))
          .withCloneTcgCacheMiB((int) (qemu.getBytes("clone-tcg-cache") >> 20))
          .withProtectedEndpoints(protectedEndpoints);
      boolean binary = onPath(qc.qemuBinary());
      // no guest image yet: the first VM builds it (guest-image/build.sh, progress in this log)
      boolean image = qc.imageBuilt() || qc.buildScript().isPresent();
      if (binary && image) {
        drivers.put(QemuHypervisor.DRIVER, new QemuHypervisor(qc, ids, images));
      } else if (enabled.equals("on")) {
        throw new IllegalStateException("flotilla.node.drivers.qemu.enabled = on, but "
            + (binary ? "there is no guest image in " + qc.imageDir() + " and no guest-image/build.sh to build it"
                : qc.qemuBinary() + " is not installed: run scripts/setup-host.sh"));
      } else {
        log.info("qemu driver not offered: {}", binary ? "no guest image in " + qc.imageDir() + " and no guest-image/build.sh to build it"
            : qc.qemuBinary() + " not found (scripts/setup-host.sh installs it)");
      }
    }
    return drivers;
  }

  private static boolean onPath(String binary) {
    if (binary.contains("/")) return Files.isExecutable(Path.of(binary));
    for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
      if (Files.isExecutable(Path.of(dir, binary))) return true;
    }
    return false;
  }

  /** The configured path, else the system property (tests), else {@code rel} in the checkout this node runs from. */
  static Path built(String configured, String property, Path rel) {
    if (!configured.isEmpty()) return Path.of(configured);
    String prop = System.getProperty(property);
    if (prop != null && !prop.isEmpty()) return Path.of(prop);
    return repoFile(rel);
  }

  /** {@code rel} in the checkout this node runs from (found from its own jar), else in the working directory. */
  static Path repoFile(Path rel) {
    try {
      Path self = Path.of(FlotillaNode.class.getProtectionDomain().getCodeSource().getLocation().toURI());
      // cluster-node/target/flotilla.jar (or target/classes) -> repository root
      for (Path p = self.getParent(); p != null; p = p.getParent()) {
        if (Files.exists(p.resolve(rel))) return p.resolve(rel);
      }
    } catch (Exception ignored) {
      // fall through to the working directory
    }
    return rel.toAbsolutePath();
  }

  private static TenantEntity.Quota quota(Config tenants, String tenant) {
    Config q = tenants.getConfig("default-quota");
    if (tenants.getConfig("quotas").hasPath("\"" + tenant + "\"")) {
      q = tenants.getConfig("quotas").getConfig("\"" + tenant + "\"").withFallback(q);
    }
    return new TenantEntity.Quota(q.getInt("sandboxes"), q.getInt("vcpus"), q.getLong("memory-mib"));
  }

  /** See flotilla.node.host-id in node.conf. */
  static String hostId(String configured, Path dataDir) {
    if (!configured.isEmpty()) return configured;
    String machine;
    try {
      machine = Files.readString(Path.of("/etc/machine-id"), StandardCharsets.UTF_8).trim();
    } catch (IOException e) {
      machine = "unknown-machine";
    }
    return machine + ":" + dataDir;
  }

  public ActorSystem<Void> system() {
    return system;
  }

  public SandboxControl control() {
    return control;
  }

  /** host:port the gRPC API is bound to. */
  public String grpcAddress() {
    return GrpcServer.hostPort(binding);
  }

  public int grpcPort() {
    return binding.localAddress().getPort();
  }

  public String clusterAddress() {
    return NodeAddress.hostPort(Cluster.get(system).selfMember().address());
  }

  public Path dataDir() {
    return dataDir;
  }

  /**
   * Stops the node: unbinds the port and leaves the cluster. Sandboxes' VMs keep running: a node
   * restarted on the same data dir re-attaches to them.
   */
  @Override
  public void close() {
    system.terminate();
    try {
      system.getWhenTerminated().toCompletableFuture().get(30, TimeUnit.SECONDS);
    } catch (Exception e) {
      log.warn("node did not stop within 30 s: {}", e.toString());
    }
  }

  /**
   * Returns when the actor system has terminated, or at most {@link #TERMINATION_GRACE} after
   * coordinated shutdown reached its last phase (see {@link BoundedTermination}); the caller then
   * ends the process.
   */
  public void awaitTermination() {
    BoundedTermination.await(system.getWhenTerminated(), lastShutdownPhase, TERMINATION_GRACE);
  }

  /** Beyond the actor-system-terminate phase's own timeout (10 s). */
  static final Duration TERMINATION_GRACE = Duration.ofSeconds(5);
}
